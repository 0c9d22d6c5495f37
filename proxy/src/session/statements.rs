//! Prepared statements with ids that stay stable for the session.
//!
//! A client sees statement ids Torpor gives out (1, 2, 3, … per session).
//! Each backend connection that runs a statement has prepared it under an
//! id of its own; commands are rewritten from the client's id to the
//! connection's. A connection that lacks a statement (a new connection
//! after the old one died, later a pooled one) prepares it again when it
//! is first needed, from the text and parameter types remembered here.
//! Backend statements are closed when the client closes them, and each
//! connection holds at most [`MAX_PER_CONNECTION`], least recently used
//! closed first, so `max_prepared_stmt_count` never runs out.

use std::collections::HashMap;

/// Statements one backend connection keeps prepared at most.
pub const MAX_PER_CONNECTION: usize = 1024;

/// What Torpor remembers of a client's prepared statement.
#[derive(Debug, Clone)]
pub struct ClientStatement {
    /// The statement text, as prepared.
    pub sql: Vec<u8>,
    /// Parameter count.
    pub params: u16,
    /// Result column count.
    pub columns: u16,
    /// The parameter types the client last bound (two bytes each), for
    /// executes that do not send them.
    pub param_types: Option<Vec<u8>>,
}

/// A session's prepared statements, by client-visible id.
#[derive(Debug, Default)]
pub struct Statements {
    next_id: u32,
    by_id: HashMap<u32, ClientStatement>,
}

impl Statements {
    /// Registers a new statement; returns its client-visible id.
    pub fn add(&mut self, statement: ClientStatement) -> u32 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        while self.by_id.contains_key(&self.next_id) {
            self.next_id = self.next_id.wrapping_add(1).max(1);
        }
        self.by_id.insert(self.next_id, statement);
        self.next_id
    }

    /// The statement with client id `id`.
    pub fn get(&self, id: u32) -> Option<&ClientStatement> {
        self.by_id.get(&id)
    }

    /// The statement with client id `id`, to update.
    pub fn get_mut(&mut self, id: u32) -> Option<&mut ClientStatement> {
        self.by_id.get_mut(&id)
    }

    /// Forgets a statement the client closed.
    pub fn remove(&mut self, id: u32) -> Option<ClientStatement> {
        self.by_id.remove(&id)
    }

    /// Forgets every statement (COM_RESET_CONNECTION, COM_CHANGE_USER).
    pub fn clear(&mut self) {
        self.by_id.clear();
    }

    /// Number of statements.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// The statements one backend connection has prepared: client id →
/// backend id, with use order for eviction and whether an execute with
/// parameter types has been sent on this connection.
#[derive(Debug, Default)]
pub struct BackendStatements {
    map: HashMap<u32, (u32, u64)>,
    typed: std::collections::HashSet<u32>,
    clock: u64,
}

impl BackendStatements {
    /// The backend id of client statement `id`, marking it used.
    pub fn lookup(&mut self, id: u32) -> Option<u32> {
        self.clock += 1;
        let clock = self.clock;
        self.map.get_mut(&id).map(|(backend, used)| {
            *used = clock;
            *backend
        })
    }

    /// Records that client statement `id` is backend statement `backend`.
    /// Returns the backend ids to close to stay within the bound.
    pub fn insert(&mut self, id: u32, backend: u32) -> Vec<u32> {
        self.clock += 1;
        let mut evicted = Vec::new();
        if let Some((old, _)) = self.map.insert(id, (backend, self.clock)) {
            if old != backend {
                evicted.push(old);
            }
        }
        self.typed.remove(&id);
        while self.map.len() > MAX_PER_CONNECTION {
            let Some((&oldest, _)) = self.map.iter().min_by_key(|(_, (_, used))| *used) else {
                break;
            };
            if let Some((backend, _)) = self.map.remove(&oldest) {
                self.typed.remove(&oldest);
                evicted.push(backend);
            }
        }
        evicted
    }

    /// Forgets client statement `id`; returns its backend id to close.
    pub fn remove(&mut self, id: u32) -> Option<u32> {
        self.typed.remove(&id);
        self.map.remove(&id).map(|(backend, _)| backend)
    }

    /// Forgets everything (the backend dropped its statements).
    pub fn clear(&mut self) {
        self.map.clear();
        self.typed.clear();
    }

    /// Records that this connection has seen client statement `id`'s
    /// parameter types.
    pub fn mark_typed(&mut self, id: u32) {
        self.typed.insert(id);
    }

    /// Whether this connection has seen client statement `id`'s types.
    pub fn is_typed(&self, id: u32) -> bool {
        self.typed.contains(&id)
    }

    /// Statements prepared on the connection.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none is prepared.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement() -> ClientStatement {
        ClientStatement {
            sql: b"SELECT ?".to_vec(),
            params: 1,
            columns: 1,
            param_types: None,
        }
    }

    #[test]
    fn client_ids_are_stable_and_unique() {
        let mut statements = Statements::default();
        let a = statements.add(statement());
        let b = statements.add(statement());
        assert_eq!((a, b), (1, 2));
        statements.remove(a);
        assert_eq!(statements.add(statement()), 3, "ids are not reused at once");
    }

    #[test]
    fn backend_statements_are_bounded_least_recently_used_first() {
        let mut map = BackendStatements::default();
        for id in 0..MAX_PER_CONNECTION as u32 {
            assert!(map.insert(id, id + 1000).is_empty());
        }
        assert_eq!(map.lookup(0), Some(1000));
        let evicted = map.insert(9999, 1);
        assert_eq!(
            evicted,
            vec![1001],
            "statement 1 was the least recently used"
        );
        assert_eq!(map.len(), MAX_PER_CONNECTION);
        assert_eq!(map.remove(0), Some(1000));
    }
}

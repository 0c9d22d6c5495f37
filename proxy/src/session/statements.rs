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

use std::collections::{HashMap, HashSet};

use torpor_protocol::stmt::LAST_PREPARED;

/// A map keyed by statement ids that Torpor or the server hands out (the
/// text a client chooses never keys one), hashed with foldhash: an
/// execute looks up four or five of them, and the standard SipHash cost
/// ~170 instructions per lookup, ~860 of the 12 500 a prepared point
/// select took (callgrind). Seeded per map all the same.
type IdMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A set of statement keys, hashed as [`IdMap`]'s.
type IdSet<K> = HashSet<K, foldhash::fast::RandomState>;

/// Backend statements one connection keeps prepared at most, by default:
/// MariaDB's server-wide `max_prepared_stmt_count` (16382) shared by 64
/// backend connections.
pub const MAX_PER_CONNECTION: usize = 256;

/// What Torpor remembers of a client's prepared statement.
#[derive(Debug, Clone)]
pub struct ClientStatement {
    /// The statement text, as prepared; shared with the transaction
    /// journal's entries that execute it.
    pub sql: std::rc::Rc<[u8]>,
    /// Parameter count.
    pub params: u16,
    /// Result column count.
    pub columns: u16,
    /// The parameter types the client last bound (two bytes each), for
    /// executes that do not send them; shared with the transaction
    /// journal's entries of such executes.
    pub param_types: Option<std::rc::Rc<[u8]>>,
    /// Whether the text may do anything to the session Torpor follows
    /// ([`torpor_replay::classify::may_change_state`]): read once, at the
    /// prepare, not at every execute (~200 instructions each).
    pub may_change_state: bool,
    /// What an execute of it does to `FOUND_ROWS()`
    /// (`super::counts::found_rows`), read at the prepare.
    pub found_rows: super::counts::FoundRows,
}

/// A session's prepared statements, by client-visible id.
#[derive(Debug, Default)]
pub struct Statements {
    next_id: u32,
    by_id: IdMap<u32, ClientStatement>,
    /// The statement prepared last, which [`LAST_PREPARED`] names.
    last: Option<u32>,
}

impl Statements {
    /// Registers a new statement; returns its client-visible id.
    pub fn add(&mut self, statement: ClientStatement) -> u32 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        while self.by_id.contains_key(&self.next_id) {
            self.next_id = self.next_id.wrapping_add(1).max(1);
        }
        self.by_id.insert(self.next_id, statement);
        self.last = Some(self.next_id);
        self.next_id
    }

    /// A prepare failed: as in MariaDB, [`LAST_PREPARED`] names nothing
    /// until the next prepare succeeds (a direct execute sent behind a
    /// failed prepare gets "Unknown prepared statement handler").
    pub fn prepare_failed(&mut self) {
        self.last = None;
    }

    /// The client id a command's statement id `id` stands for:
    /// [`LAST_PREPARED`] is the statement prepared last, when there is one
    /// (else it stays, and is unknown).
    pub fn resolve(&self, id: u32) -> u32 {
        match (id, self.last) {
            (LAST_PREPARED, Some(last)) => last,
            _ => id,
        }
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
        if self.last == Some(id) {
            self.last = None;
        }
        self.by_id.remove(&id)
    }

    /// Forgets every statement (COM_RESET_CONNECTION, COM_CHANGE_USER).
    pub fn clear(&mut self) {
        self.by_id.clear();
        self.last = None;
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

/// One statement prepared on a backend connection.
#[derive(Debug)]
struct BackendStatement {
    sql: Vec<u8>,
    /// The (session, client id) keys that use it.
    users: IdSet<u64>,
    /// The parameter types the backend last saw with it (it keeps them
    /// for executes that do not send any).
    last_types: Option<Vec<u8>>,
    used: u64,
}

/// The statements one backend connection has prepared. A pooled
/// connection serves many sessions; sessions that prepared the same text
/// share one backend statement on it, so hundreds of sessions with the
/// same ten statements cost ten per connection, not thousands
/// (`max_prepared_stmt_count` is a server-wide limit). Keys are
/// [`BackendStatements::key`]s of (session, client id).
#[derive(Debug)]
pub struct BackendStatements {
    by_backend: IdMap<u32, BackendStatement>,
    by_key: IdMap<u64, u32>,
    by_sql: HashMap<Vec<u8>, u32>,
    clock: u64,
    limit: usize,
}

impl Default for BackendStatements {
    fn default() -> Self {
        BackendStatements::with_limit(MAX_PER_CONNECTION)
    }
}

impl BackendStatements {
    /// A set bounded to `limit` backend statements.
    pub fn with_limit(limit: usize) -> BackendStatements {
        BackendStatements {
            by_backend: IdMap::default(),
            by_key: IdMap::default(),
            by_sql: HashMap::new(),
            clock: 0,
            limit: limit.max(1),
        }
    }

    /// The key of session `session`'s statement `id`.
    pub fn key(session: u32, id: u32) -> u64 {
        u64::from(session) << 32 | u64::from(id)
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The backend id of statement `key`, marking it used.
    pub fn lookup(&mut self, key: u64) -> Option<u32> {
        let clock = self.tick();
        let backend = *self.by_key.get(&key)?;
        if let Some(statement) = self.by_backend.get_mut(&backend) {
            statement.used = clock;
        }
        Some(backend)
    }

    /// Gives statement `key` the backend statement another session
    /// prepared with the same text on this connection, if there is one: no
    /// round trip needed.
    pub fn share(&mut self, key: u64, sql: &[u8]) -> Option<u32> {
        let backend = *self.by_sql.get(sql)?;
        let clock = self.tick();
        let statement = self.by_backend.get_mut(&backend)?;
        statement.users.insert(key);
        statement.used = clock;
        self.by_key.insert(key, backend);
        Some(backend)
    }

    /// Records that statement `key` (text `sql`) is backend statement
    /// `backend`. Returns the backend ids to close: one `key` used before,
    /// if nobody else uses it, and the least recently used ones beyond the
    /// bound.
    pub fn insert(&mut self, key: u64, sql: &[u8], backend: u32) -> Vec<u32> {
        let mut to_close: Vec<u32> = self.remove(key).into_iter().collect();
        let clock = self.tick();
        let statement = self
            .by_backend
            .entry(backend)
            .or_insert_with(|| BackendStatement {
                sql: sql.to_vec(),
                users: IdSet::default(),
                last_types: None,
                used: clock,
            });
        statement.users.insert(key);
        statement.used = clock;
        self.by_key.insert(key, backend);
        // A statement whose text Torpor did not keep (too large) is not
        // shared.
        if !sql.is_empty() {
            self.by_sql.insert(sql.to_vec(), backend);
        }
        while self.by_backend.len() > self.limit {
            let Some((&oldest, _)) = self.by_backend.iter().min_by_key(|(_, s)| s.used) else {
                break;
            };
            self.forget_backend(oldest);
            to_close.push(oldest);
        }
        to_close
    }

    fn forget_backend(&mut self, backend: u32) {
        if let Some(statement) = self.by_backend.remove(&backend) {
            for key in statement.users {
                self.by_key.remove(&key);
            }
            if self.by_sql.get(&statement.sql) == Some(&backend) {
                self.by_sql.remove(&statement.sql);
            }
        }
    }

    /// Forgets statement `key` (closed by its client). Returns the backend
    /// id to close when no other session uses that statement.
    pub fn remove(&mut self, key: u64) -> Option<u32> {
        let backend = self.by_key.remove(&key)?;
        let statement = self.by_backend.get_mut(&backend)?;
        statement.users.remove(&key);
        if statement.users.is_empty() {
            self.forget_backend(backend);
            return Some(backend);
        }
        None
    }

    /// Forgets every statement of `session`; returns the backend ids no
    /// session uses any more, to close (the session ended).
    pub fn remove_session(&mut self, session: u32) -> Vec<u32> {
        let keys: Vec<u64> = self
            .by_key
            .keys()
            .copied()
            .filter(|key| (key >> 32) as u32 == session)
            .collect();
        keys.into_iter()
            .filter_map(|key| self.remove(key))
            .collect()
    }

    /// Forgets everything (the backend dropped its statements).
    pub fn clear(&mut self) {
        self.by_backend.clear();
        self.by_key.clear();
        self.by_sql.clear();
    }

    /// The parameter types backend statement `backend` last saw.
    pub fn last_types(&self, backend: u32) -> Option<&[u8]> {
        self.by_backend.get(&backend)?.last_types.as_deref()
    }

    /// Records the parameter types backend statement `backend` was just
    /// sent.
    pub fn set_last_types(&mut self, backend: u32, types: &[u8]) {
        if let Some(statement) = self.by_backend.get_mut(&backend) {
            if statement.last_types.as_deref() != Some(types) {
                statement.last_types = Some(types.to_vec());
            }
        }
    }

    /// Backend statements prepared on the connection.
    pub fn len(&self) -> usize {
        self.by_backend.len()
    }

    /// Whether none is prepared.
    pub fn is_empty(&self) -> bool {
        self.by_backend.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement() -> ClientStatement {
        ClientStatement {
            sql: b"SELECT ?".as_slice().into(),
            params: 1,
            columns: 1,
            param_types: None,
            may_change_state: false,
            found_rows: crate::session::counts::FoundRows::Unknown,
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
    fn the_last_prepared_id_follows_prepares_failures_and_closes() {
        let mut statements = Statements::default();
        assert_eq!(statements.resolve(LAST_PREPARED), LAST_PREPARED);
        let a = statements.add(statement());
        let b = statements.add(statement());
        assert_eq!(statements.resolve(LAST_PREPARED), b);
        assert_eq!(statements.resolve(a), a, "other ids are left alone");
        statements.prepare_failed();
        assert_eq!(statements.resolve(LAST_PREPARED), LAST_PREPARED);
        let c = statements.add(statement());
        statements.remove(a);
        assert_eq!(statements.resolve(LAST_PREPARED), c);
        statements.remove(c);
        assert_eq!(statements.resolve(LAST_PREPARED), LAST_PREPARED);
    }

    #[test]
    fn backend_statements_are_bounded_least_recently_used_first() {
        let mut map = BackendStatements::with_limit(3);
        for id in 0..3u64 {
            let sql = format!("SELECT {id}");
            assert!(map.insert(id, sql.as_bytes(), id as u32 + 1000).is_empty());
        }
        assert_eq!(map.lookup(0), Some(1000));
        let evicted = map.insert(9, b"SELECT 9", 1009);
        assert_eq!(
            evicted,
            vec![1001],
            "statement 1 was the least recently used"
        );
        assert_eq!(map.len(), 3);
        assert_eq!(
            map.lookup(1),
            None,
            "its users prepare it again when needed"
        );
    }

    #[test]
    fn sessions_share_a_text_and_the_last_user_closes_it() {
        let mut map = BackendStatements::default();
        let a = BackendStatements::key(1, 1);
        let b = BackendStatements::key(2, 7);
        map.insert(a, b"SELECT ?", 50);
        assert_eq!(map.share(b, b"SELECT ?"), Some(50), "same text: shared");
        assert_eq!(map.share(BackendStatements::key(3, 1), b"SELECT 2"), None);
        assert_eq!(map.remove(a), None, "still used by session 2");
        assert_eq!(map.remove(b), Some(50), "the last user closes it");
        assert!(map.is_empty());
    }

    #[test]
    fn a_finished_sessions_statements_are_all_closed() {
        let mut map = BackendStatements::default();
        map.insert(BackendStatements::key(1, 1), b"SELECT 1", 10);
        map.insert(BackendStatements::key(1, 2), b"SELECT 2", 11);
        map.insert(BackendStatements::key(2, 1), b"SELECT 3", 12);
        let mut closed = map.remove_session(1);
        closed.sort();
        assert_eq!(closed, vec![10, 11]);
        assert_eq!(map.lookup(BackendStatements::key(2, 1)), Some(12));
    }
}

//! Keeping a session on a working backend connection: noticing that its
//! connection died while idle, opening a new one and replaying the
//! session's state onto it, preparing statements again where they are
//! missing, and reading back state the server does not report (user
//! variables).
//!
//! A session moves only while nothing pins it ([`super::model`]); a pinned
//! session whose connection died gets an error, as it would from MariaDB
//! — except one pinned by its open transaction alone, which is replayed
//! ([`super::transaction`]).

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use torpor_protocol::command::{Command, ReplyKind};
use torpor_protocol::frame::{read_payload, write_payload, PacketHeader, HEADER_LEN};
use torpor_protocol::reply::{PacketClass, PrepareOk, ReplyTracker, Step};
use torpor_protocol::ProtocolError;
use torpor_replay::state::SessionState;
use tracing::{debug, info};

use super::be;
use super::commands::{Pending, Session};
use super::statements::BackendStatements;
use super::Failure;
use crate::backend::{self, read_packet, BackendConn, Login, QueryResult};
use crate::error::{BackendErr, SessionError};
use crate::outage::{self, Hold, Holding};
use crate::pool::{Borrowed, Lent, PoolKey, Pooled};

/// A backend connection whose server was last heard from longer ago than
/// this is checked before it is used (one non-blocking peek): a KILL or a
/// restart in between is noticed before a command is sent into a dead
/// socket.
const CHECK_AFTER_IDLE: Duration = Duration::from_millis(1);

/// Whether a connection taken from the pool died while it waited there:
/// one idle (no reply heard from its server) for longer than
/// [`CHECK_AFTER_IDLE`] before `now` (a moment the caller read the clock
/// at) is peeked at.
pub(super) fn died_idle(conn: &BackendConn, now: std::time::Instant) -> bool {
    now.saturating_duration_since(conn.idle_since) >= CHECK_AFTER_IDLE
        && backend_closed(conn.conn.raw_fd())
}

/// Whether the backend closed a connection: a non-blocking peek sees the
/// end of the stream (or an error) instead of "nothing to read".
fn backend_closed(fd: std::os::fd::RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: recv into one byte of our stack with MSG_PEEK | MSG_DONTWAIT
    // only reads the socket's state; the fd is owned by this session.
    let n = unsafe {
        libc::recv(
            fd,
            std::ptr::addr_of_mut!(byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => true,
        n if n > 0 => true, // unsolicited bytes: the connection is out of step
        _ => {
            let error = std::io::Error::last_os_error();
            error.kind() != std::io::ErrorKind::WouldBlock
        }
    }
}

impl Session {
    /// The key of the session's backend connections in the pool: made
    /// once (and again when COM_CHANGE_USER changes what it is made of),
    /// shared with the pool, so that a borrow and a give-back per
    /// statement copy no user name.
    pub(super) fn pool_key(&self) -> Rc<PoolKey> {
        debug_assert_eq!(*self.pool_key, self.fresh_pool_key());
        Rc::clone(&self.pool_key)
    }

    /// The key as the session's user, account, capabilities and collation
    /// make it now.
    pub(super) fn fresh_pool_key(&self) -> PoolKey {
        PoolKey {
            user: self.user.clone(),
            account_host: self.account_host.clone(),
            capabilities: self.backend_caps,
            collation: self.collation,
        }
    }

    /// The session's state as given to the pool with its connection: the
    /// value given last time while the state has not changed since (a
    /// comparison, not a copy of the state per statement).
    pub(super) fn state_to_pool(&mut self) -> Rc<SessionState> {
        match &self.pooled_state {
            Some(shared) if **shared == self.model.state => Rc::clone(shared),
            _ => {
                let shared = Rc::new(self.model.state.clone());
                self.pooled_state = Some(Rc::clone(&shared));
                shared
            }
        }
    }

    /// Before a batch: makes sure a live backend connection serves the
    /// session — the one it holds, or one borrowed from the worker's pool
    /// and brought to the session's state.
    pub(super) async fn attach(&mut self) -> Result<(), Failure> {
        // A client that is leaving needs no backend; nor does a lone ping
        // while the service sleeps (Torpor answers it).
        let front = self.client.rbuf.get(HEADER_LEN).copied();
        let lone_ping = front == Some(Command::Ping as u8)
            && self.client.rbuf.len() == HEADER_LEN + 1
            && !self.service.lifecycle.is_active();
        let quitting = front == Some(Command::Quit as u8) || lone_ping;
        if let Some(backend) = self.backend.as_ref() {
            // The service moved to another backend since this connection
            // was opened (a relocation): the session leaves it as it
            // would leave a dead one, at a command boundary — an open
            // transaction is carried over by its journal.
            let moved = backend.generation != self.service.generation();
            // The batch started a moment ago: its time stands for now,
            // without another read of the clock.
            if !self.ledger.is_empty()
                || quitting
                || !(moved || died_idle(backend, self.batch_started))
            {
                return Ok(());
            }
            if moved {
                info!(
                    id = self.guard.id,
                    "the service moved: leaving its old backend"
                );
            }
            // It died (or its backend moved) while the session held it.
            self.drop_backend();
            if self.guard.entry.killed.load(Ordering::Acquire) {
                return Err(Failure {
                    error: SessionError::Killed,
                    reply_seq: Some(1),
                });
            }
            if self.pinned_by_transaction_only() {
                info!(
                    id = self.guard.id,
                    "backend connection lost in a transaction: replaying it"
                );
                // Boxed, as every rare path of the command loop: the
                // session's task stays the size of what it does per
                // command (see `crate::session`).
                return Box::pin(self.replay_transaction()).await;
            }
            let pins = self.model.pins();
            // User variables not read yet died with the connection.
            let unread = self.model.user_variables_dirty || self.model.last_insert_id_dirty;
            if !pins.is_empty() || unread {
                let names: Vec<&str> = pins.iter().map(|p| p.name()).collect();
                info!(id = self.guard.id, pins = ?names, "backend connection lost while pinned");
                let eof = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "backend closed while pinned",
                );
                return Err(Failure {
                    error: SessionError::BackendLost(eof),
                    reply_seq: Some(1),
                });
            }
        }
        if quitting || self.take_kept() {
            return Ok(());
        }
        let started = self.batch_started;
        // The commands that wait are dispatched next: a state diff may go
        // out with them.
        let backend = self
            .borrow_backend(started, true)
            .await
            .map_err(|error| Failure {
                error,
                reply_seq: Some(1),
            })?;
        self.guard
            .entry
            .backend_thread_id
            .store(backend.thread_id, Ordering::Release);
        self.backend = Some(backend);
        Ok(())
    }

    /// Takes back the connection the session kept after its last batch
    /// (see [`crate::pool::Keep`]) when it serves as it is: in the
    /// session's state, of the session's key, nothing the session left on
    /// it to learn, its backend neither moved nor asleep since, alive.
    /// Otherwise it goes back to the pool (where the borrow that follows
    /// finds it first, and does what it needs).
    fn take_kept(&mut self) -> bool {
        let Some(kept) = self.keep.take() else {
            return false;
        };
        let serves = self.left.is_none()
            && Rc::ptr_eq(&kept.key, &self.pool_key)
            && kept.conn.generation == self.service.generation()
            && self.service.lifecycle.is_active()
            && *kept.state == self.model.state
            && !died_idle(&kept.conn, self.batch_started);
        if !serves {
            kept.give_back();
            return false;
        }
        self.pool.count_kept_hit();
        self.guard
            .entry
            .backend_thread_id
            .store(kept.conn.thread_id, Ordering::Release);
        self.backend = Some(kept.conn);
        true
    }

    /// A backend connection in the session's state: from the pool (live,
    /// aligned) or newly opened. Whatever fails on the way drops what was
    /// lent, which closes it and frees its place. While the backend cannot
    /// be reached (an outage: stopped, restarting), the session is held —
    /// its client waits, no place in the pool is taken — and tries again
    /// with backoff, up to `outage_hold_secs` from `started`; then
    /// [`SessionError::BackendDown`]. With `pipelined`, the caller's next
    /// use of the connection is a dispatch of the client's commands, which
    /// may carry the state diff (see [`Session::align`]).
    pub(super) async fn borrow_backend(
        &mut self,
        started: std::time::Instant,
        pipelined: bool,
    ) -> Result<Lent<BackendConn>, SessionError> {
        // What the session kept is the pool's again, found first.
        if let Some(kept) = self.keep.take() {
            kept.give_back();
        }
        // Already read by whoever took the connection the session left:
        // learned now, before a state is chosen in the pool.
        self.take_left(false).await?;
        let (outage_hold, pool_wait) = {
            let settings = self.settings.load();
            (settings.outage_hold, settings.pool_wait)
        };
        let mut hold = Hold::since(started, outage_hold, Holding::Command);
        loop {
            let error = match self.borrow_once(pool_wait, pipelined).await {
                Ok(conn) => {
                    hold.got_through();
                    if hold.waited() {
                        info!(
                            id = self.guard.id,
                            held_ms = hold.held().as_millis() as u64,
                            "held through a backend outage"
                        );
                    }
                    return Ok(conn);
                }
                Err(error) if outage::is_outage(&error) => error,
                Err(error) => return Err(error),
            };
            if self.shared.shutdown.is_stopping() {
                // Nothing to wait for: the session ends with the others.
                return Err(SessionError::Shutdown);
            }
            if !hold.pause(&self.service.outage).await {
                debug!(id = self.guard.id, %error, "backend still unreachable at the end of the hold");
                return Err(hold.expired());
            }
        }
    }

    /// One try of [`Session::borrow_backend`].
    async fn borrow_once(
        &mut self,
        wait: Duration,
        pipelined: bool,
    ) -> Result<Lent<BackendConn>, SessionError> {
        let key = self.pool_key();
        // Until the connection found is the one that ran the session's
        // last command, untouched since.
        self.counts.left_connection();
        loop {
            // Nothing may yield between this check and the borrow: a
            // suspending worker counts lent connections (scaler::actor).
            self.service.wait_active().await?;
            let borrowed = self
                .pool
                .borrow(&key, &self.model.state, self.guard.id, wait)
                .await
                .map_err(SessionError::from)?;
            match borrowed {
                Borrowed::Conn(pooled) => {
                    let Pooled {
                        mut conn,
                        mut state,
                        last_session,
                    } = pooled;
                    if died_idle(&conn, self.batch_started) {
                        // Died in the pool (idle timeout on the server, a
                        // restart): let it go and borrow again.
                        continue;
                    }
                    // Opened before the service moved (the worker's tick
                    // has not closed it yet): what a session left on it
                    // is read there first, then it closes.
                    let moved = conn.generation != self.service.generation();
                    if let Some(left) = conn.left_by.take() {
                        let mine = !moved && self.left.as_ref().is_some_and(|m| left.belongs_to(m));
                        if mine {
                            // Its own, untouched since: its variables are
                            // still there, unread.
                            left.reclaim();
                            self.left = None;
                        } else {
                            // Another session's: its state leaves this
                            // connection, so it is read now (for the
                            // owner, and as the connection's state).
                            match super::left::read(left, &mut conn).await {
                                Ok(learned) => learned.apply_to(Rc::make_mut(&mut state)),
                                Err(_) => continue,
                            }
                        }
                    }
                    if let Err(error) = self.take_left(true).await {
                        conn.give_back(key, state, last_session);
                        return Err(error);
                    }
                    if moved {
                        let place = conn.close();
                        return Ok(place.fill(self.open_backend().await?));
                    }
                    if last_session == self.guard.id {
                        // Its own connection, untouched since: the
                        // server's counts are the session's (unless
                        // `align` has statements to run there first).
                        self.counts.back_on_own_connection();
                    }
                    match self.align(&mut conn, &state, pipelined).await {
                        Ok(()) => return Ok(conn),
                        Err(Some(error)) => return Err(error),
                        // Cannot be brought to this state (it has a schema,
                        // the session none): a new connection in its place.
                        Err(None) => {
                            let place = conn.close();
                            return Ok(place.fill(self.open_backend().await?));
                        }
                    }
                }
                Borrowed::Open(place) => {
                    self.take_left(true).await?;
                    return Ok(place.fill(self.open_backend().await?));
                }
            }
        }
    }

    /// Learns what the session left unread on the connection it gave back,
    /// once another session (or the worker) read it there; with `wait`,
    /// waits for that read (one round trip, under way: the connection is
    /// lent, and a borrower reads before anything else).
    async fn take_left(&mut self, wait: bool) -> Result<(), SessionError> {
        let Some(left) = self.left.clone() else {
            return Ok(());
        };
        let taken = match left.try_take() {
            Some(taken) => taken,
            None if wait => left.wait().await,
            None => return Ok(()),
        };
        self.left = None;
        match taken {
            Ok(Some(learned)) => {
                if let Some(user_variables) = learned.user_variables {
                    self.model.user_variables_read(user_variables);
                }
                if let Some(id) = learned.last_insert_id {
                    self.model.state.last_insert_id = id;
                    self.model.last_insert_id_dirty = false;
                }
                if let Some((row_count, found_rows)) = learned.counts {
                    self.counts.learned(row_count, found_rows);
                }
                Ok(())
            }
            Ok(None) => Ok(()),
            // Only the counts: they stay unknown.
            Err(()) if !left.wanted().is_state() => Ok(()),
            Err(()) => Err(SessionError::BackendLost(std::io::Error::other(
                "the backend connection holding the session's user variables closed",
            ))),
        }
    }

    /// Opens a backend connection for the session (its place in the pool
    /// is already counted) and replays the session's state onto it.
    async fn open_backend(&mut self) -> Result<BackendConn, SessionError> {
        let schema = self.model.state.schema.clone();
        let login = Login {
            user: &self.user,
            password: &self.password,
            capabilities: self.capabilities,
            collation: self.collation,
            database: schema.as_deref().map(str::as_bytes),
            attributes: &self.attributes,
            max_packet_size: self.max_packet_size,
        };
        let (mut fresh, _ok) = self.service.connect(&login).await?;
        backend::ensure_tracking(&mut fresh).await?;
        let start = SessionState {
            schema,
            ..SessionState::default()
        };
        match self.align(&mut fresh, &start, false).await {
            Ok(()) => Ok(fresh),
            Err(Some(error)) => Err(error),
            Err(None) => Err(SessionError::BackendLost(std::io::Error::other(
                "session state cannot be replayed",
            ))),
        }
    }

    /// Replays the session's state onto `conn`, whose state is `from`.
    /// `Err(None)`: no statements can get there.
    ///
    /// With `pipelined`, a diff of SETs only is not run here: it goes out
    /// in the same write as the client's commands, ahead of them, its
    /// replies swallowed (`BackendConn::state_diff`), and so costs no
    /// round trip of its own. Only SETs, because they cannot be refused
    /// for what happened since (the values are the ones the server
    /// reported, for the same account); a `USE` (its schema dropped since)
    /// or a `PREPARE` (its table dropped) can, and the client's command
    /// must then not run on a connection in another state: those diffs
    /// are run first, as before. Should a SET be refused all the same
    /// (privileges revoked in between), the session ends as it does when
    /// Torpor's own tracking setup is refused: an error, then the close —
    /// never the client's command answered as if the state were right.
    async fn align(
        &mut self,
        conn: &mut BackendConn,
        from: &SessionState,
        pipelined: bool,
    ) -> Result<(), Option<SessionError>> {
        if *from == self.model.state {
            // Nothing to replay (see `replay_onto`), and no settings to
            // read for it. Nothing was heard from the server either:
            // `idle_since` stays.
            return Ok(());
        }
        // Torpor's statements run on the connection first (now, or ahead
        // of the client's): what `ROW_COUNT()` reads there is theirs.
        self.counts.left_connection();
        if pipelined {
            let statements = self
                .model
                .state
                .diff_from(from, &self.model.baseline)
                .map_err(|_| None)?;
            if statements.iter().all(|sql| sql.starts_with("SET ")) {
                if !statements.is_empty() {
                    self.metrics.replayed(self.service.index, true);
                    debug!(
                        id = self.guard.id,
                        thread = conn.thread_id,
                        replayed = statements.len(),
                        "session state goes with the next commands"
                    );
                    conn.state_diff = statements;
                }
                return Ok(());
            }
        }
        let verify = self.shared.settings().verify_replay;
        let replayed = replay_onto(conn, from, &self.model.state, &self.model.baseline, verify)
            .await
            .inspect_err(|e| {
                if e.is_some() {
                    self.metrics.replayed(self.service.index, false);
                }
            })?;
        if replayed > 0 {
            self.metrics.replayed(self.service.index, true);
            debug!(
                id = self.guard.id,
                thread = conn.thread_id,
                replayed,
                "session state replayed"
            );
        }
        Ok(())
    }

    /// Gives the backend connection back to the pool when nothing needs it
    /// to stay: no reply owed, no command waiting, nothing pinned.
    pub(super) fn release_if_free(&mut self) {
        self.publish_pins();
        let Some(backend) = self.backend.as_ref() else {
            return;
        };
        let free = self.ledger.is_empty()
            && backend.conn.rbuf.is_empty()
            && !backend.needs_tracking
            && backend.state_diff.is_empty()
            && !self.model.is_pinned()
            && !self.model.tracking_dirty
            && self.bytes_missing().is_some()
            && !self.guard.entry.killed.load(Ordering::Acquire);
        if !free {
            return;
        }
        // `idle_since` stays when the server was last heard from: giving
        // the connection back is no sign that it lives (a login that sent
        // it nothing, then gave it back, hid a connection killed in the
        // pool from the next borrow's check).
        if let Some(mut conn) = self.backend.take() {
            let wanted = super::left::Wanted {
                user_variables: self.model.user_variables_dirty,
                last_insert_id: self.model.last_insert_id_dirty,
                counts: self.counts.leaving_unknown(),
            };
            if wanted.any() {
                // Read only when the state must leave the connection.
                let (unread, left) = super::left::Unread::new(wanted);
                conn.left_by = Some(left);
                self.left = Some(unread);
            }
            self.guard
                .entry
                .backend_thread_id
                .store(0, Ordering::Release);
            let key = self.pool_key();
            let state = self.state_to_pool();
            // Its reply's end was read a moment ago (see `drain`): that is
            // when it goes back, without another read of the clock.
            let now = if conn.idle_since >= self.batch_started {
                conn.idle_since
            } else {
                std::time::Instant::now()
            };
            if self.left.is_none() {
                // Nothing for another session to read on it first: kept
                // for the session's next statement while nobody else
                // needs it.
                conn.keep_at(&self.keep, key, state, self.guard.id, now);
            } else {
                conn.give_back_at(key, state, self.guard.id, now);
            }
        }
    }

    /// Shows the session's pins in the registry (for the admin API) when
    /// they changed; costs one comparison otherwise.
    fn publish_pins(&mut self) {
        let mask = self.model.pin_mask();
        if mask == self.pins_published {
            return;
        }
        let names: Vec<&'static str> = self.model.pins().iter().map(|p| p.name()).collect();
        self.guard.entry.set_pins(names);
        self.pins_published = mask;
    }

    /// Closes the session's backend connection (it failed, or it is in a
    /// state no other session may see); its place in the pool is freed.
    pub(super) fn drop_backend(&mut self) {
        // Dropped: closed, and its place in the pool freed.
        if self.backend.take().is_some() {
            self.guard
                .entry
                .backend_thread_id
                .store(0, Ordering::Release);
        }
    }

    /// At the end of the session: the backend connection goes back to the
    /// pool if it is clean — one the session had pinned (a lock, a
    /// temporary table, an open transaction, state Torpor cannot name) is
    /// made clean first with COM_RESET_CONNECTION, or closed — and the
    /// session's prepared statements are closed wherever they are.
    pub(super) async fn finish_backend(&mut self, clean: bool) {
        let pinned = self.model.is_pinned() || self.model.tracking_dirty;
        if clean && pinned && self.ledger.is_empty() {
            if let Some(backend) = self.backend.as_mut() {
                // Refused or failed: it is closed below.
                if let Ok(true) = backend::reset(backend).await {
                    self.model.reset(None);
                    self.model.tracking_dirty = false;
                    self.left = None;
                    self.statements.clear();
                }
            }
        }
        let session = self.guard.id;
        self.pool.for_each_idle(|conn| {
            let closed = conn.statements.remove_session(session);
            conn.to_close.extend(closed);
        });
        if let Some(conn) = self.backend.as_mut() {
            let closed = conn.statements.remove_session(session);
            conn.to_close.extend(closed);
        }
        if clean {
            self.release_if_free();
        }
        if let Some(kept) = self.keep.take() {
            kept.give_back();
        }
        self.pool.disown(session);
        self.drop_backend();
    }

    /// After a batch: reads back what the server does not report. Only
    /// when `tracking_dirty` or `unexplained_change` says there is
    /// something (the command loop tests them before it calls this).
    pub(super) async fn after_batch(&mut self) -> Result<(), Failure> {
        if self.model.tracking_dirty {
            // The client changed session_track_* (or reset the session):
            // Torpor's own tracking goes back on, the client's settings are
            // kept in the model and applied to what it is told.
            be!(self).needs_tracking = true;
            backend::ensure_tracking(be!(self)).await?;
            self.model.tracking_dirty = false;
            be!(self).idle_since = std::time::Instant::now();
        }
        // User variables and LAST_INSERT_ID(expr) are read only when the
        // session leaves the connection (super::left): a read here would
        // clear the warnings and ROW_COUNT() the client may ask for next.
        if self.model.unexplained_change {
            // Untracked state changed and no statement text explains it
            // (a stored function, a trigger): it stays here.
            self.model.unexplained_change = false;
            self.model.pin_unknown();
        }
        Ok(())
    }

    /// Prepares client statement `id` on the current backend connection
    /// (it was prepared on another one), before the command at the front
    /// of the client's buffer, which names it, goes out. If the backend
    /// refuses (the table is gone), that command gets the refusal.
    pub(super) async fn prepare_again(&mut self, id: u32) -> Result<(), Failure> {
        let Some(sql) = self.statements.get(id).map(|s| s.sql.clone()) else {
            return Ok(());
        };
        match prepare_on(be!(self), &sql).await.map_err(Failure::from)? {
            Ok(prepared) => {
                let key = BackendStatements::key(self.guard.id, id);
                let evicted = be!(self)
                    .statements
                    .insert(key, &sql, prepared.statement_id);
                be!(self).to_close.extend(evicted);
                Ok(())
            }
            Err(error) => {
                // The command that needed the statement is answered with
                // the backend's refusal instead of being sent.
                let front = read_payload(&self.client.rbuf, usize::MAX).ok().flatten();
                if let Some(front) = front {
                    let command = front.data.first().copied().and_then(Command::from_byte);
                    let consumed = front.consumed;
                    self.client.consume(consumed);
                    if command != Some(Command::StmtSendLongData) {
                        let mut wire = BytesMut::new();
                        write_payload(&mut wire, 1, &error.payload);
                        self.ledger.push_back(Pending::Local(wire));
                        self.drain(0).await?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Brings `conn`, whose state is `from`, to state `to`: runs the
/// statements of the diff (and reads them back when `verify`). Returns how
/// many ran; `Err(None)` when no statements can get there.
pub(crate) async fn replay_onto(
    conn: &mut BackendConn,
    from: &SessionState,
    to: &SessionState,
    baseline: &torpor_replay::state::Baseline,
    verify: bool,
) -> Result<usize, Option<SessionError>> {
    if from == to {
        // The common case (a connection given back and borrowed again by
        // sessions in one state): nothing to work out, nothing to run.
        conn.idle_since = std::time::Instant::now();
        return Ok(0);
    }
    let statements = to.diff_from(from, baseline).map_err(|_| None)?;
    // Pipelined: one round trip for the whole diff. After a refusal the
    // connection is not used again (the caller lets it go), so the
    // statements after it having run does no harm.
    let results = backend::run_queries(conn, &statements)
        .await
        .map_err(Some)?;
    for result in results {
        if let QueryResult::Error(payload) = result {
            return Err(Some(SessionError::BackendRefused(BackendErr { payload })));
        }
    }
    if !statements.is_empty() && verify {
        verify_replay(conn, to).await.map_err(Some)?;
    }
    conn.idle_since = std::time::Instant::now();
    Ok(statements.len())
}

/// Reads back, in one round trip, what a replay set — the schema and every
/// variable that differs from the baseline — plus the user variables, and
/// compares them with the state that was meant. Runs in debug builds (so
/// in every test) and with `verify_replay = true`.
async fn verify_replay(
    backend: &mut BackendConn,
    state: &SessionState,
) -> Result<(), SessionError> {
    let rows = match backend::run_query(backend, &verify_sql(state)).await? {
        QueryResult::Rows(rows) => rows,
        QueryResult::Error(payload) => {
            return Err(SessionError::BackendRefused(BackendErr { payload }))
        }
        QueryResult::Ok(_) => Vec::new(),
    };
    let mut mismatches = replay_mismatches(rows, state);
    let users = backend::read_user_variables(backend).await?;
    if users != state.user_variables {
        mismatches.push(format!(
            "user variables: want {:?}, have {users:?}",
            state.user_variables
        ));
    }
    replay_verdict(mismatches)
}

/// The query that reads back the schema and every variable of `state`
/// (in the order of `state.variables`).
pub(super) fn verify_sql(state: &SessionState) -> String {
    let mut sql = String::from("SELECT DATABASE()");
    for name in state.variables.keys() {
        sql.push_str(&format!(
            ", @@SESSION.{}",
            torpor_replay::state::quote_ident(name)
        ));
    }
    sql
}

/// What differs between `state` and the rows [`verify_sql`] read back.
pub(super) fn replay_mismatches(
    rows: Vec<Vec<Option<Vec<u8>>>>,
    state: &SessionState,
) -> Vec<String> {
    let row = rows.into_iter().next().unwrap_or_default();
    let text = |v: Option<&Option<Vec<u8>>>| {
        v.and_then(|v| v.as_deref()).map_or_else(
            || "NULL".to_string(),
            |b| String::from_utf8_lossy(b).into_owned(),
        )
    };
    let mut mismatches = Vec::new();
    let schema = text(row.first());
    if state.schema.as_deref().unwrap_or("NULL") != schema {
        mismatches.push(format!("schema: want {:?}, have {schema}", state.schema));
    }
    for (i, (name, want)) in state.variables.iter().enumerate() {
        let have = text(row.get(i + 1));
        if normalized(want) != normalized(&have) {
            mismatches.push(format!("{name}: want {want}, have {have}"));
        }
    }
    mismatches
}

/// A replay's check passes when nothing differs; otherwise it is logged
/// and fails as a lost connection.
pub(super) fn replay_verdict(mismatches: Vec<String>) -> Result<(), SessionError> {
    if mismatches.is_empty() {
        return Ok(());
    }
    tracing::error!(
        ?mismatches,
        "replayed session state differs from the session's"
    );
    Err(SessionError::BackendLost(std::io::Error::other(
        "replayed session state does not match",
    )))
}

/// A variable's value as text, with the spellings of a boolean made one
/// (tracking reports `ON`, `SELECT @@x` gives `1`).
fn normalized(value: &str) -> String {
    match value.to_ascii_uppercase().as_str() {
        "ON" | "1" | "TRUE" => "1".to_string(),
        "OFF" | "0" | "FALSE" => "0".to_string(),
        other => other.to_string(),
    }
}

/// Prepares `sql` on `backend`, reading the whole reply. The outer error
/// is the connection failing; the inner one the backend refusing.
pub(super) async fn prepare_on(
    backend: &mut BackendConn,
    sql: &[u8],
) -> Result<Result<PrepareOk, BackendErr>, SessionError> {
    let mut payload = Vec::with_capacity(sql.len() + 1);
    payload.push(Command::StmtPrepare as u8);
    payload.extend_from_slice(sql);
    let mut wire = BytesMut::with_capacity(payload.len() + HEADER_LEN);
    write_payload(&mut wire, 0, &payload);
    backend
        .conn
        .write_all(wire)
        .await
        .0
        .map_err(SessionError::BackendLost)?;
    let mut tracker = ReplyTracker::new(ReplyKind::Prepare, backend.capabilities).ok_or(
        SessionError::BackendProtocol(ProtocolError::Unexpected { what: "reply kind" }),
    )?;
    let mut prepared = None;
    loop {
        let (seq, packet) = read_packet(&mut backend.conn, 16 << 20)
            .await
            .map_err(SessionError::BackendLost)?;
        let header = PacketHeader {
            len: packet.len().min(torpor_protocol::MAX_PAYLOAD - 1),
            seq,
        };
        let step = tracker
            .on_packet(header, &packet)
            .map_err(SessionError::BackendProtocol)?;
        match tracker.last_packet() {
            PacketClass::Err => return Ok(Err(BackendErr { payload: packet })),
            PacketClass::PrepareOk => prepared = tracker.prepare_ok(),
            _ => {}
        }
        if matches!(step, Step::Done(_)) {
            return prepared.map(Ok).ok_or(SessionError::BackendProtocol(
                ProtocolError::Unexpected {
                    what: "prepare reply without a prepare-OK",
                },
            ));
        }
    }
}

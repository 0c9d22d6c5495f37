//! Relocation: moving a running service to a new backend (another
//! datadir, container or host) while its clients stay connected.
//!
//! Two halves. The long one runs on a thread of its own while the actor
//! keeps answering ([`prepare`]): a physical backup of the running source
//! (`mariadb-backup --stream`) is restored into the target, the target
//! starts and replicates from the source by GTID until it has caught up.
//! The short one is the actor's switch-over (`actor::relocation`'s `switch_over`): new
//! statements wait (the service is `Moving`), the source stops taking
//! writes, the target applies the last of them, and the service's address
//! changes — a new backend generation, so no connection to the source is
//! lent again and every session moves at its next statement, replaying
//! its state (and an open transaction's journal) there.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use serde::Serialize;

use super::admin_sql::{admin_connect, run_admin_sql, tcp_opts, ADMIN_IO_TIMEOUT};
use super::autoscaler::unix_ms;
use super::driver::{AdminAccess, Driver, Resources};
use crate::endpoint::Endpoint;

mod stream;

use stream::pipe;

/// How far the target may trail the source when the switch-over starts:
/// a GTID wait for the source's position of a moment ago must end within
/// this, so the statements that wait during the switch wait about as long.
const CAUGHT_UP: Duration = Duration::from_millis(250);

/// After trying this long, a target that trails by less than
/// [`CLOSE_ENOUGH`] has caught up enough.
const CLOSE_ENOUGH_AFTER: Duration = Duration::from_secs(10);

/// See [`CLOSE_ENOUGH_AFTER`].
const CLOSE_ENOUGH: Duration = Duration::from_millis(800);

/// How long the target may take to catch up before the relocation fails.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(120);

/// How long the target may take, during the switch-over, to apply what
/// the source wrote last. Less than the admin connection's read timeout,
/// so that a wait that runs out ends in its own clear message rather than
/// in a read error.
const FINAL_WAIT_SECS: u64 = 8;
const _: () = assert!(FINAL_WAIT_SECS + 1 < ADMIN_IO_TIMEOUT.as_secs());

/// A relocation as the admin API shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RelocationView {
    /// `copying`, `catching-up`, `switching`, `moved` or `failed`.
    pub phase: &'static str,
    /// When it started (ms since the Unix epoch).
    pub started_at_unix_ms: u64,
    /// The backend it moves from, and to.
    pub from: String,
    /// The backend it moves to.
    pub to: String,
    /// Bytes of the backup copied into the target so far.
    pub bytes_copied: u64,
    /// Time spent copying, ms.
    pub copy_ms: Option<u64>,
    /// Time spent catching up by replication, ms.
    pub catch_up_ms: Option<u64>,
    /// Time of the switch-over, ms.
    pub switch_ms: Option<u64>,
    /// How long new statements waited during the switch-over, ms.
    pub stall_ms: Option<u64>,
    /// From the start to the switch-over done, ms.
    pub total_ms: Option<u64>,
    /// Sessions whose pins could not move (forced: they got an error).
    pub pins_left: Vec<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// The bytes counter the copy updates (read for `bytes_copied`).
    #[serde(skip)]
    pub copied: Arc<AtomicU64>,
}

impl RelocationView {
    /// A relocation that starts now.
    pub fn starting(from: String, to: String) -> RelocationView {
        RelocationView {
            phase: "copying",
            started_at_unix_ms: unix_ms(),
            from,
            to,
            ..RelocationView::default()
        }
    }

    /// A copy for the admin API, with the bytes copied so far.
    pub fn snapshot(&self) -> RelocationView {
        let mut view = self.clone();
        view.bytes_copied = self.copied.load(Ordering::Relaxed);
        view
    }

    /// Whether it is still under way.
    pub fn under_way(&self) -> bool {
        !matches!(self.phase, "" | "moved" | "failed")
    }
}

/// A target that has caught up with its source, ready to be switched to.
pub struct Prepared {
    /// The target's driver (started and replicating, or holding a copy
    /// of data at rest).
    pub target: Box<dyn Driver>,
    /// Where sessions reach it; `None` for a parked service's move (the
    /// target starts at the next wake).
    pub endpoint: Option<Endpoint>,
    /// When the relocation started.
    pub started: Instant,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("target", &self.target.describe())
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// What [`prepare`] hands back to the actor.
#[derive(Debug)]
pub enum Prepare {
    /// Ready to switch.
    Ready(Box<Prepared>),
    /// It failed (the target is already removed): why.
    Failed(String),
}

/// What the preparing thread needs from the actor.
pub struct PrepareJob {
    /// The backup of the running source.
    pub backup: Command,
    /// What reads the source's buffer pool dump
    /// ([`Driver::hot_pages_command`]).
    pub hot_pages: Command,
    /// How to reach the source (administrative SQL, and the account the
    /// target replicates as).
    pub source: AdminAccess,
    /// Where the target reaches the source to replicate from it
    /// ([`Driver::replication_address`]).
    pub replicate_from: SocketAddr,
    /// The new backend, not started.
    pub target: Box<dyn Driver>,
    /// The limits it runs under, as the source's now.
    pub resources: Resources,
    /// The buffer pool size the source runs with now, bytes.
    pub buffer_pool_bytes: u64,
    /// The relocation's view (phase, bytes) the admin API reads.
    pub view: Arc<Mutex<RelocationView>>,
}

/// Copies the source into the target and lets it catch up, on the
/// calling thread (the actor runs it on one of its own); returns the
/// prepared target, or why not (the target then removed).
pub fn prepare(job: PrepareJob) -> Prepare {
    let started = Instant::now();
    let PrepareJob {
        backup,
        hot_pages,
        source,
        replicate_from,
        mut target,
        resources,
        buffer_pool_bytes,
        view,
    } = job;
    match copy_and_catch_up(
        backup,
        hot_pages,
        &source,
        replicate_from,
        target.as_mut(),
        resources,
        buffer_pool_bytes,
        &view,
    ) {
        Ok(endpoint) => Prepare::Ready(Box::new(Prepared {
            target,
            endpoint: Some(endpoint),
            started,
        })),
        Err(why) => {
            if let Err(e) = target.destroy() {
                tracing::warn!("removing a relocation's target: {e}");
            }
            Prepare::Failed(why)
        }
    }
}

/// A parked service's move: its stopped data copied into the target.
pub struct AtRestJob {
    /// The command that streams the stopped data out.
    pub export: Command,
    /// The new backend, not started.
    pub target: Box<dyn Driver>,
    /// The relocation's view the admin API reads.
    pub view: Arc<Mutex<RelocationView>>,
}

/// Copies a parked service's data into the target, on the calling thread;
/// returns the target, or why not (the target then removed).
pub fn prepare_at_rest(job: AtRestJob) -> Prepare {
    let started = Instant::now();
    let AtRestJob {
        mut export,
        mut target,
        view,
    } = job;
    let copied = view
        .lock()
        .map(|v| Arc::clone(&v.copied))
        .unwrap_or_default();
    let outcome = pipe(&mut export, "the copy", |stream| {
        target
            .import_at_rest(stream, &copied)
            .map_err(|e| format!("taking the copy in: {e}"))
    });
    set_phase(&view, |v| {
        v.copy_ms = Some(started.elapsed().as_millis() as u64);
        v.phase = "switching";
    });
    match outcome {
        Ok(()) => Prepare::Ready(Box::new(Prepared {
            target,
            endpoint: None,
            started,
        })),
        Err(why) => {
            if let Err(e) = target.destroy() {
                tracing::warn!("removing a relocation's target: {e}");
            }
            Prepare::Failed(why)
        }
    }
}

fn set_phase(view: &Mutex<RelocationView>, change: impl FnOnce(&mut RelocationView)) {
    if let Ok(mut view) = view.lock() {
        change(&mut view);
    }
}

#[allow(clippy::too_many_arguments)] // the job's parts, each used once
fn copy_and_catch_up(
    backup: Command,
    hot_pages: Command,
    source: &AdminAccess,
    replicate_from: SocketAddr,
    target: &mut dyn Driver,
    resources: Resources,
    buffer_pool_bytes: u64,
    view: &Mutex<RelocationView>,
) -> Result<Endpoint, String> {
    let copying = Instant::now();
    // The source's hot pages, which the target loads once started: the
    // backup's stream does not carry the dump.
    let pages = hot_page_list(source, hot_pages)
        .map_err(|e| tracing::warn!("the target starts cold: {e}"))
        .ok();
    let copied = view
        .lock()
        .map(|v| Arc::clone(&v.copied))
        .unwrap_or_default();
    let mut backup = backup;
    let gtid = copy(&mut backup, target, &copied)?;
    set_phase(view, |v| {
        v.copy_ms = Some(copying.elapsed().as_millis() as u64);
        v.phase = "catching-up";
    });
    let catching_up = Instant::now();
    let endpoint = target
        .start()
        .map_err(|e| format!("starting the target: {e}"))?;
    if let Err(e) = target.resize(resources) {
        tracing::warn!("the relocation's target keeps its own limits: {e}");
    }
    let access = target
        .admin_access()
        .ok_or("the target gives no administrative access")?;
    if let Some(pages) = pages {
        if let Err(e) = target.place_hot_pages(&pages) {
            tracing::warn!("the target starts cold: {e}");
        }
    }
    let _ = run_admin_sql(
        &access,
        &[
            format!("SET GLOBAL innodb_buffer_pool_size = {buffer_pool_bytes}"),
            "SET GLOBAL innodb_buffer_pool_load_now = ON".to_string(),
        ],
    );
    replicate(&access, source, replicate_from, &gtid)?;
    catch_up(&access, source)?;
    set_phase(view, |v| {
        v.catch_up_ms = Some(catching_up.elapsed().as_millis() as u64);
        v.phase = "switching";
    });
    Ok(endpoint)
}

/// Streams the source's backup into the target; returns the backup's
/// GTID position.
fn copy(
    backup: &mut Command,
    target: &mut dyn Driver,
    copied: &AtomicU64,
) -> Result<String, String> {
    pipe(backup, "mariadb-backup", |stream| {
        target
            .restore(stream, copied)
            .map_err(|e| format!("restoring the backup: {e}"))
    })
}

/// Quotes `text` as an SQL string literal.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Starts the target replicating from the source (reached at `from`,
/// as the source's administrative account) at `gtid`.
fn replicate(
    target: &AdminAccess,
    source: &AdminAccess,
    from: SocketAddr,
    gtid: &str,
) -> Result<(), String> {
    let mut conn = connect(target)?;
    let statements = [
        "STOP SLAVE".to_string(),
        "RESET SLAVE ALL".to_string(),
        format!("SET GLOBAL gtid_slave_pos = {}", quoted(gtid)),
        // Transactions that committed together on the source apply in
        // parallel (and others optimistically): one applier thread falls
        // behind a source under many writers and would never catch up.
        "SET GLOBAL slave_parallel_threads = 4".to_string(),
        "SET GLOBAL slave_parallel_mode = 'optimistic'".to_string(),
        format!(
            "CHANGE MASTER TO MASTER_HOST = {}, MASTER_PORT = {}, MASTER_USER = {}, MASTER_PASSWORD = {}, MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1",
            quoted(&from.ip().to_string()),
            from.port(),
            quoted(&source.user),
            quoted(&source.password),
        ),
        "START SLAVE".to_string(),
    ];
    for statement in &statements {
        conn.query_drop(statement).map_err(|e| {
            // The password is not repeated into logs.
            let shown = statement.split(", MASTER_PASSWORD").next().unwrap_or("");
            format!("{shown}: {e}")
        })?;
    }
    Ok(())
}

/// The source's buffer pool dump, written now ([`dump_hot_pages`]) and
/// read by `read` ([`Driver::hot_pages_command`]).
fn hot_page_list(source: &AdminAccess, mut read: Command) -> Result<Vec<u8>, String> {
    dump_hot_pages(source)?;
    pipe(&mut read, "the buffer pool dump's reader", |stream| {
        let mut pages = Vec::new();
        stream
            .read_to_end(&mut pages)
            .map(|_| pages)
            .map_err(|e| format!("reading the buffer pool dump: {e}"))
    })
}

/// How long the source may take to write its buffer pool dump: a list
/// of page numbers, a few MiB for the largest pools.
const DUMP_LIMIT: Duration = Duration::from_secs(5);

/// Has the source write its buffer pool dump (`ib_buffer_pool`, the
/// hot pages' numbers) and waits until it is written: the backup copies
/// the file if it is there when the backup ends, and
/// `innodb_buffer_pool_dump_now` only starts the dump.
fn dump_hot_pages(source: &AdminAccess) -> Result<(), String> {
    let mut source = connect(source)?;
    let status = |source: &mut mysql::Conn| -> Result<String, String> {
        source
            .query_first::<(String, String), _>(
                "SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_dump_status'",
            )
            .map(|row| row.map(|(_, value)| value).unwrap_or_default())
            .map_err(|e| format!("reading the dump's status: {e}"))
    };
    let before = status(&mut source)?;
    source
        .query_drop("SET GLOBAL innodb_buffer_pool_dump_now = ON")
        .map_err(|e| format!("asking for the buffer pool dump: {e}"))?;
    let deadline = Instant::now() + DUMP_LIMIT;
    loop {
        let now = status(&mut source)?;
        // "Buffer pool(s) dump completed at <time>", with a new time. The
        // time is to the second: a dump ending in the same second as the
        // one before looks unchanged and costs the wait's limit (it is
        // written all the same).
        if now != before && now.contains("dump completed") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the buffer pool dump did not end in {DUMP_LIMIT:?}: {now}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn connect(access: &AdminAccess) -> Result<mysql::Conn, String> {
    admin_connect(tcp_opts(access.address), &access.user, &access.password)
}

/// The position the source's binary log has reached.
fn source_position(source: &mut mysql::Conn) -> Result<String, String> {
    source
        .query_first::<String, _>("SELECT @@GLOBAL.gtid_binlog_pos")
        .map_err(|e| format!("reading the source's position: {e}"))
        .map(Option::unwrap_or_default)
}

/// Waits on the target for `position`, up to `secs`: true once reached.
fn reached(target: &mut mysql::Conn, position: &str, secs: f64) -> Result<bool, String> {
    let waited: Option<i64> = target
        .query_first(format!(
            "SELECT MASTER_GTID_WAIT({}, {secs})",
            quoted(position)
        ))
        .map_err(|e| format!("waiting for the target: {e}"))?;
    Ok(waited == Some(0))
}

/// Why the target's replication stopped, if it did.
fn replication_error(target: &mut mysql::Conn) -> Option<String> {
    let row: mysql::Row = target.query_first("SHOW SLAVE STATUS").ok()??;
    let field = |name: &str| -> String {
        row.get_opt::<String, _>(name)
            .and_then(Result::ok)
            .unwrap_or_default()
    };
    let (io, sql) = (field("Slave_IO_Running"), field("Slave_SQL_Running"));
    let error = [field("Last_IO_Error"), field("Last_SQL_Error")]
        .into_iter()
        .filter(|e| !e.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    (sql == "No" || (io == "No" && !error.is_empty()))
        .then(|| format!("replication stopped (io {io}, sql {sql}): {error}"))
}

/// Waits until the target trails the source by less than [`CAUGHT_UP`]
/// — or, once it has tried for [`CLOSE_ENOUGH_AFTER`], by less than
/// [`CLOSE_ENOUGH`]: under a steady write load a replica may follow
/// closely without ever being level, and the switch-over's own wait
/// (writes stopped) is then that short.
fn catch_up(target: &AdminAccess, source: &AdminAccess) -> Result<(), String> {
    let mut target = connect(target)?;
    let mut source = connect(source)?;
    let started = Instant::now();
    let deadline = started + CATCH_UP_LIMIT;
    loop {
        let position = source_position(&mut source)?;
        let asked = Instant::now();
        let bar = if started.elapsed() < CLOSE_ENOUGH_AFTER {
            CAUGHT_UP
        } else {
            CLOSE_ENOUGH
        };
        if reached(&mut target, &position, 1.0)? && asked.elapsed() < bar {
            return Ok(());
        }
        if let Some(error) = replication_error(&mut target) {
            return Err(error);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the target did not catch up within {}s",
                CATCH_UP_LIMIT.as_secs()
            ));
        }
    }
}

/// The source, stopped taking writes for the switch-over: the lock lives
/// as long as this value (dropped, its connection closes and the lock
/// goes, while `read_only` stays until the server does;
/// [`Fenced::release`] lifts both).
pub struct Fenced {
    conn: mysql::Conn,
    /// The position the target must reach.
    pub position: String,
}

impl Fenced {
    /// The switch-over was abandoned: the source takes writes again.
    pub fn release(mut self) {
        let _ = self.conn.query_drop("SET GLOBAL read_only = OFF");
        let _ = self.conn.query_drop("UNLOCK TABLES");
    }
}

/// Stops the source taking writes: waits (up to `lock_wait`) for the
/// statements running there, blocks every later write and commit, and
/// reads the position its binary log stopped at.
pub fn fence(source: &AdminAccess, lock_wait: Duration) -> Result<Fenced, String> {
    let mut conn = connect(source)?;
    let statements = [
        format!(
            "SET SESSION lock_wait_timeout = {}",
            lock_wait.as_secs().max(1)
        ),
        "FLUSH TABLES WITH READ LOCK".to_string(),
        "SET GLOBAL read_only = ON".to_string(),
    ];
    for statement in &statements {
        conn.query_drop(statement)
            .map_err(|e| format!("fencing the source ({statement}): {e}"))?;
    }
    let position = source_position(&mut conn)?;
    Ok(Fenced { conn, position })
}

/// On the target: applies the source's last writes (up to the fenced
/// position), then stops replicating and takes writes as the service's
/// own backend.
pub fn promote(target: &AdminAccess, position: &str) -> Result<(), String> {
    let mut conn = connect(target)?;
    if !reached(&mut conn, position, FINAL_WAIT_SECS as f64)? {
        return Err(format!(
            "the target did not reach the source's position {position} within {FINAL_WAIT_SECS}s"
        ));
    }
    for statement in [
        "STOP SLAVE",
        "RESET SLAVE ALL",
        "SET GLOBAL read_only = OFF",
    ] {
        conn.query_drop(statement)
            .map_err(|e| format!("promoting the target ({statement}): {e}"))?;
    }
    Ok(())
}

/// Stops and removes a relocated service's old backend, on a thread of
/// its own (it may take seconds; nothing waits for it). Its `fence`, if
/// any, is lifted only once it is gone (see the actor's switch-over).
pub fn retire(mut old: Box<dyn Driver>, service: String, fence: Option<Fenced>) {
    let _ = std::thread::Builder::new()
        .name(format!("torpor-retire-{service}"))
        .spawn(move || {
            if let Err(e) = old.destroy() {
                tracing::warn!(%service, "removing the old backend after a relocation: {e}");
            } else {
                tracing::info!(%service, "old backend removed after a relocation");
            }
            drop(fence);
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_quotes_and_backslashes_inside_the_literal() {
        assert_eq!(quoted("0-1-5"), "'0-1-5'");
        assert_eq!(quoted("it's"), "'it\\'s'");
        assert_eq!(quoted("a\\b"), "'a\\\\b'");
    }

    #[test]
    fn a_view_is_under_way_until_it_moved_or_failed() {
        let mut view = RelocationView::starting("a".into(), "b".into());
        assert!(view.under_way());
        view.copied.store(42, Ordering::Relaxed);
        assert_eq!(view.snapshot().bytes_copied, 42);
        view.phase = "moved";
        assert!(!view.under_way());
        assert!(!RelocationView::default().under_way());
    }
}

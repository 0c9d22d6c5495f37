//! Keeps each service's [`AccountBook`] fresh: one control-plane thread
//! reads `mysql.global_priv` with an admin account when a session changed
//! accounts through Torpor, when a login found no account (at most once a
//! second per service, so failed logins cannot hammer the backend), and
//! every refresh period; never while the service sleeps (its last book,
//! also kept on disk, checks logins then).
//!
//! Workers only read the book (one lock-free load) and, on a miss, ask for
//! a read and wait for it, bounded.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use event_listener::Event;
use tracing::{debug, info, warn};

use super::book::{AccountBook, BackendAccount};
use crate::endpoint::Endpoint;
use crate::scaler::admin_sql;
use crate::scaler::driver::AdminAccess;
use crate::service::lifecycle::State;
use crate::service::Service;
use crate::tls::backend::BackendTls;

/// How the refresher reaches a backend as an account that may read
/// `mysql.global_priv`.
#[derive(Debug, Clone)]
pub struct AdminLogin {
    /// Where the backend listens.
    pub endpoint: Endpoint,
    /// The account.
    pub user: String,
    /// Its password.
    pub password: String,
}

impl From<AdminAccess> for AdminLogin {
    fn from(access: AdminAccess) -> AdminLogin {
        AdminLogin {
            endpoint: Endpoint::Tcp(access.address),
            user: access.user,
            password: access.password,
        }
    }
}

/// How long a login that found no account waits for a fresh read.
const MISS_WAIT: Duration = Duration::from_secs(3);

/// A login miss asks for a read at most this often per service.
const MISS_INTERVAL: Duration = Duration::from_secs(1);

/// The query that reads the accounts. `JSON_VALUE` of `global_priv`
/// (MariaDB 10.4+); a missing plugin is the old default.
const ACCOUNTS_SQL: &str = "SELECT User, Host, \
     IFNULL(JSON_VALUE(Priv, '$.plugin'), 'mysql_native_password'), \
     IFNULL(JSON_VALUE(Priv, '$.authentication_string'), '') \
     FROM mysql.global_priv";

/// Whether the backend resolves client addresses to names.
const SKIPS_SQL: &str = "SELECT @@skip_name_resolve";

/// One service's accounts and the bookkeeping of their reads.
#[derive(Debug)]
pub struct AccountKeeper {
    book: ArcSwap<AccountBook>,
    /// Statements that may change accounts, sent and not yet answered:
    /// logins wait for them (and the read that follows) rather than use
    /// a book they are about to make stale.
    changes_in_flight: AtomicU64,
    /// Reads asked for, numbered from 1.
    requested: AtomicU64,
    /// The highest request number a finished read (or failed attempt)
    /// answers.
    answered: AtomicU64,
    /// When a login miss last asked, in milliseconds since `epoch`.
    last_miss_ms: AtomicU64,
    epoch: Instant,
    /// Notified after every attempt.
    attempted: Event,
    /// How to reach the backend as an admin; `None`: accounts are not read
    /// (no admin account known, or the backend is not running).
    access: Mutex<Option<AdminLogin>>,
    /// Whether this service reads accounts at all.
    enabled: AtomicBool,
    /// Wakes the refresher thread (set when it starts).
    wake: OnceLock<Arc<Event>>,
}

impl Default for AccountKeeper {
    fn default() -> Self {
        AccountKeeper {
            book: ArcSwap::from_pointee(AccountBook::default()),
            changes_in_flight: AtomicU64::new(0),
            requested: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            last_miss_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            attempted: Event::new(),
            access: Mutex::new(None),
            enabled: AtomicBool::new(false),
            wake: OnceLock::new(),
        }
    }
}

impl AccountKeeper {
    /// The accounts as last read.
    pub fn book(&self) -> arc_swap::Guard<Arc<AccountBook>> {
        self.book.load()
    }

    /// Replaces the book (a read, or the saved one at start).
    pub fn set_book(&self, book: AccountBook) {
        self.book.store(Arc::new(book));
    }

    /// Records how to reach the backend as an admin (a static backend's
    /// configured account, or a managed one's once it runs); `None` when it
    /// stopped.
    pub fn set_access(&self, access: Option<AdminLogin>) {
        if access.is_some() {
            self.enabled.store(true, Ordering::Release);
        }
        if let Ok(mut slot) = self.access.lock() {
            *slot = access;
        }
    }

    fn access(&self) -> Option<AdminLogin> {
        self.access.lock().ok().and_then(|a| a.clone())
    }

    /// Whether accounts are read from this service's backend.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Asks for a read (a session changed accounts); returns its number.
    pub fn request_refresh(&self) -> u64 {
        let number = self.requested.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some(wake) = self.wake.get() {
            wake.notify(usize::MAX);
        }
        number
    }

    /// Waits, bounded, until no statement that may change accounts is in
    /// flight and no asked-for read is pending: a login must not use a book
    /// that a `DROP USER` or `ALTER USER` the client already saw succeed is
    /// about to change. Costs two atomic loads when nothing is pending.
    pub async fn settle(&self) {
        if !self.enabled() {
            return;
        }
        let deadline = Instant::now() + MISS_WAIT;
        loop {
            let listener = self.attempted.listen();
            if self.changes_in_flight.load(Ordering::Acquire) == 0 && !self.pending() {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || crate::timer::timeout(left, listener).await.is_err() {
                return;
            }
        }
    }

    /// A login found no account (or a wrong password): asks for a read
    /// unless one was asked for a moment ago, and waits for the newest
    /// asked-for read to finish, bounded. Returns whether a read finished
    /// (the caller looks again).
    pub async fn refresh_for_miss(&self) -> bool {
        if !self.enabled() {
            return false;
        }
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        let last = self.last_miss_ms.load(Ordering::Acquire);
        let pending =
            self.requested.load(Ordering::Acquire) > self.answered.load(Ordering::Acquire);
        let target = if pending {
            self.requested.load(Ordering::Acquire)
        } else if (last == 0 || now_ms.saturating_sub(last) >= MISS_INTERVAL.as_millis() as u64)
            && self
                .last_miss_ms
                .compare_exchange(last, now_ms.max(1), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.request_refresh()
        } else {
            return false;
        };
        let deadline = Instant::now() + MISS_WAIT;
        loop {
            let listener = self.attempted.listen();
            if self.answered.load(Ordering::Acquire) >= target {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || crate::timer::timeout(left, listener).await.is_err() {
                return self.answered.load(Ordering::Acquire) >= target;
            }
        }
    }

    /// Whether a read is asked for and not yet done.
    fn pending(&self) -> bool {
        self.requested.load(Ordering::Acquire) > self.answered.load(Ordering::Acquire)
    }

    fn answer(&self, up_to: u64) {
        self.answered.fetch_max(up_to, Ordering::AcqRel);
        self.attempted.notify(usize::MAX);
    }
}

/// A statement that may change accounts, from when it is sent until its
/// reply came (or its session ended): logins wait meanwhile, and a read
/// of the accounts follows its end.
#[derive(Debug)]
pub struct AccountChange {
    service: Arc<Service>,
}

impl AccountChange {
    /// Marks a change of `service`'s accounts as in flight.
    pub fn start(service: Arc<Service>) -> AccountChange {
        service
            .accounts
            .changes_in_flight
            .fetch_add(1, Ordering::AcqRel);
        AccountChange { service }
    }
}

impl Drop for AccountChange {
    fn drop(&mut self) {
        let keeper = &self.service.accounts;
        // The read is asked for before the change stops counting, so a
        // waiting login never sees neither.
        keeper.request_refresh();
        keeper.changes_in_flight.fetch_sub(1, Ordering::AcqRel);
        keeper.attempted.notify(usize::MAX);
    }
}

/// Where a service's book is kept between runs.
pub fn book_path(state_dir: &std::path::Path, service: &str) -> PathBuf {
    state_dir.join("accounts").join(format!("{service}.json"))
}

/// Reads the accounts of the backend `access` reaches, and whether it
/// resolves client addresses to names; over TLS when the service's
/// backend leg uses it (`tls`, the sessions' own settings).
pub fn read_accounts(access: &AdminLogin, tls: Option<&BackendTls>) -> Result<AccountBook, String> {
    if let (Some(tls), Endpoint::Tcp(_)) = (tls, &access.endpoint) {
        let mut replies = super::over_tls::query(access, tls, &[ACCOUNTS_SQL, SKIPS_SQL])?;
        let skips = replies.pop().unwrap_or_default();
        let rows = replies.pop().unwrap_or_default();
        let text = super::over_tls::text;
        let accounts = rows
            .iter()
            .map(|row| BackendAccount {
                user: text(row.first()),
                host: text(row.get(1)),
                plugin: text(row.get(2)),
                authentication_string: text(row.get(3)),
            })
            .collect();
        let skips = skips.first().map(|row| text(row.first()));
        return Ok(AccountBook::new(accounts, skips.as_deref() != Some("1")));
    }
    use mysql::prelude::Queryable;
    // Never the host's socket that @@socket names (the mysql crate's
    // default): this account must reach this backend only.
    let opts = match &access.endpoint {
        Endpoint::Tcp(address) => admin_sql::tcp_opts(*address),
        Endpoint::Unix(path) => admin_sql::socket_opts(path),
    };
    let mut conn = admin_sql::admin_connect(opts, &access.user, &access.password)?;
    let rows: Vec<(String, String, String, String)> =
        conn.query(ACCOUNTS_SQL).map_err(|e| e.to_string())?;
    let skips: Option<i64> = conn.query_first(SKIPS_SQL).map_err(|e| e.to_string())?;
    let accounts = rows
        .into_iter()
        .map(
            |(user, host, plugin, authentication_string)| BackendAccount {
                user,
                host,
                plugin,
                authentication_string,
            },
        )
        .collect();
    Ok(AccountBook::new(accounts, skips != Some(1)))
}

/// The thread that keeps the books fresh; stopped on drop.
pub struct Refresher {
    handle: Option<std::thread::JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
    wake: Arc<Event>,
}

impl Refresher {
    /// Loads each service's saved book, and starts the thread that keeps
    /// them fresh (every `period`, and when asked). `services` gives the
    /// services by index each time the thread looks (services created
    /// while Torpor runs join the list: their saved book is loaded and
    /// they are read from then on).
    pub fn start(
        services: impl Fn() -> Arc<Vec<Arc<Service>>> + Send + 'static,
        state_dir: PathBuf,
        period: Duration,
    ) -> std::io::Result<Refresher> {
        let wake = Arc::new(Event::new());
        let known = services();
        for service in known.iter() {
            adopt(service, &wake, &state_dir);
        }
        let stopping = Arc::new(AtomicBool::new(false));
        let handle = {
            let (wake, stopping) = (Arc::clone(&wake), Arc::clone(&stopping));
            std::thread::Builder::new()
                .name("torpor-accounts".into())
                .spawn(move || {
                    refresh_loop(&services, known.len(), &state_dir, period, &wake, &stopping)
                })?
        };
        Ok(Refresher {
            handle: Some(handle),
            stopping,
            wake,
        })
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.signal();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }

    fn signal(&self) {
        self.stopping.store(true, Ordering::Release);
        self.wake.notify(usize::MAX);
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        self.signal();
    }
}

impl AccountKeeper {
    /// Makes `wake` the event that wakes the refresher (once, at start).
    fn share_wake(&self, wake: &Arc<Event>) {
        let _ = self.wake.set(Arc::clone(wake));
    }
}

/// Joins `service` to the refresher: its keeper wakes the thread, and
/// its saved book checks logins until the first read.
fn adopt(service: &Service, wake: &Arc<Event>, state_dir: &std::path::Path) {
    // All keepers wake the one thread.
    service.accounts.share_wake(wake);
    let path = book_path(state_dir, &service.name);
    match AccountBook::load(&path) {
        Ok(book) => {
            debug!(service = %service.name, accounts = book.len(), "accounts loaded from {}", path.display());
            service.accounts.set_book(book);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            warn!(service = %service.name, "cannot read saved accounts {}: {e}", path.display())
        }
    }
}

fn refresh_loop(
    services: &dyn Fn() -> Arc<Vec<Arc<Service>>>,
    adopted: usize,
    state_dir: &std::path::Path,
    period: Duration,
    wake: &Arc<Event>,
    stopping: &AtomicBool,
) {
    let mut last_read: Vec<Option<Instant>> = vec![None; adopted];
    let mut last_error: Vec<Option<String>> = vec![None; adopted];
    // What each service's sleep file holds (crate::service::kept): this
    // thread already visits every service each second, off the data
    // path, so it also writes the file when a greeting or a baseline is
    // first learned, and a Torpor that crashes still restarts without
    // waking anything.
    let mut kept: Vec<(bool, usize)> = services()
        .iter()
        .map(|s| crate::service::kept::known(s))
        .collect();
    while !stopping.load(Ordering::Acquire) {
        let listener = wake.listen();
        let services = services();
        // Services created since the last look.
        for service in services.iter().skip(last_read.len()) {
            adopt(service, wake, state_dir);
        }
        last_read.resize(services.len(), None);
        last_error.resize(services.len(), None);
        kept.resize(services.len(), (false, 0));
        for (service, saved) in services.iter().zip(kept.iter_mut()) {
            let now = crate::service::kept::known(service);
            if now == *saved || !service.is_managed() {
                continue;
            }
            match crate::service::kept::save(service, state_dir) {
                Ok(()) => *saved = now,
                Err(e) => {
                    warn!(service = %service.name, "cannot keep its greeting: {e}");
                    // Not again every second.
                    *saved = now;
                }
            }
        }
        for (i, service) in services.iter().enumerate() {
            let keeper = &service.accounts;
            let due = last_read[i].is_none_or(|at| at.elapsed() >= period);
            if !(keeper.pending() || due) {
                continue;
            }
            let asked = keeper.requested.load(Ordering::Acquire);
            let access = keeper.access();
            // A read asked for (an account statement just ran) is made
            // while the service is still on its way to sleep too: a park
            // right after a CREATE USER must not leave the user out of the
            // book that checks logins while it is parked.
            let state = service.lifecycle.state();
            let serving = state == State::Active
                || (asked > keeper.answered.load(Ordering::Acquire) && state == State::Suspending);
            let Some(access) = access.filter(|_| serving) else {
                // Asleep or unreachable: logins use the last book.
                keeper.answer(asked);
                continue;
            };
            match read_accounts(&access, service.backend_tls()) {
                Ok(book) => {
                    last_error[i] = None;
                    last_read[i] = Some(Instant::now());
                    if **keeper.book() != book {
                        info!(service = %service.name, accounts = book.len(), "accounts read from the backend");
                        if let Err(e) = book.save(&book_path(state_dir, &service.name)) {
                            warn!(service = %service.name, "cannot save the accounts: {e}");
                        }
                        keeper.set_book(book);
                    }
                }
                Err(e) => {
                    last_read[i] = Some(Instant::now());
                    if last_error[i].as_ref() != Some(&e) {
                        warn!(service = %service.name, "cannot read accounts from the backend: {e}");
                    }
                    last_error[i] = Some(e);
                }
            }
            keeper.answer(asked);
        }
        let _ = event_listener::Listener::wait_timeout(listener, Duration::from_secs(1));
    }
}

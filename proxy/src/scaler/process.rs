//! Runs `mariadbd` directly: a datadir initialized by `mariadb-install-db`,
//! a free loopback port, its own socket, accounts created at boot through
//! `--init-file` (so no client program is needed), and "ready" meaning a
//! MySQL handshake arrived, not merely that the process started.
//!
//! Dropping a [`MariadbProcess`] stops the server and removes a datadir it
//! created. The child also gets `PR_SET_PDEATHSIG`, so a test binary that
//! dies mid-run does not leave servers behind. That signal fires when the
//! *thread* that forked the child ends, so each server is forked, and
//! later stopped, by a keeper thread that lives exactly as long as its
//! [`MariadbProcess`], whichever thread called [`MariadbProcess::start`].

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Why a private MariaDB could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// A program is not installed. Torpor never installs anything
    /// itself: a server does not change its host.
    #[error("{program} is not installed (looked in PATH and the sbin folders): install it first, on Debian `sudo apt-get install -y {package}`")]
    NotInstalled {
        /// The program looked for.
        program: &'static str,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// A step failed with an I/O error.
    #[error("{step}: {source}")]
    Io {
        /// What was being done.
        step: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// `mariadb-install-db` failed.
    #[error("mariadb-install-db failed: {0}")]
    InstallDb(String),
    /// The server exited or never answered a handshake.
    #[error("mariadbd did not become ready: {0}")]
    NotReady(String),
}

/// An account to create at boot, with its grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// User name (host `%`).
    pub user: String,
    /// Plaintext password, or a native hash (`*` and 40 hex digits, as
    /// `PASSWORD()` shows it).
    pub password: String,
    /// What it may do, each as `PRIVILEGES ON OBJECT`, optionally ending
    /// in `WITH GRANT OPTION` (e.g. `ALL PRIVILEGES ON test.*`): the
    /// account gets these and nothing else.
    pub grants: Vec<String>,
}

/// Every privilege on everything, and the right to grant them: the
/// scaler's own admin account, and the test harness's accounts.
pub const GRANT_EVERYTHING: &str = "ALL PRIVILEGES ON *.* WITH GRANT OPTION";

/// The database every MariaDB Torpor runs has (created at each start).
pub const DEFAULT_DATABASE: &str = "test";

/// What a managed account may do when the configuration does not say:
/// what the official MariaDB image gives `MARIADB_USER`, every privilege
/// on its database (here [`DEFAULT_DATABASE`]), no global rights, no
/// grant option.
pub fn default_grants() -> Vec<String> {
    vec![format!("ALL PRIVILEGES ON `{DEFAULT_DATABASE}`.*")]
}

impl Account {
    /// An account with every privilege on everything, grant option
    /// included ([`GRANT_EVERYTHING`]).
    pub fn superuser(user: &str, password: &str) -> Account {
        Account {
            user: user.to_string(),
            password: password.to_string(),
            grants: vec![GRANT_EVERYTHING.to_string()],
        }
    }
}

/// Checks one grant of the configuration: `PRIVILEGES ON OBJECT`,
/// optionally `WITH GRANT OPTION`, one statement's worth.
pub fn check_grant(grant: &str) -> Result<(), String> {
    let (body, _) = split_grant_option(grant);
    let upper = body.to_ascii_uppercase();
    match upper.find(" ON ") {
        Some(at) if at > 0 && !upper[at + 4..].trim().is_empty() && !grant.contains(';') => Ok(()),
        _ => Err(format!(
            "grant '{grant}': write it as PRIVILEGES ON OBJECT, e.g. \"SELECT, INSERT ON shop.*\", optionally ending in WITH GRANT OPTION"
        )),
    }
}

/// `grant` without a trailing `WITH GRANT OPTION`, and whether it had one.
fn split_grant_option(grant: &str) -> (&str, bool) {
    let trimmed = grant.trim();
    const SUFFIX: &str = " WITH GRANT OPTION";
    match trimmed.len().checked_sub(SUFFIX.len()) {
        Some(at) if trimmed.is_char_boundary(at) && trimmed[at..].eq_ignore_ascii_case(SUFFIX) => {
            (trimmed[..at].trim_end(), true)
        }
        _ => (trimmed, false),
    }
}

/// Whether `secret` is a native password hash rather than a password.
pub fn is_native_hash(secret: &str) -> bool {
    secret.len() == 41
        && secret.starts_with('*')
        && secret[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// How to start a private MariaDB.
#[derive(Debug, Clone)]
pub struct MariadbOptions {
    /// Datadir to use; a temporary one (removed on drop) when `None`. An
    /// existing initialized datadir is reused as it is.
    pub datadir: Option<PathBuf>,
    /// Port to listen on (loopback); a free one when `None`.
    pub port: Option<u16>,
    /// Accounts to create, each with its grants (and nothing else).
    pub accounts: Vec<Account>,
    /// InnoDB buffer pool size, e.g. `128M`.
    pub buffer_pool: String,
    /// Further `mariadbd` options, e.g. `--max-connections=2000`.
    pub extra_args: Vec<String>,
    /// How long to wait for the first handshake.
    pub ready_timeout: Duration,
    /// `cgroup.procs` files `mariadbd` joins before it runs its first
    /// instruction (a cgroup of Torpor's own): every page it touches is
    /// charged there, which a move after the start would not do.
    pub cgroup_procs: Vec<PathBuf>,
}

impl Default for MariadbOptions {
    fn default() -> Self {
        MariadbOptions {
            datadir: None,
            port: None,
            accounts: Vec::new(),
            buffer_pool: "128M".to_string(),
            extra_args: Vec::new(),
            ready_timeout: Duration::from_secs(60),
            cgroup_procs: Vec::new(),
        }
    }
}

/// A running private `mariadbd`.
#[derive(Debug)]
pub struct MariadbProcess {
    keeper: Option<Keeper>,
    addr: SocketAddr,
    datadir: PathBuf,
    socket: PathBuf,
    /// Keeps a temporary run directory alive; removed on drop.
    _rundir: tempfile::TempDir,
    _tempdata: Option<tempfile::TempDir>,
}

/// Finds an installed MariaDB program by any of its names, looking in
/// `PATH` and in the sbin folders Debian installs `mariadbd` into.
pub fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = [
        "/usr/sbin",
        "/usr/local/sbin",
        "/usr/bin",
        "/usr/local/bin",
        "/usr/libexec",
    ];
    let dirs = std::env::split_paths(&path).chain(extra.iter().map(PathBuf::from));
    for dir in dirs {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn io(step: &'static str) -> impl FnOnce(std::io::Error) -> ProcessError {
    move |source| ProcessError::Io { step, source }
}

/// SQL string literal with quotes and backslashes escaped.
fn sql_quote(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

impl MariadbProcess {
    /// Initializes (when needed) and starts a server; returns once it
    /// answers with a handshake.
    pub fn start(options: MariadbOptions) -> Result<MariadbProcess, ProcessError> {
        let mariadbd = require_program(&["mariadbd", "mysqld"], "mariadb-server")?;
        let rundir = tempfile::Builder::new()
            .prefix("torpor-mariadb-run-")
            .tempdir()
            .map_err(io("creating the run directory"))?;
        let (datadir, tempdata) = match &options.datadir {
            Some(dir) => (dir.clone(), None),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("torpor-mariadb-data-")
                    .tempdir()
                    .map_err(io("creating the datadir"))?;
                (dir.path().to_path_buf(), Some(dir))
            }
        };
        if !datadir.join("mysql").is_dir() {
            install_db(&datadir)?;
        }
        let init_file = rundir.path().join("init.sql");
        std::fs::write(&init_file, init_sql(&options.accounts)).map_err(io("writing init.sql"))?;
        let socket = rundir.path().join("mysqld.sock");
        // A port picked as free can be taken before mariadbd binds it; try
        // a few times when the port was ours to choose.
        let attempts = if options.port.is_some() { 1 } else { 5 };
        let mut last_error = String::new();
        for _ in 0..attempts {
            let port = match options.port {
                Some(port) => port,
                None => free_port().map_err(io("finding a free port"))?,
            };
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut command = Command::new(&mariadbd);
            command
                .arg("--no-defaults")
                .arg(format!("--datadir={}", datadir.display()))
                .arg(format!("--port={port}"))
                .arg("--bind-address=127.0.0.1")
                .arg(format!("--socket={}", socket.display()))
                .arg(format!(
                    "--pid-file={}",
                    rundir.path().join("mysqld.pid").display()
                ))
                .arg(format!(
                    "--log-error={}",
                    rundir.path().join("error.log").display()
                ))
                .arg(format!("--init-file={}", init_file.display()))
                .arg(format!("--tmpdir={}", rundir.path().display()))
                .arg(format!("--innodb-buffer-pool-size={}", options.buffer_pool))
                .arg("--skip-name-resolve")
                .arg("--max-connections=2000")
                .arg("--max-allowed-packet=1G")
                .arg("--local-infile=1")
                .arg("--innodb-log-file-size=48M")
                .arg("--innodb-flush-log-at-trx-commit=2")
                .args(&options.extra_args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if running_as_root() {
                command.arg("--user=root");
            }
            // Made before the fork: the child may not allocate.
            let cgroup_procs: Vec<std::ffi::CString> = options
                .cgroup_procs
                .iter()
                .filter_map(|path| std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok())
                .collect();
            // SAFETY: the closure runs in the child between fork and exec and
            // only calls prctl, setpgid, open, write and close on buffers
            // made before the fork, all async-signal-safe.
            unsafe {
                command.pre_exec(move || {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    // A process group of its own. In Torpor's group, a
                    // frozen (SIGSTOP) server is thawed behind the
                    // scaler's back: when Torpor's parent is outside its
                    // session (systemd, a container's init, a detached
                    // shell) the group is orphaned, and the kernel sends
                    // SIGHUP and SIGCONT to an orphaned group that holds a
                    // stopped process whenever one of its processes exits
                    // (seen here: a warm pool's frozen server running
                    // again 20 s after it was frozen).
                    libc::setpgid(0, 0);
                    for procs in &cgroup_procs {
                        // "0": the writing process itself.
                        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                        if fd < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                        libc::close(fd);
                        if written != 1 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
            match Keeper::spawn(command, addr, options.ready_timeout) {
                Ok(keeper) => {
                    return Ok(MariadbProcess {
                        keeper: Some(keeper),
                        addr,
                        datadir,
                        socket,
                        _rundir: rundir,
                        _tempdata: tempdata,
                    });
                }
                Err(e) => {
                    last_error = format!("{e}; log: {}", tail(&rundir.path().join("error.log")));
                }
            }
        }
        Err(ProcessError::NotReady(last_error))
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's Unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The datadir.
    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.keeper.as_ref().map(|k| k.pid)
    }

    /// Stops the server (SIGTERM, then SIGKILL after 30 s) and waits for it.
    pub fn stop(&mut self) {
        if let Some(keeper) = self.keeper.take() {
            keeper.stop();
        }
    }
}

/// The thread that forked a `mariadbd` and stops it when told (or when
/// its [`MariadbProcess`] is dropped).
#[derive(Debug)]
struct Keeper {
    pid: u32,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Keeper {
    /// Forks the server from a new keeper thread and waits until it is
    /// ready (or failed, in which case the keeper has already stopped it).
    fn spawn(mut command: Command, addr: SocketAddr, timeout: Duration) -> Result<Keeper, String> {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<u32, String>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("mariadbd-keeper".into())
            .spawn(move || {
                let mut child = match command.spawn() {
                    Ok(child) => child,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("starting mariadbd: {e}")));
                        return;
                    }
                };
                if let Err(e) = wait_ready(&mut child, addr, timeout) {
                    stop_child(&mut child);
                    let _ = ready_tx.send(Err(e));
                    return;
                }
                let _ = ready_tx.send(Ok(child.id()));
                // Until told to stop, or until the MariadbProcess is gone.
                let _ = stop_rx.recv();
                stop_child(&mut child);
            })
            .map_err(|e| format!("starting the keeper thread: {e}"))?;
        match ready_rx.recv() {
            Ok(Ok(pid)) => Ok(Keeper {
                pid,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err("the keeper thread died".to_string()),
        }
    }

    /// Stops the server and waits for the keeper to finish.
    fn stop(mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn wait_ready(child: &mut Child, addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("mariadbd exited with {status}"));
        }
        if handshake_arrives(addr) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("no handshake within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop_child(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill only sends a signal to our own child's pid. A
        // frozen server (suspended, or a warm pool's) holds the SIGTERM
        // until it runs again: SIGCONT lets it shut down now.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
            libc::kill(pid, libc::SIGCONT);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for MariadbProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Checks that MariaDB's server is installed, and says what to install
/// when it is not: Torpor runs `mariadbd`, it never installs it (README's
/// first command, or the image, does).
pub fn ensure_installed() -> Result<(), ProcessError> {
    require_program(&["mariadbd", "mysqld"], "mariadb-server")?;
    require_program(
        &["mariadb-install-db", "mysql_install_db"],
        "mariadb-server",
    )
    .map(|_| ())
}

/// Finds a program by any of its names, or says which Debian `package`
/// holds it.
pub fn require_program(
    names: &[&'static str],
    package: &'static str,
) -> Result<PathBuf, ProcessError> {
    find_program(names).ok_or(ProcessError::NotInstalled {
        program: names.first().copied().unwrap_or("program"),
        package,
    })
}

fn install_db(datadir: &Path) -> Result<(), ProcessError> {
    let install = require_program(
        &["mariadb-install-db", "mysql_install_db"],
        "mariadb-server",
    )?;
    // Its own temporary folder: bootstraps running side by side (tests)
    // otherwise trip over each other's temporary tables in /tmp.
    let tmpdir = tempfile::Builder::new()
        .prefix("torpor-install-db-")
        .tempdir()
        .map_err(io("creating mariadb-install-db's tmpdir"))?;
    let mut command = Command::new(install);
    command
        .arg("--no-defaults")
        .arg(format!("--datadir={}", datadir.display()))
        .arg(format!("--tmpdir={}", tmpdir.path().display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db")
        .stdin(Stdio::null());
    if running_as_root() {
        command.arg("--user=root");
    }
    let output = command.output().map_err(io("running mariadb-install-db"))?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stdout));
        return Err(ProcessError::InstallDb(text));
    }
    Ok(())
}

fn init_sql(accounts: &[Account]) -> String {
    let mut sql = String::from("CREATE DATABASE IF NOT EXISTS test;\n");
    // mariadb-install-db (10.11) creates an anonymous account at
    // localhost, and MariaDB matches the most specific host first: over
    // the Unix socket, which Torpor uses, every login would be taken for
    // it instead of the user's own account at '%'.
    sql.push_str("DROP USER IF EXISTS ''@'localhost';\n");
    for statement in account_sql(accounts) {
        sql.push_str(&statement);
        sql.push_str(";\n");
    }
    sql
}

/// Statements that create (or update) each account and give it exactly
/// its grants: what it held before is revoked first, so an account made
/// by an older Torpor (with every privilege) or changed by hand gets what
/// the configuration says at every start and reload.
pub fn account_sql(accounts: &[Account]) -> Vec<String> {
    let mut sql = Vec::new();
    for account in accounts {
        let user = sql_quote(&account.user);
        let identified = if is_native_hash(&account.password) {
            format!("IDENTIFIED BY PASSWORD {}", sql_quote(&account.password))
        } else {
            format!("IDENTIFIED BY {}", sql_quote(&account.password))
        };
        sql.push(format!("CREATE USER IF NOT EXISTS {user}@'%' {identified}"));
        sql.push(format!("ALTER USER {user}@'%' {identified}"));
        sql.push(format!(
            "REVOKE ALL PRIVILEGES, GRANT OPTION FROM {user}@'%'"
        ));
        for grant in &account.grants {
            let (body, with_grant_option) = split_grant_option(grant);
            let option = if with_grant_option {
                " WITH GRANT OPTION"
            } else {
                ""
            };
            sql.push(format!("GRANT {body} TO {user}@'%'{option}"));
        }
    }
    sql
}

/// Whether a MySQL greeting (protocol version 10) arrives from `addr`.
pub fn handshake_arrives(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && head[4] == 10
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_names_the_package_to_install() {
        let error = require_program(&["torpor-no-such-program"], "mariadb-server")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("apt-get install -y mariadb-server"),
            "{error}"
        );
    }

    #[test]
    fn grants_keep_their_grant_option_after_the_account() {
        let sql = account_sql(&[Account {
            user: "ops".into(),
            password: "pw".into(),
            grants: vec![
                "SELECT, INSERT ON shop.*".into(),
                "all privileges on *.* with grant option".into(),
            ],
        }]);
        assert!(sql.contains(&"GRANT SELECT, INSERT ON shop.* TO 'ops'@'%'".to_string()));
        assert!(
            sql.contains(&"GRANT all privileges on *.* TO 'ops'@'%' WITH GRANT OPTION".to_string())
        );
        assert!(check_grant("SELECT ON shop.*").is_ok());
        assert!(check_grant("ALL ON *.* WITH GRANT OPTION").is_ok());
        assert!(check_grant("SELECT").is_err());
        assert!(check_grant("SELECT ON a.*; DROP USER root").is_err());
    }

    #[test]
    fn quoting_escapes_quotes_and_backslashes() {
        assert_eq!(sql_quote("a'b\\c"), "'a''b\\\\c'");
    }

    #[test]
    fn hashes_are_told_from_passwords() {
        assert!(is_native_hash("*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"));
        assert!(!is_native_hash("*secret"));
        let sql = init_sql(&[Account::superuser(
            "ro",
            "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7",
        )]);
        assert!(sql.contains("IDENTIFIED BY PASSWORD '*14E6"));
    }

    #[test]
    fn init_sql_creates_each_account() {
        let sql = init_sql(&[Account {
            user: "app".into(),
            password: "secret".into(),
            grants: default_grants(),
        }]);
        assert!(sql.contains("CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'secret'"));
        assert!(sql.contains("REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'app'@'%'"));
        assert!(sql.contains("GRANT ALL PRIVILEGES ON `test`.* TO 'app'@'%';"));
        assert!(!sql.contains("*.* TO 'app'"), "{sql}");
        assert!(sql.contains("DROP USER IF EXISTS ''@'localhost'"));
    }
}

//! What clients are told when things go wrong, and that the failure stays
//! with the connection it belongs to: wrong credentials, an unreachable or
//! lost backend, the connection limit, and KILL / CONNECTION_ID() with
//! Torpor's own connection ids.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use torpor_tests::raw::{base_capabilities, LoginError, LoginOptions, RawClient, ServerError};
use torpor_tests::{
    admin_connect, backend, connect, mysql_opts, Torpor, APP_USER, OTHER_PASSWORD, OTHER_USER,
};

/// Generous bound for anything that must happen "promptly": only there so
/// a hang fails the test instead of stalling it.
const HANG_LIMIT: Duration = Duration::from_secs(30);

/// The error a raw login got; panics if it succeeded or failed otherwise.
#[track_caller]
fn login_error(addr: SocketAddr, options: &LoginOptions) -> ServerError {
    match RawClient::try_connect(addr, options) {
        Ok(_) => panic!("login as {} should have failed", options.user),
        Err(LoginError::Server(error)) => error,
        Err(LoginError::Io(e)) => panic!("login as {}: no error packet: {e}", options.user),
    }
}

/// The backend thread running a statement whose text starts with
/// `prefix`, as the backend's processlist shows it.
fn backend_thread_running(admin: &mut mysql::Conn, prefix: &str) -> u64 {
    let deadline = Instant::now() + HANG_LIMIT;
    loop {
        let id: Option<u64> = admin
            .query_first(format!(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE '{prefix}%'"
            ))
            .unwrap();
        if let Some(id) = id {
            return id;
        }
        assert!(
            Instant::now() < deadline,
            "nothing runs '{prefix}' on the backend"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn unknown_user_is_denied() {
    let torpor = Torpor::start();
    let mut options = LoginOptions::app(base_capabilities());
    options.user = "errors_nobody".into();
    let error = login_error(torpor.addr(), &options);
    assert_eq!(
        (error.code, error.state.as_str()),
        (1045, "28000"),
        "{error}"
    );
    assert!(
        error
            .message
            .starts_with("Access denied for user 'errors_nobody'@'127.0.0.1'"),
        "{error}"
    );
}

/// A TCP relay in front of the real backend that counts the connections
/// made through it: a proxy pointed at it can reach MariaDB only through
/// it, so the count is every backend connection that proxy opened.
struct CountingRelay {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl CountingRelay {
    fn start(backend: SocketAddr) -> CountingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        // The thread ends with the test binary.
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { continue };
                counter.fetch_add(1, Ordering::SeqCst);
                let Ok(outbound) = TcpStream::connect(backend) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
                    (outbound, inbound),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        CountingRelay { addr, connections }
    }

    fn count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Wrong passwords are refused by Torpor from its stored hashes, before
/// any backend contact: a parked database is not woken by a client with
/// the wrong password.
#[test]
fn wrong_password_is_denied_without_touching_the_backend() {
    let relay = CountingRelay::start(backend().addr());
    let torpor = Torpor::start_with(relay.addr, |_| {});

    // A good login first: it makes Torpor learn the backend's greeting
    // (its one-time probe) and proves the relay carries real logins.
    let mut good = connect(torpor.addr());
    let one: Option<u8> = good.query_first("SELECT 1").unwrap();
    assert_eq!(one, Some(1));
    drop(good);
    let before = relay.count();
    assert!(before >= 1, "the good login went through the relay");

    let mut options = LoginOptions::app(base_capabilities());
    for password in ["app-secret-wrong", "APP-SECRET", "x"] {
        options.password = password.into();
        let error = login_error(torpor.addr(), &options);
        assert_eq!(
            (error.code, error.state.as_str()),
            (1045, "28000"),
            "{error}"
        );
        assert!(error.message.ends_with("(using password: YES)"), "{error}");
    }
    options.password = String::new();
    let error = login_error(torpor.addr(), &options);
    assert_eq!(
        (error.code, error.state.as_str()),
        (1045, "28000"),
        "{error}"
    );
    assert!(error.message.ends_with("(using password: NO)"), "{error}");
    // Nor does a user Torpor does not know reach the backend.
    let mut stranger = LoginOptions::app(base_capabilities());
    stranger.user = "errors_stranger".into();
    let error = login_error(torpor.addr(), &stranger);
    assert_eq!(error.code, 1045, "{error}");
    // The mysql crate sees the same.
    let refused = mysql::Conn::new(mysql_opts(torpor.addr(), APP_USER, "nope")).map(drop);
    match refused {
        Err(mysql::Error::MySqlError(e)) => assert_eq!(e.code, 1045, "{e}"),
        other => panic!("wrong password through the mysql crate: {other:?}"),
    }
    assert_eq!(
        relay.count(),
        before,
        "a wrong password reached the backend"
    );

    // And the relay does see the next good login that needs a backend
    // connection of its own (another user: the pooled one is the app
    // user's), so the count above could have moved.
    let mut other =
        mysql::Conn::new(mysql_opts(torpor.addr(), OTHER_USER, OTHER_PASSWORD)).unwrap();
    other.query_drop("DO 1").unwrap();
    assert!(relay.count() > before);
}

#[test]
fn unreachable_backend_is_a_server_error_without_the_address() {
    // A port that was free a moment ago and has nobody listening.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // Torpor greets without it (it terminates the handshake itself) and
    // holds the login as through any outage: a short hold, then 1429.
    let torpor = Torpor::start_with(closed, |c| c.outage_hold_secs = 1);
    let error = login_error(torpor.addr(), &LoginOptions::app(base_capabilities()));
    assert_eq!(
        (error.code, error.state.as_str()),
        (1429, "HY000"),
        "{error}"
    );
    let message = error.message.to_lowercase();
    assert!(
        message.contains("connect") || message.contains("unreachable"),
        "the message names the cause: {error}"
    );
    assert!(
        !error.message.contains("127.0.0.1"),
        "no address in: {error}"
    );
    assert!(
        !error.message.contains(&closed.port().to_string()),
        "no port in: {error}"
    );
    // A real client library reports it the same way.
    match mysql::Conn::new(mysql_opts(
        torpor.addr(),
        APP_USER,
        torpor_tests::APP_PASSWORD,
    )) {
        Err(mysql::Error::MySqlError(e)) => assert_eq!(e.code, 1429, "{e}"),
        other => panic!(
            "mysql crate against an unreachable backend: {:?}",
            other.map(drop)
        ),
    }
    // And libmariadb (the `mariadb` CLI) too: it reads an ERR packet that
    // carries a client-library code (2003) as "2027 malformed packet".
    let cli =
        std::process::Command::new(torpor_tests::require_program("mariadb", "mariadb-client"))
            .arg("--no-defaults")
            .arg("--protocol=TCP")
            .arg(format!("--host={}", torpor.addr().ip()))
            .arg(format!("--port={}", torpor.addr().port()))
            .arg(format!("--user={APP_USER}"))
            .arg(format!("--password={}", torpor_tests::APP_PASSWORD))
            .args(["-e", "SELECT 1"])
            .output()
            .expect("the mariadb client runs");
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert!(stderr.contains("1429"), "{stderr}");
    assert!(stderr.contains("behind Torpor"), "{stderr}");
    assert!(!stderr.contains("2027"), "{stderr}");
}

/// The backend connection dies under a running query: that client gets an
/// error at once, not after the query would have ended, and its session
/// goes on; others go on too.
#[test]
fn backend_lost_mid_command_fails_only_that_client() {
    let torpor = Torpor::start();
    let mut bystander = connect(torpor.addr());
    let mut victim = connect(torpor.addr());
    let sql = "SELECT SLEEP(120) /* errors-backend-lost */";
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let outcome = victim.query_first::<i64, _>(sql);
        let _ = done.send((victim, outcome));
    });
    let mut admin = admin_connect();
    let thread = backend_thread_running(&mut admin, "SELECT SLEEP(120) /* errors-backend-lost");
    admin.query_drop(format!("KILL {thread}")).unwrap();

    let (mut victim, outcome) = result
        .recv_timeout(HANG_LIMIT)
        .expect("the client was left hanging after its backend connection died");
    match outcome {
        Ok(value) => panic!("the query cannot have succeeded: {value:?}"),
        // A clear error, not just a dropped socket: 1317, the statement
        // was interrupted and whether it ran is unknown (a client-library
        // code such as 2013 would read as a malformed packet to
        // libmariadb).
        Err(mysql::Error::MySqlError(e)) => {
            assert_eq!(e.code, 1317, "{e}");
            assert!(!e.message.contains("127.0.0.1"), "no address in: {e}");
        }
        Err(other) => panic!("no MySQL error, but: {other:?}"),
    }
    let one: Option<u8> = victim.query_first("SELECT 1").unwrap();
    assert_eq!(one, Some(1), "the victim's session goes on");
    let two: Option<u8> = bystander.query_first("SELECT 2").unwrap();
    assert_eq!(two, Some(2), "the bystander keeps working");
    let mut fresh = connect(torpor.addr());
    let three: Option<u8> = fresh.query_first("SELECT 3").unwrap();
    assert_eq!(three, Some(3), "new clients keep working");
}

#[test]
fn too_many_connections_is_1040() {
    let torpor = Torpor::start_with(backend().addr(), |c| c.max_connections = 2);
    let first = connect(torpor.addr());
    let _second = connect(torpor.addr());
    let error = login_error(torpor.addr(), &LoginOptions::app(base_capabilities()));
    assert_eq!(
        (error.code, error.state.as_str()),
        (1040, "08004"),
        "{error}"
    );
    match mysql::Conn::new(mysql_opts(
        torpor.addr(),
        APP_USER,
        torpor_tests::APP_PASSWORD,
    )) {
        Err(mysql::Error::MySqlError(e)) => assert_eq!(e.code, 1040, "{e}"),
        other => panic!(
            "a third connection through the mysql crate: {:?}",
            other.map(drop)
        ),
    }
    // A slot frees when a client leaves.
    drop(first);
    let deadline = Instant::now() + HANG_LIMIT;
    while torpor.connection_count() >= 2 {
        assert!(
            Instant::now() < deadline,
            "the closed connection still counts"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut third = connect(torpor.addr());
    third.query_drop("DO 1").unwrap();
}

#[test]
fn connection_id_is_the_greeting_id() {
    let torpor = Torpor::start();
    let mut conn = connect(torpor.addr());
    let greeting_id = conn.connection_id();
    assert!(
        greeting_id >= 1 << 24,
        "Torpor ids start at 2^24: {greeting_id}"
    );
    let mut result = conn.query_iter("SELECT CONNECTION_ID()").unwrap();
    let name = result.columns().as_ref()[0].name_str().into_owned();
    let rows: Vec<mysql::Row> = result.by_ref().collect::<Result<_, _>>().unwrap();
    drop(result);
    assert_eq!(name, "CONNECTION_ID()");
    assert_eq!(rows.len(), 1);
    let id: u64 = mysql::from_value(rows[0].as_ref(0).unwrap().clone());
    assert_eq!(id, u64::from(greeting_id));
    // Elsewhere in a statement it is the same number.
    let same: Option<u8> = conn
        .query_first("SELECT CONNECTION_ID() = CONNECTION_ID() + 0")
        .unwrap();
    assert_eq!(same, Some(1));
    let aliased: Option<u64> = conn.query_first("SELECT CONNECTION_ID() AS id").unwrap();
    assert_eq!(aliased, Some(u64::from(greeting_id)));
    // Another client has another id.
    let other = connect(torpor.addr());
    assert_ne!(other.connection_id(), greeting_id);
}

/// The column `SELECT CONNECTION_ID()` returns is described as MariaDB
/// describes it (type, flags, length), not only named the same: typed
/// clients bind by that description.
#[test]
fn connection_id_column_matches_direct() {
    let torpor = Torpor::start();
    let describe = |addr: SocketAddr| {
        let mut conn = connect(addr);
        let result = conn.query_iter("SELECT CONNECTION_ID()").unwrap();
        let columns = result.columns();
        let column = &columns.as_ref()[0];
        format!(
            "{} {:?} {:?} len={} decimals={}",
            column.name_str(),
            column.column_type(),
            column.flags(),
            column.column_length(),
            column.decimals()
        )
    };
    assert_eq!(describe(torpor.addr()), describe(backend().addr()));
}

#[test]
fn kill_query_interrupts_a_sleep() {
    let torpor = Torpor::start();
    let mut sleeper = connect(torpor.addr());
    let id = sleeper.connection_id();
    let sql = "SELECT SLEEP(120) /* errors-kill-query */";
    let (done, result) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let outcome = sleeper.query_first::<i64, _>(sql);
        let _ = done.send(outcome);
        sleeper
    });
    let mut admin = admin_connect();
    backend_thread_running(&mut admin, "SELECT SLEEP(120) /* errors-kill-query");

    let mut killer = connect(torpor.addr());
    killer.query_drop(format!("KILL QUERY {id}")).unwrap();
    let error = result
        .recv_timeout(HANG_LIMIT)
        .expect("KILL QUERY did not interrupt the sleep");
    match error {
        Err(mysql::Error::MySqlError(e)) => {
            assert_eq!(
                (e.code, e.state.as_str()),
                (1317, "70100"),
                "ER_QUERY_INTERRUPTED: {e}"
            );
        }
        other => panic!("the interrupted query: {other:?}"),
    }
    // Only the query was killed: its connection goes on.
    let mut sleeper = handle.join().unwrap();
    let one: Option<u8> = sleeper.query_first("SELECT 1").unwrap();
    assert_eq!(one, Some(1));
}

#[test]
fn kill_connection_closes_the_target() {
    let torpor = Torpor::start();
    let mut target = connect(torpor.addr());
    let id = target.connection_id();
    target.query_drop("DO 1").unwrap();
    let mut killer = connect(torpor.addr());
    killer.query_drop(format!("KILL CONNECTION {id}")).unwrap();
    let next = target.query_drop("SELECT 1");
    assert!(next.is_err(), "a killed connection cannot run queries");
    let two: Option<u8> = killer.query_first("SELECT 2").unwrap();
    assert_eq!(two, Some(2), "the killer goes on");
    // Its session is gone from the proxy, not just its backend.
    drop(target);
    let deadline = Instant::now() + HANG_LIMIT;
    while torpor.connection_count() > 1 {
        assert!(
            Instant::now() < deadline,
            "the killed session is still counted"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn kill_unknown_id_is_1094() {
    let torpor = Torpor::start();
    let mut conn = connect(torpor.addr());
    let unknown = (1u64 << 24) + 9_000_001;
    for sql in [format!("KILL {unknown}"), format!("KILL QUERY {unknown}")] {
        match conn.query_drop(&sql) {
            Err(mysql::Error::MySqlError(e)) => {
                assert_eq!((e.code, e.state.as_str()), (1094, "HY000"), "{sql}: {e}");
                assert!(e.message.contains(&unknown.to_string()), "{sql}: {e}");
            }
            other => panic!("{sql}: {other:?}"),
        }
    }
    conn.query_drop("DO 1")
        .expect("the connection goes on after the error");
}

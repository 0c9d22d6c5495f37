//! How a session ends, through Torpor as directly against MariaDB (issue
//! 13, defects 7, 8 and 10): a client that hangs up mid-command has its
//! statement stopped; KILL closes the victim's socket at once and each
//! side sees what MariaDB shows it; a session idle past its
//! `wait_timeout` is closed.
//!
//! Each case runs against the backend directly and through Torpor with the
//! same client, and the two are compared. Waits are bounded polls, never
//! timing assertions.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use torpor_protocol::Capabilities;
use torpor_tests::raw::{base_capabilities, com_query, Closing, LoginOptions, Packet, RawClient};
use torpor_tests::{admin_connect, backend, mysql_opts, Torpor, APP_PASSWORD, APP_USER};

/// Bound on every wait: far beyond what any of them takes.
const HANG_LIMIT: Duration = Duration::from_secs(30);

fn raw_app(addr: SocketAddr) -> RawClient {
    RawClient::connect(addr, &LoginOptions::app(base_capabilities()))
}

fn app(addr: SocketAddr) -> mysql::Conn {
    mysql::Conn::new(mysql_opts(addr, APP_USER, APP_PASSWORD))
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"))
}

/// How many backend threads run a statement containing `tag`.
fn running(admin: &mut mysql::Conn, tag: &str) -> u64 {
    admin
        .query_first(format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE INFO LIKE '%{tag}%' AND INFO NOT LIKE '%PROCESSLIST%'"
        ))
        .unwrap()
        .unwrap_or(0)
}

/// Polls until `tag` runs on the backend (`true`) or stops running
/// (`false`); panics when that does not happen within [`HANG_LIMIT`].
fn wait_running(admin: &mut mysql::Conn, tag: &str, want: bool, what: &str) {
    let deadline = Instant::now() + HANG_LIMIT;
    while (running(admin, tag) > 0) != want {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A client waits in GET_LOCK on a lock another connection holds, then
/// hangs up; the holder watches the waiter go.
fn hang_up_during_get_lock(addr: SocketAddr, lock: &str, tag: &str) {
    let mut holder = admin_connect();
    let got: Option<i64> = holder
        .query_first(format!("SELECT GET_LOCK('{lock}', 0)"))
        .unwrap();
    assert_eq!(got, Some(1));
    let mut waiter = raw_app(addr);
    waiter
        .send_command(&com_query(&format!(
            "SELECT GET_LOCK('{lock}', 60) /* {tag} */"
        )))
        .unwrap();
    wait_running(&mut holder, tag, true, "the waiter never started waiting");
    drop(waiter);
    wait_running(
        &mut holder,
        tag,
        false,
        "the backend still waits in GET_LOCK for a client that hung up",
    );
    let used: Option<u64> = holder
        .query_first(format!("SELECT IS_USED_LOCK('{lock}') = CONNECTION_ID()"))
        .unwrap();
    assert_eq!(used, Some(1), "the holder still holds the lock");
    holder
        .query_drop(format!("DO RELEASE_LOCK('{lock}')"))
        .unwrap();
}

#[test]
fn client_hanging_up_mid_get_lock_stops_the_wait() {
    hang_up_during_get_lock(backend().addr(), "lifecycle_hangup_d", "lifecycle-hangup-d");
    let torpor = Torpor::start_with(backend().addr(), |c| c.max_backend_connections = 1);
    hang_up_during_get_lock(torpor.addr(), "lifecycle_hangup_t", "lifecycle-hangup-t");
    // The connection that was interrupted mid-reply is not handed to the
    // next session in that state: with one backend connection, the next
    // client still gets clean answers.
    let mut next = app(torpor.addr());
    let one: Option<i64> = next.query_first("SELECT 1").unwrap();
    assert_eq!(one, Some(1));
    let free: Option<i64> = next
        .query_first("SELECT IS_FREE_LOCK('lifecycle_hangup_t')")
        .unwrap();
    assert_eq!(free, Some(1));
}

/// What a client sees on its socket until it closes, without sending
/// anything: packets, and whether the socket closed.
fn aftermath(client: &mut RawClient) -> (Vec<Packet>, bool) {
    let after = client.read_to_end(HANG_LIMIT);
    let closed = match after.closing {
        Closing::Closed | Closing::Failed(_) => true,
        Closing::TimedOut => false,
    };
    (after.packets, closed)
}

/// How the killer names its victim.
#[derive(Clone, Copy, Debug)]
enum KillBy {
    Statement,
    ComProcessKill,
}

fn kill(killer: &mut RawClient, id: u32, by: KillBy) -> Packet {
    match by {
        KillBy::Statement => killer.send_command(&com_query(&format!("KILL {id}"))),
        KillBy::ComProcessKill => {
            let mut payload = vec![0x0c];
            payload.extend_from_slice(&id.to_le_bytes());
            killer.send_command(&payload)
        }
    }
    .unwrap();
    killer.read_packet().unwrap()
}

/// An idle client is killed: what it and its killer see.
fn kill_idle(addr: SocketAddr, by: KillBy) -> (Packet, (Vec<Packet>, bool)) {
    let mut victim = raw_app(addr);
    let id = victim.greeting.as_ref().unwrap().connection_id;
    let mut killer = raw_app(addr);
    let answer = kill(&mut killer, id, by);
    (answer, aftermath(&mut victim))
}

/// A client in a long statement is killed: what it sees.
fn kill_busy(addr: SocketAddr, tag: &str) -> (Packet, (Vec<Packet>, bool)) {
    let mut victim = raw_app(addr);
    let id = victim.greeting.as_ref().unwrap().connection_id;
    victim
        .send_command(&com_query(&format!("SELECT SLEEP(60) /* {tag} */")))
        .unwrap();
    let mut admin = admin_connect();
    wait_running(&mut admin, tag, true, "the victim's statement never ran");
    let mut killer = raw_app(addr);
    let answer = kill(&mut killer, id, KillBy::Statement);
    (answer, aftermath(&mut victim))
}

/// A client kills itself: what it sees.
fn kill_self(addr: SocketAddr, by: KillBy) -> (Vec<Packet>, bool) {
    let mut client = raw_app(addr);
    let id = client.greeting.as_ref().unwrap().connection_id;
    match by {
        KillBy::Statement => client.send_command(&com_query("KILL CONNECTION_ID()")),
        KillBy::ComProcessKill => {
            let mut payload = vec![0x0c];
            payload.extend_from_slice(&id.to_le_bytes());
            client.send_command(&payload)
        }
    }
    .unwrap();
    aftermath(&mut client)
}

#[test]
fn kill_of_an_idle_session_closes_its_socket_at_once() {
    let torpor = Torpor::start();
    for by in [KillBy::Statement, KillBy::ComProcessKill] {
        let direct = kill_idle(backend().addr(), by);
        let through = kill_idle(torpor.addr(), by);
        assert!(direct.1 .1, "{by:?}: MariaDB closes the victim");
        assert_eq!(
            through, direct,
            "{by:?}: killer's answer, victim's aftermath"
        );
    }
}

#[test]
fn kill_of_a_busy_session_sends_it_what_mariadb_sends() {
    let torpor = Torpor::start();
    let direct = kill_busy(backend().addr(), "lifecycle-busy-d");
    let through = kill_busy(torpor.addr(), "lifecycle-busy-t");
    assert!(direct.1 .1, "MariaDB closes the victim");
    assert_eq!(through, direct, "killer's answer, victim's aftermath");
}

#[test]
fn killing_your_own_connection_is_1927_then_closed() {
    let torpor = Torpor::start();
    for by in [KillBy::Statement, KillBy::ComProcessKill] {
        let direct = kill_self(backend().addr(), by);
        let through = kill_self(torpor.addr(), by);
        assert!(direct.1, "{by:?}: MariaDB closes the connection");
        assert_eq!(through, direct, "{by:?}: what the killer sees");
    }
    // The same through the mysql crate: its error, not a lost connection.
    let error = |addr| match app(addr).query_drop("KILL CONNECTION_ID()") {
        Err(mysql::Error::MySqlError(e)) => (e.code, e.state, e.message),
        other => panic!("KILL CONNECTION_ID(): {other:?}"),
    };
    assert_eq!(error(torpor.addr()), error(backend().addr()));
}

/// A client sets a small `wait_timeout` and goes quiet: what it sees.
fn idle_past_wait_timeout(addr: SocketAddr, capabilities: Capabilities, set: &str) -> Vec<Packet> {
    let mut client = RawClient::connect(addr, &LoginOptions::app(capabilities));
    if !set.is_empty() {
        client.query(set).expect_ok(set);
    }
    let (packets, closed) = aftermath(&mut client);
    assert!(closed, "{addr}: a session idle past its timeout stays open");
    packets
}

#[test]
fn session_idle_past_its_wait_timeout_is_closed() {
    let torpor = Torpor::start();
    let set = "SET SESSION wait_timeout = 1";
    let direct = idle_past_wait_timeout(backend().addr(), base_capabilities(), set);
    let through = idle_past_wait_timeout(torpor.addr(), base_capabilities(), set);
    assert_eq!(through, direct, "what the client gets before the close");
    assert!(direct.is_empty(), "MariaDB 10.11 sends nothing: {direct:?}");
}

#[test]
fn interactive_session_idle_past_interactive_timeout_is_closed() {
    let mut admin = admin_connect();
    let old: Option<u64> = admin
        .query_first("SELECT @@GLOBAL.interactive_timeout")
        .unwrap();
    admin
        .query_drop("SET GLOBAL interactive_timeout = 1")
        .unwrap();
    let interactive = base_capabilities() | Capabilities::CLIENT_INTERACTIVE;
    let direct = idle_past_wait_timeout(backend().addr(), interactive, "");
    // Torpor reads the server's settings when its service starts.
    let torpor = Torpor::start();
    let through = idle_past_wait_timeout(torpor.addr(), interactive, "");
    admin
        .query_drop(format!(
            "SET GLOBAL interactive_timeout = {}",
            old.unwrap_or(28800)
        ))
        .unwrap();
    assert_eq!(through, direct);
}

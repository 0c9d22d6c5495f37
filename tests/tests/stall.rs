//! Clients that stop half-way through a command or stop reading a reply,
//! and commands larger than the backend takes.
//!
//! - A client that stops reading a large result set is closed after
//!   `net_write_timeout_secs` (MariaDB's `net_write_timeout`), and the
//!   backend connection its reply came from is closed: the statement
//!   ends and the pool's place comes back, where both used to be held
//!   for as long as the client sat there.
//! - A client that stalls mid-command (a COM_QUERY over 16 MiB, streamed
//!   to the backend as it arrives) is closed after `net_read_timeout_secs`
//!   and its backend connection, caught mid-command, is closed: its place
//!   in the pool comes back, where it used to be held forever.
//! - A command over the backend's `max_allowed_packet` gets what MariaDB
//!   sends — ERR 1153 (08S01) right after the packet header, then the
//!   connection closes — byte for byte, compared with the server itself.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use torpor::scaler::process::{Account, MariadbOptions, MariadbProcess};
use torpor_protocol::frame::MAX_PAYLOAD;
use torpor_tests::raw::{base_capabilities, Aftermath, Closing, LoginOptions, RawClient};
use torpor_tests::{
    backend, connect, mysql_opts, Torpor, ADMIN_PASSWORD, ADMIN_USER, APP_PASSWORD, APP_USER,
};

/// How long anything that should happen may take, however loaded the
/// machine: generous, never a timing assertion.
const LIMIT: Duration = Duration::from_secs(60);

/// The wire bytes of the start of a COM_QUERY of `len` payload bytes:
/// the first packet's header and `sent` bytes of its payload (the rest,
/// and any continuation packets, never sent).
fn query_start(len: usize, sent: usize) -> Vec<u8> {
    let first = len.min(MAX_PAYLOAD);
    let mut wire = Vec::with_capacity(4 + sent);
    wire.extend_from_slice(&(first as u32).to_le_bytes()[..3]);
    wire.push(0);
    let mut payload = b"\x03SELECT '".to_vec();
    payload.resize(sent, b'x');
    wire.extend_from_slice(&payload[..sent]);
    wire
}

#[test]
fn a_client_stalled_mid_command_gives_its_backend_connection_back() {
    let timeout_secs = 2;
    let torpor = Torpor::start_with(backend().addr(), |config| {
        config.workers = 1;
        // One backend connection: the stalled session takes it.
        config.max_backend_connections = 1;
        // Longer than the read timeout, so that a client waiting for the
        // connection gets it once the stalled session lets it go.
        config.pool_wait_timeout_ms = 30_000;
        config.net_read_timeout_secs = timeout_secs;
    });
    let addr = torpor.addr();
    // A healthy client, logged in before the stall, keeps querying.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let healthy = std::thread::spawn({
        let (stop, done) = (Arc::clone(&stop), Arc::clone(&done));
        let mut conn = connect(addr);
        move || -> Result<(), String> {
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) {
                n += 1;
                let got: Option<u64> = conn
                    .query_first(format!("SELECT {n}"))
                    .map_err(|e| format!("query {n}: {e}"))?;
                if got != Some(n) {
                    return Err(format!("query {n}: wrong answer {got:?}"));
                }
                done.store(n, Ordering::Release);
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        }
    });

    // More than 16 MiB: the first packet whole, then 1 KiB of the
    // continuation, and then nothing.
    let mut stalled = RawClient::connect(addr, &LoginOptions::app(base_capabilities()));
    let len = MAX_PAYLOAD + 4 * 1024 * 1024;
    let mut wire = query_start(len, MAX_PAYLOAD);
    wire.extend_from_slice(&((len - MAX_PAYLOAD) as u32).to_le_bytes()[..3]);
    wire.push(1);
    wire.extend_from_slice(&[b'x'; 1024]);
    let started = Instant::now();
    stalled.write_raw(&wire).expect("the first 16 MiB go out");

    // The stalled session is closed (nothing sent: MariaDB sends nothing
    // either when it gives up on a half-sent command).
    let after: Aftermath = stalled.read_to_end(LIMIT);
    println!(
        "stalled client: {:?} after {:?}, packets {:?}",
        after.closing,
        started.elapsed(),
        after.packets
    );
    assert!(
        !matches!(after.closing, Closing::TimedOut),
        "the stalled session was never closed"
    );
    assert!(after.packets.is_empty(), "{:?}", after.packets);

    // Its backend connection's place came back: a new client gets the
    // pool's one connection (it waits at most the pool wait for it).
    let mut fresh = connect(addr);
    let value: Option<i64> = fresh
        .query_first("SELECT 7")
        .unwrap_or_else(|e| panic!("a new client after the stall: {e}"));
    assert_eq!(value, Some(7));

    // The healthy client went on meanwhile (waiting for the connection
    // while the stalled session held it) and never saw an error.
    let before = done.load(Ordering::Acquire);
    let deadline = Instant::now() + LIMIT;
    while done.load(Ordering::Acquire) <= before && !healthy.is_finished() {
        assert!(Instant::now() < deadline, "the healthy client is stuck");
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Release);
    match healthy.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("the healthy client saw an error: {e}"),
        Err(_) => panic!("the healthy client panicked"),
    }
    // The half-sent query never ran: the backend connection it went to
    // was closed, not handed to anyone (its server notices the close a
    // moment later).
    let mut admin = torpor_tests::admin_connect();
    let deadline = Instant::now() + LIMIT;
    loop {
        let open: Option<i64> = admin
            .query_first("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app'")
            .unwrap();
        if open.unwrap_or(0) <= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open:?} backend connections for 1"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_client_that_stalls_mid_command_in_a_transaction_is_closed_too() {
    let torpor = Torpor::start_with(backend().addr(), |config| {
        config.workers = 1;
        config.max_backend_connections = 1;
        config.pool_wait_timeout_ms = 30_000;
        config.net_read_timeout_secs = 2;
    });
    // In a transaction the session holds the pool's one connection, and a
    // half-sent small command is buffered, not streamed: the session
    // waits for the rest of it (until wait_timeout, 8 hours, before).
    let mut stalled = RawClient::connect(torpor.addr(), &LoginOptions::app(base_capabilities()));
    stalled.query("BEGIN").expect_ok("BEGIN");
    stalled.query("SELECT 1");
    stalled
        .write_raw(&query_start(100, 10))
        .expect("half a command");
    let started = Instant::now();
    let after = stalled.read_to_end(LIMIT);
    println!(
        "stalled client in a transaction: {:?} after {:?}, packets {:?}",
        after.closing,
        started.elapsed(),
        after.packets
    );
    assert!(
        !matches!(after.closing, Closing::TimedOut),
        "the stalled session was never closed"
    );
    assert!(after.packets.is_empty(), "{:?}", after.packets);
    // Its connection went (rolled back with it): the next client has it.
    let mut next = connect(torpor.addr());
    let value: Option<i64> = next
        .query_first("SELECT 8")
        .unwrap_or_else(|e| panic!("a new client after the stall: {e}"));
    assert_eq!(value, Some(8));
}

/// How many statements whose text contains `marker` run on the backend
/// (the marker is split in the query, so that it does not count itself).
fn running(admin: &mut mysql::Conn, marker: &str) -> i64 {
    let (head, tail) = marker.split_at(marker.len() / 2);
    admin
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE CONCAT('%', ?, ?, '%')",
            (head, tail),
        )
        .unwrap()
        .unwrap_or(0)
}

#[test]
fn a_client_that_stops_reading_a_large_result_gives_its_backend_connection_back() {
    let torpor = Torpor::start_with(backend().addr(), |config| {
        config.workers = 1;
        // One backend connection: the session whose client stopped
        // reading holds it while its reply is stuck.
        config.max_backend_connections = 1;
        // Longer than the write timeout, so that a client waiting for the
        // connection gets it once the stuck session lets it go.
        config.pool_wait_timeout_ms = 60_000;
        config.net_write_timeout_secs = 2;
    });
    let addr = torpor.addr();
    // 200 MB of result: far more than the sockets on its way buffer.
    let marker = "stops-reading-200mb";
    let mut stuck = RawClient::connect(addr, &LoginOptions::app(base_capabilities()));
    stuck
        .send_command(&torpor_tests::raw::com_query(&format!(
            "SELECT REPEAT('x', 1000000) FROM seq_1_to_200 /* {marker} */"
        )))
        .expect("the query goes out");
    let started = Instant::now();
    let mut admin = torpor_tests::admin_connect();
    while running(&mut admin, marker) == 0 {
        assert!(started.elapsed() < LIMIT, "the big query never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A new client needs the pool's one connection, which the stuck
    // session holds until its write times out (before: for ever, and this
    // login failed with 1040 after the pool wait).
    let mut fresh = connect(addr);
    let value: Option<i64> = fresh
        .query_first("SELECT 9")
        .unwrap_or_else(|e| panic!("a new client while a reply is stuck: {e}"));
    assert_eq!(value, Some(9));
    println!(
        "a new client got the stuck session's backend connection after {:?}",
        started.elapsed()
    );
    // The statement ended on the backend with its connection.
    let deadline = Instant::now() + LIMIT;
    while running(&mut admin, marker) > 0 {
        assert!(Instant::now() < deadline, "the big query still runs");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The stuck client finds its connection reset, after what it had
    // been sent, as MariaDB resets one it gave up writing to.
    let after = stuck.read_to_end(LIMIT);
    println!(
        "the client that stopped reading: {:?} after {} whole packets",
        after.closing,
        after.packets.len()
    );
    assert!(
        !matches!(after.closing, Closing::TimedOut),
        "the stuck session was never closed"
    );
    assert!(
        after
            .packets
            .iter()
            .all(|p| p.payload.first() != Some(&0xff)),
        "no ERR comes in the middle of a result set"
    );
}

/// A client in a transaction (pinned to the pool's one connection) that
/// sends small commands one at a time and never reads their replies:
/// Torpor's write of the replies blocks once the sockets on the way are
/// full, and after `net_write_timeout_secs` the session is closed and the
/// connection comes back.
#[test]
fn a_client_that_sends_commands_and_never_reads_gives_its_backend_connection_back() {
    let torpor = Torpor::start_with(backend().addr(), |config| {
        config.workers = 1;
        config.max_backend_connections = 1;
        config.pool_wait_timeout_ms = 60_000;
        config.net_write_timeout_secs = 2;
    });
    let addr = torpor.addr();
    let mut deaf = RawClient::connect(addr, &LoginOptions::app(base_capabilities()));
    deaf.query("BEGIN").expect_ok("BEGIN");
    deaf.query("SELECT 1");
    // 20 MB of replies, 10 KB each, asked for one at a time; the sends
    // fail once Torpor closed the connection.
    let command = torpor_tests::raw::com_query("SELECT REPEAT('x', 10000)");
    let sender = std::thread::spawn(move || {
        let mut sent = 0;
        for _ in 0..2000 {
            if deaf.send_command(&command).is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(Duration::from_micros(200));
        }
        (sent, deaf)
    });
    let started = Instant::now();
    let mut fresh = connect(addr);
    let value: Option<i64> = fresh
        .query_first("SELECT 10")
        .unwrap_or_else(|e| panic!("a new client while the deaf one holds the connection: {e}"));
    assert_eq!(value, Some(10));
    let (sent, mut deaf) = sender.join().expect("sender");
    println!(
        "a new client got the connection after {:?}; the deaf client sent {sent} commands",
        started.elapsed()
    );
    let after = deaf.read_to_end(LIMIT);
    assert!(
        !matches!(after.closing, Closing::TimedOut),
        "the deaf client's session was never closed"
    );
}

/// A private MariaDB with `max_allowed_packet` = `max` (e.g. `1M`).
fn server_with_max_allowed_packet(max: &str) -> MariadbProcess {
    let accounts = [(APP_USER, APP_PASSWORD), (ADMIN_USER, ADMIN_PASSWORD)]
        .iter()
        .map(|(user, password)| Account {
            user: user.to_string(),
            password: password.to_string(),
            grants: vec![torpor::scaler::process::GRANT_EVERYTHING.to_string()],
        })
        .collect();
    MariadbProcess::start(MariadbOptions {
        accounts,
        buffer_pool: "32M".to_string(),
        extra_args: vec![format!("--max-allowed-packet={max}")],
        ..MariadbOptions::default()
    })
    .unwrap_or_else(|e| panic!("cannot start a private MariaDB: {e}"))
}

/// What a raw client that logs in to `addr` and sends `wire` gets back,
/// until the connection closes.
fn send_and_watch(addr: SocketAddr, wire: &[u8]) -> Aftermath {
    let mut client = RawClient::connect(addr, &LoginOptions::app(base_capabilities()));
    // The server may close before it read everything: a failed write
    // is part of what is observed, not a test failure.
    let _ = client.write_raw(wire);
    client.read_to_end(LIMIT)
}

/// Sends `wire` to MariaDB directly and through Torpor: Torpor's reply
/// must be MariaDB's, and the connection must close after it.
fn same_as_mariadb(server: &MariadbProcess, torpor: &Torpor, what: &str, wire: &[u8]) {
    let direct = send_and_watch(server.addr(), wire);
    let proxied = send_and_watch(torpor.addr(), wire);
    println!("{what}: MariaDB {direct:?}");
    println!("{what}: Torpor  {proxied:?}");
    let err = direct
        .packets
        .first()
        .unwrap_or_else(|| panic!("{what}: MariaDB sent nothing"));
    assert_eq!(&err.payload[..3], b"\xff\x81\x04", "{what}: MariaDB's 1153");
    assert_eq!(proxied.packets, direct.packets, "{what}");
    assert!(
        !matches!(proxied.closing, Closing::TimedOut),
        "{what}: Torpor kept the connection open"
    );
}

#[test]
fn a_command_over_max_allowed_packet_gets_what_mariadb_sends() {
    let server = server_with_max_allowed_packet("1M");
    let torpor = Torpor::start_with(server.addr(), |config| config.workers = 1);
    let max = 1 << 20;
    // MariaDB answers once the header is in: the first 64 KiB are sent.
    // At the bound (a buffered packet), over it (a streamed one), and a
    // multi-packet command.
    for len in [max, 2 * max, MAX_PAYLOAD + 10] {
        let wire = query_start(len, 64 * 1024);
        same_as_mariadb(&server, &torpor, &format!("{len} bytes"), &wire);
    }
    // Just under the bound runs, through Torpor as on MariaDB.
    let text = "y".repeat(max - 100);
    let mut conn = mysql::Conn::new(mysql_opts(torpor.addr(), APP_USER, APP_PASSWORD))
        .expect("connect through Torpor");
    let got: Option<String> = conn
        .query_first(format!("SELECT '{text}'"))
        .expect("a query under max_allowed_packet");
    assert_eq!(got.map(|g| g.len()), Some(text.len()));
}

#[test]
fn a_multi_packet_command_reaching_max_allowed_packet_half_way_gets_what_mariadb_sends() {
    let server = server_with_max_allowed_packet("17M");
    let torpor = Torpor::start_with(server.addr(), |config| config.workers = 1);
    // The first packet (16 MiB - 1) is under the bound; the second's
    // header brings the command past it: refused there, at sequence id 2.
    let len = MAX_PAYLOAD + 2 * 1024 * 1024;
    let mut wire = query_start(len, MAX_PAYLOAD);
    wire.extend_from_slice(&((len - MAX_PAYLOAD) as u32).to_le_bytes()[..3]);
    wire.push(1);
    wire.extend_from_slice(&[b'x'; 1024]);
    same_as_mariadb(&server, &torpor, "16 MiB + 2 MiB", &wire);
}

/// What a raw client gets for `LOAD DATA LOCAL INFILE` into `table` when
/// it answers the server's file request with packets of `sizes` bytes
/// (lines of 100 bytes), then the empty packet: every packet that came
/// back (sequence id and payload), and whether the connection closed
/// after the reply (`None`: still open 3 s later).
fn load_local(
    addr: SocketAddr,
    table: &str,
    sizes: &[usize],
) -> (Vec<(u8, Vec<u8>)>, Option<String>) {
    let mut client = RawClient::connect(addr, &LoginOptions::app(base_capabilities()));
    client
        .send_command(&torpor_tests::raw::com_query(&format!(
            "LOAD DATA LOCAL INFILE 'rows.txt' INTO TABLE test.{table}"
        )))
        .expect("the statement goes out");
    let request = client.read_packet().expect("the file request");
    assert_eq!(request.payload.first(), Some(&0xfb), "{request:?}");
    let mut wire = Vec::new();
    let mut seq = request.seq.wrapping_add(1);
    for &size in sizes.iter().chain([0].iter()) {
        wire.extend_from_slice(&(size as u32).to_le_bytes()[..3]);
        wire.push(seq);
        seq = seq.wrapping_add(1);
        let line = [&[b'x'; 99][..], b"\n"].concat();
        wire.extend(line.iter().cycle().take(size));
    }
    // The server may close before it read everything: part of what is
    // observed.
    let _ = client.write_raw(&wire);
    // The reply: progress reports (ERR 0xFFFF), then an OK or an ERR.
    let mut packets = Vec::new();
    while let Ok(packet) = client.read_packet() {
        let progress = packet.payload.starts_with(b"\xff\xff\xff");
        packets.push((packet.seq, packet.payload));
        if !progress {
            break;
        }
    }
    let after = client.read_to_end(Duration::from_secs(3));
    packets.extend(after.packets.into_iter().map(|p| (p.seq, p.payload)));
    let closing = match after.closing {
        Closing::TimedOut => None,
        Closing::Closed => Some("closed".to_string()),
        Closing::Failed(e) => Some(format!("{:?}", e.kind())),
    };
    (packets, closing)
}

/// `LOAD DATA LOCAL INFILE` data packets against `max_allowed_packet`,
/// directly and through Torpor: the same error, or the same success.
#[test]
fn local_infile_packets_against_max_allowed_packet_as_mariadb() {
    let server = server_with_max_allowed_packet("1M");
    let torpor = Torpor::start_with(server.addr(), |config| config.workers = 1);
    let mut admin = mysql::Conn::new(mysql_opts(server.addr(), ADMIN_USER, ADMIN_PASSWORD))
        .expect("admin connection");
    let cases: [(&str, Vec<usize>); 3] = [
        // 2 MiB in 64 packets of 32 KiB: each under the limit.
        ("small packets, 2 MiB in all", vec![32 * 1024; 64]),
        // One packet over the limit.
        ("one 2 MiB packet", vec![2 << 20]),
        // Small ones, then one at the limit.
        (
            "small packets, then 1 MiB",
            vec![32 * 1024, 32 * 1024, 1 << 20],
        ),
    ];
    for (i, (what, sizes)) in cases.iter().enumerate() {
        let direct_table = format!("infile_direct_{i}");
        let proxied_table = format!("infile_torpor_{i}");
        for table in [&direct_table, &proxied_table] {
            admin
                .query_drop(format!("CREATE TABLE test.{table} (v VARCHAR(100))"))
                .unwrap();
        }
        let (direct, direct_closing) = load_local(server.addr(), &direct_table, sizes);
        let (proxied, proxied_closing) = load_local(torpor.addr(), &proxied_table, sizes);
        // Progress reports come as the server likes: not compared.
        let replies = |packets: Vec<(u8, Vec<u8>)>| -> Vec<(u8, Vec<u8>)> {
            packets
                .into_iter()
                .filter(|(_, p)| !p.starts_with(b"\xff\xff\xff"))
                .collect()
        };
        let (direct, proxied) = (replies(direct), replies(proxied));
        let show = |packets: &[(u8, Vec<u8>)]| -> Vec<String> {
            packets
                .iter()
                .map(|(seq, p)| {
                    format!(
                        "#{seq} {}",
                        torpor_tests::raw::show_bytes(&p[..p.len().min(80)])
                    )
                })
                .collect()
        };
        println!(
            "{what}: MariaDB {:?}, closing {direct_closing:?}",
            show(&direct)
        );
        println!(
            "{what}: Torpor  {:?}, closing {proxied_closing:?}",
            show(&proxied)
        );
        let rows = |table: &str| -> Option<i64> {
            mysql::Conn::new(mysql_opts(server.addr(), ADMIN_USER, ADMIN_PASSWORD))
                .unwrap()
                .query_first(format!("SELECT COUNT(*) FROM test.{table}"))
                .unwrap()
        };
        assert_eq!(
            rows(&proxied_table),
            rows(&direct_table),
            "{what}: rows loaded"
        );
        let first =
            |packets: &[(u8, Vec<u8>)]| packets.first().and_then(|(_, p)| p.first().copied());
        assert_eq!(first(&proxied), first(&direct), "{what}: OK or ERR");
        if first(&direct) == Some(0xff) {
            assert_eq!(proxied, direct, "{what}: the same error");
        }
        assert_eq!(
            proxied_closing.is_some(),
            direct_closing.is_some(),
            "{what}: the connection closes as MariaDB's does"
        );
    }
}

//! The compressed protocol on the client leg: a client that asks for
//! `CLIENT_COMPRESS` gets it (the backend leg stays plain), sees what it
//! sees from MariaDB directly with compression, and the bytes on its wire
//! really are compressed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mysql::prelude::Queryable;
use torpor_tests::{backend, mysql_opts, Torpor, APP_PASSWORD, APP_USER};

/// A loopback relay in front of `target` that counts the bytes flowing
/// back to the client, so a test can see what crossed the wire.
struct CountingRelay {
    addr: SocketAddr,
    to_client: Arc<AtomicU64>,
}

impl CountingRelay {
    fn start(target: SocketAddr) -> CountingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let to_client = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&to_client);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(target) else {
                    return;
                };
                let (mut c_read, mut s_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut s_write);
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                let counter = Arc::clone(&counter);
                let (mut s_read, mut c_write) = (server, client);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64 * 1024];
                    loop {
                        match s_read.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                counter.fetch_add(n as u64, Ordering::Relaxed);
                                if c_write.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = c_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        CountingRelay { addr, to_client }
    }
}

fn compressed_opts(addr: SocketAddr) -> mysql::Opts {
    mysql::OptsBuilder::from_opts(mysql_opts(addr, APP_USER, APP_PASSWORD))
        .compress(Some(mysql::Compression::fast()))
        .into()
}

/// What a session with compression sees: text and binary results (one of
/// them over 16 MiB, so it spans several compressed packets), an error,
/// warnings, multiple statements.
fn transcript(conn: &mut mysql::Conn) -> Vec<String> {
    let mut out = Vec::new();
    conn.query_drop("DROP TABLE IF EXISTS compression_items")
        .unwrap();
    conn.query_drop("CREATE TABLE compression_items (id INT PRIMARY KEY, body LONGTEXT)")
        .unwrap();
    let insert = conn
        .prep("INSERT INTO compression_items VALUES (?, ?)")
        .unwrap();
    for id in 0..20 {
        conn.exec_drop(&insert, (id, "x".repeat(1000 * id as usize)))
            .unwrap();
    }
    let rows: Vec<(i32, String)> = conn
        .query("SELECT id, body FROM compression_items ORDER BY id")
        .unwrap();
    out.push(format!(
        "text rows {} bytes {}",
        rows.len(),
        rows.iter().map(|r| r.1.len()).sum::<usize>()
    ));
    let select = conn
        .prep("SELECT id, LENGTH(body), body FROM compression_items WHERE id > ?")
        .unwrap();
    let rows: Vec<(i32, i64, String)> = conn.exec(&select, (10,)).unwrap();
    out.push(format!(
        "binary rows {} first {:?}",
        rows.len(),
        rows.first().map(|r| (r.0, r.1))
    ));
    conn.query_drop("SET SESSION max_allowed_packet = 67108864")
        .ok();
    let big: Option<String> = conn
        .query_first("SELECT REPEAT('abcdefgh', 2200000)")
        .unwrap();
    out.push(format!("big {}", big.map(|b| b.len()).unwrap_or(0)));
    match conn.query_drop("SELECT * FROM no_such_table_here") {
        Err(mysql::Error::MySqlError(e)) => out.push(format!("error {} {}", e.code, e.message)),
        other => out.push(format!("not an error: {other:?}")),
    }
    conn.query_drop("SET sql_mode = ''").unwrap();
    let n: Option<i64> = conn.query_first("SELECT CAST('12abc' AS SIGNED)").unwrap();
    let warnings: Vec<(String, u32, String)> = conn.query("SHOW WARNINGS").unwrap();
    out.push(format!("cast {n:?} warnings {warnings:?}"));
    let ids: Vec<i32> = conn
        .query("SELECT id FROM compression_items WHERE id < 3 ORDER BY id")
        .unwrap();
    out.push(format!("ids {ids:?}"));
    out
}

#[test]
fn a_compressed_session_sees_what_it_sees_directly() {
    let torpor = Torpor::start();
    let mut proxied = mysql::Conn::new(compressed_opts(torpor.addr())).unwrap();
    let through_torpor = transcript(&mut proxied);
    let mut direct = mysql::Conn::new(compressed_opts(backend().addr())).unwrap();
    let from_mariadb = transcript(&mut direct);
    assert_eq!(through_torpor, from_mariadb);
    assert!(through_torpor[2].contains("17600000"), "{through_torpor:?}");
}

#[test]
fn replies_are_compressed_on_the_wire() {
    let torpor = Torpor::start();
    let sql = "SELECT REPEAT('torpor compresses ', 100000)";
    let plain_len = "torpor compresses ".len() * 100_000;

    let relay = CountingRelay::start(torpor.addr());
    let mut conn = mysql::Conn::new(compressed_opts(relay.addr)).unwrap();
    let value: Option<String> = conn.query_first(sql).unwrap();
    assert_eq!(value.map(|v| v.len()), Some(plain_len));
    drop(conn);
    let compressed = relay.to_client.load(Ordering::Relaxed);

    let relay = CountingRelay::start(torpor.addr());
    let mut conn = mysql::Conn::new(mysql_opts(relay.addr, APP_USER, APP_PASSWORD)).unwrap();
    let value: Option<String> = conn.query_first(sql).unwrap();
    assert_eq!(value.map(|v| v.len()), Some(plain_len));
    drop(conn);
    let plain = relay.to_client.load(Ordering::Relaxed);

    assert!(plain > plain_len as u64, "{plain}");
    assert!(
        compressed * 20 < plain,
        "compressed {compressed} bytes against {plain} plain"
    );
}

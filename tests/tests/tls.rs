//! TLS on the client leg (issue 15), with real clients: the `mariadb`
//! CLI with `--ssl` and with `--ssl-verify-server-cert` against Torpor's
//! own self-signed certificate (and a wrong CA, refused), compressed over
//! TLS; PyMySQL and the MariaDB Python connector (libmariadb) over TLS
//! with queries, prepared statements (the connector's pipelined direct
//! execute), a result of several MiB and a transaction. That a session is
//! encrypted is checked on the client's side (the CLI's `SSL:` line, the
//! Python socket's class and version, the connector's `tls_version`):
//! `SHOW STATUS LIKE 'Ssl_cipher'` would be answered by the backend.
//!
//! Zero-configuration TLS: Connector/C 3.4 (MariaDB 11.4's client
//! library, from PyPI's mariadb-binary) with verification on and no CA
//! trusts Torpor's self-signed certificate through the proof in the
//! login's OK, and refuses MariaDB 10.11's, which sends none.
//!
//! A certificate renewed in place reaches new connections with a SIGHUP
//! (the real binary), while a session that logged in before keeps its own.
//!
//! Also: close_notify after COM_QUIT; a client that hangs up mid-query
//! over TLS still has its statement stopped; bad TLS input (garbage after
//! SSLRequest, silence after it) closes that connection cleanly and a
//! concurrent client sees nothing; `require_secure_transport` answers a
//! plain TCP login exactly as MariaDB 10.11 does — 1045 access denied,
//! whatever the password (a second private MariaDB with TLS and
//! require_secure_transport, compared side by side).
//!
//! Each test uses its own tables: tests run in parallel against one
//! MariaDB.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use torpor_tests::{
    admin_connect, backend, connect, mariadb_with_tls, require_program, Torpor, APP_PASSWORD,
    APP_USER,
};

/// A Torpor with TLS on and its own state_dir, where its self-signed
/// certificate is made.
struct TlsTorpor {
    torpor: Torpor,
    state: tempfile::TempDir,
}

impl TlsTorpor {
    fn start() -> TlsTorpor {
        TlsTorpor::start_with(|_| {})
    }

    fn start_with(configure: impl FnOnce(&mut torpor::Config)) -> TlsTorpor {
        let state = tempfile::tempdir().expect("a state dir");
        let dir = state.path().to_path_buf();
        let torpor = Torpor::start_with(backend().addr(), |config| {
            config.state_dir = dir;
            configure(config);
        });
        TlsTorpor { torpor, state }
    }

    fn addr(&self) -> SocketAddr {
        self.torpor.addr()
    }

    /// Torpor's self-signed certificate, which clients are given as CA.
    fn cert(&self) -> PathBuf {
        torpor::tls::self_signed_paths(self.state.path()).0
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// The `mariadb` CLI over TCP to `addr` as the app user, with `args`.
fn mariadb(addr: SocketAddr, args: &[&str]) -> Run {
    let output = Command::new(require_program("mariadb", "mariadb-client"))
        .arg("--no-defaults")
        .arg("--protocol=TCP")
        .arg(format!("--host={}", addr.ip()))
        .arg(format!("--port={}", addr.port()))
        .arg(format!("--user={APP_USER}"))
        .arg(format!("--password={APP_PASSWORD}"))
        .arg("--database=test")
        .args(args)
        .output()
        .expect("the mariadb client runs");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The CLI's own word on the connection: the `SSL:` line of `status`.
fn ssl_line(status: &str) -> String {
    status
        .lines()
        .find(|line| line.starts_with("SSL:"))
        .unwrap_or("no SSL line")
        .to_string()
}

/// Queries, a prepared statement, a transaction and a result of several
/// MiB (5,000 rows of 1,000 bytes), as the CLI runs them.
const CLI_SCRIPT: &str = "status; \
    CREATE OR REPLACE TABLE test.tls_cli_{tag} (id INT PRIMARY KEY, v VARCHAR(20)); \
    PREPARE s FROM 'INSERT INTO test.tls_cli_{tag} VALUES (?, ?)'; \
    SET @i = 1, @v = 'one'; EXECUTE s USING @i, @v; \
    START TRANSACTION; INSERT INTO test.tls_cli_{tag} VALUES (2, 'two'); ROLLBACK; \
    START TRANSACTION; INSERT INTO test.tls_cli_{tag} VALUES (3, 'three'); COMMIT; \
    SELECT GROUP_CONCAT(id ORDER BY id) AS ids FROM test.tls_cli_{tag}; \
    SELECT seq, REPEAT('y', 1000) AS filler FROM seq_1_to_5000; \
    DROP TABLE test.tls_cli_{tag};";

fn check_cli_session(run: &Run, what: &str) {
    assert_eq!(
        run.code,
        Some(0),
        "{what}: the CLI failed: {}\n{}",
        run.stderr,
        run.stdout.get(..2000.min(run.stdout.len())).unwrap_or("")
    );
    let ssl = ssl_line(&run.stdout);
    assert!(
        ssl.contains("Cipher in use is"),
        "{what}: the session is not encrypted: {ssl}"
    );
    assert!(run.stdout.contains("\n1,3\n"), "{what}: the committed rows");
    let rows = run
        .stdout
        .lines()
        .filter(|line| line.ends_with(&"y".repeat(1000)))
        .count();
    assert_eq!(rows, 5000, "{what}: the large result's rows");
    assert!(run.stdout.len() > 5_000_000, "{what}: several MiB came");
}

#[test]
fn the_cli_verifies_torpors_certificate_and_runs_a_session_over_tls() {
    let torpor = TlsTorpor::start();
    let cert = torpor.cert();
    let ca = format!("--ssl-ca={}", cert.display());
    let script = CLI_SCRIPT.replace("{tag}", "verified");
    let run = mariadb(
        torpor.addr(),
        &["--ssl", "--ssl-verify-server-cert", &ca, "-e", &script],
    );
    check_cli_session(&run, "--ssl-verify-server-cert");
}

#[test]
fn the_cli_with_plain_ssl_and_with_compression_runs_a_session_over_tls() {
    let torpor = TlsTorpor::start();
    let script = CLI_SCRIPT.replace("{tag}", "plain_ssl");
    let run = mariadb(torpor.addr(), &["--ssl", "-e", &script]);
    check_cli_session(&run, "--ssl");
    let script = CLI_SCRIPT.replace("{tag}", "compressed");
    let run = mariadb(torpor.addr(), &["--ssl", "--compress", "-e", &script]);
    check_cli_session(&run, "--ssl --compress");
    assert!(
        run.stdout.contains("Protocol:\t\tCompressed"),
        "compression is on too: {}",
        run.stdout.lines().take(20).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn a_wrong_ca_is_refused_by_the_cli_as_by_mariadb() {
    let torpor = TlsTorpor::start();
    // Another Torpor's certificate: a CA that did not sign this one.
    let other = tempfile::tempdir().unwrap();
    torpor::tls::TlsSettings::load(&torpor::config::TlsConfig::default(), other.path()).unwrap();
    let wrong = torpor::tls::self_signed_paths(other.path()).0;
    let ca = format!("--ssl-ca={}", wrong.display());
    let run = mariadb(
        torpor.addr(),
        &["--ssl", "--ssl-verify-server-cert", &ca, "-e", "SELECT 1"],
    );
    assert_eq!(run.code, Some(1), "refused: {}", run.stdout);
    assert!(
        run.stderr.starts_with("ERROR 2026 (HY000): TLS/SSL error"),
        "the client's own TLS error: {}",
        run.stderr
    );
    // MariaDB with a certificate of the same kind, given the same wrong
    // CA: the same refusal, word for word.
    let (mariadb_server, _certs) = mariadb_with_tls(&[]);
    let direct = mariadb(
        mariadb_server.addr(),
        &["--ssl", "--ssl-verify-server-cert", &ca, "-e", "SELECT 1"],
    );
    assert_eq!(direct.code, Some(1));
    assert_eq!(run.stderr, direct.stderr, "as MariaDB refuses it");
    // Torpor goes on serving.
    let run = mariadb(torpor.addr(), &["--ssl", "-e", "SELECT 41 + 1"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}

/// Runs a Python script with host, port, user, password and the CA file
/// as arguments; returns what it printed.
fn python(addr: SocketAddr, ca: &Path, script: &str) -> String {
    let output = Command::new(require_program("python3", "python3"))
        .arg("-c")
        .arg(script)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(APP_USER)
        .arg(APP_PASSWORD)
        .arg(ca)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the script failed (are PyMySQL and PyPI's mariadb installed?)\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

#[test]
fn pymysql_runs_a_session_over_verified_tls_and_gets_close_notify_after_quit() {
    let torpor = TlsTorpor::start();
    let script = r#"
import sys, ssl, pymysql
host, port, user, password, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
context = ssl.create_default_context(cafile=ca)
conn = pymysql.connect(host=host, port=port, user=user, password=password, database="test", ssl=context)
sock = conn._sock
print("socket", type(sock).__name__, sock.version())
# OpenSSL offers AES-256 first; Torpor picks AES-128 (its own order).
print("offered first", context.get_ciphers()[0]["name"], "chosen", sock.cipher()[0])
cur = conn.cursor()
cur.execute("CREATE OR REPLACE TABLE tls_pymysql (id INT PRIMARY KEY, v VARCHAR(20))")
cur.executemany("INSERT INTO tls_pymysql VALUES (%s, %s)", [(1, "one"), (2, "two")])
conn.commit()
conn.begin()
cur.execute("INSERT INTO tls_pymysql VALUES (%s, %s)", (3, "three"))
conn.rollback()
cur.execute("SELECT id, v FROM tls_pymysql WHERE id > %s ORDER BY id", (0,))
print("rows", cur.fetchall())
# Over 16 MiB: a row in several packets, in many TLS records.
cur.execute("SELECT REPEAT('z', 17825792)")
big = cur.fetchone()[0]
print("big", len(big), big == "z" * 17825792)
cur.execute("DROP TABLE tls_pymysql")
# COM_QUIT by hand, then read: close_notify is a clean end of the TLS
# stream (b""); an end without it raises SSLEOFError here.
sock.suppress_ragged_eofs = False
sock.sendall(b"\x01\x00\x00\x00\x01")
try:
    print("after quit", repr(sock.recv(1)))
except ssl.SSLEOFError as e:
    print("after quit", "no close_notify", e)
"#;
    let out = python(torpor.addr(), &torpor.cert(), script);
    assert!(
        out.contains("socket SSLSocket TLSv1.3"),
        "PyMySQL's socket is TLS: {out}"
    );
    assert!(
        out.contains("offered first TLS_AES_256_GCM_SHA384 chosen TLS_AES_128_GCM_SHA256"),
        "the server's order of suites: {out}"
    );
    assert!(out.contains("rows ((1, 'one'), (2, 'two'))"), "rows: {out}");
    assert!(out.contains("big 17825792 True"), "large result: {out}");
    assert!(out.contains("after quit b''"), "close_notify: {out}");
}

#[test]
fn the_mariadb_connector_runs_prepared_statements_over_verified_tls() {
    let torpor = TlsTorpor::start();
    let script = r#"
import sys, mariadb
host, port, user, password, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
conn = mariadb.connect(host=host, port=port, user=user, password=password, database="test",
                       ssl=True, ssl_ca=ca, ssl_verify_cert=True)
print("tls", conn.tls_version, bool(conn.tls_cipher))
cur = conn.cursor()
cur.execute("CREATE OR REPLACE TABLE tls_connector (id INT PRIMARY KEY, v VARCHAR(20), b LONGBLOB)")
# Parameterized: COM_STMT_PREPARE and a direct COM_STMT_EXECUTE in one write
# (under 1 MiB: a larger direct execute is refused by Torpor with or
# without TLS, a limitation of its own).
cur.execute("INSERT INTO tls_connector VALUES (?, ?, ?)", (1, "one", b"x" * 900000))
cur.executemany("INSERT INTO tls_connector VALUES (?, ?, ?)", [(2, "two", None), (3, "three", b"y")])
conn.commit()
conn.autocommit = False
cur.execute("INSERT INTO tls_connector VALUES (?, ?, ?)", (4, "four", None))
conn.rollback()
conn.autocommit = True
cur.execute("SELECT id, v FROM tls_connector WHERE id >= ? ORDER BY id", (1,))
print("rows", cur.fetchall())
cur.execute("SELECT LENGTH(b), b = REPEAT('x', 900000) FROM tls_connector WHERE id = ?", (1,))
print("blob", cur.fetchall())
cur.execute("SELECT b FROM tls_connector WHERE id = ?", (1,))
print("blob back", len(cur.fetchone()[0]))
cur.execute("SELECT seq, REPEAT('q', 1000) FROM seq_1_to_6000")
print("many", len(cur.fetchall()))
# A prepared statement's result over 16 MiB (binary protocol).
cur.execute("SELECT REPEAT(?, ?)", ("p", 17825792))
huge = cur.fetchone()[0]
print("huge", len(huge), huge == "p" * 17825792)
cur.execute("DROP TABLE tls_connector")
conn.close()
"#;
    let out = python(torpor.addr(), &torpor.cert(), script);
    assert!(out.contains("tls TLSv1.3 True"), "encrypted: {out}");
    assert!(
        out.contains("rows [(1, 'one'), (2, 'two'), (3, 'three')]"),
        "rows: {out}"
    );
    assert!(out.contains("blob [(900000, 1)]"), "blob: {out}");
    assert!(out.contains("blob back 900000"), "blob back: {out}");
    assert!(out.contains("many 6000"), "large result: {out}");
    assert!(out.contains("huge 17825792 True"), "over 16 MiB: {out}");
}

/// Reads one packet (header and payload).
fn read_packet(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header)?;
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload)?;
    Ok((header[3], payload))
}

/// Opens a connection, reads the greeting and sends an SSLRequest.
fn ssl_request(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (_, greeting) = read_packet(&mut stream).unwrap();
    // The capability flags' low half sits after version, thread id, seed.
    let version_end = greeting.iter().position(|&b| b == 0).unwrap();
    let caps_at = 1 + version_end + 1 + 4 + 8 + 1;
    let low = u16::from_le_bytes([greeting[caps_at], greeting[caps_at + 1]]);
    assert_ne!(low & (1 << 11), 0, "the greeting offers CLIENT_SSL");
    let caps: u32 = 1 << 9 | 1 << 11 | 1 << 15 | 1 << 19; // 41, SSL, secure, plugin auth
    let mut payload = Vec::new();
    payload.extend_from_slice(&caps.to_le_bytes());
    payload.extend_from_slice(&(16u32 << 20).to_le_bytes());
    payload.push(45);
    payload.extend_from_slice(&[0u8; 23]);
    let mut packet = vec![payload.len() as u8, 0, 0, 1];
    packet.extend_from_slice(&payload);
    stream.write_all(&packet).unwrap();
    stream
}

/// Reads until the end of the stream; how it ended.
fn read_to_end(stream: &mut TcpStream) -> Result<usize, std::io::Error> {
    let mut all = Vec::new();
    stream.read_to_end(&mut all).map(|_| all.len())
}

#[test]
fn bad_tls_input_closes_that_connection_and_a_concurrent_session_sees_nothing() {
    let torpor = TlsTorpor::start_with(|config| config.login_timeout_secs = 2);
    let mut neighbour = connect(torpor.addr());
    neighbour
        .query_drop("CREATE OR REPLACE TABLE test.tls_neighbour (id INT)")
        .unwrap();
    neighbour.query_drop("START TRANSACTION").unwrap();
    neighbour
        .query_drop("INSERT INTO test.tls_neighbour VALUES (1)")
        .unwrap();

    // Garbage where a ClientHello is due: an alert, then the end.
    let mut garbage = ssl_request(torpor.addr());
    garbage.write_all(&[0x42; 300]).unwrap();
    let started = Instant::now();
    let ended = read_to_end(&mut garbage);
    assert!(
        matches!(ended, Ok(n) if n < 100),
        "closed after at most an alert: {ended:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2), "at once");

    // A plain-text handshake response where a TLS record is due.
    let mut plain = ssl_request(torpor.addr());
    let mut response = vec![0u8; 32];
    response[..4].copy_from_slice(&(1u32 << 9).to_le_bytes());
    let mut packet = vec![response.len() as u8, 0, 0, 2];
    packet.extend_from_slice(&response);
    plain.write_all(&packet).unwrap();
    assert!(matches!(read_to_end(&mut plain), Ok(n) if n < 100));

    // A ClientHello cut short, then the client goes.
    let mut aborted = ssl_request(torpor.addr());
    aborted
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    aborted.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(read_to_end(&mut aborted).is_ok());

    // Silence after the SSLRequest: the login timeout closes it.
    let mut silent = ssl_request(torpor.addr());
    let started = Instant::now();
    assert!(read_to_end(&mut silent).is_ok());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(10),
        "closed by the login timeout: {waited:?}"
    );

    // The neighbour's transaction went on untouched.
    neighbour
        .query_drop("INSERT INTO test.tls_neighbour VALUES (2)")
        .unwrap();
    neighbour.query_drop("COMMIT").unwrap();
    let count: Option<u64> = neighbour
        .query_first("SELECT COUNT(*) FROM test.tls_neighbour")
        .unwrap();
    assert_eq!(count, Some(2));
    neighbour
        .query_drop("DROP TABLE test.tls_neighbour")
        .unwrap();
    // And TLS logins still work.
    let run = mariadb(torpor.addr(), &["--ssl", "-e", "SELECT 1"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}

#[test]
fn a_tls_client_that_hangs_up_mid_query_has_its_statement_stopped() {
    let torpor = TlsTorpor::start();
    let marker = "tls_hangup_marker";
    let mut child = Command::new(require_program("mariadb", "mariadb-client"))
        .arg("--no-defaults")
        .arg("--protocol=TCP")
        .arg(format!("--host={}", torpor.addr().ip()))
        .arg(format!("--port={}", torpor.addr().port()))
        .arg(format!("--user={APP_USER}"))
        .arg(format!("--password={APP_PASSWORD}"))
        .arg("--ssl")
        .arg("-e")
        .arg(format!("SELECT SLEEP(60) AS {marker}"))
        .spawn()
        .unwrap();
    let mut admin = admin_connect();
    let running = |admin: &mut mysql::Conn| -> usize {
        let rows: Vec<String> = admin
            .query(format!(
                "SELECT INFO FROM information_schema.PROCESSLIST WHERE INFO LIKE '%AS {marker}' AND INFO NOT LIKE '%PROCESSLIST%'"
            ))
            .unwrap();
        rows.len()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while running(&mut admin) == 0 {
        assert!(Instant::now() < deadline, "the query never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    // SIGKILL: the socket closes with no COM_QUIT and no close_notify.
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(&mut admin) > 0 {
        assert!(
            Instant::now() < deadline,
            "the statement still runs after its TLS client hung up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a plain TCP login is told, as the `mysql` crate reads it.
fn plain_login_error(addr: SocketAddr, password: &str) -> (u16, String, String) {
    let opts = torpor_tests::mysql_opts(addr, APP_USER, password);
    match mysql::Conn::new(opts) {
        Ok(_) => panic!("a plain login to {addr} was let in"),
        Err(mysql::Error::MySqlError(e)) => (e.code, e.state, e.message),
        Err(other) => panic!("not a server error from {addr}: {other}"),
    }
}

/// Where tests/run installs Connector/C 3.4 (PyPI's mariadb-binary
/// 2.0.0rc2, which bundles libmariadb 3.4.8): a folder of its own, so
/// that it does not shadow the mariadb 1.1.14 module other tests use.
fn connector_c_34() -> PathBuf {
    let dir = std::env::var_os("TORPOR_CONNECTOR_C34")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/torpor/connector-c-3.4")
        });
    assert!(
        dir.join("mariadb_binary").is_dir(),
        "Connector/C 3.4 is not installed in {}: tests/run installs it (python3 -m pip install --no-deps --target {} mariadb==2.0.0rc2 mariadb-binary==2.0.0rc2)",
        dir.display(),
        dir.display()
    );
    dir
}

/// Connects with Connector/C 3.4 as an 11.4+ client does with no CA:
/// TLS on, certificate verification on, nothing to verify it with but
/// the server's proof. Prints what it got.
const ZERO_CONFIG_SCRIPT: &str = r#"
import sys
import mariadb_binary as mariadb
host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
for label, pw in (("right", password), ("wrong", "not-the-password")):
    try:
        conn = mariadb.connect(host=host, port=port, user=user, password=pw, database="test",
                               ssl=True, ssl_verify_cert=True)
        cur = conn.cursor()
        cur.execute("SELECT ? + 1", (41,))
        print(label, "connected", conn.tls_version, cur.fetchall())
        conn.close()
    except mariadb.Error as e:
        print(label, "error", e.errno, str(e).split(" (errno")[0])
"#;

fn zero_config(addr: SocketAddr) -> String {
    let output = Command::new(require_program("python3", "python3"))
        .env("PYTHONPATH", connector_c_34())
        .arg("-c")
        .arg(ZERO_CONFIG_SCRIPT)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(APP_USER)
        .arg(APP_PASSWORD)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn an_11_4_client_trusts_torpors_self_signed_certificate_through_the_proof() {
    // 127.0.0.2: loopback, but not a name the client takes for local
    // (127.0.0.1, ::1 and sockets skip the check, as against MariaDB).
    let (mariadb_server, _certs) = mariadb_with_tls(&["--bind-address=127.0.0.1,127.0.0.2"]);
    let direct = SocketAddr::from(([127, 0, 0, 2], mariadb_server.addr().port()));
    let state = tempfile::tempdir().unwrap();
    let torpor = Torpor::start_with(mariadb_server.addr(), |config| {
        config.state_dir = state.path().to_path_buf();
        config.listen = SocketAddr::from(([127, 0, 0, 2], 0));
    });

    // MariaDB 10.11 sends no proof: the client refuses its self-signed
    // certificate, as it refuses any it cannot verify.
    let refused = zero_config(direct);
    assert!(
        refused.contains(
            "right error 2026 TLS/SSL error: Certificate verification failure: The certificate is NOT trusted."
        ),
        "MariaDB 10.11 directly: {refused}"
    );
    // Torpor proves it holds the password's hash: the client trusts it.
    let out = zero_config(torpor.addr());
    assert!(
        out.contains("right connected TLSv1.2 [(42,)]"),
        "through Torpor: {out}"
    );
    // A wrong password is refused as such, before any proof.
    assert!(
        out.contains("wrong error 1045 Access denied for user 'app'@'127.0.0.1'"),
        "a wrong password: {out}"
    );
}

#[test]
fn require_secure_transport_refuses_plain_logins_as_mariadb_does() {
    // A MariaDB of its own, with TLS and require_secure_transport; Torpor
    // reaches it over its Unix socket, which the setting exempts.
    let (mariadb_server, _certs) = mariadb_with_tls(&["--require-secure-transport=ON"]);
    let state = tempfile::tempdir().unwrap();
    let socket = mariadb_server.socket().display().to_string();
    let torpor = Torpor::start_with(mariadb_server.addr(), |config| {
        config.state_dir = state.path().to_path_buf();
        config.require_secure_transport = true;
        if let Some(backend) = config.backend.as_mut() {
            backend.address = socket;
        }
    });

    let direct = plain_login_error(mariadb_server.addr(), APP_PASSWORD);
    let proxied = plain_login_error(torpor.addr(), APP_PASSWORD);
    // MariaDB 10.11 says "access denied", as for a wrong password (not
    // ER_SECURE_TRANSPORT_REQUIRED, 3159).
    assert_eq!(
        direct,
        (
            1045,
            "28000".to_string(),
            "Access denied for user 'app'@'127.0.0.1' (using password: YES)".to_string()
        ),
        "MariaDB's own answer"
    );
    assert_eq!(proxied, direct, "Torpor answers as MariaDB");
    assert_eq!(
        plain_login_error(torpor.addr(), "wrong"),
        plain_login_error(mariadb_server.addr(), "wrong"),
        "a wrong password: the same answer"
    );

    // The CLI prints the same, and over TLS both let it in.
    for addr in [mariadb_server.addr(), torpor.addr()] {
        let refused = mariadb(addr, &["--skip-ssl", "-e", "SELECT 1"]);
        assert_eq!(refused.code, Some(1));
        assert_eq!(
            refused.stderr.trim(),
            "ERROR 1045 (28000): Access denied for user 'app'@'127.0.0.1' (using password: YES)"
        );
        let run = mariadb(addr, &["--ssl", "-e", "status"]);
        assert_eq!(run.code, Some(0), "{addr}: {}", run.stderr);
        assert!(ssl_line(&run.stdout).contains("Cipher in use is"));
    }
}

/// Makes a self-signed pair (as Torpor makes its own) and renames it into
/// `dir` as cert.pem and key.pem, as a certificate renewal in place would.
fn install_pair(dir: &Path) {
    let made = tempfile::tempdir().unwrap();
    torpor::tls::TlsSettings::load(&torpor::config::TlsConfig::default(), made.path()).unwrap();
    let (cert, key) = torpor::tls::self_signed_paths(made.path());
    for (from, name) in [(key, "key.pem"), (cert, "cert.pem")] {
        let next = dir.join(format!("{name}.next"));
        std::fs::copy(from, &next).unwrap();
        std::fs::rename(&next, dir.join(name)).unwrap();
    }
}

#[test]
fn sighup_gives_new_connections_a_renewed_certificate_and_sessions_keep_theirs() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use torpor_tests::binary::Running;

    let dir = tempfile::tempdir().unwrap();
    install_pair(dir.path());
    let first = dir.path().join("first-ca.pem");
    std::fs::copy(dir.path().join("cert.pem"), &first).unwrap();
    let config = dir.path().join("torpor.toml");
    std::fs::write(
        &config,
        format!(
            "[backend]\naddress = \"{}\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            backend().addr(),
            dir.path().join("cert.pem").display(),
            dir.path().join("key.pem").display()
        ),
    )
    .unwrap();
    let torpor = Running::start_bare(
        &[
            "--config",
            config.to_str().unwrap(),
            "--user",
            &format!("{APP_USER}:{APP_PASSWORD}"),
            "--admin-listen",
            "off",
        ],
        false,
    );
    let addr = torpor.addr;

    // A session on the first certificate, kept open across the reload.
    let script = r#"
import sys, ssl, pymysql
host, port, user, password, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
conn = pymysql.connect(host=host, port=port, user=user, password=password, database="test",
                       ssl=ssl.create_default_context(cafile=ca))
cur = conn.cursor()
cur.execute("SET @kept = 42")
print("ready", flush=True)
sys.stdin.readline()
cur.execute("SELECT @kept")
print("kept", cur.fetchone()[0], type(conn._sock).__name__, flush=True)
"#;
    let mut kept = Command::new(require_program("python3", "python3"))
        .arg("-c")
        .arg(script)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(APP_USER)
        .arg(APP_PASSWORD)
        .arg(&first)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(kept.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");

    let verify = |ca: &Path| {
        mariadb(
            addr,
            &[
                "--ssl",
                "--ssl-verify-server-cert",
                &format!("--ssl-ca={}", ca.display()),
                "-e",
                "SELECT 1",
            ],
        )
    };
    assert_eq!(verify(&first).code, Some(0), "the first certificate");

    // Renewed in place, then SIGHUP: new connections get the new one.
    install_pair(dir.path());
    let second = dir.path().join("cert.pem");
    torpor.signal(libc::SIGHUP);
    torpor.wait_log("config reloaded", 1);
    let run = verify(&second);
    assert_eq!(run.code, Some(0), "the renewed certificate: {}", run.stderr);
    let run = verify(&first);
    assert_eq!(
        run.code,
        Some(1),
        "the old CA no longer fits new connections"
    );
    assert!(run.stderr.contains("ERROR 2026"), "{}", run.stderr);

    // The session that logged in before goes on, on its own certificate.
    writeln!(kept.stdin.as_mut().unwrap()).unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "kept 42 SSLSocket");
    assert!(kept.wait().unwrap().success());
}

/// What a login through Torpor gets: the server's error, if any.
fn login_through(addr: SocketAddr) -> Result<(), (u16, String)> {
    let opts = torpor_tests::mysql_opts(addr, APP_USER, APP_PASSWORD);
    match mysql::Conn::new(opts) {
        Ok(mut conn) => {
            let one: Option<u32> = conn.query_first("SELECT 1").unwrap();
            assert_eq!(one, Some(1));
            Ok(())
        }
        Err(mysql::Error::MySqlError(e)) => Err((e.code, e.message)),
        Err(other) => panic!("not a server error from {addr}: {other}"),
    }
}

#[test]
fn the_backend_leg_speaks_tls_as_backend_tls_says() {
    use torpor::config::BackendTlsMode;
    // A MariaDB that refuses plain TCP: only TLS gets in.
    let (secure, certs) = mariadb_with_tls(&["--require-secure-transport=ON"]);
    let (ca, _) = torpor::tls::self_signed_paths(certs.path());
    let through = |address: String, mode: BackendTlsMode, ca: Option<PathBuf>| {
        let state = tempfile::tempdir().unwrap();
        let torpor = Torpor::start_with(backend().addr(), |config| {
            config.state_dir = state.path().to_path_buf();
            if let Some(backend) = config.backend.as_mut() {
                backend.address = address;
                backend.tls = mode;
                backend.tls_ca = ca;
                backend.connect_timeout_ms = 2_000;
            }
            config.outage_hold_secs = 0;
        });
        login_through(torpor.addr())
    };
    let secure_addr = secure.addr().to_string();

    // Required, with the CA: in, and the backend sees a TLS session.
    assert_eq!(
        through(
            secure_addr.clone(),
            BackendTlsMode::Required,
            Some(ca.clone())
        ),
        Ok(())
    );
    {
        let state = tempfile::tempdir().unwrap();
        let torpor = Torpor::start_with(backend().addr(), |config| {
            config.state_dir = state.path().to_path_buf();
            if let Some(backend) = config.backend.as_mut() {
                backend.address = secure_addr.clone();
                backend.tls = BackendTlsMode::Required;
                backend.tls_ca = Some(ca.clone());
            }
        });
        let mut conn = connect(torpor.addr());
        // Answered by the backend about the backend leg: TLS there.
        let cipher: Option<(String, String)> = conn
            .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            .unwrap();
        let cipher = cipher.unwrap().1;
        assert!(!cipher.is_empty(), "the backend leg is encrypted");
        let rows: Vec<(u32, String)> = conn
            .query("SELECT seq, REPEAT('b', 1000) FROM seq_1_to_3000")
            .unwrap();
        assert_eq!(rows.len(), 3000);
    }
    // Off: plain TCP, which this backend refuses (its 1045, relayed).
    let off = through(secure_addr.clone(), BackendTlsMode::Off, None);
    assert!(matches!(off, Err((1045, _))), "{off:?}");
    // Preferred against a backend without TLS: plain.
    let plain = backend().addr().to_string();
    assert_eq!(
        through(plain.clone(), BackendTlsMode::Preferred, Some(ca.clone())),
        Ok(())
    );
    // Required against a backend without TLS, or with a CA that did not
    // sign its certificate: refused at once, not held as an outage (and
    // the client told which).
    let cannot = "Can't connect to the database behind Torpor (its TLS connection failed)";
    assert_eq!(
        through(plain, BackendTlsMode::Required, Some(ca.clone())),
        Err((1429, cannot.to_string()))
    );
    let other = tempfile::tempdir().unwrap();
    torpor::tls::TlsSettings::load(&torpor::config::TlsConfig::default(), other.path()).unwrap();
    let wrong = torpor::tls::self_signed_paths(other.path()).0;
    let untrusted =
        "Can't connect to the database behind Torpor (its TLS certificate is not trusted)";
    assert_eq!(
        through(secure_addr, BackendTlsMode::Required, Some(wrong)),
        Err((1429, untrusted.to_string()))
    );
}

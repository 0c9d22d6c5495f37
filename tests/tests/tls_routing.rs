//! TLS and services (issue 15): a TLS client's server name (SNI) chooses
//! the service it logs in to (`[[services]] hosts`), through PyMySQL
//! over verified TLS with a wildcard certificate; each `[[services]]`
//! entry speaks TLS to its backend as its own `tls`, `tls_ca` or
//! `tls_fingerprint` say, and a wrong fingerprint fails that service's
//! logins with a clear error while Torpor serves the others; the
//! accounts keeper reads a backend that takes only TLS with the same
//! settings as sessions.
//!
//! Which backend answered is told by `@@port` (each MariaDB has its
//! own); whether the backend leg is encrypted by the backend's own
//! `Ssl_cipher` for the session.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use mysql::prelude::Queryable;
use torpor::config::{BackendTlsMode, DriverKind, ServiceConfig};
use torpor::tls::pinned::Fingerprint;
use torpor_tests::{
    backend, mariadb_with_tls, mysql_opts, require_program, Torpor, ADMIN_PASSWORD, ADMIN_USER,
    APP_PASSWORD, APP_USER, OTHER_PASSWORD, OTHER_USER,
};

/// A service on a backend Torpor does not manage, for `users`.
fn static_service(name: &str, address: SocketAddr, users: &[&str]) -> ServiceConfig {
    let mut service = ServiceConfig::new(name, DriverKind::Static);
    service.address = Some(address.to_string());
    service.users = users.iter().map(|u| u.to_string()).collect();
    service
}

/// A certificate for `*.db.example` and 127.0.0.1, with its key, in
/// `dir`: what an operator gives Torpor to serve several names.
fn wildcard_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let names = vec!["*.db.example".to_string(), "127.0.0.1".to_string()];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (dir.join("wildcard.pem"), dir.join("wildcard.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

/// Logs in with PyMySQL over TLS verified against `ca`, to each
/// `host user password` line of its input, every `*.db.example` name
/// resolving to 127.0.0.1 (a host mapping in the script: the name is
/// what the client verifies and sends as SNI); prints the backend's
/// port or the error code.
const SNI_SCRIPT: &str = r#"
import sys, ssl, socket, pymysql
port, ca = int(sys.argv[1]), sys.argv[2]
real = socket.getaddrinfo
def mapped(host, *args, **kwargs):
    if isinstance(host, str) and host.lower().endswith(".db.example"):
        host = "127.0.0.1"
    return real(host, *args, **kwargs)
socket.getaddrinfo = mapped
context = ssl.create_default_context(cafile=ca)
for line in sys.stdin:
    host, user, password = line.split()
    try:
        conn = pymysql.connect(host=host, port=port, user=user, password=password,
                               database="test", ssl=context)
        cur = conn.cursor()
        cur.execute("SELECT @@port")
        print(host, user, "port", cur.fetchone()[0], conn._sock.version())
        conn.close()
    except pymysql.err.OperationalError as e:
        print(host, user, "error", e.args[0])
"#;

fn pymysql_logins(addr: SocketAddr, ca: &Path, logins: &[(&str, &str, &str)]) -> Vec<String> {
    use std::io::Write;
    let mut child = Command::new(require_program("python3", "python3"))
        .arg("-c")
        .arg(SNI_SCRIPT)
        .arg(addr.port().to_string())
        .arg(ca)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    {
        let mut stdin = child.stdin.take().unwrap();
        for (host, user, password) in logins {
            writeln!(stdin, "{host} {user} {password}").unwrap();
        }
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the script failed (is PyMySQL installed?)\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.lines().map(str::to_string).collect()
}

#[test]
fn a_tls_clients_server_name_chooses_its_service() {
    let (shop_backend, _certs) = mariadb_with_tls(&[]);
    let main_port = backend().addr().port();
    let shop_port = shop_backend.addr().port();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = wildcard_certificate(dir.path());
    let torpor = Torpor::start_with(backend().addr(), |config| {
        config.state_dir = dir.path().join("state");
        config.tls.cert = Some(cert.clone());
        config.tls.key = Some(key);
        config.backend = None;
        // The app user is on both services: by name it routes to the
        // first; the server name shop.db.example chooses the second.
        config.services = vec![
            static_service(
                "main",
                backend().addr(),
                &[APP_USER, OTHER_USER, ADMIN_USER],
            ),
            static_service("shop", shop_backend.addr(), &[APP_USER]),
        ];
        config.services[1].hosts = vec!["shop.db.example".to_string()];
    });
    let lines = pymysql_logins(
        torpor.addr(),
        &cert,
        &[
            ("shop.db.example", APP_USER, APP_PASSWORD),
            ("SHOP.DB.EXAMPLE", APP_USER, APP_PASSWORD),
            ("127.0.0.1", APP_USER, APP_PASSWORD),
            ("main.db.example", APP_USER, APP_PASSWORD),
            ("shop.db.example", OTHER_USER, OTHER_PASSWORD),
            ("main.db.example", OTHER_USER, OTHER_PASSWORD),
        ],
    );
    let want = [
        // SNI chooses shop (names compare without case).
        format!("shop.db.example {APP_USER} port {shop_port} TLSv1.3"),
        format!("SHOP.DB.EXAMPLE {APP_USER} port {shop_port} TLSv1.3"),
        // No SNI (an IP address), or a name no service claims: by user.
        format!("127.0.0.1 {APP_USER} port {main_port} TLSv1.3"),
        format!("main.db.example {APP_USER} port {main_port} TLSv1.3"),
        // A user shop does not list cannot log in to it by its name.
        format!("shop.db.example {OTHER_USER} error 1045"),
        format!("main.db.example {OTHER_USER} port {main_port} TLSv1.3"),
    ];
    assert_eq!(lines, want);
}

/// What a login through Torpor as `user` gets: the backend's port and
/// its `Ssl_cipher` for the session, or the server's error.
fn login(addr: SocketAddr, user: &str, password: &str) -> Result<(u16, String), (u16, String)> {
    match mysql::Conn::new(mysql_opts(addr, user, password)) {
        Ok(mut conn) => {
            let port: u16 = conn.query_first("SELECT @@port").unwrap().unwrap();
            let cipher: (String, String) = conn
                .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
                .unwrap()
                .unwrap();
            Ok((port, cipher.1))
        }
        Err(mysql::Error::MySqlError(e)) => Err((e.code, e.message)),
        Err(other) => panic!("not a server error from {addr}: {other}"),
    }
}

#[test]
fn each_service_speaks_tls_to_its_backend_as_its_entry_says() {
    // Takes TLS only (plain TCP logins get 1045).
    let (secure, certs) = mariadb_with_tls(&["--require-secure-transport=ON"]);
    let (ca, _) = torpor::tls::self_signed_paths(certs.path());
    let pin = Fingerprint::of_pem_file(&ca).unwrap().to_string();
    let state = tempfile::tempdir().unwrap();
    let torpor = Torpor::start_with(backend().addr(), |config| {
        config.state_dir = state.path().to_path_buf();
        config.backend = None;
        let mut pinned = static_service("pinned", secure.addr(), &[APP_USER]);
        pinned.tls = BackendTlsMode::Required;
        pinned.tls_fingerprint = Some(pin.clone());
        let mut by_ca = static_service("by-ca", secure.addr(), &[ADMIN_USER]);
        by_ca.tls = BackendTlsMode::Required;
        by_ca.tls_ca = Some(ca.clone());
        config.services = vec![
            static_service("plain", backend().addr(), &[OTHER_USER]),
            pinned,
            by_ca,
        ];
    });
    let secure_port = secure.addr().port();
    let (port, cipher) = login(torpor.addr(), APP_USER, APP_PASSWORD).unwrap();
    assert_eq!(port, secure_port);
    assert!(!cipher.is_empty(), "pinned: the backend leg is encrypted");
    let (port, cipher) = login(torpor.addr(), ADMIN_USER, ADMIN_PASSWORD).unwrap();
    assert_eq!(port, secure_port);
    assert!(!cipher.is_empty(), "by CA: the backend leg is encrypted");
    let (port, cipher) = login(torpor.addr(), OTHER_USER, OTHER_PASSWORD).unwrap();
    assert_eq!(port, backend().addr().port());
    assert_eq!(cipher, "", "the plain service stays plain");
}

#[test]
fn a_wrong_pinned_fingerprint_fails_that_services_logins_with_a_clear_error() {
    let (secure, _certs) = mariadb_with_tls(&[]);
    let wrong = format!("sha256:{}", "AB".repeat(32));
    let state = tempfile::tempdir().unwrap();
    let torpor = Torpor::start_with(backend().addr(), |config| {
        config.state_dir = state.path().to_path_buf();
        config.backend = None;
        config.outage_hold_secs = 5;
        let mut pinned = static_service("pinned", secure.addr(), &[APP_USER]);
        pinned.tls = BackendTlsMode::Required;
        pinned.tls_fingerprint = Some(wrong);
        config.services = vec![
            static_service("plain", backend().addr(), &[OTHER_USER, ADMIN_USER]),
            pinned,
        ];
    });
    let refused =
        "Can't connect to the database behind Torpor (its TLS certificate is not trusted)";
    for _ in 0..2 {
        let started = std::time::Instant::now();
        assert_eq!(
            login(torpor.addr(), APP_USER, APP_PASSWORD),
            Err((1429, refused.to_string()))
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "refused at once, not held as an outage"
        );
        // The other service, and Torpor, go on.
        let (port, _) = login(torpor.addr(), OTHER_USER, OTHER_PASSWORD).unwrap();
        assert_eq!(port, backend().addr().port());
    }
}

#[test]
fn the_accounts_keeper_reads_a_tls_only_backend_with_the_sessions_tls() {
    let (secure, certs) = mariadb_with_tls(&["--require-secure-transport=ON"]);
    let (ca, _) = torpor::tls::self_signed_paths(certs.path());
    // Made on the backend directly (its socket is exempt from
    // require_secure_transport): only a read of its accounts lets it in.
    let opts = torpor::scaler::admin_sql::socket_opts(secure.socket())
        .user(Some(ADMIN_USER))
        .pass(Some(ADMIN_PASSWORD));
    let mut direct = mysql::Conn::new(opts).unwrap();
    direct
        .query_drop("CREATE USER 'kept'@'%' IDENTIFIED BY 'kept-secret'")
        .unwrap();
    direct
        .query_drop("GRANT ALL ON test.* TO 'kept'@'%'")
        .unwrap();
    for (label, tls_ca, tls_fingerprint) in [
        ("CA", Some(ca.clone()), None),
        (
            "fingerprint",
            None,
            Some(Fingerprint::of_pem_file(&ca).unwrap().to_string()),
        ),
    ] {
        let state = tempfile::tempdir().unwrap();
        let torpor = Torpor::start_with(secure.addr(), |config| {
            config.state_dir = state.path().to_path_buf();
            if let Some(backend) = config.backend.as_mut() {
                backend.tls = BackendTlsMode::Required;
                backend.tls_ca = tls_ca;
                backend.tls_fingerprint = tls_fingerprint;
                backend.admin_user = Some(ADMIN_USER.to_string());
                backend.admin_password = Some(ADMIN_PASSWORD.to_string());
            }
        });
        let got = login(torpor.addr(), "kept", "kept-secret");
        let (port, cipher) = got.unwrap_or_else(|e| panic!("{label}: {e:?}"));
        assert_eq!(port, secure.addr().port());
        assert!(!cipher.is_empty(), "{label}: over TLS");
    }
}

//! Accounts that live on the backend, not in Torpor's configuration:
//! users created with `CREATE USER` / `GRANT` (through Torpor or directly
//! on MariaDB) log in through Torpor as they do directly, host patterns
//! decide as MariaDB decides, a changed or dropped account is seen at
//! once, and an account of a plugin Torpor cannot serve gets an error that
//! names the plugin. Every outcome is compared with the same login made
//! directly against MariaDB.
//!
//! Each test uses its own account names: tests run in parallel against
//! one MariaDB.

use std::net::SocketAddr;

use mysql::prelude::Queryable;
use torpor_tests::{
    admin_connect, backend, mysql_opts, Torpor, ADMIN_PASSWORD, ADMIN_USER, APP_PASSWORD, APP_USER,
};

/// Torpor reading the backend's accounts with the harness's admin
/// account, keeping them in its own temporary state directory.
fn torpor_reading_accounts(state_dir: &std::path::Path) -> Torpor {
    let state_dir = state_dir.to_path_buf();
    Torpor::start_with(backend().addr(), move |config| {
        if let Some(backend) = config.backend.as_mut() {
            backend.admin_user = Some(ADMIN_USER.into());
            backend.admin_password = Some(ADMIN_PASSWORD.into());
        }
        config.state_dir = state_dir;
    })
}

/// A login's outcome: the account MariaDB says the session is, or the
/// error code.
fn login(addr: SocketAddr, user: &str, password: &str) -> Result<String, u16> {
    match mysql::Conn::new(mysql_opts(addr, user, password)) {
        Ok(mut conn) => Ok(conn
            .query_first::<String, _>("SELECT CURRENT_USER()")
            .expect("a query after login")
            .unwrap_or_default()),
        Err(mysql::Error::MySqlError(e)) => Err(e.code),
        Err(other) => panic!("login as {user}: not a MySQL error: {other}"),
    }
}

/// The same login through Torpor and directly must end alike.
fn same_login(torpor: &Torpor, user: &str, password: &str) -> Result<String, u16> {
    let proxied = login(torpor.addr(), user, password);
    let direct = login(backend().addr(), user, password);
    assert_eq!(proxied, direct, "login as {user} with {password:?}");
    proxied
}

fn app(torpor: &Torpor) -> mysql::Conn {
    mysql::Conn::new(mysql_opts(torpor.addr(), APP_USER, APP_PASSWORD)).expect("app logs in")
}

#[test]
fn a_user_created_through_torpor_logs_in_at_once() {
    let state = tempfile::tempdir().unwrap();
    let torpor = torpor_reading_accounts(state.path());
    let mut session = app(&torpor);
    session.query_drop("DROP USER IF EXISTS acct_new").unwrap();
    session
        .query_drop("CREATE USER acct_new IDENTIFIED BY 'first-pw'")
        .unwrap();
    session
        .query_drop("GRANT SELECT ON *.* TO acct_new")
        .unwrap();
    // Before Torpor read the backend's accounts this was 1045.
    assert_eq!(
        login(torpor.addr(), "acct_new", "first-pw"),
        Ok("acct_new@%".into())
    );
    assert_eq!(same_login(&torpor, "acct_new", "wrong"), Err(1045));

    // A new password counts at once; the old one no longer opens it.
    session
        .query_drop("ALTER USER acct_new IDENTIFIED BY 'second-pw'")
        .unwrap();
    assert_eq!(
        login(torpor.addr(), "acct_new", "second-pw"),
        Ok("acct_new@%".into())
    );
    assert_eq!(same_login(&torpor, "acct_new", "first-pw"), Err(1045));
    session
        .query_drop("SET PASSWORD FOR acct_new = PASSWORD('third-pw')")
        .unwrap();
    assert_eq!(
        same_login(&torpor, "acct_new", "third-pw"),
        Ok("acct_new@%".into())
    );

    // Dropped: refused, as by MariaDB.
    session.query_drop("DROP USER acct_new").unwrap();
    assert_eq!(same_login(&torpor, "acct_new", "third-pw"), Err(1045));

    // Accounts from the configuration keep working beside them.
    assert_eq!(
        login(torpor.addr(), APP_USER, APP_PASSWORD),
        Ok("app@%".into())
    );

    // The book Torpor keeps for logins while the service sleeps is
    // private to its owner.
    let saved = state.path().join("accounts").join("default.json");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&saved).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "{}", saved.display());
}

#[test]
fn a_user_created_directly_on_the_backend_logs_in_through_torpor() {
    let state = tempfile::tempdir().unwrap();
    let torpor = torpor_reading_accounts(state.path());
    // Torpor has read the accounts once before the user exists.
    assert_eq!(
        login(torpor.addr(), APP_USER, APP_PASSWORD),
        Ok("app@%".into())
    );
    let mut admin = admin_connect();
    admin.query_drop("DROP USER IF EXISTS acct_direct").unwrap();
    admin
        .query_drop("CREATE USER acct_direct IDENTIFIED BY 'direct-pw'")
        .unwrap();
    admin
        .query_drop("GRANT SELECT ON test.* TO acct_direct")
        .unwrap();
    // Nothing passed through Torpor: the login's miss reads them again.
    assert_eq!(
        same_login(&torpor, "acct_direct", "direct-pw"),
        Ok("acct_direct@%".into())
    );
    admin.query_drop("DROP USER acct_direct").unwrap();
}

#[test]
fn host_patterns_decide_as_mariadb_decides() {
    let state = tempfile::tempdir().unwrap();
    let torpor = torpor_reading_accounts(state.path());
    let mut session = app(&torpor);
    for sql in [
        "DROP USER IF EXISTS acct_far@'10.%', acct_two@'localhost', acct_two@'127.0.0.1', acct_two@'%'",
        // Only from a network the client is not on.
        "CREATE USER acct_far@'10.%' IDENTIFIED BY 'far-pw'",
        // Two accounts of one name: the more specific host that admits
        // the client wins, with its own password. The harness's MariaDB
        // runs with skip_name_resolve: a loopback TCP client is
        // '127.0.0.1', not 'localhost'.
        "CREATE USER acct_two@'localhost' IDENTIFIED BY 'local-pw'",
        "CREATE USER acct_two@'127.0.0.1' IDENTIFIED BY 'ip-pw'",
        "CREATE USER acct_two@'%' IDENTIFIED BY 'any-pw'",
        "GRANT SELECT ON test.* TO acct_far@'10.%', acct_two@'localhost', acct_two@'127.0.0.1', acct_two@'%'",
    ] {
        session.query_drop(sql).unwrap();
    }
    assert_eq!(same_login(&torpor, "acct_far", "far-pw"), Err(1045));
    assert_eq!(
        same_login(&torpor, "acct_two", "ip-pw"),
        Ok("acct_two@127.0.0.1".into())
    );
    assert_eq!(same_login(&torpor, "acct_two", "local-pw"), Err(1045));
    assert_eq!(same_login(&torpor, "acct_two", "any-pw"), Err(1045));
    session
        .query_drop("DROP USER acct_two@'127.0.0.1'")
        .unwrap();
    assert_eq!(
        same_login(&torpor, "acct_two", "any-pw"),
        Ok("acct_two@%".into())
    );
    session
        .query_drop("DROP USER acct_far@'10.%', acct_two@'localhost', acct_two@'%'")
        .unwrap();
}

#[test]
fn an_account_of_a_plugin_torpor_cannot_serve_gets_an_error_naming_it() {
    let state = tempfile::tempdir().unwrap();
    let torpor = torpor_reading_accounts(state.path());
    let mut session = app(&torpor);
    session
        .query_drop("DROP USER IF EXISTS acct_socket")
        .unwrap();
    session
        .query_drop("CREATE USER acct_socket IDENTIFIED VIA unix_socket")
        .unwrap();
    match mysql::Conn::new(mysql_opts(torpor.addr(), "acct_socket", "")) {
        Err(mysql::Error::MySqlError(e)) => {
            assert_eq!(e.code, 1251, "{e}");
            assert!(e.message.contains("unix_socket"), "{e}");
        }
        other => panic!(
            "a unix_socket account through Torpor: {:?}",
            other.map(drop)
        ),
    }
    session.query_drop("DROP USER acct_socket").unwrap();
}

#[test]
fn without_an_admin_account_only_configured_users_log_in() {
    let torpor = Torpor::start();
    let mut admin = admin_connect();
    admin
        .query_drop("CREATE OR REPLACE USER acct_unread IDENTIFIED BY 'unread-pw'")
        .unwrap();
    admin
        .query_drop("GRANT SELECT ON test.* TO acct_unread")
        .unwrap();
    assert_eq!(login(torpor.addr(), "acct_unread", "unread-pw"), Err(1045));
    assert_eq!(
        login(backend().addr(), "acct_unread", "unread-pw"),
        Ok("acct_unread@%".into())
    );
    admin.query_drop("DROP USER acct_unread").unwrap();
}

/// A managed service's accounts are read with the scaler's own admin
/// account, and a user created through Torpor logs in while the service
/// is parked (the book, not the backend, checks the password), without
/// waking it; its first query wakes it as that user.
#[test]
fn a_user_created_on_a_managed_service_logs_in_while_it_is_parked() {
    use torpor::config::DriverKind;
    use torpor::service::lifecycle::State;
    use torpor_tests::raw::{base_capabilities, LoginOptions, RawClient};
    use torpor_tests::serverless::Managed;

    let name = "acctparked";
    // The app account makes accounts: its configuration grants it every
    // privilege (a managed account gets ALL on `test` only by default).
    let managed = Managed::start(DriverKind::Process, name, |_, config| {
        for user in &mut config.users {
            user.grants = Some(vec![torpor::scaler::process::GRANT_EVERYTHING.into()]);
        }
    });
    let mut session = managed.connect();
    session
        .query_drop("CREATE USER acct_parked IDENTIFIED BY 'parked-pw'")
        .unwrap();
    session
        .query_drop("GRANT ALL ON test.* TO acct_parked")
        .unwrap();
    drop(session);
    let options = LoginOptions {
        user: "acct_parked".into(),
        password: "parked-pw".into(),
        ..LoginOptions::app(base_capabilities())
    };
    // A login now waits for the read the CREATE USER asked for, so the
    // book holds the user before the park (a park that overtakes that
    // read leaves the user out until the next wake: README says so).
    drop(RawClient::connect(managed.addr(), &options));
    // That session's end gives its connection back a moment later: the
    // park is refused (409) until then.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, body) = managed.act(name, "park");
        if status == 200 {
            break;
        }
        assert!(
            status == 409 && std::time::Instant::now() < deadline,
            "{status} {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut raw = RawClient::connect(managed.addr(), &options);
    assert_eq!(managed.state(), State::Parked, "a login woke the service");
    let wrong = LoginOptions {
        password: "wrong".into(),
        ..options.clone()
    };
    match RawClient::try_connect(managed.addr(), &wrong) {
        Err(e) => assert!(format!("{e:?}").contains("1045"), "{e:?}"),
        Ok(_) => panic!("a wrong password was accepted while parked"),
    }
    let reply = raw.query("SELECT CURRENT_USER()");
    assert!(
        reply.error().is_none(),
        "first query after the parked login"
    );
    let rows = reply.text_rows(base_capabilities());
    assert_eq!(rows, vec![vec![Some(b"acct_parked@%".to_vec())]]);
    assert_eq!(managed.state(), State::Active);
    let saved = managed
        .state_dir
        .path()
        .join("accounts")
        .join(format!("{name}.json"));
    assert!(std::fs::read_to_string(&saved)
        .unwrap()
        .contains("acct_parked"));
}

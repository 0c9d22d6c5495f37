//! Services created while Torpor runs (`POST /services`), with the real
//! `torpor` binary and real MariaDB servers: a created service (process
//! driver) serves a real client, comes back after a restart with its data,
//! survives a reload of the config file, and is deleted with its data
//! kept or dropped; bad requests get a 400 shaped as the API's other
//! errors. A docker service is created in a container and goes with its
//! volume. A restart of Torpor wakes no service, created or from the
//! config file: logins go without a backend, the first query wakes it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use mysql::prelude::Queryable;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use torpor::scaler::process::free_port;
use torpor_tests::binary::Running;
use torpor_tests::raw::{base_capabilities, LoginOptions, RawClient};
use torpor_tests::{backend, mysql_opts, APP_PASSWORD, APP_USER};

const SHOPPER: &str = "shopper";
const SHOPPER_PASSWORD: &str = "shop-secret";

/// `PASSWORD('…')` as MariaDB shows it: `*` and the hex of
/// SHA1(SHA1(password)).
fn native_hash(password: &str) -> String {
    let once = Sha1::digest(password.as_bytes());
    let twice = Sha1::digest(once);
    let hex: String = twice.iter().map(|b| format!("{b:02X}")).collect();
    format!("*{hex}")
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(180)))
        .build()
        .into()
}

/// An admin API call: its status and JSON body.
fn call(method: &str, admin: SocketAddr, path: &str, body: Option<&str>) -> (u16, Value) {
    torpor_tests::serverless::admin_call(admin, method, path, body)
}

fn shop_body(name: &str) -> String {
    json!({
        "name": name,
        "driver": "process",
        "buffer_pool_mib": 32,
        "suspend_after_secs": 0,
        "accounts": [{"name": SHOPPER, "password_hash": native_hash(SHOPPER_PASSWORD)}],
    })
    .to_string()
}

/// A config file whose one service is the test MariaDB (a static
/// backend), with the app account, and the admin API on `admin`.
fn write_config(path: &Path, state_dir: &Path, extra: &str) {
    let text = format!(
        "state_dir = \"{}\"\n{extra}\n\n[[services]]\nname = \"main\"\ndriver = \"static\"\naddress = \"{}\"\nusers = [\"{APP_USER}\"]\n\n[[users]]\nname = \"{APP_USER}\"\npassword = \"{APP_PASSWORD}\"\n",
        state_dir.display(),
        backend().addr(),
    );
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, path).unwrap();
}

/// Starts the binary; returns once clients and the admin API are both
/// served (the API starts just after the listeners).
fn start(config: &Path, admin: SocketAddr) -> Running {
    let running = Running::start_bare(
        &[
            "--config",
            config.to_str().unwrap(),
            "--admin-listen",
            &admin.to_string(),
        ],
        false,
    );
    loop_until(|| {
        agent()
            .get(&format!("http://{admin}/livez"))
            .call()
            .ok()
            .map(|_| ())
    });
    running
}

fn login(addr: SocketAddr, user: &str, password: &str) -> Result<mysql::Conn, u16> {
    match mysql::Conn::new(mysql_opts(addr, user, password)) {
        Ok(conn) => Ok(conn),
        Err(mysql::Error::MySqlError(e)) => Err(e.code),
        Err(e) => panic!("login as {user} failed without a server error: {e}"),
    }
}

/// Create, use, restart, reload, delete keeping data, create again (the
/// data is there), delete dropping data.
#[test]
fn a_created_service_serves_clients_across_restarts_and_is_deleted_as_told() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("torpor.toml");
    let state_dir = dir.path().join("state");
    write_config(&config, &state_dir, "");
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let mut torpor = start(&config, admin);

    let (status, created) = call("POST", admin, "/services", Some(&shop_body("shop")));
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "shop");
    assert_eq!(created["driver"], "process");
    let kept_file = state_dir.join("provisioned/shop.json");
    let kept: Value = serde_json::from_slice(&std::fs::read(&kept_file).unwrap()).unwrap();
    assert_eq!(
        kept["accounts"][0]["password_hash"],
        native_hash(SHOPPER_PASSWORD)
    );
    assert!(
        !std::fs::read_to_string(&kept_file)
            .unwrap()
            .contains(SHOPPER_PASSWORD),
        "no plaintext password is kept"
    );

    // The created service's own MariaDB answers its account; the config
    // file's service still answers its own.
    let mut shop = login(torpor.addr, SHOPPER, SHOPPER_PASSWORD).expect("the created account");
    shop.query_drop("CREATE TABLE test.orders (id INT PRIMARY KEY, item TEXT)")
        .unwrap();
    shop.query_drop("INSERT INTO test.orders VALUES (1, 'teapot')")
        .unwrap();
    // How long it took to be ready, from the POST: the cold path.
    let metrics = agent()
        .get(&format!("http://{admin}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.lines().any(|line| {
            line.starts_with("torpor_provision_duration_seconds_count")
                && line.contains("service=\"shop\"")
                && line.contains("from=\"cold\"")
                && line.ends_with(" 1")
        }),
        "no provision time for shop:\n{metrics}"
    );
    let shop_datadir: String = shop.query_first("SELECT @@datadir").unwrap().unwrap();
    assert!(
        shop_datadir.starts_with(state_dir.join("services/shop").to_str().unwrap()),
        "{shop_datadir}"
    );
    let mut app = login(torpor.addr, APP_USER, APP_PASSWORD).unwrap();
    let app_datadir: String = app.query_first("SELECT @@datadir").unwrap().unwrap();
    assert_ne!(app_datadir, shop_datadir);
    let (_, all) = call("GET", admin, "/services", None);
    let names: Vec<&str> = all["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["main", "shop"]);

    // A reload of the file (a new account for the file's service) keeps
    // the created service running: the open session goes on, on the same
    // backend connection.
    let id: u64 = shop.query_first("SELECT CONNECTION_ID()").unwrap().unwrap();
    write_config(&config, &state_dir, "max_connections = 500");
    torpor.signal(libc::SIGHUP);
    torpor.wait_log("config reloaded", 1);
    let after: u64 = shop.query_first("SELECT CONNECTION_ID()").unwrap().unwrap();
    assert_eq!(after, id, "the reload touched the created service");
    drop(login(torpor.addr, SHOPPER, SHOPPER_PASSWORD).expect("still after the reload"));
    drop(login(torpor.addr, APP_USER, APP_PASSWORD).expect("the file's account too"));
    drop(shop);
    drop(app);

    // A restart: the service comes back from state_dir, asleep (its
    // greeting and baselines kept): the start and a login wake nothing,
    // the first query does, and finds the data.
    torpor.stop();
    assert!(state_dir.join("services/shop/asleep.json").exists());
    let mut torpor = start(&config, admin);
    let state = |admin| call("GET", admin, "/services/shop", None).1["state"].clone();
    assert_eq!(state(admin), "parked", "the start woke it");
    // A login alone (the mysql crate queries right after its login).
    let options = LoginOptions {
        user: SHOPPER.to_string(),
        password: SHOPPER_PASSWORD.to_string(),
        ..LoginOptions::app(base_capabilities())
    };
    let mut raw = RawClient::connect(torpor.addr, &options);
    let pong = raw.command(&[0x0e]).expect("ping").expect("a reply");
    assert!(pong.error().is_none(), "ping while parked failed");
    assert_eq!(state(admin), "parked", "the login woke it");
    drop(raw);
    let mut shop = login(torpor.addr, SHOPPER, SHOPPER_PASSWORD).expect("after a restart");
    let item: String = shop
        .query_first("SELECT item FROM test.orders WHERE id = 1")
        .unwrap()
        .unwrap();
    assert_eq!(item, "teapot");
    assert_eq!(state(admin), "active");

    // Deleting says what happens to the data, or is refused.
    let (status, refused) = call("DELETE", admin, "/services/shop", None);
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("data=keep"),
        "{refused}"
    );
    let (status, busy) = call("DELETE", admin, "/services/shop?data=keep", None);
    assert_eq!(status, 409, "a client is connected: {busy}");
    drop(shop);
    let (status, config_owned) = call("DELETE", admin, "/services/main?data=keep", None);
    assert_eq!(status, 409, "{config_owned}");
    // The count of clients drops once the session's close is seen.
    let deleted = delete_when_idle(admin, "/services/shop?data=keep");
    assert_eq!(deleted.0, 200, "{}", deleted.1);
    assert_eq!(deleted.1["data"], "kept");
    assert!(!kept_file.exists());
    let datadir = state_dir.join("services/shop/data");
    assert!(datadir.join("ibdata1").exists(), "the datadir stays");
    assert_eq!(call("GET", admin, "/services/shop", None).0, 404);
    assert_eq!(
        login(torpor.addr, SHOPPER, SHOPPER_PASSWORD).err(),
        Some(1045)
    );

    // Created again, it finds its data.
    let (status, created) = call("POST", admin, "/services", Some(&shop_body("shop")));
    assert_eq!(status, 201, "{created}");
    let mut shop = login(torpor.addr, SHOPPER, SHOPPER_PASSWORD).expect("created again");
    let count: u64 = shop
        .query_first("SELECT COUNT(*) FROM test.orders")
        .unwrap()
        .unwrap();
    assert_eq!(count, 1);
    drop(shop);

    let deleted = delete_when_idle(admin, "/services/shop?data=drop");
    assert_eq!(deleted.0, 200, "{}", deleted.1);
    assert_eq!(deleted.1["data"], "dropped");
    assert!(!datadir.exists(), "the datadir is gone");
    assert!(!state_dir.join("services/shop").exists());
    torpor.stop();
    // Nothing comes back after a restart.
    let mut torpor = start(&config, admin);
    assert_eq!(call("GET", admin, "/services/shop", None).0, 404);
    torpor.stop();
}

/// A docker service created at run time: its container and volume are
/// made on the engine, its account logs in and writes, and a delete
/// dropping its data removes both (a delete keeping it, the container
/// only).
#[test]
fn a_created_docker_service_runs_in_a_container_and_goes_with_its_data() {
    use torpor_tests::docker::{
        containers_of, images_ready, mariadb_image, volumes_of, RemoveOnDrop,
    };
    if images_ready(&[mariadb_image()]).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("torpor.toml");
    let state_dir = dir.path().join("state");
    write_config(&config, &state_dir, "");
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let mut torpor = start(&config, admin);
    let name = torpor_tests::docker::unique_name("made");
    // Dropped after the test's end, however it ends.
    let _cleanup = RemoveOnDrop(name.clone());

    let body = json!({
        "name": name,
        "driver": "docker",
        "image": mariadb_image(),
        "memory_mib": 512,
        "buffer_pool_mib": 64,
        "suspend_after_secs": 0,
        "accounts": [{"name": SHOPPER, "password_hash": native_hash(SHOPPER_PASSWORD)}],
    })
    .to_string();
    let (status, created) = call("POST", admin, "/services", Some(&body));
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["driver"], "docker");
    // The POST answers before the server runs: the login waits for it.
    let mut shop = login(torpor.addr, SHOPPER, SHOPPER_PASSWORD).expect("the created account");
    shop.query_drop("CREATE TABLE test.crates (id INT PRIMARY KEY)")
        .unwrap();
    shop.query_drop("INSERT INTO test.crates VALUES (1), (2)")
        .unwrap();
    let hostname: String = shop.query_first("SELECT @@hostname").unwrap().unwrap();
    let local = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    assert_ne!(hostname, local.trim(), "not the container's server");
    assert_eq!(containers_of(&name).len(), 1);
    assert_eq!(volumes_of(&name).len(), 1);
    drop(shop);

    let deleted = delete_when_idle(admin, &format!("/services/{name}?data=drop"));
    assert_eq!(deleted.0, 200, "{}", deleted.1);
    assert_eq!(deleted.1["data"], "dropped");
    assert!(containers_of(&name).is_empty(), "the container is gone");
    assert!(volumes_of(&name).is_empty(), "the volume is gone");
    assert_eq!(
        login(torpor.addr, SHOPPER, SHOPPER_PASSWORD).err(),
        Some(1045),
        "the deleted service's account still logs in"
    );
    torpor.stop();
}

/// Creates a service with `body` (its account is the shopper), logs in
/// as it through Torpor at `addr` and runs `SELECT 1`; prints how long
/// that took from the POST (`path`: which way the service was made).
fn create_and_ask(admin: SocketAddr, addr: SocketAddr, body: &str, path: &str) -> mysql::Conn {
    let asked = std::time::Instant::now();
    let (status, created) = call("POST", admin, "/services", Some(body));
    assert_eq!(status, 201, "{created}");
    let mut conn = login(addr, SHOPPER, SHOPPER_PASSWORD).expect("the created account");
    let one: u32 = conn.query_first("SELECT 1").unwrap().unwrap();
    assert_eq!(one, 1);
    eprintln!(
        "{path}: POST to the first query answered in {} ms",
        asked.elapsed().as_millis()
    );
    conn
}

/// `DELETE path`, retried while it is refused (409) because the
/// service's last client has not been seen closing yet.
fn delete_when_idle(admin: SocketAddr, path: &str) -> (u16, Value) {
    loop_until(|| {
        let (status, body) = call("DELETE", admin, path, None);
        (status != 409).then_some((status, body))
    })
}

/// Retries `attempt` until it gives an answer (a bound against hangs
/// only).
fn loop_until<T>(mut attempt: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + torpor_tests::binary::HANG_LIMIT;
    loop {
        if let Some(answer) = attempt() {
            return answer;
        }
        assert!(std::time::Instant::now() < deadline, "never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Bodies that do not read or do not validate get a 400 with the shape of
/// the API's other errors (one `error` string); clashes get a 409.
#[test]
fn a_bad_body_gets_a_clear_400_shaped_as_other_admin_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("torpor.toml");
    let state_dir = dir.path().join("state");
    write_config(&config, &state_dir, "");
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let mut torpor = start(&config, admin);

    let shape = |body: &Value| {
        let object = body.as_object().expect("an object");
        assert_eq!(object.len(), 1, "{body}");
        object["error"]
            .as_str()
            .expect("an error string")
            .to_string()
    };
    // An error the API gave before services could be created.
    let (status, other) = call("POST", admin, "/services/main/explode", None);
    assert_eq!(status, 400);
    assert!(other["error"].is_string(), "{other}");
    let (status, unknown) = call("GET", admin, "/services/nope", None);
    assert_eq!(status, 404);
    shape(&unknown);

    let hash = native_hash("x");
    for (body, says) in [
        ("not json".to_string(), "the body is not a service"),
        (json!({"name": "a"}).to_string(), "missing field"),
        (
            json!({"name": "a", "driver": "process", "accounts": [{"name": "u", "password": "plain"}]})
                .to_string(),
            "unknown field `password`",
        ),
        (
            json!({"name": "a", "driver": "process", "colour": 1, "accounts": []}).to_string(),
            "unknown field `colour`",
        ),
        (
            json!({"name": "a b", "driver": "process", "accounts": [{"name": "u", "password_hash": hash}]})
                .to_string(),
            "service name 'a b'",
        ),
        (
            json!({"name": "a", "driver": "process", "accounts": [{"name": "u", "password_hash": "*00"}]})
                .to_string(),
            "user 'u'",
        ),
        (
            json!({"name": "a", "driver": "process", "accounts": []}).to_string(),
            "at least one account",
        ),
        (
            json!({"name": "a", "driver": "static", "accounts": [{"name": "u", "password_hash": hash}]})
                .to_string(),
            "driver must be process or docker",
        ),
        (
            json!({"name": "a", "driver": "process", "autoscale": {"min_cpus": 4.0, "max_cpus": 1.0},
                   "accounts": [{"name": "u", "password_hash": hash}]})
            .to_string(),
            "autoscale",
        ),
    ] {
        let (status, answer) = call("POST", admin, "/services", Some(&body));
        assert_eq!(status, 400, "{body}: {answer}");
        let error = shape(&answer);
        assert!(error.contains(says), "{body}: {error}");
    }
    for (body, says) in [
        (
            json!({"name": "main", "driver": "process", "accounts": [{"name": "u", "password_hash": hash}]}),
            "exists already",
        ),
        (
            json!({"name": "other", "driver": "process", "accounts": [{"name": APP_USER, "password_hash": hash}]}),
            "account 'app' exists already",
        ),
    ] {
        let (status, answer) = call("POST", admin, "/services", Some(&body.to_string()));
        assert_eq!(status, 409, "{body}: {answer}");
        assert!(shape(&answer).contains(says), "{answer}");
    }
    // Nothing was kept or started.
    assert!(
        !state_dir.join("provisioned").exists()
            || std::fs::read_dir(state_dir.join("provisioned"))
                .unwrap()
                .next()
                .is_none()
    );
    let (_, all) = call("GET", admin, "/services", None);
    assert_eq!(all["services"].as_array().unwrap().len(), 1);
    torpor.stop();
}

/// Accounts made with `CREATE USER` through a service created while
/// Torpor runs are read back from its backend, as a config file's
/// service's are: the new user logs in at once; its queries are counted
/// in `/metrics`.
#[test]
fn a_user_created_on_a_created_service_logs_in_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("torpor.toml");
    let state_dir = dir.path().join("state");
    write_config(&config, &state_dir, "");
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let mut torpor = start(&config, admin);
    let body = json!({
        "name": "crm",
        "driver": "process",
        "buffer_pool_mib": 32,
        "accounts": [{
            "name": "crm_owner",
            "password_hash": native_hash("owner-pw"),
            "grants": ["ALL PRIVILEGES ON *.* WITH GRANT OPTION"],
        }],
    });
    let (status, created) = call("POST", admin, "/services", Some(&body.to_string()));
    assert_eq!(status, 201, "{created}");
    let mut owner = login(torpor.addr, "crm_owner", "owner-pw").expect("the created account");
    assert_eq!(login(torpor.addr, "crm_late", "late-pw").err(), Some(1045));
    owner
        .query_drop("CREATE USER crm_late IDENTIFIED BY 'late-pw'")
        .unwrap();
    owner
        .query_drop("GRANT SELECT ON test.* TO crm_late")
        .unwrap();
    let mut late = login(torpor.addr, "crm_late", "late-pw").expect("read from the backend");
    let user: String = late.query_first("SELECT CURRENT_USER()").unwrap().unwrap();
    assert_eq!(user, "crm_late@%");
    let datadir: String = late.query_first("SELECT @@datadir").unwrap().unwrap();
    assert!(datadir.contains("services/crm"), "{datadir}");
    // Its queries are counted in /metrics (published at the workers'
    // next tick).
    loop_until(|| {
        let text = torpor_tests::serverless::metrics_text(admin)?;
        text.lines()
            .any(|l| l.starts_with("torpor_queries_total{service=\"crm\"}") && !l.ends_with(" 0"))
            .then_some(())
    });
    drop(late);
    drop(owner);
    torpor.stop();
}

/// A config file's managed service (process driver) comes back from a
/// restart of Torpor parked, as it was left: neither the start nor a
/// login wakes it, the first query does.
#[test]
fn a_restart_wakes_no_service_of_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("torpor.toml");
    let state_dir = dir.path().join("state");
    let text = format!(
        "state_dir = \"{}\"\n\n[[services]]\nname = \"db\"\ndriver = \"process\"\nbuffer_pool_mib = 32\n\n[[users]]\nname = \"{APP_USER}\"\npassword = \"{APP_PASSWORD}\"\n",
        state_dir.display()
    );
    std::fs::write(&config, text).unwrap();
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let mut torpor = start(&config, admin);
    let mut app = login(torpor.addr, APP_USER, APP_PASSWORD).expect("first start");
    app.query_drop("CREATE TABLE test.kept (n INT)").unwrap();
    app.query_drop("INSERT INTO test.kept VALUES (7)").unwrap();
    drop(app);
    // Kept while Torpor runs, not only when it stops (a crash keeps it).
    let asleep = state_dir.join("services/db/asleep.json");
    loop_until(|| asleep.exists().then_some(()));
    torpor.stop();

    let mut torpor = start(&config, admin);
    let state = || call("GET", admin, "/services/db", None).1["state"].clone();
    assert_eq!(state(), "parked", "the start woke it");
    let mut raw = RawClient::connect(torpor.addr, &LoginOptions::app(base_capabilities()));
    let pong = raw.command(&[0x0e]).expect("ping").expect("a reply");
    assert!(pong.error().is_none(), "ping while parked failed");
    assert_eq!(state(), "parked", "the login woke it");
    let reply = raw.query("SELECT n FROM test.kept");
    assert!(reply.error().is_none(), "the first query after the restart");
    assert_eq!(state(), "active");
    drop(raw);
    torpor.stop();
}

/// The metrics text.
fn scrape(admin: SocketAddr) -> String {
    agent()
        .get(&format!("http://{admin}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

/// The value of the sample whose line starts with `name` and holds every
/// one of `labels`.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && labels.iter().all(|l| line.contains(l)))
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
}

/// Waits until the `driver` pool on `local` holds `ready` instances.
fn wait_for_pool(admin: SocketAddr, driver: &str, ready: f64) {
    let driver = format!("driver=\"{driver}\"");
    loop_until(|| {
        let metrics = scrape(admin);
        let now = sample(
            &metrics,
            "torpor_warm_pool_instances",
            &[&driver, "host=\"local\""],
        );
        (now == Some(ready)).then_some(())
    });
}

/// `[[warm_pools]]`: a created service takes over a ready server (its
/// datadir is the pool's, claimed; its accounts, its buffer pool and
/// its data are its own), the pool fills again, the next service gets
/// another server, and after a restart of Torpor the first comes back
/// with its data from the datadir it took over.
#[test]
fn a_created_service_takes_over_a_warm_server_and_the_pool_fills_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("torpor.toml");
    let state_dir = dir.path().join("state");
    write_config(
        &config,
        &state_dir,
        "[[warm_pools]]\ndriver = \"process\"\ninstances = 1\nbuffer_pool_mib = 8",
    );
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let mut torpor = start(&config, admin);
    wait_for_pool(admin, "process", 1.0);

    let mut first = create_and_ask(admin, torpor.addr, &shop_body("first"), "warm");
    let metrics = scrape(admin);
    for name in [
        "torpor_provision_duration_seconds_count",
        "torpor_wake_duration_seconds_count",
    ] {
        assert_eq!(
            sample(&metrics, name, &["service=\"first\"", "from=\"warm\""]),
            Some(1.0),
            "{name} from=\"warm\" for first:\n{metrics}"
        );
    }
    // The pool's server, now the service's: its datadir is claimed.
    let pool_dir = state_dir.join("warm/process-local");
    let datadir: String = first.query_first("SELECT @@datadir").unwrap().unwrap();
    assert!(datadir.starts_with(pool_dir.to_str().unwrap()), "{datadir}");
    let instance = Path::new(&datadir).parent().unwrap().to_path_buf();
    assert_eq!(
        std::fs::read_to_string(instance.join("claimed")).unwrap(),
        "first"
    );
    // The service's buffer pool (32 MiB), not the pool's 8.
    loop_until(|| {
        let bytes: u64 = first
            .query_first("SELECT @@innodb_buffer_pool_size")
            .unwrap()
            .unwrap();
        (bytes == 32 << 20).then_some(())
    });
    first
        .query_drop("CREATE TABLE test.orders (id INT PRIMARY KEY, item TEXT)")
        .unwrap();
    first
        .query_drop("INSERT INTO test.orders VALUES (1, 'teapot')")
        .unwrap();

    // The pool fills again; the next service gets another server, which
    // has none of the first's tables.
    wait_for_pool(admin, "process", 1.0);
    let second_body = shop_body("second").replace(SHOPPER, "buyer");
    let (status, created) = call("POST", admin, "/services", Some(&second_body));
    assert_eq!(status, 201, "{created}");
    let mut second = login(torpor.addr, "buyer", SHOPPER_PASSWORD).expect("the second account");
    let other: String = second.query_first("SELECT @@datadir").unwrap().unwrap();
    assert_ne!(other, datadir);
    assert!(other.starts_with(pool_dir.to_str().unwrap()), "{other}");
    let tables: u64 = second
        .query_first("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'test'")
        .unwrap()
        .unwrap();
    assert_eq!(tables, 0);
    // Each account reaches its own service only.
    assert_eq!(
        login(torpor.addr, "buyer", "not-the-password").err(),
        Some(1045)
    );

    // Torpor restarted: the first service runs from the datadir it took
    // over, with its row.
    drop((first, second));
    torpor.stop();
    let mut torpor = start(&config, admin);
    let mut first = login(torpor.addr, SHOPPER, SHOPPER_PASSWORD).expect("after the restart");
    let item: String = first
        .query_first("SELECT item FROM test.orders WHERE id = 1")
        .unwrap()
        .unwrap();
    assert_eq!(item, "teapot");
    let again: String = first.query_first("SELECT @@datadir").unwrap().unwrap();
    assert_eq!(again, datadir);
    drop(first);

    // Deleted with its data: the datadir it took over goes.
    let deleted = delete_when_idle(admin, "/services/first?data=drop");
    assert_eq!(deleted.0, 200, "{}", deleted.1);
    assert!(!Path::new(&datadir).exists(), "{datadir} is still there");
    torpor.stop();
}

/// The state letter (`T`: stopped) of every `mariadbd` whose datadir is
/// under `dir`, by datadir.
fn frozen_states(dir: &Path) -> Vec<(String, char)> {
    let wanted = format!("--datadir={}", dir.display());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let Some(datadir) = cmdline
            .split(' ')
            .find(|arg| arg.starts_with(&wanted) && cmdline.contains("mariadbd"))
        else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if let Some(state) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
        {
            found.push((datadir.to_string(), state));
        }
    }
    found.sort();
    found
}

/// Torpor started from a shell with job control (its own process group),
/// and the shell then exits: the kernel sends SIGHUP and SIGCONT to a
/// process group it leaves orphaned with stopped processes in it. The
/// suspended service's server and the warm pool's stay frozen: they run
/// in groups of their own. (Before, both ran again behind the scaler's
/// back.)
#[test]
fn frozen_servers_stay_frozen_when_the_shell_that_started_torpor_exits() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let fifo = dir.path().join("hold");
    let fifo_c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(fifo_c.as_ptr(), 0o600) }, 0);
    let pid_file = dir.path().join("torpor.pid");
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let user = format!("{APP_USER}:{APP_PASSWORD}");
    let mut shell = std::process::Command::new("setsid")
        .args([
            "bash",
            "-c",
            "set -m; \"$@\" 2>\"$LOG\" & echo $! > \"$PID_FILE\"; read -r _ < \"$FIFO\"",
            "bash",
        ])
        .arg(torpor_tests::torpor_binary())
        .args(["--listen", &listen.to_string(), "--spawn-mariadb", "--user"])
        .arg(&user)
        .args(["--admin-listen", &admin.to_string(), "--state-dir"])
        .arg(&state_dir)
        .args(["--warm-pool", "1", "--suspend-after-secs", "1"])
        .env("LOG", dir.path().join("torpor.log"))
        .env("PID_FILE", &pid_file)
        .env("FIFO", &fifo)
        .spawn()
        .expect("setsid and bash run");
    let torpor_pid = loop_until(|| {
        std::fs::read_to_string(&pid_file)
            .ok()?
            .trim()
            .parse::<i32>()
            .ok()
    });
    let stop_torpor = StopOnDrop(torpor_pid);
    loop_until(|| {
        agent()
            .get(&format!("http://{admin}/readyz"))
            .call()
            .ok()
            .filter(|r| r.status() == 200)
    });
    wait_for_pool(admin, "process", 1.0);
    let mut app = login(listen, APP_USER, APP_PASSWORD).expect("the app account");
    app.query_drop("DO 1").unwrap();
    drop(app);
    loop_until(|| {
        (call("GET", admin, "/services/default", None).1["state"] == "suspended").then_some(())
    });
    let frozen = frozen_states(&state_dir);
    assert_eq!(frozen.len(), 2, "{frozen:?}");
    assert!(frozen.iter().all(|(_, s)| *s == 'T'), "{frozen:?}");

    // The shell exits (its `read` ends): Torpor's group is orphaned.
    std::fs::write(&fifo, "go\n").unwrap();
    assert!(shell.wait().unwrap().success());
    std::thread::sleep(Duration::from_secs(1));
    let after = frozen_states(&state_dir);
    assert_eq!(after, frozen, "a frozen server runs again");
    drop(stop_torpor);
}

/// Stops Torpor (SIGTERM) when the test ends, passed or not.
struct StopOnDrop(i32);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill sends a signal; no memory is involved.
        unsafe { libc::kill(self.0, libc::SIGTERM) };
    }
}

/// Removes, when the test ends, the warm pool's containers and volumes
/// under `state_dir` (they outlive Torpor, paused, for its next start).
struct RemoveWarmOnDrop(std::path::PathBuf);

impl Drop for RemoveWarmOnDrop {
    fn drop(&mut self) {
        let pool = self.0.join("warm/docker-local");
        for entry in std::fs::read_dir(pool).into_iter().flatten().flatten() {
            let name = format!("torpor-warm-{}", entry.file_name().to_string_lossy());
            let _ = torpor_tests::docker::docker(&["rm", "-f", "-v", &name]);
            let _ = torpor_tests::docker::docker(&["volume", "rm", "-f", &format!("{name}-data")]);
        }
    }
}

/// A docker warm pool: a created docker service takes over a paused
/// container (`torpor-warm-<id>`, its placement file says so) with the
/// service's memory limit, its accounts and its data; the pool fills
/// again; after a restart of Torpor the service runs the same container
/// with its data, and the pool finds its paused one; deleted with its
/// data, the container and volume go; started without the pool, Torpor
/// removes the pool's paused container.
#[test]
fn a_created_docker_service_takes_over_a_paused_warm_container() {
    use torpor_tests::docker::{docker, images_ready, mariadb_image};
    if images_ready(&[mariadb_image()]).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("torpor.toml");
    let state_dir = dir.path().join("state");
    let _cleanup = RemoveWarmOnDrop(state_dir.clone());
    write_config(
        &config,
        &state_dir,
        &format!(
            "[[warm_pools]]\ndriver = \"docker\"\ninstances = 1\nimage = \"{}\"",
            mariadb_image()
        ),
    );
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let mut torpor = start(&config, admin);
    wait_for_pool(admin, "docker", 1.0);
    let name = torpor_tests::docker::unique_name("warmed");
    let _service_cleanup = torpor_tests::docker::RemoveOnDrop(name.clone());
    let body = json!({
        "name": name,
        "driver": "docker",
        "image": mariadb_image(),
        "memory_mib": 640,
        "buffer_pool_mib": 64,
        "suspend_after_secs": 0,
        "accounts": [{"name": SHOPPER, "password_hash": native_hash(SHOPPER_PASSWORD)}],
    })
    .to_string();
    let mut shop = create_and_ask(admin, torpor.addr, &body, "warm docker");
    let metrics = scrape(admin);
    assert_eq!(
        sample(
            &metrics,
            "torpor_provision_duration_seconds_count",
            &[&format!("service=\"{name}\""), "from=\"warm\""]
        ),
        Some(1.0),
        "{metrics}"
    );
    let placement = std::fs::read_to_string(
        state_dir
            .join("services")
            .join(&name)
            .join("docker.placement"),
    )
    .unwrap();
    let mut words = placement.split_whitespace();
    let suffix = words.next().unwrap().to_string();
    assert_eq!(words.collect::<Vec<_>>(), ["local", "warm"], "{placement}");
    let container = format!("torpor-warm{suffix}");
    let memory = docker(&["inspect", "-f", "{{.HostConfig.Memory}}", &container]).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&memory.stdout).trim(),
        (640u64 << 20).to_string(),
        "the service's limit"
    );
    shop.query_drop("CREATE TABLE test.crates (id INT PRIMARY KEY)")
        .unwrap();
    shop.query_drop("INSERT INTO test.crates VALUES (1), (2)")
        .unwrap();
    drop(shop);
    wait_for_pool(admin, "docker", 1.0);

    // Restarted, Torpor finds the service's container and the pool's.
    torpor.stop();
    let mut torpor = start(&config, admin);
    let mut shop = login(torpor.addr, SHOPPER, SHOPPER_PASSWORD).expect("after the restart");
    let count: u64 = shop
        .query_first("SELECT COUNT(*) FROM test.crates")
        .unwrap()
        .unwrap();
    assert_eq!(count, 2);
    drop(shop);
    wait_for_pool(admin, "docker", 1.0);
    let pool_dirs = std::fs::read_dir(state_dir.join("warm/docker-local"))
        .unwrap()
        .count();
    assert_eq!(
        pool_dirs, 2,
        "the pool's folder was reused, not a new one made"
    );

    let deleted = delete_when_idle(admin, &format!("/services/{name}?data=drop"));
    assert_eq!(deleted.0, 200, "{}", deleted.1);
    let gone = docker(&["inspect", &container]).unwrap();
    assert!(!gone.status.success(), "{container} is still there");
    let volume = docker(&["volume", "inspect", &format!("{container}-data")]).unwrap();
    assert!(!volume.status.success(), "its volume is still there");

    // The pool taken out of the config, its paused container goes at
    // the next start, with its volume and folder.
    let pool_dir = state_dir.join("warm/docker-local");
    let unclaimed: Vec<_> = std::fs::read_dir(&pool_dir)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|dir| !dir.join("claimed").exists())
        .collect();
    assert_eq!(unclaimed.len(), 1, "the pool's one ready container");
    let id = unclaimed[0].file_name().unwrap().to_string_lossy();
    let pooled = format!("torpor-warm-{id}");
    let paused = docker(&["inspect", "-f", "{{.State.Status}}", &pooled]).unwrap();
    assert_eq!(String::from_utf8_lossy(&paused.stdout).trim(), "paused");
    torpor.stop();
    write_config(&config, &state_dir, "");
    let mut torpor = start(&config, admin);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while docker(&["inspect", &pooled]).unwrap().status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "{pooled} is still there a minute after a start without its pool"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let volume = docker(&["volume", "inspect", &format!("{pooled}-data")]).unwrap();
    assert!(!volume.status.success(), "the pool's volume is still there");
    while unclaimed[0].exists() {
        assert!(std::time::Instant::now() < deadline, "its folder stays");
        std::thread::sleep(Duration::from_millis(100));
    }
    torpor.stop();
}

//! Parsing, defaults and checks of the configuration: flags, file and
//! environment.

use super::cli::shown_defaults;
use super::*;
use clap::Parser;

#[test]
fn flags_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("torpor.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:7000\"\nworkers = 3\n[backend]\naddress = \"db:3306\"\n\
         [[users]]\nname = \"app\"\npassword = \"old\"\n",
    )
    .unwrap();
    let cli = Cli::parse_from([
        "torpor",
        "--config",
        path.to_str().unwrap(),
        "--backend",
        "127.0.0.1:3307",
        "--user",
        "app:new",
        "--user",
        "ro:*14E65567ABDB5135D0CFD9A70B3032C179A49EE7",
    ]);
    let config = cli.into_config().unwrap();
    assert_eq!(config.listen.port(), 7000);
    assert_eq!(config.workers, 3);
    assert_eq!(config.backend.unwrap().address, "127.0.0.1:3307");
    assert_eq!(config.users.len(), 2);
    assert_eq!(config.users[0].password.as_deref(), Some("new"));
    assert!(config.users[1].password_hash.is_some());
}

#[test]
fn login_timeout_defaults_to_connect_timeouts_and_is_never_zero() {
    let config = Cli::parse_from(["torpor", "--backend", "x:1"])
        .into_config()
        .unwrap();
    assert_eq!(config.login_timeout_secs, 10);
    let config = Cli::parse_from(["torpor", "--backend", "x:1", "--login-timeout-secs", "3"])
        .into_config()
        .unwrap();
    assert_eq!(config.login_timeout_secs, 3);
    let err = Cli::parse_from(["torpor", "--backend", "x:1", "--login-timeout-secs", "0"])
        .into_config()
        .unwrap_err()
        .to_string();
    assert!(err.contains("login_timeout_secs"), "{err}");
}

#[test]
fn the_outage_hold_defaults_to_a_minute_and_may_be_off() {
    let config = Cli::parse_from(["torpor", "--backend", "x:1"])
        .into_config()
        .unwrap();
    assert_eq!(config.outage_hold_secs, 60);
    let config = Cli::parse_from(["torpor", "--backend", "x:1", "--outage-hold-secs", "0"])
        .into_config()
        .unwrap();
    assert_eq!(config.outage_hold_secs, 0);
    let config = Config::from_toml(
        "outage_hold_secs = 5\n[backend]\naddress = \"x:1\"\n",
        "x.toml".into(),
    )
    .unwrap();
    assert_eq!(config.outage_hold_secs, 5);
}

#[test]
fn net_read_timeout_defaults_to_mariadbs_and_is_never_zero() {
    let config = Cli::parse_from(["torpor", "--backend", "x:1"])
        .into_config()
        .unwrap();
    assert_eq!(config.net_read_timeout_secs, 30);
    let args = ["torpor", "--backend", "x:1", "--net-read-timeout-secs", "2"];
    let config = Cli::parse_from(args).into_config().unwrap();
    assert_eq!(config.net_read_timeout_secs, 2);
    let args = ["torpor", "--backend", "x:1", "--net-read-timeout-secs", "0"];
    let err = Cli::parse_from(args).into_config().unwrap_err().to_string();
    assert!(err.contains("net_read_timeout_secs"), "{err}");
}

#[test]
fn net_write_timeout_defaults_to_mariadbs_and_is_never_zero() {
    let config = Cli::parse_from(["torpor", "--backend", "x:1"])
        .into_config()
        .unwrap();
    assert_eq!(config.net_write_timeout_secs, 60);
    let args = [
        "torpor",
        "--backend",
        "x:1",
        "--net-write-timeout-secs",
        "3",
    ];
    let config = Cli::parse_from(args).into_config().unwrap();
    assert_eq!(config.net_write_timeout_secs, 3);
    let args = [
        "torpor",
        "--backend",
        "x:1",
        "--net-write-timeout-secs",
        "0",
    ];
    let err = Cli::parse_from(args).into_config().unwrap_err().to_string();
    assert!(err.contains("net_write_timeout_secs"), "{err}");
}

#[test]
fn secrets_come_from_files_and_the_environment_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, "app:from-file\nro:from-file\n").unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "file-token\n").unwrap();
    let args = [
        "torpor",
        "--backend",
        "x:1",
        "--users-file",
        users.to_str().unwrap(),
        "--admin-token-file",
        token.to_str().unwrap(),
    ];
    let config = Cli::parse_from(args)
        .into_config_with_env(|_| None)
        .unwrap();
    assert_eq!(config.admin.token(), Some("file-token"));
    let password = |config: &Config, name: &str| {
        config
            .users
            .iter()
            .find(|u| u.name == name)
            .and_then(|u| u.password.clone())
    };
    assert_eq!(password(&config, "ro").as_deref(), Some("from-file"));
    let env = |name: &str| match name {
        "TORPOR_USERS" => Some("app:from-env\nnew:from-env".to_string()),
        "TORPOR_ADMIN_TOKEN" => Some("env-token".to_string()),
        _ => None,
    };
    let config = Cli::parse_from(args).into_config_with_env(env).unwrap();
    assert_eq!(config.admin.token(), Some("env-token"));
    assert_eq!(password(&config, "app").as_deref(), Some("from-env"));
    assert_eq!(password(&config, "ro").as_deref(), Some("from-file"));
    assert_eq!(password(&config, "new").as_deref(), Some("from-env"));
    let mut with_flags = args.to_vec();
    with_flags.extend(["--user", "app:flag", "--admin-token", "flag-token"]);
    let cli = Cli::parse_from(with_flags);
    assert_eq!(secrets::command_line_warnings(&cli).len(), 2);
    let config = cli.into_config_with_env(env).unwrap();
    assert_eq!(config.admin.token(), Some("flag-token"));
    assert_eq!(password(&config, "app").as_deref(), Some("flag"));
}

#[test]
fn the_admin_listener_comes_from_the_environment_and_the_flag_wins() {
    let env = |listen: &'static str| {
        move |name: &str| match name {
            "TORPOR_ADMIN_LISTEN" => Some(listen.to_string()),
            "TORPOR_ADMIN_TOKEN" => Some("t".to_string()),
            _ => None,
        }
    };
    let config = Cli::parse_from(["torpor", "--backend", "x:1"])
        .into_config_with_env(env("0.0.0.0:6034"))
        .unwrap();
    assert_eq!(config.admin.listen, Some("0.0.0.0:6034".parse().unwrap()));
    let config = Cli::parse_from(["torpor", "--backend", "x:1"])
        .into_config_with_env(env("off"))
        .unwrap();
    assert_eq!(config.admin.listen, None);
    let config = Cli::parse_from(["torpor", "--backend", "x:1", "--admin-listen", "off"])
        .into_config_with_env(env("0.0.0.0:6034"))
        .unwrap();
    assert_eq!(config.admin.listen, None);
    // Off loopback without a token: refused, as with the flag.
    let refused = Cli::parse_from(["torpor", "--backend", "x:1"])
        .into_config_with_env(|name| {
            (name == "TORPOR_ADMIN_LISTEN").then(|| "0.0.0.0:6034".to_string())
        })
        .unwrap_err()
        .to_string();
    assert!(refused.contains("[admin] token"), "{refused}");
}

#[test]
fn an_empty_admin_token_counts_as_none() {
    let refused = Cli::parse_from([
        "torpor",
        "--backend",
        "x:1",
        "--admin-listen",
        "0.0.0.0:6034",
        "--admin-token",
        "",
    ])
    .into_config_with_env(|_| None)
    .unwrap_err()
    .to_string();
    assert!(refused.contains("[admin] token"), "{refused}");
    let config = Config {
        admin: AdminConfig {
            listen: None,
            token: Some(String::new()),
        },
        ..Config::default()
    };
    assert_eq!(config.admin.token(), None);
}

#[test]
fn help_shows_the_configurations_defaults() {
    let help = Cli::command_with_defaults().render_long_help().to_string();
    for (id, default) in shown_defaults() {
        let flag = format!("--{}", id.replace('_', "-"));
        let at = help
            .find(&flag)
            .unwrap_or_else(|| panic!("{flag} missing:\n{help}"));
        let next = help[at + flag.len()..]
            .find("\n  -")
            .map_or(help.len(), |n| at + flag.len() + n);
        assert!(
            help[at..next].contains(&format!("[default: {default}]")),
            "{flag} does not show its default {default}:\n{}",
            &help[at..next]
        );
    }
    assert!(help.contains("[default: 127.0.0.1:6033]"), "{help}");
    assert!(help.contains("[default: 14400]"), "{help}");
}

#[test]
fn bad_values_are_explained() {
    let cli = Cli::parse_from(["torpor", "--backend", "x:1", "--user", "nopassword"]);
    let err = cli.into_config().unwrap_err().to_string();
    assert!(err.contains("NAME:PASSWORD"), "{err}");
    let err = Cli::parse_from(["torpor"])
        .into_config()
        .unwrap_err()
        .to_string();
    assert!(err.contains("no backend"), "{err}");
    let err = Config::from_toml("listen = 5", "x.toml".into())
        .unwrap_err()
        .to_string();
    assert!(err.contains("x.toml"), "{err}");
    let err = Config::from_toml("bogus = 1", "x.toml".into())
        .unwrap_err()
        .to_string();
    assert!(err.contains("bogus"), "{err}");
}

#[test]
fn tls_is_on_by_default_and_the_file_and_flags_set_it() {
    let config = Cli::parse_from(["torpor", "--backend", "x:1"])
        .into_config()
        .unwrap();
    assert_eq!(config.tls, TlsConfig::default());
    assert!(config.tls.enabled && config.tls.cert.is_none());
    assert!(!config.require_secure_transport);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("torpor.toml");
    std::fs::write(
        &path,
        "require_secure_transport = true\n[backend]\naddress = \"db:3306\"\n\
         [tls]\ncert = \"/etc/torpor/chain.pem\"\nkey = \"/etc/torpor/key.pem\"\n",
    )
    .unwrap();
    let config = Cli::parse_from(["torpor", "--config", path.to_str().unwrap()])
        .into_config()
        .unwrap();
    assert!(config.require_secure_transport);
    assert_eq!(
        config.tls.cert.as_deref(),
        Some(std::path::Path::new("/etc/torpor/chain.pem"))
    );

    // TLS off and plain TCP refused, with no socket: nobody could log in.
    let refused = Cli::parse_from([
        "torpor",
        "--backend",
        "x:1",
        "--tls",
        "off",
        "--require-secure-transport",
    ])
    .into_config();
    assert!(refused.is_err());
    // A cert without its key is refused by clap.
    assert!(Cli::try_parse_from(["torpor", "--backend", "x:1", "--tls-cert", "c.pem"]).is_err());
}

#[test]
fn services_may_be_static_routed_by_server_name_and_have_backend_tls() {
    let text = |extra: &str| {
        format!(
            "[[users]]\nname = \"app\"\npassword = \"x\"\n\
             [[services]]\nname = \"main\"\ndriver = \"static\"\naddress = \"127.0.0.1:3306\"\nusers = [\"app\"]\n\
             [[services]]\nname = \"shop\"\ndriver = \"static\"\naddress = \"127.0.0.1:3307\"\nusers = [\"app\"]\n\
             hosts = [\"shop.db.example\"]\n{extra}"
        )
    };
    let check =
        |extra: &str| Config::from_toml(&text(extra), "t.toml".into()).and_then(|c| c.validate());
    // A user on two services routes by server name among them.
    check("").unwrap();
    let pin = format!("tls_fingerprint = \"sha256:{}\"\n", "ab".repeat(32));
    check(&format!("tls = \"required\"\n{pin}")).unwrap();
    check("tls = \"preferred\"\ntls_ca = \"/ca.pem\"\n").unwrap();
    let refused = |extra: &str, why: &str| {
        let error = check(extra).unwrap_err().to_string();
        assert!(error.contains(why), "{extra}: {error}");
    };
    refused("tls = \"required\"\n", "needs tls_ca");
    refused(
        &format!("tls = \"required\"\ntls_ca = \"/ca.pem\"\n{pin}"),
        "not both",
    );
    refused(
        "tls = \"required\"\ntls_fingerprint = \"sha256:abcd\"\n",
        "tls_fingerprint",
    );
    let config = Config::from_toml(
        "[[services]]\nname = \"s\"\ndriver = \"static\"\n",
        "t.toml".into(),
    )
    .unwrap();
    assert!(config
        .validate()
        .unwrap_err()
        .to_string()
        .contains("needs an address"));
    let config = Config::from_toml(
        "[[services]]\nname = \"s\"\ndriver = \"process\"\naddress = \"h:1\"\n",
        "t.toml".into(),
    )
    .unwrap();
    assert!(config
        .validate()
        .unwrap_err()
        .to_string()
        .contains("driver static"));
    // One name for two services, whatever its case.
    let twice = text("").replacen(
        "address = \"127.0.0.1:3306\"\nusers = [\"app\"]\n",
        "address = \"127.0.0.1:3306\"\nusers = [\"app\"]\nhosts = [\"SHOP.db.example\"]\n",
        1,
    );
    let config = Config::from_toml(&twice, "t.toml".into()).unwrap();
    assert!(config
        .validate()
        .unwrap_err()
        .to_string()
        .contains("names another service"));
    let settings = crate::settings::Settings::from_config(&Config {
        state_dir: tempfile::tempdir().unwrap().path().to_path_buf(),
        ..Config::from_toml(&text(""), "t.toml".into()).unwrap()
    })
    .unwrap();
    assert_eq!(settings.service_named(Some("shop.db.example")), Some(1));
    assert_eq!(settings.service_named(Some("Shop.DB.Example")), Some(1));
    assert_eq!(settings.service_named(Some("main.db.example")), None);
    assert_eq!(settings.service_named(None), None);
    assert_eq!(settings.users.service_of(b"app"), Some(0));
    assert!(settings.users.routes_to(b"app", 1));
}

#[test]
fn warm_pool_on_the_command_line_is_a_process_pool_and_needs_services() {
    let config = Cli::parse_from(["torpor", "--spawn-mariadb", "--warm-pool", "2"])
        .into_config()
        .unwrap();
    assert_eq!(
        config.warm_pools,
        [super::warm_pool::WarmPoolConfig::process(2)]
    );
    config.validate().unwrap();
    let none = Cli::parse_from(["torpor", "--spawn-mariadb", "--warm-pool", "0"])
        .into_config()
        .unwrap();
    assert!(none.warm_pools.is_empty());
    let err = Cli::parse_from(["torpor", "--backend", "x:1", "--warm-pool", "1"])
        .into_config()
        .and_then(|config| config.validate().map(|()| config))
        .unwrap_err()
        .to_string();
    assert!(err.contains("[[warm_pools]]"), "{err}");
}

#[test]
fn storage_on_another_engine_is_refused_when_the_config_is_read() {
    let text = |runs_on: &str| {
        format!(
            "[[hosts]]\nname = \"far\"\nengine = \"tcp://10.0.0.2:2375\"\n\n\
             [[services]]\nname = \"shop\"\ndriver = \"docker\"\n{runs_on}\n\n\
             [services.storage]\ninitial_mib = 512\n"
        )
    };
    let far = Config::from_toml(&text("runs_on = \"far\""), "x.toml".into()).unwrap();
    let err = far.validate().unwrap_err().to_string();
    assert!(
        err.contains("service 'shop'")
            && err.contains("local Docker Engine")
            && err.contains("far"),
        "{err}"
    );
    for here in ["", "runs_on = \"local\""] {
        let config = Config::from_toml(&text(here), "x.toml".into()).unwrap();
        config.validate().unwrap_or_else(|e| panic!("{here}: {e}"));
    }
}

#[test]
fn the_worker_count_is_the_configured_one_or_the_cores_read_once() {
    let auto = Cli::parse_from(["torpor", "--backend", "x:1"])
        .into_config()
        .unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(auto.worker_count(), cores);
    // Shares divide by it: 7 connections over the cores, at least one each.
    let mut shared = auto.clone();
    shared.max_backend_connections = 7;
    assert_eq!(
        shared.backend_connections_per_worker(),
        7usize.div_ceil(cores)
    );
    // The core count read once does not hide a configured number.
    let three = Cli::parse_from(["torpor", "--backend", "x:1", "--workers", "3"])
        .into_config()
        .unwrap();
    assert_eq!(three.worker_count(), 3);
    assert_eq!(auto.worker_count(), cores);
}

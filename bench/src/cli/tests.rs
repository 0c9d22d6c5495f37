//! The command line's rules: shapes, defaults, names and order of targets.

use super::*;

fn settings(args: &[&str]) -> anyhow::Result<Settings> {
    let mut argv = vec!["torpor-bench", "run"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv)?;
    match cli.command {
        Command::Run(args) => Settings::from_args(*args),
        Command::ListWorkloads => bail!("parsed as list-workloads"),
        Command::FloorProxy(_) => bail!("parsed as floor-proxy"),
    }
}

#[test]
fn targets_keep_their_order_and_parse_host_and_port() {
    let s = settings(&[
        "--target",
        "direct=127.0.0.1:3306",
        "--target",
        "torpor=localhost:6033",
        "--target",
        "v6=[::1]:3307",
    ])
    .expect("valid arguments");
    let names: Vec<_> = s.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["direct", "torpor", "v6"]);
    assert_eq!(s.targets[1].host, "localhost");
    assert_eq!(s.targets[1].port, 6033);
    assert_eq!(s.targets[2].host, "::1");
}

#[test]
fn defaults_are_the_documented_ones() {
    let s = settings(&["--target", "direct=127.0.0.1:3306"]).expect("valid arguments");
    assert_eq!(s.credentials.database, "test");
    assert_eq!(s.rounds, 5);
    assert_eq!(s.connections, [1, 16, 64, 256]);
    assert_eq!(s.workloads, WorkloadKind::ALL);
    assert_eq!(s.outputs, Outputs::default());
}

#[test]
fn bad_target_shapes_are_refused() {
    for bad in [
        "direct",
        "direct=127.0.0.1",
        "=127.0.0.1:3306",
        "a b=h:1",
        "x=h:0",
        "x=h:70000",
        "x=:3306",
    ] {
        assert!(settings(&["--target", bad]).is_err(), "{bad} was accepted");
    }
}

#[test]
fn durations_rounds_and_lists_parse() {
    let s = settings(&[
        "--spawn-mariadb",
        "--duration",
        "250ms",
        "--warmup",
        "0s",
        "--rounds",
        "2",
        "--connections",
        "1,8",
        "--workload",
        "point-select,sysbench",
    ])
    .expect("valid arguments");
    assert_eq!(s.duration, Duration::from_millis(250));
    assert_eq!(s.warmup, Duration::ZERO);
    assert_eq!(s.rounds, 2);
    assert_eq!(s.connections, [1, 8]);
    assert_eq!(
        s.workloads,
        [
            WorkloadKind::PointSelect,
            WorkloadKind::SysbenchPointSelect { ps_disabled: false },
            WorkloadKind::SysbenchReadOnly { ps_disabled: false },
        ]
    );
    assert!(settings(&["--spawn-mariadb", "--rounds", "0"]).is_err());
    assert!(settings(&["--spawn-mariadb", "--duration", "fast"]).is_err());
    assert!(settings(&["--spawn-mariadb", "--workload", "nope"]).is_err());
    assert!(settings(&["--spawn-mariadb", "--connections", "0"]).is_err());
}

#[test]
fn ps_mode_both_adds_the_disabled_variants() {
    let s = settings(&[
        "--spawn-mariadb",
        "--workload",
        "sysbench-point-select",
        "--sysbench-ps-mode",
        "both",
    ])
    .expect("valid arguments");
    assert_eq!(
        s.workloads,
        [
            WorkloadKind::SysbenchPointSelect { ps_disabled: false },
            WorkloadKind::SysbenchPointSelect { ps_disabled: true },
        ]
    );
}

#[test]
fn pids_must_name_a_target() {
    let s = settings(&["--target", "a=h:1", "--pid", "a=42"]).expect("valid arguments");
    assert_eq!(
        s.pids,
        [PidArg {
            name: "a".into(),
            pid: 42
        }]
    );
    assert!(settings(&["--target", "a=h:1", "--pid", "b=42"]).is_err());
    assert!(settings(&["--target", "a=h:1", "--pid", "a=x"]).is_err());
    assert!(settings(&["--spawn-mariadb", "--pid", "direct=42"]).is_err());
}

#[test]
fn spawned_names_cannot_be_reused_and_proxies_need_a_database() {
    assert!(settings(&["--spawn-mariadb", "--target", "direct=h:1"]).is_err());
    assert!(settings(&["--spawn-haproxy"]).is_err());
    assert!(settings(&[]).is_err());
    let s = settings(&["--target", "db=h:1", "--spawn-haproxy", "--spawn-torpor"])
        .expect("valid arguments");
    assert!(s.spawn.haproxy);
    assert!(s.spawn.torpor && !s.spawn.torpor_serverless);
    assert!(matches!(
        s.spawn.torpor_source,
        Some(TorporSource::Build(_))
    ));
    assert!(settings(&["--spawn-mariadb", "--torpor-bin", "/bin/true"]).is_err());
}

#[test]
fn the_serverless_torpor_needs_no_database_and_shares_the_binary() {
    let s = settings(&["--spawn-torpor-serverless", "--torpor-bin", "/bin/true"])
        .expect("valid arguments");
    assert!(s.spawn.torpor_serverless && !s.spawn.torpor);
    assert_eq!(
        s.spawn.torpor_source,
        Some(TorporSource::Binary(PathBuf::from("/bin/true")))
    );
    assert_eq!(s.serverless, ServerlessSettings::default());
    let s = settings(&[
        "--spawn-torpor-serverless",
        "--wake-cycles",
        "3",
        "--random-suspend-cycles",
        "7",
        "--random-suspend-pause",
        "50ms",
        "--admin-token",
        "t0k",
        "--relocate-data-mib",
        "1024",
    ])
    .expect("valid arguments");
    assert_eq!(
        s.serverless,
        ServerlessSettings {
            wake_cycles: 3,
            random_cycles: 7,
            random_pause: Duration::from_millis(50),
            admin_token: Some("t0k".into()),
            relocate_data_mib: 1024,
        }
    );
    assert!(settings(&["--spawn-torpor-serverless", "--wake-cycles", "0"]).is_err());
    assert!(settings(&[
        "--spawn-torpor-serverless",
        "--target",
        "torpor-serverless=h:1"
    ])
    .is_err());
}

#[test]
fn admin_addresses_come_from_the_target_spec_or_admin_flags() {
    let s = settings(&[
        "--target",
        "direct=h:3306",
        "--target",
        "torpor=h:6033,admin=h:6034",
        "--target",
        "t2=h:7033",
        "--admin",
        "t2=[::1]:7034",
    ])
    .expect("valid arguments");
    let admins: Vec<_> = s.targets.iter().map(|t| t.admin.as_deref()).collect();
    assert_eq!(admins, [None, Some("h:6034"), Some("[::1]:7034")]);
    assert_eq!(s.targets[1].port, 6033);
    // The same address twice is fine; two different ones are not.
    assert!(settings(&["--target", "t=h:1,admin=h:2", "--admin", "t=h:2"]).is_ok());
    assert!(settings(&["--target", "t=h:1,admin=h:2", "--admin", "t=h:3"]).is_err());
    assert!(settings(&["--target", "t=h:1", "--admin", "u=h:2"]).is_err());
    assert!(settings(&["--spawn-mariadb", "--admin", "direct=h:2"]).is_err());
    for bad in ["t=h:1,admin=h", "t=h:1,admin=", "t=h:1,pid=3", "t=h:1,"] {
        assert!(settings(&["--target", bad]).is_err(), "{bad} was accepted");
    }
}

#[test]
fn pool_torpors_are_named_by_their_bound_and_need_a_database() {
    let s = settings(&["--spawn-mariadb", "--spawn-torpor-pool", "1,8"]).expect("valid arguments");
    assert_eq!(s.spawn.torpor_pools, [1, 8]);
    assert!(matches!(
        s.spawn.torpor_source,
        Some(TorporSource::Build(_))
    ));
    assert_eq!(pool_target_name(8), "torpor-pool8");
    assert_eq!(s.multiplex, MultiplexSettings::default());
    assert!(settings(&["--spawn-torpor-pool", "8"]).is_err());
    assert!(settings(&["--spawn-mariadb", "--spawn-torpor-pool", "0"]).is_err());
    assert!(settings(&["--spawn-mariadb", "--spawn-torpor-pool", "2,2"]).is_err());
    assert!(settings(&[
        "--spawn-mariadb",
        "--spawn-torpor-pool",
        "1",
        "--target",
        "torpor-pool1=h:1"
    ])
    .is_err());
    let s = settings(&[
        "--spawn-mariadb",
        "--multiplex-clients",
        "16",
        "--multiplex-think",
        "0s",
    ])
    .expect("valid arguments");
    assert_eq!(
        s.multiplex,
        MultiplexSettings {
            clients: 16,
            think: Duration::ZERO
        }
    );
    assert!(settings(&["--spawn-mariadb", "--multiplex-clients", "0"]).is_err());
}

#[test]
fn pool_size_torpors_are_named_by_their_size_and_need_a_database() {
    let s = settings(&["--spawn-mariadb", "--spawn-torpor-pool-size", "16,64"])
        .expect("valid arguments");
    assert_eq!(s.spawn.torpor_pool_sizes, [16, 64]);
    assert!(s.spawn.torpor_pools.is_empty() && !s.spawn.torpor);
    assert!(matches!(
        s.spawn.torpor_source,
        Some(TorporSource::Build(_))
    ));
    assert_eq!(s.names, ["direct", "torpor-size16", "torpor-size64"]);
    assert_eq!(pool_size_target_name(16), "torpor-size16");
    let error = settings(&["--spawn-torpor-pool-size", "16"]).expect_err("no database");
    assert!(
        error.to_string().contains("--spawn-torpor-pool-size"),
        "{error}"
    );
    assert!(settings(&["--spawn-mariadb", "--spawn-torpor-pool-size", "0"]).is_err());
    assert!(settings(&["--spawn-mariadb", "--spawn-torpor-pool-size", "2,2"]).is_err());
    assert!(settings(&[
        "--spawn-mariadb",
        "--spawn-torpor-pool-size",
        "16",
        "--target",
        "torpor-size16=h:1"
    ])
    .is_err());
    // In front of a given first target, as the other spawned proxies.
    let s = settings(&["--target", "db=h:1", "--spawn-torpor-pool-size", "8"])
        .expect("valid arguments");
    assert_eq!(s.names, ["db", "torpor-size8"]);
    // The same bound as a pool Torpor's is a different target.
    let s = settings(&[
        "--spawn-mariadb",
        "--spawn-torpor-pool",
        "8",
        "--spawn-torpor-pool-size",
        "8",
    ])
    .expect("valid arguments");
    assert_eq!(s.names, ["direct", "torpor-size8", "torpor-pool8"]);
}

#[test]
fn torpor_bin_is_taken_for_pool_size_torpors() {
    let s = settings(&[
        "--spawn-mariadb",
        "--spawn-torpor-pool-size",
        "16",
        "--torpor-bin",
        "/bin/true",
    ])
    .expect("valid arguments");
    assert_eq!(
        s.spawn.torpor_source,
        Some(TorporSource::Binary(PathBuf::from("/bin/true")))
    );
}

#[test]
fn socket_and_floor_targets_follow_the_tcp_proxies_in_order() {
    let s = settings(&[
        "--spawn-mariadb",
        "--spawn-haproxy",
        "--spawn-torpor",
        "--spawn-torpor-pool-size",
        "16,64",
        "--spawn-socket",
        "--spawn-floor",
        "--spawn-torpor-pool",
        "8",
    ])
    .expect("valid arguments");
    assert_eq!(
        s.names,
        [
            "direct",
            "haproxy",
            "torpor",
            // Right after the plain Torpor, which they differ from by
            // their pool size alone.
            "torpor-size16",
            "torpor-size64",
            "haproxy-socket",
            "torpor-socket",
            "floor",
            "torpor-pool8"
        ]
    );
    assert!(s.spawn.socket && s.spawn.floor);
    // One proxy gets one socket twin.
    let s = settings(&["--spawn-mariadb", "--spawn-torpor", "--spawn-socket"])
        .expect("valid arguments");
    assert_eq!(s.names, ["direct", "torpor", "torpor-socket"]);
    let s = settings(&["--spawn-mariadb", "--spawn-haproxy", "--spawn-socket"])
        .expect("valid arguments");
    assert_eq!(s.names, ["direct", "haproxy", "haproxy-socket"]);
    assert!(s.spawn.torpor_source.is_none(), "no torpor to build");
}

#[test]
fn without_the_new_flags_names_and_order_are_unchanged() {
    let s = settings(&[
        "--spawn-mariadb",
        "--target",
        "other=h:1",
        "--spawn-haproxy",
        "--spawn-torpor",
        "--spawn-torpor-serverless",
    ])
    .expect("valid arguments");
    assert_eq!(
        s.names,
        ["direct", "other", "haproxy", "torpor", "torpor-serverless"]
    );
    assert!(!s.spawn.socket && !s.spawn.floor);
}

#[test]
fn socket_twins_need_the_spawned_mariadb_and_a_proxy() {
    let error = settings(&["--target", "db=h:1", "--spawn-haproxy", "--spawn-socket"])
        .expect_err("a given target has no socket we know of");
    assert!(
        error
            .to_string()
            .contains("--spawn-socket needs --spawn-mariadb"),
        "{error}"
    );
    let error = settings(&["--spawn-mariadb", "--spawn-socket"])
        .expect_err("no proxy to put in front of the socket");
    assert!(error.to_string().contains("--spawn-haproxy"), "{error}");
    assert!(settings(&[
        "--spawn-mariadb",
        "--spawn-haproxy",
        "--spawn-socket",
        "--target",
        "haproxy-socket=h:1"
    ])
    .is_err());
}

#[test]
fn the_floor_needs_a_database_behind_it() {
    let error = settings(&["--spawn-floor", "--spawn-torpor-serverless"])
        .expect_err("nothing for the floor to forward to");
    assert!(error.to_string().contains("--spawn-floor"), "{error}");
    let s = settings(&["--target", "db=h:1", "--spawn-floor"]).expect("valid arguments");
    assert_eq!(s.names, ["db", "floor"]);
    assert!(settings(&["--spawn-mariadb", "--spawn-floor", "--target", "floor=h:1"]).is_err());
}

#[test]
fn out_fills_in_every_report_file_unless_given() {
    let s = settings(&[
        "--spawn-mariadb",
        "--out",
        "res",
        "--json",
        "elsewhere.json",
    ])
    .expect("valid arguments");
    assert_eq!(s.outputs.json, Some(PathBuf::from("elsewhere.json")));
    assert_eq!(s.outputs.markdown, Some(PathBuf::from("res/report.md")));
    assert_eq!(s.outputs.svg_dir, Some(PathBuf::from("res")));
}

#[test]
fn spawn_tls_adds_tls_twins_of_the_spawned_mariadb_and_torpor() {
    let s = settings(&["--spawn-mariadb", "--spawn-torpor", "--spawn-tls"]).unwrap();
    assert_eq!(s.names, ["direct", "torpor", "direct-tls", "torpor-tls"]);
    assert!(s.spawn.tls);
    let refused = settings(&["--spawn-mariadb", "--spawn-tls"]).unwrap_err();
    assert!(refused.to_string().contains("--spawn-torpor"), "{refused}");
}

#[test]
fn the_autoscaled_torpor_is_a_target_of_its_own_with_documented_defaults() {
    let s = settings(&["--spawn-torpor-autoscale", "--torpor-bin", "/bin/true"])
        .expect("valid arguments");
    assert!(s.spawn.torpor_autoscale && !s.spawn.torpor_serverless);
    assert_eq!(s.names, ["torpor-autoscale"]);
    assert_eq!(s.autoscale, AutoscaleSettings::default());
    assert_eq!(
        s.autoscale.phases.iter().sum::<Duration>(),
        Duration::from_secs(70)
    );
    let s = settings(&[
        "--spawn-torpor-autoscale",
        "--autoscale-phases",
        "1s,2s,3s,4s",
        "--autoscale-max-cpus",
        "2",
        "--autoscale-max-memory-mib",
        "2048",
    ])
    .expect("valid arguments");
    assert_eq!(s.autoscale.phases, [1, 2, 3, 4].map(Duration::from_secs));
    assert_eq!(
        (s.autoscale.max_cpus, s.autoscale.max_memory_mib),
        (2.0, 2048)
    );
}

#[test]
fn autoscale_phases_and_bounds_are_checked() {
    let base = ["--spawn-torpor-autoscale"];
    let with = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        settings(&args)
    };
    let error = with(&["--autoscale-phases", "1s,2s,3s"]).expect_err("three phases");
    assert!(format!("{error}").contains("four lengths"), "{error}");
    assert!(
        with(&["--autoscale-phases", "1s,0s,0s,1s"]).is_err(),
        "no load"
    );
    assert!(with(&["--autoscale-min-cpus", "2", "--autoscale-max-cpus", "1"]).is_err());
    assert!(with(&["--autoscale-min-cpus", "0"]).is_err());
    assert!(with(&["--autoscale-min-memory-mib", "4096"]).is_err());
}

//! Real command-line programs: the `mariadb` client through Torpor prints
//! exactly what it prints against MariaDB directly (queries with `-e` in
//! each output mode, errors, a `source`d script with DELIMITER, a stored
//! procedure and LOAD DATA LOCAL INFILE), a wrong password is refused with
//! `ERROR 1045 (28000)`, and the real `torpor` binary's `--help` documents
//! every option.
//!
//! Each test uses its own tables and schemas: tests run in parallel
//! against one MariaDB.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};

use mysql::prelude::Queryable;
use torpor_tests::{
    backend, connect, require_program, torpor_binary, Torpor, APP_PASSWORD, APP_USER,
};

/// What one run of the client showed.
#[derive(Debug, PartialEq)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the `mariadb` client against `addr` over TCP with `args` after
/// the connection options; never reads an option file, so that the
/// machine's configuration cannot change the output.
fn mariadb(addr: SocketAddr, user: &str, password: &str, args: &[&str]) -> Run {
    let server = [
        "--protocol=TCP".to_string(),
        format!("--host={}", addr.ip()),
        format!("--port={}", addr.port()),
    ];
    run_client(&server, user, password, args)
}

/// The client on the server `server` names, as `user`, with `args`.
fn run_client(server: &[String], user: &str, password: &str, args: &[&str]) -> Run {
    let program = require_program("mariadb", "mariadb-client");
    let output: Output = Command::new(program)
        .arg("--no-defaults")
        .args(server)
        .arg(format!("--user={user}"))
        .arg(format!("--password={password}"))
        // Announced in the handshake (Torpor must pass it on to the
        // backend); without it the client picks one from the locale.
        .arg("--default-character-set=utf8mb4")
        .args(args)
        .output()
        .expect("the mariadb client runs");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The same client run through Torpor and directly, as the app user.
fn both(torpor: &Torpor, args: &[&str]) -> (Run, Run) {
    let proxied = mariadb(torpor.addr(), APP_USER, APP_PASSWORD, args);
    let direct = mariadb(backend().addr(), APP_USER, APP_PASSWORD, args);
    (proxied, direct)
}

#[test]
fn queries_with_e_print_what_mariadb_prints() {
    let torpor = Torpor::start();
    // The data goes in through Torpor, with the client itself.
    let create = mariadb(
        torpor.addr(),
        APP_USER,
        APP_PASSWORD,
        &[
            "test",
            "-e",
            "DROP TABLE IF EXISTS cli_e_items;
             CREATE TABLE cli_e_items (
                 id INT PRIMARY KEY,
                 name VARCHAR(30) CHARACTER SET utf8mb4,
                 price DECIMAL(8,2),
                 seen DATETIME(6) NULL,
                 raw VARBINARY(8)
             );
             INSERT INTO cli_e_items VALUES
                 (1, 'plain', 1.50, '2024-01-02 03:04:05.678901', x'00ff'),
                 (2, 'ünïcødé 😀', NULL, NULL, NULL),
                 (3, 'tab\there', -0.01, '1999-12-31 23:59:59', 'x'),
                 (4, 'new\nline', 99999.99, '2000-02-29 00:00:00', '');",
        ],
    );
    assert_eq!(create.code, Some(0), "{create:?}");

    let queries = [
        "SELECT * FROM cli_e_items ORDER BY id",
        "SELECT COUNT(*) AS n, SUM(price), MAX(name), GROUP_CONCAT(id ORDER BY id) FROM cli_e_items",
        "SELECT * FROM cli_e_items WHERE id < 0",
        "SHOW CREATE TABLE cli_e_items",
        "SELECT @@version, @@version_comment, DATABASE(), USER(), CURRENT_USER(), @@autocommit",
        // Several statements in one -e: the client sends them one by one.
        "SELECT 1 AS one; SELECT 'two' AS two, NULL AS nothing; DO 3; SELECT 4.5e10 AS four",
        // Warnings, and SHOW WARNINGS reading them.
        "SET SESSION sql_mode = ''; SELECT CAST('12abc' AS SIGNED) AS n; SHOW WARNINGS",
    ];
    let modes: [&[&str]; 7] = [
        &[],
        &["--table"],
        &["--vertical"],
        &["--skip-column-names", "--batch", "--raw"],
        // Prints every column's metadata: type, length, flags, decimals.
        &["--column-type-info"],
        // The client asks SHOW WARNINGS itself after each statement.
        &["--show-warnings"],
        // The compressed protocol (Torpor compresses the client leg).
        &["--compress", "--table"],
    ];
    for query in queries {
        for mode in modes {
            let mut args: Vec<&str> = mode.to_vec();
            args.extend(["test", "-e", query]);
            let (proxied, direct) = both(&torpor, &args);
            assert_eq!(proxied, direct, "{mode:?} -e {query:?}");
            assert_eq!(proxied.code, Some(0), "{mode:?} -e {query:?}: {proxied:?}");
        }
    }
    // The comparisons compared output, not two empty strings.
    let (proxied, _) = both(&torpor, &["test", "-e", queries[0]]);
    assert!(proxied.stdout.contains("ünïcødé 😀"), "{}", proxied.stdout);
    assert_eq!(
        proxied.stdout.lines().count(),
        5,
        "header and four rows: {}",
        proxied.stdout
    );

    // Errors: the same text and exit code; --force goes on after them.
    let failing: [&[&str]; 3] = [
        &["test", "-e", "SELECT * FROM cli_e_missing"],
        &["test", "-e", "SELECT 1; SELEKT 2; SELECT 3"],
        &[
            "--force",
            "test",
            "-e",
            "SELECT 1 AS a; SELECT * FROM cli_e_missing; SELECT 3 AS c",
        ],
    ];
    for args in failing {
        let (proxied, direct) = both(&torpor, args);
        assert_eq!(proxied, direct, "{args:?}");
        assert_eq!(proxied.code, Some(1), "{args:?}: {proxied:?}");
    }
    let (proxied, _) = both(&torpor, failing[0]);
    // (The client echoes the failed statement before the error.)
    assert!(
        proxied
            .stderr
            .trim_end()
            .ends_with("\nERROR 1146 (42S02) at line 1: Table 'test.cli_e_missing' doesn't exist"),
        "{proxied:?}"
    );
}

/// The `value` of each `Name:<tabs>value` line of the client's `status`.
/// A statement that changes several tracked variables at once (`SET
/// NAMES`, which libmariadb-based drivers send at connect) gets one
/// session-tracking entry per variable, as from MariaDB: the client read
/// Torpor's packed entries as a malformed packet (2027).
#[test]
fn set_names_changing_several_tracked_variables_is_not_a_malformed_packet() {
    let torpor = Torpor::start();
    for script in [
        "SET NAMES utf8; SELECT @@character_set_client, @@character_set_connection, @@character_set_results",
        "SET NAMES latin1 COLLATE latin1_bin; SELECT @@collation_connection, 'after' AS next",
        "SET @@session.sql_mode = 'ANSI', @@session.autocommit = 0, @@session.time_zone = '+02:00'; SELECT @@sql_mode, @@autocommit, @@time_zone",
    ] {
        let (proxied, direct) = both(&torpor, &["--table", "test", "-e", script]);
        assert_eq!(proxied, direct, "-e {script:?}");
        assert_eq!(proxied.code, Some(0), "{script:?}: {proxied:?}");
        assert!(proxied.stdout.contains('|'), "{proxied:?}");
    }
}

fn status_fields(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect()
}

#[test]
fn status_reports_the_session_as_mariadb_does() {
    let torpor = Torpor::start();
    let args = ["test", "-e", "status; SELECT CONNECTION_ID() AS id"];
    let (proxied, direct) = both(&torpor, &args);
    assert_eq!(proxied.code, Some(0), "{proxied:?}");
    let got = status_fields(&proxied.stdout);
    let want = status_fields(&direct.stdout);
    // The id the client got in the greeting is the one SQL reports.
    let greeting_id = got.get("Connection id").expect("a connection id");
    let sql_id = proxied.stdout.lines().last().unwrap_or_default();
    assert_eq!(greeting_id, sql_id, "{}", proxied.stdout);
    // What the greeting and the session say about the server is MariaDB's.
    for field in [
        "Current database",
        "Current user",
        "Server",
        "Server version",
        "Protocol version",
        "Server characterset",
        "Db     characterset",
        "Client characterset",
        "Conn.  characterset",
    ] {
        assert!(got.contains_key(field), "no {field}: {}", proxied.stdout);
        assert_eq!(got.get(field), want.get(field), "{field}");
    }
    assert_eq!(got["Current database"], "test");
}

/// A script with what the client itself interprets (DELIMITER, comments,
/// LOAD DATA LOCAL INFILE reading a real file) and what the server does.
fn source_script(rows_file: &Path) -> String {
    format!(
        r#"-- A script for the mariadb client, run with `source`.
DROP TABLE IF EXISTS cli_src_orders;
DROP PROCEDURE IF EXISTS cli_src_report;
CREATE TABLE cli_src_orders (
    id INT AUTO_INCREMENT PRIMARY KEY,
    customer VARCHAR(20) NOT NULL,
    amount DECIMAL(10,2) NOT NULL,
    placed DATE NOT NULL
);
INSERT INTO cli_src_orders (customer, amount, placed) VALUES
    ('ada', 10.50, '2024-01-01'),
    ('bob', 99.99, '2024-01-02'),
    ('ada', 0.01, '2024-02-03');
INSERT INTO cli_src_orders (customer, amount, placed) VALUES ('cy', 5, '2024-03-04');
/* a block comment; then rows from a local file */
LOAD DATA LOCAL INFILE '{file}' INTO TABLE cli_src_orders
    FIELDS TERMINATED BY ',' (customer, amount, placed);

DELIMITER //
CREATE PROCEDURE cli_src_report(IN who VARCHAR(20))
BEGIN
    DECLARE total DECIMAL(10,2);
    SELECT SUM(amount) INTO total FROM cli_src_orders WHERE customer = who;
    SELECT who AS customer, total;
    SELECT id, amount, placed FROM cli_src_orders WHERE customer = who ORDER BY id;
END //
DELIMITER ;

CALL cli_src_report('ada');
START TRANSACTION;
UPDATE cli_src_orders SET amount = amount * 2 WHERE customer = 'bob';
SELECT ROW_COUNT() AS updated;
COMMIT;
SET @limit := 2;
PREPARE cli_src_top FROM 'SELECT customer, amount FROM cli_src_orders ORDER BY amount DESC, id LIMIT ?';
EXECUTE cli_src_top USING @limit;
DEALLOCATE PREPARE cli_src_top;
SELECT customer, COUNT(*) AS orders, SUM(amount) AS total
    FROM cli_src_orders GROUP BY customer ORDER BY customer;
SELECT * FROM cli_src_orders ORDER BY id;
"#,
        file = rows_file.display()
    )
}

#[test]
fn source_of_a_script_prints_what_mariadb_prints() {
    let torpor = Torpor::start();
    let dir = tempfile::tempdir().unwrap();
    let rows_file = dir.path().join("cli-src-rows.csv");
    std::fs::write(
        &rows_file,
        "dee,1.25,2024-04-05\neve,1000.00,2024-05-06\nada,2.00,2024-06-07\n",
    )
    .unwrap();
    let script = dir.path().join("cli-src.sql");
    std::fs::write(&script, source_script(&rows_file)).unwrap();

    // The same script in two schemas, one through Torpor, one directly.
    let mut setup = connect(backend().addr());
    for schema in ["cli_src_proxied", "cli_src_direct"] {
        setup
            .query_drop(format!("DROP DATABASE IF EXISTS {schema}"))
            .unwrap();
        setup
            .query_drop(format!("CREATE DATABASE {schema}"))
            .unwrap();
    }
    let source = format!("source {}", script.display());
    for mode in [&[][..], &["--table"][..]] {
        let mut proxied_args = vec!["--local-infile=1"];
        proxied_args.extend_from_slice(mode);
        let mut direct_args = proxied_args.clone();
        proxied_args.extend(["cli_src_proxied", "-e", &source]);
        direct_args.extend(["cli_src_direct", "-e", &source]);
        let proxied = mariadb(torpor.addr(), APP_USER, APP_PASSWORD, &proxied_args);
        let direct = mariadb(backend().addr(), APP_USER, APP_PASSWORD, &direct_args);
        assert_eq!(proxied, direct, "source {mode:?}");
        assert_eq!(proxied.code, Some(0), "{proxied:?}");
        assert_eq!(proxied.stderr, "");
    }

    // What the script printed through Torpor, spelled out in part.
    let proxied = mariadb(
        torpor.addr(),
        APP_USER,
        APP_PASSWORD,
        &["--local-infile=1", "cli_src_proxied", "-e", &source],
    );
    let out = &proxied.stdout;
    assert!(
        out.contains("customer\ttotal\nada\t12.51\n"),
        "procedure's first set: {out}"
    );
    assert!(out.contains("updated\n1\n"), "ROW_COUNT(): {out}");
    assert!(
        out.contains("customer\tamount\neve\t1000.00\nbob\t199.98\n"),
        "EXECUTE USING: {out}"
    );
    assert!(
        out.contains("ada\t3\t12.51\n"),
        "the local file's rows were loaded: {out}"
    );
    // And the server holds the same data in both schemas.
    let mut read = |schema: &str| -> Vec<(i64, String, String, String)> {
        setup
            .query(format!(
                "SELECT id, customer, CAST(amount AS CHAR), CAST(placed AS CHAR) FROM {schema}.cli_src_orders ORDER BY id"
            ))
            .unwrap()
    };
    let stored = read("cli_src_proxied");
    assert_eq!(stored.len(), 7);
    let want = read("cli_src_direct");
    assert_eq!(stored, want);
    for schema in ["cli_src_proxied", "cli_src_direct"] {
        setup.query_drop(format!("DROP DATABASE {schema}")).unwrap();
    }
}

#[test]
fn a_wrong_password_gives_error_1045() {
    let torpor = Torpor::start();
    let cases = [
        (APP_USER, "not-the-password"),
        ("cli_no_such_user", "whatever"),
        (APP_USER, ""),
    ];
    for (user, password) in cases {
        let args = ["test", "-e", "SELECT 1"];
        let proxied = mariadb(torpor.addr(), user, password, &args);
        let direct = mariadb(backend().addr(), user, password, &args);
        assert_eq!(proxied.code, Some(1), "{user}/{password:?}: {proxied:?}");
        assert!(
            proxied
                .stderr
                .starts_with("ERROR 1045 (28000): Access denied for user"),
            "{user}/{password:?}: {proxied:?}"
        );
        assert_eq!(proxied.stdout, "");
        assert_eq!(proxied, direct, "{user}/{password:?}");
    }
    // The right password still works afterwards.
    let ok = mariadb(
        torpor.addr(),
        APP_USER,
        APP_PASSWORD,
        &["-N", "-e", "SELECT 6 * 7"],
    );
    assert_eq!((ok.code, ok.stdout.as_str()), (Some(0), "42\n"), "{ok:?}");
}

/// `--help` output as option → its description (the text that follows
/// the option's line up to the next option).
fn help_sections(help: &str) -> BTreeMap<String, String> {
    let mut sections = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        let is_option =
            line.starts_with("  ") && (trimmed.starts_with("--") || trimmed.starts_with('-'));
        let long = trimmed
            .split([',', ' '])
            .find(|word| word.starts_with("--"))
            .map(str::to_string);
        if let (true, Some(long)) = (is_option && line.len() - trimmed.len() <= 6, long) {
            // The description may share the option's line (short help).
            let rest = trimmed
                .split_once("  ")
                .map(|(_, rest)| rest.trim().to_string());
            sections.insert(long.clone(), rest.unwrap_or_default());
            current = Some(long);
        } else if let Some(option) = &current {
            let text = sections.get_mut(option).expect("current option");
            if !trimmed.is_empty() {
                text.push(' ');
                text.push_str(trimmed);
            }
        }
    }
    sections
}

#[test]
fn torpor_help_documents_every_option() {
    let binary = torpor_binary();
    let options = [
        "--config",
        "--listen",
        "--backend",
        "--user",
        "--workers",
        "--max-connections",
        "--shutdown-grace-secs",
        "--io-driver",
        "--log-format",
        "--log-level",
    ];
    for flag in ["--help", "-h"] {
        let output = Command::new(&binary)
            .arg(flag)
            .output()
            .expect("torpor runs");
        assert!(output.status.success(), "torpor {flag}: {output:?}");
        let help = String::from_utf8(output.stdout).expect("UTF-8 help");
        let sections = help_sections(&help);
        for option in options {
            let text = sections
                .get(option)
                .unwrap_or_else(|| panic!("torpor {flag} does not mention {option}:\n{help}"));
            assert!(
                text.trim().len() >= 10,
                "torpor {flag}: {option} has no description:\n{help}"
            );
        }
        // Every option it lists is explained, not just the ones above.
        for (option, text) in &sections {
            assert!(
                !text.trim().is_empty(),
                "torpor {flag}: {option} has no description:\n{help}"
            );
        }
        // Each option that has a default shows it, as the configuration
        // has it.
        for (option, default) in [
            ("--listen", "127.0.0.1:6033"),
            ("--workers", "0 (one per core)"),
            ("--max-connections", "10000"),
            ("--shutdown-grace-secs", "10"),
            ("--login-timeout-secs", "10"),
            ("--admin-listen", "127.0.0.1:6034"),
            ("--suspend-after-secs", "10"),
            ("--park-after-secs", "14400"),
            ("--idle-in-transaction-timeout-secs", "0 (never)"),
            ("--io-driver", "auto"),
            ("--log-format", "text"),
            ("--log-level", "info"),
            ("--tls", "on"),
        ] {
            assert!(
                sections[option].contains(&format!("[default: {default}]")),
                "torpor {flag}: {option} does not show its default {default}:\n{help}"
            );
        }
        if flag == "--help" {
            // The values of the enumerated options are spelled out.
            for (option, values) in [
                ("--io-driver", &["auto", "io_uring", "epoll"][..]),
                ("--log-format", &["text", "json"][..]),
            ] {
                for value in values {
                    assert!(
                        sections[option].contains(&format!("{value}:")),
                        "torpor --help: {option} does not document {value}:\n{help}"
                    );
                }
            }
        }
    }
}

/// Runs the `mariadb` client over the Unix socket at `socket`.
fn mariadb_on_socket(socket: &Path, password: &str, args: &[&str]) -> Run {
    let server = [
        "--protocol=SOCKET".to_string(),
        format!("--socket={}", socket.display()),
    ];
    run_client(&server, APP_USER, password, args)
}

/// Torpor's Unix socket (`listen_socket`) serves the client as MariaDB's
/// own socket does: the same output for queries, the same refusal of a
/// wrong password (host `localhost`), and the file is gone once Torpor
/// stops.
#[test]
fn the_client_on_torpors_unix_socket_sees_what_it_sees_on_mariadbs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("torpor.sock");
    let torpor = Torpor::start_with(backend().addr(), |config| {
        config.listen_socket = Some(socket.clone());
    });
    let direct_socket = backend().socket().to_path_buf();
    let query = [
        "-e",
        "SELECT 1 + 1 AS two, @@version AS v, CURRENT_USER() AS who; \
         SELECT 'x' AS a, NULL AS b UNION ALL SELECT 'y', 2",
    ];
    let proxied = mariadb_on_socket(&socket, APP_PASSWORD, &query);
    let direct = mariadb_on_socket(&direct_socket, APP_PASSWORD, &query);
    assert_eq!(proxied.code, Some(0), "{proxied:?}");
    assert_eq!(proxied, direct);

    let refused = mariadb_on_socket(&socket, "wrong", &["-e", "SELECT 1"]);
    let refused_direct = mariadb_on_socket(&direct_socket, "wrong", &["-e", "SELECT 1"]);
    assert_eq!(refused.code, Some(1));
    assert!(
        refused.stderr.contains("ERROR 1045 (28000)"),
        "{}",
        refused.stderr
    );
    assert_eq!(refused.stderr, refused_direct.stderr);

    // The same socket serves a client library (and its sessions).
    let opts = mysql::OptsBuilder::new()
        .socket(Some(socket.to_string_lossy().into_owned()))
        .prefer_socket(false)
        .user(Some(APP_USER))
        .pass(Some(APP_PASSWORD));
    let mut conn = mysql::Conn::new(opts).expect("login over the socket");
    conn.query_drop("SET @kept = 41").expect("set");
    let kept: Option<i64> = conn.query_first("SELECT @kept + 1").expect("select");
    assert_eq!(kept, Some(42));
    drop(conn);

    torpor.stop();
    assert!(!socket.exists(), "the socket file is removed at shutdown");
}

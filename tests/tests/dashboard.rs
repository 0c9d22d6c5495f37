//! The compose stack's Grafana dashboard (`docker/grafana/`) against the
//! Torpor it is meant for: every panel's PromQL names only metrics a real
//! Torpor exports (scraped after client traffic, a suspend and a wake, so
//! the lifecycle series exist too), and every expression evaluates, with
//! data, in a real Prometheus (Debian's `prometheus`) that scrapes that
//! Torpor with `docker/prometheus/prometheus.yml`. Also: the provisioning
//! files agree with the dashboard and `docker/compose.yml`, the compose
//! file is valid (`docker-compose config`), and its MariaDB and Torpor
//! come up from the local images and serve a client (a Docker test, under
//! the rules of [`torpor_tests::docker`]).
//!
//! Grafana itself is not run (Debian has no package of it, and this
//! machine no registry): its side is checked statically.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use serde_json::Value;
use torpor::config::DriverKind;
use torpor::scaler::process::free_port;
use torpor_tests::require_program;
use torpor_tests::serverless::{name, Managed};

/// The admin token the test's Torpor requires, as the compose stack's does.
const TOKEN: &str = "dashboard-test-token";

/// The datasource uid every panel must name (provisioning/datasources).
const DATASOURCE_UID: &str = "torpor-prometheus";

/// What Grafana's variables become when the test hands an expression to
/// Prometheus: every service, and a rate window that holds many of the
/// test's one-second scrapes.
const GRAFANA_VARIABLES: [(&str, &str); 4] = [
    ("$__rate_interval", "30s"),
    ("$__interval", "5s"),
    ("$__range", "5m"),
    ("$service", ".*"),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dashboard() -> Value {
    serde_json::from_str(&read("docker/grafana/dashboards/torpor.json")).expect("dashboard JSON")
}

/// One PromQL expression of the dashboard and where it is.
#[derive(Debug, Clone)]
struct Query {
    panel: String,
    expr: String,
}

/// Every panel's target expressions, rows' nested panels included.
/// Panics on a panel (other than a row) with no query, or an empty one.
fn panel_queries(dashboard: &Value) -> Vec<Query> {
    fn walk(panels: &[Value], out: &mut Vec<Query>) {
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or("(untitled)").to_string();
            if let Some(nested) = panel["panels"].as_array() {
                walk(nested, out);
            }
            if panel["type"] == "row" {
                continue;
            }
            let targets = panel["targets"].as_array().map_or(&[][..], Vec::as_slice);
            assert!(!targets.is_empty(), "panel {title:?} has no query");
            for target in targets {
                let expr = target["expr"].as_str().unwrap_or_default().trim();
                assert!(
                    !expr.is_empty(),
                    "panel {title:?} has a target without expr"
                );
                out.push(Query {
                    panel: title.clone(),
                    expr: expr.to_string(),
                });
            }
        }
    }
    let mut out = Vec::new();
    walk(
        dashboard["panels"]
            .as_array()
            .expect("dashboard has panels"),
        &mut out,
    );
    out
}

/// The selectors of the dashboard's template variables: the first
/// argument of `label_values(selector, label)`.
fn variable_selectors(dashboard: &Value) -> Vec<Query> {
    let variables = dashboard["templating"]["list"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    variables
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let query = v["query"]["query"]
                .as_str()
                .or_else(|| v["query"].as_str())
                .expect("a query variable has a query");
            let args = query
                .strip_prefix("label_values(")
                .and_then(|rest| rest.strip_suffix(')'))
                .unwrap_or_else(|| panic!("variable query {query:?} is not label_values(..)"));
            let (selector, _label) = args
                .rsplit_once(',')
                .expect("label_values(selector, label)");
            Query {
                panel: format!("variable {}", v["name"]),
                expr: selector.trim().to_string(),
            }
        })
        .collect()
}

/// Aggregation operators: followed by `by (...)` as often as by `(`.
const AGGREGATIONS: [&str; 14] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Modifiers whose parenthesised list holds label names, not metrics.
const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Words of the language that are not metric names.
const KEYWORDS: [&str; 8] = [
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
];

/// The metric names a PromQL expression selects, as written (so a
/// histogram appears as `..._bucket`, `..._sum` or `..._count`, which is
/// also how the text exposition and Prometheus name its series).
/// Skipped: function and aggregation names, label names in `{...}` and in
/// `by`/`without`/`on`/`ignoring`/`group_*` lists, strings, numbers and
/// durations, range brackets and Grafana's `$variables`.
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let next_non_space = |from: usize| chars[from..].iter().position(|c| !c.is_whitespace());
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '{' || c == '[' {
            let close = if c == '{' { '}' } else { ']' };
            i += 1;
            while i < chars.len() && chars[i] != close {
                i = if matches!(chars[i], '"' | '\'' | '`') {
                    skip_string(&chars, i)
                } else {
                    i + 1
                };
            }
            i += 1;
        } else if c == '$' || c.is_ascii_digit() || c == '.' {
            // A variable, a number (0.99, 1e3) or a duration (5m).
            i += 1;
            while i < chars.len() && (is_part(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if is_start(c) {
            let start = i;
            while i < chars.len() && is_part(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let before_paren = next_non_space(i).is_some_and(|n| chars[i + n] == '(');
            let lower = word.to_ascii_lowercase();
            if GROUPING.contains(&lower.as_str()) {
                if before_paren {
                    // Skip the label list up to its ')'.
                    while i < chars.len() && chars[i] != ')' {
                        i += 1;
                    }
                    i += 1;
                }
            } else if !(before_paren
                || AGGREGATIONS.contains(&lower.as_str())
                || KEYWORDS.contains(&lower.as_str()))
            {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The index just past the string literal that starts at `start`.
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        // Backquoted strings have no escapes.
        i += if chars[i] == '\\' && quote != '`' {
            2
        } else {
            1
        };
    }
    i + 1
}

/// The series names in a text exposition (`name{labels} value` lines).
fn exposition_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// The value of the series written exactly `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// What is wrong with `queries` given the series Torpor `exported`: one
/// line per unknown metric, and per expression that names no metric.
fn unknown_metrics(queries: &[Query], exported: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    for query in queries {
        let names = metric_names(&query.expr);
        if names.is_empty() {
            problems.push(format!("{}: {:?} names no metric", query.panel, query.expr));
        }
        for name in names {
            if !exported.contains(&name) {
                problems.push(format!(
                    "{}: {name} is not exported by Torpor (in {:?})",
                    query.panel, query.expr
                ));
            }
        }
    }
    problems
}

/// A dashboard expression as Prometheus takes it: Grafana's variables
/// replaced.
fn as_promql(expr: &str) -> String {
    let promql = GRAFANA_VARIABLES
        .iter()
        .fold(expr.to_string(), |e, (var, value)| e.replace(var, value));
    assert!(
        !promql.contains('$'),
        "{expr:?} uses a Grafana variable the test does not know"
    );
    promql
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// `GET /metrics` on Torpor's admin API with the token.
fn scrape(admin: SocketAddr) -> String {
    let mut response = agent()
        .get(&format!("http://{admin}/metrics"))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .call()
        .unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    assert_eq!(response.status().as_u16(), 200);
    response.body_mut().read_to_string().expect("body")
}

/// A Prometheus server on a free loopback port, with its own data
/// folder, killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Runs `docker/prometheus/prometheus.yml` with its target replaced by
    /// `torpor_admin`, its token file by one holding [`TOKEN`] and its
    /// scrape interval by one second (so rates have samples soon); the
    /// result must pass `promtool check config` first.
    fn start(torpor_admin: SocketAddr) -> Prometheus {
        let prometheus = require_program("prometheus", "prometheus");
        let promtool = require_program("promtool", "prometheus");
        let dir = tempfile::Builder::new()
            .prefix("torpor-prometheus-")
            .tempdir()
            .expect("temp dir");
        let token_file = dir.path().join("torpor-admin-token");
        fs::write(&token_file, TOKEN).expect("token file");
        let mut config = read("docker/prometheus/prometheus.yml");
        for (from, to) in [
            ("\"torpor:6034\"", format!("\"{torpor_admin}\"")),
            (
                "/prometheus/torpor-admin-token",
                token_file.display().to_string(),
            ),
            ("scrape_interval: 5s", "scrape_interval: 1s".to_string()),
        ] {
            assert_eq!(
                config.matches(from).count(),
                1,
                "prometheus.yml should hold {from} once"
            );
            config = config.replace(from, &to);
        }
        let config_file = dir.path().join("prometheus.yml");
        fs::write(&config_file, config).expect("config file");

        let check = Command::new(&promtool)
            .args(["check", "config"])
            .arg(&config_file)
            .output()
            .expect("promtool runs");
        assert!(
            check.status.success(),
            "promtool check config: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );

        let port = free_port().expect("free port");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(&prometheus)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let mut server = Prometheus { child, addr, dir };
        server.wait_ready();
        server
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", self.log());
            }
            let ready = agent()
                .get(&format!("http://{}/-/ready", self.addr))
                .call()
                .is_ok_and(|r| r.status().as_u16() == 200);
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready after 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET path` on the HTTP API: the JSON answer, which must say
    /// `"status": "success"`.
    fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let mut request = agent().get(&format!("http://{}{path}", self.addr));
        for (key, value) in query {
            request = request.query(key, value);
        }
        let mut response = request
            .call()
            .unwrap_or_else(|e| panic!("prometheus {path}: {e}"));
        let body = response.body_mut().read_to_string().expect("body");
        let json: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(json["status"], "success", "{path} {query:?}: {body}");
        json
    }

    /// An instant query's result vector.
    fn query(&self, promql: &str) -> Vec<Value> {
        let json = self.api("/api/v1/query", &[("query", promql)]);
        json["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates a process service through the admin API (from the warm pool
/// when it is ready by then, else cold: either is a provision time);
/// returns its name.
fn create_service(admin: SocketAddr, beside: &str) -> String {
    let made = format!("{beside}-made");
    let body = serde_json::json!({
        "name": made,
        "driver": "process",
        "buffer_pool_mib": 16,
        // PASSWORD('secret')
        "accounts": [{"name": "made", "password_hash": "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"}],
    });
    let mut response = agent()
        .post(&format!("http://{admin}/services"))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .unwrap_or_else(|e| panic!("POST /services: {e}"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("body");
    assert_eq!(status, 201, "POST /services: {text}");
    made
}

/// Drives a managed (process driver) service through what every panel
/// shows: queries, a prepared statement, a pinned transaction, a suspend
/// and the wake the next query causes. Returns the open connection (a
/// client session for the gauges).
fn traffic(managed: &Managed, service: &str) -> mysql::Conn {
    let admin = managed.admin_addr().expect("admin API runs");
    let mut conn = managed.connect();
    for i in 0..10 {
        let n: Option<i32> = conn.query_first(format!("SELECT {i}")).expect("query");
        assert_eq!(n, Some(i));
    }
    let statement = conn.prep("SELECT ? + 1").expect("prepare");
    let n: Option<i64> = conn.exec_first(&statement, (1,)).expect("execute");
    assert_eq!(n, Some(2));
    // A scrape while the transaction is open makes the pin gauge exist.
    conn.query_drop("BEGIN").expect("begin");
    let pinned = scrape(admin);
    assert!(pinned.contains("torpor_session_pins{"), "{pinned}");
    conn.query_drop("COMMIT").expect("commit");

    // A resize, so the resize counter exists (the usage gauges exist once
    // the service is sampled).
    let mut response = agent()
        .post(&format!(
            "http://{admin}/services/{service}/resize?cpus=1.5&memory_mib=1024"
        ))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .send_empty()
        .unwrap_or_else(|e| panic!("resize: {e}"));
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().expect("body");
    assert_eq!(status, 200, "resize: {body}");

    // A relocation, so the relocation series exist (moved to a new
    // process with a copy of the data).
    let mut response = agent()
        .post(&format!("http://{admin}/services/{service}/relocate"))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .send_empty()
        .unwrap_or_else(|e| panic!("relocate: {e}"));
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().expect("body");
    assert_eq!(status, 202, "relocate: {body}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut response = agent()
            .get(&format!("http://{admin}/services/{service}"))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .call()
            .unwrap_or_else(|e| panic!("service: {e}"));
        let body = response.body_mut().read_to_string().expect("body");
        let view: Value = serde_json::from_str(&body).expect("JSON");
        match view["relocation"]["phase"].as_str() {
            Some("moved") => break,
            Some("failed") => panic!("the relocation failed: {view}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "not moved: {view}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Suspend (refused while something still runs: then ask again), and
    // wake with the next query.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut response = agent()
            .post(&format!("http://{admin}/services/{service}/suspend"))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .send_empty()
            .unwrap_or_else(|e| panic!("suspend: {e}"));
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().expect("body");
        if status == 200 {
            break;
        }
        assert!(
            status == 409 && Instant::now() < deadline,
            "suspend: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let n: Option<i32> = conn.query_first("SELECT 42").expect("query after suspend");
    assert_eq!(n, Some(42));
    conn
}

#[test]
fn every_panel_names_exported_metrics_and_evaluates_in_prometheus() {
    let dashboard = dashboard();
    let mut queries = panel_queries(&dashboard);
    let variables = variable_selectors(&dashboard);
    queries.extend(variables.iter().cloned());

    let service = name("dashboard", "panels");
    let managed = Managed::start(DriverKind::Process, &service, |_, config| {
        config.admin.token = Some(TOKEN.to_string());
        // The provisioning panels: a pool's gauge, and a created service.
        config.warm_pools = vec![torpor::config::warm_pool::WarmPoolConfig::process(1)];
    });
    let admin = managed.admin_addr().expect("admin API runs");
    let _conn = traffic(&managed, &service);
    let made = create_service(admin, &service);

    // The wake is recorded at the next scrape, and workers publish once a
    // second: scrape until the query after the wake is counted too, and
    // the woken service was sampled twice (its CPU rate).
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = scrape(admin);
        let queries = sample(
            &text,
            &format!("torpor_queries_total{{service=\"{service}\"}}"),
        );
        // 10 selects, an execute, BEGIN, COMMIT and the select that woke.
        if text.contains("torpor_wake_duration_seconds_count{")
            && text.contains("torpor_provision_duration_seconds_count{")
            && text.contains("torpor_service_cpus_used{")
            && queries >= Some(14.0)
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never got there:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let exported = exposition_names(&text);
    let problems = unknown_metrics(&queries, &exported);
    assert!(
        problems.is_empty(),
        "the dashboard names metrics Torpor does not export:\n{}\n\nexported: {exported:?}",
        problems.join("\n")
    );

    // Now the same expressions in a real Prometheus scraping this Torpor
    // with the compose stack's scrape configuration. Each must parse and
    // evaluate; each must have data once a few scrapes came in (rates
    // need two), since the traffic above made every series exist.
    let prometheus = Prometheus::start(admin);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut pending: Vec<&Query> = queries
        .iter()
        .filter(|q| !q.panel.starts_with("variable "))
        .collect();
    loop {
        pending.retain(|q| prometheus.query(&as_promql(&q.expr)).is_empty());
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let targets = prometheus.api("/api/v1/targets", &[]);
            panic!(
                "no data in Prometheus for:\n{}\n\ntargets: {targets}\n\nlog:\n{}",
                pending
                    .iter()
                    .map(|q| format!("{}: {}", q.panel, q.expr))
                    .collect::<Vec<_>>()
                    .join("\n"),
                prometheus.log()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // The scrape went through the token (a 401 would leave no series, but
    // say so plainly).
    let up = prometheus.query("up{job=\"torpor\"} == 1");
    assert_eq!(up.len(), 1, "torpor target not up: {up:?}");
    // The service variable lists the services (in Prometheus' order).
    let mut services = [made, service];
    services.sort();
    for variable in &variables {
        let values = prometheus.api(
            "/api/v1/label/service/values",
            &[("match[]", variable.expr.as_str())],
        );
        assert_eq!(
            values["data"],
            serde_json::json!(services),
            "{}",
            variable.panel
        );
    }
}

#[test]
fn metric_names_are_read_out_of_promql() {
    let names = |expr: &str| metric_names(expr);
    assert_eq!(
        names(
            "histogram_quantile(0.99, sum by (service, le) \
             (rate(torpor_query_duration_seconds_bucket{service=~\"$service\"}[$__rate_interval])))"
        ),
        ["torpor_query_duration_seconds_bucket"]
    );
    assert_eq!(
        names("sum(rate(a_total[5m])) by (le) / on(job) group_left(x) b_count offset 1h"),
        ["a_total", "b_count"]
    );
    assert_eq!(
        names("max by (service, state) (torpor_service_state{state=\"a{b}\", service!='c'}) == 1"),
        ["torpor_service_state"]
    );
    assert_eq!(
        names("x > bool 2e3 and y_total unless z"),
        ["x", "y_total", "z"]
    );
    assert_eq!(names("vector(1)"), Vec::<String>::new());

    let exported = exposition_names(
        "# TYPE torpor_queries_total counter\n\
         torpor_queries_total{service=\"a\"} 3\n\
         torpor_query_duration_seconds_bucket{service=\"a\",le=\"+Inf\"} 3\n\
         torpor_query_duration_seconds_count{service=\"a\"} 3\n",
    );
    let query = |expr: &str| Query {
        panel: "p".into(),
        expr: expr.into(),
    };
    let good = [
        query("rate(torpor_queries_total[1m])"),
        query(
            "histogram_quantile(0.5, sum by (le) (rate(torpor_query_duration_seconds_bucket[1m])))",
        ),
    ];
    assert_eq!(unknown_metrics(&good, &exported), Vec::<String>::new());
    // A misspelt metric, a histogram named without its series suffix and
    // a query of no metric are each caught.
    for bad in [
        "rate(torpor_querys_total[1m])",
        "histogram_quantile(0.5, rate(torpor_query_duration_seconds[1m]))",
        "vector(1)",
    ] {
        let problems = unknown_metrics(&[query(bad)], &exported);
        assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
    }
}

/// `key: value` values of a YAML file, by key (enough for these flat
/// provisioning files; no YAML parser needed).
fn yaml_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.trim().trim_start_matches("- "))
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .map(|value| value.trim().trim_matches('"').to_string())
        .collect()
}

#[test]
fn the_dashboard_and_its_provisioning_agree() {
    let dashboard = dashboard();
    let datasource = read("docker/grafana/provisioning/datasources/prometheus.yml");
    assert_eq!(yaml_values(&datasource, "uid"), [DATASOURCE_UID]);
    assert_eq!(yaml_values(&datasource, "url"), ["http://prometheus:9090"]);

    // Every datasource reference in the dashboard is that uid.
    fn datasource_uids(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(ds) = map.get("datasource") {
                    out.push(ds["uid"].as_str().unwrap_or("(none)").to_string());
                }
                map.values().for_each(|v| datasource_uids(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| datasource_uids(v, out)),
            _ => {}
        }
    }
    let mut uids = Vec::new();
    datasource_uids(&dashboard, &mut uids);
    assert!(!uids.is_empty());
    assert!(
        uids.iter().all(|uid| uid == DATASOURCE_UID),
        "datasource uids: {uids:?}"
    );

    // Panels: unique ids, a place on the grid, a query each (checked by
    // panel_queries).
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = HashSet::new();
    for panel in panels {
        assert!(ids.insert(panel["id"].as_u64().expect("id")), "{panel}");
        assert!(panel["gridPos"]["w"].as_u64().is_some(), "{panel}");
    }
    assert!(panel_queries(&dashboard).len() >= 15);
    assert_eq!(dashboard["uid"], "torpor");

    // The provider loads the folder compose.yml mounts the JSON into, and
    // Grafana's home dashboard is this file there.
    let provider = read("docker/grafana/provisioning/dashboards/torpor.yml");
    let path = yaml_values(&provider, "path");
    assert_eq!(path.len(), 1, "{provider}");
    let compose = read("docker/compose.yml");
    assert!(
        compose.contains(&format!("./grafana/dashboards:{}:ro", path[0])),
        "compose.yml mounts docker/grafana/dashboards at {}",
        path[0]
    );
    assert!(compose.contains(&format!(
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH: {}/torpor.json",
        path[0]
    )));
    assert!(compose.contains("./grafana/provisioning:/etc/grafana/provisioning:ro"));
    assert!(compose.contains("./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro"));
}

#[test]
fn the_compose_file_is_valid() {
    let compose = require_program("docker-compose", "docker-compose");
    let file = repo().join("docker/compose.yml");
    // Resolved as `docker compose up` would, defaults of every variable
    // included; no engine needed.
    let output = Command::new(&compose)
        .arg("-f")
        .arg(&file)
        .arg("config")
        .env_remove("TORPOR_MARIADB_IMAGE")
        .env_remove("TORPOR_IMAGE")
        .output()
        .expect("docker-compose runs");
    let resolved = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut images = yaml_values(&resolved, "image");
    images.sort();
    assert_eq!(
        images,
        [
            "grafana/grafana:11.2.2",
            "mariadb:10.11",
            "prom/prometheus:v2.54.1",
            "torpor/torpor:dev"
        ],
        "pinned images"
    );
    // Bind mounts resolve to absolute paths; each must exist in the clone.
    for line in resolved.lines().map(str::trim) {
        let Some(mount) = line.strip_prefix("- /") else {
            continue;
        };
        if !(mount.ends_with(":ro") || mount.ends_with(":rw")) {
            continue;
        }
        let source = format!("/{}", mount.split(':').next().unwrap_or_default());
        assert!(
            Path::new(&source).exists(),
            "bind mount {source} is missing"
        );
    }
    assert!(resolved.contains("dockerfile: docker/torpor/Dockerfile"));
}

/// A compose project of `docker/compose.yml` under a unique name; `down
/// -v` on drop (containers, network, volumes), with the logs of its
/// containers printed first when the test is failing.
struct ComposeProject {
    program: PathBuf,
    name: String,
    env: Vec<(&'static str, String)>,
}

impl ComposeProject {
    fn command(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.program)
            .arg("-p")
            .arg(&self.name)
            .arg("-f")
            .arg(repo().join("docker/compose.yml"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("docker-compose runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.command(args);
        assert!(
            out.status.success(),
            "docker-compose {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = self.command(&["logs", "--no-color"]);
            eprintln!("{}", String::from_utf8_lossy(&logs.stdout));
            if let Some(out) = torpor_tests::docker::docker(&["logs", &self.one_off()]) {
                eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            }
        }
        let _ = torpor_tests::docker::docker(&["rm", "--force", &self.one_off()]);
        let out = self.command(&["down", "--volumes", "--remove-orphans"]);
        if !out.status.success() {
            eprintln!(
                "cannot remove compose project {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

impl ComposeProject {
    /// The name of the `run` container of Torpor.
    fn one_off(&self) -> String {
        format!("{}-torpor", self.name)
    }
}

/// The MariaDB and Torpor of the compose file, from the local images
/// (docker/mariadb/build.sh, docker/torpor/build.sh): MariaDB becomes
/// healthy by the file's check, Torpor logs in the account the file gives
/// both, and its admin API answers with the file's token (and without it,
/// not). Torpor is started with `run`, which publishes its ports on
/// ephemeral loopback ports instead of the file's fixed ones, so the test
/// never collides with anything on this machine. Prometheus and Grafana
/// would need a registry.
#[test]
fn the_compose_files_mariadb_and_torpor_serve_a_client() {
    use torpor_tests::docker::{docker_ok, images_ready, mariadb_image, torpor_image, unique_name};
    if images_ready(&[mariadb_image(), torpor_image()]).is_none() {
        return;
    }
    let token = "compose-test-token";
    let password = "compose-test-secret";
    let project = ComposeProject {
        program: require_program("docker-compose", "docker-compose"),
        name: unique_name("compose"),
        env: vec![
            ("TORPOR_MARIADB_IMAGE", mariadb_image()),
            ("TORPOR_IMAGE", torpor_image()),
            ("TORPOR_APP_PASSWORD", password.to_string()),
            ("TORPOR_ADMIN_TOKEN", token.to_string()),
        ],
    };
    project.ok(&["up", "--detach", "--no-build", "mariadb"]);
    let mariadb = project.ok(&["ps", "-q", "mariadb"]);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let health = docker_ok(&["inspect", "--format", "{{.State.Health.Status}}", &mariadb]);
        if health == "healthy" {
            break;
        }
        assert!(
            health != "unhealthy" && Instant::now() < deadline,
            "mariadb is {health}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let torpor = project.one_off();
    project.ok(&[
        "run",
        "--detach",
        "--no-deps",
        "--name",
        &torpor,
        "--publish",
        "127.0.0.1::6033",
        "--publish",
        "127.0.0.1::6034",
        "torpor",
    ]);
    let published = |port: u16| -> SocketAddr {
        let out = docker_ok(&["port", &torpor, &format!("{port}/tcp")]);
        out.lines()
            .find_map(|line| line.trim().parse().ok())
            .unwrap_or_else(|| panic!("no published address for {port} in {out:?}"))
    };
    let (client, admin) = (published(6033), published(6034));

    // Docker's port proxy accepts before Torpor listens: retry the login
    // until Torpor answers it.
    let opts: mysql::Opts = torpor_tests::tcp_opts(client)
        .user(Some("app"))
        .pass(Some(password))
        .db_name(Some("app"))
        .into();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut conn = loop {
        match mysql::Conn::new(opts.clone()) {
            Ok(conn) => break conn,
            Err(e) => assert!(Instant::now() < deadline, "no login through torpor: {e}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let row: Option<(i64, String)> = conn.query_first("SELECT 1 + 1, DATABASE()").expect("query");
    assert_eq!(row, Some((2, "app".to_string())));

    let metrics = |authorization: Option<&str>| {
        let mut request = agent().get(&format!("http://{admin}/metrics"));
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        let mut response = request.call().unwrap_or_else(|e| panic!("/metrics: {e}"));
        let body = response.body_mut().read_to_string().expect("body");
        (response.status().as_u16(), body)
    };
    let (status, body) = metrics(Some(&format!("Bearer {token}")));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("torpor_queries_total{service=\"default\"}"),
        "{body}"
    );
    let (status, _) = metrics(None);
    assert_eq!(status, 401, "the admin API off loopback wants the token");
}

//! `/metrics` on the admin listener: scraped over HTTP after real client
//! traffic, parsed as Prometheus would parse it, and checked against what
//! the clients did — queries, their latency histogram, connections,
//! bytes, pool checkouts, service state, and a wake from suspended with
//! the `process` driver.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use prometheus_parse::{LineInfo, Scrape, Value};
use torpor::config::DriverKind;
use torpor_tests::serverless::{name, Managed};
use torpor_tests::{backend, connect, Torpor};

/// One scrape: the parsed samples and the raw text.
struct Metrics {
    scrape: Scrape,
    text: String,
}

impl Metrics {
    /// The value of `metric` with exactly these `labels` among its labels
    /// (others ignored); `None` when no such sample exists.
    fn value(&self, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.scrape
            .samples
            .iter()
            .filter(|s| s.metric == metric)
            .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                Value::Histogram(buckets) => {
                    buckets.iter().map(|b| b.count).fold(f64::NAN, f64::max)
                }
                Value::Summary(_) => f64::NAN,
            })
    }

    fn value_or_zero(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(metric, labels).unwrap_or(0.0)
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// `GET /metrics`: checks the status and content type, that every line
/// is one the text format knows, and parses it.
fn scrape(admin: SocketAddr) -> Metrics {
    let mut response = agent()
        .get(&format!("http://{admin}/metrics"))
        .call()
        .unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(content_type, "text/plain; version=0.0.4");
    let text = response.body_mut().read_to_string().expect("body");
    for line in text.lines() {
        assert!(
            !matches!(LineInfo::parse(line), LineInfo::Ignored),
            "not in the Prometheus text format: {line:?}"
        );
    }
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    Metrics { scrape, text }
}

/// Scrapes until `done` holds (workers publish once a second); panics
/// with the last scrape after `timeout`.
fn scrape_until(admin: SocketAddr, timeout: Duration, done: impl Fn(&Metrics) -> bool) -> Metrics {
    let deadline = Instant::now() + timeout;
    loop {
        let metrics = scrape(admin);
        if done(&metrics) {
            return metrics;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never got there:\n{}",
            metrics.text
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn metrics_are_scraped_and_parse_after_client_traffic() {
    let torpor = Torpor::start_with(backend().addr(), |config| {
        config.admin.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    });
    let admin = torpor.admin_addr().expect("admin API runs");
    let service = [("service", "default")];

    let mut conn = connect(torpor.addr());
    let queries: i32 = 20;
    for i in 0..queries - 2 {
        let n: Option<i32> = conn.query_first(format!("SELECT {i}")).expect("query");
        assert_eq!(n, Some(i));
    }
    let statement = conn.prep("SELECT ? + 1").expect("prepare");
    for i in 0..2i64 {
        let n: Option<i64> = conn.exec_first(&statement, (i,)).expect("execute");
        assert_eq!(n, Some(i + 1));
    }

    // The histogram and the counter are published together; a scrape
    // between the two sees them differ for an instant.
    let metrics = scrape_until(admin, Duration::from_secs(10), |m| {
        let count = m.value_or_zero("torpor_queries_total", &service);
        count >= f64::from(queries)
            && m.value("torpor_query_duration_seconds_count", &service) == Some(count)
    });
    assert!(
        metrics.scrape.docs.contains_key("torpor_queries_total"),
        "HELP lines are there"
    );
    let buckets = metrics
        .scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "torpor_query_duration_seconds"
                && s.labels.get("service") == Some("default")
        })
        .map(|s| s.value.clone());
    let Some(Value::Histogram(buckets)) = buckets else {
        panic!("no query histogram:\n{}", metrics.text);
    };
    let bounds: Vec<f64> = buckets.iter().map(|b| b.less_than).collect();
    assert_eq!(bounds.first(), Some(&0.00005), "from 50 µs");
    assert!(bounds.contains(&10.0), "to 10 s");
    let inf = buckets
        .iter()
        .find(|b| b.less_than.is_infinite())
        .map(|b| b.count);
    assert_eq!(
        inf,
        metrics.value("torpor_queries_total", &service),
        "every query is in the +Inf bucket"
    );
    let sum = metrics.value_or_zero("torpor_query_duration_seconds_sum", &service);
    assert!(sum > 0.0 && sum < 60.0, "latency sum {sum}");

    assert_eq!(
        metrics.value("torpor_client_connections", &service),
        Some(1.0)
    );
    assert!(metrics.value_or_zero("torpor_client_connections_opened_total", &[]) >= 1.0);
    assert!(metrics.value_or_zero("torpor_client_bytes_received_total", &service) > 0.0);
    assert!(metrics.value_or_zero("torpor_client_bytes_sent_total", &service) > 0.0);
    assert!(metrics.value_or_zero("torpor_backend_connections_opened_total", &service) >= 1.0);
    let checkouts: f64 = ["hit", "opened", "waited"]
        .iter()
        .map(|r| {
            metrics.value_or_zero(
                "torpor_pool_checkouts_total",
                &[("service", "default"), ("result", r)],
            )
        })
        .sum();
    assert!(
        checkouts >= f64::from(queries),
        "one checkout per autocommit statement"
    );
    assert_eq!(
        metrics.value(
            "torpor_service_state",
            &[("service", "default"), ("state", "active")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metrics.value(
            "torpor_service_state",
            &[("service", "default"), ("state", "suspended")]
        ),
        Some(0.0)
    );

    // A transaction pins the session: the gauge shows it while it is open.
    conn.query_drop("BEGIN").expect("begin");
    let pinned = scrape(admin);
    assert_eq!(
        pinned.value(
            "torpor_session_pins",
            &[("service", "default"), ("reason", "transaction")]
        ),
        Some(1.0),
        "{}",
        pinned.text
    );
    conn.query_drop("COMMIT").expect("commit");
    let unpinned = scrape(admin);
    assert_eq!(
        unpinned.value(
            "torpor_session_pins",
            &[("service", "default"), ("reason", "transaction")]
        ),
        Some(0.0)
    );

    // COM_QUIT closes the connection for the reason "client_quit".
    drop(conn);
    let closed = scrape_until(admin, Duration::from_secs(10), |m| {
        m.value_or_zero(
            "torpor_client_connections_closed_total",
            &[("reason", "client_quit")],
        ) >= 1.0
    });
    assert_eq!(
        closed.value("torpor_client_connections", &service),
        Some(0.0)
    );
}

#[test]
fn a_wake_from_suspended_is_timed_and_transitions_are_counted() {
    let service_name = name("metrics", "wake");
    let managed = Managed::start(DriverKind::Process, &service_name, |_, _| {});
    let admin = managed.admin_addr().expect("admin API runs");
    let service = service_name.as_str();

    let mut conn = managed.connect();
    let one: Option<i64> = conn.query_first("SELECT 1").expect("query");
    assert_eq!(one, Some(1));
    let (status, body) = managed.act(service, "suspend");
    assert_eq!(status, 200, "{body}");
    let suspended = scrape(admin);
    assert_eq!(
        suspended.value(
            "torpor_service_state",
            &[("service", service), ("state", "suspended")]
        ),
        Some(1.0)
    );
    // The next query wakes the service.
    let two: Option<i64> = conn.query_first("SELECT 2").expect("query after suspend");
    assert_eq!(two, Some(2));

    let metrics = scrape_until(admin, Duration::from_secs(10), |m| {
        m.value_or_zero("torpor_queries_total", &[("service", service)]) >= 2.0
    });
    let woke = metrics.value_or_zero(
        "torpor_wake_duration_seconds_count",
        &[("service", service), ("from", "suspended")],
    );
    assert!(woke >= 1.0, "no wake from suspended:\n{}", metrics.text);
    // Torpor started the backend itself: a wake from parked.
    assert!(
        metrics.value_or_zero(
            "torpor_wake_duration_seconds_count",
            &[("service", service), ("from", "parked")],
        ) >= 1.0
    );
    let entered = |to: &str| {
        metrics.value_or_zero(
            "torpor_service_transitions_total",
            &[("service", service), ("to", to)],
        )
    };
    assert!(entered("suspended") >= 1.0);
    assert!(entered("active") >= 2.0, "started, then woken");
    let decided = |decision: &str| {
        metrics.value_or_zero(
            "torpor_scaler_decisions_total",
            &[("service", service), ("decision", decision)],
        )
    };
    assert!(decided("suspend") >= 1.0);
    assert!(decided("wake") >= 2.0);
    assert_eq!(decided("wake_failed"), 0.0);
    assert_eq!(
        metrics.value(
            "torpor_service_state",
            &[("service", service), ("state", "active")]
        ),
        Some(1.0)
    );
}

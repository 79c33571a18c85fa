//! Monitoring against real sockets: pings reach a loopback listener in order, a dead or
//! refusing monitoring service never fails the caller, logs never carry the ping URL's
//! secret part, and the textfile on disk is valid exposition text.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ciosync::monitoring::{ping, ping_client, render_textfile, write_textfile, PING_TIMEOUT};
use ciosync::summary::Summary;

use crate::common::recording_server;

/// The secret part of a healthchecks.io ping URL.
const UUID: &str = "5b3c1b7e-9d1f-4a8e-b3f2-0c4d2e6a7f10";

/// Runs `body` on a current-thread runtime with a subscriber capturing every log line
/// (debug and up) as text, and returns the body's result and the logs.
fn with_captured_logs<T>(body: impl std::future::Future<Output = T>) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = tracing::subscriber::with_default(subscriber, || runtime.block_on(body));
    let logs = String::from_utf8(buffer.0.lock().expect("log buffer").clone()).expect("utf-8");
    (result, logs)
}

#[test]
fn start_then_exit_code_pings_arrive_in_order() {
    let (addr, paths) = recording_server(200, 2);
    let url = format!("http://{addr}/{UUID}");
    let ((started, ended), logs) = with_captured_logs(async {
        let client = ping_client();
        let started = ping(&client, &url, "start").await;
        let ended = ping(&client, &url, "0").await;
        (started, ended)
    });
    assert!(started && ended, "both pings answered 200");
    let first = paths
        .recv_timeout(Duration::from_secs(5))
        .expect("start ping");
    let second = paths
        .recv_timeout(Duration::from_secs(5))
        .expect("end ping");
    assert_eq!(first, format!("GET /{UUID}/start"));
    assert_eq!(second, format!("GET /{UUID}/0"));
    assert!(!logs.contains(UUID), "ping URL secret in logs:\n{logs}");
}

#[test]
fn a_trailing_slash_on_the_url_does_not_double_up() {
    let (addr, paths) = recording_server(200, 1);
    let url = format!("http://{addr}/{UUID}/");
    let (delivered, _) = with_captured_logs(async { ping(&ping_client(), &url, "75").await });
    assert!(delivered);
    let path = paths.recv_timeout(Duration::from_secs(5)).expect("ping");
    assert_eq!(path, format!("GET /{UUID}/75"));
}

#[test]
fn a_dead_monitoring_service_returns_quickly_and_logs_only_the_host() {
    // Bind then drop: nothing listens on this port any more, so connecting is refused.
    let dead = TcpListener::bind("127.0.0.1:0")
        .expect("bind loopback")
        .local_addr()
        .expect("local addr");
    let url = format!("http://{dead}/{UUID}");
    let started = Instant::now();
    let (delivered, logs) = with_captured_logs(async { ping(&ping_client(), &url, "start").await });
    assert!(!delivered, "nobody listens, nothing was delivered");
    assert!(
        started.elapsed() < PING_TIMEOUT,
        "a refused connection must not wait for the timeout ({:?})",
        started.elapsed()
    );
    assert!(logs.contains("Monitoring ping failed."), "logs:\n{logs}");
    assert!(logs.contains("127.0.0.1"), "the host is logged:\n{logs}");
    assert!(!logs.contains(UUID), "ping URL secret in logs:\n{logs}");
}

#[test]
fn a_refused_ping_is_a_warning_without_the_secret() {
    let (addr, paths) = recording_server(404, 1);
    let url = format!("http://{addr}/{UUID}");
    let (delivered, logs) = with_captured_logs(async { ping(&ping_client(), &url, "1").await });
    assert!(!delivered);
    assert_eq!(
        paths.recv_timeout(Duration::from_secs(5)).expect("ping"),
        format!("GET /{UUID}/1")
    );
    assert!(
        logs.contains("WARN") && logs.contains("status=404"),
        "logs:\n{logs}"
    );
    assert!(!logs.contains(UUID), "ping URL secret in logs:\n{logs}");
}

#[test]
fn a_hanging_monitoring_service_costs_at_most_the_ping_timeout() {
    // Accepts the connection (the kernel does, via the backlog) and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let url = format!("http://{}/{UUID}", listener.local_addr().expect("addr"));
    let started = Instant::now();
    let (delivered, logs) = with_captured_logs(async { ping(&ping_client(), &url, "start").await });
    let elapsed = started.elapsed();
    assert!(!delivered);
    assert!(elapsed >= PING_TIMEOUT, "gave up early: {elapsed:?}");
    assert!(
        elapsed < PING_TIMEOUT + Duration::from_secs(3),
        "took {elapsed:?}"
    );
    assert!(!logs.contains(UUID), "ping URL secret in logs:\n{logs}");
    drop(listener);
}

#[test]
fn the_textfile_on_disk_is_valid_exposition_text() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ciosync.prom");
    let mut summary = Summary {
        outcome: ciosync::summary::RunOutcome::Ok,
        exit_code: 0,
        people_seen: 3,
        gis_requests: 2,
        started_at: Some(chrono::DateTime::from_timestamp(1_764_331_200, 0).expect("valid")),
        ended_at: Some(
            chrono::DateTime::from_timestamp(1_764_331_212, 500_000_000).expect("valid"),
        ),
        ..Summary::default()
    };
    summary.skipped.insert("no \"email\"".into(), 2);
    write_textfile(&path, &summary).expect("writes");
    let text = std::fs::read_to_string(&path).expect("reads");
    assert_eq!(text, render_textfile(&summary, None));

    let mut typed = std::collections::BTreeSet::new();
    let mut values = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("name and type");
            assert_eq!(kind, "gauge");
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        let name = series.split('{').next().expect("a name");
        assert!(typed.contains(name), "no TYPE line before {line}");
        let value: f64 = value.parse().expect("numeric value");
        values.insert(series.to_owned(), value);
    }
    assert_eq!(values["ciosync_last_run_duration_seconds"], 12.5);
    assert_eq!(values["ciosync_last_run_people_seen"], 3.0);
    assert_eq!(values["ciosync_last_run_success"], 1.0);
    assert_eq!(
        values[r#"ciosync_last_run_records_skipped{reason="no \"email\""}"#],
        2.0
    );
    assert_eq!(values[r#"ciosync_last_run_requests{service="gis"}"#], 2.0);
}

#[test]
fn the_alert_rules_use_only_metrics_the_textfile_has() {
    let rules = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/prometheus/ciosync-alerts.yml"),
    )
    .expect("read the alert rules");
    let summary = Summary {
        started_at: Some(chrono::DateTime::from_timestamp(1_764_331_200, 0).expect("valid")),
        ended_at: Some(chrono::DateTime::from_timestamp(1_764_331_260, 0).expect("valid")),
        ..Summary::default()
    };
    let text = render_textfile(&summary, None);
    let exprs: Vec<&str> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("expr:"))
        .collect();
    assert!(exprs.len() >= 3, "rules found: {exprs:?}");
    let mut checked = 0;
    for expr in exprs {
        for (start, _) in expr.match_indices("ciosync_") {
            let name: String = expr[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                text.contains(&format!("# TYPE {name} gauge")),
                "the rule uses {name}, which the textfile does not have"
            );
            checked += 1;
        }
    }
    assert!(checked >= 3);
}

/// Whole runs of the built binary against the fakes: what the final ping says, and the
/// last success surviving failed runs in the textfile.
#[cfg(feature = "fake")]
mod runs {
    use std::time::Duration;

    use ciosync::fake::faults::{Fault, FaultPlan, Trigger};

    use super::UUID;
    use crate::common::*;

    fn last_success(textfile: &std::path::Path) -> Option<String> {
        std::fs::read_to_string(textfile)
            .expect("textfile written")
            .lines()
            .find_map(|line| line.strip_prefix("ciosync_last_success_timestamp_seconds "))
            .map(str::to_owned)
    }

    #[test]
    fn final_pings_carry_the_summary_and_a_time_budget_stop_pings_success() {
        let (addr, pings) = recording_server_with_bodies(200, 6);
        let env = Env::new(120);
        let textfile = env.dir.path().join("ciosync.prom");
        let monitoring = format!(
            "\n[monitoring]\ntextfile = \"{}\"\nping_url = \"http://{addr}/{UUID}\"",
            textfile.display()
        );
        let next_ping = || {
            pings
                .recv_timeout(Duration::from_secs(30))
                .expect("a ping arrives")
        };

        // 1. The run stops at its time budget: 75, pinged as a success, the body says why.
        env.write_config(&format!("{monitoring}\n[safety]\ntime_budget = \"2s\""));
        env.cio.faults().set_plan(FaultPlan::seeded(3).rule(
            "*",
            Trigger::Always,
            Fault::Latency(Duration::from_millis(150)),
        ));
        let out = env.run("run", &[]);
        assert_eq!(code(&out), 75, "stderr: {}", stderr(&out));
        assert_eq!(next_ping().0, format!("GET /{UUID}/start"));
        let (line, body) = next_ping();
        assert_eq!(line, format!("POST /{UUID}/0"), "exit 75 must not page");
        assert!(
            body.starts_with("exit 75: the run stopped at its time budget"),
            "{body}"
        );
        assert!(body.contains("outcome: time_budget (exit 75)"), "{body}");
        assert_eq!(last_success(&textfile), None, "no run has exited 0 yet");

        // 2. The next run completes: exit 0, the summary in the body, a last success.
        env.cio.faults().clear();
        env.write_config(&monitoring);
        let out = env.run("run", &[]);
        assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
        assert_eq!(next_ping().0, format!("GET /{UUID}/start"));
        let (line, body) = next_ping();
        assert_eq!(line, format!("POST /{UUID}/0"));
        assert!(body.contains("outcome: ok (exit 0)"), "{body}");
        let succeeded = last_success(&textfile).expect("a success is recorded");

        // 3. A refused key: the ping's code pages, its body names the error; the textfile
        //    keeps the last success.
        let wrong_key = env.static_config(&monitoring).replace(
            &format!("api_key = \"{}\"", env.cio.api_key()),
            "api_key = \"wrong-key\"",
        );
        env.write_config_text(&wrong_key);
        let out = env.run("run", &[]);
        assert_eq!(code(&out), 77, "stderr: {}", stderr(&out));
        assert_eq!(next_ping().0, format!("GET /{UUID}/start"));
        let (line, body) = next_ping();
        assert_eq!(line, format!("POST /{UUID}/77"));
        assert!(
            body.contains("error:") && body.contains("customer.io"),
            "{body}"
        );
        assert!(!body.contains("wrong-key"), "the key is never sent: {body}");
        assert_eq!(last_success(&textfile), Some(succeeded));
        let metrics = std::fs::read_to_string(&textfile).expect("textfile");
        assert!(
            metrics.contains("ciosync_last_run_exit_code 77"),
            "{metrics}"
        );
    }
}

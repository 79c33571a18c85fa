//! The fault injection layer on a minimal router: each fault's effect on the wire, the
//! triggers' request numbers, and seeded replay.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;
use ciosync::fake::faults::{Fault, FaultPlan, Faults, FiredFault, Trigger};
use ciosync::fake::server::Server;

use crate::common::http_client;

/// A server whose `POST /write` and `POST /other` count the requests they applied.
struct Counter {
    applied: Arc<AtomicU64>,
    faults: Faults,
    server: Server,
}

impl Counter {
    fn start() -> Counter {
        let applied = Arc::new(AtomicU64::new(0));
        let on_write = Arc::clone(&applied);
        let router = Router::new()
            .route(
                "/write",
                post(move || {
                    let applied = Arc::clone(&on_write);
                    async move {
                        applied.fetch_add(1, Ordering::SeqCst);
                        "{}"
                    }
                }),
            )
            .route("/other", post(|| async { "{}" }));
        let faults = Faults::default();
        let server = Server::start(faults.wrap(router)).expect("start test server");
        Counter {
            applied,
            faults,
            server,
        }
    }

    fn applied(&self) -> u64 {
        self.applied.load(Ordering::SeqCst)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }
}

/// The statuses of `n` sequential POSTs to `path` (0 for a transport error).
async fn statuses(client: &reqwest::Client, url: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let status = match client.post(url).send().await {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        };
        out.push(status);
    }
    out
}

#[tokio::test]
async fn nth_range_and_every_fire_on_exactly_those_requests() {
    let fake = Counter::start();
    let http = http_client(Duration::from_secs(5));
    let cases = [
        (Trigger::Nth(vec![2, 4]), vec![200, 500, 200, 500, 200, 200]),
        (
            Trigger::Range { from: 3, to: 5 },
            vec![200, 200, 500, 500, 500, 200],
        ),
        (Trigger::Every(3), vec![200, 200, 500, 200, 200, 500]),
        (Trigger::Always, vec![500; 6]),
    ];
    for (trigger, expected) in cases {
        fake.faults.set_plan(FaultPlan::seeded(1).rule(
            "POST /write",
            trigger.clone(),
            Fault::ErrorBefore(500),
        ));
        let got = statuses(&http, &fake.url("/write"), 6).await;
        assert_eq!(got, expected, "{trigger:?}");
        let fired = fake.faults.fired();
        assert_eq!(
            fired.len(),
            expected.iter().filter(|s| **s == 500).count(),
            "{trigger:?}"
        );
        assert!(fired
            .iter()
            .all(|f| f.path == "/write" && f.method == "POST" && f.rule == 0));
    }
}

#[tokio::test]
async fn routes_limit_a_rule_to_matching_requests() {
    let fake = Counter::start();
    let http = http_client(Duration::from_secs(5));
    fake.faults.set_plan(FaultPlan::seeded(1).rule(
        "POST /write",
        Trigger::Always,
        Fault::ErrorBefore(503),
    ));
    assert_eq!(
        statuses(&http, &fake.url("/other"), 2).await,
        vec![200, 200]
    );
    assert_eq!(statuses(&http, &fake.url("/write"), 1).await, vec![503]);
    assert_eq!(
        fake.faults.fired(),
        vec![FiredFault {
            method: "POST".to_owned(),
            path: "/write".to_owned(),
            rule: 0,
            fault: Fault::ErrorBefore(503),
        }]
    );
}

#[tokio::test]
async fn random_faults_replay_the_same_sequence_for_the_same_seed() {
    let fake = Counter::start();
    let http = http_client(Duration::from_secs(5));
    let plan = |seed| {
        FaultPlan::seeded(seed).rule(
            "*",
            Trigger::Random { probability: 0.4 },
            Fault::ErrorBefore(502),
        )
    };
    fake.faults.set_plan(plan(2026));
    let first = statuses(&http, &fake.url("/write"), 40).await;
    fake.faults.set_plan(plan(2026));
    let second = statuses(&http, &fake.url("/write"), 40).await;
    fake.faults.set_plan(plan(7));
    let other_seed = statuses(&http, &fake.url("/write"), 40).await;
    assert_eq!(first, second);
    assert_ne!(first, other_seed);
    let failures = first.iter().filter(|s| **s == 502).count();
    assert!((4..=30).contains(&failures), "{failures} of 40 failed");
    assert_eq!(
        fake.faults.fired().len(),
        other_seed.iter().filter(|s| **s == 502).count()
    );
}

#[tokio::test]
async fn error_before_skips_the_handler_and_error_after_runs_it() {
    let fake = Counter::start();
    let http = http_client(Duration::from_secs(5));
    fake.faults.set_plan(FaultPlan::seeded(1).rule(
        "/write",
        Trigger::Always,
        Fault::ErrorBefore(500),
    ));
    assert_eq!(statuses(&http, &fake.url("/write"), 1).await, vec![500]);
    assert_eq!(fake.applied(), 0);

    fake.faults.set_plan(FaultPlan::seeded(1).rule(
        "/write",
        Trigger::Always,
        Fault::ErrorAfter(503),
    ));
    let response = http.post(fake.url("/write")).send().await.expect("answer");
    assert_eq!(response.status().as_u16(), 503);
    let body: serde_json::Value = response.json().await.expect("JSON error body");
    assert!(body["meta"]["error"].is_string());
    assert_eq!(fake.applied(), 1);
}

#[tokio::test]
async fn too_many_requests_with_and_without_retry_after() {
    let fake = Counter::start();
    let http = http_client(Duration::from_secs(5));
    fake.faults.set_plan(
        FaultPlan::seeded(1)
            .rule(
                "/write",
                Trigger::Nth(vec![1]),
                Fault::TooManyRequests {
                    retry_after: Some(7),
                },
            )
            .rule(
                "/write",
                Trigger::Nth(vec![2]),
                Fault::TooManyRequests { retry_after: None },
            ),
    );
    let with = http.post(fake.url("/write")).send().await.expect("answer");
    assert_eq!(with.status().as_u16(), 429);
    assert_eq!(
        with.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"7"[..])
    );
    let without = http.post(fake.url("/write")).send().await.expect("answer");
    assert_eq!(without.status().as_u16(), 429);
    assert!(without.headers().get("retry-after").is_none());
    assert!(
        without.json::<serde_json::Value>().await.is_ok(),
        "JSON body"
    );
    assert_eq!(fake.applied(), 0);
}

#[tokio::test]
async fn html_fault_answers_an_html_page() {
    let fake = Counter::start();
    let http = http_client(Duration::from_secs(5));
    fake.faults
        .set_plan(FaultPlan::seeded(1).rule("*", Trigger::Always, Fault::Html(502)));
    let response = http.post(fake.url("/write")).send().await.expect("answer");
    assert_eq!(response.status().as_u16(), 502);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let body = response.text().await.expect("body");
    assert!(
        body.contains("<html>") && body.contains("502 Bad Gateway"),
        "{body}"
    );
    assert!(serde_json::from_str::<serde_json::Value>(&body).is_err());
    assert_eq!(fake.applied(), 0);
}

#[tokio::test]
async fn hang_makes_a_client_with_a_short_timeout_time_out() {
    let fake = Counter::start();
    let http = http_client(Duration::from_millis(300));
    fake.faults.set_plan(FaultPlan::seeded(1).rule(
        "/write",
        Trigger::Nth(vec![1]),
        Fault::Hang(Duration::from_secs(30)),
    ));
    let error = http
        .post(fake.url("/write"))
        .send()
        .await
        .expect_err("no answer within the timeout");
    assert!(error.is_timeout(), "{error:?}");
    assert_eq!(fake.applied(), 0);
    // The rule fired once; the next request is answered normally.
    assert_eq!(statuses(&http, &fake.url("/write"), 1).await, vec![200]);
}

#[tokio::test]
async fn drop_gives_the_client_a_transport_error() {
    let fake = Counter::start();
    let http = http_client(Duration::from_secs(5));
    fake.faults
        .set_plan(FaultPlan::seeded(1).rule("/write", Trigger::Nth(vec![2]), Fault::Drop));
    assert_eq!(statuses(&http, &fake.url("/write"), 1).await, vec![200]);
    let started = Instant::now();
    let error = http
        .post(fake.url("/write"))
        .send()
        .await
        .expect_err("the connection is closed without an answer");
    assert!(!error.is_timeout() && error.status().is_none(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(fake.applied(), 1, "the dropped request was not applied");
    assert_eq!(statuses(&http, &fake.url("/write"), 1).await, vec![200]);
}

#[tokio::test]
async fn latency_delays_a_normal_answer() {
    let fake = Counter::start();
    let http = http_client(Duration::from_secs(5));
    fake.faults.set_plan(FaultPlan::seeded(1).rule(
        "/write",
        Trigger::Always,
        Fault::Latency(Duration::from_millis(250)),
    ));
    let started = Instant::now();
    assert_eq!(statuses(&http, &fake.url("/write"), 1).await, vec![200]);
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(fake.applied(), 1);
}

#[tokio::test]
async fn drop_on_a_fresh_connection_is_a_transport_error_too() {
    let fake = Counter::start();
    fake.faults
        .set_plan(FaultPlan::seeded(1).rule("*", Trigger::Nth(vec![1]), Fault::Drop));
    let error = http_client(Duration::from_secs(5))
        .post(fake.url("/write"))
        .body("{\"some\":\"body\"}")
        .send()
        .await
        .expect_err("the connection is closed without an answer");
    assert!(!error.is_timeout() && error.status().is_none(), "{error:?}");
    assert_eq!(fake.applied(), 0);
    assert_eq!(fake.faults.fired().len(), 1);
}

#[tokio::test]
async fn drop_breaks_the_body_when_the_server_cannot_close_the_connection() {
    // Served by plain `axum::serve`, without `Server`'s connection handles.
    let faults = Faults::new(FaultPlan::seeded(1).rule("*", Trigger::Always, Fault::Drop));
    let router = faults.wrap(Router::new().route("/write", post(|| async { "{}" })));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local address");
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let outcome = match http_client(Duration::from_secs(5))
        .post(format!("http://{addr}/write"))
        .send()
        .await
    {
        Ok(response) => response.bytes().await.map(|_| ()),
        Err(error) => Err(error),
    };
    server.abort();
    let error = outcome.expect_err("the body never completes");
    assert!(!error.is_timeout(), "{error:?}");
}

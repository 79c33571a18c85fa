//! The fake customer.io over HTTP: auth, profile semantics, event de-duplication, the
//! limits and their 400s, v2 batches with 207s, redirect mode, and faults on its routes.

use std::time::Duration;

use base64::Engine as _;
use ciosync::fake::cio::{FakeCio, FakeCioOptions};
use ciosync::fake::faults::{Fault, FaultPlan, Trigger};
use serde_json::{json, Value};

use crate::common::http_client;

const EVENT_ID: &str = "01HZEP2TH0KX9ZDZFE66098J9N";
const OTHER_EVENT_ID: &str = "01HZEP2TH1XDXA15A51W9FTB68";

/// A started fake and a client that sends its credentials.
struct Harness {
    fake: FakeCio,
    http: reqwest::Client,
}

impl Harness {
    fn start() -> Harness {
        Harness::with(FakeCioOptions::default())
    }

    fn with(options: FakeCioOptions) -> Harness {
        let fake = FakeCio::start(options).expect("start fake customer.io");
        let http = http_client(Duration::from_secs(10));
        Harness { fake, http }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.fake.url())
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, self.url(path))
            .basic_auth(self.fake.site_id(), Some(self.fake.api_key()));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("fake answers");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, Some(&body)).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(&body)).await
    }

    /// Posts raw bytes (for bodies that are not valid JSON or have an exact size).
    async fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .basic_auth(self.fake.site_id(), Some(self.fake.api_key()))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("fake answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn error_message(body: &Value) -> &str {
    body["meta"]["error"].as_str().unwrap_or_default()
}

fn v2_event(person: &str, name: &str, id: &str) -> Value {
    json!({"type": "person", "identifiers": {"id": person}, "action": "event",
           "name": name, "id": id, "timestamp": 1_717_406_100, "attributes": {"n": 1}})
}

#[tokio::test]
async fn identify_merges_attributes_and_null_clears_one() {
    let h = Harness::start();
    let (status, body) = h
        .put(
            "/api/v1/customers/42",
            json!({"email": "a@example.org", "status": "open", "nps_score": "9"}),
        )
        .await;
    assert_eq!((status, body), (200, json!({})));
    assert_eq!(
        h.put(
            "/api/v1/customers/42",
            json!({"status": "applied", "nps_score": null})
        )
        .await
        .0,
        200
    );
    let profile = h.fake.profile("42").expect("profile 42");
    assert_eq!(
        Value::Object(profile),
        json!({"email": "a@example.org", "status": "applied"})
    );
    assert_eq!(h.fake.profiles().len(), 1);
}

#[tokio::test]
async fn path_ids_are_percent_decoded() {
    let h = Harness::start();
    assert_eq!(
        h.put("/api/v1/customers/a%2Fb+c", json!({"x": 1})).await.0,
        200
    );
    assert!(h.fake.profile("a/b+c").is_some(), "{:?}", h.fake.profiles());
}

#[tokio::test]
async fn a_duplicate_v1_event_id_is_stored_once() {
    let h = Harness::start();
    let event = json!({"name": "GVapplied", "id": EVENT_ID, "timestamp": 1_717_406_100, "data": {"application_id": 7}});
    assert_eq!(
        h.post("/api/v1/customers/42/events", event.clone()).await,
        (200, json!({}))
    );
    assert_eq!(
        h.post("/api/v1/customers/42/events", event).await,
        (200, json!({}))
    );
    let events = h.fake.events_for("42");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id.as_deref(), Some(EVENT_ID));
    assert_eq!(events[0].timestamp, Some(1_717_406_100));
    assert_eq!(events[0].data, json!({"application_id": 7}));
    assert_eq!(events[0].api, "v1");
    assert_eq!(h.fake.duplicate_events(), 1);
}

#[tokio::test]
async fn a_duplicate_v2_event_id_is_stored_once_also_across_v1_and_v2() {
    let h = Harness::start();
    let batch = json!({"batch": [v2_event("42", "GVapplied", EVENT_ID), v2_event("42", "GVapplied", EVENT_ID)]});
    assert_eq!(h.post("/api/v2/batch", batch).await, (200, json!({})));
    assert_eq!(
        h.post("/api/v2/entity", v2_event("42", "GVapplied", EVENT_ID))
            .await,
        (200, json!({}))
    );
    // The same id through v1, even in lower case, is the same event.
    let v1 = json!({"name": "GVapplied", "id": EVENT_ID.to_lowercase(), "data": {}});
    assert_eq!(h.post("/api/v1/customers/42/events", v1).await.0, 200);
    let events = h.fake.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].api, "v2");
    assert_eq!(events[0].data, json!({"n": 1}));
    assert_eq!(h.fake.duplicate_events(), 3);
    // A different id is a different event.
    assert_eq!(
        h.post(
            "/api/v2/entity",
            v2_event("42", "GVapplied", OTHER_EVENT_ID)
        )
        .await
        .0,
        200
    );
    assert_eq!(h.fake.events().len(), 2);
}

#[tokio::test]
async fn identify_sequence_comes_before_later_events_and_unknown_people_get_bare_profiles() {
    let h = Harness::start();
    h.post("/api/v1/customers/7/events", json!({"name": "early"}))
        .await;
    assert_eq!(h.fake.profile("7"), Some(serde_json::Map::new()));
    assert_eq!(h.fake.first_identify_seq("7"), None);
    h.put("/api/v1/customers/8", json!({"a": 1})).await;
    h.post("/api/v1/customers/8/events", json!({"name": "late"}))
        .await;
    h.put("/api/v1/customers/8", json!({"a": 2})).await;
    let identify = h.fake.first_identify_seq("8").expect("identified");
    let event = &h.fake.events_for("8")[0];
    assert!(identify < event.seq, "{identify} vs {}", event.seq);
    assert!(h.fake.events_for("7")[0].seq < identify);
}

#[tokio::test]
async fn delete_removes_the_profile() {
    let h = Harness::start();
    h.put("/api/v1/customers/9", json!({"a": 1})).await;
    assert_eq!(
        h.send(reqwest::Method::DELETE, "/api/v1/customers/9", None)
            .await
            .0,
        200
    );
    assert_eq!(h.fake.profile("9"), None);
    assert_eq!(
        h.send(reqwest::Method::DELETE, "/api/v1/customers/9", None)
            .await
            .0,
        200
    );
}

/// SPEC 8.2 semantics: suppress deletes the profile and later calls for the id are accepted
/// and ignored; unsuppress does not restore it; a deleted profile comes back with the next
/// identify. Through v1 and v2 alike.
#[tokio::test]
async fn suppress_ignores_later_calls_until_unsuppress_and_delete_is_undone_by_identify() {
    let h = Harness::start();
    h.put("/api/v1/customers/7", json!({"a": 1})).await;
    assert_eq!(
        h.post("/api/v1/customers/7/suppress", json!({})).await.0,
        200
    );
    assert_eq!(h.fake.profile("7"), None);
    assert!(h.fake.is_suppressed("7"));
    assert_eq!(h.put("/api/v1/customers/7", json!({"a": 2})).await.0, 200);
    let event = json!({"name": "GVapplied", "id": EVENT_ID, "data": {}});
    assert_eq!(h.post("/api/v1/customers/7/events", event).await.0, 200);
    let batch = json!({"batch": [
        {"type": "person", "identifiers": {"id": "7"}, "action": "identify", "attributes": {"a": 3}},
        v2_event("7", "GVaccepted", OTHER_EVENT_ID),
    ]});
    assert_eq!(h.post("/api/v2/batch", batch).await.0, 200);
    assert_eq!(h.fake.profile("7"), None, "ignored while suppressed");
    assert!(h.fake.events().is_empty());
    assert_eq!(h.fake.ignored_writes(), 4);

    let unsuppress = json!({"type": "person", "identifiers": {"id": "7"}, "action": "unsuppress"});
    assert_eq!(h.post("/api/v2/entity", unsuppress).await.0, 200);
    assert!(!h.fake.is_suppressed("7"));
    assert_eq!(h.fake.profile("7"), None, "unsuppress restores nothing");
    h.put("/api/v1/customers/7", json!({"b": 1})).await;
    assert_eq!(
        h.fake.profile("7").map(Value::Object),
        Some(json!({"b": 1})),
        "a new, empty profile"
    );

    let delete =
        json!({"batch": [{"type": "person", "identifiers": {"id": "7"}, "action": "delete"}]});
    assert_eq!(h.post("/api/v2/batch", delete).await.0, 200);
    assert_eq!(h.fake.profile("7"), None);
    h.put("/api/v1/customers/7", json!({"c": 1})).await;
    assert_eq!(
        h.fake.profile("7").map(Value::Object),
        Some(json!({"c": 1})),
        "recreated by identify"
    );
    let actions: Vec<(&str, &str)> = h
        .fake
        .person_actions()
        .iter()
        .map(|a| (a.action, a.api))
        .collect();
    assert_eq!(
        actions,
        vec![("suppress", "v1"), ("unsuppress", "v2"), ("delete", "v2")]
    );
}

#[tokio::test]
async fn the_v1_limits_each_give_their_400() {
    let h = Harness::start();
    let many: serde_json::Map<String, Value> =
        (0..301).map(|i| (format!("a{i}"), json!(i))).collect();
    let cases: Vec<(String, Value, &str)> = vec![
        (
            format!("/api/v1/customers/{}", "x".repeat(151)),
            json!({}),
            "identifier cannot be longer than 150 bytes",
        ),
        (
            "/api/v1/customers/1".to_owned(),
            json!({"n".repeat(151): 1}),
            "attribute name cannot be longer than 150 bytes",
        ),
        (
            "/api/v1/customers/1".to_owned(),
            json!({"bio": "é".repeat(501)}),
            "value for attribute 'bio' cannot be longer than 1000 bytes",
        ),
        (
            "/api/v1/customers/1".to_owned(),
            json!({"tags": vec!["abcdefgh"; 100]}),
            "value for attribute 'tags' cannot be longer than 1000 bytes",
        ),
        (
            "/api/v1/customers/1".to_owned(),
            Value::Object(many),
            "cannot identify more than 300 attributes in one request",
        ),
        (
            "/api/v1/customers/1".to_owned(),
            json!(["not", "an", "object"]),
            "request body must be a JSON object",
        ),
    ];
    for (path, body, message) in cases {
        let (status, answer) = h.put(&path, body).await;
        assert_eq!((status, error_message(&answer)), (400, message), "{path}");
    }
    let events: Vec<(Value, &str)> = vec![
        (json!({"name": "  "}), "event name must not be blank"),
        (json!({"data": {}}), "event name must not be blank"),
        (
            json!({"name": "e".repeat(101)}),
            "event name cannot be longer than 100 bytes",
        ),
        (
            json!({"name": "x", "data": ""}),
            "event data must be a hash (e.g., send \"data\":{} instead of \"data\":\"\")",
        ),
        (
            json!({"name": "x", "data": {"blob": "b".repeat(100_000)}}),
            "event data cannot be longer than 100000 bytes",
        ),
        (
            json!({"name": "x", "id": "not-a-ulid"}),
            "event id must be a valid ULID",
        ),
        (
            json!({"name": "x", "id": "81HZEP2TH0KX9ZDZFE66098J9N"}),
            "event id must be a valid ULID",
        ),
    ];
    for (body, message) in events {
        let (status, answer) = h.post("/api/v1/customers/1/events", body.clone()).await;
        assert_eq!((status, error_message(&answer)), (400, message), "{body}");
    }
    assert!(h.fake.profiles().is_empty(), "nothing was applied");
    assert!(h.fake.events().is_empty());
}

#[tokio::test]
async fn values_at_the_limits_are_accepted() {
    let h = Harness::start();
    let full: serde_json::Map<String, Value> =
        (0..300).map(|i| (format!("a{i}"), json!(i))).collect();
    let id = "i".repeat(150);
    assert_eq!(
        h.put(&format!("/api/v1/customers/{id}"), Value::Object(full))
            .await
            .0,
        200
    );
    assert_eq!(
        h.put(
            "/api/v1/customers/1",
            json!({"n".repeat(150): "v".repeat(1000)})
        )
        .await
        .0,
        200
    );
    let event = json!({"name": "e".repeat(100), "id": EVENT_ID, "data": {"d": "x".repeat(99_990)}});
    assert_eq!(h.post("/api/v1/customers/1/events", event).await.0, 200);
    assert_eq!(h.fake.profile(&id).map(|p| p.len()), Some(300));
    assert_eq!(h.fake.events().len(), 1);
}

#[tokio::test]
async fn a_batch_reports_invalid_ops_with_207_and_applies_the_valid_ones() {
    let h = Harness::start();
    let oversize = json!({"type": "person", "identifiers": {"id": "3"}, "action": "identify",
                          "attributes": (0..40).map(|i| (format!("a{i}"), json!("v".repeat(900)))).collect::<serde_json::Map<_, _>>()});
    assert!(oversize.to_string().len() > 32_000);
    let batch = json!({"batch": [
        {"type": "person", "identifiers": {"id": "1"}, "action": "identify", "attributes": {"plan": "team"}},
        oversize,
        v2_event("1", "GVapplied", EVENT_ID),
        {"type": "person", "identifiers": {}, "action": "identify", "attributes": {"plan": "x"}},
        {"type": "person", "identifiers": {"id": "2", "email": "b@example.org"}, "action": "identify"},
        {"type": "person", "identifiers": {"id": "2"}, "action": "event", "name": ""},
        {"type": "person", "identifiers": {"id": "2"}, "action": "identify", "attributes": {"ok": true}},
    ]});
    let (status, body) = h.post("/api/v2/batch", batch).await;
    assert_eq!(status, 207, "{body}");
    let errors = body["errors"].as_array().expect("errors array");
    let indexes: Vec<u64> = errors
        .iter()
        .filter_map(|e| e["batch_index"].as_u64())
        .collect();
    assert_eq!(indexes, vec![1, 3, 4, 5]);
    assert_eq!(errors[0]["reason"], "too_large");
    assert_eq!(errors[1]["field"], "identifiers");
    assert_eq!(errors[3]["message"], "event name must not be blank");
    assert!(errors
        .iter()
        .all(|e| e["message"].is_string() && e["field"].is_string()));
    assert_eq!(
        h.fake.profile("1"),
        Some(
            json!({"plan": "team"})
                .as_object()
                .cloned()
                .expect("object")
        )
    );
    assert_eq!(
        h.fake.profile("2"),
        Some(json!({"ok": true}).as_object().cloned().expect("object"))
    );
    assert_eq!(h.fake.profile("3"), None);
    assert_eq!(h.fake.events_for("1").len(), 1);
}

#[tokio::test]
async fn batch_and_entity_size_limits() {
    let h = Harness::start();
    // Many small ops, each valid, together over 500,000 bytes.
    let ops: Vec<Value> = (0..600)
        .map(|i| {
            json!({"type": "person", "identifiers": {"id": i.to_string()}, "action": "identify",
                        "attributes": {"bio": "b".repeat(900)}})
        })
        .collect();
    let big = json!({"batch": ops});
    assert!(big.to_string().len() > 500_000);
    assert_eq!(h.post("/api/v2/batch", big.clone()).await.0, 413);
    assert!(h.fake.profiles().is_empty());

    let h400 = Harness::with(FakeCioOptions {
        oversize_batch_status: 400,
        ..FakeCioOptions::default()
    });
    assert_eq!(h400.post("/api/v2/batch", big).await.0, 400);

    let entity = json!({"type": "person", "identifiers": {"id": "1"}, "action": "identify",
                        "attributes": (0..40).map(|i| (format!("a{i}"), json!("v".repeat(900)))).collect::<serde_json::Map<_, _>>()});
    let (status, body) = h.post("/api/v2/entity", entity).await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["reason"], "too_large");
    assert_eq!(h.fake.profile("1"), None);
}

#[tokio::test]
async fn a_malformed_batch_envelope_is_a_400() {
    let h = Harness::start();
    for body in [&b"{\"batch\": {}}"[..], b"[1,2]", b"not json", b"{}"] {
        let (status, answer) = h.post_raw("/api/v2/batch", body.to_vec()).await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(body));
        assert!(answer["errors"][0]["message"].is_string());
    }
}

#[tokio::test]
async fn basic_auth_accepts_standard_and_url_safe_base64_and_refuses_the_rest() {
    // A key whose base64 differs between the two alphabets.
    let h = Harness::with(FakeCioOptions {
        api_key: "k??>".to_owned(),
        ..FakeCioOptions::default()
    });
    let pair = format!("{}:{}", h.fake.site_id(), h.fake.api_key());
    let standard = base64::engine::general_purpose::STANDARD.encode(&pair);
    let url_safe = base64::engine::general_purpose::URL_SAFE.encode(&pair);
    assert_ne!(
        standard, url_safe,
        "the test needs a key where the alphabets differ"
    );
    let wrong = base64::engine::general_purpose::STANDARD.encode("fake-site:wrong");
    let region = h.url("/api/v1/accounts/region");
    for (header, expected) in [
        (Some(format!("Basic {standard}")), 200),
        (Some(format!("Basic {url_safe}")), 200),
        (Some(format!("Basic {wrong}")), 401),
        (Some("Bearer token".to_owned()), 401),
        (None, 401),
    ] {
        let mut request = h.http.get(&region);
        if let Some(header) = &header {
            request = request.header("authorization", header);
        }
        let response = request.send().await.expect("answer");
        assert_eq!(response.status().as_u16(), expected, "{header:?}");
        if expected == 401 {
            let body: Value = response.json().await.expect("JSON body");
            assert_eq!(error_message(&body), "Unauthorized request");
        }
    }
    let unauthorized = h
        .http
        .put(h.url("/api/v1/customers/1"))
        .json(&json!({"a": 1}))
        .send()
        .await
        .expect("answer");
    assert_eq!(unauthorized.status().as_u16(), 401);
    assert!(h.fake.profiles().is_empty());
}

#[tokio::test]
async fn region_reports_the_fake_url_and_region() {
    let h = Harness::with(FakeCioOptions {
        region: "eu".to_owned(),
        ..FakeCioOptions::default()
    });
    let (status, body) = h
        .send(reqwest::Method::GET, "/api/v1/accounts/region", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["region"], "eu");
    assert_eq!(body["url"], h.fake.url());
    assert!(body["environment_id"].is_u64());
}

#[tokio::test]
async fn redirect_mode_answers_3xx_with_location() {
    let h = Harness::with(FakeCioOptions {
        redirect: Some((301, "https://track-eu.customer.io".to_owned())),
        ..FakeCioOptions::default()
    });
    let response = h
        .http
        .put(h.url("/api/v1/customers/5?x=1"))
        .basic_auth(h.fake.site_id(), Some(h.fake.api_key()))
        .json(&json!({"a": 1}))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 301);
    assert_eq!(
        response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok()),
        Some("https://track-eu.customer.io/api/v1/customers/5?x=1")
    );
    assert!(h.fake.profiles().is_empty());
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let h = Harness::start();
    assert_eq!(h.post("/api/v1/nothing", json!({})).await.0, 404);
}

#[tokio::test]
async fn error_after_applies_the_write_and_requests_are_logged() {
    let h = Harness::start();
    h.fake.faults().set_plan(
        FaultPlan::seeded(3)
            .rule(
                "PUT /api/v1/customers",
                Trigger::Nth(vec![1]),
                Fault::ErrorAfter(502),
            )
            .rule("POST /api/v1/customers", Trigger::Nth(vec![1]), Fault::Drop),
    );
    assert_eq!(h.put("/api/v1/customers/1", json!({"a": 1})).await.0, 502);
    assert_eq!(
        h.fake.profile("1").map(|p| p.len()),
        Some(1),
        "applied before the 502"
    );
    let dropped = h
        .http
        .post(h.url("/api/v1/customers/1/events"))
        .basic_auth(h.fake.site_id(), Some(h.fake.api_key()))
        .json(&json!({"name": "x", "id": EVENT_ID}))
        .send()
        .await;
    assert!(dropped.is_err(), "{dropped:?}");
    assert!(
        h.fake.events().is_empty(),
        "a dropped request is not applied"
    );
    let statuses: Vec<(String, u16)> = h
        .fake
        .requests()
        .into_iter()
        .map(|r| (r.method, r.status))
        .collect();
    assert_eq!(
        statuses,
        vec![("PUT".to_owned(), 502), ("POST".to_owned(), 0)]
    );
    assert!(h.fake.requests()[0].body_bytes > 0);
    h.fake.clear_requests();
    assert!(h.fake.requests().is_empty());
    assert_eq!(h.fake.faults().fired().len(), 2);
}

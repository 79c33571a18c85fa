//! The fake customer.io Track API (v1 and v2), with the real limits, event de-duplication,
//! 207 per-operation errors and an inspection API.
//!
//! [`FakeCio::start`] serves it on loopback; its handle is synchronous so tests, `demo` and
//! the benchmark drive it alike. Layers, outermost first: the request log, fault injection
//! ([`Faults`]), the wrong-region redirect, Basic auth, then the endpoints.

mod store;
mod validate;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::fake::faults::{Faults, FiredFault};
use crate::fake::server::Server;
use crate::fake::RequestRecord;
use store::Store;
pub use store::{PersonActionRecord, StoredEvent};
pub use validate::is_ulid;
use validate::{
    check_attributes, check_event, Identifier, Invalid, MAX_BATCH_BYTES, MAX_OPERATION_BYTES,
};

/// Largest request body the fake reads at all; far beyond any customer.io limit.
const MAX_READ_BYTES: usize = 64 * 1024 * 1024;

/// How the fake behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCioOptions {
    /// The Basic auth user name.
    pub site_id: String,
    /// The Basic auth password.
    pub api_key: String,
    /// `"us"` or `"eu"`, as `GET /api/v1/accounts/region` reports it.
    pub region: String,
    /// Act as the wrong-region host: every request answers this 3xx status with
    /// `Location: <url>` followed by the request's path and query.
    pub redirect: Option<(u16, String)>,
    /// Status for a `/api/v2/batch` body over 500,000 bytes (the real one is undocumented).
    pub oversize_batch_status: u16,
}

impl Default for FakeCioOptions {
    fn default() -> Self {
        FakeCioOptions {
            site_id: "fake-site".to_owned(),
            api_key: "fake-key".to_owned(),
            region: "us".to_owned(),
            redirect: None,
            oversize_batch_status: 413,
        }
    }
}

/// What the handlers share with the handle.
struct Shared {
    options: FakeCioOptions,
    /// `Basic` credentials as decoded bytes, `site_id:api_key`.
    credentials: Vec<u8>,
    /// The fake's own URL, known once the socket is bound.
    url: OnceLock<String>,
    store: Mutex<Store>,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        // Handlers never panic while holding the lock, and a test fake should keep serving
        // even if one did.
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running fake customer.io. Dropping it stops the server.
pub struct FakeCio {
    shared: Arc<Shared>,
    faults: Faults,
    server: Server,
}

impl FakeCio {
    /// Starts the fake on `127.0.0.1` with a free port.
    ///
    /// # Errors
    /// When the server cannot be started.
    pub fn start(options: FakeCioOptions) -> std::io::Result<FakeCio> {
        let credentials = format!("{}:{}", options.site_id, options.api_key).into_bytes();
        let shared = Arc::new(Shared {
            options,
            credentials,
            url: OnceLock::new(),
            store: Mutex::new(Store::default()),
        });
        let faults = Faults::default();
        let server = Server::start(router(&shared, &faults))?;
        // Only this function sets it, once.
        let _ = shared.url.set(server.url());
        Ok(FakeCio {
            shared,
            faults,
            server,
        })
    }

    /// `http://127.0.0.1:<port>`: the Track base URL to configure.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The site id it accepts.
    pub fn site_id(&self) -> String {
        self.shared.options.site_id.clone()
    }

    /// The API key it accepts.
    pub fn api_key(&self) -> String {
        self.shared.options.api_key.clone()
    }

    /// Its fault plan (empty until set).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Every profile by key (the customer id for people identified by id) with its
    /// attributes.
    pub fn profiles(&self) -> BTreeMap<String, Map<String, Value>> {
        self.shared.store().profiles()
    }

    /// One profile's attributes.
    pub fn profile(&self, id: &str) -> Option<Map<String, Value>> {
        self.shared.store().profile(id)
    }

    /// The sequence number of a profile's first identify (the counter events share), so a
    /// test can check the identify came before that person's events. `None` for an unknown
    /// person or a bare profile created by an event.
    pub fn first_identify_seq(&self, id: &str) -> Option<u64> {
        self.shared.store().first_identify_seq(id)
    }

    /// Every stored event, in the order stored.
    pub fn events(&self) -> Vec<StoredEvent> {
        self.shared.store().events().to_vec()
    }

    /// The stored events of one person, in the order stored.
    pub fn events_for(&self, customer_id: &str) -> Vec<StoredEvent> {
        self.shared
            .store()
            .events()
            .iter()
            .filter(|e| e.customer_id == customer_id)
            .cloned()
            .collect()
    }

    /// Suppressed identifiers: `id:<id>` for people identified by id (`email:<address>`,
    /// `phone:<number>`, `cio_id:<id>` otherwise).
    pub fn suppressed(&self) -> std::collections::BTreeSet<String> {
        self.shared.store().suppressed()
    }

    /// Whether the person with this customer id is suppressed.
    pub fn is_suppressed(&self, id: &str) -> bool {
        self.suppressed().contains(&format!("id:{id}"))
    }

    /// Identifies and events accepted (200) but ignored because their identifier is
    /// suppressed.
    pub fn ignored_writes(&self) -> u64 {
        self.shared.store().ignored_writes()
    }

    /// Every delete, suppress and unsuppress applied, in order, v1 and v2 alike.
    pub fn person_actions(&self) -> Vec<PersonActionRecord> {
        self.shared.store().person_actions()
    }

    /// Events acknowledged but not stored because their `id` was already stored.
    pub fn duplicate_events(&self) -> u64 {
        self.shared.store().duplicates()
    }

    /// Every request received, in arrival order (status 0 while unanswered, dropped or hung).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.store().requests()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.shared.store().clear_requests();
    }
}

fn router(shared: &Arc<Shared>, faults: &Faults) -> Router {
    let endpoints = Router::new()
        .route("/api/v1/customers/{id}", put(identify_v1).delete(delete_v1))
        .route("/api/v1/customers/{id}/events", post(event_v1))
        .route("/api/v1/customers/{id}/suppress", post(suppress_v1))
        .route("/api/v1/customers/{id}/unsuppress", post(unsuppress_v1))
        .route("/api/v1/accounts/region", get(region))
        .route("/api/v2/entity", post(entity))
        .route("/api/v2/batch", post(batch))
        .fallback(not_found)
        .layer(from_fn_with_state(Arc::clone(shared), authenticate))
        .layer(from_fn_with_state(Arc::clone(shared), redirect))
        .layer(DefaultBodyLimit::disable())
        .with_state(Arc::clone(shared));
    faults
        .wrap(endpoints)
        .layer(from_fn_with_state(Arc::clone(shared), log_request))
}

/// Logs each request before anything else can answer it, then its status.
async fn log_request(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_READ_BYTES).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let number = shared.store().request_started(RequestRecord {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        status: 0,
        body_bytes: bytes.len(),
    });
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let unanswered = response
        .extensions()
        .get::<FiredFault>()
        .is_some_and(FiredFault::leaves_no_answer);
    let status = if unanswered {
        0
    } else {
        response.status().as_u16()
    };
    shared.store().answered(number, status);
    response
}

/// In redirect mode, sends every request to the configured host.
async fn redirect(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let Some((code, target)) = &shared.options.redirect else {
        return next.run(request).await;
    };
    let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = format!("{}{path}", target.trim_end_matches('/'));
    let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::MOVED_PERMANENTLY);
    let body =
        json!({"errors": [{"detail": "wrong datacenter", "status": status.as_u16().to_string()}]});
    let mut response = (status, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Basic auth with the site id and API key, in standard or URL-safe base64.
async fn authenticate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if basic_credentials(request.headers()).as_deref() == Some(shared.credentials.as_slice()) {
        next.run(request).await
    } else {
        v1_error(StatusCode::UNAUTHORIZED, "Unauthorized request")
    }
}

/// The decoded `user:password` of a Basic `Authorization` header.
fn basic_credentials(headers: &HeaderMap) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let encoded = encoded.trim();
    [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(encoded).ok())
}

/// v1's error body: `{"meta":{"error":...}}`.
fn v1_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"meta": {"error": message}}))).into_response()
}

/// v2's whole-request error body: `{"errors":[{"reason","field","message"}]}`.
fn v2_error(status: StatusCode, invalid: &Invalid) -> Response {
    let body = json!({"errors": [{
        "reason": invalid.reason,
        "field": invalid.field,
        "message": invalid.message,
    }]});
    (status, Json(body)).into_response()
}

fn ok() -> Response {
    (StatusCode::OK, Json(json!({}))).into_response()
}

async fn not_found() -> Response {
    v1_error(StatusCode::NOT_FOUND, "Not Found")
}

/// A request body that must be a JSON object.
fn json_object(body: &[u8]) -> Result<Map<String, Value>, Invalid> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Invalid::new("", "request body must be a JSON object")),
    }
}

/// `PUT /api/v1/customers/{id}`.
async fn identify_v1(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let checked = Identifier::from_path(&id).and_then(|who| {
        let attributes = json_object(&body)?;
        check_attributes(&attributes, "attributes")?;
        Ok((who, attributes))
    });
    match checked {
        Ok((who, attributes)) => {
            shared.store().identify(&who, attributes);
            ok()
        }
        Err(invalid) => v1_error(StatusCode::BAD_REQUEST, &invalid.message),
    }
}

/// `DELETE /api/v1/customers/{id}`.
async fn delete_v1(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match Identifier::from_path(&id) {
        Ok(who) => {
            shared.store().delete(&who, "v1");
            ok()
        }
        Err(invalid) => v1_error(StatusCode::BAD_REQUEST, &invalid.message),
    }
}

/// `POST /api/v1/customers/{id}/suppress`: deletes the profile and ignores every later call
/// for the identifier.
async fn suppress_v1(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match Identifier::from_path(&id) {
        Ok(who) => {
            shared.store().suppress(&who, "v1");
            ok()
        }
        Err(invalid) => v1_error(StatusCode::BAD_REQUEST, &invalid.message),
    }
}

/// `POST /api/v1/customers/{id}/unsuppress`.
async fn unsuppress_v1(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match Identifier::from_path(&id) {
        Ok(who) => {
            shared.store().unsuppress(&who, "v1");
            ok()
        }
        Err(invalid) => v1_error(StatusCode::BAD_REQUEST, &invalid.message),
    }
}

/// `POST /api/v1/customers/{id}/events`.
async fn event_v1(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let checked = Identifier::from_path(&id).and_then(|who| {
        let event = json_object(&body)?;
        let input = check_event(
            event.get("name"),
            event.get("id"),
            event.get("timestamp"),
            event.get("data"),
            "data",
        )?;
        Ok((who, input))
    });
    match checked {
        Ok((who, input)) => {
            shared.store().track(&who, input, "v1");
            ok()
        }
        Err(invalid) => v1_error(StatusCode::BAD_REQUEST, &invalid.message),
    }
}

/// `GET /api/v1/accounts/region`: the fake's own URL, so a client pointed at it agrees.
async fn region(State(shared): State<Arc<Shared>>) -> Response {
    let url = shared.url.get().cloned().unwrap_or_default();
    let body = json!({
        "url": url,
        "region": shared.options.region,
        "environment_id": 1,
    });
    (StatusCode::OK, Json(body)).into_response()
}

/// A v2 operation that passed validation.
enum Operation {
    Identify(Identifier, Map<String, Value>),
    Event(Identifier, validate::EventInput),
    Delete(Identifier),
    Suppress(Identifier),
    Unsuppress(Identifier),
}

/// Validates one v2 operation.
fn parse_operation(op: &Value) -> Result<Operation, Invalid> {
    let Value::Object(op) = op else {
        return Err(Invalid::new("", "operation must be a JSON object"));
    };
    match op.get("type").and_then(Value::as_str) {
        Some("person") => {}
        Some(other) => {
            return Err(Invalid::new(
                "type",
                format!("type '{other}' is not supported by the fake"),
            ))
        }
        None => return Err(Invalid::new("type", "type is required")),
    }
    let who = Identifier::from_v2(op.get("identifiers"))?;
    match op.get("action").and_then(Value::as_str) {
        Some("identify") => {
            let attributes = match op.get("attributes") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(map)) => map.clone(),
                Some(_) => return Err(Invalid::new("attributes", "attributes must be an object")),
            };
            check_attributes(&attributes, "attributes")?;
            Ok(Operation::Identify(who, attributes))
        }
        Some("event" | "page" | "screen") => {
            let input = check_event(
                op.get("name"),
                op.get("id"),
                op.get("timestamp"),
                op.get("attributes"),
                "attributes",
            )?;
            Ok(Operation::Event(who, input))
        }
        Some("delete") => Ok(Operation::Delete(who)),
        Some("suppress") => Ok(Operation::Suppress(who)),
        Some("unsuppress") => Ok(Operation::Unsuppress(who)),
        Some(other) => Err(Invalid::new(
            "action",
            format!("action '{other}' is not supported by the fake"),
        )),
        None => Err(Invalid::new("action", "action is required")),
    }
}

fn apply(store: &mut Store, operation: Operation) {
    match operation {
        Operation::Identify(who, attributes) => store.identify(&who, attributes),
        Operation::Event(who, input) => store.track(&who, input, "v2"),
        Operation::Delete(who) => store.delete(&who, "v2"),
        Operation::Suppress(who) => store.suppress(&who, "v2"),
        Operation::Unsuppress(who) => store.unsuppress(&who, "v2"),
    }
}

/// `POST /api/v2/entity`: one operation of at most 32,000 bytes.
async fn entity(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    if body.len() > MAX_OPERATION_BYTES {
        let invalid = Invalid::too_large(
            "",
            format!("request cannot be larger than {MAX_OPERATION_BYTES} bytes"),
        );
        return v2_error(StatusCode::BAD_REQUEST, &invalid);
    }
    let operation = serde_json::from_slice::<Value>(&body)
        .map_err(|_| Invalid::new("", "request body must be a JSON object"))
        .and_then(|op| parse_operation(&op));
    match operation {
        Ok(operation) => {
            apply(&mut shared.store(), operation);
            ok()
        }
        Err(invalid) => v2_error(StatusCode::BAD_REQUEST, &invalid),
    }
}

/// `POST /api/v2/batch`: valid operations are applied even when others are refused (207).
async fn batch(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    if body.len() > MAX_BATCH_BYTES {
        let status = StatusCode::from_u16(shared.options.oversize_batch_status)
            .unwrap_or(StatusCode::PAYLOAD_TOO_LARGE);
        let invalid = Invalid::too_large(
            "batch",
            format!("batch cannot be larger than {MAX_BATCH_BYTES} bytes"),
        );
        return v2_error(status, &invalid);
    }
    let operations = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(mut envelope)) => match envelope.remove("batch") {
            Some(Value::Array(operations)) => operations,
            _ => {
                let invalid = Invalid::new("batch", "batch must be an array of operations");
                return v2_error(StatusCode::BAD_REQUEST, &invalid);
            }
        },
        _ => {
            let invalid = Invalid::new("", "request body must be a JSON object");
            return v2_error(StatusCode::BAD_REQUEST, &invalid);
        }
    };
    let mut valid = Vec::with_capacity(operations.len());
    let mut errors = Vec::new();
    for (index, op) in operations.iter().enumerate() {
        // The op's size is measured on its compact serialization, which is what clients
        // send (serde_json writes no whitespace and keeps non-ASCII text unescaped).
        let checked = if op.to_string().len() > MAX_OPERATION_BYTES {
            Err(Invalid::too_large(
                "",
                format!("operation cannot be larger than {MAX_OPERATION_BYTES} bytes"),
            ))
        } else {
            parse_operation(op)
        };
        match checked {
            Ok(operation) => valid.push(operation),
            Err(invalid) => errors.push(json!({
                "batch_index": index,
                "reason": invalid.reason,
                "field": invalid.field,
                "message": invalid.message,
            })),
        }
    }
    {
        let mut store = shared.store();
        for operation in valid {
            apply(&mut store, operation);
        }
    }
    if errors.is_empty() {
        ok()
    } else {
        (StatusCode::MULTI_STATUS, Json(json!({ "errors": errors }))).into_response()
    }
}

//! The fake GIS: GraphQL validated against the real schema, raw-token auth, OAuth refresh
//! with rotation, paging, a seeded data generator and a mutation API.
//!
//! `POST /graphql` and `POST /oauth/token` behave like gis-api.aiesec.org and
//! auth.aiesec.org as far as ciosync can tell (see `research/gis-api.md` sections 1.4, 2.2,
//! 6.4 and 7). The handle is synchronous: tests, the demo and the benchmark call it directly.
//!
//! Decisions where real GIS is unknown, so tests can rely on them:
//! - Default order of both lists: `created_at` desc, ties by id desc. `filters.sort`
//!   without `sort_direction` is ascending; the root `sort` string takes `updated_at`
//!   (asc), `-updated_at` / `DESC_updated_at` (desc), `+…` / `ASC_…` (asc). Sort keys other
//!   than `created_at` and `updated_at` keep the default order.
//! - `page` < 1 is page 1; `per_page` < 1 is 25; above the cap it is clamped silently.
//! - An empty filter list (`ids: []`) matches nothing; a null or absent one matches all.
//! - `DateInput` bounds are inclusive; a bare date as `to` covers that whole day.
//! - Query errors (syntax, validation, variables) are HTTP 200 with `{"errors": [...]}`;
//!   a body that is not JSON with a `query` is HTTP 400.
//! - Patches replace top-level fields (nested objects are replaced whole).
//! - A rotated refresh token is revoked at once by default ([`RefreshRevocation`]: the
//!   strictest choice, under which a refresh token works exactly once); Doorkeeper's
//!   revoke-on-use is an option. Either way, a refresh revokes the access token issued with
//!   the refresh token it consumed, as Doorkeeper does.
//! - Introspection is answered (GIS's schema was introspected to write `gis/schema.graphql`);
//!   [`FakeGisOptions::introspection`] turns it off, [`FakeGisOptions::removed_fields`]
//!   serves a schema that lost some fields.
//!
//! Lists can change while a client pages through them, and concurrent pages can be served
//! out of order: see [`FakeGis::set_drift`], [`FakeGis::set_out_of_order`] and the `drift`
//! module's terms.

mod drift;
mod generate;
mod graphql;
mod oauth;
mod rng;
mod store;

pub use drift::{DriftAction, DriftApplied, DriftSchedule, DriftStep, GisList, PageServed, Which};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

use super::faults::Faults;
use super::server::Server;
use super::RequestRecord;
use drift::Tracker;
use oauth::{AuthError, Tokens};
pub use oauth::{RefreshAttempt, RefreshRevocation};
use store::Store;

/// How the fake GIS is set up.
#[derive(Debug, Clone)]
pub struct FakeGisOptions {
    /// Seed of the data generator and of every secret the fake hands out.
    pub seed: u64,
    /// How many people to generate (0: start empty and build scenarios with `insert_*`).
    pub people: usize,
    /// The LCs generated people are spread over (uniformly).
    pub lcs: Vec<u64>,
    /// The largest `per_page` honoured; larger requests are silently clamped.
    pub per_page_cap: u32,
    /// OAuth-issued access tokens stop working after this many requests.
    pub token_ttl_requests: Option<u64>,
    /// OAuth-issued access tokens stop working after this long (real time).
    pub token_ttl: Option<Duration>,
    /// When a refresh token exchanged for a new pair stops working.
    pub refresh_revocation: RefreshRevocation,
    /// The fake's "now": stamps mutations and token `created_at`.
    pub clock: DateTime<Utc>,
    /// Fields (`"Type.field"`) the served schema lacks: a GIS whose API changed. Queries
    /// selecting them are refused, and introspection does not list them.
    pub removed_fields: Vec<String>,
    /// Whether introspection (`__type`, `__schema`) is answered; false answers each with a
    /// field error, as a GIS that locked it down would.
    pub introspection: bool,
}

impl Default for FakeGisOptions {
    fn default() -> Self {
        FakeGisOptions {
            seed: 42,
            people: 50,
            lcs: vec![1337, 1338, 2001, 2002],
            per_page_cap: 500,
            token_ttl_requests: None,
            token_ttl: None,
            refresh_revocation: RefreshRevocation::default(),
            clock: Utc
                .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
                .single()
                .expect("a valid fixed date"),
            removed_fields: Vec::new(),
            introspection: true,
        }
    }
}

/// One `/graphql` request, as the fake understood it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryRecord {
    /// `operationName`, when given.
    pub operation_name: Option<String>,
    /// The root fields the operation selects (e.g. `["people"]`), even if it was refused.
    pub root_fields: Vec<String>,
    /// The `variables` object (or null).
    pub variables: Value,
    /// The HTTP status answered.
    pub status: u16,
    /// Whether the body carried `errors`.
    pub had_errors: bool,
}

/// State shared by the handlers and the handle.
///
/// Lock order: `tracker` before `store`, never the other way round.
struct Shared {
    store: RwLock<Store>,
    tokens: Mutex<Tokens>,
    requests: Mutex<Vec<RequestRecord>>,
    queries: Mutex<Vec<QueryRecord>>,
    clock: Mutex<DateTime<Utc>>,
    service: graphql::Service,
    tracker: Mutex<Tracker>,
    /// While tracking, GraphQL requests are computed one at a time, so "between two page
    /// requests" means something.
    compute_gate: tokio::sync::Mutex<()>,
    /// Woken whenever a tracked list page request arrives, is computed or ends
    /// (out-of-order holds wait on it).
    page_computed: tokio::sync::Notify,
}

impl Shared {
    fn clock(&self) -> DateTime<Utc> {
        *self.clock.lock().expect("clock lock poisoned")
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker.lock().expect("drift tracker lock poisoned")
    }

    fn store(&self) -> std::sync::RwLockReadGuard<'_, Store> {
        self.store.read().expect("store lock poisoned")
    }

    fn store_mut(&self) -> std::sync::RwLockWriteGuard<'_, Store> {
        self.store.write().expect("store lock poisoned")
    }
}

/// A running fake GIS. Dropping it stops the server.
pub struct FakeGis {
    shared: Arc<Shared>,
    faults: Faults,
    server: Server,
}

impl FakeGis {
    /// Generates the data and starts serving on `127.0.0.1` (a free port).
    ///
    /// # Errors
    /// When the server cannot bind or start, or `removed_fields` names a field the schema
    /// does not have (`InvalidInput`).
    pub fn start(opts: FakeGisOptions) -> std::io::Result<FakeGis> {
        let schema = graphql::schema_without(&opts.removed_fields)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let store = Store::generate(opts.seed, opts.people, &opts.lcs);
        let shared = Arc::new(Shared {
            store: RwLock::new(store),
            tokens: Mutex::new(Tokens::new(
                opts.seed,
                opts.token_ttl_requests,
                opts.token_ttl,
                opts.refresh_revocation,
            )),
            requests: Mutex::new(Vec::new()),
            queries: Mutex::new(Vec::new()),
            clock: Mutex::new(opts.clock),
            service: graphql::Service::new(schema, opts.per_page_cap.max(1), opts.introspection),
            tracker: Mutex::new(Tracker::default()),
            compute_gate: tokio::sync::Mutex::new(()),
            page_computed: tokio::sync::Notify::new(),
        });
        let faults = Faults::default();
        let routes = Router::new()
            .route("/graphql", post(graphql_handler))
            .route("/oauth/token", post(token_handler))
            .with_state(Arc::clone(&shared));
        // Recording sits outside the faults, so a dropped or hung request still shows up.
        let app = faults
            .wrap(routes)
            .layer(middleware::from_fn_with_state(Arc::clone(&shared), record));
        let server = Server::start(app)?;
        Ok(FakeGis {
            shared,
            faults,
            server,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The GraphQL endpoint.
    pub fn graphql_url(&self) -> String {
        format!("{}/graphql", self.url())
    }

    /// The OAuth token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.url())
    }

    /// A token that never expires (like GIS's entity-wide service tokens).
    pub fn static_token(&self) -> String {
        self.tokens().static_token.clone()
    }

    /// The OAuth client id (HTTP Basic user at the token endpoint).
    pub fn oauth_client_id(&self) -> String {
        self.tokens().client_id.clone()
    }

    /// The OAuth client secret (HTTP Basic password at the token endpoint).
    pub fn oauth_client_secret(&self) -> String {
        self.tokens().client_secret.clone()
    }

    /// The initial refresh token: valid until first used.
    pub fn seed_refresh_token(&self) -> String {
        self.tokens().seed_refresh_token.clone()
    }

    /// A new refresh token, valid until first used, as an operator bootstraps one (the
    /// authorization-code flow) after the rotated one was lost.
    pub fn bootstrap_refresh_token(&self) -> String {
        self.tokens().bootstrap_refresh_token()
    }

    /// Expires every OAuth-issued access token now (the static token keeps working).
    pub fn expire_access_tokens(&self) {
        self.tokens().expire_all();
    }

    /// Every request the token endpoint handled, in order: the refresh token presented and
    /// what came of it. A request a fault answered without applying is not listed.
    pub fn refresh_attempts(&self) -> Vec<RefreshAttempt> {
        self.tokens().attempts.clone()
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, Tokens> {
        self.shared.tokens.lock().expect("token lock poisoned")
    }

    /// The fault plan of this fake.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared
            .requests
            .lock()
            .expect("request log lock poisoned")
            .clone()
    }

    /// Every `/graphql` request handled so far.
    pub fn queries(&self) -> Vec<QueryRecord> {
        self.shared
            .queries
            .lock()
            .expect("query log lock poisoned")
            .clone()
    }

    /// Sets the fake's "now" (stamps later mutations).
    pub fn set_clock(&self, t: DateTime<Utc>) {
        *self.shared.clock.lock().expect("clock lock poisoned") = t;
    }

    /// Ids of the people currently in `lc`, in the default order (created_at desc).
    pub fn person_ids(&self, lc: u64) -> Vec<u64> {
        self.shared.store().person_ids(lc)
    }

    /// Ids of a person's applications, ascending.
    pub fn application_ids(&self, person_id: u64) -> Vec<u64> {
        self.shared.store().application_ids(person_id)
    }

    /// A person's full record, GraphQL-shaped (`None` if unknown or removed).
    pub fn person_json(&self, id: u64) -> Option<Value> {
        self.shared.store().person_json(id)
    }

    /// An application's full record, GraphQL-shaped; its `person` holds only the id.
    pub fn application_json(&self, id: u64) -> Option<Value> {
        self.shared.store().application_json(id)
    }

    /// Replaces the given top-level fields (GraphQL names) of a person; `updated_at`
    /// becomes the clock unless the patch sets it. False if the person does not exist.
    pub fn update_person(&self, id: u64, patch: Value) -> bool {
        let clock = self.shared.clock();
        self.shared.store_mut().update_person(id, &patch, clock)
    }

    /// Sets an application's status, stamps that status's date field(s) and `updated_at`
    /// with the clock. False if the application does not exist.
    pub fn set_application_status(&self, id: u64, status: &str) -> bool {
        let clock = self.shared.clock();
        self.shared
            .store_mut()
            .set_application_status(id, status, clock)
    }

    /// Replaces the given top-level fields of an application; `updated_at` becomes the clock
    /// unless the patch sets it. False if the application does not exist.
    pub fn update_application(&self, id: u64, patch: Value) -> bool {
        let clock = self.shared.clock();
        self.shared
            .store_mut()
            .update_application(id, &patch, clock)
    }

    /// Adds a person, or replaces the one with the same id. Missing `created_at` and
    /// `updated_at` are set to the clock.
    ///
    /// # Panics
    /// When `"id"` or `"home_lc": {"id": ..}` is missing (a bug in the calling test).
    pub fn insert_person(&self, person: Value) {
        let clock = self.shared.clock();
        self.shared.store_mut().insert_person(person, clock);
    }

    /// Adds an application, or replaces the one with the same id. Missing `created_at` and
    /// `updated_at` are set to the clock.
    ///
    /// # Panics
    /// When `"id"` or `"person": {"id": ..}` is missing (a bug in the calling test).
    pub fn insert_application(&self, app: Value) {
        let clock = self.shared.clock();
        self.shared.store_mut().insert_application(app, clock);
    }

    /// Removes a person and their applications. False if the person does not exist.
    pub fn remove_person(&self, id: u64) -> bool {
        self.shared.store_mut().remove_person(id)
    }

    /// Moves a person to another LC (and that LC's MC), touching `updated_at`.
    pub fn move_person(&self, id: u64, lc: u64) -> bool {
        let clock = self.shared.clock();
        self.shared.store_mut().move_person(id, lc, clock)
    }

    /// Removes an application (its person stays). False if it does not exist.
    pub fn remove_application(&self, id: u64) -> bool {
        self.shared.store_mut().remove_application(id)
    }

    /// Starts `schedule`: from now on the lists change between page requests as it says
    /// (terms in the `drift` module's docs). Request counts, scans, the drift log and the
    /// page log start over. While a schedule is set, GraphQL requests are computed one at a
    /// time.
    pub fn set_drift(&self, schedule: DriftSchedule) {
        self.shared.tracker().set_schedule(Some(schedule));
    }

    /// Stops drifting (the logs stay readable until the next [`FakeGis::set_drift`]).
    pub fn clear_drift(&self) {
        self.shared.tracker().stop_schedule();
    }

    /// What each drift step did, in the order they ran.
    pub fn drift_log(&self) -> Vec<DriftApplied> {
        self.shared.tracker().drift_log()
    }

    /// Every list page request computed while drift or out-of-order serving was on, in the
    /// order computed, with the paging it answered and the ids it served.
    pub fn page_log(&self) -> Vec<PageServed> {
        self.shared.tracker().page_log()
    }

    /// Serves concurrent pages of a list latest first. With `Some(fallback)`, page `p > 1`
    /// of a scan (same list, filters, order and page size) is computed only once page
    /// `p + 1` of it has been, unless `p` is the last page. While a later page of the scan
    /// is in flight, `p` waits for it; the latest page in flight waits at most `fallback`
    /// for its successor, so a sequential reader is slowed, never stuck, and a batch of
    /// concurrent pages costs one fallback at most. Page 1 is never held (readers read it
    /// first to learn `total_pages`). Pages 2..=5 requested together are thus computed
    /// 5, 4, 3, 2. `None` serves in arrival order again.
    pub fn set_out_of_order(&self, fallback: Option<Duration>) {
        self.shared.tracker().set_out_of_order(fallback);
    }
}

/// Records method, path, status and body size of every request. The record is written
/// before the request runs (status 0) so a dropped or hung request is still listed.
async fn record(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let slot = {
        let mut log = shared.requests.lock().expect("request log lock poisoned");
        log.push(RequestRecord {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            status: 0,
            body_bytes: bytes.len(),
        });
        log.len() - 1
    };
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if let Some(entry) = shared
        .requests
        .lock()
        .expect("request log lock poisoned")
        .get_mut(slot)
    {
        entry.status = response.status().as_u16();
    }
    response
}

fn invalid_token() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"status": {
            "code": 401,
            "sub_code": "invalid_token",
            "message": "Invalid, missing or expired token"
        }})),
    )
        .into_response()
}

async fn graphql_handler(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let query = request["query"].as_str().unwrap_or("");
    let operation_name = request["operationName"].as_str();
    let variables = request.get("variables").cloned().unwrap_or(Value::Null);
    let mut log = QueryRecord {
        operation_name: operation_name.map(str::to_owned),
        root_fields: graphql::root_fields(query, operation_name),
        variables: variables.clone(),
        status: 0,
        had_errors: false,
    };
    let auth_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let auth = shared
        .tokens
        .lock()
        .expect("token lock poisoned")
        .authorize(auth_header, params.get("access_token").map(String::as_str));
    let (status, body) = match auth {
        Err(AuthError::Missing | AuthError::Bearer | AuthError::Unknown | AuthError::Expired) => {
            log.status = 401;
            shared
                .queries
                .lock()
                .expect("query log lock poisoned")
                .push(log);
            return invalid_token();
        }
        Ok(()) if !request.is_object() || query.is_empty() => (
            StatusCode::BAD_REQUEST,
            json!({"errors": [{"message": "Expected a JSON body with a \"query\" string."}]}),
        ),
        Ok(()) => {
            let request = graphql::Request {
                query,
                operation_name,
                variables: &variables,
            };
            let tracking = shared.tracker().active();
            let result = if tracking {
                execute_tracked(&shared, &request).await
            } else {
                graphql::execute(&shared.service, &shared.store(), &request, None)
            };
            match result {
                Ok(bytes) => {
                    // Field errors (HTTP 200 with data) are rare; a cheap byte scan spots them.
                    log.had_errors = bytes.starts_with(b"{\"errors\"");
                    log.status = 200;
                    shared
                        .queries
                        .lock()
                        .expect("query log lock poisoned")
                        .push(log);
                    return (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "application/json")],
                        bytes,
                    )
                        .into_response();
                }
                Err(body) => (StatusCode::OK, body),
            }
        }
    };
    log.status = status.as_u16();
    log.had_errors = body.get("errors").is_some();
    shared
        .queries
        .lock()
        .expect("query log lock poisoned")
        .push(log);
    (status, Json(body)).into_response()
}

/// Runs a request while drift or out-of-order serving is on: a list page request may first
/// be held (out of order), then requests are computed one at a time, each computed list
/// page is logged, and the drift steps it makes due run before the next computation.
async fn execute_tracked(
    shared: &Shared,
    request: &graphql::Request<'_>,
) -> Result<Vec<u8>, Value> {
    let document = graphql::parse(&shared.service, request.query)?;
    let list = graphql::list_request(&document, shared.service.per_page_cap, request)
        .filter(|l| !l.narrowed);
    // The scan a computed page belongs to is named from the request as posted (the same
    // name its out-of-order hold waits under), not from the arguments after coercion.
    let scan_key = list.as_ref().map(graphql::ListRequest::scan_key);
    let mut _in_flight = None;
    if let (Some(list), Some(key)) = (&list, &scan_key) {
        let fallback = {
            let mut tracker = shared.tracker();
            tracker.arrive(list);
            tracker.enter(key, list.page);
            tracker.out_of_order()
        };
        // Earlier pages waiting on their fallback now wait for this one instead.
        shared.page_computed.notify_waiters();
        // Leaves the in-flight set however this request ends (a client may hang up).
        _in_flight = Some(InFlight {
            shared,
            key: key.clone(),
            page: list.page,
        });
        if let Some(fallback) = fallback {
            hold_for_next_page(shared, list, key, fallback).await;
        }
    }
    let _one_at_a_time = shared.compute_gate.lock().await;
    let observer = graphql::PageObserver::default();
    let result = graphql::execute_parsed(
        &shared.service,
        &shared.store(),
        &document,
        request,
        Some(&observer),
    );
    let computed = observer.into_inner().expect("page observer lock poisoned");
    let clock = shared.clock();
    {
        let mut tracker = shared.tracker();
        for page in computed.iter().filter(|p| !p.narrowed) {
            let asked = list
                .as_ref()
                .is_some_and(|l| (l.list, l.page) == (page.list, page.page));
            let key = match &scan_key {
                Some(key) if asked => key.clone(),
                _ => graphql::ListRequest::from(page).scan_key(),
            };
            for step in tracker.record(page, key) {
                tracker.apply(&mut shared.store_mut(), step, page, clock);
            }
        }
    }
    shared.page_computed.notify_waiters();
    result
}

/// A list page request between its arrival and its end, for out-of-order holds.
struct InFlight<'a> {
    shared: &'a Shared,
    key: String,
    page: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.shared.tracker().leave(&self.key, self.page);
        self.shared.page_computed.notify_waiters();
    }
}

/// Out-of-order serving: holds page `p` of scan `key` until page `p + 1` has been computed.
/// Page 1 and the last page (per the list now) are never held. While a later page of the
/// scan is in flight, `p` waits for it (it computes in turn, releasing `p`); the latest page
/// in flight waits at most `fallback` from its arrival, so a batch costs one fallback and a
/// sequential reader is slowed, never stuck.
async fn hold_for_next_page(
    shared: &Shared,
    list: &graphql::ListRequest,
    key: &str,
    fallback: Duration,
) {
    if list.page <= 1 {
        return;
    }
    let deadline = tokio::time::Instant::now() + fallback;
    loop {
        // Registered before the condition is checked, so a page computed in between still
        // wakes this wait.
        let notified = shared.page_computed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let total_pages = {
            let total = graphql::list_len(&shared.store(), list.list, &list.args) as u64;
            total.div_ceil(u64::from(list.per_page.max(1)))
        };
        if list.page >= total_pages {
            return;
        }
        let later_in_flight = {
            let tracker = shared.tracker();
            if tracker.computed(key, list.page + 1) {
                return;
            }
            tracker.in_flight_after(key, list.page)
        };
        if later_in_flight {
            notified.await;
        } else if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return;
        }
    }
}

/// The client credentials from HTTP Basic, else from the form (Doorkeeper accepts both).
fn client_credentials(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Option<(String, String)> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(id, secret)| (id.to_owned(), secret.to_owned()))
        });
    basic.or_else(|| {
        Some((
            form.get("client_id")?.clone(),
            form.get("client_secret")?.clone(),
        ))
    })
}

async fn token_handler(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = url_form(&body);
    let client = client_credentials(&headers, &form);
    let now = shared.clock();
    let (status, body) = shared
        .tokens
        .lock()
        .expect("token lock poisoned")
        .grant(client, &form, now);
    (status, Json(body)).into_response()
}

/// Decodes an `application/x-www-form-urlencoded` body.
fn url_form(body: &[u8]) -> HashMap<String, String> {
    axum::extract::Query::<HashMap<String, String>>::try_from_uri(
        &format!("/?{}", String::from_utf8_lossy(body))
            .parse()
            .unwrap_or_default(),
    )
    .map(|q| q.0)
    .unwrap_or_default()
}

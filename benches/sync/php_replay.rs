//! A model of the 2016 PHP connector's traffic, replayed against the fakes so its cost can
//! be compared with ciosync's on the same data and latency (issue 5).
//!
//! Not a product feature: it only reproduces the request pattern, strictly sequentially,
//! with the closest GraphQL and Track v1 equivalents of each PHP round trip:
//! - people pages (`people`, the same page size ciosync uses, which favours the PHP);
//! - per person, their applications (`personApplications(id)`);
//! - per application past `applied`, three round trips: the PHP added its bot as EP manager
//!   (`person(id)`), read the application with its meta (`getApplication(id)`), and removed
//!   itself again (`person(id)`);
//! - a v1 `PUT /api/v1/customers/{id}` per changed person (on a first run: everyone);
//! - a v1 `POST /api/v1/customers/{id}/events` per event, one per step up to the current
//!   status (the PHP step replay: open/applied 1, matched/accepted 2, approved 3,
//!   realized/finished 4, completed 5; a side status such as withdrawn is one event).

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Map, Value};

/// What the replay did.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    pub wall: Duration,
    pub people: u64,
    pub applications: u64,
    /// Applications past `applied` (three extra GIS round trips each).
    pub applications_past_applied: u64,
    pub gis_requests: u64,
    pub cio_requests: u64,
    pub cio_bytes_sent: u64,
    pub events: u64,
}

/// Where and how to talk to the fakes.
pub struct Target {
    pub graphql_url: String,
    pub gis_token: String,
    pub cio_url: String,
    pub site_id: String,
    pub api_key: String,
    pub home_lcs: Vec<u64>,
    pub page_size: u32,
}

/// People pages are read with ciosync's own query: the PHP connector read the same fields.
use ciosync::gis::PEOPLE_QUERY;

const PERSON_APPLICATIONS_QUERY: &str =
    "query PersonApplications($id: ID, $page: Int, $perPage: Int) {
  personApplications(id: $id, page: $page, per_page: $perPage) {
    paging { total_pages }
    data {
      id status created_at date_matched date_approved date_realized experience_end_date
      opportunity { id programme { short_name } }
    }
  }
}";

/// Stands in for "add the bot as EP manager" and "remove it again" (GIS is read-only here).
const PERSON_QUERY: &str = "query Person($id: ID!) { person(id: $id) { id } }";

const APPLICATION_QUERY: &str = "query Application($id: ID) {
  getApplication(id: $id) {
    id status
    meta { date_matched date_approved date_realized date_completed date_withdrawn date_rejected }
  }
}";

/// How many steps the PHP replayed for a status (0 for one it did not know).
fn php_steps(status: &str) -> u64 {
    match status {
        "open" | "applied" => 1,
        "matched" | "accepted" | "approved_tn_manager" | "approved_ep_manager" => 2,
        "approved" => 3,
        "realized" | "remote_realized" | "finished" => 4,
        "completed" => 5,
        "withdrawn"
        | "rejected"
        | "declined"
        | "acceptance_broken"
        | "approval_broken"
        | "realization_broken"
        | "remote_realization_broken" => 1,
        _ => 0,
    }
}

/// Whether the PHP needed the application's meta (and so the EP-manager dance).
fn past_applied(status: &str) -> bool {
    !matches!(status, "open" | "applied")
}

const STEP_NAMES: [&str; 5] = ["applied", "accepted", "approved", "realized", "completed"];

struct Client {
    http: reqwest::Client,
    target: Target,
    cio_auth: String,
    report: ReplayReport,
}

impl Client {
    async fn graphql(&mut self, query: &str, variables: Value) -> Value {
        let body = serde_json::to_vec(&json!({ "query": query, "variables": variables }))
            .expect("a query always serializes");
        self.report.gis_requests += 1;
        let response = self
            .http
            .post(&self.target.graphql_url)
            .header("Authorization", &self.target.gis_token)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the fake GIS answers");
        let value: Value = response.json().await.expect("the fake GIS answers JSON");
        assert!(
            value.get("errors").is_none(),
            "replay query refused by the fake GIS: {value}"
        );
        value.get("data").cloned().unwrap_or(Value::Null)
    }

    async fn cio(&mut self, method: reqwest::Method, path: &str, body: Value) {
        let bytes = serde_json::to_vec(&body).expect("a body always serializes");
        self.report.cio_requests += 1;
        self.report.cio_bytes_sent += bytes.len() as u64;
        let response = self
            .http
            .request(method, format!("{}{path}", self.target.cio_url))
            .header("Authorization", &self.cio_auth)
            .header("Content-Type", "application/json")
            .body(bytes)
            .send()
            .await
            .expect("the fake customer.io answers");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "replay write refused by the fake customer.io: {status} {text}"
        );
    }
}

/// Replays one first run of the PHP connector (every person changed, every event new).
pub fn replay_first_run(target: Target) -> ReplayReport {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds");
    runtime.block_on(run(target))
}

async fn run(target: Target) -> ReplayReport {
    let cio_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", target.site_id, target.api_key))
    );
    let mut client = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client builds"),
        target,
        cio_auth,
        report: ReplayReport::default(),
    };
    let started = Instant::now();
    let filters = json!({ "home_committee": client.target.home_lcs });
    let per_page = client.target.page_size;
    let mut page = 1u64;
    loop {
        let data = client
            .graphql(
                PEOPLE_QUERY,
                json!({ "filters": filters, "page": page, "perPage": per_page }),
            )
            .await;
        let people = data["people"]["data"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let total_pages = data["people"]["paging"]["total_pages"]
            .as_u64()
            .unwrap_or(0);
        for person in &people {
            sync_person(&mut client, person).await;
        }
        if people.is_empty() || page >= total_pages {
            break;
        }
        page += 1;
    }
    client.report.wall = started.elapsed();
    client.report
}

/// One person as the PHP handled them: applications, meta reads, profile, then events.
async fn sync_person(client: &mut Client, person: &Value) {
    let id = person["id"].as_str().unwrap_or_default().to_owned();
    client.report.people += 1;
    let mut applications = Vec::new();
    let mut page = 1u64;
    loop {
        let data = client
            .graphql(
                PERSON_APPLICATIONS_QUERY,
                json!({ "id": id, "page": page, "perPage": 100 }),
            )
            .await;
        let list = &data["personApplications"];
        let items = list["data"].as_array().cloned().unwrap_or_default();
        let total_pages = list["paging"]["total_pages"].as_u64().unwrap_or(0);
        let empty = items.is_empty();
        applications.extend(items);
        if empty || page >= total_pages {
            break;
        }
        page += 1;
    }
    let mut events = Vec::new();
    for app in &applications {
        client.report.applications += 1;
        let app_id = app["id"].as_str().unwrap_or_default().to_owned();
        let status = app["status"].as_str().unwrap_or_default().to_owned();
        if past_applied(&status) {
            client.report.applications_past_applied += 1;
            client.graphql(PERSON_QUERY, json!({ "id": id })).await;
            client
                .graphql(APPLICATION_QUERY, json!({ "id": app_id }))
                .await;
            client.graphql(PERSON_QUERY, json!({ "id": id })).await;
        }
        let programme = app["opportunity"]["programme"]["short_name"]
            .as_str()
            .unwrap_or("GCDP")
            .to_owned();
        let steps = php_steps(&status);
        let side = !matches!(
            status.as_str(),
            "open"
                | "applied"
                | "matched"
                | "accepted"
                | "approved_tn_manager"
                | "approved_ep_manager"
                | "approved"
                | "realized"
                | "remote_realized"
                | "finished"
                | "completed"
        );
        for step in 0..steps {
            let name = if side {
                format!("{programme}{status}")
            } else {
                format!("{programme}{}", STEP_NAMES[step as usize])
            };
            events.push((name, app["opportunity"]["id"].clone()));
        }
    }
    // The profile first (addUser / EditUser with every mapped field), then the events.
    let mut attributes = Map::new();
    for field in [
        "email",
        "first_name",
        "last_name",
        "full_name",
        "dob",
        "interviewed",
        "profile_photo",
        "status",
        "cv_url",
        "nps_score",
    ] {
        attributes.insert(field.to_owned(), person[field].clone());
    }
    attributes.insert(
        "created_at".to_owned(),
        json!(chrono::DateTime::parse_from_rfc3339(
            person["created_at"].as_str().unwrap_or_default()
        )
        .map(|t| t.timestamp())
        .unwrap_or(0)),
    );
    attributes.insert("home_lc".to_owned(), person["home_lc"]["name"].clone());
    attributes.insert("home_mc".to_owned(), person["home_mc"]["name"].clone());
    client
        .cio(
            reqwest::Method::PUT,
            &format!("/api/v1/customers/{id}"),
            Value::Object(attributes),
        )
        .await;
    for (name, oid) in events {
        client.report.events += 1;
        client
            .cio(
                reqwest::Method::POST,
                &format!("/api/v1/customers/{id}/events"),
                json!({ "name": name, "data": { "oid": oid } }),
            )
            .await;
    }
}

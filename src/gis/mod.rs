//! The GIS GraphQL client (SPEC 3): raw-token auth (static or OAuth refresh with rotation),
//! bulk paged reads of people and applications with de-duplication by id, lenient decoding.
//!
//! Read-only by construction: the only documents it sends are the `query` constants below.
//! Knows nothing about customer.io, state or planning; rotated refresh tokens are persisted
//! through a [`TokenStore`] the caller provides.
//!
//! OAuth (SPEC 2, 3): every refresh happens under the store's exclusive refresh lock, which
//! every process sharing the store takes: re-read the persisted tokens under it, refresh,
//! persist, release. A process whose access token another process replaced uses the new
//! one instead of refreshing again, so no refresh token is presented twice.

mod current_person;
pub mod decode;
pub mod schema_check;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::stream::{self, BoxStream, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;

use crate::config::{GisAuth, GisConfig, OAuthConfig, Secret};
use crate::http::{self, Counters, Failure, RetryPolicy};
use crate::model::{Application, ApplicationId, Person, PersonId};

pub use current_person::{CurrentPerson, Office, CURRENT_PERSON_QUERY};

/// People of the configured LCs (or by id), one page.
pub const PEOPLE_QUERY: &str = "query People($filters: PeopleFilter, $page: Int, $perPage: Int) {
  people(filters: $filters, page: $page, per_page: $perPage) {
    paging { current_page total_pages total_items }
    data {
      id email first_name last_name full_name dob created_at updated_at interviewed
      profile_photo status cv_url nps_score
      permissions { can_apply }
      home_lc { id name }
      home_mc { name }
    }
  }
}";

/// Applications of the people of the configured LCs (or of one person), one page.
pub const APPLICATIONS_QUERY: &str =
    "query Applications($filters: ApplicationFilter, $page: Int, $perPage: Int) {
  allOpportunityApplication(filters: $filters, page: $page, per_page: $perPage) {
    paging { current_page total_pages total_items }
    data {
      id status created_at updated_at date_matched an_signed_at date_approved date_realized
      experience_end_date matched_or_rejected_at date_approval_broken date_realisation_broke
      meta {
        date_matched date_approved date_realized remote_realized_at date_completed
        date_withdrawn date_rejected date_approval_broken date_realisation_broke
        date_remote_realization_broken_at
      }
      person { id }
      opportunity {
        id title
        programme { short_name short_name_display }
        programmes { short_name short_name_display }
      }
    }
  }
}";

/// How many pages are read at once.
const PAGE_CONCURRENCY: usize = 4;
/// How many ids one `people(filters: {ids})` query asks for.
const IDS_PER_QUERY: usize = 200;

/// Why a GIS read failed.
#[derive(Debug, thiserror::Error)]
pub enum GisError {
    /// GIS (or its token endpoint) refused the credentials or the permission.
    #[error("GIS refused the credentials: {0}")]
    Auth(String),
    /// GIS could not be reached, or kept failing, or answered something unusable.
    #[error("GIS is unavailable: {0}")]
    Unavailable(String),
    /// The run's deadline arrived while waiting on GIS.
    #[error("GIS read stopped at the run's deadline: {0}")]
    Deadline(String),
    /// A rotated refresh token could not be persisted; it must not be used unsaved.
    #[error("cannot persist the rotated GIS refresh token: {0}")]
    Persist(String),
}

/// How often a process waiting for another one's OAuth refresh tries the lock again.
const REFRESH_LOCK_POLL: Duration = Duration::from_millis(20);
/// How many times one request may get a 401 and renew its access token (each renewal
/// caused by another process's refresh, or the first expiry) before it gives up.
const MAX_RENEWALS: u32 = 8;

/// The OAuth tokens a [`TokenStore`] holds now.
pub struct StoredTokens {
    /// The refresh token to present next: the persisted (rotated) one, or the seed.
    pub refresh: Secret,
    /// Whether `refresh` is the configured seed (nothing rotated is persisted for it yet).
    pub refresh_is_seed: bool,
    /// The access token persisted with `refresh`, until it expires.
    pub access: Option<Secret>,
    /// Whether `access` expires within a margin: a process starting out refreshes rather than
    /// start with it, but one that got a 401 takes it (another process just refreshed, and
    /// refreshing again would revoke that process's token).
    pub access_expiring: bool,
}

/// Proof that this process holds a [`TokenStore`]'s refresh lock; dropping it releases it.
pub type RefreshLock = Box<dyn std::any::Any + Send>;

/// Where OAuth tokens live between runs (SPEC 2: the rotated refresh token is persisted in
/// `data_dir` before the new access token is used), shared by every process.
pub trait TokenStore: Send + Sync {
    /// The tokens persisted now.
    ///
    /// # Errors
    /// A message when the store cannot be read.
    fn load(&self) -> Result<StoredTokens, String>;
    /// Persists a rotated refresh token (and the access token issued with it).
    ///
    /// # Errors
    /// A message when the store cannot be written; the new tokens must then not be used.
    fn save(
        &self,
        refresh: &Secret,
        access: &Secret,
        expires_in: Option<u64>,
    ) -> Result<(), String>;
    /// Takes the exclusive lock that serializes refreshes across processes, if it is free:
    /// `Ok(None)` while another process holds it (the caller waits and tries again).
    ///
    /// # Errors
    /// A message when the lock cannot be created or taken.
    fn try_lock(&self) -> Result<Option<RefreshLock>, String>;
}

/// People and applications read in one run, decoded, de-duplicated, with what was skipped.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub people: Vec<Person>,
    pub applications: Vec<Application>,
    /// Skipped records per reason.
    pub skipped: BTreeMap<String, u64>,
    /// People looked up by id whom GIS did not return at all, in scope or not: GIS no
    /// longer has them (or no longer shows them to this credential).
    pub absent: BTreeSet<PersonId>,
}

/// What a lookup of people by id found.
#[derive(Debug, Default)]
pub struct ById {
    /// Those still in the configured LCs.
    pub in_scope: Vec<Person>,
    /// Those GIS did not return at all.
    pub absent: BTreeSet<PersonId>,
}

enum Auth {
    Static(Secret),
    OAuth {
        config: OAuthConfig,
        store: Arc<dyn TokenStore>,
        current: Mutex<CurrentToken>,
        /// How long to wait for another process's refresh: as long as one can take.
        lock_wait: Duration,
    },
}

/// The OAuth access token this client uses now.
#[derive(Default)]
struct CurrentToken {
    access: Option<Secret>,
    /// The refresh token persisted with `access`: while the store still holds it, no other
    /// process has refreshed since.
    refresh: Option<Secret>,
    /// Bumped at every change, so concurrent 401s on one token renew it once.
    generation: u64,
}

impl CurrentToken {
    fn install(&mut self, access: Secret, refresh: Secret) {
        self.access = Some(access);
        self.refresh = Some(refresh);
        self.generation += 1;
    }
}

/// What renewing the access token after a 401 did.
enum Renewed {
    /// Took a newer token another request or process obtained.
    Adopted,
    /// Refreshed it at the token endpoint.
    Refreshed,
    /// Nothing: GIS refused a token this request's own refresh had just obtained, and no
    /// other process has refreshed since, so a new one would fare no better.
    Refused,
}

/// A GIS client for one run.
pub struct GisClient {
    http: reqwest::Client,
    endpoint: String,
    home_lcs: Vec<u64>,
    page_size: u32,
    auth: Auth,
    policy: RetryPolicy,
    deadline: Option<Instant>,
    /// Requests, retries and bytes sent, for the run summary.
    pub counters: Arc<Counters>,
    token_refreshes: AtomicU64,
}

impl GisClient {
    /// A client for `config`; OAuth tokens go through `store`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(
        config: &GisConfig,
        store: Option<Arc<dyn TokenStore>>,
        policy: RetryPolicy,
        deadline: Option<Instant>,
    ) -> Result<GisClient, GisError> {
        let http = http::client(config.request_timeout)
            .map_err(|e| GisError::Unavailable(format!("cannot build the HTTP client: {e}")))?;
        let auth = match (&config.auth, store) {
            (GisAuth::Token(token), _) => Auth::Static(token.clone()),
            (GisAuth::OAuth(oauth), Some(store)) => Auth::OAuth {
                config: oauth.clone(),
                store,
                current: Mutex::new(CurrentToken::default()),
                // A refresh holds the lock through its retries: every attempt may time out
                // and be followed by the longest backoff.
                lock_wait: (config.request_timeout + policy.cap) * policy.max_attempts,
            },
            (GisAuth::OAuth(_), None) => {
                return Err(GisError::Persist("no token store for OAuth".to_owned()))
            }
        };
        Ok(GisClient {
            http,
            endpoint: config.endpoint.clone(),
            home_lcs: config.home_lcs.clone(),
            page_size: config.page_size.max(1),
            auth,
            policy,
            deadline,
            counters: Arc::new(Counters::default()),
            token_refreshes: AtomicU64::new(0),
        })
    }

    /// How many OAuth refreshes this client made.
    pub fn token_refreshes(&self) -> u64 {
        self.token_refreshes.load(Ordering::Relaxed)
    }

    /// `currentPerson`: proves the credential works, and says whose it is (home LC, current
    /// offices).
    ///
    /// # Errors
    /// [`GisError`] as for any query.
    pub async fn current_person(&self) -> Result<CurrentPerson, GisError> {
        let data = self
            .query(CURRENT_PERSON_QUERY, json!({}), "currentPerson")
            .await?;
        CurrentPerson::decode(&data)
            .ok_or_else(|| GisError::Unavailable("currentPerson answered without an id".to_owned()))
    }

    /// Specific people by id who are still in the configured LCs, without their
    /// applications, and the ids GIS did not return at all: to confirm who really left when
    /// a full read did not see them (a record can move between pages mid-scan, SPEC 3), and
    /// who GIS no longer has (SPEC 8.3).
    ///
    /// # Errors
    /// [`GisError`] when a page cannot be read after retries.
    pub async fn read_people_in_scope_by_id(
        &self,
        ids: &BTreeSet<PersonId>,
        skipped: &mut BTreeMap<String, u64>,
    ) -> Result<ById, GisError> {
        let mut people = Vec::new();
        let mut absent = ids.clone();
        let ids: Vec<PersonId> = ids.iter().copied().collect();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let ids: Vec<String> = chunk.iter().map(u64::to_string).collect();
            let found = self
                .read_pages::<Person>(json!({ "ids": ids }), None, skipped)
                .await?;
            for person in found {
                absent.remove(&person.id);
                if self.in_scope(&person) {
                    people.push(person);
                }
            }
        }
        Ok(ById {
            in_scope: people,
            absent,
        })
    }

    /// One person by id, in scope or not, and all their applications (`explain`, SPEC 8.1):
    /// the same queries as a run's by-id reads. `None` when GIS does not have them; the
    /// applications are read either way (GIS may still list some for an id it no longer
    /// returns as a person).
    ///
    /// # Errors
    /// [`GisError`] when a page cannot be read after retries.
    pub async fn read_person_with_applications(
        &self,
        person_id: PersonId,
        skipped: &mut BTreeMap<String, u64>,
    ) -> Result<(Option<Person>, Vec<Application>), GisError> {
        let person = self
            .read_pages::<Person>(json!({ "ids": [person_id.to_string()] }), None, skipped)
            .await?
            .into_iter()
            .find(|person| person.id == person_id);
        let applications = self
            .read_pages::<Application>(json!({ "person_id": person_id }), None, skipped)
            .await?;
        Ok((person, applications))
    }

    /// Whether a person's home LC is one of the configured ones (`gis.home_lcs`).
    pub fn in_scope(&self, person: &Person) -> bool {
        person
            .home_lc_id
            .is_some_and(|lc| self.home_lcs.contains(&lc))
    }

    /// An incremental read (SPEC 5.4): people and applications changed since `since`
    /// (newest first, paging stops at the first page older than `since`); the people those
    /// changed applications belong to; the `pending` people by id with all their
    /// applications; and all applications of people coming back into scope (`out_of_scope`
    /// ids that are read again). People outside the configured LCs are not returned.
    ///
    /// # Errors
    /// [`GisError`] when a page cannot be read after retries.
    pub async fn read_changed(
        &self,
        since: DateTime<Utc>,
        pending: &BTreeSet<PersonId>,
        out_of_scope: &BTreeSet<PersonId>,
    ) -> Result<Snapshot, GisError> {
        let mut skipped = BTreeMap::new();
        let mut people: BTreeMap<PersonId, Person> = self
            .read_pages::<Person>(self.people_filter(true), Some(since), &mut skipped)
            .await?
            .into_iter()
            .map(|p| (p.id, p))
            .collect();
        let mut applications: BTreeMap<ApplicationId, Application> = self
            .read_pages::<Application>(self.applications_filter(true), Some(since), &mut skipped)
            .await?
            .into_iter()
            .map(|a| (a.id, a))
            .collect();

        // The people behind changed applications, and the pending people, by id.
        let mut wanted: BTreeSet<PersonId> =
            applications.values().filter_map(|a| a.person_id).collect();
        wanted.extend(pending.iter().copied());
        wanted.retain(|id| !people.contains_key(id));
        // Only people still in the configured LCs count as read.
        let by_id = self
            .read_people_in_scope_by_id(&wanted, &mut skipped)
            .await?;
        for person in by_id.in_scope {
            people.insert(person.id, person);
        }

        // All applications of pending people and of people coming back into scope.
        let whole: BTreeSet<PersonId> = people
            .keys()
            .copied()
            .filter(|id| pending.contains(id) || out_of_scope.contains(id))
            .collect();
        for person_id in whole {
            let found = self
                .read_pages::<Application>(json!({ "person_id": person_id }), None, &mut skipped)
                .await?;
            for application in found {
                applications.entry(application.id).or_insert(application);
            }
        }
        Ok(Snapshot {
            people: people.into_values().collect(),
            applications: applications.into_values().collect(),
            skipped,
            absent: by_id.absent,
        })
    }

    /// A full scan of one list (SPEC 3): every page, page 1 first and then the rest
    /// [`PAGE_CONCURRENCY`] at a time, each page's records that no earlier page delivered
    /// sent to `deliver` as they are decoded (so a first sync never holds the whole list).
    ///
    /// A pass is complete when every page reported the same `paging.total_items` and the
    /// pass saw at least that many distinct records (skipped ones included). Records move
    /// between pages while the list changes, and a page served after a later one loses the
    /// records at its edge; so an incomplete pass is followed by one re-read of the list,
    /// delivering only what no pass delivered yet. The report says whether that re-read was
    /// complete; if not, the caller must not count this as a full read. `seen` holds the
    /// ids delivered so far (the caller may add ids of its own); stopping early (the
    /// receiver dropped) reports an incomplete scan.
    ///
    /// # Errors
    /// [`GisError`] when a page cannot be read after retries, or at the deadline.
    pub async fn scan<T: Record>(
        &self,
        list: List,
        seen: &mut HashSet<u64>,
        deliver: mpsc::Sender<Vec<T>>,
    ) -> Result<ScanReport, GisError> {
        let deliver = &deliver;
        let mut report = ScanReport::default();
        let first = self
            .scan_pass(list, seen, None, deliver, &mut report)
            .await?;
        report.complete = first;
        if !first && !deliver.is_closed() {
            tracing::info!(
                list = list.root(),
                "The list changed while it was read; reading it once more for the records that moved."
            );
            report.reread = true;
            let mut this_pass = HashSet::new();
            report.complete = self
                .scan_pass(list, seen, Some(&mut this_pass), deliver, &mut report)
                .await?;
        }
        Ok(report)
    }

    /// One pass over a list; `Ok(true)` when it was complete (see [`GisClient::scan`]).
    /// `this_pass` counts the distinct records of a re-read; on the first pass `seen` does.
    async fn scan_pass<T: Record>(
        &self,
        list: List,
        seen: &mut HashSet<u64>,
        mut this_pass: Option<&mut HashSet<u64>>,
        deliver: &mpsc::Sender<Vec<T>>,
        report: &mut ScanReport,
    ) -> Result<bool, GisError> {
        let root = list.root();
        let filters = self.lc_filter(list.lc_key(), false);
        let mut totals = Totals::default();
        let mut distinct = 0u64;
        let mut take = |page: PageData, report: &mut ScanReport| {
            totals.observe(page.total_items);
            report.pages += 1;
            let mut fresh = Vec::new();
            for raw in &page.data {
                let Some(record) = decode_or_count::<T>(raw, &mut report.skipped) else {
                    // It is in GIS's count all the same.
                    distinct += 1;
                    continue;
                };
                let id = record.id();
                // A record seen twice in one pass moved between pages; a re-read sees again
                // what the first pass delivered, which is no duplicate.
                let new_in_pass = match this_pass.as_deref_mut() {
                    Some(pass) => pass.insert(id),
                    None => !seen.contains(&id),
                };
                if new_in_pass {
                    distinct += 1;
                } else {
                    report.duplicates += 1;
                }
                // The first copy is the one planned (it may be sent already); a copy that
                // changed since carries a newer `updated_at`, so the next run reads it.
                if seen.insert(id) {
                    fresh.push(record);
                }
            }
            report.delivered += fresh.len() as u64;
            fresh
        };
        let mut pages = self.pages(list, &filters, PAGE_CONCURRENCY);
        while let Some(page) = pages.next().await? {
            let fresh = take(page, report);
            if deliver.send(fresh).await.is_err() {
                return Ok(false);
            }
        }
        let complete = totals.complete(distinct);
        if !complete {
            tracing::info!(
                list = root,
                distinct,
                totals = ?totals.seen,
                "GIS's count of the list changed while it was read."
            );
        }
        Ok(complete)
    }

    fn people_filter(&self, newest_first: bool) -> Value {
        self.lc_filter(List::People.lc_key(), newest_first)
    }

    fn applications_filter(&self, newest_first: bool) -> Value {
        self.lc_filter(List::Applications.lc_key(), newest_first)
    }

    /// `{<lc_key>: home_lcs}`, newest first by `updated_at` when asked.
    fn lc_filter(&self, lc_key: &str, newest_first: bool) -> Value {
        let mut filter = json!({ lc_key: self.home_lcs });
        if newest_first {
            filter["sort"] = json!("updated_at");
            filter["sort_direction"] = json!("desc");
        }
        filter
    }

    /// Reads the pages of a list query and decodes each page as it arrives (so at most a
    /// few pages of raw JSON are held at once).
    ///
    /// Without `since`: every page, as [`GisClient::pages`] reads them. With `since` (records
    /// sorted newest first): one page at a time, stopping after the first page holding a
    /// record updated before `since`.
    ///
    /// Records are de-duplicated by id, keeping the first copy, as [`GisClient::scan`] does.
    async fn read_pages<T: Record>(
        &self,
        filters: Value,
        since: Option<DateTime<Utc>>,
        skipped: &mut BTreeMap<String, u64>,
    ) -> Result<Vec<T>, GisError> {
        let mut sink = PageSink::default();
        // Pages past `since` would be wasted requests: ask for one page at a time.
        let concurrency = if since.is_some() { 1 } else { PAGE_CONCURRENCY };
        let mut pages = self.pages(T::LIST, &filters, concurrency);
        while let Some(page) = pages.next().await? {
            let oldest = sink.take(&page, skipped);
            if since.is_some_and(|since| oldest < since) {
                break;
            }
        }
        let duplicates = sink.seen - sink.records.len();
        if duplicates > 0 {
            let root = T::LIST.root();
            tracing::info!(
                root,
                duplicates,
                "GIS returned some records twice while paging."
            );
            *skipped.entry(format!("{root}_duplicate")).or_default() += duplicates as u64;
        }
        Ok(sink.records.into_values().collect())
    }

    /// The pages of one list query, in order (see [`Pages`]).
    fn pages<'a>(&'a self, list: List, filters: &'a Value, concurrency: usize) -> Pages<'a> {
        Pages {
            client: self,
            list,
            filters,
            concurrency,
            total_pages: 0,
            next: 1,
            in_flight: None,
            finished: false,
        }
    }

    fn check_deadline(&self, root: &str) -> Result<(), GisError> {
        match self.deadline {
            Some(deadline) if Instant::now() >= deadline => {
                Err(GisError::Deadline(format!("reading `{root}`")))
            }
            _ => Ok(()),
        }
    }

    async fn page(
        &self,
        query: &str,
        root: &str,
        filters: &Value,
        page: u64,
    ) -> Result<PageData, GisError> {
        let variables = json!({ "filters": filters, "page": page, "perPage": self.page_size });
        tracing::debug!(root, page, "Reading a GIS page.");
        let mut data = self.query(query, variables, root).await?;
        let list = data.get_mut(root).filter(|v| !v.is_null()).ok_or_else(|| {
            GisError::Unavailable(format!("GIS answered no `{root}` for page {page}"))
        })?;
        // Pages are large: move the records out rather than copying them.
        let records = match list.get_mut("data").map(Value::take) {
            Some(Value::Array(items)) => items,
            Some(Value::Null) | None => Vec::new(),
            Some(_) => {
                return Err(GisError::Unavailable(format!(
                    "`{root}.data` is not a list on page {page}"
                )))
            }
        };
        let paging_number = |field: &str| {
            list.pointer(&format!("/paging/{field}"))
                .and_then(|v| decode::string(Some(v)))
                .and_then(|s| s.parse::<u64>().ok())
        };
        Ok(PageData {
            data: records,
            total_pages: paging_number("total_pages").unwrap_or(0),
            total_items: paging_number("total_items"),
        })
    }

    /// Runs one query: retries transient failures; on a 401 with OAuth, refreshes once and
    /// retries; a second 401 is an authentication failure.
    async fn query(&self, query: &str, variables: Value, what: &str) -> Result<Value, GisError> {
        let body = json!({ "query": query, "variables": variables });
        let mut graphql_failures = 0u32;
        loop {
            let reply = self.post_authorized(&body, what).await?;
            match reply.status {
                200..=299 => {}
                403 => {
                    return Err(GisError::Auth(format!(
                        "HTTP 403 on {what}: {}",
                        reply.body_excerpt(200)
                    )))
                }
                status => {
                    return Err(GisError::Unavailable(format!(
                        "HTTP {status} on {what}: {}",
                        reply.body_excerpt(200)
                    )))
                }
            }
            let mut parsed: Option<Value> = decode::response(&reply.body);
            let usable = parsed
                .as_ref()
                .and_then(|v| v.get("data"))
                // A null root field beside `errors` is GIS's resolver failing: a hiccup to
                // retry like a 502, not a fatal answer.
                .is_some_and(|d| !d.is_null() && !d.get(what).is_some_and(Value::is_null));
            let data = if usable {
                parsed
                    .as_mut()
                    .and_then(|v| v.get_mut("data"))
                    .map(Value::take)
            } else {
                None
            };
            match (data, &parsed) {
                (Some(data), _) => return Ok(data),
                (None, parsed) => {
                    // HTML with 200, a cut body, or `errors[]` with `data: null`: GIS had a bad moment.
                    graphql_failures += 1;
                    let message = parsed
                        .as_ref()
                        .and_then(|v| v.pointer("/errors/0/message"))
                        .and_then(Value::as_str)
                        .map_or_else(|| reply.body_excerpt(200), str::to_owned);
                    if graphql_failures >= self.policy.max_attempts {
                        return Err(GisError::Unavailable(format!(
                            "{what}: GIS answered: {message}"
                        )));
                    }
                    tracing::info!(request = what, error = %message, "GIS answered without data; retrying.");
                    tokio::time::sleep(self.policy.backoff(graphql_failures)).await;
                }
            }
        }
    }

    /// POSTs `body` with the access token, retrying transient failures; on a 401 with OAuth,
    /// renews the token (another process's newer one, or a refresh) and sends again; a 401
    /// that renewing cannot cure is an authentication failure (SPEC 3). Any other answer is
    /// returned for the caller to read.
    async fn post_authorized(&self, body: &Value, what: &str) -> Result<http::Reply, GisError> {
        // Whether the token in use came from this request's own refresh, and how many times
        // this request renewed its token.
        let mut refreshed = false;
        let mut renewals = 0u32;
        loop {
            let (token, generation) = self.access_token().await?;
            let reply = http::send_with_retry(
                || {
                    self.http
                        .post(&self.endpoint)
                        .header(reqwest::header::AUTHORIZATION, token.expose())
                        .json(body)
                },
                &self.policy,
                None,
                &self.counters,
                self.deadline,
                what,
            )
            .await
            .map_err(|f| match f {
                Failure::Deadline { .. } => GisError::Deadline(f.to_string()),
                Failure::Exhausted { .. } => GisError::Unavailable(format!("{what}: {f}")),
            })?;
            if reply.status != 401 {
                return Ok(reply);
            }
            renewals += 1;
            let renewed = if matches!(self.auth, Auth::Static(_)) || renewals > MAX_RENEWALS {
                Renewed::Refused
            } else {
                self.renew_after_401(&token, generation, refreshed).await?
            };
            match renewed {
                Renewed::Adopted => refreshed = false,
                Renewed::Refreshed => refreshed = true,
                Renewed::Refused => {
                    return Err(GisError::Auth(format!(
                        "HTTP 401 on {what}: {}",
                        reply.body_excerpt(200)
                    )))
                }
            }
        }
    }

    /// The access token to use now and its generation; with OAuth, the first call takes the
    /// persisted one while it is good, else refreshes.
    async fn access_token(&self) -> Result<(Secret, u64), GisError> {
        let (current, store) = match &self.auth {
            Auth::Static(token) => return Ok((token.clone(), 0)),
            Auth::OAuth { current, store, .. } => (current, store),
        };
        let mut current = current.lock().await;
        if current.access.is_none() {
            let stored = store.load().map_err(GisError::Persist)?;
            match stored.access {
                Some(access) if !stored.access_expiring => current.install(access, stored.refresh),
                _ => {
                    self.renew(&mut current, None, false).await?;
                }
            }
        }
        match &current.access {
            Some(token) => Ok((token.clone(), current.generation)),
            None => Err(GisError::Auth(
                "no GIS access token could be obtained".to_owned(),
            )),
        }
    }

    /// After GIS answered 401 to `failed` (of `generation`): takes the newer token another
    /// request of this process already obtained, else renews it (see [`GisClient::renew`]).
    /// `own_refresh` says `failed` came from this request's own refresh.
    async fn renew_after_401(
        &self,
        failed: &Secret,
        generation: u64,
        own_refresh: bool,
    ) -> Result<Renewed, GisError> {
        let Auth::OAuth { current, .. } = &self.auth else {
            return Ok(Renewed::Refused);
        };
        let mut current = current.lock().await;
        if current.generation != generation && current.access.is_some() {
            return Ok(Renewed::Adopted);
        }
        self.renew(&mut current, Some(failed), own_refresh).await
    }

    /// Under the store's refresh lock, with the tokens re-read there: takes the access token
    /// another process persisted (other than `failed`, the one GIS just refused; at first
    /// use, only one that is not expiring), else refreshes with the persisted refresh token
    /// and persists the new pair before installing it. Refuses (no refresh) when `failed`
    /// came from this request's own refresh and nobody has refreshed since: GIS rejects what
    /// the token endpoint just issued.
    async fn renew(
        &self,
        current: &mut CurrentToken,
        failed: Option<&Secret>,
        own_refresh: bool,
    ) -> Result<Renewed, GisError> {
        let Auth::OAuth {
            store, lock_wait, ..
        } = &self.auth
        else {
            return Ok(Renewed::Refused);
        };
        let _lock = self.lock_refreshes(store.as_ref(), *lock_wait).await?;
        let stored = store.load().map_err(GisError::Persist)?;
        let newer = stored.access.as_ref().filter(|access| match failed {
            Some(failed) => *access != failed,
            None => !stored.access_expiring,
        });
        if let Some(access) = newer {
            tracing::debug!("Using the GIS access token another process refreshed.");
            current.install(access.clone(), stored.refresh.clone());
            return Ok(Renewed::Adopted);
        }
        let refreshed_elsewhere = current.refresh.as_ref() != Some(&stored.refresh);
        if own_refresh && !refreshed_elsewhere {
            return Ok(Renewed::Refused);
        }
        self.refresh(current, stored).await
    }

    /// Waits for the store's refresh lock: while another process refreshes, at most
    /// `wait` (and not past the deadline).
    async fn lock_refreshes(
        &self,
        store: &dyn TokenStore,
        wait: Duration,
    ) -> Result<RefreshLock, GisError> {
        let started = Instant::now();
        let mut waiting = false;
        loop {
            if let Some(lock) = store.try_lock().map_err(GisError::Persist)? {
                return Ok(lock);
            }
            if started.elapsed() >= wait {
                return Err(GisError::Unavailable(format!(
                    "another ciosync process has been refreshing the GIS access token for \
                     over {} (it holds the OAuth refresh lock in data_dir); the token \
                     endpoint may be hanging",
                    humantime::format_duration(wait)
                )));
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(GisError::Deadline(
                    "waiting for another process's GIS token refresh".to_owned(),
                ));
            }
            if !waiting {
                waiting = true;
                tracing::debug!("Another process is refreshing the GIS access token; waiting.");
            }
            tokio::time::sleep(REFRESH_LOCK_POLL).await;
        }
    }

    /// Exchanges `stored.refresh` for a new pair (the caller holds the refresh lock),
    /// persists the rotated refresh token, then installs the new access token. An
    /// `invalid_grant` for a token another process rotated meanwhile (one that did not take
    /// the lock, e.g. an older ciosync) is not a credential failure: the tokens are re-read
    /// and the refresh tried once more.
    async fn refresh(
        &self,
        current: &mut CurrentToken,
        stored: StoredTokens,
    ) -> Result<Renewed, GisError> {
        let Auth::OAuth { config, store, .. } = &self.auth else {
            return Ok(Renewed::Refused);
        };
        let mut stored = stored;
        let mut retried = false;
        let (access, rotated, expires_in) = loop {
            match self.exchange(config, &stored).await {
                Ok(pair) => break pair,
                Err(Refusal::InvalidGrant(message)) if !retried => {
                    let again = store.load().map_err(GisError::Persist)?;
                    if again.refresh == stored.refresh {
                        return Err(GisError::Auth(message));
                    }
                    tracing::info!(
                        "The GIS refresh token was rotated by another process meanwhile; \
                         using the new one."
                    );
                    if let Some(access) = again.access.clone() {
                        current.install(access, again.refresh);
                        return Ok(Renewed::Adopted);
                    }
                    stored = again;
                    retried = true;
                }
                Err(Refusal::InvalidGrant(message)) => return Err(GisError::Auth(message)),
                Err(Refusal::Other(err)) => return Err(err),
            }
        };
        // Persist first: the old refresh token is revoked already, or will be once the new
        // access token is used, so losing the new one would lock us out until an operator
        // re-bootstraps.
        store
            .save(&rotated, &access, expires_in)
            .map_err(GisError::Persist)?;
        self.token_refreshes.fetch_add(1, Ordering::Relaxed);
        tracing::info!("GIS access token refreshed; rotated refresh token persisted.");
        current.install(access, rotated);
        Ok(Renewed::Refreshed)
    }

    /// One refresh grant at the token endpoint (retried on transient failures): the new
    /// access token, the rotated refresh token and `expires_in`.
    async fn exchange(
        &self,
        config: &OAuthConfig,
        stored: &StoredTokens,
    ) -> Result<(Secret, Secret, Option<u64>), Refusal> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", stored.refresh.expose()),
        ];
        let reply = http::send_with_retry(
            || {
                self.http
                    .post(&config.token_url)
                    .basic_auth(&config.client_id, Some(config.client_secret.expose()))
                    .form(&form)
            },
            &self.policy,
            None,
            &self.counters,
            self.deadline,
            "oauth token refresh",
        )
        .await
        .map_err(|f| {
            Refusal::Other(match f {
                Failure::Deadline { .. } => GisError::Deadline(f.to_string()),
                Failure::Exhausted { .. } => GisError::Unavailable(format!("token endpoint: {f}")),
            })
        })?;
        let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        if !(200..300).contains(&reply.status) {
            let status = reply.status;
            let error = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            if !matches!(status, 400 | 401 | 403) {
                return Err(Refusal::Other(GisError::Unavailable(format!(
                    "the token endpoint failed the refresh (HTTP {status}, {error})"
                ))));
            }
            let which = if stored.refresh_is_seed {
                "the configured gis.oauth.refresh_token (a seed works once: it is mistyped, \
                 revoked or already used)"
            } else {
                "the rotated refresh token stored in data_dir (revoked, or lost when a \
                 refresh answer never reached ciosync)"
            };
            return Err(match error {
                "invalid_grant" => Refusal::InvalidGrant(format!(
                    "the token endpoint refused {which} (HTTP {status}, invalid_grant); \
                     bootstrap a new refresh token and set it as gis.oauth.refresh_token"
                )),
                "invalid_client" | "unauthorized_client" => {
                    Refusal::Other(GisError::Auth(format!(
                        "the token endpoint refused the OAuth client (HTTP {status}, {error}); \
                         check gis.oauth.client_id and gis.oauth.client_secret"
                    )))
                }
                _ => Refusal::Other(GisError::Auth(format!(
                    "the token endpoint refused the refresh (HTTP {status}, {error}); \
                     re-bootstrap gis.oauth.refresh_token"
                ))),
            });
        }
        let access = body.get("access_token").and_then(Value::as_str);
        let rotated = body.get("refresh_token").and_then(Value::as_str);
        let (Some(access), Some(rotated)) = (access, rotated) else {
            return Err(Refusal::Other(GisError::Unavailable(
                "the token endpoint answered without access_token/refresh_token".to_owned(),
            )));
        };
        let expires_in = body.get("expires_in").and_then(Value::as_u64);
        Ok((Secret::new(access), Secret::new(rotated), expires_in))
    }
}

/// Why a refresh grant failed.
enum Refusal {
    /// `invalid_grant`: the refresh token is not (or no longer) valid; the message says
    /// which token and what to do.
    InvalidGrant(String),
    /// Anything else, as it is reported.
    Other(GisError),
}

/// Decoded records of the pages read so far, by id.
struct PageSink<T> {
    records: BTreeMap<u64, T>,
    /// Records decoded, duplicates included.
    seen: usize,
}

impl<T> Default for PageSink<T> {
    fn default() -> Self {
        PageSink {
            records: BTreeMap::new(),
            seen: 0,
        }
    }
}

impl<T: Record> PageSink<T> {
    /// Decodes a page; returns the oldest `updated_at` on it (a record without one counts
    /// as oldest: it cannot be shown to be new).
    fn take(&mut self, page: &PageData, skipped: &mut BTreeMap<String, u64>) -> DateTime<Utc> {
        let mut oldest = DateTime::<Utc>::MAX_UTC;
        for raw in &page.data {
            if let Some(record) = decode_or_count::<T>(raw, skipped) {
                self.seen += 1;
                oldest = oldest.min(record.updated_at().unwrap_or(DateTime::<Utc>::MIN_UTC));
                self.records.entry(record.id()).or_insert(record);
            }
        }
        oldest
    }
}

/// Decodes one raw record; one it cannot use is logged with its id and counted by reason.
fn decode_or_count<T: Record>(raw: &Value, skipped: &mut BTreeMap<String, u64>) -> Option<T> {
    match T::decode(raw) {
        Ok(record) => Some(record),
        Err(skip) => {
            tracing::info!(reason = skip.reason, id = %skip.id, "Skipped a GIS record.");
            *skipped.entry(skip.reason.to_owned()).or_default() += 1;
            None
        }
    }
}

/// The pages of one list query, in order: page 1, then the rest `concurrency` at a time,
/// following a `total_pages` that grows while the list does (records can be added while
/// it is read), up to the last page or an empty one (which is returned too: its paging
/// totals count). Asking for any page after the first checks the run's deadline.
struct Pages<'a> {
    client: &'a GisClient,
    list: List,
    filters: &'a Value,
    concurrency: usize,
    total_pages: u64,
    /// The first page number not yet asked for.
    next: u64,
    in_flight: Option<BoxStream<'a, Result<PageData, GisError>>>,
    finished: bool,
}

impl Pages<'_> {
    /// The next page, or `None` after the last one.
    async fn next(&mut self) -> Result<Option<PageData>, GisError> {
        if self.finished {
            return Ok(None);
        }
        if self.next == 1 {
            self.next = 2;
            let (list, filters) = (self.list, self.filters);
            let first = self
                .client
                .page(list.query(), list.root(), filters, 1)
                .await;
            let first = self.finish_on_error(first)?;
            self.total_pages = first.total_pages;
            self.finished = first.data.is_empty();
            return Ok(Some(first));
        }
        let deadline = self.client.check_deadline(self.list.root());
        self.finish_on_error(deadline)?;
        loop {
            if let Some(in_flight) = self.in_flight.as_mut() {
                if let Some(page) = in_flight.next().await {
                    let page = self.finish_on_error(page)?;
                    if page.data.is_empty() {
                        self.finished = true;
                    } else {
                        self.total_pages = self.total_pages.max(page.total_pages);
                    }
                    return Ok(Some(page));
                }
                self.in_flight = None;
            }
            if self.next > self.total_pages {
                self.finished = true;
                return Ok(None);
            }
            let (client, list, filters) = (self.client, self.list, self.filters);
            let numbers = self.next..=self.total_pages;
            self.next = self.total_pages + 1;
            self.in_flight = Some(
                stream::iter(numbers)
                    .map(move |n| client.page(list.query(), list.root(), filters, n))
                    .buffered(self.concurrency)
                    .boxed(),
            );
        }
    }

    /// An error ends the pages: nothing after it is read.
    fn finish_on_error<T>(&mut self, result: Result<T, GisError>) -> Result<T, GisError> {
        if result.is_err() {
            self.finished = true;
            self.in_flight = None;
        }
        result
    }
}

struct PageData {
    data: Vec<Value>,
    total_pages: u64,
    /// `paging.total_items` as this page reported it, if GIS sent one.
    total_items: Option<u64>,
}

/// A record of a GIS list: what paging needs to know about it, and how it is decoded.
pub trait Record: Sized {
    /// The list records of this kind are read from.
    const LIST: List;
    /// Its GIS id.
    fn id(&self) -> u64;
    /// When GIS last changed it.
    fn updated_at(&self) -> Option<DateTime<Utc>>;
    /// Decodes one raw record leniently; a record it cannot use is a counted skip.
    ///
    /// # Errors
    /// [`decode::Skip`] naming the reason and the id.
    fn decode(raw: &Value) -> Result<Self, decode::Skip>;
}

impl Record for Person {
    const LIST: List = List::People;
    fn id(&self) -> u64 {
        self.id
    }
    fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.updated_at
    }
    fn decode(raw: &Value) -> Result<Self, decode::Skip> {
        decode::person(raw)
    }
}

impl Record for Application {
    const LIST: List = List::Applications;
    fn id(&self) -> u64 {
        self.id
    }
    fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.dates.updated_at
    }
    fn decode(raw: &Value) -> Result<Self, decode::Skip> {
        decode::application(raw)
    }
}

/// The two lists a full read scans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    /// `people`, filtered by `home_committee`.
    People,
    /// `allOpportunityApplication`, filtered by `person_home_lc`.
    Applications,
}

impl List {
    fn query(self) -> &'static str {
        match self {
            List::People => PEOPLE_QUERY,
            List::Applications => APPLICATIONS_QUERY,
        }
    }

    /// The root field of the query (also the list's name in logs and skip reasons).
    pub fn root(self) -> &'static str {
        match self {
            List::People => "people",
            List::Applications => "allOpportunityApplication",
        }
    }

    fn lc_key(self) -> &'static str {
        match self {
            List::People => "home_committee",
            List::Applications => "person_home_lc",
        }
    }
}

/// How a full scan of a list went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Pages read, re-read included.
    pub pages: u64,
    /// Records delivered (each id once).
    pub delivered: u64,
    /// Records seen again after they were delivered (a list that shifted, or a re-read).
    pub duplicates: u64,
    /// Records skipped while decoding, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// The list changed during the first pass and was read again.
    pub reread: bool,
    /// The scan saw every record: a clean first pass, or a clean re-read.
    pub complete: bool,
}

/// The `paging.total_items` values the pages of one pass reported.
#[derive(Debug, Default)]
struct Totals {
    seen: BTreeSet<u64>,
}

impl Totals {
    fn observe(&mut self, total_items: Option<u64>) {
        self.seen.extend(total_items);
    }

    /// Complete when the count never changed and `distinct` records reached it. A GIS that
    /// reports no count cannot show a change: that pass counts as complete.
    fn complete(&self, distinct: u64) -> bool {
        match (self.seen.first(), self.seen.last()) {
            (Some(low), Some(high)) => low == high && distinct >= *high,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_never_select_password_and_are_read_only() {
        for q in [CURRENT_PERSON_QUERY, PEOPLE_QUERY, APPLICATIONS_QUERY] {
            assert!(q.trim_start().starts_with("query "), "{q}");
            assert!(!q.contains("password"));
            assert!(!q.contains("mutation"));
        }
    }
}

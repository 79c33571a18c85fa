//! The GIS GraphQL client (SPEC 3): raw-token auth (static or OAuth refresh with rotation),
//! bulk paged reads of people and applications with de-duplication by id, lenient decoding.
//!
//! Read-only by construction: the only documents it sends are the `query` constants below.
//! Knows nothing about customer.io, state or planning; rotated refresh tokens are persisted
//! through a [`TokenStore`] the caller provides.

pub mod decode;
pub mod schema_check;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::{GisAuth, GisConfig, OAuthConfig, Secret};
use crate::http::{self, Counters, Failure, RetryPolicy};
use crate::model::{Application, ApplicationId, Person, PersonId};

/// `currentPerson { id }`: preflight and `check`.
pub const CURRENT_PERSON_QUERY: &str = "query CurrentPerson { currentPerson { id } }";

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

/// Where OAuth tokens live between runs (SPEC 2: the rotated refresh token is persisted in
/// `data_dir` before the new access token is used).
pub trait TokenStore: Send + Sync {
    /// The refresh token to use next, and a cached access token if one is still valid.
    ///
    /// # Errors
    /// A message when the store cannot be read.
    fn load(&self) -> Result<(Secret, Option<Secret>), String>;
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
}

/// People and applications read in one run, decoded, de-duplicated, with what was skipped.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub people: Vec<Person>,
    pub applications: Vec<Application>,
    /// Skipped records per reason.
    pub skipped: BTreeMap<String, u64>,
}

enum Auth {
    Static(Secret),
    OAuth {
        config: OAuthConfig,
        store: Arc<dyn TokenStore>,
        /// The access token in use, with a generation number so concurrent 401s refresh once.
        current: Mutex<(Option<Secret>, u64)>,
    },
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
                current: Mutex::new((None, 0)),
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

    /// `currentPerson { id }`: proves the credential works.
    ///
    /// # Errors
    /// [`GisError`] as for any query.
    pub async fn current_person_id(&self) -> Result<String, GisError> {
        let data = self
            .query(CURRENT_PERSON_QUERY, json!({}), "currentPerson")
            .await?;
        data.pointer("/currentPerson/id")
            .and_then(|v| decode::string(Some(v)))
            .ok_or_else(|| GisError::Unavailable("currentPerson answered without an id".to_owned()))
    }

    /// Every person of the configured LCs and every application of those people (a full
    /// read).
    ///
    /// # Errors
    /// [`GisError`] when a page cannot be read after retries.
    pub async fn read_all(&self) -> Result<Snapshot, GisError> {
        let mut skipped = BTreeMap::new();
        let people = self
            .read_pages(
                PEOPLE_QUERY,
                "people",
                self.people_filter(false),
                None,
                decode::person,
                &mut skipped,
            )
            .await?;
        let applications = self
            .read_pages(
                APPLICATIONS_QUERY,
                "allOpportunityApplication",
                self.applications_filter(false),
                None,
                decode::application,
                &mut skipped,
            )
            .await?;
        Ok(Snapshot {
            people,
            applications,
            skipped,
        })
    }

    /// Specific people by id who are still in the configured LCs, without their
    /// applications: to confirm who really left when a full read did not see them (a record
    /// can move between pages mid-scan, SPEC 3).
    ///
    /// # Errors
    /// [`GisError`] when a page cannot be read after retries.
    pub async fn read_people_in_scope_by_id(
        &self,
        ids: &BTreeSet<PersonId>,
        skipped: &mut BTreeMap<String, u64>,
    ) -> Result<Vec<Person>, GisError> {
        let mut people = Vec::new();
        let ids: Vec<PersonId> = ids.iter().copied().collect();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let ids: Vec<String> = chunk.iter().map(u64::to_string).collect();
            let found = self
                .read_pages(
                    PEOPLE_QUERY,
                    "people",
                    json!({ "ids": ids }),
                    None,
                    decode::person,
                    skipped,
                )
                .await?;
            people.extend(found.into_iter().filter(|p| self.in_scope(p)));
        }
        Ok(people)
    }

    /// Whether a person's home LC is one of the configured ones.
    fn in_scope(&self, person: &Person) -> bool {
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
            .read_pages(
                PEOPLE_QUERY,
                "people",
                self.people_filter(true),
                Some(since),
                decode::person,
                &mut skipped,
            )
            .await?
            .into_iter()
            .map(|p| (p.id, p))
            .collect();
        let mut applications: BTreeMap<ApplicationId, Application> = self
            .read_pages(
                APPLICATIONS_QUERY,
                "allOpportunityApplication",
                self.applications_filter(true),
                Some(since),
                decode::application,
                &mut skipped,
            )
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
        for person in self
            .read_people_in_scope_by_id(&wanted, &mut skipped)
            .await?
        {
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
                .read_pages(
                    APPLICATIONS_QUERY,
                    "allOpportunityApplication",
                    json!({ "person_id": person_id }),
                    None,
                    decode::application,
                    &mut skipped,
                )
                .await?;
            for application in found {
                applications.insert(application.id, application);
            }
        }
        Ok(Snapshot {
            people: people.into_values().collect(),
            applications: applications.into_values().collect(),
            skipped,
        })
    }

    fn people_filter(&self, newest_first: bool) -> Value {
        self.lc_filter("home_committee", newest_first)
    }

    fn applications_filter(&self, newest_first: bool) -> Value {
        self.lc_filter("person_home_lc", newest_first)
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
    /// Without `since`: page 1 first, then the rest concurrently; pages past the first
    /// answer's `total_pages` are read while they keep coming (records can be added while we
    /// read). With `since` (records sorted newest first): one page at a time, stopping after
    /// the first page holding a record updated before `since`.
    ///
    /// Records are de-duplicated by id, keeping the later copy (a record seen twice moved
    /// between pages; the later read is at least as fresh).
    async fn read_pages<T: Record>(
        &self,
        query: &str,
        root: &str,
        filters: Value,
        since: Option<DateTime<Utc>>,
        decode: fn(&Value) -> Result<T, decode::Skip>,
        skipped: &mut BTreeMap<String, u64>,
    ) -> Result<Vec<T>, GisError> {
        let mut pages = PageSink {
            records: BTreeMap::new(),
            seen: 0,
            decode,
        };
        let first = self.page(query, root, &filters, 1).await?;
        let mut total_pages = first.total_pages;
        if first.data.is_empty() {
            return Ok(Vec::new());
        }
        let mut oldest = pages.take(&first, skipped);
        drop(first);
        if let Some(since) = since {
            let mut number = 1u64;
            while oldest >= since && number < total_pages {
                self.check_deadline(root)?;
                number += 1;
                let page = self.page(query, root, &filters, number).await?;
                if page.data.is_empty() {
                    break;
                }
                total_pages = total_pages.max(page.total_pages);
                oldest = pages.take(&page, skipped);
            }
        } else {
            let mut next = 2u64;
            'pages: while next <= total_pages {
                let numbers: Vec<u64> = (next..=total_pages).collect();
                next = total_pages + 1;
                let mut stream = stream::iter(numbers)
                    .map(|n| self.page(query, root, &filters, n))
                    .buffered(PAGE_CONCURRENCY);
                while let Some(page) = stream.next().await {
                    let page = page?;
                    if page.data.is_empty() {
                        break 'pages;
                    }
                    total_pages = total_pages.max(page.total_pages);
                    pages.take(&page, skipped);
                    self.check_deadline(root)?;
                }
            }
        }
        let duplicates = pages.seen - pages.records.len();
        if duplicates > 0 {
            tracing::info!(
                root,
                duplicates,
                "GIS returned some records twice while paging."
            );
            *skipped.entry(format!("{root}_duplicate")).or_default() += duplicates as u64;
        }
        Ok(pages.records.into_values().collect())
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
        let total_pages = list
            .pointer("/paging/total_pages")
            .and_then(|v| decode::string(Some(v)))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok(PageData {
            data: records,
            total_pages,
        })
    }

    /// Runs one query: retries transient failures; on a 401 with OAuth, refreshes once and
    /// retries; a second 401 is an authentication failure.
    async fn query(&self, query: &str, variables: Value, what: &str) -> Result<Value, GisError> {
        let body = json!({ "query": query, "variables": variables });
        let mut refreshed = false;
        let mut graphql_failures = 0u32;
        loop {
            let (token, generation) = self.access_token().await?;
            let reply = http::send_with_retry(
                || {
                    self.http
                        .post(&self.endpoint)
                        .header(reqwest::header::AUTHORIZATION, token.expose())
                        .json(&body)
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
            match reply.status {
                200..=299 => {}
                401 => {
                    if refreshed || matches!(self.auth, Auth::Static(_)) {
                        return Err(GisError::Auth(format!(
                            "HTTP 401 on {what}: {}",
                            reply.body_excerpt(200)
                        )));
                    }
                    self.refresh(generation).await?;
                    refreshed = true;
                    continue;
                }
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

    /// The access token to use now and its generation; with OAuth, refreshes if none is held.
    async fn access_token(&self) -> Result<(Secret, u64), GisError> {
        match &self.auth {
            Auth::Static(token) => Ok((token.clone(), 0)),
            Auth::OAuth { current, store, .. } => {
                {
                    let guard = current.lock().await;
                    if let (Some(token), generation) = &*guard {
                        return Ok((token.clone(), *generation));
                    }
                }
                let (_, cached) = store.load().map_err(GisError::Persist)?;
                if let Some(cached) = cached {
                    let mut guard = current.lock().await;
                    if guard.0.is_none() {
                        *guard = (Some(cached), guard.1 + 1);
                    }
                    let (token, generation) = &*guard;
                    return Ok((token.clone().expect("just set"), *generation));
                }
                self.refresh(0).await?;
                let guard = current.lock().await;
                Ok((guard.0.clone().expect("set by refresh"), guard.1))
            }
        }
    }

    /// Exchanges the refresh token for a new pair, persists the rotated refresh token, then
    /// installs the new access token. Only one refresh per generation: a request that saw a
    /// 401 on an older token just picks up the newer one.
    async fn refresh(&self, seen_generation: u64) -> Result<(), GisError> {
        let Auth::OAuth {
            config,
            store,
            current,
        } = &self.auth
        else {
            return Ok(());
        };
        let mut guard = current.lock().await;
        if guard.1 > seen_generation && guard.0.is_some() {
            return Ok(());
        }
        let (refresh_token, _) = store.load().map_err(GisError::Persist)?;
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
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
        .map_err(|f| match f {
            Failure::Deadline { .. } => GisError::Deadline(f.to_string()),
            Failure::Exhausted { .. } => GisError::Unavailable(format!("token endpoint: {f}")),
        })?;
        let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        if !(200..300).contains(&reply.status) {
            let error = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            let message = format!(
                "the token endpoint refused the refresh (HTTP {}, {error}); re-bootstrap gis.oauth.refresh_token",
                reply.status
            );
            return Err(if matches!(reply.status, 400 | 401 | 403) {
                GisError::Auth(message)
            } else {
                GisError::Unavailable(message)
            });
        }
        let access = body.get("access_token").and_then(Value::as_str);
        let rotated = body.get("refresh_token").and_then(Value::as_str);
        let (Some(access), Some(rotated)) = (access, rotated) else {
            return Err(GisError::Unavailable(
                "the token endpoint answered without access_token/refresh_token".to_owned(),
            ));
        };
        let access = Secret::new(access);
        let rotated = Secret::new(rotated);
        let expires_in = body.get("expires_in").and_then(Value::as_u64);
        // Persist first: the old refresh token is already revoked, so losing the new one
        // would lock us out until an operator re-bootstraps.
        store
            .save(&rotated, &access, expires_in)
            .map_err(GisError::Persist)?;
        self.token_refreshes.fetch_add(1, Ordering::Relaxed);
        tracing::info!("GIS access token refreshed; rotated refresh token persisted.");
        *guard = (Some(access), guard.1 + 1);
        Ok(())
    }
}

/// Decoded records of the pages read so far, by id.
struct PageSink<T> {
    records: BTreeMap<u64, T>,
    /// Records decoded, duplicates included.
    seen: usize,
    decode: fn(&Value) -> Result<T, decode::Skip>,
}

impl<T: Record> PageSink<T> {
    /// Decodes a page; returns the oldest `updated_at` on it (a record without one counts
    /// as oldest: it cannot be shown to be new).
    fn take(&mut self, page: &PageData, skipped: &mut BTreeMap<String, u64>) -> DateTime<Utc> {
        let mut oldest = DateTime::<Utc>::MAX_UTC;
        for raw in &page.data {
            match (self.decode)(raw) {
                Ok(record) => {
                    self.seen += 1;
                    oldest = oldest.min(record.updated_at().unwrap_or(DateTime::<Utc>::MIN_UTC));
                    self.records.insert(record.id(), record);
                }
                Err(skip) => {
                    tracing::info!(reason = skip.reason, id = %skip.id, "Skipped a GIS record.");
                    *skipped.entry(skip.reason.to_owned()).or_default() += 1;
                }
            }
        }
        oldest
    }
}

struct PageData {
    data: Vec<Value>,
    total_pages: u64,
}

/// What paging needs to know about a decoded record.
trait Record {
    fn id(&self) -> u64;
    fn updated_at(&self) -> Option<DateTime<Utc>>;
}

impl Record for Person {
    fn id(&self) -> u64 {
        self.id
    }
    fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.updated_at
    }
}

impl Record for Application {
    fn id(&self) -> u64 {
        self.id
    }
    fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.dates.updated_at
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

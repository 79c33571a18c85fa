//! The customer.io Track API client (SPEC 4): Basic auth, region base URLs, no redirects,
//! retries on transient failures under a rate limiter, and a per-write verdict: confirmed,
//! or rejected permanently (the caller reports it and retries it next run).
//!
//! Knows nothing about GIS, state or planning.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use tokio::time::Instant;

use crate::config::{CioConfig, Secret};
use crate::http::{self, Counters, Failure, RateLimiter, Reply, RetryPolicy};

/// What became of one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// customer.io acknowledged it.
    Confirmed,
    /// customer.io refused it for good (a 4xx other than 401/403/408/429); the reason is
    /// customer.io's message.
    Rejected(String),
}

/// Why the client cannot go on at all.
#[derive(Debug, thiserror::Error)]
pub enum CioError {
    /// The site id / API key were refused.
    #[error("customer.io refused the credentials: {0}")]
    Auth(String),
    /// customer.io redirected: the configured region (or track_url) is wrong.
    #[error("customer.io redirected the request to {0}: the configured region is wrong (set customerio.region)")]
    WrongRegion(String),
    /// customer.io could not be reached or kept failing.
    #[error("customer.io is unavailable: {0}")]
    Unavailable(String),
    /// The run's deadline arrived while waiting on customer.io.
    #[error("customer.io request stopped at the run's deadline: {0}")]
    Deadline(String),
}

impl From<CioError> for crate::error::Error {
    fn from(e: CioError) -> Self {
        use crate::error::Error;
        match e {
            CioError::Auth(_) => Error::Auth(e.to_string()),
            CioError::WrongRegion(_) => Error::WrongRegion(e.to_string()),
            CioError::Unavailable(_) => Error::Unavailable(e.to_string()),
            CioError::Deadline(_) => Error::TimeBudget(e.to_string()),
        }
    }
}

/// What `GET /api/v1/accounts/region` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionInfo {
    pub region: String,
    pub url: String,
}

/// One event to send.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub name: &'a str,
    /// The deterministic ULID customer.io de-duplicates on.
    pub id: &'a str,
    pub timestamp: i64,
    pub data: &'a Map<String, Value>,
}

/// A Track API client for one run.
pub struct CioClient {
    http: reqwest::Client,
    base: String,
    site_id: String,
    api_key: Secret,
    policy: RetryPolicy,
    limiter: RateLimiter,
    deadline: Option<Instant>,
    /// Requests, retries and bytes sent, for the run summary.
    pub counters: Arc<Counters>,
}

impl CioClient {
    /// A client for `config`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(
        config: &CioConfig,
        policy: RetryPolicy,
        deadline: Option<Instant>,
    ) -> Result<CioClient, CioError> {
        let http = http::client(config.request_timeout)
            .map_err(|e| CioError::Unavailable(format!("cannot build the HTTP client: {e}")))?;
        Ok(CioClient {
            http,
            base: config.base_url(),
            site_id: config.site_id.clone(),
            api_key: config.api_key.clone(),
            policy,
            limiter: RateLimiter::new(config.max_requests_per_second),
            deadline,
            counters: Arc::new(Counters::default()),
        })
    }

    /// The Track base URL in use.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /api/v1/accounts/region`: proves the credentials and tells the account's region.
    ///
    /// # Errors
    /// [`CioError`]; a refused request (other 4xx) is reported as unavailable.
    pub async fn region(&self) -> Result<RegionInfo, CioError> {
        let url = format!("{}/api/v1/accounts/region", self.base);
        let reply = self.send(|| self.http.get(&url), "region check").await?;
        match self.verdict(&reply, "region check")? {
            Outcome::Confirmed => {}
            Outcome::Rejected(reason) => {
                return Err(CioError::Unavailable(format!(
                    "region check refused: {reason}"
                )))
            }
        }
        let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        Ok(RegionInfo {
            region: body
                .get("region")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            url: body
                .get("url")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        })
    }

    /// `PUT /api/v1/customers/{id}` with the attributes that changed (null clears one).
    ///
    /// # Errors
    /// [`CioError`] when the run cannot go on; a refused write is `Ok(Outcome::Rejected)`.
    pub async fn identify(
        &self,
        person_id: u64,
        attributes: &Map<String, Value>,
    ) -> Result<Outcome, CioError> {
        let url = format!("{}/api/v1/customers/{person_id}", self.base);
        let reply = self
            .send(|| self.http.put(&url).json(attributes), "identify")
            .await?;
        self.verdict(&reply, "identify")
    }

    /// `POST /api/v1/customers/{id}/events`.
    ///
    /// # Errors
    /// [`CioError`] when the run cannot go on; a refused write is `Ok(Outcome::Rejected)`.
    pub async fn track(&self, person_id: u64, event: Event<'_>) -> Result<Outcome, CioError> {
        let url = format!("{}/api/v1/customers/{person_id}/events", self.base);
        let body = json!({
            "name": event.name,
            "id": event.id,
            "timestamp": event.timestamp,
            "data": event.data,
        });
        let reply = self
            .send(|| self.http.post(&url).json(&body), "event")
            .await?;
        self.verdict(&reply, "event")
    }

    async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
        what: &str,
    ) -> Result<Reply, CioError> {
        http::send_with_retry(
            || build().basic_auth(&self.site_id, Some(self.api_key.expose())),
            &self.policy,
            Some(&self.limiter),
            &self.counters,
            self.deadline,
            what,
        )
        .await
        .map_err(|f| match f {
            Failure::Deadline { .. } => CioError::Deadline(f.to_string()),
            Failure::Exhausted { .. } => CioError::Unavailable(format!("{what}: {f}")),
        })
    }

    /// Interprets a final answer: 2xx confirmed, 3xx wrong region, 401/403 credentials,
    /// other 4xx (and 501) rejected with customer.io's message.
    fn verdict(&self, reply: &Reply, what: &str) -> Result<Outcome, CioError> {
        match reply.status {
            200..=299 => Ok(Outcome::Confirmed),
            300..=399 => {
                let location = reply
                    .headers
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("another host");
                Err(CioError::WrongRegion(location.to_owned()))
            }
            401 | 403 => Err(CioError::Auth(format!("HTTP {} on {what}", reply.status))),
            status => Ok(Outcome::Rejected(format!(
                "HTTP {status}: {}",
                error_message(reply)
            ))),
        }
    }
}

/// customer.io's error text: `meta.error`, `meta.errors[]` or `errors[].message`, else the body.
pub fn error_message(reply: &Reply) -> String {
    let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    if let Some(text) = body.pointer("/meta/error").and_then(Value::as_str) {
        return text.to_owned();
    }
    let list = body
        .pointer("/meta/errors")
        .or_else(|| body.get("errors"))
        .and_then(Value::as_array);
    if let Some(list) = list {
        let texts: Vec<String> = list
            .iter()
            .map(|e| match e {
                Value::String(s) => s.clone(),
                other => other
                    .get("message")
                    .and_then(Value::as_str)
                    .map_or_else(|| other.to_string(), str::to_owned),
            })
            .collect();
        if !texts.is_empty() {
            return texts.join("; ");
        }
    }
    reply.body_excerpt(200)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use reqwest::header::HeaderMap;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn error_message_shapes() {
        assert_eq!(
            error_message(&reply(400, r#"{"meta":{"error":"too long"}}"#)),
            "too long"
        );
        assert_eq!(
            error_message(&reply(400, r#"{"meta":{"errors":["a","b"]}}"#)),
            "a; b"
        );
        assert_eq!(
            error_message(&reply(
                400,
                r#"{"errors":[{"message":"bad id","batch_index":1}]}"#
            )),
            "bad id"
        );
        assert_eq!(
            error_message(&reply(400, "<html>oops</html>")),
            "<html>oops</html>"
        );
    }
}

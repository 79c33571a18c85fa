//! The customer.io Track API client (SPEC 4): Basic auth, region base URLs, no redirects,
//! retries on transient failures under a rate limiter, and a per-write verdict: confirmed,
//! or rejected permanently (the caller reports it and retries it next run).
//!
//! Knows nothing about GIS, state or planning.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::config::{CioConfig, Secret};
use crate::error::Error;
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

/// What `GET /api/v1/accounts/region` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionInfo {
    pub region: String,
    pub url: String,
}

impl RegionInfo {
    /// The one region check of `run` and `check` (SPEC 4): the account's region must be the
    /// configured one. With `track_url` set the region is only reported, and an account that
    /// reports no region cannot be shown to be elsewhere.
    ///
    /// # Errors
    /// [`Error::WrongRegion`] (exit 78) naming both regions and the config file.
    pub fn verify(&self, config: &CioConfig, config_path: &Path) -> Result<(), Error> {
        if config.track_url.is_some() || self.region.is_empty() {
            return Ok(());
        }
        let expected = config.region.name();
        if self.region == expected {
            return Ok(());
        }
        Err(Error::WrongRegion(format!(
            "customer.io says this account is in region `{}` ({}), but customerio.region is `{expected}` in {}",
            self.region,
            self.url,
            config_path.display()
        )))
    }
}

/// One event to send; `data` is anything that serializes to a JSON object.
#[derive(Debug)]
pub struct Event<'a, D: ?Sized> {
    pub name: &'a str,
    /// The deterministic ULID customer.io de-duplicates on.
    pub id: &'a str,
    pub timestamp: i64,
    pub data: &'a D,
}

impl<D: ?Sized> Clone for Event<'_, D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D: ?Sized> Copy for Event<'_, D> {}

/// An action on a person as a whole (SPEC 8.2, 8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonAction {
    /// Delete the profile (v1 `DELETE /api/v1/customers/{id}`). Deleting an unknown person
    /// is harmless; a later identify creates the profile again.
    Delete,
    /// Delete the profile and ignore every later call for the id (v1 `POST .../suppress`).
    Suppress,
    /// Stop ignoring calls for a suppressed id (v1 `POST .../unsuppress`).
    Unsuppress,
}

impl PersonAction {
    /// The v2 action name, which is also the last segment of the v1 path for the POSTs.
    pub fn name(self) -> &'static str {
        match self {
            PersonAction::Delete => "delete",
            PersonAction::Suppress => "suppress",
            PersonAction::Unsuppress => "unsuppress",
        }
    }
}

/// The v2 batch limits (SPEC 4.4; customer.io counts KB as 1000 bytes).
pub const BATCH_MAX_BYTES: usize = 500_000;
/// Largest single v2 operation.
pub const OP_MAX_BYTES: usize = 32_000;
/// `{"batch":[` and `]}`.
const BATCH_ENVELOPE_BYTES: usize = 12;

/// One v2 operation, serialized.
#[derive(Debug, Clone)]
pub struct BatchOp(Vec<u8>);

impl BatchOp {
    /// An identify operation.
    pub fn identify<A: Serialize + ?Sized>(person_id: u64, attributes: &A) -> BatchOp {
        BatchOp::from_value(&json!({
            "type": "person",
            "identifiers": {"id": person_id.to_string()},
            "action": "identify",
            "attributes": attributes,
        }))
    }

    /// A `delete`, `suppress` or `unsuppress` operation: an action on the person as a whole
    /// (SPEC 8.2, 8.3).
    pub fn person_action(person_id: u64, action: PersonAction) -> BatchOp {
        BatchOp::from_value(&json!({
            "type": "person",
            "identifiers": {"id": person_id.to_string()},
            "action": action.name(),
        }))
    }

    /// An event operation (v2 carries the event data in `attributes`).
    pub fn event<D: Serialize + ?Sized>(person_id: u64, event: Event<'_, D>) -> BatchOp {
        BatchOp::from_value(&json!({
            "type": "person",
            "identifiers": {"id": person_id.to_string()},
            "action": "event",
            "name": event.name,
            "id": event.id,
            "timestamp": event.timestamp,
            "attributes": event.data,
        }))
    }

    fn from_value(value: &Value) -> BatchOp {
        BatchOp(serde_json::to_vec(value).expect("JSON values always serialize"))
    }

    /// Serialized size in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true: an operation is at least `{}`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Packs operations, in order, into v2 batches of at most [`BATCH_MAX_BYTES`], a group of
/// operations at a time: a group (one application's events) always lands in one batch.
/// Operations over [`OP_MAX_BYTES`] must be set aside by the caller ([`BatchOp::len`]).
#[derive(Debug, Clone)]
pub struct Packer {
    /// Bytes of the batch so far, envelope and commas included.
    size: usize,
    members: usize,
}

impl Default for Packer {
    fn default() -> Self {
        Packer {
            size: BATCH_ENVELOPE_BYTES,
            members: 0,
        }
    }
}

impl Packer {
    /// Bytes `ops` add to the current batch.
    fn added(&self, ops: &[BatchOp]) -> usize {
        let commas = ops.len() - usize::from(self.members == 0 && !ops.is_empty());
        ops.iter().map(BatchOp::len).sum::<usize>() + commas
    }

    /// Whether `ops` fit in the current batch. Anything fits an empty batch: a group larger
    /// than a batch goes alone (v2 takes up to 500 KB; an application's events are a few KB).
    pub fn fits(&self, ops: &[BatchOp]) -> bool {
        self.members == 0 || self.size + self.added(ops) <= BATCH_MAX_BYTES
    }

    /// Adds `ops` to the current batch.
    pub fn add(&mut self, ops: &[BatchOp]) {
        self.size += self.added(ops);
        self.members += ops.len();
    }

    /// Whether the current batch holds nothing.
    pub fn is_empty(&self) -> bool {
        self.members == 0
    }

    /// Starts a new batch.
    pub fn reset(&mut self) {
        *self = Packer::default();
    }
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
    /// How long a request starting now would wait for the rate limiter
    /// (`max_requests_per_second`).
    pub fn rate_limit_wait(&self) -> Duration {
        self.limiter.wait_behind(0)
    }

    /// The same, behind `ahead` requests that will take their turns first.
    pub fn rate_limit_wait_behind(&self, ahead: u32) -> Duration {
        self.limiter.wait_behind(ahead)
    }

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
    pub async fn identify<A: Serialize + ?Sized>(
        &self,
        person_id: u64,
        attributes: &A,
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
    pub async fn track<D: Serialize + ?Sized>(
        &self,
        person_id: u64,
        event: Event<'_, D>,
    ) -> Result<Outcome, CioError> {
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

    /// `DELETE /api/v1/customers/{id}`, or `POST /api/v1/customers/{id}/suppress` /
    /// `.../unsuppress` (SPEC 8.2, 8.3).
    ///
    /// # Errors
    /// [`CioError`] when the run cannot go on; a refused write is `Ok(Outcome::Rejected)`.
    pub async fn person_action(
        &self,
        person_id: u64,
        action: PersonAction,
    ) -> Result<Outcome, CioError> {
        let what = action.name();
        let reply = match action {
            PersonAction::Delete => {
                let url = format!("{}/api/v1/customers/{person_id}", self.base);
                self.send(|| self.http.delete(&url), what).await?
            }
            PersonAction::Suppress | PersonAction::Unsuppress => {
                let url = format!("{}/api/v1/customers/{person_id}/{what}", self.base);
                self.send(|| self.http.post(&url), what).await?
            }
        };
        self.verdict(&reply, what)
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

    /// `POST /api/v2/batch` with `ops` (already packed within the limits). Returns one
    /// outcome per operation: a `207` rejects only the listed `batch_index` operations; a
    /// `413` or `400` on several operations splits the batch and resends the halves, so one
    /// bad operation cannot sink the others.
    ///
    /// # Errors
    /// [`CioError`] when the run cannot go on.
    pub async fn batch(&self, ops: &[BatchOp]) -> Result<Vec<Outcome>, CioError> {
        let mut outcomes = vec![Outcome::Confirmed; ops.len()];
        // A stack of index ranges still to send; a refused batch pushes its two halves.
        let mut pending: Vec<std::ops::Range<usize>> = Vec::new();
        pending.push(0..ops.len());
        let url = format!("{}/api/v2/batch", self.base);
        while let Some(range) = pending.pop() {
            if range.is_empty() {
                continue;
            }
            let slice = &ops[range.clone()];
            let body = bytes::Bytes::from(batch_body(slice));
            tracing::debug!(
                operations = slice.len(),
                bytes = body.len(),
                "Sending a customer.io batch."
            );
            let reply = self
                .send(
                    || {
                        self.http
                            .post(&url)
                            .header(reqwest::header::CONTENT_TYPE, "application/json")
                            .body(body.clone())
                    },
                    "batch",
                )
                .await?;
            match reply.status {
                207 => {
                    for (slot, message) in batch_errors(&reply, slice.len()) {
                        outcomes[range.start + slot] =
                            Outcome::Rejected(format!("HTTP 207: {message}"));
                    }
                }
                400 | 413 if slice.len() > 1 => {
                    tracing::info!(
                        status = reply.status,
                        operations = slice.len(),
                        "Batch refused; splitting it."
                    );
                    let middle = range.start + slice.len() / 2;
                    pending.push(middle..range.end);
                    pending.push(range.start..middle);
                }
                _ => {
                    if let Outcome::Rejected(reason) = self.verdict(&reply, "batch")? {
                        for slot in &mut outcomes[range] {
                            *slot = Outcome::Rejected(reason.clone());
                        }
                    }
                }
            }
        }
        Ok(outcomes)
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

/// `{"batch":[op,op,...]}`.
fn batch_body(ops: &[BatchOp]) -> Vec<u8> {
    let size = ops.iter().map(BatchOp::len).sum::<usize>() + ops.len() + BATCH_ENVELOPE_BYTES;
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(b"{\"batch\":[");
    for (i, op) in ops.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&op.0);
    }
    body.extend_from_slice(b"]}");
    body
}

/// The `batch_index` entries of a `207` body that fall inside a batch of `len` operations.
fn batch_errors(reply: &Reply, len: usize) -> Vec<(usize, String)> {
    let parsed: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    let mut out = Vec::new();
    for error in parsed
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let slot = error
            .get("batch_index")
            .and_then(Value::as_u64)
            .and_then(|i| usize::try_from(i).ok())
            .filter(|i| *i < len);
        if let Some(slot) = slot {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .or_else(|| error.get("reason").and_then(Value::as_str))
                .unwrap_or("rejected");
            out.push((slot, message.to_owned()));
        }
    }
    out
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

    fn op(size: usize) -> BatchOp {
        BatchOp(vec![b'x'; size])
    }

    /// Packs `groups` of operation sizes the way the sync does; returns the batches as
    /// lists of group indices.
    fn packed(groups: &[Vec<usize>]) -> Vec<Vec<usize>> {
        let mut packer = Packer::default();
        let mut batches: Vec<Vec<usize>> = Vec::new();
        for (i, sizes) in groups.iter().enumerate() {
            let ops: Vec<BatchOp> = sizes.iter().map(|&n| op(n)).collect();
            if !packer.fits(&ops) {
                packer.reset();
            }
            if packer.is_empty() {
                batches.push(Vec::new());
            }
            packer.add(&ops);
            batches.last_mut().expect("a batch").push(i);
            let body: usize = batches
                .last()
                .expect("a batch")
                .iter()
                .flat_map(|&g| groups[g].iter())
                .map(|&n| n + 1)
                .sum::<usize>()
                - 1
                + BATCH_ENVELOPE_BYTES;
            assert_eq!(packer.size, body, "the packer counts the body it sends");
        }
        batches
    }

    #[test]
    fn packer_respects_the_batch_limit_and_keeps_order() {
        let batches = packed(&vec![vec![30_000]; 40]);
        assert_eq!(batches[0].len(), 16, "as many as fit");
        let flat: Vec<usize> = batches.iter().flatten().copied().collect();
        assert_eq!(flat, (0..40).collect::<Vec<_>>(), "contiguous, in order");
        for batch in &batches {
            let size: usize = batch.len() * 30_001 - 1 + BATCH_ENVELOPE_BYTES;
            assert!(size <= BATCH_MAX_BYTES, "{size}");
        }
    }

    #[test]
    fn packer_keeps_a_group_in_one_batch() {
        // 490 KB, then a group of three 5 KB events: it does not fit, so it starts a batch.
        let batches = packed(&[vec![490_000], vec![5_000, 5_000, 5_000], vec![10]]);
        assert_eq!(batches, vec![vec![0], vec![1, 2]]);
        let empty = Packer::default();
        assert!(
            empty.fits(&[op(600_000)]),
            "a lone oversized group goes alone"
        );
    }

    use reqwest::header::HeaderMap;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn batch_body_and_errors() {
        let ops = vec![BatchOp(b"{}".to_vec()), BatchOp(b"{\"a\":1}".to_vec())];
        assert_eq!(batch_body(&ops), b"{\"batch\":[{},{\"a\":1}]}".to_vec());
        let r = reply(
            207,
            r#"{"errors":[{"batch_index":1,"reason":"invalid","message":"too big"},{"batch_index":9},{"x":1}]}"#,
        );
        assert_eq!(batch_errors(&r, 2), vec![(1, "too big".to_owned())]);
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

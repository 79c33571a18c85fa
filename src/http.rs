//! Shared HTTP plumbing for both clients: the reqwest client (timeouts, user agent, no
//! redirects, the TLS roots), the pure retry classifier, capped exponential backoff with
//! full jitter, `Retry-After`, a rate limiter, and the bounded retry loop.
//!
//! Knows nothing about GIS or customer.io payloads; callers interpret the final [`Reply`].
//!
//! TLS trust is a property of the process, like the system store it extends: every client
//! trusts webpki's built-in roots, the system store (reqwest's native roots: what
//! `update-ca-certificates` installs, or `SSL_CERT_FILE` / `SSL_CERT_DIR`), and the
//! certificates of `ca_file`, which `main` hands to [`trust_extra_roots`] once, before any
//! client is built.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use tokio::time::Instant;

/// Sent with every request.
pub const USER_AGENT: &str = concat!("ciosync/", env!("CARGO_PKG_VERSION"));

/// The `ca_file` certificates every client trusts as well; set once by [`trust_extra_roots`].
static EXTRA_ROOTS: OnceLock<Vec<reqwest::Certificate>> = OnceLock::new();

/// Makes every client built from now on trust `certificates` as well as the built-in and
/// system roots. Called once, by `main`, with the config's `ca_file`; a second call is
/// ignored (the first configuration wins), so no client ever sees two trust sets.
pub fn trust_extra_roots(certificates: Vec<reqwest::Certificate>) {
    let _ = EXTRA_ROOTS.set(certificates);
}

/// Builds the one client a service uses: every request has a timeout, redirects are never
/// followed (a customer.io redirect means a wrong region, SPEC 4), and TLS trusts the roots
/// the module documentation lists.
///
/// # Errors
/// When the TLS backend cannot be initialised (for example, a system store whose every
/// certificate is unreadable).
pub fn client(request_timeout: Duration) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(request_timeout.min(Duration::from_secs(10)))
        .timeout(request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(32);
    for certificate in EXTRA_ROOTS.get().into_iter().flatten() {
        builder = builder.add_root_certificate(certificate.clone());
    }
    builder.build()
}

/// What to do about one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Done: hand the answer to the caller.
    Done,
    /// Transient: try again after a backoff.
    Retry,
}

/// Pure classification of an HTTP status. 408, 429 and 5xx (but 501) are transient;
/// everything else is the caller's to interpret (2xx success, 3xx redirect, 4xx refusal).
pub fn classify(status: u16) -> Verdict {
    match status {
        408 | 429 => Verdict::Retry,
        501 => Verdict::Done,
        500..=599 => Verdict::Retry,
        _ => Verdict::Done,
    }
}

/// How hard to retry.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The first backoff's upper bound; doubled per attempt.
    pub base: Duration,
    /// No backoff (or honoured `Retry-After`) is longer than this.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The upper bound of the backoff before retry number `attempt` (1-based): base·2^(attempt-1), capped.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A full-jitter backoff: uniform in `[ceiling/2, ceiling]`, so retries of many
    /// requests spread out but never hammer at once.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(if spread == 0 {
            0
        } else {
            rand::random::<u64>() % (spread + 1)
        })
    }
}

/// `Retry-After` in seconds or as an HTTP date, relative to `now_unix` (seconds).
pub fn retry_after(headers: &HeaderMap, now_unix: i64) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value)
        .ok()?
        .timestamp();
    Some(Duration::from_secs(
        u64::try_from(at - now_unix).unwrap_or(0),
    ))
}

/// A complete answer: status, headers and the whole body (a body cut short is a transport
/// failure, retried like a timeout).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as text, cut to `max` bytes on a character boundary, for error messages.
    pub fn body_excerpt(&self, max: usize) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let mut end = text.len().min(max);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text[..end].trim().to_owned()
    }
}

/// Why the retry loop gave up without a final answer.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Every attempt failed transiently; `last` says how the last one failed.
    #[error("gave up after {attempts} attempts; last: {last}")]
    Exhausted { attempts: u32, last: String },
    /// The run's deadline arrived while waiting to retry.
    #[error("stopped retrying at the run's deadline; last: {last}")]
    Deadline { last: String },
}

/// Counters shared by one service's requests, for the run summary.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub bytes_sent: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Current value of a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// A token bucket: at most `per_second` requests per second, with a burst of one second's worth.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// A limiter allowing `per_second` requests per second (0 = unlimited).
    pub fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second);
        RateLimiter {
            per_second,
            state: Mutex::new((per_second, Instant::now())),
        }
    }

    /// Waits until a request may start.
    pub async fn acquire(&self) {
        if self.per_second <= 0.0 {
            return;
        }
        let wait = {
            let mut guard = self.state.lock().expect("rate limiter lock poisoned");
            let (tokens, last) = &mut *guard;
            let now = Instant::now();
            *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.per_second)
                .min(self.per_second.max(1.0));
            *last = now;
            *tokens -= 1.0;
            if *tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-*tokens / self.per_second)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Sends a request built by `build` until it gets an answer that is not transient, retrying
/// 408, 429, 5xx, timeouts, dropped connections and cut bodies with capped backoff and
/// jitter, honouring `Retry-After` (capped by the policy). Stops early at `deadline`.
///
/// `what` names the request in logs (no secrets, no personal data).
///
/// # Errors
/// [`Failure`] when no attempt got a non-transient answer.
pub async fn send_with_retry(
    build: impl Fn() -> reqwest::RequestBuilder,
    policy: &RetryPolicy,
    limiter: Option<&RateLimiter>,
    counters: &Counters,
    deadline: Option<Instant>,
    what: &str,
) -> Result<Reply, Failure> {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        if let Some(limiter) = limiter {
            limiter.acquire().await;
        }
        let request = build();
        let body_len = request
            .try_clone()
            .and_then(|r| r.build().ok())
            .and_then(|r| r.body().and_then(|b| b.as_bytes()).map(<[u8]>::len))
            .unwrap_or(0);
        Counters::add(&counters.requests, 1);
        Counters::add(&counters.bytes_sent, body_len as u64);
        let outcome = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                match response.bytes().await {
                    Ok(body) => Ok(Reply {
                        status,
                        headers,
                        body,
                    }),
                    Err(e) => Err(format!(
                        "HTTP {status} with a body cut short ({})",
                        describe(&e)
                    )),
                }
            }
            Err(e) => Err(describe(&e)),
        };
        let (last, hinted) = match outcome {
            Ok(reply) if classify(reply.status) == Verdict::Done => {
                if attempt > 1 {
                    tracing::info!(
                        request = what,
                        attempt,
                        status = reply.status,
                        "Request succeeded after retrying."
                    );
                }
                return Ok(reply);
            }
            Ok(reply) => {
                let hint = retry_after(&reply.headers, chrono::Utc::now().timestamp());
                (format!("HTTP {}", reply.status), hint)
            }
            Err(transport) => (transport, None),
        };
        if attempt >= policy.max_attempts {
            return Err(Failure::Exhausted {
                attempts: attempt,
                last,
            });
        }
        let delay = hinted.map_or_else(|| policy.backoff(attempt), |d| d.min(policy.cap));
        if let Some(deadline) = deadline {
            if Instant::now() + delay >= deadline {
                return Err(Failure::Deadline { last });
            }
        }
        Counters::add(&counters.retries, 1);
        tracing::info!(
            request = what,
            attempt,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            error = %last,
            "Retrying request."
        );
        tokio::time::sleep(delay).await;
    }
}

/// A transport error in words, without the URL (which may carry a token in a query string).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "connection dropped while reading the answer"
    } else if e.is_request() {
        "connection failed"
    } else {
        "transport error"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind} ({detail})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_table() {
        for (status, verdict) in [
            (200, Verdict::Done),
            (207, Verdict::Done),
            (301, Verdict::Done),
            (400, Verdict::Done),
            (401, Verdict::Done),
            (403, Verdict::Done),
            (404, Verdict::Done),
            (408, Verdict::Retry),
            (413, Verdict::Done),
            (429, Verdict::Retry),
            (500, Verdict::Retry),
            (501, Verdict::Done),
            (502, Verdict::Retry),
            (503, Verdict::Retry),
            (504, Verdict::Retry),
        ] {
            assert_eq!(classify(status), verdict, "status {status}");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        assert_eq!(policy.ceiling(1), Duration::from_millis(100));
        assert_eq!(policy.ceiling(2), Duration::from_millis(200));
        assert_eq!(policy.ceiling(4), Duration::from_millis(800));
        assert_eq!(policy.ceiling(5), Duration::from_secs(1));
        assert_eq!(policy.ceiling(60), Duration::from_secs(1));
        for attempt in 1..8 {
            let d = policy.backoff(attempt);
            assert!(
                d <= policy.ceiling(attempt) && d >= policy.ceiling(attempt) / 2,
                "{d:?}"
            );
        }
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers, 0), None);
        headers.insert(reqwest::header::RETRY_AFTER, "7".parse().expect("header"));
        assert_eq!(retry_after(&headers, 0), Some(Duration::from_secs(7)));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Sun, 01 Nov 2026 00:00:10 GMT".parse().expect("header"),
        );
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
            .expect("date")
            .timestamp();
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(10)));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "soon".parse().expect("header"),
        );
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn excerpt_cuts_on_char_boundary() {
        let reply = Reply {
            status: 500,
            headers: HeaderMap::new(),
            body: Bytes::from("ééé"),
        };
        assert_eq!(reply.body_excerpt(3), "é");
    }
}

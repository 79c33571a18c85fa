//! Seeded, deterministic fault injection for the fakes, configurable per route.
//!
//! [`Faults::wrap`] puts a middleware in front of any router. For each request it bumps the
//! counter of every rule whose route matches, then applies the first of those rules whose
//! trigger fires. Counters are per rule and 1-based, so "the 3rd `PUT /api/v1/customers`"
//! means the same request whichever other rules exist. Random triggers are drawn from the
//! plan's seed, the rule's index and the request number (splitmix64), so a plan replays
//! exactly for the same sequence of requests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::fake::server::ConnectionHandle;

/// What goes wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer normally, after this delay.
    Latency(Duration),
    /// 429, with or without a `Retry-After` (seconds).
    TooManyRequests { retry_after: Option<u64> },
    /// This 5xx status, without applying the request.
    ErrorBefore(u16),
    /// Apply the request, then answer this 5xx status.
    ErrorAfter(u16),
    /// Never answer within this long (beyond any client timeout).
    Hang(Duration),
    /// This status with an HTML body, without applying the request.
    Html(u16),
    /// Drop the connection without a complete response, without applying the request.
    Drop,
}

/// Which requests to a route a rule applies to. Request numbers are 1-based, counted per rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// Every request.
    Always,
    /// These request numbers.
    Nth(Vec<u64>),
    /// Request numbers `from..=to`.
    Range { from: u64, to: u64 },
    /// Every k-th request.
    Every(u64),
    /// Each request with this probability, drawn from the plan's seed.
    Random { probability: f64 },
}

/// One rule: a route, when, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// `"METHOD /path/prefix"`, `"/path/prefix"` (any method) or `"*"`.
    pub route: String,
    pub trigger: Trigger,
    pub fault: Fault,
}

impl FaultRule {
    /// A rule for `route`, `trigger` and `fault`.
    pub fn new(route: impl Into<String>, trigger: Trigger, fault: Fault) -> Self {
        FaultRule {
            route: route.into(),
            trigger,
            fault,
        }
    }

    /// Whether this rule's route covers `method` and `path`. Methods compare without case;
    /// the path is a plain prefix.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        let route = self.route.trim();
        if route == "*" {
            return true;
        }
        match route.split_once(' ') {
            Some((rule_method, prefix)) => {
                rule_method.eq_ignore_ascii_case(method) && path.starts_with(prefix.trim())
            }
            None => path.starts_with(route),
        }
    }
}

/// A set of rules with the seed for random triggers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    pub seed: u64,
    pub rules: Vec<FaultRule>,
}

impl FaultPlan {
    /// An empty plan with this seed.
    pub fn seeded(seed: u64) -> Self {
        FaultPlan {
            seed,
            rules: Vec::new(),
        }
    }

    /// This plan with one more rule (rules are tried in the order added).
    pub fn rule(mut self, route: impl Into<String>, trigger: Trigger, fault: Fault) -> Self {
        self.rules.push(FaultRule::new(route, trigger, fault));
        self
    }
}

/// A fault that fired, for tests to assert on.
///
/// The middleware also puts it in the extensions of the response it produced, so an outer
/// layer (a request log) can tell a dropped or hung request from an answered one.
#[derive(Debug, Clone, PartialEq)]
pub struct FiredFault {
    pub method: String,
    pub path: String,
    /// Index of the rule in [`FaultPlan::rules`] (0-based).
    pub rule: usize,
    pub fault: Fault,
}

impl FiredFault {
    /// Whether the client got no status at all (dropped or hung), as `RequestRecord::status`
    /// reports with 0.
    pub fn leaves_no_answer(&self) -> bool {
        matches!(self.fault, Fault::Drop | Fault::Hang(_))
    }
}

/// The plan and what it has counted and fired so far.
#[derive(Debug, Default)]
struct FaultState {
    plan: FaultPlan,
    /// Requests seen per rule, parallel to `plan.rules`.
    counters: Vec<u64>,
    fired: Vec<FiredFault>,
}

impl FaultState {
    /// Counts a request against every matching rule and returns the fault to apply, if any.
    fn decide(&mut self, method: &str, path: &str) -> Option<FiredFault> {
        self.counters.resize(self.plan.rules.len(), 0);
        let mut chosen = None;
        for (index, rule) in self.plan.rules.iter().enumerate() {
            if !rule.matches(method, path) {
                continue;
            }
            self.counters[index] += 1;
            let request = self.counters[index];
            if chosen.is_none() && fires(&rule.trigger, self.plan.seed, index, request) {
                chosen = Some(FiredFault {
                    method: method.to_owned(),
                    path: path.to_owned(),
                    rule: index,
                    fault: rule.fault.clone(),
                });
            }
        }
        if let Some(fired) = &chosen {
            self.fired.push(fired.clone());
        }
        chosen
    }
}

/// Whether `trigger` fires for the `request`-th request (1-based) of rule `rule`.
fn fires(trigger: &Trigger, seed: u64, rule: usize, request: u64) -> bool {
    match trigger {
        Trigger::Always => true,
        Trigger::Nth(numbers) => numbers.contains(&request),
        Trigger::Range { from, to } => (*from..=*to).contains(&request),
        Trigger::Every(k) => *k > 0 && request % k == 0,
        Trigger::Random { probability } => {
            unit_draw(seed, rule as u64, request) < probability.clamp(0.0, 1.0)
        }
    }
}

/// A number in `[0, 1)` that depends only on its inputs.
fn unit_draw(seed: u64, rule: u64, request: u64) -> f64 {
    let mixed = splitmix64(seed ^ splitmix64(rule.wrapping_add(0x5851_f42d_4c95_7f2d)) ^ request);
    // The top 53 bits fill an f64 mantissa exactly.
    (mixed >> 11) as f64 / (1u64 << 53) as f64
}

/// Steele, Lea and Flood's splitmix64 finaliser: a cheap, well-mixed 64-bit hash.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The shared, replaceable fault plan of one fake.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    inner: Arc<Mutex<FaultState>>,
}

impl Faults {
    /// Faults following `plan`.
    pub fn new(plan: FaultPlan) -> Self {
        let faults = Faults::default();
        faults.set_plan(plan);
        faults
    }

    /// Replaces the plan, restarting its counters and forgetting what fired before.
    pub fn set_plan(&self, plan: FaultPlan) {
        let mut state = self.lock();
        state.counters = vec![0; plan.rules.len()];
        state.plan = plan;
        state.fired.clear();
    }

    /// Removes every rule: requests pass through untouched from now on.
    pub fn clear(&self) {
        self.set_plan(FaultPlan::default());
    }

    /// The faults that fired so far, in the order they fired.
    pub fn fired(&self) -> Vec<FiredFault> {
        self.lock().fired.clone()
    }

    /// Wraps a router so its requests go through this plan.
    pub fn wrap(&self, router: axum::Router) -> axum::Router {
        let faults = self.clone();
        router.layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                let faults = faults.clone();
                async move { faults.handle(request, next).await }
            },
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultState> {
        // A panic while holding this lock can only come from a bug in this module; the
        // state is still consistent enough for a test fake, so keep serving.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn handle(&self, request: Request, next: Next) -> Response {
        let method = request.method().as_str().to_owned();
        let path = request.uri().path().to_owned();
        let Some(fired) = self.lock().decide(&method, &path) else {
            return next.run(request).await;
        };
        tracing::debug!(method, path, rule = fired.rule, fault = ?fired.fault, "Fake fault fired.");
        let mut response = match &fired.fault {
            Fault::Latency(delay) => {
                tokio::time::sleep(*delay).await;
                next.run(request).await
            }
            Fault::TooManyRequests { retry_after } => {
                let mut response = json_error(429, "Too Many Requests (injected fault)");
                if let Some(seconds) = retry_after {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(*seconds));
                }
                response
            }
            Fault::ErrorBefore(code) => json_error(*code, "Internal error (injected fault)"),
            Fault::ErrorAfter(code) => {
                let applied = next.run(request).await;
                // Read the inner body to the end so the handler's work is complete.
                let _ = axum::body::to_bytes(applied.into_body(), usize::MAX).await;
                json_error(
                    *code,
                    "Internal error after applying the request (injected fault)",
                )
            }
            Fault::Hang(duration) => {
                tokio::time::sleep(*duration).await;
                json_error(504, "Gateway Timeout after a hang (injected fault)")
            }
            Fault::Html(code) => html_error(*code),
            Fault::Drop => broken_response(&request),
        };
        response.extensions_mut().insert(fired);
        response
    }
}

/// A JSON error body that both fakes' clients can parse as an error.
fn json_error(code: u16, message: &str) -> Response {
    let body = serde_json::json!({
        "meta": { "error": message },
        "errors": [ { "message": message } ],
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status(code);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// An error page like the one a reverse proxy serves when the service behind it fails.
fn html_error(code: u16) -> Response {
    let status = status(code);
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// Closes the connection before any response byte when the server allows it (see
/// [`ConnectionHandle`]); otherwise answers headers promising a body that errors, which the
/// client sees as a broken transfer.
fn broken_response(request: &Request) -> Response {
    let closed = request
        .extensions()
        .get::<ConnectInfo<ConnectionHandle>>()
        .is_some_and(|ConnectInfo(connection)| connection.close());
    let stream = futures_util::stream::once(async {
        Err::<bytes::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection dropped (injected fault)",
        ))
    });
    let mut response = Response::new(Body::from_stream(stream));
    if !closed {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("1024"));
    }
    response
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_by_method_and_prefix() {
        let rule = |route: &str| FaultRule::new(route, Trigger::Always, Fault::Drop);
        assert!(rule("*").matches("GET", "/x"));
        assert!(rule("/api/v1").matches("PUT", "/api/v1/customers/1"));
        assert!(rule("put /api/v1/customers").matches("PUT", "/api/v1/customers/1"));
        assert!(!rule("POST /api/v1/customers").matches("PUT", "/api/v1/customers/1"));
        assert!(!rule("/api/v2").matches("POST", "/api/v1/customers"));
    }

    #[test]
    fn triggers_fire_on_the_configured_request_numbers() {
        let fired = |trigger: Trigger| -> Vec<u64> {
            (1..=10).filter(|n| fires(&trigger, 7, 0, *n)).collect()
        };
        assert_eq!(fired(Trigger::Nth(vec![2, 5])), vec![2, 5]);
        assert_eq!(fired(Trigger::Range { from: 3, to: 5 }), vec![3, 4, 5]);
        assert_eq!(fired(Trigger::Every(3)), vec![3, 6, 9]);
        assert_eq!(fired(Trigger::Every(0)), Vec::<u64>::new());
        assert_eq!(fired(Trigger::Always).len(), 10);
    }

    #[test]
    fn random_draws_are_uniform_enough_and_seeded() {
        let hits = |seed: u64| -> Vec<u64> {
            (1..=10_000)
                .filter(|n| fires(&Trigger::Random { probability: 0.3 }, seed, 0, *n))
                .collect()
        };
        let first = hits(42);
        assert_eq!(first, hits(42));
        assert_ne!(first, hits(43));
        assert!((2_700..3_300).contains(&first.len()), "{}", first.len());
    }

    #[test]
    fn each_matching_rule_counts_even_when_an_earlier_rule_fires() {
        let mut state = FaultState {
            plan: FaultPlan::seeded(1)
                .rule("/a", Trigger::Nth(vec![1]), Fault::ErrorBefore(500))
                .rule("*", Trigger::Nth(vec![2]), Fault::ErrorBefore(503)),
            ..FaultState::default()
        };
        let first = state.decide("GET", "/a").map(|f| f.rule);
        let second = state.decide("GET", "/b").map(|f| f.rule);
        assert_eq!((first, second), (Some(0), Some(1)));
        assert_eq!(state.counters, vec![1, 2]);
    }
}

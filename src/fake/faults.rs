//! Seeded, deterministic fault injection for the fakes, configurable per route.
//!
//! SKELETON: the types are the contract; `Faults::wrap` passes everything through for now.

use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    Always,
    /// These request numbers.
    Nth(Vec<u64>),
    /// Request numbers `from..=to`.
    Range {
        from: u64,
        to: u64,
    },
    /// Every k-th request.
    Every(u64),
    /// Each request with this probability, drawn from the plan's seed.
    Random {
        probability: f64,
    },
}

/// One rule: a route, when, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// `"METHOD /path/prefix"`, `"/path/prefix"` (any method) or `"*"`.
    pub route: String,
    pub trigger: Trigger,
    pub fault: Fault,
}

/// A set of rules with the seed for random triggers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    pub seed: u64,
    pub rules: Vec<FaultRule>,
}

/// A fault that fired, for tests to assert on.
#[derive(Debug, Clone, PartialEq)]
pub struct FiredFault {
    pub method: String,
    pub path: String,
    pub rule: usize,
    pub fault: Fault,
}

/// The shared, replaceable fault plan of one fake.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    inner: Arc<Mutex<FaultPlan>>,
}

impl Faults {
    /// Faults following `plan`.
    pub fn new(plan: FaultPlan) -> Self {
        Faults {
            inner: Arc::new(Mutex::new(plan)),
        }
    }

    /// Replaces the plan (and restarts its counters).
    pub fn set_plan(&self, plan: FaultPlan) {
        *self.inner.lock().expect("fault plan lock poisoned") = plan;
    }

    /// The faults that fired so far.
    pub fn fired(&self) -> Vec<FiredFault> {
        Vec::new()
    }

    /// Wraps a router so its requests go through this plan.
    pub fn wrap(&self, router: axum::Router) -> axum::Router {
        router
    }
}

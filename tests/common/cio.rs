//! What the fake customer.io holds, in a comparable form, and counts of what it was asked.
//!
//! Two request counts that are easy to mix up:
//! - [`write_endpoint_requests`] counts requests of any kind to the endpoints that write
//!   (identifies, events, batches), answered or not: what a kill point waits for, or what a
//!   run that must send nothing must not have tried;
//! - [`changing_requests`] counts requests that may change something (any method but GET,
//!   on any path): zero means customer.io was only read (the region check).

use std::collections::BTreeMap;

use ciosync::fake::cio::FakeCio;
use serde_json::{Map, Value};

/// One stored event, comparable: (customer id, name, id, timestamp, data as JSON text).
pub type EventKey = (String, String, Option<String>, Option<i64>, String);

/// What the fake customer.io holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    pub profiles: BTreeMap<String, Map<String, Value>>,
    /// Every stored event, sorted (an event stored twice shows up twice).
    pub events: Vec<EventKey>,
}

/// What `cio` holds now.
pub fn content(cio: &FakeCio) -> Content {
    let mut events: Vec<EventKey> = cio
        .events()
        .into_iter()
        .map(|e| (e.customer_id, e.name, e.id, e.timestamp, e.data.to_string()))
        .collect();
    events.sort();
    Content {
        profiles: cio.profiles(),
        events,
    }
}

impl Content {
    /// What differs from `expected`, in a few lines: profiles missing, extra or different,
    /// events missing or extra (an event stored twice counts as extra). Empty when equal.
    pub fn diff(&self, expected: &Content) -> String {
        let mut out = Vec::new();
        for (id, attributes) in &expected.profiles {
            match self.profiles.get(id) {
                None => out.push(format!("profile {id} missing")),
                Some(got) if got != attributes => {
                    out.push(format!("profile {id} differs: {got:?} != {attributes:?}"))
                }
                Some(_) => {}
            }
        }
        for id in self.profiles.keys() {
            if !expected.profiles.contains_key(id) {
                out.push(format!("profile {id} extra"));
            }
        }
        let (mut got, mut want) = (
            self.events.iter().peekable(),
            expected.events.iter().peekable(),
        );
        loop {
            match (got.peek(), want.peek()) {
                (Some(g), Some(w)) if g == w => {
                    got.next();
                    want.next();
                }
                (Some(g), Some(w)) if g < w => out.push(format!("event extra: {:?}", got.next())),
                (_, Some(_)) => out.push(format!("event missing: {:?}", want.next())),
                (Some(_), None) => out.push(format!("event extra: {:?}", got.next())),
                (None, None) => break,
            }
        }
        let shown: Vec<String> = out.iter().take(12).cloned().collect();
        if out.len() > shown.len() {
            format!("{} differences, first: {}", out.len(), shown.join("; "))
        } else {
            shown.join("; ")
        }
    }
}

/// Fails with [`Content::diff`] unless `actual` equals `expected`.
#[track_caller]
pub fn assert_same_content(actual: &Content, expected: &Content, what: &str) {
    let diff = actual.diff(expected);
    assert!(diff.is_empty(), "{what}: {diff}");
}

/// Requests `cio` received on its write endpoints (`/api/v1/customers…`: identifies and
/// events; `/api/v2/…`: batches and entities), whatever their method and whatever the
/// answer (failed, dropped or redirected ones count too). The region check is not one.
pub fn write_endpoint_requests(cio: &FakeCio) -> usize {
    cio.requests()
        .iter()
        .filter(|r| r.path.starts_with("/api/v1/customers") || r.path.starts_with("/api/v2/"))
        .count()
}

/// Requests `cio` received that may change something: every method but GET, on any path.
pub fn changing_requests(cio: &FakeCio) -> usize {
    cio.requests().iter().filter(|r| r.method != "GET").count()
}

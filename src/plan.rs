//! Pure planning (SPEC 4.1 to 4.3): from the state, the people and applications read and
//! the run's start time, what to send. No I/O, no clock.
//!
//! SKELETON: to be built.

// TEMPORARY STUB (replaced by the plan branch).
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::{LateEvents, ProgrammeName};
use crate::model::{Application, ApplicationId, Person, PersonId};
use crate::state::{ApplicationState, Fingerprint, PersonState, State};

pub struct Fingerprinter {
    _key: [u8; 32],
}
impl Fingerprinter {
    pub fn new(key: [u8; 32]) -> Self {
        Fingerprinter { _key: key }
    }
    pub fn fingerprint(&self, _attr: &str, _value: &Value) -> Fingerprint {
        1
    }
}
pub struct PlanOptions {
    pub site_id: String,
    pub programme_name: ProgrammeName,
    pub late_events: LateEvents,
    pub full_read: bool,
}
#[derive(Debug, Clone, Serialize, Default)]
pub struct Plan {
    pub people: Vec<PersonPlan>,
    pub stats: PlanStats,
}
#[derive(Debug, Clone, Serialize)]
pub struct PersonPlan {
    pub person_id: PersonId,
    pub identify: Option<Identify>,
    pub events: Vec<PlannedEvent>,
}
#[derive(Debug, Clone, Serialize)]
pub struct Identify {
    pub attributes: Map<String, Value>,
    #[serde(skip)]
    pub after: PersonState,
}
#[derive(Debug, Clone, Serialize)]
pub struct PlannedEvent {
    pub application_id: ApplicationId,
    pub name: String,
    pub id: String,
    pub timestamp: i64,
    pub data: Map<String, Value>,
    #[serde(skip)]
    pub after: ApplicationState,
}
#[derive(Debug, Clone, Serialize, Default)]
pub struct PlanStats {
    pub people_seen: u64,
    pub applications_seen: u64,
    pub skipped: BTreeMap<String, u64>,
    pub skipped_ids: Vec<(String, u64)>,
    pub unknown_statuses: BTreeMap<String, u64>,
    pub truncated_values: u64,
    pub people_left_scope: u64,
    pub people_returned: u64,
}
pub fn plan(
    _state: &State,
    _people: &[Person],
    _applications: &[Application],
    _fingerprinter: &Fingerprinter,
    _options: &PlanOptions,
    _now: DateTime<Utc>,
) -> Plan {
    Plan::default()
}
impl Plan {
    pub fn event_count(&self) -> usize {
        self.people.iter().map(|p| p.events.len()).sum()
    }
    pub fn identify_count(&self) -> usize {
        self.people.iter().filter(|p| p.identify.is_some()).count()
    }
}

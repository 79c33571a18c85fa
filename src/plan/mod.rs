//! Pure planning (SPEC 4.1 to 4.3, the scope rule of 5.4, and the operator rules of 8.2 and
//! 8.3): from the state, the people and applications read, and the run's start time, what to
//! send to customer.io. Forgotten ids get nothing (8.2); excluded attributes are never sent
//! and cleared once where the state says customer.io holds them (8.3); people who leave get
//! `in_scope = false` or, with `on_leave = "delete"`, a removal (8.3).
//!
//! No I/O and no clock: `now` comes in as an argument, and the output is sorted (people by
//! id, each person's applications by id, each application's events in rule order) so the
//! same input always gives the same plan. Every write carries the state it leads to once
//! customer.io confirms it (`after`), which the sync records with `State::confirm_identify`
//! and `State::confirm_event`; confirming all of them and planning again gives an empty
//! plan.

mod flow;
mod profile;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::{LateEvents, OnLeave, ProgrammeName};
use crate::model::{Application, ApplicationId, EventKind, Person, PersonId, Programme};
use crate::state::{ApplicationState, PersonState, Removal, State};

pub use flow::EventRule;
pub use profile::{
    attribute_statuses, attribute_values_of, decide_attribute, excluded_mask, AttributeDecision,
    AttributeStatus, Excluded, Fingerprinter, IN_SCOPE_ATTRIBUTE, MAX_ATTRIBUTE_VALUE_BYTES,
};

/// customer.io's limit on an event name, in bytes.
pub const MAX_EVENT_NAME_BYTES: usize = 100;
/// The most serialized event data ciosync sends, in bytes. customer.io allows 100,000 in
/// v1, but a whole v2 batch operation must stay under 32,000, so the data is kept under
/// 30,000 for both APIs (only an absurdly long opportunity title is ever cut).
pub const MAX_EVENT_DATA_BYTES: usize = 30_000;
/// customer.io triggers campaigns only for events stamped within this window (SPEC 4.3).
pub const CAMPAIGN_WINDOW_HOURS: i64 = 72;

/// Skip reasons, as they appear in [`PlanStats::skipped`].
pub mod skip {
    /// The application names no usable person.
    pub const WITHOUT_PERSON: &str = "application_without_person";
    /// The application's opportunity has no programme name.
    pub const WITHOUT_PROGRAMME: &str = "application_without_programme";
    /// The application has no opportunity id.
    pub const WITHOUT_OPPORTUNITY: &str = "application_without_opportunity";
    /// An event name would exceed customer.io's 100-byte limit.
    pub const EVENT_NAME_TOO_LONG: &str = "event_name_too_long";
    /// A person (or an application of a person) on the forgotten list (SPEC 8.2).
    pub const FORGOTTEN: &str = "forgotten";
}

/// The run's settings that planning needs.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// The customer.io site id (part of every event id).
    pub site_id: String,
    /// Which programme name goes into event names (the other one is the fallback).
    pub programme_name: ProgrammeName,
    /// Whether old events of known applications are restamped with `now` (SPEC 4.3).
    pub late_events: LateEvents,
    /// `true` when `people` is the whole population of the configured LCs, so a person of
    /// the state who is missing from it has left scope.
    pub full_read: bool,
    /// Attributes never sent (`attributes.exclude`, SPEC 8.3), by position.
    pub excluded: Excluded,
    /// What happens to people who leave (`scope.on_leave`, SPEC 8.3).
    pub on_leave: OnLeave,
}

/// Everything to send this run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Only people with something to send, sorted by person id.
    pub people: Vec<PersonPlan>,
    pub stats: PlanStats,
}

/// What to send for one person: the identify first (confirmed before any event), then the
/// events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PersonPlan {
    pub person_id: PersonId,
    pub identify: Option<Identify>,
    /// By application id, then in rule order within an application.
    pub events: Vec<PlannedEvent>,
    /// The person's customer.io profile is deleted (or suppressed) and they leave the state
    /// (SPEC 8.2, 8.3); such a person has nothing else planned.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "removal_action"
    )]
    pub removal: Option<Removal>,
}

/// A removal as a plan shows it: its customer.io action.
fn removal_action<S: serde::Serializer>(
    removal: &Option<Removal>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(removal.map_or("", |r| r.action()))
}

/// Attributes to send, kept as their serialized JSON object: a first sync plans one per
/// person, and a map per person would cost several times the bytes.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Attributes(Box<serde_json::value::RawValue>);

impl Attributes {
    /// Serializes `map`.
    pub fn from_map(map: &Map<String, Value>) -> Attributes {
        Attributes(serde_json::value::to_raw_value(map).expect("a JSON map always serializes"))
    }

    /// The attributes as a map.
    pub fn to_map(&self) -> Map<String, Value> {
        serde_json::from_str(self.0.get()).expect("written from a JSON map")
    }

    /// The attribute names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.to_map().keys().cloned().collect()
    }

    /// Whether there is no attribute at all (an identify that only creates the profile).
    pub fn is_empty(&self) -> bool {
        self.0.get() == "{}"
    }

    /// The JSON object text.
    pub fn json(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for Attributes {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

/// Why a person gets an identify: what the dry run's totals count, classified here where
/// the identify is planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifyKind {
    /// New to the state: this identify creates the profile.
    New,
    /// Known to the state, in scope: some attribute values changed.
    Changed,
    /// A full read no longer finds them in the configured LCs: `in_scope = false` (SPEC 5.4).
    LeavingScope,
    /// Back in the configured LCs after leaving: `in_scope = true`, and what changed meanwhile.
    ComingBack,
}

/// A profile update.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Identify {
    /// Only the changed attributes; `null` clears one.
    pub attributes: Attributes,
    pub kind: IdentifyKind,
    /// The person's state once this identify is confirmed.
    #[serde(skip)]
    pub after: PersonState,
}

/// An event's `data` (SPEC 4.2): the three ids as JSON integers, the opportunity title,
/// the programme (as in the event name), the current GIS status and the true time. Shared
/// parts are reference-counted: an application's events carry the same strings, and a first
/// sync plans hundreds of thousands of events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventData {
    pub application_id: ApplicationId,
    pub opportunity_id: u64,
    /// The PHP connector's key for the opportunity id.
    pub oid: u64,
    pub opportunity_title: Option<Arc<str>>,
    pub programme: Arc<str>,
    pub status: Arc<str>,
    /// The true time, unix seconds (the timestamp may be `now`, SPEC 4.3).
    pub occurred_at: i64,
}

impl EventData {
    /// As the JSON object sent.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("event data always serializes")
    }
}

/// One event to send.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedEvent {
    pub application_id: ApplicationId,
    /// `<programme><step>`, e.g. `GCDPapproved`.
    pub name: String,
    /// ULID from [`event_id`]: the same on every resend of this event.
    pub id: String,
    /// Unix seconds sent as the event's timestamp (the true time, or `now` per SPEC 4.3).
    pub timestamp: i64,
    pub data: EventData,
    /// The rule that produced it (`explain` shows it).
    #[serde(skip)]
    pub rule: EventRule,
    /// The occurrence it carries (rule 3): 2 for a second `approved` after a break.
    #[serde(skip)]
    pub occurrence: u32,
    /// The application's state once this event is confirmed.
    #[serde(skip)]
    pub after: ApplicationState,
}

/// Counts for the run summary (SPEC 6).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PlanStats {
    /// Distinct people read.
    pub people_seen: u64,
    /// Distinct applications read.
    pub applications_seen: u64,
    /// Applications skipped, by reason (see [`skip`]).
    pub skipped: BTreeMap<String, u64>,
    /// (reason, application id) of each skip, for info logs.
    pub skipped_ids: Vec<(String, u64)>,
    /// Applications with a status in no rank nor side list, by status value.
    pub unknown_statuses: BTreeMap<String, u64>,
    /// Strings cut to a customer.io limit (attribute values, opportunity titles).
    pub truncated_values: u64,
    /// People who got `in_scope = false` (full reads only), or a removal with
    /// `on_leave = "delete"`.
    pub people_left_scope: u64,
    /// People whose profile is to be deleted because they left or GIS no longer has them
    /// (`on_leave = "delete"`).
    pub people_to_delete: u64,
    /// People who got `in_scope = true` back.
    pub people_returned: u64,
    /// Applications left for a later run because their person was not in this read.
    pub applications_deferred: u64,
}

impl PlanStats {
    /// Counts a record skipped for `reason`; `id` is the application's (or person's) id.
    fn skip(&mut self, reason: &str, id: u64) {
        *self.skipped.entry(reason.to_owned()).or_default() += 1;
        self.skipped_ids.push((reason.to_owned(), id));
    }
}

/// What happens to a person of the state who left the configured LCs, or whom GIS no longer
/// has (SPEC 5.4, 8.3).
#[derive(Debug, Clone, PartialEq)]
pub enum Departure {
    /// `on_leave = "mark"`: `in_scope = false`, once.
    Mark(Identify),
    /// `on_leave = "delete"`: their profile is deleted and they leave the state.
    Delete(Removal),
}

impl Plan {
    /// Number of events in the plan.
    pub fn event_count(&self) -> usize {
        self.people.iter().map(|p| p.events.len()).sum()
    }

    /// Number of identifies in the plan.
    pub fn identify_count(&self) -> usize {
        self.people.iter().filter(|p| p.identify.is_some()).count()
    }
}

/// The event id (SPEC 4.2): a ULID made of the first 128 bits of SHA-256 over the
/// length-prefixed site id, the application id, the length-prefixed event name and the
/// occurrence. A pure function: a resend carries the same id, different events never share
/// one.
pub fn event_id(
    site_id: &str,
    application_id: ApplicationId,
    event_name: &str,
    occurrence: u32,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"ciosync-event-v1");
    hasher.update((site_id.len() as u64).to_be_bytes());
    hasher.update(site_id.as_bytes());
    hasher.update(application_id.to_be_bytes());
    hasher.update((event_name.len() as u64).to_be_bytes());
    hasher.update(event_name.as_bytes());
    hasher.update(occurrence.to_be_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    ulid::Ulid::from_bytes(first).to_string()
}

/// The programme as configured: the chosen name, else the other one; blank names count as
/// missing.
pub fn programme_name(programme: Option<&Programme>, choice: ProgrammeName) -> Option<&str> {
    let programme = programme?;
    let (preferred, other) = match choice {
        ProgrammeName::ShortName => (&programme.short_name, &programme.short_name_display),
        ProgrammeName::ShortNameDisplay => (&programme.short_name_display, &programme.short_name),
    };
    fn usable(name: &Option<String>) -> Option<&str> {
        name.as_deref().filter(|n| !n.trim().is_empty())
    }
    usable(preferred).or_else(|| usable(other))
}

/// Plans record by record, as a run reads them (SPEC 4.1 to 4.3, 5.4). [`plan`] is the same
/// for a whole read at once; both are this code. Pure: no I/O, no clock.
pub struct Planner<'a> {
    options: &'a PlanOptions,
    fingerprinter: &'a Fingerprinter,
    now: DateTime<Utc>,
    /// What was planned and skipped so far.
    pub stats: PlanStats,
}

impl<'a> Planner<'a> {
    /// A planner for one run that started at `now`.
    pub fn new(
        options: &'a PlanOptions,
        fingerprinter: &'a Fingerprinter,
        now: DateTime<Utc>,
    ) -> Planner<'a> {
        Planner {
            options,
            fingerprinter,
            now,
            stats: PlanStats::default(),
        }
    }

    /// The identify a person read from GIS needs, if any (SPEC 4.1, the return rule of 5.4,
    /// exclusion, 8.3); nothing for a forgotten id (8.2). Call it once per distinct person.
    pub fn person(&mut self, state: &State, person: &Person) -> Option<Identify> {
        self.stats.people_seen += 1;
        if state.is_forgotten(person.id) {
            self.stats.skip(skip::FORGOTTEN, person.id);
            return None;
        }
        profile::plan_identify(
            state.people.get(&person.id),
            person,
            &self.options.excluded,
            self.fingerprinter,
            &mut self.stats,
        )
    }

    /// The events of an application (rules 1 to 5, SPEC 4.3, limits). `person_read` says
    /// whether its person was read in this run: if not, it is left for a later run (rule 5).
    /// Call it once per distinct application.
    pub fn application(
        &mut self,
        state: &State,
        application: &Application,
        person_read: impl Fn(PersonId) -> bool,
    ) -> Vec<PlannedEvent> {
        self.stats.applications_seen += 1;
        let Some(person_id) = application.person_id else {
            self.stats.skip(skip::WITHOUT_PERSON, application.id);
            return Vec::new();
        };
        if state.is_forgotten(person_id) {
            self.stats.skip(skip::FORGOTTEN, application.id);
            return Vec::new();
        }
        if !person_read(person_id) {
            // Rule 5: not visible yet, or out of scope; a later run picks it up.
            self.stats.applications_deferred += 1;
            return Vec::new();
        }
        plan_application(
            state,
            application,
            person_id,
            self.options,
            self.now,
            &mut self.stats,
        )
    }

    /// What happens to a person of the state whom a full read no longer finds in the
    /// configured LCs (SPEC 5.4, 8.3): `in_scope = false`, once; with `on_leave = "delete"`,
    /// a removal (also for people marked out of scope before the setting changed). Nothing
    /// for a forgotten id.
    pub fn left_scope(&mut self, state: &State, person_id: PersonId) -> Option<Departure> {
        if state.is_forgotten(person_id) {
            return None;
        }
        let prior = state.people.get(&person_id)?;
        match self.options.on_leave {
            OnLeave::Mark if prior.in_scope => {
                self.stats.people_left_scope += 1;
                Some(Departure::Mark(profile::left_scope(
                    prior,
                    &self.options.excluded,
                    self.fingerprinter,
                )))
            }
            OnLeave::Mark => None,
            OnLeave::Delete => {
                self.stats.people_left_scope += 1;
                Some(Departure::Delete(self.delete(person_id)))
            }
        }
    }

    /// What happens to a person of the state whom GIS no longer has at all (a lookup by id
    /// answered nothing), seen by any read (SPEC 8.3): with `on_leave = "delete"`, a removal;
    /// with `"mark"` nothing, as a full read marks them when it notices (5.4).
    pub fn gone_from_gis(&mut self, state: &State, person_id: PersonId) -> Option<Removal> {
        if self.options.on_leave != OnLeave::Delete
            || state.is_forgotten(person_id)
            || !state.people.contains_key(&person_id)
        {
            return None;
        }
        Some(self.delete(person_id))
    }

    fn delete(&mut self, person_id: PersonId) -> Removal {
        self.stats.people_to_delete += 1;
        Removal {
            person_id,
            suppress: false,
            forget: false,
        }
    }

    /// What happens to people who leave (`scope.on_leave`).
    pub fn on_leave(&self) -> OnLeave {
        self.options.on_leave
    }

    /// Whether a run must look at people it does not read for excluded attributes to clear
    /// (SPEC 8.3): only when something is excluded.
    pub fn excludes_any(&self) -> bool {
        self.options.excluded.contains(&true)
    }

    /// The identify that clears the excluded attributes customer.io still holds for a person
    /// of the state whom this run does not read (SPEC 8.3), if any; nothing for a forgotten
    /// id. People read get the same clears in their own identify, and people who leave in
    /// their departure: call it only for people with nothing else planned.
    pub fn clear_excluded(&mut self, state: &State, person_id: PersonId) -> Option<Identify> {
        if state.is_forgotten(person_id) {
            return None;
        }
        let prior = state.people.get(&person_id)?;
        profile::clear_excluded(prior, &self.options.excluded, self.fingerprinter)
    }

    /// People of the state holding a value of an excluded attribute, in id order: who
    /// [`Planner::clear_excluded`] may have something for.
    pub fn holding_excluded(&self, state: &State) -> Vec<PersonId> {
        if !self.excludes_any() {
            return Vec::new();
        }
        state
            .people
            .iter()
            .filter(|(_, prior)| {
                profile::holds_excluded(prior, &self.options.excluded, self.fingerprinter)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// The removals of `ciosync forget` that customer.io has not confirmed yet (a kill cut
    /// them short, SPEC 8.2): sent again, in id order, until it does.
    pub fn unfinished_forgets(&self, state: &State) -> Vec<Removal> {
        state
            .forgotten
            .iter()
            .filter(|(_, entry)| !entry.confirmed)
            .map(|(&person_id, entry)| Removal {
                person_id,
                suppress: entry.suppressed,
                forget: true,
            })
            .collect()
    }
}

/// Plans one run from a whole read: the identifies and events that bring customer.io in
/// step with it (SPEC 4.1 to 4.3, 5.4), by [`Planner`]. Pure and deterministic.
pub fn plan(
    state: &State,
    people: &[Person],
    applications: &[Application],
    fingerprinter: &Fingerprinter,
    options: &PlanOptions,
    now: DateTime<Utc>,
) -> Plan {
    let mut planner = Planner::new(options, fingerprinter, now);
    // The GIS client de-duplicates what it reads; a record given twice anyway keeps its
    // first copy, as there.
    let mut people_by_id: BTreeMap<PersonId, &Person> = BTreeMap::new();
    for person in people {
        people_by_id.entry(person.id).or_insert(person);
    }
    let mut applications_by_id: BTreeMap<ApplicationId, &Application> = BTreeMap::new();
    for application in applications {
        applications_by_id
            .entry(application.id)
            .or_insert(application);
    }

    let mut plans: BTreeMap<PersonId, PersonPlan> = BTreeMap::new();
    fn entry(plans: &mut BTreeMap<PersonId, PersonPlan>, person_id: PersonId) -> &mut PersonPlan {
        plans.entry(person_id).or_insert_with(|| PersonPlan {
            person_id,
            identify: None,
            events: Vec::new(),
            removal: None,
        })
    }
    for application in applications_by_id.values() {
        let events = planner.application(state, application, |id| people_by_id.contains_key(&id));
        if let Some(first) = events.first() {
            entry(&mut plans, first.after.person_id)
                .events
                .extend(events);
        }
    }
    for (&person_id, person) in &people_by_id {
        if let Some(identify) = planner.person(state, person) {
            entry(&mut plans, person_id).identify = Some(identify);
        }
    }
    if options.full_read {
        for (&person_id, _) in state.people.iter() {
            if people_by_id.contains_key(&person_id) {
                continue;
            }
            match planner.left_scope(state, person_id) {
                Some(Departure::Mark(identify)) => {
                    entry(&mut plans, person_id).identify = Some(identify)
                }
                Some(Departure::Delete(removal)) => {
                    entry(&mut plans, person_id).removal = Some(removal)
                }
                None => {}
            }
        }
    }
    // People read had their clears planned with their identify, and people who left with
    // their departure.
    for person_id in planner.holding_excluded(state) {
        if people_by_id.contains_key(&person_id) || plans.contains_key(&person_id) {
            continue;
        }
        if let Some(identify) = planner.clear_excluded(state, person_id) {
            entry(&mut plans, person_id).identify = Some(identify);
        }
    }
    for removal in planner.unfinished_forgets(state) {
        entry(&mut plans, removal.person_id).removal = Some(removal);
    }
    Plan {
        people: plans.into_values().collect(),
        stats: planner.stats,
    }
}

/// The events of one application whose person was read (rules 1 to 5, SPEC 4.3, limits).
fn plan_application(
    state: &State,
    application: &Application,
    person_id: PersonId,
    options: &PlanOptions,
    now: DateTime<Utc>,
    stats: &mut PlanStats,
) -> Vec<PlannedEvent> {
    let Some(status) = flow::classify(&application.status) else {
        *stats
            .unknown_statuses
            .entry(application.status.clone())
            .or_default() += 1;
        return Vec::new();
    };
    let Some(programme) = programme_name(application.programme.as_ref(), options.programme_name)
    else {
        stats.skip(skip::WITHOUT_PROGRAMME, application.id);
        return Vec::new();
    };
    let Some(opportunity_id) = application.opportunity_id else {
        stats.skip(skip::WITHOUT_OPPORTUNITY, application.id);
        return Vec::new();
    };

    let prior = state.applications.get(&application.id);
    let current = match prior {
        Some(known) => ApplicationState {
            person_id,
            ..known.clone()
        },
        None => ApplicationState {
            person_id,
            ..ApplicationState::default()
        },
    };
    let flow_events = flow::advance(&current, status, &application.dates);
    if flow_events
        .iter()
        .any(|e| event_name(programme, e.kind).len() > MAX_EVENT_NAME_BYTES)
    {
        stats.skip(skip::EVENT_NAME_TOO_LONG, application.id);
        return Vec::new();
    }

    // SPEC 4.3: only applications known before this run may be restamped, so a first sync
    // never fires old campaigns.
    let restamp_before = match (options.late_events, prior) {
        (LateEvents::Now, Some(_)) => Some(now - Duration::hours(CAMPAIGN_WINDOW_HOURS)),
        _ => None,
    };
    let fallback = application.dates.updated_at.unwrap_or(now);
    let base = base_event_data(application, opportunity_id, programme, stats);
    flow_events
        .into_iter()
        .map(|event| {
            let name = event_name(programme, event.kind);
            let occurred_at = flow::own_date(event.kind, &application.dates).unwrap_or(fallback);
            let timestamp = match restamp_before {
                Some(limit) if occurred_at < limit => now,
                _ => occurred_at,
            };
            let data = EventData {
                occurred_at: occurred_at.timestamp(),
                ..base.clone()
            };
            PlannedEvent {
                application_id: application.id,
                id: event_id(&options.site_id, application.id, &name, event.occurrence),
                name,
                timestamp: timestamp.timestamp(),
                data,
                rule: event.rule,
                occurrence: event.occurrence,
                after: event.after,
            }
        })
        .collect()
}

/// `<programme><step>`.
fn event_name(programme: &str, kind: EventKind) -> String {
    format!("{programme}{}", kind.name())
}

/// The `data` shared by an application's events (SPEC 4.2), `occurred_at` left for each
/// event, with the opportunity title cut if the whole would exceed
/// [`MAX_EVENT_DATA_BYTES`] (counted once per application).
fn base_event_data(
    application: &Application,
    opportunity_id: u64,
    programme: &str,
    stats: &mut PlanStats,
) -> EventData {
    let mut data = EventData {
        application_id: application.id,
        opportunity_id,
        oid: opportunity_id,
        opportunity_title: application.opportunity_title.as_deref().map(Arc::from),
        programme: Arc::from(programme),
        status: Arc::from(application.status.as_str()),
        // The longest a timestamp can print, so the size check holds for every event.
        occurred_at: i64::MIN,
    };
    if serialized_len(&data) <= MAX_EVENT_DATA_BYTES {
        return data;
    }
    let Some(title) = application.opportunity_title.as_deref() else {
        return data;
    };
    // Longest title prefix (on a char boundary) that fits; JSON escaping makes the
    // serialized size non-linear in bytes, so search over prefix lengths.
    let fits = |cut: &str, data: &mut EventData| {
        data.opportunity_title = Some(Arc::from(cut));
        serialized_len(data) <= MAX_EVENT_DATA_BYTES
    };
    let (mut low, mut high) = (0usize, title.len());
    while low < high {
        let mid = (low + high).div_ceil(2);
        if fits(profile::truncate_utf8(title, mid), &mut data) {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    fits(profile::truncate_utf8(title, low), &mut data);
    stats.truncated_values += 1;
    data
}

/// Size of `data` as sent.
fn serialized_len(data: &EventData) -> usize {
    serde_json::to_vec(data).map_or(usize::MAX, |bytes| bytes.len())
}

//! What `run --dry-run` shows (SPEC 1), and the per-person renderer `explain` (SPEC 8.1)
//! shares with it, so the two cannot drift.
//!
//! A dry run's plan becomes one [`PersonView`] per person with something to send, and
//! [`Totals`] are counted from those same views (plus the read's and the planner's skip
//! counts): what the totals say and what the detail lists is one set of data, the one the
//! run would send. Classification (new, changed, leaving scope, coming back) is the
//! planner's ([`IdentifyKind`]); nothing here re-derives a rule.
//!
//! Text: the totals first, then one block per person (the attribute names on one line, one
//! line per application with the events and their dates), wrapped to a width the caller
//! passes in (the terminal's, or 80), then a closing line saying nothing was sent. JSON:
//! `people` and `summary` as before, plus `totals`.
//!
//! No values: attribute names (and whether a value is cleared), event names, dates and ids
//! only, so the output carries no personal data.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::Serialize;

use crate::model::{ApplicationId, PersonId};
use crate::plan::{IdentifyKind, PersonPlan, Plan, CAMPAIGN_WINDOW_HOURS};
use crate::summary::Summary;

/// The width text is wrapped to when stdout is not a terminal.
pub const DEFAULT_WIDTH: usize = 80;
/// Narrower terminals are treated as this wide (a line still holds an event and its date).
pub const MIN_WIDTH: usize = 40;
/// Continuation lines of a wrapped line start this many columns further in than the line.
const CONTINUATION_INDENT: usize = 4;

/// What a dry run found: everyone with something to send, and the totals.
#[derive(Debug, Clone, PartialEq)]
pub struct DryRun {
    /// Sorted by person id.
    pub people: Vec<PersonView>,
    pub totals: Totals,
}

/// One person as the dry run and `explain` show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonView {
    pub person_id: PersonId,
    /// Why they get an identify; `None`: their profile is unchanged (events only).
    pub identify: Option<IdentifyKind>,
    /// On the state's pending list: an earlier run did not get all their writes confirmed.
    pub pending: bool,
    /// Their customer.io profile is removed (`delete` or `suppress`, SPEC 8.2, 8.3) and
    /// they leave the state; nothing else is sent for them.
    pub removal: Option<&'static str>,
    /// In the order given (the dry run: by name).
    pub attributes: Vec<AttributeView>,
    /// By application id.
    pub applications: Vec<ApplicationView>,
}

/// A profile attribute and what the next run does with it (SPEC 8.1's statuses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeView {
    pub name: String,
    pub status: AttributeStatus,
    /// The value GIS has (`explain --values` only: personal data); `None`: not shown.
    pub value: Option<serde_json::Value>,
}

/// What the next run does with an attribute. A dry run lists only `Send` and `Clear`;
/// `explain` shows every attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AttributeStatus {
    /// customer.io holds this value already.
    Unchanged,
    /// The next run sends a new value.
    Send,
    /// The next run sends `null`.
    Clear,
    /// Never sent (`[attributes] exclude`, SPEC 8.3).
    Excluded,
}

impl AttributeStatus {
    /// SPEC 8.1's word for it.
    pub fn word(self) -> &'static str {
        match self {
            AttributeStatus::Unchanged => "unchanged",
            AttributeStatus::Send => "send",
            AttributeStatus::Clear => "clear",
            AttributeStatus::Excluded => "excluded",
        }
    }
}

/// One application: what GIS says of it and the events the next run sends for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationView {
    pub id: ApplicationId,
    /// The programme as in the event names.
    pub programme: String,
    /// The GIS status.
    pub status: String,
    /// Events customer.io already has for it (`explain`; a dry run leaves this empty).
    pub confirmed: Vec<String>,
    /// In the order they would be sent.
    pub events: Vec<EventView>,
}

/// One event the next run sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventView {
    pub name: String,
    /// Unix seconds sent as the timestamp.
    pub timestamp: i64,
    /// The true time, unix seconds; differs from `timestamp` when a late event is restamped
    /// (SPEC 4.3).
    pub occurred_at: i64,
    pub id: String,
    /// The rule that produced it (`explain`: step replay, side status, evidence).
    pub rule: Option<String>,
}

/// How many identifies of each kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IdentifyCounts {
    pub new: u64,
    pub changed: u64,
    pub leaving_scope: u64,
    pub coming_back: u64,
}

/// What a real run would send now, counted from the same views the detail lists, and what
/// it would leave out and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// A full read (everyone in scope), else an incremental one.
    pub full_read: bool,
    pub people_read: u64,
    pub applications_read: u64,
    /// People with at least one write.
    pub people: u64,
    pub identifies: u64,
    pub identifies_by_kind: IdentifyCounts,
    pub events: u64,
    pub events_by_name: BTreeMap<String, u64>,
    /// Events stamped within 72 hours before the run started: customer.io may trigger
    /// campaigns on these (SPEC 4.3).
    pub events_in_campaign_window: u64,
    /// Records skipped while reading and applications the planner skipped, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Applications with a status in no rank nor side list (nothing sent), by status.
    pub unknown_statuses: BTreeMap<String, u64>,
    /// Applications whose person this run did not read, left for a later run.
    pub applications_deferred: u64,
    /// People whose writes earlier runs did not get confirmed (all are read again).
    pub pending_people: u64,
    /// Pending people this run would write to again.
    pub pending_retried: u64,
    /// Profiles removed (`on_leave = "delete"`, or a `forget` a kill cut short), by action.
    pub removals: BTreeMap<String, u64>,
}

impl DryRun {
    /// The dry-run view of `plan` (consumed: its names and ids move into the views).
    /// `summary` holds what the read skipped, `pending` the state's pending people, `now`
    /// the run's start.
    pub fn new(
        plan: Plan,
        summary: &Summary,
        pending: &BTreeSet<PersonId>,
        now: DateTime<Utc>,
    ) -> DryRun {
        let Plan { people, stats } = plan;
        let people: Vec<PersonView> = people
            .into_iter()
            .map(|p| {
                let pending = pending.contains(&p.person_id);
                PersonView::planned(p, pending)
            })
            .collect();
        let campaign_window_start = (now - Duration::hours(CAMPAIGN_WINDOW_HOURS)).timestamp();
        let mut totals = Totals {
            full_read: summary.full_read,
            people_read: summary.people_seen,
            applications_read: summary.applications_seen,
            people: people.len() as u64,
            skipped: summary.skipped.clone(),
            unknown_statuses: stats.unknown_statuses.clone(),
            applications_deferred: stats.applications_deferred,
            pending_people: pending.len() as u64,
            ..Totals::default()
        };
        for person in &people {
            totals.pending_retried += u64::from(person.pending);
            if let Some(action) = person.removal {
                *totals.removals.entry(action.to_owned()).or_default() += 1;
            }
            if let Some(kind) = person.identify {
                totals.identifies += 1;
                let count = &mut totals.identifies_by_kind;
                *match kind {
                    IdentifyKind::New => &mut count.new,
                    IdentifyKind::Changed => &mut count.changed,
                    IdentifyKind::LeavingScope => &mut count.leaving_scope,
                    IdentifyKind::ComingBack => &mut count.coming_back,
                } += 1;
            }
            for event in person.applications.iter().flat_map(|a| &a.events) {
                totals.events += 1;
                *totals.events_by_name.entry(event.name.clone()).or_default() += 1;
                totals.events_in_campaign_window +=
                    u64::from(event.timestamp >= campaign_window_start);
            }
        }
        DryRun { people, totals }
    }
}

impl PersonView {
    /// The view of one person's planned writes: the identify's attribute names (a `null`
    /// value is a clear), and the events grouped by application, the application's
    /// programme and status taken from the events' data.
    pub fn planned(plan: PersonPlan, pending: bool) -> PersonView {
        let (identify, attributes) = match &plan.identify {
            Some(identify) => (
                Some(identify.kind),
                identify
                    .attributes
                    .to_map()
                    .into_iter()
                    .map(|(name, value)| AttributeView {
                        name,
                        status: if value.is_null() {
                            AttributeStatus::Clear
                        } else {
                            AttributeStatus::Send
                        },
                        value: None,
                    })
                    .collect(),
            ),
            None => (None, Vec::new()),
        };
        let mut applications: Vec<ApplicationView> = Vec::new();
        for event in plan.events {
            let view = EventView {
                timestamp: event.timestamp,
                occurred_at: event.data.occurred_at,
                name: event.name,
                id: event.id,
                rule: None,
            };
            match applications.last_mut() {
                Some(last) if last.id == event.application_id => last.events.push(view),
                _ => applications.push(ApplicationView {
                    id: event.application_id,
                    programme: event.data.programme.to_string(),
                    status: event.data.status.to_string(),
                    confirmed: Vec::new(),
                    events: vec![view],
                }),
            }
        }
        PersonView {
            person_id: plan.person_id,
            identify,
            pending,
            removal: plan.removal.map(|removal| removal.action()),
            attributes,
            applications,
        }
    }

    /// What the heading says of the person: why they get an identify, and whether they are
    /// pending.
    fn notes(&self) -> Vec<&'static str> {
        let mut notes = vec![match (self.removal, self.identify) {
            (Some("suppress"), _) => "profile to be suppressed",
            (Some(_), _) => "profile to be deleted",
            (None, Some(IdentifyKind::New)) => "new",
            (None, Some(IdentifyKind::Changed)) => "changed",
            (None, Some(IdentifyKind::LeavingScope)) => "leaving scope",
            (None, Some(IdentifyKind::ComingBack)) => "coming back",
            (None, None) => "profile unchanged",
        }];
        if self.pending {
            notes.push("pending from an earlier run");
        }
        notes
    }
}

/// Which part of a dry run to print (`run --dry-run --person ID --summary`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Only these people in the detail; empty: everyone.
    pub people: BTreeSet<PersonId>,
    /// Only the totals, no detail.
    pub summary_only: bool,
}

impl Selection {
    fn shows(&self, person_id: PersonId) -> bool {
        !self.summary_only && (self.people.is_empty() || self.people.contains(&person_id))
    }
}

/// How the text is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Columns to wrap at (at least [`MIN_WIDTH`] is used).
    pub width: usize,
    /// Show each event's id after its date (`explain`); a dry run's JSON has them.
    pub event_ids: bool,
}

impl Layout {
    /// The dry run's layout at `width` columns.
    pub fn dry_run(width: usize) -> Layout {
        Layout {
            width,
            event_ids: false,
        }
    }

    fn width(self) -> usize {
        self.width.max(MIN_WIDTH)
    }
}

/// The dry run as text: totals, the selected people, the closing line.
pub fn text(dry_run: &DryRun, selection: &Selection, layout: Layout) -> String {
    let width = layout.width();
    let mut out = totals_text(&dry_run.totals, layout);
    if !selection.summary_only {
        if !selection.people.is_empty() {
            out.push('\n');
            let asked = count(selection.people.len() as u64, "person");
            paragraph(
                &mut out,
                "",
                &format!("Detail for the {asked} asked for with --person:"),
                width,
            );
        }
        for person in dry_run
            .people
            .iter()
            .filter(|p| selection.shows(p.person_id))
        {
            out.push('\n');
            out.push_str(&person_text(person, layout));
        }
        let listed: BTreeSet<PersonId> = dry_run.people.iter().map(|p| p.person_id).collect();
        for missing in selection.people.difference(&listed) {
            out.push('\n');
            paragraph(
                &mut out,
                "",
                &format!("person {missing}: nothing to send"),
                width,
            );
        }
    }
    out.push('\n');
    paragraph(
        &mut out,
        "",
        "Dry run: nothing was sent to customer.io and the state was not changed.",
        width,
    );
    out
}

/// The totals block: what a real run would send, what it would leave out and why, and the
/// pending people.
pub fn totals_text(totals: &Totals, layout: Layout) -> String {
    let width = layout.width();
    let mut out = String::new();
    let read = if totals.full_read {
        "full"
    } else {
        "incremental"
    };
    paragraph(
        &mut out,
        "",
        &format!(
            "Dry run ({read} read): {} people and {} applications read from GIS.",
            totals.people_read, totals.applications_read
        ),
        width,
    );
    if totals.people == 0 {
        paragraph(
            &mut out,
            "",
            "A real run would send nothing: customer.io is in step with what was read.",
            width,
        );
    } else {
        paragraph(
            &mut out,
            "",
            &format!(
                "A real run would send {} to {}:",
                count(totals.identifies + totals.events, "write"),
                count(totals.people, "person"),
            ),
            width,
        );
        let kinds = &totals.identifies_by_kind;
        wrap(
            &mut out,
            "  ",
            &[
                format!("{}:", count(totals.identifies, "identify")),
                format!("new {},", kinds.new),
                format!("changed {},", kinds.changed),
                format!("leaving scope {},", kinds.leaving_scope),
                format!("coming back {}", kinds.coming_back),
            ],
            width,
        );
        let mut events = count(totals.events, "event");
        if totals.events > 0 {
            events.push(':');
        }
        paragraph(&mut out, "  ", &events, width);
        let name_width = totals
            .events_by_name
            .keys()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0);
        for (name, n) in &totals.events_by_name {
            let _ = writeln!(out, "    {name:<name_width$}  {n:>7}");
        }
        if totals.events_in_campaign_window > 0 {
            paragraph(
                &mut out,
                "  ",
                &format!(
                    "{} of them stamped within the last {CAMPAIGN_WINDOW_HOURS} hours: customer.io may trigger campaigns on them.",
                    totals.events_in_campaign_window
                ),
                width,
            );
        } else if totals.events > 0 {
            paragraph(
                &mut out,
                "  ",
                &format!("None stamped within the last {CAMPAIGN_WINDOW_HOURS} hours, so no campaign fires."),
                width,
            );
        }
        if !totals.removals.is_empty() {
            let n: u64 = totals.removals.values().sum();
            let mut items = words(&format!(
                "{} removed from customer.io and the state:",
                count(n, "profile")
            ));
            items.extend(listing(&totals.removals));
            wrap(&mut out, "  ", &items, width);
        }
    }
    let mut left_out = Vec::new();
    if !totals.unknown_statuses.is_empty() {
        let n: u64 = totals.unknown_statuses.values().sum();
        let mut items = words(&format!(
            "{} with an unknown status, nothing sent:",
            count(n, "application")
        ));
        items.extend(listing(&totals.unknown_statuses));
        left_out.push(items);
    }
    if totals.applications_deferred > 0 {
        left_out.push(words(&format!(
            "{} whose person this run did not read, left for a later run.",
            count(totals.applications_deferred, "application")
        )));
    }
    if !totals.skipped.is_empty() {
        let mut items = words("Skipped:");
        items.extend(listing(&totals.skipped));
        left_out.push(items);
    }
    if !left_out.is_empty() {
        out.push_str("Not sent:\n");
        for items in left_out {
            wrap(&mut out, "  ", &items, width);
        }
    }
    if totals.pending_people > 0 {
        paragraph(
            &mut out,
            "",
            &format!(
                "Pending from earlier runs: {} read again, {} of them with writes (marked below).",
                count(totals.pending_people, "person"),
                totals.pending_retried
            ),
            width,
        );
    }
    out
}

/// One person's block: a heading, then the attributes and one line per application.
pub fn person_text(person: &PersonView, layout: Layout) -> String {
    let mut out = String::new();
    let heading = format!(
        "person {} ({})",
        person.person_id,
        person.notes().join(", ")
    );
    paragraph(&mut out, "", &heading, layout.width());
    out.push_str(&details_text(
        &person.attributes,
        &person.applications,
        layout,
    ));
    out
}

/// The attribute line and the application lines of a person's block (what `explain` shows
/// under its own heading).
pub fn details_text(
    attributes: &[AttributeView],
    applications: &[ApplicationView],
    layout: Layout,
) -> String {
    let mut out = String::new();
    if !attributes.is_empty() {
        let mut items = vec!["attributes:".to_owned()];
        items.extend(attribute_items(attributes));
        wrap(&mut out, "  ", &items, layout.width());
    }
    for application in applications {
        application_line(&mut out, application, layout);
    }
    out
}

/// `send a, b; clear c`: the attributes grouped by status, each group in the given order.
fn attribute_items(attributes: &[AttributeView]) -> Vec<String> {
    let mut groups: BTreeMap<AttributeStatus, Vec<String>> = BTreeMap::new();
    for attribute in attributes {
        let shown = match &attribute.value {
            Some(value) => format!("{}={value}", attribute.name),
            None => attribute.name.clone(),
        };
        groups.entry(attribute.status).or_default().push(shown);
    }
    let mut items = Vec::new();
    let group_count = groups.len();
    for (g, (status, names)) in groups.into_iter().enumerate() {
        for (i, name) in names.iter().enumerate() {
            let mut item = if i == 0 {
                format!("{} {name}", status.word())
            } else {
                name.clone()
            };
            if i + 1 < names.len() {
                item.push(',');
            } else if g + 1 < group_count {
                item.push(';');
            }
            items.push(item);
        }
    }
    items
}

/// `application 5001 GCDP approved: GCDPapplied 2024-02-05T09:00:00Z, ...`, wrapped.
fn application_line(out: &mut String, application: &ApplicationView, layout: Layout) {
    let mut items = vec![format!(
        "application {} {} {}:",
        application.id, application.programme, application.status
    )];
    if !application.confirmed.is_empty() {
        items.push("confirmed".to_owned());
        for (i, name) in application.confirmed.iter().enumerate() {
            let last = i + 1 == application.confirmed.len();
            items.push(format!("{name}{}", if last { ";" } else { "," }));
        }
        items.push("next:".to_owned());
    }
    let count = application.events.len();
    for (i, event) in application.events.iter().enumerate() {
        let mut item = format!("{} {}", event.name, time(event.timestamp));
        if event.occurred_at != event.timestamp {
            let _ = write!(item, " (occurred {})", time(event.occurred_at));
        }
        if layout.event_ids {
            let _ = write!(item, " id {}", event.id);
        }
        if let Some(rule) = &event.rule {
            let _ = write!(item, " ({rule})");
        }
        if i + 1 < count {
            item.push(',');
        }
        items.push(item);
    }
    if count == 0 {
        items.push("nothing to send".to_owned());
    }
    wrap(out, "  ", &items, layout.width());
}

/// Unix seconds as RFC 3339 UTC (`2024-02-05T09:00:00Z`), or the number if out of range.
fn time(seconds: i64) -> String {
    DateTime::from_timestamp(seconds, 0).map_or_else(
        || seconds.to_string(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

/// `n thing` or `n things`.
fn count(n: u64, thing: &str) -> String {
    match (n, thing) {
        (1, _) => format!("1 {thing}"),
        (_, "person") => format!("{n} people"),
        (_, "identify") => format!("{n} identifies"),
        _ => format!("{n} {thing}s"),
    }
}

/// `key 2,` items of a count map (keys as in the JSON and the summary), the last without a
/// comma.
fn listing(counts: &BTreeMap<String, u64>) -> Vec<String> {
    let last = counts.len().saturating_sub(1);
    counts
        .iter()
        .enumerate()
        .map(|(i, (key, n))| {
            let sep = if i < last { "," } else { "" };
            format!("{key} {n}{sep}")
        })
        .collect()
}

fn words(text: &str) -> Vec<String> {
    text.split(' ').map(str::to_owned).collect()
}

/// Appends `text` as a paragraph of lines starting with `indent`, wrapped at `width`.
fn paragraph(out: &mut String, indent: &str, text: &str, width: usize) {
    wrap(out, indent, &words(text), width);
}

/// Appends `items`, separated by single spaces, as lines of at most `width` columns: the
/// first starts with `indent`, and an item that would pass the width starts a new line,
/// indented [`CONTINUATION_INDENT`] columns further. An item is never split (an event
/// stays with its date); one longer than a line gets a line of its own.
fn wrap(out: &mut String, indent: &str, items: &[String], width: usize) {
    let continuation = indent.chars().count() + CONTINUATION_INDENT;
    let mut line = indent.to_owned();
    let mut columns = indent.chars().count();
    let mut at_start = true;
    for item in items {
        let len = item.chars().count();
        if !at_start && columns + 1 + len > width {
            out.push_str(&line);
            out.push('\n');
            line = " ".repeat(continuation);
            columns = continuation;
            at_start = true;
        }
        if !at_start {
            line.push(' ');
            columns += 1;
        }
        line.push_str(item);
        columns += len;
        at_start = false;
    }
    out.push_str(&line);
    out.push('\n');
}

/// The dry run as `--json`: `people` (what each selected person would get; absent with
/// `--summary`), `totals`, and the run `summary`.
pub fn json(dry_run: &DryRun, summary: &Summary, selection: &Selection) -> String {
    let people = (!selection.summary_only).then(|| {
        dry_run
            .people
            .iter()
            .filter(|p| selection.shows(p.person_id))
            .map(DryRunPerson::from)
            .collect::<Vec<_>>()
    });
    let mut text = serde_json::to_string_pretty(&DryRunJson {
        people,
        totals: &dry_run.totals,
        summary,
    })
    .expect("a dry run always serializes");
    text.push('\n');
    text
}

#[derive(Serialize)]
struct DryRunJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    people: Option<Vec<DryRunPerson>>,
    totals: &'a Totals,
    summary: &'a Summary,
}

/// What a dry run would send to one person, as `--json` prints it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DryRunPerson {
    pub person_id: PersonId,
    /// Why they get an identify (`new`, `changed`, `leaving_scope`, `coming_back`), or null.
    pub identify: Option<IdentifyKind>,
    pub pending: bool,
    /// `delete` or `suppress` when their profile is removed (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removal: Option<&'static str>,
    /// The attribute names the identify carries (cleared ones included), sorted.
    pub attributes: Vec<String>,
    /// By application, in the order they would be sent.
    pub events: Vec<DryRunEvent>,
}

/// One event of a dry run.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DryRunEvent {
    pub application_id: ApplicationId,
    pub name: String,
    pub timestamp: i64,
    pub id: String,
}

impl From<&PersonView> for DryRunPerson {
    fn from(view: &PersonView) -> DryRunPerson {
        DryRunPerson {
            person_id: view.person_id,
            identify: view.identify,
            pending: view.pending,
            removal: view.removal,
            attributes: view.attributes.iter().map(|a| a.name.clone()).collect(),
            events: view
                .applications
                .iter()
                .flat_map(|a| {
                    a.events.iter().map(|e| DryRunEvent {
                        application_id: a.id,
                        name: e.name.clone(),
                        timestamp: e.timestamp,
                        id: e.id.clone(),
                    })
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{json, Value};

    use super::*;
    use crate::plan::{Attributes, EventData, Identify, PlanStats, PlannedEvent};
    use crate::state::{ApplicationState, PersonState};

    fn now() -> DateTime<Utc> {
        "2026-11-01T06:00:00Z".parse().expect("valid time")
    }

    fn at(text: &str) -> i64 {
        text.parse::<DateTime<Utc>>()
            .expect("valid time")
            .timestamp()
    }

    fn identify(kind: IdentifyKind, attributes: Value) -> Option<Identify> {
        Some(Identify {
            attributes: Attributes::from_map(attributes.as_object().expect("object")),
            kind,
            after: PersonState::default(),
        })
    }

    /// An event of application `application` (programme GCDP, GIS status `status`) sent at
    /// `timestamp`, true time `occurred`.
    fn event(
        application: ApplicationId,
        status: &str,
        name: &str,
        timestamp: &str,
        occurred: &str,
    ) -> PlannedEvent {
        PlannedEvent {
            application_id: application,
            name: name.to_owned(),
            id: format!("ID{application}{name}"),
            timestamp: at(timestamp),
            data: EventData {
                application_id: application,
                opportunity_id: 7,
                oid: 7,
                opportunity_title: None,
                programme: Arc::from("GCDP"),
                status: Arc::from(status),
                occurred_at: at(occurred),
            },
            rule: crate::plan::EventRule::MainStatus,
            occurrence: 1,
            after: ApplicationState::default(),
        }
    }

    fn person(
        person_id: PersonId,
        identify: Option<Identify>,
        events: Vec<PlannedEvent>,
    ) -> PersonPlan {
        PersonPlan {
            person_id,
            identify,
            events,
            removal: None,
        }
    }

    /// Five people, one of each kind, two of them pending (and a third pending person
    /// with nothing to send); events in and out of the campaign window, one restamped.
    fn sample() -> DryRun {
        let old = "2024-02-05T09:00:00Z";
        let recent = "2026-10-31T12:00:00Z";
        let plan = Plan {
            people: vec![
                person(
                    1,
                    identify(IdentifyKind::New, json!({"email": "x", "first_name": "y"})),
                    vec![
                        event(10, "approved", "GCDPapplied", old, old),
                        event(10, "approved", "GCDPaccepted", old, old),
                        event(10, "approved", "GCDPapproved", recent, recent),
                        event(11, "open", "GCDPapplied", old, old),
                    ],
                ),
                person(
                    2,
                    identify(
                        IdentifyKind::Changed,
                        json!({"first_name": "z", "nps_score": null}),
                    ),
                    Vec::new(),
                ),
                person(
                    3,
                    identify(IdentifyKind::LeavingScope, json!({"in_scope": false})),
                    Vec::new(),
                ),
                person(
                    4,
                    identify(IdentifyKind::ComingBack, json!({"in_scope": true})),
                    vec![event(
                        40,
                        "realized",
                        "GCDPrealized",
                        "2026-11-01T06:00:00Z",
                        "2026-10-01T00:00:00Z",
                    )],
                ),
                person(
                    5,
                    None,
                    vec![event(50, "withdrawn", "GCDPwithdrawn", old, old)],
                ),
            ],
            stats: PlanStats {
                unknown_statuses: BTreeMap::from([("on_hold".to_owned(), 2)]),
                applications_deferred: 3,
                ..PlanStats::default()
            },
        };
        let summary = Summary {
            full_read: true,
            people_seen: 9,
            applications_seen: 12,
            skipped: BTreeMap::from([("people_duplicate".to_owned(), 1)]),
            ..Summary::default()
        };
        DryRun::new(plan, &summary, &BTreeSet::from([2, 5, 99]), now())
    }

    #[test]
    fn removed_profiles_are_counted_by_action_and_named_in_the_heading() {
        let removed = |person_id, suppress| PersonPlan {
            removal: Some(crate::state::Removal {
                person_id,
                suppress,
                forget: false,
            }),
            ..person(person_id, None, Vec::new())
        };
        let plan = Plan {
            people: vec![removed(7, false), removed(8, false), removed(9, true)],
            stats: PlanStats::default(),
        };
        let dry_run = DryRun::new(plan, &Summary::default(), &BTreeSet::new(), now());
        assert_eq!(
            dry_run.totals.removals,
            BTreeMap::from([("delete".to_owned(), 2), ("suppress".to_owned(), 1)])
        );
        let layout = Layout::dry_run(80);
        let totals = totals_text(&dry_run.totals, layout);
        assert!(
            totals.contains(
                "3 profiles removed from customer.io and the state: delete 2, suppress 1"
            ),
            "{totals}"
        );
        assert!(
            person_text(&dry_run.people[0], layout).contains("profile to be deleted"),
            "{}",
            person_text(&dry_run.people[0], layout)
        );
        assert!(person_text(&dry_run.people[2], layout).contains("profile to be suppressed"));
    }

    #[test]
    fn totals_are_counted_from_the_views_by_kind_name_window_and_pending() {
        let dry_run = sample();
        let totals = &dry_run.totals;
        assert_eq!(
            *totals,
            Totals {
                full_read: true,
                people_read: 9,
                applications_read: 12,
                people: 5,
                identifies: 4,
                identifies_by_kind: IdentifyCounts {
                    new: 1,
                    changed: 1,
                    leaving_scope: 1,
                    coming_back: 1,
                },
                events: 6,
                events_by_name: BTreeMap::from([
                    ("GCDPaccepted".to_owned(), 1),
                    ("GCDPapplied".to_owned(), 2),
                    ("GCDPapproved".to_owned(), 1),
                    ("GCDPrealized".to_owned(), 1),
                    ("GCDPwithdrawn".to_owned(), 1),
                ]),
                // GCDPapproved 18 h before the run, and the restamped GCDPrealized.
                events_in_campaign_window: 2,
                skipped: BTreeMap::from([("people_duplicate".to_owned(), 1)]),
                unknown_statuses: BTreeMap::from([("on_hold".to_owned(), 2)]),
                applications_deferred: 3,
                pending_people: 3,
                pending_retried: 2,
                removals: BTreeMap::new(),
            }
        );
        let first = &dry_run.people[0];
        assert_eq!(
            first
                .applications
                .iter()
                .map(|a| (a.id, a.status.as_str(), a.events.len()))
                .collect::<Vec<_>>(),
            [(10, "approved", 3), (11, "open", 1)],
            "events grouped by application, status from the events' data"
        );
        assert_eq!(
            dry_run.people[1].attributes,
            [
                AttributeView {
                    name: "first_name".to_owned(),
                    status: AttributeStatus::Send,
                    value: None,
                },
                AttributeView {
                    name: "nps_score".to_owned(),
                    status: AttributeStatus::Clear,
                    value: None,
                },
            ],
            "a null value is a clear"
        );
    }

    #[test]
    fn text_has_the_totals_then_each_person_then_the_closing_line() {
        let text = text(&sample(), &Selection::default(), Layout::dry_run(80));
        let expected = "\
Dry run (full read): 9 people and 12 applications read from GIS.
A real run would send 10 writes to 5 people:
  4 identifies: new 1, changed 1, leaving scope 1, coming back 1
  6 events:
    GCDPaccepted         1
    GCDPapplied          2
    GCDPapproved         1
    GCDPrealized         1
    GCDPwithdrawn        1
  2 of them stamped within the last 72 hours: customer.io may trigger campaigns
      on them.
Not sent:
  2 applications with an unknown status, nothing sent: on_hold 2
  3 applications whose person this run did not read, left for a later run.
  Skipped: people_duplicate 1
Pending from earlier runs: 3 people read again, 2 of them with writes (marked
    below).

person 1 (new)
  attributes: send email, first_name
  application 10 GCDP approved: GCDPapplied 2024-02-05T09:00:00Z,
      GCDPaccepted 2024-02-05T09:00:00Z, GCDPapproved 2026-10-31T12:00:00Z
  application 11 GCDP open: GCDPapplied 2024-02-05T09:00:00Z

person 2 (changed, pending from an earlier run)
  attributes: send first_name; clear nps_score

person 3 (leaving scope)
  attributes: send in_scope

person 4 (coming back)
  attributes: send in_scope
  application 40 GCDP realized:
      GCDPrealized 2026-11-01T06:00:00Z (occurred 2026-10-01T00:00:00Z)

person 5 (profile unchanged, pending from an earlier run)
  application 50 GCDP withdrawn: GCDPwithdrawn 2024-02-05T09:00:00Z

Dry run: nothing was sent to customer.io and the state was not changed.
";
        assert_eq!(text, expected, "got:\n{text}");
    }

    #[test]
    fn selection_limits_the_detail_but_not_the_totals() {
        let dry_run = sample();
        let everyone = text(&dry_run, &Selection::default(), Layout::dry_run(80));
        let totals_part = totals_text(&dry_run.totals, Layout::dry_run(80));
        assert!(everyone.starts_with(&totals_part));

        let some = Selection {
            people: BTreeSet::from([4, 42]),
            summary_only: false,
        };
        let limited = text(&dry_run, &some, Layout::dry_run(80));
        assert!(limited.starts_with(&totals_part), "{limited}");
        assert!(limited.contains("Detail for the 2 people asked for with --person:"));
        assert!(limited.contains("\nperson 4 (coming back)\n"), "{limited}");
        assert!(
            limited.contains("\nperson 42: nothing to send\n"),
            "{limited}"
        );
        assert!(!limited.contains("person 1 "), "{limited}");

        let summary_only = Selection {
            summary_only: true,
            ..Selection::default()
        };
        let totals_only = text(&dry_run, &summary_only, Layout::dry_run(80));
        assert_eq!(
            totals_only,
            format!(
                "{totals_part}\nDry run: nothing was sent to customer.io and the state was not changed.\n"
            )
        );

        let summary = Summary::default();
        let all: Value =
            serde_json::from_str(&json(&dry_run, &summary, &Selection::default())).expect("json");
        assert_eq!(all["people"].as_array().expect("people").len(), 5);
        assert_eq!(all["people"][3]["identify"], json!("coming_back"));
        assert_eq!(all["people"][1]["pending"], json!(true));
        assert_eq!(all["people"][0]["events"][3]["application_id"], json!(11));
        assert_eq!(
            all["totals"]["identifies_by_kind"]["leaving_scope"],
            json!(1)
        );
        let limited: Value = serde_json::from_str(&json(&dry_run, &summary, &some)).expect("json");
        assert_eq!(limited["people"].as_array().expect("people").len(), 1);
        assert_eq!(limited["totals"], all["totals"]);
        let totals_only: Value =
            serde_json::from_str(&json(&dry_run, &summary, &summary_only)).expect("json");
        assert!(totals_only.get("people").is_none(), "{totals_only}");
        assert_eq!(totals_only["totals"], all["totals"]);
        assert!(totals_only.get("summary").is_some());
    }

    /// Lines stay within the width (at least [`MIN_WIDTH`]) unless one item alone is
    /// wider, and no item is split: the words of the text are the same at every width.
    #[test]
    fn wrapping_keeps_lines_within_the_width_and_items_whole() {
        let dry_run = sample();
        let words_of =
            |text: &str| -> Vec<String> { text.split_whitespace().map(str::to_owned).collect() };
        let wide = text(&dry_run, &Selection::default(), Layout::dry_run(10_000));
        for width in [0, 20, MIN_WIDTH, 41, 55, 72, 80, 100, 132] {
            let wrapped = text(&dry_run, &Selection::default(), Layout::dry_run(width));
            assert_eq!(words_of(&wrapped), words_of(&wide), "width {width}");
            let limit = width.max(MIN_WIDTH);
            for line in wrapped.lines() {
                let fits = line.chars().count() <= limit;
                // An event with its restamp note is one item, longer than 40 columns.
                let single_item = line.trim_start().starts_with("2026-10-01")
                    || !line.trim().contains(' ')
                    || line.trim().starts_with("GCDP");
                assert!(fits || single_item, "width {width}: {line:?}");
            }
        }
        for line in wide.lines() {
            assert!(
                !line.starts_with("    ") || line.starts_with("    GCDP"),
                "no continuation at width 10000: {line:?}"
            );
        }
    }

    /// `explain` (SPEC 8.1) shows every attribute with its status, the confirmed events,
    /// and each next event with its id and rule through the same renderer.
    #[test]
    fn the_explain_shape_renders_statuses_confirmed_events_ids_and_rules() {
        let attribute = |name: &str, status| AttributeView {
            name: name.to_owned(),
            status,
            value: None,
        };
        let attributes = [
            attribute("email", AttributeStatus::Unchanged),
            attribute("first_name", AttributeStatus::Send),
            attribute("birthday", AttributeStatus::Excluded),
            attribute("nps_score", AttributeStatus::Clear),
            attribute("status", AttributeStatus::Unchanged),
        ];
        let applications = [ApplicationView {
            id: 5001,
            programme: "GCDP".to_owned(),
            status: "approved".to_owned(),
            confirmed: vec!["GCDPapplied".to_owned(), "GCDPaccepted".to_owned()],
            events: vec![EventView {
                name: "GCDPapproved".to_owned(),
                timestamp: at("2024-03-02T14:10:00Z"),
                occurred_at: at("2024-03-02T14:10:00Z"),
                id: "01ABC".to_owned(),
                rule: Some("step replay".to_owned()),
            }],
        }];
        let layout = Layout {
            width: 80,
            event_ids: true,
        };
        assert_eq!(
            details_text(&attributes, &applications, layout),
            "  attributes: unchanged email, status; send first_name; clear nps_score;
      excluded birthday
  application 5001 GCDP approved: confirmed GCDPapplied, GCDPaccepted; next:
      GCDPapproved 2024-03-02T14:10:00Z id 01ABC (step replay)
"
        );
        let nothing = [ApplicationView {
            events: Vec::new(),
            confirmed: vec!["GCDPapplied".to_owned()],
            ..applications[0].clone()
        }];
        assert_eq!(
            details_text(&[], &nothing, layout),
            "  application 5001 GCDP approved: confirmed GCDPapplied; next: nothing to send\n"
        );
    }
}

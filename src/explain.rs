//! `ciosync explain PERSON_ID` (SPEC 8.1): for one person, what GIS says, what the state
//! holds, and exactly what the next run would send for them and why.
//!
//! Nothing here decides a rule. The person and their applications are read by id from GIS
//! and given to the run's [`Planner`], against the state, as a run that reads them would;
//! each attribute's status comes from [`attribute_statuses`] (the one rule an identify is
//! planned by), each event's rule from the planner (set where the flow rules produce the
//! event). The text goes through the dry run's renderer ([`details_text`]), so `explain`,
//! the dry run and the run cannot disagree.
//!
//! Under the run lock like a dry run (exit 75 if held); nothing is sent to customer.io and
//! nothing written in `data_dir` (the GIS client persists a rotated OAuth refresh token
//! itself). Attribute values are personal data: shown only with `--values`.
//!
//! What "the next run" means: a run that reads this person, that is a full read, or an
//! incremental one for a person whose records changed or who is pending. An incremental
//! run that does not read them sends nothing for them. Events whose own dates and the
//! application's `updated_at` are all null are stamped with the run's start, so for those
//! the timestamp shown is `explain`'s start, not the run's.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::cli::ExplainArgs;
use crate::commands::{self, Output};
use crate::config::{Config, OnLeave};
use crate::credentials;
use crate::data_dir;
use crate::error::{self, Error};
use crate::lock;
use crate::model::{Application, EventKind, Person, PersonId};
use crate::plan::{
    self, attribute_statuses, attribute_values_of, excluded_mask, Departure, Fingerprinter,
    IdentifyKind, PersonPlan, PlanOptions, Planner, IN_SCOPE_ATTRIBUTE,
};
use crate::state::{self, State};
use crate::summary::{read_last_run, Rejection};
use crate::sync::dry_run::{
    details_text, ApplicationView, AttributeStatus, AttributeView, Layout, PersonView,
};
use crate::sync::open_state;

/// What `explain` found for one person.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// GIS returned the person.
    pub in_gis: bool,
    /// Their home LC is one of `gis.home_lcs` (false when GIS does not have them).
    pub in_scope: bool,
    /// The state has their profile (people a run synced).
    pub in_state: bool,
    /// On the state's forgotten list (SPEC 8.2): no run sends anything for them.
    pub forgotten: bool,
    /// The last run's rejections of their writes (`last_run.json`).
    pub rejections: Vec<Rejection>,
    /// The next run's writes for them, through the dry run's view (`pending` included).
    pub view: PersonView,
}

impl Explanation {
    /// SPEC 8.1: 0 when GIS or the state knows the person (the forgotten list is part of
    /// the state), 1 when neither does.
    pub fn code(&self) -> u8 {
        if self.in_gis || self.in_state || self.forgotten {
            error::code::OK
        } else {
            error::code::PARTIAL
        }
    }

    /// The JSON object of SPEC 8.1; `values` (name → value) only after `--values`.
    pub fn json(&self) -> Value {
        let view = &self.view;
        let attributes: Map<String, Value> = view
            .attributes
            .iter()
            .map(|a| (a.name.clone(), Value::from(a.status.word())))
            .collect();
        let applications: Vec<Value> = view
            .applications
            .iter()
            .map(|a| {
                let next_events: Vec<Value> = a
                    .events
                    .iter()
                    .map(|e| {
                        json!({
                            "name": e.name,
                            "timestamp": e.timestamp,
                            "occurred_at": e.occurred_at,
                            "id": e.id,
                            "rule": e.rule,
                        })
                    })
                    .collect();
                json!({
                    "id": a.id,
                    "programme": a.programme,
                    "status": a.status,
                    "confirmed_events": a.confirmed,
                    "next_events": next_events,
                })
            })
            .collect();
        let rejections: Vec<Value> = self
            .rejections
            .iter()
            .map(|r| json!({ "write": r.write, "reason": r.reason }))
            .collect();
        let mut object = json!({
            "person_id": view.person_id,
            "in_gis": self.in_gis,
            "in_scope": self.in_scope,
            "in_state": self.in_state,
            "pending": view.pending,
            "last_rejections": rejections,
            "forgotten": self.forgotten,
            "identify": view.identify,
            "removal": view.removal,
            "attributes": attributes,
            "applications": applications,
        });
        let values: Map<String, Value> = view
            .attributes
            .iter()
            .filter_map(|a| Some((a.name.clone(), a.value.clone()?)))
            .collect();
        if !values.is_empty() {
            object["values"] = Value::Object(values);
        }
        object
    }

    /// The text: what is known of the person, then the dry run's block of attributes and
    /// applications (with event ids and rules), then what the next run does, in one line.
    pub fn text(&self, width: usize) -> String {
        let view = &self.view;
        let yes_no = |flag: bool| if flag { "yes" } else { "no" };
        let mut out = String::new();
        let _ = writeln!(out, "person {}", view.person_id);
        let _ = writeln!(out, "  in GIS: {}", yes_no(self.in_gis));
        let _ = writeln!(
            out,
            "  in scope (home LC in gis.home_lcs): {}",
            yes_no(self.in_scope)
        );
        let _ = writeln!(out, "  in the state: {}", yes_no(self.in_state));
        let _ = writeln!(
            out,
            "  pending (an earlier run did not get all their writes confirmed): {}",
            yes_no(view.pending)
        );
        for rejection in &self.rejections {
            let _ = writeln!(
                out,
                "  last run rejected: {}: {}",
                rejection.write, rejection.reason
            );
        }
        let _ = writeln!(
            out,
            "  forgotten (ciosync forget): {}",
            yes_no(self.forgotten)
        );
        out.push_str(&details_text(
            &view.attributes,
            &view.applications,
            Layout {
                width,
                event_ids: true,
            },
        ));
        let _ = writeln!(out, "Next run: {}", self.next_run());
        out
    }

    /// What the next run that reads the person does, in words.
    fn next_run(&self) -> String {
        let view = &self.view;
        let events: usize = view.applications.iter().map(|a| a.events.len()).sum();
        let sent = view
            .attributes
            .iter()
            .filter(|a| matches!(a.status, AttributeStatus::Send | AttributeStatus::Clear))
            .count();
        if let Some(action) = view.removal {
            return format!("{action}s their customer.io profile and drops them from the state.");
        }
        if self.forgotten {
            return "nothing: the person is forgotten (ciosync forget).".to_owned();
        }
        if !self.in_gis && !self.in_state {
            return "nothing: neither GIS nor the state knows this person.".to_owned();
        }
        let mut parts = Vec::new();
        match view.identify {
            Some(IdentifyKind::LeavingScope) => {
                parts.push("at its next full read, an identify with in_scope = false".to_owned())
            }
            Some(_) => parts.push(format!("an identify with {sent} attributes")),
            None => {}
        }
        if events > 0 {
            parts.push(format!("{events} events"));
        }
        if parts.is_empty() {
            return if self.in_gis && !self.in_scope {
                "nothing: their home LC is not in gis.home_lcs, so runs do not read them."
                    .to_owned()
            } else {
                "nothing: customer.io is in step with GIS for this person.".to_owned()
            };
        }
        format!("{} (nothing was sent now).", parts.join(", then "))
    }
}

/// `ciosync explain`: runs [`explain`] and prints it (text at `width` columns, or JSON).
pub fn command(config: &Config, args: &ExplainArgs, width: usize) -> Output {
    let explanation = commands::runtime()
        .and_then(|rt| rt.block_on(explain(config, args.person_id, args.values, Utc::now())));
    match explanation {
        Ok(explanation) => {
            let stdout = if args.json {
                let mut text = serde_json::to_string_pretty(&explanation.json())
                    .expect("a JSON value always serializes");
                text.push('\n');
                text
            } else {
                explanation.text(width)
            };
            Output {
                stdout,
                code: explanation.code(),
                failure: None,
            }
        }
        Err(e) => Output::failed(e),
    }
}

/// Explains `person_id` (SPEC 8.1) as a run starting at `now` would plan them; `values`
/// adds the attribute values GIS has.
///
/// # Errors
/// As for a run: the lock is held (75), the data dir or state is unusable (74), the state
/// belongs to another setup (78), GIS refuses the credentials (77) or cannot be read (69).
pub async fn explain(
    config: &Config,
    person_id: PersonId,
    values: bool,
    now: DateTime<Utc>,
) -> Result<Explanation, Error> {
    data_dir::ensure(&config.data_dir)?;
    let _lock = lock::acquire(&config.data_dir)?;
    let (state, first_run) = open_state(config)?;
    let key = if first_run {
        // As a dry run: nothing is written, and with no state every attribute is new anyway.
        rand::random::<[u8; 32]>()
    } else {
        state::load_or_create_key(&config.data_dir)?
    };
    let gis = credentials::gis_client(config, None)?;
    let mut skipped = BTreeMap::new();
    let (person, applications) = gis
        .read_person_with_applications(person_id, &mut skipped)
        .await?;
    let in_scope = person.as_ref().is_some_and(|p| gis.in_scope(p));
    let options = PlanOptions {
        site_id: config.customerio.site_id.clone(),
        programme_name: config.events.programme_name,
        late_events: config.events.late_events,
        full_read: false,
        excluded: excluded_mask(&config.attributes.exclude),
        on_leave: config.scope.on_leave,
    };
    let rejections = read_last_run(&config.data_dir)
        .map(|last| {
            last.rejected
                .into_iter()
                .filter(|r| r.person_id == person_id)
                .collect()
        })
        .unwrap_or_default();
    let fingerprinter = Fingerprinter::new(key);
    let read = Read {
        person_id,
        person: person.as_ref(),
        in_scope,
        applications: &applications,
    };
    let mut view = plan_view(&state, &read, &options, &fingerprinter, now);
    if values {
        if let Some(person) = &person {
            let by_name: BTreeMap<&str, Value> = attribute_values_of(person).into_iter().collect();
            for attribute in &mut view.attributes {
                if let Some(value) = by_name.get(attribute.name.as_str()) {
                    attribute.value = Some(value.clone());
                }
            }
        }
    }
    Ok(Explanation {
        in_gis: person.is_some(),
        in_scope,
        in_state: state.people.contains_key(&person_id),
        forgotten: state.is_forgotten(person_id),
        rejections,
        view,
    })
}

/// What GIS answered for the person.
struct Read<'a> {
    person_id: PersonId,
    person: Option<&'a Person>,
    in_scope: bool,
    applications: &'a [Application],
}

/// The person's next writes as the dry run's view, planned by the run's [`Planner`]: a
/// person in scope gets their identify and their applications' events; one out of scope
/// (or whom GIS no longer has) what a full read gives a leaver (SPEC 5.4, 8.3), else the
/// clears of excluded attributes; a forgotten person nothing (SPEC 8.2), unless a `forget`
/// a kill cut short is still to be finished.
fn plan_view(
    state: &State,
    read: &Read<'_>,
    options: &PlanOptions,
    fingerprinter: &Fingerprinter,
    now: DateTime<Utc>,
) -> PersonView {
    let person_id = read.person_id;
    let mut planner = Planner::new(options, fingerprinter, now);
    let mut plan = PersonPlan {
        person_id,
        identify: None,
        events: Vec::new(),
        removal: None,
    };
    let read_person = read.person.filter(|_| read.in_scope);
    let mut applications: Vec<&Application> = read.applications.iter().collect();
    applications.sort_by_key(|a| a.id);
    applications.dedup_by_key(|a| a.id);
    match read_person {
        Some(person) => {
            plan.identify = planner.person(state, person);
            for application in &applications {
                let events = planner.application(state, application, |id| id == person_id);
                plan.events.extend(events);
            }
        }
        None if read.person.is_none() && options.on_leave == OnLeave::Delete => {
            plan.removal = planner.gone_from_gis(state, person_id);
        }
        None => match planner.left_scope(state, person_id) {
            Some(Departure::Mark(identify)) => plan.identify = Some(identify),
            Some(Departure::Delete(removal)) => plan.removal = Some(removal),
            None => plan.identify = planner.clear_excluded(state, person_id),
        },
    }
    if let Some(removal) = planner
        .unfinished_forgets(state)
        .into_iter()
        .find(|r| r.person_id == person_id)
    {
        plan.removal = Some(removal);
    }
    let rules: Vec<String> = plan.events.iter().map(rule_text).collect();
    // `in_scope` is not one of the profile attributes of 4.1: its send comes from the plan.
    let in_scope_sent = plan.identify.as_ref().is_some_and(|identify| {
        identify
            .attributes
            .to_map()
            .contains_key(IN_SCOPE_ATTRIBUTE)
    });
    let mut view = PersonView::planned(plan, state.pending_people.contains(&person_id));
    // `planned` keeps the events' order, so the rules pair up one to one.
    for (event, rule) in view
        .applications
        .iter_mut()
        .flat_map(|a| a.events.iter_mut())
        .zip(rules)
    {
        event.rule = Some(rule);
    }

    // Every attribute with its status, by the rule the identify was planned by; none for a
    // person neither GIS nor the state knows.
    let prior = state.people.get(&person_id);
    let statuses = if read.person.is_none() && prior.is_none() {
        Vec::new()
    } else {
        attribute_statuses(prior, read_person, &options.excluded, fingerprinter)
    };
    view.attributes = statuses
        .into_iter()
        .map(|(name, status)| AttributeView {
            name: name.to_owned(),
            status: match status {
                plan::AttributeStatus::Unchanged => AttributeStatus::Unchanged,
                plan::AttributeStatus::Send => AttributeStatus::Send,
                plan::AttributeStatus::Clear => AttributeStatus::Clear,
                plan::AttributeStatus::Excluded => AttributeStatus::Excluded,
            },
            value: None,
        })
        .collect();
    if in_scope_sent {
        view.attributes.push(AttributeView {
            name: IN_SCOPE_ATTRIBUTE.to_owned(),
            status: AttributeStatus::Send,
            value: None,
        });
    }

    // Every application GIS listed, with what the state confirmed, events or not.
    let planned: BTreeSet<u64> = view.applications.iter().map(|a| a.id).collect();
    for application in applications {
        if planned.contains(&application.id) {
            continue;
        }
        let programme =
            plan::programme_name(application.programme.as_ref(), options.programme_name);
        view.applications.push(ApplicationView {
            id: application.id,
            programme: programme.unwrap_or("(no programme)").to_owned(),
            status: application.status.clone(),
            confirmed: Vec::new(),
            events: Vec::new(),
        });
    }
    view.applications.sort_by_key(|a| a.id);
    for application in &mut view.applications {
        application.confirmed = confirmed_events(state, application.id, &application.programme);
    }
    view
}

/// The rule behind a planned event, with its occurrence when it is not the first (a
/// re-approval's second `approved`).
fn rule_text(event: &plan::PlannedEvent) -> String {
    let rule = event.rule.describe();
    if event.occurrence > 1 {
        format!("{rule}, occurrence {}", event.occurrence)
    } else {
        rule.to_owned()
    }
}

/// The events the state has confirmed for an application, each as often as it was sent:
/// steps in rank order, then side events (the state keeps counts, not their order).
fn confirmed_events(state: &State, application_id: u64, programme: &str) -> Vec<String> {
    let Some(known) = state.applications.get(&application_id) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for kind in EventKind::ALL {
        for _ in 0..known.count.get(kind.index()) {
            names.push(format!("{programme}{}", kind.name()));
        }
    }
    names
}

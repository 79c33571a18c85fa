//! The customer flow of SPEC 4.2 as pure functions: which rank or side event a GIS status
//! means, which date stamps each event, what counts as evidence, and rules 1 to 3 (what to
//! send for one application and the state after each event).
//!
//! Knows nothing of programmes, ids, people or limits; `plan` wraps these kinds into events.

use chrono::{DateTime, Utc};

use crate::model::{ApplicationDates, EventKind, Side, Step};
use crate::state::ApplicationState;

/// What a GIS `status` value means for the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// A main-path status at the rank of this step (rule 1).
    Main(Step),
    /// A side status (rule 2).
    Side(Side),
}

/// Classifies a raw GIS status; `None` for a value not in the step table nor the side list
/// (rule 4: unknown).
pub(crate) fn classify(status: &str) -> Option<Status> {
    let step = match status {
        "open" | "applied" => Step::Applied,
        "matched" | "accepted" | "approved_tn_manager" | "approved_ep_manager" => Step::Accepted,
        "approved" => Step::Approved,
        "realized" | "remote_realized" => Step::Realized,
        "finished" => Step::Finished,
        "completed" => Step::Completed,
        other => return Side::from_name(other).map(Status::Side),
    };
    Some(Status::Main(step))
}

/// The event's own date: the first non-null of its timestamp column (SPEC 4.2 tables).
/// `None` means the caller falls back to `updated_at`, then the run's start.
pub(crate) fn own_date(kind: EventKind, d: &ApplicationDates) -> Option<DateTime<Utc>> {
    match kind {
        EventKind::Step(Step::Applied) => d.created_at,
        EventKind::Step(Step::Accepted) => {
            d.date_matched.or(d.meta_date_matched).or(d.an_signed_at)
        }
        EventKind::Step(Step::Approved) => d.date_approved.or(d.meta_date_approved),
        EventKind::Step(Step::Realized) => d
            .date_realized
            .or(d.meta_date_realized)
            .or(d.meta_remote_realized_at),
        EventKind::Step(Step::Finished) => d.experience_end_date,
        EventKind::Step(Step::Completed) => d.meta_date_completed,
        EventKind::Side(Side::Withdrawn) => d.meta_date_withdrawn,
        EventKind::Side(Side::Rejected) => d.meta_date_rejected.or(d.matched_or_rejected_at),
        EventKind::Side(Side::Declined) | EventKind::Side(Side::AcceptanceBroken) => None,
        EventKind::Side(Side::ApprovalBroken) => {
            d.date_approval_broken.or(d.meta_date_approval_broken)
        }
        EventKind::Side(Side::RealizationBroken) => {
            d.date_realisation_broke.or(d.meta_date_realisation_broke)
        }
        EventKind::Side(Side::RemoteRealizationBroken) => d.meta_date_remote_realization_broken_at,
    }
}

/// Whether a main-path rank has evidence (rule 2): one of its own dates is present. Never
/// for `finished`: `experience_end_date` is planned long before the experience happens.
fn has_evidence(step: Step, dates: &ApplicationDates) -> bool {
    step != Step::Finished && own_date(EventKind::Step(step), dates).is_some()
}

/// The stage a `*_broken` status proves was reached (rule 2).
fn broken_evidence(side: Side) -> u8 {
    match side {
        Side::AcceptanceBroken => Step::Accepted.rank(),
        Side::ApprovalBroken => Step::Approved.rank(),
        Side::RealizationBroken | Side::RemoteRealizationBroken => Step::Realized.rank(),
        Side::Withdrawn | Side::Rejected | Side::Declined => 0,
    }
}

/// The rank a `*_broken` status falls back to once its event is sent.
fn fallback_rank(side: Side) -> Option<u8> {
    match side {
        Side::AcceptanceBroken => Some(Step::Applied.rank()),
        Side::ApprovalBroken => Some(Step::Accepted.rank()),
        Side::RealizationBroken | Side::RemoteRealizationBroken => Some(Step::Approved.rank()),
        Side::Withdrawn | Side::Rejected | Side::Declined => None,
    }
}

/// Which rule produced an event (what `explain` shows, SPEC 8.1), decided where the event
/// is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventRule {
    /// Rule 1: the step of the application's main-path status.
    MainStatus,
    /// Rule 1: a step below the status's rank, replayed on the way up to it.
    StepReplay,
    /// Rule 2: a step with evidence (its own date, or a `*_broken` status) sent before a
    /// side event.
    Evidence,
    /// Rule 2: the side event of the application's side status.
    SideStatus,
}

impl EventRule {
    /// As `explain` prints it.
    pub fn describe(self) -> &'static str {
        match self {
            EventRule::MainStatus => "main-path status",
            EventRule::StepReplay => "step replay",
            EventRule::Evidence => "evidence",
            EventRule::SideStatus => "side status",
        }
    }
}

/// One event the rules produce, with the application's state once it is confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FlowEvent {
    pub kind: EventKind,
    pub rule: EventRule,
    /// The occurrence this event carries: `count[kind] + 1` before it (rule 3).
    pub occurrence: u32,
    pub after: ApplicationState,
}

/// Rules 1 to 3 for one application: the events to send, in order (rank order, the side
/// event last), each with the state after it. Empty when nothing is to be sent.
pub(crate) fn advance(
    current: &ApplicationState,
    status: Status,
    dates: &ApplicationDates,
) -> Vec<FlowEvent> {
    let mut state = current.clone();
    let mut events = Vec::new();
    match status {
        Status::Main(step) => {
            send_steps_up_to(&mut state, step.rank(), EventRule::StepReplay, &mut events);
            // The status's own step, if it was sent, is the last one.
            if let Some(last) = events.last_mut() {
                last.rule = EventRule::MainStatus;
            }
        }
        Status::Side(side) => {
            if state.last_side == Some(side) {
                return events;
            }
            let dated = Step::ALL
                .into_iter()
                .filter(|step| has_evidence(*step, dates))
                .map(Step::rank)
                .max()
                .unwrap_or(0);
            let evidence = dated.max(broken_evidence(side)).max(Step::Applied.rank());
            send_steps_up_to(&mut state, evidence, EventRule::Evidence, &mut events);
            let kind = EventKind::Side(side);
            let occurrence = bump(&mut state, kind);
            state.last_side = Some(side);
            if let Some(rank) = fallback_rank(side) {
                state.rank = rank;
            }
            events.push(FlowEvent {
                kind,
                rule: EventRule::SideStatus,
                occurrence,
                after: state,
            });
        }
    }
    events
}

/// Sends every step above the state's rank up to `target` (the step replay of rule 1).
fn send_steps_up_to(
    state: &mut ApplicationState,
    target: u8,
    rule: EventRule,
    events: &mut Vec<FlowEvent>,
) {
    for step in Step::ALL {
        if step.rank() <= state.rank || step.rank() > target {
            continue;
        }
        let kind = EventKind::Step(step);
        let occurrence = bump(state, kind);
        state.rank = step.rank();
        state.last_side = None;
        events.push(FlowEvent {
            kind,
            rule,
            occurrence,
            after: state.clone(),
        });
    }
}

/// Counts one more send of `kind` and returns the occurrence it carries.
fn bump(state: &mut ApplicationState, kind: EventKind) -> u32 {
    state.count.increment(kind.index())
}

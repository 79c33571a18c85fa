//! Sending a plan to customer.io (SPEC 4.4, 5.3): `api = "v1"` person by person, or
//! `api = "batch"` in v2 batches; each write customer.io confirms is settled into the state
//! ([`State::confirm_identify`], [`State::confirm_event`]) and the summary, and the state is
//! saved at checkpoints.
//!
//! Invariants: a person's identify is confirmed before any of their events is sent (they
//! never share a request); an application's state advances only over its confirmed events
//! in order, so a rejected event is never skipped over; a rejected write keeps its person
//! on the pending list, retried next run.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::time::Instant;

use crate::cio::{self, BatchOp, CioClient, CioError, Outcome};
use crate::config::{CioApi, Config};
use crate::error::Error;
use crate::model::{ApplicationId, PersonId};
use crate::plan::{EventData, Identify, PersonPlan, Plan, PlannedEvent};
use crate::state::{self, ApplicationState, PersonState, State};
use crate::summary::{Rejection, Summary};

use super::checkpoint::Checkpoint;

/// People whose writes may be in flight at once (each person's own writes stay in order).
const PERSON_CONCURRENCY: usize = 16;
/// v2 batches in flight at once.
const BATCH_CONCURRENCY: usize = 4;
/// Batch operations serialized at a time (about 6 MB of events).
const OPS_PER_CHUNK: usize = 16_384;

/// What sending needs from the run, and what it reports into.
pub struct Executor<'a> {
    pub config: &'a Config,
    pub now: DateTime<Utc>,
    pub summary: &'a mut Summary,
    pub progress: &'a ProgressBar,
    pub soft_deadline: Instant,
}

/// Sends `plan` and saves the state at checkpoints; the state records every write
/// customer.io confirmed, whatever stops the run. A run that sent everything completes the
/// state's run (watermark, last full read).
///
/// # Errors
/// The first error that stopped sending: customer.io unavailable or refusing the
/// credentials, the soft deadline, a state that cannot be saved.
pub async fn execute(
    exec: &mut Executor<'_>,
    state: &mut State,
    plan: Plan,
    cio: &CioClient,
    full_read: bool,
) -> Result<(), Error> {
    let data_dir = exec.config.data_dir.as_path();
    exec.progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} writes confirmed, ETA {eta}")
            .expect("a valid progress template"),
    );
    exec.progress
        .set_length((plan.identify_count() + plan.event_count()) as u64);
    state.run_in_progress = Some(exec.now);
    state.pending_people = plan.people.iter().map(|p| p.person_id).collect();
    state::save(data_dir, state)?;
    let mut checkpoint =
        Checkpoint::new(data_dir, exec.soft_deadline, exec.config.safety.time_budget);
    let stop = match exec.config.customerio.api {
        CioApi::V1 => exec.v1(state, plan, cio, &mut checkpoint).await,
        CioApi::Batch => exec.batch(state, plan, cio, &mut checkpoint).await,
    }
    .err();
    if stop.is_none() {
        state.complete_run(exec.now, full_read);
    }
    state::save(data_dir, state)?;
    match stop {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

impl Executor<'_> {
    /// `api = "v1"`: people concurrently (bounded), each person's writes in order.
    async fn v1(
        &mut self,
        state: &mut State,
        plan: Plan,
        cio: &CioClient,
        checkpoint: &mut Checkpoint<'_>,
    ) -> Result<(), Error> {
        let mut results = stream::iter(plan.people)
            .map(|person| send_person(cio, person))
            .buffer_unordered(PERSON_CONCURRENCY);
        while let Some(result) = results.next().await {
            self.settle_person(state, &result);
            if let Some(fatal) = result.fatal {
                return Err(fatal.into());
            }
            checkpoint.after_progress(state)?;
        }
        Ok(())
    }

    /// `api = "batch"` (SPEC 4.4): every identify of the run first, packed into v2 batches;
    /// then the events of the people whose identify was confirmed (or who needed none).
    /// Batches go out concurrently (bounded, rate-limited).
    async fn batch(
        &mut self,
        state: &mut State,
        plan: Plan,
        cio: &CioClient,
        checkpoint: &mut Checkpoint<'_>,
    ) -> Result<(), Error> {
        let people = plan.people;
        let mut blocked: BTreeSet<PersonId> = BTreeSet::new();

        // Phase 1: identifies. Operations are serialized a chunk at a time, so a first sync
        // never holds every operation of the run in memory at once.
        let identifies: Vec<(PersonId, &Identify)> = people
            .iter()
            .filter_map(|p| p.identify.as_ref().map(|i| (p.person_id, i)))
            .collect();
        for chunk in identifies.chunks(OPS_PER_CHUNK) {
            let ops: Vec<BatchOp> = chunk
                .iter()
                .map(|(person_id, identify)| BatchOp::identify(*person_id, &identify.attributes))
                .collect();
            let (batches, oversize) = cio::pack(&ops);
            for i in oversize {
                // Every value fits its 1000 bytes, but control characters escape to six
                // bytes each, so the op can pass v2's 32 KB; v1's identify has no such limit.
                let (person_id, identify) = chunk[i];
                let outcome = cio.identify(person_id, &identify.attributes).await?;
                if !self.settle_identify(state, person_id, identify, outcome) {
                    blocked.insert(person_id);
                }
            }
            let mut results = send_batches(cio, &ops, batches);
            while let Some((range, outcomes)) = results.next().await {
                for (i, outcome) in range.zip(outcomes?) {
                    let (person_id, identify) = chunk[i];
                    if !self.settle_identify(state, person_id, identify, outcome) {
                        blocked.insert(person_id);
                    }
                }
                checkpoint.after_progress(state)?;
            }
        }

        // Phase 2: events, in plan order.
        let events: Vec<(PersonId, &PlannedEvent)> = people
            .iter()
            .filter(|p| !blocked.contains(&p.person_id))
            .flat_map(|p| p.events.iter().map(move |e| (p.person_id, e)))
            .collect();
        let mut order = InOrder::new(events.iter().map(|(_, e)| e.application_id));
        for chunk_start in (0..events.len()).step_by(OPS_PER_CHUNK) {
            let chunk = chunk_start..(chunk_start + OPS_PER_CHUNK).min(events.len());
            let ops: Vec<BatchOp> = events[chunk.clone()]
                .iter()
                .map(|(person_id, e)| BatchOp::event(*person_id, wire(e)))
                .collect();
            let (batches, oversize) = cio::pack(&ops);
            for i in oversize {
                let (person_id, event) = events[chunk.start + i];
                order.settle(chunk.start + i, false);
                blocked.insert(person_id);
                self.reject(person_id, &event.name, "operation over 32 KB; not sent");
            }
            let mut results = send_batches(cio, &ops, batches);
            while let Some((range, outcomes)) = results.next().await {
                for (i, outcome) in range.zip(outcomes?) {
                    let index = chunk.start + i;
                    let (person_id, event) = events[index];
                    self.progress.inc(1);
                    match outcome {
                        Outcome::Confirmed => {
                            order.settle(index, true);
                            self.count_event(&event.name);
                        }
                        Outcome::Rejected(reason) => {
                            order.settle(index, false);
                            blocked.insert(person_id);
                            self.reject(person_id, &event.name, &reason);
                        }
                    }
                }
                for i in order.take_applicable() {
                    let event = events[i].1;
                    state.confirm_event(event.application_id, &event.after);
                }
                checkpoint.after_progress(state)?;
            }
        }
        for person in &people {
            if !blocked.contains(&person.person_id) {
                state.pending_people.remove(&person.person_id);
            }
        }
        Ok(())
    }

    /// Settles an identify; `true` when confirmed (the person's events may follow).
    fn settle_identify(
        &mut self,
        state: &mut State,
        person_id: PersonId,
        identify: &Identify,
        outcome: Outcome,
    ) -> bool {
        self.progress.inc(1);
        match outcome {
            Outcome::Confirmed => {
                self.confirm_identify(state, person_id, &identify.after);
                true
            }
            Outcome::Rejected(reason) => {
                self.reject(person_id, "identify", &reason);
                false
            }
        }
    }

    fn confirm_identify(&mut self, state: &mut State, person_id: PersonId, after: &PersonState) {
        state.confirm_identify(person_id, after);
        self.summary.identifies_sent += 1;
    }

    fn count_event(&mut self, name: &str) {
        self.summary.events_sent += 1;
        *self
            .summary
            .events_by_name
            .entry(name.to_owned())
            .or_default() += 1;
    }

    fn reject(&mut self, person_id: PersonId, write: &str, reason: &str) {
        tracing::warn!(person_id, write = %write, reason = %reason, "customer.io rejected a write; it is retried next run.");
        self.summary.rejected.push(Rejection {
            person_id,
            write: write.to_owned(),
            reason: reason.to_owned(),
        });
    }

    /// Settles what one person's v1 writes came to.
    fn settle_person(&mut self, state: &mut State, result: &PersonResult) {
        self.progress
            .inc((usize::from(result.identified.is_some()) + result.settled_events()) as u64);
        if let Some(after) = &result.identified {
            self.confirm_identify(state, result.person_id, after);
        }
        for (application_id, after, name) in &result.events {
            state.confirm_event(*application_id, after);
            self.count_event(name);
        }
        for (write, reason) in &result.rejected {
            self.reject(result.person_id, write, reason);
        }
        if result.rejected.is_empty() && result.fatal.is_none() && result.complete {
            state.pending_people.remove(&result.person_id);
        }
    }
}

/// An event as the customer.io client sends it.
fn wire(event: &PlannedEvent) -> cio::Event<'_, EventData> {
    cio::Event {
        name: &event.name,
        id: &event.id,
        timestamp: event.timestamp,
        data: &event.data,
    }
}

/// Sends packed batches, [`BATCH_CONCURRENCY`] at a time; yields each batch's index range
/// with its outcomes as they arrive.
fn send_batches<'a>(
    cio: &'a CioClient,
    ops: &'a [BatchOp],
    batches: Vec<Range<usize>>,
) -> impl futures_util::Stream<Item = (Range<usize>, Result<Vec<Outcome>, CioError>)> + 'a {
    stream::iter(batches)
        .map(move |range| async move { (range.clone(), cio.batch(&ops[range]).await) })
        .buffer_unordered(BATCH_CONCURRENCY)
}

/// Which events' state may be applied: per application, only the confirmed events before
/// the first one not (yet) confirmed, in plan order. Batches confirm out of order.
struct InOrder {
    /// Event indices per application, in plan order, and how many are applied.
    applications: BTreeMap<ApplicationId, (Vec<usize>, usize)>,
    /// Per event: `None` not settled, `Some(confirmed)`.
    settled: Vec<Option<bool>>,
    touched: BTreeSet<ApplicationId>,
    application_of: Vec<ApplicationId>,
}

impl InOrder {
    fn new(applications: impl Iterator<Item = ApplicationId>) -> Self {
        let application_of: Vec<ApplicationId> = applications.collect();
        let mut map: BTreeMap<ApplicationId, (Vec<usize>, usize)> = BTreeMap::new();
        for (i, app) in application_of.iter().enumerate() {
            map.entry(*app).or_default().0.push(i);
        }
        InOrder {
            applications: map,
            settled: vec![None; application_of.len()],
            touched: BTreeSet::new(),
            application_of,
        }
    }

    fn settle(&mut self, event: usize, confirmed: bool) {
        self.settled[event] = Some(confirmed);
        self.touched.insert(self.application_of[event]);
    }

    /// Events newly applicable since the last call, in order per application.
    fn take_applicable(&mut self) -> Vec<usize> {
        let mut out = Vec::new();
        for app in std::mem::take(&mut self.touched) {
            let Some((events, applied)) = self.applications.get_mut(&app) else {
                continue;
            };
            while let Some(&i) = events.get(*applied) {
                if self.settled[i] != Some(true) {
                    break;
                }
                out.push(i);
                *applied += 1;
            }
        }
        out
    }
}

/// What happened to one person's v1 writes.
struct PersonResult {
    person_id: PersonId,
    identified: Option<PersonState>,
    events: Vec<(ApplicationId, ApplicationState, String)>,
    rejected: Vec<(String, String)>,
    fatal: Option<CioError>,
    /// Every planned write was attempted.
    complete: bool,
}

impl PersonResult {
    /// Events confirmed or rejected (the identify's rejection counts as settled too).
    fn settled_events(&self) -> usize {
        self.events.len() + self.rejected.len()
    }
}

/// One person's writes in order: the identify first (its events wait for its confirmation),
/// then the events. A rejected event skips the rest of its application's events only.
async fn send_person(cio: &CioClient, person: PersonPlan) -> PersonResult {
    let mut result = PersonResult {
        person_id: person.person_id,
        identified: None,
        events: Vec::new(),
        rejected: Vec::new(),
        fatal: None,
        complete: false,
    };
    if let Some(identify) = &person.identify {
        match cio.identify(person.person_id, &identify.attributes).await {
            Ok(Outcome::Confirmed) => result.identified = Some(identify.after.clone()),
            Ok(Outcome::Rejected(reason)) => {
                result.rejected.push(("identify".to_owned(), reason));
                return result;
            }
            Err(e) => {
                result.fatal = Some(e);
                return result;
            }
        }
    }
    let mut blocked_applications = BTreeSet::new();
    for event in &person.events {
        if blocked_applications.contains(&event.application_id) {
            continue;
        }
        match cio.track(person.person_id, wire(event)).await {
            Ok(Outcome::Confirmed) => result.events.push((
                event.application_id,
                event.after.clone(),
                event.name.clone(),
            )),
            Ok(Outcome::Rejected(reason)) => {
                result.rejected.push((event.name.clone(), reason));
                blocked_applications.insert(event.application_id);
            }
            Err(e) => {
                result.fatal = Some(e);
                return result;
            }
        }
    }
    result.complete = true;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_applies_only_a_confirmed_prefix_per_application() {
        // Events 0,1,2 belong to application 7; event 3 to application 8.
        let mut order = InOrder::new([7, 7, 7, 8].into_iter());
        order.settle(1, true);
        order.settle(3, true);
        assert_eq!(
            order.take_applicable(),
            vec![3],
            "7 waits for its first event"
        );
        order.settle(0, true);
        assert_eq!(order.take_applicable(), vec![0, 1]);
        order.settle(2, false);
        assert!(
            order.take_applicable().is_empty(),
            "a rejected event is never skipped over"
        );
    }
}

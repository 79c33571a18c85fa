//! Sending to customer.io as the plan is made (SPEC 4.4, 5.3): units of [`Work`] go out
//! `api = "v1"` one unit per task or `api = "batch"` packed into v2 batches, a bounded
//! number in flight; each write customer.io confirms is settled by the [`Ledger`] into the
//! state and the summary, and the state is saved at checkpoints.
//!
//! Invariants:
//! - a unit is a person's identify, one application's events in rule order, or an action on
//!   a person as a whole (a removal, SPEC 8.2 and 8.3, or an unsuppress); an
//!   application's events always travel together (one task, or one batch), so its state
//!   advances only over a confirmed prefix and a rejected event is never skipped over;
//! - the caller drains every identify before it submits events ([`Sender::drain`]), so a
//!   person's identify is confirmed before any of their events is sent (SPEC 4.4);
//! - after the soft deadline or a fatal error nothing new starts; what is in flight may
//!   finish until the hard deadline and is settled, then the rest is abandoned (SPEC 2
//!   `time_budget`: the next run resumes, and customer.io discards resent events by id).

use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use indicatif::ProgressBar;
use tokio::time::Instant;

use crate::cio::{self, BatchOp, CioClient, CioError, Outcome, Packer, PersonAction};
use crate::config::CioApi;
use crate::error::Error;
use crate::model::{ApplicationId, PersonId};
use crate::plan::{EventData, Identify, PlannedEvent};
use crate::state::{Removal, State};
use crate::summary::{Rejection, Summary};

use super::checkpoint::{Checkpoint, Deadlines};

/// Units in flight at once with `api = "v1"` (each a person's identify or an application's
/// events, sent in order).
const V1_CONCURRENCY: usize = 16;
/// v2 batches in flight at once.
const BATCH_CONCURRENCY: usize = 4;

/// How many recent request durations [`Pace`] remembers.
const PACE_WINDOW: usize = 16;
/// How many times the slowest recent request [`Pace`] leaves room for before the hard
/// deadline.
const PACE_ROOM: u32 = 2;
/// How long [`Pace`] assumes a request takes before any of the run's was answered: a v1
/// write, and a v2 batch of up to 500 KB.
const UNMEASURED_V1_REQUEST: Duration = Duration::from_millis(250);
const UNMEASURED_BATCH: Duration = Duration::from_secs(1);

/// When a request may start: before the soft deadline, and only if, after its wait for the
/// rate limiter, a request twice as slow as the slowest recent one would still be answered
/// before the hard deadline; else its writes would be abandoned in flight and sent again by
/// the next run. Before any was answered, a request is assumed to take as long as the
/// previous run's slowest, or without one a quarter second (v1) or a second (a batch). Twice, because a request's time varies with its size and
/// customer.io's load, and starting one too late costs a resend (thousands of writes for a
/// batch) where stopping early costs one request's time. Shared by the sender and its v1
/// tasks (the runtime has one thread).
#[derive(Clone)]
struct Pace<'c> {
    cio: &'c CioClient,
    /// How long a request is assumed to take until one was answered.
    unmeasured: Duration,
    inner: Rc<RefCell<PaceInner>>,
}

struct PaceInner {
    soft: Instant,
    hard: Instant,
    /// Requests admitted whose flight has not started them yet (each will take its turn at
    /// the rate limiter before a request admitted now).
    admitted: u32,
    /// How long recent requests took once the rate limiter let them go.
    recent: VecDeque<Duration>,
    /// The slowest of the run's requests so far.
    slowest: Option<Duration>,
}

/// Leave for one request to start: admitted by [`Pace::admit`], spent by [`Pace::start`].
struct Ticket(Rc<RefCell<PaceInner>>);

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut pace = self.0.borrow_mut();
        pace.admitted = pace.admitted.saturating_sub(1);
    }
}

/// A request being timed: when it started, and how long the rate limiter was to hold it.
struct Timing {
    started: Instant,
    queued: Duration,
}

impl<'c> Pace<'c> {
    fn new(
        cio: &'c CioClient,
        api: CioApi,
        deadlines: Deadlines,
        learned: Option<Duration>,
    ) -> Pace<'c> {
        Pace {
            cio,
            unmeasured: learned.unwrap_or(match api {
                CioApi::V1 => UNMEASURED_V1_REQUEST,
                CioApi::Batch => UNMEASURED_BATCH,
            }),
            inner: Rc::new(RefCell::new(PaceInner {
                soft: deadlines.soft,
                hard: deadlines.hard,
                admitted: 0,
                recent: VecDeque::with_capacity(PACE_WINDOW),
                slowest: None,
            })),
        }
    }

    /// Leave for one more request to start, if it would be answered in time after the
    /// requests already admitted took their turns at the rate limiter.
    fn admit(&self) -> Option<Ticket> {
        let mut pace = self.inner.borrow_mut();
        let now = Instant::now();
        let slowest = pace.recent.iter().max().copied().unwrap_or(self.unmeasured);
        let queued = self.cio.rate_limit_wait_behind(pace.admitted);
        if now < pace.soft && now + queued + slowest * PACE_ROOM <= pace.hard {
            pace.admitted += 1;
            Some(Ticket(Rc::clone(&self.inner)))
        } else {
            tracing::debug!(
                to_hard_deadline_ms = pace.hard.saturating_duration_since(now).as_millis() as u64,
                rate_limit_wait_ms = queued.as_millis() as u64,
                slowest_recent_ms = slowest.as_millis() as u64,
                "Not starting another customer.io request: it could not be answered before the time budget ends."
            );
            None
        }
    }

    /// Starts timing an admitted request that is about to be sent.
    fn start(&self, ticket: Ticket) -> Timing {
        drop(ticket);
        Timing {
            started: Instant::now(),
            queued: self.cio.rate_limit_wait(),
        }
    }

    /// Remembers how long a request took, less its wait for the rate limiter.
    fn record(&self, timing: Timing) {
        let took = timing.started.elapsed().saturating_sub(timing.queued);
        let mut pace = self.inner.borrow_mut();
        if pace.recent.len() == PACE_WINDOW {
            pace.recent.pop_front();
        }
        pace.recent.push_back(took);
        pace.slowest = pace.slowest.max(Some(took));
    }
}

/// What one flight carries: a unit sent through v1, or a v2 batch of whole units.
enum Cargo {
    Unit(Work),
    Batch(Vec<(Work, Vec<BatchOp>)>),
}

impl Cargo {
    fn units(&self) -> Vec<&Work> {
        match self {
            Cargo::Unit(work) => vec![work],
            Cargo::Batch(units) => units.iter().map(|(work, _)| work).collect(),
        }
    }
}

/// One unit of work for customer.io.
#[derive(Debug, Clone)]
pub enum Work {
    /// A person's profile update.
    Identify {
        person_id: PersonId,
        identify: Identify,
    },
    /// One application's events, in rule order.
    Events {
        person_id: PersonId,
        application_id: ApplicationId,
        events: Vec<PlannedEvent>,
    },
    /// A person's profile deleted (or suppressed): `forget` (SPEC 8.2), or a person who
    /// left with `on_leave = "delete"` (8.3). Once confirmed they leave the state.
    Remove(Removal),
    /// A suppressed id customer.io should stop ignoring (`forget --undo`, SPEC 8.2). Once
    /// confirmed it leaves the forgotten list.
    Unsuppress { person_id: PersonId },
}

impl Work {
    /// The person the unit writes to.
    pub fn person_id(&self) -> PersonId {
        match self {
            Work::Identify { person_id, .. }
            | Work::Events { person_id, .. }
            | Work::Unsuppress { person_id } => *person_id,
            Work::Remove(removal) => removal.person_id,
        }
    }

    /// The action on the person as a whole, for a removal or an unsuppress.
    fn person_action(&self) -> Option<PersonAction> {
        match self {
            Work::Remove(removal) if removal.suppress => Some(PersonAction::Suppress),
            Work::Remove(_) => Some(PersonAction::Delete),
            Work::Unsuppress { .. } => Some(PersonAction::Unsuppress),
            Work::Identify { .. } | Work::Events { .. } => None,
        }
    }

    /// How many writes (identifies and events) it holds.
    pub fn writes(&self) -> usize {
        match self {
            Work::Identify { .. } | Work::Remove(_) | Work::Unsuppress { .. } => 1,
            Work::Events { events, .. } => events.len(),
        }
    }

    /// Its v2 operations, in order.
    fn ops(&self) -> Vec<BatchOp> {
        match self {
            Work::Identify {
                person_id,
                identify,
            } => vec![BatchOp::identify(*person_id, &identify.attributes)],
            Work::Events {
                person_id, events, ..
            } => events
                .iter()
                .map(|e| BatchOp::event(*person_id, wire(e)))
                .collect(),
            Work::Remove(_) | Work::Unsuppress { .. } => {
                let action = self.person_action().expect("an action on a person");
                vec![BatchOp::person_action(self.person_id(), action)]
            }
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

/// Settles what customer.io answered into the state (the only place a run changes it:
/// [`State::confirm_identify`], [`State::confirm_event`]) and the summary, and saves at
/// checkpoints.
pub struct Ledger<'a> {
    pub state: &'a mut State,
    pub summary: &'a mut Summary,
    pub progress: &'a ProgressBar,
    pub checkpoint: Checkpoint<'a>,
    /// People whose identify customer.io rejected in this run: their events wait.
    pub blocked: HashSet<PersonId>,
    /// People with a write rejected, cut short or held back in this run: still pending.
    pub unfinished: HashSet<PersonId>,
    /// Removals customer.io confirmed, not yet applied to the state: applied together in one
    /// pass ([`Ledger::apply_removals`]) before every save, so a mass delete stays linear.
    pub removed: Vec<Removal>,
}

impl Ledger<'_> {
    /// Settles `work` given the outcomes of its writes, in order; writes without an
    /// outcome were not sent (or not answered) and stay for the next run.
    fn settle(&mut self, work: &Work, outcomes: &[Outcome]) -> Result<(), Error> {
        self.progress.inc(outcomes.len() as u64);
        let person_id = work.person_id();
        if outcomes.len() < work.writes() {
            self.unfinished.insert(person_id);
        }
        match work {
            Work::Identify { identify, .. } => match outcomes.first() {
                Some(Outcome::Confirmed) => {
                    self.state.confirm_identify(person_id, &identify.after);
                    self.summary.identifies_sent += 1;
                }
                Some(Outcome::Rejected(reason)) => {
                    self.blocked.insert(person_id);
                    self.reject(person_id, "identify", reason);
                }
                None => {}
            },
            Work::Events {
                application_id,
                events,
                ..
            } => {
                // The application's state advances over the confirmed prefix only: an event
                // after a refused one waits for it, whatever customer.io did with it (a
                // batch sends them together; the resend carries the same id).
                let mut in_order = true;
                for (event, outcome) in events.iter().zip(outcomes) {
                    match outcome {
                        Outcome::Confirmed => {
                            if in_order {
                                self.state.confirm_event(*application_id, &event.after);
                            }
                            self.summary.events_sent += 1;
                            *self
                                .summary
                                .events_by_name
                                .entry(event.name.clone())
                                .or_default() += 1;
                        }
                        Outcome::Rejected(reason) => {
                            in_order = false;
                            self.reject(person_id, &event.name, reason);
                        }
                    }
                }
            }
            Work::Remove(removal) => match outcomes.first() {
                Some(Outcome::Confirmed) => {
                    self.removed.push(*removal);
                    if removal.forget {
                        self.summary.people_forgotten += 1;
                    } else {
                        self.summary.people_deleted += 1;
                    }
                }
                Some(Outcome::Rejected(reason)) => {
                    self.reject(person_id, removal.action(), reason);
                }
                None => {}
            },
            Work::Unsuppress { .. } => match outcomes.first() {
                Some(Outcome::Confirmed) => {
                    self.state.undo_forget(person_id);
                }
                Some(Outcome::Rejected(reason)) => self.reject(person_id, "unsuppress", reason),
                None => {}
            },
        }
        if self.checkpoint.is_due() {
            self.apply_removals();
        }
        self.checkpoint.after_progress(self.state)
    }

    /// Applies the removals customer.io confirmed to the state (before any save).
    pub fn apply_removals(&mut self) {
        self.state.confirm_removals(&self.removed);
        self.removed.clear();
    }

    /// Records `work` as not sent in this run (its person stays pending).
    pub fn hold(&mut self, work: &Work) {
        self.unfinished.insert(work.person_id());
    }

    /// Records a write customer.io refused for good (retried next run).
    pub fn reject(&mut self, person_id: PersonId, write: &str, reason: &str) {
        tracing::warn!(person_id, write = %write, reason = %reason, "customer.io rejected a write; it is retried next run.");
        self.unfinished.insert(person_id);
        self.summary.rejected.push(Rejection {
            person_id,
            write: write.to_owned(),
            reason: reason.to_owned(),
        });
    }
}

/// What one flight (a v1 unit, or a v2 batch) came back with: the units and their
/// outcomes (each unit's first outcomes, in order), and the error that cut it short.
struct Landed {
    units: Vec<(Work, Vec<Outcome>)>,
    fatal: Option<CioError>,
}

type Flight<'c> = Pin<Box<dyn Future<Output = Landed> + 'c>>;

/// Sends units of work, a bounded number of flights at once, settling each as it lands.
pub struct Sender<'c> {
    cio: &'c CioClient,
    api: CioApi,
    in_flight: FuturesUnordered<Flight<'c>>,
    /// The batch being packed (`api = "batch"`): its units and their operations.
    packing: Vec<(Work, Vec<BatchOp>)>,
    packer: Packer,
    /// When requests may start.
    pace: Pace<'c>,
    /// In-flight requests are abandoned at this instant.
    hard_deadline: Instant,
    /// What stopped sending: a fatal customer.io error, or the deadline.
    stopped: Option<Error>,
}

impl<'c> Sender<'c> {
    /// A sender on `cio` with the configured API. `learned`: the slowest request of the
    /// previous run, which paces the first requests until this run has answers of its own.
    pub fn new(
        cio: &'c CioClient,
        api: CioApi,
        deadlines: Deadlines,
        learned: Option<Duration>,
    ) -> Sender<'c> {
        Sender {
            cio,
            api,
            in_flight: FuturesUnordered::new(),
            packing: Vec::new(),
            packer: Packer::default(),
            pace: Pace::new(cio, api, deadlines, learned),
            hard_deadline: deadlines.hard,
            stopped: None,
        }
    }

    /// The slowest request of the run so far (less its wait for the rate limiter).
    pub fn slowest_request(&self) -> Option<Duration> {
        self.pace.inner.borrow().slowest
    }

    /// Stops sending for `reason` (the first reason wins).
    pub fn stop(&mut self, reason: Error) {
        self.stopped.get_or_insert(reason);
    }

    /// What stopped sending, if anything.
    pub fn take_stop(&mut self) -> Option<Error> {
        self.stopped.take()
    }

    /// Sends `work` (or holds it, once sending has stopped), settling flights that land
    /// meanwhile. Waits while the flights in the air are at their limit.
    ///
    /// # Errors
    /// The state cannot be saved at a checkpoint (74).
    pub async fn submit(&mut self, work: Work, ledger: &mut Ledger<'_>) -> Result<(), Error> {
        match self.api {
            CioApi::V1 => {
                self.dispatch(Cargo::Unit(work), V1_CONCURRENCY, ledger)
                    .await
            }
            CioApi::Batch => self.pack(work, ledger).await,
        }
    }

    /// Sends the packed batch.
    async fn seal(&mut self, ledger: &mut Ledger<'_>) -> Result<(), Error> {
        if self.packing.is_empty() {
            return Ok(());
        }
        let units = std::mem::take(&mut self.packing);
        self.packer.reset();
        self.dispatch(Cargo::Batch(units), BATCH_CONCURRENCY, ledger)
            .await
    }

    /// Sends what is packed and waits for every flight to land (or the hard deadline),
    /// settling each.
    ///
    /// # Errors
    /// The state cannot be saved at a checkpoint (74).
    pub async fn drain(&mut self, ledger: &mut Ledger<'_>) -> Result<(), Error> {
        self.seal(ledger).await?;
        while !self.in_flight.is_empty() {
            if !self.land_next(ledger).await? {
                break;
            }
        }
        Ok(())
    }

    /// Packs `work` into the current batch, sealing it first when `work` does not fit.
    async fn pack(&mut self, work: Work, ledger: &mut Ledger<'_>) -> Result<(), Error> {
        let ops = work.ops();
        if let Some(too_big) = ops.iter().position(|op| op.len() > cio::OP_MAX_BYTES) {
            return self.send_oversize(work, too_big, ledger).await;
        }
        if !self.packer.fits(&ops) {
            self.seal(ledger).await?;
        }
        self.packer.add(&ops);
        self.packing.push((work, ops));
        Ok(())
    }

    /// A unit with an operation over v2's 32 KB. An identify (whose values fit their 1000
    /// bytes, but control characters escape to six bytes each) goes through v1, which has no
    /// such limit. An event that large is rejected (planning cuts the only long field, so
    /// it cannot happen in practice); the application's events before it still go.
    async fn send_oversize(
        &mut self,
        work: Work,
        too_big: usize,
        ledger: &mut Ledger<'_>,
    ) -> Result<(), Error> {
        match work {
            // An action on a person is a hundred bytes; only an identify can be this large.
            Work::Identify { .. } | Work::Remove(_) | Work::Unsuppress { .. } => {
                self.dispatch(Cargo::Unit(work), BATCH_CONCURRENCY, ledger)
                    .await
            }
            Work::Events {
                person_id,
                application_id,
                mut events,
            } => {
                ledger.reject(
                    person_id,
                    &events[too_big].name,
                    "operation over 32 KB; not sent",
                );
                events.truncate(too_big);
                if events.is_empty() {
                    return Ok(());
                }
                let before = Work::Events {
                    person_id,
                    application_id,
                    events,
                };
                let ops = before.ops();
                if !self.packer.fits(&ops) {
                    self.seal(ledger).await?;
                }
                self.packer.add(&ops);
                self.packing.push((before, ops));
                Ok(())
            }
        }
    }

    /// Puts `cargo` in the air once fewer than `limit` flights are up (landing them
    /// meanwhile) and the pace admits it; holds it when sending has stopped or the pace says
    /// it could not be answered in time (which stops sending: SPEC 2 `time_budget`).
    async fn dispatch(
        &mut self,
        cargo: Cargo,
        limit: usize,
        ledger: &mut Ledger<'_>,
    ) -> Result<(), Error> {
        // The pace is asked once a lane is free: a request admitted and then kept waiting
        // for a lane could start too late. When it says no while requests are in the air,
        // their answers (how long requests take, turns given back to the rate limiter) may
        // change its mind, so it is asked again after each; with none in the air, no is
        // final.
        let ticket = loop {
            while self.stopped.is_none() && self.in_flight.len() >= limit {
                self.land_next(ledger).await?;
            }
            if self.stopped.is_some() {
                break None;
            }
            if let Some(ticket) = self.pace.admit() {
                break Some(ticket);
            }
            if self.in_flight.is_empty() {
                self.stop(Error::TimeBudget(ledger.checkpoint.budget()));
                break None;
            }
            self.land_next(ledger).await?;
        };
        let Some(ticket) = ticket else {
            for work in cargo.units() {
                ledger.hold(work);
            }
            return Ok(());
        };
        let pace = self.pace.clone();
        let flight = match cargo {
            Cargo::Unit(work) => v1_flight(self.cio, work, pace, ticket),
            Cargo::Batch(units) => batch_flight(self.cio, units, pace, ticket),
        };
        self.in_flight.push(flight);
        Ok(())
    }

    /// Waits for the next flight to land and settles it; `Ok(false)` when the hard deadline
    /// came first: everything still in flight is abandoned and sending stops (the writes
    /// are sent again by the next run, events with the same ids; it reads where this run
    /// read, as neither the watermark nor the last full read moves).
    async fn land_next(&mut self, ledger: &mut Ledger<'_>) -> Result<bool, Error> {
        match tokio::time::timeout_at(self.hard_deadline, self.in_flight.next()).await {
            Ok(Some(landed)) => {
                self.land(landed, ledger)?;
                Ok(true)
            }
            Ok(None) => Ok(true),
            Err(_) => {
                tracing::info!(
                    requests = self.in_flight.len(),
                    "Time budget: abandoning the customer.io requests still unanswered; the next run sends their writes again."
                );
                self.in_flight = FuturesUnordered::new();
                self.stop(Error::TimeBudget(ledger.checkpoint.budget()));
                Ok(false)
            }
        }
    }

    fn land(&mut self, landed: Landed, ledger: &mut Ledger<'_>) -> Result<(), Error> {
        if let Some(fatal) = landed.fatal {
            self.stop(fatal.into());
        }
        for (work, outcomes) in &landed.units {
            let refused = matches!(outcomes.last(), Some(Outcome::Rejected(_)));
            if outcomes.len() < work.writes() && !refused && self.stopped.is_none() {
                // A unit cut short because its next request could not be answered in time:
                // the run stops here and the next one resumes.
                self.stop(Error::TimeBudget(ledger.checkpoint.budget()));
            }
            ledger.settle(work, outcomes)?;
        }
        Ok(())
    }
}

/// One v1 unit: its writes in order, stopping at the first refusal, at a fatal error, or
/// (after the first write) when the pace says no new request may start.
fn v1_flight<'c>(cio: &'c CioClient, work: Work, pace: Pace<'c>, ticket: Ticket) -> Flight<'c> {
    Box::pin(async move {
        let mut outcomes = Vec::new();
        let mut fatal = None;
        match &work {
            Work::Identify {
                person_id,
                identify,
            } => {
                let timing = pace.start(ticket);
                match cio.identify(*person_id, &identify.attributes).await {
                    Ok(outcome) => outcomes.push(outcome),
                    Err(e) => fatal = Some(e),
                }
                pace.record(timing);
            }
            Work::Remove(_) | Work::Unsuppress { .. } => {
                let action = work.person_action().expect("an action on a person");
                let timing = pace.start(ticket);
                match cio.person_action(work.person_id(), action).await {
                    Ok(outcome) => outcomes.push(outcome),
                    Err(e) => fatal = Some(e),
                }
                pace.record(timing);
            }
            Work::Events {
                person_id, events, ..
            } => {
                let mut first = Some(ticket);
                for event in events {
                    let Some(ticket) = first.take().or_else(|| pace.admit()) else {
                        break;
                    };
                    let timing = pace.start(ticket);
                    let answer = cio.track(*person_id, wire(event)).await;
                    pace.record(timing);
                    match answer {
                        Ok(outcome) => {
                            let refused = matches!(outcome, Outcome::Rejected(_));
                            outcomes.push(outcome);
                            if refused {
                                break;
                            }
                        }
                        Err(e) => {
                            fatal = Some(e);
                            break;
                        }
                    }
                }
            }
        }
        Landed {
            units: vec![(work, outcomes)],
            fatal,
        }
    })
}

/// One v2 batch of whole units; each unit gets the outcomes of its operations.
fn batch_flight<'c>(
    cio: &'c CioClient,
    units: Vec<(Work, Vec<BatchOp>)>,
    pace: Pace<'c>,
    ticket: Ticket,
) -> Flight<'c> {
    Box::pin(async move {
        let ops: Vec<BatchOp> = units.iter().flat_map(|(_, ops)| ops.clone()).collect();
        let timing = pace.start(ticket);
        let answer = cio.batch(&ops).await;
        pace.record(timing);
        match answer {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                let units = units
                    .into_iter()
                    .map(|(work, ops)| {
                        let mine: Vec<Outcome> = outcomes.by_ref().take(ops.len()).collect();
                        (work, mine)
                    })
                    .collect();
                Landed { units, fatal: None }
            }
            Err(e) => Landed {
                units: units
                    .into_iter()
                    .map(|(work, _)| (work, Vec::new()))
                    .collect(),
                fatal: Some(e),
            },
        }
    })
}

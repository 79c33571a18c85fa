//! Orchestration of one run (SPEC 1 `run`, 4.4, 5): lock, state, read GIS, plan, send to
//! customer.io person by person (identify confirmed before that person's events), apply
//! each confirmed write to the state and save it in checkpoints, then the summary.
//!
//! The only module that knows every piece. The clock is read by the caller and passed in.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::time::Instant;

use crate::cio::{self, BatchOp, CioClient, CioError, Outcome};
use crate::config::{CioApi, Config, GisAuth, Secret};
use crate::credentials;
use crate::error::{self, Error};
use crate::gis::{GisClient, TokenStore};
use crate::http::{Counters, RetryPolicy};
use crate::lock;
use crate::model::PersonId;
use crate::monitoring;
use crate::plan::{self, Fingerprinter, PersonPlan, Plan, PlanOptions};
use crate::state::{self, ApplicationState, PersonState, State};
use crate::summary::{Rejection, Summary};

/// People whose writes may be in flight at once (each person's own writes stay in order).
const PERSON_CONCURRENCY: usize = 16;
/// v2 batches in flight at once.
const BATCH_CONCURRENCY: usize = 4;
/// Batch operations serialized at a time (about 6 MB of events).
const OPS_PER_CHUNK: usize = 16_384;
/// How often, at least, the state is saved while writes are confirmed.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// The large-change refusals apply only when the state knows at least this many people.
const LARGE_CHANGE_MIN_PEOPLE: usize = 50;

/// Name of the run summary file in `data_dir`.
pub const LAST_RUN_FILE: &str = "last_run.json";

/// How this run behaves (command-line flags).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Show a progress bar on stderr (only when it is a terminal, never under cron).
    pub progress: bool,
    pub dry_run: bool,
    pub full: bool,
    pub allow_large_change: bool,
}

/// What `--dry-run` would send, per person: attribute names and events (no values, so the
/// output carries no personal data).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DryRunPerson {
    pub person_id: PersonId,
    pub attributes: Vec<String>,
    pub events: Vec<DryRunEvent>,
}

/// One event of a dry run.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DryRunEvent {
    pub name: String,
    pub timestamp: i64,
    pub id: String,
}

/// The result of a run that got as far as reading the state.
#[derive(Debug)]
pub struct RunResult {
    pub summary: Summary,
    /// With `--dry-run`: what would be sent.
    pub dry_run: Option<Vec<DryRunPerson>>,
    /// What stopped the run early, if anything.
    pub error: Option<Error>,
}

impl RunResult {
    /// The process exit status (SPEC 1): the stop reason, else 1 if anything was rejected.
    pub fn code(&self) -> u8 {
        match &self.error {
            Some(e) => e.code(),
            None if !self.summary.rejected.is_empty() => error::code::PARTIAL,
            None => error::code::OK,
        }
    }
}

/// One sync. `now` is the run's start (the only clock reading); `started` its monotonic twin.
///
/// # Errors
/// Before anything is read or sent: the lock is held (75), the data dir or state is unusable
/// (74), the state belongs to another setup (78). Later failures come back in
/// [`RunResult::error`] with the summary of what was done.
pub async fn run(
    config: &Config,
    options: &RunOptions,
    now: DateTime<Utc>,
    started: Instant,
) -> Result<RunResult, Error> {
    let data_dir = config.data_dir.as_path();
    state::ensure_data_dir(data_dir)?;
    let _lock = match lock::try_acquire(data_dir) {
        Ok(Some(lock)) => lock,
        Ok(None) => return Err(Error::Locked(data_dir.join("ciosync.lock"))),
        Err(e) => {
            return Err(Error::State(format!(
                "cannot lock {}: {e}",
                data_dir.join("ciosync.lock").display()
            )))
        }
    };
    let pinger = if options.dry_run {
        None
    } else {
        config
            .monitoring
            .ping_url
            .as_deref()
            .map(|url| (monitoring::ping_client(), url))
    };
    if let Some((client, url)) = &pinger {
        monitoring::ping(client, url, "start").await;
    }
    let result = run_locked(config, options, now, started).await;
    if !options.dry_run {
        let (code, summary) = match &result {
            Ok(r) => (r.code(), r.summary.clone()),
            Err(e) => (
                e.code(),
                Summary {
                    started_at: Some(now),
                    ended_at: Some(Utc::now().max(now)),
                    outcome: outcome_name(e).to_owned(),
                    exit_code: e.code(),
                    error: Some(error::chain(e)),
                    ..Summary::default()
                },
            ),
        };
        if let Some(path) = &config.monitoring.textfile {
            if let Err(e) = monitoring::write_textfile(path, &summary) {
                tracing::warn!(path = %path.display(), error = %e, "Cannot write the Prometheus textfile.");
            }
        }
        if let Some((client, url)) = &pinger {
            monitoring::ping(client, url, &code.to_string()).await;
        }
    }
    result
}

/// The run once the lock is held.
async fn run_locked(
    config: &Config,
    options: &RunOptions,
    now: DateTime<Utc>,
    started: Instant,
) -> Result<RunResult, Error> {
    let data_dir = config.data_dir.as_path();
    let setup = setup_fingerprint(config);
    let loaded = state::load(data_dir)?;
    let first_run = loaded.is_none();
    let mut state = loaded.unwrap_or_else(|| State {
        setup: setup.clone(),
        ..State::default()
    });
    if state.setup != setup {
        return Err(Error::SetupMismatch(format!(
            "{} was written for another setup (GIS endpoint, home LCs, customer.io site id or Track URL changed). \
             To start over for the new setup, move the data dir's state.json, state.json.bak and state.key away; \
             the next run then sends every profile and event again (customer.io discards events it already has)",
            data_dir.join("state.json").display()
        )));
    }
    let key = if options.dry_run && first_run {
        // A dry run writes nothing in data_dir; with no state every person is new anyway.
        rand::random::<[u8; 32]>()
    } else {
        state::load_or_create_key(data_dir)?
    };

    tracing::info!(first_run, dry_run = options.dry_run, "Run started.");
    let mut summary = Summary {
        started_at: Some(now),
        dry_run: options.dry_run,
        ..Summary::default()
    };
    let mut engine = Engine {
        config,
        options,
        now,
        soft_deadline: soft_deadline(started, config.safety.time_budget),
        fingerprinter: Fingerprinter::new(key),
        summary: &mut summary,
        gis_counters: None,
        cio_counters: None,
        token_refreshes: 0,
        progress: progress_bar(options.progress),
    };
    let outcome = engine.sync(&mut state, first_run).await;
    engine.progress.finish_and_clear();
    let (gis_counters, cio_counters, token_refreshes) = (
        engine.gis_counters.take(),
        engine.cio_counters.take(),
        engine.token_refreshes,
    );
    if let Some(c) = gis_counters {
        summary.gis_requests = Counters::get(&c.requests);
        summary.retries += Counters::get(&c.retries);
    }
    if let Some(c) = cio_counters {
        summary.cio_requests = Counters::get(&c.requests);
        summary.retries += Counters::get(&c.retries);
        summary.cio_bytes_sent = Counters::get(&c.bytes_sent);
    }
    summary.token_refreshes = token_refreshes;
    summary.pending_people = state.pending_people.len() as u64;
    summary.ended_at = Some(Utc::now().max(now));
    (summary.cpu_seconds, summary.peak_rss_bytes) = crate::summary::resource_usage();
    let (dry_run, error) = match outcome {
        Ok(dry_run) => (dry_run, None),
        Err(e) => (None, Some(e)),
    };
    let mut result = RunResult {
        summary,
        dry_run,
        error,
    };
    result.summary.exit_code = result.code();
    result.summary.outcome = match (&result.error, options.dry_run) {
        (Some(e), _) => outcome_name(e).to_owned(),
        (None, true) => "dry_run".to_owned(),
        (None, false) if result.summary.rejected.is_empty() => "ok".to_owned(),
        (None, false) => "partial".to_owned(),
    };
    result.summary.error = result.error.as_ref().map(|e| error::chain(e));
    tracing::info!(
        outcome = %result.summary.outcome,
        exit_code = result.summary.exit_code,
        people_seen = result.summary.people_seen,
        identifies_sent = result.summary.identifies_sent,
        events_sent = result.summary.events_sent,
        rejected = result.summary.rejected.len(),
        gis_requests = result.summary.gis_requests,
        cio_requests = result.summary.cio_requests,
        "Run finished."
    );
    if !options.dry_run {
        write_last_run(data_dir, &result.summary)?;
    }
    Ok(result)
}

/// The setup fingerprint of SPEC 5.2.
pub fn setup_fingerprint(config: &Config) -> String {
    state::setup_fingerprint(
        &config.gis.endpoint,
        &config.gis.home_lcs,
        &config.customerio.site_id,
        &config.customerio.base_url(),
    )
}

fn outcome_name(e: &Error) -> &'static str {
    match e {
        Error::Config(_) | Error::SetupMismatch(_) | Error::WrongRegion(_) => "config_error",
        Error::LargeChange(_) => "large_change_refused",
        Error::Locked(_) => "locked",
        Error::TimeBudget(_) => "time_budget",
        Error::State(_) => "state_error",
        Error::Auth(_) => "auth_error",
        Error::Unavailable(_) => "unavailable",
    }
}

/// A progress bar on stderr, drawn only when asked for (a terminal); hidden otherwise.
fn progress_bar(visible: bool) -> ProgressBar {
    if visible {
        let bar = ProgressBar::new_spinner();
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar
    } else {
        ProgressBar::hidden()
    }
}

/// Reads since this long before the last completed run started, so clock skew and
/// records committed while that run read cannot slip between two incremental reads.
const INCREMENTAL_OVERLAP: chrono::Duration = chrono::Duration::minutes(15);
/// More pending people than this make the run read everything instead (SPEC 5.4).
const MAX_PENDING_FOR_INCREMENTAL: usize = 100;

/// `Some(since)` when this run may read incrementally (SPEC 5.4): not the first run, no
/// `--full`, the last full read younger than `full_sync_every`, a watermark, and at most
/// [`MAX_PENDING_FOR_INCREMENTAL`] pending people.
fn incremental_since(
    config: &Config,
    options: &RunOptions,
    state: &State,
    first_run: bool,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if first_run || options.full || state.pending_people.len() > MAX_PENDING_FOR_INCREMENTAL {
        return None;
    }
    let every = chrono::Duration::from_std(config.gis.full_sync_every).ok()?;
    let last_full = state.last_full_read?;
    if now - last_full >= every {
        return None;
    }
    Some(state.watermark? - INCREMENTAL_OVERLAP)
}

/// New work stops this long before the time budget ends, so the final save fits.
fn soft_deadline(started: Instant, budget: Duration) -> Instant {
    let margin = (budget / 10).min(Duration::from_secs(10));
    started + budget.saturating_sub(margin)
}

/// Writes the summary to `<data_dir>/last_run.json`.
///
/// # Errors
/// When the file cannot be written (exit 74).
pub fn write_last_run(data_dir: &Path, summary: &Summary) -> Result<(), Error> {
    let path = data_dir.join(LAST_RUN_FILE);
    let bytes = serde_json::to_vec_pretty(summary).expect("a summary always serializes");
    state::write_atomic(&path, &bytes)
        .map_err(|e| Error::State(format!("cannot write {}: {e}", path.display())))
}

struct Engine<'a> {
    config: &'a Config,
    options: &'a RunOptions,
    now: DateTime<Utc>,
    soft_deadline: Instant,
    fingerprinter: Fingerprinter,
    summary: &'a mut Summary,
    gis_counters: Option<Arc<Counters>>,
    cio_counters: Option<Arc<Counters>>,
    token_refreshes: u64,
    progress: ProgressBar,
}

impl Engine<'_> {
    async fn sync(
        &mut self,
        state: &mut State,
        first_run: bool,
    ) -> Result<Option<Vec<DryRunPerson>>, Error> {
        let config = self.config;
        let data_dir = config.data_dir.clone();
        let cio = CioClient::new(
            &config.customerio,
            RetryPolicy::default(),
            Some(self.soft_deadline),
        )?;
        self.cio_counters = Some(cio.counters.clone());
        self.check_region(&cio).await?;

        let gis = gis_client(config, Some(self.soft_deadline))?;
        self.gis_counters = Some(gis.counters.clone());
        let since = incremental_since(config, self.options, state, first_run, self.now);
        self.progress.set_message("Reading GIS");
        self.progress.enable_steady_tick(Duration::from_millis(200));
        let read = match since {
            Some(since) => {
                let out_of_scope: BTreeSet<PersonId> = state
                    .people
                    .iter()
                    .filter(|(_, p)| !p.in_scope)
                    .map(|(id, _)| *id)
                    .collect();
                tracing::info!(since = %since, pending = state.pending_people.len(), "Incremental read.");
                gis.read_changed(since, &state.pending_people, &out_of_scope)
                    .await
            }
            None => {
                tracing::info!("Full read.");
                match gis.read_all().await {
                    Ok(mut snapshot) => recheck_missing(&gis, state, &mut snapshot)
                        .await
                        .map(|()| snapshot),
                    Err(e) => Err(e),
                }
            }
        };
        self.token_refreshes = gis.token_refreshes();
        let snapshot = read?;
        let full_read = since.is_none();
        self.summary.full_read = full_read;
        self.summary.skipped = snapshot.skipped.clone();

        let plan = plan::plan(
            state,
            &snapshot.people,
            &snapshot.applications,
            &self.fingerprinter,
            &PlanOptions {
                site_id: config.customerio.site_id.clone(),
                programme_name: config.events.programme_name,
                late_events: config.events.late_events,
                full_read,
            },
            self.now,
        );
        self.record_plan_stats(&plan);
        self.progress.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} writes confirmed, ETA {eta}")
                .expect("a valid progress template"),
        );
        self.progress
            .set_length((plan.identify_count() + plan.event_count()) as u64);
        if !self.options.allow_large_change && !first_run {
            let people_read = full_read.then_some(snapshot.people.len());
            refuse_large_change(config, state, &plan, people_read)?;
        }
        // The records read are no longer needed; free them before sending.
        drop(snapshot);
        if self.options.dry_run {
            return Ok(Some(dry_run_view(&plan)));
        }
        self.execute(state, plan, &cio, &data_dir, full_read)
            .await?;
        Ok(None)
    }

    async fn check_region(&self, cio: &CioClient) -> Result<(), Error> {
        let info = cio.region().await?;
        let configured = &self.config.customerio;
        if configured.track_url.is_none() {
            let expected = match configured.region {
                crate::config::Region::Us => "us",
                crate::config::Region::Eu => "eu",
            };
            if !info.region.is_empty() && info.region != expected {
                return Err(Error::WrongRegion(format!(
                    "customer.io says this account is in region `{}` ({}), but customerio.region is `{expected}` in {}",
                    info.region,
                    info.url,
                    self.config.path.display()
                )));
            }
        }
        Ok(())
    }

    fn record_plan_stats(&mut self, plan: &Plan) {
        let stats = &plan.stats;
        self.summary.people_seen = stats.people_seen;
        self.summary.applications_seen = stats.applications_seen;
        self.summary.people_changed = plan.people.len() as u64;
        for (reason, n) in &stats.skipped {
            *self.summary.skipped.entry(reason.clone()).or_default() += n;
        }
        for (reason, id) in &stats.skipped_ids {
            tracing::info!(reason = %reason, id, "Skipped a record.");
        }
        for (status, n) in &stats.unknown_statuses {
            tracing::info!(status = %status, applications = n, "Unknown application status; nothing sent for it.");
        }
        self.summary.unknown_statuses = stats.unknown_statuses.clone();
        self.summary.truncated_values = stats.truncated_values;
        self.summary.people_left_scope = stats.people_left_scope;
    }

    /// Sends the plan and saves the state at checkpoints; the state records every write
    /// customer.io confirmed, whatever stops the run.
    async fn execute(
        &mut self,
        state: &mut State,
        plan: Plan,
        cio: &CioClient,
        data_dir: &Path,
        full_read: bool,
    ) -> Result<(), Error> {
        state.run_in_progress = Some(self.now);
        state.pending_people = plan
            .people
            .iter()
            .map(|p| p.person_id)
            .collect::<BTreeSet<_>>();
        state::save(data_dir, state)?;
        let mut checkpoint = Checkpoint {
            data_dir,
            last_save: Instant::now(),
            interval: CHECKPOINT_EVERY,
            soft_deadline: self.soft_deadline,
            budget: self.config.safety.time_budget,
        };
        let stop = match self.config.customerio.api {
            CioApi::V1 => self.execute_v1(state, plan, cio, &mut checkpoint).await,
            CioApi::Batch => self.execute_batch(state, plan, cio, &mut checkpoint).await,
        };
        let stop = stop.err();
        if stop.is_none() {
            state.run_in_progress = None;
            state.watermark = Some(self.now);
            if full_read {
                state.last_full_read = Some(self.now);
            }
        }
        state::save(data_dir, state)?;
        match stop {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// `api = "v1"`: people concurrently (bounded), each person's writes in order.
    async fn execute_v1(
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
            self.apply(state, &result);
            if let Some(fatal) = result.fatal {
                return Err(fatal.into());
            }
            checkpoint.after_progress(state)?;
        }
        Ok(())
    }

    /// `api = "batch"` (SPEC 4.4): every identify of the run first, packed into v2 batches;
    /// then the events of the people whose identify was confirmed (or who needed none).
    /// Batches go out concurrently (bounded, rate-limited). An application's state advances
    /// only over its confirmed events in order, so a rejected event is never skipped over.
    async fn execute_batch(
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
        let identifies: Vec<&PersonPlan> = people.iter().filter(|p| p.identify.is_some()).collect();
        for chunk_start in (0..identifies.len()).step_by(OPS_PER_CHUNK) {
            let chunk =
                &identifies[chunk_start..(chunk_start + OPS_PER_CHUNK).min(identifies.len())];
            let ops: Vec<BatchOp> = chunk
                .iter()
                .map(|p| {
                    BatchOp::identify(
                        p.person_id,
                        &p.identify.as_ref().expect("filtered").attributes,
                    )
                })
                .collect();
            let (batches, oversize) = cio::pack(&ops);
            for i in oversize {
                // Every value fits its 1000 bytes, but control characters escape to six
                // bytes each, so the op can pass v2's 32 KB; v1's identify has no such limit.
                let person = chunk[i];
                let identify = person.identify.as_ref().expect("filtered");
                let outcome = cio.identify(person.person_id, &identify.attributes).await?;
                self.settle_identify(state, person, outcome, &mut blocked);
            }
            let mut results = send_batches(cio, &ops, batches);
            while let Some((range, outcome)) = results.next().await {
                for (i, outcome) in range.clone().zip(outcome?) {
                    self.settle_identify(state, chunk[i], outcome, &mut blocked);
                }
                self.progress.inc(range.len() as u64);
                checkpoint.after_progress(state)?;
            }
        }

        // Phase 2: events, in plan order.
        let events: Vec<(PersonId, &plan::PlannedEvent)> = people
            .iter()
            .filter(|p| !blocked.contains(&p.person_id))
            .flat_map(|p| p.events.iter().map(move |e| (p.person_id, e)))
            .collect();
        let mut progress = EventProgress::new(events.iter().map(|(_, e)| e.application_id));
        for chunk_start in (0..events.len()).step_by(OPS_PER_CHUNK) {
            let chunk = chunk_start..(chunk_start + OPS_PER_CHUNK).min(events.len());
            let ops: Vec<BatchOp> = events[chunk.clone()]
                .iter()
                .map(|(person_id, e)| {
                    BatchOp::event(
                        *person_id,
                        cio::Event {
                            name: &e.name,
                            id: &e.id,
                            timestamp: e.timestamp,
                            data: &e.data,
                        },
                    )
                })
                .collect();
            let (batches, oversize) = cio::pack(&ops);
            for i in oversize {
                let (person_id, event) = events[chunk.start + i];
                progress.settle(chunk.start + i, false);
                blocked.insert(person_id);
                self.reject(person_id, &event.name, "operation over 32 KB; not sent");
            }
            let mut results = send_batches(cio, &ops, batches);
            while let Some((range, outcome)) = results.next().await {
                for (i, outcome) in range.clone().zip(outcome?) {
                    let index = chunk.start + i;
                    let (person_id, event) = events[index];
                    match outcome {
                        Outcome::Confirmed => {
                            progress.settle(index, true);
                            self.summary.events_sent += 1;
                            *self
                                .summary
                                .events_by_name
                                .entry(event.name.clone())
                                .or_default() += 1;
                        }
                        Outcome::Rejected(reason) => {
                            progress.settle(index, false);
                            blocked.insert(person_id);
                            self.reject(person_id, &event.name, &reason);
                        }
                    }
                }
                for i in progress.take_applicable() {
                    let event = events[i].1;
                    state
                        .applications
                        .insert(event.application_id, event.after.clone());
                }
                self.progress.inc(range.len() as u64);
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

    fn settle_identify(
        &mut self,
        state: &mut State,
        person: &PersonPlan,
        outcome: Outcome,
        blocked: &mut BTreeSet<PersonId>,
    ) {
        match outcome {
            Outcome::Confirmed => {
                let after = &person
                    .identify
                    .as_ref()
                    .expect("an identify was sent")
                    .after;
                state.people.insert(person.person_id, after.clone());
                self.summary.identifies_sent += 1;
            }
            Outcome::Rejected(reason) => {
                blocked.insert(person.person_id);
                self.reject(person.person_id, "identify", &reason);
            }
        }
    }

    fn reject(&mut self, person_id: PersonId, write: &str, reason: &str) {
        tracing::warn!(person_id, write = %write, reason = %reason, "customer.io rejected a write; it is retried next run.");
        self.summary.rejected.push(Rejection {
            person_id,
            write: write.to_owned(),
            reason: reason.to_owned(),
        });
    }

    fn apply(&mut self, state: &mut State, result: &PersonResult) {
        let settled = u64::from(result.identified.is_some())
            + (result.events.len() + result.rejected.len()) as u64;
        self.progress.inc(settled);
        if let Some(after) = &result.identified {
            state.people.insert(result.person_id, after.clone());
            self.summary.identifies_sent += 1;
        }
        for (application_id, after, name) in &result.events {
            state.applications.insert(*application_id, after.clone());
            self.summary.events_sent += 1;
            *self.summary.events_by_name.entry(name.clone()).or_default() += 1;
        }
        for (write, reason) in &result.rejected {
            self.reject(result.person_id, write, reason);
        }
        if result.rejected.is_empty() && result.fatal.is_none() && result.complete {
            state.pending_people.remove(&result.person_id);
        }
    }
}

/// Sends packed batches, [`BATCH_CONCURRENCY`] at a time; yields each batch's index range
/// with its outcomes as they arrive.
fn send_batches<'a>(
    cio: &'a CioClient,
    ops: &'a [BatchOp],
    batches: Vec<std::ops::Range<usize>>,
) -> impl futures_util::Stream<Item = (std::ops::Range<usize>, Result<Vec<Outcome>, CioError>)> + 'a
{
    stream::iter(batches)
        .map(move |range| async move { (range.clone(), cio.batch(&ops[range]).await) })
        .buffer_unordered(BATCH_CONCURRENCY)
}

/// Saves the state at most once per [`CHECKPOINT_EVERY`] and stops the run at the soft
/// deadline.
struct Checkpoint<'a> {
    data_dir: &'a Path,
    last_save: Instant,
    /// Time between saves: [`CHECKPOINT_EVERY`], or ten times the last save's duration when
    /// that is longer, so saving a large state never takes more than a tenth of the run.
    interval: Duration,
    soft_deadline: Instant,
    budget: Duration,
}

impl Checkpoint<'_> {
    fn after_progress(&mut self, state: &State) -> Result<(), Error> {
        if self.last_save.elapsed() >= self.interval {
            let started = Instant::now();
            state::save(self.data_dir, state)?;
            self.last_save = Instant::now();
            self.interval = CHECKPOINT_EVERY.max(started.elapsed() * 10);
        }
        if Instant::now() >= self.soft_deadline {
            return Err(Error::TimeBudget(
                humantime::format_duration(self.budget).to_string(),
            ));
        }
        Ok(())
    }
}

/// Which events' state may be applied: per application, only the confirmed events before
/// the first one not (yet) confirmed, in plan order. Batches confirm out of order.
struct EventProgress {
    /// Event indices per application, in plan order, and how many are applied.
    applications: std::collections::BTreeMap<u64, (Vec<usize>, usize)>,
    /// Per event: `None` not settled, `Some(confirmed)`.
    settled: Vec<Option<bool>>,
    touched: BTreeSet<u64>,
    application_of: Vec<u64>,
}

impl EventProgress {
    fn new(applications: impl Iterator<Item = u64>) -> Self {
        let application_of: Vec<u64> = applications.collect();
        let mut map: std::collections::BTreeMap<u64, (Vec<usize>, usize)> =
            std::collections::BTreeMap::new();
        for (i, app) in application_of.iter().enumerate() {
            map.entry(*app).or_default().0.push(i);
        }
        EventProgress {
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

/// What happened to one person's writes.
struct PersonResult {
    person_id: PersonId,
    identified: Option<PersonState>,
    events: Vec<(u64, ApplicationState, String)>,
    rejected: Vec<(String, String)>,
    fatal: Option<CioError>,
    /// Every planned write was attempted.
    complete: bool,
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
        let outcome = cio
            .track(
                person.person_id,
                cio::Event {
                    name: &event.name,
                    id: &event.id,
                    timestamp: event.timestamp,
                    data: &event.data,
                },
            )
            .await;
        match outcome {
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

/// A full read can miss a record that moved between pages while it was read (SPEC 3). Before
/// the planner declares anyone out of scope, the in-scope people the state knows but the read
/// did not see are looked up by id; those still in the configured LCs join the snapshot.
async fn recheck_missing(
    gis: &GisClient,
    state: &State,
    snapshot: &mut crate::gis::Snapshot,
) -> Result<(), crate::gis::GisError> {
    let seen: BTreeSet<PersonId> = snapshot.people.iter().map(|p| p.id).collect();
    let missing: BTreeSet<PersonId> = state
        .people
        .iter()
        .filter(|(id, person)| person.in_scope && !seen.contains(id))
        .map(|(id, _)| *id)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let found = gis
        .read_people_in_scope_by_id(&missing, &mut snapshot.skipped)
        .await?;
    tracing::info!(
        missing = missing.len(),
        still_in_scope = found.len(),
        "Known people the full read did not see were looked up by id."
    );
    snapshot.people.extend(found);
    Ok(())
}

/// SPEC 2 `[safety]`: refuse a run that would send events to too many known people, or a
/// read that returns far fewer people than the state knows, unless the state is small or the
/// previous run did not complete.
fn refuse_large_change(
    config: &Config,
    state: &State,
    plan: &Plan,
    people_read: Option<usize>,
) -> Result<(), Error> {
    let known = state.people.len();
    if known < LARGE_CHANGE_MIN_PEOPLE || state.run_in_progress.is_some() {
        return Ok(());
    }
    let safety = &config.safety;
    let known_with_events = plan
        .people
        .iter()
        .filter(|p| !p.events.is_empty() && state.people.contains_key(&p.person_id))
        .count();
    let share = known_with_events as f64 / known as f64;
    if share > safety.max_event_share {
        return Err(Error::LargeChange(format!(
            "this run would send events to {known_with_events} of the {known} people the state knows ({:.0}%, above safety.max_event_share = {}). \
             Nothing was sent. If this is expected, run once with --allow-large-change",
            share * 100.0,
            safety.max_event_share
        )));
    }
    let Some(people_read) = people_read else {
        // Only a full read says how many people GIS has.
        return Ok(());
    };
    let in_scope = state.people.values().filter(|p| p.in_scope).count();
    if in_scope > 0 && (people_read as f64) < safety.min_people_share * in_scope as f64 {
        return Err(Error::LargeChange(format!(
            "GIS returned {people_read} people but the state knows {in_scope} in scope (below safety.min_people_share = {}). \
             A scope, permission or config change? Nothing was sent. If this is expected, run once with --allow-large-change",
            safety.min_people_share
        )));
    }
    Ok(())
}

fn dry_run_view(plan: &Plan) -> Vec<DryRunPerson> {
    plan.people
        .iter()
        .map(|p| DryRunPerson {
            person_id: p.person_id,
            attributes: p
                .identify
                .as_ref()
                .map(|i| i.attributes.names())
                .unwrap_or_default(),
            events: p
                .events
                .iter()
                .map(|e| DryRunEvent {
                    name: e.name.clone(),
                    timestamp: e.timestamp,
                    id: e.id.clone(),
                })
                .collect(),
        })
        .collect()
}

/// Renders a dry run as text, one line per person.
pub fn dry_run_text(people: &[DryRunPerson]) -> String {
    let mut out = String::new();
    for p in people {
        let attributes = if p.attributes.is_empty() {
            "-".to_owned()
        } else {
            p.attributes.join(",")
        };
        let events: Vec<String> = p
            .events
            .iter()
            .map(|e| {
                let at = DateTime::from_timestamp(e.timestamp, 0)
                    .map_or_else(|| e.timestamp.to_string(), |t| t.to_rfc3339());
                format!("{}@{at}", e.name)
            })
            .collect();
        out.push_str(&format!(
            "person {} attributes: {} events: {}\n",
            p.person_id,
            attributes,
            if events.is_empty() {
                "-".to_owned()
            } else {
                events.join(" ")
            }
        ));
    }
    out
}

/// A GIS client for `config`, with OAuth tokens persisted in `data_dir`.
///
/// # Errors
/// When the HTTP client cannot be built.
pub fn gis_client(config: &Config, deadline: Option<Instant>) -> Result<GisClient, Error> {
    let store: Option<Arc<dyn TokenStore>> = match &config.gis.auth {
        GisAuth::OAuth(oauth) => Some(Arc::new(DataDirTokenStore {
            data_dir: config.data_dir.clone(),
            seed: oauth.refresh_token.clone(),
        })),
        GisAuth::Token(_) => None,
    };
    Ok(GisClient::new(
        &config.gis,
        store,
        RetryPolicy::default(),
        deadline,
    )?)
}

/// OAuth tokens in `data_dir` (SPEC 2): the rotated refresh token wins over the config's
/// seed until the seed changes.
struct DataDirTokenStore {
    data_dir: PathBuf,
    seed: Secret,
}

impl TokenStore for DataDirTokenStore {
    fn load(&self) -> Result<(Secret, Option<Secret>), String> {
        let stored = credentials::load(&self.data_dir).map_err(|e| e.to_string())?;
        let refresh = credentials::current_refresh_token(stored.as_ref(), &self.seed);
        let cached = stored
            .as_ref()
            .and_then(|s| s.usable_access_token(&self.seed, Utc::now()).cloned());
        Ok((refresh, cached))
    }

    fn save(
        &self,
        refresh: &Secret,
        access: &Secret,
        expires_in: Option<u64>,
    ) -> Result<(), String> {
        let expires_at = expires_in
            .and_then(|s| i64::try_from(s).ok())
            .map(|s| Utc::now() + chrono::Duration::seconds(s));
        let access = expires_at.map(|expires_at| credentials::CachedAccessToken {
            token: access.clone(),
            expires_at,
        });
        let stored = credentials::StoredOAuth::after_refresh(&self.seed, refresh.clone(), access);
        credentials::save(&self.data_dir, &stored).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_progress_applies_only_a_confirmed_prefix_per_application() {
        // Events 0,1,2 belong to application 7; event 3 to application 8.
        let mut progress = EventProgress::new([7, 7, 7, 8].into_iter());
        progress.settle(1, true);
        progress.settle(3, true);
        assert_eq!(
            progress.take_applicable(),
            vec![3],
            "7 waits for its first event"
        );
        progress.settle(0, true);
        assert_eq!(progress.take_applicable(), vec![0, 1]);
        progress.settle(2, false);
        assert!(
            progress.take_applicable().is_empty(),
            "a rejected event is never skipped over"
        );
    }
}

//! One run of `ciosync run` (SPEC 1 `run`, 4.4, 5), as a pipeline:
//! config → lock → state → read → plan → guard → send → save → report.
//!
//! [`run`] and [`Run::sync`] read as that pipeline; each step lives in its own module:
//! - [`read`]: incremental or full ([`read::incremental_since`], pure), and reading GIS
//!   page by page into the run's flow;
//! - [`flow`]: each record planned as it is read, its writes sent at once, or held while
//!   the guard has not judged the change (and for good in a dry run);
//! - [`guard`]: the large-change refusals (pure);
//! - [`send`]: the sender (v1 and batch) and the ledger that settles each confirmed write
//!   into the state;
//! - [`checkpoint`]: saves during the run, and the deadlines of the time budget;
//! - [`dry_run`]: what `--dry-run` shows;
//! - [`report`]: the run summary, `last_run.json` and monitoring.
//!
//! Invariants: nothing is read or written before the lock is held; the state changes only
//! through [`State::confirm_identify`], [`State::confirm_event`] and
//! [`State::confirm_removals`] after customer.io confirmed; a dry run writes nothing in the
//! data dir. The run's start time `now` comes from
//! the caller (tests fix it); only the end time and the deadlines read the clock.

pub(crate) mod checkpoint;
pub mod dry_run;
mod flow;
mod guard;
mod read;
mod report;
pub(crate) mod send;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::cio::CioClient;
use crate::config::Config;
use crate::credentials;
use crate::data_dir::{self, STATE_FILE};
use crate::error::Error;
use crate::http::RetryPolicy;
use crate::lock;
use crate::plan::{excluded_mask, Fingerprinter, PlanOptions, Planner};
use crate::state::{self, State};
use crate::summary::{RunOutcome, Summary};

use checkpoint::{Checkpoint, Deadlines};
pub use dry_run::{DryRun, DryRunEvent, DryRunPerson};
use flow::{Flow, Gate};
pub use report::RunResult;
use send::{Ledger, Sender};

/// How this run behaves (command-line flags).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Show a progress bar on stderr (only when it is a terminal, never under cron).
    pub progress: bool,
    pub dry_run: bool,
    pub full: bool,
    pub allow_large_change: bool,
}

/// One sync. `now` is the run's start; `started` its monotonic twin (for the time budget).
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
    data_dir::ensure(&config.data_dir)?;
    let _lock = lock::acquire(&config.data_dir)?;
    let monitor = report::Monitor::start(config, options).await;
    let result = run_locked(config, options, now, started).await;
    monitor.finish(&result, now).await;
    result
}

/// The run once the lock is held: open the state, sync, record what happened.
async fn run_locked(
    config: &Config,
    options: &RunOptions,
    now: DateTime<Utc>,
    started: Instant,
) -> Result<RunResult, Error> {
    let (mut state, first_run) = open_state(config)?;
    let key = if options.dry_run && first_run {
        // A dry run writes nothing in data_dir; with no state every person is new anyway.
        rand::random::<[u8; 32]>()
    } else {
        state::load_or_create_key(&config.data_dir)?
    };
    tracing::info!(first_run, dry_run = options.dry_run, "Run started.");
    let mut run = Run {
        config,
        options,
        now,
        deadlines: Deadlines::new(started, config.safety.time_budget),
        fingerprinter: Fingerprinter::new(key),
        summary: Summary {
            started_at: Some(now),
            dry_run: options.dry_run,
            ..Summary::default()
        },
        counters: report::RequestCounters::default(),
        progress: report::progress_bar(options.progress),
    };
    let outcome = run.sync(&mut state, first_run).await;
    let result = run.finish(outcome, &state);
    if !options.dry_run {
        report::write_last_run(&config.data_dir, &result.summary)?;
    }
    Ok(result)
}

/// The state of `data_dir` (or a new one on a first run), and whether this is a first run.
///
/// # Errors
/// The state is unusable (74) or belongs to another setup (78).
pub(crate) fn open_state(config: &Config) -> Result<(State, bool), Error> {
    let setup = setup_fingerprint(config);
    let loaded = state::load(&config.data_dir)?;
    let first_run = loaded.is_none();
    let state = loaded.unwrap_or_else(|| State {
        setup: setup.clone(),
        ..State::default()
    });
    if state.setup != setup {
        return Err(Error::SetupMismatch(format!(
            "{} was written for another setup (GIS endpoint, home LCs, customer.io site id or Track URL changed). \
             To start over for the new setup, move the data dir's state.json, state.json.bak and state.key away; \
             the next run then sends every profile and event again (customer.io discards events it already has)",
            config.data_dir.join(STATE_FILE).display()
        )));
    }
    Ok((state, first_run))
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

/// A full read stopped by the time budget before customer.io confirmed a single write
/// cannot get further next run either: a stopped full read starts again from the first
/// page. Such a stop says so, and what to change; other stops are returned as they are.
/// `sending_full_read`: the run read everything and was to send (not a dry run).
fn explain_stop(stop: Error, sending_full_read: bool, summary: &Summary, config: &Config) -> Error {
    let budget_stop = stop.outcome() == RunOutcome::TimeBudget;
    if !(budget_stop && sending_full_read && !summary.confirmed_any_write()) {
        return stop;
    }
    Error::FullReadOutgrewBudget {
        budget: config.safety.time_budget,
        config: config.path.clone(),
        people: summary.people_seen,
        applications: summary.applications_seen,
        // "The next run resumes", the plain stop's text, is what is not true here.
        source: (!matches!(stop, Error::TimeBudget(_))).then(|| Box::new(stop)),
    }
}

/// One run in progress: its settings, what it has done so far, and how to show progress.
struct Run<'a> {
    config: &'a Config,
    options: &'a RunOptions,
    now: DateTime<Utc>,
    deadlines: Deadlines,
    fingerprinter: Fingerprinter,
    summary: Summary,
    counters: report::RequestCounters,
    progress: indicatif::ProgressBar,
}

impl Run<'_> {
    /// read (planning and sending as it reads) → guard → send what was held → save. The
    /// state records every write customer.io confirmed, whatever stops the run.
    async fn sync(&mut self, state: &mut State, first_run: bool) -> Result<Option<DryRun>, Error> {
        let config = self.config;
        // Requests in flight may run until the hard deadline; nothing starts after the soft.
        let cio = CioClient::new(
            &config.customerio,
            RetryPolicy::default(),
            Some(self.deadlines.hard),
        )?;
        self.counters.cio = Some(Arc::clone(&cio.counters));
        cio.region()
            .await?
            .verify(&config.customerio, &config.path)?;
        let gis = credentials::gis_client(config, Some(self.deadlines.soft))?;
        self.counters.gis = Some(Arc::clone(&gis.counters));

        let since = read::incremental_since(
            state,
            self.options.full,
            config.gis.full_sync_every,
            self.now,
        );
        // The large-change guard judges the whole change before anything is sent; a run it
        // does not judge plans and sends as it reads.
        let known = guard::Known::of(state);
        let judged = !self.options.allow_large_change && !first_run && known.is_judged();
        let gate = match (self.options.dry_run, judged) {
            (true, _) => Gate::DryRun,
            (false, true) => Gate::UntilJudged,
            (false, false) => Gate::Open,
        };
        let plan_options = PlanOptions {
            site_id: config.customerio.site_id.clone(),
            programme_name: config.events.programme_name,
            late_events: config.events.late_events,
            full_read: since.is_none(),
            excluded: excluded_mask(&config.attributes.exclude),
            on_leave: config.scope.on_leave,
        };
        report::show_progress(&self.progress);
        // How long customer.io took last time paces this run's first requests.
        let learned_pace = crate::summary::read_last_run(&config.data_dir)
            .and_then(|last| last.cio_slowest_request_ms)
            .map(Duration::from_millis);
        let mut flow = Flow::new(
            Planner::new(&plan_options, &self.fingerprinter, self.now),
            Ledger {
                state,
                summary: &mut self.summary,
                progress: &self.progress,
                checkpoint: Checkpoint::new(&config.data_dir, config.safety.time_budget),
                blocked: HashSet::new(),
                unfinished: HashSet::new(),
                removed: Vec::new(),
            },
            Sender::new(&cio, config.customerio.api, self.deadlines, learned_pace),
            gate,
            &config.data_dir,
            self.now,
        );
        let read = read::read(&gis, &mut flow, since).await;
        self.counters.token_refreshes = gis.token_refreshes();
        let mut full_read_complete = None;
        match read {
            Ok(read) => {
                report::record_read(
                    flow.ledger.summary,
                    &flow.planner.stats,
                    flow.planned_people.len(),
                    &read,
                );
                if judged {
                    let size = guard::ChangeSize {
                        known,
                        known_with_events: flow.known_with_events.len(),
                        known_deleted: flow.known_deleted.len(),
                        people_read: read.full.then_some(read.people),
                    };
                    guard::refuse_large_change(&size, &config.safety)?;
                }
                if self.options.dry_run {
                    let plan = flow.held_plan();
                    let pending = &flow.ledger.state.pending_people;
                    let view = DryRun::new(plan, flow.ledger.summary, pending, self.now);
                    return Ok(Some(view));
                }
                if let Err(e) = flow.open().await {
                    flow.stop(e);
                }
                if let Err(e) = flow.complete_forgets().await {
                    flow.stop(e);
                }
                full_read_complete = read.full.then_some(read.complete);
            }
            Err(e) => {
                let full_read = since.is_none();
                report::record_stopped_read(flow.ledger.summary, &flow.planner.stats, full_read);
                flow.stop(e);
            }
        }
        if let Err(e) = flow.finish().await {
            flow.stop(e);
        }
        flow.ledger.summary.cio_slowest_request_ms = flow
            .sender
            .slowest_request()
            .map(|slowest| u64::try_from(slowest.as_millis()).unwrap_or(u64::MAX));
        let closed = flow.close(full_read_complete);
        drop(flow);
        let sending_full_read = since.is_none() && !self.options.dry_run;
        closed.map_err(|stop| explain_stop(stop, sending_full_read, &self.summary, config))?;
        Ok(None)
    }
}

//! One run of `ciosync run` (SPEC 1 `run`, 4.4, 5), as a pipeline:
//! config → lock → state → read → plan → guard → send → save → report.
//!
//! [`run`] and [`Run::sync`] read as that pipeline; each step lives in its own module:
//! - [`read`]: incremental or full ([`read::incremental_since`], pure), and reading GIS;
//! - [`guard`]: the large-change refusals (pure);
//! - [`send`]: the executor (v1 and batch), settling each confirmed write into the state;
//! - [`checkpoint`]: saves during the run and the soft deadline;
//! - [`dry_run`]: what `--dry-run` shows;
//! - [`report`]: the run summary, `last_run.json` and monitoring.
//!
//! Invariants: nothing is read or written before the lock is held; the state changes only
//! through [`State::confirm_identify`] and [`State::confirm_event`] after customer.io
//! confirmed; a dry run writes nothing in the data dir. The run's start time `now` comes from
//! the caller (tests fix it); only the end time and the deadlines read the clock.

mod checkpoint;
pub mod dry_run;
mod guard;
mod read;
mod report;
mod send;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::cio::CioClient;
use crate::config::Config;
use crate::credentials;
use crate::data_dir::{self, STATE_FILE};
use crate::error::Error;
use crate::http::RetryPolicy;
use crate::lock;
use crate::plan::{self, Fingerprinter, PlanOptions};
use crate::state::{self, State};
use crate::summary::Summary;

pub use dry_run::{DryRunEvent, DryRunPerson};
pub use report::RunResult;

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
        soft_deadline: checkpoint::soft_deadline(started, config.safety.time_budget),
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
fn open_state(config: &Config) -> Result<(State, bool), Error> {
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

/// One run in progress: its settings, what it has done so far, and how to show progress.
struct Run<'a> {
    config: &'a Config,
    options: &'a RunOptions,
    now: DateTime<Utc>,
    /// No new work starts after this instant (SPEC 2 `time_budget`).
    soft_deadline: Instant,
    fingerprinter: Fingerprinter,
    summary: Summary,
    counters: report::RequestCounters,
    progress: indicatif::ProgressBar,
}

impl Run<'_> {
    /// read → plan → guard → send (or show, for a dry run). The state records every write
    /// customer.io confirmed, whatever stops the run.
    async fn sync(
        &mut self,
        state: &mut State,
        first_run: bool,
    ) -> Result<Option<Vec<DryRunPerson>>, Error> {
        let config = self.config;
        let cio = CioClient::new(
            &config.customerio,
            RetryPolicy::default(),
            Some(self.soft_deadline),
        )?;
        self.counters.cio = Some(Arc::clone(&cio.counters));
        cio.region()
            .await?
            .verify(&config.customerio, &config.path)?;

        let gis = credentials::gis_client(config, Some(self.soft_deadline))?;
        self.counters.gis = Some(Arc::clone(&gis.counters));
        let since = read::incremental_since(
            state,
            self.options.full,
            config.gis.full_sync_every,
            self.now,
        );
        let full_read = since.is_none();
        self.progress.set_message("Reading GIS");
        self.progress
            .enable_steady_tick(std::time::Duration::from_millis(200));
        let snapshot = read::read(&gis, state, since).await;
        self.counters.token_refreshes = gis.token_refreshes();
        let snapshot = snapshot?;
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
        report::record_plan(&mut self.summary, &plan);
        if !self.options.allow_large_change && !first_run {
            let people_read = full_read.then_some(snapshot.people.len());
            guard::refuse_large_change(
                &guard::ChangeSize::of(state, &plan, people_read),
                &config.safety,
            )?;
        }
        // The records read are no longer needed; free them before sending.
        drop(snapshot);
        if self.options.dry_run {
            return Ok(Some(dry_run::view(&plan)));
        }
        send::execute(
            &mut send::Executor {
                config,
                now: self.now,
                summary: &mut self.summary,
                progress: &self.progress,
                soft_deadline: self.soft_deadline,
            },
            state,
            plan,
            &cio,
            full_read,
        )
        .await?;
        Ok(None)
    }
}

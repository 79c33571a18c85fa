//! What a run reports (SPEC 6): the summary as the run fills it, its final outcome and exit
//! code, `last_run.json`, and monitoring (healthchecks pings, the Prometheus textfile).
//!
//! A dry run neither pings nor writes the textfile or `last_run.json`; a run that found the
//! lock held never gets this far (the run holding it reports).

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use indicatif::ProgressBar;

use crate::config::Config;
use crate::data_dir::{self, LAST_RUN_FILE, PRIVATE_FILE_MODE};
use crate::error::{self, Error};
use crate::http::Counters;
use crate::monitoring;
use crate::plan::PlanStats;
use crate::state::State;
use crate::summary::{RunOutcome, Summary};

use super::read::ReadReport;
use super::{DryRun, Run, RunOptions};

/// The result of a run that got as far as reading the state.
#[derive(Debug)]
pub struct RunResult {
    pub summary: Summary,
    /// With `--dry-run`: what would be sent.
    pub dry_run: Option<DryRun>,
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

    /// `ok`, `partial`, `dry_run`, or the class of the error that stopped the run.
    fn outcome(&self) -> RunOutcome {
        match &self.error {
            Some(e) => e.outcome(),
            None if self.summary.dry_run => RunOutcome::DryRun,
            None if self.summary.rejected.is_empty() => RunOutcome::Ok,
            None => RunOutcome::Partial,
        }
    }
}

/// The request counters of the run's clients, read into the summary at the end whatever
/// stopped the run.
#[derive(Debug, Default)]
pub struct RequestCounters {
    pub gis: Option<Arc<Counters>>,
    pub cio: Option<Arc<Counters>>,
    pub token_refreshes: u64,
}

/// A progress bar on stderr, drawn only when asked for (a terminal); hidden otherwise.
pub fn progress_bar(visible: bool) -> ProgressBar {
    if visible {
        let bar = ProgressBar::new_spinner();
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar
    } else {
        ProgressBar::hidden()
    }
}

/// Shows progress while the run works (a spinner with the writes settled; hidden unless
/// stderr is a terminal).
pub fn show_progress(progress: &ProgressBar) {
    progress.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} {pos} writes settled")
            .expect("a valid progress template"),
    );
    progress.set_message("syncing:");
    progress.enable_steady_tick(std::time::Duration::from_millis(200));
}

/// Copies what the read and planning counted into the summary, and logs what was skipped
/// (info: it is counted).
pub fn record_read(
    summary: &mut Summary,
    stats: &PlanStats,
    people_changed: usize,
    read: &ReadReport,
) {
    record_stopped_read(summary, stats, read.full);
    summary.people_changed = people_changed as u64;
    for (reason, n) in read.skipped.iter().chain(&stats.skipped) {
        *summary.skipped.entry(reason.clone()).or_default() += n;
    }
    for (reason, id) in &stats.skipped_ids {
        tracing::info!(reason = %reason, id, "Skipped a record.");
    }
    for (status, n) in &stats.unknown_statuses {
        tracing::info!(status = %status, applications = n, "Unknown application status; nothing sent for it.");
    }
    summary.unknown_statuses = stats.unknown_statuses.clone();
    summary.truncated_values = stats.truncated_values;
    summary.people_left_scope = stats.people_left_scope;
}

/// What a read got through: whether it was a full read, and the records it saw. All a
/// read that stopped early (at the deadline, or GIS failing) reports: its skips and
/// unknown statuses are counted once a read completes ([`record_read`]).
pub fn record_stopped_read(summary: &mut Summary, stats: &PlanStats, full_read: bool) {
    summary.full_read = full_read;
    summary.people_seen = stats.people_seen;
    summary.applications_seen = stats.applications_seen;
}

impl Run<'_> {
    /// The run's result: the summary completed with the request counts, the resources used,
    /// the outcome and the exit code.
    pub(super) fn finish(self, outcome: Result<Option<DryRun>, Error>, state: &State) -> RunResult {
        self.progress.finish_and_clear();
        let mut summary = self.summary;
        if let Some(c) = &self.counters.gis {
            summary.gis_requests = Counters::get(&c.requests);
            summary.retries += Counters::get(&c.retries);
        }
        if let Some(c) = &self.counters.cio {
            summary.cio_requests = Counters::get(&c.requests);
            summary.retries += Counters::get(&c.retries);
            summary.cio_bytes_sent = Counters::get(&c.bytes_sent);
        }
        summary.token_refreshes = self.counters.token_refreshes;
        summary.pending_people = state.pending_people.len() as u64;
        summary.ended_at = Some(Utc::now().max(self.now));
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
        result.summary.outcome = result.outcome();
        result.summary.error = result.error.as_ref().map(|e| error::chain(e));
        result.summary.budget_too_short =
            matches!(result.error, Some(Error::FullReadOutgrewBudget { .. }));
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
        result
    }
}

/// Writes the summary to `<data_dir>/last_run.json`.
///
/// # Errors
/// When the file cannot be written (exit 74).
pub fn write_last_run(data_dir: &Path, summary: &Summary) -> Result<(), Error> {
    let path = data_dir.join(LAST_RUN_FILE);
    let bytes = serde_json::to_vec_pretty(summary).expect("a summary always serializes");
    data_dir::write_atomic(&path, &bytes, PRIVATE_FILE_MODE).map_err(|source| {
        Error::DataDir(data_dir::DataDirError::Io {
            context: format!("cannot write {}", path.display()),
            source,
        })
    })
}

/// The run's monitoring: a `/start` ping when it begins, then the textfile and a ping with
/// the exit code when it ends. Nothing here can fail a run.
pub struct Monitor<'a> {
    config: &'a Config,
    /// `None` for a dry run, which reports nothing.
    ping: Option<(reqwest::Client, &'a str)>,
    enabled: bool,
}

impl<'a> Monitor<'a> {
    /// Sends the start ping (not for a dry run).
    pub async fn start(config: &'a Config, options: &RunOptions) -> Monitor<'a> {
        let enabled = !options.dry_run;
        let ping = config
            .monitoring
            .ping_url
            .as_deref()
            .filter(|_| enabled)
            .map(|url| (monitoring::ping_client(), url));
        if let Some((client, url)) = &ping {
            monitoring::ping(client, url, "start").await;
        }
        Monitor {
            config,
            ping,
            enabled,
        }
    }

    /// Writes the textfile and pings the exit code (not for a dry run).
    pub async fn finish(self, result: &Result<RunResult, Error>, now: DateTime<Utc>) {
        if !self.enabled {
            return;
        }
        let (code, summary) = match result {
            Ok(r) => (r.code(), r.summary.clone()),
            Err(e) => (
                e.code(),
                Summary {
                    started_at: Some(now),
                    ended_at: Some(Utc::now().max(now)),
                    outcome: e.outcome(),
                    exit_code: e.code(),
                    error: Some(error::chain(e)),
                    ..Summary::default()
                },
            ),
        };
        if let Some(path) = &self.config.monitoring.textfile {
            if let Err(e) = monitoring::write_textfile(path, &summary) {
                tracing::warn!(path = %path.display(), error = %e, "Cannot write the Prometheus textfile.");
            }
        }
        if let Some((client, url)) = &self.ping {
            monitoring::ping_finished(client, url, code, &summary).await;
        }
    }
}

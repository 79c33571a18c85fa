//! `ciosync forget` (SPEC 8.2): erasure on request (GDPR art. 17). For each id, customer.io
//! deletes (or, with `--suppress`, suppresses) the profile; once it confirmed, the person and
//! their applications leave the state and the id stays on the state's forgotten list, so no
//! run sends anything for it again, whatever GIS says. `--undo` takes ids off the list
//! (unsuppressing those that were suppressed); the next run treats them as new people.
//!
//! Crash safety comes from the order of things, all under the run lock:
//! 1. the ids join the forgotten list *unconfirmed*, and the state is saved, before
//!    customer.io is called: from then on no run sends anything for them;
//! 2. customer.io deletes (or suppresses); each confirmation removes the person from the
//!    state and marks their entry confirmed (saved at checkpoints and at the end);
//! 3. a rejection puts the id back as it was ("they stay as they were", exit 1).
//!
//! A kill leaves either nothing done, or ids recorded but unconfirmed, which `forget` run
//! again, or the next `run` once its guard let it through, sends again (deleting twice is
//! harmless) and finishes. `--undo` of a suppressed id unsuppresses first and takes the id
//! off the list only once customer.io confirmed: a kill in between leaves it forgotten, and
//! a rerun unsuppresses again.
//!
//! The writes go through the run's [`Sender`] and [`Ledger`]: one implementation of sending
//! (v1 or batch, retries, rate limit, deadlines) and of settling into the state. `forget` is
//! never refused by the large-change guard.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;

use tokio::time::Instant;

use crate::cio::CioClient;
use crate::cli::ForgetArgs;
use crate::commands::{self, Output};
use crate::config::Config;
use crate::data_dir;
use crate::error::{self, Error};
use crate::http::RetryPolicy;
use crate::lock;
use crate::model::PersonId;
use crate::state::{self, Forgotten, Removal, State};
use crate::summary::{RunOutcome, Summary};
use crate::sync::checkpoint::{Checkpoint, Deadlines};
use crate::sync::open_state;
use crate::sync::send::{Ledger, Sender, Work};

/// What `forget` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgetRequest {
    /// Distinct ids, in the order given.
    pub ids: Vec<PersonId>,
    /// Suppress rather than delete.
    pub suppress: bool,
    /// Take the ids off the forgotten list instead.
    pub undo: bool,
}

impl ForgetRequest {
    /// The request of a command line: each id once, in the order first given.
    pub fn from_args(args: &ForgetArgs) -> ForgetRequest {
        let mut seen = BTreeSet::new();
        ForgetRequest {
            ids: args
                .ids
                .iter()
                .copied()
                .filter(|id| seen.insert(*id))
                .collect(),
            suppress: args.suppress,
            undo: args.undo,
        }
    }
}

/// What became of one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdOutcome {
    /// customer.io confirmed the delete (or suppress); the id is forgotten.
    Forgotten { suppressed: bool },
    /// customer.io refused; the id is as it was before.
    Rejected(String),
    /// Not sent, or not answered, before `forget` stopped: recorded as forgotten, not
    /// confirmed. `forget` again, or the next run, finishes it.
    Unfinished,
    /// `--undo`: the id is no longer forgotten (and was unsuppressed if it was suppressed).
    Undone { unsuppressed: bool },
    /// `--undo` of an id that was not forgotten: nothing to do.
    NotForgotten,
    /// `--undo` of a suppressed id whose unsuppress was not confirmed: still forgotten.
    StillForgotten,
}

/// What `forget` did, id by id, and what stopped it early, if anything.
#[derive(Debug)]
pub struct ForgetReport {
    pub outcomes: Vec<(PersonId, IdOutcome)>,
    pub error: Option<Error>,
}

impl ForgetReport {
    /// SPEC 8.2: 0 when every id was confirmed, 1 when customer.io rejected some, else as for
    /// a run (the error that stopped it).
    pub fn code(&self) -> u8 {
        if let Some(e) = &self.error {
            return e.code();
        }
        let rejected = self
            .outcomes
            .iter()
            .any(|(_, o)| matches!(o, IdOutcome::Rejected(_)));
        if rejected {
            error::code::PARTIAL
        } else {
            error::code::OK
        }
    }

    /// One line per id, for stdout.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (id, outcome) in &self.outcomes {
            let _ = match outcome {
                IdOutcome::Forgotten { suppressed } => writeln!(
                    out,
                    "{id}: {} in customer.io and forgotten; no run sends anything for this id until `ciosync forget --undo {id}`",
                    if *suppressed { "suppressed" } else { "deleted" }
                ),
                IdOutcome::Rejected(reason) => writeln!(
                    out,
                    "{id}: REJECTED by customer.io ({reason}); nothing changed for this id"
                ),
                IdOutcome::Unfinished => writeln!(
                    out,
                    "{id}: recorded as forgotten, but customer.io has not confirmed yet; run `ciosync forget` again (or let the next run) finish it"
                ),
                IdOutcome::Undone { unsuppressed } => writeln!(
                    out,
                    "{id}: {}no longer forgotten; the next run syncs this person as new",
                    if *unsuppressed { "unsuppressed in customer.io and " } else { "" }
                ),
                IdOutcome::NotForgotten => {
                    writeln!(out, "{id}: was not forgotten; nothing to undo")
                }
                IdOutcome::StillForgotten => writeln!(
                    out,
                    "{id}: still forgotten: customer.io has not confirmed the unsuppress; run `ciosync forget --undo {id}` again"
                ),
            };
        }
        out
    }
}

/// `ciosync forget`: runs [`forget`] and turns its report into the command's output. A
/// failure is logged here, at warn for a held lock (try again) and error otherwise, so an
/// admin running it by hand sees it at the default log level.
pub fn command(config: &Config, args: &ForgetArgs) -> Output {
    let request = ForgetRequest::from_args(args);
    let report =
        commands::runtime().and_then(|rt| rt.block_on(forget(config, &request, Instant::now())));
    let report = match report {
        Ok(report) => report,
        Err(e) => ForgetReport {
            outcomes: Vec::new(),
            error: Some(e),
        },
    };
    if let Some(e) = &report.error {
        let chain = error::chain(e);
        match e.outcome() {
            RunOutcome::Locked => {
                tracing::warn!(error = %chain, "Nothing was done; try again once the run is over.")
            }
            _ => tracing::error!(error = %chain, "forget could not finish."),
        }
    }
    Output {
        stdout: report.text(),
        code: report.code(),
        failure: None,
    }
}

/// Forgets (or, with `undo`, un-forgets) `request.ids` (SPEC 8.2); `started` is the start of
/// the command's time budget (`safety.time_budget`, as a run's).
///
/// # Errors
/// Before anything is recorded: the lock is held (75), the data dir or state is unusable
/// (74), the state belongs to another setup (78), customer.io refuses the credentials (77)
/// or the region (78) or cannot be reached (69). Later failures come back in
/// [`ForgetReport::error`] with what was done.
pub async fn forget(
    config: &Config,
    request: &ForgetRequest,
    started: Instant,
) -> Result<ForgetReport, Error> {
    data_dir::ensure(&config.data_dir)?;
    let _lock = lock::acquire(&config.data_dir)?;
    let (mut state, first_run) = open_state(config)?;
    let deadlines = Deadlines::new(started, config.safety.time_budget);
    if request.undo {
        if first_run {
            // No state: nothing was ever forgotten here, and nothing is written.
            let outcomes = request
                .ids
                .iter()
                .map(|id| (*id, IdOutcome::NotForgotten))
                .collect();
            return Ok(ForgetReport {
                outcomes,
                error: None,
            });
        }
        return undo(config, &mut state, &request.ids, deadlines).await;
    }
    let cio = ready_client(config, deadlines).await?;
    // A state created here must have its fingerprint key beside it (a run refuses a state
    // without one).
    state::load_or_create_key(&config.data_dir)?;
    let previous: BTreeMap<PersonId, Option<Forgotten>> = request
        .ids
        .iter()
        .map(|&id| (id, state.begin_forget(id, request.suppress)))
        .collect();
    state::save(&config.data_dir, &state)?;

    let work: Vec<Work> = request
        .ids
        .iter()
        .map(|&person_id| {
            Work::Remove(Removal {
                person_id,
                suppress: state.forgotten[&person_id].suppressed,
                forget: true,
            })
        })
        .collect();
    let (rejected, error) = send(config, &cio, &mut state, work, deadlines).await;
    let mut outcomes = Vec::new();
    for &id in &request.ids {
        let outcome = if let Some(reason) = rejected.get(&id) {
            state.abandon_forget(id, previous[&id]);
            IdOutcome::Rejected(reason.clone())
        } else {
            match state.forgotten.get(&id) {
                Some(entry) if entry.confirmed => IdOutcome::Forgotten {
                    suppressed: entry.suppressed,
                },
                _ => IdOutcome::Unfinished,
            }
        };
        outcomes.push((id, outcome));
    }
    let saved = state::save(&config.data_dir, &state);
    Ok(ForgetReport {
        outcomes,
        error: error.or(saved.err().map(Error::from)),
    })
}

/// `--undo` (SPEC 8.2): an id deleted is taken off the list at once; an id suppressed only
/// once customer.io confirmed the unsuppress.
async fn undo(
    config: &Config,
    state: &mut State,
    ids: &[PersonId],
    deadlines: Deadlines,
) -> Result<ForgetReport, Error> {
    let suppressed: Vec<PersonId> = ids
        .iter()
        .copied()
        .filter(|id| state.forgotten.get(id).is_some_and(|e| e.suppressed))
        .collect();
    let (rejected, error) = if suppressed.is_empty() {
        (BTreeMap::new(), None)
    } else {
        let cio = ready_client(config, deadlines).await?;
        let work = suppressed
            .iter()
            .map(|&person_id| Work::Unsuppress { person_id })
            .collect();
        send(config, &cio, state, work, deadlines).await
    };
    let mut outcomes = Vec::new();
    for &id in ids {
        let outcome = if suppressed.contains(&id) {
            match (rejected.get(&id), state.is_forgotten(id)) {
                (Some(reason), _) => IdOutcome::Rejected(reason.clone()),
                (None, false) => IdOutcome::Undone { unsuppressed: true },
                (None, true) => IdOutcome::StillForgotten,
            }
        } else if state.undo_forget(id) {
            IdOutcome::Undone {
                unsuppressed: false,
            }
        } else {
            IdOutcome::NotForgotten
        };
        outcomes.push((id, outcome));
    }
    let changed = outcomes
        .iter()
        .any(|(_, o)| matches!(o, IdOutcome::Undone { .. }));
    let saved = if changed {
        state::save(&config.data_dir, state)
    } else {
        Ok(())
    };
    Ok(ForgetReport {
        outcomes,
        error: error.or(saved.err().map(Error::from)),
    })
}

/// A customer.io client whose credentials and region are proven (as a run's first request),
/// so a wrong key or region stops `forget` before it records anything.
///
/// # Errors
/// [`Error::Cio`] (77 refused, 69 unavailable, 78 redirected), or [`Error::WrongRegion`].
async fn ready_client(config: &Config, deadlines: Deadlines) -> Result<CioClient, Error> {
    let cio = CioClient::new(
        &config.customerio,
        RetryPolicy::default(),
        Some(deadlines.hard),
    )?;
    cio.region()
        .await?
        .verify(&config.customerio, &config.path)?;
    Ok(cio)
}

/// Sends `work` and settles it into `state` through the run's sender and ledger; returns the
/// ids customer.io rejected (with its reason) and what stopped the sending, if anything.
async fn send(
    config: &Config,
    cio: &CioClient,
    state: &mut State,
    work: Vec<Work>,
    deadlines: Deadlines,
) -> (BTreeMap<PersonId, String>, Option<Error>) {
    let mut summary = Summary::default();
    let progress = indicatif::ProgressBar::hidden();
    let mut ledger = Ledger {
        state,
        summary: &mut summary,
        progress: &progress,
        checkpoint: Checkpoint::new(&config.data_dir, config.safety.time_budget),
        blocked: HashSet::new(),
        unfinished: HashSet::new(),
        removed: Vec::new(),
    };
    let mut sender = Sender::new(cio, config.customerio.api, deadlines, None);
    let mut failed = None;
    for unit in work {
        if let Err(e) = sender.submit(unit, &mut ledger).await {
            failed = Some(e);
            break;
        }
    }
    if failed.is_none() {
        if let Err(e) = sender.drain(&mut ledger).await {
            failed = Some(e);
        }
    }
    ledger.apply_removals();
    let stopped = sender.take_stop();
    let rejected = summary
        .rejected
        .into_iter()
        .map(|r| (r.person_id, r.reason))
        .collect();
    (rejected, failed.or(stopped))
}

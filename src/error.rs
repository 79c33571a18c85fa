//! The one place exit codes are defined (SPEC section 1), and the top-level error type.
//!
//! Every failure that ends a command is an [`Error`]. It keeps the error of the layer it
//! came from as its source (config, data dir, GIS, customer.io), so the exit code and the
//! run outcome are decided here from what really happened, not from a message. `main.rs`
//! prints or logs [`chain`] once, at the process edge, and exits with [`Error::code`].

use std::path::PathBuf;
use std::time::Duration;

use crate::cio::CioError;
use crate::config::ConfigError;
use crate::data_dir::DataDirError;
use crate::gis::GisError;
use crate::summary::RunOutcome;

/// Exit codes, exactly as SPEC section 1's table.
pub mod code {
    /// Success (also: dry run completed).
    pub const OK: u8 = 0;
    /// Run completed, but some records were rejected permanently; retried next run.
    pub const PARTIAL: u8 = 1;
    /// Usage error (clap).
    pub const USAGE: u8 = 2;
    /// GIS or customer.io unavailable after retries; state saved up to the last confirmed write.
    pub const UNAVAILABLE: u8 = 69;
    /// State file unreadable or corrupt, or data dir not writable.
    pub const IO: u8 = 74;
    /// Another run holds the lock, or the run hit its time budget (progress saved).
    pub const TEMPFAIL: u8 = 75;
    /// Authentication or permission refused by GIS or customer.io.
    pub const NOPERM: u8 = 77;
    /// Configuration invalid; also a wrong region, a setup mismatch, a large-change refusal.
    pub const CONFIG: u8 = 78;
}

/// Why a command could not do its job.
///
/// `Display` texts describe only their own layer; [`chain`] adds the sources.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file is invalid. The message names the key, the file and the line.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Another run holds `<data_dir>/ciosync.lock`.
    #[error("another ciosync run holds the lock {}", .0.display())]
    Locked(PathBuf),
    /// The run stopped before its time budget ran out; progress is saved.
    #[error(
        "the run reached its time budget of {}; progress is saved and the next run resumes",
        humantime::format_duration(*.0)
    )]
    TimeBudget(Duration),
    /// A full read stopped at the time budget before the run had confirmed a single write.
    /// A stopped full read starts again from the first page, so the next run would stop
    /// the same way: the budget is too short for the read (or GIS was very slow).
    #[error(
        "a full read did not get far enough within the time budget of {} to send anything \
         (it read {people} people and {applications} applications), and a stopped full read \
         starts again from the first page, so the next runs will stop the same way: raise \
         `safety.time_budget` in {} above how long a full read takes (cron ticks that find a \
         run still going skip quietly)",
        humantime::format_duration(*.budget),
        .config.display()
    )]
    FullReadOutgrewBudget {
        /// The configured `safety.time_budget`.
        budget: Duration,
        /// The configuration file that sets it.
        config: PathBuf,
        /// People the read got through.
        people: u64,
        /// Applications the read got through.
        applications: u64,
        /// Where the read was when the budget stopped it, if GIS or customer.io said.
        #[source]
        source: Option<Box<Error>>,
    },
    /// A file of the data dir is unusable, or the data dir is not writable.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The state was written for another setup (SPEC 5.2).
    #[error("{0}")]
    SetupMismatch(String),
    /// A large change was refused (the `safety.max_*_share` / `min_people_share` guards).
    #[error("{0}")]
    LargeChange(String),
    /// customer.io says the account is in another region than the configured one.
    #[error("{0}")]
    WrongRegion(String),
    /// GIS (or its token endpoint) failed; the kind decides the exit code.
    #[error(transparent)]
    Gis(#[from] GisError),
    /// customer.io failed; the kind decides the exit code.
    #[error(transparent)]
    Cio(#[from] CioError),
    /// The process cannot do its job for a local reason (no async runtime, a demo fake that
    /// cannot start).
    #[error("{context}")]
    Unavailable {
        /// What could not be done.
        context: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The process exit status for this error (SPEC section 1).
    pub fn code(&self) -> u8 {
        match self.outcome() {
            RunOutcome::ConfigError | RunOutcome::LargeChangeRefused => code::CONFIG,
            RunOutcome::Locked | RunOutcome::TimeBudget => code::TEMPFAIL,
            RunOutcome::StateError => code::IO,
            RunOutcome::AuthError => code::NOPERM,
            RunOutcome::Unavailable => code::UNAVAILABLE,
            RunOutcome::Ok | RunOutcome::Partial | RunOutcome::DryRun => {
                unreachable!("an error never has a success outcome")
            }
        }
    }

    /// The outcome a run that stopped with this error reports (summary, metrics).
    pub fn outcome(&self) -> RunOutcome {
        match self {
            Error::Config(_) | Error::SetupMismatch(_) | Error::WrongRegion(_) => {
                RunOutcome::ConfigError
            }
            Error::LargeChange(_) => RunOutcome::LargeChangeRefused,
            Error::Locked(_) => RunOutcome::Locked,
            Error::TimeBudget(_) | Error::FullReadOutgrewBudget { .. } => RunOutcome::TimeBudget,
            Error::DataDir(_) => RunOutcome::StateError,
            Error::Gis(e) => match e {
                GisError::Auth(_) => RunOutcome::AuthError,
                GisError::Unavailable(_) => RunOutcome::Unavailable,
                GisError::Deadline(_) => RunOutcome::TimeBudget,
                GisError::Persist(_) => RunOutcome::StateError,
            },
            Error::Cio(e) => match e {
                CioError::Auth(_) => RunOutcome::AuthError,
                CioError::WrongRegion(_) => RunOutcome::ConfigError,
                CioError::Unavailable(_) => RunOutcome::Unavailable,
                CioError::Deadline(_) => RunOutcome::TimeBudget,
            },
            Error::Unavailable { .. } => RunOutcome::Unavailable,
        }
    }
}

/// The error and its sources, joined with `: `, for printing once at the process edge. A
/// source whose text the chain already holds is not repeated.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_has_its_documented_code_and_outcome() {
        let io = || std::io::Error::other("boom");
        let cases: Vec<(Error, u8, RunOutcome)> = vec![
            (
                ConfigError::Invalid {
                    location: "c.toml:3".into(),
                    message: "bad".into(),
                }
                .into(),
                78,
                RunOutcome::ConfigError,
            ),
            (Error::Locked("l".into()), 75, RunOutcome::Locked),
            (
                Error::TimeBudget(Duration::from_secs(240)),
                75,
                RunOutcome::TimeBudget,
            ),
            (
                DataDirError::Invalid("x".into()).into(),
                74,
                RunOutcome::StateError,
            ),
            (
                Error::SetupMismatch("x".into()),
                78,
                RunOutcome::ConfigError,
            ),
            (
                Error::LargeChange("x".into()),
                78,
                RunOutcome::LargeChangeRefused,
            ),
            (Error::WrongRegion("x".into()), 78, RunOutcome::ConfigError),
            (GisError::Auth("x".into()).into(), 77, RunOutcome::AuthError),
            (
                GisError::Unavailable("x".into()).into(),
                69,
                RunOutcome::Unavailable,
            ),
            (
                GisError::Deadline("x".into()).into(),
                75,
                RunOutcome::TimeBudget,
            ),
            (
                GisError::Persist("x".into()).into(),
                74,
                RunOutcome::StateError,
            ),
            (CioError::Auth("x".into()).into(), 77, RunOutcome::AuthError),
            (
                CioError::WrongRegion("x".into()).into(),
                78,
                RunOutcome::ConfigError,
            ),
            (
                CioError::Unavailable("x".into()).into(),
                69,
                RunOutcome::Unavailable,
            ),
            (
                CioError::Deadline("x".into()).into(),
                75,
                RunOutcome::TimeBudget,
            ),
            (
                Error::Unavailable {
                    context: "no runtime".into(),
                    source: io(),
                },
                69,
                RunOutcome::Unavailable,
            ),
        ];
        for (error, code, outcome) in cases {
            assert_eq!((error.code(), error.outcome()), (code, outcome), "{error}");
        }
    }

    #[test]
    fn chain_adds_each_source_once() {
        let e = Error::from(DataDirError::Io {
            context: "cannot write the state file /d/state.json".into(),
            source: std::io::Error::other("No space left on device"),
        });
        assert_eq!(
            chain(&e),
            "cannot write the state file /d/state.json: No space left on device"
        );
        let budget = Error::TimeBudget(Duration::from_secs(240));
        assert_eq!(
            chain(&budget),
            "the run reached its time budget of 4m; progress is saved and the next run resumes"
        );
    }
}

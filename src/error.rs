//! The one place exit codes are defined (SPEC section 1), and the top-level error type.
//!
//! Every failure that ends a run is an [`Error`]; [`Error::exit_code`] maps it to the
//! documented code. `main.rs` prints the error chain once and exits with that code.

use std::path::PathBuf;
use std::process::ExitCode;

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

/// Why a run (or `check`) could not do its job.
///
/// `Display` texts describe only their own layer; sources are printed by the chain printer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file is invalid. The message names the key, the file and the line.
    #[error("{0}")]
    Config(String),
    /// Another run holds `<data_dir>/ciosync.lock`.
    #[error("another ciosync run holds the lock {}", .0.display())]
    Locked(PathBuf),
    /// The run stopped before its time budget ran out; progress is saved.
    #[error("the run reached its time budget of {0}; progress is saved and the next run resumes")]
    TimeBudget(String),
    /// The state file is unreadable, corrupt, of an unknown version, or the data dir is not writable.
    #[error("{0}")]
    State(String),
    /// The state was written for another setup (SPEC 5.2).
    #[error("{0}")]
    SetupMismatch(String),
    /// A large change was refused (safety.max_event_share / safety.min_people_share).
    #[error("{0}")]
    LargeChange(String),
    /// customer.io answered with a redirect: the configured region is wrong.
    #[error("{0}")]
    WrongRegion(String),
    /// GIS or customer.io refused the credentials or the permission.
    #[error("{0}")]
    Auth(String),
    /// GIS or customer.io could not be reached or kept failing after retries.
    #[error("{0}")]
    Unavailable(String),
}

impl Error {
    /// The process exit status for this error (SPEC section 1).
    pub fn code(&self) -> u8 {
        match self {
            Error::Config(_)
            | Error::SetupMismatch(_)
            | Error::LargeChange(_)
            | Error::WrongRegion(_) => code::CONFIG,
            Error::Locked(_) | Error::TimeBudget(_) => code::TEMPFAIL,
            Error::State(_) => code::IO,
            Error::Auth(_) => code::NOPERM,
            Error::Unavailable(_) => code::UNAVAILABLE,
        }
    }

    /// [`Error::code`] as a process exit status.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }
}

/// The error and its sources, joined with `: `, for printing once at the process edge.
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

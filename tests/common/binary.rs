//! Running the built `ciosync` binary, and reading what it printed.
//!
//! The environment is scrubbed: a child gets `PATH` and what the test passes, nothing else,
//! so a developer's `CIOSYNC_*` or `RUST_LOG` variables cannot leak into a test.

use std::ffi::OsStr;
use std::process::{Command, Output};

use serde_json::Value;

/// A command for `program` whose environment holds only `PATH`.
pub fn scrubbed(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

/// A command for the built `ciosync` with `args` and a scrubbed environment.
pub fn ciosync_command(args: &[&str]) -> Command {
    let mut command = scrubbed(env!("CARGO_BIN_EXE_ciosync"));
    command.args(args);
    command
}

/// Runs the built `ciosync` with a scrubbed environment plus `env`.
pub fn ciosync(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = ciosync_command(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("ciosync runs")
}

pub fn code(output: &Output) -> i32 {
    output.status.code().expect("exited, not killed")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The JSON a `--json` command printed: a run's summary, a dry run's plan, the status.
/// Panics with the printed text when it is not JSON.
// Only the tests on the fakes use it so far.
#[cfg_attr(not(feature = "fake"), allow(dead_code))]
pub fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("--json output: {e}: {}", stdout(output)))
}

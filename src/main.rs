//! The process edge: parse the command line, set up logging, run, map to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::SUCCESS
}

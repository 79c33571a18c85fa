//! The process edge: parse the command line, load the config, set up logging, run the
//! command, print its output, exit with its code (SPEC 1). The only place that reads the
//! process environment, writes stdout, or picks the exit status.

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use ciosync::cli::{Cli, Command, ConfigArg};
use ciosync::commands::{self, Output};
use ciosync::config;
#[cfg(feature = "fake")]
use ciosync::config::LogFormat;
use ciosync::error::Error;
use ciosync::logging;

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let output = match &cli.command {
        Command::Run(args) => with_config(&args.config, args.verbose, |cfg| {
            commands::run(cfg, args, chrono::Utc::now())
        }),
        Command::Check(args) => with_config(&args.config, 0, |cfg| commands::check(cfg, args.json)),
        Command::Status(args) => {
            with_config(&args.config, 0, |cfg| commands::status(cfg, args.json))
        }
        Command::Demo(args) => demo(args),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "ciosync", &mut script);
            text_output(script)
        }
        Command::Man => {
            let mut page = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut page) {
                Ok(()) => text_output(page),
                Err(e) => Output {
                    stdout: String::new(),
                    code: 1,
                    error: Some(format!("ciosync: cannot render the man page: {e}")),
                },
            }
        }
    };
    finish(output)
}

fn text_output(bytes: Vec<u8>) -> Output {
    Output {
        stdout: String::from_utf8_lossy(&bytes).into_owned(),
        code: 0,
        error: None,
    }
}

#[cfg(feature = "fake")]
fn demo(args: &ciosync::cli::DemoArgs) -> Output {
    let filter = logging::directives(env("CIOSYNC_LOG").as_deref(), 0, "warn");
    let _guard = logging::init(&filter, LogFormat::Text, None);
    ciosync::demo::main(args, &mut std::io::stdout())
}

#[cfg(not(feature = "fake"))]
fn demo(_args: &ciosync::cli::DemoArgs) -> Output {
    Output {
        stdout: String::new(),
        code: ciosync::error::code::USAGE,
        error: Some(
            "ciosync: this build has no built-in fakes (built without the `fake` feature)"
                .to_owned(),
        ),
    }
}

/// Loads the config (a bad one is exit 78, printed on stderr), sets up logging from it,
/// logs its warnings, then runs `command`.
fn with_config(
    arg: &ConfigArg,
    verbose: u8,
    command: impl FnOnce(&config::Config) -> Output,
) -> Output {
    let path = commands::config_path(arg.config.as_deref(), &env);
    let loaded = match config::load(&path, &env) {
        Ok(loaded) => loaded,
        Err(e) => {
            let e = Error::from(e);
            return Output {
                stdout: String::new(),
                code: e.code(),
                error: Some(format!("ciosync: {e}")),
            };
        }
    };
    let cfg = loaded.config;
    let filter = logging::directives(env("CIOSYNC_LOG").as_deref(), verbose, &cfg.log.level);
    let _guard = logging::init(&filter, cfg.log.format, cfg.log.dir.as_deref());
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let mut output = command(&cfg);
    // Errors after logging is up were logged already; only config errors print here.
    output.error = None;
    output
}

fn finish(output: Output) -> ExitCode {
    if !output.stdout.is_empty() {
        let mut stdout = std::io::stdout().lock();
        // A closed stdout (a pipe to `head`) is not worth a failure.
        let _ = stdout.write_all(output.stdout.as_bytes());
        let _ = stdout.flush();
    }
    if let Some(error) = output.error {
        eprintln!("{error}");
    }
    ExitCode::from(output.code)
}

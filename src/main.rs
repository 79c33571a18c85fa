//! The process edge: parse the command line, load the config, set up logging and TLS
//! trust, run the command, print its output, exit with its code (SPEC 1). The only place
//! that reads the process environment, writes stdout, or picks the exit status.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use ciosync::cli::{self, Cli, Command, ConfigArg, Verbosity};
use ciosync::commands::{self, Output};
use ciosync::config;
#[cfg(feature = "fake")]
use ciosync::config::LogFormat;
use ciosync::error::{self, Error};
use ciosync::http;
use ciosync::init::{self, InitError};
use ciosync::logging::{self, FileLogs};
use ciosync::summary::RunOutcome;

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// Colour in the stderr logs: only on a terminal, and never with `NO_COLOR` set to anything
/// but the empty string (no-color.org). clap's help and the progress bar read `NO_COLOR`
/// themselves.
fn color() -> bool {
    std::io::stderr().is_terminal() && env("NO_COLOR").is_none_or(|value| value.is_empty())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbosity = cli.verbosity;
    let output = match &cli.command {
        Command::Run(args) => with_config(&args.config, verbosity, |cfg| {
            commands::run(
                cfg,
                args,
                verbosity.verbose > 0,
                chrono::Utc::now(),
                stdout_width(),
            )
        }),
        Command::Check(args) => with_config(&args.config, verbosity, |cfg| {
            commands::check(cfg, args.json)
        }),
        Command::Status(args) => with_config(&args.config, verbosity, |cfg| {
            commands::status(cfg, args.json)
        }),
        Command::Forget(args) => with_config(&args.config, verbosity, |cfg| {
            ciosync::forget::command(cfg, args)
        }),
        Command::Explain(args) => with_config(&args.config, verbosity, |cfg| {
            ciosync::explain::command(cfg, args, stdout_width())
        }),
        Command::Demo(args) => demo(args, verbosity),
        Command::Init(args) => init(args, verbosity),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "ciosync", &mut script);
            text_output(script)
        }
        Command::Man => text_output(cli::man_page()),
    };
    finish(output)
}

/// The width of the terminal stdout is, else (a pipe, a file, cron) 80 columns.
fn stdout_width() -> usize {
    rustix::termios::tcgetwinsize(std::io::stdout())
        .ok()
        .map(|size| usize::from(size.ws_col))
        .filter(|&columns| columns > 0)
        .unwrap_or(ciosync::sync::dry_run::DEFAULT_WIDTH)
}

fn text_output(bytes: Vec<u8>) -> Output {
    Output::text(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(feature = "fake")]
fn demo(args: &cli::DemoArgs, verbosity: Verbosity) -> Output {
    let filter = logging::directives(
        env("CIOSYNC_LOG").as_deref(),
        verbosity.level(),
        config::DEFAULT_LOG_LEVEL,
    );
    let _guard = logging::init(&filter, LogFormat::Text, None, color());
    ciosync::demo::main(args, &mut std::io::stdout())
}

/// The lean build (SPEC 7) has no fakes to run the demo on: say so, and how to get them.
#[cfg(not(feature = "fake"))]
fn demo(_args: &cli::DemoArgs, _verbosity: Verbosity) -> Output {
    eprintln!(
        "ciosync: `demo` needs the built-in fakes, and this is a lean build without them \
         (built with --no-default-features, so without the cargo feature `fake`). \
         Try the demo with a default build: `cargo run --release -- demo`."
    );
    Output {
        code: ciosync::error::code::USAGE,
        ..Output::default()
    }
}

/// `ciosync init`: asks on the terminal when stdin is one, else takes the flags. A missing
/// answer is reported like clap's own usage errors (exit 2).
fn init(args: &ciosync::cli::InitArgs, verbosity: Verbosity) -> Output {
    let filter = logging::directives(env("CIOSYNC_LOG").as_deref(), verbosity.level(), "warn");
    let _guard = logging::init(&filter, config::LogFormat::Text, None, color());
    let mut terminal = init::StdTerminal::open();
    let terminal = terminal.as_mut().map(|t| t as &mut dyn init::Terminal);
    match init::run(args, &env, terminal) {
        Ok(report) => Output::text(report),
        Err(InitError::Usage(message)) => {
            let mut cli = Cli::command();
            cli.build();
            let usage = match cli.find_subcommand_mut("init") {
                Some(init) => init.error(clap::error::ErrorKind::MissingRequiredArgument, message),
                None => cli.error(clap::error::ErrorKind::MissingRequiredArgument, message),
            };
            let _ = usage.print();
            Output {
                code: error::code::USAGE,
                ..Output::default()
            }
        }
        Err(InitError::Interrupted) => {
            eprintln!("ciosync: init stopped; the config was not written");
            Output {
                code: INTERRUPTED,
                ..Output::default()
            }
        }
        Err(InitError::Failed(e)) => Output::failed(e),
    }
}

/// The exit status of a command stopped by Ctrl-C, as a shell reports one killed by SIGINT.
const INTERRUPTED: u8 = 130;

/// Loads the config (a bad one is exit 78, printed on stderr: logging is not up yet), sets
/// up logging and TLS trust from it, logs its warnings, runs `command`, and reports its
/// failure through the logs.
fn with_config(
    arg: &ConfigArg,
    verbosity: Verbosity,
    command: impl FnOnce(&config::Config) -> Output,
) -> Output {
    let path = commands::config_path(arg.config.as_deref(), &env);
    let loaded = match config::load(&path, &env) {
        Ok(loaded) => loaded,
        Err(e) => {
            let e = Error::from(e);
            eprintln!("ciosync: {}", error::chain(&e));
            return Output {
                code: e.code(),
                ..Output::default()
            };
        }
    };
    let cfg = loaded.config;
    let filter = logging::directives(
        env("CIOSYNC_LOG").as_deref(),
        verbosity.level(),
        &cfg.log.level,
    );
    let files = cfg.log.dir.as_deref().map(|dir| FileLogs {
        dir,
        keep_days: cfg.log.keep_days,
        today: chrono::Utc::now().date_naive(),
    });
    let _guard = logging::init(&filter, cfg.log.format, files, color());
    if let Some(ca_file) = &cfg.ca_file {
        http::trust_extra_roots(ca_file.certificates.clone());
    }
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let mut output = command(&cfg);
    if let Some(failure) = output.failure.take() {
        report(&failure);
    }
    output
}

/// Reports the error that ended a command, once, at the level its kind deserves: a run
/// that found the lock held did nothing wrong (info, no cron mail); a time-budget stop is
/// worth a look (warn); anything else could not finish (error).
fn report(failure: &Error) {
    let chain = error::chain(failure);
    match failure.outcome() {
        RunOutcome::Locked => tracing::info!(error = %chain, "Skipping this run."),
        // The next run will not get further: nothing resumes by itself.
        RunOutcome::TimeBudget if matches!(failure, Error::FullReadOutgrewBudget { .. }) => {
            tracing::error!(error = %chain, "Run stopped at its time budget and cannot get further.")
        }
        RunOutcome::TimeBudget => {
            tracing::warn!(error = %chain, "Run stopped early; the next run resumes.")
        }
        _ => tracing::error!(error = %chain, "Run could not finish."),
    }
}

fn finish(output: Output) -> ExitCode {
    if !output.stdout.is_empty() {
        let mut stdout = std::io::stdout().lock();
        // A closed stdout (a pipe to `head`) is not worth a failure.
        let _ = stdout.write_all(output.stdout.as_bytes());
        let _ = stdout.flush();
    }
    if let Some(failure) = &output.failure {
        // A command that fails before logging is up (the demo) prints its error here.
        eprintln!("ciosync: {}", error::chain(failure));
    }
    ExitCode::from(output.code)
}

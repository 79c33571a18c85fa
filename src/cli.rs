//! The command line (SPEC 1): clap definitions only, no I/O.
//!
//! Doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Keeps a customer.io workspace in step with AIESEC's GIS. Run it from cron.
#[derive(Debug, Parser)]
#[command(name = "ciosync", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One sync, then exit. Silent when healthy.
    Run(RunArgs),
    /// Validate the config, prove both credentials work and check the GIS schema, changing
    /// nothing.
    Check(CheckArgs),
    /// What the last run did, what the state holds, whether a run holds the lock now.
    Status(StatusArgs),
    /// Start the built-in fakes with generated people, sync twice, and show what customer.io got.
    Demo(DemoArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), generated from this command line.
    Man,
}

/// `--config`, shared by the commands that read a config.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The config file [default: $CIOSYNC_CONFIG, else /etc/ciosync/config.toml].
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// `ciosync run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Read GIS and print the plan; send nothing to customer.io and write nothing in data_dir.
    #[arg(long)]
    pub dry_run: bool,
    /// Ignore incremental watermarks for this run and read everything.
    #[arg(long)]
    pub full: bool,
    /// Print the run summary (or, with --dry-run, the plan) as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Lift the large-change refusals (safety.max_event_share, safety.min_people_share) for this run.
    #[arg(long)]
    pub allow_large_change: bool,
    /// More output on stderr: -v info, -vv debug.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// `ciosync check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ciosync status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ciosync demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many people the fake GIS generates (deterministic).
    #[arg(long, default_value_t = 50)]
    pub people: usize,
    /// Keep both fakes running until interrupted and write a ready config instead.
    #[arg(long)]
    pub serve: bool,
    /// Where --serve writes config.toml and the data dir.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "ciosync-demo",
        requires = "serve"
    )]
    pub dir: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_flags_parse() {
        let cli = Cli::try_parse_from([
            "ciosync",
            "run",
            "--config",
            "/x.toml",
            "--dry-run",
            "--full",
            "--json",
            "-vv",
        ])
        .expect("valid command line");
        let Command::Run(args) = cli.command else {
            panic!("expected run");
        };
        assert_eq!(args.config.config, Some(PathBuf::from("/x.toml")));
        assert!(args.dry_run && args.full && args.json);
        assert_eq!(args.verbose, 2);
    }

    #[test]
    fn completions_take_a_shell() {
        assert!(Cli::try_parse_from(["ciosync", "completions", "bash"]).is_ok());
        assert!(Cli::try_parse_from(["ciosync", "completions", "cmd"]).is_err());
    }

    #[test]
    fn dir_requires_serve() {
        assert!(Cli::try_parse_from(["ciosync", "demo", "--dir", "x"]).is_err());
        assert!(Cli::try_parse_from(["ciosync", "demo", "--serve", "--dir", "x"]).is_ok());
    }

    #[test]
    fn unknown_flag_is_a_usage_error() {
        let err = Cli::try_parse_from(["ciosync", "run", "--bogus"]).expect_err("unknown flag");
        assert_eq!(err.exit_code(), 2);
    }
}

//! The command line (SPEC 1): clap definitions, the exit-code table shown by `--help` and
//! the man page, and the version text. No I/O.
//!
//! Doc comments are the `--help` text. `-v`/`-vv`/`-q` are global: they work before or
//! after any subcommand.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::error::code;

/// The features this binary was built with, for `--version` (a macro, so `concat!` can use
/// it: the version text must be a `&'static str` known at compile time).
#[cfg(feature = "fake")]
macro_rules! features {
    () => {
        "fake (built-in fakes: demo, tests)"
    };
}
#[cfg(not(feature = "fake"))]
macro_rules! features {
    () => {
        "none (lean production build)"
    };
}

/// What `--version` prints after the program name (`-V` prints only the version): the
/// version, the cargo features and the TLS roots built in, so an operator can tell a lean
/// build from the default one.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nfeatures: ",
    features!(),
    "\nTLS roots: built-in webpki roots, the system store (SSL_CERT_FILE, SSL_CERT_DIR), ",
    "and `ca_file` when configured"
);

/// Exit codes (SPEC 1), as `--help` and the man page show them. The numbers come from
/// [`crate::error::code`], the one place they are defined.
pub const EXIT_CODES: [(u8, &str); 8] = [
    (code::OK, "success (also: dry run completed)"),
    (
        code::PARTIAL,
        "run completed, but some records were rejected permanently (listed in the summary); \
         they are retried next run",
    ),
    (code::USAGE, "usage error"),
    (
        code::UNAVAILABLE,
        "GIS or customer.io unavailable after retries; state saved up to the last confirmed write",
    ),
    (
        code::IO,
        "state file unreadable or corrupt, or data dir not writable",
    ),
    (
        code::TEMPFAIL,
        "another run holds the lock (nothing done), or the run hit its time budget \
         (progress saved; the next run resumes)",
    ),
    (
        code::NOPERM,
        "authentication or permission refused by GIS or customer.io",
    ),
    (
        code::CONFIG,
        "configuration invalid (the message names the key, the file and the line); also a \
         customer.io redirect (wrong region), a setup mismatch, and a large-change refusal",
    ),
];

/// The exit-code table as `--help` shows it.
fn exit_codes_help() -> String {
    let mut text = String::from("Exit codes:\n");
    for (code, meaning) in EXIT_CODES {
        text.push_str(&format!("  {code:>2}  {meaning}\n"));
    }
    text
}

/// Keeps a customer.io workspace in step with AIESEC's GIS. Run it from cron.
#[derive(Debug, Parser)]
#[command(
    name = "ciosync",
    version,
    long_version = LONG_VERSION,
    about,
    long_about = None,
    after_help = "See --help for the exit codes.",
    after_long_help = exit_codes_help()
)]
pub struct Cli {
    #[command(flatten)]
    pub verbosity: Verbosity,
    #[command(subcommand)]
    pub command: Command,
}

/// `-v`, `-vv` and `-q`, for every command. `CIOSYNC_LOG` overrides them; they override
/// `log.level`.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct Verbosity {
    /// More output on stderr: -v info (and `run` prints its summary), -vv debug.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less output on stderr: errors only, no warnings.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

impl Verbosity {
    /// The log level the flags ask for, or `None` to keep the configured one.
    pub fn level(self) -> Option<&'static str> {
        match (self.quiet, self.verbose) {
            (true, _) => Some("error"),
            (false, 0) => None,
            (false, 1) => Some("info"),
            (false, _) => Some("debug"),
        }
    }
}

/// The man page (roff): clap_mangen's sections, with the exit codes as an EXIT STATUS
/// section instead of its unformatted EXTRA one.
pub fn man_page() -> Vec<u8> {
    use clap_mangen::roff::{bold, roman, Roff};

    let man = clap_mangen::Man::new(Cli::command());
    let mut page = Vec::new();
    let mut exit_status = Roff::default();
    exit_status.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in EXIT_CODES {
        exit_status.control("TP", []);
        exit_status.text([bold(code.to_string())]);
        exit_status.text([roman(meaning)]);
    }
    // Writing into a Vec cannot fail.
    let rendered = [
        man.render_title(&mut page),
        man.render_name_section(&mut page),
        man.render_synopsis_section(&mut page),
        man.render_description_section(&mut page),
        man.render_options_section(&mut page),
        man.render_subcommands_section(&mut page),
        exit_status.to_writer(&mut page),
        man.render_version_section(&mut page),
    ];
    debug_assert!(rendered.iter().all(Result::is_ok));
    page
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
    /// Write a config and its secret files: asks on a terminal, else takes the flags.
    ///
    /// On a terminal it asks one question at a time (flags given are not asked), proves each
    /// credential as it goes, offers your GIS person's home LC and current offices as
    /// `home_lcs`, and writes the config (0600) with every secret in its own file beside it
    /// (0600). Without a terminal the flags are the answers: a missing one is a usage error.
    /// Nothing is overwritten without --force; a refused credential writes nothing (exit 77).
    Init(Box<InitArgs>),
    /// Erase people from customer.io on request, and never send anything for them again.
    ///
    /// For each GIS person id: delete the customer.io profile (or, with --suppress, suppress
    /// it: customer.io then ignores every later call for the id), then forget the person: they
    /// leave the state, and no run sends anything for the id, whatever GIS says, until
    /// `forget --undo`. An id ciosync never synced is deleted too (harmless) and remembered.
    /// Takes the run lock (exit 75 if a run holds it). Exit 0 when customer.io confirmed every
    /// id, 1 when it rejected some (they stay as they were).
    Forget(ForgetArgs),
    /// Why didn't this person get the e-mail? What the next run would send for one person.
    ///
    /// Reads the person and their applications by id from GIS, and the state, and shows
    /// whether GIS has them, whether they are in scope (home LC in gis.home_lcs), whether
    /// the state knows them, whether they are pending (with the last run's rejection) or
    /// forgotten; each profile attribute's status (unchanged, send, clear, excluded); and
    /// each application with the events customer.io has and the events the next run sends,
    /// with timestamps, event ids and the rule behind each. The same planner as `run`.
    /// Sends nothing; takes the run lock like a dry run (exit 75 if held). Exit 0 when GIS
    /// or the state knows the person, 1 when neither does.
    Explain(ExplainArgs),
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
    /// Read GIS and print what a run would send (totals, then each person's attributes and
    /// events); send nothing to customer.io and write nothing in data_dir.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: show the detail of this person only (repeat for several; the totals
    /// stay those of the whole run).
    #[arg(long, value_name = "ID", requires = "dry_run")]
    pub person: Vec<u64>,
    /// With --dry-run: print only the totals.
    #[arg(long, requires = "dry_run", conflicts_with = "person")]
    pub summary: bool,
    /// Ignore incremental watermarks for this run and read everything.
    #[arg(long)]
    pub full: bool,
    /// Print the run summary (or, with --dry-run, the plan: people, totals, summary) as JSON
    /// on stdout.
    #[arg(long)]
    pub json: bool,
    /// Lift the large-change refusals (safety.max_event_share, safety.min_people_share) for this run.
    #[arg(long)]
    pub allow_large_change: bool,
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

/// `ciosync forget` (SPEC 8.2).
#[derive(Debug, Args)]
pub struct ForgetArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The GIS person ids (digits), as customer.io knows the profiles.
    #[arg(value_name = "PERSON_ID", required = true, value_parser = person_id_arg)]
    pub ids: Vec<u64>,
    /// Suppress the profiles instead of deleting them: customer.io deletes them and ignores
    /// every later call for these ids.
    #[arg(long)]
    pub suppress: bool,
    /// Take the ids off the forgotten list (unsuppressing those that were suppressed); the
    /// next run syncs them as new people.
    #[arg(long, conflicts_with = "suppress")]
    pub undo: bool,
}

/// `ciosync explain` (SPEC 8.1).
#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The GIS person id (digits), as customer.io knows the profile.
    #[arg(value_name = "PERSON_ID", value_parser = person_id_arg)]
    pub person_id: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Show the attribute values GIS has (personal data: names, e-mail, birthday).
    #[arg(long)]
    pub values: bool,
}

/// A GIS person id: digits only (GIS ids are numbers; a customer.io profile is keyed by it).
fn person_id_arg(text: &str) -> Result<u64, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{text:?} is not a GIS person id (digits only, e.g. 1234567)"
        ));
    }
    text.parse()
        .map_err(|_| format!("{text:?} is too large for a GIS person id"))
}

/// `ciosync init` (SPEC 8.5). Every answer is optional here: on a terminal a missing one is
/// asked, without one it is a usage error naming the flag.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The config file to write [default: $CIOSYNC_CONFIG, else /etc/ciosync/config.toml].
    /// The secret files go beside it.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Replace the config and secret files if they exist.
    #[arg(long)]
    pub force: bool,
    /// A file holding the GIS access token (copied beside the config).
    #[arg(long, value_name = "PATH", help_heading = "GIS")]
    pub gis_token_file: Option<PathBuf>,
    /// OAuth instead of a token: the client id.
    #[arg(
        long,
        value_name = "ID",
        help_heading = "GIS",
        conflicts_with = "gis_token_file"
    )]
    pub gis_client_id: Option<String>,
    /// OAuth: a file holding the client secret (copied beside the config).
    #[arg(
        long,
        value_name = "PATH",
        help_heading = "GIS",
        conflicts_with = "gis_token_file"
    )]
    pub gis_client_secret_file: Option<PathBuf>,
    /// OAuth: a file holding the refresh token to start from (copied beside the config).
    #[arg(
        long,
        value_name = "PATH",
        help_heading = "GIS",
        conflicts_with = "gis_token_file"
    )]
    pub gis_refresh_token_file: Option<PathBuf>,
    /// OAuth: the token endpoint [default: https://auth.aiesec.org/oauth/token].
    #[arg(
        long,
        value_name = "URL",
        help_heading = "GIS",
        conflicts_with = "gis_token_file",
        value_parser = url_arg
    )]
    pub gis_token_url: Option<String>,
    /// The ids of the LCs whose people to sync, comma-separated.
    #[arg(
        long,
        value_name = "ID,...",
        help_heading = "GIS",
        value_delimiter = ',',
        num_args = 1
    )]
    pub home_lcs: Option<Vec<u64>>,
    /// The GIS GraphQL endpoint [default: https://gis-api.aiesec.org/graphql].
    #[arg(long, value_name = "URL", help_heading = "GIS", value_parser = url_arg)]
    pub gis_endpoint: Option<String>,
    /// The customer.io site id (Workspace Settings, API Credentials, Track API keys).
    #[arg(long, value_name = "ID", help_heading = "customer.io")]
    pub site_id: Option<String>,
    /// A file holding the customer.io Track API key (copied beside the config).
    #[arg(long, value_name = "PATH", help_heading = "customer.io")]
    pub api_key_file: Option<PathBuf>,
    /// The customer.io region of the workspace [default: us].
    #[arg(long, value_name = "REGION", help_heading = "customer.io", value_parser = ["us", "eu"])]
    pub region: Option<String>,
    /// The Track API base URL instead of the region's (tests, proxies).
    #[arg(long, value_name = "URL", help_heading = "customer.io", value_parser = url_arg)]
    pub track_url: Option<String>,
    /// Where ciosync keeps its state, lock and rotated OAuth token [default: /var/lib/ciosync].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// A URL flag must follow the config's URL rule (SPEC 2), so `init` never writes one that
/// `check` would refuse.
fn url_arg(text: &str) -> Result<String, String> {
    crate::config::check_url(text).map(|()| text.to_owned())
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
        assert_eq!(cli.verbosity.level(), Some("debug"));
        let Command::Run(args) = cli.command else {
            panic!("expected run");
        };
        assert_eq!(args.config.config, Some(PathBuf::from("/x.toml")));
        assert!(args.dry_run && args.full && args.json);
    }

    #[test]
    fn verbosity_flags_work_on_every_command_before_or_after_it() {
        for command in [
            &["run"][..],
            &["check"],
            &["status"],
            &["demo"],
            &["man"],
            &["completions", "bash"],
        ] {
            let level = |flags: &[&str], before: bool| {
                let mut line = vec!["ciosync"];
                if before {
                    line.extend_from_slice(flags);
                    line.extend_from_slice(command);
                } else {
                    line.extend_from_slice(command);
                    line.extend_from_slice(flags);
                }
                Cli::try_parse_from(&line)
                    .unwrap_or_else(|e| panic!("{line:?}: {e}"))
                    .verbosity
                    .level()
            };
            for before in [true, false] {
                assert_eq!(level(&[], before), None, "{command:?}");
                assert_eq!(level(&["-v"], before), Some("info"), "{command:?}");
                assert_eq!(level(&["-vv"], before), Some("debug"), "{command:?}");
                assert_eq!(level(&["-q"], before), Some("error"), "{command:?}");
                assert_eq!(level(&["--quiet"], before), Some("error"), "{command:?}");
            }
        }
        let both = Cli::try_parse_from(["ciosync", "run", "-q", "-v"]).expect_err("conflict");
        assert_eq!(both.exit_code(), 2);
    }

    #[test]
    fn long_help_and_man_page_carry_every_exit_code() {
        let help = Cli::command().render_long_help().to_string();
        let man = String::from_utf8(man_page()).expect("roff is UTF-8");
        assert!(man.contains(".SH \"EXIT STATUS\""), "{man}");
        assert!(
            !man.contains("EXTRA"),
            "the table is not repeated unformatted"
        );
        for (code, meaning) in EXIT_CODES {
            let first_words: String = meaning
                .split_whitespace()
                .take(4)
                .collect::<Vec<_>>()
                .join(" ");
            assert!(
                help.lines()
                    .any(|line| line.trim_start().starts_with(&format!("{code}  "))),
                "--help lacks exit code {code}:\n{help}"
            );
            assert!(
                man.contains(&format!("\\fB{code}\\fR")),
                "man page lacks exit code {code}"
            );
            assert!(
                help.contains(&first_words) && man.contains(&first_words),
                "{first_words}"
            );
        }
        // Short help points at the long one instead of repeating the table.
        let short = Cli::command().render_help().to_string();
        assert!(short.contains("See --help for the exit codes."), "{short}");
    }

    #[test]
    fn version_names_the_features_and_the_tls_roots() {
        let version = Cli::command().render_long_version();
        assert!(version.starts_with(&format!("ciosync {}", env!("CARGO_PKG_VERSION"))));
        let features = if cfg!(feature = "fake") {
            "features: fake"
        } else {
            "features: none"
        };
        assert!(version.contains(features), "{version}");
        assert!(
            version.contains("webpki") && version.contains("system store"),
            "{version}"
        );
    }

    #[test]
    fn dry_run_detail_flags_need_dry_run_and_take_person_ids() {
        let cli = Cli::try_parse_from([
            "ciosync",
            "run",
            "--dry-run",
            "--person",
            "1001",
            "--person",
            "1002",
        ])
        .expect("valid command line");
        let Command::Run(args) = cli.command else {
            panic!("expected run");
        };
        assert_eq!(args.person, vec![1001, 1002]);
        assert!(!args.summary);
        for bad in [
            vec!["--person", "1001"],
            vec!["--summary"],
            vec!["--dry-run", "--person", "abc"],
            vec!["--dry-run", "--person", "-3"],
            vec!["--dry-run", "--summary", "--person", "1"],
        ] {
            let mut argv = vec!["ciosync", "run"];
            argv.extend(&bad);
            let err = Cli::try_parse_from(&argv).expect_err("refused");
            assert_eq!(err.exit_code(), 2, "{bad:?}: {err}");
        }
        assert!(
            Cli::try_parse_from(["ciosync", "run", "--dry-run", "--summary", "--json"]).is_ok()
        );
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
    fn init_flags_parse_and_refuse_bad_values() {
        let cli = Cli::try_parse_from([
            "ciosync",
            "init",
            "--home-lcs",
            "1337,1338",
            "--region",
            "eu",
            "--gis-endpoint",
            "http://127.0.0.1:9/graphql",
        ])
        .expect("valid command line");
        let Command::Init(args) = cli.command else {
            panic!("expected init");
        };
        assert_eq!(args.home_lcs, Some(vec![1337, 1338]));
        assert_eq!(args.region.as_deref(), Some("eu"));
        for bad in [
            ["--home-lcs", "1337,x"],
            ["--region", "asia"],
            ["--gis-endpoint", "http://gis.example.org/graphql"],
            ["--track-url", "not a url"],
        ] {
            let err = Cli::try_parse_from(["ciosync", "init", bad[0], bad[1]])
                .expect_err("bad value refused");
            assert_eq!(err.exit_code(), 2, "{bad:?}");
            assert!(err.to_string().contains(bad[0]), "{err}");
        }
        let err = Cli::try_parse_from([
            "ciosync",
            "init",
            "--gis-token-file",
            "t",
            "--gis-client-id",
            "c",
        ])
        .expect_err("a token and OAuth at once");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn forget_takes_person_ids_and_refuses_anything_else() {
        let cli = Cli::try_parse_from(["ciosync", "forget", "12", "34", "12", "--suppress"])
            .expect("valid command line");
        let Command::Forget(args) = cli.command else {
            panic!("expected forget");
        };
        assert_eq!(args.ids, vec![12, 34, 12]);
        assert!(args.suppress && !args.undo);
        let bad: [&[&str]; 6] = [
            &["forget"],
            &["forget", "12a"],
            &["forget", "+12"],
            &["forget", "-12"],
            &["forget", "99999999999999999999999"],
            &["forget", "12", "--undo", "--suppress"],
        ];
        for args in bad {
            let err = Cli::try_parse_from(std::iter::once("ciosync").chain(args.iter().copied()))
                .expect_err("refused");
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
        let err = Cli::try_parse_from(["ciosync", "forget", "12a"]).expect_err("refused");
        assert!(
            err.to_string().contains("\"12a\" is not a GIS person id"),
            "{err}"
        );
    }

    #[test]
    fn unknown_flag_is_a_usage_error() {
        let err = Cli::try_parse_from(["ciosync", "run", "--bogus"]).expect_err("unknown flag");
        assert_eq!(err.exit_code(), 2);
    }
}

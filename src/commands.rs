//! The commands `run`, `check` and `status` (SPEC 1), from a loaded config to an exit code
//! and the text for stdout. Printing and the process exit stay in `main.rs`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::time::Instant;

use crate::cio::{CioClient, RegionInfo};
use crate::cli::RunArgs;
use crate::config::{self, Config};
use crate::credentials;
use crate::data_dir;
use crate::error::{self, Error};
use crate::gis::schema_check::SchemaCheck;
use crate::gis::CurrentPerson;
use crate::gis::GisError;
use crate::http::RetryPolicy;
use crate::lock;
use crate::state;
use crate::summary::Summary;
use crate::sync::dry_run::{self, Layout, Selection};
use crate::sync::{self, RunOptions};

/// What a command wants printed, and how the process should exit. `main` prints `stdout`,
/// reports `failure` once, and exits with `code`.
#[derive(Debug, Default)]
pub struct Output {
    /// For stdout.
    pub stdout: String,
    pub code: u8,
    /// The error that ended the command, not yet reported.
    pub failure: Option<Error>,
}

impl Output {
    /// A command that printed `stdout` and succeeded.
    pub fn text(stdout: String) -> Output {
        Output {
            stdout,
            code: error::code::OK,
            failure: None,
        }
    }

    /// A command that failed with `error`, printing nothing.
    pub fn failed(error: Error) -> Output {
        Output {
            stdout: String::new(),
            code: error.code(),
            failure: Some(error),
        }
    }
}

/// The config path: `--config`, else `CIOSYNC_CONFIG`, else `/etc/ciosync/config.toml`.
pub fn config_path(flag: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| {
            env("CIOSYNC_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(config::default_config_path)
}

/// The runtime every command uses: one thread. The work is I/O-bound and concurrent, not
/// parallel; one thread also keeps the allocator to one arena, which measurably lowers the
/// peak memory of a large first sync (freed memory is reused instead of stranded in
/// another thread's arena).
///
/// # Errors
/// When the runtime cannot be built.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Unavailable {
            context: "cannot start the async runtime".to_owned(),
            source,
        })
}

/// `ciosync run`; `print_summary` (`-v`) prints the summary as text. `width` is the
/// terminal's width in columns, for a dry run's text ([`sync::dry_run::DEFAULT_WIDTH`] when
/// stdout is not a terminal).
pub fn run(
    config: &Config,
    args: &RunArgs,
    print_summary: bool,
    now: DateTime<Utc>,
    width: usize,
) -> Output {
    let options = RunOptions {
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        dry_run: args.dry_run,
        full: args.full,
        allow_large_change: args.allow_large_change,
    };
    let result =
        runtime().and_then(|rt| rt.block_on(sync::run(config, &options, now, Instant::now())));
    let result = match result {
        Ok(result) => result,
        Err(e) => return Output::failed(e),
    };
    let mut stdout = String::new();
    if let Some(dry_run) = &result.dry_run {
        let selection = Selection {
            people: args.person.iter().copied().collect(),
            summary_only: args.summary,
        };
        stdout = if args.json {
            dry_run::json(dry_run, &result.summary, &selection)
        } else {
            dry_run::text(dry_run, &selection, Layout::dry_run(width))
        };
    } else if args.json {
        stdout =
            serde_json::to_string_pretty(&result.summary).expect("a summary always serializes");
        stdout.push('\n');
    } else if print_summary {
        stdout = result.summary.to_text();
    }
    Output {
        stdout,
        code: result.code(),
        failure: result.error,
    }
}

/// One line of `ciosync check`.
#[derive(Debug, Serialize)]
pub struct CheckResult {
    /// `config`, `gis`, `customerio` or `gis_schema`.
    pub check: &'static str,
    pub ok: bool,
    /// The check could not be made (it does not fail `check`); `detail` says why.
    pub skipped: bool,
    /// What was found, or why it failed.
    pub detail: String,
}

/// `ciosync check`: the config is valid (it was loaded), GIS `currentPerson`, customer.io
/// region, the GIS schema. One line per check (or a JSON list); exit 0 only if all pass.
pub fn check(config: &Config, json: bool) -> Output {
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => return Output::failed(e),
    };
    let mut results = vec![CheckResult {
        check: "config",
        ok: true,
        skipped: false,
        detail: config.path.display().to_string(),
    }];
    let mut first_error: Option<Error> = None;
    let mut record = |check: &'static str, outcome: Result<String, Error>| {
        let (ok, detail) = match outcome {
            Ok(detail) => (true, detail),
            Err(e) => {
                let detail = error::chain(&e);
                first_error.get_or_insert(e);
                (false, detail)
            }
        };
        results.push(CheckResult {
            check,
            ok,
            skipped: false,
            detail,
        });
    };
    record(
        "gis",
        runtime.block_on(async {
            let person = prove_gis(config).await?;
            Ok(person.home_lc_report(&config.gis.home_lcs))
        }),
    );
    record(
        "customerio",
        runtime.block_on(async {
            let info = prove_customerio(config).await?;
            Ok(customerio_report(config, &info))
        }),
    );
    let gis_ok = results.iter().any(|r| r.check == "gis" && r.ok);
    let (schema_results, schema_error) = check_gis_schema(&runtime, config, gis_ok);
    results.extend(schema_results);
    if let Some(e) = schema_error {
        first_error.get_or_insert(e);
    }
    let stdout = if json {
        let mut text =
            serde_json::to_string_pretty(&results).expect("check results always serialize");
        text.push('\n');
        text
    } else {
        results
            .iter()
            .map(|r| {
                let verdict = if r.skipped {
                    "skipped"
                } else if r.ok {
                    "ok"
                } else {
                    "FAILED"
                };
                if r.ok {
                    format!("{}: {verdict} ({})\n", r.check, r.detail)
                } else {
                    format!("{}: {verdict}: {}\n", r.check, r.detail)
                }
            })
            .collect()
    };
    // Each failure is on its own line of stdout already; only the exit code is left.
    Output {
        stdout,
        code: first_error.as_ref().map_or(error::code::OK, Error::code),
        failure: None,
    }
}

/// Proves the GIS credential without changing anything in GIS: `currentPerson`, which also
/// says whose credential it is. With OAuth this is a refresh, so `data_dir` is created for the
/// rotated refresh token. `check` and `init` both prove it here.
///
/// # Errors
/// [`Error::Gis`] (77 refused, 69 unavailable), or [`Error::DataDir`] when OAuth's data dir
/// cannot be created.
pub async fn prove_gis(config: &Config) -> Result<CurrentPerson, Error> {
    if matches!(config.gis.auth, config::GisAuth::OAuth(_)) {
        // Rotated refresh tokens are persisted in data_dir.
        data_dir::ensure(&config.data_dir)?;
    }
    let client = credentials::gis_client(config, None)?;
    Ok(client.current_person().await?)
}

/// Proves the customer.io site id and key with the read-only region check, and that the
/// account is in the configured region. `check` and `init` both prove them here.
///
/// # Errors
/// [`Error::Cio`] (77 refused, 69 unavailable, 78 redirected), or [`Error::WrongRegion`].
pub async fn prove_customerio(config: &Config) -> Result<RegionInfo, Error> {
    let client = CioClient::new(&config.customerio, RetryPolicy::default(), None)?;
    let info = client.region().await?;
    info.verify(&config.customerio, &config.path)?;
    Ok(info)
}

/// `region us, https://track.customer.io`: what [`prove_customerio`] found.
pub fn customerio_report(config: &Config, info: &RegionInfo) -> String {
    let region = if info.region.is_empty() {
        "not reported"
    } else {
        info.region.as_str()
    };
    format!("region {region}, {}", config.customerio.base_url())
}

/// The `gis_schema` lines of `check` (SPEC 8.4): one `ok` line when GIS has every field
/// ciosync's queries select, one `FAILED` line per missing `Type.field` (with the error
/// that makes `check` exit 69), or one `skipped` line when GIS refuses introspection or
/// the credential check before it failed (neither fails `check` by itself).
fn check_gis_schema(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    gis_ok: bool,
) -> (Vec<CheckResult>, Option<Error>) {
    let line = |ok: bool, skipped: bool, detail: String| CheckResult {
        check: "gis_schema",
        ok,
        skipped,
        detail,
    };
    if !gis_ok {
        let detail = "the GIS credential check failed".to_owned();
        return (vec![line(true, true, detail)], None);
    }
    let outcome = runtime.block_on(async {
        let client = credentials::gis_client(config, None)?;
        Ok::<_, Error>(client.check_schema().await?)
    });
    match outcome {
        Ok(SchemaCheck::Complete {
            types,
            fields,
            deprecated,
        }) => {
            let mut detail =
                format!("GIS has all {fields} fields ciosync selects, in {types} types");
            if !deprecated.is_empty() {
                detail.push_str(&format!(
                    "; deprecated by GIS, may go away: {}",
                    deprecated.join(", ")
                ));
            }
            (vec![line(true, false, detail)], None)
        }
        Ok(SchemaCheck::Missing(missing)) => {
            let lines = missing
                .iter()
                .map(|field| {
                    line(
                        false,
                        false,
                        format!("GIS no longer has {field}, which ciosync selects"),
                    )
                })
                .collect();
            let error = GisError::Unavailable(format!(
                "GIS no longer has {} field(s) ciosync selects: {}",
                missing.len(),
                missing.join(", ")
            ));
            (lines, Some(error.into()))
        }
        Ok(SchemaCheck::Refused(reason)) => {
            let detail = format!("GIS refused introspection: {reason}");
            (vec![line(true, true, detail)], None)
        }
        Err(e) => {
            let detail = error::chain(&e);
            (vec![line(false, false, detail)], Some(e))
        }
    }
}

/// What `ciosync status` reports.
#[derive(Debug, Serialize)]
pub struct Status {
    pub data_dir: PathBuf,
    pub lock_held: bool,
    pub state_exists: bool,
    pub people: usize,
    pub applications: usize,
    pub pending_people: usize,
    /// People `ciosync forget` erased: no run sends anything for them (SPEC 8.2).
    pub forgotten_people: usize,
    pub last_full_read: Option<DateTime<Utc>>,
    pub watermark: Option<DateTime<Utc>>,
    pub run_in_progress_since: Option<DateTime<Utc>>,
    pub last_run: Option<Summary>,
}

/// `ciosync status`: the last run, the state's size, the lock.
pub fn status(config: &Config, json: bool) -> Output {
    let data_dir = &config.data_dir;
    let loaded = match state::load(data_dir) {
        Ok(s) => s,
        Err(e) => return Output::failed(e.into()),
    };
    let last_run = crate::summary::read_last_run(data_dir);
    let status = Status {
        data_dir: data_dir.clone(),
        lock_held: data_dir.exists() && lock::is_held(data_dir).unwrap_or(false),
        state_exists: loaded.is_some(),
        people: loaded.as_ref().map_or(0, |s| s.people.len()),
        applications: loaded.as_ref().map_or(0, |s| s.applications.len()),
        pending_people: loaded.as_ref().map_or(0, |s| s.pending_people.len()),
        forgotten_people: loaded.as_ref().map_or(0, |s| s.forgotten.len()),
        last_full_read: loaded.as_ref().and_then(|s| s.last_full_read),
        watermark: loaded.as_ref().and_then(|s| s.watermark),
        run_in_progress_since: loaded.as_ref().and_then(|s| s.run_in_progress),
        last_run,
    };
    let stdout = if json {
        let mut text = serde_json::to_string_pretty(&status).expect("status always serializes");
        text.push('\n');
        text
    } else {
        status_text(&status)
    };
    Output::text(stdout)
}

fn status_text(s: &Status) -> String {
    let when = |t: Option<DateTime<Utc>>| t.map_or_else(|| "never".to_owned(), |t| t.to_rfc3339());
    let mut out = format!("data dir: {}\n", s.data_dir.display());
    out.push_str(&format!(
        "lock: {}\n",
        if s.lock_held {
            "held by a running ciosync"
        } else {
            "free"
        }
    ));
    if s.state_exists {
        out.push_str(&format!(
            "state: {} people, {} applications, {} pending, {} forgotten\n",
            s.people, s.applications, s.pending_people, s.forgotten_people
        ));
    } else {
        out.push_str("state: none yet (the first run does a full sync)\n");
    }
    out.push_str(&format!("last full read: {}\n", when(s.last_full_read)));
    out.push_str(&format!(
        "last completed run started: {}\n",
        when(s.watermark)
    ));
    if let Some(t) = s.run_in_progress_since {
        let dead_end = s.last_run.as_ref().is_some_and(|run| run.budget_too_short);
        out.push_str(&format!(
            "unfinished run since: {} ({})\n",
            t.to_rfc3339(),
            if dead_end {
                "the runs cannot get further within the time budget: see the last run's error"
            } else {
                "the next run resumes it"
            }
        ));
    }
    match &s.last_run {
        Some(summary) => {
            out.push_str("last run:\n");
            for line in summary.to_text().lines() {
                out.push_str("  ");
                out.push_str(line);
                out.push('\n');
            }
        }
        None => out.push_str("last run: none recorded\n"),
    }
    out
}

//! Logging setup for the process (called once, from `main.rs`): stderr (text or JSON;
//! colours only when `main` says so: stderr is a terminal and `NO_COLOR` is unset),
//! optional daily files in `log.dir`, of which the last `log.keep_days` days are kept.
//!
//! Level: `CIOSYNC_LOG` (an EnvFilter string) wins, then `-v`/`-vv`/`-q`, then `log.level`.
//! HTTP library internals are capped at `info` whatever is asked, so wire-level traces
//! (which could carry headers) never reach the logs.
//!
//! Retention: a run deletes the daily files older than `keep_days` days (today counts as
//! one) when it sets up logging; it never touches a file whose name is not exactly a daily
//! file's (`ciosync.log.YYYY-MM-DD`). ciosync runs for minutes, not days, so deleting at
//! start-up is as good as at rotation, and counting by date (not by files, as
//! tracing-appender's `max_log_files` does) keeps "14 days" true across days without runs.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Crates whose debug and trace output is never wanted (it is wire-level).
const CAPPED_TARGETS: [&str; 8] = [
    "hyper",
    "hyper_util",
    "reqwest",
    "h2",
    "rustls",
    "tower",
    "axum",
    "apollo_compiler",
];

/// The daily files' names: `ciosync.log.YYYY-MM-DD` (tracing-appender's daily rotation,
/// dated in UTC), like the PHP connector's `log_YYYY-MM-DD`.
const FILE_PREFIX: &str = "ciosync.log";

/// The filter directives for the level the command line asks for (`-v`, `-vv`, `-q`;
/// `None` for none of them) and the configured level.
pub fn directives(env: Option<&str>, flag_level: Option<&str>, config_level: &str) -> String {
    let base = match (env, flag_level) {
        (Some(env), _) if !env.trim().is_empty() => env.trim().to_owned(),
        (_, Some(level)) => level.to_owned(),
        (_, None) => config_level.to_owned(),
    };
    let mut out = base;
    for target in CAPPED_TARGETS {
        out.push_str(&format!(",{target}=info"));
    }
    out
}

/// `log.dir` and what to keep of it.
#[derive(Debug, Clone, Copy)]
pub struct FileLogs<'a> {
    pub dir: &'a Path,
    /// `log.keep_days`: daily files of this many days are kept, today's included.
    pub keep_days: u32,
    /// Today's date in UTC (the appender names its files by UTC dates).
    pub today: NaiveDate,
}

/// Installs the global subscriber. `ansi`: colour the stderr text (never the files). Keep
/// the returned guard alive until exit so file logs are flushed.
pub fn init(
    filter: &str,
    format: LogFormat,
    files: Option<FileLogs<'_>>,
    ansi: bool,
) -> Option<WorkerGuard> {
    let make_filter = || EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("warn"));
    let stderr_layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(make_filter())
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_target(false)
            .with_filter(make_filter())
            .boxed(),
    };
    let dir = files.map(|files| files.dir);
    let (file_layer, guard) = match dir {
        Some(dir) => {
            // Logs carry ids, not personal data, but keep them private anyway: a new log dir
            // is created 0700 (the appender's files follow the umask).
            if !dir.exists() {
                use std::os::unix::fs::DirBuilderExt;
                let _ = std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir);
            }
            // Like the PHP connector's log_YYYY-MM-DD files: one file per day.
            let appender = tracing_appender::rolling::daily(dir, FILE_PREFIX);
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let layer = match format {
                LogFormat::Json => tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(writer)
                    .with_filter(make_filter())
                    .boxed(),
                LogFormat::Text => tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_ansi(false)
                    .with_filter(make_filter())
                    .boxed(),
            };
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(stderr_layer)
        .with(file_layer)
        .try_init();
    if let Some(files) = files {
        // After the subscriber is up, so a file that cannot be deleted is logged (warn: the
        // disk fills up otherwise).
        for (path, error) in prune_daily_files(files.dir, files.today, files.keep_days) {
            tracing::warn!(path = %path.display(), error = %error, "Cannot delete an old log file.");
        }
    }
    guard
}

/// Deletes the daily files in `dir` dated more than `keep_days - 1` days before `today`, so
/// that `keep_days` days are kept, today's included. Returns the files it could not delete.
/// Files with any other name are never touched.
pub fn prune_daily_files(
    dir: &Path,
    today: NaiveDate,
    keep_days: u32,
) -> Vec<(PathBuf, std::io::Error)> {
    let Some(oldest_kept) =
        today.checked_sub_days(chrono::Days::new(u64::from(keep_days.max(1)) - 1))
    else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        // The appender reports an unusable directory itself.
        return Vec::new();
    };
    let mut failures = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(date) = name.to_str().and_then(daily_file_date) else {
            continue;
        };
        let is_file = entry.file_type().is_ok_and(|kind| kind.is_file());
        if date < oldest_kept && is_file {
            if let Err(error) = std::fs::remove_file(entry.path()) {
                failures.push((entry.path(), error));
            }
        }
    }
    failures
}

/// The date of a daily file's name (`ciosync.log.2026-12-01`), or `None` for any other name.
fn daily_file_date(name: &str) -> Option<NaiveDate> {
    let date = name.strip_prefix(FILE_PREFIX)?.strip_prefix('.')?;
    // Exactly YYYY-MM-DD: chrono alone would also take "2026-1-1".
    (date.len() == 10)
        .then(|| NaiveDate::parse_from_str(date, "%Y-%m-%d").ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_env_then_flags_then_config() {
        assert!(directives(Some("debug"), Some("error"), "warn").starts_with("debug,"));
        assert!(directives(None, Some("info"), "warn").starts_with("info,"));
        assert!(directives(None, Some("error"), "warn").starts_with("error,"));
        assert!(directives(None, None, "error").starts_with("error,"));
        assert!(directives(Some(""), None, "warn").starts_with("warn,"));
        assert!(directives(Some("trace"), None, "warn").contains("hyper=info"));
    }

    fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("test date")
    }

    #[test]
    fn pruning_keeps_exactly_keep_days_days_and_nothing_else_is_touched() {
        let dir = tempfile::tempdir().expect("temp dir");
        let today = date("2026-12-01");
        // Thirty days of files, today's included, with a gap (no runs) in the middle.
        let mut days = Vec::new();
        for back in (0..30u64).filter(|back| !(5..9).contains(back)) {
            let day = today - chrono::Days::new(back);
            std::fs::write(dir.path().join(format!("ciosync.log.{day}")), "x").expect("write");
            days.push(day);
        }
        let strangers = [
            "ciosync.log",
            "ciosync.log.2001-01-01.gz",
            "ciosync.log.2001-1-1",
            "other.log.2001-01-01",
            "notes.txt",
        ];
        for name in strangers {
            std::fs::write(dir.path().join(name), "keep me").expect("write");
        }
        std::fs::create_dir(dir.path().join("ciosync.log.2001-01-02")).expect("a directory");

        let failures = prune_daily_files(dir.path(), today, 14);
        assert!(failures.is_empty(), "{failures:?}");

        let oldest_kept = date("2026-11-18");
        for day in days {
            let exists = dir.path().join(format!("ciosync.log.{day}")).exists();
            assert_eq!(exists, day >= oldest_kept, "{day}");
        }
        for name in strangers {
            assert!(dir.path().join(name).exists(), "{name} was deleted");
        }
        assert!(dir.path().join("ciosync.log.2001-01-02").is_dir());
    }

    #[test]
    fn keep_one_day_keeps_only_today_and_a_missing_dir_is_no_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let today = date("2026-12-01");
        for day in ["2026-11-30", "2026-12-01"] {
            std::fs::write(dir.path().join(format!("ciosync.log.{day}")), "x").expect("write");
        }
        assert!(prune_daily_files(dir.path(), today, 1).is_empty());
        assert!(!dir.path().join("ciosync.log.2026-11-30").exists());
        assert!(dir.path().join("ciosync.log.2026-12-01").exists());
        assert!(prune_daily_files(&dir.path().join("missing"), today, 1).is_empty());
    }
}

//! Logging setup for the process (called once, from `main.rs`): stderr (text or JSON, no
//! colours unless stderr is a terminal), optional daily files in `log.dir`.
//!
//! Level: `CIOSYNC_LOG` (an EnvFilter string) wins, then `-v`/`-vv`, then `log.level`.
//! HTTP library internals are capped at `info` whatever is asked, so wire-level traces
//! (which could carry headers) never reach the logs.

use std::io::IsTerminal;
use std::path::Path;

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

/// The filter directives for a verbosity and a configured level.
pub fn directives(env: Option<&str>, verbose: u8, config_level: &str) -> String {
    let base = match (env, verbose) {
        (Some(env), _) if !env.trim().is_empty() => env.trim().to_owned(),
        (_, 0) => config_level.to_owned(),
        (_, 1) => "info".to_owned(),
        (_, _) => "debug".to_owned(),
    };
    let mut out = base;
    for target in CAPPED_TARGETS {
        out.push_str(&format!(",{target}=info"));
    }
    out
}

/// Installs the global subscriber. Keep the returned guard alive until exit so file logs
/// are flushed.
pub fn init(filter: &str, format: LogFormat, dir: Option<&Path>) -> Option<WorkerGuard> {
    let make_filter = || EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("warn"));
    let ansi = std::io::stderr().is_terminal();
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
            let appender = tracing_appender::rolling::daily(dir, "ciosync.log");
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
    guard
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_env_then_flags_then_config() {
        assert!(directives(Some("debug"), 0, "warn").starts_with("debug,"));
        assert!(directives(None, 1, "warn").starts_with("info,"));
        assert!(directives(None, 2, "warn").starts_with("debug,"));
        assert!(directives(None, 0, "error").starts_with("error,"));
        assert!(directives(Some(""), 0, "warn").starts_with("warn,"));
        assert!(directives(Some("trace"), 0, "warn").contains("hyper=info"));
    }
}

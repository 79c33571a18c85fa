//! Configuration (SPEC 2): one TOML file in, one validated [`Config`] out.
//!
//! [`load`] reads the file and hands it through four rooms, each in its own file:
//! - `raw`: the file as written, checked only for shape (unknown keys and wrong types are
//!   refused here);
//! - `locate`: every error as "file:line: `full.key`: what is wrong";
//! - `resolve`: the rules beyond shape (required keys, URLs, durations, choices, shares, the
//!   log level) and secrets (env, else `*_file`, else inline), building the [`Config`];
//! - `defaults`: the default of every optional key, one named constant each, checked against
//!   `config.example.toml` by a test.
//!
//! The resolved types live in `types` and are re-exported here, with the defaults, so callers
//! write `config::Config`, `config::Region` and `config::DEFAULT_DATA_DIR`.
//!
//! Invariants: nothing here reads the process environment (it is injected, so tests are
//! hermetic); no error or warning text ever contains a secret value; every error names the
//! file, and the key and line where known.

mod defaults;
mod locate;
mod raw;
mod resolve;
mod types;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use defaults::*;
pub use resolve::check_url;
pub use types::{
    CaFile, CioApi, CioConfig, Config, EventsConfig, GisAuth, GisConfig, LateEvents, LogConfig,
    LogFormat, MonitoringConfig, OAuthConfig, ProgrammeName, Region, SafetyConfig, Secret,
};

/// Where the configuration lives when neither `--config` nor `CIOSYNC_CONFIG` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ciosync/config.toml";

/// Env variable overriding `gis.access_token`.
pub const ENV_GIS_ACCESS_TOKEN: &str = "CIOSYNC_GIS_ACCESS_TOKEN";
/// Env variable overriding `gis.oauth.client_secret`.
pub const ENV_GIS_CLIENT_SECRET: &str = "CIOSYNC_GIS_CLIENT_SECRET";
/// Env variable overriding `gis.oauth.refresh_token`.
pub const ENV_GIS_REFRESH_TOKEN: &str = "CIOSYNC_GIS_REFRESH_TOKEN";
/// Env variable overriding `customerio.api_key`.
pub const ENV_CIO_API_KEY: &str = "CIOSYNC_CIO_API_KEY";

/// [`DEFAULT_CONFIG_PATH`] as a path.
pub fn default_config_path() -> PathBuf {
    PathBuf::from(DEFAULT_CONFIG_PATH)
}

/// A loaded configuration and what is worth telling the operator about it.
#[derive(Debug)]
pub struct Loaded {
    /// The resolved configuration.
    pub config: Config,
    /// Things that work but deserve a cron mail (insecure secret permissions, ignored
    /// overrides). They never contain a secret value.
    pub warnings: Vec<String>,
}

/// Why a configuration file was refused (exit 78). The text names the file, and the key
/// and line where known; it never contains a secret value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file itself could not be read.
    #[error("{}: cannot read the configuration file", path.display())]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, misses a required key, or a value is
    /// out of range. `location` is `file:line` or `file`.
    #[error("{location}: {message}")]
    Invalid {
        /// `file:line`, or `file` when no line applies (a missing key).
        location: String,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A `*_file` secret could not be read.
    #[error("{location}: cannot read `{key}` from {}", file.display())]
    SecretFile {
        /// `file:line` of the `*_file` key in the configuration.
        location: String,
        /// The key (`customerio.api_key_file`).
        key: String,
        /// The secret file it names.
        file: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
}

/// Reads and validates the configuration at `path`.
///
/// `env` looks up environment variables (`CIOSYNC_GIS_ACCESS_TOKEN`, ...); `main` passes
/// `|name| std::env::var(name).ok()`, tests pass a map. An env value wins over a `*_file`,
/// which wins over an inline value; a `*_file` shadowed by the env is not read.
///
/// # Errors
/// [`ConfigError`] when the file cannot be read, is not valid TOML, holds an unknown key,
/// misses a required key, holds an invalid value, or names a secret file that cannot be read.
pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text, env)
}

/// Validates `text` as the configuration file `path` (which need not exist yet), by the
/// same rules as [`load`]: `init` checks what it is about to write with it.
///
/// # Errors
/// As [`load`], but for reading the file.
pub fn parse(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let file = locate::SourceFile { path, text };
    let raw: raw::RawConfig = file.deserialize()?;
    resolve::resolve(&file, raw, env)
}

//! Configuration (SPEC 2): the TOML schema, defaults, secrets and validation.
//!
//! SKELETON: the resolved types below are the contract other modules use; parsing,
//! validation and secret resolution are to be built here.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A credential. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The credential itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    pub data_dir: PathBuf,
    pub gis: GisConfig,
    pub customerio: CioConfig,
    pub events: EventsConfig,
    pub log: LogConfig,
    pub monitoring: MonitoringConfig,
    pub safety: SafetyConfig,
}

/// `[gis]`.
#[derive(Debug, Clone)]
pub struct GisConfig {
    pub endpoint: String,
    pub home_lcs: Vec<u64>,
    pub auth: GisAuth,
    pub page_size: u32,
    pub full_sync_every: Duration,
    /// Per-request timeout (`gis.request_timeout`, default 30 s).
    pub request_timeout: Duration,
}

/// How ciosync authenticates to GIS.
#[derive(Debug, Clone)]
pub enum GisAuth {
    /// A static access token.
    Token(Secret),
    /// `[gis.oauth]`: a rotating refresh token.
    OAuth(OAuthConfig),
}

/// `[gis.oauth]`.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// The seed refresh token from the config; rotated ones live in `data_dir`.
    pub refresh_token: Secret,
}

/// `customerio.region`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    Us,
    Eu,
}

/// `customerio.api`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CioApi {
    Batch,
    V1,
}

/// `[customerio]`.
#[derive(Debug, Clone)]
pub struct CioConfig {
    pub site_id: String,
    pub api_key: Secret,
    pub region: Region,
    pub track_url: Option<String>,
    pub api: CioApi,
    pub max_requests_per_second: u32,
    /// Per-request timeout (`customerio.request_timeout`, default 30 s).
    pub request_timeout: Duration,
}

impl CioConfig {
    /// The Track API base URL: `track_url` if set, else the region's (no trailing slash).
    pub fn base_url(&self) -> String {
        match (&self.track_url, self.region) {
            (Some(url), _) => url.trim_end_matches('/').to_owned(),
            (None, Region::Us) => "https://track.customer.io".to_owned(),
            (None, Region::Eu) => "https://track-eu.customer.io".to_owned(),
        }
    }
}

/// `events.programme_name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgrammeName {
    ShortName,
    ShortNameDisplay,
}

/// `events.late_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateEvents {
    TrueTime,
    Now,
}

/// `[events]`.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    pub programme_name: ProgrammeName,
    pub late_events: LateEvents,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
    pub dir: Option<PathBuf>,
}

/// `[monitoring]`.
#[derive(Debug, Clone, Default)]
pub struct MonitoringConfig {
    pub textfile: Option<PathBuf>,
    pub ping_url: Option<String>,
}

/// `[safety]`.
#[derive(Debug, Clone)]
pub struct SafetyConfig {
    pub time_budget: Duration,
    pub max_event_share: f64,
    pub min_people_share: f64,
}

// TEMPORARY STUB (replaced by the config-state branch).
use std::path::Path;
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}
#[derive(Debug)]
pub struct ConfigError(pub String);
impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ConfigError {}
impl From<ConfigError> for crate::error::Error {
    fn from(e: ConfigError) -> Self {
        crate::error::Error::Config(e.0)
    }
}
pub fn load(_path: &Path, _env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    Err(ConfigError("stub".into()))
}
pub fn default_config_path() -> PathBuf {
    PathBuf::from("/etc/ciosync/config.toml")
}

//! The resolved configuration: what the rest of the crate reads.
//!
//! Every value here has been validated and defaulted by `resolve`; nothing in these types is
//! optional unless the setting itself is (a `track_url` override, a log directory). Secrets are
//! wrapped in [`Secret`], whose `Debug` never shows them, so `{config:?}` is safe to log.
//!
//! The settings written as one of a fixed set of names (`region = "eu"`) have one `name()`
//! each: the resolver parses with it, its errors list it, and the example-file test formats
//! the defaults with it, so the spelling lives in one place.

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
    /// `ca_file`: extra CA certificates every HTTPS connection trusts.
    pub ca_file: Option<CaFile>,
    pub gis: GisConfig,
    pub customerio: CioConfig,
    pub events: EventsConfig,
    pub log: LogConfig,
    pub monitoring: MonitoringConfig,
    pub safety: SafetyConfig,
}

/// `ca_file`: a PEM file of CA certificates to trust beside the built-in and system roots
/// (a TLS-inspecting proxy's CA, or the CA of a private `track_url`).
#[derive(Debug, Clone)]
pub struct CaFile {
    pub path: PathBuf,
    /// Every certificate of the file, parsed (at least one).
    pub certificates: Vec<reqwest::Certificate>,
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

impl Region {
    /// Every region, in the order an error lists them.
    pub(super) const ALL: [Region; 2] = [Region::Us, Region::Eu];

    /// The name written in the file and reported by customer.io: `"us"` or `"eu"`.
    pub fn name(self) -> &'static str {
        match self {
            Region::Us => "us",
            Region::Eu => "eu",
        }
    }
}

/// `customerio.api`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CioApi {
    Batch,
    V1,
}

impl CioApi {
    /// Every API, in the order an error lists them.
    pub(super) const ALL: [CioApi; 2] = [CioApi::Batch, CioApi::V1];

    /// The name written in the file: `"batch"` or `"v1"`.
    pub fn name(self) -> &'static str {
        match self {
            CioApi::Batch => "batch",
            CioApi::V1 => "v1",
        }
    }
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

impl ProgrammeName {
    /// Every choice, in the order an error lists them.
    pub(super) const ALL: [ProgrammeName; 2] =
        [ProgrammeName::ShortName, ProgrammeName::ShortNameDisplay];

    /// The name written in the file: `"short_name"` or `"short_name_display"`.
    pub fn name(self) -> &'static str {
        match self {
            ProgrammeName::ShortName => "short_name",
            ProgrammeName::ShortNameDisplay => "short_name_display",
        }
    }
}

/// `events.late_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateEvents {
    TrueTime,
    Now,
}

impl LateEvents {
    /// Every choice, in the order an error lists them.
    pub(super) const ALL: [LateEvents; 2] = [LateEvents::TrueTime, LateEvents::Now];

    /// The name written in the file: `"true_time"` or `"now"`.
    pub fn name(self) -> &'static str {
        match self {
            LateEvents::TrueTime => "true_time",
            LateEvents::Now => "now",
        }
    }
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

impl LogFormat {
    /// Every format, in the order an error lists them.
    pub(super) const ALL: [LogFormat; 2] = [LogFormat::Text, LogFormat::Json];

    /// The name written in the file: `"text"` or `"json"`.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
    pub dir: Option<PathBuf>,
    /// Days of daily files kept in `dir`, today's included (at least 1).
    pub keep_days: u32,
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

//! Configuration (SPEC 2): the TOML schema, defaults, secrets and validation.
//!
//! [`load`] reads one TOML file into the resolved [`Config`] that the rest of the crate uses.
//! It owns every rule of SPEC 2: unknown keys are refused, required keys are named when
//! missing, URLs must be `https://` unless loopback, durations are humane, and secrets come
//! from the environment, a `*_file` or the file itself (in that order of precedence).
//!
//! Invariants: nothing here reads the process environment (it is injected, so tests are
//! hermetic); no error or warning text ever contains a secret value; every error names the
//! file, and the key and line where known.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

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

impl Region {
    /// The region as customer.io names it (`us`, `eu`).
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

/// Where the configuration lives when neither `--config` nor `CIOSYNC_CONFIG` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ciosync/config.toml";
/// `data_dir` when the file does not set it.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/ciosync";
/// `gis.endpoint` when the file does not set it.
pub const DEFAULT_GIS_ENDPOINT: &str = "https://gis-api.aiesec.org/graphql";

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
    let ctx = Ctx { path, text: &text };
    let raw: RawConfig = toml::from_str(&text).map_err(|err| ctx.parse_error(&err))?;
    let mut resolver = Resolver {
        ctx: &ctx,
        env,
        warnings: Vec::new(),
        inline_secrets: Vec::new(),
    };
    let config = resolver.build(raw)?;
    let mut warnings = resolver.warnings;
    if !resolver.inline_secrets.is_empty() && readable_by_others(path) {
        warnings.push(format!(
            "{} holds inline secrets ({}) and is readable by group or others; \
             chmod 600 it, or move the secrets to `*_file` files or the environment",
            path.display(),
            resolver
                .inline_secrets
                .iter()
                .map(|key| format!("`{key}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(Loaded { config, warnings })
}

// ---------------------------------------------------------------------------------------
// The file as written: every key optional here, so that a missing required key is reported
// by its full name rather than by serde's bare field name. Values that can fail validation
// are `Spanned` so the error can give their line.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    data_dir: Option<Spanned<PathBuf>>,
    gis: RawGis,
    customerio: RawCio,
    events: RawEvents,
    log: RawLog,
    monitoring: RawMonitoring,
    safety: RawSafety,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawGis {
    endpoint: Option<Spanned<String>>,
    home_lcs: Option<Spanned<Vec<u64>>>,
    access_token: Option<Spanned<String>>,
    access_token_file: Option<Spanned<PathBuf>>,
    page_size: Option<Spanned<u32>>,
    full_sync_every: Option<Spanned<String>>,
    request_timeout: Option<Spanned<String>>,
    oauth: Option<RawOAuth>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawOAuth {
    token_url: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    client_secret: Option<Spanned<String>>,
    client_secret_file: Option<Spanned<PathBuf>>,
    refresh_token: Option<Spanned<String>>,
    refresh_token_file: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawCio {
    site_id: Option<Spanned<String>>,
    api_key: Option<Spanned<String>>,
    api_key_file: Option<Spanned<PathBuf>>,
    region: Option<Spanned<String>>,
    track_url: Option<Spanned<String>>,
    api: Option<Spanned<String>>,
    max_requests_per_second: Option<Spanned<u32>>,
    request_timeout: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawEvents {
    programme_name: Option<Spanned<String>>,
    late_events: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    level: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    dir: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawMonitoring {
    textfile: Option<PathBuf>,
    ping_url: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawSafety {
    time_budget: Option<Spanned<String>>,
    max_event_share: Option<Spanned<f64>>,
    min_people_share: Option<Spanned<f64>>,
}

/// The file being loaded, for locating errors.
struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    /// `file:line` for a byte offset into the file.
    fn location_at(&self, offset: usize) -> String {
        format!("{}:{}", self.path.display(), line_of(self.text, offset))
    }

    /// An error at the line holding `span`.
    fn at(&self, span: std::ops::Range<usize>, message: String) -> ConfigError {
        ConfigError::Invalid {
            location: self.location_at(span.start),
            message,
        }
    }

    /// An error about the file as a whole (a missing key has no line).
    fn whole(&self, message: String) -> ConfigError {
        ConfigError::Invalid {
            location: self.path.display().to_string(),
            message,
        }
    }

    /// Turns toml's error into one that names the full key (`gis.page_sise`), not just the
    /// field (`page_sise`), with the line.
    fn parse_error(&self, err: &toml::de::Error) -> ConfigError {
        let message = err.message().trim_end();
        let Some(span) = err.span() else {
            return self.whole(message.to_owned());
        };
        let (table, header_line) = table_at(self.text, span.start);
        let message = if let Some(field) = unknown_field(message) {
            let key = match (header_line, table) {
                // An unknown table (`[gsi]`): the header itself, up to the offending name.
                (Some(header), _) => header_up_to(&header, field),
                (None, table) => {
                    // A dotted key (`gis.page_sise = 1` at the top) carries its own path.
                    let written = key_on_line(self.text, span.start)
                        .filter(|key| key == field || key.ends_with(&format!(".{field}")))
                        .unwrap_or_else(|| field.to_owned());
                    match table {
                        Some(table) => format!("{table}.{written}"),
                        None => written,
                    }
                }
            };
            format!("unknown key `{key}` ({message})")
        } else if let Some(key) = key_on_line(self.text, span.start) {
            let key = match table {
                Some(table) if header_line.is_none() => format!("{table}.{key}"),
                _ => key,
            };
            format!("`{key}`: {message}")
        } else {
            message.to_owned()
        };
        self.at(span, message)
    }
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The line holding `offset`.
fn line_at(text: &str, offset: usize) -> &str {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    &text[start..end]
}

/// The dotted name of a `[table]` / `[[table]]` header line, without quotes or spaces.
fn header_name(line: &str) -> Option<String> {
    let line = line.trim_start();
    let rest = line.strip_prefix('[')?;
    let rest = rest.strip_prefix('[').unwrap_or(rest);
    let end = rest.find(']')?;
    Some(
        rest[..end]
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '"' && *c != '\'')
            .collect(),
    )
}

/// The table in force at `offset` (the last header above it), and the header of the line
/// itself if that line is a header.
fn table_at(text: &str, offset: usize) -> (Option<String>, Option<String>) {
    let here = line_at(text, offset);
    let header_here = header_name(here);
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let table = text[..line_start].lines().rev().find_map(header_name);
    (table, header_here)
}

/// `gis.oath` from header `gis.oath.x` and field `oath`: the header cut after the field.
fn header_up_to(header: &str, field: &str) -> String {
    let mut out = Vec::new();
    for part in header.split('.') {
        out.push(part);
        if part == field {
            break;
        }
    }
    out.join(".")
}

/// The field serde names in "unknown field `x`, expected ...".
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(&rest[..rest.find('`')?])
}

/// The key of a `key = value` line holding `offset`.
fn key_on_line(text: &str, offset: usize) -> Option<String> {
    let line = line_at(text, offset);
    let (key, _) = line.split_once('=')?;
    let key: String = key
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '"' && *c != '\'')
        .collect();
    (!key.is_empty() && !key.starts_with('#')).then_some(key)
}

/// Whether group or others may read the file (`mode & 0o044`).
fn readable_by_others(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|meta| meta.permissions().mode() & 0o044 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// Where one secret may come from.
struct SecretSource<'a> {
    /// Full key of the inline form (`customerio.api_key`); the file form adds `_file`.
    key: &'static str,
    env_name: &'static str,
    inline: Option<&'a Spanned<String>>,
    file: Option<&'a Spanned<PathBuf>>,
}

/// Turns the raw file into a [`Config`], collecting warnings along the way.
struct Resolver<'a> {
    ctx: &'a Ctx<'a>,
    env: &'a dyn Fn(&str) -> Option<String>,
    warnings: Vec<String>,
    /// Keys of secrets written inline in the file (for the permission warning).
    inline_secrets: Vec<&'static str>,
}

impl Resolver<'_> {
    fn build(&mut self, raw: RawConfig) -> Result<Config, ConfigError> {
        let data_dir = raw
            .data_dir
            .map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR), Spanned::into_inner);
        if data_dir.as_os_str().is_empty() {
            return Err(self.ctx.whole("`data_dir` must not be empty".to_owned()));
        }
        let gis = self.gis(raw.gis)?;
        let customerio = self.customerio(raw.customerio)?;
        let events = EventsConfig {
            programme_name: self.choice(
                "events.programme_name",
                raw.events.programme_name.as_ref(),
                &[
                    ("short_name", ProgrammeName::ShortName),
                    ("short_name_display", ProgrammeName::ShortNameDisplay),
                ],
                ProgrammeName::ShortName,
            )?,
            late_events: self.choice(
                "events.late_events",
                raw.events.late_events.as_ref(),
                &[
                    ("true_time", LateEvents::TrueTime),
                    ("now", LateEvents::Now),
                ],
                LateEvents::TrueTime,
            )?,
        };
        let log = LogConfig {
            level: self.log_level(raw.log.level.as_ref())?,
            format: self.choice(
                "log.format",
                raw.log.format.as_ref(),
                &[("text", LogFormat::Text), ("json", LogFormat::Json)],
                LogFormat::Text,
            )?,
            dir: raw.log.dir,
        };
        let monitoring = MonitoringConfig {
            textfile: raw.monitoring.textfile,
            ping_url: raw
                .monitoring
                .ping_url
                .as_ref()
                .map(|url| self.url("monitoring.ping_url", url))
                .transpose()?,
        };
        let safety = SafetyConfig {
            time_budget: self.duration(
                "safety.time_budget",
                raw.safety.time_budget.as_ref(),
                "4m",
                false,
            )?,
            max_event_share: self.share(
                "safety.max_event_share",
                raw.safety.max_event_share.as_ref(),
            )?,
            min_people_share: self.share(
                "safety.min_people_share",
                raw.safety.min_people_share.as_ref(),
            )?,
        };
        Ok(Config {
            path: self.ctx.path.to_owned(),
            data_dir,
            gis,
            customerio,
            events,
            log,
            monitoring,
            safety,
        })
    }

    fn gis(&mut self, raw: RawGis) -> Result<GisConfig, ConfigError> {
        let endpoint = match &raw.endpoint {
            Some(url) => self.url("gis.endpoint", url)?,
            None => DEFAULT_GIS_ENDPOINT.to_owned(),
        };
        let home_lcs =
            match raw.home_lcs {
                None => return Err(self.ctx.whole(
                    "missing required key `gis.home_lcs` (the ids of the LCs whose people to sync)"
                        .to_owned(),
                )),
                Some(lcs) if lcs.get_ref().is_empty() => {
                    return Err(self.ctx.at(
                        lcs.span(),
                        "`gis.home_lcs` must list at least one LC id".to_owned(),
                    ))
                }
                Some(lcs) => lcs.into_inner(),
            };
        let auth = match raw.oauth {
            Some(oauth) => {
                if let Some(conflict) = raw
                    .access_token
                    .as_ref()
                    .map(|s| (s.span(), "gis.access_token"))
                    .or_else(|| {
                        raw.access_token_file
                            .as_ref()
                            .map(|s| (s.span(), "gis.access_token_file"))
                    })
                {
                    return Err(self.ctx.at(
                        conflict.0,
                        format!(
                            "`{}` and [gis.oauth] are both set; keep only one GIS credential",
                            conflict.1
                        ),
                    ));
                }
                if (self.env)(ENV_GIS_ACCESS_TOKEN).is_some_and(|v| !v.is_empty()) {
                    self.warnings.push(format!(
                        "{ENV_GIS_ACCESS_TOKEN} is set but the configuration uses [gis.oauth]; \
                         the env token is ignored"
                    ));
                }
                GisAuth::OAuth(self.oauth(oauth)?)
            }
            None => match self.secret(SecretSource {
                key: "gis.access_token",
                env_name: ENV_GIS_ACCESS_TOKEN,
                inline: raw.access_token.as_ref(),
                file: raw.access_token_file.as_ref(),
            })? {
                Some(token) => GisAuth::Token(token),
                None => {
                    return Err(self.ctx.whole(format!(
                        "missing GIS credential: set `gis.access_token_file`, `gis.access_token` \
                         or env {ENV_GIS_ACCESS_TOKEN}, or the [gis.oauth] table"
                    )))
                }
            },
        };
        let page_size = match raw.page_size {
            Some(size) if *size.get_ref() == 0 => {
                return Err(self
                    .ctx
                    .at(size.span(), "`gis.page_size` must be at least 1".to_owned()))
            }
            Some(size) => size.into_inner(),
            None => 200,
        };
        Ok(GisConfig {
            endpoint,
            home_lcs,
            auth,
            page_size,
            full_sync_every: self.duration(
                "gis.full_sync_every",
                raw.full_sync_every.as_ref(),
                "24h",
                true,
            )?,
            request_timeout: self.duration(
                "gis.request_timeout",
                raw.request_timeout.as_ref(),
                "30s",
                false,
            )?,
        })
    }

    fn oauth(&mut self, raw: RawOAuth) -> Result<OAuthConfig, ConfigError> {
        let token_url = match &raw.token_url {
            Some(url) => self.url("gis.oauth.token_url", url)?,
            None => return Err(self.missing("gis.oauth.token_url", "")),
        };
        let client_id = match raw.client_id {
            Some(id) if id.get_ref().trim().is_empty() => {
                return Err(self.ctx.at(
                    id.span(),
                    "`gis.oauth.client_id` must not be empty".to_owned(),
                ))
            }
            Some(id) => id.into_inner(),
            None => return Err(self.missing("gis.oauth.client_id", "")),
        };
        let client_secret = self
            .secret(SecretSource {
                key: "gis.oauth.client_secret",
                env_name: ENV_GIS_CLIENT_SECRET,
                inline: raw.client_secret.as_ref(),
                file: raw.client_secret_file.as_ref(),
            })?
            .ok_or_else(|| {
                self.missing(
                    "gis.oauth.client_secret",
                    &format!(
                        " (or `gis.oauth.client_secret_file`, or env {ENV_GIS_CLIENT_SECRET})"
                    ),
                )
            })?;
        let refresh_token = self
            .secret(SecretSource {
                key: "gis.oauth.refresh_token",
                env_name: ENV_GIS_REFRESH_TOKEN,
                inline: raw.refresh_token.as_ref(),
                file: raw.refresh_token_file.as_ref(),
            })?
            .ok_or_else(|| {
                self.missing(
                    "gis.oauth.refresh_token",
                    &format!(
                        " (or `gis.oauth.refresh_token_file`, or env {ENV_GIS_REFRESH_TOKEN})"
                    ),
                )
            })?;
        Ok(OAuthConfig {
            token_url,
            client_id,
            client_secret,
            refresh_token,
        })
    }

    fn customerio(&mut self, raw: RawCio) -> Result<CioConfig, ConfigError> {
        let site_id = match raw.site_id {
            Some(id) if id.get_ref().trim().is_empty() => {
                return Err(self.ctx.at(
                    id.span(),
                    "`customerio.site_id` must not be empty".to_owned(),
                ))
            }
            Some(id) => id.into_inner(),
            None => return Err(self.missing("customerio.site_id", "")),
        };
        let api_key = self
            .secret(SecretSource {
                key: "customerio.api_key",
                env_name: ENV_CIO_API_KEY,
                inline: raw.api_key.as_ref(),
                file: raw.api_key_file.as_ref(),
            })?
            .ok_or_else(|| {
                self.missing(
                    "customerio.api_key",
                    &format!(" (or `customerio.api_key_file`, or env {ENV_CIO_API_KEY})"),
                )
            })?;
        let region = self.choice(
            "customerio.region",
            raw.region.as_ref(),
            &[("us", Region::Us), ("eu", Region::Eu)],
            Region::Us,
        )?;
        let track_url = raw
            .track_url
            .as_ref()
            .map(|url| self.url("customerio.track_url", url))
            .transpose()?;
        let api = self.choice(
            "customerio.api",
            raw.api.as_ref(),
            &[("batch", CioApi::Batch), ("v1", CioApi::V1)],
            CioApi::Batch,
        )?;
        let max_requests_per_second = match raw.max_requests_per_second {
            Some(rate) if *rate.get_ref() == 0 => {
                return Err(self.ctx.at(
                    rate.span(),
                    "`customerio.max_requests_per_second` must be at least 1".to_owned(),
                ))
            }
            Some(rate) => rate.into_inner(),
            None => 100,
        };
        Ok(CioConfig {
            site_id,
            api_key,
            region,
            track_url,
            api,
            max_requests_per_second,
            request_timeout: self.duration(
                "customerio.request_timeout",
                raw.request_timeout.as_ref(),
                "30s",
                false,
            )?,
        })
    }

    fn missing(&self, key: &str, alternatives: &str) -> ConfigError {
        self.ctx
            .whole(format!("missing required key `{key}`{alternatives}"))
    }

    /// Resolves one secret: env, else `*_file`, else inline; `None` when none is given.
    fn secret(&mut self, source: SecretSource<'_>) -> Result<Option<Secret>, ConfigError> {
        if source.inline.is_some() {
            self.inline_secrets.push(source.key);
        }
        if let Some(value) = (self.env)(source.env_name) {
            let value = value.trim_end_matches(['\r', '\n']);
            // An empty variable is treated as unset, as shells make that easy to do by accident.
            if !value.is_empty() {
                return Ok(Some(Secret::new(value)));
            }
        }
        if let Some(file) = source.file {
            let file_key = format!("{}_file", source.key);
            let path = file.get_ref();
            let contents = std::fs::read_to_string(path).map_err(|io| ConfigError::SecretFile {
                location: self.ctx.location_at(file.span().start),
                key: file_key.clone(),
                file: path.clone(),
                source: io,
            })?;
            let value = contents.trim_end_matches(['\r', '\n']);
            if value.is_empty() {
                return Err(self.ctx.at(
                    file.span(),
                    format!("`{file_key}`: {} is empty", path.display()),
                ));
            }
            if readable_by_others(path) {
                self.warnings.push(format!(
                    "{} (`{file_key}`) is readable by group or others; chmod 600 it",
                    path.display()
                ));
            }
            return Ok(Some(Secret::new(value)));
        }
        match source.inline {
            Some(inline) if inline.get_ref().is_empty() => Err(self
                .ctx
                .at(inline.span(), format!("`{}` must not be empty", source.key))),
            Some(inline) => Ok(Some(Secret::new(inline.get_ref().clone()))),
            None => Ok(None),
        }
    }

    /// A URL that must be `https://`, or `http://` on a loopback host.
    fn url(&self, key: &str, value: &Spanned<String>) -> Result<String, ConfigError> {
        let text = value.get_ref();
        let url = reqwest::Url::parse(text).map_err(|err| {
            self.ctx
                .at(value.span(), format!("`{key}` is not a valid URL: {err}"))
        })?;
        let host_ok = url.host_str().is_some_and(|host| !host.is_empty());
        let secure = match url.scheme() {
            "https" => true,
            "http" => is_loopback_host(url.host_str().unwrap_or_default()),
            _ => false,
        };
        if !host_ok || !secure {
            return Err(self.ctx.at(
                value.span(),
                format!("`{key}` must be https:// (loopback hosts may use http://)"),
            ));
        }
        Ok(text.clone())
    }

    /// A humane duration (`"90s"`, `"24h"`), or `default` when absent.
    fn duration(
        &self,
        key: &str,
        value: Option<&Spanned<String>>,
        default: &str,
        allow_zero: bool,
    ) -> Result<Duration, ConfigError> {
        let Some(value) = value else {
            return Ok(humantime::parse_duration(default)
                .expect("the built-in defaults are valid durations"));
        };
        let parsed = humantime::parse_duration(value.get_ref().trim()).map_err(|err| {
            self.ctx.at(
                value.span(),
                format!(
                    "`{key}`: invalid duration {:?} ({err}); write it like \"90s\", \"4m\" or \"24h\"",
                    value.get_ref()
                ),
            )
        })?;
        if parsed.is_zero() && !allow_zero {
            return Err(self
                .ctx
                .at(value.span(), format!("`{key}` must be longer than zero")));
        }
        Ok(parsed)
    }

    /// One of a fixed set of strings.
    fn choice<T: Copy>(
        &self,
        key: &str,
        value: Option<&Spanned<String>>,
        options: &[(&str, T)],
        default: T,
    ) -> Result<T, ConfigError> {
        let Some(value) = value else {
            return Ok(default);
        };
        options
            .iter()
            .find(|(name, _)| *name == value.get_ref())
            .map(|(_, choice)| *choice)
            .ok_or_else(|| {
                let allowed: Vec<String> = options
                    .iter()
                    .map(|(name, _)| format!("{name:?}"))
                    .collect();
                self.ctx.at(
                    value.span(),
                    format!(
                        "`{key}` must be one of {} (found {:?})",
                        allowed.join(", "),
                        value.get_ref()
                    ),
                )
            })
    }

    /// A share between 0 and 1 (default 0.5).
    fn share(&self, key: &str, value: Option<&Spanned<f64>>) -> Result<f64, ConfigError> {
        let Some(value) = value else {
            return Ok(0.5);
        };
        let share = *value.get_ref();
        if !(0.0..=1.0).contains(&share) {
            return Err(self.ctx.at(
                value.span(),
                format!("`{key}` must be between 0 and 1 (found {share})"),
            ));
        }
        Ok(share)
    }

    /// `log.level`: a level name, or an EnvFilter directive list such as `ciosync=debug,warn`.
    fn log_level(&self, value: Option<&Spanned<String>>) -> Result<String, ConfigError> {
        const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
        let Some(value) = value else {
            return Ok("warn".to_owned());
        };
        let level = value.get_ref().trim();
        let valid = if level.contains(['=', ',']) {
            tracing_subscriber::EnvFilter::builder()
                .parse(level)
                .is_ok()
        } else {
            LEVELS.iter().any(|known| known.eq_ignore_ascii_case(level))
        };
        if !valid {
            return Err(self.ctx.at(
                value.span(),
                format!(
                    "`log.level` must be one of \"trace\", \"debug\", \"info\", \"warn\", \"error\", \
                     \"off\" or an EnvFilter directive such as \"ciosync=debug\" (found {:?})",
                    value.get_ref()
                ),
            ));
        }
        Ok(level.to_owned())
    }
}

/// `localhost`, `127.0.0.0/8` or `::1`.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    const MINIMAL: &str = r#"
[gis]
home_lcs = [1337]
access_token = "gis-inline-token"

[customerio]
site_id = "site-1"
api_key = "cio-inline-key"
"#;

    /// Writes `text` as a config file with `mode`, returning its dir (kept alive) and path.
    fn write_config(text: &str, mode: u32) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).expect("write config");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        (dir, path)
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn load_text(text: &str) -> Result<Loaded, ConfigError> {
        let (_dir, path) = write_config(text, 0o600);
        load(&path, &no_env)
    }

    fn error_text(text: &str) -> String {
        load_text(text)
            .expect_err("config must be refused")
            .to_string()
    }

    #[test]
    fn example_file_loads_with_every_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let env = |name: &str| match name {
            ENV_GIS_ACCESS_TOKEN => Some("env-gis".to_owned()),
            ENV_CIO_API_KEY => Some("env-cio".to_owned()),
            _ => None,
        };
        let loaded = load(&path, &env).expect("the example config loads");
        let config = loaded.config;
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(config.gis.endpoint, DEFAULT_GIS_ENDPOINT);
        assert_eq!(config.gis.home_lcs, vec![1337]);
        assert!(matches!(&config.gis.auth, GisAuth::Token(t) if t.expose() == "env-gis"));
        assert_eq!(config.gis.page_size, 200);
        assert_eq!(config.gis.full_sync_every, Duration::from_secs(24 * 3600));
        assert_eq!(config.gis.request_timeout, Duration::from_secs(30));
        assert_eq!(config.customerio.site_id, "...");
        assert_eq!(config.customerio.api_key.expose(), "env-cio");
        assert_eq!(config.customerio.region, Region::Us);
        assert_eq!(config.customerio.api, CioApi::Batch);
        assert_eq!(config.customerio.max_requests_per_second, 100);
        assert_eq!(config.customerio.base_url(), "https://track.customer.io");
        assert_eq!(config.events.programme_name, ProgrammeName::ShortName);
        assert_eq!(config.events.late_events, LateEvents::TrueTime);
        assert_eq!(config.log.level, "warn");
        assert_eq!(config.log.format, LogFormat::Text);
        assert_eq!(config.safety.time_budget, Duration::from_secs(240));
        assert_eq!(config.safety.max_event_share, 0.5);
        assert_eq!(config.safety.min_people_share, 0.5);
    }

    #[test]
    fn minimal_file_gets_the_documented_defaults() {
        let config = load_text(MINIMAL).expect("minimal config loads").config;
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/ciosync"));
        assert_eq!(config.gis.page_size, 200);
        assert_eq!(config.safety.time_budget, Duration::from_secs(240));
        assert_eq!(config.customerio.request_timeout, Duration::from_secs(30));
        assert!(config.monitoring.ping_url.is_none());
    }

    #[test]
    fn unknown_key_names_key_file_and_line() {
        let text = "[gis]\nhome_lcs = [1]\naccess_token = \"t\"\n\n\n\npage_sise = 10\n";
        let (_dir, path) = write_config(text, 0o600);
        let err = load(&path, &no_env).expect_err("unknown key refused");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "{}:7: unknown key `gis.page_sise`",
                path.display()
            )),
            "{message}"
        );
        let top = error_text("bogus = 1\n[gis]\nhome_lcs = [1]\n");
        assert!(top.contains(":1: unknown key `bogus`"), "{top}");
        let nested = error_text(
            "[gis]\nhome_lcs = [1]\n[gis.oauth]\ntoken_url = \"https://a\"\nclient_ids = \"x\"\n",
        );
        assert!(
            nested.contains(":5: unknown key `gis.oauth.client_ids`"),
            "{nested}"
        );
        let table = error_text("[gis]\nhome_lcs = [1]\n[customerio]\nsite_id = \"s\"\n[monitor]\n");
        assert!(table.contains(":5: unknown key `monitor`"), "{table}");
        let subtable = error_text("[gis]\nhome_lcs = [1]\n[gis.oath]\ntoken_url = \"https://a\"\n");
        assert!(
            subtable.contains(":3: unknown key `gis.oath`"),
            "{subtable}"
        );
        let dotted = error_text("data_dir = \"/tmp/x\"\ngis.page_sise = 3\n");
        assert!(
            dotted.contains(":2: unknown key `gis.page_sise`"),
            "{dotted}"
        );
    }

    #[test]
    fn wrong_type_names_the_key_and_line() {
        let message = error_text("[gis]\nhome_lcs = [1]\npage_size = \"big\"\n");
        assert!(message.contains(":3: `gis.page_size`"), "{message}");
    }

    #[test]
    fn missing_required_keys_are_named() {
        let cases = [
            ("[customerio]\nsite_id = \"s\"\napi_key = \"k\"\n", "`gis.home_lcs`"),
            ("[gis]\nhome_lcs = [1]\n[customerio]\nsite_id = \"s\"\napi_key = \"k\"\n", "gis.access_token"),
            ("[gis]\nhome_lcs = [1]\naccess_token = \"t\"\n[customerio]\napi_key = \"k\"\n", "`customerio.site_id`"),
            ("[gis]\nhome_lcs = [1]\naccess_token = \"t\"\n[customerio]\nsite_id = \"s\"\n", "`customerio.api_key`"),
            (
                "[gis]\nhome_lcs = [1]\n[gis.oauth]\ntoken_url = \"https://auth.example/t\"\nclient_id = \"c\"\nclient_secret = \"s\"\n[customerio]\nsite_id = \"s\"\napi_key = \"k\"\n",
                "`gis.oauth.refresh_token`",
            ),
        ];
        for (text, key) in cases {
            let message = error_text(text);
            assert!(
                message.contains("missing") && message.contains(key),
                "{key}: {message}"
            );
        }
        let empty = error_text("[gis]\nhome_lcs = []\n");
        assert!(empty.contains(":2: `gis.home_lcs`"), "{empty}");
    }

    #[test]
    fn oauth_table_resolves_with_env_secrets() {
        let text = "[gis]\nhome_lcs = [1]\n[gis.oauth]\ntoken_url = \"https://auth.example/oauth/token\"\nclient_id = \"cid\"\nclient_secret_file = \"/nonexistent/secret\"\n[customerio]\nsite_id = \"s\"\napi_key = \"k\"\n";
        let (_dir, path) = write_config(text, 0o600);
        let env = |name: &str| match name {
            ENV_GIS_CLIENT_SECRET => Some("env-secret".to_owned()),
            ENV_GIS_REFRESH_TOKEN => Some("env-refresh\n".to_owned()),
            _ => None,
        };
        let config = load(&path, &env).expect("oauth config loads").config;
        let GisAuth::OAuth(oauth) = config.gis.auth else {
            panic!("expected OAuth");
        };
        assert_eq!(oauth.client_id, "cid");
        // The env value shadows the file, which is therefore never read.
        assert_eq!(oauth.client_secret.expose(), "env-secret");
        assert_eq!(oauth.refresh_token.expose(), "env-refresh");
    }

    #[test]
    fn a_token_beside_the_oauth_table_is_refused() {
        let message = error_text("[gis]\nhome_lcs = [1]\naccess_token = \"t\"\n[gis.oauth]\ntoken_url = \"https://a.example/t\"\n");
        assert!(
            message.contains(":3: `gis.access_token` and [gis.oauth]"),
            "{message}"
        );
    }

    #[test]
    fn plain_http_is_refused_except_on_loopback() {
        let with_endpoint =
            |url: &str| MINIMAL.replace("[gis]\n", &format!("[gis]\nendpoint = \"{url}\"\n"));
        let message = error_text(&with_endpoint("http://gis.example.org/graphql"));
        assert!(
            message
                .contains(":3: `gis.endpoint` must be https:// (loopback hosts may use http://)"),
            "{message}"
        );
        for url in [
            "http://127.0.0.1:8080/graphql",
            "http://127.5.0.1/g",
            "http://[::1]:9/g",
            "http://localhost/g",
            "https://gis.example.org/g",
        ] {
            let config = load_text(&with_endpoint(url))
                .expect("allowed endpoint")
                .config;
            assert_eq!(config.gis.endpoint, url);
        }
        let track = error_text(&format!("{MINIMAL}track_url = \"http://track.example\"\n"));
        assert!(
            track.contains("`customerio.track_url` must be https://"),
            "{track}"
        );
        let ping = error_text(&format!(
            "{MINIMAL}[monitoring]\nping_url = \"http://hc-ping.com/x\"\n"
        ));
        assert!(
            ping.contains(":10: `monitoring.ping_url` must be https://"),
            "{ping}"
        );
        let garbage = error_text(&with_endpoint("not a url"));
        assert!(
            garbage.contains("`gis.endpoint` is not a valid URL"),
            "{garbage}"
        );
    }

    #[test]
    fn env_wins_over_file_wins_over_inline() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key_file = dir.path().join("cio-key");
        std::fs::write(&key_file, "file-key\n").expect("write key");
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let text = MINIMAL.replace(
            "api_key = \"cio-inline-key\"",
            &format!(
                "api_key = \"cio-inline-key\"\napi_key_file = \"{}\"",
                key_file.display()
            ),
        );
        let (_cfg_dir, path) = write_config(&text, 0o600);

        let from_file = load(&path, &no_env).expect("loads").config;
        assert_eq!(
            from_file.customerio.api_key.expose(),
            "file-key",
            "file beats inline, newline trimmed"
        );

        let env = |name: &str| (name == ENV_CIO_API_KEY).then(|| "env-key".to_owned());
        let from_env = load(&path, &env).expect("loads").config;
        assert_eq!(from_env.customerio.api_key.expose(), "env-key");

        let inline_only = load_text(MINIMAL).expect("loads").config;
        assert_eq!(inline_only.customerio.api_key.expose(), "cio-inline-key");
    }

    #[test]
    fn unreadable_secret_file_names_key_and_path() {
        let text = MINIMAL.replace(
            "access_token = \"gis-inline-token\"",
            "access_token_file = \"/nonexistent/ciosync/gis-token\"",
        );
        let (_dir, path) = write_config(&text, 0o600);
        let err = load(&path, &no_env).expect_err("missing secret file refused");
        let message = crate::error::chain(&err);
        assert!(
            message.contains(&format!("{}:4:", path.display())),
            "{message}"
        );
        assert!(message.contains("`gis.access_token_file`"), "{message}");
        assert!(
            message.contains("/nonexistent/ciosync/gis-token"),
            "{message}"
        );
        let top: crate::error::Error = err.into();
        assert_eq!(top.code(), crate::error::code::CONFIG);
        let chain = crate::error::chain(&top);
        assert!(chain.contains("No such file"), "{chain}");
    }

    #[test]
    fn bad_durations_are_refused_with_their_line() {
        let message =
            error_text(&MINIMAL.replace("[gis]\n", "[gis]\nfull_sync_every = \"soon\"\n"));
        assert!(
            message.contains(":3: `gis.full_sync_every`: invalid duration \"soon\""),
            "{message}"
        );
        let zero = error_text(&format!("{MINIMAL}[safety]\ntime_budget = \"0s\"\n"));
        assert!(
            zero.contains("`safety.time_budget` must be longer than zero"),
            "{zero}"
        );
        let ok = load_text(&format!("{MINIMAL}[safety]\ntime_budget = \"90s\"\n")).expect("loads");
        assert_eq!(ok.config.safety.time_budget, Duration::from_secs(90));
    }

    #[test]
    fn bad_enum_values_are_refused() {
        let cases = [
            (
                "region = \"asia\"",
                "`customerio.region` must be one of \"us\", \"eu\" (found \"asia\")",
            ),
            (
                "api = \"v2\"",
                "`customerio.api` must be one of \"batch\", \"v1\"",
            ),
        ];
        for (line, expected) in cases {
            let message = error_text(&format!("{MINIMAL}{line}\n"));
            assert!(message.contains(expected), "{message}");
        }
        let events = error_text(&format!("{MINIMAL}[events]\nlate_events = \"later\"\n"));
        assert!(
            events.contains("`events.late_events` must be one of \"true_time\", \"now\""),
            "{events}"
        );
        let programme = error_text(&format!("{MINIMAL}[events]\nprogramme_name = \"long\"\n"));
        assert!(programme.contains("`events.programme_name`"), "{programme}");
        let format = error_text(&format!("{MINIMAL}[log]\nformat = \"xml\"\n"));
        assert!(
            format.contains("`log.format` must be one of \"text\", \"json\""),
            "{format}"
        );
        let level = error_text(&format!("{MINIMAL}[log]\nlevel = \"loud\"\n"));
        assert!(level.contains(":10: `log.level`"), "{level}");
        let directive =
            load_text(&format!("{MINIMAL}[log]\nlevel = \"ciosync=debug,warn\"\n")).expect("loads");
        assert_eq!(directive.config.log.level, "ciosync=debug,warn");
        let share = error_text(&format!("{MINIMAL}[safety]\nmax_event_share = 1.5\n"));
        assert!(
            share.contains("`safety.max_event_share` must be between 0 and 1"),
            "{share}"
        );
        let eu = load_text(&format!("{MINIMAL}region = \"eu\"\n"))
            .expect("loads")
            .config;
        assert_eq!(eu.customerio.base_url(), "https://track-eu.customer.io");
    }

    #[test]
    fn debug_output_and_errors_hold_no_secret() {
        let config = load_text(MINIMAL).expect("loads").config;
        let debug = format!("{config:?}");
        assert!(!debug.contains("gis-inline-token"), "{debug}");
        assert!(!debug.contains("cio-inline-key"), "{debug}");
        assert!(debug.contains("<redacted>"));
        let err = error_text(&format!("{MINIMAL}region = \"mars\"\n"));
        assert!(
            !err.contains("cio-inline-key") && !err.contains("gis-inline-token"),
            "{err}"
        );
    }

    #[test]
    fn insecure_permissions_are_warned_about() {
        let (_dir, open_path) = write_config(MINIMAL, 0o644);
        let warnings = load(&open_path, &no_env).expect("loads").warnings;
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("inline secrets") && warnings[0].contains("`customerio.api_key`")
        );
        assert!(!warnings[0].contains("cio-inline-key"));

        let (_dir, closed_path) = write_config(MINIMAL, 0o600);
        assert!(load(&closed_path, &no_env)
            .expect("loads")
            .warnings
            .is_empty());

        let dir = tempfile::tempdir().expect("temp dir");
        let secrets = HashMap::from([("gis", 0o640), ("cio", 0o600)]);
        for (name, mode) in &secrets {
            let file = dir.path().join(name);
            std::fs::write(&file, "s3cret").expect("write secret");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode)).expect("chmod");
        }
        let text = format!(
            "[gis]\nhome_lcs = [1]\naccess_token_file = \"{}\"\n[customerio]\nsite_id = \"s\"\napi_key_file = \"{}\"\n",
            dir.path().join("gis").display(),
            dir.path().join("cio").display()
        );
        // Group-readable config without inline secrets is fine; the 0640 token file is not.
        let (_cfg, path) = write_config(&text, 0o644);
        let warnings = load(&path, &no_env).expect("loads").warnings;
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("`gis.access_token_file`"),
            "{warnings:?}"
        );
        assert!(!warnings[0].contains("s3cret"));
    }

    #[test]
    fn unreadable_config_file_is_a_config_error() {
        let err = load(Path::new("/nonexistent/ciosync.toml"), &no_env).expect_err("missing file");
        let top: crate::error::Error = err.into();
        assert_eq!(top.code(), crate::error::code::CONFIG);
        assert!(
            top.to_string().contains("/nonexistent/ciosync.toml"),
            "{top}"
        );
    }

    #[test]
    fn default_path_is_etc() {
        assert_eq!(
            default_config_path(),
            PathBuf::from("/etc/ciosync/config.toml")
        );
    }
}

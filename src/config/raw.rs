//! The file as written: what the user wrote, checked only for shape.
//!
//! These structs mirror the TOML schema of SPEC 2 key for key. Deserializing into them refuses
//! unknown keys (`deny_unknown_fields`) and wrong types, and nothing else: ranges, choices,
//! URLs, durations, secrets and defaults are `resolve`'s business.
//!
//! Every key is optional here, so that a missing required key is reported by `resolve` under
//! its full name (`customerio.site_id`) rather than by serde's bare field name. Values that
//! can fail validation are `Spanned`, so the error can give their line.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawConfig {
    pub data_dir: Option<Spanned<PathBuf>>,
    pub ca_file: Option<Spanned<PathBuf>>,
    pub gis: RawGis,
    pub customerio: RawCio,
    pub events: RawEvents,
    pub log: RawLog,
    pub monitoring: RawMonitoring,
    pub safety: RawSafety,
}

/// `[gis]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawGis {
    pub endpoint: Option<Spanned<String>>,
    pub home_lcs: Option<Spanned<Vec<u64>>>,
    pub access_token: Option<Spanned<String>>,
    pub access_token_file: Option<Spanned<PathBuf>>,
    pub page_size: Option<Spanned<u32>>,
    pub full_sync_every: Option<Spanned<String>>,
    pub request_timeout: Option<Spanned<String>>,
    pub oauth: Option<RawOAuth>,
}

/// `[gis.oauth]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawOAuth {
    pub token_url: Option<Spanned<String>>,
    pub client_id: Option<Spanned<String>>,
    pub client_secret: Option<Spanned<String>>,
    pub client_secret_file: Option<Spanned<PathBuf>>,
    pub refresh_token: Option<Spanned<String>>,
    pub refresh_token_file: Option<Spanned<PathBuf>>,
}

/// `[customerio]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCio {
    pub site_id: Option<Spanned<String>>,
    pub api_key: Option<Spanned<String>>,
    pub api_key_file: Option<Spanned<PathBuf>>,
    pub region: Option<Spanned<String>>,
    pub track_url: Option<Spanned<String>>,
    pub api: Option<Spanned<String>>,
    pub max_requests_per_second: Option<Spanned<u32>>,
    pub request_timeout: Option<Spanned<String>>,
}

/// `[events]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawEvents {
    pub programme_name: Option<Spanned<String>>,
    pub late_events: Option<Spanned<String>>,
}

/// `[log]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLog {
    pub level: Option<Spanned<String>>,
    pub format: Option<Spanned<String>>,
    pub dir: Option<PathBuf>,
    pub keep_days: Option<Spanned<u32>>,
}

/// `[monitoring]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawMonitoring {
    pub textfile: Option<PathBuf>,
    pub ping_url: Option<Spanned<String>>,
}

/// `[safety]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSafety {
    pub time_budget: Option<Spanned<String>>,
    pub max_event_share: Option<Spanned<f64>>,
    pub min_people_share: Option<Spanned<f64>>,
}

//! From what the user wrote to the [`Config`] the crate runs on.
//!
//! This owns the rules of SPEC 2 that go beyond shape: required keys, defaults (from
//! `defaults`, never a literal here), `https://` URLs except on loopback hosts, humane
//! durations, fixed choices, shares between 0 and 1, the log level, and secrets, which come
//! from the environment, else a `*_file`, else the file itself.
//!
//! Invariants: the environment is read only through the injected `env`, so tests are
//! hermetic; a `*_file` shadowed by the environment is never opened; no error or warning
//! carries a secret value, only the key and the path it came from.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::defaults::*;
use super::locate::SourceFile;
use super::raw::{RawCio, RawConfig, RawGis, RawOAuth};
use super::types::*;
use super::{
    ConfigError, Loaded, ENV_CIO_API_KEY, ENV_GIS_ACCESS_TOKEN, ENV_GIS_CLIENT_SECRET,
    ENV_GIS_REFRESH_TOKEN,
};

/// Builds the [`Config`] from the raw file, with the warnings worth a cron mail.
///
/// # Errors
/// [`ConfigError`] for a missing required key, an invalid value, or a secret file that cannot
/// be read.
pub(super) fn resolve(
    file: &SourceFile<'_>,
    raw: RawConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let mut resolver = Resolver {
        file,
        env,
        warnings: Vec::new(),
        inline_secrets: Vec::new(),
    };
    let config = resolver.build(raw)?;
    let mut warnings = resolver.warnings;
    if !resolver.inline_secrets.is_empty() && readable_by_others(file.path) {
        warnings.push(format!(
            "{} holds inline secrets ({}) and is readable by group or others; \
             chmod 600 it, or move the secrets to `*_file` files or the environment",
            file.path.display(),
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
    file: &'a SourceFile<'a>,
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
            return Err(self.file.whole("`data_dir` must not be empty".to_owned()));
        }
        let ca_file = raw
            .ca_file
            .as_ref()
            .map(|file| self.ca_file(file))
            .transpose()?;
        let gis = self.gis(raw.gis)?;
        let customerio = self.customerio(raw.customerio)?;
        let events = EventsConfig {
            programme_name: self.choice(
                "events.programme_name",
                raw.events.programme_name.as_ref(),
                &ProgrammeName::ALL,
                ProgrammeName::name,
                DEFAULT_PROGRAMME_NAME,
            )?,
            late_events: self.choice(
                "events.late_events",
                raw.events.late_events.as_ref(),
                &LateEvents::ALL,
                LateEvents::name,
                DEFAULT_LATE_EVENTS,
            )?,
        };
        let log = LogConfig {
            level: self.log_level(raw.log.level.as_ref())?,
            format: self.choice(
                "log.format",
                raw.log.format.as_ref(),
                &LogFormat::ALL,
                LogFormat::name,
                DEFAULT_LOG_FORMAT,
            )?,
            dir: raw.log.dir,
            keep_days: self.at_least_one(
                "log.keep_days",
                raw.log.keep_days,
                DEFAULT_LOG_KEEP_DAYS,
            )?,
        };
        let monitoring = MonitoringConfig {
            textfile: raw.monitoring.textfile,
            ping_url: self.optional_url("monitoring.ping_url", raw.monitoring.ping_url.as_ref())?,
        };
        let safety = SafetyConfig {
            time_budget: self.duration(
                "safety.time_budget",
                raw.safety.time_budget.as_ref(),
                DEFAULT_TIME_BUDGET,
                false,
            )?,
            max_event_share: self.share(
                "safety.max_event_share",
                raw.safety.max_event_share.as_ref(),
                DEFAULT_MAX_EVENT_SHARE,
            )?,
            min_people_share: self.share(
                "safety.min_people_share",
                raw.safety.min_people_share.as_ref(),
                DEFAULT_MIN_PEOPLE_SHARE,
            )?,
        };
        Ok(Config {
            path: self.file.path.to_owned(),
            data_dir,
            ca_file,
            gis,
            customerio,
            events,
            log,
            monitoring,
            safety,
        })
    }

    fn gis(&mut self, raw: RawGis) -> Result<GisConfig, ConfigError> {
        let endpoint = self
            .optional_url("gis.endpoint", raw.endpoint.as_ref())?
            .unwrap_or_else(|| DEFAULT_GIS_ENDPOINT.to_owned());
        let home_lcs =
            match raw.home_lcs {
                None => return Err(self.file.whole(
                    "missing required key `gis.home_lcs` (the ids of the LCs whose people to sync)"
                        .to_owned(),
                )),
                Some(lcs) if lcs.get_ref().is_empty() => {
                    return Err(self.file.at(
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
                    return Err(self.file.at(
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
                    return Err(self.file.whole(format!(
                        "missing GIS credential: set `gis.access_token_file`, `gis.access_token` \
                         or env {ENV_GIS_ACCESS_TOKEN}, or the [gis.oauth] table"
                    )))
                }
            },
        };
        Ok(GisConfig {
            endpoint,
            home_lcs,
            auth,
            page_size: self.at_least_one("gis.page_size", raw.page_size, DEFAULT_PAGE_SIZE)?,
            full_sync_every: self.duration(
                "gis.full_sync_every",
                raw.full_sync_every.as_ref(),
                DEFAULT_FULL_SYNC_EVERY,
                true,
            )?,
            request_timeout: self.duration(
                "gis.request_timeout",
                raw.request_timeout.as_ref(),
                DEFAULT_GIS_REQUEST_TIMEOUT,
                false,
            )?,
        })
    }

    fn oauth(&mut self, raw: RawOAuth) -> Result<OAuthConfig, ConfigError> {
        let token_url = match &raw.token_url {
            Some(url) => self.url("gis.oauth.token_url", url)?,
            None => return Err(self.missing("gis.oauth.token_url", "")),
        };
        Ok(OAuthConfig {
            token_url,
            client_id: self.required_text("gis.oauth.client_id", raw.client_id)?,
            client_secret: self.required_secret(SecretSource {
                key: "gis.oauth.client_secret",
                env_name: ENV_GIS_CLIENT_SECRET,
                inline: raw.client_secret.as_ref(),
                file: raw.client_secret_file.as_ref(),
            })?,
            refresh_token: self.required_secret(SecretSource {
                key: "gis.oauth.refresh_token",
                env_name: ENV_GIS_REFRESH_TOKEN,
                inline: raw.refresh_token.as_ref(),
                file: raw.refresh_token_file.as_ref(),
            })?,
        })
    }

    fn customerio(&mut self, raw: RawCio) -> Result<CioConfig, ConfigError> {
        Ok(CioConfig {
            site_id: self.required_text("customerio.site_id", raw.site_id)?,
            api_key: self.required_secret(SecretSource {
                key: "customerio.api_key",
                env_name: ENV_CIO_API_KEY,
                inline: raw.api_key.as_ref(),
                file: raw.api_key_file.as_ref(),
            })?,
            region: self.choice(
                "customerio.region",
                raw.region.as_ref(),
                &Region::ALL,
                Region::name,
                DEFAULT_REGION,
            )?,
            track_url: self.optional_url("customerio.track_url", raw.track_url.as_ref())?,
            api: self.choice(
                "customerio.api",
                raw.api.as_ref(),
                &CioApi::ALL,
                CioApi::name,
                DEFAULT_CIO_API,
            )?,
            max_requests_per_second: self.at_least_one(
                "customerio.max_requests_per_second",
                raw.max_requests_per_second,
                DEFAULT_MAX_REQUESTS_PER_SECOND,
            )?,
            request_timeout: self.duration(
                "customerio.request_timeout",
                raw.request_timeout.as_ref(),
                DEFAULT_CIO_REQUEST_TIMEOUT,
                false,
            )?,
        })
    }

    /// `ca_file`: a readable PEM file holding at least one certificate.
    fn ca_file(&self, file: &Spanned<PathBuf>) -> Result<CaFile, ConfigError> {
        let path = file.get_ref();
        let bytes = std::fs::read(path).map_err(|err| {
            self.file.at(
                file.span(),
                format!("`ca_file`: cannot read {}: {err}", path.display()),
            )
        })?;
        let certificates = reqwest::Certificate::from_pem_bundle(&bytes)
            .ok()
            .filter(|certificates| !certificates.is_empty())
            .ok_or_else(|| {
                self.file.at(
                    file.span(),
                    format!(
                        "`ca_file`: {} holds no PEM certificate \
                         (expected \"-----BEGIN CERTIFICATE-----\" blocks)",
                        path.display()
                    ),
                )
            })?;
        Ok(CaFile {
            path: path.clone(),
            certificates,
        })
    }

    fn missing(&self, key: &str, alternatives: &str) -> ConfigError {
        self.file
            .whole(format!("missing required key `{key}`{alternatives}"))
    }

    /// A required text that must not be blank.
    fn required_text(
        &self,
        key: &str,
        value: Option<Spanned<String>>,
    ) -> Result<String, ConfigError> {
        match value {
            Some(text) if text.get_ref().trim().is_empty() => Err(self
                .file
                .at(text.span(), format!("`{key}` must not be empty"))),
            Some(text) => Ok(text.into_inner()),
            None => Err(self.missing(key, "")),
        }
    }

    /// A required secret: missing from all three sources is an error naming all three.
    fn required_secret(&mut self, source: SecretSource<'_>) -> Result<Secret, ConfigError> {
        let (key, env_name) = (source.key, source.env_name);
        self.secret(source)?
            .ok_or_else(|| self.missing(key, &format!(" (or `{key}_file`, or env {env_name})")))
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
                location: self.file.location_at(file.span().start),
                key: file_key.clone(),
                file: path.clone(),
                source: io,
            })?;
            let value = contents.trim_end_matches(['\r', '\n']);
            if value.is_empty() {
                return Err(self.file.at(
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
                .file
                .at(inline.span(), format!("`{}` must not be empty", source.key))),
            Some(inline) => Ok(Some(Secret::new(inline.get_ref().clone()))),
            None => Ok(None),
        }
    }

    /// [`Self::url`] for a key that may be left out.
    fn optional_url(
        &self,
        key: &str,
        value: Option<&Spanned<String>>,
    ) -> Result<Option<String>, ConfigError> {
        value.map(|url| self.url(key, url)).transpose()
    }

    /// A URL that must be `https://`, or `http://` on a loopback host ([`check_url`]).
    fn url(&self, key: &str, value: &Spanned<String>) -> Result<String, ConfigError> {
        let text = value.get_ref();
        check_url(text)
            .map_err(|problem| self.file.at(value.span(), format!("`{key}` {problem}")))?;
        Ok(text.clone())
    }

    /// A count that must be at least 1.
    fn at_least_one(
        &self,
        key: &str,
        value: Option<Spanned<u32>>,
        default: u32,
    ) -> Result<u32, ConfigError> {
        match value {
            Some(count) if *count.get_ref() == 0 => Err(self
                .file
                .at(count.span(), format!("`{key}` must be at least 1"))),
            Some(count) => Ok(count.into_inner()),
            None => Ok(default),
        }
    }

    /// A humane duration (`"90s"`, `"24h"`), or `default` when absent.
    fn duration(
        &self,
        key: &str,
        value: Option<&Spanned<String>>,
        default: Duration,
        allow_zero: bool,
    ) -> Result<Duration, ConfigError> {
        let Some(value) = value else {
            return Ok(default);
        };
        let parsed = humantime::parse_duration(value.get_ref().trim()).map_err(|err| {
            self.file.at(
                value.span(),
                format!(
                    "`{key}`: invalid duration {:?} ({err}); write it like \"90s\", \"4m\" or \"24h\"",
                    value.get_ref()
                ),
            )
        })?;
        if parsed.is_zero() && !allow_zero {
            return Err(self
                .file
                .at(value.span(), format!("`{key}` must be longer than zero")));
        }
        Ok(parsed)
    }

    /// One of a fixed set of names (`options`, spelled by `name`), or `default` when absent.
    fn choice<T: Copy>(
        &self,
        key: &str,
        value: Option<&Spanned<String>>,
        options: &[T],
        name: fn(T) -> &'static str,
        default: T,
    ) -> Result<T, ConfigError> {
        let Some(value) = value else {
            return Ok(default);
        };
        options
            .iter()
            .copied()
            .find(|option| name(*option) == value.get_ref())
            .ok_or_else(|| {
                let allowed: Vec<String> = options
                    .iter()
                    .map(|option| format!("{:?}", name(*option)))
                    .collect();
                self.file.at(
                    value.span(),
                    format!(
                        "`{key}` must be one of {} (found {:?})",
                        allowed.join(", "),
                        value.get_ref()
                    ),
                )
            })
    }

    /// A share between 0 and 1, or `default` when absent.
    fn share(
        &self,
        key: &str,
        value: Option<&Spanned<f64>>,
        default: f64,
    ) -> Result<f64, ConfigError> {
        let Some(value) = value else {
            return Ok(default);
        };
        let share = *value.get_ref();
        if !(0.0..=1.0).contains(&share) {
            return Err(self.file.at(
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
            return Ok(DEFAULT_LOG_LEVEL.to_owned());
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
            return Err(self.file.at(
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

/// SPEC 2's rule for every URL (`endpoint`, `token_url`, `track_url`, `ping_url`): `https://`,
/// or `http://` on a loopback host. The error says what is wrong, after the name of the key or
/// flag that holds the URL.
///
/// # Errors
/// `is not a valid URL: ...` or `must be https:// (loopback hosts may use http://)`.
pub fn check_url(text: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(text).map_err(|err| format!("is not a valid URL: {err}"))?;
    let host_ok = url.host_str().is_some_and(|host| !host.is_empty());
    let secure = match url.scheme() {
        "https" => true,
        "http" => is_loopback_host(url.host_str().unwrap_or_default()),
        _ => false,
    };
    if !host_ok || !secure {
        return Err("must be https:// (loopback hosts may use http://)".to_owned());
    }
    Ok(())
}

/// `localhost`, `127.0.0.0/8` or `::1`.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

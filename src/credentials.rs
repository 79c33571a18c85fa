//! The GIS credentials (SPEC 2 "OAuth", SPEC 3 "Auth"): the OAuth store
//! `<data_dir>/gis-oauth.json`, and [`gis_client`], the one way a command gets a GIS
//! client with its credentials wired in.
//!
//! GIS rotates the refresh token on every use, so the one in the configuration is only the
//! seed: after the first refresh, the rotated token lives here and is used from then on,
//! until the operator configures a different seed (re-bootstrapping), which then wins. The
//! file records a SHA-256 of the seed it descends from to notice that. It may also cache
//! the current access token until it expires, so a run every five minutes does not burn a
//! refresh each time.
//!
//! Every process sharing the data dir (a run, `check`, a dry run, any command that gets its
//! client from [`gis_client`]) refreshes only under the OAuth refresh lock
//! (`gis-oauth.lock`, [`crate::lock::try_acquire_refresh`]): it re-reads this file under the
//! lock, refreshes, saves, releases. Temp files a killed writer of this file left behind are
//! removed under that lock.
//!
//! Invariants: the file is written atomically and 0600 ([`crate::data_dir::write_atomic`]); the
//! caller saves the rotated refresh token *before* using the new access token, so a crash in
//! between never strands a used-up token; secrets stay [`Secret`] in memory and never appear
//! in `Debug` output or error messages.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::config::{Config, GisAuth, Secret};
use crate::data_dir::{self, DataDirError, OAUTH_FILE, PRIVATE_FILE_MODE};
use crate::gis::{GisClient, GisError, RefreshLock, StoredTokens, TokenStore};
use crate::http::RetryPolicy;
use crate::lock;

/// The format of [`OAUTH_FILE`] this build reads and writes.
pub const OAUTH_VERSION: u32 = 1;
/// A cached access token this close to its expiry is treated as expired: a run should not
/// start a request with a token that dies on the way.
pub const EXPIRY_MARGIN: Duration = Duration::seconds(60);

/// What `gis-oauth.json` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOAuth {
    /// The latest (rotated) refresh token.
    pub refresh_token: Secret,
    /// [`seed_digest`] of the configured seed this token descends from.
    pub seed_sha256: String,
    /// The access token last obtained, if still worth keeping.
    pub access_token: Option<CachedAccessToken>,
}

/// An access token and when it stops working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedAccessToken {
    /// The access token (sent raw in GIS's `Authorization` header).
    pub token: Secret,
    /// When the token endpoint said it expires (`expires_in` after the refresh).
    pub expires_at: DateTime<Utc>,
}

impl StoredOAuth {
    /// The record to save right after a refresh that descended from `seed`.
    pub fn after_refresh(
        seed: &Secret,
        refresh_token: Secret,
        access_token: Option<CachedAccessToken>,
    ) -> Self {
        StoredOAuth {
            refresh_token,
            seed_sha256: seed_digest(seed),
            access_token,
        }
    }

    /// Whether this record descends from the configured `seed` (else the seed wins).
    pub fn descends_from(&self, seed: &Secret) -> bool {
        self.seed_sha256 == seed_digest(seed)
    }

    /// The cached access token, if it descends from `seed` and is good beyond
    /// `now` + [`EXPIRY_MARGIN`].
    pub fn usable_access_token(&self, seed: &Secret, now: DateTime<Utc>) -> Option<&Secret> {
        let cached = self.access_token.as_ref()?;
        (self.descends_from(seed) && cached.expires_at > now + EXPIRY_MARGIN)
            .then_some(&cached.token)
    }
}

/// SHA-256 hex of a seed refresh token: enough to tell seeds apart without storing one.
pub fn seed_digest(seed: &Secret) -> String {
    hex::encode(Sha256::digest(seed.expose().as_bytes()))
}

/// The refresh token to use next: the stored rotated one, unless the configured `seed`
/// changed since (an operator re-bootstrapped), in which case the new seed wins.
pub fn current_refresh_token(stored: Option<&StoredOAuth>, seed: &Secret) -> Secret {
    match stored {
        Some(stored) if stored.descends_from(seed) => stored.refresh_token.clone(),
        _ => seed.clone(),
    }
}

/// `<data_dir>/gis-oauth.json`.
pub fn oauth_path(data_dir: &Path) -> PathBuf {
    data_dir.join(OAUTH_FILE)
}

/// The credential store of one data dir.
#[derive(Debug, Clone)]
pub struct OAuthStore {
    data_dir: PathBuf,
}

impl OAuthStore {
    /// The store in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        OAuthStore {
            data_dir: data_dir.into(),
        }
    }

    /// The credential file.
    pub fn path(&self) -> PathBuf {
        oauth_path(&self.data_dir)
    }

    /// See [`load`].
    ///
    /// # Errors
    /// As [`load`].
    pub fn load(&self) -> Result<Option<StoredOAuth>, DataDirError> {
        load(&self.data_dir)
    }

    /// See [`save`].
    ///
    /// # Errors
    /// As [`save`].
    pub fn save(&self, stored: &StoredOAuth) -> Result<(), DataDirError> {
        save(&self.data_dir, stored)
    }
}

/// Reads `<data_dir>/gis-oauth.json`; `Ok(None)` when no refresh has happened yet.
///
/// # Errors
/// [`DataDirError`] (exit 74) when the file cannot be read, is corrupt or of another version.
/// The file is left untouched.
pub fn load(data_dir: &Path) -> Result<Option<StoredOAuth>, DataDirError> {
    let path = oauth_path(data_dir);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(DataDirError::Io {
                context: format!("cannot read the GIS credential file {}", path.display()),
                source,
            })
        }
    };
    let invalid = |problem: String| {
        DataDirError::Invalid(format!(
            "the GIS credential file {} {problem}. It holds the rotated refresh token: \
             restore it from a backup, or bootstrap a new refresh token, set it as \
             `gis.oauth.refresh_token` (or its `_file`) and remove {}",
            path.display(),
            path.display()
        ))
    };
    // Never quote serde's message for this file: it may echo a fragment of a token.
    let file: OAuthFile = serde_json::from_slice(&bytes).map_err(|err| {
        invalid(if err.is_eof() {
            "is truncated or empty".to_owned()
        } else {
            format!(
                "is corrupt (at line {} column {})",
                err.line(),
                err.column()
            )
        })
    })?;
    if file.version != OAUTH_VERSION {
        return Err(invalid(format!(
            "has format version {}, but this ciosync reads version {OAUTH_VERSION} only",
            file.version
        )));
    }
    let access_token = match (file.access_token, file.access_token_expires_at) {
        (Some(token), Some(expires_at)) => Some(CachedAccessToken {
            token: Secret::new(token),
            expires_at,
        }),
        _ => None,
    };
    Ok(Some(StoredOAuth {
        refresh_token: Secret::new(file.refresh_token),
        seed_sha256: file.seed_sha256,
        access_token,
    }))
}

/// Writes `<data_dir>/gis-oauth.json` atomically, 0600.
///
/// # Errors
/// [`DataDirError::Io`] when the file cannot be written; the previous file stays in place.
pub fn save(data_dir: &Path, stored: &StoredOAuth) -> Result<(), DataDirError> {
    let path = oauth_path(data_dir);
    let file = OAuthFile {
        version: OAUTH_VERSION,
        seed_sha256: stored.seed_sha256.clone(),
        refresh_token: stored.refresh_token.expose().to_owned(),
        access_token: stored
            .access_token
            .as_ref()
            .map(|cached| cached.token.expose().to_owned()),
        access_token_expires_at: stored.access_token.as_ref().map(|cached| cached.expires_at),
    };
    let mut bytes = serde_json::to_vec_pretty(&file).expect("the credential record is plain data");
    bytes.push(b'\n');
    data_dir::write_atomic(&path, &bytes, PRIVATE_FILE_MODE).map_err(|source| DataDirError::Io {
        context: format!("cannot write the GIS credential file {}", path.display()),
        source,
    })
}

/// `gis-oauth.json` as stored.
#[derive(Serialize, Deserialize)]
struct OAuthFile {
    version: u32,
    seed_sha256: String,
    refresh_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_token_expires_at: Option<DateTime<Utc>>,
}

/// A GIS client for `config`, with OAuth tokens kept in `data_dir` (created if missing)
/// and refreshed under its refresh lock (the static token needs no store).
///
/// # Errors
/// When the HTTP client cannot be built, or (OAuth) the data dir cannot be created.
pub fn gis_client(config: &Config, deadline: Option<Instant>) -> Result<GisClient, GisError> {
    let store: Option<Arc<dyn TokenStore>> = match &config.gis.auth {
        GisAuth::OAuth(oauth) => {
            data_dir::ensure(&config.data_dir).map_err(|e| GisError::Persist(e.to_string()))?;
            Some(Arc::new(DataDirTokenStore {
                data_dir: config.data_dir.clone(),
                seed: oauth.refresh_token.clone(),
            }))
        }
        GisAuth::Token(_) => None,
    };
    GisClient::new(&config.gis, store, RetryPolicy::default(), deadline)
}

/// OAuth tokens in `data_dir` (SPEC 2): the rotated refresh token wins over the config's
/// seed until the seed changes.
struct DataDirTokenStore {
    data_dir: PathBuf,
    seed: Secret,
}

impl TokenStore for DataDirTokenStore {
    fn load(&self) -> Result<StoredTokens, String> {
        let stored = load(&self.data_dir).map_err(|e| e.to_string())?;
        let refresh = current_refresh_token(stored.as_ref(), &self.seed);
        let now = Utc::now();
        let live = stored
            .as_ref()
            .filter(|s| s.descends_from(&self.seed))
            .and_then(|s| s.access_token.as_ref())
            .filter(|cached| cached.expires_at > now);
        Ok(StoredTokens {
            refresh_is_seed: refresh == self.seed,
            refresh,
            access: live.map(|cached| cached.token.clone()),
            access_expiring: stored
                .as_ref()
                .and_then(|s| s.usable_access_token(&self.seed, now))
                .is_none(),
        })
    }

    fn try_lock(&self) -> Result<Option<RefreshLock>, String> {
        let path = lock::refresh_lock_path(&self.data_dir);
        match lock::try_acquire_refresh(&self.data_dir) {
            Ok(Some(held)) => {
                // Only a holder of this lock writes the credential file: any temp file of it
                // now is what a writer killed mid-save left behind.
                data_dir::remove_stale_temp_files(&self.data_dir, &[OAUTH_FILE]);
                Ok(Some(Box::new(held)))
            }
            Ok(None) => Ok(None),
            Err(err) => Err(format!("cannot lock {}: {err}", path.display())),
        }
    }

    fn save(
        &self,
        refresh: &Secret,
        access: &Secret,
        expires_in: Option<u64>,
    ) -> Result<(), String> {
        let expires_at = expires_in
            .and_then(|s| i64::try_from(s).ok())
            .map(|s| Utc::now() + Duration::seconds(s));
        let access = expires_at.map(|expires_at| CachedAccessToken {
            token: access.clone(),
            expires_at,
        });
        let stored = StoredOAuth::after_refresh(&self.seed, refresh.clone(), access);
        save(&self.data_dir, &stored).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::os::unix::fs::PermissionsExt;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0)
            .single()
            .expect("valid date")
    }

    fn rotated(seed: &Secret) -> StoredOAuth {
        StoredOAuth::after_refresh(
            seed,
            Secret::new("rotated-refresh-2"),
            Some(CachedAccessToken {
                token: Secret::new("access-abc"),
                expires_at: now() + Duration::hours(2),
            }),
        )
    }

    #[test]
    fn first_run_uses_the_seed() {
        let seed = Secret::new("seed-1");
        assert_eq!(current_refresh_token(None, &seed), seed);
    }

    #[test]
    fn rotated_token_is_used_until_the_seed_changes() {
        let seed = Secret::new("seed-1");
        let stored = rotated(&seed);
        assert_eq!(
            current_refresh_token(Some(&stored), &seed).expose(),
            "rotated-refresh-2"
        );
        let new_seed = Secret::new("seed-2");
        assert_eq!(current_refresh_token(Some(&stored), &new_seed), new_seed);
        assert!(stored.usable_access_token(&new_seed, now()).is_none());
    }

    #[test]
    fn cached_access_token_is_used_until_close_to_expiry() {
        let seed = Secret::new("seed-1");
        let stored = rotated(&seed);
        assert_eq!(
            stored.usable_access_token(&seed, now()).map(Secret::expose),
            Some("access-abc")
        );
        let late = now() + Duration::hours(2) - Duration::seconds(30);
        assert!(stored.usable_access_token(&seed, late).is_none());
    }

    #[test]
    fn store_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = OAuthStore::new(dir.path());
        assert_eq!(store.load().expect("nothing yet"), None);
        let seed = Secret::new("seed-1");
        let stored = rotated(&seed);
        store.save(&stored).expect("save");
        let mode = fs::metadata(store.path())
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load(dir.path()).expect("load"), Some(stored.clone()));

        // A later rotation replaces it; no access token is fine too.
        let next = StoredOAuth::after_refresh(&seed, Secret::new("rotated-refresh-3"), None);
        save(dir.path(), &next).expect("save again");
        let loaded = load(dir.path()).expect("load").expect("present");
        assert_eq!(
            current_refresh_token(Some(&loaded), &seed).expose(),
            "rotated-refresh-3"
        );
        assert_eq!(loaded.access_token, None);
    }

    #[test]
    fn corrupt_file_is_an_error_without_secrets_and_untouched() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bytes = br#"{"version":1,"seed_sha256":"x","refresh_token":"super-secret-token"#;
        fs::write(oauth_path(dir.path()), bytes).expect("write");
        let err = load(dir.path()).expect_err("corrupt refused");
        let message = err.to_string();
        assert!(message.contains("is truncated"), "{message}");
        assert!(!message.contains("super-secret-token"), "{message}");
        assert_eq!(fs::read(oauth_path(dir.path())).expect("read"), bytes);
        let top: crate::error::Error = err.into();
        assert_eq!(top.code(), crate::error::code::IO);

        fs::write(
            oauth_path(dir.path()),
            br#"{"version":9,"seed_sha256":"x","refresh_token":"t"}"#,
        )
        .expect("write");
        let message = load(dir.path()).expect_err("future version").to_string();
        assert!(message.contains("format version 9"), "{message}");
    }

    #[test]
    fn debug_output_holds_no_token() {
        let stored = rotated(&Secret::new("seed-1"));
        let debug = format!("{stored:?}");
        assert!(!debug.contains("rotated-refresh-2") && !debug.contains("access-abc"));
        assert!(!debug.contains("seed-1"));
    }
}

//! Tokens of the fake GIS: the static token, OAuth-issued access tokens that expire after a
//! number of requests, an age or on demand, and refresh tokens that rotate on every use
//! (the old one is revoked, as Doorkeeper does with `refresh_token` rotation).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::rng::mix;

const SALT_TOKEN: u64 = 0x70_6B;
/// What `expires_in` says when no age limit is configured: GIS's two hours.
const DEFAULT_EXPIRES_IN: u64 = 7200;

struct AccessToken {
    issued: Instant,
    uses: u64,
    expired: bool,
}

/// The token registry of one fake.
pub(crate) struct Tokens {
    seed: u64,
    counter: u64,
    pub(crate) static_token: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    pub(crate) seed_refresh_token: String,
    access: HashMap<String, AccessToken>,
    /// Refresh token → still usable.
    refresh: HashMap<String, bool>,
    ttl_requests: Option<u64>,
    ttl: Option<Duration>,
}

/// Why a request is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AuthError {
    Missing,
    Bearer,
    Unknown,
    Expired,
}

impl Tokens {
    /// A registry whose secrets derive from `seed`.
    pub(crate) fn new(seed: u64, ttl_requests: Option<u64>, ttl: Option<Duration>) -> Tokens {
        let mut tokens = Tokens {
            seed,
            counter: 0,
            static_token: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            seed_refresh_token: String::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            ttl_requests,
            ttl,
        };
        tokens.static_token = tokens.fresh_hex();
        tokens.client_id = tokens.fresh_base64();
        tokens.client_secret = tokens.fresh_base64();
        tokens.seed_refresh_token = tokens.fresh_base64();
        tokens
            .refresh
            .insert(tokens.seed_refresh_token.clone(), true);
        tokens
    }

    /// 64 lowercase hex characters, like older GIS tokens.
    fn fresh_hex(&mut self) -> String {
        self.counter += 1;
        (0..4)
            .map(|k| format!("{:016x}", mix(self.seed, SALT_TOKEN + k, self.counter)))
            .collect()
    }

    /// 43 base64url characters, like newer Doorkeeper secrets.
    fn fresh_base64(&mut self) -> String {
        self.counter += 1;
        let bytes: Vec<u8> = (0..4)
            .flat_map(|k| mix(self.seed, SALT_TOKEN + 8 + k, self.counter).to_le_bytes())
            .collect();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..32])
    }

    /// Checks the `Authorization` header (raw token) or `?access_token=`, counting a use.
    pub(crate) fn authorize(
        &mut self,
        header: Option<&str>,
        query: Option<&str>,
    ) -> Result<(), AuthError> {
        let token = match header {
            Some(h) if h.trim().to_ascii_lowercase().starts_with("bearer ") => {
                return Err(AuthError::Bearer)
            }
            Some(h) if !h.trim().is_empty() => h.trim(),
            _ => match query {
                Some(q) if !q.is_empty() => q,
                _ => return Err(AuthError::Missing),
            },
        };
        if token == self.static_token {
            return Ok(());
        }
        let Some(access) = self.access.get_mut(token) else {
            return Err(AuthError::Unknown);
        };
        let too_old = self.ttl.is_some_and(|ttl| access.issued.elapsed() >= ttl);
        let used_up = self.ttl_requests.is_some_and(|n| access.uses >= n);
        if access.expired || too_old || used_up {
            access.expired = true;
            return Err(AuthError::Expired);
        }
        access.uses += 1;
        Ok(())
    }

    /// Marks every OAuth-issued access token expired.
    pub(crate) fn expire_all(&mut self) {
        for token in self.access.values_mut() {
            token.expired = true;
        }
    }

    /// Handles `POST /oauth/token`: client authentication, then the refresh grant.
    pub(crate) fn grant(
        &mut self,
        client: Option<(String, String)>,
        form: &HashMap<String, String>,
        now: DateTime<Utc>,
    ) -> (StatusCode, Value) {
        let client_ok =
            client.is_some_and(|(id, secret)| id == self.client_id && secret == self.client_secret);
        if !client_ok {
            return (
                StatusCode::UNAUTHORIZED,
                json!({
                    "error": "invalid_client",
                    "error_description": "Client authentication failed due to unknown client, \
                        no client authentication included, or unsupported authentication method."
                }),
            );
        }
        if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
            return (
                StatusCode::BAD_REQUEST,
                json!({
                    "error": "unsupported_grant_type",
                    "error_description": "The authorization grant type is not supported by the authorization server."
                }),
            );
        }
        let presented = form.get("refresh_token").cloned().unwrap_or_default();
        match self.refresh.get_mut(&presented) {
            Some(usable) if *usable => *usable = false,
            _ => {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({
                        "error": "invalid_grant",
                        "error_description": "The provided authorization grant is invalid, expired, revoked, \
                            does not match the redirection URI used in the authorization request, \
                            or was issued to another client."
                    }),
                )
            }
        }
        let access = self.fresh_hex();
        let refresh = self.fresh_base64();
        self.access.insert(
            access.clone(),
            AccessToken {
                issued: Instant::now(),
                uses: 0,
                expired: false,
            },
        );
        self.refresh.insert(refresh.clone(), true);
        let expires_in = self.ttl.map_or(DEFAULT_EXPIRES_IN, |t| t.as_secs());
        (
            StatusCode::OK,
            json!({
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": expires_in,
                "refresh_token": refresh,
                "created_at": now.timestamp(),
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(token: &str) -> HashMap<String, String> {
        HashMap::from([
            ("grant_type".to_owned(), "refresh_token".to_owned()),
            ("refresh_token".to_owned(), token.to_owned()),
        ])
    }

    #[test]
    fn request_budget_expires_an_access_token() {
        let mut tokens = Tokens::new(1, Some(2), None);
        let client = Some((tokens.client_id.clone(), tokens.client_secret.clone()));
        let seed = tokens.seed_refresh_token.clone();
        let (status, body) = tokens.grant(client, &form(&seed), Utc::now());
        assert_eq!(status, StatusCode::OK);
        let access = body["access_token"]
            .as_str()
            .expect("access token")
            .to_owned();
        assert_eq!(tokens.authorize(Some(&access), None), Ok(()));
        assert_eq!(tokens.authorize(None, Some(&access)), Ok(()));
        assert_eq!(
            tokens.authorize(Some(&access), None),
            Err(AuthError::Expired)
        );
        let static_token = tokens.static_token.clone();
        for _ in 0..5 {
            assert_eq!(tokens.authorize(Some(&static_token), None), Ok(()));
        }
    }
}

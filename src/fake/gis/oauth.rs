//! Tokens of the fake GIS: the static token, OAuth-issued access tokens that expire after a
//! number of requests, an age or on demand, and refresh tokens that rotate on every use, as
//! Doorkeeper (the Rails OAuth provider whose error bodies auth.aiesec.org answers with)
//! rotates them.
//!
//! Doorkeeper keeps an access token and the refresh token issued with it in one record, and
//! revoking the record revokes both. A refresh revokes the record it was exchanged for
//! either at once or when the new access token is first used, depending on the install
//! ([`RefreshRevocation`]); which one GIS runs is unknown (research/gis-api.md 1.2), so the
//! fake does both. Every refresh token presented is recorded with its outcome, so a test can
//! prove that no client presented one twice.

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

/// When a refresh token that was exchanged for a new pair stops working.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RefreshRevocation {
    /// At once, with the access token issued alongside it: Doorkeeper without the
    /// `previous_refresh_token` column. A refresh token works exactly once, so a client
    /// that loses the answer (killed before it saved the new token, or the answer lost on
    /// the wire) is locked out until an operator bootstraps a new one.
    #[default]
    Immediate,
    /// When the access token issued in exchange is first used: Doorkeeper's
    /// `refresh_token_revoked_on_use`, what its install template sets up. Until then the old
    /// refresh token (and its access token) still work, so a client that lost the answer
    /// can present the old refresh token again.
    OnUse,
}

/// One request to the token endpoint that presented a refresh token, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshAttempt {
    /// The refresh token presented (empty when the form held none).
    pub presented: String,
    /// The refresh token issued in exchange; `None` when the request was refused.
    pub issued: Option<String>,
    /// The OAuth `error` of a refusal (`invalid_grant`, `invalid_client`, ...).
    pub error: Option<String>,
}

struct AccessToken {
    issued: Instant,
    uses: u64,
    /// Expired by age, use count or `expire_all`, or revoked with its refresh token.
    expired: bool,
    /// With [`RefreshRevocation::OnUse`]: the refresh token this one was exchanged for,
    /// revoked when this one is first used.
    previous_refresh: Option<String>,
}

/// A refresh token, and the access token issued with it (the seed and bootstrapped tokens
/// have none).
struct RefreshToken {
    usable: bool,
    access: Option<String>,
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
    refresh: HashMap<String, RefreshToken>,
    ttl_requests: Option<u64>,
    ttl: Option<Duration>,
    revocation: RefreshRevocation,
    /// Every refresh request handled, in order.
    pub(crate) attempts: Vec<RefreshAttempt>,
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
    pub(crate) fn new(
        seed: u64,
        ttl_requests: Option<u64>,
        ttl: Option<Duration>,
        revocation: RefreshRevocation,
    ) -> Tokens {
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
            revocation,
            attempts: Vec::new(),
        };
        tokens.static_token = tokens.fresh_hex();
        tokens.client_id = tokens.fresh_base64();
        tokens.client_secret = tokens.fresh_base64();
        tokens.seed_refresh_token = tokens.bootstrap_refresh_token();
        tokens
    }

    /// A new usable refresh token with no access token, as an operator gets one through
    /// the authorization-code flow.
    pub(crate) fn bootstrap_refresh_token(&mut self) -> String {
        let token = self.fresh_base64();
        self.refresh.insert(
            token.clone(),
            RefreshToken {
                usable: true,
                access: None,
            },
        );
        token
    }

    /// Revokes a refresh token and the access token issued with it (one Doorkeeper record).
    fn revoke(&mut self, refresh: &str) {
        let Some(record) = self.refresh.get_mut(refresh) else {
            return;
        };
        record.usable = false;
        if let Some(access) = record.access.as_ref().and_then(|a| self.access.get_mut(a)) {
            access.expired = true;
        }
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
        if let Some(previous) = access.previous_refresh.take() {
            self.revoke(&previous);
        }
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
        let (status, body) = self.exchange(client, form, now);
        self.attempts.push(RefreshAttempt {
            presented: form.get("refresh_token").cloned().unwrap_or_default(),
            issued: body["refresh_token"].as_str().map(str::to_owned),
            error: body["error"].as_str().map(str::to_owned),
        });
        (status, body)
    }

    /// [`Tokens::grant`] without the record.
    fn exchange(
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
        match self.refresh.get(&presented) {
            Some(record) if record.usable => {}
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
        let previous_refresh = match self.revocation {
            RefreshRevocation::Immediate => {
                self.revoke(&presented);
                None
            }
            RefreshRevocation::OnUse => Some(presented),
        };
        let access = self.fresh_hex();
        let refresh = self.fresh_base64();
        self.access.insert(
            access.clone(),
            AccessToken {
                issued: Instant::now(),
                uses: 0,
                expired: false,
                previous_refresh,
            },
        );
        self.refresh.insert(
            refresh.clone(),
            RefreshToken {
                usable: true,
                access: Some(access.clone()),
            },
        );
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

    /// Refreshes with `refresh`; the access and refresh tokens issued, or the OAuth error.
    fn refresh(tokens: &mut Tokens, refresh: &str) -> Result<(String, String), String> {
        let client = Some((tokens.client_id.clone(), tokens.client_secret.clone()));
        let (status, body) = tokens.grant(client, &form(refresh), Utc::now());
        if status != StatusCode::OK {
            return Err(body["error"].as_str().expect("an error").to_owned());
        }
        let field = |name: &str| body[name].as_str().expect("issued").to_owned();
        Ok((field("access_token"), field("refresh_token")))
    }

    #[test]
    fn immediate_revocation_refuses_a_second_use_and_kills_the_old_access_token() {
        let mut tokens = Tokens::new(1, None, None, RefreshRevocation::Immediate);
        let seed = tokens.seed_refresh_token.clone();
        let (access1, refresh1) = refresh(&mut tokens, &seed).expect("seed works");
        assert_eq!(refresh(&mut tokens, &seed), Err("invalid_grant".to_owned()));
        assert_eq!(tokens.authorize(Some(&access1), None), Ok(()));
        let (access2, _) = refresh(&mut tokens, &refresh1).expect("rotated works");
        assert_eq!(
            tokens.authorize(Some(&access1), None),
            Err(AuthError::Expired),
            "the record refresh1 belonged to is revoked with it"
        );
        assert_eq!(tokens.authorize(Some(&access2), None), Ok(()));
        let outcomes: Vec<(String, Option<String>)> = tokens
            .attempts
            .iter()
            .map(|a| (a.presented.clone(), a.error.clone()))
            .collect();
        assert_eq!(
            outcomes,
            vec![
                (seed.clone(), None),
                (seed, Some("invalid_grant".to_owned())),
                (refresh1, None)
            ]
        );
    }

    #[test]
    fn on_use_revocation_keeps_the_old_refresh_token_until_the_new_access_token_is_used() {
        let mut tokens = Tokens::new(1, None, None, RefreshRevocation::OnUse);
        let seed = tokens.seed_refresh_token.clone();
        let (access1, refresh1) = refresh(&mut tokens, &seed).expect("seed works");
        // The answer was lost: the seed still works, and so does the unused pair.
        let (access2, refresh2) = refresh(&mut tokens, &seed).expect("seed still works");
        assert_eq!(tokens.authorize(Some(&access2), None), Ok(()));
        assert_eq!(refresh(&mut tokens, &seed), Err("invalid_grant".to_owned()));
        assert_eq!(tokens.authorize(Some(&access1), None), Ok(()));
        // Using a pair's access token revokes the refresh token it was exchanged for and the
        // access token issued with that one.
        let (access3, _) = refresh(&mut tokens, &refresh2).expect("rotated works");
        assert_eq!(tokens.authorize(Some(&access2), None), Ok(()), "not yet");
        assert_eq!(tokens.authorize(Some(&access3), None), Ok(()));
        assert_eq!(
            tokens.authorize(Some(&access2), None),
            Err(AuthError::Expired)
        );
        assert_eq!(
            refresh(&mut tokens, &refresh2),
            Err("invalid_grant".to_owned())
        );
        assert!(refresh(&mut tokens, &refresh1).is_ok(), "never superseded");
    }

    #[test]
    fn request_budget_expires_an_access_token() {
        let mut tokens = Tokens::new(1, Some(2), None, RefreshRevocation::Immediate);
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

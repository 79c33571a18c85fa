//! TEMPORARY STUB (replaced by the config-state branch).
use std::path::Path;

use crate::config::Secret;
use crate::state::StateError;

#[derive(Debug, Clone)]
pub struct StoredOAuth {
    pub refresh_token: Secret,
    pub seed_sha256: String,
    pub access_token: Option<Secret>,
    pub access_expires_at: Option<chrono::DateTime<chrono::Utc>>,
}
pub fn load(_data_dir: &Path) -> Result<Option<StoredOAuth>, StateError> {
    Ok(None)
}
pub fn save(_data_dir: &Path, _stored: &StoredOAuth) -> Result<(), StateError> {
    Ok(())
}
pub fn current_refresh_token(stored: Option<&StoredOAuth>, seed: &Secret) -> Secret {
    stored.map_or_else(|| seed.clone(), |s| s.refresh_token.clone())
}
pub fn seed_digest(seed: &Secret) -> String {
    seed.expose().to_owned()
}

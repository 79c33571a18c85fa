//! On-disk sync state (SPEC 5.2, 5.3): what customer.io has confirmed, per person and per
//! application, plus watermarks, the pending list and the setup fingerprint.
//!
//! SKELETON: the types below are the contract other modules use. Loading, saving
//! (atomic, versioned, `.bak` generation, compact encoding) and the HMAC key file are to be
//! built here.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::model::{ApplicationId, EventKind, PersonId, Side, ATTRIBUTES};

/// A keyed fingerprint of one attribute value (truncated HMAC-SHA-256). `0` is reserved for
/// "never confirmed".
pub type Fingerprint = u32;

/// What was last confirmed for one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonState {
    /// One fingerprint per entry of [`ATTRIBUTES`], by position; `0` = never confirmed.
    pub attrs: [Fingerprint; ATTRIBUTES.len()],
    /// `false` once `in_scope = false` was confirmed for a person who left the configured LCs.
    pub in_scope: bool,
    /// `true` once `in_scope` was ever sent (a person who never left never gets it).
    pub in_scope_sent: bool,
}

impl Default for PersonState {
    fn default() -> Self {
        PersonState {
            attrs: [0; ATTRIBUTES.len()],
            in_scope: true,
            in_scope_sent: false,
        }
    }
}

/// What was last confirmed for one application (SPEC 4.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplicationState {
    pub person_id: PersonId,
    /// Highest main-path rank reached in the current pass (0 for a new application).
    pub rank: u8,
    /// How many times each kind was sent, indexed by [`EventKind::index`].
    pub count: [u32; EventKind::COUNT],
    /// The side status most recently sent; cleared when a main-path step is sent.
    pub last_side: Option<Side>,
}

/// The whole state file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// Fingerprint of the setup (GIS endpoint, home LCs, site id, Track base URL).
    pub setup: String,
    pub people: BTreeMap<PersonId, PersonState>,
    pub applications: BTreeMap<ApplicationId, ApplicationState>,
    /// People whose writes are not yet confirmed (re-read by id each run).
    pub pending_people: BTreeSet<PersonId>,
    /// Start of the last run that completed (exit 0 or 1).
    pub watermark: Option<DateTime<Utc>>,
    /// When the last full read happened.
    pub last_full_read: Option<DateTime<Utc>>,
    /// Start time of a run that has not completed (set at its first checkpoint).
    pub run_in_progress: Option<DateTime<Utc>>,
}

// TEMPORARY STUB (replaced by the config-state branch).
use std::path::Path;
#[derive(Debug)]
pub struct StateError(pub String);
impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for StateError {}
impl From<StateError> for crate::error::Error {
    fn from(e: StateError) -> Self {
        crate::error::Error::State(e.0)
    }
}
pub fn load(_data_dir: &Path) -> Result<Option<State>, StateError> {
    Ok(None)
}
pub fn save(_data_dir: &Path, _state: &State) -> Result<(), StateError> {
    Ok(())
}
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}
pub fn ensure_data_dir(dir: &Path) -> Result<(), StateError> {
    std::fs::create_dir_all(dir).map_err(|e| StateError(e.to_string()))
}
pub fn load_or_create_key(_data_dir: &Path) -> Result<[u8; 32], StateError> {
    Ok([0; 32])
}
pub fn setup_fingerprint(_e: &str, _l: &[u64], _s: &str, _t: &str) -> String {
    String::new()
}

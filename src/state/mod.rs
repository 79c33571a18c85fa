//! On-disk sync state (SPEC 5.2, 5.3): what customer.io has confirmed, per person and per
//! application, plus watermarks, the pending list and the setup fingerprint; the HMAC key
//! beside it; and the one way a confirmed write reaches the state
//! ([`State::confirm_identify`], [`State::confirm_event`]).
//!
//! Invariants:
//! - read and written only while `lock::DataDirLock` is held;
//! - every write is atomic ([`crate::data_dir::AtomicWrite`]): a crash leaves the old or the new file, never
//!   a torn one, and `state.json` never disappears, even for an instant, while the previous
//!   generation moves to `state.json.bak`;
//! - a missing, corrupt, truncated or unknown-version state (or a missing key next to an
//!   existing state) is an error that says how to restore, never a silent reset: an empty
//!   state would re-send every event;
//! - loading never modifies a file; every file written here is 0600, the data dir 0700;
//! - the state holds no personal data: ids, keyed fingerprints and counters only;
//! - a person removed from customer.io (forgotten, SPEC 8.2, or deleted on leaving scope,
//!   8.3) leaves the state together with their applications, in the same save.
//!
//! Memory and file are both compact because a national office has hundreds of thousands of
//! people and all of GIS a few million (issue 12):
//! - in memory, people and applications are [`Table`]s, sorted vectors of plain structs
//!   (68 bytes a person, 40 an application with its id; application counts are [`Counts`],
//!   one byte each while they fit one);
//! - on disk, a person is one base64url string (a flags byte and the 14 fingerprints), an
//!   application a short array `[person_id, rank, [counts with trailing zeros trimmed],
//!   last_side]`; a 50,000-person, 150,000-application state is about 10 MB;
//! - loading and saving stream between the file and the tables ([`codec`]): no copy of the
//!   file, no JSON tree.
//!
//! Files: `mod.rs` the types and the API, `table.rs` the compact map, `counts.rs` the
//! application counts, `codec.rs` the streaming JSON, `canonical.rs` its fast path for a
//! file exactly as ciosync writes it.

mod canonical;
mod codec;
mod counts;
#[cfg(test)]
mod legacy;
mod table;

pub use counts::Counts;
pub use table::Table;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rand::RngCore as _;
use sha2::{Digest, Sha256};

use crate::data_dir::{
    self, AtomicWrite, DataDirError, BACKUP_FILE, KEY_FILE, LAST_RUN_FILE, PRIVATE_FILE_MODE,
    STATE_FILE,
};
use crate::model::{ApplicationId, PersonId, Side, ATTRIBUTES};
#[cfg(test)]
use crate::model::{EventKind, Step};

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
    /// How many times each kind was sent, indexed by [`crate::model::EventKind::index`].
    pub count: Counts,
    /// The side status most recently sent; cleared when a main-path step is sent.
    pub last_side: Option<Side>,
}

/// An id `ciosync forget` was asked to erase (SPEC 8.2). While it is on the state's list, no
/// run sends anything for it, whatever GIS says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forgotten {
    /// Suppressed in customer.io (which then ignores every later call for the id) rather
    /// than deleted; `forget --undo` unsuppresses it.
    pub suppressed: bool,
    /// customer.io confirmed the delete (or suppress). Until then the person's state is kept
    /// (a rejection leaves them as they were) and a run, or `forget` again, sends it again:
    /// recorded before customer.io is called, so a kill never leaves an id half-forgotten.
    pub confirmed: bool,
}

/// A person to remove from customer.io as a whole (SPEC 8.2 `forget`, 8.3 `on_leave =
/// "delete"`); once customer.io confirms, the person and their applications leave the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removal {
    pub person_id: PersonId,
    /// Suppress (customer.io ignores every later call for the id) rather than delete.
    pub suppress: bool,
    /// Why: a `forget` (the id stays on the forgotten list, confirmed) or the person left
    /// scope / GIS no longer has them (no tombstone: if they come back, they are new).
    pub forget: bool,
}

impl Removal {
    /// The customer.io action: `delete` or `suppress` (v1 path and v2 action alike).
    pub fn action(&self) -> &'static str {
        if self.suppress {
            "suppress"
        } else {
            "delete"
        }
    }
}

/// The whole state file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// Fingerprint of the setup (GIS endpoint, home LCs, site id, Track base URL).
    pub setup: String,
    pub people: Table<PersonState>,
    pub applications: Table<ApplicationState>,
    /// People whose writes are not yet confirmed (re-read by id each run).
    pub pending_people: BTreeSet<PersonId>,
    /// Start of the last run that completed (exit 0 or 1).
    pub watermark: Option<DateTime<Utc>>,
    /// When the last full read happened.
    pub last_full_read: Option<DateTime<Utc>>,
    /// Start time of a run that has not completed (set at its first checkpoint).
    pub run_in_progress: Option<DateTime<Utc>>,
    /// Ids `ciosync forget` erased (or is erasing), SPEC 8.2: nothing is ever sent for them.
    pub forgotten: BTreeMap<PersonId, Forgotten>,
}

impl State {
    /// Records an identify customer.io confirmed: the person's confirmed state becomes
    /// `after` (the plan computed it). The one way a confirmed identify reaches the state.
    pub fn confirm_identify(&mut self, person_id: PersonId, after: &PersonState) {
        self.people.insert(person_id, after.clone());
    }

    /// Records an event customer.io confirmed: the application's state becomes `after`.
    /// Events of one application must be confirmed in plan order. The one way a confirmed
    /// event reaches the state.
    pub fn confirm_event(&mut self, application_id: ApplicationId, after: &ApplicationState) {
        self.applications.insert(application_id, after.clone());
    }

    /// Records removals customer.io confirmed (SPEC 8.2, 8.3): each person leaves the state
    /// with their applications and their place on the pending list, in one pass over the
    /// tables however many there are; a forgotten id stays on the forgotten list, confirmed.
    /// The one way a confirmed removal reaches the state.
    pub fn confirm_removals(&mut self, removals: &[Removal]) {
        if removals.is_empty() {
            return;
        }
        let gone: HashSet<PersonId> = removals.iter().map(|r| r.person_id).collect();
        self.people.retain(|id, _| !gone.contains(id));
        self.applications
            .retain(|_, app| !gone.contains(&app.person_id));
        self.pending_people.retain(|id| !gone.contains(id));
        for removal in removals.iter().filter(|r| r.forget) {
            if let Some(entry) = self.forgotten.get_mut(&removal.person_id) {
                entry.confirmed = true;
            }
        }
    }

    /// Whether `person_id` is on the forgotten list (confirmed or not): nothing is sent for
    /// them (SPEC 8.2).
    pub fn is_forgotten(&self, person_id: PersonId) -> bool {
        self.forgotten.contains_key(&person_id)
    }

    /// Puts `person_id` on the forgotten list before customer.io is asked to delete (or
    /// suppress) them, unconfirmed; returns the entry it replaces, for
    /// [`State::abandon_forget`]. An id suppressed before stays suppressed.
    pub fn begin_forget(&mut self, person_id: PersonId, suppress: bool) -> Option<Forgotten> {
        let previous = self.forgotten.get(&person_id).copied();
        let suppressed = suppress || previous.is_some_and(|p| p.suppressed);
        self.forgotten.insert(
            person_id,
            Forgotten {
                suppressed,
                confirmed: false,
            },
        );
        previous
    }

    /// Undoes [`State::begin_forget`] after customer.io rejected the removal: the id is as it
    /// was before (SPEC 8.2: "they stay as they were").
    pub fn abandon_forget(&mut self, person_id: PersonId, previous: Option<Forgotten>) {
        match previous {
            Some(entry) => self.forgotten.insert(person_id, entry),
            None => self.forgotten.remove(&person_id),
        };
    }

    /// Takes `person_id` off the forgotten list (`forget --undo`, after customer.io confirmed
    /// the unsuppress of a suppressed id); whatever the state still held about them goes too,
    /// so the next run treats them as new people. Returns whether the id was forgotten.
    pub fn undo_forget(&mut self, person_id: PersonId) -> bool {
        if self.forgotten.remove(&person_id).is_none() {
            return false;
        }
        self.people.remove(&person_id);
        self.applications
            .retain(|_, app| app.person_id != person_id);
        self.pending_people.remove(&person_id);
        true
    }

    /// Marks the run that started at `started` as completed (SPEC 5.4): the watermark
    /// advances to its start, and so does the last full read if it read everything.
    pub fn complete_run(&mut self, started: DateTime<Utc>, full_read: bool) {
        self.run_in_progress = None;
        self.watermark = Some(started);
        if full_read {
            self.last_full_read = Some(started);
        }
    }
}

/// The state format this build reads and writes.
pub const STATE_VERSION: u32 = 1;

/// `<data_dir>/state.json`.
pub fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join(STATE_FILE)
}

/// `<data_dir>/state.json.bak`.
pub fn backup_path(data_dir: &Path) -> PathBuf {
    data_dir.join(BACKUP_FILE)
}

/// Reads the state of `data_dir`.
///
/// `Ok(None)` only on a first run: neither `state.json` nor `state.json.bak` exists.
///
/// # Errors
/// [`DataDirError`] when `state.json` is missing but `state.json.bak` exists, when it cannot be
/// read, or is empty, truncated, corrupt or of another version. The message says how to
/// restore. No file is modified.
pub fn load(data_dir: &Path) -> Result<Option<State>, DataDirError> {
    let path = state_path(data_dir);
    let backup = backup_path(data_dir);
    if let Err(err) = fs::metadata(&path) {
        if err.kind() == io::ErrorKind::NotFound {
            if backup.exists() {
                return Err(DataDirError::Invalid(format!(
                    "{} is missing but {} exists, so this is not a first run; starting from an \
                     empty state would re-send every event. {}",
                    path.display(),
                    backup.display(),
                    restore_hint(data_dir)
                )));
            }
            return Ok(None);
        }
    }
    match codec::read_state(|| File::open(&path)) {
        Ok(state) => Ok(Some(state)),
        Err(codec::ReadError::Io(source)) => Err(DataDirError::Io {
            context: format!("cannot read the state file {}", path.display()),
            source,
        }),
        Err(codec::ReadError::Invalid(problem)) => Err(DataDirError::Invalid(format!(
            "the state file {} {problem}; ciosync will not start from an empty state, which \
             would re-send every event. {}",
            path.display(),
            restore_hint(data_dir)
        ))),
    }
}

/// What the operator can do with a broken state: restore the `.bak` if it is good, or
/// start over.
fn restore_hint(data_dir: &Path) -> String {
    let path = state_path(data_dir);
    let backup = backup_path(data_dir);
    let start_over = if backup.exists() {
        format!(
            "To start over (every profile and event is sent again), remove {} and {}.",
            path.display(),
            backup.display()
        )
    } else {
        format!(
            "To start over (every profile and event is sent again), remove {}.",
            path.display()
        )
    };
    match codec::read_state(|| File::open(&backup)) {
        Ok(_) => format!(
                "The previous generation {} is readable: restore it with `cp {} {}` (the \
                 changes of the last run are sent again, customer.io drops duplicate events). {start_over}",
                backup.display(),
                backup.display(),
                path.display()
            ),
        Err(codec::ReadError::Invalid(problem)) => format!(
            "The previous generation {} is unusable too ({problem}). {start_over}",
            backup.display()
        ),
        Err(codec::ReadError::Io(_)) => format!(
            "There is no previous generation ({}). {start_over}",
            backup.display()
        ),
    }
}

/// Saves `state` to `<data_dir>/state.json` atomically, keeping the previous generation as
/// `state.json.bak`.
///
/// # Errors
/// [`DataDirError::Io`] when the file cannot be written; the previous file stays in place.
pub fn save(data_dir: &Path, state: &State) -> Result<(), DataDirError> {
    save_with(data_dir, state, &mut data_dir::write_all)
}

/// [`save`], with the new file's bytes written by `write` instead of `write_all`: the test
/// hook for a disk that fills up (or any I/O error) while the state is written. The bytes
/// come in chunks of up to [`data_dir::WRITE_BUFFER`] as the state is encoded.
///
/// # Errors
/// As [`save`]; whatever `write` returns is reported the same way.
#[doc(hidden)]
pub fn save_with(
    data_dir: &Path,
    state: &State,
    write: &mut dyn FnMut(&mut File, &[u8]) -> io::Result<()>,
) -> Result<(), DataDirError> {
    let path = state_path(data_dir);
    // Saves happen under the run lock, so temp files of these are stale; the run summary is
    // written under the same lock.
    data_dir::remove_stale_temp_files(data_dir, &[STATE_FILE, BACKUP_FILE, LAST_RUN_FILE]);
    AtomicWrite {
        path: &path,
        mode: PRIVATE_FILE_MODE,
        backup: Some(&backup_path(data_dir)),
    }
    .stream_with(&mut |out| codec::write_state(out, state), write)
    .map_err(DataDirError::io(format!(
        "cannot write the state file {}",
        path.display()
    )))
}

/// The state as the bytes of `state.json` (what [`save`] writes).
pub fn encode(state: &State) -> Vec<u8> {
    let mut bytes = Vec::new();
    codec::write_state(&mut bytes, state).expect("writing to memory cannot fail");
    bytes
}

/// Parses the bytes of `state.json`; the error says what is wrong (for "the state file X …").
#[cfg(test)]
fn decode(bytes: &[u8]) -> Result<State, String> {
    codec::read_state(|| Ok(bytes)).map_err(|err| match err {
        codec::ReadError::Invalid(problem) => problem,
        codec::ReadError::Io(err) => format!("cannot be read: {err}"),
    })
}

/// Reads `<data_dir>/state.key`, or creates it (32 random bytes, hex, 0600) on a first run.
///
/// # Errors
/// [`DataDirError`] when the key is malformed or unreadable, or missing while `state.json` (or
/// its `.bak`) exists: a new key would change every fingerprint and re-send every profile.
pub fn load_or_create_key(data_dir: &Path) -> Result<[u8; 32], DataDirError> {
    let path = data_dir.join(KEY_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let mut key = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut key).map_err(|_| {
                DataDirError::Invalid(format!(
                    "the fingerprint key {} is malformed (expected 64 hex digits); restore it \
                     from a backup, or start over by removing it together with {} and {}",
                    path.display(),
                    state_path(data_dir).display(),
                    backup_path(data_dir).display()
                ))
            })?;
            Ok(key)
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            if state_path(data_dir).exists() || backup_path(data_dir).exists() {
                return Err(DataDirError::Invalid(format!(
                    "the fingerprint key {} is missing but a state exists in {}; a new key \
                     would make every fingerprint differ and re-send every profile. Restore \
                     the key from a backup, or start over by removing {} and {}",
                    path.display(),
                    data_dir.display(),
                    state_path(data_dir).display(),
                    backup_path(data_dir).display()
                )));
            }
            let mut key = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut key);
            let mut text = hex::encode(key);
            text.push('\n');
            data_dir::write_atomic(&path, text.as_bytes(), PRIVATE_FILE_MODE).map_err(
                DataDirError::io(format!(
                    "cannot write the fingerprint key {}",
                    path.display()
                )),
            )?;
            Ok(key)
        }
        Err(source) => Err(DataDirError::Io {
            context: format!("cannot read the fingerprint key {}", path.display()),
            source,
        }),
    }
}

/// The setup fingerprint (SPEC 5.2): SHA-256 hex over a canonical encoding of the GIS
/// endpoint, the home LCs (sorted, de-duplicated), the customer.io site id and the resolved
/// Track base URL. Each field is length-prefixed so no two setups encode alike.
pub fn setup_fingerprint(
    gis_endpoint: &str,
    home_lcs: &[u64],
    site_id: &str,
    track_base_url: &str,
) -> String {
    let mut lcs = home_lcs.to_vec();
    lcs.sort_unstable();
    lcs.dedup();
    let lcs = lcs.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let mut hasher = Sha256::new();
    hasher.update(b"ciosync-setup-v1\n");
    for field in [gis_endpoint, lcs.as_str(), site_id, track_base_url] {
        hasher.update(format!("{}:", field.len()).as_bytes());
        hasher.update(field.as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::legacy::OldState;
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use std::os::unix::fs::PermissionsExt;

    fn sample_state() -> State {
        let mut state = State {
            setup: setup_fingerprint(
                "https://gis.example/graphql",
                &[1337],
                "site",
                "https://track.customer.io",
            ),
            watermark: Some(
                Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0)
                    .single()
                    .expect("valid date"),
            ),
            last_full_read: Some(
                Utc.with_ymd_and_hms(2026, 11, 28, 0, 5, 0)
                    .single()
                    .expect("valid date"),
            ),
            ..State::default()
        };
        let mut person = PersonState::default();
        person.attrs[0] = 0xdead_beef;
        person.attrs[13] = 7;
        state.people.insert(42, person);
        state.people.insert(
            43,
            PersonState {
                in_scope: false,
                in_scope_sent: true,
                ..PersonState::default()
            },
        );
        let mut count = [0; EventKind::COUNT];
        count[0] = 1;
        count[1] = 2;
        count[7] = 1;
        state.applications.insert(
            900,
            ApplicationState {
                person_id: 42,
                rank: 2,
                count: count.into(),
                last_side: Some(Side::Rejected),
            },
        );
        state.applications.insert(
            901,
            ApplicationState {
                person_id: 43,
                ..ApplicationState::default()
            },
        );
        state.pending_people.insert(43);
        state
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn save_removes_temp_files_a_killed_save_left_behind() {
        let dir = tempfile::tempdir().expect("temp dir");
        let stale = [
            ".state.json.tmp.4242.0badf00d",
            ".state.json.bak.tmp.4242.deadbeef",
            ".last_run.json.tmp.4242.feedface",
        ];
        for name in stale {
            fs::write(dir.path().join(name), b"{\"version\": 1, \"peo").expect("stale file");
        }
        fs::write(dir.path().join(".gis-oauth.json.tmp.1.2"), b"x").expect("other file");
        save(dir.path(), &sample_state()).expect("save");
        for name in stale {
            assert!(!dir.path().join(name).exists(), "{name} removed");
        }
        assert!(
            dir.path().join(".gis-oauth.json.tmp.1.2").exists(),
            "the OAuth store's temp files are not touched (written without the lock)"
        );
        assert_eq!(load(dir.path()).expect("loads"), Some(sample_state()));
    }

    /// [`sample_state`] as `state.json` version 1, as ciosync has written it since the format
    /// was fixed (the encoder before issue 12 wrote exactly this).
    const SAMPLE_STATE_JSON: &str = concat!(
        r#"{"version":1,"setup":"313037f7c07752ebd9465f14e08c233e4e7deb1f6e7b690be6a87b194260bf9e","#,
        r#""watermark":"2026-11-28T12:00:00Z","last_full_read":"2026-11-28T00:05:00Z","#,
        r#""run_in_progress":null,"pending_people":[43],"people":{"#,
        r#""42":"Ad6tvu8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAH","#,
        r#""43":"AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},"#,
        r#""applications":{"900":[42,2,[1,2,0,0,0,0,0,1],7],"901":[43,0,[],null]}}"#,
        "\n"
    );

    /// The file format cannot drift: the streaming encoder writes the pinned bytes, which are
    /// what the encoder before issue 12 writes, and `save` writes what `encode` returns.
    #[test]
    fn encoding_is_byte_for_byte_the_version_1_format() {
        let state = sample_state();
        let bytes = encode(&state);
        assert_eq!(
            String::from_utf8(bytes.clone()).expect("utf-8"),
            SAMPLE_STATE_JSON
        );
        assert_eq!(bytes, legacy::encode(&OldState::from_state(&state)));
        let dir = tempfile::tempdir().expect("temp dir");
        save(dir.path(), &state).expect("save");
        assert_eq!(fs::read(state_path(dir.path())).expect("read"), bytes);
    }

    /// A state larger than the write buffer reaches the writer in several chunks, which add
    /// up to exactly the encoding.
    #[test]
    fn a_large_state_is_saved_in_chunks_through_the_writer() {
        let state = large_state(20_000, 60_000);
        let dir = tempfile::tempdir().expect("temp dir");
        let mut chunks = Vec::new();
        save_with(dir.path(), &state, &mut |file, bytes| {
            chunks.push(bytes.len());
            io::Write::write_all(file, bytes)
        })
        .expect("save");
        let written = fs::read(state_path(dir.path())).expect("read");
        assert!(
            written.len() > 2 * data_dir::WRITE_BUFFER,
            "{} bytes",
            written.len()
        );
        assert!(chunks.len() >= 2, "streamed, not written whole: {chunks:?}");
        assert!(
            chunks.iter().all(|&n| n <= data_dir::WRITE_BUFFER),
            "{chunks:?}"
        );
        assert_eq!(written, encode(&state));
        assert_eq!(load(dir.path()).expect("load"), Some(state));
    }

    /// Every broken file gets the message the decoder before issue 12 gave, word for word:
    /// the streaming reader reports problems in the same order (syntax, then version, then
    /// fields, then records), wherever they are in the file. Only the column serde_json names
    /// may be one further (see [`codec`]).
    #[test]
    fn broken_files_get_the_same_message_as_before() {
        let good = String::from_utf8(encode(&sample_state())).expect("utf-8");
        let person_42 = "\"42\":\"Ad6tvu8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAH\"";
        let cases: Vec<(&str, String)> = vec![
            ("empty", String::new()),
            ("blank", " \n\t".to_owned()),
            ("truncated", good[..good.len() / 2].to_owned()),
            ("truncated at the end", good[..good.len() - 3].to_owned()),
            (
                "garbage",
                "{\"version\":1,\"setup\":\"x\",garbage}".to_owned(),
            ),
            ("trailing garbage", format!("{}x", good.trim_end())),
            ("two documents", format!("{good}{good}")),
            ("array", "[1,2,3]".to_owned()),
            ("number", "5".to_owned()),
            ("null", "null".to_owned()),
            (
                "future version",
                "{\"version\":2,\"totally\":\"new\"}".to_owned(),
            ),
            (
                "future version, broken later",
                "{\"version\":2,\"x\":}".to_owned(),
            ),
            (
                "version last",
                good.replacen("\"version\":1,", "", 1)
                    .replace("}}\n", "},\"version\":1}\n"),
            ),
            (
                "future version last",
                good.replacen("\"version\":1,", "", 1)
                    .replace("}}\n", "},\"version\":7}\n"),
            ),
            (
                "future version after a bad field",
                "{\"people\":5,\"version\":2}".to_owned(),
            ),
            ("no version", "{\"people\":{}}".to_owned()),
            (
                "null version",
                good.replacen("\"version\":1", "\"version\":null", 1),
            ),
            (
                "string version",
                good.replacen("\"version\":1", "\"version\":\"1\"", 1),
            ),
            (
                "float version",
                good.replacen("\"version\":1", "\"version\":1.0", 1),
            ),
            (
                "negative version",
                good.replacen("\"version\":1", "\"version\":-1", 1),
            ),
            (
                "duplicate version",
                good.replacen("\"version\":1", "\"version\":1,\"version\":1", 1),
            ),
            (
                "unknown field",
                good.replacen("\"setup\"", "\"extra\":[],\"setup\"", 1),
            ),
            (
                "unknown field after a bad person",
                good.replace("}}\n", "},\"extra\":0}\n")
                    .replacen(person_42, "\"42\":\"!!\"", 1),
            ),
            (
                "missing setup",
                good.replacen("\"setup\":", "\"setupx\":", 1),
            ),
            (
                "missing applications",
                good.replacen("\"applications\":", "\"applicationz\":", 1),
            ),
            (
                "no applications",
                good.replacen(
                    ",\"applications\":{\"900\":[42,2,[1,2,0,0,0,0,0,1],7],\"901\":[43,0,[],null]}",
                    "",
                    1,
                ),
            ),
            (
                "missing watermark is fine",
                good.replacen("\"watermark\":\"2026-11-28T12:00:00Z\",", "", 1),
            ),
            (
                "duplicate setup",
                good.replacen("\"setup\":", "\"setup\":\"a\",\"setup\":", 1),
            ),
            (
                "duplicate people",
                good.replacen("\"people\":", "\"people\":{},\"people\":", 1),
            ),
            (
                "bad watermark",
                good.replacen("2026-11-28T12:00:00Z", "yesterday", 1),
            ),
            (
                "setup not a string",
                good.replacen("\"setup\":\"", "\"setup\":7,\"x\":\"", 1),
            ),
            (
                "people not a map",
                good.replacen("\"people\":{", "\"people\":5,\"p\":{", 1),
            ),
            (
                "person not a string",
                good.replacen(person_42, "\"42\":42", 1),
            ),
            (
                "person id not a number",
                good.replacen("\"42\":", "\"forty-two\":", 1),
            ),
            (
                "person not base64",
                good.replacen(person_42, "\"42\":\"!!\"", 1),
            ),
            (
                "person too short",
                good.replacen(person_42, "\"42\":\"AQ\"", 1),
            ),
            ("person empty", good.replacen(person_42, "\"42\":\"\"", 1)),
            (
                "person too long",
                good.replacen(person_42, &person_42.replace("AAAH", "AAAAAAAH"), 1),
            ),
            (
                "person with unknown flags",
                good.replacen(person_42, &person_42.replace("\"Ad", "\"B9"), 1),
            ),
            (
                "two bad people, out of order",
                good.replacen(person_42, "\"44\":\"!\",\"42\":\"!!!\"", 1),
            ),
            (
                "bad application and bad person",
                good.replacen("0,1],7]", "0,1],3]", 1)
                    .replacen(person_42, "\"42\":\"\"", 1),
            ),
            (
                "application side not a side",
                good.replacen("0,1],7]", "0,1],3]", 1),
            ),
            (
                "application side out of range",
                good.replacen("0,1],7]", "0,1],99]", 1),
            ),
            (
                "application rank out of range",
                good.replacen("[42,2,", "[42,7,", 1),
            ),
            (
                "application rank not a u8",
                good.replacen("[42,2,", "[42,300,", 1),
            ),
            (
                "application too many counts",
                good.replacen("[1,2,0,0,0,0,0,1]", "[1,1,1,1,1,1,1,1,1,1,1,1,1,1]", 1),
            ),
            (
                "application count too large",
                good.replacen("[1,2,0,", "[1,4294967296,0,", 1),
            ),
            (
                "application count negative",
                good.replacen("[1,2,0,", "[1,-2,0,", 1),
            ),
            (
                "application counts not a list",
                good.replacen("[1,2,0,0,0,0,0,1]", "3", 1),
            ),
            (
                "application short",
                good.replacen("[43,0,[],null]", "[43,0]", 1),
            ),
            (
                "application long",
                good.replacen("[43,0,[],null]", "[43,0,[],null,1]", 1),
            ),
            (
                "application not an array",
                good.replacen("[43,0,[],null]", "{}", 1),
            ),
            (
                "pending not a list",
                good.replacen("\"pending_people\":[43]", "\"pending_people\":43", 1),
            ),
        ];
        let mut differ = Vec::new();
        for (name, text) in &cases {
            let before = legacy::decode(text.as_bytes()).map(OldState::into_state);
            let now = decode(text.as_bytes());
            let fast = canonical::read(text.as_bytes()).expect("no I/O");
            assert!(
                fast.is_none() || fast.as_ref() == now.as_ref().ok(),
                "{name}: the fast path reads only what the general reader reads alike"
            );
            // The one change since: `forgotten` (SPEC 8.2) is a field the reader knows.
            let now = now.map_err(|message| message.replace(", `forgotten`", ""));
            if now != before && !same_but_one_column_further(&now, &before) {
                differ.push(format!("{name}:\n  now:    {now:?}\n  before: {before:?}"));
            }
        }
        assert!(differ.is_empty(), "{}", differ.join("\n"));
        let messages: Vec<String> = cases
            .iter()
            .filter_map(|(_, text)| decode(text.as_bytes()).err())
            .collect();
        assert_eq!(messages.len(), cases.len() - 2, "all but two are refused");
    }

    /// Whether two messages are the same but for a column one further in `now`.
    fn same_but_one_column_further(
        now: &Result<State, String>,
        before: &Result<State, String>,
    ) -> bool {
        let (Err(now), Err(before)) = (now, before) else {
            return false;
        };
        let split = |message: &str| -> Option<(String, u64)> {
            let (text, column) = message.strip_suffix(')')?.rsplit_once(" column ")?;
            Some((text.to_owned(), column.parse().ok()?))
        };
        match (split(now), split(before)) {
            (Some((now, now_column)), Some((before, before_column))) => {
                now == before && now_column == before_column + 1
            }
            _ => false,
        }
    }

    /// The forgotten list (SPEC 8.2) is written only when not empty, after the applications,
    /// and reads back through both readers; a state without one is the bytes it always was.
    #[test]
    fn forgotten_round_trips_and_is_absent_when_empty() {
        let mut state = sample_state();
        assert!(!String::from_utf8(encode(&state))
            .expect("utf-8")
            .contains("forgotten"));
        for (id, suppressed, confirmed) in [
            (7, false, false),
            (8, false, true),
            (9, true, false),
            (10, true, true),
        ] {
            state.forgotten.insert(
                id,
                Forgotten {
                    suppressed,
                    confirmed,
                },
            );
        }
        let bytes = encode(&state);
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        assert!(
            text.ends_with(
                ",\"forgotten\":{\"7\":\"deleting\",\"8\":\"deleted\",\"9\":\"suppressing\",\"10\":\"suppressed\"}}\n"
            ),
            "{text}"
        );
        assert_eq!(
            canonical::read(&bytes[..]).expect("no I/O"),
            Some(state.clone())
        );
        assert_eq!(decode(&bytes), Ok(state.clone()));
        let value: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        let pretty = serde_json::to_vec_pretty(&value).expect("json");
        assert_eq!(decode(&pretty), Ok(state.clone()));
        let bad = text.replace("\"deleted\"", "\"erased\"");
        let message = decode(bad.as_bytes()).expect_err("unknown entry");
        assert!(
            message.contains("unknown variant `erased`") && message.contains("deleted"),
            "{message}"
        );
        let empty = text.replacen(
            &text[text.find(",\"forgotten\"").expect("field")..],
            "}\n",
            1,
        );
        state.forgotten.clear();
        assert_eq!(empty.as_bytes(), encode(&state));
        let with_empty = empty.replace("}}\n", "},\"forgotten\":{}}\n");
        assert_eq!(
            canonical::read(with_empty.as_bytes()).expect("no I/O"),
            None
        );
        assert_eq!(decode(with_empty.as_bytes()), Ok(state));
    }

    /// A valid state ciosync did not write as such (pretty-printed, fields reordered, numbers
    /// escaped) is not for the fast path, and the general reader reads it all the same.
    #[test]
    fn a_hand_edited_state_still_loads() {
        let state = sample_state();
        let value: serde_json::Value = serde_json::from_slice(&encode(&state)).expect("json");
        let pretty = serde_json::to_vec_pretty(&value).expect("json");
        let reordered = String::from_utf8(encode(&state))
            .expect("utf-8")
            .replacen("{\"version\":1,", "{", 1)
            .replace("}}\n", "},\"version\":1}\n")
            .replace("\"setup\":\"3130", "\"setup\":\"\\u0033130");
        for text in [pretty, reordered.into_bytes()] {
            assert_eq!(canonical::read(&text[..]).expect("no I/O"), None);
            assert_eq!(decode(&text), Ok(state.clone()));
        }
    }

    /// A state file that cannot be read (here: a directory) is an I/O error naming it, not
    /// "corrupt".
    #[test]
    fn an_unreadable_state_is_an_io_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::create_dir(state_path(dir.path())).expect("a directory in the way");
        let err = load(dir.path()).expect_err("refused");
        assert!(matches!(err, DataDirError::Io { .. }), "{err:?}");
        assert!(
            err.to_string().contains("cannot read the state file"),
            "{err}"
        );
    }

    #[test]
    fn first_run_has_no_state() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(load(dir.path()).expect("first run"), None);
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = sample_state();
        save(dir.path(), &state).expect("save");
        assert_eq!(load(dir.path()).expect("load"), Some(state));
    }

    #[test]
    fn encoding_is_compact_and_free_of_attribute_names() {
        let text = String::from_utf8(encode(&sample_state())).expect("utf-8");
        assert!(
            text.contains("\"900\":[42,2,[1,2,0,0,0,0,0,1],7]"),
            "{text}"
        );
        assert!(text.contains("\"901\":[43,0,[],null]"), "{text}");
        assert!(!text.contains("email"), "{text}");
    }

    #[test]
    fn previous_generation_is_kept_as_bak() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = sample_state();
        save(dir.path(), &first).expect("first save");
        assert!(
            !backup_path(dir.path()).exists(),
            "nothing to back up on the first save"
        );
        let first_bytes = fs::read(state_path(dir.path())).expect("read state");

        let mut second = first.clone();
        second.pending_people.clear();
        save(dir.path(), &second).expect("second save");
        assert_eq!(
            fs::read(backup_path(dir.path())).expect("read bak"),
            first_bytes
        );
        assert_eq!(load(dir.path()).expect("load"), Some(second.clone()));

        let mut third = second.clone();
        third.watermark = None;
        save(dir.path(), &third).expect("third save");
        assert_eq!(
            decode(&fs::read(backup_path(dir.path())).expect("bak")),
            Ok(second)
        );
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        let mut names = names;
        names.sort();
        assert_eq!(names, vec![STATE_FILE.to_owned(), BACKUP_FILE.to_owned()]);
    }

    #[test]
    fn files_are_0600_whatever_the_umask_and_dir_0700() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("nested/data");
        data_dir::ensure(&data_dir).expect("create data dir");
        assert_eq!(mode(&data_dir), 0o700);
        // Pre-existing group-readable file: its replacement must still be 0600.
        fs::write(state_path(&data_dir), b"old").expect("write");
        fs::set_permissions(state_path(&data_dir), fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let path = data_dir.join("other.json");
        data_dir::write_atomic(&path, b"{}", PRIVATE_FILE_MODE).expect("write");
        assert_eq!(mode(&path), 0o600);
        save(&data_dir, &sample_state()).expect("save");
        assert_eq!(mode(&state_path(&data_dir)), 0o600);
        load_or_create_key(&data_dir).expect_err("a state exists without a key");
    }

    /// Writes `bytes` as state.json (and optionally a good .bak), loads, and checks the error
    /// and that neither file changed.
    fn broken_state(bytes: &[u8], with_good_bak: bool) -> String {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(state_path(dir.path()), bytes).expect("write state");
        let good = encode(&sample_state());
        if with_good_bak {
            fs::write(backup_path(dir.path()), &good).expect("write bak");
        }
        let err = load(dir.path()).expect_err("broken state refused");
        assert_eq!(
            fs::read(state_path(dir.path())).expect("state still there"),
            bytes
        );
        if with_good_bak {
            assert_eq!(
                fs::read(backup_path(dir.path())).expect("bak still there"),
                good
            );
        }
        let top: crate::error::Error = err.into();
        assert_eq!(top.code(), crate::error::code::IO);
        top.to_string()
    }

    #[test]
    fn corrupt_state_is_refused_with_a_restore_hint() {
        let message = broken_state(b"{\"version\":1,\"setup\":\"x\",garbage}", true);
        assert!(message.contains("is corrupt"), "{message}");
        assert!(
            message.contains("cp ") && message.contains("state.json.bak"),
            "{message}"
        );
        let message = broken_state(b"{\"version\":1,\"setup\":\"x\",garbage}", false);
        assert!(
            message.contains("There is no previous generation"),
            "{message}"
        );
        assert!(message.contains("To start over"), "{message}");
    }

    #[test]
    fn truncated_state_is_refused() {
        let good = encode(&sample_state());
        let message = broken_state(&good[..good.len() / 2], true);
        assert!(message.contains("is truncated"), "{message}");
        assert!(
            message.contains("is readable: restore it with `cp "),
            "{message}"
        );
    }

    #[test]
    fn empty_state_is_refused() {
        assert!(broken_state(b"", true).contains("is empty"));
        assert!(broken_state(b"  \n", false).contains("is empty"));
    }

    #[test]
    fn future_or_unknown_version_is_refused() {
        let future = broken_state(b"{\"version\":2,\"totally\":\"new\"}", true);
        assert!(
            future.contains("has format version 2") && future.contains("reads version 1"),
            "{future}"
        );
        let none = broken_state(b"{\"people\":{}}", false);
        assert!(none.contains("no format version"), "{none}");
        let wrong = broken_state(b"[1,2,3]", false);
        assert!(wrong.contains("is corrupt"), "{wrong}");
    }

    #[test]
    fn bad_records_inside_a_valid_file_are_refused() {
        let text = String::from_utf8(encode(&sample_state())).expect("utf-8");
        let bad_side = text.replace("0,1],7]", "0,1],3]");
        assert!(broken_state(bad_side.as_bytes(), false)
            .contains("application 900: 3 is not a side status"));
        let bad_person = text.replacen("\"42\":\"", "\"42\":\"!!", 1);
        assert!(broken_state(bad_person.as_bytes(), false).contains("person 42"));
    }

    #[test]
    fn missing_state_beside_a_bak_is_an_error_not_a_reset() {
        let dir = tempfile::tempdir().expect("temp dir");
        let good = encode(&sample_state());
        fs::write(backup_path(dir.path()), &good).expect("write bak");
        let message = load(dir.path())
            .expect_err("missing state refused")
            .to_string();
        assert!(message.contains("is missing but"), "{message}");
        assert!(message.contains("cp "), "{message}");
        assert!(!state_path(dir.path()).exists());
        assert_eq!(fs::read(backup_path(dir.path())).expect("bak"), good);
    }

    #[test]
    fn key_is_created_once_and_reused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = load_or_create_key(dir.path()).expect("create");
        assert_eq!(mode(&dir.path().join(KEY_FILE)), 0o600);
        assert_eq!(load_or_create_key(dir.path()).expect("reuse"), key);
        let other = tempfile::tempdir().expect("temp dir");
        assert_ne!(
            load_or_create_key(other.path()).expect("create"),
            key,
            "keys are random"
        );
    }

    #[test]
    fn missing_key_beside_a_state_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        save(dir.path(), &sample_state()).expect("save");
        let message = load_or_create_key(dir.path())
            .expect_err("refused")
            .to_string();
        assert!(
            message.contains("is missing but a state exists"),
            "{message}"
        );
        assert!(!dir.path().join(KEY_FILE).exists(), "no new key written");
        fs::write(dir.path().join(KEY_FILE), "not hex").expect("write");
        let message = load_or_create_key(dir.path())
            .expect_err("malformed")
            .to_string();
        assert!(message.contains("malformed"), "{message}");
    }

    #[test]
    fn unusable_data_dir_is_exit_74() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("a-file");
        fs::write(&file, b"x").expect("write");
        let err = data_dir::ensure(&file.join("data")).expect_err("cannot create under a file");
        let top: crate::error::Error = err.into();
        assert_eq!(top.code(), crate::error::code::IO);
        assert!(top.to_string().contains("a-file/data"), "{top}");
        let err = data_dir::ensure(&file).expect_err("a file is not a dir");
        assert!(err.to_string().contains("a-file"), "{err}");
    }

    #[test]
    fn setup_fingerprint_is_canonical_and_sensitive() {
        let base = setup_fingerprint("https://gis/graphql", &[2, 1, 2], "site", "https://track");
        assert_eq!(base.len(), 64);
        assert_eq!(
            base,
            setup_fingerprint("https://gis/graphql", &[1, 2], "site", "https://track")
        );
        for other in [
            setup_fingerprint("https://gis2/graphql", &[1, 2], "site", "https://track"),
            setup_fingerprint("https://gis/graphql", &[1, 3], "site", "https://track"),
            setup_fingerprint("https://gis/graphql", &[1, 2], "site2", "https://track"),
            setup_fingerprint("https://gis/graphql", &[1, 2], "site", "https://track-eu"),
            setup_fingerprint("https://gis/graphql", &[12], "site", "https://track"),
        ] {
            assert_ne!(base, other);
        }
    }

    /// The bytes a person and an application take in memory, id included, as the README and
    /// docs/benchmark.md give them (issue 12: a million people and three million
    /// applications in about 180 MiB).
    #[test]
    fn records_are_compact_in_memory() {
        let id = size_of::<PersonId>();
        assert_eq!(id + size_of::<PersonState>(), 68);
        assert_eq!(id + size_of::<ApplicationState>(), 40);
        let state = large_state(3_000, 9_000);
        let loaded = decode(&encode(&state)).expect("decodes");
        let held = loaded.people.heap_bytes() + loaded.applications.heap_bytes();
        assert_eq!(
            held,
            3_000 * 68 + 9_000 * 40,
            "a loaded state holds no spare capacity"
        );
    }

    /// SPEC scale: 50,000 people and 150,000 applications must stay under 15 MB.
    #[test]
    fn large_state_stays_small() {
        let state = large_state(50_000, 150_000);
        let bytes = encode(&state);
        assert!(bytes.len() < 15_000_000, "state is {} bytes", bytes.len());
        assert_eq!(decode(&bytes).as_ref(), Ok(&state));
    }

    /// `people` people with random fingerprints and `applications` applications, three a
    /// person, as a large office's state.
    fn large_state(people: u64, applications: u64) -> State {
        let mut state = State {
            setup: "f".repeat(64),
            ..State::default()
        };
        let mut seed: u32 = 0x9e37_79b9;
        let mut next = || {
            // xorshift: full-entropy fingerprints, as HMAC output would be.
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for i in 0..people {
            let mut person = PersonState::default();
            for slot in &mut person.attrs {
                *slot = next();
            }
            state.people.insert(10_000_000 + i, person);
        }
        for i in 0..applications {
            let mut count = [0; EventKind::COUNT];
            count[..4].copy_from_slice(&[1, 1, 1, 1]);
            count[9] = 1;
            state.applications.insert(
                100_000_000 + i,
                ApplicationState {
                    person_id: 10_000_000 + i / 3,
                    rank: 4,
                    count: count.into(),
                    last_side: Some(Side::RemoteRealizationBroken),
                },
            );
        }
        state
    }

    fn arb_person() -> impl Strategy<Value = PersonState> {
        (
            proptest::array::uniform14(any::<u32>()),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(attrs, in_scope, in_scope_sent)| PersonState {
                attrs,
                in_scope,
                in_scope_sent,
            })
    }

    fn arb_application() -> impl Strategy<Value = ApplicationState> {
        (
            any::<u64>(),
            0u8..=6,
            proptest::array::uniform13(prop_oneof![Just(0u32), 0u32..4, any::<u32>()]),
            proptest::option::of(proptest::sample::select(Side::ALL.to_vec())),
        )
            .prop_map(|(person_id, rank, count, last_side)| ApplicationState {
                person_id,
                rank,
                count: count.into(),
                last_side,
            })
    }

    fn arb_time() -> impl Strategy<Value = Option<DateTime<Utc>>> {
        proptest::option::of(
            (0i64..4_102_444_800, 0u32..1_000_000_000)
                .prop_map(|(secs, nanos)| DateTime::from_timestamp(secs, nanos).expect("in range")),
        )
    }

    fn arb_state() -> impl Strategy<Value = State> {
        (
            "[0-9a-f]{0,64}",
            proptest::collection::btree_map(any::<u64>(), arb_person(), 0..20),
            proptest::collection::btree_map(any::<u64>(), arb_application(), 0..20),
            proptest::collection::btree_set(any::<u64>(), 0..10),
            (arb_time(), arb_time(), arb_time()),
        )
            .prop_map(
                |(
                    setup,
                    people,
                    applications,
                    pending_people,
                    (watermark, last_full_read, run_in_progress),
                )| State {
                    setup,
                    people: people.into_iter().collect(),
                    applications: applications.into_iter().collect(),
                    pending_people,
                    watermark,
                    last_full_read,
                    run_in_progress,
                    // Written only when not empty; `forgotten_round_trips` covers it.
                    forgotten: BTreeMap::new(),
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the state, decoding its encoding gives it back, and both are what they
        /// were before issue 12.
        #[test]
        fn encoding_round_trips(state in arb_state()) {
            let bytes = encode(&state);
            prop_assert_eq!(canonical::read(&bytes[..]).expect("no I/O"), Some(state.clone()));
            prop_assert_eq!(&bytes, &legacy::encode(&OldState::from_state(&state)));
            prop_assert_eq!(legacy::decode(&bytes).map(OldState::into_state), Ok(state.clone()));
            prop_assert_eq!(decode(&bytes), Ok(state));
        }
    }

    /// Under the umask of cron and systemd (0o022) a plain create gives 0644; state, key and
    /// credentials must still be 0600. std cannot set the umask (and `unsafe` is forbidden),
    /// so this re-runs the test binary under `sh -c 'umask 022; ...'` for the writes.
    #[test]
    fn umask_022_still_gives_0600() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        let exe = std::env::current_exe().expect("test binary path");
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg("umask 022 && exec \"$0\" --exact --test-threads=1 state::tests::umask_child")
            .arg(&exe)
            .env(UMASK_CHILD_ENV, &data_dir)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run the child test");
        assert!(status.success(), "child test failed");
        assert_eq!(mode(&data_dir), 0o700);
        assert_eq!(mode(&state_path(&data_dir)), 0o600);
        assert_eq!(mode(&backup_path(&data_dir)), 0o600);
        assert_eq!(mode(&data_dir.join(KEY_FILE)), 0o600);
        // A control file created by the child without an explicit mode shows the umask applied.
        assert_eq!(mode(&data_dir.join("control")), 0o644);
    }

    const UMASK_CHILD_ENV: &str = "CIOSYNC_TEST_UMASK_CHILD_DIR";

    /// The writing half of [`umask_022_still_gives_0600`]; does nothing when run on its own.
    #[test]
    fn umask_child() {
        let Some(data_dir) = std::env::var_os(UMASK_CHILD_ENV) else {
            return;
        };
        let data_dir = PathBuf::from(data_dir);
        data_dir::ensure(&data_dir).expect("data dir");
        load_or_create_key(&data_dir).expect("key");
        save(&data_dir, &sample_state()).expect("first save");
        save(&data_dir, &State::default()).expect("second save");
        fs::write(data_dir.join("control"), b"x").expect("control file");
    }
}

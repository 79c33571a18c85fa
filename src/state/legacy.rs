//! The state codec and in-memory types as they were before issue 12 (commit 32f760f):
//! `BTreeMap`s of plain structs, the whole file read, parsed into `String`s per person and
//! converted, and encoded into one `Vec<u8>`. Kept verbatim as the oracle the streaming
//! codec is tested against (same bytes, same messages) and as the "before" of the state
//! benchmark, which includes this file (`benches/state.rs`); so it names what it uses
//! through `super::` only.

use std::collections::{BTreeMap, BTreeSet};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    ApplicationId, EventKind, PersonId, PersonState, Side, State, Step, ATTRIBUTES, STATE_VERSION,
};

/// The state as held in memory before issue 12.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OldState {
    pub setup: String,
    pub people: BTreeMap<PersonId, PersonState>,
    pub applications: BTreeMap<ApplicationId, OldApplicationState>,
    pub pending_people: BTreeSet<PersonId>,
    pub watermark: Option<DateTime<Utc>>,
    pub last_full_read: Option<DateTime<Utc>>,
    pub run_in_progress: Option<DateTime<Utc>>,
}

/// An application as held in memory before issue 12: thirteen `u32` counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OldApplicationState {
    pub person_id: PersonId,
    pub rank: u8,
    pub count: [u32; EventKind::COUNT],
    pub last_side: Option<Side>,
}

impl OldState {
    /// The same state in today's types.
    pub fn into_state(self) -> State {
        State {
            setup: self.setup,
            people: self.people.into_iter().collect(),
            applications: self
                .applications
                .into_iter()
                .map(|(id, app)| {
                    let new = super::ApplicationState {
                        person_id: app.person_id,
                        rank: app.rank,
                        count: app.count.into(),
                        last_side: app.last_side,
                    };
                    (id, new)
                })
                .collect(),
            pending_people: self.pending_people,
            watermark: self.watermark,
            last_full_read: self.last_full_read,
            run_in_progress: self.run_in_progress,
            // Issue 13 (SPEC 8.2) added it after this oracle was frozen.
            forgotten: Default::default(),
        }
    }

    /// Today's state in the old types.
    pub fn from_state(state: &State) -> OldState {
        OldState {
            setup: state.setup.clone(),
            people: state
                .people
                .iter()
                .map(|(id, p)| (*id, p.clone()))
                .collect(),
            applications: state
                .applications
                .iter()
                .map(|(id, app)| {
                    let old = OldApplicationState {
                        person_id: app.person_id,
                        rank: app.rank,
                        count: app.count.to_array(),
                        last_side: app.last_side,
                    };
                    (*id, old)
                })
                .collect(),
            pending_people: state.pending_people.clone(),
            watermark: state.watermark,
            last_full_read: state.last_full_read,
            run_in_progress: state.run_in_progress,
        }
    }
}

/// The state as the bytes of `state.json`.
pub fn encode(state: &OldState) -> Vec<u8> {
    let file = StateFile {
        version: STATE_VERSION,
        setup: state.setup.clone(),
        watermark: state.watermark,
        last_full_read: state.last_full_read,
        run_in_progress: state.run_in_progress,
        pending_people: state.pending_people.clone(),
        people: state
            .people
            .iter()
            .map(|(id, person)| (*id, encode_person(person)))
            .collect(),
        applications: state
            .applications
            .iter()
            .map(|(id, app)| (*id, encode_application(app)))
            .collect(),
    };
    let mut bytes =
        serde_json::to_vec(&file).expect("the state is plain data and always serializes");
    bytes.push(b'\n');
    bytes
}

/// Parses the bytes of `state.json`; the error says what is wrong (for "the state file X …").
pub fn decode(bytes: &[u8]) -> Result<OldState, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("is empty".to_owned());
    }
    // Read the version alone first, so a future format is reported as such rather than as
    // whatever field it no longer has.
    let probe: VersionProbe = serde_json::from_slice(bytes).map_err(describe_json_error)?;
    match probe.version {
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(u64::from(STATE_VERSION)) => {}
        Some(serde_json::Value::Number(n)) => {
            return Err(format!(
                "has format version {n}, but this ciosync reads version {STATE_VERSION} only \
                 (was it written by another ciosync release? run that release, or restore)"
            ))
        }
        Some(other) => return Err(format!("has an invalid format version {other}")),
        None => return Err("has no format version: it is not a ciosync state file".to_owned()),
    }
    let file: StateFile = serde_json::from_slice(bytes).map_err(describe_json_error)?;
    let mut people = BTreeMap::new();
    for (id, encoded) in file.people {
        let person =
            decode_person(&encoded).map_err(|why| format!("is corrupt (person {id}: {why})"))?;
        people.insert(id, person);
    }
    let mut applications = BTreeMap::new();
    for (id, record) in file.applications {
        let app = decode_application(record)
            .map_err(|why| format!("is corrupt (application {id}: {why})"))?;
        applications.insert(id, app);
    }
    Ok(OldState {
        setup: file.setup,
        people,
        applications,
        pending_people: file.pending_people,
        watermark: file.watermark,
        last_full_read: file.last_full_read,
        run_in_progress: file.run_in_progress,
    })
}

fn describe_json_error(err: serde_json::Error) -> String {
    if err.is_eof() {
        format!("is truncated ({err})")
    } else {
        format!("is corrupt ({err})")
    }
}

/// Just the version of a state file.
#[derive(Deserialize)]
struct VersionProbe {
    version: Option<serde_json::Value>,
}

/// `state.json` as stored.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    setup: String,
    watermark: Option<DateTime<Utc>>,
    last_full_read: Option<DateTime<Utc>>,
    run_in_progress: Option<DateTime<Utc>>,
    pending_people: BTreeSet<PersonId>,
    /// Person id → base64url of `[flags, fingerprints as u32 big-endian...]`.
    people: BTreeMap<PersonId, String>,
    applications: BTreeMap<ApplicationId, ApplicationRecord>,
}

/// `[person_id, rank, [counts with trailing zeros trimmed], last_side or null]`, where
/// `last_side` is the side's [`EventKind::index`] (stable: append-only), not its name, which
/// would double the size of a large state.
#[derive(Serialize, Deserialize)]
struct ApplicationRecord(PersonId, u8, Vec<u32>, Option<usize>);

/// Bits of the person flags byte.
const IN_SCOPE: u8 = 0b01;
const IN_SCOPE_SENT: u8 = 0b10;

fn encode_person(person: &PersonState) -> String {
    let mut bytes = Vec::with_capacity(1 + 4 * person.attrs.len());
    let mut flags = 0;
    if person.in_scope {
        flags |= IN_SCOPE;
    }
    if person.in_scope_sent {
        flags |= IN_SCOPE_SENT;
    }
    bytes.push(flags);
    for fingerprint in person.attrs {
        bytes.extend_from_slice(&fingerprint.to_be_bytes());
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

fn decode_person(encoded: &str) -> Result<PersonState, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|err| format!("bad base64: {err}"))?;
    let (flags, fingerprints) = bytes.split_first().ok_or("empty record")?;
    if flags & !(IN_SCOPE | IN_SCOPE_SENT) != 0 {
        return Err(format!("unknown flags {flags:#04x}"));
    }
    if fingerprints.len() != 4 * ATTRIBUTES.len() {
        return Err(format!(
            "{} bytes of fingerprints, expected {}",
            fingerprints.len(),
            4 * ATTRIBUTES.len()
        ));
    }
    let mut person = PersonState {
        in_scope: flags & IN_SCOPE != 0,
        in_scope_sent: flags & IN_SCOPE_SENT != 0,
        ..PersonState::default()
    };
    for (slot, chunk) in person.attrs.iter_mut().zip(fingerprints.chunks_exact(4)) {
        *slot = u32::from_be_bytes(chunk.try_into().expect("chunks_exact yields 4 bytes"));
    }
    Ok(person)
}

fn encode_application(app: &OldApplicationState) -> ApplicationRecord {
    let used = app
        .count
        .iter()
        .rposition(|&n| n != 0)
        .map_or(0, |last| last + 1);
    ApplicationRecord(
        app.person_id,
        app.rank,
        app.count[..used].to_vec(),
        app.last_side.map(|side| EventKind::Side(side).index()),
    )
}

fn decode_application(record: ApplicationRecord) -> Result<OldApplicationState, String> {
    let ApplicationRecord(person_id, rank, counts, last_side) = record;
    if usize::from(rank) > Step::ALL.len() {
        return Err(format!("rank {rank} is out of range"));
    }
    if counts.len() > EventKind::COUNT {
        return Err(format!(
            "{} counts, at most {} expected",
            counts.len(),
            EventKind::COUNT
        ));
    }
    let mut count = [0; EventKind::COUNT];
    count[..counts.len()].copy_from_slice(&counts);
    let last_side = match last_side {
        None => None,
        Some(index) => match EventKind::ALL.get(index) {
            Some(EventKind::Side(side)) => Some(*side),
            _ => return Err(format!("{index} is not a side status")),
        },
    };
    Ok(OldApplicationState {
        person_id,
        rank,
        count,
        last_side,
    })
}

//! `state.json` version 1, read and written as a stream: records go straight between the
//! file and the state's [`Table`]s, with no intermediate JSON tree, no string per person
//! and no buffer of the whole file, so a million-person state loads and saves in little more
//! memory than the tables themselves.
//!
//! The format (SPEC 5.2) is fixed byte for byte: `{"version":1,"setup":…,"watermark":…,
//! "last_full_read":…,"run_in_progress":…,"pending_people":[…],"people":{…},
//! "applications":{…}}` and a newline. A person is one base64url string (a flags byte and
//! the 14 fingerprints as big-endian `u32`), an application a short array
//! `[person_id, rank, [counts with trailing zeros trimmed], last_side]`.
//!
//! `"forgotten":{"<id>":"deleted",…}` (SPEC 8.2) is an optional last field of version 1,
//! written only when the list is not empty: a state without forgotten ids is the same bytes
//! as before it existed, and a file without the field loads with an empty list. An older
//! ciosync refuses a file that has it (an unknown field), which is what it must do: it could
//! not keep the promise that nothing is sent for those ids.
//!
//! A file exactly as ciosync writes it is read by [`canonical`], several times faster;
//! anything else (a hand-edited file, a broken one) by the serde reader here.
//!
//! What is wrong with a file is reported in a fixed order, whatever the order of its fields:
//! not JSON (or truncated) first, then an unknown format version, then a field that is
//! unknown, missing, repeated or of the wrong type, then a bad record (the lowest person id,
//! then the lowest application id). The one streaming pass finds most of these; when it
//! fails, a second streaming pass over the file ([`explain`]) finds whether an earlier
//! problem in that order applies. The messages are those of the decoder before issue 12,
//! word for word, except that serde_json may place a problem inside a value one column
//! further when it reads from a stream than when it read from a buffer (it counts the byte
//! it peeked at).

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::{DecodeSliceError, Engine as _};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

use super::{
    canonical, ApplicationState, Counts, Forgotten, PersonState, State, Table, STATE_VERSION,
};
use crate::model::{ApplicationId, EventKind, PersonId, Step, ATTRIBUTES};

/// Bytes of one person's record before base64: the flags byte and the fingerprints.
const PERSON_BYTES: usize = 1 + 4 * ATTRIBUTES.len();
/// Length of one person's record in base64url without padding.
const PERSON_BASE64_LEN: usize = (PERSON_BYTES * 4).div_ceil(3);

/// Bits of the person flags byte.
const IN_SCOPE: u8 = 0b01;
const IN_SCOPE_SENT: u8 = 0b10;

/// Size of the read buffer: large enough that the parser rarely waits on a `read` call.
pub(super) const READ_BUFFER: usize = 1 << 20;

/// Writes `state` as the bytes of `state.json` to `out` (which should be buffered).
///
/// # Errors
/// Whatever writing to `out` returns.
pub(super) fn write_state(out: &mut dyn Write, state: &State) -> io::Result<()> {
    let mut serializer = serde_json::Serializer::new(&mut *out);
    FileRef(state)
        .serialize(&mut serializer)
        .map_err(io::Error::from)?;
    out.write_all(b"\n")
}

/// Why a state could not be read.
#[derive(Debug)]
pub(super) enum ReadError {
    /// Reading failed at the OS level.
    Io(io::Error),
    /// The content is not a usable state; the text completes "the state file X …".
    Invalid(String),
}

/// Reads a state from what `open` returns (called once, and again only when the state is
/// unusable, to say why).
///
/// # Errors
/// [`ReadError::Io`] when reading fails, [`ReadError::Invalid`] when the content is empty,
/// truncated, corrupt or of another version.
pub(super) fn read_state<R: Read>(open: impl Fn() -> io::Result<R>) -> Result<State, ReadError> {
    let reader = BufReader::with_capacity(READ_BUFFER, open().map_err(ReadError::Io)?);
    if let Some(state) = canonical::read(reader).map_err(ReadError::Io)? {
        return Ok(state);
    }
    let reader = BufReader::with_capacity(READ_BUFFER, open().map_err(ReadError::Io)?);
    let problem = match parse(reader) {
        Ok(Parsed {
            state,
            bad_person: None,
            bad_application: None,
        }) => return Ok(state),
        Ok(Parsed {
            bad_person: Some((id, why)),
            ..
        }) => format!("is corrupt (person {id}: {why})"),
        Ok(Parsed {
            bad_application: Some((id, why)),
            ..
        }) => format!("is corrupt (application {id}: {why})"),
        Err(err) if err.is_io() => return Err(ReadError::Io(err.into())),
        Err(err) => describe_json_error(err),
    };
    match explain(&open) {
        Ok(earlier) => Err(ReadError::Invalid(earlier.unwrap_or(problem))),
        Err(err) => Err(ReadError::Io(err)),
    }
}

/// The problem of an unusable file that comes before any the streaming pass reports: empty,
/// not JSON, or not version 1. `None` when it has none of these.
fn explain<R: Read>(open: &impl Fn() -> io::Result<R>) -> io::Result<Option<String>> {
    if only_whitespace(BufReader::with_capacity(READ_BUFFER, open()?))? {
        return Ok(Some("is empty".to_owned()));
    }
    // The version alone first, so a future format is reported as such rather than as
    // whatever field it no longer has.
    let probe: VersionProbe =
        match serde_json::from_reader(BufReader::with_capacity(READ_BUFFER, open()?)) {
            Ok(probe) => probe,
            Err(err) if err.is_io() => return Err(err.into()),
            Err(err) => return Ok(Some(describe_json_error(err))),
        };
    Ok(match probe.version {
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(u64::from(STATE_VERSION)) => None,
        Some(serde_json::Value::Number(n)) => Some(format!(
            "has format version {n}, but this ciosync reads version {STATE_VERSION} only \
             (was it written by another ciosync release? run that release, or restore)"
        )),
        Some(other) => Some(format!("has an invalid format version {other}")),
        None => Some("has no format version: it is not a ciosync state file".to_owned()),
    })
}

/// Whether everything `reader` yields is ASCII whitespace (or nothing at all).
fn only_whitespace(mut reader: impl BufRead) -> io::Result<bool> {
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(true);
        }
        if !chunk.iter().all(u8::is_ascii_whitespace) {
            return Ok(false);
        }
        let read = chunk.len();
        reader.consume(read);
    }
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

// ---------------------------------------------------------------------------------------
// Writing.

/// `state.json` as written: the fields in this order, each always present.
struct FileRef<'a>(&'a State);

impl Serialize for FileRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let state = self.0;
        let mut file = serializer.serialize_struct("StateFile", FIELDS.len())?;
        file.serialize_field("version", &STATE_VERSION)?;
        file.serialize_field("setup", &state.setup)?;
        file.serialize_field("watermark", &state.watermark)?;
        file.serialize_field("last_full_read", &state.last_full_read)?;
        file.serialize_field("run_in_progress", &state.run_in_progress)?;
        file.serialize_field("pending_people", &state.pending_people)?;
        file.serialize_field("people", &PeopleRef(&state.people))?;
        file.serialize_field("applications", &ApplicationsRef(&state.applications))?;
        if state.forgotten.is_empty() {
            file.skip_field("forgotten")?;
        } else {
            file.serialize_field("forgotten", &ForgottenRef(&state.forgotten))?;
        }
        file.end()
    }
}

struct ForgottenRef<'a>(&'a std::collections::BTreeMap<PersonId, Forgotten>);

impl Serialize for ForgottenRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (id, entry) in self.0 {
            map.serialize_entry(id, forgotten_name(*entry))?;
        }
        map.end()
    }
}

/// How a forgotten id is written: whether customer.io confirmed, and how it was erased.
pub(super) fn forgotten_name(entry: Forgotten) -> &'static str {
    match (entry.suppressed, entry.confirmed) {
        (false, false) => "deleting",
        (false, true) => "deleted",
        (true, false) => "suppressing",
        (true, true) => "suppressed",
    }
}

/// The entry a name of [`forgotten_name`] stands for.
pub(super) fn forgotten_entry(name: &str) -> Option<Forgotten> {
    let (suppressed, confirmed) = match name {
        "deleting" => (false, false),
        "deleted" => (false, true),
        "suppressing" => (true, false),
        "suppressed" => (true, true),
        _ => return None,
    };
    Some(Forgotten {
        suppressed,
        confirmed,
    })
}

struct PeopleRef<'a>(&'a Table<PersonState>);

impl Serialize for PeopleRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        let mut text = [0u8; PERSON_BASE64_LEN];
        for (id, person) in self.0 {
            map.serialize_entry(id, encode_person(person, &mut text))?;
        }
        map.end()
    }
}

struct ApplicationsRef<'a>(&'a Table<ApplicationState>);

impl Serialize for ApplicationsRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (id, app) in self.0 {
            let counts = app.count.to_array();
            let used = counts
                .iter()
                .rposition(|&n| n != 0)
                .map_or(0, |last| last + 1);
            let side = app.last_side.map(|side| EventKind::Side(side).index());
            map.serialize_entry(id, &(app.person_id, app.rank, &counts[..used], side))?;
        }
        map.end()
    }
}

/// One person's record, base64url in `text`.
fn encode_person<'t>(person: &PersonState, text: &'t mut [u8; PERSON_BASE64_LEN]) -> &'t str {
    let mut bytes = [0u8; PERSON_BYTES];
    let mut flags = 0;
    if person.in_scope {
        flags |= IN_SCOPE;
    }
    if person.in_scope_sent {
        flags |= IN_SCOPE_SENT;
    }
    bytes[0] = flags;
    for (chunk, fingerprint) in bytes[1..].chunks_exact_mut(4).zip(person.attrs) {
        chunk.copy_from_slice(&fingerprint.to_be_bytes());
    }
    let written = URL_SAFE_NO_PAD
        .encode_slice(bytes, text)
        .expect("the buffer fits a person's record");
    std::str::from_utf8(&text[..written]).expect("base64 is ASCII")
}

// ---------------------------------------------------------------------------------------
// Reading.

/// The fields of `state.json`, in the order they are written.
const FIELDS: &[&str] = &[
    "version",
    "setup",
    "watermark",
    "last_full_read",
    "run_in_progress",
    "pending_people",
    "people",
    "applications",
    "forgotten",
];

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    Version,
    Setup,
    Watermark,
    LastFullRead,
    RunInProgress,
    PendingPeople,
    People,
    Applications,
    Forgotten,
}

/// What the streaming pass found: the state, and the first bad record of each kind (its
/// JSON is fine, what it says is not), which makes the file unusable.
struct Parsed {
    state: State,
    bad_person: Option<(PersonId, String)>,
    bad_application: Option<(ApplicationId, String)>,
}

fn parse(reader: impl Read) -> Result<Parsed, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let parsed = deserializer.deserialize_struct("StateFile", FIELDS, FileVisitor)?;
    deserializer.end()?;
    Ok(parsed)
}

struct FileVisitor;

impl<'de> Visitor<'de> for FileVisitor {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct StateFile")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        let mut version = false;
        let mut setup = None;
        let mut watermark = None;
        let mut last_full_read = None;
        let mut run_in_progress = None;
        let mut pending_people = None;
        let mut people: Option<(Table<PersonState>, _)> = None;
        let mut applications: Option<(Table<ApplicationState>, _)> = None;
        let mut forgotten: Option<std::collections::BTreeMap<PersonId, ForgottenText>> = None;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Version => {
                    once(version, "version")?;
                    version = true;
                    let value: serde_json::Value = map.next_value()?;
                    if value.as_u64() != Some(u64::from(STATE_VERSION)) {
                        // `explain` says what is wrong with it.
                        return Err(de::Error::custom("unsupported format version"));
                    }
                }
                Field::Setup => {
                    once(setup.is_some(), "setup")?;
                    setup = Some(map.next_value()?);
                }
                Field::Watermark => {
                    once(watermark.is_some(), "watermark")?;
                    watermark = Some(map.next_value()?);
                }
                Field::LastFullRead => {
                    once(last_full_read.is_some(), "last_full_read")?;
                    last_full_read = Some(map.next_value()?);
                }
                Field::RunInProgress => {
                    once(run_in_progress.is_some(), "run_in_progress")?;
                    run_in_progress = Some(map.next_value()?);
                }
                Field::PendingPeople => {
                    once(pending_people.is_some(), "pending_people")?;
                    pending_people = Some(map.next_value()?);
                }
                Field::People => {
                    once(people.is_some(), "people")?;
                    people = Some(map.next_value_seed(RecordsSeed(PersonKind))?);
                }
                Field::Applications => {
                    once(applications.is_some(), "applications")?;
                    applications = Some(map.next_value_seed(RecordsSeed(ApplicationKind))?);
                }
                Field::Forgotten => {
                    once(forgotten.is_some(), "forgotten")?;
                    forgotten = Some(map.next_value()?);
                }
            }
        }
        if !version {
            return Err(de::Error::missing_field("version"));
        }
        let setup = setup.ok_or_else(|| de::Error::missing_field("setup"))?;
        let pending_people =
            pending_people.ok_or_else(|| de::Error::missing_field("pending_people"))?;
        let (people, bad_person) = people.ok_or_else(|| de::Error::missing_field("people"))?;
        let (applications, bad_application) =
            applications.ok_or_else(|| de::Error::missing_field("applications"))?;
        Ok(Parsed {
            state: State {
                setup,
                people,
                applications,
                pending_people,
                watermark: watermark.flatten(),
                last_full_read: last_full_read.flatten(),
                run_in_progress: run_in_progress.flatten(),
                forgotten: forgotten
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(id, entry)| (id, entry.0))
                    .collect(),
            },
            bad_person,
            bad_application,
        })
    }
}

/// One entry of `forgotten`: a name of [`forgotten_name`] (anything else is refused, naming
/// the names it may be).
struct ForgottenText(Forgotten);

impl<'de> Deserialize<'de> for ForgottenText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const NAMES: &[&str] = &["deleting", "deleted", "suppressing", "suppressed"];
        let name = String::deserialize(deserializer)?;
        forgotten_entry(&name)
            .map(ForgottenText)
            .ok_or_else(|| de::Error::unknown_variant(&name, NAMES))
    }
}

/// Fails when `field` came before (checked before its value is read, where a derived
/// `Deserialize` checks it, so the error names the same position).
fn once<E: de::Error>(seen: bool, field: &'static str) -> Result<(), E> {
    if seen {
        Err(E::duplicate_field(field))
    } else {
        Ok(())
    }
}

/// How one kind of record is read from its JSON value and checked.
trait Record: Copy {
    type Value: Default;
    /// What the record's JSON decodes to before it is checked.
    type Raw<'de>: Deserialize<'de>;
    fn check(raw: Self::Raw<'_>) -> Result<Self::Value, String>;
}

#[derive(Clone, Copy)]
struct PersonKind;

impl Record for PersonKind {
    type Value = PersonState;
    type Raw<'de> = PersonText;

    fn check(raw: PersonText) -> Result<PersonState, String> {
        raw.0
    }
}

/// A person's record, decoded as soon as the parser hands over its text (which it does
/// from its own scratch buffer: no `String` per person).
struct PersonText(Result<PersonState, String>);

impl<'de> Deserialize<'de> for PersonText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = PersonText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<PersonText, E> {
                Ok(PersonText(decode_person(text)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

#[derive(Clone, Copy)]
struct ApplicationKind;

impl Record for ApplicationKind {
    type Value = ApplicationState;
    type Raw<'de> = ApplicationRecord;

    fn check(raw: ApplicationRecord) -> Result<ApplicationState, String> {
        decode_application(raw)
    }
}

/// `[person_id, rank, [counts with trailing zeros trimmed], last_side or null]`, where
/// `last_side` is the side's [`EventKind::index`] (stable: append-only), not its name, which
/// would double the size of a large state. (Its name shows in error messages.)
#[derive(Deserialize)]
pub(super) struct ApplicationRecord(
    pub(super) PersonId,
    pub(super) u8,
    pub(super) CountList,
    pub(super) Option<usize>,
);

/// The counts of an application as listed (`len` of them), the first
/// [`EventKind::COUNT`] kept.
pub(super) struct CountList {
    pub(super) counts: [u32; EventKind::COUNT],
    pub(super) len: usize,
}

impl<'de> Deserialize<'de> for CountList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = CountList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CountList, A::Error> {
                let mut list = CountList {
                    counts: [0; EventKind::COUNT],
                    len: 0,
                };
                while let Some(count) = seq.next_element::<u32>()? {
                    if let Some(slot) = list.counts.get_mut(list.len) {
                        *slot = count;
                    }
                    list.len += 1;
                }
                Ok(list)
            }
        }
        deserializer.deserialize_seq(ListVisitor)
    }
}

/// Reads a map of records straight into a [`Table`], noting the lowest id whose record is
/// bad (reading goes on, so a later structural problem still comes first).
struct RecordsSeed<R>(R);

impl<'de, R: Record> DeserializeSeed<'de> for RecordsSeed<R> {
    type Value = (Table<R::Value>, Option<(u64, String)>);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, R: Record> Visitor<'de> for RecordsSeed<R> {
    type Value = (Table<R::Value>, Option<(u64, String)>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut table = Table::new();
        let mut bad: Option<(u64, String)> = None;
        while let Some(id) = map.next_key::<u64>()? {
            match R::check(map.next_value::<R::Raw<'de>>()?) {
                Ok(value) => table.push_in_order(id, value),
                Err(why) => {
                    if bad.as_ref().is_none_or(|(first, _)| id < *first) {
                        bad = Some((id, why));
                    }
                }
            }
        }
        table.shrink_to_fit();
        Ok((table, bad))
    }
}

pub(super) fn decode_person(encoded: &str) -> Result<PersonState, String> {
    let mut buffer = [0u8; PERSON_BYTES];
    let bytes: Vec<u8>;
    let decoded: &[u8] = match URL_SAFE_NO_PAD.decode_slice(encoded, &mut buffer) {
        Ok(len) => &buffer[..len],
        Err(DecodeSliceError::DecodeError(err)) => return Err(format!("bad base64: {err}")),
        // Longer than any good record: decode it all to say how long it is.
        Err(DecodeSliceError::OutputSliceTooSmall) => {
            bytes = URL_SAFE_NO_PAD
                .decode(encoded)
                .map_err(|err| format!("bad base64: {err}"))?;
            &bytes
        }
    };
    let (flags, fingerprints) = decoded.split_first().ok_or("empty record")?;
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

pub(super) fn decode_application(record: ApplicationRecord) -> Result<ApplicationState, String> {
    let ApplicationRecord(person_id, rank, list, last_side) = record;
    if usize::from(rank) > Step::ALL.len() {
        return Err(format!("rank {rank} is out of range"));
    }
    if list.len > EventKind::COUNT {
        return Err(format!(
            "{} counts, at most {} expected",
            list.len,
            EventKind::COUNT
        ));
    }
    let last_side = match last_side {
        None => None,
        Some(index) => match EventKind::ALL.get(index) {
            Some(EventKind::Side(side)) => Some(*side),
            _ => return Err(format!("{index} is not a side status")),
        },
    };
    Ok(ApplicationState {
        person_id,
        rank,
        count: Counts::from(list.counts),
        last_side,
    })
}

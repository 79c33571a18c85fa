//! The fast path of loading: a reader for `state.json` exactly as ciosync writes it.
//!
//! serde_json reading from a stream goes byte by byte through its line and column
//! bookkeeping, about 70 MB/s here: 3 s for a million-person state, the whole of a no-change
//! run's budget. A file ciosync wrote has one shape only (fields in a fixed order, no
//! whitespace, no escapes in the big maps, a newline at the end), which this reads straight
//! from the read buffer, records decoded by the same functions as [`super::codec`]'s.
//!
//! Invariant: when this returns a state, the general reader would return the same state.
//! Anything else (other whitespace or order, escapes, a number JSON would refuse or that
//! does not fit, a bad record, a missing field) returns `None`, and the general reader
//! reads the file again and says what is wrong.

use std::io::{self, BufRead};

use chrono::{DateTime, Utc};

use super::codec::{
    decode_application, decode_person, forgotten_entry, ApplicationRecord, CountList,
};
use super::{State, Table};
use crate::model::EventKind;

/// Reads a state in the canonical form from `reader`; `Ok(None)` when the content is not
/// exactly that form (or not a usable state).
///
/// # Errors
/// Reading failed at the OS level.
pub(super) fn read(reader: impl BufRead) -> io::Result<Option<State>> {
    let mut input = Input { reader };
    match state(&mut input) {
        Ok(state) => Ok(Some(state)),
        Err(Stop::NotCanonical) => Ok(None),
        Err(Stop::Io(err)) => Err(err),
    }
}

enum Stop {
    /// Not the canonical form, or not a usable state: the general reader decides.
    NotCanonical,
    Io(io::Error),
}

impl From<io::Error> for Stop {
    fn from(err: io::Error) -> Self {
        Stop::Io(err)
    }
}

type Step<T> = Result<T, Stop>;

struct Input<R> {
    reader: R,
}

impl<R: BufRead> Input<R> {
    fn peek(&mut self) -> Step<Option<u8>> {
        Ok(self.reader.fill_buf()?.first().copied())
    }

    fn next(&mut self) -> Step<u8> {
        let byte = self.peek()?.ok_or(Stop::NotCanonical)?;
        self.reader.consume(1);
        Ok(byte)
    }

    /// Consumes `expected`, which must come next.
    fn literal(&mut self, expected: &[u8]) -> Step<()> {
        for &byte in expected {
            if self.next()? != byte {
                return Err(Stop::NotCanonical);
            }
        }
        Ok(())
    }

    /// Consumes `byte` if it comes next.
    fn eat(&mut self, byte: u8) -> Step<bool> {
        if self.peek()? == Some(byte) {
            self.reader.consume(1);
            return Ok(true);
        }
        Ok(false)
    }

    /// An unsigned integer as JSON writes it (no sign, no leading zero, no fraction or
    /// exponent) that fits a `u64`.
    fn number(&mut self) -> Step<u64> {
        let first = self.next()?;
        if !first.is_ascii_digit() {
            return Err(Stop::NotCanonical);
        }
        let mut value = u64::from(first - b'0');
        while let Some(byte @ b'0'..=b'9') = self.peek()? {
            if value == 0 {
                return Err(Stop::NotCanonical); // a leading zero
            }
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(byte - b'0')))
                .ok_or(Stop::NotCanonical)?;
            self.reader.consume(1);
        }
        if matches!(self.peek()?, Some(b'.' | b'e' | b'E')) {
            return Err(Stop::NotCanonical);
        }
        Ok(value)
    }

    /// The content of a string without escapes or control characters, into `text`.
    fn plain_string<'t>(&mut self, text: &'t mut Vec<u8>) -> Step<&'t str> {
        text.clear();
        self.literal(b"\"")?;
        loop {
            let buffer = self.reader.fill_buf()?;
            if buffer.is_empty() {
                return Err(Stop::NotCanonical);
            }
            match buffer
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
            {
                Some(end) if buffer[end] == b'"' => {
                    text.extend_from_slice(&buffer[..end]);
                    self.reader.consume(end + 1);
                    break;
                }
                Some(_) => return Err(Stop::NotCanonical),
                None => {
                    text.extend_from_slice(buffer);
                    let read = buffer.len();
                    self.reader.consume(read);
                }
            }
        }
        std::str::from_utf8(text).map_err(|_| Stop::NotCanonical)
    }

    /// `null`, or a timestamp string as serde reads one.
    fn optional_time(&mut self, text: &mut Vec<u8>) -> Step<Option<DateTime<Utc>>> {
        if self.peek()? == Some(b'n') {
            self.literal(b"null")?;
            return Ok(None);
        }
        let raw = self.plain_string(text)?;
        // The JSON string again, so serde's own rules decide.
        let quoted = format!("\"{raw}\"");
        serde_json::from_str(&quoted)
            .map(Some)
            .map_err(|_| Stop::NotCanonical)
    }
}

fn state<R: BufRead>(input: &mut Input<R>) -> Step<State> {
    let mut text = Vec::with_capacity(128);
    input.literal(b"{\"version\":1,\"setup\":")?;
    let setup = input.plain_string(&mut text)?.to_owned();
    input.literal(b",\"watermark\":")?;
    let watermark = input.optional_time(&mut text)?;
    input.literal(b",\"last_full_read\":")?;
    let last_full_read = input.optional_time(&mut text)?;
    input.literal(b",\"run_in_progress\":")?;
    let run_in_progress = input.optional_time(&mut text)?;
    input.literal(b",\"pending_people\":[")?;
    let mut pending_people = std::collections::BTreeSet::new();
    if !input.eat(b']')? {
        loop {
            pending_people.insert(input.number()?);
            if input.eat(b']')? {
                break;
            }
            input.literal(b",")?;
        }
    }
    input.literal(b",\"people\":{")?;
    let mut people = Table::new();
    if !input.eat(b'}')? {
        loop {
            let id = key(input)?;
            let person =
                decode_person(input.plain_string(&mut text)?).map_err(|_| Stop::NotCanonical)?;
            people.push_in_order(id, person);
            if input.eat(b'}')? {
                break;
            }
            input.literal(b",")?;
        }
    }
    input.literal(b",\"applications\":{")?;
    let mut applications = Table::new();
    if !input.eat(b'}')? {
        loop {
            let id = key(input)?;
            let app = decode_application(application(input)?).map_err(|_| Stop::NotCanonical)?;
            applications.push_in_order(id, app);
            if input.eat(b'}')? {
                break;
            }
            input.literal(b",")?;
        }
    }
    let mut forgotten = std::collections::BTreeMap::new();
    if input.eat(b',')? {
        // Written only when not empty (see `codec`), so an empty map is not canonical.
        input.literal(b"\"forgotten\":{")?;
        loop {
            let id = key(input)?;
            let entry =
                forgotten_entry(input.plain_string(&mut text)?).ok_or(Stop::NotCanonical)?;
            if forgotten.insert(id, entry).is_some() {
                return Err(Stop::NotCanonical);
            }
            if input.eat(b'}')? {
                break;
            }
            input.literal(b",")?;
        }
    }
    input.literal(b"}\n")?;
    if input.peek()?.is_some() {
        return Err(Stop::NotCanonical);
    }
    people.shrink_to_fit();
    applications.shrink_to_fit();
    Ok(State {
        setup,
        people,
        applications,
        pending_people,
        watermark,
        last_full_read,
        run_in_progress,
        forgotten,
    })
}

/// `"<id>":`
fn key<R: BufRead>(input: &mut Input<R>) -> Step<u64> {
    input.literal(b"\"")?;
    let id = input.number()?;
    input.literal(b"\":")?;
    Ok(id)
}

/// `[person_id,rank,[counts],side or null]`
fn application<R: BufRead>(input: &mut Input<R>) -> Step<ApplicationRecord> {
    input.literal(b"[")?;
    let person_id = input.number()?;
    input.literal(b",")?;
    let rank = u8::try_from(input.number()?).map_err(|_| Stop::NotCanonical)?;
    input.literal(b",[")?;
    let mut list = CountList {
        counts: [0; EventKind::COUNT],
        len: 0,
    };
    if !input.eat(b']')? {
        loop {
            let count = u32::try_from(input.number()?).map_err(|_| Stop::NotCanonical)?;
            *list.counts.get_mut(list.len).ok_or(Stop::NotCanonical)? = count;
            list.len += 1;
            if input.eat(b']')? {
                break;
            }
            input.literal(b",")?;
        }
    }
    input.literal(b",")?;
    let side = if input.peek()? == Some(b'n') {
        input.literal(b"null")?;
        None
    } else {
        Some(usize::try_from(input.number()?).map_err(|_| Stop::NotCanonical)?)
    };
    input.literal(b"]")?;
    Ok(ApplicationRecord(person_id, rank, list, side))
}

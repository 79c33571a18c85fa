//! Profile planning (SPEC 4.1, 5.4): the attribute values of a person, their keyed
//! fingerprints, and which of them an identify must carry.
//!
//! Only fingerprints are compared with the state, never values, so the state file holds no
//! personal data. The HMAC key lives in `state`; this module only uses it.

use std::fmt;

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::model::{Person, ATTRIBUTES};
use crate::state::{Fingerprint, PersonState};

use super::{Attributes, Identify, IdentifyKind, PlanStats};

/// customer.io's limit on one attribute string value, in bytes of UTF-8.
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1000;

/// The attribute sent when a person leaves or comes back into the configured LCs (SPEC 5.4).
pub const IN_SCOPE_ATTRIBUTE: &str = "in_scope";

/// Position of `created_at` in [`ATTRIBUTES`]: it is sent only the first time it is known.
const CREATED_AT: usize = 1;

/// Computes keyed fingerprints of attribute values (HMAC-SHA-256 under the state's key).
#[derive(Clone)]
pub struct Fingerprinter {
    key: [u8; 32],
}

impl fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fingerprinter(<redacted>)")
    }
}

impl Fingerprinter {
    /// A fingerprinter under this 32-byte key.
    pub fn new(key: [u8; 32]) -> Self {
        Fingerprinter { key }
    }

    /// Keyed fingerprint of one attribute value: the first 32 bits of HMAC-SHA-256 over the
    /// length-prefixed attribute name and the value's canonical JSON. Never 0, which the
    /// state reserves for "never confirmed".
    pub fn fingerprint(&self, attr: &str, value: &Value) -> Fingerprint {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC-SHA-256 accepts any key length");
        // Length prefix: ("ab", "c…") and ("a", "bc…") must not collide.
        mac.update(&(attr.len() as u64).to_be_bytes());
        mac.update(attr.as_bytes());
        // `Value`'s Display is compact JSON with sorted object keys: canonical for our values.
        mac.update(value.to_string().as_bytes());
        let digest = mac.finalize().into_bytes();
        let fingerprint = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        fingerprint.max(1)
    }
}

/// Cuts `text` to the longest prefix of at most `max` bytes that ends on a char boundary.
pub(crate) fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A string attribute value, cut to the customer.io limit; the flag says it was cut.
fn text(value: &Option<String>) -> (Value, bool) {
    match value {
        None => (Value::Null, false),
        Some(s) => {
            let cut = truncate_utf8(s, MAX_ATTRIBUTE_VALUE_BYTES);
            (Value::String(cut.to_owned()), cut.len() < s.len())
        }
    }
}

/// The person's attribute values in [`ATTRIBUTES`] order, each with a "was cut" flag.
fn attribute_values(person: &Person) -> [(Value, bool); ATTRIBUTES.len()] {
    let flag = |value: Option<bool>| (value.map_or(Value::Null, Value::Bool), false);
    [
        text(&person.email),
        (
            person
                .created_at
                .map_or(Value::Null, |t| Value::from(t.timestamp())),
            false,
        ),
        text(&person.first_name),
        text(&person.last_name),
        text(&person.full_name),
        text(&person.dob),
        flag(person.interviewed),
        text(&person.profile_photo),
        text(&person.status),
        text(&person.cv_url),
        text(&person.nps_score),
        flag(person.can_apply),
        text(&person.home_lc_name),
        text(&person.home_mc_name),
    ]
}

/// The identify a person read from GIS needs, if any (SPEC 4.1 and the return rule of 5.4).
///
/// Sends attributes whose fingerprint differs from the confirmed one; a value that became
/// null is sent as `null`, but a null never confirmed is not (nothing to clear). A person
/// new to the state always gets an identify, possibly empty, so the profile exists before
/// their events. `created_at` is sent only the first time it is known (SPEC 4.1 table).
pub(crate) fn plan_identify(
    prior: Option<&PersonState>,
    person: &Person,
    fingerprinter: &Fingerprinter,
    stats: &mut PlanStats,
) -> Option<Identify> {
    let base = prior.cloned().unwrap_or_default();
    let kind = match prior {
        None => IdentifyKind::New,
        Some(known) if !known.in_scope => IdentifyKind::ComingBack,
        Some(_) => IdentifyKind::Changed,
    };
    let mut after = base.clone();
    let mut attributes = Map::new();
    let mut truncated = 0;
    for (index, ((value, was_cut), name)) in attribute_values(person)
        .into_iter()
        .zip(ATTRIBUTES)
        .enumerate()
    {
        let confirmed = base.attrs[index];
        if value.is_null() && confirmed == 0 {
            continue;
        }
        if index == CREATED_AT && confirmed != 0 {
            continue;
        }
        let fingerprint = fingerprinter.fingerprint(name, &value);
        if fingerprint == confirmed {
            continue;
        }
        truncated += u64::from(was_cut);
        after.attrs[index] = fingerprint;
        attributes.insert(name.to_owned(), value);
    }
    if !base.in_scope {
        attributes.insert(IN_SCOPE_ATTRIBUTE.to_owned(), Value::Bool(true));
        after.in_scope = true;
        after.in_scope_sent = true;
        stats.people_returned += 1;
    }
    if attributes.is_empty() && prior.is_some() {
        return None;
    }
    stats.truncated_values += truncated;
    Some(Identify {
        attributes: Attributes::from_map(&attributes),
        kind,
        after,
    })
}

/// The identify for a person in the state who is no longer in a full read (SPEC 5.4).
pub(crate) fn left_scope(prior: &PersonState) -> Identify {
    let mut attributes = Map::new();
    attributes.insert(IN_SCOPE_ATTRIBUTE.to_owned(), Value::Bool(false));
    Identify {
        attributes: Attributes::from_map(&attributes),
        kind: IdentifyKind::LeavingScope,
        after: PersonState {
            in_scope: false,
            in_scope_sent: true,
            ..prior.clone()
        },
    }
}

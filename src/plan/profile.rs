//! Profile planning (SPEC 4.1, 5.4, 8.3): the attribute values of a person, their keyed
//! fingerprints, and which of them an identify must carry.
//!
//! What happens to each attribute is decided in one place, [`decide_attribute`]: `unchanged`,
//! `send`, `clear` (send `null`) or `excluded` (`attributes.exclude`). Planning an identify
//! and `explain` (SPEC 8.1, through [`attribute_statuses`]) both ask it, so they cannot
//! disagree.
//!
//! Only fingerprints are compared with the state, never values, so the state file holds no
//! personal data. The HMAC key lives in `state`; this module only uses it.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::Serialize;
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

/// Which attributes of [`ATTRIBUTES`] are excluded (`attributes.exclude`, SPEC 8.3), by
/// position.
pub type Excluded = [bool; ATTRIBUTES.len()];

/// The mask of `names` (names of [`ATTRIBUTES`]; others are ignored, the config refused them).
pub fn excluded_mask(names: &[&str]) -> Excluded {
    let mut mask = [false; ATTRIBUTES.len()];
    for (slot, attribute) in mask.iter_mut().zip(ATTRIBUTES) {
        *slot = names.contains(&attribute);
    }
    mask
}

/// Computes keyed fingerprints of attribute values (HMAC-SHA-256 under the state's key).
#[derive(Clone)]
pub struct Fingerprinter {
    key: [u8; 32],
    /// The fingerprint of `null` for each attribute: a confirmed `null` is not a value
    /// customer.io holds (so an excluded attribute has nothing to clear).
    nulls: [Fingerprint; ATTRIBUTES.len()],
}

impl fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fingerprinter(<redacted>)")
    }
}

impl Fingerprinter {
    /// A fingerprinter under this 32-byte key.
    pub fn new(key: [u8; 32]) -> Self {
        let mut fingerprinter = Fingerprinter {
            key,
            nulls: [0; ATTRIBUTES.len()],
        };
        for (index, name) in ATTRIBUTES.iter().enumerate() {
            fingerprinter.nulls[index] = fingerprinter.fingerprint(name, &Value::Null);
        }
        fingerprinter
    }

    /// Whether `confirmed` (the state's fingerprint of attribute `index`) says customer.io
    /// holds a value for it: something was confirmed, and it was not `null`.
    pub fn holds_value(&self, index: usize, confirmed: Fingerprint) -> bool {
        confirmed != 0 && confirmed != self.nulls[index]
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

/// A person's attribute values as an identify would carry them (cut to the customer.io
/// limit), in [`ATTRIBUTES`] order: what `explain --values` shows (personal data).
pub fn attribute_values_of(person: &Person) -> Vec<(&'static str, Value)> {
    ATTRIBUTES
        .into_iter()
        .zip(attribute_values(person))
        .map(|(name, (value, _))| (name, value))
        .collect()
}

/// What the next identify does with one attribute (SPEC 8.1's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributeStatus {
    /// customer.io holds this value (or holds nothing and there is nothing to send).
    Unchanged,
    /// The next identify sends the value.
    Send,
    /// The next identify sends `null`: the value became null, or the attribute is excluded
    /// and customer.io still holds what was sent before it was.
    Clear,
    /// Excluded (`attributes.exclude`), and customer.io holds nothing for it: never sent.
    Excluded,
}

/// [`decide_attribute`]'s verdict, with the fingerprint the state holds for the attribute once
/// an identify carrying it is confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeDecision {
    pub status: AttributeStatus,
    pub after: Fingerprint,
}

/// The one rule for one attribute of [`ATTRIBUTES`] (SPEC 4.1, 8.3), at position `index`:
/// `value` is its value in GIS (`None` when the person was not read in this run: only
/// exclusion can then change anything), `confirmed` the state's fingerprint.
///
/// - Excluded: `clear` once when customer.io holds a value (after it, the state forgets the
///   attribute: fingerprint 0), else `excluded`. Excluding or including an attribute never
///   touches the others.
/// - A null never confirmed is not sent (nothing to clear); `created_at` is sent only the
///   first time it is known; a value whose fingerprint is the confirmed one is `unchanged`.
/// - Otherwise `send`, or `clear` for a value that became null.
pub fn decide_attribute(
    index: usize,
    value: Option<&Value>,
    confirmed: Fingerprint,
    excluded: bool,
    fingerprinter: &Fingerprinter,
) -> AttributeDecision {
    let verdict = |status, after| AttributeDecision { status, after };
    if excluded {
        return if fingerprinter.holds_value(index, confirmed) {
            verdict(AttributeStatus::Clear, 0)
        } else {
            verdict(AttributeStatus::Excluded, confirmed)
        };
    }
    let Some(value) = value else {
        return verdict(AttributeStatus::Unchanged, confirmed);
    };
    if (value.is_null() && confirmed == 0) || (index == CREATED_AT && confirmed != 0) {
        return verdict(AttributeStatus::Unchanged, confirmed);
    }
    let fingerprint = fingerprinter.fingerprint(ATTRIBUTES[index], value);
    if fingerprint == confirmed {
        verdict(AttributeStatus::Unchanged, confirmed)
    } else if value.is_null() {
        verdict(AttributeStatus::Clear, fingerprint)
    } else {
        verdict(AttributeStatus::Send, fingerprint)
    }
}

/// Every attribute's status for one person (what `explain` shows, SPEC 8.1): `prior` what the
/// state holds for them, `person` what GIS says (`None`: not read, or GIS no longer has them).
pub fn attribute_statuses(
    prior: Option<&PersonState>,
    person: Option<&Person>,
    excluded: &Excluded,
    fingerprinter: &Fingerprinter,
) -> Vec<(&'static str, AttributeStatus)> {
    let base = prior.cloned().unwrap_or_default();
    let values = person.map(attribute_values);
    ATTRIBUTES
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let value = values.as_ref().map(|values| &values[index].0);
            let decision = decide_attribute(
                index,
                value,
                base.attrs[index],
                excluded[index],
                fingerprinter,
            );
            (*name, decision.status)
        })
        .collect()
}

/// The identify a person read from GIS needs, if any (SPEC 4.1, the return rule of 5.4, and
/// exclusion, 8.3): the attributes [`decide_attribute`] says to send or clear. A person new
/// to the state always gets an identify, possibly empty, so the profile exists before their
/// events.
pub(crate) fn plan_identify(
    prior: Option<&PersonState>,
    person: &Person,
    excluded: &Excluded,
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
        let decision = decide_attribute(
            index,
            Some(&value),
            base.attrs[index],
            excluded[index],
            fingerprinter,
        );
        match decision.status {
            AttributeStatus::Unchanged | AttributeStatus::Excluded => continue,
            AttributeStatus::Send => {
                truncated += u64::from(was_cut);
                attributes.insert(name.to_owned(), value);
            }
            AttributeStatus::Clear => {
                attributes.insert(name.to_owned(), Value::Null);
            }
        }
        after.attrs[index] = decision.after;
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

/// Whether the state says customer.io holds a value of an excluded attribute for this
/// person: a run must clear it even if it does not read them (SPEC 8.3).
pub(crate) fn holds_excluded(
    prior: &PersonState,
    excluded: &Excluded,
    fingerprinter: &Fingerprinter,
) -> bool {
    prior
        .attrs
        .iter()
        .enumerate()
        .any(|(index, &confirmed)| excluded[index] && fingerprinter.holds_value(index, confirmed))
}

/// The identify for a person of the state whom this run does not read but whose excluded
/// attributes customer.io still holds (SPEC 8.3): `null` for each, once.
pub(crate) fn clear_excluded(
    prior: &PersonState,
    excluded: &Excluded,
    fingerprinter: &Fingerprinter,
) -> Option<Identify> {
    let mut after = prior.clone();
    let mut attributes = Map::new();
    for (index, name) in ATTRIBUTES.iter().enumerate() {
        let decision = decide_attribute(
            index,
            None,
            prior.attrs[index],
            excluded[index],
            fingerprinter,
        );
        if decision.status == AttributeStatus::Clear {
            attributes.insert((*name).to_owned(), Value::Null);
            after.attrs[index] = decision.after;
        }
    }
    if attributes.is_empty() {
        return None;
    }
    Some(Identify {
        attributes: Attributes::from_map(&attributes),
        // Known and in scope: what changes is the values customer.io holds.
        kind: IdentifyKind::Changed,
        after,
    })
}

/// The identify for a person in the state who is no longer in a full read (SPEC 5.4):
/// `in_scope = false`, with the clears of excluded attributes customer.io still holds (8.3),
/// so one identify settles both.
pub(crate) fn left_scope(
    prior: &PersonState,
    excluded: &Excluded,
    fingerprinter: &Fingerprinter,
) -> Identify {
    let cleared = clear_excluded(prior, excluded, fingerprinter);
    let (mut attributes, after) = match cleared {
        Some(identify) => (identify.attributes.to_map(), identify.after),
        None => (Map::new(), prior.clone()),
    };
    attributes.insert(IN_SCOPE_ATTRIBUTE.to_owned(), Value::Bool(false));
    Identify {
        attributes: Attributes::from_map(&attributes),
        kind: IdentifyKind::LeavingScope,
        after: PersonState {
            in_scope: false,
            in_scope_sent: true,
            ..after
        },
    }
}

//! What the fake customer.io workspace holds: profiles, events (de-duplicated by `id`),
//! suppressed identifiers and the request log, with the write semantics of the Track API:
//! a deleted profile is created again by a later identify (or event); a suppressed
//! identifier's profile is deleted and every later call for it is accepted and ignored until
//! it is unsuppressed (research §"What a faithful fake must do", item 8).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::{Map, Value};

use super::validate::{EventInput, Identifier};
use crate::fake::RequestRecord;

/// An event the fake stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Position in the fake's global sequence, shared with identifies.
    pub seq: u64,
    /// The key of the profile it belongs to (the customer id for id-identified people).
    pub customer_id: String,
    pub name: String,
    /// The event's ULID, upper-cased, when one was sent.
    pub id: Option<String>,
    /// Integer unix seconds, when sent as one.
    pub timestamp: Option<i64>,
    /// `data` (v1) or `attributes` (v2).
    pub data: Value,
    /// `"v1"` or `"v2"`.
    pub api: &'static str,
}

/// A delete, suppress or unsuppress the fake applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonActionRecord {
    /// Position in the fake's global sequence, shared with identifies and events.
    pub seq: u64,
    /// The identifier as sent (the customer id for people identified by id).
    pub identifier: String,
    /// `"delete"`, `"suppress"` or `"unsuppress"`.
    pub action: &'static str,
    /// `"v1"` or `"v2"`.
    pub api: &'static str,
    /// Whether a profile existed (delete and suppress).
    pub existed: bool,
}

/// One person.
#[derive(Debug, Clone, Default)]
struct Profile {
    attributes: Map<String, Value>,
    /// Sequence number of the first identify; `None` for a bare profile made by an event.
    first_identify_seq: Option<u64>,
    /// customer.io's internal id, addressable as `cio_<cio_id>`.
    cio_id: String,
}

/// The workspace state behind one fake.
#[derive(Debug, Default)]
pub(super) struct Store {
    profiles: BTreeMap<String, Profile>,
    event_ids: HashSet<String>,
    events: Vec<StoredEvent>,
    duplicates: u64,
    seq: u64,
    profiles_created: u64,
    /// Request log, each entry with a private number so a late status update finds it.
    requests: Vec<(u64, RequestRecord)>,
    requests_seen: u64,
    /// Suppressed identifiers, as sent (ids as they are, e-mails lower-cased).
    suppressed: BTreeSet<String>,
    /// Identifies and events accepted but ignored because their identifier is suppressed.
    ignored_writes: u64,
    /// Every delete, suppress and unsuppress, in order.
    person_actions: Vec<PersonActionRecord>,
}

impl Store {
    /// The profile key for `who`, if that person exists.
    fn resolve(&self, who: &Identifier) -> Option<String> {
        let by_attribute = |attribute: &str, value: &str| {
            self.profiles
                .iter()
                .find(|(_, profile)| {
                    profile
                        .attributes
                        .get(attribute)
                        .and_then(Value::as_str)
                        .is_some_and(|v| v.eq_ignore_ascii_case(value))
                })
                .map(|(key, _)| key.clone())
        };
        match who {
            Identifier::Id(id) => self.profiles.contains_key(id).then(|| id.clone()),
            Identifier::Email(email) => by_attribute("email", email),
            Identifier::Phone(phone) => by_attribute("phone", phone),
            Identifier::CioId(cio_id) => self
                .profiles
                .iter()
                .find(|(_, profile)| &profile.cio_id == cio_id)
                .map(|(key, _)| key.clone()),
        }
    }

    /// The key of `who`, creating a bare profile if needed. `None` for an unknown `cio_id`:
    /// customer.io drops those requests (with a 200).
    fn resolve_or_create(&mut self, who: &Identifier) -> Option<String> {
        if let Some(key) = self.resolve(who) {
            return Some(key);
        }
        let (key, attribute) = match who {
            Identifier::Id(id) => (id.clone(), None),
            Identifier::Email(email) => (email.to_lowercase(), Some(("email", email))),
            Identifier::Phone(phone) => (phone.clone(), Some(("phone", phone))),
            Identifier::CioId(_) => return None,
        };
        self.profiles_created += 1;
        let mut profile = Profile {
            cio_id: format!("{:012x}", self.profiles_created),
            ..Profile::default()
        };
        if let Some((name, value)) = attribute {
            profile
                .attributes
                .insert(name.to_owned(), Value::String(value.clone()));
        }
        self.profiles.insert(key.clone(), profile);
        Some(key)
    }

    /// The blocklist key of `who`: what suppress records and later calls are checked against.
    fn suppression_key(who: &Identifier) -> String {
        match who {
            Identifier::Id(id) => format!("id:{id}"),
            Identifier::Email(email) => format!("email:{}", email.to_lowercase()),
            Identifier::Phone(phone) => format!("phone:{phone}"),
            Identifier::CioId(cio_id) => format!("cio_id:{cio_id}"),
        }
    }

    /// Whether calls for `who` are ignored (suppressed); counts the ignored call.
    fn ignores(&mut self, who: &Identifier) -> bool {
        let ignored = self.suppressed.contains(&Self::suppression_key(who));
        self.ignored_writes += u64::from(ignored);
        ignored
    }

    /// Upserts a person: attributes merge, `null` clears one, `_update: true` never creates.
    /// A suppressed identifier's identify is accepted and ignored.
    pub(super) fn identify(&mut self, who: &Identifier, mut attributes: Map<String, Value>) {
        if self.ignores(who) {
            return;
        }
        let update_only = attributes.remove("_update") == Some(Value::Bool(true));
        attributes.remove("_timestamp");
        if update_only && self.resolve(who).is_none() {
            return;
        }
        let Some(key) = self.resolve_or_create(who) else {
            return;
        };
        self.seq += 1;
        let seq = self.seq;
        let profile = self
            .profiles
            .get_mut(&key)
            .expect("profile was just resolved or created");
        profile.first_identify_seq.get_or_insert(seq);
        for (name, value) in attributes {
            if value.is_null() {
                profile.attributes.remove(&name);
            } else {
                profile.attributes.insert(name, value);
            }
        }
    }

    /// Stores an event once per `id`; a repeated id is only counted. A suppressed
    /// identifier's event is accepted and ignored (its id is not remembered).
    pub(super) fn track(&mut self, who: &Identifier, event: EventInput, api: &'static str) {
        if self.ignores(who) {
            return;
        }
        if let Some(id) = &event.id {
            if self.event_ids.contains(id) {
                self.duplicates += 1;
                return;
            }
        }
        let Some(customer_id) = self.resolve_or_create(who) else {
            return;
        };
        if let Some(id) = &event.id {
            self.event_ids.insert(id.clone());
        }
        self.seq += 1;
        self.events.push(StoredEvent {
            seq: self.seq,
            customer_id,
            name: event.name,
            id: event.id,
            timestamp: event.timestamp,
            data: event.data,
            api,
        });
    }

    /// Deletes a person (their stored events stay); deleting nobody is fine. A later
    /// identify creates the profile again.
    pub(super) fn delete(&mut self, who: &Identifier, api: &'static str) {
        let existed = self.remove_profile(who);
        self.record_action(who, "delete", api, existed);
    }

    /// Deletes a person and ignores every later call for the identifier until it is
    /// unsuppressed; suppressing someone unknown blocks the identifier all the same.
    pub(super) fn suppress(&mut self, who: &Identifier, api: &'static str) {
        let existed = self.remove_profile(who);
        self.suppressed.insert(Self::suppression_key(who));
        self.record_action(who, "suppress", api, existed);
    }

    /// Lifts a suppression (the profile stays deleted); unsuppressing an identifier that is
    /// not suppressed is fine.
    pub(super) fn unsuppress(&mut self, who: &Identifier, api: &'static str) {
        self.suppressed.remove(&Self::suppression_key(who));
        self.record_action(who, "unsuppress", api, false);
    }

    fn remove_profile(&mut self, who: &Identifier) -> bool {
        match self.resolve(who) {
            Some(key) => self.profiles.remove(&key).is_some(),
            None => false,
        }
    }

    fn record_action(
        &mut self,
        who: &Identifier,
        action: &'static str,
        api: &'static str,
        existed: bool,
    ) {
        self.seq += 1;
        let identifier = match who {
            Identifier::Id(text)
            | Identifier::Email(text)
            | Identifier::Phone(text)
            | Identifier::CioId(text) => text.clone(),
        };
        self.person_actions.push(PersonActionRecord {
            seq: self.seq,
            identifier,
            action,
            api,
            existed,
        });
    }

    /// Suppressed identifiers, as `id:<id>`, `email:<address>`, `phone:<number>` or
    /// `cio_id:<id>`.
    pub(super) fn suppressed(&self) -> BTreeSet<String> {
        self.suppressed.clone()
    }

    pub(super) fn ignored_writes(&self) -> u64 {
        self.ignored_writes
    }

    pub(super) fn person_actions(&self) -> Vec<PersonActionRecord> {
        self.person_actions.clone()
    }

    pub(super) fn profiles(&self) -> BTreeMap<String, Map<String, Value>> {
        self.profiles
            .iter()
            .map(|(key, profile)| (key.clone(), profile.attributes.clone()))
            .collect()
    }

    pub(super) fn profile(&self, key: &str) -> Option<Map<String, Value>> {
        self.profiles.get(key).map(|p| p.attributes.clone())
    }

    pub(super) fn first_identify_seq(&self, key: &str) -> Option<u64> {
        self.profiles.get(key).and_then(|p| p.first_identify_seq)
    }

    pub(super) fn events(&self) -> &[StoredEvent] {
        &self.events
    }

    pub(super) fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Logs a request as unanswered and returns its number for [`Store::answered`].
    pub(super) fn request_started(&mut self, record: RequestRecord) -> u64 {
        self.requests_seen += 1;
        self.requests.push((self.requests_seen, record));
        self.requests_seen
    }

    /// Sets the status of a logged request (unless the log was cleared meanwhile).
    pub(super) fn answered(&mut self, number: u64, status: u16) {
        if let Some((_, record)) = self.requests.iter_mut().find(|(n, _)| *n == number) {
            record.status = status;
        }
    }

    pub(super) fn requests(&self) -> Vec<RequestRecord> {
        self.requests.iter().map(|(_, r)| r.clone()).collect()
    }

    pub(super) fn clear_requests(&mut self) {
        self.requests.clear();
    }
}

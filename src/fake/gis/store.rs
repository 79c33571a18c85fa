//! The fake's data: compact rows for every person and application (what filters and sorting
//! need), per-LC index lists in the default order, and an overlay of full JSON records for
//! everything mutated or inserted. Generated records are rebuilt from (seed, index) on demand.
//!
//! Invariant: a row's `lc`, `created`, `updated`, `status` and `person` always agree with the
//! record's JSON (generated or overlay); every mutation goes through `sync_*_row`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::generate::{
    self, app_json, app_timeline, format_time, lc_name, mc_of, pack_time, parse_time, person_core,
    unpack_time, APP_ID_BASE, APP_STATUSES, PERSON_ID_BASE, PERSON_STATUSES,
};

/// A row marking "no person" for an application.
const NO_PERSON: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct PersonRow {
    id: u64,
    created: u32,
    updated: u32,
    lc: u16,
    status: u16,
    removed: bool,
}

#[derive(Clone, Copy)]
struct AppRow {
    id: u64,
    person: u32,
    created: u32,
    updated: u32,
    status: u16,
    removed: bool,
}

/// Which time a list is ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SortKey {
    CreatedAt,
    UpdatedAt,
}

/// An order: key and direction. The default for both lists is `created_at` descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Sort {
    pub key: SortKey,
    pub desc: bool,
}

impl Default for Sort {
    fn default() -> Self {
        Sort {
            key: SortKey::CreatedAt,
            desc: true,
        }
    }
}

/// An inclusive time window in unix seconds (`last_interaction`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct Window {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl Window {
    fn contains(&self, t: i64) -> bool {
        self.from.is_none_or(|f| t >= f) && self.to.is_none_or(|to| t <= to)
    }
}

/// The people filters the fake understands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct PeopleQuery {
    pub lcs: Option<Vec<u64>>,
    pub ids: Option<Vec<u64>>,
    pub last_interaction: Option<Window>,
    pub statuses: Option<Vec<String>>,
    pub sort: Sort,
}

/// The application filters the fake understands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct AppQuery {
    pub person_lcs: Option<Vec<u64>>,
    pub person_id: Option<u64>,
    pub last_interaction: Option<Window>,
    pub statuses: Option<Vec<String>>,
    pub programmes: Option<Vec<u64>>,
    pub sort: Sort,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum CacheKey {
    People(PeopleQuery),
    Apps(AppQuery),
}

/// Matching record indexes of recent queries, so paging through a big result does the
/// filtering and sorting once, not once per page, and the orders those results are filtered
/// from. Cleared on every mutation.
#[derive(Default)]
struct ResultCache {
    entries: Vec<(CacheKey, Arc<Vec<u32>>)>,
    orders: HashMap<(Table, SortKey), Arc<Vec<u32>>>,
}

/// Which list an order is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Table {
    People,
    Apps,
}

const CACHE_ENTRIES: usize = 8;

/// All records of one fake GIS.
pub(crate) struct Store {
    seed: u64,
    lcs: Vec<u64>,
    statuses: Vec<String>,
    people: Vec<PersonRow>,
    apps: Vec<AppRow>,
    generated_people: usize,
    generated_apps: usize,
    /// Generated apps of generated person `i` are `app_start[i]..app_start[i + 1]`.
    app_start: Vec<u32>,
    /// Applications attached to a person outside their generated range (inserted or moved).
    extra_apps: HashMap<u32, Vec<u32>>,
    person_ids: HashMap<u64, u32>,
    app_ids: HashMap<u64, u32>,
    person_overlay: HashMap<u32, Value>,
    app_overlay: HashMap<u32, Value>,
    /// Per LC slot: live people in default order (created_at desc, id desc).
    by_lc: Vec<Vec<u32>>,
    cache: Mutex<ResultCache>,
}

fn id_of(value: &Value) -> Option<u64> {
    match value {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn time_of(value: Option<&Value>) -> Option<i64> {
    value
        .and_then(Value::as_str)
        .and_then(parse_time)
        .map(|(t, _)| t)
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("the fake holds fewer than 4 billion records")
}

impl Store {
    /// Generates `people` people spread over `lcs`, from `seed`.
    pub(crate) fn generate(seed: u64, people: usize, lcs: &[u64]) -> Store {
        let lcs: Vec<u64> = if lcs.is_empty() {
            vec![1337]
        } else {
            lcs.to_vec()
        };
        let mut statuses: Vec<String> = APP_STATUSES.iter().map(|s| s.0.to_owned()).collect();
        for (name, _) in PERSON_STATUSES {
            if !statuses.iter().any(|s| s == name) {
                statuses.push((*name).to_owned());
            }
        }
        let person_status_codes: Vec<u16> = PERSON_STATUSES
            .iter()
            .map(|(name, _)| {
                u16::try_from(statuses.iter().position(|s| s == name).unwrap_or(0)).unwrap_or(0)
            })
            .collect();
        let mut rows = Vec::with_capacity(people);
        let mut apps = Vec::with_capacity(people * 3);
        let mut app_start = Vec::with_capacity(people + 1);
        for i in 0..people {
            let core = person_core(seed, i as u64, people as u64, lcs.len());
            app_start.push(to_u32(apps.len()));
            let mut updated = core.updated;
            for _ in 0..core.app_count {
                let j = apps.len();
                let t = app_timeline(seed, j as u64, core.created);
                updated = updated.max(t.updated);
                apps.push(AppRow {
                    id: APP_ID_BASE + j as u64,
                    person: to_u32(i),
                    created: pack_time(t.created),
                    updated: pack_time(t.updated),
                    status: u16::try_from(t.status).unwrap_or(0),
                    removed: false,
                });
            }
            rows.push(PersonRow {
                id: PERSON_ID_BASE + i as u64,
                created: pack_time(core.created),
                updated: pack_time(updated),
                lc: u16::try_from(core.lc_slot).unwrap_or(0),
                status: person_status_codes[core.status],
                removed: false,
            });
        }
        app_start.push(to_u32(apps.len()));
        let mut by_lc = vec![Vec::new(); lcs.len()];
        for i in (0..people).rev() {
            by_lc[usize::from(rows[i].lc)].push(to_u32(i));
        }
        let store = Store {
            seed,
            lcs,
            statuses,
            generated_people: people,
            generated_apps: apps.len(),
            people: rows,
            apps,
            app_start,
            extra_apps: HashMap::new(),
            person_ids: HashMap::new(),
            app_ids: HashMap::new(),
            person_overlay: HashMap::new(),
            app_overlay: HashMap::new(),
            by_lc,
            cache: Mutex::new(ResultCache::default()),
        };
        // Like a database's indexes, the orders exist before the first query: a sync's
        // first request should not pay for sorting millions of rows (the real GIS does not).
        for table in [Table::People, Table::Apps] {
            for key in [SortKey::CreatedAt, SortKey::UpdatedAt] {
                store.order(table, key);
            }
        }
        store
    }

    fn status_code(&mut self, status: &str) -> u16 {
        let pos = match self.statuses.iter().position(|s| s == status) {
            Some(pos) => pos,
            None => {
                self.statuses.push(status.to_owned());
                self.statuses.len() - 1
            }
        };
        u16::try_from(pos).expect("fewer than 65536 distinct statuses")
    }

    fn lc_slot(&mut self, lc: u64) -> u16 {
        let pos = match self.lcs.iter().position(|l| *l == lc) {
            Some(pos) => pos,
            None => {
                self.lcs.push(lc);
                self.by_lc.push(Vec::new());
                self.lcs.len() - 1
            }
        };
        u16::try_from(pos).expect("fewer than 65536 LCs")
    }

    fn person_index(&self, id: u64) -> Option<u32> {
        let idx = if let Some(idx) = self.person_ids.get(&id) {
            *idx
        } else {
            let offset = id.checked_sub(PERSON_ID_BASE)?;
            if offset >= self.generated_people as u64 {
                return None;
            }
            u32::try_from(offset).ok()?
        };
        (!self.people[idx as usize].removed).then_some(idx)
    }

    fn app_index(&self, id: u64) -> Option<u32> {
        let idx = if let Some(idx) = self.app_ids.get(&id) {
            *idx
        } else {
            let offset = id.checked_sub(APP_ID_BASE)?;
            if offset >= self.generated_apps as u64 {
                return None;
            }
            u32::try_from(offset).ok()?
        };
        let row = self.apps[idx as usize];
        // An application whose person was removed is gone with them.
        if row.removed || (row.person != NO_PERSON && self.people[row.person as usize].removed) {
            return None;
        }
        Some(idx)
    }

    fn person_json_at(&self, idx: u32) -> Value {
        if let Some(v) = self.person_overlay.get(&idx) {
            return v.clone();
        }
        let row = self.people[idx as usize];
        generate::person_json(
            self.seed,
            u64::from(idx),
            self.lcs[usize::from(row.lc)],
            &self.statuses[usize::from(row.status)],
            unpack_time(row.created),
            unpack_time(row.updated),
        )
    }

    fn app_json_at(&self, idx: u32) -> Value {
        if let Some(v) = self.app_overlay.get(&idx) {
            return v.clone();
        }
        let row = self.apps[idx as usize];
        let person = self.people[row.person as usize];
        let person_created = generate::person_core(
            self.seed,
            u64::from(row.person),
            self.generated_people as u64,
            self.lcs.len(),
        )
        .created;
        let t = app_timeline(self.seed, u64::from(idx), person_created);
        app_json(self.seed, u64::from(idx), person.id, &t)
    }

    /// A person's full record, unless unknown or removed.
    pub(crate) fn person_json(&self, id: u64) -> Option<Value> {
        self.person_index(id).map(|idx| self.person_json_at(idx))
    }

    /// An application's full record, unless unknown or its person was removed.
    pub(crate) fn application_json(&self, id: u64) -> Option<Value> {
        self.app_index(id).map(|idx| self.app_json_at(idx))
    }

    /// Ids of the live people in `lc`, in default order (created_at desc).
    pub(crate) fn person_ids(&self, lc: u64) -> Vec<u64> {
        self.lcs
            .iter()
            .position(|l| *l == lc)
            .map(|slot| {
                self.by_lc[slot]
                    .iter()
                    .map(|i| self.people[*i as usize].id)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn apps_of(&self, person: u32) -> Vec<u32> {
        let mut out = Vec::new();
        if (person as usize) < self.generated_people {
            let range = self.app_start[person as usize]..self.app_start[person as usize + 1];
            out.extend(range.filter(|j| {
                let row = self.apps[*j as usize];
                row.person == person && !row.removed
            }));
        }
        if let Some(extra) = self.extra_apps.get(&person) {
            for j in extra {
                let row = self.apps[*j as usize];
                if row.person == person && !row.removed && !out.contains(j) {
                    out.push(*j);
                }
            }
        }
        out
    }

    /// Ids of a live person's applications, ascending.
    pub(crate) fn application_ids(&self, person_id: u64) -> Vec<u64> {
        let Some(idx) = self.person_index(person_id) else {
            return Vec::new();
        };
        let mut ids: Vec<u64> = self
            .apps_of(idx)
            .into_iter()
            .map(|j| self.apps[j as usize].id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The id of the person at row `idx`.
    pub(crate) fn person_id_at(&self, idx: u32) -> u64 {
        self.people[idx as usize].id
    }

    /// The id of the application at row `idx`.
    pub(crate) fn app_id_at(&self, idx: u32) -> u64 {
        self.apps[idx as usize].id
    }

    /// The id of a live application's person, if it has one.
    pub(crate) fn application_person(&self, id: u64) -> Option<u64> {
        let row = self.apps[self.app_index(id)? as usize];
        (row.person != NO_PERSON).then(|| self.people[row.person as usize].id)
    }

    /// The LCs people live in, in slot order (the generator's LCs first).
    pub(crate) fn lcs(&self) -> &[u64] {
        &self.lcs
    }

    /// The latest `created_at` or `updated_at` of any record, in unix seconds.
    pub(crate) fn newest_time(&self) -> i64 {
        let people = self.people.iter().map(|r| r.created.max(r.updated));
        let apps = self.apps.iter().map(|r| r.created.max(r.updated));
        people.chain(apps).max().map_or(0, unpack_time)
    }

    fn invalidate(&self) {
        let mut cache = self.cache.lock().expect("result cache lock poisoned");
        cache.entries.clear();
        cache.orders.clear();
    }

    fn cached(&self, key: CacheKey, compute: impl FnOnce() -> Vec<u32>) -> Arc<Vec<u32>> {
        if let Some((_, hit)) = self
            .cache
            .lock()
            .expect("result cache lock poisoned")
            .entries
            .iter()
            .find(|(k, _)| *k == key)
        {
            return Arc::clone(hit);
        }
        let result = Arc::new(compute());
        let mut cache = self.cache.lock().expect("result cache lock poisoned");
        if cache.entries.len() >= CACHE_ENTRIES {
            cache.entries.remove(0);
        }
        cache.entries.push((key, Arc::clone(&result)));
        result
    }

    /// For each LC slot, whether `lcs` (all LCs when `None`) asks for it.
    fn lc_mask(&self, lcs: &Option<Vec<u64>>) -> Vec<bool> {
        self.lcs
            .iter()
            .map(|lc| lcs.as_ref().is_none_or(|wanted| wanted.contains(lc)))
            .collect()
    }

    fn status_matches(&self, code: u16, statuses: &Option<Vec<String>>) -> bool {
        statuses
            .as_ref()
            .is_none_or(|list| list.iter().any(|s| *s == self.statuses[usize::from(code)]))
    }

    /// Indexes of the people matching `q`, in the requested order.
    pub(crate) fn find_people(&self, q: &PeopleQuery) -> Arc<Vec<u32>> {
        self.cached(CacheKey::People(q.clone()), || {
            let wanted = self.lc_mask(&q.lcs);
            let keep = |i: u32| {
                let row = self.people[i as usize];
                !row.removed
                    && wanted[usize::from(row.lc)]
                    && q.last_interaction
                        .is_none_or(|w| w.contains(unpack_time(row.updated)))
                    && self.status_matches(row.status, &q.statuses)
            };
            match &q.ids {
                Some(ids) => {
                    let mut found: Vec<u32> = ids
                        .iter()
                        .filter_map(|id| self.person_index(*id))
                        .filter(|i| keep(*i))
                        .collect();
                    let rows = &self.people;
                    sort_indexes(&mut found, q.sort, |i| {
                        let r = rows[i as usize];
                        (r.created, r.updated, r.id)
                    });
                    // An id asked for twice is one record (duplicates are adjacent once sorted).
                    found.dedup();
                    found
                }
                None => in_order(&self.order(Table::People, q.sort.key), q.sort, keep),
            }
        })
    }

    /// Indexes of the applications matching `q`, in the requested order.
    pub(crate) fn find_apps(&self, q: &AppQuery) -> Arc<Vec<u32>> {
        self.cached(CacheKey::Apps(q.clone()), || {
            let wanted = self.lc_mask(&q.person_lcs);
            let keep = |j: u32| {
                let row = self.apps[j as usize];
                // An application is listed through its person: a live one, in a wanted LC.
                let person_listed = row.person != NO_PERSON && {
                    let person = self.people[row.person as usize];
                    !person.removed && wanted[usize::from(person.lc)]
                };
                !row.removed
                    && person_listed
                    && q.last_interaction
                        .is_none_or(|w| w.contains(unpack_time(row.updated)))
                    && self.status_matches(row.status, &q.statuses)
                    && q.programmes
                        .as_ref()
                        .is_none_or(|wanted| self.app_in_programmes(j, wanted))
            };
            match q.person_id {
                Some(id) => {
                    let mut found: Vec<u32> = self
                        .person_index(id)
                        .map(|p| self.apps_of(p))
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|j| keep(*j))
                        .collect();
                    let rows = &self.apps;
                    sort_indexes(&mut found, q.sort, |j| {
                        let r = rows[j as usize];
                        (r.created, r.updated, r.id)
                    });
                    found
                }
                None => in_order(&self.order(Table::Apps, q.sort.key), q.sort, keep),
            }
        })
    }

    /// Every row of `table` (removed ones too), newest first by `key`, ties by id: built
    /// once per mutation so a query filters a ready order instead of sorting.
    fn order(&self, table: Table, key: SortKey) -> Arc<Vec<u32>> {
        let mut cache = self.cache.lock().expect("result cache lock poisoned");
        // Built under the lock: concurrent page requests wait for one sort, not do several.
        let order = cache.orders.entry((table, key)).or_insert_with(|| {
            let pick = |created: u32, updated: u32| match key {
                SortKey::CreatedAt => created,
                SortKey::UpdatedAt => updated,
            };
            let keyed: Vec<(u32, u64)> = match table {
                Table::People => self
                    .people
                    .iter()
                    .map(|r| (pick(r.created, r.updated), r.id))
                    .collect(),
                Table::Apps => self
                    .apps
                    .iter()
                    .map(|r| (pick(r.created, r.updated), r.id))
                    .collect(),
            };
            Arc::new(newest_first(&keyed))
        });
        Arc::clone(order)
    }

    fn app_in_programmes(&self, idx: u32, wanted: &[u64]) -> bool {
        let app = self.app_json_at(idx);
        let opp = &app["opportunity"];
        let mut ids = Vec::new();
        if let Some(id) = id_of(&opp["programme"]["id"]) {
            ids.push(id);
        }
        if let Some(list) = opp["programmes"].as_array() {
            ids.extend(list.iter().filter_map(|p| id_of(&p["id"])));
        }
        ids.iter().any(|id| wanted.contains(id))
    }

    /// The JSON of people at these indexes.
    pub(crate) fn people_page(&self, idxs: &[u32]) -> Vec<Value> {
        idxs.iter().map(|i| self.person_json_at(*i)).collect()
    }

    /// The JSON of applications at these indexes.
    pub(crate) fn apps_page(&self, idxs: &[u32]) -> Vec<Value> {
        idxs.iter().map(|i| self.app_json_at(*i)).collect()
    }

    // ----- mutations -----

    fn set_person_lc(&mut self, idx: u32, slot: u16) {
        let old = usize::from(self.people[idx as usize].lc);
        self.by_lc[old].retain(|i| *i != idx);
        self.people[idx as usize].lc = slot;
        self.insert_in_lc(idx);
    }

    fn insert_in_lc(&mut self, idx: u32) {
        let people = &self.people;
        let row = people[idx as usize];
        let list = &mut self.by_lc[usize::from(row.lc)];
        let key = |i: u32| {
            let r = people[i as usize];
            (r.created, r.id)
        };
        let pos = list.partition_point(|i| key(*i) > (row.created, row.id));
        list.insert(pos, idx);
    }

    /// Brings a person's row in line with their overlay JSON.
    fn sync_person_row(&mut self, idx: u32, clock: DateTime<Utc>) {
        let json = self
            .person_overlay
            .get(&idx)
            .cloned()
            .unwrap_or(Value::Null);
        let now = clock.timestamp();
        let lc = id_of(&json["home_lc"]["id"]);
        let status = json["status"].as_str().unwrap_or("").to_owned();
        let status = self.status_code(&status);
        let created = pack_time(time_of(json.get("created_at")).unwrap_or(now));
        let updated = pack_time(time_of(json.get("updated_at")).unwrap_or(now));
        let old = self.people[idx as usize];
        let slot = match lc {
            Some(lc) => self.lc_slot(lc),
            None => old.lc,
        };
        let row = &mut self.people[idx as usize];
        row.status = status;
        row.updated = updated;
        row.created = created;
        if slot != old.lc || created != old.created {
            // Re-file the person: their LC or their place in the default order changed.
            self.set_person_lc(idx, slot);
        }
    }

    /// Brings an application's row in line with its overlay JSON.
    fn sync_app_row(&mut self, idx: u32, clock: DateTime<Utc>) {
        let json = self.app_overlay.get(&idx).cloned().unwrap_or(Value::Null);
        let now = clock.timestamp();
        let status = json["status"].as_str().unwrap_or("").to_owned();
        let status = self.status_code(&status);
        let person = id_of(&json["person"]["id"])
            .and_then(|id| self.person_index(id))
            .unwrap_or(NO_PERSON);
        let row = &mut self.apps[idx as usize];
        row.status = status;
        row.created = pack_time(time_of(json.get("created_at")).unwrap_or(now));
        row.updated = pack_time(time_of(json.get("updated_at")).unwrap_or(now));
        if row.person != person {
            row.person = person;
            if person != NO_PERSON {
                self.extra_apps.entry(person).or_default().push(idx);
            }
        }
    }

    fn touch(record: &mut Value, clock: DateTime<Utc>, patch: Option<&Value>) {
        if patch.is_none_or(|p| p.get("updated_at").is_none()) {
            record["updated_at"] = format_time(clock);
        }
    }

    /// Merges `patch` (top-level keys) into a person; `updated_at` becomes `clock` unless
    /// the patch sets it.
    pub(crate) fn update_person(&mut self, id: u64, patch: &Value, clock: DateTime<Utc>) -> bool {
        let Some(idx) = self.person_index(id) else {
            return false;
        };
        let mut record = self.person_json_at(idx);
        if let (Some(target), Some(fields)) = (record.as_object_mut(), patch.as_object()) {
            for (k, v) in fields {
                target.insert(k.clone(), v.clone());
            }
        }
        // The id is the key: a patch cannot change it.
        record["id"] = Value::String(id.to_string());
        Self::touch(&mut record, clock, Some(patch));
        self.person_overlay.insert(idx, record);
        self.sync_person_row(idx, clock);
        self.invalidate();
        true
    }

    /// Moves a person to another LC (and its MC), touching `updated_at`.
    pub(crate) fn move_person(&mut self, id: u64, lc: u64, clock: DateTime<Utc>) -> bool {
        let patch = json!({
            "home_lc": {"id": lc.to_string(), "name": lc_name(lc)},
            "home_mc": mc_of(lc),
        });
        self.update_person(id, &patch, clock)
    }

    /// Removes a person and, with them, their applications.
    pub(crate) fn remove_person(&mut self, id: u64) -> bool {
        let Some(idx) = self.person_index(id) else {
            return false;
        };
        let lc = usize::from(self.people[idx as usize].lc);
        self.by_lc[lc].retain(|i| *i != idx);
        self.people[idx as usize].removed = true;
        self.invalidate();
        true
    }

    /// Removes an application (its person stays).
    pub(crate) fn remove_application(&mut self, id: u64) -> bool {
        let Some(idx) = self.app_index(id) else {
            return false;
        };
        self.apps[idx as usize].removed = true;
        self.invalidate();
        true
    }

    /// Adds a person (or replaces the one with the same id).
    pub(crate) fn insert_person(&mut self, mut person: Value, clock: DateTime<Utc>) {
        let id = id_of(&person["id"]).expect("insert_person needs a numeric \"id\"");
        assert!(
            id_of(&person["home_lc"]["id"]).is_some(),
            "insert_person needs \"home_lc\": {{\"id\": ..}}"
        );
        person["id"] = Value::String(id.to_string());
        for key in ["created_at", "updated_at"] {
            if person.get(key).is_none() {
                person[key] = format_time(clock);
            }
        }
        let idx = match self.person_index(id) {
            Some(idx) => idx,
            None => {
                let idx = to_u32(self.people.len());
                let row = PersonRow {
                    id,
                    created: 0,
                    updated: 0,
                    lc: self.lc_slot(id_of(&person["home_lc"]["id"]).unwrap_or(0)),
                    status: 0,
                    removed: false,
                };
                self.people.push(row);
                self.person_ids.insert(id, idx);
                self.insert_in_lc(idx);
                idx
            }
        };
        self.person_overlay.insert(idx, person);
        self.sync_person_row(idx, clock);
        self.invalidate();
    }

    /// Adds an application (or replaces the one with the same id).
    pub(crate) fn insert_application(&mut self, mut app: Value, clock: DateTime<Utc>) {
        let id = id_of(&app["id"]).expect("insert_application needs a numeric \"id\"");
        assert!(
            id_of(&app["person"]["id"]).is_some(),
            "insert_application needs \"person\": {{\"id\": ..}}"
        );
        app["id"] = Value::String(id.to_string());
        for key in ["created_at", "updated_at"] {
            if app.get(key).is_none() {
                app[key] = format_time(clock);
            }
        }
        let idx = match self.app_index(id) {
            Some(idx) => idx,
            None => {
                let idx = to_u32(self.apps.len());
                self.apps.push(AppRow {
                    id,
                    person: NO_PERSON,
                    created: 0,
                    updated: 0,
                    status: 0,
                    removed: false,
                });
                self.app_ids.insert(id, idx);
                idx
            }
        };
        self.app_overlay.insert(idx, app);
        self.sync_app_row(idx, clock);
        self.invalidate();
    }

    /// Merges `patch` (top-level keys) into an application; `updated_at` becomes `clock`
    /// unless the patch sets it.
    pub(crate) fn update_application(
        &mut self,
        id: u64,
        patch: &Value,
        clock: DateTime<Utc>,
    ) -> bool {
        let Some(idx) = self.app_index(id) else {
            return false;
        };
        let mut record = self.app_json_at(idx);
        if let (Some(target), Some(fields)) = (record.as_object_mut(), patch.as_object()) {
            for (k, v) in fields {
                target.insert(k.clone(), v.clone());
            }
        }
        record["id"] = Value::String(id.to_string());
        Self::touch(&mut record, clock, Some(patch));
        self.app_overlay.insert(idx, record);
        self.sync_app_row(idx, clock);
        self.invalidate();
        true
    }

    /// Sets an application's status, stamps the date field(s) of that status and
    /// `updated_at` with `clock`.
    pub(crate) fn set_application_status(
        &mut self,
        id: u64,
        status: &str,
        clock: DateTime<Utc>,
    ) -> bool {
        let Some(idx) = self.app_index(id) else {
            return false;
        };
        let mut record = self.app_json_at(idx);
        let now = format_time(clock);
        record["status"] = Value::String(status.to_owned());
        record["current_status"] = Value::String(status.to_owned());
        let (top, meta): (&[&str], &[&str]) = match status {
            "matched" => (
                &["date_matched", "matched_or_rejected_at"],
                &["date_matched"],
            ),
            "accepted" => (&["an_signed_at"], &[]),
            "approved_tn_manager" => (&[], &["date_tn_approved"]),
            "approved_ep_manager" => (&[], &["date_ep_approved"]),
            "approved" => (&["date_approved"], &["date_approved"]),
            "realized" => (&["date_realized"], &["date_realized"]),
            "remote_realized" => (&[], &["remote_realized_at"]),
            "finished" => (&["experience_end_date"], &[]),
            "completed" => (&[], &["date_completed"]),
            "withdrawn" => (&[], &["date_withdrawn"]),
            "rejected" => (&["matched_or_rejected_at"], &["date_rejected"]),
            "approval_broken" => (&["date_approval_broken"], &["date_approval_broken"]),
            "realization_broken" => (&["date_realisation_broke"], &["date_realisation_broke"]),
            "remote_realization_broken" => (&[], &["date_remote_realization_broken_at"]),
            _ => (&[], &[]),
        };
        for field in top {
            record[*field] = now.clone();
        }
        if status == "accepted" && record["date_matched"].is_null() {
            record["date_matched"] = now.clone();
        }
        if !meta.is_empty() && !record["meta"].is_object() {
            record["meta"] = json!({});
        }
        for field in meta {
            record["meta"][*field] = now.clone();
        }
        record["updated_at"] = now;
        self.app_overlay.insert(idx, record);
        self.sync_app_row(idx, clock);
        self.invalidate();
        true
    }
}

/// The rows of `keyed` ((time, id) per row index), newest first, ties by id descending.
fn newest_first(keyed: &[(u32, u64)]) -> Vec<u32> {
    let mut rows: Vec<(u32, u64, u32)> = keyed
        .iter()
        .enumerate()
        .map(|(i, (time, id))| (*time, *id, to_u32(i)))
        .collect();
    rows.sort_unstable_by_key(|(time, id, _)| std::cmp::Reverse((*time, *id)));
    rows.into_iter().map(|(_, _, i)| i).collect()
}

/// The rows of a newest-first `order` that `keep` accepts, in the direction `sort` asks.
///
/// `keep` runs over the rows in storage order first, into a bit per row: walking the rows in
/// `order` instead would read them at random, and at millions of rows those cache misses
/// were most of a query's time.
fn in_order(order: &[u32], sort: Sort, keep: impl Fn(u32) -> bool) -> Vec<u32> {
    let mut kept = vec![0u64; order.len().div_ceil(64)];
    for row in 0..to_u32(order.len()) {
        if keep(row) {
            kept[(row / 64) as usize] |= 1 << (row % 64);
        }
    }
    let is_kept = |row: &u32| kept[(*row / 64) as usize] & (1 << (*row % 64)) != 0;
    if sort.desc {
        order.iter().copied().filter(is_kept).collect()
    } else {
        order.iter().rev().copied().filter(is_kept).collect()
    }
}

fn sort_indexes(found: &mut [u32], sort: Sort, key: impl Fn(u32) -> (u32, u32, u64)) {
    found.sort_by(|a, b| {
        let (ca, ua, ia) = key(*a);
        let (cb, ub, ib) = key(*b);
        let ord = match sort.key {
            SortKey::CreatedAt => (ca, ia).cmp(&(cb, ib)),
            SortKey::UpdatedAt => (ua, ia).cmp(&(ub, ib)),
        };
        if sort.desc {
            ord.reverse()
        } else {
            ord
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// What `find_people` must answer, read the slow way: each wanted LC's list, filtered,
    /// then sorted.
    fn people_oracle(store: &Store, q: &PeopleQuery) -> Vec<u32> {
        let mut found: Vec<u32> = (0..store.lcs.len())
            .filter(|slot| q.lcs.as_ref().is_none_or(|l| l.contains(&store.lcs[*slot])))
            .flat_map(|slot| store.by_lc[slot].iter().copied())
            .filter(|i| {
                let row = store.people[*i as usize];
                q.last_interaction
                    .is_none_or(|w| w.contains(unpack_time(row.updated)))
                    && store.status_matches(row.status, &q.statuses)
            })
            .collect();
        sort_indexes(&mut found, q.sort, |i| {
            let r = store.people[i as usize];
            (r.created, r.updated, r.id)
        });
        found
    }

    /// What `find_apps` must answer: the applications of each listed person, filtered, sorted.
    fn apps_oracle(store: &Store, q: &AppQuery) -> Vec<u32> {
        let people = PeopleQuery {
            lcs: q.person_lcs.clone(),
            ..PeopleQuery::default()
        };
        let mut found: Vec<u32> = people_oracle(store, &people)
            .into_iter()
            .flat_map(|p| store.apps_of(p))
            .filter(|j| {
                let row = store.apps[*j as usize];
                q.last_interaction
                    .is_none_or(|w| w.contains(unpack_time(row.updated)))
                    && store.status_matches(row.status, &q.statuses)
            })
            .collect();
        sort_indexes(&mut found, q.sort, |j| {
            let r = store.apps[j as usize];
            (r.created, r.updated, r.id)
        });
        found
    }

    fn assert_queries_agree(store: &Store, when: &str) {
        let sorts = [
            Sort::default(),
            Sort {
                key: SortKey::CreatedAt,
                desc: false,
            },
            Sort {
                key: SortKey::UpdatedAt,
                desc: true,
            },
            Sort {
                key: SortKey::UpdatedAt,
                desc: false,
            },
        ];
        let middle = unpack_time(store.people[store.people.len() / 2].updated);
        let windows = [
            None,
            Some(Window {
                from: Some(middle),
                to: None,
            }),
        ];
        let lc_lists = [None, Some(vec![11]), Some(vec![12, 13]), Some(vec![99])];
        let statuses = [None, Some(vec!["approved".to_owned(), "open".to_owned()])];
        for sort in sorts {
            for window in windows {
                for lcs in &lc_lists {
                    for status in &statuses {
                        let people = PeopleQuery {
                            lcs: lcs.clone(),
                            last_interaction: window,
                            statuses: status.clone(),
                            sort,
                            ..PeopleQuery::default()
                        };
                        assert_eq!(
                            *store.find_people(&people),
                            people_oracle(store, &people),
                            "{when}: {people:?}"
                        );
                        let apps = AppQuery {
                            person_lcs: lcs.clone(),
                            last_interaction: window,
                            statuses: status.clone(),
                            sort,
                            ..AppQuery::default()
                        };
                        assert_eq!(
                            *store.find_apps(&apps),
                            apps_oracle(store, &apps),
                            "{when}: {apps:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn list_queries_answer_what_filtering_and_sorting_every_list_would_after_mutations() {
        let mut store = Store::generate(7, 400, &[11, 12, 13]);
        assert_queries_agree(&store, "generated");

        let clock = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        let person = |i: u64| PERSON_ID_BASE + i;
        let app = |j: u64| APP_ID_BASE + j;
        // Every kind of mutation, each of which re-files rows the orders were built from.
        assert!(store.update_person(person(3), &json!({"status": "approved"}), clock));
        assert!(store.move_person(person(5), 12, clock));
        assert!(store.move_person(person(6), 99, clock));
        assert!(store.remove_person(person(7)));
        assert!(store.remove_application(app(10)));
        assert!(store.set_application_status(app(20), "approved", clock));
        assert!(store.update_application(
            app(30),
            &json!({"person": {"id": person(8).to_string()}}),
            clock
        ));
        store.insert_person(
            json!({"id": "9000001", "home_lc": {"id": "13"}, "status": "open",
                   "created_at": "2020-01-01T00:00:00Z"}),
            clock,
        );
        store.insert_application(
            json!({"id": "9100001", "person": {"id": "9000001"}, "status": "approved"}),
            clock,
        );
        assert_queries_agree(&store, "after mutations");

        // A person removed and inserted again under the same id leaves a removed row behind.
        assert!(store.remove_person(person(9)));
        store.insert_person(
            json!({"id": person(9).to_string(), "home_lc": {"id": "11"}}),
            clock,
        );
        assert_queries_agree(&store, "after a re-insert");
    }
}

//! Lists that change while a client pages through them (SPEC 3 "Paging", issue 10): a
//! deterministic drift schedule, out-of-order serving of concurrent pages, and the logs a
//! test needs to know what happened.
//!
//! Terms, so tests can rely on them:
//! - A *list page request* is a request of `people` / `allPeople` or
//!   `allOpportunityApplication` that is not narrowed to given ids (`filters.ids`) or to one
//!   person (`filters.person_id`, `personApplications`): a page of the whole list (full or
//!   incremental read). Lookups by id are served normally and never counted.
//! - They are counted per list, 1-based, from the moment a schedule is set, in the order
//!   the fake *computes* them (while drift or out-of-order serving is on, the fake computes
//!   one page at a time, so that order is well defined). Pages past the end count too.
//! - A *scan* of a list starts when a page-1 request of it arrives; the records *served by
//!   this scan* are those on the list's pages computed since.
//! - The *head* of a list is its first record in the default order (`created_at` desc,
//!   ties by id desc; the fake's lists are kept in that order): a new record stamped later
//!   than every other record (the fake's clock, or one second past the newest record,
//!   whichever is later) goes there, and in `updated_at` desc order too. Moves stamp
//!   `updated_at` with the clock. The fake's clock is fixed unless set
//!   ([`super::FakeGis::set_clock`]): set it to the client's "now" when an incremental read
//!   must see drifted records as recently changed, as a real new sign-up would be.
//!
//! A step "after the N-th page request of list L" runs right after the fake computed that
//! request and before it computes any later one, on the list as filtered by that request
//! (its LCs: `home_committee` or `person_home_lc`). Which records it picks is drawn from the
//! schedule's seed; what it did is logged ([`DriftApplied`]), so a test can tell the
//! expected final content. Deleting a person deletes their applications, as in GIS.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::generate::{format_time, lc_name, mc_of};
use super::graphql::{int_list, list_ids, ComputedPage, ListRequest};
use super::rng::Rng;
use super::store::Store;

/// People added by drift get ids from here up (skipping ids in use).
const DRIFT_PERSON_ID_BASE: u64 = 40_000_000;
/// Applications added by drift get ids from here up (skipping ids in use).
const DRIFT_APP_ID_BASE: u64 = 90_000_000;
/// Where people moved out of a scan go when every LC of the fake is in the scan.
const ELSEWHERE_LC: u64 = 4242;
/// Salt of the random draws of a schedule's steps.
const SALT_DRIFT: u64 = 0xD81F;
/// Salt of random schedules.
const SALT_SCHEDULE: u64 = 0x5C4E;

/// A list ciosync pages through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GisList {
    /// `people` (and the deprecated `allPeople`).
    People,
    /// `allOpportunityApplication`.
    Applications,
}

/// Which records of the list a step picks, relative to the scan in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Records this scan already served: removing one shifts the unread ones back, onto
    /// pages already read.
    Served,
    /// Records this scan has not served yet.
    Unserved,
}

/// What a step does to the list it watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftAction {
    /// New records at the head, in the scan's first LC: new sign-ups (people list) or new
    /// `open` applications of people of the scan's LCs (applications list). Shifts every
    /// record forward.
    InsertAtHead(usize),
    /// Deletes records of the list: people (with their applications) or applications.
    Delete(Which, usize),
    /// Moves people out of the scan's LCs (to another LC of the fake): the picked people,
    /// or the people of the picked applications, with all their applications.
    MoveOut(Which, usize),
    /// Moves people of other LCs into the scan's first LC (on the applications list, people
    /// with at least one application); they land wherever their `created_at` puts them.
    MoveIn(usize),
}

impl DriftAction {
    /// Every kind of action, each with `max_count` as its count: the choices of a random
    /// schedule that may do anything.
    pub fn every_kind(max_count: usize) -> Vec<DriftAction> {
        vec![
            DriftAction::InsertAtHead(max_count),
            DriftAction::Delete(Which::Served, max_count),
            DriftAction::Delete(Which::Unserved, max_count),
            DriftAction::MoveOut(Which::Served, max_count),
            DriftAction::MoveOut(Which::Unserved, max_count),
            DriftAction::MoveIn(max_count),
        ]
    }

    fn count(self) -> usize {
        match self {
            DriftAction::InsertAtHead(n)
            | DriftAction::Delete(_, n)
            | DriftAction::MoveOut(_, n)
            | DriftAction::MoveIn(n) => n,
        }
    }

    fn with_count(self, n: usize) -> DriftAction {
        match self {
            DriftAction::InsertAtHead(_) => DriftAction::InsertAtHead(n),
            DriftAction::Delete(which, _) => DriftAction::Delete(which, n),
            DriftAction::MoveOut(which, _) => DriftAction::MoveOut(which, n),
            DriftAction::MoveIn(_) => DriftAction::MoveIn(n),
        }
    }
}

/// "After the `after`-th page request of `list`, do `action`."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriftStep {
    pub list: GisList,
    /// 1-based, counted per list from the moment the schedule was set.
    pub after: u64,
    pub action: DriftAction,
}

/// A deterministic drift schedule: its steps, and the seed that picks the records they
/// touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftSchedule {
    pub seed: u64,
    pub steps: Vec<DriftStep>,
}

impl DriftSchedule {
    /// An empty schedule (no drift; the page log is still kept).
    pub fn new(seed: u64) -> DriftSchedule {
        DriftSchedule {
            seed,
            steps: Vec::new(),
        }
    }

    /// This schedule plus "after the `after`-th page request of `list`, do `action`".
    #[must_use]
    pub fn after(mut self, list: GisList, after: u64, action: DriftAction) -> DriftSchedule {
        self.steps.push(DriftStep {
            list,
            after,
            action,
        });
        self
    }

    /// `steps` random steps drawn from `seed`: each on either list, after a request
    /// number in `1..=max_after`, doing one of `choices` with a count in `1..=` its count.
    /// The same arguments always give the same schedule.
    pub fn random(
        seed: u64,
        steps: usize,
        max_after: u64,
        choices: &[DriftAction],
    ) -> DriftSchedule {
        let mut rng = Rng::new(seed, SALT_SCHEDULE, 0);
        let mut schedule = DriftSchedule::new(seed);
        if choices.is_empty() {
            return schedule;
        }
        for _ in 0..steps {
            let list = if rng.chance(50) {
                GisList::People
            } else {
                GisList::Applications
            };
            let after = rng.range(1, max_after.max(1));
            let choice = choices[index(rng.below(choices.len() as u64))];
            let count = rng.range(1, choice.count().max(1) as u64);
            schedule = schedule.after(list, after, choice.with_count(index(count)));
        }
        schedule
    }
}

/// What one step did. Ids are in the order the step touched them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftApplied {
    pub step: DriftStep,
    pub people_inserted: Vec<u64>,
    pub applications_inserted: Vec<u64>,
    /// People deleted (their applications are in `applications_deleted`).
    pub people_deleted: Vec<u64>,
    pub applications_deleted: Vec<u64>,
    /// People moved out of the scan's LCs (with all their applications).
    pub moved_out: Vec<u64>,
    /// People moved into the scan's first LC.
    pub moved_in: Vec<u64>,
}

impl DriftApplied {
    fn new(step: DriftStep) -> DriftApplied {
        DriftApplied {
            step,
            people_inserted: Vec::new(),
            applications_inserted: Vec::new(),
            people_deleted: Vec::new(),
            applications_deleted: Vec::new(),
            moved_out: Vec::new(),
            moved_in: Vec::new(),
        }
    }
}

/// One list page request as the fake computed it (kept while drift or out-of-order
/// serving is on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageServed {
    /// Its number among the page requests of its list (what [`DriftStep::after`] counts).
    pub request: u64,
    pub list: GisList,
    pub page: u64,
    pub per_page: u32,
    /// `paging.total_items` as answered: the list's length when the page was computed.
    pub total_items: u64,
    /// `paging.total_pages` as answered.
    pub total_pages: u64,
    /// The ids on the page, in order.
    pub ids: Vec<u64>,
}

/// The drift and paging state of one fake.
#[derive(Default)]
pub(crate) struct Tracker {
    schedule: Option<DriftSchedule>,
    out_of_order: Option<Duration>,
    requests: BTreeMap<GisList, u64>,
    /// Ids served by the scan in progress, per list.
    served: BTreeMap<GisList, HashSet<u64>>,
    /// Pages computed by the scan in progress, per scan key (out-of-order serving).
    computed: HashMap<String, BTreeSet<u64>>,
    /// Pages requested and not answered yet, per scan key (a page may be asked twice).
    in_flight: HashMap<String, Vec<u64>>,
    drift_log: Vec<DriftApplied>,
    page_log: Vec<PageServed>,
    next_person_id: u64,
    next_app_id: u64,
    last_stamp: i64,
}

impl Tracker {
    /// Whether list page requests are tracked (and computed one at a time).
    pub(crate) fn active(&self) -> bool {
        self.schedule.is_some() || self.out_of_order.is_some()
    }

    /// Starts `schedule` afresh: request counts, scans and logs start over.
    pub(crate) fn set_schedule(&mut self, schedule: Option<DriftSchedule>) {
        self.schedule = schedule;
        self.requests.clear();
        self.served.clear();
        self.computed.clear();
        self.drift_log.clear();
        self.page_log.clear();
    }

    /// Stops the schedule; the logs stay.
    pub(crate) fn stop_schedule(&mut self) {
        self.schedule = None;
    }

    pub(crate) fn set_out_of_order(&mut self, fallback: Option<Duration>) {
        self.out_of_order = fallback;
    }

    pub(crate) fn out_of_order(&self) -> Option<Duration> {
        self.out_of_order
    }

    pub(crate) fn drift_log(&self) -> Vec<DriftApplied> {
        self.drift_log.clone()
    }

    pub(crate) fn page_log(&self) -> Vec<PageServed> {
        self.page_log.clone()
    }

    /// A list page request arrived: page 1 starts a new scan of its list.
    pub(crate) fn arrive(&mut self, request: &ListRequest) {
        if request.page <= 1 {
            self.served.entry(request.list).or_default().clear();
            self.computed.remove(&request.scan_key());
        }
    }

    /// Whether the scan in progress has computed `page` of the scan `key`.
    pub(crate) fn computed(&self, key: &str, page: u64) -> bool {
        self.computed
            .get(key)
            .is_some_and(|pages| pages.contains(&page))
    }

    /// Page `page` of scan `key` was requested.
    pub(crate) fn enter(&mut self, key: &str, page: u64) {
        self.in_flight.entry(key.to_owned()).or_default().push(page);
    }

    /// Page `page` of scan `key` was answered (or abandoned).
    pub(crate) fn leave(&mut self, key: &str, page: u64) {
        if let Some(pages) = self.in_flight.get_mut(key) {
            if let Some(i) = pages.iter().position(|p| *p == page) {
                pages.swap_remove(i);
            }
            if pages.is_empty() {
                self.in_flight.remove(key);
            }
        }
    }

    /// Whether a page after `page` of scan `key` is requested and not answered yet.
    pub(crate) fn in_flight_after(&self, key: &str, page: u64) -> bool {
        self.in_flight
            .get(key)
            .is_some_and(|pages| pages.iter().any(|p| *p > page))
    }

    /// Records a computed list page and returns the steps now due.
    pub(crate) fn record(&mut self, page: &ComputedPage, scan_key: String) -> Vec<DriftStep> {
        let count = self.requests.entry(page.list).or_default();
        *count += 1;
        let request = *count;
        self.served
            .entry(page.list)
            .or_default()
            .extend(page.ids.iter().copied());
        self.computed.entry(scan_key).or_default().insert(page.page);
        self.page_log.push(PageServed {
            request,
            list: page.list,
            page: page.page,
            per_page: page.per_page,
            total_items: page.total_items,
            total_pages: page.total_items.div_ceil(u64::from(page.per_page.max(1))),
            ids: page.ids.clone(),
        });
        self.schedule
            .as_ref()
            .map(|s| {
                s.steps
                    .iter()
                    .filter(|step| step.list == page.list && step.after == request)
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Runs `step` on `store`, on the list as `trigger` (the request just computed) filters it.
    pub(crate) fn apply(
        &mut self,
        store: &mut Store,
        step: DriftStep,
        trigger: &ComputedPage,
        clock: DateTime<Utc>,
    ) {
        let seed = self.schedule.as_ref().map_or(0, |s| s.seed);
        let mut rng = Rng::new(seed, SALT_DRIFT, self.drift_log.len() as u64);
        let lc_key = match step.list {
            GisList::People => "home_committee",
            GisList::Applications => "person_home_lc",
        };
        let scan_lcs = int_list(&trigger.args["filters"][lc_key]);
        let in_scan = |lc: u64| scan_lcs.as_ref().is_none_or(|lcs| lcs.contains(&lc));
        let home = scan_lcs
            .as_ref()
            .and_then(|lcs| lcs.first().copied())
            .or_else(|| store.lcs().first().copied())
            .unwrap_or(ELSEWHERE_LC);
        let mut done = DriftApplied::new(step);
        let pick_from_list = |which: Which, served: &HashSet<u64>, store: &Store| {
            list_ids(store, step.list, &trigger.args)
                .into_iter()
                .filter(|id| served.contains(id) == (which == Which::Served))
                .collect::<Vec<u64>>()
        };
        let served = self.served.get(&step.list).cloned().unwrap_or_default();
        match step.action {
            DriftAction::InsertAtHead(n) => {
                for _ in 0..n {
                    let stamp = self.next_stamp(store, clock);
                    match step.list {
                        GisList::People => {
                            let id = self.fresh_person_id(store);
                            store.insert_person(newcomer(id, home, stamp), clock);
                            done.people_inserted.push(id);
                        }
                        GisList::Applications => {
                            let people: Vec<u64> = store
                                .lcs()
                                .iter()
                                .filter(|lc| in_scan(**lc))
                                .flat_map(|lc| store.person_ids(*lc))
                                .collect();
                            let Some(person) = pick(&mut rng, people, 1).first().copied() else {
                                break;
                            };
                            let id = self.fresh_app_id(store);
                            store.insert_application(new_application(id, person, stamp), clock);
                            done.applications_inserted.push(id);
                        }
                    }
                }
            }
            DriftAction::Delete(which, n) => {
                let picked = pick(&mut rng, pick_from_list(which, &served, store), n);
                for id in picked {
                    match step.list {
                        GisList::People => {
                            let apps = store.application_ids(id);
                            if store.remove_person(id) {
                                done.people_deleted.push(id);
                                done.applications_deleted.extend(apps);
                            }
                        }
                        GisList::Applications => {
                            if store.remove_application(id) {
                                done.applications_deleted.push(id);
                            }
                        }
                    }
                }
            }
            DriftAction::MoveOut(which, n) => {
                let target = store
                    .lcs()
                    .iter()
                    .copied()
                    .find(|lc| !in_scan(*lc))
                    .unwrap_or(ELSEWHERE_LC);
                // Without an LC filter every LC is in the scan: nowhere to move out to.
                if scan_lcs.is_some() && !in_scan(target) {
                    let picked = pick(&mut rng, pick_from_list(which, &served, store), n);
                    let mut people: Vec<u64> = Vec::new();
                    for id in picked {
                        let person = match step.list {
                            GisList::People => Some(id),
                            GisList::Applications => store.application_person(id),
                        };
                        if let Some(person) = person.filter(|p| !people.contains(p)) {
                            people.push(person);
                        }
                    }
                    for person in people {
                        if store.move_person(person, target, clock) {
                            done.moved_out.push(person);
                        }
                    }
                }
            }
            DriftAction::MoveIn(n) => {
                let outside: Vec<u64> = store
                    .lcs()
                    .iter()
                    .filter(|lc| !in_scan(**lc))
                    .flat_map(|lc| store.person_ids(*lc))
                    .filter(|p| {
                        step.list == GisList::People || !store.application_ids(*p).is_empty()
                    })
                    .collect();
                for person in pick(&mut rng, outside, n) {
                    if store.move_person(person, home, clock) {
                        done.moved_in.push(person);
                    }
                }
            }
        }
        self.drift_log.push(done);
    }

    /// A time later than every record's, and than the previous stamp.
    fn next_stamp(&mut self, store: &Store, clock: DateTime<Utc>) -> i64 {
        let stamp = clock
            .timestamp()
            .max(store.newest_time() + 1)
            .max(self.last_stamp + 1);
        self.last_stamp = stamp;
        stamp
    }

    fn fresh_person_id(&mut self, store: &Store) -> u64 {
        loop {
            let id = DRIFT_PERSON_ID_BASE + self.next_person_id;
            self.next_person_id += 1;
            if store.person_json(id).is_none() {
                return id;
            }
        }
    }

    fn fresh_app_id(&mut self, store: &Store) -> u64 {
        loop {
            let id = DRIFT_APP_ID_BASE + self.next_app_id;
            self.next_app_id += 1;
            if store.application_json(id).is_none() {
                return id;
            }
        }
    }
}

fn index(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Up to `n` of `candidates`, drawn without repeats, in draw order.
fn pick(rng: &mut Rng, mut candidates: Vec<u64>, n: usize) -> Vec<u64> {
    let n = n.min(candidates.len());
    for i in 0..n {
        let j = i + index(rng.below((candidates.len() - i) as u64));
        candidates.swap(i, j);
    }
    candidates.truncate(n);
    candidates
}

fn stamp_json(stamp: i64) -> Value {
    DateTime::<Utc>::from_timestamp(stamp, 0).map_or(Value::Null, format_time)
}

/// A new sign-up in `lc`, created (and updated) at `stamp`.
fn newcomer(id: u64, lc: u64, stamp: i64) -> Value {
    let at = stamp_json(stamp);
    json!({
        "id": id.to_string(),
        "email": format!("p_drift{id}@inbound.aiesec.org"),
        "first_name": "Nova",
        "last_name": format!("Newcomer{id}"),
        "full_name": format!("Nova Newcomer{id}"),
        "dob": null,
        "created_at": at,
        "updated_at": at,
        "interviewed": false,
        "profile_photo": null,
        "status": "open",
        "cv_url": null,
        "nps_score": null,
        "permissions": {"can_apply": true},
        "home_lc": {"id": lc.to_string(), "name": lc_name(lc)},
        "home_mc": mc_of(lc),
    })
}

/// A new `open` application of `person`, created (and updated) at `stamp`.
fn new_application(id: u64, person: u64, stamp: i64) -> Value {
    let at = stamp_json(stamp);
    let programme = json!({"id": "7", "short_name": "GCDP", "short_name_display": "GV"});
    json!({
        "id": id.to_string(),
        "status": "open",
        "current_status": "open",
        "created_at": at,
        "updated_at": at,
        "meta": {},
        "person": {"id": person.to_string()},
        "opportunity": {
            "id": "303999",
            "title": "Drift test project",
            "programme": programme,
            "programmes": [programme],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_schedules_replay_from_their_seed() {
        let choices = DriftAction::every_kind(3);
        let a = DriftSchedule::random(7, 20, 6, &choices);
        assert_eq!(a, DriftSchedule::random(7, 20, 6, &choices));
        assert_ne!(a, DriftSchedule::random(8, 20, 6, &choices));
        assert_eq!(a.steps.len(), 20);
        for step in &a.steps {
            assert!((1..=6).contains(&step.after), "{step:?}");
            assert!((1..=3).contains(&step.action.count()), "{step:?}");
        }
        let kinds: HashSet<String> = a
            .steps
            .iter()
            .map(|s| format!("{:?}", s.action.with_count(0)))
            .collect();
        assert!(kinds.len() >= 4, "20 steps draw most kinds: {kinds:?}");
        assert!(DriftSchedule::random(7, 5, 6, &[]).steps.is_empty());
    }

    #[test]
    fn pick_draws_distinct_candidates() {
        let mut rng = Rng::new(1, 2, 3);
        let picked = pick(&mut rng, (0..10).collect(), 4);
        assert_eq!(picked.len(), 4);
        assert_eq!(picked.iter().collect::<HashSet<_>>().len(), 4);
        assert_eq!(pick(&mut rng, vec![5, 6], 9).len(), 2);
    }
}

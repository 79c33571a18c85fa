//! The fake GIS's drift hook and out-of-order serving (issue 10), driven over HTTP the way a
//! paging client drives it: steps fire between the right page requests, inserts at the
//! head shift records forward, deletions shift them back, concurrent pages are computed
//! latest first, `paging` stays truthful, and the drift log tells the final content.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use ciosync::fake::gis::{
    DriftAction, DriftSchedule, FakeGis, FakeGisOptions, GisList, PageServed, Which,
};
use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::common::{code, stderr, Env};

const PEOPLE: &str = "query People($lcs: [Int], $page: Int, $perPage: Int) { people(filters: {home_committee: $lcs}, page: $page, per_page: $perPage) { paging { current_page total_pages total_items } data { id } } }";
const APPS: &str = "query Apps($lcs: [Int], $page: Int, $perPage: Int) { allOpportunityApplication(filters: {person_home_lc: $lcs}, page: $page, per_page: $perPage) { paging { current_page total_pages total_items } data { id person { id } } } }";
const PEOPLE_BY_ID: &str =
    "query ById($ids: [ID!]) { people(filters: {ids: $ids}) { data { id } } }";

/// `people` generated people spread over LC 1337 (in the scans below) and LC 2001 (not).
fn start(people: usize) -> FakeGis {
    FakeGis::start(FakeGisOptions {
        people,
        lcs: vec![1337, 2001],
        ..FakeGisOptions::default()
    })
    .expect("fake GIS starts")
}

/// One page as answered: its ids and its `paging`.
#[derive(Debug, Clone)]
struct Page {
    ids: Vec<u64>,
    paging: Value,
}

async fn post(fake: &FakeGis, query: &str, variables: Value) -> Value {
    // No idle connections: a fake dropped at the end of a case then stops at once instead
    // of waiting for them (its shutdown grace).
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("build client");
    let body: Value = client
        .post(fake.graphql_url())
        .header("Authorization", fake.static_token())
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .expect("request reaches the fake")
        .json()
        .await
        .expect("a JSON body");
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
    body["data"].clone()
}

fn root(query: &str) -> &'static str {
    if query.contains("allOpportunityApplication") {
        "allOpportunityApplication"
    } else {
        "people"
    }
}

/// Page `page` of `query` over LC 1337.
async fn page(fake: &FakeGis, query: &str, page: u64, per_page: u64) -> Page {
    let data = post(
        fake,
        query,
        json!({"lcs": [1337], "page": page, "perPage": per_page}),
    )
    .await;
    let list = &data[root(query)];
    let ids = list["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| {
            r["id"]
                .as_str()
                .expect("string id")
                .parse()
                .expect("digits")
        })
        .collect();
    Page {
        ids,
        paging: list["paging"].clone(),
    }
}

/// Reads pages 1, 2, ... one at a time until an empty one (at most 100).
async fn scan(fake: &FakeGis, query: &str, per_page: u64) -> Vec<Page> {
    let mut pages = Vec::new();
    for number in 1..=100 {
        let p = page(fake, query, number, per_page).await;
        let empty = p.ids.is_empty();
        pages.push(p);
        if empty {
            break;
        }
    }
    pages
}

fn served(pages: &[Page]) -> Vec<u64> {
    pages.iter().flat_map(|p| p.ids.iter().copied()).collect()
}

fn set(ids: impl IntoIterator<Item = u64>) -> BTreeSet<u64> {
    ids.into_iter().collect()
}

/// The ids of the applications list over LC 1337 now, in order (one big page).
async fn applications_now(fake: &FakeGis) -> Vec<u64> {
    page(fake, APPS, 1, 500).await.ids
}

fn totals(log: &[PageServed], list: GisList) -> Vec<u64> {
    log.iter()
        .filter(|p| p.list == list)
        .map(|p| p.total_items)
        .collect()
}

#[tokio::test]
async fn a_step_runs_after_its_request_and_before_the_next() {
    let fake = start(60);
    let before = fake.person_ids(1337);
    let n = before.len();
    assert!(n > 20 && n < 40, "{n} people in LC 1337");
    fake.set_drift(DriftSchedule::new(1).after(GisList::People, 2, DriftAction::InsertAtHead(3)));

    // A lookup by id is not a page of the list: it is not counted and fires nothing.
    post(&fake, PEOPLE_BY_ID, json!({"ids": [before[0].to_string()]})).await;
    assert!(fake.drift_log().is_empty() && fake.page_log().is_empty());

    let pages = scan(&fake, PEOPLE, 10).await;
    let log = fake.page_log();
    assert_eq!(log.len(), pages.len());
    let n = n as u64;
    let expected: Vec<u64> = (0..log.len())
        .map(|i| if i < 2 { n } else { n + 3 })
        .collect();
    assert_eq!(
        totals(&log, GisList::People),
        expected,
        "truthful at each request"
    );
    for (answered, logged) in pages.iter().zip(&log) {
        assert_eq!(answered.paging["total_items"], json!(logged.total_items));
        assert_eq!(answered.paging["total_pages"], json!(logged.total_pages));
        assert_eq!(answered.ids, logged.ids);
    }
    assert_eq!(
        log.iter().map(|p| p.request).collect::<Vec<_>>(),
        (1..=log.len() as u64).collect::<Vec<_>>()
    );

    let drift = fake.drift_log();
    assert_eq!(drift.len(), 1);
    let inserted = &drift[0].people_inserted;
    assert_eq!(inserted.len(), 3);
    assert!(drift[0].people_deleted.is_empty() && drift[0].moved_in.is_empty());
    // The newest first: the last inserted heads the list.
    let now = fake.person_ids(1337);
    let head: Vec<u64> = inserted.iter().rev().copied().collect();
    assert_eq!(&now[..3], head.as_slice());
    assert_eq!(&now[3..], before.as_slice());
    for id in inserted {
        let person = fake.person_json(*id).expect("inserted person");
        assert_eq!(person["home_lc"]["id"], json!("1337"));
    }
}

#[tokio::test]
async fn inserts_at_the_head_shift_unread_records_forward() {
    let fake = start(60);
    let before = fake.person_ids(1337);
    fake.set_drift(DriftSchedule::new(2).after(GisList::People, 2, DriftAction::InsertAtHead(3)));
    let pages = scan(&fake, PEOPLE, 10).await;
    // Page 3 starts with the last three records of page 2, read again; nothing is missed,
    // and the new records (on page 1, already read) are not seen.
    assert_eq!(&pages[2].ids[..3], &before[17..20]);
    assert_eq!(&pages[2].ids[3..], &before[20..before.len().min(27)]);
    assert_eq!(set(served(&pages)), set(before.iter().copied()));
    assert_eq!(served(&pages).len(), before.len() + 3, "three read twice");
}

#[tokio::test]
async fn deleting_served_people_shifts_unread_ones_back_onto_read_pages() {
    let fake = start(60);
    let before = fake.person_ids(1337);
    let apps_before: HashMap<u64, Vec<u64>> = before
        .iter()
        .map(|p| (*p, fake.application_ids(*p)))
        .collect();
    let scope_apps_before = applications_now(&fake).await;
    fake.set_drift(DriftSchedule::new(3).after(
        GisList::People,
        1,
        DriftAction::Delete(Which::Served, 2),
    ));
    let pages = scan(&fake, PEOPLE, 10).await;

    let drift = fake.drift_log();
    let deleted = &drift[0].people_deleted;
    assert_eq!(deleted.len(), 2);
    assert!(
        deleted.iter().all(|d| before[..10].contains(d)),
        "served ones"
    );
    // The two records after page 1 moved onto it after it was read: never served.
    let missed: BTreeSet<u64> = set(before.iter().copied())
        .difference(&set(served(&pages)))
        .copied()
        .collect();
    assert_eq!(missed, set(before[10..12].iter().copied()));
    assert_eq!(fake.person_ids(1337).len(), before.len() - 2);

    // Their applications went with them, as in GIS.
    let gone: Vec<u64> = deleted
        .iter()
        .flat_map(|d| apps_before[d].iter().copied())
        .collect();
    assert_eq!(
        set(drift[0].applications_deleted.iter().copied()),
        set(gone.clone())
    );
    for app in &gone {
        assert!(fake.application_json(*app).is_none(), "application {app}");
    }
    let scope_apps_now = applications_now(&fake).await;
    let expected: Vec<u64> = scope_apps_before
        .into_iter()
        .filter(|a| !gone.contains(a))
        .collect();
    assert_eq!(scope_apps_now, expected);
}

#[tokio::test]
async fn deleting_unserved_people_strands_nobody() {
    let fake = start(60);
    let before = fake.person_ids(1337);
    fake.set_drift(DriftSchedule::new(4).after(
        GisList::People,
        1,
        DriftAction::Delete(Which::Unserved, 2),
    ));
    let pages = scan(&fake, PEOPLE, 10).await;
    let deleted = fake.drift_log()[0].people_deleted.clone();
    assert_eq!(deleted.len(), 2);
    assert!(
        deleted.iter().all(|d| !before[..10].contains(d)),
        "unserved ones"
    );
    let remaining: Vec<u64> = before
        .iter()
        .copied()
        .filter(|p| !deleted.contains(p))
        .collect();
    assert_eq!(
        served(&pages),
        remaining,
        "each remaining person once, in order"
    );
}

/// One person leaving the LC from a page already read and another joining further down
/// keep `total_items` constant, yet strand the record at the edge of the read pages: the
/// case a count check alone cannot see.
#[tokio::test]
async fn a_move_out_and_a_move_in_keep_the_count_and_may_strand_a_record() {
    let mut stranding_seeds = 0;
    for seed in 0..12 {
        let fake = start(60);
        let before = fake.person_ids(1337);
        fake.set_drift(
            DriftSchedule::new(seed)
                .after(GisList::People, 1, DriftAction::MoveOut(Which::Served, 1))
                .after(GisList::People, 1, DriftAction::MoveIn(1)),
        );
        let pages = scan(&fake, PEOPLE, 10).await;
        let drift = fake.drift_log();
        let (out, into) = (drift[0].moved_out[0], drift[1].moved_in[0]);
        assert!(before[..10].contains(&out));
        assert_eq!(
            fake.person_json(out).expect("still in GIS")["home_lc"]["id"],
            json!("2001")
        );
        let totals = totals(&fake.page_log(), GisList::People);
        assert!(
            totals.iter().all(|t| *t == before.len() as u64),
            "{totals:?}"
        );

        let now = fake.person_ids(1337);
        let stranded: BTreeSet<u64> = set(now.iter().copied())
            .difference(&set(served(&pages)))
            .copied()
            .collect();
        // Where the newcomer landed decides: on the read page, only the newcomer itself is
        // unread (it changed, so an incremental read finds it) and everything after it
        // keeps its place; further down, the unchanged record at the edge of page 1 is
        // never served.
        let landed = now.iter().position(|p| *p == into).expect("moved in");
        if landed < 10 {
            assert_eq!(stranded, set([into]), "seed {seed}");
        } else {
            assert_eq!(stranded, set([now[9]]), "seed {seed}");
            stranding_seeds += 1;
        }
    }
    assert!(stranding_seeds > 0, "some seed strands a record");
}

#[tokio::test]
async fn applications_drift_at_the_head_and_by_deletion() {
    let fake = start(60);
    let before = applications_now(&fake).await;
    let in_scope = fake.person_ids(1337);
    fake.set_drift(
        DriftSchedule::new(5)
            .after(GisList::Applications, 1, DriftAction::InsertAtHead(2))
            .after(
                GisList::Applications,
                2,
                DriftAction::Delete(Which::Served, 1),
            ),
    );
    let pages = scan(&fake, APPS, 20).await;
    let drift = fake.drift_log();
    assert_eq!(drift.len(), 2);
    let inserted = drift[0].applications_inserted.clone();
    let deleted = drift[1].applications_deleted.clone();
    assert_eq!((inserted.len(), deleted.len()), (2, 1));
    assert!(served(&pages[..2]).contains(&deleted[0]));

    let now = applications_now(&fake).await;
    assert_eq!(now[..2], [inserted[1], inserted[0]], "newest first");
    let expected: Vec<u64> = before.into_iter().filter(|a| *a != deleted[0]).collect();
    assert_eq!(now[2..], expected);
    for app in &inserted {
        let record = fake.application_json(*app).expect("inserted");
        let person: u64 = record["person"]["id"]
            .as_str()
            .expect("id")
            .parse()
            .expect("digits");
        assert!(in_scope.contains(&person), "a person of the scanned LC");
        assert_eq!(record["status"], json!("open"));
    }
    // Deleting an application leaves its person.
    let record = fake.application_json(deleted[0]);
    assert!(record.is_none());
    assert_eq!(fake.person_ids(1337), in_scope);
    let totals = totals(&fake.page_log(), GisList::Applications);
    let n = now.len() as u64;
    assert_eq!(totals[0], n - 1);
    assert_eq!(totals[1], n + 1);
    assert!(totals[2..].iter().all(|t| *t == n), "{totals:?}");
}

/// Pages 2..=5 requested together are computed 5, 4, 3, 2; a record at the head then makes
/// page 4 (computed after page 5) lose its last record to page 5, already served.
#[tokio::test]
async fn concurrent_pages_are_computed_latest_first() {
    let fake = FakeGis::start(FakeGisOptions {
        people: 45,
        lcs: vec![1337],
        ..FakeGisOptions::default()
    })
    .expect("fake GIS starts");
    let before = fake.person_ids(1337);
    assert_eq!(before.len(), 45);
    // A long fallback: the order below must come from the holds, never from the timeout
    // (page 5 is the last, so nothing waits for it).
    fake.set_out_of_order(Some(Duration::from_secs(30)));
    fake.set_drift(DriftSchedule::new(6));
    let first = page(&fake, PEOPLE, 1, 10).await;
    let rest = join_all((2..=5).map(|n| page(&fake, PEOPLE, n, 10))).await;
    let order: Vec<u64> = fake.page_log().iter().map(|p| p.page).collect();
    assert_eq!(order, [1, 5, 4, 3, 2]);
    let mut all = first.ids.clone();
    all.extend(rest.iter().flat_map(|p| p.ids.iter().copied()));
    assert_eq!(all, before, "without drift, every page is right");

    // Again with a new sign-up right after the first page computed of the batch (page 5).
    fake.set_drift(DriftSchedule::new(6).after(GisList::People, 2, DriftAction::InsertAtHead(1)));
    let first = page(&fake, PEOPLE, 1, 10).await;
    let rest = join_all((2..=5).map(|n| page(&fake, PEOPLE, n, 10))).await;
    let order: Vec<u64> = fake.page_log().iter().map(|p| p.page).collect();
    assert_eq!(order, [1, 5, 4, 3, 2]);
    let mut seen = set(first.ids);
    seen.extend(rest.iter().flat_map(|p| p.ids.iter().copied()));
    let missed: Vec<u64> = before
        .iter()
        .copied()
        .filter(|p| !seen.contains(p))
        .collect();
    assert_eq!(
        missed,
        [before[39]],
        "page 4's last record moved to page 5, already served"
    );
    // Each page's paging is the list's as it was when computed: page 5 before the insert.
    assert_eq!(rest[3].paging["total_items"], json!(45));
    for p in &rest[..3] {
        assert_eq!(p.paging["total_items"], json!(46));
    }
}

#[tokio::test]
async fn a_sequential_reader_is_slowed_never_stuck() {
    let fake = start(60);
    let before = fake.person_ids(1337);
    fake.set_out_of_order(Some(Duration::from_millis(50)));
    let pages = scan(&fake, PEOPLE, 10).await;
    assert_eq!(served(&pages), before);
    let order: Vec<u64> = fake.page_log().iter().map(|p| p.page).collect();
    assert_eq!(order, (1..=pages.len() as u64).collect::<Vec<_>>());
    // Back to arrival order, and nothing tracked any more once drift is cleared too.
    fake.set_out_of_order(None);
    fake.clear_drift();
    let logged = fake.page_log().len();
    scan(&fake, PEOPLE, 10).await;
    assert_eq!(fake.page_log().len(), logged);
}

/// Over a few hundred random schedules on small lists, the drift log tells the final
/// content exactly, and every page's `paging` is the truth when it was computed.
#[tokio::test]
async fn random_schedules_replay_and_their_log_tells_the_final_content() {
    let choices = DriftAction::every_kind(2);
    for case in 0..200u64 {
        let fake = start(16);
        let people_before = set(fake.person_ids(1337));
        let outside = fake.person_ids(2001);
        let mut all_apps: BTreeSet<u64> = BTreeSet::new();
        for p in people_before.iter().chain(&outside) {
            all_apps.extend(fake.application_ids(*p));
        }
        let schedule = DriftSchedule::random(case, 3, 5, &choices);
        fake.set_drift(schedule.clone());
        let people_pages = scan(&fake, PEOPLE, 3).await;
        let app_pages = scan(&fake, APPS, 5).await;
        // From here on, reading the lists must not make any further step due.
        fake.clear_drift();

        let log = fake.page_log();
        let answered: Vec<&Page> = people_pages.iter().chain(&app_pages).collect();
        assert_eq!(log.len(), answered.len(), "case {case}");
        for (p, logged) in answered.iter().zip(&log) {
            assert_eq!(p.ids, logged.ids, "case {case}");
            assert_eq!(
                p.paging["total_items"],
                json!(logged.total_items),
                "case {case}"
            );
        }

        // Replaying the log on the initial sets gives the final lists.
        let mut people = people_before.clone();
        let mut apps = all_apps.clone();
        for step in fake.drift_log() {
            for p in step.people_deleted.iter().chain(&step.moved_out) {
                people.remove(p);
            }
            people.extend(step.people_inserted.iter().chain(&step.moved_in));
            for a in &step.applications_deleted {
                apps.remove(a);
            }
            apps.extend(&step.applications_inserted);
        }
        assert_eq!(
            set(fake.person_ids(1337)),
            people,
            "case {case}: {schedule:?}"
        );
        let in_scope_apps: BTreeSet<u64> = people
            .iter()
            .flat_map(|p| fake.application_ids(*p))
            .collect();
        let expected_apps: BTreeSet<u64> = apps
            .into_iter()
            .filter(|a| in_scope_apps.contains(a))
            .collect();
        assert_eq!(
            set(applications_now(&fake).await),
            expected_apps,
            "case {case}"
        );
        assert_eq!(
            in_scope_apps, expected_apps,
            "case {case}: no application unaccounted for"
        );

        // Once drift stops, a first page counts the lists as they ended.
        let people_total = page(&fake, PEOPLE, 1, 3).await.paging["total_items"].clone();
        assert_eq!(people_total, json!(people.len()), "case {case}");
        let apps_total = page(&fake, APPS, 1, 5).await.paging["total_items"].clone();
        assert_eq!(apps_total, json!(expected_apps.len()), "case {case}");
    }
}

/// ciosync's own concurrent page reads get their later pages first, and a sync without
/// drift is still complete: the ground issue 10's tests stand on.
#[test]
fn ciosync_s_concurrent_reads_are_answered_latest_first() {
    let env = Env::new(400);
    env.gis.set_out_of_order(Some(Duration::from_millis(300)));
    env.gis.set_drift(DriftSchedule::new(0));
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let log = env.gis.page_log();
    for list in [GisList::People, GisList::Applications] {
        let pages: Vec<u64> = log
            .iter()
            .filter(|p| p.list == list)
            .map(|p| p.page)
            .collect();
        assert!(pages.len() >= 4, "{list:?}: {pages:?}");
        assert!(
            pages.windows(2).any(|w| w[0] > w[1]),
            "{list:?} pages computed in ascending order: {pages:?}"
        );
    }
    let in_gis: BTreeSet<String> = [1337, 1338]
        .iter()
        .flat_map(|lc| env.gis.person_ids(*lc))
        .map(|id| id.to_string())
        .collect();
    let in_cio: BTreeSet<String> = env.cio.profiles().into_keys().collect();
    assert_eq!(in_cio, in_gis);
}

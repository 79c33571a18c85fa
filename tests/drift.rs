//! Full reads never strand records that moved while they paged (SPEC 3, issue 10).
//!
//! The fake GIS changes its lists between page requests (new records at the head, records
//! already read deleted, records not yet read deleted) and can answer concurrent pages out
//! of order. After the drifting run and at most one more run without drift, customer.io
//! must hold everything a clean run on the final data sends (no profile or event missing,
//! nothing stored twice), and nobody may be marked out of scope who did not leave.
//!
//! What is not required: records the drift deleted may have been synced before they went
//! (a clean run on the final data does not know them); they are allowed as extras.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use ciosync::fake::cio::{FakeCio, FakeCioOptions};
use ciosync::fake::gis::{DriftAction, DriftApplied, DriftSchedule, GisList, Which};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::common::*;

/// Generated people (about half in the configured LCs) and the page size: small pages, so a
/// list spans many of them and every drift lands between two.
const PEOPLE: usize = 60;
const PAGE_SIZE: u32 = 5;

/// An env whose config reads small pages.
fn small_pages(people: usize) -> Env {
    let env = Env::new(people);
    let text = env
        .static_config("")
        .replace("page_size = 50", &format!("page_size = {PAGE_SIZE}"));
    env.write_config_text(&text);
    env
}

/// What a clean first sync on `env`'s GIS, as it is now, sends: a fresh data dir and a
/// fresh customer.io.
fn clean_content(env: &Env) -> Content {
    let cio = FakeCio::start(FakeCioOptions::default()).expect("fake customer.io starts");
    let dir = TempDir::new().expect("temp dir");
    let text = env
        .static_config("")
        .replace(
            &env.data_dir().display().to_string(),
            &dir.path().join("data").display().to_string(),
        )
        .replace(&env.cio.url(), &cio.url());
    let config = dir.path().join("config.toml");
    write_private(&config, &text);
    let out = ciosync(&["run", "--config", config.to_str().expect("utf-8")], &[]);
    assert_eq!(code(&out), 0, "clean run: {}", stderr(&out));
    content(&cio)
}

/// What the drift took out of the lists: people deleted or moved out of the LCs, and
/// applications deleted. They may have been synced before they went.
struct Gone {
    people: BTreeSet<String>,
    applications: BTreeSet<u64>,
}

impl Gone {
    fn contains(&self, person: &str) -> bool {
        self.people.contains(person)
    }

    /// Whether an event belongs to someone or something that went.
    fn holds_event(&self, event: &EventKey) -> bool {
        let application = serde_json::from_str::<Value>(&event.4)
            .ok()
            .and_then(|data| data["application_id"].as_u64());
        self.people.contains(&event.0)
            || application.is_some_and(|a| self.applications.contains(&a))
    }
}

fn gone(log: &[DriftApplied]) -> Gone {
    Gone {
        people: log
            .iter()
            .flat_map(|step| step.people_deleted.iter().chain(&step.moved_out))
            .map(u64::to_string)
            .collect(),
        applications: log
            .iter()
            .flat_map(|step| &step.applications_deleted)
            .copied()
            .collect(),
    }
}

/// `got` holds everything `clean` holds, each event once; anything more belongs to what
/// went. Nobody who did not go carries `in_scope = false`.
fn assert_nothing_missing(got: &Content, clean: &Content, gone: &Gone, what: &str) {
    for (id, attributes) in &clean.profiles {
        let profile = got.profiles.get(id);
        assert!(profile.is_some(), "{what}: profile {id} missing");
        let mut profile = profile.cloned().unwrap_or_default();
        profile.remove("in_scope");
        assert_eq!(&profile, attributes, "{what}: profile {id} differs");
    }
    for (id, profile) in &got.profiles {
        if !clean.profiles.contains_key(id) {
            assert!(
                gone.contains(id),
                "{what}: profile {id} was never in the final data"
            );
        }
        if profile.get("in_scope") == Some(&json!(false)) {
            assert!(
                gone.contains(id),
                "{what}: {id} marked out of scope but never left"
            );
        }
    }
    let stored: BTreeSet<_> = got.events.iter().collect();
    assert_eq!(
        stored.len(),
        got.events.len(),
        "{what}: an event stored twice"
    );
    for event in &clean.events {
        assert!(stored.contains(event), "{what}: event missing: {event:?}");
    }
    for event in &got.events {
        if !clean.events.contains(event) {
            assert!(gone.holds_event(event), "{what}: event extra: {event:?}");
        }
    }
}

/// Runs a first sync while `schedule` drifts the fake's lists (and pages are answered out
/// of order if asked), then one more run without drift. Returns both run summaries.
fn sync_through_drift(env: &Env, schedule: DriftSchedule, out_of_order: bool) -> (Value, Value) {
    if out_of_order {
        env.gis.set_out_of_order(Some(Duration::from_millis(200)));
    }
    env.gis.set_drift(schedule);
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 0, "drifting run: {}", stderr(&out));
    let first = stdout_json(&out);
    env.gis.clear_drift();
    env.gis.set_out_of_order(None);
    // Records the drift added are stamped with the fake's clock; a real new sign-up is
    // stamped with the time it happened, which an incremental run would see as new.
    env.gis.set_clock(Utc::now());
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 0, "recovery run: {}", stderr(&out));
    (first, stdout_json(&out))
}

/// New sign-ups arrive at the head of both lists while they are paged: every record shifts
/// one page further, so pages repeat records (de-duplicated) and the count changes, which
/// makes the run read the list once more and find the newcomers in the same run.
#[test]
fn forward_drift_inserts_at_the_head() {
    let env = small_pages(PEOPLE);
    let schedule = DriftSchedule::new(1)
        .after(GisList::People, 2, DriftAction::InsertAtHead(2))
        .after(GisList::People, 4, DriftAction::InsertAtHead(1))
        .after(GisList::Applications, 3, DriftAction::InsertAtHead(3));
    let (first, _) = sync_through_drift(&env, schedule, false);
    let log = env.gis.drift_log();
    assert_eq!(log.len(), 3, "every step ran: {log:?}");
    let inserted: Vec<String> = log
        .iter()
        .flat_map(|s| &s.people_inserted)
        .map(u64::to_string)
        .collect();
    for id in &inserted {
        assert!(
            env.cio.profile(id).is_some(),
            "{id}, inserted mid-scan, synced"
        );
    }
    assert_eq!(first["full_read"], json!(true));
    assert_nothing_missing(
        &content(&env.cio),
        &clean_content(&env),
        &gone(&log),
        "forward drift",
    );
}

/// People already read are deleted while later pages are still to come: the unread ones
/// shift back onto pages already read, so the first pass misses them; the count changed, so
/// the list is read again and they are found.
#[test]
fn backward_drift_deletes_records_already_served() {
    let env = small_pages(PEOPLE);
    let schedule = DriftSchedule::new(2)
        .after(GisList::People, 2, DriftAction::Delete(Which::Served, 2))
        .after(
            GisList::Applications,
            3,
            DriftAction::Delete(Which::Served, 3),
        )
        .after(
            GisList::Applications,
            6,
            DriftAction::Delete(Which::Unserved, 2),
        );
    let (first, recovery) = sync_through_drift(&env, schedule, false);
    let log = env.gis.drift_log();
    assert_eq!(log.len(), 3, "every step ran: {log:?}");
    assert_eq!(first["people_left_scope"], json!(0), "{first}");
    assert_eq!(recovery["people_left_scope"], json!(0), "{recovery}");
    assert_nothing_missing(
        &content(&env.cio),
        &clean_content(&env),
        &gone(&log),
        "backward drift",
    );
}

/// Concurrent pages answered latest first while the lists drift: a page served after a
/// later one loses the records at its edge; the counts tell, and the re-read finds them.
#[test]
fn out_of_order_pages_with_drift() {
    let env = small_pages(PEOPLE);
    let schedule = DriftSchedule::new(3)
        .after(GisList::People, 3, DriftAction::Delete(Which::Served, 1))
        .after(GisList::Applications, 4, DriftAction::InsertAtHead(2))
        .after(
            GisList::Applications,
            5,
            DriftAction::Delete(Which::Served, 2),
        );
    let (_, _) = sync_through_drift(&env, schedule, true);
    let log = env.gis.drift_log();
    let pages = env.gis.page_log();
    let served_late = pages
        .windows(2)
        .any(|w| w[0].list == w[1].list && w[0].page > w[1].page && w[1].page > 1);
    assert!(served_late, "some page was answered after a later one");
    assert_nothing_missing(
        &content(&env.cio),
        &clean_content(&env),
        &gone(&log),
        "out-of-order pages",
    );
}

/// Out-of-order pages alone, without drift, read everything in one pass.
#[test]
fn out_of_order_pages_without_drift_read_everything_once() {
    let env = small_pages(PEOPLE);
    env.gis.set_out_of_order(Some(Duration::from_millis(200)));
    env.gis.set_drift(DriftSchedule::new(4));
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let s = stdout_json(&out);
    assert!(
        s["skipped"].as_object().is_none_or(|m| m.is_empty()),
        "no duplicates, no re-read: {s}"
    );
    let reread = env
        .gis
        .page_log()
        .iter()
        .filter(|p| p.list == GisList::People && p.page == 1)
        .count();
    assert_eq!(reread, 1, "the people list is read once");
    env.gis.set_out_of_order(None);
    assert_same_content(&content(&env.cio), &clean_content(&env), "no drift");
}

/// Random drift schedules over small lists (SPEC 3, issue 10): new sign-ups and
/// applications at the head, people and applications deleted or moved out of the LCs,
/// before or after the scan read them, with pages answered in order or latest first. After
/// the drifting run and one run without drift, nothing a clean run on the final data sends
/// is missing, nothing is stored twice, and nobody is marked out of scope who did not
/// leave. Runs ciosync in-process (the same `sync::run` the binary calls) so a few hundred
/// cases take a minute or two; `CIOSYNC_DRIFT_CASES` sets how many (default 100).
///
/// Not in the schedules: a person moving *into* the LCs, which lands mid-list and can keep
/// GIS's count unchanged while a record at a page edge shifts back (README, "Decisions").
#[test]
fn random_drift_schedules_strand_nothing() {
    let cases: u64 = std::env::var("CIOSYNC_DRIFT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let choices = [
        DriftAction::InsertAtHead(2),
        DriftAction::Delete(Which::Served, 2),
        DriftAction::Delete(Which::Unserved, 2),
        DriftAction::MoveOut(Which::Served, 1),
        DriftAction::MoveOut(Which::Unserved, 1),
    ];
    let mut rereads = 0;
    let mut incomplete = 0;
    for seed in 0..cases {
        let schedule = DriftSchedule::random(seed, 1 + (seed % 4) as usize, 8, &choices);
        let case = InProcess::new(seed);
        case.env
            .gis
            .set_out_of_order((seed % 3 == 0).then_some(Duration::from_millis(30)));
        case.env.gis.set_drift(schedule.clone());
        let first = case.sync(&case.config);
        case.env.gis.clear_drift();
        case.env.gis.set_out_of_order(None);
        let recovery = case.sync(&case.config);
        let log = case.env.gis.drift_log();
        let what = format!("seed {seed}, {schedule:?}, drift {log:?}");
        assert_eq!(first.exit_code, 0, "{what}: {first:?}");
        assert_eq!(recovery.exit_code, 0, "{what}: {recovery:?}");
        let pages = case.env.gis.page_log();
        let people_scans = pages
            .iter()
            .filter(|p| p.list == GisList::People && p.page == 1)
            .count();
        rereads += usize::from(people_scans > 1);
        incomplete += usize::from(recovery.full_read);
        assert_nothing_missing(
            &content(&case.env.cio),
            &case.clean_content(),
            &gone(&log),
            &what,
        );
    }
    println!(
        "drift schedules tried: {cases}; people lists re-read in {rereads}; recovery runs that read everything: {incomplete}; records missed after recovery: 0"
    );
}

/// One property case: the fakes, a data dir, the config, and a fixed clock shared by the
/// fake GIS and every sync (so events stamped with the run's time compare equal).
struct InProcess {
    env: Env,
    config: ciosync::config::Config,
    now: chrono::DateTime<Utc>,
}

impl InProcess {
    fn new(seed: u64) -> InProcess {
        let env = Env::with(
            ciosync::fake::gis::FakeGisOptions {
                seed,
                people: 16,
                ..ciosync::fake::gis::FakeGisOptions::default()
            },
            FakeCioOptions::default(),
        );
        let text = env
            .static_config("")
            .replace("page_size = 50", "page_size = 3");
        env.write_config_text(&text);
        let now: chrono::DateTime<Utc> = "2026-11-02T08:00:00Z".parse().expect("time");
        env.gis.set_clock(now);
        let config = ciosync::config::load(&env.config_path(), &|_| None)
            .expect("config loads")
            .config;
        InProcess { env, config, now }
    }

    fn sync(&self, config: &ciosync::config::Config) -> ciosync::summary::Summary {
        let runtime = ciosync::commands::runtime().expect("runtime");
        let result = runtime
            .block_on(ciosync::sync::run(
                config,
                &ciosync::sync::RunOptions::default(),
                self.now,
                tokio::time::Instant::now(),
            ))
            .expect("the run starts");
        result.summary
    }

    /// What a clean first sync on the GIS as it is now sends.
    fn clean_content(&self) -> Content {
        let cio = FakeCio::start(FakeCioOptions::default()).expect("fake customer.io starts");
        let dir = TempDir::new().expect("temp dir");
        let mut config = self.config.clone();
        config.data_dir = dir.path().join("data");
        config.customerio.track_url = Some(cio.url());
        let summary = self.sync(&config);
        assert_eq!(summary.exit_code, 0, "clean run: {summary:?}");
        content(&cio)
    }
}

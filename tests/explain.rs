//! `ciosync explain` (SPEC 8.1) through the built binary, on the fakes: what it announces
//! for a person is what the next run then sends for them (events by id, name and
//! timestamp; the identify's attributes), for each kind of flow; its exit codes; values
//! only with `--values`; and nothing written in the data dir.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use ciosync::fake::faults::{Fault, FaultPlan, Trigger};
use serde_json::{json, Map, Value};

use crate::common::*;

fn at(t: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(t)
        .expect("test time")
        .with_timezone(&Utc)
}

/// `explain ID --json --values`, which must exit 0.
fn explain(env: &Env, id: u64) -> Value {
    let out = env.run("explain", &[&id.to_string(), "--json", "--values"]);
    assert_eq!(code(&out), 0, "explain {id}: {}", stderr(&out));
    stdout_json(&out)
}

/// What explain announced for the next run: the events as (name, id, timestamp), and the
/// attributes it sends (name → value, `null` for a clear).
struct Announced {
    events: Vec<(String, String, i64)>,
    identify: Map<String, Value>,
}

fn announced(explained: &Value) -> Announced {
    let mut events = Vec::new();
    for application in explained["applications"].as_array().expect("applications") {
        for event in application["next_events"].as_array().expect("next_events") {
            events.push((
                event["name"].as_str().expect("name").to_owned(),
                event["id"].as_str().expect("id").to_uppercase(),
                event["timestamp"].as_i64().expect("timestamp"),
            ));
        }
    }
    events.sort();
    let mut identify = Map::new();
    for (name, status) in explained["attributes"].as_object().expect("attributes") {
        match status.as_str().expect("status") {
            "send" => {
                let value = explained["values"].get(name).cloned();
                identify.insert(name.clone(), value.unwrap_or(Value::Null));
            }
            "clear" => {
                identify.insert(name.clone(), Value::Null);
            }
            "unchanged" | "excluded" => {}
            other => panic!("unknown attribute status {other}"),
        }
    }
    Announced { events, identify }
}

/// The events customer.io stored for `id` after sequence number `after`, as (name, id,
/// timestamp), sorted.
fn sent_events(env: &Env, id: u64, after: u64) -> Vec<(String, String, i64)> {
    let mut events: Vec<_> = env
        .cio
        .events_for(&id.to_string())
        .into_iter()
        .filter(|e| e.seq > after)
        .map(|e| {
            (
                e.name,
                e.id.expect("an event id").to_uppercase(),
                e.timestamp.expect("a timestamp"),
            )
        })
        .collect();
    events.sort();
    events
}

fn last_seq(env: &Env) -> u64 {
    env.cio.events().iter().map(|e| e.seq).max().unwrap_or(0)
}

/// Explains every person of `ids`, runs once (a full read: every person is read), and
/// checks that what the run sent for each is what explain announced: the same events
/// (name, id, timestamp), and a profile changed by exactly the announced attributes.
/// Returns what explain said, by id.
fn explain_then_run(env: &Env, ids: &[u64]) -> BTreeMap<u64, Value> {
    let explained: BTreeMap<u64, Value> = ids.iter().map(|&id| (id, explain(env, id))).collect();
    let profiles_before: BTreeMap<u64, Map<String, Value>> = ids
        .iter()
        .map(|&id| (id, env.cio.profile(&id.to_string()).unwrap_or_default()))
        .collect();
    let seq = last_seq(env);
    let out = env.run("run", &["--full"]);
    assert!(
        code(&out) == 0 || code(&out) == 1,
        "run: {} {}",
        code(&out),
        stderr(&out)
    );
    for &id in ids {
        let said = announced(&explained[&id]);
        assert_eq!(
            sent_events(env, id, seq),
            said.events,
            "person {id}: the run sent other events than explain announced: {:#}",
            explained[&id]
        );
        let mut expected = profiles_before[&id].clone();
        for (name, value) in &said.identify {
            expected.insert(name.clone(), value.clone());
        }
        let after = env.cio.profile(&id.to_string()).unwrap_or_default();
        assert_eq!(
            without_nulls(&after),
            without_nulls(&expected),
            "person {id}: the profile changed other than explain announced: {:#}",
            explained[&id]
        );
    }
    explained
}

/// A profile without null attributes and `in_scope` (not a profile attribute of 4.1; it is
/// checked where a test needs it): how a clear and an absent value compare equal.
fn without_nulls(profile: &Map<String, Value>) -> Map<String, Value> {
    profile
        .iter()
        .filter(|(name, value)| !value.is_null() && name.as_str() != "in_scope")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The rules of a person's next events, in order, as `name: rule`.
fn rules(explained: &Value) -> Vec<String> {
    explained["applications"]
        .as_array()
        .expect("applications")
        .iter()
        .flat_map(|a| a["next_events"].as_array().expect("next_events").clone())
        .map(|e| {
            format!(
                "{}: {}",
                e["name"].as_str().expect("name"),
                e["rule"].as_str().expect("rule")
            )
        })
        .collect()
}

/// Explain, then run, agree for a fresh person, a full flow, breaks (approval and
/// realisation), a re-approval, a late event and a profile change, over three runs.
#[test]
fn explain_announces_exactly_what_the_next_run_sends_for_every_kind_of_flow() {
    let env = Env::new(0);
    env.gis.set_clock(at("2026-11-20T10:00:00Z"));
    for id in 1001..=1006 {
        env.gis.insert_person(person(id));
    }
    // 1001 applied; 1002 approved (replayed steps); 1003 realized; 1004 completed (a full
    // flow); 1005 approved, to break and re-approve; 1006 open, to get a late step.
    let dates = json!({"date_matched": "2024-02-10T00:00:00Z", "date_approved": "2024-02-20T00:00:00Z",
        "date_realized": "2024-06-01T00:00:00Z", "experience_end_date": "2024-08-01T00:00:00Z",
        "meta": {"date_completed": "2024-09-01T00:00:00Z"}});
    // Without later dates, so its break has no evidence of a later step.
    let approved_dates =
        json!({"date_matched": "2024-02-10T00:00:00Z", "date_approved": "2024-02-20T00:00:00Z"});
    env.gis
        .insert_application(application(5001, 1001, "open", json!({})));
    env.gis
        .insert_application(application(5002, 1002, "approved", dates.clone()));
    env.gis
        .insert_application(application(5003, 1003, "realized", dates.clone()));
    env.gis
        .insert_application(application(5004, 1004, "completed", dates.clone()));
    env.gis
        .insert_application(application(5005, 1005, "approved", approved_dates));
    env.gis
        .insert_application(application(5006, 1006, "open", json!({})));
    let ids = [1001, 1002, 1003, 1004, 1005, 1006];

    // Fresh people: nothing in the state, every attribute sent, the steps replayed.
    let first = explain_then_run(&env, &ids);
    for id in ids {
        assert_eq!(first[&id]["in_gis"], json!(true));
        assert_eq!(first[&id]["in_scope"], json!(true));
        assert_eq!(first[&id]["in_state"], json!(false));
        assert_eq!(first[&id]["pending"], json!(false));
        assert_eq!(first[&id]["identify"], json!("new"));
    }
    assert_eq!(first[&1001]["attributes"]["email"], json!("send"));
    assert_eq!(
        rules(&first[&1002]),
        [
            "GCDPapplied: step replay",
            "GCDPaccepted: step replay",
            "GCDPapproved: main-path status"
        ]
    );
    assert_eq!(rules(&first[&1004]).len(), 6, "{:#}", first[&1004]);

    // Second run: 1001 changes name; 1003's realisation and 1005's approval break; 1006
    // gets approved with a date long past (a late event, stamped with its true time).
    env.gis.set_clock(at("2026-11-25T10:00:00Z"));
    env.gis.update_person(1001, json!({"first_name": "Bea"}));
    env.gis.update_application(
        5003,
        json!({"status": "realization_broken", "date_realisation_broke": "2026-11-24T08:00:00Z"}),
    );
    env.gis.update_application(
        5005,
        json!({"status": "approval_broken", "date_approval_broken": "2026-11-24T09:00:00Z"}),
    );
    env.gis.update_application(
        5006,
        json!({"status": "approved", "date_approved": "2024-03-01T00:00:00Z"}),
    );
    let second = explain_then_run(&env, &ids);
    assert_eq!(second[&1001]["identify"], json!("changed"));
    assert_eq!(second[&1001]["attributes"]["first_name"], json!("send"));
    assert_eq!(second[&1001]["attributes"]["email"], json!("unchanged"));
    assert_eq!(second[&1002]["applications"][0]["next_events"], json!([]));
    assert_eq!(
        second[&1002]["applications"][0]["confirmed_events"],
        json!(["GCDPapplied", "GCDPaccepted", "GCDPapproved"])
    );
    // 1003's dates include `meta.date_completed`: evidence of the steps above `realized`.
    assert_eq!(
        rules(&second[&1003]),
        [
            "GCDPfinished: evidence",
            "GCDPcompleted: evidence",
            "GCDPrealization_broken: side status"
        ]
    );
    assert_eq!(rules(&second[&1005]), ["GCDPapproval_broken: side status"]);
    assert_eq!(
        rules(&second[&1006]),
        [
            "GCDPaccepted: step replay",
            "GCDPapproved: main-path status"
        ]
    );
    let late = &second[&1006]["applications"][0]["next_events"][1];
    assert_eq!(late["timestamp"], json!(unix("2024-03-01T00:00:00Z")));

    // Third run: 1005 is approved again (a second `approved`, a new id).
    env.gis.set_clock(at("2026-11-27T10:00:00Z"));
    env.gis.update_application(
        5005,
        json!({"status": "approved", "date_approved": "2026-11-26T12:00:00Z"}),
    );
    let third = explain_then_run(&env, &ids);
    assert_eq!(
        rules(&third[&1005]),
        ["GCDPapproved: main-path status, occurrence 2"]
    );
    assert_ne!(
        third[&1005]["applications"][0]["next_events"][0]["id"],
        first[&1005]["applications"][0]["next_events"][2]["id"],
        "a re-approval carries a new event id"
    );
    for id in ids {
        if id != 1005 {
            assert_eq!(announced(&third[&id]).events, [], "person {id}");
        }
    }
}

/// A person whose event customer.io rejected is pending: explain shows it, with the
/// reason the last run recorded, and the next run sends what explain said.
#[test]
fn a_pending_rejection_is_shown_with_its_reason_and_the_retry_matches() {
    let env = Env::new(0);
    env.gis.set_clock(at("2026-11-20T10:00:00Z"));
    for id in [1001, 1002] {
        env.gis.insert_person(person(id));
        env.gis.insert_application(application(
            id + 4000,
            id,
            "approved",
            json!({"date_matched": "2024-02-10T00:00:00Z", "date_approved": "2024-02-20T00:00:00Z"}),
        ));
    }
    env.cio.faults().set_plan(FaultPlan::seeded(1).rule(
        "POST /api/v1/customers/1002/events",
        Trigger::Always,
        Fault::Html(400),
    ));
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 1, "a rejection: {}", stderr(&out));
    env.cio.faults().clear();

    let explained = explain(&env, 1002);
    assert_eq!(explained["pending"], json!(true), "{explained:#}");
    let rejections = explained["last_rejections"].as_array().expect("rejections");
    assert!(!rejections.is_empty(), "{explained:#}");
    assert!(
        rejections[0]["reason"]
            .as_str()
            .expect("reason")
            .contains("400"),
        "{explained:#}"
    );
    let text = stdout(&env.run("explain", &["1002"]));
    assert!(
        text.contains("pending (an earlier run did not get all their writes confirmed): yes"),
        "{text}"
    );
    assert!(text.contains("last run rejected: GCDP"), "{text}");
    assert!(!announced(&explained).events.is_empty(), "{explained:#}");
    let settled = explain_then_run(&env, &[1001, 1002]);
    assert_eq!(settled[&1001]["pending"], json!(false));
}

/// Exit codes: unknown to both GIS and the state is 1; a held lock is 75; a non-numeric id
/// is a usage error (2). A forgotten person shows `forgotten: true` and no next events; an
/// excluded attribute shows `excluded`.
#[test]
fn exit_codes_forgotten_and_excluded() {
    let env = Env::new(0);
    env.write_config("\n[attributes]\nexclude = [\"birthday\"]\n");
    for id in [1001, 1002] {
        env.gis.insert_person(person(id));
        env.gis
            .insert_application(application(id + 4000, id, "open", json!({})));
    }
    assert_eq!(code(&env.run("run", &[])), 0);

    let unknown = env.run("explain", &["999999", "--json"]);
    assert_eq!(code(&unknown), 1, "{}", stderr(&unknown));
    let unknown = stdout_json(&unknown);
    assert_eq!(unknown["in_gis"], json!(false));
    assert_eq!(unknown["in_state"], json!(false));
    assert_eq!(
        unknown["attributes"],
        json!({}),
        "nothing to say of an unknown person"
    );

    let usage = env.run("explain", &["12a"]);
    assert_eq!(code(&usage), 2);
    assert!(
        stderr(&usage).contains("not a GIS person id"),
        "{}",
        stderr(&usage)
    );

    let explained = explain(&env, 1001);
    assert_eq!(explained["attributes"]["birthday"], json!("excluded"));
    assert_eq!(explained["attributes"]["email"], json!("unchanged"));

    assert_eq!(code(&env.run("forget", &["1002"])), 0);
    env.gis.update_application(
        5002,
        json!({"status": "approved", "date_approved": "2024-02-20T00:00:00Z"}),
    );
    let forgotten = explain(&env, 1002);
    assert_eq!(forgotten["forgotten"], json!(true), "{forgotten:#}");
    assert_eq!(announced(&forgotten).events, [], "{forgotten:#}");
    assert_eq!(forgotten["identify"], Value::Null);

    let lock = ciosync::lock::acquire(&env.data_dir()).expect("the test takes the lock");
    let locked = env.run("explain", &["1001"]);
    assert_eq!(code(&locked), 75, "{}", stderr(&locked));
    assert!(stdout(&locked).is_empty());
    drop(lock);
}

/// Attribute values (personal data) only with `--values`; explain writes nothing in the
/// data dir.
#[test]
fn values_only_when_asked_and_nothing_written() {
    let env = Env::new(0);
    env.gis.insert_person(person(1001));
    env.gis
        .insert_application(application(5001, 1001, "open", json!({})));
    assert_eq!(code(&env.run("run", &[])), 0);
    env.gis
        .update_person(1001, json!({"first_name": "Zoraida"}));
    let email = person(1001)["email"].as_str().expect("email").to_owned();

    let before = files(&env.data_dir());
    for args in [vec!["1001"], vec!["1001", "--json"], vec!["1001", "-v"]] {
        let out = env.run("explain", &args);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        for text in [stdout(&out), stderr(&out)] {
            assert!(!text.contains(&email), "{args:?}: {text}");
            assert!(!text.contains("Zoraida"), "{args:?}: {text}");
        }
        assert!(stdout(&out).contains("first_name"), "{}", stdout(&out));
    }
    let with_values = env.run("explain", &["1001", "--values"]);
    assert!(
        stdout(&with_values).contains(&email),
        "{}",
        stdout(&with_values)
    );
    assert!(stdout(&with_values).contains("Zoraida"));
    let json_values = stdout_json(&env.run("explain", &["1001", "--json", "--values"]));
    assert_eq!(json_values["values"]["first_name"], json!("Zoraida"));
    assert_eq!(json_values["attributes"]["first_name"], json!("send"));
    assert_eq!(
        files(&env.data_dir()),
        before,
        "explain wrote in the data dir"
    );
}

/// Every file of `dir` (but the OAuth token file) with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walk(dir)
        .into_iter()
        .filter(|path| path.file_name().is_some_and(|n| n != "gis-oauth.json"))
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap_or_default();
            (path.display().to_string(), bytes)
        })
        .collect()
}

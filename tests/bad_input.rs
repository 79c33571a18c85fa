//! Bad input (GitHub issue 4, item 3): malformed GIS records, broken config files, broken
//! state files, an unwritable data dir, a disk that fills up while the state is written, and
//! customer.io refusing some operations of a batch.
//!
//! Each case checks three things: the exit code, that the bad record is a counted skip (the
//! summary's `skipped`, `unknown_statuses` or `truncated_values`) or a clear error, and that
//! nothing else is lost (the other records are synced completely). Records the fake GIS
//! cannot serve (its schema typing turns a number in a `String` field into null plus a field
//! error, and it normalises top-level ids) go through a scripted GIS that answers raw JSON
//! pages, and through the decoder directly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chrono::Utc;
use ciosync::fake::server::Server;
use ciosync::gis::decode;
use serde_json::{json, Value};

use crate::common::*;

/// The summary's `skipped` map (absent or null: nothing skipped).
fn skipped(summary: &Value) -> BTreeMap<String, u64> {
    summary["skipped"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().expect("a count")))
                .collect()
        })
        .unwrap_or_default()
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

/// `(name, timestamp)` of events.
type Events = Vec<(String, Option<i64>)>;

/// `(name, timestamp)` of a person's events, in arrival order.
fn events_of(env: &Env, person: u64) -> Events {
    env.cio
        .events_for(&person.to_string())
        .into_iter()
        .map(|e| (e.name, e.timestamp))
        .collect()
}

/// How many identifies customer.io received for one person (v1).
fn identifies_of(env: &Env, person: u64) -> usize {
    let path = format!("/api/v1/customers/{person}");
    env.cio
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path == path)
        .count()
}

fn profile(env: &Env, id: u64) -> Value {
    Value::Object(
        env.cio
            .profile(&id.to_string())
            .unwrap_or_else(|| panic!("profile {id} exists")),
    )
}

/// Asserts the control person (a clean record beside the bad ones) is synced completely:
/// its profile and its application's three replayed steps.
fn assert_control_synced(env: &Env, id: u64) {
    assert_eq!(profile(env, id), full_profile(id), "control person {id}");
    assert_eq!(
        events_of(env, id),
        vec![
            ("GCDPapplied".to_owned(), Some(unix("2024-02-05T09:00:00Z"))),
            (
                "GCDPaccepted".to_owned(),
                Some(unix("2024-02-18T15:00:00Z"))
            ),
            (
                "GCDPapproved".to_owned(),
                Some(unix("2024-03-02T14:10:00Z"))
            ),
        ],
        "control person {id}'s events"
    );
}

/// A clean person with an approved application (the control beside bad records).
fn insert_control(env: &Env, id: u64) {
    env.gis.insert_person(person(id));
    env.gis
        .insert_application(approved_application(id + 100_000, id));
}

/// The count of bad inputs tried, printed by each test for the README's reliability figures
/// (`cargo test --test tests bad_input:: -- --nocapture | grep 'bad inputs'`).
fn report(what: &str, n: usize) {
    println!("bad inputs tried: {n} ({what})");
}

// ---------------------------------------------------------------------------------------
// Malformed GIS records through the fake GIS.

#[test]
fn each_nullable_person_field_null_is_synced_without_it() {
    let env = Env::new(0);
    insert_control(&env, 1000);
    // (field patch, the attribute that must be missing from the profile)
    let cases: Vec<(Value, &[&str])> = vec![
        (json!({"email": null}), &["email"]),
        (json!({"first_name": null}), &["first_name"]),
        (json!({"last_name": null}), &["last_name"]),
        (json!({"full_name": null}), &["full_name"]),
        (json!({"dob": null}), &["birthday"]),
        (json!({"created_at": null}), &["created_at"]),
        (json!({"updated_at": null}), &[]),
        (json!({"interviewed": null}), &["interviewed"]),
        (json!({"profile_photo": null}), &["photo"]),
        (json!({"status": null}), &["status"]),
        (json!({"cv_url": null}), &[]),
        (json!({"nps_score": null}), &[]),
        (json!({"permissions": null}), &["can_apply"]),
        (json!({"permissions": {"can_apply": null}}), &["can_apply"]),
        (json!({"home_mc": null}), &["home_lc_country"]),
        (
            json!({"home_mc": {"id": null, "name": null}}),
            &["home_lc_country"],
        ),
        (
            json!({"home_lc": {"id": "1337", "name": null}}),
            &["home_lc"],
        ),
        (json!({"home_lc": null}), &["home_lc"]),
    ];
    for (i, (patch, _)) in cases.iter().enumerate() {
        let id = 1001 + i as u64;
        env.gis.insert_person(person(id));
        // `update_person` so even `home_lc: null` keeps the person in LC 1337.
        assert!(env.gis.update_person(id, patch.clone()));
        env.gis
            .insert_application(application(id + 100_000, id, "open", json!({})));
    }
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let s = stdout_json(&out);
    assert_eq!(skipped(&s), BTreeMap::new(), "a null field is not a skip");
    assert_eq!(s["people_seen"], json!(cases.len() + 1));
    assert_control_synced(&env, 1000);
    for (i, (patch, missing)) in cases.iter().enumerate() {
        let id = 1001 + i as u64;
        let mut expected = full_profile(id);
        for attribute in *missing {
            expected.as_object_mut().expect("object").remove(*attribute);
        }
        assert_eq!(profile(&env, id), expected, "person {id} with {patch}");
        assert_eq!(
            events_of(&env, id),
            vec![("GCDPapplied".to_owned(), Some(unix("2024-02-05T09:00:00Z")))],
            "person {id} with {patch}"
        );
    }
    // Nulls fingerprint stably: a second run sends nothing.
    env.cio.clear_requests();
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(changing_requests(&env.cio), 0);
    report("nullable person fields", cases.len());
}

#[test]
fn each_nullable_application_field_null_is_a_fallback_or_a_counted_skip() {
    let env = Env::new(0);
    insert_control(&env, 1000);
    env.gis.insert_person(person(1001));
    let updated = unix("2024-03-02T14:10:00Z");
    // date_approved differs from updated_at, so a fallback is visible.
    let approved =
        json!({"date_matched": "2024-02-18T15:00:00Z", "date_approved": "2024-03-01T10:00:00Z"});
    let full = |extra: Value| with_fields(approved.clone(), extra);
    let steps = |applied: i64, accepted: i64, approved: i64| {
        vec![
            ("GCDPapplied".to_owned(), Some(applied)),
            ("GCDPaccepted".to_owned(), Some(accepted)),
            ("GCDPapproved".to_owned(), Some(approved)),
        ]
    };
    let t_applied = unix("2024-02-05T09:00:00Z");
    let t_accepted = unix("2024-02-18T15:00:00Z");
    let t_approved = unix("2024-03-01T10:00:00Z");
    // (application fields, expected events of that application)
    let cases: Vec<(Value, Events)> = vec![
        (
            full(json!({"created_at": null})),
            steps(updated, t_accepted, t_approved),
        ),
        (
            full(json!({"date_matched": null})),
            steps(t_applied, updated, t_approved),
        ),
        (
            full(json!({"date_approved": null})),
            steps(t_applied, t_accepted, updated),
        ),
        (
            full(json!({"meta": null, "an_signed_at": null, "experience_end_date": null})),
            steps(t_applied, t_accepted, t_approved),
        ),
        (
            full(json!({"meta": {"date_approved": null, "date_matched": null}})),
            steps(t_applied, t_accepted, t_approved),
        ),
        (
            full(json!({"opportunity": {"id": "770011", "title": null,
                "programme": {"short_name": "GCDP", "short_name_display": "GV"}}})),
            steps(t_applied, t_accepted, t_approved),
        ),
        (
            full(
                json!({"opportunity": {"id": "770011", "title": "T", "programme": null,
                "programmes": [{"short_name": "GCDP", "short_name_display": "GV"}]}}),
            ),
            steps(t_applied, t_accepted, t_approved),
        ),
        (
            full(json!({"opportunity": {"id": "770011", "title": "T",
                "programme": {"short_name": "GCDP", "short_name_display": "GV"},
                "programmes": null}})),
            steps(t_applied, t_accepted, t_approved),
        ),
        (
            // The configured name (short_name) is null: the other one is used.
            json!({"opportunity": {"id": "770011", "title": "T",
                "programme": {"short_name": null, "short_name_display": "GV"}, "programmes": null}}),
            vec![("GVapplied".to_owned(), Some(t_applied))],
        ),
        // The skips and the unknown status (no events).
        (json!({"opportunity": null}), vec![]),
        (
            json!({"opportunity": {"id": "770011", "title": "T", "programme": null, "programmes": null}}),
            vec![],
        ),
        (
            json!({"opportunity": {"id": "770011", "title": "T",
                "programme": {"short_name": null, "short_name_display": null}, "programmes": []}}),
            vec![],
        ),
        // `Opportunity.id` is `ID!`: a null id nulls the whole opportunity (a field error).
        (
            json!({"opportunity": {"id": null, "title": "T",
                "programme": {"short_name": "GCDP", "short_name_display": "GV"}}}),
            vec![],
        ),
        (json!({"status": null}), vec![]),
    ];
    let mut expected_events: Events = Vec::new();
    for (i, (fields, events)) in cases.iter().enumerate() {
        let id = 7001 + i as u64;
        let status = if events.len() == 3 {
            "approved"
        } else {
            "open"
        };
        env.gis
            .insert_application(application(id, 1001, status, fields.clone()));
        expected_events.extend(events.iter().cloned());
    }
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let s = stdout_json(&out);
    assert_eq!(
        skipped(&s),
        counts(&[("application_without_programme", 4)]),
        "{s}"
    );
    assert_eq!(
        s["unknown_statuses"],
        json!({"": 1}),
        "a null status is unknown"
    );
    assert_control_synced(&env, 1000);
    let mut got = events_of(&env, 1001);
    got.sort();
    expected_events.sort();
    assert_eq!(got, expected_events);
    assert_eq!(profile(&env, 1001), full_profile(1001));
    report("nullable application fields", cases.len());
}

#[test]
fn wrong_types_served_by_the_fake_gis_become_nulls_not_failures() {
    let env = Env::new(0);
    insert_control(&env, 1000);
    // The fake GIS types its answers like real GraphQL: a number, boolean, list or object in
    // a `String`/`Boolean` field is a field error and null; `DateTime`/`Date` are custom
    // scalars that pass any JSON; `ID` takes strings and integers.
    env.gis.insert_person(with_fields(
        person(1001),
        json!({
            "first_name": 42,
            "last_name": true,
            "full_name": ["Ana", "Person"],
            "email": {"address": "a@b.c"},
            "interviewed": "true",
            "status": 3.5,
            "nps_score": 9,
            "profile_photo": {"url": "https://x"},
            "cv_url": {"url": "https://cv"},
            "created_at": 1_704_067_200,
            "dob": 20_000_102,
            "permissions": true,
            "home_mc": "Freedonia",
            "home_lc": {"id": 1337, "name": 1337},
        }),
    ));
    let apps: Vec<(u64, Value, &str)> = vec![
        // Ids as numbers, dates as unix seconds: used.
        (
            7001,
            json!({"person": {"id": 1001}, "created_at": 1_707_123_600,
                "opportunity": {"id": 770_011, "title": "T",
                    "programme": {"id": 1, "short_name": "GCDP", "short_name_display": "GV"}}}),
            "open",
        ),
        // A title that is a number, a programme that is a string: null, then the fallback.
        (
            7002,
            json!({"opportunity": {"id": "770011", "title": 12,
                "programme": "GCDP", "programmes": [{"short_name": "GTa"}]}}),
            "open",
        ),
        // A date that is an object, a meta that is a list: the date falls back.
        (
            7003,
            json!({"created_at": {"at": "2024-02-05"}, "meta": ["x"]}),
            "open",
        ),
        // A non-numeric opportunity id: skipped.
        (
            7004,
            json!({"opportunity": {"id": "opp-11", "title": "T",
                "programme": {"short_name": "GCDP"}}}),
            "open",
        ),
        // A status that is a number: null, an unknown status.
        (7005, json!({"status": 5}), "open"),
    ];
    for (id, fields, status) in &apps {
        let mut app = application(*id, 1001, status, json!({}));
        app = with_fields(app, fields.clone());
        env.gis.insert_application(app);
    }
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert!(
        env.gis.queries().iter().any(|q| q.had_errors),
        "the fake served field errors beside the data"
    );
    let s = stdout_json(&out);
    assert_eq!(
        skipped(&s),
        counts(&[("application_without_opportunity", 1)]),
        "{s}"
    );
    assert_eq!(s["unknown_statuses"], json!({"": 1}));
    assert_control_synced(&env, 1000);
    assert_eq!(
        profile(&env, 1001),
        json!({"created_at": 1_704_067_200}),
        "mistyped strings are dropped, unix-second dates kept"
    );
    let mut got = events_of(&env, 1001);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("GCDPapplied".to_owned(), Some(1_707_123_600)),
            ("GCDPapplied".to_owned(), Some(unix("2024-03-02T14:10:00Z"))),
            ("GTaapplied".to_owned(), Some(unix("2024-02-05T09:00:00Z"))),
        ]
    );
    let stored = env.cio.events_for("1001");
    let with_number_title = stored
        .iter()
        .find(|e| e.data["application_id"] == json!(7002))
        .expect("7002 sent");
    assert_eq!(with_number_title.data["opportunity_title"], Value::Null);
    report("wrong types via the fake GIS", 14 + apps.len());
}

#[test]
fn the_decoder_takes_what_the_fake_cannot_serve() {
    // Ids: digits as strings or numbers; anything else is not an id.
    let ids: Vec<(Value, Option<u64>)> = vec![
        (json!("4100231"), Some(4_100_231)),
        (json!(4_100_231), Some(4_100_231)),
        (json!(" 17 "), Some(17)),
        (json!("0"), Some(0)),
        (json!("abc"), None),
        (json!("12abc"), None),
        (json!(""), None),
        (json!(-3), None),
        (json!("-3"), None),
        (json!(1.5), None),
        (json!("1.5"), None),
        (json!("1e3"), None),
        (json!("99999999999999999999"), None),
        (json!(true), None),
        (json!({"id": 1}), None),
        (json!([1]), None),
        (Value::Null, None),
    ];
    for (value, expected) in &ids {
        assert_eq!(decode::id(Some(value)), *expected, "id {value}");
    }
    // Strings: numbers and booleans as their text; objects, lists and null are no value.
    let strings: Vec<(Value, Option<&str>)> = vec![
        (json!("Ana"), Some("Ana")),
        (json!(""), Some("")),
        (json!(42), Some("42")),
        (json!(9.5), Some("9.5")),
        (json!(true), Some("true")),
        (json!({"a": 1}), None),
        (json!(["Ana"]), None),
        (Value::Null, None),
    ];
    for (value, expected) in &strings {
        assert_eq!(
            decode::string(Some(value)).as_deref(),
            *expected,
            "string {value}"
        );
    }
    let booleans: Vec<(Value, Option<bool>)> = vec![
        (json!(true), Some(true)),
        (json!("true"), Some(true)),
        (json!(" TRUE "), Some(true)),
        (json!("1"), Some(true)),
        (json!("false"), Some(false)),
        (json!("0"), Some(false)),
        (json!("yes"), None),
        (json!(1), None),
        (json!({}), None),
        (Value::Null, None),
    ];
    for (value, expected) in &booleans {
        assert_eq!(decode::boolean(Some(value)), *expected, "boolean {value}");
    }
    // Records: a person or application without a usable id is a skip naming the raw id.
    let bad_people = [
        json!({"id": "abc"}),
        json!({"id": null}),
        json!({"email": "no-id@x"}),
        json!({"id": {"nested": 1}}),
        json!({"id": -1}),
        json!("a string, not an object"),
        json!([{"id": "1"}]),
        Value::Null,
    ];
    for record in &bad_people {
        let skip = decode::person(record).expect_err("unusable person");
        assert!(skip.reason.starts_with("person_"), "{record}: {skip:?}");
    }
    assert_eq!(
        decode::person(&json!({"id": "x".repeat(100)}))
            .expect_err("bad id")
            .id
            .len(),
        40,
        "the logged raw id is cut"
    );
    let bad_apps = [
        json!({"id": "app-1", "status": "open"}),
        json!({"status": "open"}),
        json!({"id": 1.25}),
        json!(7),
    ];
    for record in &bad_apps {
        let skip = decode::application(record).expect_err("unusable application");
        assert!(
            skip.reason.starts_with("application_"),
            "{record}: {skip:?}"
        );
    }
    // Odd types inside a usable record decode leniently.
    let p = decode::person(&json!({
        "id": 17, "first_name": 42, "interviewed": "false", "email": {"x": 1},
        "cv_url": {"url": "https://cv"}, "dob": "2000-01-02T00:00:00Z",
        "permissions": {"can_apply": "1"}, "home_lc": {"id": "1337", "name": null},
        "home_mc": "Freedonia", "created_at": "garbage"
    }))
    .expect("usable person");
    assert_eq!(p.id, 17);
    assert_eq!(p.first_name.as_deref(), Some("42"));
    assert_eq!(p.interviewed, Some(false));
    assert_eq!(p.email, None);
    assert_eq!(p.cv_url.as_deref(), Some("https://cv"));
    assert_eq!(p.dob.as_deref(), Some("2000-01-02"));
    assert_eq!(p.can_apply, Some(true));
    assert_eq!(p.home_lc_id, Some(1337));
    assert_eq!(p.home_mc_name, None);
    assert_eq!(p.created_at, None);
    let a = decode::application(&json!({
        "id": "5", "status": 7, "person": {"id": "abc"},
        "opportunity": {"id": "9", "programmes": {"short_name": "GE"}}
    }))
    .expect("usable application");
    assert_eq!(a.person_id, None, "a non-numeric person id is no person");
    assert_eq!(a.status, "7");
    report(
        "decoder values",
        ids.len() + strings.len() + booleans.len() + bad_people.len() + bad_apps.len() + 2,
    );
}

#[test]
fn every_date_format_gis_uses_and_garbage_dates_fall_back() {
    let env = Env::new(0);
    insert_control(&env, 1000);
    env.gis.insert_person(person(1001));
    let t = unix("2024-02-05T09:00:00Z");
    let midnight = unix("2024-02-05T00:00:00Z");
    let updated = unix("2024-03-02T14:10:00Z");
    let good: Vec<(Value, i64)> = vec![
        (json!("2024-02-05T09:00:00Z"), t),
        (json!("2024-02-05T09:00:00.123Z"), t),
        (json!("2024-02-05T09:00:00.123456789Z"), t),
        (json!("2024-02-05T11:00:00+02:00"), t),
        (json!("2024-02-05T04:00:00-05:00"), t),
        (json!("2024-02-05T09:00:00"), t),
        (json!("2024-02-05T09:00:00.5"), t),
        (json!("2024-02-05 09:00:00"), t),
        (json!("2024-02-05 11:00:00 +0200"), t),
        (json!("2024-02-05T09:00"), t),
        (json!("2024-02-05"), midnight),
        (json!(" 2024-02-05T09:00:00Z "), t),
        (json!(1_707_123_600), t),
    ];
    let garbage: Vec<Value> = vec![
        json!("not a date"),
        json!("0000-00-00"),
        json!("0000-00-00 00:00:00"),
        json!(""),
        json!("2024-13-45T99:00:00Z"),
        json!("05/02/2024"),
        json!("yesterday"),
        json!({"date": "2024-02-05"}),
        json!(["2024-02-05"]),
        json!(true),
        json!(-99_999_999_999_999_i64),
    ];
    let mut expected = Vec::new();
    for (i, (date, at)) in good.iter().enumerate() {
        env.gis.insert_application(application(
            7001 + i as u64,
            1001,
            "open",
            json!({"created_at": date}),
        ));
        expected.push(("GCDPapplied".to_owned(), Some(*at)));
    }
    for (i, date) in garbage.iter().enumerate() {
        env.gis.insert_application(application(
            7101 + i as u64,
            1001,
            "open",
            json!({"created_at": date}),
        ));
        expected.push(("GCDPapplied".to_owned(), Some(updated)));
    }
    // Both dates garbage: the run's start stamps the event.
    env.gis.insert_application(application(
        7201,
        1001,
        "open",
        json!({"created_at": "garbage", "updated_at": "0000-00-00"}),
    ));
    // People: created_at in each form.
    for (i, (date, _)) in good.iter().enumerate() {
        let id = 2001 + i as u64;
        env.gis
            .insert_person(with_fields(person(id), json!({"created_at": date})));
    }
    let before = Utc::now().timestamp();
    let out = env.run("run", &["--json"]);
    let after = Utc::now().timestamp();
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(skipped(&stdout_json(&out)), BTreeMap::new());
    assert_control_synced(&env, 1000);
    let mut got = events_of(&env, 1001);
    let stamped_now: Vec<_> = env
        .cio
        .events_for("1001")
        .into_iter()
        .filter(|e| e.data["application_id"] == json!(7201))
        .collect();
    assert_eq!(stamped_now.len(), 1);
    let now_stamp = stamped_now[0].timestamp.expect("timestamp");
    assert!(
        (before..=after).contains(&now_stamp),
        "{before} <= {now_stamp} <= {after}"
    );
    got.retain(|(_, at)| *at != Some(now_stamp));
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    for (i, (_, at)) in good.iter().enumerate() {
        let id = 2001 + i as u64;
        assert_eq!(
            profile(&env, id)["created_at"],
            json!(at),
            "person {id} created_at {}",
            good[i].0
        );
    }
    report("date formats", good.len() * 2 + garbage.len() + 1);
}

#[test]
fn odd_unicode_round_trips_exactly() {
    let env = Env::new(0);
    insert_control(&env, 1000);
    let odd = json!({
        "first_name": "Zoë 🦀👩🏽‍💻",
        "last_name": "مرحبا עולם \u{202E}txet",
        "full_name": "e\u{0301}\u{0301}\u{0301} Z̷̢a̸l̴g̵o̶",
        "email": "ünïcödé@例え.jp",
        "status": "open\u{0000}nul\u{0007}bell",
        "profile_photo": "https://x/\"quoted\" \\back\\slash\n\t",
        "nps_score": "\u{10FFFF}\u{FFFD}",
        "home_lc": {"id": "1337", "name": "\u{FEFF}BOM\u{200B}zero\u{200D}width"},
        "home_mc": {"id": "1500", "name": "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ﷽"},
    });
    env.gis
        .insert_person(with_fields(person(1001), odd.clone()));
    env.gis.insert_application(application(
        7001,
        1001,
        "open",
        json!({"opportunity": {"id": "1", "title": "Ünïcödé 🦀 \u{0000} عنوان",
            "programme": {"short_name": "GṼ"}}}),
    ));
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(skipped(&stdout_json(&out)), BTreeMap::new());
    assert_control_synced(&env, 1000);
    let got = profile(&env, 1001);
    for (field, attribute) in [
        ("first_name", "first_name"),
        ("last_name", "last_name"),
        ("full_name", "full_name"),
        ("email", "email"),
        ("status", "status"),
        ("profile_photo", "photo"),
        ("nps_score", "nps_score"),
    ] {
        assert_eq!(got[attribute], odd[field], "{attribute}");
    }
    assert_eq!(got["home_lc"], odd["home_lc"]["name"]);
    assert_eq!(got["home_lc_country"], odd["home_mc"]["name"]);
    let events = env.cio.events_for("1001");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].name, "GṼapplied");
    assert_eq!(
        events[0].data["opportunity_title"],
        json!("Ünïcödé 🦀 \u{0000} عنوان")
    );
    // A second run sees the same values: nothing is sent again.
    env.cio.clear_requests();
    assert_eq!(code(&env.run("run", &[])), 0);
    assert_eq!(changing_requests(&env.cio), 0);
    report("odd unicode values", 11);
}

#[test]
fn ten_megabyte_strings_are_cut_counted_and_sent() {
    let env = Env::new(0);
    insert_control(&env, 1000);
    // `a` then two-byte characters: 1000 bytes would split one, so 999 are kept.
    let first_name = format!("a{}", "é".repeat(5_000_000));
    let full_name = "🦀".repeat(2_600_000);
    let title = format!("t{}", "ñ".repeat(5_000_000));
    env.gis.insert_person(with_fields(
        person(1001),
        json!({"first_name": first_name, "full_name": full_name}),
    ));
    env.gis.insert_application(application(
        7001,
        1001,
        "open",
        json!({"opportunity": {"id": "1", "title": title, "programme": {"short_name": "GCDP"}}}),
    ));
    let text = with_batch_api(&env.static_config(""))
        .replace("request_timeout = \"2s\"", "request_timeout = \"60s\"");
    env.write_config_text(&text);
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let s = stdout_json(&out);
    assert_eq!(s["truncated_values"], json!(3), "{s}");
    assert_eq!(skipped(&s), BTreeMap::new());
    assert!(s["rejected"].as_array().is_none_or(Vec::is_empty), "{s}");
    assert_eq!(profile(&env, 1000), full_profile(1000));
    let got = profile(&env, 1001);
    let cut_first = got["first_name"].as_str().expect("first_name");
    assert_eq!(cut_first.len(), 999);
    assert!(first_name.starts_with(cut_first));
    let cut_full = got["full_name"].as_str().expect("full_name");
    assert_eq!(cut_full.len(), 1000);
    assert!(full_name.starts_with(cut_full));
    assert_eq!(
        got["last_name"],
        json!("Person1001"),
        "other attributes intact"
    );
    let events = env.cio.events_for("1001");
    assert_eq!(events.len(), 1);
    let cut_title = events[0].data["opportunity_title"].as_str().expect("title");
    assert!(title.starts_with(cut_title));
    let data_bytes = events[0].data.to_string().len();
    assert!(
        (29_000..=30_000).contains(&data_bytes),
        "the title fills the event data up to the limit: {data_bytes}"
    );
    assert_eq!(events[0].data["application_id"], json!(7001));
    report("10 MB strings", 3);
}

/// Hands the test a way to release a held request.
type Release = tokio::sync::oneshot::Sender<()>;

/// A proxy in front of the fake GIS that holds its `hold_at`-th `/graphql` request (counted
/// from the last [`Gate::arm`]) until the test, told through `reached`, has changed the fake
/// and released it. Deterministic: no timing is involved.
struct Gate {
    upstream: Upstream,
    seen: AtomicUsize,
    hold_at: AtomicUsize,
    reached: Mutex<mpsc::Sender<Release>>,
}

impl Gate {
    fn arm(&self, hold_at: usize) {
        self.seen.store(0, Ordering::SeqCst);
        self.hold_at.store(hold_at, Ordering::SeqCst);
    }
}

async fn gate_proxy(
    State(gate): State<Arc<Gate>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if uri.path() == "/graphql" {
        let n = gate.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if n == gate.hold_at.load(Ordering::SeqCst) {
            let (release, released) = tokio::sync::oneshot::channel();
            let sent = gate.reached.lock().expect("gate").send(release);
            if sent.is_ok() {
                let _ = released.await;
            }
        }
    }
    json_reply(gate.upstream.forward(method, &uri, &headers, body).await)
}

/// Runs `ciosync run --json` while `change` is applied to the fake GIS between the held
/// request's arrival and its answer.
fn run_with_change_mid_read(
    env: &Env,
    reached: &Mutex<mpsc::Receiver<Release>>,
    change: impl FnOnce() + Send,
) -> Output {
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let release = reached
                .lock()
                .expect("receiver")
                .recv_timeout(Duration::from_secs(60))
                .expect("the held request arrived");
            change();
            release.send(()).expect("the held request still waits");
        });
        // Page shifts matter for full reads (incremental ones read by `updated_at`).
        env.run("run", &["--json", "--full"])
    })
}

#[test]
fn an_identify_that_escapes_past_32_kb_still_reaches_customerio_in_batch_mode() {
    let env = Env::new(0);
    insert_control(&env, 1000);
    // Ten values of 1000 bytes each (within the limit), but U+0001 is sent as `\u0001`:
    // six bytes each, 60 KB of JSON, over a v2 operation's 32 KB.
    let control = "\u{0001}".repeat(1000);
    let mut odd = person(1001);
    for field in [
        "email",
        "first_name",
        "last_name",
        "full_name",
        "profile_photo",
        "status",
        "cv_url",
        "nps_score",
    ] {
        odd[field] = json!(control);
    }
    odd["home_lc"]["name"] = json!(control);
    odd["home_mc"]["name"] = json!(control);
    env.gis.insert_person(odd);
    env.write_config_text(&with_batch_api(&env.static_config("")));
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let s = stdout_json(&out);
    assert!(s["rejected"].as_array().is_none_or(Vec::is_empty), "{s}");
    assert_eq!(s["truncated_values"], json!(0));
    assert_control_synced(&env, 1000);
    let got = profile(&env, 1001);
    for attribute in ["email", "first_name", "cv", "home_lc", "home_lc_country"] {
        assert_eq!(got[attribute], json!(control), "{attribute}");
    }
    env.cio.clear_requests();
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(changing_requests(&env.cio), 0, "confirmed once");
    report("identify escaping past 32 KB", 1);
}

#[test]
fn records_moving_between_pages_are_deduplicated_and_nothing_is_lost() {
    let env = Env::new(0);
    for i in 0..10u64 {
        let id = 2001 + i;
        env.gis.insert_person(with_fields(
            person(id),
            json!({"created_at": format!("2024-01-01T{i:02}:00:00Z")}),
        ));
        env.gis
            .insert_application(application(id + 100_000, id, "open", json!({})));
    }
    let (reached_tx, reached) = mpsc::channel();
    let reached = Mutex::new(reached);
    let gate = Arc::new(Gate {
        upstream: Upstream::new(env.gis.url()),
        seen: AtomicUsize::new(0),
        hold_at: AtomicUsize::new(0),
        reached: Mutex::new(reached_tx),
    });
    let server = start_proxy(gate_proxy, Arc::clone(&gate));
    let text = env
        .static_config("")
        .replace(
            &format!("endpoint = \"{}\"", env.gis.graphql_url()),
            &format!("endpoint = \"{}/graphql\"", server.url()),
        )
        .replace("page_size = 50", "page_size = 5");
    env.write_config_text(&text);

    // People page 2 is held while a newer person appears: every record shifts one place
    // down, so page 2 repeats the last record of page 1 (and a third page appears). The
    // count of people changed while the list was read, so the scan reads it once more and
    // finds the newcomer in the same run (SPEC 3).
    gate.arm(2);
    let out = run_with_change_mid_read(&env, &reached, || {
        env.gis.insert_person(with_fields(
            person(2099),
            json!({"created_at": "2024-06-01T00:00:00Z"}),
        ));
        env.gis
            .insert_application(application(102_099, 2099, "open", json!({})));
    });
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let s = stdout_json(&out);
    assert_eq!(skipped(&s), counts(&[("people_duplicate", 1)]), "{s}");
    assert_eq!(s["people_seen"], json!(11), "the re-read found 2099: {s}");
    for id in (2001..=2010).chain([2099]) {
        assert!(env.cio.profile(&id.to_string()).is_some(), "{id} synced");
        assert_eq!(identifies_of(&env, id), 1, "{id} identified once");
        assert_eq!(events_of(&env, id).len(), 1, "{id}'s event");
    }
    // A full read afterwards finds nothing left to send.
    gate.arm(0);
    env.cio.clear_requests();
    let out = env.run("run", &["--json", "--full"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(changing_requests(&env.cio), 0, "nothing left to send");
    assert_eq!(env.cio.duplicate_events(), 0);

    // The other direction: the newest person leaves while page 2 is held, every record
    // shifts one place up, and the first record of page 2 (2006) is not in the scan at all.
    // It must not be declared out of scope: it never left.
    gate.arm(2);
    let out = run_with_change_mid_read(&env, &reached, || {
        assert!(env.gis.move_person(2099, 2001));
    });
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let s = stdout_json(&out);
    assert_eq!(s["people_left_scope"], json!(0), "{s}");
    assert_eq!(s["people_seen"], json!(11), "2006 was looked up by id: {s}");
    let out_of_scope = |env: &Env| -> Vec<String> {
        env.cio
            .profiles()
            .into_iter()
            .filter(|(_, p)| p.contains_key("in_scope"))
            .map(|(id, _)| id)
            .collect()
    };
    assert_eq!(out_of_scope(&env), Vec::<String>::new());
    // The next full read sees 2099 gone (it was read before it moved), and only 2099.
    gate.arm(0);
    let out = env.run("run", &["--json", "--full"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(out_of_scope(&env), vec!["2099".to_owned()]);
    assert_eq!(
        env.cio.profile("2099").expect("2099")["in_scope"],
        json!(false)
    );
    report("records moving between pages", 3);
}

// ---------------------------------------------------------------------------------------
// A scripted GIS: answers raw JSON pages (so records the fake normalises or cannot hold,
// such as non-numeric top-level ids or escaped lone surrogates, reach the client as GIS
// might send them).

struct Script {
    /// Root field → pages of records, each record raw JSON text.
    pages: BTreeMap<&'static str, Vec<Vec<String>>>,
    queries: Mutex<Vec<Value>>,
    /// How many of the next list requests GIS answers with a resolver error: its root field
    /// null beside `errors` (what GraphQL sends when the resolver itself fails).
    failures: AtomicUsize,
}

async fn scripted_graphql(State(script): State<Arc<Script>>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    script
        .queries
        .lock()
        .expect("query log")
        .push(request.clone());
    let query = request["query"].as_str().unwrap_or("");
    let root = if query.contains("allOpportunityApplication") {
        "allOpportunityApplication"
    } else if query.contains("people") {
        "people"
    } else {
        return (StatusCode::OK, r#"{"data":{"currentPerson":{"id":"1"}}}"#).into_response();
    };
    let failing = script
        .failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        let body = format!(
            r#"{{"data":{{"{root}":null}},"errors":[{{"message":"Internal server error","path":["{root}"]}}]}}"#
        );
        return (StatusCode::OK, body).into_response();
    }
    let page = request["variables"]["page"].as_u64().unwrap_or(1).max(1) as usize;
    let pages = script.pages.get(root).cloned().unwrap_or_default();
    let records = pages.get(page - 1).cloned().unwrap_or_default();
    let body = format!(
        r#"{{"data":{{"{root}":{{"paging":{{"current_page":{page},"total_pages":{},"total_items":0}},"data":[{}]}}}}}}"#,
        pages.len(),
        records.join(",")
    );
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

fn scripted_gis(pages: BTreeMap<&'static str, Vec<Vec<String>>>) -> (Server, Arc<Script>) {
    let script = Arc::new(Script {
        pages,
        queries: Mutex::new(Vec::new()),
        failures: AtomicUsize::new(0),
    });
    let router = Router::new()
        .route("/graphql", axum::routing::post(scripted_graphql))
        .with_state(Arc::clone(&script));
    (Server::start(router).expect("scripted GIS starts"), script)
}

/// The env's config pointed at another GIS endpoint.
fn point_at_gis(env: &Env, endpoint: &str) {
    let text = env
        .config_text("access_token = \"scripted\"", "")
        .replace(&env.gis.graphql_url(), endpoint);
    env.write_config_text(&text);
}

fn raw_person(id: &str, first_name: &str) -> String {
    format!(
        r#"{{"id":{id},"email":"p@x.org","first_name":"{first_name}","last_name":"L","full_name":"F",
        "dob":"2000-01-02","created_at":"2024-01-01T00:00:00Z","updated_at":"2024-01-02T00:00:00Z",
        "interviewed":false,"profile_photo":null,"status":"open","cv_url":null,"nps_score":null,
        "permissions":{{"can_apply":true}},"home_lc":{{"id":"1337","name":"LC"}},"home_mc":{{"name":"MC"}}}}"#
    )
}

fn raw_application(id: &str, person: &str) -> String {
    format!(
        r#"{{"id":{id},"status":"open","created_at":"2024-02-05T09:00:00Z","updated_at":"2024-03-02T14:10:00Z",
        "person":{{"id":{person}}},"opportunity":{{"id":"770011","title":"T",
        "programme":{{"short_name":"GCDP","short_name_display":"GV"}},"programmes":[]}}}}"#
    )
}

#[test]
fn bad_ids_and_duplicates_from_a_raw_gis_are_counted_skips() {
    let env = Env::new(0);
    let people = vec![
        vec![
            raw_person(r#""1001""#, "first copy"),
            raw_person(r#""abc""#, "x"),
            raw_person("null", "x"),
            raw_person("1002", "numeric id"),
            raw_person(r#""-5""#, "x"),
        ],
        vec![
            raw_person(r#""1.5""#, "x"),
            raw_person(r#"" 1003 ""#, "padded id"),
            raw_person(r#""1001""#, "second copy"),
            raw_person(r#"{"id":"1004"}"#, "x"),
            // A record GraphQL nulled (a non-null field of it failed).
            "null".to_owned(),
        ],
    ];
    let apps = vec![vec![
        raw_application(r#""5001""#, r#""1001""#),
        raw_application("5002", "1002"),
        raw_application(r#""app-3""#, r#""1003""#),
        raw_application(r#""5004""#, r#""not-a-person""#),
        raw_application(r#""5005""#, "null"),
        raw_application(r#"" 5006""#, r#"" 1003 ""#),
        raw_application(r#""5001""#, r#""1001""#),
    ]];
    let (server, script) = scripted_gis(BTreeMap::from([
        ("people", people),
        ("allOpportunityApplication", apps),
    ]));
    point_at_gis(&env, &format!("{}/graphql", server.url()));
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let s = stdout_json(&out);
    assert_eq!(
        skipped(&s),
        counts(&[
            ("person_without_usable_id", 5),
            ("person_not_an_object", 1),
            ("people_duplicate", 1),
            ("application_without_usable_id", 1),
            ("application_without_person", 2),
            ("allOpportunityApplication_duplicate", 1),
        ]),
        "{s}"
    );
    assert_eq!(s["people_seen"], json!(3));
    let profiles: BTreeSet<String> = env.cio.profiles().keys().cloned().collect();
    assert_eq!(
        profiles,
        BTreeSet::from(["1001".to_owned(), "1002".to_owned(), "1003".to_owned()])
    );
    assert_eq!(
        env.cio.profile("1001").expect("1001")["first_name"],
        json!("first copy"),
        "the first copy of a duplicate is the one planned (and maybe sent) as it arrived"
    );
    assert_eq!(events_of(&env, 1001).len(), 1);
    assert_eq!(events_of(&env, 1002).len(), 1);
    assert_eq!(events_of(&env, 1003).len(), 1, "5006 with a padded id");
    assert!(script.queries.lock().expect("log").len() >= 3);
    report("raw ids and duplicates", 12);
}

#[test]
fn escaped_lone_surrogates_from_gis_do_not_abort_the_run() {
    let env = Env::new(0);
    let people = vec![vec![
        raw_person(r#""1001""#, r"Ana\ud83d"),
        raw_person(r#""1002""#, r"\udc00x"),
        raw_person(r#""1003""#, r"\ud83e\udd80 ok"),
        raw_person(r#""1004""#, r"\ud83d\ud83d\ude00"),
        raw_person(r#""1005""#, r"\\ud83d not an escape"),
    ]];
    let apps = vec![vec![raw_application(r#""5001""#, r#""1001""#)]];
    let (server, _script) = scripted_gis(BTreeMap::from([
        ("people", people),
        ("allOpportunityApplication", apps),
    ]));
    point_at_gis(&env, &format!("{}/graphql", server.url()));
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let first = |id: &str| env.cio.profile(id).expect("profile")["first_name"].clone();
    assert_eq!(first("1001"), json!("Ana\u{FFFD}"));
    assert_eq!(first("1002"), json!("\u{FFFD}x"));
    assert_eq!(first("1003"), json!("🦀 ok"));
    assert_eq!(first("1004"), json!("\u{FFFD}😀"));
    assert_eq!(first("1005"), json!("\\ud83d not an escape"));
    assert_eq!(events_of(&env, 1001).len(), 1);
    report("escaped lone surrogates", 5);
}

#[test]
fn a_page_whose_resolver_failed_is_retried_not_fatal() {
    let env = Env::new(0);
    let people = vec![
        vec![raw_person(r#""1001""#, "A"), raw_person(r#""1002""#, "B")],
        vec![raw_person(r#""1003""#, "C")],
    ];
    let apps = vec![vec![raw_application(r#""5001""#, r#""1003""#)]];
    let (server, script) = scripted_gis(BTreeMap::from([
        ("people", people),
        ("allOpportunityApplication", apps),
    ]));
    point_at_gis(&env, &format!("{}/graphql", server.url()));
    // `{"data": {"people": null}, "errors": [...]}` twice: a GIS hiccup, like an HTML 502.
    script.failures.store(2, Ordering::SeqCst);
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let s = stdout_json(&out);
    assert_eq!(s["people_seen"], json!(3), "{s}");
    assert_eq!(events_of(&env, 1003).len(), 1);
    assert_eq!(
        script.failures.load(Ordering::SeqCst),
        0,
        "both failures served"
    );
    // A resolver that keeps failing is GIS being unavailable: exit 69, nothing sent.
    let env = Env::new(0);
    point_at_gis(&env, &format!("{}/graphql", server.url()));
    script.failures.store(usize::MAX, Ordering::SeqCst);
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 69, "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("Internal server error"),
        "{}",
        stderr(&out)
    );
    assert!(env.cio.profiles().is_empty());
    report("GIS resolver errors", 2);
}

#[test]
fn the_lenient_body_parser_replaces_only_lone_surrogates() {
    let cases: Vec<(&str, Value)> = vec![
        (r#"{"a":"\ud83d"}"#, json!({"a": "\u{FFFD}"})),
        (r#"{"a":"\udc00"}"#, json!({"a": "\u{FFFD}"})),
        (r#"{"a":"\ud83d\ude00"}"#, json!({"a": "😀"})),
        (
            r#"{"a":"\ud83dx\ude00"}"#,
            json!({"a": "\u{FFFD}x\u{FFFD}"}),
        ),
        (r#"{"a":"\\ud83d"}"#, json!({"a": "\\ud83d"})),
        (r#"{"a":"\\\ud83d"}"#, json!({"a": "\\\u{FFFD}"})),
        (r#"{"a":"\uD83D\uDE00"}"#, json!({"a": "😀"})),
        (r#"{"a":"\ud83d\u0041"}"#, json!({"a": "\u{FFFD}A"})),
    ];
    for (text, expected) in &cases {
        if expected.to_string().contains('\u{FFFD}') {
            // Why the lenient parser exists: a strict parse refuses the whole body, which
            // made one odd name fail its page until the run gave up (exit 69).
            assert!(
                serde_json::from_slice::<Value>(text.as_bytes()).is_err(),
                "{text}"
            );
        }
        assert_eq!(
            decode::response(text.as_bytes()).as_ref(),
            Some(expected),
            "{text}"
        );
    }
    assert_eq!(decode::response(b"<html>bad gateway</html>"), None);
    assert_eq!(decode::response(br#"{"a":"\ud83d"#), None, "cut body");
    report("lenient body parser", cases.len() + 2);
}

// ---------------------------------------------------------------------------------------
// Broken config files.

struct ConfigCase {
    name: &'static str,
    text: String,
    /// Fragments the message must hold (the key among them).
    fragments: Vec<&'static str>,
    /// A text on the line the message must name, if a line applies.
    line_of: Option<&'static str>,
}

/// 1-based line of the `nth` (0-based) occurrence of `needle`.
fn line_number(text: &str, needle: &str, nth: usize) -> usize {
    let (offset, _) = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("{needle:?} in the config"));
    text[..offset].matches('\n').count() + 1
}

#[test]
fn broken_config_files_exit_78_naming_key_file_and_line() {
    let env = Env::new(0);
    let token = env.static_token_line();
    let base = env.config_text(&token, "");
    let with = |extra: &str| env.config_text(&token, extra);
    let replace = |from: &str, to: &str| {
        assert!(base.contains(from), "{from}");
        base.replacen(from, to, 1)
    };
    let key_line = format!("api_key = \"{}\"", env.cio.api_key());
    let oauth = |body: &str| env.config_text(&format!("[gis.oauth]\n{body}"), "");
    let cases = vec![
        ConfigCase {
            name: "unknown key",
            text: replace("page_size = 50", "page_size = 50\npage_sise = 3"),
            fragments: vec!["unknown key", "gis.page_sise"],
            line_of: Some("page_sise"),
        },
        ConfigCase {
            name: "unknown table",
            text: with("[gsi]\nfoo = 1"),
            fragments: vec!["unknown key", "gsi"],
            line_of: Some("[gsi]"),
        },
        ConfigCase {
            name: "unknown sub-table",
            text: with("[gis.oath]\ntoken_url = \"x\""),
            fragments: vec!["unknown key", "gis.oath"],
            line_of: Some("[gis.oath]"),
        },
        ConfigCase {
            name: "unknown top-level key",
            text: format!("verbose = true\n{base}"),
            fragments: vec!["unknown key", "verbose"],
            line_of: Some("verbose"),
        },
        ConfigCase {
            name: "string for a number",
            text: replace("page_size = 50", "page_size = \"fifty\""),
            fragments: vec!["gis.page_size"],
            line_of: Some("page_size"),
        },
        ConfigCase {
            name: "negative number",
            text: replace("page_size = 50", "page_size = -1"),
            fragments: vec!["gis.page_size"],
            line_of: Some("page_size"),
        },
        ConfigCase {
            name: "zero page size",
            text: replace("page_size = 50", "page_size = 0"),
            fragments: vec!["gis.page_size", "at least 1"],
            line_of: Some("page_size"),
        },
        ConfigCase {
            name: "missing home_lcs",
            text: replace("home_lcs = [1337, 1338]\n", ""),
            fragments: vec!["missing required key", "gis.home_lcs"],
            line_of: None,
        },
        ConfigCase {
            name: "empty home_lcs",
            text: replace("home_lcs = [1337, 1338]", "home_lcs = []"),
            fragments: vec!["gis.home_lcs", "at least one"],
            line_of: Some("home_lcs"),
        },
        ConfigCase {
            name: "home_lcs of strings",
            text: replace("home_lcs = [1337, 1338]", "home_lcs = [\"Examplecity\"]"),
            fragments: vec!["gis.home_lcs"],
            line_of: Some("home_lcs"),
        },
        ConfigCase {
            name: "home_lcs not a list",
            text: replace("home_lcs = [1337, 1338]", "home_lcs = 1337"),
            fragments: vec!["gis.home_lcs"],
            line_of: Some("home_lcs"),
        },
        ConfigCase {
            name: "plain http endpoint",
            text: replace(
                &format!("endpoint = \"{}\"", env.gis.graphql_url()),
                "endpoint = \"http://gis-api.aiesec.org/graphql\"",
            ),
            fragments: vec!["gis.endpoint", "https://"],
            line_of: Some("endpoint"),
        },
        ConfigCase {
            name: "endpoint not a URL",
            text: replace(
                &format!("endpoint = \"{}\"", env.gis.graphql_url()),
                "endpoint = \"gis api\"",
            ),
            fragments: vec!["gis.endpoint", "not a valid URL"],
            line_of: Some("endpoint"),
        },
        ConfigCase {
            name: "unterminated string",
            text: replace(
                &format!("site_id = \"{}\"", env.cio.site_id()),
                "site_id = \"unterminated",
            ),
            fragments: vec!["customerio.site_id"],
            line_of: Some("site_id"),
        },
        ConfigCase {
            name: "duplicate key",
            text: replace("api = \"v1\"", "api = \"v1\"\napi = \"batch\""),
            fragments: vec!["api", "duplicate"],
            line_of: Some("api = \"batch\""),
        },
        ConfigCase {
            name: "bad region",
            text: with("region = \"mars\""),
            fragments: vec!["customerio.region", "\"us\", \"eu\"", "mars"],
            line_of: Some("region"),
        },
        ConfigCase {
            name: "bad api",
            text: replace("api = \"v1\"", "api = \"v3\""),
            fragments: vec!["customerio.api", "\"batch\", \"v1\""],
            line_of: Some("api = \"v3\""),
        },
        ConfigCase {
            name: "zero rate",
            text: replace(
                "max_requests_per_second = 1000",
                "max_requests_per_second = 0",
            ),
            fragments: vec!["customerio.max_requests_per_second"],
            line_of: Some("max_requests_per_second"),
        },
        ConfigCase {
            name: "ftp track_url",
            text: replace(
                &format!("track_url = \"{}\"", env.cio.url()),
                "track_url = \"ftp://track.example\"",
            ),
            fragments: vec!["customerio.track_url", "https://"],
            line_of: Some("track_url"),
        },
        ConfigCase {
            name: "bad duration",
            text: replace("page_size = 50", "page_size = 50\nfull_sync_every = \"soon\""),
            fragments: vec!["gis.full_sync_every", "invalid duration"],
            line_of: Some("full_sync_every"),
        },
        ConfigCase {
            name: "zero time budget",
            text: with("[safety]\ntime_budget = \"0s\""),
            fragments: vec!["safety.time_budget", "longer than zero"],
            line_of: Some("time_budget"),
        },
        ConfigCase {
            name: "share above 1",
            text: with("[safety]\nmax_event_share = 1.5"),
            fragments: vec!["safety.max_event_share", "between 0 and 1"],
            line_of: Some("max_event_share"),
        },
        ConfigCase {
            name: "share as a string",
            text: with("[safety]\nmin_people_share = \"half\""),
            fragments: vec!["safety.min_people_share"],
            line_of: Some("min_people_share"),
        },
        ConfigCase {
            name: "bad log level",
            text: with("[log]\nlevel = \"loud\""),
            fragments: vec!["log.level", "loud"],
            line_of: Some("level"),
        },
        ConfigCase {
            name: "bad log format",
            text: with("[log]\nformat = \"xml\""),
            fragments: vec!["log.format", "xml"],
            line_of: Some("format"),
        },
        ConfigCase {
            name: "bad late_events",
            text: with("[events]\nlate_events = \"later\""),
            fragments: vec!["events.late_events"],
            line_of: Some("late_events"),
        },
        ConfigCase {
            name: "bad programme_name",
            text: with("[events]\nprogramme_name = \"long\""),
            fragments: vec!["events.programme_name"],
            line_of: Some("programme_name"),
        },
        ConfigCase {
            name: "plain http ping_url",
            text: with("[monitoring]\nping_url = \"http://hc-ping.com/x\""),
            fragments: vec!["monitoring.ping_url", "https://"],
            line_of: Some("ping_url"),
        },
        ConfigCase {
            name: "token and oauth both",
            text: env.config_text(
                &format!("{token}\n[gis.oauth]\ntoken_url = \"https://auth.example/t\""),
                "",
            ),
            fragments: vec!["gis.access_token", "[gis.oauth]", "only one"],
            line_of: Some("access_token"),
        },
        ConfigCase {
            name: "missing token file",
            text: env.config_text("access_token_file = \"/nonexistent/ciosync-token\"", ""),
            fragments: vec!["gis.access_token_file", "/nonexistent/ciosync-token"],
            line_of: Some("access_token_file"),
        },
        ConfigCase {
            name: "empty inline token",
            text: env.config_text("access_token = \"\"", ""),
            fragments: vec!["gis.access_token", "must not be empty"],
            line_of: Some("access_token"),
        },
        ConfigCase {
            name: "no GIS credential",
            text: env.config_text("", ""),
            fragments: vec!["missing GIS credential", "gis.access_token"],
            line_of: None,
        },
        ConfigCase {
            name: "oauth without client_id",
            text: oauth("token_url = \"http://127.0.0.1:1/t\"\nclient_secret = \"s\"\nrefresh_token = \"r\""),
            fragments: vec!["missing required key", "gis.oauth.client_id"],
            line_of: None,
        },
        ConfigCase {
            name: "oauth without refresh token",
            text: oauth("token_url = \"http://127.0.0.1:1/t\"\nclient_id = \"c\"\nclient_secret = \"s\""),
            fragments: vec!["missing required key", "gis.oauth.refresh_token"],
            line_of: None,
        },
        ConfigCase {
            name: "missing site_id",
            text: replace(&format!("site_id = \"{}\"\n", env.cio.site_id()), ""),
            fragments: vec!["missing required key", "customerio.site_id"],
            line_of: None,
        },
        ConfigCase {
            name: "blank site_id",
            text: replace(
                &format!("site_id = \"{}\"", env.cio.site_id()),
                "site_id = \"  \"",
            ),
            fragments: vec!["customerio.site_id", "must not be empty"],
            line_of: Some("site_id"),
        },
        ConfigCase {
            name: "missing api_key",
            text: replace(&format!("{key_line}\n"), ""),
            fragments: vec!["missing required key", "customerio.api_key"],
            line_of: None,
        },
        ConfigCase {
            name: "data_dir a number",
            text: {
                let first = base.lines().next().expect("first line").to_owned();
                base.replacen(&first, "data_dir = 5", 1)
            },
            fragments: vec!["data_dir"],
            line_of: Some("data_dir"),
        },
        ConfigCase {
            name: "empty file",
            text: String::new(),
            fragments: vec!["missing required key", "gis.home_lcs"],
            line_of: None,
        },
        ConfigCase {
            name: "not TOML at all",
            text: "{\"data_dir\": \"/tmp\"}\n".to_owned(),
            fragments: vec![],
            line_of: Some("data_dir"),
        },
    ];
    let path = env.config_path();
    let shown = path.display().to_string();
    for case in &cases {
        write_private(&path, &case.text);
        let out = env.run("run", &[]);
        let err = stderr(&out);
        assert_eq!(code(&out), 78, "{}: {err}", case.name);
        assert!(err.contains(&shown), "{}: names the file: {err}", case.name);
        for fragment in &case.fragments {
            assert!(
                err.contains(fragment),
                "{}: {fragment:?} in {err}",
                case.name
            );
        }
        if let Some(needle) = case.line_of {
            let line = line_number(&case.text, needle, 0);
            assert!(
                err.contains(&format!("{shown}:{line}:")),
                "{}: names line {line}: {err}",
                case.name
            );
        }
        assert_eq!(err.lines().count(), 1, "{}: one line: {err}", case.name);
        assert!(
            !err.contains(&env.gis.static_token()) && !err.contains(&env.cio.api_key()),
            "{}: no secret in {err}",
            case.name
        );
    }
    assert!(env.gis.requests().is_empty() && env.cio.requests().is_empty());

    // Files that are not config files at all.
    let missing = env.dir.path().join("nope.toml");
    let dir = env.dir.path().join("a-dir.toml");
    std::fs::create_dir(&dir).expect("dir");
    let binary = env.dir.path().join("binary.toml");
    std::fs::write(&binary, [0xff_u8, 0xfe, 0x00, 0x01, b'=']).expect("binary");
    for file in [&missing, &dir, &binary] {
        let out = ciosync(
            &["run", "--config", file.to_str().expect("utf-8 path")],
            &[],
        );
        assert_eq!(code(&out), 78, "{}: {}", file.display(), stderr(&out));
        assert!(
            stderr(&out).contains(&file.display().to_string()),
            "{}",
            stderr(&out)
        );
    }
    report("broken config files", cases.len() + 3);
}

// ---------------------------------------------------------------------------------------
// Broken state files.

#[test]
fn broken_state_files_exit_74_untouched_with_restore_instructions() {
    let env = Env::new(0);
    insert_control(&env, 1000);
    assert_eq!(code(&env.run("run", &[])), 0);
    let good = env.data_file("state.json").expect("state written");
    let good_text = String::from_utf8(good.clone()).expect("utf-8 state");
    let bak = env
        .data_file("state.json.bak")
        .expect("previous generation kept");
    let state_path = env.data_dir().join("state.json");
    let future = good_text.replacen("\"version\":1", "\"version\":2", 1);
    assert_ne!(future, good_text, "the state names its version");
    let corrupt_person = {
        let mut v: Value = serde_json::from_slice(&good).expect("json");
        v["people"]["1000"] = json!("!!not base64!!");
        serde_json::to_vec(&v).expect("json")
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good[..good.len() / 2].to_vec(), "truncated"),
        ("cut to one byte", b"{".to_vec(), "truncated"),
        ("empty", Vec::new(), "empty"),
        ("only whitespace", b"\n \n".to_vec(), "empty"),
        ("garbage", b"hello, world".to_vec(), "corrupt"),
        ("binary", vec![0x00, 0xff, 0xfe, 0x7b, 0x80], "corrupt"),
        ("a list", b"[1,2,3]".to_vec(), "corrupt"),
        ("future version", future.into_bytes(), "version 2"),
        (
            "string version",
            good_text
                .replacen("\"version\":1", "\"version\":\"1\"", 1)
                .into_bytes(),
            "invalid format version",
        ),
        (
            "no version",
            b"{\"people\":{}}".to_vec(),
            "no format version",
        ),
        ("bad record", corrupt_person, "person 1000"),
        (
            "unknown field",
            good_text.replacen("{", "{\"extra\":true,", 1).into_bytes(),
            "corrupt",
        ),
    ];
    env.cio.clear_requests();
    let gis_requests = env.gis.requests().len();
    for (name, bytes, fragment) in &cases {
        std::fs::write(&state_path, bytes).expect("write the broken state");
        let out = env.run("run", &[]);
        let err = stderr(&out);
        assert_eq!(code(&out), 74, "{name}: {err}");
        assert!(err.contains(fragment), "{name}: {fragment:?} in {err}");
        assert!(
            err.contains(&format!(
                "cp {} {}",
                env.data_dir().join("state.json.bak").display(),
                state_path.display()
            )),
            "{name}: says how to restore: {err}"
        );
        assert_eq!(
            std::fs::read(&state_path).expect("state"),
            *bytes,
            "{name}: byte-identical"
        );
        assert_eq!(env.data_file("state.json.bak"), Some(bak.clone()), "{name}");
    }
    assert_eq!(env.gis.requests().len(), gis_requests, "nothing read");
    assert!(env.cio.requests().is_empty(), "nothing sent");

    // No state.json beside a .bak is not a first run; a state without its key cannot be used.
    std::fs::remove_file(&state_path).expect("remove");
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 74, "{}", stderr(&out));
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
    assert!(!state_path.exists(), "no reset");
    std::fs::write(&state_path, &good).expect("restore");
    let key = env.data_file("state.key").expect("key");
    std::fs::remove_file(env.data_dir().join("state.key")).expect("remove key");
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 74, "{}", stderr(&out));
    assert!(stderr(&out).contains("state.key"), "{}", stderr(&out));
    std::fs::write(env.data_dir().join("state.key"), key).expect("restore key");

    // Restoring as told works and nothing is sent twice.
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(env.cio.duplicate_events(), 0);
    report("broken state files", cases.len() + 2);
}

// ---------------------------------------------------------------------------------------
// Data dir not writable, disk full.

#[test]
fn a_data_dir_that_cannot_be_written_exits_74() {
    let env = Env::new(0);
    insert_control(&env, 1000);
    let file = env.dir.path().join("a-regular-file");
    std::fs::write(&file, b"x").expect("file");
    // Root ignores modes, so these use paths no one can create: under a regular file, and a
    // data dir that is itself a regular file.
    let dirs = [file.join("data"), file.clone()];
    for dir in &dirs {
        env.write_config_with_data_dir(dir);
        let out = env.run("run", &[]);
        assert_eq!(code(&out), 74, "{}: {}", dir.display(), stderr(&out));
        assert!(
            stderr(&out).contains(&dir.display().to_string()),
            "names the data dir: {}",
            stderr(&out)
        );
        assert!(env.gis.requests().is_empty() && env.cio.requests().is_empty());
    }
    // A read-only mount, where this machine lets us make one (root with mount permission).
    match TmpfsMount::new(env.dir.path().join("ro"), "ro,size=64k") {
        Some(mount) => {
            env.write_config_with_data_dir(&mount.path);
            let out = env.run("run", &[]);
            assert_eq!(code(&out), 74, "{}", stderr(&out));
            assert!(stderr(&out).contains("not writable"), "{}", stderr(&out));
            report("unwritable data dirs", 3);
        }
        None => {
            println!("read-only tmpfs not available here (no mount permission): case skipped");
            report("unwritable data dirs", 2);
        }
    }
}

/// A tmpfs mounted for one test, unmounted on drop. `None` when mounting is not permitted.
struct TmpfsMount {
    path: PathBuf,
}

impl TmpfsMount {
    fn new(path: PathBuf, options: &str) -> Option<TmpfsMount> {
        std::fs::create_dir_all(&path).ok()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(TmpfsMount { path })
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// Fills the file system holding `dir` until a write fails with "no space".
fn fill_up(dir: &Path) -> PathBuf {
    use std::io::Write;
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).expect("filler");
    let chunk = vec![0u8; 4096];
    loop {
        if let Err(e) = file.write_all(&chunk) {
            assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected: {e}");
            break;
        }
    }
    // The last partial chunk may have landed; no room is left for anything else.
    let _ = file.sync_all();
    filler
}

#[test]
fn a_disk_that_fills_while_the_state_is_written_exits_74_and_keeps_the_old_state() {
    let env = Env::new(0);
    insert_control(&env, 1000);
    let Some(mount) = TmpfsMount::new(env.dir.path().join("small"), "size=1m") else {
        println!("tmpfs not available here (no mount permission): binary-level case skipped");
        return;
    };
    let data = mount.path.join("data");
    env.write_config_with_data_dir(&data);
    assert_eq!(code(&env.run("run", &[])), 0);
    let state = std::fs::read(data.join("state.json")).expect("state");
    let bak = std::fs::read(data.join("state.json.bak")).expect("bak");

    env.gis
        .update_person(1000, json!({"first_name": "Changed"}));
    let filler = fill_up(&mount.path);
    env.cio.clear_requests();
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 74, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("No space left"),
        "says why: {}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(data.join("state.json")).expect("state"),
        state
    );
    assert_eq!(
        std::fs::read(data.join("state.json.bak")).expect("bak"),
        bak
    );
    let leftovers: Vec<String> = std::fs::read_dir(&data)
        .expect("data dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty(), "temp files cleaned up: {leftovers:?}");
    assert_eq!(
        env.cio.profile("1000").expect("profile")["first_name"],
        json!("Ana"),
        "nothing was sent before the state could be saved"
    );

    // Space again: the change goes out.
    std::fs::remove_file(filler).expect("free space");
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        env.cio.profile("1000").expect("profile")["first_name"],
        json!("Changed")
    );
    report("disk full (tmpfs)", 1);
}

#[test]
fn a_writer_failing_half_way_leaves_the_previous_state_intact() {
    use ciosync::state::{self, State};
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();
    let mut first = State {
        setup: "setup".to_owned(),
        ..State::default()
    };
    first.pending_people.insert(1);
    state::save(data, &first).expect("first save");
    let mut second = first.clone();
    second.pending_people.insert(2);
    state::save(data, &second).expect("second save");
    let current = std::fs::read(data.join("state.json")).expect("state");
    let previous = std::fs::read(data.join("state.json.bak")).expect("bak");

    let mut third = second.clone();
    third.pending_people.insert(3);
    let failures: Vec<(&str, std::io::Error)> = vec![
        ("disk full", std::io::Error::from_raw_os_error(28)),
        ("quota", std::io::Error::from_raw_os_error(122)),
        ("I/O error", std::io::Error::from_raw_os_error(5)),
    ];
    let n = failures.len();
    for (name, error) in failures {
        let mut error = Some(error);
        let mut writer = |file: &mut std::fs::File, bytes: &[u8]| {
            use std::io::Write;
            // Half the bytes land, then the disk is full.
            file.write_all(&bytes[..bytes.len() / 2])?;
            Err(error.take().expect("one failure"))
        };
        let err = state::save_with(data, &third, &mut writer).expect_err(name);
        let err = ciosync::error::Error::from(err);
        assert_eq!(err.code(), 74, "{name}");
        assert!(
            err.to_string().contains("state.json"),
            "{name}: names the file: {err}"
        );
        assert_eq!(
            std::fs::read(data.join("state.json")).expect("state"),
            current,
            "{name}"
        );
        assert_eq!(
            std::fs::read(data.join("state.json.bak")).expect("bak"),
            previous,
            "{name}"
        );
        let names: Vec<String> = std::fs::read_dir(data)
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names.iter().filter(|n| n.contains(".tmp.")).count(),
            0,
            "{name}: {names:?}"
        );
        assert_eq!(
            state::load(data).expect("loads").expect("exists"),
            second,
            "{name}"
        );
    }
    report("failing writers", n);
}

// ---------------------------------------------------------------------------------------
// customer.io refusing some operations of a batch (207).

/// A proxy in front of the fake customer.io that, while `active`, takes out of each v2
/// batch the operations `reject` picks and answers 207 listing them, forwarding the rest.
struct Rejecter {
    upstream: Upstream,
    active: AtomicBool,
    reject: fn(&Value) -> bool,
}

async fn rejecting_proxy(
    State(proxy): State<Arc<Rejecter>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut body = body;
    let mut rejected: Vec<usize> = Vec::new();
    let batch = method == Method::POST && uri.path() == "/api/v2/batch";
    if batch && proxy.active.load(Ordering::SeqCst) {
        let mut envelope: Value = serde_json::from_slice(&body).expect("a JSON batch");
        let ops = envelope["batch"].as_array().cloned().unwrap_or_default();
        let mut kept = Vec::new();
        for (i, op) in ops.into_iter().enumerate() {
            if (proxy.reject)(&op) {
                rejected.push(i);
            } else {
                kept.push(op);
            }
        }
        envelope["batch"] = Value::Array(kept);
        body = Bytes::from(serde_json::to_vec(&envelope).expect("json"));
    }
    let (status, bytes) = proxy
        .upstream
        .forward(method, &uri, &headers, body)
        .await
        .unwrap_or((StatusCode::BAD_GATEWAY, Bytes::new()));
    if rejected.is_empty() {
        return (status, bytes).into_response();
    }
    if status != StatusCode::OK {
        // The kept operations should all be valid; pass any surprise on unchanged.
        return (status, bytes).into_response();
    }
    let errors: Vec<Value> = rejected
        .iter()
        .map(|i| {
            json!({"batch_index": i, "reason": "invalid", "field": "attributes",
                "message": "rejected by the test"})
        })
        .collect();
    (
        StatusCode::MULTI_STATUS,
        axum::Json(json!({ "errors": errors })),
    )
        .into_response()
}

#[test]
fn a_207_applies_the_valid_operations_exits_1_and_the_rejected_are_retried() {
    let env = Env::new(0);
    for id in [1001, 1002, 1003, 1004] {
        insert_control(&env, id);
    }
    // 1002's identify and 1003's events are refused.
    fn reject(op: &Value) -> bool {
        let id = op["identifiers"]["id"].as_str().unwrap_or("");
        let action = op["action"].as_str().unwrap_or("");
        id == "1002" || (id == "1003" && action == "event")
    }
    let proxy = Arc::new(Rejecter {
        upstream: Upstream::new(env.cio.url()),
        active: AtomicBool::new(true),
        reject,
    });
    let server = start_proxy(rejecting_proxy, Arc::clone(&proxy));
    let text = with_batch_api(&env.static_config("")).replace(
        &format!("track_url = \"{}\"", env.cio.url()),
        &format!("track_url = \"{}\"", server.url()),
    );
    env.write_config_text(&text);

    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 1, "stderr: {}", stderr(&out));
    let s = stdout_json(&out);
    let rejected: BTreeSet<(u64, String)> = s["rejected"]
        .as_array()
        .expect("rejections")
        .iter()
        .map(|r| {
            (
                r["person_id"].as_u64().expect("id"),
                r["write"].as_str().expect("write").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        rejected,
        BTreeSet::from([
            (1002, "identify".to_owned()),
            (1003, "GCDPapplied".to_owned()),
            (1003, "GCDPaccepted".to_owned()),
            (1003, "GCDPapproved".to_owned()),
        ]),
        "{s}"
    );
    assert_eq!(s["pending_people"], json!(2));
    assert!(stderr(&out).contains("1002"), "warned: {}", stderr(&out));
    assert_control_synced(&env, 1001);
    assert_control_synced(&env, 1004);
    assert!(env.cio.profile("1002").is_none());
    assert!(
        env.cio.events_for("1002").is_empty(),
        "no events before the identify"
    );
    assert_eq!(profile(&env, 1003), full_profile(1003));
    assert!(env.cio.events_for("1003").is_empty());

    proxy.active.store(false, Ordering::SeqCst);
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(stdout_json(&out)["pending_people"], json!(0));
    for id in [1001, 1002, 1003, 1004] {
        assert_control_synced(&env, id);
    }
    assert_eq!(
        env.cio.duplicate_events(),
        0,
        "nothing confirmed was resent"
    );
    report("207 per-operation rejections", 4);
}

//! Binary-level tests of `ciosync run` (SPEC 1 to 6) against the built-in fakes: the built
//! binary is spawned with a scrubbed environment and a temp data dir.

use ciosync::fake::cio::FakeCioOptions;
use ciosync::fake::faults::{Fault, FaultPlan, FaultRule, Trigger};
use ciosync::fake::gis::FakeGisOptions;
use serde_json::{json, Value};

use crate::common::*;

fn approved_scenario() -> Env {
    let env = Env::new(0);
    env.gis.insert_person(person(1001));
    env.gis.insert_application(approved_application(5001, 1001));
    env
}

#[test]
fn first_sync_sends_profiles_and_replayed_steps_with_their_own_dates_then_nothing() {
    let env = approved_scenario();
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "", "a healthy run prints nothing");
    assert_eq!(stderr(&out), "", "a healthy run prints nothing");

    let profile = env.cio.profile("1001").expect("profile created");
    assert_eq!(
        Value::Object(profile),
        full_profile(1001),
        "nulls are not sent on the first identify"
    );

    let events = env.cio.events_for("1001");
    let got: Vec<(&str, Option<i64>)> = events
        .iter()
        .map(|e| (e.name.as_str(), e.timestamp))
        .collect();
    assert_eq!(
        got,
        vec![
            ("GCDPapplied", Some(unix("2024-02-05T09:00:00Z"))),
            ("GCDPaccepted", Some(unix("2024-02-18T15:00:00Z"))),
            ("GCDPapproved", Some(unix("2024-03-02T14:10:00Z"))),
        ]
    );
    let site = env.cio.site_id();
    for event in &events {
        assert_eq!(
            event.id.as_deref(),
            Some(ciosync::plan::event_id(&site, 5001, &event.name, 1).as_str())
        );
        assert_eq!(event.data["application_id"], json!(5001));
        assert_eq!(event.data["opportunity_id"], json!(770011));
        assert_eq!(event.data["oid"], json!(770011));
        assert_eq!(event.data["programme"], json!("GCDP"));
        assert_eq!(event.data["status"], json!("approved"));
        assert_eq!(
            event.data["opportunity_title"],
            json!("Coding club facilitator")
        );
        assert_eq!(
            event.data["occurred_at"],
            json!(event.timestamp.expect("timestamp"))
        );
    }
    let identified = env.cio.first_identify_seq("1001").expect("identified");
    assert!(
        events.iter().all(|e| e.seq > identified),
        "identify confirmed before events"
    );

    env.cio.clear_requests();
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(
        write_endpoint_requests(&env.cio),
        0,
        "a run with no changes sends nothing"
    );
}

#[test]
fn each_kind_of_change_sends_exactly_its_delta() {
    let env = approved_scenario();
    env.gis.update_person(1001, json!({"nps_score": "9"}));
    assert_eq!(code(&env.run("run", &[])), 0);
    assert_eq!(
        env.cio.profile("1001").expect("profile")["nps_score"],
        json!("9")
    );

    // An attribute change, a cleared attribute, a status step and a new application.
    env.gis
        .update_person(1001, json!({"first_name": "Ana Maria", "nps_score": null}));
    env.gis.update_application(
        5001,
        json!({"status": "realized", "date_realized": "2024-06-01T00:00:00Z"}),
    );
    env.gis.insert_application(application(
        5002,
        1001,
        "open",
        json!({"created_at": "2024-07-01T00:00:00Z"}),
    ));
    env.gis.insert_person(person(1002));

    let plan = env.run("run", &["--dry-run", "--json"]);
    assert_eq!(code(&plan), 0, "stderr: {}", stderr(&plan));
    let plan = stdout_json(&plan);
    let people = plan["people"].as_array().expect("people");
    let ana = people
        .iter()
        .find(|p| p["person_id"] == json!(1001))
        .expect("1001 planned");
    let mut attributes: Vec<&str> = ana["attributes"]
        .as_array()
        .expect("attrs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    attributes.sort_unstable();
    assert_eq!(
        attributes,
        vec!["first_name", "nps_score"],
        "only the changed attributes"
    );
    let names: Vec<&str> = ana["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, vec!["GCDPrealized", "GCDPapplied"]);
    assert!(
        people.iter().any(|p| p["person_id"] == json!(1002)),
        "the new person is planned"
    );

    env.cio.clear_requests();
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let profile = env.cio.profile("1001").expect("profile");
    assert_eq!(profile["first_name"], json!("Ana Maria"));
    assert!(
        !profile.contains_key("nps_score"),
        "null clears the attribute"
    );
    assert!(env.cio.profile("1002").is_some());
    // 1001: identify + 2 events; 1002: identify.
    assert_eq!(write_endpoint_requests(&env.cio), 4);
    let realized: Vec<_> = env
        .cio
        .events_for("1001")
        .into_iter()
        .filter(|e| e.name == "GCDPrealized")
        .collect();
    assert_eq!(realized.len(), 1);
    assert_eq!(realized[0].timestamp, Some(unix("2024-06-01T00:00:00Z")));
}

#[test]
fn reapproval_after_a_break_sends_a_second_approved_with_a_new_id() {
    let env = approved_scenario();
    assert_eq!(code(&env.run("run", &[])), 0);
    env.gis.update_application(
        5001,
        json!({"status": "approval_broken", "date_approval_broken": "2024-04-01T00:00:00Z"}),
    );
    assert_eq!(code(&env.run("run", &[])), 0);
    env.gis.update_application(
        5001,
        json!({"status": "approved", "date_approved": "2024-05-01T00:00:00Z"}),
    );
    assert_eq!(code(&env.run("run", &[])), 0);

    let events = env.cio.events_for("1001");
    let approved: Vec<_> = events.iter().filter(|e| e.name == "GCDPapproved").collect();
    assert_eq!(approved.len(), 2, "{events:?}");
    assert_ne!(approved[0].id, approved[1].id);
    let site = env.cio.site_id();
    assert_eq!(
        approved[1].id.as_deref(),
        Some(ciosync::plan::event_id(&site, 5001, "GCDPapproved", 2).as_str())
    );
    assert_eq!(approved[1].timestamp, Some(unix("2024-05-01T00:00:00Z")));
    assert_eq!(
        events
            .iter()
            .filter(|e| e.name == "GCDPapproval_broken")
            .count(),
        1
    );
    assert_eq!(env.cio.duplicate_events(), 0);
}

#[test]
fn an_unknown_status_sends_nothing_and_is_counted() {
    let env = Env::new(0);
    env.gis.insert_person(person(1001));
    env.gis
        .insert_application(application(5001, 1001, "on_hold", json!({})));
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let summary = stdout_json(&out);
    assert_eq!(summary["unknown_statuses"]["on_hold"], json!(1));
    assert!(env.cio.events().is_empty());
    assert!(
        env.cio.profile("1001").is_some(),
        "the person is still identified"
    );
}

#[test]
fn dry_run_sends_nothing_and_leaves_the_data_dir_byte_identical() {
    let env = approved_scenario();
    assert_eq!(code(&env.run("run", &[])), 0);
    env.gis.update_application(
        5001,
        json!({"status": "realized", "date_realized": "2024-06-01T00:00:00Z"}),
    );
    let before: Vec<_> = ["state.json", "state.json.bak", "last_run.json", "state.key"]
        .iter()
        .map(|f| env.data_file(f))
        .collect();
    env.cio.clear_requests();

    let out = env.run("run", &["--dry-run"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert!(stdout(&out).contains("person 1001"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("GCDPrealized 2024-06-01T00:00:00Z"),
        "{}",
        stdout(&out)
    );
    assert_eq!(write_endpoint_requests(&env.cio), 0);
    let after: Vec<_> = ["state.json", "state.json.bak", "last_run.json", "state.key"]
        .iter()
        .map(|f| env.data_file(f))
        .collect();
    assert_eq!(before, after);
}

#[test]
fn a_held_lock_exits_75_and_makes_no_request() {
    let env = approved_scenario();
    std::fs::create_dir_all(env.data_dir()).expect("data dir");
    let _held = ciosync::lock::try_acquire(&env.data_dir())
        .expect("lock")
        .expect("free");
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 75);
    assert_eq!(stderr(&out), "", "skipping a tick is logged at info only");
    assert!(env.gis.requests().is_empty());
    assert!(env.cio.requests().is_empty());
}

#[test]
fn a_bad_config_exits_78_naming_the_key_and_file() {
    let env = Env::new(0);
    let text = env.config_text("access_token = \"x\"\npage_sise = 3", "");
    env.write_config_text(&text);
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 78);
    let err = stderr(&out);
    assert!(err.contains("page_sise"), "{err}");
    assert!(
        err.contains(&env.config_path().display().to_string()),
        "{err}"
    );
    assert!(env.gis.requests().is_empty());
}

#[test]
fn refused_credentials_exit_77() {
    let env = approved_scenario();
    env.write_config_text(&env.config_text("access_token = \"not-a-token\"", ""));
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 77, "stderr: {}", stderr(&out));
    assert!(
        !stderr(&out).contains("not-a-token"),
        "tokens never reach errors"
    );

    let env = Env::new(5);
    env.write_config_with_cio_key("wrong-key");
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 77, "stderr: {}", stderr(&out));
    assert!(!stderr(&out).contains("wrong-key"));
}

#[test]
fn a_corrupt_state_exits_74_and_is_left_as_it_was() {
    let env = approved_scenario();
    assert_eq!(code(&env.run("run", &[])), 0);
    let path = env.data_dir().join("state.json");
    std::fs::write(&path, b"{\"version\": 1, \"people\": {").expect("corrupt the state");
    env.cio.clear_requests();
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 74, "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("state.json.bak"),
        "says how to restore: {}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(&path).expect("state"),
        b"{\"version\": 1, \"people\": {"
    );
    assert_eq!(write_endpoint_requests(&env.cio), 0);
}

#[test]
fn gis_token_expiry_mid_run_refreshes_once_and_the_rotation_survives_the_process() {
    let env = Env::with(
        FakeGisOptions {
            people: 120,
            token_ttl_requests: Some(2),
            ..FakeGisOptions::default()
        },
        FakeCioOptions::default(),
    );
    let oauth = env.oauth_table();
    env.write_config_text(&env.config_text(&oauth, ""));
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let first = stdout_json(&out);
    assert!(
        first["token_refreshes"].as_u64().expect("count") >= 2,
        "{first}"
    );
    assert!(!env.cio.events().is_empty());

    // A second process starts from the persisted rotated token (the seed is revoked).
    env.gis.expire_access_tokens();
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let stored = String::from_utf8(
        env.data_file("gis-oauth.json")
            .expect("rotated token persisted"),
    )
    .expect("utf-8");
    assert!(!stored.contains(&env.gis.seed_refresh_token()));
}

#[test]
fn transient_faults_are_retried_and_no_event_is_stored_twice() {
    let clean = Env::new(40);
    assert_eq!(code(&clean.run("run", &[])), 0);
    let expected = clean.event_keys();
    assert!(!expected.is_empty());

    let env = Env::new(40);
    env.gis.faults().set_plan(FaultPlan {
        seed: 1,
        rules: vec![
            FaultRule {
                route: "POST /graphql".into(),
                trigger: Trigger::Nth(vec![1]),
                fault: Fault::Html(503),
            },
            FaultRule {
                route: "POST /graphql".into(),
                trigger: Trigger::Nth(vec![3]),
                fault: Fault::Drop,
            },
        ],
    });
    env.cio.faults().set_plan(FaultPlan {
        seed: 2,
        rules: vec![
            FaultRule {
                route: "POST /api/v1/customers".into(),
                trigger: Trigger::Every(7),
                fault: Fault::ErrorAfter(500),
            },
            FaultRule {
                route: "PUT /api/v1/customers".into(),
                trigger: Trigger::Nth(vec![2, 9]),
                fault: Fault::TooManyRequests { retry_after: None },
            },
            FaultRule {
                route: "PUT /api/v1/customers".into(),
                trigger: Trigger::Nth(vec![4]),
                fault: Fault::TooManyRequests {
                    retry_after: Some(1),
                },
            },
            FaultRule {
                route: "POST /api/v1/customers".into(),
                trigger: Trigger::Nth(vec![3]),
                fault: Fault::Hang(std::time::Duration::from_secs(5)),
            },
        ],
    });
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "",
        "retries that succeed are info, not warnings"
    );
    let summary = stdout_json(&out);
    assert!(
        summary["retries"].as_u64().expect("retries") >= 5,
        "{summary}"
    );
    assert!(
        env.cio.duplicate_events() >= 1,
        "5xx after applying made a resend"
    );
    assert_eq!(env.event_keys(), expected, "every event, none twice");
    assert_eq!(
        env.cio.events().len(),
        expected.len(),
        "no event stored twice"
    );
}

#[test]
fn concurrent_page_reads_survive_tokens_that_expire_after_a_few_requests() {
    // Tokens last 5 requests while up to 4 pages are read at once: requests that saw a 401
    // on a token another request already replaced retry with the newer one instead of
    // refreshing again (SPEC 3: one refresh per 401, a second 401 is exit 77).
    let env = Env::with(
        FakeGisOptions {
            people: 600,
            token_ttl_requests: Some(5),
            ..FakeGisOptions::default()
        },
        FakeCioOptions::default(),
    );
    let oauth = env.oauth_table();
    let text = env
        .config_text(&oauth, "")
        .replace("page_size = 50", "page_size = 10");
    env.write_config_text(&text);
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert!(
        stdout_json(&out)["token_refreshes"]
            .as_u64()
            .expect("count")
            >= 10
    );
}

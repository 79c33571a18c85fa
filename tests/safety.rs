//! The run's safety rails (SPEC 2 `[safety]`): the time budget and the large-change
//! refusals, through the built binary.

use std::time::Duration;

use chrono::Utc;
use ciosync::fake::faults::{Fault, FaultPlan, Trigger};
use serde_json::json;

use crate::common::*;

#[test]
fn the_time_budget_stops_the_run_with_75_and_the_next_run_resumes() {
    let reference = Env::new(120);
    assert_eq!(code(&reference.run("run", &[])), 0);

    let env = Env::new(120);
    env.write_config("\n[safety]\ntime_budget = \"2s\"");
    env.cio.faults().set_plan(FaultPlan::seeded(3).rule(
        "*",
        Trigger::Always,
        Fault::Latency(Duration::from_millis(150)),
    ));
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 75, "stderr: {}", stderr(&out));
    let stopped = stdout_json(&out);
    assert_eq!(stopped["outcome"], json!("time_budget"));
    let ended = chrono::DateTime::parse_from_rfc3339(stopped["ended_at"].as_str().expect("ended"))
        .expect("time");
    let started =
        chrono::DateTime::parse_from_rfc3339(stopped["started_at"].as_str().expect("started"))
            .expect("time");
    assert!(
        (ended - started).num_milliseconds() < 4_000,
        "stopped near its budget"
    );
    let partial = env.event_keys().len();
    assert!(
        partial > 0 && partial < reference.event_keys().len(),
        "progress was made and saved"
    );

    env.cio.faults().clear();
    env.write_config("");
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(
        env.event_keys(),
        reference.event_keys(),
        "the next run resumes and completes"
    );
    assert_eq!(
        env.cio.events().len(),
        reference.event_keys().len(),
        "nothing stored twice"
    );
}

#[test]
fn a_run_sending_events_to_most_known_people_is_refused() {
    let env = Env::new(0);
    for id in 1001..1061u64 {
        env.gis.insert_person(person(id));
        env.gis
            .insert_application(application(id + 4000, id, "open", json!({})));
    }
    assert_eq!(code(&env.run("run", &[])), 0);
    env.gis.set_clock(Utc::now());
    for id in 1001..1041u64 {
        env.gis.set_application_status(id + 4000, "accepted");
    }
    env.cio.clear_requests();
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 78, "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("--allow-large-change"),
        "{}",
        stderr(&out)
    );
    assert_eq!(changing_requests(&env.cio), 0, "nothing sent");

    let out = env.run("run", &["--allow-large-change"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(env.cio.events().len(), 60 + 40);
}

#[test]
fn a_full_read_returning_far_fewer_people_is_refused() {
    let env = Env::new(0);
    for id in 1001..1061u64 {
        env.gis.insert_person(person(id));
    }
    assert_eq!(code(&env.run("run", &[])), 0);
    for id in 1001..1045u64 {
        env.gis.move_person(id, 2001);
    }
    let out = env.run("run", &["--full"]);
    assert_eq!(code(&out), 78, "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("min_people_share"),
        "{}",
        stderr(&out)
    );
    assert!(
        env.cio
            .profiles()
            .values()
            .all(|p| !p.contains_key("in_scope")),
        "nothing sent"
    );
    let out = env.run("run", &["--full", "--allow-large-change"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(
        env.cio
            .profiles()
            .values()
            .filter(|p| p.get("in_scope") == Some(&json!(false)))
            .count(),
        44
    );
}

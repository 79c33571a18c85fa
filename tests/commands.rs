//! Binary-level tests of `check`, `status`, `demo`, the batch API, rejections, logging and
//! the config path resolution (SPEC 1, 2, 4.4, 6).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

use ciosync::fake::faults::{Fault, FaultPlan, Trigger};
use serde_json::{json, Value};

use crate::common::*;

fn events_of(env: &Env) -> BTreeSet<(String, String, Option<String>, Option<i64>)> {
    env.cio
        .events()
        .into_iter()
        .map(|e| (e.customer_id, e.name, e.id, e.timestamp))
        .collect()
}

#[test]
fn check_proves_both_credentials_one_line_each() {
    let env = Env::new(3);
    let out = env.run("check", &[]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("config: ok"));
    assert!(lines[1].starts_with("gis: ok"));
    assert!(lines[2].starts_with("customerio: ok (region us"));
    assert!(lines[3].starts_with("gis_schema: ok"));
    assert_eq!(changing_requests(&env.cio), 0, "check changes nothing");

    env.write_config_with_cio_key("nope");
    let out = env.run("check", &[]);
    assert_eq!(code(&out), 77);
    assert!(stdout(&out).contains("gis: ok"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("customerio: FAILED"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn check_reports_a_region_mismatch_as_a_config_error() {
    let env = Env::with(
        ciosync::fake::gis::FakeGisOptions::default(),
        ciosync::fake::cio::FakeCioOptions {
            region: "eu".into(),
            ..Default::default()
        },
    );
    // With track_url set the region is only reported.
    assert_eq!(code(&env.run("check", &[])), 0);
    // A redirect (the wrong region's host) is a configuration error.
    let redirecting = Env::with(
        ciosync::fake::gis::FakeGisOptions::default(),
        ciosync::fake::cio::FakeCioOptions {
            redirect: Some((301, "https://track-eu.customer.io".into())),
            ..Default::default()
        },
    );
    let out = redirecting.run("run", &[]);
    assert_eq!(code(&out), 78, "stderr: {}", stderr(&out));
    assert!(stderr(&out).contains("region"), "{}", stderr(&out));
}

#[test]
fn status_reports_the_last_run_and_the_state() {
    let env = Env::new(20);
    let out = env.run("status", &[]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert!(stdout(&out).contains("state: none yet"), "{}", stdout(&out));

    assert_eq!(code(&env.run("run", &[])), 0);
    let out = env.run("status", &["--json"]);
    assert_eq!(code(&out), 0);
    let status = stdout_json(&out);
    assert_eq!(status["state_exists"], json!(true));
    assert_eq!(status["lock_held"], json!(false));
    assert_eq!(status["last_run"]["outcome"], json!("ok"));
    assert!(status["people"].as_u64().expect("people") > 0);
    assert!(status["last_full_read"].is_string());

    std::fs::create_dir_all(env.data_dir()).expect("data dir");
    let _held = ciosync::lock::try_acquire(&env.data_dir())
        .expect("lock")
        .expect("free");
    let out = env.run("status", &[]);
    assert!(stdout(&out).contains("lock: held"), "{}", stdout(&out));
}

#[test]
fn batch_api_sends_the_same_as_v1_and_keeps_identifies_first() {
    let v1 = Env::new(60);
    assert_eq!(code(&v1.run("run", &[])), 0);
    let batch = Env::new(60);
    batch.write_config_text(&with_batch_api(&batch.static_config("")));
    let out = batch.run("run", &["--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(events_of(&batch), events_of(&v1));
    assert_eq!(batch.cio.profiles(), v1.cio.profiles());
    for event in batch.cio.events() {
        let identified = batch
            .cio
            .first_identify_seq(&event.customer_id)
            .expect("identified");
        assert!(identified < event.seq, "identify before events");
    }
    let requests = batch.cio.requests();
    assert!(
        requests.iter().all(|r| r.path != "/api/v1/customers"),
        "no v1 writes"
    );
    let batches = requests
        .iter()
        .filter(|r| r.path == "/api/v2/batch")
        .count();
    assert!((2..=4).contains(&batches), "{batches} batch requests");
}

#[test]
fn a_rejected_write_exits_1_spares_the_others_and_is_retried_next_run() {
    let env = Env::new(0);
    for id in [1001, 1002, 1003] {
        env.gis.insert_person(person(id));
        env.gis
            .insert_application(application(id + 4000, id, "open", json!({})));
    }
    // customer.io refuses the second identify (a 400 is never retried).
    env.cio.faults().set_plan(FaultPlan::seeded(1).rule(
        "PUT /api/v1/customers/1002",
        Trigger::Nth(vec![1]),
        Fault::ErrorBefore(400),
    ));
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 1, "stderr: {}", stderr(&out));
    let summary = stdout_json(&out);
    assert_eq!(summary["rejected"][0]["person_id"], json!(1002));
    assert_eq!(summary["pending_people"], json!(1));
    assert!(
        stderr(&out).contains("1002"),
        "a rejection is a warning with the id"
    );
    assert!(env.cio.profile("1001").is_some() && env.cio.profile("1003").is_some());
    assert!(env.cio.profile("1002").is_none());
    assert!(
        env.cio.events_for("1002").is_empty(),
        "no events before a confirmed identify"
    );

    let out = env.run("run", &[]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert!(env.cio.profile("1002").is_some());
    assert_eq!(env.cio.events_for("1002").len(), 1);
    assert_eq!(env.cio.events().len(), 3);
}

#[test]
fn json_logs_parse_and_log_dir_gets_daily_files() {
    let env = Env::new(10);
    let log_dir = env.dir.path().join("logs");
    env.write_config(&format!(
        "\n[log]\nformat = \"json\"\ndir = \"{}\"",
        log_dir.display()
    ));
    let out = env.run("run", &["-v"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.is_empty(), "-v logs at info");
    for line in err.lines() {
        let parsed: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(parsed.get("level").is_some(), "{line}");
    }
    assert!(
        stdout(&out).contains("outcome: ok"),
        "-v prints the summary"
    );
    let files: Vec<_> = std::fs::read_dir(&log_dir).expect("log dir").collect();
    assert_eq!(files.len(), 1, "one file per day");
}

#[test]
fn config_path_comes_from_the_environment_when_no_flag() {
    let env = Env::new(3);
    let config = env.config_path();
    let out = ciosync(
        &["status"],
        &[("CIOSYNC_CONFIG", config.to_str().expect("utf-8"))],
    );
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let out = ciosync(
        &["status"],
        &[("CIOSYNC_CONFIG", "/nonexistent/ciosync.toml")],
    );
    assert_eq!(code(&out), 78);
    assert!(
        stderr(&out).contains("/nonexistent/ciosync.toml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn demo_syncs_twice_and_shows_what_customerio_received() {
    let out = ciosync(&["demo", "--people", "30"], &[]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("first sync:"), "{text}");
    assert!(text.contains("second sync:"), "{text}");
    assert!(text.contains("duplicate events discarded: 0"), "{text}");
    let second = text
        .lines()
        .find(|l| l.starts_with("second sync:"))
        .expect("second line");
    assert!(
        !second.contains("sent 0 identifies and 0 events"),
        "changes were sent: {second}"
    );
}

#[test]
fn demo_serve_writes_a_ready_config_that_run_can_use() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo_dir = dir.path().join("demo");
    let mut child = ciosync_command(&[
        "demo",
        "--serve",
        "--people",
        "12",
        "--dir",
        demo_dir.to_str().expect("utf-8"),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("demo starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("line");
        let done = line.starts_with("Press Ctrl-C");
        seen.push(line);
        if done {
            break;
        }
    }
    assert!(
        seen.iter()
            .any(|l| l.starts_with("fake GIS:") && l.contains("http://127.0.0.1:")),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|l| l.starts_with("fake customer.io:")),
        "{seen:?}"
    );
    let config = demo_dir.join("config.toml");
    let out = ciosync(
        &["run", "--config", config.to_str().expect("utf-8"), "--json"],
        &[],
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let summary = stdout_json(&out);
    assert!(
        summary["events_sent"].as_u64().expect("events") > 0,
        "{summary}"
    );
    assert!(demo_dir.join("data/state.json").exists());
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    let out = ciosync(&["completions", "bash"], &[]);
    assert_eq!(code(&out), 0);
    let script = stdout(&out);
    assert!(script.contains("_ciosync()"), "{script}");
    assert!(script.contains("--dry-run"), "every flag is completed");
    let out = ciosync(&["man"], &[]);
    assert_eq!(code(&out), 0);
    let page = stdout(&out);
    assert!(
        page.starts_with(".ie") || page.contains(".TH ciosync 1"),
        "{page}"
    );
    assert!(page.contains("status"), "subcommands are listed");
}

//! Incremental reads and scope changes (SPEC 5.4), and the monitoring hooks of a run
//! (SPEC 6), through the built binary.

use chrono::Utc;
use serde_json::json;

use crate::common::*;

#[test]
fn a_run_with_nothing_changed_reads_little_and_sends_nothing() {
    let env = Env::new(400);
    let first = env.run("run", &["--json"]);
    assert_eq!(code(&first), 0, "stderr: {}", stderr(&first));
    assert_eq!(stdout_json(&first)["full_read"], json!(true));

    env.cio.clear_requests();
    let before = env.gis.queries().len();
    let second = env.run("run", &["--json"]);
    assert_eq!(code(&second), 0, "stderr: {}", stderr(&second));
    let summary = stdout_json(&second);
    assert_eq!(
        summary["full_read"],
        json!(false),
        "the state is fresh: incremental"
    );
    let gis_queries = env.gis.queries().len() - before;
    assert!(gis_queries <= 4, "{gis_queries} GIS requests");
    assert_eq!(summary["gis_requests"], json!(gis_queries));
    assert_eq!(changing_requests(&env.cio), 0);
}

/// A run that changes nothing leaves `state.json` as it is while the watermark is younger
/// than an hour (at a million people the file is 190 MiB); once it is older, the run saves
/// the state to advance it.
#[test]
fn a_run_with_nothing_changed_rewrites_the_state_only_for_an_hour_old_watermark() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new(50);
    assert_eq!(code(&env.run("run", &[])), 0);
    let path = env.data_dir().join("state.json");
    // The atomic writer renames a new file into place: a save changes the inode.
    let inode = || std::fs::metadata(&path).expect("state.json").ino();
    let written = inode();

    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(stdout_json(&out)["full_read"], json!(false));
    assert_eq!(
        inode(),
        written,
        "a fresh watermark: the state is not rewritten"
    );

    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("state JSON");
    let old = (Utc::now() - chrono::Duration::minutes(61)).to_rfc3339();
    state["watermark"] = json!(old);
    write_private(&path, &serde_json::to_string(&state).expect("encode"));
    let edited = inode();
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_ne!(inode(), edited, "an hour-old watermark: the state is saved");
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("state JSON");
    assert_ne!(saved["watermark"], json!(old), "the watermark advanced");
}

#[test]
fn an_incremental_run_picks_up_changes_and_a_full_one_reconciles() {
    let env = Env::new(0);
    for id in [1001u64, 1002, 1003] {
        env.gis.insert_person(person(id));
    }
    env.gis
        .insert_application(application(5001, 1001, "open", json!({})));
    assert_eq!(code(&env.run("run", &[])), 0);

    // Changes stamped with the real clock, as GIS would.
    env.gis.set_clock(Utc::now());
    env.gis.update_person(1002, json!({"first_name": "Bea"}));
    env.gis.set_application_status(5001, "accepted");
    env.cio.clear_requests();
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let summary = stdout_json(&out);
    assert_eq!(summary["full_read"], json!(false));
    assert_eq!(
        env.cio.profile("1002").expect("profile")["first_name"],
        json!("Bea")
    );
    let names: Vec<String> = env
        .cio
        .events_for("1001")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec!["GCDPapplied", "GCDPaccepted"]);

    // 1003 leaves the configured LCs: an incremental read cannot tell, a full read can.
    env.gis.move_person(1003, 2001);
    assert_eq!(code(&env.run("run", &[])), 0);
    assert!(!env
        .cio
        .profile("1003")
        .expect("profile")
        .contains_key("in_scope"));
    let out = env.run("run", &["--full", "--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(stdout_json(&out)["people_left_scope"], json!(1));
    assert_eq!(
        env.cio.profile("1003").expect("profile")["in_scope"],
        json!(false)
    );
    assert!(
        !env.cio
            .profile("1001")
            .expect("profile")
            .contains_key("in_scope"),
        "a person who never left never gets the attribute"
    );
    env.cio.clear_requests();
    assert_eq!(code(&env.run("run", &["--full"])), 0);
    assert_eq!(
        changing_requests(&env.cio),
        0,
        "in_scope = false is sent once"
    );

    // Back in scope, with an application made while away: seen by an incremental read.
    env.gis.set_clock(Utc::now());
    env.gis.move_person(1003, 1338);
    env.gis.insert_application(application(
        5003,
        1003,
        "open",
        json!({"updated_at": "2024-01-01T00:00:00Z"}),
    ));
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(stdout_json(&out)["full_read"], json!(false));
    assert_eq!(
        env.cio.profile("1003").expect("profile")["in_scope"],
        json!(true)
    );
    let names: Vec<String> = env
        .cio
        .events_for("1003")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(
        names,
        vec!["GCDPapplied"],
        "their applications are brought up to date"
    );
}

#[test]
fn full_sync_every_forces_a_full_read() {
    let env = Env::new(30);
    env.write_config("");
    let text = std::fs::read_to_string(env.config_path())
        .expect("config")
        .replace("page_size = 50", "page_size = 50\nfull_sync_every = \"0s\"");
    env.write_config_text(&text);
    assert_eq!(code(&env.run("run", &[])), 0);
    let out = env.run("run", &["--json"]);
    assert_eq!(stdout_json(&out)["full_read"], json!(true));
}

#[test]
fn a_run_writes_the_textfile_and_pings_start_then_its_exit_code() {
    let (addr, pings) = recording_server(200, 2);
    let env = Env::new(20);
    let textfile = env.dir.path().join("ciosync.prom");
    env.write_config(&format!(
        "\n[monitoring]\ntextfile = \"{}\"\nping_url = \"http://{addr}/ping/abc\"",
        textfile.display()
    ));
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let first = pings.recv().expect("start ping");
    let second = pings.recv().expect("exit ping");
    assert_eq!(first, "GET /ping/abc/start");
    assert_eq!(
        second, "POST /ping/abc/0",
        "the final ping carries the summary"
    );
    let metrics = std::fs::read_to_string(&textfile).expect("textfile written");
    assert!(
        metrics.contains("ciosync_last_run_exit_code 0"),
        "{metrics}"
    );
}

//! Incremental reads and scope changes (SPEC 5.4), and the monitoring hooks of a run
//! (SPEC 6), through the built binary.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use chrono::Utc;
use common::*;
use serde_json::{json, Value};

fn json_summary(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("--json: {e}: {}", stdout(output)))
}

/// customer.io writes (identifies and events) received.
fn writes(env: &Env) -> usize {
    env.cio
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .count()
}

#[test]
fn a_run_with_nothing_changed_reads_little_and_sends_nothing() {
    let env = Env::new(400);
    let first = env.run("run", &["--json"]);
    assert_eq!(code(&first), 0, "stderr: {}", stderr(&first));
    assert_eq!(json_summary(&first)["full_read"], json!(true));

    env.cio.clear_requests();
    let before = env.gis.queries().len();
    let second = env.run("run", &["--json"]);
    assert_eq!(code(&second), 0, "stderr: {}", stderr(&second));
    let summary = json_summary(&second);
    assert_eq!(
        summary["full_read"],
        json!(false),
        "the state is fresh: incremental"
    );
    let gis_queries = env.gis.queries().len() - before;
    assert!(gis_queries <= 4, "{gis_queries} GIS requests");
    assert_eq!(summary["gis_requests"], json!(gis_queries));
    assert_eq!(writes(&env), 0);
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
    let summary = json_summary(&out);
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
    assert_eq!(json_summary(&out)["people_left_scope"], json!(1));
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
    assert_eq!(writes(&env), 0, "in_scope = false is sent once");

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
    assert_eq!(json_summary(&out)["full_read"], json!(false));
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
    assert_eq!(json_summary(&out)["full_read"], json!(true));
}

#[test]
fn a_run_writes_the_textfile_and_pings_start_then_its_exit_code() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(2) {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            let _ = BufReader::new(&stream).read_line(&mut line);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nOK");
            let _ = tx.send(line);
        }
    });
    let env = Env::new(20);
    let textfile = env.dir.path().join("ciosync.prom");
    env.write_config(&format!(
        "\n[monitoring]\ntextfile = \"{}\"\nping_url = \"http://127.0.0.1:{port}/ping/abc\"",
        textfile.display()
    ));
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let first = rx.recv().expect("start ping");
    let second = rx.recv().expect("exit ping");
    assert!(first.starts_with("GET /ping/abc/start "), "{first}");
    assert!(second.starts_with("GET /ping/abc/0 "), "{second}");
    let metrics = std::fs::read_to_string(&textfile).expect("textfile written");
    assert!(
        metrics.contains("ciosync_last_run_exit_code 0"),
        "{metrics}"
    );
}

//! The operator rules of SPEC 8.2 and 8.3 through the built binary, on the fakes:
//! `ciosync forget` (delete, suppress, undo, bad input), `[attributes] exclude`,
//! `[scope] on_leave = "delete"` and `safety.max_delete_share`.

use serde_json::{json, Value};

use crate::common::*;

/// Ten people of LC 1337 (1001..=1010), each with one open application, synced once.
fn synced(config: &str) -> Env {
    synced_people(config, 10)
}

/// `count` people of LC 1337 (from 1001), each with one open application, synced once.
fn synced_people(config: &str, count: u64) -> Env {
    let env = Env::new(0);
    env.write_config_text(config_for(&env, config).as_str());
    for id in 1001..1001 + count {
        env.gis.insert_person(person(id));
        env.gis
            .insert_application(application(id + 4000, id, "open", json!({})));
    }
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 0, "first run: {}", stderr(&out));
    env
}

/// The base config of `env` with `extra`; `"batch:"` in front switches to the v2 API.
fn config_for(env: &Env, extra: &str) -> String {
    match extra.strip_prefix("batch:") {
        Some(rest) => with_batch_api(&env.static_config(rest)),
        None => env.static_config(extra),
    }
}

fn summary(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = env.run("run", &all);
    assert_eq!(code(&out), 0, "run: {}", stderr(&out));
    stdout_json(&out)
}

fn actions(env: &Env) -> Vec<(String, &'static str, &'static str)> {
    env.cio
        .person_actions()
        .into_iter()
        .map(|a| (a.identifier, a.action, a.api))
        .collect()
}

fn state_text(env: &Env) -> String {
    String::from_utf8(env.data_file("state.json").expect("state.json")).expect("utf-8")
}

fn forget_deletes_and_no_run_sends_again(config: &str, api: &'static str) {
    let env = synced(config);
    assert!(env.cio.profiles().contains_key("1003"));
    let events_of_1003 = |env: &Env| {
        env.cio
            .events()
            .iter()
            .filter(|e| e.customer_id == "1003")
            .count()
    };
    let events_before = events_of_1003(&env);
    let out = env.run("forget", &["1003"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert!(
        stdout(&out).contains("1003: deleted in customer.io and forgotten"),
        "{}",
        stdout(&out)
    );
    assert!(!env.cio.profiles().contains_key("1003"), "profile deleted");
    assert_eq!(actions(&env), vec![("1003".to_owned(), "delete", api)]);
    assert!(state_text(&env).contains("\"forgotten\":{\"1003\":\"deleted\"}"));
    let status = env.run("status", &[]);
    assert!(
        stdout(&status).contains(" pending, 1 forgotten\n"),
        "status counts the erased: {}",
        stdout(&status)
    );
    assert_eq!(
        stdout_json(&env.run("status", &["--json"]))["forgotten_people"],
        json!(1)
    );

    // GIS changes the person and their application: nothing is sent for them, ever.
    env.gis.set_clock(chrono::Utc::now());
    env.gis
        .insert_person(with_fields(person(1003), json!({"first_name": "Renamed"})));
    env.gis.set_application_status(1003 + 4000, "accepted");
    env.cio.clear_requests();
    let run = summary(&env, &["--full"]);
    assert_eq!(run["skipped"]["forgotten"], json!(2), "{run}");
    assert!(!env.cio.profiles().contains_key("1003"), "not recreated");
    assert!(
        env.cio.requests().iter().all(|r| !r.path.contains("1003")),
        "no request names 1003"
    );
    assert!(env.cio.person_actions().len() == 1, "nothing deleted again");
    assert_eq!(events_of_1003(&env), events_before, "no event since");
}

#[test]
fn forget_deletes_the_profile_and_no_run_sends_anything_for_the_id_v1() {
    forget_deletes_and_no_run_sends_again("", "v1");
}

#[test]
fn forget_deletes_the_profile_and_no_run_sends_anything_for_the_id_batch() {
    forget_deletes_and_no_run_sends_again("batch:", "v2");
}

fn suppress_then_undo(config: &str, api: &'static str) {
    let env = synced(config);
    let out = env.run("forget", &["1004", "--suppress"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert!(env.cio.is_suppressed("1004"));
    assert!(!env.cio.profiles().contains_key("1004"));

    let out = env.run("forget", &["--undo", "1004", "1005"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("1004: unsuppressed in customer.io and no longer forgotten"),
        "{text}"
    );
    assert!(
        text.contains("1005: was not forgotten; nothing to undo"),
        "{text}"
    );
    assert!(!env.cio.is_suppressed("1004"));
    assert_eq!(
        actions(&env),
        vec![
            ("1004".to_owned(), "suppress", api),
            ("1004".to_owned(), "unsuppress", api),
        ]
    );
    assert!(!state_text(&env).contains("forgotten"), "list empty again");

    let out = env.run("run", &["--full"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(
        env.cio
            .profiles()
            .get("1004")
            .map(|p| Value::Object(p.clone())),
        Some(full_profile(1004)),
        "synced again as new"
    );
}

#[test]
fn forget_suppress_then_undo_unsuppresses_and_the_next_run_syncs_the_person_as_new_v1() {
    suppress_then_undo("", "v1");
}

#[test]
fn forget_suppress_then_undo_unsuppresses_and_the_next_run_syncs_the_person_as_new_batch() {
    suppress_then_undo("batch:", "v2");
}

#[test]
fn forget_with_customer_io_unavailable_exits_69_and_records_nothing() {
    use ciosync::fake::faults::{Fault, FaultPlan, Trigger};

    let env = synced("");
    let before = state_text(&env);
    env.cio.faults().set_plan(FaultPlan::seeded(2).rule(
        "*",
        Trigger::Always,
        Fault::ErrorBefore(503),
    ));
    let out = env.run("forget", &["1001"]);
    assert_eq!(code(&out), 69, "stderr: {}", stderr(&out));
    assert_eq!(state_text(&env), before, "nothing recorded");
    env.cio.faults().clear();
    assert!(env.cio.profiles().contains_key("1001"));
}

#[test]
fn undo_of_an_id_never_forgotten_says_so_and_exits_0() {
    let env = Env::new(0);
    let out = env.run("forget", &["--undo", "42"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert!(
        stdout(&out).contains("42: was not forgotten; nothing to undo"),
        "{}",
        stdout(&out)
    );
    assert_eq!(changing_requests(&env.cio), 0);
}

#[test]
fn forget_refuses_bad_ids_and_no_ids_with_a_usage_error() {
    let env = Env::new(0);
    for args in [&[][..], &["12a"][..], &["1e3"][..]] {
        let out = env.run("forget", args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(
            args.is_empty() || stderr(&out).contains("is not a GIS person id"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert!(env.data_file("state.json").is_none());
    assert_eq!(changing_requests(&env.cio), 0);
}

#[test]
fn forget_while_a_run_holds_the_lock_exits_75_and_changes_nothing() {
    let env = synced("");
    let _held = ciosync::lock::acquire(&env.data_dir()).expect("lock");
    let before = state_text(&env);
    let out = env.run("forget", &["1001"]);
    assert_eq!(code(&out), 75, "stderr: {}", stderr(&out));
    assert_eq!(state_text(&env), before);
    assert!(env.cio.profiles().contains_key("1001"));
}

#[test]
fn an_excluded_attribute_is_cleared_once_for_everyone_holding_it_and_never_sent_again() {
    let env = synced("");
    env.write_config_text(&config_for(
        &env,
        "\n[attributes]\nexclude = [\"birthday\"]",
    ));
    // An incremental run that reads nobody still clears everyone's birthday, once, and
    // sends nothing else.
    let run = summary(&env, &[]);
    assert_eq!(
        run["identifies_sent"],
        json!(10),
        "one clear per person: {run}"
    );
    assert_eq!(run["events_sent"], json!(0), "{run}");
    for id in 1001..=1010u64 {
        let mut expected = full_profile(id);
        expected.as_object_mut().expect("object").remove("birthday");
        let profile = Value::Object(env.cio.profiles()[&id.to_string()].clone());
        assert_eq!(profile, expected, "{id}: only the birthday went");
    }
    let again = summary(&env, &[]);
    assert_eq!(again["identifies_sent"], json!(0), "cleared once: {again}");

    env.gis.insert_person(with_fields(
        person(1002),
        json!({"dob": "1999-09-09", "first_name": "Bea"}),
    ));
    let run = summary(&env, &["--full"]);
    assert_eq!(run["identifies_sent"], json!(1), "{run}");
    let profile = &env.cio.profiles()["1002"];
    assert_eq!(profile.get("first_name"), Some(&json!("Bea")));
    assert_eq!(profile.get("birthday"), None, "never the birthday");

    // Un-excluding is not a setup change: the birthdays come back, one identify each.
    env.write_config_text(&config_for(&env, ""));
    let run = summary(&env, &["--full"]);
    assert_eq!(run["identifies_sent"], json!(10), "{run}");
    assert_eq!(run["events_sent"], json!(0), "{run}");
    assert_eq!(
        env.cio.profiles()["1003"].get("birthday"),
        Some(&json!("2000-01-02"))
    );
    assert_eq!(
        env.cio.profiles()["1002"].get("birthday"),
        Some(&json!("1999-09-09"))
    );
}

#[test]
fn an_excluded_name_that_is_not_an_attribute_is_exit_78_naming_it() {
    let env = Env::new(0);
    for name in ["birthdate", "in_scope"] {
        env.write_config_text(&config_for(
            &env,
            &format!("\n[attributes]\nexclude = [\"{name}\"]"),
        ));
        let out = env.run("run", &[]);
        assert_eq!(code(&out), 78, "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains(name), "{name}: {}", stderr(&out));
    }
}

fn on_leave_delete(config: &str, api: &'static str) {
    let env = synced(&format!("{config}\n[scope]\non_leave = \"delete\""));
    env.gis.set_clock(chrono::Utc::now());
    assert!(env.gis.move_person(1002, 9999), "moved out of scope");
    let run = summary(&env, &["--full"]);
    assert!(!env.cio.profiles().contains_key("1002"), "{run}");
    assert!(env.cio.profiles().contains_key("1001"));
    assert_eq!(actions(&env), vec![("1002".to_owned(), "delete", api)]);
    assert!(
        !state_text(&env).contains("forgotten"),
        "no tombstone for a person who left"
    );
    // If they come back, they are new.
    assert!(env.gis.move_person(1002, 1337));
    let _ = summary(&env, &["--full"]);
    assert!(env.cio.profiles().contains_key("1002"), "synced again");
}

#[test]
fn on_leave_delete_deletes_people_who_leave_scope_v1() {
    on_leave_delete("", "v1");
}

#[test]
fn on_leave_delete_deletes_people_who_leave_scope_batch() {
    on_leave_delete("batch:", "v2");
}

#[test]
fn deleting_more_than_max_delete_share_is_refused_unless_allowed() {
    // 60 known people: 6 deletes is a tenth (allowed), 7 is more.
    let env = synced_people("\n[scope]\non_leave = \"delete\"", 60);
    env.gis.set_clock(chrono::Utc::now());
    for id in 1001..=1007u64 {
        assert!(env.gis.move_person(id, 9999));
    }
    env.cio.clear_requests();
    let out = env.run("run", &["--full"]);
    assert_eq!(code(&out), 78, "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("max_delete_share") && stderr(&out).contains("--allow-large-change"),
        "{}",
        stderr(&out)
    );
    assert_eq!(changing_requests(&env.cio), 0, "nothing sent");
    assert!(env.cio.person_actions().is_empty());

    let out = env.run("run", &["--full", "--allow-large-change"]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(actions(&env).len(), 7);

    // forget is never refused by it.
    let ids: Vec<String> = (1010..1020u64).map(|id| id.to_string()).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let out = env.run("forget", &ids);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(actions(&env).len(), 17);
}

/// How often the crash test looks at the child and the fake again.
const POLL: std::time::Duration = std::time::Duration::from_millis(1);

/// Starts `ciosync <args>` on `env`'s config, kills it (SIGKILL) once `due` says so, and
/// returns its exit code if it ended by itself first.
fn kill_when(env: &Env, args: &[&str], due: impl Fn(std::time::Duration) -> bool) -> Option<i32> {
    let config = env.config_path();
    let mut all = vec![args[0], "--config", config.to_str().expect("utf-8 path")];
    all.extend_from_slice(&args[1..]);
    let mut child = ciosync_command(&all)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ciosync starts");
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        if due(start.elapsed()) {
            child.kill().expect("kill ciosync");
            child.wait().expect("reap ciosync");
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// SPEC 8.2: `forget` killed at seeded moments (by time, and by how many removals
/// customer.io has applied, with latency so kills land mid-request), then finished by a
/// rerun of `forget` or by the next `run`: every id ends deleted (or suppressed) in
/// customer.io, confirmed on the forgotten list, out of the state's people, and no later
/// run sends anything for it.
fn forget_survives_kills(config: &str, seed: u64) {
    use ciosync::fake::faults::{Fault, FaultPlan, Trigger};
    use rand::{Rng, SeedableRng};

    let trials = 8u64;
    let per_trial = 4u64;
    let env = synced_people(config, trials * per_trial);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut killed = 0;
    let mut killed_unconfirmed = 0;
    for trial in 0..trials {
        let ids: Vec<String> = (0..per_trial)
            .map(|i| (1001 + trial * per_trial + i).to_string())
            .collect();
        let suppress = trial % 2 == 1;
        let mut args = vec!["forget"];
        args.extend(ids.iter().map(String::as_str));
        if suppress {
            args.push("--suppress");
        }
        env.cio
            .faults()
            .set_plan(FaultPlan::seeded(seed + trial).rule(
                "*",
                Trigger::Always,
                Fault::Latency(std::time::Duration::from_millis(rng.gen_range(5..40))),
            ));
        let actions_before = env.cio.person_actions().len();
        let by_time = rng.gen_bool(0.5);
        let delay = std::time::Duration::from_millis(rng.gen_range(0..250));
        let actions = rng.gen_range(0..per_trial as usize);
        let ended = kill_when(&env, &args, |elapsed| {
            if by_time {
                elapsed >= delay
            } else {
                env.cio.person_actions().len() - actions_before >= actions
            }
        });
        killed += usize::from(ended.is_none());
        if ended.is_none() {
            // Killed with ids recorded but not all confirmed: the case the order is for.
            let state: Value = serde_json::from_str(&state_text(&env)).expect("state json");
            let unconfirmed = ids.iter().any(|id| {
                matches!(
                    state["forgotten"][id].as_str(),
                    Some("deleting" | "suppressing")
                )
            });
            killed_unconfirmed += usize::from(unconfirmed);
        }
        env.cio.faults().clear();
        // Finish by `forget` again or by a run.
        let out = if trial % 4 < 2 {
            env.run("forget", &args[1..])
        } else {
            env.run("run", &[])
        };
        assert_eq!(code(&out), 0, "trial {trial}: {}", stderr(&out));
        let forgotten = |env: &Env| -> Value {
            let state: Value = serde_json::from_str(&state_text(env)).expect("state json");
            state["forgotten"].clone()
        };
        for id in &ids {
            let name = if suppress { "suppressed" } else { "deleted" };
            // A kill before anything was recorded, finished by a run, leaves the id as it
            // was (never forgotten, still synced): then forget it now, which must work as
            // usual.
            if forgotten(&env).get(id) != Some(&json!(name)) {
                assert_eq!(
                    forgotten(&env).get(id),
                    None,
                    "trial {trial}: {id} half-forgotten"
                );
                assert!(env.cio.profiles().contains_key(id.as_str()), "{id}");
                assert_eq!(code(&env.run("forget", &args[1..])), 0);
            }
            assert_eq!(
                forgotten(&env).get(id),
                Some(&json!(name)),
                "trial {trial} ({ended:?}): {id} not confirmed"
            );
            assert!(
                !env.cio.profiles().contains_key(id.as_str()),
                "trial {trial}: {id} still in customer.io"
            );
            assert_eq!(env.cio.is_suppressed(id), suppress, "trial {trial}: {id}");
        }
    }
    // Every forgotten id has left the state's people, and nothing is sent for any of them.
    let state: Value = serde_json::from_str(&state_text(&env)).expect("state json");
    let forgotten = state["forgotten"].as_object().expect("forgotten list");
    assert_eq!(forgotten.len() as u64, trials * per_trial);
    for id in forgotten.keys() {
        assert!(state["people"].get(id).is_none(), "{id} still in people");
    }
    let profiles = env.cio.profiles().len();
    env.cio.clear_requests();
    let run = summary(&env, &["--full"]);
    assert_eq!(run["identifies_sent"], json!(0), "{run}");
    assert_eq!(run["events_sent"], json!(0), "{run}");
    assert_eq!(env.cio.profiles().len(), profiles);
    assert!(killed > 0, "some kills landed on a running forget");
    assert!(
        killed_unconfirmed > 0,
        "some kills left ids recorded but unconfirmed ({killed} kills)"
    );
}

#[test]
fn forget_killed_at_seeded_points_is_finished_by_a_rerun_v1() {
    forget_survives_kills("", 13);
}

#[test]
fn forget_killed_at_seeded_points_is_finished_by_a_rerun_batch() {
    forget_survives_kills("batch:", 31);
}

#[test]
fn forget_of_an_id_customer_io_rejects_exits_1_and_leaves_it_as_it_was() {
    use ciosync::fake::faults::{Fault, FaultPlan, Trigger};

    let env = synced("");
    env.cio.faults().set_plan(FaultPlan::seeded(1).rule(
        "DELETE /api/v1/customers/1002",
        Trigger::Always,
        Fault::Html(400),
    ));
    let out = env.run("forget", &["1001", "1002"]);
    assert_eq!(code(&out), 1, "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("1001: deleted in customer.io"), "{text}");
    assert!(text.contains("1002: REJECTED by customer.io"), "{text}");
    let state: Value = serde_json::from_str(&state_text(&env)).expect("state json");
    assert_eq!(state["forgotten"], json!({"1001": "deleted"}));
    assert!(state["people"].get("1002").is_some(), "1002 as it was");
    assert!(env.cio.profiles().contains_key("1002"));

    // 1002 is still synced as before.
    env.cio.faults().clear();
    env.gis
        .insert_person(with_fields(person(1002), json!({"first_name": "Still"})));
    let _ = summary(&env, &["--full"]);
    assert_eq!(
        env.cio.profiles()["1002"].get("first_name"),
        Some(&json!("Still"))
    );
}

#[test]
fn on_leave_delete_deletes_people_gis_no_longer_has() {
    let env = synced("\n[scope]\non_leave = \"delete\"");
    env.gis.set_clock(chrono::Utc::now());
    assert!(env.gis.remove_person(1006));
    let run = summary(&env, &["--full"]);
    assert_eq!(run["people_deleted"], json!(1), "{run}");
    assert_eq!(actions(&env), vec![("1006".to_owned(), "delete", "v1")]);
    assert!(!env.cio.profiles().contains_key("1006"));
    let state: Value = serde_json::from_str(&state_text(&env)).expect("state json");
    assert!(state["people"].get("1006").is_none());
    assert!(
        state["applications"].get("5006").is_none(),
        "applications go too"
    );
    let again = summary(&env, &["--full"]);
    assert_eq!(again["people_deleted"], json!(0), "once: {again}");
    assert_eq!(env.cio.person_actions().len(), 1);
}

#[test]
fn a_state_without_the_forgotten_field_still_loads_and_runs() {
    // The state of a ciosync from before SPEC 8.2 has no "forgotten": it loads as an empty
    // list, and a state with nothing forgotten is written without the field (the same bytes
    // as before).
    let env = synced("");
    let before = state_text(&env);
    assert!(!before.contains("forgotten"), "{before}");
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert!(!state_text(&env).contains("forgotten"));
}

#[test]
fn the_next_run_finishes_a_forget_that_customer_io_never_confirmed() {
    // What a kill between recording and customer.io's answer leaves: the id recorded as
    // being deleted, the person still in the state.
    let env = synced("");
    let text = state_text(&env);
    let unfinished = format!(
        "{},\"forgotten\":{{\"1003\":\"deleting\"}}}}\n",
        text.trim_end().strip_suffix('}').expect("a JSON object")
    );
    std::fs::write(env.data_dir().join("state.json"), unfinished).expect("write state");
    env.gis
        .insert_person(with_fields(person(1003), json!({"first_name": "Renamed"})));
    let run = summary(&env, &["--full"]);
    assert_eq!(run["people_forgotten"], json!(1), "{run}");
    assert_eq!(run["skipped"]["forgotten"], json!(2), "{run}");
    assert_eq!(actions(&env), vec![("1003".to_owned(), "delete", "v1")]);
    assert!(!env.cio.profiles().contains_key("1003"));
    let state: Value = serde_json::from_str(&state_text(&env)).expect("state json");
    assert_eq!(state["forgotten"], json!({"1003": "deleted"}));
    assert!(state["people"].get("1003").is_none());
    let again = summary(&env, &["--full"]);
    assert_eq!(again["people_forgotten"], json!(0), "{again}");
    assert_eq!(env.cio.person_actions().len(), 1, "deleted once");
}

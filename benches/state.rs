//! The state benchmark (issue 12): `cargo bench --bench state`.
//!
//! Builds a synthetic state per size (people with random fingerprints, three applications
//! each at mixed steps), saves it, then loads and saves it again in a fresh child process
//! twice: once with the code before issue 12 (`src/state/legacy.rs`: the whole file read,
//! parsed into `BTreeMap`s of `String`s and records, converted, encoded into one buffer)
//! and once with today's (`ciosync::state::load` and `save`: streaming into and out of the
//! compact tables). Prints, side by side, load and save time, the file size, the memory the
//! loaded state holds and the child's peak RSS, with the ratios; and checks that both
//! generations wrote the same bytes.
//!
//! Environment (optional): `CIOSYNC_BENCH_STATE_SIZES=50000,1000000` people per size
//! (default both; applications are three a person).

#[allow(dead_code)]
#[path = "../src/state/legacy.rs"]
mod legacy;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

// What `legacy.rs` names through `super::`.
use ciosync::model::{ApplicationId, EventKind, PersonId, Side, Step, ATTRIBUTES};
use ciosync::state::{self, ApplicationState, PersonState, State, STATE_VERSION};

const CHILD_FLAG: &str = "--state-child";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == CHILD_FLAG) {
        let generation = args.get(at + 1).expect("generation");
        let dir = PathBuf::from(args.get(at + 2).expect("dir"));
        child(generation, &dir);
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it.
    if !args.iter().any(|a| a == "--bench") {
        println!("benchmark skipped: run it with `cargo bench --bench state`");
        return;
    }
    let sizes: Vec<u64> = std::env::var("CIOSYNC_BENCH_STATE_SIZES")
        .unwrap_or_else(|_| "50000,1000000".to_owned())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("CIOSYNC_BENCH_STATE_SIZES: numbers")
        })
        .collect();
    let mut rows = Vec::new();
    for people in sizes {
        rows.push(measure(people, people * 3));
    }
    println!("{}", report(&rows));
}

/// What one child measured.
#[derive(serde::Serialize, serde::Deserialize)]
struct Measured {
    load_s: f64,
    save_s: f64,
    /// CPU seconds (user + system) of the load and of the save: less sensitive than wall
    /// time to a machine shared with other work.
    load_cpu_s: f64,
    save_cpu_s: f64,
    /// Resident memory after the load minus before it: what the loaded state holds.
    held_bytes: u64,
    peak_rss_bytes: u64,
}

struct Row {
    people: u64,
    applications: u64,
    file_bytes: u64,
    before: Measured,
    after: Measured,
}

fn measure(people: u64, applications: u64) -> Row {
    let root = tempfile::tempdir().expect("temp dir");
    let source = root.path().join("source");
    std::fs::create_dir(&source).expect("dir");
    eprintln!("building {people} people / {applications} applications ...");
    state::save(&source, &synthetic(people, applications)).expect("save the synthetic state");
    let file = state::state_path(&source);
    let file_bytes = std::fs::metadata(&file).expect("stat").len();
    let run = |generation: &str| {
        let dir = root.path().join(generation);
        std::fs::create_dir(&dir).expect("dir");
        std::fs::hard_link(&file, state::state_path(&dir)).expect("link");
        eprintln!("{generation}: load + save of {file_bytes} bytes ...");
        let out = Command::new(std::env::current_exe().expect("own path"))
            .args([CHILD_FLAG, generation])
            .arg(&dir)
            .output()
            .expect("run the child");
        assert!(
            out.status.success(),
            "{generation}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let measured: Measured = serde_json::from_slice(&out.stdout).expect("child's figures");
        (
            measured,
            std::fs::read(state::state_path(&dir)).expect("saved"),
        )
    };
    let (before, before_bytes) = run("before");
    let (after, after_bytes) = run("after");
    assert!(
        before_bytes == after_bytes,
        "both generations save the same bytes"
    );
    Row {
        people,
        applications,
        file_bytes,
        before,
        after,
    }
}

/// Loads and saves the state in `dir` with one generation of the code; prints the figures.
fn child(generation: &str, dir: &Path) {
    let start_rss = current_rss();
    let cpu = || ciosync::summary::resource_usage().0;
    let start_cpu = cpu();
    let started = Instant::now();
    let measured = match generation {
        "before" => {
            let bytes = std::fs::read(state::state_path(dir)).expect("read");
            let loaded = legacy::decode(&bytes).expect("decodes");
            drop(bytes);
            let load_s = started.elapsed().as_secs_f64();
            let load_cpu_s = cpu() - start_cpu;
            let held_bytes = current_rss().saturating_sub(start_rss);
            let save_cpu = cpu();
            let started = Instant::now();
            let bytes = legacy::encode(&loaded);
            ciosync::data_dir::AtomicWrite {
                path: &state::state_path(dir),
                mode: 0o600,
                backup: Some(&state::backup_path(dir)),
            }
            .write_with(&bytes, &mut ciosync::data_dir::write_all)
            .expect("save");
            Measured {
                load_s,
                save_s: started.elapsed().as_secs_f64(),
                load_cpu_s,
                save_cpu_s: cpu() - save_cpu,
                held_bytes,
                peak_rss_bytes: 0,
            }
        }
        "after" => {
            let loaded = state::load(dir).expect("loads").expect("exists");
            let load_s = started.elapsed().as_secs_f64();
            let load_cpu_s = cpu() - start_cpu;
            let held_bytes = current_rss().saturating_sub(start_rss);
            let save_cpu = cpu();
            let started = Instant::now();
            state::save(dir, &loaded).expect("save");
            Measured {
                load_s,
                save_s: started.elapsed().as_secs_f64(),
                load_cpu_s,
                save_cpu_s: cpu() - save_cpu,
                held_bytes,
                peak_rss_bytes: 0,
            }
        }
        other => panic!("unknown generation {other}"),
    };
    let measured = Measured {
        peak_rss_bytes: ciosync::summary::resource_usage().1,
        ..measured
    };
    println!("{}", serde_json::to_string(&measured).expect("json"));
}

/// This process's resident memory now (`VmRSS`), in bytes.
fn current_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
            line.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// A large office's state: random fingerprints (as HMAC output would be), applications at
/// every step, some with a side status, a few sent one step many times.
fn synthetic(people: u64, applications: u64) -> State {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let first_person = 10_000_000;
    let people_table = (0..people)
        .map(|i| {
            let mut person = PersonState::default();
            for slot in &mut person.attrs {
                *slot = next() as u32;
            }
            if i % 50 == 0 {
                person.in_scope = false;
                person.in_scope_sent = true;
            }
            (first_person + i, person)
        })
        .collect();
    let applications_table = (0..applications)
        .map(|i| {
            let roll = next();
            let rank = (roll % 7) as u8;
            let mut app = ApplicationState {
                person_id: first_person + i * people / applications.max(1),
                rank,
                ..ApplicationState::default()
            };
            for step in 0..usize::from(rank) {
                app.count.set(step, 1);
            }
            if roll % 5 == 0 {
                app.last_side = Some(Side::ALL[(roll >> 8) as usize % Side::ALL.len()]);
                app.count
                    .set(EventKind::Side(app.last_side.expect("set")).index(), 1);
            }
            if roll % 1000 == 0 {
                app.count.set(0, 300);
            }
            (100_000_000 + i, app)
        })
        .collect();
    State {
        setup: "f".repeat(64),
        people: people_table,
        applications: applications_table,
        pending_people: Default::default(),
        watermark: Some(chrono::Utc::now()),
        last_full_read: Some(chrono::Utc::now()),
        run_in_progress: None,
        forgotten: Default::default(),
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn report(rows: &[Row]) -> String {
    let mut out = String::from(
        "| people | applications | state.json MiB | code | load s | load CPU s | save s | save CPU s | held after load MiB | bytes held per person | peak RSS MiB (load + save) |\n\
         |---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        for (name, m) in [("before", &row.before), ("after", &row.after)] {
            out.push_str(&format!(
                "| {} | {} | {:.1} | {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {:.1} |\n",
                row.people,
                row.applications,
                mib(row.file_bytes),
                m.load_s,
                m.load_cpu_s,
                m.save_s,
                m.save_cpu_s,
                mib(m.held_bytes),
                m.held_bytes / row.people.max(1),
                mib(m.peak_rss_bytes),
            ));
        }
        let ratio = |before: f64, after: f64| before / after.max(1e-9);
        out.push_str(&format!(
            "| {} | {} | | before / after | {:.1}x | {:.1}x | {:.1}x | {:.1}x | {:.1}x | | {:.1}x |\n",
            row.people,
            row.applications,
            ratio(row.before.load_s, row.after.load_s),
            ratio(row.before.load_cpu_s, row.after.load_cpu_s),
            ratio(row.before.save_s, row.after.save_s),
            ratio(row.before.save_cpu_s, row.after.save_cpu_s),
            ratio(row.before.held_bytes as f64, row.after.held_bytes as f64),
            ratio(row.before.peak_rss_bytes as f64, row.after.peak_rss_bytes as f64),
        ));
    }
    out
}

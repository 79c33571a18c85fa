//! Crash consistency (SPEC 5.3, issue 4 item 1): the built binary is killed with SIGKILL
//! at seeded pseudo-random moments and rerun until it completes; customer.io must then hold
//! exactly what one uninterrupted run produced: the same profiles, every event stored
//! exactly once, none missing, and a state that loads and has nothing left to send.
//!
//! Kill moments are chosen three ways, seeded: by elapsed time (a delay within the
//! measured duration of an uninterrupted run, so some land while GIS is read, the plan is
//! made or the state is saved), by progress (when the fake customer.io has received the N-th
//! write request, which a small latency fault keeps in flight, so the kill lands
//! mid-request or between a person's identify and their events), and at a state checkpoint
//! (as soon as a state temp file appears or `state.json` is replaced).
//!
//! The CI tests (`cargo test --test tests crash::`) use about 20 kill points each;
//! `crash_long` (ignored: `cargo test --release --test tests crash:: -- --ignored
//! --nocapture`) takes its figures from the environment (`CIOSYNC_CRASH_KILLS`,
//! `CIOSYNC_CRASH_PEOPLE`, `CIOSYNC_CRASH_SEED`, `CIOSYNC_CRASH_API`) and prints what it
//! measured. Set `CIOSYNC_CRASH_TRACE=1` to see each run's kill moment and how it ended.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ciosync::fake::cio::FakeCioOptions;
use ciosync::fake::faults::{Fault, FaultPlan, Trigger};
use ciosync::fake::gis::FakeGisOptions;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::{
    ciosync_command, code, content, stderr, with_batch_api, write_endpoint_requests, Content, Env,
    EventKey,
};

/// How often a waiting loop looks at the child and the fakes again.
const POLL: Duration = Duration::from_millis(1);

/// Which customer.io API the binary uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    V1,
    Batch,
}

impl Api {
    fn config_value(self) -> &'static str {
        match self {
            Api::V1 => "v1",
            Api::Batch => "batch",
        }
    }
}

/// One crash experiment.
#[derive(Debug, Clone)]
struct Params {
    api: Api,
    /// Generated people in the fake GIS (over 4 LCs, of which 2 are in scope).
    people: usize,
    /// Kill points that must land on a running process.
    kills: usize,
    seed: u64,
    /// The fake customer.io delays this share of its requests by `latency`.
    latency_probability: f64,
    latency: Duration,
    /// Every v2 batch is delayed this long (a run sends only a few batches; the delay keeps
    /// them in flight long enough for kills to land mid-batch).
    batch_latency: Duration,
}

/// Both fakes seeded from `params`, the binary configured for its API, and a small latency
/// fault so a kill often finds a request in flight.
fn crash_env(params: &Params) -> Env {
    let env = Env::with(
        FakeGisOptions {
            seed: params.seed,
            people: params.people,
            ..FakeGisOptions::default()
        },
        FakeCioOptions::default(),
    );
    let text = match params.api {
        Api::V1 => env.static_config(""),
        Api::Batch => with_batch_api(&env.static_config("")),
    };
    env.write_config_text(&text);
    env.cio.faults().set_plan(
        FaultPlan::seeded(params.seed)
            .rule(
                "POST /api/v2/batch",
                Trigger::Always,
                Fault::Latency(params.batch_latency),
            )
            .rule(
                "*",
                Trigger::Random {
                    probability: params.latency_probability,
                },
                Fault::Latency(params.latency),
            ),
    );
    env
}

/// Starts `ciosync run` on `env`'s config with a scrubbed environment; stderr goes to a
/// file (returned) so a long run never blocks on a full pipe.
fn spawn(env: &Env, run: usize) -> (Child, PathBuf) {
    let stderr_path = env.dir.path().join(format!("run-{run}.stderr"));
    let stderr = File::create(&stderr_path).expect("stderr file");
    let child = ciosync_command(&["run", "--config"])
        .arg(env.config_path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("ciosync starts");
    (child, stderr_path)
}

fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// What an uninterrupted run did, and how long its phases took.
struct Reference {
    content: Content,
    /// Spawn to exit.
    duration: Duration,
    /// Spawn to the first customer.io write (reading GIS, planning, the first save).
    read_phase: Duration,
    /// customer.io write requests it made.
    writes: usize,
    /// Spawn to exit of a second run with nothing left to send (it reads, plans, saves).
    rerun: Duration,
}

/// Runs the binary once without interruption on a fresh env and measures it.
fn reference(params: &Params) -> Reference {
    let env = crash_env(params);
    let (mut child, stderr_path) = spawn(&env, 0);
    let start = Instant::now();
    let mut read_phase = None;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for ciosync") {
            break status;
        }
        if read_phase.is_none() && write_endpoint_requests(&env.cio) > 0 {
            read_phase = Some(start.elapsed());
        }
        std::thread::sleep(POLL);
    };
    let duration = start.elapsed();
    assert_eq!(
        status.code(),
        Some(0),
        "reference run: {}",
        read_text(&stderr_path)
    );
    assert_eq!(read_text(&stderr_path), "", "a healthy run is silent");
    let content = content(&env.cio);
    assert!(
        !content.events.is_empty() && !content.profiles.is_empty(),
        "the scenario sends something"
    );
    let writes = write_endpoint_requests(&env.cio);
    let (mut child, stderr_path) = spawn(&env, 1);
    let start = Instant::now();
    let status = child.wait().expect("wait for ciosync");
    let rerun = start.elapsed();
    assert_eq!(status.code(), Some(0), "rerun: {}", read_text(&stderr_path));
    Reference {
        content,
        duration,
        read_phase: read_phase.unwrap_or(duration),
        writes,
        rerun,
    }
}

/// When to kill one process.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// This long after spawning it.
    Elapsed(Duration),
    /// When customer.io has received this many write requests from it.
    Writes(usize),
    /// At the `skip + 1`-th state save it starts (a temp file appears) or finishes
    /// (`state.json` is replaced), whichever is seen first.
    Checkpoint { skip: u32 },
}

/// How one process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Killed,
    Exited(i32),
}

/// `state.json`'s identity (inode, mtime in ns): changes whenever a save renames a new
/// generation into place.
fn state_identity(data_dir: &Path) -> Option<(u64, i64)> {
    let meta = std::fs::metadata(data_dir.join("state.json")).ok()?;
    Some((meta.ino(), meta.mtime() * 1_000_000_000 + meta.mtime_nsec()))
}

/// Names of state temp files in the data dir (a save in progress, or one a kill cut short).
fn state_temp_files(data_dir: &Path) -> Vec<String> {
    std::fs::read_dir(data_dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(".state.json"))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs one process and kills it at `kill_at`, unless it exits first.
fn run_until(env: &Env, run: usize, kill_at: KillAt) -> (Ended, PathBuf) {
    let data_dir = env.data_dir();
    let writes_before = write_endpoint_requests(&env.cio);
    let temps_before: BTreeSet<String> = state_temp_files(&data_dir).into_iter().collect();
    let mut identity = state_identity(&data_dir);
    let mut saves_seen = 0u32;
    let (mut child, stderr_path) = spawn(env, run);
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for ciosync") {
            let code = status.code().expect("exited by itself, not by a signal");
            return (Ended::Exited(code), stderr_path);
        }
        let due = match kill_at {
            KillAt::Elapsed(delay) => start.elapsed() >= delay,
            KillAt::Writes(n) => write_endpoint_requests(&env.cio) - writes_before >= n,
            KillAt::Checkpoint { skip } => {
                let now = state_identity(&data_dir);
                let saving = state_temp_files(&data_dir)
                    .iter()
                    .any(|name| !temps_before.contains(name));
                if now != identity {
                    identity = now;
                    saves_seen += 1;
                }
                saving || saves_seen > skip
            }
        };
        if due {
            // SIGKILL on unix: no destructor, no flush, no final save.
            child.kill().expect("kill ciosync");
            child.wait().expect("reap ciosync");
            return (Ended::Killed, stderr_path);
        }
        let pause = match kill_at {
            KillAt::Elapsed(delay) => delay.saturating_sub(start.elapsed()).min(POLL),
            _ => POLL,
        };
        std::thread::sleep(pause);
    }
}

/// What a crash experiment measured.
#[derive(Debug, Default)]
struct Figures {
    /// Kill points that landed on a running process (each was followed by a rerun).
    kills_landed: usize,
    /// Processes that completed before their kill point.
    completed_before_kill: usize,
    /// Kill points that landed before any run had completed the sync (the others hit runs
    /// with nothing left to send: reading, planning and saving).
    kills_before_completion: usize,
    kills_by_time: usize,
    kills_by_progress: usize,
    kills_at_checkpoint: usize,
    /// Processes started in all, the final run included.
    runs: usize,
    /// Reference profiles or events missing (or different) at the end.
    records_lost: usize,
    /// Profiles or events present at the end that the reference run did not produce.
    records_extra: usize,
    /// Events stored more than once.
    duplicate_events_stored: usize,
    /// Events the fake acknowledged but discarded because their id was already stored.
    duplicates_discarded: u64,
    /// State temp files kills had left in the data dir before the final run (which removes
    /// them).
    leftover_temp_files: usize,
    elapsed: Duration,
}

/// The kill schedule: `kills` points, each a progress target in `[0, 0.97)` (see
/// [`progress`]; sorted, so the kills walk through the whole run) and a way to reach it.
fn schedule(rng: &mut StdRng, kills: usize) -> Vec<(f64, u8)> {
    let mut targets: Vec<f64> = (0..kills).map(|_| rng.gen_range(0.0..0.97)).collect();
    targets.sort_by(f64::total_cmp);
    targets
        .into_iter()
        .map(|target| (target, rng.gen_range(0..10u8)))
        .collect()
}

/// How far the saved state says the sync has come, in `[0, 1]`: the share of the
/// reference run's writes (identifies and events) the saved state records as confirmed, or
/// 1 once a run completed. This, not what customer.io holds, predicts what the next run
/// still sends (writes confirmed but not yet saved are sent again).
fn progress(env: &Env, reference: &Reference) -> f64 {
    match ciosync::state::load(&env.data_dir()) {
        Ok(Some(state)) if state.run_in_progress.is_none() && state.watermark.is_some() => 1.0,
        Ok(Some(state)) => {
            let events: u64 = state
                .applications
                .values()
                .map(|app| {
                    app.count
                        .to_array()
                        .iter()
                        .map(|&n| u64::from(n))
                        .sum::<u64>()
                })
                .sum();
            let confirmed = state.people.len() as u64 + events;
            let total = (reference.content.profiles.len() + reference.content.events.len()) as u64;
            (confirmed as f64 / total.max(1) as f64).min(1.0)
        }
        Ok(None) => 0.0,
        Err(e) => panic!("the state does not load after a kill: {e}"),
    }
}

/// The kill moment for a process that starts at `done` progress and should stop near
/// `target`, by `mode` (0-3 time, 4-7 progress, 8-9 checkpoint).
fn kill_moment(
    rng: &mut StdRng,
    reference: &Reference,
    done: f64,
    target: f64,
    mode: u8,
) -> KillAt {
    let ahead = (target - done).max(0.0);
    if done >= 1.0 {
        // Once a run has completed, later runs only read and plan: a run that changes
        // nothing does not save while its watermark is fresh, so a kill at a save would
        // never land. Kill them while they read.
        return KillAt::Elapsed(rng.gen_range(Duration::ZERO..reference.rerun.max(POLL)));
    }
    let write_phase = reference.duration.saturating_sub(reference.read_phase);
    match mode {
        // Some time kills land before any write: reading GIS, planning, the first save.
        0 => KillAt::Elapsed(rng.gen_range(Duration::ZERO..reference.read_phase.max(POLL))),
        1..=3 => {
            let delay = reference.read_phase + write_phase.mul_f64(ahead);
            // Never beyond the expected end, so the process rarely completes first.
            let jitter = rng.gen_range(0.6..1.0);
            KillAt::Elapsed(delay.mul_f64(jitter))
        }
        4..=7 => {
            let n = (reference.writes as f64 * ahead).round() as usize;
            KillAt::Writes((n.max(1) + rng.gen_range(0..2)).min(reference.writes))
        }
        _ => KillAt::Checkpoint {
            skip: rng.gen_range(0..2),
        },
    }
}

/// Kills and reruns the binary until `params.kills` kill points have landed, then runs it
/// to completion; returns the figures and the env for further checks.
fn crash_experiment(params: &Params, reference: &Reference) -> (Figures, Env) {
    let started = Instant::now();
    let env = crash_env(params);
    let salt = match params.api {
        Api::V1 => 0x7631,
        Api::Batch => 0xba7c,
    };
    let mut rng = StdRng::seed_from_u64(params.seed ^ salt);
    let mut figures = Figures::default();
    let plan = schedule(&mut rng, params.kills);
    let mut next = 0;
    // A process that completes before its kill point leaves the point unused; it is tried
    // again on the next process, so a few more runs than kill points may be needed.
    let max_runs = params.kills * 3 + 10;
    while figures.kills_landed < params.kills {
        assert!(
            figures.runs < max_runs,
            "{} runs for {} kill points: {figures:?}",
            figures.runs,
            params.kills
        );
        let (target, mode) = plan[next.min(plan.len() - 1)];
        let done = progress(&env, reference);
        let kill_at = kill_moment(&mut rng, reference, done, target, mode);
        figures.runs += 1;
        let (ended, stderr_path) = run_until(&env, figures.runs, kill_at);
        if std::env::var_os("CIOSYNC_CRASH_TRACE").is_some() {
            eprintln!(
                "run {}: progress {done:.3} target {target:.3} {kill_at:?} -> {ended:?}",
                figures.runs
            );
        }
        match ended {
            Ended::Killed => {
                figures.kills_landed += 1;
                if figures.completed_before_kill == 0 {
                    figures.kills_before_completion += 1;
                }
                match kill_at {
                    KillAt::Elapsed(_) => figures.kills_by_time += 1,
                    KillAt::Writes(_) => figures.kills_by_progress += 1,
                    KillAt::Checkpoint { .. } => figures.kills_at_checkpoint += 1,
                }
                next += 1;
            }
            Ended::Exited(code) => {
                assert_eq!(
                    code,
                    0,
                    "run {} after a kill: {}",
                    figures.runs,
                    read_text(&stderr_path)
                );
                assert_eq!(read_text(&stderr_path), "", "run {}", figures.runs);
                figures.completed_before_kill += 1;
            }
        }
    }
    figures.leftover_temp_files = state_temp_files(&env.data_dir()).len();

    // Run to completion.
    figures.runs += 1;
    let (ended, stderr_path) = run_until(&env, figures.runs, KillAt::Elapsed(Duration::MAX));
    assert_eq!(
        ended,
        Ended::Exited(0),
        "the run after the last kill: {}",
        read_text(&stderr_path)
    );
    assert_eq!(read_text(&stderr_path), "", "the final run is silent");
    assert_eq!(
        state_temp_files(&env.data_dir()),
        Vec::<String>::new(),
        "the final run's saves removed the temp files killed saves left behind"
    );

    let end = content(&env.cio);
    let expected = &reference.content;
    let mut seen = BTreeSet::new();
    figures.duplicate_events_stored = end.events.iter().filter(|e| !seen.insert(*e)).count();
    let got: BTreeSet<&EventKey> = end.events.iter().collect();
    let want: BTreeSet<&EventKey> = expected.events.iter().collect();
    let profiles_lost = expected
        .profiles
        .iter()
        .filter(|(k, v)| end.profiles.get(*k) != Some(v))
        .count();
    figures.records_lost = profiles_lost + want.difference(&got).count();
    figures.records_extra = end
        .profiles
        .keys()
        .filter(|k| !expected.profiles.contains_key(*k))
        .count()
        + got.difference(&want).count();
    figures.duplicates_discarded = env.cio.duplicate_events();
    figures.elapsed = started.elapsed();
    (figures, env)
}

/// The assertions every crash experiment ends with.
fn assert_consistent(figures: &Figures, env: &Env, reference: &Reference, params: &Params) {
    let end = content(&env.cio);
    assert_eq!(figures.records_lost, 0, "{figures:?}");
    assert_eq!(figures.records_extra, 0, "{figures:?}");
    assert_eq!(figures.duplicate_events_stored, 0, "{figures:?}");
    assert_eq!(
        end.profiles, reference.content.profiles,
        "same profiles as one uninterrupted run"
    );
    assert_eq!(
        end.events, reference.content.events,
        "every event exactly once, none missing"
    );
    let ids: Vec<&Option<String>> = end.events.iter().map(|e| &e.2).collect();
    let unique: BTreeSet<&Option<String>> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "no event id stored twice");
    assert!(
        figures.kills_landed >= params.kills,
        "every kill point landed on a running process: {figures:?}"
    );

    // The state loads, and a further run has nothing to send.
    let state = ciosync::state::load(&env.data_dir())
        .expect("state.json loads after the crashes")
        .expect("state.json exists");
    assert!(state.pending_people.is_empty(), "nothing left pending");
    assert!(state.run_in_progress.is_none(), "the last run completed");
    env.cio.clear_requests();
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 0, "further run: {}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert_eq!(
        write_endpoint_requests(&env.cio),
        0,
        "a further run sends nothing"
    );
}

fn figures_line(params: &Params, reference: &Reference, figures: &Figures) -> String {
    format!(
        "crash figures: api={} people={} seed={} reference: {} profiles, {} events, {} writes, {:.2}s (GIS read {:.2}s) | kill points survived={} (time {}, progress {}, checkpoint {}; {} before the sync first completed) completed before kill={} runs needed={} records lost={} extra={} duplicate events stored={} duplicates discarded by the fake={} leftover temp files={} elapsed={:.1}s",
        params.api.config_value(),
        params.people,
        params.seed,
        reference.content.profiles.len(),
        reference.content.events.len(),
        reference.writes,
        reference.duration.as_secs_f64(),
        reference.read_phase.as_secs_f64(),
        figures.kills_landed,
        figures.kills_by_time,
        figures.kills_by_progress,
        figures.kills_at_checkpoint,
        figures.kills_before_completion,
        figures.completed_before_kill,
        figures.runs,
        figures.records_lost,
        figures.records_extra,
        figures.duplicate_events_stored,
        figures.duplicates_discarded,
        figures.leftover_temp_files,
        figures.elapsed.as_secs_f64(),
    )
}

fn crash_test(params: &Params) {
    let reference = reference(params);
    let (figures, env) = crash_experiment(params, &reference);
    eprintln!("{}", figures_line(params, &reference, &figures));
    assert!(
        figures.kills_by_time > 0 && figures.kills_by_progress > 0,
        "both ways of choosing a kill moment were used: {figures:?}"
    );
    assert_consistent(&figures, &env, &reference, params);
}

fn ci_params(api: Api) -> Params {
    Params {
        api,
        people: 600,
        kills: 20,
        seed: 4242,
        latency_probability: 0.2,
        latency: Duration::from_millis(3),
        batch_latency: Duration::from_millis(250),
    }
}

#[test]
fn sigkill_at_20_points_then_rerun_matches_an_uninterrupted_run_v1() {
    crash_test(&ci_params(Api::V1));
}

#[test]
fn sigkill_at_20_points_then_rerun_matches_an_uninterrupted_run_batch() {
    crash_test(&ci_params(Api::Batch));
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {text:?}")),
        Err(_) => default,
    }
}

/// The long version for outside CI: hundreds of kill points on more people.
/// `CIOSYNC_CRASH_KILLS` (default 300), `CIOSYNC_CRASH_PEOPLE` (default 3000),
/// `CIOSYNC_CRASH_SEED` (default 7), `CIOSYNC_CRASH_API` (`v1`, `batch` or `both`, the
/// default). Prints one figures line per API; the last line sums them up.
#[test]
#[ignore = "long: hundreds of kill points; run with --ignored --nocapture"]
fn crash_long() {
    let kills = env_number("CIOSYNC_CRASH_KILLS", 300usize);
    let people = env_number("CIOSYNC_CRASH_PEOPLE", 3000usize);
    let seed = env_number("CIOSYNC_CRASH_SEED", 7u64);
    let apis = match std::env::var("CIOSYNC_CRASH_API").as_deref() {
        Ok("v1") => vec![Api::V1],
        Ok("batch") => vec![Api::Batch],
        _ => vec![Api::V1, Api::Batch],
    };
    let mut total = Figures::default();
    let mut lines = Vec::new();
    for api in apis {
        let params = Params {
            api,
            people,
            kills,
            seed,
            latency_probability: 0.2,
            latency: Duration::from_millis(3),
            batch_latency: Duration::from_millis(250),
        };
        let reference = reference(&params);
        let (figures, env) = crash_experiment(&params, &reference);
        let line = figures_line(&params, &reference, &figures);
        println!("{line}");
        lines.push(line);
        assert_consistent(&figures, &env, &reference, &params);
        total.kills_landed += figures.kills_landed;
        total.runs += figures.runs;
        total.records_lost += figures.records_lost;
        total.duplicate_events_stored += figures.duplicate_events_stored;
        total.duplicates_discarded += figures.duplicates_discarded;
        total.elapsed += figures.elapsed;
    }
    println!(
        "crash long total: kill points survived={} records lost={} duplicate events stored={} duplicates discarded by the fake={} runs needed={} elapsed={:.1}s",
        total.kills_landed,
        total.records_lost,
        total.duplicate_events_stored,
        total.duplicates_discarded,
        total.runs,
        total.elapsed.as_secs_f64()
    );
}

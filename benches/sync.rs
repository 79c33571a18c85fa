//! The issue-5 benchmark: `cargo bench --bench sync`.
//!
//! Starts the built-in fakes in-process (fake GIS and fake customer.io, each with 20 ms of
//! injected latency per request), runs the release `ciosync run --json` against them for
//! three scenarios (first sync, no-change rerun, 1% change) at 1k, 10k and 50k people in
//! scope, replays the PHP connector's request pattern on the 1k data side by side, and
//! prints a markdown table that it also writes to `docs/benchmark.md`.
//!
//! Environment (all optional):
//! - `CIOSYNC_BENCH_SIZES=1000,10000` people in scope per scenario set (default
//!   `1000,10000,50000,200000`);
//! - `CIOSYNC_BENCH_REPLAY=0` skips the PHP replay;
//! - `CIOSYNC_BENCH_MILLION=1` adds a 1,000,000-people first sync and rerun (not for CI);
//! - `CIOSYNC_BENCH_MEMORY_LIMIT_MB=n` caps ciosync's address space (`ulimit -v`) in every
//!   run; the million-people runs are capped at 12 GiB unless this says otherwise;
//! - `CIOSYNC_BENCH_WRAPPER="heaptrack -o /tmp/ht"` runs ciosync under a profiler (the
//!   timings are then the profiler's, not ciosync's);
//! - `CIOSYNC_BENCH_OUT=path` writes the report there instead of `docs/benchmark.md`.
//!
//! Targets are reported (met or not), never asserted: the numbers depend on the machine.

#[path = "sync/php_replay.rs"]
mod php_replay;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::Utc;
use ciosync::fake::cio::{FakeCio, FakeCioOptions};
use ciosync::fake::faults::{Fault, FaultPlan, Trigger};
use ciosync::fake::gis::{FakeGis, FakeGisOptions};
use ciosync::summary::Summary;
use serde_json::json;

/// Injected on every request of both fakes.
const LATENCY: Duration = Duration::from_millis(20);
/// The LCs in scope; the fake spreads people over these and two more.
const HOME_LCS: [u64; 2] = [1337, 1338];
const ALL_LCS: [u64; 4] = [1337, 1338, 2001, 2002];
const PAGE_SIZE: u32 = 500;
/// Everything from this line on in the report file is kept when the benchmark rewrites it.
const KEEP_MARKER: &str = "<!-- Kept by the benchmark: notes written by hand below. -->";
/// The share of in-scope people changed for the "1% change" scenario (one in this many).
const CHANGE_EVERY: usize = 100;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it
    // and must not start a ten-minute benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        println!("benchmark skipped: run it with `cargo bench --bench sync`");
        return;
    }
    let sizes: Vec<usize> = std::env::var("CIOSYNC_BENCH_SIZES")
        .ok()
        .map(|s| {
            s.split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| p.trim().parse().expect("CIOSYNC_BENCH_SIZES: numbers"))
                .collect()
        })
        .unwrap_or_else(|| vec![1_000, 10_000, 50_000, 200_000]);
    let replay = std::env::var("CIOSYNC_BENCH_REPLAY").map_or(true, |v| v != "0");
    let million = std::env::var("CIOSYNC_BENCH_MILLION").is_ok_and(|v| v == "1");
    let memory_limit_mb: Option<u64> = std::env::var("CIOSYNC_BENCH_MEMORY_LIMIT_MB")
        .ok()
        .and_then(|v| v.parse().ok());

    let mut rows: Vec<Row> = Vec::new();
    let mut comparison: Option<Comparison> = None;
    for &size in &sizes {
        let mut bench = Bench::start(size);
        let first = bench.run_ciosync("first sync", memory_limit_mb);
        eprintln!("{}", first.line());
        if replay && size == sizes[0] {
            let report = bench.replay_php();
            comparison = Some(Comparison {
                ciosync: first.clone(),
                php: report,
            });
        }
        let rerun = bench.run_ciosync("no-change rerun", memory_limit_mb);
        eprintln!("{}", rerun.line());
        let changed = bench.change_one_percent();
        let mut change = bench.run_ciosync("1% change", memory_limit_mb);
        change.changed = changed;
        change.note = if change.note.is_empty() {
            format!("{} people, {} applications changed", changed.0, changed.1)
        } else {
            format!(
                "{} people, {} applications changed; {}",
                changed.0, changed.1, change.note
            )
        };
        eprintln!("{}", change.line());
        rows.extend([first, rerun, change]);
    }
    let mut million_rows = Vec::new();
    if million {
        // The cap keeps a run that would exhaust the shared machine from disturbing it.
        let limit_mb = memory_limit_mb.unwrap_or(12_288);
        let bench = Bench::start(1_000_000);
        let mut first = bench.run_ciosync("first sync", Some(limit_mb));
        first.note = format!(
            "address space capped at {limit_mb} MiB{}{}",
            if first.note.is_empty() { "" } else { "; " },
            first.note
        );
        eprintln!("{}", first.line());
        let completed = first.summary.exit_code == 0 && first.summary.started_at.is_some();
        million_rows.push(first);
        if completed {
            let rerun = bench.run_ciosync("no-change rerun", Some(limit_mb));
            eprintln!("{}", rerun.line());
            million_rows.push(rerun);
        }
        let (_, bench_peak) = ciosync::summary::resource_usage();
        eprintln!(
            "benchmark process (fakes) peak RSS: {} MiB",
            mib(bench_peak)
        );
    }

    let report = render(&rows, comparison.as_ref(), &million_rows);
    println!("{report}");
    let out = std::env::var_os("CIOSYNC_BENCH_OUT").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/benchmark.md"),
        PathBuf::from,
    );
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).expect("create the report's directory");
    }
    // Hand-written analysis below the marker survives a rerun.
    let kept = std::fs::read_to_string(&out)
        .ok()
        .and_then(|old| old.find(KEEP_MARKER).map(|at| old[at..].to_owned()))
        .unwrap_or_else(|| format!("{KEEP_MARKER}\n"));
    std::fs::write(&out, format!("{report}\n{kept}")).expect("write the report");
    eprintln!("written to {}", out.display());
}

/// Both fakes with one generated population, and a data dir with a config pointing at them.
struct Bench {
    gis: FakeGis,
    cio: FakeCio,
    dir: tempfile::TempDir,
    in_scope: Vec<u64>,
    /// Applications of the in-scope people, per the fake's own store.
    applications: u64,
}

impl Bench {
    /// Generates about `in_scope` people in the configured LCs (twice that in all).
    fn start(in_scope: usize) -> Bench {
        let generated = Instant::now();
        let gis = FakeGis::start(FakeGisOptions {
            people: in_scope * ALL_LCS.len() / HOME_LCS.len(),
            lcs: ALL_LCS.to_vec(),
            ..FakeGisOptions::default()
        })
        .expect("fake GIS starts");
        let cio = FakeCio::start(FakeCioOptions::default()).expect("fake customer.io starts");
        for faults in [gis.faults(), cio.faults()] {
            faults.set_plan(FaultPlan::seeded(5).rule(
                "*",
                Trigger::Always,
                Fault::Latency(LATENCY),
            ));
        }
        let mut people: Vec<u64> = HOME_LCS.iter().flat_map(|lc| gis.person_ids(*lc)).collect();
        people.sort_unstable();
        let applications = people
            .iter()
            .map(|id| gis.application_ids(*id).len() as u64)
            .sum();
        eprintln!(
            "generated {} people in scope ({} applications) in {:.1} s",
            people.len(),
            applications,
            generated.elapsed().as_secs_f64()
        );
        let bench = Bench {
            gis,
            cio,
            dir: tempfile::tempdir().expect("temp dir"),
            in_scope: people,
            applications,
        };
        bench.write_config();
        bench
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    fn write_config(&self) {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let text = format!(
            r#"data_dir = "{data}"

[gis]
endpoint = "{gis}"
home_lcs = [{lcs}]
page_size = {PAGE_SIZE}
request_timeout = "120s"
access_token = "{token}"

[customerio]
site_id = "{site}"
api_key = "{key}"
track_url = "{cio}"
api = "batch"
max_requests_per_second = 1000
request_timeout = "120s"

[safety]
time_budget = "120m"
"#,
            data = self.data_dir().display(),
            gis = self.gis.graphql_url(),
            lcs = HOME_LCS.map(|lc| lc.to_string()).join(", "),
            token = self.gis.static_token(),
            site = self.cio.site_id(),
            key = self.cio.api_key(),
            cio = self.cio.url(),
        );
        // Owner-only, so ciosync does not warn about secrets in a readable file.
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(self.config_path())
            .expect("create the config");
        file.write_all(text.as_bytes()).expect("write the config");
    }

    /// Runs the release binary once and measures it. With `memory_limit_mb`, the run gets
    /// that much address space at most (`ulimit -v`), so a run that would exhaust the
    /// machine fails instead of disturbing it.
    fn run_ciosync(&self, scenario: &str, memory_limit_mb: Option<u64>) -> Row {
        let gis_before = self.gis.requests().len();
        let cio_before = self.cio.requests().len();
        let config = self.config_path();
        let config = config.to_str().expect("utf-8 path");
        // An optional profiler in front (e.g. `heaptrack -o /tmp/ht`), then the binary.
        let mut argv: Vec<String> = std::env::var("CIOSYNC_BENCH_WRAPPER")
            .map(|w| w.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        argv.push(env!("CARGO_BIN_EXE_ciosync").to_owned());
        let mut command = match memory_limit_mb {
            Some(mb) => {
                let mut c = Command::new("sh");
                c.args([
                    "-c".to_owned(),
                    format!("ulimit -v {}; exec \"$0\" \"$@\"", mb * 1024),
                ]);
                c.args(&argv);
                c
            }
            None => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        command
            .args(["run", "--config", config, "--json"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        let cpu_before = own_cpu_seconds();
        let (output, watched, wall) = run_watched(&mut command);
        let fake_cpu = own_cpu_seconds() - cpu_before;
        let (summary, failure) = match serde_json::from_slice::<Summary>(&output.stdout) {
            Ok(summary) => {
                let failure = (summary.exit_code != 0).then(|| {
                    format!(
                        "exit {} ({}): {}",
                        summary.exit_code,
                        summary.outcome,
                        summary.error.clone().unwrap_or_default()
                    )
                });
                (summary, failure)
            }
            Err(e) => {
                // No summary: keep what /proc showed while the process ran.
                let summary = Summary {
                    cpu_seconds: watched.cpu_seconds,
                    peak_rss_bytes: watched.peak_rss_bytes,
                    exit_code: u8::MAX,
                    ..Summary::default()
                };
                let stderr = String::from_utf8_lossy(&output.stderr);
                let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
                (
                    summary,
                    Some(format!(
                        "no summary ({e}); status {}; stderr ends: {}",
                        output.status,
                        tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                    )),
                )
            }
        };
        if let Some(failure) = &failure {
            eprintln!("warning: {scenario} did not complete cleanly: {failure}");
        }
        let gis_log = &self.gis.requests()[gis_before..];
        let cio_log = &self.cio.requests()[cio_before..];
        Row {
            scenario: scenario.to_owned(),
            in_scope: self.in_scope.len() as u64,
            applications: self.applications,
            wall,
            fake_cpu,
            fake_gis_requests: gis_log.len() as u64,
            fake_cio_requests: cio_log.len() as u64,
            fake_cio_bytes: cio_log.iter().map(|r| r.body_bytes as u64).sum(),
            fake_cio_writes: cio_log.iter().filter(|r| r.method != "GET").count() as u64,
            state_bytes: std::fs::metadata(self.data_dir().join("state.json"))
                .map_or(0, |m| m.len()),
            summary,
            changed: (0, 0),
            note: failure.unwrap_or_default(),
        }
    }

    /// Changes one in-scope person in a hundred (a profile field) and moves one of their
    /// applications a step on, stamped with the real clock so incremental reads see them.
    /// Returns (people changed, applications changed).
    fn change_one_percent(&mut self) -> (u64, u64) {
        self.gis.set_clock(Utc::now());
        let (mut people, mut applications) = (0, 0);
        for id in self.in_scope.iter().step_by(CHANGE_EVERY) {
            if self
                .gis
                .update_person(*id, json!({ "last_name": format!("Changed{id}") }))
            {
                people += 1;
            }
            for app in self.gis.application_ids(*id) {
                let status = self
                    .gis
                    .application_json(app)
                    .and_then(|a| a["status"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                let next = match status.as_str() {
                    "open" | "applied" => "accepted",
                    "matched" | "accepted" => "approved",
                    "approved" => "realized",
                    "realized" => "finished",
                    "finished" => "completed",
                    _ => continue,
                };
                if self.gis.set_application_status(app, next) {
                    applications += 1;
                }
                break;
            }
        }
        (people, applications)
    }

    /// The PHP connector's first run, on these fakes.
    fn replay_php(&self) -> php_replay::ReplayReport {
        let gis_before = self.gis.requests().len();
        let cio_before = self.cio.requests().len();
        let report = php_replay::replay_first_run(php_replay::Target {
            graphql_url: self.gis.graphql_url(),
            gis_token: self.gis.static_token(),
            cio_url: self.cio.url(),
            site_id: self.cio.site_id(),
            api_key: self.cio.api_key(),
            home_lcs: HOME_LCS.to_vec(),
            page_size: PAGE_SIZE,
        });
        let gis_log = self.gis.requests().len() - gis_before;
        let cio_log = self.cio.requests().len() - cio_before;
        eprintln!(
            "PHP replay: {:.1} s, {} GIS + {} customer.io requests (fakes saw {} + {})",
            report.wall.as_secs_f64(),
            report.gis_requests,
            report.cio_requests,
            gis_log,
            cio_log
        );
        report
    }
}

/// One measured ciosync run.
#[derive(Debug, Clone)]
struct Row {
    scenario: String,
    in_scope: u64,
    applications: u64,
    wall: Duration,
    /// CPU seconds the benchmark process (both fakes) used during the run.
    fake_cpu: f64,
    summary: Summary,
    fake_gis_requests: u64,
    fake_cio_requests: u64,
    fake_cio_bytes: u64,
    /// Requests that write (everything but the region lookup).
    fake_cio_writes: u64,
    state_bytes: u64,
    /// People and applications changed in the fake before this run.
    changed: (u64, u64),
    note: String,
}

impl Row {
    fn line(&self) -> String {
        format!(
            "{} people, {}: {:.2} s wall, {:.2} s CPU, {} MiB, GIS {}, cio {} ({} B), exit {}",
            self.in_scope,
            self.scenario,
            self.wall.as_secs_f64(),
            self.summary.cpu_seconds,
            mib(self.summary.peak_rss_bytes),
            self.summary.gis_requests,
            self.summary.cio_requests,
            self.summary.cio_bytes_sent,
            self.summary.exit_code
        )
    }

    fn total_requests(&self) -> u64 {
        self.summary.gis_requests + self.summary.cio_requests
    }
}

struct Comparison {
    ciosync: Row,
    php: php_replay::ReplayReport,
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// "a / b", or just "a" when both counts agree.
fn pair(summary: u64, fake: u64) -> String {
    if summary == fake {
        summary.to_string()
    } else {
        format!("{summary} / {fake}")
    }
}

fn render(rows: &[Row], comparison: Option<&Comparison>, million: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# ciosync benchmark (issue 5)\n");
    let _ = writeln!(
        out,
        "Generated by `cargo bench --bench sync` on {} UTC. Both fakes run in the benchmark \
         process with {} ms of injected latency on every request; ciosync is the release binary \
         (`run --json`, `api = \"batch\"`, `page_size = {PAGE_SIZE}`, \
         `max_requests_per_second = 1000`), sharing the machine with the fakes.\n",
        Utc::now().format("%Y-%m-%d %H:%M"),
        LATENCY.as_millis()
    );
    let _ = writeln!(out, "## Machine\n\n{}\n", machine());
    let _ = writeln!(
        out,
        "## Command\n\n```\ncargo bench --bench sync\n# the 1,000,000-people run too (not for CI):\nCIOSYNC_BENCH_MILLION=1 cargo bench --bench sync\n```\n"
    );
    if !rows.is_empty() {
        let _ = writeln!(out, "## Results\n");
        let _ = writeln!(
            out,
            "CPU s: ciosync's own (user + system, from its summary); fakes CPU s: the benchmark \
             process, i.e. both fakes serving that run, on the same 2 cores. Requests and bytes: \
             the run summary's count, then the fakes' own request log when it differs. Bytes are \
             customer.io request bodies. State: `state.json` after the run.\n"
        );
        table(&mut out, rows);
    }
    if let Some(c) = comparison {
        php_section(&mut out, c);
    }
    targets(&mut out, rows);
    if !million.is_empty() {
        let _ = writeln!(out, "\n## 1,000,000 people\n");
        table(&mut out, million);
    }
    memory_targets(&mut out, rows.iter().chain(million));
    out
}

/// Issue 12's memory targets: a first sync peaks at no more than 64 MiB plus 1 KiB per
/// person in scope; a no-change run at no more than 40 MiB at 50,000 people, and 400 MiB
/// and 3 s wall at a million.
fn memory_targets<'r>(out: &mut String, rows: impl Iterator<Item = &'r Row>) {
    const MIB: u64 = 1 << 20;
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let _ = writeln!(
        out,
        "\n## Memory targets (issue 12)\n\nFirst sync: peak RSS <= 64 MiB + 1 KiB per person in \
         scope. No-change run: <= 40 MiB at 50,000 people; <= 400 MiB and <= 3 s wall at \
         1,000,000.\n"
    );
    for r in rows {
        let peak = r.summary.peak_rss_bytes;
        let (limit, wall_limit) = match r.scenario.as_str() {
            "first sync" => (64 * MIB + 1024 * r.in_scope, None),
            "no-change rerun" if r.in_scope >= 900_000 => (400 * MIB, Some(Duration::from_secs(3))),
            "no-change rerun" if (45_000..=55_000).contains(&r.in_scope) => (40 * MIB, None),
            _ => continue,
        };
        let wall_ok = wall_limit.is_none_or(|w| r.wall <= w);
        let _ = writeln!(
            out,
            "- {} people, {}: {} MiB peak (limit {} MiB){}: {}.",
            r.in_scope,
            r.scenario,
            mib(peak),
            mib(limit),
            wall_limit.map_or(String::new(), |w| format!(
                ", {:.2} s wall (limit {} s)",
                r.wall.as_secs_f64(),
                w.as_secs()
            )),
            verdict(peak <= limit && wall_ok)
        );
    }
}

fn table(out: &mut String, rows: &[Row]) {
    let _ = writeln!(
        out,
        "| people in scope | applications | scenario | wall s | CPU s | fakes CPU s | peak RSS MiB | bytes per person at peak | GIS requests | customer.io requests | bytes sent | identifies | events | state MiB | exit |"
    );
    let _ = writeln!(
        out,
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let s = &r.summary;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.in_scope,
            r.applications,
            r.scenario,
            r.wall.as_secs_f64(),
            s.cpu_seconds,
            r.fake_cpu,
            mib(s.peak_rss_bytes),
            s.peak_rss_bytes / r.in_scope.max(1),
            pair(s.gis_requests, r.fake_gis_requests),
            pair(s.cio_requests, r.fake_cio_requests),
            pair(s.cio_bytes_sent, r.fake_cio_bytes),
            s.identifies_sent,
            s.events_sent,
            mib(r.state_bytes),
            if s.exit_code == u8::MAX {
                "killed".to_owned()
            } else {
                s.exit_code.to_string()
            }
        );
    }
    let notes: Vec<String> = rows
        .iter()
        .filter(|r| !r.note.is_empty())
        .map(|r| format!("- {} people, {}: {}", r.in_scope, r.scenario, r.note))
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(out, "\n{}", notes.join("\n"));
    }
}

fn php_section(out: &mut String, c: &Comparison) {
    let ours = &c.ciosync;
    let php = &c.php;
    let php_total = php.gis_requests + php.cio_requests;
    let _ = writeln!(
        out,
        "\n## Side by side with the PHP connector's request pattern ({} people)\n",
        ours.in_scope
    );
    let _ = writeln!(
        out,
        "The PHP replay (benches/sync/php_replay.rs) runs on the same fakes and latency, right \
         after ciosync's first sync: strictly sequential; people pages; per person their \
         applications; per application past `applied` three GIS round trips (add the bot as EP \
         manager, read the application, remove the bot: `person`, `getApplication`, `person`); \
         a v1 PUT per person and a v1 POST per event (one per step up to the current status). \
         It read {} applications, {} of them past `applied`, and sent {} events.\n",
        php.applications, php.applications_past_applied, php.events
    );
    let _ = writeln!(
        out,
        "| first sync | wall s | GIS requests | customer.io requests | all requests | bytes sent |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        out,
        "| ciosync | {:.2} | {} | {} | {} | {} |",
        ours.wall.as_secs_f64(),
        ours.summary.gis_requests,
        ours.summary.cio_requests,
        ours.total_requests(),
        ours.summary.cio_bytes_sent
    );
    let _ = writeln!(
        out,
        "| PHP pattern | {:.2} | {} | {} | {} | {} |",
        php.wall.as_secs_f64(),
        php.gis_requests,
        php.cio_requests,
        php_total,
        php.cio_bytes_sent
    );
    let _ = writeln!(
        out,
        "| ratio (PHP / ciosync) | {:.1}x | {:.1}x | {:.1}x | {:.1}x | {:.1}x |",
        php.wall.as_secs_f64() / ours.wall.as_secs_f64().max(1e-9),
        ratio(php.gis_requests, ours.summary.gis_requests),
        ratio(php.cio_requests, ours.summary.cio_requests),
        ratio(php_total, ours.total_requests()),
        ratio(php.cio_bytes_sent, ours.summary.cio_bytes_sent)
    );
}

fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / (b.max(1)) as f64
}

/// The issue's targets, checked on the measured rows (reported, never asserted).
fn targets(out: &mut String, rows: &[Row]) {
    let find = |size_at_least: u64, scenario: &str| {
        rows.iter()
            .filter(|r| r.scenario == scenario && r.in_scope >= size_at_least * 9 / 10)
            .min_by_key(|r| r.in_scope)
    };
    let _ = writeln!(out, "\n## Targets\n");
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    match find(50_000, "first sync") {
        Some(r) => {
            let s = &r.summary;
            let _ = writeln!(
                out,
                "- First sync of {} people / {} applications: {:.2} s wall (target < 15 s: {}), \
                 {} MiB peak RSS (< 400 MB: {}), state {} MiB (< 15 MB: {}).",
                r.in_scope,
                s.applications_seen,
                r.wall.as_secs_f64(),
                verdict(r.wall < Duration::from_secs(15)),
                mib(s.peak_rss_bytes),
                verdict(s.peak_rss_bytes < 400_000_000),
                mib(r.state_bytes),
                verdict(r.state_bytes < 15_000_000)
            );
        }
        None => {
            let _ = writeln!(out, "- First sync of 50,000 people: not run.");
        }
    }
    match find(50_000, "no-change rerun") {
        Some(r) => {
            let s = &r.summary;
            let _ = writeln!(
                out,
                "- No-change rerun on {} people: {} GIS requests (<= 4: {}), {} customer.io \
                 writes (none: {}), {:.2} s wall (< 2 s: {}); read was {}.",
                r.in_scope,
                s.gis_requests,
                verdict(s.gis_requests <= 4),
                r.fake_cio_writes,
                verdict(r.fake_cio_writes == 0 && s.identifies_sent + s.events_sent == 0),
                r.wall.as_secs_f64(),
                verdict(r.wall < Duration::from_secs(2)),
                if s.full_read { "full" } else { "incremental" }
            );
        }
        None => {
            let _ = writeln!(out, "- No-change rerun on 50,000 people: not run.");
        }
    }
    // Cost grows with the changes, not the population: an incremental read of the changed
    // records needs about one page per page of changed people and of changed applications
    // (doubled for slack, plus 4 for the fixed queries), whatever the population.
    let changes: Vec<&Row> = rows.iter().filter(|r| r.scenario == "1% change").collect();
    if !changes.is_empty() {
        let _ = writeln!(
            out,
            "- 1% change (rule: GIS requests at most 4 + 2 x (pages of changed people + pages of \
             changed applications), at {PAGE_SIZE} a page, independent of the population):"
        );
        let mut all_ok = true;
        for r in changes {
            let first = rows
                .iter()
                .find(|x| x.scenario == "first sync" && x.in_scope == r.in_scope);
            let Some(first) = first else {
                continue;
            };
            let (people, applications) = r.changed;
            let pages =
                people.div_ceil(u64::from(PAGE_SIZE)) + applications.div_ceil(u64::from(PAGE_SIZE));
            let allowed = 4 + 2 * pages;
            let ok = r.summary.gis_requests <= allowed;
            all_ok &= ok;
            let _ = writeln!(
                out,
                "  - {} people ({people} people and {applications} applications changed): {} GIS \
                 requests (allowed {allowed}; first sync {}), {} customer.io requests, {:.2} s \
                 wall ({:.0}% of the first sync's): {}.",
                r.in_scope,
                r.summary.gis_requests,
                first.summary.gis_requests,
                r.summary.cio_requests,
                r.wall.as_secs_f64(),
                100.0 * r.wall.as_secs_f64() / first.wall.as_secs_f64().max(1e-9),
                verdict(ok)
            );
        }
        let _ = writeln!(out, "  - Overall: {}.", verdict(all_ok));
    }
}

/// CPU model, cores and memory, from /proc.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or_else(
            || "unknown".to_owned(),
            |kb| format!("{:.1} GiB", kb as f64 / (1024.0 * 1024.0)),
        );
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    format!(
        "- CPU: {cpu}\n- cores (`nproc`): {cores}\n- memory (`free -h` total): {memory}\n- load average when the report was written: {load} (the machine is shared, so timings are noisy; compare rows of one run)"
    )
}

/// CPU seconds (user + system) this process has used: the fakes' work, since the benchmark
/// itself only waits while ciosync runs.
fn own_cpu_seconds() -> f64 {
    ciosync::summary::resource_usage().0
}

/// What `/proc/<pid>` last showed of a child: its CPU time and peak RSS, for runs that die
/// before printing their summary.
#[derive(Debug, Default, Clone, Copy)]
struct Watched {
    cpu_seconds: f64,
    peak_rss_bytes: u64,
}

/// Runs `command` to its end with stdout and stderr captured, while another thread samples
/// its /proc entry every 50 ms. Returns the output, the samples and the wall time from spawn
/// to exit (the sampling does not delay the wait).
fn run_watched(command: &mut Command) -> (std::process::Output, Watched, Duration) {
    use std::io::Read;
    use std::process::Stdio;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ciosync starts");
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let done = Arc::new(AtomicBool::new(false));
    let watched = Arc::new(Mutex::new(Watched::default()));
    let watcher = {
        let (done, watched) = (Arc::clone(&done), Arc::clone(&watched));
        let proc_dir = PathBuf::from(format!("/proc/{}", child.id()));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let sample = sample_proc(&proc_dir);
                if let Some(sample) = sample {
                    let mut w = watched.lock().expect("watch lock");
                    w.peak_rss_bytes = w.peak_rss_bytes.max(sample.peak_rss_bytes);
                    w.cpu_seconds = w.cpu_seconds.max(sample.cpu_seconds);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let status = child.wait().expect("wait for ciosync");
    let wall = started.elapsed();
    done.store(true, Ordering::Relaxed);
    watcher.join().expect("watcher thread");
    let output = std::process::Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    };
    let watched = *watched.lock().expect("watch lock");
    (output, watched, wall)
}

/// CPU seconds and peak RSS of a running process, from its /proc entry.
fn sample_proc(proc_dir: &Path) -> Option<Watched> {
    let status = std::fs::read_to_string(proc_dir.join("status")).ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())?;
    let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(Watched {
        // USER_HZ is 100 on Linux.
        cpu_seconds: ticks / 100.0,
        peak_rss_bytes: kb * 1024,
    })
}

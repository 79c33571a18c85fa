//! The run summary (SPEC 6): what one run did, for `-v`, `--json`, `last_run.json`,
//! `ciosync status` and the Prometheus textfile.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How a run ended: `ok`, `partial`, `dry_run`, or the class of error that stopped it. The
/// names are part of `last_run.json` and the Prometheus textfile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Completed; nothing rejected. Also what a summary that records no run says.
    #[default]
    Ok,
    /// Completed, but customer.io rejected some records (exit 1).
    Partial,
    /// A dry run completed.
    DryRun,
    /// A configuration problem: invalid file, wrong region, setup mismatch.
    ConfigError,
    /// A large-change guard refused the run.
    LargeChangeRefused,
    /// Another run held the lock.
    Locked,
    /// The run reached its time budget; progress is saved.
    TimeBudget,
    /// A file of the data dir is unusable.
    StateError,
    /// GIS or customer.io refused the credentials.
    AuthError,
    /// GIS or customer.io kept failing.
    Unavailable,
}

impl RunOutcome {
    /// The name as written in `last_run.json` and the metrics.
    pub fn name(self) -> &'static str {
        match self {
            RunOutcome::Ok => "ok",
            RunOutcome::Partial => "partial",
            RunOutcome::DryRun => "dry_run",
            RunOutcome::ConfigError => "config_error",
            RunOutcome::LargeChangeRefused => "large_change_refused",
            RunOutcome::Locked => "locked",
            RunOutcome::TimeBudget => "time_budget",
            RunOutcome::StateError => "state_error",
            RunOutcome::AuthError => "auth_error",
            RunOutcome::Unavailable => "unavailable",
        }
    }
}

impl std::fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A record customer.io refused for good in this run; retried next run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub person_id: u64,
    /// `identify` or the event name.
    pub write: String,
    /// customer.io's message.
    pub reason: String,
}

/// Everything SPEC 6 asks a run to report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub outcome: RunOutcome,
    pub exit_code: u8,
    /// What stopped the run early, if anything.
    pub error: Option<String>,
    pub dry_run: bool,
    pub full_read: bool,
    pub people_seen: u64,
    pub applications_seen: u64,
    /// People with at least one write planned.
    pub people_changed: u64,
    pub identifies_sent: u64,
    pub events_sent: u64,
    pub events_by_name: BTreeMap<String, u64>,
    pub skipped: BTreeMap<String, u64>,
    pub unknown_statuses: BTreeMap<String, u64>,
    pub truncated_values: u64,
    pub people_left_scope: u64,
    /// Profiles deleted because their person left or GIS no longer has them
    /// (`scope.on_leave = "delete"`, SPEC 8.3).
    #[serde(default)]
    pub people_deleted: u64,
    /// Removals of `ciosync forget` this run finished (a kill had cut them short, SPEC 8.2).
    #[serde(default)]
    pub people_forgotten: u64,
    pub rejected: Vec<Rejection>,
    /// A time-budget stop the next run cannot get past: a full read that stopped before
    /// customer.io confirmed any of its writes (a stopped full read starts again from the
    /// first page). Monitoring reports it as a failure, unlike other budget stops.
    #[serde(default)]
    pub budget_too_short: bool,
    /// People whose writes are not all confirmed yet (retried next run).
    pub pending_people: u64,
    pub gis_requests: u64,
    pub cio_requests: u64,
    pub retries: u64,
    pub cio_bytes_sent: u64,
    pub token_refreshes: u64,
    /// How long the slowest customer.io request took once the rate limiter let it go, in
    /// milliseconds (none sent: absent). The next run paces its first requests by it.
    pub cio_slowest_request_ms: Option<u64>,
    /// CPU time (user + system) the process used, in seconds (Linux; 0 elsewhere).
    pub cpu_seconds: f64,
    /// Peak resident memory of the process, in bytes (Linux; 0 elsewhere).
    pub peak_rss_bytes: u64,
}

impl Summary {
    /// Whether customer.io confirmed any write of this run.
    pub fn confirmed_any_write(&self) -> bool {
        self.identifies_sent + self.events_sent + self.people_deleted + self.people_forgotten > 0
    }
}

/// The last run's summary (`last_run.json`), if there is a readable one.
pub fn read_last_run(data_dir: &std::path::Path) -> Option<Summary> {
    let bytes = std::fs::read(data_dir.join(crate::data_dir::LAST_RUN_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// CPU seconds and peak RSS of this process so far, from `/proc/self` (Linux; 0 for what
/// cannot be read, as elsewhere).
pub fn resource_usage() -> (f64, u64) {
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| peak_rss_from_status(&status))
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| cpu_seconds_from_stat(&stat))
        .unwrap_or(0.0);
    (cpu, peak)
}

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`): 100 on every Linux platform
/// ciosync targets.
const USER_HZ: f64 = 100.0;

/// Peak resident memory in bytes, from the text of `/proc/<pid>/status`: its `VmHWM:` line,
/// which the kernel gives in kB. `None` without a readable one (kernel threads have none).
pub fn peak_rss_from_status(status: &str) -> Option<u64> {
    let value = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    let kb: u64 = value.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

/// CPU seconds (user + system) from the text of `/proc/<pid>/stat`: its fields 14 and 15,
/// `utime` and `stime` in clock ticks. The command name (field 2, in parentheses) may hold
/// spaces and parentheses itself, so fields are counted from the last `)`. `None` when a
/// field is missing or not a number.
pub fn cpu_seconds_from_stat(stat: &str) -> Option<f64> {
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (the state), so field n is at index n - 3.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

impl Summary {
    /// Several lines for a person reading `-v` output.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let when = |t: Option<DateTime<Utc>>| t.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339());
        let _ = writeln!(out, "outcome: {} (exit {})", self.outcome, self.exit_code);
        if let Some(error) = &self.error {
            let _ = writeln!(out, "error: {error}");
        }
        let _ = writeln!(
            out,
            "started: {}  ended: {}",
            when(self.started_at),
            when(self.ended_at)
        );
        let _ = writeln!(
            out,
            "read: {} people, {} applications ({} read)",
            self.people_seen,
            self.applications_seen,
            if self.full_read {
                "full"
            } else {
                "incremental"
            }
        );
        let _ = writeln!(
            out,
            "sent: {} identifies, {} events to {} changed people",
            self.identifies_sent, self.events_sent, self.people_changed
        );
        for (name, n) in &self.events_by_name {
            let _ = writeln!(out, "  {name}: {n}");
        }
        let map_line = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.skipped.is_empty() {
            let _ = writeln!(out, "skipped: {}", map_line(&self.skipped));
        }
        if !self.unknown_statuses.is_empty() {
            let _ = writeln!(
                out,
                "unknown statuses: {}",
                map_line(&self.unknown_statuses)
            );
        }
        if self.truncated_values > 0 {
            let _ = writeln!(out, "values cut to 1000 bytes: {}", self.truncated_values);
        }
        if self.people_left_scope > 0 {
            let _ = writeln!(
                out,
                "people who left the configured LCs: {}",
                self.people_left_scope
            );
        }
        if self.people_deleted > 0 {
            let _ = writeln!(
                out,
                "profiles deleted (scope.on_leave = \"delete\"): {}",
                self.people_deleted
            );
        }
        if self.people_forgotten > 0 {
            let _ = writeln!(
                out,
                "forgotten ids whose removal this run finished: {}",
                self.people_forgotten
            );
        }
        for r in &self.rejected {
            let _ = writeln!(
                out,
                "rejected: person {} {}: {}",
                r.person_id, r.write, r.reason
            );
        }
        if self.pending_people > 0 {
            let _ = writeln!(
                out,
                "pending (retried next run): {} people",
                self.pending_people
            );
        }
        let _ = writeln!(
            out,
            "requests: GIS {}, customer.io {} ({} bytes), retries {}",
            self.gis_requests, self.cio_requests, self.cio_bytes_sent, self.retries
        );
        let _ = writeln!(
            out,
            "resources: {:.2} s CPU, {} MiB peak memory",
            self.cpu_seconds,
            self.peak_rss_bytes / (1024 * 1024)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/<pid>/stat` of a process named `comm` that used `utime` and `stime` ticks
    /// (the other numbers are from a real process).
    fn stat(comm: &str, utime: u64, stime: u64) -> String {
        format!(
            "12791 ({comm}) R 12787 12787 8792 0 -1 4194304 100 0 0 0 {utime} {stime} 0 0 20 0 \
             1 0 166844 3133440 377 18446744073709551615 94463107141632 94463107161513 0 0 0 \
             0 0 0 0 0 0 17 1 0 0 0 0 0\n"
        )
    }

    #[test]
    fn cpu_seconds_are_user_plus_system_ticks_from_stat() {
        assert_eq!(cpu_seconds_from_stat(&stat("ciosync", 250, 50)), Some(3.0));
        assert_eq!(cpu_seconds_from_stat(&stat("ciosync", 0, 0)), Some(0.0));
        assert_eq!(cpu_seconds_from_stat(&stat("ciosync", 7, 0)), Some(0.07));
        // Names (up to 15 bytes) with spaces, parentheses and numbers: splitting the line on
        // whitespace, or at the first `)`, would shift every field.
        assert_eq!(
            cpu_seconds_from_stat(&stat("a (b) 1 2 (c)", 250, 50)),
            Some(3.0)
        );
        assert_eq!(
            cpu_seconds_from_stat(&stat(") 1 2 3 4 5 6", 250, 50)),
            Some(3.0)
        );
        assert_eq!(cpu_seconds_from_stat(&stat("x)", 250, 50)), Some(3.0));
        assert_eq!(cpu_seconds_from_stat(&stat("", 250, 50)), Some(3.0));
    }

    #[test]
    fn cpu_seconds_of_a_broken_stat_are_none() {
        let full = stat("ciosync", 250, 50);
        // Cut after utime, so stime (field 15) is missing.
        let fields: Vec<&str> = full.split_whitespace().collect();
        let cut = fields[..14].join(" ");
        assert_eq!(cpu_seconds_from_stat(&cut), None, "{cut}");
        assert_eq!(cpu_seconds_from_stat(&fields[..15].join(" ")), Some(3.0));
        assert_eq!(cpu_seconds_from_stat(""), None);
        assert_eq!(
            cpu_seconds_from_stat("12791 ciosync R 1 2 3"),
            None,
            "no parentheses"
        );
        assert_eq!(cpu_seconds_from_stat(&full.replace(" 250 ", " x ")), None);
    }

    #[test]
    fn peak_rss_is_the_vm_hwm_line_of_status() {
        let status = "Name:\tciosync\nVmPeak:\t  123456 kB\nVmHWM:\t    1956 kB\n\
                      VmRSS:\t    1900 kB\nThreads:\t1\n";
        assert_eq!(peak_rss_from_status(status), Some(1956 * 1024));
        assert_eq!(peak_rss_from_status("VmHWM: 0 kB"), Some(0));
        assert_eq!(
            peak_rss_from_status("Name:\tkthreadd\nThreads:\t1\n"),
            None,
            "kernel threads have no VmHWM"
        );
        assert_eq!(peak_rss_from_status(""), None);
        assert_eq!(peak_rss_from_status("VmHWM:\t\n"), None, "no value");
        assert_eq!(peak_rss_from_status("VmHWM:\t 12 MB\n"), None, "not kB");
        assert_eq!(peak_rss_from_status("VmHWM:\t lots kB\n"), None);
        assert_eq!(
            peak_rss_from_status("VmRSS:\t 1900 kB\n"),
            None,
            "another line is not the peak"
        );
    }

    /// The live reading of this test process: CPU time above zero and a peak above 1 MiB.
    #[test]
    fn resource_usage_is_measured_on_linux() {
        if !cfg!(target_os = "linux") {
            return;
        }
        // Work until this process has used CPU time the kernel counts (it counts in 10 ms
        // ticks, so a fresh process may read 0); a reading that stays 0 fails the test.
        let started = std::time::Instant::now();
        let mut sum = 0u64;
        let (cpu, peak) = loop {
            for i in 0..100_000u64 {
                sum = std::hint::black_box(sum.wrapping_add(i * i));
            }
            let (cpu, peak) = resource_usage();
            if cpu > 0.0 || started.elapsed() > std::time::Duration::from_secs(20) {
                break (cpu, peak);
            }
        };
        assert!(cpu > 0.0, "CPU time of a busy process: {cpu}");
        assert!(
            peak > 1024 * 1024,
            "a test process uses more than 1 MiB: {peak}"
        );
    }

    #[test]
    fn outcome_names_are_the_serialized_names() {
        let all = [
            RunOutcome::Ok,
            RunOutcome::Partial,
            RunOutcome::DryRun,
            RunOutcome::ConfigError,
            RunOutcome::LargeChangeRefused,
            RunOutcome::Locked,
            RunOutcome::TimeBudget,
            RunOutcome::StateError,
            RunOutcome::AuthError,
            RunOutcome::Unavailable,
        ];
        for outcome in all {
            let json = serde_json::to_value(outcome).expect("serializes");
            assert_eq!(json, serde_json::Value::from(outcome.name()));
            let back: RunOutcome = serde_json::from_value(json).expect("parses");
            assert_eq!(back, outcome);
        }
    }

    #[test]
    fn json_round_trip_and_text_mentions_rejections() {
        let mut s = Summary {
            outcome: RunOutcome::Partial,
            exit_code: 1,
            ..Summary::default()
        };
        s.events_by_name.insert("GCDPapplied".into(), 3);
        s.rejected.push(Rejection {
            person_id: 7,
            write: "identify".into(),
            reason: "HTTP 400: too long".into(),
        });
        let json = serde_json::to_string(&s).expect("serializes");
        let back: Summary = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, s);
        let text = s.to_text();
        assert!(text.contains("GCDPapplied: 3"));
        assert!(text.contains("rejected: person 7 identify: HTTP 400: too long"));
    }
}

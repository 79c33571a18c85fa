//! Monitoring (SPEC 2 `[monitoring]`, SPEC 6): the Prometheus textfile and the
//! healthchecks.io-style pings.
//!
//! Owns only the rendering and delivery of what a run already decided; it never reads state
//! or config, and nothing here can fail a run: the textfile write returns an error for the
//! caller to log, and a ping swallows its own errors.
//!
//! The ping URL carries a secret (anyone holding the uuid can fake "all is well"), so it is
//! never logged in full: only its host, and reqwest errors are stripped of their URL.
//!
//! Two decisions operators rely on (deploy/README.md, "Monitoring"):
//! - `ciosync_last_success_timestamp_seconds` survives failed runs: each write carries it
//!   over from the file it replaces, so "time since the last success" (the batch-job
//!   alert) works from a file that only ever describes the last run.
//! - The end-of-run ping carries the run summary (or the error) as its body, so the
//!   monitoring service's alert says why. A time-budget stop (exit 75) is pinged as a
//!   success (`/0`), with the summary saying it was 75: the run made progress and the next
//!   one resumes, as systemd's `SuccessExitStatus=75` also says; runs that never complete
//!   are caught by the last-success alert instead of paging on every stop. A full read
//!   that stopped before any write was confirmed made no progress and the next one will
//!   not either ([`Summary::budget_too_short`]): it is pinged with its code, 75, a failure.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::data_dir;
use crate::summary::{RunOutcome, Summary};

/// How long one ping may take: a monitoring service that hangs must not eat the run's time
/// budget (the start ping is sent before any work).
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// The textfile's mode: node_exporter usually runs as another user and must read it.
const TEXTFILE_MODE: u32 = 0o644;

/// The metric of the last successful run, carried over from file to file.
const LAST_SUCCESS_METRIC: &str = "ciosync_last_success_timestamp_seconds";

/// The most a ping body holds: what healthchecks.io keeps of one (10 kB); longer summaries
/// are cut.
pub const PING_BODY_LIMIT: usize = 10_000;

/// The exit code pinged for a time-budget stop: success (see the module documentation).
const TIME_BUDGET_PINGED_AS: u8 = 0;

/// Renders the run summary in the Prometheus text exposition format (version 0.0.4), every
/// metric with its `# HELP` and `# TYPE` lines. All metrics are gauges: they describe the
/// last run, not a running total, except the last success: the summary's end when it
/// exited 0, else `previous_success` (what the file being replaced said; left out when
/// there was none).
pub fn render_textfile(summary: &Summary, previous_success: Option<f64>) -> String {
    let mut out = Exposition::default();
    let last_success = match (summary.exit_code, summary.ended_at) {
        (0, Some(end)) if !summary.dry_run => Some(unix_seconds(end)),
        _ => previous_success,
    };
    if let Some(at) = last_success {
        out.gauge(
            LAST_SUCCESS_METRIC,
            "When the last run that exited 0 ended, in seconds since the Unix epoch \
             (kept across failed runs).",
            &[(&[], at)],
        );
    }

    if let Some(start) = summary.started_at {
        out.gauge(
            "ciosync_last_run_start_timestamp_seconds",
            "When the last run started, in seconds since the Unix epoch.",
            &[(&[], unix_seconds(start))],
        );
    }
    if let Some(end) = summary.ended_at {
        out.gauge(
            "ciosync_last_run_end_timestamp_seconds",
            "When the last run ended, in seconds since the Unix epoch.",
            &[(&[], unix_seconds(end))],
        );
    }
    if let (Some(start), Some(end)) = (summary.started_at, summary.ended_at) {
        let millis = (end - start).num_milliseconds().max(0);
        out.gauge(
            "ciosync_last_run_duration_seconds",
            "How long the last run took.",
            &[(&[], millis as f64 / 1000.0)],
        );
    }
    out.gauge(
        "ciosync_last_run_exit_code",
        "The last run's exit code (0 ok, 1 records rejected, 69 unavailable, 74 state, \
         75 locked or time budget, 77 auth, 78 config).",
        &[(&[], f64::from(summary.exit_code))],
    );
    out.gauge(
        "ciosync_last_run_success",
        "1 if the last run exited 0, else 0.",
        &[(&[], bool_value(summary.exit_code == 0))],
    );
    out.gauge(
        "ciosync_last_run_outcome",
        "The last run's outcome (ok, partial, dry_run, or the error class that stopped it), \
         as a label; the value is always 1.",
        &[(&[("outcome", summary.outcome.name())], 1.0)],
    );
    out.gauge(
        "ciosync_last_run_dry_run",
        "1 if the last run was a dry run.",
        &[(&[], bool_value(summary.dry_run))],
    );
    out.gauge(
        "ciosync_last_run_full_read",
        "1 if the last run read everything from GIS, 0 if it read incrementally.",
        &[(&[], bool_value(summary.full_read))],
    );
    out.gauge(
        "ciosync_last_run_budget_too_short",
        "1 if the last run's full read stopped at the time budget before any write was \
         confirmed: the next run stops the same way until safety.time_budget is raised.",
        &[(&[], bool_value(summary.budget_too_short))],
    );

    let counts: [(&str, &str, u64); 8] = [
        (
            "ciosync_last_run_people_seen",
            "People read from GIS by the last run.",
            summary.people_seen,
        ),
        (
            "ciosync_last_run_applications_seen",
            "Applications read from GIS by the last run.",
            summary.applications_seen,
        ),
        (
            "ciosync_last_run_people_changed",
            "People with at least one write planned in the last run.",
            summary.people_changed,
        ),
        (
            "ciosync_last_run_identifies_sent",
            "Profile updates customer.io confirmed in the last run.",
            summary.identifies_sent,
        ),
        (
            "ciosync_last_run_truncated_values",
            "Attribute values cut to customer.io's 1000-byte limit in the last run.",
            summary.truncated_values,
        ),
        (
            "ciosync_last_run_people_left_scope",
            "People who left the configured LCs, noticed by the last run.",
            summary.people_left_scope,
        ),
        (
            "ciosync_last_run_records_rejected",
            "Writes customer.io refused for good in the last run (retried next run).",
            summary.rejected.len() as u64,
        ),
        (
            "ciosync_last_run_retries",
            "HTTP requests the last run retried.",
            summary.retries,
        ),
    ];
    for (name, help, value) in counts {
        out.gauge(name, help, &[(&[], value as f64)]);
    }

    out.labelled(
        "ciosync_last_run_events_sent",
        "Events customer.io confirmed in the last run, by event name.",
        "event",
        &summary.events_by_name,
    );
    out.labelled(
        "ciosync_last_run_records_skipped",
        "Records the last run skipped, by reason.",
        "reason",
        &summary.skipped,
    );
    out.labelled(
        "ciosync_last_run_unknown_statuses",
        "Applications with a status ciosync does not know, by status, in the last run.",
        "status",
        &summary.unknown_statuses,
    );
    out.gauge(
        "ciosync_last_run_requests",
        "HTTP requests the last run made, by service.",
        &[
            (&[("service", "gis")], summary.gis_requests as f64),
            (&[("service", "customerio")], summary.cio_requests as f64),
        ],
    );
    out.gauge(
        "ciosync_last_run_customerio_sent_bytes",
        "Request body bytes the last run sent to customer.io.",
        &[(&[], summary.cio_bytes_sent as f64)],
    );
    out.gauge(
        "ciosync_last_run_token_refreshes",
        "GIS OAuth token refreshes in the last run.",
        &[(&[], summary.token_refreshes as f64)],
    );
    out.gauge(
        "ciosync_pending_people",
        "People whose writes are not all confirmed yet; retried by the next run.",
        &[(&[], summary.pending_people as f64)],
    );
    out.text
}

/// Writes [`render_textfile`] to `path` atomically ([`data_dir::write_atomic`]), mode 0644,
/// so node_exporter never reads a half-written file, carrying the last success over from
/// the file it replaces. The temp file's name does not end in `.prom`, so the collector
/// ignores it. The directory must exist.
///
/// # Errors
/// Any I/O error creating, writing or renaming the file; the temp file is removed then.
pub fn write_textfile(path: &Path, summary: &Summary) -> io::Result<()> {
    let previous_success = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| last_success_in(&text));
    let text = render_textfile(summary, previous_success);
    data_dir::write_atomic(path, text.as_bytes(), TEXTFILE_MODE)
}

/// The last-success value of a textfile ciosync wrote, if it has one.
fn last_success_in(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(LAST_SUCCESS_METRIC)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .filter(|value| value.is_finite())
}

/// The client for pings: short timeouts so a hung monitoring service costs the run at most
/// [`PING_TIMEOUT`] per ping, and no redirects followed.
pub fn ping_client() -> reqwest::Client {
    crate::http::client(PING_TIMEOUT).unwrap_or_else(|error| {
        // Only a system store whose every certificate is unreadable gets here; the run's own
        // clients report it. Pings still go out, trusting the built-in roots.
        tracing::info!(error = %error, "Monitoring pings trust only the built-in TLS roots.");
        reqwest::Client::builder()
            .timeout(PING_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .tls_built_in_native_certs(false)
            .build()
            .expect("a client with only the built-in roots needs no system files")
    })
}

/// The end-of-run ping: `POST <url>/<exit code>` with the run summary (which names the
/// error, if any) as its body, cut to [`PING_BODY_LIMIT`] bytes. A time-budget stop
/// (`code` 75 with the time-budget outcome) is pinged as `/0`, unless the next run cannot get
/// past it ([`Summary::budget_too_short`]); see the module documentation.
/// Never fails the run, like [`ping`].
pub async fn ping_finished(
    client: &reqwest::Client,
    url: &str,
    code: u8,
    summary: &Summary,
) -> bool {
    let (suffix, body) = finished_ping(code, summary);
    send_ping(client, url, &suffix, Some(body)).await
}

/// The suffix and body of the end-of-run ping.
fn finished_ping(code: u8, summary: &Summary) -> (String, String) {
    // A stop the next run cannot get past is a failure like any other: it keeps its code.
    let time_budget = summary.outcome == RunOutcome::TimeBudget && !summary.budget_too_short;
    let mut body = String::new();
    let pinged = if time_budget {
        body.push_str(&format!(
            "exit {code}: the run stopped at its time budget; progress is saved and the next \
             run resumes (pinged as success, so nobody is paged)\n"
        ));
        TIME_BUDGET_PINGED_AS
    } else {
        code
    };
    body.push_str(&summary.to_text());
    (
        pinged.to_string(),
        cut_at_char_boundary(body, PING_BODY_LIMIT),
    )
}

fn cut_at_char_boundary(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Sends one healthchecks.io-style ping, `GET <url>/<suffix>`: `start` when a run begins,
/// then the exit code (`0`, `1`, `75`, ...) when it ends.
///
/// Never fails the run: a ping that does not get through is logged and swallowed. Returns
/// whether the monitoring service answered with a 2xx status, for callers that care.
/// Logs name only the URL's host: the rest of it is a secret.
pub async fn ping(client: &reqwest::Client, url: &str, suffix: &str) -> bool {
    send_ping(client, url, suffix, None).await
}

/// `GET <url>/<suffix>`, or `POST` with `body`; see [`ping`].
async fn send_ping(
    client: &reqwest::Client,
    url: &str,
    suffix: &str,
    body: Option<String>,
) -> bool {
    let host = url_host(url);
    let target = format!("{}/{}", url.trim_end_matches('/'), suffix);
    let request = match body {
        Some(body) => client
            .post(&target)
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body),
        None => client.get(&target),
    };
    let response = request.timeout(PING_TIMEOUT).send().await;
    match response {
        Ok(response) if response.status().is_success() => {
            tracing::debug!(host = %host, suffix, "Monitoring ping sent.");
            true
        }
        Ok(response) => {
            // The service answered but refused: most likely a wrong or deleted check, which
            // an operator must fix, so it is worth a cron mail.
            tracing::warn!(
                host = %host,
                suffix,
                status = response.status().as_u16(),
                "Monitoring ping refused; check monitoring.ping_url."
            );
            false
        }
        Err(error) => {
            // Unreachable or slow: the monitoring service itself will notice the missing
            // ping, so a mail every five minutes would add nothing. The URL is stripped from
            // the error because reqwest puts it in the message.
            tracing::info!(
                host = %host,
                suffix,
                error = %error.without_url(),
                "Monitoring ping failed."
            );
            false
        }
    }
}

/// The host of `url` for logs, or a placeholder when it does not parse (the raw string may
/// hold the secret, so it is never echoed).
fn url_host(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|parsed| parsed.host_str().map(str::to_owned))
        .unwrap_or_else(|| "<unparsable ping_url>".to_owned())
}

fn unix_seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}

fn bool_value(flag: bool) -> f64 {
    if flag {
        1.0
    } else {
        0.0
    }
}

/// One sample: its labels (name, unescaped value) and its value.
type Sample<'a> = (&'a [(&'a str, &'a str)], f64);

/// Accumulates metric families in the text exposition format.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    /// One gauge family: HELP, TYPE, then its samples.
    fn gauge(&mut self, name: &str, help: &str, samples: &[Sample<'_>]) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} gauge");
        for (labels, value) in samples {
            self.text.push_str(name);
            if !labels.is_empty() {
                let rendered: Vec<String> = labels
                    .iter()
                    .map(|(key, value)| format!("{key}=\"{}\"", escape_label_value(value)))
                    .collect();
                let _ = write!(self.text, "{{{}}}", rendered.join(","));
            }
            let _ = writeln!(self.text, " {}", format_value(*value));
        }
    }

    /// A gauge family with one label, one sample per map entry (HELP and TYPE even when the
    /// map is empty, so the family is documented in every file).
    fn labelled(&mut self, name: &str, help: &str, label: &str, values: &BTreeMap<String, u64>) {
        let label_sets: Vec<[(&str, &str); 1]> =
            values.keys().map(|key| [(label, key.as_str())]).collect();
        let samples: Vec<Sample<'_>> = label_sets
            .iter()
            .zip(values.values())
            .map(|(labels, count)| (&labels[..], *count as f64))
            .collect();
        self.gauge(name, help, &samples);
    }
}

/// Label values escape backslash, double quote and line feed (exposition format 0.0.4).
fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
    out
}

/// HELP text escapes backslash and line feed only.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Integers print without a fraction; Rust's `Display` for f64 never uses an exponent,
/// which the format would accept but people reading the file would not enjoy.
fn format_value(value: f64) -> String {
    if value.is_finite() {
        format!("{value}")
    } else if value.is_nan() {
        "NaN".to_owned()
    } else if value > 0.0 {
        "+Inf".to_owned()
    } else {
        "-Inf".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::Rejection;
    use chrono::TimeZone;
    use std::collections::BTreeSet;
    use std::fs;

    /// One parsed sample line.
    #[derive(Debug, PartialEq)]
    struct ParsedSample {
        name: String,
        labels: BTreeMap<String, String>,
        value: f64,
    }

    /// A strict little parser for the subset of the format we emit: every sample must
    /// belong to a family announced by HELP and TYPE lines just before it.
    fn parse(text: &str) -> Vec<ParsedSample> {
        let mut helped = BTreeSet::new();
        let mut typed = BTreeSet::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP has a name and text");
                assert!(!help.is_empty(), "empty HELP for {name}");
                assert!(helped.insert(name.to_owned()), "HELP twice for {name}");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE has a name and kind");
                assert_eq!(kind, "gauge");
                assert!(helped.contains(name), "TYPE before HELP for {name}");
                assert!(typed.insert(name.to_owned()), "TYPE twice for {name}");
                continue;
            }
            assert!(!line.starts_with('#'), "unexpected comment: {line}");
            let sample = parse_sample(line);
            assert!(typed.contains(&sample.name), "sample without TYPE: {line}");
            samples.push(sample);
        }
        samples
    }

    fn parse_sample(line: &str) -> ParsedSample {
        let name_end = line.find(['{', ' ']).expect("sample has a value");
        let name = &line[..name_end];
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name {name}"
        );
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(after_brace) = rest.strip_prefix('{') {
            let mut chars = after_brace.char_indices();
            let mut key = String::new();
            let mut value = String::new();
            let mut in_value = false;
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if in_value {
                    match c {
                        '\\' => match chars.next().expect("escape has a char").1 {
                            'n' => value.push('\n'),
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            other => panic!("bad escape \\{other}"),
                        },
                        '"' => {
                            labels.insert(std::mem::take(&mut key), std::mem::take(&mut value));
                            in_value = false;
                        }
                        other => value.push(other),
                    }
                } else {
                    match c {
                        '=' => {
                            assert_eq!(chars.next().map(|(_, c)| c), Some('"'));
                            in_value = true;
                        }
                        ',' => {}
                        '}' => {
                            end = Some(i);
                            break;
                        }
                        other => key.push(other),
                    }
                }
            }
            let end = end.expect("labels are closed");
            rest = &after_brace[end + 1..];
        }
        let value_text = rest.strip_prefix(' ').expect("one space before the value");
        let value = value_text.parse::<f64>().expect("value is a float");
        ParsedSample {
            name: name.to_owned(),
            labels,
            value,
        }
    }

    fn value_of(samples: &[ParsedSample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }

    fn sample_summary() -> Summary {
        let start = Utc
            .with_ymd_and_hms(2026, 11, 28, 12, 0, 0)
            .single()
            .expect("valid date");
        let mut summary = Summary {
            started_at: Some(start),
            ended_at: Some(start + chrono::Duration::milliseconds(83_250)),
            outcome: RunOutcome::Partial,
            exit_code: 1,
            people_seen: 120,
            applications_seen: 340,
            people_changed: 9,
            identifies_sent: 7,
            events_sent: 5,
            pending_people: 2,
            gis_requests: 4,
            cio_requests: 11,
            retries: 3,
            full_read: true,
            ..Summary::default()
        };
        summary.events_by_name.insert("GCDPapplied".into(), 3);
        summary.events_by_name.insert("GTaaccepted".into(), 2);
        summary.skipped.insert("duplicate".into(), 1);
        summary
            .unknown_statuses
            .insert("weird \"status\"\\\nnext".into(), 4);
        summary.rejected.push(Rejection {
            person_id: 7,
            write: "identify".into(),
            reason: "HTTP 400".into(),
        });
        summary
    }

    #[test]
    fn every_value_of_the_summary_round_trips_through_the_text() {
        let summary = sample_summary();
        let samples = parse(&render_textfile(&summary, None));
        let get = |name: &str, labels: &[(&str, &str)]| {
            value_of(&samples, name, labels).unwrap_or_else(|| panic!("missing {name}"))
        };
        let start = summary.started_at.expect("set").timestamp() as f64;
        assert_eq!(get("ciosync_last_run_start_timestamp_seconds", &[]), start);
        assert_eq!(
            get("ciosync_last_run_end_timestamp_seconds", &[]),
            start + 83.25
        );
        assert_eq!(get("ciosync_last_run_duration_seconds", &[]), 83.25);
        assert_eq!(get("ciosync_last_run_exit_code", &[]), 1.0);
        assert_eq!(get("ciosync_last_run_success", &[]), 0.0);
        assert_eq!(
            get("ciosync_last_run_outcome", &[("outcome", "partial")]),
            1.0
        );
        assert_eq!(get("ciosync_last_run_full_read", &[]), 1.0);
        assert_eq!(get("ciosync_last_run_budget_too_short", &[]), 0.0);
        assert_eq!(get("ciosync_last_run_people_seen", &[]), 120.0);
        assert_eq!(get("ciosync_last_run_applications_seen", &[]), 340.0);
        assert_eq!(get("ciosync_last_run_identifies_sent", &[]), 7.0);
        assert_eq!(
            get("ciosync_last_run_events_sent", &[("event", "GCDPapplied")]),
            3.0
        );
        assert_eq!(
            get("ciosync_last_run_events_sent", &[("event", "GTaaccepted")]),
            2.0
        );
        assert_eq!(
            get(
                "ciosync_last_run_records_skipped",
                &[("reason", "duplicate")]
            ),
            1.0
        );
        assert_eq!(get("ciosync_last_run_records_rejected", &[]), 1.0);
        assert_eq!(get("ciosync_last_run_requests", &[("service", "gis")]), 4.0);
        assert_eq!(
            get("ciosync_last_run_requests", &[("service", "customerio")]),
            11.0
        );
        assert_eq!(get("ciosync_last_run_retries", &[]), 3.0);
        assert_eq!(get("ciosync_pending_people", &[]), 2.0);
    }

    #[test]
    fn label_values_are_escaped_and_parse_back_unchanged() {
        let summary = sample_summary();
        let text = render_textfile(&summary, None);
        assert!(
            text.contains(r#"status="weird \"status\"\\\nnext""#),
            "escaped label missing from:\n{text}"
        );
        // A raw newline in a label would split the sample over two lines.
        assert!(text
            .lines()
            .all(|line| !line.ends_with("weird \"status\"\\")));
        let samples = parse(&text);
        assert_eq!(
            value_of(
                &samples,
                "ciosync_last_run_unknown_statuses",
                &[("status", "weird \"status\"\\\nnext")]
            ),
            Some(4.0)
        );
    }

    #[test]
    fn a_run_without_times_omits_them_and_success_follows_the_exit_code() {
        let summary = Summary {
            outcome: RunOutcome::Ok,
            exit_code: 0,
            ..Summary::default()
        };
        let samples = parse(&render_textfile(&summary, None));
        assert_eq!(
            value_of(&samples, "ciosync_last_run_start_timestamp_seconds", &[]),
            None
        );
        assert_eq!(
            value_of(&samples, "ciosync_last_run_duration_seconds", &[]),
            None
        );
        assert_eq!(
            value_of(&samples, "ciosync_last_run_success", &[]),
            Some(1.0)
        );
        // Empty maps still announce their family, and contribute no samples.
        assert!(!samples
            .iter()
            .any(|s| s.name == "ciosync_last_run_events_sent"));
    }

    #[test]
    fn the_last_success_is_this_run_when_it_exited_0_else_carried_over() {
        let mut summary = sample_summary();
        let end = unix_seconds(summary.ended_at.expect("set"));
        let success = |summary: &Summary, previous| {
            value_of(
                &parse(&render_textfile(summary, previous)),
                LAST_SUCCESS_METRIC,
                &[],
            )
        };
        // Exit 1: not a success; the previous one stays, or there is none yet.
        assert_eq!(success(&summary, Some(1000.0)), Some(1000.0));
        assert_eq!(success(&summary, None), None);
        summary.exit_code = 0;
        assert_eq!(success(&summary, Some(1000.0)), Some(end));
        summary.dry_run = true;
        assert_eq!(success(&summary, Some(1000.0)), Some(1000.0));
    }

    #[test]
    fn writing_carries_the_last_success_over_failed_runs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ciosync.prom");
        let mut ok = sample_summary();
        ok.exit_code = 0;
        write_textfile(&path, &ok).expect("writes");
        let succeeded_at = unix_seconds(ok.ended_at.expect("set"));
        let mut failed = sample_summary();
        failed.exit_code = 69;
        failed.ended_at = Some(failed.ended_at.expect("set") + chrono::Duration::hours(1));
        for _ in 0..3 {
            write_textfile(&path, &failed).expect("writes");
            let text = fs::read_to_string(&path).expect("reads");
            assert_eq!(last_success_in(&text), Some(succeeded_at), "{text}");
            assert_eq!(
                value_of(&parse(&text), "ciosync_last_run_exit_code", &[]),
                Some(69.0)
            );
        }
        // A file that never saw a success has no such metric (the `absent()` alert's case).
        let fresh = dir.path().join("fresh.prom");
        write_textfile(&fresh, &failed).expect("writes");
        assert_eq!(
            last_success_in(&fs::read_to_string(&fresh).expect("reads")),
            None
        );
    }

    #[test]
    fn the_final_ping_carries_the_summary_and_a_time_budget_stop_is_a_success() {
        let mut summary = sample_summary();
        let (suffix, body) = finished_ping(1, &summary);
        assert_eq!(suffix, "1");
        assert_eq!(body, summary.to_text());
        assert!(body.contains("exit 1"), "{body}");

        summary.outcome = RunOutcome::TimeBudget;
        summary.exit_code = 75;
        summary.error = Some("the run reached its time budget of 4m".to_owned());
        let (suffix, body) = finished_ping(75, &summary);
        assert_eq!(suffix, "0", "exit 75 must not page");
        assert!(
            body.starts_with("exit 75: the run stopped at its time budget"),
            "{body}"
        );
        assert!(body.contains("time budget of 4m"), "{body}");

        // A full read that cannot get past the budget pages: nothing resumes by itself.
        summary.budget_too_short = true;
        summary.error =
            Some("a full read did not get far enough within the time budget of 4m".to_owned());
        let (suffix, body) = finished_ping(75, &summary);
        assert_eq!(suffix, "75", "a dead end must page");
        assert!(body.starts_with("outcome: time_budget (exit 75)"), "{body}");
        assert!(body.contains("did not get far enough"), "{body}");
        summary.budget_too_short = false;

        // A lock-held 75 is never pinged (the run holding the lock reports); any other
        // outcome keeps its code.
        summary.outcome = RunOutcome::Unavailable;
        summary.exit_code = 69;
        assert_eq!(finished_ping(69, &summary).0, "69");
    }

    #[test]
    fn a_long_ping_body_is_cut_on_a_character_boundary() {
        let mut summary = sample_summary();
        summary.error = Some("é".repeat(PING_BODY_LIMIT));
        let (_, body) = finished_ping(69, &summary);
        assert!(body.len() <= PING_BODY_LIMIT && body.len() > PING_BODY_LIMIT - 4);
        assert!(body.ends_with('é'));
    }

    #[test]
    fn help_text_escapes_backslash_and_newline() {
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
        assert_eq!(escape_label_value("a\"b"), "a\\\"b");
    }

    #[test]
    fn write_is_atomic_replaces_the_old_file_and_is_world_readable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ciosync.prom");
        fs::write(&path, "old").expect("seed old file");
        let summary = sample_summary();
        write_textfile(&path, &summary).expect("writes");
        let written = fs::read_to_string(&path).expect("reads back");
        assert_eq!(written, render_textfile(&summary, None));
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("lists")
            .map(|e| e.expect("entry").file_name())
            .filter(|name| name != "ciosync.prom")
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode, 0o644);
        }
    }

    #[test]
    fn write_into_a_missing_directory_fails_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("missing").join("ciosync.prom");
        assert!(write_textfile(&path, &Summary::default()).is_err());
        assert!(!path.exists());
    }

    #[test]
    fn host_is_all_a_log_sees_of_the_ping_url() {
        assert_eq!(
            url_host("https://hc-ping.com/2f9e0d7c-secret-uuid"),
            "hc-ping.com"
        );
        assert_eq!(url_host("not a url with secret"), "<unparsable ping_url>");
    }
}

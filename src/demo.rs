//! `ciosync demo` (SPEC 1): the zero-setup way to see ciosync work, on the built-in fakes.
//!
//! Without `--serve`: start both fakes with N generated people, sync, move some
//! applications forward and rename some people in the fake GIS, sync again, and show what
//! customer.io received. With `--serve`: keep the fakes running, write a ready config.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use tokio::time::Instant;

use crate::cli::DemoArgs;
use crate::commands::{self, Output};
use crate::config::{self, Config};
use crate::data_dir::{self, DataDirError, PRIVATE_FILE_MODE};
use crate::error::Error;
use crate::fake::cio::{FakeCio, FakeCioOptions};
use crate::fake::gis::{FakeGis, FakeGisOptions};
use crate::summary::Summary;
use crate::sync::{self, RunOptions};

/// The LCs the demo config syncs (the fake GIS also has people in LCs out of scope).
pub const DEMO_HOME_LCS: [u64; 2] = [1337, 1338];

/// Runs the demo, writing to `out`.
pub fn main(args: &DemoArgs, out: &mut dyn Write) -> Output {
    let result = if args.serve {
        serve(args, out)
    } else {
        walkthrough(args, out)
    };
    match result {
        Ok(()) => Output::default(),
        Err(e) => Output::failed(e),
    }
}

fn start_fakes(people: usize) -> Result<(FakeGis, FakeCio), Error> {
    let gis = FakeGis::start(FakeGisOptions {
        people,
        ..FakeGisOptions::default()
    })
    .map_err(|source| Error::Unavailable {
        context: "cannot start the fake GIS".to_owned(),
        source,
    })?;
    let cio = FakeCio::start(FakeCioOptions::default()).map_err(|source| Error::Unavailable {
        context: "cannot start the fake customer.io".to_owned(),
        source,
    })?;
    Ok((gis, cio))
}

/// A complete config pointing at the fakes.
pub fn demo_config_text(gis: &FakeGis, cio: &FakeCio, data_dir: &Path) -> String {
    let lcs: Vec<String> = DEMO_HOME_LCS.iter().map(u64::to_string).collect();
    format!(
        r#"# Written by `ciosync demo --serve`: points at the built-in fakes on loopback.
data_dir = "{data_dir}"

[gis]
endpoint = "{gis_url}"
home_lcs = [{lcs}]
access_token = "{token}"

[customerio]
site_id = "{site}"
api_key = "{key}"
track_url = "{cio_url}"
"#,
        data_dir = data_dir.display(),
        gis_url = gis.graphql_url(),
        lcs = lcs.join(", "),
        token = gis.static_token(),
        site = cio.site_id(),
        key = cio.api_key(),
        cio_url = cio.url(),
    )
}

fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(DataDirError::io(format!(
            "cannot create {}",
            parent.display()
        )))?;
    }
    data_dir::write_atomic(path, text.as_bytes(), PRIVATE_FILE_MODE)
        .map_err(DataDirError::io(format!("cannot write {}", path.display())))
        .map_err(Error::from)
}

fn load(path: &Path) -> Result<Config, Error> {
    // The demo config holds everything; the process environment must not leak into it.
    Ok(config::load(path, &|_| None)?.config)
}

fn serve(args: &DemoArgs, out: &mut dyn Write) -> Result<(), Error> {
    let (gis, cio) = start_fakes(args.people)?;
    let dir = absolute(&args.dir);
    let config_path = dir.join("config.toml");
    write_private(
        &config_path,
        &demo_config_text(&gis, &cio, &dir.join("data")),
    )?;
    let _ = writeln!(out, "fake GIS:         {}", gis.graphql_url());
    let _ = writeln!(out, "fake customer.io: {}", cio.url());
    let _ = writeln!(out, "config:           {}", config_path.display());
    let _ = writeln!(
        out,
        "try:              ciosync run --config {} -v\nPress Ctrl-C to stop.",
        config_path.display()
    );
    let _ = out.flush();
    let runtime = commands::runtime()?;
    runtime
        .block_on(tokio::signal::ctrl_c())
        .map_err(|source| Error::Unavailable {
            context: "cannot wait for Ctrl-C".to_owned(),
            source,
        })?;
    Ok(())
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_or_else(|_| path.to_path_buf(), |cwd| cwd.join(path))
    }
}

fn walkthrough(args: &DemoArgs, out: &mut dyn Write) -> Result<(), Error> {
    let (gis, cio) = start_fakes(args.people)?;
    let work = std::env::temp_dir().join(format!("ciosync-demo-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(work.clone());
    let config_path = work.join("config.toml");
    write_private(
        &config_path,
        &demo_config_text(&gis, &cio, &work.join("data")),
    )?;
    let config = load(&config_path)?;
    let runtime = commands::runtime()?;
    let now: DateTime<Utc> = "2026-11-01T06:00:00Z".parse().expect("valid demo time");

    let _ = writeln!(
        out,
        "ciosync demo: {} generated people in the fake GIS; LCs {:?} are in scope.\n",
        args.people, DEMO_HOME_LCS
    );
    let first = sync_once(&runtime, &config, now)?;
    print_run(out, "first sync", &first);

    let changed = change_some_records(&gis, now + Duration::hours(1));
    let _ = writeln!(
        out,
        "\nchanged in the fake GIS: {} applications moved a step forward, {} people renamed.\n",
        changed.0, changed.1
    );
    let second = sync_once(&runtime, &config, now + Duration::hours(2))?;
    print_run(out, "second sync", &second);

    let events = cio.events();
    let _ = writeln!(
        out,
        "\ncustomer.io now holds {} profiles and {} events; duplicate events discarded: {}.",
        cio.profiles().len(),
        events.len(),
        cio.duplicate_events()
    );
    let _ = writeln!(out, "the last events it received:");
    for event in events
        .iter()
        .rev()
        .take(8)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        let at = event
            .timestamp
            .and_then(|t| DateTime::from_timestamp(t, 0))
            .map_or_else(|| "-".to_owned(), |t| t.to_rfc3339());
        let _ = writeln!(
            out,
            "  person {:>8}  {:<22} {at}",
            event.customer_id, event.name
        );
    }
    Ok(())
}

fn sync_once(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Summary, Error> {
    let result = runtime.block_on(sync::run(
        config,
        &RunOptions::default(),
        now,
        Instant::now(),
    ))?;
    match result.error {
        Some(e) => Err(e),
        None => Ok(result.summary),
    }
}

fn print_run(out: &mut dyn Write, title: &str, summary: &Summary) {
    let _ = writeln!(
        out,
        "{title}: read {} people and {} applications; sent {} identifies and {} events (exit {}).",
        summary.people_seen,
        summary.applications_seen,
        summary.identifies_sent,
        summary.events_sent,
        summary.exit_code
    );
    for (name, n) in &summary.events_by_name {
        let _ = writeln!(out, "  {name:<26} {n}");
    }
    if !summary.unknown_statuses.is_empty() {
        let _ = writeln!(
            out,
            "  unknown statuses (counted, nothing sent): {:?}",
            summary.unknown_statuses
        );
    }
}

/// Moves some in-scope applications one step forward and renames some people.
fn change_some_records(gis: &FakeGis, at: DateTime<Utc>) -> (usize, usize) {
    gis.set_clock(at);
    let mut moved = 0;
    let mut renamed = 0;
    let people: Vec<u64> = DEMO_HOME_LCS
        .iter()
        .flat_map(|lc| gis.person_ids(*lc))
        .collect();
    for person in people.iter().take(10) {
        for application in gis.application_ids(*person) {
            let status = gis
                .application_json(application)
                .and_then(|a| a.get("status").and_then(|s| s.as_str().map(str::to_owned)));
            let next = match status.as_deref() {
                Some("open" | "applied") => "accepted",
                Some("matched" | "accepted") => "approved",
                Some("approved") => "realized",
                Some("realized") => "finished",
                _ => continue,
            };
            if gis.set_application_status(application, next) {
                moved += 1;
            }
        }
    }
    for person in people.iter().take(3) {
        if gis.update_person(*person, json!({"first_name": "Renamed"})) {
            renamed += 1;
        }
    }
    (moved, renamed)
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

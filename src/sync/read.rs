//! What a run reads from GIS (SPEC 3, 5.4): an incremental read while the state is fresh,
//! else a full read; and the full read's by-id re-check of known people it did not see.
//! Once everyone read is planned, the people who left (or whom GIS no longer has, 8.3) and
//! the clears of excluded attributes for people not read (8.3) are planned, before any
//! application.
//!
//! [`incremental_since`] is the pure rule that chooses; [`read`] does the reading, handing
//! each record to the run's [`Flow`] as it arrives.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::config::OnLeave;
use crate::error::Error;
use crate::gis::{GisClient, List, ScanReport};
use crate::model::{Application, Person, PersonId};
use crate::state::State;

use super::flow::Flow;

/// Reads since this long before the last completed run started, so clock skew and
/// records committed while that run read cannot slip between two incremental reads.
pub const INCREMENTAL_OVERLAP: chrono::Duration = chrono::Duration::minutes(15);
/// More pending people than this make the run read everything instead (SPEC 5.4).
pub const MAX_PENDING_FOR_INCREMENTAL: usize = 100;

/// `Some(since)` when this run may read incrementally (SPEC 5.4): no `--full`, at most
/// [`MAX_PENDING_FOR_INCREMENTAL`] pending people, a last full read younger than
/// `full_sync_every`, and a watermark (a completed run). A first run has neither, so it
/// reads everything.
pub fn incremental_since(
    state: &State,
    forced_full: bool,
    full_sync_every: Duration,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if forced_full || state.pending_people.len() > MAX_PENDING_FOR_INCREMENTAL {
        return None;
    }
    let every = chrono::Duration::from_std(full_sync_every).ok()?;
    let last_full = state.last_full_read?;
    if now - last_full >= every {
        return None;
    }
    Some(state.watermark? - INCREMENTAL_OVERLAP)
}

/// Pages a scan may decode ahead of planning (each holds one page of records).
const PAGES_AHEAD: usize = 2;

/// What a run's read saw.
#[derive(Debug, Default)]
pub struct ReadReport {
    /// A full read: everyone in scope was asked for.
    pub full: bool,
    /// The full read saw every record (no list changed beyond what its re-read recovered);
    /// only then does it count as the last full read (SPEC 3).
    pub complete: bool,
    /// Distinct people read (the by-id re-check included).
    pub people: usize,
    /// Records skipped while decoding, and records seen twice, by reason.
    pub skipped: BTreeMap<String, u64>,
}

/// Reads GIS into `flow`: what changed since `since`, or everything when `since` is `None`.
/// Every person is planned (and their identify settled, or held) before any application.
///
/// # Errors
/// [`Error::Gis`] when GIS cannot be read (after retries, or at the deadline), or what
/// stopped the flow (a state that cannot be saved).
pub async fn read(
    gis: &GisClient,
    flow: &mut Flow<'_, '_>,
    since: Option<DateTime<Utc>>,
) -> Result<ReadReport, Error> {
    match since {
        Some(since) => read_changed(gis, flow, since).await,
        None => read_all(gis, flow).await,
    }
}

/// An incremental read (SPEC 5.4): small by nature, read whole, then planned.
async fn read_changed(
    gis: &GisClient,
    flow: &mut Flow<'_, '_>,
    since: DateTime<Utc>,
) -> Result<ReadReport, Error> {
    let state = &*flow.ledger.state;
    let out_of_scope: BTreeSet<PersonId> = state
        .people
        .iter()
        .filter(|(_, p)| !p.in_scope)
        .map(|(id, _)| *id)
        .collect();
    let pending = state.pending_people.clone();
    tracing::info!(since = %since, pending = pending.len(), "Incremental read.");
    let snapshot = gis.read_changed(since, &pending, &out_of_scope).await?;
    let people_read: HashSet<PersonId> = snapshot.people.iter().map(|p| p.id).collect();
    for person in &snapshot.people {
        flow.person(person).await?;
    }
    for &person_id in &snapshot.absent {
        flow.gone_from_gis(person_id).await?;
    }
    flow.clear_excluded(&people_read).await?;
    flow.identifies_done().await?;
    for application in &snapshot.applications {
        flow.application(application, &people_read).await?;
    }
    Ok(ReadReport {
        full: false,
        complete: false,
        people: people_read.len(),
        skipped: snapshot.skipped,
    })
}

/// A full read (SPEC 3, 5.4): both lists scanned page by page, each page planned as it
/// arrives; known people the scan did not see are re-checked by id before anyone is
/// declared out of scope.
async fn read_all(gis: &GisClient, flow: &mut Flow<'_, '_>) -> Result<ReadReport, Error> {
    tracing::info!("Full read.");
    let mut people_read: HashSet<PersonId> = HashSet::new();
    let (deliver, mut pages) = mpsc::channel::<Vec<Person>>(PAGES_AHEAD);
    let scanning = gis.scan(List::People, &mut people_read, deliver);
    let planning = async {
        while let Some(page) = pages.recv().await {
            for person in &page {
                flow.person(person).await?;
            }
        }
        Ok::<(), Error>(())
    };
    let (people, planned) = tokio::join!(scanning, planning);
    planned?;
    let people = people?;
    let mut skipped = BTreeMap::new();
    tally(&mut skipped, List::People, &people);
    recheck_missing(gis, flow, &mut people_read, &mut skipped).await?;
    flow.clear_excluded(&people_read).await?;
    flow.identifies_done().await?;

    let mut applications_read: HashSet<u64> = HashSet::new();
    let (deliver, mut pages) = mpsc::channel::<Vec<Application>>(PAGES_AHEAD);
    let scanning = gis.scan(List::Applications, &mut applications_read, deliver);
    let planning = async {
        while let Some(page) = pages.recv().await {
            for application in &page {
                flow.application(application, &people_read).await?;
            }
        }
        Ok::<(), Error>(())
    };
    let (applications, planned) = tokio::join!(scanning, planning);
    planned?;
    let applications = applications?;
    tally(&mut skipped, List::Applications, &applications);
    let complete = people.complete && applications.complete;
    if !complete {
        tracing::info!(
            "GIS's lists changed while they were read, even on a re-read; the next run reads everything again."
        );
    }
    Ok(ReadReport {
        full: true,
        complete,
        people: people_read.len(),
        skipped,
    })
}

/// Adds a scan's skips and duplicates to the run's skip counts.
fn tally(skipped: &mut BTreeMap<String, u64>, list: List, report: &ScanReport) {
    for (reason, n) in &report.skipped {
        *skipped.entry(reason.clone()).or_default() += n;
    }
    if report.duplicates > 0 {
        tracing::info!(
            list = list.root(),
            duplicates = report.duplicates,
            "GIS returned some records twice while paging."
        );
        *skipped
            .entry(format!("{}_duplicate", list.root()))
            .or_default() += report.duplicates;
    }
}

/// A full read can miss a record that moved between pages while it was read (SPEC 3). Before
/// anyone is declared out of scope, the in-scope people the state knows but the read did not
/// see are looked up by id: those still in the configured LCs are planned as read, the
/// others get `in_scope = false`. With `on_leave = "delete"` the people marked out of scope
/// before are looked up too: the state then keeps nobody who left (SPEC 8.3).
async fn recheck_missing(
    gis: &GisClient,
    flow: &mut Flow<'_, '_>,
    people_read: &mut HashSet<PersonId>,
    skipped: &mut BTreeMap<String, u64>,
) -> Result<(), Error> {
    let every_leaver = flow.planner.on_leave() == OnLeave::Delete;
    let missing: BTreeSet<PersonId> = flow
        .ledger
        .state
        .people
        .iter()
        .filter(|(id, person)| (person.in_scope || every_leaver) && !people_read.contains(id))
        .map(|(id, _)| *id)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let found = gis
        .read_people_in_scope_by_id(&missing, skipped)
        .await?
        .in_scope;
    tracing::info!(
        missing = missing.len(),
        still_in_scope = found.len(),
        "Known people the full read did not see were looked up by id."
    );
    for person in &found {
        if people_read.insert(person.id) {
            flow.person(person).await?;
        }
    }
    for person_id in missing {
        if !people_read.contains(&person_id) {
            flow.left_scope(person_id).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hours: i64) -> DateTime<Utc> {
        "2026-11-01T00:00:00Z"
            .parse::<DateTime<Utc>>()
            .expect("valid time")
            + chrono::Duration::hours(hours)
    }

    /// A state whose last full read and watermark are `hours` after the epoch above.
    fn state(last_full: Option<i64>, watermark: Option<i64>, pending: usize) -> State {
        State {
            last_full_read: last_full.map(at),
            watermark: watermark.map(at),
            pending_people: (0..pending as u64).collect(),
            ..State::default()
        }
    }

    #[test]
    fn the_read_is_incremental_only_while_the_state_is_fresh() {
        let day = Duration::from_secs(24 * 3600);
        let overlap_before = |hours| Some(at(hours) - INCREMENTAL_OVERLAP);
        // (case, state, --full, full_sync_every, now, expected)
        let cases = [
            ("first run", state(None, None, 0), false, day, at(1), None),
            (
                "fresh",
                state(Some(0), Some(5), 0),
                false,
                day,
                at(6),
                overlap_before(5),
            ),
            ("--full", state(Some(0), Some(5), 0), true, day, at(6), None),
            (
                "full read due",
                state(Some(0), Some(23), 0),
                false,
                day,
                at(24),
                None,
            ),
            (
                "just before due",
                state(Some(0), Some(23), 0),
                false,
                day,
                at(23),
                overlap_before(23),
            ),
            (
                "every run full",
                state(Some(0), Some(0), 0),
                false,
                Duration::ZERO,
                at(0),
                None,
            ),
            (
                "no completed run yet",
                state(Some(0), None, 0),
                false,
                day,
                at(1),
                None,
            ),
            (
                "100 pending",
                state(Some(0), Some(5), MAX_PENDING_FOR_INCREMENTAL),
                false,
                day,
                at(6),
                overlap_before(5),
            ),
            (
                "101 pending",
                state(Some(0), Some(5), MAX_PENDING_FOR_INCREMENTAL + 1),
                false,
                day,
                at(6),
                None,
            ),
        ];
        for (case, state, full, every, now, expected) in cases {
            assert_eq!(
                incremental_since(&state, full, every, now),
                expected,
                "{case}"
            );
        }
    }
}

//! What a run reads from GIS (SPEC 3, 5.4): an incremental read while the state is fresh,
//! else a full read; and the full read's by-id re-check of known people it did not see.
//!
//! [`incremental_since`] is the pure rule that chooses; [`read`] does the reading.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::gis::{GisClient, GisError, Snapshot};
use crate::model::PersonId;
use crate::state::State;

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

/// Reads GIS: what changed since `since`, or everything when `since` is `None`.
///
/// # Errors
/// [`GisError`] when a page cannot be read after retries, or at the deadline.
pub async fn read(
    gis: &GisClient,
    state: &State,
    since: Option<DateTime<Utc>>,
) -> Result<Snapshot, GisError> {
    match since {
        Some(since) => {
            let out_of_scope: BTreeSet<PersonId> = state
                .people
                .iter()
                .filter(|(_, p)| !p.in_scope)
                .map(|(id, _)| *id)
                .collect();
            tracing::info!(since = %since, pending = state.pending_people.len(), "Incremental read.");
            gis.read_changed(since, &state.pending_people, &out_of_scope)
                .await
        }
        None => {
            tracing::info!("Full read.");
            let mut snapshot = gis.read_all().await?;
            recheck_missing(gis, state, &mut snapshot).await?;
            Ok(snapshot)
        }
    }
}

/// A full read can miss a record that moved between pages while it was read (SPEC 3). Before
/// the planner declares anyone out of scope, the in-scope people the state knows but the read
/// did not see are looked up by id; those still in the configured LCs join the snapshot.
async fn recheck_missing(
    gis: &GisClient,
    state: &State,
    snapshot: &mut Snapshot,
) -> Result<(), GisError> {
    let seen: BTreeSet<PersonId> = snapshot.people.iter().map(|p| p.id).collect();
    let missing: BTreeSet<PersonId> = state
        .people
        .iter()
        .filter(|(id, person)| person.in_scope && !seen.contains(id))
        .map(|(id, _)| *id)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let found = gis
        .read_people_in_scope_by_id(&missing, &mut snapshot.skipped)
        .await?;
    tracing::info!(
        missing = missing.len(),
        still_in_scope = found.len(),
        "Known people the full read did not see were looked up by id."
    );
    snapshot.people.extend(found);
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

//! The large-change refusals (SPEC 2 `[safety]`, 8.3): a run that would send events to too
//! many of the people the state knows, a full read that returns far fewer people than the
//! state knows in scope, or a run that would delete the profiles of too many known people
//! (`on_leave = "delete"`), is refused (exit 78) before anything is sent.
//!
//! Pure: [`Known::of`] and [`ChangeSize`] measure the run, [`refuse_large_change`]
//! decides. Both refusals apply only when the state knows at least [`MIN_KNOWN_PEOPLE`]
//! people and the previous run completed; a first run and `--allow-large-change` (checked
//! by the caller) are never judged.

use crate::config::SafetyConfig;
use crate::error::Error;
use crate::state::State;

/// The refusals apply only when the state knows at least this many people.
pub const MIN_KNOWN_PEOPLE: usize = 50;

/// What the state knew before the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// People the state knows.
    pub people: usize,
    /// Of those, people still in scope.
    pub in_scope: usize,
    /// The previous run stopped before completing (crash, time budget): this run resumes it.
    pub resuming: bool,
}

impl Known {
    /// What `state` knows.
    pub fn of(state: &State) -> Known {
        Known {
            people: state.people.len(),
            in_scope: state.people.values().filter(|p| p.in_scope).count(),
            resuming: state.run_in_progress.is_some(),
        }
    }

    /// Whether the guard judges a run on this state: one that knows enough people to tell a
    /// large change, after a run that completed.
    pub fn is_judged(&self) -> bool {
        self.people >= MIN_KNOWN_PEOPLE && !self.resuming
    }
}

/// How large this run's change is, against what the state knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSize {
    pub known: Known,
    /// Known people this run would send events to.
    pub known_with_events: usize,
    /// Known people whose profile this run would delete (`on_leave = "delete"`; `forget`'s
    /// removals are never judged).
    pub known_deleted: usize,
    /// People a full read returned; `None` for an incremental read, which cannot tell.
    pub people_read: Option<usize>,
}

/// Refuses a run whose change is larger than `safety` allows.
///
/// # Errors
/// [`Error::LargeChange`] (exit 78) naming the limit and how to lift it.
pub fn refuse_large_change(size: &ChangeSize, safety: &SafetyConfig) -> Result<(), Error> {
    if !size.known.is_judged() {
        return Ok(());
    }
    let known = size.known.people;
    let share = size.known_with_events as f64 / known as f64;
    if share > safety.max_event_share {
        return Err(Error::LargeChange(format!(
            "this run would send events to {} of the {} people the state knows ({:.0}%, above safety.max_event_share = {}). \
             Nothing was sent. If this is expected, run once with --allow-large-change",
            size.known_with_events,
            known,
            share * 100.0,
            safety.max_event_share
        )));
    }
    // A read that returned few people explains deletes too, so it is named first.
    if let Some(people_read) = size.people_read {
        let in_scope = size.known.in_scope;
        if in_scope > 0 && (people_read as f64) < safety.min_people_share * in_scope as f64 {
            return Err(Error::LargeChange(format!(
                "GIS returned {people_read} people but the state knows {in_scope} in scope (below safety.min_people_share = {}). \
                 A scope, permission or config change? Nothing was sent. If this is expected, run once with --allow-large-change",
                safety.min_people_share
            )));
        }
    }
    let share = size.known_deleted as f64 / known as f64;
    if share > safety.max_delete_share {
        return Err(Error::LargeChange(format!(
            "this run would delete the customer.io profiles of {} of the {} people the state knows ({:.0}%, above safety.max_delete_share = {}; scope.on_leave = \"delete\"). \
             Nothing was sent. If this is expected, run once with --allow-large-change",
            size.known_deleted,
            known,
            share * 100.0,
            safety.max_delete_share
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(known: usize, with_events: usize, read: Option<usize>) -> ChangeSize {
        ChangeSize {
            known: Known {
                people: known,
                in_scope: known,
                resuming: false,
            },
            known_with_events: with_events,
            known_deleted: 0,
            people_read: read,
        }
    }

    fn deleting(known: usize, deleted: usize, read: Option<usize>) -> ChangeSize {
        ChangeSize {
            known_deleted: deleted,
            ..size(known, 0, read)
        }
    }

    #[test]
    fn large_changes_are_refused_only_when_the_state_is_large_and_complete() {
        let safety = SafetyConfig {
            time_budget: std::time::Duration::from_secs(240),
            max_event_share: 0.5,
            min_people_share: 0.5,
            max_delete_share: 0.1,
        };
        let mut resuming = size(100, 100, Some(0));
        resuming.known.resuming = true;
        let mut mostly_out_of_scope = size(100, 0, Some(5));
        mostly_out_of_scope.known.in_scope = 10;
        // (case, size, refused with this fragment)
        let cases = [
            ("quiet run", size(100, 10, Some(100)), None),
            ("events to half: allowed", size(100, 50, None), None),
            (
                "events to most",
                size(100, 51, None),
                Some("safety.max_event_share"),
            ),
            ("small state", size(49, 49, Some(0)), None),
            ("resuming after a stop", resuming, None),
            (
                "incremental read never counts people",
                size(100, 0, None),
                None,
            ),
            ("full read returns half", size(100, 0, Some(50)), None),
            (
                "full read returns few",
                size(100, 0, Some(49)),
                Some("safety.min_people_share"),
            ),
            (
                "few in scope: measured against them",
                mostly_out_of_scope,
                None,
            ),
            (
                "deletes a tenth: allowed",
                deleting(100, 10, Some(90)),
                None,
            ),
            (
                "deletes more than a tenth",
                deleting(100, 11, Some(89)),
                Some("safety.max_delete_share"),
            ),
            (
                "deletes by id on an incremental read",
                deleting(100, 11, None),
                Some("safety.max_delete_share"),
            ),
            (
                "a read that returned few is named first",
                deleting(100, 60, Some(40)),
                Some("safety.min_people_share"),
            ),
            ("deletes on a small state", deleting(49, 49, Some(0)), None),
        ];
        for (case, size, refused) in cases {
            match (refuse_large_change(&size, &safety), refused) {
                (Ok(()), None) => {}
                (Err(e), Some(fragment)) => {
                    assert_eq!(e.code(), 78, "{case}");
                    assert!(e.to_string().contains(fragment), "{case}: {e}");
                    assert!(e.to_string().contains("--allow-large-change"), "{case}");
                }
                (outcome, expected) => panic!("{case}: {outcome:?}, expected {expected:?}"),
            }
        }
    }
}

//! Saving the state while a run sends (SPEC 5.3), and the run's soft deadline (SPEC 2
//! `time_budget`).
//!
//! A kill at any instant loses at most the writes confirmed since the last checkpoint; they
//! are resent with the same ids next run and customer.io discards the duplicates.

use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::Error;
use crate::state::{self, State};

/// How often, at least, the state is saved while writes are confirmed.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// New work stops this long before the time budget ends, so the final save fits: a tenth of
/// the budget, at most ten seconds.
pub fn soft_deadline(started: Instant, budget: Duration) -> Instant {
    let margin = (budget / 10).min(Duration::from_secs(10));
    started + budget.saturating_sub(margin)
}

/// Saves the state at most once per [`CHECKPOINT_EVERY`] and stops the run at the soft
/// deadline.
pub struct Checkpoint<'a> {
    data_dir: &'a Path,
    last_save: Instant,
    /// Time between saves: [`CHECKPOINT_EVERY`], or ten times the last save's duration when
    /// that is longer, so saving a large state never takes more than a tenth of the run.
    interval: Duration,
    soft_deadline: Instant,
    budget: Duration,
}

impl Checkpoint<'_> {
    /// Checkpoints for a run that has just saved its state.
    pub fn new(data_dir: &Path, soft_deadline: Instant, budget: Duration) -> Checkpoint<'_> {
        Checkpoint {
            data_dir,
            last_save: Instant::now(),
            interval: CHECKPOINT_EVERY,
            soft_deadline,
            budget,
        }
    }

    /// Called after each confirmed piece of work: saves when a checkpoint is due.
    ///
    /// # Errors
    /// The state cannot be saved (74), or the soft deadline has passed (75).
    pub fn after_progress(&mut self, state: &State) -> Result<(), Error> {
        if self.last_save.elapsed() >= self.interval {
            let started = Instant::now();
            state::save(self.data_dir, state)?;
            self.last_save = Instant::now();
            self.interval = CHECKPOINT_EVERY.max(started.elapsed() * 10);
        }
        if Instant::now() >= self.soft_deadline {
            return Err(Error::TimeBudget(self.budget));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_a_tenth_of_the_budget_at_most_ten_seconds() {
        let start = Instant::now();
        let cases = [
            (Duration::from_secs(240), Duration::from_secs(230)),
            (Duration::from_secs(50), Duration::from_secs(45)),
            (Duration::from_secs(2), Duration::from_millis(1800)),
            (Duration::ZERO, Duration::ZERO),
        ];
        for (budget, stop_after) in cases {
            assert_eq!(
                soft_deadline(start, budget),
                start + stop_after,
                "{budget:?}"
            );
        }
    }
}

//! Saving the state while a run sends (SPEC 5.3), and the run's deadlines (SPEC 2
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

/// The instants a run with a time budget works to.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// Nothing new starts after this: no GIS page, no customer.io request.
    pub soft: Instant,
    /// What is still in flight is abandoned at this instant, leaving time for the save.
    pub hard: Instant,
}

impl Deadlines {
    /// The deadlines of a run that started at `started` with `budget`: new work stops a
    /// margin before the budget ends (a tenth of it, at most ten seconds); work in flight
    /// may use four fifths of that margin, the rest is for the final save.
    pub fn new(started: Instant, budget: Duration) -> Deadlines {
        let margin = (budget / 10).min(Duration::from_secs(10));
        let end = started + budget;
        Deadlines {
            soft: end - margin,
            hard: end - margin / 5,
        }
    }
}

/// Saves the state at most once per [`CHECKPOINT_EVERY`] while writes are confirmed.
pub struct Checkpoint<'a> {
    data_dir: &'a Path,
    last_save: Instant,
    /// Time between saves: [`CHECKPOINT_EVERY`], or ten times the last save's duration when
    /// that is longer, so saving a large state never takes more than a tenth of the run.
    interval: Duration,
    budget: Duration,
}

impl Checkpoint<'_> {
    /// Checkpoints for a run that has just saved its state.
    pub fn new(data_dir: &Path, budget: Duration) -> Checkpoint<'_> {
        Checkpoint {
            data_dir,
            last_save: Instant::now(),
            interval: CHECKPOINT_EVERY,
            budget,
        }
    }

    /// The run's time budget (for the message of a budget stop).
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// Whether the next [`Checkpoint::after_progress`] saves.
    pub fn is_due(&self) -> bool {
        self.last_save.elapsed() >= self.interval
    }

    /// Called after each settled piece of work: saves when a checkpoint is due.
    ///
    /// # Errors
    /// The state cannot be saved (74).
    pub fn after_progress(&mut self, state: &State) -> Result<(), Error> {
        if self.is_due() {
            let started = Instant::now();
            state::save(self.data_dir, state)?;
            self.last_save = Instant::now();
            self.interval = CHECKPOINT_EVERY.max(started.elapsed() * 10);
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
        let ms = Duration::from_millis;
        // (budget, soft, hard) after the start
        let cases = [
            (ms(240_000), ms(230_000), ms(238_000)),
            (ms(50_000), ms(45_000), ms(49_000)),
            (ms(2_000), ms(1_800), ms(1_960)),
            (ms(0), ms(0), ms(0)),
        ];
        for (budget, soft, hard) in cases {
            let d = Deadlines::new(start, budget);
            assert_eq!((d.soft, d.hard), (start + soft, start + hard), "{budget:?}");
        }
    }
}

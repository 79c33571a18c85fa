//! The flow of one run's records (SPEC 4, 5.3): each person and application read is
//! planned at once ([`Planner`]) and its writes go straight to customer.io ([`Sender`]),
//! unless the gate is closed: while the large-change guard has not seen the whole change
//! (it judges a run before anything is sent), and for good in a dry run, writes are held.
//!
//! So a first sync plans and sends as it reads and never holds the whole population; a run
//! the guard must judge holds only its change.
//!
//! Besides what is read, a run plans from the state alone: the clears of excluded attributes
//! for people it does not read (SPEC 8.3), and the removals `forget` left unconfirmed (8.2),
//! sent once the guard let the run through (`forget` itself is never refused by it).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::error::Error;
use crate::model::{Application, Person, PersonId};
use crate::plan::{Departure, Identify, PersonPlan, Plan, Planner};
use crate::state::{self, Removal};

use super::send::{Ledger, Sender, Work};

/// How old the watermark may grow before a run that changed nothing saves the state to
/// advance it.
pub const WATERMARK_REFRESH: chrono::Duration = chrono::Duration::hours(1);

/// Whether writes go out as they are planned.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// Sent as planned.
    Open,
    /// Held until the guard has judged the whole change (then sent, or refused).
    UntilJudged,
    /// Held for good: a dry run only shows them.
    DryRun,
}

/// Planning and sending for one run.
pub struct Flow<'a, 'c> {
    pub planner: Planner<'a>,
    pub ledger: Ledger<'a>,
    pub sender: Sender<'c>,
    gate: Gate,
    held_identifies: Vec<Work>,
    held_events: Vec<Work>,
    /// People with at least one write planned in this run.
    pub planned_people: HashSet<PersonId>,
    /// People the state knew before this run who have events planned (for the guard).
    pub known_with_events: HashSet<PersonId>,
    /// People the state knows whose profile this run would delete because they left (for
    /// the guard; `forget`'s removals are not judged).
    pub known_deleted: HashSet<PersonId>,
    data_dir: &'a std::path::Path,
    started: chrono::DateTime<chrono::Utc>,
    /// The state records this run as in progress (set before the first write goes out).
    marked_in_progress: bool,
}

impl<'a, 'c> Flow<'a, 'c> {
    /// A flow for a run that started at `started`.
    pub fn new(
        planner: Planner<'a>,
        ledger: Ledger<'a>,
        sender: Sender<'c>,
        gate: Gate,
        data_dir: &'a std::path::Path,
        started: chrono::DateTime<chrono::Utc>,
    ) -> Flow<'a, 'c> {
        Flow {
            planner,
            ledger,
            sender,
            gate,
            held_identifies: Vec::new(),
            held_events: Vec::new(),
            planned_people: HashSet::new(),
            known_with_events: HashSet::new(),
            known_deleted: HashSet::new(),
            data_dir,
            started,
            marked_in_progress: false,
        }
    }

    /// Plans a person read from GIS (each distinct person once) and sends their identify.
    ///
    /// # Errors
    /// The state cannot be saved (74).
    pub async fn person(&mut self, person: &Person) -> Result<(), Error> {
        let identify = self.planner.person(self.ledger.state, person);
        match identify {
            Some(identify) => self.identify(person.id, identify).await,
            None => Ok(()),
        }
    }

    /// Plans what happens to a known person a full read no longer finds: `in_scope = false`,
    /// or with `on_leave = "delete"` the removal of their profile (SPEC 5.4, 8.3).
    ///
    /// # Errors
    /// The state cannot be saved (74).
    pub async fn left_scope(&mut self, person_id: PersonId) -> Result<(), Error> {
        match self.planner.left_scope(self.ledger.state, person_id) {
            Some(Departure::Mark(identify)) => self.identify(person_id, identify).await,
            Some(Departure::Delete(removal)) => self.delete(removal).await,
            None => Ok(()),
        }
    }

    /// Plans the removal of a known person whom GIS no longer has, with `on_leave =
    /// "delete"` (SPEC 8.3).
    ///
    /// # Errors
    /// The state cannot be saved (74).
    pub async fn gone_from_gis(&mut self, person_id: PersonId) -> Result<(), Error> {
        match self.planner.gone_from_gis(self.ledger.state, person_id) {
            Some(removal) => self.delete(removal).await,
            None => Ok(()),
        }
    }

    async fn delete(&mut self, removal: Removal) -> Result<(), Error> {
        self.known_deleted.insert(removal.person_id);
        self.route(Work::Remove(removal)).await
    }

    /// Plans the clears of excluded attributes (SPEC 8.3) for the people of the state this
    /// run does not read (`people_read`) and has nothing else planned for: the state alone
    /// says who holds one. Call it once every person and departure is planned, before
    /// [`Flow::identifies_done`].
    ///
    /// # Errors
    /// The state cannot be saved (74).
    pub async fn clear_excluded(&mut self, people_read: &HashSet<PersonId>) -> Result<(), Error> {
        for person_id in self.planner.holding_excluded(self.ledger.state) {
            if people_read.contains(&person_id) || self.planned_people.contains(&person_id) {
                continue;
            }
            if let Some(identify) = self.planner.clear_excluded(self.ledger.state, person_id) {
                self.identify(person_id, identify).await?;
            }
        }
        Ok(())
    }

    /// Sends the removals `ciosync forget` recorded but customer.io has not confirmed (a kill
    /// cut it short, SPEC 8.2). Call it once the guard let the run through: a refused run
    /// sends nothing.
    ///
    /// # Errors
    /// The state cannot be saved (74).
    pub async fn complete_forgets(&mut self) -> Result<(), Error> {
        for removal in self.planner.unfinished_forgets(self.ledger.state) {
            self.route(Work::Remove(removal)).await?;
        }
        Ok(())
    }

    async fn identify(&mut self, person_id: PersonId, identify: Identify) -> Result<(), Error> {
        self.route(Work::Identify {
            person_id,
            identify,
        })
        .await
    }

    /// Plans an application read from GIS (each distinct application once) and sends its
    /// events; `people_read` are the people this run read (rule 5). Call it only after
    /// [`Flow::identifies_done`].
    ///
    /// # Errors
    /// The state cannot be saved (74).
    pub async fn application(
        &mut self,
        application: &Application,
        people_read: &HashSet<PersonId>,
    ) -> Result<(), Error> {
        let events = self
            .planner
            .application(self.ledger.state, application, |id| {
                people_read.contains(&id)
            });
        let Some(first) = events.first() else {
            return Ok(());
        };
        let person_id = first.after.person_id;
        if self.ledger.state.people.contains_key(&person_id) {
            self.known_with_events.insert(person_id);
        }
        self.route(Work::Events {
            person_id,
            application_id: application.id,
            events,
        })
        .await
    }

    /// Every identify of the run is planned: wait until customer.io has settled them, so
    /// events go only to people whose identify it confirmed (SPEC 4.4).
    ///
    /// # Errors
    /// The state cannot be saved (74).
    pub async fn identifies_done(&mut self) -> Result<(), Error> {
        if self.gate == Gate::Open {
            self.sender.drain(&mut self.ledger).await?;
        }
        Ok(())
    }

    /// The guard let the change through: sends what was held, identifies first.
    ///
    /// # Errors
    /// The state cannot be saved (74).
    pub async fn open(&mut self) -> Result<(), Error> {
        if self.gate != Gate::UntilJudged {
            return Ok(());
        }
        self.gate = Gate::Open;
        for work in std::mem::take(&mut self.held_identifies) {
            self.submit(work).await?;
        }
        self.identifies_done().await?;
        for work in std::mem::take(&mut self.held_events) {
            self.submit(work).await?;
        }
        Ok(())
    }

    /// What a dry run shows: the held writes as a plan, by person.
    pub fn held_plan(&mut self) -> Plan {
        let mut people: BTreeMap<PersonId, PersonPlan> = BTreeMap::new();
        let works = std::mem::take(&mut self.held_identifies)
            .into_iter()
            .chain(std::mem::take(&mut self.held_events));
        for work in works {
            let person_id = work.person_id();
            let plan = people.entry(person_id).or_insert_with(|| PersonPlan {
                person_id,
                identify: None,
                events: Vec::new(),
                removal: None,
            });
            match work {
                Work::Identify { identify, .. } => plan.identify = Some(identify),
                Work::Events { events, .. } => plan.events.extend(events),
                Work::Remove(removal) => plan.removal = Some(removal),
                // Only `forget --undo` unsuppresses; a run never plans it.
                Work::Unsuppress { .. } => {}
            }
        }
        for plan in people.values_mut() {
            plan.events.sort_by_key(|e| e.application_id);
        }
        Plan {
            people: people.into_values().collect(),
            stats: self.planner.stats.clone(),
        }
    }

    /// Waits for everything in flight to settle (or the hard deadline).
    ///
    /// # Errors
    /// The state cannot be saved (74).
    pub async fn finish(&mut self) -> Result<(), Error> {
        self.sender.drain(&mut self.ledger).await
    }

    /// Stops sending for `reason`: nothing new starts; what is in flight settles.
    pub fn stop(&mut self, reason: Error) {
        self.sender.stop(reason);
    }

    /// Ends the run's writes and saves the state. A run nothing stopped completes: the
    /// people it could not finish stay pending, the others leave the list, and the
    /// watermark advances (the last full read too, when `full_read_complete` is
    /// `Some(true)`). A stopped run adds the people it could not finish to the list; the
    /// rest of what it did not send, the next run reads again (its read starts where this
    /// one's did: the watermark and the last full read did not move).
    ///
    /// # Errors
    /// What stopped the run, else a save that failed (74).
    pub fn close(&mut self, full_read_complete: Option<bool>) -> Result<(), Error> {
        let stop = self.sender.take_stop();
        self.ledger.apply_removals();
        let state = &mut *self.ledger.state;
        let unfinished = self.ledger.unfinished.iter().copied();
        let mut must_save = self.marked_in_progress;
        if stop.is_none() {
            let pending: BTreeSet<PersonId> = unfinished.collect();
            let full_read = full_read_complete == Some(true);
            // A run that sent nothing, read incrementally and left the pending list as it
            // was would rewrite the whole state (190 MiB at a million people) only to move
            // the watermark; it does so once the watermark is an hour old. An older
            // watermark only makes the next incremental read look further back.
            let watermark_fresh = state
                .watermark
                .is_some_and(|watermark| self.started - watermark < WATERMARK_REFRESH);
            must_save |= full_read
                || pending != state.pending_people
                || state.run_in_progress.is_some()
                || !watermark_fresh;
            if must_save {
                state.pending_people = pending;
                state.complete_run(self.started, full_read);
            }
        } else {
            state.pending_people.extend(unfinished);
        }
        let saved = if must_save {
            state::save(self.data_dir, state)
        } else {
            Ok(())
        };
        match (stop, saved) {
            (Some(e), Err(save)) => {
                tracing::warn!(error = %crate::error::chain(&save), "The state could not be saved after the run stopped.");
                Err(e)
            }
            (Some(e), Ok(())) => Err(e),
            (None, saved) => saved.map_err(Error::from),
        }
    }

    /// Sends or holds `work`.
    async fn route(&mut self, work: Work) -> Result<(), Error> {
        self.planned_people.insert(work.person_id());
        match (&self.gate, &work) {
            (Gate::Open, _) => self.submit(work).await,
            // Actions on a person as a whole wait with the identifies: nothing depends on them.
            (_, Work::Identify { .. } | Work::Remove(_) | Work::Unsuppress { .. }) => {
                self.held_identifies.push(work);
                Ok(())
            }
            (_, Work::Events { .. }) => {
                self.held_events.push(work);
                Ok(())
            }
        }
    }

    /// Sends `work`; events of a person whose identify was rejected wait for a later run.
    async fn submit(&mut self, work: Work) -> Result<(), Error> {
        if !self.marked_in_progress {
            // A kill from here on leaves a state that says a run was under way, so the next
            // run resumes (the large-change guard does not judge a resumed run).
            self.ledger.state.run_in_progress = Some(self.started);
            state::save(self.data_dir, self.ledger.state)?;
            self.marked_in_progress = true;
        }
        let person_id = work.person_id();
        if matches!(work, Work::Events { .. }) && self.ledger.blocked.contains(&person_id) {
            self.ledger.hold(&work);
            return Ok(());
        }
        self.sender.submit(work, &mut self.ledger).await
    }
}

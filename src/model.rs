//! Domain types shared by the GIS client, planning and state: people, applications, the
//! steps of the customer flow and the side events (SPEC 4.1, 4.2).
//!
//! No I/O here. GIS-specific decoding lives in `gis`; what to send lives in `plan`.

use chrono::{DateTime, Utc};

/// A GIS person id (GIS sends it as a string of digits).
pub type PersonId = u64;
/// A GIS opportunity application id.
pub type ApplicationId = u64;

/// A person as read from GIS, already decoded leniently: every field but `id` may be missing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Person {
    pub id: PersonId,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub full_name: Option<String>,
    /// `YYYY-MM-DD`, as GIS sends `dob`.
    pub dob: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub interviewed: Option<bool>,
    pub profile_photo: Option<String>,
    pub status: Option<String>,
    pub cv_url: Option<String>,
    /// GIS types it as a String.
    pub nps_score: Option<String>,
    pub can_apply: Option<bool>,
    pub home_lc_id: Option<u64>,
    pub home_lc_name: Option<String>,
    pub home_mc_name: Option<String>,
}

/// The profile attributes ciosync sends (SPEC 4.1), in a fixed order. The order is part of
/// the state format (fingerprints are stored by position): append, never reorder or rename.
pub const ATTRIBUTES: [&str; 14] = [
    "email",
    "created_at",
    "first_name",
    "last_name",
    "full_name",
    "birthday",
    "interviewed",
    "photo",
    "status",
    "cv",
    "nps_score",
    "can_apply",
    "home_lc",
    "home_lc_country",
];

/// A programme as GIS names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Programme {
    pub short_name: Option<String>,
    pub short_name_display: Option<String>,
}

/// The date fields that stamp steps and side events (SPEC 4.2); `meta_*` are `meta { ... }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplicationDates {
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub date_matched: Option<DateTime<Utc>>,
    pub meta_date_matched: Option<DateTime<Utc>>,
    pub an_signed_at: Option<DateTime<Utc>>,
    pub date_approved: Option<DateTime<Utc>>,
    pub meta_date_approved: Option<DateTime<Utc>>,
    pub date_realized: Option<DateTime<Utc>>,
    pub meta_date_realized: Option<DateTime<Utc>>,
    pub meta_remote_realized_at: Option<DateTime<Utc>>,
    pub experience_end_date: Option<DateTime<Utc>>,
    pub meta_date_completed: Option<DateTime<Utc>>,
    pub meta_date_withdrawn: Option<DateTime<Utc>>,
    pub meta_date_rejected: Option<DateTime<Utc>>,
    pub matched_or_rejected_at: Option<DateTime<Utc>>,
    pub date_approval_broken: Option<DateTime<Utc>>,
    pub meta_date_approval_broken: Option<DateTime<Utc>>,
    pub date_realisation_broke: Option<DateTime<Utc>>,
    pub meta_date_realisation_broke: Option<DateTime<Utc>>,
    pub meta_date_remote_realization_broken_at: Option<DateTime<Utc>>,
}

/// An opportunity application as read from GIS, decoded leniently.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Application {
    pub id: ApplicationId,
    /// `None` when GIS sent no usable person; planning skips and counts it.
    pub person_id: Option<PersonId>,
    /// The raw GIS `status` (drives the rules; `current_status` is ignored).
    pub status: String,
    pub opportunity_id: Option<u64>,
    pub opportunity_title: Option<String>,
    /// `opportunity.programme`, else the first of `opportunity.programmes`.
    pub programme: Option<Programme>,
    pub dates: ApplicationDates,
}

/// A step of the main customer flow, with its rank (SPEC 4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    Applied = 1,
    Accepted = 2,
    Approved = 3,
    Realized = 4,
    Finished = 5,
    Completed = 6,
}

impl Step {
    /// All steps in rank order.
    pub const ALL: [Step; 6] = [
        Step::Applied,
        Step::Accepted,
        Step::Approved,
        Step::Realized,
        Step::Finished,
        Step::Completed,
    ];

    /// The rank, 1 to 6.
    pub fn rank(self) -> u8 {
        self as u8
    }

    /// The step for a rank 1 to 6.
    pub fn from_rank(rank: u8) -> Option<Step> {
        Step::ALL.get(usize::from(rank).checked_sub(1)?).copied()
    }

    /// The event name suffix (`GCDP` + this).
    pub fn name(self) -> &'static str {
        match self {
            Step::Applied => "applied",
            Step::Accepted => "accepted",
            Step::Approved => "approved",
            Step::Realized => "realized",
            Step::Finished => "finished",
            Step::Completed => "completed",
        }
    }
}

/// A side status, off the main path (SPEC 4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    Withdrawn,
    Rejected,
    Declined,
    ApprovalBroken,
    RealizationBroken,
    AcceptanceBroken,
    RemoteRealizationBroken,
}

impl Side {
    /// All side statuses.
    pub const ALL: [Side; 7] = [
        Side::Withdrawn,
        Side::Rejected,
        Side::Declined,
        Side::ApprovalBroken,
        Side::RealizationBroken,
        Side::AcceptanceBroken,
        Side::RemoteRealizationBroken,
    ];

    /// The GIS status value and the event name suffix.
    pub fn name(self) -> &'static str {
        match self {
            Side::Withdrawn => "withdrawn",
            Side::Rejected => "rejected",
            Side::Declined => "declined",
            Side::ApprovalBroken => "approval_broken",
            Side::RealizationBroken => "realization_broken",
            Side::AcceptanceBroken => "acceptance_broken",
            Side::RemoteRealizationBroken => "remote_realization_broken",
        }
    }

    /// The side status for a GIS status value.
    pub fn from_name(name: &str) -> Option<Side> {
        Side::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Anything ciosync sends as an event: a step or a side event. Counts are kept per kind,
/// without the programme (SPEC 4.2 rule 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    Step(Step),
    Side(Side),
}

impl EventKind {
    /// Number of kinds: 6 steps and 7 side events.
    pub const COUNT: usize = 13;

    /// All kinds, steps first; [`EventKind::index`] is the position here. Part of the state
    /// format: append, never reorder.
    pub const ALL: [EventKind; 13] = [
        EventKind::Step(Step::Applied),
        EventKind::Step(Step::Accepted),
        EventKind::Step(Step::Approved),
        EventKind::Step(Step::Realized),
        EventKind::Step(Step::Finished),
        EventKind::Step(Step::Completed),
        EventKind::Side(Side::Withdrawn),
        EventKind::Side(Side::Rejected),
        EventKind::Side(Side::Declined),
        EventKind::Side(Side::ApprovalBroken),
        EventKind::Side(Side::RealizationBroken),
        EventKind::Side(Side::AcceptanceBroken),
        EventKind::Side(Side::RemoteRealizationBroken),
    ];

    /// Position in [`EventKind::ALL`].
    pub fn index(self) -> usize {
        match self {
            EventKind::Step(s) => usize::from(s.rank()) - 1,
            EventKind::Side(s) => 6 + s as usize,
        }
    }

    /// The event name suffix.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Step(s) => s.name(),
            EventKind::Side(s) => s.name(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kind_index_matches_position_in_all() {
        for (i, kind) in EventKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i, "{kind:?}");
        }
    }

    #[test]
    fn step_rank_round_trips() {
        for step in Step::ALL {
            assert_eq!(Step::from_rank(step.rank()), Some(step));
        }
        assert_eq!(Step::from_rank(0), None);
        assert_eq!(Step::from_rank(7), None);
    }

    #[test]
    fn side_names_round_trip() {
        for side in Side::ALL {
            assert_eq!(Side::from_name(side.name()), Some(side));
        }
        assert_eq!(Side::from_name("approved"), None);
    }
}

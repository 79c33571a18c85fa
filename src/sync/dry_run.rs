//! What `run --dry-run` shows (SPEC 1): per person, the attribute names that would change and
//! the events with their timestamps and ids. No values, so the output carries no personal
//! data.

use chrono::DateTime;
use serde::Serialize;

use crate::model::PersonId;
use crate::plan::Plan;

/// What a dry run would send to one person.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DryRunPerson {
    pub person_id: PersonId,
    pub attributes: Vec<String>,
    pub events: Vec<DryRunEvent>,
}

/// One event of a dry run.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DryRunEvent {
    pub name: String,
    pub timestamp: i64,
    pub id: String,
}

/// The dry-run view of a plan: everyone with something to send, in plan order.
pub fn view(plan: &Plan) -> Vec<DryRunPerson> {
    plan.people
        .iter()
        .map(|p| DryRunPerson {
            person_id: p.person_id,
            attributes: p
                .identify
                .as_ref()
                .map(|i| i.attributes.names())
                .unwrap_or_default(),
            events: p
                .events
                .iter()
                .map(|e| DryRunEvent {
                    name: e.name.clone(),
                    timestamp: e.timestamp,
                    id: e.id.clone(),
                })
                .collect(),
        })
        .collect()
}

/// Renders a dry run as text, one line per person.
pub fn text(people: &[DryRunPerson]) -> String {
    let mut out = String::new();
    for p in people {
        let attributes = if p.attributes.is_empty() {
            "-".to_owned()
        } else {
            p.attributes.join(",")
        };
        let events: Vec<String> = p
            .events
            .iter()
            .map(|e| {
                let at = DateTime::from_timestamp(e.timestamp, 0)
                    .map_or_else(|| e.timestamp.to_string(), |t| t.to_rfc3339());
                format!("{}@{at}", e.name)
            })
            .collect();
        out.push_str(&format!(
            "person {} attributes: {} events: {}\n",
            p.person_id,
            attributes,
            if events.is_empty() {
                "-".to_owned()
            } else {
                events.join(" ")
            }
        ));
    }
    out
}

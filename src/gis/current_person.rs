//! Who a GIS credential belongs to (`currentPerson`, SPEC 8.5): its id, its home LC and the
//! offices it currently holds a position in, each with id and name.
//!
//! `check` names the home LC and says whether `gis.home_lcs` holds it, so a wrong LC id shows
//! before the first sync reads nobody; `init` offers the home LC and the current offices as
//! the default `home_lcs`. Decoding is lenient, like every GIS read: a field that is missing,
//! null or oddly typed is left out rather than failing the credential check.

use serde_json::Value;

use super::decode;

/// `currentPerson` with its home LC and current offices: `check`'s and `init`'s proof that the
/// GIS credential works. Selects only fields that `CurrentPerson` and `Office` have in
/// `gis/schema.graphql`.
pub const CURRENT_PERSON_QUERY: &str = "query CurrentPerson {
  currentPerson {
    id full_name
    home_lc { id name }
    current_offices { id name }
  }
}";

/// The person a GIS credential belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentPerson {
    /// The GIS person id.
    pub id: String,
    /// The name GIS shows for them, when it has one.
    pub full_name: Option<String>,
    /// Their home LC, when GIS names one.
    pub home_lc: Option<Office>,
    /// The offices they currently hold a position in (may repeat the home LC).
    pub current_offices: Vec<Office>,
}

/// An AIESEC office (an LC, an MC, ...) as GIS names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Office {
    pub id: u64,
    /// Its name; GIS may leave it out.
    pub name: Option<String>,
}

impl Office {
    /// `1337 Atlantis`, or `1337` without a name.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("{} {name}", self.id),
            None => self.id.to_string(),
        }
    }
}

impl CurrentPerson {
    /// Decodes the `data` of an answer to [`CURRENT_PERSON_QUERY`]; `None` when it carries no
    /// person id (GIS did not say who the credential belongs to).
    pub fn decode(data: &Value) -> Option<CurrentPerson> {
        let person = data.get("currentPerson")?;
        let id = decode::string(person.get("id"))?;
        let current_offices = match person.get("current_offices") {
            Some(Value::Array(offices)) => offices.iter().filter_map(office).collect(),
            Some(single) => office(single).into_iter().collect(),
            None => Vec::new(),
        };
        Some(CurrentPerson {
            id,
            full_name: decode::string(person.get("full_name")).filter(|n| !n.trim().is_empty()),
            home_lc: person.get("home_lc").and_then(office),
            current_offices,
        })
    }

    /// The LCs `init` offers as `home_lcs`: the home LC first, then the current offices, each
    /// once.
    pub fn offered_lcs(&self) -> Vec<&Office> {
        let mut offered: Vec<&Office> = Vec::new();
        for office in self.home_lc.iter().chain(&self.current_offices) {
            if !offered.iter().any(|o| o.id == office.id) {
                offered.push(office);
            }
        }
        offered
    }

    /// What `check` and `init` say about the home LC against `home_lcs`:
    /// `person 999, home LC 1337 Atlantis: among gis.home_lcs`.
    pub fn home_lc_report(&self, home_lcs: &[u64]) -> String {
        let lc = match &self.home_lc {
            None => return format!("person {}, no home LC in GIS", self.id),
            Some(lc) => lc,
        };
        if home_lcs.contains(&lc.id) {
            format!(
                "person {}, home LC {}: among gis.home_lcs",
                self.id,
                lc.label()
            )
        } else {
            let configured: Vec<String> = home_lcs.iter().map(u64::to_string).collect();
            format!(
                "person {}, home LC {}: NOT among gis.home_lcs [{}]; check the LC ids",
                self.id,
                lc.label(),
                configured.join(", ")
            )
        }
    }
}

fn office(value: &Value) -> Option<Office> {
    Some(Office {
        id: decode::id(value.get("id"))?,
        name: decode::string(value.get("name")).filter(|n| !n.trim().is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bot() -> CurrentPerson {
        CurrentPerson::decode(&json!({"currentPerson": {
            "id": "999",
            "full_name": "Sync Bot",
            "home_lc": {"id": "1337", "name": "Atlantis"},
            "current_offices": [
                {"id": "1337", "name": "Atlantis"},
                {"id": 1338, "name": "Lemuria"},
                {"id": null, "name": "no id"},
            ],
        }}))
        .expect("a person")
    }

    #[test]
    fn decodes_ids_given_as_strings_or_numbers_and_skips_offices_without_one() {
        let person = bot();
        assert_eq!(person.id, "999");
        assert_eq!(person.full_name.as_deref(), Some("Sync Bot"));
        assert_eq!(
            person.home_lc,
            Some(Office {
                id: 1337,
                name: Some("Atlantis".into())
            })
        );
        let ids: Vec<u64> = person.current_offices.iter().map(|o| o.id).collect();
        assert_eq!(ids, vec![1337, 1338]);
    }

    #[test]
    fn a_person_without_an_id_is_no_proof() {
        assert_eq!(CurrentPerson::decode(&json!({"currentPerson": null})), None);
        assert_eq!(
            CurrentPerson::decode(&json!({"currentPerson": {"full_name": "x"}})),
            None
        );
    }

    #[test]
    fn nulls_and_a_single_office_object_are_tolerated() {
        let person = CurrentPerson::decode(&json!({"currentPerson": {
            "id": 7, "full_name": null, "home_lc": null,
            "current_offices": {"id": "2001", "name": ""},
        }}))
        .expect("a person");
        assert_eq!(person.home_lc, None);
        assert_eq!(person.full_name, None);
        assert_eq!(
            person.current_offices,
            vec![Office {
                id: 2001,
                name: None
            }]
        );
        assert_eq!(person.offered_lcs()[0].label(), "2001");
    }

    #[test]
    fn offers_the_home_lc_first_then_each_office_once() {
        let person = bot();
        let offered: Vec<String> = person.offered_lcs().iter().map(|o| o.label()).collect();
        assert_eq!(offered, vec!["1337 Atlantis", "1338 Lemuria"]);
    }

    #[test]
    fn home_lc_report_says_whether_it_is_configured() {
        let person = bot();
        assert_eq!(
            person.home_lc_report(&[1338, 1337]),
            "person 999, home LC 1337 Atlantis: among gis.home_lcs"
        );
        assert_eq!(
            person.home_lc_report(&[2001, 2002]),
            "person 999, home LC 1337 Atlantis: NOT among gis.home_lcs [2001, 2002]; check the LC ids"
        );
        let homeless = CurrentPerson {
            home_lc: None,
            ..person
        };
        assert_eq!(
            homeless.home_lc_report(&[1337]),
            "person 999, no home LC in GIS"
        );
    }

    #[test]
    fn query_is_read_only_and_selects_the_lcs() {
        assert!(CURRENT_PERSON_QUERY.starts_with("query "));
        assert!(CURRENT_PERSON_QUERY.contains("home_lc { id name }"));
        assert!(CURRENT_PERSON_QUERY.contains("current_offices { id name }"));
    }
}

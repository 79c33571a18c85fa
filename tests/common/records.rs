//! GIS-shaped records for hand-built scenarios, and the customer.io profile a person
//! syncs to.

use serde_json::{json, Value};

/// A GraphQL-shaped person in LC 1337.
pub fn person(id: u64) -> Value {
    json!({
        "id": id.to_string(),
        "email": format!("p_{id:040x}@inbound.aiesec.org"),
        "first_name": "Ana",
        "last_name": format!("Person{id}"),
        "full_name": format!("Ana Person{id}"),
        "dob": "2000-01-02",
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-02T00:00:00Z",
        "interviewed": false,
        "profile_photo": "https://cdn.example.org/p.png",
        "status": "open",
        "cv_url": null,
        "nps_score": null,
        "permissions": {"can_apply": true},
        "home_lc": {"id": "1337", "name": "Examplecity"},
        "home_mc": {"id": "1500", "name": "Freedonia"}
    })
}

/// An approved application of `person` (matched and approved in early 2024).
pub fn approved_application(id: u64, person: u64) -> Value {
    application(
        id,
        person,
        "approved",
        json!({"date_matched": "2024-02-18T15:00:00Z", "date_approved": "2024-03-02T14:10:00Z"}),
    )
}

/// A GraphQL-shaped application of `person` with `status` and the given top-level dates.
pub fn application(id: u64, person: u64, status: &str, dates: Value) -> Value {
    let app = json!({
        "id": id.to_string(),
        "status": status,
        "created_at": "2024-02-05T09:00:00Z",
        "updated_at": "2024-03-02T14:10:00Z",
        "person": {"id": person.to_string()},
        "opportunity": {
            "id": "770011",
            "title": "Coding club facilitator",
            "programme": {"short_name": "GCDP", "short_name_display": "GV"},
            "programmes": [{"short_name": "GCDP", "short_name_display": "GV"}]
        }
    });
    with_fields(app, dates)
}

/// `base` with the top-level `fields` set (added or replaced); both must be objects.
pub fn with_fields(mut base: Value, fields: Value) -> Value {
    let (Some(target), Some(fields)) = (base.as_object_mut(), fields.as_object()) else {
        panic!("objects expected");
    };
    for (k, v) in fields {
        target.insert(k.clone(), v.clone());
    }
    base
}

/// The profile customer.io holds for a fully synced [`person`]: no nulls on a first
/// identify.
pub fn full_profile(id: u64) -> Value {
    json!({
        "email": format!("p_{id:040x}@inbound.aiesec.org"),
        "created_at": unix("2024-01-01T00:00:00Z"),
        "first_name": "Ana",
        "last_name": format!("Person{id}"),
        "full_name": format!("Ana Person{id}"),
        "birthday": "2000-01-02",
        "interviewed": false,
        "photo": "https://cdn.example.org/p.png",
        "status": "open",
        "can_apply": true,
        "home_lc": "Examplecity",
        "home_lc_country": "Freedonia",
    })
}

/// Unix seconds of an RFC 3339 time.
pub fn unix(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .expect("test time")
        .timestamp()
}

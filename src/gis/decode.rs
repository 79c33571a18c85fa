//! Lenient decoding of GIS records into [`crate::model`] types (SPEC 3): ids as strings or
//! numbers, any nested object or date may be null, unknown statuses and programmes pass
//! through as data. A record we cannot use is reported as a [`Skip`], never a failure.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;

use crate::model::{Application, ApplicationDates, Person, Programme};

/// Why a record was skipped, and its id as GIS sent it (for the info log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub reason: &'static str,
    pub id: String,
}

/// A GIS response body as JSON. A body that is valid JSON except for escaped lone UTF-16
/// surrogates (`"\ud83d"` without its pair, which serde_json refuses) is read with each lone
/// surrogate replaced by U+FFFD, so one odd name does not fail a whole page. `None` when the
/// body is not JSON at all (an HTML error page, a cut body).
pub fn response(body: &[u8]) -> Option<Value> {
    match serde_json::from_slice(body) {
        Ok(value) => Some(value),
        Err(_) => serde_json::from_slice(&replace_lone_surrogates(body)?).ok(),
    }
}

/// `body` with every `\uXXXX` escape of an unpaired surrogate replaced by `\ufffd`, or `None`
/// when there is none (the body is broken in some other way).
fn replace_lone_surrogates(body: &[u8]) -> Option<Vec<u8>> {
    fn escape_at(body: &[u8], i: usize) -> Option<u16> {
        let hex = body.get(i..i + 6)?;
        if hex[0] != b'\\' || hex[1] != b'u' {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()
    }
    let is_high = |u: u16| (0xD800..0xDC00).contains(&u);
    let is_low = |u: u16| (0xDC00..0xE000).contains(&u);
    let mut out = Vec::with_capacity(body.len());
    let mut replaced = false;
    let mut i = 0;
    while i < body.len() {
        if body[i] != b'\\' {
            out.push(body[i]);
            i += 1;
            continue;
        }
        match escape_at(body, i) {
            Some(high) if is_high(high) && escape_at(body, i + 6).is_some_and(is_low) => {
                out.extend_from_slice(&body[i..i + 12]);
                i += 12;
            }
            Some(unit) if is_high(unit) || is_low(unit) => {
                out.extend_from_slice(b"\\ufffd");
                replaced = true;
                i += 6;
            }
            // Any other escape (including `\\`) is copied whole, so an escaped backslash
            // followed by `u` is never mistaken for an escape.
            _ => {
                out.extend_from_slice(body.get(i..i + 2).unwrap_or(&body[i..]));
                i += 2;
            }
        }
    }
    replaced.then_some(out)
}

/// A GIS id: digits in a string or a JSON number.
pub fn id(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn raw_id(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.chars().take(40).collect(),
        Some(Value::Null) | None => "<none>".to_owned(),
        Some(other) => other.to_string().chars().take(40).collect(),
    }
}

/// A string field; numbers and booleans are taken as their text, empty strings as given.
pub fn string(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A boolean field; `"true"`/`"false"` strings are accepted too.
pub fn boolean(value: Option<&Value>) -> Option<bool> {
    match value? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A GIS date-time in any form GIS uses: RFC 3339 with `Z` or an offset, with or without
/// fractional seconds, without a zone (taken as UTC), a plain date, or unix seconds.
/// Placeholders (`0000-00-00`) and garbage are `None`.
pub fn datetime(value: Option<&Value>) -> Option<DateTime<Utc>> {
    match value? {
        Value::String(s) => parse_datetime(s.trim()),
        Value::Number(n) => Utc.timestamp_opt(n.as_i64()?, 0).single(),
        _ => None,
    }
}

fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    if s.is_empty() || s.starts_with("0000") {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Some(t.and_utc());
        }
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f %z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S %Z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, format) {
            return Some(t.with_timezone(&Utc));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    }
    None
}

/// `dob` as `YYYY-MM-DD`; anything else (placeholders, garbage) is `None`.
fn date_only(value: Option<&Value>) -> Option<String> {
    let s = string(value)?;
    let day = s.get(..10).unwrap_or(&s);
    let parsed = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    Some(parsed.format("%Y-%m-%d").to_string())
}

fn object(value: Option<&Value>) -> Option<&serde_json::Map<String, Value>> {
    value?.as_object()
}

/// A person record, or why it was skipped.
pub fn person(record: &Value) -> Result<Person, Skip> {
    let Some(fields) = record.as_object() else {
        return Err(Skip {
            reason: "person_not_an_object",
            id: "<none>".to_owned(),
        });
    };
    let Some(person_id) = id(fields.get("id")) else {
        return Err(Skip {
            reason: "person_without_usable_id",
            id: raw_id(fields.get("id")),
        });
    };
    let home_lc = object(fields.get("home_lc"));
    let home_mc = object(fields.get("home_mc"));
    let permissions = object(fields.get("permissions"));
    Ok(Person {
        id: person_id,
        email: string(fields.get("email")),
        first_name: string(fields.get("first_name")),
        last_name: string(fields.get("last_name")),
        full_name: string(fields.get("full_name")),
        dob: date_only(fields.get("dob")),
        created_at: datetime(fields.get("created_at")),
        updated_at: datetime(fields.get("updated_at")),
        interviewed: boolean(fields.get("interviewed")),
        profile_photo: string(fields.get("profile_photo")),
        status: string(fields.get("status")),
        cv_url: cv_url(fields.get("cv_url")),
        nps_score: string(fields.get("nps_score")),
        can_apply: permissions.and_then(|p| boolean(p.get("can_apply"))),
        home_lc_id: home_lc.and_then(|lc| id(lc.get("id"))),
        home_lc_name: home_lc.and_then(|lc| string(lc.get("name"))),
        home_mc_name: home_mc.and_then(|mc| string(mc.get("name"))),
    })
}

/// `cv_url` is a string in GraphQL and was `{url}` in REST; accept both.
fn cv_url(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Object(o) => string(o.get("url")),
        other => string(Some(other)),
    }
}

fn programme(value: Option<&Value>) -> Option<Programme> {
    let fields = object(value)?;
    let programme = Programme {
        short_name: string(fields.get("short_name")).filter(|s| !s.is_empty()),
        short_name_display: string(fields.get("short_name_display")).filter(|s| !s.is_empty()),
    };
    (programme.short_name.is_some() || programme.short_name_display.is_some()).then_some(programme)
}

/// An application record, or why it was skipped.
pub fn application(record: &Value) -> Result<Application, Skip> {
    let Some(fields) = record.as_object() else {
        return Err(Skip {
            reason: "application_not_an_object",
            id: "<none>".to_owned(),
        });
    };
    let Some(application_id) = id(fields.get("id")) else {
        return Err(Skip {
            reason: "application_without_usable_id",
            id: raw_id(fields.get("id")),
        });
    };
    let meta = object(fields.get("meta"));
    let m = |key: &str| datetime(meta.and_then(|m| m.get(key)));
    let d = |key: &str| datetime(fields.get(key));
    let opportunity = object(fields.get("opportunity"));
    // `programme` may be null while `programmes` is set; `programmes` may be one object.
    let programme = opportunity.and_then(|o| {
        programme(o.get("programme")).or_else(|| match o.get("programmes") {
            Some(Value::Array(list)) => list.iter().find_map(|p| programme(Some(p))),
            other => programme(other),
        })
    });
    Ok(Application {
        id: application_id,
        person_id: object(fields.get("person")).and_then(|p| id(p.get("id"))),
        status: string(fields.get("status")).unwrap_or_default(),
        opportunity_id: opportunity.and_then(|o| id(o.get("id"))),
        opportunity_title: opportunity.and_then(|o| string(o.get("title"))),
        programme,
        dates: ApplicationDates {
            created_at: d("created_at"),
            updated_at: d("updated_at"),
            date_matched: d("date_matched"),
            meta_date_matched: m("date_matched"),
            an_signed_at: d("an_signed_at"),
            date_approved: d("date_approved"),
            meta_date_approved: m("date_approved"),
            date_realized: d("date_realized"),
            meta_date_realized: m("date_realized"),
            meta_remote_realized_at: m("remote_realized_at"),
            experience_end_date: d("experience_end_date"),
            meta_date_completed: m("date_completed"),
            meta_date_withdrawn: m("date_withdrawn"),
            meta_date_rejected: m("date_rejected"),
            matched_or_rejected_at: d("matched_or_rejected_at"),
            date_approval_broken: d("date_approval_broken"),
            meta_date_approval_broken: m("date_approval_broken"),
            date_realisation_broke: d("date_realisation_broke"),
            meta_date_realisation_broke: m("date_realisation_broke"),
            meta_date_remote_realization_broken_at: m("date_remote_realization_broken_at"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test date")
            .with_timezone(&Utc)
    }

    #[test]
    fn every_date_form_gis_uses() {
        let cases = [
            ("2024-02-05T09:00:00Z", Some(at("2024-02-05T09:00:00Z"))),
            (
                "2024-02-05T09:00:00.123Z",
                Some(at("2024-02-05T09:00:00.123Z")),
            ),
            (
                "2024-02-05T11:00:00+02:00",
                Some(at("2024-02-05T09:00:00Z")),
            ),
            ("2024-02-05T09:00:00", Some(at("2024-02-05T09:00:00Z"))),
            ("2024-02-05 09:00:00", Some(at("2024-02-05T09:00:00Z"))),
            (
                "2024-02-05 11:00:00 +0200",
                Some(at("2024-02-05T09:00:00Z")),
            ),
            ("2024-02-05", Some(at("2024-02-05T00:00:00Z"))),
            ("0000-00-00", None),
            ("", None),
            ("not a date", None),
            ("2024-13-45T99:00:00Z", None),
        ];
        for (text, expected) in cases {
            assert_eq!(datetime(Some(&json!(text))), expected, "{text}");
        }
        assert_eq!(
            datetime(Some(&json!(1_700_000_000))),
            Some(at("2023-11-14T22:13:20Z"))
        );
        assert_eq!(datetime(Some(&Value::Null)), None);
        assert_eq!(datetime(Some(&json!({"a": 1}))), None);
    }

    #[test]
    fn ids_as_strings_or_numbers() {
        assert_eq!(id(Some(&json!("4100231"))), Some(4_100_231));
        assert_eq!(id(Some(&json!(4100231))), Some(4_100_231));
        assert_eq!(id(Some(&json!("abc"))), None);
        assert_eq!(id(Some(&json!(-3))), None);
        assert_eq!(id(Some(&json!(1.5))), None);
        assert_eq!(id(None), None);
    }

    #[test]
    fn person_with_nulls_and_odd_types_decodes() {
        let p = person(&json!({
            "id": "17", "email": null, "dob": "0000-00-00", "nps_score": 9,
            "home_lc": null, "home_mc": {"name": "Freedonia"}, "permissions": {"can_apply": "true"},
            "cv_url": {"url": "https://cv"}, "interviewed": null
        }))
        .expect("usable person");
        assert_eq!(p.id, 17);
        assert_eq!(p.email, None);
        assert_eq!(p.dob, None);
        assert_eq!(p.nps_score.as_deref(), Some("9"));
        assert_eq!(p.home_lc_name, None);
        assert_eq!(p.home_mc_name.as_deref(), Some("Freedonia"));
        assert_eq!(p.can_apply, Some(true));
        assert_eq!(p.cv_url.as_deref(), Some("https://cv"));
    }

    #[test]
    fn unusable_person_is_a_skip_with_its_id() {
        let skip = person(&json!({"id": "x17"})).expect_err("bad id");
        assert_eq!(
            skip,
            Skip {
                reason: "person_without_usable_id",
                id: "x17".into()
            }
        );
        assert!(person(&json!({"email": "a@b"})).is_err());
        assert!(person(&json!("nope")).is_err());
    }

    #[test]
    fn application_programme_fallbacks() {
        let a = application(&json!({
            "id": "5", "status": "approved", "person": {"id": 7},
            "opportunity": {"id": "9", "title": "T", "programme": null,
                "programmes": [{"short_name": "GCDP", "short_name_display": "GV"}]},
            "meta": {"date_approved": "2024-03-02T14:10:00Z", "date_withdrawn": "garbage"}
        }))
        .expect("usable application");
        assert_eq!(a.person_id, Some(7));
        assert_eq!(a.opportunity_id, Some(9));
        assert_eq!(
            a.programme.as_ref().and_then(|p| p.short_name.as_deref()),
            Some("GCDP")
        );
        assert_eq!(a.dates.meta_date_approved, Some(at("2024-03-02T14:10:00Z")));
        assert_eq!(a.dates.meta_date_withdrawn, None);

        let single = application(&json!({
            "id": 6, "status": "open", "opportunity": {"id": 1, "programmes": {"short_name": "GE"}}
        }))
        .expect("usable");
        assert_eq!(
            single.programme.and_then(|p| p.short_name).as_deref(),
            Some("GE")
        );
        assert_eq!(single.person_id, None);

        let none = application(
            &json!({"id": 8, "status": "open", "opportunity": {"id": 1, "programmes": []}}),
        )
        .expect("usable");
        assert_eq!(none.programme, None);
    }
}

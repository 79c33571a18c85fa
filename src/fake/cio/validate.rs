//! The customer.io Track API limits and the messages its 400s carry (research §6: the
//! "invalid API requests" strings where documented, our own wording where not).

use serde_json::{Map, Value};

/// Longest identifier and attribute name, in bytes.
pub const MAX_ID_BYTES: usize = 150;
/// Longest attribute value, in bytes (serialized JSON for non-strings).
pub const MAX_VALUE_BYTES: usize = 1000;
/// Most attributes in one identify.
pub const MAX_ATTRIBUTES: usize = 300;
/// Longest event name, in bytes.
pub const MAX_EVENT_NAME_BYTES: usize = 100;
/// Largest event data, in bytes of serialized JSON.
pub const MAX_EVENT_DATA_BYTES: usize = 100_000;
/// Largest v2 operation (and `/entity` request), in bytes.
pub const MAX_OPERATION_BYTES: usize = 32_000;
/// Largest v2 `/batch` request, in bytes.
pub const MAX_BATCH_BYTES: usize = 500_000;

/// Why a request or operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// v2's machine-readable reason (`invalid` or `too_large`).
    pub reason: &'static str,
    /// The offending field (v2 reports it; v1 only has the message).
    pub field: String,
    pub message: String,
}

impl Invalid {
    /// An `invalid` value in `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            reason: "invalid",
            field: field.into(),
            message: message.into(),
        }
    }

    /// Something over a size limit.
    pub fn too_large(field: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            reason: "too_large",
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Who an operation is about, classified the way customer.io classifies identifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identifier {
    Id(String),
    Email(String),
    Phone(String),
    /// A customer.io internal id, without its `cio_` prefix.
    CioId(String),
}

impl Identifier {
    /// Classifies a v1 path identifier by its shape: `cio_` prefix, e-mail, else an id.
    pub fn from_path(raw: &str) -> Result<Identifier, Invalid> {
        check_identifier(raw)?;
        Ok(if let Some(cio_id) = raw.strip_prefix("cio_") {
            Identifier::CioId(cio_id.to_owned())
        } else if raw.contains('@') {
            Identifier::Email(raw.to_owned())
        } else {
            Identifier::Id(raw.to_owned())
        })
    }

    /// Reads v2 `identifiers`: exactly one of `id`, `email`, `phone`, `cio_id`.
    pub fn from_v2(identifiers: Option<&Value>) -> Result<Identifier, Invalid> {
        let Some(Value::Object(map)) = identifiers else {
            return Err(Invalid::new("identifiers", "an identifier is required"));
        };
        let given: Vec<(&String, &Value)> = map
            .iter()
            .filter(|(key, value)| {
                matches!(key.as_str(), "id" | "email" | "phone" | "cio_id") && !value.is_null()
            })
            .collect();
        let (kind, value) = match given.as_slice() {
            [] => return Err(Invalid::new("identifiers", "an identifier is required")),
            [one] => *one,
            _ => {
                return Err(Invalid::new(
                    "identifiers",
                    "only one identifier may be given",
                ))
            }
        };
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) if kind == "id" => n.to_string(),
            _ => {
                return Err(Invalid::new(
                    format!("identifiers.{kind}"),
                    format!("{kind} must be a string value"),
                ))
            }
        };
        check_identifier(&text).map_err(|mut e| {
            e.field = format!("identifiers.{kind}");
            e
        })?;
        Ok(match kind.as_str() {
            "email" => Identifier::Email(text),
            "phone" => Identifier::Phone(text),
            "cio_id" => Identifier::CioId(text),
            _ => Identifier::Id(text),
        })
    }
}

fn check_identifier(raw: &str) -> Result<(), Invalid> {
    if raw.is_empty() {
        return Err(Invalid::new("id", "id attribute cannot be an empty string"));
    }
    if raw.len() > MAX_ID_BYTES {
        return Err(Invalid::too_large(
            "id",
            format!("identifier cannot be longer than {MAX_ID_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Checks identify attributes against the count, name and value limits.
pub fn check_attributes(attributes: &Map<String, Value>, field: &str) -> Result<(), Invalid> {
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(Invalid::new(
            field,
            format!("cannot identify more than {MAX_ATTRIBUTES} attributes in one request"),
        ));
    }
    for (name, value) in attributes {
        if name.len() > MAX_ID_BYTES {
            return Err(Invalid::new(
                field,
                format!("attribute name cannot be longer than {MAX_ID_BYTES} bytes"),
            ));
        }
        if value_bytes(value) > MAX_VALUE_BYTES {
            return Err(Invalid::new(
                format!("{field}.{name}"),
                format!(
                    "value for attribute '{name}' cannot be longer than {MAX_VALUE_BYTES} bytes"
                ),
            ));
        }
    }
    Ok(())
}

/// A string counts its UTF-8 bytes; anything else its serialized JSON.
fn value_bytes(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len(),
        other => other.to_string().len(),
    }
}

/// An event that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct EventInput {
    /// Trimmed, as customer.io stores it.
    pub name: String,
    /// Upper-cased ULID (ULIDs compare without case).
    pub id: Option<String>,
    /// Integer unix seconds; any other value is left out (the real API then uses "now").
    pub timestamp: Option<i64>,
    pub data: Value,
}

/// Checks an event's `name`, `id`, `timestamp` and data (`data_field` is `data` in v1 and
/// `attributes` in v2).
pub fn check_event(
    name: Option<&Value>,
    id: Option<&Value>,
    timestamp: Option<&Value>,
    data: Option<&Value>,
    data_field: &str,
) -> Result<EventInput, Invalid> {
    let name = match name {
        Some(Value::String(s)) => s.trim(),
        _ => "",
    };
    if name.is_empty() {
        return Err(Invalid::new("name", "event name must not be blank"));
    }
    if name.len() > MAX_EVENT_NAME_BYTES {
        return Err(Invalid::new(
            "name",
            format!("event name cannot be longer than {MAX_EVENT_NAME_BYTES} bytes"),
        ));
    }
    let data = match data {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(object @ Value::Object(_)) => object.clone(),
        Some(_) => {
            return Err(Invalid::new(
                data_field,
                "event data must be a hash (e.g., send \"data\":{} instead of \"data\":\"\")",
            ))
        }
    };
    if data.to_string().len() > MAX_EVENT_DATA_BYTES {
        return Err(Invalid::new(
            data_field,
            format!("event data cannot be longer than {MAX_EVENT_DATA_BYTES} bytes"),
        ));
    }
    let id = match id {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if is_ulid(s) => Some(s.to_ascii_uppercase()),
        Some(_) => return Err(Invalid::new("id", "event id must be a valid ULID")),
    };
    let timestamp = timestamp.and_then(Value::as_i64);
    Ok(EventInput {
        name: name.to_owned(),
        id,
        timestamp,
        data,
    })
}

/// 26 Crockford base32 characters (no I, L, O, U; any case), the first `0`–`7` so the
/// value fits 128 bits.
pub fn is_ulid(candidate: &str) -> bool {
    const CROCKFORD: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    candidate.len() == 26
        && candidate.starts_with(|c: char| ('0'..='7').contains(&c))
        && candidate
            .chars()
            .all(|c| CROCKFORD.contains(c.to_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ulids_are_recognised() {
        assert!(is_ulid("01HZEP2TH0KX9ZDZFE66098J9N"));
        assert!(is_ulid("01hzep2th0kx9zdzfe66098j9n"));
        assert!(is_ulid(&ulid::Ulid::new().to_string()));
        assert!(!is_ulid("81HZEP2TH0KX9ZDZFE66098J9N"), "first char above 7");
        assert!(!is_ulid("01HZEP2TH0KX9ZDZFE66098J9"), "25 chars");
        assert!(!is_ulid("01HZEP2TH0KX9ZDZFE66098J9U"), "U is not Crockford");
        assert!(!is_ulid("not-a-ulid"));
    }

    #[test]
    fn path_identifiers_are_classified_by_shape() {
        assert_eq!(
            Identifier::from_path("42"),
            Ok(Identifier::Id("42".to_owned()))
        );
        assert_eq!(
            Identifier::from_path("a@b.org"),
            Ok(Identifier::Email("a@b.org".to_owned()))
        );
        assert_eq!(
            Identifier::from_path("cio_abc"),
            Ok(Identifier::CioId("abc".to_owned()))
        );
        assert!(Identifier::from_path(&"x".repeat(151)).is_err());
        assert!(Identifier::from_path(&"x".repeat(150)).is_ok());
    }

    #[test]
    fn v2_identifiers_need_exactly_one() {
        assert!(Identifier::from_v2(Some(&json!({}))).is_err());
        assert!(Identifier::from_v2(Some(&json!({"id": "1", "email": "a@b"}))).is_err());
        assert_eq!(
            Identifier::from_v2(Some(&json!({"id": 7}))),
            Ok(Identifier::Id("7".to_owned()))
        );
    }

    #[test]
    fn value_limit_counts_serialized_json_for_non_strings() {
        let mut attributes = Map::new();
        attributes.insert("list".to_owned(), json!(vec!["abcdefgh"; 100]));
        let error = check_attributes(&attributes, "attributes").expect_err("over 1000 bytes");
        assert_eq!(
            error.message,
            "value for attribute 'list' cannot be longer than 1000 bytes"
        );
    }
}

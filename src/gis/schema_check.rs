//! The GIS schema check of `ciosync check` (SPEC 8.4): asks GIS, by introspection, for the
//! fields of every type ciosync's queries select, and names each one GIS no longer has,
//! so a changed GIS API shows up in `check` before it breaks the 3 a.m. run.
//!
//! [`SELECTED_FIELDS`] is the one list of what ciosync selects. It is written out because
//! the default build carries no GraphQL parser; a unit test (feature `fake`, which brings
//! apollo-compiler) derives it again from the query constants ([`QUERIES`]) and
//! `gis/schema.graphql` and fails when the two differ, and another fails when a query
//! constant of `src/gis/` is missing from [`QUERIES`].
//!
//! Read-only: one `query` document, with `__type` lookups only. Kept apart from the paged
//! reads: a GraphQL error here is GIS refusing introspection (the check is skipped), not a
//! hiccup to retry.

use serde_json::{json, Value};

use super::{GisClient, GisError, APPLICATIONS_QUERY, CURRENT_PERSON_QUERY, PEOPLE_QUERY};

/// Every query constant ciosync sends, by name (the unit tests check none is left out).
pub const QUERIES: &[(&str, &str)] = &[
    ("CURRENT_PERSON_QUERY", CURRENT_PERSON_QUERY),
    ("PEOPLE_QUERY", PEOPLE_QUERY),
    ("APPLICATIONS_QUERY", APPLICATIONS_QUERY),
];

/// Every field ciosync's queries select, by the GIS type that holds it (types and fields
/// sorted by name). Derived from [`QUERIES`]; a unit test keeps the two equal.
pub const SELECTED_FIELDS: &[(&str, &[&str])] = &[
    (
        "ApplicationMetaType",
        &[
            "date_approval_broken",
            "date_approved",
            "date_completed",
            "date_matched",
            "date_realisation_broke",
            "date_realized",
            "date_rejected",
            "date_remote_realization_broken_at",
            "date_withdrawn",
            "remote_realized_at",
        ],
    ),
    (
        "CurrentPerson",
        &["current_offices", "full_name", "home_lc", "id"],
    ),
    ("Office", &["id", "name"]),
    ("Opportunity", &["id", "programme", "programmes", "title"]),
    (
        "OpportunityApplication",
        &[
            "an_signed_at",
            "created_at",
            "date_approval_broken",
            "date_approved",
            "date_matched",
            "date_realisation_broke",
            "date_realized",
            "experience_end_date",
            "id",
            "matched_or_rejected_at",
            "meta",
            "opportunity",
            "person",
            "status",
            "updated_at",
        ],
    ),
    ("OpportunityApplicationList", &["data", "paging"]),
    ("Paging", &["current_page", "total_items", "total_pages"]),
    (
        "Person",
        &[
            "created_at",
            "cv_url",
            "dob",
            "email",
            "first_name",
            "full_name",
            "home_lc",
            "home_mc",
            "id",
            "interviewed",
            "last_name",
            "nps_score",
            "permissions",
            "profile_photo",
            "status",
            "updated_at",
        ],
    ),
    ("PersonList", &["data", "paging"]),
    ("PersonPermissionType", &["can_apply"]),
    ("Programme", &["short_name", "short_name_display"]),
    (
        "QueryType",
        &["allOpportunityApplication", "currentPerson", "people"],
    ),
];

/// What the schema check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaCheck {
    /// GIS has every field ciosync selects; `deprecated` lists those it marks deprecated
    /// (`Type.field`), which may go away next.
    Complete {
        types: usize,
        fields: usize,
        deprecated: Vec<String>,
    },
    /// GIS lacks these fields (`Type.field`, in [`SELECTED_FIELDS`] order).
    Missing(Vec<String>),
    /// GIS refused introspection; what it said.
    Refused(String),
}

/// The introspection query: one aliased `__type` lookup per type of [`SELECTED_FIELDS`].
pub fn introspection_query() -> String {
    let mut query = String::from("query SchemaCheck {\n");
    for (i, (type_name, _)) in SELECTED_FIELDS.iter().enumerate() {
        query.push_str(&format!(
            "  t{i}: __type(name: \"{type_name}\") {{ name fields(includeDeprecated: true) {{ name isDeprecated }} }}\n"
        ));
    }
    query.push('}');
    query
}

/// Reads an introspection answer's `data` against [`SELECTED_FIELDS`].
fn compare(data: &Value) -> SchemaCheck {
    let mut missing = Vec::new();
    let mut deprecated = Vec::new();
    let mut fields = 0;
    for (i, (type_name, selected)) in SELECTED_FIELDS.iter().enumerate() {
        // A type GIS does not have (null) has none of its fields.
        let present: Vec<(&str, bool)> = data[format!("t{i}")]["fields"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|f| {
                        let name = f["name"].as_str()?;
                        Some((name, f["isDeprecated"].as_bool().unwrap_or(false)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for field in *selected {
            fields += 1;
            match present.iter().find(|(name, _)| name == field) {
                None => missing.push(format!("{type_name}.{field}")),
                Some((_, true)) => deprecated.push(format!("{type_name}.{field}")),
                Some((_, false)) => {}
            }
        }
    }
    if missing.is_empty() {
        SchemaCheck::Complete {
            types: SELECTED_FIELDS.len(),
            fields,
            deprecated,
        }
    } else {
        SchemaCheck::Missing(missing)
    }
}

/// Reads a 2xx introspection answer: `errors` (or no `data`) is a refusal.
fn interpret(body: &[u8]) -> Result<SchemaCheck, GisError> {
    let parsed: Value = serde_json::from_slice(body).map_err(|e| {
        GisError::Unavailable(format!("the schema introspection answer is not JSON: {e}"))
    })?;
    if let Some(errors) = parsed["errors"].as_array().filter(|e| !e.is_empty()) {
        let message = errors[0]["message"]
            .as_str()
            .unwrap_or("an error without a message");
        return Ok(SchemaCheck::Refused(message.to_owned()));
    }
    match parsed.get("data").filter(|d| d.is_object()) {
        Some(data) => Ok(compare(data)),
        None => Ok(SchemaCheck::Refused("an answer without data".to_owned())),
    }
}

impl GisClient {
    /// Introspects GIS for the types ciosync's queries select (SPEC 8.4).
    ///
    /// # Errors
    /// [`GisError::Auth`] when GIS refuses the credentials (after one OAuth refresh),
    /// [`GisError::Unavailable`] when it cannot be reached or answers something unusable.
    /// A refusal of introspection itself is not an error: [`SchemaCheck::Refused`].
    pub async fn check_schema(&self) -> Result<SchemaCheck, GisError> {
        let what = "schema introspection";
        let body = json!({ "query": introspection_query(), "operationName": "SchemaCheck" });
        let reply = self.post_authorized(&body, what).await?;
        match reply.status {
            200..=299 => interpret(&reply.body),
            403 => Err(GisError::Auth(format!(
                "HTTP 403 on {what}: {}",
                reply.body_excerpt(200)
            ))),
            // Any other 4xx: GIS understood the request and declined it.
            status @ 400..=499 => Ok(SchemaCheck::Refused(format!(
                "HTTP {status}: {}",
                reply.body_excerpt(200)
            ))),
            status => Err(GisError::Unavailable(format!(
                "HTTP {status} on {what}: {}",
                reply.body_excerpt(200)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_selected_field_present_is_complete_and_deprecations_are_named() {
        let data: serde_json::Map<String, Value> = SELECTED_FIELDS
            .iter()
            .enumerate()
            .map(|(i, (type_name, fields))| {
                let fields: Vec<Value> = fields
                    .iter()
                    .map(|f| json!({"name": f, "isDeprecated": *type_name == "Person" && *f == "dob"}))
                    .chain(std::iter::once(json!({"name": "unused", "isDeprecated": false})))
                    .collect();
                (format!("t{i}"), json!({"name": type_name, "fields": fields}))
            })
            .collect();
        let total: usize = SELECTED_FIELDS.iter().map(|(_, f)| f.len()).sum();
        assert_eq!(
            compare(&Value::Object(data)),
            SchemaCheck::Complete {
                types: SELECTED_FIELDS.len(),
                fields: total,
                deprecated: vec!["Person.dob".to_owned()],
            }
        );
    }

    #[test]
    fn a_missing_field_or_type_is_named_type_dot_field() {
        let mut data = serde_json::Map::new();
        for (i, (type_name, fields)) in SELECTED_FIELDS.iter().enumerate() {
            let kept: Vec<Value> = fields
                .iter()
                .filter(|f| !(*type_name == "Person" && **f == "cv_url"))
                .map(|f| json!({"name": f, "isDeprecated": false}))
                .collect();
            let value = if *type_name == "Paging" {
                Value::Null
            } else {
                json!({"name": type_name, "fields": kept})
            };
            data.insert(format!("t{i}"), value);
        }
        let SchemaCheck::Missing(missing) = compare(&Value::Object(data)) else {
            panic!("fields are missing");
        };
        let paging = SELECTED_FIELDS
            .iter()
            .find(|(t, _)| *t == "Paging")
            .expect("Paging is selected")
            .1;
        let mut expected: Vec<String> = paging.iter().map(|f| format!("Paging.{f}")).collect();
        expected.push("Person.cv_url".to_owned());
        let mut found = missing.clone();
        found.sort();
        expected.sort();
        assert_eq!(found, expected);
    }

    #[test]
    fn errors_or_no_data_are_a_refusal_and_a_non_json_answer_an_error() {
        let refused = interpret(
            br#"{"errors":[{"message":"introspection is disabled"}],"data":{"t0":null}}"#,
        );
        assert_eq!(
            refused.expect("a refusal"),
            SchemaCheck::Refused("introspection is disabled".to_owned())
        );
        assert!(matches!(
            interpret(br#"{"data":null}"#),
            Ok(SchemaCheck::Refused(_))
        ));
        assert!(matches!(
            interpret(b"<html>502</html>"),
            Err(GisError::Unavailable(_))
        ));
    }

    #[test]
    fn the_introspection_query_is_read_only_and_asks_for_every_type() {
        let query = introspection_query();
        assert!(query.starts_with("query SchemaCheck {"));
        assert!(!query.contains("mutation"));
        for (i, (type_name, _)) in SELECTED_FIELDS.iter().enumerate() {
            assert!(query.contains(&format!("t{i}: __type(name: \"{type_name}\")")));
        }
    }

    /// A query constant added to `src/gis/` must be listed in [`QUERIES`], or the
    /// derivation below would not cover it.
    #[test]
    fn every_query_constant_is_listed() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gis");
        let mut declared = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("read src/gis") {
            let path = entry.expect("directory entry").path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).expect("read a source file");
            for line in source.lines() {
                let line = line.trim_start();
                let line = line
                    .strip_prefix("pub(crate) ")
                    .or_else(|| line.strip_prefix("pub "))
                    .unwrap_or(line);
                let Some(rest) = line.strip_prefix("const ") else {
                    continue;
                };
                let Some((name, ty)) = rest.split_once(':') else {
                    continue;
                };
                let is_text = ty.trim_start().starts_with("&") && ty.contains("str");
                if name.trim().ends_with("_QUERY") && is_text {
                    declared.push(name.trim().to_owned());
                }
            }
        }
        let listed: Vec<&str> = QUERIES.iter().map(|(name, _)| *name).collect();
        assert!(declared.len() >= 3, "{declared:?}");
        for name in &declared {
            assert!(
                listed.contains(&name.as_str()),
                "{name} is not in gis::schema_check::QUERIES"
            );
        }
    }

    #[cfg(feature = "fake")]
    mod derived {
        use std::collections::{BTreeMap, BTreeSet};

        use apollo_compiler::executable::{Selection, SelectionSet};
        use apollo_compiler::validation::Valid;
        use apollo_compiler::{ExecutableDocument, Schema};

        use super::super::{introspection_query, QUERIES, SELECTED_FIELDS};

        fn schema() -> Valid<Schema> {
            Schema::parse_and_validate(
                include_str!("../../gis/schema.graphql"),
                "gis/schema.graphql",
            )
            .expect("gis/schema.graphql is valid")
        }

        fn walk(
            set: &SelectionSet,
            document: &ExecutableDocument,
            out: &mut BTreeMap<String, BTreeSet<String>>,
        ) {
            for selection in &set.selections {
                match selection {
                    Selection::Field(field) => {
                        if !field.name.starts_with("__") {
                            out.entry(set.ty.to_string())
                                .or_default()
                                .insert(field.name.to_string());
                        }
                        walk(&field.selection_set, document, out);
                    }
                    Selection::FragmentSpread(spread) => {
                        if let Some(fragment) = document.fragments.get(&spread.fragment_name) {
                            walk(&fragment.selection_set, document, out);
                        }
                    }
                    Selection::InlineFragment(inline) => {
                        walk(&inline.selection_set, document, out);
                    }
                }
            }
        }

        #[test]
        fn every_query_validates_against_the_schema() {
            let schema = schema();
            let introspection = introspection_query();
            let all = QUERIES
                .iter()
                .map(|(name, q)| (*name, *q))
                .chain(std::iter::once((
                    "introspection_query()",
                    introspection.as_str(),
                )));
            for (name, query) in all {
                if let Err(e) = ExecutableDocument::parse_and_validate(&schema, query, name) {
                    panic!("{name} does not validate: {}", e.errors);
                }
            }
        }

        #[test]
        fn selected_fields_are_derived_from_the_queries() {
            let schema = schema();
            let mut derived: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for (name, query) in QUERIES {
                let document = ExecutableDocument::parse_and_validate(&schema, *query, *name)
                    .expect("validates (see the test above)");
                for operation in document.operations.iter() {
                    walk(&operation.selection_set, &document, &mut derived);
                }
            }
            let listed: BTreeMap<String, BTreeSet<String>> = SELECTED_FIELDS
                .iter()
                .map(|(t, fields)| {
                    (
                        (*t).to_owned(),
                        fields.iter().map(|f| (*f).to_owned()).collect(),
                    )
                })
                .collect();
            if listed != derived {
                let mut text = String::from("pub const SELECTED_FIELDS: &[(&str, &[&str])] = &[\n");
                for (t, fields) in &derived {
                    let fields: Vec<String> = fields.iter().map(|f| format!("\"{f}\"")).collect();
                    text.push_str(&format!("    (\"{t}\", &[{}]),\n", fields.join(", ")));
                }
                text.push_str("];");
                panic!(
                    "SELECTED_FIELDS differs from what the queries select; it should be:\n{text}"
                );
            }
            // Written out sorted, so a diff of it reads well.
            let types: Vec<&str> = SELECTED_FIELDS.iter().map(|(t, _)| *t).collect();
            let mut sorted = types.clone();
            sorted.sort_unstable();
            assert_eq!(types, sorted, "types sorted by name");
            for (t, fields) in SELECTED_FIELDS {
                let mut sorted = fields.to_vec();
                sorted.sort_unstable();
                assert_eq!(fields.to_vec(), sorted, "fields of {t} sorted by name");
            }
        }
    }
}

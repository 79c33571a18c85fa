//! GraphQL for the fake GIS: every query is parsed and validated against the real schema
//! (`gis/schema.graphql`) with apollo-compiler, then executed field by field, so a response
//! holds exactly the fields asked for (aliases, variables, nested selections included).

use std::borrow::Cow;
use std::sync::OnceLock;

use apollo_compiler::ast;
use apollo_compiler::resolvers::{Execution, FieldError, ObjectValue, ResolveInfo, ResolvedValue};
use apollo_compiler::response::{serde_json_bytes, GraphQLError, JsonMap};
use apollo_compiler::schema::Type;
use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use serde_json::{json, Value};

use super::generate::{bot_json, parse_time};
use super::store::{AppQuery, PeopleQuery, Sort, SortKey, Store, Window};

/// The schema the fake serves, a copy of the real one.
const SCHEMA_SDL: &str = include_str!("../../../gis/schema.graphql");

/// `per_page` when a request gives none (GIS's documented default).
pub(crate) const DEFAULT_PER_PAGE: u32 = 25;

/// The parsed, validated schema (parsed once per process).
pub(crate) fn schema() -> &'static Valid<Schema> {
    static SCHEMA: OnceLock<Valid<Schema>> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        Schema::parse_and_validate(SCHEMA_SDL, "gis/schema.graphql")
            .expect("gis/schema.graphql is a valid schema (checked by the tests)")
    })
}

/// The names of the root fields an operation selects (best effort, even for invalid queries).
pub(crate) fn root_fields(query: &str, operation_name: Option<&str>) -> Vec<String> {
    let doc = match ast::Document::parse(query, "query.graphql") {
        Ok(doc) => doc,
        Err(with_errors) => with_errors.partial,
    };
    let operation = doc.definitions.iter().find_map(|d| match d {
        ast::Definition::OperationDefinition(op)
            if operation_name.is_none() || op.name.as_deref() == operation_name =>
        {
            Some(op)
        }
        _ => None,
    });
    operation
        .map(|op| {
            op.selection_set
                .iter()
                .filter_map(|s| match s {
                    ast::Selection::Field(f) => Some(f.name.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs one GraphQL request. Returns the serialized response body (straight from the
/// execution result, skipping an intermediate JSON tree); `Err` holds request errors
/// (parse, validation, variables) already shaped as `{"errors": [...]}`.
pub(crate) fn execute(
    store: &Store,
    per_page_cap: u32,
    query: &str,
    operation_name: Option<&str>,
    variables: &Value,
) -> Result<Vec<u8>, Value> {
    let schema = schema();
    let document = ExecutableDocument::parse_and_validate(schema, query, "query.graphql")
        .map_err(|e| errors_body(e.errors.iter().map(|d| d.to_json()).collect()))?;
    let variables: JsonMap = match variables {
        Value::Object(map) => serde_json_bytes::Value::from(Value::Object(map.clone()))
            .as_object()
            .cloned()
            .unwrap_or_default(),
        _ => JsonMap::new(),
    };
    let execution = Execution::new(schema, &document)
        .operation_name(operation_name)
        .map_err(|e| errors_body(vec![e.to_graphql_error(&document.sources)]))?
        .raw_variable_values(&variables);
    let root = QueryRoot {
        store,
        per_page_cap,
    };
    let response = execution
        .execute_sync(&root)
        .map_err(|e| errors_body(vec![e.to_graphql_error(&document.sources)]))?;
    serde_json::to_vec(&response).map_err(|e| json!({"errors": [{"message": e.to_string()}]}))
}

fn errors_body(errors: Vec<GraphQLError>) -> Value {
    json!({ "errors": errors })
}

/// The `QueryType` root.
struct QueryRoot<'s> {
    store: &'s Store,
    per_page_cap: u32,
}

/// A page of a list, with its `paging` envelope.
struct ListPage<'s> {
    type_name: &'static str,
    item_type: &'static str,
    items: Vec<Value>,
    paging: Value,
    store: &'s Store,
}

/// Any object backed by a JSON record; fields absent from the record are null.
struct JsonObject<'a> {
    type_name: &'a str,
    value: Cow<'a, Value>,
    store: &'a Store,
}

/// The root arguments as plain JSON.
fn arguments(info: &ResolveInfo<'_>) -> Value {
    serde_json::to_value(info.arguments()).unwrap_or(Value::Null)
}

fn int_list(v: &Value) -> Option<Vec<u64>> {
    match v {
        Value::Null => None,
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|i| match i {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                })
                .collect(),
        ),
        Value::Number(n) => n.as_u64().map(|n| vec![n]),
        Value::String(s) => s.trim().parse().ok().map(|n| vec![n]),
        _ => None,
    }
}

fn string_list(list: &Value, single: &Value) -> Option<Vec<String>> {
    let mut out: Vec<String> = list
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if let Some(s) = single.as_str() {
        out.push(s.to_owned());
    }
    (!list.is_null() || !single.is_null()).then_some(out)
}

fn window(v: &Value) -> Option<Window> {
    if !v.is_object() {
        return None;
    }
    let bound = |keys: [&str; 2]| {
        keys.iter()
            .find_map(|k| v[*k].as_str())
            .and_then(parse_time)
    };
    let from = bound(["from", "start_date"]).map(|(t, _)| t);
    // A bare date as the upper bound includes that whole day.
    let to = bound(["to", "end_date"]).map(|(t, date_only)| if date_only { t + 86_399 } else { t });
    Some(Window { from, to })
}

/// The order from `filters.sort`/`sort_direction`, else the root `sort` string
/// (`"updated_at"`, `"-updated_at"`, `"+created_at"`, `"ASC_updated_at"`, `"DESC_created_at"`).
/// Other keys keep the default order (created_at desc).
fn sort(args: &Value) -> Sort {
    let filters = &args["filters"];
    let key_of = |name: &str| match name {
        "created_at" | "created" => Some(SortKey::CreatedAt),
        "updated_at" | "updated" => Some(SortKey::UpdatedAt),
        _ => None,
    };
    if let Some(key) = filters["sort"].as_str().and_then(key_of) {
        let desc = filters["sort_direction"].as_str() == Some("desc");
        return Sort { key, desc };
    }
    if let Some(text) = args["sort"].as_str() {
        let text = text.trim();
        let (name, desc) = if let Some(rest) = text.strip_prefix('-') {
            (rest, true)
        } else if let Some(rest) = text.strip_prefix('+') {
            (rest, false)
        } else if let Some(rest) = text.strip_prefix("DESC_").or(text.strip_prefix("desc_")) {
            (rest, true)
        } else if let Some(rest) = text.strip_prefix("ASC_").or(text.strip_prefix("asc_")) {
            (rest, false)
        } else {
            (text, false)
        };
        if let Some(key) = key_of(name) {
            return Sort { key, desc };
        }
    }
    Sort::default()
}

/// (requested page, effective per_page) from `pagination {..}` or the root arguments.
fn paging_args(args: &Value, cap: u32) -> (i64, u32) {
    let pick = |key: &str| {
        args["pagination"][key]
            .as_i64()
            .or_else(|| args[key].as_i64())
    };
    let page = pick("page").unwrap_or(1).max(1);
    let per_page = pick("per_page")
        .filter(|n| *n > 0)
        .map_or(DEFAULT_PER_PAGE, |n| u32::try_from(n).unwrap_or(u32::MAX))
        .min(cap.max(1));
    (page, per_page)
}

impl<'s> QueryRoot<'s> {
    fn page<'a>(
        &'a self,
        args: &Value,
        found: &[u32],
        type_name: &'static str,
        item_type: &'static str,
        render: impl Fn(&[u32]) -> Vec<Value>,
    ) -> ListPage<'s> {
        let (page, per_page) = paging_args(args, self.per_page_cap);
        let total = found.len() as u64;
        let total_pages = total.div_ceil(u64::from(per_page));
        let start =
            usize::try_from((page - 1).saturating_mul(i64::from(per_page))).unwrap_or(usize::MAX);
        let slice = found
            .get(start.min(found.len())..)
            .map(|rest| &rest[..rest.len().min(per_page as usize)])
            .unwrap_or(&[]);
        ListPage {
            type_name,
            item_type,
            items: render(slice),
            paging: json!({
                "current_page": page,
                "total_pages": total_pages,
                "total_items": total,
            }),
            store: self.store,
        }
    }

    fn people(&self, args: &Value) -> ListPage<'s> {
        let f = &args["filters"];
        let q = PeopleQuery {
            lcs: int_list(&f["home_committee"]),
            ids: int_list(&f["ids"]),
            last_interaction: window(&f["last_interaction"]),
            statuses: string_list(&f["statuses"], &f["status"]),
            sort: sort(args),
        };
        let found = self.store.find_people(&q);
        self.page(args, &found, "PersonList", "Person", |idxs| {
            self.store.people_page(idxs)
        })
    }

    fn applications(&self, args: &Value, person_id: Option<u64>) -> ListPage<'s> {
        let f = &args["filters"];
        let q = AppQuery {
            person_lcs: int_list(&f["person_home_lc"]),
            person_id: person_id
                .or_else(|| int_list(&f["person_id"]).and_then(|l| l.first().copied())),
            last_interaction: window(&f["last_interaction"]),
            statuses: string_list(&f["statuses"], &f["status"]),
            programmes: int_list(&f["programmes"]),
            sort: sort(args),
        };
        let found = self.store.find_apps(&q);
        self.page(
            args,
            &found,
            "OpportunityApplicationList",
            "OpportunityApplication",
            |idxs| self.store.apps_page(idxs),
        )
    }
}

fn id_arg(args: &Value) -> Option<u64> {
    int_list(&args["id"]).and_then(|l| l.first().copied())
}

impl ObjectValue for QueryRoot<'_> {
    fn type_name(&self) -> &str {
        "QueryType"
    }

    fn resolve_field<'a>(
        &'a self,
        info: &'a ResolveInfo<'a>,
    ) -> Result<ResolvedValue<'a>, FieldError> {
        let args = arguments(info);
        let record = |type_name: &'a str, value: Option<Value>| {
            ResolvedValue::nullable_object(value.map(|v| JsonObject {
                type_name,
                value: Cow::Owned(v),
                store: self.store,
            }))
        };
        Ok(match info.field_name() {
            "people" | "allPeople" => ResolvedValue::object(self.people(&args)),
            "allOpportunityApplication" => ResolvedValue::object(self.applications(&args, None)),
            "personApplications" => match id_arg(&args) {
                Some(id) => ResolvedValue::object(self.applications(&args, Some(id))),
                None => {
                    return Err(FieldError {
                        message: "personApplications needs an id".to_owned(),
                    })
                }
            },
            "person" => record(
                "Person",
                id_arg(&args).and_then(|id| self.store.person_json(id)),
            ),
            "getApplication" => record(
                "OpportunityApplication",
                id_arg(&args).and_then(|id| self.store.application_json(id)),
            ),
            "currentPerson" => record("CurrentPerson", Some(bot_json())),
            _ => return Err(self.unknown_field_error(info)),
        })
    }
}

impl ObjectValue for ListPage<'_> {
    fn type_name(&self) -> &str {
        self.type_name
    }

    fn resolve_field<'a>(
        &'a self,
        info: &'a ResolveInfo<'a>,
    ) -> Result<ResolvedValue<'a>, FieldError> {
        Ok(match info.field_name() {
            "data" => ResolvedValue::list(self.items.iter().map(|item| {
                ResolvedValue::object(JsonObject {
                    type_name: self.item_type,
                    value: Cow::Borrowed(item),
                    store: self.store,
                })
            })),
            "paging" => ResolvedValue::object(JsonObject {
                type_name: "Paging",
                value: Cow::Borrowed(&self.paging),
                store: self.store,
            }),
            "facets" => ResolvedValue::list(std::iter::empty()),
            _ => return Err(self.unknown_field_error(info)),
        })
    }
}

impl ObjectValue for JsonObject<'_> {
    fn type_name(&self) -> &str {
        self.type_name
    }

    fn resolve_field<'a>(
        &'a self,
        info: &'a ResolveInfo<'a>,
    ) -> Result<ResolvedValue<'a>, FieldError> {
        let name = info.field_name();
        // An application's person is the whole person, as in GIS, not just the stored id;
        // it is built only if a field other than `id` is selected.
        if self.type_name == "OpportunityApplication" && name == "person" {
            let stored = self.value.get("person").filter(|p| p.is_object());
            return Ok(match stored {
                Some(stored) => ResolvedValue::object(LazyPerson {
                    stored,
                    full: OnceLock::new(),
                    store: self.store,
                }),
                None => ResolvedValue::null(),
            });
        }
        let value = self.value.get(name).unwrap_or(&Value::Null);
        Ok(resolve_json(
            value,
            &info.field_definition().ty,
            info.schema(),
            self.store,
        ))
    }
}

/// An application's person: the stored `{"id": ..}` until a field beyond `id` is asked for,
/// then the store's full record (or the stored object if the person is unknown).
struct LazyPerson<'a> {
    stored: &'a Value,
    full: OnceLock<Value>,
    store: &'a Store,
}

impl ObjectValue for LazyPerson<'_> {
    fn type_name(&self) -> &str {
        "Person"
    }

    fn resolve_field<'a>(
        &'a self,
        info: &'a ResolveInfo<'a>,
    ) -> Result<ResolvedValue<'a>, FieldError> {
        let record = if info.field_name() == "id" {
            self.stored
        } else {
            self.full.get_or_init(|| {
                self.stored["id"]
                    .as_str()
                    .and_then(|id| id.parse().ok())
                    .and_then(|id| self.store.person_json(id))
                    .unwrap_or_else(|| self.stored.clone())
            })
        };
        let value = record.get(info.field_name()).unwrap_or(&Value::Null);
        Ok(resolve_json(
            value,
            &info.field_definition().ty,
            info.schema(),
            self.store,
        ))
    }
}

/// Converts a scalar to apollo's JSON type, copying a string once rather than twice.
fn leaf(value: &Value) -> serde_json_bytes::Value {
    match value {
        Value::String(s) => serde_json_bytes::Value::String(s.as_str().into()),
        Value::Bool(b) => serde_json_bytes::Value::Bool(*b),
        other => serde_json_bytes::Value::from(other.clone()),
    }
}

/// Resolves a stored JSON value as the schema type `ty`.
fn resolve_json<'a>(
    value: &'a Value,
    ty: &'a Type,
    schema: &'a Valid<Schema>,
    store: &'a Store,
) -> ResolvedValue<'a> {
    if value.is_null() {
        return ResolvedValue::null();
    }
    match ty {
        Type::List(inner) | Type::NonNullList(inner) => match value {
            Value::Array(items) => ResolvedValue::list(
                items
                    .iter()
                    .map(move |item| resolve_json(item, inner, schema, store)),
            ),
            // GIS sometimes sends a single object where a list is declared.
            single => {
                ResolvedValue::list(std::iter::once(resolve_json(single, inner, schema, store)))
            }
        },
        Type::Named(name) | Type::NonNullNamed(name) => {
            if schema.get_object(name).is_some() {
                if value.is_object() {
                    ResolvedValue::object(JsonObject {
                        type_name: name.as_str(),
                        value: Cow::Borrowed(value),
                        store,
                    })
                } else {
                    ResolvedValue::null()
                }
            } else {
                ResolvedValue::leaf(leaf(value))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_parses_and_validates() {
        assert!(schema().get_object("QueryType").is_some());
    }

    #[test]
    fn root_fields_reads_the_selected_operation() {
        let q = "query A { people { paging { total_items } } } query B { currentPerson { id } x: person(id: 1) { id } }";
        assert_eq!(root_fields(q, Some("B")), vec!["currentPerson", "person"]);
        assert_eq!(root_fields(q, None), vec!["people"]);
    }

    #[test]
    fn paging_args_clamp_and_default() {
        assert_eq!(paging_args(&json!({}), 500), (1, 25));
        assert_eq!(
            paging_args(&json!({"page": 3, "per_page": 9000}), 500),
            (3, 500)
        );
        assert_eq!(
            paging_args(
                &json!({"pagination": {"page": 2, "per_page": 10}, "page": 7}),
                500
            ),
            (2, 10)
        );
    }

    #[test]
    fn sort_reads_filters_then_the_root_string() {
        let s = sort(&json!({"filters": {"sort": "updated_at", "sort_direction": "desc"}}));
        assert_eq!(
            s,
            Sort {
                key: SortKey::UpdatedAt,
                desc: true
            }
        );
        let s = sort(&json!({"sort": "-updated_at"}));
        assert_eq!(
            s,
            Sort {
                key: SortKey::UpdatedAt,
                desc: true
            }
        );
        let s = sort(&json!({"sort": "updated_at"}));
        assert_eq!(
            s,
            Sort {
                key: SortKey::UpdatedAt,
                desc: false
            }
        );
        assert_eq!(sort(&json!({"sort": "full_name"})), Sort::default());
    }
}

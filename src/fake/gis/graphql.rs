//! GraphQL for the fake GIS: every query is parsed and validated against the real schema
//! (`gis/schema.graphql`, or a copy with some fields removed) with apollo-compiler, then
//! executed field by field, so a response holds exactly the fields asked for (aliases,
//! variables, nested selections included). Introspection (`__type`, `__schema`) answers for
//! the schema served, unless the fake refuses it as a locked-down GIS would.
//!
//! Also tells a page of a list apart from other requests ([`list_request`]), and reports
//! every page it computes to an observer: drift and out-of-order serving build on that.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, OnceLock};

use apollo_compiler::ast;
use apollo_compiler::resolvers::{Execution, FieldError, ObjectValue, ResolveInfo, ResolvedValue};
use apollo_compiler::response::{serde_json_bytes, GraphQLError, JsonMap};
use apollo_compiler::schema::{ExtendedType, Type};
use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use serde_json::{json, Value};

use super::drift::GisList;
use super::generate::{bot_json, parse_time};
use super::store::{AppQuery, PeopleQuery, Sort, SortKey, Store, Window};

/// The schema the fake serves, a copy of the real one.
const SCHEMA_SDL: &str = include_str!("../../../gis/schema.graphql");

/// `per_page` when a request gives none (GIS's documented default).
pub(crate) const DEFAULT_PER_PAGE: u32 = 25;

/// The parsed, validated schema (parsed once per process).
pub(crate) fn schema() -> &'static Arc<Valid<Schema>> {
    static SCHEMA: OnceLock<Arc<Valid<Schema>>> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        Arc::new(
            Schema::parse_and_validate(SCHEMA_SDL, "gis/schema.graphql")
                .expect("gis/schema.graphql is a valid schema (checked by the tests)"),
        )
    })
}

/// The schema without the `removed` fields (each `Type.field`, on an object, interface or
/// input type): a GIS whose API changed under ciosync.
///
/// # Errors
/// A message naming an entry that is not `Type.field` or not in the schema, or saying why
/// the schema is no longer valid without it.
pub(crate) fn schema_without(removed: &[String]) -> Result<Arc<Valid<Schema>>, String> {
    if removed.is_empty() {
        return Ok(Arc::clone(schema()));
    }
    let mut schema = Schema::parse(SCHEMA_SDL, "gis/schema.graphql")
        .map_err(|e| format!("gis/schema.graphql does not parse: {}", e.errors))?;
    for entry in removed {
        let (type_name, field) = entry
            .split_once('.')
            .ok_or_else(|| format!("removed field `{entry}` is not of the form Type.field"))?;
        let found = match schema.types.get_mut(type_name) {
            Some(ExtendedType::Object(t)) => t.make_mut().fields.shift_remove(field).is_some(),
            Some(ExtendedType::Interface(t)) => t.make_mut().fields.shift_remove(field).is_some(),
            Some(ExtendedType::InputObject(t)) => t.make_mut().fields.shift_remove(field).is_some(),
            _ => false,
        };
        if !found {
            return Err(format!(
                "removed field `{entry}`: gis/schema.graphql has no such field"
            ));
        }
    }
    schema
        .validate()
        .map(Arc::new)
        .map_err(|e| format!("the schema without {removed:?} is invalid: {}", e.errors))
}

/// One page a list resolver computed, as the observer of [`execute`] sees it.
#[derive(Debug, Clone)]
pub(crate) struct ComputedPage {
    pub list: GisList,
    /// The root field's arguments (variables substituted).
    pub args: Value,
    pub page: u64,
    pub per_page: u32,
    pub total_items: u64,
    /// Ids of the records on the page, in order.
    pub ids: Vec<u64>,
    /// Narrowed to given ids or to one person: a lookup, not a page of the whole list.
    pub narrowed: bool,
}

/// Where [`execute`] reports the pages it computes.
pub(crate) type PageObserver = Mutex<Vec<ComputedPage>>;

/// A request for a page of a list, read from the query before it runs.
#[derive(Debug, Clone)]
pub(crate) struct ListRequest {
    pub list: GisList,
    /// The root field's arguments (variables substituted).
    pub args: Value,
    pub page: u64,
    pub per_page: u32,
    /// Narrowed to given ids or to one person: a lookup, not a page of the whole list.
    pub narrowed: bool,
}

impl From<&ComputedPage> for ListRequest {
    fn from(page: &ComputedPage) -> ListRequest {
        ListRequest {
            list: page.list,
            args: page.args.clone(),
            page: page.page,
            per_page: page.per_page,
            narrowed: page.narrowed,
        }
    }
}

impl ListRequest {
    /// What identifies the scan this page belongs to: the list, its filters and order, and
    /// the page size; everything but the page number.
    pub(crate) fn scan_key(&self) -> String {
        let mut args = self.args.clone();
        if let Some(map) = args.as_object_mut() {
            map.remove("page");
            map.insert("per_page".to_owned(), json!(self.per_page));
            if let Some(Value::Object(pagination)) = map.get_mut("pagination") {
                pagination.remove("page");
                pagination.remove("per_page");
            }
        }
        format!("{:?}:{args}", self.list)
    }
}

/// The list page an operation asks for, if its first list root field is one; `None` for
/// anything else.
pub(crate) fn list_request(
    document: &Valid<ExecutableDocument>,
    per_page_cap: u32,
    request: &Request<'_>,
) -> Option<ListRequest> {
    let operation = document.operations.get(request.operation_name).ok()?;
    let variables = request.variables;
    let field = operation.root_fields(document).find(|f| {
        matches!(
            f.name.as_str(),
            "people" | "allPeople" | "allOpportunityApplication" | "personApplications"
        )
    })?;
    let defaults: Vec<(&str, &ast::Value)> = operation
        .variables
        .iter()
        .filter_map(|v| Some((v.name.as_str(), v.default_value.as_deref()?)))
        .collect();
    let args = Value::Object(
        field
            .arguments
            .iter()
            .map(|a| {
                (
                    a.name.to_string(),
                    ast_to_json(&a.value, variables, &defaults),
                )
            })
            .collect(),
    );
    let (page, per_page) = paging_args(&args, per_page_cap);
    let filters = &args["filters"];
    let (list, narrowed) = match field.name.as_str() {
        "people" | "allPeople" => (GisList::People, !filters["ids"].is_null()),
        "personApplications" => (GisList::Applications, true),
        _ => (GisList::Applications, !filters["person_id"].is_null()),
    };
    Some(ListRequest {
        list,
        args,
        page: u64::try_from(page).unwrap_or(1),
        per_page,
        narrowed,
    })
}

/// A literal argument as JSON, with variables taken from the request (or their defaults).
fn ast_to_json(value: &ast::Value, variables: &Value, defaults: &[(&str, &ast::Value)]) -> Value {
    match value {
        ast::Value::Null => Value::Null,
        ast::Value::Enum(name) => Value::String(name.to_string()),
        ast::Value::Variable(name) => match variables.get(name.as_str()) {
            Some(v) => v.clone(),
            None => defaults
                .iter()
                .find(|(n, _)| *n == name.as_str())
                .map_or(Value::Null, |(_, v)| ast_to_json(v, variables, &[])),
        },
        ast::Value::String(s) => Value::String(s.clone()),
        ast::Value::Float(f) => f
            .try_to_f64()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        ast::Value::Int(i) => i
            .as_str()
            .parse::<i64>()
            .map_or(Value::Null, |n| Value::Number(n.into())),
        ast::Value::Boolean(b) => Value::Bool(*b),
        ast::Value::List(items) => Value::Array(
            items
                .iter()
                .map(|v| ast_to_json(v, variables, defaults))
                .collect(),
        ),
        ast::Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), ast_to_json(v, variables, defaults)))
                .collect(),
        ),
    }
}

/// How many records the list filtered by `args` holds now.
pub(crate) fn list_len(store: &Store, list: GisList, args: &Value) -> usize {
    let root = QueryRoot {
        store,
        per_page_cap: u32::MAX,
        observer: None,
    };
    match list {
        GisList::People => root.find_people(args).len(),
        GisList::Applications => root.find_apps(args, None).len(),
    }
}

/// The ids of every record of the list filtered by `args`, in its order, as they are now.
pub(crate) fn list_ids(store: &Store, list: GisList, args: &Value) -> Vec<u64> {
    let root = QueryRoot {
        store,
        per_page_cap: u32::MAX,
        observer: None,
    };
    match list {
        GisList::People => root
            .find_people(args)
            .iter()
            .map(|i| store.person_id_at(*i))
            .collect(),
        GisList::Applications => root
            .find_apps(args, None)
            .iter()
            .map(|j| store.app_id_at(*j))
            .collect(),
    }
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

/// One GraphQL request as posted.
pub(crate) struct Request<'a> {
    pub query: &'a str,
    pub operation_name: Option<&'a str>,
    pub variables: &'a Value,
}

/// How a fake serves GraphQL: its schema, page size cap, and whether it answers
/// introspection (false: `__type` and `__schema` get a field error each, as on a GIS that
/// locked it down).
pub(crate) struct Service {
    pub schema: Arc<Valid<Schema>>,
    pub per_page_cap: u32,
    pub introspection: bool,
    /// The documents of the last few distinct queries: a client sends the same few query
    /// texts over and over, and validating one costs as much as running it.
    pub parsed: Mutex<Vec<(String, Arc<Valid<ExecutableDocument>>)>>,
}

/// How many validated documents a [`Service`] keeps.
const PARSED_DOCUMENTS: usize = 16;

impl Service {
    pub(crate) fn new(schema: Arc<Valid<Schema>>, per_page_cap: u32, introspection: bool) -> Self {
        Service {
            schema,
            per_page_cap,
            introspection,
            parsed: Mutex::new(Vec::new()),
        }
    }
}

/// Runs one GraphQL request (see [`Request`]) against `store`. Returns the serialized
/// response body (straight from the execution result, skipping an intermediate JSON tree);
/// `Err` holds request errors (parse, validation, variables) already shaped as
/// `{"errors": [...]}`. Every list page computed is pushed to `observer`, when given.
pub(crate) fn execute(
    service: &Service,
    store: &Store,
    request: &Request<'_>,
    observer: Option<&PageObserver>,
) -> Result<Vec<u8>, Value> {
    let document = parse(service, request.query)?;
    execute_parsed(service, store, &document, request, observer)
}

/// Parses and validates a query against the served schema; `Err` is the request error
/// body.
pub(crate) fn parse(
    service: &Service,
    query: &str,
) -> Result<Arc<Valid<ExecutableDocument>>, Value> {
    let lock = || {
        service
            .parsed
            .lock()
            .expect("parsed documents lock poisoned")
    };
    if let Some((_, document)) = lock().iter().find(|(text, _)| text == query) {
        return Ok(Arc::clone(document));
    }
    let document = ExecutableDocument::parse_and_validate(&service.schema, query, "query.graphql")
        .map(Arc::new)
        .map_err(|e| errors_body(e.errors.iter().map(|d| d.to_json()).collect()))?;
    let mut parsed = lock();
    if parsed.len() >= PARSED_DOCUMENTS {
        parsed.remove(0);
    }
    parsed.push((query.to_owned(), Arc::clone(&document)));
    Ok(document)
}

/// [`execute`] for a document [`parse`] returned.
pub(crate) fn execute_parsed(
    service: &Service,
    store: &Store,
    document: &Valid<ExecutableDocument>,
    request: &Request<'_>,
    observer: Option<&PageObserver>,
) -> Result<Vec<u8>, Value> {
    let Request {
        operation_name,
        variables,
        ..
    } = *request;
    let schema = &*service.schema;
    let variables: JsonMap = match variables {
        Value::Object(map) => serde_json_bytes::Value::from(Value::Object(map.clone()))
            .as_object()
            .cloned()
            .unwrap_or_default(),
        _ => JsonMap::new(),
    };
    let execution = Execution::new(schema, document)
        .operation_name(operation_name)
        .map_err(|e| errors_body(vec![e.to_graphql_error(&document.sources)]))?
        .raw_variable_values(&variables)
        .enable_schema_introspection(service.introspection);
    if service.introspection {
        // The introspection schema is recursive: refuse absurdly deep queries, as servers do.
        let operation = document
            .operations
            .get(operation_name)
            .map_err(|e| errors_body(vec![e.to_graphql_error(&document.sources)]))?;
        apollo_compiler::introspection::check_max_depth(document, operation)
            .map_err(|e| errors_body(vec![e.to_graphql_error(&document.sources)]))?;
    }
    let root = QueryRoot {
        store,
        per_page_cap: service.per_page_cap,
        observer,
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
    observer: Option<&'s PageObserver>,
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

pub(crate) fn int_list(v: &Value) -> Option<Vec<u64>> {
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
    /// One page of `found`; `total_items` and `total_pages` are those of `found` now.
    fn page(&self, list: GisList, args: &Value, found: &[u32], narrowed: bool) -> ListPage<'s> {
        let (type_name, item_type) = match list {
            GisList::People => ("PersonList", "Person"),
            GisList::Applications => ("OpportunityApplicationList", "OpportunityApplication"),
        };
        let (page, per_page) = paging_args(args, self.per_page_cap);
        let total = found.len() as u64;
        let total_pages = total.div_ceil(u64::from(per_page));
        let start =
            usize::try_from((page - 1).saturating_mul(i64::from(per_page))).unwrap_or(usize::MAX);
        let slice = found
            .get(start.min(found.len())..)
            .map(|rest| &rest[..rest.len().min(per_page as usize)])
            .unwrap_or(&[]);
        if let Some(observer) = self.observer {
            let ids = slice
                .iter()
                .map(|i| match list {
                    GisList::People => self.store.person_id_at(*i),
                    GisList::Applications => self.store.app_id_at(*i),
                })
                .collect();
            observer
                .lock()
                .expect("page observer lock poisoned")
                .push(ComputedPage {
                    list,
                    args: args.clone(),
                    page: u64::try_from(page).unwrap_or(1),
                    per_page,
                    total_items: total,
                    ids,
                    narrowed,
                });
        }
        let render = |idxs: &[u32]| match list {
            GisList::People => self.store.people_page(idxs),
            GisList::Applications => self.store.apps_page(idxs),
        };
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

    fn find_people(&self, args: &Value) -> Arc<Vec<u32>> {
        let f = &args["filters"];
        let q = PeopleQuery {
            lcs: int_list(&f["home_committee"]),
            ids: int_list(&f["ids"]),
            last_interaction: window(&f["last_interaction"]),
            statuses: string_list(&f["statuses"], &f["status"]),
            sort: sort(args),
        };
        self.store.find_people(&q)
    }

    fn people(&self, args: &Value) -> ListPage<'s> {
        let found = self.find_people(args);
        let narrowed = !args["filters"]["ids"].is_null();
        self.page(GisList::People, args, &found, narrowed)
    }

    fn applications(&self, args: &Value, person_id: Option<u64>) -> ListPage<'s> {
        let found = self.find_apps(args, person_id);
        let narrowed = person_id.is_some() || !args["filters"]["person_id"].is_null();
        self.page(GisList::Applications, args, &found, narrowed)
    }

    fn find_apps(&self, args: &Value, person_id: Option<u64>) -> Arc<Vec<u32>> {
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
        self.store.find_apps(&q)
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

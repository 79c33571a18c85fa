//! The fake GIS, driven over HTTP with reqwest as ciosync will drive it.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, TimeZone, Utc};
use ciosync::fake::gis::{FakeGis, FakeGisOptions};
use serde_json::{json, Value};

const PEOPLE_QUERY: &str = "query People($lcs: [Int], $page: Int, $perPage: Int) { people(filters: {home_committee: $lcs}, page: $page, per_page: $perPage) { paging { current_page total_pages total_items } data { id email first_name last_name full_name dob created_at updated_at interviewed profile_photo status cv_url nps_score permissions { can_apply } home_lc { id name } home_mc { name } } } }";

const APPS_QUERY: &str = "query Apps($lcs: [Int], $page: Int, $perPage: Int) { allOpportunityApplication(filters: {person_home_lc: $lcs}, page: $page, per_page: $perPage) { paging { current_page total_pages total_items } data { id status created_at updated_at date_matched an_signed_at date_approved date_realized experience_end_date matched_or_rejected_at date_approval_broken date_realisation_broke meta { date_matched date_approved date_realized remote_realized_at date_completed date_withdrawn date_rejected date_approval_broken date_realisation_broke date_remote_realization_broken_at } person { id } opportunity { id title programme { short_name short_name_display } programmes { short_name short_name_display } } } } }";

fn start(people: usize) -> FakeGis {
    FakeGis::start(FakeGisOptions {
        people,
        ..FakeGisOptions::default()
    })
    .expect("fake GIS starts")
}

/// Posts a GraphQL request with the raw token; returns (status, body).
async fn gql(fake: &FakeGis, token: &str, query: &str, variables: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(fake.graphql_url())
        .header("Authorization", token)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .expect("request reaches the fake");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

/// A query that must succeed; returns `data`.
async fn data(fake: &FakeGis, query: &str, variables: Value) -> Value {
    let (status, body) = gql(fake, &fake.static_token(), query, variables).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
    body["data"].clone()
}

fn ids(list: &Value) -> Vec<u64> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|r| {
            r["id"]
                .as_str()
                .expect("ids are strings")
                .parse()
                .expect("ids hold digits")
        })
        .collect()
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().expect("a date string"))
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(
                v.as_str().unwrap_or_default(),
                "%Y-%m-%dT%H:%M:%S",
            )
            .map(|t| t.and_utc())
        })
        .expect("a parseable date")
}

const INVALID_TOKEN_BODY: &str = r#"{"status":{"code":401,"sub_code":"invalid_token","message":"Invalid, missing or expired token"}}"#;

#[tokio::test]
async fn a_query_selecting_an_unknown_field_is_refused() {
    let fake = start(5);
    let (status, body) = gql(
        &fake,
        &fake.static_token(),
        "{ people { data { id shoe_size } } }",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.get("data").is_none(), "{body}");
    let message = body["errors"][0]["message"].as_str().expect("a message");
    assert!(message.contains("shoe_size"), "{message}");
    // A syntax error and a wrongly typed argument are refused too.
    let (_, body) = gql(&fake, &fake.static_token(), "{ people { ", Value::Null).await;
    assert!(body["errors"][0]["message"].is_string(), "{body}");
    let (_, body) = gql(
        &fake,
        &fake.static_token(),
        "{ people(page: \"two\") { data { id } } }",
        Value::Null,
    )
    .await;
    assert!(body["errors"][0]["message"].is_string(), "{body}");
    assert_eq!(fake.queries().len(), 3);
    assert!(fake.queries().iter().all(|q| q.had_errors));
}

#[tokio::test]
async fn bearer_missing_and_unknown_tokens_get_401_invalid_token() {
    let fake = start(5);
    let query = json!({"query": "{ currentPerson { id } }"});
    let client = reqwest::Client::new();
    for auth in [
        Some(format!("Bearer {}", fake.static_token())),
        None,
        Some("not-a-token".to_owned()),
    ] {
        let mut request = client.post(fake.graphql_url()).json(&query);
        if let Some(auth) = &auth {
            request = request.header("Authorization", auth);
        }
        let response = request.send().await.expect("request reaches the fake");
        assert_eq!(response.status().as_u16(), 401, "{auth:?}");
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(
            body,
            serde_json::from_str::<Value>(INVALID_TOKEN_BODY).expect("JSON")
        );
    }
    // The raw token works, in the header and as ?access_token=.
    let (status, body) = gql(
        &fake,
        &fake.static_token(),
        "{ currentPerson { id } }",
        Value::Null,
    )
    .await;
    assert_eq!(
        (status, &body["data"]["currentPerson"]["id"]),
        (200, &json!("999"))
    );
    let response = client
        .post(format!(
            "{}?access_token={}",
            fake.graphql_url(),
            fake.static_token()
        ))
        .json(&query)
        .send()
        .await
        .expect("request reaches the fake");
    assert_eq!(response.status().as_u16(), 200);
}

async fn refresh(fake: &FakeGis, refresh_token: &str, secret: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(fake.token_url())
        .basic_auth(fake.oauth_client_id(), Some(secret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .send()
        .await
        .expect("request reaches the fake");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

#[tokio::test]
async fn a_rotated_refresh_token_cannot_be_used_twice() {
    let fake = start(5);
    let secret = fake.oauth_client_secret();
    let first = fake.seed_refresh_token();
    let (status, body) = refresh(&fake, &first, &secret).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().is_some() && body["created_at"].as_i64().is_some());
    let second = body["refresh_token"]
        .as_str()
        .expect("a new refresh token")
        .to_owned();
    assert_ne!(second, first);

    let (status, body) = refresh(&fake, &first, &secret).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert!(body["error_description"].is_string());

    // The rotated one works exactly once, and only for the right client.
    let (status, body) = refresh(&fake, &second, "wrong-secret").await;
    assert_eq!((status, &body["error"]), (401, &json!("invalid_client")));
    let (status, _) = refresh(&fake, &second, &secret).await;
    assert_eq!(status, 200);
    let (status, _) = refresh(&fake, &second, &secret).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn an_expired_access_token_gets_the_401_body() {
    let fake = FakeGis::start(FakeGisOptions {
        people: 5,
        token_ttl_requests: Some(2),
        ..FakeGisOptions::default()
    })
    .expect("fake GIS starts");
    let query = "{ currentPerson { id } }";
    let secret = fake.oauth_client_secret();
    let (_, body) = refresh(&fake, &fake.seed_refresh_token(), &secret).await;
    let access = body["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned();
    let rotated = body["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();
    for _ in 0..2 {
        assert_eq!(gql(&fake, &access, query, Value::Null).await.0, 200);
    }
    let (status, body) = gql(&fake, &access, query, Value::Null).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        serde_json::from_str::<Value>(INVALID_TOKEN_BODY).expect("JSON")
    );

    // A fresh token works until the fake expires every OAuth token at once.
    let (_, body) = refresh(&fake, &rotated, &secret).await;
    let next = body["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned();
    assert_eq!(gql(&fake, &next, query, Value::Null).await.0, 200);
    fake.expire_access_tokens();
    assert_eq!(gql(&fake, &next, query, Value::Null).await.0, 401);
    assert_eq!(
        gql(&fake, &fake.static_token(), query, Value::Null).await.0,
        200
    );
    let statuses: Vec<u16> = fake.queries().iter().map(|q| q.status).collect();
    assert_eq!(statuses, vec![200, 200, 401, 200, 401, 200]);
}

/// Pages through `query` (a People or Apps query) and returns every id and the paging seen.
async fn scan(
    fake: &FakeGis,
    query: &str,
    root: &str,
    lcs: Value,
    per_page: u64,
) -> (Vec<u64>, Vec<Value>) {
    let mut all = Vec::new();
    let mut pagings = Vec::new();
    let mut page = 1;
    loop {
        let d = data(
            fake,
            query,
            json!({"lcs": lcs, "page": page, "perPage": per_page}),
        )
        .await;
        let list = &d[root];
        pagings.push(list["paging"].clone());
        let got = ids(&list["data"]);
        if got.is_empty() {
            break;
        }
        all.extend(got);
        page += 1;
    }
    (all, pagings)
}

#[tokio::test]
async fn paging_covers_every_person_and_application_exactly_once() {
    let fake = start(500);
    let in_scope: Vec<u64> = [1337, 1338]
        .iter()
        .flat_map(|lc| fake.person_ids(*lc))
        .collect();
    assert!(!in_scope.is_empty() && in_scope.len() < 500);

    let (people, pagings) = scan(&fake, PEOPLE_QUERY, "people", json!([1337, 1338]), 7).await;
    let unique: HashSet<u64> = people.iter().copied().collect();
    assert_eq!(unique.len(), people.len(), "no person twice");
    assert_eq!(unique, in_scope.iter().copied().collect::<HashSet<_>>());
    let total = in_scope.len() as u64;
    for (i, p) in pagings.iter().enumerate() {
        assert_eq!(p["current_page"], json!(i + 1));
        assert_eq!(p["total_items"], json!(total));
        assert_eq!(p["total_pages"], json!(total.div_ceil(7)));
    }

    // Applications, with a per_page above the cap (clamped to 500 without a word).
    let expected: HashSet<u64> = in_scope
        .iter()
        .flat_map(|p| fake.application_ids(*p))
        .collect();
    assert!(
        expected.len() > 500,
        "enough applications to need two clamped pages: {} for {} people",
        expected.len(),
        in_scope.len()
    );
    let (apps, pagings) = scan(
        &fake,
        APPS_QUERY,
        "allOpportunityApplication",
        json!([1337, 1338]),
        5000,
    )
    .await;
    assert_eq!(apps.len(), expected.len(), "no application twice");
    assert_eq!(apps.into_iter().collect::<HashSet<_>>(), expected);
    assert_eq!(
        pagings[0]["total_pages"],
        json!((expected.len() as u64).div_ceil(500))
    );
    assert_eq!(pagings.len(), 3, "two full pages, then an empty one");

    // Default per_page is 25; an empty result has zero pages.
    let d = data(
        &fake,
        "{ people { paging { total_pages total_items } data { id } } }",
        Value::Null,
    )
    .await;
    assert_eq!(d["people"]["data"].as_array().map(Vec::len), Some(25));
    assert_eq!(d["people"]["paging"]["total_items"], json!(500));
    let d = data(
        &fake,
        PEOPLE_QUERY,
        json!({"lcs": [4242], "page": 1, "perPage": 10}),
    )
    .await;
    assert_eq!(
        d["people"]["paging"],
        json!({"current_page": 1, "total_pages": 0, "total_items": 0})
    );
}

#[tokio::test]
async fn the_queries_ciosync_sends_validate_and_run() {
    let fake = start(60);
    let vars = json!({"lcs": [1337, 1338], "page": 1, "perPage": 100});
    let d = data(&fake, PEOPLE_QUERY, vars.clone()).await;
    let person = &d["people"]["data"][0];
    let keys: BTreeSet<&str> = person
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    let asked: BTreeSet<&str> = "id email first_name last_name full_name dob created_at updated_at interviewed profile_photo status cv_url nps_score permissions home_lc home_mc"
        .split(' ')
        .collect();
    assert_eq!(keys, asked, "exactly the fields asked for");
    assert_eq!(person["permissions"].as_object().map(|o| o.len()), Some(1));

    let d = data(&fake, APPS_QUERY, vars).await;
    let apps = d["allOpportunityApplication"]["data"]
        .as_array()
        .expect("a list")
        .clone();
    assert!(!apps.is_empty());
    for app in &apps {
        assert_eq!(
            app["person"].as_object().map(|o| o.len()),
            Some(1),
            "person {{ id }} only"
        );
        assert_eq!(app["meta"].as_object().map(|o| o.len()), Some(10));
    }
    let q = fake.queries();
    assert_eq!(q[0].root_fields, vec!["people"]);
    assert_eq!(q[1].root_fields, vec!["allOpportunityApplication"]);
    assert_eq!(q[1].variables["perPage"], json!(100));
}

#[tokio::test]
async fn filters_aliases_and_variables_work() {
    let fake = start(120);
    let query = "query Q($a: [Int], $b: [Int]) { first: people(filters: {home_committee: $a}) { paging { total_items } } second: people(filters: {home_committee: $b}, pagination: {page: 1, per_page: 3}) { list: data { key: id } } }";
    let d = data(&fake, query, json!({"a": [1337], "b": [2001]})).await;
    assert_eq!(
        d["first"]["paging"]["total_items"],
        json!(fake.person_ids(1337).len())
    );
    let second: Vec<u64> = d["second"]["list"]
        .as_array()
        .expect("aliased list")
        .iter()
        .map(|r| {
            r["key"]
                .as_str()
                .expect("aliased id")
                .parse()
                .expect("digits")
        })
        .collect();
    assert_eq!(
        second,
        fake.person_ids(2001)[..3].to_vec(),
        "default order is created_at desc"
    );

    // ids, person(id), personApplications(id), getApplication(id).
    let wanted: Vec<u64> = fake.person_ids(1338).into_iter().take(4).collect();
    let d = data(
        &fake,
        "query($ids: [ID!]) { people(filters: {ids: $ids}) { data { id } } }",
        json!({"ids": wanted.iter().map(u64::to_string).collect::<Vec<_>>()}),
    )
    .await;
    assert_eq!(
        ids(&d["people"]["data"])
            .into_iter()
            .collect::<HashSet<_>>(),
        wanted.iter().copied().collect()
    );

    let with_apps = fake
        .person_ids(1338)
        .into_iter()
        .find(|p| fake.application_ids(*p).len() >= 2)
        .expect("someone with applications");
    let app_ids = fake.application_ids(with_apps);
    let d = data(
        &fake,
        "query($id: ID!, $pid: ID, $aid: ID, $n: Int) { person(id: $id) { id home_lc { id } } personApplications(id: $pid) { data { id } } allOpportunityApplication(filters: {person_id: $n}) { paging { total_items } } getApplication(id: $aid) { id person { id full_name } } }",
        json!({"id": with_apps.to_string(), "pid": with_apps.to_string(), "n": with_apps, "aid": app_ids[0].to_string()}),
    )
    .await;
    assert_eq!(d["person"]["home_lc"]["id"], json!("1338"));
    let mut got = ids(&d["personApplications"]["data"]);
    got.sort_unstable();
    assert_eq!(got, app_ids);
    assert_eq!(
        d["allOpportunityApplication"]["paging"]["total_items"],
        json!(app_ids.len())
    );
    assert_eq!(
        d["getApplication"]["person"]["id"],
        json!(with_apps.to_string())
    );
    let full_name = fake.person_json(with_apps).expect("person")["full_name"].clone();
    assert_eq!(
        d["getApplication"]["person"]["full_name"], full_name,
        "the whole person is reachable"
    );

    // statuses and programmes, checked against the full records.
    let all_ids: Vec<u64> = [1337, 1338, 2001, 2002]
        .iter()
        .flat_map(|lc| fake.person_ids(*lc))
        .flat_map(|p| fake.application_ids(p))
        .collect();
    let records: Vec<Value> = all_ids
        .iter()
        .map(|a| fake.application_json(*a).expect("app"))
        .collect();
    let count = |pred: &dyn Fn(&Value) -> bool| records.iter().filter(|r| pred(r)).count();
    let d = data(
        &fake,
        "{ allOpportunityApplication(filters: {statuses: [\"approved\", \"realized\"]}, per_page: 500) { paging { total_items } data { status } } }",
        Value::Null,
    )
    .await;
    let expected = count(&|r| r["status"] == "approved" || r["status"] == "realized");
    assert!(expected > 0);
    assert_eq!(
        d["allOpportunityApplication"]["paging"]["total_items"],
        json!(expected)
    );
    let has_programme = |r: &Value, id: &str| {
        r["opportunity"]["programme"]["id"] == id
            || r["opportunity"]["programmes"]
                .as_array()
                .is_some_and(|l| l.iter().any(|p| p["id"] == id))
    };
    let d = data(
        &fake,
        "{ allOpportunityApplication(filters: {programmes: [8]}) { paging { total_items } } }",
        Value::Null,
    )
    .await;
    let expected = count(&|r| has_programme(r, "8"));
    assert!(expected > 0);
    assert_eq!(
        d["allOpportunityApplication"]["paging"]["total_items"],
        json!(expected)
    );

    // last_interaction is a window on updated_at.
    let people: Vec<Value> = [1337, 1338, 2001, 2002]
        .iter()
        .flat_map(|lc| fake.person_ids(*lc))
        .map(|p| fake.person_json(p).expect("person"))
        .collect();
    let from = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("date");
    let expected: HashSet<u64> = people
        .iter()
        .filter(|p| time(&p["updated_at"]) >= from)
        .map(|p| p["id"].as_str().expect("id").parse().expect("digits"))
        .collect();
    let d = data(
        &fake,
        "query($f: DateTime) { people(filters: {last_interaction: {from: $f}}, per_page: 500) { data { id } } }",
        json!({"f": "2026-01-01"}),
    )
    .await;
    assert!(!expected.is_empty() && expected.len() < people.len());
    assert_eq!(
        ids(&d["people"]["data"])
            .into_iter()
            .collect::<HashSet<_>>(),
        expected
    );
}

fn full_people_page() -> &'static str {
    "{ people(per_page: 500) { data { id email first_name last_name dob created_at updated_at status cv_url nps_score home_lc { id name } home_mc { id name } } } allOpportunityApplication(per_page: 500) { data { id status created_at updated_at date_approved meta { date_approved date_withdrawn } opportunity { id programme { id } programmes { id } } } } }"
}

#[tokio::test]
async fn the_generator_is_deterministic_per_seed() {
    let a = start(40);
    let b = start(40);
    let c = FakeGis::start(FakeGisOptions {
        seed: 7,
        people: 40,
        ..FakeGisOptions::default()
    })
    .expect("fake GIS starts");
    let da = data(&a, full_people_page(), Value::Null).await;
    let db = data(&b, full_people_page(), Value::Null).await;
    let dc = data(&c, full_people_page(), Value::Null).await;
    assert_eq!(da, db);
    assert_ne!(da["people"], dc["people"]);
    assert_ne!(
        da["allOpportunityApplication"],
        dc["allOpportunityApplication"]
    );
    assert_eq!(a.static_token(), b.static_token());
    assert_ne!(a.static_token(), c.static_token());
}

#[tokio::test]
async fn generated_data_has_the_awkward_cases_of_real_gis() {
    let fake = start(400);
    let people: Vec<Value> = [1337, 1338, 2001, 2002]
        .iter()
        .flat_map(|lc| fake.person_ids(*lc))
        .map(|p| fake.person_json(p).expect("person"))
        .collect();
    let apps: Vec<Value> = people
        .iter()
        .flat_map(|p| fake.application_ids(p["id"].as_str().expect("id").parse().expect("digits")))
        .map(|a| fake.application_json(a).expect("app"))
        .collect();
    let emails: Vec<&str> = people.iter().filter_map(|p| p["email"].as_str()).collect();
    assert!(emails.iter().all(|e| e.starts_with("p_")
        && e.ends_with("@inbound.aiesec.org")
        && e.len() == 2 + 40 + 19));
    assert!(
        emails.len() > emails.iter().collect::<HashSet<_>>().len(),
        "two people share an e-mail"
    );
    assert!(people.iter().any(|p| p["home_mc"].is_null()));
    assert!(people.iter().any(|p| p["dob"].is_null()));
    assert!(people.iter().any(|p| p["cv_url"].is_null()));
    let dates: Vec<&str> = people
        .iter()
        .filter_map(|p| p["created_at"].as_str())
        .collect();
    assert!(dates.iter().any(|d| d.ends_with('Z') && d.contains('.')));
    assert!(dates.iter().any(|d| d.ends_with("+02:00")));
    assert!(dates.iter().any(|d| !d.ends_with('Z') && !d.contains('+')));

    let ratio = apps.len() as f64 / people.len() as f64;
    assert!(
        (2.0..4.0).contains(&ratio),
        "about three applications per person: {ratio}"
    );
    let per_person: Vec<usize> = people
        .iter()
        .map(|p| {
            fake.application_ids(p["id"].as_str().expect("id").parse().expect("digits"))
                .len()
        })
        .collect();
    assert!(per_person.contains(&0) && per_person.iter().any(|n| *n >= 10));
    let statuses: HashSet<&str> = apps.iter().filter_map(|a| a["status"].as_str()).collect();
    for s in [
        "open",
        "matched",
        "accepted",
        "approved",
        "realized",
        "finished",
        "completed",
        "withdrawn",
        "rejected",
        "approval_broken",
        "paid",
    ] {
        assert!(statuses.contains(s), "status {s} appears");
    }
    assert!(apps.iter().any(|a| a["opportunity"]["programme"].is_null()
        && a["opportunity"]["programmes"]
            .as_array()
            .is_some_and(|l| !l.is_empty())));
    let names: HashSet<&str> = apps
        .iter()
        .filter_map(|a| a["opportunity"]["programmes"][0]["short_name"].as_str())
        .collect();
    assert!(names.contains("GCDP") && names.contains("GIP") && names.contains("GE"));
    // A break followed by a re-approval: the break predates the approval.
    assert!(apps.iter().any(|a| a["status"] == "approved"
        && !a["date_approval_broken"].is_null()
        && !a["date_approved"].is_null()
        && time(&a["date_approval_broken"]) < time(&a["date_approved"])));
    assert!(apps
        .iter()
        .any(|a| a["status"] == "approval_broken" && a["date_approved"].is_null()));
    let horizon = Utc
        .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
        .single()
        .expect("date");
    assert!(
        apps.iter().all(|a| time(&a["updated_at"]) < horizon),
        "dates come from the fixed epoch"
    );
}

#[tokio::test]
async fn mutations_show_up_in_later_queries() {
    let fake = start(0);
    let d = data(
        &fake,
        PEOPLE_QUERY,
        json!({"lcs": [1337], "page": 1, "perPage": 10}),
    )
    .await;
    assert_eq!(d["people"]["paging"]["total_items"], json!(0));

    fake.insert_person(json!({"id": "11", "full_name": "Ada L", "home_lc": {"id": "1337", "name": "Atlantis"}, "created_at": "2026-01-01T00:00:00Z"}));
    fake.insert_person(json!({"id": 12, "full_name": "Bo K", "home_lc": {"id": 1337, "name": "Atlantis"}, "created_at": "2026-02-01T00:00:00Z"}));
    fake.insert_application(json!({"id": "501", "status": "open", "person": {"id": "11"},
        "opportunity": {"id": "9", "title": "T", "programme": {"id": "7", "short_name": "GCDP", "short_name_display": "GV"}}}));
    let d = data(
        &fake,
        PEOPLE_QUERY,
        json!({"lcs": [1337], "page": 1, "perPage": 10}),
    )
    .await;
    assert_eq!(ids(&d["people"]["data"]), vec![12, 11], "created_at desc");
    assert_eq!(fake.application_ids(11), vec![501]);

    let later = Utc
        .with_ymd_and_hms(2026, 11, 5, 12, 0, 0)
        .single()
        .expect("date");
    fake.set_clock(later);
    assert!(fake.set_application_status(501, "approved"));
    assert!(fake.update_person(11, json!({"first_name": "Ada"})));
    let d = data(
        &fake,
        "{ getApplication(id: 501) { status date_approved updated_at meta { date_approved } } person(id: 11) { first_name updated_at } }",
        Value::Null,
    )
    .await;
    assert_eq!(d["getApplication"]["status"], "approved");
    assert_eq!(time(&d["getApplication"]["date_approved"]), later);
    assert_eq!(time(&d["getApplication"]["meta"]["date_approved"]), later);
    assert_eq!(time(&d["person"]["updated_at"]), later);
    assert_eq!(d["person"]["first_name"], "Ada");

    assert!(fake.move_person(12, 2001));
    let d = data(
        &fake,
        PEOPLE_QUERY,
        json!({"lcs": [1337], "page": 1, "perPage": 10}),
    )
    .await;
    assert_eq!(ids(&d["people"]["data"]), vec![11]);
    assert_eq!(fake.person_ids(2001), vec![12]);
    assert!(fake.update_application(501, json!({"status": "on_hold"})));
    assert!(fake.remove_person(11));
    assert!(!fake.remove_person(11));
    let d = data(
        &fake,
        APPS_QUERY,
        json!({"lcs": [1337, 2001], "page": 1, "perPage": 10}),
    )
    .await;
    assert_eq!(
        d["allOpportunityApplication"]["paging"]["total_items"],
        json!(0)
    );
    assert_eq!(fake.application_json(501), None);
}

#[tokio::test]
async fn sort_by_updated_at_desc_puts_the_latest_change_first() {
    let fake = start(80);
    let query = "query($s: PeopleSortOption, $d: BaseSortDirection) { people(filters: {sort: $s, sort_direction: $d}, per_page: 500) { data { id updated_at } } }";
    let d = data(&fake, query, json!({"s": "updated_at", "d": "desc"})).await;
    let list = d["people"]["data"].as_array().expect("a list").clone();
    assert_eq!(list.len(), 80);
    let times: Vec<i64> = list
        .iter()
        .map(|p| time(&p["updated_at"]).timestamp())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "descending");

    let target = ids(&d["people"]["data"])[40];
    fake.set_clock(
        Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
            .single()
            .expect("date"),
    );
    assert!(fake.update_person(target, json!({"status": "applied"})));
    let d = data(
        &fake,
        "{ people(sort: \"-updated_at\", per_page: 1) { data { id } } }",
        Value::Null,
    )
    .await;
    assert_eq!(ids(&d["people"]["data"]), vec![target]);
    let d = data(&fake, "{ allOpportunityApplication(filters: {sort: updated_at, sort_direction: desc}, per_page: 500) { data { updated_at } } }", Value::Null).await;
    let times: Vec<i64> = d["allOpportunityApplication"]["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|a| time(&a["updated_at"]).timestamp())
        .collect();
    assert!(times.len() > 100 && times.windows(2).all(|w| w[0] >= w[1]));
}

#[tokio::test]
async fn requests_are_recorded() {
    let fake = start(3);
    let _ = gql(
        &fake,
        &fake.static_token(),
        "{ currentPerson { id } }",
        Value::Null,
    )
    .await;
    let _ = gql(&fake, "bad", "{ currentPerson { id } }", Value::Null).await;
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        (
            requests[0].method.as_str(),
            requests[0].path.as_str(),
            requests[0].status
        ),
        ("POST", "/graphql", 200)
    );
    assert_eq!(requests[1].status, 401);
    assert!(requests[0].body_bytes > 20);
}

#[tokio::test]
async fn a_million_people_answer_a_page() {
    let fake = start(1_000_000);
    let d = data(
        &fake,
        PEOPLE_QUERY,
        json!({"lcs": [1337], "page": 3, "perPage": 500}),
    )
    .await;
    assert_eq!(d["people"]["data"].as_array().map(Vec::len), Some(500));
    let total = d["people"]["paging"]["total_items"]
        .as_u64()
        .expect("a total");
    assert!((200_000..300_000).contains(&total), "{total}");
}

#[test]
fn the_handle_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<FakeGis>();
}

const PERSON_FIELDS_QUERY: &str =
    "{ __type(name: \"Person\") { name fields(includeDeprecated: true) { name } } }";

fn field_names(data: &Value) -> Vec<String> {
    data["__type"]["fields"]
        .as_array()
        .expect("a field list")
        .iter()
        .map(|f| f["name"].as_str().expect("a name").to_owned())
        .collect()
}

#[tokio::test]
async fn introspection_answers_for_the_schema_served() {
    let fake = start(2);
    let d = data(&fake, PERSON_FIELDS_QUERY, Value::Null).await;
    let fields = field_names(&d);
    assert!(fields.iter().any(|f| f == "cv_url"), "{fields:?}");
    assert!(fields.iter().any(|f| f == "home_lc"), "{fields:?}");
    let d = data(&fake, "{ __schema { queryType { name } } }", Value::Null).await;
    assert_eq!(d["__schema"]["queryType"]["name"], json!("QueryType"));
    let d = data(
        &fake,
        "{ __type(name: \"NoSuchType\") { name } }",
        Value::Null,
    )
    .await;
    assert_eq!(d["__type"], Value::Null);
}

#[tokio::test]
async fn a_schema_without_a_field_refuses_it_and_does_not_list_it() {
    let fake = FakeGis::start(FakeGisOptions {
        people: 2,
        removed_fields: vec!["Person.cv_url".to_owned()],
        ..FakeGisOptions::default()
    })
    .expect("fake GIS starts");
    let d = data(&fake, PERSON_FIELDS_QUERY, Value::Null).await;
    let fields = field_names(&d);
    assert!(!fields.iter().any(|f| f == "cv_url"), "{fields:?}");
    assert!(fields.iter().any(|f| f == "email"), "the others stay");
    let (status, body) = gql(
        &fake,
        &fake.static_token(),
        "{ people { data { id cv_url } } }",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.get("data").is_none(), "{body}");
    let message = body["errors"][0]["message"].as_str().expect("a message");
    assert!(message.contains("cv_url"), "{message}");

    // A field the schema never had is a clear start-up error, naming it.
    let refused = FakeGis::start(FakeGisOptions {
        removed_fields: vec!["Person.shoe_size".to_owned()],
        ..FakeGisOptions::default()
    });
    let error = refused.err().expect("refused");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("Person.shoe_size"), "{error}");
}

#[tokio::test]
async fn a_gis_without_introspection_answers_it_with_an_error() {
    let fake = FakeGis::start(FakeGisOptions {
        people: 2,
        introspection: false,
        ..FakeGisOptions::default()
    })
    .expect("fake GIS starts");
    let (status, body) = gql(
        &fake,
        &fake.static_token(),
        PERSON_FIELDS_QUERY,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert!(body["errors"][0]["message"].is_string(), "{body}");
    assert_eq!(body["data"]["__type"], Value::Null, "{body}");
    // Everything else works as usual.
    let d = data(&fake, "{ people { data { id } } }", Value::Null).await;
    assert_eq!(d["people"]["data"].as_array().map(Vec::len), Some(2));
}

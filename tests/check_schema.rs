//! Binary-level tests of `check`'s GIS schema check (SPEC 8.4): against a complete schema,
//! one with fields removed, and a GIS that refuses introspection.

use ciosync::fake::cio::FakeCioOptions;
use ciosync::fake::gis::FakeGisOptions;
use serde_json::{json, Value};

use crate::common::*;

fn env_with(gis: FakeGisOptions) -> Env {
    Env::with(gis, FakeCioOptions::default())
}

fn lines(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// The `gis_schema` entries of `check --json`.
fn schema_entries(out: &std::process::Output) -> Vec<Value> {
    stdout_json(out)
        .as_array()
        .expect("a list of checks")
        .iter()
        .filter(|c| c["check"] == json!("gis_schema"))
        .cloned()
        .collect()
}

#[test]
fn a_complete_schema_passes_with_one_line() {
    let env = Env::new(3);
    let out = env.run("check", &[]);
    assert_eq!(code(&out), 0, "stdout: {}", stdout(&out));
    let schema = lines(&stdout(&out), "gis_schema:");
    assert_eq!(schema.len(), 1, "{}", stdout(&out));
    assert!(
        schema[0].starts_with("gis_schema: ok (GIS has all ") && schema[0].contains(" types)"),
        "{}",
        schema[0]
    );
    // One introspection request, a query like every other.
    let introspections: Vec<_> = env
        .gis
        .queries()
        .into_iter()
        .filter(|q| q.root_fields.iter().any(|f| f == "__type"))
        .collect();
    assert_eq!(introspections.len(), 1);
    assert!(!introspections[0].had_errors);

    let out = env.run("check", &["--json"]);
    assert_eq!(code(&out), 0);
    let entries = schema_entries(&out);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["ok"], json!(true));
    assert_eq!(entries[0]["skipped"], json!(false));
}

#[test]
fn a_removed_field_fails_with_69_naming_each_type_and_field() {
    let env = env_with(FakeGisOptions {
        people: 3,
        removed_fields: vec!["Person.cv_url".to_owned(), "Paging.total_pages".to_owned()],
        ..FakeGisOptions::default()
    });
    let out = env.run("check", &[]);
    assert_eq!(code(&out), 69, "stdout: {}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("gis: ok"),
        "the credential still works: {text}"
    );
    assert!(text.contains("customerio: ok"), "{text}");
    let failed = lines(&text, "gis_schema: FAILED");
    assert_eq!(
        failed,
        [
            "gis_schema: FAILED: GIS no longer has Paging.total_pages, which ciosync selects",
            "gis_schema: FAILED: GIS no longer has Person.cv_url, which ciosync selects",
        ],
        "{text}"
    );
    assert_eq!(stderr(&out), "", "each failure is on its line of stdout");

    let out = env.run("check", &["--json"]);
    assert_eq!(code(&out), 69);
    let entries = schema_entries(&out);
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e["ok"] == json!(false)));
}

#[test]
fn a_gis_refusing_introspection_gives_a_skipped_line_and_exit_0() {
    let env = env_with(FakeGisOptions {
        people: 3,
        introspection: false,
        ..FakeGisOptions::default()
    });
    let out = env.run("check", &[]);
    assert_eq!(code(&out), 0, "stdout: {}", stdout(&out));
    let schema = lines(&stdout(&out), "gis_schema:");
    assert_eq!(schema.len(), 1, "{}", stdout(&out));
    assert!(
        schema[0].starts_with("gis_schema: skipped (GIS refused introspection: "),
        "{}",
        schema[0]
    );
    let out = env.run("check", &["--json"]);
    let entries = schema_entries(&out);
    assert_eq!(
        (&entries[0]["ok"], &entries[0]["skipped"]),
        (&json!(true), &json!(true))
    );
}

#[test]
fn no_schema_check_without_a_working_gis_credential() {
    let env = Env::new(3);
    env.write_config_text(&env.config_text("access_token = \"not-the-token\"", ""));
    let out = env.run("check", &[]);
    assert_eq!(code(&out), 77, "stdout: {}", stdout(&out));
    let schema = lines(&stdout(&out), "gis_schema:");
    assert_eq!(
        schema,
        ["gis_schema: skipped (the GIS credential check failed)"]
    );
    assert!(
        env.gis
            .queries()
            .iter()
            .all(|q| !q.root_fields.iter().any(|f| f == "__type")),
        "no introspection with a refused credential"
    );
}

//! Security (GitHub issue 4, item 6): no credential ever reaches stdout, stderr or the log
//! files, even at trace level and across OAuth refreshes; the files in `data_dir` are private
//! whatever the umask; readable secrets are warned about; the GIS client only reads.
//!
//! A recording proxy sits in front of the fake GIS so the tests see every query document
//! and every token the OAuth endpoint hands out (the fake keeps those to itself).

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use ciosync::fake::cio::FakeCioOptions;
use ciosync::fake::gis::FakeGisOptions;
use ciosync::fake::server::Server;
use serde_json::{json, Value};

use crate::common::*;

/// One request through the proxy and its answer.
#[derive(Debug, Clone)]
struct Exchange {
    path: String,
    request: Vec<u8>,
    response: Vec<u8>,
}

/// Forwards everything upstream, keeping a copy of each exchange.
struct Recorder {
    upstream: Upstream,
    log: Mutex<Vec<Exchange>>,
}

async fn record_and_forward(
    State(recorder): State<Arc<Recorder>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = recorder
        .upstream
        .forward(method, &uri, &headers, body.clone())
        .await;
    let Some((_, response)) = &answer else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    recorder.log.lock().expect("exchange log").push(Exchange {
        path: uri.path().to_owned(),
        request: body.to_vec(),
        response: response.to_vec(),
    });
    json_reply(answer)
}

fn recorder(target: String) -> (Server, Arc<Recorder>) {
    let recorder = Arc::new(Recorder {
        upstream: Upstream::new(target),
        log: Mutex::new(Vec::new()),
    });
    let server = start_proxy(record_and_forward, Arc::clone(&recorder));
    (server, recorder)
}

/// A distinctive customer.io key and site, so a match in the output means a leak.
fn cio_options() -> FakeCioOptions {
    FakeCioOptions {
        site_id: "site-5e8d0c".to_owned(),
        api_key: "cio-key-7f3a9c2e5b1d4e6f8a0b".to_owned(),
        ..FakeCioOptions::default()
    }
}

/// An env with `people` generated people and the customer.io of [`cio_options`].
fn env_with_cio_options(people: usize) -> Env {
    Env::with(
        FakeGisOptions {
            people,
            ..FakeGisOptions::default()
        },
        cio_options(),
    )
}

/// An OAuth setup behind the recording proxy: access tokens die every 8 requests, pages
/// are small (many requests, so several refreshes happen mid-run), logs go to `logs/` too.
struct OAuthScenario {
    env: Env,
    proxy: Server,
    recorder: Arc<Recorder>,
    logs: PathBuf,
    outputs: Vec<Output>,
}

fn oauth_scenario() -> OAuthScenario {
    let env = Env::with(
        FakeGisOptions {
            people: 40,
            lcs: vec![1337, 1338],
            // Above the client's page concurrency (4): with a smaller budget, a retried request
            // can find its fresh token already used up by its siblings, a second 401 (exit 77)
            // that real GIS, whose tokens expire by time, never produces.
            token_ttl_requests: Some(8),
            ..FakeGisOptions::default()
        },
        cio_options(),
    );
    let (proxy, recorder) = recorder(env.gis.url());
    let logs = env.dir.path().join("logs");
    let oauth = format!(
        "[gis.oauth]\ntoken_url = \"{}/oauth/token\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\nrefresh_token = \"{}\"",
        proxy.url(),
        env.gis.oauth_client_id(),
        env.gis.oauth_client_secret(),
        env.gis.seed_refresh_token()
    );
    let text = env
        .config_text(&oauth, &format!("[log]\ndir = \"{}\"", logs.display()))
        .replace(
            &format!("endpoint = \"{}\"", env.gis.graphql_url()),
            &format!("endpoint = \"{}/graphql\"", proxy.url()),
        )
        .replace("page_size = 50", "page_size = 5");
    env.write_config_text(&text);
    let config = env.config_path();
    let config = config.to_str().expect("utf-8 path");
    let trace = [("CIOSYNC_LOG", "trace")];
    let mut outputs = Vec::new();
    outputs.push(ciosync(
        &["run", "--config", config, "-vv", "--json"],
        &trace,
    ));
    outputs.push(ciosync(&["check", "--config", config], &trace));
    // Every access token dies: the next run starts from the rotated refresh token.
    env.gis.expire_access_tokens();
    env.gis.update_person(
        env.gis.person_ids(1337)[0],
        json!({"first_name": "Changed"}),
    );
    outputs.push(ciosync(&["run", "--config", config, "-vv"], &trace));
    for out in &outputs {
        assert_eq!(code(out), 0, "stderr: {}", stderr(out));
    }
    OAuthScenario {
        env,
        proxy,
        recorder,
        logs,
        outputs,
    }
}

#[test]
fn no_credential_reaches_stdout_stderr_or_the_log_files_even_at_trace() {
    let scenario = oauth_scenario();
    let env = &scenario.env;
    let exchanges = scenario.recorder.log.lock().expect("log").clone();

    // Every credential in play: configured, issued, rotated, and their Basic encodings.
    let mut secrets: BTreeSet<String> = BTreeSet::new();
    secrets.insert(env.gis.oauth_client_secret());
    secrets.insert(env.gis.seed_refresh_token());
    secrets.insert(env.gis.static_token());
    secrets.insert(env.cio.api_key());
    let basic = |user: &str, password: &str| {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    };
    secrets.insert(basic(
        &env.gis.oauth_client_id(),
        &env.gis.oauth_client_secret(),
    ));
    secrets.insert(basic(&env.cio.site_id(), &env.cio.api_key()));
    let refreshes: Vec<&Exchange> = exchanges
        .iter()
        .filter(|e| e.path == "/oauth/token")
        .collect();
    for exchange in &refreshes {
        let answer: Value = serde_json::from_slice(&exchange.response).expect("token answer");
        for key in ["access_token", "refresh_token"] {
            let token = answer[key].as_str().expect("a token").to_owned();
            assert!(token.len() >= 16, "tokens are long enough to search for");
            secrets.insert(token);
        }
    }
    let stored = ciosync::credentials::load(&env.data_dir())
        .expect("readable")
        .expect("a rotated refresh token is persisted");
    let rotated = stored.refresh_token.expose().to_owned();
    assert_ne!(rotated, env.gis.seed_refresh_token(), "the token rotated");
    secrets.insert(rotated);
    if let Some(access) = &stored.access_token {
        secrets.insert(access.token.expose().to_owned());
    }
    assert!(
        refreshes.len() >= 3,
        "several refreshes, some mid-run: {}",
        refreshes.len()
    );

    // Everything a human or a log shipper could see.
    let mut seen: Vec<(String, String)> = Vec::new();
    for (i, out) in scenario.outputs.iter().enumerate() {
        seen.push((format!("stdout of command {i}"), stdout(out)));
        seen.push((format!("stderr of command {i}"), stderr(out)));
    }
    let log_files: Vec<PathBuf> = walk(&scenario.logs)
        .into_iter()
        .filter(|path| !path.is_dir())
        .collect();
    assert!(!log_files.is_empty(), "log.dir got files");
    for file in &log_files {
        let text = String::from_utf8_lossy(&std::fs::read(file).expect("log file")).into_owned();
        seen.push((file.display().to_string(), text));
    }
    for name in ["state.json", "state.json.bak", "last_run.json"] {
        let bytes = env.data_file(name).expect("written");
        seen.push((
            name.to_owned(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    // The logs really are verbose (else this test proves nothing). ciosync itself logs
    // nothing at debug today, and HTTP internals are capped at info, so `-vv` with
    // `CIOSYNC_LOG=trace` shows info lines and up.
    let all_logs: String = seen
        .iter()
        .filter(|(name, _)| {
            name.starts_with("stderr") || name.ends_with(".log") || name.contains("ciosync.log")
        })
        .map(|(_, text)| text.as_str())
        .collect();
    for expected in ["INFO", "refreshed", "Run finished"] {
        assert!(all_logs.contains(expected), "{expected:?} logged");
    }
    for secret in &secrets {
        for (name, text) in &seen {
            assert!(
                !text.contains(secret.as_str()),
                "a credential ({} chars) leaked into {name}",
                secret.len()
            );
        }
    }
    drop(scenario.proxy);
}

#[test]
fn the_gis_client_only_sends_read_queries_and_never_selects_password() {
    let scenario = oauth_scenario();
    let schema_text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gis/schema.graphql"))
            .expect("schema");
    let schema = apollo_compiler::Schema::parse_and_validate(schema_text, "schema.graphql")
        .expect("the schema is valid");
    let exchanges = scenario.recorder.log.lock().expect("log").clone();
    let queries: Vec<&Exchange> = exchanges.iter().filter(|e| e.path == "/graphql").collect();
    assert!(queries.len() >= 10, "{} GIS requests", queries.len());
    for exchange in &queries {
        let request: Value = serde_json::from_slice(&exchange.request).expect("JSON request");
        let query = request["query"].as_str().expect("a query document");
        let document =
            apollo_compiler::ExecutableDocument::parse_and_validate(&schema, query, "q.graphql")
                .unwrap_or_else(|e| panic!("{query} does not validate: {e}"));
        let operations: Vec<_> = document.operations.iter().collect();
        assert!(!operations.is_empty());
        for operation in operations {
            assert!(operation.is_query(), "only queries: {query}");
        }
        let words: BTreeSet<String> = query
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map(str::to_ascii_lowercase)
            .collect();
        for forbidden in ["password", "mutation", "subscription"] {
            assert!(!words.contains(forbidden), "{forbidden} in {query}");
        }
    }
    // The fake's own record agrees: every root field is a field of the query type.
    let query_root = schema
        .schema_definition
        .query
        .as_ref()
        .expect("a query root")
        .name
        .clone();
    let root_fields: BTreeSet<String> = schema
        .get_object(&query_root)
        .expect("query type")
        .fields
        .keys()
        .map(|name| name.to_string())
        .collect();
    let recorded = scenario.env.gis.queries();
    assert_eq!(recorded.len(), queries.len(), "every request recorded");
    for query in &recorded {
        assert!(!query.root_fields.is_empty());
        for field in &query.root_fields {
            // Introspection meta-fields (`check`'s schema check) only read the schema.
            let introspection = matches!(field.as_str(), "__type" | "__schema" | "__typename");
            assert!(
                introspection || root_fields.contains(field),
                "{field} is a query field"
            );
        }
    }
}

/// Runs the built binary through `sh` with `umask 000`.
fn run_with_umask_000(config: &Path) -> Output {
    let output = scrubbed("sh")
        .args([
            "-c",
            "umask 000; exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_ciosync"),
            "run",
            "--config",
        ])
        .arg(config)
        .output()
        .expect("sh runs");
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    output
}

#[test]
fn data_dir_files_are_private_whatever_the_umask() {
    let env = Env::with(
        FakeGisOptions {
            people: 20,
            lcs: vec![1337],
            ..FakeGisOptions::default()
        },
        cio_options(),
    );
    env.write_config_text(&env.config_text(&env.oauth_table(), ""));
    assert!(!env.data_dir().exists(), "ciosync creates the data dir");
    run_with_umask_000(&env.config_path());
    env.gis.expire_access_tokens();
    env.gis.update_person(
        env.gis.person_ids(1337)[0],
        json!({"first_name": "Changed"}),
    );
    run_with_umask_000(&env.config_path());

    assert_eq!(mode(&env.data_dir()), 0o700, "data dir");
    let files = [
        "state.json",
        "state.json.bak",
        "state.key",
        "gis-oauth.json",
        "last_run.json",
        "ciosync.lock",
        "gis-oauth.lock",
    ];
    for name in files {
        assert_eq!(mode(&env.data_dir().join(name)), 0o600, "{name}");
    }
    // Nothing else in the data dir, so nothing escaped the list above.
    let mut present: Vec<String> = std::fs::read_dir(env.data_dir())
        .expect("data dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    let mut expected: Vec<String> = files.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    assert_eq!(present, expected);
}

/// The base config with the GIS token and the customer.io key in files instead of inline.
fn config_with_secret_files(env: &Env, token_mode: u32, key_mode: u32) -> (PathBuf, PathBuf) {
    let token_file = env.dir.path().join("gis-token");
    let key_file = env.dir.path().join("cio-key");
    std::fs::write(&token_file, format!("{}\n", env.gis.static_token())).expect("token");
    std::fs::write(&key_file, env.cio.api_key()).expect("key");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(token_mode))
        .expect("chmod");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(key_mode)).expect("chmod");
    let text = env
        .config_text(
            &format!("access_token_file = \"{}\"", token_file.display()),
            "",
        )
        .replace(
            &format!("api_key = \"{}\"", env.cio.api_key()),
            &format!("api_key_file = \"{}\"", key_file.display()),
        );
    env.write_config_text(&text);
    (token_file, key_file)
}

#[test]
fn readable_secrets_are_warned_about_and_private_ones_are_not() {
    let env = env_with_cio_options(5);
    let config = env.config_path();
    let no_secret_in = |text: &str| {
        assert!(!text.contains(&env.gis.static_token()));
        assert!(!text.contains(&env.cio.api_key()));
    };

    // Inline secrets in a config file others may read: a warning, and the run still works.
    for readable in [0o644, 0o640, 0o604] {
        env.write_config("");
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(readable))
            .expect("chmod");
        let out = env.run("run", &[]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("WARN"), "mode {readable:o}: {err}");
        assert!(err.contains(&config.display().to_string()), "{err}");
        assert!(
            err.contains("gis.access_token") && err.contains("customerio.api_key"),
            "{err}"
        );
        no_secret_in(&err);
    }
    // The same config at 0600: silent.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 0);
    assert_eq!(stderr(&out), "", "a private config is not warned about");

    // `*_file` secrets: only the readable one is named.
    let (token_file, key_file) = config_with_secret_files(&env, 0o600, 0o644);
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("customerio.api_key_file"), "{err}");
    assert!(err.contains(&key_file.display().to_string()), "{err}");
    assert!(!err.contains(&token_file.display().to_string()), "{err}");
    no_secret_in(&err);

    let (token_file, _) = config_with_secret_files(&env, 0o640, 0o600);
    let out = env.run("run", &[]);
    let err = stderr(&out);
    assert!(err.contains("gis.access_token_file"), "{err}");
    assert!(err.contains(&token_file.display().to_string()), "{err}");

    config_with_secret_files(&env, 0o600, 0o600);
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 0);
    assert_eq!(
        stderr(&out),
        "",
        "private secret files are not warned about"
    );

    // An OAuth client secret in a readable file.
    let secret_file = env.dir.path().join("client-secret");
    let refresh_file = env.dir.path().join("refresh-token");
    std::fs::write(&secret_file, env.gis.oauth_client_secret()).expect("secret");
    std::fs::write(&refresh_file, env.gis.seed_refresh_token()).expect("refresh");
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::set_permissions(&refresh_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let oauth = format!(
        "[gis.oauth]\ntoken_url = \"{}\"\nclient_id = \"{}\"\nclient_secret_file = \"{}\"\nrefresh_token_file = \"{}\"",
        env.gis.token_url(),
        env.gis.oauth_client_id(),
        secret_file.display(),
        refresh_file.display()
    );
    env.write_config_text(&env.config_text(&oauth, "").replace(
        &format!("api_key = \"{}\"", env.cio.api_key()),
        &format!(
            "api_key_file = \"{}\"",
            env.dir.path().join("cio-key").display()
        ),
    ));
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("gis.oauth.client_secret_file"), "{err}");
    assert!(!err.contains("refresh_token_file"), "{err}");
    assert!(!err.contains(&env.gis.oauth_client_secret()), "{err}");
}

#[test]
fn refused_credentials_are_never_echoed_in_the_error() {
    let env = env_with_cio_options(3);
    let trace = [("CIOSYNC_LOG", "trace")];
    let config = env.config_path();
    let config = config.to_str().expect("utf-8 path");
    let oauth = |secret: &str, refresh: &str| {
        format!(
            "[gis.oauth]\ntoken_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{secret}\"\nrefresh_token = \"{refresh}\"",
            env.gis.token_url(),
            env.gis.oauth_client_id(),
        )
    };
    let wrong_secret = "wrong-client-secret-4b9e1d7c";
    let wrong_seed = "wrong-refresh-token-8c2f6a0e";
    let wrong_token = "wrong-access-token-3d5a7b9c";
    let wrong_key = "wrong-cio-key-1a2b3c4d5e";
    let cases = [
        (
            env.config_text(&oauth(wrong_secret, &env.gis.seed_refresh_token()), ""),
            wrong_secret,
        ),
        (
            env.config_text(&oauth(&env.gis.oauth_client_secret(), wrong_seed), ""),
            wrong_seed,
        ),
        (
            env.config_text(&format!("access_token = \"{wrong_token}\""), ""),
            wrong_token,
        ),
        (
            env.static_config("").replace(
                &format!("api_key = \"{}\"", env.cio.api_key()),
                &format!("api_key = \"{wrong_key}\""),
            ),
            wrong_key,
        ),
    ];
    for (text, secret) in &cases {
        env.write_config_text(text);
        for command in ["run", "check"] {
            let mut args = vec![command, "--config", config];
            if command == "run" {
                args.push("-vv");
            }
            let out = ciosync(&args, &trace);
            assert_eq!(code(&out), 77, "{command}: {}", stderr(&out));
            for seen in [stdout(&out), stderr(&out)] {
                assert!(!seen.contains(secret), "{command} echoed a refused secret");
                assert!(!seen.contains(&env.gis.oauth_client_secret()));
                assert!(!seen.contains(&env.cio.api_key()));
            }
        }
    }
}

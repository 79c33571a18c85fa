//! Unit tests of `config`: loading, error locations, secrets, defaults.

use super::*;
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const MINIMAL: &str = r#"
[gis]
home_lcs = [1337]
access_token = "gis-inline-token"

[customerio]
site_id = "site-1"
api_key = "cio-inline-key"
"#;

/// Writes `text` as a config file with `mode`, returning its dir (kept alive) and path.
fn write_config(text: &str, mode: u32) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).expect("write config");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    (dir, path)
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn load_text(text: &str) -> Result<Loaded, ConfigError> {
    let (_dir, path) = write_config(text, 0o600);
    load(&path, &no_env)
}

fn error_text(text: &str) -> String {
    load_text(text)
        .expect_err("config must be refused")
        .to_string()
}

#[test]
fn example_file_loads_with_every_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let env = |name: &str| match name {
        ENV_GIS_ACCESS_TOKEN => Some("env-gis".to_owned()),
        ENV_CIO_API_KEY => Some("env-cio".to_owned()),
        _ => None,
    };
    let loaded = load(&path, &env).expect("the example config loads");
    let config = loaded.config;
    assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    assert_eq!(config.gis.endpoint, DEFAULT_GIS_ENDPOINT);
    assert_eq!(config.gis.home_lcs, vec![1337]);
    assert!(matches!(&config.gis.auth, GisAuth::Token(t) if t.expose() == "env-gis"));
    assert_eq!(config.gis.page_size, 200);
    assert_eq!(config.gis.full_sync_every, Duration::from_secs(24 * 3600));
    assert_eq!(config.gis.request_timeout, Duration::from_secs(30));
    assert_eq!(config.customerio.site_id, "...");
    assert_eq!(config.customerio.api_key.expose(), "env-cio");
    assert_eq!(config.customerio.region, Region::Us);
    assert_eq!(config.customerio.api, CioApi::Batch);
    assert_eq!(config.customerio.max_requests_per_second, 100);
    assert_eq!(config.customerio.base_url(), "https://track.customer.io");
    assert_eq!(config.events.programme_name, ProgrammeName::ShortName);
    assert_eq!(config.events.late_events, LateEvents::TrueTime);
    assert_eq!(config.log.level, "warn");
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.safety.time_budget, Duration::from_secs(240));
    assert_eq!(config.safety.max_event_share, 0.5);
    assert_eq!(config.safety.min_people_share, 0.5);
}

#[test]
fn minimal_file_gets_the_documented_defaults() {
    let config = load_text(MINIMAL).expect("minimal config loads").config;
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/ciosync"));
    assert_eq!(config.gis.page_size, 200);
    assert_eq!(config.safety.time_budget, Duration::from_secs(240));
    assert_eq!(config.customerio.request_timeout, Duration::from_secs(30));
    assert!(config.monitoring.ping_url.is_none());
}

#[test]
fn unknown_key_names_key_file_and_line() {
    let text = "[gis]\nhome_lcs = [1]\naccess_token = \"t\"\n\n\n\npage_sise = 10\n";
    let (_dir, path) = write_config(text, 0o600);
    let err = load(&path, &no_env).expect_err("unknown key refused");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "{}:7: unknown key `gis.page_sise`",
            path.display()
        )),
        "{message}"
    );
    let top = error_text("bogus = 1\n[gis]\nhome_lcs = [1]\n");
    assert!(top.contains(":1: unknown key `bogus`"), "{top}");
    let nested = error_text(
        "[gis]\nhome_lcs = [1]\n[gis.oauth]\ntoken_url = \"https://a\"\nclient_ids = \"x\"\n",
    );
    assert!(
        nested.contains(":5: unknown key `gis.oauth.client_ids`"),
        "{nested}"
    );
    let table = error_text("[gis]\nhome_lcs = [1]\n[customerio]\nsite_id = \"s\"\n[monitor]\n");
    assert!(table.contains(":5: unknown key `monitor`"), "{table}");
    let subtable = error_text("[gis]\nhome_lcs = [1]\n[gis.oath]\ntoken_url = \"https://a\"\n");
    assert!(
        subtable.contains(":3: unknown key `gis.oath`"),
        "{subtable}"
    );
    let dotted = error_text("data_dir = \"/tmp/x\"\ngis.page_sise = 3\n");
    assert!(
        dotted.contains(":2: unknown key `gis.page_sise`"),
        "{dotted}"
    );
}

#[test]
fn wrong_type_names_the_key_and_line() {
    let message = error_text("[gis]\nhome_lcs = [1]\npage_size = \"big\"\n");
    assert!(message.contains(":3: `gis.page_size`"), "{message}");
}

#[test]
fn missing_required_keys_are_named() {
    let cases = [
        ("[customerio]\nsite_id = \"s\"\napi_key = \"k\"\n", "`gis.home_lcs`"),
        ("[gis]\nhome_lcs = [1]\n[customerio]\nsite_id = \"s\"\napi_key = \"k\"\n", "gis.access_token"),
        ("[gis]\nhome_lcs = [1]\naccess_token = \"t\"\n[customerio]\napi_key = \"k\"\n", "`customerio.site_id`"),
        ("[gis]\nhome_lcs = [1]\naccess_token = \"t\"\n[customerio]\nsite_id = \"s\"\n", "`customerio.api_key`"),
        (
            "[gis]\nhome_lcs = [1]\n[gis.oauth]\ntoken_url = \"https://auth.example/t\"\nclient_id = \"c\"\nclient_secret = \"s\"\n[customerio]\nsite_id = \"s\"\napi_key = \"k\"\n",
            "`gis.oauth.refresh_token`",
        ),
    ];
    for (text, key) in cases {
        let message = error_text(text);
        assert!(
            message.contains("missing") && message.contains(key),
            "{key}: {message}"
        );
    }
    let empty = error_text("[gis]\nhome_lcs = []\n");
    assert!(empty.contains(":2: `gis.home_lcs`"), "{empty}");
}

#[test]
fn oauth_table_resolves_with_env_secrets() {
    let text = "[gis]\nhome_lcs = [1]\n[gis.oauth]\ntoken_url = \"https://auth.example/oauth/token\"\nclient_id = \"cid\"\nclient_secret_file = \"/nonexistent/secret\"\n[customerio]\nsite_id = \"s\"\napi_key = \"k\"\n";
    let (_dir, path) = write_config(text, 0o600);
    let env = |name: &str| match name {
        ENV_GIS_CLIENT_SECRET => Some("env-secret".to_owned()),
        ENV_GIS_REFRESH_TOKEN => Some("env-refresh\n".to_owned()),
        _ => None,
    };
    let config = load(&path, &env).expect("oauth config loads").config;
    let GisAuth::OAuth(oauth) = config.gis.auth else {
        panic!("expected OAuth");
    };
    assert_eq!(oauth.client_id, "cid");
    // The env value shadows the file, which is therefore never read.
    assert_eq!(oauth.client_secret.expose(), "env-secret");
    assert_eq!(oauth.refresh_token.expose(), "env-refresh");
}

#[test]
fn a_token_beside_the_oauth_table_is_refused() {
    let message = error_text("[gis]\nhome_lcs = [1]\naccess_token = \"t\"\n[gis.oauth]\ntoken_url = \"https://a.example/t\"\n");
    assert!(
        message.contains(":3: `gis.access_token` and [gis.oauth]"),
        "{message}"
    );
}

#[test]
fn plain_http_is_refused_except_on_loopback() {
    let with_endpoint =
        |url: &str| MINIMAL.replace("[gis]\n", &format!("[gis]\nendpoint = \"{url}\"\n"));
    let message = error_text(&with_endpoint("http://gis.example.org/graphql"));
    assert!(
        message.contains(":3: `gis.endpoint` must be https:// (loopback hosts may use http://)"),
        "{message}"
    );
    for url in [
        "http://127.0.0.1:8080/graphql",
        "http://127.5.0.1/g",
        "http://[::1]:9/g",
        "http://localhost/g",
        "https://gis.example.org/g",
    ] {
        let config = load_text(&with_endpoint(url))
            .expect("allowed endpoint")
            .config;
        assert_eq!(config.gis.endpoint, url);
    }
    let track = error_text(&format!("{MINIMAL}track_url = \"http://track.example\"\n"));
    assert!(
        track.contains("`customerio.track_url` must be https://"),
        "{track}"
    );
    let ping = error_text(&format!(
        "{MINIMAL}[monitoring]\nping_url = \"http://hc-ping.com/x\"\n"
    ));
    assert!(
        ping.contains(":10: `monitoring.ping_url` must be https://"),
        "{ping}"
    );
    let garbage = error_text(&with_endpoint("not a url"));
    assert!(
        garbage.contains("`gis.endpoint` is not a valid URL"),
        "{garbage}"
    );
}

#[test]
fn env_wins_over_file_wins_over_inline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("cio-key");
    std::fs::write(&key_file, "file-key\n").expect("write key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let text = MINIMAL.replace(
        "api_key = \"cio-inline-key\"",
        &format!(
            "api_key = \"cio-inline-key\"\napi_key_file = \"{}\"",
            key_file.display()
        ),
    );
    let (_cfg_dir, path) = write_config(&text, 0o600);

    let from_file = load(&path, &no_env).expect("loads").config;
    assert_eq!(
        from_file.customerio.api_key.expose(),
        "file-key",
        "file beats inline, newline trimmed"
    );

    let env = |name: &str| (name == ENV_CIO_API_KEY).then(|| "env-key".to_owned());
    let from_env = load(&path, &env).expect("loads").config;
    assert_eq!(from_env.customerio.api_key.expose(), "env-key");

    let inline_only = load_text(MINIMAL).expect("loads").config;
    assert_eq!(inline_only.customerio.api_key.expose(), "cio-inline-key");
}

#[test]
fn unreadable_secret_file_names_key_and_path() {
    let text = MINIMAL.replace(
        "access_token = \"gis-inline-token\"",
        "access_token_file = \"/nonexistent/ciosync/gis-token\"",
    );
    let (_dir, path) = write_config(&text, 0o600);
    let err = load(&path, &no_env).expect_err("missing secret file refused");
    let message = crate::error::chain(&err);
    assert!(
        message.contains(&format!("{}:4:", path.display())),
        "{message}"
    );
    assert!(message.contains("`gis.access_token_file`"), "{message}");
    assert!(
        message.contains("/nonexistent/ciosync/gis-token"),
        "{message}"
    );
    let top: crate::error::Error = err.into();
    assert_eq!(top.code(), crate::error::code::CONFIG);
    let chain = crate::error::chain(&top);
    assert!(chain.contains("No such file"), "{chain}");
}

#[test]
fn bad_durations_are_refused_with_their_line() {
    let message = error_text(&MINIMAL.replace("[gis]\n", "[gis]\nfull_sync_every = \"soon\"\n"));
    assert!(
        message.contains(":3: `gis.full_sync_every`: invalid duration \"soon\""),
        "{message}"
    );
    let zero = error_text(&format!("{MINIMAL}[safety]\ntime_budget = \"0s\"\n"));
    assert!(
        zero.contains("`safety.time_budget` must be longer than zero"),
        "{zero}"
    );
    let ok = load_text(&format!("{MINIMAL}[safety]\ntime_budget = \"90s\"\n")).expect("loads");
    assert_eq!(ok.config.safety.time_budget, Duration::from_secs(90));
}

#[test]
fn bad_enum_values_are_refused() {
    let cases = [
        (
            "region = \"asia\"",
            "`customerio.region` must be one of \"us\", \"eu\" (found \"asia\")",
        ),
        (
            "api = \"v2\"",
            "`customerio.api` must be one of \"batch\", \"v1\"",
        ),
    ];
    for (line, expected) in cases {
        let message = error_text(&format!("{MINIMAL}{line}\n"));
        assert!(message.contains(expected), "{message}");
    }
    let events = error_text(&format!("{MINIMAL}[events]\nlate_events = \"later\"\n"));
    assert!(
        events.contains("`events.late_events` must be one of \"true_time\", \"now\""),
        "{events}"
    );
    let programme = error_text(&format!("{MINIMAL}[events]\nprogramme_name = \"long\"\n"));
    assert!(programme.contains("`events.programme_name`"), "{programme}");
    let format = error_text(&format!("{MINIMAL}[log]\nformat = \"xml\"\n"));
    assert!(
        format.contains("`log.format` must be one of \"text\", \"json\""),
        "{format}"
    );
    let level = error_text(&format!("{MINIMAL}[log]\nlevel = \"loud\"\n"));
    assert!(level.contains(":10: `log.level`"), "{level}");
    let directive =
        load_text(&format!("{MINIMAL}[log]\nlevel = \"ciosync=debug,warn\"\n")).expect("loads");
    assert_eq!(directive.config.log.level, "ciosync=debug,warn");
    let share = error_text(&format!("{MINIMAL}[safety]\nmax_event_share = 1.5\n"));
    assert!(
        share.contains("`safety.max_event_share` must be between 0 and 1"),
        "{share}"
    );
    let eu = load_text(&format!("{MINIMAL}region = \"eu\"\n"))
        .expect("loads")
        .config;
    assert_eq!(eu.customerio.base_url(), "https://track-eu.customer.io");
}

#[test]
fn debug_output_and_errors_hold_no_secret() {
    let config = load_text(MINIMAL).expect("loads").config;
    let debug = format!("{config:?}");
    assert!(!debug.contains("gis-inline-token"), "{debug}");
    assert!(!debug.contains("cio-inline-key"), "{debug}");
    assert!(debug.contains("<redacted>"));
    let err = error_text(&format!("{MINIMAL}region = \"mars\"\n"));
    assert!(
        !err.contains("cio-inline-key") && !err.contains("gis-inline-token"),
        "{err}"
    );
}

#[test]
fn insecure_permissions_are_warned_about() {
    let (_dir, open_path) = write_config(MINIMAL, 0o644);
    let warnings = load(&open_path, &no_env).expect("loads").warnings;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("inline secrets") && warnings[0].contains("`customerio.api_key`"));
    assert!(!warnings[0].contains("cio-inline-key"));

    let (_dir, closed_path) = write_config(MINIMAL, 0o600);
    assert!(load(&closed_path, &no_env)
        .expect("loads")
        .warnings
        .is_empty());

    let dir = tempfile::tempdir().expect("temp dir");
    let secrets = HashMap::from([("gis", 0o640), ("cio", 0o600)]);
    for (name, mode) in &secrets {
        let file = dir.path().join(name);
        std::fs::write(&file, "s3cret").expect("write secret");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode)).expect("chmod");
    }
    let text = format!(
        "[gis]\nhome_lcs = [1]\naccess_token_file = \"{}\"\n[customerio]\nsite_id = \"s\"\napi_key_file = \"{}\"\n",
        dir.path().join("gis").display(),
        dir.path().join("cio").display()
    );
    // Group-readable config without inline secrets is fine; the 0640 token file is not.
    let (_cfg, path) = write_config(&text, 0o644);
    let warnings = load(&path, &no_env).expect("loads").warnings;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("`gis.access_token_file`"),
        "{warnings:?}"
    );
    assert!(!warnings[0].contains("s3cret"));
}

#[test]
fn unreadable_config_file_is_a_config_error() {
    let err = load(Path::new("/nonexistent/ciosync.toml"), &no_env).expect_err("missing file");
    let top: crate::error::Error = err.into();
    assert_eq!(top.code(), crate::error::code::CONFIG);
    assert!(
        top.to_string().contains("/nonexistent/ciosync.toml"),
        "{top}"
    );
}

#[test]
fn default_path_is_etc() {
    assert_eq!(
        default_config_path(),
        PathBuf::from("/etc/ciosync/config.toml")
    );
}

/// A default as `config.example.toml` writes it.
#[derive(Debug)]
enum Shown {
    Text(&'static str),
    Count(u32),
    Share(f64),
    /// Compared after parsing, as `"24h"` and `"1day"` are the same default.
    Duration(Duration),
}

impl Shown {
    fn matches(&self, value: &toml::Value) -> bool {
        match (self, value) {
            (Shown::Text(text), toml::Value::String(shown)) => shown == text,
            (Shown::Count(count), toml::Value::Integer(shown)) => *shown == i64::from(*count),
            (Shown::Share(share), toml::Value::Float(shown)) => shown == share,
            (Shown::Duration(duration), toml::Value::String(shown)) => {
                humantime::parse_duration(shown).ok() == Some(*duration)
            }
            _ => false,
        }
    }
}

/// Every `key = value` of a table, with dotted keys, tables flattened.
fn flatten(table: &toml::Table, prefix: &str, out: &mut BTreeMap<String, toml::Value>) {
    for (key, value) in table {
        let key = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => flatten(inner, &key, out),
            value => {
                out.insert(key, value.clone());
            }
        }
    }
}

/// The example file documents "the value shown is its default" for every optional key: each
/// uncommented optional key must equal its named constant, and each constant must be shown,
/// so the example and the code cannot drift apart.
#[test]
fn example_file_shows_the_named_defaults() {
    // Required keys: the example's values for them are placeholders, not defaults.
    const REQUIRED: [&str; 4] = [
        "gis.home_lcs",
        "gis.access_token_file",
        "customerio.site_id",
        "customerio.api_key_file",
    ];
    let defaults = BTreeMap::from([
        ("data_dir", Shown::Text(DEFAULT_DATA_DIR)),
        ("gis.endpoint", Shown::Text(DEFAULT_GIS_ENDPOINT)),
        ("gis.page_size", Shown::Count(DEFAULT_PAGE_SIZE)),
        (
            "gis.full_sync_every",
            Shown::Duration(DEFAULT_FULL_SYNC_EVERY),
        ),
        (
            "gis.request_timeout",
            Shown::Duration(DEFAULT_GIS_REQUEST_TIMEOUT),
        ),
        ("customerio.region", Shown::Text(DEFAULT_REGION.name())),
        ("customerio.api", Shown::Text(DEFAULT_CIO_API.name())),
        (
            "customerio.max_requests_per_second",
            Shown::Count(DEFAULT_MAX_REQUESTS_PER_SECOND),
        ),
        (
            "customerio.request_timeout",
            Shown::Duration(DEFAULT_CIO_REQUEST_TIMEOUT),
        ),
        (
            "events.programme_name",
            Shown::Text(DEFAULT_PROGRAMME_NAME.name()),
        ),
        (
            "events.late_events",
            Shown::Text(DEFAULT_LATE_EVENTS.name()),
        ),
        ("log.level", Shown::Text(DEFAULT_LOG_LEVEL)),
        ("log.format", Shown::Text(DEFAULT_LOG_FORMAT.name())),
        ("log.keep_days", Shown::Count(DEFAULT_LOG_KEEP_DAYS)),
        ("safety.time_budget", Shown::Duration(DEFAULT_TIME_BUDGET)),
        (
            "safety.max_event_share",
            Shown::Share(DEFAULT_MAX_EVENT_SHARE),
        ),
        (
            "safety.min_people_share",
            Shown::Share(DEFAULT_MIN_PEOPLE_SHARE),
        ),
    ]);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let text = std::fs::read_to_string(&path).expect("the example config is readable");
    let example: toml::Table = toml::from_str(&text).expect("the example config is TOML");
    let mut shown = BTreeMap::new();
    flatten(&example, "", &mut shown);
    for key in REQUIRED {
        assert!(shown.remove(key).is_some(), "the example shows `{key}`");
    }

    for (key, value) in &shown {
        let default = defaults.get(key.as_str()).unwrap_or_else(|| {
            panic!("the example shows `{key}` = {value}, but no named default exists for it")
        });
        assert!(
            default.matches(value),
            "`{key}`: the example shows {value}, the code's default is {default:?}"
        );
    }
    for key in defaults.keys() {
        assert!(
            shown.contains_key(*key),
            "`{key}` has a named default that the example does not show"
        );
    }
}

#[test]
fn ca_file_loads_every_certificate_and_a_bad_one_is_refused_with_its_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bundle = dir.path().join("ca.pem");
    let pem = |name: &str| {
        rcgen::generate_simple_self_signed(vec![name.to_owned()])
            .expect("a certificate")
            .cert
            .pem()
    };
    std::fs::write(&bundle, format!("{}{}", pem("a.test"), pem("b.test"))).expect("write");
    let with_ca = |path: &Path| format!("ca_file = {:?}\n{MINIMAL}", path.display().to_string());
    let config = load_text(&with_ca(&bundle)).expect("loads").config;
    let ca_file = config.ca_file.expect("ca_file set");
    assert_eq!(ca_file.path, bundle);
    assert_eq!(ca_file.certificates.len(), 2);
    assert!(load_text(MINIMAL).expect("loads").config.ca_file.is_none());

    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello\n").expect("write");
    let missing = dir.path().join("missing.pem");
    for (path, fragment) in [
        (&not_pem, "holds no PEM certificate"),
        (&missing, "cannot read"),
    ] {
        let message = error_text(&with_ca(path));
        assert!(message.contains("config.toml:1:"), "{message}");
        assert!(
            message.contains("`ca_file`") && message.contains(fragment),
            "{message}"
        );
    }
}

#[test]
fn log_keep_days_defaults_to_14_and_must_be_at_least_1() {
    let config = load_text(MINIMAL).expect("loads").config;
    assert_eq!(config.log.keep_days, DEFAULT_LOG_KEEP_DAYS);
    assert_eq!(DEFAULT_LOG_KEEP_DAYS, 14);
    let kept = load_text(&format!("{MINIMAL}\n[log]\nkeep_days = 3\n")).expect("loads");
    assert_eq!(kept.config.log.keep_days, 3);
    let message = error_text(&format!("{MINIMAL}\n[log]\nkeep_days = 0\n"));
    assert!(
        message.contains("`log.keep_days` must be at least 1"),
        "{message}"
    );
    let message = error_text(&format!("{MINIMAL}\n[log]\nkeep_days = -1\n"));
    assert!(message.contains("keep_days"), "{message}");
}

//! Shared helpers for the binary-level tests: both fakes on loopback, a temp data dir, a
//! config file pointing at them, and a way to run the built `ciosync` binary with a
//! scrubbed environment.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ciosync::fake::cio::{FakeCio, FakeCioOptions};
use ciosync::fake::gis::{FakeGis, FakeGisOptions};
use serde_json::{json, Value};
use tempfile::TempDir;

/// Both fakes, a temp dir with `config.toml` and `data/`.
pub struct Env {
    pub gis: FakeGis,
    pub cio: FakeCio,
    pub dir: TempDir,
}

impl Env {
    /// Fakes with `people` generated people (0: empty, for hand-built scenarios).
    pub fn new(people: usize) -> Env {
        Env::with(
            FakeGisOptions {
                people,
                ..FakeGisOptions::default()
            },
            FakeCioOptions::default(),
        )
    }

    pub fn with(gis: FakeGisOptions, cio: FakeCioOptions) -> Env {
        let env = Env {
            gis: FakeGis::start(gis).expect("fake GIS starts"),
            cio: FakeCio::start(cio).expect("fake customer.io starts"),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        env.write_config("");
        env
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// The base config (static GIS token, v1 API), with `extra` TOML appended to the
    /// `[customerio]` table's end (so `extra` may open new tables).
    pub fn config_text(&self, gis_auth: &str, extra: &str) -> String {
        format!(
            r#"data_dir = "{data}"

[gis]
endpoint = "{gis}"
home_lcs = [1337, 1338]
page_size = 50
request_timeout = "2s"
{gis_auth}

[customerio]
site_id = "{site}"
api_key = "{key}"
track_url = "{cio}"
api = "v1"
max_requests_per_second = 1000
request_timeout = "2s"
{extra}
"#,
            data = self.data_dir().display(),
            gis = self.gis.graphql_url(),
            site = self.cio.site_id(),
            key = self.cio.api_key(),
            cio = self.cio.url(),
        )
    }

    pub fn write_config(&self, extra: &str) {
        let auth = format!("access_token = \"{}\"", self.gis.static_token());
        self.write_config_text(&self.config_text(&auth, extra));
    }

    /// The `[gis.oauth]` table for the fake GIS's client and seed refresh token.
    pub fn oauth_table(&self) -> String {
        format!(
            "[gis.oauth]\ntoken_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\nrefresh_token = \"{}\"",
            self.gis.token_url(),
            self.gis.oauth_client_id(),
            self.gis.oauth_client_secret(),
            self.gis.seed_refresh_token()
        )
    }

    /// Rewrites the config with a wrong customer.io API key.
    pub fn write_config_with_cio_key(&self, key: &str) {
        let text = self
            .config_text(
                &format!("access_token = \"{}\"", self.gis.static_token()),
                "",
            )
            .replace(
                &format!("api_key = \"{}\"", self.cio.api_key()),
                &format!("api_key = \"{key}\""),
            );
        self.write_config_text(&text);
    }

    /// The events customer.io stored, as (customer, name, id).
    pub fn event_keys(&self) -> std::collections::BTreeSet<(String, String, Option<String>)> {
        self.cio
            .events()
            .into_iter()
            .map(|e| (e.customer_id, e.name, e.id))
            .collect()
    }

    pub fn write_config_text(&self, text: &str) {
        write_private(&self.config_path(), text);
    }

    /// Runs the built binary with the config and `args` after the subcommand.
    pub fn run(&self, subcommand: &str, args: &[&str]) -> Output {
        let config = self.config_path();
        let mut all = vec![subcommand, "--config", config.to_str().expect("utf-8 path")];
        all.extend_from_slice(args);
        ciosync(&all, &[])
    }

    /// Reads a file of the data dir.
    pub fn data_file(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.data_dir().join(name)).ok()
    }
}

/// Writes a file readable only by its owner (so no insecure-secret warning).
pub fn write_private(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("create file");
    file.write_all(text.as_bytes()).expect("write file");
}

/// Runs the built `ciosync` with a scrubbed environment plus `env`.
pub fn ciosync(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ciosync"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("ciosync runs")
}

pub fn code(output: &Output) -> i32 {
    output.status.code().expect("exited, not killed")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

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

/// A GraphQL-shaped application of `person` with `status` and the given top-level dates.
pub fn application(id: u64, person: u64, status: &str, dates: Value) -> Value {
    let mut app = json!({
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
    if let (Some(app), Some(dates)) = (app.as_object_mut(), dates.as_object()) {
        for (k, v) in dates {
            app.insert(k.clone(), v.clone());
        }
    }
    app
}

/// Unix seconds of an RFC 3339 time.
pub fn unix(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .expect("test time")
        .timestamp()
}

//! A test environment: both fakes on loopback, a temp dir with `config.toml` pointing at
//! them and a `data/` dir for ciosync's state.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use ciosync::fake::cio::{FakeCio, FakeCioOptions};
use ciosync::fake::gis::{FakeGis, FakeGisOptions};
use tempfile::TempDir;

use super::binary::ciosync;
use super::fs::write_private;

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

    /// The base config (v1 API) with `gis_auth` as the GIS credential, and `extra` TOML
    /// appended to the `[customerio]` table's end (so `extra` may open new tables).
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

    /// The GIS credential line for the fake's static token.
    pub fn static_token_line(&self) -> String {
        format!("access_token = \"{}\"", self.gis.static_token())
    }

    /// The base config with the fake's static GIS token and `extra` (what `write_config`
    /// writes).
    pub fn static_config(&self, extra: &str) -> String {
        self.config_text(&self.static_token_line(), extra)
    }

    pub fn write_config(&self, extra: &str) {
        self.write_config_text(&self.static_config(extra));
    }

    /// The `[gis.oauth]` table for the fake GIS's client and seed refresh token.
    pub fn oauth_table(&self) -> String {
        self.oauth_table_with(&self.gis.seed_refresh_token())
    }

    /// The `[gis.oauth]` table for the fake GIS's client with `refresh_token`.
    pub fn oauth_table_with(&self, refresh_token: &str) -> String {
        format!(
            "[gis.oauth]\ntoken_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\nrefresh_token = \"{refresh_token}\"",
            self.gis.token_url(),
            self.gis.oauth_client_id(),
            self.gis.oauth_client_secret(),
        )
    }

    /// Rewrites the config with a wrong customer.io API key.
    pub fn write_config_with_cio_key(&self, key: &str) {
        let text = self.static_config("").replace(
            &format!("api_key = \"{}\"", self.cio.api_key()),
            &format!("api_key = \"{key}\""),
        );
        self.write_config_text(&text);
    }

    /// Rewrites the config with `data_dir` instead of the temp dir's `data/`.
    pub fn write_config_with_data_dir(&self, data_dir: &Path) {
        let text = self.static_config("").replace(
            &format!("data_dir = \"{}\"", self.data_dir().display()),
            &format!("data_dir = \"{}\"", data_dir.display()),
        );
        self.write_config_text(&text);
    }

    /// The events customer.io stored, as (customer, name, id).
    pub fn event_keys(&self) -> BTreeSet<(String, String, Option<String>)> {
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

/// `config` (a config text of [`Env`]) switched to customer.io's v2 batch API.
pub fn with_batch_api(config: &str) -> String {
    assert!(config.contains("api = \"v1\""), "a config of Env: {config}");
    config.replace("api = \"v1\"", "api = \"batch\"")
}

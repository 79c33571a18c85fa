//! What `init` writes, as text and paths: pure, no I/O.
//!
//! The config names each secret by its `*_file`, never inline; the secret files sit beside the
//! config under fixed names (the names SPEC 2's example and `deploy/` use). Strings are
//! written through toml's own encoder, so a quote or backslash in a path or a site id cannot
//! break the file. [`secret_env`] hands the secrets to `config::parse` the way the environment
//! would, so the text is validated by the real rules before any secret file exists.

use std::path::{Path, PathBuf};

use crate::config::{
    Region, Secret, DEFAULT_GIS_ENDPOINT, ENV_CIO_API_KEY, ENV_GIS_ACCESS_TOKEN,
    ENV_GIS_CLIENT_SECRET, ENV_GIS_REFRESH_TOKEN,
};

/// The file beside the config holding the GIS access token.
pub const GIS_TOKEN_FILE: &str = "gis-token";
/// The file beside the config holding the OAuth client secret.
pub const GIS_CLIENT_SECRET_FILE: &str = "gis-client-secret";
/// The file beside the config holding the OAuth refresh token to start from.
pub const GIS_REFRESH_TOKEN_FILE: &str = "gis-refresh-token";
/// The file beside the config holding the customer.io Track API key.
pub const CIO_API_KEY_FILE: &str = "cio-api-key";

/// The GIS credential, as answered.
#[derive(Debug, Clone)]
pub enum GisCredential {
    /// A static access token.
    Token(Secret),
    /// An OAuth client and the refresh token to start from.
    OAuth(OAuthAnswer),
}

/// The answers for `[gis.oauth]`.
#[derive(Debug, Clone)]
pub struct OAuthAnswer {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub refresh_token: Secret,
}

/// Every answer `init` needs. Paths are absolute and UTF-8 (`init` checks both first).
#[derive(Debug, Clone)]
pub struct Setup {
    pub data_dir: PathBuf,
    pub gis_endpoint: String,
    pub gis: GisCredential,
    pub home_lcs: Vec<u64>,
    pub site_id: String,
    pub api_key: Secret,
    pub region: Region,
    pub track_url: Option<String>,
}

/// The names of the files beside the config that hold `gis`'s secrets.
pub fn gis_file_names(gis: &GisCredential) -> &'static [&'static str] {
    match gis {
        GisCredential::Token(_) => &[GIS_TOKEN_FILE],
        GisCredential::OAuth(_) => &[GIS_CLIENT_SECRET_FILE, GIS_REFRESH_TOKEN_FILE],
    }
}

/// The secret files of `setup` beside `config`, each with the secret it holds, in the
/// order they are written.
pub fn secret_files<'a>(setup: &'a Setup, config: &Path) -> Vec<(PathBuf, &'a Secret)> {
    let beside = |name: &str| config.with_file_name(name);
    let gis_secrets = match &setup.gis {
        GisCredential::Token(token) => vec![token],
        GisCredential::OAuth(oauth) => vec![&oauth.client_secret, &oauth.refresh_token],
    };
    let mut files: Vec<(PathBuf, &Secret)> = gis_file_names(&setup.gis)
        .iter()
        .map(|name| beside(name))
        .zip(gis_secrets)
        .collect();
    files.push((beside(CIO_API_KEY_FILE), &setup.api_key));
    files
}

/// The bytes of a secret file: the secret and a line end.
pub fn secret_file_bytes(secret: &Secret) -> Vec<u8> {
    let mut bytes = secret.expose().as_bytes().to_vec();
    bytes.push(b'\n');
    bytes
}

/// The config file for `setup`, to be written at `config`. `lc_name` names the LCs it knows,
/// for a comment beside `home_lcs`.
pub fn config_text(
    setup: &Setup,
    config: &Path,
    lc_name: &dyn Fn(u64) -> Option<String>,
) -> String {
    let file = |name: &str| quote_path(&config.with_file_name(name));
    let mut text = String::from(
        "# Written by `ciosync init`. Every other key, with its default, is documented in\n\
         # config.example.toml. Secrets are in their own files (0600), never here.\n",
    );
    text.push_str(&format!(
        "data_dir = {}\n\n[gis]\n",
        quote_path(&setup.data_dir)
    ));
    if setup.gis_endpoint != DEFAULT_GIS_ENDPOINT {
        text.push_str(&format!("endpoint = {}\n", quote(&setup.gis_endpoint)));
    }
    let ids: Vec<String> = setup.home_lcs.iter().map(u64::to_string).collect();
    let names: Vec<String> = setup
        .home_lcs
        .iter()
        .map(|id| lc_name(*id).unwrap_or_else(|| "?".to_owned()))
        .collect();
    text.push_str(&format!("home_lcs = [{}]", ids.join(", ")));
    if names.iter().any(|name| name != "?") {
        // A comment ends at the line end, so a name cannot break out of it.
        text.push_str(&format!(
            "  # {}",
            names.join(", ").replace(['\n', '\r'], " ")
        ));
    }
    text.push('\n');
    match &setup.gis {
        GisCredential::Token(_) => {
            text.push_str(&format!("access_token_file = {}\n", file(GIS_TOKEN_FILE)));
        }
        GisCredential::OAuth(oauth) => {
            text.push_str(&format!(
                "\n[gis.oauth]\ntoken_url = {}\nclient_id = {}\nclient_secret_file = {}\nrefresh_token_file = {}\n",
                quote(&oauth.token_url),
                quote(&oauth.client_id),
                file(GIS_CLIENT_SECRET_FILE),
                file(GIS_REFRESH_TOKEN_FILE),
            ));
        }
    }
    text.push_str(&format!(
        "\n[customerio]\nsite_id = {}\napi_key_file = {}\nregion = {}\n",
        quote(&setup.site_id),
        file(CIO_API_KEY_FILE),
        quote(setup.region.name()),
    ));
    if let Some(url) = &setup.track_url {
        text.push_str(&format!("track_url = {}\n", quote(url)));
    }
    text
}

/// The secrets of `setup` as the environment variables that override their `*_file`s, so
/// `config::parse` resolves them without reading a file.
pub fn secret_env(setup: &Setup) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| {
        let secret = match (&setup.gis, name) {
            (GisCredential::Token(token), ENV_GIS_ACCESS_TOKEN) => token,
            (GisCredential::OAuth(oauth), ENV_GIS_CLIENT_SECRET) => &oauth.client_secret,
            (GisCredential::OAuth(oauth), ENV_GIS_REFRESH_TOKEN) => &oauth.refresh_token,
            (_, ENV_CIO_API_KEY) => &setup.api_key,
            _ => return None,
        };
        Some(secret.expose().to_owned())
    }
}

/// A TOML basic string, escaped by toml itself.
fn quote(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

fn quote_path(path: &Path) -> String {
    quote(&path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, GisAuth};

    fn setup(gis: GisCredential) -> Setup {
        Setup {
            data_dir: PathBuf::from("/var/lib/ciosync"),
            gis_endpoint: DEFAULT_GIS_ENDPOINT.to_owned(),
            gis,
            home_lcs: vec![1337, 1338],
            site_id: "site \"7\"".to_owned(),
            api_key: Secret::new("cio-key-secret"),
            region: Region::Eu,
            track_url: None,
        }
    }

    fn names(id: u64) -> Option<String> {
        (id == 1337).then(|| "Atlantis".to_owned())
    }

    #[test]
    fn a_token_setup_renders_a_config_that_loads_with_its_secrets_in_files() {
        let setup = setup(GisCredential::Token(Secret::new("gis-token-secret")));
        let path = Path::new("/etc/ciosync/config.toml");
        let text = config_text(&setup, path, &names);
        assert!(!text.contains("gis-token-secret") && !text.contains("cio-key-secret"));
        assert!(
            text.contains("access_token_file = \"/etc/ciosync/gis-token\""),
            "{text}"
        );
        assert!(
            text.contains("api_key_file = \"/etc/ciosync/cio-api-key\""),
            "{text}"
        );
        assert!(
            text.contains("home_lcs = [1337, 1338]  # Atlantis, ?"),
            "{text}"
        );
        assert!(
            !text.contains("endpoint"),
            "the default endpoint is left out: {text}"
        );
        let loaded = config::parse(path, &text, &secret_env(&setup)).expect("valid config");
        let config = loaded.config;
        assert_eq!(config.gis.home_lcs, vec![1337, 1338]);
        assert_eq!(config.customerio.site_id, "site \"7\"");
        assert_eq!(config.customerio.region, Region::Eu);
        assert_eq!(config.customerio.api_key.expose(), "cio-key-secret");
        assert!(matches!(&config.gis.auth, GisAuth::Token(t) if t.expose() == "gis-token-secret"));
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let files: Vec<PathBuf> = secret_files(&setup, path)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            files,
            vec![
                PathBuf::from("/etc/ciosync/gis-token"),
                PathBuf::from("/etc/ciosync/cio-api-key")
            ]
        );
    }

    #[test]
    fn an_oauth_setup_renders_the_oauth_table() {
        let mut setup = setup(GisCredential::OAuth(OAuthAnswer {
            token_url: "https://auth.aiesec.org/oauth/token".to_owned(),
            client_id: "client-1".to_owned(),
            client_secret: Secret::new("client-secret-value"),
            refresh_token: Secret::new("refresh-seed"),
        }));
        setup.gis_endpoint = "http://127.0.0.1:8080/graphql".to_owned();
        setup.track_url = Some("http://127.0.0.1:8081".to_owned());
        let path = Path::new("/tmp/x y/config.toml");
        let text = config_text(&setup, path, &|_| None);
        assert!(!text.contains("client-secret-value") && !text.contains("refresh-seed"));
        assert!(
            text.contains("home_lcs = [1337, 1338]\n"),
            "no names, no comment: {text}"
        );
        let config = config::parse(path, &text, &secret_env(&setup))
            .expect("valid config")
            .config;
        let GisAuth::OAuth(oauth) = &config.gis.auth else {
            panic!("OAuth expected: {text}");
        };
        assert_eq!(oauth.client_id, "client-1");
        assert_eq!(oauth.refresh_token.expose(), "refresh-seed");
        assert_eq!(config.gis.endpoint, "http://127.0.0.1:8080/graphql");
        assert_eq!(config.customerio.base_url(), "http://127.0.0.1:8081");
        let names: Vec<String> = secret_files(&setup, path)
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect();
        assert_eq!(
            names,
            vec![
                "/tmp/x y/gis-client-secret",
                "/tmp/x y/gis-refresh-token",
                "/tmp/x y/cio-api-key"
            ]
        );
    }

    #[test]
    fn secret_files_end_with_a_line_end_the_loader_strips() {
        assert_eq!(secret_file_bytes(&Secret::new("k")), b"k\n");
    }
}

//! `init`'s answers: what the flags say, what is still missing, and how a typed answer is
//! read (LC ids, a region, a URL, a path). Pure but for reading the `--*-file` secrets and
//! the current directory.

use std::fs;
use std::path::{Path, PathBuf};

use super::render::{GisCredential, OAuthAnswer, Setup};
use super::{InitError, DEFAULT_TOKEN_URL};
use crate::cli::InitArgs;
use crate::config::{self, Region, Secret, DEFAULT_DATA_DIR, DEFAULT_GIS_ENDPOINT, DEFAULT_REGION};
use crate::error::Error;

/// The answers so far; `None` is not answered yet.
#[derive(Debug, Default)]
pub(super) struct Answers {
    pub(super) data_dir: Option<PathBuf>,
    pub(super) gis_endpoint: Option<String>,
    pub(super) gis: Option<GisCredential>,
    /// Which GIS answers came from flags (a refused one is then not asked again).
    pub(super) gis_from_flags: bool,
    /// Whether the GIS credential is OAuth, once asked.
    pub(super) gis_kind_oauth: Option<bool>,
    /// OAuth answers without their secrets, kept as defaults when a refused client is asked
    /// again.
    pub(super) oauth_defaults: Option<(String, String)>,
    pub(super) home_lcs: Option<Vec<u64>>,
    pub(super) site_id: Option<String>,
    pub(super) site_id_from_flag: bool,
    pub(super) api_key: Option<Secret>,
    pub(super) api_key_from_flag: bool,
    pub(super) region: Option<Region>,
    pub(super) region_from_flag: bool,
    pub(super) track_url: Option<String>,
}

impl Answers {
    /// The answers the flags give. A secret named by a flag is read here, so an unreadable or
    /// empty one is a usage error naming the flag before anything is asked.
    pub(super) fn from_flags(args: &InitArgs) -> Result<Answers, InitError> {
        let gis = if let Some(path) = &args.gis_token_file {
            Some(GisCredential::Token(read_secret_flag(
                "--gis-token-file",
                path,
            )?))
        } else if args.gis_client_id.is_some()
            || args.gis_client_secret_file.is_some()
            || args.gis_refresh_token_file.is_some()
        {
            let (Some(client_id), Some(secret), Some(refresh)) = (
                &args.gis_client_id,
                &args.gis_client_secret_file,
                &args.gis_refresh_token_file,
            ) else {
                return Err(InitError::Usage(
                    "OAuth needs all of --gis-client-id, --gis-client-secret-file and \
                     --gis-refresh-token-file"
                        .to_owned(),
                ));
            };
            Some(GisCredential::OAuth(OAuthAnswer {
                token_url: args
                    .gis_token_url
                    .clone()
                    .unwrap_or_else(|| DEFAULT_TOKEN_URL.to_owned()),
                client_id: non_empty_flag("--gis-client-id", client_id)?,
                client_secret: read_secret_flag("--gis-client-secret-file", secret)?,
                refresh_token: read_secret_flag("--gis-refresh-token-file", refresh)?,
            }))
        } else {
            None
        };
        let site_id = args
            .site_id
            .as_deref()
            .map(|id| non_empty_flag("--site-id", id))
            .transpose()?;
        let api_key = args
            .api_key_file
            .as_deref()
            .map(|path| read_secret_flag("--api-key-file", path))
            .transpose()?;
        let region = args.region.as_deref().map(|name| {
            if name == Region::Eu.name() {
                Region::Eu
            } else {
                Region::Us
            }
        });
        let data_dir = args.data_dir.as_deref().map(absolute).transpose()?;
        Ok(Answers {
            data_dir,
            gis_endpoint: args.gis_endpoint.clone(),
            gis_from_flags: gis.is_some(),
            gis,
            gis_kind_oauth: None,
            oauth_defaults: None,
            home_lcs: args.home_lcs.clone(),
            site_id_from_flag: site_id.is_some(),
            site_id,
            api_key_from_flag: api_key.is_some(),
            api_key,
            region_from_flag: region.is_some(),
            region,
            track_url: args.track_url.clone(),
        })
    }

    /// The flags a run without a terminal lacks (everything else has a default).
    pub(super) fn missing_flags(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.gis.is_none() {
            missing.push(
                "--gis-token-file (or, for OAuth, --gis-client-id, --gis-client-secret-file \
                 and --gis-refresh-token-file)",
            );
        }
        if self.home_lcs.is_none() {
            missing.push("--home-lcs");
        }
        if self.site_id.is_none() {
            missing.push("--site-id");
        }
        if self.api_key.is_none() {
            missing.push("--api-key-file");
        }
        missing
    }

    /// The setup so far, with stand-ins for what is not answered yet, so one credential can
    /// be proven through a config resolved by the real rules before the others are known.
    pub(super) fn draft(&self) -> Setup {
        let stand_in = || Secret::new("not-answered-yet");
        Setup {
            data_dir: self
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            gis_endpoint: self
                .gis_endpoint
                .clone()
                .unwrap_or_else(|| DEFAULT_GIS_ENDPOINT.to_owned()),
            gis: self
                .gis
                .clone()
                .unwrap_or_else(|| GisCredential::Token(stand_in())),
            home_lcs: self.home_lcs.clone().unwrap_or_else(|| vec![0]),
            site_id: self
                .site_id
                .clone()
                .unwrap_or_else(|| "not-answered-yet".to_owned()),
            api_key: self.api_key.clone().unwrap_or_else(stand_in),
            region: self.region.unwrap_or(DEFAULT_REGION),
            track_url: self.track_url.clone(),
        }
    }

    /// Every answer, or `None` while one is missing.
    pub(super) fn setup(&self) -> Option<Setup> {
        (self.data_dir.is_some()
            && self.gis.is_some()
            && self.home_lcs.is_some()
            && self.site_id.is_some()
            && self.api_key.is_some()
            && self.region.is_some())
        .then(|| self.draft())
    }
}

/// `path` made absolute (against the current directory): cron runs elsewhere, so every path
/// in the config must not depend on where `init` ran. Refuses a path that is not UTF-8,
/// which the config file could not hold.
pub(super) fn absolute(path: &Path) -> Result<PathBuf, InitError> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|source| Error::Unavailable {
                context: "cannot read the current directory".to_owned(),
                source,
            })?
            .join(path)
    };
    if absolute.to_str().is_none() {
        return Err(InitError::Usage(format!(
            "{} is not valid UTF-8; the config file cannot name it",
            absolute.display()
        )));
    }
    Ok(absolute)
}

/// A secret named by a flag: the file's contents without the line end (as the config's
/// `*_file` keys read it).
fn read_secret_flag(flag: &str, path: &Path) -> Result<Secret, InitError> {
    let text = fs::read_to_string(path)
        .map_err(|e| InitError::Usage(format!("{flag}: cannot read {}: {e}", path.display())))?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.trim().is_empty() {
        return Err(InitError::Usage(format!(
            "{flag}: {} is empty",
            path.display()
        )));
    }
    Ok(Secret::new(secret))
}

fn non_empty_flag(flag: &str, value: &str) -> Result<String, InitError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(InitError::Usage(format!("{flag} must not be empty")));
    }
    Ok(value.to_owned())
}

/// An answer to "us or eu".
pub(super) fn region_answer(text: &str) -> Result<Region, String> {
    [Region::Us, Region::Eu]
        .into_iter()
        .find(|region| region.name().eq_ignore_ascii_case(text))
        .ok_or_else(|| "answer us or eu".to_owned())
}

/// An answer that must be a URL `check` accepts.
pub(super) fn url_answer(text: &str) -> Result<String, String> {
    config::check_url(text)
        .map(|()| text.to_owned())
        .map_err(|problem| format!("that URL {problem}"))
}

/// LC ids separated by commas or spaces: `1337, 1338`.
pub(super) fn lcs_answer(text: &str) -> Result<Vec<u64>, String> {
    let mut lcs = Vec::new();
    for part in text.split([',', ' ']).filter(|part| !part.is_empty()) {
        let id = part
            .parse::<u64>()
            .map_err(|_| format!("{part:?} is not an LC id; LC ids are numbers, like 1337"))?;
        if !lcs.contains(&id) {
            lcs.push(id);
        }
    }
    if lcs.is_empty() {
        return Err("at least one LC id is needed".to_owned());
    }
    Ok(lcs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::render;

    #[test]
    fn lc_answers_take_commas_or_spaces_and_refuse_names() {
        assert_eq!(lcs_answer("1337,1338"), Ok(vec![1337, 1338]));
        assert_eq!(lcs_answer(" 1337 , 2001 1337"), Ok(vec![1337, 2001]));
        assert!(lcs_answer("Atlantis")
            .expect_err("a name is not an id")
            .contains("\"Atlantis\" is not an LC id"));
        assert!(lcs_answer(" , ").is_err());
    }

    #[test]
    fn region_and_url_answers() {
        assert_eq!(region_answer("EU"), Ok(Region::Eu));
        assert!(region_answer("asia").is_err());
        assert!(url_answer("https://auth.aiesec.org/oauth/token").is_ok());
        assert!(url_answer("http://auth.example.org/oauth/token")
            .expect_err("http off loopback")
            .contains("https://"));
    }

    #[test]
    fn without_a_terminal_the_missing_flags_are_named() {
        let answers = Answers::default();
        let missing = answers.missing_flags().join(" ");
        for flag in [
            "--gis-token-file",
            "--home-lcs",
            "--site-id",
            "--api-key-file",
        ] {
            assert!(missing.contains(flag), "{missing}");
        }
        assert!(!missing.contains("--region") && !missing.contains("--data-dir"));
    }

    #[test]
    fn a_draft_resolves_with_stand_ins_and_a_setup_needs_every_answer() {
        let answers = Answers {
            gis: Some(GisCredential::Token(Secret::new("t"))),
            ..Answers::default()
        };
        assert!(answers.setup().is_none());
        let draft = answers.draft();
        let path = Path::new("/etc/ciosync/config.toml");
        let text = render::config_text(&draft, path, &|_| None);
        config::parse(path, &text, &render::secret_env(&draft)).expect("a draft resolves");
    }
}

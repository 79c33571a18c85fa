//! `ciosync init` (SPEC 8.5): from a handful of answers to a config that passes `check`.
//!
//! Owns the questions, their order and defaults, proving each credential as soon as it is
//! answered, and writing the result. The flags are the first answers; on a terminal the rest
//! are asked one at a time ([`Terminal`]); without one, a missing required answer is a usage
//! error naming its flag. What the flags answer and how a typed answer is read are in
//! `answers`; the file's text is built in `render` (pure); the terminal is at the edge, in
//! `terminal`. This file holds the order of the questions, the proofs and the writing.
//!
//! Invariants:
//! - nothing is written before every credential is proven and every answer is in; then the
//!   secret files go first and the config last, so a config never names a missing file;
//! - a refused credential writes nothing. The one exception is forced by GIS: an OAuth refresh
//!   that succeeded rotated the refresh token, and the rotated one is kept in `data_dir`
//!   (0600, as every run keeps it) because the one typed in no longer works. Without a
//!   terminal customer.io is proven first, so a refused key never follows a rotation;
//! - no file is replaced without `--force`; every file is written atomically, 0600, each
//!   secret in its own file beside the config and never inline;
//! - the text written is validated by the rules `config::load` applies (`config::parse`), and
//!   the credentials are proven by the functions `check` uses
//!   ([`commands::prove_gis`], [`commands::prove_customerio`]);
//! - secrets stay [`Secret`]: never echoed, printed, or put in an error.

mod answers;
pub mod render;
pub mod terminal;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::cio::{CioError, RegionInfo};
use crate::cli::InitArgs;
use crate::commands;
use crate::config::{
    self, ConfigError, Region, Secret, DEFAULT_CONFIG_PATH, DEFAULT_DATA_DIR, DEFAULT_REGION,
};
use crate::credentials;
use crate::data_dir::{self, DataDirError, PRIVATE_FILE_MODE};
use crate::error::{self, Error};
use crate::gis::{CurrentPerson, GisError};

use answers::{absolute, lcs_answer, region_answer, url_answer, Answers};
pub use render::{GisCredential, OAuthAnswer, Setup};
pub use terminal::{StdTerminal, Terminal};

/// The OAuth token endpoint offered when OAuth is chosen (AIESEC's, SPEC 2).
pub const DEFAULT_TOKEN_URL: &str = "https://auth.aiesec.org/oauth/token";

/// How many times a refused credential typed at the terminal is asked for again before
/// `init` gives up (exit 77), as `sudo` does with a password.
pub const ATTEMPTS: u32 = 3;

/// Mode of a directory `init` creates for the config: it holds secrets.
const CONFIG_DIR_MODE: u32 = 0o700;

/// Why `init` stopped without writing the config.
#[derive(Debug)]
pub enum InitError {
    /// A missing answer without a terminal, an unusable flag (an unreadable `--*-file`), or
    /// input that ended before an answer: exit 2. The text names the flag or the question.
    Usage(String),
    /// Ctrl-C while a secret was typed: nothing was written.
    Interrupted,
    /// As for any command: 78 a file that exists, 77 a refused credential, 69 a service out of
    /// reach, 74 a file that cannot be written.
    Failed(Error),
}

impl From<Error> for InitError {
    fn from(error: Error) -> Self {
        InitError::Failed(error)
    }
}

impl From<DataDirError> for InitError {
    fn from(error: DataDirError) -> Self {
        InitError::Failed(error.into())
    }
}

/// Runs `init`: the answers in `args`, the rest asked on `terminal` when there is one, each
/// credential proven, then the files written. Returns the report for stdout: what was
/// written and what to run next.
///
/// # Errors
/// [`InitError`]; nothing is written then (but a rotated OAuth refresh token, see the
/// module's invariants).
pub fn run(
    args: &InitArgs,
    env: &dyn Fn(&str) -> Option<String>,
    terminal: Option<&mut dyn Terminal>,
) -> Result<String, InitError> {
    let config_path = absolute(&commands::config_path(args.config.as_deref(), env))?;
    if !args.force {
        refuse_existing(&config_path)?;
    }
    let mut answers = Answers::from_flags(args)?;
    if terminal.is_none() {
        // Nothing to ask on: what has a default takes it.
        answers.region.get_or_insert(DEFAULT_REGION);
        answers
            .data_dir
            .get_or_insert_with(|| PathBuf::from(DEFAULT_DATA_DIR));
        let missing = answers.missing_flags();
        if !missing.is_empty() {
            return Err(InitError::Usage(format!(
                "without a terminal to ask on, `ciosync init` needs {}",
                missing.join(", ")
            )));
        }
    }
    let runtime = commands::runtime()?;
    let mut session = Session {
        config_path,
        force: args.force,
        answers,
        terminal,
        runtime,
        person: None,
        region: None,
    };
    // Refuse what is already known to be in the way before asking anything; the rest (the
    // GIS files, once their kind is chosen) as soon as it is known.
    session.refuse_existing_beside(&[render::CIO_API_KEY_FILE])?;
    if let Some(gis) = &session.answers.gis {
        session.refuse_existing_beside(render::gis_file_names(gis))?;
    }
    session.greet();
    if session.terminal.is_some() {
        session.prove_gis()?;
        session.prove_customerio()?;
    } else {
        // customer.io first: its check changes nothing, while an OAuth refresh rotates the
        // token, so a refused key must not come after one.
        session.prove_customerio()?;
        session.prove_gis()?;
    }
    session.choose_data_dir()?;
    session.choose_home_lcs()?;
    session.write()
}

/// One `init`: the answers, where to ask for the rest, what the proofs found.
struct Session<'t> {
    config_path: PathBuf,
    /// `--force`: files in the way are replaced.
    force: bool,
    answers: Answers,
    terminal: Option<&'t mut dyn Terminal>,
    runtime: tokio::runtime::Runtime,
    /// Whose the GIS credential is, once proven.
    person: Option<CurrentPerson>,
    /// What customer.io said, once proven.
    region: Option<RegionInfo>,
}

impl Session<'_> {
    fn greet(&mut self) {
        let config = self.config_path.display().to_string();
        self.say(&format!(
            "ciosync init writes {config} and, beside it, one file per secret (all 0600).\n\
             Each credential is checked as soon as it is entered; Ctrl-C stops without writing\n\
             the config. Where each answer comes from: README.md, \"Connect your LC\".\n"
        ));
    }

    /// Asks for the GIS credential until GIS accepts it (or [`ATTEMPTS`] run out).
    fn prove_gis(&mut self) -> Result<(), InitError> {
        for attempt in 1..=ATTEMPTS {
            if self.answers.gis.is_none() {
                self.ask_gis_credential()?;
            }
            if matches!(self.answers.gis, Some(GisCredential::OAuth(_)))
                && self.answers.data_dir.is_none()
            {
                self.say(
                    "OAuth refresh tokens change at every use: ciosync keeps the current one in \
                     its data dir.",
                );
                self.ask_data_dir()?;
            }
            let config = self.draft_config()?;
            let created = self.prepare_oauth_data_dir(&config)?;
            self.say("  Checking with GIS...");
            let proof = self.runtime.block_on(commands::prove_gis(&config));
            match proof {
                Ok(person) => {
                    self.say(&format!("GIS: ok, {}", describe(&person)));
                    self.person = Some(person);
                    return Ok(());
                }
                Err(e) => {
                    undo_data_dir(created, &config.data_dir);
                    let refused = matches!(e, Error::Gis(GisError::Auth(_)));
                    if !refused
                        || self.answers.gis_from_flags
                        || self.terminal.is_none()
                        || attempt == ATTEMPTS
                    {
                        return Err(e.into());
                    }
                    self.say(&format!("  {}\n  Try again.", error::chain(&e)));
                    if let Some(GisCredential::OAuth(oauth)) = self.answers.gis.take() {
                        self.answers.oauth_defaults = Some((oauth.token_url, oauth.client_id));
                    }
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Asks for the GIS credential: its kind once, then its parts (again after a refusal,
    /// with the OAuth client's URL and id offered as they were).
    fn ask_gis_credential(&mut self) -> Result<(), InitError> {
        let oauth = match self.answers.gis_kind_oauth {
            Some(oauth) => oauth,
            None => {
                self.say(
                    "GIS credential: a static access token, or an OAuth client (client id, \
                     client secret, refresh token).",
                );
                let oauth =
                    self.ask(
                        "GIS credential, token or oauth",
                        Some("token"),
                        |text| match text.to_ascii_lowercase().as_str() {
                            "token" => Ok(false),
                            "oauth" => Ok(true),
                            _ => Err("answer token or oauth".to_owned()),
                        },
                    )?;
                self.answers.gis_kind_oauth = Some(oauth);
                oauth
            }
        };
        let oauth = oauth.then(|| {
            self.answers
                .oauth_defaults
                .clone()
                .unwrap_or_else(|| (DEFAULT_TOKEN_URL.to_owned(), String::new()))
        });
        let names: &[&str] = if oauth.is_some() {
            &[
                render::GIS_CLIENT_SECRET_FILE,
                render::GIS_REFRESH_TOKEN_FILE,
            ]
        } else {
            &[render::GIS_TOKEN_FILE]
        };
        self.refuse_existing_beside(names)?;
        let credential = match oauth {
            None => GisCredential::Token(self.ask_hidden("GIS access token")?),
            Some((token_url, client_id)) => {
                let token_url = self.ask("OAuth token endpoint", Some(&token_url), url_answer)?;
                let client_id = self.ask(
                    "OAuth client id",
                    (!client_id.is_empty()).then_some(client_id.as_str()),
                    |text| Ok(text.to_owned()),
                )?;
                GisCredential::OAuth(OAuthAnswer {
                    token_url,
                    client_id,
                    client_secret: self.ask_hidden("OAuth client secret")?,
                    refresh_token: self.ask_hidden("OAuth refresh token")?,
                })
            }
        };
        self.answers.gis = Some(credential);
        Ok(())
    }

    /// With OAuth the proof is a refresh whose rotated token must be kept in the data dir:
    /// creates it, and returns the topmost directory created, to be removed again if no
    /// refresh succeeds.
    fn prepare_oauth_data_dir(
        &self,
        config: &config::Config,
    ) -> Result<Option<PathBuf>, InitError> {
        if !matches!(config.gis.auth, config::GisAuth::OAuth(_)) {
            return Ok(None);
        }
        let topmost_missing = config
            .data_dir
            .ancestors()
            .take_while(|dir| !dir.exists())
            .last()
            .map(Path::to_path_buf);
        data_dir::ensure(&config.data_dir)?;
        Ok(topmost_missing)
    }

    /// Asks for the customer.io answers until customer.io accepts them (or [`ATTEMPTS`] run
    /// out). A wrong region is asked again with the other one offered.
    fn prove_customerio(&mut self) -> Result<(), InitError> {
        let mut site_default: Option<String> = None;
        let mut region_default = DEFAULT_REGION;
        if self.answers.site_id.is_none() || self.answers.api_key.is_none() {
            self.say(
                "customer.io: the site id and the Track API key are on your workspace's \
                 Track API Keys page\n(Settings, Workspace Settings, API Credentials). The region \
                 is where the workspace's data lives:\nus unless it was created in the EU.",
            );
        }
        for attempt in 1..=ATTEMPTS {
            if self.answers.site_id.is_none() {
                let site_id = self.ask("customer.io site id", site_default.as_deref(), |text| {
                    Ok(text.to_owned())
                })?;
                self.answers.site_id = Some(site_id);
            }
            if self.answers.api_key.is_none() {
                self.answers.api_key = Some(self.ask_hidden("customer.io Track API key")?);
            }
            if self.answers.region.is_none() {
                let region = self.ask(
                    "customer.io region, us or eu",
                    Some(region_default.name()),
                    region_answer,
                )?;
                self.answers.region = Some(region);
            }
            let config = self.draft_config()?;
            self.say("  Checking with customer.io...");
            match self.runtime.block_on(commands::prove_customerio(&config)) {
                Ok(info) => {
                    self.say(&format!(
                        "customer.io: ok, {}",
                        commands::customerio_report(&config, &info)
                    ));
                    self.region = Some(info);
                    return Ok(());
                }
                Err(e) => {
                    let can_ask = self.terminal.is_some() && attempt < ATTEMPTS;
                    let refused = matches!(e, Error::Cio(CioError::Auth(_)));
                    let wrong_region = matches!(
                        e,
                        Error::WrongRegion(_) | Error::Cio(CioError::WrongRegion(_))
                    );
                    if refused
                        && can_ask
                        && !(self.answers.site_id_from_flag && self.answers.api_key_from_flag)
                    {
                        self.say(&format!("  {}\n  Try again.", error::chain(&e)));
                        if !self.answers.site_id_from_flag {
                            site_default = self.answers.site_id.take();
                        }
                        if !self.answers.api_key_from_flag {
                            self.answers.api_key = None;
                        }
                    } else if wrong_region && can_ask && !self.answers.region_from_flag {
                        self.say(&format!("  {}", error::chain(&e)));
                        region_default = match self.answers.region.take() {
                            Some(Region::Us) => Region::Eu,
                            _ => Region::Us,
                        };
                    } else {
                        return Err(e.into());
                    }
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    fn choose_data_dir(&mut self) -> Result<(), InitError> {
        if self.answers.data_dir.is_some() {
            return Ok(());
        }
        self.ask_data_dir()
    }

    fn ask_data_dir(&mut self) -> Result<(), InitError> {
        let dir = self.ask(
            "Where ciosync keeps its state (data_dir)",
            Some(DEFAULT_DATA_DIR),
            |text| absolute(Path::new(text)).map_err(|e| usage_text(&e)),
        )?;
        self.answers.data_dir = Some(dir);
        Ok(())
    }

    /// `home_lcs`: the flag, else asked with the GIS person's LCs as the default.
    fn choose_home_lcs(&mut self) -> Result<(), InitError> {
        if self.answers.home_lcs.is_none() {
            let offered: Vec<u64> = self.person.as_ref().map_or_else(Vec::new, |person| {
                person
                    .offered_lcs()
                    .iter()
                    .map(|office| office.id)
                    .collect()
            });
            let default = offered
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let lcs = self.ask(
                "LC ids to sync (home_lcs), comma-separated",
                (!default.is_empty()).then_some(default.as_str()),
                lcs_answer,
            )?;
            self.answers.home_lcs = Some(lcs);
        }
        Ok(())
    }

    /// Exit 78 when one of the files `names` beside the config exists, unless `--force`.
    fn refuse_existing_beside(&self, names: &[&str]) -> Result<(), InitError> {
        if self.force {
            return Ok(());
        }
        names
            .iter()
            .try_for_each(|name| refuse_existing(&self.config_path.with_file_name(name)))
    }

    /// Writes the secret files, then the config, and returns the report.
    fn write(&mut self) -> Result<String, InitError> {
        let setup = self.answers.setup().ok_or_else(|| {
            InitError::Usage("an answer is missing; nothing was written".to_owned())
        })?;
        let names = self.lc_names();
        let text = render::config_text(&setup, &self.config_path, &|id| names.get(&id).cloned());
        // The same rules `check` and `run` load it with; a failure here is a bug in `render`.
        let loaded = config::parse(&self.config_path, &text, &render::secret_env(&setup))
            .map_err(Error::from)?;
        let secrets = render::secret_files(&setup, &self.config_path);
        if !self.force {
            for (path, _) in &secrets {
                refuse_existing(path)?;
            }
        }
        if let Some(dir) = self.config_path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(CONFIG_DIR_MODE)
                .create(dir)
                .map_err(DataDirError::io(format!("cannot create {}", dir.display())))?;
        }
        for (path, secret) in &secrets {
            write_private(path, &render::secret_file_bytes(secret))?;
        }
        write_private(&self.config_path, text.as_bytes())?;
        Ok(self.report(&loaded.config, &secrets))
    }

    fn report(&self, config: &config::Config, secrets: &[(PathBuf, &Secret)]) -> String {
        let mut written = vec![config.path.clone()];
        written.extend(secrets.iter().map(|(path, _)| path.clone()));
        let mut out = String::from("Wrote (each 0600):\n");
        for path in &written {
            out.push_str(&format!("  {}\n", path.display()));
        }
        if matches!(config.gis.auth, config::GisAuth::OAuth(_)) {
            out.push_str(&format!(
                "  {} (the rotated OAuth refresh token)\n",
                credentials::oauth_path(&config.data_dir).display()
            ));
        }
        if let Some(person) = &self.person {
            out.push_str(&format!(
                "gis: ok ({})\n",
                person.home_lc_report(&config.gis.home_lcs)
            ));
        }
        if let Some(info) = &self.region {
            out.push_str(&format!(
                "customerio: ok ({})\n",
                commands::customerio_report(config, info)
            ));
        }
        let flag = if config.path == Path::new(DEFAULT_CONFIG_PATH) {
            String::new()
        } else {
            format!(" --config {}", config.path.display())
        };
        let mut steps = Vec::new();
        let mut dry_run = format!("ciosync run --dry-run{flag}");
        if fs::metadata(&config.path).is_ok_and(|meta| meta.uid() == 0) {
            // Runs happen as the user deploy/install.sh creates, who cannot read root's 0600
            // files; a dry run as root would also leave a root-owned lock in the data dir.
            let files: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
            let mut chown = format!("sudo chown ciosync: {}", files.join(" "));
            if matches!(config.gis.auth, config::GisAuth::OAuth(_)) {
                // The rotated refresh token (and what else the check left there) too.
                chown.push_str(&format!(
                    " && sudo chown -R ciosync: {}",
                    config.data_dir.display()
                ));
            }
            steps.push(format!(
                "{chown}\n     \
                 these files are root's; scheduled runs happen as `ciosync` (deploy/install.sh)."
            ));
            dry_run = format!("sudo -u ciosync {dry_run}");
        }
        steps.push(format!(
            "{dry_run}\n     reads GIS and prints what each person would get; sends nothing."
        ));
        steps.push(
            "Schedule it (deploy/README.md): sudo deploy/install.sh for a systemd timer\n     \
             (--cron for cron), deploy/Dockerfile for a container, or\n     \
             deploy/kubernetes/cronjob.yaml."
                .to_owned(),
        );
        out.push_str("\nNext:\n");
        for (number, step) in steps.iter().enumerate() {
            out.push_str(&format!("  {}. {step}\n", number + 1));
        }
        out
    }

    /// Names of the LCs the GIS person's record showed.
    fn lc_names(&self) -> BTreeMap<u64, String> {
        self.person
            .iter()
            .flat_map(|person| person.offered_lcs())
            .filter_map(|office| office.name.clone().map(|name| (office.id, name)))
            .collect()
    }

    /// The config the answers so far make, resolved by the real rules.
    fn draft_config(&self) -> Result<config::Config, InitError> {
        let draft = self.answers.draft();
        let text = render::config_text(&draft, &self.config_path, &|_| None);
        let loaded = config::parse(&self.config_path, &text, &render::secret_env(&draft))
            .map_err(Error::from)?;
        Ok(loaded.config)
    }

    fn say(&mut self, text: &str) {
        if let Some(terminal) = self.terminal.as_mut() {
            terminal.say(text);
        }
    }

    /// Asks `question` until `parse` accepts the answer; an empty answer takes `default`.
    fn ask<T>(
        &mut self,
        question: &str,
        default: Option<&str>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, InitError> {
        let Some(terminal) = self.terminal.as_mut() else {
            return Err(no_answer(question));
        };
        let prompt = match default {
            Some(default) => format!("{question} [{default}]: "),
            None => format!("{question}: "),
        };
        loop {
            let line = terminal.ask(&prompt).map_err(terminal_error)?;
            let Some(line) = line else {
                return Err(no_answer(question));
            };
            let answer = match (line.trim(), default) {
                ("", Some(default)) => default,
                ("", None) => {
                    terminal.say("  An answer is needed.");
                    continue;
                }
                (answer, _) => answer,
            };
            match parse(answer) {
                Ok(value) => return Ok(value),
                Err(why) => terminal.say(&format!("  {why}")),
            }
        }
    }

    /// Asks for a secret, with echo off, until one is typed.
    fn ask_hidden(&mut self, question: &str) -> Result<Secret, InitError> {
        let Some(terminal) = self.terminal.as_mut() else {
            return Err(no_answer(question));
        };
        let prompt = format!("{question} (typing is hidden): ");
        loop {
            let line = terminal.ask_hidden(&prompt).map_err(terminal_error)?;
            let Some(line) = line else {
                return Err(no_answer(question));
            };
            let secret = line.trim();
            if secret.is_empty() {
                terminal.say("  An answer is needed.");
                continue;
            }
            return Ok(Secret::new(secret));
        }
    }
}

/// `person 999 (Sync Bot), home LC 1337 Atlantis, current offices: 1337 Atlantis, 1338 Lemuria`.
fn describe(person: &CurrentPerson) -> String {
    let mut text = format!("person {}", person.id);
    if let Some(name) = &person.full_name {
        text.push_str(&format!(" ({name})"));
    }
    match &person.home_lc {
        Some(lc) => text.push_str(&format!(", home LC {}", lc.label())),
        None => text.push_str(", no home LC in GIS"),
    }
    if !person.current_offices.is_empty() {
        let offices: Vec<String> = person.current_offices.iter().map(|o| o.label()).collect();
        text.push_str(&format!(", current offices: {}", offices.join(", ")));
    }
    text
}

/// Removes the data dir `init` created for an OAuth proof that rotated nothing.
fn undo_data_dir(created: Option<PathBuf>, data_dir: &Path) {
    if let Some(topmost) = created {
        if !credentials::oauth_path(data_dir).exists() {
            // Created moments ago by this process, and no token was kept in it.
            let _ = fs::remove_dir_all(topmost);
        }
    }
}

/// Exit 78 naming `path` when it exists (a dangling symlink counts).
fn refuse_existing(path: &Path) -> Result<(), InitError> {
    if path.symlink_metadata().is_ok() {
        return Err(Error::Config(ConfigError::Invalid {
            location: path.display().to_string(),
            message: "already exists; `ciosync init` replaces files only with --force".to_owned(),
        })
        .into());
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), InitError> {
    data_dir::write_atomic(path, bytes, PRIVATE_FILE_MODE)
        .map_err(DataDirError::io(format!("cannot write {}", path.display())))?;
    Ok(())
}

/// Input ended (Ctrl-D, or a closed pipe) before `question` was answered.
fn no_answer(question: &str) -> InitError {
    InitError::Usage(format!("no answer for \"{question}\"; nothing was written"))
}

fn terminal_error(err: io::Error) -> InitError {
    if err.kind() == io::ErrorKind::Interrupted {
        return InitError::Interrupted;
    }
    InitError::Failed(Error::Unavailable {
        context: "cannot use the terminal".to_owned(),
        source: err,
    })
}

fn usage_text(err: &InitError) -> String {
    match err {
        InitError::Usage(text) => text.clone(),
        InitError::Interrupted => "interrupted".to_owned(),
        InitError::Failed(e) => error::chain(e),
    }
}

//! `ciosync init` and the `check` that names the LC (SPEC 8.5, issue 17): the terminal path
//! driven through a real pseudo-terminal (answers typed at the prompts, a refused token asked
//! again, secrets never echoed, Ctrl-C restoring the terminal), the flags path, what is
//! written (0600, secrets in files, never overwritten without --force, nothing at all when a
//! credential is refused), the branches of the questions through a scripted terminal, and
//! `init` in the completions and the man page.

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::process::Command;

use ciosync::cli::{Cli, Command as Subcommand, InitArgs};
use ciosync::fake::cio::FakeCioOptions;
use ciosync::fake::gis::FakeGisOptions;
use ciosync::init::{self, InitError, Terminal};
use clap::Parser;
use rexpect::process::WaitStatus;
use rexpect::session::PtySession;

use crate::common::*;

/// Fakes and a temp dir; `init` writes into `etc/` and keeps its state in `state/`, apart
/// from the [`Env`]'s own config.
struct Setup {
    env: Env,
}

impl Setup {
    fn new() -> Setup {
        Setup { env: Env::new(12) }
    }

    fn with(gis: FakeGisOptions, cio: FakeCioOptions) -> Setup {
        Setup {
            env: Env::with(gis, cio),
        }
    }

    fn etc(&self) -> PathBuf {
        self.env.dir.path().join("etc")
    }

    fn config(&self) -> PathBuf {
        self.etc().join("config.toml")
    }

    fn state(&self) -> PathBuf {
        self.env.dir.path().join("state")
    }

    /// A private file under `inputs/` holding `value`, as an operator would hand a secret
    /// to `--*-file`.
    fn input(&self, name: &str, value: &str) -> String {
        let dir = self.env.dir.path().join("inputs");
        std::fs::create_dir_all(&dir).expect("inputs dir");
        let path = dir.join(name);
        write_private(&path, &format!("{value}\n"));
        path.to_str().expect("utf-8").to_owned()
    }

    /// `init` pointed at the fakes, writing `etc/config.toml`.
    fn base_args(&self) -> Vec<String> {
        [
            "init",
            "--config",
            self.config().to_str().expect("utf-8"),
            "--gis-endpoint",
            &self.env.gis.graphql_url(),
            "--track-url",
            &self.env.cio.url(),
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// Every answer as a flag, with the fake's static token.
    fn flag_args(&self) -> Vec<String> {
        let mut args = self.base_args();
        args.extend(
            [
                "--gis-token-file",
                &self.input("token", &self.env.gis.static_token()),
                "--site-id",
                &self.env.cio.site_id(),
                "--api-key-file",
                &self.input("key", &self.env.cio.api_key()),
                "--home-lcs",
                "1337,1338",
                "--data-dir",
                self.state().to_str().expect("utf-8"),
            ]
            .map(str::to_owned),
        );
        args
    }

    fn ciosync(&self, args: &[String]) -> std::process::Output {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ciosync(&args, &[])
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.etc().join(name))
            .unwrap_or_else(|e| panic!("read etc/{name}: {e}"))
    }

    /// `ciosync` with the config `init` wrote.
    fn with_written_config(&self, subcommand: &str, extra: &[&str]) -> std::process::Output {
        let config = self.config();
        let mut args = vec![subcommand, "--config", config.to_str().expect("utf-8")];
        args.extend_from_slice(extra);
        ciosync(&args, &[])
    }

    /// Asserts `init` left no file behind: not in `etc/`, not in `state/`.
    fn assert_nothing_written(&self) {
        assert!(walk(&self.etc()).is_empty(), "{:?}", walk(&self.etc()));
        assert!(!self.state().exists(), "{:?}", walk(&self.state()));
    }
}

/// Replaces `flag`'s value in `args`, or drops the flag and its value when `value` is `None`.
fn with_flag(mut args: Vec<String>, flag: &str, value: Option<&str>) -> Vec<String> {
    let at = args.iter().position(|a| a == flag).expect("flag present");
    match value {
        Some(value) => args[at + 1] = value.to_owned(),
        None => {
            args.drain(at..at + 2);
        }
    }
    args
}

/// The built `ciosync` on a pseudo-terminal, with echo on as a login terminal has it (the
/// pty library turns it off), so anything the program failed to hide would show.
struct Screen {
    session: PtySession,
    seen: String,
}

impl Screen {
    fn start(shell_script: &str, args: &[String]) -> Screen {
        let mut command: Command = scrubbed("sh");
        command
            .arg("-c")
            .arg(shell_script)
            .arg(env!("CARGO_BIN_EXE_ciosync"))
            .args(args);
        let session =
            rexpect::session::spawn_command(command, Some(30_000)).expect("spawn on a pty");
        Screen {
            session,
            seen: String::new(),
        }
    }

    /// `ciosync ARGS` on the terminal.
    fn ciosync(args: &[String]) -> Screen {
        Screen::start("stty echo && exec \"$0\" \"$@\"", args)
    }

    fn expect(&mut self, text: &str) {
        match self.session.exp_string(text) {
            Ok(before) => {
                self.seen.push_str(&before);
                self.seen.push_str(text);
            }
            Err(e) => panic!(
                "waiting for {text:?}: {e}\nthe screen so far:\n{}",
                self.seen
            ),
        }
    }

    /// Waits for `prompt`, then types `line` and Enter.
    fn answer(&mut self, prompt: &str, line: &str) {
        self.expect(prompt);
        self.session.send_line(line).expect("type on the pty");
    }

    /// Waits for the program to end: its exit code and everything the screen showed.
    fn finish(mut self) -> (i32, String) {
        let rest = self
            .session
            .exp_eof()
            .unwrap_or_else(|e| panic!("waiting for the end: {e}\n{}", self.seen));
        self.seen.push_str(&rest);
        match self.session.process().wait().expect("wait") {
            WaitStatus::Exited(_, code) => (code, self.seen),
            other => panic!("not a normal exit: {other:?}\n{}", self.seen),
        }
    }
}

#[test]
fn init_on_a_terminal_asks_hides_secrets_and_asks_again_for_a_refused_token() {
    let setup = Setup::new();
    let token = setup.env.gis.static_token();
    let key = setup.env.cio.api_key();
    let site = setup.env.cio.site_id();
    let wrong = "wrong-token-typed-first";
    let mut screen = Screen::ciosync(&setup.base_args());
    screen.answer("GIS credential, token or oauth [token]: ", "");
    screen.answer("GIS access token (typing is hidden): ", wrong);
    screen.expect("GIS refused the credentials: HTTP 401");
    screen.answer("GIS access token (typing is hidden): ", &token);
    screen.expect("GIS: ok, person 999 (Sync Bot), home LC 1337 Atlantis");
    screen.answer("customer.io site id: ", &site);
    screen.answer("customer.io Track API key (typing is hidden): ", &key);
    screen.answer("customer.io region, us or eu [us]: ", "");
    screen.expect("customer.io: ok, region us");
    screen.answer(
        "Where ciosync keeps its state (data_dir) [/var/lib/ciosync]: ",
        setup.state().to_str().expect("utf-8"),
    );
    // The GIS person's home LC and current offices are the default.
    screen.answer(
        "LC ids to sync (home_lcs), comma-separated [1337,1338]: ",
        "",
    );
    screen.expect("ciosync run --dry-run --config");
    let (exit, seen) = screen.finish();
    assert_eq!(exit, 0, "{seen}");

    // Echo was on: what was typed at a plain prompt shows, a secret never does.
    assert!(seen.contains(&format!("site id: {site}")), "{seen}");
    for secret in [token.as_str(), wrong, key.as_str()] {
        assert!(!seen.contains(secret), "{secret} echoed:\n{seen}");
    }
    assert_eq!(setup.read("gis-token"), format!("{token}\n"));
    assert_eq!(setup.read("cio-api-key"), format!("{key}\n"));
    let config = setup.read("config.toml");
    assert!(config.contains("home_lcs = [1337, 1338]"), "{config}");
    for name in ["config.toml", "gis-token", "cio-api-key"] {
        assert_eq!(mode(&setup.etc().join(name)), 0o600, "{name}");
    }
    let out = setup.with_written_config("check", &[]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("gis: ok (person 999, home LC 1337 Atlantis: among gis.home_lcs)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn ctrl_c_at_a_hidden_prompt_restores_the_terminal_and_writes_nothing() {
    let setup = Setup::new();
    // The shell reports the exit status, then the terminal's modes after ciosync ended.
    let mut screen = Screen::start(
        "stty echo icanon isig && \"$0\" \"$@\"; echo \"exit=$?\"; stty -a",
        &setup.base_args(),
    );
    screen.answer("GIS credential, token or oauth [token]: ", "");
    screen.expect("GIS access token (typing is hidden): ");
    screen.session.send("half-typed").expect("type");
    screen.session.send_control('c').expect("Ctrl-C");
    screen.expect("the config was not written");
    let (exit, seen) = screen.finish();
    assert_eq!(exit, 0, "the shell ends normally: {seen}");
    assert!(seen.contains("exit=130"), "{seen}");
    let modes: Vec<&str> = seen
        .split("exit=130")
        .nth(1)
        .expect("stty output")
        .split_whitespace()
        .collect();
    for mode in ["echo", "icanon", "isig"] {
        assert!(modes.contains(&mode), "{mode} not restored: {modes:?}");
    }
    setup.assert_nothing_written();
}

#[test]
fn init_from_flags_writes_a_config_that_check_and_run_accept() {
    let setup = Setup::new();
    let out = setup.ciosync(&setup.flag_args());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "nothing asked, nothing warned");
    let report = stdout(&out);
    assert!(
        report.contains("ciosync run --dry-run --config"),
        "{report}"
    );
    assert!(report.contains("deploy/install.sh"), "{report}");
    assert!(
        report.contains("gis: ok (person 999, home LC 1337 Atlantis: among gis.home_lcs)"),
        "{report}"
    );

    let config = setup.read("config.toml");
    for secret in [setup.env.gis.static_token(), setup.env.cio.api_key()] {
        assert!(!config.contains(&secret), "a secret inline: {config}");
        assert!(
            !report.contains(&secret),
            "a secret in the report: {report}"
        );
    }
    let etc = setup.etc().display().to_string();
    assert!(
        config.contains(&format!("access_token_file = \"{etc}/gis-token\"")),
        "{config}"
    );
    assert!(
        config.contains(&format!("api_key_file = \"{etc}/cio-api-key\"")),
        "{config}"
    );
    assert!(
        config.contains("home_lcs = [1337, 1338]  # Atlantis, Lemuria"),
        "{config}"
    );
    assert!(config.contains("region = \"us\""), "{config}");
    for name in ["config.toml", "gis-token", "cio-api-key"] {
        assert_eq!(mode(&setup.etc().join(name)), 0o600, "{name}");
    }
    // The secrets were copied, not referenced: the inputs can go.
    std::fs::remove_dir_all(setup.env.dir.path().join("inputs")).expect("remove inputs");

    let out = setup.with_written_config("run", &["--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "no insecure-secret warning");
    assert!(stdout_json(&out)["events_sent"].as_u64().expect("events") > 0);
    assert!(setup.state().join("state.json").exists());
}

#[test]
fn init_without_a_terminal_names_every_missing_flag_and_writes_nothing() {
    let setup = Setup::new();
    let out = setup.ciosync(&setup.base_args());
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    for flag in [
        "--gis-token-file",
        "--home-lcs",
        "--site-id",
        "--api-key-file",
    ] {
        assert!(err.contains(flag), "{flag} not named: {err}");
    }
    assert!(err.contains("Usage: ciosync init"), "{err}");

    let args = with_flag(setup.flag_args(), "--site-id", None);
    let out = setup.ciosync(&args);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--site-id"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("--home-lcs"), "{}", stderr(&out));

    let missing_file = setup.env.dir.path().join("no-such-file");
    let args = with_flag(
        setup.flag_args(),
        "--api-key-file",
        Some(missing_file.to_str().expect("utf-8")),
    );
    let out = setup.ciosync(&args);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("--api-key-file: cannot read"),
        "{}",
        stderr(&out)
    );
    setup.assert_nothing_written();
}

#[test]
fn init_never_overwrites_without_force() {
    let setup = Setup::new();
    std::fs::create_dir_all(setup.etc()).expect("etc");
    write_private(&setup.config(), "# mine\n");
    let out = setup.ciosync(&setup.flag_args());
    assert_eq!(code(&out), 78, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("{}: already exists", setup.config().display())),
        "{}",
        stderr(&out)
    );
    assert_eq!(setup.read("config.toml"), "# mine\n");
    assert_eq!(walk(&setup.etc()).len(), 1, "nothing else written");
    assert_eq!(
        setup.env.gis.queries().len(),
        0,
        "refused before any question or proof"
    );

    // A secret file in the way is refused too, before anything is written.
    std::fs::remove_file(setup.config()).expect("remove");
    write_private(&setup.etc().join("cio-api-key"), "old-key\n");
    let out = setup.ciosync(&setup.flag_args());
    assert_eq!(code(&out), 78, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cio-api-key: already exists"),
        "{}",
        stderr(&out)
    );
    assert!(!setup.config().exists() && !setup.etc().join("gis-token").exists());
    assert_eq!(setup.env.gis.queries().len(), 0, "refused before any proof");

    let mut forced = setup.flag_args();
    forced.push("--force".into());
    let out = setup.ciosync(&forced);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        setup.read("cio-api-key"),
        format!("{}\n", setup.env.cio.api_key())
    );
    assert_eq!(code(&setup.with_written_config("check", &[])), 0);
}

#[test]
fn a_refused_credential_is_exit_77_and_writes_nothing() {
    let setup = Setup::new();
    let bad_token = setup.input("bad-token", "not-the-token");
    let out = setup.ciosync(&with_flag(
        setup.flag_args(),
        "--gis-token-file",
        Some(&bad_token),
    ));
    assert_eq!(code(&out), 77, "{}", stderr(&out));
    assert!(stderr(&out).contains("GIS refused"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("not-the-token"), "{}", stderr(&out));
    setup.assert_nothing_written();

    let bad_key = setup.input("bad-key", "not-the-key");
    let out = setup.ciosync(&with_flag(
        setup.flag_args(),
        "--api-key-file",
        Some(&bad_key),
    ));
    assert_eq!(code(&out), 77, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("customer.io refused"),
        "{}",
        stderr(&out)
    );
    setup.assert_nothing_written();

    // OAuth: a refused refresh leaves no data dir behind either.
    let out = setup.ciosync(&oauth_args(&setup, "not-the-refresh-token"));
    assert_eq!(code(&out), 77, "{}", stderr(&out));
    setup.assert_nothing_written();
}

fn oauth_args(setup: &Setup, refresh_token: &str) -> Vec<String> {
    let mut args = with_flag(setup.flag_args(), "--gis-token-file", None);
    args.extend(
        [
            "--gis-token-url",
            &setup.env.gis.token_url(),
            "--gis-client-id",
            &setup.env.gis.oauth_client_id(),
            "--gis-client-secret-file",
            &setup.input("client-secret", &setup.env.gis.oauth_client_secret()),
            "--gis-refresh-token-file",
            &setup.input("refresh", refresh_token),
        ]
        .map(str::to_owned),
    );
    args
}

#[test]
fn init_with_oauth_keeps_the_rotated_refresh_token_for_the_runs() {
    let setup = Setup::new();
    let seed = setup.env.gis.seed_refresh_token();
    let out = setup.ciosync(&oauth_args(&setup, &seed));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let config = setup.read("config.toml");
    assert!(config.contains("[gis.oauth]"), "{config}");
    assert!(config.contains("client_secret_file"), "{config}");
    assert!(!config.contains("access_token"), "{config}");
    assert_eq!(setup.read("gis-refresh-token"), format!("{seed}\n"));
    // The refresh made by the proof rotated the seed; the rotated token is in the data dir.
    let stored = setup.state().join("gis-oauth.json");
    assert_eq!(mode(&stored), 0o600);
    assert!(stdout(&out).contains("the rotated OAuth refresh token"));
    for command in ["check", "run"] {
        let out = setup.with_written_config(command, &[]);
        assert_eq!(code(&out), 0, "{command}: {}{}", stdout(&out), stderr(&out));
    }
}

#[test]
fn check_names_the_home_lc_and_whether_home_lcs_holds_it() {
    let env = Env::new(3);
    let out = env.run("check", &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("gis: ok (person 999, home LC 1337 Atlantis: among gis.home_lcs)"),
        "{}",
        stdout(&out)
    );
    env.write_config_text(
        &env.static_config("")
            .replace("home_lcs = [1337, 1338]", "home_lcs = [2001]"),
    );
    let out = env.run("check", &["--json"]);
    // A bot in another LC can be right (an MC account): reported, not failed.
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let gis = &stdout_json(&out)[1];
    assert_eq!(gis["check"], "gis");
    assert_eq!(
        gis["detail"],
        "person 999, home LC 1337 Atlantis: NOT among gis.home_lcs [2001]; check the LC ids"
    );
}

#[test]
fn completions_and_man_page_include_init() {
    let out = ciosync(&["completions", "bash"], &[]);
    assert_eq!(code(&out), 0);
    let script = stdout(&out);
    assert!(script.contains("init"), "{script}");
    assert!(script.contains("--gis-token-file"), "{script}");
    let out = ciosync(&["man"], &[]);
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains("init"), "{}", stdout(&out));
    let out = ciosync(&["init", "--help"], &[]);
    assert_eq!(code(&out), 0);
    for flag in ["--home-lcs", "--site-id", "--api-key-file", "--force"] {
        assert!(stdout(&out).contains(flag), "{}", stdout(&out));
    }
}

/// A terminal that answers from a script and keeps a transcript; a question it does not
/// expect fails the test.
struct Script {
    steps: VecDeque<(String, Option<String>)>,
    transcript: String,
}

impl Script {
    fn new(steps: Vec<(&str, Option<&str>)>) -> Script {
        Script {
            steps: steps
                .into_iter()
                .map(|(prompt, answer)| (prompt.to_owned(), answer.map(str::to_owned)))
                .collect(),
            transcript: String::new(),
        }
    }

    fn next(&mut self, prompt: &str) -> io::Result<Option<String>> {
        self.transcript.push_str(prompt);
        self.transcript.push('\n');
        let (expected, answer) = self
            .steps
            .pop_front()
            .unwrap_or_else(|| panic!("unexpected question {prompt:?}\n{}", self.transcript));
        assert!(
            prompt.contains(expected.as_str()),
            "expected {expected:?}, asked {prompt:?}\n{}",
            self.transcript
        );
        Ok(answer)
    }
}

impl Terminal for Script {
    fn ask(&mut self, prompt: &str) -> io::Result<Option<String>> {
        self.next(prompt)
    }
    fn ask_hidden(&mut self, prompt: &str) -> io::Result<Option<String>> {
        self.next(prompt)
    }
    fn say(&mut self, text: &str) {
        self.transcript.push_str(text);
        self.transcript.push('\n');
    }
}

fn init_args(args: &[String]) -> Box<InitArgs> {
    let mut all = vec!["ciosync".to_owned()];
    all.extend_from_slice(args);
    match Cli::try_parse_from(all).expect("valid flags").command {
        Subcommand::Init(args) => args,
        _ => unreachable!("an init command line"),
    }
}

/// `init` in this process with `script` as the terminal.
fn run_scripted(args: &[String], script: &mut Script) -> Result<String, InitError> {
    let result = init::run(&init_args(args), &|_| None, Some(script));
    assert!(script.steps.is_empty(), "unasked: {:?}", script.steps);
    result
}

fn exit_code(result: &Result<String, InitError>) -> u8 {
    match result {
        Ok(_) => 0,
        Err(InitError::Usage(_)) => 2,
        Err(InitError::Interrupted) => 130,
        Err(InitError::Failed(e)) => e.code(),
    }
}

#[test]
fn oauth_on_a_terminal_asks_for_the_data_dir_and_again_for_a_refused_client() {
    let setup = Setup::new();
    let mut args = setup.base_args();
    args.extend(["--site-id", &setup.env.cio.site_id()].map(str::to_owned));
    args.extend(
        [
            "--api-key-file",
            &setup.input("key", &setup.env.cio.api_key()),
        ]
        .map(str::to_owned),
    );
    let state = setup.state();
    let token_url = setup.env.gis.token_url();
    let client_id = setup.env.gis.oauth_client_id();
    let secret = setup.env.gis.oauth_client_secret();
    let seed = setup.env.gis.seed_refresh_token();
    let client_id_again = format!("OAuth client id [{client_id}]");
    let mut script = Script::new(vec![
        ("token or oauth [token]", Some("oauth")),
        (
            "OAuth token endpoint [https://auth.aiesec.org/oauth/token]",
            Some(&token_url),
        ),
        ("OAuth client id", Some(&client_id)),
        ("OAuth client secret (typing is hidden)", Some(&secret)),
        (
            "OAuth refresh token (typing is hidden)",
            Some("a-revoked-refresh-token"),
        ),
        // The refresh rotates the token, which must be kept: the data dir is asked now.
        (
            "(data_dir) [/var/lib/ciosync]",
            Some(state.to_str().expect("utf-8")),
        ),
        // Refused: asked again, the endpoint and client id offered as typed.
        ("OAuth token endpoint [http://127.0.0.1:", Some("")),
        (&client_id_again, Some("")),
        ("OAuth client secret", Some(&secret)),
        ("OAuth refresh token", Some(&seed)),
        ("customer.io region, us or eu [us]", Some("")),
        ("comma-separated [1337,1338]", Some("2001")),
    ]);
    let result = run_scripted(&args, &mut script);
    assert_eq!(exit_code(&result), 0, "{result:?}\n{}", script.transcript);
    assert!(
        script.transcript.contains("GIS refused"),
        "{}",
        script.transcript
    );
    assert!(state.join("gis-oauth.json").exists());
    let report = result.expect("written");
    assert!(
        report.contains("home LC 1337 Atlantis: NOT among gis.home_lcs [2001]"),
        "{report}"
    );
    let out = setup.with_written_config("check", &[]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn a_wrong_region_is_asked_again_with_the_other_one_offered() {
    let setup = Setup::with(
        FakeGisOptions::default(),
        FakeCioOptions {
            redirect: Some((301, "https://track-eu.customer.io".into())),
            ..Default::default()
        },
    );
    let args = with_flag(setup.flag_args(), "--site-id", None);
    let args = with_flag(args, "--api-key-file", None);
    let site = setup.env.cio.site_id();
    let key = setup.env.cio.api_key();
    let mut script = Script::new(vec![
        ("customer.io site id", Some(&site)),
        ("customer.io Track API key", Some(&key)),
        ("customer.io region, us or eu [us]", Some("")),
        // customer.io redirected: the other region is offered.
        ("customer.io region, us or eu [eu]", Some("")),
        ("customer.io region, us or eu [us]", Some("us")),
    ]);
    let result = run_scripted(&args, &mut script);
    // This fake redirects whatever the region; after the last attempt it is a config error.
    assert_eq!(exit_code(&result), 78, "{result:?}\n{}", script.transcript);
    assert!(
        script.transcript.contains("redirected"),
        "{}",
        script.transcript
    );
    setup.assert_nothing_written();
}

#[test]
fn input_that_ends_is_a_usage_error_naming_the_question() {
    let setup = Setup::new();
    let args = with_flag(setup.flag_args(), "--site-id", None);
    let mut script = Script::new(vec![("customer.io site id", None)]);
    let result = run_scripted(&args, &mut script);
    match &result {
        Err(InitError::Usage(message)) => {
            assert!(message.contains("customer.io site id"), "{message}")
        }
        other => panic!("expected a usage error: {other:?}"),
    }
    setup.assert_nothing_written();
}

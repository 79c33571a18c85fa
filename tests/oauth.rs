//! OAuth refreshes across processes (issue 16; SPEC 2 "OAuth", SPEC 3 "Auth"): every process
//! sharing a data dir refreshes under the OAuth refresh lock (`gis-oauth.lock`), re-reading
//! the persisted tokens there, so none presents a refresh token another has already
//! rotated, and none waits for a run; kills at the refresh end with a working token
//! wherever the token endpoint makes that possible.
//!
//! The fake GIS records every refresh token presented to its token endpoint with the
//! outcome (`FakeGis::refresh_attempts`): "no refresh token presented twice" is read off
//! that log. Access tokens expire by time here (`token_ttl`), as GIS's do, several times
//! within one long run.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, ChildStderr, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use chrono::Utc;
use ciosync::config::Secret;
use ciosync::credentials::{self, CachedAccessToken, StoredOAuth};
use ciosync::fake::cio::FakeCioOptions;
use ciosync::fake::faults::{Fault, FaultPlan, Trigger};
use ciosync::fake::gis::{FakeGis, FakeGisOptions, RefreshAttempt, RefreshRevocation};
use ciosync::gis::{GisClient, GisError, RefreshLock, StoredTokens, TokenStore};
use ciosync::http::RetryPolicy;
use serde_json::Value;

use crate::common::*;

/// How often a waiting loop looks at the processes and the fakes again.
const POLL: Duration = Duration::from_millis(2);
/// The longest any wait here may take before the test fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(120);
/// The lifetime of an access token in the overlap tests: short enough to expire several
/// times within the long process, long enough for one request on a loaded machine.
const TOKEN_TTL: Duration = Duration::from_secs(2);

/// Polls `done` until it holds; fails the test naming `what` after [`PATIENCE`].
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(POLL);
    }
}

/// The refresh requests that presented a token already presented before, as "attempt N
/// presented the token of attempt M" (the tokens themselves stay out of test output).
fn presented_twice(attempts: &[RefreshAttempt]) -> Vec<String> {
    let mut first: BTreeMap<&str, usize> = BTreeMap::new();
    let mut repeats = Vec::new();
    for (n, attempt) in attempts.iter().enumerate() {
        if let Some(m) = first.get(attempt.presented.as_str()) {
            repeats.push(format!("attempt {n} presented the token of attempt {m}"));
        } else {
            first.insert(&attempt.presented, n);
        }
    }
    repeats
}

/// The refresh requests the token endpoint refused, with their OAuth error.
fn refused(attempts: &[RefreshAttempt]) -> Vec<(usize, String)> {
    attempts
        .iter()
        .enumerate()
        .filter_map(|(n, a)| a.error.clone().map(|e| (n, e)))
        .collect()
}

/// The config of `env` with the fake's OAuth client, `seed` as the refresh token and
/// `token_url` (the fake's, or a proxy in front of it), and `extra` after the customer.io
/// table.
fn write_oauth_config(env: &Env, token_url: &str, seed: &str, extra: &str) {
    let table = env
        .oauth_table_with(seed)
        .replace(&env.gis.token_url(), token_url);
    env.write_config_text(&env.config_text(&table, extra));
}

/// An env whose GIS credential is the fake's OAuth client and seed refresh token.
fn oauth_env(gis: FakeGisOptions) -> Env {
    let env = Env::with(gis, FakeCioOptions::default());
    write_oauth_config(
        &env,
        &env.gis.token_url(),
        &env.gis.seed_refresh_token(),
        "",
    );
    env
}

/// The refresh token persisted in `data_dir` now.
fn persisted_refresh_token(data_dir: &Path) -> Option<String> {
    credentials::load(data_dir)
        .expect("the credential file loads")
        .map(|stored| stored.refresh_token.expose().to_owned())
}

/// Refreshes `refresh_token` at the fake's token endpoint, as another process would: the
/// new access and refresh tokens.
fn refresh_at(gis: &FakeGis, refresh_token: &str) -> (String, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let body: Value = runtime.block_on(async {
        reqwest::Client::new()
            .post(gis.token_url())
            .basic_auth(gis.oauth_client_id(), Some(gis.oauth_client_secret()))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
            .send()
            .await
            .expect("the token endpoint answers")
            .json()
            .await
            .expect("a JSON body")
    });
    let field = |name: &str| {
        body[name]
            .as_str()
            .unwrap_or_else(|| panic!("the refresh was granted: {}", body["error"]))
            .to_owned()
    };
    (field("access_token"), field("refresh_token"))
}

/// Persists a refreshed pair in `data_dir` as another ciosync would; `access` is kept for
/// two hours, or not at all.
fn persist(data_dir: &Path, seed: &str, refresh: &str, access: Option<&str>) {
    let access = access.map(|token| CachedAccessToken {
        token: Secret::new(token),
        expires_at: Utc::now() + chrono::Duration::hours(2),
    });
    credentials::save(
        data_dir,
        &StoredOAuth::after_refresh(&Secret::new(seed), Secret::new(refresh), access),
    )
    .expect("save the credential file");
}

/// Starts `ciosync <args> --config <env's config>` with its output piped and `vars` added
/// to the scrubbed environment.
fn spawn(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Child {
    let mut command = ciosync_command(args);
    command
        .arg("--config")
        .arg(env.config_path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in vars {
        command.env(name, value);
    }
    command.spawn().expect("ciosync starts")
}

/// The lines a child writes on stderr, as they come.
fn stderr_lines(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    received
}

/// Reads all of a child's pipe on a thread of its own.
fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

fn finish(child: Child) -> Output {
    child.wait_with_output().expect("ciosync exits")
}

/// Starts `args` on `env`, which lasts several access-token lifetimes, and while it runs
/// starts rounds of overlapping `check`s, a `status` and an `explain`, plus one `also`
/// process (a command that takes the run lock). Returns the long process's output, the
/// outputs of the checks, the statuses and explains, and `also`.
fn overlap(env: &Env, long: &[&str], also: &[&str]) -> (Output, Vec<Output>, Overlapped, Output) {
    let started = Instant::now();
    let mut long_process = spawn(env, long, &[]);
    // Its output is read as it comes: a dry run's plan fills a pipe nobody reads and would
    // block it before it exits.
    let long_stdout = drain(long_process.stdout.take());
    let long_stderr = drain(long_process.stderr.take());
    // The long process has refreshed and is reading pages.
    wait_until("the long process's first refresh", || {
        !env.gis.refresh_attempts().is_empty() && env.gis.queries().len() >= 3
    });
    let also = finish(spawn(env, also, &[]));
    let (mut checks, mut statuses, mut explains) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..2 {
        let running: Vec<Child> = (0..3).map(|_| spawn(env, &["check"], &[])).collect();
        statuses.push(finish(spawn(env, &["status"], &[])));
        explains.push(finish(spawn(env, &["explain", "1", "--json"], &[])));
        checks.extend(running.into_iter().map(finish));
        assert!(
            long_process.try_wait().expect("poll").is_none(),
            "round {round}: the long process ended before the checks did; it must last longer \
             for this test to mean anything"
        );
        // The long process's token expires again and it refreshes before the next round
        // (no check is running now, so the next refresh is the long process's).
        let refreshes = env.gis.refresh_attempts().len();
        wait_until("the long process's next refresh", || {
            env.gis.refresh_attempts().len() > refreshes
                || long_process.try_wait().expect("poll").is_some()
        });
    }
    let long_output = Output {
        status: long_process.wait().expect("ciosync exits"),
        stdout: long_stdout.join().expect("stdout reader"),
        stderr: long_stderr.join().expect("stderr reader"),
    };
    eprintln!(
        "oauth overlap ({}): the long process took {:.1} s; {} refreshes in all, {} checks",
        long.join(" "),
        started.elapsed().as_secs_f64(),
        env.gis.refresh_attempts().len(),
        checks.len()
    );
    (long_output, checks, Overlapped { statuses, explains }, also)
}

/// The `status`es and `explain`s run during the long process.
struct Overlapped {
    statuses: Vec<Output>,
    explains: Vec<Output>,
}

/// An env for the overlap tests: many pages, slow GIS, access tokens that expire by time.
fn long_env() -> Env {
    let env = Env::with(
        FakeGisOptions {
            people: 600,
            token_ttl: Some(TOKEN_TTL),
            ..FakeGisOptions::default()
        },
        FakeCioOptions::default(),
    );
    // Batches keep the customer.io part short: the run's time goes to reading GIS, where
    // its tokens expire.
    let table = env.oauth_table();
    let text =
        with_batch_api(&env.config_text(&table, "")).replace("page_size = 50", "page_size = 10");
    env.write_config_text(&text);
    env.gis.faults().set_plan(FaultPlan::seeded(16).rule(
        "POST /graphql",
        Trigger::Always,
        Fault::Latency(Duration::from_millis(150)),
    ));
    env
}

/// What every overlap test asserts on the checks, the statuses and the token endpoint.
fn assert_overlap(env: &Env, checks: &[Output], overlapped: &Overlapped) {
    for (n, check) in checks.iter().enumerate() {
        assert_eq!(
            code(check),
            0,
            "check {n}: {}{}",
            stdout(check),
            stderr(check)
        );
        assert!(
            stdout(check).contains("gis: ok"),
            "check {n}: {}",
            stdout(check)
        );
        assert_eq!(stderr(check), "", "check {n}");
    }
    // `explain` takes the run lock like a dry run (SPEC 8.1), and a run or a dry run holds it.
    for explain in &overlapped.explains {
        assert_eq!(code(explain), 75, "explain: {}", stderr(explain));
        assert_eq!(stdout(explain), "", "explain");
    }
    for status in &overlapped.statuses {
        assert_eq!(code(status), 0, "status: {}", stderr(status));
        assert!(
            stdout(status).contains("lock: held by a running ciosync"),
            "{}",
            stdout(status)
        );
    }
    let attempts = env.gis.refresh_attempts();
    assert_eq!(presented_twice(&attempts), Vec::<String>::new());
    assert_eq!(refused(&attempts), vec![]);
}

#[test]
fn checks_and_a_dry_run_during_a_long_run_never_present_a_refresh_token_twice() {
    let env = long_env();
    let (run, checks, overlapped, dry_run) =
        overlap(&env, &["run", "--json"], &["run", "--dry-run"]);
    assert_eq!(code(&run), 0, "run: {}", stderr(&run));
    assert_eq!(stderr(&run), "", "a healthy run prints nothing");
    let summary = stdout_json(&run);
    let run_refreshes = summary["token_refreshes"].as_u64().expect("count");
    assert!(run_refreshes >= 2, "tokens expired mid-run: {summary}");
    // A dry run takes the run lock (SPEC 1): during a run it stops at once, touching nothing.
    assert_eq!(code(&dry_run), 75, "dry run: {}", stderr(&dry_run));
    assert_overlap(&env, &checks, &overlapped);
    let attempts = env.gis.refresh_attempts().len() as u64;
    assert!(
        attempts >= run_refreshes + checks.len() as u64,
        "every check refreshed too ({attempts} refreshes, {run_refreshes} by the run)"
    );
    assert!(!env.cio.events().is_empty());
}

#[test]
fn checks_and_a_run_during_a_long_dry_run_never_present_a_refresh_token_twice() {
    let env = long_env();
    let (dry_run, checks, overlapped, run) =
        overlap(&env, &["run", "--dry-run", "--json"], &["run"]);
    assert_eq!(code(&dry_run), 0, "dry run: {}", stderr(&dry_run));
    assert_eq!(stderr(&dry_run), "");
    let plan = stdout_json(&dry_run);
    assert!(
        plan["summary"]["token_refreshes"].as_u64().expect("count") >= 2,
        "tokens expired mid-run: {}",
        plan["summary"]
    );
    assert_eq!(code(&run), 75, "run: {}", stderr(&run));
    assert_overlap(&env, &checks, &overlapped);
    assert_eq!(
        write_endpoint_requests(&env.cio),
        0,
        "a dry run sends nothing"
    );
    assert!(env.data_file("gis-oauth.json").is_some());
    assert!(env.data_file("state.json").is_none());
}

#[test]
fn check_waits_for_another_refresh_and_uses_its_token_but_never_waits_for_a_run() {
    let env = oauth_env(FakeGisOptions {
        people: 5,
        ..FakeGisOptions::default()
    });
    let seed = env.gis.seed_refresh_token();
    let data = env.data_dir();
    ciosync::data_dir::ensure(&data).expect("data dir");
    // A run holds the run lock all along: `check` does not wait for it.
    let _run = ciosync::lock::try_acquire(&data)
        .expect("lock")
        .expect("free");
    let out = env.run("check", &[]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let first = persisted_refresh_token(&data).expect("the rotated token is persisted");

    // The cached access token is gone, so the next check must refresh; and a writer of the
    // credential file was killed mid-save, leaving its temp file.
    let stored = credentials::load(&data).expect("load").expect("present");
    credentials::save(
        &data,
        &StoredOAuth {
            access_token: None,
            ..stored
        },
    )
    .expect("save");
    let stale = data.join(".gis-oauth.json.tmp.4242.0badf00d");
    write_private(&stale, "{\"version\": 1, \"refresh");

    // Another process is refreshing: it holds the refresh lock.
    let refreshing = ciosync::lock::try_acquire_refresh(&data)
        .expect("lock")
        .expect("free");
    let mut check = spawn(&env, &["check"], &[("CIOSYNC_LOG", "ciosync=debug")]);
    let lines = stderr_lines(check.stderr.take().expect("piped"));
    let started = Instant::now();
    loop {
        let line = lines
            .recv_timeout(PATIENCE.saturating_sub(started.elapsed()))
            .expect("the check says it waits for the refresh lock");
        if line.contains("Another process is refreshing the GIS access token") {
            break;
        }
    }
    assert!(stale.exists(), "only the lock holder removes temp files");
    // The other process refreshes and persists while the check waits.
    let (access, second) = refresh_at(&env.gis, &first);
    persist(&data, &seed, &second, Some(&access));
    assert!(
        check.try_wait().expect("poll").is_none(),
        "the check is still waiting for the refresh lock"
    );
    drop(refreshing);

    let out = finish(check);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert!(stdout(&out).contains("gis: ok"), "{}", stdout(&out));
    assert!(
        !stale.exists(),
        "the stale temp file is removed under the lock"
    );
    // The check took the other process's token: it presented no refresh token at all.
    let presented: Vec<String> = env
        .gis
        .refresh_attempts()
        .into_iter()
        .map(|a| a.presented)
        .collect();
    assert_eq!(presented, vec![seed, first]);
    assert_eq!(persisted_refresh_token(&data), Some(second));
}

#[test]
fn a_run_waiting_for_a_stuck_refresh_stops_at_its_time_budget() {
    let env = oauth_env(FakeGisOptions {
        people: 5,
        ..FakeGisOptions::default()
    });
    write_oauth_config(
        &env,
        &env.gis.token_url(),
        &env.gis.seed_refresh_token(),
        "[safety]\ntime_budget = \"2s\"",
    );
    let data = env.data_dir();
    ciosync::data_dir::ensure(&data).expect("data dir");
    let _stuck = ciosync::lock::try_acquire_refresh(&data)
        .expect("lock")
        .expect("free");
    let started = Instant::now();
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(30), "bounded wait");
    assert!(env.gis.refresh_attempts().is_empty());
    assert_eq!(write_endpoint_requests(&env.cio), 0);
}

/// A proxy in front of the token endpoint that forwards every request; when armed, it
/// keeps the next answer from the client: the endpoint has rotated the refresh token, the
/// client never hears of it.
struct Swallow {
    upstream: Upstream,
    armed: AtomicBool,
}

async fn swallow_when_armed(
    State(proxy): State<Arc<Swallow>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = proxy.upstream.forward(method, &uri, &headers, body).await;
    if proxy.armed.swap(false, Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    json_reply(answer)
}

/// A run rotated the seed; the next run's refresh (its access token expired) is granted by
/// the endpoint, and the run is killed before the answer reaches it, so the new refresh
/// token is never persisted. Returns the env and the refresh token still persisted.
fn kill_between_the_answer_and_the_save(revocation: RefreshRevocation) -> (Env, String) {
    let env = Env::with(
        FakeGisOptions {
            people: 20,
            refresh_revocation: revocation,
            ..FakeGisOptions::default()
        },
        FakeCioOptions::default(),
    );
    let proxy = Arc::new(Swallow {
        upstream: Upstream::new(env.gis.url()),
        armed: AtomicBool::new(false),
    });
    let server = start_proxy(swallow_when_armed, Arc::clone(&proxy));
    write_oauth_config(
        &env,
        &format!("{}/oauth/token", server.url()),
        &env.gis.seed_refresh_token(),
        "",
    );
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let persisted = persisted_refresh_token(&env.data_dir()).expect("persisted");

    env.gis.expire_access_tokens();
    proxy.armed.store(true, Ordering::SeqCst);
    let granted = env.gis.refresh_attempts().len();
    let mut run = spawn(&env, &["run"], &[]);
    wait_until("the token endpoint granted the refresh", || {
        env.gis.refresh_attempts().len() > granted
    });
    run.kill().expect("kill");
    run.wait().expect("reap");
    let last = env.gis.refresh_attempts().pop().expect("an attempt");
    assert_eq!(last.presented, persisted);
    assert!(last.issued.is_some(), "the endpoint rotated the token");
    assert_eq!(
        persisted_refresh_token(&env.data_dir()).as_ref(),
        Some(&persisted),
        "the new refresh token never reached the data dir"
    );
    // From now on the token endpoint answers directly.
    write_oauth_config(
        &env,
        &env.gis.token_url(),
        &env.gis.seed_refresh_token(),
        "",
    );
    (env, persisted)
}

#[test]
fn a_kill_before_the_rotated_token_is_saved_recovers_when_the_endpoint_revokes_on_use() {
    let (env, persisted) = kill_between_the_answer_and_the_save(RefreshRevocation::OnUse);
    // The old refresh token stays valid until the lost access token is used, which it
    // never is: the next run presents it again and carries on.
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let attempts = env.gis.refresh_attempts();
    assert_eq!(refused(&attempts), vec![]);
    let twice = presented_twice(&attempts);
    assert_eq!(
        twice.len(),
        1,
        "only the lost refresh is repeated: {twice:?}"
    );
    assert_eq!(attempts.last().expect("attempt").presented, persisted);
    // And the token keeps working.
    env.gis.expire_access_tokens();
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(presented_twice(&env.gis.refresh_attempts()).len(), 1);
}

#[test]
fn a_kill_before_the_rotated_token_is_saved_exits_77_when_the_endpoint_revokes_at_once() {
    let (env, persisted) = kill_between_the_answer_and_the_save(RefreshRevocation::Immediate);
    // No client can recover a token the endpoint revoked at once and whose successor was
    // lost with the process: the run says so, and what to do.
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 77, "{}", stderr(&out));
    let message = stderr(&out);
    for fragment in [
        "invalid_grant",
        "rotated refresh token stored in data_dir",
        "set it as gis.oauth.refresh_token",
    ] {
        assert!(message.contains(fragment), "{fragment:?} in {message}");
    }
    assert!(!message.contains(&persisted), "no token in the message");
    let attempts = env.gis.refresh_attempts();
    let refusals = refused(&attempts);
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0].1, "invalid_grant");
    assert_eq!(attempts[refusals[0].0].presented, persisted);
    // The operator bootstraps a new refresh token: the new seed wins over the stored token.
    let seed = env.gis.bootstrap_refresh_token();
    write_oauth_config(&env, &env.gis.token_url(), &seed, "");
    let out = env.run("run", &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn a_kill_after_the_rotated_token_is_saved_ends_with_a_working_token() {
    for revocation in [RefreshRevocation::Immediate, RefreshRevocation::OnUse] {
        let env = oauth_env(FakeGisOptions {
            people: 20,
            refresh_revocation: revocation,
            ..FakeGisOptions::default()
        });
        let out = env.run("run", &[]);
        assert_eq!(code(&out), 0, "{revocation:?}: {}", stderr(&out));
        let data = env.data_dir();
        let first = persisted_refresh_token(&data).expect("persisted");

        // The access token expired; every GIS request is slow, so the kill lands after the
        // rotated token is saved and before the new access token reaches GIS.
        env.gis.expire_access_tokens();
        env.gis.faults().set_plan(FaultPlan::seeded(2).rule(
            "POST /graphql",
            Trigger::Always,
            Fault::Latency(Duration::from_millis(1500)),
        ));
        let answered = env.gis.queries().len();
        let mut run = spawn(&env, &["run"], &[]);
        wait_until("the rotated token is saved", || {
            persisted_refresh_token(&data).as_ref() != Some(&first)
        });
        run.kill().expect("kill");
        run.wait().expect("reap");
        let statuses: Vec<u16> = env.gis.queries()[answered..]
            .iter()
            .map(|q| q.status)
            .collect();
        assert_eq!(
            statuses,
            vec![401],
            "{revocation:?}: killed before the new access token was used"
        );

        env.gis.faults().clear();
        let out = env.run("run", &[]);
        assert_eq!(code(&out), 0, "{revocation:?}: {}", stderr(&out));
        let attempts = env.gis.refresh_attempts();
        assert_eq!(
            presented_twice(&attempts),
            Vec::<String>::new(),
            "{revocation:?}"
        );
        assert_eq!(refused(&attempts), vec![], "{revocation:?}");
    }
}

/// A proxy in front of the token endpoint that, once armed, plays a process that refreshes
/// without taking the lock (an older ciosync): it rotates the refresh token the client
/// presents and persists the result, then passes the client's request on, which the
/// endpoint refuses with `invalid_grant`.
struct RotateFirst {
    upstream: Upstream,
    gis_url: String,
    client: (String, String),
    data_dir: std::path::PathBuf,
    seed: String,
    /// Whether the lock-less process also persists its access token.
    keep_access: bool,
    armed: AtomicBool,
}

async fn rotate_first(
    State(proxy): State<Arc<RotateFirst>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if proxy.armed.swap(false, Ordering::SeqCst) {
        let form: HashMap<String, String> = axum::extract::Query::try_from_uri(
            &format!("/?{}", String::from_utf8_lossy(&body))
                .parse()
                .expect("a form"),
        )
        .expect("a form")
        .0;
        let granted: Value = reqwest::Client::new()
            .post(format!("{}/oauth/token", proxy.gis_url))
            .basic_auth(&proxy.client.0, Some(&proxy.client.1))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", form["refresh_token"].as_str()),
            ])
            .send()
            .await
            .expect("the token endpoint answers")
            .json()
            .await
            .expect("JSON");
        let field = |name: &str| granted[name].as_str().expect("granted").to_owned();
        let access = field("access_token");
        persist(
            &proxy.data_dir,
            &proxy.seed,
            &field("refresh_token"),
            proxy.keep_access.then_some(access.as_str()),
        );
    }
    json_reply(proxy.upstream.forward(method, &uri, &headers, body).await)
}

#[test]
fn an_invalid_grant_for_a_token_rotated_meanwhile_is_retried_with_the_persisted_one() {
    for keep_access in [false, true] {
        let env = oauth_env(FakeGisOptions {
            people: 5,
            ..FakeGisOptions::default()
        });
        let seed = env.gis.seed_refresh_token();
        let proxy = Arc::new(RotateFirst {
            upstream: Upstream::new(env.gis.url()),
            gis_url: env.gis.url(),
            client: (env.gis.oauth_client_id(), env.gis.oauth_client_secret()),
            data_dir: env.data_dir(),
            seed: seed.clone(),
            keep_access,
            armed: AtomicBool::new(true),
        });
        let server = start_proxy(rotate_first, Arc::clone(&proxy));
        write_oauth_config(&env, &format!("{}/oauth/token", server.url()), &seed, "");
        let out = env.run("check", &[]);
        assert_eq!(code(&out), 0, "keep_access {keep_access}: {}", stdout(&out));
        assert_eq!(stderr(&out), "");
        let attempts = env.gis.refresh_attempts();
        let outcomes: Vec<Option<String>> = attempts.iter().map(|a| a.error.clone()).collect();
        let rotated = attempts[0]
            .issued
            .clone()
            .expect("the lock-less process rotated");
        if keep_access {
            // The check took the token the other process persisted.
            assert_eq!(outcomes, vec![None, Some("invalid_grant".to_owned())]);
        } else {
            // The check refreshed once more, with the refresh token persisted meanwhile.
            assert_eq!(outcomes, vec![None, Some("invalid_grant".to_owned()), None]);
            assert_eq!(attempts[2].presented, rotated);
        }
    }
}

/// A token store over the data dir's real refresh lock that has nothing persisted: the seed
/// is all it knows.
struct SeedOnly {
    data_dir: std::path::PathBuf,
    seed: Secret,
}

impl TokenStore for SeedOnly {
    fn load(&self) -> Result<StoredTokens, String> {
        Ok(StoredTokens {
            refresh: self.seed.clone(),
            refresh_is_seed: true,
            access: None,
            access_expiring: true,
        })
    }

    fn save(&self, _: &Secret, _: &Secret, _: Option<u64>) -> Result<(), String> {
        Ok(())
    }

    fn try_lock(&self) -> Result<Option<RefreshLock>, String> {
        ciosync::lock::try_acquire_refresh(&self.data_dir)
            .map(|held| held.map(|lock| Box::new(lock) as RefreshLock))
            .map_err(|e| e.to_string())
    }
}

#[tokio::test]
async fn the_wait_for_another_refresh_is_bounded_by_how_long_a_refresh_can_take() {
    let env = oauth_env(FakeGisOptions {
        people: 5,
        ..FakeGisOptions::default()
    });
    let mut config = ciosync::config::load(&env.config_path(), &|_| None)
        .expect("config loads")
        .config;
    config.gis.request_timeout = Duration::from_millis(100);
    let data = env.data_dir();
    ciosync::data_dir::ensure(&data).expect("data dir");
    let _stuck = ciosync::lock::try_acquire_refresh(&data)
        .expect("lock")
        .expect("free");
    // A refresh takes at most 2 attempts of 100 ms each, each followed by at most 10 ms of
    // backoff: a waiter gives up after 220 ms.
    let policy = RetryPolicy {
        max_attempts: 2,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(10),
    };
    let store = SeedOnly {
        data_dir: data,
        seed: Secret::new(env.gis.seed_refresh_token()),
    };
    let client =
        GisClient::new(&config.gis, Some(Arc::new(store)), policy, None).expect("client builds");
    let started = Instant::now();
    let err = client
        .current_person()
        .await
        .expect_err("the lock stays held");
    let waited = started.elapsed();
    assert!(matches!(err, GisError::Unavailable(_)), "{err}");
    assert!(
        err.to_string()
            .contains("refreshing the GIS access token for over 220ms"),
        "{err}"
    );
    assert!(waited >= Duration::from_millis(220), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert!(env.gis.refresh_attempts().is_empty());
    assert!(env.gis.queries().is_empty());
}

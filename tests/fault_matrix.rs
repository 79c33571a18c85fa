//! Fault tolerance (issue 4 item 2): every fault the fakes can inject, on GIS and on
//! customer.io, against the built binary. For each fault the run must exit with the
//! documented code (a transient fault that clears: 0 and a silent stderr, retries being
//! info-level; a fault on every request: 69 with the state saved; refused credentials: 77;
//! a wrong-region redirect: 78), store no event twice and leave a state that loads; after
//! the fault is cleared a follow-up run exits 0 and customer.io holds exactly what a clean
//! run produces (same profiles, same events), and a further run sends nothing.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use ciosync::fake::cio::{FakeCio, FakeCioOptions};
use ciosync::fake::faults::{Fault, FaultPlan, Trigger};
use ciosync::fake::gis::FakeGisOptions;
use serde_json::Value;

use crate::common::{
    assert_same_content, code, content, stderr, stdout_json, with_batch_api,
    write_endpoint_requests, Content, Env,
};

/// Generated people (half of them in the configured LCs): several GIS pages per run.
const PEOPLE: usize = 120;

/// Beyond the test config's `request_timeout = "2s"`.
const HANG: Duration = Duration::from_secs(4);

const SUCCESS: i32 = 0;
const UNAVAILABLE: i32 = 69;
const NOPERM: i32 = 77;
const CONFIG: i32 = 78;

/// Which customer.io API the binary uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    V1,
    Batch,
}

/// How the binary authenticates to GIS.
#[derive(Debug, Clone, PartialEq, Eq)]
enum GisAuth {
    Static,
    /// OAuth refresh with the fake's client; `None` uses the fake's seed refresh token.
    OAuth(Option<String>),
}

fn gis_options(token_ttl_requests: Option<u64>) -> FakeGisOptions {
    FakeGisOptions {
        people: PEOPLE,
        token_ttl_requests,
        ..FakeGisOptions::default()
    }
}

/// The config text for `env` with this API and GIS auth, talking to `cio_url`.
fn config(env: &Env, api: Api, auth: &GisAuth, cio_url: &str) -> String {
    let auth = match auth {
        GisAuth::Static => env.static_token_line(),
        GisAuth::OAuth(None) => env.oauth_table(),
        GisAuth::OAuth(Some(refresh)) => env.oauth_table_with(refresh),
    };
    let text = env.config_text(&auth, "");
    let text = match api {
        Api::V1 => text,
        Api::Batch => with_batch_api(&text),
    };
    text.replace(
        &format!("track_url = \"{}\"", env.cio.url()),
        &format!("track_url = \"{cio_url}\""),
    )
}

fn configure(env: &Env, api: Api, auth: &GisAuth) {
    env.write_config_text(&config(env, api, auth, &env.cio.url()));
}

/// What a clean run produces for `api`, computed once per test binary.
fn reference(api: Api) -> &'static Content {
    static V1: OnceLock<Content> = OnceLock::new();
    static BATCH: OnceLock<Content> = OnceLock::new();
    let cell = match api {
        Api::V1 => &V1,
        Api::Batch => &BATCH,
    };
    cell.get_or_init(|| {
        let env = Env::with(gis_options(None), FakeCioOptions::default());
        configure(&env, api, &GisAuth::Static);
        let out = env.run("run", &[]);
        assert_eq!(code(&out), 0, "clean reference run: {}", stderr(&out));
        let content = content(&env.cio);
        assert!(!content.profiles.is_empty() && !content.events.is_empty());
        content
    })
}

/// No event id stored twice so far.
fn assert_no_event_twice(cio: &FakeCio, what: &str) {
    let events = cio.events();
    let ids: BTreeSet<Option<String>> = events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids.len(), events.len(), "{what}: an event was stored twice");
    assert!(
        ids.iter().all(Option::is_some),
        "{what}: every event has an id"
    );
}

/// `state.json` is absent or loads.
fn assert_state_loads(env: &Env, what: &str) -> Option<ciosync::state::State> {
    ciosync::state::load(&env.data_dir())
        .unwrap_or_else(|e| panic!("{what}: the state does not load: {e}"))
}

/// After the fault is gone: a follow-up run exits 0 silently, customer.io then holds what a
/// clean run produces, no event twice, and a further run sends nothing.
fn assert_recovers(env: &Env, api: Api, what: &str) {
    let out = env.run("run", &[]);
    assert_eq!(
        code(&out),
        SUCCESS,
        "{what}: follow-up run: {}",
        stderr(&out)
    );
    assert_eq!(stderr(&out), "", "{what}: the follow-up run is silent");
    let expected = reference(api);
    assert_same_content(
        &content(&env.cio),
        expected,
        &format!("{what}: same profiles and events as a clean run, each event once"),
    );
    assert_no_event_twice(&env.cio, what);
    let state = assert_state_loads(env, what).expect("state.json after a completed run");
    assert!(state.pending_people.is_empty(), "{what}: nothing pending");

    env.cio.clear_requests();
    let out = env.run("run", &[]);
    assert_eq!(code(&out), SUCCESS, "{what}: further run: {}", stderr(&out));
    assert_eq!(
        write_endpoint_requests(&env.cio),
        0,
        "{what}: a further run sends nothing"
    );
}

/// One row of the matrix: faults on both fakes and the exit code they must produce.
struct Case {
    name: &'static str,
    api: Api,
    auth: GisAuth,
    token_ttl_requests: Option<u64>,
    gis: FaultPlan,
    cio: FaultPlan,
    expect: i32,
    /// Run once cleanly before the faults are set, so the faulty run starts from a state.
    prior_run: bool,
}

impl Case {
    fn new(name: &'static str, expect: i32) -> Case {
        Case {
            name,
            api: Api::V1,
            auth: GisAuth::Static,
            token_ttl_requests: None,
            gis: FaultPlan::seeded(11),
            cio: FaultPlan::seeded(12),
            expect,
            prior_run: false,
        }
    }

    fn batch(mut self) -> Case {
        self.api = Api::Batch;
        self
    }

    fn gis(mut self, route: &str, trigger: Trigger, fault: Fault) -> Case {
        self.gis = self.gis.rule(route, trigger, fault);
        self
    }

    fn cio(mut self, route: &str, trigger: Trigger, fault: Fault) -> Case {
        self.cio = self.cio.rule(route, trigger, fault);
        self
    }

    fn after_a_clean_run(mut self) -> Case {
        self.prior_run = true;
        self
    }

    fn oauth(mut self, token_ttl_requests: Option<u64>) -> Case {
        self.auth = GisAuth::OAuth(None);
        self.token_ttl_requests = token_ttl_requests;
        self
    }
}

/// Runs one row and checks everything the matrix promises. Returns the env and the faulty
/// run's summary for row-specific checks.
fn run_case(case: Case) -> (Env, Value) {
    let what = case.name;
    let env = Env::with(
        gis_options(case.token_ttl_requests),
        FakeCioOptions::default(),
    );
    configure(&env, case.api, &case.auth);
    let prior_state = case.prior_run.then(|| {
        let out = env.run("run", &[]);
        assert_eq!(code(&out), SUCCESS, "{what}: clean run: {}", stderr(&out));
        env.cio.clear_requests();
        env.data_file("state.json")
            .expect("state.json after a clean run")
    });
    env.gis.faults().set_plan(case.gis.clone());
    env.cio.faults().set_plan(case.cio.clone());

    // After a clean run the state is fresh and a plain run would read incrementally (two
    // requests); `--full` makes the faulty run read everything, as the cases assume.
    let args: &[&str] = if case.prior_run {
        &["--json", "--full"]
    } else {
        &["--json"]
    };
    let out = env.run("run", args);
    let err = stderr(&out);
    assert_eq!(code(&out), case.expect, "{what}: exit code; stderr: {err}");
    if !case.gis.rules.is_empty() || !case.cio.rules.is_empty() {
        let fired = env.gis.faults().fired().len() + env.cio.faults().fired().len();
        assert!(fired > 0, "{what}: the injected fault fired");
    }
    let summary = stdout_json(&out);
    assert_eq!(
        summary["exit_code"],
        Value::from(case.expect),
        "{what}: {summary}"
    );
    if case.expect == SUCCESS {
        assert_eq!(err, "", "{what}: retries that succeed are info-level");
        let expected = reference(case.api);
        assert_same_content(
            &content(&env.cio),
            expected,
            &format!("{what}: same content as a clean run"),
        );
    } else {
        assert!(!err.is_empty(), "{what}: a failed run says why on stderr");
        let last_run = env
            .data_file("last_run.json")
            .expect("last_run.json written");
        let last_run: Value = serde_json::from_slice(&last_run).expect("last_run.json is JSON");
        assert_eq!(last_run["exit_code"], Value::from(case.expect), "{what}");
        if let Some(before) = &prior_state {
            assert_eq!(
                write_endpoint_requests(&env.cio),
                0,
                "{what}: nothing sent on a failed read"
            );
            assert!(
                env.data_file("state.json").as_ref() == Some(before),
                "{what}: the saved state is untouched by a run that confirmed nothing"
            );
        }
    }
    assert_no_event_twice(&env.cio, what);
    assert_state_loads(&env, what);

    env.gis.faults().clear();
    env.cio.faults().clear();
    assert_recovers(&env, case.api, what);
    (env, summary)
}

/// A transient fault: the run retried it and succeeded.
fn transient(case: Case) -> (Env, Value) {
    let (env, summary) = run_case(case);
    let retried = summary["retries"].as_u64().expect("retries") > 0
        || summary["token_refreshes"].as_u64().unwrap_or(0) > 0;
    assert!(retried, "the run retried: {summary}");
    (env, summary)
}

fn every(k: u64) -> Trigger {
    Trigger::Every(k)
}

fn nth(numbers: &[u64]) -> Trigger {
    Trigger::Nth(numbers.to_vec())
}

// ---- GIS, transient ----

#[test]
fn gis_latency() {
    run_case(Case::new("gis latency", SUCCESS).gis(
        "POST /graphql",
        Trigger::Random { probability: 0.5 },
        Fault::Latency(Duration::from_millis(150)),
    ));
}

#[test]
fn gis_429_without_retry_after() {
    transient(Case::new("gis 429", SUCCESS).gis(
        "POST /graphql",
        nth(&[1, 2, 4]),
        Fault::TooManyRequests { retry_after: None },
    ));
}

#[test]
fn gis_429_with_retry_after() {
    transient(Case::new("gis 429 Retry-After", SUCCESS).gis(
        "POST /graphql",
        nth(&[2]),
        Fault::TooManyRequests {
            retry_after: Some(1),
        },
    ));
}

#[test]
fn gis_5xx_before() {
    transient(Case::new("gis 5xx", SUCCESS).gis(
        "POST /graphql",
        nth(&[1, 3, 4]),
        Fault::ErrorBefore(503),
    ));
}

#[test]
fn gis_5xx_after() {
    transient(Case::new("gis 5xx after", SUCCESS).gis(
        "POST /graphql",
        nth(&[2, 5]),
        Fault::ErrorAfter(500),
    ));
}

#[test]
fn gis_hang_beyond_the_timeout() {
    transient(Case::new("gis hang", SUCCESS).gis("POST /graphql", nth(&[2]), Fault::Hang(HANG)));
}

#[test]
fn gis_html_error_bodies() {
    transient(Case::new("gis html", SUCCESS).gis("POST /graphql", nth(&[1, 3]), Fault::Html(502)));
}

#[test]
fn gis_dropped_connections() {
    transient(Case::new("gis drop", SUCCESS).gis("POST /graphql", nth(&[2, 3, 6]), Fault::Drop));
}

#[test]
fn gis_token_endpoint_transient_faults() {
    transient(
        Case::new("gis token endpoint 5xx and drop", SUCCESS)
            .oauth(Some(3))
            .gis("POST /oauth/token", nth(&[1]), Fault::ErrorBefore(503))
            .gis("POST /oauth/token", nth(&[3]), Fault::Drop)
            .gis("POST /oauth/token", nth(&[4]), Fault::Html(502)),
    );
}

// ---- GIS, on every request ----

#[test]
fn gis_5xx_on_every_request_exits_69() {
    run_case(
        Case::new("gis 5xx always", UNAVAILABLE)
            .after_a_clean_run()
            .gis("POST /graphql", Trigger::Always, Fault::ErrorBefore(503)),
    );
}

#[test]
fn gis_failing_for_good_mid_read_exits_69_and_sends_nothing() {
    // The first pages answer, every later one fails: a partial read must never be planned
    // (it would look like people left the LCs).
    run_case(
        Case::new("gis 5xx from the 3rd request on", UNAVAILABLE)
            .after_a_clean_run()
            .gis(
                "POST /graphql",
                Trigger::Range {
                    from: 3,
                    to: u64::MAX,
                },
                Fault::ErrorBefore(502),
            ),
    );
}

#[test]
fn gis_hang_on_every_request_exits_69() {
    run_case(
        Case::new("gis hang always", UNAVAILABLE)
            .after_a_clean_run()
            .gis("POST /graphql", Trigger::Always, Fault::Hang(HANG)),
    );
}

#[test]
fn gis_html_on_every_request_exits_69() {
    run_case(
        Case::new("gis html always", UNAVAILABLE)
            .after_a_clean_run()
            .gis("POST /graphql", Trigger::Always, Fault::Html(200)),
    );
}

// ---- customer.io v1, transient ----

#[test]
fn cio_latency() {
    run_case(Case::new("cio latency", SUCCESS).cio(
        "*",
        Trigger::Random { probability: 0.5 },
        Fault::Latency(Duration::from_millis(30)),
    ));
}

#[test]
fn cio_429_without_retry_after() {
    transient(Case::new("cio 429", SUCCESS).cio(
        "PUT /api/v1/customers",
        every(5),
        Fault::TooManyRequests { retry_after: None },
    ));
}

#[test]
fn cio_429_with_retry_after() {
    transient(Case::new("cio 429 Retry-After", SUCCESS).cio(
        "POST /api/v1/customers",
        nth(&[3, 20]),
        Fault::TooManyRequests {
            retry_after: Some(1),
        },
    ));
}

#[test]
fn cio_5xx_before() {
    transient(
        Case::new("cio 5xx", SUCCESS)
            .cio(
                "GET /api/v1/accounts/region",
                nth(&[1]),
                Fault::ErrorBefore(500),
            )
            .cio("POST /api/v1/customers", every(4), Fault::ErrorBefore(503))
            .cio("PUT /api/v1/customers", every(7), Fault::ErrorBefore(502)),
    );
}

#[test]
fn cio_5xx_after_applying() {
    let (env, _) = transient(
        Case::new("cio 5xx after", SUCCESS)
            .cio("POST /api/v1/customers", every(4), Fault::ErrorAfter(502))
            .cio("PUT /api/v1/customers", every(6), Fault::ErrorAfter(500)),
    );
    assert!(
        env.cio.duplicate_events() > 0,
        "an event applied before its 5xx was resent and discarded by id"
    );
}

#[test]
fn cio_hang_beyond_the_timeout() {
    transient(Case::new("cio hang", SUCCESS).cio(
        "POST /api/v1/customers",
        nth(&[2]),
        Fault::Hang(HANG),
    ));
}

#[test]
fn cio_html_error_bodies() {
    transient(Case::new("cio html", SUCCESS).cio("*", every(6), Fault::Html(503)));
}

#[test]
fn cio_dropped_connections() {
    transient(Case::new("cio drop", SUCCESS).cio("*", every(5), Fault::Drop));
}

// ---- customer.io v2 batch, transient ----

#[test]
fn batch_latency_429_and_html() {
    transient(
        Case::new("batch 429 and html", SUCCESS)
            .batch()
            .cio(
                "POST /api/v2/batch",
                nth(&[1]),
                Fault::TooManyRequests {
                    retry_after: Some(1),
                },
            )
            .cio(
                "POST /api/v2/batch",
                nth(&[2]),
                Fault::TooManyRequests { retry_after: None },
            )
            .cio("POST /api/v2/batch", nth(&[3]), Fault::Html(502))
            .cio("*", every(2), Fault::Latency(Duration::from_millis(100))),
    );
}

#[test]
fn batch_5xx_before_and_after_applying() {
    let (env, _) = transient(
        Case::new("batch 5xx", SUCCESS)
            .batch()
            .cio("POST /api/v2/batch", nth(&[1]), Fault::ErrorBefore(503))
            // Request 2 is the identify batch's retry; 3 and 4 carry events.
            .cio("POST /api/v2/batch", nth(&[3, 4]), Fault::ErrorAfter(500)),
    );
    assert!(
        env.cio.duplicate_events() > 0,
        "events of a batch applied before its 5xx were resent and discarded by id"
    );
}

#[test]
fn batch_hang_and_drop() {
    transient(
        Case::new("batch hang and drop", SUCCESS)
            .batch()
            .cio("POST /api/v2/batch", nth(&[1]), Fault::Drop)
            .cio("POST /api/v2/batch", nth(&[3]), Fault::Hang(HANG)),
    );
}

// ---- customer.io, on every request ----

#[test]
fn cio_5xx_after_applying_on_every_event_exits_69_with_the_state_saved() {
    let case = Case::new("cio events 5xx after, always", UNAVAILABLE).cio(
        "POST /api/v1/customers",
        Trigger::Always,
        Fault::ErrorAfter(500),
    );
    // Check the saved state before the follow-up run: run the faulty part by hand.
    let what = case.name;
    let env = Env::with(gis_options(None), FakeCioOptions::default());
    configure(&env, case.api, &case.auth);
    env.cio.faults().set_plan(case.cio.clone());
    let out = env.run("run", &[]);
    assert_eq!(code(&out), UNAVAILABLE, "{what}: {}", stderr(&out));
    assert_no_event_twice(&env.cio, what);
    let state = assert_state_loads(&env, what).expect("state saved");
    assert!(
        !state.people.is_empty(),
        "{what}: confirmed identifies are in the saved state"
    );
    assert!(
        state.applications.is_empty(),
        "{what}: no event was confirmed, so no application advanced"
    );
    assert!(
        !state.pending_people.is_empty(),
        "{what}: the unfinished people are pending"
    );
    env.cio.faults().clear();
    assert_recovers(&env, case.api, what);
}

#[test]
fn cio_429_on_every_identify_exits_69() {
    run_case(Case::new("cio 429 always", UNAVAILABLE).cio(
        "PUT /api/v1/customers",
        Trigger::Always,
        Fault::TooManyRequests {
            retry_after: Some(1),
        },
    ));
}

#[test]
fn batch_drop_on_every_request_exits_69() {
    run_case(Case::new("batch drop always", UNAVAILABLE).batch().cio(
        "POST /api/v2/batch",
        Trigger::Always,
        Fault::Drop,
    ));
}

// ---- GIS OAuth ----

#[test]
fn gis_token_expiry_mid_run_refreshes() {
    let (_, summary) = transient(Case::new("gis token expiry", SUCCESS).oauth(Some(2)));
    assert!(
        summary["token_refreshes"]
            .as_u64()
            .expect("token_refreshes")
            >= 2,
        "expired access tokens were refreshed mid-run: {summary}"
    );
}

#[test]
fn refresh_token_rotation_across_processes() {
    let what = "refresh token rotation";
    let env = Env::with(gis_options(Some(3)), FakeCioOptions::default());
    configure(&env, Api::V1, &GisAuth::OAuth(None));
    // Process 1 syncs half-way: customer.io fails for good, after GIS rotated tokens.
    env.cio.faults().set_plan(FaultPlan::seeded(3).rule(
        "POST /api/v1/customers",
        Trigger::Always,
        Fault::ErrorBefore(503),
    ));
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), UNAVAILABLE, "{what}: {}", stderr(&out));
    let refreshes = stdout_json(&out)["token_refreshes"].as_u64();
    assert!(refreshes.expect("count") >= 1);
    let stored = String::from_utf8(
        env.data_file("gis-oauth.json")
            .expect("rotated token persisted"),
    )
    .expect("utf-8");
    assert!(
        !stored.contains(&env.gis.seed_refresh_token()),
        "{what}: the seed is not kept"
    );

    // Process 2 and 3 start with every access token expired: only the persisted rotated
    // refresh token works (the seed in the config was revoked by its first use).
    env.cio.faults().clear();
    env.gis.expire_access_tokens();
    let out = env.run("run", &["--json"]);
    assert_eq!(code(&out), SUCCESS, "{what}: {}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let refreshes = stdout_json(&out)["token_refreshes"].as_u64();
    assert!(refreshes.expect("count") >= 1);
    env.gis.expire_access_tokens();
    assert_recovers(&env, Api::V1, what);
}

#[test]
fn a_refused_refresh_token_exits_77_and_nothing_is_sent() {
    let what = "refused refresh token";
    let env = Env::with(gis_options(None), FakeCioOptions::default());
    configure(
        &env,
        Api::V1,
        &GisAuth::OAuth(Some("revoked-or-mistyped".to_owned())),
    );
    let out = env.run("run", &[]);
    assert_eq!(code(&out), NOPERM, "{what}: {}", stderr(&out));
    assert!(
        !stderr(&out).contains("revoked-or-mistyped"),
        "{what}: no secret in errors"
    );
    assert_eq!(write_endpoint_requests(&env.cio), 0, "{what}: nothing sent");
    assert_state_loads(&env, what);
    // The operator bootstraps a valid refresh token.
    configure(&env, Api::V1, &GisAuth::OAuth(None));
    assert_recovers(&env, Api::V1, what);
}

#[test]
fn a_lost_token_response_exits_77_and_a_new_credential_recovers() {
    // The token endpoint rotates, then fails (5xx after applying): the new refresh token is
    // lost with the answer and the old one is revoked, so only the operator can fix it.
    let what = "lost token response";
    let env = Env::with(gis_options(None), FakeCioOptions::default());
    configure(&env, Api::V1, &GisAuth::OAuth(None));
    env.gis.faults().set_plan(FaultPlan::seeded(4).rule(
        "POST /oauth/token",
        nth(&[1]),
        Fault::ErrorAfter(500),
    ));
    let out = env.run("run", &[]);
    assert_eq!(code(&out), NOPERM, "{what}: {}", stderr(&out));
    assert!(
        stderr(&out).contains("refresh"),
        "{what}: says what to do: {}",
        stderr(&out)
    );
    assert_eq!(write_endpoint_requests(&env.cio), 0, "{what}: nothing sent");
    assert_state_loads(&env, what);
    env.gis.faults().clear();
    configure(&env, Api::V1, &GisAuth::Static);
    assert_recovers(&env, Api::V1, what);
}

#[test]
fn a_refused_cio_key_exits_77_and_nothing_is_sent() {
    let what = "refused customer.io key";
    let env = Env::with(gis_options(None), FakeCioOptions::default());
    let text = config(&env, Api::V1, &GisAuth::Static, &env.cio.url()).replace(
        &format!("api_key = \"{}\"", env.cio.api_key()),
        "api_key = \"wrong-key\"",
    );
    env.write_config_text(&text);
    let out = env.run("run", &[]);
    assert_eq!(code(&out), NOPERM, "{what}: {}", stderr(&out));
    assert!(
        !stderr(&out).contains("wrong-key"),
        "{what}: no secret in errors"
    );
    assert!(env.cio.profiles().is_empty() && env.cio.events().is_empty());
    assert_state_loads(&env, what);
    configure(&env, Api::V1, &GisAuth::Static);
    assert_recovers(&env, Api::V1, what);
}

// ---- wrong region ----

fn redirect_case(status: u16, api: Api) {
    let what = format!("redirect {status}");
    let env = Env::with(gis_options(None), FakeCioOptions::default());
    // The wrong-region host redirects everything to the right one, which must not be
    // followed (SPEC 4): nothing may reach either host's write endpoints.
    let wrong = FakeCio::start(FakeCioOptions {
        redirect: Some((status, env.cio.url())),
        ..FakeCioOptions::default()
    })
    .expect("fake customer.io starts");
    env.write_config_text(&config(&env, api, &GisAuth::Static, &wrong.url()));
    let out = env.run("run", &[]);
    assert_eq!(code(&out), CONFIG, "{what}: {}", stderr(&out));
    assert!(
        stderr(&out).contains("region"),
        "{what}: names the cause: {}",
        stderr(&out)
    );
    assert_eq!(
        write_endpoint_requests(&env.cio),
        0,
        "{what}: the redirect was not followed"
    );
    assert_eq!(
        write_endpoint_requests(&wrong),
        0,
        "{what}: nothing written to the wrong host"
    );
    assert!(
        !wrong.requests().is_empty(),
        "{what}: the wrong host was asked"
    );
    assert_state_loads(&env, what.as_str());
    // The operator fixes the region.
    configure(&env, api, &GisAuth::Static);
    assert_recovers(&env, api, &what);
}

#[test]
fn a_wrong_region_redirect_301_exits_78() {
    redirect_case(301, Api::V1);
}

#[test]
fn a_wrong_region_redirect_307_exits_78_batch() {
    redirect_case(307, Api::Batch);
}

//! The files in `deploy/` checked as far as this machine allows: the systemd units through
//! `systemd-analyze`, the Kubernetes manifest through a YAML parser and its init script by
//! running it for each credential mode, the alert rules through `promtool test rules`,
//! `install.sh` by running it into a temp root, the cron line's timeout backstop by running
//! it, and the Dockerfile statically (Docker cannot run here). A missing tool turns a check
//! into a printed note on a developer's machine, and into a failure when `CI` is set (CI
//! installs them all: `.ci/run`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{mode, skip_or_fail, tool_available, walk};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read_deploy(name: &str) -> String {
    fs::read_to_string(deploy_dir().join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

/// `key=value` lines of a unit file, by key (a key given twice keeps both values).
fn unit_keys(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        let (key, value) = line.split_once('=').expect("unit lines are key=value");
        keys.entry(key.to_owned())
            .or_default()
            .push(value.to_owned());
    }
    keys
}

fn one<'a>(keys: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    match keys.get(key).map(Vec::as_slice) {
        Some([value]) => value,
        other => panic!("{key}: expected one value, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// systemd

#[test]
fn service_unit_runs_once_as_ciosync_with_the_sandbox_the_tool_needs() {
    let keys = unit_keys(&read_deploy("ciosync.service"));
    assert_eq!(one(&keys, "Type"), "oneshot");
    assert_eq!(one(&keys, "ExecStart"), "/usr/local/bin/ciosync run");
    assert_eq!(one(&keys, "User"), "ciosync");
    assert!(
        one(&keys, "SuccessExitStatus")
            .split_whitespace()
            .any(|code| code == "75"),
        "a skipped tick or a time-budget stop is not a failure"
    );
    assert_eq!(one(&keys, "StateDirectory"), "ciosync");
    assert_eq!(one(&keys, "StateDirectoryMode"), "0700");
    assert_eq!(one(&keys, "ConfigurationDirectory"), "ciosync");
    assert_eq!(one(&keys, "UMask"), "0077");
    let timeout = humantime::parse_duration(one(&keys, "TimeoutStartSec"))
        .expect("TimeoutStartSec is a duration");
    assert!(
        timeout > std::time::Duration::from_secs(4 * 60),
        "TimeoutStartSec must exceed the 4-minute time budget"
    );
    for (key, value) in [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(one(&keys, key), value, "{key}");
    }
    assert!(keys["SystemCallFilter"].contains(&"@system-service".to_owned()));
}

#[test]
fn timer_fires_every_five_minutes_and_catches_up_after_downtime() {
    let keys = unit_keys(&read_deploy("ciosync.timer"));
    assert_eq!(one(&keys, "Persistent"), "true");
    assert_eq!(one(&keys, "Unit"), "ciosync.service");
    assert_eq!(one(&keys, "WantedBy"), "timers.target");
    let calendar = one(&keys, "OnCalendar");
    if !tool_available("systemd-analyze", "the OnCalendar check (textual only)") {
        assert_eq!(calendar, "*:0/5");
        return;
    }
    let out = Command::new("systemd-analyze")
        .args(["calendar", calendar])
        .output()
        .expect("run systemd-analyze calendar");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("Normalized form: *-*-* *:00/5:00"),
        "OnCalendar={calendar} is not every five minutes:\n{text}"
    );
}

/// Copies the units into a temp dir with `ExecStart` pointing at the built binary, so
/// `verify` also proves the command exists and is executable.
fn units_for_verify() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = read_deploy("ciosync.service").replace(
        "ExecStart=/usr/local/bin/ciosync run",
        &format!("ExecStart={} run", env!("CARGO_BIN_EXE_ciosync")),
    );
    assert!(service.contains(env!("CARGO_BIN_EXE_ciosync")));
    fs::write(dir.path().join("ciosync.service"), service).expect("write service");
    fs::write(
        dir.path().join("ciosync.timer"),
        read_deploy("ciosync.timer"),
    )
    .expect("write timer");
    dir
}

/// `systemd-analyze` with `args`, then the `units` as copied by [`units_for_verify`]; `None`,
/// with a note that `check` is skipped, where systemd-analyze is not installed.
fn analyze_units(args: &[&str], units: &[&str], check: &str) -> Option<Output> {
    if !tool_available("systemd-analyze", check) {
        return None;
    }
    let dir = units_for_verify();
    let out = Command::new("systemd-analyze")
        .args(args)
        .args(units.iter().map(|unit| dir.path().join(unit)))
        .output()
        .unwrap_or_else(|e| panic!("run systemd-analyze {}: {e}", args[0]));
    Some(out)
}

#[test]
fn units_pass_systemd_analyze_verify_without_warnings() {
    let Some(out) = analyze_units(
        &["verify"],
        &["ciosync.timer", "ciosync.service"],
        "unit verification",
    ) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verify failed:\n{stderr}");
    // verify exits 0 on unknown keys and bad values ("..., ignoring."); any line about our
    // units is a mistake. Lines about the host's own units are not ours to judge.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("ciosync."))
        .collect();
    assert!(
        ours.is_empty(),
        "systemd-analyze complained:\n{}",
        ours.join("\n")
    );
}

#[test]
fn service_sandbox_scores_ok_in_systemd_analyze_security() {
    let Some(out) = analyze_units(
        &["security", "--offline=true", "--no-pager"],
        &["ciosync.service"],
        "the security score",
    ) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        skip_or_fail(
            &format!(
                "this systemd-analyze cannot score unit files offline ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            "the security score",
        );
        return;
    }
    let score: f64 = stdout
        .lines()
        .find_map(|line| {
            line.split("Overall exposure level for ciosync.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{stdout}"));
    // 0 is a fully locked-down unit, 10 an unconfined one; a networked service cannot get
    // PrivateNetwork, so about 1.5 is as good as it gets.
    assert!(
        score <= 2.0,
        "exposure {score} is worse than 2.0:\n{stdout}"
    );
}

// ---------------------------------------------------------------------------------------
// cron

#[test]
fn cron_file_runs_every_five_minutes_as_ciosync() {
    let text = read_deploy("ciosync.cron");
    assert!(
        text.ends_with('\n'),
        "cron ignores a last line without a newline"
    );
    let mut jobs = Vec::new();
    let mut env = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line.split_whitespace().next().expect("non-empty line");
        if let Some((key, value)) = line.split_once('=').filter(|_| first.contains('=')) {
            env.insert(key.to_owned(), value.to_owned());
        } else {
            jobs.push(line.split_whitespace().collect::<Vec<_>>());
        }
    }
    assert_eq!(jobs.len(), 1, "exactly one job line: {jobs:?}");
    let job = &jobs[0];
    assert_eq!(job[..5], ["*/5", "*", "*", "*", "*"]);
    assert_eq!(job[5], "ciosync", "/etc/cron.d lines name the user");
    assert_eq!(
        job[6..11],
        [
            "timeout",
            "--kill-after=10s",
            "290s",
            "/usr/local/bin/ciosync",
            "run"
        ]
    );
    assert_eq!(env.get("SHELL").map(String::as_str), Some("/bin/sh"));
    assert!(
        env.contains_key("MAILTO"),
        "output (rare by design) is mailed"
    );
}

// ---------------------------------------------------------------------------------------
// Dockerfile

/// The instructions of a Dockerfile: continuation lines joined, comments and the parser
/// directive dropped, each as (INSTRUCTION, arguments).
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (instruction, args) = current.split_once(' ').unwrap_or((&current, ""));
        instructions.push((instruction.to_uppercase(), args.trim().to_owned()));
        current.clear();
    }
    assert!(current.is_empty(), "dangling continuation line");
    instructions
}

#[test]
fn dockerfile_is_multi_stage_and_runs_as_a_non_root_user() {
    let instructions = dockerfile_instructions(&read_deploy("Dockerfile"));
    let froms: Vec<&str> = instructions
        .iter()
        .filter(|(i, _)| i == "FROM")
        .map(|(_, args)| args.as_str())
        .collect();
    assert!(froms.len() >= 2, "multi-stage build: {froms:?}");
    let builder = froms[0].to_lowercase();
    assert!(
        builder.starts_with("rust:") && builder.ends_with(" as builder"),
        "{builder}"
    );
    let runtime = froms[froms.len() - 1];
    assert!(
        !runtime.starts_with("rust:"),
        "the runtime image has no toolchain"
    );
    // The binary links the builder's glibc: both stages must be the same Debian release.
    let codename = |image: &str| {
        ["bookworm", "trixie", "bullseye"]
            .into_iter()
            .find(|name| image.contains(name))
    };
    assert!(
        codename(froms[0]).is_some(),
        "pin the builder's Debian release: {}",
        froms[0]
    );
    assert_eq!(codename(froms[0]), codename(runtime));

    let build = instructions
        .iter()
        .find(|(i, args)| i == "RUN" && args.contains("cargo build"))
        .map(|(_, args)| args.as_str())
        .expect("the builder runs cargo build");
    assert!(
        build.contains("--release") && build.contains("--locked"),
        "{build}"
    );
    assert!(
        build.contains("--no-default-features"),
        "the image ships the lean build (SPEC 7): {build}"
    );

    let after_runtime_from = instructions
        .iter()
        .rposition(|(i, _)| i == "FROM")
        .expect("a FROM");
    let runtime_stage = &instructions[after_runtime_from..];
    assert!(
        runtime_stage
            .iter()
            .any(|(i, args)| i == "COPY" && args.starts_with("--from=builder")),
        "the runtime copies the binary from the builder"
    );
    let user = runtime_stage
        .iter()
        .rev()
        .find(|(i, _)| i == "USER")
        .map(|(_, args)| args.as_str())
        .expect("the runtime stage sets USER");
    let uid = user.split(':').next().expect("a user");
    assert!(uid != "root" && uid != "0", "USER {user} is root");
    assert!(
        uid.parse::<u32>().is_ok(),
        "USER {user} should be numeric so runAsNonRoot can verify it"
    );
    let last = |name: &str| {
        runtime_stage
            .iter()
            .rev()
            .find(|(i, _)| i == name)
            .map(|(_, args)| args.clone())
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let exec_form = |args: String| -> Vec<String> {
        serde_json::from_str(&args).expect("exec (JSON array) form")
    };
    assert_eq!(exec_form(last("ENTRYPOINT")), ["ciosync"]);
    assert_eq!(exec_form(last("CMD")), ["run"]);
    assert!(last("VOLUME").contains("/var/lib/ciosync"));
}

// ---------------------------------------------------------------------------------------
// Kubernetes

/// The YAML documents of `deploy/<relative>` as JSON, through python3's yaml module (the
/// same YAML 1.1 reading as Kubernetes' own parser, e.g. `0400` is octal), or `None` when
/// that is unavailable.
fn yaml_documents(relative: &str) -> Option<Vec<Value>> {
    let path = deploy_dir().join(relative);
    let script = "import json, sys, yaml\n\
                  print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))";
    let out = match Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .output()
    {
        Ok(out) => out,
        Err(error) => {
            skip_or_fail(
                &format!("python3 not available ({error})"),
                &format!("the {relative} checks"),
            );
            return None;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("No module named 'yaml'") {
        skip_or_fail(
            "python3 has no yaml module (PyYAML)",
            &format!("the {relative} checks"),
        );
        return None;
    }
    assert!(out.status.success(), "{relative} does not parse:\n{stderr}");
    Some(serde_json::from_slice(&out.stdout).expect("python printed JSON"))
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in the manifest");
    found[0]
}

fn str_of(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, got {value}"))
}

#[test]
fn cronjob_never_overlaps_keeps_its_data_and_reads_secrets_from_files() {
    let Some(docs) = yaml_documents("kubernetes/cronjob.yaml") else {
        return;
    };
    let cronjob = of_kind(&docs, "CronJob");
    let spec = &cronjob["spec"];
    assert_eq!(spec["schedule"], "*/5 * * * *");
    assert_eq!(spec["concurrencyPolicy"], "Forbid");
    assert!(spec["startingDeadlineSeconds"]
        .as_u64()
        .is_some_and(|s| s > 0));
    assert!(spec["successfulJobsHistoryLimit"].is_u64());
    let job = &spec["jobTemplate"]["spec"];
    assert_eq!(job["backoffLimit"], 0);
    let deadline = job["activeDeadlineSeconds"].as_u64().expect("a deadline");
    assert!(
        (240..300).contains(&deadline),
        "longer than the time budget, shorter than the schedule: {deadline}"
    );
    let pod = &job["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let uid = pod["securityContext"]["runAsUser"]
        .as_u64()
        .expect("runAsUser");
    let dockerfile_user = dockerfile_instructions(&read_deploy("Dockerfile"))
        .into_iter()
        .rev()
        .find(|(i, _)| i == "USER")
        .map(|(_, args)| args)
        .expect("USER");
    assert!(
        dockerfile_user.starts_with(&format!("{uid}:")),
        "the pod's uid {uid} matches the image's USER {dockerfile_user}"
    );

    let containers = pod["containers"].as_array().expect("containers");
    let main = containers
        .iter()
        .find(|c| c["name"] == "ciosync")
        .expect("the ciosync container");
    assert_eq!(main["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(main["securityContext"]["allowPrivilegeEscalation"], false);

    let volumes = pod["volumes"].as_array().expect("volumes");
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    let mount_of = |container: &Value, volume_name: &str| -> Option<String> {
        container["volumeMounts"]
            .as_array()?
            .iter()
            .find(|m| m["name"] == volume_name)
            .map(|m| str_of(&m["mountPath"]).to_owned())
    };

    // The config comes from the ConfigMap, mounted where CIOSYNC_CONFIG points.
    let configmap = of_kind(&docs, "ConfigMap");
    let config_volume = volumes
        .iter()
        .find(|v| v["configMap"]["name"] == configmap["metadata"]["name"])
        .expect("a volume from the ConfigMap");
    let config_dir = mount_of(main, str_of(&config_volume["name"])).expect("config mounted");
    let config_env = main["env"]
        .as_array()
        .and_then(|env| env.iter().find(|e| e["name"] == "CIOSYNC_CONFIG"))
        .map(|e| str_of(&e["value"]).to_owned())
        .unwrap_or_else(|| "/etc/ciosync/config.toml".to_owned());
    assert_eq!(config_env, format!("{config_dir}/config.toml"));
    let config: toml::Table = toml::from_str(str_of(&configmap["data"]["config.toml"]))
        .expect("the ConfigMap's config.toml is TOML");

    // data_dir lives on the PersistentVolumeClaim.
    let pvc = of_kind(&docs, "PersistentVolumeClaim");
    let data_volume = volumes
        .iter()
        .find(|v| v["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"])
        .expect("a volume from the PVC");
    let data_mount = mount_of(main, str_of(&data_volume["name"])).expect("data mounted");
    assert_eq!(config["data_dir"].as_str(), Some(data_mount.as_str()));

    // Secrets: files referenced by *_file keys, under a mount the main container reads,
    // filled from the Secret (by the init container, which makes them owner-only).
    let secrets_volume = volume("secrets-in");
    assert!(secrets_volume["secret"]["secretName"].is_string());
    assert_eq!(secrets_volume["secret"]["defaultMode"], 0o400);
    let init = pod["initContainers"][0].clone();
    let secrets_in = mount_of(&init, "secrets-in").expect("init reads the Secret");
    let secrets_dir = mount_of(main, "secrets").expect("main reads the copied secrets");
    assert_eq!(
        mount_of(&init, "secrets").as_deref(),
        Some(secrets_dir.as_str())
    );
    assert_eq!(volume("secrets")["emptyDir"]["medium"], "Memory");
    let init_script = init["command"]
        .as_array()
        .expect("init command")
        .iter()
        .map(str_of)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(init_script.contains(&secrets_in) && init_script.contains("chmod 0400"));
    for (table, key) in [("gis", "access_token_file"), ("customerio", "api_key_file")] {
        let file = config[table][key]
            .as_str()
            .unwrap_or_else(|| panic!("{table}.{key} is set"));
        let name = file
            .strip_prefix(&format!("{secrets_dir}/"))
            .unwrap_or_else(|| panic!("{table}.{key} = {file} is not under {secrets_dir}"));
        assert!(
            init_script.contains(name),
            "the init container copies {name}"
        );
    }
    for inline in ["access_token", "api_key"] {
        assert!(
            config.values().all(|t| t.get(inline).is_none()),
            "no inline secret ({inline}) in a ConfigMap"
        );
    }
}

#[test]
fn alert_rules_are_complete_prometheus_rule_groups() {
    let Some(docs) = yaml_documents("prometheus/ciosync-alerts.yml") else {
        return;
    };
    assert_eq!(docs.len(), 1);
    let groups = docs[0]["groups"].as_array().expect("groups");
    let rules: Vec<&Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .collect();
    assert!(rules.len() >= 3);
    for rule in rules {
        let name = str_of(&rule["alert"]);
        assert!(!str_of(&rule["expr"]).is_empty(), "{name}: expr");
        humantime::parse_duration(str_of(&rule["for"]))
            .unwrap_or_else(|e| panic!("{name}: for: {e}"));
        assert!(rule["labels"]["severity"].is_string(), "{name}: severity");
        assert!(
            rule["annotations"]["summary"].is_string(),
            "{name}: summary"
        );
    }
}

// ---------------------------------------------------------------------------------------
// install.sh

#[test]
fn install_script_is_valid_posix_sh() {
    let out = Command::new("sh")
        .arg("-n")
        .arg(deploy_dir().join("install.sh"))
        .output()
        .expect("run sh -n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first_line = read_deploy("install.sh").lines().next().map(str::to_owned);
    assert_eq!(first_line.as_deref(), Some("#!/bin/sh"));
}

/// Runs `script` with `args` under `sh`, with a scrubbed DESTDIR.
fn run_install(script: &Path, args: &[&str], destdir: Option<&Path>) -> Output {
    let mut command = Command::new("sh");
    command.arg(script).args(args).env_remove("DESTDIR");
    if let Some(dir) = destdir {
        command.env("DESTDIR", dir);
    }
    command.output().expect("run install.sh")
}

fn assert_ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "install.sh failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

struct Staging {
    _dir: tempfile::TempDir,
    root: PathBuf,
    binary: PathBuf,
    example: PathBuf,
}

fn staging() -> Staging {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("root");
    fs::create_dir(&root).expect("root dir");
    let binary = dir.path().join("ciosync-build");
    fs::write(&binary, "#!/bin/sh\necho build 1\n").expect("fake binary");
    let example = dir.path().join("config.example.toml");
    fs::write(&example, "data_dir = \"/var/lib/ciosync\"\n").expect("example");
    Staging {
        _dir: dir,
        root,
        binary,
        example,
    }
}

#[test]
fn install_twice_with_cron_keeps_the_config_and_schedules_once_configured() {
    let s = staging();
    let script = deploy_dir().join("install.sh");
    let args = [
        "--cron",
        "--root",
        s.root.to_str().expect("utf-8 path"),
        "--binary",
        s.binary.to_str().expect("utf-8 path"),
        "--config-example",
        s.example.to_str().expect("utf-8 path"),
    ];

    let first = assert_ok(&run_install(&script, &args, None));
    let config = s.root.join("etc/ciosync/config.toml");
    assert_eq!(
        fs::read(&config).expect("config written"),
        fs::read(&s.example).expect("example")
    );
    assert_eq!(mode(&s.root.join("etc/ciosync")), 0o750);
    assert_eq!(mode(&config), 0o640);
    assert_eq!(mode(&s.root.join("var/lib/ciosync")), 0o700);
    let installed = s.root.join("usr/local/bin/ciosync");
    assert_eq!(mode(&installed), 0o755);
    assert_eq!(
        fs::read(&installed).expect("binary"),
        fs::read(&s.binary).expect("build")
    );
    assert!(
        !s.root.join("etc/cron.d/ciosync").exists(),
        "an unconfigured install is not scheduled"
    );
    assert!(
        first.contains("would create system user ciosync"),
        "{first}"
    );
    assert!(
        first.contains("would run: chown ciosync:ciosync"),
        "{first}"
    );

    // The operator edits the config and builds a new binary; the second run is an upgrade.
    fs::write(&config, "# edited by the operator\n").expect("edit config");
    fs::write(&s.binary, "#!/bin/sh\necho build 2\n").expect("new build");
    let second = assert_ok(&run_install(&script, &args, None));
    assert_eq!(
        fs::read_to_string(&config).expect("config"),
        "# edited by the operator\n",
        "the config is never overwritten"
    );
    assert!(second.contains("kept existing"), "{second}");
    assert_eq!(
        fs::read(&installed).expect("binary"),
        fs::read(&s.binary).expect("build")
    );
    let cron = s.root.join("etc/cron.d/ciosync");
    assert_eq!(
        fs::read_to_string(&cron).expect("cron file"),
        read_deploy("ciosync.cron")
    );
    assert_eq!(mode(&cron), 0o644);
    assert!(
        !s.root.join("etc/systemd").exists(),
        "cron mode installs no units"
    );
    let leftovers: Vec<_> = walk(&s.root)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".new."))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn install_with_systemd_into_destdir_installs_units_and_only_says_what_it_would_enable() {
    let s = staging();
    let script = deploy_dir().join("install.sh");
    let args = [
        "--systemd",
        "--enable",
        "--binary",
        s.binary.to_str().expect("utf-8 path"),
        "--config-example",
        s.example.to_str().expect("utf-8 path"),
    ];
    let stdout = assert_ok(&run_install(&script, &args, Some(&s.root)));
    for unit in ["ciosync.service", "ciosync.timer"] {
        let installed = s.root.join("etc/systemd/system").join(unit);
        assert_eq!(
            fs::read_to_string(&installed).expect("unit"),
            read_deploy(unit)
        );
        assert_eq!(mode(&installed), 0o644);
    }
    assert!(
        stdout.contains("would run: systemctl daemon-reload"),
        "{stdout}"
    );
    assert!(
        stdout.contains("would run: systemctl enable --now ciosync.timer"),
        "{stdout}"
    );
    assert!(!s.root.join("etc/cron.d").exists());
}

#[test]
fn install_finds_the_binary_and_example_relative_to_itself() {
    // A copy of the repository layout: deploy/, config.example.toml, target/release/.
    let s = staging();
    let repo = s.root.parent().expect("parent").join("repo");
    fs::create_dir_all(repo.join("deploy")).expect("deploy dir");
    fs::create_dir_all(repo.join("target/release")).expect("target dir");
    for file in [
        "install.sh",
        "ciosync.service",
        "ciosync.timer",
        "ciosync.cron",
    ] {
        fs::copy(deploy_dir().join(file), repo.join("deploy").join(file)).expect("copy");
    }
    fs::copy(&s.example, repo.join("config.example.toml")).expect("example");
    fs::copy(&s.binary, repo.join("target/release/ciosync")).expect("binary");

    let script = repo.join("deploy/install.sh");
    let root = s.root.to_str().expect("utf-8 path");
    assert_ok(&run_install(&script, &["--cron", "--root", root], None));
    assert_eq!(
        fs::read(s.root.join("etc/ciosync/config.toml")).expect("config"),
        fs::read(&s.example).expect("example")
    );

    // Without a build, it says how to make one instead of installing nothing quietly.
    fs::remove_file(repo.join("target/release/ciosync")).expect("remove build");
    let out = run_install(&script, &["--cron", "--root", root], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cargo build --release"));
}

#[test]
fn install_rejects_unknown_arguments_and_missing_roots() {
    let script = deploy_dir().join("install.sh");
    let out = run_install(&script, &["--bogus"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument: --bogus"));
    let out = run_install(&script, &["--root", "/nonexistent/ciosync-root"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such directory"));
}

#[test]
fn install_uses_the_repositorys_config_example() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    assert!(
        example.is_file(),
        "install.sh copies config.example.toml from the repository root, and there is none"
    );
    let s = staging();
    let script = deploy_dir().join("install.sh");
    let args = [
        "--cron",
        "--root",
        s.root.to_str().expect("utf-8 path"),
        "--binary",
        s.binary.to_str().expect("utf-8 path"),
    ];
    assert_ok(&run_install(&script, &args, None));
    assert_eq!(
        fs::read(s.root.join("etc/ciosync/config.toml")).expect("config"),
        fs::read(&example).expect("example")
    );
}

// ---------------------------------------------------------------------------------------
// The cron line's timeout backstop, run for real with a stand-in for ciosync

/// The cron file's command (after the schedule and the user), for `sh -c`.
fn cron_command() -> String {
    let text = read_deploy("ciosync.cron");
    let line = text
        .lines()
        .find(|line| line.starts_with("*/5"))
        .expect("the job line");
    line.split_whitespace()
        .skip(6)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn cron_backstop_stops_a_hung_run_before_the_next_tick_and_mails_why() {
    let command = cron_command();
    // Longer than the time budget (4 min), shorter than the schedule (5 min).
    let limit = command
        .split_whitespace()
        .nth(2)
        .and_then(|d| humantime::parse_duration(d).ok())
        .expect("timeout's duration");
    assert!(
        limit > Duration::from_secs(240) && limit < Duration::from_secs(300),
        "{limit:?}"
    );
    let with = |stand_in: &str| {
        command
            .replace("/usr/local/bin/ciosync run", stand_in)
            .replace("290s", "1s")
    };
    assert_ne!(with("X"), command, "the stand-in replaced the command");

    let started = Instant::now();
    let hung = Command::new("sh")
        .args(["-c", &with("sleep 30")])
        .output()
        .expect("run the cron line");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "timeout stopped it"
    );
    let mail = String::from_utf8_lossy(&hung.stdout);
    assert!(
        mail.contains("stopped by timeout"),
        "cron mails why: {mail:?}"
    );

    // Any other ending prints nothing (ciosync itself prints what is worth a mail).
    for stand_in in ["true", "sh -c 'exit 75'", "sh -c 'exit 69'"] {
        let out = Command::new("sh")
            .args(["-c", &with(stand_in)])
            .output()
            .expect("run the cron line");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{stand_in}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{stand_in}");
    }
}

// ---------------------------------------------------------------------------------------
// Kubernetes: the init container's script, run for each credential mode

/// The init container's script and the ConfigMap's config.toml.
fn cronjob_script_and_config() -> Option<(String, String)> {
    let docs = yaml_documents("kubernetes/cronjob.yaml")?;
    let pod = &of_kind(&docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let command = pod["initContainers"][0]["command"]
        .as_array()
        .expect("init command");
    assert_eq!(
        command.iter().take(2).map(str_of).collect::<Vec<_>>(),
        ["/bin/sh", "-ec"],
        "the script runs under sh -e, so any failing step stops the pod"
    );
    let script = str_of(&command[2]).to_owned();
    let config = str_of(&of_kind(&docs, "ConfigMap")["data"]["config.toml"]).to_owned();
    Some((script, config))
}

/// A Secret volume as Kubernetes lays it out: each key a symlink into `..data`, itself a
/// symlink to a timestamped directory holding the files.
fn secret_volume(dir: &Path, keys: &[&str]) -> PathBuf {
    let volume = dir.join("secrets-in");
    let payload = volume.join("..2026_12_01_00_00_00.000000001");
    fs::create_dir_all(&payload).expect("payload dir");
    for key in keys {
        fs::write(payload.join(key), format!("value-of-{key}\n")).expect("secret file");
        std::os::unix::fs::symlink(format!("..data/{key}"), volume.join(key)).expect("key link");
    }
    std::os::unix::fs::symlink(payload.file_name().expect("name"), volume.join("..data"))
        .expect("..data link");
    volume
}

fn run_init_script(script: &str, secrets_in: &Path, secrets_out: &Path) -> Output {
    Command::new("sh")
        .args(["-ec", script])
        .env("SECRETS_IN", secrets_in)
        .env("SECRETS_OUT", secrets_out)
        .output()
        .expect("run the init script")
}

/// The ConfigMap's config switched to `mode` ("static" or "oauth", as the comments tell an
/// operator to do), with the secrets directory moved to `secrets_dir`.
fn config_for_mode(config: &str, mode: &str, secrets_dir: &Path) -> String {
    let mut lines = Vec::new();
    let mut in_oauth = false;
    for line in config.lines() {
        if line.trim_start().starts_with("# [gis.oauth]") {
            in_oauth = true;
        } else if line.trim().is_empty() {
            in_oauth = false;
        }
        match mode {
            "oauth" if line.starts_with("access_token_file") => continue,
            "oauth" if in_oauth => lines.push(line.trim_start_matches("# ").to_owned()),
            _ => lines.push(line.to_owned()),
        }
    }
    let text = lines.join("\n") + "\n";
    text.replace("/run/ciosync/secrets", &secrets_dir.display().to_string())
        .replace(
            "/var/lib/ciosync",
            &secrets_dir.join("data").display().to_string(),
        )
}

#[test]
fn init_script_copies_every_credential_mode_owner_only_and_refuses_incomplete_secrets() {
    let Some((script, config)) = cronjob_script_and_config() else {
        return;
    };
    for (credentials, keys) in [
        ("static", &["gis-token", "cio-api-key"][..]),
        ("oauth", &["client-secret", "refresh-token", "cio-api-key"]),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let secrets_in = secret_volume(dir.path(), keys);
        let secrets_out = dir.path().join("secrets");
        fs::create_dir(&secrets_out).expect("the emptyDir");
        let out = run_init_script(&script, &secrets_in, &secrets_out);
        assert!(
            out.status.success(),
            "{credentials}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut copied: Vec<String> = fs::read_dir(&secrets_out)
            .expect("list")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        copied.sort();
        let mut expected: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        expected.sort();
        assert_eq!(copied, expected, "{credentials}: only the keys, not ..data");
        for key in keys {
            let file = secrets_out.join(key);
            assert!(!file.is_symlink(), "{credentials}: {key} is a copy");
            assert_eq!(mode(&file), 0o400, "{credentials}: {key}");
            assert_eq!(
                fs::read_to_string(&file).expect("copied"),
                format!("value-of-{key}\n")
            );
        }

        // The ConfigMap's config, in this mode, loads with these files and warns of nothing.
        let config_path = dir.path().join("config.toml");
        fs::write(
            &config_path,
            config_for_mode(&config, credentials, &secrets_out),
        )
        .expect("config");
        let loaded = ciosync::config::load(&config_path, &|_| None)
            .unwrap_or_else(|e| panic!("{credentials}: the ConfigMap's config does not load: {e}"));
        assert!(
            loaded.warnings.is_empty(),
            "{credentials}: {:?}",
            loaded.warnings
        );
        let is_oauth = matches!(loaded.config.gis.auth, ciosync::config::GisAuth::OAuth(_));
        assert_eq!(is_oauth, credentials == "oauth", "{credentials}");
        assert_eq!(
            loaded.config.customerio.api_key.expose(),
            "value-of-cio-api-key"
        );
    }

    for (keys, complaint) in [
        (&["gis-token"][..], "no cio-api-key"),
        (&["cio-api-key"], "needs gis-token"),
        (
            &["cio-api-key", "refresh-token"],
            "client-secret and refresh-token",
        ),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let secrets_in = secret_volume(dir.path(), keys);
        let secrets_out = dir.path().join("secrets");
        fs::create_dir(&secrets_out).expect("the emptyDir");
        let out = run_init_script(&script, &secrets_in, &secrets_out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{keys:?} must stop the pod");
        assert!(stderr.contains(complaint), "{keys:?}: {stderr}");
        assert_eq!(fs::read_dir(&secrets_out).expect("list").count(), 0);
    }
}

// ---------------------------------------------------------------------------------------
// Kubernetes memory, sized from the benchmark

/// MiB in a Kubernetes quantity (`512Mi`, `10Gi`).
fn mebibytes(quantity: &str) -> f64 {
    let quantity = quantity.trim();
    if let Some(gi) = quantity.strip_suffix("Gi") {
        gi.parse::<f64>().expect("a number") * 1024.0
    } else if let Some(mi) = quantity.strip_suffix("Mi") {
        mi.parse::<f64>().expect("a number")
    } else {
        panic!("write memory as Mi or Gi: {quantity}")
    }
}

fn number(cell: &str) -> f64 {
    let digits: String = cell
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {cell}"))
}

/// The rows of the first Markdown table after `heading` in `text`, as cells.
fn table_after(text: &str, heading: &str) -> Vec<Vec<String>> {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"));
    text[start..]
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn memory_table_gives_headroom_over_the_benchmark_and_the_manifest_fits_50k_people() {
    let guide = read_deploy("README.md");
    // | people in scope | measured peak (MiB) | memory to give |
    let rows = table_after(&guide, "## Memory");
    assert!(rows.len() >= 3, "{rows:?}");
    let mut give_for_50k = None;
    for row in &rows {
        let (people, peak, give) = (number(&row[0]), number(&row[1]), mebibytes(&row[2]));
        assert!(
            give >= 1.5 * peak,
            "{} people: {give} MiB is less than 1.5 x the {peak} MiB peak",
            row[0]
        );
        if people == 50_000.0 {
            give_for_50k = Some(give);
        }
        // The README's benchmark must not have measured more than this table assumes.
        let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .expect("README");
        for bench in table_after(&readme, "## Performance") {
            let bench_people = number(&bench[0]);
            if bench[2] == "first sync" && (bench_people - people).abs() / people < 0.05 {
                assert!(
                    number(&bench[5]) <= peak,
                    "README measures {} MiB for {} people; deploy/README.md assumes {peak}",
                    bench[5],
                    bench[0]
                );
            }
        }
    }
    let give_for_50k = give_for_50k.expect("a 50,000 row");

    let Some(docs) = yaml_documents("kubernetes/cronjob.yaml") else {
        return;
    };
    let pod = &of_kind(&docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let main = pod["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == "ciosync")
        .expect("the ciosync container");
    let limit = mebibytes(str_of(&main["resources"]["limits"]["memory"]));
    let request = mebibytes(str_of(&main["resources"]["requests"]["memory"]));
    assert!(
        limit >= give_for_50k,
        "limit {limit} MiB < {give_for_50k} MiB"
    );
    assert_eq!(request, limit, "requests equal limits for memory");
}

// ---------------------------------------------------------------------------------------
// Prometheus rules, unit-tested by promtool

#[test]
fn alert_rules_pass_their_promtool_unit_tests() {
    if !tool_available("promtool", "the alert rules' unit tests") {
        return;
    }
    let dir = deploy_dir().join("prometheus");
    for args in [
        ["check", "rules", "ciosync-alerts.yml"],
        ["test", "rules", "ciosync-alerts.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rules = read_deploy("prometheus/ciosync-alerts.yml");
    assert!(rules.contains("absent(ciosync_last_run_exit_code)"));
    assert!(rules.contains("time() - ciosync_last_success_timestamp_seconds"));
}

// ---------------------------------------------------------------------------------------
// install.sh: man page and completions

#[test]
fn install_puts_the_man_page_and_completions_where_man_and_shells_look() {
    let s = staging();
    let script = deploy_dir().join("install.sh");
    let args = [
        "--cron",
        "--root",
        s.root.to_str().expect("utf-8 path"),
        "--binary",
        env!("CARGO_BIN_EXE_ciosync"),
        "--config-example",
        s.example.to_str().expect("utf-8 path"),
    ];
    let stdout = assert_ok(&run_install(&script, &args, None));
    let share = s.root.join("usr/local/share");
    let man = fs::read_to_string(share.join("man/man1/ciosync.1")).expect("man page");
    assert!(
        man.starts_with(".ie") || man.contains(".TH ciosync"),
        "{man}"
    );
    assert!(man.contains(".SH \"EXIT STATUS\""));
    for (path, marker) in [
        ("bash-completion/completions/ciosync", "_ciosync()"),
        ("zsh/site-functions/_ciosync", "#compdef ciosync"),
        (
            "fish/vendor_completions.d/ciosync.fish",
            "complete -c ciosync",
        ),
    ] {
        let file = share.join(path);
        let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("{path}: {e}\n{stdout}"));
        assert!(text.contains(marker), "{path}");
        assert_eq!(mode(&file), 0o644, "{path}");
    }

    // A binary that cannot run here (another machine's build) still installs, with a note.
    let t = staging();
    let args = [
        "--cron",
        "--root",
        t.root.to_str().expect("utf-8 path"),
        "--binary",
        t.binary.to_str().expect("utf-8 path"),
        "--config-example",
        t.example.to_str().expect("utf-8 path"),
    ];
    fs::write(&t.binary, [0x7f, b'E', b'L', b'F', 0, 1, 2]).expect("a foreign binary");
    let stdout = assert_ok(&run_install(&script, &args, None));
    assert!(stdout.contains("note: could not run"), "{stdout}");
    assert!(!t.root.join("usr/local/share/man/man1/ciosync.1").exists());
    let leftovers: Vec<_> = walk(&t.root)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".new."))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

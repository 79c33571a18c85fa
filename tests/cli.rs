//! The command line as an operator meets it, through the built binary, in either build:
//! `--version` naming the build, `-q`/`-v` on every command, `NO_COLOR` in the logs on a
//! terminal, the exit codes in `--help` and the man page, log-file retention, and the lean
//! build's answer to `demo`. None of it needs the fakes.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::*;

/// A config that loads without contacting anything, holds an inline secret and is readable
/// by others, so every command that loads it logs one warning.
fn config_with_a_warning(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        r#"data_dir = "{}"

[gis]
home_lcs = [1337]
access_token = "inline-token"

[customerio]
site_id = "site"
api_key = "inline-key"
{extra}
"#,
        dir.join("data").display()
    );
    std::fs::write(&path, text).expect("write config");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    path
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn version_names_the_build_features_and_tls_roots() {
    let out = ciosync(&["--version"], &[]);
    assert_eq!(code(&out), 0);
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("ciosync {}\n", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let features = if cfg!(feature = "fake") {
        "features: fake"
    } else {
        "features: none (lean production build)"
    };
    assert!(text.contains(features), "{text}");
    assert!(
        text.contains("TLS roots: built-in webpki roots, the system store"),
        "{text}"
    );
}

#[test]
fn quiet_silences_warnings_and_verbose_works_on_every_config_command() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with_a_warning(dir.path(), "");
    let warning = "holds inline secrets";

    let plain = ciosync(&["status", "--config", utf8(&config)], &[]);
    assert_eq!(code(&plain), 0, "{}", stderr(&plain));
    assert!(stderr(&plain).contains(warning), "{}", stderr(&plain));

    for flags in [&["-q"][..], &["--quiet"]] {
        let mut before = flags.to_vec();
        before.extend(["status", "--config", utf8(&config)]);
        let mut after = vec!["status", "--config", utf8(&config)];
        after.extend_from_slice(flags);
        for args in [before, after] {
            let out = ciosync(&args, &[]);
            assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
            assert_eq!(stderr(&out), "", "{args:?} prints no warning");
            assert!(
                stdout(&out).contains("data dir:"),
                "-q keeps the command's own output"
            );
        }
    }
    let verbose = ciosync(&["status", "-vv", "--config", utf8(&config)], &[]);
    assert_eq!(code(&verbose), 0);
    assert!(stderr(&verbose).contains(warning));
    // CIOSYNC_LOG still wins over the flags.
    let overridden = ciosync(
        &["status", "-q", "--config", utf8(&config)],
        &[("CIOSYNC_LOG", "warn")],
    );
    assert!(stderr(&overridden).contains(warning));
    let conflict = ciosync(&["status", "-q", "-v", "--config", utf8(&config)], &[]);
    assert_eq!(code(&conflict), 2);
}

/// Runs `ciosync args` on a terminal (util-linux `script` gives it a pseudo-terminal) with
/// `env`, returning what the terminal showed; `None` where `script` is missing (outside CI).
fn on_a_terminal(args: &[&str], env: &[(&str, &str)]) -> Option<String> {
    if !tool_available("script", "the terminal colour checks") {
        return None;
    }
    let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_ciosync"))
        .chain(args.iter().copied())
        .map(|arg| format!("'{}'", arg.replace('\'', r"'\''")))
        .collect();
    let mut command = scrubbed("script");
    command.args(["-q", "-e", "-c", &quoted.join(" "), "/dev/null"]);
    for (key, value) in env {
        command.env(key, value);
    }
    let out: Output = command.output().expect("run script");
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn logs_are_coloured_on_a_terminal_unless_no_color_is_set() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with_a_warning(dir.path(), "");
    let args = ["status", "--config", utf8(&config)];
    let Some(coloured) = on_a_terminal(&args, &[("TERM", "xterm")]) else {
        return;
    };
    assert!(coloured.contains("holds inline secrets"), "{coloured}");
    assert!(
        coloured.contains("\u{1b}["),
        "a terminal gets colour (else this test proves nothing): {coloured:?}"
    );
    // no-color.org: set to anything but the empty string turns colour off.
    for value in ["1", "0", "yes"] {
        let plain = on_a_terminal(&args, &[("TERM", "xterm"), ("NO_COLOR", value)])
            .expect("script was there a moment ago");
        assert!(plain.contains("holds inline secrets"), "{plain}");
        assert!(!plain.contains('\u{1b}'), "NO_COLOR={value}: {plain:?}");
    }
    let empty = on_a_terminal(&args, &[("TERM", "xterm"), ("NO_COLOR", "")])
        .expect("script was there a moment ago");
    assert!(
        empty.contains("\u{1b}["),
        "an empty NO_COLOR is unset: {empty:?}"
    );
    // Off a terminal (cron, a pipe) there is never colour.
    let piped = ciosync(&args, &[("TERM", "xterm")]);
    assert!(!stderr(&piped).contains('\u{1b}'));
}

#[test]
fn help_and_man_page_show_the_exit_codes() {
    let help = stdout(&ciosync(&["--help"], &[]));
    assert!(help.contains("Exit codes:"), "{help}");
    for code in ["0", "1", "2", "69", "74", "75", "77", "78"] {
        assert!(
            help.lines()
                .any(|line| line.trim_start().starts_with(&format!("{code}  "))),
            "--help lacks {code}"
        );
    }
    let short = stdout(&ciosync(&["-h"], &[]));
    assert!(short.contains("See --help for the exit codes."), "{short}");
    let man = stdout(&ciosync(&["man"], &[]));
    assert!(man.contains(".SH \"EXIT STATUS\""), "{man}");
    assert!(man.contains("\\fB75\\fR"), "{man}");
}

#[test]
fn log_files_older_than_keep_days_are_deleted_when_a_command_starts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("log dir");
    let today = chrono::Utc::now().date_naive();
    let day = |back: u64| format!("ciosync.log.{}", today - chrono::Days::new(back));
    // keep_days = 3 keeps today, yesterday and the day before; a test that straddles
    // midnight UTC still finds yesterday's file inside the window.
    for name in [day(1), day(4), day(30), "ciosync.log.2001-01-01".to_owned()] {
        std::fs::write(logs.join(&name), "old\n").expect("seed a log file");
    }
    std::fs::write(logs.join("notes.txt"), "mine\n").expect("an operator's file");
    let config = config_with_a_warning(
        dir.path(),
        &format!("\n[log]\ndir = \"{}\"\nkeep_days = 3", logs.display()),
    );
    let out = ciosync(&["status", "--config", utf8(&config)], &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let mut left: Vec<String> = std::fs::read_dir(&logs)
        .expect("list logs")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .into_string()
                .expect("utf-8")
        })
        .collect();
    left.sort();
    assert!(left.contains(&day(1)), "yesterday is kept: {left:?}");
    assert!(left.contains(&"notes.txt".to_owned()), "{left:?}");
    for gone in [day(4), day(30), "ciosync.log.2001-01-01".to_owned()] {
        assert!(!left.contains(&gone), "{gone} should be deleted: {left:?}");
    }
    // This run's warning went to today's file (the appender names it by the UTC date).
    let todays = logs.join(format!("ciosync.log.{}", chrono::Utc::now().date_naive()));
    let written = std::fs::read_to_string(&todays).unwrap_or_default();
    assert!(
        written.contains("holds inline secrets"),
        "{left:?}: {written}"
    );
}

/// SPEC 7: the lean build answers `demo` with a clear message naming the feature.
#[cfg(not(feature = "fake"))]
#[test]
fn the_lean_build_says_demo_needs_the_fake_feature() {
    for args in [&["demo"][..], &["demo", "--serve"]] {
        let out = ciosync(args, &[]);
        assert_eq!(code(&out), 2, "{args:?}");
        let message = stderr(&out);
        assert!(message.contains("`fake`"), "{message}");
        assert!(message.contains("lean build"), "{message}");
        assert!(message.contains("cargo run --release -- demo"), "{message}");
        assert_eq!(stdout(&out), "");
    }
}

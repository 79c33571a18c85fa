//! External tools some tests need (systemd-analyze, python3 with PyYAML, script): where one
//! is missing, a developer's run prints a note and the check is skipped, but a run with
//! `CI` set fails instead. CI installs every tool (`.ci/run`), so a skip there could only
//! hide a broken file.

use std::process::Command;

/// Whether `CI` is set to anything but the empty string (CI services set `CI=true`).
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|value| !value.is_empty())
}

/// Skips (prints `note: ...; skipping CHECK`) where CI is not set, panics where it is.
///
/// # Panics
/// Always, when `CI` is set: a missing tool is a broken CI machine.
pub fn skip_or_fail(missing: &str, check: &str) {
    assert!(
        !in_ci(),
        "{missing}, and CI is set: `.ci/run` must install it ({check} cannot be skipped in CI)"
    );
    println!("note: {missing}; skipping {check}");
}

/// Whether `name` is on `PATH`; when it is not, [`skip_or_fail`].
pub fn tool_available(name: &str, check: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        skip_or_fail(&format!("{name} not found"), check);
    }
    found
}

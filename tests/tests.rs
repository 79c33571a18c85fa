//! The integration tests, built as one binary (as ripgrep does: `autotests = false` and a
//! single `[[test]]` in `Cargo.toml`), so the suite links once instead of once per file.
//! Each module is what used to be a test binary of its own, and filtering by its name runs
//! the same tests: `cargo test --test tests crash::` for the old `--test crash`.
//!
//! All modules share this process and run on parallel threads. A test must not change
//! process-wide state (the umask, environment variables, the current directory, rlimits,
//! signal handlers, a global tracing subscriber) or take a fixed port or file name: it does
//! that in a child process instead, as `security::run_with_umask_000` does for the umask.
//!
//! The modules that run on the built-in fakes exist only with the `fake` feature (on by
//! default); the lean build (`--no-default-features`, what deploy/ ships) runs the others
//! (SPEC 7).

mod common;

#[cfg(feature = "fake")]
mod bad_input;
#[cfg(feature = "fake")]
mod check_schema;
mod cli;
#[cfg(feature = "fake")]
mod commands;
#[cfg(feature = "fake")]
mod crash;
mod deploy;
#[cfg(feature = "fake")]
mod drift;
#[cfg(feature = "fake")]
mod dry_run;
#[cfg(feature = "fake")]
mod explain;
#[cfg(feature = "fake")]
mod fake_cio;
#[cfg(feature = "fake")]
mod fake_drift;
#[cfg(feature = "fake")]
mod fake_faults;
#[cfg(feature = "fake")]
mod fake_gis;
#[cfg(feature = "fake")]
mod fault_matrix;
#[cfg(feature = "fake")]
mod forget;
#[cfg(feature = "fake")]
mod incremental;
#[cfg(feature = "fake")]
mod init;
mod monitoring;
#[cfg(feature = "fake")]
mod oauth;
#[cfg(feature = "fake")]
mod run;
#[cfg(feature = "fake")]
mod safety;
#[cfg(feature = "fake")]
mod security;
mod tls;

/// With `autotests = false`, a file in `tests/` without its `mod` line above is never
/// built, so its tests would silently stop running.
#[test]
fn every_file_in_tests_is_a_module_of_this_binary() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let this = std::fs::read_to_string(dir.join("tests.rs")).expect("read tests.rs");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).expect("read tests/") {
        let path = entry.expect("entry").path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(module) = name.strip_suffix(".rs") else {
            continue;
        };
        if module == "tests" {
            continue;
        }
        files += 1;
        assert!(
            this.lines().any(|line| line == format!("mod {module};")),
            "tests/{name} is not a module of tests/tests.rs"
        );
    }
    assert!(files >= 13, "{files} test files found");
}

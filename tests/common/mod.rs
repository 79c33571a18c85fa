//! Helpers shared by the modules of the integration-test binary (`tests/tests.rs`). Each
//! file is one concern:
//!
//! - `env`: both fakes on loopback, a temp dir and a config file pointing at them;
//! - `binary`: running the built `ciosync` with a scrubbed environment, reading its output;
//! - `records`: GIS-shaped people and applications, and the profile they sync to;
//! - `cio`: what the fake customer.io holds, and how many requests of which kind it got;
//! - `proxy`: the forwarding step of the test proxies put in front of a fake;
//! - `http`: a test HTTP client and a recording loopback server;
//! - `fs`: private files, permission bits, directory walks;
//! - `tools`: external tools a test needs, skipped where missing except in CI.
//!
//! Everything is re-exported here, so a test module needs only `use crate::common::*`.
//! `env`, `cio`, `proxy` and `records` serve the tests that run on the built-in fakes, so
//! they exist only with the `fake` feature (the lean build has no fakes).

mod binary;
#[cfg(feature = "fake")]
mod cio;
#[cfg(feature = "fake")]
mod env;
mod fs;
mod http;
#[cfg(feature = "fake")]
mod proxy;
#[cfg(feature = "fake")]
mod records;
mod tools;

pub use binary::*;
#[cfg(feature = "fake")]
pub use cio::*;
#[cfg(feature = "fake")]
pub use env::*;
pub use fs::*;
pub use http::*;
#[cfg(feature = "fake")]
pub use proxy::*;
#[cfg(feature = "fake")]
pub use records::*;
pub use tools::*;

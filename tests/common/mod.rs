//! Helpers shared by the modules of the integration-test binary (`tests/tests.rs`). Each
//! file is one concern:
//!
//! - `env`: both fakes on loopback, a temp dir and a config file pointing at them;
//! - `binary`: running the built `ciosync` with a scrubbed environment, reading its output;
//! - `records`: GIS-shaped people and applications, and the profile they sync to;
//! - `cio`: what the fake customer.io holds, and how many requests of which kind it got;
//! - `proxy`: the forwarding step of the test proxies put in front of a fake;
//! - `http`: a test HTTP client and a recording loopback server;
//! - `fs`: private files, permission bits, directory walks.
//!
//! Everything is re-exported here, so a test module needs only `use crate::common::*`.

mod binary;
mod cio;
mod env;
mod fs;
mod http;
mod proxy;
mod records;

pub use binary::*;
pub use cio::*;
pub use env::*;
pub use fs::*;
pub use http::*;
pub use proxy::*;
pub use records::*;

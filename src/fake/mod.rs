//! The built-in fakes of GIS and customer.io (SPEC 7): real HTTP servers on loopback that
//! behave like the real services, for the tests, `ciosync demo` and the benchmark.
//!
//! Each fake runs on its own thread with its own tokio runtime, so synchronous tests,
//! async tests and the benchmark drive it the same way; its handle is synchronous.

pub mod cio;
pub mod faults;
pub mod gis;
pub mod server;

/// One request a fake received, for inspection by tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// The status the fake answered with (0 when the connection was dropped or hung).
    pub status: u16,
    /// Size of the request body in bytes.
    pub body_bytes: usize,
}

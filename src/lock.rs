//! The run lock: `<data_dir>/ciosync.lock`, exclusive and non-blocking (SPEC 5.1).
//!
//! SKELETON: to be built.

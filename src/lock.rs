//! The run lock: `<data_dir>/ciosync.lock`, exclusive and non-blocking (SPEC 5.1).
//!
//! SKELETON: to be built.

// TEMPORARY STUB (replaced by the config-state branch).
use std::path::Path;
pub struct DataDirLock;
pub fn try_acquire(_data_dir: &Path) -> std::io::Result<Option<DataDirLock>> {
    Ok(Some(DataDirLock))
}
pub fn is_held(_data_dir: &Path) -> std::io::Result<bool> {
    Ok(false)
}

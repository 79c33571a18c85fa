//! The run lock: `<data_dir>/ciosync.lock`, exclusive and non-blocking (SPEC 5.1); and the
//! OAuth refresh lock, `<data_dir>/gis-oauth.lock` (SPEC 2), which serializes GIS token
//! refreshes across every process sharing the data dir. The two are apart so `check` (which
//! refreshes but never takes the run lock) waits for another refresh, never for a run. A
//! process may take the refresh lock while it holds the run lock, never the other way round,
//! so the two cannot deadlock. Waiting for the refresh lock (bounded) is the GIS client's
//! job: here it is only tried.
//!
//! The lock is an `flock` on an open file, so it dies with the process: a crashed or killed
//! run never leaves a stale lock to delete by hand (the PHP connector's directory lock did).
//! The lock file itself is never removed: removing it while another process waits on it
//! would let two runs hold "the" lock on two different inodes.
//!
//! `flock` locks belong to the open file description, so two `open()`s in one process
//! conflict exactly as two processes do; that is what the tests rely on.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::data_dir::{DataDirError, LOCK_FILE, OAUTH_LOCK_FILE};
use crate::error::Error;

/// `<data_dir>/ciosync.lock`.
pub fn lock_path(data_dir: &Path) -> PathBuf {
    data_dir.join(LOCK_FILE)
}

/// `<data_dir>/gis-oauth.lock`.
pub fn refresh_lock_path(data_dir: &Path) -> PathBuf {
    data_dir.join(OAUTH_LOCK_FILE)
}

/// Proof that this process holds one of the data dir's locks; released when dropped (or
/// when the process dies).
#[derive(Debug)]
pub struct DataDirLock {
    /// Holding the open file is what holds the lock.
    file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DataDirLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; unlocking first makes the release
        // independent of any descriptor a child process might have inherited.
        let _ = fs2::FileExt::unlock(&self.file);
    }
}

/// Takes the run lock for a command: [`Error::Locked`] (exit 75) when another run holds it.
///
/// # Errors
/// Held by another run (75), or the lock file cannot be created or locked (74).
pub fn acquire(data_dir: &Path) -> Result<DataDirLock, Error> {
    match try_acquire(data_dir) {
        Ok(Some(lock)) => Ok(lock),
        Ok(None) => Err(Error::Locked(lock_path(data_dir))),
        Err(source) => Err(Error::DataDir(DataDirError::Io {
            context: format!("cannot lock {}", lock_path(data_dir).display()),
            source,
        })),
    }
}

/// Takes the lock without waiting: `Ok(None)` when another run holds it.
///
/// # Errors
/// Any I/O error other than contention (the lock file cannot be created or locked).
pub fn try_acquire(data_dir: &Path) -> io::Result<Option<DataDirLock>> {
    try_lock(lock_path(data_dir))
}

/// Takes the OAuth refresh lock without waiting: `Ok(None)` while another process refreshes.
///
/// # Errors
/// Any I/O error other than contention (the lock file cannot be created or locked).
pub fn try_acquire_refresh(data_dir: &Path) -> io::Result<Option<DataDirLock>> {
    try_lock(refresh_lock_path(data_dir))
}

fn try_lock(path: PathBuf) -> io::Result<Option<DataDirLock>> {
    let file = open_lock_file(&path)?;
    match fs2::FileExt::try_lock_exclusive(&file) {
        Ok(()) => Ok(Some(DataDirLock { file, path })),
        Err(err) if is_contended(&err) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Whether a run holds the lock now, found by a try-lock released at once (for `status`).
///
/// A run starting in that instant finds the lock taken and skips one tick, which is
/// harmless. A data dir without a lock file has never been locked: `false`, and nothing is
/// created.
///
/// # Errors
/// Any I/O error other than contention or a missing lock file.
pub fn is_held(data_dir: &Path) -> io::Result<bool> {
    let file = match OpenOptions::new().read(true).open(lock_path(data_dir)) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(err),
    };
    match fs2::FileExt::try_lock_exclusive(&file) {
        Ok(()) => {
            fs2::FileExt::unlock(&file)?;
            Ok(false)
        }
        Err(err) if is_contended(&err) => Ok(true),
        Err(err) => Err(err),
    }
}

fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

/// fs2 reports contention as `WouldBlock` (EWOULDBLOCK/EAGAIN) on Unix.
fn is_contended(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
        || err.raw_os_error() == fs2::lock_contended_error().raw_os_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = try_acquire(dir.path())
            .expect("lock")
            .expect("free at first");
        assert_eq!(first.path(), lock_path(dir.path()));
        assert!(try_acquire(dir.path()).expect("try again").is_none());
        drop(first);
        assert!(try_acquire(dir.path()).expect("after drop").is_some());
    }

    #[test]
    fn the_refresh_lock_is_apart_from_the_run_lock() {
        let dir = tempfile::tempdir().expect("temp dir");
        let run = try_acquire(dir.path()).expect("lock").expect("free");
        let refresh = try_acquire_refresh(dir.path())
            .expect("lock")
            .expect("a run does not hold the refresh lock");
        assert_eq!(refresh.path(), refresh_lock_path(dir.path()));
        assert!(try_acquire_refresh(dir.path()).expect("again").is_none());
        assert!(
            is_held(dir.path()).expect("status"),
            "the run lock is still held"
        );
        drop(run);
        assert!(
            try_acquire(dir.path()).expect("lock").is_some(),
            "a refresh does not hold the run lock"
        );
        drop(refresh);
        assert!(try_acquire_refresh(dir.path()).expect("lock").is_some());
    }

    #[test]
    fn is_held_reports_without_taking_the_lock() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(!is_held(dir.path()).expect("no lock file yet"));
        assert!(
            !lock_path(dir.path()).exists(),
            "status creates nothing in the data dir"
        );
        let held = try_acquire(dir.path()).expect("lock").expect("free");
        assert!(is_held(dir.path()).expect("check while held"));
        drop(held);
        assert!(!is_held(dir.path()).expect("check after drop"));
        // The check released its probe: a run can take the lock right after.
        assert!(try_acquire(dir.path()).expect("lock").is_some());
    }

    #[test]
    fn missing_data_dir_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(try_acquire(&dir.path().join("missing")).is_err());
    }
}

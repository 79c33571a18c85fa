//! The data dir (SPEC 5): every file ciosync keeps there, by name, and the one way any file
//! is written: atomically.
//!
//! Owns:
//! - the file names (state, its backup, the fingerprint key, the run lock, the OAuth refresh
//!   lock, the run summary, the GIS credentials);
//! - creating the data dir (0700) and proving it writable;
//! - [`write_atomic`] and [`AtomicWrite`]: temp file in the same directory (written whole, or
//!   streamed through a buffer for a large file), fsync, rename over the target,
//!   fsync the directory, with the mode as an argument (0600 for everything in the data dir,
//!   0644 for the Prometheus textfile), optionally keeping the previous generation;
//! - removing the temp files a killed writer left behind;
//! - [`DataDirError`], the exit-74 error of every file here.
//!
//! Invariants: a crash at any instant leaves the old or the new file, never a torn one; a
//! file kept with a backup never disappears, even for an instant; a temp file is created
//! with `O_EXCL` (never through a planted symlink) under a random name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The state file (SPEC 5.2).
pub const STATE_FILE: &str = "state.json";
/// The previous generation of [`STATE_FILE`].
pub const BACKUP_FILE: &str = "state.json.bak";
/// The HMAC key of the attribute fingerprints.
pub const KEY_FILE: &str = "state.key";
/// The run lock (SPEC 5.1).
pub const LOCK_FILE: &str = "ciosync.lock";
/// The lock that serializes OAuth refreshes across processes (SPEC 2), apart from the run
/// lock so `check` never waits for a run.
pub const OAUTH_LOCK_FILE: &str = "gis-oauth.lock";
/// The last run's summary (SPEC 5.3, 6).
pub const LAST_RUN_FILE: &str = "last_run.json";
/// The rotated GIS refresh token and the cached access token (SPEC 2).
pub const OAUTH_FILE: &str = "gis-oauth.json";

/// Mode of every file ciosync writes in the data dir.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of the data dir when ciosync creates it.
pub const DIR_MODE: u32 = 0o700;

/// Why a file of the data dir cannot be used: exit 74.
///
/// The message says what is wrong and what the operator can do about it.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// The file exists but cannot be used (corrupt, truncated, empty, unknown version,
    /// inconsistent with its neighbours). Nothing was modified.
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing failed at the OS level.
    #[error("{context}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl DataDirError {
    /// Wraps an OS error with what was being done.
    pub fn io(context: String) -> impl FnOnce(io::Error) -> DataDirError {
        move |source| DataDirError::Io { context, source }
    }
}

/// Creates `dir` (0700, with its parents) if missing and proves it is writable.
///
/// An existing directory keeps its mode: the operator may have chosen it.
///
/// # Errors
/// [`DataDirError::Io`] when the directory cannot be created or a file cannot be created in
/// it.
pub fn ensure(dir: &Path) -> Result<(), DataDirError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(DataDirError::io(format!(
            "cannot create the data dir {}",
            dir.display()
        )))?;
    let probe = dir.join(format!(".ciosync-write-test.{}", std::process::id()));
    let created = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE_FILE_MODE)
        .open(&probe);
    match created {
        Ok(file) => {
            drop(file);
            fs::remove_file(&probe).map_err(DataDirError::io(format!(
                "the data dir {} is not writable (cannot remove {})",
                dir.display(),
                probe.display()
            )))
        }
        Err(source) => Err(DataDirError::Io {
            context: format!(
                "the data dir {} is not writable; ciosync keeps its state, lock and \
                 credentials there: check its owner and mode",
                dir.display()
            ),
            source,
        }),
    }
}

/// How the bytes of a new file reach it: `write_all`, except where a test injects a failing
/// writer (a disk that fills up half-way).
pub type Writer<'a> = &'a mut dyn FnMut(&mut File, &[u8]) -> io::Result<()>;

/// The writer every real save uses.
pub fn write_all(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    file.write_all(bytes)
}

/// Size of the buffer between a streamed file's encoder and its [`Writer`]: the writer sees
/// chunks of up to this many bytes.
pub const WRITE_BUFFER: usize = 1 << 20;

/// Writes what is written to it to `file` through a [`Writer`].
struct ThroughWriter<'f, 'w> {
    file: &'f mut File,
    write: Writer<'w>,
}

impl Write for ThroughWriter<'_, '_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        (self.write)(self.file, bytes)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One atomic file write: what to write, where, with which mode, and whether the file it
/// replaces is kept as a backup.
pub struct AtomicWrite<'a> {
    /// The file to replace.
    pub path: &'a Path,
    /// Its mode, whatever the umask.
    pub mode: u32,
    /// Where the replaced file goes first, if it is to be kept.
    pub backup: Option<&'a Path>,
}

impl AtomicWrite<'_> {
    /// Writes `bytes` through `write`: a temp file in the same directory (`O_EXCL`, random
    /// name), fsync, the old file hard-linked to `backup` when asked (so `path` never goes
    /// missing), rename over `path`, fsync the directory.
    ///
    /// # Errors
    /// Any I/O error; the temp file is removed and `path` is left as it was.
    pub fn write_with(&self, bytes: &[u8], write: Writer<'_>) -> io::Result<()> {
        self.replace(&mut |file| write(file, bytes))
    }

    /// As [`AtomicWrite::write_with`], with the content written by `produce` as it goes
    /// (through a [`WRITE_BUFFER`]-byte buffer, then `write`) instead of held whole in
    /// memory first: how a large state is saved.
    ///
    /// # Errors
    /// Any I/O error, `produce`'s included; the temp file is removed and `path` is left as
    /// it was.
    pub fn stream_with(
        &self,
        produce: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
        write: Writer<'_>,
    ) -> io::Result<()> {
        self.replace(&mut |file| {
            let mut out = BufWriter::with_capacity(WRITE_BUFFER, ThroughWriter { file, write });
            let written = produce(&mut out).and_then(|()| out.flush());
            // Taken apart rather than dropped: a drop would try the failed write again.
            let _ = out.into_parts();
            written
        })
    }

    /// Creates the temp file, fills it with `fill`, and moves it over `path` (see
    /// [`AtomicWrite::write_with`]).
    fn replace(&self, fill: &mut dyn FnMut(&mut File) -> io::Result<()>) -> io::Result<()> {
        let temp = temp_name(self.path);
        if let Err(err) = write_new_file(&temp, self.mode, fill) {
            let _ = fs::remove_file(&temp);
            return Err(err);
        }
        if let Some(backup) = self.backup {
            if let Err(err) = keep_previous_generation(self.path, backup) {
                let _ = fs::remove_file(&temp);
                return Err(err);
            }
        }
        if let Err(err) = fs::rename(&temp, self.path) {
            let _ = fs::remove_file(&temp);
            return Err(err);
        }
        sync_dir(parent_dir(self.path))
    }
}

/// Writes `bytes` to `path` atomically with `mode` (see [`AtomicWrite`]).
///
/// # Errors
/// Any I/O error; the temp file is removed and `path` is left as it was.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    AtomicWrite {
        path,
        mode,
        backup: None,
    }
    .write_with(bytes, &mut write_all)
}

/// Creates `temp` with `mode`, filled by `fill`, flushed to disk.
fn write_new_file(
    temp: &Path,
    mode: u32,
    fill: &mut dyn FnMut(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(temp)?;
    // The open mode is filtered by the umask; set it explicitly so it is exactly `mode`.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    fill(&mut file)?;
    file.sync_all()
}

/// Makes the current `path` the new `backup` without a moment where `path` is missing.
fn keep_previous_generation(path: &Path, backup: &Path) -> io::Result<()> {
    let link = temp_name(backup);
    match fs::hard_link(path, &link) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        // Some file systems have no hard links: a copy is as good, if slower (streamed: a
        // large state is not held in memory for it).
        Err(_) => {
            let mut previous = match File::open(path) {
                Ok(file) => file,
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(err) => return Err(err),
            };
            let mode = previous
                .metadata()
                .map_or(PRIVATE_FILE_MODE, |m| m.permissions().mode());
            if let Err(err) = write_new_file(&link, mode & 0o777, &mut |file| {
                io::copy(&mut previous, file).map(drop)
            }) {
                let _ = fs::remove_file(&link);
                return Err(err);
            }
        }
    }
    fs::rename(&link, backup).inspect_err(|_| {
        let _ = fs::remove_file(&link);
    })
}

/// The prefix of every temp file written for `file_name` (`.state.json.tmp.`).
fn temp_prefix(file_name: &str) -> String {
    format!(".{file_name}.tmp.")
}

/// A fresh name beside `path` for a temp file (`.state.json.tmp.<pid>.<random>`). It never
/// ends in the target's extension, so a collector watching `*.prom` ignores it.
fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let nonce: u32 = rand::random();
    parent_dir(path).join(format!(
        "{}{}.{nonce:08x}",
        temp_prefix(&name),
        std::process::id()
    ))
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Flushes a directory's entries (renames) to disk.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes the temp files of `files` in `dir` that a killed writer left mid-save. Call it
/// only while holding the lock that serializes writes of those files, so any such file is
/// stale; without this, every crash during a save would leave a file behind for good. Best
/// effort: a file that cannot be removed is left for the next call.
pub fn remove_stale_temp_files(dir: &Path, files: &[&str]) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefixes: Vec<String> = files.iter().map(|name| temp_prefix(name)).collect();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if prefixes
            .iter()
            .any(|prefix| name.starts_with(prefix.as_str()))
        {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn write_replaces_the_file_with_the_asked_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("x.prom");
        fs::write(&path, "old").expect("seed");
        write_atomic(&path, b"new", 0o644).expect("write");
        assert_eq!(fs::read(&path).expect("read"), b"new");
        assert_eq!(mode(&path), 0o644);
        write_atomic(&path, b"newer", PRIVATE_FILE_MODE).expect("write");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(names(dir.path()), vec!["x.prom"]);
    }

    #[test]
    fn backup_keeps_the_previous_generation() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, backup) = (dir.path().join("s"), dir.path().join("s.bak"));
        let write = |bytes: &[u8]| {
            AtomicWrite {
                path: &path,
                mode: PRIVATE_FILE_MODE,
                backup: Some(&backup),
            }
            .write_with(bytes, &mut write_all)
        };
        write(b"one").expect("first");
        assert!(!backup.exists(), "nothing to keep on a first write");
        write(b"two").expect("second");
        assert_eq!(fs::read(&backup).expect("bak"), b"one");
        assert_eq!(fs::read(&path).expect("new"), b"two");
    }

    #[test]
    fn a_failing_writer_leaves_the_old_file_and_no_temp() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s");
        fs::write(&path, "old").expect("seed");
        let err = AtomicWrite {
            path: &path,
            mode: PRIVATE_FILE_MODE,
            backup: None,
        }
        .write_with(b"new", &mut |_, _| Err(io::Error::other("disk full")))
        .expect_err("fails");
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(fs::read(&path).expect("read"), b"old");
        assert_eq!(names(dir.path()), vec!["s"]);
    }

    #[test]
    fn a_planted_symlink_at_a_temp_name_is_never_followed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").expect("victim");
        // Whatever name an attacker guesses, the writer creates its temp file with O_EXCL.
        for guess in 0..4u32 {
            let planted = dir.path().join(format!(
                "{}{}.{guess:08x}",
                temp_prefix("t"),
                std::process::id()
            ));
            std::os::unix::fs::symlink(&victim, planted).expect("plant");
        }
        write_atomic(&dir.path().join("t"), b"data", 0o644).expect("write");
        assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious");
    }

    #[test]
    fn stale_temp_files_of_the_named_files_only_are_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in [
            ".state.json.tmp.1.0000",
            ".gis-oauth.json.tmp.2.ffff",
            ".other.tmp.3.0",
            "state.json",
        ] {
            fs::write(dir.path().join(name), "x").expect("seed");
        }
        remove_stale_temp_files(dir.path(), &[STATE_FILE, OAUTH_FILE]);
        assert_eq!(names(dir.path()), vec![".other.tmp.3.0", "state.json"]);
    }

    #[test]
    fn ensure_creates_a_private_dir_and_refuses_an_unwritable_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("a").join("data");
        ensure(&data).expect("created");
        assert_eq!(mode(&data), DIR_MODE);
        assert!(names(&data).is_empty(), "the write probe is removed");
        let file = dir.path().join("file");
        fs::write(&file, "x").expect("seed");
        let err = ensure(&file.join("data")).expect_err("a file is in the way");
        assert!(
            err.to_string().contains("cannot create the data dir"),
            "{err}"
        );
    }
}

//! Files: writing a private one, reading permission bits, walking a tree.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Writes a file readable only by its owner (so no insecure-secret warning).
pub fn write_private(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("create file");
    file.write_all(text.as_bytes()).expect("write file");
}

/// The permission bits of `path` (symlinks followed), setuid, setgid and sticky included:
/// `mode(p) == 0o700` means exactly `rwx------`.
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every file and directory below `dir`, recursively (none when `dir` cannot be read).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        }
        found.push(path);
    }
    found
}

//! Durable file replacement: the one way rampart writes a state file, a pid file or a key,
//! so a reader (or the next start after a crash) sees the old content or the new, never a
//! mix, and a rename that was reported done survives a power loss.
//!
//! [`write_atomic`] writes a temporary file in the target's directory, created with the
//! final mode (a key is 0600 from its first byte, never wider), fsyncs it, renames it over
//! the target and fsyncs the directory: without that last step the rename itself may be
//! lost on a crash, leaving the old file (or none) after a write that returned `Ok`.
//! [`write_new`] is the same for a file that is created once and never replaced (a
//! generated password): the temporary file is linked into place instead of renamed, so
//! when two processes race, the first one's file wins whole.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Replaces `path` with `bytes`, atomically and durably.
///
/// The temporary file is `.<name>.<pid>-<n>.tmp` in the same directory (so the rename
/// never crosses file systems), created exclusively with `mode` (less the process umask),
/// written, fsynced, renamed over `path`, and then the directory is fsynced. On an error
/// the temporary file is removed; a crash can leave one behind, which
/// [`remove_leftovers`] sweeps.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let (tmp, mut file) = create_temp(path, mode)?;
    let written = (|| {
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    drop(file);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(parent_dir(path))
}

/// Creates `path` with `bytes` unless something already has that name; `Ok(false)` then,
/// and the existing file is left as it is.
///
/// Like [`write_atomic`], but the synced temporary file is hard-linked to `path` (which
/// fails if `path` exists) rather than renamed over it, and then removed; the directory
/// is fsynced. A reader never sees a partial file, and of two concurrent creators exactly
/// one wins.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<bool> {
    create_once(path, bytes, mode, None)
}

/// [`write_new`] with the file's modification time set to `modified` before it appears
/// (the web server's default site: every server computes the same validators).
pub fn write_new_dated(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    modified: std::time::SystemTime,
) -> io::Result<bool> {
    create_once(path, bytes, mode, Some(modified))
}

fn create_once(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    modified: Option<std::time::SystemTime>,
) -> io::Result<bool> {
    let (tmp, mut file) = create_temp(path, mode)?;
    let linked = (|| {
        file.write_all(bytes)?;
        if let Some(t) = modified {
            file.set_modified(t)?;
        }
        file.sync_all()?;
        fs::hard_link(&tmp, path)
    })();
    drop(file);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => sync_dir(parent_dir(path)).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Fsyncs a directory, which makes the creations, renames and removals of its entries
/// durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes the temporary files that [`write_atomic`] may have left next to `path` when a
/// process crashed mid-write. Only for a caller that owns the directory (holds a lock on
/// it, or is its only writer): it would also remove a concurrent writer's temporary file.
pub fn remove_leftovers(path: &Path) -> io::Result<()> {
    let (prefix, _) = temp_prefix(path)?;
    let dir = parent_dir(path);
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(prefix.as_str()) else {
            continue;
        };
        if rest.ends_with(".tmp") && rest.len() > ".tmp".len() {
            match fs::remove_file(dir.join(name)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

/// `path`'s directory; `.` for a bare file name.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// `.<name>.` (the start of every temporary name for `path`) and `<name>`.
fn temp_prefix(path: &Path) -> io::Result<(String, &std::ffi::OsStr)> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file name", path.display()),
        )
    })?;
    Ok((format!(".{}.", name.to_string_lossy()), name))
}

/// The counter in temporary names.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Creates a temporary file for `path` under a name no other writer uses at the same time:
/// the pid tells processes apart and a counter this process's writers. A name that exists
/// (left by a crashed process that had the same pid, as a restarted container's agent
/// does) is skipped, never opened.
fn create_temp(path: &Path, mode: u32) -> io::Result<(PathBuf, File)> {
    let (_, name) = temp_prefix(path)?;
    let mut attempts = 0;
    loop {
        let mut tmp = OsString::from(".");
        tmp.push(name);
        tmp.push(format!(
            ".{}-{}.tmp",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp = path.with_file_name(tmp);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn new_file_has_the_mode_and_content_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_atomic(&path, b"secret\n", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"secret\n");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(names(dir.path()), ["key.pem"]);

        let public = dir.path().join("cert.pem");
        write_atomic(&public, b"cert\n", 0o640).unwrap();
        assert_eq!(fs::metadata(&public).unwrap().mode() & 0o777, 0o640);
    }

    #[test]
    fn replaces_an_existing_file_and_takes_the_new_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, "old content that is longer than the new").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let before = fs::metadata(&path).unwrap().ino();
        write_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        // A new inode: a reader holding the old file still reads the old content whole.
        assert_ne!(fs::metadata(&path).unwrap().ino(), before);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        for round in 0..5 {
            write_atomic(&path, format!("round {round}").as_bytes(), 0o600).unwrap();
        }
        assert_eq!(fs::read_to_string(&path).unwrap(), "round 4");
        assert_eq!(names(dir.path()), ["state.json"]);
    }

    #[test]
    fn a_stale_temporary_name_is_not_reused_and_leftovers_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ack");
        // What a crash mid-write leaves, including names with our own pid and the next
        // counter values (a restarted container's agent gets the same pid again).
        let next = NEXT.load(Ordering::Relaxed);
        for n in next..next + 20 {
            let stale = format!(".ack.{}-{n}.tmp", std::process::id());
            fs::write(dir.path().join(stale), "torn").unwrap();
        }
        fs::write(dir.path().join(".ack.1-7.tmp"), "torn").unwrap();
        fs::write(dir.path().join(".ackx.1-7.tmp"), "another file's").unwrap();
        fs::write(dir.path().join(".ack.keep"), "not a temporary").unwrap();
        write_atomic(&path, b"whole", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"whole");
        remove_leftovers(&path).unwrap();
        assert_eq!(names(dir.path()), [".ack.keep", ".ackx.1-7.tmp", "ack"]);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a non-empty directory: the rename fails after the temporary was
        // written and synced.
        let path = dir.path().join("busy");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), "x").unwrap();
        assert!(write_atomic(&path, b"new", 0o600).is_err());
        assert_eq!(names(dir.path()), ["busy"]);
        assert_eq!(names(&path), ["inside"]);

        let missing = dir.path().join("no-such-dir/file");
        assert_eq!(
            write_atomic(&missing, b"x", 0o600).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert!(write_atomic(Path::new("/"), b"x", 0o600).is_err());
    }

    #[test]
    fn write_new_creates_once_and_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db-app.password");
        assert!(write_new(&path, b"first\n", 0o600).unwrap());
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert!(!write_new(&path, b"second\n", 0o600).unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"first\n");
        // Even a dangling symlink holds the name.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
        assert!(!write_new(&link, b"x", 0o600).unwrap());
        assert_eq!(names(dir.path()), ["db-app.password", "link"]);
        assert!(write_new(&dir.path().join("missing/file"), b"x", 0o600).is_err());
    }

    #[test]
    fn directories_are_synced_and_a_bare_name_uses_the_current_directory() {
        let dir = tempfile::tempdir().unwrap();
        sync_dir(dir.path()).unwrap();
        assert_eq!(
            sync_dir(&dir.path().join("missing")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(parent_dir(Path::new("state.json")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/a/b")), Path::new("/a"));
    }

    #[test]
    fn write_new_dated_sets_the_time_before_the_file_appears_and_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("site.css");
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert!(write_new_dated(&path, b"a", 0o644, t).unwrap());
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.modified().unwrap(), t);
        assert!(!write_new_dated(&path, b"b", 0o644, t).unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"a");
    }
}

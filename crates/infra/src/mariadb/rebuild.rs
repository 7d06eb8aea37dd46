//! A new data directory for a server from another server's live data: `mariadb-backup`
//! takes a consistent copy of the source's running server (it does not stop it, and the
//! primary keeps taking writes), prepares it, and swaps it in for the target's data
//! directory. The target's GTID history is set to the copy's position, so the target's
//! keeper points it at the leader and it replicates from exactly there.
//!
//! This is how a server that diverged (it holds transactions no other server has, after
//! a fallback to asynchronous replication or a lost disk) or fell too far behind (its
//! leader's binlog expired) comes back. Its old data directory is kept beside the new
//! one, never deleted: it may hold the only copy of writes an operator wants to inspect.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::client::os_user;
use super::instance::Instance;
use crate::process::{create_private_dir, describe_status, find_program, log_tail, InfraError};

/// Debian package that provides `mariadb-backup`.
pub const BACKUP_PACKAGE: &str = "mariadb-backup";

/// What [`rebuild_from`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    /// The source's GTID position at the copy's consistent point.
    pub gtid: String,
    /// Where the target's previous data directory now is (`None` if it had none).
    pub kept: Option<PathBuf>,
    /// The size of the copied data directory, in bytes.
    pub bytes: u64,
}

/// Replaces `target`'s data directory with a copy of `source`'s running server.
///
/// `target`'s server must be stopped (its keeper too: the caller stops the host). The
/// copy is made into `data.rebuild` beside the data directory, so an interrupted rebuild
/// leaves the old data directory in place; only a complete, prepared copy is swapped in.
/// The old data directory is renamed to `data.before-rebuild-<unix seconds>`.
pub fn rebuild_from(source: &Instance, target: &Instance) -> Result<Rebuilt, InfraError> {
    let program = find_program("mariadb-backup", BACKUP_PACKAGE)?;
    if target.is_running() || target.ping() {
        return Err(InfraError::Invalid(format!(
            "{}: its server is running; stop the host before rebuilding it",
            target.name
        )));
    }
    if !source.ping() {
        return Err(InfraError::Invalid(format!(
            "{}: its server does not answer on its socket, so there is nothing to copy from",
            source.name
        )));
    }
    create_private_dir(&target.dir)?;
    create_private_dir(&target.tmpdir())?;
    let staging = target.dir.join("data.rebuild");
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .map_err(|e| InfraError::io("remove directory", &staging, e))?;
    }
    let log = target.dir.join("mariadb-backup.log");
    let user = os_user()?;
    let tmpdir = format!("--tmpdir={}", target.tmpdir().display());
    let target_dir = format!("--target-dir={}", staging.display());
    run(
        &target.name,
        &program,
        &[
            "--no-defaults",
            "--backup",
            &target_dir,
            &format!("--socket={}", source.socket().display()),
            &format!("--user={user}"),
            &format!("--datadir={}", source.datadir().display()),
            &tmpdir,
        ],
        &log,
        "mariadb-backup --backup",
    )?;
    run(
        &target.name,
        &program,
        &["--no-defaults", "--prepare", &target_dir, &tmpdir],
        &log,
        "mariadb-backup --prepare",
    )?;
    let gtid = copied_position(&staging)?;
    let bytes = dir_size(&staging);
    let kept = swap_in(target, &staging, &gtid, "rebuild")?;
    Ok(Rebuilt { gtid, kept, bytes })
}

/// Makes `datadir` (a stopped server's complete data directory, at GTID position
/// `gtid`, with no binlog of its own) `target`'s data directory: the restore of
/// `rampart restore --in-place`. `target`'s server must be stopped. Its previous data
/// directory, if any, is kept beside as `data.before-restore-<unix seconds>`. Returns
/// where.
pub fn adopt(target: &Instance, datadir: &Path, gtid: &str) -> Result<Option<PathBuf>, InfraError> {
    if target.is_running() || target.ping() {
        return Err(InfraError::Invalid(format!(
            "{}: its server is running; stop the host before restoring into it",
            target.name
        )));
    }
    let valid = parse_position(&format!("- - {gtid}")).is_some_and(|g| g == gtid);
    if !valid {
        return Err(InfraError::Invalid(format!(
            "{gtid:?} is not a GTID position such as 0-1-42"
        )));
    }
    create_private_dir(&target.dir)?;
    swap_in(target, datadir, gtid, "restore")
}

/// Swaps `staging` in as `target`'s data directory (the old one renamed to
/// `data.before-<what>-<unix seconds>`) and gives it the binlog history `gtid`.
fn swap_in(
    target: &Instance,
    staging: &Path,
    gtid: &str,
    what: &str,
) -> Result<Option<PathBuf>, InfraError> {
    let datadir = target.datadir();
    let kept = if datadir.exists() {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let aside = target.dir.join(format!("data.before-{what}-{secs}"));
        fs::rename(&datadir, &aside).map_err(|e| InfraError::io("rename", &datadir, e))?;
        Some(aside)
    } else {
        None
    };
    fs::rename(staging, &datadir).map_err(|e| InfraError::io("rename", staging, e))?;

    // The copy has no binlog: give the new binlog the copy's history, so the keeper's
    // `gtid_slave_pos = @@gtid_binlog_pos` resumes replication exactly after the copy.
    let mut child = target.start_with(&["--skip-networking", "--skip-slave-start"])?;
    let set = target.sql(&format!(
        "SET GLOBAL read_only = OFF; RESET MASTER; SET GLOBAL gtid_binlog_state = '{gtid}'; \
         SET GLOBAL gtid_slave_pos = '{gtid}'; RESET SLAVE ALL; SELECT @@gtid_binlog_pos"
    ));
    let stopped = target.stop(Duration::from_secs(60));
    let _ = child.wait();
    let pos = set?;
    stopped?;
    if pos.trim() != gtid {
        return Err(InfraError::Invalid(format!(
            "{}: after the {what} its binlog position is {:?}, not the copy's {gtid}",
            target.name,
            pos.trim()
        )));
    }
    Ok(kept)
}

/// Runs `program args`, appending its output to `log`; a failure quotes the log's end.
fn run(
    name: &str,
    program: &Path,
    args: &[&str],
    log: &Path,
    what: &'static str,
) -> Result<(), InfraError> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(log)
        .map_err(|e| InfraError::io("open log file", log, e))?;
    let err = out
        .try_clone()
        .map_err(|e| InfraError::io("open log file", log, e))?;
    let status = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|source| InfraError::Spawn {
            name: name.to_owned(),
            program: program.to_owned(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(InfraError::Command {
            name: name.to_owned(),
            command: what,
            status: describe_status(status),
            detail: format!("see {}{}", log.display(), log_tail(log, 10)),
        })
    }
}

/// The GTID position `mariadb-backup` recorded for its copy (the third field of
/// `xtrabackup_binlog_info`, or of `mariadb_backup_binlog_info` in newer versions).
fn copied_position(dir: &Path) -> Result<String, InfraError> {
    for name in ["mariadb_backup_binlog_info", "xtrabackup_binlog_info"] {
        let path = dir.join(name);
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        return parse_position(&text).ok_or_else(|| {
            InfraError::Invalid(format!(
                "{}: no GTID position in {text:?} (is the source's binlog on?)",
                path.display()
            ))
        });
    }
    Err(InfraError::Invalid(format!(
        "{}: mariadb-backup wrote no binlog position (is the source's binlog on?)",
        dir.display()
    )))
}

/// `binlog.000003<TAB>761<TAB>0-7-3,1-2-9` → `0-7-3,1-2-9`. Only digits, dashes and
/// commas are accepted: the position goes into SQL.
fn parse_position(text: &str) -> Option<String> {
    let gtid = text.split_whitespace().nth(2)?;
    let valid = gtid.split(',').all(|g| {
        let parts: Vec<&str> = g.split('-').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    });
    valid.then(|| gtid.to_owned())
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn positions() {
        assert_eq!(
            parse_position("bin.000001\t761\t0-7-3\n").as_deref(),
            Some("0-7-3")
        );
        assert_eq!(
            parse_position("bin.000002\t4\t0-7-3,1-2-9").as_deref(),
            Some("0-7-3,1-2-9")
        );
        // No GTID (binlog without GTIDs), or anything that is not one.
        assert_eq!(parse_position("bin.000001\t761\n"), None);
        assert_eq!(parse_position("bin.000001\t761\t0-7-3'; DROP"), None);
        assert_eq!(parse_position("bin.000001\t761\t0-7"), None);
        assert_eq!(parse_position(""), None);
    }

    #[test]
    fn position_file_names() {
        let dir = tempfile::tempdir().unwrap();
        let err = copied_position(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no binlog position"), "{err}");
        fs::write(dir.path().join("xtrabackup_binlog_info"), "b.1\t4\t0-1-2\n").unwrap();
        assert_eq!(copied_position(dir.path()).unwrap(), "0-1-2");
        fs::write(
            dir.path().join("mariadb_backup_binlog_info"),
            "b.1\t4\t0-1-5\n",
        )
        .unwrap();
        assert_eq!(copied_position(dir.path()).unwrap(), "0-1-5");
    }
}

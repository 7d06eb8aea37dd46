//! The MariaDB programs the backups drive, found on the usual paths; a missing one names
//! its Debian package. Their stderr goes to a log file, whose tail an error carries.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};

use crate::Error;

/// `mariadb-backup`, `mbstream`: Debian's `mariadb-backup`.
pub const BACKUP_PACKAGE: &str = "mariadb-backup";
/// `mariadb-binlog`, `mariadb`: Debian's `mariadb-client-core`.
pub const CLIENT_PACKAGE: &str = "mariadb-client-core";
/// `mariadbd`: Debian's `mariadb-server-core`.
pub const SERVER_PACKAGE: &str = "mariadb-server-core";

const DIRS: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// The path of `name`, or an error naming the package that provides it.
pub fn program(name: &str, package: &str) -> Result<PathBuf, Error> {
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    from_path
        .into_iter()
        .chain(DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{name} is not installed (Debian package {package}: apt-get install {package})"
            ))
        })
}

/// A log file for a program's stderr (0600, appended).
pub fn log_file(path: &Path) -> Result<File, Error> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("open log", path, e))
}

/// The last `n` lines of the log at `path`.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// An error for `program` having exited with `status`, with its log's tail.
pub fn failed(program: &str, what: &'static str, status: ExitStatus, log: &Path) -> Error {
    Error::Program {
        program: program.to_owned(),
        what,
        status: status.to_string(),
        tail: tail(log, 8),
    }
}

/// Spawns `cmd`, naming `what` on failure.
pub fn spawn(cmd: &mut Command, what: &'static str) -> Result<Child, Error> {
    let name = cmd.get_program().to_string_lossy().into_owned();
    cmd.spawn()
        .map_err(|e| Error::io(what, Path::new(&name), e))
}

/// Waits for `child`; an exit other than 0 is an error with the log's tail.
pub fn wait(mut child: Child, program: &str, what: &'static str, log: &Path) -> Result<(), Error> {
    let status = child
        .wait()
        .map_err(|e| Error::io(what, Path::new(program), e))?;
    if status.success() {
        Ok(())
    } else {
        Err(failed(program, what, status, log))
    }
}

/// The name of the user this process runs as (for `mariadbd --user`).
pub fn user_name() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "root".into())
}

/// Sleeps this thread. The crate's only sleep: its work (programs, files, polling a
/// process) is synchronous and runs on threads of its own (`spawn_blocking` in a
/// service), never on a runtime's worker.
#[allow(clippy::disallowed_methods)]
pub fn pause(d: std::time::Duration) {
    std::thread::sleep(d);
}

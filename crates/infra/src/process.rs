//! Child processes owned through pid files: spawn, check, stop by PID with verification.
//!
//! A pid file holds `"<pid> <starttime>\n"`, where `starttime` is field 22 of
//! `/proc/<pid>/stat` (clock ticks since boot at which the process started). A PID alone can
//! be reused by an unrelated process after ours exits; the pair cannot, so every check and
//! every signal first verifies that the process behind the PID started when ours did. Signals
//! go through a pidfd opened before that check, which closes the remaining window between
//! "verified" and "signalled" on kernels that have pidfds (5.3+).
//!
//! This module also holds [`InfraError`], the error type of the whole crate, the lookup of
//! the programs rampart runs ([`find_program`]) and the crate's one polling primitive
//! ([`wait_until`]).

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, PidfdFlags, Signal};

/// Everything that can fail while touching the host: processes, files, MariaDB.
///
/// Messages are lowercase and name the thing that failed (instance, program, path).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InfraError {
    /// A program rampart needs is not installed.
    #[error("{program} not found; install the debian package {package}")]
    MissingBinary {
        /// The program's name (`mariadbd`).
        program: String,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// The pid file names a live process, so a second copy is not started.
    #[error("{name}: already running as pid {pid} (pid file {})", .pid_file.display())]
    AlreadyRunning {
        /// The process's name from its [`Spec`].
        name: String,
        /// The live process.
        pid: u32,
        /// The pid file that names it.
        pid_file: PathBuf,
    },
    /// The program could not be executed at all.
    #[error("{name}: cannot start {}: {source}", .program.display())]
    Spawn {
        /// The process's name from its [`Spec`].
        name: String,
        /// The program that failed to start.
        program: PathBuf,
        /// The error from `exec`.
        source: io::Error,
    },
    /// The process started but exited before it was ready.
    #[error("{name}: {program} exited during start ({status}); see {}{tail}", .log.display())]
    Exited {
        /// The instance (`db1`).
        name: String,
        /// The program (`mariadbd`).
        program: String,
        /// `status 1` or `signal 9`.
        status: String,
        /// The log file to read.
        log: PathBuf,
        /// The last lines of the log, prefixed with a newline, or empty.
        tail: String,
    },
    /// A file system operation failed.
    #[error("{action} {}: {source}", .path.display())]
    Io {
        /// What was being done (`create directory`, `write pid file`).
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Sending a signal failed for a reason other than the process being gone.
    #[error("send {signal} to pid {pid}: {source}")]
    Signal {
        /// `SIGTERM` or `SIGKILL`.
        signal: &'static str,
        /// The target.
        pid: u32,
        /// The underlying error.
        source: io::Error,
    },
    /// A condition polled for did not become true in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited (`db1 to accept connections`).
        what: String,
        /// How long it was awaited.
        after: Duration,
    },
    /// A helper command (`mariadb-install-db`, the `mariadb` client) failed.
    #[error("{name}: {command} failed ({status}): {detail}")]
    Command {
        /// The instance it ran for.
        name: String,
        /// The command (`mariadb-install-db`, `sql`).
        command: &'static str,
        /// `status 1`, `signal 9` or `timed out after 30s`.
        status: String,
        /// Its error output, with SQL text and secrets removed.
        detail: String,
    },
    /// Replication is configured but not working, or not configured where it must be.
    #[error("{name}: {detail}")]
    Replication {
        /// The replica.
        name: String,
        /// What is wrong, with the server's own error text where there is one.
        detail: String,
    },
    /// An input or on-disk value is unusable (a malformed password file, an unsafe path).
    #[error("{0}")]
    Invalid(String),
}

impl InfraError {
    /// An [`InfraError::Io`] for `path`.
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        InfraError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The last `lines` lines of a log file, each on its own line after a leading newline, or
/// empty when there is nothing to show.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(text) = std::fs::read(path) else {
        return String::new();
    };
    let start = text.len().saturating_sub(8192);
    let text = String::from_utf8_lossy(&text[start..]);
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    tail.iter().map(|l| format!("\n  {l}")).collect()
}

/// `status 1` or `signal 9`: an exit status as error messages show it.
pub(crate) fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "unknown status".to_owned(),
    }
}

/// Finds `program` in `PATH` or the usual system directories (`mariadbd` and `prometheus`
/// live in `/usr/sbin` or `/usr/bin`, and a normal user's `PATH` often lacks `/usr/sbin`).
/// The error names the Debian `package` that provides it.
pub fn find_program(program: &str, package: &'static str) -> Result<PathBuf, InfraError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
                .into_iter()
                .map(PathBuf::from),
        )
        .map(|dir| dir.join(program))
        .find(|candidate| {
            fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
        .ok_or_else(|| InfraError::MissingBinary {
            program: program.to_owned(),
            package,
        })
}

/// How to start one long-running child process that rampart owns through a pid file.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Name for messages, e.g. `db1/mariadbd`.
    pub name: String,
    /// The program to execute (an absolute path; `PATH` is not searched by rampart's callers).
    pub program: PathBuf,
    /// Its arguments, without the program name.
    pub args: Vec<OsString>,
    /// Environment variables added to (not replacing) rampart's own environment.
    pub env: Vec<(OsString, OsString)>,
    /// Where rampart records `"<pid> <starttime>\n"`. Not the program's own pid file.
    pub pid_file: PathBuf,
    /// stdout and stderr are appended here; parent directories are created.
    pub log_file: PathBuf,
    /// Working directory, or rampart's own when `None`.
    pub cwd: Option<PathBuf>,
}

/// Starts `spec` in its own process group with stdin from `/dev/null` and stdout and stderr
/// appended to its log file, then records it in its pid file (written to a temporary file and
/// renamed, so readers never see a partial pid file).
///
/// Its own process group keeps a terminal's Ctrl-C (sent to the foreground group) away from
/// the child: the orchestrator receives it and stops children in order. Refuses with
/// [`InfraError::AlreadyRunning`] when the pid file names a live process. The returned
/// [`Child`] should be waited on by the caller (or dropped: an unreaped exited child is a
/// zombie, which [`running`] reports as not running).
///
/// Two concurrent `spawn`s of the same spec are not serialized; callers start each process
/// from one place.
pub fn spawn(spec: &Spec) -> Result<Child, InfraError> {
    spawn_without_env(spec, &[])
}

/// [`spawn`], with every variable of rampart's environment whose name starts with one of
/// `prefixes` removed from the child's (before `spec.env` is added): etcd takes `ETCD_*`
/// variables as flags and refuses to start when one duplicates a flag it was given.
pub fn spawn_without_env(spec: &Spec, prefixes: &[&str]) -> Result<Child, InfraError> {
    if let Some(pid) = running(&spec.pid_file) {
        return Err(InfraError::AlreadyRunning {
            name: spec.name.clone(),
            pid,
            pid_file: spec.pid_file.clone(),
        });
    }
    create_parent(&spec.log_file)?;
    create_parent(&spec.pid_file)?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(&spec.log_file)
        .map_err(|e| InfraError::io("open log file", &spec.log_file, e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| InfraError::io("open log file", &spec.log_file, e))?;
    let mut command = Command::new(&spec.program);
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if prefixes.iter().any(|p| text.starts_with(p)) {
            command.env_remove(&name);
        }
    }
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0);
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    let mut child = command.spawn().map_err(|source| InfraError::Spawn {
        name: spec.name.clone(),
        program: spec.program.clone(),
        source,
    })?;
    let pid = child.id();
    // The child is unreaped until the caller waits, so /proc/<pid> exists even if it already
    // exited; its starttime was fixed at fork.
    let recorded = read_stat(pid)
        .ok_or_else(|| {
            InfraError::io(
                "read",
                &proc_stat_path(pid),
                io::Error::new(io::ErrorKind::NotFound, "no such process"),
            )
        })
        .and_then(|stat| write_pid_file(&spec.pid_file, pid, stat.starttime));
    if let Err(e) = recorded {
        // Our own child, by handle: never left running untracked.
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    Ok(child)
}

/// The PID recorded in `pid_file` if that process is alive: the file parses, `/proc/<pid>`
/// exists, its starttime is the recorded one (so the PID was not reused) and it is neither a
/// zombie (`Z`) nor dead (`X`).
pub fn running(pid_file: &Path) -> Option<u32> {
    let (pid, starttime) = read_pid_file(pid_file)?;
    alive(pid, starttime).then_some(pid)
}

/// Stops the process named by `pid_file`: `SIGTERM`, up to `grace` for it to exit, then
/// `SIGKILL` and up to [`KILL_WAIT`] more. Removes the pid file (also a stale one).
///
/// Returns `Ok(true)` if a live process had to be stopped, `Ok(false)` if there was none.
/// Never signals a PID whose starttime differs from the recorded one.
pub fn stop(pid_file: &Path, grace: Duration) -> Result<bool, InfraError> {
    let Some((pid, starttime)) = read_pid_file(pid_file) else {
        remove_pid_file(pid_file)?;
        return Ok(false);
    };
    if !alive(pid, starttime) {
        remove_pid_file(pid_file)?;
        return Ok(false);
    }
    signal(pid, starttime, Signal::TERM, "SIGTERM")?;
    if !wait_gone(pid, starttime, grace) {
        signal(pid, starttime, Signal::KILL, "SIGKILL")?;
        if !wait_gone(pid, starttime, KILL_WAIT) {
            return Err(InfraError::Timeout {
                what: format!("pid {pid} to exit after SIGKILL"),
                after: KILL_WAIT,
            });
        }
    }
    remove_pid_file(pid_file)?;
    Ok(true)
}

/// How long [`stop`] waits after `SIGKILL` before giving up.
pub const KILL_WAIT: Duration = Duration::from_secs(5);

/// Polls `f` until it returns `Some`, for at most `deadline`; the error names `what`
/// ("db1 to accept connections"). `f` runs at least once, then again after pauses that
/// double from 1 ms up to 50 ms (a quick answer is seen quickly, a slow one costs little).
///
/// The one way this crate waits for something: synchronous code of the `rampart` CLI,
/// never a runtime thread. To stop early with an error, return `Some(Err(..))` and
/// flatten the result.
pub fn wait_until<T>(
    what: &str,
    deadline: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, InfraError> {
    let start = Instant::now();
    let mut step = Duration::from_millis(1);
    loop {
        if let Some(value) = f() {
            return Ok(value);
        }
        let elapsed = start.elapsed();
        if elapsed >= deadline {
            return Err(InfraError::Timeout {
                what: what.to_owned(),
                after: deadline,
            });
        }
        pause(step.min(deadline - elapsed));
        step = (step * 2).min(Duration::from_millis(50));
    }
}

/// Blocks the current thread for `d`: [`wait_until`]'s pause and nothing else's.
#[expect(
    clippy::disallowed_methods,
    reason = "wait_until runs in the synchronous CLI (rampart up/down/status), never on a runtime thread"
)]
fn pause(d: Duration) {
    std::thread::sleep(d);
}

/// The fields of `/proc/<pid>/stat` rampart uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// Field 3: `R`, `S`, `D`, `Z`, `X`, ...
    state: char,
    /// Field 22: start time in clock ticks after boot.
    starttime: u64,
}

/// Parses `/proc/<pid>/stat` content. The command name (field 2) is in parentheses and may
/// itself contain spaces and `)`, so fields are counted from after the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace();
    let state = fields.next()?;
    let mut state_chars = state.chars();
    let state_char = state_chars.next()?;
    if state_chars.next().is_some() {
        return None;
    }
    // Field 3 was the state; field 22 is 19 further on.
    let starttime = fields.nth(18)?.parse().ok()?;
    Some(Stat {
        state: state_char,
        starttime,
    })
}

/// Parses pid file content `"<pid> <starttime>\n"`.
fn parse_pid_file(text: &str) -> Option<(u32, u64)> {
    let mut fields = text.split_ascii_whitespace();
    let pid: u32 = fields.next()?.parse().ok()?;
    let starttime = fields.next()?.parse().ok()?;
    if fields.next().is_some() || pid == 0 || i32::try_from(pid).is_err() {
        return None;
    }
    Some((pid, starttime))
}

fn proc_stat_path(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/stat"))
}

fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(proc_stat_path(pid)).ok()?)
}

fn read_pid_file(pid_file: &Path) -> Option<(u32, u64)> {
    parse_pid_file(&fs::read_to_string(pid_file).ok()?)
}

/// Whether `pid` is the process that started at `starttime` and has not exited.
fn alive(pid: u32, starttime: u64) -> bool {
    read_stat(pid).is_some_and(|s| s.starttime == starttime && !matches!(s.state, 'Z' | 'X'))
}

fn wait_gone(pid: u32, starttime: u64, within: Duration) -> bool {
    wait_until("exit", within, || (!alive(pid, starttime)).then_some(())).is_ok()
}

/// Sends `sig` to `pid` only if it is still the process that started at `starttime`.
/// A process that is already gone is not an error.
fn signal(pid: u32, starttime: u64, sig: Signal, sig_name: &'static str) -> Result<(), InfraError> {
    let err = |source| InfraError::Signal {
        signal: sig_name,
        pid,
        source,
    };
    let raw = i32::try_from(pid).map_err(|_| err(io::ErrorKind::InvalidInput.into()))?;
    let target = Pid::from_raw(raw).ok_or_else(|| err(io::ErrorKind::InvalidInput.into()))?;
    // Pin the process first, then verify it is ours, then signal the pinned process.
    let pidfd = match rustix::process::pidfd_open(target, PidfdFlags::empty()) {
        Ok(fd) => Some(fd),
        Err(rustix::io::Errno::SRCH) => return Ok(()),
        // Kernels before 5.3 (ENOSYS) or seccomp filters: verified kill(2) below.
        Err(_) => None,
    };
    if !alive(pid, starttime) {
        return Ok(());
    }
    let sent = match &pidfd {
        Some(fd) => rustix::process::pidfd_send_signal(fd, sig),
        None => rustix::process::kill_process(target, sig),
    };
    match sent {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(err(e.into())),
    }
}

/// Creates `dir` with mode 0700 (missing parents 0755) and checks that it is a real directory
/// owned by us and not accessible to others (it may hold sockets and passwords); a looser
/// mode is tightened.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), InfraError> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| InfraError::io("create directory", parent, e))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            return Err(InfraError::io("create directory", dir, e));
        }
        _ => {}
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| InfraError::io("inspect", dir, e))?;
    let uid = rustix::process::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != uid {
        return Err(InfraError::Invalid(format!(
            "{} must be a directory owned by uid {uid}",
            dir.display()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| InfraError::io("set permissions of", dir, e))?;
    }
    Ok(())
}

fn create_parent(path: &Path) -> Result<(), InfraError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| InfraError::io("create directory", parent, e)),
        _ => Ok(()),
    }
}

/// Replaces `pid_file` with `"<pid> <starttime>\n"` (0644), atomically.
fn write_pid_file(pid_file: &Path, pid: u32, starttime: u64) -> Result<(), InfraError> {
    rampart_telemetry::fs::write_atomic(pid_file, format!("{pid} {starttime}\n").as_bytes(), 0o644)
        .map_err(|e| InfraError::io("write pid file", pid_file, e))
}

fn remove_pid_file(pid_file: &Path) -> Result<(), InfraError> {
    match fs::remove_file(pid_file) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(InfraError::io("remove pid file", pid_file, e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn pid_file_parsing() {
        let check = |text: &str, expected: Option<(u32, u64)>| {
            assert_eq!(parse_pid_file(text), expected, "{text:?}");
        };
        check("1234 5678\n", Some((1234, 5678)));
        check("1234 5678", Some((1234, 5678)));
        check("  1234   5678  \n", Some((1234, 5678)));
        check("1234\n", None);
        check("", None);
        check("0 5678\n", None);
        check("-1 5678\n", None);
        check("1234 5678 9\n", None);
        check("abc 5678\n", None);
        check("1234 abc\n", None);
        check("4294967295 1\n", None);
    }

    fn stat_line(comm: &str, state: &str, starttime: u64) -> String {
        // Fields 4..=21 are filler; field 22 is starttime; more fields follow.
        let filler: Vec<String> = (4..=21).map(|i| i.to_string()).collect();
        format!(
            "4242 ({comm}) {state} {} {starttime} 23 24 25\n",
            filler.join(" ")
        )
    }

    #[test]
    fn stat_parsing() {
        let check = |text: &str, expected: Option<(char, u64)>| {
            let got = parse_stat(text).map(|s| (s.state, s.starttime));
            assert_eq!(got, expected, "{text:?}");
        };
        check(&stat_line("sleep", "S", 987_654), Some(('S', 987_654)));
        check(&stat_line("my prog", "R", 1), Some(('R', 1)));
        check(&stat_line("a) Z 1 2 (b", "S", 77), Some(('S', 77)));
        check(&stat_line(")", "Z", 5), Some(('Z', 5)));
        check(&stat_line("x", "X", 6), Some(('X', 6)));
        check("4242 (sleep) S 1 2 3", None);
        check("no parens at all", None);
        check("", None);
        // A real line from this process.
        let own = fs::read_to_string("/proc/self/stat").unwrap();
        assert!(parse_stat(&own).is_some(), "{own}");
    }

    fn sleep_spec(dir: &Path) -> Spec {
        Spec {
            name: "test/sleep".to_owned(),
            program: PathBuf::from("sleep"),
            args: vec!["30".into()],
            env: vec![],
            pid_file: dir.join("run/sleep.pid"),
            log_file: dir.join("log/sleep.log"),
            cwd: Some(dir.to_path_buf()),
        }
    }

    /// The child sees none of the removed prefix's variables (`PATH`, which every test
    /// process has), and still its own.
    #[test]
    fn spawn_without_env_removes_variables_by_prefix() {
        assert!(std::env::var_os("PATH").is_some());
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env.txt");
        let spec = Spec {
            name: "test/env".to_owned(),
            program: PathBuf::from("/bin/sh"),
            args: vec![
                "-c".into(),
                format!("/usr/bin/env > {}", out.display()).into(),
            ],
            env: vec![("RAMPART_TEST_OWN".into(), "1".into())],
            pid_file: dir.path().join("env.pid"),
            log_file: dir.path().join("env.log"),
            cwd: None,
        };
        let mut child = spawn_without_env(&spec, &["PAT"]).unwrap();
        child.wait().unwrap();
        let env = fs::read_to_string(&out).unwrap();
        assert!(!env.lines().any(|l| l.starts_with("PATH=")), "{env}");
        assert!(env.lines().any(|l| l == "RAMPART_TEST_OWN=1"), "{env}");
        // Without prefixes, the environment is inherited whole.
        let mut child = spawn(&spec).unwrap();
        child.wait().unwrap();
        let env = fs::read_to_string(&out).unwrap();
        assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
    }

    #[test]
    fn spawn_running_stop() {
        let dir = tempfile::tempdir().unwrap();
        let spec = sleep_spec(dir.path());
        let mut child = spawn(&spec).unwrap();
        let pid = child.id();
        assert_eq!(running(&spec.pid_file), Some(pid));
        let text = fs::read_to_string(&spec.pid_file).unwrap();
        assert!(
            text.starts_with(&format!("{pid} ")) && text.ends_with('\n'),
            "{text:?}"
        );
        // Its own process group.
        let stat = fs::read_to_string(proc_stat_path(pid)).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 1..];
        let pgrp: u32 = after.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert_eq!(pgrp, pid);

        match spawn(&spec) {
            Err(InfraError::AlreadyRunning { pid: p, .. }) => assert_eq!(p, pid),
            other => panic!("expected AlreadyRunning, got {other:?}"),
        }

        assert!(stop(&spec.pid_file, Duration::from_secs(5)).unwrap());
        assert_eq!(running(&spec.pid_file), None);
        assert!(!spec.pid_file.exists());
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(15), "{status:?}");
        // Stopping again finds nothing.
        assert!(!stop(&spec.pid_file, Duration::from_secs(1)).unwrap());
    }

    #[test]
    fn stop_escalates_to_sigkill() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = sleep_spec(dir.path());
        spec.program = PathBuf::from("sh");
        spec.args = vec![
            "-c".into(),
            "trap '' TERM; echo ready; while :; do sleep 1; done".into(),
        ];
        let mut child = spawn(&spec).unwrap();
        wait_until("shell to install its trap", Duration::from_secs(5), || {
            fs::read_to_string(&spec.log_file)
                .ok()
                .filter(|log| log.contains("ready"))
        })
        .unwrap();
        let started = Instant::now();
        assert!(stop(&spec.pid_file, Duration::from_millis(300)).unwrap());
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(child.wait().unwrap().signal(), Some(9));
    }

    #[test]
    fn stale_pid_files_are_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("stale.pid");

        // A process that exited (and was reaped).
        let mut dead = Command::new("true").spawn().unwrap();
        let dead_pid = dead.id();
        let dead_start = read_stat(dead_pid).unwrap().starttime;
        dead.wait().unwrap();
        write_pid_file(&pid_file, dead_pid, dead_start).unwrap();
        assert_eq!(running(&pid_file), None);
        assert!(!stop(&pid_file, Duration::from_secs(1)).unwrap());
        assert!(!pid_file.exists(), "stale pid file removed");

        // A live process with another starttime: the PID was "reused"; never signalled.
        let mut live = Command::new("sleep").arg("30").spawn().unwrap();
        let live_start = read_stat(live.id()).unwrap().starttime;
        write_pid_file(&pid_file, live.id(), live_start + 1).unwrap();
        assert_eq!(running(&pid_file), None);
        assert!(!stop(&pid_file, Duration::from_secs(1)).unwrap());
        assert!(
            live.try_wait().unwrap().is_none(),
            "unrelated process left alone"
        );
        live.kill().unwrap();
        live.wait().unwrap();

        // An unreaped zombie.
        let mut zombie = Command::new("true").spawn().unwrap();
        let zombie_start = read_stat(zombie.id()).unwrap().starttime;
        write_pid_file(&pid_file, zombie.id(), zombie_start).unwrap();
        wait_until("zombie", Duration::from_secs(5), || {
            (read_stat(zombie.id()).unwrap().state == 'Z').then_some(())
        })
        .unwrap();
        assert_eq!(running(&pid_file), None);
        zombie.wait().unwrap();

        // Garbage and a missing file.
        fs::write(&pid_file, "garbage\n").unwrap();
        assert_eq!(running(&pid_file), None);
        fs::remove_file(&pid_file).unwrap();
        assert_eq!(running(&pid_file), None);
        assert!(!stop(&pid_file, Duration::from_secs(1)).unwrap());
    }

    #[test]
    fn spawn_of_missing_program_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = sleep_spec(dir.path());
        spec.program = dir.path().join("no-such-program");
        let err = spawn(&spec).unwrap_err().to_string();
        assert!(
            err.starts_with("test/sleep: cannot start ") && err.contains("no-such-program"),
            "{err}"
        );
        assert!(!spec.pid_file.exists());
    }

    #[test]
    fn wait_until_times_out_naming_what() {
        let mut calls = 0;
        let err = wait_until("the thing", Duration::from_millis(100), || {
            calls += 1;
            None::<()>
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "timed out after 100ms waiting for the thing"
        );
        assert!(calls >= 2);
        assert_eq!(wait_until("x", Duration::ZERO, || Some(7)).unwrap(), 7);
    }

    #[test]
    fn programs_are_found_or_named_with_their_package() {
        let sh = find_program("sh", "dash").unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
        let err = find_program("rampart-no-such-program", "rampart-pkg").unwrap_err();
        assert_eq!(
            err.to_string(),
            "rampart-no-such-program not found; install the debian package rampart-pkg"
        );
    }

    #[test]
    fn private_dirs_are_created_and_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/private");
        create_private_dir(&dir).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let file = tmp.path().join("file");
        fs::write(&file, "").unwrap();
        assert!(create_private_dir(&file).is_err());
    }
}

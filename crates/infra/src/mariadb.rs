//! MariaDB instances: data directories, server flags, users, GTID replication, semi-sync.
//!
//! One [`Instance`] is one `mariadbd` process with its own directory. The primary takes every
//! write; the replica follows it over GTID replication (`MASTER_USE_GTID=slave_pos`), is
//! `read_only`, and acknowledges transactions semi-synchronously (`AFTER_SYNC`), so a commit
//! the application saw succeed is on the replica's relay log too, unless the primary fell back
//! to asynchronous replication after [`SEMI_SYNC_TIMEOUT_MS`] without an acknowledgement.
//!
//! Choices an operator should know:
//! - Root exists only as `unix_socket` accounts (the OS user running mariadbd), reachable only
//!   over the local socket. Everything rampart does as root goes through the `mariadb` client
//!   with SQL on stdin, so secrets never appear in argv, `/proc` or logs; passwords reach the
//!   server only as `mysql_native_password` hashes (`IDENTIFIED BY PASSWORD`), so the binlog
//!   and relay logs hold hashes, never plaintext. The one plaintext copy inside the data
//!   directory is the replica's `master.info` (MariaDB has no other way to keep the
//!   replication password); the instance directory is created 0700 for that reason.
//! - Users and grants are created on the primary only and reach the replica through the
//!   binlog: both data directories come from `mariadb-install-db` without a binlog, so the
//!   replica, starting from an empty GTID position, replays exactly rampart's bootstrap.
//!   Nothing is ever written on the replica (root ignores `read_only`), which keeps
//!   `gtid_strict_mode` happy and the replica promotable.
//! - Grants are by IP (`--skip-name-resolve`). On loopback (`rampart up --local`) the kernel
//!   picks source address 127.0.0.1 for any 127/8 destination, and MariaDB's `CHANGE MASTER`
//!   has no `MASTER_BIND`, so local-mode grants must name 127.0.0.1 for the app, the replica
//!   and the monitor.
//! - Bootstrap is additive: it creates missing users, resets their passwords to the current
//!   secrets and grants the listed privileges; it does not revoke privileges or drop users for
//!   hosts no longer listed.
//! - The binlog is kept for [`BINLOG_EXPIRE_SECONDS`] (7 days): a replica down longer than
//!   that cannot catch up and must be rebuilt.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::process::{self, describe_status, pause, wait_until, InfraError, Spec};

/// Debian package that provides `mariadbd` and `mariadb-install-db`.
pub const SERVER_PACKAGE: &str = "mariadb-server-core";
/// Debian package that provides the `mariadb` client.
pub const CLIENT_PACKAGE: &str = "mariadb-client-core";

/// The application's database.
pub const DATABASE: &str = "foobar";
/// The web server's runtime user: `SELECT, INSERT, UPDATE, DELETE` on [`DATABASE`] only.
pub const APP_USER: &str = "foobar_app";
/// The web server's migration user: `CREATE, ALTER, INDEX, REFERENCES, SELECT, INSERT,
/// UPDATE` on [`DATABASE`]; no `DROP` and no `DELETE`.
pub const MIGRATE_USER: &str = "foobar_migrate";
/// The replica's replication user: `REPLICATION SLAVE` only (enough for GTID and semi-sync).
pub const REPL_USER: &str = "rampart_repl";
/// The monitoring user (mysqld_exporter): `PROCESS, BINLOG MONITOR, REPLICA MONITOR` and
/// `SELECT` on `performance_schema`; no access to application data, at most 3 connections.
pub const MONITOR_USER: &str = "rampart_monitor";

/// How long a commit on the primary waits for the replica's acknowledgement before the primary
/// falls back to asynchronous replication. 2 s: longer than any healthy loopback or LAN round
/// trip with an fsync, short enough that a dead replica costs one visible stall, not an outage.
pub const SEMI_SYNC_TIMEOUT_MS: u32 = 2000;
/// How long [`Instance::start`] waits for a new server to answer (InnoDB crash recovery after
/// an unclean stop is the slow case).
pub const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Binlog retention.
pub const BINLOG_EXPIRE_SECONDS: u32 = 7 * 24 * 3600;
/// Longest socket path mariadbd accepts (`sun_path` is 108 bytes with its NUL).
pub const MAX_SOCKET_PATH: usize = 107;
/// Deadline for one SQL batch through the client.
const SQL_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline for one readiness probe.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// What an instance is for; decides the role-specific server flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Takes writes; semi-sync master (enabled at run time by [`enable_semi_sync`]).
    Primary,
    /// `read_only`, semi-sync slave, replicates from the primary.
    Replica,
}

/// One mariadbd: its identity, address and directory.
///
/// `dir` holds `data/` (the datadir), `tmp/` (its private tmpdir), `mariadbd.log` (error log plus stdout/stderr),
/// `mariadbd.pid` (rampart's pid file), `mysqld.sock` (unless the path is too long, see
/// [`Instance::socket`]) and `mariadb-install-db.log`.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Host name in the topology, e.g. `db1`; also the log basename.
    pub name: String,
    /// Primary or replica.
    pub role: Role,
    /// Unique per instance in a replication topology; GTIDs carry it.
    pub server_id: u32,
    /// The one address mariadbd listens on.
    pub bind: IpAddr,
    /// TCP port (3306 in the topology).
    pub port: u16,
    /// The instance directory, e.g. `<state>/hosts/db1`.
    pub dir: PathBuf,
    /// The network namespace mariadbd runs in (isolated mode), or `None` for this one.
    /// Root's SQL goes over the unix socket, which works from any namespace.
    pub netns: Option<String>,
}

impl Instance {
    /// `<dir>/data`.
    pub fn datadir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server's unix socket: `<dir>/mysqld.sock`, or, when that path is longer than
    /// [`MAX_SOCKET_PATH`] bytes (mariadbd aborts on those),
    /// `/tmp/rampart-<uid>/<16 hex digits of a hash of dir>.sock`. Pure: [`Instance::start`]
    /// creates the fallback's directory (0700, checked to be ours).
    pub fn socket(&self) -> PathBuf {
        socket_for(&self.dir, rustix::process::geteuid().as_raw())
    }

    /// rampart's pid file for this mariadbd: `<dir>/mariadbd.pid`.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("mariadbd.pid")
    }

    /// The error log, which also receives stdout and stderr: `<dir>/mariadbd.log`.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("mariadbd.log")
    }

    /// `<dir>/tmp`, the server's `--tmpdir`. Private per instance: a starting mariadbd (and
    /// `mariadb-install-db`) deletes every `#sql*` file in its tmpdir, which breaks any other
    /// server using the same directory (concurrent installs into a shared `/tmp` fail with
    /// "Unknown table 'mysql.tmp_user_sys'").
    pub fn tmpdir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// mariadbd's own pid file (`--pid-file`), distinct from rampart's [`Instance::pid_file`].
    pub fn server_pid_file(&self) -> PathBuf {
        self.datadir().join("mariadbd.server.pid")
    }

    /// The server's arguments, except `--user` (which depends on who runs it and is added by
    /// [`Instance::start`]).
    ///
    /// `--no-defaults` comes first (mariadbd only honours it there), so no `my.cnf` on the
    /// host changes the server. `--log-basename` comes before every log option because it
    /// resets log names given before it; the log options then name explicit paths anyway.
    /// Durability: `sync_binlog=1` and `innodb_flush_log_at_trx_commit=1`. Replication: row
    /// binlog, GTID strict mode, `log_slave_updates` (a promoted replica has the full history),
    /// semi-sync `AFTER_SYNC` with [`SEMI_SYNC_TIMEOUT_MS`], heartbeats below a 10 s
    /// `slave_net_timeout` so a dead primary is noticed quickly, crash-safe relay logs. The
    /// replica is `read_only`, a semi-sync slave, and resumes replication when it starts
    /// (no `--skip-slave-start`). `local_infile` is off. Connections are served by
    /// MariaDB's thread pool (`thread_handling=pool-of-threads`) rather than a thread each:
    /// with the web servers' pools a connection carries one short query at a time, and the
    /// pool cut the replica's CPU per proxied read by about a fifth in `bench/web.sh`.
    pub fn args(&self) -> Vec<OsString> {
        let datadir = self.datadir();
        let path = |p: &Path| p.display().to_string();
        let mut args: Vec<String> = vec![
            "--no-defaults".into(),
            format!("--log-basename={}", self.name),
            format!("--datadir={}", path(&datadir)),
            format!("--socket={}", path(&self.socket())),
            format!("--pid-file={}", path(&self.server_pid_file())),
            format!("--tmpdir={}", path(&self.tmpdir())),
            format!("--bind-address={}", self.bind),
            format!("--port={}", self.port),
            format!("--server-id={}", self.server_id),
            format!("--log-error={}", path(&self.log_file())),
            format!(
                "--log-bin={}",
                path(&datadir.join(format!("{}-bin", self.name)))
            ),
            format!(
                "--relay-log={}",
                path(&datadir.join(format!("{}-relay-bin", self.name)))
            ),
            "--binlog-format=ROW".into(),
            "--sync-binlog=1".into(),
            "--innodb-flush-log-at-trx-commit=1".into(),
            format!("--binlog-expire-logs-seconds={BINLOG_EXPIRE_SECONDS}"),
            "--gtid-strict-mode=ON".into(),
            "--log-slave-updates=ON".into(),
            "--relay-log-recovery=ON".into(),
            "--slave-net-timeout=10".into(),
            "--skip-name-resolve".into(),
            "--rpl-semi-sync-master-wait-point=AFTER_SYNC".into(),
            format!("--rpl-semi-sync-master-timeout={SEMI_SYNC_TIMEOUT_MS}"),
            "--max-connections=200".into(),
            "--thread-handling=pool-of-threads".into(),
            "--innodb-buffer-pool-size=128M".into(),
            "--character-set-server=utf8mb4".into(),
            "--collation-server=utf8mb4_unicode_ci".into(),
            "--local-infile=OFF".into(),
        ];
        if self.role == Role::Replica {
            args.push("--read-only=ON".into());
            args.push("--rpl-semi-sync-slave-enabled=ON".into());
        }
        args.into_iter().map(OsString::from).collect()
    }

    /// Starts this instance and waits until it answers `SELECT 1` on its socket.
    ///
    /// Creates the instance directory (0700) and, when `data/mysql` is missing, the data
    /// directory with `mariadb-install-db` (into `data.init`, renamed to `data` when complete,
    /// so an interrupted initialization is redone rather than half-used). Fails with
    /// [`InfraError::Exited`] (and the log's last lines) if mariadbd exits first, and with
    /// [`InfraError::Timeout`] after [`START_TIMEOUT`], in which case the process is left
    /// running (it may be in crash recovery) and [`Instance::stop`] stops it.
    pub fn start(&self) -> Result<Child, InfraError> {
        let server = find_program("mariadbd", SERVER_PACKAGE)?;
        client_program()?;
        let user = os_user()?;
        create_private_dir(&self.dir)?;
        create_private_dir(&self.tmpdir())?;
        let socket = self.socket();
        if let Some(parent) = socket.parent().filter(|p| *p != self.dir) {
            create_private_dir(parent)?;
        }
        self.init_datadir(&user)?;
        let mut args = self.args();
        args.push(format!("--user={user}").into());
        let spec = Spec {
            name: format!("{}/mariadbd", self.name),
            program: server,
            args,
            env: vec![],
            pid_file: self.pid_file(),
            log_file: self.log_file(),
            cwd: Some(self.dir.clone()),
        };
        let spec = match &self.netns {
            Some(ns) => crate::netns::wrap(ns, spec)?,
            None => spec,
        };
        let mut child = process::spawn(&spec)?;
        let what = format!(
            "{} to accept connections on {}",
            self.name,
            socket.display()
        );
        let ready = wait_until(&what, START_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(status));
            }
            self.ping().then_some(Ok(()))
        })?;
        match ready {
            Ok(()) => Ok(child),
            Err(status) => {
                // Reaped above, so the pid file is stale; stop() removes it.
                process::stop(&self.pid_file(), Duration::ZERO)?;
                Err(InfraError::Exited {
                    name: self.name.clone(),
                    program: "mariadbd".to_owned(),
                    status: describe_status(status),
                    log: self.log_file(),
                    tail: log_tail(&self.log_file(), 15),
                })
            }
        }
    }

    /// Stops this instance through its pid file (`SIGTERM`, which makes mariadbd shut down
    /// cleanly, then `SIGKILL` after `grace`). `Ok(true)` if it was running.
    pub fn stop(&self, grace: Duration) -> Result<bool, InfraError> {
        process::stop(&self.pid_file(), grace)
    }

    /// Whether the process in this instance's pid file is alive (not whether it is ready).
    pub fn is_running(&self) -> bool {
        process::running(&self.pid_file()).is_some()
    }

    /// Runs `sql` (one or more `;`-separated statements) as root over the socket and returns
    /// the client's stdout: tab-separated rows, no column names.
    ///
    /// The error names the instance and carries the server's error lines, with the SQL text
    /// (which the client echoes, and which may hold secrets) removed.
    pub fn sql(&self, sql: &str) -> Result<String, InfraError> {
        self.client(sql, false, &[], SQL_TIMEOUT)
    }

    /// Like [`Instance::sql`], with each string of `secrets` replaced by `<redacted>` in any
    /// error.
    fn sql_secret(&self, sql: &str, secrets: &[&str]) -> Result<String, InfraError> {
        self.client(sql, false, secrets, SQL_TIMEOUT)
    }

    /// The rows of a query as maps from column name to value (`NULL` stays `"NULL"`).
    fn query(&self, sql: &str) -> Result<Vec<HashMap<String, String>>, InfraError> {
        Ok(parse_batch(&self.client(sql, true, &[], SQL_TIMEOUT)?))
    }

    fn ping(&self) -> bool {
        self.client("SELECT 1", false, &[], PING_TIMEOUT)
            .is_ok_and(|out| out.trim() == "1")
    }

    fn client(
        &self,
        sql: &str,
        column_names: bool,
        secrets: &[&str],
        timeout: Duration,
    ) -> Result<String, InfraError> {
        let mut command = Command::new(client_program()?);
        command
            .arg("--no-defaults")
            .arg("--protocol=SOCKET")
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--user={}", os_user()?))
            .arg("--batch")
            .arg("--connect-timeout=5");
        if !column_names {
            command.arg("--skip-column-names");
        }
        for var in [
            "MYSQL_PWD",
            "MYSQL_HOST",
            "MYSQL_TCP_PORT",
            "MYSQL_UNIX_PORT",
        ] {
            command.env_remove(var);
        }
        let failed = |status: String, detail: String| InfraError::Command {
            name: self.name.clone(),
            command: "sql",
            status,
            detail,
        };
        let out = run_with_input(command, sql.as_bytes(), timeout).map_err(|e| match e {
            RunError::Spawn(e) => failed("not started".to_owned(), e.to_string()),
            RunError::Timeout => failed(format!("timed out after {timeout:?}"), String::new()),
        })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(failed(
                describe_status(out.status),
                client_errors(&String::from_utf8_lossy(&out.stderr), secrets),
            ))
        }
    }

    /// Creates the data directory unless `data/mysql` exists. Returns whether it did.
    fn init_datadir(&self, user: &str) -> Result<bool, InfraError> {
        let datadir = self.datadir();
        if datadir.join("mysql").is_dir() {
            return Ok(false);
        }
        if fs::read_dir(&datadir).is_ok_and(|mut entries| entries.next().is_some()) {
            return Err(InfraError::Invalid(format!(
                "{}: data directory {} is not empty but has no mysql/ system database; \
                 move it away to initialize a new one",
                self.name,
                datadir.display()
            )));
        }
        let program = find_program("mariadb-install-db", SERVER_PACKAGE)?;
        let staging = self.dir.join("data.init");
        if staging.exists() {
            fs::remove_dir_all(&staging)
                .map_err(|e| InfraError::io("remove directory", &staging, e))?;
        }
        let log_path = self.dir.join("mariadb-install-db.log");
        let log = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o640)
            .open(&log_path)
            .map_err(|e| InfraError::io("open log file", &log_path, e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| InfraError::io("open log file", &log_path, e))?;
        let mut command = Command::new(&program);
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", staging.display()))
            .arg(format!("--tmpdir={}", self.tmpdir().display()))
            .arg("--auth-root-authentication-method=socket")
            .arg(format!("--auth-root-socket-user={user}"))
            .arg("--skip-test-db");
        if is_root() {
            command.arg("--user=root");
        }
        command
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let status = command.status().map_err(|source| InfraError::Spawn {
            name: self.name.clone(),
            program: program.clone(),
            source,
        })?;
        if !status.success() {
            return Err(InfraError::Command {
                name: self.name.clone(),
                command: "mariadb-install-db",
                status: describe_status(status),
                detail: format!("see {}{}", log_path.display(), log_errors(&log_path)),
            });
        }
        if datadir.exists() {
            // Empty (checked above).
            fs::remove_dir(&datadir)
                .map_err(|e| InfraError::io("remove directory", &datadir, e))?;
        }
        fs::rename(&staging, &datadir).map_err(|e| InfraError::io("rename", &staging, e))?;
        Ok(true)
    }
}

/// `<dir>/mysqld.sock`, or a short path under `/tmp/rampart-<uid>/` when that is too long.
fn socket_for(dir: &Path, uid: u32) -> PathBuf {
    let local = dir.join("mysqld.sock");
    if local.as_os_str().len() <= MAX_SOCKET_PATH {
        return local;
    }
    PathBuf::from(format!(
        "/tmp/rampart-{uid}/{:016x}.sock",
        fnv1a64(dir.as_os_str().as_bytes())
    ))
}

/// FNV-1a: a stable hash (unlike std's `DefaultHasher`, which may change between releases),
/// so the fallback socket path of a directory never changes.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Creates `dir` with mode 0700 (missing parents 0755) and checks that it is a real directory
/// owned by us and not accessible to others (it may hold sockets and the replication
/// password); a looser mode is tightened.
fn create_private_dir(dir: &Path) -> Result<(), InfraError> {
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

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The name of the OS user this process runs as (effective uid): from `/etc/passwd`, else
/// `$USER` (for users from other NSS sources). mariadbd gets `--user=<it>`, which it requires
/// when running as root and ignores otherwise; root's `unix_socket` account is created for it.
pub fn os_user() -> Result<String, InfraError> {
    static USER: OnceLock<Option<String>> = OnceLock::new();
    USER.get_or_init(|| {
        let uid = rustix::process::geteuid().as_raw();
        let from_passwd = fs::read_to_string("/etc/passwd").ok().and_then(|text| {
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let line_uid: u32 = fields.nth(1)?.parse().ok()?;
                (line_uid == uid && !name.is_empty()).then(|| name.to_owned())
            })
        });
        from_passwd
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .or_else(|| (uid == 0).then(|| "root".to_owned()))
    })
    .clone()
    .ok_or_else(|| {
        InfraError::Invalid(format!(
            "cannot find the user name of uid {} in /etc/passwd or $USER",
            rustix::process::geteuid().as_raw()
        ))
    })
}

/// Finds `name` in `PATH` or the usual system directories (`mariadbd` lives in `/usr/sbin`,
/// which a normal user's `PATH` often lacks).
pub(crate) fn find_program(name: &str, package: &'static str) -> Result<PathBuf, InfraError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
                .into_iter()
                .map(PathBuf::from),
        )
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
        .ok_or_else(|| InfraError::MissingBinary {
            program: name.to_owned(),
            package,
        })
}

fn client_program() -> Result<PathBuf, InfraError> {
    static CLIENT: OnceLock<Option<PathBuf>> = OnceLock::new();
    CLIENT
        .get_or_init(|| find_program("mariadb", CLIENT_PACKAGE).ok())
        .clone()
        .ok_or_else(|| InfraError::MissingBinary {
            program: "mariadb".to_owned(),
            package: CLIENT_PACKAGE,
        })
}

/// Checks that `mariadbd`, `mariadb-install-db` and the `mariadb` client are installed; the
/// error names the Debian package to install.
pub fn check_installed() -> Result<(), InfraError> {
    find_program("mariadbd", SERVER_PACKAGE)?;
    find_program("mariadb-install-db", SERVER_PACKAGE)?;
    client_program()?;
    Ok(())
}

/// The last `lines` lines of a log file, each on its own line after a leading newline, or
/// empty when there is nothing to show.
fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(text) = fs::read(path) else {
        return String::new();
    };
    let start = text.len().saturating_sub(8192);
    let text = String::from_utf8_lossy(&text[start..]);
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    tail.iter().map(|l| format!("\n  {l}")).collect()
}

/// The error lines of a log (`ERROR` anywhere in the line), or its tail if there are none.
fn log_errors(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let errors: Vec<String> = text
        .lines()
        .filter(|l| l.contains("ERROR"))
        .take(10)
        .map(|l| format!("\n  {l}"))
        .collect();
    if errors.is_empty() {
        log_tail(path, 10)
    } else {
        errors.concat()
    }
}

/// The parts of the client's stderr that are safe to show: the client echoes each failing
/// statement between `--------------` lines and quotes SQL after "near" in syntax errors, so
/// both are dropped, and every secret is replaced by `<redacted>`.
fn client_errors(stderr: &str, secrets: &[&str]) -> String {
    let mut kept = Vec::new();
    let mut in_echo = false;
    for line in stderr.lines() {
        if line.trim() == "--------------" {
            in_echo = !in_echo;
            continue;
        }
        if in_echo || line.trim().is_empty() {
            continue;
        }
        let mut line = match line.find(" near '") {
            Some(at) => format!("{} near <sql omitted>", &line[..at]),
            None => line.to_owned(),
        };
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            line = line.replace(secret, "<redacted>");
        }
        kept.push(line);
    }
    let mut text = kept.join("; ");
    if text.len() > 2000 {
        let mut cut = 2000;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    if text.is_empty() {
        "no error output".to_owned()
    } else {
        text
    }
}

/// Parses `mariadb --batch` output with a header line into rows of column → value,
/// undoing the client's escapes (`\t`, `\n`, `\0`, `\\`).
fn parse_batch(text: &str) -> Vec<HashMap<String, String>> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let names: Vec<String> = header.split('\t').map(unescape_batch).collect();
    lines
        .map(|line| {
            names
                .iter()
                .cloned()
                .zip(line.split('\t').map(unescape_batch))
                .collect()
        })
        .collect()
}

fn unescape_batch(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// A single-quoted SQL string literal (for the default `sql_mode`, where backslash escapes).
fn sql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

enum RunError {
    Spawn(io::Error),
    Timeout,
}

struct RunOutput {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs `command` with `input` on stdin, collecting stdout and stderr, killing it (our own
/// child, by handle) after `timeout`.
fn run_with_input(
    mut command: Command,
    input: &[u8],
    timeout: Duration,
) -> Result<RunOutput, RunError> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(RunError::Spawn)?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let read_all = |pipe: Option<Box<dyn Read + Send>>| {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    };
    std::thread::scope(|scope| {
        scope.spawn(move || {
            if let Some(mut stdin) = stdin {
                // A client that exits early closes the pipe; its status tells why.
                let _ = stdin.write_all(input);
            }
        });
        let out = scope.spawn(move || read_all(stdout.map(|p| Box::new(p) as Box<_>)));
        let err = scope.spawn(move || read_all(stderr.map(|p| Box::new(p) as Box<_>)));
        let started = Instant::now();
        let mut step = Duration::from_millis(1);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if started.elapsed() < timeout => {
                    pause(step);
                    step = (step * 2).min(Duration::from_millis(20));
                }
                Ok(None) | Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(RunError::Timeout);
                }
            }
        };
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        status.map(|status| RunOutput {
            status,
            stdout,
            stderr,
        })
    })
}

/// The database passwords, one file each in a 0700 directory, files 0600.
///
/// 32 random alphanumeric characters (about 190 bits): safe inside SQL string literals,
/// URLs and environment variables without escaping. `Debug` shows no secret.
#[derive(Clone)]
pub struct Secrets {
    /// [`APP_USER`]'s password (`db-app.password`).
    pub app: String,
    /// [`MIGRATE_USER`]'s password (`db-migrate.password`).
    pub migrate: String,
    /// [`REPL_USER`]'s password (`db-repl.password`).
    pub repl: String,
    /// [`MONITOR_USER`]'s password (`db-monitor.password`).
    pub monitor: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("app", &"<redacted>")
            .field("migrate", &"<redacted>")
            .field("repl", &"<redacted>")
            .field("monitor", &"<redacted>")
            .finish()
    }
}

/// Length of generated passwords.
const PASSWORD_LEN: usize = 32;

impl Secrets {
    /// Reads the four password files in `dir`, creating any that is missing.
    ///
    /// `dir` is created 0700 (and tightened to 0700 if looser); existing files are tightened
    /// to 0600. A new file is written under a temporary name and linked into place, so a
    /// crash never leaves a truncated password and two concurrent callers agree on one value.
    /// A file that is not 16 to 128 ASCII letters and digits is an error (never overwritten).
    pub fn load_or_create(dir: &Path) -> Result<Secrets, InfraError> {
        create_private_dir(dir)?;
        Ok(Secrets {
            app: load_or_create_secret(&dir.join("db-app.password"))?,
            migrate: load_or_create_secret(&dir.join("db-migrate.password"))?,
            repl: load_or_create_secret(&dir.join("db-repl.password"))?,
            monitor: load_or_create_secret(&dir.join("db-monitor.password"))?,
        })
    }

    fn all(&self) -> [&str; 4] {
        [&self.app, &self.migrate, &self.repl, &self.monitor]
    }
}

fn valid_password(s: &str) -> bool {
    (16..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn load_or_create_secret(path: &Path) -> Result<String, InfraError> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let meta = fs::metadata(path).map_err(|e| InfraError::io("inspect", path, e))?;
            if meta.mode() & 0o077 != 0 {
                fs::set_permissions(path, fs::Permissions::from_mode(0o600))
                    .map_err(|e| InfraError::io("set permissions of", path, e))?;
            }
            let password = text.trim_end_matches(['\n', '\r']);
            if !valid_password(password) {
                return Err(InfraError::Invalid(format!(
                    "{}: a password must be 16 to 128 ascii letters and digits",
                    path.display()
                )));
            }
            Ok(password.to_owned())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let password = random_password()?;
            let mut tmp_name = OsString::from(".");
            tmp_name.push(path.file_name().unwrap_or_default());
            tmp_name.push(format!(".{}.tmp", std::process::id()));
            let tmp = path.with_file_name(tmp_name);
            let _ = fs::remove_file(&tmp);
            let write = || -> io::Result<()> {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)?;
                file.write_all(password.as_bytes())?;
                file.write_all(b"\n")?;
                file.sync_all()
            };
            let linked = write().and_then(|()| fs::hard_link(&tmp, path));
            let _ = fs::remove_file(&tmp);
            match linked {
                Ok(()) => Ok(password),
                // Someone else created it meanwhile: theirs wins.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => load_or_create_secret(path),
                Err(e) => Err(InfraError::io("write password file", path, e)),
            }
        }
        Err(e) => Err(InfraError::io("read password file", path, e)),
    }
}

fn random_password() -> Result<String, InfraError> {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut password = String::with_capacity(PASSWORD_LEN);
    let mut buf = [0u8; 64];
    while password.len() < PASSWORD_LEN {
        getrandom::getrandom(&mut buf).map_err(|e| {
            InfraError::Invalid(format!("cannot read random bytes from the os: {e}"))
        })?;
        // Rejection sampling: 248 = 4 * 62, so every character is equally likely.
        for &b in buf.iter().filter(|&&b| b < 248) {
            if password.len() < PASSWORD_LEN {
                password.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    Ok(password)
}

/// Where each user may connect from: the host part of `'user'@'host'`, as IP literals
/// (`127.0.0.1`, `198.18.2.11`) because the servers run with `--skip-name-resolve`.
/// MariaDB's `%` and `_` patterns are accepted but discouraged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// The web servers: get [`APP_USER`] and [`MIGRATE_USER`].
    pub app_hosts: Vec<String>,
    /// Where the replica connects from: gets [`REPL_USER`].
    pub replica_hosts: Vec<String>,
    /// The monitoring agents: get [`MONITOR_USER`] (also always from `localhost`).
    pub monitor_hosts: Vec<String>,
}

fn check_host(host: &str) -> Result<(), InfraError> {
    let ok = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".:-_%/".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(InfraError::Invalid(format!(
            "database grant host {host:?}: use an ip address such as 198.18.2.11"
        )))
    }
}

fn account(user: &str, host: &str) -> String {
    format!("{}@{}", sql_string(user), sql_string(host))
}

/// Creates the application database and users on the primary. Idempotent: run it after every
/// start (it also applies changed secrets and newly listed hosts).
///
/// Creates database [`DATABASE`] (utf8mb4), [`APP_USER`] and [`MIGRATE_USER`] from each app
/// host, [`REPL_USER`] from each replica host, [`MONITOR_USER`] from each monitor host and
/// `localhost`, drops anonymous accounts. Passwords are sent as `mysql_native_password` hashes
/// computed by the server, so the binlog never holds them in plaintext. Everything is
/// binlogged and so replayed by the replica. Refuses to run on a replica or a read-only
/// server (root would bypass `read_only` and fork the GTID history).
pub fn bootstrap_primary(
    primary: &Instance,
    secrets: &Secrets,
    grants: &Grants,
) -> Result<(), InfraError> {
    if primary.role != Role::Primary {
        return Err(InfraError::Invalid(format!(
            "{}: bootstrap runs on the primary only",
            primary.name
        )));
    }
    for host in grants
        .app_hosts
        .iter()
        .chain(&grants.replica_hosts)
        .chain(&grants.monitor_hosts)
    {
        check_host(host)?;
    }
    if secrets.all().iter().any(|s| !valid_password(s)) {
        return Err(InfraError::Invalid(
            "database passwords must be 16 to 128 ascii letters and digits".to_owned(),
        ));
    }
    if primary.sql("SELECT @@GLOBAL.read_only")?.trim() != "0" {
        return Err(InfraError::Invalid(format!(
            "{}: server is read-only; bootstrap runs on the primary only",
            primary.name
        )));
    }
    let redact = secrets.all();
    let hashes_sql = format!(
        "SELECT {};",
        secrets
            .all()
            .iter()
            .map(|s| format!("PASSWORD({})", sql_string(s)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let hashes_out = primary.sql_secret(&hashes_sql, &redact)?;
    let hashes: Vec<&str> = hashes_out.trim_end().split('\t').collect();
    let hash_ok = |h: &&str| {
        h.len() == 41 && h.starts_with('*') && h[1..].bytes().all(|b| b.is_ascii_hexdigit())
    };
    let [app, migrate, repl, monitor] = hashes[..] else {
        return Err(InfraError::Invalid(format!(
            "{}: unexpected password hash output",
            primary.name
        )));
    };
    if !hashes.iter().all(hash_ok) {
        return Err(InfraError::Invalid(format!(
            "{}: unexpected password hash output",
            primary.name
        )));
    }
    let anonymous = primary.sql("SELECT Host FROM mysql.global_priv WHERE User = ''")?;

    let mut sql = format!(
        "CREATE DATABASE IF NOT EXISTS `{DATABASE}` \
         CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n"
    );
    for host in anonymous.lines().filter(|h| !h.is_empty()) {
        sql.push_str(&format!("DROP USER IF EXISTS {};\n", account("", host)));
    }
    let mut user = |name: &str, hash: &str, hosts: &[String], limits: &str, grants: &[&str]| {
        for host in hosts {
            let acct = account(name, host);
            let ident = format!("IDENTIFIED BY PASSWORD {}{limits}", sql_string(hash));
            sql.push_str(&format!("CREATE USER IF NOT EXISTS {acct} {ident};\n"));
            sql.push_str(&format!("ALTER USER {acct} {ident};\n"));
            for grant in grants {
                sql.push_str(&format!("GRANT {grant} TO {acct};\n"));
            }
        }
    };
    let on_db = |privileges: &str| format!("{privileges} ON `{DATABASE}`.*");
    user(
        APP_USER,
        app,
        &grants.app_hosts,
        "",
        &[&on_db("SELECT, INSERT, UPDATE, DELETE")],
    );
    user(
        MIGRATE_USER,
        migrate,
        &grants.app_hosts,
        "",
        &[&on_db(
            "CREATE, ALTER, INDEX, REFERENCES, SELECT, INSERT, UPDATE",
        )],
    );
    user(
        REPL_USER,
        repl,
        &grants.replica_hosts,
        "",
        &["REPLICATION SLAVE ON *.*"],
    );
    let mut monitor_hosts = grants.monitor_hosts.clone();
    if !monitor_hosts.iter().any(|h| h == "localhost") {
        monitor_hosts.push("localhost".to_owned());
    }
    user(
        MONITOR_USER,
        monitor,
        &monitor_hosts,
        " WITH MAX_USER_CONNECTIONS 3",
        &[
            "PROCESS, BINLOG MONITOR, REPLICA MONITOR ON *.*",
            "SELECT ON `performance_schema`.*",
        ],
    );
    let mut redact_all: Vec<&str> = redact.to_vec();
    redact_all.extend_from_slice(&hashes);
    primary.sql_secret(&sql, &redact_all)?;
    Ok(())
}

/// A replica's replication state, from `SHOW SLAVE STATUS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// `Master_Host`.
    pub master_host: String,
    /// `Master_Port`.
    pub master_port: u16,
    /// `Master_User`.
    pub master_user: String,
    /// `Using_Gtid`: `Slave_Pos` when configured by [`setup_replica`].
    pub using_gtid: String,
    /// `Slave_IO_Running` as reported: `Yes`, `No`, `Connecting` or `Preparing`.
    pub io_state: String,
    /// `Slave_IO_Running` is `Yes`: connected to the primary.
    pub io_running: bool,
    /// `Slave_SQL_Running` is `Yes`: applying events.
    pub sql_running: bool,
    /// `Seconds_Behind_Master`, `None` when unknown (a thread not running).
    pub seconds_behind: Option<u64>,
    /// `@@gtid_slave_pos`: the last GTID applied from each domain.
    pub gtid_slave_pos: String,
    /// `Last_IO_Errno` (0 if none).
    pub last_io_errno: u32,
    /// `Last_IO_Error`.
    pub last_io_error: String,
    /// `Last_SQL_Errno` (0 if none).
    pub last_sql_errno: u32,
    /// `Last_SQL_Error`.
    pub last_sql_error: String,
}

/// The replica's status, or `None` if it is not configured as a replica.
pub fn replica_status(replica: &Instance) -> Result<Option<ReplicaStatus>, InfraError> {
    let rows = replica.query("SHOW SLAVE STATUS")?;
    let Some(row) = rows.into_iter().next() else {
        return Ok(None);
    };
    let get = |key: &str| row.get(key).cloned().unwrap_or_default();
    fn number<T: std::str::FromStr>(row: &HashMap<String, String>, key: &str) -> Option<T> {
        row.get(key)?.parse().ok()
    }
    let gtid_slave_pos = replica
        .sql("SELECT @@GLOBAL.gtid_slave_pos")?
        .trim()
        .to_owned();
    Ok(Some(ReplicaStatus {
        master_host: get("Master_Host"),
        master_port: number(&row, "Master_Port").unwrap_or(0),
        master_user: get("Master_User"),
        using_gtid: get("Using_Gtid"),
        io_running: get("Slave_IO_Running") == "Yes",
        io_state: get("Slave_IO_Running"),
        sql_running: get("Slave_SQL_Running") == "Yes",
        seconds_behind: number(&row, "Seconds_Behind_Master"),
        gtid_slave_pos,
        last_io_errno: number(&row, "Last_IO_Errno").unwrap_or(0),
        last_io_error: get("Last_IO_Error"),
        last_sql_errno: number(&row, "Last_SQL_Errno").unwrap_or(0),
        last_sql_error: get("Last_SQL_Error"),
    }))
}

/// The instance's `@@gtid_binlog_pos`: the last GTID in its binlog per domain, e.g. `0-1-42`
/// (domain-server_id-sequence).
pub fn gtid_binlog_pos(instance: &Instance) -> Result<String, InfraError> {
    Ok(instance
        .sql("SELECT @@GLOBAL.gtid_binlog_pos")?
        .trim()
        .to_owned())
}

/// MySQL error "access denied": a replica configured with an old password is reconfigured.
const ER_ACCESS_DENIED: u32 = 1045;

/// Points the replica at the primary and starts replication. Idempotent: a replica already
/// configured for this primary is only started if a thread is stopped (the password is
/// re-sent only when the primary refused it, error 1045, so rotating `repl` works).
///
/// Makes sure `rpl_semi_sync_slave_enabled` is on before the IO thread connects (restarting
/// the IO thread if it had to turn it on). The replica starts from `slave_pos`, which is
/// empty on a fresh replica, so it replays the primary's whole binlog.
pub fn setup_replica(
    replica: &Instance,
    primary: &Instance,
    secrets: &Secrets,
) -> Result<(), InfraError> {
    if replica.role != Role::Replica {
        return Err(InfraError::Invalid(format!(
            "{}: setup_replica needs an instance with the replica role",
            replica.name
        )));
    }
    if !valid_password(&secrets.repl) {
        return Err(InfraError::Invalid(
            "the replication password must be ascii letters and digits".to_owned(),
        ));
    }
    let mut restart_io = false;
    if replica
        .sql("SELECT @@GLOBAL.rpl_semi_sync_slave_enabled")?
        .trim()
        != "1"
    {
        replica.sql("SET GLOBAL rpl_semi_sync_slave_enabled = ON")?;
        restart_io = true;
    }
    let host = primary.bind.to_string();
    let status = replica_status(replica)?;
    let configured = status.as_ref().filter(|s| {
        s.master_host == host
            && s.master_port == primary.port
            && s.master_user == REPL_USER
            && s.using_gtid.eq_ignore_ascii_case("Slave_Pos")
            && s.last_io_errno != ER_ACCESS_DENIED
    });
    match configured {
        Some(s) => {
            if s.io_state == "No" || !s.sql_running {
                replica.sql("START SLAVE")?;
            } else if restart_io {
                replica.sql("STOP SLAVE IO_THREAD; START SLAVE IO_THREAD")?;
            }
        }
        None => {
            let stop = if status.is_some() {
                "STOP SLAVE;\n"
            } else {
                ""
            };
            let sql = format!(
                "{stop}CHANGE MASTER TO MASTER_HOST={}, MASTER_PORT={}, MASTER_USER={}, \
                 MASTER_PASSWORD={}, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, \
                 MASTER_HEARTBEAT_PERIOD=1;\nSTART SLAVE;\n",
                sql_string(&host),
                primary.port,
                sql_string(REPL_USER),
                sql_string(&secrets.repl),
            );
            replica.sql_secret(&sql, &[&secrets.repl])?;
        }
    }
    Ok(())
}

/// Waits until both replication threads run (`Slave_IO_Running` and `Slave_SQL_Running` are
/// `Yes`). Fails at once if the SQL thread stopped with an error (it does not retry by
/// itself), else after `deadline` with the last IO and SQL errors.
pub fn wait_replica_connected(
    replica: &Instance,
    deadline: Duration,
) -> Result<ReplicaStatus, InfraError> {
    let mut last: Option<ReplicaStatus> = None;
    let mut last_err: Option<InfraError> = None;
    let what = format!("{} replication to run", replica.name);
    let outcome = wait_until(&what, deadline, || match replica_status(replica) {
        Ok(Some(s)) if s.io_running && s.sql_running => Some(Ok(s)),
        Ok(Some(s)) if !s.sql_running && s.last_sql_errno != 0 => Some(Err(s)),
        Ok(s) => {
            last = s;
            None
        }
        Err(e) => {
            last_err = Some(e);
            None
        }
    });
    let describe = |s: &ReplicaStatus| {
        format!(
            "replication from {}:{} not running: io thread {} ({}: {}), sql thread {} ({}: {})",
            s.master_host,
            s.master_port,
            s.io_state,
            s.last_io_errno,
            s.last_io_error,
            if s.sql_running { "Yes" } else { "No" },
            s.last_sql_errno,
            s.last_sql_error
        )
    };
    match outcome {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(status)) => Err(InfraError::Replication {
            name: replica.name.clone(),
            detail: describe(&status),
        }),
        Err(timeout) => Err(match (last, last_err) {
            (Some(s), _) => InfraError::Replication {
                name: replica.name.clone(),
                detail: format!("{} after {deadline:?}", describe(&s)),
            },
            (None, Some(e)) => e,
            (None, None) => InfraError::Replication {
                name: replica.name.clone(),
                detail: format!("not configured as a replica ({timeout})"),
            },
        }),
    }
}

/// The primary's semi-sync state, from `SHOW GLOBAL STATUS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SemiSyncStatus {
    /// `Rpl_semi_sync_master_status` is `ON`: commits wait for an acknowledgement.
    pub active: bool,
    /// `Rpl_semi_sync_master_clients`: connected semi-sync replicas.
    pub clients: u32,
    /// `Rpl_semi_sync_master_yes_tx`: commits acknowledged by a replica.
    pub yes_tx: u64,
    /// `Rpl_semi_sync_master_no_tx`: commits that were not (timed out or semi-sync off).
    pub no_tx: u64,
}

/// The primary's semi-sync counters.
pub fn semi_sync_status(primary: &Instance) -> Result<SemiSyncStatus, InfraError> {
    let out = primary.sql("SHOW GLOBAL STATUS LIKE 'Rpl\\_semi\\_sync\\_master\\_%'")?;
    let mut status = SemiSyncStatus::default();
    for line in out.lines() {
        let Some((name, value)) = line.split_once('\t') else {
            continue;
        };
        match name {
            "Rpl_semi_sync_master_status" => status.active = value == "ON",
            "Rpl_semi_sync_master_clients" => status.clients = value.parse().unwrap_or(0),
            "Rpl_semi_sync_master_yes_tx" => status.yes_tx = value.parse().unwrap_or(0),
            "Rpl_semi_sync_master_no_tx" => status.no_tx = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    Ok(status)
}

/// Turns on semi-sync on the primary and waits until a semi-sync replica is connected and
/// semi-sync is active.
///
/// Call it only once the replica is connected ([`wait_replica_connected`]): with semi-sync on
/// and no replica, every commit waits out [`SEMI_SYNC_TIMEOUT_MS`] before the primary falls
/// back to asynchronous. It is a runtime setting, not a flag, for the same reason: a
/// restarted primary runs asynchronously until this is called again.
pub fn enable_semi_sync(primary: &Instance, deadline: Duration) -> Result<(), InfraError> {
    primary.sql("SET GLOBAL rpl_semi_sync_master_enabled = ON")?;
    let what = format!("{} semi-sync to be active with a replica", primary.name);
    wait_until(&what, deadline, || {
        semi_sync_status(primary)
            .ok()
            .filter(|s| s.active && s.clients >= 1)
    })?;
    Ok(())
}

/// Brings up a primary and its replica, ready for the application:
/// loads or creates the secrets in `secrets_dir`, starts the primary, bootstraps it, starts
/// the replica, points it at the primary, waits until replication runs and turns on
/// semi-sync. Idempotent over restarts (same directories, same secrets).
///
/// On error, an instance that was already started keeps running; stop it with
/// [`Instance::stop`].
pub fn bring_up_pair(
    primary: &Instance,
    replica: &Instance,
    secrets_dir: &Path,
    grants: &Grants,
) -> Result<(Child, Child, Secrets), InfraError> {
    let secrets = Secrets::load_or_create(secrets_dir)?;
    let primary_child = primary.start()?;
    bootstrap_primary(primary, &secrets, grants)?;
    let replica_child = replica.start()?;
    setup_replica(replica, primary, &secrets)?;
    wait_replica_connected(replica, Duration::from_secs(30))?;
    enable_semi_sync(primary, Duration::from_secs(10))?;
    Ok((primary_child, replica_child, secrets))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn instance(role: Role, dir: &str) -> Instance {
        Instance {
            name: "db1".to_owned(),
            role,
            server_id: 7,
            bind: "127.0.0.1".parse().unwrap(),
            port: 3306,
            dir: PathBuf::from(dir),
            netns: None,
        }
    }

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn args_order_and_content() {
        let check = |role: Role| {
            let args = strings(&instance(role, "/state/hosts/db1").args());
            assert_eq!(args[0], "--no-defaults");
            let basename = args.iter().position(|a| a == "--log-basename=db1").unwrap();
            let log_options = [
                "--log-bin",
                "--relay-log",
                "--log-error",
                "--general-log",
                "--slow-query-log",
                "--log-basename",
            ];
            for (i, arg) in args.iter().enumerate() {
                let name = arg.split('=').next().unwrap();
                if log_options.contains(&name) && name != "--log-basename" {
                    assert!(i > basename, "{arg} must follow --log-basename");
                }
            }
            assert_eq!(
                args.iter()
                    .filter(|a| a.starts_with("--log-basename"))
                    .count(),
                1
            );
            for expected in [
                "--datadir=/state/hosts/db1/data",
                "--socket=/state/hosts/db1/mysqld.sock",
                "--pid-file=/state/hosts/db1/data/mariadbd.server.pid",
                "--tmpdir=/state/hosts/db1/tmp",
                "--bind-address=127.0.0.1",
                "--port=3306",
                "--server-id=7",
                "--log-bin=/state/hosts/db1/data/db1-bin",
                "--relay-log=/state/hosts/db1/data/db1-relay-bin",
                "--log-error=/state/hosts/db1/mariadbd.log",
                "--binlog-format=ROW",
                "--sync-binlog=1",
                "--innodb-flush-log-at-trx-commit=1",
                "--gtid-strict-mode=ON",
                "--log-slave-updates=ON",
                "--skip-name-resolve",
                "--rpl-semi-sync-master-wait-point=AFTER_SYNC",
                "--rpl-semi-sync-master-timeout=2000",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_unicode_ci",
            ] {
                assert!(args.iter().any(|a| a == expected), "{role:?}: {expected}");
            }
            assert!(!args.iter().any(|a| a.contains("skip-slave-start")));
            assert!(!args.iter().any(|a| a.starts_with("--user")));
            args
        };
        let primary = check(Role::Primary);
        assert!(!primary.iter().any(|a| a.starts_with("--read-only")));
        assert!(!primary.iter().any(|a| a.contains("semi-sync-slave")));
        let replica = check(Role::Replica);
        assert!(replica.iter().any(|a| a == "--read-only=ON"));
        assert!(replica
            .iter()
            .any(|a| a == "--rpl-semi-sync-slave-enabled=ON"));
    }

    #[test]
    fn socket_paths() {
        let check = |dir: &str, uid: u32, expected: &str| {
            assert_eq!(
                socket_for(Path::new(dir), uid),
                PathBuf::from(expected),
                "{dir}"
            );
        };
        check("/state/hosts/db1", 1000, "/state/hosts/db1/mysqld.sock");
        // 107 bytes exactly is still fine: 95 + "/mysqld.sock" (12).
        let dir95 = format!("/{}", "d".repeat(94));
        check(&dir95, 0, &format!("{dir95}/mysqld.sock"));
        let dir96 = format!("/{}", "d".repeat(95));
        let long = socket_for(Path::new(&dir96), 1000);
        let long = long.to_str().unwrap();
        assert!(long.starts_with("/tmp/rampart-1000/"), "{long}");
        assert!(long.ends_with(".sock"));
        let hash = &long["/tmp/rampart-1000/".len()..long.len() - ".sock".len()];
        assert_eq!(hash.len(), 16);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
        // Stable, and different for different directories.
        assert_eq!(socket_for(Path::new(&dir96), 1000).to_str().unwrap(), long);
        let other = format!("/{}", "e".repeat(95));
        assert_ne!(socket_for(Path::new(&other), 1000).to_str().unwrap(), long);
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn client_errors_drop_sql_and_secrets() {
        let check = |stderr: &str, secrets: &[&str], expected: &str| {
            assert_eq!(client_errors(stderr, secrets), expected);
        };
        check(
            "--------------\nALTER USER 'a'@'b' IDENTIFIED BY 'Secret123'\n--------------\n\n\
             ERROR 1142 (42000) at line 1: INSERT command denied to user 'x'@'localhost'\n",
            &["Secret123"],
            "ERROR 1142 (42000) at line 1: INSERT command denied to user 'x'@'localhost'",
        );
        check(
            "ERROR 1064 (42000) at line 1: You have an error in your SQL syntax; check the \
             manual that corresponds to your MariaDB server version for the right syntax to \
             use near 'selec 'Secret123' from dual' at line 1\n",
            &[],
            "ERROR 1064 (42000) at line 1: You have an error in your SQL syntax; check the \
             manual that corresponds to your MariaDB server version for the right syntax to \
             use near <sql omitted>",
        );
        check(
            "ERROR 1 Secret123 and Other456\n",
            &["Secret123", "Other456", ""],
            "ERROR 1 <redacted> and <redacted>",
        );
        check("", &[], "no error output");
    }

    #[test]
    fn batch_output_parsing() {
        let rows = parse_batch("A\tB\tC\nYes\tline\\none\\ttab\\\\\tNULL\nNo\t\t0\n");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["A"], "Yes");
        assert_eq!(rows[0]["B"], "line\none\ttab\\");
        assert_eq!(rows[0]["C"], "NULL");
        assert_eq!(rows[1]["B"], "");
        assert!(parse_batch("").is_empty());
        assert!(parse_batch("A\tB\n").is_empty());
    }

    #[test]
    fn sql_strings() {
        let check = |input: &str, expected: &str| assert_eq!(sql_string(input), expected);
        check("abc", "'abc'");
        check("a'b", "'a''b'");
        check("a\\'", "'a\\\\'''");
        check("127.0.0.1", "'127.0.0.1'");
        assert_eq!(account("foobar_app", "10.0.0.1"), "'foobar_app'@'10.0.0.1'");
    }

    #[test]
    fn hosts_are_checked() {
        for ok in [
            "127.0.0.1",
            "198.18.2.11",
            "::1",
            "fd00::1",
            "10.0.0.%",
            "localhost",
        ] {
            assert!(check_host(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a'b", "x y", "a\\b", "h;DROP"] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_created_private_and_reloaded() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("secrets");
        let first = Secrets::load_or_create(&dir).unwrap();
        for s in first.all() {
            assert_eq!(s.len(), PASSWORD_LEN);
            assert!(valid_password(s), "{s}");
        }
        assert_ne!(first.app, first.repl);
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        for file in [
            "db-app.password",
            "db-migrate.password",
            "db-repl.password",
            "db-monitor.password",
        ] {
            assert_eq!(
                fs::metadata(dir.join(file)).unwrap().mode() & 0o777,
                0o600,
                "{file}"
            );
        }
        let again = Secrets::load_or_create(&dir).unwrap();
        assert_eq!(again.all(), first.all());
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            4,
            "no temporary files left"
        );

        let debug = format!("{first:?}");
        assert!(!debug.contains(&first.app), "{debug}");
        assert!(debug.contains("<redacted>"));

        // Loose permissions are tightened; a malformed file is an error, never replaced.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(
            dir.join("db-app.password"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        Secrets::load_or_create(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        assert_eq!(
            fs::metadata(dir.join("db-app.password")).unwrap().mode() & 0o777,
            0o600
        );
        fs::write(dir.join("db-repl.password"), "short'\n").unwrap();
        let err = Secrets::load_or_create(&dir).unwrap_err().to_string();
        assert!(err.contains("db-repl.password"), "{err}");
        assert_eq!(
            fs::read_to_string(dir.join("db-repl.password")).unwrap(),
            "short'\n"
        );
    }
}

//! One `mariadbd`: its directory, socket and server flags, its data directory's
//! initialization, start (waiting until it answers) and stop, and root's SQL to it.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::client::{self, client_program, os_user, parse_batch};
use crate::process::{
    self, create_private_dir, describe_status, find_program, log_tail, wait_until, InfraError, Spec,
};

/// Debian package that provides `mariadbd` and `mariadb-install-db`.
/// The slow-query log's file name in the server's directory (the agent ships it).
pub const SLOW_LOG: &str = rampart_topology::plan::MARIADB_SLOW_LOG;
/// Statements slower than this many seconds go to the slow-query log.
pub const LONG_QUERY_SECONDS: u32 = 1;

pub const SERVER_PACKAGE: &str = "mariadb-server-core";
/// How long a commit on the primary waits for the replica's acknowledgement before the primary
/// falls back to asynchronous replication. 2 s: longer than any healthy loopback or LAN round
/// trip with an fsync, short enough that a dead replica costs one visible stall, not an outage.
pub const SEMI_SYNC_TIMEOUT_MS: u32 = 2000;
/// How long [`Instance::start`] waits for a new server to answer (InnoDB crash recovery after
/// an unclean stop is the slow case).
pub const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Binlog retention.
pub const BINLOG_EXPIRE_SECONDS: u32 = 7 * 24 * 3600;
pub use rampart_topology::plan::MAX_SOCKET_PATH;
/// Deadline for one SQL batch through the client.
const SQL_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline for one readiness probe.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// What an instance is for; decides the role-specific server flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Takes writes; semi-sync master (enabled at run time by `enable_semi_sync`).
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
    /// Its TLS (`--ssl-*` and `--require-secure-transport`; replication verifies the
    /// primary with its CA), or `None` for plain TCP.
    pub tls: Option<rampart_topology::plan::DbTls>,
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
        rampart_topology::plan::db_socket(&self.dir, rustix::process::geteuid().as_raw())
    }

    /// rampart's pid file for this mariadbd: `<dir>/mariadbd.pid`.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("mariadbd.pid")
    }

    /// The error log, which also receives stdout and stderr: `<dir>/mariadbd.log`.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join(rampart_topology::plan::MARIADB_ERROR_LOG)
    }

    /// The slow-query log (`--slow-query-log-file`): statements over
    /// [`LONG_QUERY_SECONDS`].
    pub fn slow_log_file(&self) -> PathBuf {
        self.dir.join(SLOW_LOG)
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
            "--slow-query-log=ON".into(),
            format!("--slow-query-log-file={}", path(&self.slow_log_file())),
            format!("--long-query-time={LONG_QUERY_SECONDS}"),
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
            // Per-session status (which sessions use TLS, with what cipher) and what the
            // mysqld_exporter dashboards read.
            "--performance-schema=ON".into(),
        ];
        if let Some(tls) = &self.tls {
            // Every TCP connection must use TLS; root's unix socket is local.
            args.push(format!("--ssl-cert={}", path(&tls.cert)));
            args.push(format!("--ssl-key={}", path(&tls.key)));
            args.push(format!("--ssl-ca={}", path(&tls.ca)));
            args.push("--require-secure-transport=ON".into());
        }
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
        self.prepare()?;
        self.start_with(&[])
    }

    /// Creates the instance's directories (0700) and, when `data/mysql` is missing, its
    /// data directory (see [`Instance::start`]). Returns whether the data directory is
    /// new.
    pub fn prepare(&self) -> Result<bool, InfraError> {
        find_program("mariadbd", SERVER_PACKAGE)?;
        client_program()?;
        let user = os_user()?;
        create_private_dir(&self.dir)?;
        create_private_dir(&self.tmpdir())?;
        let socket = self.socket();
        if let Some(parent) = socket.parent().filter(|p| *p != self.dir) {
            create_private_dir(parent)?;
        }
        self.init_datadir(&user)
    }

    /// The command line of a server run by its keeper (`rampart keeper -- ...`): the
    /// server's flags, then what the keeper relies on. It always starts read-only (only
    /// the lease holder's keeper allows writes), with replication stopped (the keeper
    /// points it at the current leader), semi-sync off on both sides (the keeper turns
    /// it on for the named standby only), `--init-rpl-role=SLAVE` (a former primary
    /// truncates transactions no replica acknowledged), and a relay log synced at every
    /// event, so what a replica acknowledges is on its disk. `setpriv --pdeathsig KILL`
    /// ties the server's life to the keeper's.
    pub fn keeper_command(&self) -> Result<Vec<OsString>, InfraError> {
        let setpriv = find_program("setpriv", "util-linux")?;
        let server = find_program("mariadbd", SERVER_PACKAGE)?;
        let user = os_user()?;
        Ok(self.server_command(&setpriv, &server, Some(&user)))
    }

    /// [`Instance::keeper_command`] with the programs' paths given, for a host other than
    /// this one (`rampart render`: Debian's `/usr/bin/setpriv` and `/usr/sbin/mariadbd`).
    /// `user` is `--user`, which only a server started as root needs; a systemd unit
    /// that already runs as `mysql` passes `None`.
    pub fn server_command(
        &self,
        setpriv: &Path,
        server: &Path,
        user: Option<&str>,
    ) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec![
            setpriv.into(),
            "--pdeathsig".into(),
            "KILL".into(),
            "--".into(),
            server.into(),
        ];
        // One thread per connection, not the thread pool: a commit waiting for the
        // standby's acknowledgement holds its worker, and under a write load the pool's
        // few workers all wait, so neither the keeper's status queries nor new
        // connections are served (the failover test saw a primary stall for seconds).
        argv.extend(self.args().into_iter().filter(|a| {
            let a = a.to_string_lossy();
            !(a.starts_with("--rpl-semi-sync-master-timeout")
                || a.starts_with("--read-only")
                || a.starts_with("--rpl-semi-sync-slave-enabled")
                || a.starts_with("--thread-handling"))
        }));
        for flag in [
            "--read-only=ON",
            "--skip-slave-start",
            "--init-rpl-role=SLAVE",
            "--sync-relay-log=1",
            "--rpl-semi-sync-master-enabled=OFF",
            "--rpl-semi-sync-slave-enabled=OFF",
        ] {
            argv.push(flag.into());
        }
        if let Some(user) = user {
            argv.push(format!("--user={user}").into());
        }
        argv
    }

    /// Starts this instance's server with `extra` flags after its own and waits until it
    /// answers on its socket (the directories must exist: [`Instance::prepare`]).
    pub fn start_with(&self, extra: &[&str]) -> Result<Child, InfraError> {
        let server = find_program("mariadbd", SERVER_PACKAGE)?;
        let user = os_user()?;
        let socket = self.socket();
        let mut args = self.args();
        args.extend(extra.iter().map(OsString::from));
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
    pub(super) fn sql_secret(&self, sql: &str, secrets: &[&str]) -> Result<String, InfraError> {
        self.client(sql, false, secrets, SQL_TIMEOUT)
    }

    /// The rows of a query as maps from column name to value (`NULL` stays `"NULL"`).
    pub(super) fn query(&self, sql: &str) -> Result<Vec<HashMap<String, String>>, InfraError> {
        Ok(parse_batch(&self.client(sql, true, &[], SQL_TIMEOUT)?))
    }

    fn client(
        &self,
        sql: &str,
        column_names: bool,
        secrets: &[&str],
        timeout: Duration,
    ) -> Result<String, InfraError> {
        client::run_sql(
            &self.name,
            &self.socket(),
            sql,
            column_names,
            secrets,
            timeout,
        )
    }

    pub(super) fn ping(&self) -> bool {
        self.client("SELECT 1", false, &[], PING_TIMEOUT)
            .is_ok_and(|out| out.trim() == "1")
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

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Checks that `mariadbd`, `mariadb-install-db` and the `mariadb` client are installed; the
/// error names the Debian package to install.
pub fn check_installed() -> Result<(), InfraError> {
    find_program("mariadbd", SERVER_PACKAGE)?;
    find_program("mariadb-install-db", SERVER_PACKAGE)?;
    client_program()?;
    Ok(())
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
            tls: None,
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
                "--slow-query-log=ON",
                "--slow-query-log-file=/state/hosts/db1/mariadbd-slow.log",
                "--long-query-time=1",
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
}

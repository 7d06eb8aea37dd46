//! The keeper's database server: `mariadbd` as the keeper's child, and the SQL the
//! keeper sends it over one verified-TLS connection.
//!
//! **Parenthood, not a watchdog:** the server is started through `setpriv --pdeathsig
//! KILL`, from the keeper's one runtime thread (the main thread: `PR_SET_PDEATHSIG`
//! follows the thread that forked), so a keeper that dies takes its server with it and
//! no server outlives the keeper that vouches for it. A keeper that stalls instead is
//! covered by semi-synchronous replication: once the standby promotes itself it has
//! stopped its IO thread, and nothing the stalled primary commits can be acknowledged.
//!
//! Every statement has the keeper's request timeout; a server that does not answer
//! for `unresponsive_after` is killed by the keeper (see `keeper.rs`).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlRow, MySqlSslMode};
use sqlx::{Column, ConnectOptions, Row};
use tokio::process::{Child, Command};

/// What the server reports about itself in one round of queries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Local {
    pub read_only: bool,
    pub binlog: String,
    pub current: String,
    pub slave_pos: String,
    pub semi_master_enabled: bool,
    pub semi_master_active: bool,
    pub semi_master_clients: u32,
    /// `Rpl_semi_sync_master_wait_sessions`: commits waiting for an acknowledgement.
    pub semi_master_waiting: u64,
    /// `Rpl_semi_sync_master_get_ack`: acknowledgements received so far.
    pub semi_master_acks: u64,
    pub semi_master_timeout_ms: u64,
    pub semi_slave_enabled: bool,
    pub replica: Option<Replica>,
}

/// `SHOW SLAVE STATUS`, the parts the keeper uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replica {
    pub host: String,
    pub port: u16,
    /// `Slave_IO_Running`: `Yes`, `No`, `Connecting` or `Preparing`.
    pub io: String,
    pub sql_running: bool,
    pub io_errno: u32,
    pub io_error: String,
    pub sql_errno: u32,
    pub sql_error: String,
    /// `Gtid_IO_Pos`: what the IO thread has received (an event group may be partial).
    pub received: String,
    /// `Slave_SQL_Running_State`.
    pub sql_state: String,
    pub lag: Option<u64>,
}

impl Replica {
    pub fn io_running(&self) -> bool {
        self.io == "Yes"
    }
}

/// The server id of one start of a server whose configured id is `base` (1-999): the
/// base plus a thousand times the start second (mod 4 000 000), so each start is a new
/// replication identity. MariaDB's IO thread drops every event that carries the
/// receiving server's own id; a former primary that truncated its unacknowledged tail
/// (`--init-rpl-role=SLAVE`) must receive its own *acknowledged* transactions back from
/// the new primary, which it would drop under its old id.
pub fn incarnation_id(base: u32, unix_secs: u64) -> u32 {
    base % 1000 + 1000 * (unix_secs % 4_000_000) as u32
}

/// The server process and the keeper's connection to it.
pub struct Server {
    argv: Vec<OsString>,
    base_id: u32,
    /// The `--server-id` of the running server (see [`incarnation_id`]).
    pub server_id: u32,
    child: Option<Child>,
    /// Increases at each start: a replica's "caught up since its server started" is
    /// per generation.
    pub generation: u64,
    pub restarts: u64,
    restart_at: Option<Instant>,
    options: MySqlConnectOptions,
    conn: Option<MySqlConnection>,
    timeout: Duration,
    /// The last time the server answered, or when it was started.
    pub answered: Option<Instant>,
    /// The server's own certificate and key (`@@ssl_cert`, `@@ssl_key`) and their
    /// stamps when it last loaded them; `None` until looked up after a start.
    tls_files: Option<(Vec<PathBuf>, Vec<Option<rampart_tls::Stamp>>)>,
    /// How many times a renewed certificate was loaded with `FLUSH SSL`.
    pub tls_reloads: u64,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("pid", &self.pid())
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// Why a statement failed.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("no connection to the server")]
    NotConnected,
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Sql(#[from] sqlx::Error),
    #[error("unexpected answer: {0}")]
    Answer(String),
}

/// Reads the first line of a password file.
pub fn read_password(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let pw = text.lines().next().unwrap_or("").trim().to_owned();
    if pw.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{}: empty; expected the password on its first line",
                path.display()
            ),
        ));
    }
    Ok(pw)
}

/// A SQL string literal (doubling quotes and backslashes).
pub fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

impl Server {
    /// `argv`: the server's whole command line (program first), run as given.
    pub fn new(
        argv: Vec<OsString>,
        base_id: u32,
        addr: SocketAddr,
        user: &str,
        password: &str,
        ca: &Path,
        timeout: Duration,
    ) -> Server {
        let options = MySqlConnectOptions::new()
            .host(&addr.ip().to_string())
            .port(addr.port())
            .username(user)
            .password(password)
            .ssl_mode(MySqlSslMode::VerifyIdentity)
            .ssl_ca(ca)
            .statement_cache_capacity(0)
            .disable_statement_logging();
        Server {
            argv,
            base_id,
            server_id: base_id,
            child: None,
            generation: 0,
            restarts: 0,
            restart_at: Some(Instant::now()),
            options,
            conn: None,
            timeout,
            answered: None,
            tls_files: None,
            tls_reloads: 0,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the server if it is not running and its restart is due.
    pub fn start_if_due(&mut self) -> std::io::Result<bool> {
        if self.child.is_some() || self.restart_at.is_none_or(|t| Instant::now() < t) {
            return Ok(false);
        }
        let Some((program, args)) = self.argv.split_first() else {
            return Err(std::io::Error::other("empty server command line"));
        };
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let id = incarnation_id(self.base_id, secs);
        let args: Vec<OsString> = args
            .iter()
            .map(|a| {
                if a.to_string_lossy().starts_with("--server-id=") {
                    format!("--server-id={id}").into()
                } else {
                    a.clone()
                }
            })
            .collect();
        let child = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("{}: {e}", program.to_string_lossy()))
            })?;
        tracing::info!(
            pid = child.id(),
            server_id = id,
            "started the database server"
        );
        self.child = Some(child);
        self.server_id = id;
        self.conn = None;
        self.generation += 1;
        self.tls_files = None;
        self.restart_at = None;
        self.answered = Some(Instant::now());
        Ok(true)
    }

    /// The server's exit, if it has exited (then a restart is scheduled after `backoff`).
    pub fn exited(&mut self, backoff: Duration) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        self.conn = None;
        self.restarts += 1;
        self.restart_at = Some(Instant::now() + backoff);
        Some(status)
    }

    /// SIGKILL: for a server that will not become read-only, or does not answer.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        self.conn = None;
    }

    /// SIGTERM (a clean shutdown), then SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        self.conn = None;
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child
            .id()
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    async fn conn(&mut self) -> Result<&mut MySqlConnection, SqlError> {
        if self.conn.is_none() {
            let c = tokio::time::timeout(self.timeout, self.options.connect())
                .await
                .map_err(|_| SqlError::Timeout(self.timeout))??;
            self.conn = Some(c);
        }
        self.conn.as_mut().ok_or(SqlError::NotConnected)
    }

    /// Runs `sql` on the connection within `timeout`; a connection that failed (not a
    /// statement the server refused) is dropped, and a new one made next time.
    async fn with_timeout(
        &mut self,
        timeout: Duration,
        sql: &str,
        rows: bool,
    ) -> Result<Vec<MySqlRow>, SqlError> {
        let conn = self.conn().await?;
        let fut = async {
            if rows {
                sqlx::raw_sql(sql).fetch_all(&mut *conn).await
            } else {
                sqlx::raw_sql(sql)
                    .execute(&mut *conn)
                    .await
                    .map(|_| Vec::new())
            }
        };
        let out = match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(e)) => {
                if !matches!(e, sqlx::Error::Database(_)) {
                    self.conn = None;
                }
                Err(SqlError::Sql(e))
            }
            Err(_) => {
                self.conn = None;
                Err(SqlError::Timeout(timeout))
            }
        };
        if out.is_ok() {
            self.answered = Some(Instant::now());
        }
        out
    }

    /// Runs statements (no result rows wanted).
    pub async fn exec(&mut self, sql: &str) -> Result<(), SqlError> {
        self.with_timeout(self.timeout, sql, false)
            .await
            .map(|_| ())
    }

    async fn rows(&mut self, sql: &str) -> Result<Vec<MySqlRow>, SqlError> {
        self.with_timeout(self.timeout, sql, true).await
    }

    /// Loads a renewed certificate into the running server: when its certificate or key
    /// file changed since the server last loaded them, `FLUSH LOCAL SSL` (MariaDB 10.4+;
    /// new connections get the new pair, open ones keep theirs; `LOCAL`: never into the
    /// binary log, where a replica's statement would be an errant transaction). The
    /// first look after a start flushes once too, for a renewal between the server's
    /// start and the look. Returns whether it flushed.
    pub async fn reload_tls_if_renewed(&mut self) -> Result<bool, SqlError> {
        let (paths, seen) = match self.tls_files.take() {
            Some(known) => known,
            None => {
                let rows = self
                    .rows("SELECT @@GLOBAL.ssl_cert, @@GLOBAL.ssl_key")
                    .await?;
                let paths: Vec<PathBuf> = rows
                    .first()
                    .map(|r| {
                        (0..2)
                            .filter_map(|i| r.try_get::<Option<String>, _>(i).ok().flatten())
                            .filter(|p| !p.is_empty())
                            .map(PathBuf::from)
                            .collect()
                    })
                    .unwrap_or_default();
                (paths, Vec::new())
            }
        };
        let now: Vec<_> = paths.iter().map(|p| rampart_tls::stamp(p)).collect();
        if paths.is_empty() || now == seen {
            self.tls_files = Some((paths, seen));
            return Ok(false);
        }
        let first = seen.is_empty();
        match self.exec("FLUSH LOCAL SSL").await {
            Ok(()) => {
                if !first {
                    self.tls_reloads += 1;
                    tracing::info!(cert = %paths[0].display(), "loaded the renewed certificate (FLUSH SSL)");
                }
                self.tls_files = Some((paths, now));
                Ok(true)
            }
            Err(e) => {
                // Try again next round.
                self.tls_files = Some((paths, seen));
                Err(e)
            }
        }
    }

    /// One round of status queries.
    pub async fn status(&mut self) -> Result<Local, SqlError> {
        let vars = self
            .rows(
                "SELECT @@GLOBAL.read_only, @@GLOBAL.gtid_binlog_pos, @@GLOBAL.gtid_current_pos, \
                 @@GLOBAL.gtid_slave_pos, @@GLOBAL.rpl_semi_sync_master_enabled, \
                 @@GLOBAL.rpl_semi_sync_slave_enabled, @@GLOBAL.rpl_semi_sync_master_timeout",
            )
            .await?;
        let row = vars
            .first()
            .ok_or_else(|| SqlError::Answer("no row from SELECT @@...".into()))?;
        let text = |i| cell(row, i).unwrap_or_default();
        let flag = |i| matches!(text(i).as_str(), "1" | "ON");
        let mut local = Local {
            read_only: flag(0),
            binlog: text(1),
            current: text(2),
            slave_pos: text(3),
            semi_master_enabled: flag(4),
            semi_slave_enabled: flag(5),
            semi_master_timeout_ms: text(6).parse().unwrap_or(0),
            ..Local::default()
        };
        for r in self
            .rows("SHOW GLOBAL STATUS LIKE 'Rpl\\_semi\\_sync\\_master\\_%'")
            .await?
        {
            let (Some(name), Some(value)) = (cell(&r, 0), cell(&r, 1)) else {
                continue;
            };
            match name.as_str() {
                "Rpl_semi_sync_master_status" => local.semi_master_active = value == "ON",
                "Rpl_semi_sync_master_clients" => {
                    local.semi_master_clients = value.parse().unwrap_or(0);
                }
                "Rpl_semi_sync_master_wait_sessions" => {
                    local.semi_master_waiting = value.parse().unwrap_or(0);
                }
                "Rpl_semi_sync_master_get_ack" => {
                    local.semi_master_acks = value.parse().unwrap_or(0);
                }
                _ => {}
            }
        }
        if let Some(r) = self.rows("SHOW SLAVE STATUS").await?.first() {
            let get = |name| named(r, name).unwrap_or_default();
            local.replica = Some(Replica {
                host: get("Master_Host"),
                port: get("Master_Port").parse().unwrap_or(0),
                io: get("Slave_IO_Running"),
                sql_running: get("Slave_SQL_Running") == "Yes",
                io_errno: get("Last_IO_Errno").parse().unwrap_or(0),
                io_error: get("Last_IO_Error"),
                sql_errno: get("Last_SQL_Errno").parse().unwrap_or(0),
                sql_error: get("Last_SQL_Error"),
                received: get("Gtid_IO_Pos"),
                sql_state: get("Slave_SQL_Running_State"),
                lag: named(r, "Seconds_Behind_Master").and_then(|s| s.parse().ok()),
            });
        }
        Ok(local)
    }

    /// Makes the server read-only without waiting on locks for more than a second
    /// (`SET GLOBAL read_only` waits for every commit, and a commit waiting for a
    /// standby's acknowledgement waits forever). `false`: it could not.
    pub async fn make_read_only(&mut self) -> bool {
        self.exec("SET SESSION lock_wait_timeout = 1; SET GLOBAL read_only = ON")
            .await
            .is_ok()
    }

    /// Closes every session of `users` (never `KILL QUERY`: a query killed while it
    /// waits for a semi-sync acknowledgement reports success to its client).
    pub async fn kill_sessions(&mut self, users: &[String]) -> Result<usize, SqlError> {
        if users.is_empty() {
            return Ok(0);
        }
        let list = users
            .iter()
            .map(|u| sql_string(u))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = self
            .rows(&format!(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE USER IN ({list})"
            ))
            .await?;
        let ids: Vec<String> = rows.iter().filter_map(|r| cell(r, 0)).collect();
        let mut killed = 0;
        for id in ids
            .iter()
            .filter(|id| id.bytes().all(|b| b.is_ascii_digit()))
        {
            // A session that ended meanwhile is no error worth stopping for.
            if self.exec(&format!("KILL CONNECTION {id}")).await.is_ok() {
                killed += 1;
            }
        }
        Ok(killed)
    }
}

/// A cell as text, whatever its column type (SHOW output mixes strings and integers).
fn cell(row: &MySqlRow, i: usize) -> Option<String> {
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return v;
    }
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return v.map(|v| v.to_string());
    }
    if let Ok(v) = row.try_get::<Option<u64>, _>(i) {
        return v.map(|v| v.to_string());
    }
    if let Ok(v) = row.try_get::<Option<Vec<u8>>, _>(i) {
        return v.map(|v| String::from_utf8_lossy(&v).into_owned());
    }
    None
}

fn named(row: &MySqlRow, name: &str) -> Option<String> {
    let i = row
        .columns()
        .iter()
        .position(|c| c.name().eq_ignore_ascii_case(name))?;
    cell(row, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_start_is_a_new_identity_that_keeps_the_host_apart() {
        assert_eq!(incarnation_id(1, 0), 1);
        assert_eq!(incarnation_id(2, 5), 5002);
        assert_ne!(incarnation_id(1, 5), incarnation_id(1, 6));
        assert_ne!(incarnation_id(1, 5), incarnation_id(2, 5));
        assert_eq!(incarnation_id(7, 4_000_003), 3007);
        assert!(incarnation_id(999, 3_999_999) < u32::MAX);
    }
}

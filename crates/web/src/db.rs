//! The database layer: one pool to the primary and one to the replica, the read/write
//! split, replica health and lag, and read-your-writes through GTIDs. It builds on
//! `pool.rs`, `schema.rs` (the migrations' SQL) and `metrics.rs` (which defines the
//! [`Role`] and [`Fallback`] labels), never the other way.
//!
//! Routing rules:
//! - Writes, and every read inside a write (they run on the write's connection), go to
//!   the primary.
//! - Other reads go to the replica while it is *usable*: reachable and no further behind
//!   than `max_replica_lag`. Otherwise they go to the primary at once. A read that fails
//!   on the replica with a connection-level error is re-run on the primary in the same
//!   request and marks the replica unusable until the next successful check, so a dying
//!   replica fails no request.
//! - Read-your-writes: a write returns the GTID it committed (`@@last_gtid`). A read that
//!   carries one is served by the replica only once the replica has applied it: at once
//!   when the last check already saw it there, otherwise after `MASTER_GTID_WAIT(gtid,
//!   gtid_wait)` on the replica connection that then runs the read. On timeout the read
//!   goes to the primary. None of this needs privileges beyond the application user's.
//!
//! Lag is measured without privileges or heartbeat writes: every `check_interval` the
//! checker samples the primary's `@@gtid_binlog_pos` and the replica's
//! `@@gtid_slave_pos`. The replica's lag is the age of the oldest primary sample it has
//! not reached (0 when it has reached the newest), so its resolution is one interval.
//!
//! The pools (`pool.rs`) ping a connection before reuse only when it has been idle for
//! over a second, never per request: a ping per request would double the round trips.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_core::future::BoxFuture;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlSslMode};
use sqlx::{ConnectOptions, Connection};

use crate::config::Database;
use crate::metrics::Metrics;
pub use crate::metrics::{Fallback, Role};
use crate::pool::Pool;
use crate::schema::MigrateError;

/// What went wrong with a database call, classified for the HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No database that could serve the call was reachable (503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A unique key already holds this value (409).
    #[error("duplicate value for {field}")]
    Duplicate { field: &'static str },
    /// The input refers to something that does not exist (422).
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: &'static str,
    },
    /// Anything else (500); the text goes to the log only.
    #[error("database error: {0}")]
    Query(sqlx::Error),
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        if is_connection_error(&e) {
            DbError::Unavailable(e.to_string())
        } else {
            DbError::Query(e)
        }
    }
}

/// Errors that say the server or the connection is gone, rather than the statement being
/// wrong: worth trying another server.
fn is_connection_error(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
    )
}

/// The MariaDB error number of a database error, if it is one.
pub fn error_number(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(d) => d
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .map(|m| m.number()),
        _ => None,
    }
}

/// A MariaDB GTID position: the highest sequence number per replication domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GtidSet(BTreeMap<u32, (u32, u64)>);

impl GtidSet {
    /// Parses `"0-1-42"` or `"0-1-42,1-2-7"`; the empty string is the empty position.
    /// At most 16 domains, so a client cannot make the server do unbounded work.
    pub fn parse(s: &str) -> Option<GtidSet> {
        let mut map = BTreeMap::new();
        let s = s.trim();
        if s.is_empty() {
            return Some(GtidSet(map));
        }
        for (i, part) in s.split(',').enumerate() {
            if i >= 16 {
                return None;
            }
            let mut it = part.trim().splitn(3, '-');
            let domain: u32 = it.next()?.parse().ok()?;
            let server: u32 = it.next()?.parse().ok()?;
            let seq: u64 = it.next()?.parse().ok()?;
            let e = map.entry(domain).or_insert((server, seq));
            if seq > e.1 {
                *e = (server, seq);
            }
        }
        Some(GtidSet(map))
    }

    /// Whether this position includes everything in `other`.
    pub fn covers(&self, other: &GtidSet) -> bool {
        other
            .0
            .iter()
            .all(|(d, (_, seq))| self.0.get(d).is_some_and(|(_, s)| s >= seq))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (d, (s, n))) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}-{s}-{n}")?;
        }
        Ok(())
    }
}

/// What the checker last saw, shared with request handlers (no lock is held across an
/// await).
#[derive(Debug, Default)]
struct Health {
    primary_up: AtomicBool,
    replica_usable: AtomicBool,
    replica_down: AtomicBool,
    replica_lag_ms: AtomicU64,
    replica_pos: Mutex<GtidSet>,
    /// The primary's position at the last check: a GTID a client presents that this does
    /// not cover was written after it (or is made up), and the primary serves that read
    /// without waiting on the replica.
    primary_pos: Mutex<GtidSet>,
}

/// The checker's own connections, outside the pools, so a saturated pool never looks
/// like a dead server.
#[derive(Default)]
struct CheckConns {
    primary: Option<MySqlConnection>,
    replica: Option<MySqlConnection>,
}

/// The pools and the routing state; cheap to share behind an `Arc`.
pub struct Db {
    primary: Pool,
    replica: Option<Pool>,
    primary_options: MySqlConnectOptions,
    replica_options: Option<MySqlConnectOptions>,
    /// Bounds concurrent `MASTER_GTID_WAIT`s so waiting reads never hold every replica
    /// connection; a read that finds none free goes to the primary.
    gtid_waits: tokio::sync::Semaphore,
    health: Arc<Health>,
    config: Database,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("primary", &self.config.primary)
            .field("replica", &self.config.replica)
            .finish_non_exhaustive()
    }
}

/// Reads a password file: the first line, without its line ending.
pub fn read_password(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let password = text.lines().next().unwrap_or("").to_owned();
    if password.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{}: empty; expected the password on its first line",
                path.display()
            ),
        ));
    }
    Ok(password)
}

/// How the web server connects to a database server: with `database.ca`, over TLS that
/// verifies the server's certificate (chain to that CA and the address connected to);
/// without, plain TCP.
fn connect_options(
    config: &Database,
    addr: std::net::SocketAddr,
    user: &str,
    password: &str,
) -> MySqlConnectOptions {
    let options = MySqlConnectOptions::new()
        .host(&addr.ip().to_string())
        .port(addr.port())
        .username(user)
        .password(password)
        .database(&config.name)
        .charset("utf8mb4")
        .statement_cache_capacity(64)
        .disable_statement_logging();
    match &config.ca {
        Some(ca) => options.ssl_mode(MySqlSslMode::VerifyIdentity).ssl_ca(ca),
        None => options.ssl_mode(MySqlSslMode::Disabled),
    }
}

fn pool(config: &Database, size: u32, options: MySqlConnectOptions) -> Pool {
    Pool::new(options, size, config.connect_timeout)
}

impl Db {
    /// Builds both pools without connecting; connections open on first use, so the web
    /// server starts (and answers `/healthz`) while the databases are still coming up.
    pub fn new(config: &Database, metrics: Arc<Metrics>) -> std::io::Result<Db> {
        let password = read_password(&config.password_file)?;
        if let Some((_, file)) = &config.migrate_user {
            // Found now rather than at the first migration attempt.
            read_password(file)?;
        }
        let primary_options = connect_options(config, config.primary, &config.user, &password);
        let replica_options = config
            .replica
            .map(|addr| connect_options(config, addr, &config.user, &password));
        let primary = pool(config, config.pool_size, primary_options.clone());
        let replica = replica_options
            .clone()
            .map(|o| pool(config, config.replica_pool_size, o));
        Ok(Db {
            primary,
            replica,
            primary_options,
            replica_options,
            gtid_waits: tokio::sync::Semaphore::new((config.replica_pool_size as usize / 4).max(1)),
            health: Arc::new(Health::default()),
            config: config.clone(),
            metrics,
        })
    }

    pub fn config(&self) -> &Database {
        &self.config
    }

    /// Whether the last check reached the primary.
    pub fn primary_up(&self) -> bool {
        self.health.primary_up.load(Ordering::Relaxed)
    }

    /// Whether reads currently go to the replica.
    pub fn replica_usable(&self) -> bool {
        self.health.replica_usable.load(Ordering::Relaxed)
    }

    /// (size, idle) for the primary and replica pools, for `/metrics`.
    pub fn pool_usage(&self) -> [(Role, u32, usize); 2] {
        let r = self
            .replica
            .as_ref()
            .map_or((0, 0), |p| (p.size(), p.num_idle()));
        [
            (Role::Primary, self.primary.size(), self.primary.num_idle()),
            (Role::Replica, r.0, r.1),
        ]
    }

    /// Runs the schema migrations on the primary as the migration user (or the
    /// application user when none is configured).
    pub async fn migrate(&self) -> Result<usize, DbError> {
        let (user, password) = match &self.config.migrate_user {
            Some((u, file)) => (
                u.clone(),
                read_password(file).map_err(|e| DbError::Unavailable(e.to_string()))?,
            ),
            None => (
                self.config.user.clone(),
                read_password(&self.config.password_file)
                    .map_err(|e| DbError::Unavailable(e.to_string()))?,
            ),
        };
        let options = connect_options(&self.config, self.config.primary, &user, &password);
        let mut conn = tokio::time::timeout(self.config.connect_timeout, options.connect())
            .await
            .map_err(|_| DbError::Unavailable("connect timed out".into()))??;
        let applied = crate::schema::migrate(&mut conn).await;
        let _ = conn.close().await;
        applied.map_err(|e| match e {
            MigrateError::Locked => DbError::Unavailable(e.to_string()),
            MigrateError::Sql(e) => e.into(),
        })
    }

    /// Checks both servers once and updates health, lag and the metrics. Called every
    /// `check_interval` by [`Db::run_checks`], on the checker's own connections.
    async fn check(&self, samples: &mut VecDeque<(Instant, GtidSet)>, conns: &mut CheckConns) {
        let t = self.config.connect_timeout;
        let primary_pos = gtid_pos(
            &mut conns.primary,
            &self.primary_options,
            t,
            "gtid_binlog_pos",
        )
        .await;
        let now = Instant::now();
        self.health
            .primary_up
            .store(primary_pos.is_some(), Ordering::Relaxed);
        self.metrics
            .db_primary_up
            .set(i64::from(primary_pos.is_some()));
        if let Some(pos) = primary_pos {
            if let Ok(mut p) = self.health.primary_pos.lock() {
                p.clone_from(&pos);
            }
            record_sample(samples, now, pos);
        }
        let Some(options) = &self.replica_options else {
            return;
        };
        let Some(rpos) = gtid_pos(&mut conns.replica, options, t, "gtid_slave_pos").await else {
            self.set_replica(false, true, None);
            return;
        };
        let lag = replica_lag(samples, &rpos, now);
        if let Ok(mut p) = self.health.replica_pos.lock() {
            *p = rpos;
        }
        // Unknown lag (behind everything this server has seen) is as bad as too much.
        let usable = lag.is_some_and(|l| l <= self.config.max_replica_lag);
        let shown = lag.or_else(|| {
            samples
                .front()
                .map(|(t0, _)| now.saturating_duration_since(*t0))
        });
        self.set_replica(usable, false, shown);
    }

    fn set_replica(&self, usable: bool, down: bool, lag: Option<Duration>) {
        let was = self.health.replica_usable.swap(usable, Ordering::Relaxed);
        self.health.replica_down.store(down, Ordering::Relaxed);
        if let Some(lag) = lag {
            let ms = u64::try_from(lag.as_millis()).unwrap_or(u64::MAX);
            self.health.replica_lag_ms.store(ms, Ordering::Relaxed);
            self.metrics.db_replica_lag_seconds.set(lag.as_secs_f64());
        }
        self.metrics.db_replica_usable.set(i64::from(usable));
        if was != usable {
            if usable {
                tracing::info!("replica usable again; reads go back to it");
            } else if down {
                tracing::warn!("replica unreachable; reads fall back to the primary");
            } else {
                let lag_ms = self.health.replica_lag_ms.load(Ordering::Relaxed);
                tracing::warn!(lag_ms, "replica lagging; reads fall back to the primary");
            }
        }
    }

    /// Runs the health and lag checks until `stop` resolves.
    pub async fn run_checks(self: Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        let mut stop = stop;
        let mut samples = VecDeque::new();
        let mut conns = CheckConns::default();
        let mut tick = tokio::time::interval(self.config.check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.check(&mut samples, &mut conns).await,
                _ = stop.changed() => return,
            }
        }
    }

    fn fallback(&self, why: Fallback) {
        self.metrics.fallback(why);
    }

    /// Runs a read with the routing rules above. `f` is called once, or twice when the
    /// replica fails underneath it.
    pub async fn read<T, F>(&self, after: Option<&GtidSet>, f: F) -> Result<(T, Role), DbError>
    where
        T: Send,
        F: for<'c> Fn(&'c mut MySqlConnection) -> BoxFuture<'c, Result<T, sqlx::Error>>
            + Send
            + Sync,
    {
        let timeout = self.config.query_timeout;
        let after = after.filter(|g| !g.is_empty());
        match (&self.replica, self.replica_usable()) {
            (None, _) => self.fallback(Fallback::NoReplica),
            (Some(_), false) => {
                let why = if self.health.replica_down.load(Ordering::Relaxed) {
                    Fallback::ReplicaDown
                } else {
                    Fallback::ReplicaLagging
                };
                self.fallback(why);
            }
            (Some(replica), true) => match self.route_gtid(after) {
                Err(why) => self.fallback(why),
                Ok(wait) => match self.on_replica(replica, wait, &f, timeout).await {
                    Ok(Some(v)) => {
                        self.metrics.read(Role::Replica);
                        return Ok((v, Role::Replica));
                    }
                    Ok(None) => self.fallback(Fallback::GtidWait),
                    // No free replica connection, or the query was slow: this request
                    // goes to the primary, but the replica is not declared down for it.
                    Err(sqlx::Error::PoolTimedOut) => self.fallback(Fallback::ReplicaBusy),
                    Err(e) if is_connection_error(&e) => {
                        tracing::warn!(error = %e, "replica read failed; retrying on the primary");
                        self.set_replica(false, true, None);
                        self.fallback(Fallback::ReplicaError);
                    }
                    Err(e) => return Err(e.into()),
                },
            },
        }
        let v = self.on_primary(&f, timeout).await?;
        self.metrics.read(Role::Primary);
        Ok((v, Role::Primary))
    }

    /// Decides how a read that presents `after` may use the replica: `Ok(None)` at once
    /// (no GTID, or the replica already had it at the last check), `Ok(Some(gtid))` after
    /// waiting for it, `Err` not at all. A GTID the primary did not have at the last check
    /// was written since (or is made up): the primary serves it without waiting, so a
    /// client cannot hold replica connections with GTIDs that will never arrive. Waits are
    /// bounded in number too.
    fn route_gtid<'g>(
        &self,
        after: Option<&'g GtidSet>,
    ) -> Result<Option<(&'g GtidSet, tokio::sync::SemaphorePermit<'_>)>, Fallback> {
        let Some(gtid) = after else { return Ok(None) };
        let covered = |m: &Mutex<GtidSet>| m.lock().map(|p| p.covers(gtid)).unwrap_or(false);
        if covered(&self.health.replica_pos) {
            return Ok(None);
        }
        if !covered(&self.health.primary_pos) {
            return Err(Fallback::GtidFresh);
        }
        match self.gtid_waits.try_acquire() {
            Ok(permit) => Ok(Some((gtid, permit))),
            Err(_) => Err(Fallback::GtidWait),
        }
    }

    /// `Ok(None)`: the replica has not applied the awaited GTID within `gtid_wait`.
    async fn on_replica<T, F>(
        &self,
        replica: &Pool,
        wait: Option<(&GtidSet, tokio::sync::SemaphorePermit<'_>)>,
        f: &F,
        timeout: Duration,
    ) -> Result<Option<T>, sqlx::Error>
    where
        F: for<'c> Fn(&'c mut MySqlConnection) -> BoxFuture<'c, Result<T, sqlx::Error>>,
    {
        let run = async {
            let mut conn = replica.acquire().await?;
            if let Some((gtid, _permit)) = wait {
                let waited: Option<i64> = sqlx::query_scalar("SELECT MASTER_GTID_WAIT(?, ?)")
                    .bind(gtid.to_string())
                    .bind(self.config.gtid_wait.as_secs_f64())
                    .fetch_one(&mut *conn)
                    .await?;
                if waited != Some(0) {
                    conn.reusable();
                    return Ok(None);
                }
            }
            let v = f(&mut conn).await?;
            conn.reusable();
            Ok(Some(v))
        };
        tokio::time::timeout(timeout, run)
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
    }

    async fn on_primary<T, F>(&self, f: &F, timeout: Duration) -> Result<T, DbError>
    where
        F: for<'c> Fn(&'c mut MySqlConnection) -> BoxFuture<'c, Result<T, sqlx::Error>>,
    {
        let run = async {
            let mut conn = self.primary.acquire().await?;
            let v = f(&mut conn).await?;
            conn.reusable();
            Ok::<_, sqlx::Error>(v)
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(r) => r.map_err(|e| {
                self.metrics.db_error(Role::Primary);
                DbError::from(e)
            }),
            Err(_) => {
                self.metrics.db_error(Role::Primary);
                Err(DbError::Unavailable("primary query timed out".into()))
            }
        }
    }

    /// Runs a write on the primary and returns its result with the GTID it committed
    /// (absent when the write changed nothing). `f` manages its own transaction if it
    /// needs one; reads inside it run on the same primary connection.
    pub async fn write<T, F>(&self, f: F) -> Result<(T, Option<GtidSet>), DbError>
    where
        T: Send,
        F: for<'c> FnOnce(&'c mut MySqlConnection) -> BoxFuture<'c, Result<T, DbError>> + Send,
    {
        let run = async {
            let mut conn = self.primary.acquire().await.map_err(DbError::from)?;
            let v = f(&mut conn).await?;
            let gtid: Option<String> = sqlx::query_scalar("SELECT CAST(@@last_gtid AS CHAR)")
                .fetch_one(&mut *conn)
                .await
                .map_err(DbError::from)?;
            conn.reusable();
            Ok::<_, DbError>((v, gtid.as_deref().and_then(GtidSet::parse)))
        };
        let r = match tokio::time::timeout(self.config.query_timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(DbError::Unavailable("primary write timed out".into())),
        };
        match &r {
            Ok(_) => {
                self.metrics.db_writes.inc();
            }
            Err(_) => self.metrics.db_error(Role::Primary),
        }
        r.map(|(v, g)| (v, g.filter(|g| !g.is_empty())))
    }

    /// Closes both pools (shutdown).
    pub async fn close(&self) {
        self.primary.close().await;
        if let Some(r) = &self.replica {
            r.close().await;
        }
    }
}

/// Records the primary's position at `now`. Each position keeps the time it was first
/// seen: the replica's lag is how long ago the primary first had something the replica
/// still lacks. At most 256 samples are kept.
fn record_sample(samples: &mut VecDeque<(Instant, GtidSet)>, now: Instant, pos: GtidSet) {
    if samples.back().is_none_or(|(_, p)| *p != pos) {
        samples.push_back((now, pos));
    }
    while samples.len() > 256 {
        samples.pop_front();
    }
}

/// The age of the oldest primary position the replica has not reached; zero when it has
/// reached them all; `None` when it has not even reached the oldest one kept (just after
/// start, or further behind than the samples go), since then the age is unknown.
fn replica_lag(
    samples: &VecDeque<(Instant, GtidSet)>,
    replica: &GtidSet,
    now: Instant,
) -> Option<Duration> {
    match samples.iter().position(|(_, p)| !replica.covers(p)) {
        None => Some(Duration::ZERO),
        Some(0) => None,
        Some(i) => samples
            .get(i)
            .map(|(t0, _)| now.saturating_duration_since(*t0)),
    }
}

/// Reads a GTID position on the checker's connection in `slot`, connecting first if
/// needed; `None` (and the connection dropped) when the server did not answer in `t`.
async fn gtid_pos(
    slot: &mut Option<MySqlConnection>,
    options: &MySqlConnectOptions,
    t: Duration,
    var: &str,
) -> Option<GtidSet> {
    // The variable name is one of two constants, never input.
    let sql = match var {
        "gtid_binlog_pos" => "SELECT CAST(@@gtid_binlog_pos AS CHAR)",
        _ => "SELECT CAST(@@gtid_slave_pos AS CHAR)",
    };
    let run = async {
        if slot.is_none() {
            *slot = Some(options.connect().await?);
        }
        let Some(conn) = slot.as_mut() else {
            return Err(sqlx::Error::PoolClosed);
        };
        let text: Option<String> = sqlx::query_scalar(sql).fetch_one(conn).await?;
        Ok::<_, sqlx::Error>(text)
    };
    match tokio::time::timeout(t, run).await {
        Ok(Ok(text)) => GtidSet::parse(text.as_deref().unwrap_or("")),
        _ => {
            *slot = None;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> GtidSet {
        GtidSet::parse(s).unwrap()
    }

    #[test]
    fn gtid_parsing() {
        let check = |input: &str, expected: Option<&str>| {
            assert_eq!(
                GtidSet::parse(input).map(|s| s.to_string()).as_deref(),
                expected,
                "{input}"
            );
        };
        check("0-1-42", Some("0-1-42"));
        check(" 0-1-42 , 1-2-7 ", Some("0-1-42,1-2-7"));
        check("", Some(""));
        check("0-1-5,0-1-9", Some("0-1-9"));
        check("0-1", None);
        check("a-1-2", None);
        check("0-1-2-3", None);
        check("0-1--2", None);
        check("0-1-18446744073709551616", None);
        check(&vec!["0-1-1"; 17].join(","), None);
    }

    /// Regression: the newest sample's time was refreshed while the primary's position
    /// stood still, so a replica stuck behind it always measured ~0 lag and reads never
    /// left it.
    #[test]
    fn lag_grows_while_the_primary_stands_still_ahead_of_the_replica() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut samples = VecDeque::new();
        record_sample(&mut samples, t0, g("0-1-10"));
        record_sample(&mut samples, t0 + s(1), g("0-1-11"));
        for i in 2..10 {
            record_sample(&mut samples, t0 + s(i), g("0-1-11"));
        }
        let now = t0 + s(10);
        assert_eq!(
            replica_lag(&samples, &g("0-1-11"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(replica_lag(&samples, &g("0-1-10"), now), Some(s(9)));
        // Behind even the oldest sample: the age is unknown, not zero.
        assert_eq!(replica_lag(&samples, &g("0-1-9"), now), None);
        assert_eq!(replica_lag(&samples, &g(""), now), None);
        for i in 0..300 {
            record_sample(&mut samples, now + s(i), g(&format!("0-1-{}", 100 + i)));
        }
        assert_eq!(samples.len(), 256);
    }

    /// Regression: the first sample after start was stamped "now", so a replica far
    /// behind measured zero lag until `max_replica_lag` had passed.
    #[test]
    fn a_replica_behind_the_first_sample_has_unknown_lag() {
        let now = Instant::now();
        let mut samples = VecDeque::new();
        record_sample(&mut samples, now, g("0-1-500"));
        assert_eq!(replica_lag(&samples, &g("0-1-3"), now), None);
        assert_eq!(
            replica_lag(&samples, &g("0-1-500"), now),
            Some(Duration::ZERO)
        );
    }

    /// A made-up or just-written GTID (one the primary did not have at the last check)
    /// goes to the primary without a wait; one the replica already had needs no wait;
    /// otherwise a wait, at most a quarter of the replica pool at once.
    #[test]
    fn gtid_routing_never_waits_for_what_the_primary_has_not_got() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "x\n").unwrap();
        use rampart_telemetry::config::ConfigFile;
        let config = crate::Config::parse(
            &dir.path().join("web.toml"),
            "[database]\nprimary = \"127.0.0.1:1\"\nreplica = \"127.0.0.1:2\"\n\
             password_file = \"pw\"\nreplica_pool_size = 8\n",
        )
        .unwrap();
        let db = Db::new(&config.database.unwrap(), Arc::new(Metrics::new())).unwrap();
        *db.health.primary_pos.lock().unwrap() = g("0-1-100");
        *db.health.replica_pos.lock().unwrap() = g("0-1-90");
        assert!(matches!(db.route_gtid(None), Ok(None)));
        assert!(matches!(db.route_gtid(Some(&g("0-1-90"))), Ok(None)));
        assert!(matches!(
            db.route_gtid(Some(&g("0-1-101"))),
            Err(Fallback::GtidFresh)
        ));
        assert!(matches!(
            db.route_gtid(Some(&g("0-1-999999999"))),
            Err(Fallback::GtidFresh)
        ));
        assert!(matches!(
            db.route_gtid(Some(&g("7-7-7"))),
            Err(Fallback::GtidFresh)
        ));
        let (g95, g96) = (g("0-1-95"), g("0-1-96"));
        let a = db.route_gtid(Some(&g95));
        let b = db.route_gtid(Some(&g96));
        assert!(matches!(a, Ok(Some(_))) && matches!(b, Ok(Some(_))));
        // 8 / 4 = 2 waits at once; the third goes to the primary.
        assert!(matches!(
            db.route_gtid(Some(&g("0-1-97"))),
            Err(Fallback::GtidWait)
        ));
        drop(a);
        assert!(matches!(db.route_gtid(Some(&g("0-1-97"))), Ok(Some(_))));
    }

    #[test]
    fn gtid_coverage() {
        assert!(g("0-1-42").covers(&g("0-1-42")));
        assert!(g("0-1-43").covers(&g("0-1-42")));
        assert!(!g("0-1-41").covers(&g("0-1-42")));
        assert!(!g("1-1-100").covers(&g("0-1-1")));
        assert!(g("0-1-5,1-1-5").covers(&g("1-1-5")));
        assert!(g("").covers(&g("")));
        assert!(!g("").covers(&g("0-1-1")));
    }
}

//! The database layer: the servers and their pools, following the leader, the read/write
//! split, the write fence, replica health and lag, and read-your-writes through GTIDs. It
//! builds on `pool.rs`, `leader.rs` (the [`Leader`] value), `schema.rs` (the migrations'
//! SQL) and `metrics.rs` (which defines the [`Role`], [`Fallback`] and [`Refusal`]
//! labels), never the other way.
//!
//! The primary is the **leader**: with `[database.etcd]`, whoever the leader key names
//! (`leader.rs` follows it and calls [`Db::set_leader`]); without, the static
//! `database.primary`. Writes go to a pool for the leader's address; when the epoch or the
//! address changes a pool for the new one is built and the old one closed, so no write of
//! a new epoch runs on a connection of an old one. Each configured server also has a read
//! pool.
//!
//! Write rules (every 503 of a write carries `Retry-After: 1` and a JSON `error` code,
//! the [`Refusal`]; a write is never silently lost):
//! - No leader → `no_primary`. The leader key says `writable:false` → `not_writable`.
//! - Before a write connection is used it runs `SELECT @@server_id, @@read_only` (the
//!   **fence**): the write proceeds only on the server the leader key names and only when
//!   `read_only` is off; else `server_mismatch` or `not_writable`. A demoted primary turns
//!   `read_only` on, so a web server still following it writes nothing there. A statement
//!   refused with `ER_OPTION_PREVENTS_STATEMENT` (read_only turned on between the fence and
//!   the statement) is `not_writable` too.
//! - Every write is one explicit transaction: [`Db::write`] sends `START TRANSACTION`
//!   with the fence (one exchange), runs the caller's statements, and sends `COMMIT` with
//!   the `@@last_gtid` read (one exchange) itself. A failure before `COMMIT` was sent
//!   (no connection, the connection died, the deadline passed) is `no_primary`: the server
//!   rolls the open transaction back, nothing was written and a retry is safe. A failure
//!   after `COMMIT` was sent and before its answer (connection died, `query_timeout`
//!   passed) is `outcome_unknown`: the write may or may not have happened, and only an
//!   `Idempotency-Key` makes the retry safe. Once `COMMIT` answered OK nothing turns the
//!   write into an error (a failed `@@last_gtid` read only drops the GTID). The fence and
//!   the two transaction statements cost one round trip over a bare autocommit statement.
//!
//! Read rules:
//! - Reads inside a write run on the write's connection, in its transaction.
//! - Other reads go to a **usable** server that is not the leader: reachable and no
//!   further behind than `max_replica_lag`, round robin among them (one that already has
//!   the read's GTID first). With none, they go to the leader at once. A read that fails
//!   on a replica with a connection-level error is re-run on the leader in the same request
//!   and marks that replica unusable until its next successful check.
//! - Read-your-writes: a write returns the GTID it committed (`@@last_gtid`). A read that
//!   carries one is served by a replica only once it has applied it: at once when the
//!   last check already saw it there, otherwise after `MASTER_GTID_WAIT(gtid, gtid_wait)`
//!   on the replica connection that then runs the read. On timeout the read goes to the
//!   leader. None of this needs privileges beyond the application user's.
//!
//! Lag is measured without privileges or heartbeat writes: every `check_interval` the
//! checker samples the leader's `@@gtid_binlog_pos` and every other server's
//! `@@gtid_slave_pos`. A replica's lag is the age of the oldest leader sample it has not
//! reached (0 when it has reached the newest), so its resolution is one interval. The
//! samples start over when the leader changes (positions of another server say nothing);
//! while there is no leader the last ones stay, so a replica that had everything the
//! leader had keeps serving reads, and one behind it does not.
//!
//! The pools (`pool.rs`) ping a connection before reuse only when it has been idle for
//! over a second, never per request: a ping per request would double the round trips.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use futures_core::future::BoxFuture;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlSslMode};
use sqlx::{ConnectOptions, Connection, Row};

use crate::config::{Database, Server};
use crate::leader::Leader;
use crate::metrics::Metrics;
pub use crate::metrics::{Fallback, Refusal, Role};
use crate::pool::{Conn, Pool};
use crate::schema::MigrateError;

/// What went wrong with a database call, classified for the HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No database that could serve a read was reachable (503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A write got no OK: refused before anything was sent, or its outcome unknown (503
    /// with `Retry-After`; the code is the refusal's).
    #[error("write {}: {detail}", why.as_str())]
    Refused { why: Refusal, detail: String },
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

fn refused(why: Refusal, detail: impl Into<String>) -> DbError {
    DbError::Refused {
        why,
        detail: detail.into(),
    }
}

/// `ER_OPTION_PREVENTS_STATEMENT`: the server runs with `read_only`.
const ER_READ_ONLY: u16 = 1290;

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

/// What the checker last saw of one server.
const UNKNOWN: u8 = 0;
const USABLE: u8 = 1;
const LAGGING: u8 = 2;
const DOWN: u8 = 3;
const LEADER: u8 = 4;

#[derive(Debug)]
struct ServerHealth {
    /// One of the constants above; `UNKNOWN` until the first check.
    state: AtomicU8,
    lag_ms: AtomicU64,
    /// Its `@@gtid_slave_pos` at the last check.
    pos: Mutex<GtidSet>,
}

impl Default for ServerHealth {
    fn default() -> Self {
        ServerHealth {
            state: AtomicU8::new(UNKNOWN),
            lag_ms: AtomicU64::new(0),
            pos: Mutex::new(GtidSet::default()),
        }
    }
}

/// A configured server: its read pool and health.
struct Slot {
    server: Server,
    /// `server.host`, shared with every read it serves (`Served`).
    name: Arc<str>,
    pool: Pool,
    options: MySqlConnectOptions,
    health: ServerHealth,
}

impl Slot {
    /// Whether this is the server `leader` names: by server id when both are known, else by
    /// address.
    fn is(&self, leader: &Leader) -> bool {
        match (self.server.server_id, leader.server_id) {
            (Some(a), Some(b)) => a == b,
            _ => self.server.addr == leader.addr,
        }
    }

    fn state(&self) -> u8 {
        self.health.state.load(Ordering::Relaxed)
    }
}

/// Which server served a read: its role, and its host name (`X-Db-Server`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    pub role: Role,
    pub server: Arc<str>,
}

/// Where a read goes: a replica, and the GTID to wait for there with the permit that
/// bounds concurrent waits.
type Pick<'d, 'g> = (
    &'d Slot,
    Option<(&'g GtidSet, tokio::sync::SemaphorePermit<'d>)>,
);

/// The leader followed now and the write pool to its address.
struct Primary {
    leader: Leader,
    /// `leader.host`, shared with every read it serves (`Served`).
    name: Arc<str>,
    pool: Arc<Pool>,
    options: MySqlConnectOptions,
}

/// The leader's health, shared with request handlers (no lock is held across an await).
#[derive(Debug, Default)]
struct LeaderHealth {
    up: AtomicBool,
    /// The leader's position at the last check: a GTID a client presents that this does
    /// not cover was written after it (or is made up), and the leader serves that read
    /// without waiting on a replica.
    pos: Mutex<GtidSet>,
}

/// The checker's own state: samples of the leader's position and its connections,
/// outside the pools, so a saturated pool never looks like a dead server.
#[derive(Default)]
struct Checks {
    samples: VecDeque<(Instant, GtidSet)>,
    /// (epoch, address) of the leader the samples are of.
    leader: Option<(i64, SocketAddr)>,
    leader_conn: Option<MySqlConnection>,
    conns: Vec<Option<MySqlConnection>>,
}

/// The pools and the routing state; cheap to share behind an `Arc`.
pub struct Db {
    servers: Vec<Slot>,
    primary: ArcSwapOption<Primary>,
    /// Serializes [`Db::set_leader`], so two changes never build pools at once; holds
    /// the last leader's host (kept across a spell without one, to log a move).
    leader_change: Mutex<Option<String>>,
    /// Wakes writes waiting for a writable leader ([`Db::write`]).
    leader_changed: tokio::sync::Notify,
    password: String,
    /// Bounds concurrent `MASTER_GTID_WAIT`s so waiting reads never hold every replica
    /// connection; a read that finds none free goes to the leader.
    gtid_waits: tokio::sync::Semaphore,
    /// Round robin among usable replicas.
    next_replica: AtomicUsize,
    health: LeaderHealth,
    config: Database,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("servers", &self.config.servers)
            .field("leader", &self.leader())
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
    addr: SocketAddr,
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

impl Db {
    /// Builds the pools without connecting; connections open on first use, so the web
    /// server starts (and answers `/healthz`) while the databases are still coming up.
    /// Without `[database.etcd]` the static primary is the leader from the start; with
    /// it there is none until [`Db::set_leader`] is called.
    pub fn new(config: &Database, metrics: Arc<Metrics>) -> std::io::Result<Db> {
        let password = read_password(&config.password_file)?;
        if let Some((_, file)) = &config.migrate_user {
            // Found now rather than at the first migration attempt.
            read_password(file)?;
        }
        let servers = config
            .servers
            .iter()
            .map(|s| {
                let options = connect_options(config, s.addr, &config.user, &password);
                Slot {
                    name: Arc::from(s.host.as_str()),
                    server: s.clone(),
                    pool: Pool::new(
                        options.clone(),
                        config.replica_pool_size,
                        config.connect_timeout,
                    ),
                    options,
                    health: ServerHealth::default(),
                }
            })
            .collect();
        let db = Db {
            servers,
            primary: ArcSwapOption::empty(),
            leader_change: Mutex::new(None),
            leader_changed: tokio::sync::Notify::new(),
            password,
            gtid_waits: tokio::sync::Semaphore::new((config.replica_pool_size as usize / 4).max(1)),
            next_replica: AtomicUsize::new(0),
            health: LeaderHealth::default(),
            config: config.clone(),
            metrics,
        };
        if config.etcd.is_none() {
            if let Some(s) = config.servers.first() {
                db.set_leader(Some(Leader {
                    host: s.host.clone(),
                    server_id: s.server_id,
                    addr: s.addr,
                    epoch: 0,
                    writable: true,
                }));
            }
        }
        Ok(db)
    }

    pub fn config(&self) -> &Database {
        &self.config
    }

    /// The leader followed now.
    pub fn leader(&self) -> Option<Leader> {
        self.primary.load().as_ref().map(|p| p.leader.clone())
    }

    /// Follows `leader` from now on. A new epoch or address gets a new write pool (the old
    /// one is closed: its idle connections now, those in use when they come back); a
    /// change of `writable` alone keeps the pool. The same leader again changes nothing.
    pub fn set_leader(&self, leader: Option<Leader>) {
        self.change_leader(leader);
        self.leader_changed.notify_waiters();
    }

    fn change_leader(&self, leader: Option<Leader>) {
        let mut last_host = self
            .leader_change
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.primary.load_full();
        let old = current.as_ref().map(|p| &p.leader);
        if old == leader.as_ref() {
            return;
        }
        self.metrics
            .db_leader_writable
            .set(i64::from(leader.as_ref().is_some_and(|l| l.writable)));
        if let (Some(cur), Some(new)) = (&current, &leader) {
            if cur.leader.epoch == new.epoch && cur.leader.addr == new.addr {
                tracing::info!(
                    host = %new.host,
                    epoch = new.epoch,
                    writable = new.writable,
                    "leader {} writable={}",
                    new.host,
                    new.writable
                );
                self.primary.store(Some(Arc::new(Primary {
                    name: Arc::clone(&cur.name),
                    leader: new.clone(),
                    pool: Arc::clone(&cur.pool),
                    options: cur.options.clone(),
                })));
                return;
            }
        }
        self.metrics.db_leader_changes.inc();
        self.metrics
            .db_leader_epoch
            .set(leader.as_ref().map_or(0, |l| l.epoch));
        let moved_from = match (&*last_host, &leader) {
            (Some(was), Some(l)) if *was != l.host => Some(was.clone()),
            _ => None,
        };
        if let Some(l) = &leader {
            *last_host = Some(l.host.clone());
        }
        let next = leader.map(|l| {
            match l.server_id {
                Some(_) if !self.servers.iter().any(|s| s.is(&l)) => tracing::warn!(
                    host = %l.host,
                    server_id = ?l.server_id,
                    "the leader is not among database.servers; following it, but no \
                     server is excluded from reads"
                ),
                _ => {}
            }
            match &moved_from {
                // A failover or switchover: worth an operator's eye in the logs.
                Some(o) => tracing::warn!(
                    host = %l.host,
                    server_id = ?l.server_id,
                    addr = %l.addr,
                    epoch = l.epoch,
                    writable = l.writable,
                    "the leader moved from {} to {}: following {} at {} (epoch {})",
                    o,
                    l.host,
                    l.host,
                    l.addr,
                    l.epoch
                ),
                None => tracing::info!(
                    host = %l.host,
                    server_id = ?l.server_id,
                    addr = %l.addr,
                    epoch = l.epoch,
                    writable = l.writable,
                    "following leader {} at {} (epoch {})",
                    l.host,
                    l.addr,
                    l.epoch
                ),
            }
            let options = connect_options(&self.config, l.addr, &self.config.user, &self.password);
            Arc::new(Primary {
                pool: Arc::new(Pool::new(
                    options.clone(),
                    self.config.pool_size,
                    self.config.connect_timeout,
                )),
                options,
                name: Arc::from(l.host.as_str()),
                leader: l,
            })
        });
        if next.is_none() {
            tracing::warn!("no leader: writes are refused until one takes the leader key");
        }
        self.primary.store(next);
        if let Some(old) = current {
            // Connections in use finish their exchange and close when they come back.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { old.pool.close().await });
            }
        }
    }

    /// Whether the last check reached the leader.
    pub fn primary_up(&self) -> bool {
        self.health.up.load(Ordering::Relaxed)
    }

    /// Whether reads currently go to a replica (at least one is usable).
    pub fn replica_usable(&self) -> bool {
        self.servers.iter().any(|s| s.state() == USABLE)
    }

    /// (size, idle) of the leader's write pool and of all read pools together, for
    /// `/metrics`.
    pub fn pool_usage(&self) -> [(Role, u32, usize); 2] {
        let p = self
            .primary
            .load()
            .as_ref()
            .map_or((0, 0), |p| (p.pool.size(), p.pool.num_idle()));
        let r = self.servers.iter().fold((0, 0), |(size, idle), s| {
            (size + s.pool.size(), idle + s.pool.num_idle())
        });
        [(Role::Primary, p.0, p.1), (Role::Replica, r.0, r.1)]
    }

    /// Runs the schema migrations on the leader as the migration user (or the application
    /// user when none is configured), once it says it is writable and its connection passes
    /// the write fence.
    pub async fn migrate(&self) -> Result<usize, DbError> {
        let Some(primary) = self.primary.load_full() else {
            return Err(refused(Refusal::NoPrimary, "no leader"));
        };
        if !primary.leader.writable {
            return Err(refused(
                Refusal::NotWritable,
                "the leader is not writable yet",
            ));
        }
        let (user, password) = match &self.config.migrate_user {
            Some((u, file)) => (
                u.clone(),
                read_password(file).map_err(|e| DbError::Unavailable(e.to_string()))?,
            ),
            None => (self.config.user.clone(), self.password.clone()),
        };
        let options = connect_options(&self.config, primary.leader.addr, &user, &password);
        let mut conn = tokio::time::timeout(self.config.connect_timeout, options.connect())
            .await
            .map_err(|_| DbError::Unavailable("connect timed out".into()))??;
        match fence(&mut conn, &primary.leader).await {
            Ok(()) => {}
            Err(Fence::Sql(e)) => return Err(e.into()),
            Err(Fence::Refused(e)) => return Err(e),
        }
        let applied = crate::schema::migrate(&mut conn).await;
        let _ = conn.close().await;
        applied.map_err(|e| match e {
            MigrateError::Locked => DbError::Unavailable(e.to_string()),
            MigrateError::Sql(e) => e.into(),
        })
    }

    /// Checks the leader and every other server once and updates health, lag and the
    /// metrics. Called every `check_interval` by [`Db::run_checks`], on the checker's own
    /// connections; the servers are checked concurrently.
    async fn check(&self, st: &mut Checks) {
        let t = self.config.connect_timeout;
        let primary = self.primary.load_full();
        if let Some(p) = &primary {
            let ident = (p.leader.epoch, p.leader.addr);
            if st.leader != Some(ident) {
                st.samples.clear();
                st.leader_conn = None;
                st.leader = Some(ident);
            }
        }
        let leader_pos = match &primary {
            Some(p) => gtid_pos(&mut st.leader_conn, &p.options, t, GTID_BINLOG_POS).await,
            None => None,
        };
        let now = Instant::now();
        self.health
            .up
            .store(leader_pos.is_some(), Ordering::Relaxed);
        self.metrics
            .db_primary_up
            .set(i64::from(leader_pos.is_some()));
        if let Some(pos) = leader_pos {
            if let Ok(mut p) = self.health.pos.lock() {
                p.clone_from(&pos);
            }
            record_sample(&mut st.samples, now, pos);
        }
        st.conns.resize_with(self.servers.len(), || None);
        let leader = primary.as_ref().map(|p| &p.leader);
        let positions = futures_util::future::join_all(self.servers.iter().zip(&mut st.conns).map(
            |(slot, conn)| async move {
                if leader.is_some_and(|l| slot.is(l)) {
                    *conn = None;
                    return None;
                }
                Some(gtid_pos(conn, &slot.options, t, GTID_SLAVE_POS).await)
            },
        ))
        .await;
        let mut least_lag: Option<Duration> = None;
        for (slot, pos) in self.servers.iter().zip(positions) {
            match pos {
                None => self.set_server(slot, LEADER, None),
                Some(None) => self.set_server(slot, DOWN, None),
                Some(Some(pos)) => {
                    let lag = replica_lag(&st.samples, &pos, now);
                    if let Ok(mut p) = slot.health.pos.lock() {
                        *p = pos;
                    }
                    // Unknown lag (behind everything sampled) is as bad as too much.
                    let usable = lag.is_some_and(|l| l <= self.config.max_replica_lag);
                    let shown = lag.or_else(|| {
                        st.samples
                            .front()
                            .map(|(t0, _)| now.saturating_duration_since(*t0))
                    });
                    if let Some(l) = shown {
                        least_lag = Some(least_lag.map_or(l, |m| m.min(l)));
                    }
                    self.set_server(slot, if usable { USABLE } else { LAGGING }, shown);
                }
            }
        }
        self.metrics
            .db_replica_usable
            .set(i64::from(self.replica_usable()));
        if let Some(l) = least_lag {
            self.metrics.db_replica_lag_seconds.set(l.as_secs_f64());
        }
    }

    /// Records what was seen of `slot`, logging when reads start or stop going to it.
    fn set_server(&self, slot: &Slot, state: u8, lag: Option<Duration>) {
        if let Some(lag) = lag {
            let ms = u64::try_from(lag.as_millis()).unwrap_or(u64::MAX);
            slot.health.lag_ms.store(ms, Ordering::Relaxed);
        }
        let was = slot.health.state.swap(state, Ordering::Relaxed);
        self.metrics.server(
            &slot.server.host,
            state == USABLE,
            lag.map(|l| l.as_secs_f64()),
        );
        let server = &slot.server.host;
        if was == state || (was != USABLE && state != USABLE) {
            return;
        }
        match state {
            USABLE => tracing::info!(server, "replica {server} usable; reads go to it"),
            DOWN => tracing::warn!(server, "replica {server} unreachable; reads go elsewhere"),
            LAGGING => {
                let lag_ms = slot.health.lag_ms.load(Ordering::Relaxed);
                tracing::warn!(
                    server,
                    lag_ms,
                    "replica {server} lagging; reads go elsewhere"
                );
            }
            _ => tracing::info!(server, "{server} is the leader; reads go to other servers"),
        }
    }

    /// Runs the health and lag checks until `stop` resolves.
    pub async fn run_checks(self: Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        let mut stop = stop;
        let mut st = Checks::default();
        let mut tick = tokio::time::interval(self.config.check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.check(&mut st).await,
                _ = stop.changed() => return,
            }
        }
    }

    fn fallback(&self, why: Fallback) {
        self.metrics.fallback(why);
    }

    /// Runs a read with the routing rules above. `f` is called once, or twice when the
    /// replica fails underneath it.
    pub async fn read<T, F>(&self, after: Option<&GtidSet>, f: F) -> Result<(T, Served), DbError>
    where
        T: Send,
        F: for<'c> Fn(&'c mut MySqlConnection) -> BoxFuture<'c, Result<T, sqlx::Error>>
            + Send
            + Sync,
    {
        let timeout = self.config.query_timeout;
        let after = after.filter(|g| !g.is_empty());
        match self.pick_replica(after) {
            Err(why) => self.fallback(why),
            Ok((slot, wait)) => {
                match on_replica(slot, wait, &f, timeout, self.config.gtid_wait).await {
                    Ok(Some(v)) => {
                        self.metrics.read(Role::Replica);
                        let served = Served {
                            role: Role::Replica,
                            server: Arc::clone(&slot.name),
                        };
                        return Ok((v, served));
                    }
                    Ok(None) => self.fallback(Fallback::GtidWait),
                    // No free replica connection, or the query was slow: this request goes to
                    // the leader, but the replica is not declared down for it.
                    Err(sqlx::Error::PoolTimedOut) => self.fallback(Fallback::ReplicaBusy),
                    Err(e) if is_connection_error(&e) => {
                        let server = &slot.server.host;
                        tracing::warn!(server, error = %e, "replica read failed; retrying on the leader");
                        self.set_server(slot, DOWN, None);
                        self.fallback(Fallback::ReplicaError);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let (v, server) = self.on_primary(&f, timeout).await?;
        self.metrics.read(Role::Primary);
        let served = Served {
            role: Role::Primary,
            server,
        };
        Ok((v, served))
    }

    /// Chooses the replica a read that presents `after` goes to, and whether it must wait
    /// for the GTID there: without a GTID, the next usable one round robin; with one, a
    /// usable one that already had it at the last check, else the next one after a wait.
    /// `Err` when the read goes to the leader. A GTID the leader did not have at the last
    /// check was written since (or is made up): the leader serves it without waiting, so a
    /// client cannot hold replica connections with GTIDs that will never arrive. Waits
    /// are bounded in number too.
    fn pick_replica<'g>(&self, after: Option<&'g GtidSet>) -> Result<Pick<'_, 'g>, Fallback> {
        let primary = self.primary.load();
        let leader = primary.as_ref().map(|p| &p.leader);
        let others = || {
            self.servers
                .iter()
                .filter(move |s| !leader.is_some_and(|l| s.is(l)))
        };
        let usable: Vec<&Slot> = others().filter(|s| s.state() == USABLE).collect();
        if usable.is_empty() {
            return Err(match others().count() {
                0 => Fallback::NoReplica,
                n if others().filter(|s| s.state() == DOWN).count() == n => Fallback::ReplicaDown,
                _ => Fallback::ReplicaLagging,
            });
        }
        let start = self.next_replica.fetch_add(1, Ordering::Relaxed) % usable.len();
        let mut turn = usable.iter().cycle().skip(start).take(usable.len());
        let Some(gtid) = after else {
            return turn.next().map(|s| (*s, None)).ok_or(Fallback::NoReplica);
        };
        let covered = |m: &Mutex<GtidSet>| m.lock().map(|p| p.covers(gtid)).unwrap_or(false);
        if let Some(s) = turn.clone().find(|s| covered(&s.health.pos)) {
            return Ok((*s, None));
        }
        if !covered(&self.health.pos) {
            return Err(Fallback::GtidFresh);
        }
        match (turn.next(), self.gtid_waits.try_acquire()) {
            (Some(s), Ok(permit)) => Ok((*s, Some((gtid, permit)))),
            _ => Err(Fallback::GtidWait),
        }
    }

    async fn on_primary<T, F>(&self, f: &F, timeout: Duration) -> Result<(T, Arc<str>), DbError>
    where
        F: for<'c> Fn(&'c mut MySqlConnection) -> BoxFuture<'c, Result<T, sqlx::Error>>,
    {
        let Some(primary) = self.primary.load_full() else {
            self.metrics.db_error(Role::Primary);
            return Err(DbError::Unavailable("no leader".into()));
        };
        let run = async {
            let mut conn = primary.pool.acquire().await?;
            let v = f(&mut conn).await?;
            conn.reusable();
            Ok::<_, sqlx::Error>(v)
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(r) => r.map(|v| (v, Arc::clone(&primary.name))).map_err(|e| {
                self.metrics.db_error(Role::Primary);
                DbError::from(e)
            }),
            Err(_) => {
                self.metrics.db_error(Role::Primary);
                Err(DbError::Unavailable("leader query timed out".into()))
            }
        }
    }

    /// Runs a write on the leader under the write rules above and returns its result with
    /// the GTID it committed (absent when it could not be read). `f` runs inside the
    /// transaction `write` opened and must not commit; reads inside it run on the same
    /// connection. Counted in the metrics: committed writes, refusals by reason, errors.
    pub async fn write<T, F>(&self, f: F) -> Result<(T, Option<GtidSet>), DbError>
    where
        T: Send,
        F: for<'c> FnOnce(&'c mut MySqlConnection) -> BoxFuture<'c, Result<T, DbError>> + Send,
    {
        self.wait_for_writable_leader().await;
        let r = self.write_quiet(f).await;
        match &r {
            Ok(_) => {
                self.metrics.db_writes.inc();
            }
            // Counted always; logged at warn only when the client cannot know what
            // happened (a failover refuses every write for a while: that is the metric's).
            Err(DbError::Refused { why, detail }) => {
                if *why == Refusal::OutcomeUnknown {
                    tracing::warn!(reason = why.as_str(), %detail, "write outcome unknown");
                } else {
                    tracing::debug!(reason = why.as_str(), %detail, "write refused");
                }
                self.metrics.refused(*why);
            }
            Err(DbError::Duplicate { .. } | DbError::Invalid { .. }) => {}
            Err(_) => self.metrics.db_error(Role::Primary),
        }
        r
    }

    /// Waits, at most `database.write_wait`, until the leader is known and writable: a
    /// switchover (the leader marks itself unwritable, then hands over) or a failover in
    /// progress pauses writes rather than failing them. Returns at once in the common
    /// case; after the wait, `write_quiet` refuses if there is still none.
    async fn wait_for_writable_leader(&self) {
        let deadline = tokio::time::Instant::now() + self.config.write_wait;
        loop {
            let changed = self.leader_changed.notified();
            if self
                .primary
                .load()
                .as_ref()
                .is_some_and(|p| p.leader.writable)
            {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return;
            }
        }
    }

    /// [`Db::write`] without the metrics, for the server's own housekeeping.
    pub async fn write_quiet<T, F>(&self, f: F) -> Result<(T, Option<GtidSet>), DbError>
    where
        T: Send,
        F: for<'c> FnOnce(&'c mut MySqlConnection) -> BoxFuture<'c, Result<T, DbError>> + Send,
    {
        let Some(primary) = self.primary.load_full() else {
            return Err(refused(Refusal::NoPrimary, "no leader"));
        };
        let leader = &primary.leader;
        if !leader.writable {
            return Err(refused(
                Refusal::NotWritable,
                format!(
                    "leader {} (epoch {}) is not writable yet",
                    leader.host, leader.epoch
                ),
            ));
        }
        let deadline = tokio::time::Instant::now() + self.config.query_timeout;
        let run = transaction(&primary, f);
        let (v, mut conn) = match tokio::time::timeout_at(deadline, run).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(refused(
                    Refusal::NoPrimary,
                    format!(
                        "{}: no answer within query_timeout; nothing was committed",
                        leader.addr
                    ),
                ))
            }
        };
        let committed = AtomicBool::new(false);
        let gtid = match tokio::time::timeout_at(deadline, commit(&mut conn, &committed)).await {
            Ok(Ok(gtid)) => {
                conn.reusable();
                gtid
            }
            // Once COMMIT answered OK nothing turns the write into an error; only the GTID
            // is missing.
            _ if committed.load(Ordering::Relaxed) => None,
            Ok(Err(e)) if !is_connection_error(&e) => {
                // The server answered: the transaction did not commit.
                return Err(DbError::Query(e));
            }
            Ok(Err(e)) => {
                return Err(refused(
                    Refusal::OutcomeUnknown,
                    format!(
                        "{}: connection lost after COMMIT was sent: {e}",
                        leader.addr
                    ),
                ))
            }
            Err(_) => {
                return Err(refused(
                    Refusal::OutcomeUnknown,
                    format!("{}: no answer to COMMIT within query_timeout", leader.addr),
                ))
            }
        };
        Ok((v, gtid.filter(|g| !g.is_empty())))
    }

    /// Closes every pool (shutdown).
    pub async fn close(&self) {
        if let Some(p) = self.primary.load_full() {
            p.pool.close().await;
        }
        for s in &self.servers {
            s.pool.close().await;
        }
    }
}

/// The fence with `START TRANSACTION` and the caller's statements on a connection to the
/// leader, everything but `COMMIT` ([`commit`]). On an error the transaction is rolled
/// back (or the connection closed, which rolls it back).
async fn transaction<'p, T, F>(primary: &'p Primary, f: F) -> Result<(T, Conn<'p>), DbError>
where
    F: for<'c> FnOnce(&'c mut MySqlConnection) -> BoxFuture<'c, Result<T, DbError>>,
{
    let leader = &primary.leader;
    let before_commit = |e: sqlx::Error| {
        if error_number(&e) == Some(ER_READ_ONLY) {
            refused(Refusal::NotWritable, format!("{}: read_only", leader.addr))
        } else if is_connection_error(&e) {
            refused(Refusal::NoPrimary, format!("{}: {e}", leader.addr))
        } else {
            DbError::Query(e)
        }
    };
    let mut conn = primary.pool.acquire().await.map_err(before_commit)?;
    // One exchange: the transaction begins and the fence's answer comes from inside it.
    let rows = sqlx::Executor::fetch_all(
        &mut *conn,
        "START TRANSACTION; SELECT CAST(@@server_id AS UNSIGNED), CAST(@@read_only AS UNSIGNED)",
    )
    .await
    .map_err(before_commit)?;
    let answer = rows
        .first()
        .ok_or_else(|| sqlx::Error::Protocol("the fence returned no row".into()))
        .and_then(|row| Ok((row.try_get::<u64, _>(0)?, row.try_get::<u64, _>(1)?)))
        .map_err(before_commit)?;
    if let Err(e) = fenced(answer, leader) {
        // Nothing was done in the transaction; ending it keeps the connection usable.
        if simple(&mut conn, "ROLLBACK").await.is_ok() {
            conn.reusable();
        }
        return Err(e);
    }
    match f(&mut conn).await {
        Ok(v) => Ok((v, conn)),
        Err(e) => {
            let e = match e {
                DbError::Query(e) => before_commit(e),
                DbError::Unavailable(why) => {
                    refused(Refusal::NoPrimary, format!("{}: {why}", leader.addr))
                }
                e => e,
            };
            // The statement was refused, the connection is fine: roll back and keep it.
            if !matches!(e, DbError::Refused { .. }) && simple(&mut conn, "ROLLBACK").await.is_ok()
            {
                conn.reusable();
            }
            Err(e)
        }
    }
}

/// `COMMIT` and the GTID it wrote, in one exchange; `committed` is set as soon as the
/// server has answered the `COMMIT` with OK, so a caller whose deadline passes during the
/// GTID read knows the write is done.
async fn commit(
    conn: &mut MySqlConnection,
    committed: &AtomicBool,
) -> Result<Option<GtidSet>, sqlx::Error> {
    use futures_util::StreamExt;
    let mut results = sqlx::Executor::fetch_many(conn, "COMMIT; SELECT CAST(@@last_gtid AS CHAR)");
    let mut gtid = None;
    while let Some(item) = results.next().await {
        match item? {
            sqlx::Either::Left(_) => committed.store(true, Ordering::Relaxed),
            sqlx::Either::Right(row) => {
                let text: Option<String> = row.try_get(0)?;
                gtid = text.as_deref().and_then(GtidSet::parse);
            }
        }
    }
    Ok(gtid)
}

/// Sends a statement without arguments as plain text (`COM_QUERY`), never prepared:
/// transaction control.
async fn simple(conn: &mut MySqlConnection, sql: &'static str) -> Result<(), sqlx::Error> {
    sqlx::Executor::execute(conn, sql).await.map(|_| ())
}

/// Why the fence refused a connection.
enum Fence {
    Sql(sqlx::Error),
    Refused(DbError),
}

/// The write fence on its own (the migrations' connection): the connection must reach
/// the server the leader key names, with `read_only` off.
async fn fence(conn: &mut MySqlConnection, leader: &Leader) -> Result<(), Fence> {
    let answer: (u64, u64) =
        sqlx::query_as("SELECT CAST(@@server_id AS UNSIGNED), CAST(@@read_only AS UNSIGNED)")
            .fetch_one(conn)
            .await
            .map_err(Fence::Sql)?;
    fenced(answer, leader).map_err(Fence::Refused)
}

/// Judges the fence's answer `(@@server_id, @@read_only)` against `leader`.
fn fenced((server_id, read_only): (u64, u64), leader: &Leader) -> Result<(), DbError> {
    if let Some(expected) = leader.server_id {
        if server_id != u64::from(expected) {
            return Err(refused(
                Refusal::ServerMismatch,
                format!(
                    "{} answers as server_id {server_id}, but the leader key names {} (server_id {expected})",
                    leader.addr, leader.host
                ),
            ));
        }
    }
    if read_only != 0 {
        return Err(refused(
            Refusal::NotWritable,
            format!("{} ({}) is read_only", leader.host, leader.addr),
        ));
    }
    Ok(())
}

/// `Ok(None)`: the replica has not applied the awaited GTID within `gtid_wait`.
async fn on_replica<T, F>(
    slot: &Slot,
    wait: Option<(&GtidSet, tokio::sync::SemaphorePermit<'_>)>,
    f: &F,
    timeout: Duration,
    gtid_wait: Duration,
) -> Result<Option<T>, sqlx::Error>
where
    F: for<'c> Fn(&'c mut MySqlConnection) -> BoxFuture<'c, Result<T, sqlx::Error>>,
{
    let run = async {
        let mut conn = slot.pool.acquire().await?;
        if let Some((gtid, _permit)) = wait {
            let waited: Option<i64> = sqlx::query_scalar("SELECT MASTER_GTID_WAIT(?, ?)")
                .bind(gtid.to_string())
                .bind(gtid_wait.as_secs_f64())
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

const GTID_BINLOG_POS: &str = "SELECT CAST(@@gtid_binlog_pos AS CHAR)";
const GTID_SLAVE_POS: &str = "SELECT CAST(@@gtid_slave_pos AS CHAR)";

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

/// Reads a GTID position (`sql` is [`GTID_BINLOG_POS`] or [`GTID_SLAVE_POS`]) on the
/// checker's connection in `slot`, connecting first if needed; `None` (and the connection
/// dropped) when the server did not answer in `t`.
async fn gtid_pos(
    slot: &mut Option<MySqlConnection>,
    options: &MySqlConnectOptions,
    t: Duration,
    sql: &'static str,
) -> Option<GtidSet> {
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

    /// A Db over three servers in etcd mode (nothing connects), `db1` the leader.
    fn three() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "x\n").unwrap();
        use rampart_telemetry::config::ConfigFile;
        let mut text = String::from(
            "[database]\npassword_file = \"pw\"\nreplica_pool_size = 8\nwrite_wait = \"0s\"\n\
             [database.etcd]\nendpoints = [\"https://127.0.0.1:2379\"]\n\
             ca = \"ca\"\ncert = \"c\"\nkey = \"k\"\n",
        );
        for i in 1..=3 {
            text.push_str(&format!(
                "[[database.servers]]\nhost = \"db{i}\"\naddr = \"127.0.0.1:{i}\"\n"
            ));
        }
        let config = crate::Config::parse(&dir.path().join("web.toml"), &text).unwrap();
        let db = Db::new(&config.database.unwrap(), Arc::new(Metrics::new())).unwrap();
        db.set_leader(Some(leader(1, 5)));
        (dir, db)
    }

    fn leader(id: u32, epoch: i64) -> Leader {
        Leader {
            host: format!("db{id}"),
            server_id: Some(id),
            addr: format!("127.0.0.1:{id}").parse().unwrap(),
            epoch,
            writable: true,
        }
    }

    fn set(db: &Db, host: &str, state: u8, pos: &str) {
        let slot = db.servers.iter().find(|s| s.server.host == host).unwrap();
        slot.health.state.store(state, Ordering::Relaxed);
        *slot.health.pos.lock().unwrap() = g(pos);
    }

    fn picked(r: &Result<Pick<'_, '_>, Fallback>) -> Result<(String, bool), Fallback> {
        match r {
            Ok((slot, wait)) => Ok((slot.server.host.clone(), wait.is_some())),
            Err(f) => Err(*f),
        }
    }

    /// Reads go round robin to the usable servers that are not the leader. A GTID a
    /// usable replica already had goes there without a wait; a made-up or just-written
    /// one (the leader did not have it at the last check) goes to the leader without a
    /// wait; otherwise a wait, at most a quarter of a replica pool at once.
    #[test]
    fn replica_choice_and_gtid_routing_never_wait_for_what_the_leader_has_not_got() {
        let (_dir, db) = three();
        *db.health.pos.lock().unwrap() = g("0-1-100");
        set(&db, "db1", USABLE, "");
        set(&db, "db2", USABLE, "0-1-90");
        set(&db, "db3", USABLE, "0-1-95");
        let mut seen: Vec<String> = (0..4)
            .map(|_| picked(&db.pick_replica(None)).unwrap().0)
            .collect();
        seen.sort();
        // The leader (db1) is never picked, even marked usable.
        assert_eq!(seen, ["db2", "db2", "db3", "db3"]);
        assert!(matches!(
            picked(&db.pick_replica(Some(&g("0-1-90")))),
            Ok((_, false))
        ));
        assert_eq!(
            picked(&db.pick_replica(Some(&g("0-1-93")))),
            Ok(("db3".to_owned(), false))
        );
        for fresh in ["0-1-101", "0-1-999999999", "7-7-7"] {
            assert_eq!(
                picked(&db.pick_replica(Some(&g(fresh)))),
                Err(Fallback::GtidFresh),
                "{fresh}"
            );
        }
        let (g97, g98) = (g("0-1-97"), g("0-1-98"));
        let a = db.pick_replica(Some(&g97));
        let b = db.pick_replica(Some(&g98));
        assert!(matches!(picked(&a), Ok((_, true))) && matches!(picked(&b), Ok((_, true))));
        // 8 / 4 = 2 waits at once; the third goes to the leader.
        assert_eq!(
            picked(&db.pick_replica(Some(&g("0-1-99")))),
            Err(Fallback::GtidWait)
        );
        drop(a);
        assert!(matches!(
            picked(&db.pick_replica(Some(&g("0-1-99")))),
            Ok((_, true))
        ));
        drop(b);

        // Why reads go to the leader.
        set(&db, "db2", DOWN, "");
        set(&db, "db3", LAGGING, "");
        assert_eq!(
            picked(&db.pick_replica(None)),
            Err(Fallback::ReplicaLagging)
        );
        set(&db, "db3", DOWN, "");
        assert_eq!(picked(&db.pick_replica(None)), Err(Fallback::ReplicaDown));
        // A new leader: the old one serves reads once the checker finds it usable.
        db.set_leader(Some(leader(2, 9)));
        assert_eq!(
            picked(&db.pick_replica(None)),
            Ok(("db1".to_owned(), false))
        );
    }

    /// A new epoch or address builds a new write pool; `writable` alone keeps it; the same
    /// value twice changes nothing; no leader refuses writes.
    #[test]
    fn leader_changes_swap_the_write_pool_only_for_a_new_epoch_or_address() {
        let (_dir, db) = three();
        let pool = |db: &Db| db.primary.load_full().map(|p| Arc::as_ptr(&p.pool));
        let first = pool(&db);
        assert_eq!(db.metrics.db_leader_changes.get(), 1);
        assert_eq!(db.metrics.db_leader_epoch.get(), 5);
        db.set_leader(Some(leader(1, 5)));
        let mut not_writable = leader(1, 5);
        not_writable.writable = false;
        db.set_leader(Some(not_writable));
        assert_eq!(pool(&db), first);
        assert_eq!(db.metrics.db_leader_writable.get(), 0);
        assert_eq!(db.metrics.db_leader_changes.get(), 1);
        db.set_leader(Some(leader(1, 6)));
        assert_ne!(pool(&db), first);
        assert_eq!(db.metrics.db_leader_changes.get(), 2);
        db.set_leader(None);
        assert!(db.leader().is_none());
        assert_eq!(db.metrics.db_leader_epoch.get(), 0);
        assert_eq!(db.metrics.db_leader_changes.get(), 3);
    }

    /// Without a leader, or with one that is not writable, a write is refused before any
    /// connection is made.
    #[tokio::test]
    async fn writes_without_a_writable_leader_are_refused_before_connecting() {
        let (_dir, db) = three();
        let mut l = leader(1, 5);
        l.writable = false;
        db.set_leader(Some(l));
        let write =
            || db.write(|_conn: &mut MySqlConnection| Box::pin(async { Ok::<_, DbError>(()) }));
        let why = |r: Result<((), Option<GtidSet>), DbError>| match r {
            Err(DbError::Refused { why, .. }) => why,
            other => panic!("{other:?}"),
        };
        assert_eq!(why(write().await), Refusal::NotWritable);
        db.set_leader(None);
        assert_eq!(why(write().await), Refusal::NoPrimary);
        let refused = db.metrics.encode();
        assert!(
            refused.contains("rampart_web_db_writes_refused_total{reason=\"not_writable\"} 1"),
            "{refused}"
        );
        assert!(
            refused.contains("rampart_web_db_writes_refused_total{reason=\"no_primary\"} 1"),
            "{refused}"
        );
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

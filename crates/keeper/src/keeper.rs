//! The keeper's loop: every tick it supervises its server, renews its lease, reads
//! everything under the prefix in one linearizable range, and acts as leader, follower
//! or candidate (the rules are in `coord.rs`).
//!
//! **Leader.** Holds the leader key on its lease; turns `read_only` off only after
//! winning it (promoting first if it was a replica: stop the IO thread, wait until the
//! relay log is applied, reset replication), then marks the key writable. Names a
//! caught-up follower as its synchronous standby and then runs semi-sync with no
//! timeout (the commit waits for the standby's acknowledgement, never falls back). A
//! standby gone for `degrade_after` is first cleared from the sync key (so it can no
//! longer be promoted), and only then is semi-sync turned off. Every leader write to
//! etcd is guarded by the epoch.
//!
//! **Losing the lease demotes at once:** a leader that cannot renew before its lease
//! ends (less one request timeout), sees another leader, or sees no key, makes its
//! server read-only (killing it when that blocks: a commit waiting for an
//! acknowledgement holds it) and closes the application's sessions.
//!
//! **Follower.** Read-only; replicates from the leader over verified TLS with GTID,
//! semi-sync on only if it is the named standby; promotable once its IO thread has
//! received everything the leader had binlogged, since its server last started. A
//! replication error 1236 means its history diverged: it stops and stays out.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rampart_etcd::{Client, Compare, Op, Txn};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::coord::{
    choose_standby, elect, standby_connected, Election, Keys, LeaderValue, MemberRole, MemberValue,
    SyncValue, View,
};
use crate::gtid::Gtid;
use crate::server::{sql_string, Local, Server};

/// A replication error that means the histories diverged.
const ER_MASTER_FATAL_ERROR_READING_BINLOG: u32 = 1236;
/// The primary's semi-sync timeout when no fallback is wanted: a year, in ms.
const SEMI_SYNC_FOREVER_MS: u64 = 365 * 24 * 3600 * 1000;
/// How long before its lease ends a leader stops taking writes: the read-only switch
/// waits up to a second for locks, and the kill that follows when it cannot must land
/// before etcd can expire the lease and a standby can promote.
const FENCE_MARGIN: Duration = Duration::from_secs(2);
/// How long a switchover lets writes already past the web servers' check finish after
/// marking the leader unwritable, before it turns `read_only` on.
const SWITCHOVER_DRAIN: Duration = Duration::from_millis(200);
/// The longest the promotion waits for the relay log to be applied.
const APPLY_WAIT: Duration = Duration::from_secs(60);

/// What the status endpoint and the metrics show.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Snapshot {
    pub host: String,
    pub role: String,
    pub epoch: Option<i64>,
    pub leader: Option<String>,
    pub sync_standby: Option<String>,
    pub read_only: Option<bool>,
    pub semi_sync_enabled: bool,
    pub semi_sync_active: bool,
    pub semi_sync_clients: u32,
    pub gtid_binlog_pos: String,
    pub gtid_current_pos: String,
    pub received: String,
    pub lag_seconds: Option<u64>,
    pub promotable: bool,
    pub etcd_up: bool,
    pub server_up: bool,
    pub server_pid: Option<u32>,
    pub failovers: u64,
    pub failovers_refused: u64,
    pub demotions: u64,
    pub server_restarts: u64,
    /// Renewed server certificates loaded (`FLUSH SSL`).
    pub tls_reloads: u64,
    pub epoch_changes: u64,
    pub note: String,
    /// Ready for `up`'s probe: the server answers and etcd was reached.
    pub ready: bool,
}

/// A switchover request from the status endpoint, answered when done.
pub struct Switchover {
    pub to: Option<String>,
    pub reply: oneshot::Sender<Result<String, String>>,
}

#[derive(Clone, Copy, Debug)]
struct Lease {
    id: i64,
    valid_until: Instant,
    renewed: Instant,
}

/// The lease as the renewal task keeps it, shared with the loop.
type SharedLease = Arc<Mutex<Option<Lease>>>;

/// While this keeper leads, the renewal task kills the server itself this long before
/// the lease ends if the loop has not fenced it by then (the loop may be waiting on SQL
/// that answers slowly).
const LAST_RESORT: Duration = Duration::from_secs(1);

/// Grants and renews the keeper's lease, on its own so that slow SQL in the loop never
/// delays a renewal, and kills the server (`pid`) as a last resort when a leader's
/// lease is about to end.
async fn renew_loop(
    etcd: Client,
    lease: SharedLease,
    ttl: Duration,
    every: Duration,
    leading: Arc<std::sync::atomic::AtomicBool>,
    pid: Arc<std::sync::atomic::AtomicU32>,
) {
    use std::sync::atomic::Ordering;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let current = lease.lock().ok().and_then(|l| *l);
        match current {
            None => match etcd.grant(ttl).await {
                Ok(l) => {
                    if let Ok(mut g) = lease.lock() {
                        *g = Some(Lease {
                            id: l.id,
                            valid_until: now + l.ttl,
                            renewed: now,
                        });
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot get a lease from etcd"),
            },
            Some(l) if now.duration_since(l.renewed) >= every => {
                let answer = etcd.keepalive(l.id).await;
                if let Ok(mut g) = lease.lock() {
                    // Unless the loop dropped or replaced it meanwhile.
                    if g.is_some_and(|cur| cur.id == l.id) {
                        match answer {
                            // Measured from the send: the server never ends it before.
                            Ok(Some(ttl)) => {
                                *g = Some(Lease {
                                    id: l.id,
                                    valid_until: now + ttl,
                                    renewed: now,
                                });
                            }
                            Ok(None) => *g = None,
                            Err(e) => tracing::debug!(error = %e, "cannot renew the lease"),
                        }
                    }
                }
            }
            Some(_) => {}
        }
        if leading.load(Ordering::Relaxed) {
            let until = lease.lock().ok().and_then(|l| l.map(|l| l.valid_until));
            if until.is_none_or(|u| Instant::now() + LAST_RESORT >= u) {
                let raw = pid.load(Ordering::Relaxed);
                if let Some(p) = rustix::process::Pid::from_raw(raw as i32) {
                    tracing::error!(
                        pid = raw,
                        "the lease ends and the server still leads: killing it"
                    );
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                    leading.store(false, Ordering::Relaxed);
                }
            }
        }
    }
}

pub struct Keeper {
    config: Config,
    etcd: Client,
    keys: Keys,
    server: Server,
    repl_password: String,
    lease: SharedLease,
    leading: Arc<std::sync::atomic::AtomicBool>,
    server_pid: Arc<std::sync::atomic::AtomicU32>,
    epoch: Option<i64>,
    writable_published: bool,
    following: Option<String>,
    promotable_generation: Option<u64>,
    replication_started: Option<u64>,
    standby_gone_since: Option<Instant>,
    /// The primary's acknowledgement count and when it last moved (or nothing waited).
    last_acks: (u64, Instant),
    diverged: Option<String>,
    last_published: Option<(MemberValue, Instant)>,
    last_seen_epoch: Option<i64>,
    note: String,
    snapshot: Arc<Mutex<Snapshot>>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Keeper {
    pub fn new(
        config: Config,
        etcd: Client,
        server: Server,
        repl_password: String,
        snapshot: Arc<Mutex<Snapshot>>,
    ) -> Keeper {
        let keys = Keys {
            prefix: config.prefix.clone(),
        };
        if let Ok(mut s) = snapshot.lock() {
            s.host = config.host.clone();
        }
        Keeper {
            config,
            etcd,
            keys,
            server,
            repl_password,
            lease: Arc::new(Mutex::new(None)),
            leading: Arc::default(),
            server_pid: Arc::default(),
            epoch: None,
            writable_published: false,
            following: None,
            promotable_generation: None,
            replication_started: None,
            standby_gone_since: None,
            last_acks: (0, Instant::now()),
            diverged: None,
            last_published: None,
            last_seen_epoch: None,
            note: String::new(),
            snapshot,
        }
    }

    fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        if text != self.note {
            tracing::info!("{text}");
            self.note = text;
        }
    }

    fn bump(&self, f: impl FnOnce(&mut Snapshot)) {
        if let Ok(mut s) = self.snapshot.lock() {
            f(&mut s);
        }
    }

    /// Runs until `shutdown`, then stops the server cleanly (giving up leadership
    /// first).
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
        mut switchovers: mpsc::Receiver<Switchover>,
    ) {
        let renewal = tokio::spawn(renew_loop(
            self.etcd.clone(),
            Arc::clone(&self.lease),
            self.config.lease_ttl,
            self.config.renew_every,
            Arc::clone(&self.leading),
            Arc::clone(&self.server_pid),
        ));
        let mut ticker = tokio::time::interval(self.config.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = ticker.tick() => self.tick().await,
                Some(req) = switchovers.recv() => {
                    let out = self.switchover(req.to.as_deref()).await;
                    let _ = req.reply.send(out);
                }
            }
        }
        if self.epoch.is_some() {
            self.demote("shutting down").await;
        }
        renewal.abort();
        if let Some(l) = self.take_lease() {
            let _ = self.etcd.revoke(l.id).await;
        }
        self.server.stop(Duration::from_secs(30)).await;
        tracing::info!("keeper stopped");
    }

    /// When a leader must have stopped taking writes: its lease's end less
    /// [`FENCE_MARGIN`] (the read-only switch, or the kill, takes up to a request
    /// timeout). `None` when not leading.
    fn fence(&self) -> Option<Instant> {
        self.epoch?;
        Some(
            self.lease_now()
                .map_or_else(Instant::now, |l| l.valid_until)
                .checked_sub(FENCE_MARGIN)
                .unwrap_or_else(Instant::now),
        )
    }

    /// Demotes a leader whose fence time has come.
    async fn check_fence(&mut self) {
        if self.fence().is_some_and(|f| Instant::now() >= f) {
            self.demote("cannot renew the leader lease in time").await;
        }
    }

    /// Runs an etcd call, but never past a leader's fence time (then `None`).
    async fn bounded<T>(&self, fut: impl std::future::Future<Output = T>) -> Option<T> {
        match self.fence() {
            Some(f) => tokio::time::timeout_at(f.into(), fut).await.ok(),
            None => Some(fut.await),
        }
    }

    /// A transaction, bounded by a leader's fence time.
    async fn txn(&self, txn: &Txn) -> Result<rampart_etcd::TxnResponse, String> {
        match self.bounded(self.etcd.txn(txn)).await {
            Some(r) => r.map_err(|e| e.to_string()),
            None => Err("the lease's fence time came first".into()),
        }
    }

    /// Tells the renewal task whether this keeper leads and which server to kill as a
    /// last resort.
    fn share_state(&self) {
        use std::sync::atomic::Ordering;
        self.leading.store(self.epoch.is_some(), Ordering::Relaxed);
        self.server_pid
            .store(self.server.pid().unwrap_or(0), Ordering::Relaxed);
    }

    async fn tick(&mut self) {
        self.share_state();
        // First of all: a leader that was stopped or starved past its fence demotes
        // before anything else (the monotonic clock counts the time it was stopped).
        self.check_fence().await;
        // The server process: restart it when it died, with a short back-off.
        if let Some(status) = self.server.exited(Duration::from_secs(1)) {
            tracing::warn!(%status, "the database server exited");
            if self.epoch.is_some() {
                self.give_up("the database server exited").await;
            }
            self.following = None;
        }
        match self.server.start_if_due() {
            Ok(true) => {
                self.following = None;
                self.promotable_generation = None;
            }
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "cannot start the database server"),
        }
        let local = if self.server.running() {
            match self.server.status().await {
                Ok(l) => {
                    if let Err(e) = self.server.reload_tls_if_renewed().await {
                        tracing::warn!(error = %e, "cannot load the renewed certificate");
                    }
                    Some(l)
                }
                Err(e) => {
                    let silent = self.server.answered.map_or(Duration::ZERO, |t| t.elapsed());
                    if silent >= self.config.unresponsive_after {
                        tracing::warn!(error = %e, ?silent, "the database server does not answer; killing it");
                        if self.epoch.is_some() {
                            self.give_up("the database server does not answer").await;
                        }
                        self.server.kill();
                    }
                    None
                }
            }
        } else {
            None
        };

        self.check_fence().await;
        let range = self.bounded(self.etcd.get_prefix(&self.keys.prefix)).await;
        self.check_fence().await;
        let view = match range {
            Some(Ok(range)) => {
                let (view, bad) = self.keys.view(&range.kvs, range.revision);
                for key in bad {
                    tracing::warn!(key, "ignoring a value that does not parse");
                }
                Some(view)
            }
            Some(Err(e)) => {
                self.note(format!("etcd unreachable: {e}"));
                None
            }
            None => None,
        };
        self.bump(|s| s.etcd_up = view.is_some());
        if let (Some(view), Some(local)) = (view.as_ref(), local.as_ref()) {
            self.act(view, local).await;
        } else if let Some(view) = view.as_ref() {
            self.observe_epoch(view);
        }
        let member = self.member(local.as_ref());
        if let Some(view) = view.as_ref() {
            self.publish(&member).await;
            self.update_snapshot(view, local.as_ref(), &member);
        }
        let ready = local.is_some() && view.is_some();
        self.bump(|s| {
            s.ready = ready;
            s.server_up = local.is_some();
            s.server_pid = self.server.pid();
            s.server_restarts = self.server.restarts;
            s.tls_reloads = self.server.tls_reloads;
            s.note = self.note.clone();
        });
    }

    fn observe_epoch(&mut self, view: &View) {
        let epoch = view.leader.as_ref().map(|l| l.epoch);
        if epoch.is_some() && epoch != self.last_seen_epoch {
            if self.last_seen_epoch.is_some() {
                self.bump(|s| s.epoch_changes += 1);
            }
            self.last_seen_epoch = epoch;
        }
    }

    async fn act(&mut self, view: &View, local: &Local) {
        self.observe_epoch(view);
        match &view.leader {
            Some(l) if l.value.host == self.config.host && Some(l.epoch) == self.epoch => {
                self.lead(view, local).await;
            }
            Some(l) if l.value.host == self.config.host => {
                // A key naming this host that this keeper does not hold: left by an
                // earlier run of this keeper (whose server died with it), or kept after
                // a demotion. Remove it, guarded by its epoch, so the cluster moves on.
                let txn = Txn::new()
                    .when(Compare::CreateRevision(self.keys.leader(), l.epoch))
                    .then(Op::Delete(self.keys.leader()));
                match self.txn(&txn).await {
                    Ok(_) => self.note(format!("removed a stale leader key (epoch {})", l.epoch)),
                    Err(e) => tracing::warn!(error = %e, "removing a stale leader key"),
                }
            }
            Some(l) => {
                if self.epoch.is_some() {
                    self.demote(&format!("{} leads now", l.value.host)).await;
                }
                let (host, addr) = (l.value.host.clone(), l.value.addr.clone());
                self.follow(view, local, &host, &addr).await;
            }
            None => {
                if self.epoch.is_some() {
                    self.demote("the leader key is gone").await;
                }
                self.ensure_read_only(local).await;
                self.campaign(view, local).await;
            }
        }
    }

    // ---- lease --------------------------------------------------------------------

    fn lease_now(&self) -> Option<Lease> {
        self.lease.lock().ok().and_then(|l| *l)
    }

    fn lease_id(&self) -> Option<i64> {
        self.lease_now().map(|l| l.id)
    }

    fn take_lease(&self) -> Option<Lease> {
        self.lease.lock().ok().and_then(|mut l| l.take())
    }

    // ---- leader -------------------------------------------------------------------

    fn leader_value(&self, writable: bool) -> Vec<u8> {
        serde_json::to_vec(&LeaderValue {
            host: self.config.host.clone(),
            server_id: self.server.server_id,
            addr: self.config.addr.to_string(),
            writable,
        })
        .unwrap_or_default()
    }

    /// A txn guarded by this keeper's epoch.
    fn guarded(&self, epoch: i64) -> Txn {
        Txn::new().when(Compare::CreateRevision(self.keys.leader(), epoch))
    }

    async fn campaign(&mut self, view: &View, local: &Local) {
        let Some(lease) = self.lease_id() else {
            return;
        };
        let me = self.member(Some(local));
        let quiet = self.config.quiet_period.as_secs();
        let (failover, why) = match elect(&me, self.config.bootstrap, view, unix_now(), quiet) {
            Election::Take { failover, why } => (failover, why),
            Election::Wait(why) => {
                self.note(format!("candidate: {why}"));
                return;
            }
            Election::Refused(why) => {
                if !self.note.starts_with("failover refused") {
                    self.bump(|s| s.failovers_refused += 1);
                }
                self.note(format!("failover refused: {why}"));
                return;
            }
        };
        let old = view.sync.clone().unwrap_or_default();
        let sync = SyncValue {
            leader: self.config.host.clone(),
            standby: None,
            failover_at: if failover {
                unix_now()
            } else {
                old.failover_at
            },
            handover: None,
            candidate: None,
        };
        let txn = Txn::new()
            .when(Compare::CreateRevision(self.keys.leader(), 0))
            .when(Compare::ModRevision(self.keys.sync(), view.sync_revision))
            .then(Op::Put {
                key: self.keys.leader(),
                value: self.leader_value(false),
                lease: Some(lease),
            })
            .then(Op::Put {
                key: self.keys.sync(),
                value: serde_json::to_vec(&sync).unwrap_or_default(),
                lease: None,
            });
        match self.txn(&txn).await {
            Ok(r) if r.succeeded => {
                self.epoch = Some(r.revision);
                self.share_state();
                self.writable_published = false;
                self.standby_gone_since = None;
                if failover {
                    self.bump(|s| s.failovers += 1);
                }
                tracing::warn!(epoch = r.revision, why, "took the leader key");
            }
            Ok(_) => self.note("lost the race for the leader key"),
            Err(e) => self.note(format!("taking the leader key: {e}")),
        }
    }

    async fn lead(&mut self, view: &View, local: &Local) {
        let Some(epoch) = self.epoch else { return };
        if !self.writable_published {
            if let Err(e) = self.promote(local).await {
                self.note(format!("promotion incomplete, retrying: {e}"));
                return;
            }
            let txn = self.guarded(epoch).then(Op::Put {
                key: self.keys.leader(),
                value: self.leader_value(true),
                lease: self.lease_id(),
            });
            match self.txn(&txn).await {
                Ok(r) if r.succeeded => {
                    self.writable_published = true;
                    self.following = None;
                    tracing::warn!(epoch, "primary: writable");
                    self.note(format!("primary (epoch {epoch})"));
                }
                Ok(_) => self.demote("the epoch changed while promoting").await,
                Err(e) => self.note(format!("publishing writable: {e}")),
            }
            return;
        }
        if local.read_only {
            let _ = self.server.exec("SET GLOBAL read_only = OFF").await;
        }
        let sync = view.sync.clone().unwrap_or_default();
        if sync.leader != self.config.host || sync.handover.is_some() {
            self.put_sync(epoch, None, None, &sync).await;
            return;
        }
        match (sync.standby.clone(), sync.candidate.clone()) {
            (None, None) => {
                if local.semi_master_enabled {
                    let _ = self
                        .server
                        .exec("SET GLOBAL rpl_semi_sync_master_enabled = OFF")
                        .await;
                }
                let binlog = Gtid::parse(&local.binlog).unwrap_or_default();
                if let Some(candidate) = choose_standby(&self.config.host, view, &binlog) {
                    if self
                        .put_sync(epoch, None, Some(candidate.clone()), &sync)
                        .await
                    {
                        tracing::info!(
                            candidate,
                            "asked a replica to connect as semi-sync standby"
                        );
                    }
                }
            }
            (None, Some(candidate)) => {
                // The candidate's semi-sync connection exists: wait for it from now on,
                // then name it (promotable).
                if standby_connected(&self.config.host, &candidate, view)
                    && local.semi_master_clients >= 1
                {
                    self.enable_semi_sync().await;
                    if self
                        .put_sync(epoch, Some(candidate.clone()), None, &sync)
                        .await
                    {
                        tracing::warn!(standby = candidate, "named the sync standby");
                        self.standby_gone_since = None;
                    }
                } else {
                    let since = *self.standby_gone_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.config.degrade_after
                        && self.put_sync(epoch, None, None, &sync).await
                    {
                        tracing::warn!(
                            candidate,
                            "the standby candidate did not connect; trying again"
                        );
                        self.standby_gone_since = None;
                    }
                }
            }
            (Some(standby), _) => {
                let want = self.semi_sync_timeout_ms();
                if !local.semi_master_enabled || local.semi_master_timeout_ms != want {
                    self.enable_semi_sync().await;
                }
                // Gone: not connected, or connected but not acknowledging while commits
                // wait (an acknowledgement the replica will never send, such as for
                // events it received before its semi-sync connection).
                let acked =
                    local.semi_master_acks != self.last_acks.0 || local.semi_master_waiting == 0;
                if acked {
                    self.last_acks = (local.semi_master_acks, Instant::now());
                }
                let there = standby_connected(&self.config.host, &standby, view)
                    && local.semi_master_clients >= 1
                    && self.last_acks.1.elapsed() < self.config.degrade_after;
                if there {
                    self.standby_gone_since = None;
                } else {
                    let since = *self.standby_gone_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.config.degrade_after {
                        // The order matters: first make the standby unpromotable, then
                        // stop waiting for it.
                        if self.put_sync(epoch, None, None, &sync).await {
                            let _ = self
                                .server
                                .exec("SET GLOBAL rpl_semi_sync_master_enabled = OFF")
                                .await;
                            tracing::warn!(
                                standby,
                                "the sync standby is gone or does not acknowledge: cleared it, replication is asynchronous"
                            );
                            self.standby_gone_since = None;
                        }
                    }
                }
            }
        }
    }

    fn semi_sync_timeout_ms(&self) -> u64 {
        self.config
            .semi_sync_fallback
            .map_or(SEMI_SYNC_FOREVER_MS, |d| d.as_millis() as u64)
    }

    async fn enable_semi_sync(&mut self) {
        let sql = format!(
            "SET GLOBAL rpl_semi_sync_master_wait_point = AFTER_SYNC; \
             SET GLOBAL rpl_semi_sync_master_wait_no_slave = ON; \
             SET GLOBAL rpl_semi_sync_master_timeout = {}; \
             SET GLOBAL rpl_semi_sync_master_enabled = ON",
            self.semi_sync_timeout_ms()
        );
        if let Err(e) = self.server.exec(&sql).await {
            tracing::warn!(error = %e, "turning semi-sync on");
        }
    }

    /// Writes the sync key (guarded by the epoch): this host leads, `standby` may be
    /// promoted. `true` when written.
    async fn put_sync(
        &mut self,
        epoch: i64,
        standby: Option<String>,
        candidate: Option<String>,
        old: &SyncValue,
    ) -> bool {
        let value = SyncValue {
            leader: self.config.host.clone(),
            standby,
            failover_at: old.failover_at,
            handover: None,
            candidate,
        };
        let txn = self.guarded(epoch).then(Op::Put {
            key: self.keys.sync(),
            value: serde_json::to_vec(&value).unwrap_or_default(),
            lease: None,
        });
        match self.txn(&txn).await {
            Ok(r) if r.succeeded => true,
            Ok(_) => {
                self.demote("the epoch changed").await;
                false
            }
            Err(e) => {
                self.note(format!("writing the sync key: {e}"));
                false
            }
        }
    }

    /// Turns a replica into the primary, in the order that loses nothing: stop
    /// receiving (which also fences the old primary: no acknowledgement can come from
    /// here any more), apply everything received, forget the old primary, then allow
    /// writes.
    async fn promote(&mut self, local: &Local) -> Result<(), String> {
        if let Some(r) = &local.replica {
            self.server
                .exec("STOP SLAVE IO_THREAD")
                .await
                .map_err(|e| format!("STOP SLAVE IO_THREAD: {e}"))?;
            let status = self.server.status().await.map_err(|e| e.to_string())?;
            let received = status
                .replica
                .as_ref()
                .map_or(r.received.clone(), |r| r.received.clone());
            // Everything received is applied once the SQL thread has read the whole
            // relay log. Not MASTER_GTID_WAIT(Gtid_IO_Pos): when the old primary died
            // mid-transaction the last group is partial, never completes, and was never
            // acknowledged (the acknowledgement follows a group's last event); RESET
            // SLAVE ALL discards it.
            let deadline = Instant::now() + APPLY_WAIT;
            loop {
                let s = self.server.status().await.map_err(|e| e.to_string())?;
                let drained = s.replica.as_ref().is_none_or(|r| {
                    !r.sql_running || r.sql_state.contains("has read all relay log")
                });
                if drained {
                    if let Some(r) = s.replica.as_ref().filter(|r| r.sql_errno != 0) {
                        return Err(format!(
                            "the SQL thread stopped with error {}: {}",
                            r.sql_errno, r.sql_error
                        ));
                    }
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(format!("the relay log is not applied up to {received} yet"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // A new primary waits for no one until it names a standby (the take-over
            // wrote the sync key without one).
            self.server
                .exec(
                    "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL rpl_semi_sync_slave_enabled = OFF; \
                     SET GLOBAL rpl_semi_sync_master_enabled = OFF",
                )
                .await
                .map_err(|e| format!("RESET SLAVE ALL: {e}"))?;
            tracing::warn!(
                received,
                "promoted: replication stopped after applying everything received"
            );
        }
        // Semi-sync stays as it is: on for a leader that resumes writes after a
        // switchover it called off, off for a new one.
        self.server
            .exec("SET GLOBAL read_only = OFF")
            .await
            .map_err(|e| format!("allowing writes: {e}"))
    }

    /// Stops being the leader at once: read-only (or killed), the application's
    /// sessions closed.
    async fn demote(&mut self, why: &str) {
        tracing::warn!(why, "demoting");
        self.epoch = None;
        self.writable_published = false;
        self.bump(|s| s.demotions += 1);
        if self.server.running() && !self.server.make_read_only().await {
            tracing::warn!(
                "read_only blocks (commits wait for an acknowledgement): killing the server"
            );
            self.server.kill();
        } else if self.server.running() {
            match self.server.kill_sessions(&self.config.app_users).await {
                Ok(n) if n > 0 => tracing::info!(sessions = n, "closed the application's sessions"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "closing the application's sessions"),
            }
        }
        self.note(format!("demoted: {why}"));
        self.share_state();
    }

    /// Gives up leadership because the server is gone: demote and end the lease, so a
    /// standby takes over without waiting for it to expire.
    async fn give_up(&mut self, why: &str) {
        self.demote(why).await;
        if let Some(l) = self.take_lease() {
            if let Err(e) = self.etcd.revoke(l.id).await {
                tracing::warn!(error = %e, "revoking the lease");
            }
            self.last_published = None;
        }
    }

    /// A planned switchover, run by the leader: read-only, wait for the target to have
    /// everything, then hand the key over (guarded by the epoch).
    async fn switchover(&mut self, to: Option<&str>) -> Result<String, String> {
        let Some(epoch) = self.epoch.filter(|_| self.writable_published) else {
            return Err(format!("{} is not the writable primary", self.config.host));
        };
        let range = self
            .etcd
            .get_prefix(&self.keys.prefix)
            .await
            .map_err(|e| format!("etcd: {e}"))?;
        let (view, _) = self.keys.view(&range.kvs, range.revision);
        let sync = view.sync.clone().unwrap_or_default();
        let target = match (to, sync.standby.as_deref()) {
            (Some(t), Some(s)) if t == s => t.to_owned(),
            (None, Some(s)) => s.to_owned(),
            (Some(t), _) => {
                return Err(format!(
                    "{t} is not the sync standby ({}); only a caught-up standby can take over without losing writes",
                    sync.standby.as_deref().unwrap_or("none")
                ))
            }
            (None, None) => return Err("no sync standby is named; nothing to switch to".into()),
        };
        if !view.members.get(&target).is_some_and(|m| m.promotable) {
            return Err(format!("{target} is not promotable yet (not caught up)"));
        }
        // First tell the web servers (they watch the key) to hold new writes, and let
        // the writes already on their way finish: a switchover pauses writes, it does
        // not fail them.
        let lease = self.lease_id();
        let hold = self.guarded(epoch).then(Op::Put {
            key: self.keys.leader(),
            value: self.leader_value(false),
            lease,
        });
        match self.txn(&hold).await {
            Ok(r) if r.succeeded => {}
            Ok(_) => return Err("the epoch changed during the switchover".into()),
            Err(e) => return Err(format!("etcd: {e}")),
        }
        self.writable_published = false;
        tokio::time::sleep(SWITCHOVER_DRAIN).await;
        // Commits in flight may wait for the standby's acknowledgement; read_only waits
        // for them (a second per try, new writes are held meanwhile).
        let mut read_only = false;
        for _ in 0..5 {
            if self.server.make_read_only().await {
                read_only = true;
                break;
            }
        }
        if !read_only {
            self.resume_writes(epoch).await;
            return Err("writes in flight did not finish within 5 s; still primary".into());
        }
        // Wait (bounded) until the target has received everything written here.
        let local = self.server.status().await.map_err(|e| e.to_string())?;
        let binlog = Gtid::parse(&local.binlog).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let range = self.etcd.get_prefix(&self.keys.prefix).await;
            let caught_up = range.ok().is_some_and(|r| {
                let (v, _) = self.keys.view(&r.kvs, r.revision);
                v.members.get(&target).is_some_and(|m| {
                    Gtid::parse(&m.received).unwrap_or_default().covers(&binlog)
                        || Gtid::parse(&m.current).unwrap_or_default().covers(&binlog)
                })
            });
            if caught_up {
                break;
            }
            if Instant::now() >= deadline {
                let _ = self.server.exec("SET GLOBAL read_only = OFF").await;
                return Err(format!(
                    "{target} did not catch up within 5 s; still primary"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let value = SyncValue {
            leader: self.config.host.clone(),
            standby: Some(target.clone()),
            failover_at: sync.failover_at,
            handover: Some(target.clone()),
            candidate: None,
        };
        let txn = self
            .guarded(epoch)
            .then(Op::Delete(self.keys.leader()))
            .then(Op::Put {
                key: self.keys.sync(),
                value: serde_json::to_vec(&value).unwrap_or_default(),
                lease: None,
            });
        match self.txn(&txn).await {
            Ok(r) if r.succeeded => {
                self.epoch = None;
                self.writable_published = false;
                let _ = self.server.kill_sessions(&self.config.app_users).await;
                tracing::warn!(target, "switchover: handed the leader key over");
                Ok(format!("{target} takes over from {}", self.config.host))
            }
            Ok(_) => Err("the epoch changed during the switchover".into()),
            Err(e) => {
                self.resume_writes(epoch).await;
                Err(format!("etcd: {e}"))
            }
        }
    }

    /// A switchover that did not happen: writable again (the next tick republishes the
    /// key as writable).
    async fn resume_writes(&mut self, epoch: i64) {
        if self.epoch == Some(epoch) {
            let _ = self.server.exec("SET GLOBAL read_only = OFF").await;
            self.writable_published = false;
        }
    }

    // ---- follower -----------------------------------------------------------------

    async fn ensure_read_only(&mut self, local: &Local) {
        if !local.read_only && !self.server.make_read_only().await {
            tracing::warn!("cannot make the server read-only: killing it");
            self.server.kill();
        }
    }

    async fn follow(&mut self, view: &View, local: &Local, leader: &str, addr: &str) {
        self.ensure_read_only(local).await;
        if local.semi_master_enabled {
            // A former primary's semi-sync would make its own SQL thread wait, forever,
            // for an acknowledgement of each replicated commit (nobody replicates from
            // it): the failover test's stuck promotions.
            if let Err(e) = self
                .server
                .exec("SET GLOBAL rpl_semi_sync_master_enabled = OFF")
                .await
            {
                tracing::warn!(error = %e, "turning semi-sync off on a replica");
            }
        }
        if let Some(err) = &self.diverged {
            self.note(format!(
                "diverged from {leader}, staying out until rebuilt: {err}"
            ));
            return;
        }
        let Ok(addr) = addr.parse::<SocketAddr>() else {
            self.note(format!("the leader key names a bad address `{addr}`"));
            return;
        };
        let me = Some(self.config.host.as_str());
        let standby = view
            .sync
            .as_ref()
            .is_some_and(|s| s.standby.as_deref() == me || s.candidate.as_deref() == me);
        let pointed = local
            .replica
            .as_ref()
            .is_some_and(|r| r.host == addr.ip().to_string() && r.port == addr.port());
        if !pointed {
            // Replicate from everything this server has binlogged: with
            // log_slave_updates that is everything it applied, and for a former primary
            // everything it kept after truncating its unacknowledged tail. (Not
            // MASTER_DEMOTE_TO_SLAVE: it keeps only GTIDs of the current server id, and
            // each start of a server has a new one; see `server::incarnation_id`.)
            let sql = format!(
                "STOP SLAVE; SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_binlog_pos; \
                 CHANGE MASTER TO MASTER_HOST={}, MASTER_PORT={}, MASTER_USER={}, MASTER_PASSWORD={}, \
                 MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, \
                 MASTER_HEARTBEAT_PERIOD=1, MASTER_SSL=1, MASTER_SSL_CA={}, MASTER_SSL_VERIFY_SERVER_CERT=1; \
                 SET GLOBAL rpl_semi_sync_slave_enabled = {}; \
                 START SLAVE",
                sql_string(&addr.ip().to_string()),
                addr.port(),
                sql_string(&self.config.repl_user),
                sql_string(&self.repl_password),
                sql_string(&self.config.ca.display().to_string()),
                if standby { "ON" } else { "OFF" },
            );
            match self.server.exec(&sql).await {
                Ok(()) => {
                    self.replication_started = Some(self.server.generation);
                    tracing::warn!(leader, %addr, "replicating from the leader");
                    self.following = Some(leader.to_owned());
                    self.promotable_generation = None;
                }
                // The error never quotes the statement (it holds the password).
                Err(e) => self.note(format!("pointing replication at {leader}: {e}")),
            }
            return;
        }
        self.following = Some(leader.to_owned());
        let Some(r) = &local.replica else { return };
        if local.semi_slave_enabled != standby {
            let sql = format!(
                "SET GLOBAL rpl_semi_sync_slave_enabled = {}; STOP SLAVE IO_THREAD; START SLAVE IO_THREAD",
                if standby { "ON" } else { "OFF" }
            );
            if let Err(e) = self.server.exec(&sql).await {
                tracing::warn!(error = %e, "switching semi-sync on the replica");
            }
            return;
        }
        if r.io_errno == ER_MASTER_FATAL_ERROR_READING_BINLOG && !r.io_running() {
            let err = format!("replication error {}: {}", r.io_errno, r.io_error);
            tracing::error!(
                leader,
                error = err,
                "this server's history diverged from the leader's; it stays out. \
                 Rebuild it with `rampart db rebuild {}`",
                self.config.host
            );
            let _ = self.server.exec("STOP SLAVE").await;
            self.diverged = Some(err);
            return;
        }
        if r.io == "No" && !r.sql_running {
            // Started once per server start (it starts with replication stopped); a
            // replication an operator stops afterwards stays stopped (maintenance, or
            // to see ReplicationStopped fire), as with any replica.
            if self.replication_started != Some(self.server.generation) {
                let _ = self.server.exec("START SLAVE").await;
                self.replication_started = Some(self.server.generation);
            }
            return;
        }
        if r.io_running() && self.promotable_generation != Some(self.server.generation) {
            let theirs = view
                .members
                .get(leader)
                .and_then(|m| Gtid::parse(&m.binlog))
                .unwrap_or_default();
            let mine = Gtid::parse(&r.received).unwrap_or_default();
            if !theirs.is_empty()
                && (mine.covers(&theirs)
                    || Gtid::parse(&local.current)
                        .unwrap_or_default()
                        .covers(&theirs))
            {
                self.promotable_generation = Some(self.server.generation);
                self.note(format!("replica of {leader}: caught up, promotable"));
            }
        }
    }

    // ---- reporting ----------------------------------------------------------------

    fn member(&self, local: Option<&Local>) -> MemberValue {
        let role = match local {
            None => MemberRole::Down,
            Some(_) if self.diverged.is_some() => MemberRole::Diverged,
            Some(_) if self.epoch.is_some() => MemberRole::Leader,
            Some(l)
                if l.replica.as_ref().is_some_and(|r| r.io_running())
                    && self.following.is_some() =>
            {
                MemberRole::Replica
            }
            Some(_) => MemberRole::Candidate,
        };
        let replica = local.and_then(|l| l.replica.as_ref());
        MemberValue {
            host: self.config.host.clone(),
            server_id: self.server.server_id,
            role,
            binlog: local.map(|l| l.binlog.clone()).unwrap_or_default(),
            current: local.map(|l| l.current.clone()).unwrap_or_default(),
            received: replica.map(|r| r.received.clone()).unwrap_or_default(),
            following: if role == MemberRole::Replica {
                self.following.clone()
            } else {
                None
            },
            // Caught up with the leader it follows since this server started: still
            // true once that leader is gone (its IO thread then only reconnects), which
            // is when it matters.
            promotable: matches!(role, MemberRole::Replica | MemberRole::Candidate)
                && self.following.is_some()
                && self.promotable_generation == Some(self.server.generation),
            lag_seconds: replica.and_then(|r| r.lag),
            error: self.diverged.clone(),
        }
    }

    async fn publish(&mut self, member: &MemberValue) {
        let Some(lease) = self.lease_id() else {
            return;
        };
        let fresh = self
            .last_published
            .as_ref()
            .is_some_and(|(m, at)| m == member && at.elapsed() < Duration::from_secs(10));
        if fresh {
            return;
        }
        let value = serde_json::to_vec(member).unwrap_or_default();
        match self
            .etcd
            .put(&self.keys.member(&self.config.host), &value, Some(lease))
            .await
        {
            Ok(_) => self.last_published = Some((member.clone(), Instant::now())),
            Err(rampart_etcd::Error::LeaseNotFound) => {
                let _ = self.take_lease();
                self.last_published = None;
            }
            Err(e) => self.note(format!("publishing this member: {e}")),
        }
    }

    fn update_snapshot(&self, view: &View, local: Option<&Local>, member: &MemberValue) {
        let epoch = self.epoch.or(view.leader.as_ref().map(|l| l.epoch));
        self.bump(|s| {
            s.role = member.role.as_str().to_owned();
            s.epoch = epoch;
            s.leader = view.leader.as_ref().map(|l| l.value.host.clone());
            s.sync_standby = view.sync.as_ref().and_then(|x| x.standby.clone());
            s.read_only = local.map(|l| l.read_only);
            s.semi_sync_enabled = local.is_some_and(|l| l.semi_master_enabled);
            s.semi_sync_active = local.is_some_and(|l| l.semi_master_active);
            s.semi_sync_clients = local.map_or(0, |l| l.semi_master_clients);
            s.gtid_binlog_pos = member.binlog.clone();
            s.gtid_current_pos = member.current.clone();
            s.received = member.received.clone();
            s.lag_seconds = member.lag_seconds;
            s.promotable = member.promotable;
        });
    }
}

//! The agent's main loop (`rampart agent --config agent.toml`): every interval it
//! collects host metrics, the local services' `/metrics`, the access-log counters,
//! database health and its own footprint, stamps them with one timestamp, and appends
//! the batch to the on-disk [`Buffer`]; a sender task drains the buffer oldest first
//! with remote write. Nothing is pushed that was not first on disk, so a monitor outage
//! or an agent restart loses no samples (within the buffer's bounds).
//!
//! Timing: the host, the scrapes and the database are read at the same time, each
//! bounded by the interval. A source that is not done by then is missing from that
//! sample and counted in `rampart_agent_collect_errors_total` (as a scrape past its
//! timeout is in Prometheus); a host collection still running (on a starved machine)
//! is not started again beside itself. The batch goes to a writer that appends it (an
//! fsync) while the next interval runs, with at most [`WRITE_QUEUE`] batches waiting.
//! The agent's own metrics read a copy of the buffer's stats, never its lock, which an
//! fsync may hold. So a slow disk, database or host read does not move the heartbeat
//! off its interval.
//!
//! Labels: every series gets `instance` (the host) and `job` (`node`, the scrape's job,
//! `accesslog`, `mysql` or `agent`).
//!
//! The clock: the monitor's `Date` header of each successful push bounds its clock from
//! below (`Date` is whole seconds, so the server's time is in `[date, date + 1 s)`). When
//! this host's clock is ahead of `date + 1 s`, samples are stamped that much earlier, so
//! none is from the monitor's future; the measured skew is exported as
//! `rampart_agent_clock_ahead_seconds`.
//!
//! Shape: [`Listeners::bind`] binds the own `/metrics` listener (if configured),
//! [`Agent::new`] opens the state, [`Agent::serve`] runs until a shutdown future
//! resolves; [`Agent`] is a [`rampart_telemetry::service::Service`]. The `/metrics`
//! listener accepts through [`rampart_telemetry::accept::Gate`] (allow-list, 16
//! connections, back-off on accept errors).
//!
//! Readiness: `ready` is called (and `agent ready` logged) once the first batch is on
//! disk.
//!
//! Shutdown: collection stops; a push in flight finishes (bounded by the push timeout);
//! everything not yet acknowledged stays in the buffer for the next start.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rampart_telemetry::accept::{Counters, Fixed, Gate, Slots};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::buffer::{self, Buffer};
use crate::config::Config;
use crate::logtail::LogTail;
use crate::remote_write::{self, WriteRequest};
use crate::{expo, host, mysql, scrape, Family, Kind, Sample};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("state directory {path}: {source}")]
    StateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("buffer: {0}")]
    Buffer(String),
    #[error("access log {path}: {reason}")]
    Log { path: String, reason: String },
    #[error("push TLS: {0}")]
    Tls(#[from] rampart_tls::TlsError),
}

/// Connections the own `/metrics` listener serves at once; more are closed at accept.
const METRICS_MAX_CONNECTIONS: usize = 16;

/// The agent's bound listener: its own `/metrics`, when `metrics_listen` is set.
#[derive(Debug)]
pub struct Listeners {
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses of `config`. Must be called inside a tokio runtime.
    pub fn bind(config: &Config) -> std::io::Result<Listeners> {
        Ok(Listeners {
            metrics: config
                .metrics_listen
                .map(|addr| rampart_telemetry::listen::tcp(addr, 64))
                .transpose()?,
        })
    }

    /// The bound `/metrics` address.
    pub fn local_addr(&self) -> std::io::Result<Option<SocketAddr>> {
        self.metrics
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()
    }
}

/// What the sender and the collector share.
#[derive(Debug, Default)]
struct Stats {
    pushes_ok: u64,
    pushes_failed_retryable: u64,
    pushes_failed_permanent: u64,
    samples_sent: u64,
    samples_dropped_permanent: u64,
    /// How far this host's clock is ahead of the monitor's, in ms (0 when behind).
    clock_ahead_ms: i64,
    last_push_ok_unix: f64,
    collect_errors: std::collections::BTreeMap<&'static str, u64>,
    collect_seconds: std::collections::BTreeMap<&'static str, f64>,
}

/// The agent: its config and the state its collectors keep between intervals.
pub struct Agent {
    config: Config,
    /// How pushes are made (TLS and the host's client certificate for an https URL).
    client: remote_write::Client,
    buffer: Arc<Store>,
    /// Held by the one collection running (serve collects one interval at a time).
    collectors: tokio::sync::Mutex<Collectors>,
    stats: Arc<Mutex<Stats>>,
    started: SystemTime,
    /// The text exposition of the last collection, for the own `/metrics`.
    last: watch::Sender<Arc<String>>,
    /// `[logs]`: log shipping.
    shipping: Option<Arc<crate::ship::Shipping>>,
    /// The firewall's drops (`[logs.firewall]`).
    drops: Arc<crate::firewall::Drops>,
    /// `[host] cgroup`: the cgroup collector's first reading.
    cgroup: Option<Arc<crate::cgroup::Tracker>>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("instance", &self.config.instance)
            .finish_non_exhaustive()
    }
}

/// What the collectors keep from one interval to the next.
struct Collectors {
    tails: Vec<LogTail>,
    mysql: Option<mysql::Collector>,
    /// A host collection that outran its interval (a thread cannot be stopped): the
    /// next one does not start beside it, and its late result is not used.
    node_running: Option<tokio::task::JoinHandle<Result<Vec<Family>, host::HostError>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data that is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The buffer and a copy of its stats as of its last change. An append or an
/// acknowledgement holds the buffer's lock through an fsync, which a loaded disk can
/// stretch to seconds; a collection reads the copy and never waits on that lock.
struct Store {
    buffer: Mutex<Buffer>,
    stats: Mutex<buffer::Stats>,
}

impl Store {
    fn new(buffer: Buffer) -> Store {
        Store {
            stats: Mutex::new(buffer.stats()),
            buffer: Mutex::new(buffer),
        }
    }

    /// Runs `f` on the buffer (blocking: call it from `spawn_blocking`), then refreshes
    /// the copy of its stats.
    fn with<R>(&self, f: impl FnOnce(&mut Buffer) -> R) -> R {
        let mut b = lock(&self.buffer);
        let r = f(&mut b);
        *lock(&self.stats) = b.stats();
        r
    }

    fn families(&self) -> Vec<Family> {
        buffer::families(&lock(&self.stats))
    }
}

/// Batches collected but not yet appended: a collection hands its batch over and goes
/// on, so a slow disk delays the buffer, not the next sample. Past this many the
/// collection waits (the disk is slower than the interval), and the heartbeat shows it.
const WRITE_QUEUE: usize = 4;

impl Agent {
    /// Opens the state directory (0700), the buffer and the log tails.
    pub fn new(config: Config) -> Result<Agent, AgentError> {
        let dir = &config.state_dir;
        let state_err = |source| AgentError::StateDir {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(state_err)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(state_err)?;
        }
        let buffer = Buffer::open(
            dir.join("buffer"),
            buffer::Limits {
                max_bytes: config.buffer_max_bytes,
                max_age: config.buffer_max_age,
                ..buffer::Limits::default()
            },
        )
        .map_err(|e| AgentError::Buffer(e.to_string()))?;
        let mut tails = Vec::new();
        for l in &config.access_logs {
            let state = dir.join(format!("logtail-{}.json", l.service));
            let tail = LogTail::open(&l.path, &l.service, &state).map_err(|e| AgentError::Log {
                path: l.path.display().to_string(),
                reason: e.to_string(),
            })?;
            tails.push(tail);
        }
        let shipping = match &config.logs {
            Some(l) => Some(Arc::new(
                crate::ship::Shipping::open(
                    l.clone(),
                    &config.instance,
                    dir,
                    buffer::Limits {
                        max_bytes: config.buffer_max_bytes,
                        // The store takes lines of any age: a day's outage still drains.
                        max_age: Duration::from_secs(86_400),
                        ..buffer::Limits::default()
                    },
                )
                .map_err(AgentError::Buffer)?,
            )),
            None => None,
        };
        let mysql = config.mysql.clone().map(mysql::Collector::new);
        let (last, _) = watch::channel(Arc::new(String::new()));
        let client = remote_write::Client {
            timeout: config.push_timeout,
            tls: match &config.push_tls {
                Some(tls) => Some(Arc::new(rampart_tls::client_config(tls)?)),
                None => None,
            },
        };
        Ok(Agent {
            client,
            cgroup: config.host_cgroup.then(Arc::default),
            config,
            buffer: Arc::new(Store::new(buffer)),
            collectors: tokio::sync::Mutex::new(Collectors {
                tails,
                mysql,
                node_running: None,
            }),
            stats: Arc::default(),
            started: SystemTime::now(),
            last,
            shipping,
            drops: Arc::default(),
        })
    }

    /// Runs until `shutdown` resolves, serving `/metrics` on `listeners`; `ready` is
    /// called once the first batch is on disk. Collection stops at shutdown, a push in
    /// flight finishes.
    pub async fn serve(
        &self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()>,
        ready: impl FnOnce(),
    ) -> std::io::Result<()> {
        let notify = Arc::new(Notify::new());
        let (stop_tx, stop_rx) = watch::channel(false);
        let sender = tokio::spawn(send_loop(
            self.config.clone(),
            self.client.clone(),
            self.buffer.clone(),
            self.stats.clone(),
            notify.clone(),
            stop_rx.clone(),
        ));
        let mut shipping: Vec<tokio::task::JoinHandle<()>> = Vec::new();
        if let Some(s) = self.shipping.clone() {
            let wake = Arc::new(Notify::new());
            shipping.push(tokio::spawn(
                Arc::clone(&s).read_loop(wake.clone(), stop_rx.clone()),
            ));
            if let Some(feed) = s.take_feed() {
                shipping.push(tokio::spawn(feed.run(stop_rx.clone())));
            }
            if let Some(fw) = self.config.logs.as_ref().and_then(|l| l.firewall.clone()) {
                shipping.push(tokio::spawn(crate::firewall::run(
                    fw.group,
                    Arc::new(fw.hosts),
                    Arc::clone(&s),
                    Arc::clone(&self.drops),
                    stop_rx.clone(),
                )));
            }
            shipping.push(tokio::spawn(s.send_loop(
                self.client.clone(),
                wake,
                stop_rx.clone(),
            )));
        }
        let server = listeners.metrics.map(|listener| {
            tokio::spawn(serve_metrics(
                listener,
                self.config.metrics_allow_from.clone(),
                self.last.subscribe(),
                stop_rx.clone(),
            ))
        });

        let (batches, mut queued) = tokio::sync::mpsc::channel::<WriteRequest>(WRITE_QUEUE);
        let collect = async move {
            let mut ticker = tokio::time::interval(self.config.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tokio::pin!(shutdown);
            loop {
                tokio::select! {
                    () = &mut shutdown => break,
                    _ = ticker.tick() => {}
                }
                let batch = self.collect_once().await;
                if batches.send(batch).await.is_err() {
                    break;
                }
                // The agent sleeps most of each interval: what one collection allocated
                // and freed goes back to the system instead of staying resident (with
                // mimalloc's default purge delay about a third of the agent's memory).
                rampart_sys::release_free_memory();
            }
            // Dropping `batches` ends the writer once it has appended what is queued.
        };
        let write = async {
            let mut ready = Some(ready);
            while let Some(batch) = queued.recv().await {
                let store = self.buffer.clone();
                let t = Instant::now();
                let appended =
                    tokio::task::spawn_blocking(move || store.with(|b| b.append(&batch))).await;
                // Reported with the next collection's durations.
                self.timed("buffer", t);
                match appended {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => self.failed("buffer", &e.to_string()),
                    Err(e) => self.failed("buffer", &e.to_string()),
                }
                notify.notify_one();
                if let Some(r) = ready.take() {
                    tracing::info!(config = %self.config.file.display(), "agent ready");
                    r();
                }
            }
        };
        tokio::join!(collect, write);
        stop_tx.send_replace(true);
        notify.notify_one();
        let _ = sender.await;
        for task in shipping {
            let _ = task.await;
        }
        if let Some(s) = server {
            let _ = s.await;
        }
        Ok(())
    }

    /// One collection: every source, one timestamp, one batch (for the buffer). The
    /// host, the scrapes and the database are read at the same time, each bounded by the
    /// interval (the database by `mysql.timeout` too), so one slow source neither delays
    /// the others nor, beyond the interval, the next collection.
    async fn collect_once(&self) -> WriteRequest {
        let mut collectors = self.collectors.lock().await;
        let Collectors {
            tails,
            mysql,
            node_running,
        } = &mut *collectors;
        let ahead = lock(&self.stats).clock_ahead_ms;
        let now_ms = unix_ms(SystemTime::now()) - ahead.max(0);
        let deadline = tokio::time::Instant::now() + self.config.interval;
        let mut groups: Vec<(String, Vec<Family>)> = Vec::new();

        let node = async {
            let root = self.config.host_root.clone()?;
            let t = Instant::now();
            let options = host::Options {
                textfile_dir: self.config.textfile_dir.clone(),
                cgroup: self.cgroup.clone(),
            };
            let mut running = match node_running.take() {
                Some(h) if !h.is_finished() => {
                    *node_running = Some(h);
                    self.failed("node", "the last interval's collection is still running");
                    return None;
                }
                _ => tokio::task::spawn_blocking(move || host::collect_with(&root, &options)),
            };
            let r = tokio::time::timeout_at(deadline, &mut running).await;
            self.timed("node", t);
            let Ok(r) = r else {
                *node_running = Some(running);
                self.failed("node", "not done within the interval");
                return None;
            };
            match r {
                Ok(Ok(mut f)) => {
                    // node_exporter's own process_* are in job "node" too; dashboards
                    // built for it look for them there.
                    f.extend(process_families(self.started));
                    Some(f)
                }
                Ok(Err(e)) => {
                    self.failed("node", &e.to_string());
                    None
                }
                Err(e) => {
                    self.failed("node", &e.to_string());
                    None
                }
            }
        };

        let scraped = async {
            let timeout = self.config.interval.min(Duration::from_secs(10));
            let t = Instant::now();
            let scrapes: Vec<_> = self
                .config
                .scrapes
                .iter()
                .map(|s| {
                    let url = s.url.clone();
                    let job = s.job.clone();
                    (
                        job,
                        tokio::spawn(async move { scrape::fetch(&url, timeout).await }),
                    )
                })
                .collect();
            let mut out = Vec::new();
            for (job, handle) in scrapes {
                let result = match handle.await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let up = match result {
                    Ok(body) => {
                        let (families, _bad) = scrape::parse(&String::from_utf8_lossy(&body));
                        out.push((job.clone(), families));
                        1.0
                    }
                    Err(e) => {
                        self.failed("scrape", &e);
                        0.0
                    }
                };
                out.push((
                    job,
                    vec![gauge(
                        "up",
                        "Whether the agent's last scrape of this service succeeded.",
                        up,
                    )],
                ));
            }
            self.timed("scrape", t);
            out
        };

        let database = async {
            let m = mysql.as_mut()?;
            let t = Instant::now();
            let f = m.collect_by(deadline).await;
            self.timed("mysql", t);
            Some(f)
        };

        let (node, scraped, database) = tokio::join!(node, scraped, database);
        if let Some(f) = node {
            groups.push(("node".into(), f));
        }
        groups.extend(scraped);

        let t = Instant::now();
        let mut log_families = Vec::new();
        let mut log_errors = Vec::new();
        for tail in tails.iter_mut() {
            // A poll reads at most `POLL_BUDGET` bytes; a backlog (first start on a big
            // log) takes a few more, bounded.
            for _ in 0..8 {
                match tail.poll() {
                    Ok(stats) => {
                        if stats.lost_position {
                            tracing::warn!("access log rotated while the agent was stopped and the old file is gone; counting from the new file's start");
                        }
                        if !stats.more {
                            break;
                        }
                    }
                    Err(e) => {
                        log_errors.push(e.to_string());
                        break;
                    }
                }
            }
            log_families.extend(tail.families());
        }
        for e in log_errors {
            self.failed("accesslog", &e);
        }
        self.timed("accesslog", t);
        if !log_families.is_empty() {
            groups.push(("accesslog".into(), merge_families(log_families)));
        }

        if let Some(f) = database {
            groups.push(("mysql".into(), f));
        }

        if let Some(path) = &self.config.vrrp_state_file {
            let state = std::fs::read_to_string(path).unwrap_or_default();
            groups.push(("keepalived".into(), vrrp_families(state.trim())));
        }

        if !self.config.certificates.is_empty() {
            let t = Instant::now();
            let (families, errors) = crate::certs::families(&self.config.certificates);
            for e in errors {
                self.failed("certificates", &e);
            }
            self.timed("certificates", t);
            groups.push(("agent".into(), families));
        }

        groups.push(("agent".into(), self.own_families(now_ms)));

        let mut timeseries = Vec::new();
        for (job, families) in &groups {
            let labels = [
                ("instance".to_owned(), self.config.instance.clone()),
                ("job".to_owned(), job.clone()),
            ];
            timeseries.extend(remote_write::series(families, &labels, now_ms));
        }
        let text = expo::text_of_jobs(&groups);
        timeseries.sort_by(|a, b| a.labels.cmp(&b.labels));
        timeseries.dedup_by(|later, earlier| later.labels == earlier.labels);
        self.last.send_replace(Arc::new(text));
        WriteRequest {
            timeseries,
            metadata: Vec::new(),
        }
    }

    fn timed(&self, collector: &'static str, t: Instant) {
        lock(&self.stats)
            .collect_seconds
            .insert(collector, t.elapsed().as_secs_f64());
    }

    fn failed(&self, collector: &'static str, error: &str) {
        tracing::warn!(collector, error, "collection failed");
        *lock(&self.stats)
            .collect_errors
            .entry(collector)
            .or_default() += 1;
    }

    /// The heartbeat and the agent's own footprint.
    fn own_families(&self, now_ms: i64) -> Vec<Family> {
        let mut out = vec![gauge(
            "rampart_agent_heartbeat_timestamp_seconds",
            "When this collection was made; one sample per interval, so gaps show lost data.",
            now_ms as f64 / 1000.0,
        )];
        out.extend(process_families(self.started));
        if let Some(s) = &self.shipping {
            out.extend(s.families());
        }
        if self
            .config
            .logs
            .as_ref()
            .is_some_and(|l| l.firewall.is_some())
        {
            out.extend(self.drops.families());
        }
        let stats = lock(&self.stats);
        let counter = |name: &str, help: &str, samples: Vec<Sample>| Family {
            name: name.to_owned(),
            help: help.to_owned(),
            kind: Kind::Counter,
            samples,
        };
        let labelled = |k: &str, v: &str, value: f64| Sample {
            labels: vec![(k.to_owned(), v.to_owned())],
            value,
            suffix: "",
        };
        out.push(counter(
            "rampart_agent_pushes_total",
            "Remote-write requests by result.",
            vec![
                labelled("result", "ok", stats.pushes_ok as f64),
                labelled(
                    "result",
                    "retryable_error",
                    stats.pushes_failed_retryable as f64,
                ),
                labelled(
                    "result",
                    "permanent_error",
                    stats.pushes_failed_permanent as f64,
                ),
            ],
        ));
        out.push(counter(
            "rampart_agent_samples_sent_total",
            "Samples the monitor accepted.",
            vec![labelled("result", "accepted", stats.samples_sent as f64)],
        ));
        out.push(counter(
            "rampart_agent_samples_rejected_total",
            "Samples dropped because the monitor refused them permanently (4xx other than 429).",
            vec![labelled(
                "reason",
                "permanent_4xx",
                stats.samples_dropped_permanent as f64,
            )],
        ));
        out.push(gauge(
            "rampart_agent_clock_ahead_seconds",
            "How far this host's clock is ahead of the monitor's (from its Date header); samples are stamped back by this much.",
            stats.clock_ahead_ms as f64 / 1000.0,
        ));
        out.push(gauge(
            "rampart_agent_last_push_success_timestamp_seconds",
            "When a push last succeeded.",
            stats.last_push_ok_unix,
        ));
        out.push(counter(
            "rampart_agent_collect_errors_total",
            "Failed collections by collector.",
            stats
                .collect_errors
                .iter()
                .map(|(c, n)| labelled("collector", c, *n as f64))
                .collect(),
        ));
        out.push(Family {
            name: "rampart_agent_collect_duration_seconds".into(),
            help: "How long each collector took in the last collection.".into(),
            kind: Kind::Gauge,
            samples: stats
                .collect_seconds
                .iter()
                .map(|(c, s)| labelled("collector", c, *s))
                .collect(),
        });
        drop(stats);
        out.extend(self.buffer.families());
        out
    }
}

/// Families with the same name from several logs become one family.
fn merge_families(families: Vec<Family>) -> Vec<Family> {
    let mut out: Vec<Family> = Vec::new();
    for f in families {
        match out.iter_mut().find(|o| o.name == f.name) {
            Some(o) => o.samples.extend(f.samples),
            None => out.push(f),
        }
    }
    out
}

/// keepalived's VRRP state as series: `rampart_vrrp_state{state}` is 1 for the current
/// state and 0 for the others (all 0 before keepalived's first state), and
/// `rampart_vrrp_master` is 1 while this load balancer holds the floating address.
pub fn vrrp_families(state: &str) -> Vec<Family> {
    let samples = ["MASTER", "BACKUP", "FAULT"]
        .iter()
        .map(|s| Sample {
            labels: vec![("state".to_owned(), (*s).to_owned())],
            value: if *s == state { 1.0 } else { 0.0 },
            suffix: "",
        })
        .collect();
    vec![
        Family {
            name: "rampart_vrrp_state".into(),
            help: "keepalived's VRRP state on this load balancer (1 for the current one).".into(),
            kind: Kind::Gauge,
            samples,
        },
        gauge(
            "rampart_vrrp_master",
            "Whether this load balancer holds the pair's floating address.",
            if state == "MASTER" { 1.0 } else { 0.0 },
        ),
    ]
}

fn gauge(name: &str, help: &str, value: f64) -> Family {
    Family {
        name: name.to_owned(),
        help: help.to_owned(),
        kind: Kind::Gauge,
        samples: vec![Sample {
            labels: Vec::new(),
            value,
            suffix: "",
        }],
    }
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `process_*` under the Go client's names and help texts (as node_exporter has them):
/// resident and virtual memory, CPU seconds, open and maximum file descriptors, the
/// address-space limit, start time. A file that cannot be read leaves its families out.
pub fn process_families(started: SystemTime) -> Vec<Family> {
    let mut out = Vec::new();
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(kb) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
        {
            out.push(gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                kb * 1024.0,
            ));
        }
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command (which may contain spaces) start after the last ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |x| x.1)
            .split_whitespace()
            .collect();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        // utime and stime are fields 14 and 15 (1-based), vsize 23.
        if let (Some(u), Some(s)) = (field(14), field(15)) {
            // /proc reports USER_HZ ticks, 100 per second on every Linux ABI.
            let hz = 100.0;
            out.push(Family {
                name: "process_cpu_seconds_total".into(),
                help: "Total user and system CPU time spent in seconds.".into(),
                kind: Kind::Counter,
                samples: vec![Sample {
                    labels: Vec::new(),
                    value: (u + s) / hz,
                    suffix: "",
                }],
            });
        }
        if let Some(v) = field(23) {
            out.push(gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                v,
            ));
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        out.push(gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            dir.count() as f64,
        ));
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
        if let Some(v) = soft_limit(&limits, "Max open files") {
            out.push(gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                v,
            ));
        }
        if let Some(v) = soft_limit(&limits, "Max address space") {
            out.push(gauge(
                "process_virtual_memory_max_bytes",
                "Maximum amount of virtual memory available in bytes.",
                v,
            ));
        }
    }
    out.push(gauge(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        unix_ms(started) as f64 / 1000.0,
    ));
    out
}

/// The soft limit of the `/proc/<pid>/limits` line named `name`; `unlimited` is the
/// largest 64-bit value, as the Go client reports it.
fn soft_limit(limits: &str, name: &str) -> Option<f64> {
    let rest = limits.lines().find_map(|l| l.strip_prefix(name))?;
    match rest.split_whitespace().next()? {
        "unlimited" => Some(u64::MAX as f64),
        v => v.parse::<u64>().ok().map(|v| v as f64),
    }
}

/// Drains the buffer oldest first until told to stop.
async fn send_loop(
    config: Config,
    client: remote_write::Client,
    buffer: Arc<Store>,
    stats: Arc<Mutex<Stats>>,
    notify: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut attempt: u32 = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        let max = config.max_batches_per_request;
        let b = buffer.clone();
        let pending = tokio::task::spawn_blocking(move || b.with(|b| b.peek(max, 16 << 20))).await;
        let batches = match pending {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reading the buffer");
                Vec::new()
            }
            Err(_) => Vec::new(),
        };
        let Some(through) = batches.last().map(|(c, _)| *c) else {
            tokio::select! {
                () = notify.notified() => {}
                _ = stop.changed() => {}
            }
            continue;
        };
        let request = buffer::merge(batches.into_iter().map(|(_, r)| r));
        let samples: u64 = request
            .timeseries
            .iter()
            .map(|t| t.samples.len() as u64)
            .sum();
        let body = match remote_write::encode(&request) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::error!(error = %e, "encoding a batch; dropping it");
                let b = buffer.clone();
                let _ = tokio::task::spawn_blocking(move || b.with(|b| b.ack(through))).await;
                continue;
            }
        };
        let sent_at = SystemTime::now();
        match remote_write::push(&client, &config.push_url, body).await {
            Ok(pushed) => {
                attempt = 0;
                let b = buffer.clone();
                let acked = tokio::task::spawn_blocking(move || b.with(|b| b.ack(through))).await;
                if let Ok(Err(e)) = acked {
                    tracing::warn!(error = %e, "acknowledging pushed batches");
                }
                let mut s = lock(&stats);
                s.pushes_ok += 1;
                s.samples_sent += samples;
                s.last_push_ok_unix = unix_ms(SystemTime::now()) as f64 / 1000.0;
                if let Some(date) = pushed.date {
                    // The server's clock is below date + 1 s; ours was at least `sent_at`.
                    let server_max = unix_ms(date) + 1000;
                    s.clock_ahead_ms = (unix_ms(sent_at) - server_max).max(0);
                }
            }
            Err(e) if e.retryable() => {
                lock(&stats).pushes_failed_retryable += 1;
                let wait = remote_write::backoff(attempt);
                attempt = attempt.saturating_add(1);
                tracing::warn!(error = %e, retry_in = ?wait, "push failed; will retry");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return,
                }
            }
            Err(e) => {
                attempt = 0;
                tracing::error!(error = %e, samples, "push refused; dropping these samples");
                let b = buffer.clone();
                let _ = tokio::task::spawn_blocking(move || b.with(|b| b.reject(through))).await;
                let mut s = lock(&stats);
                s.pushes_failed_permanent += 1;
                s.samples_dropped_permanent += samples;
            }
        }
    }
}

/// The agent's own `/metrics`: the last collection in the text format, to the
/// allow-listed sources only.
async fn serve_metrics(
    listener: TcpListener,
    allow: rampart_telemetry::listen::AllowList,
    last: watch::Receiver<Arc<String>>,
    mut stop: watch::Receiver<bool>,
) {
    use http_body_util::Full;
    use hyper::service::service_fn;
    let rules = Fixed {
        allow_from: allow,
        max_connections: METRICS_MAX_CONNECTIONS,
    };
    let mut gate = Gate::new(listener, "metrics", Slots::new(), Counters::default());
    loop {
        let conn = tokio::select! {
            conn = gate.accept(&rules) => conn,
            _ = stop.changed() => return,
        };
        let tcp = conn.stream;
        let last = last.clone();
        tokio::spawn(async move {
            let _permit = conn.permit;
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let body = last.borrow().clone();
                async move {
                    let resp = if req.uri().path() == "/metrics" {
                        hyper::Response::builder()
                            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                            .body(Full::new(Bytes::from(body.as_bytes().to_vec())))
                    } else {
                        hyper::Response::builder()
                            .status(404)
                            .body(Full::new(Bytes::from_static(b"not found\n")))
                    };
                    resp.map_err(|e| std::io::Error::other(e.to_string()))
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(Duration::from_secs(5))
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc);
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
        });
    }
}

rampart_telemetry::service!(
    Agent,
    error = AgentError,
    build = |c| Agent::new(c).map(Arc::new)
);

#[cfg(test)]
mod tests {
    use super::*;

    /// An agent in `dir` at a 200 ms interval, with `host` as its `[host]` section. It
    /// pushes to the discard port, where nothing listens: pushes fail fast and stay
    /// buffered.
    fn agent_in(dir: &std::path::Path, host: &str) -> Agent {
        use rampart_telemetry::config::ConfigFile;
        let text = format!(
            "[agent]\ninstance = \"t\"\nstate_dir = \"{}\"\ninterval = \"200ms\"\n\
             [push]\nurl = \"http://127.0.0.1:9/api/v1/write\"\n[host]\n{host}\n",
            dir.join("state").display()
        );
        let config = Config::parse(&dir.join("agent.toml"), &text).unwrap();
        Agent::new(config).unwrap()
    }

    /// `agent` serving until `stopped` resolves.
    async fn serve_until(
        agent: &Agent,
        stopped: tokio::sync::oneshot::Receiver<()>,
    ) -> std::io::Result<()> {
        let until = async {
            let _ = stopped.await;
        };
        agent.serve(Listeners { metrics: None }, until, || {}).await
    }

    /// How many collections published their exposition within `d`.
    async fn collections_within(last: &mut watch::Receiver<Arc<String>>, d: Duration) -> usize {
        let until = tokio::time::Instant::now() + d;
        let mut changes = 0;
        while tokio::time::timeout_at(until, last.changed()).await.is_ok() {
            changes += 1;
        }
        changes
    }

    /// With the buffer's lock held for longer than several intervals (an append's or an
    /// acknowledgement's fsync on a slow disk), collections go on at their interval: the
    /// agent's own exposition (its heartbeat) keeps changing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    // The lock's holder sleeps on a thread of its own, not the runtime's.
    #[allow(clippy::disallowed_methods)]
    async fn a_held_buffer_lock_does_not_delay_collections() {
        let dir = tempfile::tempdir().unwrap();
        let agent = Arc::new(agent_in(dir.path(), "enabled = false"));
        let mut last = agent.last.subscribe();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serve = serve_until(&agent, stopped);
        let watch = async {
            tokio::time::timeout(Duration::from_secs(10), last.changed())
                .await
                .expect("no first collection")
                .unwrap();
            let (held_tx, held_rx) = std::sync::mpsc::channel();
            let a = Arc::clone(&agent);
            let holder = std::thread::spawn(move || {
                let _held = lock(&a.buffer.buffer);
                held_tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(2500));
            });
            held_rx.recv().unwrap();
            let changes = collections_within(&mut last, Duration::from_secs(2)).await;
            tokio::task::spawn_blocking(move || holder.join().unwrap())
                .await
                .unwrap();
            let _ = stop.send(());
            changes
        };
        let (served, changes) = tokio::join!(serve, watch);
        served.unwrap();
        // Ten intervals in the 2 s the lock was held; none would pass if a collection
        // waited on it. (Appends queue up behind it: at most `WRITE_QUEUE` plus the
        // one in flight, then a collection waits, so more than 5 cannot pass.)
        assert!(
            (3..=WRITE_QUEUE + 2).contains(&changes),
            "{changes} collections while the buffer's lock was held"
        );
    }

    /// A host collection that hangs (here on a `/proc/stat` that is a FIFO without a
    /// writer) costs the host's families, not the sample: collections go on at their
    /// interval without it, and the collector's errors count the misses.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hanging_host_collection_does_not_delay_collections() {
        use rustix::fs::{FileType, Mode, OFlags, CWD};
        let dir = tempfile::tempdir().unwrap();
        let proc_dir = dir.path().join("root/proc");
        std::fs::create_dir_all(&proc_dir).unwrap();
        let stat = proc_dir.join("stat");
        rustix::fs::mknodat(CWD, &stat, FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        let fifo = dir.path().join("fifo");
        std::fs::hard_link(&stat, &fifo).unwrap();
        /// Lets the hung reader go (it reads an empty file) and puts a plain file in
        /// the FIFO's place, so no later collection hangs: the runtime's end waits for
        /// its blocking threads. Opening without blocking fails when nobody reads.
        struct Release(std::path::PathBuf, std::path::PathBuf);
        impl Drop for Release {
            fn drop(&mut self) {
                let plain = self.0.with_extension("plain");
                let _ = std::fs::write(&plain, "");
                let _ = std::fs::rename(&plain, &self.0);
                let _ = rustix::fs::open(&self.1, OFlags::WRONLY | OFlags::NONBLOCK, Mode::empty());
            }
        }
        let release = Release(stat, fifo);
        let root = format!("root = \"{}\"", dir.path().join("root").display());
        let agent = agent_in(dir.path(), &root);
        let mut last = agent.last.subscribe();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serve = serve_until(&agent, stopped);
        let watch = async {
            let changes = collections_within(&mut last, Duration::from_secs(2)).await;
            let text = last.borrow().to_string();
            drop(release);
            let _ = stop.send(());
            (changes, text)
        };
        let (served, (changes, text)) = tokio::join!(serve, watch);
        served.unwrap();
        // Ten intervals in the 2 s; none would pass if a collection waited for the host.
        assert!(changes >= 3, "{changes} collections while the host's hung");
        let misses: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("rampart_agent_collect_errors_total{collector=\"node\"} "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        assert!(misses >= 2.0, "node's misses {misses} in:\n{text}");
        assert!(!text.contains("node_cpu_seconds_total"), "{text}");
    }

    #[test]
    fn soft_limits_as_the_go_client_reads_them() {
        let limits =
            "Limit                     Soft Limit           Hard Limit           Units     \n\
            Max open files            1024                 524288               files     \n\
            Max address space         unlimited            unlimited            bytes     \n";
        let cases = [
            ("Max open files", Some(1024.0)),
            ("Max address space", Some(u64::MAX as f64)),
            ("Max processes", None),
        ];
        for (name, want) in cases {
            assert_eq!(soft_limit(limits, name), want, "{name}");
        }
    }

    #[test]
    fn process_families_have_the_go_clients_names() {
        let names: Vec<String> = process_families(SystemTime::now())
            .into_iter()
            .map(|f| f.name)
            .collect();
        for want in [
            "process_cpu_seconds_total",
            "process_max_fds",
            "process_open_fds",
            "process_resident_memory_bytes",
            "process_start_time_seconds",
            "process_virtual_memory_bytes",
            "process_virtual_memory_max_bytes",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
        }
    }
}

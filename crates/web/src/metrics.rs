//! The web server's Prometheus metrics (`rampart_web_*`). Labels come only from bounded
//! sets: route names fixed in code, methods folded to a known list, status classes,
//! database roles, fallback and refusal reasons, and the database servers' names from the
//! config ([`Role`], [`Fallback`] and [`Refusal`] are defined here, the lowest module
//! that names them; `db.rs` decides them).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Which database served a query: a metric label, and the `X-Db-Role` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

/// Why a read did not go to the replica: a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    NoReplica,
    ReplicaDown,
    ReplicaLagging,
    ReplicaError,
    ReplicaBusy,
    GtidWait,
    GtidFresh,
}

impl Fallback {
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::NoReplica => "no_replica",
            Fallback::ReplicaDown => "replica_down",
            Fallback::ReplicaLagging => "replica_lagging",
            Fallback::ReplicaError => "replica_error",
            Fallback::ReplicaBusy => "replica_busy",
            Fallback::GtidWait => "gtid_wait_timeout",
            Fallback::GtidFresh => "gtid_newer_than_check",
        }
    }
}

/// Why a write got a 503: refused before anything was sent to the database
/// (`NoPrimary`, `NotWritable`, `ServerMismatch`: nothing was written), or sent but with no
/// answer to its `COMMIT` (`OutcomeUnknown`: it may or may not have been written). A
/// metric label and the JSON `error` code of the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No leader, or the leader could not be reached or did not answer in time.
    NoPrimary,
    /// The leader key says `writable:false`, or the server says `@@read_only` is on.
    NotWritable,
    /// The server reached is not the one the leader key names (`@@server_id`).
    ServerMismatch,
    /// The connection died (or the deadline passed) after `COMMIT` was sent.
    OutcomeUnknown,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NoPrimary => "no_primary",
            Refusal::NotWritable => "not_writable",
            Refusal::ServerMismatch => "server_mismatch",
            Refusal::OutcomeUnknown => "outcome_unknown",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    pub server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub method: &'static str,
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    pub role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub role: &'static str,
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<RouteLabels, Histogram>,
    pub db_reads: Family<RoleLabels, Counter>,
    pub db_fallbacks: Family<ReasonLabels, Counter>,
    pub db_writes: Counter,
    pub db_errors: Family<RoleLabels, Counter>,
    pub db_pool: Family<PoolLabels, Gauge>,
    pub db_primary_up: Gauge,
    pub db_replica_usable: Gauge,
    pub db_replica_lag_seconds: Gauge<f64, AtomicU64>,
    pub db_server_usable: Family<ServerLabels, Gauge>,
    pub db_server_lag_seconds: Family<ServerLabels, Gauge<f64, AtomicU64>>,
    pub db_leader_epoch: Gauge,
    pub db_leader_writable: Gauge,
    pub db_leader_changes: Counter,
    pub db_leader_watch_restarts: Counter,
    pub db_writes_refused: Family<ReasonLabels, Counter>,
    pub idempotent_replays: Counter,
    pub idempotency_keys_pruned: Counter,
    pub connections_open: Gauge,
    pub connections_rejected: Family<ReasonLabels, Counter>,
    pub access_log_dropped: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ])
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rampart_web");
        let m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            db_reads: Family::default(),
            db_fallbacks: Family::default(),
            db_writes: Counter::default(),
            db_errors: Family::default(),
            db_pool: Family::default(),
            db_primary_up: Gauge::default(),
            db_replica_usable: Gauge::default(),
            db_replica_lag_seconds: Gauge::default(),
            db_server_usable: Family::default(),
            db_server_lag_seconds: Family::default(),
            db_leader_epoch: Gauge::default(),
            db_leader_writable: Gauge::default(),
            db_leader_changes: Counter::default(),
            db_leader_watch_restarts: Counter::default(),
            db_writes_refused: Family::default(),
            idempotent_replays: Counter::default(),
            idempotency_keys_pruned: Counter::default(),
            connections_open: Gauge::default(),
            connections_rejected: Family::default(),
            access_log_dropped: Counter::default(),
        };
        registry.register(
            "requests",
            "HTTP requests by route, method and status class",
            m.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request head to response head, by route",
            m.duration.clone(),
        );
        registry.register(
            "db_reads",
            "Database reads by the role that served them",
            m.db_reads.clone(),
        );
        registry.register(
            "db_read_fallbacks",
            "Reads sent to the primary instead of the replica, by reason",
            m.db_fallbacks.clone(),
        );
        registry.register(
            "db_writes",
            "Database writes committed",
            m.db_writes.clone(),
        );
        registry.register(
            "db_errors",
            "Database calls that failed, by role",
            m.db_errors.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Pooled database connections by role and state (idle, in_use)",
            m.db_pool.clone(),
        );
        registry.register(
            "db_primary_up",
            "Whether the last check reached the primary (the leader)",
            m.db_primary_up.clone(),
        );
        registry.register(
            "db_replica_usable",
            "Whether reads currently go to a replica (at least one is usable)",
            m.db_replica_usable.clone(),
        );
        registry.register(
            "db_replica_lag_seconds",
            "The least lag behind the primary among the reachable replicas, as last measured",
            m.db_replica_lag_seconds.clone(),
        );
        registry.register(
            "db_server_usable",
            "Whether reads go to this database server (0 for the leader itself)",
            m.db_server_usable.clone(),
        );
        registry.register(
            "db_server_lag_seconds",
            "This replica's lag behind the leader as last measured",
            m.db_server_lag_seconds.clone(),
        );
        registry.register(
            "db_leader_epoch",
            "The epoch (the leader key's create revision) of the leader followed now; 0 without one",
            m.db_leader_epoch.clone(),
        );
        registry.register(
            "db_leader_writable",
            "Whether the leader followed now says it is writable",
            m.db_leader_writable.clone(),
        );
        registry.register(
            "db_leader_changes",
            "Changes of the leader followed (a new epoch or address, or none)",
            m.db_leader_changes.clone(),
        );
        registry.register(
            "db_leader_watch_restarts",
            "Times the leader key's watch failed or ended and was set up again",
            m.db_leader_watch_restarts.clone(),
        );
        registry.register(
            "db_writes_refused",
            "Writes answered 503, by reason (no_primary, not_writable, server_mismatch, outcome_unknown)",
            m.db_writes_refused.clone(),
        );
        registry.register(
            "idempotent_replays",
            "Requests answered from a stored Idempotency-Key response without writing again",
            m.idempotent_replays.clone(),
        );
        registry.register(
            "idempotency_keys_pruned",
            "Idempotency keys older than their retention deleted",
            m.idempotency_keys_pruned.clone(),
        );
        registry.register(
            "connections_open",
            "Client connections open now",
            m.connections_open.clone(),
        );
        registry.register(
            "connections_rejected",
            "Client connections refused, by reason (limit, not_allowed, tls)",
            m.connections_rejected.clone(),
        );
        registry.register(
            "access_log_dropped",
            "Access log lines dropped because the writer fell behind",
            m.access_log_dropped.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn encode(&self) -> String {
        rampart_telemetry::metrics::encode(&self.registry)
    }

    pub fn read(&self, role: Role) {
        self.db_reads
            .get_or_create(&RoleLabels {
                role: role.as_str(),
            })
            .inc();
    }

    pub fn fallback(&self, why: Fallback) {
        self.db_fallbacks
            .get_or_create(&ReasonLabels {
                reason: why.as_str(),
            })
            .inc();
    }

    pub fn db_error(&self, role: Role) {
        self.db_errors
            .get_or_create(&RoleLabels {
                role: role.as_str(),
            })
            .inc();
    }

    pub fn refused(&self, why: Refusal) {
        self.db_writes_refused
            .get_or_create(&ReasonLabels {
                reason: why.as_str(),
            })
            .inc();
    }

    /// One database server's read state, as the checker last saw it.
    pub fn server(&self, server: &str, usable: bool, lag: Option<f64>) {
        let labels = ServerLabels {
            server: server.to_owned(),
        };
        self.db_server_usable
            .get_or_create(&labels)
            .set(i64::from(usable));
        if let Some(lag) = lag {
            self.db_server_lag_seconds.get_or_create(&labels).set(lag);
        }
    }

    pub fn rejected(&self, reason: &'static str) {
        self.connections_rejected
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn pool(&self, role: Role, size: u32, idle: usize) {
        let idle = i64::try_from(idle).unwrap_or(i64::MAX);
        let size = i64::from(size);
        self.db_pool
            .get_or_create(&PoolLabels {
                role: role.as_str(),
                state: "idle",
            })
            .set(idle);
        self.db_pool
            .get_or_create(&PoolLabels {
                role: role.as_str(),
                state: "in_use",
            })
            .set((size - idle).max(0));
    }
}

/// Status code → class label: the one classification every request counter uses.
pub use rampart_telemetry::metrics::status_class as code_class;

/// Method → bounded label.
pub fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod status_class_tests {
    use super::code_class;

    /// The web servers' `rampart_web_requests_total` said `5xx` for a 600 while the agent's
    /// counts from the same access log (`rampart_log_requests_total`, which the alert
    /// rules read) said `other`.
    #[test]
    fn status_600_is_other_in_web_metrics_and_access_log_metrics() {
        assert_eq!(code_class(600), "other");
        for status in 0..=u16::MAX {
            assert_eq!(
                code_class(status),
                rampart_telemetry::metrics::status_class(status),
                "{status}"
            );
        }
    }
}

//! The load balancer's Prometheus metrics, process-wide so they survive reloads. Labels
//! come only from bounded sets: backend names from the config, status classes, TLS
//! versions, listener kinds and fixed reasons; never from request data or error text.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub code_class: String,
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    pub version: String,
    /// "full", "full_hrr" (with a HelloRetryRequest) or "resumed".
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// A client connection closed right after accept: on which listener ("https", "http" or
/// "admin") and why ("max_connections" or "not_allowed").
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    pub listener: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabels {
    pub name: String,
    pub file: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// Every metric the load balancer exports.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FamilyLabels {
    pub family: String,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Histogram,
    pub backend_up: Family<BackendLabels, Gauge>,
    pub backend_drained: Family<BackendLabels, Gauge>,
    pub backend_active: Family<BackendLabels, Gauge>,
    pub backend_failures: Family<BackendLabels, Counter>,
    pub retries: Family<BackendLabels, Counter>,
    pub connections_active: Family<ListenerLabels, Gauge>,
    pub connections: Family<ListenerLabels, Counter>,
    pub connections_rejected: Family<RefusedLabels, Counter>,
    pub tls_handshakes: Family<HandshakeLabels, Counter>,
    pub tls_handshake_failures: Counter,
    pub cert_expiry: Family<CertLabels, Gauge>,
    pub rejected_requests: Family<ReasonLabels, Counter>,
    pub reloads: Family<ResultLabels, Counter>,
    pub access_log_dropped: Counter,
    pub waf_decisions: Family<OutcomeLabels, Counter>,
    pub waf_matches: Family<FamilyLabels, Counter>,
    pub waf_inspection: Histogram,
    pub acme_orders: Family<OutcomeLabels, Counter>,
    pub acme_failures: Gauge,
    pub acme_next_attempt: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rampart_lb");
        let m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            // 0.25 ms .. ~8 s
            duration: Histogram::new(exponential_buckets(0.00025, 2.0, 16)),
            backend_up: Family::default(),
            backend_drained: Family::default(),
            backend_active: Family::default(),
            backend_failures: Family::default(),
            retries: Family::default(),
            connections_active: Family::default(),
            connections: Family::default(),
            connections_rejected: Family::default(),
            tls_handshakes: Family::default(),
            tls_handshake_failures: Counter::default(),
            cert_expiry: Family::default(),
            rejected_requests: Family::default(),
            reloads: Family::default(),
            access_log_dropped: Counter::default(),
            waf_decisions: Family::default(),
            waf_matches: Family::default(),
            // 10 us .. ~160 ms
            waf_inspection: Histogram::new(exponential_buckets(0.00001, 2.0, 15)),
            acme_orders: Family::default(),
            acme_failures: Gauge::default(),
            acme_next_attempt: Gauge::default(),
        };
        registry.register(
            "acme_orders",
            "ACME orders for the site certificate, by outcome: success or failure",
            m.acme_orders.clone(),
        );
        registry.register(
            "acme_consecutive_failures",
            "ACME orders that failed in a row since the last success (0: none)",
            m.acme_failures.clone(),
        );
        registry.register(
            "acme_next_attempt_timestamp_seconds",
            "When the ACME task looks at the site certificate next, as a Unix timestamp",
            m.acme_next_attempt.clone(),
        );
        registry.register(
            "waf_decisions",
            "Requests the WAF inspected, by outcome: allow, flag (rules matched under the threshold), would_block (detect mode) or block",
            m.waf_decisions.clone(),
        );
        registry.register(
            "waf_rule_matches",
            "Logged CRS rule matches, by rule family (942: sqli, 941: xss, ...)",
            m.waf_matches.clone(),
        );
        registry.register(
            "waf_inspection_seconds",
            "Time the WAF spent inspecting a request",
            m.waf_inspection.clone(),
        );
        registry.register(
            "requests",
            "HTTP requests answered, by status class and backend (\"none\" when the load balancer answered itself)",
            m.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a complete request to the end of its response",
            m.duration.clone(),
        );
        registry.register(
            "backend_up",
            "1 when the backend is in rotation, 0 when ejected",
            m.backend_up.clone(),
        );
        registry.register(
            "backend_drained",
            "1 while the operator has drained the backend (POST /-/drain), 0 otherwise",
            m.backend_drained.clone(),
        );
        registry.register(
            "backend_active_requests",
            "Requests in flight to the backend",
            m.backend_active.clone(),
        );
        registry.register(
            "backend_failures",
            "Connection failures and timeouts talking to the backend",
            m.backend_failures.clone(),
        );
        registry.register(
            "retries",
            "Requests retried on another backend after this backend failed",
            m.retries.clone(),
        );
        registry.register(
            "connections_active",
            "Open client connections",
            m.connections_active.clone(),
        );
        registry.register(
            "connections",
            "Client connections accepted",
            m.connections.clone(),
        );
        registry.register(
            "connections_rejected",
            "Client connections closed right after accept, by listener and reason (max_connections, not_allowed)",
            m.connections_rejected.clone(),
        );
        registry.register(
            "tls_handshakes",
            "Completed TLS handshakes by protocol version and kind (full or resumed)",
            m.tls_handshakes.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            m.tls_handshake_failures.clone(),
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of each served certificate, as a Unix timestamp",
            m.cert_expiry.clone(),
        );
        registry.register(
            "requests_rejected",
            "Requests refused by a limit or as malformed, by reason",
            m.rejected_requests.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads by result",
            m.reloads.clone(),
        );
        registry.register(
            "access_log_dropped",
            "Access log lines dropped because the writer fell behind",
            m.access_log_dropped.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The metrics in the Prometheus text exposition format 0.0.4 (what `promtool check
    /// metrics` and every Prometheus version read), converted from the crate's OpenMetrics.
    pub fn encode(&self) -> String {
        rampart_telemetry::metrics::encode(&self.registry)
    }

    pub fn backend(&self, name: &str) -> BackendLabels {
        BackendLabels {
            backend: name.to_owned(),
        }
    }

    /// The counter of connections `listener` closed at accept for `reason`.
    pub fn refused(&self, listener: &str, reason: &str) -> Counter {
        self.connections_rejected
            .get_or_create(&RefusedLabels {
                listener: listener.to_owned(),
                reason: reason.to_owned(),
            })
            .clone()
    }

    pub fn reason(&self, reason: &str) -> ReasonLabels {
        ReasonLabels {
            reason: reason.to_owned(),
        }
    }
}

pub use rampart_telemetry::metrics::TEXT_FORMAT;

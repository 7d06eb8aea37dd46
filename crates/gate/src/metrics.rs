//! The gate's own metrics (`rampart_gate_*`), on its internal listener. The `host` label
//! is the first DNS name of a verified client certificate, so only the run's CA can add
//! values to it; the outcomes and reasons are fixed in code.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub host: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

pub struct Metrics {
    registry: Registry,
    /// Requests by client host and outcome: `accepted`, `forged` (a series for another
    /// host), `not_write` (a query, the admin API, anything but a write), `malformed`,
    /// `too_large`, `upstream_refused` (Prometheus answered non-2xx), `upstream_error`
    /// (Prometheus unreachable), `error`.
    pub requests: Family<RequestLabels, Counter>,
    /// Connections closed before a request: `not_allowed`, `max_connections`,
    /// `tls_handshake` (no or an untrusted client certificate), `no_identity`.
    pub connections_refused: Family<ReasonLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("rampart_gate"),
            requests: Family::default(),
            connections_refused: Family::default(),
        };
        m.registry.register(
            "requests",
            "Requests by client host and outcome (accepted, forged, not_write, malformed, too_large, upstream_refused, upstream_error)",
            m.requests.clone(),
        );
        m.registry.register(
            "connections_refused",
            "Connections closed at accept or in the TLS handshake, by reason",
            m.connections_refused.clone(),
        );
        m
    }

    pub fn request(&self, host: &str, outcome: &'static str) {
        self.requests
            .get_or_create(&RequestLabels {
                host: host.to_owned(),
                outcome,
            })
            .inc();
    }

    pub fn refused(&self, reason: &'static str) -> Counter {
        self.connections_refused
            .get_or_create(&ReasonLabels { reason })
            .clone()
    }

    pub fn encode(&self) -> String {
        rampart_telemetry::metrics::encode(&self.registry)
    }
}

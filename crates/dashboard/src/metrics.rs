//! The dashboard's own Prometheus metrics (`rampart_dashboard_*`), served on its internal
//! metrics listener (`[listen] metrics`), never on the public HTTPS one. Labels come only
//! from bounded sets fixed in code: route names, status classes, outcomes, reasons.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub code_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// The route label of a request path: the dashboard's own routes by name, anything else
/// `other`, so a scanner cannot grow the label set.
pub fn route(path: &str) -> &'static str {
    match path {
        "/" => "page",
        "/logs" => "logs",
        "/login" => "login",
        "/logout" => "logout",
        "/healthz" => "healthz",
        "/api/alerts" => "alerts",
        "/api/login-link" => "login_link",
        _ => "other",
    }
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    /// Login attempts: `success`, `failure` (wrong user or password, or a bad link),
    /// `limited` (refused by the failed-login limit).
    pub logins: Family<OutcomeLabels, Counter>,
    pub sessions: Gauge,
    /// Alertmanager webhook calls: `recorded`, `unauthorized`, `invalid`, `error`.
    pub webhooks: Family<OutcomeLabels, Counter>,
    pub alerts_firing: Gauge,
    /// Rounds of Prometheus queries for a page: `ok` or `unreachable`.
    pub prometheus_fetches: Family<OutcomeLabels, Counter>,
    pub prometheus_fetch_seconds: Histogram,
    /// Log searches: `ok` or `error` (the store refused or did not answer).
    pub logs_searches: Family<OutcomeLabels, Counter>,
    pub logs_search_seconds: Histogram,
    /// Connections closed at accept (`not_allowed`, `max_connections`) and failed TLS
    /// handshakes (`tls_handshake`).
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
            registry: Registry::with_prefix("rampart_dashboard"),
            requests: Family::default(),
            logins: Family::default(),
            sessions: Gauge::default(),
            webhooks: Family::default(),
            alerts_firing: Gauge::default(),
            prometheus_fetches: Family::default(),
            prometheus_fetch_seconds: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            logs_searches: Family::default(),
            logs_search_seconds: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            connections_refused: Family::default(),
        };
        let r = &mut m.registry;
        r.register(
            "requests",
            "Requests answered, by route and status class",
            m.requests.clone(),
        );
        r.register(
            "logins",
            "Login attempts by outcome (success, failure, limited)",
            m.logins.clone(),
        );
        r.register("sessions", "Live login sessions", m.sessions.clone());
        r.register(
            "alert_webhooks",
            "Alertmanager webhook calls by outcome (recorded, unauthorized, invalid, error)",
            m.webhooks.clone(),
        );
        r.register(
            "alerts_firing",
            "Recorded alerts that are firing",
            m.alerts_firing.clone(),
        );
        r.register(
            "prometheus_fetches",
            "Rounds of Prometheus queries for the page, by outcome (ok, unreachable)",
            m.prometheus_fetches.clone(),
        );
        r.register(
            "prometheus_fetch_seconds",
            "Time taken by a round of Prometheus queries for the page",
            m.prometheus_fetch_seconds.clone(),
        );
        r.register(
            "log_searches",
            "Log searches by outcome (ok, error)",
            m.logs_searches.clone(),
        );
        r.register(
            "log_search_seconds",
            "Time taken by a log search's queries to the store",
            m.logs_search_seconds.clone(),
        );
        r.register(
            "connections_refused",
            "Connections closed at accept or in the TLS handshake, by reason",
            m.connections_refused.clone(),
        );
        m
    }

    pub fn request(&self, route: &'static str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                route,
                code_class: rampart_telemetry::metrics::status_class(status),
            })
            .inc();
    }

    pub fn outcome(family: &Family<OutcomeLabels, Counter>, outcome: &'static str) {
        family.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// The counter of connections refused for `reason`, to hand to the accept gate.
    pub fn refused(&self, reason: &'static str) -> Counter {
        self.connections_refused
            .get_or_create(&ReasonLabels { reason })
            .clone()
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        rampart_telemetry::metrics::encode(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_paths_share_one_route_label() {
        assert_eq!(route("/"), "page");
        assert_eq!(route("/api/alerts"), "alerts");
        assert_eq!(route("/wp-admin.php"), "other");
        assert_eq!(route("/api/alerts/"), "other");
    }

    #[test]
    fn requests_are_counted_by_route_and_class() {
        let m = Metrics::new();
        m.request(route("/login"), 401);
        m.request(route("/login"), 401);
        m.request(route("/x"), 404);
        let text = m.encode();
        assert!(
            text.contains("rampart_dashboard_requests_total{route=\"login\",code_class=\"4xx\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("rampart_dashboard_requests_total{route=\"other\",code_class=\"4xx\"} 1"),
            "{text}"
        );
    }
}

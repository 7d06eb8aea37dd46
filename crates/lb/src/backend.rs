//! Backends: their connection pools (plain HTTP/1.1 or TLS, optionally mutual, over
//! `upstream::Stream`), their health state, and the balancing policies that choose among
//! the healthy ones.
//!
//! Health state lives in [`BackendState`], which a reload hands over to the new
//! generation for a backend with the same name and address, so a reload neither resets
//! an ejected backend nor forgets a healthy one.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::TcpStream;

use crate::config::{BackendConfig, Health, Policy};
use crate::metrics::Metrics;
use crate::upstream::{Pool, Stream};
use rampart_telemetry::metrics::STATUS_CLASSES;

/// Health of one backend, shared across reloads.
#[derive(Debug)]
pub struct BackendState {
    up: AtomicBool,
    /// Taken out of rotation by the operator (`POST /-/drain`), whatever its health:
    /// requests in flight finish, no new one is sent. Kept across reloads.
    drained: AtomicBool,
    fails: AtomicU32,
    successes: AtomicU32,
    ejected_at: Mutex<Option<Instant>>,
}

impl Default for BackendState {
    fn default() -> Self {
        // Backends start in rotation: a fresh load balancer serves at once, and the first
        // failure (active or passive) takes a dead backend out.
        Self {
            up: AtomicBool::new(true),
            drained: AtomicBool::new(false),
            fails: AtomicU32::new(0),
            successes: AtomicU32::new(0),
            ejected_at: Mutex::new(None),
        }
    }
}

/// A backend of one configuration generation.
pub struct Backend {
    pub cfg: BackendConfig,
    pub pool: Arc<Pool>,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    connect_timeout: Duration,
    pub state: Arc<BackendState>,
    pub active: AtomicUsize,
    /// Request counters by status class (`STATUS_CLASSES`), resolved once rather than per
    /// request.
    pub requests: [prometheus_client::metrics::counter::Counter; STATUS_CLASSES.len()],
    pub active_gauge: prometheus_client::metrics::gauge::Gauge,
    /// The served-by header value: the backend's name.
    pub name_value: Option<http::HeaderValue>,
    health: Health,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Backend {
    pub fn new(
        cfg: BackendConfig,
        tls: Option<&Arc<rustls::ClientConfig>>,
        connect_timeout: Duration,
        health: Health,
        state: Arc<BackendState>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let tls = match (cfg.tls, tls) {
            (true, Some(c)) => {
                let name = rustls::pki_types::ServerName::try_from(cfg.tls_server_name.clone())
                    .map_err(|_| {
                        format!("`{}` is not a DNS name or IP address", cfg.tls_server_name)
                    })?;
                Some((tokio_rustls::TlsConnector::from(Arc::clone(c)), name))
            }
            _ => None,
        };
        let labels = metrics.backend(&cfg.name);
        let requests = STATUS_CLASSES.map(|class| {
            metrics
                .requests
                .get_or_create(&crate::metrics::RequestLabels {
                    code_class: class.to_owned(),
                    backend: cfg.name.clone(),
                })
                .clone()
        });
        let active_gauge = metrics.backend_active.get_or_create(&labels).clone();
        let name_value = http::HeaderValue::from_str(&cfg.name).ok();
        let b = Self {
            requests,
            active_gauge,
            name_value,
            cfg,
            pool: Arc::default(),
            tls,
            connect_timeout,
            state,
            active: AtomicUsize::new(0),
            health,
            metrics,
        };
        b.publish();
        Ok(b)
    }

    fn publish(&self) {
        let up = self.state.up.load(Ordering::Relaxed);
        self.metrics
            .backend_up
            .get_or_create(&self.metrics.backend(&self.cfg.name))
            .set(i64::from(up));
    }

    /// Drains the backend (`true`) or puts it back (`false`).
    pub fn set_drained(&self, drained: bool) {
        self.state.drained.store(drained, Ordering::Relaxed);
        self.metrics
            .backend_drained
            .get_or_create(&self.metrics.backend(&self.cfg.name))
            .set(i64::from(drained));
        tracing::info!(backend = %self.cfg.name, drained, "backend drain changed by the operator");
    }

    pub fn is_drained(&self) -> bool {
        self.state.drained.load(Ordering::Relaxed)
    }

    /// Requests this backend is serving now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Whether the backend is in rotation. Without active checks, an ejected backend gets
    /// another chance after the cooldown.
    pub fn is_up(&self) -> bool {
        if self.state.up.load(Ordering::Relaxed) {
            return true;
        }
        if !self.health.enabled {
            let mut at = self
                .state
                .ejected_at
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if at.is_some_and(|t| t.elapsed() >= self.health.eject_cooldown) {
                *at = None;
                self.state.up.store(true, Ordering::Relaxed);
                tracing::info!(backend = %self.cfg.name, "backend back in rotation after cooldown");
                self.publish();
                return true;
            }
        }
        false
    }

    /// Passive ejection: a connection failure or timeout takes the backend out at once.
    pub fn eject(&self, why: &str) {
        self.metrics
            .backend_failures
            .get_or_create(&self.metrics.backend(&self.cfg.name))
            .inc();
        self.state.successes.store(0, Ordering::Relaxed);
        self.state.fails.store(self.health.fall, Ordering::Relaxed);
        *self
            .state
            .ejected_at
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        if self.state.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(backend = %self.cfg.name, reason = why, "backend ejected");
            self.publish();
        }
    }

    /// Records an active health check result.
    pub fn record_check(&self, ok: bool) {
        let s = &self.state;
        if ok {
            s.fails.store(0, Ordering::Relaxed);
            let n = s.successes.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= self.health.rise && !s.up.swap(true, Ordering::Relaxed) {
                tracing::info!(backend = %self.cfg.name, "backend healthy again");
                self.publish();
            }
        } else {
            s.successes.store(0, Ordering::Relaxed);
            let n = s.fails.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= self.health.fall && s.up.swap(false, Ordering::Relaxed) {
                tracing::warn!(backend = %self.cfg.name, "backend failed its health checks");
                self.publish();
            }
        }
    }

    /// Opens a new connection (TCP, then TLS when configured) within the connect timeout.
    pub async fn connect(&self) -> std::io::Result<Stream> {
        let connect = async {
            let tcp = TcpStream::connect(self.cfg.address).await?;
            tcp.set_nodelay(true)?;
            Ok::<_, std::io::Error>(match &self.tls {
                None => Stream::Plain(tcp),
                Some((connector, name)) => {
                    Stream::Tls(Box::new(connector.connect(name.clone(), tcp).await?))
                }
            })
        };
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect timed out",
            )),
        }
    }

    /// One active check: GET the health path; any 2xx or 3xx within the timeout passes.
    pub async fn check(&self) -> bool {
        let mut headers = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_str(&self.cfg.tls_server_name) {
            headers.insert(http::header::HOST, v);
        }
        headers.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static("rampart-health-check"),
        );
        let fut = async {
            let resp = crate::upstream::send(
                &self.pool,
                || self.connect(),
                &http::Method::GET,
                &self.health.path,
                &headers,
                &Bytes::new(),
                self.health.timeout,
            )
            .await
            .ok()?;
            let ok = resp.status().is_success() || resp.status().is_redirection();
            http_body_util::BodyExt::collect(resp.into_body())
                .await
                .ok()?;
            Some(ok)
        };
        matches!(
            tokio::time::timeout(self.health.timeout, fut).await,
            Ok(Some(true))
        )
    }

    pub fn forget_metrics(&self) {
        let l = self.metrics.backend(&self.cfg.name);
        self.metrics.backend_up.remove(&l);
        self.metrics.backend_active.remove(&l);
    }
}

/// Chooses a backend for each request.
#[derive(Debug)]
pub struct Balancer {
    pub backends: Vec<Arc<Backend>>,
    policy: Policy,
    next: AtomicUsize,
    /// Smooth weighted round robin's current weights (nginx's algorithm).
    current: Mutex<Vec<i64>>,
}

impl Balancer {
    pub fn new(backends: Vec<Arc<Backend>>, policy: Policy) -> Self {
        let n = backends.len();
        Self {
            backends,
            policy,
            next: AtomicUsize::new(0),
            current: Mutex::new(vec![0; n]),
        }
    }

    /// A healthy backend other than `exclude`, or `None` when there is none.
    pub fn pick(&self, exclude: Option<&Arc<Backend>>) -> Option<Arc<Backend>> {
        let n = self.backends.len();
        if n == 0 {
            return None;
        }
        let usable = |b: &Arc<Backend>| {
            !b.is_drained() && b.is_up() && exclude.is_none_or(|e| !Arc::ptr_eq(e, b))
        };
        match self.policy {
            Policy::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|i| &self.backends[(start + i) % n])
                    .find(|b| usable(b))
                    .cloned()
            }
            Policy::LeastConnections => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|i| &self.backends[(start + i) % n])
                    .filter(|b| usable(b))
                    .min_by_key(|b| b.active.load(Ordering::Relaxed))
                    .cloned()
            }
            Policy::WeightedRoundRobin => {
                let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
                let mut total = 0i64;
                let mut best: Option<usize> = None;
                for (i, b) in self.backends.iter().enumerate() {
                    if !usable(b) {
                        continue;
                    }
                    let w = i64::from(b.cfg.weight);
                    cur[i] += w;
                    total += w;
                    if best.is_none_or(|j| cur[i] > cur[j]) {
                        best = Some(i);
                    }
                }
                let i = best?;
                cur[i] -= total;
                Some(Arc::clone(&self.backends[i]))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn backend(name: &str, weight: u32, health_enabled: bool) -> Arc<Backend> {
        let cfg = BackendConfig {
            name: name.into(),
            address: "127.0.0.1:9".parse().unwrap(),
            weight,
            tls: false,
            tls_server_name: name.into(),
        };
        let health = Health {
            enabled: health_enabled,
            path: "/".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            fall: 3,
            rise: 2,
            eject_cooldown: Duration::from_millis(30),
        };
        Arc::new(
            Backend::new(
                cfg,
                None,
                Duration::from_secs(1),
                health,
                Arc::default(),
                Arc::new(Metrics::new()),
            )
            .unwrap(),
        )
    }

    /// Runs `n` picks and returns the chosen names joined by spaces.
    fn picks(b: &Balancer, n: usize) -> String {
        (0..n)
            .map(|_| b.pick(None).map_or("-".to_owned(), |x| x.cfg.name.clone()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[tokio::test]
    async fn policies() {
        let rr = Balancer::new(
            vec![backend("a", 1, true), backend("b", 1, true)],
            Policy::RoundRobin,
        );
        assert_eq!(picks(&rr, 4), "a b a b");
        rr.backends[0].eject("test");
        assert_eq!(picks(&rr, 3), "b b b");
        rr.backends[1].eject("test");
        assert_eq!(picks(&rr, 1), "-");

        let wrr = Balancer::new(
            vec![backend("a", 3, true), backend("b", 1, true)],
            Policy::WeightedRoundRobin,
        );
        assert_eq!(picks(&wrr, 8), "a a b a a a b a");

        let lc = Balancer::new(
            vec![backend("a", 1, true), backend("b", 1, true)],
            Policy::LeastConnections,
        );
        lc.backends[0].active.store(5, Ordering::Relaxed);
        assert_eq!(picks(&lc, 3), "b b b");
    }

    #[tokio::test]
    async fn a_drained_backend_gets_nothing_under_any_policy_until_put_back() {
        for policy in [
            Policy::RoundRobin,
            Policy::WeightedRoundRobin,
            Policy::LeastConnections,
        ] {
            let b = Balancer::new(vec![backend("a", 1, true), backend("b", 1, true)], policy);
            b.backends[0].set_drained(true);
            assert_eq!(picks(&b, 3), "b b b", "{policy:?}");
            // Draining is the operator's, not health's: a healthy drained backend stays out.
            assert!(b.backends[0].is_up());
            b.backends[1].set_drained(true);
            assert_eq!(picks(&b, 1), "-", "{policy:?}");
            b.backends[0].set_drained(false);
            b.backends[1].set_drained(false);
            let both = picks(&b, 4);
            assert!(
                both.contains('a') && both.contains('b'),
                "{policy:?}: {both}"
            );
        }
    }

    #[tokio::test]
    async fn exclusion_picks_another_backend() {
        let rr = Balancer::new(
            vec![backend("a", 1, true), backend("b", 1, true)],
            Policy::RoundRobin,
        );
        for _ in 0..4 {
            let first = rr.pick(None).unwrap();
            let second = rr.pick(Some(&first)).unwrap();
            assert!(!Arc::ptr_eq(&first, &second));
        }
    }

    #[tokio::test]
    async fn active_checks_fall_and_rise() {
        let b = backend("a", 1, true);
        b.record_check(false);
        b.record_check(false);
        assert!(b.is_up(), "fall is 3");
        b.record_check(false);
        assert!(!b.is_up());
        b.record_check(true);
        assert!(!b.is_up(), "rise is 2");
        b.record_check(true);
        assert!(b.is_up());
        b.eject("test");
        assert!(!b.is_up(), "passive ejection is immediate");
    }

    #[tokio::test]
    async fn without_active_checks_an_ejected_backend_returns_after_cooldown() {
        let b = backend("a", 1, false);
        b.eject("test");
        assert!(!b.is_up());
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(b.is_up());
    }
}

//! `rampart logs`: the store behind a listener. TLS that requires a client certificate
//! of `tls.client_ca` (on a site, the monitoring plane's CA: the gate pushes, the
//! dashboard queries; no host reaches it directly), with a handshake deadline; hyper
//! HTTP/1.1 with a header deadline; bodies bounded in size and time; at most
//! `limits.max_in_flight` requests at the store at once, each on a blocking thread.
//! A retention pass runs every `store.retention_every`. Its own `/metrics` are on a
//! plain listener for its host's agent.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rampart_telemetry::accept::{Counters, Fixed, Gate as AcceptGate, Slots};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::store::{Retention, Store, StoreError};

const MAX_HEAD_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("tls: {0}")]
    Tls(#[from] rampart_tls::TlsError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

#[derive(Debug)]
pub struct Listeners {
    pub https: TcpListener,
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// Binds `listen.addr` and `listen.metrics`. Must be called inside a tokio runtime.
    pub fn bind(config: &Config) -> std::io::Result<Self> {
        Ok(Self {
            https: rampart_telemetry::listen::tcp(config.addr, 1024)?,
            metrics: config
                .metrics
                .map(|a| rampart_telemetry::listen::tcp(a, 64))
                .transpose()?,
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    stored: Counter,
    duplicates: Counter,
    removed_age: Counter,
    removed_size: Counter,
    lines: Gauge,
    bytes: Gauge,
    refused: Family<ReasonLabels, Counter>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("rampart_logs"),
            requests: Family::default(),
            stored: Counter::default(),
            duplicates: Counter::default(),
            removed_age: Counter::default(),
            removed_size: Counter::default(),
            lines: Gauge::default(),
            bytes: Gauge::default(),
            refused: Family::default(),
        };
        let r = &mut m.registry;
        r.register(
            "requests",
            "Requests by route and status",
            m.requests.clone(),
        );
        r.register("lines_stored", "Log lines stored", m.stored.clone());
        r.register(
            "lines_duplicate",
            "Log lines pushed again that the store had already (retries)",
            m.duplicates.clone(),
        );
        r.register(
            "lines_expired_by_age",
            "Log lines removed by retention for their age",
            m.removed_age.clone(),
        );
        r.register(
            "lines_expired_by_size",
            "Log lines removed by retention for the store's size",
            m.removed_size.clone(),
        );
        r.register("store_lines", "Log lines in the store", m.lines.clone());
        r.register(
            "store_bytes",
            "Bytes the store's live pages take",
            m.bytes.clone(),
        );
        r.register(
            "connections_refused",
            "Connections closed at accept or in the TLS handshake, by reason",
            m.refused.clone(),
        );
        m
    }
}

struct Shared {
    config: Config,
    tls: tokio_rustls::TlsAcceptor,
    store: Arc<Store>,
    in_flight: Semaphore,
    metrics: Metrics,
}

/// The log store, ready to serve.
pub struct Logs {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Logs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logs")
            .field("addr", &self.shared.config.addr)
            .finish_non_exhaustive()
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl Logs {
    /// Opens the store and loads the certificates.
    pub fn new(config: Config) -> Result<Logs, LogsError> {
        let cert = rampart_tls::load_certified_key(&config.tls.cert, &config.tls.key)?;
        let certs = Arc::new(rampart_tls::SiteCerts::new(vec![cert]));
        let tls = rampart_tls::server_config_mtls(certs, &[b"http/1.1"], &config.tls.client_ca)?;
        if let Some(dir) = config.db.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let store = Arc::new(Store::open(&config.db)?);
        Ok(Logs {
            shared: Arc::new(Shared {
                tls: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
                store,
                in_flight: Semaphore::new(config.max_in_flight),
                metrics: Metrics::new(),
                config,
            }),
        })
    }

    pub fn store(&self) -> Arc<Store> {
        Arc::clone(&self.shared.store)
    }

    pub fn metrics_text(&self) -> String {
        rampart_telemetry::metrics::encode(&self.shared.metrics.registry)
    }

    /// Serves until `shutdown` resolves, then lets open requests finish for up to
    /// `listen.shutdown_grace`.
    pub async fn serve(
        &self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()>,
        ready: impl FnOnce(),
    ) -> std::io::Result<()> {
        let addr = listeners.https.local_addr()?;
        let graceful = Arc::new(GracefulShutdown::new());
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(Arc::clone(&self.shared).accept_loop(listeners.https, Arc::clone(&graceful)));
        if let Some(l) = listeners.metrics {
            tasks.spawn(Arc::clone(&self.shared).metrics_loop(l));
        }
        tasks.spawn(Arc::clone(&self.shared).retention_loop());
        tracing::info!(%addr, db = %self.shared.config.db.display(), "log store ready on https://{addr}");
        ready();
        shutdown.await;
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        if let Ok(graceful) = Arc::try_unwrap(graceful) {
            let grace = self.shared.config.shutdown_grace;
            if tokio::time::timeout(grace, graceful.shutdown())
                .await
                .is_err()
            {
                tracing::warn!("drain deadline passed; closing the rest");
            }
        }
        Ok(())
    }
}

rampart_telemetry::service!(
    Logs,
    error = LogsError,
    build = |c| Logs::new(c).map(Arc::new)
);

fn reply(status: u16, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

fn route_name(path: &str) -> &'static str {
    match path {
        "/loki/api/v1/push" => "push",
        "/loki/api/v1/query_range" => "query_range",
        "/loki/api/v1/query" => "query",
        "/loki/api/v1/labels" => "labels",
        "/loki/api/v1/series" => "series",
        "/ready" => "ready",
        p if p.starts_with("/loki/api/v1/label/") => "label_values",
        _ => "other",
    }
}

impl Shared {
    async fn accept_loop(self: Arc<Self>, listener: TcpListener, graceful: Arc<GracefulShutdown>) {
        let rules = Fixed {
            allow_from: self.config.allow_from.clone(),
            max_connections: self.config.max_connections,
        };
        let refused = |r| {
            self.metrics
                .refused
                .get_or_create(&ReasonLabels { reason: r })
                .clone()
        };
        let counters = Counters {
            not_allowed: refused("not_allowed"),
            over_cap: refused("max_connections"),
            ..Counters::default()
        };
        let mut gate = AcceptGate::new(listener, "https", Slots::new(), counters);
        loop {
            let conn = gate.accept(&rules).await;
            let (stream, peer) = (conn.stream, conn.peer);
            let shared = Arc::clone(&self);
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let _permit = conn.permit;
                let deadline = shared.config.header_timeout;
                let Ok(Ok(tls)) = tokio::time::timeout(deadline, shared.tls.accept(stream)).await
                else {
                    shared
                        .metrics
                        .refused
                        .get_or_create(&ReasonLabels {
                            reason: "tls_handshake",
                        })
                        .inc();
                    tracing::debug!(%peer, "TLS handshake failed");
                    return;
                };
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(deadline)
                    .max_buf_size(MAX_HEAD_BYTES);
                let svc = service_fn(move |req| {
                    let shared = Arc::clone(&shared);
                    async move { Ok::<_, Infallible>(shared.handle(req).await) }
                });
                let _ = watcher
                    .watch(http.serve_connection(TokioIo::new(tls), svc))
                    .await;
            });
        }
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let route = route_name(req.uri().path());
        let r = self.answer(req).await;
        self.metrics
            .requests
            .get_or_create(&RouteLabels {
                route,
                code: r.status().as_u16(),
            })
            .inc();
        r
    }

    async fn answer(self: &Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let Ok(_slot) = self.in_flight.acquire().await else {
            return reply(503, "text/plain", b"shutting down\n".to_vec());
        };
        let (parts, body) = req.into_parts();
        // Loki takes gzipped JSON (`Content-Encoding: gzip`); this store does not inflate
        // bodies (Loki's clients send snappy protobuf without a Content-Encoding).
        if let Some(enc) = parts.headers.get(http::header::CONTENT_ENCODING) {
            if !enc.as_bytes().eq_ignore_ascii_case(b"identity") {
                return reply(
                    415,
                    "text/plain; charset=utf-8",
                    format!(
                        "Content-Encoding {:?} is not supported; send the body uncompressed (JSON) or as snappy protobuf without a Content-Encoding\n",
                        String::from_utf8_lossy(enc.as_bytes())
                    )
                    .into_bytes(),
                );
            }
        }
        let limit = self.config.max_body_bytes;
        let read = tokio::time::timeout(
            self.config.request_timeout,
            Limited::new(body, limit).collect(),
        )
        .await;
        let body = match read {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e))
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return reply(
                    413,
                    "text/plain; charset=utf-8",
                    format!("the body is larger than {limit} bytes (limits.max_body_bytes)\n")
                        .into_bytes(),
                )
            }
            Ok(Err(_)) => return reply(400, "text/plain", b"body not read\n".to_vec()),
            Err(_) => return reply(408, "text/plain", b"body too slow\n".to_vec()),
        };
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let method = parts.method.as_str().to_owned();
        let path = parts.uri.path().to_owned();
        let query = parts.uri.query().unwrap_or("").to_owned();
        let shared = Arc::clone(self);
        let answered = tokio::task::spawn_blocking(move || {
            crate::api::handle(
                &shared.store,
                &method,
                &path,
                &query,
                &content_type,
                &body,
                now_ns(),
            )
        })
        .await;
        match answered {
            Ok(r) => {
                if let Some(a) = r.appended {
                    self.metrics.stored.inc_by(a.stored);
                    self.metrics.duplicates.inc_by(a.duplicates);
                }
                reply(r.status, r.content_type, r.body)
            }
            Err(e) => {
                tracing::error!(error = %e, "a request's handler failed");
                reply(500, "text/plain", b"internal error\n".to_vec())
            }
        }
    }

    async fn retention_loop(self: Arc<Self>) {
        let retention = Retention {
            max_age_ns: i64::try_from(self.config.max_age.as_nanos()).unwrap_or(i64::MAX),
            max_bytes: self.config.max_bytes,
        };
        loop {
            let store = Arc::clone(&self.store);
            let pass = tokio::task::spawn_blocking(move || {
                let removed = store.enforce(now_ns(), retention)?;
                Ok::<_, StoreError>((removed, store.size()?))
            })
            .await;
            match pass {
                Ok(Ok((removed, (lines, bytes)))) => {
                    self.metrics.removed_age.inc_by(removed.by_age);
                    self.metrics.removed_size.inc_by(removed.by_size);
                    self.metrics
                        .lines
                        .set(i64::try_from(lines).unwrap_or(i64::MAX));
                    self.metrics
                        .bytes
                        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "retention pass failed"),
                Err(e) => tracing::warn!(error = %e, "retention pass failed"),
            }
            tokio::time::sleep(self.config.retention_every).await;
        }
    }

    async fn metrics_loop(self: Arc<Self>, listener: TcpListener) {
        let rules = Fixed {
            allow_from: self.config.metrics_allow_from.clone(),
            max_connections: 8,
        };
        let mut gate = AcceptGate::new(listener, "metrics", Slots::new(), Counters::default());
        loop {
            let conn = gate.accept(&rules).await;
            let shared = Arc::clone(&self);
            tokio::spawn(async move {
                let _permit = conn.permit;
                let svc = service_fn(move |req: Request<Incoming>| {
                    let shared = Arc::clone(&shared);
                    async move {
                        let r = if req.uri().path() == "/metrics" {
                            reply(
                                200,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                rampart_telemetry::metrics::encode(&shared.metrics.registry)
                                    .into_bytes(),
                            )
                        } else {
                            reply(404, "text/plain", b"not found\n".to_vec())
                        };
                        Ok::<_, Infallible>(r)
                    }
                });
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10));
                let _ = http.serve_connection(TokioIo::new(conn.stream), svc).await;
            });
        }
    }
}

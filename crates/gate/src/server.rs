//! The gate's server: the listener behind [`rampart_telemetry::accept::Gate`] (allow-list
//! and connection cap), TLS that requires a client certificate from `tls.client_ca`
//! with a handshake deadline, hyper HTTP/1.1 with a header deadline, and one route.
//!
//! `POST /api/v1/write` is read (at most `limits.max_body_bytes`, within
//! `listen.request_timeout`), decoded (snappy, then the protobuf `WriteRequest`, its
//! decompressed size checked before it is allocated), and checked: every series must
//! carry an `instance` label that is one of the DNS names of the client's certificate.
//! Only then are the original bytes forwarded to `upstream.url` with the gate's own
//! client certificate, and Prometheus's answer (status, `Date`, the first 4 KiB of the
//! body) is passed back, so an agent's retry rules and clock check work as if it spoke
//! to Prometheus. Everything else is refused: any other path 403 (queries, the admin
//! API, federation, the UI), another method 405, a body that is not a write request
//! 400, a series for another host 403.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use rampart_agent::remote_write::{self, DecodeError, WriteRequest};
use rampart_telemetry::accept::{Counters, Fixed, Gate as AcceptGate, Slots};
use rampart_telemetry::http_client::{self, Endpoint, Limits, Overflow};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::metrics::Metrics;

/// The path of metrics the gate forwards.
pub const WRITE_PATH: &str = "/api/v1/write";
/// The path of logs the gate forwards, with `[logs]` (Loki's push API).
pub const LOGS_PATH: &str = "/loki/api/v1/push";
/// The only labels a log stream may carry: bounded sets, never values from a line.
pub const LOG_LABELS: [&str; 3] = ["host", "service", "stream"];
/// The largest request head.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How much of Prometheus's answer body is passed back (its error message).
const UPSTREAM_BODY_LIMIT: usize = 4096;
/// Connections the internal metrics listener serves at once.
const METRICS_MAX_CONNECTIONS: usize = 8;
const METRICS_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The label every series must carry, naming the host it describes.
pub const INSTANCE: &str = "instance";

/// Why the gate could not be built from a valid config.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("tls: {0}")]
    Tls(#[from] rampart_tls::TlsError),
    #[error("upstream.url: {0}")]
    Upstream(&'static str),
    #[error("logs.url: {0}")]
    Logs(&'static str),
}

/// The bound listeners.
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

struct Shared {
    config: Config,
    tls: tokio_rustls::TlsAcceptor,
    upstream: Endpoint,
    upstream_target: http::Uri,
    /// The log store, with `[logs]`.
    logs: Option<(Endpoint, http::Uri)>,
    in_flight: Semaphore,
    metrics: Metrics,
}

/// The ingest gate, ready to serve.
pub struct Gate {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("addr", &self.shared.config.addr)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// Loads the certificates (its own, the client CA, the upstream client certificate).
    pub fn new(config: Config) -> Result<Gate, GateError> {
        let cert = rampart_tls::load_certified_key(&config.tls.cert, &config.tls.key)?;
        let certs = Arc::new(rampart_tls::SiteCerts::new(vec![cert]));
        let tls = rampart_tls::server_config_mtls(certs, &[b"http/1.1"], &config.tls.client_ca)?;
        let client = match &config.upstream.tls {
            Some(t) => Some(Arc::new(rampart_tls::client_config(t)?)),
            None => None,
        };
        let (upstream, upstream_target) =
            Endpoint::from_url(&config.upstream.url, client).map_err(GateError::Upstream)?;
        let logs = match &config.logs {
            Some(l) => {
                let client = match &l.tls {
                    Some(t) => Some(Arc::new(rampart_tls::client_config(t)?)),
                    None => None,
                };
                Some(Endpoint::from_url(&l.url, client).map_err(GateError::Logs)?)
            }
            None => None,
        };
        Ok(Gate {
            shared: Arc::new(Shared {
                tls: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
                upstream,
                upstream_target,
                logs,
                in_flight: Semaphore::new(config.max_in_flight),
                metrics: Metrics::new(),
                config,
            }),
        })
    }

    /// The Prometheus text of the gate's own metrics.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics.encode()
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
        let accept = tokio::spawn(
            Arc::clone(&self.shared).accept_loop(listeners.https, Arc::clone(&graceful)),
        );
        let scrape = listeners
            .metrics
            .map(|l| tokio::spawn(Arc::clone(&self.shared).metrics_loop(l)));
        tracing::info!(%addr, upstream = %self.shared.config.upstream.url,
            "ingest gate ready on https://{addr}{WRITE_PATH}");
        ready();
        shutdown.await;
        accept.abort();
        let _ = accept.await;
        if let Some(scrape) = scrape {
            scrape.abort();
            let _ = scrape.await;
        }
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
    Gate,
    error = GateError,
    build = |c| Gate::new(c).map(Arc::new)
);

/// Who the client is: the DNS names of its certificate (already verified against
/// `tls.client_ca` in the handshake), lowercased.
fn identity(conn: &rustls::ServerConnection) -> Option<BTreeSet<String>> {
    let der = conn.peer_certificates()?.first()?;
    let info = rampart_tls::cert_info(std::path::Path::new("client certificate"), der).ok()?;
    let names: BTreeSet<String> = info.names.into_iter().collect();
    (!names.is_empty()).then_some(names)
}

/// Why a write request is refused before it reaches Prometheus.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A series without an `instance` label.
    NoInstance { series: usize },
    /// A series whose `instance` is not one of the client's names.
    Foreign { instance: String },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NoInstance { series } => {
                write!(f, "series {series} has no instance label")
            }
            Refusal::Foreign { instance } => write!(
                f,
                "series for instance {instance:?}: this client's certificate does not name it"
            ),
        }
    }
}

/// Checks that every series of `req` carries an `instance` label that is one of `names`.
pub fn check_instances(req: &WriteRequest, names: &BTreeSet<String>) -> Result<(), Refusal> {
    for (i, ts) in req.timeseries.iter().enumerate() {
        let mut instance = None;
        for l in &ts.labels {
            if l.name == INSTANCE {
                // A repeated label is not a series Prometheus accepts; take the worst.
                if instance.is_some_and(|v: &str| v != l.value) {
                    return Err(Refusal::Foreign {
                        instance: l.value.clone(),
                    });
                }
                instance = Some(l.value.as_str());
            }
        }
        match instance {
            None => return Err(Refusal::NoInstance { series: i }),
            Some(v) if !names.contains(v) => {
                return Err(Refusal::Foreign {
                    instance: v.to_owned(),
                })
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Checks that every stream of a log push carries only the labels of [`LOG_LABELS`],
/// with a `host` that is one of `names`.
pub fn check_log_hosts(
    push: &rampart_logs::push::Push,
    names: &BTreeSet<String>,
) -> Result<(), String> {
    for (i, s) in push.streams.iter().enumerate() {
        if let Some((k, _)) = s
            .labels
            .pairs()
            .iter()
            .find(|(k, _)| !LOG_LABELS.contains(&k.as_str()))
        {
            return Err(format!(
                "stream {i}: label {k:?}; a stream has only host, service and stream"
            ));
        }
        match s.labels.get("host") {
            None => return Err(format!("stream {i} has no host label")),
            Some(h) if !names.contains(h) => {
                return Err(format!(
                    "stream for host {h:?}: this client's certificate does not name it"
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

impl Shared {
    async fn accept_loop(self: Arc<Self>, listener: TcpListener, graceful: Arc<GracefulShutdown>) {
        let rules = Fixed {
            allow_from: self.config.allow_from.clone(),
            max_connections: self.config.max_connections,
        };
        let counters = Counters {
            not_allowed: self.metrics.refused("not_allowed"),
            over_cap: self.metrics.refused("max_connections"),
            ..Counters::default()
        };
        let mut gate = AcceptGate::new(listener, "https", Slots::new(), counters);
        loop {
            let conn = gate.accept(&rules).await;
            let (stream, peer) = (conn.stream, conn.peer);
            let _ = stream.set_nodelay(true);
            let shared = Arc::clone(&self);
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let _permit = conn.permit;
                let deadline = shared.config.header_timeout;
                let tls = match tokio::time::timeout(deadline, shared.tls.accept(stream)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        shared.metrics.refused("tls_handshake").inc();
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        shared.metrics.refused("tls_handshake").inc();
                        return;
                    }
                };
                let Some(names) = identity(tls.get_ref().1) else {
                    shared.metrics.refused("no_identity").inc();
                    tracing::warn!(%peer, "client certificate names no host; closed");
                    return;
                };
                let names = Arc::new(names);
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(deadline)
                    .max_buf_size(MAX_HEAD_BYTES);
                let svc = service_fn(move |req| {
                    let shared = Arc::clone(&shared);
                    let names = Arc::clone(&names);
                    async move { Ok::<_, Infallible>(shared.handle(req, &names, peer).await) }
                });
                let _ = watcher
                    .watch(http.serve_connection(TokioIo::new(tls), svc))
                    .await;
            });
        }
    }

    async fn handle(
        &self,
        req: Request<Incoming>,
        names: &BTreeSet<String>,
        peer: std::net::SocketAddr,
    ) -> Response<Full<Bytes>> {
        let host = names.iter().next().map_or("", String::as_str);
        let (outcome, resp) = self.route(req, names, host, peer).await;
        self.metrics.request(host, outcome);
        resp
    }

    async fn route(
        &self,
        req: Request<Incoming>,
        names: &BTreeSet<String>,
        host: &str,
        peer: std::net::SocketAddr,
    ) -> (&'static str, Response<Full<Bytes>>) {
        let logs = req.uri().path() == LOGS_PATH && self.logs.is_some();
        if req.uri().path() != WRITE_PATH && !logs {
            tracing::warn!(%peer, host, method = %req.method(), path = req.uri().path(),
                "refused: the gate takes remote write only");
            return (
                "not_write",
                text(
                    StatusCode::FORBIDDEN,
                    "the ingest gate accepts remote write (POST /api/v1/write) and log pushes \
                     (POST /loki/api/v1/push) only\n"
                        .into(),
                ),
            );
        }
        if req.method() != Method::POST {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n".into());
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return ("not_write", r);
        }
        // One decode at a time per permit: bodies and their decoded form are what cost
        // memory, so their number is bounded, not only their size.
        let Ok(_slot) = self.in_flight.acquire().await else {
            return (
                "error",
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into()),
            );
        };
        let (parts, body) = req.into_parts();
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
                return (
                    "too_large",
                    text(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("body larger than {limit} bytes\n"),
                    ),
                )
            }
            Ok(Err(_)) => {
                return (
                    "malformed",
                    text(StatusCode::BAD_REQUEST, "body not read\n".into()),
                )
            }
            Err(_) => {
                return (
                    "malformed",
                    text(StatusCode::REQUEST_TIMEOUT, "body too slow\n".into()),
                )
            }
        };
        if logs {
            let content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let push = match rampart_logs::push::decode(content_type, &body) {
                Ok(p) => p,
                Err(e @ rampart_logs::push::PushError::TooLarge(..)) => {
                    return (
                        "too_large",
                        text(StatusCode::PAYLOAD_TOO_LARGE, format!("{e}\n")),
                    )
                }
                Err(e) => {
                    return (
                        "malformed",
                        text(StatusCode::BAD_REQUEST, format!("not a log push: {e}\n")),
                    )
                }
            };
            if let Err(refusal) = check_log_hosts(&push, names) {
                tracing::warn!(%peer, host, %refusal, "refused a log push");
                return (
                    "forged",
                    text(StatusCode::FORBIDDEN, format!("refused: {refusal}\n")),
                );
            }
            drop(push);
            return match &self.logs {
                Some((endpoint, target)) => {
                    let timeout = self
                        .config
                        .logs
                        .as_ref()
                        .map_or(crate::config::defaults::UPSTREAM_TIMEOUT, |l| l.timeout);
                    self.forward(
                        &parts.headers,
                        body,
                        endpoint,
                        target,
                        timeout,
                        "the log store",
                    )
                    .await
                }
                None => (
                    "error",
                    text(StatusCode::NOT_FOUND, "no log store\n".into()),
                ),
            };
        }
        let decoded = match remote_write::decode(&body, self.config.max_decoded_bytes) {
            Ok(d) => d,
            Err(e @ DecodeError::TooLarge { .. }) => {
                return (
                    "too_large",
                    text(StatusCode::PAYLOAD_TOO_LARGE, format!("{e}\n")),
                )
            }
            Err(e) => {
                return (
                    "malformed",
                    text(
                        StatusCode::BAD_REQUEST,
                        format!("not a remote-write request: {e}\n"),
                    ),
                )
            }
        };
        if let Err(refusal) = check_instances(&decoded, names) {
            tracing::warn!(%peer, host, %refusal, "refused a write for another host");
            return (
                "forged",
                text(StatusCode::FORBIDDEN, format!("refused: {refusal}\n")),
            );
        }
        drop(decoded);
        self.forward(
            &parts.headers,
            body,
            &self.upstream,
            &self.upstream_target,
            self.config.upstream.timeout,
            "the metrics store",
        )
        .await
    }

    /// Sends the checked body to Prometheus and passes its answer back.
    async fn forward(
        &self,
        headers: &http::HeaderMap,
        body: Bytes,
        endpoint: &Endpoint,
        target: &http::Uri,
        timeout: Duration,
        what: &str,
    ) -> (&'static str, Response<Full<Bytes>>) {
        let mut req = Request::new(body);
        *req.method_mut() = Method::POST;
        *req.uri_mut() = target.clone();
        for name in [
            header::CONTENT_ENCODING,
            header::CONTENT_TYPE,
            header::USER_AGENT,
        ] {
            if let Some(v) = headers.get(&name) {
                req.headers_mut().insert(name, v.clone());
            }
        }
        if let Some(v) = headers.get(remote_write::VERSION_HEADER) {
            req.headers_mut()
                .insert(remote_write::VERSION_HEADER, v.clone());
        }
        let limits = Limits {
            timeout,
            max_body: UPSTREAM_BODY_LIMIT,
            overflow: Overflow::Truncate,
        };
        match http_client::send_to(endpoint, req, limits).await {
            Ok(up) => {
                let mut r = Response::new(Full::new(up.body));
                *r.status_mut() = up.status;
                for name in [header::DATE, header::CONTENT_TYPE] {
                    if let Some(v) = up.headers.get(&name) {
                        r.headers_mut().insert(name, v.clone());
                    }
                }
                let outcome = if up.status.is_success() {
                    "accepted"
                } else {
                    "upstream_refused"
                };
                (outcome, r)
            }
            Err(e) => {
                tracing::warn!(error = %e, "{what} is unreachable");
                (
                    "upstream_error",
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("{what} is unreachable; retry later\n"),
                    ),
                )
            }
        }
    }

    async fn metrics_loop(self: Arc<Self>, listener: TcpListener) {
        let rules = Fixed {
            allow_from: self.config.metrics_allow_from.clone(),
            max_connections: METRICS_MAX_CONNECTIONS,
        };
        let counters = Counters {
            not_allowed: self.metrics.refused("metrics_not_allowed"),
            over_cap: self.metrics.refused("metrics_max_connections"),
            ..Counters::default()
        };
        let mut gate = AcceptGate::new(listener, "metrics", Slots::new(), counters);
        loop {
            let conn = gate.accept(&rules).await;
            let shared = Arc::clone(&self);
            tokio::spawn(async move {
                let _permit = conn.permit;
                let svc = service_fn(move |req: Request<Incoming>| {
                    let shared = Arc::clone(&shared);
                    async move {
                        let get = req.method() == Method::GET || req.method() == Method::HEAD;
                        Ok::<_, Infallible>(match req.uri().path() {
                            "/metrics" if get => text(StatusCode::OK, shared.metrics.encode()),
                            "/metrics" => text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into()),
                            _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
                        })
                    }
                });
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(METRICS_HEADER_TIMEOUT)
                    .max_buf_size(MAX_HEAD_BYTES);
                let _ = http.serve_connection(TokioIo::new(conn.stream), svc).await;
            });
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_agent::remote_write::{Label, TimeSeries};

    fn req(instances: &[Option<&str>]) -> WriteRequest {
        WriteRequest {
            timeseries: instances
                .iter()
                .map(|i| TimeSeries {
                    labels: std::iter::once(Label {
                        name: "__name__".into(),
                        value: "up".into(),
                    })
                    .chain(i.map(|v| Label {
                        name: INSTANCE.into(),
                        value: v.into(),
                    }))
                    .collect(),
                    samples: Vec::new(),
                })
                .collect(),
            metadata: Vec::new(),
        }
    }

    fn names(n: &[&str]) -> BTreeSet<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_host_writes_only_its_own_series() {
        let web1 = names(&["web1"]);
        assert_eq!(
            check_instances(&req(&[Some("web1"), Some("web1")]), &web1),
            Ok(())
        );
        assert_eq!(check_instances(&req(&[]), &web1), Ok(()));
        assert_eq!(
            check_instances(&req(&[Some("web1"), Some("db1")]), &web1),
            Err(Refusal::Foreign {
                instance: "db1".into()
            })
        );
        assert_eq!(
            check_instances(&req(&[Some("web1"), None]), &web1),
            Err(Refusal::NoInstance { series: 1 })
        );
        // Exactly the name: no other spelling makes a series of its own.
        assert!(check_instances(&req(&[Some("WEB1")]), &web1).is_err());
        assert!(check_instances(&req(&[Some("web10")]), &web1).is_err());
    }

    #[test]
    fn a_repeated_instance_label_must_agree() {
        let mut r = req(&[Some("web1")]);
        r.timeseries[0].labels.push(Label {
            name: INSTANCE.into(),
            value: "db1".into(),
        });
        assert!(check_instances(&r, &names(&["web1"])).is_err());
    }
}

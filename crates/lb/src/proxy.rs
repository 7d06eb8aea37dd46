//! One configuration generation and the request path through it: rate limit, backend
//! choice, forwarding headers, the retry on another backend, response headers (HSTS,
//! served-by), metrics and the access log. Shared by the HTTP/1.1 and HTTP/2 front ends,
//! which both report a request they could not read as a [`Reject`].
//!
//! Failure classes decide what happens next: a connection failure means the request never
//! reached the backend, so any method is retried; a failure after sending but before any
//! response byte is retried only for idempotent methods; once a response has started
//! nothing is retried. Both kinds eject the backend at once (passive health).

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use prometheus_client::metrics::counter::Counter;

use crate::backend::{Backend, BackendState, Balancer};
use crate::config::{Config, ConfigError, ConfigErrors};
use crate::metrics::{Metrics, RequestLabels};
use crate::ratelimit::RateLimiter;
use crate::upstream::{UpBody, UpError};

/// Why a request could not be read (by `h1.rs`, or the HTTP/2 body reader in
/// `server.rs`); each maps to the status the client gets from [`Generation::reject`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Malformed or ambiguous: 400.
    BadRequest(&'static str),
    /// Head too large: 431.
    HeadTooLarge,
    /// Body too large: 413.
    BodyTooLarge,
    /// Too slow: 408.
    Timeout,
    /// Understood but not supported: 501.
    NotImplemented(&'static str),
    /// `Expect` other than 100-continue: 417.
    Expectation,
    /// The client went away; nothing to answer.
    Closed,
}

impl Reject {
    pub fn status(self) -> StatusCode {
        match self {
            Reject::BadRequest(_) | Reject::Closed => StatusCode::BAD_REQUEST,
            Reject::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Reject::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reject::Timeout => StatusCode::REQUEST_TIMEOUT,
            Reject::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Reject::Expectation => StatusCode::EXPECTATION_FAILED,
        }
    }

    /// The bounded reason label for metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Reject::BadRequest(r) | Reject::NotImplemented(r) => r,
            Reject::HeadTooLarge => "head_too_large",
            Reject::BodyTooLarge => "body_too_large",
            Reject::Timeout => "timeout",
            Reject::Expectation => "expectation",
            Reject::Closed => "closed",
        }
    }
}
use rampart_telemetry::access_log::{self, AccessLog, Entry};
use rampart_telemetry::metrics::{status_class_index, STATUS_CLASSES};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type RespBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// What the request path knows about the client connection.
#[derive(Debug)]
pub struct ConnInfo {
    pub client: SocketAddr,
    pub https: bool,
    pub tls_version: Option<&'static str>,
    pub proto: &'static str,
    pub accepted: Instant,
    /// The client address as `X-Forwarded-For` carries it, formatted once per connection.
    client_ip: HeaderValue,
    /// The `for=` parameter of `Forwarded` (IPv6 quoted and bracketed).
    forwarded_for: String,
    /// The last host seen on this connection and its `Forwarded` value: clients send
    /// the same host on every request of a connection, so it is formatted once.
    forwarded_cache: Mutex<Option<(HeaderValue, HeaderValue)>>,
}

impl ConnInfo {
    pub fn new(client: SocketAddr, https: bool, accepted: Instant) -> Self {
        let ip = client.ip();
        let forwarded_for = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("\"[{v6}]\""),
        };
        Self {
            client,
            https,
            tls_version: None,
            proto: "HTTP/1.1",
            accepted,
            // An IP address always makes a valid header value.
            client_ip: HeaderValue::from_str(&ip.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            forwarded_for,
            forwarded_cache: Mutex::new(None),
        }
    }

    /// The `Forwarded` value for a request to `host` (already checked to be a host).
    fn forwarded(&self, host: &HeaderValue, proto: &str) -> Option<HeaderValue> {
        let mut cache = self
            .forwarded_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((h, v)) = cache.as_ref() {
            if h == host {
                return Some(v.clone());
            }
        }
        let v = HeaderValue::from_str(&format!(
            "for={};proto={proto};host=\"{}\"",
            self.forwarded_for,
            host.to_str().ok()?
        ))
        .ok()?;
        *cache = Some((host.clone(), v.clone()));
        Some(v)
    }
}

impl Shared {
    /// Observes the request's latency and writes its access log line (if the log is on).
    fn record(&self, meta: &RequestMeta, status: u16, bytes: u64, backend: Option<&str>) {
        let elapsed = meta.start.elapsed();
        self.metrics.duration.observe(elapsed.as_secs_f64());
        if !self.access_log.enabled() {
            return;
        }
        self.access_log.log(&Entry {
            time: access_log::now_rfc3339(),
            client: meta.client.ip().to_string(),
            method: meta.method.as_str(),
            host: meta.host.to_str().unwrap_or(""),
            path: meta.path(),
            status,
            bytes,
            duration_ms: (elapsed.as_secs_f64() * 1e6).round() / 1e3,
            backend,
            tls: meta.tls,
            proto: meta.proto,
            db: None,
            request_id: Some(meta.id()),
            waf: meta.waf.as_ref(),
        });
    }
}

/// Process-wide pieces that outlive configuration generations.
#[derive(Debug)]
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub access_log: AccessLog,
    /// The bound port of the HTTPS listener, for redirects.
    pub https_port: std::sync::atomic::AtomicU16,
    /// HTTP-01 answers of the ACME orders in progress (empty without `[acme]`).
    pub acme: Arc<crate::acme::Challenges>,
}

/// Everything built from one configuration: requests on a connection use the generation
/// that was current when the connection was accepted.
pub struct Generation {
    pub config: Config,
    pub tls: tokio_rustls::TlsAcceptor,
    pub balancer: Balancer,
    limiter: Option<RateLimiter>,
    pub shared: Arc<Shared>,
    health_tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    none_counters: [Counter; STATUS_CLASSES.len()],
    hsts: Option<HeaderValue>,
    waf: Option<Arc<crate::waf::Waf>>,
    /// The served certificates, which follow renewals of their files by themselves.
    site: Arc<rampart_tls::SiteCerts>,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn err(config: &Config, key: String, message: String) -> ConfigError {
    ConfigError {
        file: config.path.clone(),
        key,
        message,
    }
}

impl Generation {
    /// Sets each served certificate's notAfter gauge from the pair in use now (after a
    /// renewal, the renewed one), and counts the renewals loaded. Called before metrics
    /// are encoded.
    pub fn publish_certs(&self) {
        let metrics = &self.shared.metrics;
        for c in self.site.certs() {
            let name = c.info.names.first().cloned().unwrap_or_default();
            let file = c.cert_path.display().to_string();
            metrics
                .cert_expiry
                .get_or_create(&crate::metrics::CertLabels { name, file })
                .set(c.info.not_after_unix);
        }
    }

    /// Builds a generation: loads certificates and keys, builds backend pools. Health state
    /// of backends that `previous` also had (same name and address) carries over.
    pub fn build(
        config: Config,
        shared: Arc<Shared>,
        previous: Option<&Generation>,
    ) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();
        let mut certs = Vec::new();
        for (i, (cert, key)) in config.certificates.iter().enumerate() {
            match rampart_tls::load_certified_key(cert, key) {
                Ok(c) => certs.push(c),
                Err(e) => errors.push(err(
                    &config,
                    format!("tls.certificates[{i}]"),
                    e.to_string(),
                )),
            }
        }
        let client_tls = match &config.backend_tls {
            Some(t) if config.backends.iter().any(|b| b.tls) => match rampart_tls::client_config(t)
            {
                Ok(c) => Some(Arc::new(c)),
                Err(e) => {
                    errors.push(err(&config, "backend_tls".into(), e.to_string()));
                    None
                }
            },
            _ => None,
        };
        let metrics = &shared.metrics;
        let mut backends = Vec::new();
        for (i, b) in config.backends.iter().enumerate() {
            let state = previous
                .and_then(|p| {
                    p.balancer
                        .backends
                        .iter()
                        .find(|o| o.cfg.name == b.name && o.cfg.address == b.address)
                })
                .map_or_else(
                    || Arc::new(BackendState::default()),
                    |o| Arc::clone(&o.state),
                );
            match Backend::new(
                b.clone(),
                client_tls.as_ref(),
                config.limits.backend_connect_timeout,
                config.health.clone(),
                state,
                Arc::clone(metrics),
            ) {
                Ok(x) => backends.push(Arc::new(x)),
                Err(e) => errors.push(err(&config, format!("backends[{i}].tls_server_name"), e)),
            }
        }
        let waf = match crate::waf::Waf::build(&config.waf, &config.path, Arc::clone(metrics)) {
            Ok(w) => w,
            Err(e) => {
                errors.push(e);
                None
            }
        };
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let site = Arc::new(rampart_tls::SiteCerts::new(certs));
        let server = rampart_tls::server_config(Arc::clone(&site), &[b"h2", b"http/1.1"])
            .map_err(|e| ConfigErrors(vec![err(&config, "tls".into(), e.to_string())]))?;
        let none_counters = STATUS_CLASSES.map(|c| {
            metrics
                .requests
                .get_or_create(&RequestLabels {
                    code_class: c.to_owned(),
                    backend: "none".to_owned(),
                })
                .clone()
        });
        let hsts = config
            .hsts
            .header
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok());
        let gen = Self {
            tls: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            balancer: Balancer::new(backends, config.policy),
            limiter: config
                .limits
                .rate_limit
                .map(|(r, b)| RateLimiter::new(r, b)),
            config,
            shared,
            health_tasks: Mutex::new(Vec::new()),
            none_counters,
            hsts,
            waf,
            site,
        };
        gen.publish_certs();
        Ok(gen)
    }

    /// Starts the active health checks of this generation.
    pub fn start_health(self: &Arc<Self>) {
        if !self.config.health.enabled {
            return;
        }
        let mut tasks = self.health_tasks.lock().unwrap_or_else(|p| p.into_inner());
        for b in &self.balancer.backends {
            let b = Arc::clone(b);
            let interval = self.config.health.interval;
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let ok = b.check().await;
                    b.record_check(ok);
                }
            });
            tasks.push(task.abort_handle());
        }
    }

    /// Stops this generation's health checks (it has been replaced).
    pub fn stop_health(&self) {
        for t in self
            .health_tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }

    /// A response the load balancer makes itself, counted and logged.
    fn local(
        &self,
        conn: &ConnInfo,
        meta: &RequestMeta,
        status: StatusCode,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Response<RespBody> {
        let body = match status {
            StatusCode::PERMANENT_REDIRECT
            | StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::TEMPORARY_REDIRECT => String::new(),
            s => format!(
                "{} {}\nrequest id: {}\n",
                s.as_u16(),
                s.canonical_reason().unwrap_or(""),
                meta.id()
            ),
        };
        let len = body.len() as u64;
        let mut resp = Response::new(full(Bytes::from(body)));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (k, v) in extra {
            h.insert(k.clone(), v.clone());
        }
        h.insert(X_REQUEST_ID, meta.request_id.clone());
        self.finish_headers(h, conn);
        self.none_counters[status_class_index(status.as_u16())].inc();
        self.shared.record(meta, status.as_u16(), len, None);
        resp
    }

    /// An HTTP-01 challenge on plain HTTP: the key authorization of an order in
    /// progress here or, asked of the `[acme] peers` (not for a request that is itself
    /// relayed), at the other load balancer of a pair; else 404.
    async fn acme_answer(
        &self,
        conn: &ConnInfo,
        meta: &RequestMeta,
        token: &str,
        relayed: bool,
    ) -> Response<RespBody> {
        let mut answer = self.shared.acme.answer(token);
        if answer.is_none() && !relayed {
            if let Some(acme) = &self.config.acme {
                answer = crate::acme::ask_peers(&acme.peers, token).await;
            }
        }
        let Some(answer) = answer else {
            return self.local(conn, meta, StatusCode::NOT_FOUND, &[]);
        };
        let len = answer.len() as u64;
        let mut resp = Response::new(full(Bytes::from(answer)));
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        self.finish_headers(h, conn);
        self.none_counters[status_class_index(200)].inc();
        self.shared.record(meta, 200, len, None);
        resp
    }

    fn finish_headers(&self, h: &mut HeaderMap, conn: &ConnInfo) {
        if conn.https {
            if let Some(v) = &self.hsts {
                h.insert(header::STRICT_TRANSPORT_SECURITY, v.clone());
            }
        }
        if !h.contains_key(header::DATE) {
            if let Ok(v) =
                HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now()))
            {
                h.insert(header::DATE, v);
            }
        }
    }

    /// The answer to a request the HTTP/1 reader refused.
    pub fn reject(&self, conn: &ConnInfo, r: Reject) -> Response<RespBody> {
        self.shared
            .metrics
            .rejected_requests
            .get_or_create(&self.shared.metrics.reason(r.reason()))
            .inc();
        let meta = RequestMeta::new(conn, Method::GET, Uri::default(), None);
        tracing::debug!(client = %conn.client, reason = r.reason(), "request refused");
        self.local(
            conn,
            &meta,
            r.status(),
            &[(header::CONNECTION, HeaderValue::from_static("close"))],
        )
    }

    /// Serves one complete request.
    pub async fn serve(&self, req: Request<Bytes>, conn: &ConnInfo) -> Response<RespBody> {
        let host = request_host(&req);
        let mut meta =
            RequestMeta::new(conn, req.method().clone(), req.uri().clone(), host.clone());
        if let Some(rl) = &self.limiter {
            if !rl.allow(conn.client.ip()) {
                self.shared
                    .metrics
                    .rejected_requests
                    .get_or_create(&self.shared.metrics.reason("rate_limited"))
                    .inc();
                return self.local(
                    conn,
                    &meta,
                    StatusCode::TOO_MANY_REQUESTS,
                    &[(header::RETRY_AFTER, HeaderValue::from_static("1"))],
                );
            }
        }
        if !conn.https {
            if let Some(token) = req.uri().path().strip_prefix(crate::acme::CHALLENGE_PREFIX) {
                let relayed = req.headers().contains_key(crate::acme::RELAY_HEADER);
                return self.acme_answer(conn, &meta, token, relayed).await;
            }
            return self.redirect(
                conn,
                &meta,
                req.uri(),
                host.as_ref().and_then(|h| h.to_str().ok()),
            );
        }
        let Some(host) = host else {
            return self.local(conn, &meta, StatusCode::BAD_REQUEST, &[]);
        };
        if let Some(waf) = &self.waf {
            let name = host.to_str().ok().and_then(host_without_port).unwrap_or("");
            let verdict = waf.inspect(&req, name, conn.client, meta.id());
            meta.waf = verdict.event;
            if let Some(status) = verdict.status {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
                return self.local(conn, &meta, status, &[]);
            }
        }
        self.forward(req, conn, meta, &host).await
    }

    fn redirect(
        &self,
        conn: &ConnInfo,
        meta: &RequestMeta,
        uri: &Uri,
        host: Option<&str>,
    ) -> Response<RespBody> {
        let r = &self.config.redirect;
        let Some(host) = host.and_then(host_without_port) else {
            return self.local(conn, meta, StatusCode::BAD_REQUEST, &[]);
        };
        if !r.enabled {
            return self.local(conn, meta, StatusCode::FORBIDDEN, &[]);
        }
        let https_port = r
            .https_port
            .unwrap_or_else(|| self.shared.https_port.load(Ordering::Relaxed));
        let port = if https_port == 443 {
            String::new()
        } else {
            format!(":{https_port}")
        };
        let pq = uri.path_and_query().map_or("/", |p| p.as_str());
        let location = format!("https://{host}{port}{pq}");
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::PERMANENT_REDIRECT);
        match HeaderValue::from_str(&location) {
            Ok(v) => self.local(conn, meta, status, &[(header::LOCATION, v)]),
            Err(_) => self.local(conn, meta, StatusCode::BAD_REQUEST, &[]),
        }
    }

    async fn forward(
        &self,
        req: Request<Bytes>,
        conn: &ConnInfo,
        meta: RequestMeta,
        host: &HeaderValue,
    ) -> Response<RespBody> {
        let (parts, body) = req.into_parts();
        let pq = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let idempotent = crate::upstream::is_idempotent(&parts.method);
        let mut headers = upstream_headers(parts.headers, conn, host);
        headers.insert(X_REQUEST_ID, meta.request_id.clone());
        let metrics = &self.shared.metrics;
        let mut tried: Option<Arc<Backend>> = None;
        loop {
            let Some(backend) = self.balancer.pick(tried.as_ref()) else {
                return self.local(
                    conn,
                    &meta,
                    StatusCode::SERVICE_UNAVAILABLE,
                    &[(header::RETRY_AFTER, HeaderValue::from_static("1"))],
                );
            };
            let active = ActiveGuard::new(&backend);
            let sent = crate::upstream::send(
                &backend.pool,
                || backend.connect(),
                &parts.method,
                pq.as_str(),
                &headers,
                &body,
                self.config.limits.backend_response_timeout,
            )
            .await;
            let (failure, connect_failed) = match sent {
                Ok(resp) => return self.respond(resp, conn, meta, backend, active),
                Err(e) => {
                    let (kind, connect) = match e {
                        UpError::Connect(_) => ("connect", true),
                        UpError::Timeout => ("timeout", false),
                        UpError::NoResponse(_) | UpError::BadResponse(_) => ("request", false),
                    };
                    tracing::warn!(backend = %backend.cfg.name, error = %e, "backend request failed");
                    (kind, connect)
                }
            };
            drop(active);
            backend.eject(failure);
            let retry = self.config.retry && tried.is_none() && (connect_failed || idempotent);
            if retry {
                metrics
                    .retries
                    .get_or_create(&metrics.backend(&backend.cfg.name))
                    .inc();
                tried = Some(backend);
                continue;
            }
            let status = if failure == "timeout" {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            };
            return self.local(conn, &meta, status, &[]);
        }
    }

    fn respond(
        &self,
        resp: Response<UpBody>,
        conn: &ConnInfo,
        meta: RequestMeta,
        backend: Arc<Backend>,
        active: ActiveGuard,
    ) -> Response<RespBody> {
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        self.finish_headers(&mut parts.headers, conn);
        if let Some(name) = &self.config.served_by_header {
            if let Some(v) = &backend.name_value {
                parts.headers.insert(name.clone(), v.clone());
            }
        }
        parts.headers.insert(X_REQUEST_ID, meta.request_id.clone());
        let status = parts.status.as_u16();
        backend.requests[status_class_index(status)].inc();
        let metered = Metered {
            inner: body,
            bytes: 0,
            done: Some(Done {
                shared: Arc::clone(&self.shared),
                meta,
                status,
                backend,
                _active: active,
            }),
        };
        Response::from_parts(parts, metered.map_err(|e| Box::new(e) as BoxError).boxed())
    }
}

/// Marks a request in flight on a backend, for least-connections and metrics.
pub struct ActiveGuard {
    backend: Arc<Backend>,
}

impl ActiveGuard {
    fn new(backend: &Arc<Backend>) -> Self {
        backend.active.fetch_add(1, Ordering::Relaxed);
        backend.active_gauge.inc();
        Self {
            backend: Arc::clone(backend),
        }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.backend.active.fetch_sub(1, Ordering::Relaxed);
        self.backend.active_gauge.dec();
    }
}

/// What the access log and the latency histogram need about one request.
struct RequestMeta {
    start: Instant,
    /// 16 lower-case hex digits, made once: the access log, the WAF's audit record and
    /// the `X-Request-Id` headers both ways share it.
    request_id: HeaderValue,
    waf: Option<rampart_telemetry::access_log::WafEvent>,
    method: Method,
    host: HeaderValue,
    uri: Uri,
    client: SocketAddr,
    tls: Option<&'static str>,
    proto: &'static str,
}

impl RequestMeta {
    fn new(conn: &ConnInfo, method: Method, uri: Uri, host: Option<HeaderValue>) -> Self {
        Self {
            start: Instant::now(),
            request_id: request_id(),
            waf: None,
            method,
            host: host.unwrap_or_else(|| HeaderValue::from_static("")),
            uri,
            client: conn.client,
            tls: conn.tls_version,
            proto: conn.proto,
        }
    }

    /// The request id as text (always ASCII hex).
    fn id(&self) -> &str {
        self.request_id.to_str().unwrap_or("")
    }

    /// The path as logged: no query string (it often carries tokens), at most 2 KiB.
    fn path(&self) -> &str {
        let p = self.uri.path();
        match p.char_indices().nth(2048) {
            Some((i, _)) => &p[..i],
            None => p,
        }
    }
}

struct Done {
    shared: Arc<Shared>,
    meta: RequestMeta,
    status: u16,
    backend: Arc<Backend>,
    _active: ActiveGuard,
}

/// A backend response body that logs and measures the request when it ends (or is
/// dropped because the client went away).
struct Metered {
    inner: UpBody,
    bytes: u64,
    done: Option<Done>,
}

impl Metered {
    fn finish(&mut self) {
        let Some(d) = self.done.take() else { return };
        d.shared
            .record(&d.meta, d.status, self.bytes, Some(&d.backend.cfg.name));
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Body for Metered {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    self.bytes += d.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.finish();
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.finish(),
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The header that carries the request id upstream and back to the client.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A new request id: 16 hex digits, unique in this process (a counter through a
/// bijective mix, from a per-process random start) and unlikely to repeat across
/// processes.
fn request_id() -> HeaderValue {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    });
    // splitmix64's finaliser: a bijection, so distinct counters give distinct ids.
    let mut z = seed.wrapping_add(
        NEXT.fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let mut hex = [0u8; 16];
    for (i, d) in hex.iter_mut().enumerate() {
        *d = b"0123456789abcdef"[((z >> (60 - 4 * i)) & 0xf) as usize];
    }
    // Hex digits are always a valid header value.
    HeaderValue::from_bytes(&hex).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

pub fn full(b: Bytes) -> RespBody {
    Full::new(b).map_err(|never| match never {}).boxed()
}

/// The request's host: the URI authority (HTTP/2, absolute-form) or the Host header.
fn request_host<B>(req: &Request<B>) -> Option<HeaderValue> {
    if let Some(a) = req.uri().authority() {
        return HeaderValue::from_str(a.as_str()).ok();
    }
    req.headers().get(header::HOST).cloned()
}

/// `host[:port]` → `host`, when `host` is a plausible DNS name or IP literal.
fn host_without_port(h: &str) -> Option<&str> {
    let host = if h.starts_with('[') {
        &h[..=h.find(']')?]
    } else {
        h.rsplit_once(':').map_or(h, |(a, _)| a)
    };
    let ok = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:_".contains(&b));
    ok.then_some(host)
}

/// Removes hop-by-hop headers, including any that `Connection` names. One scan of the
/// names finds them; most messages have none, so nothing is removed or rehashed.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let hop = |n: &HeaderName| {
        n == header::CONNECTION
            || n == header::TE
            || n == header::TRAILER
            || n == header::TRANSFER_ENCODING
            || n == header::UPGRADE
            || n == header::PROXY_AUTHENTICATE
            || n.as_str() == "keep-alive"
            || n.as_str() == "proxy-connection"
    };
    if !h.keys().any(hop) {
        return;
    }
    let mut remove: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    remove.extend(h.keys().filter(|n| hop(n)).cloned());
    for n in remove {
        h.remove(n);
    }
}

/// The headers sent upstream: the client's, minus hop-by-hop ones, with the forwarding
/// headers replaced (never appended to: a client cannot forge its address).
fn upstream_headers(mut h: HeaderMap, conn: &ConnInfo, host: &HeaderValue) -> HeaderMap {
    strip_hop_by_hop(&mut h);
    // Client-sent forwarding headers go: the ones set below replace them, and a
    // forwarded host that is not a plain host name is dropped, not passed on.
    if h.keys()
        .any(|n| n.as_str().starts_with("x-forwarded-") || n.as_str() == "forwarded")
    {
        for n in [
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "forwarded",
        ] {
            h.remove(n);
        }
    }
    let proto = if conn.https { "https" } else { "http" };
    let host_ok = host.to_str().ok().and_then(host_without_port).is_some();
    h.insert(
        HeaderName::from_static("x-forwarded-for"),
        conn.client_ip.clone(),
    );
    h.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(proto),
    );
    let forwarded = if host_ok {
        h.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
        conn.forwarded(host, proto)
    } else {
        HeaderValue::from_str(&format!("for={};proto={proto}", conn.forwarded_for)).ok()
    };
    if let Some(v) = forwarded {
        h.insert(HeaderName::from_static("forwarded"), v);
    }
    if !h.contains_key(header::HOST) {
        h.insert(header::HOST, host.clone());
    }
    h
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn conn(ip: &str) -> ConnInfo {
        ConnInfo::new(
            SocketAddr::new(ip.parse().unwrap(), 5000),
            true,
            Instant::now(),
        )
    }

    #[test]
    fn forwarding_headers_replace_what_the_client_sent() {
        let mut client = HeaderMap::new();
        client.insert("host", HeaderValue::from_static("www.foobar.com"));
        client.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        client.insert("forwarded", HeaderValue::from_static("for=6.6.6.6"));
        client.insert("connection", HeaderValue::from_static("x-secret"));
        client.insert("x-secret", HeaderValue::from_static("1"));
        let host = HeaderValue::from_static("www.foobar.com");
        let h = upstream_headers(client.clone(), &conn("192.0.2.7"), &host);
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "www.foobar.com");
        assert_eq!(
            h["forwarded"],
            "for=192.0.2.7;proto=https;host=\"www.foobar.com\""
        );
        assert!(!h.contains_key("x-secret") && !h.contains_key("connection"));
        let h6 = upstream_headers(client, &conn("2001:db8::1"), &host);
        assert_eq!(
            h6["forwarded"],
            "for=\"[2001:db8::1]\";proto=https;host=\"www.foobar.com\""
        );
    }

    #[test]
    fn request_ids_are_sixteen_hex_digits_and_do_not_repeat() {
        let ids: Vec<HeaderValue> = (0..1000).map(|_| request_id()).collect();
        for id in &ids {
            let s = id.to_str().unwrap();
            assert_eq!(s.len(), 16, "{s}");
            assert!(
                s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{s}"
            );
        }
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        // The leading digit comes from the top bits: the digits are not all shifted out.
        assert!(ids.iter().any(|id| id.as_bytes()[0] != b'0'));
    }

    #[test]
    fn hosts() {
        assert_eq!(
            host_without_port("www.foobar.com:8080"),
            Some("www.foobar.com")
        );
        assert_eq!(host_without_port("www.foobar.com"), Some("www.foobar.com"));
        assert_eq!(host_without_port("[::1]:443"), Some("[::1]"));
        assert_eq!(host_without_port("evil.com/\"x"), None);
        assert_eq!(host_without_port(""), None);
    }
}

//! The web server: listeners behind [`rampart_telemetry::accept::Gate`] (the
//! connection cap and allow-list), optional (mutual) TLS, HTTP/1.1 serving with hyper,
//! routing, the common response headers, metrics, the access log, `/healthz`/`/readyz`,
//! the internal `/metrics` listener and the drain on shutdown. [`Web`] is a
//! [`rampart_telemetry::service::Service`].
//!
//! The app listener speaks HTTP/1.1 only (ALPN `http/1.1`): the load balancer talks
//! HTTP/1.1 to its backends, and hyper's HTTP/1 server enforces the header deadline and
//! size limit that its HTTP/2 server lacks. Idle keep-alive connections are closed after
//! `header_timeout` too (hyper's header timer runs while it waits for the next request).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use rampart_telemetry::accept::{Counters, Fixed, Gate, Slots};
use rampart_telemetry::access_log::{self, AccessLog, Entry};
use tokio::net::{TcpListener, TcpStream};

use crate::app::{App, Reply, GTID_COOKIE, GTID_HEADER};
use crate::config::Config;
use crate::db::{Db, GtidSet};
use crate::idempotency::{self, Idem};
use crate::leader::LeaderStore;
use crate::metrics::{code_class, method_label, Metrics, ReasonLabels, RouteLabels};
use crate::static_files::StaticFiles;

/// Why the server could not be built from a valid config.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("tls: {0}")]
    Tls(#[from] rampart_tls::TlsError),
    #[error("site: {0}")]
    Site(std::io::Error),
    #[error("database: {0}")]
    Database(std::io::Error),
    #[error("access log: {0}")]
    AccessLog(std::io::Error),
    #[error("etcd: {0}")]
    Etcd(String),
}

/// The bound listeners, bound before the server is built so a test can use port 0.
/// Connections the admin listener serves at once; more are closed at accept.
const ADMIN_MAX_CONNECTIONS: usize = 64;

#[derive(Debug)]
pub struct Listeners {
    pub app: TcpListener,
    pub admin: Option<TcpListener>,
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    rampart_telemetry::listen::tcp(addr, 1024)
}

impl Listeners {
    /// Binds the addresses of `config`. Must be called inside a tokio runtime.
    pub fn bind(config: &Config) -> std::io::Result<Self> {
        Ok(Self {
            app: bind(config.app)?,
            admin: config.admin.map(bind).transpose()?,
        })
    }
}

const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
];

/// A running (or ready to run) web server.
pub struct Web {
    config: Config,
    metrics: Arc<Metrics>,
    access_log: AccessLog,
    tls: Option<tokio_rustls::TlsAcceptor>,
    statics: Option<StaticFiles>,
    db: Option<Arc<Db>>,
    /// Where the leader key lives, with `[database.etcd]`.
    leader_store: Option<(Arc<dyn LeaderStore>, String)>,
    app: Option<App>,
    schema_ready: AtomicBool,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web")
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

/// Per-connection facts for the access log.
struct ConnInfo {
    peer: SocketAddr,
    tls: Option<&'static str>,
}

fn tls_version(v: Option<rustls::ProtocolVersion>) -> Option<&'static str> {
    match v {
        Some(rustls::ProtocolVersion::TLSv1_3) => Some("TLSv1.3"),
        Some(rustls::ProtocolVersion::TLSv1_2) => Some("TLSv1.2"),
        Some(_) => Some("other"),
        None => None,
    }
}

impl Web {
    /// Builds the server: TLS, the site (installing the default one if asked), the
    /// database pools (lazily connected) and the access log. Must be called inside a
    /// tokio runtime (the access log writer is a task).
    pub fn new(config: Config) -> Result<Arc<Web>, WebError> {
        let store = match config.database.as_ref().and_then(|d| d.etcd.as_ref()) {
            Some(etcd) => Some(crate::etcd::store(etcd).map_err(WebError::Etcd)?),
            None => None,
        };
        Self::build(config, store)
    }

    /// [`Web::new`] with the leader key read from `store` instead of the etcd cluster of
    /// `[database.etcd]` (whose `leader_key` is still the key followed): the in-process
    /// tests drive leadership through a `leader::MemStore`.
    pub fn with_leader_store(
        config: Config,
        store: Arc<dyn LeaderStore>,
    ) -> Result<Arc<Web>, WebError> {
        Self::build(config, Some(store))
    }

    fn build(config: Config, store: Option<Arc<dyn LeaderStore>>) -> Result<Arc<Web>, WebError> {
        let metrics = Arc::new(Metrics::new());
        let tls = match &config.tls {
            None => None,
            Some(t) => {
                let cert = rampart_tls::load_certified_key(&t.cert, &t.key)?;
                let certs = Arc::new(rampart_tls::SiteCerts::new(vec![cert]));
                let cfg = match &t.client_ca {
                    Some(ca) => rampart_tls::server_config_mtls(certs, &[b"http/1.1"], ca)?,
                    None => rampart_tls::server_config(certs, &[b"http/1.1"])?,
                };
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
            }
        };
        let statics = match &config.site_root {
            None => None,
            Some(root) => {
                if config.install_default_site {
                    crate::site::install_default(root).map_err(WebError::Site)?;
                }
                Some(StaticFiles::new(root, &config.cache_control).map_err(WebError::Site)?)
            }
        };
        let db = match &config.database {
            None => None,
            Some(d) => Some(Arc::new(
                Db::new(d, Arc::clone(&metrics)).map_err(WebError::Database)?,
            )),
        };
        let app = db.as_ref().map(|db| App {
            db: Arc::clone(db),
            metrics: Arc::clone(&metrics),
            server_name: config.name.clone(),
        });
        let leader_store = config
            .database
            .as_ref()
            .and_then(|d| d.etcd.as_ref())
            .zip(store)
            .map(|(etcd, store)| (store, etcd.leader_key.clone()));
        let access_log = AccessLog::start(&config.access_log, metrics.access_log_dropped.clone())
            .map_err(WebError::AccessLog)?;
        Ok(Arc::new(Web {
            config,
            metrics,
            access_log,
            tls,
            statics,
            db,
            leader_store,
            app,
            schema_ready: AtomicBool::new(false),
        }))
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Ready to take traffic: the schema is in place and the primary answers. Without a
    /// database, always.
    pub fn ready(&self) -> bool {
        match &self.db {
            None => true,
            Some(db) => self.schema_ready.load(Ordering::Relaxed) && db.primary_up(),
        }
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets open requests finish
    /// for up to `limits.shutdown_grace`, and closes the database pools. `ready` is called
    /// once the listeners serve.
    pub async fn serve(
        self: &Arc<Self>,
        listeners: Listeners,
        shutdown: impl Future<Output = ()>,
        ready: impl FnOnce(),
    ) -> std::io::Result<()> {
        let app_addr = listeners.app.local_addr()?;
        let admin_addr = listeners
            .admin
            .as_ref()
            .map(|l| l.local_addr())
            .transpose()?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let graceful = Arc::new(GracefulShutdown::new());
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(db) = &self.db {
            if let Some((store, key)) = &self.leader_store {
                let follower = Arc::clone(db);
                let metrics = Arc::clone(&self.metrics);
                tokio::spawn(crate::leader::follow(
                    Arc::clone(store),
                    key.clone(),
                    move |leader| follower.set_leader(leader),
                    move || {
                        metrics.db_leader_watch_restarts.inc();
                    },
                    stop_rx.clone(),
                ));
            }
            tokio::spawn(Arc::clone(db).run_checks(stop_rx.clone()));
            tokio::spawn(idempotency::run_pruning(
                Arc::clone(db),
                Arc::clone(&self.metrics),
                stop_rx.clone(),
            ));
            tasks.spawn(Arc::clone(self).migrate_until_done(stop_rx.clone()));
        }
        tasks.spawn(Arc::clone(self).accept_loop(listeners.app, Arc::clone(&graceful)));
        if let Some(l) = listeners.admin {
            tasks.spawn(Arc::clone(self).admin_loop(l, Arc::clone(&graceful)));
        }
        tracing::info!(
            name = %self.config.name,
            app = %app_addr,
            admin = ?admin_addr,
            tls = self.tls.is_some(),
            "web server ready app={app_addr} admin={}",
            admin_addr.map_or("off".to_owned(), |a| a.to_string())
        );
        ready();
        shutdown.await;
        tracing::info!("shutting down: draining connections");
        stop_tx.send_replace(true);
        tasks.abort_all();
        // Once the accept loops are gone, only connection tasks remain, each holding a
        // watcher rather than the `GracefulShutdown` itself.
        while tasks.join_next().await.is_some() {}
        if let Ok(graceful) = Arc::try_unwrap(graceful) {
            if tokio::time::timeout(self.config.limits.shutdown_grace, graceful.shutdown())
                .await
                .is_err()
            {
                tracing::warn!("drain deadline passed; closing the rest");
            }
        }
        if let Some(db) = &self.db {
            db.close().await;
        }
        Ok(())
    }

    /// Runs the schema migrations, retrying with backoff while the primary is
    /// unreachable, so a web server started before its database still comes ready.
    async fn migrate_until_done(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let Some(db) = &self.db else { return };
        let mut wait = Duration::from_millis(200);
        loop {
            match db.migrate().await {
                Ok(n) => {
                    tracing::info!(applied = n, "schema up to date");
                    self.schema_ready.store(true, Ordering::Relaxed);
                    return;
                }
                Err(e) => tracing::warn!(error = %e, retry_in = ?wait, "schema migration failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    /// `connections_rejected_total{reason}` as the gate's counters.
    fn gate_counters(&self, not_allowed: &'static str, over_cap: &'static str) -> Counters {
        let rejected = |reason| {
            self.metrics
                .connections_rejected
                .get_or_create(&ReasonLabels { reason })
                .clone()
        };
        Counters {
            not_allowed: rejected(not_allowed),
            over_cap: rejected(over_cap),
            ..Counters::default()
        }
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener, graceful: Arc<GracefulShutdown>) {
        let rules = Fixed {
            allow_from: self.config.allow_from.clone(),
            max_connections: self.config.limits.max_connections,
        };
        let counters = self.gate_counters("not_allowed", "limit");
        let mut gate = Gate::new(listener, "app", Slots::new(), counters);
        loop {
            let conn = gate.accept(&rules).await;
            let _ = conn.stream.set_nodelay(true);
            let web = Arc::clone(&self);
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                web.metrics.connections_open.inc();
                web.connection(conn.stream, conn.peer, watcher).await;
                web.metrics.connections_open.dec();
                drop(conn.permit);
            });
        }
    }

    async fn connection(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let limits = &self.config.limits;
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192));
        match &self.tls {
            None => {
                let info = ConnInfo { peer, tls: None };
                self.serve_http(stream, info, &http, watcher).await;
            }
            Some(acceptor) => {
                let handshake =
                    tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await;
                let Ok(Ok(tls)) = handshake else {
                    self.metrics.rejected("tls");
                    return;
                };
                let info = ConnInfo {
                    peer,
                    tls: tls_version(tls.get_ref().1.protocol_version()),
                };
                self.serve_http(tls, info, &http, watcher).await;
            }
        }
    }

    /// Serves HTTP/1.1 on one (plain or TLS) connection until it ends or the drain.
    async fn serve_http<I>(
        self: &Arc<Self>,
        io: I,
        info: ConnInfo,
        http: &hyper::server::conn::http1::Builder,
        watcher: hyper_util::server::graceful::Watcher,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let info = Arc::new(info);
        let web = Arc::clone(self);
        let svc = service_fn(move |req| {
            let web = Arc::clone(&web);
            let info = Arc::clone(&info);
            async move { Ok::<_, Infallible>(web.handle(req, &info).await) }
        });
        let _ = watcher
            .watch(http.serve_connection(TokioIo::new(io), svc))
            .await;
    }

    async fn handle(&self, req: Request<Incoming>, info: &ConnInfo) -> Response<Full<Bytes>> {
        let start = Instant::now();
        let (parts, body) = req.into_parts();
        let (route, reply) = self.route(&parts, body).await;
        let mut resp = match reply {
            Routed::Reply(r) => self.finish(r),
            Routed::Response(r) => r,
        };
        let h = resp.headers_mut();
        for (k, v) in SECURITY_HEADERS {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let status = resp.status().as_u16();
        self.metrics
            .requests
            .get_or_create(&crate::metrics::RequestLabels {
                route,
                method: method_label(&parts.method),
                code: code_class(status),
            })
            .inc();
        let elapsed = start.elapsed();
        self.metrics
            .duration
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
        if self.access_log.enabled() {
            let bytes = resp
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let db = resp
                .headers()
                .get("x-db-role")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            self.access_log.log(&Entry {
                time: access_log::now_rfc3339(),
                client: info.peer.ip().to_string(),
                method: parts.method.as_str(),
                host: parts
                    .headers
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
                path: parts.uri.path(),
                status,
                bytes,
                duration_ms: (elapsed.as_secs_f64() * 1e6).round() / 1e3,
                backend: None,
                tls: info.tls,
                proto: "HTTP/1.1",
                db: db.as_deref(),
                request_id: parts
                    .headers
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .filter(|v| v.len() <= 64),
                waf: None,
            });
            if !self.role_header() {
                resp.headers_mut().remove("x-db-role");
            }
        }
        resp
    }

    fn role_header(&self) -> bool {
        self.db.as_ref().is_some_and(|d| d.config().role_header)
    }

    /// Turns an application reply into a response; the database role goes into
    /// `X-Db-Role` (removed again after logging unless `role_header` is on), and with
    /// `role_header` the server's host name into `X-Db-Server`.
    fn finish(&self, r: Reply) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(r.body));
        *resp.status_mut() = r.status;
        let h = resp.headers_mut();
        *h = r.headers;
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(r.content_type),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(role) = r.db_role {
            if self.role_header() || self.access_log.enabled() {
                h.insert("x-db-role", HeaderValue::from_static(role.as_str()));
            }
        }
        // Which server served the read, with the role header (debugging, and the tests
        // that check reads spread over the replicas).
        if let Some(server) = r.db_server.filter(|_| self.role_header()) {
            if let Ok(v) = HeaderValue::from_str(&server) {
                h.insert("x-db-server", v);
            }
        }
        resp
    }

    async fn route(&self, parts: &http::request::Parts, body: Incoming) -> (&'static str, Routed) {
        let path = parts.uri.path();
        let method = &parts.method;
        let get = method == Method::GET || method == Method::HEAD;
        match path {
            "/healthz" => return ("healthz", Routed::Reply(text(StatusCode::OK, "ok\n"))),
            "/readyz" => {
                let r = if self.ready() {
                    text(StatusCode::OK, "ready\n")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                };
                return ("readyz", Routed::Reply(r));
            }
            _ => {}
        }
        let Some(app) = &self.app else {
            return ("static", self.static_file(parts).await);
        };
        if path != "/" && !path.starts_with("/api/") {
            return ("static", self.static_file(parts).await);
        }
        let after = match read_gtid(&parts.headers) {
            Ok(g) => g,
            Err(r) => return ("api", Routed::Reply(r)),
        };
        let after = after.as_ref();
        if path == "/" {
            if !get {
                return ("home", Routed::Reply(not_allowed("GET, HEAD")));
            }
            return ("home", Routed::Reply(app.home(after).await));
        }
        let Some(rest) = path.strip_prefix("/api/") else {
            return ("static", self.static_file(parts).await);
        };
        let segs: Vec<&str> = rest.split('/').collect();
        let route = match segs.first() {
            Some(&"users") => "users",
            Some(&"messages") => "messages",
            _ => "api",
        };
        let reply = match (method, segs.as_slice()) {
            (&Method::POST, ["users"]) => match self.post_body(parts, body).await {
                Ok((b, idem)) => app.create_user(&b, idem).await,
                Err(r) => r,
            },
            (&Method::POST, ["messages"]) => match self.post_body(parts, body).await {
                Ok((b, idem)) => app.create_message(&b, idem).await,
                Err(r) => r,
            },
            (m, ["users", id]) if m == Method::GET || m == Method::HEAD => {
                app.get_user(id, after).await
            }
            (m, ["messages", id]) if m == Method::GET || m == Method::HEAD => {
                app.get_message(id, after).await
            }
            (m, ["messages"]) if m == Method::GET || m == Method::HEAD => {
                app.list_messages(parts.uri.query(), after).await
            }
            (_, ["users"] | ["messages"]) => not_allowed("GET, HEAD, POST"),
            (_, ["users", _] | ["messages", _]) => not_allowed("GET, HEAD"),
            _ => Reply::error(StatusCode::NOT_FOUND, "not_found", "", "no such endpoint"),
        };
        (route, Routed::Reply(reply))
    }

    async fn static_file(&self, parts: &http::request::Parts) -> Routed {
        match &self.statics {
            Some(s) => Routed::Response(
                s.serve(&parts.method, parts.uri.path(), &parts.headers)
                    .await,
            ),
            None => Routed::Reply(Reply::error(
                StatusCode::NOT_FOUND,
                "not_found",
                "",
                "no such page",
            )),
        }
    }

    /// A POST's JSON body and its `Idempotency-Key` (400 when malformed) with the
    /// request's hash.
    async fn post_body(
        &self,
        parts: &http::request::Parts,
        body: Incoming,
    ) -> Result<(Bytes, Option<Idem>), Reply> {
        let key = idempotency::parse_key(&parts.headers).map_err(|e| {
            Reply::error(
                StatusCode::BAD_REQUEST,
                "invalid_idempotency_key",
                idempotency::HEADER,
                &e.to_string(),
            )
        })?;
        let body = self.json_body(parts, body).await?;
        let idem = key.map(|key| Idem {
            hash: idempotency::request_hash(parts.method.as_str(), parts.uri.path(), &body),
            key,
        });
        Ok((body, idem))
    }

    /// Reads a JSON request body within the size limit and the header deadline.
    async fn json_body(
        &self,
        parts: &http::request::Parts,
        body: Incoming,
    ) -> Result<Bytes, Reply> {
        let ct = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            return Err(Reply::error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "",
                "send the body as application/json",
            ));
        }
        let max = self.config.limits.max_body_bytes;
        let too_large = || {
            let mut r = Reply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "",
                &format!("the body is larger than {max} bytes"),
            );
            r.headers
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        };
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err(too_large());
        }
        let read = Limited::new(body, max).collect();
        match tokio::time::timeout(self.config.limits.header_timeout, read).await {
            Ok(Ok(b)) => Ok(b.to_bytes()),
            Ok(Err(e))
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                Err(too_large())
            }
            Ok(Err(_)) => Err(Reply::error(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "",
                "the request body could not be read",
            )),
            Err(_) => {
                let mut r = Reply::error(
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    "",
                    "the request body was not received in time",
                );
                r.headers
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                Err(r)
            }
        }
    }

    /// The admin listener: its own allow-list, at most [`ADMIN_MAX_CONNECTIONS`] at
    /// once, and a header timeout.
    async fn admin_loop(self: Arc<Self>, listener: TcpListener, graceful: Arc<GracefulShutdown>) {
        let rules = Fixed {
            allow_from: self.config.admin_allow_from.clone(),
            max_connections: ADMIN_MAX_CONNECTIONS,
        };
        let counters = self.gate_counters("admin_not_allowed", "admin_max_connections");
        let mut gate = Gate::new(listener, "admin", Slots::new(), counters);
        loop {
            let conn = gate.accept(&rules).await;
            let stream = conn.stream;
            let web = Arc::clone(&self);
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let _slot = conn.permit;
                let svc = service_fn(move |req: Request<Incoming>| {
                    let web = Arc::clone(&web);
                    async move { Ok::<_, Infallible>(web.admin(req.uri().path())) }
                });
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10));
                let _ = watcher
                    .watch(http.serve_connection(TokioIo::new(stream), svc))
                    .await;
            });
        }
    }

    fn admin(&self, path: &str) -> Response<Full<Bytes>> {
        match path {
            "/metrics" => {
                if let Some(db) = &self.db {
                    for (role, size, idle) in db.pool_usage() {
                        self.metrics.pool(role, size, idle);
                    }
                }
                let mut r = Response::new(Full::new(Bytes::from(self.metrics.encode())));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(rampart_telemetry::metrics::TEXT_FORMAT),
                );
                r
            }
            "/healthz" => self.finish(text(StatusCode::OK, "ok\n")),
            "/readyz" if self.ready() => self.finish(text(StatusCode::OK, "ready\n")),
            "/readyz" => self.finish(text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")),
            _ => self.finish(text(StatusCode::NOT_FOUND, "not found\n")),
        }
    }
}

rampart_telemetry::service!(Web, error = WebError, build = Web::new);

enum Routed {
    Reply(Reply),
    Response(Response<Full<Bytes>>),
}

fn text(status: StatusCode, body: &'static str) -> Reply {
    Reply {
        status,
        content_type: "text/plain; charset=utf-8",
        body: Bytes::from_static(body.as_bytes()),
        headers: http::HeaderMap::new(),
        db_role: None,
        db_server: None,
    }
}

fn not_allowed(allow: &'static str) -> Reply {
    let mut r = Reply::error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "",
        &format!("allowed: {allow}"),
    );
    r.headers
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// The GTID a client presents for read-your-writes: the `X-Db-Gtid` header, else the
/// `rampart_gtid` cookie. A malformed header is a 400 (ignoring it would silently drop the
/// consistency the client asked for); a malformed cookie is ignored, since a browser
/// cannot easily be told to fix one.
#[allow(clippy::result_large_err)] // the error is the reply, built once on a cold path
fn read_gtid(headers: &http::HeaderMap) -> Result<Option<GtidSet>, Reply> {
    if let Some(v) = headers.get(GTID_HEADER) {
        return v
            .to_str()
            .ok()
            .and_then(GtidSet::parse)
            .map(Some)
            .ok_or_else(|| {
                Reply::error(
                    StatusCode::BAD_REQUEST,
                    "invalid_gtid",
                    GTID_HEADER,
                    "not a GTID position such as 0-1-42",
                )
            });
    }
    Ok(headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == GTID_COOKIE)
        .and_then(|(_, v)| GtidSet::parse(v)))
}

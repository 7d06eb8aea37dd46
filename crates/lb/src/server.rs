//! Listeners, connection handling and the process lifecycle: accept loops behind
//! [`rampart_telemetry::accept::Gate`] (the source allow-lists, the connection cap shared
//! by the HTTPS and HTTP listeners, back-off on accept errors), TLS handshakes with a
//! deadline, ALPN dispatch to HTTP/2 (hyper) or HTTP/1.1 (`h1`), the internal admin listener
//! (`/metrics`, `/-/reload`, `/-/healthy`), reloads that swap generations atomically, and
//! a graceful drain on shutdown. [`Lb`] is a [`rampart_telemetry::service::Service`].
//!
//! A connection from outside its listener's allow-list is closed right after accept,
//! before any TLS or HTTP work, and counted; the allow-lists and the cap belong to the
//! generation, which the gate reads after each accept, so a reload changes them for the
//! next connection.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::config::{Config, ConfigError, ConfigErrors, ConfigFile};
use crate::h1;
use crate::metrics::{ListenerLabels, Metrics, ResultLabels};
use crate::proxy::{ConnInfo, Generation, Reject, RespBody, Shared};
use rampart_telemetry::accept::{self, Counters, Gate, Slots};
use rampart_telemetry::access_log::AccessLog;
use rampart_telemetry::listen::AllowList;

/// The bound listeners a load balancer serves on.
#[derive(Debug)]
pub struct Listeners {
    pub https: TcpListener,
    pub http: Option<TcpListener>,
    /// `listen.http_own`: plain HTTP on the load balancer's own address.
    pub http_own: Option<TcpListener>,
    pub admin: Option<TcpListener>,
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    rampart_telemetry::listen::tcp(addr, 4096)
}

impl Listeners {
    /// Binds the addresses of `config` (the public ones with IP_FREEBIND when
    /// `listen.freebind`), or takes the public ones from the sockets systemd passed
    /// (`rampart-lb.socket` on a deployed host). Must be called inside a tokio runtime.
    pub fn bind(config: &Config) -> std::io::Result<Self> {
        let public = |addr: SocketAddr| {
            // Socket activation: the service manager keeps the public listeners open
            // across restarts, so none of them refuses a connection during one.
            if let Some(l) = rampart_telemetry::listen::passed(addr)? {
                tracing::info!(%addr, "listening on the socket systemd passed");
                return Ok(l);
            }
            if config.listen.freebind {
                rampart_telemetry::listen::tcp_freebind(addr, 4096)
            } else {
                bind(addr)
            }
        };
        let l = Self {
            https: public(config.listen.https)?,
            http: config.listen.http.map(public).transpose()?,
            // Its own address is always on the host: no freebind.
            http_own: config
                .listen
                .http_own
                .map(|addr| match rampart_telemetry::listen::passed(addr)? {
                    Some(l) => Ok(l),
                    None => bind(addr),
                })
                .transpose()?,
            admin: config.listen.admin.map(bind).transpose()?,
        };
        for addr in rampart_telemetry::listen::passed_unused() {
            tracing::warn!(%addr, "systemd passed a socket the config does not name; not used");
        }
        Ok(l)
    }
}

/// A running (or ready to run) load balancer.
pub struct Lb {
    current: ArcSwap<Generation>,
    shared: Arc<Shared>,
    /// Open client connections (HTTPS and HTTP): the cap and the drain count them.
    slots: Slots,
    shutdown: watch::Sender<bool>,
    reload_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Lb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lb").finish_non_exhaustive()
    }
}

impl Lb {
    /// Builds the first generation from `config`. Must be called inside a tokio runtime
    /// (the access log writer and health checks are tasks).
    pub fn new(config: Config) -> Result<Arc<Self>, ConfigErrors> {
        let metrics = Arc::new(Metrics::new());
        let access_log = AccessLog::start(&config.access_log, metrics.access_log_dropped.clone())
            .map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: config.path.clone(),
                key: "log.access_log".into(),
                message: e.to_string(),
            }])
        })?;
        let shared = Arc::new(Shared {
            metrics,
            access_log,
            https_port: config.listen.https.port().into(),
            acme: Arc::default(),
        });
        if let Some(acme) = &config.acme {
            crate::acme::placeholder(acme).map_err(|message| {
                ConfigErrors(vec![ConfigError {
                    file: config.path.clone(),
                    key: "acme".into(),
                    message,
                }])
            })?;
        }
        let gen = Arc::new(Generation::build(config, Arc::clone(&shared), None)?);
        gen.start_health();
        Ok(Arc::new(Self {
            current: ArcSwap::new(gen),
            shared,
            slots: Slots::new(),
            shutdown: watch::channel(false).0,
            reload_lock: tokio::sync::Mutex::new(()),
        }))
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The configuration in force.
    pub fn config(&self) -> Config {
        self.current.load().config.clone()
    }

    /// Re-reads the config file and certificates. New connections use the new generation;
    /// connections already open finish on the old one. A config that fails validation is
    /// refused and the old one stays.
    pub async fn reload(&self) -> Result<(), ConfigErrors> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let old = self.current.load_full();
        let result = Config::load(&old.config.path).and_then(|c| {
            let mut errors = Vec::new();
            let fixed = |key: &str, what: String| ConfigError {
                file: c.path.clone(),
                key: key.into(),
                message: format!("{what} cannot change on reload; restart to apply it"),
            };
            if c.listen.https != old.config.listen.https {
                errors.push(fixed("listen.https", "the listener address".into()));
            }
            if c.listen.http != old.config.listen.http {
                errors.push(fixed("listen.http", "the listener address".into()));
            }
            if c.listen.http_own != old.config.listen.http_own {
                errors.push(fixed("listen.http_own", "the listener address".into()));
            }
            if c.listen.admin != old.config.listen.admin {
                errors.push(fixed("listen.admin", "the listener address".into()));
            }
            if c.access_log != old.config.access_log {
                errors.push(fixed("log.access_log", "the access log target".into()));
            }
            if c.worker_threads != old.config.worker_threads {
                errors.push(fixed("runtime.worker_threads", "the thread count".into()));
            }
            if !errors.is_empty() {
                return Err(ConfigErrors(errors));
            }
            Generation::build(c, Arc::clone(&self.shared), Some(&old))
        });
        let label = |r: &str| ResultLabels { result: r.into() };
        match result {
            Ok(gen) => {
                let gen = Arc::new(gen);
                for b in &old.balancer.backends {
                    if !gen
                        .balancer
                        .backends
                        .iter()
                        .any(|n| n.cfg.name == b.cfg.name)
                    {
                        b.forget_metrics();
                    }
                }
                old.stop_health();
                gen.start_health();
                self.current.store(gen);
                self.shared
                    .metrics
                    .reloads
                    .get_or_create(&label("success"))
                    .inc();
                tracing::info!("configuration reloaded");
                Ok(())
            }
            Err(e) => {
                self.shared
                    .metrics
                    .reloads
                    .get_or_create(&label("failure"))
                    .inc();
                tracing::error!(errors = %e, "reload refused; the previous configuration stays");
                Err(e)
            }
        }
    }

    /// Serves until `shutdown` resolves, then stops accepting and drains open connections
    /// for up to `runtime.shutdown_grace`. Once every listener serves it logs `load
    /// balancer ready` with their addresses (`https=… http=… admin=…`, which the test
    /// harness reads) and calls `ready`.
    pub async fn serve(
        self: &Arc<Self>,
        listeners: Listeners,
        shutdown: impl Future<Output = ()>,
        ready: impl FnOnce(),
    ) -> std::io::Result<()> {
        let https = listeners.https.local_addr()?;
        let http = listeners
            .http
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?;
        let admin = listeners
            .admin
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?;
        self.shared
            .https_port
            .store(https.port(), Ordering::Relaxed);
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(Arc::clone(self).accept_loop(listeners.https, true));
        for l in [listeners.http, listeners.http_own].into_iter().flatten() {
            tasks.spawn(Arc::clone(self).accept_loop(l, false));
        }
        if let Some(l) = listeners.admin {
            tasks.spawn(Arc::clone(self).admin_loop(l));
        }
        // The ACME task of the first configuration (a reload does not restart it); it
        // stops with the other tasks at shutdown.
        if let Some(acme) = self.current.load().config.acme.clone() {
            tasks.spawn(crate::acme::run(
                acme,
                Arc::clone(&self.shared.acme),
                Arc::clone(&self.shared.metrics),
                std::future::pending(),
            ));
        }
        let show = |a: Option<SocketAddr>| a.map_or_else(|| "none".to_owned(), |a| a.to_string());
        tracing::info!(https = %https, http = %show(http), admin = %show(admin), "load balancer ready");
        ready();
        shutdown.await;
        let grace = self.current.load().config.shutdown_grace;
        // Every connection learns of the drain before the log line says it began, so a
        // request sent after the line is always answered with `Connection: close`.
        // `send_replace`, not `send`: with no connection subscribed at this instant (one
        // still in its TLS handshake), `send` would drop the value and that connection
        // would subscribe to `false` and answer keep-alive.
        self.shutdown.send_replace(true);
        tracing::info!(
            open = self.slots.open(),
            ?grace,
            "shutting down: draining connections"
        );
        tasks.abort_all();
        if tokio::time::timeout(grace, self.slots.idle())
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.slots.open(),
                "drain deadline passed; closing the rest"
            );
        }
        self.current.load().stop_health();
        Ok(())
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener, https: bool) {
        let kind = if https { "https" } else { "http" };
        let labels = ListenerLabels {
            listener: kind.into(),
        };
        let m = &self.shared.metrics;
        let counters = Counters {
            accepted: m.connections.get_or_create(&labels).clone(),
            not_allowed: m.refused(kind, "not_allowed"),
            over_cap: m.refused(kind, "max_connections"),
            errors: accept::Counter::default(),
        };
        let open = m.connections_active.get_or_create(&labels).clone();
        let mut gate = Gate::new(listener, kind, self.slots.clone(), counters);
        loop {
            let (conn, Admission { gen, .. }) = gate
                .accept_with(|| Admission {
                    gen: self.current.load_full(),
                    admin: false,
                })
                .await;
            let _ = conn.stream.set_nodelay(true);
            open.inc();
            let this = Arc::clone(&self);
            let open = open.clone();
            tokio::spawn(async move {
                let info = ConnInfo::new(conn.peer, https, Instant::now());
                if https {
                    this.serve_tls(conn.stream, info, gen).await;
                } else {
                    h1::serve(conn.stream, gen, Arc::new(info), this.shutdown.subscribe()).await;
                }
                open.dec();
                drop(conn.permit);
            });
        }
    }

    async fn serve_tls(&self, sock: TcpStream, mut info: ConnInfo, gen: Arc<Generation>) {
        let m = &self.shared.metrics;
        let handshake =
            tokio::time::timeout(gen.config.limits.handshake_timeout, gen.tls.accept(sock)).await;
        let tls = match handshake {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                m.tls_handshake_failures.inc();
                tracing::debug!(client = %info.client, error = %e, "tls handshake failed");
                return;
            }
            Err(_) => {
                m.tls_handshake_failures.inc();
                return;
            }
        };
        let (_, session) = tls.get_ref();
        let version = match session.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "other",
        };
        let h2 = session.alpn_protocol() == Some(b"h2");
        let kind = match session.handshake_kind() {
            Some(rustls::HandshakeKind::Resumed) => "resumed",
            Some(rustls::HandshakeKind::FullWithHelloRetryRequest) => "full_hrr",
            _ => "full",
        };
        m.tls_handshakes
            .get_or_create(&crate::metrics::HandshakeLabels {
                version: version.into(),
                kind: kind.into(),
            })
            .inc();
        info.tls_version = Some(version);
        if h2 {
            info.proto = "HTTP/2";
            self.serve_h2(tls, info, gen).await;
        } else {
            h1::serve(tls, gen, Arc::new(info), self.shutdown.subscribe()).await;
        }
    }

    async fn serve_h2(
        &self,
        tls: tokio_rustls::server::TlsStream<TcpStream>,
        info: ConnInfo,
        gen: Arc<Generation>,
    ) {
        let lim = gen.config.limits.clone();
        let info = Arc::new(info);
        let inflight = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let svc = {
            let gen = Arc::clone(&gen);
            let info = Arc::clone(&info);
            let inflight = Arc::clone(&inflight);
            let started = Arc::clone(&started);
            service_fn(move |req: Request<Incoming>| {
                let gen = Arc::clone(&gen);
                let info = Arc::clone(&info);
                let inflight = Arc::clone(&inflight);
                started.fetch_add(1, Ordering::Relaxed);
                async move {
                    inflight.fetch_add(1, Ordering::Relaxed);
                    let resp = h2_request(&gen, &info, req).await;
                    inflight.fetch_sub(1, Ordering::Relaxed);
                    Ok::<_, Infallible>(resp)
                }
            })
        };
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(lim.max_h2_streams)
            .max_header_list_size(u32::try_from(lim.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20))
            .serve_connection(TokioIo::new(tls), svc);
        let mut conn = std::pin::pin!(conn);
        let mut shutdown = self.shutdown.subscribe();
        let mut idle_since = Instant::now();
        let mut closing: Option<Instant> = None;
        let tick = Duration::from_secs(1)
            .min(lim.idle_timeout)
            .min(lim.header_timeout);
        loop {
            tokio::select! {
                _ = conn.as_mut() => return,
                r = shutdown.changed(), if closing.is_none() => {
                    let _ = r;
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now());
                }
                _ = tokio::time::sleep(tick) => {
                    let busy = inflight.load(Ordering::Relaxed) > 0;
                    if busy {
                        idle_since = Instant::now();
                    }
                    // hyper has no header timeout for HTTP/2: a connection that has not
                    // completed one request within header_timeout is closed, as is one
                    // idle for idle_timeout.
                    let no_request = started.load(Ordering::Relaxed) == 0
                        && info.accepted.elapsed() >= lim.header_timeout;
                    let idle = !busy && idle_since.elapsed() >= lim.idle_timeout;
                    match closing {
                        None if no_request || idle => {
                            conn.as_mut().graceful_shutdown();
                            closing = Some(Instant::now());
                        }
                        // GOAWAY went out; a client that keeps a half-sent stream open
                        // does not hold the connection past another tick.
                        Some(at) if !busy && at.elapsed() >= tick => return,
                        _ => {}
                    }
                }
            }
        }
    }

    /// The admin listener: its own allow-list, no cap, outside the drain count.
    async fn admin_loop(self: Arc<Self>, listener: TcpListener) {
        let counters = Counters {
            not_allowed: self.shared.metrics.refused("admin", "not_allowed"),
            ..Counters::default()
        };
        let mut gate = Gate::new(listener, "admin", Slots::new(), counters);
        loop {
            let (conn, _) = gate
                .accept_with(|| Admission {
                    gen: self.current.load_full(),
                    admin: true,
                })
                .await;
            let sock = conn.stream;
            let this = Arc::clone(&self);
            tokio::spawn(async move {
                let _permit = conn.permit;
                let svc = service_fn(move |req: Request<Incoming>| {
                    let this = Arc::clone(&this);
                    async move { Ok::<_, Infallible>(this.admin(req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .max_buf_size(16 * 1024)
                    .serve_connection(TokioIo::new(sock), svc);
                let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
            });
        }
    }

    /// Every backend of the current generation: name, in rotation by health, drained,
    /// requests in flight. What `rampart render`'s playbook polls while it drains a web
    /// server.
    fn backends_json(&self) -> String {
        let gen = self.current.load();
        let list: Vec<serde_json::Value> = gen
            .balancer
            .backends
            .iter()
            .map(|b| {
                serde_json::json!({
                    "name": b.cfg.name,
                    "up": b.is_up(),
                    "drained": b.is_drained(),
                    "active": b.active(),
                })
            })
            .collect();
        let mut text = serde_json::json!({ "backends": list }).to_string();
        text.push('\n');
        text
    }

    async fn admin(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let reply = |status: StatusCode, ctype: &'static str, body: String| {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = status;
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(ctype),
            );
            r
        };
        match (req.method().as_str(), req.uri().path()) {
            ("GET", "/metrics") => {
                self.current.load().publish_certs();
                reply(
                    StatusCode::OK,
                    crate::metrics::TEXT_FORMAT,
                    self.shared.metrics.encode(),
                )
            }
            ("GET", "/-/healthy") => reply(StatusCode::OK, "text/plain", "ok\n".into()),
            ("GET", "/-/backends") => {
                reply(StatusCode::OK, "application/json", self.backends_json())
            }
            ("POST", "/-/drain" | "/-/undrain") => {
                let drain = req.uri().path() == "/-/drain";
                let name = req.uri().query().and_then(|q| {
                    q.split('&')
                        .find_map(|kv| kv.strip_prefix("backend="))
                        .map(str::to_owned)
                });
                let Some(name) = name else {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        "text/plain",
                        "expected ?backend=NAME\n".into(),
                    );
                };
                let gen = self.current.load();
                match gen.balancer.backends.iter().find(|b| b.cfg.name == name) {
                    Some(b) => {
                        b.set_drained(drain);
                        reply(StatusCode::OK, "application/json", self.backends_json())
                    }
                    None => reply(
                        StatusCode::NOT_FOUND,
                        "text/plain",
                        format!("no backend {name:?}\n"),
                    ),
                }
            }
            ("POST", "/-/reload") => match self.reload().await {
                Ok(()) => reply(StatusCode::OK, "text/plain", "reloaded\n".into()),
                Err(e) => reply(StatusCode::BAD_REQUEST, "text/plain", format!("{e}\n")),
            },
            _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
        }
    }
}

/// What the gates check a connection against: the generation in force when it arrived
/// (which then serves it).
struct Admission {
    gen: Arc<Generation>,
    admin: bool,
}

impl accept::Rules for Admission {
    fn allow_from(&self) -> &AllowList {
        let listen = &self.gen.config.listen;
        if self.admin {
            &listen.admin_allow_from
        } else {
            &listen.allow_from
        }
    }

    fn max_connections(&self) -> usize {
        if self.admin {
            usize::MAX
        } else {
            self.gen.config.limits.max_connections
        }
    }
}

rampart_telemetry::service!(Lb, error = ConfigErrors, build = Lb::new);

/// Reads an HTTP/2 request body within the limits, then serves the request.
async fn h2_request(
    gen: &Generation,
    info: &ConnInfo,
    req: Request<Incoming>,
) -> Response<RespBody> {
    let lim = &gen.config.limits;
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > lim.max_body_bytes as u64) {
        return gen.reject(info, Reject::BodyTooLarge);
    }
    let collected = tokio::time::timeout(
        lim.body_timeout,
        Limited::new(body, lim.max_body_bytes).collect(),
    )
    .await;
    let bytes = match collected {
        Err(_) => return gen.reject(info, Reject::Timeout),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return gen.reject(info, Reject::BodyTooLarge)
        }
        Ok(Err(_)) => return gen.reject(info, Reject::BadRequest("body")),
        Ok(Ok(c)) => c.to_bytes(),
    };
    let mut parts = parts;
    if !bytes.is_empty() {
        parts.headers.insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(bytes.len()),
        );
    }
    gen.serve(Request::from_parts(parts, bytes), info).await
}

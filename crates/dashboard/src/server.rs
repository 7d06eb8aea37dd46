//! The dashboard server: the listener behind [`rampart_telemetry::accept::Gate`] (its
//! allow-list and connection cap), TLS with
//! a handshake deadline, hyper HTTP/1.1 with a header deadline (which also ends idle
//! keep-alive), routing, the login and sessions, the alert webhook, the security headers
//! of every response, bounded body reading, and the drain on shutdown. The only file in
//! the crate that does network I/O as a server.
//!
//! Routes: `GET /healthz` and `GET|POST /login` are open; `POST /api/alerts` needs the
//! webhook's bearer token; everything else needs a session (`GET /`, `GET /api/alerts`,
//! `POST /api/login-link`, `POST /logout`): without one a GET is redirected to `/login`
//! and anything else gets 401. Browser POSTs from another origin are refused (403), on
//! top of the `SameSite=Strict` cookie.
//!
//! [`Dashboard`] is a [`rampart_telemetry::service::Service`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use rampart_telemetry::accept::{Counter, Counters, Fixed, Gate, Slots};
use tokio::net::TcpListener;

use crate::alerts::{self, AlertStore, StateError};
use crate::auth::{self, LoginLinks, Origin, Secret, Sessions};
use crate::config::{defaults, Config};
use crate::data::{self, Snapshot};
use crate::logs;
use crate::metrics::{self, Metrics};
use crate::page;
use crate::prom;

/// The session cookie. `__Host-` makes browsers insist on `Secure`, `Path=/` and no
/// `Domain`, so no other host can set or shadow it.
pub const SESSION_COOKIE: &str = "__Host-rampart-session";
/// The largest login form accepted.
const MAX_FORM_BYTES: usize = 4096;
/// The largest request head (request line and headers).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// A page's Prometheus answers are reused for at most this long (and at most half the
/// refresh interval), so many open tabs cost one set of queries, and nothing shown is
/// older than one refresh.
const SNAPSHOT_TTL: Duration = Duration::from_secs(2);

/// Why the dashboard could not be built from a valid config.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("tls: {0}")]
    Tls(#[from] rampart_tls::TlsError),
    #[error("{key}: {source}")]
    Secret {
        key: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("alerts.state_file: {0}")]
    State(#[from] StateError),
}

/// Connections the internal metrics listener serves at once; more are closed at accept.
const METRICS_MAX_CONNECTIONS: usize = 8;
/// The metrics listener's deadline for a request head (and idle keep-alive).
const METRICS_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The bound listeners, bound before the server is built so a test can use port 0.
#[derive(Debug)]
pub struct Listeners {
    pub https: TcpListener,
    /// `listen.metrics`: plain HTTP, `GET /metrics` only.
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

const SECURITY_HEADERS: [(&str, &str); 7] = [
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("strict-transport-security", "max-age=31536000"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("cache-control", "no-store"),
];

/// Counters a test or an operator may read (`get()`); the same counters are exported as
/// `rampart_dashboard_connections_refused_total`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections closed at accept because the source is not in `listen.allow_from`.
    pub not_allowed: Counter,
    /// Connections closed at accept because `listen.max_connections` were open.
    pub over_limit: Counter,
    /// Failed TLS handshakes (including those past the deadline).
    pub tls_failed: Counter,
}

struct Shared {
    config: Config,
    tls: tokio_rustls::TlsAcceptor,
    password: Secret,
    token: Secret,
    sessions: Sessions,
    links: LoginLinks,
    limiter: auth::Limiter,
    alerts: AlertStore,
    prom: prom::Client,
    /// The log store's client, when `[logs]` is configured.
    logs: Option<prom::Client>,
    /// The last snapshot and when it was taken; the lock also makes concurrent page
    /// loads share one round of queries.
    snapshot: tokio::sync::Mutex<Option<(Instant, Arc<Snapshot>)>>,
    stats: Arc<Stats>,
    metrics: Metrics,
}

/// A dashboard ready to serve.
pub struct Dashboard {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("addr", &self.shared.config.addr)
            .finish_non_exhaustive()
    }
}

fn load_secret(
    key: &'static str,
    path: &std::path::Path,
    bytes: usize,
) -> Result<Secret, DashboardError> {
    let (secret, origin) = auth::load_or_create_secret(path, bytes)
        .map_err(|source| DashboardError::Secret { key, source })?;
    if origin == Origin::Generated {
        tracing::info!(file = %path.display(), "generated {key} (mode 0600)");
    }
    Ok(secret)
}

impl Dashboard {
    /// Builds the dashboard: loads the certificate, reads (or generates, 0600) the
    /// password and the webhook token, and loads the recorded alerts. A state file that
    /// cannot be parsed is moved aside to `<state_file>.corrupt` (and logged) so the
    /// dashboard still starts.
    pub fn new(config: Config) -> Result<Dashboard, DashboardError> {
        let cert = rampart_tls::load_certified_key(&config.tls.cert, &config.tls.key)?;
        let certs = Arc::new(rampart_tls::SiteCerts::new(vec![cert]));
        let tls = rampart_tls::server_config(certs, &[b"http/1.1"])?;
        let password = load_secret(
            "auth.password_file",
            &config.auth.password_file,
            auth::PASSWORD_BYTES,
        )?;
        let token = load_secret(
            "alerts.webhook_token_file",
            &config.alerts.webhook_token_file,
            auth::TOKEN_BYTES,
        )?;
        let state = &config.alerts.state_file;
        let alerts = match AlertStore::load(state, config.alerts.max_alerts) {
            Ok(s) => s,
            Err(StateError::Invalid { what, .. }) => {
                let mut aside = state.as_os_str().to_owned();
                aside.push(".corrupt");
                let aside = std::path::PathBuf::from(aside);
                std::fs::rename(state, &aside).map_err(|source| StateError::Io {
                    path: state.clone(),
                    source,
                })?;
                tracing::warn!(file = %state.display(), moved_to = %aside.display(), %what,
                    "alert state unreadable; starting with no recorded alerts");
                AlertStore::load(state, config.alerts.max_alerts)?
            }
            Err(e) => return Err(e.into()),
        };
        let prom = prom::Client {
            url: config.prometheus.url.clone(),
            max_bytes: config.prometheus.max_response_bytes,
            tls: match &config.prometheus.tls {
                Some(t) => Some(Arc::new(rampart_tls::client_config(t)?)),
                None => None,
            },
        };
        let logs = match &config.logs {
            Some(l) => Some(prom::Client {
                url: l.url.clone(),
                max_bytes: l.max_response_bytes,
                tls: match &l.tls {
                    Some(t) => Some(Arc::new(rampart_tls::client_config(t)?)),
                    None => None,
                },
            }),
            None => None,
        };
        let metrics = Metrics::new();
        let stats = Arc::new(Stats {
            not_allowed: metrics.refused("not_allowed"),
            over_limit: metrics.refused("max_connections"),
            tls_failed: metrics.refused("tls_handshake"),
        });
        Ok(Dashboard {
            shared: Arc::new(Shared {
                sessions: Sessions::new(config.auth.session_lifetime, config.auth.session_idle),
                links: LoginLinks::default(),
                limiter: auth::Limiter::new(config.auth.max_failures, config.auth.failure_window),
                tls: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
                password,
                token,
                alerts,
                prom,
                logs,
                snapshot: tokio::sync::Mutex::new(None),
                stats,
                metrics,
                config,
            }),
        })
    }

    /// The server's counters (shared: they keep counting while it serves).
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.shared.stats)
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets open requests
    /// finish for up to `listen.shutdown_grace`. `ready` is called once the listener
    /// serves.
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
        let metrics_addr = match &listeners.metrics {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let scrape = listeners
            .metrics
            .map(|l| tokio::spawn(Arc::clone(&self.shared).metrics_loop(l)));
        tracing::info!(%addr, prometheus = %self.shared.config.prometheus.url,
            metrics = %metrics_addr.map_or("off".to_owned(), |a| a.to_string()),
            "dashboard ready on https://{addr}/");
        ready();
        shutdown.await;
        tracing::info!("shutting down: draining connections");
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
    Dashboard,
    error = DashboardError,
    build = |c| Dashboard::new(c).map(Arc::new)
);

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Shared {
    async fn accept_loop(self: Arc<Self>, listener: TcpListener, graceful: Arc<GracefulShutdown>) {
        let rules = Fixed {
            allow_from: self.config.allow_from.clone(),
            max_connections: self.config.max_connections,
        };
        let counters = Counters {
            not_allowed: self.stats.not_allowed.clone(),
            over_cap: self.stats.over_limit.clone(),
            ..Counters::default()
        };
        let mut gate = Gate::new(listener, "https", Slots::new(), counters);
        loop {
            let conn = gate.accept(&rules).await;
            let (stream, peer) = (conn.stream, conn.peer);
            let _ = stream.set_nodelay(true);
            let shared = Arc::clone(&self);
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let _permit = conn.permit;
                let deadline = shared.config.header_timeout;
                let Ok(Ok(tls)) = tokio::time::timeout(deadline, shared.tls.accept(stream)).await
                else {
                    shared.stats.tls_failed.inc();
                    return;
                };
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(deadline)
                    .max_buf_size(MAX_HEAD_BYTES);
                let svc = service_fn(move |req| {
                    let shared = Arc::clone(&shared);
                    async move { Ok::<_, Infallible>(shared.handle(req, peer).await) }
                });
                let _ = watcher
                    .watch(http.serve_connection(TokioIo::new(tls), svc))
                    .await;
            });
        }
    }

    async fn handle(
        self: &Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let mut resp = self.route(&parts, body, peer).await;
        self.metrics
            .request(metrics::route(parts.uri.path()), resp.status().as_u16());
        let h = resp.headers_mut();
        h.insert(
            HeaderName::from_static("content-security-policy"),
            HeaderValue::from_static(page::csp()),
        );
        for (k, v) in SECURITY_HEADERS {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        tracing::debug!(%peer, method = %parts.method, path = parts.uri.path(),
            status = resp.status().as_u16(), "request");
        resp
    }

    /// The live session of the request, if any (its cookie value).
    fn session(&self, headers: &http::HeaderMap) -> Option<String> {
        let id = cookie(headers, SESSION_COOKIE)?;
        self.sessions.check(&id, Instant::now()).then_some(id)
    }

    async fn route(
        self: &Arc<Self>,
        parts: &http::request::Parts,
        body: Incoming,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>> {
        let method = &parts.method;
        let get = method == Method::GET || method == Method::HEAD;
        let post = method == Method::POST;
        match parts.uri.path() {
            "/healthz" if get => return text(StatusCode::OK, "ok\n"),
            "/healthz" => return not_allowed("GET, HEAD"),
            "/login" if get => return self.login_page(parts, peer),
            "/login" if post => return self.login(parts, body, peer).await,
            "/login" => return not_allowed("GET, HEAD, POST"),
            "/api/alerts" if post => return self.webhook(parts, body).await,
            _ => {}
        }
        let Some(session) = self.session(&parts.headers) else {
            return if get {
                redirect("/login")
            } else {
                text(StatusCode::UNAUTHORIZED, "log in first\n")
            };
        };
        match parts.uri.path() {
            "/" if get => self.dashboard().await,
            "/" => not_allowed("GET, HEAD"),
            "/logs" if get => self.logs_page(parts).await,
            "/logs" => not_allowed("GET, HEAD"),
            "/api/alerts" if get => self.alerts_json(),
            "/api/alerts" => not_allowed("GET, HEAD, POST"),
            "/api/login-link" | "/logout" if !post => not_allowed("POST"),
            _ if post && !same_origin(&parts.headers) => {
                text(StatusCode::FORBIDDEN, "cross-origin request refused\n")
            }
            "/api/login-link" => self.login_link(),
            "/logout" => {
                self.sessions.end(&session);
                let mut r = redirect("/login");
                let clear = format!(
                    "{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict"
                );
                if let Ok(v) = HeaderValue::from_str(&clear) {
                    r.headers_mut().insert(header::SET_COOKIE, v);
                }
                r
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// `GET /login`: the form, or with `?link=TOKEN` a one-time login link redeemed.
    fn login_page(&self, parts: &http::request::Parts, peer: SocketAddr) -> Response<Full<Bytes>> {
        let title = &self.config.page.title;
        let mut form = parts
            .uri
            .query()
            .and_then(|q| parse_form(q.as_bytes()))
            .unwrap_or_default();
        let next = local_path(form.remove("next"));
        let Some(token) = form.remove("link") else {
            if self.session(&parts.headers).is_some() {
                return redirect("/");
            }
            return html(StatusCode::OK, page::login(title, None, ""));
        };
        let now = Instant::now();
        if let Err(wait) = self.limiter.check(peer.ip(), now) {
            Metrics::outcome(&self.metrics.logins, "limited");
            return too_many(title, wait);
        }
        if !self.links.redeem(&token, now) {
            self.limiter.failed(peer.ip(), now);
            Metrics::outcome(&self.metrics.logins, "failure");
            tracing::warn!(%peer, "invalid or expired login link");
            return html(
                StatusCode::UNAUTHORIZED,
                page::login(title, Some("this login link is invalid or has expired"), ""),
            );
        }
        tracing::info!(%peer, "logged in with a login link");
        self.start_session(peer, &next)
    }

    /// A new session, and a redirect to `next` (a path checked by [`local_path`]).
    fn start_session(&self, peer: SocketAddr, next: &str) -> Response<Full<Bytes>> {
        self.limiter.succeeded(peer.ip());
        Metrics::outcome(&self.metrics.logins, "success");
        match self.sessions.create(Instant::now()) {
            Ok(id) => {
                let mut r = redirect("/");
                if let Ok(v) = HeaderValue::from_str(next) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                let cookie = format!(
                    "{SESSION_COOKIE}={id}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Strict",
                    self.sessions.cookie_max_age()
                );
                if let Ok(v) = HeaderValue::from_str(&cookie) {
                    r.headers_mut().insert(header::SET_COOKIE, v);
                }
                r
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot create a session");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot create a session\n",
                )
            }
        }
    }

    /// `POST /login` with the form.
    async fn login(
        &self,
        parts: &http::request::Parts,
        body: Incoming,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>> {
        let title = &self.config.page.title;
        if !same_origin(&parts.headers) {
            return text(StatusCode::FORBIDDEN, "cross-origin request refused\n");
        }
        if !content_type_is(&parts.headers, "application/x-www-form-urlencoded") {
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the form as application/x-www-form-urlencoded\n",
            );
        }
        let now = Instant::now();
        if let Err(wait) = self.limiter.check(peer.ip(), now) {
            tracing::warn!(%peer, "login refused: too many failed attempts");
            Metrics::outcome(&self.metrics.logins, "limited");
            return too_many(title, wait);
        }
        let body = match self.read_body(parts, body, MAX_FORM_BYTES).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let Some(form) = parse_form(&body) else {
            return html(
                StatusCode::BAD_REQUEST,
                page::login(title, Some("the form could not be read"), ""),
            );
        };
        let user = form.get("user").map_or("", String::as_str);
        let password = form.get("password").map_or("", String::as_str);
        // Both compared, in constant time, whatever the first says.
        let user_ok = auth::ct_eq(user.as_bytes(), self.config.auth.user.as_bytes());
        let password_ok = self.password.matches(password.as_bytes());
        if user_ok && password_ok {
            tracing::info!(%peer, "logged in");
            return self.start_session(peer, "/");
        }
        self.limiter.failed(peer.ip(), now);
        Metrics::outcome(&self.metrics.logins, "failure");
        tracing::warn!(%peer, "login failed: wrong user or password");
        html(
            StatusCode::UNAUTHORIZED,
            page::login(title, Some("wrong user or password"), user),
        )
    }

    /// `POST /api/login-link`: a one-time link for a browser that cannot fill in a form.
    fn login_link(&self) -> Response<Full<Bytes>> {
        match self.links.mint(Instant::now()) {
            Ok(token) => json(
                StatusCode::OK,
                &serde_json::json!({
                    "path": format!("/login?link={token}"),
                    "expires_in_seconds": auth::LINK_LIFETIME.as_secs(),
                }),
            ),
            Err(e) => {
                tracing::error!(error = %e, "cannot mint a login link");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot mint a login link\n",
                )
            }
        }
    }

    /// `POST /api/alerts`: Alertmanager's webhook.
    async fn webhook(&self, parts: &http::request::Parts, body: Incoming) -> Response<Full<Bytes>> {
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        let authorized = given.is_some_and(|t| self.token.matches(t.as_bytes()));
        if !authorized {
            tracing::warn!(
                presented = given.is_some(),
                "webhook call without the right token"
            );
            let mut r = json_error(
                StatusCode::UNAUTHORIZED,
                "authorization",
                "a bearer token is required",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"rampart-dashboard\""),
            );
            Metrics::outcome(&self.metrics.webhooks, "unauthorized");
            return r;
        }
        if !content_type_is(&parts.headers, "application/json") {
            Metrics::outcome(&self.metrics.webhooks, "invalid");
            return json_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content-type",
                "send the body as application/json",
            );
        }
        let body = match self
            .read_body(parts, body, self.config.alerts.max_body_bytes)
            .await
        {
            Ok(b) => b,
            Err(r) => {
                Metrics::outcome(&self.metrics.webhooks, "invalid");
                return r;
            }
        };
        let alerts = match alerts::parse_webhook(&body, now_unix() as i64) {
            Ok(a) => a,
            Err(e) => {
                Metrics::outcome(&self.metrics.webhooks, "invalid");
                tracing::warn!(error = %e, "webhook body refused");
                return json_error(StatusCode::BAD_REQUEST, &e.field, &e.message);
            }
        };
        let n = alerts.len();
        let firing = alerts
            .iter()
            .filter(|a| a.status == alerts::Status::Firing)
            .count();
        match self.alerts.record(alerts).await {
            Ok(()) => {
                Metrics::outcome(&self.metrics.webhooks, "recorded");
                tracing::info!(alerts = n, firing, "alerts recorded");
                json(StatusCode::OK, &serde_json::json!({ "recorded": n }))
            }
            Err(e) => {
                Metrics::outcome(&self.metrics.webhooks, "error");
                tracing::error!(error = %e, "cannot save the alert state");
                json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "state",
                    "the alerts could not be saved",
                )
            }
        }
    }

    /// The internal metrics listener: its own allow-list, at most
    /// [`METRICS_MAX_CONNECTIONS`] at once, a header deadline, `GET /metrics` only.
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
        let mut gate = Gate::new(listener, "metrics", Slots::new(), counters);
        loop {
            let conn = gate.accept(&rules).await;
            let shared = Arc::clone(&self);
            tokio::spawn(async move {
                let _permit = conn.permit;
                let svc = service_fn(move |req: Request<Incoming>| {
                    let shared = Arc::clone(&shared);
                    async move { Ok::<_, Infallible>(shared.scrape(&req)) }
                });
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(METRICS_HEADER_TIMEOUT)
                    .max_buf_size(MAX_HEAD_BYTES);
                let _ = http.serve_connection(TokioIo::new(conn.stream), svc).await;
            });
        }
    }

    /// `GET /metrics` on the internal listener; the gauges are read at scrape time.
    fn scrape(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let get = req.method() == Method::GET || req.method() == Method::HEAD;
        match req.uri().path() {
            "/metrics" if get => {}
            "/metrics" => return not_allowed("GET, HEAD"),
            _ => return text(StatusCode::NOT_FOUND, "not found\n"),
        }
        let m = &self.metrics;
        m.sessions
            .set(i64::try_from(self.sessions.count(Instant::now())).unwrap_or(i64::MAX));
        let firing = self
            .alerts
            .list()
            .iter()
            .filter(|a| a.status == alerts::Status::Firing)
            .count();
        m.alerts_firing
            .set(i64::try_from(firing).unwrap_or(i64::MAX));
        let mut r = Response::new(Full::new(Bytes::from(m.encode())));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(rampart_telemetry::metrics::TEXT_FORMAT),
        );
        r
    }

    /// `GET /api/alerts`: the recorded alerts as JSON.
    fn alerts_json(&self) -> Response<Full<Bytes>> {
        let list: Vec<serde_json::Value> = self
            .alerts
            .list()
            .iter()
            .map(|a| {
                serde_json::json!({
                    "fingerprint": a.fingerprint,
                    "status": a.status.as_str(),
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": a.starts_at,
                    "endsAt": a.ends_at,
                    "updatedAt": a.updated_at,
                })
            })
            .collect();
        json(StatusCode::OK, &serde_json::json!({ "alerts": list }))
    }

    /// A recent snapshot, or a new one; concurrent callers share one round of queries.
    async fn snapshot(&self) -> Arc<Snapshot> {
        let ttl = SNAPSHOT_TTL.min(self.config.page.refresh / 2);
        let mut cached = self.snapshot.lock().await;
        if let Some((at, snap)) = cached.as_ref() {
            if at.elapsed() < ttl {
                return Arc::clone(snap);
            }
        }
        let p = &self.config.prometheus;
        let started = Instant::now();
        let snap =
            Arc::new(data::fetch(&self.prom, self.config.page.range, p.timeout, now_unix()).await);
        self.metrics
            .prometheus_fetch_seconds
            .observe(started.elapsed().as_secs_f64());
        if let Some(e) = snap.unreachable() {
            Metrics::outcome(&self.metrics.prometheus_fetches, "unreachable");
            tracing::warn!(prometheus = %p.url, error = %e, "prometheus unreachable");
        } else {
            Metrics::outcome(&self.metrics.prometheus_fetches, "ok");
        }
        *cached = Some((Instant::now(), Arc::clone(&snap)));
        snap
    }

    /// `GET /`: the dashboard page (200 even when Prometheus is down: it says so).
    async fn dashboard(&self) -> Response<Full<Bytes>> {
        let snap = self.snapshot().await;
        let alerts = self.alerts.list();
        let url = self.config.prometheus.url.to_string();
        let body = page::dashboard(&page::View {
            title: &self.config.page.title,
            prometheus: &url,
            refresh: self.config.page.refresh,
            range: self.config.page.range,
            snapshot: &snap,
            alerts: &alerts,
        });
        html(StatusCode::OK, body)
    }

    /// `GET /logs`: the log search. A bad parameter is a 400 page naming it; a store that
    /// does not answer is a 200 page that says so (like Prometheus on `/`).
    async fn logs_page(&self, parts: &http::request::Parts) -> Response<Full<Bytes>> {
        let title = &self.config.page.title;
        let now = now_unix() as i64;
        let params = parse_form(parts.uri.query().unwrap_or("").as_bytes());
        let (search, problem) = match params.as_ref().map(logs::Search::from_params) {
            Some(Ok(s)) => (s, None),
            Some(Err(e)) => (logs::Search::default(), Some(e)),
            None => (
                logs::Search::default(),
                Some(
                    "the query string is not valid percent-encoded UTF-8 (at most 16 fields)"
                        .into(),
                ),
            ),
        };
        let (client, config) = match (&self.logs, &self.config.logs) {
            (Some(c), Some(l)) if problem.is_none() => (c, l),
            _ => {
                let status = if problem.is_some() {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::OK
                };
                let why = problem.unwrap_or_else(|| {
                    "no log store is configured: set [logs] url in the dashboard's config".into()
                });
                let body = page::logs(&page::LogsView {
                    title,
                    search: &search,
                    found: None,
                    problem: Some(&why),
                    store: "",
                    tail_refresh: defaults::TAIL_REFRESH,
                    now,
                });
                return html(status, body);
            }
        };
        let started = Instant::now();
        let found = logs::search(client, &search, now, config.max_lines, config.timeout).await;
        self.metrics
            .logs_search_seconds
            .observe(started.elapsed().as_secs_f64());
        match &found.entries {
            Ok(_) => Metrics::outcome(&self.metrics.logs_searches, "ok"),
            Err(e) => {
                Metrics::outcome(&self.metrics.logs_searches, "error");
                tracing::warn!(store = %config.url, error = %e, "log search failed");
            }
        }
        let store = config.url.to_string();
        let body = page::logs(&page::LogsView {
            title,
            search: &search,
            found: Some(&found),
            problem: None,
            store: &store,
            tail_refresh: config.tail_refresh,
            now,
        });
        html(StatusCode::OK, body)
    }

    /// Reads a body of at most `max` bytes within the header deadline: 413 beyond, 408
    /// when too slow.
    async fn read_body(
        &self,
        parts: &http::request::Parts,
        body: Incoming,
        max: usize,
    ) -> Result<Bytes, Response<Full<Bytes>>> {
        let too_large = || {
            let mut r = text(StatusCode::PAYLOAD_TOO_LARGE, "the body is too large\n");
            r.headers_mut()
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
        match tokio::time::timeout(self.config.header_timeout, read).await {
            Ok(Ok(b)) => Ok(b.to_bytes()),
            Ok(Err(e))
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                Err(too_large())
            }
            Ok(Err(_)) => Err(text(
                StatusCode::BAD_REQUEST,
                "the body could not be read\n",
            )),
            Err(_) => {
                let mut r = text(
                    StatusCode::REQUEST_TIMEOUT,
                    "the body was not received in time\n",
                );
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                Err(r)
            }
        }
    }
}

/// Whether a browser says the request comes from this origin: `Sec-Fetch-Site`, when
/// sent, is `same-origin` or `none` (typed by the user), and `Origin`, when sent, is
/// `https://` plus the `Host` header. Clients that send neither (curl, Alertmanager)
/// pass; browsers always send at least one on a POST.
pub fn same_origin(headers: &http::HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        if !matches!(site.as_bytes(), b"same-origin" | b"none") {
            return false;
        }
    }
    match headers.get(header::ORIGIN) {
        None => true,
        Some(origin) => {
            let host = headers.get(header::HOST).map(HeaderValue::as_bytes);
            host.is_some_and(|h| origin.as_bytes().strip_prefix(b"https://") == Some(h))
        }
    }
}

fn content_type_is(headers: &http::HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(expected))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode_component(s: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex(*s.get(i + 1)?)?;
                let lo = hex(*s.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Parses `application/x-www-form-urlencoded` (also a query string): at most 16 fields,
/// the first of a repeated name wins; `None` for bad percent-encoding or UTF-8.
pub fn parse_form(body: &[u8]) -> Option<HashMap<String, String>> {
    let mut out = HashMap::new();
    for (i, pair) in body.split(|&b| b == b'&').enumerate() {
        if i >= 16 {
            return None;
        }
        if pair.is_empty() {
            continue;
        }
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(p) => (&pair[..p], &pair[p + 1..]),
            None => (pair, &b""[..]),
        };
        let k = decode_component(k)?;
        let v = decode_component(v)?;
        out.entry(k).or_insert(v);
    }
    Some(out)
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", body)
}

fn html(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    respond(status, "text/html; charset=utf-8", body)
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    respond(status, "application/json", value.to_string())
}

fn json_error(status: StatusCode, field: &str, message: &str) -> Response<Full<Bytes>> {
    json(
        status,
        &serde_json::json!({ "error": message, "field": field }),
    )
}

/// Where a login link may send the browser after it logs in: a path of this server's
/// pages (`/` or `/logs?...`, at most 1 KiB, printable ASCII), never another site
/// (`//host`, `/\\host`) or a scheme; anything else is `/`.
pub fn local_path(next: Option<String>) -> String {
    match next {
        Some(p)
            if p.len() <= 1024
                && (p == "/" || p == "/logs" || p.starts_with("/logs?"))
                && p.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            p
        }
        _ => "/".to_owned(),
    }
}

fn redirect(to: &'static str) -> Response<Full<Bytes>> {
    let mut r = text(StatusCode::SEE_OTHER, "");
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    r
}

fn not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

fn too_many(title: &str, wait: Duration) -> Response<Full<Bytes>> {
    let secs = wait.as_secs().max(1);
    let mut r = html(
        StatusCode::TOO_MANY_REQUESTS,
        page::login(
            title,
            Some(&format!("too many failed attempts; try again in {secs} s")),
            "",
        ),
    );
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        for (input, expected) in [
            (
                "user=admin&password=a%2Bb+c",
                Some(vec![("password", "a+b c"), ("user", "admin")]),
            ),
            ("user=&password", Some(vec![("password", ""), ("user", "")])),
            ("a=1&a=2&&", Some(vec![("a", "1")])),
            ("link=%E2%9C%93", Some(vec![("link", "✓")])),
            ("bad=%zz", None),
            ("bad=%4", None),
            ("bad=%FF", None),
            ("", Some(vec![])),
        ] {
            let got = parse_form(input.as_bytes()).map(|m| {
                let mut v: Vec<(String, String)> = m.into_iter().collect();
                v.sort();
                v
            });
            let expected = expected.map(|v| {
                v.into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect::<Vec<_>>()
            });
            assert_eq!(got, expected, "{input}");
        }
        let many = vec!["a=1"; 17].join("&");
        assert_eq!(parse_form(many.as_bytes()), None);
    }

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn origins() {
        for (pairs, ok) in [
            (vec![], true),
            (vec![("host", "198.18.9.2:3000")], true),
            (
                vec![
                    ("host", "198.18.9.2:3000"),
                    ("origin", "https://198.18.9.2:3000"),
                ],
                true,
            ),
            (
                vec![
                    ("host", "198.18.9.2:3000"),
                    ("origin", "https://evil.example"),
                ],
                false,
            ),
            (
                vec![
                    ("host", "198.18.9.2:3000"),
                    ("origin", "http://198.18.9.2:3000"),
                ],
                false,
            ),
            (vec![("origin", "null")], false),
            (vec![("sec-fetch-site", "same-origin")], true),
            (vec![("sec-fetch-site", "none")], true),
            (vec![("sec-fetch-site", "cross-site")], false),
            (vec![("sec-fetch-site", "same-site")], false),
        ] {
            assert_eq!(same_origin(&headers(&pairs)), ok, "{pairs:?}");
        }
    }

    #[test]
    fn login_links_send_the_browser_only_to_own_pages() {
        for (next, expected) in [
            (None, "/"),
            (Some("/logs?host=web1&q=x"), "/logs?host=web1&q=x"),
            (Some("/logs"), "/logs"),
            (Some("//evil.example/logs"), "/"),
            (Some("https://evil.example/"), "/"),
            (Some("/logs?q=a b"), "/"),
            (Some("/logsx"), "/"),
            (Some("/api/login-link"), "/"),
        ] {
            assert_eq!(local_path(next.map(str::to_owned)), expected, "{next:?}");
        }
    }

    #[test]
    fn cookies() {
        let h = headers(&[
            ("cookie", "a=1; __Host-rampart-session=abc"),
            ("cookie", "b=2"),
        ]);
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }
}

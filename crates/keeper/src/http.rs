//! The keeper's own listener: `GET /status` (its view as JSON: role, epoch, leader,
//! sync standby, semi-sync, positions, lag; also `up`'s readiness probe), `GET /metrics`
//! (the same as Prometheus gauges and counters) and `POST /switchover[?to=HOST]` (a
//! planned change of primary, served by the leader's keeper). Allow-listed, capped at
//! a few connections, with header and connection timeouts.

use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use rampart_telemetry::accept::{Counters, Fixed, Gate, Slots};
use rampart_telemetry::listen::AllowList;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::keeper::{Snapshot, Switchover};

const MAX_CONNECTIONS: usize = 16;

/// The metrics text of a snapshot.
pub fn metrics(s: &Snapshot) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    let b = |v: bool| if v { 1.0 } else { 0.0 };
    gauge(
        "rampart_keeper_is_leader",
        "1 while this keeper holds the leader key.",
        "gauge",
        b(s.role == "leader"),
    );
    gauge(
        "rampart_keeper_epoch",
        "The leader key's epoch (its create revision) as last seen; 0 without a leader.",
        "gauge",
        s.epoch.unwrap_or(0) as f64,
    );
    gauge(
        "rampart_keeper_epoch_changes_total",
        "Leader changes seen by this keeper.",
        "counter",
        s.epoch_changes as f64,
    );
    gauge(
        "rampart_keeper_sync_standby_named",
        "1 while a sync standby is named (only it may be promoted).",
        "gauge",
        b(s.sync_standby.is_some()),
    );
    gauge(
        "rampart_keeper_semi_sync_enabled",
        "1 while this server runs as a semi-sync primary.",
        "gauge",
        b(s.semi_sync_enabled),
    );
    gauge(
        "rampart_keeper_semi_sync_active",
        "1 while this server's semi-sync is active (Rpl_semi_sync_master_status).",
        "gauge",
        b(s.semi_sync_active),
    );
    gauge(
        "rampart_keeper_etcd_up",
        "1 when the last etcd read succeeded.",
        "gauge",
        b(s.etcd_up),
    );
    gauge(
        "rampart_keeper_server_up",
        "1 when the database server answered the last status query.",
        "gauge",
        b(s.server_up),
    );
    gauge(
        "rampart_keeper_promotable",
        "1 while this replica may be promoted (named standby material: caught up since start).",
        "gauge",
        b(s.promotable),
    );
    gauge(
        "rampart_keeper_read_only",
        "1 while the server is read-only.",
        "gauge",
        b(s.read_only.unwrap_or(true)),
    );
    gauge(
        "rampart_keeper_replication_lag_seconds",
        "Seconds_Behind_Master while replicating, else 0.",
        "gauge",
        s.lag_seconds.unwrap_or(0) as f64,
    );
    gauge(
        "rampart_keeper_failovers_total",
        "Automatic failovers this keeper performed (it took over a lost leader).",
        "counter",
        s.failovers as f64,
    );
    gauge(
        "rampart_keeper_failovers_refused_total",
        "Failovers refused by the quiet period.",
        "counter",
        s.failovers_refused as f64,
    );
    gauge(
        "rampart_keeper_demotions_total",
        "Times this keeper gave up leadership.",
        "counter",
        s.demotions as f64,
    );
    gauge(
        "rampart_keeper_server_restarts_total",
        "Times the database server exited and was restarted.",
        "counter",
        s.server_restarts as f64,
    );
    gauge(
        "rampart_keeper_tls_reloads_total",
        "Renewed certificates the database server loaded (FLUSH SSL).",
        "counter",
        s.tls_reloads as f64,
    );
    out
}

fn reply(status: StatusCode, kind: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = kind.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    snapshot: Arc<Mutex<Snapshot>>,
    switchovers: mpsc::Sender<Switchover>,
) -> Response<Full<Bytes>> {
    let snap = || snapshot.lock().map(|s| s.clone()).unwrap_or_default();
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/status") => {
            let body = serde_json::to_vec(&snap()).unwrap_or_default();
            reply(StatusCode::OK, "application/json", body)
        }
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics(&snap()),
        ),
        (&Method::POST, "/switchover") => {
            let to = req.uri().query().and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("to="))
                    .map(str::to_owned)
            });
            if to.as_deref().is_some_and(|t| {
                t.is_empty()
                    || t.len() > 64
                    || !t
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            }) {
                return reply(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    "to: expected a host name\n",
                );
            }
            let (tx, rx) = oneshot::channel();
            if switchovers
                .send(Switchover { to, reply: tx })
                .await
                .is_err()
            {
                return reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "keeper stopping\n",
                );
            }
            match tokio::time::timeout(Duration::from_secs(15), rx).await {
                Ok(Ok(Ok(msg))) => reply(StatusCode::OK, "text/plain", format!("{msg}\n")),
                Ok(Ok(Err(msg))) => reply(StatusCode::CONFLICT, "text/plain", format!("{msg}\n")),
                _ => reply(
                    StatusCode::GATEWAY_TIMEOUT,
                    "text/plain",
                    "no answer within 15 s\n",
                ),
            }
        }
        (_, "/status" | "/metrics" | "/switchover") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        ),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// Serves the listener until the task is aborted.
pub async fn serve(
    listener: TcpListener,
    allow: AllowList,
    snapshot: Arc<Mutex<Snapshot>>,
    switchovers: mpsc::Sender<Switchover>,
) {
    let rules = Fixed {
        allow_from: allow,
        max_connections: MAX_CONNECTIONS,
    };
    let mut gate = Gate::new(listener, "status", Slots::new(), Counters::default());
    loop {
        let conn = gate.accept(&rules).await;
        let snapshot = snapshot.clone();
        let switchovers = switchovers.clone();
        tokio::spawn(async move {
            let _permit = conn.permit;
            let svc = service_fn(move |req| {
                let (snapshot, switchovers) = (snapshot.clone(), switchovers.clone());
                async move {
                    Ok::<_, std::convert::Infallible>(handle(req, snapshot, switchovers).await)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(Duration::from_secs(5))
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(hyper_util::rt::TokioIo::new(conn.stream), svc);
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
        });
    }
}

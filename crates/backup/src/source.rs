//! The backup source: what the database host serves to the backup host, and the client
//! the backup host pulls with.
//!
//! `POST /backup` (or `/backup?from_lsn=N` for an incremental) runs `mariadb-backup
//! --stream=mbstream` on the local server and streams its output as the response body,
//! chunked, ending with the trailer `x-backup-status: ok` only when mariadb-backup
//! exited cleanly; the client trusts nothing without it. The listener is allow-listed,
//! TLS with client certificates from the site's CA, and further restricted to the
//! client names it is given (the backup host): no other host of the site, whatever
//! certificate it holds, can read the database. One backup at a time.

use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use rampart_telemetry::accept::{Counters, Fixed, Gate, Slots};
use rampart_telemetry::listen::AllowList;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};

use crate::backup::{base_for, now, store_stream, LocalServer, Want};
use crate::store::{BackupManifest, Store};
use crate::tools::{self, BACKUP_PACKAGE};
use crate::Error;

/// The trailer that says the stream is whole.
pub const STATUS_TRAILER: &str = "x-backup-status";
const MAX_CONNECTIONS: usize = 4;

/// A response body fed from a channel: data frames, then trailers or an error.
struct Channel(mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>);

impl http_body::Body for Channel {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx)
    }
}

type Body = http_body_util::Either<Channel, http_body_util::Full<Bytes>>;

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut r = Response::new(http_body_util::Either::Right(http_body_util::Full::new(
        Bytes::from(format!("{msg}\n")),
    )));
    *r.status_mut() = status;
    r
}

/// Who may pull, and from which server.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub server: LocalServer,
    /// Client certificate names allowed (the backup host's).
    pub clients: Vec<String>,
}

async fn handle(
    req: Request<Incoming>,
    cfg: Arc<SourceConfig>,
    one: Arc<Semaphore>,
) -> Response<Body> {
    if req.uri().path() != "/backup" {
        return text(StatusCode::NOT_FOUND, "not found");
    }
    if req.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    let mut from_lsn = None;
    for kv in req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
    {
        match kv.split_once('=') {
            Some(("from_lsn", v))
                if !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()) =>
            {
                from_lsn = v.parse().ok();
            }
            _ => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "expected no query or from_lsn=<digits>",
                )
            }
        }
    }
    let Ok(permit) = one.try_acquire_owned() else {
        return text(StatusCode::CONFLICT, "a backup is already streaming");
    };
    let program = match tools::program("mariadb-backup", BACKUP_PACKAGE) {
        Ok(p) => p,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let mut cmd = tokio::process::Command::from(
        match crate::backup::copy_command(&program, &cfg.server, from_lsn) {
            Ok(c) => c,
            Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
    );
    cmd.kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("mariadb-backup: {e}"),
            )
        }
    };
    let Some(mut out) = child.stdout.take() else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "mariadb-backup: no stdout",
        );
    };
    let (tx, rx) = mpsc::channel(8);
    let log = cfg.server.workdir.join("mariadb-backup.log");
    tokio::spawn(async move {
        let _permit = permit;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match out.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    if tx
                        .send(Ok(Frame::data(Bytes::copy_from_slice(&buf[..n]))))
                        .await
                        .is_err()
                    {
                        // The client went away: kill_on_drop stops mariadb-backup.
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
        let status = child.wait().await;
        let mut trailers = HeaderMap::new();
        let ok = matches!(&status, Ok(s) if s.success());
        if ok {
            trailers.insert(
                STATUS_TRAILER,
                hyper::header::HeaderValue::from_static("ok"),
            );
            let _ = tx.send(Ok(Frame::trailers(trailers))).await;
        } else {
            tracing::warn!(status = ?status, log = %tools::tail(&log, 4), "mariadb-backup failed");
            let _ = tx
                .send(Err(std::io::Error::other("mariadb-backup failed")))
                .await;
        }
    });
    let mut r = Response::new(http_body_util::Either::Left(Channel(rx)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/octet-stream"),
    );
    r.headers_mut().insert(
        hyper::header::TRAILER,
        hyper::header::HeaderValue::from_static(STATUS_TRAILER),
    );
    r
}

/// The first DNS name of a peer certificate, if any.
fn peer_names(conn: &rustls::ServerConnection) -> Vec<String> {
    conn.peer_certificates()
        .and_then(|c| c.first())
        .and_then(|der| rampart_tls::cert_info(std::path::Path::new("client"), der).ok())
        .map(|i| i.names)
        .unwrap_or_default()
}

/// Serves the source on `listener` until the task is aborted.
pub async fn serve(
    listener: TcpListener,
    allow: AllowList,
    tls: Arc<rustls::ServerConfig>,
    cfg: SourceConfig,
) {
    let rules = Fixed {
        allow_from: allow,
        max_connections: MAX_CONNECTIONS,
    };
    let cfg = Arc::new(cfg);
    let one = Arc::new(Semaphore::new(1));
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut gate = Gate::new(listener, "backup", Slots::new(), Counters::default());
    loop {
        let conn = gate.accept(&rules).await;
        let (cfg, one, acceptor) = (cfg.clone(), one.clone(), acceptor.clone());
        tokio::spawn(async move {
            let _permit = conn.permit;
            let peer = conn.peer;
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(conn.stream)).await
            else {
                return;
            };
            let names = peer_names(tls.get_ref().1);
            if !names.iter().any(|n| cfg.clients.contains(n)) {
                tracing::warn!(%peer, ?names, "backup source: a client certificate not allowed to pull backups");
                return;
            }
            let svc = hyper::service::service_fn(move |req| {
                let (cfg, one) = (cfg.clone(), one.clone());
                async move { Ok::<_, Infallible>(handle(req, cfg, one).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(Duration::from_secs(5))
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
        });
    }
}

/// Where and how the backup host pulls from a source.
#[derive(Debug, Clone)]
pub struct Remote {
    pub addr: SocketAddr,
    /// The name its certificate must carry.
    pub server_name: String,
    pub tls: Arc<rustls::ClientConfig>,
}

/// A blocking reader over a channel of body chunks (for the store, which is sync).
pub struct Pipe {
    rx: std::sync::mpsc::Receiver<Result<Bytes, String>>,
    cur: Bytes,
}

impl std::fmt::Debug for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pipe")
    }
}

impl Read for Pipe {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.recv() {
                Ok(Ok(b)) => self.cur = b,
                Ok(Err(e)) => return Err(std::io::Error::other(e)),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// Pulls a backup stream from `remote` (incremental from `from_lsn`) on the runtime,
/// handing it to `sink` on a blocking thread; the stream counts as whole only with the
/// source's `ok` trailer, which is checked before `sink`'s result is returned.
pub async fn pull<T: Send + 'static>(
    remote: &Remote,
    from_lsn: Option<u64>,
    sink: impl FnOnce(&mut Pipe) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let err = |what: String| Error::Invalid(format!("backup source {}: {what}", remote.addr));
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(remote.addr),
    )
    .await
    .map_err(|_| err("connect timed out".into()))?
    .map_err(|e| err(format!("connect: {e}")))?;
    let name = rustls_pki_types::ServerName::try_from(remote.server_name.clone())
        .map_err(|e| err(format!("server name: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(remote.tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| err(format!("TLS: {e}")))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| err(format!("HTTP: {e}")))?;
    tokio::spawn(conn);
    let uri = match from_lsn {
        Some(l) => format!("/backup?from_lsn={l}"),
        None => "/backup".to_owned(),
    };
    let req = Request::post(uri)
        .header(hyper::header::HOST, remote.server_name.as_str())
        .header(hyper::header::TE, "trailers")
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| err(e.to_string()))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| err(format!("request: {e}")))?;
    if resp.status() != StatusCode::OK {
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body).trim()
        )));
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(16);
    let sinking = tokio::task::spawn_blocking(move || {
        let mut pipe = Pipe {
            rx,
            cur: Bytes::new(),
        };
        let r = sink(&mut pipe);
        // Drain what is left so the sender never blocks on a dropped reader.
        drop(pipe);
        r
    });
    let mut body = resp.into_body();
    let mut whole = false;
    let mut failure = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(t) = f.trailers_ref() {
                    whole = t.get(STATUS_TRAILER).is_some_and(|v| v == "ok");
                } else if let Ok(data) = f.into_data() {
                    if tx.send(Ok(data)).is_err() {
                        break;
                    }
                }
            }
            Err(e) => {
                failure = Some(format!("the stream broke: {e}"));
                let _ = tx.send(Err(format!("the stream broke: {e}")));
                break;
            }
        }
    }
    if !whole && failure.is_none() {
        failure = Some("the stream ended without the source's ok".into());
        let _ = tx.send(Err("the stream ended without the source's ok".into()));
    }
    drop(tx);
    let stored = sinking.await.map_err(|e| err(format!("store task: {e}")))?;
    match failure {
        Some(f) => {
            // The sink may have finished (and written a manifest) before the failure
            // was known: the caller removes it (`store_remote` does).
            Err(match stored {
                Err(se) => Error::Invalid(format!("{}; {se}", err(f))),
                Ok(_) => err(f),
            })
        }
        None => stored,
    }
}

/// Pulls a backup from a database host's source (`source.rs`) into the store: a full
/// one, or an incremental on the newest backup. A stream the source did not finish
/// cleanly leaves nothing in the store.
pub async fn store_remote(
    store: &Store,
    remote: &Remote,
    source: &str,
    want: Want,
) -> Result<BackupManifest, Error> {
    let base = base_for(store, want)?;
    let started = now();
    let (s, src) = (store.clone(), source.to_owned());
    let b = base.clone();
    let pulled = pull(remote, base.as_ref().map(|b| b.to_lsn), move |pipe| {
        store_stream(&s, pipe, b.as_ref(), &src, started)
    })
    .await;
    if pulled.is_err() {
        // A manifest written before the failure was known is withdrawn.
        for m in store.backups()? {
            if m.started == started && m.source == source {
                let _ = std::fs::remove_dir_all(store.backup_dir(&m.id));
            }
        }
    }
    pulled
}

//! `rampart backup serve`: the backup host's service.
//!
//! - **Who leads.** Every second it reads each database host's keeper `/status`: the
//!   leader is where the binlog is archived from; a running replica within a minute of
//!   the leader is where backups are taken from (the leader only when there is none).
//! - **Archiving** runs on a thread of its own (`archive.rs`), following the leader.
//! - **The schedule**: a full backup when the newest is older than `full_every`, an
//!   incremental when the newest backup of any kind is older than `incremental_every`,
//!   a verify every `verify_every`, retention after each backup.
//! - **The listener** (allow-listed): `GET /metrics`, `GET /status` (JSON: the latest
//!   backups, the restore window, the archive), `POST /backup[?kind=full|incremental]`
//!   and `POST /verify` (both answer when done; one job at a time).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode};
use rampart_telemetry::accept::{Counters, Fixed, Gate, Slots};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::archive::{self, Archiver, Login, Primary};
use crate::backup::{now, Want};
use crate::config::Config;
use crate::source::{store_remote, Remote};
use crate::store::{load_or_create_key, Kind, Store};
use crate::verify::verify;
use crate::Error;

/// A database host as its keeper reported it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Member {
    pub host: String,
    pub role: String,
    pub lag_seconds: Option<u64>,
    pub server_up: bool,
    pub reachable: bool,
}

/// What the service has done, for metrics and `/status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Record {
    /// Per kind: finished (unix s), size (bytes sealed), duration (s), source host.
    pub last: BTreeMap<String, (i64, u64, f64, String)>,
    pub failures: BTreeMap<String, u64>,
    pub last_error: Option<String>,
    pub verify_last_ok: Option<i64>,
    pub verify_last_run: Option<i64>,
    pub verify_last_result: Option<bool>,
    pub verify_last_message: Option<String>,
    pub verify_failures: u64,
}

/// The service's shared state.
#[derive(Debug)]
pub struct Backupd {
    pub cfg: Config,
    pub store: Store,
    pub members: Mutex<Vec<Member>>,
    pub record: Mutex<Record>,
    pub archive: Arc<Mutex<archive::Status>>,
    login: Login,
    tls: Arc<rustls::ClientConfig>,
    job: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Backupd {
    /// Opens the store (creating the key once) and reads the password and certificates.
    pub fn new(cfg: Config) -> Result<Backupd, Error> {
        let key = load_or_create_key(&cfg.key_file)?;
        let store = Store::open(&cfg.store, key)?;
        let password = std::fs::read_to_string(&cfg.password_file)
            .map_err(|e| Error::io("read the password", &cfg.password_file, e))?
            .trim()
            .to_owned();
        let tls = rampart_tls::client_config(&rampart_tls::ClientTls {
            ca: cfg.tls_ca.clone(),
            client_cert: Some((cfg.tls_cert.clone(), cfg.tls_key.clone())),
        })
        .map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(Backupd {
            login: Login {
                user: cfg.user.clone(),
                password,
                ca: cfg.mysql_ca.clone(),
            },
            tls: Arc::new(tls),
            store,
            members: Mutex::new(Vec::new()),
            record: Mutex::new(Record::default()),
            archive: Arc::new(Mutex::new(archive::Status::default())),
            job: tokio::sync::Mutex::new(()),
            cfg,
        })
    }

    /// The leader's host, from the last round of keeper reports.
    pub fn leader(&self) -> Option<String> {
        lock(&self.members)
            .iter()
            .find(|m| m.reachable && m.role == "leader" && m.server_up)
            .map(|m| m.host.clone())
    }

    /// Where to take a backup from: a caught-up replica, else the leader.
    pub fn backup_source(&self) -> Option<String> {
        let members = lock(&self.members);
        members
            .iter()
            .filter(|m| m.reachable && m.server_up && m.role == "replica")
            .filter(|m| m.lag_seconds.is_some_and(|l| l <= 60))
            .min_by_key(|m| m.lag_seconds)
            .or_else(|| {
                members
                    .iter()
                    .find(|m| m.reachable && m.server_up && m.role == "leader")
            })
            .map(|m| m.host.clone())
    }

    fn primary_of(&self, host: &str) -> Option<Primary> {
        self.cfg
            .servers
            .iter()
            .find(|s| s.host == host)
            .map(|s| Primary {
                host: s.host.clone(),
                addr: s.mysql.ip().to_string(),
                port: s.mysql.port(),
            })
    }

    /// Takes a backup now (one job at a time); records and prunes.
    pub async fn backup(&self, want: Want) -> Result<crate::store::BackupManifest, Error> {
        let _job = self.job.lock().await;
        let kind = match want {
            Want::Full => "full",
            Want::Incremental => "incremental",
        };
        let result = async {
            let host = self.backup_source().ok_or_else(|| {
                Error::Invalid("no database host is up to take a backup from".into())
            })?;
            let server = self
                .cfg
                .servers
                .iter()
                .find(|s| s.host == host)
                .ok_or_else(|| Error::Invalid(format!("{host}: not in the configuration")))?;
            let remote = Remote {
                addr: server.source,
                // Database hosts carry their address in their certificate, as the web
                // servers verify it.
                server_name: server.source.ip().to_string(),
                tls: self.tls.clone(),
            };
            let t = Instant::now();
            let m = store_remote(&self.store, &remote, &host, want).await?;
            Ok::<_, Error>((m, t.elapsed().as_secs_f64()))
        }
        .await;
        match result {
            Ok((m, secs)) => {
                let k = match m.kind {
                    Kind::Full => "full",
                    Kind::Incremental => "incremental",
                };
                tracing::info!(id = %m.id, kind = k, source = %m.source, bytes = m.data.bytes, seconds = secs, gtid = %m.gtid, "backup taken");
                lock(&self.record).last.insert(
                    k.to_owned(),
                    (m.finished, m.data.bytes, secs, m.source.clone()),
                );
                let store = self.store.clone();
                let (keep, age) = (self.cfg.keep_full, self.cfg.max_age.as_secs() as i64);
                let pruned =
                    tokio::task::spawn_blocking(move || store.prune(keep, age, now())).await;
                if let Ok(Ok(removed)) = pruned {
                    for r in removed {
                        tracing::info!(removed = %r, "retention");
                    }
                }
                Ok(m)
            }
            Err(e) => {
                tracing::warn!(kind, error = %e, "backup failed");
                let mut r = lock(&self.record);
                *r.failures.entry(kind.to_owned()).or_default() += 1;
                r.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Verifies the store against a replica (or the leader) now.
    pub async fn verify(self: &Arc<Self>) -> Result<String, Error> {
        let _job = self.job.lock().await;
        let me = self.clone();
        let result = tokio::task::spawn_blocking(move || me.verify_blocking())
            .await
            .map_err(|e| Error::Invalid(format!("verify task: {e}")))?;
        let mut r = lock(&self.record);
        r.verify_last_run = Some(now());
        match &result {
            Ok(msg) => {
                r.verify_last_ok = Some(now());
                r.verify_last_result = Some(true);
                r.verify_last_message = Some(msg.clone());
                tracing::info!(result = %msg, "backup verified");
            }
            Err(e) => {
                r.verify_failures += 1;
                r.verify_last_result = Some(false);
                r.verify_last_message = Some(e.to_string());
                tracing::warn!(error = %e, "backup verify failed");
            }
        }
        result
    }

    fn verify_blocking(&self) -> Result<String, Error> {
        let host = self
            .backup_source()
            .ok_or_else(|| Error::Invalid("no database host is up to verify against".into()))?;
        let p = self
            .primary_of(&host)
            .ok_or_else(|| Error::Invalid(format!("{host}: not in the configuration")))?;
        // A directory of its own inside the scratch directory: the scratch directory
        // itself is the deployment's (Ansible creates it 0700 for the service's user),
        // and removing it made every later playbook run a change.
        let dir = self.cfg.scratch.join("v");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io("clear", &dir, e))?;
        }
        std::fs::create_dir_all(&self.cfg.staging)
            .map_err(|e| Error::io("create", &self.cfg.staging, e))?;
        let cnf = self.cfg.staging.join("verify.cnf");
        archive::write_defaults(&cnf, &self.login, &p)?;
        let log = self.cfg.staging.join("verify.log");
        let source = |sql: &str| archive::query(&cnf, sql, &log);
        let archived = || Ok(lock(&self.archive).gtid.clone());
        let result = verify(
            &self.store,
            &source,
            &archived,
            &dir,
            Duration::from_secs(60),
        );
        let _ = std::fs::remove_file(&cnf);
        let outcome = result.map(|v| {
            let msg = format!(
                "{} tables, {} rows equal to {host} at {}",
                v.tables, v.rows, v.gtid
            );
            // The scratch server stops before its files go.
            drop(v);
            msg
        });
        // The restored data is plaintext: it goes whatever the result.
        let _ = std::fs::remove_dir_all(&dir);
        outcome
    }

    /// The `/status` document.
    pub fn status_json(&self) -> serde_json::Value {
        let backups = self.store.backups().unwrap_or_default();
        let a = lock(&self.archive).clone();
        let n = now();
        serde_json::json!({
            "host": self.cfg.host,
            "leader": self.leader(),
            "backup_source": self.backup_source(),
            "members": *lock(&self.members),
            "backups": backups.iter().map(|m| serde_json::json!({
                "id": m.id, "kind": m.kind, "source": m.source, "finished": m.finished,
                "gtid": m.gtid, "bytes": m.data.bytes,
            })).collect::<Vec<_>>(),
            // From the oldest backup to the last time the archive held all the primary
            // had (or its newest event, when it is behind).
            "restore_window": {
                "from": backups.iter().map(|m| m.finished).min(),
                "to": a.newest.max(a.complete_at),
            },
            "archive": {
                "server": a.server, "gtid": a.gtid, "newest": a.newest,
                "lag_seconds": a.lag(n), "primary_gtid": a.primary_gtid, "last_error": a.last_error,
            },
            "record": *lock(&self.record),
        })
    }

    /// The metrics text.
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        let n = now();
        let backups = self.store.backups().unwrap_or_default();
        let a = lock(&self.archive).clone();
        let r = lock(&self.record).clone();
        let mut family = |name: &str, help: &str, kind: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let newest = |k: Kind| {
            backups
                .iter()
                .filter(|m| m.kind == k)
                .map(|m| m.finished)
                .max()
        };
        let per_kind = |f: &dyn Fn(Kind) -> Option<f64>| -> Vec<(String, f64)> {
            [(Kind::Full, "full"), (Kind::Incremental, "incremental")]
                .iter()
                .filter_map(|(k, s)| f(*k).map(|v| (format!("{{kind=\"{s}\"}}"), v)))
                .collect()
        };
        family(
            "rampart_backup_last_success_timestamp_seconds",
            "When the newest backup of each kind in the store finished.",
            "gauge",
            &per_kind(&|k| newest(k).map(|t| t as f64)),
        );
        let rec = |k: &str| r.last.get(k).cloned();
        family(
            "rampart_backup_last_size_bytes",
            "The size of the last backup taken, sealed.",
            "gauge",
            &per_kind(&|k| rec(kind_name(k)).map(|x| x.1 as f64)),
        );
        family(
            "rampart_backup_last_duration_seconds",
            "How long the last backup took.",
            "gauge",
            &per_kind(&|k| rec(kind_name(k)).map(|x| x.2)),
        );
        family(
            "rampart_backup_failures_total",
            "Backups that failed.",
            "counter",
            &per_kind(&|k| Some(r.failures.get(kind_name(k)).copied().unwrap_or(0) as f64)),
        );
        family(
            "rampart_backup_binlog_archive_lag_seconds",
            "How long the binlog archive has been behind the primary's position (0: caught up).",
            "gauge",
            &[(String::new(), a.lag(n) as f64)],
        );
        family(
            "rampart_backup_binlog_archived_timestamp_seconds",
            "The newest archived binlog event's time: the end of the restore window.",
            "gauge",
            &[(String::new(), a.newest.unwrap_or(0) as f64)],
        );
        family(
            "rampart_backup_binlog_divergences_total",
            "Archiving sessions that found the archive ahead of a new primary (transactions lost in a failover) and restarted its history there.",
            "counter",
            &[(String::new(), a.divergences as f64)],
        );
        family(
            "rampart_backup_binlog_sessions_total",
            "Archiving sessions started (one per primary change or reconnect).",
            "counter",
            &[(String::new(), a.sessions as f64)],
        );
        family(
            "rampart_backup_restore_window_start_timestamp_seconds",
            "The oldest backup's finish time: the start of the restore window.",
            "gauge",
            &[(
                String::new(),
                backups.iter().map(|m| m.finished).min().unwrap_or(0) as f64,
            )],
        );
        family(
            "rampart_backup_verify_last_success_timestamp_seconds",
            "When verify last passed (0: never).",
            "gauge",
            &[(String::new(), r.verify_last_ok.unwrap_or(0) as f64)],
        );
        family(
            "rampart_backup_verify_last_result",
            "1 if the last verify passed, 0 if it failed, absent before the first.",
            "gauge",
            &r.verify_last_result
                .map(|ok| vec![(String::new(), if ok { 1.0 } else { 0.0 })])
                .unwrap_or_default(),
        );
        family(
            "rampart_backup_verify_failures_total",
            "Verifies that failed.",
            "counter",
            &[(String::new(), r.verify_failures as f64)],
        );
        family(
            "rampart_backup_store_bytes",
            "Bytes of sealed objects in the store.",
            "gauge",
            &[(
                String::new(),
                (backups.iter().map(|m| m.data.bytes).sum::<u64>()
                    + self
                        .store
                        .binlogs()
                        .unwrap_or_default()
                        .iter()
                        .map(|b| b.data.bytes)
                        .sum::<u64>()) as f64,
            )],
        );
        out
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Full => "full",
        Kind::Incremental => "incremental",
    }
}

/// One round of keeper reports.
async fn poll_keepers(d: &Backupd) {
    let mut members = Vec::new();
    for s in &d.cfg.servers {
        let mut m = Member {
            host: s.host.clone(),
            ..Member::default()
        };
        if let Ok(Ok(body)) =
            tokio::time::timeout(Duration::from_secs(2), get_status(s.keeper)).await
        {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                m.reachable = true;
                m.role = v["role"].as_str().unwrap_or("").to_owned();
                m.lag_seconds = v["lag_seconds"].as_u64();
                m.server_up = v["server_up"].as_bool().unwrap_or(false);
            }
        }
        members.push(m);
    }
    *lock(&d.members) = members;
}

async fn get_status(addr: SocketAddr) -> Result<Bytes, Error> {
    let err = |e: String| Error::Invalid(format!("keeper {addr}: {e}"));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| err(e.to_string()))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .map_err(|e| err(e.to_string()))?;
    tokio::spawn(conn);
    let req = Request::get("/status")
        .header(hyper::header::HOST, addr.to_string())
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| err(e.to_string()))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| err(e.to_string()))?;
    let body = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
        .collect()
        .await
        .map_err(|e| err(e.to_string()))?;
    Ok(body.to_bytes())
}

fn reply(status: StatusCode, kind: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(kind),
    );
    r
}

async fn handle(req: Request<hyper::body::Incoming>, d: Arc<Backupd>) -> Response<Full<Bytes>> {
    let query = req.uri().query().unwrap_or("").to_owned();
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            reply(StatusCode::OK, "text/plain; version=0.0.4", d.metrics())
        }
        (&Method::GET, "/status") => reply(
            StatusCode::OK,
            "application/json",
            d.status_json().to_string(),
        ),
        (&Method::POST, "/backup") => {
            let want = match query.as_str() {
                "" | "kind=full" => Want::Full,
                "kind=incremental" => Want::Incremental,
                _ => {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        "text/plain",
                        "expected kind=full or kind=incremental\n",
                    )
                }
            };
            match d.backup(want).await {
                Ok(m) => reply(
                    StatusCode::OK,
                    "application/json",
                    serde_json::to_string(&m).unwrap_or_default(),
                ),
                Err(e) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    format!("{e}\n"),
                ),
            }
        }
        (&Method::POST, "/verify") => match d.verify().await {
            Ok(msg) => reply(StatusCode::OK, "text/plain", format!("{msg}\n")),
            Err(e) => reply(StatusCode::CONFLICT, "text/plain", format!("{e}\n")),
        },
        (_, "/metrics" | "/status" | "/backup" | "/verify") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        ),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// Runs the service on `listener` until `shutdown` resolves.
pub async fn run(
    cfg: Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let d = Arc::new(Backupd::new(cfg)?);
    let stop = Arc::new(AtomicBool::new(false));
    poll_keepers(&d).await;

    let archiving = {
        let (d, stop) = (d.clone(), stop.clone());
        std::thread::spawn(move || {
            let archiver = Archiver {
                store: d.store.clone(),
                staging: d.cfg.staging.clone(),
                login: d.login.clone(),
                tick: d.cfg.tick,
                status: d.archive.clone(),
            };
            archiver.run(&|| d.leader().and_then(|h| d.primary_of(&h)), &stop);
        })
    };
    let watching = {
        let d = d.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                poll_keepers(&d).await;
            }
        })
    };
    let scheduling = {
        let d = d.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let backups = d.store.backups().unwrap_or_default();
                let n = now();
                let newest_full = backups
                    .iter()
                    .filter(|m| m.kind == Kind::Full)
                    .map(|m| m.finished)
                    .max();
                let newest_any = backups.iter().map(|m| m.finished).max();
                let due = |t: Option<i64>, every: Duration| {
                    t.is_none_or(|t| n - t >= every.as_secs() as i64)
                };
                if due(newest_full, d.cfg.full_every) {
                    let _ = d.backup(Want::Full).await;
                } else if due(newest_any, d.cfg.incremental_every) {
                    let _ = d.backup(Want::Incremental).await;
                } else if due(lock(&d.record).verify_last_run, d.cfg.verify_every) {
                    let _ = d.verify().await;
                }
            }
        })
    };
    let serving = {
        let d = d.clone();
        let rules = Fixed {
            allow_from: d.cfg.allow_from.clone(),
            max_connections: 16,
        };
        tokio::spawn(async move {
            let mut gate = Gate::new(listener, "backup", Slots::new(), Counters::default());
            loop {
                let conn = gate.accept(&rules).await;
                let d = d.clone();
                tokio::spawn(async move {
                    let _permit = conn.permit;
                    let svc = hyper::service::service_fn(move |req| {
                        let d = d.clone();
                        async move { Ok::<_, Infallible>(handle(req, d).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .header_read_timeout(Duration::from_secs(5))
                        .timer(hyper_util::rt::TokioTimer::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(conn.stream), svc);
                    // A backup or verify answers when done: bounded at an hour.
                    let _ = tokio::time::timeout(Duration::from_secs(3600), conn).await;
                });
            }
        })
    };
    tracing::info!(status = %d.cfg.status, "backup service ready");
    shutdown.await;
    serving.abort();
    scheduling.abort();
    watching.abort();
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || archiving.join()).await;
    Ok(())
}

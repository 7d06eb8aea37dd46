//! `rampart keeper`: one per database host, next to (and parent of) its mariadbd. The
//! keepers elect the primary through etcd, fence the old one, promote only a
//! synchronous standby that has every acknowledged write, and report what they do.
//!
//! Layers: `gtid` and `config` stand alone; `coord` (keys, values, the election rules,
//! pure) uses `gtid`; `server` (the child process and its SQL) stands alone; `keeper`
//! (the loop) uses all of them; `http` (status, metrics, switchover) shows `keeper`'s
//! snapshot. [`run`] ties them together for the binary.

pub mod config;
pub mod coord;
pub mod gtid;
pub mod http;
pub mod keeper;
pub mod server;

use std::ffi::OsString;
use std::future::Future;
use std::sync::{Arc, Mutex};

use config::Config;

/// Why the keeper could not start.
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("etcd client: {0}")]
    Etcd(#[from] rampart_etcd::Error),
}

/// Runs the keeper until `shutdown`: binds its status listener, starts `server_argv`
/// (the database server's whole command line) as its child, and keeps it in its place.
/// Must run on a current-thread runtime on the main thread (see `server.rs`).
pub async fn run(
    config: Config,
    server_argv: Vec<OsString>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), KeeperError> {
    let listener = rampart_telemetry::listen::tcp(config.status, 64)?;
    let password = server::read_password(&config.password_file)?;
    let repl_password = server::read_password(&config.repl_password_file)?;
    let etcd = rampart_etcd::Client::new(rampart_etcd::ClientConfig {
        endpoints: config.etcd_endpoints.clone(),
        tls: rampart_tls::ClientTls {
            ca: config.etcd_ca.clone(),
            client_cert: Some((config.etcd_cert.clone(), config.etcd_key.clone())),
        },
        request_timeout: config.request_timeout,
    })?;
    let srv = server::Server::new(
        server_argv,
        config.server_id,
        config.addr,
        &config.user,
        &password,
        &config.ca,
        config.request_timeout,
    );
    let snapshot = Arc::new(Mutex::new(keeper::Snapshot::default()));
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let http = tokio::spawn(http::serve(
        listener,
        config.allow_from.clone(),
        snapshot.clone(),
        tx,
    ));
    let source = match &config.backup {
        Some(b) => Some(tokio::spawn(backup_source(b.clone())?)),
        None => None,
    };
    tracing::info!(host = config.host, status = %config.status, "keeper starting");
    keeper::Keeper::new(config, etcd, srv, repl_password, snapshot)
        .run(shutdown, rx)
        .await;
    http.abort();
    if let Some(s) = source {
        s.abort();
    }
    Ok(())
}

/// Binds the backup source's listener and returns the task that serves it.
fn backup_source(
    b: config::BackupSource,
) -> Result<impl Future<Output = ()> + Send + 'static, KeeperError> {
    let listener = rampart_telemetry::listen::tcp(b.listen, 16)?;
    let cert = rampart_tls::load_certified_key(&b.cert, &b.key)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let tls = rampart_tls::server_config_mtls(
        Arc::new(rampart_tls::SiteCerts::new(vec![cert])),
        &[b"http/1.1"],
        &b.ca,
    )
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    tracing::info!(listen = %b.listen, "backup source listening");
    Ok(rampart_backup::source::serve(
        listener,
        b.allow_from,
        Arc::new(tls),
        rampart_backup::source::SourceConfig {
            server: rampart_backup::backup::LocalServer {
                socket: b.socket,
                datadir: b.datadir,
                workdir: b.workdir,
            },
            clients: b.clients,
        },
    ))
}

//! The monitoring plane's ingest gate (`rampart gate`, issue 17): the only door agents
//! have into the monitor. It sits in front of Prometheus on the port agents push to and
//! lets through exactly one thing: a remote-write request from a host with a client
//! certificate of the run's CA, whose every series carries that host's own `instance`
//! label. Queries, the admin API, federation and writes for another host are refused
//! before Prometheus sees them; Prometheus itself listens only where the gate and the
//! dashboard reach it, and takes only their certificates (`ARCHITECTURE.md` says why a
//! gate: Prometheus's `--web.config.file` authenticates, but cannot limit a client to
//! one endpoint or one label value).
//!
//! Entry points, the shape every service has: [`Config::load`] (or [`check`]),
//! [`Listeners::bind`], [`Gate::new`] and [`Gate::serve`].

pub mod config;
pub mod metrics;
pub mod server;

pub use config::Config;
pub use server::{check_instances, Gate, GateError, Listeners, Refusal};

use rampart_telemetry::config::{Checker, ConfigErrors, ConfigFile};

/// Validates a config file and the certificates it names without binding anything
/// (`rampart check`).
pub fn check(path: &std::path::Path) -> Result<Config, ConfigErrors> {
    let config = Config::load(path)?;
    let mut c = Checker::new(path);
    if let Err(e) = rampart_tls::load_certified_key(&config.tls.cert, &config.tls.key) {
        c.err("tls.cert", e.to_string());
    }
    if let Err(e) = rampart_tls::server_certs(&config.tls.client_ca) {
        c.err("tls.client_ca", e.to_string());
    }
    if let Some(t) = &config.upstream.tls {
        if let Err(e) = rampart_tls::client_config(t) {
            c.err("upstream.cert", e.to_string());
        }
    }
    c.finish(config)
}

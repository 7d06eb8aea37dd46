//! The rampart load balancer: TLS termination, HTTP→HTTPS redirect, HSTS, balancing over
//! healthy backends (round robin, weighted, least connections), active and passive health
//! checks, retries on another backend, limits against slow and oversized requests,
//! smuggling rejection, reloads without dropped connections, and a graceful drain.
//!
//! Entry points: [`Config::load`] (from `rampart_telemetry::config::ConfigFile`) validates
//! a config file; [`Listeners::bind`] binds its
//! addresses; [`Lb::new`] builds the first generation and [`Lb::serve`] runs until a
//! shutdown future resolves. `rampart lb` and `rampart check` in the binary are thin
//! wrappers around these.
//! [`Lb`] is a `rampart_telemetry::service::Service`: the binary runs it through its one
//! runner, like every other service.
//!
//! Layers, each file using only those below it: `server` (listeners, TLS, HTTP/2) →
//! `h1` (the client-facing HTTP/1.1 reader) → `proxy` (the request path, `Reject`) →
//! `backend` (pools, health, balancing) → `upstream` (the backend client, `Stream`) →
//! `chunked` (chunk-size lines); `waf` (the CRS over a request, before `proxy` forwards
//! it) sits beside `proxy`; `config`, `metrics` and `ratelimit` are leaves.

pub mod acme;
pub mod backend;
pub mod chunked;
pub mod config;
pub mod h1;
pub mod metrics;
pub mod proxy;
pub mod ratelimit;
pub mod server;
pub mod upstream;
pub mod waf;

pub use config::{Config, ConfigError, ConfigErrors};

use rampart_telemetry::config::ConfigFile;
pub use server::{Lb, Listeners};

/// Validates a config file and everything it points at (certificates, keys, CA files)
/// without binding or starting anything. This is `rampart check`.
pub fn check(path: &std::path::Path) -> Result<Config, ConfigErrors> {
    let config = Config::load(path)?;
    let metrics = std::sync::Arc::new(metrics::Metrics::new());
    let shared = std::sync::Arc::new(proxy::Shared {
        access_log: rampart_telemetry::access_log::AccessLog::disabled(),
        metrics,
        https_port: config.listen.https.port().into(),
        acme: std::sync::Arc::default(),
    });
    proxy::Generation::build(config.clone(), shared, None)?;
    Ok(config)
}

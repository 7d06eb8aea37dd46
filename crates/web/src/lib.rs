//! The rampart web/application server: static files, the foobar application over MariaDB
//! with a read/write split, health endpoints, metrics and an access log.
//!
//! Entry points: [`Config::load`] (from `rampart_telemetry::config::ConfigFile`)
//! validates a config file and [`check`] also what it points at; [`Listeners::bind`] binds
//! its addresses; [`Web::new`] builds the server and [`Web::serve`] runs it until a
//! shutdown future resolves. `rampart web` in the binary is a thin wrapper around these.
//! [`Web`] is a `rampart_telemetry::service::Service`: the binary runs it through its one
//! runner, like every other service.

pub mod app;
pub mod config;
pub mod db;
mod etcd;
pub mod idempotency;
pub mod leader;
pub mod metrics;
pub mod pool;
pub mod schema;
pub mod server;
pub mod site;
pub mod static_files;

pub use config::Config;
pub use server::{Listeners, Web};

use rampart_telemetry::config::{Checker, ConfigErrors, ConfigFile};

/// Validates a config file and what it points at (certificates, CAs, the etcd client
/// certificate, password files, site root) without binding or starting anything. This is
/// `rampart check` for a web config.
pub fn check(path: &std::path::Path) -> Result<Config, ConfigErrors> {
    let config = Config::load(path)?;
    let mut c = Checker::new(path);
    if let Some(t) = &config.tls {
        if let Err(e) = rampart_tls::load_certified_key(&t.cert, &t.key) {
            c.err("tls.cert", e.to_string());
        }
        if let Some(ca) = &t.client_ca {
            if let Err(e) = rampart_tls::server_certs(ca) {
                c.err("tls.client_ca", e.to_string());
            }
        }
    }
    if let Some(d) = &config.database {
        if let Err(e) = db::read_password(&d.password_file) {
            c.err("database.password_file", e.to_string());
        }
        if let Some((_, f)) = &d.migrate_user {
            if let Err(e) = db::read_password(f) {
                c.err("database.migrate_password_file", e.to_string());
            }
        }
        if let Some(ca) = &d.ca {
            if let Err(e) = rampart_tls::server_certs(ca) {
                c.err("database.ca", e.to_string());
            }
        }
        if let Some(e) = &d.etcd {
            let tls = rampart_tls::ClientTls {
                ca: e.ca.clone(),
                client_cert: Some((e.cert.clone(), e.key.clone())),
            };
            if let Err(err) = rampart_tls::client_config(&tls) {
                c.err("database.etcd", err.to_string());
            }
        }
    }
    if let Some(root) = &config.site_root {
        if !config.install_default_site && !root.is_dir() {
            c.err("site.root", format!("{}: not a directory", root.display()));
        }
    }
    c.finish(config)
}

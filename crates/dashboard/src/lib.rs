//! The rampart monitoring dashboard (`rampart dashboard`, issue 5): a page on the
//! monitor host, behind a login, that draws QPS, errors, latency, backend health, host
//! resources and database replication from Prometheus's HTTP API as server-side SVG,
//! and lists the alerts Alertmanager sends to its webhook.
//!
//! Entry points: [`Config::load`] (from `rampart_telemetry::config::ConfigFile`; or
//! [`check`]) validates a config file;
//! [`Listeners::bind`] binds its address; [`Dashboard::new`] builds the server and
//! [`Dashboard::serve`] runs it until a shutdown future resolves.
//! [`Dashboard`] is a `rampart_telemetry::service::Service`: the binary runs it through its one
//! runner, like every other service.
//!
//! Modules: `config` (the TOML), `auth` (secrets, sessions, login links, the failed-login
//! limit), `alerts` (the webhook body and the persisted alert store), `prom` (the
//! Prometheus API client, also the log store's), `logs` (the log search: its parameters, LogQL
//! and the store's answers), `data` (the page's PromQL and the concurrent fetch), `metrics` (its own
//! `/metrics`), `svg`
//! (charts), `page` (HTML and the CSP) and `server` (HTTP, TLS, routing).

pub mod alerts;
pub mod auth;
pub mod config;
pub mod data;
pub mod logs;
pub mod metrics;
pub mod page;
pub mod prom;
pub mod server;
pub mod svg;

pub use config::Config;
pub use server::{Dashboard, DashboardError, Listeners};

use rampart_telemetry::config::{Checker, ConfigErrors, ConfigFile};

/// Validates a config file and what it points at (certificate and key, the secret files
/// when they exist, the alert state file when it exists) without binding, creating or
/// starting anything. This is `rampart check` for a dashboard config.
pub fn check(path: &std::path::Path) -> Result<Config, ConfigErrors> {
    let config = Config::load(path)?;
    let mut c = Checker::new(path);
    if let Err(e) = rampart_tls::load_certified_key(&config.tls.cert, &config.tls.key) {
        c.err("tls.cert", e.to_string());
    }
    for (key, file) in [
        ("auth.password_file", &config.auth.password_file),
        (
            "alerts.webhook_token_file",
            &config.alerts.webhook_token_file,
        ),
    ] {
        match auth::read_secret(file) {
            Ok(_) => {}
            // Created on start.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => c.err(key, e.to_string()),
        }
    }
    if let Err(e) = alerts::check_state_file(&config.alerts.state_file) {
        c.err("alerts.state_file", e.to_string());
    }
    c.finish(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_missing_certificates_and_unsafe_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("dashboard.toml");
        std::fs::write(
            &cfg,
            "[tls]\ncert = \"missing.pem\"\nkey = \"missing.key\"\n",
        )
        .unwrap();
        let pw = dir.path().join("dashboard.password");
        std::fs::write(&pw, "abcdefghijklmnopqrstuvwx\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(dir.path().join("alerts.json"), "nope").unwrap();
        let err = check(&cfg).unwrap_err();
        let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["tls.cert", "auth.password_file", "alerts.state_file"],
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
        // Nothing was created.
        assert!(!dir.path().join("alert-webhook.token").exists());
    }
}

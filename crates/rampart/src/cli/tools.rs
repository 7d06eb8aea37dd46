//! `rampart check` (validate a config of any kind), `rampart cert` (a local CA and
//! certificates) and the hidden `rampart forward` that isolated mode's `up` starts.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::serve::{runtime, terminated, Threads};

/// Which service's config a file is, for `rampart check --kind`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Lb,
    Web,
    Dns,
    Agent,
    Dashboard,
}

/// Tells a DNS, web or load balancer config apart by its keys.
fn detect_kind(path: &Path) -> Kind {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Kind::Lb;
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        return Kind::Lb;
    };
    if table.get("zone").is_some_and(toml::Value::is_table) {
        return Kind::Dns;
    }
    if table.get("agent").is_some_and(toml::Value::is_table) {
        return Kind::Agent;
    }
    if ["auth", "prometheus", "alerts", "page"]
        .iter()
        .any(|k| table.get(*k).is_some_and(toml::Value::is_table))
    {
        return Kind::Dashboard;
    }
    let web_listen = table
        .get("listen")
        .and_then(|l| l.as_table())
        .is_some_and(|l| l.contains_key("app"));
    if web_listen
        || ["name", "site", "database"]
            .iter()
            .any(|k| table.contains_key(*k))
    {
        Kind::Web
    } else {
        Kind::Lb
    }
}

pub(super) fn check(path: &Path, kind: Option<Kind>) -> ExitCode {
    let result = match kind.unwrap_or_else(|| detect_kind(path)) {
        Kind::Lb => rampart_lb::check(path).map(|_| ()),
        Kind::Web => rampart_web::check(path).map(|_| ()),
        Kind::Dns => rampart_dns::check(path).map(|_| ()),
        Kind::Agent => rampart_agent::config::check(path).map(|_| ()),
        Kind::Dashboard => rampart_dashboard::check(path).map(|_| ()),
    };
    match result {
        Ok(()) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

pub(super) fn cert(dir: &Path, names: &[String], hosts: &[String]) -> anyhow::Result<()> {
    let ca = rampart_tls::pki::Ca::load_or_create(dir, "rampart local CA").context("local CA")?;
    let site = ca
        .issue(dir, "site", names, false)
        .context("site certificate")?;
    println!("{} (key {})", site.cert.display(), site.key.display());
    for h in hosts {
        let issued = ca
            .issue(dir, h, std::slice::from_ref(h), true)
            .with_context(|| format!("host certificate {h}"))?;
        println!("{} (key {})", issued.cert.display(), issued.key.display());
    }
    println!("{}", dir.join("ca.pem").display());
    Ok(())
}
/// The forward process of isolated mode: binds here, then moves into the client's
/// namespace before any other thread exists, so every connection it opens starts there.
pub(super) fn forward(
    listen: std::net::SocketAddr,
    netns: &str,
    to: std::net::SocketAddr,
) -> ExitCode {
    let result = (|| -> anyhow::Result<()> {
        anyhow::ensure!(
            listen.ip().is_loopback(),
            "--listen {listen}: the forward listens on loopback only"
        );
        let listener =
            std::net::TcpListener::bind(listen).with_context(|| format!("bind tcp {listen}"))?;
        listener.set_nonblocking(true)?;
        rampart_infra::netns::enter(netns)?;
        let rt = runtime(Threads::Workers(1))?;
        rt.block_on(async {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            tracing::info!(%listen, %to, netns, "forward ready");
            rampart_infra::forward::serve(
                listener,
                to,
                rampart_infra::forward::Limits::default(),
                terminated()?,
            )
            .await;
            anyhow::Ok(())
        })
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart forward: {e:#}");
            ExitCode::FAILURE
        }
    }
}

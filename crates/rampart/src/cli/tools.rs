//! `rampart check` (validate a config of any kind), `rampart cert` (a local CA and
//! certificates) and the hidden `rampart forward` that isolated mode's `up` starts.

use std::path::{Path, PathBuf};
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
    /// The monitoring plane's ingest gate (`rampart gate`).
    Gate,
    /// The backup host's config (`rampart backup serve`).
    Backup,
    /// A topology file (`rampart up --topology`).
    Topology,
}

/// Tells a DNS, web, load balancer, agent, dashboard or backup config, or a topology
/// file, apart by its keys.
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
    // A topology file: `[hosts]` counts, `[segments]`, `[[host]]` pins, `names`,
    // `[monitor]` rules (an agent config has a `[host]` table, not an array of them).
    if ["hosts", "segments", "etcd", "names", "monitor"]
        .iter()
        .any(|k| table.contains_key(*k))
        || table.get("host").is_some_and(toml::Value::is_array)
    {
        return Kind::Topology;
    }
    if table.get("agent").is_some_and(toml::Value::is_table) {
        return Kind::Agent;
    }
    if ["store", "schedule", "archive"]
        .iter()
        .any(|k| table.get(*k).is_some_and(toml::Value::is_table))
    {
        return Kind::Backup;
    }
    if table.get("upstream").is_some_and(toml::Value::is_table) {
        return Kind::Gate;
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
    fn text<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<(), String> {
        r.map(|_| ()).map_err(|e| e.to_string())
    }
    let result = match kind.unwrap_or_else(|| detect_kind(path)) {
        Kind::Lb => text(rampart_lb::check(path)),
        Kind::Web => text(rampart_web::check(path)),
        Kind::Dns => text(rampart_dns::check(path)),
        Kind::Agent => text(rampart_agent::config::check(path)),
        Kind::Dashboard => text(rampart_dashboard::check(path)),
        Kind::Gate => text(rampart_gate::check(path)),
        Kind::Backup => text(
            <rampart_backup::config::Config as rampart_telemetry::config::ConfigFile>::load(path),
        ),
        Kind::Topology => text(read_topology(path).and_then(|site| monitor_rules(&site))),
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

/// Reads and validates a topology file; the errors name the file, line and key. The
/// paths of `[monitor] rules` come back absolute (relative ones are the file's
/// directory's); the rules files themselves are read by [`monitor_rules`].
pub(super) fn read_topology(
    path: &Path,
) -> Result<rampart_topology::file::Site, rampart_topology::file::FileErrors> {
    use rampart_topology::file::{FileError, FileErrors};
    let cannot = |what: &str, e: std::io::Error| {
        FileErrors(vec![FileError {
            file: path.display().to_string(),
            line: None,
            key: "(file)".into(),
            message: format!("cannot {what}: {e}"),
        }])
    };
    let text = std::fs::read_to_string(path).map_err(|e| cannot("read", e))?;
    let mut site = rampart_topology::file::parse(&path.display().to_string(), &text)?;
    let absolute = std::path::absolute(path).map_err(|e| cannot("resolve", e))?;
    if let Some(dir) = absolute.parent() {
        site.rules_relative_to(dir);
    }
    Ok(site)
}

/// Reads `site`'s `[monitor] rules` files and checks them with `promtool check rules`
/// (`rampart_infra::rules::load`): their contents for the plan, or every problem named
/// with the topology file, line and key. Without promtool, a warning says they are
/// unchecked.
pub(super) fn monitor_rules(
    site: &rampart_topology::file::Site,
) -> Result<Vec<rampart_topology::RuleFile>, rampart_topology::file::FileErrors> {
    let (files, checked) = rampart_infra::rules::load(site)?;
    if let rampart_infra::rules::Checked::Unchecked(warning) = checked {
        eprintln!("warning: {warning}");
    }
    Ok(files)
}

/// `rampart topology show [FILE]`: the built-in topology, or FILE's, as a file with
/// every computed address.
pub(super) fn topology_show(path: Option<&Path>) -> ExitCode {
    let spec = match path.map(read_topology) {
        None => rampart_topology::file::Site::default(),
        Some(Ok(spec)) => spec,
        Some(Err(e)) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    print!("{}", spec.to_file());
    ExitCode::SUCCESS
}

/// keepalived's notify: `TYPE NAME STATE PRIORITY` → `STATE` in `state_file`, replaced
/// atomically. Only the three states keepalived has are written.
pub(super) fn vrrp_notify(state_file: &Path, args: &[String]) -> ExitCode {
    let Some(state) = args
        .get(2)
        .filter(|s| matches!(s.as_str(), "MASTER" | "BACKUP" | "FAULT" | "STOP"))
    else {
        eprintln!("rampart vrrp-notify: expected TYPE NAME STATE PRIORITY, got {args:?}");
        return ExitCode::from(2);
    };
    match rampart_telemetry::fs::write_atomic(state_file, format!("{state}\n").as_bytes(), 0o644) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart vrrp-notify: {}: {e}", state_file.display());
            ExitCode::FAILURE
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
/// `rampart cgexec`: returns only when the program could not be executed.
pub(super) fn cgexec(
    procs: &[PathBuf],
    keep_open: bool,
    command: &[std::ffi::OsString],
) -> ExitCode {
    let Some((program, args)) = command.split_first() else {
        eprintln!("rampart cgexec: no program to run");
        return ExitCode::from(2);
    };
    let e = rampart_infra::cgroup::exec(procs, keep_open, program, args);
    eprintln!("rampart cgexec: {e}");
    ExitCode::from(1)
}

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

/// The site of `path` (the built-in one without it) with real addresses, as `render`
/// and `db init` plan it; errors are printed, with exit code 2.
fn real_site(
    path: Option<&Path>,
) -> Result<(rampart_topology::file::Site, rampart_topology::Topology), ExitCode> {
    let site = match path.map(read_topology) {
        None => rampart_topology::file::Site::default(),
        Some(Ok(site)) => site,
        Some(Err(e)) => {
            eprintln!("{e}");
            return Err(ExitCode::from(2));
        }
    };
    match site.topology(rampart_topology::Mode::Isolated, 0) {
        Ok(t) => Ok((site, t)),
        Err(e) => {
            eprintln!("{e}");
            Err(ExitCode::from(2))
        }
    }
}

/// `rampart render [--topology FILE] [--ssh-from NET]... --out DIR`: the site for real
/// hosts (see `rampart_infra::bundle`), with this binary copied to `DIR/bin/rampart` for
/// the playbook to install. Refused (2) without a network to accept ssh from: the
/// firewalls would lock the playbook out after its first run.
pub(super) fn render(path: Option<&Path>, out: &Path, ssh_from: &[String]) -> ExitCode {
    let (mut site, _) = match real_site(path) {
        Ok(both) => both,
        Err(code) => return code,
    };
    for net in ssh_from {
        match rampart_topology::file::ssh_network(net) {
            Some(n) if !site.ssh_from.contains(&n) => site.ssh_from.push(n),
            Some(_) => {}
            None => {
                eprintln!(
                    "rampart render: --ssh-from {net:?}: not an IPv4 address or network; write \
                     192.0.2.10 or 192.0.2.0/24 (no host bits)"
                );
                return ExitCode::from(2);
            }
        }
    }
    if site.ssh_from.is_empty() {
        eprintln!(
            "rampart render: {}: deploy.ssh_from: no network may reach ssh, so the rendered \
             firewalls would shut the playbook out after its first run; name where Ansible \
             connects from, with --ssh-from 192.0.2.10 or in the topology file:\n  \
             [deploy]\n  ssh_from = [\"192.0.2.10/32\"]",
            path.map_or_else(|| "(built-in site)".into(), |p| p.display().to_string())
        );
        return ExitCode::from(2);
    }
    let mut topology = match site.topology(rampart_topology::Mode::Isolated, 0) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // `[monitor] rules`: the files' contents travel in the monitor's bundle.
    topology.monitor_rules = match monitor_rules(&site) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = (|| -> anyhow::Result<rampart_infra::bundle::Rendered> {
        let rendered = rampart_infra::bundle::render(&topology, &site.to_file(), out)?;
        let exe = std::env::current_exe()?;
        let bin = out.join("bin");
        std::fs::create_dir_all(&bin)?;
        let bytes = std::fs::read(&exe)?;
        rampart_telemetry::fs::write_atomic(&bin.join("rampart"), &bytes, 0o755)?;
        Ok(rendered)
    })();
    match result {
        Ok(r) => {
            for b in &r.bundles {
                let units: Vec<&str> = b.units.iter().map(|(u, _)| u.unit.as_str()).collect();
                println!(
                    "  {:<10} {:>3} files  {}",
                    b.host,
                    b.files.len(),
                    units.join(" ")
                );
            }
            println!(
                "rendered {} hosts ({} files) into {}; deploy with: cd {} && ansible-playbook site.yml",
                r.bundles.len(),
                r.files,
                out.display(),
                out.join("ansible").display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rampart render: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `rampart db init HOST --topology FILE`: see `rampart_infra::bundle::init_database`.
pub(super) fn db_init(host: &str, file: &Path) -> ExitCode {
    let topology = match real_site(Some(file)) {
        Ok((_, t)) => t,
        Err(code) => return code,
    };
    match rampart_infra::bundle::init_database(&topology, host) {
        Ok(true) => {
            println!("{host}: new data directory with the site's accounts");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("{host}: data directory exists, left alone");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rampart db init: {e}");
            ExitCode::FAILURE
        }
    }
}

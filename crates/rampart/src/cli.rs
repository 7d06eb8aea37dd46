//! Command-line interface: argument parsing and the glue from a subcommand to its role.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 invalid config or usage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "rampart",
    version,
    about = "The secured and monitored web infrastructure, as one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum FirewallCommand {
    /// Print HOST's nftables ruleset, as `nft -f` loads it.
    Show { host: String },
}

/// The state directory shared by up, down, status, stop and start.
#[derive(clap::Args, Debug)]
struct StateArg {
    /// Where certificates, database data, configs, logs and pid files live.
    #[arg(long = "state", env = "RAMPART_STATE", default_value = ".rampart")]
    dir: PathBuf,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Lb,
    Web,
    Dns,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the load balancer (TLS termination, balancing, health checks).
    Lb {
        /// Path to the load balancer config (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a web/application server (static site, the foobar API, read/write split).
    Web {
        /// Path to the web server config (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the authoritative DNS server for the site's zone (UDP and TCP).
    Dns {
        /// Path to the DNS server config (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Bring up the whole topology: certificates, db1 and db2 with replication, web1,
    /// web2 and lb1. Stays attached (Ctrl-C stops everything) unless -d.
    Up {
        /// Run every host as processes on its own loopback address (no root needed).
        #[arg(long)]
        local: bool,
        /// Detach once everything is ready; `rampart down` stops it.
        #[arg(short, long)]
        detach: bool,
        /// Local mode's address block: hosts get 127.NET.x.y.
        #[arg(long, default_value_t = 0)]
        net: u8,
        #[command(flatten)]
        state: StateArg,
    },
    /// Stop everything `up` started; --purge also deletes the state directory.
    Down {
        /// Remove the state directory (certificates, database data, logs) too.
        #[arg(long)]
        purge: bool,
        #[command(flatten)]
        state: StateArg,
    },
    /// Show every host and service with its state.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArg,
    },
    /// Stop one host's services (for failure drills).
    Stop {
        host: String,
        #[command(flatten)]
        state: StateArg,
    },
    /// Start one host's services again and wait until they are ready.
    Start {
        host: String,
        #[command(flatten)]
        state: StateArg,
    },
    /// The per-host firewall (nftables) of the isolated topology.
    Firewall {
        #[command(subcommand)]
        command: FirewallCommand,
    },
    /// Validate a config file and the files it names, without starting anything.
    Check {
        /// The config file to check.
        config: PathBuf,
        /// What kind of config it is; by default told from its keys (a DNS config has a
        /// `[zone]` table; a web config has `name`, `site`, `database` or `listen.app`).
        #[arg(long, value_enum)]
        kind: Option<Kind>,
    },
    /// Create a local CA (if absent) and certificates signed by it.
    Cert {
        /// Directory for ca.pem/ca.key and the issued certificates.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// DNS names of the site certificate (written as site.pem/site.key).
        #[arg(long = "name", default_values_t = ["www.foobar.com".to_string(), "foobar.com".to_string()])]
        names: Vec<String>,
        /// Also issue a host certificate NAME.pem/NAME.key for internal mutual TLS.
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Check { config, kind } => check(&config, kind),
        Command::Cert { dir, names, hosts } => match cert(&dir, &names, &hosts) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rampart cert: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Lb { config } => lb(&config),
        Command::Web { config } => web(&config),
        Command::Dns { config } => dns(&config),
        Command::Up {
            local,
            detach,
            net,
            state,
        } => up(&state.dir, local, detach, net),
        Command::Down { purge, state } => down(&state.dir, purge),
        Command::Status { json, state } => status(&state.dir, json),
        Command::Stop { host, state } => host_cmd(&state.dir, &host, false),
        Command::Firewall {
            command: FirewallCommand::Show { host },
        } => firewall_show(&host),
        Command::Start { host, state } => host_cmd(&state.dir, &host, true),
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RAMPART_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,hyper=warn,rustls=warn,h2=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
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

fn check(path: &Path, kind: Option<Kind>) -> ExitCode {
    let result = match kind.unwrap_or_else(|| detect_kind(path)) {
        Kind::Lb => rampart_lb::check(path).map(|_| ()),
        Kind::Web => rampart_web::check(path).map(|_| ()),
        Kind::Dns => rampart_dns::check(path).map(|_| ()),
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

fn cert(dir: &Path, names: &[String], hosts: &[String]) -> anyhow::Result<()> {
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

fn lb(path: &Path) -> ExitCode {
    let config = match rampart_lb::Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = if config.worker_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if config.worker_threads > 1 {
            b.worker_threads(config.worker_threads);
        }
        b.enable_all().build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rampart lb: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_lb(config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rampart lb: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_lb(config: rampart_lb::Config) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{signal, SignalKind};
    let listeners = rampart_lb::Listeners::bind(&config).context("binding listeners")?;
    let addrs = (
        listeners.https.local_addr()?,
        listeners
            .http
            .as_ref()
            .map(|l| l.local_addr())
            .transpose()?,
        listeners
            .admin
            .as_ref()
            .map(|l| l.local_addr())
            .transpose()?,
    );
    let lb = match rampart_lb::Lb::new(config) {
        Ok(lb) => lb,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let reloader = {
        let lb = std::sync::Arc::clone(&lb);
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                // Errors are logged by reload itself; the old config stays.
                let _ = lb.reload().await;
            }
        })
    };
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    };
    lb.serve(listeners, shutdown, || {
        let show = |a: Option<std::net::SocketAddr>| a.map_or_else(|| "none".to_owned(), |a| a.to_string());
        tracing::info!(https = %addrs.0, http = %show(addrs.1), admin = %show(addrs.2), "load balancer ready");
    })
    .await?;
    reloader.abort();
    tracing::info!("load balancer stopped");
    Ok(ExitCode::SUCCESS)
}

fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        b.worker_threads(threads);
    }
    b.enable_all().build()
}

/// Resolves on SIGTERM or SIGINT.
fn terminated() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    })
}

fn web(path: &Path) -> ExitCode {
    let config = match rampart_web::Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime(config.worker_threads) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rampart web: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_web(config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rampart web: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_web(config: rampart_web::Config) -> anyhow::Result<ExitCode> {
    let listeners = rampart_web::Listeners::bind(&config).context("binding listeners")?;
    let web = match rampart_web::Web::new(config) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("rampart web: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    web.serve(listeners, terminated()?, || {}).await?;
    tracing::info!("web server stopped");
    Ok(ExitCode::SUCCESS)
}

fn dns(path: &Path) -> ExitCode {
    let config = match rampart_dns::Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // One UDP loop and a few TCP connections: two workers are plenty.
    let runtime = match runtime(2) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rampart dns: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_dns(config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rampart dns: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_dns(config: rampart_dns::Config) -> anyhow::Result<ExitCode> {
    let listeners = rampart_dns::Listeners::bind(&config).context("binding listeners")?;
    let dns = rampart_dns::Dns::new(config);
    dns.serve(listeners, terminated()?, || {}).await?;
    tracing::info!("dns server stopped");
    Ok(ExitCode::SUCCESS)
}

fn self_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("finding the rampart binary")
}

fn up(state: &Path, local: bool, detach: bool, net: u8) -> ExitCode {
    if !local {
        eprintln!(
            "rampart up: isolated mode (network namespaces) is not built yet; running in local mode"
        );
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rampart up: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_up(state, detach, net)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rampart up: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_up(state: &Path, detach: bool, net: u8) -> anyhow::Result<ExitCode> {
    use rampart_infra::local::Local;
    use std::sync::atomic::Ordering;
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut local = Local::new(state, net, self_exe()?)?;
    let cancel = std::sync::Arc::clone(&local.cancel);
    println!(
        "rampart: bringing up the topology in local mode (state in {})",
        local.paths.root.display()
    );
    let started = std::time::Instant::now();
    let work = tokio::task::spawn_blocking(move || {
        let mut step = 0;
        let r = local.up(&mut |what, took| {
            step += 1;
            println!("  [{step}] {what:<40} {:>6.2}s", took.as_secs_f64());
        });
        (local, r)
    });
    tokio::pin!(work);
    let mut interrupted = false;
    let (mut local, result) = loop {
        tokio::select! {
            r = &mut work => break r?,
            _ = int.recv(), if !interrupted => { interrupted = true; cancel.store(true, Ordering::Relaxed); eprintln!("rampart: interrupted; stopping what was started"); }
            _ = term.recv(), if !interrupted => { interrupted = true; cancel.store(true, Ordering::Relaxed); }
        }
    };
    if let Err(e) = result {
        match local.stop_started() {
            Ok(stopped) if !stopped.is_empty() => {
                eprintln!(
                    "rampart: stopped what this run started: {}",
                    stopped.join(", ")
                );
            }
            Ok(_) => {}
            Err(e) => eprintln!("rampart: could not stop what this run started: {e}"),
        }
        if interrupted {
            return Ok(ExitCode::FAILURE);
        }
        return Err(e.into());
    }
    println!(
        "rampart is up in {:.1}s: https://{}:{}/ through lb1\n\nTry:\n{}",
        started.elapsed().as_secs_f64(),
        local.topology.site_names[0],
        local.topology.ports.lb_https,
        local.next_steps()
    );
    if detach {
        println!("Detached. `rampart status` shows it; `rampart down` stops it.");
        return Ok(ExitCode::SUCCESS);
    }
    println!("Ctrl-C stops everything.");
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = tick.tick() => local.reap(),
        }
    }
    println!("rampart: stopping");
    let stopped = local.down()?;
    println!("rampart: stopped {}", stopped.join(", "));
    Ok(ExitCode::SUCCESS)
}

fn down(state: &Path, purge: bool) -> ExitCode {
    let result = (|| -> anyhow::Result<()> {
        let mut local = rampart_infra::local::Local::open(state, self_exe()?)?;
        let stopped = local.down()?;
        if stopped.is_empty() {
            println!("nothing was running");
        } else {
            println!("stopped {}", stopped.join(", "));
        }
        if purge {
            let root = local.paths.root.clone();
            std::fs::remove_dir_all(&root)
                .with_context(|| format!("removing {}", root.display()))?;
            println!("removed {}", root.display());
        }
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart down: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn status(state: &Path, json: bool) -> ExitCode {
    let local = match self_exe().and_then(|bin| Ok(rampart_infra::local::Local::open(state, bin)?))
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rampart status: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let st = local.status();
    if json {
        match serde_json::to_string_pretty(&st) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("rampart status: {e}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    println!(
        "mode {}  state {}  site {}",
        st.mode,
        st.state_dir.display(),
        st.url
    );
    println!(
        "{:<9} {:<11} {:<14} {:<8} {:<6} {:<9} pid",
        "host", "role", "address", "service", "port", "state"
    );
    for h in &st.hosts {
        if h.services.is_empty() {
            println!(
                "{:<9} {:<11} {:<14} {:<8}",
                h.name,
                h.role,
                h.addresses.join(","),
                "-"
            );
        }
        for s in &h.services {
            println!(
                "{:<9} {:<11} {:<14} {:<8} {:<6} {:<9} {}",
                h.name,
                h.role,
                h.addresses.join(","),
                s.name,
                s.port,
                s.state,
                s.pid.map_or_else(|| "-".to_owned(), |p| p.to_string())
            );
        }
    }
    ExitCode::SUCCESS
}

fn host_cmd(state: &Path, host: &str, start: bool) -> ExitCode {
    let result = (|| -> anyhow::Result<bool> {
        let mut local = rampart_infra::local::Local::open(state, self_exe()?)?;
        let t = std::time::Instant::now();
        let changed = if start {
            local.start_host(host)?
        } else {
            local.stop_host(host)?
        };
        let verb = match (start, changed) {
            (true, true) => "started and ready",
            (true, false) => "already running",
            (false, true) => "stopped",
            (false, false) => "was not running",
        };
        println!("{host}: {verb} ({:.2}s)", t.elapsed().as_secs_f64());
        Ok(changed)
    })();
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart {}: {e:#}", if start { "start" } else { "stop" });
            ExitCode::FAILURE
        }
    }
}

fn firewall_show(host: &str) -> ExitCode {
    let t = rampart_topology::Topology::default_for(rampart_topology::Mode::Isolated, 0);
    match t.host(host) {
        Some(h) => {
            print!("{}", rampart_topology::nft::ruleset(&t, h));
            ExitCode::SUCCESS
        }
        None => {
            let names: Vec<&str> = t.hosts.iter().map(|h| h.name.as_str()).collect();
            eprintln!(
                "rampart firewall show: no host {host}; the topology has {}",
                names.join(", ")
            );
            ExitCode::from(2)
        }
    }
}

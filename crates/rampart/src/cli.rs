//! Command-line interface: argument parsing and the glue from a subcommand to its role.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 invalid config or usage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rampart_telemetry::config::ConfigFile;

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
    /// Verify the rulesets loaded in a running isolated topology against the policy
    /// (exit 1 when any host differs).
    Check {
        #[command(flatten)]
        state: StateArg,
    },
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
    Agent,
    Dashboard,
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
    /// Run the monitoring agent: host metrics, the local services' metrics and access
    /// logs, database health, pushed to the monitor with Prometheus remote write.
    Agent {
        /// Path to the agent config (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the monitoring dashboard: QPS, errors, latency, backends, hosts, databases
    /// and alerts, drawn from Prometheus, behind a login.
    Dashboard {
        /// Path to the dashboard config (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Bring up the whole topology: certificates, dns, db1 and db2 with replication, web1,
    /// web2 and lb1. As root, each host is a network namespace with its own firewall
    /// (isolated mode); otherwise, or with --local, processes on loopback addresses.
    /// Stays attached (Ctrl-C stops everything) unless -d.
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
        /// Isolated mode: namespaces are named PREFIX-HOST (1-8 letters or digits).
        #[arg(long, default_value = rampart_infra::stack::DEFAULT_PREFIX)]
        prefix: String,
        /// Isolated mode: forward 127.0.0.1:PORT to the load balancer's HTTPS port
        /// through the client host (0: no forward).
        #[arg(long, default_value_t = rampart_infra::stack::DEFAULT_PUBLISH)]
        publish: u16,
        /// Isolated mode: forward 127.0.0.1:PORT to the monitor's dashboard (0: none).
        #[arg(long, default_value_t = rampart_infra::stack::DEFAULT_DASHBOARD_PUBLISH)]
        publish_dashboard: u16,
        /// Agents push every 2 s and alert rules use windows of minutes instead of
        /// hours: for demos and tests, not production.
        #[arg(long)]
        fast_monitor: bool,
        #[command(flatten)]
        state: StateArg,
    },
    /// Run a command inside a host of the isolated topology, e.g.
    /// `rampart exec client -- curl https://www.foobar.com/`. The command trusts
    /// rampart's CA (CURL_CA_BUNDLE, SSL_CERT_FILE).
    Exec {
        host: String,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<std::ffi::OsString>,
        #[command(flatten)]
        state: StateArg,
    },
    /// The forward `rampart up` runs in isolated mode: accepts on LISTEN (in this
    /// namespace) and connects to TO from inside NETNS.
    #[command(hide = true)]
    Forward {
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long)]
        netns: String,
        #[arg(long)]
        to: std::net::SocketAddr,
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
        Command::Agent { config } => agent(&config),
        Command::Dashboard { config } => dashboard(&config),
        Command::Up {
            local,
            detach,
            net,
            prefix,
            publish,
            publish_dashboard,
            fast_monitor,
            state,
        } => {
            let mode = if local || !rustix::process::geteuid().is_root() {
                UpMode::Local { net }
            } else {
                UpMode::Isolated {
                    prefix,
                    publish,
                    publish_dashboard,
                }
            };
            up(&state.dir, mode, detach, fast_monitor)
        }
        Command::Exec {
            host,
            command,
            state,
        } => exec(&state.dir, &host, &command),
        Command::Forward { listen, netns, to } => forward(listen, &netns, to),
        Command::Down { purge, state } => down(&state.dir, purge),
        Command::Status { json, state } => status(&state.dir, json),
        Command::Stop { host, state } => host_cmd(&state.dir, &host, false),
        Command::Firewall {
            command: FirewallCommand::Show { host },
        } => firewall_show(&host),
        Command::Firewall {
            command: FirewallCommand::Check { state },
        } => firewall_check(&state.dir),
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

fn check(path: &Path, kind: Option<Kind>) -> ExitCode {
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

fn agent(path: &Path) -> ExitCode {
    let config = match rampart_agent::config::Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // One thread: the agent's work is a few reads and one push per interval, and a
    // small footprint is part of its job (blocking reads go to tokio's blocking pool).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(2)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rampart agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let agent = rampart_agent::run::Agent::new(config)?;
        let instance = path.display().to_string();
        agent
            .run(
                terminated()?,
                || tracing::info!(config = %instance, "agent ready"),
            )
            .await
    });
    match result {
        Ok(()) => {
            tracing::info!("agent stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rampart agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dashboard(path: &Path) -> ExitCode {
    let config = match rampart_dashboard::Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime(2) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rampart dashboard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let listeners = rampart_dashboard::Listeners::bind(&config).context("binding listeners")?;
        let dashboard = rampart_dashboard::Dashboard::new(config)?;
        dashboard.serve(listeners, terminated()?, || {}).await?;
        anyhow::Ok(())
    });
    match result {
        Ok(()) => {
            tracing::info!("dashboard stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rampart dashboard: {e:#}");
            ExitCode::FAILURE
        }
    }
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

/// Which way `up` runs the topology.
enum UpMode {
    Local {
        net: u8,
    },
    Isolated {
        prefix: String,
        publish: u16,
        publish_dashboard: u16,
    },
}

fn up(state: &Path, mode: UpMode, detach: bool, fast_monitor: bool) -> ExitCode {
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
    match runtime.block_on(run_up(state, mode, detach, fast_monitor)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rampart up: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_up(
    state: &Path,
    mode: UpMode,
    detach: bool,
    fast_monitor: bool,
) -> anyhow::Result<ExitCode> {
    use rampart_infra::stack::Stack;
    use std::sync::atomic::Ordering;
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut local = match mode {
        UpMode::Local { net } => Stack::local(state, net, self_exe()?)?,
        UpMode::Isolated {
            prefix,
            publish,
            publish_dashboard,
        } => {
            let mut s = Stack::isolated(state, &prefix, publish, self_exe()?)?;
            s.dashboard_publish = publish_dashboard;
            s
        }
    };
    if fast_monitor {
        local.pace = rampart_topology::render::Pace::Fast;
    }
    let cancel = std::sync::Arc::clone(&local.cancel);
    println!(
        "rampart: bringing up the topology in {} mode (state in {})",
        local.mode(),
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
        "rampart is up in {:.1}s: {} through lb1\n\nTry:\n{}",
        started.elapsed().as_secs_f64(),
        local.status().url,
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
        let mut local = rampart_infra::stack::Stack::open(state, self_exe()?)?;
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
    let local = match self_exe().and_then(|bin| Ok(rampart_infra::stack::Stack::open(state, bin)?))
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
    let width = st
        .hosts
        .iter()
        .map(|h| h.addresses.join(",").len())
        .max()
        .unwrap_or(7)
        .max(7);
    println!(
        "{:<9} {:<11} {:<width$} {:<8} {:<6} {:<9} pid",
        "host", "role", "address", "service", "port", "state"
    );
    for h in &st.hosts {
        let addresses = h.addresses.join(",");
        if h.services.is_empty() {
            println!("{:<9} {:<11} {addresses:<width$} -", h.name, h.role);
        }
        for s in &h.services {
            println!(
                "{:<9} {:<11} {addresses:<width$} {:<8} {:<6} {:<9} {}",
                h.name,
                h.role,
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
        let mut local = rampart_infra::stack::Stack::open(state, self_exe()?)?;
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

/// Replaces this process with `ip netns exec <ns> COMMAND` for a host of the isolated
/// run in `state`, with rampart's CA as the trusted bundle for curl and OpenSSL.
fn exec(state: &Path, host: &str, command: &[std::ffi::OsString]) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let result = (|| -> anyhow::Result<std::io::Error> {
        let stack = rampart_infra::stack::Stack::open(state, self_exe()?)?;
        let Some(fabric) = &stack.fabric else {
            anyhow::bail!(
                "the run in {} is in local mode, where hosts share this machine's network: run the command directly",
                state.display()
            );
        };
        let Some(h) = stack.topology.host(host) else {
            let names: Vec<&str> = stack
                .topology
                .hosts
                .iter()
                .map(|h| h.name.as_str())
                .collect();
            anyhow::bail!("no host {host}; the topology has {}", names.join(", "));
        };
        let (program, args) = command
            .split_first()
            .context("no command given (rampart exec HOST -- COMMAND ...)")?;
        let ca = stack.paths.ca();
        let mut cmd = fabric.command(h, program)?;
        cmd.args(args)
            .env("CURL_CA_BUNDLE", &ca)
            .env("SSL_CERT_FILE", &ca);
        Ok(cmd.exec())
    })();
    match result {
        Ok(e) => {
            eprintln!("rampart exec: {e}");
            ExitCode::from(127)
        }
        Err(e) => {
            eprintln!("rampart exec: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The forward process of isolated mode: binds here, then moves into the client's
/// namespace before any other thread exists, so every connection it opens starts there.
fn forward(listen: std::net::SocketAddr, netns: &str, to: std::net::SocketAddr) -> ExitCode {
    let result = (|| -> anyhow::Result<()> {
        anyhow::ensure!(
            listen.ip().is_loopback(),
            "--listen {listen}: the forward listens on loopback only"
        );
        let listener =
            std::net::TcpListener::bind(listen).with_context(|| format!("bind tcp {listen}"))?;
        listener.set_nonblocking(true)?;
        rampart_infra::netns::enter(netns)?;
        let rt = runtime(1)?;
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

/// Compares the rulesets loaded in the run's namespaces with the rendered policy; exit 1
/// when any host differs (each difference printed under its host).
fn firewall_check(state: &Path) -> ExitCode {
    let result = (|| -> anyhow::Result<bool> {
        let stack = rampart_infra::stack::Stack::open(state, self_exe()?)?;
        let Some(fabric) = &stack.fabric else {
            anyhow::bail!(
                "the run in {} is in local mode, which has no nftables rulesets; the services' allow-lists enforce the policy there",
                state.display()
            );
        };
        let checks = rampart_infra::firewall::check(fabric)?;
        let mut ok = true;
        for c in &checks {
            if c.ok() {
                println!("{:<9} {:<18} ok", c.host, c.namespace);
            } else {
                ok = false;
                println!("{:<9} {:<18} DIFFERS", c.host, c.namespace);
                for p in &c.problems {
                    for line in p.lines() {
                        println!("    {line}");
                    }
                }
            }
        }
        Ok(ok)
    })();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("rampart firewall check: {e:#}");
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

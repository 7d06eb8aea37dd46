//! Command-line interface: the arguments (clap) and the dispatch from a subcommand to
//! the code that runs it. The services (`lb`, `web`, `dns`, `agent`, `dashboard`) all go
//! through one generic runner (`serve`), as does `keeper` with its own entry there; the operator commands that run the topology
//! (`up`, `down`, `status`, `stop`, `start`, `exec`, `switchover`, `scale`, `db rebuild`) are in `stack`, `db init` (on a deployed host) in `tools`, `firewall show|check`
//! in `firewall`, and `check`, `topology show`, `render`, `cert` and the hidden `forward` and `cgexec` in `tools`.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 invalid config or usage.

mod backup;
mod firewall;
mod serve;
mod stack;
mod tools;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use tools::Kind;

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

#[derive(Subcommand, Debug)]
enum TopologyCommand {
    /// Print the built-in topology (the seeds' site), or FILE's, as a topology file with
    /// every computed address: a file to start from.
    Show { file: Option<PathBuf> },
}

#[derive(Subcommand, Debug)]
enum DbCommand {
    /// On a host deployed by `rampart render`'s playbook: give database HOST a new data
    /// directory with the site's accounts, unless it has one (its
    /// rampart-db-init.service runs this once, before the keeper's first start).
    Init {
        host: String,
        /// The site's topology file on the host.
        #[arg(long, default_value = "/var/lib/rampart/topology.toml")]
        topology: PathBuf,
    },
    /// Give database HOST a new data directory copied from the current primary with
    /// mariadb-backup, while the primary keeps taking writes; HOST then replicates from
    /// there. For a server that diverged (its keeper shows `diverged`), lost its disk or
    /// fell behind the binlog's retention. The old data directory is kept beside the new
    /// one. Refused for the primary.
    Rebuild {
        host: String,
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

#[derive(Subcommand, Debug)]
enum BackupCommand {
    /// Run the backup service.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Take a backup now (full unless --incremental) and wait for it.
    Now {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        incremental: bool,
    },
    /// Restore the latest backup and the archive to a replica's snapshot and compare
    /// every table's checksum.
    Verify {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The latest backups, the restore window and the archive's lag (JSON).
    Status {
        #[arg(long, short)]
        config: PathBuf,
    },
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
    /// Run a database keeper: starts the database server (the command after `--`) as
    /// its child, and holds or follows the primary's leadership in etcd.
    Keeper {
        /// Path to the keeper config (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// The database server's command line.
        #[arg(last = true, required = true)]
        server: Vec<std::ffi::OsString>,
    },
    /// Run the monitoring dashboard: QPS, errors, latency, backends, hosts, databases
    /// and alerts, drawn from Prometheus, behind a login.
    Dashboard {
        /// Path to the dashboard config (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the monitoring plane's ingest gate: remote write only, each host only under
    /// its own `instance` label, in front of Prometheus.
    Gate {
        /// Path to the gate config (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the central log store: Loki's push and query API (a subset of LogQL) over
    /// SQLite, for the monitoring plane's clients only.
    Logs {
        /// Path to the log store config (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Backups on the backup host: `serve` runs its service (schedule, binlog
    /// archiving, verify, metrics); `now`, `verify` and `status` ask it.
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Restore from the backup store into a scratch server under DIR: the newest
    /// backup before the target, then the archived binlog up to it. Shows the tables
    /// and row counts it restored.
    Restore {
        /// The backup host's config (its store and key).
        #[arg(long, short, required_unless_present = "in_place")]
        config: Option<PathBuf>,
        /// A UTC time (`2026-12-05 10:31:00`) or unix seconds: the state then.
        #[arg(long)]
        to: Option<String>,
        /// A GTID (`0-1-42`): the state right after it.
        #[arg(long)]
        to_gtid: Option<String>,
        /// A new directory for the restored server (created 0700).
        #[arg(
            long,
            required_unless_present = "in_place",
            conflicts_with = "in_place"
        )]
        into: Option<PathBuf>,
        /// Rebuild the running site's database servers (`--state`) from the restore,
        /// after a confirmation: they stop, the first takes the restored data, the
        /// others are copied from it, and they start again. Their previous data
        /// directories are kept beside the new ones.
        #[arg(long)]
        in_place: bool,
        /// With --in-place: do not ask for the confirmation.
        #[arg(long, requires = "in_place")]
        yes: bool,
        #[command(flatten)]
        state: StateArg,
    },
    /// Bring up the whole topology: certificates, dns, db1 and db2 with replication, web1,
    /// web2 and lb1. As root, each host is a network namespace with its own firewall
    /// (isolated mode); otherwise, or with --local, processes on loopback addresses.
    /// Stays attached (Ctrl-C stops everything) unless -d.
    Up {
        /// Run every host as processes on its own loopback address (no root needed).
        #[arg(long)]
        local: bool,
        /// The site to bring up (`rampart topology show` prints the built-in one to
        /// start from). Kept in the state directory: later commands use it, and a later
        /// `up` without --topology keeps it.
        #[arg(long)]
        topology: Option<PathBuf>,
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
        /// After an automatic failover of the primary database, refuse another one for
        /// this long (no flapping back and forth): 5m by default.
        #[arg(long, value_parser = duration, default_value = "5m")]
        failover_quiet_period: std::time::Duration,
        /// Test only: let the primary fall back to asynchronous replication when its
        /// standby does not acknowledge within this time. It CAN LOSE ACKNOWLEDGED
        /// WRITES; the failover test uses it to prove its checker can fail.
        #[arg(long, value_parser = duration, hide = true)]
        unsafe_semi_sync_fallback: Option<std::time::Duration>,
        #[command(flatten)]
        state: StateArg,
    },
    /// A planned change of the primary database: the primary stops taking writes (the
    /// web servers hold them), its sync standby catches up and takes over. Writes pause
    /// for well under a second; none fails.
    Switchover {
        /// The database host to hand over to (default: the sync standby, the only one
        /// that can take over without losing writes).
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        state: StateArg,
    },
    /// Write the site for real hosts: a bundle per host (configs, certificates and keys,
    /// its nftables ruleset, hardened systemd units and drop-ins for the packaged
    /// services) and an Ansible inventory and playbook that deploy them. Certificates and
    /// passwords are made once in OUT/state (0700) and reused by later renders.
    Render {
        /// The site (without it, the built-in one).
        #[arg(long)]
        topology: Option<PathBuf>,
        /// The output directory (created 0700).
        #[arg(long)]
        out: PathBuf,
        /// A network Ansible connects from over ssh (`192.0.2.10` or `192.0.2.0/24`),
        /// added to the topology's `[deploy] ssh_from`; repeatable. The firewalls open
        /// ssh to these alone, so at least one is required.
        #[arg(long = "ssh-from", value_name = "NET")]
        ssh_from: Vec<String>,
    },
    /// The topology file: the site's names, hosts by role and count, segments, etcd
    /// members and pinned addresses.
    Topology {
        #[command(subcommand)]
        command: TopologyCommand,
    },
    /// Change the number of web servers, replicas or load balancers of the running
    /// site: edits its topology file (kept in the state directory) and applies it like
    /// `up --topology` does. `rampart scale web=4 replicas=2 lb=2`.
    Scale {
        /// ROLE=N, for web (1 or more), replicas (0 or more) and lb (1 or 2).
        #[arg(required = true)]
        counts: Vec<String>,
        #[command(flatten)]
        state: StateArg,
    },
    /// Database operations on a running topology.
    Db {
        #[command(subcommand)]
        command: DbCommand,
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
    /// keepalived's notify script on a load-balancer pair: writes the VRRP state
    /// (keepalived appends: type, name, state, priority) to --state-file.
    #[command(hide = true)]
    VrrpNotify {
        #[arg(long)]
        state_file: PathBuf,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Renew the run's certificates: issue each one past two thirds of its life again
    /// (same names and usages, the topology's `[certificates] lifetime`). The services
    /// load renewed files at their next handshake. `rampart up` runs it with --watch.
    Renew {
        #[command(flatten)]
        state: StateArg,
        /// Keep going: look again every 1/60 of the lifetime (1 s to 1 h), until SIGTERM.
        #[arg(long)]
        watch: bool,
        /// With --watch: a file written once the first pass is done (readiness).
        #[arg(long, requires = "watch")]
        ready: Option<PathBuf>,
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
    /// What `rampart up` runs each isolated host's services through: adds this process
    /// to every PROCS file (a cgroup's `cgroup.procs`), then executes PROGRAM with the
    /// same pid, so it and everything it starts are in the host's cgroups.
    #[command(hide = true)]
    Cgexec {
        #[arg(long, required = true)]
        procs: Vec<PathBuf>,
        /// Keep the cgroups' directories open across the exec (the agent reads them).
        #[arg(long)]
        keep_open: bool,
        #[arg(last = true, required = true)]
        command: Vec<std::ffi::OsString>,
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
/// A duration argument: `250ms`, `10s`, `5m`, `1h`.
fn duration(s: &str) -> Result<std::time::Duration, String> {
    rampart_telemetry::config::parse_duration(s).ok_or_else(|| {
        format!("`{s}` is not a duration; expected a number with ms, s, m or h, such as 30s")
    })
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Check { config, kind } => tools::check(&config, kind),
        Command::Cert { dir, names, hosts } => match tools::cert(&dir, &names, &hosts) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rampart cert: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Lb { config } => serve::run::<rampart_lb::Lb>(&config),
        Command::Web { config } => serve::run::<rampart_web::Web>(&config),
        Command::Dns { config } => serve::run::<rampart_dns::Dns>(&config),
        Command::Agent { config } => serve::run::<rampart_agent::run::Agent>(&config),
        Command::Dashboard { config } => serve::run::<rampart_dashboard::Dashboard>(&config),
        Command::Gate { config } => serve::run::<rampart_gate::Gate>(&config),
        Command::Logs { config } => serve::run::<rampart_logs::Logs>(&config),
        Command::Keeper { config, server } => serve::keeper(&config, server),
        Command::Backup { command } => match command {
            BackupCommand::Serve { config } => backup::serve(&config),
            BackupCommand::Now {
                config,
                incremental,
            } => backup::ask(&config, "now", incremental),
            BackupCommand::Verify { config } => backup::ask(&config, "verify", false),
            BackupCommand::Status { config } => backup::ask(&config, "status", false),
        },
        Command::Restore {
            config,
            to,
            to_gtid,
            into,
            in_place,
            yes,
            state,
        } => match (config, into) {
            _ if in_place => {
                backup::restore_in_place(&state.dir, to.as_deref(), to_gtid.as_deref(), yes)
            }
            (Some(config), Some(into)) => {
                backup::restore_cmd(&config, to.as_deref(), to_gtid.as_deref(), &into)
            }
            // clap requires both without --in-place.
            _ => ExitCode::from(2),
        },
        Command::Up {
            local,
            topology,
            detach,
            net,
            prefix,
            publish,
            publish_dashboard,
            fast_monitor,
            failover_quiet_period,
            unsafe_semi_sync_fallback,
            state,
        } => {
            let mode = if local || !rustix::process::geteuid().is_root() {
                stack::UpMode::Local { net }
            } else {
                stack::UpMode::Isolated {
                    prefix,
                    publish,
                    publish_dashboard,
                }
            };
            let options = stack::UpOptions {
                topology,
                fast_monitor,
                failover: rampart_topology::render::Failover {
                    quiet_period: failover_quiet_period,
                    semi_sync_fallback: unsafe_semi_sync_fallback,
                },
            };
            stack::up(&state.dir, mode, detach, options)
        }
        Command::Exec {
            host,
            command,
            state,
        } => stack::exec(&state.dir, &host, &command),
        Command::Forward { listen, netns, to } => tools::forward(listen, &netns, to),
        Command::Cgexec {
            procs,
            keep_open,
            command,
        } => tools::cgexec(&procs, keep_open, &command),
        Command::Renew {
            state,
            watch,
            ready,
        } => stack::renew(&state.dir, watch, ready.as_deref()),
        Command::Down { purge, state } => stack::down(&state.dir, purge),
        Command::Status { json, state } => stack::status(&state.dir, json),
        Command::Switchover { to, state } => stack::switchover(&state.dir, to.as_deref()),
        Command::Scale { counts, state } => stack::scale(&state.dir, &counts),
        Command::VrrpNotify { state_file, args } => tools::vrrp_notify(&state_file, &args),
        Command::Render {
            topology,
            out,
            ssh_from,
        } => tools::render(topology.as_deref(), &out, &ssh_from),
        Command::Topology {
            command: TopologyCommand::Show { file },
        } => tools::topology_show(file.as_deref()),
        Command::Db {
            command: DbCommand::Rebuild { host, state },
        } => stack::rebuild(&state.dir, &host),
        Command::Db {
            command: DbCommand::Init { host, topology },
        } => tools::db_init(&host, &topology),
        Command::Stop { host, state } => stack::host_cmd(&state.dir, &host, false),
        Command::Firewall {
            command: FirewallCommand::Show { host },
        } => firewall::show(&host),
        Command::Firewall {
            command: FirewallCommand::Check { state },
        } => firewall::check(&state.dir),
        Command::Start { host, state } => stack::host_cmd(&state.dir, &host, true),
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

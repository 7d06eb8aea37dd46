//! The orchestrator of a run of the whole topology, in either mode, with all state in
//! one directory.
//!
//! - **Local mode** (`rampart up --local`, no root needed): each host is a set of processes
//!   on its own loopback address `127.<net>.<segment>.<host>`.
//! - **Isolated mode** (`rampart up` as root): each host is a network namespace of the
//!   [`Fabric`] with its own nftables ruleset; services run inside their host's namespace
//!   (`ip netns exec`), the client host resolves names through the topology's DNS server,
//!   and a forward on 127.0.0.1 (see [`crate::forward`]) lets the operator reach the load
//!   balancer through the client host. Readiness and status probes run on a thread inside
//!   the probed host's namespace ([`netns::run_in`]), so nothing is ever sent from the root
//!   namespace to a topology address.
//!
//! `up` creates what is missing (CA and certificates, database passwords, data
//! directories; in isolated mode the namespaces, bridges, links and firewalls), writes every
//! host's config from the topology, and starts the services in dependency order, waiting
//! on each one's readiness (never a sleep): dns, db1, then db2 with replication and
//! semi-sync, then web1 and web2 (`/readyz`: schema migrated, primary reachable), then lb1
//! (every backend in rotation), then the forward. Services are child processes in their
//! own process groups, recorded in pid files under `hosts/<host>/`, so `down`, `stop`,
//! `start` and `status` work from any later invocation, and a stale pid file (crash,
//! reboot) is recognised by the process start time and ignored. `down` stops every
//! service and, in isolated mode, deletes the namespaces by name (and with them every
//! interface) and the client's resolver file.
//!
//! State directory layout (see [`StatePaths`]): `run.json` (mode, address block, namespace
//! prefix and forward port of the run), `certs/` (CA, site and host certificates; keys
//! 0600), `secrets/` (database passwords, 0600), `hosts/<host>/` (configs, logs, pid files,
//! data).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_topology::policy::MONITOR_INGEST_PORT;
use rampart_topology::render::{
    agent_config, alertmanager_addr, dashboard_config, dns_config, lb_config, web_config, Pace,
    StatePaths, AGENT_METRICS_PORT, DASHBOARD_PORT,
};
use rampart_topology::{Host, Mode, Role, Segment, Topology};
use serde::{Deserialize, Serialize};

use crate::mariadb::{self, Grants, Instance};
use crate::netns::{self, Fabric};
use crate::process::{self, InfraError, Spec};
use rampart_topology::monitor;

/// How long a service may take to come ready before `up` gives up on it.
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// How long a service may take to stop on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// The namespace prefix of isolated mode unless told otherwise.
pub const DEFAULT_PREFIX: &str = "rampart";
/// The port on 127.0.0.1 that isolated mode forwards to the load balancer's HTTPS port.
pub const DEFAULT_PUBLISH: u16 = 8443;
/// The port on 127.0.0.1 that isolated mode forwards to the monitor's dashboard.
pub const DEFAULT_DASHBOARD_PUBLISH: u16 = 9443;

/// What `up` recorded about the run, so later commands address the same hosts.
#[derive(Debug, Serialize, Deserialize)]
struct RunFile {
    mode: String,
    #[serde(default)]
    net: u8,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    publish: Option<u16>,
    #[serde(default)]
    dashboard_publish: Option<u16>,
    /// "fast" for `up --fast-monitor`.
    #[serde(default)]
    pace: Option<String>,
}

/// One service of a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Mariadb,
    Web,
    Lb,
    Dns,
    /// Isolated mode's forward from 127.0.0.1 into the client host.
    Forward,
    /// The monitoring agent, on every host with a management address.
    Agent,
    Prometheus,
    Alertmanager,
    Dashboard,
    /// Isolated mode's forward from 127.0.0.1 to the dashboard, through the monitor host.
    DashboardForward,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Mariadb => "mariadb",
            Service::Web => "web",
            Service::Lb => "lb",
            Service::Dns => "dns",
            Service::Forward => "forward",
            Service::Agent => "agent",
            Service::Prometheus => "prometheus",
            Service::Alertmanager => "alertmanager",
            Service::Dashboard => "dashboard",
            Service::DashboardForward => "dashboard-forward",
        }
    }
}

/// The state of one service as `status` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceStatus {
    pub name: &'static str,
    /// The service's main port.
    pub port: u16,
    /// Every port it listens on, by purpose.
    pub ports: std::collections::BTreeMap<&'static str, u16>,
    /// `running` (process alive and main port accepting), `starting` (alive, port not
    /// yet accepting) or `stopped`.
    pub state: &'static str,
    pub pid: Option<u32>,
    pub log: PathBuf,
}

#[derive(Clone, Debug, Serialize)]
pub struct HostStatus {
    pub name: String,
    pub role: &'static str,
    pub addresses: Vec<String>,
    pub services: Vec<ServiceStatus>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub mode: &'static str,
    /// Isolated mode: the namespace of each host is `<prefix>-<host>`.
    pub prefix: Option<String>,
    /// Isolated mode: the port on 127.0.0.1 forwarded to the load balancer.
    pub publish: Option<u16>,
    pub state_dir: PathBuf,
    pub ca_cert: PathBuf,
    pub url: String,
    pub hosts: Vec<HostStatus>,
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Client => "client",
        Role::Dns => "dns",
        Role::Lb => "lb",
        Role::Web => "web",
        Role::DbPrimary => "db-primary",
        Role::DbReplica => "db-replica",
        Role::Monitor => "monitor",
    }
}

/// A local run of the topology, rooted at a state directory.
#[derive(Debug)]
pub struct Stack {
    pub topology: Topology,
    pub paths: StatePaths,
    /// The `rampart` binary that runs the services.
    pub bin: PathBuf,
    /// Set from a signal handler to abandon `up` between steps and during waits.
    pub cancel: Arc<AtomicBool>,
    /// Isolated mode's network; `None` in local mode.
    pub fabric: Option<Fabric>,
    /// Isolated mode: the port on 127.0.0.1 forwarded to the load balancer (0: none).
    pub publish: u16,
    /// Isolated mode: the port on 127.0.0.1 forwarded to the dashboard (0: none).
    pub dashboard_publish: u16,
    /// How fast agents push and rules react.
    pub pace: Pace,
    children: Vec<Child>,
    started: Vec<String>,
}

impl Stack {
    /// A local-mode run at `state` (made absolute) with loopback block `127.<net>.x.y`.
    pub fn local(state: &Path, net: u8, bin: PathBuf) -> Result<Stack, InfraError> {
        Ok(Stack {
            topology: Topology::default_for(Mode::Local, net),
            paths: StatePaths::new(&absolute(state)?),
            bin,
            cancel: Arc::new(AtomicBool::new(false)),
            fabric: None,
            publish: 0,
            dashboard_publish: 0,
            pace: Pace::Production,
            children: Vec::new(),
            started: Vec::new(),
        })
    }

    /// An isolated-mode run at `state` whose namespaces are `<prefix>-<host>`, with the
    /// load balancer published on `127.0.0.1:<publish>` (0: not published).
    pub fn isolated(
        state: &Path,
        prefix: &str,
        publish: u16,
        bin: PathBuf,
    ) -> Result<Stack, InfraError> {
        let topology = Topology::default_for(Mode::Isolated, 0);
        Ok(Stack {
            fabric: Some(Fabric::new(prefix, topology.clone())?),
            topology,
            paths: StatePaths::new(&absolute(state)?),
            bin,
            cancel: Arc::new(AtomicBool::new(false)),
            publish,
            dashboard_publish: DEFAULT_DASHBOARD_PUBLISH,
            pace: Pace::Production,
            children: Vec::new(),
            started: Vec::new(),
        })
    }

    /// The mode's name as `run.json` and `status` show it.
    pub fn mode(&self) -> &'static str {
        if self.fabric.is_some() {
            "isolated"
        } else {
            "local"
        }
    }

    /// The run recorded in `state` by an earlier `up`.
    pub fn open(state: &Path, bin: PathBuf) -> Result<Stack, InfraError> {
        let file = state.join("run.json");
        let text = std::fs::read_to_string(&file).map_err(|e| {
            InfraError::Invalid(format!(
                "{}: {e}; is there a run here? (`rampart up --local` creates it)",
                file.display()
            ))
        })?;
        let run: RunFile = serde_json::from_str(&text)
            .map_err(|e| InfraError::Invalid(format!("{}: {e}", file.display())))?;
        let mut stack = match run.mode.as_str() {
            "local" => Stack::local(state, run.net, bin),
            "isolated" => Stack::isolated(
                state,
                run.prefix.as_deref().unwrap_or(DEFAULT_PREFIX),
                run.publish.unwrap_or(0),
                bin,
            ),
            other => Err(InfraError::Invalid(format!(
                "{}: unknown mode {other}; expected local or isolated",
                file.display()
            ))),
        }?;
        if stack.fabric.is_some() {
            stack.dashboard_publish = run.dashboard_publish.unwrap_or(0);
        }
        if run.pace.as_deref() == Some("fast") {
            stack.pace = Pace::Fast;
        }
        Ok(stack)
    }

    /// The namespace `host` runs in (isolated mode).
    pub fn namespace(&self, host: &Host) -> Option<String> {
        self.fabric.as_ref().map(|f| f.ns(host))
    }

    /// Runs `f` where `host`'s addresses are reachable: on a thread inside its namespace
    /// in isolated mode, here in local mode.
    fn probe<T: Send>(&self, host: &Host, f: impl FnOnce() -> T + Send) -> Result<T, InfraError> {
        match self.namespace(host) {
            Some(ns) => netns::run_in(&ns, f),
            None => Ok(f()),
        }
    }

    fn host(&self, name: &str) -> Result<&Host, InfraError> {
        self.topology.host(name).ok_or_else(|| {
            let names: Vec<&str> = self
                .topology
                .hosts
                .iter()
                .map(|h| h.name.as_str())
                .collect();
            InfraError::Invalid(format!(
                "no host {name}; the topology has {}",
                names.join(", ")
            ))
        })
    }

    /// A host's services in start order. Every host with a management address runs an
    /// agent, after its own service so the agent's first collection finds it.
    fn services(&self, host: &Host) -> &'static [Service] {
        use Service::*;
        match host.role {
            Role::DbPrimary | Role::DbReplica => &[Mariadb, Agent],
            Role::Web => &[Web, Agent],
            Role::Lb => &[Lb, Agent],
            Role::Dns if self.has_mgmt(host) => &[Dns, Agent],
            Role::Dns => &[Dns],
            // The dashboard first: it creates the webhook token Alertmanager sends.
            Role::Monitor if self.fabric.is_some() && self.dashboard_publish != 0 => {
                &[Dashboard, Alertmanager, Prometheus, Agent, DashboardForward]
            }
            Role::Monitor => &[Dashboard, Alertmanager, Prometheus, Agent],
            Role::Client if self.fabric.is_some() && self.publish != 0 => &[Forward],
            Role::Client => &[],
        }
    }

    fn has_mgmt(&self, host: &Host) -> bool {
        host.segments.iter().any(|(s, _)| *s == Segment::Mgmt)
    }

    /// The monitor host, whose Prometheus every agent pushes to.
    fn monitor(&self) -> Option<&Host> {
        self.topology.with_role(Role::Monitor).next()
    }

    fn instance(&self, host: &Host) -> Instance {
        let t = &self.topology;
        let (role, server_id) = match host.role {
            Role::DbReplica => (mariadb::Role::Replica, 2 + self.replica_index(host)),
            _ => (mariadb::Role::Primary, 1),
        };
        Instance {
            name: host.name.clone(),
            role,
            server_id,
            bind: t.addr(host, Segment::Data),
            port: t.ports.db,
            dir: self.paths.host(&host.name),
            netns: self.namespace(host),
        }
    }

    fn replica_index(&self, host: &Host) -> u32 {
        let i = self
            .topology
            .with_role(Role::DbReplica)
            .position(|h| h.name == host.name)
            .unwrap_or(0);
        u32::try_from(i).unwrap_or(0)
    }

    fn primary(&self) -> Result<Instance, InfraError> {
        self.topology
            .with_role(Role::DbPrimary)
            .next()
            .map(|h| self.instance(h))
            .ok_or_else(|| InfraError::Invalid("the topology has no database primary".into()))
    }

    fn grants(&self) -> Grants {
        let t = &self.topology;
        let src = |role: Role, seg: Segment| -> Vec<String> {
            let mut v: Vec<String> = t
                .with_role(role)
                .map(|h| t.source_addr(h, seg).to_string())
                .collect();
            v.sort();
            v.dedup();
            v
        };
        Grants {
            app_hosts: src(Role::Web, Segment::Data),
            replica_hosts: src(Role::DbReplica, Segment::Data),
            monitor_hosts: {
                let mut v = src(Role::DbPrimary, Segment::Mgmt);
                v.extend(src(Role::DbReplica, Segment::Mgmt));
                v.sort();
                v.dedup();
                v
            },
        }
    }

    fn pid_file(&self, host: &Host, svc: Service) -> PathBuf {
        match svc {
            Service::Mariadb => self.instance(host).pid_file(),
            _ => self
                .paths
                .host(&host.name)
                .join(format!("{}.pid", svc.name())),
        }
    }

    fn log_file(&self, host: &Host, svc: Service) -> PathBuf {
        match svc {
            Service::Mariadb => self.instance(host).log_file(),
            _ => self
                .paths
                .host(&host.name)
                .join(format!("{}.log", svc.name())),
        }
    }

    fn config_file(&self, host: &Host, svc: Service) -> PathBuf {
        let ext = match svc {
            Service::Prometheus | Service::Alertmanager => "yml",
            _ => "toml",
        };
        self.paths
            .host(&host.name)
            .join(format!("{}.{ext}", svc.name()))
    }

    fn ports(&self, host: &Host, svc: Service) -> std::collections::BTreeMap<&'static str, u16> {
        let p = &self.topology.ports;
        match svc {
            Service::Mariadb => vec![("mysql", p.db)],
            Service::Web => vec![("https", p.web), ("admin", p.web_admin)],
            Service::Lb => vec![
                ("https", p.lb_https),
                ("http", p.lb_http),
                ("admin", p.lb_admin),
            ],
            Service::Dns => vec![("dns", p.dns)],
            Service::Forward => vec![("forward", self.publish)],
            Service::Agent => vec![("metrics", AGENT_METRICS_PORT)],
            Service::Prometheus => vec![("ingest", MONITOR_INGEST_PORT)],
            Service::Alertmanager => vec![("api", rampart_topology::render::ALERTMANAGER_PORT)],
            Service::Dashboard => vec![("https", DASHBOARD_PORT)],
            Service::DashboardForward => vec![("forward", self.dashboard_publish)],
        }
        .into_iter()
        .filter(|_| self.services(host).contains(&svc))
        .collect()
    }

    /// The local CA, the site certificate and a certificate per web and lb host, created
    /// when missing.
    pub fn ensure_certs(&self) -> Result<(), InfraError> {
        let dir = self.paths.certs();
        let ca = rampart_tls::pki::Ca::load_or_create(&dir, "rampart local CA")
            .map_err(|e| InfraError::Invalid(format!("local CA in {}: {e}", dir.display())))?;
        let issue = |stem: &str, names: &[String], client: bool| -> Result<(), InfraError> {
            if dir.join(format!("{stem}.pem")).exists() && dir.join(format!("{stem}.key")).exists()
            {
                return Ok(());
            }
            ca.issue(&dir, stem, names, client)
                .map(|_| ())
                .map_err(|e| InfraError::Invalid(format!("certificate {stem}: {e}")))
        };
        issue("site", &self.topology.site_names, false)?;
        for h in self
            .topology
            .hosts
            .iter()
            .filter(|h| matches!(h.role, Role::Web | Role::Lb))
        {
            issue(&h.name, std::slice::from_ref(&h.name), true)?;
        }
        // The dashboard's: reached at its management address (Alertmanager's webhook)
        // and through the operator's forward on 127.0.0.1.
        if let Some(m) = self.monitor() {
            let mut names = vec![
                m.name.clone(),
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
            ];
            let mgmt = self.topology.addr(m, Segment::Mgmt).to_string();
            if !names.contains(&mgmt) {
                names.push(mgmt);
            }
            issue(&m.name, &names, false)?;
        }
        Ok(())
    }

    fn write_run_file(&self) -> Result<(), InfraError> {
        let run = RunFile {
            mode: self.mode().into(),
            net: self
                .topology
                .hosts
                .first()
                .map_or(0, |h| h.local.octets()[1]),
            prefix: self.fabric.as_ref().map(|f| f.prefix.clone()),
            publish: self.fabric.as_ref().map(|_| self.publish),
            dashboard_publish: self.fabric.as_ref().map(|_| self.dashboard_publish),
            pace: match self.pace {
                Pace::Fast => Some("fast".into()),
                Pace::Production => None,
            },
        };
        let file = self.paths.root.join("run.json");
        let text =
            serde_json::to_string_pretty(&run).map_err(|e| InfraError::Invalid(e.to_string()))?;
        std::fs::write(&file, text + "\n").map_err(|e| InfraError::io("write", &file, e))
    }

    /// Brings up every host, reporting each step with its duration through `progress`.
    pub fn up(&mut self, progress: &mut dyn FnMut(&str, Duration)) -> Result<(), InfraError> {
        mariadb::check_installed()?;
        let t0 = Instant::now();
        std::fs::create_dir_all(&self.paths.root)
            .map_err(|e| InfraError::io("create directory", &self.paths.root, e))?;
        self.write_run_file()?;
        self.ensure_certs()?;
        mariadb::Secrets::load_or_create(&self.paths.secrets())?;
        progress("certificates and secrets", t0.elapsed());
        if self.fabric.is_some() {
            self.up_network(progress)?;
        }
        let order: Vec<String> = self.start_order();
        for name in order {
            self.check_cancel()?;
            let t = Instant::now();
            let started = self.start_host(&name)?;
            let what = if started {
                "started"
            } else {
                "already running"
            };
            let host = self.host(&name)?;
            let svc: Vec<&str> = self.services(host).iter().map(|s| s.name()).collect();
            progress(&format!("{name} ({}) {what}", svc.join(", ")), t.elapsed());
        }
        Ok(())
    }

    /// Isolated mode: the namespaces, bridges and links (kept when services of this run
    /// are running in them, else rebuilt from scratch after removing leftovers by name),
    /// the client's resolver, and every host's firewall (replaced atomically each time).
    fn up_network(&mut self, progress: &mut dyn FnMut(&str, Duration)) -> Result<(), InfraError> {
        let Some(fabric) = self.fabric.clone() else {
            return Ok(());
        };
        if !rustix::process::geteuid().is_root() {
            return Err(InfraError::Invalid(
                "isolated mode needs root (it creates network namespaces and firewalls); \
                 run as root, or use `rampart up --local`"
                    .into(),
            ));
        }
        netns::nft_bin()?;
        let t = Instant::now();
        let complete = fabric.existing()?.len() == fabric.namespaces().len();
        let running = self.any_running();
        if !(complete && running) {
            if running {
                // Services of this run without their network (a crashed or partial
                // teardown): they cannot be reached, so stop them and start over.
                self.down_services()?;
            }
            fabric.create()?;
            progress(
                &format!(
                    "network: {} namespaces, 4 bridges",
                    fabric.namespaces().len()
                ),
                t.elapsed(),
            );
        } else {
            progress("network: kept (services are running)", t.elapsed());
        }
        if let (Some(client), Some(dns)) = (
            self.topology.with_role(Role::Client).next(),
            self.topology.with_role(Role::Dns).next(),
        ) {
            fabric.set_resolver(
                client,
                &self.topology.addr(dns, Segment::Public).to_string(),
            )?;
        }
        let t = Instant::now();
        fabric.load_firewalls()?;
        progress(
            &format!("firewalls: {} rulesets loaded", self.topology.hosts.len()),
            t.elapsed(),
        );
        Ok(())
    }

    fn any_running(&self) -> bool {
        self.topology.hosts.iter().any(|h| {
            self.services(h)
                .iter()
                .any(|&svc| process::running(&self.pid_file(h, svc)).is_some())
        })
    }

    fn check_cancel(&self) -> Result<(), InfraError> {
        if self.cancel.load(Ordering::Relaxed) {
            Err(InfraError::Invalid("interrupted".into()))
        } else {
            Ok(())
        }
    }

    /// Hosts with services, in the order they must start.
    fn start_order(&self) -> Vec<String> {
        let mut order = Vec::new();
        // The monitor first, so agents find their Prometheus from their first push.
        for role in [
            Role::Monitor,
            Role::Dns,
            Role::DbPrimary,
            Role::DbReplica,
            Role::Web,
            Role::Lb,
            Role::Client,
        ] {
            order.extend(
                self.topology
                    .with_role(role)
                    .filter(|h| !self.services(h).is_empty())
                    .map(|h| h.name.clone()),
            );
        }
        order
    }

    /// Starts one host's services (if not running) and waits until they are ready.
    /// Returns whether anything was started.
    pub fn start_host(&mut self, name: &str) -> Result<bool, InfraError> {
        let host = self.host(name)?.clone();
        let mut started = false;
        for &svc in self.services(&host) {
            // Already running: the idempotent setup and the readiness wait still run, so a
            // run interrupted half-way (db2 up but replication not configured) is finished
            // by the next `up` or `start`.
            let running = process::running(&self.pid_file(&host, svc)).is_some();
            started |= !running;
            match svc {
                Service::Mariadb => self.start_db(&host, running)?,
                _ if running => self.wait_ready(&host, svc, None)?,
                _ => self.start_rampart(&host, svc)?,
            }
        }
        if started {
            self.started.push(name.to_owned());
        }
        Ok(started)
    }

    /// Hosts this `Stack` started, in start order.
    pub fn started(&self) -> &[String] {
        &self.started
    }

    /// Stops what this `Stack` started (after a failed or interrupted `up`), leaving
    /// anything that was already running alone.
    pub fn stop_started(&mut self) -> Result<Vec<String>, InfraError> {
        let mut hosts = std::mem::take(&mut self.started);
        hosts.reverse();
        let mut stopped = Vec::new();
        for name in hosts {
            if self.stop_host(&name)? {
                stopped.push(name);
            }
        }
        Ok(stopped)
    }

    fn start_db(&mut self, host: &Host, running: bool) -> Result<(), InfraError> {
        let inst = self.instance(host);
        let secrets = mariadb::Secrets::load_or_create(&self.paths.secrets())?;
        if !running {
            let child = inst.start()?;
            self.children.push(child);
        }
        let primary = self.primary()?;
        match inst.role {
            mariadb::Role::Primary => {
                mariadb::bootstrap_primary(&inst, &secrets, &self.grants())?;
                // The primary restarted under a connected replica: semi-sync is a runtime
                // setting, so turn it back on (only once a replica is there; see
                // `enable_semi_sync`).
                for r in self.topology.with_role(Role::DbReplica) {
                    let replica = self.instance(r);
                    if replica.is_running() {
                        mariadb::wait_replica_connected(&replica, READY_DEADLINE)?;
                        mariadb::enable_semi_sync(&inst, Duration::from_secs(10))?;
                    }
                }
            }
            mariadb::Role::Replica => {
                if primary.is_running() {
                    mariadb::setup_replica(&inst, &primary, &secrets)?;
                    mariadb::wait_replica_connected(&inst, READY_DEADLINE)?;
                    mariadb::enable_semi_sync(&primary, Duration::from_secs(10))?;
                }
            }
        }
        Ok(())
    }

    /// The forward's arguments: listen on 127.0.0.1:`port`, connect to `to` from inside
    /// `host`'s namespace.
    fn forward_args(&self, host: &Host, port: u16, to: SocketAddr) -> Vec<std::ffi::OsString> {
        let ns = self.namespace(host).unwrap_or_default();
        vec![
            "forward".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}").into(),
            "--netns".into(),
            ns.into(),
            "--to".into(),
            to.to_string().into(),
        ]
    }

    /// Writes `text` to `svc`'s config file and returns its path.
    fn write_config(&self, host: &Host, svc: Service, text: &str) -> Result<PathBuf, InfraError> {
        let config = self.config_file(host, svc);
        std::fs::write(&config, text).map_err(|e| InfraError::io("write", &config, e))?;
        Ok(config)
    }

    /// The program and arguments of a service other than mariadbd.
    fn command(
        &self,
        host: &Host,
        svc: Service,
    ) -> Result<(PathBuf, Vec<std::ffi::OsString>), InfraError> {
        let t = &self.topology;
        let dir = self.paths.host(&host.name);
        let rampart = |svc: Service, text: String| -> Result<_, InfraError> {
            let config = self.write_config(host, svc, &text)?;
            Ok((
                self.bin.clone(),
                vec![
                    svc.name().into(),
                    "--config".into(),
                    config.into_os_string(),
                ],
            ))
        };
        match svc {
            Service::Forward => {
                let lb = t
                    .with_role(Role::Lb)
                    .next()
                    .map(|lb| t.sock(lb, Segment::Public, t.ports.lb_https))
                    .ok_or_else(|| {
                        InfraError::Invalid("the topology has no load balancer".into())
                    })?;
                Ok((self.bin.clone(), self.forward_args(host, self.publish, lb)))
            }
            Service::DashboardForward => {
                let to = t.sock(host, Segment::Mgmt, DASHBOARD_PORT);
                Ok((
                    self.bin.clone(),
                    self.forward_args(host, self.dashboard_publish, to),
                ))
            }
            Service::Web => rampart(svc, web_config(t, host, &self.paths)),
            Service::Dns => rampart(svc, dns_config(t, host)),
            Service::Lb => rampart(svc, lb_config(t, host, &self.paths)),
            Service::Dashboard => rampart(svc, dashboard_config(t, host, &self.paths)),
            Service::Agent => {
                let socket = matches!(host.role, Role::DbPrimary | Role::DbReplica)
                    .then(|| self.instance(host).socket());
                rampart(
                    svc,
                    agent_config(t, host, &self.paths, socket.as_deref(), self.pace),
                )
            }
            Service::Prometheus => {
                let program = process::find_program("prometheus", "prometheus")?;
                let rules = dir.join("rules.yml");
                let settings = self.monitor_settings();
                std::fs::write(&rules, monitor::rules(&settings))
                    .map_err(|e| InfraError::io("write", &rules, e))?;
                let am = alertmanager_addr(t, host);
                let config = self.write_config(
                    host,
                    svc,
                    &monitor::prometheus_config(&settings, &rules, &am.to_string()),
                )?;
                let listen = t.sock(host, Segment::Mgmt, MONITOR_INGEST_PORT);
                let data = dir.join("prometheus-data");
                Ok((
                    program,
                    vec![
                        format!("--config.file={}", config.display()).into(),
                        format!("--storage.tsdb.path={}", data.display()).into(),
                        format!("--web.listen-address={listen}").into(),
                        "--web.enable-remote-write-receiver".into(),
                        "--storage.tsdb.retention.time=15d".into(),
                    ],
                ))
            }
            Service::Alertmanager => {
                let program =
                    process::find_program("prometheus-alertmanager", "prometheus-alertmanager")?;
                let (url, token) = rampart_topology::render::alert_webhook(t, host, &self.paths);
                let config = self.write_config(
                    host,
                    svc,
                    &monitor::alertmanager_config(
                        &self.monitor_settings(),
                        &url,
                        &token,
                        &self.paths.ca(),
                    ),
                )?;
                let data = dir.join("alertmanager-data");
                Ok((
                    program,
                    vec![
                        format!("--config.file={}", config.display()).into(),
                        format!("--storage.path={}", data.display()).into(),
                        format!("--web.listen-address={}", alertmanager_addr(t, host)).into(),
                        // No gossip port: one Alertmanager, nothing listening on 0.0.0.0.
                        "--cluster.listen-address=".into(),
                    ],
                ))
            }
            Service::Mariadb => Err(InfraError::Invalid(
                "mariadbd is started by the database setup".into(),
            )),
        }
    }

    fn monitor_settings(&self) -> monitor::MonitorSettings {
        match self.pace {
            Pace::Production => monitor::MonitorSettings::default(),
            Pace::Fast => monitor::MonitorSettings::fast(),
        }
    }

    fn start_rampart(&mut self, host: &Host, svc: Service) -> Result<(), InfraError> {
        let dir = self.paths.host(&host.name);
        std::fs::create_dir_all(&dir).map_err(|e| InfraError::io("create directory", &dir, e))?;
        let (program, args) = self.command(host, svc)?;
        let spec = Spec {
            name: format!("{}/{}", host.name, svc.name()),
            program,
            args,
            env: Vec::new(),
            pid_file: self.pid_file(host, svc),
            log_file: self.log_file(host, svc),
            cwd: Some(dir),
        };
        // The forwards start in the root namespace (their listeners are on the
        // operator's loopback) and enter their host's themselves.
        let spec = match self.namespace(host) {
            Some(ns) if !matches!(svc, Service::Forward | Service::DashboardForward) => {
                netns::wrap(&ns, spec)?
            }
            _ => spec,
        };
        let mut child = process::spawn(&spec)?;
        let ready = self.wait_ready(host, svc, Some(&mut child));
        self.children.push(child);
        ready
    }

    /// Waits until `svc` answers its readiness check; fails early if the process exits,
    /// quoting the end of its log.
    fn wait_ready(
        &self,
        host: &Host,
        svc: Service,
        mut child: Option<&mut Child>,
    ) -> Result<(), InfraError> {
        let t = &self.topology;
        let deadline = Instant::now() + READY_DEADLINE;
        let what = format!("{}/{} ready", host.name, svc.name());
        loop {
            if let Some(Ok(Some(status))) = child.as_mut().map(|c| c.try_wait()) {
                return Err(InfraError::Invalid(format!(
                    "{}/{} exited during start ({status}); last log lines:\n{}",
                    host.name,
                    svc.name(),
                    tail(&self.log_file(host, svc), 12)
                )));
            }
            let ready = match svc {
                Service::Web => {
                    let admin = t.sock(host, Segment::Mgmt, t.ports.web_admin);
                    self.probe(host, || http_get(admin, "/readyz"))?
                        .is_some_and(|(code, _)| code == 200)
                }
                Service::Lb => {
                    let admin = t.sock(host, Segment::Mgmt, t.ports.lb_admin);
                    self.probe(host, || http_get(admin, "/metrics"))?
                        .is_some_and(|(code, body)| code == 200 && self.backends_up(&body))
                }
                Service::Dns => {
                    let addr = t.sock(host, Segment::Public, t.ports.dns);
                    self.probe(host, || accepting(addr))?
                }
                // Its listener is on this namespace's loopback.
                Service::Forward => accepting(SocketAddr::from(([127, 0, 0, 1], self.publish))),
                Service::DashboardForward => {
                    accepting(SocketAddr::from(([127, 0, 0, 1], self.dashboard_publish)))
                }
                Service::Agent => {
                    let addr = t.sock(host, Segment::Mgmt, AGENT_METRICS_PORT);
                    self.probe(host, || http_get(addr, "/metrics"))?
                        .is_some_and(|(code, body)| code == 200 && !body.is_empty())
                }
                Service::Prometheus => {
                    let addr = t.sock(host, Segment::Mgmt, MONITOR_INGEST_PORT);
                    self.probe(host, || http_get(addr, "/-/ready"))?
                        .is_some_and(|(code, _)| code == 200)
                }
                Service::Alertmanager => {
                    let addr = alertmanager_addr(t, host);
                    self.probe(host, || http_get(addr, "/-/ready"))?
                        .is_some_and(|(code, _)| code == 200)
                }
                Service::Dashboard => {
                    let addr = t.sock(host, Segment::Mgmt, DASHBOARD_PORT);
                    self.probe(host, || accepting(addr))?
                }
                Service::Mariadb => true,
            };
            if ready {
                return Ok(());
            }
            self.check_cancel()?;
            if Instant::now() > deadline {
                return Err(InfraError::Invalid(format!(
                    "timed out waiting for {what}; see {}",
                    self.log_file(host, svc).display()
                )));
            }
            std::thread::park_timeout(Duration::from_millis(50));
        }
    }

    /// Whether the load balancer's metrics show every web server in rotation.
    fn backends_up(&self, metrics: &str) -> bool {
        self.topology.with_role(Role::Web).all(|w| {
            let needle = format!("rampart_lb_backend_up{{backend=\"{}\"}} 1", w.name);
            metrics.lines().any(|l| l == needle)
        })
    }

    /// Stops one host's services (SIGTERM, then SIGKILL after a grace period).
    pub fn stop_host(&mut self, name: &str) -> Result<bool, InfraError> {
        let host = self.host(name)?.clone();
        let mut stopped = false;
        for &svc in self.services(&host).iter().rev() {
            stopped |= process::stop(&self.pid_file(&host, svc), STOP_GRACE)?;
        }
        self.reap();
        Ok(stopped)
    }

    /// Stops every service, in reverse start order, and in isolated mode removes the
    /// network (namespaces, bridges, links) and the client's resolver file. Returns the
    /// hosts it stopped.
    pub fn down(&mut self) -> Result<Vec<String>, InfraError> {
        let stopped = self.down_services()?;
        if let Some(fabric) = &self.fabric {
            fabric.destroy()?;
            fabric.clear_resolvers()?;
        }
        Ok(stopped)
    }

    fn down_services(&mut self) -> Result<Vec<String>, InfraError> {
        let mut order = self.start_order();
        order.reverse();
        let mut stopped = Vec::new();
        for name in order {
            if self.stop_host(&name)? {
                stopped.push(name);
            }
        }
        Ok(stopped)
    }

    /// Collects exit statuses of children that have ended (so none stays a zombie).
    pub fn reap(&mut self) {
        self.children
            .retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
    }

    /// Every host and service with its state.
    pub fn status(&self) -> Status {
        let t = &self.topology;
        let hosts = t
            .hosts
            .iter()
            .map(|h| HostStatus {
                name: h.name.clone(),
                role: role_name(h.role),
                addresses: match t.mode {
                    Mode::Local => vec![h.local.to_string()],
                    Mode::Isolated => h.segments.iter().map(|(_, a)| a.to_string()).collect(),
                },
                services: self
                    .services(h)
                    .iter()
                    .map(|&svc| {
                        let ports = self.ports(h, svc);
                        let (port, seg) = match svc {
                            Service::Mariadb => (t.ports.db, Segment::Data),
                            Service::Web => (t.ports.web, Segment::App),
                            Service::Lb => (t.ports.lb_https, Segment::Public),
                            Service::Dns => (t.ports.dns, Segment::Public),
                            Service::Forward => (self.publish, Segment::Public),
                            Service::DashboardForward => (self.dashboard_publish, Segment::Mgmt),
                            Service::Agent => (AGENT_METRICS_PORT, Segment::Mgmt),
                            Service::Prometheus => (MONITOR_INGEST_PORT, Segment::Mgmt),
                            Service::Alertmanager => {
                                (rampart_topology::render::ALERTMANAGER_PORT, Segment::Mgmt)
                            }
                            Service::Dashboard => (DASHBOARD_PORT, Segment::Mgmt),
                        };
                        let pid = process::running(&self.pid_file(h, svc));
                        let accepting = match svc {
                            Service::Forward | Service::DashboardForward => {
                                accepting(SocketAddr::from(([127, 0, 0, 1], port)))
                            }
                            Service::Alertmanager => {
                                let addr = alertmanager_addr(t, h);
                                pid.is_some() && self.probe(h, || accepting(addr)).unwrap_or(false)
                            }
                            _ => {
                                let addr = t.sock(h, seg, port);
                                pid.is_some() && self.probe(h, || accepting(addr)).unwrap_or(false)
                            }
                        };
                        let state = match (pid, accepting) {
                            (Some(_), true) => "running",
                            (Some(_), false) => "starting",
                            (None, _) => "stopped",
                        };
                        ServiceStatus {
                            name: svc.name(),
                            port,
                            ports,
                            state,
                            pid,
                            log: self.log_file(h, svc),
                        }
                    })
                    .collect(),
            })
            .collect();
        Status {
            mode: self.mode(),
            prefix: self.fabric.as_ref().map(|f| f.prefix.clone()),
            publish: self.fabric.as_ref().map(|_| self.publish),
            state_dir: self.paths.root.clone(),
            ca_cert: self.paths.ca(),
            url: match (&self.fabric, self.publish) {
                (Some(_), 0) => format!("https://{}/ (from the client host)", t.site_names[0]),
                (Some(_), p) => format!("https://{}:{p}/ via 127.0.0.1", t.site_names[0]),
                (None, _) => format!("https://{}:{}/", t.site_names[0], t.ports.lb_https),
            },
            hosts,
        }
    }

    /// The commands that reach the site through the load balancer.
    pub fn next_steps(&self) -> String {
        let t = &self.topology;
        let site = &t.site_names[0];
        let ca = self.paths.ca();
        let (addr, port) = match &self.fabric {
            Some(_) if self.publish == 0 => (None, t.ports.lb_https),
            Some(_) => (Some("127.0.0.1".to_owned()), self.publish),
            None => (
                t.with_role(Role::Lb).next().map(|h| h.local.to_string()),
                t.ports.lb_https,
            ),
        };
        let mut out = String::new();
        if let Some(addr) = addr {
            let curl = format!(
                "curl --cacert {} --resolve {site}:{port}:{addr}",
                ca.display()
            );
            out.push_str(&format!(
                "  {curl} -i https://{site}:{port}/\n  {curl} -H 'content-type: application/json' -d '{{\"name\":\"Ada\",\"email\":\"ada@example.com\"}}' https://{site}:{port}/api/users\n  {curl} https://{site}:{port}/api/users/1 -i\n"
            ));
        }
        if self.fabric.is_some() {
            let state = self.paths.root.display();
            out.push_str(&format!(
                "  rampart exec --state {state} client -- curl -i https://{site}/\n  rampart exec --state {state} client -- dig {site}\n  rampart firewall check --state {state}\n"
            ));
        }
        out
    }
}

fn absolute(state: &Path) -> Result<PathBuf, InfraError> {
    std::path::absolute(state).map_err(|e| InfraError::io("resolve state directory", state, e))
}

/// Whether something accepts TCP connections at `addr` within 300 ms.
fn accepting(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// The last `n` lines of a log file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A minimal plain-HTTP GET on loopback for readiness checks: status and body, or `None`
/// when nothing answered within a second.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let timeout = Duration::from_secs(1);
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.take(4 << 20).read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let code = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |x| x.1).to_owned();
    Some((code, body))
}

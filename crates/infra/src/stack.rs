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
//! on each one's readiness (never a sleep): first the etcd members of every host together
//! (each spawned and waited on until its peer port accepts, then all waited on until
//! healthy, since none is before a quorum runs), then the monitor, dns, db1, then db2
//! with replication and semi-sync, then web1 and web2 (`/readyz`: schema migrated,
//! primary reachable), then lb1 (every backend in rotation), then the forward. Services
//! are child processes in their own process groups, recorded in pid files under
//! `hosts/<host>/`, so `down`, `stop`, `start` and `status` work from any later
//! invocation, and a stale pid file (crash, reboot) is recognised by the process start
//! time and ignored. `down` stops every
//! service and, in isolated mode, deletes the namespaces by name (and with them every
//! interface) and the client's resolver file.
//!
//! State directory layout (see [`StatePaths`]): `run.json` (mode, address block, namespace
//! prefix and forward port of the run), `certs/` (CA, site and host certificates; keys
//! 0600), `secrets/` (database passwords, 0600), `hosts/<host>/` (configs, logs, pid files,
//! data).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_topology::file::Site;
use rampart_topology::plan::{
    self, Certificate, DbServer, HostPlan, Issuer, Launch, Plan, Probe, Program, ServicePlan,
    Settings, Source,
};
use rampart_topology::render::{Failover, Pace, StatePaths};
use rampart_topology::{Mode, Role, Segment, Topology};
use serde::{Deserialize, Serialize};

use crate::cgroup::Cgroups;
use crate::mariadb::{self, Instance};
use crate::netns::{self, Fabric};
use crate::process::{self, InfraError, Spec};

/// How long a service may take to come ready before `up` gives up on it.
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// How long a service may take to stop on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// How long `rebuild` waits for a rebuilt server to replicate and catch up.
const REBUILD_CATCH_UP: Duration = Duration::from_secs(120);

/// The topology file `up` keeps in the state directory.
pub const TOPOLOGY_FILE: &str = "topology.toml";

/// Where `up` keeps copies of the topology's `[monitor] rules` files, in the state
/// directory (see `Stack::keep_rules`).
pub const RULES_DIR: &str = "monitor-rules";

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
    /// `up --failover-quiet-period`, in seconds.
    #[serde(default)]
    failover_quiet_secs: Option<u64>,
    /// The failover test's negative control (`up --unsafe-semi-sync-fallback`), in ms.
    #[serde(default)]
    unsafe_semi_sync_fallback_ms: Option<u64>,
}

/// The state of one service as `status` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceStatus {
    pub name: &'static str,
    /// The service's main port.
    pub port: u16,
    /// Every port it listens on, by purpose.
    pub ports: BTreeMap<&'static str, u16>,
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
    /// A database host's keeper's own view (its `/status`: role, epoch, leader, sync
    /// standby, semi-sync, positions, lag), when it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<serde_json::Value>,
    /// The backup host's service's own view (its `/status`: backups, the restore
    /// window, the archive and its lag, verify), when it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<serde_json::Value>,
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

/// A run of the topology, rooted at a state directory.
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
    /// How the keepers fail over (recorded in `run.json` like the pace).
    pub failover: Failover,
    /// The site's topology file (the built-in one unless `up --topology`), kept in the
    /// state directory as `topology.toml`.
    spec: Site,
    /// Isolated mode: the machine's cgroups, where this process may create them; else
    /// why not (`Err`, warned about once by `up`). `None` in local mode.
    cgroups: Option<Result<Cgroups, String>>,
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
            failover: Failover::default(),
            spec: Site::default(),
            cgroups: None,
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
            failover: Failover::default(),
            spec: Site::default(),
            cgroups: Some(Cgroups::detect()),
            children: Vec::new(),
            started: Vec::new(),
        })
    }

    /// Runs the site of topology file `spec` instead of the built-in one.
    pub fn set_spec(&mut self, spec: Site) -> Result<(), InfraError> {
        let mode = self.topology.mode;
        let net = self
            .topology
            .hosts
            .first()
            .map_or(0, |h| h.local.octets()[1]);
        let mut topology = spec
            .topology(mode, net)
            .map_err(|e| InfraError::Invalid(e.to_string()))?;
        // `[monitor] rules`: the files' contents, for the plan to write on the monitor.
        topology.monitor_rules =
            crate::rules::read(&spec).map_err(|e| InfraError::Invalid(e.to_string()))?;
        if let Some(f) = &self.fabric {
            self.fabric = Some(Fabric::new(&f.prefix, topology.clone())?);
        }
        self.topology = topology;
        self.spec = spec;
        Ok(())
    }

    /// Runs the site of the topology file an earlier `up` kept in the state directory,
    /// if there is one.
    pub fn use_saved_spec(&mut self) -> Result<(), InfraError> {
        let file = self.paths.root.join(TOPOLOGY_FILE);
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(InfraError::io("read", &file, e)),
        };
        let spec = rampart_topology::file::parse(&file.display().to_string(), &text)
            .map_err(|e| InfraError::Invalid(e.to_string()))?;
        self.set_spec(spec)
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
        stack.use_saved_spec()?;
        if stack.fabric.is_some() {
            stack.dashboard_publish = run.dashboard_publish.unwrap_or(0);
        }
        if run.pace.as_deref() == Some("fast") {
            stack.pace = Pace::Fast;
        }
        if let Some(secs) = run.failover_quiet_secs {
            stack.failover.quiet_period = Duration::from_secs(secs);
        }
        stack.failover.semi_sync_fallback =
            run.unsafe_semi_sync_fallback_ms.map(Duration::from_millis);
        Ok(stack)
    }

    /// The plan this run executes: what runs on which host, with which files, ports and
    /// readiness probes.
    pub fn plan(&self) -> Plan {
        self.plan_for(&self.topology)
    }

    /// The plan of this run's settings for another topology (the site before a change).
    fn plan_for(&self, topology: &Topology) -> Plan {
        plan::plan(
            topology,
            &Settings {
                state: self.paths.clone(),
                bin: self.bin.clone(),
                pace: self.pace,
                prefix: self.fabric.as_ref().map(|f| f.prefix.clone()),
                publish: self.publish,
                dashboard_publish: self.dashboard_publish,
                uid: rustix::process::geteuid().as_raw(),
                failover: self.failover,
                runtime: plan::runtime_root(&self.paths.root, rustix::process::geteuid().as_raw()),
                journal: false,
                cgroups: self.cgroups(),
            },
        )
    }

    /// The machine's cgroups, when this isolated run puts its hosts in cgroups.
    /// Whether hosts get cgroups: where they can be made, and only when the topology
    /// gives some host limits (a site without limits runs as before, every host on the
    /// machine's whole CPU and memory).
    fn cgroups(&self) -> bool {
        matches!(self.cgroups, Some(Ok(_))) && self.limited()
    }

    fn limited(&self) -> bool {
        self.topology
            .hosts
            .iter()
            .any(|h| h.limits != rampart_topology::Limits::default())
    }

    /// Creates (or updates the limits of) `host`'s cgroup; the files a process is added
    /// through, or `None` without cgroups or when it could not be made (warned about:
    /// the host then runs without it, never failing the site for it).
    fn host_cgroup(&self, host: &HostPlan) -> Option<Vec<PathBuf>> {
        let (Some(c), Some(Ok(cgroups))) = (&host.cgroup, &self.cgroups) else {
            return None;
        };
        match cgroups.create(&c.path, &c.limits) {
            Ok(procs) => Some(procs),
            Err(error) => {
                tracing::warn!(host = %host.name, %error, "cgroup not created; the host's services run without it");
                None
            }
        }
    }

    /// Removes `host`'s cgroup once its services have stopped (kept while anything is
    /// left in it).
    fn remove_cgroup(&self, host: &HostPlan) {
        let (Some(c), Some(Ok(cgroups))) = (&host.cgroup, &self.cgroups) else {
            return;
        };
        // Children of a stopped service (the keeper's server) may take a moment to exit.
        let removed = process::wait_until("cgroup empty", CGROUP_EMPTY, || {
            match cgroups.remove(&c.path) {
                Ok(false) => None,
                other => Some(other),
            }
        });
        match removed {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(host = %host.name, %error, "cgroup not removed"),
            Err(_) => {
                tracing::warn!(host = %host.name, cgroup = %c.path, "cgroup kept: processes are left in it");
            }
        }
    }

    /// The namespace `host` runs in (isolated mode).
    pub fn namespace(&self, host: &rampart_topology::Host) -> Option<String> {
        self.fabric.as_ref().map(|f| f.ns(host))
    }

    /// Runs `f` where `svc` listens: on a thread inside its host's namespace in isolated
    /// mode (unless it listens on the operator's loopback), here otherwise.
    fn probe<T: Send>(
        host: &HostPlan,
        svc: &ServicePlan,
        f: impl FnOnce() -> T + Send,
    ) -> Result<T, InfraError> {
        match host.namespace.as_deref().filter(|_| svc.in_namespace) {
            Some(ns) => netns::run_in(ns, f),
            None => Ok(f()),
        }
    }

    /// Whether `probe` of `svc` passes now.
    fn passes(host: &HostPlan, svc: &ServicePlan, probe: &Probe) -> Result<bool, InfraError> {
        match probe {
            Probe::Accepting(addr) => Self::probe(host, svc, || accepting(*addr)),
            Probe::Http { addr, path, body } => Self::probe(host, svc, || {
                http_get(*addr, path).is_some_and(|(code, text)| code == 200 && body.passes(&text))
            }),
            Probe::Https {
                addr,
                path,
                body,
                ca,
                cert,
                key,
            } => {
                let tls = rampart_tls::ClientTls {
                    ca: ca.clone(),
                    client_cert: Some((cert.clone(), key.clone())),
                };
                let config = rampart_tls::client_config(&tls)
                    .map_err(|e| InfraError::Invalid(format!("probe of {}: {e}", svc.name)))?;
                Self::probe(host, svc, || {
                    https_get(*addr, path, config)
                        .is_some_and(|(code, text)| code == 200 && body.passes(&text))
                })
            }
            // Started and set up by `start_database`, which waits on it itself.
            Probe::Database => Ok(true),
            Probe::File { path, body } => {
                Ok(std::fs::read_to_string(path).is_ok_and(|text| body.passes(&text)))
            }
        }
    }

    fn host_plan<'p>(&self, plan: &'p Plan, name: &str) -> Result<&'p HostPlan, InfraError> {
        plan.host(name).ok_or_else(|| {
            let names: Vec<&str> = plan.hosts.iter().map(|h| h.name.as_str()).collect();
            InfraError::Invalid(format!(
                "no host {name}; the topology has {}",
                names.join(", ")
            ))
        })
    }

    /// The `mariadb` instance of a planned database server.
    pub fn instance(host: &HostPlan, db: &DbServer) -> Instance {
        Instance {
            name: host.name.clone(),
            role: if db.primary {
                mariadb::Role::Primary
            } else {
                mariadb::Role::Replica
            },
            server_id: db.server_id,
            bind: db.bind,
            port: db.port,
            dir: db.dir.clone(),
            tls: Some(db.tls.clone()),
            netns: host.namespace.clone(),
        }
    }

    /// The run's CA and every certificate of the plan, created when missing.
    /// Issues every missing certificate and renews every one past two thirds of its
    /// life; returns the renewed ones' paths.
    pub fn ensure_certs(&self) -> Result<Vec<PathBuf>, InfraError> {
        let plan = self.plan();
        issue_certificates(&self.paths, &plan.certificates, plan.cert_lifetime)
    }

    /// Every packaged program the plan runs is installed: a missing one is named with
    /// its Debian package before anything starts.
    fn check_programs(plan: &Plan) -> Result<(), InfraError> {
        for svc in plan.hosts.iter().flat_map(|h| &h.services) {
            if let Launch::Process {
                program: Program::Packaged { program, package },
                ..
            } = &svc.launch
            {
                process::find_program(program, package)?;
            }
        }
        Ok(())
    }

    /// Local mode, nothing of the site running yet: every address a service will listen
    /// on must be free. Another program on the port (Debian's prometheus on `*:9090`,
    /// node-exporter on `*:9100`) makes the service's bind fail, and would answer its
    /// readiness probe in its place, so `up` would report a site that is not there.
    fn check_ports_free(plan: &Plan) -> Result<(), InfraError> {
        let mut busy = Vec::new();
        for h in &plan.hosts {
            for svc in &h.services {
                for l in &svc.ports {
                    let tcp = std::net::TcpListener::bind(l.addr).err();
                    let udp = (l.purpose == "dns")
                        .then(|| std::net::UdpSocket::bind(l.addr).err())
                        .flatten();
                    if let Some(e) = tcp.or(udp) {
                        busy.push(format!(
                            "{}/{} {} on {}: {e} (see: ss -ltnup 'sport = :{}')",
                            h.name,
                            svc.name,
                            l.purpose,
                            l.addr,
                            l.addr.port()
                        ));
                    }
                }
            }
        }
        if busy.is_empty() {
            return Ok(());
        }
        Err(InfraError::Invalid(format!(
            "{} address(es) the site listens on are taken by another program; nothing was \
             started. On Debian, the packaged prometheus, prometheus-alertmanager, \
             prometheus-node-exporter, etcd, mariadb and nginx services hold such ports: \
             `./run up` stops and disables them, or stop them yourself \
             (systemctl disable --now NAME).\n  {}",
            busy.len(),
            busy.join("\n  ")
        )))
    }

    /// The site as `topology.toml` keeps it: `[monitor] rules` pointing at copies of the
    /// files in the state directory (`monitor-rules/<n>/<file name>`, rewritten from what
    /// `set_spec` read), so a later `up`, `start` or `status` plans the same rules
    /// whatever became of the operator's files. The file names stay the operator's, so
    /// the names on the monitor host do not change.
    fn keep_rules(&self) -> Result<Site, InfraError> {
        let dir = self.paths.root.join(RULES_DIR);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| InfraError::io("remove", &dir, e))?;
        }
        let mut spec = self.spec.clone();
        spec.monitor_rules.clear();
        for (i, r) in self.topology.monitor_rules.iter().enumerate() {
            let name = Path::new(&r.source)
                .file_name()
                .map_or_else(|| "rules.yml".into(), |n| n.to_string_lossy().into_owned());
            let sub = dir.join((i + 1).to_string());
            std::fs::create_dir_all(&sub)
                .map_err(|e| InfraError::io("create directory", &sub, e))?;
            let copy = sub.join(name);
            rampart_telemetry::fs::write_atomic(&copy, r.contents.as_bytes(), 0o644)
                .map_err(|e| InfraError::io("write", &copy, e))?;
            spec.monitor_rules.push(copy.display().to_string());
        }
        Ok(spec)
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
            failover_quiet_secs: Some(self.failover.quiet_period.as_secs()),
            unsafe_semi_sync_fallback_ms: self
                .failover
                .semi_sync_fallback
                .map(|d| d.as_millis() as u64),
        };
        let topology = self.paths.root.join(TOPOLOGY_FILE);
        let spec = self.keep_rules()?;
        rampart_telemetry::fs::write_atomic(&topology, spec.to_file().as_bytes(), 0o644)
            .map_err(|e| InfraError::io("write", &topology, e))?;
        let file = self.paths.root.join("run.json");
        let text =
            serde_json::to_string_pretty(&run).map_err(|e| InfraError::Invalid(e.to_string()))?;
        rampart_telemetry::fs::write_atomic(&file, (text + "\n").as_bytes(), 0o644)
            .map_err(|e| InfraError::io("write", &file, e))
    }

    /// Brings up every host, reporting each step with its duration through `progress`.
    pub fn up(&mut self, progress: &mut dyn FnMut(&str, Duration)) -> Result<(), InfraError> {
        mariadb::check_installed()?;
        let t0 = Instant::now();
        std::fs::create_dir_all(&self.paths.root)
            .map_err(|e| InfraError::io("create directory", &self.paths.root, e))?;
        // The site as the last `up` left it: on a running site, hosts it had that this
        // topology has not are drained and removed, and hosts it lacked are added.
        let before = self.saved_topology()?;
        if let Some(b) = &before {
            check_change(b, &self.topology)?;
        }
        let removed: Vec<HostPlan> = before
            .as_ref()
            .map(|b| {
                self.plan_for(b)
                    .hosts
                    .into_iter()
                    .filter(|h| self.topology.host(&h.name).is_none())
                    .collect()
            })
            .unwrap_or_default();
        let live = before
            .as_ref()
            .is_some_and(|b| Self::any_running(&self.plan_for(b)));
        self.write_run_file()?;
        self.ensure_certs()?;
        mariadb::Secrets::load_or_create(&self.paths.secrets())?;
        progress("certificates and secrets", t0.elapsed());
        let plan = self.plan();
        Self::check_programs(&plan)?;
        if self.fabric.is_none() && !live && !Self::any_running(&plan) {
            Self::check_ports_free(&plan)?;
        }
        let union = before.as_ref().map(|b| {
            let mut u = self.topology.clone();
            u.hosts.extend(
                b.hosts
                    .iter()
                    .filter(|h| self.topology.host(&h.name).is_none())
                    .cloned(),
            );
            u
        });
        if self.fabric.is_some() {
            self.up_network(&plan, live, union.as_ref(), &removed, progress)?;
        }
        match &self.cgroups {
            Some(Ok(_)) if !self.limited() => {}
            Some(Ok(c)) => progress(
                &format!(
                    "cgroups: one per host (cgroup {})",
                    if c.v2 { "v2" } else { "v1" }
                ),
                Duration::ZERO,
            ),
            Some(Err(why)) => {
                tracing::warn!(reason = %why, "no cgroups: every host shares the machine's CPU and memory without limits, and its agent reports the machine's");
                progress(&format!("cgroups: none ({why})"), Duration::ZERO);
            }
            None => {}
        }
        self.start_quorums(&plan, progress)?;
        // Accounts for new hosts before they start, on the running leader.
        let gone = match &before {
            Some(b) if live => {
                // Accounts first: a new database host's copy must hold its own.
                let gone = self.update_accounts(&plan, b, progress)?;
                self.seed_new_databases(&plan, b, progress)?;
                gone
            }
            _ => Vec::new(),
        };
        if let (true, Some(b)) = (live, &before) {
            // Services a host no longer runs (keepalived when a pair becomes one load
            // balancer) stop before the rest changes.
            for old in self.plan_for(b).hosts {
                let Some(new) = plan.host(&old.name) else {
                    continue;
                };
                for svc in old.services.iter().rev() {
                    if new.service(svc.name).is_none() && process::stop(&svc.pid_file, STOP_GRACE)?
                    {
                        progress(
                            &format!("{}/{} stopped (no longer planned)", old.name, svc.name),
                            Duration::ZERO,
                        );
                    }
                }
            }
            self.reap();
        }
        for host in plan.start_order() {
            self.check_cancel()?;
            if live {
                // Before its readiness is judged by the new plan (a load balancer's
                // lists the new backends, which started before it).
                self.apply_changes(host, progress)?;
            }
            let t = Instant::now();
            let what = if self.start_planned(&plan, host)? {
                "started"
            } else {
                "already running"
            };
            let svc: Vec<&str> = host.services.iter().map(|s| s.name).collect();
            progress(
                &format!("{} ({}) {what}", host.name, svc.join(", ")),
                t.elapsed(),
            );
        }
        if live {
            self.remove_hosts(&plan, &removed, progress)?;
            if !gone.is_empty() {
                let (leader, _, _) = Self::leading_keeper(&plan, "dropping accounts")?;
                let inst = database(leader)
                    .map(|d| Self::instance(leader, d))
                    .ok_or_else(|| InfraError::Invalid(format!("{}: no database", leader.name)))?;
                let secrets = mariadb::Secrets::load_or_create(&self.paths.secrets())?;
                mariadb::apply_grants(&inst, &secrets, &[], &gone)?;
                progress(
                    &format!(
                        "database accounts of removed hosts dropped ({})",
                        gone.len()
                    ),
                    Duration::ZERO,
                );
            }
        }
        Ok(())
    }

    /// New database hosts of a running site start from a copy of the leader's data
    /// (`mariadb-backup`, as `db rebuild` does), not from an empty server that would
    /// need the leader's whole binlog history.
    fn seed_new_databases(
        &self,
        plan: &Plan,
        before: &Topology,
        progress: &mut dyn FnMut(&str, Duration),
    ) -> Result<(), InfraError> {
        let new: Vec<&HostPlan> = plan
            .hosts
            .iter()
            .filter(|h| before.host(&h.name).is_none())
            .filter(|h| database(h).is_some_and(|d| !d.dir.join("data").join("mysql").is_dir()))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let (leader, _, _) = Self::leading_keeper(plan, "seeding a new database host")?;
        let source = database(leader)
            .map(|d| Self::instance(leader, d))
            .ok_or_else(|| InfraError::Invalid(format!("{}: no database", leader.name)))?;
        for host in new {
            let t = Instant::now();
            if let Some(db) = database(host) {
                let r = mariadb::rebuild_from(&source, &Self::instance(host, db))?;
                progress(
                    &format!(
                        "{} seeded from {} at GTID {}",
                        host.name, leader.name, r.gtid
                    ),
                    t.elapsed(),
                );
            }
        }
        Ok(())
    }

    /// A running site's accounts for a new topology, on the leader: the new plan's
    /// users from their hosts (new web servers and replicas get theirs before they
    /// start). Returns the (user, host) accounts only the old topology had, dropped once
    /// their hosts are gone.
    fn update_accounts(
        &self,
        plan: &Plan,
        before: &Topology,
        progress: &mut dyn FnMut(&str, Duration),
    ) -> Result<Vec<(String, String)>, InfraError> {
        let pairs = |p: &Plan| -> Vec<(String, String)> {
            p.db_users
                .iter()
                .flat_map(|u| u.hosts.iter().map(|h| (u.name.to_owned(), h.clone())))
                .collect()
        };
        let (old, new) = (pairs(&self.plan_for(before)), pairs(plan));
        let gone: Vec<(String, String)> =
            old.iter().filter(|p| !new.contains(p)).cloned().collect();
        if new.iter().all(|p| old.contains(p)) {
            return Ok(gone);
        }
        let t = Instant::now();
        let (leader, _, _) = Self::leading_keeper(plan, "a change of the database accounts")?;
        let inst = database(leader)
            .map(|d| Self::instance(leader, d))
            .ok_or_else(|| InfraError::Invalid(format!("{}: no database", leader.name)))?;
        let secrets = mariadb::Secrets::load_or_create(&self.paths.secrets())?;
        mariadb::apply_grants(&inst, &secrets, &plan.db_users, &[])?;
        progress(
            &format!("database accounts updated on {}", leader.name),
            t.elapsed(),
        );
        Ok(gone)
    }

    /// The topology the last `up` kept in the state directory, in this run's mode
    /// (`None` before the first `up`).
    fn saved_topology(&self) -> Result<Option<Topology>, InfraError> {
        let file = self.paths.root.join(TOPOLOGY_FILE);
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(InfraError::io("read", &file, e)),
        };
        let net = self
            .topology
            .hosts
            .first()
            .map_or(0, |h| h.local.octets()[1]);
        rampart_topology::file::parse(&file.display().to_string(), &text)
            .and_then(|site| site.topology(self.topology.mode, net))
            .map(Some)
            .map_err(|e| InfraError::Invalid(e.to_string()))
    }

    /// A running site brought to a new topology: each running service whose rendered
    /// files changed gets them. A load balancer reloads (new backends, no connection
    /// dropped; a change a reload refuses, such as its listening address, restarts it);
    /// a keeper's new file waits for its next start (restarting a primary's keeper
    /// would fail it over); any other service restarts, one host at a time, ready
    /// before the next.
    fn apply_changes(
        &mut self,
        host: &HostPlan,
        progress: &mut dyn FnMut(&str, Duration),
    ) -> Result<(), InfraError> {
        for svc in &host.services {
            let changed = svc
                .files
                .iter()
                .any(|f| std::fs::read_to_string(&f.path).map_or(true, |old| old != f.contents));
            if !changed || process::running(&svc.pid_file).is_none() {
                continue;
            }
            let t = Instant::now();
            write_files(svc)?;
            let what = match &svc.launch {
                Launch::Database(_) => "config written (applies at its next start)",
                Launch::Process { .. } if svc.name == "lb" && self.reload(host, svc) => "reloaded",
                Launch::Process { program, args } => {
                    process::stop(&svc.pid_file, STOP_GRACE)?;
                    self.reap();
                    self.start_process(host, svc, program, args)?;
                    "restarted"
                }
            };
            progress(&format!("{}/{} {what}", host.name, svc.name), t.elapsed());
        }
        Ok(())
    }

    /// Asks a load balancer to reload its config (`POST /-/reload` on its admin
    /// listener, inside its namespace); whether it did.
    fn reload(&self, host: &HostPlan, svc: &ServicePlan) -> bool {
        let Some(admin) = svc.ports.iter().find(|l| l.purpose == "admin") else {
            return false;
        };
        let addr = admin.addr;
        matches!(
            off_runtime(|| Self::probe(host, svc, || http_post(addr, "/-/reload"))),
            Ok(Some((200, _)))
        )
    }

    /// Stops the hosts a new topology no longer has (the load balancers were already
    /// reloaded without them, so a removed web server gets no new request and finishes
    /// the ones it has while it drains on SIGTERM), deletes their namespaces, and loads
    /// the new topology's firewalls.
    fn remove_hosts(
        &mut self,
        plan: &Plan,
        removed: &[HostPlan],
        progress: &mut dyn FnMut(&str, Duration),
    ) -> Result<(), InfraError> {
        if removed.is_empty() {
            return Ok(());
        }
        let t = Instant::now();
        for host in removed {
            stop_planned(host)?;
        }
        self.reap();
        for host in removed {
            self.remove_cgroup(host);
        }
        if let Some(fabric) = &self.fabric {
            for host in removed {
                fabric.remove_host(&host.name)?;
            }
            for host in &plan.hosts {
                if let Some(rules) = &host.firewall {
                    fabric.load_firewall(&host.name, rules)?;
                }
            }
        }
        let names: Vec<&str> = removed.iter().map(|h| h.name.as_str()).collect();
        progress(&format!("removed {}", names.join(", ")), t.elapsed());
        Ok(())
    }

    /// Starts the services that wait on a quorum of each other (etcd's members) before
    /// the hosts' start order: spawns every one that is not running, waiting only until
    /// it has started (its `quorum` probe), then waits until each one is ready. One at a
    /// time would never finish: a member of a new cluster is not ready before a majority
    /// of its peers runs. The hosts' start then finds them running.
    fn start_quorums(
        &mut self,
        plan: &Plan,
        progress: &mut dyn FnMut(&str, Duration),
    ) -> Result<(), InfraError> {
        let members = plan.quorum_services();
        if members.is_empty() {
            return Ok(());
        }
        // The children spawned here, by member, so a member that exits while it is
        // awaited is reported at once with its log; kept to be reaped, whatever happens.
        let mut children = Vec::new();
        let outcome = self.spawn_and_await(&members, &mut children, progress);
        self.children.extend(children.into_iter().flatten());
        outcome
    }

    /// [`Stack::start_quorums`]'s work, recording each member's child (if it spawned
    /// one) in `children`, in member order.
    fn spawn_and_await(
        &mut self,
        members: &[(&HostPlan, &ServicePlan)],
        children: &mut Vec<Option<Child>>,
        progress: &mut dyn FnMut(&str, Duration),
    ) -> Result<(), InfraError> {
        let t = Instant::now();
        let mut spawned = Vec::new();
        for (host, svc) in members {
            self.check_cancel()?;
            let (Launch::Process { program, args }, None) =
                (&svc.launch, process::running(&svc.pid_file))
            else {
                children.push(None);
                continue;
            };
            if !self.started.contains(&host.name) {
                self.started.push(host.name.clone());
            }
            children.push(Some(self.spawn_service(host, svc, program, args)?));
            if let (Some(Some(child)), Some(probe)) = (children.last_mut(), &svc.quorum) {
                self.wait_probe(host, svc, probe, Some(child), "started")?;
            }
            spawned.push(format!("{}/{}", host.name, svc.name));
        }
        if !spawned.is_empty() {
            progress(&format!("{} spawned", spawned.join(", ")), t.elapsed());
        }
        let t = Instant::now();
        for ((host, svc), child) in members.iter().zip(children.iter_mut()) {
            self.wait_ready(host, svc, child.as_mut())?;
        }
        let all: Vec<String> = members
            .iter()
            .map(|(h, s)| format!("{}/{}", h.name, s.name))
            .collect();
        progress(&format!("{} ready (quorum)", all.join(", ")), t.elapsed());
        Ok(())
    }

    /// Isolated mode: the namespaces, bridges and links (kept when services of this run
    /// are running in them, else rebuilt from scratch after removing leftovers by name),
    /// the client's resolver, and every host's firewall (replaced atomically each time).
    fn up_network(
        &mut self,
        plan: &Plan,
        live: bool,
        union: Option<&Topology>,
        removed: &[HostPlan],
        progress: &mut dyn FnMut(&str, Duration),
    ) -> Result<(), InfraError> {
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
        let existing = fabric.existing()?;
        let missing: Vec<&rampart_topology::Host> = self
            .topology
            .hosts
            .iter()
            .filter(|h| !existing.contains(&fabric.ns(h)))
            .collect();
        let running = live || Self::any_running(plan);
        if running && existing.contains(&fabric.fabric_ns()) && missing.len() < plan.hosts.len() {
            // A running site: new hosts join its network; nothing else is touched.
            for host in &missing {
                fabric.add_host(host)?;
            }
            let added: Vec<&str> = missing.iter().map(|h| h.name.as_str()).collect();
            progress(
                &if added.is_empty() {
                    "network: kept (services are running)".to_owned()
                } else {
                    format!("network: kept, added {}", added.join(", "))
                },
                t.elapsed(),
            );
        } else {
            // Hosts an earlier topology had: their namespaces go too.
            for host in removed {
                fabric.remove_host(&host.name)?;
            }
            if running {
                // Services of this run without their network (a crashed or partial
                // teardown): they cannot be reached, so stop them and start over.
                self.down_services(plan)?;
            }
            fabric.create()?;
            progress(
                &format!(
                    "network: {} namespaces, 4 bridges",
                    fabric.namespaces().len()
                ),
                t.elapsed(),
            );
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
        match union.filter(|_| live && !removed.is_empty()) {
            // Hosts about to be removed still serve until they are drained: the
            // firewalls allow both the old and the new hosts' flows meanwhile, and
            // `remove_hosts` loads the new ones.
            Some(u) => {
                for host in &self.topology.hosts {
                    fabric.load_firewall(&host.name, &rampart_topology::nft::ruleset(u, host))?;
                }
            }
            None => {
                for host in &plan.hosts {
                    if let Some(rules) = &host.firewall {
                        fabric.load_firewall(&host.name, rules)?;
                    }
                }
            }
        }
        progress(
            &format!("firewalls: {} rulesets loaded", plan.hosts.len()),
            t.elapsed(),
        );
        Ok(())
    }

    fn any_running(plan: &Plan) -> bool {
        plan.hosts.iter().any(|h| {
            h.services
                .iter()
                .any(|s| process::running(&s.pid_file).is_some())
        })
    }

    fn check_cancel(&self) -> Result<(), InfraError> {
        if self.cancel.load(Ordering::Relaxed) {
            Err(InfraError::Invalid("interrupted".into()))
        } else {
            Ok(())
        }
    }

    /// Starts one host's services (if not running) and waits until they are ready.
    /// Returns whether anything was started.
    pub fn start_host(&mut self, name: &str) -> Result<bool, InfraError> {
        let plan = self.plan();
        let host = self.host_plan(&plan, name)?;
        self.start_planned(&plan, host)
    }

    fn start_planned(&mut self, plan: &Plan, host: &HostPlan) -> Result<bool, InfraError> {
        // The host's cgroup before its services spawn, and a running host's limits
        // updated when the topology changed them (its services are not restarted).
        self.host_cgroup(host);
        let mut started = false;
        for svc in &host.services {
            // Already running: the idempotent setup and the readiness wait still run, so a
            // run interrupted half-way (db2 up but replication not configured) is finished
            // by the next `up` or `start`.
            let running = process::running(&svc.pid_file).is_some();
            if !running && !started {
                // Recorded before the first spawn, so a failure later on this host still
                // lets `stop_started` stop what did start here.
                self.started.push(host.name.clone());
            }
            started |= !running;
            match &svc.launch {
                Launch::Database(db) => self.start_database(plan, host, svc, db, running)?,
                Launch::Process { .. } if running => self.wait_ready(host, svc, None)?,
                Launch::Process { program, args } => {
                    self.start_process(host, svc, program, args)?;
                }
            }
        }
        Ok(started)
    }

    /// Spawns a service and waits until it is ready.
    fn start_process(
        &mut self,
        host: &HostPlan,
        svc: &ServicePlan,
        program: &Program,
        args: &[String],
    ) -> Result<(), InfraError> {
        let mut child = self.spawn_service(host, svc, program, args)?;
        let ready = self.wait_ready(host, svc, Some(&mut child));
        self.children.push(child);
        ready
    }

    /// Writes a service's files, creates its private directories, checks the files it
    /// needs and spawns it (inside its host's namespace unless it listens on the
    /// operator's loopback), without the environment variables the plan removes.
    fn spawn_service(
        &self,
        host: &HostPlan,
        svc: &ServicePlan,
        program: &Program,
        args: &[String],
    ) -> Result<Child, InfraError> {
        std::fs::create_dir_all(&host.dir)
            .map_err(|e| InfraError::io("create directory", &host.dir, e))?;
        write_files(svc)?;
        for f in &svc.reset_files {
            rampart_telemetry::fs::write_atomic(f, b"", 0o644)
                .map_err(|e| InfraError::io("write", f, e))?;
        }
        for dir in svc.private_dirs.iter().chain(&svc.runtime_dirs) {
            process::create_private_dir(dir)?;
        }
        check_needs(host, svc, READY_DEADLINE, &self.cancel)?;
        let program = match program {
            Program::Rampart(bin) => bin.clone(),
            Program::Packaged { program, package } => process::find_program(program, package)?,
        };
        let spec = Spec {
            name: format!("{}/{}", host.name, svc.name),
            program,
            args: args.iter().map(Into::into).collect(),
            env: Vec::new(),
            pid_file: svc.pid_file.clone(),
            log_file: svc.log_file.clone(),
            cwd: Some(host.dir.clone()),
        };
        let spec = match host.namespace.as_deref().filter(|_| svc.in_namespace) {
            Some(ns) => netns::wrap(ns, spec)?,
            None => spec,
        };
        // Into the host's cgroup before the namespace (inside it `ip netns exec`'s fresh
        // `/sys` has no cgroup file systems); the agent keeps its cgroup's directories
        // open to read its figures from them.
        let spec = match self.host_cgroup(host).filter(|_| svc.in_namespace) {
            Some(procs) => cgexec(&self.bin, &procs, svc.name == AGENT, spec),
            None => spec,
        };
        process::spawn_without_env(&spec, &svc.env_remove_prefixes)
    }

    /// Waits until `svc` passes its readiness probe; fails early if the process exits,
    /// quoting the end of its log.
    fn wait_ready(
        &self,
        host: &HostPlan,
        svc: &ServicePlan,
        child: Option<&mut Child>,
    ) -> Result<(), InfraError> {
        self.wait_probe(host, svc, &svc.ready, child, "ready")
    }

    /// Waits until `probe` of `svc` passes (`state` names it in errors: `ready`,
    /// `started`); fails early if the process exits, quoting the end of its log.
    fn wait_probe(
        &self,
        host: &HostPlan,
        svc: &ServicePlan,
        probe: &Probe,
        mut child: Option<&mut Child>,
        state: &str,
    ) -> Result<(), InfraError> {
        let what = format!("{}/{} {state}", host.name, svc.name);
        let outcome = process::wait_until(&what, READY_DEADLINE, || {
            if let Some(Ok(Some(status))) = child.as_mut().map(|c| c.try_wait()) {
                return Some(Err(InfraError::Exited {
                    name: host.name.clone(),
                    program: svc.name.to_owned(),
                    status: process::describe_status(status),
                    log: svc.log_file.clone(),
                    tail: process::log_tail(&svc.log_file, 12),
                }));
            }
            if let Err(e) = self.check_cancel() {
                return Some(Err(e));
            }
            match Self::passes(host, svc, probe) {
                Ok(true) => Some(Ok(())),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            }
        });
        match outcome {
            Ok(done) => done,
            Err(InfraError::Timeout { .. }) => Err(InfraError::Invalid(format!(
                "timed out waiting for {what}; see {}",
                svc.log_file.display()
            ))),
            Err(e) => Err(e),
        }
    }

    /// Starts a database host's keeper (unless running), which runs the server as its
    /// child and gives it its place: a new data directory first gets the plan's users
    /// (outside the binlog, see `bootstrap_fresh`); which server leads, and who
    /// replicates from whom, the keepers decide through etcd.
    fn start_database(
        &mut self,
        plan: &Plan,
        host: &HostPlan,
        svc: &ServicePlan,
        db: &DbServer,
        running: bool,
    ) -> Result<(), InfraError> {
        if running {
            return self.wait_ready(host, svc, None);
        }
        std::fs::create_dir_all(&host.dir)
            .map_err(|e| InfraError::io("create directory", &host.dir, e))?;
        write_files(svc)?;
        check_needs(host, svc, READY_DEADLINE, &self.cancel)?;
        let inst = Self::instance(host, db);
        if inst.prepare()? {
            let secrets = mariadb::Secrets::load_or_create(&self.paths.secrets())?;
            mariadb::bootstrap_fresh(&inst, &secrets, &plan.db_users)?;
        }
        let config = svc.files.first().map(|f| f.path.clone()).ok_or_else(|| {
            InfraError::Invalid(format!("{}: the plan has no keeper config", host.name))
        })?;
        let mut args = vec!["keeper".to_owned(), "--config".to_owned()];
        args.push(config.display().to_string());
        args.push("--".to_owned());
        args.extend(
            inst.keeper_command()?
                .iter()
                .map(|a| a.to_string_lossy().into_owned()),
        );
        self.start_process(host, svc, &Program::Rampart(self.bin.clone()), &args)
    }

    /// Stops one host's services (SIGTERM, then SIGKILL after a grace period).
    pub fn stop_host(&mut self, name: &str) -> Result<bool, InfraError> {
        let plan = self.plan();
        let host = self.host_plan(&plan, name)?;
        let stopped = stop_planned(host)?;
        self.reap();
        self.remove_cgroup(host);
        Ok(stopped)
    }

    /// Stops every service, in reverse start order, and in isolated mode removes the
    /// network (namespaces, bridges, links) and the client's resolver file. Returns the
    /// hosts it stopped.
    pub fn down(&mut self) -> Result<Vec<String>, InfraError> {
        let plan = self.plan();
        let stopped = self.down_services(&plan)?;
        for host in &plan.hosts {
            self.remove_cgroup(host);
        }
        if let (Some(fabric), Some(Ok(cgroups))) = (&self.fabric, &self.cgroups) {
            let parent = rampart_topology::plan::cgroup_parent(&fabric.prefix);
            if let Err(error) = cgroups.remove(&parent) {
                tracing::warn!(%error, "cgroup not removed");
            }
        }
        if let Some(fabric) = &self.fabric {
            fabric.destroy()?;
            fabric.clear_resolvers()?;
        }
        Ok(stopped)
    }

    fn down_services(&mut self, plan: &Plan) -> Result<Vec<String>, InfraError> {
        let mut stopped = Vec::new();
        for host in plan.start_order().into_iter().rev() {
            if stop_planned(host)? {
                stopped.push(host.name.clone());
            }
        }
        self.reap();
        Ok(stopped)
    }

    /// Collects exit statuses of children that have ended (so none stays a zombie).
    pub fn reap(&mut self) {
        self.children
            .retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
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

    /// Every host and service with its state.
    pub fn status(&self) -> Status {
        let t = &self.topology;
        let plan = self.plan();
        let hosts = plan
            .hosts
            .iter()
            .map(|h| HostStatus {
                name: h.name.clone(),
                role: h.role.name(),
                addresses: h.addresses.iter().map(ToString::to_string).collect(),
                services: h.services.iter().map(|s| service_status(h, s)).collect(),
                database: keeper(h).and_then(|(svc, addr)| {
                    let (code, body) =
                        off_runtime(|| Self::probe(h, svc, || http_get(addr, "/status")))
                            .ok()
                            .flatten()?;
                    (code == 200).then(|| serde_json::from_str(&body).ok())?
                }),
                backup: h
                    .services
                    .iter()
                    .find(|s| s.name == "backup")
                    .and_then(|svc| {
                        let addr = svc.ports.first()?.addr;
                        let (code, body) =
                            off_runtime(|| Self::probe(h, svc, || http_get(addr, "/status")))
                                .ok()
                                .flatten()?;
                        (code == 200).then(|| serde_json::from_str(&body).ok())?
                    }),
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

    /// A planned change of primary: asks the leading keeper to hand over to `to` (by
    /// default its sync standby), inside its host's namespace. The keeper's answer.
    pub fn switchover(&self, to: Option<&str>) -> Result<String, InfraError> {
        let plan = self.plan();
        let (host, svc, addr) = Self::leading_keeper(&plan, "switchover")?;
        let path = match to {
            Some(t) => format!("/switchover?to={t}"),
            None => "/switchover".to_owned(),
        };
        let answer = off_runtime(|| Self::probe(host, svc, || http_post(addr, &path)))?;
        match answer {
            Some((200, body)) => Ok(body.trim().to_owned()),
            Some((code, body)) => Err(InfraError::Invalid(format!(
                "{}: switchover refused ({code}): {}",
                host.name,
                body.trim()
            ))),
            None => Err(InfraError::Invalid(format!(
                "{}: the keeper did not answer the switchover",
                host.name
            ))),
        }
    }

    /// The keeper's status of a database host (`None` when it does not answer).
    fn keeper_status(host: &HostPlan) -> Option<serde_json::Value> {
        let (svc, addr) = keeper(host)?;
        match off_runtime(|| Self::probe(host, svc, || http_get(addr, "/status"))) {
            Ok(Some((200, body))) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    /// The one database host whose keeper leads, with its keeper and status address;
    /// an error (naming `what` needs it) when none or several do.
    fn leading_keeper<'p>(
        plan: &'p Plan,
        what: &str,
    ) -> Result<(&'p HostPlan, &'p ServicePlan, SocketAddr), InfraError> {
        let leaders: Vec<_> = plan
            .hosts
            .iter()
            .filter_map(|h| {
                let (svc, addr) = keeper(h)?;
                let status = Self::keeper_status(h)?;
                (status["role"] == "leader").then_some((h, svc, addr))
            })
            .collect();
        match leaders[..] {
            [one] => Ok(one),
            _ => Err(InfraError::Invalid(format!(
                "{what} needs exactly one leading database keeper; found {}",
                leaders.len()
            ))),
        }
    }

    /// Rebuilds database host `name` from the current primary: stops the host, copies
    /// the primary's live data with `mariadb-backup` (the primary keeps taking writes),
    /// swaps it in for the host's data directory (the old one is kept beside it), starts
    /// the host again and waits until its keeper replicates from the primary and has
    /// caught up. For a server that diverged, lost its disk or fell behind the binlog's
    /// retention. Refused for the primary itself.
    pub fn rebuild(&mut self, name: &str) -> Result<String, InfraError> {
        let plan = self.plan();
        let host = self.host_plan(&plan, name)?;
        let Some(db) = database(host) else {
            return Err(InfraError::Invalid(format!(
                "{name} is not a database host; the database hosts are {}",
                plan.hosts
                    .iter()
                    .filter(|h| database(h).is_some())
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let (leader, _, _) = Self::leading_keeper(&plan, "a rebuild")?;
        if leader.name == name {
            return Err(InfraError::Invalid(format!(
                "{name} is the primary: a rebuild copies the primary's data to another \
                 server. Run `rampart switchover` first to rebuild this one"
            )));
        }
        let source = database(leader)
            .map(|d| Self::instance(leader, d))
            .ok_or_else(|| {
                InfraError::Invalid(format!("{}: the plan has no database server", leader.name))
            })?;
        let target = Self::instance(host, db);
        let started = Instant::now();
        stop_planned(host)?;
        self.reap();
        let rebuilt = mariadb::rebuild_from(&source, &target)?;
        self.start_planned(&plan, host)?;
        let caught_up = process::wait_until(
            &format!("{name} to replicate from {} and catch up", leader.name),
            REBUILD_CATCH_UP,
            || {
                let s = Self::keeper_status(host)?;
                (s["role"] == "replica" && s["promotable"] == true).then_some(())
            },
        );
        let kept = rebuilt.kept.as_ref().map_or(String::new(), |p| {
            format!("; its previous data directory is kept in {}", p.display())
        });
        caught_up.map_err(|e| {
            InfraError::Invalid(format!(
                "{name}: rebuilt from {} at GTID {}, but {e}{kept}",
                leader.name, rebuilt.gtid
            ))
        })?;
        Ok(format!(
            "{name}: rebuilt from {} at GTID {} ({:.1} MB copied), replicating and caught up \
             ({:.1}s){kept}",
            leader.name,
            rebuilt.gtid,
            rebuilt.bytes as f64 / 1e6,
            started.elapsed().as_secs_f64()
        ))
    }

    /// Stops every database host (its keeper, server and agent), for a restore in
    /// place. Returns the hosts stopped.
    pub fn stop_databases(&mut self) -> Result<Vec<String>, InfraError> {
        let plan = self.plan();
        let mut stopped = Vec::new();
        for host in plan.start_order().into_iter().rev() {
            if database(host).is_some() && stop_planned(host)? {
                stopped.push(host.name.clone());
            }
        }
        self.reap();
        Ok(stopped)
    }

    /// `rampart restore --in-place`: rebuilds the site's database servers from
    /// `datadir`, a stopped server's restored data at GTID position `gtid`. The first
    /// database host of the plan takes `datadir` (its own data directory is kept
    /// beside it), every other one is rebuilt from it with `mariadb-backup`, as `db
    /// rebuild` does; then the hosts start in their order, and this waits until one
    /// leads writable and every other replicates from it, caught up. The database hosts
    /// must be stopped ([`Stack::stop_databases`]).
    pub fn restore_databases(&mut self, datadir: &Path, gtid: &str) -> Result<String, InfraError> {
        let plan = self.plan();
        let started = Instant::now();
        let hosts: Vec<&HostPlan> = plan
            .start_order()
            .into_iter()
            .filter(|h| database(h).is_some())
            .collect();
        let Some((first, rest)) = hosts.split_first() else {
            return Err(InfraError::Invalid("the site has no database host".into()));
        };
        for h in &hosts {
            if let Some(pid) = h
                .services
                .iter()
                .find_map(|s| process::running(&s.pid_file))
            {
                return Err(InfraError::Invalid(format!(
                    "{}: still running (pid {pid}); stop the database hosts first",
                    h.name
                )));
            }
        }
        let source = database(first)
            .map(|d| Self::instance(first, d))
            .ok_or_else(|| {
                InfraError::Invalid(format!("{}: the plan has no database server", first.name))
            })?;
        let mut kept = Vec::new();
        if let Some(k) = mariadb::adopt(&source, datadir, gtid)? {
            kept.push(k);
        }
        if !rest.is_empty() {
            // The others copy the first one's server, started alone on its socket.
            let mut child = source.start_with(&["--skip-networking", "--skip-slave-start"])?;
            let copied: Result<Vec<_>, InfraError> = rest
                .iter()
                .filter_map(|h| database(h).map(|d| Self::instance(h, d)))
                .map(|target| mariadb::rebuild_from(&source, &target))
                .collect();
            let stopped = source.stop(Duration::from_secs(60));
            let _ = child.wait();
            stopped?;
            kept.extend(copied?.into_iter().filter_map(|r| r.kept));
        }
        for h in &hosts {
            self.start_planned(&plan, h)?;
        }
        let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        let leader = process::wait_until(
            "a writable leader with every other database replicating, caught up",
            REBUILD_CATCH_UP,
            || {
                let st: Vec<serde_json::Value> = hosts
                    .iter()
                    .map(|h| Self::keeper_status(h))
                    .collect::<Option<_>>()?;
                let leader = st
                    .iter()
                    .find(|s| s["role"] == "leader" && s["read_only"] == false)?;
                let followed = st
                    .iter()
                    .filter(|s| s["role"] != "leader")
                    .all(|s| s["role"] == "replica" && s["promotable"] == true);
                followed.then(|| leader["host"].as_str().unwrap_or("?").to_owned())
            },
        )?;
        let kept = if kept.is_empty() {
            String::new()
        } else {
            let k: Vec<String> = kept.iter().map(|p| p.display().to_string()).collect();
            format!(
                "; the previous data directories are kept in {}",
                k.join(", ")
            )
        };
        Ok(format!(
            "{} rebuilt from the restore at GTID {gtid}: {leader} leads ({:.1}s){kept}",
            names.join(" and "),
            started.elapsed().as_secs_f64()
        ))
    }

    /// The commands that reach the site through the load balancer, each runnable as
    /// printed from a fresh shell in any directory: `rampart` is how to invoke this
    /// binary there (its name when the `PATH` finds this same binary, else its path),
    /// and the state directory is absolute.
    pub fn next_steps(&self, rampart: &str) -> String {
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
                "  {rampart} exec --state {state} client -- curl -i https://{site}/\n  {rampart} exec --state {state} client -- dig {site}\n  {rampart} firewall check --state {state}\n"
            ));
        }
        out
    }
}

/// How long a host's cgroup may take to empty after its services stopped.
const CGROUP_EMPTY: Duration = Duration::from_secs(2);

/// The agent's service name in the plan.
const AGENT: &str = "agent";

/// `spec` run through `rampart cgexec` (binary `bin`), which adds itself to each of
/// `procs` and then executes `spec`'s program with the same pid.
fn cgexec(bin: &Path, procs: &[PathBuf], keep_open: bool, mut spec: Spec) -> Spec {
    let mut args: Vec<std::ffi::OsString> = vec!["cgexec".into()];
    for p in procs {
        args.push("--procs".into());
        args.push(p.into());
    }
    if keep_open {
        args.push("--keep-open".into());
    }
    args.push("--".into());
    args.push(spec.program.into_os_string());
    args.append(&mut spec.args);
    spec.program = bin.to_path_buf();
    spec.args = args;
    spec
}

/// Stops a host's services in reverse start order; whether any was running.
fn stop_planned(host: &HostPlan) -> Result<bool, InfraError> {
    let mut stopped = false;
    for svc in host.services.iter().rev() {
        stopped |= process::stop(&svc.pid_file, STOP_GRACE)?;
        // What lived only in memory goes with the service, as systemd's
        // `RuntimeDirectory=` does; the emptied parents too.
        for dir in &svc.runtime_dirs {
            match std::fs::remove_dir_all(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(InfraError::io("remove", dir, e));
                }
                _ => {}
            }
            let mut up = dir.parent();
            // Never /dev/shm or /run themselves: only what lies below them.
            let ours = |p: &&Path| {
                (p.starts_with("/dev/shm") || p.starts_with("/run")) && p.components().count() > 3
            };
            while let Some(p) = up.filter(ours) {
                if std::fs::remove_dir(p).is_err() {
                    break;
                }
                up = p.parent();
            }
        }
    }
    Ok(stopped)
}

/// One service's line of `status`: running when its process is alive and its main
/// listener accepts.
fn service_status(host: &HostPlan, svc: &ServicePlan) -> ServiceStatus {
    let main = svc.ports.first().map(|l| l.addr);
    let pid = process::running(&svc.pid_file);
    let accepting = match main {
        Some(addr) if pid.is_some() => Stack::probe(host, svc, || accepting(addr)).unwrap_or(false),
        _ => false,
    };
    ServiceStatus {
        name: svc.name,
        port: main.map_or(0, |a| a.port()),
        ports: svc
            .ports
            .iter()
            .map(|l| (l.purpose, l.addr.port()))
            .collect(),
        state: match (pid, accepting) {
            (Some(_), true) => "running",
            (Some(_), false) => "starting",
            (None, _) => "stopped",
        },
        pid,
        log: svc.log_file.clone(),
    }
}

/// Writes a service's planned files (rewritten on every start).
fn write_files(svc: &ServicePlan) -> Result<(), InfraError> {
    for f in &svc.files {
        rampart_telemetry::fs::write_atomic(&f.path, f.contents.as_bytes(), f.mode)
            .map_err(|e| InfraError::io("write", &f.path, e))?;
    }
    Ok(())
}

/// Checks that the files a service needs exist and are no wider than the plan allows,
/// naming what should have created a missing one.
/// A file made by another service is waited for (bounded): that service may still be
/// writing it after its port accepts.
///
/// A file wider than the plan allows is ours (made by an earlier run, perhaps under a
/// looser umask), so it is tightened rather than refused, as the secrets are.
fn check_needs(
    host: &HostPlan,
    svc: &ServicePlan,
    wait: Duration,
    cancel: &AtomicBool,
) -> Result<(), InfraError> {
    for need in &svc.needs {
        if let Source::Service(_) = need.from {
            let what = format!("{} for {}/{}", need.path.display(), host.name, svc.name);
            let waited = process::wait_until(&what, wait, || {
                (need.path.exists() || cancel.load(Ordering::Relaxed)).then_some(())
            });
            if cancel.load(Ordering::Relaxed) {
                return Err(InfraError::Invalid("interrupted".into()));
            }
            // A timeout falls through to the error below, which names the maker.
            drop(waited);
        }
        let meta = std::fs::metadata(&need.path).map_err(|e| {
            let from = match need.from {
                Source::Certificate => "the run's certificates".to_owned(),
                Source::Secret => "the database secrets".to_owned(),
                Source::Service(s) => format!("{}/{s}", host.name),
            };
            InfraError::Invalid(format!(
                "{}/{} needs {} (made by {from}): {e}",
                host.name,
                svc.name,
                need.path.display()
            ))
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & !need.max_mode != 0 {
            let tightened = mode & need.max_mode;
            std::fs::set_permissions(&need.path, std::fs::Permissions::from_mode(tightened))
                .map_err(|e| {
                    InfraError::Invalid(format!(
                        "{}/{}: {} has mode {mode:o}, wider than {:o}, and cannot be \
                         tightened: {e}",
                        host.name,
                        svc.name,
                        need.path.display(),
                        need.max_mode
                    ))
                })?;
            tracing::info!(file = %need.path.display(), from = %format!("{mode:o}"),
                to = %format!("{tightened:o}"), "tightened the mode of a needed file");
        }
    }
    Ok(())
}

fn absolute(state: &Path) -> Result<PathBuf, InfraError> {
    std::path::absolute(state).map_err(|e| InfraError::io("resolve state directory", state, e))
}

/// Whether something accepts TCP connections at `addr` within 300 ms.
fn accepting(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// A plain-HTTP GET for readiness checks, through the one HTTP client
/// (`rampart_telemetry::http_client`) on a runtime of this thread (probes run on a thread
/// inside the probed host's namespace): status and body (at most 4 MiB), or `None` when
/// nothing answered within a second.
/// Runs `f` on a thread of its own: the HTTP helpers build a runtime of their own, which
/// must not happen on a thread that drives one (`up` shows the status from inside its
/// runtime; in local mode a probe runs on the calling thread).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A database host's keeper (the service that runs the server) and its status address.
fn keeper(host: &HostPlan) -> Option<(&ServicePlan, SocketAddr)> {
    host.services.iter().find_map(|s| match s.launch {
        Launch::Database(_) => s
            .ports
            .iter()
            .find(|l| l.purpose == "keeper")
            .map(|l| (s, l.addr)),
        Launch::Process { .. } => None,
    })
}

/// What may change between two `up`s of one site: the counts of load balancers, web
/// servers and replicas (and so the hosts). The rest (mode, names, segments, etcd
/// members) is fixed for the site's life; changing it takes `rampart down` first.
fn check_change(before: &Topology, after: &Topology) -> Result<(), InfraError> {
    let fixed = |what: &str| {
        Err(InfraError::Invalid(format!(
            "the topology's {what} differs from the running site's; only the counts of \
             load balancers, web servers and replicas change on a running site \
             (`rampart down` first to change {what})"
        )))
    };
    if before.site_names != after.site_names {
        return fixed("names");
    }
    if before.etcd != after.etcd {
        return fixed("etcd members");
    }
    if before.prefixes != after.prefixes {
        return fixed("segments");
    }
    for h in &after.hosts {
        if let Some(b) = before.host(&h.name) {
            if b.segments != h.segments || b.role != h.role {
                return fixed(&format!("addresses of {}", h.name));
            }
        }
    }
    Ok(())
}

/// A database host's server, as planned.
fn database(host: &HostPlan) -> Option<&DbServer> {
    host.services.iter().find_map(|s| match &s.launch {
        Launch::Database(db) => Some(db),
        Launch::Process { .. } => None,
    })
}

/// `POST path` to `addr` (a keeper's switchover, which answers within 15 s).
fn http_post(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use rampart_telemetry::http_client::{self, Limits, Origin, Overflow};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let origin = Origin {
        addr: addr.to_string(),
        host: http::HeaderValue::from_str(&addr.to_string()).ok()?,
    };
    let request = http::Request::post(path).body(bytes::Bytes::new()).ok()?;
    let limits = Limits {
        timeout: Duration::from_secs(20),
        max_body: 64 << 10,
        overflow: Overflow::Truncate,
    };
    let response = runtime
        .block_on(http_client::send(&origin, request, limits))
        .ok()?;
    Some((
        response.status.as_u16(),
        String::from_utf8_lossy(&response.body).into_owned(),
    ))
}

/// [`http_get`] over TLS with `config` (its CA and client certificate), the server
/// verified under `addr`'s IP.
pub fn https_get(
    addr: SocketAddr,
    path: &str,
    config: rustls::ClientConfig,
) -> Option<(u16, String)> {
    use rampart_telemetry::http_client::{self, Endpoint, Limits, Overflow};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let url: http::Uri = format!("https://{addr}{path}").parse().ok()?;
    let (endpoint, target) = Endpoint::from_url(&url, Some(std::sync::Arc::new(config))).ok()?;
    let request = http::Request::get(target).body(bytes::Bytes::new()).ok()?;
    let limits = Limits {
        timeout: Duration::from_secs(1),
        max_body: 4 << 20,
        overflow: Overflow::Truncate,
    };
    let response = runtime
        .block_on(http_client::send_to(&endpoint, request, limits))
        .ok()?;
    Some((
        response.status.as_u16(),
        String::from_utf8_lossy(&response.body).into_owned(),
    ))
}

pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use rampart_telemetry::http_client::{self, Limits, Overflow};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let limits = Limits {
        timeout: Duration::from_secs(1),
        max_body: 4 << 20,
        overflow: Overflow::Truncate,
    };
    let response = runtime
        .block_on(http_client::get(addr, path, limits))
        .ok()?;
    Some((
        response.status.as_u16(),
        String::from_utf8_lossy(&response.body).into_owned(),
    ))
}

/// The CA in `paths`' `certs/` (created when missing) and every certificate of `certs`
/// that is not there yet or is due for renewal ([`rampart_tls::pki::renewal_due`]: past
/// two thirds of its life), each valid for `lifetime`: what `up`, `rampart cert renew`
/// and `rampart render` issue. Returns the renewed certificates' paths (not the new
/// ones). A renewed pair replaces the old one in place, certificate then key, each file atomically;
/// the services that use it load it at their next handshake.
pub fn issue_certificates(
    paths: &StatePaths,
    certs: &[Certificate],
    lifetime: Duration,
) -> Result<Vec<PathBuf>, InfraError> {
    let dir = paths.certs();
    let site = rampart_tls::pki::Ca::load_or_create(&dir, "rampart local CA")
        .map_err(|e| InfraError::Invalid(format!("local CA in {}: {e}", dir.display())))?
        .with_leaf_lifetime(lifetime);
    // The monitoring plane's CA, only when a certificate needs it; its certificate is
    // copied next to the run's CA, where Prometheus and Alertmanager read it.
    let plane = if certs.iter().any(|c| c.issuer == Issuer::Plane) {
        let pdir = paths.plane_ca_dir();
        let ca = rampart_tls::pki::Ca::load_or_create(&pdir, "rampart monitoring plane CA")
            .map_err(|e| InfraError::Invalid(format!("plane CA in {}: {e}", pdir.display())))?
            .with_leaf_lifetime(lifetime);
        let from = pdir.join("ca.pem");
        let to = paths.plane_ca();
        let pem = std::fs::read(&from).map_err(|e| InfraError::io("read", &from, e))?;
        if std::fs::read(&to).ok().as_deref() != Some(pem.as_slice()) {
            rampart_telemetry::fs::write_atomic(&to, &pem, 0o644)
                .map_err(|e| InfraError::io("write", &to, e))?;
        }
        Some(ca)
    } else {
        None
    };
    let mut renewed = Vec::new();
    for cert in certs {
        let (pem, key) = cert.files();
        if pem.exists() && key.exists() {
            match rampart_tls::pki::renewal_due(&pem) {
                Ok(false) => continue,
                Ok(true) => renewed.push(pem.clone()),
                Err(e) => {
                    return Err(InfraError::Invalid(format!(
                        "certificate {}: {e}",
                        pem.display()
                    )))
                }
            }
        }
        let ca = match (cert.issuer, &plane) {
            (Issuer::Plane, Some(plane)) => plane,
            _ => &site,
        };
        let issued = if cert.server {
            ca.issue(&cert.dir, &cert.stem, &cert.names, cert.client)
        } else {
            ca.issue_client(&cert.dir, &cert.stem, &cert.names)
        };
        issued.map_err(|e| InfraError::Invalid(format!("certificate {}: {e}", pem.display())))?;
    }
    Ok(renewed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_topology::plan::{FileSpec, Needed};

    fn service(dir: &Path) -> (HostPlan, ServicePlan) {
        let svc = ServicePlan {
            name: "web",
            launch: Launch::Process {
                program: Program::Rampart(PathBuf::from("/bin/true")),
                args: Vec::new(),
            },
            files: vec![FileSpec {
                path: dir.join("web.toml"),
                contents: "name = \"web1\"\n".into(),
                mode: 0o640,
            }],
            needs: vec![
                Needed {
                    path: dir.join("web1.key"),
                    max_mode: 0o600,
                    from: Source::Certificate,
                },
                Needed {
                    path: dir.join("token"),
                    max_mode: 0o600,
                    from: Source::Service("dashboard"),
                },
            ],
            ports: Vec::new(),
            in_namespace: true,
            ready: Probe::Database,
            quorum: None,
            private_dirs: Vec::new(),
            runtime_dirs: Vec::new(),
            env_remove_prefixes: Vec::new(),
            reset_files: Vec::new(),
            pid_file: dir.join("web.pid"),
            log_file: dir.join("web.log"),
        };
        let host = HostPlan {
            name: "web1".into(),
            role: Role::Web,
            addresses: Vec::new(),
            namespace: None,
            dir: dir.to_owned(),
            services: vec![svc.clone()],
            firewall: None,
            cgroup: None,
        };
        (host, svc)
    }

    fn write(path: &Path, mode: u32) {
        std::fs::write(path, "x").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn planned_files_are_written_with_their_mode() {
        let dir = tempfile::tempdir().unwrap();
        let (_, svc) = service(dir.path());
        write(&dir.path().join("web.toml"), 0o666);
        write_files(&svc).unwrap();
        let path = dir.path().join("web.toml");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "name = \"web1\"\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }

    /// (files present with their modes, expected error fragment or none).
    #[test]
    fn needed_files_must_exist_and_be_private_enough() {
        let check = |present: &[(&str, u32)], expected: Option<&str>| {
            let dir = tempfile::tempdir().unwrap();
            let (host, svc) = service(dir.path());
            for (name, mode) in present {
                write(&dir.path().join(name), *mode);
            }
            match (
                check_needs(&host, &svc, Duration::ZERO, &AtomicBool::new(false)),
                expected,
            ) {
                (Ok(()), None) => {}
                (Err(e), Some(fragment)) => {
                    let e = e.to_string();
                    assert!(e.contains(fragment), "{e} lacks {fragment}");
                    assert!(e.starts_with("web1/web"), "{e}");
                }
                (got, expected) => panic!("{present:?}: got {got:?}, expected {expected:?}"),
            }
        };
        check(&[("web1.key", 0o600), ("token", 0o400)], None);
        check(&[("token", 0o600)], Some("made by the run's certificates"));
        check(&[("web1.key", 0o600)], Some("made by web1/dashboard"));
    }

    /// Regression: a state directory from an earlier build (certificates written under
    /// umask 0002, 0664) made `up` refuse to start; such files are ours and tightened.
    #[test]
    fn needed_files_wider_than_planned_are_tightened_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (host, svc) = service(dir.path());
        write(&dir.path().join("web1.key"), 0o664);
        write(&dir.path().join("token"), 0o640);
        check_needs(&host, &svc, Duration::ZERO, &AtomicBool::new(false)).unwrap();
        for (name, mode) in [("web1.key", 0o600), ("token", 0o600)] {
            let got = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(got, mode, "{name}");
        }
    }

    #[test]
    fn a_stopped_service_reports_stopped_with_its_ports() {
        let dir = tempfile::tempdir().unwrap();
        let (host, mut svc) = service(dir.path());
        svc.ports = vec![
            rampart_topology::plan::Listen {
                purpose: "https",
                addr: "127.0.0.1:8443".parse().unwrap(),
            },
            rampart_topology::plan::Listen {
                purpose: "admin",
                addr: "127.0.0.1:9181".parse().unwrap(),
            },
        ];
        let s = service_status(&host, &svc);
        assert_eq!(s.state, "stopped");
        assert_eq!(s.port, 8443);
        assert_eq!(
            s.ports.into_iter().collect::<Vec<_>>(),
            [("admin", 9181), ("https", 8443)]
        );
        assert_eq!(s.pid, None);
    }

    #[test]
    fn readiness_get_reads_status_and_body_and_gives_none_when_nothing_answers() {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap();
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            s.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot ready")
                .unwrap();
            head
        });
        assert_eq!(
            http_get(addr, "/readyz"),
            Some((503, "not ready".to_owned()))
        );
        let head = server.join().unwrap();
        assert!(head.starts_with("GET /readyz HTTP/1.1\r\n"), "{head}");
        // The listener is gone: refused.
        assert_eq!(http_get(addr, "/readyz"), None);
    }

    /// A quorum member that exits before its peer port accepts fails `start_quorums` at
    /// once with its log, and its host counts as started (so a failed `up` stops it).
    #[test]
    fn a_quorum_member_that_exits_is_reported_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut host, mut svc) = service(dir.path());
        host.name = "monitor".into();
        host.role = Role::Monitor;
        svc.name = "etcd";
        svc.launch = Launch::Process {
            program: Program::Rampart(PathBuf::from("/bin/sh")),
            args: vec![
                "-c".into(),
                "echo 'no such flag: --bogus' >&2; exit 2".into(),
            ],
        };
        svc.files = Vec::new();
        svc.needs = Vec::new();
        svc.quorum = Some(Probe::Accepting("127.0.0.1:1".parse().unwrap()));
        svc.private_dirs = vec![dir.path().join("etcd")];
        host.services = vec![svc];
        let plan = Plan {
            hosts: vec![host],
            certificates: Vec::new(),
            cert_lifetime: Duration::from_secs(86_400),
            db_users: Vec::new(),
            etcd: rampart_topology::plan::Etcd {
                endpoints: Vec::new(),
                ca: dir.path().join("ca.pem"),
                clients: Vec::new(),
            },
        };
        let mut stack = Stack::local(dir.path(), 250, PathBuf::from("/bin/true")).unwrap();
        let mut steps = Vec::new();
        let err = stack
            .start_quorums(&plan, &mut |what, _| steps.push(what.to_owned()))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("monitor: etcd exited during start (status 2)"),
            "{err}"
        );
        assert!(err.contains("no such flag: --bogus"), "{err}");
        assert!(steps.is_empty(), "{steps:?}");
        assert_eq!(stack.started(), ["monitor"]);
        let mode = std::fs::metadata(dir.path().join("etcd"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
    }

    /// cgexec goes outside `ip netns exec` (whose `/sys` has no cgroups), keeps the
    /// pid and log files, and only the agent keeps its cgroups open.
    #[test]
    fn services_enter_their_cgroup_through_cgexec_before_the_namespace() {
        let spec = Spec {
            name: "web1/web".into(),
            program: PathBuf::from("/usr/sbin/ip"),
            args: ["netns", "exec", "rp-web1", "/bin/rampart", "web"]
                .map(Into::into)
                .to_vec(),
            env: Vec::new(),
            pid_file: PathBuf::from("/st/web.pid"),
            log_file: PathBuf::from("/st/web.log"),
            cwd: None,
        };
        let procs = [
            PathBuf::from("/sys/fs/cgroup/cpu/rampart-rp/web1/cgroup.procs"),
            PathBuf::from("/sys/fs/cgroup/memory/rampart-rp/web1/cgroup.procs"),
        ];
        let args = |keep: bool| {
            let s = cgexec(Path::new("/bin/rampart"), &procs, keep, spec.clone());
            assert_eq!(s.program, Path::new("/bin/rampart"));
            assert_eq!(
                (s.pid_file, s.log_file),
                (spec.pid_file.clone(), spec.log_file.clone())
            );
            s.args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            args(false),
            "cgexec --procs /sys/fs/cgroup/cpu/rampart-rp/web1/cgroup.procs \
             --procs /sys/fs/cgroup/memory/rampart-rp/web1/cgroup.procs \
             -- /usr/sbin/ip netns exec rp-web1 /bin/rampart web"
        );
        assert!(
            args(true).contains("/memory/rampart-rp/web1/cgroup.procs --keep-open -- /usr/sbin/ip")
        );
    }

    #[test]
    fn a_service_that_exits_during_start_is_reported_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let (host, mut svc) = service(dir.path());
        // Never ready: nothing listens there (port 1 on loopback refuses).
        svc.ready = Probe::Accepting("127.0.0.1:1".parse().unwrap());
        let log = std::fs::File::create(&svc.log_file).unwrap();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "echo 'bad config: no such key' >&2; exit 3"])
            .stderr(log)
            .spawn()
            .unwrap();
        let stack = Stack::local(dir.path(), 250, PathBuf::from("/bin/true")).unwrap();
        let err = stack
            .wait_ready(&host, &svc, Some(&mut child))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("web1: web exited during start (status 3)"),
            "{err}"
        );
        assert!(err.contains("bad config: no such key"), "{err}");
    }

    /// `[monitor] rules` under `up`: `set_spec` reads the files for the plan, the kept
    /// topology names copies in the state directory, and a reopened run (`open`, a
    /// later `up`) plans the same files under the same names after the operator's are
    /// gone.
    #[test]
    fn kept_rules_outlive_the_operators_files() {
        let dir = tempfile::tempdir().unwrap();
        let ops = dir.path().join("ops");
        std::fs::create_dir_all(ops.join("node-mixin")).unwrap();
        std::fs::create_dir_all(ops.join("mysqld-mixin/rules")).unwrap();
        std::fs::write(ops.join("node-mixin/rules.yaml"), "groups: [] # node\n").unwrap();
        std::fs::write(
            ops.join("mysqld-mixin/rules/rules.yaml"),
            "groups: [] # mysql\n",
        )
        .unwrap();
        let text =
            "[monitor]\nrules = [\"node-mixin/rules.yaml\", \"mysqld-mixin/rules/rules.yaml\"]\n";
        let mut site = rampart_topology::file::parse("site.toml", text).unwrap();
        site.rules_relative_to(&ops);
        let state = dir.path().join("state");
        let mut stack = Stack::local(&state, 251, PathBuf::from("/bin/true")).unwrap();
        stack.set_spec(site).unwrap();
        let planned = |stack: &Stack| -> Vec<(String, String)> {
            let plan = stack.plan();
            let prom = plan.host("monitor").unwrap().service("prometheus").unwrap();
            prom.files
                .iter()
                .filter(|f| f.path.to_string_lossy().contains("rules-extra"))
                .map(|f| (f.path.display().to_string(), f.contents.clone()))
                .collect()
        };
        let before = planned(&stack);
        let monitor = state.join("hosts/monitor");
        assert_eq!(
            before,
            [
                (
                    monitor
                        .join("rules-extra-1-rules.yaml")
                        .display()
                        .to_string(),
                    "groups: [] # node\n".to_owned()
                ),
                (
                    monitor
                        .join("rules-extra-2-rules.yaml")
                        .display()
                        .to_string(),
                    "groups: [] # mysql\n".to_owned()
                ),
            ]
        );
        std::fs::create_dir_all(&state).unwrap();
        stack.write_run_file().unwrap();
        std::fs::remove_dir_all(&ops).unwrap();
        let kept = std::fs::read_to_string(state.join(TOPOLOGY_FILE)).unwrap();
        let copy = state.join(RULES_DIR).join("2/rules.yaml");
        assert!(
            kept.contains(&format!("{:?}", copy.display().to_string())),
            "{kept}"
        );
        for _ in 0..2 {
            let mut again = Stack::local(&state, 251, PathBuf::from("/bin/true")).unwrap();
            again.use_saved_spec().unwrap();
            assert_eq!(planned(&again), before);
            // Keeping the kept copies again changes nothing.
            again.write_run_file().unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(copy).unwrap(),
            "groups: [] # mysql\n"
        );
    }
}

//! Local mode: the whole topology as processes on this machine, each host on its own
//! loopback address, all state in one directory.
//!
//! `up` creates what is missing (CA and certificates, database passwords, data
//! directories), writes every host's config from the topology, and starts the services in
//! dependency order, waiting on each one's readiness (never a sleep): db1, then db2 with
//! replication and semi-sync, then web1 and web2 (`/readyz`: schema migrated, primary
//! reachable), then lb1 (every backend in rotation). Services are child processes in
//! their own process groups, recorded in pid files under `hosts/<host>/`, so `down`,
//! `stop`, `start` and `status` work from any later invocation, and a stale pid file
//! (crash, reboot) is recognised by the process start time and ignored.
//!
//! State directory layout (see [`StatePaths`]): `run.json` (mode and address block of
//! the run), `certs/` (CA, site and host certificates; keys 0600), `secrets/` (database
//! passwords, 0600), `hosts/<host>/` (configs, logs, pid files, data).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_topology::render::{lb_config, web_config, StatePaths};
use rampart_topology::{Host, Mode, Role, Segment, Topology};
use serde::{Deserialize, Serialize};

use crate::mariadb::{self, Grants, Instance};
use crate::process::{self, InfraError, Spec};

/// How long a service may take to come ready before `up` gives up on it.
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// How long a service may take to stop on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// What `up` recorded about the run, so later commands address the same hosts.
#[derive(Debug, Serialize, Deserialize)]
struct RunFile {
    mode: String,
    net: u8,
}

/// One service of a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Mariadb,
    Web,
    Lb,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Mariadb => "mariadb",
            Service::Web => "web",
            Service::Lb => "lb",
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
pub struct Local {
    pub topology: Topology,
    pub paths: StatePaths,
    /// The `rampart` binary that runs the services.
    pub bin: PathBuf,
    /// Set from a signal handler to abandon `up` between steps and during waits.
    pub cancel: Arc<AtomicBool>,
    children: Vec<Child>,
    started: Vec<String>,
}

impl Local {
    /// A run at `state` (made absolute) with loopback block `127.<net>.x.y`.
    pub fn new(state: &Path, net: u8, bin: PathBuf) -> Result<Local, InfraError> {
        let root = std::path::absolute(state)
            .map_err(|e| InfraError::io("resolve state directory", state, e))?;
        Ok(Local {
            topology: Topology::default_for(Mode::Local, net),
            paths: StatePaths::new(&root),
            bin,
            cancel: Arc::new(AtomicBool::new(false)),
            children: Vec::new(),
            started: Vec::new(),
        })
    }

    /// The run recorded in `state` by an earlier `up`.
    pub fn open(state: &Path, bin: PathBuf) -> Result<Local, InfraError> {
        let file = state.join("run.json");
        let text = std::fs::read_to_string(&file).map_err(|e| {
            InfraError::Invalid(format!(
                "{}: {e}; is there a run here? (`rampart up --local` creates it)",
                file.display()
            ))
        })?;
        let run: RunFile = serde_json::from_str(&text)
            .map_err(|e| InfraError::Invalid(format!("{}: {e}", file.display())))?;
        if run.mode != "local" {
            return Err(InfraError::Invalid(format!(
                "{}: mode {} is not supported by this command yet",
                file.display(),
                run.mode
            )));
        }
        Local::new(state, run.net, bin)
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

    fn services(host: &Host) -> &'static [Service] {
        match host.role {
            Role::DbPrimary | Role::DbReplica => &[Service::Mariadb],
            Role::Web => &[Service::Web],
            Role::Lb => &[Service::Lb],
            Role::Client | Role::Dns | Role::Monitor => &[],
        }
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
        self.paths
            .host(&host.name)
            .join(format!("{}.toml", svc.name()))
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
        }
        .into_iter()
        .filter(|_| Self::services(host).contains(&svc))
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
        Ok(())
    }

    fn write_run_file(&self) -> Result<(), InfraError> {
        let run = RunFile {
            mode: "local".into(),
            net: self
                .topology
                .hosts
                .first()
                .map_or(0, |h| h.local.octets()[1]),
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
            let svc: Vec<&str> = Self::services(host).iter().map(|s| s.name()).collect();
            progress(&format!("{name} ({}) {what}", svc.join(", ")), t.elapsed());
        }
        Ok(())
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
        for role in [Role::DbPrimary, Role::DbReplica, Role::Web, Role::Lb] {
            order.extend(self.topology.with_role(role).map(|h| h.name.clone()));
        }
        order
    }

    /// Starts one host's services (if not running) and waits until they are ready.
    /// Returns whether anything was started.
    pub fn start_host(&mut self, name: &str) -> Result<bool, InfraError> {
        let host = self.host(name)?.clone();
        let mut started = false;
        for &svc in Self::services(&host) {
            // Already running: the idempotent setup and the readiness wait still run, so a
            // run interrupted half-way (db2 up but replication not configured) is finished
            // by the next `up` or `start`.
            let running = process::running(&self.pid_file(&host, svc)).is_some();
            started |= !running;
            match svc {
                Service::Mariadb => self.start_db(&host, running)?,
                Service::Web | Service::Lb if running => self.wait_ready(&host, svc, None)?,
                Service::Web | Service::Lb => self.start_rampart(&host, svc)?,
            }
        }
        if started {
            self.started.push(name.to_owned());
        }
        Ok(started)
    }

    /// Hosts this `Local` started, in start order.
    pub fn started(&self) -> &[String] {
        &self.started
    }

    /// Stops what this `Local` started (after a failed or interrupted `up`), leaving
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

    fn start_rampart(&mut self, host: &Host, svc: Service) -> Result<(), InfraError> {
        let dir = self.paths.host(&host.name);
        std::fs::create_dir_all(&dir).map_err(|e| InfraError::io("create directory", &dir, e))?;
        let config = self.config_file(host, svc);
        let text = match svc {
            Service::Web => web_config(&self.topology, host, &self.paths),
            _ => lb_config(&self.topology, host, &self.paths),
        };
        std::fs::write(&config, text).map_err(|e| InfraError::io("write", &config, e))?;
        let spec = Spec {
            name: format!("{}/{}", host.name, svc.name()),
            program: self.bin.clone(),
            args: vec![
                svc.name().into(),
                "--config".into(),
                config.into_os_string(),
            ],
            env: Vec::new(),
            pid_file: self.pid_file(host, svc),
            log_file: self.log_file(host, svc),
            cwd: Some(dir),
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
                Service::Web => http_get(t.sock(host, Segment::Mgmt, t.ports.web_admin), "/readyz")
                    .is_some_and(|(code, _)| code == 200),
                Service::Lb => http_get(t.sock(host, Segment::Mgmt, t.ports.lb_admin), "/metrics")
                    .is_some_and(|(code, body)| code == 200 && self.backends_up(&body)),
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
        for &svc in Self::services(&host).iter().rev() {
            stopped |= process::stop(&self.pid_file(&host, svc), STOP_GRACE)?;
        }
        self.reap();
        Ok(stopped)
    }

    /// Stops every service, in reverse start order. Returns the hosts it stopped.
    pub fn down(&mut self) -> Result<Vec<String>, InfraError> {
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
                addresses: vec![h.local.to_string()],
                services: Self::services(h)
                    .iter()
                    .map(|&svc| {
                        let ports = self.ports(h, svc);
                        let port = match svc {
                            Service::Mariadb => self.topology.ports.db,
                            Service::Web => self.topology.ports.web,
                            Service::Lb => self.topology.ports.lb_https,
                        };
                        let pid = process::running(&self.pid_file(h, svc));
                        let accepting = TcpStream::connect_timeout(
                            &SocketAddr::new(h.local.into(), port),
                            Duration::from_millis(300),
                        )
                        .is_ok();
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
            mode: "local",
            state_dir: self.paths.root.clone(),
            ca_cert: self.paths.ca(),
            url: format!("https://{}:{}/", t.site_names[0], t.ports.lb_https),
            hosts,
        }
    }

    /// The curl command lines that reach the site through the load balancer.
    pub fn next_steps(&self) -> String {
        let t = &self.topology;
        let lb = t
            .with_role(Role::Lb)
            .next()
            .map_or_else(|| "127.0.0.1".to_owned(), |h| h.local.to_string());
        let site = &t.site_names[0];
        let port = t.ports.lb_https;
        let ca = self.paths.ca();
        let curl = format!(
            "curl --cacert {} --resolve {site}:{port}:{lb}",
            ca.display()
        );
        format!(
            "  {curl} -i https://{site}:{port}/\n  {curl} -H 'content-type: application/json' -d '{{\"name\":\"Ada\",\"email\":\"ada@example.com\"}}' https://{site}:{port}/api/users\n  {curl} https://{site}:{port}/api/users/1 -i\n"
        )
    }
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

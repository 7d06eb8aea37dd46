//! The plan of a run: a pure function from a [`Topology`] and the [`Settings`] of a run
//! to what runs where. For every host, its services in start order; for every service,
//! its argv, the config files it reads (rendered here), the files it needs to exist
//! (certificates, keys and secrets, with their modes), its listening ports, its readiness
//! probe as data, and where its pid file and log go. The plan also holds the certificates
//! to issue, the database users and their grants, each host's firewall ruleset, and the
//! etcd cluster's endpoints and client certificates ([`Plan::etcd`]).
//!
//! `rampart up` (in `rampart-infra`) executes a plan: it writes the files, spawns, probes,
//! stops and records PIDs, and never decides per service what to do. Everything that
//! differs between services is data here, so it is tested without root or processes.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::render::{
    agent_config, alert_webhook, alertmanager_addr, backup_config, backup_store, dashboard_config,
    dns_config, gate_config, keepalived_config, keeper_config, lb_config, plane_stem,
    prometheus_addr, web_config, Failover, Pace, StatePaths, AGENT_CERT_STEM, ETCD_CLIENT_STEM,
    ETCD_SERVER_STEM, PLANE_CLIENTS, VRRP_STATE_FILE,
};
use crate::{monitor, nft, Host, Mode, Role, Segment, Topology};

/// The run-specific inputs of a plan; the topology gives the rest.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The state directory (absolute).
    pub state: StatePaths,
    /// The `rampart` binary that runs rampart's own services.
    pub bin: PathBuf,
    /// How fast agents push and rules react.
    pub pace: Pace,
    /// Isolated mode: the namespace prefix (host `h` runs in `<prefix>-h`).
    pub prefix: Option<String>,
    /// Isolated mode: the port on 127.0.0.1 forwarded to the load balancer (0: none).
    pub publish: u16,
    /// Isolated mode: the port on 127.0.0.1 forwarded to the dashboard (0: none).
    pub dashboard_publish: u16,
    /// The user id the run's processes run as: the database's fallback socket path
    /// depends on it (see [`db_socket`]).
    pub uid: u32,
    /// How the keepers fail over.
    pub failover: Failover,
    /// A tmpfs directory for what must never reach a disk (the backup host's plaintext
    /// binlog staging): `/run/rampart` on real hosts, [`runtime_root`] under `rampart up`.
    pub runtime: PathBuf,
    /// The services' output goes to the systemd journal (real hosts), not to their
    /// [`ServicePlan::log_file`]: the agents follow their units' entries instead.
    pub journal: bool,
    /// Isolated mode: every host's processes run in a cgroup of their own
    /// (`rampart-<prefix>/<host>`, [`HostPlan::cgroup`]) and its agent reports CPU and
    /// memory from it. Off where cgroups cannot be created, in local mode and on real
    /// hosts (systemd gives each unit its cgroup there).
    pub cgroups: bool,
}

/// `rampart up`'s [`Settings::runtime`] for state directory `state`:
/// `/dev/shm/rampart-<uid>/<16 hex digits of a hash of state>`, one per run.
pub fn runtime_root(state: &Path, uid: u32) -> PathBuf {
    PathBuf::from(format!(
        "/dev/shm/rampart-{uid}/{:016x}",
        fnv1a64(state.as_os_str().as_encoded_bytes())
    ))
}

/// What `rampart up` runs, host by host.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Every host, in the topology's order ([`Plan::start_order`] gives the start order).
    pub hosts: Vec<HostPlan>,
    /// Certificates to issue from the run's CA when missing.
    pub certificates: Vec<Certificate>,
    /// How long each of them is valid (the topology's `[certificates] lifetime`).
    pub cert_lifetime: std::time::Duration,
    /// The database accounts the primary creates (and the replicas receive through
    /// replication).
    pub db_users: Vec<DbUser>,
    /// The etcd cluster as its clients see it.
    pub etcd: Etcd,
}

/// The run's etcd cluster for its clients (the keepers, the web servers): where to
/// connect and with which certificate. Every member requires a client certificate
/// signed by the run's CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Etcd {
    /// `https://<member address>:2379` of every member.
    pub endpoints: Vec<String>,
    /// The CA the members' certificates chain to (the run's CA).
    pub ca: PathBuf,
    /// Every client host's certificate, in topology order.
    pub clients: Vec<EtcdClient>,
}

/// One etcd client host's certificate and key (clientAuth; the key 0600), from
/// [`StatePaths::etcd_client_cert`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdClient {
    pub host: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One host: where it runs and what.
#[derive(Clone, Debug)]
pub struct HostPlan {
    pub name: String,
    pub role: Role,
    /// Its addresses as `status` shows them.
    pub addresses: Vec<IpAddr>,
    /// Isolated mode: its network namespace.
    pub namespace: Option<String>,
    /// Its directory in the state directory (configs, logs, pid files, data).
    pub dir: PathBuf,
    /// Its services in start order; stopped in reverse.
    pub services: Vec<ServicePlan>,
    /// Isolated mode: its nftables ruleset.
    pub firewall: Option<String>,
    /// Isolated mode with [`Settings::cgroups`]: the cgroup its processes run in.
    pub cgroup: Option<Cgroup>,
}

/// A host's cgroup: its path below each hierarchy's root and its limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    /// `rampart-<prefix>/<host>`.
    pub path: String,
    pub limits: crate::Limits,
}

/// The cgroup of the run with namespace prefix `prefix` that holds every host's
/// (`rampart-<prefix>`); only that run creates or removes anything below it.
pub fn cgroup_parent(prefix: &str) -> String {
    format!("rampart-{prefix}")
}

/// One service of a host.
#[derive(Clone, Debug)]
pub struct ServicePlan {
    /// The service's name (`web`, `mariadb`, `prometheus`, ...), as `status` shows it.
    pub name: &'static str,
    /// How it is started.
    pub launch: Launch,
    /// Files written before every start (configs, rules): rewritten each time.
    pub files: Vec<FileSpec>,
    /// Files that must exist before it starts, created by someone else.
    pub needs: Vec<Needed>,
    /// What it listens on, the main listener first.
    pub ports: Vec<Listen>,
    /// Whether it runs inside its host's namespace (isolated mode). The forwards do not:
    /// they listen on the operator's loopback and enter the host's namespace to connect.
    pub in_namespace: bool,
    /// When it counts as ready.
    pub ready: Probe,
    /// A member of a quorum (etcd): none is ready until a majority runs, so `up` spawns
    /// every such service of every host first, waiting only on this probe (the process
    /// started: its peer port accepts), then waits on each one's `ready`, before the
    /// hosts' start order. `None` for everything else.
    pub quorum: Option<Probe>,
    /// Directories created private (0700) before it starts (its data directory).
    pub private_dirs: Vec<PathBuf>,
    /// Private directories under [`Settings::runtime`] (a tmpfs): created before it
    /// starts and removed once it stopped (`RuntimeDirectory=` on real hosts).
    pub runtime_dirs: Vec<PathBuf>,
    /// Prefixes of environment variables removed from its environment: etcd reads
    /// `ETCD_*` as flags and exits when one duplicates a flag on its command line.
    pub env_remove_prefixes: Vec<&'static str>,
    /// Files the service itself writes whose old contents are no longer true once it
    /// restarts (keepalived's VRRP state): emptied before each start, and not configs
    /// (a running site's change does not compare them).
    pub reset_files: Vec<PathBuf>,
    /// rampart's pid file for it.
    pub pid_file: PathBuf,
    /// Where its stdout and stderr go.
    pub log_file: PathBuf,
}

/// How a service is started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Launch {
    /// A program and its arguments.
    Process { program: Program, args: Vec<String> },
    /// mariadbd, whose server flags and data directory belong to the database code of
    /// `rampart-infra`, followed by its place in replication.
    Database(DbServer),
}

/// A program to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    /// The `rampart` binary of the run.
    Rampart(PathBuf),
    /// A program from a Debian package, looked up on the host.
    Packaged {
        program: &'static str,
        package: &'static str,
    },
}

/// The systemd unit that runs `svc` on a real host (`rampart render`): MariaDB's for
/// the database (its keeper), `rampart-<name>.service` for rampart's own, the Debian
/// package's for the others; `None` for what only `rampart up` runs (the forwards).
pub fn unit_name(svc: &ServicePlan) -> Option<String> {
    if !svc.in_namespace {
        return None;
    }
    Some(match &svc.launch {
        Launch::Database(_) => "mariadb.service".into(),
        Launch::Process {
            program: Program::Rampart(_),
            ..
        } => format!("rampart-{}.service", svc.name),
        Launch::Process {
            program: Program::Packaged { program, .. },
            ..
        } => match *program {
            "etcd" | "prometheus" | "prometheus-alertmanager" | "keepalived" => {
                format!("{program}.service")
            }
            _ => return None,
        },
    })
}

/// One database server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbServer {
    pub primary: bool,
    /// Unique per server: GTIDs carry it.
    pub server_id: u32,
    pub bind: IpAddr,
    pub port: u16,
    /// The server's directory (`data/`, its logs and pid files).
    pub dir: PathBuf,
    /// Its unix socket, over which root and the local agent talk to it.
    pub socket: PathBuf,
    /// A replica: the host name of the primary it replicates from.
    pub replicates_from: Option<String>,
    /// Its TLS: every TCP client (the web servers, the replicas) must use TLS and
    /// verifies this certificate against the run's CA; replication verifies the primary's.
    pub tls: DbTls,
}

/// A database server's certificate, key and the CA its peers are verified with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// A file written by the executor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSpec {
    pub path: PathBuf,
    pub contents: String,
    /// Unix mode bits of the file.
    pub mode: u32,
}

/// A file a service reads but does not get from the executor's [`FileSpec`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Needed {
    pub path: PathBuf,
    /// The widest mode it may have (0o600 for keys and secrets).
    pub max_mode: u32,
    /// What creates it, for the error when it is missing.
    pub from: Source,
}

/// Who creates a [`Needed`] file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Issued from the run's CA ([`Plan::certificates`]).
    Certificate,
    /// A database password, created with the secrets.
    Secret,
    /// Another service of the run, started earlier.
    Service(&'static str),
}

/// A listening socket of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listen {
    /// What it is for (`https`, `admin`, `metrics`, ...).
    pub purpose: &'static str,
    pub addr: SocketAddr,
}

/// How the executor tells that a service is ready. Probes run where the service
/// listens: inside its host's namespace, or on the operator's loopback for the forwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Something accepts TCP connections at the address.
    Accepting(SocketAddr),
    /// A plain-HTTP GET answers 200 and the body passes the check.
    Http {
        addr: SocketAddr,
        path: &'static str,
        body: BodyCheck,
    },
    /// A GET over TLS, with a client certificate, answers 200 and the body passes the
    /// check; the server is verified against `ca` under the address's IP.
    Https {
        addr: SocketAddr,
        path: &'static str,
        body: BodyCheck,
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    },
    /// The database answers over its socket and has its place in replication.
    Database,
    /// A file the service writes (keepalived's VRRP state, through `rampart
    /// vrrp-notify`) exists and its contents pass the check.
    File { path: PathBuf, body: BodyCheck },
}

/// What an HTTP readiness answer's body must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyCheck {
    Any,
    NonEmpty,
    /// Every one of these lines (the load balancer's metrics showing each backend up).
    Lines(Vec<String>),
    /// This text somewhere in the body (etcd's `/health` JSON, whose other fields
    /// differ between versions).
    Contains(String),
}

impl BodyCheck {
    /// Whether `body` passes.
    pub fn passes(&self, body: &str) -> bool {
        match self {
            BodyCheck::Any => true,
            BodyCheck::NonEmpty => !body.is_empty(),
            BodyCheck::Lines(lines) => lines.iter().all(|l| body.lines().any(|b| b == l)),
            BodyCheck::Contains(text) => body.contains(text.as_str()),
        }
    }
}

/// A certificate the run's CA issues: `<dir>/<stem>.pem` and `<dir>/<stem>.key` (0600),
/// `dir` being `certs/` or, for a host's etcd certificates, the host's directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    pub dir: PathBuf,
    pub stem: String,
    /// Its DNS names or IP addresses; the first is also its common name.
    pub names: Vec<String>,
    /// Valid as a TLS server certificate (serverAuth).
    pub server: bool,
    /// Valid as a TLS client certificate (clientAuth): mutual TLS to the web servers,
    /// etcd's peers and clients.
    pub client: bool,
    /// Which CA signs it.
    pub issuer: Issuer,
}

/// The CAs of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Issuer {
    /// The run's CA (`certs/ca.pem`): every server and host certificate.
    Site,
    /// The monitoring plane's own CA ([`StatePaths::plane_ca`]): it signs only the
    /// client certificates of the gate, the dashboard and Prometheus, so Prometheus and
    /// Alertmanager, which trust only it, take no other client, whatever certificate of
    /// the run's CA a host holds.
    Plane,
}

impl Certificate {
    /// Its certificate and key files.
    pub fn files(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{}.pem", self.stem)),
            self.dir.join(format!("{}.key", self.stem)),
        )
    }
}

/// A database account and its privileges, one account per source address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbUser {
    pub name: &'static str,
    /// Its password file in the secrets directory.
    pub secret: &'static str,
    /// The hosts it may connect from: IP literals (the servers skip name resolution), or
    /// `localhost` for the unix socket.
    pub hosts: Vec<String>,
    /// `GRANT` clauses, e.g. ``SELECT ON `foobar`.*``.
    pub grants: Vec<String>,
    /// `MAX_USER_CONNECTIONS`, if limited.
    pub max_connections: Option<u32>,
    /// `REQUIRE SSL` on its TCP accounts (every host but `localhost`, the socket).
    pub require_tls: bool,
}

pub use crate::accounts::{
    secret_file, APP_USER, BACKUP_USER, DATABASE, KEEPER_USER, MIGRATE_USER, MONITOR_USER,
    REPL_USER,
};

/// The longest unix socket path mariadbd accepts (`sun_path` less its terminator).
pub const MAX_SOCKET_PATH: usize = 107;

/// A database's unix socket: `<dir>/mysqld.sock`, or, when that path is longer than
/// [`MAX_SOCKET_PATH`] bytes (mariadbd aborts on those),
/// `/tmp/rampart-<uid>/<16 hex digits of a hash of dir>.sock`.
/// The database server's error log in its directory (`--log-error`).
pub const MARIADB_ERROR_LOG: &str = "mariadbd.log";
/// The database server's slow-query log in its directory (`--slow-query-log-file`).
pub const MARIADB_SLOW_LOG: &str = "mariadbd-slow.log";

pub fn db_socket(dir: &Path, uid: u32) -> PathBuf {
    let local = dir.join("mysqld.sock");
    if local.as_os_str().len() <= MAX_SOCKET_PATH {
        return local;
    }
    PathBuf::from(format!(
        "/tmp/rampart-{uid}/{:016x}.sock",
        fnv1a64(dir.as_os_str().as_encoded_bytes())
    ))
}

/// FNV-1a: a stable hash (unlike std's `DefaultHasher`, which may change between
/// releases), so the fallback socket path of a directory never changes.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The roles in start order: the monitor first, so agents find their Prometheus from
/// their first push; the databases before the web servers, the web servers before the
/// load balancer that checks them, the backup host once the databases it pulls from
/// run, the client's forward last.
const START_ORDER: [Role; 8] = [
    Role::Monitor,
    Role::Dns,
    Role::DbPrimary,
    Role::DbReplica,
    Role::Web,
    Role::Lb,
    Role::Backup,
    Role::Client,
];

const CONFIG_MODE: u32 = 0o644;

const SECRET_MODE: u32 = 0o600;

/// The plan of `t` run with `s`.
pub fn plan(t: &Topology, s: &Settings) -> Plan {
    Plan {
        hosts: t.hosts.iter().map(|h| host_plan(t, s, h)).collect(),
        certificates: certificates(t, &s.state),
        cert_lifetime: t.cert_lifetime,
        db_users: db_users(t),
        etcd: Etcd {
            endpoints: t.etcd_endpoints(),
            ca: s.state.ca(),
            clients: t
                .etcd_clients()
                .map(|h| {
                    let (cert, key) = s.state.etcd_client_cert(&h.name);
                    EtcdClient {
                        host: h.name.clone(),
                        cert,
                        key,
                    }
                })
                .collect(),
        },
    }
}

impl Plan {
    pub fn host(&self, name: &str) -> Option<&HostPlan> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The etcd client endpoints, `https://<member address>:2379` for each member.
    pub fn etcd_endpoints(&self) -> Vec<String> {
        self.etcd.endpoints.clone()
    }

    /// The etcd client certificate of `host`, if it is an etcd client (a database or web
    /// host); the CA is [`Etcd::ca`].
    pub fn etcd_client(&self, host: &str) -> Option<&EtcdClient> {
        self.etcd.clients.iter().find(|c| c.host == host)
    }

    /// The services started before every host's start order because each waits on a
    /// quorum of the others (etcd's members), with their hosts, in start order.
    pub fn quorum_services(&self) -> Vec<(&HostPlan, &ServicePlan)> {
        self.start_order()
            .into_iter()
            .flat_map(|h| {
                h.services
                    .iter()
                    .filter(|s| s.quorum.is_some())
                    .map(move |s| (h, s))
            })
            .collect()
    }

    /// The hosts with services, in start order.
    pub fn start_order(&self) -> Vec<&HostPlan> {
        START_ORDER
            .iter()
            .flat_map(|&r| self.hosts.iter().filter(move |h| h.role == r))
            .filter(|h| !h.services.is_empty())
            .collect()
    }

    /// The database server of `host`, if it runs one.
    pub fn database(&self, host: &str) -> Option<&DbServer> {
        self.host(host)?
            .services
            .iter()
            .find_map(|s| match &s.launch {
                Launch::Database(db) => Some(db),
                Launch::Process { .. } => None,
            })
    }

    /// Every database server with its host, primary first.
    pub fn databases(&self) -> impl Iterator<Item = (&HostPlan, &DbServer)> {
        self.hosts.iter().flat_map(|h| {
            h.services.iter().filter_map(move |s| match &s.launch {
                Launch::Database(db) => Some((h, db)),
                Launch::Process { .. } => None,
            })
        })
    }
}

impl HostPlan {
    pub fn service(&self, name: &str) -> Option<&ServicePlan> {
        self.services.iter().find(|s| s.name == name)
    }
}

fn has_mgmt(h: &Host) -> bool {
    h.segments.iter().any(|(s, _)| *s == Segment::Mgmt)
}

fn host_plan(t: &Topology, s: &Settings, h: &Host) -> HostPlan {
    let namespace = match (t.mode, &s.prefix) {
        (Mode::Isolated, Some(prefix)) => Some(format!("{prefix}-{}", h.name)),
        _ => None,
    };
    let b = Builder {
        t,
        s,
        h,
        dir: s.state.host(&h.name),
    };
    let mut services = Vec::new();
    // An etcd member first on its host: the whole cluster starts before the hosts'
    // start order anyway (see `ServicePlan::quorum`), and stops last.
    if t.etcd_members().iter().any(|m| m.name == h.name) {
        services.push(b.etcd());
    }
    match h.role {
        Role::DbPrimary | Role::DbReplica => services.push(b.database()),
        Role::Web => services.push(b.web()),
        Role::Lb => {
            services.push(b.lb());
            // A pair: keepalived moves the floating address, tracking this lb.
            if namespace.is_some() && t.lb_peer(h).is_some() {
                services.push(b.keepalived());
            }
        }
        Role::Dns => services.push(b.dns()),
        Role::Monitor => {
            // The dashboard first: it creates the webhook token Alertmanager sends.
            services.push(b.dashboard());
            services.push(b.alertmanager());
            services.push(b.prometheus());
            services.push(b.logs());
            services.push(b.gate());
        }
        Role::Backup => services.push(b.backup()),
        Role::Client => {}
    }
    // Every host with a management address runs an agent, after its own services so
    // the agent's first collection finds them.
    if has_mgmt(h) {
        services.push(b.agent(&services));
    }
    let isolated = namespace.is_some();
    // `rampart up`'s renewer of the run's certificates, beside the monitor's services
    // but outside its namespace: it holds the run's CAs, which no host has. On real
    // hosts the operator's `rampart render` renews instead (no unit: see
    // `deploy::unit_of`).
    if h.role == Role::Monitor {
        services.push(b.renewer());
    }
    if isolated && h.role == Role::Monitor && s.dashboard_publish != 0 {
        services.push(b.forward(
            "dashboard-forward",
            s.dashboard_publish,
            t.sock(h, Segment::Mgmt, t.ports.dashboard),
        ));
    }
    if isolated && h.role == Role::Client && s.publish != 0 {
        if let Some(lb) = t.with_role(Role::Lb).next() {
            services.push(b.forward(
                "forward",
                s.publish,
                t.sock(lb, Segment::Public, t.ports.lb_https),
            ));
        }
    }
    HostPlan {
        name: h.name.clone(),
        role: h.role,
        addresses: match t.mode {
            Mode::Local => vec![h.local.into()],
            Mode::Isolated => h.segments.iter().map(|(_, a)| IpAddr::V4(*a)).collect(),
        },
        firewall: isolated.then(|| nft::ruleset(t, h)),
        cgroup: cgroup(s, h),
        namespace,
        dir: b.dir,
        services,
    }
}

fn cgroup(s: &Settings, h: &Host) -> Option<Cgroup> {
    let prefix = s.prefix.as_deref().filter(|_| s.cgroups)?;
    Some(Cgroup {
        path: format!("{}/{}", cgroup_parent(prefix), h.name),
        limits: h.limits,
    })
}

/// Builds one host's services.
struct Builder<'a> {
    t: &'a Topology,
    s: &'a Settings,
    h: &'a Host,
    dir: PathBuf,
}

impl Builder<'_> {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A service with its pid and log files named after `stem` in the host's directory.
    fn service(&self, name: &'static str, stem: &str, launch: Launch, ready: Probe) -> ServicePlan {
        ServicePlan {
            name,
            launch,
            files: Vec::new(),
            needs: Vec::new(),
            ports: Vec::new(),
            in_namespace: true,
            ready,
            quorum: None,
            private_dirs: Vec::new(),
            runtime_dirs: Vec::new(),
            env_remove_prefixes: Vec::new(),
            reset_files: Vec::new(),
            pid_file: self.file(&format!("{stem}.pid")),
            log_file: self.file(&format!("{stem}.log")),
        }
    }

    /// One of rampart's own services: `rampart <name> --config <dir>/<name>.toml`.
    fn rampart(&self, name: &'static str, config: String, ready: Probe) -> ServicePlan {
        let path = self.file(&format!("{name}.toml"));
        let launch = Launch::Process {
            program: Program::Rampart(self.s.bin.clone()),
            args: vec![name.into(), "--config".into(), display(&path)],
        };
        let mut svc = self.service(name, name, launch, ready);
        svc.files.push(FileSpec {
            path,
            contents: config,
            mode: CONFIG_MODE,
        });
        svc
    }

    fn sock(&self, seg: Segment, port: u16) -> SocketAddr {
        self.t.sock(self.h, seg, port)
    }

    /// `certs/<stem>.pem` and its key.
    fn cert(&self, stem: &str) -> [Needed; 2] {
        let certs = self.s.state.certs();
        issued((
            certs.join(format!("{stem}.pem")),
            certs.join(format!("{stem}.key")),
        ))
    }

    fn ca(&self) -> Needed {
        Needed {
            path: self.s.state.ca(),
            max_mode: CONFIG_MODE,
            from: Source::Certificate,
        }
    }

    fn secret(&self, file: &str) -> Needed {
        Needed {
            path: self.s.state.secrets().join(file),
            max_mode: SECRET_MODE,
            from: Source::Secret,
        }
    }

    fn web(&self) -> ServicePlan {
        let p = &self.t.ports;
        let admin = self.sock(Segment::Mgmt, p.web_admin);
        let mut svc = self.rampart(
            "web",
            web_config(self.t, self.h, &self.s.state),
            Probe::Http {
                addr: admin,
                path: "/readyz",
                body: BodyCheck::Any,
            },
        );
        svc.ports = vec![
            listen("https", self.sock(Segment::App, p.web)),
            listen("admin", admin),
        ];
        svc.needs.extend(self.cert(&self.h.name));
        svc.needs.push(self.ca());
        if self.t.with_role(Role::DbPrimary).next().is_some() {
            svc.needs.push(self.secret(secret_file(APP_USER)));
            svc.needs.push(self.secret(secret_file(MIGRATE_USER)));
        }
        // It follows the leader key in etcd with its own client certificate.
        if self.t.etcd_clients().any(|c| c.name == self.h.name) {
            svc.needs
                .extend(issued(self.s.state.etcd_client_cert(&self.h.name)));
        }
        svc
    }

    fn lb(&self) -> ServicePlan {
        let p = &self.t.ports;
        let admin = self.sock(Segment::Mgmt, p.lb_admin);
        let backends_up = self
            .t
            .with_role(Role::Web)
            .map(|w| format!("rampart_lb_backend_up{{backend=\"{}\"}} 1", w.name))
            .collect();
        let mut svc = self.rampart(
            "lb",
            lb_config(self.t, self.h, &self.s.state),
            Probe::Http {
                addr: admin,
                path: "/metrics",
                body: BodyCheck::Lines(backends_up),
            },
        );
        svc.ports = vec![
            listen("https", self.sock(Segment::Public, p.lb_https)),
            listen("http", self.sock(Segment::Public, p.lb_http)),
            listen("admin", admin),
        ];
        if self.t.acme.is_some() {
            // Its own site pair and ACME account, written by itself (a self-signed
            // placeholder until the first order).
            svc.private_dirs
                .push(crate::render::lb_acme_dir(&self.s.state, self.h));
        } else {
            svc.needs.extend(self.cert("site"));
        }
        svc.needs.extend(self.cert(&self.h.name));
        svc.needs.push(self.ca());
        svc
    }

    /// keepalived of a load-balancer pair (isolated mode): VRRP with the other load
    /// balancer over the public segment, the floating address on whichever is active.
    /// Ready once it has entered its first state (`rampart vrrp-notify` writes it).
    fn keepalived(&self) -> ServicePlan {
        let conf = self.file("keepalived.conf");
        let state = self.file(VRRP_STATE_FILE);
        let notify = format!(
            "{} vrrp-notify --state-file {}",
            display(&self.s.bin),
            display(&state)
        );
        let config = keepalived_config(self.t, self.h, &notify).unwrap_or_default();
        let flag = |k: &str, f: &str| format!("--{k}={}", display(&self.file(f)));
        let launch = Launch::Process {
            program: Program::Packaged {
                program: "keepalived",
                package: "keepalived",
            },
            args: vec![
                "--dont-fork".into(),
                "--log-console".into(),
                "--log-detail".into(),
                "--vrrp".into(),
                format!("--use-file={}", display(&conf)),
                flag("pid", "keepalived.main.pid"),
                flag("vrrp_pid", "keepalived.vrrp.pid"),
                flag("checkers_pid", "keepalived.checkers.pid"),
            ],
        };
        let ready = Probe::File {
            path: state.clone(),
            body: BodyCheck::NonEmpty,
        };
        let mut svc = self.service("keepalived", "keepalived", launch, ready);
        svc.files.push(FileSpec {
            path: conf,
            contents: config,
            mode: CONFIG_MODE,
        });
        // Emptied at each start: a state from before is no longer true.
        svc.reset_files.push(state);
        svc
    }

    /// The backup service: `rampart backup serve`, ready once its status answers. Its
    /// store, staging, scratch and key directories are private; it pulls from the
    /// keepers' backup sources with its client certificate and archives the binlog with
    /// its own account.
    fn backup(&self) -> ServicePlan {
        let addr = self.sock(Segment::Mgmt, self.t.ports.backup_status);
        let path = self.file("backup.toml");
        let launch = Launch::Process {
            program: Program::Rampart(self.s.bin.clone()),
            args: vec![
                "backup".into(),
                "serve".into(),
                "--config".into(),
                display(&path),
            ],
        };
        let ready = Probe::Http {
            addr,
            path: "/status",
            body: BodyCheck::NonEmpty,
        };
        let mut svc = self.service("backup", "backup", launch, ready);
        // The plaintext of the binlog file being archived stays in memory.
        let staging = self.s.runtime.join(&self.h.name).join("backup-staging");
        svc.files.push(FileSpec {
            path,
            contents: backup_config(self.t, self.h, &self.s.state, &staging),
            mode: CONFIG_MODE,
        });
        svc.ports = vec![listen("status", addr)];
        svc.private_dirs = vec![
            backup_store(self.t, &self.s.state, self.h),
            self.file("scratch"),
            self.file("keys"),
        ];
        svc.runtime_dirs = vec![staging];
        svc.needs.extend(self.cert(&self.h.name));
        svc.needs.push(self.ca());
        svc.needs.push(self.secret(secret_file(BACKUP_USER)));
        svc
    }

    fn dns(&self) -> ServicePlan {
        let addr = self.sock(Segment::Public, self.t.ports.dns);
        let mut svc = self.rampart("dns", dns_config(self.t, self.h), Probe::Accepting(addr));
        svc.ports = vec![listen("dns", addr)];
        svc
    }

    /// The host's agent, after `others` (the host's other services): it reports the
    /// expiry of every certificate they and it use.
    fn agent(&self, others: &[ServicePlan]) -> ServicePlan {
        let addr = self.sock(Segment::Mgmt, self.t.ports.agent_metrics);
        let db = matches!(self.h.role, Role::DbPrimary | Role::DbReplica);
        let socket = db.then(|| db_socket(&self.dir, self.s.uid));
        let has_monitor = self.t.with_role(Role::Monitor).next().is_some();
        let mut certificates: Vec<PathBuf> = Vec::new();
        let own = has_monitor.then(|| {
            let mut own = vec![self.ca()];
            own.extend(issued(self.s.state.agent_cert(&self.h.name)));
            own
        });
        let needs = others
            .iter()
            .flat_map(|o| &o.needs)
            .chain(own.iter().flatten());
        for n in needs {
            let cert = n.from == Source::Certificate
                && n.max_mode != SECRET_MODE
                && n.path.extension().is_some_and(|e| e == "pem");
            if cert && !certificates.contains(&n.path) {
                certificates.push(n.path.clone());
            }
        }
        // Every other service's own output (the database's is its keeper's, beside the
        // server's error and slow-query logs): its file, or on real hosts its unit's
        // journal. And the access logs of lb and web.
        let mut logs: Vec<crate::render::LogFile> = Vec::new();
        let mut journal: BTreeMap<String, String> = BTreeMap::new();
        for o in others.iter().filter(|o| o.in_namespace) {
            let service = match o.launch {
                Launch::Database(_) => "keeper",
                Launch::Process { .. } => o.name,
            };
            match unit_name(o).filter(|_| self.s.journal) {
                Some(unit) => {
                    journal.insert(unit, service.to_owned());
                }
                None => logs.push(crate::render::LogFile {
                    path: o.log_file.clone(),
                    service: service.to_owned(),
                    stream: "log",
                }),
            }
            let Launch::Database(db) = &o.launch else {
                continue;
            };
            for (file, stream) in [(MARIADB_ERROR_LOG, "error"), (MARIADB_SLOW_LOG, "slow")] {
                logs.push(crate::render::LogFile {
                    path: db.dir.join(file),
                    service: "mariadb".to_owned(),
                    stream,
                });
            }
        }
        if let Some(job) = match self.h.role {
            Role::Web => Some("web"),
            Role::Lb => Some("lb"),
            _ => None,
        } {
            logs.push(crate::render::LogFile {
                path: self.file("access.log"),
                service: job.to_owned(),
                stream: "access",
            });
        }
        let mut svc = self.rampart(
            "agent",
            agent_config(
                self.t,
                self.h,
                &self.s.state,
                socket.as_deref(),
                self.s.pace,
                &certificates,
                &logs,
                &journal,
                cgroup(self.s, self.h).is_some(),
            ),
            Probe::Http {
                addr,
                path: "/metrics",
                body: BodyCheck::NonEmpty,
            },
        );
        svc.ports = vec![listen("metrics", addr)];
        if db {
            svc.needs.push(self.secret(secret_file(MONITOR_USER)));
        }
        svc.needs.extend(own.into_iter().flatten());
        svc
    }

    fn dashboard(&self) -> ServicePlan {
        let addr = self.sock(Segment::Mgmt, self.t.ports.dashboard);
        let mut svc = self.rampart(
            "dashboard",
            dashboard_config(self.t, self.h, &self.s.state),
            Probe::Accepting(addr),
        );
        svc.ports = vec![
            listen("https", addr),
            listen(
                "metrics",
                self.sock(Segment::Mgmt, self.t.ports.dashboard_metrics),
            ),
        ];
        svc.needs.extend(self.cert(&self.h.name));
        svc.needs.push(self.ca());
        svc.needs
            .extend(issued(self.s.state.plane_cert(&self.h.name, "dashboard")));
        svc
    }

    /// The ingest gate: agents push here (the management port Prometheus had), and only
    /// writes of a host's own series reach Prometheus.
    fn gate(&self) -> ServicePlan {
        let addr = self.sock(Segment::Mgmt, self.t.ports.prometheus);
        let mut svc = self.rampart(
            "gate",
            gate_config(self.t, self.h, &self.s.state),
            Probe::Accepting(addr),
        );
        svc.ports = vec![
            listen("ingest", addr),
            listen(
                "metrics",
                self.sock(Segment::Mgmt, self.t.ports.gate_metrics),
            ),
        ];
        svc.needs.extend(self.cert(&self.h.name));
        svc.needs.push(self.ca());
        svc.needs
            .extend(issued(self.s.state.plane_cert(&self.h.name, "gate")));
        svc
    }

    /// The central log store, behind the gate like Prometheus: TLS with the monitor's
    /// certificate, the plane's clients only.
    fn logs(&self) -> ServicePlan {
        let addr = crate::render::logs_addr(self.t, self.h);
        let mut svc = self.rampart(
            "logs",
            crate::render::logs_config(self.t, self.h, &self.s.state),
            Probe::Accepting(addr),
        );
        svc.ports = vec![
            listen("api", addr),
            listen(
                "metrics",
                self.sock(Segment::Mgmt, self.t.ports.logs_metrics),
            ),
        ];
        svc.private_dirs = vec![crate::render::logs_dir(&self.s.state, self.h)];
        svc.needs.extend(self.cert(&self.h.name));
        svc.needs.push(Needed {
            path: self.s.state.plane_ca(),
            max_mode: CONFIG_MODE,
            from: Source::Certificate,
        });
        svc
    }

    /// The certificate Prometheus and Alertmanager serve, the monitoring plane's CA they
    /// check clients against, and their `--web.config.file`.
    fn web_config(&self, name: &str) -> (FileSpec, Vec<Needed>) {
        let state = &self.s.state;
        let certs = state.certs();
        let (cert, key) = (
            certs.join(format!("{}.pem", self.h.name)),
            certs.join(format!("{}.key", self.h.name)),
        );
        let file = FileSpec {
            path: self.file(&format!("{name}-web.yml")),
            contents: monitor::web_config(&cert, &key, &state.plane_ca()),
            mode: CONFIG_MODE,
        };
        let mut needs = self.cert(&self.h.name).to_vec();
        needs.push(Needed {
            path: state.plane_ca(),
            max_mode: CONFIG_MODE,
            from: Source::Certificate,
        });
        (file, needs)
    }

    /// A readiness probe over TLS with the plane certificate of `who`.
    fn plane_probe(&self, addr: SocketAddr, who: &str) -> Probe {
        let (cert, key) = self.s.state.plane_cert(&self.h.name, who);
        Probe::Https {
            addr,
            path: "/-/ready",
            body: BodyCheck::Any,
            ca: self.s.state.ca(),
            cert,
            key,
        }
    }

    fn settings(&self) -> monitor::MonitorSettings {
        match self.s.pace {
            Pace::Production => monitor::MonitorSettings::default(),
            Pace::Fast => monitor::MonitorSettings::fast(),
        }
    }

    fn prometheus(&self) -> ServicePlan {
        let listen_on = prometheus_addr(self.t, self.h);
        let (web, web_needs) = self.web_config("prometheus");
        let (am_cert, am_key) = self.s.state.plane_cert(&self.h.name, "prometheus");
        let ca = self.s.state.ca();
        let rules = self.file("rules.yml");
        let config = self.file("prometheus.yml");
        let settings = self.settings();
        let am = alertmanager_addr(self.t, self.h).to_string();
        let etcd: Vec<String> = self
            .t
            .etcd_members()
            .iter()
            .map(|m| {
                self.t
                    .sock(m, Segment::Mgmt, self.t.ports.etcd_metrics)
                    .to_string()
            })
            .collect();
        let launch = Launch::Process {
            program: Program::Packaged {
                program: "prometheus",
                package: "prometheus",
            },
            args: vec![
                format!("--config.file={}", config.display()),
                format!(
                    "--storage.tsdb.path={}",
                    self.file("prometheus-data").display()
                ),
                format!("--web.listen-address={listen_on}"),
                format!("--web.config.file={}", web.path.display()),
                "--web.enable-remote-write-receiver".into(),
                "--storage.tsdb.retention.time=15d".into(),
            ],
        };
        let ready = self.plane_probe(listen_on, "gate");
        let mut svc = self.service("prometheus", "prometheus", launch, ready);
        let am_tls = monitor::TlsClient {
            ca: &ca,
            cert: &am_cert,
            key: &am_key,
        };
        svc.needs = web_needs;
        svc.needs.push(self.ca());
        svc.needs
            .extend(issued(self.s.state.plane_cert(&self.h.name, "prometheus")));
        // rampart's rules, then the operator's (`[monitor] rules`), each a file of its
        // own beside them, under a name none of rampart's files has.
        let extra: Vec<FileSpec> = self
            .t
            .monitor_rules
            .iter()
            .map(|r| FileSpec {
                path: self.file(&r.name),
                contents: r.contents.clone(),
                mode: CONFIG_MODE,
            })
            .collect();
        let rule_files: Vec<PathBuf> = std::iter::once(rules.clone())
            .chain(extra.iter().map(|f| f.path.clone()))
            .collect();
        svc.files = vec![
            web,
            FileSpec {
                contents: monitor::rules(&settings),
                path: rules,
                mode: CONFIG_MODE,
            },
        ];
        svc.files.extend(extra);
        svc.files.push(FileSpec {
            contents: monitor::prometheus_config(&settings, &rule_files, &am, Some(&am_tls), &etcd),
            path: config,
            mode: CONFIG_MODE,
        });
        svc.ports = vec![listen("api", listen_on)];
        svc
    }

    fn alertmanager(&self) -> ServicePlan {
        let addr = alertmanager_addr(self.t, self.h);
        let config = self.file("alertmanager.yml");
        let (web, web_needs) = self.web_config("alertmanager");
        let (url, token) = alert_webhook(self.t, self.h, &self.s.state);
        let launch = Launch::Process {
            program: Program::Packaged {
                program: "prometheus-alertmanager",
                package: "prometheus-alertmanager",
            },
            args: vec![
                format!("--config.file={}", config.display()),
                format!(
                    "--storage.path={}",
                    self.file("alertmanager-data").display()
                ),
                format!("--web.listen-address={addr}"),
                format!("--web.config.file={}", web.path.display()),
                // No gossip port: one Alertmanager, nothing listening on 0.0.0.0.
                "--cluster.listen-address=".into(),
            ],
        };
        let ready = self.plane_probe(addr, "prometheus");
        let mut svc = self.service("alertmanager", "alertmanager", launch, ready);
        svc.files = vec![
            web,
            FileSpec {
                contents: monitor::alertmanager_config(
                    &self.settings(),
                    &url,
                    &token,
                    &self.s.state.ca(),
                ),
                path: config,
                mode: CONFIG_MODE,
            },
        ];
        svc.needs = web_needs;
        svc.needs.push(self.ca());
        svc.needs.push(Needed {
            path: token,
            max_mode: SECRET_MODE,
            from: Source::Service("dashboard"),
        });
        svc.ports = vec![listen("api", addr)];
        svc
    }

    /// An etcd member named after its host, on the host's management address: mutual
    /// TLS on the client and peer ports, plain HTTP only for `/health` and `/metrics`.
    /// With an existing data directory etcd ignores the `--initial-cluster*` flags, so
    /// every later start rejoins the same cluster.
    ///
    /// Limits: a request at most 256 KiB (`--max-request-bytes`; the failover keys are
    /// well under a KiB, the default is 1.5 MiB) and a backend of at most 128 MiB
    /// (`--quota-backend-bytes`, default 2 GiB): past it etcd raises its NOSPACE alarm and
    /// takes only reads and deletes until compacted, defragmented and disarmed. Revision
    /// compaction keeps the last 1000 revisions, so the store holds the keys' recent
    /// history only.
    fn etcd(&self) -> ServicePlan {
        let t = self.t;
        let name = &self.h.name;
        let client = self.sock(Segment::Mgmt, t.ports.etcd_client);
        let peer = self.sock(Segment::Mgmt, t.ports.etcd_peer);
        let metrics = self.sock(Segment::Mgmt, t.ports.etcd_metrics);
        let cluster: Vec<String> = t
            .etcd_members()
            .iter()
            .map(|m| {
                let peer = t.sock(m, Segment::Mgmt, t.ports.etcd_peer);
                format!("{}=https://{peer}", m.name)
            })
            .collect();
        let token = match &self.s.prefix {
            Some(prefix) if t.mode == Mode::Isolated => format!("rampart-{prefix}"),
            _ => format!("rampart-local-{}", self.h.local.octets()[1]),
        };
        let (cert, key) = self.s.state.etcd_server_cert(name);
        let ca = self.s.state.ca();
        let data = self.s.state.etcd_data(name);
        let flag = |k: &str, v: &dyn std::fmt::Display| format!("--{k}={v}");
        let args = vec![
            flag("name", name),
            flag("data-dir", &data.display()),
            flag("logger", &"zap"),
            flag("log-outputs", &"stderr"),
            flag("listen-peer-urls", &format!("https://{peer}")),
            flag("initial-advertise-peer-urls", &format!("https://{peer}")),
            flag("listen-client-urls", &format!("https://{client}")),
            flag("advertise-client-urls", &format!("https://{client}")),
            flag("listen-metrics-urls", &format!("http://{metrics}")),
            flag("initial-cluster", &cluster.join(",")),
            flag("initial-cluster-state", &"new"),
            flag("initial-cluster-token", &token),
            flag("cert-file", &cert.display()),
            flag("key-file", &key.display()),
            flag("trusted-ca-file", &ca.display()),
            "--client-cert-auth".into(),
            flag("peer-cert-file", &cert.display()),
            flag("peer-key-file", &key.display()),
            flag("peer-trusted-ca-file", &ca.display()),
            "--peer-client-cert-auth".into(),
            flag("auto-compaction-mode", &"revision"),
            flag("auto-compaction-retention", &"1000"),
            flag("max-request-bytes", &ETCD_MAX_REQUEST_BYTES),
            flag("quota-backend-bytes", &ETCD_QUOTA_BACKEND_BYTES),
            flag("experimental-watch-progress-notify-interval", &"5s"),
        ];
        let launch = Launch::Process {
            program: Program::Packaged {
                program: "etcd",
                package: "etcd-server",
            },
            args,
        };
        // Healthy only with a leader and a quorum read done: etcd's own `/health`.
        let ready = Probe::Http {
            addr: metrics,
            path: "/health",
            body: BodyCheck::Contains("\"health\":\"true\"".into()),
        };
        let mut svc = self.service("etcd", "etcd", launch, ready);
        svc.quorum = Some(Probe::Accepting(peer));
        svc.private_dirs = vec![data];
        svc.env_remove_prefixes = vec!["ETCD_"];
        svc.ports = vec![
            listen("client", client),
            listen("peer", peer),
            listen("metrics", metrics),
        ];
        svc.needs
            .extend(issued(self.s.state.etcd_server_cert(name)));
        svc.needs.push(self.ca());
        svc
    }

    fn database(&self) -> ServicePlan {
        let t = self.t;
        let primary = self.h.role == Role::DbPrimary;
        let server_id = if primary {
            1
        } else {
            let i = t
                .with_role(Role::DbReplica)
                .position(|r| r.name == self.h.name)
                .unwrap_or(0);
            2 + u32::try_from(i).unwrap_or(0)
        };
        let addr = self.sock(Segment::Data, t.ports.db);
        let db = DbServer {
            primary,
            server_id,
            bind: addr.ip(),
            port: addr.port(),
            socket: db_socket(&self.dir, self.s.uid),
            dir: self.dir.clone(),
            replicates_from: if primary {
                None
            } else {
                t.with_role(Role::DbPrimary).next().map(|p| p.name.clone())
            },
            tls: {
                let [cert, key] = self.cert(&self.h.name).map(|n| n.path);
                DbTls {
                    cert,
                    key,
                    ca: self.s.state.ca(),
                }
            },
        };
        // The keeper runs the server as its child and is what `up` starts, stops and
        // probes: ready once its server answers and it has reached etcd (leading or not).
        let status = self.sock(Segment::Mgmt, t.ports.keeper);
        let mut svc = self.service(
            "mariadb",
            "keeper",
            Launch::Database(db),
            Probe::Http {
                addr: status,
                path: "/status",
                body: BodyCheck::Contains("\"ready\":true".into()),
            },
        );
        let socket = db_socket(&self.dir, self.s.uid);
        svc.files.push(FileSpec {
            path: self.file("keeper.toml"),
            contents: keeper_config(
                t,
                self.h,
                &self.s.state,
                server_id,
                &self.s.failover,
                &socket,
            ),
            mode: CONFIG_MODE,
        });
        svc.ports = vec![listen("mysql", addr), listen("keeper", status)];
        if t.with_role(Role::Backup).next().is_some() {
            svc.ports.push(listen(
                "backup-source",
                self.sock(Segment::Data, t.ports.backup_source),
            ));
        }
        // Every account's password: the bootstrap creates them all, the backup host's
        // too (with or without a backup host, so adding one later needs no new secret).
        svc.needs = [
            APP_USER,
            MIGRATE_USER,
            REPL_USER,
            MONITOR_USER,
            KEEPER_USER,
            BACKUP_USER,
        ]
        .into_iter()
        .map(|u| self.secret(secret_file(u)))
        .collect();
        svc.needs.extend(self.cert(&self.h.name));
        svc.needs.push(self.ca());
        svc.needs
            .extend(issued(self.s.state.etcd_client_cert(&self.h.name)));
        svc
    }

    /// `rampart renew --watch` over the run's state directory.
    fn renewer(&self) -> ServicePlan {
        let ready = self.file("renewer.ready");
        let launch = Launch::Process {
            program: Program::Rampart(self.s.bin.clone()),
            args: vec![
                "renew".into(),
                "--state".into(),
                display(&self.s.state.root),
                "--watch".into(),
                "--ready".into(),
                display(&ready),
            ],
        };
        let probe = Probe::File {
            path: ready.clone(),
            body: BodyCheck::NonEmpty,
        };
        let mut svc = self.service("renewer", "renewer", launch, probe);
        svc.reset_files.push(ready);
        svc.in_namespace = false;
        svc
    }

    /// Isolated mode's forward from 127.0.0.1:`port` (the operator's loopback) to `to`,
    /// connecting from inside this host's namespace.
    fn forward(&self, name: &'static str, port: u16, to: SocketAddr) -> ServicePlan {
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let ns = self
            .s
            .prefix
            .as_ref()
            .map(|p| format!("{p}-{}", self.h.name))
            .unwrap_or_default();
        let launch = Launch::Process {
            program: Program::Rampart(self.s.bin.clone()),
            args: vec![
                "forward".into(),
                "--listen".into(),
                local.to_string(),
                "--netns".into(),
                ns,
                "--to".into(),
                to.to_string(),
            ],
        };
        let mut svc = self.service(name, name, launch, Probe::Accepting(local));
        svc.ports = vec![listen("forward", local)];
        svc.in_namespace = false;
        svc
    }
}

/// `--max-request-bytes` of every etcd member: 256 KiB (see `Builder::etcd`).
pub const ETCD_MAX_REQUEST_BYTES: u64 = 256 * 1024;
/// `--quota-backend-bytes` of every etcd member: 128 MiB (see `Builder::etcd`).
pub const ETCD_QUOTA_BACKEND_BYTES: u64 = 128 * 1024 * 1024;

/// An issued certificate and its key as a service's needs.
fn issued((cert, key): (PathBuf, PathBuf)) -> [Needed; 2] {
    [
        Needed {
            path: cert,
            max_mode: CONFIG_MODE,
            from: Source::Certificate,
        },
        Needed {
            path: key,
            max_mode: SECRET_MODE,
            from: Source::Certificate,
        },
    ]
}

fn listen(purpose: &'static str, addr: SocketAddr) -> Listen {
    Listen { purpose, addr }
}

fn display(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The site certificate, one for each web server and load balancer (also their client
/// certificate for mutual TLS), the databases', and the dashboard's: reached at its
/// management address (Alertmanager's webhook) and through the operator's forward on
/// 127.0.0.1. Then etcd's, in each host's directory: each member's (server and client,
/// for its peers), and a client certificate for each etcd client host.
fn certificates(t: &Topology, state: &StatePaths) -> Vec<Certificate> {
    let certs = state.certs();
    let cert = |stem: &str, names: Vec<String>, client| Certificate {
        dir: certs.clone(),
        stem: stem.to_owned(),
        names,
        server: true,
        client,
        issuer: Issuer::Site,
    };
    // Under `[acme]` each load balancer orders its own from the ACME CA instead.
    let mut v = Vec::new();
    if t.acme.is_none() {
        v.push(cert("site", t.site_names.clone(), false));
    }
    for h in t
        .hosts
        .iter()
        .filter(|h| matches!(h.role, Role::Web | Role::Lb))
    {
        v.push(cert(&h.name, vec![h.name.clone()], true));
    }
    // The database servers': verified by address (clients connect to the data address).
    for h in t
        .hosts
        .iter()
        .filter(|h| matches!(h.role, Role::DbPrimary | Role::DbReplica))
    {
        v.push(cert(
            &h.name,
            vec![h.name.clone(), t.addr(h, Segment::Data).to_string()],
            false,
        ));
    }
    // The backup host's: a client certificate only, for the keepers' backup sources.
    for b in t.with_role(Role::Backup) {
        v.push(cert(&b.name, vec![b.name.clone()], true));
        if let Some(c) = v.last_mut() {
            c.server = false;
        }
    }
    if let Some(m) = t.with_role(Role::Monitor).next() {
        let mut names = vec![m.name.clone(), "localhost".into(), "127.0.0.1".into()];
        let mgmt = t.addr(m, Segment::Mgmt).to_string();
        if !names.contains(&mgmt) {
            names.push(mgmt);
        }
        v.push(cert(&m.name, names, false));
    }
    // etcd's members: their peers check that a peer certificate's IP SAN is the
    // connection's source address, which is the management address in isolated mode
    // and 127.0.0.1 for every loopback address in local mode.
    for m in t.etcd_members() {
        let mut names = vec![m.name.clone(), t.addr(m, Segment::Mgmt).to_string()];
        let source = t.source_addr(m, Segment::Mgmt).to_string();
        if !names.contains(&source) {
            names.push(source);
        }
        v.push(Certificate {
            dir: state.host(&m.name),
            stem: ETCD_SERVER_STEM.into(),
            names,
            server: true,
            client: true,
            issuer: Issuer::Site,
        });
    }
    for c in t.etcd_clients() {
        v.push(Certificate {
            dir: state.host(&c.name),
            stem: ETCD_CLIENT_STEM.into(),
            names: vec![c.name.clone()],
            server: false,
            client: true,
            issuer: Issuer::Site,
        });
    }
    // Every host's agent: its credentials at the ingest gate, which lets it write only
    // series whose `instance` is one of these names.
    if t.with_role(Role::Monitor).next().is_some() {
        for h in &t.hosts {
            let (pem, _) = state.agent_cert(&h.name);
            v.push(Certificate {
                dir: pem.parent().map(Path::to_path_buf).unwrap_or_default(),
                stem: AGENT_CERT_STEM.into(),
                names: vec![h.name.clone()],
                server: false,
                client: true,
                issuer: Issuer::Site,
            });
        }
    }
    // The monitoring plane's clients, on the monitor host.
    if let Some(m) = t.with_role(Role::Monitor).next() {
        for who in PLANE_CLIENTS {
            v.push(Certificate {
                dir: state.host(&m.name),
                stem: plane_stem(who),
                names: vec![format!("{who}.plane.rampart")],
                server: false,
                client: true,
                issuer: Issuer::Plane,
            });
        }
    }
    v
}

/// Where each role's connections to the database come from, as the server sees them.
fn sources(t: &Topology, roles: &[Role], seg: Segment) -> Vec<String> {
    let mut v: Vec<String> = roles
        .iter()
        .flat_map(|&r| t.with_role(r))
        .map(|h| t.source_addr(h, seg).to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The database accounts of `t`'s hosts (see [`db_users_from`]).
fn db_users(t: &Topology) -> Vec<DbUser> {
    db_users_from(
        sources(t, &[Role::Web], Segment::Data),
        // Any database host replicates after a failover.
        sources(t, &[Role::DbPrimary, Role::DbReplica], Segment::Data),
        // Each agent reads its own server over TLS, from the server's data address.
        sources(t, &[Role::DbPrimary, Role::DbReplica], Segment::Data),
        // Each keeper talks to its own server on the server's data address.
        sources(t, &[Role::DbPrimary, Role::DbReplica], Segment::Data),
        // The backup host archives the binlog and checksums tables from its data address.
        sources(t, &[Role::Backup], Segment::Data),
        true,
    )
}

/// The database accounts, least privilege each, by where they connect from: the
/// application (`app_hosts`) reads and writes rows; migrations change the schema but can
/// neither drop nor delete; the replicas (`replica_hosts`) replicate; the agents
/// (`monitor_hosts`, and always `localhost` for the socket) see status, never
/// application data, with at most three connections; the backup host (`backup_hosts`)
/// reads the binlog as a replica would and the application's tables for verify's
/// checksums, with at most four connections, and writes nothing. With `require_tls`,
/// every account but the socket's must connect over TLS.
pub fn db_users_from(
    app_hosts: Vec<String>,
    replica_hosts: Vec<String>,
    mut monitor_hosts: Vec<String>,
    keeper_hosts: Vec<String>,
    backup_hosts: Vec<String>,
    require_tls: bool,
) -> Vec<DbUser> {
    let on_db = |privileges: &str| format!("{privileges} ON `{DATABASE}`.*");
    if !monitor_hosts.iter().any(|h| h == "localhost") {
        monitor_hosts.push("localhost".into());
    }
    vec![
        DbUser {
            name: APP_USER,
            secret: secret_file(APP_USER),
            hosts: app_hosts.clone(),
            grants: vec![on_db("SELECT, INSERT, UPDATE, DELETE")],
            max_connections: None,
            require_tls,
        },
        DbUser {
            name: MIGRATE_USER,
            secret: secret_file(MIGRATE_USER),
            hosts: app_hosts,
            grants: vec![on_db(
                "CREATE, ALTER, INDEX, REFERENCES, SELECT, INSERT, UPDATE",
            )],
            max_connections: None,
            require_tls,
        },
        DbUser {
            name: REPL_USER,
            secret: secret_file(REPL_USER),
            hosts: replica_hosts,
            grants: vec!["REPLICATION SLAVE ON *.*".into()],
            max_connections: None,
            require_tls,
        },
        DbUser {
            name: MONITOR_USER,
            secret: secret_file(MONITOR_USER),
            hosts: monitor_hosts,
            grants: vec![
                "PROCESS, BINLOG MONITOR, REPLICA MONITOR ON *.*".into(),
                "SELECT ON `performance_schema`.*".into(),
            ],
            max_connections: Some(3),
            require_tls,
        },
        DbUser {
            name: KEEPER_USER,
            secret: secret_file(KEEPER_USER),
            hosts: keeper_hosts,
            // Least privilege for what a keeper does: switch read_only, run and point
            // replication, turn semi-sync on and off, read the process list and close
            // the application's sessions (RESET SLAVE ALL also needs RELOAD). No SUPER,
            // no data privileges.
            grants: vec![
                "READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN, \
                 REPLICA MONITOR, BINLOG MONITOR, CONNECTION ADMIN, PROCESS, RELOAD ON *.*"
                    .into(),
            ],
            max_connections: Some(4),
            require_tls,
        },
        DbUser {
            name: BACKUP_USER,
            secret: secret_file(BACKUP_USER),
            hosts: backup_hosts,
            grants: vec![
                "REPLICATION SLAVE, BINLOG MONITOR ON *.*".into(),
                on_db("SELECT"),
            ],
            max_connections: Some(4),
            require_tls,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(prefix: Option<&str>) -> Settings {
        Settings {
            state: StatePaths::new(Path::new("/st")),
            bin: PathBuf::from("/bin/rampart"),
            pace: Pace::Production,
            prefix: prefix.map(str::to_owned),
            publish: 8443,
            dashboard_publish: 9443,
            uid: 1000,
            failover: Failover::default(),
            runtime: PathBuf::from("/run/st"),
            journal: false,
            cgroups: false,
        }
    }

    fn local() -> Plan {
        plan(&Topology::default_for(Mode::Local, 0), &settings(None))
    }

    fn isolated() -> Plan {
        plan(
            &Topology::default_for(Mode::Isolated, 0),
            &settings(Some("rp")),
        )
    }

    fn services(p: &Plan, host: &str) -> Vec<&'static str> {
        p.host(host)
            .map(|h| h.services.iter().map(|s| s.name).collect())
            .unwrap_or_default()
    }

    /// (host, services in start order) in each mode.
    #[test]
    fn services_per_host() {
        let check = |p: &Plan, host: &str, expected: &[&str]| {
            assert_eq!(services(p, host), expected, "{host}");
        };
        for p in [local(), isolated()] {
            check(&p, "db1", &["mariadb", "agent"]);
            check(&p, "db2", &["mariadb", "agent"]);
            check(&p, "web1", &["web", "agent"]);
            check(&p, "lb1", &["etcd", "lb", "agent"]);
            check(&p, "dns", &["etcd", "dns", "agent"]);
        }
        check(&local(), "client", &[]);
        check(&isolated(), "client", &["forward"]);
        check(
            &local(),
            "monitor",
            &[
                "etcd",
                "dashboard",
                "alertmanager",
                "prometheus",
                "logs",
                "gate",
                "agent",
                "renewer",
            ],
        );
        check(
            &isolated(),
            "monitor",
            &[
                "etcd",
                "dashboard",
                "alertmanager",
                "prometheus",
                "logs",
                "gate",
                "agent",
                "renewer",
                "dashboard-forward",
            ],
        );
        // Publishing nothing starts no forward.
        let mut s = settings(Some("rp"));
        s.publish = 0;
        s.dashboard_publish = 0;
        let p = plan(&Topology::default_for(Mode::Isolated, 0), &s);
        check(&p, "client", &[]);
        assert_eq!(services(&p, "monitor").last(), Some(&"renewer"));
    }

    /// With cgroups, every host of an isolated run has `rampart-<prefix>/<host>` with
    /// its topology's limits, and its agent reports from it; without, none has.
    #[test]
    fn isolated_hosts_get_their_cgroups_and_agents_read_them() {
        let mut t = Topology::default_for(Mode::Isolated, 0);
        let limits = crate::Limits {
            millicpus: Some(500),
            memory: Some(512 << 20),
        };
        if let Some(h) = t.hosts.iter_mut().find(|h| h.name == "db1") {
            h.limits = limits;
        }
        let mut s = settings(Some("rp"));
        s.cgroups = true;
        let p = plan(&t, &s);
        let agent_config = |p: &Plan, host: &str| {
            let agent = p.host(host).and_then(|h| h.service("agent")).unwrap();
            agent.files[0].contents.clone()
        };
        for h in &p.hosts {
            let c = h.cgroup.as_ref().unwrap();
            assert_eq!(c.path, format!("rampart-rp/{}", h.name));
            let expected = if h.name == "db1" {
                limits
            } else {
                crate::Limits::default()
            };
            assert_eq!(c.limits, expected, "{}", h.name);
        }
        assert!(agent_config(&p, "db1").contains("\n[host]\ncgroup = true\n"));
        for p in [isolated(), local()] {
            assert!(p.hosts.iter().all(|h| h.cgroup.is_none()));
            assert!(!agent_config(&p, "db1").contains("cgroup"));
        }
    }

    #[test]
    fn start_order_puts_the_monitor_first_and_the_client_last() {
        let names =
            |p: &Plan| -> Vec<String> { p.start_order().iter().map(|h| h.name.clone()).collect() };
        assert_eq!(
            names(&isolated()),
            ["monitor", "dns", "db1", "db2", "web1", "web2", "lb1", "backup", "client"]
        );
        assert_eq!(
            names(&local()),
            ["monitor", "dns", "db1", "db2", "web1", "web2", "lb1", "backup"]
        );
        // The etcd members start before all of them, together.
        let quorum: Vec<String> = isolated()
            .quorum_services()
            .iter()
            .map(|(h, s)| format!("{}/{}", h.name, s.name))
            .collect();
        assert_eq!(quorum, ["monitor/etcd", "dns/etcd", "lb1/etcd"]);
    }

    /// (host, service, argv) for the services whose argv is not just `rampart NAME
    /// --config FILE`.
    #[test]
    fn argv() {
        let p = isolated();
        let check = |host: &str, svc: &str, program: Program, args: &[&str]| {
            let s = p.host(host).and_then(|h| h.service(svc)).unwrap();
            assert_eq!(
                s.launch,
                Launch::Process {
                    program,
                    args: args.iter().map(|a| (*a).to_owned()).collect()
                },
                "{host}/{svc}"
            );
        };
        let rampart = || Program::Rampart(PathBuf::from("/bin/rampart"));
        check(
            "web1",
            "web",
            rampart(),
            &["web", "--config", "/st/hosts/web1/web.toml"],
        );
        check(
            "client",
            "forward",
            rampart(),
            &[
                "forward",
                "--listen",
                "127.0.0.1:8443",
                "--netns",
                "rp-client",
                "--to",
                "203.0.113.10:443",
            ],
        );
        check(
            "monitor",
            "dashboard-forward",
            rampart(),
            &[
                "forward",
                "--listen",
                "127.0.0.1:9443",
                "--netns",
                "rp-monitor",
                "--to",
                "198.18.9.2:3000",
            ],
        );
        check(
            "monitor",
            "prometheus",
            Program::Packaged {
                program: "prometheus",
                package: "prometheus",
            },
            &[
                "--config.file=/st/hosts/monitor/prometheus.yml",
                "--storage.tsdb.path=/st/hosts/monitor/prometheus-data",
                "--web.listen-address=127.0.0.1:9091",
                "--web.config.file=/st/hosts/monitor/prometheus-web.yml",
                "--web.enable-remote-write-receiver",
                "--storage.tsdb.retention.time=15d",
            ],
        );
        check(
            "monitor",
            "alertmanager",
            Program::Packaged {
                program: "prometheus-alertmanager",
                package: "prometheus-alertmanager",
            },
            &[
                "--config.file=/st/hosts/monitor/alertmanager.yml",
                "--storage.path=/st/hosts/monitor/alertmanager-data",
                "--web.listen-address=127.0.0.1:9093",
                "--web.config.file=/st/hosts/monitor/alertmanager-web.yml",
                "--cluster.listen-address=",
            ],
        );
        let etcd = Program::Packaged {
            program: "etcd",
            package: "etcd-server",
        };
        check(
            "dns",
            "etcd",
            etcd,
            &[
                "--name=dns",
                "--data-dir=/st/hosts/dns/etcd",
                "--logger=zap",
                "--log-outputs=stderr",
                "--listen-peer-urls=https://198.18.9.53:2380",
                "--initial-advertise-peer-urls=https://198.18.9.53:2380",
                "--listen-client-urls=https://198.18.9.53:2379",
                "--advertise-client-urls=https://198.18.9.53:2379",
                "--listen-metrics-urls=http://198.18.9.53:2381",
                "--initial-cluster=monitor=https://198.18.9.2:2380,dns=https://198.18.9.53:2380,lb1=https://198.18.9.10:2380",
                "--initial-cluster-state=new",
                "--initial-cluster-token=rampart-rp",
                "--cert-file=/st/hosts/dns/etcd-server.pem",
                "--key-file=/st/hosts/dns/etcd-server.key",
                "--trusted-ca-file=/st/certs/ca.pem",
                "--client-cert-auth",
                "--peer-cert-file=/st/hosts/dns/etcd-server.pem",
                "--peer-key-file=/st/hosts/dns/etcd-server.key",
                "--peer-trusted-ca-file=/st/certs/ca.pem",
                "--peer-client-cert-auth",
                "--auto-compaction-mode=revision",
                "--auto-compaction-retention=1000",
                "--max-request-bytes=262144",
                "--quota-backend-bytes=134217728",
                "--experimental-watch-progress-notify-interval=5s",
            ],
        );
    }

    /// A larger site from a topology file follows the roles, not the names: the load
    /// balancer balances over every web server, each web server knows every database
    /// server, every database host runs a keeper and may replicate from every other,
    /// every host with a management address is scraped, and the policy says so.
    #[test]
    fn a_larger_site_follows_the_roles() {
        let site = crate::file::parse("site.toml", "[hosts]\nweb = 3\nreplicas = 2\n").unwrap();
        let t = site.topology(Mode::Isolated, 0).unwrap();
        let p = plan(&t, &settings(Some("rp")));
        let config = |host: &str, svc: &str| {
            p.host(host)
                .and_then(|h| h.service(svc))
                .and_then(|s| s.files.first())
                .map(|f| f.contents.clone())
                .unwrap_or_else(|| panic!("{host}/{svc}"))
        };
        let lb = config("lb1", "lb");
        for web in ["web1", "web2", "web3"] {
            assert!(lb.contains(&format!("name = \"{web}\"")), "{lb}");
        }
        let web3 = config("web3", "web");
        for db in ["198.18.2.21:3306", "198.18.2.22:3306", "198.18.2.23:3306"] {
            assert!(web3.contains(db), "{web3}");
        }
        for db in ["db1", "db2", "db3"] {
            assert_eq!(services(&p, db), ["mariadb", "agent"], "{db}");
            assert!(p.etcd_client(db).is_some(), "{db}");
        }
        assert!(p.etcd_client("web3").is_some());
        use crate::policy::Proto;
        assert!(t.allows("web3", "db3", Proto::Tcp, 3306));
        assert!(t.allows("db3", "db2", Proto::Tcp, 3306));
        assert!(t.allows("lb1", "web3", Proto::Tcp, 8443));
        assert!(!t.allows("web3", "web1", Proto::Tcp, 8443));
        // Agents push (remote write): every host with a management address may.
        assert!(t.allows("db3", "monitor", Proto::Tcp, 9090));
        assert!(t.allows("web3", "monitor", Proto::Tcp, 9090));
    }

    /// A pair of load balancers: keepalived on both (VRRP unicast to each other, the
    /// floating address on the public interface, the local lb tracked), each lb bound to
    /// the floating address with freebind, DNS answering it, and firewalls that admit the
    /// site's traffic to it and VRRP between the two alone.
    #[test]
    fn a_load_balancer_pair_shares_a_floating_address() {
        let site = crate::file::parse("site.toml", "[hosts]\nlb = 2\n").unwrap();
        let t = site.topology(Mode::Isolated, 0).unwrap();
        let p = plan(&t, &settings(Some("rp")));
        let file = |host: &str, svc: &str, i: usize| {
            p.host(host)
                .and_then(|h| h.service(svc))
                .and_then(|s| s.files.get(i))
                .map(|f| f.contents.clone())
                .unwrap_or_else(|| panic!("{host}/{svc}"))
        };
        assert_eq!(services(&p, "lb1"), ["etcd", "lb", "keepalived", "agent"]);
        assert_eq!(services(&p, "lb2"), ["lb", "keepalived", "agent"]);
        let k1 = file("lb1", "keepalived", 0);
        let k2 = file("lb2", "keepalived", 0);
        for needle in [
            "unicast_src_ip 203.0.113.10",
            "\t\t203.0.113.9\n",
            "203.0.113.80/24 dev eth-pub",
            "priority 150",
            "http://198.18.9.10:9180/-/healthy",
            "/bin/rampart vrrp-notify --state-file /st/hosts/lb1/vrrp.state",
        ] {
            assert!(k1.contains(needle), "{needle} not in {k1}");
        }
        assert!(
            k2.contains("unicast_src_ip 203.0.113.9") && k2.contains("priority 100"),
            "{k2}"
        );
        let lb2 = file("lb2", "lb", 0);
        assert!(
            lb2.contains("https = \"203.0.113.80:443\"") && lb2.contains("freebind = true"),
            "{lb2}"
        );
        assert!(file("dns", "dns", 0).contains("site = \"203.0.113.80\""));
        assert!(file("lb2", "agent", 0).contains("/st/hosts/lb2/vrrp.state"));
        let nft1 = crate::nft::ruleset(&t, t.host("lb1").unwrap());
        assert!(
            nft1.contains("ip saddr 203.0.113.9 ip daddr 203.0.113.10 ip protocol vrrp accept"),
            "{nft1}"
        );
        assert!(
            nft1.contains(
                "ip daddr { 203.0.113.10, 203.0.113.80 } tcp dport 443 ct state new accept"
            ),
            "{nft1}"
        );
        let client = crate::nft::ruleset(&t, t.host("client").unwrap());
        assert!(
            client.contains("ip daddr { 203.0.113.9, 203.0.113.80 } tcp dport 443"),
            "{client}"
        );
        // No VRRP anywhere else, and one load balancer has no keepalived.
        let web = crate::nft::ruleset(&t, t.host("web1").unwrap());
        assert!(!web.contains("vrrp"));
        assert!(!services(&isolated(), "lb1").contains(&"keepalived"));
    }

    /// etcd in local mode: loopback addresses, a token per address block, and the same
    /// service data in both modes (quorum probe, private data directory, no `ETCD_*`).
    #[test]
    fn etcd_members_in_local_mode() {
        let p = local();
        let etcd = p.host("lb1").and_then(|h| h.service("etcd")).unwrap();
        let Launch::Process { args, .. } = &etcd.launch else {
            panic!("{:?}", etcd.launch)
        };
        for arg in [
            "--listen-client-urls=https://127.0.1.10:2379",
            "--initial-cluster=monitor=https://127.0.9.2:2380,dns=https://127.0.3.53:2380,lb1=https://127.0.1.10:2380",
            "--initial-cluster-token=rampart-local-0",
        ] {
            assert!(args.iter().any(|a| a == arg), "{arg} missing: {args:?}");
        }
        for p in [local(), isolated()] {
            for h in p.hosts.iter().filter(|h| h.service("etcd").is_some()) {
                let s = h.service("etcd").unwrap();
                let peer = s.ports.iter().find(|l| l.purpose == "peer").unwrap();
                assert_eq!(s.quorum, Some(Probe::Accepting(peer.addr)), "{}", h.name);
                assert_eq!(
                    s.private_dirs,
                    [PathBuf::from(format!("/st/hosts/{}/etcd", h.name))]
                );
                assert_eq!(s.env_remove_prefixes, ["ETCD_"]);
                assert!(!matches!(h.role, Role::DbPrimary | Role::DbReplica));
            }
            // Nothing else waits on a quorum.
            assert_eq!(p.quorum_services().len(), 3);
            // The monitor's Prometheus scrapes every member's metrics listener.
            let prometheus = p
                .host("monitor")
                .and_then(|h| h.service("prometheus"))
                .unwrap();
            let config = &prometheus.files[2].contents;
            let metrics: Vec<String> = p
                .hosts
                .iter()
                .filter_map(|h| h.service("etcd"))
                .map(|s| format!("\"{}\"", s.ports[2].addr))
                .collect();
            assert!(config.contains("job_name: etcd"), "{config}");
            for m in metrics {
                assert!(config.contains(&m), "{m} missing from\n{config}");
            }
        }
    }

    /// What the database failover work reads: the endpoints and each client host's
    /// certificate, the same in the plan and the topology.
    #[test]
    fn etcd_endpoints_and_client_certificates() {
        let p = isolated();
        assert_eq!(
            p.etcd_endpoints(),
            [
                "https://198.18.9.2:2379",
                "https://198.18.9.53:2379",
                "https://198.18.9.10:2379"
            ]
        );
        assert_eq!(
            p.etcd_endpoints(),
            Topology::default_for(Mode::Isolated, 0).etcd_endpoints()
        );
        // The endpoints are the members' planned client listeners.
        let mut listeners: Vec<String> = p
            .hosts
            .iter()
            .filter_map(|h| h.service("etcd"))
            .map(|s| format!("https://{}", s.ports[0].addr))
            .collect();
        let mut endpoints = p.etcd_endpoints();
        endpoints.sort();
        listeners.sort();
        assert_eq!(listeners, endpoints);
        assert_eq!(p.etcd.ca, PathBuf::from("/st/certs/ca.pem"));
        let clients: Vec<String> = p
            .etcd
            .clients
            .iter()
            .map(|c| format!("{} {} {}", c.host, c.cert.display(), c.key.display()))
            .collect();
        assert_eq!(
            clients,
            [
                "web1 /st/hosts/web1/etcd-client.pem /st/hosts/web1/etcd-client.key",
                "web2 /st/hosts/web2/etcd-client.pem /st/hosts/web2/etcd-client.key",
                "db1 /st/hosts/db1/etcd-client.pem /st/hosts/db1/etcd-client.key",
                "db2 /st/hosts/db2/etcd-client.pem /st/hosts/db2/etcd-client.key",
            ]
        );
        assert_eq!(
            p.etcd_client("db2").map(|c| c.cert.clone()),
            Some(StatePaths::new(Path::new("/st")).etcd_client_cert("db2").0)
        );
        assert!(p.etcd_client("lb1").is_none());
        assert!(p.etcd_client("monitor").is_none());
    }

    /// (host, service, purpose:address of every listener), main listener first.
    #[test]
    fn ports() {
        let check = |p: &Plan, host: &str, svc: &str, expected: &[&str]| {
            let s = p.host(host).and_then(|h| h.service(svc)).unwrap();
            let got: Vec<String> = s
                .ports
                .iter()
                .map(|l| format!("{}:{}", l.purpose, l.addr))
                .collect();
            assert_eq!(got, expected, "{host}/{svc}");
        };
        let i = isolated();
        check(
            &i,
            "lb1",
            "lb",
            &[
                "https:203.0.113.10:443",
                "http:203.0.113.10:80",
                "admin:198.18.9.10:9180",
            ],
        );
        check(
            &i,
            "web2",
            "web",
            &["https:198.18.1.12:8443", "admin:198.18.9.12:9181"],
        );
        check(
            &i,
            "db1",
            "mariadb",
            &[
                "mysql:198.18.2.21:3306",
                "keeper:198.18.9.21:9104",
                "backup-source:198.18.2.21:9108",
            ],
        );
        check(&i, "backup", "backup", &["status:198.18.9.3:9107"]);
        check(&i, "dns", "dns", &["dns:203.0.113.53:53"]);
        check(&i, "dns", "agent", &["metrics:198.18.9.53:9100"]);
        check(&i, "monitor", "prometheus", &["api:127.0.0.1:9091"]);
        check(
            &i,
            "monitor",
            "gate",
            &["ingest:198.18.9.2:9090", "metrics:198.18.9.2:9096"],
        );
        check(&i, "monitor", "alertmanager", &["api:127.0.0.1:9093"]);
        check(
            &i,
            "monitor",
            "dashboard",
            &["https:198.18.9.2:3000", "metrics:198.18.9.2:3001"],
        );
        check(&i, "client", "forward", &["forward:127.0.0.1:8443"]);
        check(
            &i,
            "monitor",
            "etcd",
            &[
                "client:198.18.9.2:2379",
                "peer:198.18.9.2:2380",
                "metrics:198.18.9.2:2381",
            ],
        );
        let l = local();
        check(
            &l,
            "lb1",
            "lb",
            &[
                "https:127.0.1.10:8443",
                "http:127.0.1.10:8080",
                "admin:127.0.1.10:9180",
            ],
        );
        check(&l, "dns", "dns", &["dns:127.0.3.53:5353"]);
        check(&l, "monitor", "alertmanager", &["api:127.0.9.2:9093"]);
        check(
            &l,
            "dns",
            "etcd",
            &[
                "client:127.0.3.53:2379",
                "peer:127.0.3.53:2380",
                "metrics:127.0.3.53:2381",
            ],
        );
    }

    #[test]
    fn readiness_probes() {
        let p = isolated();
        let ready = |host: &str, svc: &str| {
            p.host(host)
                .and_then(|h| h.service(svc))
                .map(|s| s.ready.clone())
                .unwrap()
        };
        let http = |addr: &str, path, body| Probe::Http {
            addr: addr.parse().unwrap(),
            path,
            body,
        };
        assert_eq!(
            ready("web1", "web"),
            http("198.18.9.11:9181", "/readyz", BodyCheck::Any)
        );
        assert_eq!(
            ready("lb1", "lb"),
            http(
                "198.18.9.10:9180",
                "/metrics",
                BodyCheck::Lines(vec![
                    "rampart_lb_backend_up{backend=\"web1\"} 1".into(),
                    "rampart_lb_backend_up{backend=\"web2\"} 1".into(),
                ])
            )
        );
        assert_eq!(
            ready("db1", "agent"),
            http("198.18.9.21:9100", "/metrics", BodyCheck::NonEmpty)
        );
        assert_eq!(
            ready("db2", "mariadb"),
            http(
                "198.18.9.22:9104",
                "/status",
                BodyCheck::Contains("\"ready\":true".into())
            )
        );
        assert_eq!(
            ready("lb1", "etcd"),
            http(
                "198.18.9.10:2381",
                "/health",
                BodyCheck::Contains("\"health\":\"true\"".into())
            )
        );
        assert_eq!(
            ready("dns", "dns"),
            Probe::Accepting("203.0.113.53:53".parse().unwrap())
        );
        assert_eq!(
            ready("client", "forward"),
            Probe::Accepting("127.0.0.1:8443".parse().unwrap())
        );
        let client = p.host("client").unwrap();
        assert!(!client.services[0].in_namespace);
        assert!(p
            .host("web1")
            .unwrap()
            .services
            .iter()
            .all(|s| s.in_namespace));
    }

    #[test]
    fn body_checks() {
        let lines = BodyCheck::Lines(vec!["a 1".into(), "b 1".into()]);
        let healthy = BodyCheck::Contains("\"health\":\"true\"".into());
        for (check, body, expected) in [
            (&BodyCheck::Any, "", true),
            (&BodyCheck::NonEmpty, "", false),
            (&BodyCheck::NonEmpty, "x", true),
            (&lines, "a 1\nb 1\n", true),
            (&lines, "b 1\nc\na 1", true),
            (&lines, "a 1\nb 0\n", false),
            (&lines, "a 11\nb 1\n", false),
            (&healthy, "{\"health\":\"true\"}", true),
            (&healthy, "{\"health\":\"true\",\"reason\":\"\"}", true),
            (&healthy, "{\"health\":\"false\"}", false),
            (&healthy, "", false),
        ] {
            assert_eq!(check.passes(body), expected, "{check:?} on {body:?}");
        }
    }

    #[test]
    fn pid_and_log_files() {
        let p = local();
        let db1 = p.host("db1").unwrap();
        assert_eq!(
            db1.services[0].pid_file,
            PathBuf::from("/st/hosts/db1/keeper.pid")
        );
        assert_eq!(
            db1.services[0].log_file,
            PathBuf::from("/st/hosts/db1/keeper.log")
        );
        assert_eq!(
            db1.services[1].pid_file,
            PathBuf::from("/st/hosts/db1/agent.pid")
        );
        let mon = p.host("monitor").unwrap();
        assert_eq!(
            mon.service("alertmanager").unwrap().log_file,
            PathBuf::from("/st/hosts/monitor/alertmanager.log")
        );
    }

    /// `[monitor] rules`: each extra rules file is one more config of Prometheus beside
    /// `rules.yml`, under its own name, listed after rampart's in `rule_files`, in both
    /// modes; none by default.
    #[test]
    fn extra_rules_files_reach_prometheus() {
        for mode in [Mode::Local, Mode::Isolated] {
            let mut t = Topology::default_for(mode, 0);
            t.monitor_rules = ["node-mixin/rules.yaml", "mysqld-mixin/rules/rules.yaml"]
                .iter()
                .enumerate()
                .map(|(i, src)| crate::RuleFile {
                    name: monitor::extra_rules_name(i, src),
                    source: (*src).into(),
                    contents: format!("groups: [] # {src}\n"),
                })
                .collect();
            let p = plan(&t, &settings(Some("rp")));
            let prom = p.host("monitor").unwrap().service("prometheus").unwrap();
            let files: Vec<String> = prom
                .files
                .iter()
                .map(|f| format!("{} {:o}", f.path.display(), f.mode))
                .collect();
            assert_eq!(
                files,
                [
                    "/st/hosts/monitor/prometheus-web.yml 644",
                    "/st/hosts/monitor/rules.yml 644",
                    "/st/hosts/monitor/rules-extra-1-rules.yaml 644",
                    "/st/hosts/monitor/rules-extra-2-rules.yaml 644",
                    "/st/hosts/monitor/prometheus.yml 644",
                ],
                "{mode:?}"
            );
            assert_eq!(
                prom.files[3].contents,
                "groups: [] # mysqld-mixin/rules/rules.yaml\n"
            );
            let config = &prom.files[4].contents;
            assert!(
                config.contains(
                    "rule_files:\n  - \"/st/hosts/monitor/rules.yml\"\n  \
                     - \"/st/hosts/monitor/rules-extra-1-rules.yaml\"\n  \
                     - \"/st/hosts/monitor/rules-extra-2-rules.yaml\"\nalerting:"
                ),
                "{config}"
            );
        }
        let p = isolated();
        let prom = p.host("monitor").unwrap().service("prometheus").unwrap();
        assert!(!prom
            .files
            .iter()
            .any(|f| f.path.to_string_lossy().contains("extra")));
    }

    #[test]
    fn files_and_needs() {
        let p = isolated();
        let files = |host: &str, svc: &str| -> Vec<String> {
            let s = p.host(host).and_then(|h| h.service(svc)).unwrap();
            s.files
                .iter()
                .map(|f| format!("{} {:o}", f.path.display(), f.mode))
                .collect()
        };
        assert_eq!(
            files("monitor", "prometheus"),
            [
                "/st/hosts/monitor/prometheus-web.yml 644",
                "/st/hosts/monitor/rules.yml 644",
                "/st/hosts/monitor/prometheus.yml 644"
            ]
        );
        assert_eq!(files("web1", "web"), ["/st/hosts/web1/web.toml 644"]);
        let needs = |host: &str, svc: &str| -> Vec<String> {
            let s = p.host(host).and_then(|h| h.service(svc)).unwrap();
            s.needs
                .iter()
                .map(|n| format!("{} {:o}", n.path.display(), n.max_mode))
                .collect()
        };
        assert_eq!(
            needs("web1", "web"),
            [
                "/st/certs/web1.pem 644",
                "/st/certs/web1.key 600",
                "/st/certs/ca.pem 644",
                "/st/secrets/db-app.password 600",
                "/st/secrets/db-migrate.password 600",
                "/st/hosts/web1/etcd-client.pem 644",
                "/st/hosts/web1/etcd-client.key 600",
            ]
        );
        assert_eq!(
            needs("lb1", "lb"),
            [
                "/st/certs/site.pem 644",
                "/st/certs/site.key 600",
                "/st/certs/lb1.pem 644",
                "/st/certs/lb1.key 600",
                "/st/certs/ca.pem 644",
            ]
        );
        assert_eq!(
            needs("db2", "agent"),
            [
                "/st/secrets/db-monitor.password 600",
                "/st/certs/ca.pem 644",
                "/st/hosts/db2/agent.pem 644",
                "/st/hosts/db2/agent.key 600",
            ]
        );
        assert_eq!(
            needs("web2", "agent"),
            [
                "/st/certs/ca.pem 644",
                "/st/hosts/web2/agent.pem 644",
                "/st/hosts/web2/agent.key 600",
            ]
        );
        assert_eq!(
            needs("monitor", "gate"),
            [
                "/st/certs/monitor.pem 644",
                "/st/certs/monitor.key 600",
                "/st/certs/ca.pem 644",
                "/st/hosts/monitor/plane-gate.pem 644",
                "/st/hosts/monitor/plane-gate.key 600",
            ]
        );
        assert_eq!(
            needs("dns", "etcd"),
            [
                "/st/hosts/dns/etcd-server.pem 644",
                "/st/hosts/dns/etcd-server.key 600",
                "/st/certs/ca.pem 644",
            ]
        );
        assert_eq!(
            needs("monitor", "alertmanager"),
            [
                "/st/certs/monitor.pem 644",
                "/st/certs/monitor.key 600",
                "/st/certs/plane-ca.pem 644",
                "/st/certs/ca.pem 644",
                "/st/hosts/monitor/alert-webhook.token 600",
            ]
        );
        // Every file a service needs is issued, a secret, or made by a service that
        // starts before it on the same host.
        let issued: Vec<PathBuf> = p
            .certificates
            .iter()
            .flat_map(|c| {
                let (cert, key) = c.files();
                [cert, key]
            })
            .chain([
                PathBuf::from("/st/certs/ca.pem"),
                PathBuf::from("/st/certs/plane-ca.pem"),
            ])
            .collect();
        for h in &p.hosts {
            for (i, s) in h.services.iter().enumerate() {
                for n in &s.needs {
                    match n.from {
                        Source::Certificate => assert!(issued.contains(&n.path), "{n:?}"),
                        Source::Secret => assert!(n.path.starts_with("/st/secrets")),
                        Source::Service(by) => assert!(
                            h.services[..i].iter().any(|e| e.name == by),
                            "{}/{} needs {by} first",
                            h.name,
                            s.name
                        ),
                    }
                }
            }
        }
    }

    #[test]
    fn databases_and_replication() {
        let p = isolated();
        let dbs: Vec<(String, u32, bool, Option<String>)> = p
            .databases()
            .map(|(h, d)| {
                (
                    h.name.clone(),
                    d.server_id,
                    d.primary,
                    d.replicates_from.clone(),
                )
            })
            .collect();
        assert_eq!(
            dbs,
            [
                ("db1".into(), 1, true, None),
                ("db2".into(), 2, false, Some("db1".into()))
            ]
        );
        let db2 = p.database("db2").unwrap();
        assert_eq!(db2.bind.to_string(), "198.18.2.22");
        assert_eq!(db2.socket, PathBuf::from("/st/hosts/db2/mysqld.sock"));
        assert!(p.database("web1").is_none());
    }

    /// (user, hosts, grants) in each mode: least privilege, and the addresses the
    /// database sees.
    #[test]
    fn database_users_and_grants() {
        let rows = |p: &Plan| -> Vec<String> {
            p.db_users
                .iter()
                .map(|u| {
                    format!(
                        "{} from {} ({}): {}{}",
                        u.name,
                        u.hosts.join(" "),
                        u.secret,
                        u.grants.join("; "),
                        u.max_connections
                            .map_or(String::new(), |n| format!(" max {n}"))
                    )
                })
                .collect()
        };
        assert_eq!(
            rows(&isolated()),
            [
                "foobar_app from 198.18.2.11 198.18.2.12 (db-app.password): SELECT, INSERT, UPDATE, DELETE ON `foobar`.*",
                "foobar_migrate from 198.18.2.11 198.18.2.12 (db-migrate.password): CREATE, ALTER, INDEX, REFERENCES, SELECT, INSERT, UPDATE ON `foobar`.*",
                "rampart_repl from 198.18.2.21 198.18.2.22 (db-repl.password): REPLICATION SLAVE ON *.*",
                "rampart_monitor from 198.18.2.21 198.18.2.22 localhost (db-monitor.password): PROCESS, BINLOG MONITOR, REPLICA MONITOR ON *.*; SELECT ON `performance_schema`.* max 3",
                "rampart_keeper from 198.18.2.21 198.18.2.22 (db-keeper.password): READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN, REPLICA MONITOR, BINLOG MONITOR, CONNECTION ADMIN, PROCESS, RELOAD ON *.* max 4",
                "rampart_backup from 198.18.2.3 (db-backup.password): REPLICATION SLAVE, BINLOG MONITOR ON *.*; SELECT ON `foobar`.* max 4",
            ]
        );
        // Every account of a run takes TLS only (but the socket's, see infra's users).
        assert!(isolated().db_users.iter().all(|u| u.require_tls));
        let local = rows(&local());
        assert!(
            local[0].starts_with("foobar_app from 127.0.0.1 ("),
            "{local:?}"
        );
        assert!(
            local[3].starts_with("rampart_monitor from 127.0.0.1 localhost ("),
            "{local:?}"
        );
    }

    /// (file, names, usages) of every certificate the run issues.
    #[test]
    fn certificates_per_host() {
        let rows = |p: &Plan| -> Vec<String> {
            p.certificates
                .iter()
                .map(|c| {
                    let usage = match (c.server, c.client) {
                        (true, true) => "server+client",
                        (true, false) => "server",
                        (false, true) => "client",
                        (false, false) => "none",
                    };
                    let plane = if c.issuer == Issuer::Plane {
                        " plane"
                    } else {
                        ""
                    };
                    format!(
                        "{} {} {usage}{plane}",
                        c.files().0.display(),
                        c.names.join(",")
                    )
                })
                .collect()
        };
        assert_eq!(
            rows(&isolated()),
            [
                "/st/certs/site.pem www.foobar.com,foobar.com server",
                "/st/certs/lb1.pem lb1 server+client",
                "/st/certs/web1.pem web1 server+client",
                "/st/certs/web2.pem web2 server+client",
                "/st/certs/db1.pem db1,198.18.2.21 server",
                "/st/certs/db2.pem db2,198.18.2.22 server",
                "/st/certs/backup.pem backup client",
                "/st/certs/monitor.pem monitor,localhost,127.0.0.1,198.18.9.2 server",
                "/st/hosts/monitor/etcd-server.pem monitor,198.18.9.2 server+client",
                "/st/hosts/dns/etcd-server.pem dns,198.18.9.53 server+client",
                "/st/hosts/lb1/etcd-server.pem lb1,198.18.9.10 server+client",
                "/st/hosts/web1/etcd-client.pem web1 client",
                "/st/hosts/web2/etcd-client.pem web2 client",
                "/st/hosts/db1/etcd-client.pem db1 client",
                "/st/hosts/db2/etcd-client.pem db2 client",
                "/st/hosts/client/agent.pem client client",
                "/st/hosts/dns/agent.pem dns client",
                "/st/hosts/lb1/agent.pem lb1 client",
                "/st/hosts/web1/agent.pem web1 client",
                "/st/hosts/web2/agent.pem web2 client",
                "/st/hosts/db1/agent.pem db1 client",
                "/st/hosts/db2/agent.pem db2 client",
                "/st/hosts/monitor/agent.pem monitor client",
                "/st/hosts/backup/agent.pem backup client",
                "/st/hosts/monitor/plane-gate.pem gate.plane.rampart client plane",
                "/st/hosts/monitor/plane-dashboard.pem dashboard.plane.rampart client plane",
                "/st/hosts/monitor/plane-prometheus.pem prometheus.plane.rampart client plane",
            ]
        );
        // Local mode: a member's peers see its connections come from 127.0.0.1.
        let local = rows(&local());
        assert!(
            local.contains(
                &"/st/hosts/dns/etcd-server.pem dns,127.0.3.53,127.0.0.1 server+client".to_owned()
            ),
            "{local:#?}"
        );
    }

    #[test]
    fn firewalls_only_in_isolated_mode() {
        assert!(local().hosts.iter().all(|h| h.firewall.is_none()));
        let p = isolated();
        assert!(p.hosts.iter().all(|h| h.firewall.is_some()));
        assert_eq!(
            p.host("web1").unwrap().namespace.as_deref(),
            Some("rp-web1")
        );
        assert!(local().hosts.iter().all(|h| h.namespace.is_none()));
    }

    #[test]
    fn socket_paths() {
        let check = |dir: &str, uid: u32, expected: &str| {
            assert_eq!(
                db_socket(Path::new(dir), uid),
                PathBuf::from(expected),
                "{dir}"
            );
        };
        check("/state/hosts/db1", 1000, "/state/hosts/db1/mysqld.sock");
        // 107 bytes exactly is still fine: 95 + "/mysqld.sock" (12).
        let dir95 = format!("/{}", "d".repeat(94));
        check(&dir95, 0, &format!("{dir95}/mysqld.sock"));
        let dir96 = format!("/{}", "d".repeat(95));
        let long = db_socket(Path::new(&dir96), 1000);
        let long = long.to_str().unwrap();
        assert!(long.starts_with("/tmp/rampart-1000/"), "{long}");
        assert!(long.ends_with(".sock"));
        let hash = &long["/tmp/rampart-1000/".len()..long.len() - ".sock".len()];
        assert_eq!(hash.len(), 16);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
        // Stable, and different for different directories.
        assert_eq!(db_socket(Path::new(&dir96), 1000).to_str().unwrap(), long);
        let other = format!("/{}", "e".repeat(95));
        assert_ne!(db_socket(Path::new(&other), 1000).to_str().unwrap(), long);
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}

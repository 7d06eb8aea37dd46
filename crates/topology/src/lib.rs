//! The topology model: the hosts of the site, their roles, addresses and service ports,
//! in both ways of running it (DESIGN.md section 2). Pure data and logic: this crate does
//! no I/O and never touches the host. The services never import it: the config toolkit
//! they share lives in `rampart-telemetry`.

pub mod accounts;
pub mod ansible;
pub mod deploy;
pub mod file;
pub mod monitor;
pub mod nft;
pub mod plan;
pub mod policy;
pub mod render;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// What a host does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Dns,
    Lb,
    Web,
    DbPrimary,
    DbReplica,
    Monitor,
    /// The backup host: full and incremental backups from a replica, the binlog archive
    /// following the primary, verify and restore (issue 16).
    Backup,
}

impl Role {
    /// The role's name as `status` shows it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Dns => "dns",
            Role::Lb => "lb",
            Role::Web => "web",
            Role::DbPrimary => "db-primary",
            Role::DbReplica => "db-replica",
            Role::Monitor => "monitor",
            Role::Backup => "backup",
        }
    }
}

/// How the topology runs on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Each host is a set of processes bound to its own loopback address; no root needed.
    Local,
    /// Each host is a network namespace with its own firewall (issue 4).
    Isolated,
}

/// One host of the topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub role: Role,
    /// The host's address on each segment it joins, in isolated mode.
    pub segments: Vec<(Segment, Ipv4Addr)>,
    /// The host's own loopback address in local mode.
    pub local: Ipv4Addr,
    /// Its cgroup's limits in isolated mode (`[[host]] cpus`, `memory`).
    pub limits: Limits,
}

/// The CPU and memory limits of one host's cgroup (isolated mode); none by default, and
/// the cgroup then only accounts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// The CPU quota in thousandths of a core (`cpus = 0.5` is 500).
    pub millicpus: Option<u32>,
    /// The memory limit in bytes.
    pub memory: Option<u64>,
}

impl Limits {
    /// The CFS period every quota is written against, in microseconds (the kernel's
    /// default).
    pub const PERIOD_US: u64 = 100_000;

    /// The quota per [`Limits::PERIOD_US`] in microseconds, if there is one.
    pub fn quota_us(&self) -> Option<u64> {
        self.millicpus
            .map(|m| u64::from(m) * Self::PERIOD_US / 1000)
    }

    pub fn is_none(&self) -> bool {
        self.millicpus.is_none() && self.memory.is_none()
    }
}

/// A network segment of the isolated topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    Public,
    App,
    Data,
    Mgmt,
}

/// Service ports. Local mode moves the load balancer's public ports above 1024 so that it
/// runs without root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    pub lb_https: u16,
    pub lb_http: u16,
    pub lb_admin: u16,
    pub web: u16,
    pub web_admin: u16,
    pub db: u16,
    /// The DNS server's port, UDP and TCP (53 needs root; local mode uses 5353).
    pub dns: u16,
    /// Each agent's own `/metrics` (node_exporter's port), open only to its host.
    pub agent_metrics: u16,
    /// The agents' remote-write ingest on the monitor host's management address: the
    /// ingest gate, in front of Prometheus.
    pub prometheus: u16,
    /// Prometheus itself, where only the monitor host reaches it (loopback in isolated
    /// mode): the gate writes and the dashboard queries here.
    pub prometheus_internal: u16,
    /// The ingest gate's own `/metrics` (plain HTTP) on the monitor host's management
    /// address, open only to its host.
    pub gate_metrics: u16,
    /// Alertmanager on the monitor host (only Prometheus talks to it).
    pub alertmanager: u16,
    /// The log store (`rampart logs`), where only the monitor host reaches it (loopback
    /// in isolated mode): the gate pushes and the dashboard queries here.
    pub logs: u16,
    /// The log store's own `/metrics` (plain HTTP) on the monitor host's management
    /// address, open only to its host (its agent scrapes it).
    pub logs_metrics: u16,
    /// The dashboard on the monitor host.
    pub dashboard: u16,
    /// The dashboard's own `/metrics` (plain HTTP) on the monitor host's management
    /// address, open only to its host (its agent scrapes it).
    pub dashboard_metrics: u16,
    /// etcd's client port (gRPC over mutual TLS) on each member's management address:
    /// the keepers and web servers connect here.
    pub etcd_client: u16,
    /// etcd's peer port (raft over mutual TLS) between the members.
    pub etcd_peer: u16,
    /// etcd's plain-HTTP `/health` and `/metrics` (`--listen-metrics-urls`), open only to
    /// the monitor host and the member itself.
    pub etcd_metrics: u16,
    /// Each database keeper's status, metrics and switchover listener, open only to its
    /// host (the agent scrapes it, `rampart status` and `switchover` run there).
    pub keeper: u16,
    /// The backup service's status, metrics and operator API on the backup host's
    /// management address, open only to its host.
    pub backup_status: u16,
    /// Each database keeper's backup source (mutual TLS, the backup host's certificate
    /// only) on the database host's data address: `mariadb-backup` streams.
    pub backup_source: u16,
}

impl Ports {
    /// The ports that are the same in both modes (all above 1024): monitoring and etcd.
    const COMMON: Ports = Ports {
        lb_https: 0,
        lb_http: 0,
        lb_admin: 0,
        web: 0,
        web_admin: 0,
        db: 0,
        dns: 0,
        agent_metrics: 9100,
        prometheus: 9090,
        prometheus_internal: 9091,
        gate_metrics: 9096,
        alertmanager: 9093,
        logs: 3100,
        logs_metrics: 3101,
        dashboard: 3000,
        dashboard_metrics: 3001,
        etcd_client: 2379,
        etcd_peer: 2380,
        etcd_metrics: 2381,
        keeper: 9104,
        backup_status: 9107,
        backup_source: 9108,
    };
}

/// The hosts that run an etcd member by default (DESIGN.md section 2): on management
/// addresses, never on a database host. Member names are these host names.
pub const DEFAULT_ETCD_HOSTS: [&str; 3] = ["monitor", "dns", "lb1"];

/// `[certificates] lifetime` by default, in seconds: 30 days.
pub const DEFAULT_CERT_LIFETIME: u64 = 30 * 86_400;

/// The whole site: its name and its hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    pub mode: Mode,
    /// The site's names; the first is the canonical one.
    pub site_names: Vec<String>,
    pub hosts: Vec<Host>,
    pub ports: Ports,
    /// The hosts that run an etcd member, by name, in `--initial-cluster` order (see
    /// [`Topology::etcd_members`]). The one place the list lives, so a topology file can
    /// set it.
    pub etcd: Vec<String>,
    /// The floating public address a pair of load balancers shares (keepalived);
    /// `None` with one load balancer, whose own public address is the site's.
    pub vip: Option<Ipv4Addr>,
    /// Each segment's prefix length (24 in the built-in topology).
    pub prefixes: Vec<(Segment, u8)>,
    /// Networks (`addr/prefix`) the operator's Ansible connects from over ssh, on real
    /// hosts (`[deploy] ssh_from`): every host's firewall accepts them on `ssh_port` at
    /// the address the inventory names. Empty in the built-in topology.
    pub ssh_from: Vec<String>,
    pub ssh_port: u16,
    /// Where the backup host keeps its store (`[backup] store`, an absolute path);
    /// `None`: `store/` in the backup host's directory.
    pub backup_store: Option<std::path::PathBuf>,
    /// How long the run's CA makes each leaf certificate valid (`[certificates]
    /// lifetime`).
    pub cert_lifetime: std::time::Duration,
    /// `[acme]`: the site certificate from an ACME CA, ordered and renewed by each load
    /// balancer; `None`: the run's CA issues it, like every other.
    pub acme: Option<Acme>,
    /// `[monitor] rules`: the operator's Prometheus rules files (the node_exporter and
    /// mysqld_exporter mixins, say), loaded beside rampart's own `rules.yml`. The
    /// contents come from the caller, which reads the files (`rampart_infra::rules`);
    /// [`file::Site::topology`] leaves this empty.
    pub monitor_rules: Vec<RuleFile>,
}

/// One extra Prometheus rules file of the monitor host: where it came from and what it
/// holds. [`RuleFile::name`] is its file name beside `rules.yml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleFile {
    /// Its file name on the monitor host ([`monitor::extra_rules_name`]).
    pub name: String,
    /// The path the topology file lists, for messages.
    pub source: String,
    pub contents: String,
}

/// `[acme]` of a topology file: each load balancer orders the site's certificate (its
/// names) from this ACME CA and answers the HTTP-01 challenges; a pair relays to each
/// other what the one holding the floating address does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acme {
    /// The directory URL (`https://...`).
    pub directory: String,
    /// The directory's host (a name or an IPv4 address) and port, for the firewall.
    pub host: String,
    pub port: u16,
    /// `mailto:` contacts of the account.
    pub contact: Vec<String>,
    /// A CA certificate (PEM) the directory's HTTPS is verified against instead of the
    /// system's roots (a test CA such as pebble's); a path on the load balancers.
    pub ca: Option<std::path::PathBuf>,
    /// How often a load balancer checks its certificate, and the backoff after a failed
    /// order (seconds); `None`: the load balancer's defaults.
    pub check_every: Option<u64>,
    pub retry_min: Option<u64>,
    pub retry_max: Option<u64>,
}

impl Acme {
    /// The directory's address when it is an IPv4 literal.
    pub fn ip(&self) -> Option<Ipv4Addr> {
        self.host.parse().ok()
    }
}

impl Topology {
    /// The seeds' topology (DESIGN.md section 2). In local mode, host addresses are
    /// `127.<net>.<segment>.<host>`; `net` is 0 by default and lets tests run several
    /// topologies side by side.
    pub fn default_for(mode: Mode, net: u8) -> Self {
        use Role::*;
        use Segment::*;
        let l = |c: u8, d: u8| Ipv4Addr::new(127, net, c, d);
        let p = |d: u8| Ipv4Addr::new(203, 0, 113, d);
        let s = |c: u8, d: u8| Ipv4Addr::new(198, 18, c, d);
        let host = |name: &str, role, segments: Vec<(Segment, Ipv4Addr)>, local| Host {
            name: name.to_owned(),
            role,
            segments,
            local,
            limits: Limits::default(),
        };
        let hosts = vec![
            host("client", Client, vec![(Public, p(100))], l(3, 100)),
            host(
                "dns",
                Dns,
                vec![(Public, p(53)), (Mgmt, s(9, 53))],
                l(3, 53),
            ),
            host(
                "lb1",
                Lb,
                vec![(Public, p(10)), (App, s(1, 10)), (Mgmt, s(9, 10))],
                l(1, 10),
            ),
            host(
                "web1",
                Web,
                vec![(App, s(1, 11)), (Data, s(2, 11)), (Mgmt, s(9, 11))],
                l(1, 11),
            ),
            host(
                "web2",
                Web,
                vec![(App, s(1, 12)), (Data, s(2, 12)), (Mgmt, s(9, 12))],
                l(1, 12),
            ),
            host(
                "db1",
                DbPrimary,
                vec![(Data, s(2, 21)), (Mgmt, s(9, 21))],
                l(2, 21),
            ),
            host(
                "db2",
                DbReplica,
                vec![(Data, s(2, 22)), (Mgmt, s(9, 22))],
                l(2, 22),
            ),
            host("monitor", Monitor, vec![(Mgmt, s(9, 2))], l(9, 2)),
            host(
                "backup",
                Backup,
                vec![(Data, s(2, 3)), (Mgmt, s(9, 3))],
                l(2, 3),
            ),
        ];
        let ports = match mode {
            Mode::Local => Ports {
                lb_https: 8443,
                lb_http: 8080,
                lb_admin: 9180,
                web: 8443,
                web_admin: 9181,
                db: 3306,
                dns: 5353,
                ..Ports::COMMON
            },
            Mode::Isolated => Ports {
                lb_https: 443,
                lb_http: 80,
                lb_admin: 9180,
                web: 8443,
                web_admin: 9181,
                db: 3306,
                dns: 53,
                ..Ports::COMMON
            },
        };
        Topology {
            mode,
            site_names: vec!["www.foobar.com".into(), "foobar.com".into()],
            hosts,
            ports,
            etcd: DEFAULT_ETCD_HOSTS.map(str::to_owned).to_vec(),
            vip: None,
            prefixes: [Public, App, Data, Mgmt].map(|s| (s, 24)).to_vec(),
            ssh_from: Vec::new(),
            ssh_port: 22,
            backup_store: None,
            cert_lifetime: std::time::Duration::from_secs(DEFAULT_CERT_LIFETIME),
            acme: None,
            monitor_rules: Vec::new(),
        }
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn with_role(&self, role: Role) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(move |h| h.role == role)
    }

    /// The hosts that run an etcd member, in [`Topology::etcd`]'s order: only hosts with
    /// a management address that are not databases (the consensus store must not share a
    /// host with what it arbitrates), whatever the list says.
    pub fn etcd_members(&self) -> Vec<&Host> {
        self.etcd
            .iter()
            .filter_map(|name| self.host(name))
            .filter(|h| !matches!(h.role, Role::DbPrimary | Role::DbReplica))
            .filter(|h| h.segments.iter().any(|(s, _)| *s == Segment::Mgmt))
            .collect()
    }

    /// The hosts that talk to etcd as clients: each database host (its keeper) and each
    /// web server (following the leader key). Each gets an etcd client certificate.
    pub fn etcd_clients(&self) -> impl Iterator<Item = &Host> {
        self.hosts
            .iter()
            .filter(|h| matches!(h.role, Role::DbPrimary | Role::DbReplica | Role::Web))
    }

    /// The etcd client endpoints, `https://<member's management address>:2379`, in
    /// member order: what a keeper or web server passes to its etcd client.
    pub fn etcd_endpoints(&self) -> Vec<String> {
        self.etcd_members()
            .into_iter()
            .map(|h| {
                format!(
                    "https://{}",
                    self.sock(h, Segment::Mgmt, self.ports.etcd_client)
                )
            })
            .collect()
    }

    /// The address a host is reached at on `segment` (isolated) or its loopback (local).
    pub fn addr(&self, host: &Host, segment: Segment) -> IpAddr {
        match self.mode {
            Mode::Local => host.local.into(),
            Mode::Isolated => host
                .segments
                .iter()
                .find(|(s, _)| *s == segment)
                .or(host.segments.first())
                .map_or(host.local, |(_, a)| *a)
                .into(),
        }
    }

    /// `segment`'s prefix length.
    pub fn prefix(&self, segment: Segment) -> u8 {
        self.prefixes
            .iter()
            .find(|(s, _)| *s == segment)
            .map_or(24, |(_, p)| *p)
    }

    /// The address the site's names resolve to: a load-balancer pair's floating address,
    /// else the (first) load balancer's public address.
    pub fn site_addr(&self) -> Option<IpAddr> {
        match (self.mode, self.vip) {
            (Mode::Isolated, Some(vip)) => Some(vip.into()),
            _ => self
                .with_role(Role::Lb)
                .next()
                .map(|lb| self.addr(lb, Segment::Public)),
        }
    }

    /// The other load balancer of a pair (`None` without a floating address).
    pub fn lb_peer(&self, host: &Host) -> Option<&Host> {
        self.vip?;
        if host.role != Role::Lb {
            return None;
        }
        self.with_role(Role::Lb).find(|h| h.name != host.name)
    }

    /// The source address a host's outgoing connections to `segment` carry, as a server
    /// on that segment sees it. In local mode every client socket leaves from
    /// 127.0.0.1 (the kernel's source for the whole 127/8 route), so grants by address
    /// can only name that.
    pub fn source_addr(&self, host: &Host, segment: Segment) -> IpAddr {
        match self.mode {
            Mode::Local => Ipv4Addr::LOCALHOST.into(),
            Mode::Isolated => self.addr(host, segment),
        }
    }

    pub fn sock(&self, host: &Host, segment: Segment, port: u16) -> SocketAddr {
        SocketAddr::new(self.addr(host, segment), port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_local_topology_has_the_seeds_hosts_on_distinct_loopback_addresses() {
        let t = Topology::default_for(Mode::Local, 7);
        let names: Vec<_> = t.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            ["client", "dns", "lb1", "web1", "web2", "db1", "db2", "monitor", "backup"]
        );
        let mut addrs: Vec<_> = t.hosts.iter().map(|h| h.local).collect();
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), t.hosts.len());
        assert!(addrs
            .iter()
            .all(|a| a.octets()[0] == 127 && a.octets()[1] == 7));
        let db1 = t.host("db1").map(|h| t.sock(h, Segment::Data, t.ports.db));
        assert_eq!(db1, Some("127.7.2.21:3306".parse().unwrap()));
    }

    #[test]
    fn isolated_addresses_follow_the_design() {
        let t = Topology::default_for(Mode::Isolated, 0);
        let lb = t.host("lb1").unwrap();
        assert_eq!(t.addr(lb, Segment::Public).to_string(), "203.0.113.10");
        assert_eq!(t.addr(lb, Segment::App).to_string(), "198.18.1.10");
        let mon = t.host("monitor").unwrap();
        assert_eq!(t.addr(mon, Segment::Mgmt).to_string(), "198.18.9.2");
        assert_eq!(t.with_role(Role::Web).count(), 2);
    }

    /// (mode, endpoints): the members' management addresses, loopback in local mode.
    #[test]
    fn etcd_members_and_endpoints() {
        for (mode, expected) in [
            (
                Mode::Isolated,
                [
                    "https://198.18.9.2:2379",
                    "https://198.18.9.53:2379",
                    "https://198.18.9.10:2379",
                ],
            ),
            (
                Mode::Local,
                [
                    "https://127.5.9.2:2379",
                    "https://127.5.3.53:2379",
                    "https://127.5.1.10:2379",
                ],
            ),
        ] {
            let t = Topology::default_for(mode, 5);
            assert_eq!(t.etcd_endpoints(), expected, "{mode:?}");
        }
        let mut t = Topology::default_for(Mode::Isolated, 0);
        let names = |t: &Topology| -> Vec<String> {
            t.etcd_members().iter().map(|h| h.name.clone()).collect()
        };
        assert_eq!(names(&t), ["monitor", "dns", "lb1"]);
        // Never a database host, never a host without a management address, never an
        // unknown name.
        t.etcd = ["db1", "client", "web9", "web1"]
            .map(str::to_owned)
            .to_vec();
        assert_eq!(names(&t), ["web1"]);
        let clients: Vec<&str> = t.etcd_clients().map(|h| h.name.as_str()).collect();
        assert_eq!(clients, ["web1", "web2", "db1", "db2"]);
    }
}

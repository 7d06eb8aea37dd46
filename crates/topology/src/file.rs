//! The topology file: the site an operator edits (`rampart up --topology site.toml`,
//! `rampart check site.toml`, `rampart topology show`). It names the site, how many load
//! balancers, web servers and replicas there are, the segments' networks, the etcd
//! members, the operator's extra Prometheus rules files and, optionally, pinned
//! addresses; everything else (host names, addresses,
//! the floating address of a load-balancer pair) is computed. [`parse`] validates it
//! whole, collecting every problem with its line and key; [`Site::topology`] builds the
//! [`Topology`] for a mode. Pure: the caller reads the file.
//!
//! Host names follow the roles: `lb1`, `lb2`, `web1`…`webN`, `db1` (the first
//! primary) and `db2`… (its replicas), plus `client`, `dns`, `monitor` and `backup`. On every
//! segment a host's address ends in the same number (`lb1` is `.10` on each), taken
//! from its role's range: load balancers 10 and 9, web servers 11–19 then 30–99,
//! databases 21–29 then 101–250, the DNS server 53, the monitor 2, the backup host 3,
//! the client 100.

use std::fmt;
use std::net::Ipv4Addr;

use serde::Deserialize;
use toml::Spanned;

use crate::{Host, Limits, Mode, Role, Segment, Topology, DEFAULT_ETCD_HOSTS};

/// The most web servers, and replicas, a topology may have (what the address ranges
/// hold).
pub const MAX_WEB: usize = 78;
pub const MAX_REPLICAS: usize = 158;

/// Who owns the floating address, in errors.
const VIP_OWNER: &str = "the floating address (lb.vip)";

/// One problem in a topology file: where, which key, and what would be valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    pub file: String,
    /// 1-based; `None` for a key the file does not have (a default that fails).
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}: {}", self.file, self.key, self.message),
            None => write!(f, "{}: {}: {}", self.file, self.key, self.message),
        }
    }
}

/// Every problem found, in the order checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileErrors(pub Vec<FileError>);

impl fmt::Display for FileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FileErrors {}

/// An IPv4 network, `addr/prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Net {
    fn mask(self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    fn network(self) -> u32 {
        u32::from(self.addr) & self.mask()
    }

    /// Whether `a` is a usable host address of this network (not the network or
    /// broadcast address).
    pub fn holds(self, a: Ipv4Addr) -> bool {
        let a = u32::from(a);
        a & self.mask() == self.network()
            && a != self.network()
            && a != self.network() | !self.mask()
    }

    /// The `n`th address of the network, if it is a usable host address.
    pub fn nth(self, n: u32) -> Option<Ipv4Addr> {
        let a = Ipv4Addr::from(self.network().checked_add(n)?);
        self.holds(a).then_some(a)
    }

    fn overlaps(self, other: Net) -> bool {
        let mask = self.mask() & other.mask();
        self.network() & mask == other.network() & mask
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network()), self.prefix)
    }
}

impl std::str::FromStr for Net {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (a, p) = s.split_once('/').ok_or(())?;
        let addr: Ipv4Addr = a.parse().map_err(|_| ())?;
        let prefix: u8 = p.parse().map_err(|_| ())?;
        if !(8..=30).contains(&prefix) {
            return Err(());
        }
        let net = Net { addr, prefix };
        // The address must be the network's own (no host bits).
        (u32::from(addr) == net.network()).then_some(net).ok_or(())
    }
}

/// The validated contents of a topology file, independent of the mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    pub names: Vec<String>,
    /// Public, app, data, mgmt.
    pub segments: [(Segment, Net); 4],
    pub lb: usize,
    pub web: usize,
    pub replicas: usize,
    /// Whether the site has its backup host (`hosts.backup`, 1 by default, or 0).
    pub backup: bool,
    pub etcd: Vec<String>,
    /// The floating public address of a load-balancer pair (`None` with one).
    pub vip: Option<Ipv4Addr>,
    /// Pinned addresses: (host, segment, address).
    pub pinned: Vec<(String, Segment, Ipv4Addr)>,
    /// `[[host]] cpus` and `memory`: each limited host's cgroup limits, in file order.
    pub limits: Vec<(String, Limits)>,
    /// `[deploy] ssh_from`: where the operator's Ansible connects from (networks,
    /// canonical `addr/prefix`), and `ssh_port`.
    pub ssh_from: Vec<String>,
    pub ssh_port: u16,
    /// `[backup] store`: where the backup host keeps its store (absolute).
    pub backup_store: Option<String>,
    /// `[certificates] lifetime`: how long the run's CA makes each leaf valid, in
    /// seconds (renewed at two thirds of it).
    pub cert_lifetime: u64,
    /// `[acme]`: the site certificate from an ACME CA.
    pub acme: Option<crate::Acme>,
    /// `[monitor] rules`: the operator's Prometheus rules files, as listed (relative to
    /// the topology file's directory until [`Site::rules_relative_to`] makes them
    /// absolute). The caller reads them into [`Topology::monitor_rules`].
    pub monitor_rules: Vec<String>,
    /// The file and the line of `hosts.lb`, for errors that depend on the mode.
    file: String,
    lb_line: Option<usize>,
    /// The line of `monitor.rules`, for the caller's errors about its files.
    rules_line: Option<usize>,
}

impl Default for Site {
    /// The seeds' site: one load balancer, two web servers, a primary and one replica.
    fn default() -> Self {
        Site {
            names: vec!["www.foobar.com".into(), "foobar.com".into()],
            segments: [
                (Segment::Public, net("203.0.113.0", 24)),
                (Segment::App, net("198.18.1.0", 24)),
                (Segment::Data, net("198.18.2.0", 24)),
                (Segment::Mgmt, net("198.18.9.0", 24)),
            ],
            lb: 1,
            web: 2,
            replicas: 1,
            backup: true,
            etcd: DEFAULT_ETCD_HOSTS.map(str::to_owned).to_vec(),
            vip: None,
            pinned: Vec::new(),
            limits: Vec::new(),
            ssh_from: Vec::new(),
            ssh_port: 22,
            backup_store: None,
            cert_lifetime: crate::DEFAULT_CERT_LIFETIME,
            acme: None,
            monitor_rules: Vec::new(),
            file: "(built-in)".into(),
            lb_line: None,
            rules_line: None,
        }
    }
}

fn net(a: &str, prefix: u8) -> Net {
    Net {
        addr: a.parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
        prefix,
    }
}

/// An operator's network for `deploy.ssh_from`: `a.b.c.d` (a /32) or `a.b.c.d/p` with
/// no host bits, as canonical `addr/prefix`.
pub fn ssh_network(s: &str) -> Option<String> {
    let (a, p) = match s.trim().split_once('/') {
        Some((a, p)) => (a, p.parse::<u8>().ok()?),
        None => (s.trim(), 32),
    };
    let addr: Ipv4Addr = a.parse().ok()?;
    if p == 0 || p > 32 {
        return None;
    }
    let mask = u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0);
    (u32::from(addr) & !mask == 0).then(|| format!("{addr}/{p}"))
}

/// The segments a role's hosts join.
pub fn role_segments(role: Role) -> &'static [Segment] {
    use Segment::*;
    match role {
        Role::Client => &[Public],
        Role::Dns => &[Public, Mgmt],
        Role::Lb => &[Public, App, Mgmt],
        Role::Web => &[App, Data, Mgmt],
        Role::DbPrimary | Role::DbReplica => &[Data, Mgmt],
        Role::Monitor => &[Mgmt],
        Role::Backup => &[Data, Mgmt],
    }
}

fn segment_name(s: Segment) -> &'static str {
    match s {
        Segment::Public => "public",
        Segment::App => "app",
        Segment::Data => "data",
        Segment::Mgmt => "mgmt",
    }
}

/// The third octet of a role's loopback addresses in local mode (`127.<net>.<this>.x`).
fn local_block(role: Role) -> u8 {
    match role {
        Role::Lb | Role::Web => 1,
        Role::DbPrimary | Role::DbReplica | Role::Backup => 2,
        Role::Client | Role::Dns => 3,
        Role::Monitor => 9,
    }
}

impl Site {
    /// The hosts of this site with their host numbers, in start-independent order:
    /// client, dns, the load balancers, the web servers, the databases, the monitor,
    /// the backup host.
    pub fn hosts(&self) -> Vec<(String, Role, u8)> {
        let mut hosts = vec![
            ("client".to_owned(), Role::Client, 100),
            ("dns".into(), Role::Dns, 53),
        ];
        for (i, n) in [10u8, 9].iter().take(self.lb).enumerate() {
            hosts.push((format!("lb{}", i + 1), Role::Lb, *n));
        }
        let web_numbers = (11u8..=19).chain((30..=99).filter(|n| *n != 53));
        for (i, n) in web_numbers.take(self.web).enumerate() {
            hosts.push((format!("web{}", i + 1), Role::Web, n));
        }
        let db_numbers = (21u8..=29).chain(101..=250);
        for (i, n) in db_numbers.take(self.replicas + 1).enumerate() {
            let role = if i == 0 {
                Role::DbPrimary
            } else {
                Role::DbReplica
            };
            hosts.push((format!("db{}", i + 1), role, n));
        }
        hosts.push(("monitor".into(), Role::Monitor, 2));
        if self.backup {
            hosts.push(("backup".into(), Role::Backup, 3));
        }
        hosts
    }

    fn segment(&self, s: Segment) -> Net {
        self.segments
            .iter()
            .find(|(x, _)| *x == s)
            .map_or(net("0.0.0.0", 8), |(_, n)| *n)
    }

    /// Makes every relative path of `[monitor] rules` relative to `dir`, the topology
    /// file's directory (pure: nothing is read). What `up` keeps and `topology show`
    /// prints then names the same files from anywhere.
    pub fn rules_relative_to(&mut self, dir: &std::path::Path) {
        for r in &mut self.monitor_rules {
            let p = std::path::Path::new(r.as_str());
            if p.is_relative() {
                *r = dir.join(p).display().to_string();
            }
        }
    }

    /// An error about one of `[monitor] rules`' files (unreadable, refused by
    /// `promtool`), named like the file's own: its file, the key's line, the key.
    pub fn rules_error(&self, message: impl Into<String>) -> FileError {
        FileError {
            file: self.file.clone(),
            line: self.rules_line,
            key: "monitor.rules".into(),
            message: message.into(),
        }
    }

    /// The site as a [`Topology`] in `mode`, with loopback block `127.<net>.x.y` in
    /// local mode.
    pub fn topology(&self, mode: Mode, net: u8) -> Result<Topology, FileErrors> {
        if mode == Mode::Local && self.lb > 1 {
            return Err(FileErrors(vec![FileError {
                file: self.file.clone(),
                line: self.lb_line,
                key: "hosts.lb".into(),
                message: "a pair of load balancers needs isolated mode (the floating \
                          address is VRRP between namespaces); use lb = 1 with --local"
                    .into(),
            }]));
        }
        let mut t = Topology::default_for(mode, net);
        t.site_names = self.names.clone();
        t.etcd = self.etcd.clone();
        t.vip = self.vip;
        t.prefixes = self.segments.iter().map(|(s, n)| (*s, n.prefix)).collect();
        t.ssh_from = self.ssh_from.clone();
        t.ssh_port = self.ssh_port;
        t.cert_lifetime = std::time::Duration::from_secs(self.cert_lifetime);
        t.acme = self.acme.clone();
        t.backup_store = self
            .backup_store
            .as_ref()
            .filter(|_| self.backup)
            .map(std::path::PathBuf::from);
        t.hosts = self
            .hosts()
            .into_iter()
            .map(|(name, role, n)| {
                let segments = role_segments(role)
                    .iter()
                    .map(|s| {
                        let pinned = self
                            .pinned
                            .iter()
                            .find(|(h, ps, _)| *h == name && ps == s)
                            .map(|(_, _, a)| *a);
                        let a = pinned
                            .or_else(|| self.segment(*s).nth(u32::from(n)))
                            .unwrap_or(Ipv4Addr::UNSPECIFIED);
                        (*s, a)
                    })
                    .collect();
                let limits = self
                    .limits
                    .iter()
                    .find(|(h, _)| *h == name)
                    .map(|(_, l)| *l)
                    .unwrap_or_default();
                Host {
                    local: Ipv4Addr::new(127, net, local_block(role), n),
                    limits,
                    name,
                    role,
                    segments,
                }
            })
            .collect();
        Ok(t)
    }

    /// This spec as a topology file, with the computed addresses as comments: what
    /// `rampart topology show` prints.
    pub fn to_file(&self) -> String {
        let q = |s: &str| format!("{s:?}");
        let list = |v: &[String]| v.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ");
        let mut out = String::new();
        out.push_str(
            "# A rampart topology. Edit it, check it with `rampart check FILE`, and bring the\n\
             # site to it with `rampart up --topology FILE` (again on a running site to scale it).\n\n\
             # The site's names; the first is the canonical one. DNS answers them with the\n\
             # load balancer's public address (the floating one with two load balancers).\n",
        );
        out.push_str(&format!("names = [{}]\n\n", list(&self.names)));
        out.push_str(
            "[hosts]\n# Load balancers: 1, or 2 (a keepalived pair on one floating address).\n",
        );
        out.push_str(&format!(
            "lb = {}\n# Web/application servers: 1 to {MAX_WEB}.\n",
            self.lb
        ));
        out.push_str(&format!(
            "web = {}\n# Database replicas beside the primary: 0 to {MAX_REPLICAS}.\nreplicas = {}\n\
             # The backup host (backups, the binlog archive, restore): 1, or 0 for none.\nbackup = {}\n\n",
            self.web,
            self.replicas,
            u8::from(self.backup)
        ));
        out.push_str("# Each segment's network (IPv4, /8 to /30); host addresses are computed in it.\n[segments]\n");
        for (s, n) in &self.segments {
            out.push_str(&format!("{} = \"{n}\"\n", segment_name(*s)));
        }
        out.push_str(&format!(
            "\n# etcd members: an odd number, 3 or more, of hosts with a management address,\n\
             # never a database host.\n[etcd]\nhosts = [{}]\n",
            list(&self.etcd)
        ));
        // The default floating address stays implicit, so the file still holds with
        // one load balancer (`rampart scale lb=1`).
        let default_vip = self.segment(Segment::Public).nth(80);
        match self.vip.filter(|v| Some(*v) != default_vip) {
            Some(v) => out.push_str(&format!(
                "\n# The pair's floating public address (default: host 80 of the public segment).\n[lb]\nvip = \"{v}\"\n"
            )),
            None => out.push_str(
                "\n# With lb = 2, the pair's floating public address (default: host 80 of the\n\
                 # public segment):\n# [lb]\n# vip = \"203.0.113.80\"\n",
            ),
        }
        if self.ssh_from.is_empty() {
            out.push_str(
                "\n# On real hosts (`rampart render`): the networks Ansible connects from over ssh.\n\
                 # Every host's firewall accepts them on ssh_port, and nothing else reaches ssh.\n\
                 # [deploy]\n# ssh_from = [\"192.0.2.10/32\"]\n# ssh_port = 22\n",
            );
        } else {
            out.push_str(&format!(
                "\n# On real hosts (`rampart render`): the networks Ansible connects from over ssh.\n\
                 [deploy]\nssh_from = [{}]\nssh_port = {}\n",
                list(&self.ssh_from),
                self.ssh_port
            ));
        }
        match &self.backup_store {
            Some(store) => out.push_str(&format!(
                "\n# Where the backup host keeps its store (default: store/ in its directory).\n\
                 [backup]\nstore = {}\n",
                q(store)
            )),
            None => out.push_str(
                "\n# Where the backup host keeps its store (default: store/ in its directory),\n\
                 # for example a disk of its own. It outlives `rampart down --purge`.\n\
                 # [backup]\n# store = \"/srv/rampart-backup\"\n",
            ),
        }
        if self.cert_lifetime == crate::DEFAULT_CERT_LIFETIME {
            out.push_str(
                "\n# How long the run's own certificates (site, hosts, mutual TLS) are valid:\n\
                 # renewed at two thirds, reloaded without a restart. Units: s, m, h, d.\n\
                 # [certificates]\n# lifetime = \"30d\"\n",
            );
        } else {
            out.push_str(&format!(
                "\n# How long the run's own certificates (site, hosts, mutual TLS) are valid:\n\
                 # renewed at two thirds, reloaded without a restart. Units: s, m, h, d.\n\
                 [certificates]\nlifetime = \"{}\"\n",
                lifetime_text(self.cert_lifetime)
            ));
        }
        match &self.acme {
            None => out.push_str(
                "\n# The site certificate from an ACME CA (Let's Encrypt) instead of the run's CA:\n\
                 # each load balancer orders and renews it, answering HTTP-01 on port 80.\n\
                 # [acme]\n# directory = \"https://acme-v02.api.letsencrypt.org/directory\"\n\
                 # contact = [\"mailto:ops@foobar.com\"]\n",
            ),
            Some(a) => {
                out.push_str(&format!(
                    "\n# The site certificate from this ACME CA: each load balancer orders and\n\
                     # renews it, answering HTTP-01 on port 80.\n[acme]\ndirectory = {}\n",
                    q(&a.directory)
                ));
                let contact: Vec<String> = a.contact.iter().map(|c| q(c)).collect();
                out.push_str(&format!("contact = [{}]\n", contact.join(", ")));
                if let Some(ca) = &a.ca {
                    out.push_str(&format!("ca = {}\n", q(&ca.display().to_string())));
                }
                for (k, v) in [
                    ("check_every", a.check_every),
                    ("retry_min", a.retry_min),
                    ("retry_max", a.retry_max),
                ] {
                    if let Some(v) = v {
                        out.push_str(&format!("{k} = \"{}\"\n", lifetime_text(v)));
                    }
                }
            }
        }
        if self.monitor_rules.is_empty() {
            out.push_str(
                "\n# Prometheus rules files loaded on the monitor beside rampart's own (paths\n\
                 # relative to this file, or absolute; each checked with `promtool check rules`).\n\
                 # The node_exporter and mysqld_exporter mixins, rendered to YAML, fit as they are:\n\
                 # the agents push host metrics as job=\"node\" and the database's as job=\"mysql\".\n\
                 # [monitor]\n# rules = [\"node-mixin/alerts.yaml\", \"node-mixin/rules.yaml\",\n\
                 #          \"mysqld-mixin/alerts/general.yaml\", \"mysqld-mixin/rules/rules.yaml\"]\n",
            );
        } else {
            out.push_str(&format!(
                "\n# Prometheus rules files loaded on the monitor beside rampart's own.\n\
                 [monitor]\nrules = [{}]\n",
                list(&self.monitor_rules)
            ));
        }
        for (h, s, a) in &self.pinned {
            out.push_str(&format!(
                "\n[[host]]\nname = {}\n{} = \"{a}\"\n",
                q(h),
                segment_name(*s)
            ));
        }
        for (h, l) in &self.limits {
            out.push_str(&format!("\n[[host]]\nname = {}\n", q(h)));
            if let Some(m) = l.millicpus {
                out.push_str(&format!("cpus = {}\n", cpus_text(m)));
            }
            if let Some(b) = l.memory {
                out.push_str(&format!("memory = \"{}\"\n", memory_text(b)));
            }
        }
        out.push_str(
            "\n# Limit a host's CPU and memory (isolated mode: its cgroup) with a [[host]]\n\
             # table, for example\n# [[host]]\n# name = \"db1\"\n# cpus = 0.5\n# memory = \"512M\"\n",
        );
        out.push_str(
            "\n# Addresses are computed; pin one with a [[host]] table, for example\n\
             # [[host]]\n# name = \"web1\"\n# app = \"198.18.1.11\"\n#\n# The hosts and their addresses:\n",
        );
        if let Ok(t) = self.topology(Mode::Isolated, 0) {
            for h in &t.hosts {
                let addrs: Vec<String> = h
                    .segments
                    .iter()
                    .map(|(s, a)| format!("{} {a}", segment_name(*s)))
                    .collect();
                out.push_str(&format!(
                    "#   {:<8} {:<10} {}\n",
                    h.name,
                    h.role.name(),
                    addrs.join(", ")
                ));
            }
        }
        out
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    names: Option<Spanned<Vec<String>>>,
    hosts: Option<RawHosts>,
    segments: Option<RawSegments>,
    etcd: Option<RawEtcd>,
    lb: Option<RawLb>,
    deploy: Option<RawDeploy>,
    backup: Option<RawBackup>,
    certificates: Option<RawCertificates>,
    acme: Option<Spanned<RawAcme>>,
    monitor: Option<RawMonitor>,
    #[serde(default)]
    host: Vec<RawHost>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMonitor {
    /// Any TOML value, so that a value of the wrong type gets this key's own error
    /// rather than serde's.
    rules: Option<Spanned<toml::Value>>,
}

/// The longest path `[monitor] rules` takes (Linux's `PATH_MAX`).
const MAX_RULES_PATH: usize = 4096;

/// "a string", "an integer": a TOML value's kind, for errors.
fn a_kind(v: &toml::Value) -> String {
    let kind = v.type_str();
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {kind}")
}

/// `[monitor] rules`, checked: a list of distinct paths of YAML files, every bad entry
/// named by its index.
fn monitor_rules(rules: &Spanned<toml::Value>, errs: &mut Errors<'_>) -> Vec<String> {
    const EXAMPLE: &str = "[\"node-mixin/alerts.yaml\", \"node-mixin/rules.yaml\"]";
    let toml::Value::Array(items) = rules.get_ref() else {
        errs.at(
            rules,
            "monitor.rules",
            format!(
                "{} is not a list of rules files; write the paths of Prometheus rules files \
                 as a list of strings, such as {EXAMPLE}",
                a_kind(rules.get_ref())
            ),
        );
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    let mut seen: Vec<(std::path::PathBuf, usize)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let key = format!("monitor.rules[{i}]");
        let toml::Value::String(p) = item else {
            errs.at(
                rules,
                &key,
                format!(
                    "{} is not a path; write each rules file as a string, such as \
                     \"node-mixin/alerts.yaml\"",
                    a_kind(item)
                ),
            );
            continue;
        };
        let path = std::path::Path::new(p.as_str());
        let named_file = matches!(
            path.components().next_back(),
            Some(std::path::Component::Normal(_))
        ) && !p.ends_with('/')
            && !p.ends_with("/.");
        let problem = if p.trim().is_empty() {
            Some("is empty; write the path of a rules file, such as \"node-mixin/alerts.yaml\"")
        } else if p.len() > MAX_RULES_PATH || p.chars().any(char::is_control) {
            Some("is not a path (control characters, or longer than 4096 bytes)")
        } else if !named_file {
            Some(
                "names no file; write the path of a rules file, such as \"node-mixin/alerts.yaml\"",
            )
        } else if !(p.ends_with(".yml") || p.ends_with(".yaml")) {
            Some(
                "is not a Prometheus rules file; expected YAML (.yml or .yaml); render a \
                 jsonnet mixin to YAML first (mixtool, or jsonnet -S)",
            )
        } else {
            None
        };
        if let Some(problem) = problem {
            errs.at(rules, &key, format!("{p:?} {problem}"));
            continue;
        }
        // The same file twice, however it is spelt (`./a.yaml`, `a//a.yaml`), would
        // load every rule twice: Prometheus refuses duplicate groups.
        let normal: std::path::PathBuf = path
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect();
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == normal) {
            errs.at(
                rules,
                &key,
                format!("{p:?} is listed twice (also monitor.rules[{first}]); list each rules file once"),
            );
            continue;
        }
        seen.push((normal, i));
        out.push(p.clone());
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAcme {
    directory: Option<Spanned<String>>,
    contact: Option<Spanned<Vec<String>>>,
    ca: Option<Spanned<String>>,
    check_every: Option<Spanned<String>>,
    retry_min: Option<Spanned<String>>,
    retry_max: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertificates {
    lifetime: Option<Spanned<String>>,
}

/// The shortest `[certificates] lifetime` (for tests of renewal), and the longest.
const CERT_LIFETIME_RANGE: std::ops::RangeInclusive<u64> = 60..=397 * 86_400;

/// `"30d"`, `"12h"`, `"90m"`, `"120s"` in seconds.
fn parse_lifetime(s: &str) -> Option<u64> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok()?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(unit)
}

/// The shortest text [`parse_lifetime`] reads back as `secs`.
fn lifetime_text(secs: u64) -> String {
    for (unit, n) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs % n == 0 {
            return format!("{}{unit}", secs / n);
        }
    }
    format!("{secs}s")
}

/// `https://host[:port]/...`: the host and the port (443 by default).
fn https_host(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok().filter(|p| *p > 0)?),
        None => (authority, 443),
    };
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    name_ok.then(|| (host.to_ascii_lowercase(), port))
}

/// `[acme]`, checked: every problem named with its line.
fn acme_section(raw: &Spanned<RawAcme>, errs: &mut Errors<'_>) -> Option<crate::Acme> {
    let a = raw.get_ref();
    let mut ok = true;
    let (directory, host, port) = match &a.directory {
        None => {
            errs.at(
                raw,
                "acme.directory",
                "missing; expected the CA's directory URL, such as \
                 \"https://acme-v02.api.letsencrypt.org/directory\"",
            );
            ok = false;
            (String::new(), String::new(), 0)
        }
        Some(d) => match https_host(d.get_ref()) {
            Some((h, p)) if d.get_ref().len() <= 500 => (d.get_ref().clone(), h, p),
            _ => {
                errs.at(
                    d,
                    "acme.directory",
                    format!(
                        "{:?} is not an ACME directory; expected an https:// URL such as \
                         \"https://acme-v02.api.letsencrypt.org/directory\"",
                        d.get_ref()
                    ),
                );
                ok = false;
                (String::new(), String::new(), 0)
            }
        },
    };
    let mut contact = Vec::new();
    if let Some(c) = &a.contact {
        for m in c.get_ref() {
            let addr = m.strip_prefix("mailto:").unwrap_or_default();
            match addr.split_once('@') {
                Some((user, domain))
                    if !user.is_empty()
                        && domain.contains('.')
                        && !m.contains(char::is_whitespace) =>
                {
                    contact.push(m.clone());
                }
                _ => {
                    errs.at(
                        c,
                        "acme.contact",
                        format!("{m:?} is not a contact; expected \"mailto:ops@example.com\""),
                    );
                    ok = false;
                }
            }
        }
    }
    let ca = a.ca.as_ref().and_then(|c| {
        let path = std::path::Path::new(c.get_ref());
        if path.is_absolute() && c.get_ref().len() <= 200 {
            Some(path.to_owned())
        } else {
            errs.at(
                c,
                "acme.ca",
                format!(
                    "{:?} is not a CA file; write the absolute path of a PEM certificate, \
                     such as \"/etc/rampart/acme-ca.pem\"",
                    c.get_ref()
                ),
            );
            ok = false;
            None
        }
    });
    let mut duration =
        |v: &Option<Spanned<String>>, key: &str, range: std::ops::RangeInclusive<u64>| {
            let v = v.as_ref()?;
            match parse_lifetime(v.get_ref()) {
                Some(secs) if range.contains(&secs) => Some(secs),
                _ => {
                    errs.at(
                        v,
                        key,
                        format!(
                            "{:?} is out of range; write a number with a unit (s, m, h or d) from \
                         \"{}\" to \"{}\"",
                            v.get_ref(),
                            lifetime_text(*range.start()),
                            lifetime_text(*range.end())
                        ),
                    );
                    ok = false;
                    None
                }
            }
        };
    let day = 86_400;
    let check_every = duration(&a.check_every, "acme.check_every", 1..=day);
    let retry_min = duration(&a.retry_min, "acme.retry_min", 1..=day);
    let retry_max = duration(
        &a.retry_max,
        "acme.retry_max",
        retry_min.unwrap_or(1)..=7 * day,
    );
    ok.then_some(crate::Acme {
        directory,
        host,
        port,
        contact,
        ca,
        check_every,
        retry_min,
        retry_max,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackup {
    store: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeploy {
    ssh_from: Option<Spanned<Vec<String>>>,
    ssh_port: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHosts {
    lb: Option<Spanned<i64>>,
    web: Option<Spanned<i64>>,
    replicas: Option<Spanned<i64>>,
    backup: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSegments {
    public: Option<Spanned<String>>,
    app: Option<Spanned<String>>,
    data: Option<Spanned<String>>,
    mgmt: Option<Spanned<String>>,
}

/// The most cores `[[host]] cpus` may give (the kernel's quota is per period, so any
/// number works; this only catches typos).
const MAX_MILLICPUS: u32 = 1_024_000;
/// The least `cpus` may give: the kernel's smallest quota, 1 ms per 100 ms period.
const MIN_MILLICPUS: u32 = 10;
/// The least `[[host]] memory` may give: less does not start a service of the site.
const MIN_MEMORY: u64 = 32 << 20;
/// The most `memory` may give (1024G).
const MAX_MEMORY: u64 = 1 << 40;

/// `cpus = 0.5`: thousandths of a core, if the value is a number in range.
fn parse_cpus(v: &toml::Value) -> Option<u32> {
    let cores = match v {
        toml::Value::Integer(i) => *i as f64,
        toml::Value::Float(f) => *f,
        _ => return None,
    };
    let m = (cores * 1000.0).round();
    (cores.is_finite() && (f64::from(MIN_MILLICPUS)..=f64::from(MAX_MILLICPUS)).contains(&m))
        .then_some(m as u32)
}

fn cpus_text(millicpus: u32) -> String {
    if millicpus % 1000 == 0 {
        (millicpus / 1000).to_string()
    } else {
        (f64::from(millicpus) / 1000.0).to_string()
    }
}

/// `memory = "512M"`: bytes, with an optional K, M or G suffix (powers of 1024).
fn parse_memory(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 15 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1 << shift)
}

fn memory_text(bytes: u64) -> String {
    for (shift, unit) in [(30, "G"), (20, "M"), (10, "K")] {
        if bytes % (1 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEtcd {
    hosts: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLb {
    vip: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: Spanned<String>,
    public: Option<Spanned<String>>,
    app: Option<Spanned<String>>,
    data: Option<Spanned<String>>,
    mgmt: Option<Spanned<String>>,
    /// Any TOML value, so that a string or a number gets this key's own error.
    cpus: Option<Spanned<toml::Value>>,
    memory: Option<Spanned<toml::Value>>,
}

struct Errors<'a> {
    file: &'a str,
    text: &'a str,
    list: Vec<FileError>,
}

impl Errors<'_> {
    fn line(&self, span: std::ops::Range<usize>) -> usize {
        self.text[..span.start.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    fn at<T>(&mut self, v: &Spanned<T>, key: &str, message: impl Into<String>) {
        let line = Some(self.line(v.span()));
        self.push(line, key, message);
    }

    fn push(&mut self, line: Option<usize>, key: &str, message: impl Into<String>) {
        self.list.push(FileError {
            file: self.file.to_owned(),
            line,
            key: key.to_owned(),
            message: message.into(),
        });
    }
}

/// `[[host]] cpus` and `memory` of host `name` into `limits` (one entry per host).
fn host_limits(h: &RawHost, name: &str, limits: &mut Vec<(String, Limits)>, errs: &mut Errors<'_>) {
    if h.cpus.is_none() && h.memory.is_none() {
        return;
    }
    let i = match limits.iter().position(|(n, _)| n == name) {
        Some(i) => i,
        None => {
            limits.push((name.to_owned(), Limits::default()));
            limits.len() - 1
        }
    };
    let l = &mut limits[i].1;
    if let Some(v) = &h.cpus {
        match parse_cpus(v.get_ref()) {
            _ if l.millicpus.is_some() => {
                errs.at(v, "host.cpus", format!("{name}'s cpus is already set; set it once"));
            }
            Some(m) => l.millicpus = Some(m),
            None => errs.at(
                v,
                "host.cpus",
                format!(
                    "{} is not a number of cores; write a number from 0.01 to 1024, such as 0.5 or 2",
                    v.get_ref()
                ),
            ),
        }
    }
    if let Some(v) = &h.memory {
        let bytes = match v.get_ref() {
            toml::Value::String(s) => parse_memory(s),
            _ => None,
        };
        match bytes {
            _ if l.memory.is_some() => {
                errs.at(v, "host.memory", format!("{name}'s memory is already set; set it once"));
            }
            Some(b) if (MIN_MEMORY..=MAX_MEMORY).contains(&b) => l.memory = Some(b),
            _ => errs.at(
                v,
                "host.memory",
                format!(
                    "{} is not a memory limit; write bytes with a K, M or G suffix from \"32M\" to \"1024G\", such as \"512M\"",
                    v.get_ref()
                ),
            ),
        }
    }
}

fn valid_name(name: &str) -> bool {
    name.len() <= 253
        && name.contains('.')
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Parses and validates the topology file `text` (read from `file`, which errors name).
pub fn parse(file: &str, text: &str) -> Result<Site, FileErrors> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        FileErrors(vec![FileError {
            file: file.to_owned(),
            line,
            key: "(syntax)".into(),
            message: e.message().replace('\n', " "),
        }])
    })?;
    let mut errs = Errors {
        file,
        text,
        list: Vec::new(),
    };
    let mut spec = Site {
        file: file.to_owned(),
        ..Site::default()
    };

    if let Some(names) = &raw.names {
        if names.get_ref().is_empty() {
            errs.at(
                names,
                "names",
                "needs at least one name, such as \"www.example.com\"",
            );
        }
        for n in names.get_ref() {
            if !valid_name(n) {
                errs.at(
                    names,
                    "names",
                    format!(
                        "{n:?} is not a DNS name (letters, digits and dashes, in dotted labels)"
                    ),
                );
            }
        }
        spec.names = names.get_ref().clone();
    }

    if let Some(h) = &raw.hosts {
        let mut count = |v: &Option<Spanned<i64>>, key: &str, min: i64, max: i64, what: &str| {
            let v = v.as_ref()?;
            let n = *v.get_ref();
            if n < min || n > max {
                errs.at(v, key, format!("{n} {what}; valid: {min} to {max}"));
                None
            } else {
                usize::try_from(n).ok()
            }
        };
        if let Some(n) = count(
            &h.lb,
            "hosts.lb",
            1,
            2,
            "load balancers (1, or 2 for a pair on a floating address)",
        ) {
            spec.lb = n;
        }
        if let Some(n) = count(&h.web, "hosts.web", 1, MAX_WEB as i64, "web servers") {
            spec.web = n;
        }
        if let Some(n) = count(
            &h.replicas,
            "hosts.replicas",
            0,
            MAX_REPLICAS as i64,
            "replicas",
        ) {
            spec.replicas = n;
        }
        if let Some(n) = count(
            &h.backup,
            "hosts.backup",
            0,
            1,
            "backup hosts (1, or 0 for none)",
        ) {
            spec.backup = n == 1;
        }
        spec.lb_line = h.lb.as_ref().map(|v| errs.line(v.span()));
    }

    let mut segment_lines: Vec<(Segment, usize)> = Vec::new();
    if let Some(s) = &raw.segments {
        for (seg, v) in [
            (Segment::Public, &s.public),
            (Segment::App, &s.app),
            (Segment::Data, &s.data),
            (Segment::Mgmt, &s.mgmt),
        ] {
            let Some(v) = v else { continue };
            segment_lines.push((seg, errs.line(v.span())));
            let key = format!("segments.{}", segment_name(seg));
            match v.get_ref().parse::<Net>() {
                Ok(n) => {
                    if let Some(slot) = spec.segments.iter_mut().find(|(x, _)| *x == seg) {
                        slot.1 = n;
                    }
                }
                Err(()) => errs.at(
                    v,
                    &key,
                    format!(
                        "{:?} is not an IPv4 network: write it as address/prefix with no host \
                         bits, prefix 8 to 30, such as \"198.18.1.0/24\"",
                        v.get_ref()
                    ),
                ),
            }
        }
        for (i, (a, na)) in spec.segments.iter().enumerate() {
            for (b, nb) in &spec.segments[i + 1..] {
                if na.overlaps(*nb) {
                    let key = format!("segments.{}", segment_name(*b));
                    let v = match b {
                        Segment::Public => &s.public,
                        Segment::App => &s.app,
                        Segment::Data => &s.data,
                        Segment::Mgmt => &s.mgmt,
                    };
                    let msg = format!(
                        "{nb} overlaps segments.{} ({na}); each segment needs a network of its own",
                        segment_name(*a)
                    );
                    match v {
                        Some(v) => errs.at(v, &key, msg),
                        None => errs.push(None, &key, msg),
                    }
                }
            }
        }
    }

    if let Some(e) = &raw.etcd {
        if let Some(hosts) = &e.hosts {
            spec.etcd = hosts.get_ref().clone();
        }
    }
    let etcd_at = raw.etcd.as_ref().and_then(|e| e.hosts.as_ref());
    let etcd_line = etcd_at.map(|v| errs.line(v.span()));
    let hosts = spec.hosts();
    let n = spec.etcd.len();
    if n < 3 || n % 2 == 0 {
        errs.push(
            etcd_line,
            "etcd.hosts",
            format!(
                "{n} members; etcd needs an odd number, 3 or more (a quorum survives the loss \
                 of (n-1)/2), such as [\"monitor\", \"dns\", \"lb1\"]"
            ),
        );
    }
    let mut seen = Vec::new();
    for name in &spec.etcd {
        if seen.contains(name) {
            errs.push(etcd_line, "etcd.hosts", format!("{name} is listed twice"));
        }
        seen.push(name.clone());
        match hosts.iter().find(|(h, _, _)| h == name) {
            None => errs.push(
                etcd_line,
                "etcd.hosts",
                format!(
                    "no host {name}; the site's hosts are {}",
                    hosts.iter().map(|h| h.0.as_str()).collect::<Vec<_>>().join(", ")
                ),
            ),
            Some((_, Role::DbPrimary | Role::DbReplica, _)) => errs.push(
                etcd_line,
                "etcd.hosts",
                format!("{name} is a database host; etcd must not share a host with what it arbitrates"),
            ),
            Some((_, Role::Client, _)) => errs.push(
                etcd_line,
                "etcd.hosts",
                format!("{name} has no management address; choose monitor, dns, a load balancer or a web server"),
            ),
            Some(_) => {}
        }
    }

    let public = spec.segment(Segment::Public);
    let vip_at = raw.lb.as_ref().and_then(|l| l.vip.as_ref());
    if let Some(v) = vip_at {
        match v.get_ref().parse::<Ipv4Addr>() {
            Ok(a) if !public.holds(a) => {
                errs.at(
                    v,
                    "lb.vip",
                    format!("{a} is outside the public segment {public}"),
                );
            }
            Ok(a) => spec.vip = Some(a),
            Err(_) => errs.at(
                v,
                "lb.vip",
                format!("{:?} is not an IPv4 address", v.get_ref()),
            ),
        }
        if spec.lb < 2 {
            errs.at(
                v,
                "lb.vip",
                "a floating address needs two load balancers (hosts.lb = 2)",
            );
        }
    } else if spec.lb == 2 {
        spec.vip = public.nth(80);
    }

    if let Some(d) = &raw.deploy {
        if let Some(list) = &d.ssh_from {
            for (i, entry) in list.get_ref().iter().enumerate() {
                match ssh_network(entry) {
                    Some(n) => spec.ssh_from.push(n),
                    None => errs.at(
                        list,
                        &format!("deploy.ssh_from[{i}]"),
                        format!(
                            "{entry:?} is not an IPv4 address or network; write \"192.0.2.10\" or \
                             \"192.0.2.0/24\" (no host bits)"
                        ),
                    ),
                }
            }
        }
        if let Some(p) = &d.ssh_port {
            match u16::try_from(*p.get_ref()) {
                Ok(port) if port > 0 => spec.ssh_port = port,
                _ => errs.at(
                    p,
                    "deploy.ssh_port",
                    format!("{} is not a port; expected 1 to 65535", p.get_ref()),
                ),
            }
        }
    }

    if let Some(store) = raw.backup.as_ref().and_then(|b| b.store.as_ref()) {
        let p = store.get_ref();
        let path = std::path::Path::new(p);
        let plain = path.components().all(|c| {
            matches!(
                c,
                std::path::Component::RootDir | std::path::Component::Normal(_)
            )
        });
        if !path.is_absolute() || !plain || path.components().count() < 2 || p.len() > 200 {
            errs.at(
                store,
                "backup.store",
                format!(
                    "{p:?} is not a directory for the store; write an absolute path without \
                     `.` or `..`, such as \"/srv/rampart-backup\""
                ),
            );
        } else if !spec.backup {
            errs.at(
                store,
                "backup.store",
                "the site has no backup host (hosts.backup = 0)".to_owned(),
            );
        } else {
            spec.backup_store = Some(p.trim_end_matches('/').to_owned());
        }
    }

    if let Some(l) = raw.certificates.as_ref().and_then(|c| c.lifetime.as_ref()) {
        match parse_lifetime(l.get_ref()) {
            Some(secs) if CERT_LIFETIME_RANGE.contains(&secs) => spec.cert_lifetime = secs,
            _ => errs.at(
                l,
                "certificates.lifetime",
                format!(
                    "{:?} is not a certificate lifetime; write a number with a unit (s, m, h \
                     or d) from \"60s\" to \"397d\", such as \"30d\"",
                    l.get_ref()
                ),
            ),
        }
    }

    if let Some(acme) = &raw.acme {
        spec.acme = acme_section(acme, &mut errs);
    }

    if let Some(rules) = raw.monitor.as_ref().and_then(|m| m.rules.as_ref()) {
        spec.rules_line = Some(errs.line(rules.span()));
        spec.monitor_rules = monitor_rules(rules, &mut errs);
    }

    let mut pinned_lines = Vec::new();
    for h in &raw.host {
        let name = h.name.get_ref();
        let Some((_, role, _)) = hosts.iter().find(|(n, _, _)| n == name) else {
            errs.at(
                &h.name,
                "host.name",
                format!(
                    "no host {name} in this site; its hosts are {}",
                    hosts
                        .iter()
                        .map(|h| h.0.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            continue;
        };
        host_limits(h, name, &mut spec.limits, &mut errs);
        for (seg, v) in [
            (Segment::Public, &h.public),
            (Segment::App, &h.app),
            (Segment::Data, &h.data),
            (Segment::Mgmt, &h.mgmt),
        ] {
            let Some(v) = v else { continue };
            let key = format!("host.{}", segment_name(seg));
            if !role_segments(*role).contains(&seg) {
                let on: Vec<&str> = role_segments(*role)
                    .iter()
                    .map(|s| segment_name(*s))
                    .collect();
                errs.at(
                    v,
                    &key,
                    format!(
                        "{name} is not on the {} segment; a {} host is on {}",
                        segment_name(seg),
                        role.name(),
                        on.join(", ")
                    ),
                );
                continue;
            }
            let n = spec.segment(seg);
            match v.get_ref().parse::<Ipv4Addr>() {
                Ok(a) if n.holds(a) => {
                    spec.pinned.push((name.clone(), seg, a));
                    pinned_lines.push(errs.line(v.span()));
                }
                Ok(a) => errs.at(
                    v,
                    &key,
                    format!("{a} is outside the {} segment {n}", segment_name(seg)),
                ),
                Err(_) => errs.at(v, &key, format!("{:?} is not an IPv4 address", v.get_ref())),
            }
        }
    }

    // Every computed or pinned address must exist and be unique on its segment, the
    // floating address too.
    if errs.list.is_empty() {
        if let Ok(t) = spec.topology(Mode::Isolated, 0) {
            let mut taken: Vec<(Segment, Ipv4Addr, String)> = Vec::new();
            if let Some(v) = spec.vip {
                taken.push((Segment::Public, v, VIP_OWNER.into()));
            }
            for h in &t.hosts {
                for (s, a) in &h.segments {
                    if a.is_unspecified() {
                        let line = segment_lines.iter().find(|(x, _)| x == s).map(|(_, l)| *l);
                        errs.push(
                            line,
                            &format!("segments.{}", segment_name(*s)),
                            format!("{} has no room for {} (host number out of range); use a larger network", spec.segment(*s), h.name),
                        );
                        continue;
                    }
                    if let Some((_, _, other)) = taken.iter().find(|(ts, ta, _)| ts == s && ta == a)
                    {
                        // The line of whichever of the two is pinned.
                        let line = spec
                            .pinned
                            .iter()
                            .position(|(ph, ps, _)| (ph == &h.name || ph == other) && ps == s)
                            .map(|i| pinned_lines[i]);
                        let message = format!(
                            "{} {a} of {} is already {other}'s; every address must be unique",
                            segment_name(*s),
                            h.name
                        );
                        match vip_at.filter(|_| other == VIP_OWNER) {
                            Some(v) => errs.at(v, "lb.vip", message),
                            None => errs.push(line, &format!("host.{}", segment_name(*s)), message),
                        }
                    }
                    taken.push((*s, *a, h.name.clone()));
                }
            }
        }
    }

    if errs.list.is_empty() {
        Ok(spec)
    } else {
        Err(FileErrors(errs.list))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match parse("site.toml", text) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    /// The default spec is the seeds' topology, in both modes; an empty file is the
    /// default; what `show` prints parses back to the same spec.
    #[test]
    fn the_default_is_the_seeds_topology() {
        for mode in [Mode::Local, Mode::Isolated] {
            assert_eq!(
                Site::default().topology(mode, 3).unwrap(),
                Topology::default_for(mode, 3),
                "{mode:?}"
            );
        }
        let empty = parse("site.toml", "").unwrap();
        assert_eq!(
            empty.topology(Mode::Isolated, 0),
            Site::default().topology(Mode::Isolated, 0)
        );
        let shown = Site::default().to_file();
        let back = parse("shown.toml", &shown).unwrap();
        assert_eq!(
            back.topology(Mode::Isolated, 0),
            Site::default().topology(Mode::Isolated, 0)
        );
        assert!(
            shown.contains(
                "#   web2     web        app 198.18.1.12, data 198.18.2.12, mgmt 198.18.9.12"
            ),
            "{shown}"
        );
    }

    /// `[[host]] cpus` and `memory`: carried into the topology's hosts, kept through
    /// `topology show`, and a host without them has no limits.
    #[test]
    fn hosts_can_have_cpu_and_memory_limits() {
        let text = "[[host]]\nname = \"db1\"\ncpus = 0.5\nmemory = \"512M\"\n\
                    [[host]]\nname = \"web1\"\ncpus = 2\n[[host]]\nname = \"web1\"\nmemory = \"1536M\"\n";
        let site = parse("site.toml", text).unwrap();
        let t = site.topology(Mode::Isolated, 0).unwrap();
        let limits = |h: &str| t.host(h).unwrap().limits;
        assert_eq!(
            limits("db1"),
            Limits {
                millicpus: Some(500),
                memory: Some(512 << 20)
            }
        );
        assert_eq!(limits("db1").quota_us(), Some(50_000));
        assert_eq!(
            limits("web1"),
            Limits {
                millicpus: Some(2000),
                memory: Some(1536 << 20)
            }
        );
        assert!(limits("web2").is_none());
        let shown = site.to_file();
        assert!(
            shown.contains("name = \"db1\"\ncpus = 0.5\nmemory = \"512M\"\n"),
            "{shown}"
        );
        assert!(shown.contains("cpus = 2\nmemory = \"1536M\"\n"), "{shown}");
        let back = parse("shown.toml", &shown).unwrap();
        assert_eq!(back.topology(Mode::Isolated, 0).unwrap(), t);
    }

    /// Every bad `cpus` or `memory` is named with its line, the key and what is valid.
    #[test]
    fn bad_host_limits_get_named_errors() {
        let cpus = "is not a number of cores; write a number from 0.01 to 1024, such as 0.5 or 2";
        let memory = "is not a memory limit; write bytes with a K, M or G suffix from \"32M\" to \"1024G\", such as \"512M\"";
        for (value, shown) in [
            ("0", "0"),
            ("0.0", "0.0"),
            ("-1", "-1"),
            ("0.001", "0.001"),
            ("1025", "1025"),
            ("\"1\"", "\"1\""),
            ("nan", "nan"),
            ("true", "true"),
        ] {
            assert_eq!(
                errors(&format!("[[host]]\nname = \"web1\"\ncpus = {value}\n")),
                [format!("site.toml:3: host.cpus: {shown} {cpus}")],
                "cpus = {value}"
            );
        }
        for (value, shown) in [
            ("\"31M\"", "\"31M\""),
            ("\"512\"", "\"512\""),
            ("\"\"", "\"\""),
            ("\"M\"", "\"M\""),
            ("\"1.5G\"", "\"1.5G\""),
            ("\"512MB\"", "\"512MB\""),
            ("\"2T\"", "\"2T\""),
            ("\"1025G\"", "\"1025G\""),
            ("\"-64M\"", "\"-64M\""),
            ("536870912", "536870912"),
        ] {
            assert_eq!(
                errors(&format!("[[host]]\nname = \"web1\"\nmemory = {value}\n")),
                [format!("site.toml:3: host.memory: {shown} {memory}")],
                "memory = {value}"
            );
        }
        for (value, bytes) in [
            ("\"32M\"", 32u64 << 20),
            ("\"33554432\"", 32 << 20),
            ("\"2g\"", 2 << 30),
            ("\"65536K\"", 64 << 20),
        ] {
            let site = parse(
                "site.toml",
                &format!("[[host]]\nname = \"web1\"\nmemory = {value}\n"),
            )
            .unwrap();
            assert_eq!(
                site.limits,
                [(
                    "web1".to_owned(),
                    Limits {
                        millicpus: None,
                        memory: Some(bytes)
                    }
                )],
                "{value}"
            );
        }
        assert_eq!(
            errors("[[host]]\nname = \"web1\"\ncpus = 1\n[[host]]\nname = \"web1\"\ncpus = 2\n"),
            ["site.toml:6: host.cpus: web1's cpus is already set; set it once"]
        );
        assert_eq!(
            errors("[[host]]\nname = \"web9\"\ncpus = 1\n"),
            ["site.toml:2: host.name: no host web9 in this site; its hosts are client, dns, lb1, web1, web2, db1, db2, monitor, backup"]
        );
        assert_eq!(
            errors("[[host]]\nname = \"web1\"\ncpu = 1\n")[0],
            "site.toml:3: (syntax): unknown field `cpu`, expected one of `name`, `public`, `app`, `data`, `mgmt`, `cpus`, `memory`"
        );
    }

    /// `[deploy]`: where Ansible connects from, kept through `topology show`, and each
    /// bad entry named.
    #[test]
    fn deploy_names_the_operators_networks() {
        let spec = parse(
            "site.toml",
            "[deploy]\nssh_from = [\"192.0.2.10\", \"198.51.100.0/24\"]\nssh_port = 2222\n",
        )
        .unwrap();
        assert_eq!(spec.ssh_from, ["192.0.2.10/32", "198.51.100.0/24"]);
        let t = spec.topology(Mode::Isolated, 0).unwrap();
        assert_eq!((t.ssh_from.len(), t.ssh_port), (2, 2222));
        let back = parse("shown.toml", &spec.to_file()).unwrap();
        assert_eq!(back.ssh_from, spec.ssh_from);
        assert_eq!(back.ssh_port, 2222);
        assert!(Site::default().ssh_from.is_empty());
        let errs = parse(
            "site.toml",
            "[deploy]\nssh_from = [\"192.0.2.10/24\", \"nowhere\"]\nssh_port = 70000\n",
        )
        .unwrap_err()
        .to_string();
        for want in [
            "site.toml:2: deploy.ssh_from[0]: \"192.0.2.10/24\" is not an IPv4 address or network",
            "site.toml:2: deploy.ssh_from[1]: \"nowhere\"",
            "site.toml:3: deploy.ssh_port: 70000 is not a port; expected 1 to 65535",
        ] {
            assert!(errs.contains(want), "{want} not in\n{errs}");
        }
    }

    /// `[backup] store`: kept through `topology show`, reaching the topology; a relative
    /// path, `..`, or a store without a backup host is named.
    #[test]
    fn the_backup_store_can_live_elsewhere() {
        let spec = parse("site.toml", "[backup]\nstore = \"/srv/rampart-backup/\"\n").unwrap();
        assert_eq!(spec.backup_store.as_deref(), Some("/srv/rampart-backup"));
        let t = spec.topology(Mode::Isolated, 0).unwrap();
        assert_eq!(
            t.backup_store,
            Some(std::path::PathBuf::from("/srv/rampart-backup"))
        );
        let back = parse("shown.toml", &spec.to_file()).unwrap();
        assert_eq!(back.backup_store, spec.backup_store);
        assert_eq!(
            Site::default()
                .topology(Mode::Local, 0)
                .unwrap()
                .backup_store,
            None
        );
        for (text, want) in [
            (
                "[backup]\nstore = \"backup\"\n",
                "site.toml:2: backup.store: \"backup\" is not a directory for the store",
            ),
            (
                "[backup]\nstore = \"/srv/../etc\"\n",
                "site.toml:2: backup.store: \"/srv/../etc\" is not a directory for the store",
            ),
            (
                "[hosts]\nbackup = 0\n[backup]\nstore = \"/srv/b\"\n",
                "site.toml:4: backup.store: the site has no backup host (hosts.backup = 0)",
            ),
        ] {
            let errs = errors(text);
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "{want} not in {errs:?}"
            );
        }
    }

    /// `[acme]`: kept through `topology show`, reaching the topology with the directory's
    /// host and port; every bad key named with its line.
    #[test]
    fn acme_names_its_directory() {
        let text = "[acme]\ndirectory = \"https://203.0.113.100:14000/dir\"\n\
                    contact = [\"mailto:ops@foobar.com\"]\nca = \"/etc/rampart/acme-ca.pem\"\n\
                    retry_min = \"2s\"\nretry_max = \"10s\"\ncheck_every = \"5s\"\n";
        let spec = parse("site.toml", text).unwrap();
        let a = spec.acme.clone().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("203.0.113.100", 14000));
        assert_eq!(a.ip(), Some(Ipv4Addr::new(203, 0, 113, 100)));
        assert_eq!(
            (a.retry_min, a.retry_max, a.check_every),
            (Some(2), Some(10), Some(5))
        );
        let t = spec.topology(Mode::Isolated, 0).unwrap();
        assert_eq!(t.acme, spec.acme);
        let back = parse("shown.toml", &spec.to_file()).unwrap();
        assert_eq!(back.acme, spec.acme);
        assert_eq!(
            parse("d.toml", &Site::default().to_file()).unwrap().acme,
            None
        );
        let le = parse(
            "site.toml",
            "[acme]\ndirectory = \"https://acme-v02.api.letsencrypt.org/directory\"\n",
        )
        .unwrap()
        .acme
        .unwrap();
        assert_eq!(
            (le.host.as_str(), le.port, le.ip()),
            ("acme-v02.api.letsencrypt.org", 443, None)
        );
        let errs = errors(
            "[acme]\ndirectory = \"http://ca.example/dir\"\ncontact = [\"ops@foobar.com\"]\n\
             ca = \"ca.pem\"\nretry_min = \"0s\"\nretry_max = \"8d\"\n",
        );
        for want in [
            "site.toml:2: acme.directory: \"http://ca.example/dir\" is not an ACME directory; \
             expected an https:// URL",
            "site.toml:3: acme.contact: \"ops@foobar.com\" is not a contact; expected \
             \"mailto:ops@example.com\"",
            "site.toml:4: acme.ca: \"ca.pem\" is not a CA file",
            "site.toml:5: acme.retry_min: \"0s\" is out of range; write a number with a unit \
             (s, m, h or d) from \"1s\" to \"1d\"",
            "site.toml:6: acme.retry_max: \"8d\" is out of range",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "{want} not in {errs:?}"
            );
        }
        let errs = errors("[acme]\ncontact = []\n");
        assert!(
            errs.iter()
                .any(|e| e.starts_with("site.toml:1: acme.directory: missing")),
            "{errs:?}"
        );
    }

    /// `[monitor] rules`: off by default, kept through `topology show`, made absolute
    /// against the file's directory, never reaching the topology by itself (the caller
    /// reads the files).
    #[test]
    fn monitor_rules_list_the_operators_files() {
        assert!(Site::default().monitor_rules.is_empty());
        let shown = Site::default().to_file();
        assert!(shown.contains("# [monitor]\n# rules = ["), "{shown}");
        let text = "[monitor]\nrules = [\"node-mixin/alerts.yaml\", \"/srv/mysqld-mixin/rules/rules.yaml\",\n  \"mysqld-mixin/alerts/general.yml\"]\n";
        let mut spec = parse("site.toml", text).unwrap();
        assert_eq!(
            spec.monitor_rules,
            [
                "node-mixin/alerts.yaml",
                "/srv/mysqld-mixin/rules/rules.yaml",
                "mysqld-mixin/alerts/general.yml"
            ]
        );
        assert!(spec
            .topology(Mode::Isolated, 0)
            .unwrap()
            .monitor_rules
            .is_empty());
        spec.rules_relative_to(std::path::Path::new("/etc/rampart"));
        assert_eq!(
            spec.monitor_rules,
            [
                "/etc/rampart/node-mixin/alerts.yaml",
                "/srv/mysqld-mixin/rules/rules.yaml",
                "/etc/rampart/mysqld-mixin/alerts/general.yml"
            ]
        );
        let back = parse("shown.toml", &spec.to_file()).unwrap();
        assert_eq!(back.monitor_rules, spec.monitor_rules);
        assert_eq!(
            spec.rules_error("/x.yaml: cannot read").to_string(),
            "site.toml:2: monitor.rules: /x.yaml: cannot read"
        );
        assert!(parse("site.toml", "[monitor]\nrules = []\n")
            .unwrap()
            .monitor_rules
            .is_empty());
    }

    /// Every bad `[monitor] rules` names the file, the line, the key (with the entry's
    /// index) and what would be valid; all at once.
    #[test]
    fn bad_monitor_rules_get_named_errors() {
        let check = |text: &str, want: &[&str]| {
            assert_eq!(errors(text), want, "{text}");
        };
        check(
            "[monitor]\nrules = \"node-mixin/alerts.yaml\"\n",
            &[
                "site.toml:2: monitor.rules: a string is not a list of rules files; write the \
               paths of Prometheus rules files as a list of strings, such as \
               [\"node-mixin/alerts.yaml\", \"node-mixin/rules.yaml\"]",
            ],
        );
        check(
            "[monitor]\n\nrules = { file = \"a.yaml\" }\n",
            &[
                "site.toml:3: monitor.rules: a table is not a list of rules files; write the \
               paths of Prometheus rules files as a list of strings, such as \
               [\"node-mixin/alerts.yaml\", \"node-mixin/rules.yaml\"]",
            ],
        );
        check(
            "[monitor]\nrules = [\"a.yaml\", 3, [\"b.yaml\"]]\n",
            &[
                "site.toml:2: monitor.rules[1]: an integer is not a path; write each rules \
                 file as a string, such as \"node-mixin/alerts.yaml\"",
                "site.toml:2: monitor.rules[2]: an array is not a path; write each rules file \
                 as a string, such as \"node-mixin/alerts.yaml\"",
            ],
        );
        check(
            "[monitor]\nrules = [\"\", \" \"]\n",
            &[
                "site.toml:2: monitor.rules[0]: \"\" is empty; write the path of a rules file, \
                 such as \"node-mixin/alerts.yaml\"",
                "site.toml:2: monitor.rules[1]: \" \" is empty; write the path of a rules file, \
                 such as \"node-mixin/alerts.yaml\"",
            ],
        );
        check(
            "[monitor]\nrules = [\"rules/\", \"..\", \"a.yaml/.\"]\n",
            &[
                "site.toml:2: monitor.rules[0]: \"rules/\" names no file; write the path of a \
                 rules file, such as \"node-mixin/alerts.yaml\"",
                "site.toml:2: monitor.rules[1]: \"..\" names no file; write the path of a \
                 rules file, such as \"node-mixin/alerts.yaml\"",
                "site.toml:2: monitor.rules[2]: \"a.yaml/.\" names no file; write the path of a \
                 rules file, such as \"node-mixin/alerts.yaml\"",
            ],
        );
        check(
            "[monitor]\nrules = [\"node-mixin/mixin.libsonnet\", \"a\\nb.yaml\"]\n",
            &[
                "site.toml:2: monitor.rules[0]: \"node-mixin/mixin.libsonnet\" is not a \
                 Prometheus rules file; expected YAML (.yml or .yaml); render a jsonnet mixin \
                 to YAML first (mixtool, or jsonnet -S)",
                "site.toml:2: monitor.rules[1]: \"a\\nb.yaml\" is not a path (control \
                 characters, or longer than 4096 bytes)",
            ],
        );
        check(
            "[monitor]\nrules = [\"node-mixin/rules.yaml\", \"mysqld-mixin/rules/rules.yaml\",\n  \"./node-mixin//rules.yaml\"]\n",
            &["site.toml:2: monitor.rules[2]: \"./node-mixin//rules.yaml\" is listed twice \
               (also monitor.rules[0]); list each rules file once"],
        );
        check(
            "[monitor]\nrule = [\"a.yaml\"]\n",
            &["site.toml:2: (syntax): unknown field `rule`, expected `rules`"],
        );
        // Other sections' errors come too.
        check(
            "[hosts]\nweb = 0\n[monitor]\nrules = [\"\"]\n",
            &[
                "site.toml:2: hosts.web: 0 web servers; valid: 1 to 78",
                "site.toml:4: monitor.rules[0]: \"\" is empty; write the path of a rules file, \
                 such as \"node-mixin/alerts.yaml\"",
            ],
        );
    }

    #[test]
    fn certificates_have_a_lifetime() {
        assert_eq!(
            Site::default()
                .topology(Mode::Local, 0)
                .unwrap()
                .cert_lifetime,
            std::time::Duration::from_secs(30 * 86_400)
        );
        for (text, secs) in [
            ("90s", 90),
            ("3m", 180),
            ("12h", 43_200),
            ("45d", 45 * 86_400),
        ] {
            let spec = parse(
                "site.toml",
                &format!("[certificates]\nlifetime = \"{text}\"\n"),
            )
            .unwrap();
            assert_eq!(spec.cert_lifetime, secs);
            let t = spec.topology(Mode::Isolated, 0).unwrap();
            assert_eq!(t.cert_lifetime.as_secs(), secs);
            let back = parse("shown.toml", &spec.to_file()).unwrap();
            assert_eq!(back.cert_lifetime, secs, "{}", spec.to_file());
        }
        for bad in ["30", "59s", "398d", "1w", "-5d", "d"] {
            let want = format!(
                "site.toml:2: certificates.lifetime: {bad:?} is not a certificate lifetime; \
                 write a number with a unit"
            );
            let errs = errors(&format!("[certificates]\nlifetime = \"{bad}\"\n"));
            assert!(
                errs.iter().any(|e| e.starts_with(&want)),
                "{want} not in {errs:?}"
            );
        }
    }

    /// A larger site: counts give hosts, names and addresses by role, and a pair of load
    /// balancers gets the floating address.
    #[test]
    fn counts_make_hosts() {
        let spec = parse(
            "site.toml",
            "[hosts]\nlb = 2\nweb = 3\nreplicas = 2\n[[host]]\nname = \"web3\"\napp = \"198.18.1.200\"\n",
        )
        .unwrap();
        let t = spec.topology(Mode::Isolated, 0).unwrap();
        let names: Vec<&str> = t.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "client", "dns", "lb1", "lb2", "web1", "web2", "web3", "db1", "db2", "db3",
                "monitor", "backup",
            ]
        );
        let addr = |h: &str, s| t.addr(t.host(h).unwrap(), s).to_string();
        assert_eq!(addr("lb2", Segment::Public), "203.0.113.9");
        assert_eq!(addr("web3", Segment::App), "198.18.1.200");
        assert_eq!(addr("web3", Segment::Data), "198.18.2.13");
        assert_eq!(addr("db3", Segment::Data), "198.18.2.23");
        assert_eq!(t.with_role(Role::DbReplica).count(), 2);
        assert_eq!(t.vip, Some(Ipv4Addr::new(203, 0, 113, 80)));
        // The default floating address is not written out: the file parses again,
        // and with lb = 1 too.
        let text = spec.to_file();
        assert!(!text.contains("\nvip = "), "{text}");
        assert_eq!(
            parse("again.toml", &text)
                .unwrap()
                .topology(Mode::Isolated, 0),
            spec.topology(Mode::Isolated, 0)
        );
        assert!(parse("one.toml", &text.replace("lb = 2", "lb = 1")).is_ok());
        // Local mode has no floating address.
        let err = spec.topology(Mode::Local, 0).unwrap_err().to_string();
        assert_eq!(
            err.lines().next().unwrap(),
            "site.toml:2: hosts.lb: a pair of load balancers needs isolated mode (the floating address is VRRP between namespaces); use lb = 1 with --local"
        );
        // Many web servers and replicas still get distinct addresses.
        let big = parse("big.toml", "[hosts]\nweb = 78\nreplicas = 158\n").unwrap();
        let t = big.topology(Mode::Isolated, 0).unwrap();
        assert_eq!(t.with_role(Role::Web).count(), 78);
        assert_eq!(t.with_role(Role::DbReplica).count(), 158);
    }

    /// Each problem names the file, the line and the key, and says what would be valid;
    /// all of them are reported at once.
    #[test]
    fn bad_files_get_named_errors() {
        assert_eq!(
            errors("[hosts]\nweb = 0\nlb = 3\n"),
            [
                "site.toml:3: hosts.lb: 3 load balancers (1, or 2 for a pair on a floating address); valid: 1 to 2",
                "site.toml:2: hosts.web: 0 web servers; valid: 1 to 78",
            ]
        );
        assert_eq!(
            errors("[etcd]\nhosts = [\"monitor\", \"dns\"]\n"),
            ["site.toml:2: etcd.hosts: 2 members; etcd needs an odd number, 3 or more (a quorum survives the loss of (n-1)/2), such as [\"monitor\", \"dns\", \"lb1\"]"]
        );
        assert_eq!(
            errors("[etcd]\nhosts = [\"monitor\", \"db1\", \"web7\"]\n"),
            [
                "site.toml:2: etcd.hosts: db1 is a database host; etcd must not share a host with what it arbitrates",
                "site.toml:2: etcd.hosts: no host web7; the site's hosts are client, dns, lb1, web1, web2, db1, db2, monitor, backup",
            ]
        );
        assert_eq!(
            errors("[segments]\napp = \"198.18.1.0/24\"\ndata = \"198.18.0.0/23\"\n"),
            ["site.toml:3: segments.data: 198.18.0.0/23 overlaps segments.app (198.18.1.0/24); each segment needs a network of its own"]
        );
        assert_eq!(
            errors("[segments]\nmgmt = \"198.18.9.1/24\"\n"),
            ["site.toml:2: segments.mgmt: \"198.18.9.1/24\" is not an IPv4 network: write it as address/prefix with no host bits, prefix 8 to 30, such as \"198.18.1.0/24\""]
        );
        assert_eq!(
            errors("[[host]]\nname = \"web1\"\napp = \"198.18.2.11\"\npublic = \"203.0.113.7\"\n"),
            [
                "site.toml:4: host.public: web1 is not on the public segment; a web host is on app, data, mgmt",
                "site.toml:3: host.app: 198.18.2.11 is outside the app segment 198.18.1.0/24",
            ]
        );
        // Overlapping addresses: a pinned address that another host already has.
        assert_eq!(
            errors("[[host]]\nname = \"web2\"\ndata = \"198.18.2.21\"\n"),
            ["site.toml:3: host.data: data 198.18.2.21 of db1 is already web2's; every address must be unique"]
        );
        assert_eq!(
            errors("[hosts]\nlb = 2\n[lb]\nvip = \"203.0.113.10\"\n"),
            ["site.toml:4: lb.vip: public 203.0.113.10 of lb1 is already the floating address (lb.vip)'s; every address must be unique"]
        );
        assert_eq!(
            errors("[lb]\nvip = \"10.0.0.1\"\n"),
            [
                "site.toml:2: lb.vip: 10.0.0.1 is outside the public segment 203.0.113.0/24",
                "site.toml:2: lb.vip: a floating address needs two load balancers (hosts.lb = 2)",
            ]
        );
        assert_eq!(
            errors("[hosts]\nwebs = 3\n"),
            ["site.toml:2: (syntax): unknown field `webs`, expected one of `lb`, `web`, `replicas`, `backup`"]
        );
        assert_eq!(
            errors("names = [\"www.foobar.com\", \"bad name\"]\n"),
            ["site.toml:1: names: \"bad name\" is not a DNS name (letters, digits and dashes, in dotted labels)"]
        );
        // A network too small for the hosts.
        assert_eq!(
            errors("[segments]\nmgmt = \"198.18.9.0/28\"\n"),
            ["dns", "db1", "db2"].map(|h| format!(
                "site.toml:2: segments.mgmt: 198.18.9.0/28 has no room for {h} (host number out of range); use a larger network"
            ))
        );
    }
}

//! The site on real hosts, as `rampart render` writes it: the same [`Plan`] that `rampart
//! up` runs, planned for on-host paths ([`settings`]), plus what a host with systemd
//! needs beside the plan's own files: a hardened unit per rampart service, a drop-in per
//! Debian-packaged service (MariaDB, Prometheus, Alertmanager, etcd, keepalived), the
//! firewall as a file, who owns each file, and the packages to install. Pure: the I/O
//! (certificates, secrets, writing) is `rampart_infra::bundle`'s, the Ansible files are
//! [`crate::ansible`]'s.
//!
//! On a host everything lives where the plan says, under [`ROOT`]; the binary is at
//! [`BIN`]. Keys and secrets are files of mode 0600 that reach their service as systemd
//! credentials (`LoadCredential=`), bind-mounted read-only over the path its config names,
//! so a service's view is the same as under `rampart up` and the plan needs no second
//! layout.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::plan::{Launch, Plan, Probe, Program, ServicePlan, Settings, Source};
use crate::render::{Failover, Pace, StatePaths};
use crate::{Mode, Role, Topology};

/// Where a host keeps everything the plan names (configs, certificates, data).
pub const ROOT: &str = "/var/lib/rampart";
/// The `rampart` binary on a host: a path the playbook owns, outside `/usr`.
pub const BIN: &str = "/opt/rampart/bin/rampart";
/// The system user rampart's own services run as.
pub const SERVICE_USER: &str = "rampart";
/// The group of every service on a host that reads or writes its host directory.
pub const SERVICE_GROUP: &str = "rampart";
/// The host's firewall ruleset (`inet rampart` only: other tables are left alone).
pub const FIREWALL_FILE: &str = "/etc/rampart/nftables.conf";
/// The topology file on every host.
pub const SITE_FILE: &str = "/var/lib/rampart/topology.toml";
/// The user of the database server, its keeper and everything else on its host.
pub const DB_USER: &str = "mysql";
/// The one-shot unit that gives a new database host its data directory and accounts
/// before the keeper's first start (`rampart db init`).
pub const DB_INIT_UNIT: &str = "rampart-db-init.service";
/// Where units and drop-ins go.
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// Where units are staged and checked with `systemd-analyze verify` before install.
pub const STAGE_DIR: &str = "/etc/rampart/units";

/// How the plan is made for real hosts: on-host paths, production pace, no forwards.
pub fn settings() -> Settings {
    Settings {
        state: StatePaths::new(Path::new(ROOT)),
        bin: PathBuf::from(BIN),
        pace: Pace::Production,
        // Names the etcd cluster token (`rampart-site`); no namespaces are made.
        prefix: Some("site".into()),
        publish: 0,
        dashboard_publish: 0,
        uid: 0,
        failover: Failover::default(),
        runtime: PathBuf::from(RUNTIME),
        // Under systemd every service's output is its unit's journal.
        journal: true,
        cgroups: false,
    }
}

/// [`Settings::runtime`] on a real host: systemd makes each unit's runtime directory
/// under it (`RuntimeDirectory=`) and removes it when the unit stops.
pub const RUNTIME: &str = "/run/rampart";

/// The plan for real hosts. The topology must be the isolated one (real addresses).
pub fn plan(t: &Topology) -> Plan {
    debug_assert_eq!(t.mode, Mode::Isolated);
    crate::plan::plan(t, &settings())
}

/// How systemd runs one planned service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitSpec {
    /// `rampart-web.service`, `etcd.service`, ...
    pub unit: String,
    /// The user it runs as.
    pub user: &'static str,
    /// Rampart's own unit, or a drop-in for a Debian package's unit.
    pub kind: UnitKind,
    /// The Debian package whose unit a drop-in extends.
    pub package: Option<&'static str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitKind {
    Own,
    DropIn,
}

/// The Debian package that gives MariaDB's unit, `mariadb.service`.
pub const MARIADB_PACKAGE: &str = "mariadb-server";

/// How `svc` runs under systemd; `None` for what only `rampart up` runs (the forwards).
pub fn unit_of(svc: &ServicePlan) -> Option<UnitSpec> {
    let unit = crate::plan::unit_name(svc)?;
    let packaged = |unit, user, package| UnitSpec {
        unit,
        user,
        kind: UnitKind::DropIn,
        package: Some(package),
    };
    Some(match &svc.launch {
        Launch::Database(_) => packaged(unit, "mysql", MARIADB_PACKAGE),
        Launch::Process {
            program: Program::Rampart(_),
            ..
        } => UnitSpec {
            unit,
            user: SERVICE_USER,
            kind: UnitKind::Own,
            package: None,
        },
        Launch::Process {
            program: Program::Packaged { program, package },
            ..
        } => {
            let user = match *program {
                "etcd" => "etcd",
                "keepalived" => "root",
                _ => "prometheus",
            };
            packaged(unit, user, package)
        }
    })
}

/// A packaged program's path on Debian 12.
fn packaged_path(program: &str) -> String {
    match program {
        "keepalived" => "/usr/sbin/keepalived".into(),
        other => format!("/usr/bin/{other}"),
    }
}

/// A file of a host's bundle: where it goes, its mode and owner, and whether it is a
/// secret (copied without logging or diffs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleFile {
    pub path: PathBuf,
    pub mode: u32,
    pub owner: &'static str,
    pub secret: bool,
    pub contents: Contents,
}

/// Where a bundle file's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contents {
    /// Rendered text.
    Text(String),
    /// The operator's copy of a certificate, key or secret, at this on-host path
    /// (render keeps them in its own state directory, [`ROOT`] mapped there).
    Issued,
}

/// A directory a host needs before its services start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleDir {
    pub path: PathBuf,
    pub mode: u32,
    pub owner: &'static str,
    pub group: &'static str,
}

/// Everything one host gets.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub host: String,
    pub role: Role,
    /// Debian packages to install.
    pub packages: Vec<&'static str>,
    pub dirs: Vec<BundleDir>,
    pub files: Vec<BundleFile>,
    /// Units in start order, each with the unit file (or drop-in) path in the bundle.
    pub units: Vec<(UnitSpec, PathBuf)>,
    /// When each unit counts as ready: its service's probe in the plan (what `up` waits
    /// for), by unit name. The playbook waits for it after a start or restart.
    pub ready: BTreeMap<String, Probe>,
    /// A load balancer's admin listener (drain and undrain of web servers).
    pub lb_admin: Option<std::net::SocketAddr>,
    /// A database host's keeper status listener (its role, and the switchover).
    pub keeper: Option<std::net::SocketAddr>,
    /// By unit, the on-host files whose change restarts it: its unit file (or drop-in),
    /// its configs, certificates and keys, and the binary for what runs `rampart`.
    /// Nothing else restarts it, so a change of one service's files restarts that one.
    pub restart_on: BTreeMap<String, Vec<PathBuf>>,
}

/// The load balancer's socket unit: systemd holds its public listeners, so a restart of
/// the load balancer (a new binary, a new config) refuses no connection.
pub const LB_SOCKET_UNIT: &str = "rampart-lb.socket";

/// The public listeners of a load balancer (`listen.https`, `listen.http`, and
/// `listen.http_own` of a pair under ACME) and whether
/// they bind with IP_FREEBIND, read from its rendered config: the socket unit binds
/// exactly what the load balancer will look for.
fn lb_public_listeners(svc: &ServicePlan) -> (Vec<String>, bool) {
    let Some(listen) = svc
        .files
        .iter()
        .filter_map(|f| f.contents.parse::<toml::Table>().ok())
        .find_map(|t| t.get("listen").and_then(toml::Value::as_table).cloned())
    else {
        return (Vec::new(), false);
    };
    let addrs = ["https", "http", "http_own"]
        .iter()
        .filter_map(|k| listen.get(*k).and_then(toml::Value::as_str))
        .filter(|a| *a != "off")
        .map(str::to_owned)
        .collect();
    let freebind = listen
        .get("freebind")
        .and_then(toml::Value::as_bool)
        .unwrap_or(false);
    (addrs, freebind)
}

fn lb_socket_unit(host: &str, svc: &ServicePlan) -> String {
    let (addrs, freebind) = lb_public_listeners(svc);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# rampart lb's public listeners on {host}, rendered by `rampart render`. systemd\n\
         # holds them: connections that arrive while the load balancer restarts wait in the\n\
         # queue for the next process."
    );
    let _ = writeln!(
        s,
        "[Unit]\nDescription=rampart lb listeners ({host})\n\n[Socket]"
    );
    for a in addrs {
        let _ = writeln!(s, "ListenStream={a}");
    }
    if freebind {
        // The pair's floating address: bound before keepalived gives it to this side.
        s.push_str("FreeBind=yes\n");
    }
    s.push_str("Backlog=4096\nNoDelay=yes\nReusePort=no\n\n[Install]\nWantedBy=sockets.target\n");
    s
}

/// The host's bundle. `db_command` is the database server's command line under its
/// keeper (from `rampart_infra`, which owns the server's flags), for a database host;
/// `site_file` the topology file, kept at [`SITE_FILE`] (`rampart db init` reads it).
///
/// On a database host every service runs as `mysql` and the host's directory is
/// mysql's (0700): the server's directory is the host's, and the agent reads the
/// server's socket there.
pub fn bundle(plan: &Plan, host: &str, db_command: &[String], site_file: &str) -> Option<Bundle> {
    let h = plan.host(host)?;
    let database = h
        .services
        .iter()
        .any(|s| matches!(s.launch, Launch::Database(_)));
    let services: Vec<(&ServicePlan, UnitSpec)> = h
        .services
        .iter()
        .filter_map(|s| {
            unit_of(s).map(|mut u| {
                if database && u.kind == UnitKind::Own {
                    u.user = DB_USER;
                }
                (s, u)
            })
        })
        .collect();
    let mut packages: Vec<&'static str> = vec!["nftables", "util-linux", "ca-certificates"];
    for (_, u) in &services {
        if let Some(p) = u.package {
            packages.push(p);
        }
    }
    if h.service("agent").is_some() {
        // The system bus: the agent's systemd collector reads unit state over it
        // (systemd's private socket is root's only). Debian's systemd only recommends it.
        packages.push("dbus");
    }
    if h.role == Role::DbPrimary || h.role == Role::DbReplica {
        packages.extend(["mariadb-client", "mariadb-backup"]);
    }
    if h.role == Role::Backup {
        // mariadb-backup to prepare, mariadb-binlog to replay, mariadbd for the scratch
        // server that verify and restore start.
        packages.extend(["mariadb-client", "mariadb-backup", "mariadb-server-core"]);
    }
    if h.role == Role::Lb {
        // The WAF's rules: the OWASP CRS 3.3.4 as Debian packages it.
        packages.push("modsecurity-crs");
    }
    packages.sort_unstable();
    packages.dedup();

    let mut dirs = vec![
        BundleDir {
            path: PathBuf::from(ROOT),
            mode: 0o755,
            owner: "root",
            group: "root",
        },
        BundleDir {
            path: PathBuf::from(ROOT).join("certs"),
            mode: 0o755,
            owner: "root",
            group: "root",
        },
        // Traversable, not listable: each password reaches its service as a credential
        // bind-mounted at its path here.
        BundleDir {
            path: PathBuf::from(ROOT).join("secrets"),
            mode: 0o711,
            owner: "root",
            group: "root",
        },
        BundleDir {
            path: PathBuf::from(ROOT).join("hosts"),
            mode: 0o755,
            owner: "root",
            group: "root",
        },
        // Every service of the host writes here (logs, state, data): its group; on a
        // database host, mysql's own.
        if database {
            BundleDir {
                path: h.dir.clone(),
                mode: 0o700,
                owner: DB_USER,
                group: DB_USER,
            }
        } else {
            BundleDir {
                path: h.dir.clone(),
                mode: 0o770,
                owner: "root",
                group: SERVICE_GROUP,
            }
        },
    ];
    for (svc, u) in &services {
        for d in &svc.private_dirs {
            dirs.push(BundleDir {
                path: d.clone(),
                mode: 0o700,
                owner: u.user,
                group: u.user,
            });
        }
    }

    // Who needs each issued file: its owner when one user does, else root (it reaches
    // every service as a credential anyway).
    let mut issued: BTreeMap<PathBuf, (u32, Vec<&'static str>)> = BTreeMap::new();
    for (svc, u) in &services {
        for n in &svc.needs {
            if matches!(n.from, Source::Service(_)) {
                continue;
            }
            let e = issued
                .entry(n.path.clone())
                .or_insert((n.max_mode, Vec::new()));
            e.0 = e.0.min(n.max_mode);
            if !e.1.contains(&u.user) {
                e.1.push(u.user);
            }
        }
    }
    let mut files: Vec<BundleFile> = issued
        .into_iter()
        .map(|(path, (mode, users))| {
            let secret = mode & 0o077 == 0;
            BundleFile {
                path,
                mode,
                owner: match users.as_slice() {
                    [one] if secret => one,
                    _ => "root",
                },
                secret,
                contents: Contents::Issued,
            }
        })
        .collect();
    for (svc, _) in &services {
        for f in &svc.files {
            files.push(BundleFile {
                path: f.path.clone(),
                mode: f.mode,
                owner: "root",
                secret: false,
                contents: Contents::Text(f.contents.clone()),
            });
        }
    }
    files.push(BundleFile {
        path: PathBuf::from(SITE_FILE),
        mode: 0o644,
        owner: "root",
        secret: false,
        contents: Contents::Text(site_file.to_owned()),
    });
    if let Some(fw) = &h.firewall {
        files.push(BundleFile {
            path: PathBuf::from(FIREWALL_FILE),
            mode: 0o644,
            owner: "root",
            secret: false,
            contents: Contents::Text(fw.clone()),
        });
    }
    let mut units = Vec::new();
    let mut ready = BTreeMap::new();
    let mut restart_on: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    // Renewed leaf certificates and keys restart nothing: every service loads them at
    // its next handshake (rampart's through `rampart_tls::Reloading`, etcd, Prometheus
    // and Alertmanager on each handshake, MariaDB through its keeper's FLUSH SSL). A
    // changed CA still restarts what trusts it.
    let leaves: std::collections::BTreeSet<PathBuf> = plan
        .certificates
        .iter()
        .flat_map(|c| {
            let (pem, key) = c.files();
            [pem, key]
        })
        .collect();
    for (svc, u) in services {
        ready.insert(u.unit.clone(), svc.ready.clone());
        let mut deps: Vec<PathBuf> = svc.files.iter().map(|f| f.path.clone()).collect();
        deps.extend(
            svc.needs
                .iter()
                .filter(|n| !matches!(n.from, Source::Service(_)))
                .filter(|n| !leaves.contains(&n.path))
                .map(|n| n.path.clone()),
        );
        let runs_rampart = matches!(
            svc.launch,
            Launch::Database(_)
                | Launch::Process {
                    program: Program::Rampart(_),
                    ..
                }
        );
        if runs_rampart {
            deps.push(PathBuf::from(BIN));
        }
        if svc.name == "lb" {
            let path = Path::new(UNIT_DIR).join(LB_SOCKET_UNIT);
            files.push(BundleFile {
                path: path.clone(),
                mode: 0o644,
                owner: "root",
                secret: false,
                contents: Contents::Text(lb_socket_unit(&h.name, svc)),
            });
            restart_on.insert(LB_SOCKET_UNIT.into(), vec![path.clone()]);
            units.push((
                UnitSpec {
                    unit: LB_SOCKET_UNIT.into(),
                    user: "root",
                    kind: UnitKind::Own,
                    package: None,
                },
                path,
            ));
        }
        if matches!(svc.launch, Launch::Database(_)) {
            let init = UnitSpec {
                unit: DB_INIT_UNIT.into(),
                user: DB_USER,
                kind: UnitKind::Own,
                package: None,
            };
            let path = Path::new(UNIT_DIR).join(DB_INIT_UNIT);
            restart_on.insert(DB_INIT_UNIT.into(), vec![path.clone(), PathBuf::from(BIN)]);
            files.push(BundleFile {
                path: path.clone(),
                mode: 0o644,
                owner: "root",
                secret: false,
                contents: Contents::Text(db_init_unit(&h.name, svc, &init, &h.dir)),
            });
            units.push((init, path));
        }
        let (path, text) = match u.kind {
            UnitKind::Own => (
                Path::new(UNIT_DIR).join(&u.unit),
                own_unit(h.name.as_str(), svc, &u, &h.dir),
            ),
            UnitKind::DropIn => (
                Path::new(UNIT_DIR)
                    .join(format!("{}.d", u.unit))
                    .join("rampart.conf"),
                drop_in(h.name.as_str(), svc, &u, &h.dir, db_command),
            ),
        };
        files.push(BundleFile {
            path: path.clone(),
            mode: 0o644,
            owner: "root",
            secret: false,
            contents: Contents::Text(text),
        });
        deps.push(path.clone());
        deps.sort();
        deps.dedup();
        restart_on.insert(u.unit.clone(), deps);
        units.push((u, path));
    }
    Some(Bundle {
        host: h.name.clone(),
        role: h.role,
        packages,
        dirs,
        files,
        units,
        ready,
        lb_admin: h
            .service("lb")
            .and_then(|s| s.ports.iter().find(|p| p.purpose == "admin"))
            .map(|p| p.addr),
        keeper: h
            .services
            .iter()
            .filter(|s| matches!(s.launch, Launch::Database(_)))
            .flat_map(|s| s.ports.iter())
            .find(|p| p.purpose == "keeper")
            .map(|p| p.addr),
        restart_on,
    })
}

/// A command line as `ExecStart=` takes it: each word quoted when it needs to be, `%`
/// and `$` escaped so systemd expands nothing.
fn exec_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let a = a.replace('%', "%%").replace('$', "$$");
            if a.is_empty() || a.contains([' ', '"', '\'', '\\', ';']) {
                format!("\"{}\"", a.replace('\\', "\\\\").replace('"', "\\\""))
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn argv_of(svc: &ServicePlan, db_command: &[String]) -> Vec<String> {
    match &svc.launch {
        Launch::Process { program, args } => {
            let mut v = vec![match program {
                Program::Rampart(bin) => bin.display().to_string(),
                Program::Packaged { program, .. } => packaged_path(program),
            }];
            v.extend(args.iter().cloned());
            v
        }
        Launch::Database(_) => {
            let config = svc
                .files
                .first()
                .map(|f| f.path.display().to_string())
                .unwrap_or_default();
            let mut v = vec![BIN.to_owned(), "keeper".into(), "--config".into(), config];
            v.push("--".into());
            v.extend(db_command.iter().cloned());
            v
        }
    }
}

/// The credential lines of a service: each secret it needs, loaded by systemd (as root)
/// and bind-mounted read-only over the path its config names.
fn credentials(svc: &ServicePlan, u: &UnitSpec) -> String {
    let mut s = String::new();
    for n in &svc.needs {
        // Keys and passwords, issued or made by another service of the host (the
        // dashboard's webhook token, which Alertmanager reads as another user).
        if n.max_mode & 0o077 != 0 {
            continue;
        }
        let Some(name) = n.path.file_name().map(|f| f.to_string_lossy().into_owned()) else {
            continue;
        };
        let path = n.path.display();
        let _ = writeln!(s, "LoadCredential={name}:{path}");
        let _ = writeln!(
            s,
            "BindReadOnlyPaths=/run/credentials/{}/{name}:{path}",
            u.unit
        );
    }
    s
}

/// The sandbox every rampart service gets. The DNS server keeps `CAP_NET_BIND_SERVICE`
/// (port 53) and nothing else; the agent keeps `CAP_NET_ADMIN` (the firewall's nflog
/// group, over `AF_NETLINK`) and reads the whole of `/proc` (host metrics); the load
/// balancer needs none (systemd binds its 80 and 443, [`LB_SOCKET_UNIT`]); the others
/// see only their own processes.
fn sandbox(name: &str, rw: &Path) -> String {
    let mut s = String::new();
    let caps = match name {
        "dns" => "CAP_NET_BIND_SERVICE",
        // Binding the firewall's nflog group (its drops as events).
        "agent" => "CAP_NET_ADMIN",
        _ => "",
    };
    let _ = writeln!(s, "CapabilityBoundingSet={caps}");
    let _ = writeln!(s, "AmbientCapabilities={caps}");
    if caps.is_empty() {
        // A user namespace of its own: no capability means anything outside it.
        s.push_str("PrivateUsers=yes\n");
    }
    if name != "agent" {
        s.push_str("ProcSubset=pid\n");
    }
    let _ = writeln!(s, "ReadWritePaths={}", rw.display());
    s.push_str(
        "NoNewPrivileges=yes
UMask=0077
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateIPC=yes
DevicePolicy=closed
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
KeyringMode=private
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
",
    );
    if name == "agent" {
        s.push_str("RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK\n");
    } else {
        s.push_str("RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n");
    }
    // The database server (run once by `db init`, and as the backup host's scratch
    // server) sets its own limits and priorities.
    if name != "db-init" && name != "backup" {
        s.push_str("SystemCallFilter=~@privileged @resources\n");
    } else {
        s.push_str("SystemCallFilter=~@privileged\n");
    }
    if name == "agent" {
        // The agent reads the clock's discipline state (node_exporter's timex
        // collector: `adjtimex` with no modes, a read). `ProtectClock=yes` and
        // `@privileged` would refuse the call itself; setting the clock still fails,
        // as the bounding set above has no CAP_SYS_TIME.
        // PrivateMounts (its mounts a slave copy of the host's, which it still sees)
        // keeps the unit's exposure within the bound the render test holds (2.0)
        // with the clock read allowed.
        s.push_str("ProtectClock=no\nSystemCallFilter=adjtimex\nPrivateMounts=yes\n");
    } else {
        s.push_str("ProtectClock=yes\n");
    }
    s
}

fn own_unit(host: &str, svc: &ServicePlan, u: &UnitSpec, dir: &Path) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# rampart {} on {host}, rendered by `rampart render`.",
        svc.name
    );
    let _ = writeln!(s, "[Unit]\nDescription=rampart {} ({host})", svc.name);
    s.push_str("After=network-online.target\nWants=network-online.target\n");
    if svc.name == "lb" {
        let _ = writeln!(s, "Requires={LB_SOCKET_UNIT}\nAfter={LB_SOCKET_UNIT}");
    }
    s.push_str("StartLimitIntervalSec=60\nStartLimitBurst=10\n\n[Service]\nType=exec\n");
    let _ = writeln!(s, "User={}\nGroup={SERVICE_GROUP}", u.user);
    if svc.name == "agent" {
        // Reading the system journal (the host's units' output, shipped as logs).
        s.push_str("SupplementaryGroups=systemd-journal\n");
    }
    let _ = writeln!(s, "ExecStart={}", exec_line(&argv_of(svc, &[])));
    if svc.name == "lb" {
        // The load balancer reloads its config on SIGHUP without dropping a connection,
        // and takes its public listeners from its socket unit.
        s.push_str("ExecReload=/bin/kill -HUP $MAINPID\n");
    }
    s.push_str("Restart=on-failure\nRestartSec=1s\nTimeoutStopSec=45s\nLimitNOFILE=65536\n");
    // Its tmpfs directories: made private for it at each start, gone when it stops.
    let runtime: Vec<String> = svc
        .runtime_dirs
        .iter()
        .filter_map(|d| d.strip_prefix("/run").ok())
        .map(|d| d.display().to_string())
        .collect();
    if !runtime.is_empty() {
        let _ = writeln!(
            s,
            "RuntimeDirectory={}\nRuntimeDirectoryMode=0700",
            runtime.join(" ")
        );
    }
    s.push_str(&credentials(svc, u));
    s.push_str(&sandbox(svc.name, dir));
    // A private directory elsewhere (the backup store on a disk of its own).
    for d in svc.private_dirs.iter().filter(|d| !d.starts_with(dir)) {
        let _ = writeln!(s, "ReadWritePaths={}", d.display());
    }
    s.push_str("\n[Install]\nWantedBy=multi-user.target\n");
    s
}

/// `rampart db init` once, before the keeper's first start: skipped (a condition, which
/// does not fail the keeper's unit) once the data directory has its system database.
fn db_init_unit(host: &str, db: &ServicePlan, u: &UnitSpec, dir: &Path) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# rampart: a new data directory and the accounts for {host}'s database server."
    );
    let _ = writeln!(
        s,
        "[Unit]\nDescription=rampart database initialization ({host})"
    );
    let _ = writeln!(
        s,
        "ConditionPathExists=!{}",
        dir.join("data/mysql").display()
    );
    s.push_str("\n[Service]\nType=oneshot\nRemainAfterExit=no\n");
    let _ = writeln!(s, "User={}\nGroup={}", u.user, u.user);
    let _ = writeln!(s, "ExecStart={BIN} db init {host} --topology {SITE_FILE}");
    s.push_str("TimeoutStartSec=300s\n");
    s.push_str(&credentials(db, u));
    s.push_str(&sandbox("db-init", dir));
    s
}

fn drop_in(
    host: &str,
    svc: &ServicePlan,
    u: &UnitSpec,
    dir: &Path,
    db_command: &[String],
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# rampart's {} on {host}: runs the package's service as the plan says.",
        svc.name
    );
    s.push_str("[Unit]\nAfter=network-online.target\nWants=network-online.target\n");
    if matches!(svc.launch, Launch::Database(_)) {
        let _ = writeln!(s, "Requires={DB_INIT_UNIT}\nAfter={DB_INIT_UNIT}");
    }
    s.push_str("\n[Service]\n");
    if matches!(svc.launch, Launch::Database(_)) {
        // The keeper is mariadbd's parent and decides its role: the package's own start
        // and post-start steps (Galera recovery, debian-start) do not apply.
        s.push_str("Type=exec\nExecStartPre=\nExecStartPost=\n");
        s.push_str("TimeoutStopSec=120s\nRestart=on-failure\nRestartSec=2s\n");
    }
    s.push_str("EnvironmentFile=\nEnvironment=\n");
    s.push_str("ExecStart=\n");
    let _ = writeln!(s, "ExecStart={}", exec_line(&argv_of(svc, db_command)));
    let _ = writeln!(s, "SupplementaryGroups={SERVICE_GROUP}");
    let _ = writeln!(s, "ReadWritePaths={}", dir.display());
    s.push_str(&credentials(svc, u));
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn site() -> Plan {
        plan(&Topology::default_for(Mode::Isolated, 0))
    }

    fn text<'a>(b: &'a Bundle, path: &str) -> &'a str {
        let f = b
            .files
            .iter()
            .find(|f| f.path == Path::new(path))
            .unwrap_or_else(|| panic!("{path} not in {}'s bundle", b.host));
        match &f.contents {
            Contents::Text(t) => t,
            Contents::Issued => panic!("{path} is issued"),
        }
    }

    #[test]
    fn every_host_gets_its_services_as_units() {
        let p = site();
        let units = |h: &str| -> Vec<String> {
            bundle(&p, h, &[], "")
                .unwrap()
                .units
                .iter()
                .map(|(u, _)| u.unit.clone())
                .collect()
        };
        let check = |h: &str, want: &[&str]| assert_eq!(units(h), want, "{h}");
        check(
            "lb1",
            &[
                "etcd.service",
                "rampart-lb.socket",
                "rampart-lb.service",
                "rampart-agent.service",
            ],
        );
        check("web1", &["rampart-web.service", "rampart-agent.service"]);
        // A new database host's data directory and accounts come first (a one-shot).
        check(
            "db1",
            &[
                "rampart-db-init.service",
                "mariadb.service",
                "rampart-agent.service",
            ],
        );
        check(
            "dns",
            &[
                "etcd.service",
                "rampart-dns.service",
                "rampart-agent.service",
            ],
        );
        check(
            "monitor",
            &[
                "etcd.service",
                "rampart-dashboard.service",
                "prometheus-alertmanager.service",
                "prometheus.service",
                "rampart-logs.service",
                "rampart-gate.service",
                "rampart-agent.service",
            ],
        );
        check(
            "backup",
            &["rampart-backup.service", "rampart-agent.service"],
        );
        // The client runs nothing of the site (and no forward).
        check("client", &[]);
    }

    /// The backup host's unit: the packages its tools come from, the binlog's plaintext
    /// staged on its tmpfs runtime directory (in its config too), and the store, scratch
    /// and key directories private on disk.
    #[test]
    fn the_backup_host_stages_in_memory() {
        let p = site();
        let b = bundle(&p, "backup", &[], "").unwrap();
        for pkg in ["mariadb-backup", "mariadb-client", "mariadb-server-core"] {
            assert!(b.packages.contains(&pkg), "{pkg}: {:?}", b.packages);
        }
        let unit = text(&b, "/etc/systemd/system/rampart-backup.service");
        assert!(
            unit.contains(
                "RuntimeDirectory=rampart/backup/backup-staging\nRuntimeDirectoryMode=0700\n"
            ),
            "{unit}"
        );
        let config = text(&b, "/var/lib/rampart/hosts/backup/backup.toml");
        assert!(
            config.contains("staging = \"/run/rampart/backup/backup-staging\""),
            "{config}"
        );
        for d in ["store", "scratch", "keys"] {
            let path = Path::new("/var/lib/rampart/hosts/backup").join(d);
            let dir = b.dirs.iter().find(|x| x.path == path);
            assert_eq!(dir.map(|d| d.mode), Some(0o700), "{d}");
        }
        assert!(!b.dirs.iter().any(|d| d.path.starts_with("/run")));
        assert!(!unit.contains("ReadWritePaths=/srv"), "{unit}");

        // A store on a disk of its own: private, writable by the service, in its config.
        let mut t = Topology::default_for(Mode::Isolated, 0);
        t.backup_store = Some(PathBuf::from("/srv/rampart-backup"));
        let p = plan(&t);
        let b = bundle(&p, "backup", &[], "").unwrap();
        let unit = text(&b, "/etc/systemd/system/rampart-backup.service");
        assert!(
            unit.contains("ReadWritePaths=/srv/rampart-backup\n"),
            "{unit}"
        );
        let dir = b
            .dirs
            .iter()
            .find(|d| d.path == Path::new("/srv/rampart-backup"));
        assert_eq!(dir.map(|d| d.mode), Some(0o700));
        let config = text(&b, "/var/lib/rampart/hosts/backup/backup.toml");
        assert!(config.contains("dir = \"/srv/rampart-backup\""), "{config}");
    }

    #[test]
    fn units_are_hardened_and_bind_only_what_they_must() {
        let p = site();
        let b = bundle(&p, "lb1", &[], "").unwrap();
        let lb = text(&b, "/etc/systemd/system/rampart-lb.service");
        for line in [
            "User=rampart",
            "ExecStart=/opt/rampart/bin/rampart lb --config /var/lib/rampart/hosts/lb1/lb.toml",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "Requires=rampart-lb.socket",
            "CapabilityBoundingSet=",
            "PrivateUsers=yes",
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
            "SystemCallFilter=@system-service",
            "LoadCredential=site.key:/var/lib/rampart/certs/site.key",
            "BindReadOnlyPaths=/run/credentials/rampart-lb.service/site.key:/var/lib/rampart/certs/site.key",
        ] {
            assert!(lb.lines().any(|l| l == line), "lb unit lacks {line}:\n{lb}");
        }
        // systemd binds the public ports: the load balancer needs no capability.
        assert!(!lb.contains("CAP_NET_BIND"), "{lb}");
        let socket = text(&b, "/etc/systemd/system/rampart-lb.socket");
        for line in [
            "ListenStream=203.0.113.10:443",
            "ListenStream=203.0.113.10:80",
            "Backlog=4096",
        ] {
            assert!(socket.lines().any(|l| l == line), "{line}:\n{socket}");
        }
        assert!(
            !socket.contains("FreeBind"),
            "one load balancer binds its own address"
        );
        let dns = bundle(&p, "dns", &[], "").unwrap();
        let dns = text(&dns, "/etc/systemd/system/rampart-dns.service");
        assert!(
            dns.contains("CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"),
            "{dns}"
        );
        // The agent reads the firewall's nflog group: CAP_NET_ADMIN over AF_NETLINK,
        // in the host's user namespace, and nothing more.
        // Its systemd collector asks systemd over the system bus.
        assert!(b.packages.contains(&"dbus"), "{:?}", b.packages);
        let agent = text(&b, "/etc/systemd/system/rampart-agent.service");
        for line in [
            "CapabilityBoundingSet=CAP_NET_ADMIN",
            "AmbientCapabilities=CAP_NET_ADMIN",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
            // The clock's state (timex) is a read with no capability to set it.
            "ProtectClock=no",
            "SystemCallFilter=adjtimex",
            "PrivateMounts=yes",
        ] {
            assert!(agent.lines().any(|l| l == line), "{agent}");
        }
        assert!(!agent.contains("CAP_SYS_TIME"), "{agent}");
        assert!(lb.lines().any(|l| l == "ProtectClock=yes"), "{lb}");
        assert!(!agent.contains("PrivateUsers"), "{agent}");
        assert!(!agent.contains("ProcSubset=pid"), "the agent reads /proc");
        // And the system journal, where the host's services write.
        assert!(
            agent
                .lines()
                .any(|l| l == "SupplementaryGroups=systemd-journal"),
            "{agent}"
        );
        let web = bundle(&p, "web1", &[], "").unwrap();
        let web = text(&web, "/etc/systemd/system/rampart-web.service");
        assert!(web.contains("ProcSubset=pid\n") && !web.contains("CAP_NET_BIND"));
    }

    #[test]
    fn agents_follow_their_hosts_units_in_the_journal() {
        let p = site();
        let config = |h: &str| {
            let b = bundle(&p, h, &[], "").unwrap();
            text(&b, &format!("/var/lib/rampart/hosts/{h}/agent.toml")).to_owned()
        };
        let parsed = |h: &str| -> toml::Value { toml::from_str(&config(h)).unwrap() };
        let units = |h: &str| -> Vec<(String, String)> {
            parsed(h)["logs"]["journal"]["units"]
                .as_table()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect()
        };
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter().map(|(a, b)| ((*a).into(), (*b).into())).collect()
        };
        assert_eq!(units("web1"), pairs(&[("rampart-web.service", "web")]));
        let db1 = units("db1");
        assert!(
            db1.contains(&("mariadb.service".into(), "keeper".into())),
            "{db1:?}"
        );
        let monitor = units("monitor");
        for want in [
            ("prometheus.service", "prometheus"),
            ("prometheus-alertmanager.service", "alertmanager"),
        ] {
            assert!(
                monitor.contains(&(want.0.into(), want.1.into())),
                "{want:?} in {monitor:?}"
            );
        }
        // Every unit a host runs (but the agent's own) is followed.
        for h in p.hosts.iter().filter(|h| h.service("agent").is_some()) {
            let mut want: Vec<String> = h
                .services
                .iter()
                .filter(|s| s.name != "agent")
                .filter_map(unit_of)
                .map(|u| u.unit)
                .collect();
            want.sort();
            let got: Vec<String> = units(&h.name).into_iter().map(|(u, _)| u).collect();
            assert_eq!(got, want, "{}", h.name);
        }
        // Files only where the services write them (access logs, MariaDB's own logs),
        // never the output files `rampart up` uses.
        let streams = |h: &str| -> Vec<String> {
            parsed(h)["logs"]
                .get("files")
                .and_then(toml::Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|f| {
                            format!(
                                "{}/{}",
                                f["service"].as_str().unwrap(),
                                f["stream"].as_str().unwrap()
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(streams("web1"), ["web/access"]);
        assert_eq!(streams("db1"), ["mariadb/error", "mariadb/slow"]);
        assert!(streams("monitor").is_empty(), "{:?}", streams("monitor"));
    }

    #[test]
    fn a_pairs_socket_binds_the_floating_address_with_freebind() {
        let site = crate::file::parse("site.toml", "[hosts]\nlb = 2\n").unwrap();
        let p = plan(&site.topology(Mode::Isolated, 0).unwrap());
        for lb in ["lb1", "lb2"] {
            let b = bundle(&p, lb, &[], "").unwrap();
            let socket = text(&b, "/etc/systemd/system/rampart-lb.socket");
            assert!(
                socket.contains("ListenStream=203.0.113.80:443\n"),
                "{socket}"
            );
            assert!(socket.contains("FreeBind=yes\n"), "{socket}");
        }
    }

    #[test]
    fn a_unit_restarts_only_for_its_own_files() {
        let p = site();
        let b = bundle(&p, "lb1", &[], "").unwrap();
        let on = |u: &str| -> Vec<String> {
            b.restart_on[u]
                .iter()
                .map(|p| p.display().to_string())
                .collect()
        };
        let lb = on("rampart-lb.service");
        for f in [
            BIN,
            "/etc/systemd/system/rampart-lb.service",
            "/var/lib/rampart/hosts/lb1/lb.toml",
            "/var/lib/rampart/certs/ca.pem",
        ] {
            assert!(lb.iter().any(|p| p == f), "{f} not in {lb:?}");
        }
        // A renewed certificate is loaded at the next handshake, without a restart.
        for f in [
            "/var/lib/rampart/certs/site.key",
            "/var/lib/rampart/certs/site.pem",
        ] {
            assert!(!lb.iter().any(|p| p == f), "{f} in {lb:?}");
        }
        assert!(!lb.iter().any(|p| p.contains("etcd")), "{lb:?}");
        // etcd is Debian's: a new rampart binary does not restart it.
        let etcd = on("etcd.service");
        assert!(!etcd.iter().any(|p| p == BIN), "{etcd:?}");
        assert!(etcd
            .iter()
            .any(|p| p.ends_with("etcd.service.d/rampart.conf")));
        assert_eq!(
            on("rampart-lb.socket"),
            ["/etc/systemd/system/rampart-lb.socket"]
        );
        let db = bundle(&p, "db1", &[], "").unwrap();
        assert!(db.restart_on["mariadb.service"].contains(&PathBuf::from(BIN)));
        assert!(db.keeper.is_some() && b.keeper.is_none());
    }

    /// `[monitor] rules` on real hosts: the monitor's bundle carries each extra rules
    /// file beside `rules.yml` (root's, 0644, like every config) and Prometheus restarts
    /// when one changes.
    #[test]
    fn extra_rules_files_ship_to_the_monitor() {
        let mut t = Topology::default_for(Mode::Isolated, 0);
        t.monitor_rules = vec![crate::RuleFile {
            name: crate::monitor::extra_rules_name(0, "node-mixin/alerts.yaml"),
            source: "node-mixin/alerts.yaml".into(),
            contents: "groups: []\n".into(),
        }];
        let p = plan(&t);
        let b = bundle(&p, "monitor", &[], "").unwrap();
        let path = "/var/lib/rampart/hosts/monitor/rules-extra-1-alerts.yaml";
        assert_eq!(text(&b, path), "groups: []\n");
        let f = b.files.iter().find(|f| f.path == Path::new(path)).unwrap();
        assert_eq!((f.mode, f.owner, f.secret), (0o644, "root", false));
        assert!(text(&b, "/var/lib/rampart/hosts/monitor/prometheus.yml")
            .contains(&format!("  - \"{path}\"\n")));
        assert!(b.restart_on["prometheus.service"].contains(&PathBuf::from(path)));
        let web = bundle(&p, "web1", &[], "").unwrap();
        assert!(!web.files.iter().any(|f| f.path == Path::new(path)));
    }

    #[test]
    fn packaged_services_get_drop_ins_with_the_plans_command_line() {
        let p = site();
        let db = bundle(&p, "db1", &["/usr/bin/setpriv".into(), "--x=%y".into()], "").unwrap();
        let d = text(&db, "/etc/systemd/system/mariadb.service.d/rampart.conf");
        assert!(
            d.contains("ExecStart=\nExecStart=/opt/rampart/bin/rampart keeper --config /var/lib/rampart/hosts/db1/keeper.toml -- /usr/bin/setpriv --x=%%y\n"),
            "{d}"
        );
        assert!(
            d.contains("ExecStartPre=\n") && d.contains("Type=exec\n"),
            "{d}"
        );
        assert!(db.packages.contains(&"mariadb-server"));
        let m = bundle(&p, "monitor", &[], "").unwrap();
        let prom = text(&m, "/etc/systemd/system/prometheus.service.d/rampart.conf");
        assert!(prom.contains("ExecStart=\nExecStart=/usr/bin/prometheus --config.file=/var/lib/rampart/hosts/monitor/"), "{prom}");
        let etcd = text(&m, "/etc/systemd/system/etcd.service.d/rampart.conf");
        assert!(etcd.contains("LoadCredential=etcd-server.key:"), "{etcd}");
        for pkg in [
            "etcd-server",
            "prometheus",
            "prometheus-alertmanager",
            "nftables",
        ] {
            assert!(m.packages.contains(&pkg), "{pkg}: {:?}", m.packages);
        }
    }

    #[test]
    fn keys_and_secrets_are_0600_and_owned_by_their_only_user() {
        let p = site();
        for h in ["lb1", "web1", "db1", "monitor", "dns"] {
            let b = bundle(&p, h, &[], "").unwrap();
            for f in &b.files {
                let name = f.path.display().to_string();
                if name.ends_with(".key") || name.contains("/secrets/") {
                    assert!(f.secret && f.mode == 0o600, "{h}: {name} {:o}", f.mode);
                }
            }
        }
        let web = bundle(&p, "web1", &[], "").unwrap();
        let key = web
            .files
            .iter()
            .find(|f| f.path == Path::new("/var/lib/rampart/certs/web1.key"))
            .unwrap();
        assert_eq!(key.owner, "rampart");
        // On a database host everything runs as mysql, which owns every key there.
        let db = bundle(&p, "db1", &[], "").unwrap();
        assert!(db
            .files
            .iter()
            .filter(|f| f.secret)
            .all(|f| f.owner == "mysql"));
        assert!(
            db.units.iter().all(|(u, _)| u.user == "mysql"),
            "{:?}",
            db.units
        );
        let lb = bundle(&p, "lb1", &[], "").unwrap();
        let owner = |path: &str| {
            lb.files
                .iter()
                .find(|f| f.path == Path::new(path))
                .unwrap()
                .owner
        };
        assert_eq!(owner("/var/lib/rampart/hosts/lb1/etcd-server.key"), "etcd");
        assert_eq!(owner("/var/lib/rampart/certs/site.key"), "rampart");
    }

    #[test]
    fn the_firewall_is_the_plans_ruleset() {
        let p = site();
        let b = bundle(&p, "web1", &[], "").unwrap();
        assert_eq!(
            text(&b, FIREWALL_FILE),
            p.host("web1").unwrap().firewall.as_deref().unwrap()
        );
    }

    #[test]
    fn exec_lines_quote_and_escape() {
        let check = |argv: &[&str], want: &str| {
            let v: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
            assert_eq!(exec_line(&v), want);
        };
        check(&["/bin/a", "b"], "/bin/a b");
        check(&["/bin/a", "x y"], "/bin/a \"x y\"");
        check(&["/bin/a", "50%", "$HOME"], "/bin/a 50%% $$HOME");
        check(&["/bin/a", ""], "/bin/a \"\"");
    }
}

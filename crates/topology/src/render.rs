//! Renders each host's service config from the topology: a pure function from topology
//! and state directory to TOML text, so `rampart up` and (later) `rampart render` write
//! the same files and tests can check them without starting anything.
//!
//! Choices for the built-in topology: the load balancer names the chosen backend in
//! `X-Served-By` and the web servers name the database role in `X-Db-Role`, so a user can
//! watch round robin and the read/write split; traffic from the load balancer to the web
//! servers is mutual TLS with the local CA; the web servers accept connections only from
//! the load balancer's address.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::accounts::{
    secret_file, APP_USER, BACKUP_USER, KEEPER_USER, MIGRATE_USER, MONITOR_USER, REPL_USER,
};
use crate::{Host, Mode, Role, Segment, Topology};

/// Where things live in the state directory. Every path `rampart up` uses comes from
/// here.
#[derive(Clone, Debug)]
pub struct StatePaths {
    pub root: PathBuf,
}

impl StatePaths {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }
    pub fn certs(&self) -> PathBuf {
        self.root.join("certs")
    }
    pub fn ca(&self) -> PathBuf {
        self.certs().join("ca.pem")
    }
    pub fn secrets(&self) -> PathBuf {
        self.root.join("secrets")
    }
    pub fn host(&self, name: &str) -> PathBuf {
        self.root.join("hosts").join(name)
    }
    /// An etcd member's data directory (0700): `hosts/<host>/etcd`.
    pub fn etcd_data(&self, host: &str) -> PathBuf {
        self.host(host).join("etcd")
    }
    /// An etcd member's certificate and key, `hosts/<host>/etcd-server.pem` and `.key`
    /// (0600): serverAuth and clientAuth (its peers verify it both ways, and its own
    /// gateway dials its client port with it), the member's address as IP SAN.
    pub fn etcd_server_cert(&self, host: &str) -> (PathBuf, PathBuf) {
        self.host_cert(host, ETCD_SERVER_STEM)
    }
    /// A host's etcd client certificate and key, `hosts/<host>/etcd-client.pem` and
    /// `.key` (0600), clientAuth only, for every host of
    /// [`Topology::etcd_clients`](crate::Topology::etcd_clients). An etcd client
    /// verifies the members against [`StatePaths::ca`].
    pub fn etcd_client_cert(&self, host: &str) -> (PathBuf, PathBuf) {
        self.host_cert(host, ETCD_CLIENT_STEM)
    }
    /// A host's agent certificate and key, `hosts/<host>/agent.pem` and `.key` (0600),
    /// clientAuth only, named after the host: its credentials at the ingest gate.
    pub fn agent_cert(&self, host: &str) -> (PathBuf, PathBuf) {
        self.host_cert(host, AGENT_CERT_STEM)
    }
    /// The monitoring plane's CA directory (`certs/plane`: `ca.pem`, `ca.key`), apart
    /// from the run's CA.
    pub fn plane_ca_dir(&self) -> PathBuf {
        self.certs().join("plane")
    }
    /// The monitoring plane CA's certificate as Prometheus and Alertmanager read it:
    /// `certs/plane-ca.pem`, a copy of `certs/plane/ca.pem` next to the run's CA.
    pub fn plane_ca(&self) -> PathBuf {
        self.certs().join("plane-ca.pem")
    }
    /// A monitoring plane client's certificate and key on the monitor host
    /// (`hosts/<monitor>/plane-<who>.pem`): `who` is one of [`PLANE_CLIENTS`].
    pub fn plane_cert(&self, monitor: &str, who: &str) -> (PathBuf, PathBuf) {
        self.host_cert(monitor, &plane_stem(who))
    }
    fn host_cert(&self, host: &str, stem: &str) -> (PathBuf, PathBuf) {
        let dir = self.host(host);
        (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        )
    }
}

/// The stem of an etcd member's certificate in its host's directory.
pub const ETCD_SERVER_STEM: &str = "etcd-server";
/// The stem of an etcd client host's certificate in its host's directory.
pub const ETCD_CLIENT_STEM: &str = "etcd-client";
/// The stem of a host's agent certificate in its host's directory.
pub const AGENT_CERT_STEM: &str = "agent";
/// The monitoring plane's clients: the gate writes to Prometheus, the dashboard queries
/// it, Prometheus sends alerts to Alertmanager.
pub const PLANE_CLIENTS: [&str; 3] = ["gate", "dashboard", "prometheus"];
/// The stem of a monitoring plane client's certificate.
pub fn plane_stem(who: &str) -> String {
    format!("plane-{who}")
}

/// Quotes a string as a TOML basic string: the YAML double-quoted scalar of the monitor
/// configs is one too (the same escapes), so both file kinds share one quoting.
use crate::monitor::yaml_str as q;

/// A service's config file, written key by key so that every value is quoted, every
/// path and list is written the same way, and tables are separated alike.
struct Toml(String);

impl Toml {
    fn new() -> Toml {
        Toml("# Written by `rampart up` from the topology; rewritten on every start.\n".into())
    }

    fn line(&mut self, text: std::fmt::Arguments<'_>) -> &mut Toml {
        let _ = self.0.write_fmt(text);
        self.0.push('\n');
        self
    }

    /// Starts `[name]` (or `[[name]]` for an array of tables, `name` given with its
    /// brackets) after a blank line.
    fn table(&mut self, name: &str) -> &mut Toml {
        let header = if name.starts_with('[') {
            name.to_owned()
        } else {
            format!("[{name}]")
        };
        self.line(format_args!("\n{header}"))
    }

    /// `key = "value"`.
    fn str(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Toml {
        self.line(format_args!("{key} = {}", q(&value.to_string())))
    }

    /// `key = "path"`.
    fn path(&mut self, key: &str, value: &Path) -> &mut Toml {
        self.str(key, value.display())
    }

    /// `key = ["a", "b"]`.
    fn list(&mut self, key: &str, items: &[String]) -> &mut Toml {
        let quoted: Vec<String> = items.iter().map(|i| q(i)).collect();
        self.line(format_args!("{key} = [{}]", quoted.join(", ")))
    }

    /// `key = value` for numbers and booleans.
    fn raw(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Toml {
        self.line(format_args!("{key} = {value}"))
    }

    fn comment(&mut self, text: &str) -> &mut Toml {
        for l in text.lines() {
            self.line(format_args!("# {l}"));
        }
        self
    }

    fn finish(&mut self) -> String {
        std::mem::take(&mut self.0)
    }
}

/// The sources the policy lets open `port` on `host`, as listener allow-list entries
/// (their addresses as `host` sees them), or `None` when anyone may.
fn policy_sources(t: &Topology, host: &Host, port: u16) -> Option<Vec<String>> {
    let flows: Vec<_> = t
        .policy()
        .flows
        .into_iter()
        .filter(|f| f.to == host.name && f.port == port)
        .collect();
    if flows.iter().any(|f| f.from == crate::policy::From::Anyone) {
        return None;
    }
    let mut v: Vec<String> = flows
        .iter()
        .flat_map(|f| {
            t.sources(f)
                .into_iter()
                .map(move |h| t.source_addr(h, f.segment).to_string())
        })
        .collect();
    v.sort();
    v.dedup();
    Some(v)
}

/// The host itself, as its own listeners see it: metrics, health and admin listeners are
/// for the host (its agent, rampart's probes, the operator's forward).
fn itself(t: &Topology, host: &Host) -> Vec<String> {
    vec![t.source_addr(host, Segment::Mgmt).to_string()]
}

/// A host's certificate and key in the state directory.
fn cert_and_key(state: &StatePaths, stem: &str) -> (PathBuf, PathBuf) {
    let certs = state.certs();
    (
        certs.join(format!("{stem}.pem")),
        certs.join(format!("{stem}.key")),
    )
}

/// The `rampart web` config of `host`.
pub fn web_config(t: &Topology, host: &Host, state: &StatePaths) -> String {
    let dir = state.host(&host.name);
    let secrets = state.secrets();
    let (cert, key) = cert_and_key(state, &host.name);
    let db = |role| {
        t.with_role(role)
            .next()
            .map(|h| t.sock(h, Segment::Data, t.ports.db))
    };
    let mut s = Toml::new();
    s.str("name", &host.name)
        .table("listen")
        .str("app", t.sock(host, Segment::App, t.ports.web))
        .str("admin", t.sock(host, Segment::Mgmt, t.ports.web_admin))
        .list(
            "allow_from",
            &policy_sources(t, host, t.ports.web).unwrap_or_default(),
        )
        .list("admin_allow_from", &itself(t, host))
        .table("tls")
        .path("cert", &cert)
        .path("key", &key)
        .path("client_ca", &state.ca())
        .table("site")
        .path("root", &dir.join("site"))
        .raw("install_default", true);
    if db(Role::DbPrimary).is_some() {
        // The primary is whoever the keepers' leader key names (see keeper_config).
        s.table("database")
            .path("password_file", &secrets.join(secret_file(APP_USER)))
            .str("migrate_user", MIGRATE_USER)
            .path(
                "migrate_password_file",
                &secrets.join(secret_file(MIGRATE_USER)),
            )
            .raw("role_header", true)
            .path("ca", &state.ca());
        for server in database_hosts(t) {
            s.table("[[database.servers]]")
                .str("host", &server.name)
                .str("addr", t.sock(server, Segment::Data, t.ports.db));
        }
        let (cert, key) = state.etcd_client_cert(&host.name);
        s.table("database.etcd")
            .list("endpoints", &t.etcd_endpoints())
            .path("ca", &state.ca())
            .path("cert", &cert)
            .path("key", &key)
            .str("leader_key", format_args!("{DB_PREFIX}leader"));
    }
    s.table("log")
        .path("access_log", &dir.join("access.log"))
        .finish()
}

/// Where the keepers keep the database tier's keys in etcd (`leader`, `sync`,
/// `members/<host>`).
pub const DB_PREFIX: &str = "/rampart/db/";

/// The database hosts, the initial primary first.
fn database_hosts(t: &Topology) -> impl Iterator<Item = &Host> {
    t.with_role(Role::DbPrimary)
        .chain(t.with_role(Role::DbReplica))
}

/// How the keepers fail over (`rampart up --failover-quiet-period`, and the failover
/// test's negative control).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failover {
    /// After an automatic failover, another one is refused for this long.
    pub quiet_period: std::time::Duration,
    /// Test only: restores semi-sync's timeout fallback (which can lose acknowledged
    /// writes). `None`: the primary waits for its sync standby forever.
    pub semi_sync_fallback: Option<std::time::Duration>,
}

impl Default for Failover {
    fn default() -> Self {
        Failover {
            quiet_period: std::time::Duration::from_secs(300),
            semi_sync_fallback: None,
        }
    }
}

/// The `rampart keeper` config of database host `host`, whose server's base id is
/// `server_id`: its status listener (its own host only), its server and accounts, the
/// other database servers, the etcd cluster and its client certificate. The initial
/// primary is the bootstrap host. With a backup host, the keeper also serves it the
/// backup source (server `socket`, data directory `<host dir>/data`) and lets it read its
/// status (which server leads).
pub fn keeper_config(
    t: &Topology,
    host: &Host,
    state: &StatePaths,
    server_id: u32,
    failover: &Failover,
    socket: &Path,
) -> String {
    let secrets = state.secrets();
    let (cert, key) = state.etcd_client_cert(&host.name);
    let backup = t.with_role(Role::Backup).next();
    let mut status_from = itself(t, host);
    if let Some(b) = backup {
        status_from.push(t.source_addr(b, Segment::Mgmt).to_string());
        status_from.sort();
        status_from.dedup();
    }
    let mut s = Toml::new();
    s.str("host", &host.name)
        .raw("server_id", server_id)
        .raw("bootstrap", host.role == Role::DbPrimary)
        .table("listen")
        .str("status", t.sock(host, Segment::Mgmt, t.ports.keeper))
        .list("allow_from", &status_from)
        .table("mariadb")
        .str("addr", t.sock(host, Segment::Data, t.ports.db))
        .str("user", KEEPER_USER)
        .path("password_file", &secrets.join(secret_file(KEEPER_USER)))
        .str("repl_user", REPL_USER)
        .path("repl_password_file", &secrets.join(secret_file(REPL_USER)))
        .path("ca", &state.ca())
        .list("app_users", &[APP_USER.to_owned(), MIGRATE_USER.to_owned()]);
    for (i, peer) in database_hosts(t).enumerate() {
        if peer.name != host.name {
            s.table("[[peers]]")
                .str("host", &peer.name)
                .raw("server_id", i + 1)
                .str("addr", t.sock(peer, Segment::Data, t.ports.db));
        }
    }
    s.table("etcd")
        .list("endpoints", &t.etcd_endpoints())
        .path("ca", &state.ca())
        .path("cert", &cert)
        .path("key", &key)
        .str("prefix", DB_PREFIX);
    s.table("failover").str(
        "quiet_period",
        format_args!("{}s", failover.quiet_period.as_secs()),
    );
    if let Some(fallback) = failover.semi_sync_fallback {
        s.str(
            "semi_sync_fallback",
            format_args!("{}ms", fallback.as_millis()),
        );
    }
    if let Some(b) = backup {
        let dir = state.host(&host.name);
        let (cert, key) = cert_and_key(state, &host.name);
        s.table("backup")
            .comment(
                "mariadb-backup streams for the backup host (mutual TLS, its certificate only).",
            )
            .str("listen", t.sock(host, Segment::Data, t.ports.backup_source))
            .list("allow_from", &[t.source_addr(b, Segment::Data).to_string()])
            .path("cert", &cert)
            .path("key", &key)
            .path("ca", &state.ca())
            .list("clients", std::slice::from_ref(&b.name))
            .path("socket", socket)
            .path("datadir", &dir.join("data"))
            .path("workdir", &dir.join("backup-work"));
    }
    s.finish()
}

/// Where backup host `host` keeps its store: the topology's `[backup] store`, or
/// `store/` in its directory.
pub fn backup_store(t: &Topology, state: &StatePaths, host: &Host) -> PathBuf {
    t.backup_store
        .clone()
        .unwrap_or_else(|| state.host(&host.name).join("store"))
}

/// The `rampart backup serve` config of backup host `host`: its status listener (its own
/// host only), the store under its directory (sealed files; the key beside it, never
/// inside), `staging` for the plaintext binlog being archived (a tmpfs), the schedule's
/// defaults (daily full, hourly incremental, daily verify), the
/// archive's account over verified TLS, its client certificate for the keepers' backup
/// sources, and every database server with its keeper.
pub fn backup_config(t: &Topology, host: &Host, state: &StatePaths, staging: &Path) -> String {
    let dir = state.host(&host.name);
    let (cert, key) = cert_and_key(state, &host.name);
    let mut s = Toml::new();
    s.str("host", &host.name)
        .table("listen")
        .str("status", t.sock(host, Segment::Mgmt, t.ports.backup_status))
        .list("allow_from", &itself(t, host))
        .table("store")
        .path("dir", &backup_store(t, state, host))
        .path("key_file", &dir.join("keys").join("backup.key"))
        .path("staging", staging)
        .path("scratch", &dir.join("scratch"))
        .raw("keep_full", 7)
        .str("max_age", "14d")
        .table("schedule")
        .str("full_every", "24h")
        .str("incremental_every", "1h")
        .str("verify_every", "24h")
        .table("archive")
        .str("user", BACKUP_USER)
        .path(
            "password_file",
            &state.secrets().join(secret_file(BACKUP_USER)),
        )
        .path("ca", &state.ca())
        .str("tick", "1s")
        .table("tls")
        .path("ca", &state.ca())
        .path("cert", &cert)
        .path("key", &key);
    for db in database_hosts(t) {
        s.table("[[servers]]")
            .str("host", &db.name)
            .str("mysql", t.sock(db, Segment::Data, t.ports.db))
            .str("keeper", t.sock(db, Segment::Mgmt, t.ports.keeper))
            .str("source", t.sock(db, Segment::Data, t.ports.backup_source));
    }
    s.finish()
}

/// The `rampart lb` config of `host`.
pub fn lb_config(t: &Topology, host: &Host, state: &StatePaths) -> String {
    let dir = state.host(&host.name);
    // With `[acme]`, each load balancer keeps its own pair, which it orders and renews;
    // else the run's CA issues the one all serve.
    let (site_cert, site_key) = match &t.acme {
        Some(_) => lb_acme_pair(state, host),
        None => cert_and_key(state, "site"),
    };
    let (cert, key) = cert_and_key(state, &host.name);
    let mut s = Toml::new();
    // A pair serves the floating address, bound before keepalived gives it to this
    // side (freebind): whichever holds it answers at once.
    let public = match t.vip.filter(|_| t.lb_peer(host).is_some()) {
        Some(vip) => std::net::IpAddr::from(vip),
        None => t.addr(host, Segment::Public),
    };
    s.table("listen")
        .str("https", std::net::SocketAddr::new(public, t.ports.lb_https))
        .str("http", std::net::SocketAddr::new(public, t.ports.lb_http))
        .str("admin", t.sock(host, Segment::Mgmt, t.ports.lb_admin));
    if public != t.addr(host, Segment::Public) {
        s.raw("freebind", true);
        // The other load balancer relays ACME challenges to this one's own address.
        if t.acme.is_some() {
            s.str(
                "http_own",
                std::net::SocketAddr::new(t.addr(host, Segment::Public), t.ports.lb_http),
            );
        }
    }
    // The public ports follow the policy (anyone, by default); the admin listener
    // (metrics, reload) is for the host itself: the policy opens it to no one.
    if let Some(public) = policy_sources(t, host, t.ports.lb_https) {
        s.list("allow_from", &public);
    }
    s.list("admin_allow_from", &itself(t, host))
        .table("[[tls.certificates]]")
        .path("cert", &site_cert)
        .path("key", &site_key)
        .table("balance")
        .str("served_by_header", "X-Served-By");
    for web in t.with_role(Role::Web) {
        s.table("[[backends]]")
            .str("name", &web.name)
            .str("address", t.sock(web, Segment::App, t.ports.web))
            .raw("tls", true)
            .str("tls_server_name", &web.name);
    }
    s.table("backend_tls")
        .path("ca", &state.ca())
        .path("client_cert", &cert)
        .path("client_key", &key)
        .table("health")
        .str("path", "/healthz")
        .str("interval", "1s")
        .raw("fall", 2);
    if t.mode == Mode::Local {
        s.table("limits")
            .comment(
                "Local mode: every client arrives from 127.0.0.1, so a per-client rate limit\n\
                 would be one bucket for everyone; it is off here and on in isolated mode.",
            )
            .raw("rate_limit_per_second", "0.0");
    }
    waf_tables(&mut s);
    if let Some(acme) = &t.acme {
        acme_table(&mut s, t, host, state, acme);
    }
    s.table("log")
        .path("access_log", &dir.join("access.log"))
        .finish()
}

/// A load balancer's ACME directory (0700, its own): the account's credentials and the
/// site pair it orders.
pub fn lb_acme_dir(state: &StatePaths, host: &Host) -> PathBuf {
    state.host(&host.name).join("acme")
}

/// The site pair a load balancer serves under `[acme]`: `acme/site.pem` and its key.
pub fn lb_acme_pair(state: &StatePaths, host: &Host) -> (PathBuf, PathBuf) {
    let dir = lb_acme_dir(state, host);
    (dir.join("site.pem"), dir.join("site.key"))
}

/// `[acme]` of a load balancer's config: the site's names from the topology's CA, its
/// account in its own directory, and the other load balancers' own plain-HTTP
/// listeners as peers for the challenges the floating address brings to the wrong one.
fn acme_table(s: &mut Toml, t: &Topology, host: &Host, state: &StatePaths, acme: &crate::Acme) {
    let peers: Vec<String> = t
        .with_role(Role::Lb)
        .filter(|o| o.name != host.name && t.vip.is_some())
        .map(|o| std::net::SocketAddr::new(t.addr(o, Segment::Public), t.ports.lb_http).to_string())
        .collect();
    s.table("acme")
        .comment("The site certificate from an ACME CA (the topology's [acme]), over HTTP-01.")
        .str("directory", &acme.directory)
        .list("contact", &acme.contact)
        .path("account", &lb_acme_dir(state, host).join("account.json"))
        .list("names", &t.site_names);
    if let Some(ca) = &acme.ca {
        s.path("directory_ca", ca);
    }
    if !peers.is_empty() {
        s.list("peers", &peers);
    }
    for (k, v) in [
        ("check_every", acme.check_every),
        ("retry_min", acme.retry_min),
        ("retry_max", acme.retry_max),
    ] {
        if let Some(v) = v {
            s.str(k, format_args!("{v}s"));
        }
    }
}

/// The built-in topology's WAF: Debian's CRS 3.3.4 (the `modsecurity-crs` package) in
/// block mode at paranoia level 1, with the foobar application's one exclusion.
fn waf_tables(s: &mut Toml) {
    s.table("waf")
        .comment(
            "The OWASP Core Rule Set from Debian's modsecurity-crs, blocking at paranoia level 1.",
        )
        .str("mode", "block")
        .raw("paranoia_level", 1)
        .comment(
            "The API parses bodies with the same strict JSON parser as the WAF: what the WAF\n\
             cannot parse, the API refuses itself with its documented 400 `malformed_json`.\n\
             The WAF still inspects such a body, as raw text.",
        )
        .str("body_error", "pass")
        .table("[[waf.exclusions]]")
        .comment(
            "A message's body is free text: people write quotes, dashes and SQL words in prose\n\
             (\"I'll take the 'select' menu -- ok?\" scores as SQL injection, 942190). The\n\
             application stores it through a prepared statement with bound parameters and\n\
             escapes it in HTML, so the SQL injection rules are taken off that one field;\n\
             every other rule, XSS included, still inspects it.",
        )
        .str("path_prefix", "/api/messages")
        .list("tags", &["attack-sqli".to_owned()])
        .list("targets", &["ARGS:json.body".to_owned()])
        .str(
            "reason",
            "message bodies are free text stored with bound parameters and escaped on output",
        );
}

/// A log file a host's agent ships, with its labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFile {
    pub path: PathBuf,
    pub service: String,
    /// `log` for a service's own output, `access` for an access log.
    pub stream: &'static str,
}

/// How often agents collect and push, and how fast the rules react: production values,
/// or short ones for demos and tests (`rampart up --fast-monitor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// 15 s agent interval (node_exporter's usual scrape interval).
    Production,
    /// 2 s agent interval, so a test sees a change within seconds.
    Fast,
}

/// The `rampart agent` config of `host`: host metrics; the local services' `/metrics`
/// and access logs; on a database host its health over `mysql_socket` as the monitoring
/// user; pushed to the monitor host's Prometheus. It ships `logs` and the journal
/// entries of `journal`'s units (unit → `service` label) to the log store.
#[allow(clippy::too_many_arguments)]
pub fn agent_config(
    t: &Topology,
    host: &Host,
    state: &StatePaths,
    mysql_socket: Option<&Path>,
    pace: Pace,
    certificates: &[PathBuf],
    logs: &[LogFile],
    journal: &std::collections::BTreeMap<String, String>,
    cgroup: bool,
) -> String {
    let dir = state.host(&host.name);
    let mut s = Toml::new();
    s.table("agent")
        .str("instance", &host.name)
        .str(
            "interval",
            match pace {
                Pace::Production => "15s",
                Pace::Fast => "2s",
            },
        )
        .path("state_dir", &dir.join("agent"));
    if let Some(monitor) = t.with_role(Role::Monitor).next() {
        // Through the ingest gate, with this host's own certificate.
        let ingest = t.sock(monitor, Segment::Mgmt, t.ports.prometheus);
        let (cert, key) = state.agent_cert(&host.name);
        s.table("push")
            .str("url", format_args!("https://{ingest}/api/v1/write"))
            .path("ca", &state.ca())
            .path("cert", &cert)
            .path("key", &key);
    }
    s.table("listen")
        .str(
            "metrics",
            t.sock(host, Segment::Mgmt, t.ports.agent_metrics),
        )
        .list("allow_from", &itself(t, host));
    if cgroup {
        // The host's CPU and memory from its cgroup, not the machine's.
        s.table("host").raw("cgroup", true);
    }
    let service = match host.role {
        Role::Web => Some(("web", t.ports.web_admin)),
        Role::Lb => Some(("lb", t.ports.lb_admin)),
        _ => None,
    };
    if let Some((job, admin)) = service {
        let admin = t.sock(host, Segment::Mgmt, admin);
        s.table("[[scrape]]")
            .str("job", job)
            .str("url", format_args!("http://{admin}/metrics"))
            .table("[[access_log]]")
            .str("service", job)
            .path("path", &dir.join("access.log"));
    }
    if !certificates.is_empty() {
        // Every certificate the host's services use, for CertificateExpiringSoon.
        let files: Vec<String> = certificates
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        s.table("certificates").list("files", &files);
    }
    if host.role == Role::Lb && t.mode == crate::Mode::Isolated && t.lb_peer(host).is_some() {
        // Which of the pair holds the floating address.
        s.table("vrrp")
            .path("state_file", &dir.join(VRRP_STATE_FILE));
    }
    if host.role == Role::Monitor {
        // The dashboard's requests, logins, sessions, webhook calls and queries.
        let metrics = t.sock(host, Segment::Mgmt, t.ports.dashboard_metrics);
        s.table("[[scrape]]")
            .str("job", "dashboard")
            .str("url", format_args!("http://{metrics}/metrics"));
        // The ingest gate's writes forwarded and refused, by host and outcome.
        let gate = t.sock(host, Segment::Mgmt, t.ports.gate_metrics);
        s.table("[[scrape]]")
            .str("job", "gate")
            .str("url", format_args!("http://{gate}/metrics"));
        // The log store's ingest, queries, size and retention.
        let logs = t.sock(host, Segment::Mgmt, t.ports.logs_metrics);
        s.table("[[scrape]]")
            .str("job", "logs")
            .str("url", format_args!("http://{logs}/metrics"));
    }
    if host.role == Role::Backup {
        // Backup ages, sizes and durations, the archive's lag, verify results.
        let status = t.sock(host, Segment::Mgmt, t.ports.backup_status);
        s.table("[[scrape]]")
            .str("job", "backup")
            .str("url", format_args!("http://{status}/metrics"));
    }
    if matches!(host.role, Role::DbPrimary | Role::DbReplica) {
        // The keeper's role, epoch, sync standby and semi-sync state.
        let status = t.sock(host, Segment::Mgmt, t.ports.keeper);
        s.table("[[scrape]]")
            .str("job", "keeper")
            .str("url", format_args!("http://{status}/metrics"));
    }
    if let (Role::DbPrimary | Role::DbReplica, Some(_)) = (host.role, mysql_socket) {
        // Over TLS to the server's own address: the server requires secure transport,
        // and every monitoring session is encrypted and verified.
        s.table("mysql")
            .str("addr", t.sock(host, Segment::Data, t.ports.db))
            .path("ca", &state.ca())
            .str("user", MONITOR_USER)
            .path(
                "password_file",
                &state.secrets().join(secret_file(MONITOR_USER)),
            );
    }
    let shipped = !logs.is_empty() || !journal.is_empty();
    if let (Some(monitor), true) = (t.with_role(Role::Monitor).next(), shipped) {
        // Lines through the same gate, as Loki pushes.
        let ingest = t.sock(monitor, Segment::Mgmt, t.ports.prometheus);
        s.table("logs")
            .str("url", format_args!("https://{ingest}/loki/api/v1/push"))
            .str(
                "poll",
                match pace {
                    Pace::Production => "1s",
                    Pace::Fast => "500ms",
                },
            );
        for f in logs {
            s.table("[[logs.files]]")
                .path("path", &f.path)
                .str("service", &f.service)
                .str("stream", f.stream);
        }
        if !journal.is_empty() {
            // The host's units' output, from the systemd journal.
            s.table("logs.journal.units");
            for (unit, service) in journal {
                s.str(&q(unit), service);
            }
        }
        if t.mode == Mode::Isolated {
            // The ruleset's drops (nflog group 1) as events, with the site's addresses
            // named.
            s.table("logs.firewall")
                .raw("group", crate::nft::LOG_GROUP)
                .table("logs.firewall.hosts");
            let mut named: Vec<(std::net::IpAddr, &str)> = t
                .hosts
                .iter()
                .flat_map(|h| {
                    h.segments
                        .iter()
                        .map(move |(_, a)| (std::net::IpAddr::V4(*a), h.name.as_str()))
                })
                .collect();
            named.sort();
            named.dedup_by_key(|(a, _)| *a);
            for (addr, name) in named {
                s.str(&q(&addr.to_string()), name);
            }
        }
    }
    s.finish()
}

/// The address Alertmanager listens on: the monitor host's loopback in isolated mode
/// (only Prometheus, on the same host, talks to it), its own loopback address in local
/// mode.
pub fn alertmanager_addr(t: &Topology, monitor: &Host) -> std::net::SocketAddr {
    match t.mode {
        Mode::Isolated => std::net::SocketAddr::from(([127, 0, 0, 1], t.ports.alertmanager)),
        Mode::Local => std::net::SocketAddr::new(monitor.local.into(), t.ports.alertmanager),
    }
}

/// Where Prometheus listens: only the monitor host reaches it (the gate and the
/// dashboard), on loopback in isolated mode and on the monitor's own loopback address
/// in local mode, with TLS and the monitoring plane's client certificates required.
pub fn prometheus_addr(t: &Topology, monitor: &Host) -> std::net::SocketAddr {
    match t.mode {
        Mode::Isolated => std::net::SocketAddr::from(([127, 0, 0, 1], t.ports.prometheus_internal)),
        Mode::Local => std::net::SocketAddr::new(monitor.local.into(), t.ports.prometheus_internal),
    }
}

/// Where the log store listens: like Prometheus, only where the monitor host reaches it.
pub fn logs_addr(t: &Topology, monitor: &Host) -> std::net::SocketAddr {
    match t.mode {
        Mode::Isolated => std::net::SocketAddr::from(([127, 0, 0, 1], t.ports.logs)),
        Mode::Local => std::net::SocketAddr::new(monitor.local.into(), t.ports.logs),
    }
}

/// The log store's directory on the monitor host (its database).
pub fn logs_dir(state: &StatePaths, monitor: &Host) -> PathBuf {
    state.host(&monitor.name).join("logs")
}

/// The `rampart logs` config of the monitor host: TLS with the monitor's certificate,
/// clients of the monitoring plane's CA only (the gate, the dashboard), the store in
/// its own directory with the default retention (14 days, 2 GiB).
pub fn logs_config(t: &Topology, host: &Host, state: &StatePaths) -> String {
    let (cert, key) = cert_and_key(state, &host.name);
    Toml::new()
        .table("listen")
        .str("addr", logs_addr(t, host))
        .str("metrics", t.sock(host, Segment::Mgmt, t.ports.logs_metrics))
        .list("metrics_allow_from", &itself(t, host))
        .table("tls")
        .path("cert", &cert)
        .path("key", &key)
        .path("client_ca", &state.plane_ca())
        .table("store")
        .path("path", &logs_dir(state, host).join("logs.db"))
        .finish()
}

/// The ingest gate's config: agents' remote write on the monitor's management address
/// (where Prometheus used to take it), each host's certificate of the run's CA
/// required; accepted writes go to Prometheus with the gate's plane certificate.
pub fn gate_config(t: &Topology, host: &Host, state: &StatePaths) -> String {
    let (cert, key) = cert_and_key(state, &host.name);
    let (up_cert, up_key) = state.plane_cert(&host.name, "gate");
    let mut senders: Vec<String> = t
        .hosts
        .iter()
        .map(|h| t.source_addr(h, Segment::Mgmt).to_string())
        .collect();
    senders.sort();
    senders.dedup();
    Toml::new()
        .table("listen")
        .str("addr", t.sock(host, Segment::Mgmt, t.ports.prometheus))
        .list("allow_from", &senders)
        .str("metrics", t.sock(host, Segment::Mgmt, t.ports.gate_metrics))
        .list("metrics_allow_from", &itself(t, host))
        .table("tls")
        .path("cert", &cert)
        .path("key", &key)
        .path("client_ca", &state.ca())
        .table("upstream")
        .str(
            "url",
            format_args!("https://{}/api/v1/write", prometheus_addr(t, host)),
        )
        .path("ca", &state.ca())
        .path("cert", &up_cert)
        .path("key", &up_key)
        .table("logs")
        .str(
            "url",
            format_args!("https://{}/loki/api/v1/push", logs_addr(t, host)),
        )
        .path("ca", &state.ca())
        .path("cert", &up_cert)
        .path("key", &up_key)
        .finish()
}

/// The dashboard's webhook for Alertmanager and the token file it checks.
pub fn alert_webhook(t: &Topology, monitor: &Host, state: &StatePaths) -> (String, PathBuf) {
    (
        format!(
            "https://{}/api/alerts",
            t.sock(monitor, Segment::Mgmt, t.ports.dashboard)
        ),
        state.host(&monitor.name).join("alert-webhook.token"),
    )
}

/// The `rampart dashboard` config of the monitor host: HTTPS on its management address,
/// open only to the host itself (the operator arrives through the forward, which
/// connects from inside the host), reading the host's Prometheus and searching its log
/// store.
pub fn dashboard_config(t: &Topology, host: &Host, state: &StatePaths) -> String {
    let dir = state.host(&host.name);
    let (cert, key) = cert_and_key(state, &host.name);
    let (_, token) = alert_webhook(t, host, state);
    let prometheus = prometheus_addr(t, host);
    let (plane_cert, plane_key) = state.plane_cert(&host.name, "dashboard");
    Toml::new()
        .table("listen")
        .str("addr", t.sock(host, Segment::Mgmt, t.ports.dashboard))
        .list("allow_from", &itself(t, host))
        .str(
            "metrics",
            t.sock(host, Segment::Mgmt, t.ports.dashboard_metrics),
        )
        .list("metrics_allow_from", &itself(t, host))
        .table("tls")
        .path("cert", &cert)
        .path("key", &key)
        .table("auth")
        .path("password_file", &dir.join("dashboard.password"))
        .table("prometheus")
        .str("url", format_args!("https://{prometheus}"))
        .path("ca", &state.ca())
        .path("cert", &plane_cert)
        .path("key", &plane_key)
        .table("alerts")
        .path("webhook_token_file", &token)
        .path("state_file", &dir.join("alerts.json"))
        .table("logs")
        .str("url", format_args!("https://{}", logs_addr(t, host)))
        .path("ca", &state.ca())
        .path("cert", &plane_cert)
        .path("key", &plane_key)
        .finish()
}

/// The zone's apex: the site name with the fewest labels (`foobar.com` for the
/// built-in `www.foobar.com`, `foobar.com`).
pub fn zone_apex(t: &Topology) -> &str {
    t.site_names
        .iter()
        .min_by_key(|n| n.split('.').count())
        .map_or("foobar.com", String::as_str)
}

/// keepalived's current VRRP state on a load balancer of a pair (`MASTER`, `BACKUP` or
/// `FAULT`), in the host's directory: written by `rampart vrrp-notify`, read by the
/// readiness probe and the agent.
pub const VRRP_STATE_FILE: &str = "vrrp.state";

/// The VRRP instance keepalived runs on a load-balancer pair.
pub const VRRP_INSTANCE: &str = "site";
/// A segment's short name in interface names (`eth-pub` inside a namespace, and
/// `p-<host>-pub` outside, which must fit in 15 bytes).
pub fn segment_short(segment: Segment) -> &'static str {
    match segment {
        Segment::Public => "pub",
        Segment::App => "app",
        Segment::Data => "data",
        Segment::Mgmt => "mgmt",
    }
}

/// The interface a host's segment gets inside its namespace (isolated mode).
pub fn segment_iface(segment: Segment) -> String {
    format!("eth-{}", segment_short(segment))
}

/// The keepalived config of `host`, a load balancer of a pair: one VRRP instance sent
/// unicast to the other load balancer (the firewall admits VRRP from it alone), the
/// floating address on the public interface, and the local `rampart lb` tracked through
/// its admin `/-/healthy` (two misses in a row and this side gives the address up).
/// Both start as BACKUP with `nopreempt`: the higher priority (lb1) takes the address
/// first, and a recovered load balancer does not take it back (one move per failure).
/// `notify` runs `notify` with keepalived's arguments appended (type, name, state,
/// priority); rampart's `vrrp-notify` writes the state where the agent and the
/// readiness probe read it.
///
/// Scripts run as root without `enable_script_security`: that check refuses a script
/// under a world-writable directory (a checkout in /tmp), and the script here is the
/// same binary every other root service of the host already runs.
pub fn keepalived_config(t: &Topology, host: &Host, notify: &str) -> Option<String> {
    let vip = t.vip?;
    let peer = t.lb_peer(host)?;
    let me = t.addr(host, Segment::Public);
    let peer_addr = t.addr(peer, Segment::Public);
    let iface = segment_iface(Segment::Public);
    let first = t
        .with_role(Role::Lb)
        .next()
        .is_some_and(|h| h.name == host.name);
    let priority = if first { 150 } else { 100 };
    let admin = t.sock(host, Segment::Mgmt, t.ports.lb_admin);
    Some(format!(
        "# Rendered by rampart (topology::render); rewritten on every start.\n\
         global_defs {{\n\
         \trouter_id {name}\n\
         \tscript_user root\n\
         \tvrrp_garp_master_delay 1\n\
         \tvrrp_garp_master_repeat 3\n\
         }}\n\n\
         vrrp_script lb_alive {{\n\
         \tscript \"/usr/bin/curl -sf --max-time 1 -o /dev/null http://{admin}/-/healthy\"\n\
         \tinterval 1\n\
         \ttimeout 2\n\
         \tfall 2\n\
         \trise 2\n\
         }}\n\n\
         vrrp_instance {VRRP_INSTANCE} {{\n\
         \tstate BACKUP\n\
         \tnopreempt\n\
         \tinterface {iface}\n\
         \tvirtual_router_id 51\n\
         \tpriority {priority}\n\
         \tadvert_int 1\n\
         \tunicast_src_ip {me}\n\
         \tunicast_peer {{\n\
         \t\t{peer_addr}\n\
         \t}}\n\
         \tvirtual_ipaddress {{\n\
         \t\t{vip}/{prefix} dev {iface}\n\
         \t}}\n\
         \ttrack_script {{\n\
         \t\tlb_alive\n\
         \t}}\n\
         \tnotify \"{notify}\"\n\
         }}\n",
        name = host.name,
        prefix = t.prefix(Segment::Public),
    ))
}

/// The `rampart dns` config of `host`: the site's zone, with the site's address (the
/// load balancer's public one, or a pair's floating one) for the apex and `www`, served
/// on the host's public address.
pub fn dns_config(t: &Topology, host: &Host) -> String {
    let site = t.site_addr().map(|a| a.to_string()).unwrap_or_default();
    let listen = t.sock(host, Segment::Public, t.ports.dns);
    let mut s = Toml::new();
    s.table("listen").str("udp", listen).str("tcp", listen);
    if let Some(sources) = policy_sources(t, host, t.ports.dns) {
        s.list("allow_from", &sources);
    }
    s.table("zone")
        .str("name", zone_apex(t))
        .str("site", site)
        .str("ns_address", t.addr(host, Segment::Public))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_quoting() {
        assert_eq!(q("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
    }

    #[test]
    fn local_web_config_points_at_its_databases_and_trusts_only_the_lb() {
        let t = Topology::default_for(Mode::Local, 0);
        let web1 = t.host("web1").unwrap();
        let s = web_config(&t, web1, &StatePaths::new(Path::new("/st")));
        for needle in [
            "name = \"web1\"",
            "app = \"127.0.1.11:8443\"",
            "admin = \"127.0.1.11:9181\"",
            "allow_from = [\"127.0.0.1\"]",
            "admin_allow_from = [\"127.0.0.1\"]",
            "cert = \"/st/certs/web1.pem\"",
            "client_ca = \"/st/certs/ca.pem\"",
            "[[database.servers]]\nhost = \"db1\"\naddr = \"127.0.2.21:3306\"",
            "[[database.servers]]\nhost = \"db2\"\naddr = \"127.0.2.22:3306\"",
            "leader_key = \"/rampart/db/leader\"",
            "cert = \"/st/hosts/web1/etcd-client.pem\"",
            "role_header = true",
            "access_log = \"/st/hosts/web1/access.log\"",
        ] {
            assert!(s.contains(needle), "{needle} missing in\n{s}");
        }
    }

    #[test]
    fn isolated_lb_config_uses_public_and_app_addresses() {
        let t = Topology::default_for(Mode::Isolated, 0);
        let lb = t.host("lb1").unwrap();
        let s = lb_config(&t, lb, &StatePaths::new(Path::new("/st")));
        for needle in [
            "https = \"203.0.113.10:443\"",
            "http = \"203.0.113.10:80\"",
            "admin = \"198.18.9.10:9180\"",
            "address = \"198.18.1.11:8443\"",
            "address = \"198.18.1.12:8443\"",
            "tls_server_name = \"web2\"",
            "client_cert = \"/st/certs/lb1.pem\"",
            "admin_allow_from = [\"198.18.9.10\"]",
        ] {
            assert!(s.contains(needle), "{needle} missing in\n{s}");
        }
        assert!(!s.contains("rate_limit_per_second"));
        // Anyone may reach the public ports.
        assert!(!s.contains("\nallow_from"), "{s}");
        let web = web_config(
            &t,
            t.host("web1").unwrap(),
            &StatePaths::new(Path::new("/st")),
        );
        assert!(web.contains("allow_from = [\"198.18.1.10\"]"), "{web}");
    }

    #[test]
    fn dns_config_serves_the_apex_with_the_lb_public_address() {
        let t = Topology::default_for(Mode::Isolated, 0);
        let s = dns_config(&t, t.host("dns").unwrap());
        for needle in [
            "udp = \"203.0.113.53:53\"",
            "tcp = \"203.0.113.53:53\"",
            "name = \"foobar.com\"",
            "site = \"203.0.113.10\"",
            "ns_address = \"203.0.113.53\"",
        ] {
            assert!(s.contains(needle), "{needle} missing in\n{s}");
        }
        let t = Topology::default_for(Mode::Local, 4);
        let s = dns_config(&t, t.host("dns").unwrap());
        assert!(s.contains("udp = \"127.4.3.53:5353\""), "{s}");
        assert!(s.contains("site = \"127.4.1.10\""), "{s}");
    }
}

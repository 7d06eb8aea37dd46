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
}

/// Quotes a string as a TOML basic string: the YAML double-quoted scalar of the monitor
/// configs is one too (the same escapes), so both file kinds share one quoting.
use crate::monitor::yaml_str as q;

fn p(path: &Path) -> String {
    q(&path.to_string_lossy())
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

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| q(i)).collect();
    format!("[{}]", quoted.join(", "))
}

/// The `rampart web` config of `host`.
pub fn web_config(t: &Topology, host: &Host, state: &StatePaths) -> String {
    let certs = state.certs();
    let dir = state.host(&host.name);
    let secrets = state.secrets();
    let lb_sources = policy_sources(t, host, t.ports.web).unwrap_or_default();
    let primary = t
        .with_role(Role::DbPrimary)
        .next()
        .map(|h| t.sock(h, Segment::Data, t.ports.db).to_string());
    let replica = t
        .with_role(Role::DbReplica)
        .next()
        .map(|h| t.sock(h, Segment::Data, t.ports.db).to_string());
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Written by `rampart up` from the topology; rewritten on every start."
    );
    let _ = writeln!(s, "name = {}\n", q(&host.name));
    let _ = writeln!(s, "[listen]");
    let _ = writeln!(
        s,
        "app = {}",
        q(&t.sock(host, Segment::App, t.ports.web).to_string())
    );
    let _ = writeln!(
        s,
        "admin = {}",
        q(&t.sock(host, Segment::Mgmt, t.ports.web_admin).to_string())
    );
    let _ = writeln!(s, "allow_from = {}", list(&lb_sources));
    // Metrics and health are for the host itself (the agent, rampart's probes).
    let _ = writeln!(
        s,
        "admin_allow_from = {}\n",
        list(&[t.source_addr(host, Segment::Mgmt).to_string()])
    );
    let _ = writeln!(s, "[tls]");
    let _ = writeln!(s, "cert = {}", p(&certs.join(format!("{}.pem", host.name))));
    let _ = writeln!(s, "key = {}", p(&certs.join(format!("{}.key", host.name))));
    let _ = writeln!(s, "client_ca = {}\n", p(&state.ca()));
    let _ = writeln!(s, "[site]");
    let _ = writeln!(s, "root = {}", p(&dir.join("site")));
    let _ = writeln!(s, "install_default = true\n");
    if let Some(primary) = primary {
        let _ = writeln!(s, "[database]");
        let _ = writeln!(s, "primary = {}", q(&primary));
        if let Some(r) = replica {
            let _ = writeln!(s, "replica = {}", q(&r));
        }
        let _ = writeln!(s, "password_file = {}", p(&secrets.join("db-app.password")));
        let _ = writeln!(s, "migrate_user = \"foobar_migrate\"");
        let _ = writeln!(
            s,
            "migrate_password_file = {}",
            p(&secrets.join("db-migrate.password"))
        );
        let _ = writeln!(s, "role_header = true\n");
    }
    let _ = writeln!(s, "[log]");
    let _ = writeln!(s, "access_log = {}", p(&dir.join("access.log")));
    s
}

/// The `rampart lb` config of `host`.
pub fn lb_config(t: &Topology, host: &Host, state: &StatePaths) -> String {
    let certs = state.certs();
    let dir = state.host(&host.name);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Written by `rampart up` from the topology; rewritten on every start."
    );
    let _ = writeln!(s, "[listen]");
    let _ = writeln!(
        s,
        "https = {}",
        q(&t.sock(host, Segment::Public, t.ports.lb_https).to_string())
    );
    let _ = writeln!(
        s,
        "http = {}",
        q(&t.sock(host, Segment::Public, t.ports.lb_http).to_string())
    );
    let _ = writeln!(
        s,
        "admin = {}",
        q(&t.sock(host, Segment::Mgmt, t.ports.lb_admin).to_string())
    );
    // The public ports follow the policy (anyone, by default); the admin listener
    // (metrics, reload) is for the host itself: the policy opens it to no one.
    if let Some(public) = policy_sources(t, host, t.ports.lb_https) {
        let _ = writeln!(s, "allow_from = {}", list(&public));
    }
    let _ = writeln!(
        s,
        "admin_allow_from = {}\n",
        list(&[t.source_addr(host, Segment::Mgmt).to_string()])
    );
    let _ = writeln!(s, "[[tls.certificates]]");
    let _ = writeln!(s, "cert = {}", p(&certs.join("site.pem")));
    let _ = writeln!(s, "key = {}\n", p(&certs.join("site.key")));
    let _ = writeln!(s, "[balance]");
    let _ = writeln!(s, "served_by_header = \"X-Served-By\"\n");
    for web in t.with_role(Role::Web) {
        let _ = writeln!(s, "[[backends]]");
        let _ = writeln!(s, "name = {}", q(&web.name));
        let _ = writeln!(
            s,
            "address = {}",
            q(&t.sock(web, Segment::App, t.ports.web).to_string())
        );
        let _ = writeln!(s, "tls = true");
        let _ = writeln!(s, "tls_server_name = {}\n", q(&web.name));
    }
    let _ = writeln!(s, "[backend_tls]");
    let _ = writeln!(s, "ca = {}", p(&state.ca()));
    let _ = writeln!(
        s,
        "client_cert = {}",
        p(&certs.join(format!("{}.pem", host.name)))
    );
    let _ = writeln!(
        s,
        "client_key = {}\n",
        p(&certs.join(format!("{}.key", host.name)))
    );
    let _ = writeln!(s, "[health]");
    let _ = writeln!(s, "path = \"/healthz\"");
    let _ = writeln!(s, "interval = \"1s\"");
    let _ = writeln!(s, "fall = 2\n");
    if t.mode == Mode::Local {
        let _ = writeln!(
            s,
            "# Local mode: every client arrives from 127.0.0.1, so a per-client rate limit\n\
             # would be one bucket for everyone; it is off here and on in isolated mode."
        );
        let _ = writeln!(s, "[limits]");
        let _ = writeln!(s, "rate_limit_per_second = 0.0\n");
    }
    let _ = writeln!(s, "[log]");
    let _ = writeln!(s, "access_log = {}", p(&dir.join("access.log")));
    s
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
/// user; pushed to the monitor host's Prometheus.
pub fn agent_config(
    t: &Topology,
    host: &Host,
    state: &StatePaths,
    mysql_socket: Option<&Path>,
    pace: Pace,
) -> String {
    let dir = state.host(&host.name);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Written by `rampart up` from the topology; rewritten on every start."
    );
    let _ = writeln!(s, "[agent]");
    let _ = writeln!(s, "instance = {}", q(&host.name));
    let interval = match pace {
        Pace::Production => "15s",
        Pace::Fast => "2s",
    };
    let _ = writeln!(s, "interval = {}", q(interval));
    let _ = writeln!(s, "state_dir = {}\n", p(&dir.join("agent")));
    if let Some(monitor) = t.with_role(Role::Monitor).next() {
        let _ = writeln!(s, "[push]");
        let _ = writeln!(
            s,
            "url = {}\n",
            q(&format!(
                "http://{}/api/v1/write",
                t.sock(monitor, Segment::Mgmt, t.ports.prometheus)
            ))
        );
    }
    let _ = writeln!(s, "[listen]");
    let _ = writeln!(
        s,
        "metrics = {}",
        q(&t.sock(host, Segment::Mgmt, t.ports.agent_metrics)
            .to_string())
    );
    let _ = writeln!(
        s,
        "allow_from = {}\n",
        list(&[t.source_addr(host, Segment::Mgmt).to_string()])
    );
    let service = match host.role {
        Role::Web => Some(("web", t.ports.web_admin)),
        Role::Lb => Some(("lb", t.ports.lb_admin)),
        _ => None,
    };
    if let Some((job, admin)) = service {
        let _ = writeln!(s, "[[scrape]]");
        let _ = writeln!(s, "job = {}", q(job));
        let _ = writeln!(
            s,
            "url = {}\n",
            q(&format!(
                "http://{}/metrics",
                t.sock(host, Segment::Mgmt, admin)
            ))
        );
        let _ = writeln!(s, "[[access_log]]");
        let _ = writeln!(s, "service = {}", q(job));
        let _ = writeln!(s, "path = {}\n", p(&dir.join("access.log")));
    }
    if let (Role::DbPrimary | Role::DbReplica, Some(socket)) = (host.role, mysql_socket) {
        let _ = writeln!(s, "[mysql]");
        let _ = writeln!(s, "socket = {}", p(socket));
        let _ = writeln!(s, "user = \"rampart_monitor\"");
        let _ = writeln!(
            s,
            "password_file = {}\n",
            p(&state.secrets().join("db-monitor.password"))
        );
    }
    s
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
/// connects from inside the host), reading the host's Prometheus.
pub fn dashboard_config(t: &Topology, host: &Host, state: &StatePaths) -> String {
    let certs = state.certs();
    let dir = state.host(&host.name);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Written by `rampart up` from the topology; rewritten on every start."
    );
    let _ = writeln!(s, "[listen]");
    let _ = writeln!(
        s,
        "addr = {}",
        q(&t.sock(host, Segment::Mgmt, t.ports.dashboard).to_string())
    );
    let _ = writeln!(
        s,
        "allow_from = {}\n",
        list(&[t.source_addr(host, Segment::Mgmt).to_string()])
    );
    let _ = writeln!(s, "[tls]");
    let _ = writeln!(s, "cert = {}", p(&certs.join(format!("{}.pem", host.name))));
    let _ = writeln!(
        s,
        "key = {}\n",
        p(&certs.join(format!("{}.key", host.name)))
    );
    let _ = writeln!(s, "[auth]");
    let _ = writeln!(
        s,
        "password_file = {}\n",
        p(&dir.join("dashboard.password"))
    );
    let _ = writeln!(s, "[prometheus]");
    let _ = writeln!(
        s,
        "url = {}\n",
        q(&format!(
            "http://{}",
            t.sock(host, Segment::Mgmt, t.ports.prometheus)
        ))
    );
    let (_, token) = alert_webhook(t, host, state);
    let _ = writeln!(s, "[alerts]");
    let _ = writeln!(s, "webhook_token_file = {}", p(&token));
    let _ = writeln!(s, "state_file = {}", p(&dir.join("alerts.json")));
    s
}

/// The zone's apex: the site name with the fewest labels (`foobar.com` for the
/// built-in `www.foobar.com`, `foobar.com`).
pub fn zone_apex(t: &Topology) -> &str {
    t.site_names
        .iter()
        .min_by_key(|n| n.split('.').count())
        .map_or("foobar.com", String::as_str)
}

/// The `rampart dns` config of `host`: the site's zone, with the load balancer's public
/// address for the apex and `www`, served on the host's public address.
pub fn dns_config(t: &Topology, host: &Host) -> String {
    let site = t
        .with_role(Role::Lb)
        .next()
        .map(|lb| t.addr(lb, Segment::Public).to_string())
        .unwrap_or_default();
    let listen = t.sock(host, Segment::Public, t.ports.dns).to_string();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Written by `rampart up` from the topology; rewritten on every start."
    );
    let _ = writeln!(s, "[listen]");
    let _ = writeln!(s, "udp = {}", q(&listen));
    let _ = writeln!(s, "tcp = {}", q(&listen));
    if let Some(sources) = policy_sources(t, host, t.ports.dns) {
        let _ = writeln!(s, "allow_from = {}", list(&sources));
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "[zone]");
    let _ = writeln!(s, "name = {}", q(zone_apex(t)));
    let _ = writeln!(s, "site = {}", q(&site));
    let _ = writeln!(
        s,
        "ns_address = {}",
        q(&t.addr(host, Segment::Public).to_string())
    );
    s
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
            "primary = \"127.0.2.21:3306\"",
            "replica = \"127.0.2.22:3306\"",
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

//! The firewall policy as data: which hosts may open which connections to which port on
//! which host, over which segment (DESIGN.md section 3). Everything not listed is
//! dropped, in both directions: a host's input accepts only the flows that end at it and
//! its output only the flows that start at it. `nft.rs` renders this per host; the
//! services enforce the same lists in their listeners.

use std::net::IpAddr;

use crate::{Host, Role, Segment, Topology};

/// Transport protocol of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// Who may start a flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum From {
    /// Any host on the flow's segment (the public services).
    Anyone,
    /// These hosts, by name.
    Hosts(Vec<String>),
}

/// One allowed flow: new connections from `from` to `to`'s address on `segment`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    pub to: String,
    pub proto: Proto,
    pub port: u16,
    pub segment: Segment,
    pub from: From,
    /// What the flow is for, shown in rulesets and the connectivity matrix.
    pub what: &'static str,
}

/// The whole policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub flows: Vec<Flow>,
}

fn names<'a>(hosts: impl Iterator<Item = &'a Host>) -> Vec<String> {
    hosts.map(|h| h.name.clone()).collect()
}

impl Topology {
    /// The default policy of DESIGN.md section 3.
    pub fn policy(&self) -> Policy {
        let p = &self.ports;
        let mut flows = Vec::new();
        let mut add = |to: &str, proto, port, segment, from, what| {
            flows.push(Flow {
                to: to.to_owned(),
                proto,
                port,
                segment,
                from,
                what,
            });
        };
        for lb in self.with_role(Role::Lb) {
            add(
                &lb.name,
                Proto::Tcp,
                p.lb_http,
                Segment::Public,
                From::Anyone,
                "http redirect",
            );
            add(
                &lb.name,
                Proto::Tcp,
                p.lb_https,
                Segment::Public,
                From::Anyone,
                "https",
            );
        }
        for dns in self.with_role(Role::Dns) {
            add(
                &dns.name,
                Proto::Udp,
                p.dns,
                Segment::Public,
                From::Anyone,
                "dns",
            );
            add(
                &dns.name,
                Proto::Tcp,
                p.dns,
                Segment::Public,
                From::Anyone,
                "dns",
            );
        }
        let lbs = names(self.with_role(Role::Lb));
        for web in self.with_role(Role::Web) {
            add(
                &web.name,
                Proto::Tcp,
                p.web,
                Segment::App,
                From::Hosts(lbs.clone()),
                "web",
            );
        }
        // Any database host may be the primary after a failover, so each replicates
        // from (connects to) every other one; the web servers reach them all.
        let webs = names(self.with_role(Role::Web));
        let dbs: Vec<&Host> = self
            .with_role(Role::DbPrimary)
            .chain(self.with_role(Role::DbReplica))
            .collect();
        // The backup host archives the binlog from (and checksums tables on) whichever
        // server leads, pulls backups from the keepers' sources, and asks the keepers
        // which server leads.
        let backups = names(self.with_role(Role::Backup));
        for db in &dbs {
            let mut from = webs.clone();
            from.extend(
                dbs.iter()
                    .filter(|o| o.name != db.name)
                    .map(|o| o.name.clone()),
            );
            from.extend(backups.iter().cloned());
            add(
                &db.name,
                Proto::Tcp,
                p.db,
                Segment::Data,
                From::Hosts(from),
                "mysql",
            );
            if !backups.is_empty() {
                add(
                    &db.name,
                    Proto::Tcp,
                    p.backup_source,
                    Segment::Data,
                    From::Hosts(backups.clone()),
                    "backup source",
                );
                add(
                    &db.name,
                    Proto::Tcp,
                    p.keeper,
                    Segment::Mgmt,
                    From::Hosts(backups.clone()),
                    "keeper status",
                );
            }
        }
        for mon in self.with_role(Role::Monitor) {
            let agents: Vec<String> = self
                .hosts
                .iter()
                .filter(|h| {
                    h.name != mon.name && h.segments.iter().any(|(s, _)| *s == Segment::Mgmt)
                })
                .map(|h| h.name.clone())
                .collect();
            add(
                &mon.name,
                Proto::Tcp,
                p.prometheus,
                Segment::Mgmt,
                From::Hosts(agents),
                "metrics ingest",
            );
        }
        // etcd: raft between the members, the client port for the keepers (database
        // hosts) and the web servers, the metrics listener for the monitor's Prometheus.
        // A member's own connections to itself stay on loopback.
        let members = names(self.etcd_members().into_iter());
        let clients = names(self.etcd_clients());
        let monitors = names(self.with_role(Role::Monitor));
        for m in self.etcd_members() {
            let peers: Vec<String> = members.iter().filter(|n| **n != m.name).cloned().collect();
            add(
                &m.name,
                Proto::Tcp,
                p.etcd_peer,
                Segment::Mgmt,
                From::Hosts(peers),
                "etcd peer",
            );
            add(
                &m.name,
                Proto::Tcp,
                p.etcd_client,
                Segment::Mgmt,
                From::Hosts(clients.clone()),
                "etcd client",
            );
            add(
                &m.name,
                Proto::Tcp,
                p.etcd_metrics,
                Segment::Mgmt,
                From::Hosts(monitors.clone()),
                "etcd metrics",
            );
        }
        // The ACME CA, when it is one of the site's hosts (pebble on the client host in
        // tests): the load balancers order from it. A CA elsewhere is an egress rule of
        // the load balancers alone (`nft.rs`).
        if let Some((ca, segment)) = self.acme_host() {
            add(
                &ca.name,
                Proto::Tcp,
                self.acme.as_ref().map_or(443, |a| a.port),
                segment,
                From::Hosts(lbs),
                "acme directory",
            );
        }
        Policy { flows }
    }

    /// The host and segment of the `[acme]` directory's address, when it is a host of
    /// the site.
    pub fn acme_host(&self) -> Option<(&Host, Segment)> {
        let ip = self.acme.as_ref()?.ip()?;
        self.hosts.iter().find_map(|h| {
            h.segments
                .iter()
                .find(|(_, a)| *a == ip)
                .map(|(s, _)| (h, *s))
        })
    }

    /// The address of `host` on `segment`, if it has one (isolated mode).
    pub fn segment_addr(&self, host: &Host, segment: Segment) -> Option<IpAddr> {
        host.segments
            .iter()
            .find(|(s, _)| *s == segment)
            .map(|(_, a)| IpAddr::V4(*a))
    }

    /// The hosts that may start `flow`: for `Anyone`, every other host on its segment.
    pub fn sources(&self, flow: &Flow) -> Vec<&Host> {
        self.hosts
            .iter()
            .filter(|h| h.name != flow.to)
            .filter(|h| self.segment_addr(h, flow.segment).is_some())
            .filter(|h| match &flow.from {
                From::Anyone => true,
                From::Hosts(names) => names.contains(&h.name),
            })
            .collect()
    }

    /// Whether the policy lets `from` open `proto`/`port` on `to`.
    pub fn allows(&self, from: &str, to: &str, proto: Proto, port: u16) -> bool {
        self.policy().flows.iter().any(|f| {
            f.to == to
                && f.proto == proto
                && f.port == port
                && self.sources(f).iter().any(|h| h.name == from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;

    /// DESIGN.md section 3, written out independently of `policy()`.
    #[test]
    fn default_policy_is_the_design_table() {
        let t = Topology::default_for(Mode::Isolated, 0);
        let check = |from: &str, to: &str, proto: Proto, port: u16, expected: bool| {
            assert_eq!(
                t.allows(from, to, proto, port),
                expected,
                "{from} -> {to} {}/{port}",
                proto.as_str()
            );
        };
        check("client", "lb1", Proto::Tcp, 443, true);
        check("client", "lb1", Proto::Tcp, 80, true);
        check("client", "dns", Proto::Udp, 53, true);
        check("client", "dns", Proto::Tcp, 53, true);
        check("client", "web1", Proto::Tcp, 8443, false);
        check("client", "db1", Proto::Tcp, 3306, false);
        check("client", "lb1", Proto::Tcp, 9180, false);
        check("lb1", "web1", Proto::Tcp, 8443, true);
        check("lb1", "web2", Proto::Tcp, 8443, true);
        check("lb1", "db1", Proto::Tcp, 3306, false);
        check("web1", "db1", Proto::Tcp, 3306, true);
        check("web2", "db2", Proto::Tcp, 3306, true);
        check("db2", "db1", Proto::Tcp, 3306, true);
        // Either may be the primary after a failover: each replicates from the other.
        check("db1", "db2", Proto::Tcp, 3306, true);
        check("web1", "web2", Proto::Tcp, 8443, false);
        check("web1", "lb1", Proto::Tcp, 443, false);
        check("db1", "monitor", Proto::Tcp, 9090, true);
        check("lb1", "monitor", Proto::Tcp, 9090, true);
        check("client", "monitor", Proto::Tcp, 9090, false);
        check("monitor", "db1", Proto::Tcp, 3306, false);
        // etcd: peers among the members only; the client port for database and web
        // hosts; metrics for the monitor only.
        check("dns", "lb1", Proto::Tcp, 2380, true);
        check("lb1", "monitor", Proto::Tcp, 2380, true);
        check("monitor", "dns", Proto::Tcp, 2380, true);
        check("web1", "lb1", Proto::Tcp, 2380, false);
        check("db1", "monitor", Proto::Tcp, 2380, false);
        check("db1", "monitor", Proto::Tcp, 2379, true);
        check("db2", "dns", Proto::Tcp, 2379, true);
        check("web2", "lb1", Proto::Tcp, 2379, true);
        check("client", "dns", Proto::Tcp, 2379, false);
        check("lb1", "dns", Proto::Tcp, 2379, false);
        check("monitor", "lb1", Proto::Tcp, 2379, false);
        check("web1", "db1", Proto::Tcp, 2379, false);
        check("monitor", "lb1", Proto::Tcp, 2381, true);
        check("monitor", "dns", Proto::Tcp, 2381, true);
        check("dns", "lb1", Proto::Tcp, 2381, false);
        check("db1", "monitor", Proto::Tcp, 2381, false);
    }
}

//! Renders a host's nftables ruleset from the topology and its policy: a pure function
//! from data to text, loaded inside the host's namespace with `nft -f` (isolated mode).
//!
//! Every ruleset: one `inet rampart` table replaced atomically (`add`/`delete`/define in
//! one file); input, forward and output policies of drop; `ct state invalid` dropped and
//! `established,related` accepted; loopback accepted and loopback addresses arriving on
//! any other interface dropped; ICMP echo and the ICMP errors rate-limited; on the load
//! balancer, a per-source limit on new connections to its public ports; new connections
//! only for the flows of the policy, inbound to this host and outbound from it (a
//! load-balancer pair's floating address counts as each of the two's, and the pair
//! exchanges VRRP with each other only); drops
//! counted in named counters and logged, rate-limited, through `log group` (the kernel's
//! plain `log` prints nothing from a non-default namespace).

use std::fmt::Write as _;

use std::net::IpAddr;

use crate::policy::{From, Proto};
use crate::{Host, Role, Segment, Topology};

/// The nflog group drop logs go to.
pub const LOG_GROUP: u16 = 1;
/// New connections per second (and burst) one source may open to the load balancer's
/// public ports before its packets are dropped.
pub const PUBLIC_NEW_PER_SECOND: u32 = 50;
pub const PUBLIC_NEW_BURST: u32 = 100;

fn set(items: &[String]) -> String {
    if items.len() == 1 {
        items[0].clone()
    } else {
        format!("{{ {} }}", items.join(", "))
    }
}

/// The ruleset of `host`, ready for `nft -f`.
pub fn ruleset(t: &Topology, host: &Host) -> String {
    let policy = t.policy();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# rampart firewall for {}, rendered from the topology. Load with `nft -f`.",
        host.name
    );
    let _ = writeln!(s, "add table inet rampart\ndelete table inet rampart\n");
    let _ = writeln!(s, "table inet rampart {{");
    for c in ["dropped_input", "dropped_forward", "dropped_output"] {
        let _ = writeln!(s, "\tcounter {c} {{ }}");
    }
    let public_ports: Vec<String> = if host.role == Role::Lb {
        let mut v = vec![t.ports.lb_http.to_string(), t.ports.lb_https.to_string()];
        v.dedup();
        v
    } else {
        Vec::new()
    };
    if !public_ports.is_empty() {
        let _ = writeln!(
            s,
            "\tset public_flood {{ type ipv4_addr; flags dynamic; timeout 1m; size 65536; }}"
        );
    }

    // Input: what may arrive here.
    let _ = writeln!(s, "\n\tchain input {{");
    let _ = writeln!(
        s,
        "\t\ttype filter hook input priority filter; policy drop;"
    );
    let _ = writeln!(s, "\t\tiif \"lo\" accept");
    let _ = writeln!(
        s,
        "\t\tip saddr 127.0.0.0/8 drop comment \"loopback source off lo\""
    );
    let _ = writeln!(
        s,
        "\t\tip daddr 127.0.0.0/8 drop comment \"loopback destination off lo\""
    );
    let _ = writeln!(s, "\t\tip6 saddr ::1 drop");
    let _ = writeln!(s, "\t\tct state invalid drop");
    let _ = writeln!(s, "\t\tct state established,related accept");
    let _ = writeln!(
        s,
        "\t\ticmp type echo-request limit rate 10/second burst 20 packets accept"
    );
    let _ = writeln!(
        s,
        "\t\ticmp type {{ destination-unreachable, time-exceeded, parameter-problem }} limit rate 50/second burst 100 packets accept"
    );
    if !public_ports.is_empty() {
        let _ = writeln!(
            s,
            "\t\ttcp dport {} ct state new add @public_flood {{ ip saddr limit rate over {PUBLIC_NEW_PER_SECOND}/second burst {PUBLIC_NEW_BURST} packets }} counter drop comment \"per-source new connection limit\"",
            set(&public_ports)
        );
    }
    for f in policy.flows.iter().filter(|f| f.to == host.name) {
        let Some(daddr) = daddrs(t, host, f.segment) else {
            continue;
        };
        let saddr = match &f.from {
            From::Anyone => String::new(),
            From::Hosts(_) => {
                let srcs: Vec<String> = t
                    .sources(f)
                    .iter()
                    .filter_map(|h| t.segment_addr(h, f.segment))
                    .map(|a| a.to_string())
                    .collect();
                if srcs.is_empty() {
                    continue;
                }
                format!("ip saddr {} ", set(&srcs))
            }
        };
        let _ = writeln!(
            s,
            "\t\t{saddr}ip daddr {daddr} {} dport {} ct state new accept comment \"{}\"",
            f.proto.as_str(),
            f.port,
            f.what
        );
    }
    if let Some((me, peer)) = vrrp_pair(t, host) {
        let _ = writeln!(
            s,
            "\t\tip saddr {peer} ip daddr {me} ip protocol vrrp accept comment \"vrrp from the other load balancer\""
        );
    }
    // The operator's Ansible, at the address the inventory names (the management one,
    // else the only one), from `[deploy] ssh_from` alone.
    if let (false, Some((_, addr))) = (t.ssh_from.is_empty(), host.segments.last()) {
        let _ = writeln!(
            s,
            "\t\tip saddr {} ip daddr {addr} tcp dport {} ct state new accept comment \"ssh from the operator (deploy.ssh_from)\"",
            set(&t.ssh_from),
            t.ssh_port
        );
    }
    drop_tail(&mut s, &host.name, "input");
    let _ = writeln!(s, "\t}}");

    // Forward: hosts are not routers.
    let _ = writeln!(s, "\n\tchain forward {{");
    let _ = writeln!(
        s,
        "\t\ttype filter hook forward priority filter; policy drop;"
    );
    drop_tail(&mut s, &host.name, "forward");
    let _ = writeln!(s, "\t}}");

    // Output: what may leave from here.
    let _ = writeln!(s, "\n\tchain output {{");
    let _ = writeln!(
        s,
        "\t\ttype filter hook output priority filter; policy drop;"
    );
    let _ = writeln!(s, "\t\toif \"lo\" accept");
    let _ = writeln!(s, "\t\tct state invalid drop");
    let _ = writeln!(s, "\t\tct state established,related accept");
    for f in &policy.flows {
        if !t.sources(f).iter().any(|h| h.name == host.name) {
            continue;
        }
        let (Some(saddr), Some(daddr)) = (
            t.segment_addr(host, f.segment),
            t.host(&f.to).and_then(|to| daddrs(t, to, f.segment)),
        ) else {
            continue;
        };
        let _ = writeln!(
            s,
            "\t\tip saddr {saddr} ip daddr {daddr} {} dport {} ct state new accept comment \"{} to {}\"",
            f.proto.as_str(),
            f.port,
            f.what,
            f.to
        );
    }
    if let Some((me, peer)) = vrrp_pair(t, host) {
        let _ = writeln!(
            s,
            "\t\tip saddr {me} ip daddr {peer} ip protocol vrrp accept comment \"vrrp to the other load balancer\""
        );
    }
    acme_egress(&mut s, t, host);
    // sshd's side of the operator's sessions, also of the one that loads this ruleset:
    // conntrack picks an older connection up mid-stream as new, and whichever side
    // speaks first must pass (only sshd, privileged, sends from its port).
    if let (false, Some((_, addr))) = (t.ssh_from.is_empty(), host.segments.last()) {
        let _ = writeln!(
            s,
            "\t\tip saddr {addr} ip daddr {} tcp sport {} accept comment \"ssh to the operator (deploy.ssh_from)\"",
            set(&t.ssh_from),
            t.ssh_port
        );
    }
    drop_tail(&mut s, &host.name, "output");
    let _ = writeln!(s, "\t}}");
    let _ = writeln!(s, "}}");
    s
}

/// A load balancer's way out to an ACME CA that is not one of the site's hosts (those
/// are flows of the policy): TCP to the directory's address and port when it is an
/// address; to its port anywhere when it is a name (a CA's addresses are a CDN's), with
/// DNS (UDP and TCP 53) to resolve it. Only from the public address.
fn acme_egress(s: &mut String, t: &Topology, host: &Host) {
    let Some(acme) = t.acme.as_ref().filter(|_| host.role == Role::Lb) else {
        return;
    };
    let Some(me) = t.segment_addr(host, Segment::Public) else {
        return;
    };
    if t.acme_host().is_some() {
        return;
    }
    match acme.ip() {
        Some(ip) => {
            let _ = writeln!(
                s,
                "\t\tip saddr {me} ip daddr {ip} tcp dport {} ct state new accept comment \"acme directory\"",
                acme.port
            );
        }
        None => {
            let _ = writeln!(
                s,
                "\t\tip saddr {me} tcp dport {} ct state new accept comment \"acme directory {}\"",
                acme.port, acme.host
            );
            for proto in ["udp", "tcp"] {
                let _ = writeln!(
                    s,
                    "\t\tip saddr {me} {proto} dport 53 ct state new accept comment \"dns for the acme directory\""
                );
            }
        }
    }
}

/// The destination addresses of `host` on `segment`: its own, and on the public
/// segment of a load balancer of a pair, the floating address too (whichever of the two
/// holds it receives the site's traffic).
fn daddrs(t: &Topology, host: &Host, segment: Segment) -> Option<String> {
    let own = t.segment_addr(host, segment)?;
    match t.vip {
        Some(vip) if host.role == Role::Lb && segment == Segment::Public => {
            Some(set(&[own.to_string(), vip.to_string()]))
        }
        _ => Some(own.to_string()),
    }
}

/// A load balancer of a pair: its own and its peer's public addresses, between which
/// keepalived sends VRRP (unicast).
fn vrrp_pair(t: &Topology, host: &Host) -> Option<(IpAddr, IpAddr)> {
    let peer = t.lb_peer(host)?;
    Some((
        t.segment_addr(host, Segment::Public)?,
        t.segment_addr(peer, Segment::Public)?,
    ))
}

fn drop_tail(s: &mut String, host: &str, chain: &str) {
    let _ = writeln!(
        s,
        "\t\tlimit rate 5/second burst 10 packets log prefix \"rampart {host} drop {chain}: \" group {LOG_GROUP}"
    );
    let _ = writeln!(s, "\t\tcounter name dropped_{chain} drop");
}

/// Whether a rendered ruleset mentions a rule for this flow (for `firewall check`).
pub fn mentions(ruleset: &str, proto: Proto, port: u16) -> bool {
    ruleset.contains(&format!("{} dport {port} ", proto.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;

    fn rules(host: &str) -> String {
        let t = Topology::default_for(Mode::Isolated, 0);
        ruleset(&t, t.host(host).unwrap())
    }

    fn check(host: &str, must: &[&str], must_not: &[&str]) {
        let r = rules(host);
        for m in must {
            assert!(r.contains(m), "{host}: `{m}` missing in\n{r}");
        }
        for m in must_not {
            assert!(!r.contains(m), "{host}: `{m}` present in\n{r}");
        }
    }

    /// `[acme]`: a CA on one of the site's hosts (pebble on the client in tests) is a flow
    /// of the policy, from the load balancers only; a CA elsewhere is an egress rule of
    /// the load balancers, with DNS when it is a name. Nobody else gets a way out.
    #[test]
    fn acme_opens_the_way_to_the_ca_for_the_load_balancers_only() {
        let with = |directory: &str| {
            crate::file::parse(
                "site.toml",
                &format!("[hosts]\nlb = 2\n[acme]\ndirectory = \"{directory}\"\n"),
            )
            .unwrap()
            .topology(Mode::Isolated, 0)
            .unwrap()
        };
        let t = with("https://203.0.113.100:14000/dir");
        use crate::policy::Proto::Tcp;
        assert!(t.allows("lb1", "client", Tcp, 14000));
        assert!(t.allows("lb2", "client", Tcp, 14000));
        assert!(!t.allows("web1", "client", Tcp, 14000));
        assert!(!t.allows("dns", "client", Tcp, 14000));
        let client = ruleset(&t, t.host("client").unwrap());
        assert!(
            client.contains("ip saddr { 203.0.113.10, 203.0.113.9 } ip daddr 203.0.113.100 tcp dport 14000 ct state new accept comment \"acme directory\""),
            "{client}"
        );
        let lb1 = ruleset(&t, t.host("lb1").unwrap());
        assert!(
            lb1.contains(
                "ip saddr 203.0.113.10 ip daddr 203.0.113.100 tcp dport 14000 ct state new accept"
            ),
            "{lb1}"
        );
        assert!(!lb1.contains("dns for the acme directory"));
        // VRRP is between the two load balancers only.
        assert!(!client.contains("vrrp"), "{client}");
        let default = Topology::default_for(Mode::Isolated, 0);
        assert!(!default.allows("lb1", "client", Tcp, 14000));

        let le = with("https://acme-v02.api.letsencrypt.org/directory");
        for h in &le.hosts {
            let r = ruleset(&le, h);
            let out = r.split("chain output").nth(1).unwrap();
            let egress = out.contains("tcp dport 443 ct state new accept comment \"acme directory acme-v02.api.letsencrypt.org\"")
                && out.contains("udp dport 53 ct state new accept comment \"dns for the acme directory\"");
            assert_eq!(egress, h.role == Role::Lb, "{}:\n{r}", h.name);
        }
    }

    /// `[deploy] ssh_from` opens ssh on every host at the inventory's address (the
    /// management one, the client's public one) to those networks only; without it, no
    /// host accepts ssh.
    #[test]
    fn ssh_is_open_only_to_the_operators_networks() {
        let mut t = Topology::default_for(Mode::Isolated, 0);
        for h in &t.hosts {
            assert!(!ruleset(&t, h).contains("dport 22 "), "{}", h.name);
        }
        t.ssh_from = vec!["192.0.2.10/32".into(), "198.51.100.0/24".into()];
        let rule = |host: &str| {
            let h = t.host(host).unwrap();
            ruleset(&t, h)
                .lines()
                .filter(|l| l.contains("ssh from the operator"))
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(
            rule("web1"),
            "ip saddr { 192.0.2.10/32, 198.51.100.0/24 } ip daddr 198.18.9.11 tcp dport 22 ct state new accept comment \"ssh from the operator (deploy.ssh_from)\""
        );
        assert!(rule("client").contains("ip daddr 203.0.113.100 tcp dport 22 "));
        // sshd answers a session older than the ruleset (conntrack sees it as new).
        let web1 = ruleset(&t, t.host("web1").unwrap());
        assert!(
            web1.contains("ip saddr 198.18.9.11 ip daddr { 192.0.2.10/32, 198.51.100.0/24 } tcp sport 22 accept"),
            "{web1}"
        );
    }

    #[test]
    fn every_ruleset_has_the_common_frame() {
        for host in [
            "client", "dns", "lb1", "web1", "web2", "db1", "db2", "monitor",
        ] {
            check(
                host,
                &[
                    "add table inet rampart\ndelete table inet rampart",
                    "type filter hook input priority filter; policy drop;",
                    "type filter hook forward priority filter; policy drop;",
                    "type filter hook output priority filter; policy drop;",
                    "ct state invalid drop",
                    "ct state established,related accept",
                    "iif \"lo\" accept",
                    "ip saddr 127.0.0.0/8 drop",
                    "icmp type echo-request limit rate",
                    "counter name dropped_input drop",
                    "counter name dropped_output drop",
                    &format!("log prefix \"rampart {host} drop input: \" group 1"),
                ],
                &[],
            );
        }
    }

    #[test]
    fn each_host_accepts_and_sends_only_its_flows() {
        check(
            "lb1",
            &[
                "ip daddr 203.0.113.10 tcp dport 443 ct state new accept",
                "ip daddr 203.0.113.10 tcp dport 80 ct state new accept",
                "tcp dport { 80, 443 } ct state new add @public_flood { ip saddr limit rate over 50/second burst 100 packets } counter drop",
                "ip saddr 198.18.1.10 ip daddr 198.18.1.11 tcp dport 8443 ct state new accept",
                "ip saddr 198.18.9.10 ip daddr 198.18.9.2 tcp dport 9090 ct state new accept",
            ],
            &["dport 3306"],
        );
        check(
            "web1",
            &[
                "ip saddr 198.18.1.10 ip daddr 198.18.1.11 tcp dport 8443 ct state new accept",
                "ip saddr 198.18.2.11 ip daddr 198.18.2.21 tcp dport 3306 ct state new accept",
                "ip saddr 198.18.2.11 ip daddr 198.18.2.22 tcp dport 3306 ct state new accept",
            ],
            &["public_flood", "dport 443 "],
        );
        // Either database server may be the primary: each accepts the web servers and
        // the other one, and may connect to the other.
        check(
            "db1",
            &[
                "ip saddr { 198.18.2.11, 198.18.2.12, 198.18.2.22, 198.18.2.3 } ip daddr 198.18.2.21 tcp dport 3306 ct state new accept",
                "ip saddr 198.18.2.21 ip daddr 198.18.2.22 tcp dport 3306 ct state new accept",
                // The backup host: its source and its keeper's status, nobody else.
                "ip saddr 198.18.2.3 ip daddr 198.18.2.21 tcp dport 9108 ct state new accept",
                "ip saddr 198.18.9.3 ip daddr 198.18.9.21 tcp dport 9104 ct state new accept",
            ],
            &["dport 8443", "198.18.2.11 ip daddr 198.18.2.21 tcp dport 9108"],
        );
        // The backup host opens connections to the databases only, and takes none but
        // its own host's.
        check(
            "backup",
            &[
                "ip saddr 198.18.2.3 ip daddr 198.18.2.21 tcp dport 3306 ct state new accept",
                "ip saddr 198.18.2.3 ip daddr 198.18.2.22 tcp dport 9108 ct state new accept",
                "ip saddr 198.18.9.3 ip daddr 198.18.9.22 tcp dport 9104 ct state new accept",
                "ip saddr 198.18.9.3 ip daddr 198.18.9.2 tcp dport 9090 ct state new accept",
            ],
            &["dport 9107", "dport 8443 "],
        );
        check(
            "db2",
            &[
                "ip saddr { 198.18.2.11, 198.18.2.12, 198.18.2.21, 198.18.2.3 } ip daddr 198.18.2.22 tcp dport 3306 ct state new accept",
                "ip saddr 198.18.2.22 ip daddr 198.18.2.21 tcp dport 3306 ct state new accept",
            ],
            &[],
        );
        check(
            "client",
            &[
                "ip saddr 203.0.113.100 ip daddr 203.0.113.10 tcp dport 443 ct state new accept",
                "ip saddr 203.0.113.100 ip daddr 203.0.113.53 udp dport 53 ct state new accept",
            ],
            &["198.18."],
        );
        check(
            "monitor",
            &[
                "ip daddr 198.18.9.2 tcp dport 9090 ct state new accept",
                "ip saddr { 198.18.9.53, 198.18.9.10 } ip daddr 198.18.9.2 tcp dport 2380 ct state new accept",
                "ip saddr { 198.18.9.11, 198.18.9.12, 198.18.9.21, 198.18.9.22 } ip daddr 198.18.9.2 tcp dport 2379 ct state new accept",
                "ip saddr 198.18.9.2 ip daddr 198.18.9.53 tcp dport 2380 ct state new accept",
                "ip saddr 198.18.9.2 ip daddr 198.18.9.10 tcp dport 2381 ct state new accept",
            ],
            &[
                "ip saddr 198.18.9.2 ip daddr 198.18.9.2",
                "dport 2381 ct state new accept comment \"etcd metrics\"",
            ],
        );
        // etcd on a member that is not the monitor: metrics from the monitor only.
        check(
            "dns",
            &[
                "ip saddr 198.18.9.2 ip daddr 198.18.9.53 tcp dport 2381 ct state new accept",
                "ip saddr 198.18.9.53 ip daddr 198.18.9.10 tcp dport 2380 ct state new accept",
            ],
            &["ip saddr 198.18.9.53 ip daddr 198.18.9.2 tcp dport 2381"],
        );
        // The etcd clients send to every member's client port and nowhere else of etcd.
        check(
            "db1",
            &[
                "ip saddr 198.18.9.21 ip daddr 198.18.9.2 tcp dport 2379 ct state new accept",
                "ip saddr 198.18.9.21 ip daddr 198.18.9.53 tcp dport 2379 ct state new accept",
                "ip saddr 198.18.9.21 ip daddr 198.18.9.10 tcp dport 2379 ct state new accept",
            ],
            &["dport 2380", "dport 2381"],
        );
        check("client", &[], &["dport 2379", "dport 2380", "dport 2381"]);
    }
}

//! The isolated fabric with real network namespaces, bridges and veth pairs: hosts reach
//! each other only over the segments they share, the root namespace gets nothing, and
//! `destroy` removes everything by name. Needs root: skipped visibly otherwise (CI runs
//! as root). Connections are attempted with bash's /dev/tcp from inside a namespace: a
//! refused connection proves the address is reachable, "unreachable" that it is not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use rampart_infra::netns::Fabric;
use rampart_test_support::client::tool;
use rampart_test_support::require_root;
use rampart_topology::{Mode, Topology};

/// Destroys the fabric when dropped, even if the test panics.
struct Guard(Fabric);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.destroy();
    }
}

/// Tries a TCP connection to `addr:port` from inside `host`; returns bash's error text
/// (empty when it connected).
fn attempt(f: &Fabric, host: &str, addr: &str, port: u16) -> String {
    let h = f.topology.host(host).unwrap().clone();
    let out = f
        .command(&h, "timeout")
        .unwrap()
        .args([
            "3",
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/{addr}/{port}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn hosts_reach_only_their_segments_and_destroy_leaves_nothing() {
    if !require_root("network namespaces") {
        return;
    }
    let prefix = format!("rt{}", std::process::id() % 1_000_000);
    let fabric = Fabric::new(&prefix, Topology::default_for(Mode::Isolated, 0)).unwrap();
    let g = Guard(fabric.clone());
    fabric.create().unwrap();
    assert_eq!(fabric.existing().unwrap().len(), fabric.namespaces().len());

    // Same segment: reachable (nothing listens, so the connection is refused).
    let e = attempt(&fabric, "client", "203.0.113.10", 1);
    assert!(e.contains("refused"), "client -> lb1 public: {e}");
    let e = attempt(&fabric, "web1", "198.18.2.21", 1);
    assert!(e.contains("refused"), "web1 -> db1 data: {e}");
    let e = attempt(&fabric, "lb1", "198.18.1.12", 1);
    assert!(e.contains("refused"), "lb1 -> web2 app: {e}");
    // No shared segment: no route at all.
    let e = attempt(&fabric, "client", "198.18.1.11", 1);
    assert!(e.contains("unreachable"), "client -> web1: {e}");
    let e = attempt(&fabric, "lb1", "198.18.2.21", 1);
    assert!(e.contains("unreachable"), "lb1 -> db1 data: {e}");

    // No namespace has a default route; the root namespace has nothing of the fabric.
    for host in &fabric.topology.hosts {
        let out = fabric
            .command(host, "ip")
            .unwrap()
            .args(["route", "show", "default"])
            .output()
            .unwrap();
        assert!(out.stdout.is_empty(), "{}: default route", host.name);
    }
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.contains("br-pub") && !links.contains(" p-client"),
        "{links}"
    );
    let routes = Command::new("ip").args(["route"]).output().unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(
        !routes.contains("198.18.") && !routes.contains("203.0.113."),
        "{routes}"
    );

    // Creating again over an existing fabric replaces it.
    fabric.create().unwrap();
    fabric.destroy().unwrap();
    assert!(fabric.existing().unwrap().is_empty());
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&list.stdout).contains(&format!("{prefix}-")));
    drop(g);
}

/// With every host's firewall loaded, a connection attempt from every host to every
/// service port of every other host is open (connected or refused: the SYN reached the
/// host) exactly when the policy allows it; everything else is dropped (a timeout, or
/// "operation not permitted" when the source's own output chain drops it). Prints the
/// matrix.
#[test]
fn firewall_matrix_matches_the_policy() {
    if !require_root("network namespaces") || tool("nft", None).is_none() {
        return;
    }
    let prefix = format!("rm{}", std::process::id() % 1_000_000);
    let t = Topology::default_for(Mode::Isolated, 0);
    let fabric = Fabric::new(&prefix, t.clone()).unwrap();
    let _g = Guard(fabric.clone());
    fabric.create().unwrap();
    fabric.load_firewalls().unwrap();
    // The services' ports, and etcd's client, peer and metrics ports.
    let ports: [u16; 11] = [80, 443, 53, 8443, 9180, 9181, 3306, 9090, 2379, 2380, 2381];
    let mut failures = Vec::new();
    let mut matrix = String::from("from \\ to:port      result   expected\n");
    for src in &t.hosts {
        // One shell per source tries every target in parallel, each bounded by 2 s.
        let mut script = String::new();
        let mut cases = Vec::new();
        for dst in t.hosts.iter().filter(|d| d.name != src.name) {
            for (seg, addr) in &dst.segments {
                let _ = seg;
                for port in ports {
                    let i = cases.len();
                    cases.push((dst.name.clone(), addr.to_string(), port));
                    script.push_str(&format!(
                        "( timeout 2 bash -c 'exec 3<>/dev/tcp/{addr}/{port}' 2>/tmp/.{prefix}-{i} ; echo \"{i} $?\" ) &\n"
                    ));
                }
            }
        }
        script.push_str("wait\n");
        let out = fabric
            .command(src, "bash")
            .unwrap()
            .args(["-c", &script])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(i), Some(code)) = (it.next(), it.next()) else {
                continue;
            };
            let i: usize = i.parse().unwrap();
            let err_file = format!("/tmp/.{prefix}-{i}");
            let err = std::fs::read_to_string(&err_file).unwrap_or_default();
            let _ = std::fs::remove_file(&err_file);
            let (dst, addr, port) = &cases[i];
            let open = code == "0" || err.contains("refused");
            let expected = t.allows(&src.name, dst, rampart_topology::policy::Proto::Tcp, *port)
                && t.host(dst).is_some_and(|d| {
                    t.policy().flows.iter().any(|f| {
                        f.to == *dst
                            && f.port == *port
                            && t.segment_addr(d, f.segment).map(|a| a.to_string())
                                == Some(addr.clone())
                    })
                });
            matrix.push_str(&format!(
                "{:<8} {:>7} {:<15}:{:<5} {:<8} {}\n",
                src.name,
                dst,
                addr,
                port,
                if open { "open" } else { "dropped" },
                if expected { "open" } else { "dropped" }
            ));
            if open != expected {
                failures.push(format!(
                    "{} -> {dst} {addr}:{port}: open={open} expected={expected} ({})",
                    src.name,
                    err.trim()
                ));
            }
        }
    }
    println!("{matrix}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

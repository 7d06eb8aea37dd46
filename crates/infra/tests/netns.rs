//! The isolated fabric with real network namespaces, bridges and veth pairs: hosts reach
//! each other only over the segments they share, the root namespace gets nothing, and
//! `destroy` removes everything by name. Needs root: skipped visibly otherwise (CI runs
//! as root). Connections are attempted with bash's /dev/tcp from inside a namespace: a
//! refused connection proves the address is reachable, "unreachable" that it is not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use rampart_infra::netns::Fabric;
use rampart_topology::{Mode, Topology};

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    let root = String::from_utf8_lossy(&out.stdout).trim() == "0";
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs the tests as root"
        );
        eprintln!("SKIPPED: needs root for network namespaces");
    }
    root
}

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
    if !is_root() {
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

//! Every host's rendered nftables ruleset passes `nft -c`, and loads into a real network
//! namespace (created and deleted by this test, by its own name). Needs root and the
//! `nftables` package: skipped visibly outside CI when either is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use rampart_test_support::client::tool;
use rampart_test_support::{require_root, run_with_stdin};

const RAMPART: &str = env!("CARGO_BIN_EXE_rampart");
const HOSTS: [&str; 8] = [
    "client", "dns", "lb1", "web1", "web2", "db1", "db2", "monitor",
];

fn ruleset(host: &str) -> String {
    let out = Command::new(RAMPART)
        .args(["firewall", "show", host])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A network namespace deleted (by name) when dropped.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Netns {
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add {name}");
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn every_rendered_ruleset_passes_nft_check_and_loads_in_a_namespace() {
    if !require_root("nft and network namespaces") {
        return;
    }
    let Some(nft) = tool("nft", None) else { return };
    for host in HOSTS {
        let rules = ruleset(host);
        let out = run_with_stdin(Command::new(&nft).args(["-c", "-f", "-"]), &rules);
        assert!(
            out.status.success(),
            "{host}: nft -c: {}\n{rules}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ns = Netns::new(format!("rt-fw-{}-{host}", std::process::id()));
        // Loading twice replaces the table rather than failing or duplicating it.
        for attempt in ["load", "reload"] {
            let out = run_with_stdin(
                Command::new("ip")
                    .args(["netns", "exec", &ns.0])
                    .arg(&nft)
                    .args(["-f", "-"]),
                &rules,
            );
            assert!(
                out.status.success(),
                "{host}: {attempt}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let listed = Command::new("ip")
            .args(["netns", "exec", &ns.0])
            .arg(&nft)
            .args(["list", "ruleset"])
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&listed.stdout);
        assert_eq!(listed.matches("table inet rampart").count(), 1, "{listed}");
        assert!(listed.contains("policy drop"), "{listed}");
        assert!(
            listed.contains(&format!("rampart {host} drop input")),
            "{listed}"
        );
    }
    // Nothing left behind.
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let prefix = format!("rt-fw-{}-", std::process::id());
    assert!(!String::from_utf8_lossy(&list.stdout).contains(&prefix));
}

#[test]
fn unknown_host_names_the_hosts_there_are() {
    let out = Command::new(RAMPART)
        .args(["firewall", "show", "web9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no host web9") && err.contains("lb1"), "{err}");
}

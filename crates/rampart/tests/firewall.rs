//! Every host's rendered nftables ruleset passes `nft -c`, and loads into a real network
//! namespace (created and deleted by this test, by its own name), with the etcd flows
//! of the policy where they belong and nowhere else. Needs root and the `nftables`
//! package: skipped visibly outside CI when either is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use rampart_test_support::client::tool;
use rampart_test_support::{require_root, run_with_stdin};

const RAMPART: &str = env!("CARGO_BIN_EXE_rampart");
const HOSTS: [&str; 9] = [
    "client", "dns", "lb1", "web1", "web2", "db1", "db2", "monitor", "backup",
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
        // etcd, as the kernel lists the loaded rules: which etcd ports this host accepts
        // (input, "ip daddr <its address>") and opens (output, "ip saddr <its address>").
        let (accepts, opens) = etcd_ports(&listed);
        assert_eq!(
            (accepts.as_slice(), opens.as_slice()),
            expected_etcd(host),
            "{host}:\n{listed}"
        );
    }
    // Nothing left behind.
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let prefix = format!("rt-fw-{}-", std::process::id());
    assert!(!String::from_utf8_lossy(&list.stdout).contains(&prefix));
}

/// The etcd ports (2379 client, 2380 peer, 2381 metrics) a host's loaded ruleset accepts
/// new connections to and opens new connections to, each sorted and deduplicated.
fn etcd_ports(listed: &str) -> (Vec<u16>, Vec<u16>) {
    let (mut accepts, mut opens) = (Vec::new(), Vec::new());
    let mut chain = "";
    for line in listed.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("chain ") {
            chain = name.split_whitespace().next().unwrap_or("");
        }
        for port in [2379, 2380, 2381] {
            if line.contains(&format!("tcp dport {port} ct state new accept")) {
                match chain {
                    "input" => accepts.push(port),
                    "output" => opens.push(port),
                    _ => panic!("etcd rule in chain {chain}: {line}"),
                }
            }
        }
    }
    for v in [&mut accepts, &mut opens] {
        v.sort_unstable();
        v.dedup();
    }
    (accepts, opens)
}

/// The policy's etcd flows per host: (ports accepted, ports opened).
fn expected_etcd(host: &str) -> (&'static [u16], &'static [u16]) {
    match host {
        // The monitor: a member, and the one host that reads the others' metrics.
        "monitor" => (&[2379, 2380], &[2380, 2381]),
        // The other members: their metrics for the monitor only.
        "dns" | "lb1" => (&[2379, 2380, 2381], &[2380]),
        // The clients: the keepers on the database hosts and the web servers.
        "db1" | "db2" | "web1" | "web2" => (&[], &[2379]),
        _ => (&[], &[]),
    }
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

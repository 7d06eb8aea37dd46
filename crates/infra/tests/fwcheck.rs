//! `firewall::check` against real namespaces: a freshly loaded fabric passes, also after
//! traffic has moved counters and filled the load balancer's dynamic set; each kind of
//! tampering (an added rule, an extra table, a weakened chain policy, a deleted table) is
//! reported for the host it was done on and no other; a destroyed fabric reports every
//! host missing. Needs root and nft: skipped visibly otherwise (CI runs as root). All
//! traffic stays inside the test's own namespaces.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Instant;

use rampart_infra::firewall::{check, HostCheck};
use rampart_infra::netns::Fabric;
use rampart_test_support::client::tool;
use rampart_test_support::require_root;
use rampart_topology::{Mode, Topology};

/// Destroys the fabric (and a scratch namespace a failed check left) when dropped, even
/// if the test panics.
struct Guard(Fabric);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.destroy();
        let scratch = format!("{}-fwchk", self.0.prefix);
        if netns_list().contains(&scratch) {
            let _ = Command::new("ip").args(["netns", "del", &scratch]).status();
        }
    }
}

fn netns_list() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Runs `nft args` inside `host`'s namespace with `input` on stdin; panics on failure.
fn nft(f: &Fabric, host: &str, args: &[&str], input: &str) -> String {
    let h = f.topology.host(host).unwrap();
    let out = rampart_test_support::run_with_stdin(f.command(h, "nft").unwrap().args(args), input);
    assert!(
        out.status.success(),
        "{host}: nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Checks, prints the result and how long it took, and returns the hosts with problems.
fn reported(f: &Fabric) -> Vec<HostCheck> {
    let started = Instant::now();
    let checks = check(f).unwrap();
    let took = started.elapsed();
    assert_eq!(checks.len(), f.topology.hosts.len());
    let bad: Vec<HostCheck> = checks.into_iter().filter(|c| !c.ok()).collect();
    println!("check took {took:?}; {} host(s) with problems", bad.len());
    for c in &bad {
        println!("{} ({}):", c.host, c.namespace);
        for p in &c.problems {
            println!("  {p}");
        }
    }
    assert!(
        !netns_list().contains(&format!("{}-fwchk", f.prefix)),
        "scratch namespace left behind"
    );
    bad
}

fn names(checks: &[HostCheck]) -> Vec<&str> {
    checks.iter().map(|c| c.host.as_str()).collect()
}

fn problems_of(checks: &[HostCheck], host: &str) -> String {
    checks
        .iter()
        .find(|c| c.host == host)
        .map(|c| c.problems.join("\n"))
        .unwrap_or_default()
}

#[test]
fn check_passes_a_loaded_fabric_and_reports_each_tampered_host() {
    if !require_root("network namespaces") || tool("nft", None).is_none() {
        return;
    }
    let prefix = format!("fc{}", std::process::id() % 1_000_000);
    let fabric = Fabric::new(&prefix, Topology::default_for(Mode::Isolated, 0)).unwrap();
    let _g = Guard(fabric.clone());
    fabric.create().unwrap();
    fabric.load_firewalls().unwrap();

    // A leftover scratch namespace (a crashed check) is replaced, not trusted.
    let scratch = format!("{prefix}-fwchk");
    assert!(Command::new("ip")
        .args(["netns", "add", &scratch])
        .status()
        .unwrap()
        .success());
    assert!(reported(&fabric).is_empty());
    assert!(reported(&fabric).is_empty());

    // Traffic from the client: 443 is allowed (refused: nothing listens), which adds the
    // client to lb1's dynamic set; 22 is dropped by the client's own output chain
    // (TCP retries a SYN its output chain drops, so that attempt times out silently).
    let client = fabric.topology.host("client").unwrap();
    for port in [443, 443, 22] {
        let out = fabric
            .command(client, "timeout")
            .unwrap()
            .args([
                "2",
                "bash",
                "-c",
                &format!("exec 3<>/dev/tcp/203.0.113.10/{port}"),
            ])
            .output()
            .unwrap();
        println!(
            "client -> 203.0.113.10:{port}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let state = nft(&fabric, "lb1", &["list", "table", "inet", "rampart"], "");
    assert!(state.contains("elements = { 203.0.113.100"), "{state}");
    let client_state = nft(
        &fabric,
        "client",
        &["list", "counter", "inet", "rampart", "dropped_output"],
        "",
    );
    assert!(!client_state.contains("packets 0 "), "{client_state}");
    assert!(
        reported(&fabric).is_empty(),
        "counters and dynamic sets are state"
    );

    // An added rule on db1: db1 only, naming the rule.
    nft(
        &fabric,
        "db1",
        &[
            "add", "rule", "inet", "rampart", "input", "tcp", "dport", "22", "accept",
        ],
        "",
    );
    let bad = reported(&fabric);
    assert_eq!(names(&bad), ["db1"]);
    let p = problems_of(&bad, "db1");
    assert!(
        p.contains("chain input") && p.contains("+ tcp dport 22 accept"),
        "{p}"
    );

    // A separate accept-all table on web1.
    nft(
        &fabric,
        "web1",
        &["-f", "-"],
        "table inet evil {\n\tchain c { type filter hook input priority -10; policy accept; }\n}\n",
    );
    let bad = reported(&fabric);
    assert_eq!(names(&bad), ["web1", "db1"]);
    let p = problems_of(&bad, "web1");
    assert!(p.contains("extra table inet evil"), "{p}");
    assert!(
        p.contains("table inet evil, chain c (hook input): policy accept"),
        "{p}"
    );

    // A weakened chain policy on web2.
    nft(
        &fabric,
        "web2",
        &["chain", "inet", "rampart", "output", "{ policy accept; }"],
        "",
    );
    let bad = reported(&fabric);
    assert_eq!(names(&bad), ["web1", "web2", "db1"]);
    let p = problems_of(&bad, "web2");
    assert!(
        p.contains("table inet rampart, chain output (hook output): policy accept, not drop"),
        "{p}"
    );
    assert!(
        p.contains("+ type filter hook output priority filter; policy accept;"),
        "{p}"
    );

    // lb1's table deleted.
    nft(&fabric, "lb1", &["delete", "table", "inet", "rampart"], "");
    let bad = reported(&fabric);
    assert_eq!(names(&bad), ["lb1", "web1", "web2", "db1"]);
    assert_eq!(
        problems_of(&bad, "lb1"),
        "table inet rampart is missing: no policy is loaded"
    );

    // Reloading restores web2, db1 and lb1 (`nft -f` replaces only `inet rampart`);
    // web1's extra table stays until removed.
    fabric.load_firewalls().unwrap();
    assert_eq!(names(&reported(&fabric)), ["web1"]);
    nft(&fabric, "web1", &["delete", "table", "inet", "evil"], "");
    assert!(reported(&fabric).is_empty());

    // A destroyed fabric: every host reported missing, not an error.
    fabric.destroy().unwrap();
    let bad = reported(&fabric);
    assert_eq!(bad.len(), fabric.topology.hosts.len());
    for c in &bad {
        assert_eq!(
            c.problems,
            [format!("namespace {} does not exist", c.namespace)]
        );
    }
}

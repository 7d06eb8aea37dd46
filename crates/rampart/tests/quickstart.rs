//! The quick start on a Debian 12 with systemd as PID 1 (issue 17, part 4): installed,
//! Debian's prometheus, alertmanager, node-exporter, etcd, mariadb, keepalived and nginx
//! packages enable their services and start them on the default ports rampart's own
//! instances use.
//!
//! A systemd booted by `systemd-nspawn` (test-support's `Booted`, in a network namespace
//! this test makes, with this checkout bound read-only) is put in a fresh install's state:
//! those services enabled and started, as the packages' maintainer scripts do. Then:
//! - with `RAMPART_KEEP_SERVICES=1`, `./run up --local` leaves them running and says so,
//!   and `rampart up` refuses to start, naming each address they hold (the negative
//!   control: before that check, the gate and every agent failed to bind while Debian's
//!   prometheus and node-exporter answered their readiness probes, and `up` said "up");
//! - `./run up --local` as the quick start gives it stops and disables each one, naming
//!   it and the command that undoes it, and comes up; every listening socket in the host
//!   then belongs to rampart's run (its unit's cgroup), apart from the test's own sshd.
//!
//! The binary is this build's (`RAMPART_BIN`), so nothing compiles inside.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rampart_test_support::booted::{Booted, Ssh};
use rampart_test_support::client::tool;
use rampart_test_support::require_root;

const RAMPART: &str = env!("CARGO_BIN_EXE_rampart");

/// Debian's units the quick start must leave stopped and disabled (`./run`'s
/// `PACKAGED_SERVICES`).
const PACKAGED: [&str; 7] = [
    "prometheus",
    "prometheus-alertmanager",
    "prometheus-node-exporter",
    "etcd",
    "mariadb",
    "keepalived",
    "nginx",
];

/// The test's namespace, deleted by name when dropped (after the host is).
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The test's scratch directory (its ssh keys among it), removed when dropped, after the
/// host and the namespace, so a failed run leaves it behind no more than a passed one.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn ssh_run(ssh: &Ssh, command: &str, secs: u32) -> (bool, String) {
    let out = Command::new("timeout")
        .arg(secs.to_string())
        .arg("ssh")
        .arg("-F")
        .arg(&ssh.config)
        .arg("quickstart")
        .arg(command)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The process ids in `ss -ltnupH` lines (`users:(("sshd",pid=80,fd=3))`).
fn pids(line: &str) -> Vec<u32> {
    line.split("pid=")
        .skip(1)
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
        .collect()
}

/// Runs `./run up --local` as a transient unit `unit` with `env`, and waits (bounded)
/// until it says rampart is up or the unit has ended. Returns (up, its output).
fn quick_start(ssh: &Ssh, root: &Path, unit: &str, env: &[(&str, &str)]) -> (bool, String) {
    let log = format!("/var/log/{unit}.log");
    let setenv: String = env
        .iter()
        .map(|(k, v)| format!(" --setenv={k}={v}"))
        .collect();
    let (ok, text) = ssh_run(
        ssh,
        &format!(
            "systemd-run --quiet --unit={unit} --working-directory={root} \
             -p StandardOutput=file:{log} -p StandardError=file:{log}{setenv} \
             {root}/run up --local",
            root = root.display()
        ),
        30,
    );
    assert!(ok, "systemd-run: {text}");
    let end = Instant::now() + Duration::from_secs(240);
    loop {
        let (_, out) = ssh_run(ssh, &format!("cat {log}"), 10);
        if out.contains("rampart is up in") {
            return (true, out);
        }
        let (_, state) = ssh_run(ssh, &format!("systemctl is-active {unit}"), 10);
        if !matches!(state.trim(), "active" | "activating") || Instant::now() > end {
            // What it wrote up to its end.
            return (false, ssh_run(ssh, &format!("cat {log}"), 10).1);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The listening sockets in the host: how many belong to `unit`'s processes (its
/// cgroup), and the others, apart from the test's own sshd.
fn listeners(ssh: &Ssh, unit: &str) -> (usize, Vec<String>) {
    let (_, text) = ssh_run(ssh, "ss -ltnupH", 10);
    let mut ours = 0;
    let mut others = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let ps = pids(line);
        let owners: Vec<String> = ps
            .iter()
            .map(|p| ssh_run(ssh, &format!("cat /proc/{p}/cgroup"), 10).1)
            .collect();
        let all = |what: &str| !ps.is_empty() && owners.iter().all(|c| c.contains(what));
        if all(&format!("/{unit}.service")) {
            ours += 1;
        } else if !all("/ssh.service") {
            others.push(format!("{} {owners:?}", line.trim()));
        }
    }
    (ours, others)
}

#[test]
fn the_quick_start_stops_debians_services_and_only_rampart_holds_the_ports() {
    if !require_root("network namespaces and systemd-nspawn") {
        return;
    }
    let (Some(_), Some(_)) = (tool("systemd-nspawn", None), tool("sshd", None)) else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap();
    let bin = PathBuf::from(RAMPART);
    let mut binds: Vec<&Path> = vec![&root];
    let bin_dir = bin.parent().unwrap();
    if !bin.starts_with(&root) {
        binds.push(bin_dir);
    }
    let scratch =
        Scratch(std::env::temp_dir().join(format!("rampart-quickstart-{}", std::process::id())));
    let dir = scratch.0.clone();
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let ns = Netns(format!("rq{}", std::process::id() % 1_000_000));
    for args in [
        vec!["netns", "add", &ns.0],
        vec!["-n", &ns.0, "link", "set", "lo", "up"],
    ] {
        assert!(Command::new("ip").args(&args).status().unwrap().success());
    }
    let ssh = Ssh::new(&dir.join("ssh")).unwrap();
    let t0 = Instant::now();
    let host = Booted::boot_with("quickstart", &ns.0, &dir.join("host"), &ssh, &binds).unwrap();
    ssh.write_config(
        &[("quickstart".into(), ns.0.clone(), host.host_key.clone())],
        None,
    )
    .unwrap();
    println!("booted in {:.1} s", t0.elapsed().as_secs_f64());

    // A fresh install's state. The packages' files come from this machine's /usr, and
    // the root is empty, so first what their maintainer scripts would have made.
    // Alertmanager's gossip needs a private address with a default route, which this
    // namespace (loopback only, no route out) lacks: without `--cluster.listen-address=`
    // (what a single Alertmanager runs with) it exits, systemd restarts it until its
    // start limit, and whether it counted as started depended on when it was asked.
    let (ok, text) = ssh_run(
        &ssh,
        "set -e; \
         install -d -o prometheus -g prometheus /var/lib/prometheus/metrics2 /var/lib/prometheus/alertmanager; \
         install -d -o etcd -g etcd -m 0700 /var/lib/etcd; \
         install -d /var/log/nginx /var/lib/nginx; \
         echo 'ARGS=\"--cluster.listen-address=\"' > /etc/default/prometheus-alertmanager; \
         mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db >/dev/null 2>&1; \
         printf 'global_defs {\\n  enable_script_security\\n}\\nvrrp_instance VI_1 {\\n  interface lo\\n  virtual_router_id 51\\n  priority 100\\n  virtual_ipaddress {\\n    127.0.9.9/32\\n  }\\n}\\n' > /etc/keepalived/keepalived.conf",
        120,
    );
    assert!(ok, "preparing the fresh install: {text}");
    let units: Vec<String> = PACKAGED.iter().map(|u| format!("{u}.service")).collect();
    let (_, text) = ssh_run(
        &ssh,
        &format!("systemctl enable --now {} 2>&1", units.join(" ")),
        120,
    );
    let active = |ssh: &Ssh| -> BTreeSet<String> {
        PACKAGED
            .iter()
            .filter(|u| {
                ssh_run(ssh, &format!("systemctl is-active {u}.service"), 10)
                    .1
                    .trim()
                    == "active"
            })
            .map(|u| (*u).to_owned())
            .collect()
    };
    let before = active(&ssh);
    let (_, sockets) = ssh_run(&ssh, "ss -ltnupH", 10);
    println!("a fresh install's services, started: {before:?}\n{sockets}");
    assert!(
        before.len() >= 4,
        "too few of Debian's services started to prove anything ({before:?}):\n{text}"
    );

    let bin_env = bin.display().to_string();
    // The negative control: kept running, their sockets are there beside rampart's.
    let (up, out) = quick_start(
        &ssh,
        &root,
        "rampart-kept",
        &[
            ("RAMPART_BIN", &bin_env),
            ("RAMPART_STATE", "/var/lib/rampart-kept"),
            ("RAMPART_KEEP_SERVICES", "1"),
        ],
    );
    let _ = ssh_run(&ssh, "systemctl stop rampart-kept 2>/dev/null", 60);
    assert!(!up, "rampart came up beside Debian's services:\n{out}");
    assert!(
        out.contains("leaving Debian's prometheus service as it is"),
        "{out}"
    );
    assert_eq!(active(&ssh), before, "RAMPART_KEEP_SERVICES=1 changed them");
    let busy: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("Address already in use"))
        .collect();
    assert!(
        out.contains("taken by another program; nothing was started")
            && busy.iter().any(|l| l.contains("monitor/gate ingest"))
            && busy.iter().any(|l| l.contains("web1/agent metrics")),
        "{out}"
    );
    let (kept, _) = listeners(&ssh, "rampart-kept");
    assert_eq!(kept, 0, "rampart-kept left listeners");
    println!(
        "kept running (RAMPART_KEEP_SERVICES=1): rampart up refused, {} addresses in use named, e.g.\n{}",
        busy.len(),
        busy.iter().take(3).copied().collect::<Vec<_>>().join("\n")
    );

    // The quick start.
    let t0 = Instant::now();
    let (up, out) = quick_start(
        &ssh,
        &root,
        "rampart-quickstart",
        &[
            ("RAMPART_BIN", &bin_env),
            ("RAMPART_STATE", "/var/lib/rampart-quickstart"),
        ],
    );
    let took = t0.elapsed();
    assert!(up, "the quick start did not come up:\n{out}");
    for u in &before {
        assert!(
            out.contains(&format!("stopped and disabled Debian's {u} service")),
            "{u} not named:\n{out}"
        );
        assert!(
            out.contains(&format!("undo with: systemctl enable --now {u}")),
            "{out}"
        );
    }
    let after = active(&ssh);
    assert!(after.is_empty(), "still running: {after:?}");
    for u in PACKAGED {
        let (_, enabled) = ssh_run(&ssh, &format!("systemctl is-enabled {u}.service"), 10);
        assert_ne!(enabled.trim(), "enabled", "{u} still enabled");
    }

    // Every listener is rampart's (its run's cgroup) or the test's sshd.
    let (rampart, others) = listeners(&ssh, "rampart-quickstart");
    assert!(
        others.is_empty(),
        "listeners not rampart's:\n{}",
        others.join("\n")
    );
    assert!(rampart >= 20, "only {rampart} of rampart's listeners");
    println!(
        "quick start: up in {:.1} s after stopping {} of Debian's services; {rampart} listening \
         sockets, every one rampart's (plus the test's sshd)",
        took.as_secs_f64(),
        before.len()
    );
    let (_, down) = ssh_run(
        &ssh,
        &format!("{} down --state /var/lib/rampart-quickstart", bin.display()),
        120,
    );
    println!("{}", down.trim());
    drop(host);
}

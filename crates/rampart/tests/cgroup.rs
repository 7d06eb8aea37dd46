//! Issue 19 on a real kernel: a host cgroup with a 0.5-CPU quota and a 64M memory limit
//! (`rampart_infra::cgroup`), a CPU burner started through `rampart cgexec` in it with
//! its children, its CPU use held near the quota, and the agent's cgroup collector
//! reporting 64M and one CPU from it. Needs root and writable cgroups; skips visibly
//! otherwise (fails in CI).

#![allow(clippy::unwrap_used)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rampart_agent::cgroup::{Location, Tracker};
use rampart_infra::cgroup::Cgroups;
use rampart_topology::Limits;

/// Removes the test's cgroups by their names and kills its burner (by its process
/// group, which is its pid) whatever happens.
struct Cleanup {
    cgroups: Cgroups,
    parent: String,
    path: String,
    child: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.wait();
        }
        // The killed processes leave their cgroups asynchronously: retry briefly.
        for path in [&self.path, &self.parent] {
            let _ = rampart_infra::process::wait_until(
                "cgroup removed",
                Duration::from_secs(5),
                || self.cgroups.remove(path).unwrap_or(true).then_some(()),
            );
        }
    }
}

/// `pid`'s cgroup path in each hierarchy it names (`/proc/PID/cgroup`).
fn cgroups_of(pid: u32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Whether every line for `hierarchies` (v1 controller names, or v2's `0::`) names
/// `path`.
fn in_cgroup(pid: u32, v2: bool, path: &str) -> bool {
    let lines = cgroups_of(pid);
    let wanted: Vec<&str> = if v2 {
        vec![""]
    } else {
        vec!["cpu", "cpuacct", "memory"]
    };
    wanted.iter().all(|w| {
        lines.iter().any(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, p) = (parts.next(), parts.next().unwrap_or(""), parts.next());
            let hit = if w.is_empty() {
                controllers.is_empty()
            } else {
                controllers.split(',').any(|c| c == *w)
            };
            hit && p == Some(path)
        })
    })
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    rampart_test_support::eventually(what, Duration::from_secs(5), || f().then_some(()));
}

#[test]
fn a_host_cgroup_limits_its_processes_and_the_agent_reports_it() {
    if !rampart_test_support::require_root("creating cgroups") {
        return;
    }
    let cgroups = match Cgroups::detect() {
        Ok(c) => c,
        Err(why) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI has writable cgroups: {why}"
            );
            eprintln!("SKIPPED: no cgroups to create: {why}");
            return;
        }
    };
    let parent = format!("rampart-cgtest-{}", std::process::id());
    let path = format!("{parent}/burn");
    let mut cleanup = Cleanup {
        cgroups: cgroups.clone(),
        parent,
        path: path.clone(),
        child: None,
    };
    let limits = Limits {
        millicpus: Some(500),
        memory: Some(64 << 20),
    };
    let procs = cgroups.create(&path, &limits).unwrap();
    println!(
        "cgroup {path} ({}): {}",
        if cgroups.v2 { "v2" } else { "v1" },
        procs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );

    // Two busy loops for a bounded 2 s (timeout kills its process group), children of
    // the program cgexec runs: unlimited they would use two cores.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rampart"));
    cmd.arg("cgexec");
    for p in &procs {
        cmd.arg("--procs").arg(p);
    }
    cmd.args([
        "--",
        "timeout",
        "2",
        "sh",
        "-c",
        "while :; do :; done & while :; do :; done",
    ])
    .stdin(Stdio::null())
    .process_group(0);
    let before = cgroups.cpu_usage_ns(&path).unwrap();
    let t0 = Instant::now();
    let child = cleanup.child.insert(cmd.spawn().unwrap());
    let pid = child.id();

    let cg = format!("/{path}");
    eventually("the burner in its cgroup", || {
        in_cgroup(pid, cgroups.v2, &cg)
    });
    println!("pid {pid}: {:?}", cgroups_of(pid));
    let children = || -> Vec<u32> {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    eventually("the burner's child", || !children().is_empty());
    for c in children() {
        assert!(
            in_cgroup(c, cgroups.v2, &cg),
            "child {c}: {:?}",
            cgroups_of(c)
        );
        println!("child {c}: in {cg}");
    }

    let status = child.wait().unwrap();
    let elapsed = t0.elapsed().as_secs_f64();
    cleanup.child = None;
    // timeout's own status when it killed the loops.
    assert_eq!(status.code(), Some(124), "{status}");
    let used = (cgroups.cpu_usage_ns(&path).unwrap() - before) as f64 / 1e9;
    let cores = used / elapsed;
    println!("cpu: {used:.3} s in {elapsed:.3} s = {cores:.3} cores (quota 0.5)");
    assert!(used > 0.0, "no CPU time accounted to the cgroup");
    assert!(cores < 1.0, "{cores:.3} cores: the quota does not hold");

    // The agent's collector pointed at the cgroup: 64M and one CPU.
    let dirs: Vec<PathBuf> = procs
        .iter()
        .map(|p| p.parent().unwrap().to_path_buf())
        .collect();
    let location = if cgroups.v2 {
        Location::v2(&cg, &dirs[0])
    } else {
        let dir = |h: &str| cgroups.root.join(h).join(&path);
        Location::v1(&cg, &dir("cpu"), &dir("cpuacct"), &dir("memory"))
    };
    let tracker = Tracker::at(location);
    let mut families = rampart_agent::host::collect(Path::new("/")).unwrap();
    tracker.replace(Path::new("/"), &mut families).unwrap();
    let family = |name: &str| families.iter().find(|f| f.name == name).unwrap();
    let total = family("node_memory_MemTotal_bytes").samples[0].value;
    assert_eq!(total, (64u64 << 20) as f64);
    let mut cpus: Vec<&str> = family("node_cpu_seconds_total")
        .samples
        .iter()
        .filter_map(|s| {
            s.labels
                .iter()
                .find(|(k, _)| k == "cpu")
                .map(|(_, v)| v.as_str())
        })
        .collect();
    cpus.dedup();
    assert_eq!(cpus, ["0"]);
    let busy: f64 = family("node_cpu_seconds_total")
        .samples
        .iter()
        .filter(|s| {
            s.labels
                .iter()
                .any(|(k, v)| k == "mode" && (v == "user" || v == "system"))
        })
        .map(|s| s.value)
        .sum();
    println!("agent: MemTotal {total} bytes, cpus {cpus:?}, user+system {busy:.3} s");
    assert!(busy > 0.0);

    // As `rampart up` starts an agent: cgexec --keep-open, then `ip netns exec`, whose
    // fresh /sys has no cgroup file systems; the agent finds its cgroup anyway.
    let ip = rampart_infra::netns::ip_bin().unwrap();
    let ns = Netns::add(&format!("rcgt{}", std::process::id()));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rampart"));
    cmd.arg("cgexec");
    for p in &procs {
        cmd.arg("--procs").arg(p);
    }
    let out = cmd
        .arg("--keep-open")
        .arg("--")
        .arg(&ip)
        .args(["netns", "exec", &ns.0])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "the_agent_in_a_namespace_finds_its_cgroup",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!(
        "in namespace {}: {}",
        ns.0,
        stdout.lines().find(|l| l.starts_with("own")).unwrap_or("")
    );
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("own cgroup {cg}: MemTotal 67108864, cpus 1\n")),
        "{stdout}"
    );
}

/// Set for the copy of this binary that runs inside a namespace.
const CHILD: &str = "RAMPART_CGROUP_TEST_CHILD";

/// A network namespace of the test's own (no links: no traffic), deleted by name.
struct Netns(String);

impl Netns {
    fn add(name: &str) -> Netns {
        let ip = rampart_infra::netns::ip_bin().unwrap();
        let ok = Command::new(&ip)
            .args(["netns", "add", name])
            .status()
            .unwrap();
        assert!(ok.success(), "ip netns add {name}");
        Netns(name.to_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(ip) = rampart_infra::netns::ip_bin() {
            let _ = Command::new(ip).args(["netns", "delete", &self.0]).status();
        }
    }
}

/// Run by the test above inside its cgroup and a namespace (nothing otherwise): the
/// agent's collector finds its own cgroup and prints what it reports.
#[test]
fn the_agent_in_a_namespace_finds_its_cgroup() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let root = Path::new("/");
    let location = Location::own(root).unwrap();
    let mut families = rampart_agent::host::collect(root).unwrap();
    Tracker::at(location.clone())
        .replace(root, &mut families)
        .unwrap();
    let family = |name: &str| families.iter().find(|f| f.name == name).unwrap();
    let total = family("node_memory_MemTotal_bytes").samples[0].value;
    let cpus = family("node_cpu_seconds_total").samples.len() / 8;
    println!("{location:?}");
    println!(
        "own cgroup {}: MemTotal {total}, cpus {cpus}",
        location.path
    );
}

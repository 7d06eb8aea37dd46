//! Host metrics on this machine against real tools: `promtool check metrics` reads the
//! exposition, and the real node_exporter (Debian's `prometheus-node-exporter`) emits the
//! same families with the same label names and agreeing values.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rampart_agent::{expo, host, Family};
use rampart_test_support::client::tool;
use rampart_test_support::exposition;
use rampart_test_support::{eventually, free_port, Proc};

/// One sample line of a text exposition: name, labels, value.
type Line = (String, BTreeMap<String, String>, f64);

/// The sample lines of a text exposition.
fn samples(text: &str) -> Vec<Line> {
    text.lines().filter_map(exposition::sample).collect()
}

fn value(lines: &[Line], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    lines
        .iter()
        .find(|(n, l, _)| {
            n == name
                && l.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

/// `promtool check metrics` on `text`: its exit code and everything it printed.
fn promtool_check(promtool: &Path, text: &str) -> (Option<i32>, String) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), printed)
}

/// The problems promtool reports that node_exporter's own names cause: the meminfo,
/// netstat and sockstat fields keep the kernel's spelling (`node_memory_MemTotal_bytes`),
/// which the linter calls camelCase, and the entropy families count bits. Anything else
/// is ours to fix.
fn is_node_exporter_naming_lint(problem: &str) -> bool {
    let camel = problem.starts_with("node_")
        && problem.ends_with(" metric names should be written in 'snake_case' not 'camelCase'");
    let bits = problem.starts_with("node_entropy_")
        && problem.ends_with(r#"_bits use base unit "bytes" instead of "bits""#);
    camel || bits
}

#[test]
fn host_metrics_on_this_machine_pass_promtool_check_metrics() {
    let families = host::collect(Path::new("/")).unwrap();
    let text = expo::text(&families);
    for name in [
        "node_cpu_seconds_total",
        "node_memory_MemTotal_bytes",
        "node_memory_MemAvailable_bytes",
        "node_load1",
        "node_boot_time_seconds",
        "node_filesystem_size_bytes",
        "node_time_seconds",
    ] {
        assert!(
            families.iter().any(|f| f.name == name),
            "no {name} in:\n{text}"
        );
    }
    // promtool does not notice repeated series; a scrape would reject them.
    let mut seen = BTreeSet::new();
    for (name, labels, _) in samples(&text) {
        assert!(
            seen.insert((name.clone(), labels.clone())),
            "repeated {name}{labels:?}"
        );
    }

    let Some(promtool) = tool("promtool", None) else {
        return;
    };
    let (code, printed) = promtool_check(&promtool, &text);
    let other: Vec<&str> = printed
        .lines()
        .filter(|l| !l.trim().is_empty() && !is_node_exporter_naming_lint(l))
        .collect();
    assert!(
        code == Some(0) || (code == Some(3) && other.is_empty()),
        "promtool check metrics exited {code:?}:\n{printed}\n{text}"
    );
    println!(
        "promtool check metrics: exit {code:?}, {} lines checked, only node_exporter's own \
         names (camelCase, entropy bits) linted",
        text.lines().count()
    );
}

/// `GET /metrics` over plain HTTP/1.0; the body, or `None` on any failure.
fn scrape(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    (head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200")).then(|| body.to_owned())
}

/// A `/proc/<pid>/status` field in kB, such as `VmRSS`.
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// User plus system CPU seconds of process `pid` (`/proc/<pid>/stat` fields 14 and 15).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    // after_comm starts at field 3 (state); utime is field 14, stime 15.
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Families of node_exporter's (with the collectors rampart runs) that rampart does not
/// emit, or whose series may differ between two reads, and why. The test prints them.
const NOT_YET: &[(&str, &str)] = &[
    (
        "node_time_zone_offset_seconds",
        "time collector's zone offset: not emulated (rampart's hosts run UTC)",
    ),
    (
        "node_exporter_build_info",
        "node_exporter's own version, not a host metric",
    ),
    (
        "node_processes_state",
        "series: which process states (R, D...) exist changes between two reads",
    ),
    (
        "node_processes_threads_state",
        "series: which thread states (R, D...) exist changes between two reads",
    ),
    (
        "node_tcp_connection_states",
        "series and values: which TCP states have sockets, and how many, changes between \
         two reads (node_exporter's own scrape connection among them); and node_exporter \
         counts listeners' maximum backlogs (netlink) in tx_queued_bytes, /proc/net/tcp \
         has 0 there",
    ),
];

/// Per family of a text exposition: `# TYPE`, `# HELP`, and its series (label sets,
/// without the labels whose value is empty: node_exporter writes `duplex=""`, which
/// Prometheus stores as no label, and rampart leaves such labels out).
#[derive(Debug, Default)]
struct Fam {
    kind: String,
    help: String,
    series: BTreeSet<BTreeMap<String, String>>,
}

fn families(text: &str) -> BTreeMap<String, Fam> {
    let mut out: BTreeMap<String, Fam> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(name.to_owned()).or_default().help = help.to_owned();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.entry(name.to_owned()).or_default().kind = kind.to_owned();
        }
    }
    for (name, mut labels, _) in samples(text) {
        labels.retain(|_, v| !v.is_empty());
        out.entry(name).or_default().series.insert(labels);
    }
    out
}

/// The label-name sets of a family's series.
fn label_names(f: &Fam) -> BTreeSet<BTreeSet<&String>> {
    f.series.iter().map(|l| l.keys().collect()).collect()
}

/// The values of label `label` across family `name`'s samples.
fn label_values(lines: &[Line], name: &str, label: &str) -> BTreeSet<String> {
    lines
        .iter()
        .filter(|(n, _, _)| n == name)
        .filter_map(|(_, l, _)| l.get(label).cloned())
        .collect()
}

/// How family `name` differs between ours and theirs, if it does: type, help, label
/// names, then series (unless `series` is false).
fn differs(name: &str, ours: &Fam, theirs: &Fam, series: bool) -> Option<String> {
    if ours.kind != theirs.kind {
        return Some(format!(
            "{name}: TYPE ours {}, theirs {}",
            ours.kind, theirs.kind
        ));
    }
    if ours.help != theirs.help {
        return Some(format!(
            "{name}: HELP ours {:?}, theirs {:?}",
            ours.help, theirs.help
        ));
    }
    let (o, t) = (label_names(ours), label_names(theirs));
    if o != t {
        return Some(format!("{name}: label names ours {o:?}, theirs {t:?}"));
    }
    if series && ours.series != theirs.series {
        let only_ours: Vec<_> = ours.series.difference(&theirs.series).collect();
        let only_theirs: Vec<_> = theirs.series.difference(&ours.series).collect();
        return Some(format!(
            "{name}: series only ours {only_ours:?}, only theirs {only_theirs:?}"
        ));
    }
    None
}

#[test]
fn host_metrics_match_the_real_node_exporter() {
    let Some(exporter) = tool("prometheus-node-exporter", Some("RAMPART_NODE_EXPORTER")) else {
        return;
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    // The collectors rampart emulates, nothing else.
    let collectors = host::collector_names();
    let child = Command::new(exporter)
        .arg(format!("--web.listen-address={addr}"))
        .arg("--collector.disable-defaults")
        .args(collectors.iter().map(|c| format!("--collector.{c}")))
        // The restart counts the agent's systemd collector has too (a flag in 1.5).
        .arg("--collector.systemd.enable-restarts-metrics")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let node = Proc {
        child,
        name: "node_exporter".into(),
    };
    let first = eventually("node_exporter /metrics", Duration::from_secs(20), || {
        scrape(addr)
    });
    for _ in 0..4 {
        scrape(addr).unwrap();
    }
    let theirs_text = scrape(addr).unwrap();
    let mut ours_families: Vec<Family> = host::collect(Path::new("/")).unwrap();
    ours_families.extend(rampart_agent::run::process_families(
        std::time::SystemTime::now(),
    ));
    let ours_text = expo::text(&ours_families);
    let rss_kb = status_kb(node.pid(), "VmRSS");
    let cpu = cpu_seconds(node.pid());
    println!(
        "node_exporter footprint after 6 scrapes ({} bytes each): VmRSS {rss_kb} kB, \
         CPU {cpu:.2} s",
        first.len()
    );

    let theirs = samples(&theirs_text);
    let ours = samples(&ours_text);
    let their_fams = families(&theirs_text);
    let our_fams = families(&ours_text);
    let listed = |name: &str| NOT_YET.iter().find(|(n, _)| *n == name);
    let mut problems = Vec::new();
    // Theirs in ours: every node_* and process_* family.
    let mut compared = 0;
    for (name, t) in &their_fams {
        if !(name.starts_with("node_") || name.starts_with("process_")) {
            continue;
        }
        let entry = listed(name);
        match our_fams.get(name) {
            Some(o) => {
                if let Some(d) = differs(name, o, t, entry.is_none()) {
                    problems.push(d);
                }
                if name.starts_with("node_") {
                    compared += 1;
                }
            }
            None if entry.is_some() => {}
            None => problems.push(format!("{name}: node_exporter's, not rampart's")),
        }
    }
    // Ours in theirs.
    for name in our_fams.keys() {
        if !their_fams.contains_key(name) {
            problems.push(format!("{name}: rampart's, not node_exporter's"));
        }
    }
    // The same collectors succeed and fail (schedstat fails on a kernel without
    // /proc/schedstat, for both).
    for c in &collectors {
        let l = [("collector", *c)];
        let (o, t) = (
            value(&ours, "node_scrape_collector_success", &l),
            value(&theirs, "node_scrape_collector_success", &l),
        );
        if o != t {
            problems.push(format!("collector {c}: success ours {o:?}, theirs {t:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "rampart and node_exporter differ:\n{}\n\nnode_exporter:\n{theirs_text}\n\nrampart:\n{ours_text}",
        problems.join("\n")
    );
    for (name, why) in NOT_YET {
        let whose = if our_fams.contains_key(*name) {
            "both, series not compared"
        } else {
            "theirs only"
        };
        println!("NOT_YET {name} ({whose}): {why}");
    }
    let failed: Vec<&&str> = collectors
        .iter()
        .filter(|c| {
            value(
                &theirs,
                "node_scrape_collector_success",
                &[("collector", c)],
            ) == Some(0.0)
        })
        .collect();
    println!("collectors failing on this machine for both: {failed:?}");
    println!(
        "node_exporter: {compared} node_* families in {} collectors, every one rampart's \
         too with the same series, but {} listed",
        collectors.len(),
        NOT_YET.len()
    );

    // The same exclusions: the same file systems and devices.
    for (name, label) in [
        ("node_filesystem_size_bytes", "mountpoint"),
        ("node_filesystem_device_error", "mountpoint"),
        ("node_network_receive_bytes_total", "device"),
        ("node_network_up", "device"),
        ("node_disk_reads_completed_total", "device"),
        ("node_arp_entries", "device"),
    ] {
        let (o, t) = (
            label_values(&ours, name, label),
            label_values(&theirs, name, label),
        );
        assert_eq!(o, t, "{name} {label}: ours, then node_exporter's");
        println!("{name} {label}: {o:?} (both)");
    }

    // Values that hold still, or move slowly enough to compare.
    let show = |name: &str, labels: &[(&str, &str)]| {
        let (o, t) = (value(&ours, name, labels), value(&theirs, name, labels));
        println!("{name}{labels:?}: rampart {o:?}, node_exporter {t:?}");
        (o.unwrap(), t.unwrap())
    };
    for name in [
        "node_memory_MemTotal_bytes",
        "node_memory_SwapTotal_bytes",
        "node_filefd_maximum",
        "node_entropy_pool_size_bits",
        "node_nf_conntrack_entries_limit",
    ] {
        if their_fams.contains_key(name) {
            let (o, t) = show(name, &[]);
            assert_eq!(o, t, "{name}");
        }
    }
    // The neighbour table holds still over a test's second.
    for device in label_values(&theirs, "node_arp_entries", "device") {
        let (o, t) = show("node_arp_entries", &[("device", &device)]);
        assert_eq!(o, t, "node_arp_entries {device}");
    }
    let (o, t) = show("node_boot_time_seconds", &[]);
    assert!((o - t).abs() <= 1.0);
    let (o, t) = show("node_cpu_seconds_total", &[("cpu", "0"), ("mode", "idle")]);
    assert!((o - t).abs() <= 2.0 && o >= t);
    let (o, t) = show("node_cpu_seconds_total", &[("cpu", "0"), ("mode", "user")]);
    assert!((o - t).abs() <= 2.0 && o >= t);
    let (o, t) = show("node_time_seconds", &[]);
    assert!((o - t).abs() <= 5.0);
    let root_fs = theirs.iter().find(|(n, l, _)| {
        n == "node_filesystem_size_bytes" && l.get("mountpoint").is_some_and(|m| m == "/")
    });
    if let Some((_, l, _)) = root_fs {
        let labels: Vec<(&str, &str)> = l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (o, t) = show("node_filesystem_size_bytes", &labels);
        assert_eq!(o, t);
    }
    // The info families' label values are their values: compared as series above.
    for name in ["node_uname_info", "node_disk_info", "node_network_info"] {
        if let Some(f) = our_fams.get(name) {
            println!("{name}: {:?} (both)", f.series);
        }
    }

    // Both outputs lint the same way: our only promtool problems are node_exporter's.
    if let Some(promtool) = tool("promtool", None) {
        let problems = |text: &str| -> BTreeSet<String> {
            promtool_check(&promtool, text)
                .1
                .lines()
                .filter(|l| l.starts_with("node_") && !l.contains("no help text"))
                .map(str::to_owned)
                .collect()
        };
        let (o, t) = (problems(&ours_text), problems(&theirs_text));
        let extra: Vec<&String> = o.difference(&t).collect();
        assert!(
            extra.is_empty(),
            "promtool problems node_exporter does not have: {extra:?}"
        );
    }
    drop(node);
}

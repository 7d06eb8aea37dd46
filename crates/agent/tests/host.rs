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
use rampart_test_support::{eventually, free_port, Proc};

/// One sample line of a text exposition: name, labels, value.
type Line = (String, BTreeMap<String, String>, f64);

/// The sample lines of a text exposition (enough of the format for node_exporter's and
/// our output: quoted label values with `\\`, `\"` and `\n` escapes).
fn samples(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap(),
        };
        let (name, mut rest) = series.split_once('{').unwrap_or((series, ""));
        let mut labels = BTreeMap::new();
        while let Some((k, r)) = rest.split_once("=\"") {
            let mut v = String::new();
            let mut chars = r.char_indices();
            let end = loop {
                match chars.next().unwrap() {
                    (_, '\\') => match chars.next().unwrap().1 {
                        'n' => v.push('\n'),
                        c => v.push(c),
                    },
                    (i, '"') => break i,
                    (_, c) => v.push(c),
                }
            };
            labels.insert(k.trim_start_matches(',').to_owned(), v);
            rest = &r[end + 1..];
        }
        out.push((name.to_owned(), labels, value));
    }
    out
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

/// The problems promtool reports that node_exporter's own names cause: the meminfo
/// fields keep the kernel's spelling (`node_memory_MemTotal_bytes`), which the linter
/// calls camelCase. Anything else is ours to fix.
fn is_node_exporter_naming_lint(problem: &str) -> bool {
    problem.starts_with("node_memory_")
        && problem.ends_with(" metric names should be written in 'snake_case' not 'camelCase'")
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
         meminfo names linted",
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

/// The label names of each family's samples.
fn label_names(lines: &[Line]) -> BTreeMap<String, BTreeSet<BTreeSet<String>>> {
    let mut out: BTreeMap<String, BTreeSet<BTreeSet<String>>> = BTreeMap::new();
    for (name, labels, _) in lines {
        out.entry(name.clone())
            .or_default()
            .insert(labels.keys().cloned().collect());
    }
    out
}

/// The values of label `label` across family `name`'s samples.
fn label_values(lines: &[Line], name: &str, label: &str) -> BTreeSet<String> {
    lines
        .iter()
        .filter(|(n, _, _)| n == name)
        .filter_map(|(_, l, _)| l.get(label).cloned())
        .collect()
}

#[test]
fn host_metrics_match_the_real_node_exporter() {
    let Some(exporter) = tool("prometheus-node-exporter", Some("RAMPART_NODE_EXPORTER")) else {
        return;
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    // The collectors rampart emulates, nothing else.
    let child = Command::new(exporter)
        .arg(format!("--web.listen-address={addr}"))
        .args([
            "--collector.disable-defaults",
            "--collector.cpu",
            "--collector.stat",
            "--collector.meminfo",
            "--collector.loadavg",
            "--collector.netdev",
            "--collector.filesystem",
            "--collector.time",
        ])
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
    let ours_families: Vec<Family> = host::collect(Path::new("/")).unwrap();
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
    let their_labels = label_names(&theirs);
    let our_labels = label_names(&ours);
    let mut missing = Vec::new();
    for (name, sets) in &our_labels {
        match their_labels.get(name) {
            Some(t) if t == sets => {}
            Some(t) => missing.push(format!("{name}: ours {sets:?}, theirs {t:?}")),
            None => missing.push(format!("{name}: not in node_exporter's output")),
        }
    }
    assert!(
        missing.is_empty(),
        "families differing from node_exporter:\n{}\n\nnode_exporter:\n{theirs_text}",
        missing.join("\n")
    );
    println!(
        "{} families, all in node_exporter's output with the same label names",
        our_labels.len()
    );
    let only_theirs: Vec<&String> = their_labels
        .keys()
        .filter(|n| n.starts_with("node_") && !n.starts_with("node_scrape_"))
        .filter(|n| !our_labels.contains_key(*n) && *n != "node_exporter_build_info")
        .collect();
    println!("node_exporter families (same collectors) rampart does not emit: {only_theirs:?}");

    // The same exclusions: the same file systems and network devices.
    for (name, label) in [
        ("node_filesystem_size_bytes", "mountpoint"),
        ("node_filesystem_device_error", "mountpoint"),
        ("node_network_receive_bytes_total", "device"),
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
    let (o, t) = show("node_memory_MemTotal_bytes", &[]);
    assert_eq!(o, t);
    let (o, t) = show("node_memory_SwapTotal_bytes", &[]);
    assert_eq!(o, t);
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

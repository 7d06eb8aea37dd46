//! Host metrics read from `/proc`, `/sys` and `statvfs`, under node_exporter 1.5's metric
//! names, label names, types, units and help texts, so its dashboards and alert rules
//! work unchanged. This file has the `cpu`, `stat`, `meminfo`, `loadavg`, `netdev`,
//! `filesystem` and `time` collectors and runs them with [`crate::kernel`]'s, each timed
//! and reported in `node_scrape_collector_success` as node_exporter does.
//!
//! Every parser here is pure (text in, families out); [`collect`] only reads the files
//! under a root directory and calls `statvfs`. `proc/stat` and `proc/meminfo` are
//! required; any other collector's missing or bad file fails only that collector. What
//! node_exporter excludes by default, this excludes too: the `lo` device in netdev, and
//! the file systems listed in [`EXCLUDED_FS_TYPES`] or mounted under
//! [`EXCLUDED_MOUNT_POINTS`].

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::kernel::{self, Collector};
pub use crate::procfs::HostError;
use crate::procfs::{
    bad, decimal, family, gauge, int, labelled, missing, parse_file, parsed, plain, read, Bad,
};
use crate::{Family, Kind};

/// The kernel's clock ticks per second for `/proc/stat` (`USER_HZ`), fixed at 100 on
/// every architecture Linux exposes to user space (node_exporter assumes the same).
const USER_HZ: f64 = 100.0;

/// node_exporter's default `--collector.filesystem.fs-types-exclude` (1.5):
/// `^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$`.
/// `tmpfs` is not in it: a tmpfs on `/tmp` is reported, one under `/run` or `/dev` is
/// excluded by mount point.
pub const EXCLUDED_FS_TYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tracefs",
];

/// node_exporter's default `--collector.filesystem.mount-points-exclude` (1.5):
/// `^/(dev|proc|run|sys|mnt|media|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)`.
/// A mount point is excluded when it is one of these or below one; the two entries
/// ending in `/` exclude only what is below them.
pub const EXCLUDED_MOUNT_POINTS: &[&str] = &[
    "/dev",
    "/proc",
    "/run",
    "/sys",
    "/mnt",
    "/media",
    "/var/lib/docker/",
    "/var/lib/containers/storage/",
];

/// Network devices node_exporter's default `--collector.netdev.device-exclude` (`^lo$`)
/// leaves out.
const EXCLUDED_DEVICES: &[&str] = &["lo"];

/// The optional collectors, by node_exporter's names, in the order they run. A failing
/// one reports `node_scrape_collector_success{collector} 0` and costs nothing else.
const OPTIONAL: &[(&str, Collector)] = &[
    ("loadavg", loadavg),
    ("netdev", netdev),
    ("filesystem", filesystems),
    ("time", time),
    ("uname", kernel::uname),
    ("filefd", kernel::filefd),
    ("entropy", kernel::entropy),
    ("conntrack", kernel::conntrack),
    ("pressure", kernel::pressure),
    ("vmstat", kernel::vmstat),
    ("diskstats", kernel::diskstats),
    ("sockstat", kernel::sockstat),
    ("softnet", kernel::softnet),
    ("netstat", kernel::netstat),
    ("netclass", kernel::netclass),
    ("schedstat", kernel::schedstat),
    ("interrupts", kernel::interrupts),
    ("processes", kernel::processes),
    ("arp", kernel::arp),
    ("udp_queues", kernel::udp_queues),
    ("tcpstat", kernel::tcpstat),
];

/// The collectors [`collect`] runs, by node_exporter's names: these and
/// [`OPTIONAL`]'s, the `--collector.<name>` flags that make node_exporter emit the same
/// families.
pub fn collector_names() -> Vec<&'static str> {
    let mut names = vec!["cpu", "stat", "meminfo"];
    names.extend(OPTIONAL.iter().map(|(n, _)| *n));
    names.extend(["timex", "systemd", "textfile"]);
    names
}

/// What [`collect_with`] reads beyond the root: node_exporter's
/// `--collector.textfile.directory` (none: the collector reports only its error gauge,
/// 0, as node_exporter does without the flag).
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub textfile_dir: Option<PathBuf>,
    /// `[host] cgroup = true`: CPU and memory from this cgroup instead of the machine's
    /// (the `cgroup` collector, [`crate::cgroup`]).
    pub cgroup: Option<std::sync::Arc<crate::cgroup::Tracker>>,
}

/// Reads host metrics from the files under `root` (`/` normally; tests pass a fixture
/// directory) and `statvfs` on the mount points found under it, with
/// `node_scrape_collector_duration_seconds` and `node_scrape_collector_success` per
/// collector as node_exporter has them. `proc/stat` (`cpu`, `stat`) and
/// `proc/meminfo` are required: an error there is this function's error. Any other
/// collector's error fails only that collector: logged naming the file (at debug level
/// when the file does not exist, which is a kernel without the feature, as
/// node_exporter's "no data"), its success 0, and whatever it read before the error
/// kept. Families with no samples are left out.
pub fn collect(root: &Path) -> Result<Vec<Family>, HostError> {
    collect_with(root, &Options::default())
}

/// [`collect`], plus the collectors that read more than files under the root: `timex`
/// (a system call, [`crate::timex`]), `systemd` (systemd's units over the system bus,
/// [`crate::systemd`]; where systemd does not run it fails without running anything)
/// and `textfile` ([`crate::textfile`], from `options.textfile_dir`).
pub fn collect_with(root: &Path, options: &Options) -> Result<Vec<Family>, HostError> {
    let mut families = Vec::new();
    let mut runs: Vec<(&str, f64, bool)> = Vec::new();
    for (name, collector) in [
        ("cpu", cpu as Collector),
        ("stat", stat),
        ("meminfo", meminfo),
    ] {
        let t = Instant::now();
        collector(root, &mut families)?;
        runs.push((name, t.elapsed().as_secs_f64(), true));
    }
    for (name, collector) in OPTIONAL {
        let t = Instant::now();
        let result = collector(root, &mut families);
        let seconds = t.elapsed().as_secs_f64();
        match &result {
            Ok(()) => {}
            Err(e) if e.is_missing() => {
                tracing::debug!(collector = name, error = %e, "host collector has no data");
            }
            Err(e) => tracing::warn!(collector = name, error = %e, "host collector failed"),
        }
        runs.push((name, seconds, result.is_ok()));
    }
    if let Some(tracker) = &options.cgroup {
        // After `cpu` and `meminfo`: their families are replaced. On failure the
        // machine's stay, and the collector says so.
        let t = Instant::now();
        let result = tracker.replace(root, &mut families);
        if let Err(e) = &result {
            tracing::warn!(collector = "cgroup", error = %e, "host collector failed");
        }
        runs.push(("cgroup", t.elapsed().as_secs_f64(), result.is_ok()));
    }
    let t = Instant::now();
    let timex = crate::timex::collect();
    if let Err(e) = &timex {
        tracing::warn!(collector = "timex", error = %e, "host collector failed");
    }
    runs.push(("timex", t.elapsed().as_secs_f64(), timex.is_ok()));
    families.extend(timex.unwrap_or_default());
    let t = Instant::now();
    let systemd = crate::systemd::collect(root);
    match &systemd {
        Ok(_) => {}
        Err(e) if e.is_missing() => {
            tracing::debug!(collector = "systemd", error = %e, "host collector has no data");
        }
        Err(e) => tracing::warn!(collector = "systemd", error = %e, "host collector failed"),
    }
    runs.push(("systemd", t.elapsed().as_secs_f64(), systemd.is_ok()));
    families.extend(systemd.unwrap_or_default());
    let t = Instant::now();
    // Files that cannot be read set the collector's own error gauge, as in
    // node_exporter; the collector itself succeeds.
    families.extend(match &options.textfile_dir {
        Some(dir) => crate::textfile::collect(dir),
        None => crate::textfile::collect_none(),
    });
    runs.push(("textfile", t.elapsed().as_secs_f64(), true));
    let sample = |name: &str, v: f64| labelled(&[("collector", name)], v);
    families.push(family(
        "node_scrape_collector_duration_seconds",
        "node_exporter: Duration of a collector scrape.",
        Kind::Gauge,
        runs.iter().map(|(n, s, _)| sample(n, *s)).collect(),
    ));
    families.push(family(
        "node_scrape_collector_success",
        "node_exporter: Whether a collector succeeded.",
        Kind::Gauge,
        runs.iter()
            .map(|(n, _, ok)| sample(n, if *ok { 1.0 } else { 0.0 }))
            .collect(),
    ));
    families.retain(|f| !f.samples.is_empty());
    Ok(families)
}

/// The `cpu` collector: `/proc/stat`'s per-CPU times.
fn cpu(root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    let f = parse_file(root, "proc/stat", parse_stat)?;
    out.extend(f.into_iter().filter(|f| f.name.starts_with("node_cpu_")));
    Ok(())
}

/// The `stat` collector: `/proc/stat`'s other lines (read again, as node_exporter does).
fn stat(root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    let f = parse_file(root, "proc/stat", parse_stat)?;
    out.extend(f.into_iter().filter(|f| !f.name.starts_with("node_cpu_")));
    Ok(())
}

fn meminfo(root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    out.extend(parse_file(root, "proc/meminfo", parse_meminfo)?);
    Ok(())
}

fn loadavg(root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    out.extend(parse_file(root, "proc/loadavg", parse_loadavg)?);
    Ok(())
}

/// `/proc/net/dev`'s columns and sysfs's `rx_nohandler` of the same devices.
fn netdev(root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    let families = parse_file(root, "proc/net/dev", parse_netdev)?;
    let devices: Vec<String> = families
        .first()
        .map(|f| {
            f.samples
                .iter()
                .flat_map(|s| s.labels.iter().map(|(_, v)| v.clone()))
                .collect()
        })
        .unwrap_or_default();
    out.extend(families);
    out.push(kernel::nohandler(root, &devices));
    Ok(())
}

/// The `filesystem` collector. node_exporter reads init's mount table (the host's view
/// when the exporter runs in a container) and falls back to its own.
fn filesystems(root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    for file in ["proc/1/mounts", "proc/self/mounts"] {
        match read(root, file) {
            Ok(Some(text)) => {
                let mounts = parsed(root, file, parse_mounts(&text))?;
                out.extend(filesystem(root, &mounts));
                return Ok(());
            }
            Ok(None) => {}
            Err(HostError::Read { source, .. })
                if source.kind() == io::ErrorKind::PermissionDenied => {}
            Err(e) => return Err(e),
        }
    }
    Err(missing(root, "proc/self/mounts"))
}

/// The `time` collector: the clock, then the clock sources (whose failure fails it).
fn time(root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    out.push(gauge(
        "node_time_seconds",
        "System time in seconds since epoch (1970).",
        now,
    ));
    kernel::clocksources(root, out)
}

/// The `/proc/stat` columns of a `cpuN` line, in order, as node_exporter's `mode` label.
const CPU_MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// `/proc/stat`: per-CPU times (the `cpu` and `stat` collectors).
fn parse_stat(text: &str) -> Result<Vec<Family>, Bad> {
    let mut cpu = Vec::new();
    let mut guest = Vec::new();
    let mut seen = HashSet::new();
    let mut scalars: Vec<Family> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut fields = line.split_whitespace();
        let Some(key) = fields.next() else { continue };
        let one = |fields: &mut std::str::SplitWhitespace<'_>| {
            let v = fields
                .next()
                .ok_or_else(|| bad(i, format!("{key}: no value")))?;
            int(v).map_err(|e| bad(i, format!("{key}: {e}")))
        };
        let (name, help, kind) = match key {
            "cpu" => continue,
            "btime" => (
                "node_boot_time_seconds",
                "Node boot time, in unixtime.",
                Kind::Gauge,
            ),
            "ctxt" => (
                "node_context_switches_total",
                "Total number of context switches.",
                Kind::Counter,
            ),
            "processes" => ("node_forks_total", "Total number of forks.", Kind::Counter),
            "intr" => (
                "node_intr_total",
                "Total number of interrupts serviced.",
                Kind::Counter,
            ),
            "procs_running" => (
                "node_procs_running",
                "Number of processes in runnable state.",
                Kind::Gauge,
            ),
            "procs_blocked" => (
                "node_procs_blocked",
                "Number of processes blocked waiting for I/O to complete.",
                Kind::Gauge,
            ),
            k if k.starts_with("cpu") => {
                let id = &k[3..];
                if !id.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad(i, format!("{k}: not a cpu number")));
                }
                if !seen.insert(id.to_owned()) {
                    return Err(bad(i, format!("{k}: duplicate")));
                }
                let ticks = fields
                    .map(int)
                    .collect::<Result<Vec<f64>, String>>()
                    .map_err(|e| bad(i, format!("{k}: {e}")))?;
                // Kernels before 2.6.11 print fewer columns; the missing ones are 0.
                if ticks.len() < 4 {
                    return Err(bad(
                        i,
                        format!("{k}: {} columns, want at least 4", ticks.len()),
                    ));
                }
                let at = |n: usize| ticks.get(n).copied().unwrap_or(0.0) / USER_HZ;
                for (n, mode) in CPU_MODES.iter().enumerate() {
                    cpu.push(labelled(&[("cpu", id), ("mode", mode)], at(n)));
                }
                if ticks.len() > 8 {
                    guest.push(labelled(&[("cpu", id), ("mode", "nice")], at(9)));
                    guest.push(labelled(&[("cpu", id), ("mode", "user")], at(8)));
                }
                continue;
            }
            _ => continue,
        };
        if scalars.iter().any(|f| f.name == name) {
            return Err(bad(i, format!("{key}: duplicate")));
        }
        scalars.push(family(name, help, kind, vec![plain(one(&mut fields)?)]));
    }
    let mut out = vec![
        family(
            "node_cpu_seconds_total",
            "Seconds the CPUs spent in each mode.",
            Kind::Counter,
            cpu,
        ),
        family(
            "node_cpu_guest_seconds_total",
            "Seconds the CPUs spent in guests (VMs) for each mode.",
            Kind::Counter,
            guest,
        ),
    ];
    out.extend(scalars);
    Ok(out)
}

/// `/proc/meminfo`, every field as node_exporter's `meminfo` collector names it:
/// `Active(anon):  12 kB` → `node_memory_Active_anon_bytes 12288`, a field without a
/// unit (`HugePages_Total:  0`) → `node_memory_HugePages_Total 0`. Families are sorted
/// by name; a repeated field keeps its last value.
fn parse_meminfo(text: &str) -> Result<Vec<Family>, Bad> {
    let mut fields = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let Some(first) = parts.first() else { continue };
        let key = first
            .strip_suffix(':')
            .ok_or_else(|| bad(i, format!("{first}: no ':' after the field name")))?;
        // Active(anon) → Active_anon, as node_exporter's regexp `\((.*)\)` → `_${1}`.
        let mut key = match (key.find('('), key.rfind(')')) {
            (Some(open), Some(close)) if open < close => {
                format!(
                    "{}_{}{}",
                    &key[..open],
                    &key[open + 1..close],
                    &key[close + 1..]
                )
            }
            _ => key.to_owned(),
        };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(bad(i, format!("{first}: not a metric name")));
        }
        let value = parts
            .get(1)
            .ok_or_else(|| bad(i, format!("{key}: no value")))
            .and_then(|v| int(v).map_err(|e| bad(i, format!("{key}: {e}"))))?;
        let value = match parts.get(2) {
            None => value,
            Some(&"kB") if parts.len() == 3 => {
                key.push_str("_bytes");
                value * 1024.0
            }
            Some(_) => return Err(bad(i, format!("{key}: want `<value> [kB]`"))),
        };
        fields.insert(key, value);
    }
    Ok(fields
        .into_iter()
        .map(|(key, value)| {
            gauge(
                &format!("node_memory_{key}"),
                &format!("Memory information field {key}."),
                value,
            )
        })
        .collect())
}

/// `/proc/loadavg`: `node_load1`, `node_load5`, `node_load15`.
fn parse_loadavg(text: &str) -> Result<Vec<Family>, Bad> {
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    if fields.len() < 3 {
        return Err(bad(0, format!("{} values, want 3", fields.len())));
    }
    let mut out = Vec::new();
    for (field, (name, help)) in fields.iter().zip([
        ("node_load1", "1m load average."),
        ("node_load5", "5m load average."),
        ("node_load15", "15m load average."),
    ]) {
        out.push(gauge(name, help, decimal(field).map_err(|e| bad(0, e))?));
    }
    Ok(out)
}

/// The sixteen columns of `/proc/net/dev`, in order.
const NETDEV_FIELDS: [&str; 16] = [
    "receive_bytes",
    "receive_packets",
    "receive_errs",
    "receive_drop",
    "receive_fifo",
    "receive_frame",
    "receive_compressed",
    "receive_multicast",
    "transmit_bytes",
    "transmit_packets",
    "transmit_errs",
    "transmit_drop",
    "transmit_fifo",
    "transmit_colls",
    "transmit_carrier",
    "transmit_compressed",
];

/// `/proc/net/dev`: `node_network_<column>_total{device}`, `lo` excluded.
fn parse_netdev(text: &str) -> Result<Vec<Family>, Bad> {
    let mut out: Vec<Family> = NETDEV_FIELDS
        .iter()
        .map(|f| {
            family(
                &format!("node_network_{f}_total"),
                &format!("Network device statistic {f}."),
                Kind::Counter,
                Vec::new(),
            )
        })
        .collect();
    let mut seen = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        // The two header lines are the only ones with a `|`.
        if line.trim().is_empty() || line.contains('|') {
            continue;
        }
        let (device, rest) = line
            .split_once(':')
            .ok_or_else(|| bad(i, "no ':' after the device name"))?;
        let device = device.trim();
        if device.is_empty() {
            return Err(bad(i, "empty device name"));
        }
        let values = rest
            .split_whitespace()
            .map(int)
            .collect::<Result<Vec<f64>, String>>()
            .map_err(|e| bad(i, format!("{device}: {e}")))?;
        if values.len() != NETDEV_FIELDS.len() {
            return Err(bad(
                i,
                format!("{device}: {} columns, want 16", values.len()),
            ));
        }
        if !seen.insert(device.to_owned()) {
            return Err(bad(i, format!("{device}: duplicate")));
        }
        if EXCLUDED_DEVICES.contains(&device) {
            continue;
        }
        for (f, v) in out.iter_mut().zip(values) {
            f.samples.push(labelled(&[("device", device)], v));
        }
    }
    Ok(out)
}

/// One line of the mount table that the filesystem collector reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Mount {
    device: String,
    mountpoint: String,
    fstype: String,
    readonly: bool,
}

/// The mount table (`/proc/1/mounts` format), without the excluded file system types
/// and mount points and without repeated (device, mount point, type) lines.
fn parse_mounts(text: &str) -> Result<Vec<Mount>, Bad> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.is_empty() {
            continue;
        }
        let [device, mountpoint, fstype, options, ..] = parts[..] else {
            return Err(bad(i, format!("{} fields, want at least 4", parts.len())));
        };
        let m = Mount {
            device: device.to_owned(),
            mountpoint: unescape_octal(mountpoint),
            fstype: fstype.to_owned(),
            readonly: options.split(',').any(|o| o == "ro"),
        };
        if excluded_fs_type(&m.fstype) || excluded_mount_point(&m.mountpoint) {
            continue;
        }
        if seen.insert((m.device.clone(), m.mountpoint.clone(), m.fstype.clone())) {
            out.push(m);
        }
    }
    Ok(out)
}

/// The kernel writes space, tab, newline and backslash in mount points as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let code = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0')));
        match code.and_then(|c| u8::try_from(c).ok()) {
            Some(c) => {
                out.push(c);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn excluded_fs_type(fstype: &str) -> bool {
    EXCLUDED_FS_TYPES.contains(&fstype)
}

fn excluded_mount_point(mountpoint: &str) -> bool {
    EXCLUDED_MOUNT_POINTS
        .iter()
        .any(|p| match p.strip_suffix('/') {
            // `var/lib/docker/.+($|/)`: strictly below the directory.
            Some(dir) => mountpoint
                .strip_prefix(dir)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|rest| !rest.is_empty()),
            None => mountpoint
                .strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        })
}

/// `statvfs` on each mount point (below `root`): sizes in bytes (blocks times
/// `f_bsize`, as node_exporter computes them), inodes, read-only state, and
/// `node_filesystem_device_error` 1 for a mount point `statvfs` fails on.
fn filesystem(root: &Path, mounts: &[Mount]) -> Vec<Family> {
    let names: [(&str, &str); 7] = [
        (
            "node_filesystem_avail_bytes",
            "Filesystem space available to non-root users in bytes.",
        ),
        (
            "node_filesystem_device_error",
            "Whether an error occurred while getting statistics for the given device.",
        ),
        ("node_filesystem_files", "Filesystem total file nodes."),
        (
            "node_filesystem_files_free",
            "Filesystem total free file nodes.",
        ),
        (
            "node_filesystem_free_bytes",
            "Filesystem free space in bytes.",
        ),
        ("node_filesystem_readonly", "Filesystem read-only status."),
        ("node_filesystem_size_bytes", "Filesystem size in bytes."),
    ];
    let mut out: Vec<Family> = names
        .iter()
        .map(|(name, help)| family(name, help, Kind::Gauge, Vec::new()))
        .collect();
    for m in mounts {
        let labels = [
            ("device", m.device.as_str()),
            ("fstype", m.fstype.as_str()),
            ("mountpoint", m.mountpoint.as_str()),
        ];
        let path = root.join(m.mountpoint.trim_start_matches('/'));
        let Ok(s) = rustix::fs::statvfs(&path) else {
            out[1].samples.push(labelled(&labels, 1.0));
            continue;
        };
        let bytes = |blocks: u64| blocks as f64 * s.f_bsize as f64;
        let values = [
            bytes(s.f_bavail),
            0.0,
            s.f_files as f64,
            s.f_ffree as f64,
            bytes(s.f_bfree),
            if m.readonly { 1.0 } else { 0.0 },
            bytes(s.f_blocks),
        ];
        for (f, v) in out.iter_mut().zip(values) {
            f.samples.push(labelled(&labels, v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::fixture::root;

    /// Parses `input` as the file `file` and renders the result: the families in the
    /// text format for the /proc files, one `device mountpoint fstype ro|rw` line per
    /// kept mount for `mounts`, or `error: line N: reason`.
    fn check(file: &str, input: &str, expect: &str) {
        let rendered = |r: Result<Vec<Family>, Bad>| match r {
            Ok(f) => {
                let f: Vec<Family> = f.into_iter().filter(|f| !f.samples.is_empty()).collect();
                crate::expo::text(&f)
            }
            Err(b) => format!("error: line {}: {}\n", b.line, b.reason),
        };
        let got = match file {
            "stat" => rendered(parse_stat(input)),
            "meminfo" => rendered(parse_meminfo(input)),
            "loadavg" => rendered(parse_loadavg(input)),
            "netdev" => rendered(parse_netdev(input)),
            "mounts" => match parse_mounts(input) {
                Ok(ms) => ms
                    .iter()
                    .map(|m| {
                        let ro = if m.readonly { "ro" } else { "rw" };
                        format!("{} {:?} {} {ro}\n", m.device, m.mountpoint, m.fstype)
                    })
                    .collect(),
                Err(b) => format!("error: line {}: {}\n", b.line, b.reason),
            },
            other => panic!("no parser for {other}"),
        };
        // Compare without HELP lines to keep the cases short.
        let got: String = got
            .lines()
            .filter(|l| !l.starts_with("# HELP"))
            .map(|l| format!("{l}\n"))
            .collect();
        let expect: String = expect
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(got, expect, "{file}: {input:?}");
    }

    #[test]
    fn stat_cpu_ticks_become_seconds_per_mode() {
        check(
            "stat",
            "cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 100 250 3 400000 5 6 7 8 9 10\n",
            r#"
            # TYPE node_cpu_seconds_total counter
            node_cpu_seconds_total{cpu="0",mode="user"} 1
            node_cpu_seconds_total{cpu="0",mode="nice"} 2.5
            node_cpu_seconds_total{cpu="0",mode="system"} 0.03
            node_cpu_seconds_total{cpu="0",mode="idle"} 4000
            node_cpu_seconds_total{cpu="0",mode="iowait"} 0.05
            node_cpu_seconds_total{cpu="0",mode="irq"} 0.06
            node_cpu_seconds_total{cpu="0",mode="softirq"} 0.07
            node_cpu_seconds_total{cpu="0",mode="steal"} 0.08
            # TYPE node_cpu_guest_seconds_total counter
            node_cpu_guest_seconds_total{cpu="0",mode="nice"} 0.1
            node_cpu_guest_seconds_total{cpu="0",mode="user"} 0.09
            "#,
        );
    }

    #[test]
    fn stat_old_kernels_with_four_columns_fill_the_rest_with_zero() {
        check(
            "stat",
            "cpu1 1 0 0 2\n",
            r#"
            # TYPE node_cpu_seconds_total counter
            node_cpu_seconds_total{cpu="1",mode="user"} 0.01
            node_cpu_seconds_total{cpu="1",mode="nice"} 0
            node_cpu_seconds_total{cpu="1",mode="system"} 0
            node_cpu_seconds_total{cpu="1",mode="idle"} 0.02
            node_cpu_seconds_total{cpu="1",mode="iowait"} 0
            node_cpu_seconds_total{cpu="1",mode="irq"} 0
            node_cpu_seconds_total{cpu="1",mode="softirq"} 0
            node_cpu_seconds_total{cpu="1",mode="steal"} 0
            "#,
        );
    }

    #[test]
    fn stat_scalars() {
        check(
            "stat",
            "intr 23900394 0 9 0\nctxt 112252456\nbtime 1795410459\nprocesses 491840\n\
             procs_running 3\nprocs_blocked 0\nsoftirq 1 2 3\nunknown x y\n",
            r#"
            # TYPE node_intr_total counter
            node_intr_total 23900394
            # TYPE node_context_switches_total counter
            node_context_switches_total 112252456
            # TYPE node_boot_time_seconds gauge
            node_boot_time_seconds 1795410459
            # TYPE node_forks_total counter
            node_forks_total 491840
            # TYPE node_procs_running gauge
            node_procs_running 3
            # TYPE node_procs_blocked gauge
            node_procs_blocked 0
            "#,
        );
    }

    #[test]
    fn stat_bad_input_is_an_error_naming_the_line() {
        let cases = [
            (
                "cpu0 1 2 3\n",
                "error: line 1: cpu0: 3 columns, want at least 4",
            ),
            ("cpu0\n", "error: line 1: cpu0: 0 columns, want at least 4"),
            (
                "\ncpu0 1 2 x 4\n",
                "error: line 2: cpu0: not a number: \"x\"",
            ),
            (
                "cpu0 1 2 -3 4\n",
                "error: line 1: cpu0: not a number: \"-3\"",
            ),
            (
                "cpu0 1 2 3 1e5\n",
                "error: line 1: cpu0: not a number: \"1e5\"",
            ),
            ("cpuX 1 2 3 4\n", "error: line 1: cpuX: not a cpu number"),
            (
                "cpu0 1 2 3 4\ncpu0 1 2 3 4\n",
                "error: line 2: cpu0: duplicate",
            ),
            ("btime\n", "error: line 1: btime: no value"),
            ("btime NaN\n", "error: line 1: btime: not a number: \"NaN\""),
            ("ctxt 1\nctxt 2\n", "error: line 2: ctxt: duplicate"),
            (
                "ctxt 99999999999999999999999\n",
                "error: line 1: ctxt: not a number: \"99999999999999999999999\"",
            ),
        ];
        for (input, expect) in cases {
            check("stat", input, expect);
        }
    }

    #[test]
    fn stat_empty_or_blank_gives_nothing() {
        for input in ["", "\n\n", "   \n"] {
            check("stat", input, "");
        }
    }

    #[test]
    fn meminfo_fields_in_bytes_under_node_exporter_names() {
        check(
            "meminfo",
            "MemTotal:       24684092 kB\nMemFree:  1 kB\n\nActive(anon):  2 kB\n\
             HugePages_Total:       0\nHugepagesize:       2048 kB\n",
            r#"
            # TYPE node_memory_Active_anon_bytes gauge
            node_memory_Active_anon_bytes 2048
            # TYPE node_memory_HugePages_Total gauge
            node_memory_HugePages_Total 0
            # TYPE node_memory_Hugepagesize_bytes gauge
            node_memory_Hugepagesize_bytes 2097152
            # TYPE node_memory_MemFree_bytes gauge
            node_memory_MemFree_bytes 1024
            # TYPE node_memory_MemTotal_bytes gauge
            node_memory_MemTotal_bytes 25276510208
            "#,
        );
    }

    #[test]
    fn meminfo_repeated_field_keeps_the_last_value() {
        check(
            "meminfo",
            "MemFree: 1 kB\nMemFree: 2 kB\n",
            "# TYPE node_memory_MemFree_bytes gauge\nnode_memory_MemFree_bytes 2048",
        );
    }

    #[test]
    fn meminfo_bad_input_is_an_error_naming_the_line() {
        let cases = [
            (
                "MemTotal 1 kB\n",
                "error: line 1: MemTotal: no ':' after the field name",
            ),
            ("MemTotal:\n", "error: line 1: MemTotal: no value"),
            (
                "MemTotal: x kB\n",
                "error: line 1: MemTotal: not a number: \"x\"",
            ),
            (
                "MemTotal: 1 MB\n",
                "error: line 1: MemTotal: want `<value> [kB]`",
            ),
            (
                "MemTotal: 1 kB x\n",
                "error: line 1: MemTotal: want `<value> [kB]`",
            ),
            (
                "Mem-Total: 1 kB\n",
                "error: line 1: Mem-Total:: not a metric name",
            ),
            (":\n", "error: line 1: :: not a metric name"),
            (
                "Mem\"{x}: 1\n",
                "error: line 1: Mem\"{x}:: not a metric name",
            ),
        ];
        for (input, expect) in cases {
            check("meminfo", input, expect);
        }
    }

    #[test]
    fn loadavg() {
        check(
            "loadavg",
            "2.48 2.97 2.99 3/812 123456\n",
            "# TYPE node_load1 gauge\nnode_load1 2.48\n# TYPE node_load5 gauge\n\
             node_load5 2.97\n# TYPE node_load15 gauge\nnode_load15 2.99",
        );
        check(
            "loadavg",
            "0.00 1 10.5",
            "# TYPE node_load1 gauge\nnode_load1 0\n# TYPE node_load5 gauge\n\
             node_load5 1\n# TYPE node_load15 gauge\nnode_load15 10.5",
        );
    }

    #[test]
    fn loadavg_bad_input_is_an_error() {
        let cases = [
            ("", "error: line 1: 0 values, want 3"),
            ("1.0 2.0\n", "error: line 1: 2 values, want 3"),
            ("1.0 inf 2.0\n", "error: line 1: not a number: \"inf\""),
            ("1.0 NaN 2.0\n", "error: line 1: not a number: \"NaN\""),
            ("1.0 2..0 2.0\n", "error: line 1: not a number: \"2..0\""),
            ("1.0 . 2.0\n", "error: line 1: not a number: \".\""),
            ("-1 1 1\n", "error: line 1: not a number: \"-1\""),
        ];
        for (input, expect) in cases {
            check("loadavg", input, expect);
        }
    }

    const NETDEV_HEADER: &str = "Inter-|   Receive                                                |  Transmit\n \
        face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n";

    #[test]
    fn netdev_every_column_per_device_without_lo() {
        let input = format!(
            "{NETDEV_HEADER}    lo: 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9\n  \
             eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\nveth-x:17 0 0 0 0 0 0 0 18 0 0 0 0 0 0 0\n"
        );
        check(
            "netdev",
            &input,
            r#"
            # TYPE node_network_receive_bytes_total counter
            node_network_receive_bytes_total{device="eth0"} 1
            node_network_receive_bytes_total{device="veth-x"} 17
            # TYPE node_network_receive_packets_total counter
            node_network_receive_packets_total{device="eth0"} 2
            node_network_receive_packets_total{device="veth-x"} 0
            # TYPE node_network_receive_errs_total counter
            node_network_receive_errs_total{device="eth0"} 3
            node_network_receive_errs_total{device="veth-x"} 0
            # TYPE node_network_receive_drop_total counter
            node_network_receive_drop_total{device="eth0"} 4
            node_network_receive_drop_total{device="veth-x"} 0
            # TYPE node_network_receive_fifo_total counter
            node_network_receive_fifo_total{device="eth0"} 5
            node_network_receive_fifo_total{device="veth-x"} 0
            # TYPE node_network_receive_frame_total counter
            node_network_receive_frame_total{device="eth0"} 6
            node_network_receive_frame_total{device="veth-x"} 0
            # TYPE node_network_receive_compressed_total counter
            node_network_receive_compressed_total{device="eth0"} 7
            node_network_receive_compressed_total{device="veth-x"} 0
            # TYPE node_network_receive_multicast_total counter
            node_network_receive_multicast_total{device="eth0"} 8
            node_network_receive_multicast_total{device="veth-x"} 0
            # TYPE node_network_transmit_bytes_total counter
            node_network_transmit_bytes_total{device="eth0"} 9
            node_network_transmit_bytes_total{device="veth-x"} 18
            # TYPE node_network_transmit_packets_total counter
            node_network_transmit_packets_total{device="eth0"} 10
            node_network_transmit_packets_total{device="veth-x"} 0
            # TYPE node_network_transmit_errs_total counter
            node_network_transmit_errs_total{device="eth0"} 11
            node_network_transmit_errs_total{device="veth-x"} 0
            # TYPE node_network_transmit_drop_total counter
            node_network_transmit_drop_total{device="eth0"} 12
            node_network_transmit_drop_total{device="veth-x"} 0
            # TYPE node_network_transmit_fifo_total counter
            node_network_transmit_fifo_total{device="eth0"} 13
            node_network_transmit_fifo_total{device="veth-x"} 0
            # TYPE node_network_transmit_colls_total counter
            node_network_transmit_colls_total{device="eth0"} 14
            node_network_transmit_colls_total{device="veth-x"} 0
            # TYPE node_network_transmit_carrier_total counter
            node_network_transmit_carrier_total{device="eth0"} 15
            node_network_transmit_carrier_total{device="veth-x"} 0
            # TYPE node_network_transmit_compressed_total counter
            node_network_transmit_compressed_total{device="eth0"} 16
            node_network_transmit_compressed_total{device="veth-x"} 0
            "#,
        );
    }

    #[test]
    fn netdev_only_lo_or_headers_gives_nothing() {
        check("netdev", NETDEV_HEADER, "");
        check(
            "netdev",
            &format!("{NETDEV_HEADER}lo: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"),
            "",
        );
    }

    #[test]
    fn netdev_bad_input_is_an_error_naming_the_line() {
        let z15 = "0 0 0 0 0 0 0 0 0 0 0 0 0 0 0";
        let cases = [
            (
                format!("eth0 {z15} 0\n"),
                "error: line 1: no ':' after the device name",
            ),
            (format!(" : {z15} 0\n"), "error: line 1: empty device name"),
            (
                format!("eth0: {z15}\n"),
                "error: line 1: eth0: 15 columns, want 16",
            ),
            (
                "eth0:\n".to_owned(),
                "error: line 1: eth0: 0 columns, want 16",
            ),
            (
                format!("eth0: {z15} x\n"),
                "error: line 1: eth0: not a number: \"x\"",
            ),
            (
                format!("eth0: {z15} 0\neth0: {z15} 0\n"),
                "error: line 2: eth0: duplicate",
            ),
        ];
        for (input, expect) in cases {
            check("netdev", &input, expect);
        }
    }

    #[test]
    fn mounts_without_node_exporters_default_exclusions() {
        check(
            "mounts",
            "proc /proc proc rw,relatime 0 0\n\
             sysfs /sys sysfs rw 0 0\n\
             /dev/vda / ext4 rw,relatime 0 0\n\
             /dev/vda / ext4 rw,relatime 0 0\n\
             tmpfs /dev/shm tmpfs rw 0 0\n\
             tmpfs /tmp tmpfs rw,nosuid 0 0\n\
             tmpfs /run/user/0 tmpfs rw 0 0\n\
             cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n\
             cgroup /cg cgroup rw 0 0\n\
             cgroup /cg2 cgroup2 rw 0 0\n\
             overlay /var/lib/docker/overlay2/x/merged overlay rw 0 0\n\
             /dev/vdb /var/lib/docker ext4 rw 0 0\n\
             /dev/vdc /var/lib/docker/volumes ext4 rw 0 0\n\
             /dev/vdd /var/lib/dockerx ext4 rw 0 0\n\
             /dev/sr0 /cdrom iso9660 ro 0 0\n\
             /dev/vde /mnt/data ext4 rw 0 0\n\
             /dev/vdf /mntx xfs ro,noatime 0 0\n\
             /dev/vdg /media ext4 rw 0 0\n\
             /dev/vdh /runner ext4 rw 0 0\n\
             /dev/vdi /srv/my\\040disk\\011x\\134y ext4 rw 0 0\n\
             /dev/vdj /srv/bad\\0 ext4 rw 0 0\n\
             /dev/vdk /srv/big\\777 ext4 rw 0 0\n\
             rootfs / rootfs rw 0 0\n",
            r#"
            /dev/vda "/" ext4 rw
            tmpfs "/tmp" tmpfs rw
            /dev/vdb "/var/lib/docker" ext4 rw
            /dev/vdd "/var/lib/dockerx" ext4 rw
            /dev/vdf "/mntx" xfs ro
            /dev/vdh "/runner" ext4 rw
            /dev/vdi "/srv/my disk\tx\\y" ext4 rw
            /dev/vdj "/srv/bad\\0" ext4 rw
            /dev/vdk "/srv/big\\777" ext4 rw
            rootfs "/" rootfs rw
            "#,
        );
    }

    #[test]
    fn mounts_bad_input_is_an_error_naming_the_line() {
        check(
            "mounts",
            "\n/dev/vda / ext4\n",
            "error: line 2: 3 fields, want at least 4",
        );
        check("mounts", "x\n", "error: line 1: 1 fields, want at least 4");
        check("mounts", "", "");
    }

    #[test]
    fn unescape_octal_leaves_anything_else_alone() {
        let cases = [
            ("", ""),
            ("\\", "\\"),
            ("\\04", "\\04"),
            ("\\040", " "),
            ("a\\040\\040b", "a  b"),
            ("\\08", "\\08"),
            ("é\\040", "é "),
        ];
        for (input, expect) in cases {
            assert_eq!(unescape_octal(input), expect, "{input:?}");
        }
    }

    fn names(families: &[Family]) -> Vec<&str> {
        families
            .iter()
            .map(|f| f.name.as_str())
            .filter(|n| !n.starts_with("node_scrape_collector_"))
            .collect()
    }

    /// `node_scrape_collector_success` of each collector, as `name=0|1`.
    fn successes(families: &[Family]) -> Vec<String> {
        families
            .iter()
            .filter(|f| f.name == "node_scrape_collector_success")
            .flat_map(|f| &f.samples)
            .map(|s| format!("{}={}", s.labels[0].1, s.value))
            .collect()
    }

    const STAT: &str = "cpu0 1 2 3 4\nbtime 5\n";
    const MEMINFO: &str = "MemTotal: 1 kB\n";

    #[test]
    fn collect_with_only_the_required_files_fails_the_optional_collectors_only() {
        let dir = root(&[("proc/stat", STAT), ("proc/meminfo", MEMINFO)]);
        let f = collect(dir.path()).unwrap();
        // timex is a system call, not a file under the root; textfile without a
        // directory reports its error gauge alone.
        let files: Vec<&str> = names(&f)
            .into_iter()
            .filter(|n| !n.starts_with("node_timex_"))
            .collect();
        assert_eq!(
            files,
            [
                "node_cpu_seconds_total",
                "node_boot_time_seconds",
                "node_memory_MemTotal_bytes",
                "node_time_seconds",
                "node_uname_info",
                "node_textfile_scrape_error",
            ]
        );
        let ok: Vec<String> = successes(&f)
            .into_iter()
            .filter(|s| s.ends_with("=1"))
            .collect();
        // sockstat, as node_exporter's, skips missing files without failing.
        assert_eq!(
            ok,
            [
                "cpu=1",
                "stat=1",
                "meminfo=1",
                "uname=1",
                "sockstat=1",
                "timex=1",
                "textfile=1"
            ]
        );
        assert_eq!(successes(&f).len(), collector_names().len());
        let durations = f
            .iter()
            .find(|f| f.name == "node_scrape_collector_duration_seconds")
            .unwrap();
        assert_eq!(durations.samples.len(), collector_names().len());
    }

    #[test]
    fn collect_a_missing_required_file_is_an_error_naming_it() {
        for (present, absent) in [
            (("proc/stat", STAT), "proc/meminfo"),
            (("proc/meminfo", MEMINFO), "proc/stat"),
        ] {
            let dir = root(&[present]);
            let e = collect(dir.path()).unwrap_err();
            assert!(matches!(&e, HostError::Read { path, .. } if path == &dir.path().join(absent)));
            assert!(e.to_string().contains(absent), "{e}");
        }
    }

    #[test]
    fn collect_a_bad_required_file_is_an_error_naming_file_and_line() {
        let dir = root(&[("proc/stat", STAT), ("proc/meminfo", "MemTotal 1\n")]);
        let e = collect(dir.path()).unwrap_err().to_string();
        let want = format!(
            "{}: line 1: MemTotal: no ':' after the field name",
            dir.path().join("proc/meminfo").display()
        );
        assert_eq!(e, want);
    }

    #[test]
    fn collect_a_bad_optional_file_fails_only_its_collector() {
        let dir = root(&[
            ("proc/stat", STAT),
            ("proc/meminfo", MEMINFO),
            ("proc/loadavg", "1 2\n"),
            ("proc/sys/fs/file-nr", "1 0 9\n"),
            ("proc/vmstat", "pgfault x\n"),
        ]);
        let f = collect(dir.path()).unwrap();
        let names = names(&f);
        assert!(!names.contains(&"node_load1"), "{names:?}");
        assert!(
            !names.iter().any(|n| n.starts_with("node_vmstat")),
            "{names:?}"
        );
        assert!(names.contains(&"node_filefd_maximum"), "{names:?}");
        let s = successes(&f);
        for want in ["loadavg=0", "vmstat=0", "filefd=1", "cpu=1"] {
            assert!(s.iter().any(|x| x == want), "{want} not in {s:?}");
        }
    }

    #[test]
    fn collect_reads_filesystems_below_root_and_flags_those_statvfs_fails_on() {
        let dir = root(&[
            ("proc/stat", STAT),
            ("proc/meminfo", MEMINFO),
            ("proc/loadavg", "0.5 0.25 0\n"),
            ("proc/net/dev", "eth0: 1 0 0 0 0 0 0 0 2 0 0 0 0 0 0 0\n"),
            (
                "proc/self/mounts",
                "/dev/vda / ext4 ro 0 0\n/dev/vdb /gone xfs rw 0 0\nproc /proc proc rw 0 0\n",
            ),
        ]);
        let f = collect(dir.path()).unwrap();
        let text = crate::expo::text(&f);
        let fs = |name: &str| {
            f.iter()
                .find(|f| f.name == name)
                .map(|f| f.samples.clone())
                .unwrap_or_default()
        };
        let root_labels = vec![
            ("device".to_owned(), "/dev/vda".to_owned()),
            ("fstype".to_owned(), "ext4".to_owned()),
            ("mountpoint".to_owned(), "/".to_owned()),
        ];
        let size = fs("node_filesystem_size_bytes");
        assert_eq!(size.len(), 1, "{text}");
        assert_eq!(size[0].labels, root_labels);
        assert!(size[0].value > 0.0, "{text}");
        let avail = fs("node_filesystem_avail_bytes")[0].value;
        let free = fs("node_filesystem_free_bytes")[0].value;
        assert!(avail <= free && free <= size[0].value, "{text}");
        assert_eq!(fs("node_filesystem_readonly")[0].value, 1.0);
        let errors = fs("node_filesystem_device_error");
        assert_eq!(errors.len(), 2, "{text}");
        assert!(text.contains(
            "node_filesystem_device_error{device=\"/dev/vdb\",fstype=\"xfs\",mountpoint=\"/gone\"} 1\n"
        ));
        assert!(text.contains("node_load5 0.25\n"), "{text}");
        assert!(text.contains("node_network_transmit_bytes_total{device=\"eth0\"} 2\n"));
    }

    #[test]
    fn collect_prefers_init_mount_table() {
        let dir = root(&[
            ("proc/stat", STAT),
            ("proc/meminfo", MEMINFO),
            ("proc/1/mounts", "/dev/a / ext4 rw 0 0\n"),
            ("proc/self/mounts", "/dev/b / ext4 rw 0 0\n"),
        ]);
        let text = crate::expo::text(&collect(dir.path()).unwrap());
        assert!(text.contains("device=\"/dev/a\""), "{text}");
        assert!(!text.contains("device=\"/dev/b\""), "{text}");
    }
}

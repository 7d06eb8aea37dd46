//! node_exporter 1.5's kernel and device collectors beyond the basic ones in
//! [`crate::host`]: `uname`, `filefd`, `entropy`, `conntrack`, `pressure`, `vmstat`,
//! `diskstats`, `sockstat`, `softnet`, `netstat`, `netclass`, the clock sources of
//! `time`, `schedstat`, `interrupts`, `processes`, `arp`, `udp_queues` and `tcpstat`,
//! under its metric names, label names, types, units and help texts. `tcpstat` reads
//! `/proc/net/tcp` and `tcp6` where node_exporter asks netlink (`INET_DIAG`): the
//! same sockets and states, but a listener's `tx_queue` there is 0 where netlink gives
//! its maximum backlog, so `tx_queued_bytes` can be lower than node_exporter's.
//!
//! Each collector is a function `(root, out) -> Result` that reads files below `root`
//! and pushes families onto `out`; on an error it may have pushed some (as
//! node_exporter's collectors send what they have before failing), and
//! [`crate::host::collect`] reports it in `node_scrape_collector_success`. The parsers
//! are pure (text in, families out) and tested on fixture strings. The filters are
//! node_exporter's default flags, as the same regular expressions: [`VMSTAT_FIELDS`],
//! [`NETSTAT_FIELDS`], [`DISKSTATS_DEVICE_EXCLUDE`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

use crate::procfs::{
    bad, family, gauge, hex, int, labelled, missing, parse_file, parsed, plain, read, require,
    signed, Bad, HostError,
};
use crate::{Family, Kind, Sample};

/// node_exporter's default `--collector.vmstat.fields`.
pub const VMSTAT_FIELDS: &str = r"^(oom_kill|pgpg|pswp|pg.*fault).*";

/// node_exporter 1.5's default `--collector.netstat.fields` (`TCPOFOQueue` came later).
pub const NETSTAT_FIELDS: &str = r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$";

/// node_exporter's default `--collector.diskstats.device-exclude`: partitions, RAM,
/// loop and floppy devices.
pub const DISKSTATS_DEVICE_EXCLUDE: &str = r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$";

// The filters are constants tested by `the_filters_compile`, so compiling cannot fail.
#[allow(clippy::expect_used)]
static VMSTAT_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(VMSTAT_FIELDS).expect("VMSTAT_FIELDS compiles"));
#[allow(clippy::expect_used)]
static NETSTAT_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(NETSTAT_FIELDS).expect("NETSTAT_FIELDS compiles"));
#[allow(clippy::expect_used)]
static DISK_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(DISKSTATS_DEVICE_EXCLUDE).expect("DISKSTATS_DEVICE_EXCLUDE compiles")
});

/// A collector: reads below the root, pushes its families, and says whether it failed
/// (after pushing what it had, as node_exporter's do).
pub type Collector = fn(&Path, &mut Vec<Family>) -> Result<(), HostError>;

// ---------------------------------------------------------------- uname

/// `uname(2)`: `node_uname_info` with the six fields as labels.
pub(crate) fn uname(_root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    let u = rustix::system::uname();
    let s = |c: &std::ffi::CStr| c.to_string_lossy().into_owned();
    out.push(uname_family(&[
        ("domainname", &s(u.domainname())),
        ("machine", &s(u.machine())),
        ("nodename", &s(u.nodename())),
        ("release", &s(u.release())),
        ("sysname", &s(u.sysname())),
        ("version", &s(u.version())),
    ]));
    Ok(())
}

fn uname_family(fields: &[(&str, &str)]) -> Family {
    family(
        "node_uname_info",
        "Labeled system information as provided by the uname system call.",
        Kind::Gauge,
        vec![labelled(fields, 1.0)],
    )
}

// ---------------------------------------------------------------- filefd

pub(crate) fn filefd(root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    out.extend(parse_file(root, "proc/sys/fs/file-nr", parse_filefd)?);
    Ok(())
}

/// `/proc/sys/fs/file-nr`: allocated, unused (always 0 since 2.6), maximum.
fn parse_filefd(text: &str) -> Result<Vec<Family>, Bad> {
    let f: Vec<&str> = text.split_whitespace().collect();
    let [allocated, _, maximum] = f[..] else {
        return Err(bad(0, format!("{} values, want 3", f.len())));
    };
    Ok(vec![
        gauge(
            "node_filefd_allocated",
            "File descriptor statistics: allocated.",
            int(allocated).map_err(|e| bad(0, e))?,
        ),
        gauge(
            "node_filefd_maximum",
            "File descriptor statistics: maximum.",
            int(maximum).map_err(|e| bad(0, e))?,
        ),
    ])
}

// ---------------------------------------------------------------- entropy

pub(crate) fn entropy(root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    for (file, name, help) in [
        (
            "proc/sys/kernel/random/entropy_avail",
            "node_entropy_available_bits",
            "Bits of available entropy.",
        ),
        (
            "proc/sys/kernel/random/poolsize",
            "node_entropy_pool_size_bits",
            "Bits of entropy pool.",
        ),
    ] {
        let v = parse_file(root, file, single)?;
        out.push(gauge(name, help, v));
    }
    Ok(())
}

/// A file holding one non-negative integer.
fn single(text: &str) -> Result<f64, Bad> {
    int(text.trim()).map_err(|e| bad(0, e))
}

// ---------------------------------------------------------------- conntrack

/// `/proc/net/stat/nf_conntrack` columns node_exporter reports, with their help texts.
const CONNTRACK_STATS: [(&str, &str); 8] = [
    ("found", "Number of searched entries which were successful."),
    ("invalid", "Number of packets seen which can not be tracked."),
    (
        "ignore",
        "Number of packets seen which are already connected to a conntrack entry.",
    ),
    ("insert", "Number of entries inserted into the list."),
    (
        "insert_failed",
        "Number of entries for which list insertion was attempted but failed.",
    ),
    ("drop", "Number of packets dropped due to conntrack failure."),
    (
        "early_drop",
        "Number of dropped conntrack entries to make room for new ones, if maximum table size was reached.",
    ),
    (
        "search_restart",
        "Number of conntrack table lookups which had to be restarted due to hashtable resizes.",
    ),
];

pub(crate) fn conntrack(root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    let entries = parse_file(root, "proc/sys/net/netfilter/nf_conntrack_count", single)?;
    let limit = parse_file(root, "proc/sys/net/netfilter/nf_conntrack_max", single)?;
    out.push(gauge(
        "node_nf_conntrack_entries",
        "Number of currently allocated flow entries for connection tracking.",
        entries,
    ));
    out.push(gauge(
        "node_nf_conntrack_entries_limit",
        "Maximum size of connection tracking table.",
        limit,
    ));
    out.extend(parse_file(
        root,
        "proc/net/stat/nf_conntrack",
        parse_conntrack_stat,
    )?);
    Ok(())
}

/// `/proc/net/stat/nf_conntrack`: a header of column names, then one line of hex
/// counters per CPU, summed by column name.
fn parse_conntrack_stat(text: &str) -> Result<Vec<Family>, Bad> {
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = match lines.next() {
        Some((_, h)) => h.split_whitespace().collect(),
        None => return Err(bad(0, "empty")),
    };
    let mut sums = vec![0.0; header.len()];
    for (i, line) in lines {
        let values: Vec<&str> = line.split_whitespace().collect();
        if values.is_empty() {
            continue;
        }
        if values.len() != header.len() {
            return Err(bad(
                i,
                format!("{} columns, want {}", values.len(), header.len()),
            ));
        }
        for (sum, v) in sums.iter_mut().zip(values) {
            *sum += hex(v).map_err(|e| bad(i, e))?;
        }
    }
    Ok(CONNTRACK_STATS
        .iter()
        .filter_map(|(column, help)| {
            let at = header.iter().position(|h| h == column)?;
            Some(gauge(
                &format!("node_nf_conntrack_stat_{column}"),
                help,
                sums[at],
            ))
        })
        .collect())
}

// ---------------------------------------------------------------- pressure

pub(crate) fn pressure(root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    for resource in ["cpu", "io", "memory"] {
        let file = format!("proc/pressure/{resource}");
        out.extend(parse_file(root, &file, |t| parse_pressure(resource, t))?);
    }
    Ok(())
}

/// `/proc/pressure/<resource>`: the `total=` microseconds of the `some` line (waiting)
/// and, except for the CPU, the `full` line (stalled).
fn parse_pressure(resource: &str, text: &str) -> Result<Vec<Family>, Bad> {
    let (waiting, stalled) = match resource {
        "cpu" => (
            "Total time in seconds that processes have waited for CPU time",
            None,
        ),
        "io" => (
            "Total time in seconds that processes have waited due to IO congestion",
            Some("Total time in seconds no process could make progress due to IO congestion"),
        ),
        _ => (
            "Total time in seconds that processes have waited for memory",
            Some("Total time in seconds no process could make progress due to memory congestion"),
        ),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut fields = line.split_whitespace();
        let (kind, help) = match fields.next() {
            Some("some") => ("waiting", waiting),
            Some("full") => match stalled {
                Some(help) => ("stalled", help),
                None => continue,
            },
            _ => continue,
        };
        let total = fields
            .find_map(|f| f.strip_prefix("total="))
            .ok_or_else(|| bad(i, "no total="))?;
        let us = int(total).map_err(|e| bad(i, e))?;
        out.push(family(
            &format!("node_pressure_{resource}_{kind}_seconds_total"),
            help,
            Kind::Counter,
            vec![plain(us / 1e6)],
        ));
    }
    Ok(out)
}

// ---------------------------------------------------------------- vmstat

pub(crate) fn vmstat(root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    out.extend(parse_file(root, "proc/vmstat", parse_vmstat)?);
    Ok(())
}

/// `/proc/vmstat`: the fields [`VMSTAT_FIELDS`] matches, untyped as node_exporter has
/// them.
fn parse_vmstat(text: &str) -> Result<Vec<Family>, Bad> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        let [name, value] = f[..] else {
            return Err(bad(i, format!("{} fields, want 2", f.len())));
        };
        if !VMSTAT_RE.is_match(name) {
            continue;
        }
        out.push(family(
            &format!("node_vmstat_{name}"),
            &format!("/proc/vmstat information field {name}."),
            Kind::Untyped,
            vec![plain(
                signed(value).map_err(|e| bad(i, format!("{name}: {e}")))?,
            )],
        ));
    }
    Ok(out)
}

// ---------------------------------------------------------------- diskstats

/// The `/proc/diskstats` columns after the device name: family, help, scale (sectors
/// are 512 bytes, times are milliseconds), kind.
const DISK_COLUMNS: [(&str, &str, f64, Kind); 17] = [
    (
        "reads_completed_total",
        "The total number of reads completed successfully.",
        1.0,
        Kind::Counter,
    ),
    (
        "reads_merged_total",
        "The total number of reads merged.",
        1.0,
        Kind::Counter,
    ),
    (
        "read_bytes_total",
        "The total number of bytes read successfully.",
        512.0,
        Kind::Counter,
    ),
    (
        "read_time_seconds_total",
        "The total number of seconds spent by all reads.",
        0.001,
        Kind::Counter,
    ),
    (
        "writes_completed_total",
        "The total number of writes completed successfully.",
        1.0,
        Kind::Counter,
    ),
    (
        "writes_merged_total",
        "The number of writes merged.",
        1.0,
        Kind::Counter,
    ),
    (
        "written_bytes_total",
        "The total number of bytes written successfully.",
        512.0,
        Kind::Counter,
    ),
    (
        "write_time_seconds_total",
        "This is the total number of seconds spent by all writes.",
        0.001,
        Kind::Counter,
    ),
    (
        "io_now",
        "The number of I/Os currently in progress.",
        1.0,
        Kind::Gauge,
    ),
    (
        "io_time_seconds_total",
        "Total seconds spent doing I/Os.",
        0.001,
        Kind::Counter,
    ),
    (
        "io_time_weighted_seconds_total",
        "The weighted # of seconds spent doing I/Os.",
        0.001,
        Kind::Counter,
    ),
    (
        "discards_completed_total",
        "The total number of discards completed successfully.",
        1.0,
        Kind::Counter,
    ),
    (
        "discards_merged_total",
        "The total number of discards merged.",
        1.0,
        Kind::Counter,
    ),
    (
        "discarded_sectors_total",
        "The total number of sectors discarded successfully.",
        1.0,
        Kind::Counter,
    ),
    (
        "discard_time_seconds_total",
        "This is the total number of seconds spent by all discards.",
        0.001,
        Kind::Counter,
    ),
    (
        "flush_requests_total",
        "The total number of flush requests completed successfully",
        1.0,
        Kind::Counter,
    ),
    (
        "flush_requests_time_seconds_total",
        "This is the total number of seconds spent by all flush requests.",
        0.001,
        Kind::Counter,
    ),
];

/// One `/proc/diskstats` line that passed the device filter.
#[derive(Debug, PartialEq)]
struct Disk {
    major: String,
    minor: String,
    name: String,
    values: Vec<f64>,
}

pub(crate) fn diskstats(root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    let disks = parse_file(root, "proc/diskstats", parse_diskstats)?;
    let udev: Vec<BTreeMap<String, String>> = disks
        .iter()
        .map(|d| {
            let file = format!("run/udev/data/b{}:{}", d.major, d.minor);
            // node_exporter logs a missing udev database at debug level and reports
            // the device with empty labels.
            read(root, &file)
                .ok()
                .flatten()
                .map(|t| parse_udev(&t))
                .unwrap_or_default()
        })
        .collect();
    out.extend(disk_families(&disks, &udev));
    Ok(())
}

/// `/proc/diskstats`: `major minor name` and 11, 15 or 17 (or more, ignored) counters,
/// without the devices [`DISKSTATS_DEVICE_EXCLUDE`] matches.
fn parse_diskstats(text: &str) -> Result<Vec<Disk>, Bad> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() < 14 {
            return Err(bad(i, format!("{} fields, want at least 14", f.len())));
        }
        int(f[0]).map_err(|e| bad(i, format!("major: {e}")))?;
        int(f[1]).map_err(|e| bad(i, format!("minor: {e}")))?;
        let values = f[3..]
            .iter()
            .take(DISK_COLUMNS.len())
            .map(|v| int(v))
            .collect::<Result<Vec<f64>, String>>()
            .map_err(|e| bad(i, format!("{}: {e}", f[2])))?;
        if DISK_RE.is_match(f[2]) {
            continue;
        }
        out.push(Disk {
            major: f[0].to_owned(),
            minor: f[1].to_owned(),
            name: f[2].to_owned(),
            values,
        });
    }
    Ok(out)
}

/// A udev database entry (`/run/udev/data/b<major>:<minor>`): its `E:KEY=value`
/// properties.
fn parse_udev(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("E:")?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn disk_families(disks: &[Disk], udev: &[BTreeMap<String, String>]) -> Vec<Family> {
    let mut out: Vec<Family> = DISK_COLUMNS
        .iter()
        .map(|(name, help, _, kind)| family(&format!("node_disk_{name}"), help, *kind, Vec::new()))
        .collect();
    let mut info = family(
        "node_disk_info",
        "Info of /sys/block/<block_device>.",
        Kind::Gauge,
        Vec::new(),
    );
    let mut fs = family(
        "node_disk_filesystem_info",
        "Info about disk filesystem.",
        Kind::Gauge,
        Vec::new(),
    );
    let mut dm = family(
        "node_disk_device_mapper_info",
        "Info about disk device mapper.",
        Kind::Gauge,
        Vec::new(),
    );
    let mut ata: Vec<(&str, Family)> = [
        (
            "ID_ATA_WRITE_CACHE",
            "node_disk_ata_write_cache",
            "ATA disk has a write cache.",
        ),
        (
            "ID_ATA_WRITE_CACHE_ENABLED",
            "node_disk_ata_write_cache_enabled",
            "ATA disk has its write cache enabled.",
        ),
        (
            "ID_ATA_ROTATION_RATE_RPM",
            "node_disk_ata_rotation_rate_rpm",
            "ATA disk rotation rate in RPMs (0 for SSDs).",
        ),
    ]
    .into_iter()
    .map(|(key, name, help)| (key, family(name, help, Kind::Gauge, Vec::new())))
    .collect();
    let empty = BTreeMap::new();
    for (i, d) in disks.iter().enumerate() {
        let u = udev.get(i).unwrap_or(&empty);
        let p = |k: &str| u.get(k).map_or("", String::as_str);
        // The serial printed on the label, else the short one.
        let serial = match p("SCSI_IDENT_SERIAL") {
            "" => p("ID_SERIAL_SHORT"),
            s => s,
        };
        info.samples.push(labelled(
            &[
                ("device", &d.name),
                ("major", &d.major),
                ("minor", &d.minor),
                ("path", p("ID_PATH")),
                ("wwn", p("ID_WWN")),
                ("model", p("ID_MODEL")),
                ("serial", serial),
                ("revision", p("ID_REVISION")),
            ],
            1.0,
        ));
        if !p("ID_FS_TYPE").is_empty() {
            fs.samples.push(labelled(
                &[
                    ("device", &d.name),
                    ("type", p("ID_FS_TYPE")),
                    ("usage", p("ID_FS_USAGE")),
                    ("uuid", p("ID_FS_UUID")),
                    ("version", p("ID_FS_VERSION")),
                ],
                1.0,
            ));
        }
        if !p("DM_NAME").is_empty() {
            dm.samples.push(labelled(
                &[
                    ("device", &d.name),
                    ("name", p("DM_NAME")),
                    ("uuid", p("DM_UUID")),
                    ("vg_name", p("DM_VG_NAME")),
                    ("lv_name", p("DM_LV_NAME")),
                    ("lv_layer", p("DM_LV_LAYER")),
                ],
                1.0,
            ));
        }
        if !p("ID_ATA").is_empty() {
            for (key, f) in &mut ata {
                if let Ok(v) = p(key).parse::<f64>() {
                    f.samples.push(labelled(&[("device", &d.name)], v));
                }
            }
        }
        for ((f, (_, _, scale, _)), v) in out.iter_mut().zip(DISK_COLUMNS).zip(&d.values) {
            f.samples.push(labelled(&[("device", &d.name)], v * scale));
        }
    }
    out.push(info);
    out.push(fs);
    out.push(dm);
    out.extend(ata.into_iter().map(|(_, f)| f));
    out
}

// ---------------------------------------------------------------- sockstat

pub(crate) fn sockstat(root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    let page = rustix::param::page_size() as f64;
    // node_exporter skips a missing file (no IPv6, or no IPv4) without failing.
    for file in ["proc/net/sockstat", "proc/net/sockstat6"] {
        if let Some(text) = read(root, file)? {
            out.extend(parsed(root, file, parse_sockstat(&text, page))?);
        }
    }
    Ok(())
}

/// `/proc/net/sockstat` and `sockstat6`: `PROTO: key value ...` lines, each pair a
/// gauge `node_sockstat_<PROTO>_<key>`, plus `<PROTO>_mem_bytes` (`mem` is in pages)
/// and `sockets_used` from `sockets: used N`.
fn parse_sockstat(text: &str, page_size: f64) -> Result<Vec<Family>, Bad> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some((proto, rest)) = line.split_once(':') else {
            if line.trim().is_empty() {
                continue;
            }
            return Err(bad(i, "no ':' after the protocol"));
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() % 2 != 0 {
            return Err(bad(i, format!("{proto}: odd number of fields")));
        }
        for pair in f.chunks(2) {
            let (key, value) = (pair[0], pair[1]);
            let v = int(value).map_err(|e| bad(i, format!("{proto} {key}: {e}")))?;
            if proto == "sockets" {
                if key == "used" {
                    out.push(gauge(
                        "node_sockstat_sockets_used",
                        "Number of IPv4 sockets in use.",
                        v,
                    ));
                }
                continue;
            }
            if !["inuse", "orphan", "tw", "alloc", "mem", "memory"].contains(&key) {
                continue;
            }
            let mut push = |key: &str, v: f64| {
                out.push(gauge(
                    &format!("node_sockstat_{proto}_{key}"),
                    &format!("Number of {proto} sockets in state {key}."),
                    v,
                ));
            };
            push(key, v);
            if key == "mem" {
                push("mem_bytes", v * page_size);
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- softnet

pub(crate) fn softnet(root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    out.extend(parse_file(root, "proc/net/softnet_stat", parse_softnet)?);
    Ok(())
}

/// `/proc/net/softnet_stat`: one line of hex counters per CPU; the first three are
/// processed, dropped and time-squeezed.
fn parse_softnet(text: &str) -> Result<Vec<Family>, Bad> {
    let names = [
        (
            "node_softnet_processed_total",
            "Number of processed packets",
        ),
        ("node_softnet_dropped_total", "Number of dropped packets"),
        (
            "node_softnet_times_squeezed_total",
            "Number of times processing packets ran out of quota",
        ),
    ];
    let mut out: Vec<Family> = names
        .iter()
        .map(|(n, h)| family(n, h, Kind::Counter, Vec::new()))
        .collect();
    let mut cpu = 0;
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() < names.len() {
            return Err(bad(i, format!("{} columns, want at least 3", f.len())));
        }
        let id = cpu.to_string();
        for (fam, v) in out.iter_mut().zip(&f) {
            let v = hex(v).map_err(|e| bad(i, e))?;
            fam.samples.push(labelled(&[("cpu", &id)], v));
        }
        cpu += 1;
    }
    Ok(out)
}

// ---------------------------------------------------------------- netstat

pub(crate) fn netstat(root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    let mut stats = BTreeMap::new();
    for file in ["proc/net/netstat", "proc/net/snmp"] {
        let text = require(root, file)?;
        parsed(root, file, parse_netstat_pairs(&text, &mut stats))?;
    }
    // node_exporter skips a missing snmp6 (IPv6 disabled).
    if let Some(text) = read(root, "proc/net/snmp6")? {
        parsed(root, "proc/net/snmp6", parse_snmp6(&text, &mut stats))?;
    }
    out.extend(netstat_families(&stats));
    Ok(())
}

/// `/proc/net/netstat` and `/proc/net/snmp`: pairs of lines, `Proto: names...` then
/// `Proto: values...`, into `Proto_Name` → value.
fn parse_netstat_pairs(text: &str, stats: &mut BTreeMap<String, f64>) -> Result<(), Bad> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    for pair in lines.chunks(2) {
        let [(hi, header), (vi, values)] = pair else {
            return Err(bad(pair[0].0, "a header without a line of values"));
        };
        let (proto, names) = header
            .split_once(':')
            .ok_or_else(|| bad(*hi, "no ':' after the protocol"))?;
        let (vproto, values) = values
            .split_once(':')
            .ok_or_else(|| bad(*vi, "no ':' after the protocol"))?;
        if proto != vproto {
            return Err(bad(*vi, format!("{vproto}: values after {proto}'s header")));
        }
        let names: Vec<&str> = names.split_whitespace().collect();
        let values: Vec<&str> = values.split_whitespace().collect();
        if names.len() != values.len() {
            return Err(bad(
                *vi,
                format!("{proto}: {} values for {} names", values.len(), names.len()),
            ));
        }
        for (n, v) in names.iter().zip(values) {
            let v = signed(v).map_err(|e| bad(*vi, format!("{proto} {n}: {e}")))?;
            stats.insert(format!("{proto}_{n}"), v);
        }
    }
    Ok(())
}

/// `/proc/net/snmp6`: `Ip6InReceives 12` lines; the protocol is the name up to its
/// first `6` (`Ip6`, `Icmp6`, `UdpLite6`), as node_exporter splits it.
fn parse_snmp6(text: &str, stats: &mut BTreeMap<String, f64>) -> Result<(), Bad> {
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [name, value, ..] = f[..] else { continue };
        let Some(six) = name.find('6') else { continue };
        let v = signed(value).map_err(|e| bad(i, format!("{name}: {e}")))?;
        stats.insert(format!("{}_{}", &name[..=six], &name[six + 1..]), v);
    }
    Ok(())
}

fn netstat_families(stats: &BTreeMap<String, f64>) -> Vec<Family> {
    stats
        .iter()
        .filter(|(k, _)| NETSTAT_RE.is_match(k))
        .map(|(k, v)| {
            family(
                &format!("node_netstat_{k}"),
                &format!("Statistic {}.", k.replacen('_', "", 1)),
                Kind::Untyped,
                vec![plain(*v)],
            )
        })
        .collect()
}

// ---------------------------------------------------------------- netclass

/// `/sys/class/net/<device>/<file>` → `node_network_<name>` (node_exporter's netclass
/// properties).
const NETCLASS_PROPERTIES: [(&str, &str, Kind); 17] = [
    ("addr_assign_type", "address_assign_type", Kind::Gauge),
    ("carrier", "carrier", Kind::Gauge),
    ("carrier_changes", "carrier_changes_total", Kind::Counter),
    (
        "carrier_up_count",
        "carrier_up_changes_total",
        Kind::Counter,
    ),
    (
        "carrier_down_count",
        "carrier_down_changes_total",
        Kind::Counter,
    ),
    ("dev_id", "device_id", Kind::Gauge),
    ("dormant", "dormant", Kind::Gauge),
    ("flags", "flags", Kind::Gauge),
    ("ifindex", "iface_id", Kind::Gauge),
    ("iflink", "iface_link", Kind::Gauge),
    ("link_mode", "iface_link_mode", Kind::Gauge),
    ("mtu", "mtu_bytes", Kind::Gauge),
    ("name_assign_type", "name_assign_type", Kind::Gauge),
    ("netdev_group", "net_dev_group", Kind::Gauge),
    ("speed", "speed_bytes", Kind::Gauge),
    ("tx_queue_len", "transmit_queue_length", Kind::Gauge),
    ("type", "protocol_type", Kind::Gauge),
];

/// The files [`netclass`] reads besides [`NETCLASS_PROPERTIES`].
const NETCLASS_INFO: [&str; 5] = ["address", "broadcast", "duplex", "operstate", "ifalias"];

pub(crate) fn netclass(root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    let dir = root.join("sys/class/net");
    let entries = std::fs::read_dir(&dir).map_err(|source| HostError::Read {
        path: dir.clone(),
        source,
    })?;
    let mut devices: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    devices.sort();
    let mut attrs = Vec::new();
    for device in devices {
        let mut a = BTreeMap::new();
        for file in NETCLASS_PROPERTIES.iter().map(|p| p.0).chain(NETCLASS_INFO) {
            // A file the device does not support reads as an error (EINVAL on a down
            // link's speed, EOPNOTSUPP): node_exporter leaves the property out.
            if let Ok(v) = std::fs::read_to_string(dir.join(&device).join(file)) {
                a.insert(file.to_owned(), v.trim().to_owned());
            }
        }
        attrs.push((device, a));
    }
    out.extend(netclass_families(&attrs));
    Ok(())
}

/// An integer sysfs prints: decimal, or hex with `0x` (`flags`, `dev_id`).
fn sysfs_int(s: &str) -> Option<f64> {
    match s.strip_prefix("0x") {
        Some(h) => i64::from_str_radix(h, 16).ok().map(|v| v as f64),
        None => s.parse::<i64>().ok().map(|v| v as f64),
    }
}

fn netclass_families(devices: &[(String, BTreeMap<String, String>)]) -> Vec<Family> {
    let mut up = family(
        "node_network_up",
        "Value is 1 if operstate is 'up', 0 otherwise.",
        Kind::Gauge,
        Vec::new(),
    );
    let mut info = family(
        "node_network_info",
        "Non-numeric data from /sys/class/net/<iface>, value is always 1.",
        Kind::Gauge,
        Vec::new(),
    );
    let mut props: Vec<Family> = NETCLASS_PROPERTIES
        .iter()
        .map(|(_, name, kind)| {
            family(
                &format!("node_network_{name}"),
                &format!("Network device property: {name}"),
                *kind,
                Vec::new(),
            )
        })
        .collect();
    for (device, a) in devices {
        let get = |k: &str| a.get(k).map_or("", String::as_str);
        let operstate = get("operstate");
        up.samples.push(labelled(
            &[("device", device)],
            if operstate == "up" { 1.0 } else { 0.0 },
        ));
        info.samples.push(labelled(
            &[
                ("device", device),
                ("address", get("address")),
                ("broadcast", get("broadcast")),
                ("duplex", get("duplex")),
                ("operstate", operstate),
                ("ifalias", get("ifalias")),
            ],
            1.0,
        ));
        for (f, (file, _, _)) in props.iter_mut().zip(NETCLASS_PROPERTIES) {
            let Some(v) = a.get(file).and_then(|v| sysfs_int(v)) else {
                continue;
            };
            // Mbit/s to bytes per second, truncated as node_exporter's int64 does;
            // an unknown speed (-1) stays negative.
            let v = if file == "speed" {
                (v * 1000.0 * 1000.0 / 8.0).trunc()
            } else {
                v
            };
            f.samples.push(labelled(&[("device", device)], v));
        }
    }
    let mut out = vec![up, info];
    out.extend(props);
    out
}

// ---------------------------------------------------------------- time

/// The `time` collector's clock sources (its `node_time_seconds` is in `host`).
pub(crate) fn clocksources(root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    let dir = root.join("sys/devices/system/clocksource");
    let entries = std::fs::read_dir(&dir).map_err(|source| HostError::Read {
        path: dir.clone(),
        source,
    })?;
    let mut sources: Vec<(String, String, String)> = Vec::new();
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_prefix("clocksource") else {
            continue;
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let base = format!("sys/devices/system/clocksource/{name}");
        let available = require(root, &format!("{base}/available_clocksource"))?;
        let current = require(root, &format!("{base}/current_clocksource"))?;
        sources.push((id.to_owned(), available, current));
    }
    sources.sort();
    out.extend(clocksource_families(&sources));
    Ok(())
}

fn clocksource_families(sources: &[(String, String, String)]) -> Vec<Family> {
    let mut available = family(
        "node_time_clocksource_available_info",
        "Available clocksources read from '/sys/devices/system/clocksource'.",
        Kind::Gauge,
        Vec::new(),
    );
    let mut current = family(
        "node_time_clocksource_current_info",
        "Current clocksource read from '/sys/devices/system/clocksource'.",
        Kind::Gauge,
        Vec::new(),
    );
    for (id, avail, cur) in sources {
        for a in avail.split_whitespace() {
            available
                .samples
                .push(labelled(&[("clocksource", a), ("device", id)], 1.0));
        }
        let cur = cur.trim();
        if !cur.is_empty() {
            current
                .samples
                .push(labelled(&[("clocksource", cur), ("device", id)], 1.0));
        }
    }
    vec![available, current]
}

// ---------------------------------------------------------------- schedstat

pub(crate) fn schedstat(root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    out.extend(parse_file(root, "proc/schedstat", parse_schedstat)?);
    Ok(())
}

/// `/proc/schedstat`: per `cpuN` line, the 7th, 8th and 9th numbers (nanoseconds
/// running, nanoseconds waiting, timeslices).
fn parse_schedstat(text: &str) -> Result<Vec<Family>, Bad> {
    let mut running = Vec::new();
    let mut waiting = Vec::new();
    let mut slices = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(id) = f.first().and_then(|k| k.strip_prefix("cpu")) else {
            continue;
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(i, format!("cpu{id}: not a cpu number")));
        }
        if f.len() < 10 {
            return Err(bad(i, format!("cpu{id}: {} values, want 9", f.len() - 1)));
        }
        let v = |n: usize| int(f[n]).map_err(|e| bad(i, format!("cpu{id}: {e}")));
        running.push(labelled(&[("cpu", id)], v(7)? / 1e9));
        waiting.push(labelled(&[("cpu", id)], v(8)? / 1e9));
        slices.push(labelled(&[("cpu", id)], v(9)?));
    }
    Ok(vec![
        family(
            "node_schedstat_running_seconds_total",
            "Number of seconds CPU spent running a process.",
            Kind::Counter,
            running,
        ),
        family(
            "node_schedstat_waiting_seconds_total",
            "Number of seconds spent by processing waiting for this CPU.",
            Kind::Counter,
            waiting,
        ),
        family(
            "node_schedstat_timeslices_total",
            "Number of timeslices executed by CPU.",
            Kind::Counter,
            slices,
        ),
    ])
}

// ---------------------------------------------------------------- interrupts

pub(crate) fn interrupts(root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    out.extend(parse_file(root, "proc/interrupts", parse_interrupts)?);
    Ok(())
}

/// `/proc/interrupts`: a header naming the CPUs, then per interrupt its counts per
/// CPU and a description: for a numbered one the chip (`info`) and the rest
/// (`devices`), for a named one (`LOC`) all of it as `info`. Lines without a
/// description (`ERR`, `MIS`) are left out, as node_exporter does; a repeated name
/// keeps its last line.
fn parse_interrupts(text: &str) -> Result<Vec<Family>, Bad> {
    let mut lines = text.lines().enumerate();
    let cpus = match lines.next() {
        Some((_, h)) => h.split_whitespace().count(),
        None => return Err(bad(0, "empty")),
    };
    let mut by_name: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for (i, line) in lines {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < cpus + 2 {
            continue;
        }
        let name = f[0].strip_suffix(':').unwrap_or(f[0]);
        let (info, devices) = if name.bytes().all(|b| b.is_ascii_digit()) {
            (f[cpus + 1].to_owned(), f[cpus + 2..].join(" "))
        } else {
            (f[cpus + 1..].join(" "), String::new())
        };
        let mut samples = Vec::new();
        for (cpu, v) in f[1..=cpus].iter().enumerate() {
            let v = int(v).map_err(|e| bad(i, format!("{name}: {e}")))?;
            samples.push(labelled(
                &[
                    ("cpu", &cpu.to_string()),
                    ("devices", &devices),
                    ("info", &info),
                    ("type", name),
                ],
                v,
            ));
        }
        by_name.insert(name.to_owned(), samples);
    }
    Ok(vec![family(
        "node_interrupts_total",
        "Interrupt details.",
        Kind::Counter,
        by_name.into_values().flatten().collect(),
    )])
}

// ---------------------------------------------------------------- processes

pub(crate) fn processes(root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    let pid_max = parse_file(root, "proc/sys/kernel/pid_max", single)?;
    let threads_max = parse_file(root, "proc/sys/kernel/threads-max", single)?;
    let proc_dir = root.join("proc");
    let entries = std::fs::read_dir(&proc_dir).map_err(|source| HostError::Read {
        path: proc_dir.clone(),
        source,
    })?;
    let mut counts = ProcessCounts::default();
    for e in entries.filter_map(Result::ok) {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // A process that exits between the listing and the read is skipped.
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some((state, threads)) = proc_stat_state(&stat) else {
            continue;
        };
        counts.pids += 1.0;
        counts.threads += threads;
        *counts.states.entry(state).or_default() += 1.0;
        let Ok(tasks) = std::fs::read_dir(e.path().join("task")) else {
            continue;
        };
        for t in tasks.filter_map(Result::ok) {
            if let Some((s, _)) = std::fs::read_to_string(t.path().join("stat"))
                .ok()
                .as_deref()
                .and_then(proc_stat_state)
            {
                *counts.thread_states.entry(s).or_default() += 1.0;
            }
        }
    }
    out.extend(process_count_families(&counts, pid_max, threads_max));
    Ok(())
}

#[derive(Debug, Default)]
struct ProcessCounts {
    pids: f64,
    threads: f64,
    states: BTreeMap<String, f64>,
    thread_states: BTreeMap<String, f64>,
}

/// A `/proc/<pid>/stat` line's state (field 3) and number of threads (field 20).
fn proc_stat_state(stat: &str) -> Option<(String, f64)> {
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let state = (*f.first()?).to_owned();
    let threads = f.get(17)?.parse::<f64>().ok()?;
    Some((state, threads))
}

fn process_count_families(c: &ProcessCounts, pid_max: f64, threads_max: f64) -> Vec<Family> {
    let by = |label: &str, m: &BTreeMap<String, f64>| -> Vec<Sample> {
        m.iter().map(|(s, v)| labelled(&[(label, s)], *v)).collect()
    };
    vec![
        gauge(
            "node_processes_max_processes",
            "Number of max PIDs limit",
            pid_max,
        ),
        gauge(
            "node_processes_max_threads",
            "Limit of threads in the system",
            threads_max,
        ),
        gauge("node_processes_pids", "Number of PIDs", c.pids),
        gauge(
            "node_processes_threads",
            "Allocated threads in system",
            c.threads,
        ),
        family(
            "node_processes_state",
            "Number of processes in each state.",
            Kind::Gauge,
            by("state", &c.states),
        ),
        family(
            "node_processes_threads_state",
            "Number of threads in each state.",
            Kind::Gauge,
            by("thread_state", &c.thread_states),
        ),
    ]
}

// ---------------------------------------------------------------- arp

pub(crate) fn arp(root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    out.push(parse_file(root, "proc/net/arp", parse_arp)?);
    Ok(())
}

/// `/proc/net/arp`: a header line (first column `IP`), then one line per entry whose
/// last column is the device; `node_arp_entries` counts them per device. Like
/// node_exporter, a line of fewer than six columns is an error.
fn parse_arp(text: &str) -> Result<Family, Bad> {
    let mut devices: BTreeMap<&str, f64> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 {
            return Err(bad(i, format!("{} columns, want at least 6", f.len())));
        }
        if f[0] != "IP" {
            *devices.entry(f[f.len() - 1]).or_default() += 1.0;
        }
    }
    Ok(family(
        "node_arp_entries",
        "ARP entries by device",
        Kind::Gauge,
        devices
            .into_iter()
            .map(|(d, n)| labelled(&[("device", d)], n))
            .collect(),
    ))
}

// ---------------------------------------------------------------- udp_queues

pub(crate) fn udp_queues(root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    let mut samples = Vec::new();
    let mut found = false;
    // node_exporter skips a missing file (no IPv6, or no IPv4) and has no data only
    // when both are missing.
    for (file, ip) in [("proc/net/udp", "v4"), ("proc/net/udp6", "v6")] {
        let Some(text) = read(root, file)? else {
            continue;
        };
        found = true;
        let (tx, rx) = parsed(root, file, parse_socket_queues(&text))?;
        samples.push(labelled(&[("ip", ip), ("queue", "tx")], tx));
        samples.push(labelled(&[("ip", ip), ("queue", "rx")], rx));
    }
    out.push(family(
        "node_udp_queues",
        "Number of allocated memory in the kernel for UDP datagrams in bytes.",
        Kind::Gauge,
        samples,
    ));
    if !found {
        return Err(missing(root, "proc/net/udp"));
    }
    Ok(())
}

/// The columns of one socket line of `/proc/net/{tcp,udp}{,6}` that the collectors
/// use: the state (hex) and the `tx_queue:rx_queue` pair (hex), after the checks
/// node_exporter's procfs makes (at least 10 columns, a `:` in the queues).
fn socket_line(line: &str) -> Result<(u64, f64, f64), String> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 10 {
        return Err(format!("{} columns, want at least 10", f.len()));
    }
    let state = u64::from_str_radix(f[3], 16)
        .map_err(|_| format!("state: not a hexadecimal number: {:?}", f[3]))?;
    let (tx, rx) = f[4]
        .split_once(':')
        .ok_or_else(|| format!("queues: no ':' in {:?}", f[4]))?;
    Ok((state, hex(tx)?, hex(rx)?))
}

/// `/proc/net/udp` or `udp6`: a header line, then one line per socket; the sums of its
/// `tx_queue` and `rx_queue` columns (bytes), as node_exporter's procfs
/// `NetUDPSummary` has them.
fn parse_socket_queues(text: &str) -> Result<(f64, f64), Bad> {
    let (mut tx, mut rx) = (0.0, 0.0);
    for (i, line) in text.lines().enumerate().skip(1) {
        let (_, t, r) = socket_line(line).map_err(|e| bad(i, e))?;
        tx += t;
        rx += r;
    }
    Ok((tx, rx))
}

// ---------------------------------------------------------------- tcpstat

/// node_exporter's names of the kernel's TCP states, by number (1 to 11); any other
/// number is `unknown`, as its `String()` has it.
const TCP_STATES: [&str; 11] = [
    "established",
    "syn_sent",
    "syn_recv",
    "fin_wait1",
    "fin_wait2",
    "time_wait",
    "close",
    "close_wait",
    "last_ack",
    "listen",
    "closing",
];

/// node_exporter reads the sockets over netlink (`INET_DIAG`), IPv6 only when
/// `/proc/net/tcp6` exists; rampart reads the same sockets from `/proc/net/tcp` and
/// `tcp6`. The one difference: for a listening socket netlink's write queue is its
/// maximum accept backlog, `/proc`'s `tx_queue` is 0, so `tx_queued_bytes` is lower
/// here by the listeners' backlogs.
pub(crate) fn tcpstat(root: &Path, out: &mut Vec<Family>) -> Result<(), HostError> {
    let mut counts = TcpCounts::default();
    let text = require(root, "proc/net/tcp")?;
    parsed(root, "proc/net/tcp", parse_tcp(&text, &mut counts))?;
    if let Some(text) = read(root, "proc/net/tcp6")? {
        parsed(root, "proc/net/tcp6", parse_tcp(&text, &mut counts))?;
    }
    out.push(counts.family());
    Ok(())
}

/// Sockets per state, and the queues' sums, over one or more `/proc/net/tcp*` files.
#[derive(Default)]
struct TcpCounts {
    states: BTreeMap<&'static str, f64>,
    rx: f64,
    tx: f64,
    sockets: usize,
}

impl TcpCounts {
    /// `node_tcp_connection_states`: the states seen (node_exporter has no series for
    /// a state without sockets), then `rx_queued_bytes` and `tx_queued_bytes`, which
    /// it has only when there is a socket.
    fn family(self) -> Family {
        let mut samples: Vec<Sample> = self
            .states
            .iter()
            .map(|(s, n)| labelled(&[("state", s)], *n))
            .collect();
        if self.sockets > 0 {
            samples.push(labelled(&[("state", "rx_queued_bytes")], self.rx));
            samples.push(labelled(&[("state", "tx_queued_bytes")], self.tx));
        }
        family(
            "node_tcp_connection_states",
            "Number of connection states.",
            Kind::Gauge,
            samples,
        )
    }
}

/// `/proc/net/tcp` or `tcp6`: a header line, then one line per socket with its state
/// (`st`, hex) and `tx_queue:rx_queue` (hex), added to `counts`.
fn parse_tcp(text: &str, counts: &mut TcpCounts) -> Result<(), Bad> {
    for (i, line) in text.lines().enumerate().skip(1) {
        let (state, tx, rx) = socket_line(line).map_err(|e| bad(i, e))?;
        let name = usize::try_from(state)
            .ok()
            .and_then(|s| s.checked_sub(1))
            .and_then(|s| TCP_STATES.get(s))
            .copied()
            .unwrap_or("unknown");
        *counts.states.entry(name).or_default() += 1.0;
        counts.tx += tx;
        counts.rx += rx;
        counts.sockets += 1;
    }
    Ok(())
}

// ---------------------------------------------------------------- netdev

/// `/sys/class/net/<device>/statistics/rx_nohandler` of the given devices, as
/// node_exporter's netdev (over netlink) reports it beside `/proc/net/dev`'s columns.
pub(crate) fn nohandler(root: &Path, devices: &[String]) -> Family {
    let samples = devices
        .iter()
        .filter_map(|d| {
            let file = format!("sys/class/net/{d}/statistics/rx_nohandler");
            let v = read(root, &file).ok().flatten()?;
            Some(labelled(&[("device", d)], int(v.trim()).ok()?))
        })
        .collect();
    family(
        "node_network_receive_nohandler_total",
        "Network device statistic receive_nohandler.",
        Kind::Counter,
        samples,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::fixture::{lines, render, root};

    fn check(got: Result<Vec<Family>, Bad>, expect: &str) {
        assert_eq!(render(got), lines(expect));
    }

    #[test]
    fn the_filters_compile() {
        for re in [VMSTAT_FIELDS, NETSTAT_FIELDS, DISKSTATS_DEVICE_EXCLUDE] {
            Regex::new(re).unwrap();
        }
    }

    #[test]
    fn uname_labels_in_node_exporters_order() {
        check(
            Ok(vec![uname_family(&[
                ("domainname", "(none)"),
                ("machine", "x86_64"),
                ("nodename", "vm"),
                ("release", "6.1.0"),
                ("sysname", "Linux"),
                ("version", "#1 SMP"),
            ])]),
            r##"
            # TYPE node_uname_info gauge
            node_uname_info{domainname="(none)",machine="x86_64",nodename="vm",release="6.1.0",sysname="Linux",version="#1 SMP"} 1
            "##,
        );
    }

    #[test]
    fn filefd() {
        check(
            parse_filefd("1426\t0\t2466239\n"),
            "# TYPE node_filefd_allocated gauge\nnode_filefd_allocated 1426\n\
             # TYPE node_filefd_maximum gauge\nnode_filefd_maximum 2466239",
        );
        check(parse_filefd("1 2\n"), "error: line 1: 2 values, want 3");
        check(
            parse_filefd("x 0 1\n"),
            "error: line 1: not a number: \"x\"",
        );
    }

    #[test]
    fn single_number_files() {
        assert_eq!(single("256\n"), Ok(256.0));
        assert_eq!(single(""), Err(bad(0, "not a number: \"\"")));
    }

    const CONNTRACK: &str = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n\
        00000021  00000000 0000000a 00000000 00000001 00000002 00000000 00000000 00000003 00000004 00000005 00000006 00000000  00000000 00000000 00000000 00000007\n\
        00000021  00000000 00000001 00000000 00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000  00000000 00000000 00000000 00000010\n";

    #[test]
    fn conntrack_stats_are_summed_over_cpus_by_column_name() {
        check(
            parse_conntrack_stat(CONNTRACK),
            r#"
            # TYPE node_nf_conntrack_stat_found gauge
            node_nf_conntrack_stat_found 11
            # TYPE node_nf_conntrack_stat_invalid gauge
            node_nf_conntrack_stat_invalid 2
            # TYPE node_nf_conntrack_stat_ignore gauge
            node_nf_conntrack_stat_ignore 2
            # TYPE node_nf_conntrack_stat_insert gauge
            node_nf_conntrack_stat_insert 3
            # TYPE node_nf_conntrack_stat_insert_failed gauge
            node_nf_conntrack_stat_insert_failed 4
            # TYPE node_nf_conntrack_stat_drop gauge
            node_nf_conntrack_stat_drop 5
            # TYPE node_nf_conntrack_stat_early_drop gauge
            node_nf_conntrack_stat_early_drop 6
            # TYPE node_nf_conntrack_stat_search_restart gauge
            node_nf_conntrack_stat_search_restart 23
            "#,
        );
        // An older kernel without some columns: those are left out.
        check(
            parse_conntrack_stat("entries found drop\n1 2 3\n"),
            "# TYPE node_nf_conntrack_stat_found gauge\nnode_nf_conntrack_stat_found 2\n\
             # TYPE node_nf_conntrack_stat_drop gauge\nnode_nf_conntrack_stat_drop 3",
        );
    }

    #[test]
    fn conntrack_bad_input_is_an_error_naming_the_line() {
        check(parse_conntrack_stat(""), "error: line 1: empty");
        check(
            parse_conntrack_stat("entries found\n1\n"),
            "error: line 2: 1 columns, want 2",
        );
        check(
            parse_conntrack_stat("entries found\n1 2\n1 xyz\n"),
            "error: line 3: not a hexadecimal number: \"xyz\"",
        );
    }

    #[test]
    fn conntrack_collector_reads_three_files() {
        let dir = root(&[
            ("proc/sys/net/netfilter/nf_conntrack_count", "3\n"),
            ("proc/sys/net/netfilter/nf_conntrack_max", "262144\n"),
            ("proc/net/stat/nf_conntrack", "entries found\n1 2\n"),
        ]);
        let mut out = Vec::new();
        conntrack(dir.path(), &mut out).unwrap();
        check(
            Ok(out),
            "# TYPE node_nf_conntrack_entries gauge\nnode_nf_conntrack_entries 3\n\
             # TYPE node_nf_conntrack_entries_limit gauge\nnode_nf_conntrack_entries_limit 262144\n\
             # TYPE node_nf_conntrack_stat_found gauge\nnode_nf_conntrack_stat_found 2",
        );
        let dir = root(&[("proc/sys/net/netfilter/nf_conntrack_count", "3\n")]);
        let e = conntrack(dir.path(), &mut Vec::new()).unwrap_err();
        assert!(e.is_missing(), "{e}");
        assert!(e.to_string().contains("nf_conntrack_max"), "{e}");
    }

    #[test]
    fn pressure_some_is_waiting_full_is_stalled_in_seconds() {
        let text = "some avg10=0.04 avg60=0.56 avg300=0.90 total=5953769\n\
                    full avg10=0.00 avg60=0.33 avg300=0.77 total=4964593\n";
        check(
            parse_pressure("io", text),
            "# TYPE node_pressure_io_waiting_seconds_total counter\n\
             node_pressure_io_waiting_seconds_total 5.953769\n\
             # TYPE node_pressure_io_stalled_seconds_total counter\n\
             node_pressure_io_stalled_seconds_total 4.964593",
        );
        // node_exporter 1.5 reports no CPU `full` line.
        check(
            parse_pressure("cpu", text),
            "# TYPE node_pressure_cpu_waiting_seconds_total counter\n\
             node_pressure_cpu_waiting_seconds_total 5.953769",
        );
        check(
            parse_pressure("memory", "some avg10=0.00\n"),
            "error: line 1: no total=",
        );
        check(
            parse_pressure("memory", "full total=-1\n"),
            "error: line 1: not a number: \"-1\"",
        );
    }

    #[test]
    fn vmstat_only_node_exporters_default_fields_untyped() {
        check(
            parse_vmstat(
                "nr_free_pages 1\npgpgin 2\npgpgout 3\npswpin 4\npgfault 5\npgmajfault 6\n\
                 oom_kill 7\npgalloc_dma 8\nthp_fault_alloc 9\n\n",
            ),
            r#"
            # TYPE node_vmstat_pgpgin untyped
            node_vmstat_pgpgin 2
            # TYPE node_vmstat_pgpgout untyped
            node_vmstat_pgpgout 3
            # TYPE node_vmstat_pswpin untyped
            node_vmstat_pswpin 4
            # TYPE node_vmstat_pgfault untyped
            node_vmstat_pgfault 5
            # TYPE node_vmstat_pgmajfault untyped
            node_vmstat_pgmajfault 6
            # TYPE node_vmstat_oom_kill untyped
            node_vmstat_oom_kill 7
            "#,
        );
        check(parse_vmstat("pgfault\n"), "error: line 1: 1 fields, want 2");
        check(
            parse_vmstat("nr_free 1\npgfault x\n"),
            "error: line 2: pgfault: not a number: \"x\"",
        );
    }

    const DISKSTATS: &str = " 254       0 vda 30864 6814 2725412 12648 27077 31727 5635856 29400 0 9184 42907 9587 68 1213040 720 4284 138\n\
         254       1 vda1 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n\
           7       0 loop0 1 2 3 4 5 6 7 8 9 10 11\n\
         259       0 nvme0n1 1 2 3 4 5 6 7 8 9 10 11\n\
         259       1 nvme0n1p1 1 2 3 4 5 6 7 8 9 10 11\n\
           8       0 sda 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19\n";

    #[test]
    fn diskstats_devices_without_partitions_in_node_exporters_units() {
        let disks = parse_diskstats(DISKSTATS).unwrap();
        let names: Vec<&str> = disks.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["vda", "nvme0n1", "sda"]);
        assert_eq!(disks[1].values.len(), 11);
        assert_eq!(disks[2].values.len(), 17);
        let udev = vec![
            parse_udev("S:disk/by-path/x\nE:ID_PATH=pci-0000:00:05.0\nE:ID_SERIAL_SHORT=abc\nE:ID_MODEL=QEMU\n"),
            BTreeMap::new(),
            parse_udev("E:ID_ATA=1\nE:ID_ATA_ROTATION_RATE_RPM=0\nE:DM_NAME=vg-root\nE:DM_VG_NAME=vg\nE:ID_FS_TYPE=ext4\nE:ID_FS_USAGE=filesystem\n"),
        ];
        let text = render(Ok(disk_families(&disks[..1], &udev)));
        assert_eq!(
            text,
            lines(
                r#"
            # TYPE node_disk_reads_completed_total counter
            node_disk_reads_completed_total{device="vda"} 30864
            # TYPE node_disk_reads_merged_total counter
            node_disk_reads_merged_total{device="vda"} 6814
            # TYPE node_disk_read_bytes_total counter
            node_disk_read_bytes_total{device="vda"} 1395410944
            # TYPE node_disk_read_time_seconds_total counter
            node_disk_read_time_seconds_total{device="vda"} 12.648
            # TYPE node_disk_writes_completed_total counter
            node_disk_writes_completed_total{device="vda"} 27077
            # TYPE node_disk_writes_merged_total counter
            node_disk_writes_merged_total{device="vda"} 31727
            # TYPE node_disk_written_bytes_total counter
            node_disk_written_bytes_total{device="vda"} 2885558272
            # TYPE node_disk_write_time_seconds_total counter
            node_disk_write_time_seconds_total{device="vda"} 29.400000000000002
            # TYPE node_disk_io_now gauge
            node_disk_io_now{device="vda"} 0
            # TYPE node_disk_io_time_seconds_total counter
            node_disk_io_time_seconds_total{device="vda"} 9.184000000000001
            # TYPE node_disk_io_time_weighted_seconds_total counter
            node_disk_io_time_weighted_seconds_total{device="vda"} 42.907000000000004
            # TYPE node_disk_discards_completed_total counter
            node_disk_discards_completed_total{device="vda"} 9587
            # TYPE node_disk_discards_merged_total counter
            node_disk_discards_merged_total{device="vda"} 68
            # TYPE node_disk_discarded_sectors_total counter
            node_disk_discarded_sectors_total{device="vda"} 1213040
            # TYPE node_disk_discard_time_seconds_total counter
            node_disk_discard_time_seconds_total{device="vda"} 0.72
            # TYPE node_disk_flush_requests_total counter
            node_disk_flush_requests_total{device="vda"} 4284
            # TYPE node_disk_flush_requests_time_seconds_total counter
            node_disk_flush_requests_time_seconds_total{device="vda"} 0.138
            # TYPE node_disk_info gauge
            node_disk_info{device="vda",major="254",minor="0",path="pci-0000:00:05.0",model="QEMU",serial="abc"} 1
            "#
            )
        );
        // An old kernel's 11 columns: no discard or flush series; udev's ATA and
        // device-mapper properties.
        let text = render(Ok(disk_families(&disks[1..], &udev[1..])));
        assert!(
            text.contains("node_disk_io_time_weighted_seconds_total{device=\"nvme0n1\"} 0.011\n"),
            "{text}"
        );
        assert!(
            !text.contains("node_disk_discards_completed_total{device=\"nvme0n1\"}"),
            "{text}"
        );
        assert!(
            text.contains("node_disk_info{device=\"nvme0n1\",major=\"259\",minor=\"0\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("node_disk_ata_rotation_rate_rpm{device=\"sda\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "node_disk_device_mapper_info{device=\"sda\",name=\"vg-root\",vg_name=\"vg\"} 1\n"
            ),
            "{text}"
        );
        assert!(!text.contains("node_disk_ata_write_cache{"), "{text}");
        assert!(
            text.contains(
                "node_disk_filesystem_info{device=\"sda\",type=\"ext4\",usage=\"filesystem\"} 1\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn diskstats_bad_input_is_an_error_naming_the_line() {
        let cases = [
            (
                "8 0 sda 1 2 3\n",
                "error: line 1: 6 fields, want at least 14",
            ),
            (
                "\n8 0 sda 1 2 3 4 5 6 7 8 9 10 x\n",
                "error: line 2: sda: not a number: \"x\"",
            ),
            (
                "8 x sda 1 2 3 4 5 6 7 8 9 10 11\n",
                "error: line 1: minor: not a number: \"x\"",
            ),
        ];
        for (input, expect) in cases {
            let got = match parse_diskstats(input) {
                Ok(d) => format!("{d:?}"),
                Err(b) => format!("error: line {}: {}", b.line, b.reason),
            };
            assert_eq!(got, expect, "{input:?}");
        }
    }

    #[test]
    fn sockstat_pairs_with_mem_in_bytes() {
        check(
            parse_sockstat(
                "sockets: used 31\nTCP: inuse 7 orphan 0 tw 1 alloc 7 mem 110\n\
                 UDP: inuse 0 mem 2\nFRAG: inuse 0 memory 0\nNEW: inuse 1 other 3\n",
                4096.0,
            ),
            r#"
            # TYPE node_sockstat_sockets_used gauge
            node_sockstat_sockets_used 31
            # TYPE node_sockstat_TCP_inuse gauge
            node_sockstat_TCP_inuse 7
            # TYPE node_sockstat_TCP_orphan gauge
            node_sockstat_TCP_orphan 0
            # TYPE node_sockstat_TCP_tw gauge
            node_sockstat_TCP_tw 1
            # TYPE node_sockstat_TCP_alloc gauge
            node_sockstat_TCP_alloc 7
            # TYPE node_sockstat_TCP_mem gauge
            node_sockstat_TCP_mem 110
            # TYPE node_sockstat_TCP_mem_bytes gauge
            node_sockstat_TCP_mem_bytes 450560
            # TYPE node_sockstat_UDP_inuse gauge
            node_sockstat_UDP_inuse 0
            # TYPE node_sockstat_UDP_mem gauge
            node_sockstat_UDP_mem 2
            # TYPE node_sockstat_UDP_mem_bytes gauge
            node_sockstat_UDP_mem_bytes 8192
            # TYPE node_sockstat_FRAG_inuse gauge
            node_sockstat_FRAG_inuse 0
            # TYPE node_sockstat_FRAG_memory gauge
            node_sockstat_FRAG_memory 0
            # TYPE node_sockstat_NEW_inuse gauge
            node_sockstat_NEW_inuse 1
            "#,
        );
        let cases = [
            ("TCP inuse 1\n", "error: line 1: no ':' after the protocol"),
            ("TCP: inuse\n", "error: line 1: TCP: odd number of fields"),
            (
                "TCP: inuse 1\nUDP: inuse -1\n",
                "error: line 2: UDP inuse: not a number: \"-1\"",
            ),
        ];
        for (input, expect) in cases {
            check(parse_sockstat(input, 4096.0), expect);
        }
    }

    #[test]
    fn sockstat_collector_skips_a_missing_ipv6_file() {
        let dir = root(&[("proc/net/sockstat", "sockets: used 3\n")]);
        let mut out = Vec::new();
        sockstat(dir.path(), &mut out).unwrap();
        check(
            Ok(out),
            "# TYPE node_sockstat_sockets_used gauge\nnode_sockstat_sockets_used 3",
        );
    }

    #[test]
    fn softnet_first_three_hex_columns_per_cpu() {
        check(
            parse_softnet(
                "00000058 00000001 00000002 00000000 00000000\n00001cd0 00000000 0000000a 00000000\n",
            ),
            r#"
            # TYPE node_softnet_processed_total counter
            node_softnet_processed_total{cpu="0"} 88
            node_softnet_processed_total{cpu="1"} 7376
            # TYPE node_softnet_dropped_total counter
            node_softnet_dropped_total{cpu="0"} 1
            node_softnet_dropped_total{cpu="1"} 0
            # TYPE node_softnet_times_squeezed_total counter
            node_softnet_times_squeezed_total{cpu="0"} 2
            node_softnet_times_squeezed_total{cpu="1"} 10
            "#,
        );
        check(
            parse_softnet("1 2\n"),
            "error: line 1: 2 columns, want at least 3",
        );
        check(
            parse_softnet("1 2 g\n"),
            "error: line 1: not a hexadecimal number: \"g\"",
        );
    }

    #[test]
    fn netstat_filtered_by_node_exporters_default_fields() {
        let mut stats = BTreeMap::new();
        parse_netstat_pairs(
            "TcpExt: SyncookiesSent ListenDrops TCPOFOQueue TCPTimeouts\nTcpExt: 1 2 3 4\n\
             IpExt: InOctets OutOctets InBcastPkts\nIpExt: 5 6 7\n",
            &mut stats,
        )
        .unwrap();
        parse_netstat_pairs(
            "Ip: Forwarding DefaultTTL InReceives\nIp: 2 64 9\n\
             Tcp: MaxConn ActiveOpens CurrEstab InErrs\nTcp: -1 16 5 0\n\
             Udp: InDatagrams NoPorts InErrors IgnoredMulti\nUdp: 27 0 0 3\n",
            &mut stats,
        )
        .unwrap();
        parse_snmp6(
            "Ip6InReceives  3\nIp6InOctets 128\nIcmp6OutMsgs 9\nUdpLite6InErrors 0\nnosix 1\n",
            &mut stats,
        )
        .unwrap();
        check(
            Ok(netstat_families(&stats)),
            r#"
            # TYPE node_netstat_Icmp6_OutMsgs untyped
            node_netstat_Icmp6_OutMsgs 9
            # TYPE node_netstat_Ip6_InOctets untyped
            node_netstat_Ip6_InOctets 128
            # TYPE node_netstat_IpExt_InOctets untyped
            node_netstat_IpExt_InOctets 5
            # TYPE node_netstat_IpExt_OutOctets untyped
            node_netstat_IpExt_OutOctets 6
            # TYPE node_netstat_Ip_Forwarding untyped
            node_netstat_Ip_Forwarding 2
            # TYPE node_netstat_TcpExt_ListenDrops untyped
            node_netstat_TcpExt_ListenDrops 2
            # TYPE node_netstat_TcpExt_SyncookiesSent untyped
            node_netstat_TcpExt_SyncookiesSent 1
            # TYPE node_netstat_TcpExt_TCPTimeouts untyped
            node_netstat_TcpExt_TCPTimeouts 4
            # TYPE node_netstat_Tcp_ActiveOpens untyped
            node_netstat_Tcp_ActiveOpens 16
            # TYPE node_netstat_Tcp_CurrEstab untyped
            node_netstat_Tcp_CurrEstab 5
            # TYPE node_netstat_Tcp_InErrs untyped
            node_netstat_Tcp_InErrs 0
            # TYPE node_netstat_UdpLite6_InErrors untyped
            node_netstat_UdpLite6_InErrors 0
            # TYPE node_netstat_Udp_InDatagrams untyped
            node_netstat_Udp_InDatagrams 27
            # TYPE node_netstat_Udp_InErrors untyped
            node_netstat_Udp_InErrors 0
            # TYPE node_netstat_Udp_NoPorts untyped
            node_netstat_Udp_NoPorts 0
            "#,
        );
        let help = &netstat_families(&stats)[0].help;
        assert_eq!(help, "Statistic Icmp6OutMsgs.");
    }

    #[test]
    fn netstat_bad_input_is_an_error_naming_the_line() {
        let cases = [
            (
                "Tcp: A B\n",
                "error: line 1: a header without a line of values",
            ),
            (
                "Tcp A\nTcp: 1\n",
                "error: line 1: no ':' after the protocol",
            ),
            (
                "Tcp: A\nUdp: 1\n",
                "error: line 2: Udp: values after Tcp's header",
            ),
            (
                "Tcp: A B\nTcp: 1\n",
                "error: line 2: Tcp: 1 values for 2 names",
            ),
            (
                "Tcp: A\nTcp: x\n",
                "error: line 2: Tcp A: not a number: \"x\"",
            ),
        ];
        for (input, expect) in cases {
            let got = match parse_netstat_pairs(input, &mut BTreeMap::new()) {
                Ok(()) => "ok".to_owned(),
                Err(b) => format!("error: line {}: {}", b.line, b.reason),
            };
            assert_eq!(got, expect, "{input:?}");
        }
        let got = parse_snmp6("Ip6InOctets 1\nIp6OutOctets y\n", &mut BTreeMap::new());
        assert_eq!(got, Err(bad(1, "Ip6OutOctets: not a number: \"y\"")));
    }

    #[test]
    fn netclass_properties_and_info() {
        let dev = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let devices = vec![
            (
                "eth0".to_owned(),
                dev(&[
                    ("operstate", "up"),
                    ("address", "02:fc:00:00:00:01"),
                    ("broadcast", "ff:ff:ff:ff:ff:ff"),
                    ("duplex", "unknown"),
                    ("flags", "0x1003"),
                    ("mtu", "1400"),
                    ("speed", "-1"),
                    ("carrier_changes", "2"),
                ]),
            ),
            (
                "lo".to_owned(),
                dev(&[("operstate", "unknown"), ("speed", "10000"), ("mtu", "x")]),
            ),
        ];
        check(
            Ok(netclass_families(&devices)),
            r#"
            # TYPE node_network_up gauge
            node_network_up{device="eth0"} 1
            node_network_up{device="lo"} 0
            # TYPE node_network_info gauge
            node_network_info{device="eth0",address="02:fc:00:00:00:01",broadcast="ff:ff:ff:ff:ff:ff",duplex="unknown",operstate="up"} 1
            node_network_info{device="lo",operstate="unknown"} 1
            # TYPE node_network_carrier_changes_total counter
            node_network_carrier_changes_total{device="eth0"} 2
            # TYPE node_network_flags gauge
            node_network_flags{device="eth0"} 4099
            # TYPE node_network_mtu_bytes gauge
            node_network_mtu_bytes{device="eth0"} 1400
            # TYPE node_network_speed_bytes gauge
            node_network_speed_bytes{device="eth0"} -125000
            node_network_speed_bytes{device="lo"} 1250000000
            "#,
        );
    }

    #[test]
    fn clocksources_available_and_current() {
        let dir = root(&[
            (
                "sys/devices/system/clocksource/clocksource0/available_clocksource",
                "kvm-clock tsc acpi_pm \n",
            ),
            (
                "sys/devices/system/clocksource/clocksource0/current_clocksource",
                "tsc\n",
            ),
            ("sys/devices/system/clocksource/uevent", ""),
        ]);
        let mut out = Vec::new();
        clocksources(dir.path(), &mut out).unwrap();
        check(
            Ok(out),
            r#"
            # TYPE node_time_clocksource_available_info gauge
            node_time_clocksource_available_info{clocksource="kvm-clock",device="0"} 1
            node_time_clocksource_available_info{clocksource="tsc",device="0"} 1
            node_time_clocksource_available_info{clocksource="acpi_pm",device="0"} 1
            # TYPE node_time_clocksource_current_info gauge
            node_time_clocksource_current_info{clocksource="tsc",device="0"} 1
            "#,
        );
        let dir = root(&[(
            "sys/devices/system/clocksource/clocksource0/current_clocksource",
            "tsc\n",
        )]);
        let e = clocksources(dir.path(), &mut Vec::new()).unwrap_err();
        assert!(
            e.to_string().contains("clocksource0/available_clocksource"),
            "{e}"
        );
    }

    #[test]
    fn schedstat_per_cpu_seconds_and_timeslices() {
        check(
            parse_schedstat(
                "version 15\ntimestamp 4294740823\n\
                 cpu0 0 0 0 0 0 0 1580498383 13396226 1010\n\
                 domain0 3 1 2 3\ncpu1 0 0 0 0 0 0 2000000000 0 7\n",
            ),
            r#"
            # TYPE node_schedstat_running_seconds_total counter
            node_schedstat_running_seconds_total{cpu="0"} 1.580498383
            node_schedstat_running_seconds_total{cpu="1"} 2
            # TYPE node_schedstat_waiting_seconds_total counter
            node_schedstat_waiting_seconds_total{cpu="0"} 0.013396226
            node_schedstat_waiting_seconds_total{cpu="1"} 0
            # TYPE node_schedstat_timeslices_total counter
            node_schedstat_timeslices_total{cpu="0"} 1010
            node_schedstat_timeslices_total{cpu="1"} 7
            "#,
        );
        check(
            parse_schedstat("cpu0 1 2 3\n"),
            "error: line 1: cpu0: 3 values, want 9",
        );
        check(
            parse_schedstat("cpux 1 2 3 4 5 6 7 8 9\n"),
            "error: line 1: cpux: not a cpu number",
        );
        check(
            parse_schedstat("cpu0 1 2 3 4 5 6 7 8 z\n"),
            "error: line 1: cpu0: not a number: \"z\"",
        );
    }

    #[test]
    fn interrupts_numbered_and_named() {
        check(
            parse_interrupts(
                "           CPU0       CPU1       \n\
                 24:          1          0  IO-APIC   5-edge      ACPI:Ged\n\
                 LOC:      32552      30000   Local timer interrupts\n\
                 ERR:          0\n\
                 MIS:          0\n",
            ),
            r#"
            # TYPE node_interrupts_total counter
            node_interrupts_total{cpu="0",devices="5-edge ACPI:Ged",info="IO-APIC",type="24"} 1
            node_interrupts_total{cpu="1",devices="5-edge ACPI:Ged",info="IO-APIC",type="24"} 0
            node_interrupts_total{cpu="0",info="Local timer interrupts",type="LOC"} 32552
            node_interrupts_total{cpu="1",info="Local timer interrupts",type="LOC"} 30000
            "#,
        );
        check(parse_interrupts(""), "error: line 1: empty");
        check(
            parse_interrupts("CPU0\nLOC: x Local timer\n"),
            "error: line 2: LOC: not a number: \"x\"",
        );
    }

    #[test]
    fn process_state_and_thread_count_from_stat() {
        assert_eq!(
            proc_stat_state("1 (my (odd) name) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 3 0 9"),
            Some(("S".to_owned(), 3.0))
        );
        assert_eq!(proc_stat_state("1 (x) S 0"), None);
        let mut c = ProcessCounts {
            pids: 2.0,
            threads: 5.0,
            ..ProcessCounts::default()
        };
        c.states.insert("S".into(), 2.0);
        c.thread_states.insert("R".into(), 1.0);
        c.thread_states.insert("S".into(), 4.0);
        check(
            Ok(process_count_families(&c, 32768.0, 100.0)),
            r#"
            # TYPE node_processes_max_processes gauge
            node_processes_max_processes 32768
            # TYPE node_processes_max_threads gauge
            node_processes_max_threads 100
            # TYPE node_processes_pids gauge
            node_processes_pids 2
            # TYPE node_processes_threads gauge
            node_processes_threads 5
            # TYPE node_processes_state gauge
            node_processes_state{state="S"} 2
            # TYPE node_processes_threads_state gauge
            node_processes_threads_state{thread_state="R"} 1
            node_processes_threads_state{thread_state="S"} 4
            "#,
        );
    }

    #[test]
    fn nohandler_of_the_devices_that_have_it() {
        let dir = root(&[("sys/class/net/eth0/statistics/rx_nohandler", "4\n")]);
        let f = nohandler(dir.path(), &["eth0".to_owned(), "ifb0".to_owned()]);
        check(
            Ok(vec![f]),
            "# TYPE node_network_receive_nohandler_total counter\n\
             node_network_receive_nohandler_total{device=\"eth0\"} 4",
        );
    }

    #[test]
    fn arp_entries_counted_per_device() {
        let cases = [
            (
                "IP address       HW type     Flags       HW address            Mask     Device\n\
                 192.0.2.1        0x1         0x2         02:fc:00:00:00:05     *        eth0\n\
                 192.0.2.7        0x1         0x0         00:00:00:00:00:00     *        eth0\n\
                 10.0.0.1         0x1         0x2         02:fc:00:00:00:06     *        br-lan\n",
                r#"
                # TYPE node_arp_entries gauge
                node_arp_entries{device="br-lan"} 1
                node_arp_entries{device="eth0"} 2
                "#,
            ),
            (
                "IP address       HW type     Flags       HW address            Mask     Device\n",
                "",
            ),
            (
                "IP address       HW type     Flags       HW address            Mask     Device\n\
                 192.0.2.1        0x1         0x2\n",
                "error: line 2: 3 columns, want at least 6",
            ),
            ("\n", "error: line 1: 0 columns, want at least 6"),
        ];
        for (text, expect) in cases {
            check(parse_arp(text).map(|f| vec![f]), expect);
        }
    }

    #[test]
    fn arp_collector_errors_name_the_file() {
        let dir = root(&[("proc/net/arp", "IP a b c d Device\nx\n")]);
        let e = arp(dir.path(), &mut Vec::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: line 2: 1 columns, want at least 6",
                dir.path().join("proc/net/arp").display()
            )
        );
        let e = arp(root(&[]).path(), &mut Vec::new()).unwrap_err();
        assert!(e.is_missing(), "{e}");
    }

    const UDP_HEADER: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n";

    #[test]
    fn udp_queues_sum_the_queue_columns() {
        let line = |q: &str| {
            format!("  1: 00000000:0044 00000000:0000 07 {q} 00:00000000 00000000     0        0 1234 2 0000000000000000 0\n")
        };
        let cases = [
            (UDP_HEADER.to_owned(), Ok((0.0, 0.0))),
            (
                format!(
                    "{UDP_HEADER}{}{}",
                    line("00000100:00000010"),
                    line("00000001:0000000A")
                ),
                Ok((257.0, 26.0)),
            ),
            (
                format!("{UDP_HEADER}  1: 00000000:0044 00000000:0000 07 0:0\n"),
                Err("error: line 2: 5 columns, want at least 10"),
            ),
            (
                format!("{UDP_HEADER}{}", line("00000100-00000010")),
                Err("error: line 2: queues: no ':' in \"00000100-00000010\""),
            ),
            (
                format!("{UDP_HEADER}{}", line("00000100:0000001x")),
                Err("error: line 2: not a hexadecimal number: \"0000001x\""),
            ),
        ];
        for (text, expect) in cases {
            let got = parse_socket_queues(&text)
                .map_err(|b| format!("error: line {}: {}", b.line, b.reason));
            assert_eq!(got, expect.map_err(str::to_owned), "{text}");
        }
    }

    #[test]
    fn udp_queues_collector_skips_a_missing_file_and_names_a_bad_one() {
        let v4 = format!("{UDP_HEADER}  1: 00000000:0044 00000000:0000 07 00000003:00000002 00:00000000 00000000     0        0 1234 2 0000000000000000 0\n");
        let dir = root(&[("proc/net/udp", &v4)]);
        let mut out = Vec::new();
        udp_queues(dir.path(), &mut out).unwrap();
        check(
            Ok(out),
            r#"
            # TYPE node_udp_queues gauge
            node_udp_queues{ip="v4",queue="tx"} 3
            node_udp_queues{ip="v4",queue="rx"} 2
            "#,
        );
        let dir = root(&[("proc/net/udp6", UDP_HEADER)]);
        let mut out = Vec::new();
        udp_queues(dir.path(), &mut out).unwrap();
        check(
            Ok(out),
            r#"
            # TYPE node_udp_queues gauge
            node_udp_queues{ip="v6",queue="tx"} 0
            node_udp_queues{ip="v6",queue="rx"} 0
            "#,
        );
        let e = udp_queues(root(&[]).path(), &mut Vec::new()).unwrap_err();
        assert!(e.is_missing(), "{e}");
        let dir = root(&[("proc/net/udp", UDP_HEADER), ("proc/net/udp6", "h\nx\n")]);
        let e = udp_queues(dir.path(), &mut Vec::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: line 2: 1 columns, want at least 10",
                dir.path().join("proc/net/udp6").display()
            )
        );
    }

    const TCP_HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

    fn tcp_line(state: &str, queues: &str) -> String {
        format!("   0: 00000000:07E8 00000000:0000 {state} {queues} 00:00000000 00000000     0        0 1368 1 0000000000000000 100 0 0 10 0\n")
    }

    #[test]
    fn tcpstat_counts_the_states_seen_and_the_queues() {
        let cases = [
            (
                format!(
                    "{TCP_HEADER}{}{}{}{}",
                    tcp_line("0A", "00000000:00000002"),
                    tcp_line("01", "00000010:00000000"),
                    tcp_line("01", "00000000:00000001"),
                    tcp_line("06", "00000000:00000000"),
                ),
                r#"
                # TYPE node_tcp_connection_states gauge
                node_tcp_connection_states{state="established"} 2
                node_tcp_connection_states{state="listen"} 1
                node_tcp_connection_states{state="time_wait"} 1
                node_tcp_connection_states{state="rx_queued_bytes"} 3
                node_tcp_connection_states{state="tx_queued_bytes"} 16
                "#,
            ),
            (
                format!(
                    "{TCP_HEADER}{}{}",
                    tcp_line("0B", "0:0"),
                    tcp_line("0C", "0:0")
                ),
                r#"
                # TYPE node_tcp_connection_states gauge
                node_tcp_connection_states{state="closing"} 1
                node_tcp_connection_states{state="unknown"} 1
                node_tcp_connection_states{state="rx_queued_bytes"} 0
                node_tcp_connection_states{state="tx_queued_bytes"} 0
                "#,
            ),
            // No sockets: no series at all, as node_exporter has it.
            (TCP_HEADER.to_owned(), ""),
            (
                format!("{TCP_HEADER}{}", tcp_line("0Z", "0:0")),
                "error: line 2: state: not a hexadecimal number: \"0Z\"",
            ),
            (
                format!("{TCP_HEADER}{}", tcp_line("01", "00000000")),
                "error: line 2: queues: no ':' in \"00000000\"",
            ),
            (
                format!("{TCP_HEADER}   0: 00000000:07E8\n"),
                "error: line 2: 2 columns, want at least 10",
            ),
        ];
        for (text, expect) in cases {
            let mut counts = TcpCounts::default();
            check(
                parse_tcp(&text, &mut counts).map(|()| vec![counts.family()]),
                expect,
            );
        }
    }

    #[test]
    fn tcpstat_collector_adds_tcp6_and_names_a_bad_file() {
        let v4 = format!("{TCP_HEADER}{}", tcp_line("0A", "00000000:00000001"));
        let v6 = format!("{TCP_HEADER}{}", tcp_line("0A", "00000002:00000000"));
        let dir = root(&[("proc/net/tcp", &v4), ("proc/net/tcp6", &v6)]);
        let mut out = Vec::new();
        tcpstat(dir.path(), &mut out).unwrap();
        check(
            Ok(out),
            r#"
            # TYPE node_tcp_connection_states gauge
            node_tcp_connection_states{state="listen"} 2
            node_tcp_connection_states{state="rx_queued_bytes"} 1
            node_tcp_connection_states{state="tx_queued_bytes"} 2
            "#,
        );
        // Without tcp6 (IPv6 disabled): IPv4 alone.
        let dir = root(&[("proc/net/tcp", &v4)]);
        let mut out = Vec::new();
        tcpstat(dir.path(), &mut out).unwrap();
        check(
            Ok(out),
            r#"
            # TYPE node_tcp_connection_states gauge
            node_tcp_connection_states{state="listen"} 1
            node_tcp_connection_states{state="rx_queued_bytes"} 1
            node_tcp_connection_states{state="tx_queued_bytes"} 0
            "#,
        );
        let dir = root(&[("proc/net/tcp", &v4), ("proc/net/tcp6", "h\n 0: a b 0A\n")]);
        let e = tcpstat(dir.path(), &mut Vec::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: line 2: 4 columns, want at least 10",
                dir.path().join("proc/net/tcp6").display()
            )
        );
        let e = tcpstat(root(&[]).path(), &mut Vec::new()).unwrap_err();
        assert!(e.is_missing(), "{e}");
    }
}

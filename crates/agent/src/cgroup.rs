//! Container-aware host figures (`[host] cgroup = true`): the host's CPU and memory from
//! the agent's own cgroup instead of the machine's, as LXCFS and container-aware agents
//! report them. In isolated mode every host is a namespace on one kernel with a cgroup
//! of its own (`rampart-<prefix>/<host>`, with the topology's `cpus` and `memory`), so
//! `/proc/meminfo` and `/proc/stat` would give every host the same, machine-wide
//! figures.
//!
//! Replaced, under node_exporter's names and label sets:
//! - `node_memory_MemTotal_bytes`: the memory limit (the machine's `MemTotal` when
//!   unlimited or larger); `MemFree` = total − usage; `MemAvailable` = total − (usage −
//!   inactive file pages); `Cached` = the cgroup's file pages; `Buffers` = 0 (v2:
//!   `memory.current`, `memory.max`, `memory.stat` `file`/`inactive_file`; v1:
//!   `memory.usage_in_bytes`, `memory.limit_in_bytes`, `memory.stat`
//!   `total_cache`/`total_inactive_file`).
//! - `node_cpu_seconds_total{cpu,mode}` (and `node_cpu_guest_seconds_total`, 0): the
//!   host's CPUs are ceil(quota ÷ period) (the machine's count without a quota); `user`
//!   and `system` are the cgroup's (v2 `cpu.stat` `user_usec`/`system_usec`; v1
//!   `cpuacct.usage_user`/`usage_sys` in ns, else `cpuacct.stat` in `USER_HZ`) spread
//!   evenly over them; `idle` = CPUs × seconds since the agent's first reading − the
//!   busy seconds since then (never negative, never decreasing); every other mode 0.
//!
//! Added: `rampart_host_cgroup_info{path}` 1, `rampart_host_cgroup_cpu_limit_cores` and
//! `rampart_host_cgroup_memory_limit_bytes` (absent when unlimited).
//!
//! Everything else stays machine-wide: disks (`node_disk_*`), file systems
//! (`node_filesystem_*`, one file system for every host), the load average
//! (`node_load*`), pressure (`node_pressure_*`: the machine's `/proc/pressure`, even on
//! v2, which has per-cgroup PSI this does not read), `/proc/stat`'s other lines
//! (context switches, interrupts, forks, `node_procs_*`), vmstat, the rest of
//! meminfo (swap, slab, huge pages…), entropy, time and the kernel's own counters.
//! Network figures are per host already: each host is its own network namespace.
//!
//! Finding the cgroup: `/proc/self/cgroup` names it (v2 `0::/path`; v1 the lines of the
//! `cpu`, `cpuacct` and `memory` hierarchies); its files are under
//! `<root>/sys/fs/cgroup/<hierarchy>/<path>`, or, for a process started by
//! `ip netns exec` (whose fresh `/sys` has no cgroup file systems), through the
//! directories `rampart cgexec --keep-open` left open (`/proc/self/fd/N`).
//!
//! The parsers are pure (text in, [`Reading`] or families out); [`Tracker`] reads the
//! files and keeps the first reading.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use crate::procfs::{family, gauge, labelled};
use crate::{Family, Kind};

/// `cpuacct.stat`'s unit, `USER_HZ` (100 on every architecture Linux exposes).
const USER_HZ: f64 = 100.0;

/// A v1 limit at or above this is "unlimited" (the kernel writes `PAGE_COUNTER_MAX`
/// rounded to pages, about 2⁶³).
const V1_UNLIMITED: u64 = 1 << 62;

/// node_exporter's CPU modes, in its order.
const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// A cgroup's files could not be found, read or understood.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },
    #[error("no cgroup of this process: {0}")]
    NotFound(String),
}

/// The cgroup as `/proc/self/cgroup` names it: a path per hierarchy, with the
/// hierarchy's directory name under `/sys/fs/cgroup`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Own {
    V2 {
        path: String,
    },
    V1 {
        /// (hierarchy directory such as `cpu,cpuacct`, path) of each controller.
        cpu: (String, String),
        cpuacct: (String, String),
        memory: (String, String),
    },
}

/// Parses `/proc/self/cgroup`: v1 when the `cpuacct` and `memory` controllers are in v1
/// hierarchies (a hybrid machine's v2 line is then ignored), else v2's `0::/path`.
pub fn parse_proc_cgroup(text: &str) -> Option<Own> {
    let mut v2 = None;
    let (mut cpu, mut cpuacct, mut memory) = (None, None, None);
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(path.to_owned());
            continue;
        }
        for c in controllers.split(',') {
            let slot = match c {
                "cpu" => &mut cpu,
                "cpuacct" => &mut cpuacct,
                "memory" => &mut memory,
                _ => continue,
            };
            *slot = Some((controllers.to_owned(), path.to_owned()));
        }
    }
    match (cpuacct, memory) {
        (Some(cpuacct), Some(memory)) => Some(Own::V1 {
            cpu: cpu.unwrap_or_else(|| cpuacct.clone()),
            cpuacct,
            memory,
        }),
        _ => v2.map(|path| Own::V2 { path }),
    }
}

/// Where one cgroup's files are read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The cgroup's path, as `rampart_host_cgroup_info` shows it (v1: the memory
    /// hierarchy's).
    pub path: String,
    pub v2: bool,
    /// v2: the cgroup's directory; v1: the `cpu` hierarchy's (the quota).
    pub cpu: PathBuf,
    /// v1: the `cpuacct` hierarchy's directory (v2: the cgroup's).
    pub cpuacct: PathBuf,
    /// v1: the `memory` hierarchy's directory (v2: the cgroup's).
    pub memory: PathBuf,
}

impl Location {
    pub fn v2(path: &str, dir: &Path) -> Location {
        Location {
            path: path.to_owned(),
            v2: true,
            cpu: dir.to_path_buf(),
            cpuacct: dir.to_path_buf(),
            memory: dir.to_path_buf(),
        }
    }

    pub fn v1(path: &str, cpu: &Path, cpuacct: &Path, memory: &Path) -> Location {
        Location {
            path: path.to_owned(),
            v2: false,
            cpu: cpu.to_path_buf(),
            cpuacct: cpuacct.to_path_buf(),
            memory: memory.to_path_buf(),
        }
    }

    /// This process's cgroup, from `<root>/proc/self/cgroup`, its directories under
    /// `<root>/sys/fs/cgroup` or else among this process's open directories.
    pub fn own(root: &Path) -> Result<Location, CgroupError> {
        let file = root.join("proc/self/cgroup");
        let text = std::fs::read_to_string(&file).map_err(|source| CgroupError::Read {
            path: file.clone(),
            source,
        })?;
        let own = parse_proc_cgroup(&text).ok_or_else(|| {
            CgroupError::NotFound(format!(
                "{} names no cpuacct and memory, nor v2",
                file.display()
            ))
        })?;
        let base = root.join("sys/fs/cgroup");
        let find = |hierarchy: &str, path: &str, marker: &str| -> Result<PathBuf, CgroupError> {
            let dir = base.join(hierarchy).join(path.trim_start_matches('/'));
            if dir.join(marker).exists() {
                return Ok(dir);
            }
            open_dir(root, path, marker).ok_or_else(|| {
                CgroupError::NotFound(format!(
                    "{} has no {marker}, and no open directory of cgroup {path} has",
                    dir.display()
                ))
            })
        };
        Ok(match own {
            Own::V2 { path } => Location::v2(&path, &find("", &path, "cpu.stat")?),
            Own::V1 {
                cpu,
                cpuacct,
                memory,
            } => Location::v1(
                &memory.1,
                &find(&cpu.0, &cpu.1, "cpu.cfs_quota_us")?,
                &find(&cpuacct.0, &cpuacct.1, "cpuacct.usage")?,
                &find(&memory.0, &memory.1, "memory.stat")?,
            ),
        })
    }

    /// Reads the cgroup's figures.
    pub fn read(&self) -> Result<Reading, CgroupError> {
        if self.v2 {
            let d = &self.cpu;
            parse_v2(&V2Files {
                cpu_max: &read(&d.join("cpu.max"))?,
                cpu_stat: &read(&d.join("cpu.stat"))?,
                memory_current: &read(&d.join("memory.current"))?,
                memory_max: &read(&d.join("memory.max"))?,
                memory_stat: &read(&d.join("memory.stat"))?,
            })
            .map_err(|reason| CgroupError::Parse {
                path: d.clone(),
                reason,
            })
        } else {
            let usage_user = read(&self.cpuacct.join("cpuacct.usage_user")).ok();
            let usage_sys = read(&self.cpuacct.join("cpuacct.usage_sys")).ok();
            let stat = match (&usage_user, &usage_sys) {
                (Some(_), Some(_)) => String::new(),
                _ => read(&self.cpuacct.join("cpuacct.stat"))?,
            };
            parse_v1(&V1Files {
                cfs_quota_us: &read(&self.cpu.join("cpu.cfs_quota_us"))?,
                cfs_period_us: &read(&self.cpu.join("cpu.cfs_period_us"))?,
                usage_user: usage_user.as_deref(),
                usage_sys: usage_sys.as_deref(),
                cpuacct_stat: &stat,
                usage_in_bytes: &read(&self.memory.join("memory.usage_in_bytes"))?,
                limit_in_bytes: &read(&self.memory.join("memory.limit_in_bytes"))?,
                memory_stat: &read(&self.memory.join("memory.stat"))?,
            })
            .map_err(|reason| CgroupError::Parse {
                path: self.memory.clone(),
                reason,
            })
        }
    }
}

/// An open directory of this process (`<root>/proc/self/fd/N`) that is cgroup `path`
/// (its link ends with the path) and holds `marker`.
fn open_dir(root: &Path, path: &str, marker: &str) -> Option<PathBuf> {
    let fds = root.join("proc/self/fd");
    let suffix = path.trim_end_matches('/');
    std::fs::read_dir(&fds).ok()?.flatten().find_map(|e| {
        let target = std::fs::read_link(e.path()).ok()?;
        let dir = fds.join(e.file_name());
        (target.to_string_lossy().ends_with(suffix) && dir.join(marker).exists()).then_some(dir)
    })
}

fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// One reading of a cgroup.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    /// (quota, period) in microseconds; `None`: no quota.
    pub cpu_quota: Option<(u64, u64)>,
    pub user_seconds: f64,
    pub system_seconds: f64,
    pub memory_usage: u64,
    /// `None`: unlimited.
    pub memory_limit: Option<u64>,
    /// File pages (the page cache charged to the cgroup).
    pub file: u64,
    pub inactive_file: u64,
}

impl Reading {
    /// The CPUs this cgroup has: ceil(quota ÷ period), or `machine` without a quota.
    pub fn cpus(&self, machine: usize) -> usize {
        match self.cpu_quota {
            Some((q, p)) if p > 0 => usize::try_from(q.div_ceil(p)).unwrap_or(machine).max(1),
            _ => machine.max(1),
        }
    }
}

/// A v2 cgroup's files.
pub struct V2Files<'a> {
    pub cpu_max: &'a str,
    pub cpu_stat: &'a str,
    pub memory_current: &'a str,
    pub memory_max: &'a str,
    pub memory_stat: &'a str,
}

/// A v1 cgroup's files (`usage_user`/`usage_sys` are absent on older kernels).
pub struct V1Files<'a> {
    pub cfs_quota_us: &'a str,
    pub cfs_period_us: &'a str,
    pub usage_user: Option<&'a str>,
    pub usage_sys: Option<&'a str>,
    pub cpuacct_stat: &'a str,
    pub usage_in_bytes: &'a str,
    pub limit_in_bytes: &'a str,
    pub memory_stat: &'a str,
}

fn number(file: &str, text: &str) -> Result<u64, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{file}: {:?} is not a number", text.trim()))
}

/// `key value` lines: the value of `key`.
fn keyed(file: &str, text: &str, key: &str) -> Result<u64, String> {
    let v = text
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .ok_or_else(|| format!("{file}: no {key}"))?;
    number(file, v)
}

pub fn parse_v2(f: &V2Files<'_>) -> Result<Reading, String> {
    let mut max = f.cpu_max.split_whitespace();
    let cpu_quota = match (max.next(), max.next()) {
        (Some("max"), _) => None,
        (Some(q), Some(p)) => Some((number("cpu.max", q)?, number("cpu.max", p)?)),
        _ => {
            return Err(format!(
                "cpu.max: {:?} is not \"QUOTA PERIOD\"",
                f.cpu_max.trim()
            ))
        }
    };
    let memory_limit = match f.memory_max.trim() {
        "max" => None,
        m => Some(number("memory.max", m)?),
    };
    Ok(Reading {
        cpu_quota,
        user_seconds: keyed("cpu.stat", f.cpu_stat, "user_usec")? as f64 / 1e6,
        system_seconds: keyed("cpu.stat", f.cpu_stat, "system_usec")? as f64 / 1e6,
        memory_usage: number("memory.current", f.memory_current)?,
        memory_limit,
        file: keyed("memory.stat", f.memory_stat, "file")?,
        inactive_file: keyed("memory.stat", f.memory_stat, "inactive_file")?,
    })
}

pub fn parse_v1(f: &V1Files<'_>) -> Result<Reading, String> {
    let quota = f.cfs_quota_us.trim();
    let cpu_quota = if quota == "-1" {
        None
    } else {
        Some((
            number("cpu.cfs_quota_us", quota)?,
            number("cpu.cfs_period_us", f.cfs_period_us)?,
        ))
    };
    let (user_seconds, system_seconds) = match (f.usage_user, f.usage_sys) {
        (Some(u), Some(s)) => (
            number("cpuacct.usage_user", u)? as f64 / 1e9,
            number("cpuacct.usage_sys", s)? as f64 / 1e9,
        ),
        _ => (
            keyed("cpuacct.stat", f.cpuacct_stat, "user")? as f64 / USER_HZ,
            keyed("cpuacct.stat", f.cpuacct_stat, "system")? as f64 / USER_HZ,
        ),
    };
    let limit = number("memory.limit_in_bytes", f.limit_in_bytes)?;
    Ok(Reading {
        cpu_quota,
        user_seconds,
        system_seconds,
        memory_usage: number("memory.usage_in_bytes", f.usage_in_bytes)?,
        memory_limit: (limit < V1_UNLIMITED).then_some(limit),
        file: keyed("memory.stat", f.memory_stat, "total_cache")?,
        inactive_file: keyed("memory.stat", f.memory_stat, "total_inactive_file")?,
    })
}

/// The first reading idle time is counted from, and the last idle given.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Idle {
    first: Option<(f64, f64)>,
    last: f64,
}

impl Idle {
    /// Idle seconds over all `cpus` at `now` (seconds on any monotonic clock) with
    /// `busy` seconds used so far: `cpus` × elapsed − busy since the first reading,
    /// never negative, never decreasing.
    pub fn at(&mut self, now: f64, busy: f64, cpus: usize) -> f64 {
        let (t0, b0) = *self.first.get_or_insert((now, busy));
        let idle = cpus as f64 * (now - t0) - (busy - b0);
        self.last = self.last.max(idle);
        self.last
    }
}

/// Replaces the machine's CPU and memory families in `families` (from the `cpu` and
/// `meminfo` collectors) with the cgroup's, and adds rampart's own. `idle` carries the
/// first reading between calls; `now` is seconds on a monotonic clock.
pub fn replace(
    families: &mut Vec<Family>,
    location: &Location,
    r: &Reading,
    idle: &mut Idle,
    now: f64,
) {
    let find = |families: &[Family], name: &str| families.iter().position(|f| f.name == name);
    let machine_cpus = find(families, "node_cpu_seconds_total").map_or(1, |i| {
        let mut ids: Vec<&str> = families[i]
            .samples
            .iter()
            .filter_map(|s| {
                s.labels
                    .iter()
                    .find(|(k, _)| k == "cpu")
                    .map(|(_, v)| v.as_str())
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    });
    let machine_mem = find(families, "node_memory_MemTotal_bytes")
        .and_then(|i| families[i].samples.first())
        .map_or(u64::MAX, |s| s.value as u64);
    let cpus = r.cpus(machine_cpus);
    let busy = r.user_seconds + r.system_seconds;
    let idle_seconds = idle.at(now, busy, cpus);
    let per = |v: f64| v / cpus as f64;
    let mut cpu = Vec::new();
    let mut guest = Vec::new();
    for n in 0..cpus {
        let id = n.to_string();
        for mode in MODES {
            let v = match mode {
                "user" => per(r.user_seconds),
                "system" => per(r.system_seconds),
                "idle" => per(idle_seconds),
                _ => 0.0,
            };
            cpu.push(labelled(&[("cpu", &id), ("mode", mode)], v));
        }
        for mode in ["nice", "user"] {
            guest.push(labelled(&[("cpu", &id), ("mode", mode)], 0.0));
        }
    }
    let total = r.memory_limit.map_or(machine_mem, |l| l.min(machine_mem));
    let usage = r.memory_usage.min(total);
    let available = total.saturating_sub(usage.saturating_sub(r.inactive_file));
    let memory = [
        ("MemTotal", total),
        ("MemFree", total - usage),
        ("MemAvailable", available),
        ("Cached", r.file),
        ("Buffers", 0),
    ];
    let mut set = |name: &str, help: &str, kind: Kind, samples: Vec<crate::Sample>| match find(
        families, name,
    ) {
        Some(i) => families[i].samples = samples,
        None => families.push(family(name, help, kind, samples)),
    };
    set(
        "node_cpu_seconds_total",
        "Seconds the CPUs spent in each mode.",
        Kind::Counter,
        cpu,
    );
    set(
        "node_cpu_guest_seconds_total",
        "Seconds the CPUs spent in guests (VMs) for each mode.",
        Kind::Counter,
        guest,
    );
    for (key, v) in memory {
        set(
            &format!("node_memory_{key}_bytes"),
            &format!("Memory information field {key}_bytes."),
            Kind::Gauge,
            vec![crate::procfs::plain(v as f64)],
        );
    }
    families.push(family(
        "rampart_host_cgroup_info",
        "The cgroup this host's CPU and memory figures come from.",
        Kind::Gauge,
        vec![labelled(&[("path", &location.path)], 1.0)],
    ));
    if let Some((q, p)) = r.cpu_quota.filter(|(_, p)| *p > 0) {
        families.push(gauge(
            "rampart_host_cgroup_cpu_limit_cores",
            "The host cgroup's CPU quota in cores (quota / period).",
            q as f64 / p as f64,
        ));
    }
    if let Some(l) = r.memory_limit {
        families.push(gauge(
            "rampart_host_cgroup_memory_limit_bytes",
            "The host cgroup's memory limit.",
            l as f64,
        ));
    }
}

/// The cgroup collector's state: where the cgroup is (found at the first collection
/// unless given) and the first reading.
#[derive(Debug)]
pub struct Tracker {
    state: Mutex<(Option<Location>, Idle)>,
    epoch: Instant,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            state: Mutex::new((None, Idle::default())),
            epoch: Instant::now(),
        }
    }
}

impl Tracker {
    /// A tracker of the cgroup at `location` (tests; the agent finds its own).
    pub fn at(location: Location) -> Tracker {
        Tracker {
            state: Mutex::new((Some(location), Idle::default())),
            epoch: Instant::now(),
        }
    }

    /// Replaces the CPU and memory families of `families` with the cgroup's (this
    /// process's own under `root` unless the tracker was given one).
    pub fn replace(&self, root: &Path, families: &mut Vec<Family>) -> Result<(), CgroupError> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (location, idle) = &mut *state;
        let location = match location {
            Some(l) => l,
            None => location.insert(Location::own(root)?),
        };
        let reading = location.read()?;
        replace(
            families,
            location,
            &reading,
            idle,
            self.epoch.elapsed().as_secs_f64(),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::procfs::plain;

    #[test]
    fn proc_self_cgroup_names_the_cgroup() {
        let check = |text: &str, expected: Option<Own>| {
            assert_eq!(parse_proc_cgroup(text), expected, "{text}");
        };
        let pair = |h: &str, p: &str| (h.to_owned(), p.to_owned());
        check(
            "0::/rampart-rs/web1\n",
            Some(Own::V2 {
                path: "/rampart-rs/web1".into(),
            }),
        );
        // This machine's v1: cpu and cpuacct mounted apart, the v2 line ignored.
        check(
            "4:memory:/rampart-rs/db1\n3:cpuset:/\n2:cpuacct:/rampart-rs/db1\n1:cpu:/rampart-rs/db1\n0::/\n",
            Some(Own::V1 {
                cpu: pair("cpu", "/rampart-rs/db1"),
                cpuacct: pair("cpuacct", "/rampart-rs/db1"),
                memory: pair("memory", "/rampart-rs/db1"),
            }),
        );
        // Debian's v1: cpu and cpuacct together.
        check(
            "9:memory:/a\n4:cpu,cpuacct:/a\n1:name=systemd:/a\n",
            Some(Own::V1 {
                cpu: pair("cpu,cpuacct", "/a"),
                cpuacct: pair("cpu,cpuacct", "/a"),
                memory: pair("memory", "/a"),
            }),
        );
        // v1 without a memory hierarchy and no v2 line: nothing to read.
        check("4:cpu,cpuacct:/a\n", None);
        check("", None);
    }

    fn v2(cpu_max: &str, memory_max: &str) -> Result<Reading, String> {
        parse_v2(&V2Files {
            cpu_max,
            cpu_stat: "usage_usec 3500000\nuser_usec 2500000\nsystem_usec 1000000\nnr_periods 0\n",
            memory_current: "104857600\n",
            memory_max,
            memory_stat: "anon 50000000\nfile 40000000\nkernel 100\nactive_file 30000000\ninactive_file 10000000\n",
        })
    }

    fn v1(quota: &str, limit: &str, usage: Option<(&str, &str)>) -> Result<Reading, String> {
        parse_v1(&V1Files {
            cfs_quota_us: quota,
            cfs_period_us: "100000\n",
            usage_user: usage.map(|u| u.0),
            usage_sys: usage.map(|u| u.1),
            cpuacct_stat: "user 250\nsystem 100\n",
            usage_in_bytes: "104857600\n",
            limit_in_bytes: limit,
            memory_stat:
                "cache 1\nrss 2\ntotal_cache 40000000\ntotal_rss 3\ntotal_inactive_file 10000000\n",
        })
    }

    /// Both layouts' files give the same reading; "max", -1 and v1's huge limit are
    /// unlimited; bad files are named.
    #[test]
    fn both_layouts_parse_to_one_reading() {
        let expected = Reading {
            cpu_quota: Some((50_000, 100_000)),
            user_seconds: 2.5,
            system_seconds: 1.0,
            memory_usage: 100 << 20,
            memory_limit: Some(64 << 20),
            file: 40_000_000,
            inactive_file: 10_000_000,
        };
        assert_eq!(v2("50000 100000\n", "67108864\n").unwrap(), expected);
        assert_eq!(v1("50000\n", "67108864\n", None).unwrap(), expected);
        assert_eq!(
            v1(
                "50000\n",
                "67108864\n",
                Some(("2500000000\n", "1000000000\n"))
            )
            .unwrap(),
            expected
        );
        let unlimited = Reading {
            cpu_quota: None,
            memory_limit: None,
            ..expected
        };
        assert_eq!(v2("max 100000\n", "max\n").unwrap(), unlimited);
        assert_eq!(
            v1("-1\n", "9223372036854771712\n", None).unwrap(),
            unlimited
        );
        for (cpu_max, memory_max, error) in [
            ("fifty 100000", "max", "cpu.max: \"fifty\" is not a number"),
            ("50000", "max", "cpu.max: \"50000\" is not \"QUOTA PERIOD\""),
            ("max 100000", "lots", "memory.max: \"lots\" is not a number"),
        ] {
            assert_eq!(v2(cpu_max, memory_max).unwrap_err(), error);
        }
        assert_eq!(
            v1("x", "1", None).unwrap_err(),
            "cpu.cfs_quota_us: \"x\" is not a number"
        );
        let mut f = V1Files {
            cfs_quota_us: "-1",
            cfs_period_us: "100000",
            usage_user: None,
            usage_sys: None,
            cpuacct_stat: "user 1\n",
            usage_in_bytes: "1",
            limit_in_bytes: "1",
            memory_stat: "",
        };
        assert_eq!(parse_v1(&f).unwrap_err(), "cpuacct.stat: no system");
        f.cpuacct_stat = "user 1\nsystem 1\n";
        assert_eq!(parse_v1(&f).unwrap_err(), "memory.stat: no total_cache");
    }

    /// (quota, machine CPUs) → the host's CPUs.
    #[test]
    fn cpus_are_the_quota_rounded_up() {
        for (quota, machine, cpus) in [
            (Some((50_000, 100_000)), 8, 1),
            (Some((100_000, 100_000)), 8, 1),
            (Some((150_000, 100_000)), 8, 2),
            (Some((1_000, 100_000)), 8, 1),
            (None, 8, 8),
            (None, 0, 1),
        ] {
            let r = Reading {
                cpu_quota: quota,
                user_seconds: 0.0,
                system_seconds: 0.0,
                memory_usage: 0,
                memory_limit: None,
                file: 0,
                inactive_file: 0,
            };
            assert_eq!(r.cpus(machine), cpus, "{quota:?} on {machine}");
        }
    }

    /// Idle: from the first reading, never negative, never decreasing.
    #[test]
    fn idle_counts_from_the_first_reading() {
        let mut idle = Idle::default();
        assert_eq!(idle.at(100.0, 50.0, 2), 0.0);
        assert_eq!(idle.at(110.0, 55.0, 2), 15.0);
        // Busier than the CPUs allow (a quota just lowered): idle holds.
        assert_eq!(idle.at(111.0, 80.0, 2), 15.0);
        assert_eq!(idle.at(130.0, 80.0, 2), 30.0);
    }

    fn sample_text(families: &[Family]) -> String {
        crate::expo::text(families)
    }

    /// The machine's 4 CPUs and 8 GiB become the cgroup's 1 CPU and 64 MiB, under
    /// node_exporter's names and labels; the other families stay.
    #[test]
    fn cgroup_figures_replace_the_machines() {
        let machine: Vec<Family> = vec![
            family(
                "node_cpu_seconds_total",
                "Seconds the CPUs spent in each mode.",
                Kind::Counter,
                (0..4)
                    .flat_map(|c| {
                        MODES.map(|m| labelled(&[("cpu", &c.to_string()), ("mode", m)], 9.0))
                    })
                    .collect(),
            ),
            gauge(
                "node_memory_MemTotal_bytes",
                "Memory information field MemTotal_bytes.",
                8.0 * 1024.0 * 1024.0 * 1024.0,
            ),
            gauge(
                "node_memory_MemFree_bytes",
                "Memory information field MemFree_bytes.",
                1.0,
            ),
            gauge(
                "node_memory_SwapTotal_bytes",
                "Memory information field SwapTotal_bytes.",
                7.0,
            ),
            family(
                "node_load1",
                "1m load average.",
                Kind::Gauge,
                vec![plain(3.0)],
            ),
        ];
        let mut families = machine.clone();
        let location = Location::v1(
            "/rampart-rs/db1",
            Path::new("/c"),
            Path::new("/a"),
            Path::new("/m"),
        );
        let mut r = v1("50000\n", "67108864\n", None).unwrap();
        r.memory_usage = 20 << 20;
        let mut idle = Idle::default();
        replace(&mut families, &location, &r, &mut idle, 10.0);
        r.user_seconds += 0.5;
        let mut families = machine.clone();
        replace(&mut families, &location, &r, &mut idle, 12.0);
        let text = sample_text(&families);
        for line in [
            "node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 3\n",
            "node_cpu_seconds_total{cpu=\"0\",mode=\"system\"} 1\n",
            "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 1.5\n",
            "node_cpu_seconds_total{cpu=\"0\",mode=\"nice\"} 0\n",
            "node_cpu_seconds_total{cpu=\"0\",mode=\"steal\"} 0\n",
            "node_cpu_guest_seconds_total{cpu=\"0\",mode=\"user\"} 0\n",
            "node_memory_MemTotal_bytes 67108864\n",
            "node_memory_MemFree_bytes 46137344\n",
            "node_memory_MemAvailable_bytes 56137344\n",
            "node_memory_Cached_bytes 40000000\n",
            "node_memory_Buffers_bytes 0\n",
            "node_memory_SwapTotal_bytes 7\n",
            "node_load1 3\n",
            "rampart_host_cgroup_info{path=\"/rampart-rs/db1\"} 1\n",
            "rampart_host_cgroup_cpu_limit_cores 0.5\n",
            "rampart_host_cgroup_memory_limit_bytes 67108864\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(!text.contains("cpu=\"1\""), "{text}");
        // Unlimited: the machine's CPUs and memory, no limit gauges.
        let mut families = machine;
        let r = v1("-1\n", "9223372036854771712\n", None).unwrap();
        replace(&mut families, &location, &r, &mut Idle::default(), 0.0);
        let text = sample_text(&families);
        assert!(
            text.contains("node_cpu_seconds_total{cpu=\"3\",mode=\"user\"} 0.625\n"),
            "{text}"
        );
        assert!(
            text.contains("node_memory_MemTotal_bytes 8589934592\n"),
            "{text}"
        );
        assert!(!text.contains("limit"), "{text}");
    }
}

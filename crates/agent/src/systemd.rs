//! node_exporter 1.5's `systemd` collector, as Debian 12's `prometheus-node-exporter`
//! runs it (enabled by default there) with `--collector.systemd.enable-restarts-metrics`:
//! `node_systemd_units{state}` over every unit systemd has loaded,
//! `node_systemd_unit_state{name,state,type}` (one series per state of [`STATES`], 1 for
//! the unit's own) for the loaded units [`UNIT_EXCLUDE`] leaves in, and for those
//! `node_systemd_service_restart_total` (`NRestarts`), the three `node_systemd_socket_*`
//! families (`NAccepted`, `NConnections`, and `NRefused` where systemd has it),
//! `node_systemd_timer_last_trigger_seconds`, plus `node_systemd_system_running` and
//! `node_systemd_version{version}`. Names, types, help texts and label values are
//! node_exporter's (its `type` label is a service's or mount's `Type=`, empty otherwise;
//! `socket_refused_connections_total` is a gauge there, and here).
//!
//! **Transport.** node_exporter asks systemd over D-Bus; so does this, through
//! `systemctl` (three runs a collection: the manager's `Version` and `SystemState`,
//! `list-units --all`, and one `show` of the selected units' properties) against the
//! system bus (`/run/dbus/system_bus_socket` under the root), which lets any user read
//! unit state; systemd's private socket is root's only. No D-Bus crate enters the
//! build. What that costs is in `ARCHITECTURE.md`. Every run has `SYSTEMD_BUS_TIMEOUT`
//! ([`BUS_TIMEOUT`]) and a bounded output ([`MAX_OUTPUT`]); `TZ=UTC` makes `show` print
//! `LastTriggerUSec` as a UTC date, at one-second resolution (node_exporter has the
//! microseconds).
//!
//! **Where systemd does not run** (no `run/systemd/system` under the root, sd_booted's
//! test: isolated mode's namespaces, containers) the collector fails at once without
//! running anything, its error [`SystemdError::is_missing`] (node_exporter, enabled by
//! default in Debian, reports `node_scrape_collector_success{collector="systemd"} 0`
//! there too, as it does without a system bus). Output that is not what `systemctl`
//! prints fails this collector only, with the command and line named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use regex::Regex;

use crate::procfs::{bad, family, labelled, Bad};
use crate::{Family, Kind};

/// Debian 12's default `--collector.systemd.unit-exclude` (upstream 1.5's lacks
/// `target`), anchored as node_exporter anchors it.
pub const UNIT_EXCLUDE: &str = r"^(?:.+\.(automount|device|mount|scope|slice|target))$";
/// The default `--collector.systemd.unit-include`: every unit.
pub const UNIT_INCLUDE: &str = r"^(?:.+)$";
/// The states `node_systemd_unit_state` has a series for, and `node_systemd_units` at
/// least.
pub const STATES: [&str; 5] = ["active", "activating", "deactivating", "inactive", "failed"];
/// The first systemd with the manager's `SystemState` and timers' `LastTriggerUSec`.
const MIN_VERSION_SYSTEM_STATE: f64 = 212.0;
/// The properties `show` is asked for, per unit.
pub const UNIT_PROPERTIES: &str =
    "Id,Type,NRestarts,NAccepted,NConnections,NRefused,LastTriggerUSec";
/// Each D-Bus call of a `systemctl` run gives up after this (`SYSTEMD_BUS_TIMEOUT`).
pub const BUS_TIMEOUT: &str = "5s";
/// The most a `systemctl` run may print; more is an error.
pub const MAX_OUTPUT: usize = 16 << 20;

/// Why the collector failed; each names what it ran.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("systemd is not running here (no {})", .0.display())]
    NotBooted(PathBuf),
    #[error("{command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command}: {status}: {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{command}: {reason}")]
    Parse { command: String, reason: String },
}

impl SystemdError {
    /// Whether systemd simply does not run here (logged at debug level, as a kernel
    /// without a file is).
    pub fn is_missing(&self) -> bool {
        matches!(self, SystemdError::NotBooted(_))
    }
}

/// One unit as `list-units --all` prints it.
#[derive(Clone, Debug, PartialEq)]
pub struct Unit {
    pub name: String,
    pub load: String,
    pub active: String,
}

/// The manager's properties the collector reads (absent where systemd is too old).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Manager {
    pub version: Option<String>,
    pub system_state: Option<String>,
}

/// The collector: systemd's units and state under node_exporter's names, asked through
/// `systemctl` on the system bus under `root`.
pub fn collect(root: &Path) -> Result<Vec<Family>, SystemdError> {
    let booted = root.join("run/systemd/system");
    if !booted.is_dir() {
        return Err(SystemdError::NotBooted(booted));
    }
    let bus = format!(
        "unix:path={}",
        root.join("run/dbus/system_bus_socket").display()
    );
    let manager_args = ["show", "--property=Version,SystemState"];
    let manager = parse_manager(&systemctl(&bus, &manager_args)?)
        .map_err(|b| parse_error(&manager_args, b))?;
    let list_args = ["list-units", "--all", "--plain", "--no-legend"];
    let units =
        parse_units(&systemctl(&bus, &list_args)?).map_err(|b| parse_error(&list_args, b))?;
    let selected = select(&units);
    let props = if selected.is_empty() {
        BTreeMap::new()
    } else {
        let property = format!("--property={UNIT_PROPERTIES}");
        let mut args = vec!["show", property.as_str(), "--"];
        args.extend(selected.iter().map(|u| u.name.as_str()));
        let text = systemctl(&bus, &args)?;
        parse_show(&text).map_err(|b| parse_error(&args[..2], b))?
    };
    families(&manager, &units, &props).map_err(|reason| SystemdError::Parse {
        command: "systemctl show".into(),
        reason,
    })
}

fn parse_error(args: &[&str], b: Bad) -> SystemdError {
    let Bad { line, reason } = b;
    SystemdError::Parse {
        command: format!("systemctl {}", args.join(" ")),
        reason: format!("line {line}: {reason}"),
    }
}

/// One `systemctl` run: its standard output, or why not.
fn systemctl(bus: &str, args: &[&str]) -> Result<String, SystemdError> {
    // Named in errors without the unit list.
    let command = format!(
        "systemctl {}",
        args.iter()
            .take_while(|a| **a != "--")
            .copied()
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = Command::new("systemctl")
        .arg("--no-pager")
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
        .env("SYSTEMD_BUS_TIMEOUT", BUS_TIMEOUT)
        .env("SYSTEMD_COLORS", "0")
        .env("SYSTEMD_PAGER", "")
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| SystemdError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(SystemdError::Failed {
            command,
            status: out.status.to_string(),
            stderr: stderr.trim().chars().take(500).collect(),
        });
    }
    if out.stdout.len() > MAX_OUTPUT {
        return Err(SystemdError::Parse {
            command,
            reason: format!("over {MAX_OUTPUT} bytes of output"),
        });
    }
    String::from_utf8(out.stdout).map_err(|_| SystemdError::Parse {
        command,
        reason: "output is not UTF-8".into(),
    })
}

/// `systemctl list-units --all --plain --no-legend`: `UNIT LOAD ACTIVE SUB DESCRIPTION`
/// per line (a leading `●` of older versions is skipped).
pub(crate) fn parse_units(text: &str) -> Result<Vec<Unit>, Bad> {
    let mut units = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut fields = line.split_whitespace().peekable();
        if fields.peek().is_some_and(|f| *f == "●" || *f == "*") {
            fields.next();
        }
        let Some(name) = fields.next() else { continue };
        let (Some(load), Some(active), Some(_sub)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(bad(i, format!("{name}: want UNIT LOAD ACTIVE SUB")));
        };
        if !name.contains('.') {
            return Err(bad(i, format!("{name}: not a unit name")));
        }
        let word =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
        if !word(load) || !word(active) {
            return Err(bad(
                i,
                format!("{name}: load state {load:?}, active state {active:?}"),
            ));
        }
        units.push(Unit {
            name: name.to_owned(),
            load: load.to_owned(),
            active: active.to_owned(),
        });
    }
    Ok(units)
}

/// A unit's (or the manager's) properties by name.
pub type Properties = BTreeMap<String, String>;

/// `systemctl show` output: `KEY=value` lines, one block per unit, blocks separated by
/// blank lines; the blocks in order, each with the index of its first line.
fn parse_blocks(text: &str) -> Result<Vec<(usize, Properties)>, Bad> {
    let mut blocks = Vec::new();
    let mut block = BTreeMap::new();
    let mut start = 0;
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            if !block.is_empty() {
                blocks.push((start, std::mem::take(&mut block)));
            }
            continue;
        }
        if block.is_empty() {
            start = i;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(bad(i, format!("{line:?}: no '='")));
        };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad(i, format!("{key:?}: not a property name")));
        }
        block.insert(key.to_owned(), value.to_owned());
    }
    if !block.is_empty() {
        blocks.push((start, block));
    }
    Ok(blocks)
}

/// `systemctl show --property=Version,SystemState` (the manager).
pub(crate) fn parse_manager(text: &str) -> Result<Manager, Bad> {
    let mut blocks = parse_blocks(text)?;
    if let Some((i, _)) = blocks.get(1) {
        return Err(bad(*i, "a second block: want only the manager's"));
    }
    let mut m = blocks.pop().map(|(_, b)| b).unwrap_or_default();
    Ok(Manager {
        version: m.remove("Version").filter(|v| !v.is_empty()),
        system_state: m.remove("SystemState").filter(|v| !v.is_empty()),
    })
}

/// `systemctl show --property=Id,...` of units: each block's properties by its `Id`.
pub(crate) fn parse_show(text: &str) -> Result<BTreeMap<String, BTreeMap<String, String>>, Bad> {
    let mut units = BTreeMap::new();
    for (i, mut block) in parse_blocks(text)? {
        let Some(id) = block.remove("Id") else {
            return Err(bad(i, "a block without Id"));
        };
        units.insert(id, block);
    }
    Ok(units)
}

/// The units node_exporter reports one by one: loaded, included, not excluded.
pub fn select(units: &[Unit]) -> Vec<&Unit> {
    // Invariant: both patterns are constants that compile (a unit test builds them).
    let (Ok(include), Ok(exclude)) = (Regex::new(UNIT_INCLUDE), Regex::new(UNIT_EXCLUDE)) else {
        return Vec::new();
    };
    units
        .iter()
        .filter(|u| u.load == "loaded" && include.is_match(&u.name) && !exclude.is_match(&u.name))
        .collect()
}

/// node_exporter's reading of the manager's `Version` (`252.39-1~deb12u2` → 252.39):
/// the first `[0-9]{3,}(\.[0-9]+)?`; 0 and no label when there is none.
pub fn version(v: Option<&str>) -> (f64, String) {
    let Some(v) = v else {
        return (0.0, String::new());
    };
    let v = v.trim_matches('"');
    let Ok(re) = Regex::new(r"[0-9]{3,}(\.[0-9]+)?") else {
        return (0.0, String::new());
    };
    match re.find(v).and_then(|m| m.as_str().parse::<f64>().ok()) {
        Some(n) => (n, v.to_owned()),
        None => (0.0, String::new()),
    }
}

/// `LastTriggerUSec` as `show` prints it with `TZ=UTC` (`Mon 2026-12-07 03:58:42 UTC`),
/// in seconds since the epoch; empty (never triggered) is 0, as D-Bus's 0 is in
/// node_exporter.
pub fn utc_timestamp(s: &str) -> Result<f64, String> {
    let s = s.trim();
    if s.is_empty() || s == "n/a" {
        return Ok(0.0);
    }
    let err = || format!("not a UTC timestamp: {s:?}");
    let f: Vec<&str> = s.split_whitespace().collect();
    let [_weekday, date, time, "UTC"] = f.as_slice() else {
        return Err(err());
    };
    let num = |t: &str| -> Result<i64, String> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        t.parse::<i64>().map_err(|_| err())
    };
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = time.split(':').collect();
    let ([y, mo, da], [h, mi, se]) = (d.as_slice(), t.as_slice()) else {
        return Err(err());
    };
    let (sec, frac) = match se.split_once('.') {
        Some((s, f)) => (s, format!("0.{f}")),
        None => (*se, "0".to_owned()),
    };
    let frac: f64 = frac.parse().map_err(|_| err())?;
    let (y, mo, da, h, mi, sec) = (num(y)?, num(mo)?, num(da)?, num(h)?, num(mi)?, num(sec)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || sec > 60 {
        return Err(err());
    }
    let days = days_from_civil(y, mo, da);
    Ok((days * 86_400 + h * 3_600 + mi * 60 + sec) as f64 + frac)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The families node_exporter emits from the manager, every unit (`units`) and the
/// selected units' properties (`props`, by unit name). A property that is not a number
/// where one is due is an error naming the unit.
pub fn families(
    manager: &Manager,
    units: &[Unit],
    props: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<Vec<Family>, String> {
    let (version, full) = version(manager.version.as_deref());
    let mut out = vec![family(
        "node_systemd_version",
        "Detected systemd version",
        Kind::Gauge,
        vec![labelled(&[("version", &full)], version)],
    )];

    // The summary counts every unit, loaded or not, by its active state.
    let mut summary: BTreeMap<&str, f64> = STATES.iter().map(|s| (*s, 0.0)).collect();
    for u in units {
        *summary.entry(u.active.as_str()).or_default() += 1.0;
    }
    out.push(family(
        "node_systemd_units",
        "Summary of systemd unit states",
        Kind::Gauge,
        summary
            .iter()
            .map(|(s, n)| labelled(&[("state", s)], *n))
            .collect(),
    ));

    let none = BTreeMap::new();
    let number =
        |unit: &str, p: &BTreeMap<String, String>, key: &str| -> Result<Option<f64>, String> {
            match p.get(key).map(String::as_str) {
                None | Some("") | Some("[not set]") => Ok(None),
                Some(v) => v
                    .parse::<u64>()
                    .map(|n| Some(n as f64))
                    .map_err(|_| format!("{unit}: {key}={v:?} is not a number")),
            }
        };
    let (mut state, mut restarts, mut timers) = (Vec::new(), Vec::new(), Vec::new());
    let (mut accepted, mut current, mut refused) = (Vec::new(), Vec::new(), Vec::new());
    for u in select(units) {
        let name = u.name.as_str();
        let p = props.get(name).unwrap_or(&none);
        let kind = if name.ends_with(".service") || name.ends_with(".mount") {
            p.get("Type").map(String::as_str).unwrap_or("")
        } else {
            ""
        };
        for s in STATES {
            let v = if s == u.active { 1.0 } else { 0.0 };
            state.push(labelled(&[("name", name), ("state", s), ("type", kind)], v));
        }
        let by_name = |v: f64| labelled(&[("name", name)], v);
        if name.ends_with(".service") {
            if let Some(n) = number(name, p, "NRestarts")? {
                restarts.push(by_name(n));
            }
        }
        if name.ends_with(".timer") && version >= MIN_VERSION_SYSTEM_STATE {
            let at = utc_timestamp(p.get("LastTriggerUSec").map_or("", String::as_str))
                .map_err(|e| format!("{name}: LastTriggerUSec: {e}"))?;
            timers.push(by_name(at));
        }
        if name.ends_with(".socket") {
            // As node_exporter: without NAccepted nothing, without NConnections only
            // it; NRefused only where systemd (239 on) has it.
            let Some(a) = number(name, p, "NAccepted")? else {
                continue;
            };
            accepted.push(by_name(a));
            let Some(c) = number(name, p, "NConnections")? else {
                continue;
            };
            current.push(by_name(c));
            if let Some(r) = number(name, p, "NRefused")? {
                refused.push(by_name(r));
            }
        }
    }
    out.push(family(
        "node_systemd_unit_state",
        "Systemd unit",
        Kind::Gauge,
        state,
    ));
    out.push(family(
        "node_systemd_service_restart_total",
        "Service unit count of Restart triggers",
        Kind::Counter,
        restarts,
    ));
    out.push(family(
        "node_systemd_timer_last_trigger_seconds",
        "Seconds since epoch of last trigger.",
        Kind::Gauge,
        timers,
    ));
    out.push(family(
        "node_systemd_socket_accepted_connections_total",
        "Total number of accepted socket connections",
        Kind::Counter,
        accepted,
    ));
    out.push(family(
        "node_systemd_socket_current_connections",
        "Current number of socket connections",
        Kind::Gauge,
        current,
    ));
    out.push(family(
        "node_systemd_socket_refused_connections_total",
        "Total number of refused socket connections",
        Kind::Gauge,
        refused,
    ));
    if version >= MIN_VERSION_SYSTEM_STATE {
        let Some(s) = &manager.system_state else {
            return Err("the manager has no SystemState".into());
        };
        out.push(family(
            "node_systemd_system_running",
            "Whether the system is operational (see 'systemctl is-system-running')",
            Kind::Gauge,
            vec![labelled(&[], if s == "running" { 1.0 } else { 0.0 })],
        ));
    }
    out.retain(|f| !f.samples.is_empty());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::fixture::{lines, render};

    /// Recorded on a booted Debian 12 host (systemd 252.39 under `systemd-nspawn -b`,
    /// as an unprivileged user, `TZ=UTC`): the three runs `collect` makes, and Debian's
    /// node_exporter 1.5 (`--collector.disable-defaults --collector.systemd
    /// --collector.systemd.enable-restarts-metrics`) a second later. The host had a
    /// failed service restarted three times (`fixture-flaky.service`), so it was
    /// `degraded`, and a timer that had fired (`fixture-tick.timer`).
    const MANAGER: &str = include_str!("systemd_fixtures/show-manager.txt");
    const LIST: &str = include_str!("systemd_fixtures/list-units.txt");
    const SHOW: &str = include_str!("systemd_fixtures/show-units.txt");
    const NODE_EXPORTER: &str = include_str!("systemd_fixtures/node_exporter.prom");

    fn recorded() -> Vec<Family> {
        let m = parse_manager(MANAGER).unwrap();
        let u = parse_units(LIST).unwrap();
        let p = parse_show(SHOW).unwrap();
        families(&m, &u, &p).unwrap()
    }

    /// name{labels} → value, without empty labels (Prometheus's reading of `x=""`).
    fn series(fs: &[Family]) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for f in fs {
            for s in &f.samples {
                let mut l: Vec<String> = s
                    .labels
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect();
                l.sort();
                out.insert(
                    format!("{}{}{{{}}}", f.name, s.suffix, l.join(",")),
                    s.value,
                );
            }
        }
        out
    }

    #[test]
    fn recorded_output_gives_node_exporters_families_and_series() {
        let ours = recorded();
        let (theirs, bad_lines) = crate::scrape::parse(NODE_EXPORTER);
        assert_eq!(bad_lines, 0);
        // Same families, types and help texts.
        let head = |fs: &[Family]| -> Vec<(String, Kind, String)> {
            let mut v: Vec<_> = fs
                .iter()
                .map(|f| (f.name.clone(), f.kind, f.help.clone()))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        assert_eq!(head(&ours), head(&theirs));
        // Same series and values; the timer's at systemctl's one-second resolution.
        let (o, t) = (series(&ours), series(&theirs));
        assert_eq!(o.keys().collect::<Vec<_>>(), t.keys().collect::<Vec<_>>());
        for (k, v) in &t {
            let ok = if k.starts_with("node_systemd_timer_last_trigger_seconds") {
                (o[k] - v).abs() < 1.0
            } else {
                o[k] == *v
            };
            assert!(ok, "{k}: ours {}, node_exporter's {v}", o[k]);
        }
        assert_eq!(
            o[r#"node_systemd_unit_state{name="fixture-flaky.service",state="failed",type="simple"}"#],
            1.0
        );
        assert_eq!(o[r#"node_systemd_units{state="failed"}"#], 1.0);
        assert_eq!(o["node_systemd_system_running{}"], 0.0);
    }

    fn check_units(input: &str, expect: &str) {
        let got = match parse_units(input) {
            Ok(us) => us
                .iter()
                .map(|u| format!("{} {} {}\n", u.name, u.load, u.active))
                .collect(),
            Err(b) => format!("error: line {}: {}\n", b.line, b.reason),
        };
        assert_eq!(got, lines(expect), "input:\n{input}");
    }

    #[test]
    fn list_units_lines() {
        check_units(
            "dbus.socket   loaded    active   running   D-Bus System Message Bus Socket\n\
             home.mount    not-found inactive dead      home.mount\n",
            "dbus.socket loaded active
             home.mount not-found inactive",
        );
        // Older systemctl marks failed and missing units even in plain output.
        check_units(
            "● x.service loaded failed failed X\n",
            "x.service loaded failed",
        );
        check_units("\n\n", "");
        check_units(
            "a.service loaded active\n",
            "error: line 1: a.service: want UNIT LOAD ACTIVE SUB",
        );
        check_units(
            "UNIT LOAD ACTIVE SUB DESCRIPTION\n",
            "error: line 1: UNIT: not a unit name",
        );
        check_units(
            "a.service loaded Active running A\n",
            "error: line 1: a.service: load state \"loaded\", active state \"Active\"",
        );
    }

    fn check_show(input: &str, expect: &str) {
        let got = match parse_show(input) {
            Ok(units) => units
                .iter()
                .map(|(id, p)| {
                    let p: Vec<String> = p.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!("{id} {}\n", p.join(" "))
                })
                .collect(),
            Err(b) => format!("error: line {}: {}\n", b.line, b.reason),
        };
        assert_eq!(got, lines(expect), "input:\n{input}");
    }

    #[test]
    fn show_blocks() {
        check_show(
            "Type=notify\nNRestarts=0\nId=dbus.service\n\nNConnections=2\nNAccepted=7\nId=ssh.socket\n",
            "dbus.service NRestarts=0 Type=notify
             ssh.socket NAccepted=7 NConnections=2",
        );
        check_show("LastTriggerUSec=\nId=t.timer\n", "t.timer LastTriggerUSec=");
        check_show(
            "Id=a.service\n\nType=simple\n\nId=b.service\n",
            "error: line 3: a block without Id",
        );
        check_show(
            "Id=a.service\ngarbage\n",
            "error: line 2: \"garbage\": no '='",
        );
        check_show(
            "Id=a.service\nN R=1\n",
            "error: line 2: \"N R\": not a property name",
        );
    }

    fn check(manager: &str, list: &str, show: &str, expect: &str) {
        let got = (|| {
            let m = parse_manager(manager).map_err(|b| b.reason)?;
            let u = parse_units(list).map_err(|b| b.reason)?;
            let p = parse_show(show).map_err(|b| b.reason)?;
            families(&m, &u, &p)
        })();
        let text = match got {
            Ok(f) => render(Ok(f)),
            Err(e) => format!("error: {e}\n"),
        };
        assert_eq!(text, lines(expect));
    }

    #[test]
    fn families_from_small_hosts() {
        let manager = "Version=252.39-1~deb12u2\nSystemState=running\n";
        // A socket, a service, a timer, a target (excluded), a mount (excluded), a unit
        // that is not loaded (counted, not reported) and one reloading (a state of its
        // own in the summary).
        let list = "\
            ssh.socket loaded active listening SSH\n\
            ssh.service loaded reloading running SSH\n\
            apt.timer loaded active waiting APT\n\
            multi-user.target loaded active active Multi-User\n\
            -.mount loaded active mounted Root\n\
            gone.service not-found inactive dead gone\n";
        let show = "NAccepted=12\nNConnections=1\nNRefused=3\nId=ssh.socket\n\n\
                    Type=notify\nNRestarts=2\nId=ssh.service\n\n\
                    LastTriggerUSec=Thu 1970-01-01 00:01:40 UTC\nId=apt.timer\n";
        check(
            manager,
            list,
            show,
            r#"
            # TYPE node_systemd_version gauge
            node_systemd_version{version="252.39-1~deb12u2"} 252.39
            # TYPE node_systemd_units gauge
            node_systemd_units{state="activating"} 0
            node_systemd_units{state="active"} 4
            node_systemd_units{state="deactivating"} 0
            node_systemd_units{state="failed"} 0
            node_systemd_units{state="inactive"} 1
            node_systemd_units{state="reloading"} 1
            # TYPE node_systemd_unit_state gauge
            node_systemd_unit_state{name="ssh.socket",state="active"} 1
            node_systemd_unit_state{name="ssh.socket",state="activating"} 0
            node_systemd_unit_state{name="ssh.socket",state="deactivating"} 0
            node_systemd_unit_state{name="ssh.socket",state="inactive"} 0
            node_systemd_unit_state{name="ssh.socket",state="failed"} 0
            node_systemd_unit_state{name="ssh.service",state="active",type="notify"} 0
            node_systemd_unit_state{name="ssh.service",state="activating",type="notify"} 0
            node_systemd_unit_state{name="ssh.service",state="deactivating",type="notify"} 0
            node_systemd_unit_state{name="ssh.service",state="inactive",type="notify"} 0
            node_systemd_unit_state{name="ssh.service",state="failed",type="notify"} 0
            node_systemd_unit_state{name="apt.timer",state="active"} 1
            node_systemd_unit_state{name="apt.timer",state="activating"} 0
            node_systemd_unit_state{name="apt.timer",state="deactivating"} 0
            node_systemd_unit_state{name="apt.timer",state="inactive"} 0
            node_systemd_unit_state{name="apt.timer",state="failed"} 0
            # TYPE node_systemd_service_restart_total counter
            node_systemd_service_restart_total{name="ssh.service"} 2
            # TYPE node_systemd_timer_last_trigger_seconds gauge
            node_systemd_timer_last_trigger_seconds{name="apt.timer"} 100
            # TYPE node_systemd_socket_accepted_connections_total counter
            node_systemd_socket_accepted_connections_total{name="ssh.socket"} 12
            # TYPE node_systemd_socket_current_connections gauge
            node_systemd_socket_current_connections{name="ssh.socket"} 1
            # TYPE node_systemd_socket_refused_connections_total gauge
            node_systemd_socket_refused_connections_total{name="ssh.socket"} 3
            # TYPE node_systemd_system_running gauge
            node_systemd_system_running 1
            "#,
        );
        // Before systemd 239 a socket has no NRefused; before 212 there is no system
        // state or timer trigger, and an unparsable version is 0 without a label.
        check(
            "Version=systemd 211\n",
            "s.socket loaded active listening S\nt.timer loaded active waiting T\n",
            "NAccepted=1\nNConnections=0\nId=s.socket\n\nId=t.timer\n",
            r#"
            # TYPE node_systemd_version gauge
            node_systemd_version{version="systemd 211"} 211
            # TYPE node_systemd_units gauge
            node_systemd_units{state="activating"} 0
            node_systemd_units{state="active"} 2
            node_systemd_units{state="deactivating"} 0
            node_systemd_units{state="failed"} 0
            node_systemd_units{state="inactive"} 0
            # TYPE node_systemd_unit_state gauge
            node_systemd_unit_state{name="s.socket",state="active"} 1
            node_systemd_unit_state{name="s.socket",state="activating"} 0
            node_systemd_unit_state{name="s.socket",state="deactivating"} 0
            node_systemd_unit_state{name="s.socket",state="inactive"} 0
            node_systemd_unit_state{name="s.socket",state="failed"} 0
            node_systemd_unit_state{name="t.timer",state="active"} 1
            node_systemd_unit_state{name="t.timer",state="activating"} 0
            node_systemd_unit_state{name="t.timer",state="deactivating"} 0
            node_systemd_unit_state{name="t.timer",state="inactive"} 0
            node_systemd_unit_state{name="t.timer",state="failed"} 0
            # TYPE node_systemd_socket_accepted_connections_total counter
            node_systemd_socket_accepted_connections_total{name="s.socket"} 1
            # TYPE node_systemd_socket_current_connections gauge
            node_systemd_socket_current_connections{name="s.socket"} 0
            "#,
        );
        check(
            "Version=unknown\n",
            "",
            "",
            r#"
            # TYPE node_systemd_version gauge
            node_systemd_version 0
            # TYPE node_systemd_units gauge
            node_systemd_units{state="activating"} 0
            node_systemd_units{state="active"} 0
            node_systemd_units{state="deactivating"} 0
            node_systemd_units{state="failed"} 0
            node_systemd_units{state="inactive"} 0
            "#,
        );
        // Bad values fail the collector, naming the unit.
        check(
            manager,
            "a.service loaded active running A\n",
            "NRestarts=many\nId=a.service\n",
            r#"error: a.service: NRestarts="many" is not a number"#,
        );
        check(
            manager,
            "t.timer loaded active waiting T\n",
            "LastTriggerUSec=Mon 2026-12-07 04:58:42 CET\nId=t.timer\n",
            r#"error: t.timer: LastTriggerUSec: not a UTC timestamp: "Mon 2026-12-07 04:58:42 CET""#,
        );
        check(
            "Version=252\n",
            "",
            "",
            "error: the manager has no SystemState",
        );
        check(
            "Version=252\n\nVersion=253\n",
            "",
            "",
            "error: a second block: want only the manager's",
        );
    }

    #[test]
    fn timestamps() {
        for (s, want) in [
            ("", Ok(0.0)),
            ("n/a", Ok(0.0)),
            ("Mon 2026-12-07 03:58:42 UTC", Ok(1_796_615_922.0)),
            ("Thu 1970-01-01 00:00:00 UTC", Ok(0.0)),
            ("Tue 2024-02-29 12:00:00.250000 UTC", Ok(1_709_208_000.25)),
            ("Mon 2026-13-07 03:58:42 UTC", Err(())),
            ("2026-12-07 03:58:42", Err(())),
            ("Mon 2026-12-07 03:58 UTC", Err(())),
        ] {
            assert_eq!(utc_timestamp(s).map_err(|_| ()), want, "{s:?}");
        }
    }

    #[test]
    fn the_patterns_compile_and_exclude_as_node_exporter() {
        assert!(Regex::new(UNIT_INCLUDE).is_ok() && Regex::new(UNIT_EXCLUDE).is_ok());
        let u = |name: &str, load: &str| Unit {
            name: name.into(),
            load: load.into(),
            active: "active".into(),
        };
        let units = [
            u("a.service", "loaded"),
            u("b.socket", "loaded"),
            u("proc-sys-fs-binfmt_misc.automount", "loaded"),
            u("dev-sda.device", "loaded"),
            u("-.mount", "loaded"),
            u("session-1.scope", "loaded"),
            u("system.slice", "loaded"),
            u("multi-user.target", "loaded"),
            u("c.path", "loaded"),
            u("d.swap", "loaded"),
            u("gone.service", "not-found"),
            u("masked.service", "masked"),
        ];
        let names: Vec<&str> = select(&units).iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["a.service", "b.socket", "c.path", "d.swap"]);
    }

    #[test]
    fn without_systemd_nothing_runs() {
        let dir = tempfile::tempdir().unwrap();
        let e = collect(dir.path()).unwrap_err();
        assert!(e.is_missing(), "{e}");
        assert!(e.to_string().contains("run/systemd/system"), "{e}");
    }
}

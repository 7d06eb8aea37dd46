//! The HTML: the dashboard (charts, tables, alerts) built from a [`Snapshot`] and the
//! recorded alerts, the login page (escaped with `svg::escape`), and the one stylesheet, inlined and
//! allowed by its SHA-256 in the Content-Security-Policy (no `'unsafe-inline'`, no
//! external source, no JavaScript: the page refreshes itself with `<meta refresh>`).
//! Everything that came from Prometheus or Alertmanager is escaped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;

use crate::alerts::{Alert, Status};
use crate::data::Snapshot;
use crate::prom::Series;
use crate::svg::{self, escape, Chart, Line, Unit};

/// The page's stylesheet (inlined; allowed by hash in the CSP).
pub const CSS: &str = "\
:root{color-scheme:dark}\
*{box-sizing:border-box}\
body{margin:0;font:14px/1.4 system-ui,\"DejaVu Sans\",sans-serif;background:#0f1419;color:#d8dee4}\
header{display:flex;align-items:center;gap:16px;padding:10px 20px;background:#161c23;border-bottom:1px solid #28313b}\
header h1{font-size:18px;margin:0;font-weight:600}\
header .meta{color:#8b97a3;font-size:12px;flex:1}\
header form{margin:0}\
button{background:#2a3440;color:#d8dee4;border:1px solid #3a4653;border-radius:4px;padding:5px 12px;font:inherit;cursor:pointer}\
button:hover{background:#34404d}\
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:14px;padding:14px 20px}\
.panel{background:#161c23;border:1px solid #28313b;border-radius:6px;padding:10px 14px;min-width:0}\
.panel.wide{grid-column:1/-1}\
.panel h2{font-size:13px;font-weight:600;margin:0 0 6px;color:#aeb9c4}\
.chart{width:100%;height:auto;display:block}\
.chart .plot{fill:#11161c;stroke:#28313b}\
.chart .grid line{stroke:#232c35;stroke-width:1}\
.chart text{fill:#8b97a3;font-size:11px}\
.chart text.nodata{fill:#d29922;font-size:16px;font-weight:600}\
.legend{list-style:none;margin:6px 0 0;padding:0;display:flex;flex-wrap:wrap;gap:4px 16px;font-size:12px}\
.legend li{display:flex;align-items:center;gap:6px}\
.swatch{width:10px;height:10px}\
table{width:100%;border-collapse:collapse;font-size:13px}\
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #232c35;vertical-align:top}\
th{color:#8b97a3;font-weight:500}\
.ok{color:#3fb950}.bad{color:#f85149}.muted{color:#8b97a3}\
.badge{display:inline-block;padding:0 8px;border-radius:9px;font-size:12px;font-weight:600}\
.badge.firing{background:#5c1a1a;color:#ffb3ad}.badge.resolved{background:#1a3d24;color:#9be9a8}\
.banner{margin:14px 20px 0;padding:10px 14px;border-radius:6px}\
.banner.error{background:#3d1418;border:1px solid #8e1519;color:#ffb3ad}\
.login{max-width:340px;margin:12vh auto;background:#161c23;border:1px solid #28313b;border-radius:8px;padding:24px}\
.login h1{font-size:20px;margin:0 0 8px}\
.login label{display:block;margin:10px 0 4px;color:#aeb9c4}\
.login input{width:100%;padding:7px 9px;background:#0f1419;color:#d8dee4;border:1px solid #3a4653;border-radius:4px;font:inherit}\
.login button{margin-top:16px;width:100%}\
.login .error{color:#ffb3ad}\
.note{color:#8b97a3;font-style:italic;padding:6px 0;margin:0}\
a{color:#58a6ff}\
nav{display:flex;gap:12px}\
form.search{display:flex;flex-wrap:wrap;gap:8px;align-items:end;margin:0}\
form.search label{display:flex;flex-direction:column;gap:2px;color:#8b97a3;font-size:12px}\
form.search input,form.search select{background:#0f1419;color:#d8dee4;border:1px solid #3a4653;border-radius:4px;padding:5px 7px;font:inherit}\
form.search input[type=text]{min-width:280px}\
td.line{font-family:\"DejaVu Sans Mono\",monospace;font-size:12px;white-space:pre-wrap;word-break:break-all}\
td.when{white-space:nowrap}\
";

/// The Content-Security-Policy of every response: nothing may load, only the inline
/// stylesheet above (by hash) applies, forms post only here, no framing.
pub fn csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, CSS.as_bytes());
        let hash = base64::engine::general_purpose::STANDARD.encode(d.as_ref());
        format!(
            "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'"
        )
    })
}

fn head(out: &mut String, title: &str, refresh: Option<Duration>) {
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
    );
    if let Some(r) = refresh {
        let _ = write!(
            out,
            "<meta http-equiv=\"refresh\" content=\"{}\">",
            r.as_secs().max(1)
        );
    }
    let _ = write!(
        out,
        "<title>{}</title><style>{CSS}</style></head>",
        escape(title)
    );
}

/// The login page; `message` explains a refused attempt.
pub fn login(title: &str, message: Option<&str>, user: &str) -> String {
    let mut out = String::with_capacity(4096);
    head(&mut out, &format!("{title} · log in"), None);
    let _ = write!(
        out,
        "<body><form class=\"login\" method=\"post\" action=\"/login\">\
         <h1>{}</h1><p class=\"muted\">Monitoring dashboard</p>",
        escape(title)
    );
    if let Some(m) = message {
        let _ = write!(
            out,
            "<p class=\"error\" id=\"login-error\">{}</p>",
            escape(m)
        );
    }
    let _ = write!(
        out,
        "<label for=\"user\">User</label>\
         <input id=\"user\" name=\"user\" autocomplete=\"username\" required value=\"{}\">\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Log in</button></form></body></html>",
        escape(user)
    );
    out
}

/// A line's legend name: the `instance` label, else the other labels (but `job`, which
/// every recording rule keeps), else `fallback`.
fn line_name(labels: &BTreeMap<String, String>, fallback: &str) -> String {
    if let Some(i) = labels.get("instance") {
        return i.clone();
    }
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "__name__" | "job"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if rest.is_empty() {
        fallback.to_owned()
    } else {
        format!("{fallback} {{{}}}", rest.join(", "))
    }
}

fn lines(series: &[Series], fallback: &str) -> Vec<Line> {
    let mut out: Vec<Line> = series
        .iter()
        .map(|s| Line {
            name: line_name(&s.labels, fallback),
            points: s.points.clone(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// One chart panel from the queries `ids` (with the legend name used when a series has
/// no distinguishing label).
fn chart_panel(
    out: &mut String,
    snap: &Snapshot,
    id: &str,
    title: &str,
    unit: Unit,
    queries: &[(&str, &str)],
) {
    let mut all = Vec::new();
    let mut reason = None;
    for (q, name) in queries {
        all.extend(lines(snap.series(q), name));
        if let Some(e) = snap.error(q) {
            reason.get_or_insert_with(|| e.to_string());
        }
    }
    let chart = Chart {
        title: title.to_owned(),
        unit,
        start: snap.start,
        end: snap.end,
        step: snap.step,
        lines: all,
        no_data_reason: reason,
    };
    let _ = write!(
        out,
        "<section class=\"panel\" id=\"panel-{id}\"><h2>{}</h2>{}</section>",
        escape(title),
        svg::render(&chart)
    );
}

/// The latest value of each instance in query `id`.
fn latest_by_instance(snap: &Snapshot, id: &str) -> BTreeMap<String, f64> {
    snap.series(id)
        .iter()
        .filter_map(|s| {
            let v = svg::last_value(&s.points)?;
            Some((s.labels.get("instance").cloned().unwrap_or_default(), v))
        })
        .collect()
}

fn note(out: &mut String, snap: &Snapshot, ids: &[&str], what: &str) {
    let why = ids
        .iter()
        .find_map(|id| snap.error(id))
        .map(|e| format!(" ({e})"))
        .unwrap_or_default();
    let _ = write!(
        out,
        "<p class=\"note\">no data: {}{}</p>",
        escape(what),
        escape(&why)
    );
}

fn backends_panel(out: &mut String, snap: &Snapshot) {
    out.push_str("<section class=\"panel\" id=\"panel-backends\"><h2>Load balancer backends</h2>");
    let mut rows: Vec<(String, String, f64)> = snap
        .series("backend_up")
        .iter()
        .filter_map(|s| {
            Some((
                s.labels.get("instance").cloned().unwrap_or_default(),
                s.labels.get("backend").cloned().unwrap_or_default(),
                svg::last_value(&s.points)?,
            ))
        })
        .collect();
    rows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    if rows.is_empty() {
        note(out, snap, &["backend_up"], "no backend health reported");
    } else {
        out.push_str("<table><tr><th>Load balancer</th><th>Backend</th><th>State</th></tr>");
        for (lb, backend, v) in rows {
            let (class, word) = if v >= 1.0 {
                ("ok", "up")
            } else {
                ("bad", "down")
            };
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{word}</td></tr>",
                escape(&lb),
                escape(&backend)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

/// The firewalls' drops since each agent started, most first: from which host
/// (`external`: outside the site) to which host and port, each linked to the last
/// day's drop events.
fn drops_panel(out: &mut String, snap: &Snapshot) {
    out.push_str(
        "<section class=\"panel\" id=\"panel-firewall-drops\"><h2>Firewall: dropped packets, since each agent started</h2>",
    );
    let mut rows: Vec<(String, String, String, f64)> = snap
        .series("firewall_drops")
        .iter()
        .filter_map(|s| {
            let l = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
            Some((
                l("src_host"),
                l("instance"),
                l("dport"),
                svg::last_value(&s.points)?,
            ))
        })
        .collect();
    rows.sort_by(|a, b| {
        b.3.total_cmp(&a.3)
            .then_with(|| (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2)))
    });
    if rows.is_empty() {
        note(out, snap, &["firewall_drops"], "no drops logged");
    } else {
        out.push_str(
            "<table><tr><th>From</th><th>To</th><th>Port</th><th>Drops</th><th>Events</th></tr>",
        );
        for (src, host, port, n) in rows {
            let search = crate::logs::Search {
                host: if crate::logs::Search::host_ok(&host) {
                    host.clone()
                } else {
                    String::new()
                },
                service: "firewall".into(),
                text: format!("\"dport\":{port}"),
                range: "24h",
                ..Default::default()
            };
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td>\
                 <td><a href=\"/logs?{}\">logs</a></td></tr>",
                escape(&src),
                escape(&host),
                escape(&port),
                n,
                escape(&search.query_string(false))
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

fn hosts_panel(out: &mut String, snap: &Snapshot) {
    out.push_str("<section class=\"panel\" id=\"panel-hosts\"><h2>Hosts now</h2>");
    let cpu = latest_by_instance(snap, "cpu");
    let mem = latest_by_instance(snap, "memory");
    let disk = latest_by_instance(snap, "disk");
    // With a load-balancer pair: which of the two holds the site's floating address.
    let vrrp = latest_by_instance(snap, "vrrp_master");
    let hosts: BTreeSet<&String> = cpu.keys().chain(mem.keys()).chain(disk.keys()).collect();
    if hosts.is_empty() {
        note(out, snap, &["cpu", "memory", "disk"], "no host metrics");
    } else {
        out.push_str(
            "<table><tr><th>Host</th><th>CPU busy</th><th>Memory used</th><th>Disk used (/)</th>",
        );
        if !vrrp.is_empty() {
            out.push_str("<th>Site address</th>");
        }
        out.push_str("</tr>");
        for h in hosts {
            let cell = |m: &BTreeMap<String, f64>| {
                m.get(h).map_or_else(
                    || "<td class=\"muted\">–</td>".to_owned(),
                    |v| {
                        let class = if *v >= 0.9 { " class=\"bad\"" } else { "" };
                        format!("<td{class}>{}</td>", svg::format_value(*v, Unit::Ratio))
                    },
                )
            };
            let holder = match vrrp.get(h) {
                _ if vrrp.is_empty() => String::new(),
                Some(v) if *v >= 1.0 => "<td class=\"ok\">holds it</td>".to_owned(),
                Some(_) => "<td>standby</td>".to_owned(),
                None => "<td class=\"muted\">–</td>".to_owned(),
            };
            let _ = write!(
                out,
                "<tr><td>{}</td>{}{}{}{holder}</tr>",
                escape(h),
                cell(&cpu),
                cell(&mem),
                cell(&disk)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

fn replication_panel(out: &mut String, snap: &Snapshot) {
    out.push_str("<section class=\"panel\" id=\"panel-replication\"><h2>Database replication</h2>");
    let up = latest_by_instance(snap, "mysql_up");
    let io = latest_by_instance(snap, "io_running");
    let sql = latest_by_instance(snap, "sql_running");
    let lag = latest_by_instance(snap, "lag_now");
    let leader = latest_by_instance(snap, "keeper_leader");
    let epoch = latest_by_instance(snap, "keeper_epoch");
    let semi = latest_by_instance(snap, "keeper_semi_sync");
    let etcd = latest_by_instance(snap, "keeper_etcd");
    let hosts: BTreeSet<&String> = up
        .keys()
        .chain(io.keys())
        .chain(sql.keys())
        .chain(lag.keys())
        .chain(leader.keys())
        .collect();
    if hosts.is_empty() {
        note(
            out,
            snap,
            &["mysql_up", "io_running", "sql_running", "lag_now"],
            "no database health reported",
        );
    } else {
        out.push_str("<table><tr><th>Host</th><th>Role</th><th>Epoch</th><th>Server</th><th>IO thread</th><th>SQL thread</th><th>Lag</th><th>Semi-sync</th><th>etcd</th></tr>");
        for h in hosts {
            let yes_no = |m: &BTreeMap<String, f64>, yes: &str, no: &str| match m.get(h) {
                Some(v) if *v >= 1.0 => format!("<td class=\"ok\">{yes}</td>"),
                Some(_) => format!("<td class=\"bad\">{no}</td>"),
                None => "<td class=\"muted\">–</td>".to_owned(),
            };
            let lag_cell = match lag.get(h) {
                Some(v) => format!("<td>{}</td>", svg::format_value(*v, Unit::Seconds)),
                None => "<td class=\"muted\">–</td>".to_owned(),
            };
            let role = match leader.get(h) {
                Some(v) if *v >= 1.0 => "<td class=\"ok\">primary</td>",
                Some(_) => "<td>replica</td>",
                None => "<td class=\"muted\">–</td>",
            };
            let epoch_cell = match epoch.get(h) {
                Some(v) => format!("<td>{v:.0}</td>"),
                None => "<td class=\"muted\">–</td>".to_owned(),
            };
            // Semi-sync matters on the primary only.
            let semi_cell = match (leader.get(h), semi.get(h)) {
                (Some(l), Some(v)) if *l >= 1.0 && *v >= 1.0 => {
                    "<td class=\"ok\">waits for standby</td>"
                }
                (Some(l), Some(_)) if *l >= 1.0 => "<td class=\"bad\">off</td>",
                _ => "<td class=\"muted\">–</td>",
            };
            let _ = write!(
                out,
                "<tr><td>{}</td>{role}{epoch_cell}{}{}{}{lag_cell}{semi_cell}{}</tr>",
                escape(h),
                yes_no(&up, "up", "down"),
                yes_no(&io, "running", "stopped"),
                yes_no(&sql, "running", "stopped"),
                yes_no(&etcd, "reached", "unreachable"),
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

/// A duration in whole seconds, minutes, hours or days.
fn ago(secs: f64) -> String {
    match secs {
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7200.0 => format!("{:.0} min", s / 60.0),
        s if s < 172_800.0 => format!("{:.0} h", s / 3600.0),
        s => format!("{:.0} d", s / 86400.0),
    }
}

/// The backup host: its last full backup (age, size, duration), the binlog archive's
/// lag, the last verify and the start of the restore window.
fn backups_panel(out: &mut String, snap: &Snapshot) {
    out.push_str("<section class=\"panel\" id=\"panel-backups\"><h2>Backups</h2>");
    let age = latest_by_instance(snap, "backup_age");
    let size = latest_by_instance(snap, "backup_size");
    let took = latest_by_instance(snap, "backup_duration");
    let lag = latest_by_instance(snap, "archive_lag_now");
    let verify = latest_by_instance(snap, "verify_result");
    let window = latest_by_instance(snap, "restore_window_start");
    let hosts: BTreeSet<&String> = age.keys().chain(lag.keys()).chain(window.keys()).collect();
    if hosts.is_empty() {
        note(
            out,
            snap,
            &["backup_age", "archive_lag_now"],
            "no backup host reported",
        );
    } else {
        out.push_str("<table><tr><th>Host</th><th>Last full backup</th><th>Size</th><th>Took</th><th>Binlog archive lag</th><th>Verify</th><th>Restore window from</th></tr>");
        let muted = || "<td class=\"muted\">–</td>".to_owned();
        for h in hosts {
            let age_cell = age.get(h).map_or_else(muted, |v| {
                // A day and an hour: the schedule's day plus slack, as BackupTooOld.
                let class = if *v > 25.0 * 3600.0 {
                    " class=\"bad\""
                } else {
                    ""
                };
                format!("<td{class}>{} ago</td>", ago(*v))
            });
            let size_cell = size
                .get(h)
                .map_or_else(muted, |v| format!("<td>{:.1} MB</td>", v / 1e6));
            let took_cell = took.get(h).map_or_else(muted, |v| {
                format!("<td>{}</td>", svg::format_value(*v, Unit::Seconds))
            });
            let lag_cell = lag.get(h).map_or_else(muted, |v| {
                let class = if *v >= 60.0 { " class=\"bad\"" } else { "" };
                format!("<td{class}>{}</td>", svg::format_value(*v, Unit::Seconds))
            });
            let verify_cell = match verify.get(h) {
                Some(v) if *v >= 1.0 => "<td class=\"ok\">passed</td>".to_owned(),
                Some(_) => "<td class=\"bad\">failed</td>".to_owned(),
                None => muted(),
            };
            let window_cell = window
                .get(h)
                .filter(|v| **v > 0.0)
                .map_or_else(muted, |v| format!("<td>{}</td>", datetime(*v as i64)));
            let _ = write!(
                out,
                "<tr><td>{}</td>{age_cell}{size_cell}{took_cell}{lag_cell}{verify_cell}{window_cell}</tr>",
                escape(h)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

/// `YYYY-MM-DD HH:MM:SS UTC` of Unix seconds.
pub fn datetime(t: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&fmt).ok())
        .map_or_else(|| "–".to_owned(), |s| format!("{s} UTC"))
}

/// Resolved alerts listed on the page (the store may hold more).
const RESOLVED_SHOWN: usize = 50;

/// The search page's link to the logs around an alert: its instance's lines from five
/// minutes before it started to five minutes after it ended (or to `now` while it
/// fires), within the longest span the search takes.
pub fn alert_logs_link(a: &Alert, now: i64) -> String {
    let to = match (a.status, a.ends_at) {
        (Status::Resolved, Some(t)) => t + 300,
        _ => now.max(a.starts_at) + 60,
    };
    let from = (a.starts_at - 300).max(to - crate::logs::MAX_SPAN);
    let search = crate::logs::Search {
        host: a
            .labels
            .get("instance")
            .filter(|i| crate::logs::Search::host_ok(i))
            .cloned()
            .unwrap_or_default(),
        window: Some((from, to)),
        ..Default::default()
    };
    format!("/logs?{}", search.query_string(false))
}

fn alerts_panel(out: &mut String, alerts: &[Alert], now: i64) {
    let firing = alerts.iter().filter(|a| a.status == Status::Firing).count();
    let _ = write!(
        out,
        "<section class=\"panel wide\" id=\"panel-alerts\"><h2>Alerts: {firing} firing</h2>"
    );
    if alerts.is_empty() {
        out.push_str("<p class=\"note\">no alerts received</p></section>");
        return;
    }
    out.push_str(
        "<table id=\"alerts\"><tr><th>State</th><th>Alert</th><th>Severity</th><th>Instance</th>\
         <th>Summary</th><th>Started</th><th>Ended</th><th>Logs</th></tr>",
    );
    let mut resolved = 0;
    for a in alerts {
        if a.status == Status::Resolved {
            resolved += 1;
            if resolved > RESOLVED_SHOWN {
                break;
            }
        }
        let get =
            |m: &BTreeMap<String, String>, k: &str| m.get(k).map(|v| escape(v)).unwrap_or_default();
        let summary = a
            .annotations
            .get("summary")
            .or_else(|| a.annotations.get("description"))
            .map(|v| escape(v))
            .unwrap_or_default();
        let _ = write!(
            out,
            "<tr class=\"alert {status}\" data-fingerprint=\"{fp}\"><td><span class=\"badge {status}\">{status}</span></td>\
             <td>{name}</td><td>{sev}</td><td>{inst}</td><td>{summary}</td><td>{start}</td><td>{end}</td>\
             <td><a class=\"logs-link\" href=\"{logs}\">logs</a></td></tr>",
            status = a.status.as_str(),
            fp = escape(&a.fingerprint),
            name = escape(a.name()),
            sev = get(&a.labels, "severity"),
            inst = get(&a.labels, "instance"),
            start = datetime(a.starts_at),
            end = match (a.status, a.ends_at) {
                (Status::Resolved, Some(t)) => datetime(t),
                _ => String::new(),
            },
            logs = escape(&alert_logs_link(a, now)),
        );
    }
    out.push_str("</table></section>");
}

/// Everything the dashboard page is drawn from.
#[derive(Debug)]
pub struct View<'a> {
    pub title: &'a str,
    pub prometheus: &'a str,
    pub refresh: Duration,
    pub range: Duration,
    pub snapshot: &'a Snapshot,
    pub alerts: &'a [Alert],
}

/// The dashboard page.
pub fn dashboard(v: &View<'_>) -> String {
    let snap = v.snapshot;
    let mut out = String::with_capacity(64 * 1024);
    head(&mut out, v.title, Some(v.refresh));
    let _ = write!(
        out,
        "<body><header><h1>{}</h1><span class=\"meta\" id=\"updated\">updated {} · refreshes every {} s · last {} min</span>\
         <nav><a href=\"/logs\" id=\"nav-logs\">Logs</a></nav>\
         <form method=\"post\" action=\"/logout\"><button type=\"submit\">Log out</button></form></header>",
        escape(v.title),
        datetime(snap.at as i64),
        v.refresh.as_secs(),
        v.range.as_secs() / 60
    );
    if let Some(e) = snap.unreachable() {
        let _ = write!(
            out,
            "<p class=\"banner error\" id=\"prometheus-error\">Prometheus at {} is unreachable: {}. \
             The charts fill in when it answers; alerts below are the dashboard's own record.</p>",
            escape(v.prometheus),
            escape(&e.to_string())
        );
    }
    out.push_str("<main>");
    alerts_panel(&mut out, v.alerts, snap.at as i64);
    chart_panel(
        &mut out,
        snap,
        "qps",
        "Requests per second, total",
        Unit::PerSecond,
        &[("web_qps", "web, all servers"), ("lb_qps", "load balancer")],
    );
    chart_panel(
        &mut out,
        snap,
        "qps-by-server",
        "Requests per second by web server",
        Unit::PerSecond,
        &[("web_qps_by_server", "web")],
    );
    chart_panel(
        &mut out,
        snap,
        "errors",
        "Error ratio (5xx)",
        Unit::Ratio,
        &[("error_ratio", "errors")],
    );
    chart_panel(
        &mut out,
        snap,
        "latency",
        "Latency",
        Unit::Seconds,
        &[("latency_p50", "p50"), ("latency_p99", "p99")],
    );
    chart_panel(
        &mut out,
        snap,
        "waf-blocked",
        "WAF: blocked requests per second",
        Unit::PerSecond,
        &[("waf_blocked", "blocked")],
    );
    chart_panel(
        &mut out,
        snap,
        "waf-families",
        "WAF: top rule families (matches per second)",
        Unit::PerSecond,
        &[("waf_families", "matches")],
    );
    backends_panel(&mut out, snap);
    hosts_panel(&mut out, snap);
    drops_panel(&mut out, snap);
    chart_panel(
        &mut out,
        snap,
        "cpu",
        "CPU busy",
        Unit::Ratio,
        &[("cpu", "cpu")],
    );
    chart_panel(
        &mut out,
        snap,
        "memory",
        "Memory used",
        Unit::Ratio,
        &[("memory", "memory")],
    );
    chart_panel(
        &mut out,
        snap,
        "disk",
        "Disk used (/)",
        Unit::Ratio,
        &[("disk", "disk")],
    );
    chart_panel(
        &mut out,
        snap,
        "db-qps",
        "Database queries per second",
        Unit::PerSecond,
        &[("db_qps", "db")],
    );
    replication_panel(&mut out, snap);
    chart_panel(
        &mut out,
        snap,
        "replication-lag",
        "Replication lag",
        Unit::Seconds,
        &[("replication_lag", "lag")],
    );
    backups_panel(&mut out, snap);
    chart_panel(
        &mut out,
        snap,
        "archive-lag",
        "Binlog archive lag",
        Unit::Seconds,
        &[("archive_lag", "lag")],
    );
    out.push_str("</main></body></html>");
    out
}

/// Everything the log search page is drawn from.
#[derive(Debug)]
pub struct LogsView<'a> {
    pub title: &'a str,
    pub search: &'a crate::logs::Search,
    /// The store's answer; `None` when the search itself was refused or no store is
    /// configured.
    pub found: Option<&'a crate::logs::Found>,
    /// Why there is no answer: a bad parameter, or no store configured.
    pub problem: Option<&'a str>,
    /// The store's URL, for the error banner.
    pub store: &'a str,
    pub tail_refresh: Duration,
    pub now: i64,
}

/// `YYYY-MM-DD HH:MM:SS.mmm` of Unix nanoseconds.
fn datetime_ns(ns: i64) -> String {
    let base = datetime(ns.div_euclid(1_000_000_000));
    let ms = ns.rem_euclid(1_000_000_000) / 1_000_000;
    match base.strip_suffix(" UTC") {
        Some(b) => format!("{b}.{ms:03}"),
        None => base,
    }
}

fn options(out: &mut String, name: &str, label: &str, values: &[String], chosen: &str) {
    let _ = write!(
        out,
        "<label>{label}<select name=\"{name}\" id=\"search-{name}\"><option value=\"\">any</option>"
    );
    let mut values: Vec<&str> = values.iter().map(String::as_str).collect();
    if !chosen.is_empty() && !values.contains(&chosen) {
        values.push(chosen);
    }
    for v in values {
        let sel = if v == chosen { " selected" } else { "" };
        let _ = write!(
            out,
            "<option value=\"{v}\"{sel}>{v}</option>",
            v = escape(v)
        );
    }
    out.push_str("</select></label>");
}

/// The log search page: the filters (host, service, text, range, live tail) as a GET
/// form, and the lines found, newest first. Live tail reloads the page itself.
pub fn logs(v: &LogsView<'_>) -> String {
    let s = v.search;
    let mut out = String::with_capacity(64 * 1024);
    let refresh = s.tail.then_some(v.tail_refresh);
    head(&mut out, &format!("{} · logs", v.title), refresh);
    let _ = write!(
        out,
        "<body><header><h1>{}</h1><span class=\"meta\" id=\"updated\">logs · {}</span>\
         <nav><a href=\"/\" id=\"nav-dashboard\">Dashboard</a></nav>\
         <form method=\"post\" action=\"/logout\"><button type=\"submit\">Log out</button></form></header>",
        escape(v.title),
        if s.tail {
            format!("live tail, refreshes every {} s", v.tail_refresh.as_secs())
        } else {
            format!("searched {}", datetime(v.now))
        }
    );
    let empty = Vec::new();
    let (hosts, services) = v
        .found
        .map_or((&empty, &empty), |f| (&f.hosts, &f.services));
    out.push_str(
        "<main><section class=\"panel wide\" id=\"panel-search\"><h2>Search</h2>\
                  <form class=\"search\" method=\"get\" action=\"/logs\" id=\"search\">",
    );
    options(&mut out, "host", "Host", hosts, &s.host);
    options(&mut out, "service", "Service", services, &s.service);
    let _ = write!(
        out,
        "<label>Text<input type=\"text\" name=\"q\" id=\"search-q\" maxlength=\"{}\" value=\"{}\"></label>",
        crate::logs::MAX_TEXT,
        escape(&s.text)
    );
    out.push_str("<label>Range<select name=\"range\" id=\"search-range\">");
    for (name, _) in crate::logs::RANGES {
        let sel = if *name == s.range && s.window.is_none() {
            " selected"
        } else {
            ""
        };
        let _ = write!(out, "<option value=\"{name}\"{sel}>last {name}</option>");
    }
    out.push_str("</select></label>");
    let checked = if s.tail { " checked" } else { "" };
    let _ = write!(
        out,
        "<label>Live tail<input type=\"checkbox\" name=\"tail\" value=\"1\" id=\"search-tail\"{checked}></label>\
         <button type=\"submit\" id=\"search-go\">Search</button></form>"
    );
    if s.tail {
        let _ = write!(
            out,
            "<p><a href=\"/logs?{}\" id=\"tail-stop\">Stop the tail</a></p>",
            escape(
                &crate::logs::Search {
                    tail: false,
                    ..s.clone()
                }
                .query_string(false)
            )
        );
    } else {
        let _ = write!(
            out,
            "<p><a href=\"/logs?{}\" id=\"tail-start\">Live tail with these filters</a></p>",
            escape(&s.query_string(true))
        );
    }
    out.push_str("</section>");
    if let Some(p) = v.problem {
        let _ = write!(
            out,
            "<p class=\"banner error\" id=\"logs-error\">{}</p>",
            escape(p)
        );
    }
    if let Some(f) = v.found {
        let (from, to) = f.window;
        match &f.entries {
            Err(e) => {
                let _ = write!(
                    out,
                    "<p class=\"banner error\" id=\"logs-error\">The log store at {} did not answer the search: {}</p>",
                    escape(v.store),
                    escape(&e.to_string())
                );
            }
            Ok(entries) => {
                let _ = write!(
                    out,
                    "<section class=\"panel wide\" id=\"panel-lines\"><h2 id=\"lines-found\">{} lines, {} to {}, newest first \
                     <span class=\"muted\">{}</span></h2>",
                    entries.len(),
                    datetime(from),
                    datetime(to),
                    escape(&s.logql())
                );
                if entries.is_empty() {
                    out.push_str("<p class=\"note\">no lines match</p>");
                } else {
                    out.push_str(
                        "<table id=\"log-lines\"><tr><th>Time (UTC)</th><th>Host</th><th>Service</th>\
                         <th>Stream</th><th>Line</th></tr>",
                    );
                    for e in entries {
                        let get = |k: &str| e.labels.get(k).map(|v| escape(v)).unwrap_or_default();
                        let _ = write!(
                            out,
                            "<tr class=\"log-line\"><td class=\"when\">{}</td><td class=\"host\">{}</td>\
                             <td class=\"service\">{}</td><td class=\"stream\">{}</td><td class=\"line\">{}</td></tr>",
                            datetime_ns(e.ts),
                            get("host"),
                            get("service"),
                            get("stream"),
                            escape(&e.line)
                        );
                    }
                    out.push_str("</table>");
                }
                out.push_str("</section>");
            }
        }
    }
    out.push_str("</main></body></html>");
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::data::QUERIES;
    use crate::prom::PromError;

    fn series(labels: &[(&str, &str)], points: &[(f64, f64)]) -> Series {
        Series {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            points: points.to_vec(),
        }
    }

    fn snapshot(results: Vec<(&'static str, Result<Vec<Series>, PromError>)>) -> Snapshot {
        let mut map: HashMap<_, _> = QUERIES.iter().map(|q| (q.id, Ok(vec![]))).collect();
        map.extend(results);
        Snapshot {
            at: 1_700_001_800.0,
            start: 1_700_000_000.0,
            end: 1_700_001_800.0,
            step: 15.0,
            results: map,
        }
    }

    fn view<'a>(snap: &'a Snapshot, alerts: &'a [Alert]) -> View<'a> {
        View {
            title: "rampart",
            prometheus: "http://127.0.0.1:9090",
            refresh: Duration::from_secs(15),
            range: Duration::from_secs(1800),
            snapshot: snap,
            alerts,
        }
    }

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn csp_allows_only_the_inline_stylesheet() {
        let csp = csp();
        assert!(
            csp.starts_with("default-src 'none'; style-src 'sha256-"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe"), "{csp}");
        assert!(!csp.contains("http"), "{csp}");
    }

    #[test]
    fn page_with_data_tables_and_hostile_labels() {
        let t = 1_700_001_785.0;
        let snap = snapshot(vec![
            (
                "web_qps_by_server",
                Ok(vec![
                    series(&[("instance", "web1")], &[(t - 15.0, 10.0), (t, 12.0)]),
                    series(
                        &[("instance", "<b>web2</b>")],
                        &[(t - 15.0, 11.0), (t, 13.0)],
                    ),
                ]),
            ),
            (
                "backend_up",
                Ok(vec![
                    series(&[("instance", "lb1"), ("backend", "web1")], &[(t, 1.0)]),
                    series(&[("instance", "lb1"), ("backend", "web2")], &[(t, 0.0)]),
                ]),
            ),
            (
                "io_running",
                Ok(vec![series(&[("instance", "db2")], &[(t, 0.0)])]),
            ),
            (
                "lag_now",
                Ok(vec![series(&[("instance", "db2")], &[(t, 3.0)])]),
            ),
            (
                "keeper_leader",
                Ok(vec![
                    series(&[("instance", "db1")], &[(t, 1.0)]),
                    series(&[("instance", "db2")], &[(t, 0.0)]),
                ]),
            ),
            (
                "keeper_epoch",
                Ok(vec![series(&[("instance", "db1")], &[(t, 42.0)])]),
            ),
            (
                "keeper_semi_sync",
                Ok(vec![series(&[("instance", "db1")], &[(t, 0.0)])]),
            ),
            (
                "error_ratio",
                Err(PromError::Api {
                    status: 400,
                    error_type: "bad_data".into(),
                    message: "parse error".into(),
                }),
            ),
            (
                "cpu",
                Ok(vec![
                    series(&[("instance", "lb1")], &[(t, 0.25)]),
                    series(&[("instance", "lb2")], &[(t, 0.5)]),
                    series(&[("instance", "web1")], &[(t, 0.5)]),
                ]),
            ),
            (
                "vrrp_master",
                Ok(vec![
                    series(&[("instance", "lb1")], &[(t, 0.0)]),
                    series(&[("instance", "lb2")], &[(t, 1.0)]),
                ]),
            ),
            ("waf_blocked", Ok(vec![series(&[], &[(t, 2.5)])])),
            (
                "waf_families",
                Ok(vec![
                    series(&[("family", "sqli")], &[(t, 2.0)]),
                    series(&[("family", "xss")], &[(t, 0.5)]),
                ]),
            ),
            (
                "backup_age",
                Ok(vec![series(
                    &[("instance", "backup")],
                    &[(t, 26.0 * 3600.0)],
                )]),
            ),
            (
                "backup_size",
                Ok(vec![series(&[("instance", "backup")], &[(t, 7_340_000.0)])]),
            ),
            (
                "backup_duration",
                Ok(vec![series(&[("instance", "backup")], &[(t, 4.5)])]),
            ),
            (
                "archive_lag_now",
                Ok(vec![series(&[("instance", "backup")], &[(t, 0.0)])]),
            ),
            (
                "verify_result",
                Ok(vec![series(&[("instance", "backup")], &[(t, 0.0)])]),
            ),
            (
                "restore_window_start",
                Ok(vec![series(
                    &[("instance", "backup")],
                    &[(t, 1_699_990_000.0)],
                )]),
            ),
        ]);
        let alerts = [Alert {
            fingerprint: "abc".into(),
            status: Status::Firing,
            labels: BTreeMap::from([
                ("alertname".into(), "BackendDown".into()),
                ("severity".into(), "critical".into()),
                ("instance".into(), "lb1".into()),
            ]),
            annotations: BTreeMap::from([("summary".into(), "<i>web2</i> down".into())]),
            starts_at: 1_700_000_000,
            ends_at: None,
            updated_at: 1_700_000_000,
        }];
        let html = dashboard(&view(&snap, &alerts));
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"15\">"));
        assert!(!html.contains("<b>web2</b>") && html.contains("&lt;b&gt;web2&lt;/b&gt;"));
        assert!(!html.contains("<i>web2</i>"));
        assert!(html.contains("id=\"panel-qps-by-server\"><h2>Requests per second by web server</h2><svg class=\"chart\""));
        // The WAF: blocked requests per second and the top rule families, by name.
        assert!(html.contains("id=\"panel-waf-blocked\"><h2>WAF: blocked requests per second</h2><svg class=\"chart\""));
        assert!(
            html.contains("matches {family=sqli}") && html.contains("matches {family=xss}"),
            "{html}"
        );
        assert!(
            html.contains("<td>web2</td><td class=\"bad\">down</td>"),
            "{html}"
        );
        assert!(html.contains("<td>db2</td><td>replica</td><td class=\"muted\">–</td><td class=\"muted\">–</td><td class=\"bad\">stopped</td><td class=\"muted\">–</td><td>3 s</td>"), "{html}");
        // A primary that does not wait for its standby shows it.
        assert!(
            html.contains("<td>db1</td><td class=\"ok\">primary</td><td>42</td>"),
            "{html}"
        );
        assert!(html.contains("<td class=\"bad\">off</td>"), "{html}");
        // The backup host: a full backup older than a day and an hour, and a failed
        // verify, stand out.
        assert!(
            html.contains("<tr><td>backup</td><td class=\"bad\">26 h ago</td><td>7.3 MB</td><td>4.5 s</td><td>0 s</td><td class=\"bad\">failed</td><td>2023-11-14 19:26:40 UTC</td></tr>"),
            "{html}"
        );
        assert!(html.contains("id=\"panel-archive-lag\"><h2>Binlog archive lag</h2>"));
        // A load-balancer pair: which one holds the site's address.
        assert!(html.contains("<th>Site address</th>"), "{html}");
        assert!(html.contains("<td>lb2</td><td>50%</td><td class=\"muted\">–</td><td class=\"muted\">–</td><td class=\"ok\">holds it</td>"), "{html}");
        assert!(html.contains("<td>lb1</td><td>25%</td><td class=\"muted\">–</td><td class=\"muted\">–</td><td>standby</td>"), "{html}");
        assert!(html.contains("<td>web1</td><td>50%</td><td class=\"muted\">–</td><td class=\"muted\">–</td><td class=\"muted\">–</td>"), "{html}");
        assert!(html
            .contains("id=\"panel-errors\"><h2>Error ratio (5xx)</h2><svg class=\"chart empty\""));
        assert!(
            html.contains(">answered 400: bad_data: parse error</text>"),
            "{html}"
        );
        assert!(html.contains("<span class=\"badge firing\">firing</span></td><td>BackendDown</td><td>critical</td><td>lb1</td>"), "{html}");
        assert!(html.contains("2023-11-14 22:13:20 UTC"));
        assert!(html.contains("Alerts: 1 firing"));
        assert!(!html.contains("prometheus-error"));
        assert!(!html.contains("style=\""), "no inline style attributes");
        assert!(!html.contains("<script"), "no scripts");
    }

    #[test]
    fn drops_panel_lists_who_knocks_where_most_first() {
        let snap = snapshot(vec![(
            "firewall_drops",
            Ok(vec![
                series(
                    &[
                        ("src_host", "client"),
                        ("instance", "lb1"),
                        ("dport", "9100"),
                    ],
                    &[(1.0, 3.0)],
                ),
                series(
                    &[
                        ("src_host", "external"),
                        ("instance", "dns"),
                        ("dport", "22"),
                    ],
                    &[(1.0, 40.0)],
                ),
            ]),
        )]);
        let mut out = String::new();
        drops_panel(&mut out, &snap);
        let dns = out.find("<td>dns</td>").unwrap();
        let lb1 = out.find("<td>lb1</td>").unwrap();
        assert!(dns < lb1, "most first: {out}");
        assert!(
            out.contains("<tr><td>client</td><td>lb1</td><td>9100</td><td>3</td>"),
            "{out}"
        );
        assert!(
            out.contains("href=\"/logs?host=lb1&amp;service=firewall&amp;q=%22dport%22%3A9100&amp;range=24h\""),
            "{out}"
        );
        let empty = snapshot(vec![("firewall_drops", Ok(vec![]))]);
        let mut out = String::new();
        drops_panel(&mut out, &empty);
        assert!(out.contains("no data: no drops logged"), "{out}");
    }

    #[test]
    fn page_when_prometheus_is_down() {
        let err = PromError::Connect {
            addr: "127.0.0.1:9".into(),
            message: "Connection refused (os error 111)".into(),
        };
        let snap = snapshot(QUERIES.iter().map(|q| (q.id, Err(err.clone()))).collect());
        let html = dashboard(&view(&snap, &[]));
        assert!(html.contains("<p class=\"banner error\" id=\"prometheus-error\">Prometheus at http://127.0.0.1:9090 is unreachable: connect to 127.0.0.1:9: Connection refused (os error 111)."), "{html}");
        assert_eq!(html.matches("<svg class=\"chart empty\"").count(), 12);
        assert!(html.contains("id=\"panel-backups\"><h2>Backups</h2><p class=\"note\">no data: no backup host reported"), "{html}");
        assert!(html.contains("no alerts received"));
    }

    #[test]
    fn logs_page_escapes_lines_and_keeps_the_filters() {
        use crate::logs::{Entry, Found, Search};
        let search = Search {
            host: "web1".into(),
            text: "<b>\"x\"".into(),
            ..Default::default()
        };
        let found = Found {
            window: (1_700_000_000, 1_700_003_600),
            entries: Ok(vec![Entry {
                ts: 1_700_000_001_234_000_000,
                labels: BTreeMap::from([
                    ("host".to_owned(), "web1".to_owned()),
                    ("service".to_owned(), "web".to_owned()),
                    ("stream".to_owned(), "access".to_owned()),
                ]),
                line: "<script>alert(1)</script>".into(),
            }]),
            hosts: vec!["lb1".into(), "web1".into()],
            services: vec!["web".into()],
        };
        let view = LogsView {
            title: "rampart",
            search: &search,
            found: Some(&found),
            problem: None,
            store: "https://127.0.0.1:3100",
            tail_refresh: Duration::from_secs(2),
            now: 1_700_003_600,
        };
        let html = logs(&view);
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("<td class=\"line\">&lt;script&gt;alert(1)&lt;/script&gt;</td>"));
        assert!(
            html.contains("<td class=\"when\">2023-11-14 22:13:21.234</td>"),
            "{html}"
        );
        assert!(html.contains("<option value=\"web1\" selected>web1</option>"));
        assert!(html.contains("value=\"&lt;b&gt;&quot;x&quot;\""));
        assert!(html.contains("id=\"lines-found\">1 lines"));
        assert!(!html.contains("http-equiv=\"refresh\""));
        let tail = Search {
            tail: true,
            ..search.clone()
        };
        let html = logs(&LogsView {
            search: &tail,
            ..view
        });
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"2\">"));
        assert!(html.contains("id=\"tail-stop\""));
    }

    #[test]
    fn an_alert_links_to_the_logs_around_it() {
        let mut a = Alert {
            fingerprint: "f".into(),
            status: Status::Resolved,
            labels: BTreeMap::from([("instance".to_owned(), "db1".to_owned())]),
            annotations: BTreeMap::new(),
            starts_at: 10_000,
            ends_at: Some(10_600),
            updated_at: 10_600,
        };
        assert_eq!(
            alert_logs_link(&a, 20_000),
            "/logs?host=db1&from=9700&to=10900"
        );
        a.status = Status::Firing;
        a.ends_at = None;
        a.labels.insert("instance".into(), "db1:9104\"".into());
        assert_eq!(alert_logs_link(&a, 20_000), "/logs?from=9700&to=20060");
    }

    #[test]
    fn login_page() {
        let html = login("rampart", Some("wrong user or password"), "ad\"min");
        assert!(html.contains("<form class=\"login\" method=\"post\" action=\"/login\">"));
        assert!(html.contains("value=\"ad&quot;min\""));
        assert!(html.contains("id=\"login-error\">wrong user or password<"));
        assert!(!html.contains("http-equiv=\"refresh\""));
    }
}

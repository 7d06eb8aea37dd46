//! The monitor host's configuration as text (issue 5): Prometheus's `prometheus.yml`, the
//! recording and alerting rules, and Alertmanager's `alertmanager.yml`. Pure functions of
//! their parameters and a [`MonitorSettings`]; `rampart-infra` writes the files and runs
//! the programs, and `tests/monitor_rules.rs` proves them with `promtool check`,
//! `promtool test rules` and `amtool check-config`.
//!
//! # The metrics the rules read
//!
//! Agents push every series with `instance="<host>"` and a `job`: `accesslog`
//! (`rampart_log_requests_total{service,method,code_class}` and the
//! `rampart_log_request_duration_seconds` histogram, derived from the access logs of the
//! web servers, `service="web"`, and the load balancer, `service="lb"`), `lb`
//! (`rampart_lb_backend_up{backend}`, `rampart_lb_certificate_expiry_timestamp_seconds`),
//! `node` (node_exporter's names), `mysql` (mysqld_exporter's names) and `agent`
//! (`rampart_agent_heartbeat_timestamp_seconds`, whose value is the collection time).
//!
//! # Recording rules
//!
//! Named `level:metric:operations` ([`record`]). Every rate is over one minute
//! ([`RATE_WINDOW`]): the window is part of the names the dashboard queries, so it is not a
//! setting, and a minute holds four samples at the agents' default 15 s interval. The
//! error ratio has no sample when there is no traffic (never NaN) and is 0 when there is
//! traffic but no 5xx; the latency quantiles likewise have no sample without traffic.
//!
//! # Traffic anomaly
//!
//! `job:web_requests:rate1m` is compared with its own recent past, which ends
//! `traffic_baseline_offset` ago so that a burst is not already part of the baseline it
//! is judged against while it ramps up through the rate window:
//! - the z-score `(now - mean) / stddev` over `traffic_baseline_window`, where the
//!   standard deviation is floored at `traffic_min_stddev_ratio` of the mean and at
//!   `traffic_min_stddev_qps`: a steady baseline (a load generator, health checks) has a
//!   standard deviation near zero, and without the floor a 1% wobble would be a z of 10
//!   (and a zero one a division by zero); with it, a z of 3 needs a change of 30%;
//! - the burst rule, `now > traffic_burst_ratio x` the mean over `traffic_burst_window`
//!   ("burst versus the last hour"), which still fires when a noisy baseline makes the
//!   z-score insensitive.
//!
//! Either fires upwards only while the current rate is above `traffic_floor_qps`; the
//! z-score also fires downwards (traffic collapsing) while the baseline mean is above the
//! floor. The floor is what keeps an idle site quiet: the load balancer's health checks
//! alone are 0.5 req/s per web server, and at such rates any ratio is noise.
//!
//! Measured with `promtool test rules` (the cases are in `tests/monitor_rules.rs`): with
//! the fast settings a 5x burst over steady traffic fires 15 s into the burst and resolves
//! 35 s after it ends; traffic starting from idle (health checks) to 11 req/s is itself a
//! change, firing 35 s after it starts and quiet again 2 min 20 s after it started, so an
//! end-to-end test lets steady traffic run that long (or waits for the alert to be
//! inactive) before its burst. With the defaults a sustained 5x burst fires after 2 min
//! 15 s and stays firing about 13 minutes, until the baseline has learnt the new level;
//! the end of a burst that long is then itself a drop against the learnt level.
//!
//! # Settings and why
//!
//! [`MonitorSettings::default`] is production, for agents pushing every 15 s;
//! [`MonitorSettings::fast`] is for end-to-end tests whose agents push every 1-2 s, with
//! windows of minutes and `for:` of seconds. Production defaults (fast in brackets):
//! - `evaluation_interval` 15 s (5 s), `scrape_interval` 15 s (5 s): the agents' interval;
//!   evaluating faster than data arrives buys nothing.
//! - `out_of_order_window` 3 h (3 h): agents buffer up to 2 h on disk during a monitor
//!   outage and must be accepted afterwards; without it Prometheus rejects samples older
//!   than about an hour with 400.
//! - `traffic_baseline_window` 30 m (2 m), `traffic_baseline_offset` 5 m (1 m),
//!   `traffic_burst_window` 1 h (3 m): "the recent past" (120 evaluations, short enough
//!   to follow the daily curve) and "the last hour"; the offset keeps the first minutes of
//!   a burst out of its own baseline so the alert outlives its `for:`.
//! - `traffic_zscore` 3 (3), `traffic_min_stddev_ratio` 0.1 (0.1),
//!   `traffic_min_stddev_qps` 0.5 (0.5), `traffic_burst_ratio` 3 (3),
//!   `traffic_floor_qps` 5 (5): see above; 5 req/s is ten times the health checks of one
//!   web server. `traffic_for` 2 m (10 s): the rate already averages a minute; two more
//!   minutes away from the baseline is a real change, not a blip.
//! - `error_ratio` 5% (5%) for 5 m (10 s): a few failing requests among many is noise, one
//!   in twenty for five minutes is users seeing errors.
//! - `latency_p99_seconds` 1 s (1 s) for 5 m (10 s): a page that takes a second for one
//!   user in a hundred is slow; the 5 m rides out a single slow query.
//! - `backend_down_for` 1 m (10 s): the load balancer already needs three failed checks
//!   (2 s apart) to take a backend out; a minute more skips restarts.
//! - `host_silent_after` 2 m (20 s) with `host_silent_for` 1 m (10 s): eight missed
//!   pushes, then a minute, so a monitor restart (agents then resend their buffers) does not
//!   page. `host_silent_lookback` 24 h (1 h): the alert uses the newest heartbeat within
//!   this window, so it keeps firing after the series goes stale (5 m) for this long.
//! - `replication_stopped_for` 1 m (10 s): a stopped IO or SQL thread does not fix itself;
//!   the minute covers a deliberate restart of the replica.
//! - `replication_lag_seconds` 30 s (30 s) for 2 m (10 s): the web servers already read
//!   from the primary when the replica is over 2 s behind (`database.max_replica_lag`), so
//!   lag shifts load rather than serving stale data; half a minute for two minutes means
//!   the replica cannot keep up, not a burst of writes.
//! - `certificate_expiry_warning` 7 d (7 d) for 10 m (0 s): the run's certificates
//!   live 30 days and renew at 20, with 10 left, so a week means renewal has failed
//!   for three days and there is still a week to mend it; the 10 m skips the instant of
//!   a reload.
//! - `disk_prediction_window` 6 h (5 m) for 1 h (10 s): `predict_linear` over six hours
//!   (node-mixin's choice) and an hour of agreement, so a short burst of writes does not
//!   predict a full disk. Filesystems in memory ([`DISK_EXCLUDED_FSTYPES`]) are ignored;
//!   the horizon is [`DISK_FILL_HORIZON`], the alert's name.
//! - `failover_window` 15 m (2 m): DatabaseFailover fires while the leader's epoch
//!   changed within it: a failover or switchover happened, so someone looks at why.
//! - `no_sync_standby_for` 1 m (10 s): the primary has named no synchronous standby, so
//!   writes are asynchronous and no automatic failover is possible; the minute covers a
//!   replica's restart.
//! - `semi_sync_off_for` 30 s (10 s): a standby is named but the primary's semi-sync is
//!   not active: acknowledged writes could be lost. Only the negative control (a
//!   semi-sync timeout) or a manual change does this.
//! - `keeper_etcd_for` 30 s (10 s): a keeper that cannot reach etcd cannot lead or
//!   fail over (a leader demotes itself within its 6 s lease).
//! - `lb_pair_lookback` 1 m (10 s) for 1 m (10 s): LoadBalancerPairDegraded fires when a
//!   site with a load-balancer pair (keepalived state seen within a day) has fewer than
//!   two load balancers in MASTER or BACKUP over the lookback: one is down, silent or in
//!   FAULT (its lb process failed), and the next failure takes the site down.
//! - `backup_max_age` 3 h (5 m) for 10 m (10 s): BackupTooOld fires when the newest
//!   backup of any kind finished longer ago than that: with hourly incrementals, three
//!   missed in a row (the service is down, every database host unreachable, or each
//!   backup failing). Quiet before the first backup: the first full is taken at start.
//! - `archive_lag_max` 5 m (30 s) for 5 m (10 s): BinlogArchiveLagging fires when the
//!   binlog archive has been behind the primary that long: restores cannot reach the
//!   last minutes, and losing both database hosts would lose them.
//! - BackupVerifyFailed fires at once when the last `rampart backup verify` failed: a
//!   backup that does not restore to what the source held is no backup.
//! - AcmeRenewalFailing fires at once when a load balancer's ACME orders failed three
//!   times in a row (with the default back-off, after about seven minutes of failing):
//!   the certificate still serves, and CertificateExpiringSoon follows if nothing
//!   changes.
//! - `group_wait` 10 s (1 s), `group_interval` 1 m (5 s), `repeat_interval` 4 h (1 h):
//!   Alertmanager groups nothing (`group_by: ['...']`): its only receiver is the
//!   dashboard, which records each alert, so each alert is sent on its own and quickly.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The window of every rate in the recording rules (the `1m` of their names).
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// How far ahead `DiskWillFillIn24h` looks (the `24h` of its name).
pub const DISK_FILL_HORIZON: Duration = Duration::from_secs(24 * 3600);
/// Filesystem types `DiskWillFillIn24h` ignores: they live in memory (node_exporter's own
/// exclusions already drop the pseudo filesystems).
pub const DISK_EXCLUDED_FSTYPES: &[&str] = &["tmpfs", "ramfs", "devtmpfs", "overlay", "squashfs"];

/// Names of the recording rules, for the dashboard's queries.
pub mod record {
    /// Web requests/s per web server, from its access log (`instance`, `job`).
    pub const WEB_QPS_BY_INSTANCE: &str = "instance:web_requests:rate1m";
    /// Web requests/s over all web servers (`job`).
    pub const WEB_QPS: &str = "job:web_requests:rate1m";
    /// Load balancer requests/s, from its access log (`job`).
    pub const LB_QPS: &str = "job:lb_requests:rate1m";
    /// Database queries/s per database server (`instance`, `job`).
    pub const DB_QPS_BY_INSTANCE: &str = "instance:mysql_questions:rate1m";
    /// The share of web requests answered 5xx (`job`); no sample without traffic.
    pub const WEB_ERROR_RATIO: &str = "job:web_errors:ratio_rate1m";
    /// Web request latency, median and 99th percentile, in seconds (`job`).
    pub const WEB_P50: &str = "job:web_request_duration_seconds:p50_rate1m";
    pub const WEB_P99: &str = "job:web_request_duration_seconds:p99_rate1m";
    /// The traffic anomaly's baseline: mean and standard deviation of [`WEB_QPS`] over
    /// `traffic_baseline_window` ending `traffic_baseline_offset` ago.
    pub const WEB_QPS_BASELINE_MEAN: &str = "job:web_requests:baseline_mean_rate1m";
    pub const WEB_QPS_BASELINE_STDDEV: &str = "job:web_requests:baseline_stddev_rate1m";
    /// [`WEB_QPS`]'s z-score against that baseline (standard deviation floored).
    pub const WEB_QPS_ZSCORE: &str = "job:web_requests:zscore_rate1m";
    /// Mean of [`WEB_QPS`] over `traffic_burst_window` ending `traffic_baseline_offset`
    /// ago, for the burst rule.
    pub const WEB_QPS_BURST_BASELINE: &str = "job:web_requests:burst_baseline_mean_rate1m";
}

/// Names of the alerts.
pub mod alert {
    pub const TRAFFIC_ANOMALY: &str = "TrafficAnomaly";
    pub const HIGH_ERROR_RATE: &str = "HighErrorRate";
    pub const HIGH_LATENCY_P99: &str = "HighLatencyP99";
    pub const BACKEND_DOWN: &str = "BackendDown";
    pub const HOST_SILENT: &str = "HostSilent";
    pub const REPLICATION_STOPPED: &str = "ReplicationStopped";
    pub const REPLICATION_LAG_HIGH: &str = "ReplicationLagHigh";
    pub const CERTIFICATE_EXPIRING_SOON: &str = "CertificateExpiringSoon";
    pub const DISK_WILL_FILL_IN_24H: &str = "DiskWillFillIn24h";
    pub const DATABASE_FAILOVER: &str = "DatabaseFailover";
    pub const NO_SYNC_STANDBY: &str = "NoSyncStandby";
    pub const SEMI_SYNC_OFF: &str = "SemiSyncOff";
    pub const KEEPER_ETCD_DOWN: &str = "KeeperCannotReachEtcd";
    pub const LB_PAIR_DEGRADED: &str = "LoadBalancerPairDegraded";
    pub const BACKUP_TOO_OLD: &str = "BackupTooOld";
    pub const BINLOG_ARCHIVE_LAGGING: &str = "BinlogArchiveLagging";
    pub const BACKUP_VERIFY_FAILED: &str = "BackupVerifyFailed";
    pub const ACME_RENEWAL_FAILING: &str = "AcmeRenewalFailing";
    /// Every alert, in the order of the rules file.
    pub const ALL: &[&str] = &[
        TRAFFIC_ANOMALY,
        HIGH_ERROR_RATE,
        HIGH_LATENCY_P99,
        BACKEND_DOWN,
        HOST_SILENT,
        REPLICATION_STOPPED,
        REPLICATION_LAG_HIGH,
        CERTIFICATE_EXPIRING_SOON,
        DISK_WILL_FILL_IN_24H,
        DATABASE_FAILOVER,
        NO_SYNC_STANDBY,
        SEMI_SYNC_OFF,
        KEEPER_ETCD_DOWN,
        LB_PAIR_DEGRADED,
        BACKUP_TOO_OLD,
        BINLOG_ARCHIVE_LAGGING,
        BACKUP_VERIFY_FAILED,
        ACME_RENEWAL_FAILING,
    ];
}

/// Every window, threshold and `for:` of the monitor host's rules and routing. The module
/// documentation gives each default and its reason.
#[derive(Clone, Debug, PartialEq)]
pub struct MonitorSettings {
    /// Prometheus's rule evaluation interval.
    pub evaluation_interval: Duration,
    /// Prometheus's interval for scraping itself and Alertmanager.
    pub scrape_interval: Duration,
    /// How old a sample may be and still be accepted out of order.
    pub out_of_order_window: Duration,

    /// The z-score's baseline: this long, ending `traffic_baseline_offset` ago.
    pub traffic_baseline_window: Duration,
    pub traffic_baseline_offset: Duration,
    /// The burst rule's baseline ("the last hour"), ending `traffic_baseline_offset` ago.
    pub traffic_burst_window: Duration,
    /// |z| beyond this is an anomaly.
    pub traffic_zscore: f64,
    /// The z-score's standard deviation is at least this share of the baseline mean...
    pub traffic_min_stddev_ratio: f64,
    /// ...and at least this many req/s.
    pub traffic_min_stddev_qps: f64,
    /// Traffic above this multiple of the burst baseline is a burst.
    pub traffic_burst_ratio: f64,
    /// Below this many web req/s (now, or in the baseline for a drop), nothing pages.
    pub traffic_floor_qps: f64,
    pub traffic_for: Duration,

    /// HighErrorRate: share of web requests answered 5xx.
    pub error_ratio: f64,
    pub error_for: Duration,
    /// HighLatencyP99: 99th percentile of web request latency, seconds.
    pub latency_p99_seconds: f64,
    pub latency_for: Duration,
    pub backend_down_for: Duration,
    /// HostSilent: age of the newest heartbeat that counts as silence.
    pub host_silent_after: Duration,
    /// HostSilent: how far back to look for the newest heartbeat (how long a silent host
    /// keeps firing).
    pub host_silent_lookback: Duration,
    pub host_silent_for: Duration,
    pub replication_stopped_for: Duration,
    /// ReplicationLagHigh: `seconds_behind_master` above this.
    pub replication_lag_seconds: f64,
    pub replication_lag_for: Duration,
    /// CertificateExpiringSoon: time left below this.
    pub certificate_expiry_warning: Duration,
    pub certificate_for: Duration,
    /// DiskWillFillIn24h: the history `predict_linear` extrapolates.
    pub disk_prediction_window: Duration,
    pub disk_for: Duration,
    /// DatabaseFailover: fires while the leader's epoch changed within this window.
    pub failover_window: Duration,
    pub no_sync_standby_for: Duration,
    pub semi_sync_off_for: Duration,
    pub keeper_etcd_for: Duration,
    /// LoadBalancerPairDegraded: a load balancer counts while it reported MASTER or
    /// BACKUP within this lookback.
    pub lb_pair_lookback: Duration,
    pub lb_pair_for: Duration,
    /// BackupTooOld: the newest backup finished longer ago than this.
    pub backup_max_age: Duration,
    pub backup_for: Duration,
    /// BinlogArchiveLagging: the archive behind the primary for longer than this.
    pub archive_lag_max: Duration,
    pub archive_lag_for: Duration,

    /// Alertmanager: wait before the first notification of a new alert.
    pub group_wait: Duration,
    /// Alertmanager: wait before notifying a change (such as resolution) of an alert.
    pub group_interval: Duration,
    /// Alertmanager: resend a still-firing alert this often.
    pub repeat_interval: Duration,
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}
const MINUTE: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

impl Default for MonitorSettings {
    /// Production: agents push every 15 s.
    fn default() -> Self {
        Self {
            evaluation_interval: secs(15),
            scrape_interval: secs(15),
            out_of_order_window: secs(3 * HOUR),
            traffic_baseline_window: secs(30 * MINUTE),
            traffic_baseline_offset: secs(5 * MINUTE),
            traffic_burst_window: secs(HOUR),
            traffic_zscore: 3.0,
            traffic_min_stddev_ratio: 0.1,
            traffic_min_stddev_qps: 0.5,
            traffic_burst_ratio: 3.0,
            traffic_floor_qps: 5.0,
            traffic_for: secs(2 * MINUTE),
            error_ratio: 0.05,
            error_for: secs(5 * MINUTE),
            latency_p99_seconds: 1.0,
            latency_for: secs(5 * MINUTE),
            backend_down_for: secs(MINUTE),
            host_silent_after: secs(2 * MINUTE),
            host_silent_lookback: secs(DAY),
            host_silent_for: secs(MINUTE),
            replication_stopped_for: secs(MINUTE),
            replication_lag_seconds: 30.0,
            replication_lag_for: secs(2 * MINUTE),
            certificate_expiry_warning: secs(7 * DAY),
            certificate_for: secs(10 * MINUTE),
            disk_prediction_window: secs(6 * HOUR),
            disk_for: secs(HOUR),
            failover_window: secs(15 * MINUTE),
            no_sync_standby_for: secs(MINUTE),
            semi_sync_off_for: secs(30),
            keeper_etcd_for: secs(30),
            lb_pair_lookback: secs(MINUTE),
            lb_pair_for: secs(MINUTE),
            backup_max_age: secs(3 * HOUR),
            backup_for: secs(10 * MINUTE),
            archive_lag_max: secs(5 * MINUTE),
            archive_lag_for: secs(5 * MINUTE),
            group_wait: secs(10),
            group_interval: secs(MINUTE),
            repeat_interval: secs(4 * HOUR),
        }
    }
}

impl MonitorSettings {
    /// For end-to-end tests whose agents push every 1-2 s: baselines of minutes, `for:` of
    /// seconds, the same thresholds. A 5x burst over steady traffic fires TrafficAnomaly
    /// 15 s into the burst and resolves 35 s after it; a stopped replica fires
    /// ReplicationStopped 10-15 s after the agent reports it.
    pub fn fast() -> Self {
        Self {
            evaluation_interval: secs(5),
            scrape_interval: secs(5),
            traffic_baseline_window: secs(2 * MINUTE),
            traffic_baseline_offset: secs(MINUTE),
            traffic_burst_window: secs(3 * MINUTE),
            traffic_for: secs(10),
            error_for: secs(10),
            latency_for: secs(10),
            backend_down_for: secs(10),
            host_silent_after: secs(20),
            host_silent_lookback: secs(HOUR),
            host_silent_for: secs(10),
            replication_stopped_for: secs(10),
            replication_lag_for: secs(10),
            certificate_for: Duration::ZERO,
            disk_prediction_window: secs(5 * MINUTE),
            disk_for: secs(10),
            failover_window: secs(2 * MINUTE),
            no_sync_standby_for: secs(10),
            semi_sync_off_for: secs(10),
            keeper_etcd_for: secs(10),
            lb_pair_lookback: secs(10),
            lb_pair_for: secs(10),
            backup_max_age: secs(5 * MINUTE),
            backup_for: secs(10),
            archive_lag_max: secs(30),
            archive_lag_for: secs(10),
            group_wait: secs(1),
            group_interval: secs(5),
            repeat_interval: secs(HOUR),
            ..Self::default()
        }
    }
}

/// A duration in Prometheus's notation (`1d12h`, `1m30s`, `500ms`, `0s`); below a
/// millisecond is dropped.
pub fn prom_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if ms >= size {
            let _ = write!(out, "{}{unit}", ms / size);
            ms %= size;
        }
    }
    out
}

/// A number as PromQL reads it.
fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{v}")
    }
}

/// A duration as a number of seconds, for comparisons with `time()` arithmetic.
fn seconds(d: Duration) -> String {
    num(d.as_secs_f64())
}

/// A share as a percentage for annotations (`0.05` → `5%`), to six decimals.
fn percent(v: f64) -> String {
    format!("{}%", num((v * 1e8).round() / 1e6))
}

/// A number of seconds in Prometheus's duration notation, for annotations.
fn secs_text(v: f64) -> String {
    Duration::try_from_secs_f64(v).map_or_else(|_| format!("{}s", num(v)), prom_duration)
}

/// Quotes a string as a YAML double-quoted scalar, which is also a TOML basic string
/// (`render.rs` quotes the services' configs with it).
pub fn yaml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn path_str(p: &Path) -> String {
    yaml_str(&p.to_string_lossy())
}

/// The file name of the operator's `index`th (from 0) extra rules file, listed in the
/// topology file as `source`, beside `rules.yml` on the monitor host:
/// `rules-extra-<index + 1>-<its file name>`, with anything but ASCII letters, digits,
/// `.`, `-` and `_` replaced by `_`. The prefix keeps it apart from every file rampart
/// writes there, and the number apart from another listed file of the same name (the
/// node_exporter mixin's `rules.yaml` and the mysqld_exporter mixin's).
pub fn extra_rules_name(index: usize, source: &str) -> String {
    let base = Path::new(source)
        .file_name()
        .map_or_else(|| "rules.yml".into(), |n| n.to_string_lossy());
    let base: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("rules-extra-{}-{base}", index + 1)
}

/// prometheus.yml: rule evaluation, the rules files (rampart's `rules.yml` first, then
/// the operator's extra ones, `[monitor] rules`), Alertmanager at `alertmanager`
/// (`host:port`, also scraped for its own metrics), the etcd members' metrics listeners
/// (`etcd`, `host:port` each, job `etcd`: the one flow to their port 2381 the firewall
/// allows), and the out-of-order window for the agents' buffered samples. The agents
/// push (remote write), so nothing else is scraped; Prometheus must run with
/// `--web.enable-remote-write-receiver`.
pub fn prometheus_config(
    s: &MonitorSettings,
    rule_files: &[PathBuf],
    alertmanager: &str,
    am_tls: Option<&TlsClient<'_>>,
    etcd: &[String],
) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Rendered by rampart (topology::monitor); rewritten on every start."
    );
    let _ = writeln!(o, "global:");
    let _ = writeln!(o, "  scrape_interval: {}", prom_duration(s.scrape_interval));
    let _ = writeln!(
        o,
        "  evaluation_interval: {}",
        prom_duration(s.evaluation_interval)
    );
    let _ = writeln!(o, "rule_files:");
    for f in rule_files {
        let _ = writeln!(o, "  - {}", path_str(f));
    }
    let am = yaml_str(alertmanager);
    let _ = writeln!(o, "alerting:\n  alertmanagers:");
    let _ = writeln!(o, "    - static_configs:\n        - targets: [{am}]");
    if let Some(tls) = am_tls {
        tls.write(&mut o, "      ");
    }
    let _ = writeln!(
        o,
        "storage:\n  tsdb:\n    out_of_order_time_window: {}",
        prom_duration(s.out_of_order_window)
    );
    let _ = writeln!(o, "scrape_configs:");
    let _ = writeln!(o, "  - job_name: alertmanager");
    let _ = writeln!(o, "    static_configs:\n      - targets: [{am}]");
    if let Some(tls) = am_tls {
        tls.write(&mut o, "    ");
    }
    if !etcd.is_empty() {
        let targets: Vec<String> = etcd.iter().map(|t| yaml_str(t)).collect();
        let _ = writeln!(o, "  - job_name: etcd");
        let _ = writeln!(
            o,
            "    static_configs:\n      - targets: [{}]",
            targets.join(", ")
        );
    }
    o
}

/// How Prometheus reaches Alertmanager over TLS: the CA its certificate chains to and
/// Prometheus's client certificate of the monitoring plane.
#[derive(Clone, Copy, Debug)]
pub struct TlsClient<'a> {
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
}

impl TlsClient<'_> {
    /// `scheme: https` and the `tls_config` block, at `indent`.
    fn write(&self, o: &mut String, indent: &str) {
        let _ = writeln!(o, "{indent}scheme: https");
        let _ = writeln!(o, "{indent}tls_config:");
        let _ = writeln!(o, "{indent}  ca_file: {}", path_str(self.ca));
        let _ = writeln!(o, "{indent}  cert_file: {}", path_str(self.cert));
        let _ = writeln!(o, "{indent}  key_file: {}", path_str(self.key));
    }
}

/// The `--web.config.file` of Prometheus and Alertmanager: TLS with `cert`/`key`, TLS 1.2
/// at least, and every client must present a certificate signed by `client_ca` (the
/// monitoring plane's CA, which signs only the gate's, the dashboard's and
/// Prometheus's). That is their authentication: no password to hash or leak.
pub fn web_config(cert: &Path, key: &Path, client_ca: &Path) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Rendered by rampart (topology::monitor); rewritten on every start."
    );
    let _ = writeln!(o, "tls_server_config:");
    let _ = writeln!(o, "  cert_file: {}", path_str(cert));
    let _ = writeln!(o, "  key_file: {}", path_str(key));
    let _ = writeln!(o, "  client_auth_type: RequireAndVerifyClientCert");
    let _ = writeln!(o, "  client_ca_file: {}", path_str(client_ca));
    let _ = writeln!(o, "  min_version: TLS12");
    o
}

/// alertmanager.yml: every alert to the dashboard's webhook (`webhook_url`), with the
/// bearer token read from `token_file` and the server certificate checked against
/// `ca_file`, resolutions included.
pub fn alertmanager_config(
    s: &MonitorSettings,
    webhook_url: &str,
    token_file: &Path,
    ca_file: &Path,
) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Rendered by rampart (topology::monitor); rewritten on every start."
    );
    let _ = writeln!(o, "route:");
    let _ = writeln!(o, "  receiver: dashboard");
    let _ = writeln!(o, "  group_by: ['...']");
    let _ = writeln!(o, "  group_wait: {}", prom_duration(s.group_wait));
    let _ = writeln!(o, "  group_interval: {}", prom_duration(s.group_interval));
    let _ = writeln!(o, "  repeat_interval: {}", prom_duration(s.repeat_interval));
    let _ = writeln!(o, "receivers:");
    let _ = writeln!(o, "  - name: dashboard");
    let _ = writeln!(o, "    webhook_configs:");
    let _ = writeln!(o, "      - url: {}", yaml_str(webhook_url));
    let _ = writeln!(o, "        send_resolved: true");
    let _ = writeln!(o, "        max_alerts: 0");
    let _ = writeln!(o, "        http_config:");
    let _ = writeln!(o, "          authorization:");
    let _ = writeln!(o, "            type: Bearer");
    let _ = writeln!(o, "            credentials_file: {}", path_str(token_file));
    let _ = writeln!(o, "          tls_config:");
    let _ = writeln!(o, "            ca_file: {}", path_str(ca_file));
    o
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Severity {
    Warning,
    Critical,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug)]
struct Alert {
    name: &'static str,
    expr: String,
    for_: Duration,
    severity: Severity,
    summary: String,
    description: String,
}

/// The recording rules, in dependency order (rules of a group run in order, and a rule
/// sees what the rules before it recorded at the same evaluation).
fn recording_rules(s: &MonitorSettings) -> Vec<(&'static str, String)> {
    use record::*;
    let w = prom_duration(RATE_WINDOW);
    let requests = |service: &str, extra: &str| {
        format!("rate(rampart_log_requests_total{{service=\"{service}\"{extra}}}[{w}])")
    };
    let quantile = |q: &str| {
        format!(
            "histogram_quantile({q}, sum by (job, le) (rate(rampart_log_request_duration_seconds_bucket{{service=\"web\"}}[{w}])))\n\
             and on (job)\n\
             (sum by (job) (rate(rampart_log_request_duration_seconds_count{{service=\"web\"}}[{w}])) > 0)"
        )
    };
    let base = format!(
        "[{}] offset {}",
        prom_duration(s.traffic_baseline_window),
        prom_duration(s.traffic_baseline_offset)
    );
    let burst = format!(
        "[{}] offset {}",
        prom_duration(s.traffic_burst_window),
        prom_duration(s.traffic_baseline_offset)
    );
    let ratio = num(s.traffic_min_stddev_ratio);
    vec![
        (
            WEB_QPS_BY_INSTANCE,
            format!("sum by (job, instance) ({})", requests("web", "")),
        ),
        (WEB_QPS, format!("sum by (job) ({})", requests("web", ""))),
        (LB_QPS, format!("sum by (job) ({})", requests("lb", ""))),
        (
            DB_QPS_BY_INSTANCE,
            format!("sum by (job, instance) (rate(mysql_global_status_questions[{w}]))"),
        ),
        (
            WEB_ERROR_RATIO,
            format!(
                "(\n  sum by (job) ({})\n  or\n  0 * {WEB_QPS}\n)\n/\n({WEB_QPS} > 0)",
                requests("web", ",code_class=\"5xx\"")
            ),
        ),
        (WEB_P50, quantile("0.5")),
        (WEB_P99, quantile("0.99")),
        (WEB_QPS_BASELINE_MEAN, format!("avg_over_time({WEB_QPS}{base})")),
        (
            WEB_QPS_BASELINE_STDDEV,
            format!("stddev_over_time({WEB_QPS}{base})"),
        ),
        (
            WEB_QPS_ZSCORE,
            format!(
                "({WEB_QPS} - {WEB_QPS_BASELINE_MEAN})\n\
                 /\n\
                 clamp_min(\n  {WEB_QPS_BASELINE_STDDEV} > {WEB_QPS_BASELINE_MEAN} * {ratio}\n  or\n  {WEB_QPS_BASELINE_MEAN} * {ratio},\n  {}\n)",
                num(s.traffic_min_stddev_qps)
            ),
        ),
        (
            WEB_QPS_BURST_BASELINE,
            format!("avg_over_time({WEB_QPS}{burst})"),
        ),
    ]
}

fn alert_rules(s: &MonitorSettings) -> Vec<Alert> {
    use record::*;
    use Severity::*;
    let z = num(s.traffic_zscore);
    let floor = num(s.traffic_floor_qps);
    let burst_ratio = num(s.traffic_burst_ratio);
    let fstypes = DISK_EXCLUDED_FSTYPES.join("|");
    let horizon = prom_duration(DISK_FILL_HORIZON);
    vec![
        Alert {
            name: alert::TRAFFIC_ANOMALY,
            expr: format!(
                "{WEB_QPS}\n\
                 and\n\
                 (\n\
                 \x20   (\n\
                 \x20       {WEB_QPS_ZSCORE} > {z}\n\
                 \x20     or\n\
                 \x20       {WEB_QPS} > {burst_ratio} * {WEB_QPS_BURST_BASELINE}\n\
                 \x20   )\n\
                 \x20   and\n\
                 \x20   {WEB_QPS} > {floor}\n\
                 \x20 or\n\
                 \x20   {WEB_QPS_ZSCORE} < -{z}\n\
                 \x20   and\n\
                 \x20   {WEB_QPS_BASELINE_MEAN} > {floor}\n\
                 )"
            ),
            for_: s.traffic_for,
            severity: Warning,
            summary: "Web traffic is anomalous: {{ $value | humanize }} req/s".to_owned(),
            description: format!(
                "Web requests/s are far from their baseline of \
                 {{{{ with printf \"{WEB_QPS_BASELINE_MEAN}{{job='%s'}}\" $labels.job | query }}}}{{{{ . | first | value | humanize }}}}{{{{ end }}}} req/s \
                 (the mean over the {} ending {} ago): a z-score beyond {z}, or more than {burst_ratio}x \
                 the mean over the {} ending {} ago. Judged only above {floor} req/s.",
                prom_duration(s.traffic_baseline_window),
                prom_duration(s.traffic_baseline_offset),
                prom_duration(s.traffic_burst_window),
                prom_duration(s.traffic_baseline_offset),
            ),
        },
        Alert {
            name: alert::HIGH_ERROR_RATE,
            expr: format!("{WEB_ERROR_RATIO} > {}", num(s.error_ratio)),
            for_: s.error_for,
            severity: Critical,
            summary: "{{ $value | humanizePercentage }} of web requests fail".to_owned(),
            description: format!(
                "{{{{ $value | humanizePercentage }}}} of web requests were answered 5xx over the last minute \
                 (threshold {}), according to the web servers' access logs.",
                percent(s.error_ratio)
            ),
        },
        Alert {
            name: alert::HIGH_LATENCY_P99,
            expr: format!("{WEB_P99} > {}", num(s.latency_p99_seconds)),
            for_: s.latency_for,
            severity: Warning,
            summary: "Web p99 latency is {{ $value | humanizeDuration }}".to_owned(),
            description: format!(
                "One web request in a hundred took longer than {{{{ $value | humanizeDuration }}}} over the \
                 last minute (threshold {}), according to the web servers' access logs.",
                secs_text(s.latency_p99_seconds)
            ),
        },
        Alert {
            name: alert::BACKEND_DOWN,
            expr: "rampart_lb_backend_up == 0".to_owned(),
            for_: s.backend_down_for,
            severity: Warning,
            summary: "{{ $labels.backend }} is out of rotation on {{ $labels.instance }}"
                .to_owned(),
            description: "The load balancer {{ $labels.instance }} finds backend \
                          {{ $labels.backend }} unhealthy and sends it no requests; \
                          the other backends carry its share."
                .to_owned(),
        },
        Alert {
            name: alert::HOST_SILENT,
            expr: format!(
                "time() - max_over_time(rampart_agent_heartbeat_timestamp_seconds[{}]) > {}",
                prom_duration(s.host_silent_lookback),
                seconds(s.host_silent_after)
            ),
            for_: s.host_silent_for,
            severity: Critical,
            summary: "{{ $labels.instance }} is silent".to_owned(),
            description: "No heartbeat from the agent on {{ $labels.instance }} for \
                          {{ $value | humanizeDuration }}: the host, its agent or the path \
                          to the monitor is down, and its metrics and alerts are missing."
                .to_owned(),
        },
        Alert {
            name: alert::REPLICATION_STOPPED,
            expr: "mysql_slave_status_slave_io_running == 0\n\
                   or\n\
                   mysql_slave_status_slave_sql_running == 0"
                .to_owned(),
            for_: s.replication_stopped_for,
            severity: Critical,
            summary: "Replication has stopped on {{ $labels.instance }}".to_owned(),
            description: "The replica {{ $labels.instance }} is not replicating (its IO or \
                          SQL thread is not running): it falls behind the primary, and the \
                          web servers read from the primary instead."
                .to_owned(),
        },
        Alert {
            name: alert::REPLICATION_LAG_HIGH,
            expr: format!(
                "mysql_slave_status_seconds_behind_master > {}",
                num(s.replication_lag_seconds)
            ),
            for_: s.replication_lag_for,
            severity: Warning,
            summary: "{{ $labels.instance }} is {{ $value | humanizeDuration }} behind the primary"
                .to_owned(),
            description: format!(
                "The replica {{{{ $labels.instance }}}} is {{{{ $value | humanizeDuration }}}} behind \
                 the primary (threshold {}).",
                secs_text(s.replication_lag_seconds)
            ),
        },
        Alert {
            name: alert::CERTIFICATE_EXPIRING_SOON,
            // What each lb serves (loaded: a renewed file not yet reloaded still warns),
            // and every certificate file any service uses, from each host's agent.
            expr: format!(
                "rampart_lb_certificate_expiry_timestamp_seconds - time() < {w} \
                 or rampart_certificate_expiry_timestamp_seconds - time() < {w}",
                w = seconds(s.certificate_expiry_warning)
            ),
            for_: s.certificate_for,
            severity: Warning,
            summary: "Certificate {{ $labels.name }}{{ $labels.path }} on {{ $labels.instance }} \
                      expires in {{ $value | humanizeDuration }}"
                .to_owned(),
            description: format!(
                "{{{{ if $labels.file }}}}The certificate {{{{ $labels.name }}}} ({{{{ $labels.file }}}}) \
                 served by {{{{ $labels.instance }}}}{{{{ else }}}}The certificate file \
                 {{{{ $labels.path }}}} used on {{{{ $labels.instance }}}}{{{{ end }}}} expires in \
                 {{{{ $value | humanizeDuration }}}} (warning from {}); renewal at two thirds of its \
                 life has not happened: see the renewer's log (`rampart renew`, or the last \
                 `rampart render` and playbook run on real hosts).",
                prom_duration(s.certificate_expiry_warning)
            ),
        },
        Alert {
            name: alert::DISK_WILL_FILL_IN_24H,
            expr: format!(
                "node_filesystem_avail_bytes{{fstype!~\"{fstypes}\"}}\n\
                 and\n\
                 predict_linear(node_filesystem_avail_bytes{{fstype!~\"{fstypes}\"}}[{}], {}) < 0",
                prom_duration(s.disk_prediction_window),
                seconds(DISK_FILL_HORIZON)
            ),
            for_: s.disk_for,
            severity: Warning,
            summary: "{{ $labels.mountpoint }} on {{ $labels.instance }} will fill within a day"
                .to_owned(),
            description: format!(
                "{{{{ $labels.mountpoint }}}} ({{{{ $labels.device }}}}) on {{{{ $labels.instance }}}} \
                 has {{{{ $value | humanize1024 }}}}B free and, at the rate of the last {}, \
                 will be full within {horizon}.",
                prom_duration(s.disk_prediction_window)
            ),
        },
        Alert {
            name: alert::DATABASE_FAILOVER,
            expr: format!(
                "max by (job) (changes(rampart_keeper_epoch[{}])) > 0",
                prom_duration(s.failover_window)
            ),
            for_: Duration::ZERO,
            severity: Warning,
            summary: "The primary database changed".to_owned(),
            description: format!(
                "The leader's epoch changed within the last {}: a failover or a switchover \
                 moved the primary. See `rampart status` for the new primary and why.",
                prom_duration(s.failover_window)
            ),
        },
        Alert {
            name: alert::NO_SYNC_STANDBY,
            expr: "rampart_keeper_is_leader == 1\n\
                   and on (instance)\n\
                   rampart_keeper_sync_standby_named == 0"
                .to_owned(),
            for_: s.no_sync_standby_for,
            severity: Warning,
            summary: "The primary {{ $labels.instance }} has no sync standby".to_owned(),
            description: "No replica is named synchronous standby: writes on \
                          {{ $labels.instance }} are replicated asynchronously and an \
                          automatic failover is impossible until a replica catches up."
                .to_owned(),
        },
        Alert {
            name: alert::SEMI_SYNC_OFF,
            expr: "rampart_keeper_is_leader == 1\n\
                   and on (instance)\n\
                   rampart_keeper_sync_standby_named == 1\n\
                   and on (instance)\n\
                   rampart_keeper_semi_sync_active == 0"
                .to_owned(),
            for_: s.semi_sync_off_for,
            severity: Critical,
            summary: "Semi-sync is off on the primary {{ $labels.instance }}".to_owned(),
            description: "A sync standby is named, but {{ $labels.instance }} does not wait \
                          for its acknowledgements: an acknowledged write could be lost in \
                          a failover."
                .to_owned(),
        },
        Alert {
            name: alert::KEEPER_ETCD_DOWN,
            expr: "rampart_keeper_etcd_up == 0".to_owned(),
            for_: s.keeper_etcd_for,
            severity: Critical,
            summary: "The keeper on {{ $labels.instance }} cannot reach etcd".to_owned(),
            description: "The database keeper on {{ $labels.instance }} cannot read etcd: \
                          it can neither lead nor take over, and a primary demotes itself."
                .to_owned(),
        },
        Alert {
            name: alert::LB_PAIR_DEGRADED,
            expr: format!(
                "(\n\
                 \x20 count(count by (instance) (max_over_time(rampart_vrrp_state{{state=~\"MASTER|BACKUP\"}}[{}]) == 1))\n\
                 \x20 or vector(0)\n\
                 ) < 2\n\
                 and on ()\n\
                 count(max_over_time(rampart_vrrp_master[1d])) > 0",
                prom_duration(s.lb_pair_lookback)
            ),
            for_: s.lb_pair_for,
            severity: Critical,
            summary: "Only {{ $value }} load balancer of the pair can hold the site's address"
                .to_owned(),
            description: "Fewer than two load balancers report keepalived in MASTER or BACKUP: \
                          one is down, silent, or in FAULT because its lb process failed. The \
                          site is up on the other, and the next failure takes it down."
                .to_owned(),
        },
        Alert {
            name: alert::BACKUP_TOO_OLD,
            expr: format!(
                "time() - max by (instance, job) (rampart_backup_last_success_timestamp_seconds) > {}",
                seconds(s.backup_max_age)
            ),
            for_: s.backup_for,
            severity: Critical,
            summary: "The newest backup on {{ $labels.instance }} is {{ $value | humanizeDuration }} old"
                .to_owned(),
            description: format!(
                "No backup finished in {}: the backup service is down, cannot reach a \
                 database host, or every backup fails (rampart backup status says which). \
                 Restores start from an ever older copy.",
                prom_duration(s.backup_max_age)
            ),
        },
        Alert {
            name: alert::BINLOG_ARCHIVE_LAGGING,
            expr: format!(
                "rampart_backup_binlog_archive_lag_seconds > {}",
                seconds(s.archive_lag_max)
            ),
            for_: s.archive_lag_for,
            severity: Critical,
            summary: "The binlog archive on {{ $labels.instance }} is {{ $value | humanizeDuration }} behind the primary"
                .to_owned(),
            description: "The archive does not hold the primary's latest transactions: a \
                          restore cannot reach them, and losing both database hosts would \
                          lose them."
                .to_owned(),
        },
        Alert {
            name: alert::BACKUP_VERIFY_FAILED,
            expr: "rampart_backup_verify_last_result == 0".to_owned(),
            for_: Duration::ZERO,
            severity: Critical,
            summary: "The last backup verify on {{ $labels.instance }} failed".to_owned(),
            description: "Restoring the latest backup and the archive did not reproduce the \
                          source's tables (or could not run): the backups cannot be trusted \
                          until a verify passes."
                .to_owned(),
        },
        Alert {
            name: alert::ACME_RENEWAL_FAILING,
            expr: "rampart_lb_acme_consecutive_failures >= 3".to_owned(),
            for_: Duration::ZERO,
            severity: Warning,
            summary: "ACME orders for the site certificate on {{ $labels.instance }} failed \
                      {{ $value }} times in a row"
                .to_owned(),
            description: "The load balancer cannot get its certificate from the ACME CA \
                          (unreachable, rate-limited, or the HTTP-01 challenge does not \
                          validate; its log names the error). It retries with back-off, and \
                          the current certificate serves until it expires."
                .to_owned(),
        },
    ]
}

/// Writes `expr` as a YAML block literal indented by `indent` spaces.
fn block(o: &mut String, indent: usize, expr: &str) {
    let _ = writeln!(o, "|-");
    for line in expr.lines() {
        let _ = writeln!(o, "{:indent$}{line}", "");
    }
}

/// The rules file: one group, the recording rules then the alerts (each with a `severity`
/// label and `summary` and `description` annotations). One group because its rules run in
/// order at each evaluation, so the alerts see the recordings of the same evaluation;
/// separate groups run in no set order (in Prometheus and in `promtool test rules`).
pub fn rules(s: &MonitorSettings) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Rendered by rampart (topology::monitor); rewritten on every start."
    );
    let _ = writeln!(o, "groups:");
    let _ = writeln!(o, "  - name: rampart\n    rules:");
    for (name, expr) in recording_rules(s) {
        let _ = write!(o, "      - record: {name}\n        expr: ");
        block(&mut o, 10, &expr);
    }
    for a in alert_rules(s) {
        let _ = write!(o, "      - alert: {}\n        expr: ", a.name);
        block(&mut o, 10, &a.expr);
        let _ = writeln!(o, "        for: {}", prom_duration(a.for_));
        let _ = writeln!(o, "        labels:");
        let _ = writeln!(o, "          severity: {}", a.severity.as_str());
        let _ = writeln!(o, "        annotations:");
        let _ = writeln!(o, "          summary: {}", yaml_str(&a.summary));
        let _ = writeln!(o, "          description: {}", yaml_str(&a.description));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_prometheus_notation() {
        fn check(d: Duration, expected: &str) {
            assert_eq!(prom_duration(d), expected, "{d:?}");
        }
        check(Duration::ZERO, "0s");
        check(Duration::from_micros(999), "0s");
        check(Duration::from_millis(500), "500ms");
        check(Duration::from_millis(1500), "1s500ms");
        check(secs(15), "15s");
        check(secs(60), "1m");
        check(secs(90), "1m30s");
        check(secs(3600), "1h");
        check(secs(3 * 3600 + 5), "3h5s");
        check(secs(DAY), "1d");
        check(secs(DAY + 12 * HOUR), "1d12h");
        check(secs(14 * DAY), "14d");
    }

    #[test]
    fn numbers_as_promql_reads_them() {
        fn check(v: f64, expected: &str) {
            assert_eq!(num(v), expected);
        }
        check(3.0, "3");
        check(0.05, "0.05");
        check(-2.5, "-2.5");
        check(1_209_600.0, "1209600");
        check(f64::NAN, "NaN");
        check(f64::INFINITY, "+Inf");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5");
        assert_eq!(percent(0.05), "5%");
        assert_eq!(percent(0.07), "7%");
        assert_eq!(percent(0.125), "12.5%");
        assert_eq!(secs_text(1.5), "1s500ms");
        assert_eq!(secs_text(30.0), "30s");
        assert_eq!(secs_text(f64::INFINITY), "+Infs");
    }

    #[test]
    fn yaml_strings_are_quoted_and_escaped() {
        fn check(s: &str, expected: &str) {
            assert_eq!(yaml_str(s), expected);
        }
        check("plain", r#""plain""#);
        check(r#"a "b" \c"#, r#""a \"b\" \\c""#);
        check("x\ny\tz", r#""x\ny\tz""#);
        check("\u{7}", r#""\u0007""#);
        check("{{ $value }}: #x", r#""{{ $value }}: #x""#);
    }

    #[test]
    fn every_window_and_for_comes_from_the_settings() {
        let s = MonitorSettings::fast();
        let r = rules(&s);
        for needle in [
            "[2m] offset 1m",
            "[3m] offset 1m",
            "[1h]) > 20",
            "[5m], 86400) < 0",
            "for: 10s",
            "for: 0s",
        ] {
            assert!(r.contains(needle), "{needle} missing from:\n{r}");
        }
        assert!(r.contains("time() < 604800"), "{r}");
        let d = rules(&MonitorSettings::default());
        for needle in [
            "[30m] offset 5m",
            "[1h] offset 5m",
            "[1d]) > 120",
            "[6h], 86400) < 0",
        ] {
            assert!(d.contains(needle), "{needle} missing from:\n{d}");
        }
    }

    #[test]
    fn every_alert_has_a_severity_and_both_annotations() {
        for s in [MonitorSettings::default(), MonitorSettings::fast()] {
            let alerts = alert_rules(&s);
            let names: Vec<_> = alerts.iter().map(|a| a.name).collect();
            assert_eq!(names, alert::ALL);
            for a in &alerts {
                assert!(!a.summary.is_empty() && !a.description.is_empty(), "{a:?}");
                assert!(!a.summary.ends_with('.'), "{a:?}");
            }
        }
    }

    #[test]
    fn alertmanager_routes_everything_to_the_dashboard() {
        let text = alertmanager_config(
            &MonitorSettings::fast(),
            "https://198.18.9.2:3000/api/alerts",
            Path::new("/state/secrets/webhook token"),
            Path::new("/state/certs/ca.pem"),
        );
        for needle in [
            "receiver: dashboard",
            "group_wait: 1s",
            "url: \"https://198.18.9.2:3000/api/alerts\"",
            "send_resolved: true",
            "credentials_file: \"/state/secrets/webhook token\"",
            "ca_file: \"/state/certs/ca.pem\"",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }

    #[test]
    fn prometheus_sends_alerts_and_accepts_late_samples() {
        let text = prometheus_config(
            &MonitorSettings::default(),
            &[
                PathBuf::from("/state/hosts/monitor/rules.yml"),
                PathBuf::from("/state/hosts/monitor/rules-extra-1-alerts.yaml"),
            ],
            "127.0.0.1:9093",
            Some(&TlsClient {
                ca: Path::new("/state/certs/ca.pem"),
                cert: Path::new("/state/hosts/monitor/plane-prometheus.pem"),
                key: Path::new("/state/hosts/monitor/plane-prometheus.key"),
            }),
            &["198.18.9.2:2381".into(), "198.18.9.53:2381".into()],
        );
        for needle in [
            "evaluation_interval: 15s",
            "rule_files:\n  - \"/state/hosts/monitor/rules.yml\"\n  - \"/state/hosts/monitor/rules-extra-1-alerts.yaml\"\nalerting:",
            "targets: [\"127.0.0.1:9093\"]",
            "out_of_order_time_window: 3h",
            "targets: [\"127.0.0.1:9093\"]\n      scheme: https\n      tls_config:\n        ca_file: \"/state/certs/ca.pem\"\n        cert_file: \"/state/hosts/monitor/plane-prometheus.pem\"\n",
            "  - job_name: alertmanager\n    static_configs:\n      - targets: [\"127.0.0.1:9093\"]\n    scheme: https\n",
            "  - job_name: etcd\n    static_configs:\n      - targets: [\"198.18.9.2:2381\", \"198.18.9.53:2381\"]\n",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        let without = prometheus_config(
            &MonitorSettings::default(),
            &[PathBuf::from("/r.yml")],
            "127.0.0.1:9093",
            None,
            &[],
        );
        assert!(!without.contains("etcd"), "{without}");
        assert!(!without.contains("https"), "{without}");
    }

    /// Extra rules files get names no file of rampart's has, distinct even when two
    /// listed files share a name, and safe in YAML and on disk.
    #[test]
    fn extra_rules_names_never_collide() {
        for (i, source, want) in [
            (0, "node-mixin/rules.yaml", "rules-extra-1-rules.yaml"),
            (
                4,
                "/srv/mysqld-mixin/rules/rules.yaml",
                "rules-extra-5-rules.yaml",
            ),
            (1, "my rules\"x\".yml", "rules-extra-2-my_rules_x_.yml"),
        ] {
            assert_eq!(extra_rules_name(i, source), want);
        }
    }
}

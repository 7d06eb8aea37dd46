//! The monitor host's rendered configuration against the real tools: `promtool check
//! config`/`check rules` and `amtool check-config` accept it for both settings, and
//! `promtool test rules` runs the recording rules and every alert on synthetic series,
//! proving what each computes, when each alert fires (with its exact labels and
//! annotations) and when it must not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rampart_test_support::client::tool;
use rampart_topology::monitor::{
    alertmanager_config, prom_duration, prometheus_config, rules, web_config, yaml_str,
    MonitorSettings, TlsClient,
};

/// An external tool, or `None` (and a visible skip naming its Debian package).
fn need(name: &str, package: &str) -> Option<PathBuf> {
    let found = tool(name, None);
    if found.is_none() {
        eprintln!("SKIPPED: {name} comes with the Debian package `{package}`");
    }
    found
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

const MIN: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

#[test]
fn rendered_configs_pass_promtool_and_amtool() {
    let Some(promtool) = need("promtool", "prometheus") else {
        return;
    };
    let amtool = need("amtool", "prometheus-alertmanager");
    let dir = tempfile::tempdir().unwrap();
    // Alertmanager on the monitor's loopback (isolated mode) or its own address (local).
    for alertmanager in ["127.0.0.1:9093", "127.0.9.2:9093"] {
        for (name, settings) in [
            ("default", MonitorSettings::default()),
            ("fast", MonitorSettings::fast()),
        ] {
            // A space in the directory proves the paths are quoted.
            let d = dir.path().join(format!("{alertmanager} {name}"));
            std::fs::create_dir_all(&d).unwrap();
            let rules_file = d.join("rules.yml");
            std::fs::write(&rules_file, rules(&settings)).unwrap();
            let config = d.join("prometheus.yml");
            let pki = plane_pki(&d);
            std::fs::write(
                &config,
                prometheus_config(
                    &settings,
                    std::slice::from_ref(&rules_file),
                    alertmanager,
                    Some(&TlsClient {
                        ca: &pki.ca,
                        cert: &pki.client.0,
                        key: &pki.client.1,
                    }),
                    &["127.0.9.2:2381".into(), "127.0.3.53:2381".into()],
                ),
            )
            .unwrap();
            let (ok, out) = run(Command::new(&promtool)
                .args(["check", "rules"])
                .arg(&rules_file));
            assert!(ok, "promtool check rules ({name}):\n{out}");
            assert!(out.contains("SUCCESS: 29 rules found"), "{out}");
            let (ok, out) = run(Command::new(&promtool)
                .args(["check", "config"])
                .arg(&config));
            assert!(ok, "promtool check config ({alertmanager} {name}):\n{out}");
            assert!(out.contains("SUCCESS: 1 rule files found"), "{out}");

            let Some(amtool) = &amtool else { continue };
            let token = d.join("webhook.token");
            let ca = d.join("ca.pem");
            std::fs::write(&token, "secret\n").unwrap();
            std::fs::write(&ca, "").unwrap();
            let am = d.join("alertmanager.yml");
            let url = "https://198.18.9.2:3000/api/alerts";
            std::fs::write(&am, alertmanager_config(&settings, url, &token, &ca)).unwrap();
            let (ok, out) = run(Command::new(amtool).arg("check-config").arg(&am));
            assert!(ok, "amtool check-config ({name}):\n{out}");
            assert!(out.contains("1 receivers"), "{out}");
        }
    }
}

/// The community's rules files as `rampart up` would list them with `[monitor] rules`:
/// `../shared/dashboards` beside the repository (see its README), or `None` and a
/// visible skip.
fn upstream_rules() -> Option<Vec<PathBuf>> {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = repo.join("../shared/dashboards");
    if !dir.is_dir() {
        eprintln!(
            "SKIPPED: {} is absent (the node_exporter and mysqld_exporter mixins' rules)",
            dir.display()
        );
        return None;
    }
    Some(
        [
            "node-mixin/alerts.yaml",
            "node-mixin/rules.yaml",
            "mysqld-mixin/alerts/general.yaml",
            "mysqld-mixin/alerts/galera.yaml",
            "mysqld-mixin/rules/rules.yaml",
        ]
        .iter()
        .map(|f| dir.join(f))
        .collect(),
    )
}

/// `[monitor] rules` with the upstream mixins: written beside `rules.yml` under the
/// names the plan gives them, listed after it, Prometheus's own check accepts the
/// config with every rule of all six files (rampart's 29 and the mixins' 52), for both
/// settings. Two of the files are both `rules.yaml`: the names keep them apart.
#[test]
fn upstream_mixins_load_beside_rampart_rules() {
    let Some(promtool) = need("promtool", "prometheus") else {
        return;
    };
    let Some(upstream) = upstream_rules() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (name, settings) in [
        ("default", MonitorSettings::default()),
        ("fast", MonitorSettings::fast()),
    ] {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let mut files = vec![d.join("rules.yml")];
        std::fs::write(&files[0], rules(&settings)).unwrap();
        for (i, src) in upstream.iter().enumerate() {
            let to = d.join(rampart_topology::monitor::extra_rules_name(
                i,
                &src.display().to_string(),
            ));
            assert!(!files.contains(&to), "{} collides", to.display());
            std::fs::copy(src, &to).unwrap();
            files.push(to);
        }
        let config = d.join("prometheus.yml");
        std::fs::write(
            &config,
            prometheus_config(&settings, &files, "127.0.0.1:9093", None, &[]),
        )
        .unwrap();
        let (ok, out) = run(Command::new(&promtool)
            .args(["check", "config"])
            .arg(&config));
        assert!(ok, "promtool check config ({name}):\n{out}");
        assert!(out.contains("SUCCESS: 6 rule files found"), "{out}");
        let (ok, out) = run(Command::new(&promtool)
            .args(["check", "rules"])
            .args(&files));
        assert!(ok, "promtool check rules ({name}):\n{out}");
        let total: usize = out
            .lines()
            .filter_map(|l| l.trim().strip_prefix("SUCCESS: "))
            .filter_map(|l| l.strip_suffix(" rules found"))
            .map(|n| n.parse::<usize>().unwrap())
            .sum();
        assert_eq!(total, 29 + 52, "{out}");
        println!("{name}: promtool check config: 6 rule files, {total} rules");
    }
}

/// A run's CA with a server certificate, and a plane CA with a client certificate.
struct Pki {
    ca: std::path::PathBuf,
    server: (std::path::PathBuf, std::path::PathBuf),
    plane_ca: std::path::PathBuf,
    client: (std::path::PathBuf, std::path::PathBuf),
}

fn plane_pki(dir: &std::path::Path) -> Pki {
    use rampart_tls::pki::Ca;
    let site = Ca::create(&dir.join("site"), "test CA").unwrap();
    let server = site
        .issue(dir, "monitor", &["127.0.0.1".into()], false)
        .unwrap();
    let plane = Ca::create(&dir.join("plane"), "test plane CA").unwrap();
    let client = plane
        .issue_client(
            dir,
            "plane-prometheus",
            &["prometheus.plane.rampart".into()],
        )
        .unwrap();
    Pki {
        ca: dir.join("site/ca.pem"),
        server: (server.cert, server.key),
        plane_ca: dir.join("plane/ca.pem"),
        client: (client.cert, client.key),
    }
}

/// The web config Prometheus and Alertmanager start with passes Prometheus's own check,
/// and the check is real: a missing client CA fails it.
#[test]
fn web_config_passes_promtool() {
    let Some(promtool) = need("promtool", "prometheus") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pki = plane_pki(dir.path());
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        web_config(&pki.server.0, &pki.server.1, &pki.plane_ca),
    )
    .unwrap();
    let (ok, out) = run(Command::new(&promtool)
        .args(["check", "web-config"])
        .arg(&web));
    assert!(ok, "promtool check web-config:\n{out}");
    let missing = dir.path().join("nowhere.pem");
    std::fs::write(&web, web_config(&pki.server.0, &pki.server.1, &missing)).unwrap();
    let (ok, out) = run(Command::new(&promtool)
        .args(["check", "web-config"])
        .arg(&web));
    assert!(!ok, "a missing client CA passed:\n{out}");
}

/// promtool really validates the sections we rely on: a misspelt key fails the check, so
/// the passing one above means Prometheus 2.42 knows `out_of_order_time_window`.
#[test]
fn promtool_rejects_an_unknown_storage_key() {
    let Some(promtool) = need("promtool", "prometheus") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let settings = MonitorSettings::default();
    let rules_file = dir.path().join("rules.yml");
    std::fs::write(&rules_file, rules(&settings)).unwrap();
    let text = prometheus_config(
        &settings,
        std::slice::from_ref(&rules_file),
        "127.0.0.1:9093",
        None,
        &[],
    )
    .replace("out_of_order_time_window", "out_of_order_window");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, text).unwrap();
    let (ok, out) = run(Command::new(&promtool)
        .args(["check", "config"])
        .arg(&config));
    assert!(!ok && out.contains("out_of_order_window"), "{out}");
}

// ---------------------------------------------------------------------------------------
// promtool unit tests

/// Labels as `(name, value)` pairs.
type Labels<'a> = &'a [(&'a str, &'a str)];

/// One `tests:` entry of a promtool unit-test file.
#[derive(Default)]
struct Case {
    interval: Duration,
    series: Vec<(String, String)>,
    exprs: Vec<ExprTest>,
    alerts: Vec<(Duration, &'static str, Vec<Alert>)>,
}

/// A `promql_expr_test`: the expression, when, and the expected samples.
type ExprTest = (String, Duration, Vec<(String, f64)>);

/// An expected firing alert: its labels (with `severity`) and annotations.
struct Alert {
    labels: Vec<(String, String)>,
    annotations: Vec<(String, String)>,
}

fn alert(labels: Labels, summary: &str, description: &str) -> Alert {
    Alert {
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        annotations: vec![
            ("summary".to_owned(), summary.to_owned()),
            ("description".to_owned(), description.to_owned()),
        ],
    }
}

fn series_name(name: &str, labels: Labels) -> String {
    let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", l.join(","))
}

impl Case {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            ..Self::default()
        }
    }
    fn series(mut self, name: &str, labels: Labels, values: impl Into<String>) -> Self {
        self.series.push((series_name(name, labels), values.into()));
        self
    }
    /// `expr` at `at` has exactly these samples (`name{labels}` or `{labels}`, value).
    fn expect(mut self, expr: &str, at: Duration, samples: &[(&str, f64)]) -> Self {
        let samples = samples.iter().map(|(l, v)| ((*l).to_owned(), *v)).collect();
        self.exprs.push((expr.to_owned(), at, samples));
        self
    }
    /// At `at`, exactly these `name` alerts fire.
    fn alerts(mut self, at: Duration, name: &'static str, firing: Vec<Alert>) -> Self {
        self.alerts.push((at, name, firing));
        self
    }
    fn quiet(self, at: Duration, name: &'static str) -> Self {
        self.alerts(at, name, Vec::new())
    }

    fn yaml(&self, o: &mut String) {
        let _ = writeln!(o, "  - interval: {}", prom_duration(self.interval));
        let _ = writeln!(o, "    input_series:");
        for (series, values) in &self.series {
            let _ = writeln!(o, "      - series: {}", yaml_str(series));
            let _ = writeln!(o, "        values: {}", yaml_str(values));
        }
        let _ = writeln!(o, "    promql_expr_test:");
        for (expr, at, samples) in &self.exprs {
            let _ = writeln!(o, "      - expr: {}", yaml_str(expr));
            let _ = writeln!(o, "        eval_time: {}", prom_duration(*at));
            let _ = writeln!(o, "        exp_samples:");
            for (labels, value) in samples {
                let _ = writeln!(o, "          - labels: {}", yaml_str(labels));
                let _ = writeln!(o, "            value: {value:?}");
            }
        }
        let _ = writeln!(o, "    alert_rule_test:");
        for (at, name, firing) in &self.alerts {
            let _ = writeln!(o, "      - eval_time: {}", prom_duration(*at));
            let _ = writeln!(o, "        alertname: {name}");
            let _ = writeln!(o, "        exp_alerts:");
            for a in firing {
                let _ = writeln!(o, "          - exp_labels:");
                for (k, v) in &a.labels {
                    let _ = writeln!(o, "              {k}: {}", yaml_str(v));
                }
                let _ = writeln!(o, "            exp_annotations:");
                for (k, v) in &a.annotations {
                    let _ = writeln!(o, "              {k}: {}", yaml_str(v));
                }
            }
        }
    }
}

/// Runs `promtool test rules` on `cases` against the rules rendered from `settings`.
fn promtool_test(settings: &MonitorSettings, cases: &[Case]) {
    let Some(promtool) = need("promtool", "prometheus") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), rules(settings)).unwrap();
    let mut o = String::new();
    let _ = writeln!(o, "rule_files: [rules.yml]");
    let _ = writeln!(
        o,
        "evaluation_interval: {}",
        prom_duration(settings.evaluation_interval)
    );
    let _ = writeln!(o, "tests:");
    for c in cases {
        c.yaml(&mut o);
    }
    let test = dir.path().join("test.yml");
    std::fs::write(&test, &o).unwrap();
    let (ok, out) = run(Command::new(&promtool)
        .args(["test", "rules"])
        .arg(&test)
        .current_dir(dir.path()));
    assert!(ok, "promtool test rules failed:\n{out}");
}

/// A counter's values, one per `step` for `n` steps, increasing by `rate(i)` per second
/// during step `i` (the first value is 0).
fn counter(step: Duration, n: usize, rate: impl Fn(usize) -> f64) -> String {
    let mut v = 0.0;
    let mut out = vec!["0".to_owned()];
    for i in 0..n {
        v += rate(i) * step.as_secs_f64();
        out.push(format!("{v}"));
    }
    out.join(" ")
}

/// A counter rising at a piecewise constant rate: `(req/s, how long)` phases.
fn phases(step: Duration, phases: &[(f64, Duration)]) -> String {
    let mut rates = Vec::new();
    for (rate, len) in phases {
        let n = (len.as_secs_f64() / step.as_secs_f64()).round() as usize;
        rates.extend(std::iter::repeat_n(*rate, n));
    }
    counter(step, rates.len(), |i| rates[i])
}

fn requests(instance: &str, service: &str, code: &str) -> Vec<(&'static str, String)> {
    vec![
        ("instance", instance.to_owned()),
        ("job", "accesslog".to_owned()),
        ("service", service.to_owned()),
        ("method", "GET".to_owned()),
        ("code_class", code.to_owned()),
    ]
}

impl Case {
    fn requests(
        self,
        instance: &str,
        service: &str,
        code: &str,
        values: impl Into<String>,
    ) -> Self {
        let labels = requests(instance, service, code);
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.series("rampart_log_requests_total", &labels, values)
    }
    /// Web traffic split evenly between web1 and web2, `(total req/s, how long)`.
    fn web_traffic(self, step: Duration, total: &[(f64, Duration)]) -> Self {
        let half: Vec<_> = total.iter().map(|(r, d)| (r / 2.0, *d)).collect();
        let values = phases(step, &half);
        self.requests("web1", "web", "2xx", values.clone())
            .requests("web2", "web", "2xx", values)
    }
    /// The latency histogram of `instance`: `rate` observations/s, all in the bucket
    /// ending at `upper` (buckets 0.25, 0.5, 1, 2.5, +Inf), for `n` steps.
    fn latency(mut self, instance: &str, step: Duration, n: usize, rate: f64, upper: f64) -> Self {
        let labels = |le: &'static str| {
            vec![
                ("instance", instance),
                ("job", "accesslog"),
                ("service", "web"),
                ("le", le),
            ]
        };
        let name = "rampart_log_request_duration_seconds";
        for le in ["0.25", "0.5", "1", "2.5", "+Inf"] {
            let bound: f64 = le.replace("+Inf", "inf").parse().unwrap();
            let r = if bound >= upper { rate } else { 0.0 };
            self = self.series(
                &format!("{name}_bucket"),
                &labels(le),
                counter(step, n, |_| r),
            );
        }
        let base = [
            ("instance", instance),
            ("job", "accesslog"),
            ("service", "web"),
        ];
        self.series(&format!("{name}_count"), &base, counter(step, n, |_| rate))
            .series(
                &format!("{name}_sum"),
                &base,
                counter(step, n, |_| rate * upper),
            )
    }
}

const ACCESSLOG: &str = "{job=\"accesslog\"}";

#[test]
fn recording_rules_compute_qps_errors_and_latency() {
    let st = s(15);
    let n = 40; // 10 minutes
    let at = s(5 * MIN);
    // web1 and web2 each serve 10 req/s, one of which is a 5xx; lb1 forwards 20 req/s;
    // db1 answers 50 queries/s and db2 30; every request takes between 0.5 and 1 s.
    let busy = Case::new(st)
        .requests("web1", "web", "2xx", counter(st, n, |_| 9.0))
        .requests("web1", "web", "5xx", counter(st, n, |_| 1.0))
        .requests("web2", "web", "2xx", counter(st, n, |_| 9.0))
        .requests("web2", "web", "5xx", counter(st, n, |_| 1.0))
        .requests("lb1", "lb", "2xx", counter(st, n, |_| 20.0))
        .series(
            "mysql_global_status_questions",
            &[("instance", "db1"), ("job", "mysql")],
            counter(st, n, |_| 50.0),
        )
        .series(
            "mysql_global_status_questions",
            &[("instance", "db2"), ("job", "mysql")],
            counter(st, n, |_| 30.0),
        )
        .latency("web1", st, n, 10.0, 1.0)
        .latency("web2", st, n, 10.0, 1.0)
        .expect(
            "instance:web_requests:rate1m",
            at,
            &[
                (
                    "instance:web_requests:rate1m{instance=\"web1\",job=\"accesslog\"}",
                    10.0,
                ),
                (
                    "instance:web_requests:rate1m{instance=\"web2\",job=\"accesslog\"}",
                    10.0,
                ),
            ],
        )
        .expect(
            "job:web_requests:rate1m",
            at,
            &[(&format!("job:web_requests:rate1m{ACCESSLOG}"), 20.0)],
        )
        .expect(
            "job:lb_requests:rate1m",
            at,
            &[(&format!("job:lb_requests:rate1m{ACCESSLOG}"), 20.0)],
        )
        .expect(
            "instance:mysql_questions:rate1m",
            at,
            &[
                (
                    "instance:mysql_questions:rate1m{instance=\"db1\",job=\"mysql\"}",
                    50.0,
                ),
                (
                    "instance:mysql_questions:rate1m{instance=\"db2\",job=\"mysql\"}",
                    30.0,
                ),
            ],
        )
        .expect(
            "job:web_errors:ratio_rate1m",
            at,
            &[(&format!("job:web_errors:ratio_rate1m{ACCESSLOG}"), 0.1)],
        )
        .expect(
            "job:web_request_duration_seconds:p50_rate1m",
            at,
            &[(
                &format!("job:web_request_duration_seconds:p50_rate1m{ACCESSLOG}"),
                0.75,
            )],
        )
        // 0.5 + 0.5 * 0.99, in milliseconds to stay clear of float rounding.
        .expect(
            "round(1000 * job:web_request_duration_seconds:p99_rate1m)",
            at,
            &[(ACCESSLOG, 995.0)],
        );
    // Traffic without errors: the ratio is 0, not missing.
    let clean = Case::new(st)
        .requests("web1", "web", "2xx", counter(st, n, |_| 10.0))
        .expect(
            "job:web_errors:ratio_rate1m",
            at,
            &[(&format!("job:web_errors:ratio_rate1m{ACCESSLOG}"), 0.0)],
        );
    // No traffic at all (counters standing still): QPS 0, and neither an error ratio nor
    // a latency (never NaN).
    let idle = Case::new(st)
        .requests("web1", "web", "2xx", counter(st, n, |_| 0.0))
        .requests("web1", "web", "5xx", counter(st, n, |_| 0.0))
        .latency("web1", st, n, 0.0, 1.0)
        .expect(
            "job:web_requests:rate1m",
            at,
            &[(&format!("job:web_requests:rate1m{ACCESSLOG}"), 0.0)],
        )
        .expect("job:web_errors:ratio_rate1m", at, &[])
        .expect("job:web_request_duration_seconds:p50_rate1m", at, &[])
        .expect("job:web_request_duration_seconds:p99_rate1m", at, &[]);
    promtool_test(&MonitorSettings::default(), &[busy, clean, idle]);
}

// ---------------------------------------------------------------------------------------
// TrafficAnomaly

const TRAFFIC: &str = "TrafficAnomaly";

fn traffic_alert(settings: &MonitorSettings, qps: &str, baseline: &str) -> Alert {
    let d = |d: Duration| prom_duration(d);
    alert(
        &[("job", "accesslog"), ("severity", "warning")],
        &format!("Web traffic is anomalous: {qps} req/s"),
        &format!(
            "Web requests/s are far from their baseline of {baseline} req/s (the mean over the \
             {} ending {} ago): a z-score beyond 3, or more than 3x the mean over the {} ending \
             {} ago. Judged only above 5 req/s.",
            d(settings.traffic_baseline_window),
            d(settings.traffic_baseline_offset),
            d(settings.traffic_burst_window),
            d(settings.traffic_baseline_offset),
        ),
    )
}

/// A deterministic wobble of ±10% around 1, for traffic that is steady but not flat.
fn wobble(i: usize) -> f64 {
    let x = (i as u64).wrapping_mul(2_654_435_761) % 1000;
    0.9 + 0.2 * (x as f64 / 1000.0)
}

#[test]
fn traffic_anomaly_pages_on_bursts_and_drops_but_not_on_steady_or_idle_traffic() {
    let settings = MonitorSettings::default();
    let st = s(15);
    let hour = s(HOUR);
    // Steady 20 req/s with a ±10% wobble for three hours: never an anomaly.
    let steady = Case::new(st)
        .requests("web1", "web", "2xx", counter(st, 720, |i| 10.0 * wobble(i)))
        .requests(
            "web2",
            "web",
            "2xx",
            counter(st, 720, |i| 10.0 * wobble(i + 7)),
        )
        .quiet(s(HOUR), TRAFFIC)
        .quiet(s(90 * MIN), TRAFFIC)
        .quiet(s(2 * HOUR), TRAFFIC)
        .quiet(s(3 * HOUR), TRAFFIC);
    // An idle site (health checks, 1 req/s) that quadruples stays below the floor.
    let idle = Case::new(st)
        .web_traffic(st, &[(1.0, hour), (4.0, s(30 * MIN))])
        .quiet(s(HOUR + 5 * MIN), TRAFFIC)
        .quiet(s(HOUR + 20 * MIN), TRAFFIC);
    // 20 req/s for an hour, a 5x burst for 10 minutes, then 20 again: pending as soon as
    // the rate moves, firing after `for: 2m`, resolved two minutes after the burst.
    let burst = Case::new(st)
        .web_traffic(st, &[(20.0, hour), (100.0, s(10 * MIN)), (20.0, hour)])
        .quiet(s(HOUR), TRAFFIC)
        .quiet(s(HOUR + 2 * MIN), TRAFFIC)
        .alerts(
            s(HOUR + 5 * MIN),
            TRAFFIC,
            vec![traffic_alert(&settings, "100", "20")],
        )
        .alerts(
            s(HOUR + 10 * MIN),
            TRAFFIC,
            // By now the first minutes of the burst are part of the baseline.
            vec![traffic_alert(&settings, "100", "32.23")],
        )
        .quiet(s(HOUR + 12 * MIN), TRAFFIC)
        .quiet(s(HOUR + 30 * MIN), TRAFFIC)
        .quiet(s(2 * HOUR), TRAFFIC);
    // Traffic collapsing from 20 to 2 req/s is an anomaly too (the baseline was busy)...
    let drop = Case::new(st)
        .web_traffic(st, &[(20.0, hour), (2.0, hour)])
        .quiet(s(HOUR + 2 * MIN), TRAFFIC)
        .alerts(
            s(HOUR + 5 * MIN),
            TRAFFIC,
            vec![traffic_alert(&settings, "2", "20")],
        );
    // ...but not from an idle 4 req/s to nothing.
    let idle_drop = Case::new(st)
        .web_traffic(st, &[(4.0, hour), (0.0, hour)])
        .quiet(s(HOUR + 5 * MIN), TRAFFIC)
        .quiet(s(HOUR + 30 * MIN), TRAFFIC);
    // A slow climb (the daily curve: 10 to 30 req/s over three hours) is not a burst.
    let climb = Case::new(st)
        .requests(
            "web1",
            "web",
            "2xx",
            counter(st, 720, |i| 10.0 + 20.0 * i as f64 / 720.0),
        )
        .quiet(s(HOUR), TRAFFIC)
        .quiet(s(2 * HOUR), TRAFFIC)
        .quiet(s(3 * HOUR), TRAFFIC);
    promtool_test(&settings, &[steady, idle, burst, drop, idle_drop, climb]);
}

/// The end-to-end test's scenario with the fast settings: ~10 req/s, a 5x burst for a
/// minute, then ~10 req/s again. The alert fires 15 s into the burst and resolves 35 s
/// after its end (the timings the module documentation gives).
#[test]
fn traffic_anomaly_with_fast_settings_follows_a_one_minute_burst() {
    let settings = MonitorSettings::fast();
    let st = s(5);
    let steady = s(5 * MIN);
    let burst_end = steady + s(MIN);
    let burst = Case::new(st)
        .web_traffic(st, &[(10.0, steady), (50.0, s(MIN)), (10.0, steady)])
        .quiet(steady, TRAFFIC)
        .quiet(steady + s(10), TRAFFIC)
        // A quarter of the one-minute rate window is in the burst.
        .alerts(
            steady + s(15),
            TRAFFIC,
            vec![traffic_alert(&settings, "20", "10")],
        )
        .alerts(
            burst_end,
            TRAFFIC,
            vec![traffic_alert(&settings, "50", "10")],
        )
        .alerts(
            burst_end + s(30),
            TRAFFIC,
            vec![traffic_alert(&settings, "30", "12.8")],
        )
        .quiet(burst_end + s(35), TRAFFIC)
        .quiet(burst_end + s(MIN), TRAFFIC)
        .quiet(burst_end + s(2 * MIN), TRAFFIC)
        .quiet(burst_end + s(4 * MIN), TRAFFIC);
    // Traffic starting on an idle site (health checks only) is itself a change: it fires
    // 35 s after the start and is quiet again 2 min 20 s after it, once the baseline has
    // learnt the new level. An end-to-end test lets steady traffic run that long first.
    let start = s(10 * MIN);
    let onset = Case::new(st)
        .web_traffic(st, &[(1.0, start), (11.0, s(10 * MIN))])
        .quiet(start, TRAFFIC)
        .quiet(start + s(30), TRAFFIC)
        .alerts(
            start + s(35),
            TRAFFIC,
            vec![traffic_alert(&settings, "6.833", "1")],
        )
        .alerts(
            start + s(2 * MIN + 15),
            TRAFFIC,
            vec![traffic_alert(&settings, "11", "4.8")],
        )
        .quiet(start + s(2 * MIN + 20), TRAFFIC)
        .quiet(start + s(5 * MIN), TRAFFIC)
        .quiet(start + s(10 * MIN), TRAFFIC);
    // Below the floor nothing pages, even a 4x jump.
    let idle = Case::new(st)
        .web_traffic(st, &[(1.0, s(10 * MIN)), (4.0, s(5 * MIN))])
        .quiet(s(11 * MIN), TRAFFIC)
        .quiet(s(13 * MIN), TRAFFIC);
    promtool_test(&settings, &[burst, onset, idle]);
}

// ---------------------------------------------------------------------------------------
// The other alerts

#[test]
fn high_error_rate_fires_above_five_percent_of_requests() {
    let st = s(15);
    let n = 80;
    let summary = "10% of web requests fail";
    let description = "10% of web requests were answered 5xx over the last minute (threshold \
                       5%), according to the web servers' access logs.";
    let failing = Case::new(st)
        .requests("web1", "web", "2xx", counter(st, n, |_| 9.0))
        .requests("web1", "web", "5xx", counter(st, n, |_| 1.0))
        .quiet(s(5 * MIN), "HighErrorRate")
        .alerts(
            s(10 * MIN),
            "HighErrorRate",
            vec![alert(
                &[("job", "accesslog"), ("severity", "critical")],
                summary,
                description,
            )],
        );
    let healthy = Case::new(st)
        .requests("web1", "web", "2xx", counter(st, n, |_| 99.0))
        .requests("web1", "web", "5xx", counter(st, n, |_| 1.0))
        .quiet(s(10 * MIN), "HighErrorRate")
        .quiet(s(20 * MIN), "HighErrorRate");
    // A lone 5xx on a site without traffic: no ratio, no page (and no NaN).
    let idle = Case::new(st)
        .requests("web1", "web", "2xx", counter(st, n, |_| 0.0))
        .requests("web1", "web", "5xx", "0x20 1x60")
        .quiet(s(10 * MIN), "HighErrorRate");
    promtool_test(&MonitorSettings::default(), &[failing, healthy, idle]);
}

#[test]
fn high_latency_p99_fires_when_requests_take_over_a_second() {
    let st = s(15);
    let n = 80;
    // All requests between 1 and 2.5 s: p99 = 1 + 1.5 * 0.99.
    let slow = Case::new(st)
        .latency("web1", st, n, 10.0, 2.5)
        .quiet(s(5 * MIN), "HighLatencyP99")
        .alerts(
            s(10 * MIN),
            "HighLatencyP99",
            vec![alert(
                &[("job", "accesslog"), ("severity", "warning")],
                "Web p99 latency is 2.485s",
                "One web request in a hundred took longer than 2.485s over the last minute \
                 (threshold 1s), according to the web servers' access logs.",
            )],
        );
    let fast = Case::new(st)
        .latency("web1", st, n, 10.0, 0.5)
        .quiet(s(10 * MIN), "HighLatencyP99")
        .quiet(s(20 * MIN), "HighLatencyP99");
    promtool_test(&MonitorSettings::default(), &[slow, fast]);
}

#[test]
fn backend_down_names_the_backend_out_of_rotation() {
    let st = s(15);
    let up = |backend| [("instance", "lb1"), ("job", "lb"), ("backend", backend)];
    let case = Case::new(st)
        .series("rampart_lb_backend_up", &up("web1"), "1x20 0x40")
        .series("rampart_lb_backend_up", &up("web2"), "1x60")
        .quiet(s(4 * MIN), "BackendDown")
        .quiet(s(5 * MIN + 30), "BackendDown")
        .alerts(
            s(8 * MIN),
            "BackendDown",
            vec![alert(
                &[
                    ("backend", "web1"),
                    ("instance", "lb1"),
                    ("job", "lb"),
                    ("severity", "warning"),
                ],
                "web1 is out of rotation on lb1",
                "The load balancer lb1 finds backend web1 unhealthy and sends it no requests; \
                 the other backends carry its share.",
            )],
        );
    promtool_test(&MonitorSettings::default(), &[case]);
}

fn silent(instance: &str, age: &str) -> Alert {
    alert(
        &[
            ("instance", instance),
            ("job", "agent"),
            ("severity", "critical"),
        ],
        &format!("{instance} is silent"),
        &format!(
            "No heartbeat from the agent on {instance} for {age}: the host, its agent or the \
             path to the monitor is down, and its metrics and alerts are missing."
        ),
    )
}

#[test]
fn host_silent_fires_when_heartbeats_stop_and_keeps_firing_once_the_series_is_stale() {
    let st = s(15);
    let beat = |instance| [("instance", instance), ("job", "agent")];
    // The heartbeat's value is the collection time; web1's agent stops at 10 minutes,
    // web2's goes on.
    let case = Case::new(st)
        .series(
            "rampart_agent_heartbeat_timestamp_seconds",
            &beat("web1"),
            "0+15x40",
        )
        .series(
            "rampart_agent_heartbeat_timestamp_seconds",
            &beat("web2"),
            "0+15x400",
        )
        .quiet(s(10 * MIN), "HostSilent")
        .quiet(s(13 * MIN), "HostSilent")
        .alerts(s(14 * MIN), "HostSilent", vec![silent("web1", "4m 0s")])
        // Stale after 5 minutes without samples, still firing:
        .alerts(s(40 * MIN), "HostSilent", vec![silent("web1", "30m 0s")])
        .alerts(s(90 * MIN), "HostSilent", vec![silent("web1", "1h 20m 0s")]);
    promtool_test(&MonitorSettings::default(), &[case]);

    // Fast: agents beat every second; silence shows within 30 s.
    let st = s(1);
    let fast = Case::new(st)
        .series(
            "rampart_agent_heartbeat_timestamp_seconds",
            &beat("db1"),
            "0+1x60",
        )
        .quiet(s(MIN + 20), "HostSilent")
        .alerts(s(MIN + 35), "HostSilent", vec![silent("db1", "35s")])
        .alerts(s(20 * MIN), "HostSilent", vec![silent("db1", "19m 0s")]);
    promtool_test(&MonitorSettings::fast(), &[fast]);
}

fn replication_stopped() -> Alert {
    alert(
        &[
            ("instance", "db2"),
            ("job", "mysql"),
            ("severity", "critical"),
        ],
        "Replication has stopped on db2",
        "The replica db2 is not replicating (its IO or SQL thread is not running): it falls \
         behind the primary, and the web servers read from the primary instead.",
    )
}

#[test]
fn replication_stopped_fires_when_either_thread_stops() {
    let st = s(15);
    let db2 = [("instance", "db2"), ("job", "mysql")];
    let io = "mysql_slave_status_slave_io_running";
    let sql = "mysql_slave_status_slave_sql_running";
    let name = "ReplicationStopped";
    let io_stopped = Case::new(st)
        .series(io, &db2, "1x20 0x40")
        .series(sql, &db2, "1x60")
        .quiet(s(5 * MIN), name)
        .alerts(s(7 * MIN), name, vec![replication_stopped()]);
    let sql_stopped = Case::new(st)
        .series(io, &db2, "1x60")
        .series(sql, &db2, "1x20 0x40")
        .alerts(s(7 * MIN), name, vec![replication_stopped()]);
    // STOP SLAVE stops both: one alert, not two with the same labels (an error).
    let both = Case::new(st)
        .series(io, &db2, "1x20 0x40")
        .series(sql, &db2, "1x20 0x40")
        .alerts(s(7 * MIN), name, vec![replication_stopped()]);
    let running = Case::new(st)
        .series(io, &db2, "1x60")
        .series(sql, &db2, "1x60")
        .quiet(s(10 * MIN), name);
    promtool_test(
        &MonitorSettings::default(),
        &[io_stopped, sql_stopped, both, running],
    );

    // Fast: the agent reports every second; the alert fires within 15 s.
    let st = s(1);
    let fast = Case::new(st)
        .series(io, &db2, "1x60 0x60")
        .series(sql, &db2, "1x120")
        .quiet(s(MIN), name)
        .alerts(s(MIN + 15), name, vec![replication_stopped()]);
    promtool_test(&MonitorSettings::fast(), &[fast]);
}

#[test]
fn replication_lag_high_fires_beyond_thirty_seconds() {
    let st = s(15);
    let db2 = [("instance", "db2"), ("job", "mysql")];
    let lag = "mysql_slave_status_seconds_behind_master";
    let name = "ReplicationLagHigh";
    let lagging = Case::new(st)
        .series(lag, &db2, "0x20 120x40")
        .quiet(s(6 * MIN), name)
        .alerts(
            s(8 * MIN),
            name,
            vec![alert(
                &[
                    ("instance", "db2"),
                    ("job", "mysql"),
                    ("severity", "warning"),
                ],
                "db2 is 2m 0s behind the primary",
                "The replica db2 is 2m 0s behind the primary (threshold 30s).",
            )],
        );
    let close = Case::new(st)
        .series(lag, &db2, "5x60")
        .quiet(s(10 * MIN), name);
    promtool_test(&MonitorSettings::default(), &[lagging, close]);
}

#[test]
fn certificate_expiring_soon_warns_two_weeks_ahead() {
    let st = s(MIN);
    let cert = |name, expiry: u64| {
        (
            [
                ("instance", "lb1"),
                ("job", "lb"),
                ("name", name),
                ("file", "/state/certs/site.pem"),
            ],
            format!("{expiry}x60"),
        )
    };
    let (soon, soon_v) = cert("www.foobar.com", 7 * DAY);
    let (later, later_v) = cert("internal", 90 * DAY);
    let name = "CertificateExpiringSoon";
    let case = Case::new(st)
        .series(
            "rampart_lb_certificate_expiry_timestamp_seconds",
            &soon,
            soon_v,
        )
        .series(
            "rampart_lb_certificate_expiry_timestamp_seconds",
            &later,
            later_v,
        )
        // Every certificate file a host's services use, from its agent: MariaDB's soon,
        // the CA much later.
        .series(
            "rampart_certificate_expiry_timestamp_seconds",
            &[
                ("instance", "db1"),
                ("job", "agent"),
                ("path", "/etc/rampart/certs/db1.pem"),
            ],
            format!("{}x60", 3 * DAY),
        )
        .series(
            "rampart_certificate_expiry_timestamp_seconds",
            &[
                ("instance", "db1"),
                ("job", "agent"),
                ("path", "/etc/rampart/certs/ca.pem"),
            ],
            format!("{}x60", 3000 * DAY),
        )
        .quiet(s(5 * MIN), name)
        .alerts(
            s(15 * MIN),
            name,
            vec![alert(
                &[
                    ("file", "/state/certs/site.pem"),
                    ("instance", "lb1"),
                    ("job", "lb"),
                    ("name", "www.foobar.com"),
                    ("severity", "warning"),
                ],
                "Certificate www.foobar.com on lb1 expires in 6d 23h 45m 0s",
                "The certificate www.foobar.com (/state/certs/site.pem) served by lb1 expires in \
                 6d 23h 45m 0s (warning from 7d); renewal at two thirds of its life has not happened: see the \
                 renewer's log (`rampart renew`, or the last `rampart render` and playbook run on \
                 real hosts).",
            ),
            alert(
                &[
                    ("instance", "db1"),
                    ("job", "agent"),
                    ("path", "/etc/rampart/certs/db1.pem"),
                    ("severity", "warning"),
                ],
                "Certificate /etc/rampart/certs/db1.pem on db1 expires in 2d 23h 45m 0s",
                "The certificate file /etc/rampart/certs/db1.pem used on db1 expires in \
                 2d 23h 45m 0s (warning from 7d); renewal at two thirds of its life has not happened: see the \
                 renewer's log (`rampart renew`, or the last `rampart render` and playbook run on \
                 real hosts).",
            )],
        );
    promtool_test(&MonitorSettings::default(), &[case]);
}

#[test]
fn disk_will_fill_in_24h_predicts_from_the_last_six_hours() {
    let st = s(MIN);
    let n = 8 * 60;
    let fs = |device, mountpoint, fstype| {
        [
            ("instance", "db1"),
            ("job", "node"),
            ("device", device),
            ("mountpoint", mountpoint),
            ("fstype", fstype),
        ]
    };
    // Falls 3 GB an hour from 48 GB: full in 16 hours.
    let falling = format!("48000000000-50000000x{n}");
    let name = "DiskWillFillIn24h";
    let case = Case::new(st)
        .series(
            "node_filesystem_avail_bytes",
            &fs("/dev/sda1", "/", "ext4"),
            falling.clone(),
        )
        // The same fall on tmpfs is ignored.
        .series(
            "node_filesystem_avail_bytes",
            &fs("tmpfs", "/run", "tmpfs"),
            falling,
        )
        // A nearly full but flat disk, and one falling 1 GB an hour from 48 GB (48 h).
        .series(
            "node_filesystem_avail_bytes",
            &fs("/dev/sdb1", "/srv", "xfs"),
            format!("2000000000x{n}"),
        )
        .series(
            "node_filesystem_avail_bytes",
            &fs("/dev/sdc1", "/var", "ext4"),
            format!("48000000000-16666666x{n}"),
        )
        .quiet(s(30 * MIN), name)
        .alerts(
            s(7 * HOUR + 30 * MIN),
            name,
            vec![alert(
                &[
                    ("device", "/dev/sda1"),
                    ("fstype", "ext4"),
                    ("instance", "db1"),
                    ("job", "node"),
                    ("mountpoint", "/"),
                    ("severity", "warning"),
                ],
                "/ on db1 will fill within a day",
                "/ (/dev/sda1) on db1 has 23.75GiB free and, at the rate of the last 6h, will \
                 be full within 1d.",
            )],
        );
    promtool_test(&MonitorSettings::default(), &[case]);
}

fn keeper(instance: &'static str) -> [(&'static str, &'static str); 2] {
    [("instance", instance), ("job", "keeper")]
}

#[test]
fn database_failover_fires_while_the_epoch_changed_recently() {
    let st = s(15);
    let name = "DatabaseFailover";
    let changed = Case::new(st)
        .series("rampart_keeper_epoch", &keeper("db1"), "5x20 9x100")
        .series("rampart_keeper_epoch", &keeper("db2"), "5x20 9x100")
        .quiet(s(4 * MIN), name)
        .alerts(
            s(6 * MIN),
            name,
            vec![alert(
                &[("job", "keeper"), ("severity", "warning")],
                "The primary database changed",
                "The leader's epoch changed within the last 15m: a failover or a switchover \
                 moved the primary. See `rampart status` for the new primary and why.",
            )],
        )
        .quiet(s(25 * MIN), name);
    let steady = Case::new(st)
        .series("rampart_keeper_epoch", &keeper("db1"), "5x100")
        .quiet(s(20 * MIN), name);
    promtool_test(&MonitorSettings::default(), &[changed, steady]);
}

#[test]
fn no_sync_standby_and_semi_sync_off_fire_only_on_the_leader() {
    let st = s(15);
    let leader = |i| ("rampart_keeper_is_leader", keeper(i));
    let named = |i| ("rampart_keeper_sync_standby_named", keeper(i));
    let active = |i| ("rampart_keeper_semi_sync_active", keeper(i));
    let series =
        |c: Case, (n, l): (&str, [(&'static str, &'static str); 2]), v: &str| c.series(n, &l, v);
    // db1 leads; its standby goes away at 5 minutes; db2 (a replica) never has one.
    let mut gone = Case::new(st);
    gone = series(gone, leader("db1"), "1x60");
    gone = series(gone, named("db1"), "1x20 0x40");
    gone = series(gone, active("db1"), "1x20 0x40");
    gone = series(gone, leader("db2"), "0x60");
    gone = series(gone, named("db2"), "0x60");
    gone = series(gone, active("db2"), "0x60");
    let gone = gone
        .quiet(s(5 * MIN), "NoSyncStandby")
        .alerts(
            s(7 * MIN),
            "NoSyncStandby",
            vec![alert(
                &[
                    ("instance", "db1"),
                    ("job", "keeper"),
                    ("severity", "warning"),
                ],
                "The primary db1 has no sync standby",
                "No replica is named synchronous standby: writes on db1 are replicated \
                 asynchronously and an automatic failover is impossible until a replica \
                 catches up.",
            )],
        )
        .quiet(s(7 * MIN), "SemiSyncOff");
    // A standby is named, but semi-sync falls back (the negative control's timeout).
    let mut off = Case::new(st);
    off = series(off, leader("db1"), "1x60");
    off = series(off, named("db1"), "1x60");
    off = series(off, active("db1"), "1x20 0x40");
    let off = off
        .quiet(s(5 * MIN), "SemiSyncOff")
        .alerts(
            s(7 * MIN),
            "SemiSyncOff",
            vec![alert(
                &[
                    ("instance", "db1"),
                    ("job", "keeper"),
                    ("severity", "critical"),
                ],
                "Semi-sync is off on the primary db1",
                "A sync standby is named, but db1 does not wait for its acknowledgements: an \
                 acknowledged write could be lost in a failover.",
            )],
        )
        .quiet(s(7 * MIN), "NoSyncStandby");
    promtool_test(&MonitorSettings::default(), &[gone, off]);
}

#[test]
fn a_keeper_that_cannot_reach_etcd_pages() {
    let st = s(15);
    let name = "KeeperCannotReachEtcd";
    let case = Case::new(st)
        .series("rampart_keeper_etcd_up", &keeper("db2"), "1x20 0x20 1x20")
        .series("rampart_keeper_etcd_up", &keeper("db1"), "1x60")
        .quiet(s(5 * MIN), name)
        .alerts(
            s(6 * MIN),
            name,
            vec![alert(
                &[
                    ("instance", "db2"),
                    ("job", "keeper"),
                    ("severity", "critical"),
                ],
                "The keeper on db2 cannot reach etcd",
                "The database keeper on db2 cannot read etcd: it can neither lead nor take \
                 over, and a primary demotes itself.",
            )],
        )
        .quiet(s(11 * MIN), name);
    promtool_test(&MonitorSettings::default(), &[case]);
}

fn vrrp(instance: &'static str, state: &'static str) -> [(&'static str, &'static str); 3] {
    [
        ("instance", instance),
        ("job", "keepalived"),
        ("state", state),
    ]
}

/// A pair whose BACKUP goes silent for ten minutes pages once the lookback has passed
/// and stops when it is back; a site with one load balancer (no keepalived series) never
/// does.
#[test]
fn a_load_balancer_pair_down_to_one_pages() {
    let st = s(15);
    let name = "LoadBalancerPairDegraded";
    let job = |i: &'static str| [("instance", i), ("job", "keepalived")];
    let pair = Case::new(st)
        .series("rampart_vrrp_state", &vrrp("lb1", "MASTER"), "1x80")
        .series("rampart_vrrp_state", &vrrp("lb1", "BACKUP"), "0x80")
        .series("rampart_vrrp_master", &job("lb1"), "1x80")
        .series(
            "rampart_vrrp_state",
            &vrrp("lb2", "MASTER"),
            "0x20 _x40 0x20",
        )
        .series(
            "rampart_vrrp_state",
            &vrrp("lb2", "BACKUP"),
            "1x20 _x40 1x20",
        )
        .series("rampart_vrrp_master", &job("lb2"), "0x20 _x40 0x20")
        .quiet(s(5 * MIN), name)
        .alerts(
            s(10 * MIN),
            name,
            vec![alert(
                &[("severity", "critical")],
                "Only 1 load balancer of the pair can hold the site's address",
                "Fewer than two load balancers report keepalived in MASTER or BACKUP: one is \
                 down, silent, or in FAULT because its lb process failed. The site is up on \
                 the other, and the next failure takes it down.",
            )],
        )
        .quiet(s(18 * MIN), name);
    let single = Case::new(st)
        .series(
            "rampart_agent_heartbeat_timestamp_seconds",
            &job("lb1"),
            "0+15x80",
        )
        .quiet(s(10 * MIN), name);
    promtool_test(&MonitorSettings::default(), &[pair, single]);
}

/// BackupTooOld pages once the newest backup is older than three hours (for ten
/// minutes); BinlogArchiveLagging once the archive has been five minutes behind for five
/// minutes; BackupVerifyFailed as soon as a verify fails, and stops once one passes.
#[test]
fn backups_too_old_archive_lagging_and_verify_failing_page() {
    let st = s(60);
    let backup = [("instance", "backup"), ("job", "backup")];
    let labels = [
        ("instance", "backup"),
        ("job", "backup"),
        ("severity", "critical"),
    ];
    // The last backup finished at time 0; nothing since.
    let old = Case::new(st)
        .series(
            "rampart_backup_last_success_timestamp_seconds",
            &[("instance", "backup"), ("job", "backup"), ("kind", "full")],
            "0x300",
        )
        .quiet(s(3 * 3600 + 5 * MIN), "BackupTooOld")
        .alerts(
            s(3 * 3600 + 15 * MIN),
            "BackupTooOld",
            vec![alert(
                &labels,
                "The newest backup on backup is 3h 15m 0s old",
                "No backup finished in 3h: the backup service is down, cannot reach a \
                 database host, or every backup fails (rampart backup status says which). \
                 Restores start from an ever older copy.",
            )],
        );
    // Fresh backups every hour: never.
    let fresh = Case::new(st)
        .series(
            "rampart_backup_last_success_timestamp_seconds",
            &[
                ("instance", "backup"),
                ("job", "backup"),
                ("kind", "incremental"),
            ],
            "0x59 3600x59 7200x59 10800x59 14400x59",
        )
        .quiet(s(4 * 3600 + 30 * MIN), "BackupTooOld");
    let lag = Case::new(st)
        .series(
            "rampart_backup_binlog_archive_lag_seconds",
            &backup,
            "0x10 600x20 0x10",
        )
        .quiet(s(12 * MIN), "BinlogArchiveLagging")
        .alerts(
            s(20 * MIN),
            "BinlogArchiveLagging",
            vec![alert(
                &labels,
                "The binlog archive on backup is 10m 0s behind the primary",
                "The archive does not hold the primary's latest transactions: a restore \
                 cannot reach them, and losing both database hosts would lose them.",
            )],
        )
        .quiet(s(35 * MIN), "BinlogArchiveLagging");
    let verify = Case::new(st)
        .series(
            "rampart_backup_verify_last_result",
            &backup,
            "1x10 0x10 1x10",
        )
        .quiet(s(9 * MIN), "BackupVerifyFailed")
        .alerts(
            s(15 * MIN),
            "BackupVerifyFailed",
            vec![alert(
                &labels,
                "The last backup verify on backup failed",
                "Restoring the latest backup and the archive did not reproduce the source's \
                 tables (or could not run): the backups cannot be trusted until a verify \
                 passes.",
            )],
        )
        .quiet(s(25 * MIN), "BackupVerifyFailed");
    promtool_test(&MonitorSettings::default(), &[old, fresh, lag, verify]);
}

/// AcmeRenewalFailing warns from the third failed order in a row, and stops once an
/// order succeeds (the count back at 0).
#[test]
fn acme_renewal_failing_warns_from_the_third_failure() {
    let case = Case::new(s(60))
        .series(
            "rampart_lb_acme_consecutive_failures",
            &[("instance", "lb1"), ("job", "lb")],
            "0x5 1x5 2x5 3x5 4x5 0x5",
        )
        .quiet(s(17 * MIN), "AcmeRenewalFailing")
        .alerts(
            s(20 * MIN),
            "AcmeRenewalFailing",
            vec![alert(
                &[("instance", "lb1"), ("job", "lb"), ("severity", "warning")],
                "ACME orders for the site certificate on lb1 failed 3 times in a row",
                "The load balancer cannot get its certificate from the ACME CA (unreachable, \
                 rate-limited, or the HTTP-01 challenge does not validate; its log names the \
                 error). It retries with back-off, and the current certificate serves until it \
                 expires.",
            )],
        )
        .quiet(s(31 * MIN), "AcmeRenewalFailing");
    promtool_test(&MonitorSettings::default(), &[case]);
}

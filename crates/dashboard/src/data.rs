//! What the page shows, as PromQL: the metric names of issue 5's contract (recording
//! rules `level:metric:operations`, node_exporter's and mysqld_exporter's names, the load
//! balancer's `rampart_lb_backend_up`), and [`fetch`], which runs every query at once
//! under one deadline and returns a [`Snapshot`] of results or per-query errors.

use std::collections::HashMap;
use std::time::Duration;

use crate::prom::{Client, PromError, Series};

/// Whether a query draws a chart over the page's range or fills a table now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Range,
    Instant,
}

/// One PromQL query the page needs.
#[derive(Clone, Copy, Debug)]
pub struct Query {
    pub id: &'static str,
    pub kind: Kind,
    pub promql: &'static str,
}

const fn range(id: &'static str, promql: &'static str) -> Query {
    Query {
        id,
        kind: Kind::Range,
        promql,
    }
}

const fn instant(id: &'static str, promql: &'static str) -> Query {
    Query {
        id,
        kind: Kind::Instant,
        promql,
    }
}

/// Every query of the page.
pub const QUERIES: &[Query] = &[
    range("web_qps", "job:web_requests:rate1m"),
    range("lb_qps", "job:lb_requests:rate1m"),
    range("web_qps_by_server", "instance:web_requests:rate1m"),
    range("error_ratio", "job:web_errors:ratio_rate1m"),
    range("latency_p50", "job:web_request_duration_seconds:p50_rate1m"),
    range("latency_p99", "job:web_request_duration_seconds:p99_rate1m"),
    range(
        "cpu",
        "1 - avg by (instance) (rate(node_cpu_seconds_total{mode=\"idle\"}[1m]))",
    ),
    range(
        "memory",
        "1 - sum by (instance) (node_memory_MemAvailable_bytes) / sum by (instance) (node_memory_MemTotal_bytes)",
    ),
    range(
        "disk",
        "1 - sum by (instance) (node_filesystem_avail_bytes{mountpoint=\"/\"}) / sum by (instance) (node_filesystem_size_bytes{mountpoint=\"/\"})",
    ),
    range("db_qps", "instance:mysql_questions:rate1m"),
    // The load balancers' WAF: requests it blocked, and which CRS rule families match.
    range(
        "waf_blocked",
        "sum(rate(rampart_lb_waf_decisions_total{outcome=\"block\"}[1m]))",
    ),
    range(
        "waf_families",
        "topk(5, sum by (family) (rate(rampart_lb_waf_rule_matches_total{family!~\"blocking-evaluation|other\"}[5m])))",
    ),
    range(
        "replication_lag",
        "max by (instance) (mysql_slave_status_seconds_behind_master)",
    ),
    instant("backend_up", "rampart_lb_backend_up"),
    // The firewalls' drops by who sent them, to which host and port (issue 18): who is
    // knocking where. Totals since each agent started: a source's first drops create
    // its series, which `increase` would not count.
    instant(
        "firewall_drops",
        "topk(10, sum by (src_host, instance, dport) (rampart_agent_firewall_drops_total))",
    ),
    instant("mysql_up", "max by (instance) (mysql_up)"),
    instant(
        "io_running",
        "max by (instance) (mysql_slave_status_slave_io_running)",
    ),
    instant(
        "sql_running",
        "max by (instance) (mysql_slave_status_slave_sql_running)",
    ),
    instant(
        "lag_now",
        "max by (instance) (mysql_slave_status_seconds_behind_master)",
    ),
    // The keepers: who leads, the epoch, whether the primary waits for a standby.
    instant("keeper_leader", "max by (instance) (rampart_keeper_is_leader)"),
    instant("keeper_epoch", "max by (instance) (rampart_keeper_epoch)"),
    instant(
        "keeper_semi_sync",
        "max by (instance) (rampart_keeper_semi_sync_active)",
    ),
    instant("keeper_etcd", "max by (instance) (rampart_keeper_etcd_up)"),
    // A load-balancer pair: which one holds the floating address.
    instant("vrrp_master", "max by (instance) (rampart_vrrp_master)"),
    // The backup host: the last good full backup's age, size and duration, the binlog
    // archive's lag, the last verify, and where the restore window starts.
    instant(
        "backup_age",
        "time() - max by (instance) (rampart_backup_last_success_timestamp_seconds{kind=\"full\"})",
    ),
    instant(
        "backup_size",
        "max by (instance) (rampart_backup_last_size_bytes{kind=\"full\"})",
    ),
    instant(
        "backup_duration",
        "max by (instance) (rampart_backup_last_duration_seconds{kind=\"full\"})",
    ),
    instant(
        "archive_lag_now",
        "max by (instance) (rampart_backup_binlog_archive_lag_seconds)",
    ),
    instant(
        "verify_result",
        "max by (instance) (rampart_backup_verify_last_result)",
    ),
    instant(
        "restore_window_start",
        "max by (instance) (rampart_backup_restore_window_start_timestamp_seconds)",
    ),
    range(
        "archive_lag",
        "max by (instance) (rampart_backup_binlog_archive_lag_seconds)",
    ),
];

/// The answers to [`QUERIES`] at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// When the queries ran, Unix seconds.
    pub at: f64,
    /// The charts' window and step, Unix seconds.
    pub start: f64,
    pub end: f64,
    pub step: f64,
    pub results: HashMap<&'static str, Result<Vec<Series>, PromError>>,
}

impl Snapshot {
    /// The series of query `id` (empty when it failed or is unknown).
    pub fn series(&self, id: &str) -> &[Series] {
        match self.results.get(id) {
            Some(Ok(s)) => s,
            _ => &[],
        }
    }

    /// The error of query `id`, if it failed.
    pub fn error(&self, id: &str) -> Option<&PromError> {
        self.results.get(id).and_then(|r| r.as_ref().err())
    }

    /// The first error that says Prometheus could not be reached, if every query failed
    /// that way.
    pub fn unreachable(&self) -> Option<&PromError> {
        let mut first = None;
        for r in self.results.values() {
            match r {
                Err(e) if e.unreachable() => {
                    first.get_or_insert(e);
                }
                _ => return None,
            }
        }
        first
    }
}

/// The query step for a window: about 120 points, at least 5 s, whole seconds.
pub fn step_for(range: Duration) -> f64 {
    (range.as_secs_f64() / 120.0).round().max(5.0)
}

/// Runs every query of [`QUERIES`] concurrently against `client`; all of them together
/// get `timeout`, after which those still running count as timed out.
pub async fn fetch(client: &Client, range: Duration, timeout: Duration, now: f64) -> Snapshot {
    let step = step_for(range);
    // Aligned to the step, so consecutive refreshes ask for the same points.
    let end = (now / step).floor() * step;
    let start = end - range.as_secs_f64();
    let mut tasks = tokio::task::JoinSet::new();
    for q in QUERIES {
        let client = client.clone();
        tasks.spawn(async move {
            let r = match q.kind {
                Kind::Range => {
                    client
                        .query_range(q.promql, start, end, step, timeout)
                        .await
                }
                Kind::Instant => client.query(q.promql, now, timeout).await,
            };
            (q.id, r)
        });
    }
    let mut results = HashMap::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
        if let Ok((id, r)) = joined {
            results.insert(id, r);
        }
    }
    // Dropping the set aborts what is left.
    drop(tasks);
    for q in QUERIES {
        results
            .entry(q.id)
            .or_insert(Err(PromError::Timeout(timeout)));
    }
    Snapshot {
        at: now,
        start,
        end,
        step,
        results,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps() {
        for (range, step) in [(300, 5.0), (1800, 15.0), (3600, 30.0), (86400, 720.0)] {
            assert_eq!(step_for(Duration::from_secs(range)), step, "{range}");
        }
    }

    #[test]
    fn query_ids_are_unique() {
        let mut ids: Vec<_> = QUERIES.iter().map(|q| q.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), QUERIES.len());
    }

    #[tokio::test]
    async fn an_unreachable_prometheus_fails_every_query_quickly() {
        // A port just released: connection refused.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let client = Client {
            url: crate::config::parse_prom_url(&format!("http://{addr}")).unwrap(),
            max_bytes: 1 << 20,
            tls: None,
        };
        let snap = fetch(
            &client,
            Duration::from_secs(1800),
            Duration::from_secs(5),
            1_700_000_010.0,
        )
        .await;
        assert_eq!(snap.results.len(), QUERIES.len());
        let e = snap.unreachable().expect("unreachable");
        assert!(matches!(e, PromError::Connect { .. }), "{e}");
        assert_eq!(snap.end, 1_700_000_010.0);
        assert_eq!(snap.start, 1_700_000_010.0 - 1800.0);
    }
}

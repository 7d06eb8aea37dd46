//! Database metrics as Debian 12's mysqld_exporter 0.14 exports them with its default
//! collectors plus `--collect.info_schema.processlist`, read as the monitoring user over
//! the server's unix socket, or over TCP with TLS verified against the run's CA
//! (`mysql.addr` and `mysql.ca`; what `rampart up` configures, so every monitoring
//! session is TLS). The agent runs on the database host; the user has `PROCESS, BINLOG
//! MONITOR, REPLICA MONITOR` and nothing else, which is all these queries need.
//!
//! Sub-collectors, each named as the exporter names it in
//! `mysql_exporter_collector_duration_seconds{collector}`: `collect.global_status`,
//! `collect.global_variables`, `collect.slave_status` (`SHOW ALL SLAVES STATUS`),
//! `collect.info_schema.processlist`, `collect.info_schema.innodb_cmp`,
//! `collect.info_schema.innodb_cmpmem`, `collect.info_schema.query_response_time`
//! (nothing unless the server's `query_response_time_stats` is ON); and rampart's own
//! `rampart.gtid`: the GTID positions, which mysqld_exporter lacks, as
//! `rampart_mysql_gtid_seq_no{position="binlog"|"slave"|"current",domain_id,server_id}`.
//! The mapping itself is pure and lives in [`map`].
//!
//! Failure: the connection (kept between collections, reopened after a connection-level
//! error) is checked first; when it fails, `mysql_up 0` and the `mysql_exporter_*`
//! families are all there is. A sub-collector that fails (or runs past the deadline that
//! bounds the whole collection) exports nothing, counts in
//! `mysql_exporter_scrape_errors_total{collector}` and sets
//! `mysql_exporter_last_scrape_error`; the others still export. Rows that can't be read
//! (a NULL user in the processlist, a count that is not a number) are skipped, logged and
//! counted in `rampart_mysql_skipped_rows_total{collector}`; never a panic.

pub mod map;

use std::collections::BTreeMap;
use std::path::Path;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlRow, MySqlSslMode};
use sqlx::{Column, ConnectOptions, Connection, Row};
use tokio::time::Instant;

use crate::config::Mysql as MysqlConfig;
use crate::{Family, Kind, Sample};
use map::{ProcessRow, ScrapeStats, SlaveRow};

/// The sub-collectors, in the order they run (one connection, one query at a time).
const SUBS: [Sub; 8] = [
    Sub::GlobalStatus,
    Sub::GlobalVariables,
    Sub::SlaveStatus,
    Sub::Processlist,
    Sub::InnodbCmp,
    Sub::InnodbCmpmem,
    Sub::QueryResponseTime,
    Sub::Gtid,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sub {
    GlobalStatus,
    GlobalVariables,
    SlaveStatus,
    Processlist,
    InnodbCmp,
    InnodbCmpmem,
    QueryResponseTime,
    Gtid,
}

impl Sub {
    /// The `collector` label, as mysqld_exporter names its scrapers.
    fn label(self) -> &'static str {
        match self {
            Sub::GlobalStatus => "collect.global_status",
            Sub::GlobalVariables => "collect.global_variables",
            Sub::SlaveStatus => "collect.slave_status",
            Sub::Processlist => "collect.info_schema.processlist",
            Sub::InnodbCmp => "collect.info_schema.innodb_cmp",
            Sub::InnodbCmpmem => "collect.info_schema.innodb_cmpmem",
            Sub::QueryResponseTime => "collect.info_schema.query_response_time",
            Sub::Gtid => "rampart.gtid",
        }
    }
}

/// The processlist query of mysqld_exporter 0.14 (`--collect.info_schema.processlist.min_time`
/// at its default 0), the counts cast so the text protocol sends integers.
const PROCESSLIST: &str = "SELECT user, SUBSTRING_INDEX(host, ':', 1) AS host, \
     COALESCE(command, '') AS command, COALESCE(state, '') AS state, \
     COUNT(*) AS processes, CAST(SUM(time) AS SIGNED) AS seconds \
     FROM information_schema.processlist WHERE ID != connection_id() AND TIME >= 0 \
     GROUP BY user, SUBSTRING_INDEX(host, ':', 1), command, state";

/// Health of one server, kept between collections for its connection and counters.
pub struct Collector {
    config: MysqlConfig,
    conn: Option<MySqlConnection>,
    scrapes: u64,
    errors: BTreeMap<String, u64>,
    skipped: BTreeMap<&'static str, u64>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("socket", &self.config.socket)
            .field("tcp", &self.config.tcp)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

/// What a sub-collector read: its families and how many rows it skipped.
type Read = (Vec<Family>, u64);

impl Collector {
    pub fn new(config: MysqlConfig) -> Self {
        Self {
            config,
            conn: None,
            scrapes: 0,
            errors: BTreeMap::new(),
            skipped: BTreeMap::new(),
        }
    }

    /// Every family, all within `mysql.timeout`; errors are logged (without the
    /// password) and show in `mysql_up` and the `mysql_exporter_*` families.
    pub async fn collect(&mut self) -> Vec<Family> {
        self.collect_by(Instant::now() + self.config.timeout).await
    }

    /// As [`Collector::collect`], done by `by` if that is sooner (the agent's interval:
    /// a collection never runs into the next one).
    pub async fn collect_by(&mut self, by: Instant) -> Vec<Family> {
        let deadline = by.min(Instant::now() + self.config.timeout);
        self.scrapes += 1;
        let mut stats = ScrapeStats {
            scrapes: self.scrapes,
            ..ScrapeStats::default()
        };
        let start = Instant::now();
        match tokio::time::timeout_at(deadline, self.connect()).await {
            Ok(Ok(())) => stats.up = true,
            Ok(Err(e)) => {
                tracing::warn!(socket = %self.config.socket.display(), error = %e, "database metrics: connect");
                self.conn = None;
            }
            Err(_) => {
                tracing::warn!(socket = %self.config.socket.display(), timeout = ?self.config.timeout, "database metrics: connect timed out");
                self.conn = None;
            }
        }
        if !stats.up {
            stats.last_error = true;
            stats.errors = self.errors.clone();
            return map::exporter(&stats);
        }
        stats
            .durations
            .push(("connection".into(), start.elapsed().as_secs_f64()));

        let mut families = Vec::new();
        for sub in SUBS {
            let t = Instant::now();
            let result = match self.conn.as_mut() {
                Some(conn) => tokio::time::timeout_at(deadline, read(conn, sub))
                    .await
                    .unwrap_or_else(|_| {
                        Err(sqlx::Error::Io(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "past the collection's deadline",
                        )))
                    }),
                None => Err(sqlx::Error::PoolClosed),
            };
            match result {
                Ok((f, skipped)) => {
                    families.extend(f);
                    if skipped > 0 {
                        tracing::warn!(
                            collector = sub.label(),
                            skipped,
                            "database metrics: rows skipped"
                        );
                        *self.skipped.entry(sub.label()).or_default() += skipped;
                    }
                }
                Err(e) => {
                    tracing::warn!(collector = sub.label(), error = %e, "database metrics");
                    *self.errors.entry(sub.label().to_owned()).or_default() += 1;
                    stats.last_error = true;
                    // A query the server refused leaves the session usable; anything
                    // else (I/O, protocol, a cancelled query) does not.
                    if !matches!(e, sqlx::Error::Database(_)) {
                        self.conn = None;
                    }
                }
            }
            stats
                .durations
                .push((sub.label().to_owned(), t.elapsed().as_secs_f64()));
        }
        stats.errors = self.errors.clone();
        families.extend(map::exporter(&stats));
        if !self.skipped.is_empty() {
            families.push(Family {
                name: "rampart_mysql_skipped_rows_total".into(),
                help: "Rows of the server's answers the agent could not read, by sub-collector."
                    .into(),
                kind: Kind::Counter,
                samples: self
                    .skipped
                    .iter()
                    .map(|(c, n)| Sample {
                        labels: vec![("collector".into(), (*c).to_owned())],
                        value: *n as f64,
                        suffix: "",
                    })
                    .collect(),
            });
        }
        families
    }

    /// Opens the connection if there is none, and checks it.
    async fn connect(&mut self) -> Result<(), sqlx::Error> {
        if let Some(conn) = self.conn.as_mut() {
            if conn.ping().await.is_ok() {
                return Ok(());
            }
            self.conn = None;
        }
        let password = read_password(&self.config.password_file)?;
        let options = match &self.config.tcp {
            Some((addr, ca)) => MySqlConnectOptions::new()
                .host(&addr.ip().to_string())
                .port(addr.port())
                .ssl_mode(MySqlSslMode::VerifyIdentity)
                .ssl_ca(ca),
            None => MySqlConnectOptions::new()
                .socket(&self.config.socket)
                .ssl_mode(MySqlSslMode::Disabled),
        }
        .username(&self.config.user)
        .password(&password)
        .disable_statement_logging();
        self.conn = Some(options.connect().await?);
        Ok(())
    }
}

/// One sub-collector's queries and mapping.
async fn read(conn: &mut MySqlConnection, sub: Sub) -> Result<Read, sqlx::Error> {
    match sub {
        Sub::GlobalStatus => {
            let (pairs, skipped) = pairs(&text_rows(conn, "SHOW GLOBAL STATUS").await?);
            Ok((map::global_status(&pairs), skipped))
        }
        Sub::GlobalVariables => {
            let (pairs, skipped) = pairs(&text_rows(conn, "SHOW GLOBAL VARIABLES").await?);
            Ok((map::global_variables(&pairs), skipped))
        }
        Sub::SlaveStatus => {
            let rows = sqlx::raw_sql("SHOW ALL SLAVES STATUS")
                .fetch_all(&mut *conn)
                .await?;
            let rows: Vec<SlaveRow> = rows
                .iter()
                .map(|r| {
                    r.columns()
                        .iter()
                        .enumerate()
                        .map(|(i, c)| (c.name().to_owned(), cell(r, i)))
                        .collect()
                })
                .collect();
            Ok((map::slave_status(&rows), 0))
        }
        Sub::Processlist => {
            let mut skipped = 0;
            let mut rows = Vec::new();
            for r in text_rows(conn, PROCESSLIST).await? {
                match process_row(&r) {
                    Some(p) => rows.push(p),
                    None => skipped += 1,
                }
            }
            Ok((map::processlist(&rows), skipped))
        }
        Sub::InnodbCmp => {
            let mut skipped = 0;
            let mut rows = Vec::new();
            let sql = "SELECT page_size, compress_ops, compress_ops_ok, compress_time, \
                       uncompress_ops, uncompress_time FROM information_schema.innodb_cmp";
            for r in text_rows(conn, sql).await? {
                match (r.first().cloned().flatten(), numbers::<5>(&r, 1)) {
                    (Some(page), Some(v)) => rows.push((page, v)),
                    _ => skipped += 1,
                }
            }
            Ok((map::innodb_cmp(&rows), skipped))
        }
        Sub::InnodbCmpmem => {
            let mut skipped = 0;
            let mut rows = Vec::new();
            let sql = "SELECT page_size, buffer_pool_instance, pages_used, pages_free, \
                       relocation_ops, relocation_time FROM information_schema.innodb_cmpmem";
            for r in text_rows(conn, sql).await? {
                match (
                    r.first().cloned().flatten(),
                    r.get(1).cloned().flatten(),
                    numbers::<4>(&r, 2),
                ) {
                    (Some(page), Some(pool), Some(v)) => rows.push((page, pool, v)),
                    _ => skipped += 1,
                }
            }
            Ok((map::innodb_cmpmem(&rows), skipped))
        }
        Sub::QueryResponseTime => {
            // The exporter asks the variable and, when the server doesn't know it (no
            // plugin), exports nothing and reports no error.
            let on = match text_rows(conn, "SELECT @@query_response_time_stats").await {
                Ok(rows) => rows
                    .first()
                    .and_then(|r| r.first().cloned().flatten())
                    .and_then(|v| map::parse_status(&v))
                    .is_some_and(|v| v != 0.0),
                Err(sqlx::Error::Database(_)) => false,
                Err(e) => return Err(e),
            };
            if !on {
                return Ok((Vec::new(), 0));
            }
            let mut families = Vec::new();
            let mut skipped = 0;
            for (i, (table, name, help)) in map::QUERY_RESPONSE_TIME.iter().enumerate() {
                let sql = format!("SELECT TIME, COUNT, TOTAL FROM INFORMATION_SCHEMA.{table}");
                match text_rows(conn, &sql).await {
                    Ok(rows) => {
                        let mut buckets = Vec::new();
                        for r in rows {
                            let get = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                            buckets.push((get(0), get(1), get(2)));
                        }
                        let (f, s) = map::query_response_time(name, help, &buckets);
                        families.push(f);
                        skipped += s;
                    }
                    // Only the first table must exist (the read/write ones are Percona's).
                    Err(e) if i == 0 => return Err(e),
                    Err(_) => {}
                }
            }
            Ok((families, skipped))
        }
        Sub::Gtid => {
            let rows = text_rows(
                conn,
                "SELECT @@gtid_binlog_pos, @@gtid_slave_pos, @@gtid_current_pos",
            )
            .await?;
            let row = rows.into_iter().next().unwrap_or_default();
            let get = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
            let positions = [("binlog", get(0)), ("slave", get(1)), ("current", get(2))];
            Ok((vec![map::gtid_family(&positions)], 0))
        }
    }
}

/// The answer to `sql` (sent as a plain query, so every value comes as text), each cell
/// as text or `None` for NULL.
async fn text_rows(
    conn: &mut MySqlConnection,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, sqlx::Error> {
    let rows = sqlx::raw_sql(sql).fetch_all(&mut *conn).await?;
    Ok(rows
        .iter()
        .map(|r| (0..r.columns().len()).map(|i| cell(r, i)).collect())
        .collect())
}

/// A cell's text as the server sent it (the text protocol: numbers as digits), whatever
/// its column type; `None` for NULL. Invalid UTF-8 is replaced, never an error.
fn cell(row: &MySqlRow, i: usize) -> Option<String> {
    row.try_get_unchecked::<Option<Vec<u8>>, _>(i)
        .ok()
        .flatten()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// Name/value rows (`SHOW ... STATUS/VARIABLES`), and how many had no name. A NULL value
/// is read as empty text (what the exporter's scan of it gives).
fn pairs(rows: &[Vec<Option<String>>]) -> (Vec<(String, String)>, u64) {
    let mut out = Vec::with_capacity(rows.len());
    let mut skipped = 0;
    for r in rows {
        match (r.first().cloned().flatten(), r.get(1)) {
            (Some(name), Some(value)) => out.push((name, value.clone().unwrap_or_default())),
            _ => skipped += 1,
        }
    }
    (out, skipped)
}

/// `N` numbers from column `from` on, or `None` if any is missing or not a number.
fn numbers<const N: usize>(row: &[Option<String>], from: usize) -> Option<[f64; N]> {
    let mut out = [0.0; N];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = row.get(from + i)?.as_deref()?.trim().parse().ok()?;
    }
    Some(out)
}

fn process_row(r: &[Option<String>]) -> Option<ProcessRow> {
    let get = |i: usize| r.get(i).cloned().flatten();
    Some(ProcessRow {
        user: get(0)?,
        host: get(1).unwrap_or_default(),
        command: get(2)?,
        state: get(3)?,
        count: get(4)?.parse().ok()?,
        seconds: get(5)?.parse().ok()?,
    })
}

fn read_password(path: &Path) -> Result<String, sqlx::Error> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
        .map_err(|e| {
            sqlx::Error::Configuration(format!("password file {}: {e}", path.display()).into())
        })
}

//! Database health under mysqld_exporter's names, read as the monitoring user over the
//! server's unix socket, or over TCP with TLS verified against the run's CA (`mysql.addr`
//! and `mysql.ca`; what `rampart up` configures, so every monitoring session is TLS) (the
//! agent runs on the database host; the user has `PROCESS, BINLOG MONITOR, REPLICA
//! MONITOR` and nothing else).
//!
//! Exported: `mysql_up`; `mysql_global_status_*` for a curated set of status variables
//! (mysqld_exporter exports every one; these are what dashboards and rules use, and the
//! set stays small enough to push every interval); on a replica
//! `mysql_slave_status_slave_io_running`/`slave_sql_running` (1 only for "Yes", as
//! mysqld_exporter), `mysql_slave_status_seconds_behind_master` (absent while the SQL
//! thread is stopped: MariaDB reports NULL) and `mysql_slave_status_last_io_errno`/
//! `last_sql_errno`; and, which mysqld_exporter lacks, the GTID positions as
//! `rampart_mysql_gtid_seq_no{position="binlog"|"slave"|"current",domain_id,server_id}`.
//! One connection is kept and reopened after any error; every query has a deadline.

use std::path::Path;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlRow, MySqlSslMode};
use sqlx::{ConnectOptions, Row};

use crate::config::Mysql as MysqlConfig;
use crate::{Family, Kind, Sample};

/// The status variables exported, as `mysql_global_status_<lowercase name>`.
const STATUS: &[&str] = &[
    "Aborted_clients",
    "Aborted_connects",
    "Bytes_received",
    "Bytes_sent",
    "Connections",
    "Innodb_buffer_pool_read_requests",
    "Innodb_buffer_pool_reads",
    "Innodb_row_lock_waits",
    "Max_used_connections",
    "Queries",
    "Questions",
    "Rpl_semi_sync_master_clients",
    "Rpl_semi_sync_master_no_tx",
    "Rpl_semi_sync_master_status",
    "Rpl_semi_sync_master_yes_tx",
    "Rpl_semi_sync_slave_status",
    "Slow_queries",
    "Threads_connected",
    "Threads_running",
    "Uptime",
];

/// Health of one server, kept between collections for its connection.
pub struct Collector {
    config: MysqlConfig,
    conn: Option<MySqlConnection>,
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

impl Collector {
    pub fn new(config: MysqlConfig) -> Self {
        Self { config, conn: None }
    }

    /// Every family; `mysql_up 0` alone when the server can't be reached or a query
    /// fails (the error is logged once per failure, without the password).
    pub async fn collect(&mut self) -> Vec<Family> {
        let timeout = self.config.timeout;
        match tokio::time::timeout(timeout, self.try_collect()).await {
            Ok(Ok(mut families)) => {
                families.insert(0, gauge("mysql_up", "Whether the MySQL server is up.", 1.0));
                families
            }
            Ok(Err(e)) => {
                tracing::warn!(socket = %self.config.socket.display(), error = %e, "database health");
                self.conn = None;
                vec![gauge("mysql_up", "Whether the MySQL server is up.", 0.0)]
            }
            Err(_) => {
                tracing::warn!(socket = %self.config.socket.display(), ?timeout, "database health: timed out");
                self.conn = None;
                vec![gauge("mysql_up", "Whether the MySQL server is up.", 0.0)]
            }
        }
    }

    async fn try_collect(&mut self) -> Result<Vec<Family>, sqlx::Error> {
        if self.conn.is_none() {
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
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(sqlx::Error::PoolClosed);
        };
        let mut families = Vec::new();

        let list = STATUS
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(",");
        let rows = sqlx::raw_sql(&format!(
            "SHOW GLOBAL STATUS WHERE Variable_name IN ({list})"
        ))
        .fetch_all(&mut *conn)
        .await?;
        let mut status: Vec<(String, f64)> = rows
            .iter()
            .filter_map(|r| {
                let name = cell(r, 0)?;
                let value = status_value(&cell(r, 1)?)?;
                Some((name.to_ascii_lowercase(), value))
            })
            .collect();
        status.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, value) in status {
            families.push(Family {
                name: format!("mysql_global_status_{name}"),
                help: "Generic metric from SHOW GLOBAL STATUS.".into(),
                kind: Kind::Untyped,
                samples: vec![plain(value)],
            });
        }

        let replicas = sqlx::raw_sql("SHOW ALL SLAVES STATUS")
            .fetch_all(&mut *conn)
            .await?;
        families.extend(slave_families(
            &replicas
                .iter()
                .map(|r| SlaveRow {
                    connection_name: named(r, "Connection_name").unwrap_or_default(),
                    master_host: named(r, "Master_Host").unwrap_or_default(),
                    io_running: named(r, "Slave_IO_Running").unwrap_or_default(),
                    sql_running: named(r, "Slave_SQL_Running").unwrap_or_default(),
                    seconds_behind: named(r, "Seconds_Behind_Master"),
                    last_io_errno: named(r, "Last_IO_Errno"),
                    last_sql_errno: named(r, "Last_SQL_Errno"),
                })
                .collect::<Vec<_>>(),
        ));

        let gtid = sqlx::raw_sql("SELECT @@gtid_binlog_pos, @@gtid_slave_pos, @@gtid_current_pos")
            .fetch_one(&mut *conn)
            .await?;
        let positions = [
            ("binlog", cell(&gtid, 0).unwrap_or_default()),
            ("slave", cell(&gtid, 1).unwrap_or_default()),
            ("current", cell(&gtid, 2).unwrap_or_default()),
        ];
        families.push(gtid_family(&positions));
        Ok(families)
    }
}

fn read_password(path: &Path) -> Result<String, sqlx::Error> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
        .map_err(|e| {
            sqlx::Error::Configuration(format!("password file {}: {e}", path.display()).into())
        })
}

/// A cell as text, whatever its column type (SHOW output mixes strings and integers).
fn cell(row: &MySqlRow, i: usize) -> Option<String> {
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return v;
    }
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return v.map(|v| v.to_string());
    }
    if let Ok(v) = row.try_get::<Option<u64>, _>(i) {
        return v.map(|v| v.to_string());
    }
    if let Ok(v) = row.try_get::<Option<Vec<u8>>, _>(i) {
        return v.map(|v| String::from_utf8_lossy(&v).into_owned());
    }
    None
}

fn named(row: &MySqlRow, name: &str) -> Option<String> {
    let i = row.columns().iter().position(|c| {
        use sqlx::Column;
        c.name().eq_ignore_ascii_case(name)
    })?;
    cell(row, i)
}

/// A status value as mysqld_exporter reads it: a number, or ON/YES → 1, OFF/NO → 0.
fn status_value(s: &str) -> Option<f64> {
    match s.trim().to_ascii_uppercase().as_str() {
        "ON" | "YES" => Some(1.0),
        "OFF" | "NO" => Some(0.0),
        other => other.parse().ok(),
    }
}

/// One row of `SHOW ALL SLAVES STATUS`, as text.
#[derive(Clone, Debug, Default)]
pub struct SlaveRow {
    pub connection_name: String,
    pub master_host: String,
    pub io_running: String,
    pub sql_running: String,
    pub seconds_behind: Option<String>,
    pub last_io_errno: Option<String>,
    pub last_sql_errno: Option<String>,
}

/// The `mysql_slave_status_*` families of a replica's rows (none on a primary).
pub fn slave_families(rows: &[SlaveRow]) -> Vec<Family> {
    let mut io = Vec::new();
    let mut sql = Vec::new();
    let mut behind = Vec::new();
    let mut io_errno = Vec::new();
    let mut sql_errno = Vec::new();
    for r in rows {
        let labels = vec![
            ("channel_name".to_owned(), String::new()),
            ("connection_name".to_owned(), r.connection_name.clone()),
            ("master_host".to_owned(), r.master_host.clone()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect::<Vec<_>>();
        let sample = |value| Sample {
            labels: labels.clone(),
            value,
            suffix: "",
        };
        let yes = |s: &str| {
            if s.eq_ignore_ascii_case("yes") {
                1.0
            } else {
                0.0
            }
        };
        io.push(sample(yes(&r.io_running)));
        sql.push(sample(yes(&r.sql_running)));
        if let Some(v) = r.seconds_behind.as_deref().and_then(|v| v.parse().ok()) {
            behind.push(sample(v));
        }
        if let Some(v) = r.last_io_errno.as_deref().and_then(|v| v.parse().ok()) {
            io_errno.push(sample(v));
        }
        if let Some(v) = r.last_sql_errno.as_deref().and_then(|v| v.parse().ok()) {
            sql_errno.push(sample(v));
        }
    }
    let fam = |name: &str, help: &str, samples| Family {
        name: name.to_owned(),
        help: help.to_owned(),
        kind: Kind::Untyped,
        samples,
    };
    vec![
        fam(
            "mysql_slave_status_slave_io_running",
            "Generic metric from SHOW SLAVE STATUS.",
            io,
        ),
        fam(
            "mysql_slave_status_slave_sql_running",
            "Generic metric from SHOW SLAVE STATUS.",
            sql,
        ),
        fam(
            "mysql_slave_status_seconds_behind_master",
            "Generic metric from SHOW SLAVE STATUS.",
            behind,
        ),
        fam(
            "mysql_slave_status_last_io_errno",
            "Generic metric from SHOW SLAVE STATUS.",
            io_errno,
        ),
        fam(
            "mysql_slave_status_last_sql_errno",
            "Generic metric from SHOW SLAVE STATUS.",
            sql_errno,
        ),
    ]
    .into_iter()
    .filter(|f| !f.samples.is_empty())
    .collect()
}

/// `rampart_mysql_gtid_seq_no` from GTID lists such as `0-1-42,1-2-7`; malformed
/// entries are skipped.
pub fn gtid_family(positions: &[(&str, String)]) -> Family {
    let mut samples = Vec::new();
    for (position, list) in positions {
        for gtid in list.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            let mut parts = gtid.split('-');
            let (Some(domain), Some(server), Some(seq), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (Ok(_), Ok(_), Ok(seq)) = (
                domain.parse::<u32>(),
                server.parse::<u32>(),
                seq.parse::<u64>(),
            ) else {
                continue;
            };
            samples.push(Sample {
                labels: vec![
                    ("domain_id".to_owned(), domain.to_owned()),
                    ("position".to_owned(), (*position).to_owned()),
                    ("server_id".to_owned(), server.to_owned()),
                ],
                value: seq as f64,
                suffix: "",
            });
        }
    }
    Family {
        name: "rampart_mysql_gtid_seq_no".into(),
        help: "Sequence number of the last GTID per replication domain: in the binary log (binlog), applied from the primary (slave), or either (current).".into(),
        kind: Kind::Gauge,
        samples,
    }
}

fn gauge(name: &str, help: &str, value: f64) -> Family {
    Family {
        name: name.to_owned(),
        help: help.to_owned(),
        kind: Kind::Gauge,
        samples: vec![plain(value)],
    }
}

fn plain(value: f64) -> Sample {
    Sample {
        labels: Vec::new(),
        value,
        suffix: "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expo;

    fn check_slaves(rows: &[SlaveRow], expect: &str) {
        assert_eq!(expo::text(&slave_families(rows)), expect);
    }

    #[test]
    fn replica_running_stopped_and_connecting() {
        let row = |io: &str, sql: &str, behind: Option<&str>| SlaveRow {
            master_host: "198.18.2.21".into(),
            io_running: io.into(),
            sql_running: sql.into(),
            seconds_behind: behind.map(Into::into),
            last_io_errno: Some("0".into()),
            last_sql_errno: Some("0".into()),
            ..SlaveRow::default()
        };
        let h = "# HELP {} Generic metric from SHOW SLAVE STATUS.\n# TYPE {} untyped\n";
        let fam = |name: &str, value: &str| {
            format!(
                "{}{name}{{master_host=\"198.18.2.21\"}} {value}\n",
                h.replace("{}", name)
            )
        };
        check_slaves(
            &[row("Yes", "Yes", Some("3"))],
            &[
                fam("mysql_slave_status_slave_io_running", "1"),
                fam("mysql_slave_status_slave_sql_running", "1"),
                fam("mysql_slave_status_seconds_behind_master", "3"),
                fam("mysql_slave_status_last_io_errno", "0"),
                fam("mysql_slave_status_last_sql_errno", "0"),
            ]
            .concat(),
        );
        check_slaves(
            &[row("Connecting", "No", None)],
            &[
                fam("mysql_slave_status_slave_io_running", "0"),
                fam("mysql_slave_status_slave_sql_running", "0"),
                fam("mysql_slave_status_last_io_errno", "0"),
                fam("mysql_slave_status_last_sql_errno", "0"),
            ]
            .concat(),
        );
        check_slaves(&[], "");
    }

    #[test]
    fn gtid_lists() {
        let f = gtid_family(&[
            ("binlog", "0-1-42,1-2-7".into()),
            ("slave", "".into()),
            ("current", "0-1-42,bad,1-x-3,2-2-2-2".into()),
        ]);
        assert_eq!(
            expo::text(std::slice::from_ref(&f))
                .lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>(),
            [
                "rampart_mysql_gtid_seq_no{domain_id=\"0\",position=\"binlog\",server_id=\"1\"} 42",
                "rampart_mysql_gtid_seq_no{domain_id=\"1\",position=\"binlog\",server_id=\"2\"} 7",
                "rampart_mysql_gtid_seq_no{domain_id=\"0\",position=\"current\",server_id=\"1\"} 42",
            ]
        );
    }

    #[test]
    fn status_values() {
        for (input, expect) in [
            ("12", Some(12.0)),
            ("ON", Some(1.0)),
            ("off", Some(0.0)),
            ("YES", Some(1.0)),
            ("1.5", Some(1.5)),
            ("", None),
            ("abc", None),
        ] {
            assert_eq!(status_value(input), expect, "{input}");
        }
    }
}

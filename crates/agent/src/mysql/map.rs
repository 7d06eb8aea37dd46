//! mysqld_exporter 0.14's mapping from the server's answers (as text, the way the text
//! protocol sends them) to metric families, without I/O: `SHOW GLOBAL STATUS`, `SHOW
//! GLOBAL VARIABLES`, `SHOW ALL SLAVES STATUS`, `information_schema.processlist`,
//! `innodb_cmp` and `innodb_cmpmem`, and the exporter's own `mysql_exporter_*` families.
//! Names, label names, help texts and types are the exporter's, read from its output
//! against MariaDB 10.11 (`crates/agent/tests/mysql.rs` compares them).
//!
//! One difference is by design: the exporter writes empty label values (`channel_name=""`
//! on MariaDB, `innodb_version=""` since MariaDB 10.10); rampart's samples leave such
//! labels out ([`crate::Sample`]), which Prometheus stores the same way.

use std::collections::BTreeMap;

use crate::{Family, Kind, Sample};

/// A value as the exporter's `parseStatus` reads it: yes/on/primary → 1, no/off/disabled/
/// connecting/non-primary/disconnected → 0 (any case), a timestamp `Jan 02 15:04:05 2006
/// GMT` or `2006-01-02 15:04:05` (UTC) → Unix seconds, else a float; `None` for the rest
/// (text variables, NULL, empty).
pub fn parse_status(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "on" | "primary" => return Some(1.0),
        "no" | "off" | "disabled" | "connecting" | "non-primary" | "disconnected" => {
            return Some(0.0)
        }
        _ => {}
    }
    if let Some(t) = parse_cert_time(s).or_else(|| parse_datetime(s)) {
        return Some(t as f64);
    }
    go_float(s)
}

/// Go's `strconv.ParseFloat(s, 64)` for what servers print: Rust's parser agrees on
/// decimal and exponent forms and `inf`/`nan`; Go refuses a finite literal that
/// overflows, so a parsed infinity counts only when the text said so.
fn go_float(s: &str) -> Option<f64> {
    let v: f64 = s.parse().ok()?;
    if v.is_infinite() && !s.to_ascii_lowercase().contains("inf") {
        return None;
    }
    Some(v)
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// `Jan 02 15:04:05 2006 MST` (Go's layout: a two-digit day, any zone name read as UTC).
fn parse_cert_time(s: &str) -> Option<i64> {
    let mut parts = s.split(' ');
    let (Some(mon), Some(day), Some(hms), Some(year), Some(zone), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let month = MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(mon))?
        .checked_add(1)?;
    if day.len() != 2 || year.len() != 4 || zone.is_empty() {
        return None;
    }
    if !zone.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let (h, mi, sec) = parse_hms(hms)?;
    civil_to_unix(year.parse().ok()?, month as u32, digits(day)?, h, mi, sec)
}

/// `2006-01-02 15:04:05`, read as UTC.
fn parse_datetime(s: &str) -> Option<i64> {
    let (date, hms) = s.split_once(' ')?;
    let mut d = date.split('-');
    let (Some(y), Some(m), Some(day), None) = (d.next(), d.next(), d.next(), d.next()) else {
        return None;
    };
    if y.len() != 4 || m.len() != 2 || day.len() != 2 {
        return None;
    }
    let (h, mi, sec) = parse_hms(hms)?;
    civil_to_unix(digits(y)? as i64, digits(m)?, digits(day)?, h, mi, sec)
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_hms(s: &str) -> Option<(u32, u32, u32)> {
    let mut p = s.split(':');
    let (Some(h), Some(m), Some(sec), None) = (p.next(), p.next(), p.next(), p.next()) else {
        return None;
    };
    if h.len() != 2 || m.len() != 2 || sec.len() != 2 {
        return None;
    }
    let (h, m, sec) = (digits(h)?, digits(m)?, digits(sec)?);
    (h < 24 && m < 60 && sec < 60).then_some((h, m, sec))
}

/// Seconds since the epoch of a UTC civil time (Howard Hinnant's days-from-civil).
fn civil_to_unix(y: i64, m: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<i64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s))
}

/// Families being built, by name, each with its kind and help; sorted by name on output
/// as the Go registry writes them.
#[derive(Default)]
struct Builder {
    families: BTreeMap<String, Family>,
}

impl Builder {
    fn add(&mut self, name: &str, help: &str, kind: Kind, labels: &[(&str, &str)], value: f64) {
        let family = self
            .families
            .entry(name.to_owned())
            .or_insert_with(|| Family {
                name: name.to_owned(),
                help: help.to_owned(),
                kind,
                samples: Vec::new(),
            });
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        family.samples.push(Sample {
            labels,
            value,
            suffix: "",
        });
    }

    fn finish(self) -> Vec<Family> {
        self.families
            .into_values()
            .map(|mut f| {
                f.samples.sort_by(|a, b| {
                    a.labels
                        .partial_cmp(&b.labels)
                        .unwrap_or(std::cmp::Ordering::Equal)
                });
                f
            })
            .collect()
    }
}

const GENERIC_STATUS: &str = "Generic metric from SHOW GLOBAL STATUS.";

/// `SHOW GLOBAL STATUS` rows (name, value): every numeric variable, the grouped ones as
/// the exporter's labelled families (`Com_*` → `commands_total{command}`, `Handler_*`,
/// `Connection_errors_*`, `Innodb_buffer_pool_pages_*`, `Innodb_rows_*`,
/// `Performance_schema_*`), the rest as `mysql_global_status_<lowercase>` untyped; and
/// `mysql_galera_status_info` when the server is a Galera node.
pub fn global_status(rows: &[(String, String)]) -> Vec<Family> {
    let mut b = Builder::default();
    let mut galera = [
        ("wsrep_local_state_uuid", ""),
        ("wsrep_cluster_state_uuid", ""),
        ("wsrep_provider_version", ""),
    ];
    for (name, value) in rows {
        let key = name.to_ascii_lowercase();
        let Some(v) = parse_status(value) else {
            if let Some(slot) = galera.iter_mut().find(|(k, _)| *k == key) {
                slot.1 = value.as_str();
            }
            continue;
        };
        let group = [
            "com",
            "handler",
            "connection_errors",
            "innodb_buffer_pool_pages",
            "innodb_rows",
            "performance_schema",
        ]
        .into_iter()
        .find_map(|g| Some((g, key.strip_prefix(g)?.strip_prefix('_')?)));
        let Some((group, rest)) = group else {
            b.add(
                &format!("mysql_global_status_{key}"),
                GENERIC_STATUS,
                Kind::Untyped,
                &[],
                v,
            );
            continue;
        };
        let counter = |b: &mut Builder, name: &str, help: &str, label: &str| {
            b.add(name, help, Kind::Counter, &[(label, rest)], v);
        };
        match group {
            "com" => counter(&mut b, "mysql_global_status_commands_total", "Total number of executed MySQL commands.", "command"),
            "handler" => counter(&mut b, "mysql_global_status_handlers_total", "Total number of executed MySQL handlers.", "handler"),
            "connection_errors" => counter(&mut b, "mysql_global_status_connection_errors_total", "Total number of MySQL connection errors.", "error"),
            "innodb_buffer_pool_pages" => match rest {
                "data" | "free" | "misc" | "old" => b.add("mysql_global_status_buffer_pool_pages", "Innodb buffer pool pages by state.", Kind::Gauge, &[("state", rest)], v),
                "dirty" => b.add("mysql_global_status_buffer_pool_dirty_pages", "Innodb buffer pool dirty pages.", Kind::Gauge, &[], v),
                "total" => {}
                _ => counter(&mut b, "mysql_global_status_buffer_pool_page_changes_total", "Innodb buffer pool page state changes.", "operation"),
            },
            "innodb_rows" => counter(&mut b, "mysql_global_status_innodb_row_ops_total", "Total number of MySQL InnoDB row operations.", "operation"),
            _ => counter(&mut b, "mysql_global_status_performance_schema_lost_total", "Total number of MySQL instrumentations that could not be loaded or created due to memory constraints.", "instrumentation"),
        }
    }
    if !galera[0].1.is_empty() {
        b.add(
            "mysql_galera_status_info",
            "PXC/Galera status information.",
            Kind::Gauge,
            &galera,
            1.0,
        );
    }
    b.finish()
}

/// `SHOW GLOBAL VARIABLES` rows: every numeric (or ON/OFF-like) variable as the gauge
/// `mysql_global_variables_<lowercase>`, `mysql_version_info`, and when set
/// `mysql_transaction_isolation{level}`, `mysql_galera_variables_info{wsrep_cluster_name}`
/// and `mysql_galera_gcache_size_bytes`.
pub fn global_variables(rows: &[(String, String)]) -> Vec<Family> {
    let mut b = Builder::default();
    let mut text: BTreeMap<&str, &str> = [
        "innodb_version",
        "version",
        "version_comment",
        "wsrep_cluster_name",
        "wsrep_provider_options",
        "tx_isolation",
        "transaction_isolation",
    ]
    .into_iter()
    .map(|k| (k, ""))
    .collect();
    for (name, value) in rows {
        let key = name.to_ascii_lowercase();
        match parse_status(value) {
            Some(v) => b.add(
                &format!("mysql_global_variables_{key}"),
                "Generic gauge metric from SHOW GLOBAL VARIABLES.",
                Kind::Gauge,
                &[],
                v,
            ),
            None => {
                if let Some(slot) = text.get_mut(key.as_str()) {
                    *slot = value.as_str();
                }
            }
        }
    }
    b.add(
        "mysql_version_info",
        "MySQL version and distribution.",
        Kind::Gauge,
        &[
            ("innodb_version", text["innodb_version"]),
            ("version", text["version"]),
            ("version_comment", text["version_comment"]),
        ],
        1.0,
    );
    let level = Some(text["transaction_isolation"])
        .filter(|l| !l.is_empty())
        .unwrap_or(text["tx_isolation"]);
    if !level.is_empty() {
        b.add(
            "mysql_transaction_isolation",
            "MySQL transaction isolation.",
            Kind::Gauge,
            &[("level", level)],
            1.0,
        );
    }
    if !text["wsrep_cluster_name"].is_empty() {
        b.add(
            "mysql_galera_variables_info",
            "PXC/Galera variables information.",
            Kind::Gauge,
            &[("wsrep_cluster_name", text["wsrep_cluster_name"])],
            1.0,
        );
    }
    if !text["wsrep_provider_options"].is_empty() {
        b.add(
            "mysql_galera_gcache_size_bytes",
            "PXC/Galera gcache size.",
            Kind::Gauge,
            &[],
            gcache_size(text["wsrep_provider_options"]),
        );
    }
    b.finish()
}

/// `gcache.size = <n>[MG];` in `wsrep_provider_options`, in bytes (0 when absent).
fn gcache_size(options: &str) -> f64 {
    let Some(rest) = options.split("gcache.size = ").nth(1) else {
        return 0.0;
    };
    let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let tail = &rest[n.len()..];
    let (mult, tail) = match tail.chars().next() {
        Some('M') => (1024.0 * 1024.0, &tail[1..]),
        Some('G') => (1024.0 * 1024.0 * 1024.0, &tail[1..]),
        _ => (1.0, tail),
    };
    match (n.parse::<f64>(), tail.starts_with(';')) {
        (Ok(v), true) => v * mult,
        _ => 0.0,
    }
}

/// One row of `SHOW ALL SLAVES STATUS`: every column by its name as the server spells it,
/// with its value as text (`None` for NULL).
pub type SlaveRow = Vec<(String, Option<String>)>;

/// `mysql_slave_status_<lowercase column>` (untyped) for every column whose value
/// [`parse_status`] reads (`Slave_IO_Running`: Yes → 1, No and Connecting → 0;
/// `Seconds_Behind_Master` absent while NULL), labelled `master_host`, `master_uuid`,
/// `channel_name`, `connection_name` from the columns of those names (MariaDB has only
/// `Master_Host` and `Connection_name`).
pub fn slave_status(rows: &[SlaveRow]) -> Vec<Family> {
    let mut b = Builder::default();
    for row in rows {
        let col = |name: &str| {
            row.iter()
                .find(|(c, _)| c == name)
                .and_then(|(_, v)| v.as_deref())
                .unwrap_or("")
        };
        let labels = [
            ("master_host", col("Master_Host")),
            ("master_uuid", col("Master_UUID")),
            ("channel_name", col("Channel_Name")),
            ("connection_name", col("Connection_name")),
        ];
        for (column, value) in row {
            if let Some(v) = value.as_deref().and_then(parse_status) {
                b.add(
                    &format!("mysql_slave_status_{}", column.to_ascii_lowercase()),
                    "Generic metric from SHOW SLAVE STATUS.",
                    Kind::Untyped,
                    &labels,
                    v,
                );
            }
        }
    }
    b.finish()
}

/// One group of `information_schema.processlist` (without the agent's own connection):
/// user, host without port, command, state, how many threads and their seconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessRow {
    pub user: String,
    pub host: String,
    pub command: String,
    pub state: String,
    pub count: u64,
    pub seconds: u64,
}

/// A command or state as the exporter labels it: lowercase, `unknown` when empty, spaces
/// and dashes to `_`, `;,:.()` dropped.
pub fn sanitize_state(s: &str) -> String {
    if s.is_empty() {
        return "unknown".into();
    }
    s.to_lowercase()
        .chars()
        .filter(|c| !matches!(c, ';' | ',' | ':' | '.' | '(' | ')'))
        .map(|c| if c == ' ' || c == '-' { '_' } else { c })
        .collect()
}

/// `mysql_info_schema_processlist_threads`/`_seconds{command,state}` and
/// `_processes_by_user{mysql_user}`/`_processes_by_host{client_host}` (the exporter's
/// defaults with `--collect.info_schema.processlist`).
pub fn processlist(rows: &[ProcessRow]) -> Vec<Family> {
    let mut threads: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    let mut by_host: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_user: BTreeMap<String, u64> = BTreeMap::new();
    for r in rows {
        let t = threads
            .entry((sanitize_state(&r.command), sanitize_state(&r.state)))
            .or_default();
        t.0 += r.count;
        t.1 += r.seconds;
        let host = if r.host.is_empty() {
            "unknown"
        } else {
            &r.host
        };
        *by_host.entry(host.to_owned()).or_default() += r.count;
        *by_user.entry(r.user.clone()).or_default() += r.count;
    }
    let mut b = Builder::default();
    for ((command, state), (count, seconds)) in &threads {
        let labels = [("command", command.as_str()), ("state", state.as_str())];
        b.add(
            "mysql_info_schema_processlist_threads",
            "The number of threads split by current state.",
            Kind::Gauge,
            &labels,
            *count as f64,
        );
        b.add(
            "mysql_info_schema_processlist_seconds",
            "The number of seconds threads have used split by current state.",
            Kind::Gauge,
            &labels,
            *seconds as f64,
        );
    }
    for (host, n) in &by_host {
        b.add(
            "mysql_info_schema_processlist_processes_by_host",
            "The number of processes by host.",
            Kind::Gauge,
            &[("client_host", host)],
            *n as f64,
        );
    }
    for (user, n) in &by_user {
        b.add(
            "mysql_info_schema_processlist_processes_by_user",
            "The number of processes by user.",
            Kind::Gauge,
            &[("mysql_user", user)],
            *n as f64,
        );
    }
    b.finish()
}

/// `information_schema.innodb_cmp` rows: page size, then compress ops, compress ops ok,
/// compress time (s), uncompress ops, uncompress time (s).
pub fn innodb_cmp(rows: &[(String, [f64; 5])]) -> Vec<Family> {
    const FAMILIES: [(&str, &str); 5] = [
        (
            "mysql_info_schema_innodb_cmp_compress_ops_total",
            "Number of times a B-tree page of the size PAGE_SIZE has been compressed.",
        ),
        (
            "mysql_info_schema_innodb_cmp_compress_ops_ok_total",
            "Number of times a B-tree page of the size PAGE_SIZE has been successfully compressed.",
        ),
        (
            "mysql_info_schema_innodb_cmp_compress_time_seconds_total",
            "Total time in seconds spent in attempts to compress B-tree pages.",
        ),
        (
            "mysql_info_schema_innodb_cmp_uncompress_ops_total",
            "Number of times a B-tree page of the size PAGE_SIZE has been uncompressed.",
        ),
        (
            "mysql_info_schema_innodb_cmp_uncompress_time_seconds_total",
            "Total time in seconds spent in uncompressing B-tree pages.",
        ),
    ];
    let mut b = Builder::default();
    for (page_size, values) in rows {
        for ((name, help), v) in FAMILIES.iter().zip(values) {
            b.add(name, help, Kind::Counter, &[("page_size", page_size)], *v);
        }
    }
    b.finish()
}

/// `information_schema.innodb_cmpmem` rows: page size, buffer pool instance, then pages
/// used, pages free, relocation ops, relocation time (ms, exported in seconds).
pub fn innodb_cmpmem(rows: &[(String, String, [f64; 4])]) -> Vec<Family> {
    const FAMILIES: [(&str, &str); 4] = [
        (
            "mysql_info_schema_innodb_cmpmem_pages_used_total",
            "Number of blocks of the size PAGE_SIZE that are currently in use.",
        ),
        (
            "mysql_info_schema_innodb_cmpmem_pages_free_total",
            "Number of blocks of the size PAGE_SIZE that are currently available for allocation.",
        ),
        (
            "mysql_info_schema_innodb_cmpmem_relocation_ops_total",
            "Number of times a block of the size PAGE_SIZE has been relocated.",
        ),
        (
            "mysql_info_schema_innodb_cmpmem_relocation_time_seconds_total",
            "Total time in seconds spent in relocating blocks.",
        ),
    ];
    let mut b = Builder::default();
    for (page_size, pool, values) in rows {
        for (i, ((name, help), v)) in FAMILIES.iter().zip(values).enumerate() {
            let v = if i == 3 { v / 1000.0 } else { *v };
            b.add(
                name,
                help,
                Kind::Counter,
                &[("page_size", page_size), ("buffer_pool", pool)],
                v,
            );
        }
    }
    b.finish()
}

/// What the exporter says about its own scrape: per sub-collector duration (and the
/// connection's, under `connection`), whether the last scrape failed, how many scrapes,
/// failures per sub-collector since start (absent until the first), and `mysql_up`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScrapeStats {
    pub up: bool,
    pub durations: Vec<(String, f64)>,
    pub last_error: bool,
    pub scrapes: u64,
    pub errors: BTreeMap<String, u64>,
}

pub fn exporter(s: &ScrapeStats) -> Vec<Family> {
    let mut b = Builder::default();
    for (collector, secs) in &s.durations {
        b.add(
            "mysql_exporter_collector_duration_seconds",
            "Collector time duration.",
            Kind::Gauge,
            &[("collector", collector)],
            *secs,
        );
    }
    b.add("mysql_exporter_last_scrape_error", "Whether the last scrape of metrics from MySQL resulted in an error (1 for error, 0 for success).", Kind::Gauge, &[], if s.last_error { 1.0 } else { 0.0 });
    b.add(
        "mysql_exporter_scrapes_total",
        "Total number of times MySQL was scraped for metrics.",
        Kind::Counter,
        &[],
        s.scrapes as f64,
    );
    for (collector, n) in &s.errors {
        b.add(
            "mysql_exporter_scrape_errors_total",
            "Total number of times an error occurred scraping a MySQL.",
            Kind::Counter,
            &[("collector", collector)],
            *n as f64,
        );
    }
    b.add(
        "mysql_up",
        "Whether the MySQL server is up.",
        Kind::Gauge,
        &[],
        if s.up { 1.0 } else { 0.0 },
    );
    b.finish()
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

/// The query response time tables, with the histogram each becomes.
pub const QUERY_RESPONSE_TIME: [(&str, &str, &str); 3] = [
    (
        "QUERY_RESPONSE_TIME",
        "mysql_info_schema_query_response_time_seconds",
        "The number of all queries by duration they took to execute.",
    ),
    (
        "QUERY_RESPONSE_TIME_READ",
        "mysql_info_schema_read_query_response_time_seconds",
        "The number of read queries by duration they took to execute.",
    ),
    (
        "QUERY_RESPONSE_TIME_WRITE",
        "mysql_info_schema_write_query_response_time_seconds",
        "The number of write queries by duration they took to execute.",
    ),
];

/// A query response time table (TIME, COUNT, TOTAL as text) as the exporter's histogram:
/// cumulative buckets at each TIME, the `TOO LONG` row (TIME not a number) left out of
/// buckets, sum and count, as the exporter does. Counts or totals that are not numbers
/// count as 0 (the exporter ignores the parse error) and as skipped rows here.
pub fn query_response_time(
    name: &str,
    help: &str,
    rows: &[(String, String, String)],
) -> (Family, u64) {
    let mut count = 0u64;
    let mut sum = 0.0;
    let mut skipped = 0;
    let mut buckets: BTreeMap<u64, (f64, u64)> = BTreeMap::new();
    for (time, n, total) in rows {
        let le = go_float(time.trim()).unwrap_or(0.0);
        let n = n.trim().parse::<u64>();
        let total = go_float(total.trim());
        if le == 0.0 {
            continue;
        }
        if n.is_err() || total.is_none() {
            skipped += 1;
        }
        count += n.unwrap_or(0);
        sum += total.unwrap_or(0.0);
        buckets.insert(le.to_bits(), (le, count));
    }
    let mut bounds: Vec<(f64, u64)> = buckets.into_values().collect();
    bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut samples: Vec<Sample> = bounds
        .iter()
        .filter(|(le, _)| le.is_finite())
        .map(|(le, c)| Sample {
            labels: vec![("le".into(), go_float_text(*le))],
            value: *c as f64,
            suffix: "_bucket",
        })
        .collect();
    samples.push(Sample {
        labels: vec![("le".into(), "+Inf".into())],
        value: count as f64,
        suffix: "_bucket",
    });
    samples.push(Sample {
        labels: Vec::new(),
        value: sum,
        suffix: "_sum",
    });
    samples.push(Sample {
        labels: Vec::new(),
        value: count as f64,
        suffix: "_count",
    });
    (
        Family {
            name: name.to_owned(),
            help: help.to_owned(),
            kind: Kind::Histogram,
            samples,
        },
        skipped,
    )
}

/// A float as Go's `strconv.FormatFloat(v, 'g', -1, 64)` writes it (how the Go client
/// writes `le` and values): the shortest digits, in exponent form (`1e-06`, `1e+06`) when
/// the decimal exponent is below -4 or at least 6.
pub fn go_float_text(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let e = format!("{v:e}");
    let Some((mantissa, exp)) = e.split_once('e') else {
        return e;
    };
    let Ok(exp) = exp.parse::<i32>() else {
        return e;
    };
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expo;

    /// The exposition of `families` without `# HELP` lines (help texts are checked
    /// against the real exporter by the integration test).
    fn check(families: &[Family], expect: &str) {
        let text: String = expo::text(families)
            .lines()
            .filter(|l| !l.starts_with("# HELP"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(text, expect);
    }

    fn rows(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn status_values() {
        for (input, expect) in [
            ("12", Some(12.0)),
            ("-3", Some(-3.0)),
            ("1.5", Some(1.5)),
            ("1e3", Some(1000.0)),
            ("18446744073709551615", Some(18446744073709551615.0)),
            ("ON", Some(1.0)),
            ("off", Some(0.0)),
            ("YES", Some(1.0)),
            ("No", Some(0.0)),
            ("DISABLED", Some(0.0)),
            ("Connecting", Some(0.0)),
            ("Primary", Some(1.0)),
            ("non-Primary", Some(0.0)),
            ("Disconnected", Some(0.0)),
            ("2024-02-29 12:00:01", Some(1_709_208_001.0)),
            ("Dec 17 10:20:30 2027 GMT", Some(1_829_038_830.0)),
            ("Dec  7 10:20:30 2027 GMT", None),
            ("1e400", None),
            ("bin.000001", None),
            ("0-1-2", None),
            ("127.0.0.1", None),
            ("", None),
            ("NULL", None),
            ("AUTH_MASTER", None),
        ] {
            assert_eq!(parse_status(input), expect, "{input:?}");
        }
    }

    #[test]
    fn global_status_groups() {
        check(
            &global_status(&rows(&[
                ("Aborted_clients", "2"),
                ("Com_select", "7"),
                ("Com_show_status", "1"),
                ("Compression", "OFF"),
                ("Connection_errors_accept", "0"),
                ("Handler_read_key", "5"),
                ("Innodb_buffer_pool_pages_data", "296"),
                ("Innodb_buffer_pool_pages_dirty", "3"),
                ("Innodb_buffer_pool_pages_flushed", "9"),
                ("Innodb_buffer_pool_pages_total", "8112"),
                ("Innodb_buffer_pool_read_requests", "100"),
                ("Innodb_rows_read", "4"),
                ("Performance_schema_accounts_lost", "0"),
                ("Rpl_status", "AUTH_MASTER"),
                ("Max_memory_used", ""),
                ("wsrep_cluster_status", "Disconnected"),
            ])),
            "# TYPE mysql_global_status_aborted_clients untyped\n\
             mysql_global_status_aborted_clients 2\n\
             # TYPE mysql_global_status_buffer_pool_dirty_pages gauge\n\
             mysql_global_status_buffer_pool_dirty_pages 3\n\
             # TYPE mysql_global_status_buffer_pool_page_changes_total counter\n\
             mysql_global_status_buffer_pool_page_changes_total{operation=\"flushed\"} 9\n\
             # TYPE mysql_global_status_buffer_pool_pages gauge\n\
             mysql_global_status_buffer_pool_pages{state=\"data\"} 296\n\
             # TYPE mysql_global_status_commands_total counter\n\
             mysql_global_status_commands_total{command=\"select\"} 7\n\
             mysql_global_status_commands_total{command=\"show_status\"} 1\n\
             # TYPE mysql_global_status_compression untyped\n\
             mysql_global_status_compression 0\n\
             # TYPE mysql_global_status_connection_errors_total counter\n\
             mysql_global_status_connection_errors_total{error=\"accept\"} 0\n\
             # TYPE mysql_global_status_handlers_total counter\n\
             mysql_global_status_handlers_total{handler=\"read_key\"} 5\n\
             # TYPE mysql_global_status_innodb_buffer_pool_read_requests untyped\n\
             mysql_global_status_innodb_buffer_pool_read_requests 100\n\
             # TYPE mysql_global_status_innodb_row_ops_total counter\n\
             mysql_global_status_innodb_row_ops_total{operation=\"read\"} 4\n\
             # TYPE mysql_global_status_performance_schema_lost_total counter\n\
             mysql_global_status_performance_schema_lost_total{instrumentation=\"accounts_lost\"} 0\n\
             # TYPE mysql_global_status_wsrep_cluster_status untyped\n\
             mysql_global_status_wsrep_cluster_status 0\n",
        );
        check(
            &global_status(&rows(&[
                ("wsrep_local_state_uuid", "u1"),
                ("wsrep_cluster_state_uuid", "u2"),
                ("wsrep_provider_version", "26.4.3(r4535)"),
            ])),
            "# TYPE mysql_galera_status_info gauge\n\
             mysql_galera_status_info{wsrep_cluster_state_uuid=\"u2\",wsrep_local_state_uuid=\"u1\",wsrep_provider_version=\"26.4.3(r4535)\"} 1\n",
        );
    }

    #[test]
    fn global_variables_and_info() {
        check(
            &global_variables(&rows(&[
                ("max_connections", "151"),
                ("have_ssl", "DISABLED"),
                ("datadir", "/var/lib/mysql/"),
                ("version", "10.11.6-MariaDB-0+deb12u1-log"),
                ("version_comment", "Debian 12"),
                ("tx_isolation", "REPEATABLE-READ"),
                ("wsrep_cluster_name", "my_wsrep_cluster"),
                ("wsrep_provider_options", "base_port = 4567; gcache.size = 128M; x = 1"),
            ])),
            "# TYPE mysql_galera_gcache_size_bytes gauge\n\
             mysql_galera_gcache_size_bytes 134217728\n\
             # TYPE mysql_galera_variables_info gauge\n\
             mysql_galera_variables_info{wsrep_cluster_name=\"my_wsrep_cluster\"} 1\n\
             # TYPE mysql_global_variables_have_ssl gauge\n\
             mysql_global_variables_have_ssl 0\n\
             # TYPE mysql_global_variables_max_connections gauge\n\
             mysql_global_variables_max_connections 151\n\
             # TYPE mysql_transaction_isolation gauge\n\
             mysql_transaction_isolation{level=\"REPEATABLE-READ\"} 1\n\
             # TYPE mysql_version_info gauge\n\
             mysql_version_info{version=\"10.11.6-MariaDB-0+deb12u1-log\",version_comment=\"Debian 12\"} 1\n",
        );
        // No text variables at all: the version family is still there, unlabelled.
        check(
            &global_variables(&[]),
            "# TYPE mysql_version_info gauge\nmysql_version_info 1\n",
        );
        for (options, bytes) in [
            ("gcache.size = 2G;", 2.0 * 1024.0 * 1024.0 * 1024.0),
            ("gcache.size = 1000;", 1000.0),
            ("gcache.size = 12M", 0.0),
            ("gcache.dir = /x;", 0.0),
        ] {
            assert_eq!(gcache_size(options), bytes, "{options}");
        }
    }

    fn slave(cols: &[(&str, Option<&str>)]) -> SlaveRow {
        cols.iter()
            .map(|(c, v)| ((*c).to_owned(), v.map(str::to_owned)))
            .collect()
    }

    #[test]
    fn slave_status_rows() {
        let row = |io: &str, behind: Option<&str>| {
            slave(&[
                ("Connection_name", Some("")),
                ("Slave_IO_State", Some("Waiting for master to send event")),
                ("Master_Host", Some("198.18.2.21")),
                ("Master_Port", Some("3306")),
                ("Relay_Log_File", Some("relay-bin.000002")),
                ("Slave_IO_Running", Some(io)),
                ("Slave_SQL_Running", Some("Yes")),
                ("Seconds_Behind_Master", behind),
                ("SQL_Delay", Some("30")),
                ("Gtid_IO_Pos", Some("0-1-5")),
            ])
        };
        let labels = "{master_host=\"198.18.2.21\"}";
        check(
            &slave_status(&[row("Yes", Some("3"))]),
            &format!(
                "# TYPE mysql_slave_status_master_port untyped\n\
                 mysql_slave_status_master_port{labels} 3306\n\
                 # TYPE mysql_slave_status_seconds_behind_master untyped\n\
                 mysql_slave_status_seconds_behind_master{labels} 3\n\
                 # TYPE mysql_slave_status_slave_io_running untyped\n\
                 mysql_slave_status_slave_io_running{labels} 1\n\
                 # TYPE mysql_slave_status_slave_sql_running untyped\n\
                 mysql_slave_status_slave_sql_running{labels} 1\n\
                 # TYPE mysql_slave_status_sql_delay untyped\n\
                 mysql_slave_status_sql_delay{labels} 30\n"
            ),
        );
        // Reconnecting to a lost primary: IO "Connecting" is 0, the lag NULL is absent.
        let text = expo::text(&slave_status(&[row("Connecting", None)]));
        assert!(
            text.contains(&format!("mysql_slave_status_slave_io_running{labels} 0\n")),
            "{text}"
        );
        assert!(!text.contains("seconds_behind_master"), "{text}");
        // Two named sources: one sample each, told apart by connection_name.
        let mut a = row("Yes", Some("0"));
        a[0].1 = Some("east".into());
        let text = expo::text(&slave_status(&[a, row("No", Some("1"))]));
        assert!(text.contains("mysql_slave_status_slave_io_running{connection_name=\"east\",master_host=\"198.18.2.21\"} 1\n"), "{text}");
        assert!(
            text.contains(&format!("mysql_slave_status_slave_io_running{labels} 0\n")),
            "{text}"
        );
        check(&slave_status(&[]), "");
    }

    #[test]
    fn states_as_the_exporter_labels_them() {
        for (input, expect) in [
            ("", "unknown"),
            ("Sleep", "sleep"),
            ("User sleep", "user_sleep"),
            ("Binlog Dump", "binlog_dump"),
            (
                "Master has sent all binlog to slave; waiting for more updates",
                "master_has_sent_all_binlog_to_slave_waiting_for_more_updates",
            ),
            (
                "Waiting for table metadata lock",
                "waiting_for_table_metadata_lock",
            ),
            ("Filling schema table", "filling_schema_table"),
            (
                "Slave has read all relay log; waiting for more updates",
                "slave_has_read_all_relay_log_waiting_for_more_updates",
            ),
            (
                "Reading event from the relay log",
                "reading_event_from_the_relay_log",
            ),
            ("checking permissions (x.y)", "checking_permissions_xy"),
            ("semi-sync: waiting", "semi_sync_waiting"),
        ] {
            assert_eq!(sanitize_state(input), expect, "{input:?}");
        }
    }

    #[test]
    fn processlist_groups() {
        let p = |user: &str, host: &str, command: &str, state: &str, count, seconds| ProcessRow {
            user: user.into(),
            host: host.into(),
            command: command.into(),
            state: state.into(),
            count,
            seconds,
        };
        check(
            &processlist(&[
                p("foobar_app", "198.18.1.11", "Sleep", "", 3, 10),
                p("foobar_app", "198.18.1.12", "Sleep", "", 2, 4),
                p("root", "localhost", "Query", "User sleep", 1, 7),
                p("system user", "", "Slave_SQL", "Slave has read all relay log; waiting for more updates", 1, 100),
            ]),
            "# TYPE mysql_info_schema_processlist_processes_by_host gauge\n\
             mysql_info_schema_processlist_processes_by_host{client_host=\"198.18.1.11\"} 3\n\
             mysql_info_schema_processlist_processes_by_host{client_host=\"198.18.1.12\"} 2\n\
             mysql_info_schema_processlist_processes_by_host{client_host=\"localhost\"} 1\n\
             mysql_info_schema_processlist_processes_by_host{client_host=\"unknown\"} 1\n\
             # TYPE mysql_info_schema_processlist_processes_by_user gauge\n\
             mysql_info_schema_processlist_processes_by_user{mysql_user=\"foobar_app\"} 5\n\
             mysql_info_schema_processlist_processes_by_user{mysql_user=\"root\"} 1\n\
             mysql_info_schema_processlist_processes_by_user{mysql_user=\"system user\"} 1\n\
             # TYPE mysql_info_schema_processlist_seconds gauge\n\
             mysql_info_schema_processlist_seconds{command=\"query\",state=\"user_sleep\"} 7\n\
             mysql_info_schema_processlist_seconds{command=\"slave_sql\",state=\"slave_has_read_all_relay_log_waiting_for_more_updates\"} 100\n\
             mysql_info_schema_processlist_seconds{command=\"sleep\",state=\"unknown\"} 14\n\
             # TYPE mysql_info_schema_processlist_threads gauge\n\
             mysql_info_schema_processlist_threads{command=\"query\",state=\"user_sleep\"} 1\n\
             mysql_info_schema_processlist_threads{command=\"slave_sql\",state=\"slave_has_read_all_relay_log_waiting_for_more_updates\"} 1\n\
             mysql_info_schema_processlist_threads{command=\"sleep\",state=\"unknown\"} 5\n",
        );
        check(&processlist(&[]), "");
    }

    #[test]
    fn innodb_compression_tables() {
        let text = expo::text(&innodb_cmp(&[("1024".into(), [1.0, 2.0, 3.0, 4.0, 5.0])]));
        for line in [
            "mysql_info_schema_innodb_cmp_compress_ops_total{page_size=\"1024\"} 1",
            "mysql_info_schema_innodb_cmp_compress_ops_ok_total{page_size=\"1024\"} 2",
            "mysql_info_schema_innodb_cmp_compress_time_seconds_total{page_size=\"1024\"} 3",
            "mysql_info_schema_innodb_cmp_uncompress_ops_total{page_size=\"1024\"} 4",
            "mysql_info_schema_innodb_cmp_uncompress_time_seconds_total{page_size=\"1024\"} 5",
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} in {text}");
        }
        let text = expo::text(&innodb_cmpmem(&[(
            "2048".into(),
            "0".into(),
            [1.0, 2.0, 3.0, 4500.0],
        )]));
        for line in [
            "mysql_info_schema_innodb_cmpmem_pages_used_total{buffer_pool=\"0\",page_size=\"2048\"} 1",
            "mysql_info_schema_innodb_cmpmem_pages_free_total{buffer_pool=\"0\",page_size=\"2048\"} 2",
            "mysql_info_schema_innodb_cmpmem_relocation_ops_total{buffer_pool=\"0\",page_size=\"2048\"} 3",
            "mysql_info_schema_innodb_cmpmem_relocation_time_seconds_total{buffer_pool=\"0\",page_size=\"2048\"} 4.5",
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} in {text}");
        }
    }

    #[test]
    fn exporter_families() {
        let mut s = ScrapeStats {
            up: true,
            durations: vec![
                ("connection".into(), 0.5),
                ("collect.global_status".into(), 0.25),
            ],
            last_error: false,
            scrapes: 3,
            errors: BTreeMap::new(),
        };
        check(
            &exporter(&s),
            "# TYPE mysql_exporter_collector_duration_seconds gauge\n\
             mysql_exporter_collector_duration_seconds{collector=\"collect.global_status\"} 0.25\n\
             mysql_exporter_collector_duration_seconds{collector=\"connection\"} 0.5\n\
             # TYPE mysql_exporter_last_scrape_error gauge\n\
             mysql_exporter_last_scrape_error 0\n\
             # TYPE mysql_exporter_scrapes_total counter\n\
             mysql_exporter_scrapes_total 3\n\
             # TYPE mysql_up gauge\n\
             mysql_up 1\n",
        );
        s = ScrapeStats {
            up: false,
            durations: Vec::new(),
            last_error: true,
            scrapes: 4,
            errors: [("collect.slave_status".to_owned(), 2)]
                .into_iter()
                .collect(),
        };
        check(
            &exporter(&s),
            "# TYPE mysql_exporter_last_scrape_error gauge\n\
             mysql_exporter_last_scrape_error 1\n\
             # TYPE mysql_exporter_scrape_errors_total counter\n\
             mysql_exporter_scrape_errors_total{collector=\"collect.slave_status\"} 2\n\
             # TYPE mysql_exporter_scrapes_total counter\n\
             mysql_exporter_scrapes_total 4\n\
             # TYPE mysql_up gauge\n\
             mysql_up 0\n",
        );
    }

    #[test]
    fn go_float_texts() {
        for (v, expect) in [
            (0.0, "0"),
            (1e-6, "1e-06"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (0.1, "0.1"),
            (1.0, "1"),
            (100_000.0, "100000"),
            (1e6, "1e+06"),
            (1_234_567.0, "1.234567e+06"),
            (18_446_744_073_709_551_615.0, "1.8446744073709552e+19"),
        ] {
            assert_eq!(go_float_text(v), expect, "{v}");
        }
    }

    #[test]
    fn query_response_time_histogram() {
        let r = |t: &str, n: &str, total: &str| (t.to_owned(), n.to_owned(), total.to_owned());
        let (f, skipped) = query_response_time(
            "mysql_info_schema_query_response_time_seconds",
            "h",
            &[
                r("  0.000001", "1", "  0.000000"),
                r("  0.000010", "2", "  0.000015"),
                r("  1.000000", "0", "  0.000000"),
                r("TOO LONG", "4", "TOO LONG"),
                r("  10.000000", "x", "  1.0"),
            ],
        );
        assert_eq!(skipped, 1);
        check(
            &[f],
            "# TYPE mysql_info_schema_query_response_time_seconds histogram\n\
             mysql_info_schema_query_response_time_seconds_bucket{le=\"1e-06\"} 1\n\
             mysql_info_schema_query_response_time_seconds_bucket{le=\"1e-05\"} 3\n\
             mysql_info_schema_query_response_time_seconds_bucket{le=\"1\"} 3\n\
             mysql_info_schema_query_response_time_seconds_bucket{le=\"10\"} 3\n\
             mysql_info_schema_query_response_time_seconds_bucket{le=\"+Inf\"} 3\n\
             mysql_info_schema_query_response_time_seconds_sum 1.000015\n\
             mysql_info_schema_query_response_time_seconds_count 3\n",
        );
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
}

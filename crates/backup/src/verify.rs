//! `rampart backup verify`: a restore compared with the source, table by table.
//!
//! The source is read inside one consistent snapshot (`START TRANSACTION WITH
//! CONSISTENT SNAPSHOT`), whose binlog coordinates (`binlog_snapshot_file` and
//! `_position`) give the snapshot's GTID through `BINLOG_GTID_POS`. The store is then
//! restored to exactly that GTID (the latest backup plus the archived binlog up to it)
//! and the same checksums are computed on the scratch server. So the check covers the
//! backup and the archive together, against what the source really held, without
//! pausing the source. Each table's checksum is its row count and the sum of a CRC32
//! of every row's columns (NULLs marked), which does not depend on row order.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::restore::{gtid_le, restore, Point, Restored};
use crate::store::Store;
use crate::tools;
use crate::Error;

/// `schema.table` → (rows, checksum).
pub type Checksums = BTreeMap<String, (u64, u64)>;

fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// The SQL listing every base table outside the system schemas with its columns, one
/// `schema<TAB>table<TAB>column` row each, in order.
pub const COLUMNS_SQL: &str = "SELECT table_schema, table_name, column_name FROM information_schema.columns \
     WHERE table_schema NOT IN ('mysql', 'sys', 'performance_schema', 'information_schema') \
     AND (table_schema, table_name) IN (SELECT table_schema, table_name FROM information_schema.tables \
     WHERE table_type = 'BASE TABLE') ORDER BY table_schema, table_name, ordinal_position";

/// One checksum query per table, from [`COLUMNS_SQL`]'s output.
pub fn checksum_queries(columns: &str) -> Vec<(String, String)> {
    let mut tables: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for line in columns.lines() {
        let mut it = line.split('\t');
        if let (Some(s), Some(t), Some(c)) = (it.next(), it.next(), it.next()) {
            tables
                .entry((s.to_owned(), t.to_owned()))
                .or_default()
                .push(c.to_owned());
        }
    }
    tables
        .into_iter()
        .map(|((s, t), cols)| {
            let values: Vec<String> = cols.iter().map(|c| ident(c)).collect();
            let nulls: Vec<String> = cols.iter().map(|c| format!("ISNULL({})", ident(c))).collect();
            let sql = format!(
                "SELECT '{s}.{t}', COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS(0x1f, {}, {}))), 0) FROM {}.{};",
                values.join(", "),
                nulls.join(", "),
                ident(&s),
                ident(&t)
            );
            (format!("{s}.{t}"), sql)
        })
        .collect()
}

/// Parses the `name<TAB>rows<TAB>sum` rows of the checksum queries.
pub fn parse_checksums(out: &str) -> Result<Checksums, Error> {
    let mut sums = Checksums::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        if let [name, rows, sum] = f[..] {
            let (Ok(rows), Ok(sum)) = (rows.parse(), sum.parse()) else {
                return Err(Error::Invalid(format!(
                    "a checksum row that is not numbers: {line}"
                )));
            };
            sums.insert(name.to_owned(), (rows, sum));
        }
    }
    Ok(sums)
}

/// The SQL batch that reads the source in one consistent snapshot: the snapshot's GTID
/// first (one row), then a checksum row per table.
pub fn snapshot_sql(queries: &[(String, String)]) -> String {
    let mut sql = String::from(
        "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ; \
         START TRANSACTION WITH CONSISTENT SNAPSHOT; \
         SELECT BINLOG_GTID_POS(\
           (SELECT variable_value FROM information_schema.session_status WHERE variable_name = 'binlog_snapshot_file'), \
           (SELECT variable_value FROM information_schema.session_status WHERE variable_name = 'binlog_snapshot_position'));\n",
    );
    for (_, q) in queries {
        sql.push_str(q);
        sql.push('\n');
    }
    sql.push_str("COMMIT;\n");
    sql
}

/// What differs between the source and the restore, one line per table.
pub fn differences(source: &Checksums, restored: &Checksums) -> Vec<String> {
    let mut out = Vec::new();
    for (t, s) in source {
        match restored.get(t) {
            None => out.push(format!("{t}: missing from the restore")),
            Some(r) if r != s => out.push(format!(
                "{t}: {} rows (checksum {}) in the source, {} rows (checksum {}) restored",
                s.0, s.1, r.0, r.1
            )),
            Some(_) => {}
        }
    }
    for t in restored.keys().filter(|t| !source.contains_key(*t)) {
        out.push(format!("{t}: in the restore, not in the source"));
    }
    out
}

/// What a verify found.
#[derive(Debug)]
pub struct Verified {
    /// The source's snapshot GTID, which the restore reached.
    pub gtid: String,
    pub tables: usize,
    pub rows: u64,
    pub restored: Restored,
}

/// Verifies the store against the source: `source` runs a SQL batch on the source
/// (the replica) and returns its output; `archived` returns the archive's position.
/// Waits up to `wait` for the archive to reach the snapshot. An error names every
/// table that differs.
pub fn verify(
    store: &Store,
    source: &dyn Fn(&str) -> Result<String, Error>,
    archived: &dyn Fn() -> Result<String, Error>,
    workdir: &Path,
    wait: Duration,
) -> Result<Verified, Error> {
    let queries = checksum_queries(&source(COLUMNS_SQL)?);
    let out = source(&snapshot_sql(&queries))?;
    let (gtid, rows) = out.split_once('\n').unwrap_or((out.as_str(), ""));
    let gtid = gtid.trim().to_owned();
    let expected = parse_checksums(rows)?;
    let deadline = Instant::now() + wait;
    loop {
        let at = archived()?;
        if gtid_le(&gtid, &at)? {
            break;
        }
        if Instant::now() > deadline {
            return Err(Error::Invalid(format!(
                "the binlog archive is at {at:?}, behind the source's {gtid}, after {} s",
                wait.as_secs()
            )));
        }
        tools::pause(Duration::from_millis(200));
    }
    let restored = restore(store, &Point::Gtid(gtid.clone()), workdir)?;
    let sql: String = queries
        .iter()
        .map(|(_, q)| q.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let got = parse_checksums(&restored.scratch.sql(&sql)?)?;
    let diff = differences(&expected, &got);
    if !diff.is_empty() {
        return Err(Error::Invalid(format!(
            "the restore at {gtid} differs from the source: {}",
            diff.join("; ")
        )));
    }
    Ok(Verified {
        gtid,
        tables: expected.len(),
        rows: expected.values().map(|(r, _)| r).sum(),
        restored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_quote_names_and_mark_nulls() {
        let q = checksum_queries("shop\tusers\tid\nshop\tusers\temail\nshop\tweird`t\tx\n");
        assert_eq!(q.len(), 2);
        assert_eq!(
            q[0].1,
            "SELECT 'shop.users', COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS(0x1f, `id`, `email`, \
             ISNULL(`id`), ISNULL(`email`)))), 0) FROM `shop`.`users`;"
        );
        assert!(q[1].1.ends_with("FROM `shop`.`weird``t`;"), "{}", q[1].1);
    }

    #[test]
    fn differences_name_each_table() {
        let s = parse_checksums("shop.users\t3\t99\nshop.orders\t1\t5\n").unwrap();
        let r = parse_checksums("shop.users\t3\t98\nshop.extra\t0\t0\n").unwrap();
        assert_eq!(
            differences(&s, &r),
            [
                "shop.orders: missing from the restore",
                "shop.users: 3 rows (checksum 99) in the source, 3 rows (checksum 98) restored",
                "shop.extra: in the restore, not in the source"
            ]
        );
        assert!(differences(&s, &s).is_empty());
        assert!(parse_checksums("t\tx\t1").is_err());
    }
}

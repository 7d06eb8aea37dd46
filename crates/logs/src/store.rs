//! The store: one SQLite database (rusqlite's bundled build, so the same SQLite on every
//! host) in WAL mode.
//!
//! - `streams`: one row per label set (its text form is the key), with the first and
//!   last timestamp seen, which the label APIs use.
//! - `entries`: (stream, timestamp in ns, a 64-bit hash of the line, line). The unique
//!   key (stream, timestamp, hash) makes an insert idempotent: a push the agent sends
//!   again after a lost acknowledgement stores nothing twice. The agent gives every line
//!   of a stream its own timestamp (strictly increasing), so no two lines share a key.
//! - No full-text index. Like Loki, the store indexes streams and time, and a line
//!   filter (`|= "text"`) reads the lines of the selected streams in the time range (at
//!   most [`MAX_SCAN`] of them). Every line is written once and read rarely: an FTS5
//!   trigram index, which the store had until 2026-12, cost 27 times the CPU of the
//!   insert itself (about 190 µs against 7 µs per 250-byte access-log line) and 3 times
//!   its disk, on every line, for a faster `|=` query. Opening a store made then drops
//!   that index.
//!
//! Retention: [`Store::enforce`] deletes what is older than the age limit, then the
//! oldest lines until the live pages fit the size limit (freed pages are reused, so the
//! file stops growing).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use crate::labels::{parse_labels, Labels};
use crate::logql::{LogQuery, MetricQuery, RangeFn};
use crate::push::Push;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("log store {0}: {1}")]
    Sqlite(String, rusqlite::Error),
    #[error("{0}")]
    Query(String),
}

/// Which end of the range a log query starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Backward,
    Forward,
}

/// What one append did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Appended {
    pub stored: u64,
    /// Lines the store had already (a retried push).
    pub duplicates: u64,
}

/// What one retention pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub by_age: u64,
    pub by_size: u64,
}

/// How long and how much the store keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub max_age_ns: i64,
    pub max_bytes: u64,
}

/// Streams of a log query's answer: labels → (ns, line), in the query's direction.
pub type Streams = Vec<(Labels, Vec<(i64, String)>)>;
/// Series of a metric query's answer: labels → (ns, value).
pub type Series = Vec<(Labels, Vec<(i64, f64)>)>;

/// The most rows one query reads, and the most points a metric query answers.
pub const MAX_SCAN: u64 = 5_000_000;
pub const MAX_POINTS: i64 = 11_000;

pub struct Store {
    conn: Mutex<Connection>,
    name: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("name", &self.name).finish()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS streams(
    id INTEGER PRIMARY KEY,
    labels TEXT NOT NULL UNIQUE,
    first_ts INTEGER NOT NULL,
    last_ts INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS entries(
    id INTEGER PRIMARY KEY,
    stream INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    h INTEGER NOT NULL,
    line TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS entries_key ON entries(stream, ts, h);
CREATE INDEX IF NOT EXISTS entries_ts ON entries(ts);
DROP TRIGGER IF EXISTS entries_ai;
DROP TRIGGER IF EXISTS entries_ad;
DROP TABLE IF EXISTS lines;
";

fn fnv(line: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in line.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}

impl Store {
    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let name = path.display().to_string();
        let conn = Connection::open(path).map_err(|e| StoreError::Sqlite(name.clone(), e))?;
        Self::init(conn, name)
    }

    /// A store in memory (tests).
    pub fn in_memory() -> Result<Store, StoreError> {
        let conn =
            Connection::open_in_memory().map_err(|e| StoreError::Sqlite(":memory:".into(), e))?;
        Self::init(conn, ":memory:".into())
    }

    fn init(conn: Connection, name: String) -> Result<Store, StoreError> {
        let err = |e| StoreError::Sqlite(name.clone(), e);
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Store {
            conn: Mutex::new(conn),
            name,
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |e| StoreError::Sqlite(self.name.clone(), e)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a push in one transaction: all of it or, on an error, none.
    pub fn append(&self, push: &Push) -> Result<Appended, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(self.err())?;
        let mut done = Appended::default();
        {
            let mut find = tx
                .prepare_cached("SELECT id FROM streams WHERE labels = ?1")
                .map_err(self.err())?;
            let mut add_stream = tx
                .prepare_cached(
                    "INSERT INTO streams(labels, first_ts, last_ts) VALUES (?1, ?2, ?3)",
                )
                .map_err(self.err())?;
            let mut span = tx
                .prepare_cached(
                    "UPDATE streams SET first_ts = min(first_ts, ?2), last_ts = max(last_ts, ?3) \
                     WHERE id = ?1",
                )
                .map_err(self.err())?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO entries(stream, ts, h, line) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(self.err())?;
            for s in &push.streams {
                if s.entries.is_empty() {
                    continue;
                }
                let key = s.labels.to_string();
                let lo = s.entries.iter().map(|e| e.0).min().unwrap_or(0);
                let hi = s.entries.iter().map(|e| e.0).max().unwrap_or(0);
                let id: i64 = match find
                    .query_row(params![key], |r| r.get(0))
                    .optional()
                    .map_err(self.err())?
                {
                    Some(id) => {
                        span.execute(params![id, lo, hi]).map_err(self.err())?;
                        id
                    }
                    None => {
                        add_stream
                            .execute(params![key, lo, hi])
                            .map_err(self.err())?;
                        tx.last_insert_rowid()
                    }
                };
                for (ts, line) in &s.entries {
                    if insert
                        .execute(params![id, ts, fnv(line), line])
                        .map_err(self.err())?
                        == 1
                    {
                        done.stored += 1;
                    } else {
                        done.duplicates += 1;
                    }
                }
            }
        }
        tx.commit().map_err(self.err())?;
        Ok(done)
    }

    /// Every stream whose span overlaps `[start, end)`: (id, labels).
    fn streams(
        &self,
        conn: &Connection,
        start: i64,
        end: i64,
    ) -> Result<Vec<(i64, Labels)>, StoreError> {
        let mut st = conn
            .prepare_cached("SELECT id, labels FROM streams WHERE last_ts >= ?1 AND first_ts < ?2")
            .map_err(self.err())?;
        let rows = st
            .query_map(params![start, end], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(self.err())?;
        let mut out = Vec::new();
        for row in rows {
            let (id, text) = row.map_err(self.err())?;
            if let Ok(l) = parse_labels(&text) {
                out.push((id, l));
            }
        }
        Ok(out)
    }

    /// Calls `each(stream labels, ts, line)` for the lines of the streams `q` selects in
    /// `[start, end)`, in `direction`, until it returns false.
    fn scan(
        &self,
        q: &LogQuery,
        start: i64,
        end: i64,
        direction: Direction,
        mut each: impl FnMut(&Labels, i64, &str) -> bool,
    ) -> Result<(), StoreError> {
        let conn = self.lock();
        let streams: BTreeMap<i64, Labels> = self
            .streams(&conn, start, end)?
            .into_iter()
            .filter(|(_, l)| q.selects(l))
            .collect();
        if streams.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = streams.keys().map(i64::to_string).collect();
        let mut sql = format!(
            "SELECT stream, ts, line FROM entries WHERE stream IN ({}) AND ts >= ?1 AND ts < ?2",
            ids.join(",")
        );
        sql.push_str(match direction {
            Direction::Backward => " ORDER BY ts DESC, id DESC",
            Direction::Forward => " ORDER BY ts ASC, id ASC",
        });
        let mut st = conn.prepare(&sql).map_err(self.err())?;
        let mut rows = st.query(params![start, end]).map_err(self.err())?;
        // The pipeline's leading `|= "text"` filters, checked on the row's bytes before
        // the line is handed over (most lines fail them when there are any).
        let texts = q.required_text();
        let mut scanned = 0u64;
        while let Some(r) = rows.next().map_err(self.err())? {
            scanned += 1;
            if scanned > MAX_SCAN {
                return Err(StoreError::Query(format!(
                    "the query reads more than {MAX_SCAN} lines; narrow its time range or selector"
                )));
            }
            let line = r
                .get_ref(2)
                .map_err(self.err())?
                .as_str()
                .map_err(|e| self.err()(e.into()))?;
            if !texts.iter().all(|t| line.contains(t)) {
                continue;
            }
            let (sid, ts): (i64, i64) =
                (r.get(0).map_err(self.err())?, r.get(1).map_err(self.err())?);
            if let Some(labels) = streams.get(&sid) {
                if !each(labels, ts, line) {
                    break;
                }
            }
        }
        Ok(())
    }

    /// A log query: at most `limit` lines in `[start, end)`, grouped by the labels the
    /// pipeline gives them.
    pub fn select(
        &self,
        q: &LogQuery,
        start: i64,
        end: i64,
        limit: usize,
        direction: Direction,
    ) -> Result<Streams, StoreError> {
        let mut out: BTreeMap<Labels, Vec<(i64, String)>> = BTreeMap::new();
        let mut n = 0;
        if limit > 0 {
            self.scan(q, start, end, direction, |stream, ts, line| {
                if let Some(labels) = q.process(stream, line) {
                    out.entry(labels).or_default().push((ts, line.to_owned()));
                    n += 1;
                }
                n < limit
            })?;
        }
        Ok(out.into_iter().collect())
    }

    /// A metric query over `[start, end]` every `step` ns: one point per step where the
    /// range before it holds a line.
    pub fn metric(
        &self,
        q: &MetricQuery,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Series, StoreError> {
        if step <= 0 || end < start {
            return Err(StoreError::Query(
                "the step must be positive and end not before start".into(),
            ));
        }
        // In i128: the parameters may be anything an i64 holds.
        if (i128::from(end) - i128::from(start)) / i128::from(step) + 1 > i128::from(MAX_POINTS) {
            return Err(StoreError::Query(format!(
                "the query asks for more than {MAX_POINTS} points; raise the step"
            )));
        }
        let mut times: BTreeMap<Labels, Vec<i64>> = BTreeMap::new();
        self.scan(
            &q.log,
            start.saturating_sub(q.range).saturating_add(1),
            end.saturating_add(1),
            Direction::Forward,
            |stream, ts, line| {
                if let Some(labels) = q.log.process(stream, line) {
                    let key = match &q.sum_by {
                        Some(by) => labels.only(by),
                        None => labels,
                    };
                    times.entry(key).or_default().push(ts);
                }
                true
            },
        )?;
        let per = match q.func {
            RangeFn::CountOverTime => 1.0,
            RangeFn::Rate => 1e9 / q.range as f64,
        };
        let mut out = Vec::new();
        for (labels, mut ts) in times {
            ts.sort_unstable();
            let mut points = Vec::new();
            let (mut lo, mut hi) = (0usize, 0usize);
            let mut t = start;
            while t <= end {
                // Lines in (t - range, t].
                while hi < ts.len() && ts[hi] <= t {
                    hi += 1;
                }
                while lo < hi && ts[lo] <= t.saturating_sub(q.range) {
                    lo += 1;
                }
                if hi > lo {
                    points.push((t, (hi - lo) as f64 * per));
                }
                match t.checked_add(step) {
                    Some(next) => t = next,
                    None => break,
                }
            }
            if !points.is_empty() {
                out.push((labels, points));
            }
        }
        Ok(out)
    }

    /// The streams with lines in `[start, end)` that `selector` (when given) selects.
    fn selected(
        &self,
        start: i64,
        end: i64,
        selector: Option<&LogQuery>,
    ) -> Result<Vec<Labels>, StoreError> {
        let conn = self.lock();
        Ok(self
            .streams(&conn, start, end)?
            .into_iter()
            .map(|(_, l)| l)
            .filter(|l| selector.is_none_or(|q| q.selects(l)))
            .collect())
    }

    /// The label names of the streams with lines in `[start, end)` (those `selector`
    /// selects, when given).
    pub fn label_names(
        &self,
        start: i64,
        end: i64,
        selector: Option<&LogQuery>,
    ) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = self
            .selected(start, end, selector)?
            .iter()
            .flat_map(|l| l.pairs().iter().map(|(k, _)| k.clone()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// The values of label `name` over the streams with lines in `[start, end)` (those
    /// `selector` selects, when given).
    pub fn label_values(
        &self,
        name: &str,
        start: i64,
        end: i64,
        selector: Option<&LogQuery>,
    ) -> Result<Vec<String>, StoreError> {
        let mut values: Vec<String> = self
            .selected(start, end, selector)?
            .iter()
            .filter_map(|l| l.get(name).map(str::to_owned))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }

    /// The label sets of the streams with lines in `[start, end)` that any of
    /// `selectors` selects (Loki's series API), sorted.
    pub fn series(
        &self,
        selectors: &[LogQuery],
        start: i64,
        end: i64,
    ) -> Result<Vec<Labels>, StoreError> {
        let mut out: Vec<Labels> = self
            .selected(start, end, None)?
            .into_iter()
            .filter(|l| selectors.iter().any(|q| q.selects(l)))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Lines stored, and the bytes their live pages take.
    pub fn size(&self) -> Result<(u64, u64), StoreError> {
        let conn = self.lock();
        self.size_of(&conn)
    }

    fn size_of(&self, conn: &Connection) -> Result<(u64, u64), StoreError> {
        let lines: i64 = conn
            .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
            .map_err(self.err())?;
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .map_err(self.err())?;
        let free: i64 = conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .map_err(self.err())?;
        let size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(self.err())?;
        Ok((lines as u64, ((pages - free).max(0) * size) as u64))
    }

    /// One retention pass at `now` (ns).
    pub fn enforce(&self, now: i64, r: Retention) -> Result<Removed, StoreError> {
        let conn = self.lock();
        let mut removed = Removed {
            by_age: conn
                .execute(
                    "DELETE FROM entries WHERE ts < ?1",
                    params![now.saturating_sub(r.max_age_ns)],
                )
                .map_err(self.err())? as u64,
            by_size: 0,
        };
        // Then the oldest: as many as the average line's share of the pages says are
        // over, a tenth more, until the live pages fit (a few rounds at most).
        for _ in 0..8 {
            let (lines, bytes) = self.size_of(&conn)?;
            if bytes <= r.max_bytes || lines == 0 {
                break;
            }
            let per_line = (bytes / lines).max(1);
            let over = (bytes - r.max_bytes) / per_line;
            let batch = (over + over / 10 + 1).min(lines) as i64;
            removed.by_size += conn
                .execute(
                    "DELETE FROM entries WHERE id IN \
                     (SELECT id FROM entries ORDER BY ts ASC LIMIT ?1)",
                    params![batch],
                )
                .map_err(self.err())? as u64;
        }
        if removed.by_age + removed.by_size > 0 {
            conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);")
                .map_err(self.err())?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::logql::{parse, Query};
    use crate::push::Stream;

    const S: i64 = 1_000_000_000;

    fn push(host: &str, service: &str, lines: &[(i64, &str)]) -> Push {
        Push {
            streams: vec![Stream {
                labels: crate::labels::parse_labels(&format!(
                    "{{host=\"{host}\", service=\"{service}\", stream=\"log\"}}"
                ))
                .unwrap(),
                entries: lines.iter().map(|(t, l)| (*t, (*l).to_owned())).collect(),
            }],
        }
    }

    fn log(q: &str) -> LogQuery {
        match parse(q).unwrap() {
            Query::Log(l) => l,
            Query::Metric(_) => panic!(),
        }
    }

    fn metric(q: &str) -> MetricQuery {
        match parse(q).unwrap() {
            Query::Metric(m) => m,
            Query::Log(_) => panic!(),
        }
    }

    #[test]
    fn a_retried_push_stores_nothing_twice() {
        let s = Store::in_memory().unwrap();
        let p = push("web1", "web", &[(S, "a"), (2 * S, "b"), (2 * S, "c")]);
        assert_eq!(
            s.append(&p).unwrap(),
            Appended {
                stored: 3,
                duplicates: 0
            }
        );
        assert_eq!(
            s.append(&p).unwrap(),
            Appended {
                stored: 0,
                duplicates: 3
            }
        );
        assert_eq!(s.size().unwrap().0, 3);
        // The same line at another time is another line.
        assert_eq!(
            s.append(&push("web1", "web", &[(3 * S, "a")]))
                .unwrap()
                .stored,
            1
        );
    }

    #[test]
    fn log_queries_filter_limit_and_order() {
        let s = Store::in_memory().unwrap();
        s.append(&push(
            "web1",
            "web",
            &[
                (S, "GET /a marker-1"),
                (2 * S, "GET /b"),
                (3 * S, "POST /a marker-1"),
            ],
        ))
        .unwrap();
        s.append(&push(
            "lb1",
            "lb",
            &[(S, "GET /a marker-1"), (4 * S, "GET /c")],
        ))
        .unwrap();
        let r = s
            .select(
                &log(r#"{service=~"lb|web"} |= "marker-1""#),
                0,
                10 * S,
                100,
                Direction::Backward,
            )
            .unwrap();
        assert_eq!(r.len(), 2);
        let web = &r
            .iter()
            .find(|(l, _)| l.get("host") == Some("web1"))
            .unwrap()
            .1;
        assert_eq!(
            web,
            &vec![
                (3 * S, "POST /a marker-1".to_owned()),
                (S, "GET /a marker-1".to_owned())
            ]
        );
        // Limit and direction: the newest line, or the oldest.
        let newest = s
            .select(&log(r#"{host="web1"}"#), 0, 10 * S, 1, Direction::Backward)
            .unwrap();
        assert_eq!(newest[0].1, vec![(3 * S, "POST /a marker-1".to_owned())]);
        let oldest = s
            .select(&log(r#"{host="web1"}"#), 0, 10 * S, 1, Direction::Forward)
            .unwrap();
        assert_eq!(oldest[0].1[0].0, S);
        // The range is [start, end).
        let r = s
            .select(
                &log(r#"{host="web1"}"#),
                2 * S,
                3 * S,
                100,
                Direction::Forward,
            )
            .unwrap();
        assert_eq!(r[0].1, vec![(2 * S, "GET /b".to_owned())]);
        // Case: the filter is case-sensitive.
        assert!(s
            .select(
                &log(r#"{host="web1"} |= "MARKER-1""#),
                0,
                10 * S,
                100,
                Direction::Forward
            )
            .unwrap()
            .is_empty());
        // Short texts filter too.
        let r = s
            .select(
                &log(r#"{host="lb1"} |= "/c""#),
                0,
                10 * S,
                100,
                Direction::Forward,
            )
            .unwrap();
        assert_eq!(r[0].1.len(), 1);
        assert_eq!(
            s.label_values("host", 0, 10 * S, None).unwrap(),
            ["lb1", "web1"]
        );
        assert_eq!(
            s.label_names(0, 10 * S, None).unwrap(),
            ["host", "service", "stream"]
        );
        assert!(s
            .label_values("host", 20 * S, 30 * S, None)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn counts_over_time_and_rates() {
        let s = Store::in_memory().unwrap();
        s.append(&push(
            "web1",
            "web",
            &[(S, "x"), (2 * S, "x"), (3 * S, "y"), (11 * S, "x")],
        ))
        .unwrap();
        s.append(&push("web2", "web", &[(2 * S, "x")])).unwrap();
        let per = s
            .metric(
                &metric(r#"count_over_time({service="web"} |= "x" [5s])"#),
                0,
                10 * S,
                5 * S,
            )
            .unwrap();
        assert_eq!(per.len(), 2);
        assert_eq!(
            per[0].1,
            vec![(5 * S, 2.0)],
            "web1: x at 1 s and 2 s in (0, 5]"
        );
        assert_eq!(per[1].1, vec![(5 * S, 1.0)]);
        let sum = s
            .metric(
                &metric(r#"sum(count_over_time({service="web"}[10s]))"#),
                0,
                20 * S,
                10 * S,
            )
            .unwrap();
        assert_eq!(
            sum,
            vec![(Labels::default(), vec![(10 * S, 4.0), (20 * S, 1.0)])]
        );
        let by = s
            .metric(
                &metric(r#"sum by (host) (rate({service="web"}[10s]))"#),
                10 * S,
                10 * S,
                S,
            )
            .unwrap();
        assert_eq!(by.len(), 2);
        assert_eq!(by[0].0.get("host"), Some("web1"));
        assert!((by[0].1[0].1 - 0.3).abs() < 1e-9);
        assert!(s
            .metric(&metric(r#"rate({service="web"}[10s])"#), 0, 20_000 * S, S)
            .is_err());
    }

    #[test]
    fn retention_by_age_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("logs.db")).unwrap();
        let line = "x".repeat(500);
        let lines: Vec<(i64, &str)> = (0..2000).map(|i| (i * S, line.as_str())).collect();
        s.append(&push("web1", "web", &lines)).unwrap();
        let r = s
            .enforce(
                2000 * S,
                Retention {
                    max_age_ns: 1000 * S,
                    max_bytes: u64::MAX,
                },
            )
            .unwrap();
        assert_eq!(r.by_age, 1000);
        let (left, bytes) = s.size().unwrap();
        assert_eq!(left, 1000);
        let r = s
            .enforce(
                2000 * S,
                Retention {
                    max_age_ns: i64::MAX,
                    max_bytes: bytes / 4,
                },
            )
            .unwrap();
        assert!(r.by_size > 0);
        let (left, now) = s.size().unwrap();
        assert!(now <= bytes / 4, "{now} > {}", bytes / 4);
        // The newest stay.
        let newest = s
            .select(
                &log(r#"{host="web1"}"#),
                0,
                3000 * S,
                1,
                Direction::Backward,
            )
            .unwrap();
        assert_eq!(newest[0].1[0].0, 1999 * S);
        assert!(left > 0);
        // Reopened, it has the same lines.
        drop(s);
        assert_eq!(
            Store::open(&dir.path().join("logs.db"))
                .unwrap()
                .size()
                .unwrap()
                .0,
            left
        );
    }

    /// A store written before 2026-12 has an FTS5 trigram index kept by triggers. Opened
    /// now, the index and its triggers are gone, every line is kept and found by a line
    /// filter, and new lines go in without the index.
    #[test]
    fn a_store_with_the_old_full_text_index_opens_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE streams(id INTEGER PRIMARY KEY, labels TEXT NOT NULL UNIQUE,
                     first_ts INTEGER NOT NULL, last_ts INTEGER NOT NULL);
                 CREATE TABLE entries(id INTEGER PRIMARY KEY, stream INTEGER NOT NULL,
                     ts INTEGER NOT NULL, h INTEGER NOT NULL, line TEXT NOT NULL);
                 CREATE UNIQUE INDEX entries_key ON entries(stream, ts, h);
                 CREATE INDEX entries_ts ON entries(ts);
                 CREATE VIRTUAL TABLE lines USING fts5(
                     line, content='entries', content_rowid='id', tokenize='trigram');
                 CREATE TRIGGER entries_ai AFTER INSERT ON entries BEGIN
                     INSERT INTO lines(rowid, line) VALUES (new.id, new.line);
                 END;
                 CREATE TRIGGER entries_ad AFTER DELETE ON entries BEGIN
                     INSERT INTO lines(lines, rowid, line) VALUES ('delete', old.id, old.line);
                 END;
                 INSERT INTO entries(stream, ts, h, line) VALUES
                     (1, 1000000000, 1, 'GET /old marker-9'), (1, 2000000000, 2, 'GET /b');",
            )
            .unwrap();
            let labels = push("web1", "web", &[]).streams[0].labels.to_string();
            c.execute(
                "INSERT INTO streams VALUES (1, ?1, 1000000000, 2000000000)",
                params![labels],
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        let left: i64 = s
            .lock()
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN \
                 ('lines', 'entries_ai', 'entries_ad')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0, "the full-text index or a trigger is still there");
        s.append(&push("web1", "web", &[(3 * S, "POST /new marker-9")]))
            .unwrap();
        assert_eq!(s.size().unwrap().0, 3);
        let r = s
            .select(
                &log(r#"{host="web1"} |= "marker-9""#),
                0,
                10 * S,
                100,
                Direction::Forward,
            )
            .unwrap();
        assert_eq!(
            r[0].1,
            vec![
                (S, "GET /old marker-9".to_owned()),
                (3 * S, "POST /new marker-9".to_owned())
            ]
        );
        // Retention deletes through the same table, with no trigger left to fail.
        let removed = s
            .enforce(
                8 * S,
                Retention {
                    max_age_ns: 5 * S,
                    max_bytes: u64::MAX,
                },
            )
            .unwrap();
        assert_eq!(removed.by_age, 2);
        assert_eq!(s.size().unwrap().0, 1);
    }
}

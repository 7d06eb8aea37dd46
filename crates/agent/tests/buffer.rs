//! The on-disk buffer with real files: round trips, reopening at the ack point, torn and
//! corrupt records, segment rollover, both bounds, crashes at every step of the sender's
//! loop, and an outage drained into the real Prometheus (Debian's `prometheus`) with every
//! sample arriving.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rampart_agent::buffer::{
    merge, Buffer, BufferError, Cursor, DropReason, Dropped, Limits, DEFAULT_MAX_AGE,
    DEFAULT_MAX_BYTES,
};
use rampart_agent::remote_write::{self, Client, WriteRequest};
use rampart_agent::{expo, Family, Kind, Sample};
use rampart_test_support::client::tool;
use serde_json::Value;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A collection as the agent makes it: a heartbeat with value `i` and `extra` more series,
/// all at `ts`.
fn batch(i: u64, ts: i64, extra: usize) -> WriteRequest {
    let families = [
        Family {
            name: "rampart_buffer_test_heartbeat".into(),
            help: String::new(),
            kind: Kind::Gauge,
            samples: vec![Sample {
                labels: vec![],
                value: i as f64,
                suffix: "",
            }],
        },
        Family {
            name: "rampart_buffer_test_load".into(),
            help: String::new(),
            kind: Kind::Gauge,
            samples: (0..extra)
                .map(|n| Sample {
                    labels: vec![
                        ("device".into(), format!("dev{n}")),
                        ("mode".into(), "user".into()),
                    ],
                    value: (i * 1000 + n as u64) as f64,
                    suffix: "",
                })
                .collect(),
        },
    ];
    let labels = vec![
        ("instance".to_owned(), "buffer-test".to_owned()),
        ("host".to_owned(), "web1".to_owned()),
    ];
    WriteRequest {
        timeseries: remote_write::series(&families, &labels, ts),
        metadata: vec![],
    }
}

/// The heartbeat value of a batch from [`batch`].
fn beat(req: &WriteRequest) -> u64 {
    let hb = req
        .timeseries
        .iter()
        .find(|ts| {
            ts.labels
                .iter()
                .any(|l| l.value == "rampart_buffer_test_heartbeat")
        })
        .unwrap();
    hb.samples[0].value as u64
}

fn limits(max_bytes: u64, segment_bytes: u64) -> Limits {
    Limits {
        max_bytes,
        max_age: DEFAULT_MAX_AGE,
        segment_bytes,
    }
}

/// Everything pending, oldest first, without acknowledging it.
fn pending(buf: &mut Buffer) -> Vec<(Cursor, WriteRequest)> {
    buf.peek(usize::MAX, u64::MAX).unwrap()
}

fn beats(buf: &mut Buffer) -> Vec<u64> {
    pending(buf).iter().map(|(_, r)| beat(r)).collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

fn last_segment(dir: &Path) -> PathBuf {
    segments(dir).pop().unwrap()
}

#[test]
fn append_peek_ack_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut buf = Buffer::open(dir.path(), Limits::default()).unwrap();
    assert!(pending(&mut buf).is_empty());
    let t = now_ms();
    let batches: Vec<WriteRequest> = (0..5).map(|i| batch(i, t + i as i64, 3)).collect();
    for b in &batches {
        buf.append(b).unwrap();
    }
    // A batch without samples is not stored.
    buf.append(&WriteRequest::default()).unwrap();

    let got = pending(&mut buf);
    let reqs: Vec<WriteRequest> = got.iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(
        reqs, batches,
        "stored batches come back unchanged, in order"
    );
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "cursors increase");
    let stats = buf.stats();
    assert_eq!((stats.batches, stats.samples), (5, 20));
    assert_eq!(stats.oldest_timestamp_ms, Some(t));

    // Peeking is bounded by count and by bytes (but returns at least one).
    assert_eq!(buf.peek(2, u64::MAX).unwrap().len(), 2);
    assert_eq!(buf.peek(10, 1).unwrap().len(), 1);
    assert!(buf.peek(0, u64::MAX).unwrap().is_empty());
    // Without an ack the same batches come again.
    assert_eq!(beats(&mut buf), [0, 1, 2, 3, 4]);

    buf.ack(got[2].0).unwrap();
    assert_eq!(beats(&mut buf), [3, 4]);
    // Acknowledging again, or an older cursor, changes nothing.
    buf.ack(got[1].0).unwrap();
    assert_eq!(beats(&mut buf), [3, 4]);
    buf.ack(got[4].0).unwrap();
    assert!(pending(&mut buf).is_empty());
    let stats = buf.stats();
    assert_eq!((stats.batches, stats.samples), (0, 0));
    assert_eq!(stats.oldest_timestamp_ms, None);
    assert_eq!(stats.corrupt_records, 0);
    assert!(DropReason::ALL
        .iter()
        .all(|&r| stats.dropped(r) == Dropped::default()));
}

#[test]
fn reopen_resumes_at_the_ack_point() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_ms();
    {
        let mut buf = Buffer::open(dir.path(), Limits::default()).unwrap();
        for i in 0..10 {
            buf.append(&batch(i, t + i as i64, 2)).unwrap();
        }
        let got = pending(&mut buf);
        buf.ack(got[3].0).unwrap();
    }
    let mut buf = Buffer::open(dir.path(), Limits::default()).unwrap();
    assert_eq!(beats(&mut buf), [4, 5, 6, 7, 8, 9]);
    // New batches go after the old ones, in the same segment.
    buf.append(&batch(10, t + 10, 2)).unwrap();
    assert_eq!(segments(dir.path()).len(), 1);
    let got = pending(&mut buf);
    buf.ack(got.last().unwrap().0).unwrap();
    drop(buf);
    let mut buf = Buffer::open(dir.path(), Limits::default()).unwrap();
    assert!(pending(&mut buf).is_empty());
    assert_eq!(buf.stats().corrupt_records, 0);
}

/// Three batches written and the buffer dropped; `damage` is applied to the segment file;
/// the beats found on reopening and the corrupt count.
fn after_damage(damage: impl FnOnce(&mut Vec<u8>, &[u64])) -> (Vec<u64>, u64, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let t = now_ms();
    let mut buf = Buffer::open(dir.path(), Limits::default()).unwrap();
    for i in 0..3 {
        buf.append(&batch(i, t, 5)).unwrap();
    }
    let offsets: Vec<u64> = pending(&mut buf).iter().map(|(c, _)| c.offset()).collect();
    drop(buf);
    let path = last_segment(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    damage(&mut bytes, &offsets);
    fs::write(&path, &bytes).unwrap();
    let mut buf = Buffer::open(dir.path(), Limits::default()).unwrap();
    let found = beats(&mut buf);
    (found, buf.stats().corrupt_records, dir)
}

#[test]
fn torn_last_record_is_truncated_on_open() {
    let (_, _, dir) = after_damage(|_, _| {});
    let len = fs::metadata(last_segment(dir.path())).unwrap().len();
    for cut in [1, 2, 4, 7, 8, 9, 12, 20, 50] {
        let (found, corrupt, dir) = after_damage(|b, _| b.truncate(b.len() - cut));
        assert_eq!((found.as_slice(), corrupt), (&[0, 1][..], 1), "cut {cut}");
        // Truncated for good: appending continues cleanly and a reopen finds no damage.
        let mut buf = Buffer::open(dir.path(), Limits::default()).unwrap();
        assert_eq!(buf.stats().corrupt_records, 0, "cut {cut}");
        buf.append(&batch(7, now_ms(), 5)).unwrap();
        drop(buf);
        let mut buf = Buffer::open(dir.path(), Limits::default()).unwrap();
        assert_eq!(beats(&mut buf), [0, 1, 7], "cut {cut}");
        assert_eq!(buf.stats().corrupt_records, 0, "cut {cut}");
        assert!(fs::metadata(last_segment(dir.path())).unwrap().len() < len + 1000);
    }
}

#[test]
fn flipped_bytes_are_recovered() {
    // In the last record: truncated away.
    let (found, corrupt, _dir) = after_damage(|b, _| {
        let n = b.len();
        b[n - 10] ^= 0x01;
    });
    assert_eq!((found.as_slice(), corrupt), (&[0, 1][..], 1));
    // In a middle record's payload: that record is skipped, the others kept.
    let (found, corrupt, _dir) = after_damage(|b, at| b[at[1] as usize + 30] ^= 0x80);
    assert_eq!((found.as_slice(), corrupt), (&[0, 2][..], 1));
    // In the first record's crc.
    let (found, corrupt, _dir) = after_damage(|b, at| b[at[0] as usize + 4] ^= 0xff);
    assert_eq!((found.as_slice(), corrupt), (&[1, 2][..], 1));
    // In a middle record's length: the framing is lost from there.
    let (found, corrupt, _dir) = after_damage(|b, at| b[at[1] as usize + 2] ^= 0x01);
    assert_eq!((found.as_slice(), corrupt), (&[0][..], 1));
    // The segment's magic: nothing in it can be trusted.
    let (found, corrupt, dir) = after_damage(|b, _| b[0] = b'X');
    assert_eq!((found.as_slice(), corrupt), (&[][..], 1));
    assert_eq!(segments(dir.path()).len(), 1, "replaced by a fresh segment");
    // Garbage instead of an ack file: everything is sent again.
    let dir = tempfile::tempdir().unwrap();
    let mut buf = Buffer::open(dir.path(), Limits::default()).unwrap();
    for i in 0..3 {
        buf.append(&batch(i, now_ms(), 1)).unwrap();
    }
    let first = pending(&mut buf)[0].0;
    buf.ack(first).unwrap();
    drop(buf);
    fs::write(dir.path().join("ack"), b"garbage").unwrap();
    let mut buf = Buffer::open(dir.path(), Limits::default()).unwrap();
    assert_eq!(beats(&mut buf), [0, 1, 2]);
}

#[test]
fn record_damaged_while_open_is_dropped_at_peek() {
    let dir = tempfile::tempdir().unwrap();
    let mut buf = Buffer::open(dir.path(), Limits::default()).unwrap();
    for i in 0..3 {
        buf.append(&batch(i, now_ms(), 5)).unwrap();
    }
    let at = pending(&mut buf)[1].0.offset() as usize;
    let path = last_segment(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    bytes[at + 40] ^= 0x04;
    // Overwrite in place (same inode, as bit rot would).
    let mut f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all(&bytes).unwrap();
    assert_eq!(beats(&mut buf), [0, 2]);
    assert_eq!(buf.stats().corrupt_records, 1);
    assert_eq!(buf.stats().batches, 2);
}

#[test]
fn segments_roll_over_and_are_deleted_after_ack() {
    let dir = tempfile::tempdir().unwrap();
    let seg = 4096;
    let mut buf = Buffer::open(dir.path(), limits(DEFAULT_MAX_BYTES, seg)).unwrap();
    let t = now_ms();
    for i in 0..40 {
        buf.append(&batch(i, t, 20)).unwrap();
    }
    let files = segments(dir.path());
    assert!(files.len() >= 4, "{files:?}");
    for f in &files {
        let len = fs::metadata(f).unwrap().len();
        assert!(len <= seg, "{f:?}: {len}");
    }
    let on_disk: u64 = files.iter().map(|f| fs::metadata(f).unwrap().len()).sum();
    assert_eq!(buf.stats().bytes, on_disk);

    let got = pending(&mut buf);
    assert_eq!(got.len(), 40);
    // Acknowledging into the third segment deletes the first two, and only them.
    let third = files[2].clone();
    let (through, _) = got
        .iter()
        .find(|(c, _)| Some(c.segment()) == segment_number(&third))
        .unwrap();
    buf.ack(*through).unwrap();
    assert_eq!(segments(dir.path()), files[2..]);
    drop(buf);
    let mut buf = Buffer::open(dir.path(), limits(DEFAULT_MAX_BYTES, seg)).unwrap();
    let left = beats(&mut buf);
    assert_eq!(left, ((40 - left.len() as u64)..40).collect::<Vec<_>>());
    let got = pending(&mut buf);
    buf.ack(got.last().unwrap().0).unwrap();
    assert_eq!(
        segments(dir.path()).len(),
        1,
        "only the active segment stays"
    );
    assert!(buf.stats().bytes <= seg);
}

fn segment_number(path: &Path) -> Option<u64> {
    path.file_stem()?.to_str()?.parse().ok()
}

#[test]
fn byte_bound_drops_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_ms();
    // Measure one record.
    let one = {
        let d = tempfile::tempdir().unwrap();
        let mut b = Buffer::open(d.path(), Limits::default()).unwrap();
        let empty = b.stats().bytes;
        b.append(&batch(0, t, 10)).unwrap();
        b.stats().bytes - empty
    };
    let max = one * 5 + one / 2;
    let mut buf = Buffer::open(dir.path(), limits(max, one * 2)).unwrap();
    for i in 0..12 {
        buf.append(&batch(i, t, 10)).unwrap();
    }
    assert_eq!(beats(&mut buf), [7, 8, 9, 10, 11]);
    let stats = buf.stats();
    assert_eq!(
        stats.dropped(DropReason::Bytes),
        Dropped {
            batches: 7,
            samples: 77
        }
    );
    assert!(
        stats.bytes <= max + one * 2,
        "{} on disk, max {max}",
        stats.bytes
    );
    drop(buf);
    // The drops were persisted: they don't come back.
    let mut buf = Buffer::open(dir.path(), limits(max, one * 2)).unwrap();
    assert_eq!(beats(&mut buf), [7, 8, 9, 10, 11]);
    drop(buf);
    // A smaller bound at open drops the oldest then.
    let mut buf = Buffer::open(dir.path(), limits(one * 2 + one / 2, one * 2)).unwrap();
    assert_eq!(beats(&mut buf), [10, 11]);
    assert_eq!(buf.stats().dropped(DropReason::Bytes).batches, 3);

    // A batch larger than the whole bound is refused and counted.
    let err = buf.append(&batch(99, t, 1000)).unwrap_err();
    assert!(matches!(err, BufferError::TooLarge { .. }), "{err}");
    assert_eq!(buf.stats().dropped(DropReason::Bytes).batches, 4);
    assert_eq!(beats(&mut buf), [10, 11]);
}

#[test]
fn age_bound_drops_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let min = 60_000;
    let now = now_ms();
    let two_hours = Limits::default();
    let mut buf = Buffer::open(dir.path(), two_hours).unwrap();
    // Older than 2 h already: never stored.
    buf.append(&batch(0, now - 150 * min, 3)).unwrap();
    for (i, age) in [(1, 90), (2, 60), (3, 30), (4, 0)] {
        buf.append(&batch(i, now - age * min, 3)).unwrap();
    }
    assert_eq!(beats(&mut buf), [1, 2, 3, 4]);
    assert_eq!(
        buf.stats().dropped(DropReason::Age),
        Dropped {
            batches: 1,
            samples: 4
        }
    );
    assert_eq!(buf.stats().oldest_timestamp_ms, Some(now - 90 * min));
    drop(buf);
    let mut buf = Buffer::open(
        dir.path(),
        Limits {
            max_age: Duration::from_secs(45 * 60),
            ..Limits::default()
        },
    )
    .unwrap();
    assert_eq!(beats(&mut buf), [3, 4]);
    assert_eq!(
        buf.stats().dropped(DropReason::Age),
        Dropped {
            batches: 2,
            samples: 8
        }
    );
    assert_eq!(buf.stats().oldest_timestamp_ms, Some(now - 30 * min));
}

#[test]
fn rejected_batches_are_counted_as_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut buf = Buffer::open(dir.path(), Limits::default()).unwrap();
    for i in 0..4 {
        buf.append(&batch(i, now_ms(), 2)).unwrap();
    }
    let got = buf.peek(3, u64::MAX).unwrap();
    buf.reject(got[2].0).unwrap();
    assert_eq!(beats(&mut buf), [3]);
    assert_eq!(
        buf.stats().dropped(DropReason::Rejected),
        Dropped {
            batches: 3,
            samples: 9
        }
    );
}

/// A small deterministic generator (xorshift), so the crash test is reproducible.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn crash_at_any_point_loses_and_repeats_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let lim = limits(DEFAULT_MAX_BYTES, 8192);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let t = now_ms();
    // What the model says is pending, and the next heartbeat.
    let mut expected: Vec<u64> = Vec::new();
    let mut next = 0;
    for round in 0..30 {
        let mut buf = Buffer::open(dir.path(), lim).unwrap();
        assert_eq!(beats(&mut buf), expected, "round {round} after reopen");
        assert_eq!(buf.stats().corrupt_records, 0, "round {round}");
        for _ in 0..rng.below(8) {
            buf.append(&batch(next, t + next as i64, 4)).unwrap();
            expected.push(next);
            next += 1;
        }
        // The sender: peek some, "push", ack some of what it peeked.
        for _ in 0..rng.below(3) {
            let got = buf.peek(1 + rng.below(5) as usize, u64::MAX).unwrap();
            if got.is_empty() {
                break;
            }
            let merged = merge(got.iter().map(|(_, r)| r.clone()));
            assert!(merged
                .timeseries
                .windows(2)
                .all(|w| w[0].labels < w[1].labels));
            let k = rng.below(got.len() as u64) as usize;
            buf.ack(got[k].0).unwrap();
            expected.drain(..=k);
        }
        // Crash: no close, no flush beyond what append and ack did; sometimes with a
        // torn append at the end of the active segment.
        drop(buf);
        if round % 3 == 1 {
            let path = last_segment(dir.path());
            let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
            f.write_all(&[0x40, 0, 0, 0, 1, 2, 3]).unwrap();
            let mut buf = Buffer::open(dir.path(), lim).unwrap();
            assert_eq!(buf.stats().corrupt_records, 1, "round {round}");
            assert_eq!(beats(&mut buf), expected, "round {round} after torn write");
        }
        // A crash while replacing the ack file leaves its temporary behind.
        if round % 5 == 2 {
            fs::write(dir.path().join("ack.tmp"), b"half").unwrap();
        }
    }
    assert!(next > 50, "{next} batches written");
}

#[test]
fn a_second_open_is_refused_while_the_first_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let buf = Buffer::open(dir.path(), Limits::default()).unwrap();
    let err = Buffer::open(dir.path(), Limits::default()).unwrap_err();
    assert!(matches!(err, BufferError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("in use"), "{err}");
    drop(buf);
    Buffer::open(dir.path(), Limits::default()).unwrap();
}

#[test]
fn directory_is_private() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("state/buffer");
    let mut buf = Buffer::open(&dir, Limits::default()).unwrap();
    buf.append(&batch(0, now_ms(), 1)).unwrap();
    let got = pending(&mut buf);
    buf.ack(got[0].0).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{path:?}");
    }
    let zero = Limits {
        max_bytes: 0,
        ..Limits::default()
    };
    assert!(matches!(
        Buffer::open(parent.path().join("x"), zero),
        Err(BufferError::Limits("max_bytes"))
    ));
}

#[test]
fn metrics_pass_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let mut buf = Buffer::open(dir.path(), Limits::default()).unwrap();
    let empty = expo::text(&buf.families());
    assert!(!empty.contains("oldest_timestamp"), "{empty}");
    let t = now_ms();
    buf.append(&batch(0, t, 2)).unwrap();
    buf.append(&batch(1, t + 1000, 2)).unwrap();
    let got = buf.peek(1, u64::MAX).unwrap();
    buf.reject(got[0].0).unwrap();
    let text = expo::text(&buf.families());
    for line in [
        "rampart_agent_buffer_batches 1\n".to_owned(),
        "rampart_agent_buffer_samples 3\n".to_owned(),
        format!(
            "rampart_agent_buffer_oldest_timestamp_seconds {}\n",
            (t + 1000) as f64 / 1000.0
        ),
        "rampart_agent_buffer_dropped_samples_total{reason=\"rejected\"} 3\n".to_owned(),
        "rampart_agent_buffer_dropped_batches_total{reason=\"age\"} 0\n".to_owned(),
        "rampart_agent_buffer_corrupt_records_total 0\n".to_owned(),
        format!("rampart_agent_buffer_bytes {}\n", buf.stats().bytes),
    ] {
        assert!(text.contains(&line), "{line} in:\n{text}");
    }
    let Some(promtool) = tool("promtool", Some("RAMPART_PROMTOOL")) else {
        return;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What an append costs with its fdatasync, and what a batch takes on disk (printed for
/// the module documentation; asserted only loosely).
#[test]
fn append_cost() {
    let dir = tempfile::tempdir().unwrap();
    let mut buf = Buffer::open(dir.path(), Limits::default()).unwrap();
    let batches: Vec<WriteRequest> = (0..50).map(|i| batch(i, now_ms(), 300)).collect();
    let raw = prost::Message::encoded_len(&batches[0]);
    let start = Instant::now();
    for b in &batches {
        buf.append(b).unwrap();
    }
    let per = start.elapsed() / 50;
    let stored = (buf.stats().bytes - 8) / 50;
    eprintln!(
        "append of 301 series: {per:?} each (encode, compress, write, fdatasync); \
         {stored} bytes stored per batch, {raw} bytes of protobuf"
    );
    assert!(stored < raw as u64);
}

// --- End to end with the real Prometheus ---

/// The shared real Prometheus ([`rampart_test_support::prometheus`]) with this file's
/// queries.
struct Prometheus {
    inner: rampart_test_support::prometheus::Prometheus,
    addr: SocketAddr,
}

impl Prometheus {
    /// Prometheus with a 3 h out-of-order window; `None` when not installed.
    fn start() -> Option<Self> {
        let inner = rampart_test_support::prometheus::Prometheus::start(Some("3h"))?;
        Some(Self {
            addr: inner.addr,
            inner,
        })
    }

    fn write_url(&self) -> http::Uri {
        format!("http://{}/api/v1/write", self.addr)
            .parse()
            .unwrap()
    }

    fn log(&self) -> String {
        self.inner.log()
    }

    /// An instant query's vector result: (labels, value) per series.
    fn query(&self, promql: &str) -> Vec<(Value, f64)> {
        let path = format!(
            "/api/v1/query?query={}&time={:.3}",
            percent_encode(promql),
            now_ms() as f64 / 1000.0
        );
        let (status, body) = get(self.addr, &path).expect("query prometheus");
        assert_eq!(status, 200, "{path}: {body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        json["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let v: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
                (r["metric"].clone(), v)
            })
            .collect()
    }

    /// The raw samples of a selector over the last hour: (timestamp ms, value).
    fn raw(&self, selector: &str) -> Vec<(i64, f64)> {
        let path = format!(
            "/api/v1/query?query={}&time={:.3}",
            percent_encode(&format!("{selector}[1h]")),
            now_ms() as f64 / 1000.0
        );
        let (status, body) = get(self.addr, &path).expect("query prometheus");
        assert_eq!(status, 200, "{path}: {body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        let result = json["data"]["result"].as_array().unwrap();
        assert_eq!(result.len(), 1, "{body}");
        result[0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let ts = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                (ts, p[1].as_str().unwrap().parse().unwrap())
            })
            .collect()
    }
}

/// An address on 127.0.0.1 that nothing listens on (just released by the kernel).
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A blocking HTTP/1.0 GET: `(status, body)`, or `None` if the connection failed.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut sock = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(sock, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut resp = Vec::new();
    sock.read_to_end(&mut resp).ok()?;
    let resp = String::from_utf8_lossy(&resp);
    let (head, body) = resp.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One turn of the sender: peek up to 8 batches, merge, push. `Ok(None)` when empty.
async fn push_some(
    buf: &mut Buffer,
    url: &http::Uri,
) -> Result<Option<Cursor>, remote_write::PushError> {
    let got = buf.peek(8, 4 << 20).unwrap();
    let Some(&(through, _)) = got.last() else {
        return Ok(None);
    };
    let body = remote_write::encode(&merge(got.into_iter().map(|(_, r)| r))).unwrap();
    remote_write::push(&Client::default(), url, Bytes::from(body)).await?;
    Ok(Some(through))
}

#[tokio::test]
async fn outage_and_restarts_lose_no_sample_in_prometheus() {
    let Some(prom) = Prometheus::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut buf = Buffer::open(dir.path(), Limits::default()).unwrap();
    let down: http::Uri = format!("http://{}/api/v1/write", free_addr())
        .parse()
        .unwrap();

    // The monitor is down for 30 collections, 15 s apart (7.5 min ago up to now); each
    // push attempt fails retryably, so nothing is acknowledged.
    let start = now_ms() - 30 * 15_000;
    let stamps: Vec<i64> = (0..30).map(|i| start + i * 15_000).collect();
    for (i, &ts) in stamps.iter().enumerate() {
        buf.append(&batch(i as u64, ts, 200)).unwrap();
        if i % 10 == 0 {
            let err = push_some(&mut buf, &down).await.unwrap_err();
            assert!(err.retryable(), "{err}");
        }
    }
    // The agent restarts.
    drop(buf);
    let mut buf = Buffer::open(dir.path(), Limits::default()).unwrap();
    assert_eq!(buf.stats().batches, 30);

    // The monitor is back. The first push succeeds but the agent dies before its ack, so
    // those 8 batches are sent twice.
    let url = prom.write_url();
    push_some(&mut buf, &url).await.unwrap().unwrap();
    drop(buf);
    let mut buf = Buffer::open(dir.path(), Limits::default()).unwrap();
    assert_eq!(buf.stats().batches, 30);
    let mut pushes = 0;
    while let Some(through) = push_some(&mut buf, &url)
        .await
        .unwrap_or_else(|e| panic!("push: {e}\n{}", prom.log()))
    {
        buf.ack(through).unwrap();
        pushes += 1;
    }
    assert_eq!(pushes, 4);
    assert_eq!(buf.stats().batches, 0);

    let sel = "rampart_buffer_test_heartbeat{instance=\"buffer-test\"}";
    let counted = prom.query(&format!("count_over_time({sel}[1h])"));
    assert_eq!(counted.len(), 1, "{counted:?}");
    assert_eq!(counted[0].1, 30.0, "{}", prom.log());
    let expected: Vec<(i64, f64)> = stamps
        .iter()
        .enumerate()
        .map(|(i, &t)| (t, i as f64))
        .collect();
    assert_eq!(prom.raw(sel), expected);
    // Every other series has all 30 samples too.
    let full = prom.query("count(count_over_time(rampart_buffer_test_load[1h]) == 30)");
    assert_eq!(full.first().map(|r| r.1), Some(200.0), "{full:?}");
    eprintln!(
        "prometheus {}: 30 buffered collections of 201 series arrived once each \
         after an outage, an agent restart and a resend",
        prom.addr
    );
}

/// The same buffer holds Loki push batches of log lines: they come back whole after a
/// reopen, an ack removes them, and they expire by the age of their oldest line.
#[test]
fn log_batches_round_trip_through_the_buffer() {
    use rampart_agent::buffer::BatchBuffer;
    use rampart_agent::logship::{Limits as ShipLimits, Shipper};
    use rampart_logs::push::PushRequest;
    let dir = tempfile::tempdir().unwrap();
    let now_ns = now_ms() * 1_000_000;
    let mut ship = Shipper::new("web1", ShipLimits::default());
    let batch = ship
        .batch(
            now_ns,
            (0..100).map(|i| ("web".to_owned(), "access".to_owned(), format!("line {i}"))),
        )
        .unwrap();
    {
        let mut buf = BatchBuffer::<PushRequest>::open(dir.path(), Limits::default()).unwrap();
        buf.append(&batch).unwrap();
        assert_eq!(buf.stats().samples, 100);
    }
    let mut buf = BatchBuffer::<PushRequest>::open(dir.path(), Limits::default()).unwrap();
    let got = buf.peek(10, 1 << 20).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, batch);
    buf.ack(got[0].0).unwrap();
    assert!(buf.peek(10, 1 << 20).unwrap().is_empty());
    drop(buf);
    // A batch whose oldest line is past max_age is dropped, not sent.
    let old = Shipper::new("web1", ShipLimits::default())
        .batch(
            now_ns - 2 * 86_400 * 1_000_000_000,
            [("web".into(), "access".into(), "old".into())],
        )
        .unwrap();
    let mut buf = BatchBuffer::<PushRequest>::open(
        dir.path(),
        Limits {
            max_age: Duration::from_secs(86_400),
            ..Limits::default()
        },
    )
    .unwrap();
    buf.append(&old).unwrap();
    assert!(buf.peek(10, 1 << 20).unwrap().is_empty());
    assert_eq!(buf.stats().dropped(DropReason::Age).samples, 1);
}

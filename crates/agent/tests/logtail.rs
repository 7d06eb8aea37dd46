//! The access-log tailer on real files in temporary directories: counts and histogram,
//! partial, malformed and over-long lines, rename and copytruncate rotation, restarts from
//! the state file (also across a rotation while the agent was down), `promtool check
//! metrics` on the exposition, and the real `rampart_telemetry` writer rotated under load.
//! Every step polls explicitly; nothing waits on a clock except the writer test, which
//! waits (with a deadline) for the writer's once-a-second rotation check.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rampart_agent::logtail::{LogTail, PollStats, MAX_LINE};
use rampart_agent::{expo, Family};
use rampart_telemetry::access_log::{now_rfc3339, AccessLog, Entry, LogTarget};
use rampart_test_support::client::tool;
use rampart_test_support::eventually;

const SERVICE: &str = "web1";

/// A log, its rotated name and a state file in a fresh directory.
struct Fixture {
    dir: tempfile::TempDir,
    log: PathBuf,
    state: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let state = dir.path().join("logtail-web1.json");
        Self { dir, log, state }
    }

    fn rotated(&self) -> PathBuf {
        self.dir.path().join("access.log.1")
    }

    fn tail(&self) -> LogTail {
        LogTail::open(&self.log, SERVICE, &self.state).unwrap()
    }
}

/// One access-log line as the services write it (`Entry` serialized), with its newline.
fn line(method: &str, status: u16, duration_ms: f64, path: &str) -> String {
    let entry = Entry {
        time: now_rfc3339(),
        client: "198.18.0.10".into(),
        method,
        host: "www.foobar.com",
        path,
        status,
        bytes: 123,
        duration_ms,
        backend: Some("web1"),
        tls: Some("TLSv1.3"),
        proto: "HTTP/1.1",
        db: None,
        request_id: None,
        waf: None,
    };
    format!("{}\n", serde_json::to_string(&entry).unwrap())
}

/// `n` GET 200 lines, numbered from `from` in their paths (so files differ in content).
fn gets(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| line("GET", 200, 1.0, &format!("/{i}")))
        .collect()
}

fn append(path: &Path, bytes: impl AsRef<[u8]>) {
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(bytes.as_ref()).unwrap();
}

/// The value of the sample named `name` (family name plus suffix) with exactly `labels`
/// besides `service`; 0 when there is none.
fn value(families: &[Family], name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    want.push(("service".to_owned(), SERVICE.to_owned()));
    want.sort();
    families
        .iter()
        .flat_map(|f| f.samples.iter().map(move |s| (f, s)))
        .find(|(f, s)| {
            let mut have = s.labels.clone();
            have.sort();
            format!("{}{}", f.name, s.suffix) == name && have == want
        })
        .map_or(0.0, |(_, s)| s.value)
}

fn requests(tail: &LogTail) -> f64 {
    value(
        &tail.families(),
        "rampart_log_request_duration_seconds_count",
        &[],
    )
}

fn lines(tail: &LogTail, result: &str) -> f64 {
    value(
        &tail.families(),
        "rampart_log_lines_total",
        &[("result", result)],
    )
}

fn rotations(tail: &LogTail) -> f64 {
    value(&tail.families(), "rampart_log_rotations_total", &[])
}

fn truncations(tail: &LogTail) -> f64 {
    value(&tail.families(), "rampart_log_truncations_total", &[])
}

#[test]
fn requests_are_counted_by_method_and_status_class() {
    let fx = Fixture::new();
    let mut text = String::new();
    for (method, status, n) in [
        ("GET", 200, 5),
        ("GET", 304, 2),
        ("POST", 201, 3),
        ("POST", 503, 1),
        ("HEAD", 200, 1),
        ("DELETE", 404, 2),
        ("PATCH", 200, 1),
        ("OPTIONS", 204, 1),
        ("PUT", 101, 1),
        ("BREW", 418, 2),
        ("get", 200, 1),
        ("GET", 0, 1),
        ("GET", 700, 1),
    ] {
        for _ in 0..n {
            text.push_str(&line(method, status, 2.0, "/"));
        }
    }
    append(&fx.log, &text);
    let mut tail = fx.tail();
    let stats = tail.poll().unwrap();
    assert_eq!(stats.ok, 22);
    assert_eq!(stats.bytes, text.len() as u64);
    let fams = tail.families();
    let cases = [
        ("GET", "2xx", 5.0),
        ("GET", "3xx", 2.0),
        ("POST", "2xx", 3.0),
        ("POST", "5xx", 1.0),
        ("HEAD", "2xx", 1.0),
        ("DELETE", "4xx", 2.0),
        ("PATCH", "2xx", 1.0),
        ("OPTIONS", "2xx", 1.0),
        ("PUT", "1xx", 1.0),
        ("other", "4xx", 2.0),
        ("other", "2xx", 1.0),
        ("GET", "other", 2.0),
    ];
    for (method, class, want) in cases {
        let labels = [("method", method), ("code_class", class)];
        let got = value(&fams, "rampart_log_requests_total", &labels);
        assert_eq!(got, want, "{method} {class}");
    }
    let requests_family = fams
        .iter()
        .find(|f| f.name == "rampart_log_requests_total")
        .unwrap();
    assert_eq!(requests_family.samples.len(), cases.len());
    assert_eq!(lines(&tail, "ok"), 22.0);
    assert_eq!(
        value(&fams, "rampart_log_read_bytes_total", &[]),
        text.len() as f64
    );
}

#[test]
fn the_histogram_is_cumulative_and_counts_every_line() {
    let fx = Fixture::new();
    // (duration_ms, lines)
    let durations = [
        (0.2, 3),
        (1.0, 1),
        (2.0, 2),
        (7.5, 1),
        (40.0, 4),
        (100.0, 1),
        (900.0, 2),
        (3000.0, 1),
        (12000.0, 2),
    ];
    let text: String = durations
        .iter()
        .flat_map(|(ms, n)| std::iter::repeat_n(line("GET", 200, *ms, "/"), *n))
        .collect();
    append(&fx.log, &text);
    let mut tail = fx.tail();
    tail.poll().unwrap();
    let fams = tail.families();
    let bucket = |le| {
        value(
            &fams,
            "rampart_log_request_duration_seconds_bucket",
            &[("le", le)],
        )
    };
    let cases = [
        ("0.001", 4.0),
        ("0.0025", 6.0),
        ("0.005", 6.0),
        ("0.01", 7.0),
        ("0.025", 7.0),
        ("0.05", 11.0),
        ("0.1", 12.0),
        ("0.25", 12.0),
        ("0.5", 12.0),
        ("1", 14.0),
        ("2.5", 14.0),
        ("5", 15.0),
        ("10", 15.0),
        ("+Inf", 17.0),
    ];
    for (le, want) in cases {
        assert_eq!(bucket(le), want, "le={le}");
    }
    let h = fams
        .iter()
        .find(|f| f.name == "rampart_log_request_duration_seconds")
        .unwrap();
    let buckets: Vec<f64> = h
        .samples
        .iter()
        .filter(|s| s.suffix == "_bucket")
        .map(|s| s.value)
        .collect();
    assert_eq!(buckets.len(), 14);
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(
        h.samples.last().map(|s| (s.suffix, s.value)),
        Some(("_count", 17.0))
    );
    assert_eq!(requests(&tail), lines(&tail, "ok"));
    let want_sum: f64 = durations.iter().map(|(ms, n)| ms * *n as f64).sum::<f64>() / 1000.0;
    let sum = value(&fams, "rampart_log_request_duration_seconds_sum", &[]);
    assert!((sum - want_sum).abs() < 1e-9, "{sum} != {want_sum}");
}

#[test]
fn a_partial_line_waits_for_its_newline_also_across_a_restart() {
    let fx = Fixture::new();
    let full = line("GET", 200, 1.0, "/partial");
    let (head, rest) = full.split_at(40);
    append(&fx.log, gets(0, 2) + head);
    let mut tail = fx.tail();
    let s = tail.poll().unwrap();
    assert_eq!((s.ok, s.malformed), (2, 0));
    // Restart in the middle of the line: the partial line is read again, whole.
    drop(tail);
    append(&fx.log, &rest[..10]);
    let mut tail = fx.tail();
    assert_eq!(tail.poll().unwrap().ok, 0);
    append(&fx.log, &rest[10..]);
    let s = tail.poll().unwrap();
    assert_eq!((s.ok, s.malformed), (1, 0));
    assert_eq!(requests(&tail), 3.0);
    assert_eq!(lines(&tail, "malformed"), 0.0);
}

#[test]
fn a_rename_rotation_loses_no_line_written_to_the_old_file_after_the_rename() {
    let fx = Fixture::new();
    // The service's handle on the log, kept across the rename as a writer's would be.
    let mut writer = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&fx.log)
        .unwrap();
    writer.write_all(gets(0, 3).as_bytes()).unwrap();
    let mut tail = fx.tail();
    assert_eq!(tail.poll().unwrap().ok, 3);

    std::fs::rename(&fx.log, fx.rotated()).unwrap();
    writer.write_all(gets(3, 2).as_bytes()).unwrap();
    // The path is missing: the old handle is still read, and that is not an error.
    let s = tail.poll().unwrap();
    assert_eq!((s.ok, s.rotations, s.waiting), (2, 0, false));

    // logrotate creates the new file empty; the writer has not reopened yet.
    std::fs::File::create(&fx.log).unwrap();
    writer.write_all(gets(5, 2).as_bytes()).unwrap();
    let s = tail.poll().unwrap();
    assert_eq!((s.ok, s.rotations), (2, 0));

    // Last lines to the old file, then the writer reopens and writes to the new one: both
    // are read in one poll, the old file first.
    writer.write_all(gets(7, 1).as_bytes()).unwrap();
    writer
        .write_all(b"{\"method\":\"GET\",\"status\":200,\"duration_ms\":1}")
        .unwrap();
    drop(writer);
    append(&fx.log, gets(100, 4));
    let s = tail.poll().unwrap();
    // The old file's unterminated last line is counted as a line when it is left.
    assert_eq!((s.ok, s.rotations), (6, 1));
    append(&fx.log, gets(104, 1));
    assert_eq!(tail.poll().unwrap().ok, 1);
    assert_eq!(requests(&tail), 14.0);
    assert_eq!(rotations(&tail), 1.0);
    assert_eq!(lines(&tail, "malformed"), 0.0);
}

#[test]
fn a_deleted_log_is_followed_through_the_open_handle_until_a_new_one_has_data() {
    let fx = Fixture::new();
    let mut writer = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&fx.log)
        .unwrap();
    writer.write_all(gets(0, 2).as_bytes()).unwrap();
    let mut tail = fx.tail();
    assert_eq!(tail.poll().unwrap().ok, 2);
    std::fs::remove_file(&fx.log).unwrap();
    for i in 0..3 {
        writer.write_all(gets(10 + i, 1).as_bytes()).unwrap();
        let s = tail.poll().unwrap();
        assert_eq!((s.ok, s.rotations, s.waiting), (1, 0, false));
    }
    drop(writer);
    append(&fx.log, gets(20, 2));
    let s = tail.poll().unwrap();
    assert_eq!((s.ok, s.rotations), (2, 1));
    assert_eq!(requests(&tail), 7.0);
}

#[test]
fn a_copytruncate_restarts_at_zero_and_reads_the_unread_rest_from_the_copy() {
    let fx = Fixture::new();
    append(&fx.log, gets(0, 5));
    let mut tail = fx.tail();
    assert_eq!(tail.poll().unwrap().ok, 5);
    // Written after the last poll, so still unread when the log is copied and truncated.
    append(&fx.log, gets(5, 3));
    std::fs::copy(&fx.log, fx.rotated()).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&fx.log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&fx.log, gets(100, 2));
    let s = tail.poll().unwrap();
    assert_eq!((s.ok, s.truncations, s.rotations), (5, 1, 0));
    assert_eq!(requests(&tail), 10.0);
    assert_eq!(truncations(&tail), 1.0);
}

#[test]
fn a_truncated_log_that_grew_past_the_old_offset_is_still_seen_as_truncated() {
    let fx = Fixture::new();
    append(&fx.log, gets(0, 2));
    let mut tail = fx.tail();
    assert_eq!(tail.poll().unwrap().ok, 2);
    // Truncated with no copy left behind, then more written than was read before: only
    // its first bytes tell.
    OpenOptions::new()
        .write(true)
        .open(&fx.log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&fx.log, gets(100, 7));
    let s = tail.poll().unwrap();
    assert_eq!((s.ok, s.truncations), (7, 1));
    assert_eq!(requests(&tail), 9.0);
}

#[test]
fn a_restarted_tailer_continues_exactly_where_it_stopped() {
    let fx = Fixture::new();
    append(&fx.log, gets(0, 10));
    let mut tail = fx.tail();
    assert_eq!(tail.poll().unwrap().ok, 10);
    let before = tail.families();
    drop(tail);

    let mode = std::fs::metadata(&fx.state).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&fx.state).unwrap()).unwrap();
    assert_eq!(state["version"], 1);
    assert_eq!(
        state["position"]["offset"],
        std::fs::metadata(&fx.log).unwrap().len()
    );

    // The same counters before any new poll: Prometheus sees no reset.
    let mut tail = fx.tail();
    assert_eq!(tail.families(), before);
    assert_eq!(tail.poll().unwrap(), PollStats::default());
    append(&fx.log, gets(10, 5));
    assert_eq!(tail.poll().unwrap().ok, 5);
    drop(tail);
    let mut tail = fx.tail();
    assert_eq!(tail.poll().unwrap().ok, 0);
    assert_eq!(requests(&tail), 15.0);
    assert_eq!(
        value(
            &tail.families(),
            "rampart_log_requests_total",
            &[("method", "GET"), ("code_class", "2xx")]
        ),
        15.0
    );
    assert_eq!(rotations(&tail) + truncations(&tail), 0.0);
}

#[test]
fn a_rotation_while_the_agent_was_down_reads_the_rest_of_the_old_file_first() {
    let fx = Fixture::new();
    append(&fx.log, gets(0, 4));
    let mut tail = fx.tail();
    assert_eq!(tail.poll().unwrap().ok, 4);
    drop(tail);
    append(&fx.log, gets(4, 3));
    std::fs::rename(&fx.log, fx.rotated()).unwrap();
    append(&fx.log, gets(100, 2));
    let mut tail = fx.tail();
    let s = tail.poll().unwrap();
    assert_eq!((s.ok, s.rotations, s.lost_position), (5, 1, false));
    assert_eq!(requests(&tail), 9.0);
}

#[test]
fn a_rotation_while_the_agent_was_down_with_the_old_file_gone_reads_the_new_from_its_start() {
    let fx = Fixture::new();
    append(&fx.log, gets(0, 4));
    let mut tail = fx.tail();
    assert_eq!(tail.poll().unwrap().ok, 4);
    drop(tail);
    std::fs::remove_file(&fx.log).unwrap();
    // Not there yet: waited for, and the saved position is kept meanwhile.
    let mut tail = fx.tail();
    let s = tail.poll().unwrap();
    assert!(s.waiting);
    drop(tail);
    append(&fx.log, gets(100, 2));
    let mut tail = fx.tail();
    let s = tail.poll().unwrap();
    // A new file may get the deleted one's inode number back, and then looks truncated.
    assert_eq!((s.ok, s.rotations + s.truncations), (2, 1));
    assert!(s.lost_position);
    assert_eq!(requests(&tail), 6.0);
}

#[test]
fn a_log_that_does_not_exist_yet_is_waited_for_without_errors() {
    let fx = Fixture::new();
    let mut tail = fx.tail();
    for _ in 0..3 {
        let s = tail.poll().unwrap();
        assert!(s.waiting && s.ok == 0);
    }
    assert!(!fx.state.exists(), "nothing to save yet");
    append(&fx.log, gets(0, 3));
    let s = tail.poll().unwrap();
    assert_eq!((s.ok, s.waiting, s.rotations), (3, false, 0));
}

#[test]
fn malformed_and_over_long_lines_are_counted_and_skipped() {
    let fx = Fixture::new();
    let long = format!(
        "{{\"method\":\"GET\",\"pad\":\"{}\"}}\n",
        "x".repeat(MAX_LINE)
    );
    let mut bytes = Vec::new();
    bytes.extend_from_slice(gets(0, 1).as_bytes());
    bytes.extend_from_slice(b"not json\n\n{\"method\":\"GET\"}\n\xff\xfe\xfd\n");
    bytes.extend_from_slice(long.as_bytes());
    // Invalid UTF-8 in a field the tailer does not read does not spoil the line.
    bytes.extend_from_slice(
        b"{\"method\":\"GET\",\"status\":500,\"path\":\"/\xc3\x28\",\"duration_ms\":1}\n",
    );
    bytes.extend_from_slice(gets(1, 1).as_bytes());
    append(&fx.log, &bytes);
    let mut tail = fx.tail();
    let s = tail.poll().unwrap();
    assert_eq!((s.ok, s.malformed, s.too_long), (3, 4, 1));

    // An over-long line still being written: counted once when it passes the limit,
    // skipped to its newline across polls and across a restart, never buffered whole.
    append(&fx.log, "y".repeat(MAX_LINE + 10));
    let s = tail.poll().unwrap();
    assert_eq!((s.ok, s.too_long), (0, 1));
    append(&fx.log, "y".repeat(MAX_LINE));
    assert_eq!(
        tail.poll().unwrap(),
        PollStats {
            bytes: MAX_LINE as u64,
            ..PollStats::default()
        }
    );
    drop(tail);
    let mut tail = fx.tail();
    append(&fx.log, format!("yyy\n{}", gets(2, 1)));
    let s = tail.poll().unwrap();
    assert_eq!((s.ok, s.malformed, s.too_long), (1, 0, 0));
    assert_eq!(lines(&tail, "ok"), 4.0);
    assert_eq!(lines(&tail, "malformed"), 4.0);
    assert_eq!(lines(&tail, "too_long"), 2.0);
    assert_eq!(
        value(
            &tail.families(),
            "rampart_log_requests_total",
            &[("method", "GET"), ("code_class", "5xx")]
        ),
        1.0
    );
}

#[test]
fn a_corrupt_state_file_is_an_error_naming_it() {
    let fx = Fixture::new();
    std::fs::write(&fx.state, "{\"version\":1,").unwrap();
    let err = LogTail::open(&fx.log, SERVICE, &fx.state).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("state file {}: ", fx.state.display())),
        "{err}"
    );
}

#[test]
fn promtool_accepts_the_exposition() {
    let Some(promtool) = tool("promtool", None) else {
        return;
    };
    let fx = Fixture::new();
    append(
        &fx.log,
        line("GET", 200, 3.0, "/") + &line("POST", 502, 700.0, "/x") + "junk\n",
    );
    let mut tail = fx.tail();
    tail.poll().unwrap();
    let text = expo::text(&tail.families());
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
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && printed.trim().is_empty(),
        "promtool: {printed}\n{text}"
    );
    assert!(text.contains("# TYPE rampart_log_request_duration_seconds histogram\n"));
    assert!(text.contains(
        "rampart_log_requests_total{service=\"web1\",method=\"POST\",code_class=\"5xx\"} 1\n"
    ));
}

#[test]
fn the_real_access_log_writer_rotated_by_rename_loses_no_line() {
    let fx = Fixture::new();
    let target = LogTarget::File(fx.log.clone());
    let writer = AccessLog::start(&target, Default::default()).unwrap();
    fn entry(i: usize, path: &str) -> Entry<'_> {
        Entry {
            time: now_rfc3339(),
            client: "198.18.0.10".into(),
            method: if i % 2 == 0 { "GET" } else { "POST" },
            host: "www.foobar.com",
            path,
            status: 200,
            bytes: 1,
            duration_ms: 1.0,
            backend: None,
            tls: None,
            proto: "HTTP/1.1",
            db: None,
            request_id: None,
            waf: None,
        }
    }
    // The writer creates the file at start; the tailer holds it from here on.
    let mut tail = fx.tail();
    let mut counted = tail.poll().unwrap().ok;
    let mut logged = 0;
    for _ in 0..500 {
        writer.log(&entry(logged, "/before"));
        logged += 1;
    }
    counted += tail.poll().unwrap().ok;
    std::fs::rename(&fx.log, fx.rotated()).unwrap();
    // Keep logging (and tailing) until the writer's rotation check has moved it to a new
    // file at the path.
    eventually(
        "the writer to reopen the log",
        Duration::from_secs(10),
        || {
            writer.log(&entry(logged, "/during"));
            logged += 1;
            counted += tail.poll().unwrap().ok;
            std::fs::metadata(&fx.log)
                .is_ok_and(|m| m.len() > 0)
                .then_some(())
        },
    );
    for _ in 0..500 {
        writer.log(&entry(logged, "/after"));
        logged += 1;
    }
    drop(writer);
    counted += tail.poll().unwrap().ok;
    assert_eq!(counted, logged as u64);
    assert_eq!(requests(&tail), logged as f64);
    assert_eq!(rotations(&tail), 1.0);
    assert_eq!(
        value(
            &tail.families(),
            "rampart_log_requests_total",
            &[("method", "GET"), ("code_class", "2xx")]
        ),
        logged.div_ceil(2) as f64
    );
}

/// Lines mode, for shipping: every line comes back as written (not parsed), a poll
/// saves nothing until the caller does, so an unsaved poll is read again after a
/// restart, and a rename rotation hands over the old file's rest before the new one's.
#[test]
fn lines_mode_keeps_every_line_and_saves_only_when_told() {
    let f = Fixture::new();
    let append = |p: &Path, text: &str| {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    };
    append(&f.log, "plain text\n{\"not\":\"access\"}\npartial");
    let mut t = LogTail::open_lines(&f.log, SERVICE, &f.state).unwrap();
    t.poll().unwrap();
    assert_eq!(t.take_lines(), ["plain text", "{\"not\":\"access\"}"]);
    assert!(t.take_lines().is_empty());
    assert!(!f.state.exists(), "nothing saved before the caller says so");
    // Not saved: a restart reads the same lines again.
    drop(t);
    let mut t = LogTail::open_lines(&f.log, SERVICE, &f.state).unwrap();
    t.poll().unwrap();
    assert_eq!(t.take_lines().len(), 2);
    t.save().unwrap();
    // Saved: a restart goes on after them, with the partial line completed.
    drop(t);
    append(&f.log, " line\nafter\n");
    let mut t = LogTail::open_lines(&f.log, SERVICE, &f.state).unwrap();
    t.poll().unwrap();
    assert_eq!(t.take_lines(), ["partial line", "after"]);
    t.save().unwrap();
    // Rotated by rename: the old file's rest, then the new file.
    append(&f.log, "old rest\n");
    std::fs::rename(&f.log, f.rotated()).unwrap();
    append(&f.log, "new first\n");
    t.poll().unwrap();
    assert_eq!(t.take_lines(), ["old rest", "new first"]);
}

//! The JSON access log: one line per request. Request paths append the line to a shared
//! buffer under a short lock and never touch the disk or wake anything: a writer thread
//! flushes the buffer every 50 ms (sooner once 64 KiB are waiting), so logging costs no
//! thread wake-up per request. When the writer falls behind and 4 MiB are waiting, lines
//! are dropped and counted (the service's `*_access_log_dropped_total`) rather than
//! slowing clients down. The last handle's drop flushes what is left.
//!
//! A log file survives rotation: before a write, at most once a second (and at the final
//! flush), the writer compares the file the path names with the one it holds open (device
//! and inode); when the path was renamed away (logrotate's `create`) or removed, it opens
//! the path again, creating it, and writes there from then on. Only the writer thread
//! looks at the disk; request paths still only append to the buffer.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;

/// Where access log lines go.
pub use crate::config::LogTarget;

/// One access log line, the same shape for every service. The query string is not
/// logged: it often carries tokens.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    pub time: String,
    pub client: String,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub duration_ms: f64,
    pub backend: Option<&'a str>,
    pub tls: Option<&'a str>,
    pub proto: &'a str,
    /// The web server's database role for the request (`primary`/`replica`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db: Option<&'a str>,
    /// The request id the load balancer gave the request (`X-Request-Id` upstream and
    /// in every response), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
    /// The WAF's evidence, on requests it flagged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waf: Option<&'a WafEvent>,
}

/// What the WAF logs about a request it flagged: never the values that matched unless
/// the operator asked for excerpts, and then with secrets redacted.
#[derive(Clone, Debug, Serialize)]
pub struct WafEvent {
    /// `flag` (rules matched, under the threshold), `would_block` (detect mode) or `block`.
    pub decision: &'static str,
    /// `rules`, `over_limit` or `body_error`.
    pub reason: &'static str,
    /// The route's mode: `detect` or `block`.
    pub mode: &'static str,
    /// The inbound anomaly score.
    pub score: i64,
    pub matches: Vec<WafMatch>,
}

/// One rule that matched: its id, paranoia level and the name of the target.
#[derive(Clone, Debug, Serialize)]
pub struct WafMatch {
    pub id: u64,
    pub paranoia: u8,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
}

/// A handle to the access log writer; cheap to clone.
#[derive(Clone, Debug)]
pub struct AccessLog {
    writer: Option<Arc<Writer>>,
    dropped: Counter,
}

/// Flush at least this often.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Wake the writer early once this much is waiting.
const EAGER: usize = 64 * 1024;
/// Drop lines beyond this much waiting.
const MAX_PENDING: usize = 4 << 20;
/// Check at most this often whether the log file was rotated away.
const REOPEN_CHECK: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Pending {
    buf: Vec<u8>,
    closed: bool,
}

#[derive(Debug, Default)]
struct Queue {
    pending: Mutex<Pending>,
    wake: Condvar,
}

/// The writer thread; dropping the last handle stops it after a final flush.
#[derive(Debug)]
struct Writer {
    queue: Arc<Queue>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Ok(mut p) = self.queue.pending.lock() {
            p.closed = true;
        }
        self.queue.wake.notify_one();
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

impl AccessLog {
    /// Starts the writer thread for `target`. `dropped` counts lines lost because the
    /// writer fell behind.
    pub fn start(target: &LogTarget, dropped: Counter) -> std::io::Result<Self> {
        Self::start_with(target, dropped, REOPEN_CHECK)
    }

    /// [`AccessLog::start`] with the interval between rotation checks as a parameter, so
    /// tests can check before every write.
    fn start_with(
        target: &LogTarget,
        dropped: Counter,
        reopen_check: Duration,
    ) -> std::io::Result<Self> {
        let out = match target {
            LogTarget::Off => {
                return Ok(Self {
                    writer: None,
                    dropped,
                })
            }
            LogTarget::Stdout => Out::Stdout(std::io::stdout()),
            LogTarget::File(path) => Out::File(LogFile::open(path, reopen_check)?),
        };
        let queue = Arc::new(Queue::default());
        let thread = {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name("access-log".into())
                .spawn(move || write_loop(&queue, out))?
        };
        Ok(Self {
            writer: Some(Arc::new(Writer {
                queue,
                thread: Mutex::new(Some(thread)),
            })),
            dropped,
        })
    }

    /// Whether lines are written at all; callers skip building entries when not.
    pub fn enabled(&self) -> bool {
        self.writer.is_some()
    }

    pub fn log(&self, entry: &Entry<'_>) {
        let Some(w) = &self.writer else { return };
        let Ok(mut line) = serde_json::to_vec(entry) else {
            return;
        };
        line.push(b'\n');
        let Ok(mut p) = w.queue.pending.lock() else {
            return;
        };
        if p.buf.len() + line.len() > MAX_PENDING {
            drop(p);
            self.dropped.inc();
            return;
        }
        p.buf.extend_from_slice(&line);
        let eager = p.buf.len() >= EAGER;
        drop(p);
        if eager {
            w.queue.wake.notify_one();
        }
    }

    /// A log that writes nothing (for `rampart check`).
    pub fn disabled() -> Self {
        Self {
            writer: None,
            dropped: Counter::default(),
        }
    }
}

/// Where the writer thread writes.
enum Out {
    Stdout(std::io::Stdout),
    File(LogFile),
}

impl Out {
    /// Writes and flushes `buf`; a file first follows a rotation (forced at the last flush).
    fn write_batch(&mut self, buf: &[u8], last: bool) -> std::io::Result<()> {
        match self {
            Out::Stdout(out) => out.write_all(buf).and_then(|()| out.flush()),
            Out::File(log) => {
                log.follow_rotation(last);
                log.file.write_all(buf)
            }
        }
    }
}

/// The log file and what identifies it, so that a rotation can be noticed.
struct LogFile {
    path: PathBuf,
    file: File,
    /// Device and inode of `file`.
    id: (u64, u64),
    every: Duration,
    checked: Instant,
    /// Whether the last reopen failed (warned once until one succeeds).
    failing: bool,
}

impl LogFile {
    fn open(path: &Path, every: Duration) -> std::io::Result<Self> {
        let file = open_log(path)?;
        let meta = file.metadata()?;
        Ok(Self {
            path: path.to_owned(),
            file,
            id: (meta.dev(), meta.ino()),
            every,
            checked: Instant::now(),
            failing: false,
        })
    }

    /// Reopens the path when it no longer names the open file (renamed or removed by log
    /// rotation). Checks at most once per `every` unless `force`. A failed reopen keeps
    /// writing to the file already open.
    fn follow_rotation(&mut self, force: bool) {
        let now = Instant::now();
        if !force && now.duration_since(self.checked) < self.every {
            return;
        }
        self.checked = now;
        let named = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if named == Some(self.id) {
            return;
        }
        let reopened = open_log(&self.path).and_then(|file| {
            let meta = file.metadata()?;
            Ok((file, (meta.dev(), meta.ino())))
        });
        match reopened {
            Ok((file, id)) => {
                self.file = file;
                self.id = id;
                self.failing = false;
                tracing::info!(path = %self.path.display(), "access log rotated; reopened");
            }
            Err(error) => {
                if !self.failing {
                    tracing::warn!(%error, "access log rotated but cannot be reopened; writing to the old file");
                }
                self.failing = true;
            }
        }
    }
}

fn write_loop(queue: &Queue, mut out: Out) {
    let mut spare = Vec::with_capacity(EAGER);
    loop {
        let closed = {
            let Ok(mut p) = queue.pending.lock() else {
                return;
            };
            if p.buf.is_empty() && !p.closed {
                p = match queue.wake.wait_timeout(p, FLUSH_EVERY) {
                    Ok((p, _)) => p,
                    Err(_) => return,
                };
            }
            std::mem::swap(&mut p.buf, &mut spare);
            p.closed
        };
        if !spare.is_empty() {
            if out.write_batch(&spare, closed).is_err() {
                tracing::warn!("access log write failed; lines lost");
            }
            spare.clear();
        }
        if closed {
            return;
        }
    }
}

fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// The current time as RFC 3339 with milliseconds, UTC.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&fmt).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> Entry<'_> {
        Entry {
            time: now_rfc3339(),
            client: "127.0.0.1".into(),
            method: "GET",
            host: "h",
            path,
            status: 200,
            bytes: 1,
            duration_ms: 0.5,
            backend: None,
            tls: None,
            proto: "HTTP/1.1",
            db: Some("replica"),
            request_id: None,
            waf: None,
        }
    }

    #[test]
    fn lines_reach_the_file_and_the_last_handle_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::start(&LogTarget::File(path.clone()), Counter::default()).unwrap();
        let clone = log.clone();
        for i in 0..1000 {
            clone.log(&entry(&format!("/{i}")));
        }
        drop(clone);
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1000);
        let v: serde_json::Value = serde_json::from_str(lines[999]).unwrap();
        assert_eq!(v["path"], "/999");
        assert_eq!(v["db"], "replica");
    }

    /// The paths logged in `path`, in order (empty when the file does not exist).
    fn paths(path: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["path"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    #[test]
    fn a_log_renamed_by_rotation_is_reopened_and_later_lines_land_in_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let rotated = dir.path().join("access.log.1");
        // Check before every write, so that the lines logged after the rename cannot race
        // a check a second away.
        let target = LogTarget::File(path.clone());
        let log = AccessLog::start_with(&target, Counter::default(), Duration::ZERO).unwrap();
        for i in 0..100 {
            log.log(&entry(&format!("/before/{i}")));
        }
        std::fs::rename(&path, &rotated).unwrap();
        for i in 0..100 {
            log.log(&entry(&format!("/after/{i}")));
        }
        drop(log);
        let old = paths(&rotated);
        let new = paths(&path);
        // Lines logged before the rename may have been flushed after it; every line logged
        // after it is in the new file, and every line is in exactly one file, once.
        let after: Vec<String> = (0..100).map(|i| format!("/after/{i}")).collect();
        assert!(old.iter().all(|p| p.starts_with("/before/")), "{old:?}");
        assert_eq!(new[new.len() - 100..], after[..]);
        let mut all: Vec<String> = old.into_iter().chain(new).collect();
        all.sort();
        let mut want: Vec<String> = (0..100)
            .map(|i| format!("/before/{i}"))
            .chain(after)
            .collect();
        want.sort();
        assert_eq!(all, want);
    }

    #[test]
    fn a_removed_log_is_created_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let target = LogTarget::File(path.clone());
        let log = AccessLog::start_with(&target, Counter::default(), Duration::ZERO).unwrap();
        std::fs::remove_file(&path).unwrap();
        log.log(&entry("/gone"));
        drop(log);
        assert_eq!(paths(&path), ["/gone"]);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o137, 0, "{mode:o}");
    }

    #[test]
    fn without_rotation_the_writer_keeps_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let target = LogTarget::File(path.clone());
        let log = AccessLog::start_with(&target, Counter::default(), Duration::ZERO).unwrap();
        let ino = std::fs::metadata(&path).unwrap().ino();
        for i in 0..10 {
            log.log(&entry(&format!("/{i}")));
        }
        drop(log);
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino);
        assert_eq!(paths(&path).len(), 10);
    }

    #[test]
    fn a_full_buffer_drops_and_counts_instead_of_blocking() {
        let dropped = Counter::default();
        let log = AccessLog::start(&LogTarget::Off, dropped.clone()).unwrap();
        assert!(!log.enabled());
        // Fill the queue directly past its bound, as a stalled writer would leave it.
        let queue = Arc::new(Queue::default());
        queue.pending.lock().unwrap().buf = vec![b'x'; MAX_PENDING];
        let stalled = AccessLog {
            writer: Some(Arc::new(Writer {
                queue: Arc::clone(&queue),
                thread: Mutex::new(None),
            })),
            dropped: dropped.clone(),
        };
        stalled.log(&entry("/over"));
        assert_eq!(dropped.get(), 1);
        assert_eq!(queue.pending.lock().unwrap().buf.len(), MAX_PENDING);
    }
}

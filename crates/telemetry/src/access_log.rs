//! The JSON access log: one line per request. Request paths append the line to a shared
//! buffer under a short lock and never touch the disk or wake anything: a writer thread
//! flushes the buffer every 50 ms (sooner once 64 KiB are waiting), so logging costs no
//! thread wake-up per request. When the writer falls behind and 4 MiB are waiting, lines
//! are dropped and counted (the service's `*_access_log_dropped_total`) rather than
//! slowing clients down. The last handle's drop flushes what is left.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;

/// Where access log lines go.
pub use rampart_topology::config::LogTarget;

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
        let out: Box<dyn Write + Send> = match target {
            LogTarget::Off => {
                return Ok(Self {
                    writer: None,
                    dropped,
                })
            }
            LogTarget::Stdout => Box::new(std::io::stdout()),
            LogTarget::File(path) => Box::new(open_log(path)?),
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

fn write_loop(queue: &Queue, mut out: Box<dyn Write + Send>) {
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
            if out.write_all(&spare).and_then(|()| out.flush()).is_err() {
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

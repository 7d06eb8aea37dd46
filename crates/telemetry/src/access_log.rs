//! The JSON access log: one line per request, written by a background task so the data
//! path never blocks on disk. When the writer falls behind, lines are dropped and
//! counted (the service's `*_access_log_dropped_total`) rather than slowing clients down.

use std::path::{Path, PathBuf};

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Where access log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    Off,
    Stdout,
    File(PathBuf),
}

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
    tx: Option<mpsc::Sender<String>>,
    dropped: Counter,
}

/// Lines buffered before dropping.
const QUEUE: usize = 16_384;

impl AccessLog {
    /// Starts the writer task for `target`. Must be called inside a tokio runtime.
    /// `dropped` counts lines lost because the writer fell behind.
    pub fn start(target: &LogTarget, dropped: Counter) -> std::io::Result<Self> {
        use LogTarget as T;
        let tx = match target {
            T::Off => None,
            T::Stdout => Some(spawn_writer(Box::new(tokio::io::stdout()))),
            T::File(path) => Some(spawn_writer(Box::new(open_log(path)?))),
        };
        Ok(Self { tx, dropped })
    }

    /// Whether lines are written at all; callers skip building entries when not.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn log(&self, entry: &Entry<'_>) {
        let Some(tx) = &self.tx else { return };
        let Ok(mut line) = serde_json::to_string(entry) else {
            return;
        };
        line.push('\n');
        if tx.try_send(line).is_err() {
            self.dropped.inc();
        }
    }
}

fn open_log(path: &Path) -> std::io::Result<tokio::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(tokio::fs::File::from_std(f))
}

fn spawn_writer(mut out: Box<dyn tokio::io::AsyncWrite + Send + Unpin>) -> mpsc::Sender<String> {
    let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
    tokio::spawn(async move {
        let mut buf = Vec::with_capacity(64 * 1024);
        while let Some(line) = rx.recv().await {
            buf.extend_from_slice(line.as_bytes());
            // Batch whatever else is already queued into one write.
            while buf.len() < 60 * 1024 {
                match rx.try_recv() {
                    Ok(l) => buf.extend_from_slice(l.as_bytes()),
                    Err(_) => break,
                }
            }
            if out.write_all(&buf).await.is_err() || out.flush().await.is_err() {
                tracing::warn!("access log write failed; lines lost");
            }
            buf.clear();
        }
    });
    tx
}

/// The current time as RFC 3339 with milliseconds, UTC.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&fmt).unwrap_or_default()
}

impl AccessLog {
    /// A log that writes nothing (for `rampart check`).
    pub fn disabled() -> Self {
        Self {
            tx: None,
            dropped: Counter::default(),
        }
    }
}

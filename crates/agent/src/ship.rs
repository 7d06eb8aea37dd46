//! Log shipping's two tasks (issue 18), run by [`crate::run::Agent::serve`] when the
//! config has `[logs]`:
//!
//! - **read**: every `logs.poll`, each file's tailer ([`LogTail`] in lines mode) reads
//!   what was added, the [`Shipper`] makes one batch of it under the host's bounds, the
//!   batch is appended to the log buffer (fdatasync'd), and only then are the tailers'
//!   positions saved. A crash before the save reads those lines again; the store keeps
//!   one copy of a resent batch (same stream, time and line), but a line read again
//!   gets a new time, so that window (between the buffer's sync and the positions'
//!   save, well under a millisecond) is the one way a line can be stored twice.
//! - **send**: drains the buffer oldest first, several batches per request, with Loki's
//!   push API through the gate; a 2xx acknowledges, a retryable failure backs off
//!   and sends the same batches again, a refusal drops them (counted).
//!
//! State lives in `<state_dir>/logs/`: `buffer/` and one `tail-<service>-<stream>.json`
//! per file.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message as _;
use rampart_logs::push::PushRequest;
use tokio::sync::{watch, Notify};

use crate::buffer::{self, BatchBuffer};
use crate::config::Logs;
use crate::journal::{self, Feed, FeedStats, Journal};
use crate::logship::{Counts, Shipper};
use crate::logtail::LogTail;
use crate::remote_write;
use crate::{Family, Kind, Sample};

/// What shipping has done, for the agent's own metrics.
#[derive(Debug, Default, Clone)]
pub struct ShipStats {
    pub counts: Counts,
    pub read_errors: u64,
    pub lines_sent: u64,
    pub pushes_ok: u64,
    pub pushes_failed_retryable: u64,
    pub pushes_failed_permanent: u64,
    pub lines_dropped_permanent: u64,
    /// Queued lines dropped because the queue was full.
    pub queue_dropped: u64,
    pub buffer: Option<buffer::Stats>,
}

struct Reader {
    tails: Vec<(String, String, LogTail)>,
    journal: Option<Journal>,
    shipper: Shipper,
}

/// The most journal entries one read takes.
const JOURNAL_BUDGET: usize = 20_000;

/// Lines that come from elsewhere than files (the firewall's drop events), held until
/// the next read buffers them; at most this many, the rest dropped and counted.
pub const MAX_QUEUED: usize = 10_000;

/// Log shipping's state, opened with the agent.
pub struct Shipping {
    config: Logs,
    reader: Mutex<Reader>,
    buffer: Arc<Mutex<BatchBuffer<PushRequest>>>,
    /// Queued `(service, stream, line)`s, see [`MAX_QUEUED`].
    queued: Mutex<Vec<(String, String, String)>>,
    /// The journal's feed, until [`Shipping::take_feed`] starts it.
    feed: Mutex<Option<Feed>>,
    /// What the journal's feed has read.
    pub journal_stats: Option<Arc<Mutex<FeedStats>>>,
    pub stats: Arc<Mutex<ShipStats>>,
}

impl std::fmt::Debug for Shipping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipping").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl Shipping {
    /// Opens the log buffer and the tailers under `state_dir/logs`.
    pub fn open(
        config: Logs,
        instance: &str,
        state_dir: &std::path::Path,
        limits: buffer::Limits,
    ) -> Result<Shipping, String> {
        let dir = state_dir.join("logs");
        let buffer = BatchBuffer::open(dir.join("buffer"), limits).map_err(|e| e.to_string())?;
        let mut tails = Vec::new();
        for f in &config.files {
            let state = dir.join(format!("tail-{}-{}.json", f.service, f.stream));
            let tail = LogTail::open_lines(&f.path, &f.service, &state)
                .map_err(|e| format!("{}: {e}", f.path.display()))?;
            tails.push((f.service.clone(), f.stream.clone(), tail));
        }
        let (journal, feed) = match &config.journal {
            Some(j) => {
                let (journal, feed) = journal::open(j, &dir);
                (Some(journal), Some(feed))
            }
            None => (None, None),
        };
        Ok(Shipping {
            reader: Mutex::new(Reader {
                tails,
                journal,
                shipper: Shipper::new(instance, config.limits.clone()),
            }),
            config,
            buffer: Arc::new(Mutex::new(buffer)),
            queued: Mutex::default(),
            journal_stats: feed.as_ref().map(|f| Arc::clone(&f.stats)),
            feed: Mutex::new(feed),
            stats: Arc::default(),
        })
    }

    /// The journal's feed, once, for the agent to run beside the reads.
    pub fn take_feed(&self) -> Option<Feed> {
        lock(&self.feed).take()
    }

    /// Queues a line that is not read from a file (a drop event); the next read
    /// buffers it with the files' lines. Past [`MAX_QUEUED`] it is dropped and counted.
    pub fn queue(&self, service: &str, stream: &str, line: String) {
        let mut q = lock(&self.queued);
        if q.len() >= MAX_QUEUED {
            drop(q);
            lock(&self.stats).queue_dropped += 1;
            return;
        }
        q.push((service.to_owned(), stream.to_owned(), line));
    }

    /// One read: every file's new lines into one buffered batch, then the positions.
    /// Blocking (file I/O and fdatasync).
    pub fn read_once(&self) {
        let mut reader = lock(&self.reader);
        let Reader {
            tails,
            journal,
            shipper,
        } = &mut *reader;
        let mut lines: Vec<(String, String, String, Option<i64>)> = Vec::new();
        let mut errors = 0;
        for (service, stream, tail) in tails.iter_mut() {
            for _ in 0..8 {
                match tail.poll() {
                    Ok(s) if s.more => {}
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading a log to ship");
                        errors += 1;
                        break;
                    }
                }
            }
            lines.extend(
                tail.take_lines()
                    .into_iter()
                    .map(|l| (service.clone(), stream.clone(), l, None)),
            );
        }
        let queued = std::mem::take(&mut *lock(&self.queued));
        lines.extend(queued.into_iter().map(|(a, b, c)| (a, b, c, None)));
        let entries = journal
            .as_mut()
            .map(|j| j.take(JOURNAL_BUDGET))
            .unwrap_or_default();
        lines.extend(entries.iter().map(|e| {
            (
                e.service.clone(),
                journal::STREAM.to_owned(),
                e.line.clone(),
                Some(e.at_ns),
            )
        }));
        let mut stats = lock(&self.stats);
        stats.read_errors += errors;
        if !lines.is_empty() {
            match shipper.batch_timed(now_ns(), lines) {
                Ok(batch) => {
                    if let Err(e) = lock(&self.buffer).append(&batch) {
                        // Not saved: the lines are read again next time.
                        tracing::warn!(error = %e, "buffering log lines");
                        if let Some(j) = journal.as_mut() {
                            j.not_buffered(entries);
                        }
                        stats.read_errors += 1;
                        stats.counts = shipper.counts;
                        return;
                    }
                }
                Err(e) => tracing::error!(error = %e, "log labels"),
            }
        }
        stats.counts = shipper.counts;
        stats.buffer = Some(lock(&self.buffer).stats());
        drop(stats);
        for (_, _, tail) in tails.iter_mut() {
            if tail.unsaved() {
                if let Err(e) = tail.save() {
                    tracing::warn!(error = %e, "saving a log position");
                }
            }
        }
        if let Some(j) = journal.as_mut().filter(|j| j.unsaved()) {
            if let Err(e) = j.save() {
                tracing::warn!(error = %e, "saving the journal's cursor");
            }
        }
    }

    /// Reads every `logs.poll` until `stop`, waking the sender after each read.
    pub async fn read_loop(self: Arc<Self>, notify: Arc<Notify>, mut stop: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(self.config.poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
            }
            let me = Arc::clone(&self);
            let _ = tokio::task::spawn_blocking(move || me.read_once()).await;
            notify.notify_one();
        }
    }

    /// Drains the buffer to the log store until `stop`.
    pub async fn send_loop(
        self: Arc<Self>,
        client: remote_write::Client,
        notify: Arc<Notify>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut attempt: u32 = 0;
        loop {
            if *stop.borrow() {
                return;
            }
            let b = Arc::clone(&self.buffer);
            let pending = tokio::task::spawn_blocking(move || lock(&b).peek(32, 8 << 20)).await;
            let batches = match pending {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "reading the log buffer");
                    Vec::new()
                }
                Err(_) => Vec::new(),
            };
            let Some(through) = batches.last().map(|(c, _)| *c) else {
                tokio::select! {
                    () = notify.notified() => {}
                    _ = stop.changed() => {}
                }
                continue;
            };
            let mut request = PushRequest::default();
            for (_, b) in batches {
                request.streams.extend(b.streams);
            }
            let lines: u64 = request.streams.iter().map(|s| s.entries.len() as u64).sum();
            let body = snap::raw::Encoder::new()
                .compress_vec(&request.encode_to_vec())
                .unwrap_or_default();
            match remote_write::push_logs(&client, &self.config.url, Bytes::from(body)).await {
                Ok(_) => {
                    attempt = 0;
                    let b = Arc::clone(&self.buffer);
                    let acked = tokio::task::spawn_blocking(move || lock(&b).ack(through)).await;
                    if let Ok(Err(e)) = acked {
                        tracing::warn!(error = %e, "acknowledging shipped logs");
                    }
                    let mut s = lock(&self.stats);
                    s.pushes_ok += 1;
                    s.lines_sent += lines;
                }
                Err(e) if e.retryable() => {
                    lock(&self.stats).pushes_failed_retryable += 1;
                    let wait = remote_write::backoff(attempt);
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(error = %e, retry_in = ?wait, "log push failed; will retry");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => return,
                    }
                }
                Err(e) => {
                    attempt = 0;
                    tracing::error!(error = %e, lines, "log push refused; dropping these lines");
                    let b = Arc::clone(&self.buffer);
                    let _ = tokio::task::spawn_blocking(move || lock(&b).reject(through)).await;
                    let mut s = lock(&self.stats);
                    s.pushes_failed_permanent += 1;
                    s.lines_dropped_permanent += lines;
                }
            }
        }
    }

    /// `rampart_agent_log_*`: lines by outcome, pushes by outcome, and the buffer.
    pub fn families(&self) -> Vec<Family> {
        let s = lock(&self.stats).clone();
        let by = |k: &str, pairs: &[(&str, u64)]| {
            pairs
                .iter()
                .map(|(v, n)| Sample {
                    labels: vec![(k.to_owned(), (*v).to_owned())],
                    value: *n as f64,
                    suffix: "",
                })
                .collect()
        };
        let counter = |name: &str, help: &str, samples| Family {
            name: name.to_owned(),
            help: help.to_owned(),
            kind: Kind::Counter,
            samples,
        };
        let mut out = vec![
            counter(
                "rampart_agent_log_lines_total",
                "Log lines by outcome: read and buffered, sent and acknowledged, truncated to the line limit (still shipped), masked, dropped over the rate limit, dropped by the store's refusal, dropped because the event queue was full.",
                by(
                    "outcome",
                    &[
                        ("buffered", s.counts.shipped),
                        ("sent", s.lines_sent),
                        ("truncated", s.counts.truncated),
                        ("masked", s.counts.masked),
                        ("rate_limited", s.counts.rate_limited),
                        ("refused", s.lines_dropped_permanent),
                        ("queue_full", s.queue_dropped),
                    ],
                ),
            ),
            counter(
                "rampart_agent_log_pushes_total",
                "Log pushes by outcome.",
                by(
                    "outcome",
                    &[
                        ("ok", s.pushes_ok),
                        ("retryable", s.pushes_failed_retryable),
                        ("permanent", s.pushes_failed_permanent),
                    ],
                ),
            ),
            counter(
                "rampart_agent_log_read_errors_total",
                "Failed reads of a shipped log file or of the log buffer.",
                vec![Sample {
                    labels: Vec::new(),
                    value: s.read_errors as f64,
                    suffix: "",
                }],
            ),
        ];
        if let Some(j) = &self.journal_stats {
            let j = *lock(j);
            out.push(counter(
                "rampart_agent_journal_entries_total",
                "Journal entries read by outcome: handed to shipping, skipped (a unit not configured), malformed (not an entry, or over 1 MiB).",
                by(
                    "outcome",
                    &[
                        ("read", j.entries),
                        ("skipped", j.skipped),
                        ("malformed", j.malformed),
                    ],
                ),
            ));
            out.push(counter(
                "rampart_agent_journal_restarts_total",
                "Times journalctl exited (or did not start) and was started again.",
                vec![Sample {
                    labels: Vec::new(),
                    value: j.restarts as f64,
                    suffix: "",
                }],
            ));
        }
        if let Some(b) = s.buffer {
            out.push(Family {
                name: "rampart_agent_log_buffer_lines".into(),
                help: "Log lines in the buffer, not yet acknowledged by the store.".into(),
                kind: Kind::Gauge,
                samples: vec![Sample {
                    labels: Vec::new(),
                    value: b.samples as f64,
                    suffix: "",
                }],
            });
        }
        out
    }
}

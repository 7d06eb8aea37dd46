//! The access-log tailer: request counts by method and status class, a latency histogram
//! and the tailer's own counters, derived from a service's JSON access log (the lines
//! `rampart_telemetry::access_log` writes), independently of the service's own metrics.
//!
//! **Reading.** [`LogTail::poll`] reads every complete line added since the last poll
//! (with `pread`, from a handle it keeps open). A partial last line waits for its newline.
//! A line longer than [`MAX_LINE`] is counted as `too_long` and skipped up to its newline,
//! never buffered whole. A line that is not a JSON object with a string `method`, an
//! integer `status` and a non-negative `duration_ms` is counted as `malformed`; invalid
//! UTF-8 is replaced, not refused. One poll reads at most [`POLL_BUDGET`] bytes and says
//! [`PollStats::more`] when it stopped there.
//!
//! **Rotation** (logrotate `create`: the path now names another file). The tailer switches
//! to the file at the path only once that file holds data: a writer moves to the new file
//! only after its last write to the old one, so reading the old handle to its end after
//! seeing data in the new file loses nothing, and a writer that never reopens (or a path
//! that stays missing) keeps being followed through the old handle. Each switch counts
//! one rotation; a partial last line of the old file is handled as a line.
//! **Truncation** (`copytruncate`: the same file, shorter than the read position, or
//! whose first bytes changed): the tailer restarts at offset 0 and counts a truncation.
//! The lines it had not read yet are recovered from the copy when a file next to the log
//! whose name starts with the log's name (`access.log.1`, `access.log-20250101`) begins
//! with the same bytes. A log that does not exist yet is waited for, silently.
//!
//! **Restart safety.** The position (device, inode, offset of the first unread line, a
//! hash of the file's first bytes) and every counter live in one state file, written
//! atomically (temporary file, fsync, rename, fsync of the directory; mode 0600) at the
//! end of every poll that read data or changed position, and by [`LogTail::save`]. An
//! agent restarted from it continues exactly after the last line it counted, with its
//! counters continuing from their saved values, so Prometheus sees no reset and no line is
//! counted twice. If the path names another file at startup (rotated while the agent was
//! down), the old file is looked up by its inode among the files next to the log; when
//! found, its rest is read before the new file, else the new file is read from 0 and the
//! poll reports [`PollStats::lost_position`].

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use rampart_telemetry::metrics::{status_class, STATUS_CLASSES};
use serde::{Deserialize, Serialize};

use crate::{Family, Kind, Sample};

/// Lines longer than this (without the newline) are counted as `too_long` and skipped.
pub const MAX_LINE: usize = 64 * 1024;
/// The most one [`LogTail::poll`] reads.
pub const POLL_BUDGET: u64 = 32 << 20;
/// The methods that get their own label value; any other is `other`.
pub const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
/// The upper bounds of the latency histogram's buckets, in seconds (`+Inf` follows).
pub const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// [`BUCKETS`] in nanoseconds: durations are kept as integer nanoseconds so that the sum
/// survives a restart exactly and never decreases.
const BUCKETS_NS: [u64; 13] = [
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];
/// The `le` label of each bucket, as Prometheus client libraries format it.
const LE: [&str; 14] = [
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
    "10", "+Inf",
];
/// How many of a file's first bytes identify it.
const HEAD: u64 = 1024;
/// Read this much at a time.
const CHUNK: usize = 64 * 1024;
const STATE_VERSION: u32 = 1;

/// Why the tailer could not go on; each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("{}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("state file {}: {reason}", path.display())]
    State { path: PathBuf, reason: String },
    #[error("state file {}: write: {source}", path.display())]
    Save {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What one [`LogTail::poll`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollStats {
    /// Bytes read from log files.
    pub bytes: u64,
    /// Lines counted as requests.
    pub ok: u64,
    pub malformed: u64,
    pub too_long: u64,
    pub rotations: u64,
    pub truncations: u64,
    /// The log does not exist (yet) and no earlier file is being read.
    pub waiting: bool,
    /// The poll stopped at [`POLL_BUDGET`]: there is more to read now.
    pub more: bool,
    /// The saved position's file was gone at startup, so the lines written to it after
    /// the last save were not counted.
    pub lost_position: bool,
}

/// The request method as a label value: one of [`METHODS`] (case-sensitive, as HTTP
/// methods are) or `other`.
pub fn method_label(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

/// The status class as a label value: `1xx` to `5xx`, or `other` outside 100–599, as
/// every request counter classifies ([`status_class`]; a status past `u16` is `other`).
pub fn code_class(status: u64) -> &'static str {
    status_class(u16::try_from(status).unwrap_or(u16::MAX))
}

/// The index of the histogram bucket a duration falls in: the first bound at or above it
/// (Prometheus buckets are `le`), or `BUCKETS.len()` for `+Inf`.
pub fn bucket_index(duration_ns: u64) -> usize {
    BUCKETS_NS.partition_point(|&b| b < duration_ns)
}

/// A request's duration from the log's `duration_ms`, in integer nanoseconds; `None` for a
/// negative or non-finite value.
pub fn duration_ns(duration_ms: f64) -> Option<u64> {
    // `as` saturates, so absurdly large durations land in +Inf rather than wrapping.
    (duration_ms.is_finite() && duration_ms >= 0.0).then(|| (duration_ms * 1e6).round() as u64)
}

/// The fields of an access-log line the tailer reads; others are ignored.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    method: Cow<'a, str>,
    status: u64,
    duration_ms: f64,
}

/// Everything counted so far; all of it is saved in the state file.
#[derive(Clone, Debug, Default, PartialEq)]
struct Counts {
    /// (method, class) → requests.
    requests: BTreeMap<(&'static str, &'static str), u64>,
    /// Observations per bucket, not cumulative; the last is above the largest bound.
    buckets: [u64; 14],
    sum_ns: u64,
    ok: u64,
    malformed: u64,
    too_long: u64,
    rotations: u64,
    truncations: u64,
    read_bytes: u64,
    /// Lines mode ([`LogTail::open_lines`]): every line is kept here, as text, until
    /// [`LogTail::take_lines`]; none is parsed as an access-log line. Not saved.
    keep: Option<Vec<String>>,
}

impl Counts {
    fn line(&mut self, bytes: &[u8], stats: &mut PollStats) {
        let text = String::from_utf8_lossy(bytes);
        if let Some(keep) = self.keep.as_mut() {
            keep.push(text.into_owned());
            self.ok += 1;
            stats.ok += 1;
            return;
        }
        let parsed = serde_json::from_str::<Line<'_>>(&text)
            .ok()
            .and_then(|l| Some((l.method, l.status, duration_ns(l.duration_ms)?)));
        let Some((method, status, ns)) = parsed else {
            self.malformed += 1;
            stats.malformed += 1;
            return;
        };
        *self
            .requests
            .entry((method_label(&method), code_class(status)))
            .or_default() += 1;
        self.buckets[bucket_index(ns)] += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
        self.ok += 1;
        stats.ok += 1;
    }

    fn too_long(&mut self, stats: &mut PollStats) {
        self.too_long += 1;
        stats.too_long += 1;
    }
}

/// Where reading stands in one file.
#[derive(Clone, Debug)]
struct Cursor {
    /// The next byte to read.
    pos: u64,
    /// The partial line read so far (bytes before `pos`).
    pending: Vec<u8>,
    /// Inside an over-long line (already counted): discard up to its newline.
    skipping: bool,
    /// FNV-1a of the file's first `head_len` bytes (up to [`HEAD`]).
    head_len: u64,
    head_hash: u64,
}

impl Default for Cursor {
    /// The start of a file.
    fn default() -> Self {
        Self {
            pos: 0,
            pending: Vec::new(),
            skipping: false,
            head_len: 0,
            head_hash: FNV_OFFSET,
        }
    }
}

impl Cursor {
    /// The offset of the first byte not yet consumed: the start of the partial line.
    fn offset(&self) -> u64 {
        self.pos - self.pending.len() as u64
    }

    /// Consumes `chunk`, the bytes at `pos`.
    fn feed(&mut self, chunk: &[u8], counts: &mut Counts, stats: &mut PollStats) {
        if self.head_len < HEAD && self.head_len >= self.pos {
            let from = (self.head_len - self.pos) as usize;
            let to = (HEAD - self.pos).min(chunk.len() as u64) as usize;
            if from < to {
                self.head_hash = fnv(self.head_hash, &chunk[from..to]);
                self.head_len = self.pos + to as u64;
            }
        }
        self.pos += chunk.len() as u64;
        let mut rest = chunk;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            let piece = &rest[..i];
            rest = &rest[i + 1..];
            if self.skipping {
                self.skipping = false;
            } else if self.pending.len() + piece.len() > MAX_LINE {
                self.pending.clear();
                counts.too_long(stats);
            } else if self.pending.is_empty() {
                counts.line(piece, stats);
            } else {
                self.pending.extend_from_slice(piece);
                counts.line(&self.pending, stats);
                self.pending.clear();
            }
        }
        if self.skipping || rest.is_empty() {
            return;
        }
        if self.pending.len() + rest.len() > MAX_LINE {
            self.pending.clear();
            self.skipping = true;
            counts.too_long(stats);
        } else {
            self.pending.extend_from_slice(rest);
        }
    }

    /// The end of a file that will not grow any more: a partial last line is a line.
    fn finish(&mut self, counts: &mut Counts, stats: &mut PollStats) {
        if !self.skipping && !self.pending.is_empty() {
            counts.line(&self.pending, stats);
        }
        self.pending.clear();
        self.skipping = false;
    }
}

/// What the tailer makes of a log whose bytes arrive in `chunks` (as reads would return
/// them) and then end: lines split across chunks joined, over-long ones skipped and
/// counted, each judged a request or malformed. The framing and parsing of [`LogTail`]
/// without files: the entry point of the access-log fuzz target.
pub fn count_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> PollStats {
    let mut cursor = Cursor::default();
    let mut counts = Counts::default();
    let mut stats = PollStats::default();
    for chunk in chunks {
        stats.bytes += chunk.len() as u64;
        cursor.feed(chunk, &mut counts, &mut stats);
    }
    cursor.finish(&mut counts, &mut stats);
    stats
}

/// FNV-1a, 64 bit, continued from `hash` (start from [`FNV_OFFSET`]): stable across
/// builds, unlike std's hasher, because it is saved.
fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Whether `file` begins with the bytes `cursor` has seen at its start.
fn same_head(file: &File, len: u64, cursor: &Cursor) -> bool {
    if cursor.head_len == 0 {
        return true;
    }
    if len < cursor.head_len {
        return false;
    }
    let mut head = vec![0; cursor.head_len as usize];
    file.read_exact_at(&mut head, 0).is_ok() && fnv(FNV_OFFSET, &head) == cursor.head_hash
}

/// Reads `file` from `cursor.pos` to its end or until `budget` runs out; true at the end.
fn drain(
    file: &File,
    path: &Path,
    cursor: &mut Cursor,
    counts: &mut Counts,
    stats: &mut PollStats,
    buf: &mut [u8],
    budget: &mut u64,
) -> Result<bool, TailError> {
    loop {
        if *budget == 0 {
            return Ok(false);
        }
        let want = buf
            .len()
            .min(usize::try_from(*budget).unwrap_or(usize::MAX));
        let n = match file.read_at(&mut buf[..want], cursor.pos) {
            Ok(0) => return Ok(true),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(TailError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        *budget -= n as u64;
        stats.bytes += n as u64;
        counts.read_bytes += n as u64;
        cursor.feed(&buf[..n], counts, stats);
    }
}

/// The file being read.
struct Current {
    file: File,
    dev: u64,
    ino: u64,
    cursor: Cursor,
}

impl Current {
    fn new(file: File, meta: &Metadata, cursor: Cursor) -> Self {
        Self {
            file,
            dev: meta.dev(),
            ino: meta.ino(),
            cursor,
        }
    }
}

/// Opens `path`; `None` when it does not exist.
fn open_existing(path: &Path) -> Result<Option<(File, Metadata)>, TailError> {
    let opened = File::open(path).and_then(|f| {
        let meta = f.metadata()?;
        Ok((f, meta))
    });
    match opened {
        Ok(found) => Ok(Some(found)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TailError::Open {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The first file next to `path` (in its directory, named with `path`'s name as a prefix,
/// not `path` itself) for which `matches` holds: where rotation puts the old log.
fn find_rotated(
    path: &Path,
    matches: impl Fn(&File, &Metadata) -> bool,
) -> Option<(File, Metadata)> {
    let name = path.file_name()?.as_bytes();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
        let entry_name = entry.file_name();
        let candidate = entry_name.as_bytes();
        if candidate == name || !candidate.starts_with(name) {
            return None;
        }
        let file = File::open(entry.path()).ok()?;
        let meta = file.metadata().ok()?;
        (meta.is_file() && matches(&file, &meta)).then_some((file, meta))
    })
}

/// Tails one service's access log. See the module documentation.
pub struct LogTail {
    path: PathBuf,
    service: String,
    state_file: PathBuf,
    current: Option<Current>,
    /// The position from the state file, until a file is attached.
    saved: Option<SavedPosition>,
    counts: Counts,
    /// Whether there is something to save.
    dirty: bool,
    /// Whether a poll saves its progress itself (not in lines mode: the caller saves
    /// once the lines are safe in its buffer).
    autosave: bool,
    budget: u64,
    buf: Vec<u8>,
}

impl std::fmt::Debug for LogTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogTail")
            .field("path", &self.path)
            .field("service", &self.service)
            .field("offset", &self.current.as_ref().map(|c| c.cursor.offset()))
            .finish_non_exhaustive()
    }
}

impl LogTail {
    /// A tailer of the log at `path`, labelled `service`, resuming from `state_file` if it
    /// exists. Does not touch the log: the first [`poll`](Self::poll) opens it. Fails only
    /// when the state file exists but cannot be read or parsed (it is never written
    /// partially, so that is not a crash's doing); the caller decides whether to remove it.
    pub fn open(path: &Path, service: &str, state_file: &Path) -> Result<LogTail, TailError> {
        let state_err = |reason: String| TailError::State {
            path: state_file.to_owned(),
            reason,
        };
        let (counts, saved) = match std::fs::read(state_file) {
            Ok(bytes) => {
                let state: StateFile =
                    serde_json::from_slice(&bytes).map_err(|e| state_err(e.to_string()))?;
                if state.version != STATE_VERSION {
                    return Err(state_err(format!(
                        "version {}, expected {STATE_VERSION}",
                        state.version
                    )));
                }
                let counts = state.counts.restore().map_err(state_err)?;
                // A position in another file is no position in this one; the counters
                // carry on either way.
                let saved = state
                    .position
                    .filter(|_| state.path == path.to_string_lossy());
                (counts, saved)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Counts::default(), None),
            Err(e) => return Err(state_err(e.to_string())),
        };
        Ok(LogTail {
            path: path.to_owned(),
            service: service.to_owned(),
            state_file: state_file.to_owned(),
            current: None,
            saved,
            counts,
            dirty: false,
            autosave: true,
            budget: POLL_BUDGET,
            buf: vec![0; CHUNK],
        })
    }

    /// Reads every complete line added since the last poll, following rotation and
    /// truncation, then saves the state if anything changed. A missing log is not an
    /// error; an unreadable one, a read error or a failed save is (progress made before a
    /// failed save stays counted and is saved by the next poll).
    pub fn poll(&mut self) -> Result<PollStats, TailError> {
        let mut stats = PollStats::default();
        let mut budget = self.budget;
        if self.current.is_none() {
            self.attach(&mut stats)?;
        }
        while let Some(cur) = self.current.as_mut() {
            let meta = cur.file.metadata().map_err(|source| TailError::Read {
                path: self.path.clone(),
                source,
            })?;
            if meta.len() < cur.cursor.pos || !same_head(&cur.file, meta.len(), &cur.cursor) {
                recover_from_copy(
                    &self.path,
                    cur.ino,
                    &cur.cursor,
                    &mut self.counts,
                    &mut stats,
                    &mut self.buf,
                );
                cur.cursor = Cursor::default();
                self.counts.truncations += 1;
                stats.truncations += 1;
                self.dirty = true;
            }
            // Look at the path before reading the old file to its end: data in a new file
            // means the writer is done with the old one. Errors here only mean "not yet".
            let id = (cur.dev, cur.ino);
            let moved_on = |m: &Metadata| (m.dev(), m.ino()) != id && m.len() > 0;
            let next = std::fs::metadata(&self.path)
                .ok()
                .filter(moved_on)
                .and_then(|_| open_existing(&self.path).ok().flatten())
                .filter(|(_, m)| moved_on(m));
            let end = drain(
                &cur.file,
                &self.path,
                &mut cur.cursor,
                &mut self.counts,
                &mut stats,
                &mut self.buf,
                &mut budget,
            )?;
            if !end {
                stats.more = true;
                break;
            }
            let Some((file, meta)) = next else { break };
            cur.cursor.finish(&mut self.counts, &mut stats);
            self.current = Some(Current::new(file, &meta, Cursor::default()));
            self.counts.rotations += 1;
            stats.rotations += 1;
            self.dirty = true;
        }
        if stats.bytes > 0 {
            self.dirty = true;
        }
        if self.dirty && self.autosave {
            self.save()?;
        }
        Ok(stats)
    }

    /// A tailer that keeps the lines themselves (for shipping), with the same reading,
    /// rotation, truncation and restart rules as [`LogTail::open`]. Its polls do not
    /// save: the caller takes the lines ([`LogTail::take_lines`]), stores them durably,
    /// and then calls [`LogTail::save`], so a crash in between reads them again rather
    /// than losing them.
    pub fn open_lines(path: &Path, service: &str, state_file: &Path) -> Result<LogTail, TailError> {
        let mut t = Self::open(path, service, state_file)?;
        t.counts.keep = Some(Vec::new());
        t.autosave = false;
        Ok(t)
    }

    /// The lines read since the last call (lines mode; empty otherwise).
    pub fn take_lines(&mut self) -> Vec<String> {
        self.counts
            .keep
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Whether a poll read or moved anything not saved yet.
    pub fn unsaved(&self) -> bool {
        self.dirty
    }

    /// Finds the file to read when none is open: the saved position's if it still
    /// exists, else the file at the path.
    fn attach(&mut self, stats: &mut PollStats) -> Result<(), TailError> {
        let at_path = open_existing(&self.path)?;
        let Some(saved) = self.saved.clone() else {
            match at_path {
                Some((file, meta)) => {
                    self.current = Some(Current::new(file, &meta, Cursor::default()));
                    self.dirty = true;
                }
                None => stats.waiting = true,
            }
            return Ok(());
        };
        let cursor = saved.cursor();
        let same = |m: &Metadata| (m.dev(), m.ino()) == (saved.dev, saved.inode);
        match at_path {
            Some((file, meta)) if same(&meta) => {
                if meta.len() >= cursor.pos && same_head(&file, meta.len(), &cursor) {
                    self.saved = None;
                    self.current = Some(Current::new(file, &meta, cursor));
                } else {
                    // Truncated while the agent was down (or deleted, and its inode
                    // reused by the new file: the first bytes cannot tell them apart).
                    stats.lost_position = !recover_from_copy(
                        &self.path,
                        saved.inode,
                        &cursor,
                        &mut self.counts,
                        stats,
                        &mut self.buf,
                    );
                    self.counts.truncations += 1;
                    stats.truncations += 1;
                    self.attach_new(Some((file, meta)));
                }
                return Ok(());
            }
            _ => {}
        }
        // The path names another file, or none: rotated while the agent was down.
        let old = find_rotated(&self.path, |f, m| {
            (m.dev(), m.ino()) == (saved.dev, saved.inode)
                && m.len() >= cursor.pos
                && same_head(f, m.len(), &cursor)
        });
        if let Some((file, meta)) = old {
            // Read its rest; the poll then moves on to the file at the path.
            self.saved = None;
            self.current = Some(Current::new(file, &meta, cursor));
        } else if at_path.is_some() {
            self.counts.rotations += 1;
            stats.rotations += 1;
            stats.lost_position = true;
            self.attach_new(at_path);
        } else {
            stats.waiting = true;
        }
        Ok(())
    }

    /// Starts reading the file at the path from offset 0, forgetting the saved position.
    fn attach_new(&mut self, at_path: Option<(File, Metadata)>) {
        self.saved = None;
        self.dirty = true;
        self.current = at_path.map(|(file, meta)| Current::new(file, &meta, Cursor::default()));
    }

    /// Writes the position and counters to the state file: a temporary file next to it
    /// (0600), fsynced, renamed over it, and the directory fsynced.
    pub fn save(&mut self) -> Result<(), TailError> {
        let position = match &self.current {
            Some(c) => Some(SavedPosition {
                dev: c.dev,
                inode: c.ino,
                offset: c.cursor.offset(),
                skipping: c.cursor.skipping,
                head_len: c.cursor.head_len,
                head_hash: c.cursor.head_hash,
            }),
            None => self.saved.clone(),
        };
        let state = StateFile {
            version: STATE_VERSION,
            path: self.path.to_string_lossy().into_owned(),
            position,
            counts: StoredCounts::from(&self.counts),
        };
        let save_err = |source| TailError::Save {
            path: self.state_file.clone(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(&state).map_err(|e| save_err(e.into()))?;
        rampart_telemetry::fs::write_atomic(&self.state_file, &bytes, 0o600).map_err(save_err)?;
        self.dirty = false;
        Ok(())
    }

    /// The derived families, every sample labelled `service`: requests by method and
    /// status class, the latency histogram, and the tailer's lines, bytes, rotations and
    /// truncations.
    pub fn families(&self) -> Vec<Family> {
        let c = &self.counts;
        let service = || vec![("service".to_owned(), self.service.clone())];
        let with = |extra: &[(&str, &str)]| {
            let mut labels = service();
            labels.extend(
                extra
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            );
            labels
        };
        let sample = |labels, value: u64, suffix| Sample {
            labels,
            value: value as f64,
            suffix,
        };
        let counter = |name: &str, help: &str, samples| Family {
            name: name.to_owned(),
            help: help.to_owned(),
            kind: Kind::Counter,
            samples,
        };
        let requests = c
            .requests
            .iter()
            .map(|((m, cl), n)| sample(with(&[("method", m), ("code_class", cl)]), *n, ""))
            .collect();
        let mut histogram = Vec::with_capacity(LE.len() + 2);
        let mut cumulative = 0;
        for (le, n) in LE.iter().zip(c.buckets) {
            cumulative += n;
            histogram.push(sample(with(&[("le", le)]), cumulative, "_bucket"));
        }
        histogram.push(Sample {
            labels: service(),
            value: c.sum_ns as f64 / 1e9,
            suffix: "_sum",
        });
        histogram.push(sample(service(), cumulative, "_count"));
        vec![
            counter(
                "rampart_log_requests_total",
                "Requests counted from the access log, by method and status class.",
                requests,
            ),
            Family {
                name: "rampart_log_request_duration_seconds".to_owned(),
                help: "Request durations from the access log.".to_owned(),
                kind: Kind::Histogram,
                samples: histogram,
            },
            counter(
                "rampart_log_lines_total",
                "Access log lines read, by result (ok, malformed, too_long).",
                vec![
                    sample(with(&[("result", "ok")]), c.ok, ""),
                    sample(with(&[("result", "malformed")]), c.malformed, ""),
                    sample(with(&[("result", "too_long")]), c.too_long, ""),
                ],
            ),
            counter(
                "rampart_log_read_bytes_total",
                "Bytes read from the access log.",
                vec![sample(service(), c.read_bytes, "")],
            ),
            counter(
                "rampart_log_rotations_total",
                "Times the access log was found rotated and the tailer moved to the new file.",
                vec![sample(service(), c.rotations, "")],
            ),
            counter(
                "rampart_log_truncations_total",
                "Times the access log was found truncated and read again from its start.",
                vec![sample(service(), c.truncations, "")],
            ),
        ]
    }
}

/// After a truncation, reads what `cursor` had not read yet from the copy that
/// `copytruncate` left next to the log (same first bytes, another inode, long enough).
/// False when there is no such copy.
fn recover_from_copy(
    path: &Path,
    ino: u64,
    cursor: &Cursor,
    counts: &mut Counts,
    stats: &mut PollStats,
    buf: &mut [u8],
) -> bool {
    if cursor.head_len == 0 {
        return false;
    }
    let copy = find_rotated(path, |f, m| {
        m.ino() != ino && m.len() >= cursor.pos && same_head(f, m.len(), cursor)
    });
    let Some((file, _)) = copy else {
        return false;
    };
    let mut cursor = cursor.clone();
    let mut unbounded = u64::MAX;
    let read = drain(&file, path, &mut cursor, counts, stats, buf, &mut unbounded).is_ok();
    if read {
        cursor.finish(counts, stats);
    }
    read
}

/// The state file: `{"version": 1, "path": …, "position": {…} | null, "counts": {…}}`.
#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    /// The log the position belongs to.
    path: String,
    position: Option<SavedPosition>,
    counts: StoredCounts,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct SavedPosition {
    dev: u64,
    inode: u64,
    /// The first byte not yet counted: the start of a partial line, if any.
    offset: u64,
    /// `offset` is inside an over-long line, already counted.
    skipping: bool,
    head_len: u64,
    head_hash: u64,
}

impl SavedPosition {
    fn cursor(&self) -> Cursor {
        Cursor {
            pos: self.offset,
            pending: Vec::new(),
            skipping: self.skipping,
            head_len: self.head_len,
            head_hash: self.head_hash,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StoredRequests {
    method: String,
    code_class: String,
    count: u64,
}

#[derive(Serialize, Deserialize)]
struct StoredCounts {
    requests: Vec<StoredRequests>,
    /// Per bucket as [`BUCKETS`] then `+Inf`, not cumulative.
    duration_buckets: Vec<u64>,
    duration_sum_ns: u64,
    lines_ok: u64,
    lines_malformed: u64,
    lines_too_long: u64,
    rotations: u64,
    truncations: u64,
    read_bytes: u64,
}

impl From<&Counts> for StoredCounts {
    fn from(c: &Counts) -> Self {
        Self {
            requests: c
                .requests
                .iter()
                .map(|((m, cl), n)| StoredRequests {
                    method: (*m).to_owned(),
                    code_class: (*cl).to_owned(),
                    count: *n,
                })
                .collect(),
            duration_buckets: c.buckets.to_vec(),
            duration_sum_ns: c.sum_ns,
            lines_ok: c.ok,
            lines_malformed: c.malformed,
            lines_too_long: c.too_long,
            rotations: c.rotations,
            truncations: c.truncations,
            read_bytes: c.read_bytes,
        }
    }
}

impl StoredCounts {
    fn restore(&self) -> Result<Counts, String> {
        let buckets: [u64; 14] = self.duration_buckets.as_slice().try_into().map_err(|_| {
            format!(
                "{} duration buckets, expected {}",
                self.duration_buckets.len(),
                LE.len()
            )
        })?;
        let mut requests = BTreeMap::new();
        for r in &self.requests {
            let class = STATUS_CLASSES
                .iter()
                .find(|c| **c == r.code_class)
                .copied()
                .unwrap_or("other");
            *requests
                .entry((method_label(&r.method), class))
                .or_default() += r.count;
        }
        Ok(Counts {
            requests,
            buckets,
            sum_ns: self.duration_sum_ns,
            ok: self.lines_ok,
            malformed: self.lines_malformed,
            too_long: self.lines_too_long,
            rotations: self.rotations,
            truncations: self.truncations,
            read_bytes: self.read_bytes,
            keep: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_map_to_a_bounded_set() {
        let cases = [
            ("GET", "GET"),
            ("HEAD", "HEAD"),
            ("POST", "POST"),
            ("PUT", "PUT"),
            ("DELETE", "DELETE"),
            ("PATCH", "PATCH"),
            ("OPTIONS", "OPTIONS"),
            ("get", "other"),
            ("CONNECT", "other"),
            ("TRACE", "other"),
            ("", "other"),
            ("GET ", "other"),
            ("X-EVIL-{}", "other"),
        ];
        for (method, want) in cases {
            assert_eq!(method_label(method), want, "{method:?}");
        }
    }

    #[test]
    fn statuses_map_to_classes() {
        let cases = [
            (0, "other"),
            (99, "other"),
            (100, "1xx"),
            (101, "1xx"),
            (199, "1xx"),
            (200, "2xx"),
            (204, "2xx"),
            (301, "3xx"),
            (404, "4xx"),
            (429, "4xx"),
            (499, "4xx"),
            (500, "5xx"),
            (503, "5xx"),
            (599, "5xx"),
            (600, "other"),
            (999, "other"),
            (u64::MAX, "other"),
        ];
        for (status, want) in cases {
            assert_eq!(code_class(status), want, "{status}");
        }
        // The same classes as the load balancer's and the web servers' own counters.
        for status in 0..=u16::MAX {
            assert_eq!(code_class(u64::from(status)), status_class(status));
        }
    }

    #[test]
    fn durations_land_in_the_first_bucket_at_or_above_them() {
        // (duration_ms, the bucket's `le`)
        let cases = [
            (0.0, "0.001"),
            (0.0004, "0.001"),
            (1.0, "0.001"),
            (1.0000004, "0.001"),
            (1.000001, "0.0025"),
            (2.5, "0.0025"),
            (2.6, "0.005"),
            (5.0, "0.005"),
            (9.99, "0.01"),
            (10.0, "0.01"),
            (25.0, "0.025"),
            (50.0, "0.05"),
            (99.0, "0.1"),
            (250.0, "0.25"),
            (499.9, "0.5"),
            (1000.0, "1"),
            (1000.1, "2.5"),
            (2500.0, "2.5"),
            (5000.0, "5"),
            (10000.0, "10"),
            (10000.001, "+Inf"),
            (1e300, "+Inf"),
        ];
        for (ms, want) in cases {
            let ns = duration_ns(ms).unwrap();
            assert_eq!(LE[bucket_index(ns)], want, "{ms} ms");
        }
        for bad in [-0.001, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(duration_ns(bad), None, "{bad}");
        }
        for (b, ns) in BUCKETS.iter().zip(BUCKETS_NS) {
            assert_eq!((b * 1e9).round() as u64, ns);
        }
        assert_eq!(LE.len(), BUCKETS.len() + 1);
    }

    fn counts_of(lines: &[&[u8]]) -> (Counts, PollStats) {
        let mut counts = Counts::default();
        let mut stats = PollStats::default();
        for l in lines {
            counts.line(l, &mut stats);
        }
        (counts, stats)
    }

    #[test]
    fn count_chunks_joins_split_lines_and_skips_long_ones() {
        let line = br#"{"method":"GET","status":200,"duration_ms":1.5}"#;
        let (a, b) = line.split_at(10);
        let long = vec![b'x'; MAX_LINE + 1];
        let stats = count_chunks([
            a,
            b,
            b"\n".as_slice(),
            long.as_slice(),
            b"\nnot json\n".as_slice(),
            line.as_slice(),
        ]);
        assert_eq!((stats.ok, stats.malformed, stats.too_long), (2, 1, 1));
    }

    #[test]
    fn lines_are_counted_or_called_malformed() {
        // (line, counted as a request)
        let cases: [(&[u8], bool); 14] = [
            (br#"{"method":"GET","status":200,"duration_ms":1.5}"#, true),
            (
                br#"{"time":"t","method":"POST","status":503,"duration_ms":0,"db":"primary"}"#,
                true,
            ),
            (
                b"{\"method\":\"GET\",\"status\":200,\"duration_ms\":1,\"path\":\"/\xff\xfe\"}",
                true,
            ),
            (
                br#"  {"method":"GET","status":200,"duration_ms":1}  "#,
                true,
            ),
            (
                b"{\"method\":\"GET\",\"status\":200,\"duration_ms\":1}\r",
                true,
            ),
            (br#"{"method":"GET","status":200}"#, false),
            (br#"{"method":"GET","status":"200","duration_ms":1}"#, false),
            (br#"{"method":"GET","status":200,"duration_ms":-1}"#, false),
            (br#"{"method":7,"status":200,"duration_ms":1}"#, false),
            (br#"{"method":"GET","status":200,"duration_ms":1"#, false),
            (br#"{"method":"GET","status":200,"duration_ms":1}{}"#, false),
            (b"", false),
            (b"not json", false),
            (b"\xff\xfe\xfd", false),
        ];
        for (line, ok) in cases {
            let (counts, stats) = counts_of(&[line]);
            assert_eq!(
                (stats.ok, stats.malformed),
                (u64::from(ok), u64::from(!ok)),
                "{}",
                String::from_utf8_lossy(line)
            );
            assert_eq!(counts.buckets.iter().sum::<u64>(), u64::from(ok));
        }
    }

    #[test]
    fn feeding_byte_by_byte_is_feeding_at_once() {
        let text: &[u8] = b"{\"method\":\"GET\",\"status\":200,\"duration_ms\":3}\n\
            bad\n{\"method\":\"PUT\",\"status\":404,\"duration_ms\":30}\n{\"part";
        let (mut whole, mut split) = (Counts::default(), Counts::default());
        let (mut a, mut b) = (Cursor::default(), Cursor::default());
        let mut stats = PollStats::default();
        a.feed(text, &mut whole, &mut stats);
        for byte in text {
            b.feed(std::slice::from_ref(byte), &mut split, &mut stats);
        }
        assert_eq!(whole, split);
        assert_eq!((whole.ok, whole.malformed), (2, 1));
        assert_eq!(
            (a.offset(), b.offset()),
            (text.len() as u64 - 6, text.len() as u64 - 6)
        );
        assert_eq!((a.head_len, a.head_hash), (b.head_len, b.head_hash));
        assert_eq!(a.head_hash, fnv(FNV_OFFSET, text));
    }

    #[test]
    fn a_poll_stops_at_its_budget_and_says_there_is_more() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let line = "{\"method\":\"GET\",\"status\":200,\"duration_ms\":1}\n";
        std::fs::write(&log, line.repeat(100)).unwrap();
        let mut tail = LogTail::open(&log, "web1", &dir.path().join("state.json")).unwrap();
        tail.budget = 10 * line.len() as u64 + 5;
        let mut polls = Vec::new();
        loop {
            let s = tail.poll().unwrap();
            polls.push(s.ok);
            if !s.more {
                break;
            }
        }
        assert_eq!(polls.iter().sum::<u64>(), 100);
        assert_eq!(polls[0], 10);
        assert_eq!(tail.counts.ok, 100);
    }
}

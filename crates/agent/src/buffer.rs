//! The agent's bounded on-disk buffer of remote-write batches: each collection is appended
//! durably, a sender drains the oldest first and acknowledges what the monitor accepted,
//! so a monitor outage or an agent restart loses no samples.
//!
//! **Use.** The collector calls [`Buffer::append`] once per interval; the sender loops on
//! [`Buffer::peek`] → [`merge`] → `remote_write::encode` → `push`, then
//! [`Buffer::ack`] on success, nothing on a retryable failure (it backs off and peeks the
//! same batches again) and [`Buffer::reject`] on a permanent one. Plain std file I/O,
//! blocking: call it from `spawn_blocking` or a thread of its own (the agent is built
//! outside its runtime's `block_on`). [`Buffer`] is `Send`.
//! Delivery is at least once: a crash between a push and its ack sends those batches
//! again, which is harmless (Prometheus accepts an identical sample again and silently
//! drops duplicate out-of-order ones).
//!
//! **Layout.** A directory, created 0700 (files 0600), holding:
//! - `NNNNNNNNNNNN.seg`, the segments, numbered in order: the magic `RAMPBUF1`, then
//!   records. A new segment is started when the next record would take the active one
//!   past [`Limits::segment_bytes`].
//! - `ack`, the position of the first unacknowledged record: the magic `RAMPACK1`,
//!   segment (u64 LE), offset (u64 LE) and the CRC-32 of those 24 bytes. Replaced
//!   atomically with `rampart_telemetry::fs::write_atomic`: a temporary `.ack.*.tmp` is
//!   written and fsynced, renamed, and the directory fsynced.
//! - `lock`, held with `flock` while a [`Buffer`] is open, so two agents (or two buffers in
//!   one process) never share a directory.
//!
//! A record:
//!
//! ```text
//! len u32 LE | crc u32 LE | oldest sample ms i64 LE | samples u32 LE | payload
//! ```
//!
//! `len` counts the bytes after `crc`; `crc` is the CRC-32 (IEEE) of `len` and everything
//! after it; the payload is the batch's `WriteRequest` in protobuf compressed with snappy's
//! block format, the bytes `remote_write::encode` makes (label strings repeat, so an
//! agent's batch stores in about a twelfth of its protobuf size).
//!
//! **Recovery.** [`Buffer::open`] reads every segment from the ack point on and checks
//! each record's frame and CRC. A record cut short at the end of a segment (a torn write)
//! or with a bad CRC at the end is truncated away. A record with a bad CRC followed by a
//! good one (a flipped bit: its length was evidently right) is skipped and left on disk.
//! Two bad records in a row, or a bad one before a short one, mean the framing can't be
//! trusted: the segment is truncated at the first bad one. Each truncation or skip counts
//! one corrupt record. The scan always moves forward, so it ends; no file content panics.
//! A missing or corrupt `ack` means everything on disk is sent again. The same checks run
//! when [`Buffer::peek`] reads a record back; a bad one is counted and dropped there.
//!
//! **Durability.** [`Buffer::append`] returns after `fdatasync` of the segment (creating a
//! segment also fsyncs the directory). A process crash alone would lose nothing without it
//! (the page cache survives); the sync is for a host crash or power cut, which would
//! otherwise lose the last ~30 s of batches (the kernel's dirty-page expiry). It costs one
//! disk flush per interval: ~3 ms on the development VM's virtual disk (`dd oflag=dsync`
//! of 3 KiB writes), well under 1 ms on a local SSD, up to tens of ms on a busy spinning
//! disk. At one batch per 15 s that is nothing, so every batch is synced rather than
//! every N. [`Buffer::ack`] costs two more flushes (the ack file and the directory) per
//! push.
//!
//! **Bounds.** Both drop the oldest records first and count the batches and samples by
//! reason ([`DropReason`]):
//! - *Age*: a record whose oldest sample is older than [`Limits::max_age`] is dropped at
//!   open, append and peek. Prometheus answers a whole write request with 400 if any one
//!   sample is older than its out-of-order window, so a stale batch merged into a push
//!   would cost the whole push. Default 2 h: an hour inside the monitor's 3 h window,
//!   leaving room for the drain itself and for clock skew.
//! - *Bytes*: the pending records (framed, compressed) are kept within
//!   [`Limits::max_bytes`] by dropping the oldest before an append. Default 256 MiB. A
//!   batch of 301 series takes 3.2 KiB (38 KiB of protobuf), so 2 h at a 15 s interval
//!   is about 1.5 MiB: this bound protects the host's disk from runaway cardinality or
//!   very short intervals rather than limiting a normal outage. The files stay under
//!   `max_bytes + segment_bytes`, since acknowledged records go when their whole segment
//!   does.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::remote_write::{Label, MetricMetadata, Sample, TimeSeries, WriteRequest};
use crate::{Family, Kind};

/// The default of [`Limits::max_bytes`]: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;
/// The default of [`Limits::max_age`]: 2 h, inside the monitor's 3 h out-of-order window.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(2 * 3600);
/// The default of [`Limits::segment_bytes`]: 8 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 8 << 20;

const SEGMENT_MAGIC: [u8; 8] = *b"RAMPBUF1";
const ACK_MAGIC: [u8; 8] = *b"RAMPACK1";
/// Bytes before a segment's first record.
const SEGMENT_HEADER: u64 = SEGMENT_MAGIC.len() as u64;
/// `len` and `crc`.
const FRAME_HEADER: usize = 8;
/// The oldest timestamp and the sample count, at the start of a record's body.
const BODY_HEADER: usize = 12;
const ACK_LEN: usize = 28;
const ACK_FILE: &str = "ack";
/// The ack file's temporary name before `write_atomic`; removed at open.
const ACK_TMP: &str = "ack.tmp";
/// How often [`Buffer::open`] tries a busy lock again, and how many times.
const LOCK_RETRY: Duration = Duration::from_millis(50);
const LOCK_ATTEMPTS: u32 = 20;
const LOCK_FILE: &str = "lock";
const SEGMENT_SUFFIX: &str = ".seg";

/// How much the buffer may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The pending records' bytes on disk (compressed, with framing).
    pub max_bytes: u64,
    /// How old a record's oldest sample may be, against the system clock.
    pub max_age: Duration,
    /// When to start a new segment file.
    pub segment_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            max_age: DEFAULT_MAX_AGE,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// Where a record starts: its segment and offset. Cursors order as the records do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    segment: u64,
    offset: u64,
}

impl Cursor {
    /// The segment's number (its file name).
    pub fn segment(&self) -> u64 {
        self.segment
    }

    /// The byte offset in the segment.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// Why records were dropped unsent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Older than [`Limits::max_age`].
    Age,
    /// Over [`Limits::max_bytes`] (the oldest make room, or the batch alone is too large).
    Bytes,
    /// The monitor refused them for good (a 4xx other than 429): [`Buffer::reject`].
    Rejected,
}

impl DropReason {
    pub const ALL: [DropReason; 3] = [DropReason::Age, DropReason::Bytes, DropReason::Rejected];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Age => "age",
            DropReason::Bytes => "bytes",
            DropReason::Rejected => "rejected",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Batches and samples dropped for one reason since the buffer was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    pub batches: u64,
    pub samples: u64,
}

/// The buffer's state for the agent's own metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Bytes of the segment files.
    pub bytes: u64,
    /// Batches waiting to be sent.
    pub batches: u64,
    /// Samples in those batches.
    pub samples: u64,
    /// The oldest pending sample's timestamp in ms, if any batch is pending.
    pub oldest_timestamp_ms: Option<i64>,
    /// Drops since open, indexed as [`DropReason::ALL`].
    pub dropped: [Dropped; 3],
    /// Corrupt or torn records found since open (each truncation or skip counts one).
    pub corrupt_records: u64,
}

impl Stats {
    pub fn dropped(&self, reason: DropReason) -> Dropped {
        self.dropped[reason.index()]
    }
}

/// What went wrong with the buffer.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("buffer {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("buffer {}: in use by another process (lock held)", dir.display())]
    Locked { dir: PathBuf },
    #[error("buffer limits: {0} must be positive")]
    Limits(&'static str),
    /// The batch alone exceeds [`Limits::max_bytes`]; it was dropped and counted.
    #[error("buffer: batch of {bytes} bytes exceeds max_bytes {max}")]
    TooLarge { bytes: u64, max: u64 },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BufferError + '_ {
    move |source| BufferError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A pending record, as the index in memory knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    at: Cursor,
    /// The whole record's bytes on disk.
    len: u64,
    /// The length of the uncompressed protobuf.
    raw_len: u64,
    oldest_ms: i64,
    samples: u64,
}

/// What a buffer holds: a protobuf message whose entries carry timestamps (a
/// remote-write batch of samples, or a Loki push of log lines).
pub trait Batch: prost::Message + Default {
    /// The oldest entry's time in milliseconds; `None` when there is no entry.
    fn oldest_ms(&self) -> Option<i64>;
    /// How many entries (samples, lines) it holds.
    fn entries(&self) -> u64;
}

impl Batch for WriteRequest {
    fn oldest_ms(&self) -> Option<i64> {
        self.timeseries
            .iter()
            .flat_map(|ts| &ts.samples)
            .map(|s| s.timestamp)
            .min()
    }

    fn entries(&self) -> u64 {
        self.timeseries
            .iter()
            .map(|ts| ts.samples.len() as u64)
            .sum()
    }
}

/// The agent's buffer of remote-write batches.
pub type Buffer = BatchBuffer<WriteRequest>;

/// The on-disk buffer of batches of `T`. See the module documentation.
#[derive(Debug)]
pub struct BatchBuffer<T: Batch> {
    _batch: std::marker::PhantomData<fn() -> T>,
    dir: PathBuf,
    dir_file: File,
    /// Holds the `flock` until dropped.
    _lock: File,
    limits: Limits,
    /// The sizes of the segments other than the active one.
    sealed: BTreeMap<u64, u64>,
    active: u64,
    active_size: u64,
    /// The active segment, opened for reading and appending.
    writer: File,
    /// A failed append may have left bytes past `active_size`: start a new segment.
    damaged: bool,
    /// The last sealed segment read from.
    reader: Option<(u64, File)>,
    pending: VecDeque<Entry>,
    pending_bytes: u64,
    /// What the `ack` file says.
    acked: Cursor,
    dropped: [Dropped; 3],
    corrupt_records: u64,
}

impl<T: Batch> BatchBuffer<T> {
    /// Opens (creating it 0700 if needed) the buffer in `dir` and recovers what it holds:
    /// torn or corrupt records are truncated or skipped and counted, records before the
    /// ack point are skipped, and the bounds are applied.
    ///
    /// Blocking: it reads every segment, and a busy lock is tried again for up to a
    /// second (see below). Never call it on a runtime thread.
    pub fn open(dir: impl AsRef<Path>, limits: Limits) -> Result<Self, BufferError> {
        Self::open_at(dir.as_ref(), limits, now_ms())
    }

    fn open_at(dir: &Path, limits: Limits, now: i64) -> Result<Self, BufferError> {
        if limits.max_bytes == 0 {
            return Err(BufferError::Limits("max_bytes"));
        }
        if limits.max_age.is_zero() {
            return Err(BufferError::Limits("max_age"));
        }
        if limits.segment_bytes == 0 {
            return Err(BufferError::Limits("segment_bytes"));
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
        let dir_file = File::open(dir).map_err(io_err(dir))?;

        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        // A lock that is busy is retried for up to a second: a process that forks (to
        // run a child) holds a copy of every open descriptor, this buffer's lock among
        // them, until the child's exec closes it, so a buffer closed and reopened in the
        // same process can find its own old lock held for that moment.
        let mut attempts = 0;
        loop {
            match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::WOULDBLOCK) if attempts < LOCK_ATTEMPTS => {
                    attempts += 1;
                    pause_blocking(LOCK_RETRY);
                }
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(BufferError::Locked {
                        dir: dir.to_path_buf(),
                    })
                }
                Err(e) => return Err(io_err(&lock_path)(e.into())),
            }
        }

        // What a crash in the middle of writing the ack file leaves (we hold the lock, so
        // no other writer's temporary file is removed).
        let tmp = dir.join(ACK_TMP);
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&tmp)(e)),
            _ => {}
        }
        let ack_path = dir.join(ACK_FILE);
        rampart_telemetry::fs::remove_leftovers(&ack_path).map_err(io_err(dir))?;
        let ack = read_ack(&ack_path)?;

        let mut ids = Vec::new();
        for item in fs::read_dir(dir).map_err(io_err(dir))? {
            let item = item.map_err(io_err(dir))?;
            if let Some(id) = item.file_name().to_str().and_then(segment_id) {
                ids.push(id);
            }
        }
        ids.sort_unstable();

        let mut corrupt_records = 0;
        let mut pending = VecDeque::new();
        let mut sealed = BTreeMap::new();
        let mut highest = None;
        for id in ids {
            highest = Some(id);
            let path = segment_path(dir, id);
            if ack.is_some_and(|a| id < a.segment) {
                remove(&path)?;
                continue;
            }
            let bytes = fs::read(&path).map_err(io_err(&path))?;
            if bytes.get(..SEGMENT_MAGIC.len()) != Some(&SEGMENT_MAGIC[..]) {
                // A segment torn while being created (or not ours): no records to keep.
                if !bytes.is_empty() {
                    corrupt_records += 1;
                }
                remove(&path)?;
                continue;
            }
            let start = match ack {
                Some(a) if a.segment == id => a.offset.max(SEGMENT_HEADER),
                _ => SEGMENT_HEADER,
            };
            let start = usize::try_from(start).unwrap_or(usize::MAX);
            let scanned = scan(id, &bytes, start);
            corrupt_records += scanned.corrupt;
            if scanned.end < bytes.len() {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                file.set_len(scanned.end as u64).map_err(io_err(&path))?;
                file.sync_all().map_err(io_err(&path))?;
            }
            sealed.insert(id, scanned.end as u64);
            pending.extend(scanned.entries);
        }

        // The newest segment stays active if it has room; otherwise a new one, numbered
        // past every segment seen and past the ack point (so nothing new lands before it).
        let reuse = sealed
            .last_key_value()
            .filter(|&(_, &size)| size < limits.segment_bytes)
            .map(|(&id, &size)| (id, size));
        let (active, active_size, writer) = match reuse {
            Some((id, size)) => {
                sealed.remove(&id);
                let path = segment_path(dir, id);
                let file = OpenOptions::new()
                    .read(true)
                    .append(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                (id, size, file)
            }
            None => {
                let id = highest
                    .map_or(0, |h| h + 1)
                    .max(ack.map_or(0, |a| a.segment + 1));
                (id, SEGMENT_HEADER, create_segment(dir, &dir_file, id)?)
            }
        };

        let pending_bytes = pending.iter().map(|e| e.len).sum();
        let mut buffer = BatchBuffer {
            _batch: std::marker::PhantomData,
            dir: dir.to_path_buf(),
            dir_file,
            _lock: lock,
            limits,
            sealed,
            active,
            active_size,
            writer,
            damaged: false,
            reader: None,
            pending,
            pending_bytes,
            // Never a real position, so the first sync_head writes the ack file.
            acked: ack.unwrap_or(Cursor {
                segment: u64::MAX,
                offset: 0,
            }),
            dropped: Default::default(),
            corrupt_records,
        };
        buffer.expire(now);
        buffer.make_room(0);
        buffer.sync_head()?;
        Ok(buffer)
    }

    /// The buffer's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The limits it was opened with.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Appends one batch, durable when this returns (see the module documentation). A
    /// batch without samples is not stored. A batch already older than `max_age` is
    /// dropped and counted; a batch larger than `max_bytes` by itself is dropped, counted
    /// and reported as [`BufferError::TooLarge`]. Older records make room as needed.
    pub fn append(&mut self, batch: &T) -> Result<(), BufferError> {
        self.append_at(batch, now_ms())
    }

    fn append_at(&mut self, batch: &T, now: i64) -> Result<(), BufferError> {
        let Some(oldest_ms) = batch.oldest_ms() else {
            return Ok(());
        };
        let count = batch.entries();
        let mut changed = self.expire(now);
        if oldest_ms < cutoff(now, self.limits.max_age) {
            self.count_drop(DropReason::Age, 1, count);
            return self.sync_head_if(changed);
        }

        let raw = batch.encode_to_vec();
        let max = self.limits.max_bytes;
        let too_large = |bytes: u64| BufferError::TooLarge { bytes, max };
        let payload = snap::raw::Encoder::new()
            .compress_vec(&raw)
            .map_err(|_| too_large(raw.len() as u64))?;
        let body_len = BODY_HEADER + payload.len();
        let record_len = (FRAME_HEADER + body_len) as u64;
        let Ok(len32) = u32::try_from(body_len) else {
            self.count_drop(DropReason::Bytes, 1, count);
            self.sync_head_if(changed)?;
            return Err(too_large(record_len));
        };
        if record_len > self.limits.max_bytes {
            self.count_drop(DropReason::Bytes, 1, count);
            self.sync_head_if(changed)?;
            return Err(too_large(record_len));
        }
        changed |= self.make_room(record_len);
        // Persist the drops first: a crash after this loses only what was dropped anyway.
        self.sync_head_if(changed)?;

        let record = frame(len32, oldest_ms, count, &payload);

        if self.damaged
            || (self.active_size > SEGMENT_HEADER
                && self.active_size + record_len > self.limits.segment_bytes)
        {
            self.roll()?;
        }
        let at = Cursor {
            segment: self.active,
            offset: self.active_size,
        };
        if let Err(e) = self
            .writer
            .write_all(&record)
            .and_then(|()| self.writer.sync_data())
        {
            // Leave no partial record behind for the next append to follow; if that
            // fails too, the next append starts a new segment (open truncates this one).
            if self.writer.set_len(at.offset).is_err() {
                self.damaged = true;
            }
            return Err(io_err(&segment_path(&self.dir, at.segment))(e));
        }
        self.active_size += record_len;
        self.pending_bytes += record_len;
        self.pending.push_back(Entry {
            at,
            len: record_len,
            raw_len: raw.len() as u64,
            oldest_ms,
            samples: count,
        });
        Ok(())
    }

    /// Up to `max_batches` of the oldest pending batches, oldest first, stopping before the
    /// uncompressed protobuf would exceed `max_bytes` (but always one, if any is pending).
    /// Expired records are dropped first; a record that fails its checks on reading is
    /// counted as corrupt and dropped. Peeking again without [`Buffer::ack`] returns the
    /// same batches.
    pub fn peek(
        &mut self,
        max_batches: usize,
        max_bytes: u64,
    ) -> Result<Vec<(Cursor, T)>, BufferError> {
        self.peek_at(max_batches, max_bytes, now_ms())
    }

    fn peek_at(
        &mut self,
        max_batches: usize,
        max_bytes: u64,
        now: i64,
    ) -> Result<Vec<(Cursor, T)>, BufferError> {
        let mut changed = self.expire(now);
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut i = 0;
        while out.len() < max_batches && i < self.pending.len() {
            let entry = self.pending[i];
            if !out.is_empty() && bytes + entry.raw_len > max_bytes {
                break;
            }
            match self.read(&entry)? {
                Some(batch) => {
                    out.push((entry.at, batch));
                    bytes += entry.raw_len;
                    i += 1;
                }
                None => {
                    self.pending.remove(i);
                    self.pending_bytes -= entry.len;
                    self.corrupt_records += 1;
                    changed |= i == 0;
                }
            }
        }
        self.sync_head_if(changed)?;
        Ok(out)
    }

    /// Acknowledges every pending record up to and including `through` (sent and accepted)
    /// and persists the new ack point; segments wholly acknowledged are deleted.
    pub fn ack(&mut self, through: Cursor) -> Result<(), BufferError> {
        self.pop_through(through);
        self.sync_head()
    }

    /// As [`Buffer::ack`], for records the monitor refused for good: they are counted as
    /// dropped ([`DropReason::Rejected`]).
    pub fn reject(&mut self, through: Cursor) -> Result<(), BufferError> {
        let (batches, samples) = self.pop_through(through);
        self.count_drop(DropReason::Rejected, batches, samples);
        self.sync_head()
    }

    /// The buffer's state now.
    pub fn stats(&self) -> Stats {
        Stats {
            bytes: self.sealed.values().sum::<u64>() + self.active_size,
            batches: self.pending.len() as u64,
            samples: self.pending.iter().map(|e| e.samples).sum(),
            oldest_timestamp_ms: self.pending.iter().map(|e| e.oldest_ms).min(),
            dropped: self.dropped,
            corrupt_records: self.corrupt_records,
        }
    }

    /// The buffer's metrics: `rampart_agent_buffer_*`.
    pub fn families(&self) -> Vec<Family> {
        families(&self.stats())
    }

    /// Removes pending records up to `through`: (batches, samples).
    fn pop_through(&mut self, through: Cursor) -> (u64, u64) {
        let (mut batches, mut samples) = (0, 0);
        while let Some(e) = self.pending.front().copied().filter(|e| e.at <= through) {
            self.pending.pop_front();
            self.pending_bytes -= e.len;
            batches += 1;
            samples += e.samples;
        }
        (batches, samples)
    }

    fn count_drop(&mut self, reason: DropReason, batches: u64, samples: u64) {
        let d = &mut self.dropped[reason.index()];
        d.batches += batches;
        d.samples += samples;
    }

    /// Drops pending records older than `max_age`; whether any went.
    fn expire(&mut self, now: i64) -> bool {
        let cutoff = cutoff(now, self.limits.max_age);
        let (mut batches, mut samples, mut bytes) = (0, 0, 0);
        self.pending.retain(|e| {
            let keep = e.oldest_ms >= cutoff;
            if !keep {
                batches += 1;
                samples += e.samples;
                bytes += e.len;
            }
            keep
        });
        self.pending_bytes -= bytes;
        self.count_drop(DropReason::Age, batches, samples);
        batches > 0
    }

    /// Drops the oldest records until `incoming` more bytes fit; whether any went.
    fn make_room(&mut self, incoming: u64) -> bool {
        let (mut batches, mut samples) = (0, 0);
        while self.pending_bytes + incoming > self.limits.max_bytes {
            let Some(e) = self.pending.pop_front() else {
                break;
            };
            self.pending_bytes -= e.len;
            batches += 1;
            samples += e.samples;
        }
        self.count_drop(DropReason::Bytes, batches, samples);
        batches > 0
    }

    /// The first pending record, or where the next one will go.
    fn head(&self) -> Cursor {
        self.pending.front().map_or(
            Cursor {
                segment: self.active,
                offset: self.active_size,
            },
            |e| e.at,
        )
    }

    fn sync_head_if(&mut self, changed: bool) -> Result<(), BufferError> {
        if changed {
            self.sync_head()
        } else {
            Ok(())
        }
    }

    /// Persists the head as the ack point, then deletes the segments wholly before it.
    fn sync_head(&mut self) -> Result<(), BufferError> {
        let head = self.head();
        if head != self.acked {
            self.write_ack(head)?;
            self.acked = head;
        }
        let done: Vec<u64> = self
            .sealed
            .range(..head.segment)
            .map(|(&id, _)| id)
            .collect();
        for id in done {
            if self.reader.as_ref().is_some_and(|(r, _)| *r == id) {
                self.reader = None;
            }
            remove(&segment_path(&self.dir, id))?;
            self.sealed.remove(&id);
        }
        Ok(())
    }

    fn write_ack(&self, at: Cursor) -> Result<(), BufferError> {
        let mut bytes = [0u8; ACK_LEN];
        bytes[..8].copy_from_slice(&ACK_MAGIC);
        bytes[8..16].copy_from_slice(&at.segment.to_le_bytes());
        bytes[16..24].copy_from_slice(&at.offset.to_le_bytes());
        let crc = crc32(&[&bytes[..24]]);
        bytes[24..].copy_from_slice(&crc.to_le_bytes());
        let path = self.dir.join(ACK_FILE);
        rampart_telemetry::fs::write_atomic(&path, &bytes, 0o600).map_err(io_err(&path))
    }

    /// Seals the active segment and starts the next.
    fn roll(&mut self) -> Result<(), BufferError> {
        let id = self.active + 1;
        self.writer = create_segment(&self.dir, &self.dir_file, id)?;
        self.sealed.insert(self.active, self.active_size);
        self.active = id;
        self.active_size = SEGMENT_HEADER;
        self.damaged = false;
        Ok(())
    }

    /// Reads back a pending record: `None` if it no longer checks out.
    fn read(&mut self, entry: &Entry) -> Result<Option<T>, BufferError> {
        let segment = entry.at.segment;
        let path = segment_path(&self.dir, segment);
        let file = if segment == self.active {
            &self.writer
        } else {
            if self.reader.as_ref().is_none_or(|(id, _)| *id != segment) {
                let file = File::open(&path).map_err(io_err(&path))?;
                self.reader = Some((segment, file));
            }
            match &self.reader {
                Some((_, file)) => file,
                None => return Ok(None),
            }
        };
        let mut record = vec![0; usize::try_from(entry.len).unwrap_or(usize::MAX)];
        match file.read_exact_at(&mut record, entry.at.offset) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        }
        let Frame::Good { payload, .. } = frame_at(segment, &record, 0) else {
            return Ok(None);
        };
        Ok(decode(&record[payload]))
    }
}

/// The buffer's metrics from `stats`.
pub fn families(stats: &Stats) -> Vec<Family> {
    let one = |value: f64| crate::Sample {
        labels: Vec::new(),
        value,
        suffix: "",
    };
    let by_reason = |f: fn(&Dropped) -> u64| {
        DropReason::ALL
            .iter()
            .map(|&r| crate::Sample {
                labels: vec![("reason".to_owned(), r.as_str().to_owned())],
                value: f(&stats.dropped(r)) as f64,
                suffix: "",
            })
            .collect()
    };
    let family = |name: &str, help: &str, kind, samples| Family {
        name: name.to_owned(),
        help: help.to_owned(),
        kind,
        samples,
    };
    vec![
        family(
            "rampart_agent_buffer_bytes",
            "Bytes of the on-disk buffer's segment files.",
            Kind::Gauge,
            vec![one(stats.bytes as f64)],
        ),
        family(
            "rampart_agent_buffer_batches",
            "Batches in the on-disk buffer waiting to be sent.",
            Kind::Gauge,
            vec![one(stats.batches as f64)],
        ),
        family(
            "rampart_agent_buffer_samples",
            "Samples in the on-disk buffer waiting to be sent.",
            Kind::Gauge,
            vec![one(stats.samples as f64)],
        ),
        family(
            "rampart_agent_buffer_oldest_timestamp_seconds",
            "Timestamp of the oldest sample waiting to be sent (absent when none is).",
            Kind::Gauge,
            stats
                .oldest_timestamp_ms
                .map(|ms| vec![one(ms as f64 / 1000.0)])
                .unwrap_or_default(),
        ),
        family(
            "rampart_agent_buffer_dropped_batches_total",
            "Batches dropped from the on-disk buffer unsent, by reason.",
            Kind::Counter,
            by_reason(|d| d.batches),
        ),
        family(
            "rampart_agent_buffer_dropped_samples_total",
            "Samples dropped from the on-disk buffer unsent, by reason.",
            Kind::Counter,
            by_reason(|d| d.samples),
        ),
        family(
            "rampart_agent_buffer_corrupt_records_total",
            "Torn or corrupt records found in the on-disk buffer and discarded.",
            Kind::Counter,
            vec![one(stats.corrupt_records as f64)],
        ),
    ]
}

/// One write request of `batches`: series with the same labels (in any order) become one,
/// with samples in time order and one per timestamp (the earliest batch's wins); series
/// sorted by labels, without empty ones; metadata once per family name, sorted.
pub fn merge(batches: impl IntoIterator<Item = WriteRequest>) -> WriteRequest {
    let mut series: BTreeMap<Vec<Label>, Vec<Sample>> = BTreeMap::new();
    let mut metadata: BTreeMap<String, MetricMetadata> = BTreeMap::new();
    for batch in batches {
        for mut ts in batch.timeseries {
            ts.labels.sort();
            series.entry(ts.labels).or_default().extend(ts.samples);
        }
        for m in batch.metadata {
            metadata.entry(m.metric_family_name.clone()).or_insert(m);
        }
    }
    let timeseries = series
        .into_iter()
        .filter(|(_, samples)| !samples.is_empty())
        .map(|(labels, mut samples)| {
            // Stable: of equal timestamps the earliest batch's comes first and stays.
            samples.sort_by_key(|s| s.timestamp);
            samples.dedup_by_key(|s| s.timestamp);
            TimeSeries { labels, samples }
        })
        .collect();
    WriteRequest {
        timeseries,
        metadata: metadata.into_values().collect(),
    }
}

/// Blocks this thread for `d`: only [`Buffer::open`]'s wait for a busy lock, which is
/// blocking by contract and never runs on a runtime thread (the binary builds the agent
/// outside `block_on`).
#[expect(
    clippy::disallowed_methods,
    reason = "Buffer::open is blocking by contract; the agent is built outside block_on"
)]
fn pause_blocking(d: Duration) {
    std::thread::sleep(d);
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The oldest timestamp (ms) still kept at `now`.
fn cutoff(now: i64, max_age: Duration) -> i64 {
    now.saturating_sub(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX))
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:012}{SEGMENT_SUFFIX}"))
}

/// The number of a segment file's name.
fn segment_id(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn remove(path: &Path) -> Result<(), BufferError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

/// Creates segment `id` with its magic, synced along with the directory entry.
fn create_segment(dir: &Path, dir_file: &File, id: u64) -> Result<File, BufferError> {
    let path = segment_path(dir, id);
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err(&path))?;
    file.write_all(&SEGMENT_MAGIC).map_err(io_err(&path))?;
    file.sync_data().map_err(io_err(&path))?;
    dir_file.sync_all().map_err(io_err(dir))?;
    Ok(file)
}

/// The ack point the `ack` file records; `None` if it is missing or fails its checks.
fn read_ack(path: &Path) -> Result<Option<Cursor>, BufferError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    Ok(parse_ack(&bytes))
}

fn parse_ack(bytes: &[u8]) -> Option<Cursor> {
    let bytes: &[u8; ACK_LEN] = bytes.try_into().ok()?;
    if bytes[..8] != ACK_MAGIC || crc32(&[&bytes[..24]]) != le_u32(&bytes[24..]) {
        return None;
    }
    Some(Cursor {
        segment: le_u64(&bytes[8..16]),
        offset: le_u64(&bytes[16..24]),
    })
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// A record: `len` is `BODY_HEADER + payload.len()`.
fn frame(len: u32, oldest_ms: i64, samples: u64, payload: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(FRAME_HEADER + BODY_HEADER + payload.len());
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&[0; 4]);
    record.extend_from_slice(&oldest_ms.to_le_bytes());
    record.extend_from_slice(&u32::try_from(samples).unwrap_or(u32::MAX).to_le_bytes());
    record.extend_from_slice(payload);
    let crc = crc32(&[&record[..4], &record[FRAME_HEADER..]]);
    record[4..8].copy_from_slice(&crc.to_le_bytes());
    record
}

/// What is at a position of a segment.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    /// The end of the segment.
    End,
    /// A record cut short: its header or body runs past the end.
    Torn,
    /// A complete record that fails its checks; the next would start at `next`.
    Bad { next: usize },
    Good {
        entry: Entry,
        payload: Range<usize>,
        next: usize,
    },
}

/// The record of segment `id` at `pos` of `bytes`. Indexing is guarded by the length
/// checks before it.
fn frame_at(id: u64, bytes: &[u8], pos: usize) -> Frame {
    let rest = bytes.get(pos..).unwrap_or_default();
    if rest.is_empty() {
        return Frame::End;
    }
    if rest.len() < FRAME_HEADER {
        return Frame::Torn;
    }
    let len = le_u32(rest) as usize;
    if len < BODY_HEADER || rest.len() - FRAME_HEADER < len {
        return Frame::Torn;
    }
    let next = pos + FRAME_HEADER + len;
    let body = &rest[FRAME_HEADER..FRAME_HEADER + len];
    if crc32(&[&rest[..4], body]) != le_u32(&rest[4..]) {
        return Frame::Bad { next };
    }
    let payload = pos + FRAME_HEADER + BODY_HEADER..next;
    let Ok(raw_len) = snap::raw::decompress_len(&bytes[payload.clone()]) else {
        return Frame::Bad { next };
    };
    Frame::Good {
        entry: Entry {
            at: Cursor {
                segment: id,
                offset: pos as u64,
            },
            len: (FRAME_HEADER + len) as u64,
            raw_len: raw_len as u64,
            oldest_ms: i64::from_le_bytes({
                let mut a = [0; 8];
                a.copy_from_slice(&body[..8]);
                a
            }),
            samples: u64::from(le_u32(&body[8..])),
        },
        payload,
        next,
    }
}

/// The records of a segment from `start`, where it should end, and the corrupt count.
struct Scanned {
    entries: Vec<Entry>,
    end: usize,
    corrupt: u64,
}

fn scan(id: u64, bytes: &[u8], start: usize) -> Scanned {
    let mut pos = start.min(bytes.len());
    let mut entries = Vec::new();
    let mut corrupt = 0;
    // A bad record is skipped only once the record after it checks out.
    let mut suspect = None;
    loop {
        match frame_at(id, bytes, pos) {
            Frame::End | Frame::Torn => break,
            Frame::Bad { next } => {
                if suspect.is_some() {
                    break;
                }
                suspect = Some(pos);
                pos = next;
            }
            Frame::Good { entry, next, .. } => {
                if suspect.take().is_some() {
                    corrupt += 1;
                }
                entries.push(entry);
                pos = next;
            }
        }
    }
    let end = match suspect {
        Some(bad) => bad,
        None => pos,
    };
    if end < bytes.len() {
        corrupt += 1;
    }
    Scanned {
        entries,
        end,
        corrupt,
    }
}

/// A stored payload back into its batch; `None` if it doesn't decode.
fn decode<T: Batch>(payload: &[u8]) -> Option<T> {
    let raw = snap::raw::Decoder::new().decompress_vec(payload).ok()?;
    T::decode(raw.as_slice()).ok()
}

/// CRC-32 (IEEE 802.3, as zlib and gzip) of the concatenated `parts`.
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for part in parts {
        for &b in *part {
            crc = CRC_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
        }
    }
    !crc
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(ts: i64, series: &[(&str, f64)]) -> WriteRequest {
        WriteRequest {
            timeseries: series
                .iter()
                .map(|(name, value)| TimeSeries {
                    labels: vec![Label {
                        name: "__name__".into(),
                        value: (*name).into(),
                    }],
                    samples: vec![Sample {
                        value: *value,
                        timestamp: ts,
                    }],
                })
                .collect(),
            metadata: vec![],
        }
    }

    /// A stored record of a one-series batch at `ts`.
    fn record(ts: i64) -> Vec<u8> {
        let payload = crate::remote_write::encode(&batch(ts, &[("up", 1.0)])).unwrap();
        frame((BODY_HEADER + payload.len()) as u32, ts, 1, &payload)
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
        assert_eq!(crc32(&[b"1234", b"56789"]), 0xCBF4_3926);
        assert_eq!(crc32(&[]), 0);
    }

    #[test]
    fn segment_names() {
        let cases = [
            ("000000000000.seg", Some(0)),
            ("000000000042.seg", Some(42)),
            ("12345678901234.seg", Some(12_345_678_901_234)),
            (".seg", None),
            ("12.seg.tmp", None),
            ("-1.seg", None),
            ("ack", None),
            ("99999999999999999999999.seg", None),
        ];
        for (name, expected) in cases {
            assert_eq!(segment_id(name), expected, "{name}");
        }
        assert_eq!(
            segment_path(Path::new("/b"), 7),
            Path::new("/b/000000000007.seg")
        );
    }

    #[test]
    fn ack_file_checks() {
        let dir = tempfile::tempdir().unwrap();
        let buffer = Buffer::open(dir.path(), Limits::default()).unwrap();
        let at = Cursor {
            segment: 3,
            offset: 1234,
        };
        buffer.write_ack(at).unwrap();
        let good = fs::read(dir.path().join(ACK_FILE)).unwrap();
        assert_eq!(parse_ack(&good), Some(at));
        assert_eq!(parse_ack(&good[..27]), None);
        assert_eq!(parse_ack(&[]), None);
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            assert_eq!(parse_ack(&bad), None, "flipped byte {i}");
        }
    }

    /// `scan` of a segment with three records after `mutate`: (timestamps found, end
    /// relative to the segment's length, corrupt count).
    fn check_scan(
        what: &str,
        mutate: impl Fn(&mut Vec<u8>, [usize; 3]),
        expected: (&[i64], i64, u64),
    ) {
        let mut seg = SEGMENT_MAGIC.to_vec();
        let mut starts = [0; 3];
        for (i, ts) in [1, 2, 3].into_iter().enumerate() {
            starts[i] = seg.len();
            seg.extend(record(ts));
        }
        mutate(&mut seg, starts);
        let scanned = scan(9, &seg, SEGMENT_HEADER as usize);
        let found: Vec<i64> = scanned.entries.iter().map(|e| e.oldest_ms).collect();
        assert!(scanned.entries.iter().all(|e| e.at.segment == 9), "{what}");
        assert_eq!(
            (
                found.as_slice(),
                scanned.end as i64 - seg.len() as i64,
                scanned.corrupt
            ),
            expected,
            "{what}"
        );
        // What is kept scans the same, short of the truncation (a skipped record stays).
        let again = scan(9, &seg[..scanned.end], SEGMENT_HEADER as usize);
        assert_eq!(again.entries, scanned.entries, "{what}");
        let truncated = u64::from(scanned.end < seg.len());
        assert_eq!(
            (again.end, again.corrupt),
            (scanned.end, scanned.corrupt - truncated),
            "{what}"
        );
    }

    #[test]
    fn scan_recovers_torn_and_corrupt_records() {
        let last_len = record(3).len() as i64;
        check_scan("intact", |_, _| {}, (&[1, 2, 3], 0, 0));
        for cut in 1..last_len as usize {
            check_scan(
                &format!("last record cut by {cut}"),
                |s, _| s.truncate(s.len() - cut),
                (&[1, 2], -(last_len - cut as i64), 1),
            );
        }
        check_scan(
            "cut at a record boundary",
            |s, [_, _, c]| s.truncate(c),
            (&[1, 2], 0, 0),
        );
        check_scan(
            "bad crc in the last record",
            |s, [_, _, c]| s[c + 20] ^= 1,
            (&[1, 2], -last_len, 1),
        );
        check_scan(
            "bad crc in a middle record: skipped",
            |s, [_, b, _]| s[b + 20] ^= 1,
            (&[1, 3], 0, 1),
        );
        check_scan(
            "bad crc field in a middle record: skipped",
            |s, [_, b, _]| s[b + 5] ^= 1,
            (&[1, 3], 0, 1),
        );
        check_scan(
            "middle record's length too long: framing lost",
            |s, [_, b, _]| s[b + 1] ^= 0x40,
            (&[1], -b_and_c(), 1),
        );
        check_scan(
            "two bad records in a row: cut at the first",
            |s, [_, b, c]| {
                s[b + 20] ^= 1;
                s[c + 20] ^= 1;
            },
            (&[1], -b_and_c(), 1),
        );
        check_scan(
            "zeros after the last record",
            |s, _| s.extend([0; 100]),
            (&[1, 2, 3], -100, 1),
        );
        check_scan(
            "a header of ones after the last record",
            |s, _| s.extend([0xff; 8]),
            (&[1, 2, 3], -8, 1),
        );
    }

    /// The length of records 2 and 3 together.
    fn b_and_c() -> i64 {
        (record(2).len() + record(3).len()) as i64
    }

    #[test]
    fn scan_starts_at_the_ack_point() {
        let mut seg = SEGMENT_MAGIC.to_vec();
        seg.extend(record(1));
        let second = seg.len();
        seg.extend(record(2));
        let scanned = scan(0, &seg, second);
        assert_eq!(scanned.entries.len(), 1);
        assert_eq!(scanned.entries[0].at.offset, second as u64);
        assert_eq!((scanned.end, scanned.corrupt), (seg.len(), 0));
        let past = scan(0, &seg, seg.len() + 100);
        assert!(past.entries.is_empty());
        assert_eq!((past.end, past.corrupt), (seg.len(), 0));
    }

    /// `merge` of batches given as `[(ts, [(name, value)])]`, rendered as
    /// `name: ts=value ts=value`.
    fn check_merge(batches: &[(i64, &[(&str, f64)])], expected: &[&str]) {
        let merged = merge(batches.iter().map(|(ts, series)| batch(*ts, series)));
        let got: Vec<String> = merged
            .timeseries
            .iter()
            .map(|ts| {
                let labels: Vec<String> = ts.labels.iter().map(|l| l.value.clone()).collect();
                let samples: Vec<String> = ts
                    .samples
                    .iter()
                    .map(|s| format!("{}={}", s.timestamp, s.value))
                    .collect();
                format!("{}: {}", labels.join(","), samples.join(" "))
            })
            .collect();
        assert_eq!(got, expected, "{batches:?}");
    }

    #[test]
    fn merge_orders_and_dedups() {
        check_merge(&[], &[]);
        check_merge(&[(5, &[("b", 1.0), ("a", 2.0)])], &["a: 5=2", "b: 5=1"]);
        check_merge(
            &[
                (30, &[("up", 3.0)]),
                (10, &[("up", 1.0), ("z", 9.0)]),
                (20, &[("up", 2.0)]),
            ],
            &["up: 10=1 20=2 30=3", "z: 10=9"],
        );
        // The same timestamp twice: the earlier batch's value stays.
        check_merge(
            &[
                (10, &[("up", 1.0)]),
                (10, &[("up", 7.0)]),
                (5, &[("up", 0.5)]),
            ],
            &["up: 5=0.5 10=1"],
        );
    }

    #[test]
    fn merge_matches_label_sets_in_any_order() {
        let l = |n: &str, v: &str| Label {
            name: n.into(),
            value: v.into(),
        };
        let ts = |labels: Vec<Label>, t: i64| TimeSeries {
            labels,
            samples: vec![Sample {
                value: 1.0,
                timestamp: t,
            }],
        };
        let meta = |name: &str, help: &str| MetricMetadata {
            r#type: 0,
            metric_family_name: name.into(),
            help: help.into(),
            unit: String::new(),
        };
        let a = WriteRequest {
            timeseries: vec![ts(vec![l("__name__", "m"), l("x", "1")], 2)],
            metadata: vec![meta("m", "first"), meta("a", "")],
        };
        let b = WriteRequest {
            timeseries: vec![
                ts(vec![l("x", "1"), l("__name__", "m")], 1),
                TimeSeries {
                    labels: vec![l("__name__", "empty")],
                    samples: vec![],
                },
            ],
            metadata: vec![meta("m", "second")],
        };
        let merged = merge([a, b]);
        assert_eq!(merged.timeseries.len(), 1);
        assert_eq!(
            merged.timeseries[0].labels,
            vec![l("__name__", "m"), l("x", "1")]
        );
        let times: Vec<i64> = merged.timeseries[0]
            .samples
            .iter()
            .map(|s| s.timestamp)
            .collect();
        assert_eq!(times, [1, 2]);
        assert_eq!(merged.metadata, vec![meta("a", ""), meta("m", "first")]);
    }

    #[test]
    fn age_is_checked_against_the_clock_at_each_call() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_age: Duration::from_secs(60),
            ..Limits::default()
        };
        let t0 = 1_700_000_000_000;
        let mut b = Buffer::open_at(dir.path(), limits, t0).unwrap();
        b.append_at(&batch(t0, &[("a", 1.0), ("b", 2.0)]), t0)
            .unwrap();
        b.append_at(&batch(t0 + 30_000, &[("a", 1.0)]), t0 + 30_000)
            .unwrap();
        // Already too old when appended: never stored.
        b.append_at(&batch(t0 - 61_000, &[("a", 1.0)]), t0 + 30_000)
            .unwrap();
        assert_eq!(b.stats().batches, 2);
        assert_eq!(b.peek_at(10, u64::MAX, t0 + 60_000).unwrap().len(), 2);
        let left = b.peek_at(10, u64::MAX, t0 + 60_001).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].1.timeseries[0].samples[0].timestamp, t0 + 30_000);
        let age = b.stats().dropped(DropReason::Age);
        assert_eq!(
            age,
            Dropped {
                batches: 2,
                samples: 3
            }
        );
        drop(b);
        // The ack point moved past the expired record, so it doesn't come back.
        let b = Buffer::open_at(dir.path(), limits, t0 + 60_001).unwrap();
        assert_eq!(b.stats().batches, 1);
        assert_eq!(b.stats().dropped(DropReason::Age), Dropped::default());
        drop(b);
        let b = Buffer::open_at(dir.path(), limits, t0 + 100_000).unwrap();
        assert_eq!(b.stats().batches, 0);
        assert_eq!(b.stats().dropped(DropReason::Age).batches, 1);
    }

    #[test]
    fn buffer_is_send() {
        fn send<T: Send>() {}
        send::<Buffer>();
        send::<BufferError>();
    }
}

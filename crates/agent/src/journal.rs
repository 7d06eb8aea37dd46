//! The systemd journal as a log source (issue 18). On a host whose services run under
//! systemd (`rampart render` + Ansible), their output goes to journald, not to files:
//! rampart's own services, the keeper (MariaDB's unit), Prometheus, Alertmanager, etcd
//! and keepalived. `[logs.journal]` names the units to follow and the `service` label
//! of each; every entry is shipped as one line of stream [`STREAM`], like a service's
//! output file under `rampart up`.
//!
//! - **Reading.** A [`Feed`] runs `journalctl --output=json --follow` for those units
//!   (`--unit`, which also takes systemd's own lines about them, such as `Started`)
//!   and hands each entry to the reader through a bounded queue ([`QUEUE`]). When the
//!   queue is full the feed waits, `journalctl` blocks on its pipe and the journal
//!   keeps the rest: nothing is dropped. If `journalctl` exits it is started again
//!   (backing off to 30 s) after the last entry it handed over.
//! - **No loss, no repeat.** The reader ([`Journal`]) takes entries with the files'
//!   lines, and saves the last one's cursor (`journal.cursor`, written atomically, 0600)
//!   only after their batch is in the disk buffer. A restarted agent continues after
//!   that cursor; an agent with none reads the entries since the kernel booted. Each
//!   line keeps the entry's own time (`__REALTIME_TIMESTAMP`, with the entry's sequence
//!   number in the nanoseconds), so an entry read again after a crash between the
//!   buffer's sync and the cursor's save has the same key in the store and is stored
//!   once.
//! - **Bad input.** An entry longer than [`MAX_ENTRY`] bytes of JSON, or that is not
//!   a journal entry, is skipped and counted as `malformed`; an entry of a unit not
//!   configured (which `--unit` can match through coredumps) as `skipped`. A cursor
//!   `journalctl` refuses (a corrupt state file, a journal from another machine) is
//!   logged and dropped, and the boot is read again.
//! - The deployed agent's unit has `SupplementaryGroups=systemd-journal`, which may
//!   read the system journal.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::{mpsc, watch};

use crate::config::Journal as Config;

/// The `stream` label of journal lines: a service's own output.
pub const STREAM: &str = crate::config::JOURNAL_STREAM;
/// Entries read and not yet taken by the reader.
pub const QUEUE: usize = 10_000;
/// The longest entry (its JSON) shipped; longer ones are skipped.
pub const MAX_ENTRY: usize = 1 << 20;
/// The file, in the logs state directory, that holds the last buffered entry's cursor.
pub const CURSOR_FILE: &str = "journal.cursor";

/// One journal entry, as shipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub service: String,
    pub line: String,
    /// Nanoseconds since the epoch: the entry's realtime microseconds, and its sequence
    /// number modulo 1000 in the last three digits.
    pub at_ns: i64,
    pub cursor: String,
}

/// What the feed has read, for the agent's metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedStats {
    pub entries: u64,
    pub skipped: u64,
    pub malformed: u64,
    /// Times `journalctl` had to be started again.
    pub restarts: u64,
}

/// An entry's time from its `__REALTIME_TIMESTAMP` (microseconds) and the sequence
/// number in its cursor (`i=<hex>`).
pub fn entry_ns(realtime_us: &str, cursor: &str) -> Option<i64> {
    let us: i64 = realtime_us.parse().ok().filter(|us| *us >= 0)?;
    let seq = cursor
        .split(';')
        .find_map(|f| f.strip_prefix("i="))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0);
    us.checked_mul(1000)?.checked_add((seq % 1000) as i64)
}

/// Whether `c` can be a cursor: what `journalctl --after-cursor` is given.
fn cursor_like(c: &str) -> bool {
    !c.is_empty() && c.len() <= 512 && c.bytes().all(|b| b.is_ascii_graphic())
}

/// One line of `journalctl --output=json`: the entry, `None` for an entry of a unit
/// not in `units`, or why it is not an entry.
pub fn parse(line: &[u8], units: &BTreeMap<String, String>) -> Result<Option<Entry>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
    let field = |k: &str| v.get(k).and_then(serde_json::Value::as_str);
    let cursor = field("__CURSOR")
        .filter(|c| cursor_like(c))
        .ok_or("no __CURSOR")?;
    let at_ns = field("__REALTIME_TIMESTAMP")
        .and_then(|t| entry_ns(t, cursor))
        .ok_or("no usable __REALTIME_TIMESTAMP")?;
    // The unit that wrote it, or the unit systemd (or a coredump) writes about.
    let service = [
        "_SYSTEMD_UNIT",
        "UNIT",
        "OBJECT_SYSTEMD_UNIT",
        "COREDUMP_UNIT",
    ]
    .iter()
    .filter_map(|k| field(k))
    .find_map(|u| units.get(u));
    let Some(service) = service else {
        return Ok(None);
    };
    // A message with bytes that are not UTF-8 comes as an array of numbers.
    let line = match v.get("MESSAGE") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(a)) => {
            let bytes: Vec<u8> = a
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect::<Option<_>>()
                .ok_or("MESSAGE is neither text nor bytes")?;
            String::from_utf8_lossy(&bytes).into_owned()
        }
        None | Some(serde_json::Value::Null) => String::new(),
        Some(_) => return Err("MESSAGE is neither text nor bytes".into()),
    };
    Ok(Some(Entry {
        service: service.clone(),
        line: line.trim_end_matches('\n').to_owned(),
        at_ns,
        cursor: cursor.to_owned(),
    }))
}

/// When the kernel booted (`btime` of `/proc/stat`), in seconds since the epoch.
pub fn boot_time() -> Option<u64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

/// This machine's ID (`/etc/machine-id`), if it has one.
pub fn machine_id() -> Option<String> {
    let id = std::fs::read_to_string("/etc/machine-id").ok()?;
    let id = id.trim();
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
}

/// `journalctl`'s arguments: JSON, following, the configured units, after `cursor`, or
/// else from `since` (the kernel's boot, in seconds since the epoch).
///
/// Not by boot ID: `--follow` alone implies `--boot`, the boot ID the process sees, and
/// a sandbox with a `/proc` of its own (`ProtectProc=`) sees the kernel's, which is not
/// the one a container's journald writes (nor would a cursor of the previous boot find
/// that boot's last entries). `--merge` lifts that; `_MACHINE_ID` (of the system journal
/// read, `machine`) keeps to this machine's entries.
pub fn args(
    config: &Config,
    cursor: Option<&str>,
    since: Option<u64>,
    machine: Option<&str>,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = [
        "--output=json",
        "--all",
        "--follow",
        "--merge",
        "--no-pager",
        "--quiet",
    ]
    .map(OsString::from)
    .to_vec();
    if let Some(d) = &config.directory {
        let mut s = OsString::from("--directory=");
        s.push(d);
        a.push(s);
    }
    for u in config.units.keys() {
        a.push(format!("--unit={u}").into());
    }
    match (cursor, since) {
        (Some(c), _) => a.push(format!("--after-cursor={c}").into()),
        (None, Some(t)) => {
            a.push(format!("--since=@{t}").into());
            a.push("--no-tail".into());
        }
        (None, None) => a.push("--no-tail".into()),
    }
    if let (None, Some(m)) = (&config.directory, machine) {
        a.push(format!("_MACHINE_ID={m}").into());
    }
    a
}

/// The reader's side: entries taken from the feed, and their cursor saved once their
/// batch is buffered.
#[derive(Debug)]
pub struct Journal {
    rx: mpsc::Receiver<Entry>,
    /// Entries taken whose batch could not be buffered: taken again first.
    again: Vec<Entry>,
    /// The last taken entry's cursor, not saved yet.
    unsaved: Option<String>,
    cursor_file: PathBuf,
}

/// The feed's side: runs `journalctl` (see [`Feed::run`]).
#[derive(Debug)]
pub struct Feed {
    config: Config,
    cursor: Option<String>,
    tx: mpsc::Sender<Entry>,
    pub stats: Arc<Mutex<FeedStats>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The reader and the feed of `config`, continuing after the cursor saved in `dir`.
pub fn open(config: &Config, dir: &Path) -> (Journal, Feed) {
    let cursor_file = dir.join(CURSOR_FILE);
    let cursor = match std::fs::read_to_string(&cursor_file) {
        Ok(c) if cursor_like(c.trim()) => Some(c.trim().to_owned()),
        Ok(_) => {
            tracing::warn!(
                file = %cursor_file.display(),
                "the saved journal cursor is not a cursor; reading this boot's entries again"
            );
            None
        }
        Err(_) => None,
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    (
        Journal {
            rx,
            again: Vec::new(),
            unsaved: None,
            cursor_file,
        },
        Feed {
            config: config.clone(),
            cursor,
            tx,
            stats: Arc::default(),
        },
    )
}

impl Journal {
    /// Up to `max` entries, oldest first.
    pub fn take(&mut self, max: usize) -> Vec<Entry> {
        let mut out = std::mem::take(&mut self.again);
        while out.len() < max {
            match self.rx.try_recv() {
                Ok(e) => out.push(e),
                Err(_) => break,
            }
        }
        if let Some(last) = out.last() {
            self.unsaved = Some(last.cursor.clone());
        }
        out
    }

    /// `entries` (what [`Journal::take`] gave) were not buffered: they come again.
    pub fn not_buffered(&mut self, entries: Vec<Entry>) {
        self.again = entries;
        self.unsaved = None;
    }

    /// Whether a taken entry's cursor is not saved yet.
    pub fn unsaved(&self) -> bool {
        self.unsaved.is_some()
    }

    /// Saves the last taken entry's cursor: its batch is buffered.
    pub fn save(&mut self) -> std::io::Result<()> {
        if let Some(c) = &self.unsaved {
            rampart_telemetry::fs::write_atomic(&self.cursor_file, c.as_bytes(), 0o600)?;
            self.unsaved = None;
        }
        Ok(())
    }
}

/// What reading one `journalctl`'s output ended with.
enum Ended {
    Eof,
    Stopped,
}

/// Reads one line of at most [`MAX_ENTRY`] bytes into `buf` (without the newline);
/// `Ok(false)` at the end. A longer line is skipped to its newline and `buf` is left
/// empty with `*too_long` set.
async fn read_line(
    r: &mut (impl AsyncBufReadExt + Unpin),
    buf: &mut Vec<u8>,
    too_long: &mut bool,
) -> std::io::Result<bool> {
    buf.clear();
    *too_long = false;
    let n = (&mut *r)
        .take(MAX_ENTRY as u64 + 1)
        .read_until(b'\n', buf)
        .await?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(true);
    }
    if buf.len() <= MAX_ENTRY {
        // The last line, without a newline.
        return Ok(true);
    }
    *too_long = true;
    buf.clear();
    let mut scratch = Vec::new();
    loop {
        scratch.clear();
        let n = (&mut *r)
            .take(64 * 1024)
            .read_until(b'\n', &mut scratch)
            .await?;
        if n == 0 || scratch.last() == Some(&b'\n') {
            return Ok(true);
        }
    }
}

/// At most 4 KiB of what `journalctl` said on stderr, for a log line.
async fn said(stderr: Option<impl AsyncRead + Unpin>) -> String {
    let mut out = Vec::new();
    if let Some(s) = stderr {
        let _ =
            tokio::time::timeout(Duration::from_secs(1), s.take(4096).read_to_end(&mut out)).await;
    }
    String::from_utf8_lossy(&out).trim().to_owned()
}

impl Feed {
    /// Hands entries to the reader until `stop`, running `journalctl` again after it
    /// exits.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            if *stop.borrow() {
                return;
            }
            let started_after = self.cursor.clone();
            let mut cmd = tokio::process::Command::new(&self.config.command);
            let args = args(
                &self.config,
                self.cursor.as_deref(),
                boot_time(),
                machine_id().as_deref(),
            );
            tracing::info!(
                command = %self.config.command.display(),
                args = ?args,
                "following the journal"
            );
            cmd.args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            let handed = match cmd.spawn() {
                Ok(mut child) => {
                    let (ended, handed) = match child.stdout.take() {
                        Some(out) => self.follow(out, &mut stop).await,
                        None => (Ended::Eof, 0),
                    };
                    if let Ended::Stopped = ended {
                        let _ = child.kill().await;
                        return;
                    }
                    let stderr = said(child.stderr.take()).await;
                    let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                    let _ = child.kill().await;
                    let failed = !matches!(status, Ok(Ok(s)) if s.success());
                    if failed && handed == 0 && started_after.is_some() {
                        tracing::warn!(
                            said = %stderr,
                            "journalctl refused the saved cursor; reading this boot's entries again"
                        );
                        self.cursor = None;
                    } else {
                        tracing::warn!(said = %stderr, status = ?status, "journalctl exited; starting it again");
                    }
                    handed
                }
                Err(e) => {
                    tracing::error!(
                        command = %self.config.command.display(),
                        error = %e,
                        "journalctl could not start (Debian package: systemd)"
                    );
                    0
                }
            };
            lock(&self.stats).restarts += 1;
            backoff = if handed > 0 {
                Duration::from_secs(1)
            } else {
                (backoff * 2).min(Duration::from_secs(30))
            };
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Reads one `journalctl`'s entries into the queue; returns how it ended and how
    /// many entries it handed over.
    async fn follow(
        &mut self,
        out: impl AsyncRead + Unpin,
        stop: &mut watch::Receiver<bool>,
    ) -> (Ended, u64) {
        let mut r = BufReader::with_capacity(64 * 1024, out);
        let mut buf = Vec::new();
        let mut too_long = false;
        let mut handed = 0;
        loop {
            let read = tokio::select! {
                r = read_line(&mut r, &mut buf, &mut too_long) => r,
                _ = stop.changed() => return (Ended::Stopped, handed),
            };
            match read {
                Ok(true) => {}
                Ok(false) => return (Ended::Eof, handed),
                Err(e) => {
                    tracing::warn!(error = %e, "reading journalctl's output");
                    return (Ended::Eof, handed);
                }
            }
            if too_long {
                lock(&self.stats).malformed += 1;
                continue;
            }
            let entry = match parse(&buf, &self.config.units) {
                Ok(Some(e)) => e,
                Ok(None) => {
                    lock(&self.stats).skipped += 1;
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "a journal line that is not an entry");
                    lock(&self.stats).malformed += 1;
                    continue;
                }
            };
            let cursor = entry.cursor.clone();
            tokio::select! {
                sent = self.tx.send(entry) => {
                    if sent.is_err() {
                        // The reader is gone: the agent is stopping.
                        return (Ended::Stopped, handed);
                    }
                }
                _ = stop.changed() => return (Ended::Stopped, handed),
            }
            self.cursor = Some(cursor);
            handed += 1;
            lock(&self.stats).entries += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn units() -> BTreeMap<String, String> {
        [
            ("rampart-web.service", "web"),
            ("prometheus.service", "prometheus"),
        ]
        .map(|(u, s)| (u.to_owned(), s.to_owned()))
        .into()
    }

    const CURSOR: &str = "s=2ea9;i=3f9;b=11df;m=3e8;t=661fd48821418;x=5fb5";

    #[test]
    fn an_entry_keeps_its_own_time_with_its_sequence_number() {
        let line = format!(
            r#"{{"MESSAGE":"hello","_SYSTEMD_UNIT":"rampart-web.service","__REALTIME_TIMESTAMP":"1796590331368472","__CURSOR":"{CURSOR}"}}"#
        );
        let e = parse(line.as_bytes(), &units()).unwrap().unwrap();
        assert_eq!(e.service, "web");
        assert_eq!(e.line, "hello");
        // i=0x3f9 = 1017.
        assert_eq!(e.at_ns, 1_796_590_331_368_472_017);
        assert_eq!(e.cursor, CURSOR);
    }

    #[test]
    fn systemd_lines_about_a_unit_are_the_units() {
        let line = format!(
            r#"{{"MESSAGE":"Started prometheus.service.","_SYSTEMD_UNIT":"init.scope","UNIT":"prometheus.service","__REALTIME_TIMESTAMP":"5","__CURSOR":"{CURSOR}"}}"#
        );
        let e = parse(line.as_bytes(), &units()).unwrap().unwrap();
        assert_eq!(e.service, "prometheus");
    }

    #[test]
    fn bytes_and_missing_messages_and_other_units() {
        let bytes = format!(
            r#"{{"MESSAGE":[104,105,255,10],"_SYSTEMD_UNIT":"rampart-web.service","__REALTIME_TIMESTAMP":"5","__CURSOR":"{CURSOR}"}}"#
        );
        assert_eq!(
            parse(bytes.as_bytes(), &units()).unwrap().unwrap().line,
            "hi\u{fffd}"
        );
        let none = format!(
            r#"{{"_SYSTEMD_UNIT":"rampart-web.service","__REALTIME_TIMESTAMP":"5","__CURSOR":"{CURSOR}"}}"#
        );
        assert_eq!(parse(none.as_bytes(), &units()).unwrap().unwrap().line, "");
        let other = format!(
            r#"{{"MESSAGE":"x","_SYSTEMD_UNIT":"cron.service","__REALTIME_TIMESTAMP":"5","__CURSOR":"{CURSOR}"}}"#
        );
        assert_eq!(parse(other.as_bytes(), &units()).unwrap(), None);
    }

    #[test]
    fn what_is_not_an_entry_is_refused_with_its_reason() {
        for (line, why) in [
            ("-- No entries --", "not JSON"),
            ("[1,2]", "__CURSOR"),
            (r#"{"MESSAGE":"x","__CURSOR":"c"}"#, "__REALTIME_TIMESTAMP"),
            (
                r#"{"MESSAGE":"x","__CURSOR":"c","__REALTIME_TIMESTAMP":"-1"}"#,
                "__REALTIME_TIMESTAMP",
            ),
            (
                r#"{"MESSAGE":"x","__CURSOR":"c","__REALTIME_TIMESTAMP":"99999999999999999999"}"#,
                "__REALTIME_TIMESTAMP",
            ),
            (
                r#"{"MESSAGE":{"a":1},"_SYSTEMD_UNIT":"rampart-web.service","__CURSOR":"c","__REALTIME_TIMESTAMP":"1"}"#,
                "MESSAGE",
            ),
            (
                r#"{"MESSAGE":[300],"_SYSTEMD_UNIT":"rampart-web.service","__CURSOR":"c","__REALTIME_TIMESTAMP":"1"}"#,
                "MESSAGE",
            ),
        ] {
            let e = parse(line.as_bytes(), &units()).unwrap_err();
            assert!(e.contains(why), "{line}: {e}");
        }
    }

    #[test]
    fn journalctl_continues_after_the_cursor_or_reads_since_the_boot() {
        let config = Config {
            units: units(),
            command: "journalctl".into(),
            directory: Some("/j".into()),
        };
        let a = |c| {
            args(&config, c, Some(1_700_000_000), Some("ab12"))
                .into_iter()
                .map(|s| s.into_string().unwrap())
                .collect::<Vec<_>>()
        };
        let fresh = a(None);
        assert!(
            fresh.contains(&"--since=@1700000000".to_owned()),
            "{fresh:?}"
        );
        assert!(fresh.contains(&"--no-tail".to_owned()), "{fresh:?}");
        assert!(fresh.contains(&"--directory=/j".to_owned()), "{fresh:?}");
        assert!(fresh.contains(&"--unit=prometheus.service".to_owned()));
        assert!(fresh.contains(&"--unit=rampart-web.service".to_owned()));
        assert!(fresh.contains(&"--merge".to_owned()), "{fresh:?}");
        // A directory's journal is read whole; the system's, this machine's only.
        assert!(
            !fresh.iter().any(|a| a.starts_with("_MACHINE_ID")),
            "{fresh:?}"
        );
        let system = Config {
            directory: None,
            ..config.clone()
        };
        let s = args(&system, None, None, Some("ab12"));
        assert_eq!(s.last().unwrap(), "_MACHINE_ID=ab12");
        let after = a(Some(CURSOR));
        assert!(
            after.contains(&format!("--after-cursor={CURSOR}")),
            "{after:?}"
        );
        assert!(!after.iter().any(|a| a.starts_with("--since")), "{after:?}");
        assert!(boot_time().is_some_and(|t| t > 1_500_000_000));
    }

    #[tokio::test]
    async fn a_line_over_the_limit_is_skipped_to_its_newline() {
        let mut input = vec![b'a'; MAX_ENTRY + 10];
        input.extend_from_slice(b"\nnext\nlast");
        let mut r = BufReader::new(&input[..]);
        let (mut buf, mut long) = (Vec::new(), false);
        assert!(read_line(&mut r, &mut buf, &mut long).await.unwrap());
        assert!(long && buf.is_empty());
        assert!(read_line(&mut r, &mut buf, &mut long).await.unwrap());
        assert_eq!((&buf[..], long), (&b"next"[..], false));
        assert!(read_line(&mut r, &mut buf, &mut long).await.unwrap());
        assert_eq!(&buf[..], b"last");
        assert!(!read_line(&mut r, &mut buf, &mut long).await.unwrap());
    }

    #[test]
    fn a_cursor_is_saved_only_when_asked_and_entries_not_buffered_come_again() {
        let dir = std::env::temp_dir().join(format!("rampart-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = Config {
            units: units(),
            command: "journalctl".into(),
            directory: None,
        };
        let (mut j, feed) = open(&config, &dir);
        let e = |c: &str| Entry {
            service: "web".into(),
            line: c.into(),
            at_ns: 1,
            cursor: c.into(),
        };
        feed.tx.try_send(e("a")).unwrap();
        feed.tx.try_send(e("b")).unwrap();
        let taken = j.take(10);
        assert_eq!(taken.len(), 2);
        j.not_buffered(taken);
        assert!(!j.unsaved());
        assert!(!dir.join(CURSOR_FILE).exists());
        let again = j.take(1);
        // What was taken before comes first, whole.
        assert_eq!(
            again.iter().map(|e| e.line.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        j.save().unwrap();
        assert_eq!(std::fs::read_to_string(dir.join(CURSOR_FILE)).unwrap(), "b");
        let (_, feed) = open(&config, &dir);
        assert_eq!(feed.cursor.as_deref(), Some("b"));
        std::fs::write(dir.join(CURSOR_FILE), "not a\ncursor").unwrap();
        let (_, feed) = open(&config, &dir);
        assert_eq!(feed.cursor, None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! The backup store: a directory on the backup host, every data file a sealed object
//! (`seal.rs`), every manifest plain JSON (times, positions, sizes and checksums; never a
//! row of data).
//!
//! ```text
//! <store>/backups/<id>/data.seal        a mariadb-backup stream (mbstream), sealed
//! <store>/backups/<id>/manifest.json    what it is (BackupManifest), written last
//! <store>/binlog/<server>/<session>-<file>@<length>.seal   an archived binlog file, sealed
//! <store>/binlog/<server>/<session>-<file>.json   what it holds (BinlogManifest), last
//! <store>/timelines/<at>-<session>.json  a restart of the history (Timeline)
//! ```
//!
//! `<id>` is the start time and kind (`20261205T101500Z-full`, `...-incr`), so names sort
//! in time order. An object without its manifest is unfinished: listing ignores it and
//! pruning removes it. Manifests are written to a temporary name, synced and renamed, so
//! a crash leaves either the old state or the new one. Everything is created 0600 in
//! 0700 directories. The key is not in the store: it is a 0600 file of its own, so a copy
//! of the store alone is unreadable.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};

use crate::seal::{hex, Key, Opener, Sealed, Sealer};
use crate::Error;

/// A restart of the site's history, written by `restore --in-place` before the
/// restored servers start: from `at` (unix seconds) on, the history is the archive up
/// to `gtid` and then the sessions after `after_session`. Archived files of sessions up
/// to `after_session` count only up to `gtid` for points from `at` on; before `at` the
/// history is what it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    pub at: i64,
    pub gtid: String,
    pub after_session: i64,
}

/// A full copy, or the pages changed since a base backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Full,
    Incremental,
}

/// A sealed object's size and checksum, as recorded in its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object {
    pub bytes: u64,
    pub sha256: String,
    pub plain_bytes: u64,
}

impl From<Sealed> for Object {
    fn from(s: Sealed) -> Object {
        Object {
            bytes: s.bytes,
            sha256: s.sha256,
            plain_bytes: s.plain_bytes,
        }
    }
}

/// `backups/<id>/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManifest {
    pub id: String,
    pub kind: Kind,
    /// The backup an incremental applies on (a full or another incremental).
    pub base: Option<String>,
    /// The host it was taken from.
    pub source: String,
    /// Unix seconds.
    pub started: i64,
    pub finished: i64,
    /// The GTID position of the copy's consistent point (`gtid_binlog_pos` as
    /// mariadb-backup recorded it).
    pub gtid: String,
    pub from_lsn: u64,
    pub to_lsn: u64,
    pub data: Object,
}

/// `binlog/<server>/<session>-<file>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinlogManifest {
    /// The server's host name (the directory).
    pub server: String,
    /// When the archiving session that fetched it began (unix seconds). A session starts
    /// at the archive's GTID position, so its first file may begin mid-file; the same file
    /// fetched by two sessions is two objects, and replay skips what it already applied.
    pub session: i64,
    /// The binlog file's name on that server (`db1-bin.000003`).
    pub file: String,
    /// The last GTID of each domain in it (empty if none), and its newest event time.
    pub gtid: String,
    pub newest: Option<i64>,
    /// The sealed object's file name in the server's directory (`<name>@<length>.seal`:
    /// a file still being written is sealed again as it grows, each time under a new
    /// name, and the manifest switches to it before the old object is removed).
    pub object: String,
    /// Unix seconds when it was sealed; every event in it is older.
    pub sealed: i64,
    /// Whether the server had moved on to the next file (the file is complete) or this
    /// is the file's tail so far.
    pub complete: bool,
    pub data: Object,
}

impl BinlogManifest {
    /// `<session>-<file>`: names sort by session, then file.
    pub fn name(&self) -> String {
        format!("{:012}-{}", self.session, self.file)
    }
}

/// A store directory and its key.
#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
    key: Key,
}

fn private_dir(path: &Path) -> Result<(), Error> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| Error::io("create directory", path, e))
}

fn create_private(path: &Path) -> Result<File, Error> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("create", path, e))
}

/// Writes `value` as JSON to `path` through a synced temporary file and a rename.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(value).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut f = create_private(&tmp)?;
    f.write_all(&text)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("sync directory", dir, e))?;
    }
    Ok(())
}

fn read_json<T: for<'a> Deserialize<'a>>(path: &Path) -> Result<T, Error> {
    let text = fs::read(path).map_err(|e| Error::io("read", path, e))?;
    serde_json::from_slice(&text)
        .map_err(|e| Error::Invalid(format!("{}: not a manifest: {e}", path.display())))
}

/// Reads a key file: exactly 32 bytes, mode 0600 or stricter.
pub fn load_key(path: &Path) -> Result<Key, Error> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(path).map_err(|e| Error::io("read key", path, e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Error::Invalid(format!(
            "{}: the key file is readable by others (mode {:o}); it must be 0600",
            path.display(),
            meta.permissions().mode() & 0o777
        )));
    }
    let bytes = fs::read(path).map_err(|e| Error::io("read key", path, e))?;
    Key::from_bytes(&bytes).ok_or_else(|| {
        Error::Invalid(format!(
            "{}: a key file holds exactly 32 bytes, this one {}",
            path.display(),
            bytes.len()
        ))
    })
}

/// Creates a key file (0600) unless it exists, and returns the key in it.
pub fn load_or_create_key(path: &Path) -> Result<Key, Error> {
    if !path.exists() {
        if let Some(dir) = path.parent() {
            private_dir(dir)?;
        }
        let key = Key::generate().map_err(|e| Error::io("generate key", path, e))?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io("create key", path, e))?;
        f.write_all(key.bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io("write key", path, e))?;
    }
    load_key(path)
}

/// An object being written: the sealer and where it goes.
pub struct Writing {
    sealer: Sealer<BufWriter<File>>,
    path: PathBuf,
}

impl std::fmt::Debug for Writing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writing").field("path", &self.path).finish()
    }
}

impl Write for Writing {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.sealer.write(data)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.sealer.flush()
    }
}

impl Writing {
    /// Seals the last frame and syncs the file.
    pub fn finish(self) -> Result<Object, Error> {
        let (out, sealed) = self
            .sealer
            .finish()
            .map_err(|e| Error::io("write", &self.path, e))?;
        out.into_inner()
            .map_err(|e| Error::io("write", &self.path, e.into_error()))?
            .sync_all()
            .map_err(|e| Error::io("sync", &self.path, e))?;
        Ok(sealed.into())
    }
}

impl Store {
    /// Opens (creating if needed, 0700) the store at `root` with `key`.
    pub fn open(root: &Path, key: Key) -> Result<Store, Error> {
        private_dir(&root.join("backups"))?;
        private_dir(&root.join("binlog"))?;
        Ok(Store {
            root: root.to_owned(),
            key,
        })
    }

    pub fn backup_dir(&self, id: &str) -> PathBuf {
        self.root.join("backups").join(id)
    }

    pub fn binlog_dir(&self, server: &str) -> PathBuf {
        self.root.join("binlog").join(server)
    }

    /// Where an archived binlog file's sealed object is.
    pub fn binlog_path(&self, b: &BinlogManifest) -> PathBuf {
        self.binlog_dir(&b.server).join(&b.object)
    }

    /// Every archived binlog file in replay order: by session, then file.
    pub fn binlogs_in_order(&self) -> Result<Vec<BinlogManifest>, Error> {
        let mut all = self.binlogs()?;
        all.sort_by(|a, b| (a.session, &a.file, &a.server).cmp(&(b.session, &b.file, &b.server)));
        Ok(all)
    }

    /// Starts a sealed object at `path` (its directory is created 0700).
    pub fn create(&self, path: &Path) -> Result<Writing, Error> {
        if let Some(dir) = path.parent() {
            private_dir(dir)?;
        }
        let f = create_private(path)?;
        let sealer = Sealer::new(&self.key, BufWriter::with_capacity(1 << 20, f))
            .map_err(|e| Error::io("write", path, e))?;
        Ok(Writing {
            sealer,
            path: path.to_owned(),
        })
    }

    /// The plaintext of the sealed object at `path`, checked against `expected` first when
    /// given (a damaged object fails here, before any of it is used).
    pub fn open_object(&self, path: &Path, expected: Option<&Object>) -> Result<impl Read, Error> {
        if let Some(o) = expected {
            check_sum(path, o)?;
        }
        let f = File::open(path).map_err(|e| Error::io("open", path, e))?;
        Opener::new(&self.key, BufReader::with_capacity(1 << 20, f))
            .map_err(|e| Error::Damaged(format!("{}: {e}", path.display())))
    }

    /// Copies the plaintext of the object at `path` into `out`; damage is an error.
    pub fn unseal_into(
        &self,
        path: &Path,
        expected: Option<&Object>,
        out: &mut dyn Write,
    ) -> Result<u64, Error> {
        let mut r = self.open_object(path, expected)?;
        std::io::copy(&mut r, out).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => Error::Damaged(format!("{}: {e}", path.display())),
            _ => Error::io("unseal", path, e),
        })
    }

    pub fn write_backup_manifest(&self, m: &BackupManifest) -> Result<(), Error> {
        write_json(&self.backup_dir(&m.id).join("manifest.json"), m)
    }

    pub fn write_binlog_manifest(&self, m: &BinlogManifest) -> Result<(), Error> {
        write_json(
            &self
                .binlog_dir(&m.server)
                .join(format!("{}.json", m.name())),
            m,
        )
    }

    /// Every restart of the site's history (`restore --in-place`), oldest first.
    pub fn timelines(&self) -> Result<Vec<Timeline>, Error> {
        let dir = self.root.join("timelines");
        let mut out: Vec<Timeline> = Vec::new();
        for name in sorted_names(&dir)? {
            if name.ends_with(".json") {
                out.push(read_json(&dir.join(&name))?);
            }
        }
        out.sort_by_key(|t| (t.at, t.after_session));
        Ok(out)
    }

    pub fn write_timeline(&self, t: &Timeline) -> Result<(), Error> {
        let dir = self.root.join("timelines");
        private_dir(&dir)?;
        write_json(
            &dir.join(format!("{:012}-{}.json", t.at, t.after_session)),
            t,
        )
    }

    /// Every finished backup, oldest first.
    pub fn backups(&self) -> Result<Vec<BackupManifest>, Error> {
        let dir = self.root.join("backups");
        let mut out = Vec::new();
        for name in sorted_names(&dir)? {
            let m = dir.join(&name).join("manifest.json");
            if m.exists() {
                out.push(read_json(&m)?);
            }
        }
        Ok(out)
    }

    /// Every archived binlog file, by server, in file order.
    pub fn binlogs(&self) -> Result<Vec<BinlogManifest>, Error> {
        let dir = self.root.join("binlog");
        let mut out = Vec::new();
        for server in sorted_names(&dir)? {
            for name in sorted_names(&dir.join(&server))? {
                if name.ends_with(".json") {
                    out.push(read_json(&dir.join(&server).join(&name))?);
                }
            }
        }
        Ok(out)
    }

    /// The chain a restore from `id` applies: its full backup, then each incremental
    /// up to `id`.
    pub fn chain(&self, id: &str) -> Result<Vec<BackupManifest>, Error> {
        let all = self.backups()?;
        let mut chain = Vec::new();
        let mut next = Some(id.to_owned());
        while let Some(id) = next {
            let m = all
                .iter()
                .find(|m| m.id == id)
                .ok_or_else(|| Error::Invalid(format!("backup {id}: not in the store")))?;
            next = m.base.clone();
            chain.push(m.clone());
            if chain.len() > all.len() {
                return Err(Error::Invalid(format!(
                    "backup {id}: its bases form a loop"
                )));
            }
        }
        chain.reverse();
        if chain.first().map(|m| m.kind) != Some(Kind::Full) {
            return Err(Error::Invalid(format!(
                "backup {id}: its chain has no full backup"
            )));
        }
        Ok(chain)
    }

    /// Checks every object's checksum and authentication; returns the objects checked.
    pub fn check_all(&self) -> Result<usize, Error> {
        let mut n = 0;
        for m in self.backups()? {
            let path = self.backup_dir(&m.id).join("data.seal");
            self.unseal_into(&path, Some(&m.data), &mut std::io::sink())?;
            n += 1;
        }
        for b in self.binlogs()? {
            let path = self.binlog_path(&b);
            self.unseal_into(&path, Some(&b.data), &mut std::io::sink())?;
            n += 1;
        }
        Ok(n)
    }

    /// Applies the retention policy at `now` (unix seconds): keeps the newest `keep_full`
    /// full backups and, of those, the ones younger than `max_age_secs`, but always the
    /// newest one; incrementals go with their full backup; binlog files sealed before the
    /// oldest kept full backup started are no longer needed and go too. Unfinished
    /// objects (no manifest) older than a day are removed. Returns what was removed.
    pub fn prune(
        &self,
        keep_full: usize,
        max_age_secs: i64,
        now: i64,
    ) -> Result<Vec<String>, Error> {
        let all = self.backups()?;
        let fulls: Vec<&BackupManifest> = all.iter().filter(|m| m.kind == Kind::Full).collect();
        let mut kept_fulls: Vec<&str> = fulls
            .iter()
            .rev()
            .take(keep_full.max(1))
            .filter(|m| now - m.started <= max_age_secs)
            .map(|m| m.id.as_str())
            .collect();
        if kept_fulls.is_empty() {
            if let Some(newest) = fulls.last() {
                kept_fulls.push(&newest.id);
            }
        }
        let root_of = |m: &BackupManifest| -> Option<String> {
            self.chain(&m.id)
                .ok()
                .and_then(|c| c.first().map(|f| f.id.clone()))
        };
        let mut removed = Vec::new();
        for m in &all {
            let keep = root_of(m).is_some_and(|r| kept_fulls.contains(&r.as_str()));
            if !keep {
                let dir = self.backup_dir(&m.id);
                fs::remove_dir_all(&dir).map_err(|e| Error::io("remove", &dir, e))?;
                removed.push(format!("backup {}", m.id));
            }
        }
        let oldest_start = all
            .iter()
            .filter(|m| kept_fulls.contains(&m.id.as_str()))
            .map(|m| m.started)
            .min();
        if let Some(start) = oldest_start {
            for b in self.binlogs()? {
                if b.complete && b.sealed < start {
                    let dir = self.binlog_dir(&b.server);
                    for p in [dir.join(&b.object), dir.join(format!("{}.json", b.name()))] {
                        fs::remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
                    }
                    removed.push(format!("binlog {}/{}", b.server, b.name()));
                }
            }
        }
        // Binlog objects no manifest names: left by a crash between sealing a longer copy
        // of a file and switching its manifest to it.
        let named: Vec<PathBuf> = self
            .binlogs()?
            .iter()
            .map(|b| self.binlog_path(b))
            .collect();
        for server in sorted_names(&self.root.join("binlog"))? {
            let dir = self.binlog_dir(&server);
            for name in sorted_names(&dir)? {
                let p = dir.join(&name);
                if name.ends_with(".seal") && !named.contains(&p) && older_than_a_minute(&p) {
                    fs::remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
                    removed.push(format!("orphan binlog {server}/{name}"));
                }
            }
        }
        // Unfinished backups: a directory without a manifest, left by a crash.
        let dir = self.root.join("backups");
        for name in sorted_names(&dir)? {
            let d = dir.join(&name);
            let old = fs::metadata(&d)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 86_400);
            if !d.join("manifest.json").exists() && old {
                fs::remove_dir_all(&d).map_err(|e| Error::io("remove", &d, e))?;
                removed.push(format!("unfinished {name}"));
            }
        }
        Ok(removed)
    }
}

/// SHA-256 of the file at `path` against `expected`.
pub fn check_sum(path: &Path, expected: &Object) -> Result<(), Error> {
    let mut f = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut d = Context::new(&SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io("read", path, e))?;
        if n == 0 {
            break;
        }
        d.update(&buf[..n]);
    }
    let found = hex(d.finish().as_ref());
    if found != expected.sha256 {
        return Err(Error::Checksum {
            path: path.display().to_string(),
            expected: expected.sha256.clone(),
            found,
        });
    }
    Ok(())
}

fn older_than_a_minute(p: &Path) -> bool {
    fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age.as_secs() > 60)
}

fn sorted_names(dir: &Path) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    match fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                let e = e.map_err(|e| Error::io("list", dir, e))?;
                names.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("list", dir, e)),
    }
    names.sort();
    Ok(names)
}

/// A backup id for a start time and kind: `20261205T101500Z-full`.
pub fn backup_id(unix: i64, kind: Kind) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let suffix = match kind {
        Kind::Full => "full",
        Kind::Incremental => "incr",
    };
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{suffix}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let key = load_or_create_key(&dir.path().join("keys/backup.key")).unwrap();
        let s = Store::open(&dir.path().join("store"), key).unwrap();
        (dir, s)
    }

    fn add_backup(s: &Store, started: i64, kind: Kind, base: Option<&str>) -> String {
        let id = backup_id(started, kind);
        let mut w = s.create(&s.backup_dir(&id).join("data.seal")).unwrap();
        w.write_all(format!("backup {id}").as_bytes()).unwrap();
        let data = w.finish().unwrap();
        s.write_backup_manifest(&BackupManifest {
            id: id.clone(),
            kind,
            base: base.map(str::to_owned),
            source: "db2".into(),
            started,
            finished: started + 10,
            gtid: "0-1-5".into(),
            from_lsn: 0,
            to_lsn: 100,
            data,
        })
        .unwrap();
        id
    }

    fn add_binlog(s: &Store, file: &str, sealed: i64) {
        let mut m = BinlogManifest {
            server: "db1".into(),
            session: 7,
            file: file.into(),
            gtid: String::new(),
            newest: None,
            object: format!("000000000007-{file}@6.seal"),
            sealed,
            complete: true,
            data: Object {
                bytes: 0,
                sha256: String::new(),
                plain_bytes: 0,
            },
        };
        let mut w = s.create(&s.binlog_path(&m)).unwrap();
        w.write_all(b"binlog").unwrap();
        m.data = w.finish().unwrap();
        s.write_binlog_manifest(&m).unwrap();
    }

    #[test]
    fn ids_sort_in_time_order() {
        assert_eq!(backup_id(0, Kind::Full), "19700101T000000Z-full");
        assert_eq!(
            backup_id(1_796_470_000, Kind::Incremental),
            "20261205T112640Z-incr"
        );
    }

    #[test]
    fn key_file_is_private_and_exact() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let a = load_or_create_key(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load_or_create_key(&path).unwrap().bytes(), a.bytes());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_key(&path).unwrap_err().to_string();
        assert!(err.contains("must be 0600"), "{err}");
        fs::write(dir.path().join("short"), b"abc").unwrap();
        fs::set_permissions(dir.path().join("short"), fs::Permissions::from_mode(0o600)).unwrap();
        let err = load_key(&dir.path().join("short")).unwrap_err().to_string();
        assert!(err.contains("exactly 32 bytes"), "{err}");
    }

    #[test]
    fn chains_checksums_and_a_flipped_byte() {
        let (_d, s) = store();
        let full = add_backup(&s, 1000, Kind::Full, None);
        let inc1 = add_backup(&s, 2000, Kind::Incremental, Some(&full));
        let inc2 = add_backup(&s, 3000, Kind::Incremental, Some(&inc1));
        let chain: Vec<String> = s.chain(&inc2).unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(chain, [full.clone(), inc1.clone(), inc2]);
        assert_eq!(s.check_all().unwrap(), 3);
        let mut out = Vec::new();
        let m = &s.backups().unwrap()[0];
        s.unseal_into(
            &s.backup_dir(&full).join("data.seal"),
            Some(&m.data),
            &mut out,
        )
        .unwrap();
        assert_eq!(out, format!("backup {full}").as_bytes());
        // One byte flipped: the checksum names the file.
        let path = s.backup_dir(&inc1).join("data.seal");
        let mut bytes = fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let err = s.check_all().unwrap_err();
        assert!(matches!(err, Error::Checksum { .. }), "{err}");
        assert!(err.to_string().contains(&inc1), "{err}");
        // Without the manifest's checksum, authentication still refuses it.
        let err = s
            .unseal_into(&path, None, &mut std::io::sink())
            .unwrap_err();
        assert!(matches!(err, Error::Damaged(_)), "{err}");
    }

    #[test]
    fn prune_by_count_and_age_keeps_chains_and_the_binlog_they_need() {
        let (_d, s) = store();
        let day = 86_400;
        let f1 = add_backup(&s, day, Kind::Full, None);
        let i1 = add_backup(&s, day + 3600, Kind::Incremental, Some(&f1));
        let f2 = add_backup(&s, 2 * day, Kind::Full, None);
        let f3 = add_backup(&s, 3 * day, Kind::Full, None);
        let i3 = add_backup(&s, 3 * day + 3600, Kind::Incremental, Some(&f3));
        add_binlog(&s, "db1-bin.000001", day - 10);
        add_binlog(&s, "db1-bin.000002", 2 * day + 10);
        add_binlog(&s, "db1-bin.000003", 3 * day + 10);
        // By count: two fulls kept, the oldest goes with its incremental and the binlog
        // sealed before the oldest kept full started.
        let removed = s.prune(2, 30 * day, 4 * day).unwrap();
        assert_eq!(
            removed,
            [
                format!("backup {f1}"),
                format!("backup {i1}"),
                "binlog db1/000000000007-db1-bin.000001".to_owned()
            ]
        );
        let ids: Vec<String> = s.backups().unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(ids, [f2.clone(), f3, i3]);
        // By age: only f3 is young enough.
        let removed = s.prune(10, day + 100, 4 * day).unwrap();
        assert_eq!(
            removed,
            [
                format!("backup {f2}"),
                "binlog db1/000000000007-db1-bin.000002".to_owned()
            ]
        );
        // Everything too old: the newest full stays anyway.
        let removed = s.prune(10, 1, 100 * day).unwrap();
        assert!(removed.is_empty(), "{removed:?}");
        let files: Vec<String> = s.binlogs().unwrap().into_iter().map(|b| b.file).collect();
        assert_eq!(files, ["db1-bin.000003"]);
    }
}

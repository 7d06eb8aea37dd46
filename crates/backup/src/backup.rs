//! Taking a backup: `mariadb-backup --backup --stream=mbstream` on the database host (a
//! replica, so the primary is not loaded), its stream sealed into the store on the way
//! in, the manifest written once the stream is complete and its metadata read.
//!
//! The two halves are apart on purpose: [`copy_stream`] runs where the server's files are
//! (it needs the data directory), [`store_stream`] where the store is; in between is any
//! byte stream (a pipe in tests and on one machine, the keeper's HTTPS listener between
//! hosts). The store learns the LSN range and the GTID from the stream itself
//! (`mbstream.rs`).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::mbstream::Meta;
use crate::store::{backup_id, BackupManifest, Kind, Store};
use crate::tools::{self, BACKUP_PACKAGE};
use crate::Error;

/// A server whose files are on this host.
#[derive(Debug, Clone)]
pub struct LocalServer {
    /// Its unix socket (mariadb-backup connects as the OS user, like root's socket
    /// accounts).
    pub socket: PathBuf,
    pub datadir: PathBuf,
    /// A private directory for mariadb-backup's temporary files and log.
    pub workdir: PathBuf,
}

/// The `mariadb-backup` command that streams a copy of `server` to its stdout: a full
/// copy, or with `incremental_lsn` the pages changed since that LSN. Its stderr goes to
/// `<workdir>/mariadb-backup.log`.
pub fn copy_command(
    program: &std::path::Path,
    server: &LocalServer,
    incremental_lsn: Option<u64>,
) -> Result<Command, Error> {
    std::fs::create_dir_all(server.workdir.join("tmp"))
        .map_err(|e| Error::io("create directory", &server.workdir, e))?;
    let log = tools::log_file(&server.workdir.join("mariadb-backup.log"))?;
    let mut cmd = Command::new(program);
    cmd.arg("--no-defaults")
        .arg("--backup")
        .arg("--stream=mbstream")
        .arg(format!("--socket={}", server.socket.display()))
        .arg(format!("--user={}", tools::user_name()))
        .arg(format!("--datadir={}", server.datadir.display()))
        .arg(format!("--tmpdir={}", server.workdir.join("tmp").display()))
        .arg(format!(
            "--target-dir={}",
            server.workdir.join("target").display()
        ));
    if let Some(lsn) = incremental_lsn {
        cmd.arg(format!("--incremental-lsn={lsn}"));
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    Ok(cmd)
}

/// Starts [`copy_command`]; the caller reads stdout and then [`finish_copy`]s.
pub fn copy_stream(server: &LocalServer, incremental_lsn: Option<u64>) -> Result<Child, Error> {
    let program = tools::program("mariadb-backup", BACKUP_PACKAGE)?;
    tools::spawn(
        &mut copy_command(&program, server, incremental_lsn)?,
        "run mariadb-backup",
    )
}

/// Waits for a [`copy_stream`] to exit cleanly.
pub fn finish_copy(child: Child, server: &LocalServer) -> Result<(), Error> {
    tools::wait(
        child,
        "mariadb-backup",
        "--backup",
        &server.workdir.join("mariadb-backup.log"),
    )
}

/// What to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Full,
    /// On the newest backup; a full one when there is none.
    Incremental,
}

/// The base and its LSN for an incremental backup, or `None` for a full one.
pub fn base_for(store: &Store, want: Want) -> Result<Option<BackupManifest>, Error> {
    match want {
        Want::Full => Ok(None),
        Want::Incremental => Ok(store.backups()?.into_iter().max_by_key(|m| m.finished)),
    }
}

/// Seals the mbstream read from `stream` into the store as a new backup (incremental on
/// `base` when given), taken from host `source` and started at `started` (unix seconds).
/// The manifest is written only when the stream is complete and says what it holds.
pub fn store_stream(
    store: &Store,
    stream: &mut dyn Read,
    base: Option<&BackupManifest>,
    source: &str,
    started: i64,
) -> Result<BackupManifest, Error> {
    let before: Vec<String> = store.backups()?.into_iter().map(|m| m.id).collect();
    let stored = seal_stream(store, stream, base, source, started);
    if stored.is_err() {
        // What this call began and did not finish goes; finished backups stay.
        let dir = store.root.join("backups");
        for e in std::fs::read_dir(&dir)
            .map_err(|e| Error::io("list", &dir, e))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&backup_id(started, Kind::Full)[..16])
                && !before.contains(&name)
                && !e.path().join("manifest.json").exists()
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    stored
}

fn seal_stream(
    store: &Store,
    stream: &mut dyn Read,
    base: Option<&BackupManifest>,
    source: &str,
    started: i64,
) -> Result<BackupManifest, Error> {
    let kind = if base.is_some() {
        Kind::Incremental
    } else {
        Kind::Full
    };
    let mut id = backup_id(started, kind);
    let mut n = 1;
    while store.backup_dir(&id).exists() {
        n += 1;
        id = format!("{}-{n}", backup_id(started, kind));
    }
    let path = store.backup_dir(&id).join("data.seal");
    let mut out = store.create(&path)?;
    let mut meta = Meta::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("read the backup stream", &path, e)),
        };
        meta.feed(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| Error::io("write", &path, e))?;
    }
    let data = out.finish()?;
    let info = meta
        .finish()
        .map_err(|e| Error::Invalid(format!("backup {id} from {source}: {e}")))?;
    if let Some(b) = base {
        if info.from_lsn != b.to_lsn {
            return Err(Error::Invalid(format!(
                "backup {id} from {source}: starts at LSN {} but its base {} ends at {}",
                info.from_lsn, b.id, b.to_lsn
            )));
        }
    }
    let m = BackupManifest {
        id,
        kind,
        base: base.map(|b| b.id.clone()),
        source: source.to_owned(),
        started,
        finished: now(),
        gtid: info.gtid,
        from_lsn: info.from_lsn,
        to_lsn: info.to_lsn,
        data,
    };
    store.write_backup_manifest(&m)?;
    Ok(m)
}

/// Takes a backup of a server on this host straight into the store (both on one host:
/// tests, and `rampart up` where every host shares the machine's disk).
pub fn take_local(
    store: &Store,
    server: &LocalServer,
    source: &str,
    want: Want,
) -> Result<BackupManifest, Error> {
    let base = base_for(store, want)?;
    let started = now();
    let mut child = copy_stream(server, base.as_ref().map(|b| b.to_lsn))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::Invalid("mariadb-backup: no stdout".into()))?;
    let stored = store_stream(store, &mut stdout, base.as_ref(), source, started);
    drop(stdout);
    let copied = finish_copy(child, server);
    match (stored, copied) {
        (Ok(m), Ok(())) => Ok(m),
        (Ok(m), Err(e)) => {
            // The stream parsed but the program failed: the backup is not trusted.
            let dir = store.backup_dir(&m.id);
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
        (Err(e), Ok(())) => Err(e),
        (Err(_), Err(e)) => Err(e),
    }
}

/// Now, in unix seconds.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

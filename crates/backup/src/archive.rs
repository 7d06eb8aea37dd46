//! Continuous binlog archiving from whichever server is primary.
//!
//! A session is one `mariadb-binlog --read-from-remote-server --raw --stop-never` run
//! against the current primary, started at the archive's GTID position (the highest
//! GTID of each domain in the store), so after a failover the new primary (which logs
//! every replicated transaction under its original GTID) sends exactly what comes next,
//! and nothing between the two primaries is skipped. Every tick the session's files in
//! the staging directory that grew are sealed into the store (whole events only); a
//! file the server has rotated away from is sealed as complete and its plaintext
//! removed. The session ends when the primary changes, the stream stops or the
//! archiver is stopped; its files are sealed as they stand, and the next session
//! resumes from the store's position.
//!
//! The staging directory holds the plaintext of the file being written; it belongs on
//! a tmpfs (`/run/rampart-backup` on a real host), never on the backup disk. The
//! connection's password and TLS settings go through a 0600 defaults file, never argv.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backup::now;
use crate::binlog::{render, scan};
use crate::restore::{gtid_le, parse_gtids};
use crate::store::{BinlogManifest, Store};
use crate::tools::{self, CLIENT_PACKAGE};
use crate::Error;

/// Where the archive and a new primary agree, when the archive is ahead: for each
/// domain of `archived` (the archive's position) whose last GTID the primary's
/// `@@gtid_binlog_state` (every server's last GTID in each domain) does not reach, the
/// last GTID of that server the primary has. `None` when the primary has everything
/// archived (or has never seen that server, where nothing can be said).
pub fn agreed_position(archived: &str, state: &str) -> Result<Option<String>, Error> {
    let mut seen: HashMap<(u32, u32), u64> = HashMap::new();
    for g in state.split(',').map(str::trim).filter(|g| !g.is_empty()) {
        let (d, (s, n)) = parse_gtids(g)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Invalid(format!("{g:?}: not a GTID")))?;
        seen.insert((d, s), n);
    }
    let mut pos = parse_gtids(archived)?;
    let mut behind = false;
    for (d, (s, n)) in pos.iter_mut() {
        match seen.get(&(*d, *s)) {
            Some(m) if *m < *n => {
                *n = *m;
                behind = true;
            }
            _ => {}
        }
    }
    Ok(behind.then(|| render(&pos)))
}

/// The id the archiver's connection registers with (above every keeper's incarnation
/// server ids, which stay below 4 000 000 000).
pub const ARCHIVER_SERVER_ID: u32 = 4_294_967_001;

/// Where the primary is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Primary {
    /// Its host name (the store's directory for its files).
    pub host: String,
    pub addr: String,
    pub port: u16,
}

/// How the archiver logs in: an account with `REPLICATION SLAVE` and `BINLOG MONITOR`.
#[derive(Clone)]
pub struct Login {
    pub user: String,
    pub password: String,
    /// The CA to verify the server's certificate with (TLS required when set).
    pub ca: Option<PathBuf>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

/// What the archiver is doing, for metrics and `rampart status`.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// The server the current session reads from.
    pub server: Option<String>,
    /// The archive's position and the newest archived event's time.
    pub gtid: String,
    pub newest: Option<i64>,
    /// The primary's `gtid_binlog_pos` at the last tick.
    pub primary_gtid: String,
    /// Since when (unix seconds) the archive has been behind the primary; `None` when
    /// it holds everything the primary had at the last tick.
    pub behind_since: Option<i64>,
    /// The last time (unix seconds) the archive was known to hold everything the
    /// primary had: a restore may aim at any second up to it.
    pub complete_at: Option<i64>,
    pub sessions: u64,
    /// Sessions that found the archive ahead of the new primary (transactions lost in a
    /// failover) and restarted its history at the new primary's position.
    pub divergences: u64,
    pub seals: u64,
    pub last_error: Option<String>,
}

impl Status {
    /// Seconds the archive lags the primary at `now`.
    pub fn lag(&self, now: i64) -> i64 {
        self.behind_since.map_or(0, |s| (now - s).max(0))
    }
}

/// The archiver: a store, a staging directory and a login.
#[derive(Debug)]
pub struct Archiver {
    pub store: Store,
    pub staging: PathBuf,
    pub login: Login,
    pub tick: Duration,
    pub status: Arc<Mutex<Status>>,
}

fn private_dir(p: &Path) -> Result<(), Error> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .map_err(|e| Error::io("create directory", p, e))
}

impl Archiver {
    /// The highest archived GTID of each domain, and the newest archived event time.
    /// After a restart of the history (`restore --in-place`), the restart's position
    /// and what was archived after it.
    pub fn position(&self) -> Result<(String, Option<i64>), Error> {
        let mut best: BTreeMap<u32, (u32, u64)> = BTreeMap::new();
        let mut newest = None;
        let restart = self.store.timelines()?.pop();
        if let Some(t) = &restart {
            best = parse_gtids(&t.gtid)?;
        }
        for b in self.store.binlogs()? {
            if restart
                .as_ref()
                .is_some_and(|t| b.session <= t.after_session)
            {
                continue;
            }
            for (d, (s, n)) in parse_gtids(&b.gtid)? {
                let e = best.entry(d).or_insert((s, n));
                if n > e.1 {
                    *e = (s, n);
                }
            }
            newest = newest.max(b.newest);
        }
        Ok((render(&best), newest))
    }

    fn defaults_file(&self, session: &Path, p: &Primary) -> Result<PathBuf, Error> {
        let path = session.with_extension("cnf");
        write_defaults(&path, &self.login, p)?;
        Ok(path)
    }

    fn query(&self, cnf: &Path, sql: &str, log: &Path) -> Result<String, Error> {
        query(cnf, sql, log)
    }

    /// Follows `primary()` until `stop` is set, one session after another.
    pub fn run(&self, primary: &dyn Fn() -> Option<Primary>, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            match primary() {
                Some(p) => {
                    if let Err(e) = self.session(&p, primary, stop) {
                        tracing::warn!(server = %p.host, error = %e, "binlog archiving session ended");
                        self.set(|s| s.last_error = Some(e.to_string()));
                        sleep_unless(stop, self.tick * 2);
                    }
                }
                None => sleep_unless(stop, self.tick),
            }
        }
    }

    fn set(&self, f: impl FnOnce(&mut Status)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    /// One session against `p`, until the primary changes, the stream ends or `stop`.
    pub fn session(
        &self,
        p: &Primary,
        primary: &dyn Fn() -> Option<Primary>,
        stop: &AtomicBool,
    ) -> Result<(), Error> {
        let program = tools::program("mariadb-binlog", CLIENT_PACKAGE)?;
        private_dir(&self.staging)?;
        let (mut start, _) = self.position()?;
        let last_session = self
            .store
            .binlogs()?
            .iter()
            .map(|b| b.session)
            .max()
            .unwrap_or(0);
        let session = now().max(last_session + 1);
        let dir = self.staging.join(session.to_string());
        private_dir(&dir)?;
        let log = self.staging.join("archive.log");
        let cnf = self.defaults_file(&dir, p)?;
        let result = (|| {
            // A failover can lose a transaction the old primary sent this archive but
            // never got to its standby: the new primary does not have it, so the
            // archive's history past that point is not the site's any more.
            if !start.is_empty() {
                let state = self.query(&cnf, "SELECT @@GLOBAL.gtid_binlog_state", &log)?;
                if let Some(agreed) = agreed_position(&start, state.trim())? {
                    let binlogs = self.store.binlogs()?;
                    let last = binlogs.iter().map(|b| b.session).max().unwrap_or(0);
                    // From just after the old session's last seal: the new primary took
                    // no write before its lease ran out, well after that.
                    let at = binlogs
                        .iter()
                        .filter(|b| b.session == last)
                        .map(|b| b.sealed + 1)
                        .max()
                        .unwrap_or_else(now);
                    tracing::warn!(
                        server = %p.host, archived = %start, kept = %agreed,
                        "the archive held transactions the new primary does not have (lost in a failover); from here on its history continues from the new primary's"
                    );
                    self.store.write_timeline(&crate::store::Timeline {
                        at,
                        gtid: agreed.clone(),
                        after_session: last,
                    })?;
                    self.set(|s| s.divergences += 1);
                    start = agreed;
                }
            }
            let first = self
                .query(&cnf, "SHOW BINARY LOGS", &log)?
                .lines()
                .next()
                .and_then(|l| l.split('\t').next())
                .map(str::to_owned)
                .ok_or_else(|| Error::Invalid(format!("{}: has no binary log", p.host)))?;
            let mut cmd = Command::new(&program);
            cmd.arg(format!("--defaults-file={}", cnf.display()))
                .args(["--read-from-remote-server", "--raw", "--stop-never"])
                .arg(format!("--stop-never-slave-server-id={ARCHIVER_SERVER_ID}"))
                .arg(format!("--result-file={}/", dir.display()));
            if !start.is_empty() {
                cmd.arg(format!("--start-position={start}"));
            }
            cmd.arg(&first)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(tools::log_file(&log)?));
            let child = tools::spawn(&mut cmd, "run mariadb-binlog")?;
            tracing::info!(server = %p.host, session, start = %start, "binlog archiving session started");
            self.set(|s| {
                s.server = Some(p.host.clone());
                s.sessions += 1;
            });
            self.follow(child, p, session, &dir, &cnf, &log, primary, stop)
        })();
        let _ = fs::remove_file(&cnf);
        let _ = fs::remove_dir_all(&dir);
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn follow(
        &self,
        mut child: Child,
        p: &Primary,
        session: i64,
        dir: &Path,
        cnf: &Path,
        log: &Path,
        primary: &dyn Fn() -> Option<Primary>,
        stop: &AtomicBool,
    ) -> Result<(), Error> {
        let mut sealed_len: HashMap<String, (usize, Option<String>)> = HashMap::new();
        let outcome = loop {
            let exited = child
                .try_wait()
                .map_err(|e| Error::io("wait", Path::new("mariadb-binlog"), e))?;
            // The primary's position first, so what is sealed next covers at least it.
            let asked = now();
            let primary_gtid = self.query(cnf, "SELECT @@GLOBAL.gtid_binlog_pos", log).ok();
            self.seal_staged(p, session, dir, &mut sealed_len, exited.is_some())?;
            let (gtid, newest) = self.position()?;
            self.set(|s| {
                if let Some(pg) = &primary_gtid {
                    let caught_up = gtid_le(pg.trim(), &gtid).unwrap_or(false);
                    s.behind_since = if caught_up {
                        s.complete_at = Some(asked);
                        None
                    } else {
                        s.behind_since.or(Some(now()))
                    };
                    s.primary_gtid = pg.trim().to_owned();
                }
                s.gtid = gtid;
                s.newest = newest;
                s.last_error = None;
            });
            if let Some(status) = exited {
                break Err(tools::failed(
                    "mariadb-binlog",
                    "following the primary",
                    status,
                    log,
                ));
            }
            if stop.load(Ordering::Relaxed) || primary().as_ref() != Some(p) {
                break Ok(());
            }
            sleep_unless(stop, self.tick);
        };
        if child.try_wait().ok().flatten().is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // What arrived before the stream stopped.
        self.seal_staged(p, session, dir, &mut sealed_len, true)?;
        outcome
    }

    /// Seals every staged file that grew; with `all_done`, the last one too is final.
    fn seal_staged(
        &self,
        p: &Primary,
        session: i64,
        dir: &Path,
        sealed: &mut HashMap<String, (usize, Option<String>)>,
        all_done: bool,
    ) -> Result<(), Error> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .map_err(|e| Error::io("list", dir, e))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let count = names.len();
        for (i, name) in names.into_iter().enumerate() {
            let rotated = i + 1 < count;
            let path = dir.join(&name);
            let bytes = fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
            let Some(sc) = scan(&bytes) else { continue };
            let prev = sealed.get(&name).cloned();
            if prev.as_ref().map(|(n, _)| *n) != Some(sc.whole) {
                let mut m = BinlogManifest {
                    server: p.host.clone(),
                    session,
                    file: name.clone(),
                    sealed: now(),
                    complete: rotated,
                    gtid: sc.gtid(),
                    newest: sc.newest,
                    object: String::new(),
                    data: crate::store::Object {
                        bytes: 0,
                        sha256: String::new(),
                        plain_bytes: 0,
                    },
                };
                m.object = format!("{}@{}.seal", m.name(), sc.whole);
                let mut w = self.store.create(&self.store.binlog_path(&m))?;
                w.write_all(&bytes[..sc.whole])
                    .map_err(|e| Error::io("seal", &path, e))?;
                m.data = w.finish()?;
                self.store.write_binlog_manifest(&m)?;
                if let Some((_, Some(old))) = &prev {
                    let old = self.store.binlog_dir(&p.host).join(old);
                    let _ = fs::remove_file(old);
                }
                sealed.insert(name.clone(), (sc.whole, Some(m.object.clone())));
                self.set(|s| s.seals += 1);
            } else if rotated || all_done {
                // Unchanged since its last seal; mark it complete once rotated away.
                if let Some(mut m) = self
                    .store
                    .binlogs()?
                    .into_iter()
                    .find(|b| b.server == p.host && b.session == session && b.file == name)
                {
                    if rotated && !m.complete {
                        m.complete = true;
                        self.store.write_binlog_manifest(&m)?;
                    }
                }
            }
            if rotated {
                let _ = fs::remove_file(&path);
            }
        }
        Ok(())
    }
}

/// Writes a 0600 client defaults file for `login` at `p` (the password never on argv).
pub fn write_defaults(path: &Path, login: &Login, p: &Primary) -> Result<(), Error> {
    let mut text = format!(
        "[client]\nuser={}\npassword={}\nhost={}\nport={}\n",
        login.user, login.password, p.addr, p.port
    );
    if let Some(ca) = &login.ca {
        text.push_str(&format!(
            "ssl-ca={}\nssl-verify-server-cert\n",
            ca.display()
        ));
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("create", path, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| Error::io("write", path, e))
}

/// Runs `sql` with the `mariadb` client and the defaults file `cnf`; the batch output.
pub fn query(cnf: &Path, sql: &str, log: &Path) -> Result<String, Error> {
    let program = tools::program("mariadb", CLIENT_PACKAGE)?;
    let mut child = Command::new(&program)
        .arg(format!("--defaults-file={}", cnf.display()))
        .args(["--batch", "--skip-column-names", "--connect-timeout=5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(tools::log_file(log)?))
        .spawn()
        .map_err(|e| Error::io("run", &program, e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(sql.as_bytes())
            .map_err(|e| Error::io("write SQL to", &program, e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("run", &program, e))?;
    if !out.status.success() {
        return Err(tools::failed("mariadb", "query a server", out.status, log));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let step = Duration::from_millis(50);
    let mut left = d;
    while !stop.load(Ordering::Relaxed) && !left.is_zero() {
        let s = left.min(step);
        tools::pause(s);
        left -= s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// db2 took over from db1 without db1's last transaction (0-1-100, archived but
    /// never replicated): the archive and db2 agree up to 0-1-99.
    #[test]
    fn a_new_primary_behind_the_archive_is_found_with_the_agreed_point() {
        let agreed = |a: &str, s: &str| agreed_position(a, s).unwrap();
        assert_eq!(
            agreed("0-1-100", "0-1-99,0-2-120").as_deref(),
            Some("0-1-99")
        );
        assert_eq!(
            agreed("0-1-100", "0-2-5,0-1-100"),
            None,
            "it has everything"
        );
        assert_eq!(agreed("0-1-100", "0-1-140"), None);
        assert_eq!(agreed("0-1-100", "0-2-5"), None, "never saw server 1");
        assert_eq!(
            agreed("0-1-10,1-1-7", "1-1-6,0-1-10").as_deref(),
            Some("0-1-10,1-1-6")
        );
        assert!(agreed_position("0-1-100", "0-1-x").is_err());
    }
}

//! Restoring: the newest backup chain before the target, unsealed through `mbstream -x`,
//! prepared with `mariadb-backup --prepare` (each incremental applied on the full copy),
//! started as a scratch `mariadbd` on a private socket, then the archived binlog replayed
//! into it with `mariadb-binlog` up to the target time or GTID.
//!
//! The replay goes through the archived files in session and file order. It starts at
//! the backup's GTID position and, file after file, at the position the scratch server
//! has reached (its own binlog records every replayed transaction
//! under its original GTID), so a transaction archived twice (once from the old primary,
//! once from the new one after a failover) is applied once. Plaintext exists only in the
//! caller's private work directory, and each binlog file only while it is replayed.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::store::{BackupManifest, Store, Timeline};
use crate::tools::{self, BACKUP_PACKAGE, CLIENT_PACKAGE, SERVER_PACKAGE};
use crate::Error;

/// What to restore to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Point {
    /// Everything archived.
    Latest,
    /// The state at this instant (unix seconds): transactions that started before it.
    Time(i64),
    /// The state right after this GTID (`domain-server-seq`, or a list).
    Gtid(String),
    /// The backup itself, no binlog (what `verify` checks).
    Backup(String),
}

/// A GTID list as domain → (server, seq).
pub fn parse_gtids(list: &str) -> Result<BTreeMap<u32, (u32, u64)>, Error> {
    let mut out = BTreeMap::new();
    for g in list.split(',').map(str::trim).filter(|g| !g.is_empty()) {
        let mut it = g.split('-');
        let parsed = (|| {
            let d = it.next()?.parse().ok()?;
            let s = it.next()?.parse().ok()?;
            let n = it.next()?.parse().ok()?;
            it.next().is_none().then_some((d, s, n))
        })();
        let (d, s, n) = parsed.ok_or_else(|| {
            Error::Invalid(format!(
                "{g:?} is not a GTID (domain-server-sequence, for example 0-1-42)"
            ))
        })?;
        out.insert(d, (s, n));
    }
    Ok(out)
}

/// Whether every domain of `a` is at or before `b`'s position in it.
pub fn gtid_le(a: &str, b: &str) -> Result<bool, Error> {
    let (a, b) = (parse_gtids(a)?, parse_gtids(b)?);
    Ok(a.iter()
        .all(|(d, (_, n))| b.get(d).is_some_and(|(_, m)| n <= m)))
}

/// A scratch server holding a restore; stopped when dropped.
#[derive(Debug)]
pub struct Scratch {
    child: Option<Child>,
    pub socket: PathBuf,
    pub datadir: PathBuf,
    log: PathBuf,
}

impl Scratch {
    /// Runs `sql` as the OS user over the socket; the batch output, tab-separated.
    pub fn sql(&self, sql: &str) -> Result<String, Error> {
        mariadb_sql(&self.socket, sql, &self.log)
    }

    /// Stops the server (SIGTERM, then SIGKILL after 30 s).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    return;
                }
                tools::pause(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.stop();
    }
}

fn mariadb_sql(socket: &Path, sql: &str, log: &Path) -> Result<String, Error> {
    let program = tools::program("mariadb", CLIENT_PACKAGE)?;
    let mut child = Command::new(&program)
        .arg("--no-defaults")
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--user={}", tools::user_name()))
        .args(["--batch", "--skip-column-names"])
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
        return Err(tools::failed("mariadb", "query", out.status, log));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    /// The backups applied, full first.
    pub chain: Vec<String>,
    /// The backup's GTID, and where the replay left the server.
    pub backup_gtid: String,
    pub gtid: String,
    /// Binlog files replayed.
    pub binlog_files: usize,
    /// Every table outside the system schemas with its row count.
    pub tables: Vec<(String, u64)>,
    /// Time spent unsealing and preparing, and replaying.
    pub prepare_secs: f64,
    pub replay_secs: f64,
    pub scratch: Scratch,
}

/// The restarts of the history (`restore --in-place`) in effect at `point`: those
/// started at or before it, in order.
pub fn effective<'a>(timelines: &'a [Timeline], point: &Point) -> Result<Vec<&'a Timeline>, Error> {
    let mut v = Vec::new();
    for t in timelines {
        let applies = match point {
            Point::Latest => true,
            Point::Time(p) => t.at <= *p,
            Point::Gtid(g) => gtid_le(&t.gtid, g)?,
            Point::Backup(_) => false,
        };
        if !applies {
            break;
        }
        v.push(t);
    }
    Ok(v)
}

/// Per domain, the lower of two GTID positions (a domain in only one stays as is).
fn gtid_min(a: &str, b: &str) -> Result<String, Error> {
    let (mut a, b) = (parse_gtids(a)?, parse_gtids(b)?);
    for (d, (s, n)) in b {
        let e = a.entry(d).or_insert((s, n));
        if n < e.1 {
            *e = (s, n);
        }
    }
    Ok(crate::binlog::render(&a))
}

/// The backup a restore to `point` starts from: the newest one wholly before it that
/// belongs to the history in effect there (`timelines`, from [`effective`]): one taken
/// before a restart counts only if it is not past that restart's position.
pub fn choose(
    backups: &[BackupManifest],
    point: &Point,
    timelines: &[&Timeline],
) -> Result<BackupManifest, Error> {
    let mut ok = Vec::new();
    for m in backups {
        let mut fits = match point {
            Point::Latest => true,
            Point::Time(t) => m.finished <= *t,
            Point::Gtid(g) => gtid_le(&m.gtid, g)?,
            Point::Backup(id) => &m.id == id,
        };
        for t in timelines.iter().filter(|t| t.at > m.started) {
            fits = fits && gtid_le(&m.gtid, &t.gtid)?;
        }
        if fits {
            ok.push(m);
        }
    }
    ok.into_iter()
        .max_by_key(|m| m.finished)
        .cloned()
        .ok_or_else(|| {
            Error::Invalid(match point {
                Point::Backup(id) => format!("backup {id}: not in the store"),
                _ => format!(
                    "no backup in the store was finished before {}; the restore window starts at the oldest backup",
                    describe(point)
                ),
            })
        })
}

/// `Point` as a sentence's object.
pub fn describe(point: &Point) -> String {
    match point {
        Point::Latest => "the latest archived transaction".into(),
        Point::Time(t) => utc(*t),
        Point::Gtid(g) => format!("GTID {g}"),
        Point::Backup(id) => format!("backup {id}"),
    }
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, as `mariadb-binlog --stop-datetime` reads it with TZ=UTC.
pub fn utc(unix: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Restores `point` from the store into a scratch server under `workdir` (created 0700;
/// it must be new or empty, and short enough for a unix socket path).
pub fn restore(store: &Store, point: &Point, workdir: &Path) -> Result<Restored, Error> {
    let t0 = Instant::now();
    let backup = tools::program("mariadb-backup", BACKUP_PACKAGE)?;
    let mbstream = tools::program("mbstream", BACKUP_PACKAGE)?;
    let mariadbd = tools::program("mariadbd", SERVER_PACKAGE)?;
    let setpriv = tools::program("setpriv", "util-linux")?;
    let binlog = tools::program("mariadb-binlog", CLIENT_PACKAGE)?;
    let socket = workdir.join("m.sock");
    if socket.as_os_str().len() > 100 {
        return Err(Error::Invalid(format!(
            "{}: too long for a unix socket path; restore into a shorter directory",
            workdir.display()
        )));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(workdir)
        .map_err(|e| Error::io("create directory", workdir, e))?;
    if std::fs::read_dir(workdir)
        .map_err(|e| Error::io("list", workdir, e))?
        .next()
        .is_some()
    {
        return Err(Error::Invalid(format!(
            "{}: not empty; a restore goes into a new directory",
            workdir.display()
        )));
    }
    let log = workdir.join("restore.log");
    let timelines = store.timelines()?;
    let in_effect = effective(&timelines, point)?;
    let chosen = choose(&store.backups()?, point, &in_effect)?;
    let chain = store.chain(&chosen.id)?;

    // Unseal each backup into its own directory through mbstream.
    for m in &chain {
        let dir = workdir.join(&m.id);
        std::fs::create_dir(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        let mut child = Command::new(&mbstream)
            .arg("-x")
            .arg("-C")
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::from(tools::log_file(&log)?))
            .spawn()
            .map_err(|e| Error::io("run", &mbstream, e))?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| Error::Invalid("mbstream: no stdin".into()))?;
        let unsealed = store.unseal_into(
            &store.backup_dir(&m.id).join("data.seal"),
            Some(&m.data),
            &mut stdin,
        );
        drop(stdin);
        let extracted = tools::wait(child, "mbstream", "-x", &log);
        unsealed?;
        extracted?;
    }
    let full = workdir.join(&chain[0].id);
    let prepare = |extra: Option<&Path>| -> Result<(), Error> {
        let mut cmd = Command::new(&backup);
        cmd.arg("--prepare")
            .arg(format!("--target-dir={}", full.display()));
        if let Some(inc) = extra {
            cmd.arg(format!("--incremental-dir={}", inc.display()));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(tools::log_file(&log)?))
            .stderr(Stdio::from(tools::log_file(&log)?));
        let child = tools::spawn(&mut cmd, "run mariadb-backup --prepare")?;
        tools::wait(child, "mariadb-backup", "--prepare", &log)
    };
    prepare(None)?;
    for m in &chain[1..] {
        prepare(Some(&workdir.join(&m.id)))?;
    }
    let prepare_secs = t0.elapsed().as_secs_f64();

    // The scratch server: no network, its own binlog to record what the replay applied.
    // Started through `setpriv --pdeathsig KILL` from this thread, which runs the whole
    // restore: when the service dies mid-restore (a SIGKILL, a stop past its grace) the
    // scratch server dies with it instead of outliving it, as the CI runs showed it did.
    let t1 = Instant::now();
    let child = Command::new(&setpriv)
        .args(["--pdeathsig", "KILL", "--"])
        .arg(&mariadbd)
        .arg("--no-defaults")
        .arg(format!("--datadir={}", full.display()))
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--pid-file={}", workdir.join("m.pid").display()))
        .arg(format!(
            "--log-error={}",
            workdir.join("mariadbd.log").display()
        ))
        .arg(format!(
            "--log-bin={}",
            workdir.join("restore-bin").display()
        ))
        .arg(format!("--tmpdir={}", workdir.display()))
        .arg(format!("--user={}", tools::user_name()))
        .args([
            "--skip-networking",
            "--server-id=4000000000",
            "--binlog-format=ROW",
            "--innodb-buffer-pool-size=64M",
            "--skip-slave-start",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::io("run", &mariadbd, e))?;
    let mut scratch = Scratch {
        child: Some(child),
        socket: socket.clone(),
        datadir: full.clone(),
        log: log.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if scratch.sql("SELECT 1").is_ok() {
            break;
        }
        let exited = scratch
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
        if exited || Instant::now() > deadline {
            return Err(Error::Program {
                program: "mariadbd".into(),
                what: "start on the restored data",
                status: if exited {
                    "exited".into()
                } else {
                    "timed out".into()
                },
                tail: tools::tail(&workdir.join("mariadbd.log"), 8),
            });
        }
        tools::pause(Duration::from_millis(200));
    }
    let backup_gtid = chosen.gtid.clone();
    scratch.sql(&format!(
        "RESET MASTER; SET GLOBAL gtid_binlog_state = '{}';",
        sql_gtid(&backup_gtid)?
    ))?;

    // Replay the archived binlog after the backup, server by server in the order they
    // were archived, each file from the position reached.
    let mut files = 0;
    if !matches!(point, Point::Backup(_)) {
        let mut all = store.binlogs_in_order()?;
        all.retain(|b| b.sealed >= chosen.started);
        // Sessions after a restart not in effect belong to a later history.
        if let Some(next) = timelines.get(in_effect.len()) {
            all.retain(|b| b.session <= next.after_session);
        }
        let plain_dir = workdir.join("binlog");
        std::fs::create_dir(&plain_dir)
            .map_err(|e| Error::io("create directory", &plain_dir, e))?;
        for b in &all {
            let reached = scratch
                .sql("SELECT @@GLOBAL.gtid_binlog_pos")?
                .trim()
                .to_owned();
            if let Point::Gtid(g) = point {
                if gtid_le(g, &reached)? {
                    break;
                }
            }
            let plain = plain_dir.join(b.name());
            {
                let mut f =
                    std::fs::File::create(&plain).map_err(|e| Error::io("create", &plain, e))?;
                store.unseal_into(&store.binlog_path(b), Some(&b.data), &mut f)?;
            }
            let mut cmd = Command::new(&binlog);
            cmd.env("TZ", "UTC").arg("--no-defaults");
            if !reached.is_empty() {
                cmd.arg(format!("--start-position={reached}"));
            }
            // A file from before a restart in effect counts only up to its position.
            let mut cap: Option<String> = None;
            for t in in_effect.iter().filter(|t| b.session <= t.after_session) {
                cap = Some(match cap {
                    Some(c) => gtid_min(&c, &t.gtid)?,
                    None => t.gtid.clone(),
                });
            }
            if let Some(c) = &cap {
                if !reached.is_empty() && gtid_le(c, &reached)? {
                    // Already applied up to this file's limit.
                    let _ = std::fs::remove_file(&plain);
                    continue;
                }
            }
            match (point, cap) {
                (Point::Gtid(g), Some(c)) => {
                    cmd.arg(format!("--stop-position={}", gtid_min(g, &c)?));
                }
                (Point::Gtid(g), None) => {
                    cmd.arg(format!("--stop-position={g}"));
                }
                (_, Some(c)) => {
                    cmd.arg(format!("--stop-position={c}"));
                }
                (Point::Time(t), None) => {
                    cmd.arg(format!("--stop-datetime={}", utc(*t)));
                }
                (Point::Latest | Point::Backup(_), None) => {}
            }
            cmd.arg("--skip-gtid-strict-mode")
                .arg(&plain)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(tools::log_file(&log)?));
            let mut reader = tools::spawn(&mut cmd, "run mariadb-binlog")?;
            let out = reader
                .stdout
                .take()
                .ok_or_else(|| Error::Invalid("mariadb-binlog: no stdout".into()))?;
            let client = tools::program("mariadb", CLIENT_PACKAGE)?;
            let applier = Command::new(&client)
                .arg("--no-defaults")
                .arg(format!("--socket={}", socket.display()))
                .arg(format!("--user={}", tools::user_name()))
                .stdin(Stdio::from(out))
                .stdout(Stdio::from(tools::log_file(&log)?))
                .stderr(Stdio::from(tools::log_file(&log)?))
                .spawn()
                .map_err(|e| Error::io("run", &client, e))?;
            let applied = tools::wait(applier, "mariadb", "replaying the binlog", &log);
            let read = reader.wait().map_err(|e| Error::io("wait", &binlog, e))?;
            let _ = std::fs::remove_file(&plain);
            applied?;
            if !read.success() {
                return Err(tools::failed(
                    "mariadb-binlog",
                    "reading an archived file",
                    read,
                    &log,
                ));
            }
            files += 1;
        }
    }
    let gtid = scratch
        .sql("SELECT @@GLOBAL.gtid_binlog_pos")?
        .trim()
        .to_owned();
    let mut tables = Vec::new();
    let list = scratch.sql(
        "SELECT CONCAT(table_schema, '.', table_name) FROM information_schema.tables \
         WHERE table_type = 'BASE TABLE' AND table_schema NOT IN \
         ('mysql', 'sys', 'performance_schema', 'information_schema') ORDER BY 1",
    )?;
    for t in list.lines().filter(|l| !l.is_empty()) {
        let quoted: Vec<String> = t
            .split('.')
            .map(|p| format!("`{}`", p.replace('`', "``")))
            .collect();
        let n = scratch.sql(&format!("SELECT COUNT(*) FROM {}", quoted.join(".")))?;
        tables.push((t.to_owned(), n.trim().parse().unwrap_or(0)));
    }
    Ok(Restored {
        chain: chain.iter().map(|m| m.id.clone()).collect(),
        backup_gtid,
        gtid,
        binlog_files: files,
        tables,
        prepare_secs,
        replay_secs: t1.elapsed().as_secs_f64(),
        scratch,
    })
}

/// A GTID list checked to hold only digits, dashes and commas (it goes into SQL).
fn sql_gtid(list: &str) -> Result<String, Error> {
    parse_gtids(list)?;
    Ok(list.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_order() {
        assert!(gtid_le("0-1-5", "0-1-5").unwrap());
        assert!(gtid_le("0-1-5", "0-2-6").unwrap());
        assert!(!gtid_le("0-1-7", "0-2-6").unwrap());
        assert!(gtid_le("", "0-1-1").unwrap());
        assert!(!gtid_le("1-1-1", "0-1-9").unwrap());
        assert!(gtid_le("0-1-5,1-3-2", "1-3-4,0-1-9").unwrap());
        let err = gtid_le("0-1-x", "0-1-1").unwrap_err().to_string();
        assert!(err.contains("domain-server-sequence"), "{err}");
        assert!(sql_gtid("0-1-5'; DROP TABLE x; --").is_err());
    }

    /// After a restart of the history at 0-1-50 (at t=1000, after session 7): points
    /// from 1000 on see it, earlier ones do not; a backup taken before the restart
    /// counts after it only if it is not past 0-1-50; domains take the lower position.
    #[test]
    fn timelines_choose_backups_and_cap_old_files() {
        let tl = |at, gtid: &str, after_session| Timeline {
            at,
            gtid: gtid.into(),
            after_session,
        };
        let timelines = [tl(1000, "0-1-50", 7), tl(2000, "0-2-80", 12)];
        let names = |v: Vec<&Timeline>| v.iter().map(|t| t.at).collect::<Vec<_>>();
        assert_eq!(
            names(effective(&timelines, &Point::Time(999)).unwrap()),
            [0i64; 0]
        );
        assert_eq!(
            names(effective(&timelines, &Point::Time(1000)).unwrap()),
            [1000]
        );
        assert_eq!(
            names(effective(&timelines, &Point::Latest).unwrap()),
            [1000, 2000]
        );
        assert_eq!(
            names(effective(&timelines, &Point::Gtid("0-2-60".into())).unwrap()),
            [1000]
        );
        let backup = |id: &str, started, gtid: &str| BackupManifest {
            id: id.into(),
            kind: crate::store::Kind::Full,
            base: None,
            source: "db2".into(),
            started,
            finished: started + 5,
            gtid: gtid.into(),
            from_lsn: 0,
            to_lsn: 0,
            data: crate::store::Object {
                bytes: 0,
                sha256: String::new(),
                plain_bytes: 0,
            },
        };
        // b: before the mistake; m: after it, before the restart; n: after the restart.
        let all = [
            backup("b", 500, "0-1-40"),
            backup("m", 900, "0-1-70"),
            backup("n", 1100, "0-2-55"),
        ];
        let pick = |p: Point| {
            let e = effective(&timelines, &p).unwrap();
            choose(&all, &p, &e).unwrap().id
        };
        assert_eq!(
            pick(Point::Time(950)),
            "m",
            "before the restart: the old history"
        );
        assert_eq!(
            pick(Point::Time(1050)),
            "b",
            "after it: not the mistake's backup"
        );
        assert_eq!(pick(Point::Time(1200)), "n");
        assert_eq!(gtid_min("0-1-70,1-3-4", "0-2-50").unwrap(), "0-2-50,1-3-4");
    }

    #[test]
    fn utc_times_for_mariadb_binlog() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_796_447_680), "2026-12-05 05:14:40");
    }
}

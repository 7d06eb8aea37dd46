//! Issue 16's proof in isolated mode: the site's own backup host, under steady writes
//! through the load balancer (`rampart-test-writer` in the client's namespace), with
//! about 100k rows in the application's table. One site for every check:
//!
//! 1. **Undoing a mistake.** A full and an incremental backup, more writes, a noted
//!    second, `DELETE FROM users` and more writes; `rampart restore --to <second>` (on the
//!    backup host) yields exactly the rows of that moment: every seeded row and every
//!    write acknowledged before it, nothing sent after it (a write in flight across the
//!    second may land either way). `restore --in-place --to <second>` then makes the
//!    site's data exactly that, and every later check runs on the restarted history.
//! 3. **Failover during archiving.** The primary's mariadbd is SIGKILLed under writes;
//!    the archive follows the new primary, and a restore to a time after the failover
//!    holds exactly the writes the live site holds: no gap. The archive's lag is sampled
//!    throughout.
//! 4. **Verify catches corruption.** `rampart backup verify` passes, then fails with one
//!    byte of the newest backup flipped.
//! 5. **Secrecy.** A known row's email is in the database host's data files (the
//!    search works) and nowhere under the backup host's directory.
//! 2. **Losing both database hosts.** Under writes, both servers and their keepers are
//!    SIGKILLed and their data directories deleted; a restore from the backup host holds
//!    every write acknowledged more than a few seconds before. The recovery point (the
//!    newest acknowledged write lost) and the restore time are printed. `restore
//!    --in-place` then rebuilds the pair: the site serves the restored rows, takes new
//!    writes, and archives them.
//!
//! Needs root and the packages `./run test` installs; skipped visibly elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_test_support::client::tool;

#[path = "common/site.rs"]
mod site;
use site::{now_ms, signal, Attempt, Site, Writers};

const RAMPART: &str = env!("CARGO_BIN_EXE_rampart");
/// Rows seeded into the application's table before the checks.
const SEED_ROWS: u64 = 100_000;

impl Site {
    fn backup_config(&self) -> PathBuf {
        self.state().join("hosts/backup/backup.toml")
    }

    /// `rampart ARGS` on the backup host (inside its namespace): (success, stdout,
    /// stderr, seconds).
    fn on_backup(&self, args: &[&str]) -> (bool, String, String, f64) {
        let t = Instant::now();
        let out = Command::new(RAMPART)
            .args(["exec", "--state"])
            .arg(self.state())
            .args(["backup", "--", RAMPART])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            t.elapsed().as_secs_f64(),
        )
    }

    /// The backup service's `/status`, asked on the backup host.
    fn backup_status(&self) -> serde_json::Value {
        let config = self.backup_config();
        let (ok, out, err, _) =
            self.on_backup(&["backup", "status", "--config", config.to_str().unwrap()]);
        assert!(ok, "backup status: {err}");
        serde_json::from_str(&out).unwrap()
    }

    /// `rampart restore` on the backup host into a new directory `name` of the state
    /// directory: (its output, seconds).
    fn restore(&self, name: &str, point: &[&str]) -> (PathBuf, String, f64) {
        let into = self.state().join(name);
        let config = self.backup_config();
        let mut args = vec!["restore", "--config", config.to_str().unwrap()];
        args.extend_from_slice(point);
        args.extend(["--into", into.to_str().unwrap()]);
        let (ok, out, err, secs) = self.on_backup(&args);
        assert!(ok, "rampart restore {point:?}: {out}\n{err}");
        (into, out, secs)
    }

    /// Waits until the archive holds everything up to unix second `t`.
    fn archived_past(&self, t: i64) {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let st = self.backup_status();
            if st["restore_window"]["to"].as_i64() >= Some(t) {
                return;
            }
            assert!(
                Instant::now() < end,
                "the archive never reached {t}: {st:#}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// A restored data directory served by a scratch mariadbd on a private socket (no
/// network), for reading; stopped when dropped.
struct Inspect {
    child: Child,
    socket: PathBuf,
}

impl Inspect {
    /// The data directory `rampart restore` reported in `output`.
    fn start(output: &str) -> Inspect {
        let datadir = output
            .lines()
            .find_map(|l| l.strip_prefix("the data directory is "))
            .and_then(|l| l.split(';').next())
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("no data directory in {output}"));
        let dir = datadir.parent().unwrap().to_owned();
        let socket = dir.join("i.sock");
        let child = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", dir.join("i.pid").display()))
            .arg(format!("--log-error={}", dir.join("i.err").display()))
            .args([
                "--skip-networking",
                "--skip-grant-tables",
                "--user=root",
                "--skip-log-bin",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let i = Inspect { child, socket };
        let end = Instant::now() + Duration::from_secs(60);
        while i.try_sql("SELECT 1").is_none() {
            assert!(
                Instant::now() < end,
                "the restored server never answered: {}",
                std::fs::read_to_string(dir.join("i.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        i
    }

    fn try_sql(&self, sql: &str) -> Option<String> {
        let out = Command::new("mariadb")
            .args(["--no-defaults", "-N", "-B", "--connect-timeout=2"])
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-e", sql])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn names(&self) -> BTreeSet<String> {
        self.try_sql("SELECT name FROM foobar.users")
            .expect("read the restored users")
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Inspect {
    fn drop(&mut self) {
        signal(self.child.id(), "TERM");
        let end = Instant::now() + Duration::from_secs(60);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The names of the users on `host`'s server, read over its socket.
fn live_names(site: &Site, host: &str, filter: &str) -> BTreeSet<String> {
    let out = Command::new("mariadb")
        .args(["--no-defaults", "-N", "-B"])
        .arg(format!("--socket={}", site.socket(host).display()))
        .args([
            "-e",
            &format!("SELECT name FROM foobar.users WHERE {filter}"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "read {host}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Sleeps until the next whole second; returns it (unix seconds).
fn next_second() -> i64 {
    let ms = now_ms();
    let next = ms / 1000 + 1;
    std::thread::sleep(Duration::from_millis(
        u64::try_from(next * 1000 - ms).unwrap(),
    ));
    i64::try_from(next).unwrap()
}

/// Samples the archive's lag on the backup host twice a second: the service's own
/// `lag_seconds` (how long the archive has not held all the primary had) and how old
/// its newest archived event is while writes flow.
struct LagSampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<(i64, i64)>>>,
}

impl LagSampler {
    fn start(site: &Arc<Site>) -> LagSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(site), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut v = Vec::new();
            let end = Instant::now() + Duration::from_secs(300);
            while !st.load(Ordering::Relaxed) && Instant::now() < end {
                let b = s.backup_status();
                let now = i64::try_from(now_ms() / 1000).unwrap();
                let lag = b["archive"]["lag_seconds"].as_i64().unwrap_or(-1);
                let age = b["archive"]["newest"].as_i64().map_or(-1, |n| now - n);
                v.push((lag, age));
                std::thread::sleep(Duration::from_millis(500));
            }
            v
        });
        LagSampler {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<(i64, i64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for LagSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn ok_ids<'a>(attempts: &'a [Attempt], pred: impl Fn(&Attempt) -> bool + 'a) -> Vec<&'a str> {
    attempts
        .iter()
        .filter(|a| a.outcome == "ok" && pred(a))
        .map(|a| a.id.as_str())
        .collect()
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let out = Command::new("grep")
        .args(["-r", "-l", "-a", "-F", needle])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn backups_undo_mistakes_follow_failovers_and_survive_losing_both_databases() {
    if !rampart_test_support::require_root("isolated mode (network namespaces)") {
        return;
    }
    for t in [
        "nft",
        "etcd",
        "mariadb",
        "mariadbd",
        "mariadb-backup",
        "mariadb-binlog",
    ] {
        if tool(t, None).is_none() {
            return;
        }
    }
    let site = Arc::new(Site {
        state: tempfile::Builder::new().prefix("rb").tempdir().unwrap(),
        prefix: format!("bk{}", std::process::id() % 100_000),
    });
    site.up(&[]);
    site.db1_leads();

    // About 100k rows, then the first scheduled backup has happened (the service takes
    // a full backup at its start) and verify ran once.
    let t = Instant::now();
    site.sql(
        "db1",
        &format!(
            "INSERT INTO foobar.users (name, email, created_at) SELECT CONCAT('seed-', seq), \
             CONCAT('seed-', seq, '@seed.test'), NOW(6) FROM foobar.seq_1_to_{SEED_ROWS}"
        ),
        Duration::from_secs(120),
    )
    .expect("seed the users");
    println!(
        "seeded {SEED_ROWS} rows in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let config = site.backup_config();
    let config = config.to_str().unwrap();

    // 1. Undoing a mistake, under steady writes.
    let writers = Writers::start(&site, "mis", 40);
    std::thread::sleep(Duration::from_secs(3));
    let (ok, out, err, full_secs) = site.on_backup(&["backup", "now", "--config", config]);
    assert!(ok, "backup now: {out}{err}");
    let full: serde_json::Value = serde_json::from_str(&out).unwrap();
    let (ok, out, err, incr_secs) =
        site.on_backup(&["backup", "now", "--incremental", "--config", config]);
    assert!(ok, "backup now --incremental: {out}{err}");
    let incr: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(incr["kind"], "incremental", "{incr}");
    println!(
        "full backup of ~{SEED_ROWS} rows from {}: {:.1} s, {} bytes sealed; incremental: {:.1} s, {} bytes",
        full["source"], full_secs, full["data"]["bytes"], incr_secs, incr["data"]["bytes"]
    );
    std::thread::sleep(Duration::from_secs(2));
    let noted = next_second();
    let noted_ms = u128::try_from(noted).unwrap() * 1000;
    std::thread::sleep(Duration::from_secs(3));
    let deleted_at = now_ms();
    let deleted = site
        .sql(
            "db1",
            "DELETE FROM foobar.users; SELECT ROW_COUNT()",
            Duration::from_secs(120),
        )
        .expect("the mistake");
    println!("DELETE FROM users removed {deleted} rows");
    let mistake = writers.finish();
    assert!(
        live_names(&site, "db1", "name LIKE 'seed-%'").is_empty(),
        "the mistake did not happen"
    );
    site.archived_past(noted + 1);
    let (_, out, restore_secs) = site.restore("ra", &["--to", &noted.to_string()]);
    println!("restore --to {noted} in {restore_secs:.1} s:\n{out}");
    let restored = Inspect::start(&out).names();
    let seeds = restored.iter().filter(|n| n.starts_with("seed-")).count();
    assert_eq!(seeds as u64, SEED_ROWS, "seeded rows restored");
    let before = ok_ids(&mistake, |a| a.end_ms < noted_ms);
    let missing: Vec<&&str> = before
        .iter()
        .filter(|id| !restored.contains(**id))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the noted time, not restored: {missing:?}"
    );
    let may: BTreeSet<&str> = mistake
        .iter()
        .filter(|a| a.start_ms < noted_ms)
        .map(|a| a.id.as_str())
        .collect();
    let extra: Vec<&String> = restored
        .iter()
        .filter(|n| !n.starts_with("seed-") && !may.contains(n.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "restored writes sent after the noted time: {extra:?}"
    );
    let after = ok_ids(&mistake, |a| a.start_ms >= noted_ms);
    assert!(
        after.len() >= 20 && deleted_at > noted_ms,
        "too few writes after the noted time to tell: {}",
        after.len()
    );
    println!(
        "undo: {} rows restored ({} seeded, {} acknowledged writes before {noted}); {} later writes and the DELETE absent",
        restored.len(),
        seeds,
        before.len(),
        after.len()
    );
    // The same point in place: the site's own data becomes exactly that restore.
    let t = Instant::now();
    let out = site.ok(&["restore", "--in-place", "--yes", "--to", &noted.to_string()]);
    println!(
        "restore --in-place --to {noted} in {:.1} s:\n{out}",
        t.elapsed().as_secs_f64()
    );
    site.db1_leads();
    assert_eq!(
        live_names(&site, "db1", "1=1"),
        restored,
        "the site after the restore in place to {noted}"
    );

    // 3. A failover while the archive runs: SIGKILL of the primary's mariadbd.
    let lag = LagSampler::start(&site);
    let writers = Writers::start(&site, "fo", 30);
    std::thread::sleep(Duration::from_secs(8));
    let pid = site.databases()["db1"]["server_pid"].as_u64().unwrap() as u32;
    let killed_at = now_ms();
    signal(pid, "KILL");
    let failover = writers.finish();
    let lags = lag.finish();
    let (leader, _) = site.steady(Duration::from_secs(120));
    assert_eq!(leader, "db2", "db2 took over");
    let after_failover = next_second() + 1;
    std::thread::sleep(Duration::from_secs(1));
    site.archived_past(after_failover);
    let st = site.backup_status();
    assert_eq!(
        st["archive"]["server"], "db2",
        "the archive follows: {st:#}"
    );
    let (_, out, secs) = site.restore("rb", &["--to", &after_failover.to_string()]);
    println!("restore --to {after_failover} (after the failover) in {secs:.1} s:\n{out}");
    let restored: BTreeSet<String> = Inspect::start(&out)
        .names()
        .into_iter()
        .filter(|n| n.starts_with("fo-"))
        .collect();
    let live = live_names(&site, "db2", "name LIKE 'fo-%'");
    assert_eq!(
        restored, live,
        "the restore after the failover differs from the live site"
    );
    let acked = ok_ids(&failover, |_| true);
    let lost: Vec<&&str> = acked.iter().filter(|id| !restored.contains(**id)).collect();
    assert!(lost.is_empty(), "acknowledged but not restored: {lost:?}");
    let across = ok_ids(&failover, |a| a.start_ms > killed_at).len();
    assert!(across > 0, "no write acknowledged after the failover");
    let max_lag = lags.iter().map(|l| l.0).max().unwrap_or(-1);
    let mut ages: Vec<i64> = lags.iter().map(|l| l.1).collect();
    ages.sort_unstable();
    println!(
        "failover: {} writes acknowledged ({} after the kill), all restored, equal to the live site; \
         archive lag over {} samples: lag_seconds max {max_lag}, newest event age median {} s, max {} s",
        acked.len(),
        across,
        lags.len(),
        ages.get(ages.len() / 2).copied().unwrap_or(-1),
        ages.last().copied().unwrap_or(-1)
    );

    // 4. Verify passes, and fails with one byte of the newest backup flipped.
    let (ok, out, err, secs) = site.on_backup(&["backup", "verify", "--config", config]);
    assert!(ok, "verify of a good backup failed: {out}{err}");
    println!("verify: {} ({secs:.1} s)", out.trim());
    let newest = st["backups"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|b| b["finished"].as_i64())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let seal = site
        .state()
        .join("hosts/backup/store/backups")
        .join(&newest)
        .join("data.seal");
    let good = std::fs::read(&seal).unwrap();
    let mut bad = good.clone();
    let i = bad.len() / 2;
    bad[i] ^= 0x01;
    std::fs::write(&seal, &bad).unwrap();
    let (ok, out, err, _) = site.on_backup(&["backup", "verify", "--config", config]);
    std::fs::write(&seal, &good).unwrap();
    assert!(!ok, "verify passed with a flipped byte in {newest}: {out}");
    println!(
        "verify with one byte flipped in {newest}: failed: {}",
        err.trim()
    );
    // `rampart status` shows the latest backup, the restore window and that failure.
    let status = site.ok(&["status"]);
    for needle in [
        format!("backup (backup): latest incremental backup {newest} at "),
        "restore window: 20".to_owned(),
        "(binlog archive from db2, lag ".to_owned(),
        "verify: FAILED at ".to_owned(),
    ] {
        assert!(status.contains(&needle), "`{needle}` not in\n{status}");
    }

    // 5. Secrecy: the search finds a known row in the database's files, and nothing
    // under the backup host's directory.
    let known = acked.first().map(|id| format!("{id}@jepsen.test")).unwrap();
    let backup_dir = site.state().join("hosts/backup");
    let on_db = files_containing(&site.state().join("hosts/db2/data"), &known);
    assert!(
        !on_db.is_empty(),
        "{known} not found on db2: the search is broken"
    );
    for needle in [known.as_str(), "seed-77777@seed.test"] {
        let found = files_containing(&backup_dir, needle);
        assert!(
            found.is_empty(),
            "{needle} in plaintext on the backup host: {found:?}"
        );
    }
    println!(
        "secrecy: {known} is in {} of db2's files and none of the backup host's",
        on_db.len()
    );

    // 2. Losing both database hosts under writes.
    let writers = Writers::start(&site, "dis", 25);
    std::thread::sleep(Duration::from_secs(10));
    let dbs = site.databases();
    let servers: Vec<u32> = ["db1", "db2"]
        .iter()
        .filter_map(|h| dbs[*h]["server_pid"].as_u64())
        .map(|p| p as u32)
        .collect();
    let keepers = [site.pid("db1", "mariadb"), site.pid("db2", "mariadb")];
    let disaster = now_ms();
    for pid in keepers.iter().chain(&servers) {
        signal(*pid, "KILL");
    }
    for h in ["db1", "db2"] {
        let data = site.state().join("hosts").join(h).join("data");
        std::fs::remove_dir_all(&data).unwrap();
    }
    let disaster_writes = writers.finish();
    std::thread::sleep(Duration::from_secs(3));
    let (_, out, secs) = site.restore("rc", &[]);
    println!("restore of everything archived after losing both databases in {secs:.1} s:\n{out}");
    let restored = Inspect::start(&out).names();
    let acked = ok_ids(&disaster_writes, |_| true);
    let lost: Vec<&Attempt> = disaster_writes
        .iter()
        .filter(|a| a.outcome == "ok" && !restored.contains(&a.id))
        .collect();
    let few_seconds = 5_000;
    let old_lost: Vec<&&Attempt> = lost
        .iter()
        .filter(|a| a.end_ms + few_seconds < disaster)
        .collect();
    assert!(
        old_lost.is_empty(),
        "acknowledged more than 5 s before the disaster and lost: {old_lost:?}"
    );
    assert!(acked.len() >= 100, "too few writes: {}", acked.len());
    let all_fo = ok_ids(&failover, |_| true);
    assert!(all_fo.iter().all(|id| restored.contains(*id)));
    match lost.iter().map(|a| a.end_ms).max() {
        Some(newest) => println!(
            "recovery point: {} of {} acknowledged writes lost, the newest acknowledged {} ms before the disaster",
            lost.len(),
            acked.len(),
            disaster.saturating_sub(newest)
        ),
        None => println!(
            "recovery point: none of {} acknowledged writes lost (0 s)",
            acked.len()
        ),
    }
    println!("restore time after losing both database hosts: {secs:.1} s");

    // ...and the site's database pair rebuilt from it in place: refused without the
    // confirmation and with a malformed point, then done.
    let refused = site.run(&["restore", "--in-place"]);
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("not confirmed"),
        "{refused:?}"
    );
    let bad = site.run(&["restore", "--in-place", "--yes", "--to-gtid", "0-1-x"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    let t = Instant::now();
    let out = site.ok(&["restore", "--in-place", "--yes"]);
    let in_place = t.elapsed().as_secs_f64();
    println!("restore --in-place in {in_place:.1} s:\n{out}");
    let (leader, _) = site.steady(Duration::from_secs(120));
    let live = live_names(&site, &leader, "name LIKE 'dis-%' OR name LIKE 'fo-%'");
    let expected: BTreeSet<String> = restored
        .iter()
        .filter(|n| n.starts_with("dis-") || n.starts_with("fo-"))
        .cloned()
        .collect();
    assert_eq!(live, expected, "the site after the restore in place");
    let writers = Writers::start(&site, "back", 5);
    let back = writers.finish();
    let acked = ok_ids(&back, |_| true);
    let live = live_names(&site, &leader, "name LIKE 'back-%'");
    assert!(
        !acked.is_empty() && acked.iter().all(|id| live.contains(*id)),
        "writes after the restore in place: {} acknowledged, {} present",
        acked.len(),
        live.len()
    );
    // The archive resumes from the new primary, with the writes after the restore.
    site.archived_past(next_second());
    assert_eq!(site.backup_status()["archive"]["server"], leader.as_str());
    println!(
        "in place: {leader} leads with the {} restored rows of the writers; {} new writes acknowledged and present",
        live_names(&site, &leader, "name LIKE 'dis-%' OR name LIKE 'fo-%'").len(),
        acked.len()
    );
}

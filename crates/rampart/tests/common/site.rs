//! An isolated site of a test's own and the writers that load it, shared by the tests
//! that bring one up under writes (`failover.rs`, `backup_site.rs`).
#![allow(dead_code, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const RAMPART: &str = env!("CARGO_BIN_EXE_rampart");

pub fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// An isolated site of its own; dropping it runs `rampart down --purge`.
pub struct Site {
    pub state: tempfile::TempDir,
    pub prefix: String,
}

impl Site {
    pub fn state(&self) -> &Path {
        self.state.path()
    }

    pub fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(RAMPART)
            .args(args)
            .arg("--state")
            .arg(self.state())
            .env("RAMPART_LOG", "warn")
            .output()
            .unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "rampart {args:?}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn up(&self, extra: &[&str]) {
        let mut args = vec![
            "up",
            "-d",
            "--prefix",
            &self.prefix,
            "--publish",
            "0",
            "--publish-dashboard",
            "0",
            "--failover-quiet-period",
            "1s",
        ];
        args.extend_from_slice(extra);
        self.ok(&args);
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).unwrap()
    }

    /// Each database host's keeper view, by host.
    pub fn databases(&self) -> BTreeMap<String, serde_json::Value> {
        let st = self.status();
        st["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["name"] == "db1" || h["name"] == "db2")
            .map(|h| {
                (
                    h["name"].as_str().unwrap().to_owned(),
                    h["database"].clone(),
                )
            })
            .collect()
    }

    /// The pid of `service` on `host`.
    pub fn pid(&self, host: &str, service: &str) -> u32 {
        let st = self.status();
        let h = st["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == host)
            .unwrap()
            .clone();
        let s = h["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == service)
            .unwrap()
            .clone();
        u32::try_from(
            s["pid"]
                .as_u64()
                .unwrap_or_else(|| panic!("{host}/{service} not running")),
        )
        .unwrap()
    }

    /// The leader every keeper agrees on, writable, with a sync standby running
    /// semi-sync; within `limit`.
    pub fn steady(&self, limit: Duration) -> (String, i64) {
        let end = Instant::now() + limit;
        loop {
            let dbs = self.databases();
            let leader = dbs.iter().find(|(_, d)| d["role"] == "leader");
            if let Some((name, d)) = leader {
                let others_follow = dbs
                    .iter()
                    .filter(|(n, _)| *n != name)
                    .all(|(_, o)| o["role"] == "replica" && o["leader"] == d["leader"]);
                if d["read_only"] == false
                    && d["semi_sync_active"] == true
                    && d["semi_sync_clients"].as_u64() >= Some(1)
                    && !d["sync_standby"].is_null()
                    && others_follow
                {
                    return (name.clone(), d["epoch"].as_i64().unwrap());
                }
            }
            assert!(Instant::now() < end, "the site did not settle: {dbs:#?}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Settles, then makes db1 the primary again with a switchover if it is not.
    pub fn db1_leads(&self) {
        let (leader, _) = self.steady(Duration::from_secs(120));
        if leader != "db1" {
            let end = Instant::now() + Duration::from_secs(60);
            while self.databases()["db1"]["promotable"] != true {
                assert!(
                    Instant::now() < end,
                    "db1 never became promotable: {:#?}",
                    self.databases()
                );
                std::thread::sleep(Duration::from_millis(250));
            }
            self.ok(&["switchover", "--to", "db1"]);
            // The old leader's keeper shows its new role from its next tick on.
            let end = Instant::now() + Duration::from_secs(60);
            loop {
                let (leader, _) = self.steady(Duration::from_secs(60));
                if leader == "db1" {
                    break;
                }
                assert!(
                    Instant::now() < end,
                    "db1 does not lead after the switchover"
                );
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }

    pub fn socket(&self, host: &str) -> PathBuf {
        let dir = self.state().join("hosts").join(host);
        rampart_topology::plan::db_socket(&dir, 0)
    }

    /// `sql` as root over `host`'s socket, within `limit`: `None` when the server does
    /// not answer in time (stopped, killed, restarting).
    pub fn sql(&self, host: &str, sql: &str, limit: Duration) -> Option<String> {
        let mut child = Command::new("mariadb")
            .args(["--no-defaults", "-N", "-B", "--connect-timeout=1"])
            .arg(format!("--socket={}", self.socket(host).display()))
            .args(["-e", sql])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let end = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                if !status.success() {
                    return None;
                }
                let mut out = String::new();
                use std::io::Read;
                child.stdout.take()?.read_to_string(&mut out).ok()?;
                return Some(out.trim().to_owned());
            }
            if Instant::now() >= end {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let out = self.run(&["down", "--purge"]);
        if !out.status.success() {
            eprintln!("rampart down: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// One write attempt as the writer recorded it.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub id: String,
    pub outcome: String,
    pub status: u64,
    pub start_ms: u128,
    pub end_ms: u128,
}

/// The writers of one round, inside the client's namespace.
pub struct Writers {
    child: Child,
    out: PathBuf,
    seconds: u64,
}

impl Writers {
    pub fn start(site: &Site, tag: &str, seconds: u64) -> Writers {
        let out = site.state().join(format!("writes-{tag}.jsonl"));
        let ca = site.state().join("certs/ca.pem");
        let child = Command::new(RAMPART)
            .args(["exec", "--state"])
            .arg(site.state())
            .args(["client", "--"])
            .arg(rampart_test_support::writer_bin())
            .args(["--addr", "203.0.113.10:443", "--ca"])
            .arg(&ca)
            .args(["--writers", "4", "--rate", "10", "--max", "100000"])
            .args(["--seconds", &seconds.to_string(), "--tag", tag, "--out"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Writers {
            child,
            out,
            seconds,
        }
    }

    pub fn finish(mut self) -> Vec<Attempt> {
        let end = Instant::now() + Duration::from_secs(self.seconds + 60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "the writers failed: {status}");
                break;
            }
            assert!(Instant::now() < end, "the writers did not finish");
            std::thread::sleep(Duration::from_millis(100));
        }
        let text = std::fs::read_to_string(&self.out).unwrap();
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                Attempt {
                    id: v["id"].as_str().unwrap().to_owned(),
                    outcome: v["outcome"].as_str().unwrap().to_owned(),
                    status: v["status"].as_u64().unwrap(),
                    start_ms: u128::from(v["start_ms"].as_u64().unwrap()),
                    end_ms: u128::from(v["end_ms"].as_u64().unwrap()),
                }
            })
            .collect()
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        // Only when a round panics: the writers end by themselves otherwise.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

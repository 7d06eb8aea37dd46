//! The primary database fails over by itself and no acknowledged write is lost: a set
//! test in the style of Jepsen, in isolated mode, with real etcd, real MariaDB, real
//! nftables and the real binary.
//!
//! Four writers (`rampart-test-writer`, inside the client's namespace) insert unique
//! users through the load balancer and record every attempt as ok, fail or unknown. Each
//! fault has its round: (a) SIGKILL of the primary's mariadbd, (b) SIGSTOP of it for
//! three lease lengths, (c) a partition cutting the primary off from etcd and its
//! standby while the web servers still reach it, (d) SIGKILL of the primary's keeper,
//! (e) SIGKILL of one etcd member (no failover, no failed write), (f) both databases
//! stopped (nothing promoted, writes refused with 503). A planned switchover under load
//! fails no write. Between rounds the site heals and a switchover brings the primary
//! back to db1. A sampler asks both servers for `@@read_only` ten times a second: never
//! two writable at once. The final read finds every acknowledged write and nothing that
//! was never attempted. The negative control restores semi-sync's timeout fallback: the
//! same checker must then find lost writes in the partition round, and the old primary,
//! which took writes its standby never got, comes back diverged and is rebuilt
//! (`rampart db rebuild`) while the writers still write.
//!
//! Needs root and the packages `./run test` installs; skipped visibly elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rampart_test_support::client::tool;

#[path = "common/site.rs"]
mod site;
use site::{now_ms, signal, Attempt, Site, Writers};

/// The keepers' lease (keeper.rs `LEASE_TTL`).
const LEASE: Duration = Duration::from_secs(6);
/// How long the writers write in each round.
const ROUND: Duration = Duration::from_secs(30);
/// When the fault comes, after the writers start.
const BEFORE_FAULT: Duration = Duration::from_secs(5);

/// Samples both servers' `@@read_only` ten times a second; records every instant both
/// answered writable with overlapping query windows.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(usize, Vec<String>)>>,
}

impl Sampler {
    fn start(site: &Arc<Site>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(site), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut samples = 0;
            let mut both = Vec::new();
            while !st.load(Ordering::Relaxed) {
                let t = Instant::now();
                let reads: Vec<_> = ["db1", "db2"]
                    .map(|h| {
                        let s = Arc::clone(&s);
                        std::thread::spawn(move || {
                            let start = now_ms();
                            let ro = s.sql(h, "SELECT @@read_only", Duration::from_secs(1));
                            (ro, start, now_ms())
                        })
                    })
                    .into_iter()
                    .map(|j| j.join().unwrap())
                    .collect();
                samples += 1;
                let writable: Vec<_> = reads
                    .iter()
                    .filter(|(ro, _, _)| ro.as_deref() == Some("0"))
                    .collect();
                if let [a, b] = writable[..] {
                    if a.1 <= b.2 && b.1 <= a.2 {
                        both.push(format!("at {} ms: {reads:?}", a.1));
                    }
                }
                if let Some(rest) = Duration::from_millis(100).checked_sub(t.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
            (samples, both)
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What one round measured.
#[derive(Debug, Default)]
struct Round {
    name: String,
    ok: usize,
    failed: usize,
    unknown: usize,
    /// From the last acknowledged write before the fault to the first after it.
    outage: Option<Duration>,
    /// Statuses of the failed attempts, with counts.
    failures: BTreeMap<u64, usize>,
    epoch_before: i64,
    epoch_after: i64,
    leader_after: String,
    attempts: Vec<Attempt>,
}

impl std::fmt::Display for Round {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<34} ok {:>4}  failed {:>3}  unknown {:>2}  outage {:>8}  epoch {} -> {} ({})  failures {:?}",
            self.name,
            self.ok,
            self.failed,
            self.unknown,
            self.outage
                .map_or("-".to_owned(), |d| format!("{:.2} s", d.as_secs_f64())),
            self.epoch_before,
            self.epoch_after,
            self.leader_after,
            self.failures
        )
    }
}

/// Runs one round: writers for [`ROUND`], the fault after [`BEFORE_FAULT`], `heal`
/// once `fault` returns, then settles. `fault` returns when (Unix ms) it struck.
fn round(
    site: &Site,
    name: &str,
    fault: impl FnOnce(&Site) -> u128,
    heal: impl FnOnce(&Site),
) -> Round {
    let (_, epoch_before) = site.steady(Duration::from_secs(120));
    let tag: String = name
        .split_whitespace()
        .next()
        .unwrap()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let writers = Writers::start(site, &tag, ROUND.as_secs());
    std::thread::sleep(BEFORE_FAULT);
    let fault_ms = fault(site);
    heal(site);
    let attempts = writers.finish();
    let (leader_after, epoch_after) = site.steady(Duration::from_secs(120));
    let ok: Vec<&Attempt> = attempts.iter().filter(|a| a.outcome == "ok").collect();
    let last_before = ok.iter().map(|a| a.end_ms).filter(|t| *t <= fault_ms).max();
    // The first acknowledged write sent after the fault (one sent before it may still
    // be acknowledged by the old primary just after).
    let first_after = ok
        .iter()
        .filter(|a| a.start_ms > fault_ms)
        .map(|a| a.end_ms)
        .min();
    let outage = match (last_before, first_after) {
        (Some(a), Some(b)) => Some(Duration::from_millis(u64::try_from(b - a).unwrap())),
        _ => None,
    };
    let mut failures = BTreeMap::new();
    for a in attempts.iter().filter(|a| a.outcome == "fail") {
        *failures.entry(a.status).or_insert(0) += 1;
    }
    let r = Round {
        name: name.to_owned(),
        ok: attempts.iter().filter(|a| a.outcome == "ok").count(),
        failed: attempts.iter().filter(|a| a.outcome == "fail").count(),
        unknown: attempts.iter().filter(|a| a.outcome == "unknown").count(),
        outage,
        failures,
        epoch_before,
        epoch_after,
        leader_after,
        attempts,
    };
    println!("{r}");
    r
}

/// The users the final read finds, by id (`<tag>-w<writer>-<n>`), from the leader.
fn written(site: &Site) -> BTreeSet<String> {
    let (leader, _) = site.steady(Duration::from_secs(120));
    // Read to the end while it runs (the answer is larger than a pipe's buffer).
    let out = Command::new("mariadb")
        .args(["--no-defaults", "-N", "-B"])
        .arg(format!("--socket={}", site.socket(&leader).display()))
        .args([
            "-e",
            "SELECT name FROM foobar.users WHERE email LIKE '%@jepsen.test'",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "the final read: {out:?}");
    let out = String::from_utf8(out.stdout).unwrap();
    out.lines().map(str::to_owned).collect()
}

/// (lost, unexpected, failed-but-present) against the final read.
fn check(
    attempts: &[Attempt],
    present: &BTreeSet<String>,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let attempted: BTreeSet<&str> = attempts.iter().map(|a| a.id.as_str()).collect();
    let lost = attempts
        .iter()
        .filter(|a| a.outcome == "ok" && !present.contains(&a.id))
        .map(|a| a.id.clone())
        .collect();
    let unexpected = present
        .iter()
        .filter(|id| !attempted.contains(id.as_str()))
        .cloned()
        .collect();
    let failed_present = attempts
        .iter()
        .filter(|a| a.outcome == "fail" && present.contains(&a.id))
        .map(|a| a.id.clone())
        .collect();
    (lost, unexpected, failed_present)
}

/// nftables inside db1's namespace: drop everything between db1 and the etcd members and
/// db2, in both directions; the web servers still reach db1.
fn partition(site: &Site, on: bool) {
    let ns = format!("{}-db1", site.prefix);
    let rules = if on {
        let t = rampart_topology::Topology::default_for(rampart_topology::Mode::Isolated, 0);
        let mut peers: Vec<String> = t
            .etcd_members()
            .iter()
            .flat_map(|h| h.segments.iter().map(|(_, a)| a.to_string()))
            .collect();
        let db2 = t.host("db2").unwrap();
        peers.extend(db2.segments.iter().map(|(_, a)| a.to_string()));
        let set = peers.join(", ");
        format!(
            "table inet jepsen {{\n\
             \x20 chain in {{ type filter hook input priority -10; ip saddr {{ {set} }} drop; }}\n\
             \x20 chain out {{ type filter hook output priority -10; ip daddr {{ {set} }} drop; }}\n\
             }}\n"
        )
    } else {
        "delete table inet jepsen\n".to_owned()
    };
    let out = rampart_test_support::run_with_stdin(
        Command::new("ip").args(["netns", "exec", &ns, "nft", "-f", "-"]),
        &rules,
    );
    assert!(out.status.success(), "nft: {out:?}");
}

#[test]
fn failover_loses_no_acknowledged_write() {
    if !rampart_test_support::require_root("isolated mode (network namespaces)") {
        return;
    }
    for t in ["nft", "etcd", "mariadb"] {
        if tool(t, None).is_none() {
            return;
        }
    }
    let site = Arc::new(Site {
        state: tempfile::Builder::new().prefix("rf").tempdir().unwrap(),
        prefix: format!("fo{}", std::process::id() % 100_000),
    });
    site.up(&[]);
    site.db1_leads();
    let sampler = Sampler::start(&site);
    let mut rounds = Vec::new();

    // (a) SIGKILL of the primary's mariadbd.
    rounds.push(round(
        &site,
        "(a) kill -9 db1's mariadbd",
        |s| {
            let pid = s.databases()["db1"]["server_pid"].as_u64().unwrap() as u32;
            let at = now_ms();
            signal(pid, "KILL");
            at
        },
        |_| {},
    ));
    site.db1_leads();

    // (b) SIGSTOP of the primary's mariadbd for three lease lengths.
    rounds.push(round(
        &site,
        "(b) SIGSTOP db1's mariadbd 18 s",
        |s| {
            let pid = s.databases()["db1"]["server_pid"].as_u64().unwrap() as u32;
            let at = now_ms();
            signal(pid, "STOP");
            std::thread::sleep(LEASE * 3);
            signal(pid, "CONT");
            at
        },
        |_| {},
    ));
    site.db1_leads();

    // (c) A partition: db1 cut off from etcd and db2; the web servers still reach it.
    rounds.push(round(
        &site,
        "(c) partition db1 from etcd and db2",
        |s| {
            let at = now_ms();
            partition(s, true);
            std::thread::sleep(Duration::from_secs(15));
            at
        },
        |s| partition(s, false),
    ));
    site.db1_leads();

    // (d) SIGKILL of the primary's keeper (its server dies with it); restarted after.
    rounds.push(round(
        &site,
        "(d) kill -9 db1's keeper",
        |s| {
            let pid = s.pid("db1", "mariadb");
            let at = now_ms();
            signal(pid, "KILL");
            std::thread::sleep(Duration::from_secs(10));
            at
        },
        |s| {
            s.ok(&["start", "db1"]);
        },
    ));
    site.db1_leads();

    // (e) SIGKILL of one etcd member: no failover, no failed write.
    let e = round(
        &site,
        "(e) kill -9 the etcd member on dns",
        |s| {
            let pid = s.pid("dns", "etcd");
            let at = now_ms();
            signal(pid, "KILL");
            std::thread::sleep(Duration::from_secs(10));
            at
        },
        |s| {
            s.ok(&["start", "dns"]);
        },
    );
    assert_eq!(
        e.epoch_before, e.epoch_after,
        "no failover when one etcd member dies"
    );
    assert_eq!(
        (e.failed, e.unknown),
        (0, 0),
        "no failed write when one etcd member dies"
    );
    rounds.push(e);
    site.db1_leads();

    // (f) Both databases stopped: nothing is promoted, writes get 503.
    let during = Arc::new(Mutex::new(Vec::new()));
    let f = round(
        &site,
        "(f) stop db2 and db1",
        |s| {
            let at = now_ms();
            s.ok(&["stop", "db2"]);
            s.ok(&["stop", "db1"]);
            std::thread::sleep(Duration::from_secs(8));
            during.lock().unwrap().push(s.databases());
            at
        },
        |s| {
            s.ok(&["start", "db1"]);
            s.ok(&["start", "db2"]);
        },
    );
    for dbs in during.lock().unwrap().iter() {
        assert!(
            dbs.values().all(|d| d.is_null() || d["role"] != "leader"),
            "nothing is promoted while both are stopped: {dbs:#?}"
        );
    }
    assert!(
        f.failures.keys().all(|s| *s == 503),
        "writes without a database get 503: {:?}",
        f.failures
    );
    assert!(f.failed > 0, "writes were refused while both were down");
    rounds.push(f);
    site.db1_leads();

    // A planned switchover under steady writes fails none.
    let sw = round(
        &site,
        "switchover db1 -> db2 under load",
        |s| {
            let at = now_ms();
            s.ok(&["switchover", "--to", "db2"]);
            at
        },
        |_| {},
    );
    let longest_pause = sw
        .attempts
        .iter()
        .filter(|a| a.outcome == "ok")
        .map(|a| a.end_ms)
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .max()
        .unwrap_or(0);
    println!("switchover: longest gap between acknowledged writes {longest_pause} ms");
    assert_eq!(
        (sw.failed, sw.unknown),
        (0, 0),
        "a switchover fails no write"
    );
    assert_eq!(sw.leader_after, "db2");
    rounds.push(sw);
    site.db1_leads();

    let (samples, both) = sampler.finish();
    let present = written(&site);
    let all: Vec<Attempt> = rounds.iter().flat_map(|r| r.attempts.clone()).collect();
    let (lost, unexpected, failed_present) = check(&all, &present);
    let secs = rounds.len() as f64 * ROUND.as_secs_f64();
    let ok: usize = rounds.iter().map(|r| r.ok).sum();
    println!(
        "attempts {}, acknowledged {ok} ({:.1}/s over {secs:.0} s of rounds), present {}, \
         lost {}, unexpected {}, failed but present {}; {samples} read_only samples, {} with two writable",
        all.len(),
        ok as f64 / secs,
        present.len(),
        lost.len(),
        unexpected.len(),
        failed_present.len(),
        both.len()
    );
    for r in &rounds {
        println!("{r}");
    }
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(
        unexpected.is_empty(),
        "present but never attempted: {unexpected:?}"
    );
    assert!(
        failed_present.is_empty(),
        "refused but written: {failed_present:?}"
    );
    assert!(both.is_empty(), "two writable servers: {both:?}");
    for r in &rounds[..4] {
        assert!(
            r.epoch_after > r.epoch_before,
            "{}: a failover happened",
            r.name
        );
    }

    // Rejoin: each old primary came back as a replica by itself; once the site is
    // steady both servers have the same GTID position and the same table checksum.
    site.steady(Duration::from_secs(120));
    let end = Instant::now() + Duration::from_secs(60);
    let same = loop {
        let limit = Duration::from_secs(5);
        let state = |h: &str| {
            (
                site.sql(h, "SELECT @@gtid_current_pos", limit),
                site.sql(h, "CHECKSUM TABLE foobar.users", limit),
            )
        };
        let (a, b) = (state("db1"), state("db2"));
        if a == b && a.0.is_some() && a.1.is_some() {
            break a;
        }
        assert!(Instant::now() < end, "db1 {a:?} and db2 {b:?} never agreed");
        std::thread::sleep(Duration::from_millis(250));
    };
    println!(
        "rejoin: both servers at {} with {}",
        same.0.unwrap_or_default(),
        same.1.unwrap_or_default().replace('\t', " checksum ")
    );

    tls_everywhere(&site);

    // The negative control: semi-sync's timeout fallback, the same partition, the same
    // checker. It must find acknowledged writes that were lost.
    site.ok(&["stop", "db2"]);
    site.ok(&["stop", "db1"]);
    site.up(&["--unsafe-semi-sync-fallback", "500ms"]);
    site.db1_leads();
    let control = round(
        &site,
        "control: fallback 500 ms, partition",
        |s| {
            let at = now_ms();
            partition(s, true);
            std::thread::sleep(Duration::from_secs(15));
            at
        },
        |s| {
            partition(s, false);
            // db1 took writes db2 never got: it comes back diverged, and is rebuilt
            // from db2 while the writers still write.
            let end = Instant::now() + Duration::from_secs(60);
            while s.databases()["db1"]["role"] != "diverged" && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(250));
            }
            if s.databases()["db1"]["role"] == "diverged" {
                let said = s.ok(&["db", "rebuild", "db1"]);
                println!("control: db1 diverged; {}", said.trim());
            }
        },
    );
    // Only the control round's writes: the earlier rounds' are not its attempts.
    let present: BTreeSet<String> = written(&site)
        .into_iter()
        .filter(|id| id.starts_with("control-"))
        .collect();
    let (lost, unexpected, _) = check(&control.attempts, &present);
    println!(
        "negative control: acknowledged {}, lost {} ({:?}...), unexpected {}",
        control.ok,
        lost.len(),
        lost.iter().take(3).collect::<Vec<_>>(),
        unexpected.len()
    );
    assert!(
        !lost.is_empty(),
        "with the timeout fallback the checker must find lost writes"
    );
}

/// TLS to MariaDB: every TCP session of the application, the keepers, the monitoring
/// agents and replication reports a TLS cipher (performance_schema's per-thread
/// `Ssl_cipher`); a plaintext client is refused by both servers; `openssl s_client
/// -starttls mysql` verifies each server against the run's CA over TLS 1.2 or newer,
/// and TLS 1.1 is refused.
fn tls_everywhere(site: &Site) {
    let (leader, _) = site.steady(Duration::from_secs(60));
    let sessions = |host: &str| -> Vec<(String, String, String)> {
        site.sql(
            host,
            "SELECT t.PROCESSLIST_USER, t.PROCESSLIST_HOST, s.VARIABLE_VALUE \
             FROM performance_schema.threads t JOIN performance_schema.status_by_thread s \
             ON s.THREAD_ID = t.THREAD_ID AND s.VARIABLE_NAME = 'Ssl_cipher' \
             WHERE t.PROCESSLIST_USER IS NOT NULL",
            Duration::from_secs(10),
        )
        .unwrap()
        .lines()
        .map(|l| {
            let mut f = l.split('\t').map(str::to_owned);
            (
                f.next().unwrap_or_default(),
                f.next().unwrap_or_default(),
                f.next().unwrap_or_default(),
            )
        })
        .collect()
    };
    for host in ["db1", "db2"] {
        let rows = sessions(host);
        let tcp: Vec<_> = rows.iter().filter(|(_, h, _)| h != "localhost").collect();
        for (user, from, cipher) in &tcp {
            assert!(
                !cipher.is_empty(),
                "{host}: {user}@{from} without TLS: {rows:?}"
            );
        }
        let users: BTreeSet<&str> = tcp.iter().map(|(u, _, _)| u.as_str()).collect();
        let mut expected = vec!["rampart_keeper", "rampart_monitor", "foobar_app"];
        if host == leader {
            // The replica's replication connection, seen on its primary.
            expected.push("rampart_repl");
        }
        for u in expected {
            assert!(users.contains(u), "{host}: no TLS session of {u}: {rows:?}");
        }
        println!(
            "{host}: {} TCP sessions, all TLS ({:?}): {users:?}",
            tcp.len(),
            tcp.iter()
                .map(|(_, _, c)| c.as_str())
                .collect::<BTreeSet<_>>()
        );
    }
    let replica = if leader == "db1" { "db2" } else { "db1" };
    // Vertical output with the column names (`sql` drops them).
    let slave = Command::new("mariadb")
        .args(["--no-defaults", "-E"])
        .arg(format!("--socket={}", site.socket(replica).display()))
        .args(["-e", "SHOW SLAVE STATUS"])
        .output()
        .unwrap();
    let slave = String::from_utf8_lossy(&slave.stdout).into_owned();
    for line in [
        "Master_SSL_Allowed: Yes",
        "Master_SSL_Verify_Server_Cert: Yes",
    ] {
        assert!(slave.contains(line), "{replica}: {line} missing:\n{slave}");
    }

    let password = std::fs::read_to_string(site.state().join("secrets/db-app.password")).unwrap();
    let web1 = format!("{}-web1", site.prefix);
    let ca = site.state().join("certs/ca.pem");
    for addr in ["198.18.2.21", "198.18.2.22"] {
        let plain = Command::new("ip")
            .args([
                "netns",
                "exec",
                &web1,
                "mariadb",
                "--no-defaults",
                "--skip-ssl",
            ])
            .args([
                "--connect-timeout=5",
                "-h",
                addr,
                "-u",
                "foobar_app",
                "-e",
                "SELECT 1",
            ])
            .env("MYSQL_PWD", password.trim())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&plain.stderr);
        assert!(
            !plain.status.success() && err.contains("1045"),
            "{addr}: a plaintext login must be refused: {plain:?}"
        );
        let tls = Command::new("ip")
            .args([
                "netns",
                "exec",
                &web1,
                "openssl",
                "s_client",
                "-starttls",
                "mysql",
            ])
            .args([
                "-connect",
                &format!("{addr}:3306"),
                "-verify_return_error",
                "-CAfile",
            ])
            .arg(&ca)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&tls.stdout);
        assert!(
            out.contains("Verify return code: 0 (ok)")
                && (out.contains("Protocol  : TLSv1.3")
                    || out.contains("Protocol  : TLSv1.2")
                    || out.contains("New, TLSv1.3")
                    || out.contains("New, TLSv1.2")),
            "{addr}: openssl s_client -starttls mysql:\n{out}\n{}",
            String::from_utf8_lossy(&tls.stderr)
        );
        let old = Command::new("ip")
            .args([
                "netns",
                "exec",
                &web1,
                "openssl",
                "s_client",
                "-starttls",
                "mysql",
            ])
            .args([
                "-connect",
                &format!("{addr}:3306"),
                "-tls1_1",
                "-cipher",
                "DEFAULT@SECLEVEL=0",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let old_out = String::from_utf8_lossy(&old.stdout);
        // A refused handshake still prints the version it tried; no cipher and no
        // certificate mean it was refused.
        assert!(
            old_out.contains("Cipher is (NONE)")
                && old_out.contains("no peer certificate available"),
            "{addr}: TLS 1.1 must be refused:\n{old_out}"
        );
        println!(
            "{addr}: plaintext refused (1045), s_client verified against the CA, TLS 1.1 refused"
        );
    }
}

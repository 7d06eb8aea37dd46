//! A larger site from a topology file, in isolated mode with the real binary: two load
//! balancers on a floating address (keepalived), three web servers and two replicas.
//! Bad topology files are refused with named errors before anything starts. The site
//! answers on the floating address (DNS says so), round robin reaches every web server,
//! reads reach both replicas, and the firewalls are the policy's. SIGKILL of the active
//! load balancer's services under a bounded read loop moves the address to the other
//! (the move time and the failed requests are reported), and so does the lb process
//! alone (keepalived tracks it). Stopping a replica fails no read and moves its reads to
//! the other. Adding web4 (the file edited, `up` again) and removing it (`rampart scale
//! web=3`) under reads fails none, and web4 serves while it is there. With three
//! replicas a killed primary's sync standby takes over and the others follow it. The
//! dashboard, in Chromium, shows every host and which load balancer
//! holds the address.
//!
//! Beside it, a smaller pair site whose topology puts the site certificate on an ACME
//! CA: the real `pebble` on the client host issues and renews both load balancers'
//! certificates through the floating address, and the survivor of a killed active load
//! balancer serves its own.
//!
//! Needs root and the packages `./run test` installs; skipped visibly elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rampart_test_support::client::tool;
use rampart_test_support::free_port;

#[path = "common/matrix.rs"]
mod matrix;

const RAMPART: &str = env!("CARGO_BIN_EXE_rampart");
const VIP: &str = "203.0.113.80";

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// An isolated site of its own; dropping it runs `rampart down --purge`.
struct Site {
    state: tempfile::TempDir,
    prefix: String,
}

impl Site {
    fn state(&self) -> &Path {
        self.state.path()
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(RAMPART)
            .args(args)
            .arg("--state")
            .arg(self.state())
            .env("RAMPART_LOG", "warn")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "rampart {args:?}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `command` inside `host`'s namespace: (success, stdout).
    fn exec(&self, host: &str, command: &[&str]) -> (bool, String) {
        let out = Command::new(RAMPART)
            .args(["exec", "--state"])
            .arg(self.state())
            .arg(host)
            .arg("--")
            .args(command)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).unwrap()
    }

    /// The pids of every running service of `host`.
    fn pids(&self, host: &str) -> Vec<u32> {
        let st = self.status();
        let h = st["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == host)
            .unwrap()
            .clone();
        h["services"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["pid"].as_u64())
            .map(|p| u32::try_from(p).unwrap())
            .collect()
    }

    /// The pid of `host`'s `service`.
    fn pid(&self, host: &str, service: &str) -> u32 {
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
        u32::try_from(s["pid"].as_u64().unwrap()).unwrap()
    }

    /// keepalived's state on `lb` (what `rampart vrrp-notify` wrote).
    fn vrrp(&self, lb: &str) -> String {
        std::fs::read_to_string(self.state().join("hosts").join(lb).join("vrrp.state"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// Whether the floating address is on `lb`'s public interface.
    fn holds_vip(&self, lb: &str) -> bool {
        let out = Command::new("ip")
            .args([
                "-n",
                &format!("{}-{lb}", self.prefix),
                "-4",
                "-o",
                "addr",
                "show",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&format!("inet {VIP}/"))
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

/// One read as `rampart-test-writer --get` recorded it.
#[derive(Clone, Debug)]
struct Read {
    ok: bool,
    start_ms: u128,
    served_by: String,
    db_server: String,
}

/// A bounded read loop inside the client's namespace: `readers` connections, each at
/// most `rate` requests a second, for `seconds`.
struct Reads {
    child: Child,
    out: PathBuf,
    seconds: u64,
}

impl Reads {
    fn start(site: &Site, tag: &str, path: &str, seconds: u64) -> Reads {
        Self::start_with(site, tag, path, seconds, false)
    }

    /// With `fresh`, a new connection per read: a kept-alive connection stays on the
    /// load balancer's config of its time, so only new ones see a new backend.
    fn start_with(site: &Site, tag: &str, path: &str, seconds: u64, fresh: bool) -> Reads {
        let out = site.state().join(format!("reads-{tag}.jsonl"));
        let child = Command::new(RAMPART)
            .args(["exec", "--state"])
            .arg(site.state())
            .args(["client", "--"])
            .arg(rampart_test_support::writer_bin())
            .args(["--addr", &format!("{VIP}:443"), "--ca"])
            .arg(site.state().join("certs/ca.pem"))
            .args([
                "--get",
                path,
                "--writers",
                "2",
                "--rate",
                "20",
                "--max",
                "10000",
            ])
            .args(["--fresh", if fresh { "1" } else { "0" }])
            .args(["--seconds", &seconds.to_string(), "--tag", tag, "--out"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Reads {
            child,
            out,
            seconds,
        }
    }

    fn finish(mut self) -> Vec<Read> {
        let end = Instant::now() + Duration::from_secs(self.seconds + 60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "the readers failed: {status}");
                break;
            }
            assert!(Instant::now() < end, "the readers did not finish");
            std::thread::sleep(Duration::from_millis(100));
        }
        let text = std::fs::read_to_string(&self.out).unwrap();
        let mut reads: Vec<Read> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                Read {
                    ok: v["outcome"] == "ok",
                    start_ms: u128::from(v["start_ms"].as_u64().unwrap()),
                    served_by: v["served_by"].as_str().unwrap_or_default().to_owned(),
                    db_server: v["db_server"].as_str().unwrap_or_default().to_owned(),
                }
            })
            .collect();
        reads.sort_by_key(|r| r.start_ms);
        reads
    }
}

impl Drop for Reads {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn set(reads: &[Read], f: impl Fn(&Read) -> &str) -> BTreeSet<String> {
    reads
        .iter()
        .filter(|r| r.ok)
        .map(|r| f(r).to_owned())
        .collect()
}

#[test]
fn a_larger_site_with_a_load_balancer_pair() {
    if !rampart_test_support::require_root("isolated mode (network namespaces)") {
        return;
    }
    for t in [
        "nft",
        "etcd",
        "mariadb",
        "keepalived",
        "dig",
        "chromium",
        "certutil",
    ] {
        if tool(t, None).is_none() {
            return;
        }
    }
    let site = Site {
        state: tempfile::Builder::new().prefix("rsc").tempdir().unwrap(),
        prefix: format!("sc{}", std::process::id() % 100_000),
    };
    let dash_port = free_port();
    let up = |file: &Path| {
        site.run(&[
            "up",
            "-d",
            "--fast-monitor",
            "--prefix",
            &site.prefix,
            "--publish",
            "0",
            "--publish-dashboard",
            &dash_port.to_string(),
            "--topology",
            file.to_str().unwrap(),
        ])
    };

    // 5. A bad topology file: every problem named with its line, and nothing started.
    let bad = site.state().join("bad.toml");
    std::fs::write(
        &bad,
        "[hosts]\nweb = 0\nlb = 2\n[etcd]\nhosts = [\"monitor\", \"db1\"]\n",
    )
    .unwrap();
    let out = up(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    for needle in [
        "bad.toml:2: hosts.web: 0 web servers; valid: 1 to 78",
        "bad.toml:5: etcd.hosts: 2 members; etcd needs an odd number, 3 or more",
        "bad.toml:5: etcd.hosts: db1 is a database host",
    ] {
        assert!(err.contains(needle), "{needle} missing from {err}");
    }
    assert!(!site.state().join("run.json").exists());
    let namespaces = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(
        !namespaces.contains(&format!("{}-", site.prefix)),
        "a namespace was created: {namespaces}"
    );

    // The larger site.
    let file = site.state().join("site.toml");
    std::fs::write(&file, "[hosts]\nlb = 2\nweb = 3\nreplicas = 2\n").unwrap();
    let t = Instant::now();
    let out = up(&file);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "up (2 lb, 3 web, 1 primary + 2 replicas): {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // 1. DNS answers the floating address; one load balancer holds it.
    let (ok, dig) = site.exec(
        "client",
        &["dig", "+short", "+time=2", "+tries=2", "www.foobar.com"],
    );
    assert!(ok && dig.trim() == VIP, "dig: {dig}");
    let end = Instant::now() + Duration::from_secs(30);
    let active = loop {
        let states = (site.vrrp("lb1"), site.vrrp("lb2"));
        match (states.0.as_str(), states.1.as_str()) {
            ("MASTER", "BACKUP") => break "lb1",
            ("BACKUP", "MASTER") => break "lb2",
            _ => {}
        }
        assert!(Instant::now() < end, "no single MASTER: {states:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let standby = if active == "lb1" { "lb2" } else { "lb1" };
    assert!(site.holds_vip(active) && !site.holds_vip(standby));
    println!("vrrp: {active} holds {VIP}, {standby} is BACKUP");

    // Round robin over the three web servers, reads over both replicas.
    let (ok, created) = site.exec(
        "client",
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "-H",
            "content-type: application/json",
            "-d",
            "{\"name\":\"Ada\",\"email\":\"ada@example.com\"}",
            "https://www.foobar.com/api/users",
        ],
    );
    assert!(ok && created.contains("\"id\""), "{created}");
    let id = serde_json::from_str::<serde_json::Value>(&created).unwrap()["id"]
        .as_u64()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let reads = Reads::start(&site, "spread", &format!("/api/users/{id}"), 4).finish();
    assert!(reads.iter().all(|r| r.ok), "failed reads: {reads:?}");
    let webs = set(&reads, |r| &r.served_by);
    assert_eq!(webs, ["web1", "web2", "web3"].map(str::to_owned).into());
    let dbs = set(&reads, |r| &r.db_server);
    assert_eq!(dbs, ["db2", "db3"].map(str::to_owned).into(), "{reads:?}");
    println!(
        "{} reads: web servers {webs:?}, databases {dbs:?}",
        reads.len()
    );

    // The firewalls are the policy's: `firewall check`, the whole connectivity matrix,
    // and a few flows named for the record.
    site.ok(&["firewall", "check"]);
    let spec = rampart_topology::file::parse("site.toml", &std::fs::read_to_string(&file).unwrap())
        .unwrap();
    matrix::matrix(
        &|host, script| site.exec(host, &["bash", "-c", script]).1,
        &spec.topology(rampart_topology::Mode::Isolated, 0).unwrap(),
        active,
    );
    let probe = |from: &str, to: &str, port: u16| -> bool {
        site.exec(
            from,
            &[
                "timeout",
                "3",
                "bash",
                "-c",
                &format!("</dev/tcp/{to}/{port}"),
            ],
        )
        .0
    };
    for (from, to, port, open) in [
        ("client", VIP, 443, true),
        ("lb2", "198.18.1.13", 8443, true),
        ("web3", "198.18.2.23", 3306, true),
        ("db3", "198.18.2.22", 3306, true),
        ("web3", "198.18.1.11", 8443, false),
        ("lb1", "198.18.2.23", 3306, false),
        ("client", "203.0.113.9", 9180, false),
    ] {
        assert_eq!(probe(from, to, port), open, "{from} -> {to}:{port}");
    }

    // 2. The active load balancer's services SIGKILLed under a bounded read loop.
    let reads = Reads::start(&site, "lbkill", "/", 30);
    std::thread::sleep(Duration::from_secs(8));
    let pids = site.pids(active);
    let killed_at = now_ms();
    for pid in &pids {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let end = Instant::now() + Duration::from_secs(30);
    while site.vrrp(standby) != "MASTER" || !site.holds_vip(standby) {
        assert!(Instant::now() < end, "{standby} never took the address");
        std::thread::sleep(Duration::from_millis(20));
    }
    let moved_ms = now_ms() - killed_at;
    let reads = reads.finish();
    let failed: Vec<&Read> = reads.iter().filter(|r| !r.ok).collect();
    let last_failed = failed.iter().map(|r| r.start_ms).max();
    let first_ok_after = reads
        .iter()
        .filter(|r| r.ok && r.start_ms > killed_at)
        .map(|r| r.start_ms)
        .min();
    println!(
        "load balancer loss: {active} killed ({} services), {standby} held {VIP} after {:.2} s; \
         {} of {} reads failed, the first success {:.2} s after the kill, the last failure {:.2} s after it",
        pids.len(),
        moved_ms as f64 / 1e3,
        failed.len(),
        reads.len(),
        first_ok_after.map_or(f64::NAN, |t| (t - killed_at) as f64 / 1e3),
        last_failed.map_or(0.0, |t| (t.saturating_sub(killed_at)) as f64 / 1e3),
    );
    // Only the kill's moment fails: nothing before it, nothing once the address moved
    // (a request started then waits at most its connect), and reads go on to the end.
    assert!(
        failed
            .iter()
            .all(|r| r.start_ms >= killed_at.saturating_sub(1000)),
        "{failed:?}"
    );
    assert!(
        failed
            .iter()
            .all(|r| r.start_ms <= killed_at + moved_ms + 1000),
        "reads failed after the move: {failed:?}"
    );
    assert!(
        reads.iter().rev().take(20).all(|r| r.ok),
        "the reads did not recover"
    );

    // keepalived tracks its lb: the lb process alone killed on the new holder moves the
    // address back (lb1 came back as BACKUP: no preemption).
    site.ok(&["start", active]);
    assert_eq!(site.vrrp(active), "BACKUP");
    let lb_pid = site.pid(standby, "lb");
    let t = Instant::now();
    let _ = Command::new("kill")
        .args(["-KILL", &lb_pid.to_string()])
        .status();
    let end = Instant::now() + Duration::from_secs(30);
    while !(site.holds_vip(active) && site.vrrp(standby) == "FAULT") {
        assert!(Instant::now() < end, "{active} never took the address back");
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "{standby}'s lb process killed: {active} holds {VIP} again after {:.2} s, {standby} is FAULT",
        t.elapsed().as_secs_f64()
    );
    site.ok(&["start", standby]);
    let end = Instant::now() + Duration::from_secs(30);
    while site.vrrp(standby) != "BACKUP" {
        assert!(
            Instant::now() < end,
            "{standby} did not come back as BACKUP"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // 3. Scaling out and in under a bounded read loop: web4 added by editing the file
    // and running `up` again, then removed with `rampart scale web=3`; no read fails.
    let reads = Reads::start_with(&site, "scale", "/", 30, true);
    std::thread::sleep(Duration::from_secs(3));
    std::fs::write(&file, "[hosts]\nlb = 2\nweb = 4\nreplicas = 2\n").unwrap();
    let t = Instant::now();
    let out = up(&file);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let grown = t.elapsed();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("network: kept, added web4"), "{said}");
    assert!(
        said.contains("lb1/lb reloaded") && said.contains("lb2/lb reloaded"),
        "{said}"
    );
    std::thread::sleep(Duration::from_secs(8));
    let t = Instant::now();
    let said = site.ok(&["scale", "web=3"]);
    let shrunk = t.elapsed();
    let removed_at = now_ms();
    assert!(said.contains("removed web4"), "{said}");
    let reads = reads.finish();
    let failed: Vec<&Read> = reads.iter().filter(|r| !r.ok).collect();
    assert!(
        failed.is_empty(),
        "{} reads failed: {failed:?}",
        failed.len()
    );
    let to_web4 = reads.iter().filter(|r| r.served_by == "web4").count();
    assert!(to_web4 > 0, "web4 got no traffic");
    assert!(
        reads
            .iter()
            .filter(|r| r.start_ms > removed_at)
            .all(|r| r.served_by != "web4"),
        "web4 served after its removal"
    );
    let ns = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(!ns.contains(&format!("{}-web4", site.prefix)), "{ns}");
    println!(
        "scaling: web4 added by up in {:.1} s and removed by scale in {:.1} s under {} reads: \
         none failed, {to_web4} served by web4",
        grown.as_secs_f64(),
        shrunk.as_secs_f64(),
        reads.len()
    );

    // 4. One replica stopped under reads: none fails, and they move to the other.
    let reads = Reads::start(&site, "replica", &format!("/api/users/{id}"), 20);
    std::thread::sleep(Duration::from_secs(5));
    site.ok(&["stop", "db3"]);
    let reads = reads.finish();
    let failed: Vec<&Read> = reads.iter().filter(|r| !r.ok).collect();
    assert!(
        failed.is_empty(),
        "{} reads failed: {failed:?}",
        failed.len()
    );
    let tail: BTreeSet<String> = reads
        .iter()
        .rev()
        .take(40)
        .map(|r| r.db_server.clone())
        .collect();
    assert_eq!(tail, ["db2".to_owned()].into(), "reads after db3 stopped");
    println!(
        "replica loss: {} reads, none failed; after db3 stopped they went to {tail:?}",
        reads.len()
    );

    // A replica added to the running site: seeded from the primary with mariadb-backup,
    // the web servers restarted one at a time with the new list, and reads reach it.
    site.ok(&["start", "db3"]);
    let reads = Reads::start_with(&site, "replicas", &format!("/api/users/{id}"), 40, true);
    std::thread::sleep(Duration::from_secs(3));
    let t = Instant::now();
    let said = site.ok(&["scale", "replicas=3"]);
    let took = t.elapsed();
    assert!(said.contains("db4 seeded from db1 at GTID"), "{said}");
    assert!(said.contains("web1/web restarted"), "{said}");
    let reads = reads.finish();
    let failed = reads.iter().filter(|r| !r.ok).count();
    let dbs = set(&reads, |r| &r.db_server);
    assert!(dbs.contains("db4"), "no read reached db4: {dbs:?}");
    println!(
        "scaling replicas to 3: {:.1} s (db4 seeded, web servers restarted one by one); \
         {failed} of {} reads failed; databases {dbs:?}",
        took.as_secs_f64(),
        reads.len()
    );

    // With three replicas, a failover: the primary's server SIGKILLed, its sync standby
    // takes over, and the other replicas repoint to it by themselves.
    let dbs = |site: &Site| -> Vec<(String, serde_json::Value)> {
        site.status()["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| !h["database"].is_null())
            .map(|h| {
                (
                    h["name"].as_str().unwrap().to_owned(),
                    h["database"].clone(),
                )
            })
            .collect()
    };
    let end = Instant::now() + Duration::from_secs(60);
    let (primary, standby) = loop {
        let d = dbs(&site);
        let leader = d.iter().find(|(_, v)| v["role"] == "leader");
        if let Some((name, v)) = leader {
            if let Some(sb) = v["sync_standby"].as_str() {
                break (name.clone(), sb.to_owned());
            }
        }
        assert!(Instant::now() < end, "no leader with a sync standby: {d:?}");
        std::thread::sleep(Duration::from_millis(250));
    };
    let pid = dbs(&site)
        .iter()
        .find(|(n, _)| *n == primary)
        .and_then(|(_, v)| v["server_pid"].as_u64())
        .unwrap();
    let t = Instant::now();
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    let end = Instant::now() + Duration::from_secs(90);
    loop {
        let d = dbs(&site);
        let others_follow = d
            .iter()
            .filter(|(n, _)| *n != standby)
            .all(|(_, v)| v["role"] == "replica" && v["leader"] == standby.as_str());
        let leads = d
            .iter()
            .any(|(n, v)| *n == standby && v["role"] == "leader");
        if leads && others_follow {
            break;
        }
        assert!(
            Instant::now() < end,
            "the replicas did not follow {standby}: {d:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    println!(
        "failover with 3 replicas: {primary}'s server killed, {standby} leads and the other \
         three follow it after {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // 6. The dashboard in Chromium shows every host, and which one holds the address.
    let ca = site.state().join("certs/ca.pem");
    let dash = format!("https://127.0.0.1:{dash_port}");
    let jar = site.state().join("cookies.txt");
    let password =
        std::fs::read_to_string(site.state().join("hosts/monitor/dashboard.password")).unwrap();
    let curl = |args: &[&str]| -> String {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&ca)
            .arg("-b")
            .arg(&jar)
            .arg("-c")
            .arg(&jar)
            .args(["-H", &format!("Origin: {dash}")])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    curl(&[
        "--data-urlencode",
        "user=admin",
        "--data-urlencode",
        &format!("password={}", password.trim()),
        &format!("{dash}/login"),
    ]);
    let hosts = [
        "dns", "lb1", "lb2", "web1", "web2", "web3", "db1", "db2", "db3", "db4", "monitor",
    ];
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("scale-dashboard");
    std::fs::create_dir_all(&work).unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    let page = loop {
        let link: serde_json::Value =
            serde_json::from_str(&curl(&["-X", "POST", &format!("{dash}/api/login-link")]))
                .unwrap();
        let path = link["path"].as_str().unwrap();
        let page =
            rampart_test_support::browser::open(&[], &format!("{dash}{path}"), &ca, &work).unwrap();
        let missing: Vec<&str> = hosts
            .iter()
            .filter(|h| !page.dom.contains(&format!("<td>{h}</td>")))
            .copied()
            .collect();
        if missing.is_empty() && page.dom.contains("holds it") {
            break page;
        }
        assert!(
            Instant::now() < end,
            "the dashboard lacks {missing:?} (or the address holder): {}",
            page.dom
        );
        std::thread::sleep(Duration::from_secs(3));
    };
    println!(
        "dashboard: all {} hosts and the address holder; screenshot {}",
        hosts.len(),
        page.screenshot.display()
    );

    // The pair down to one load balancer and back: `rampart scale lb=1` stops lb2 and
    // keepalived, lb1 serves on its own address and DNS answers it; `lb=2` restores the
    // floating address. The load balancers restart for it (their listening address
    // changes), so this is a planned change, not one without interruption.
    let site_answers = |want: &str| {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, dig) = site.exec(
                "client",
                &["dig", "+short", "+time=2", "+tries=1", "www.foobar.com"],
            );
            let (ok, _) = site.exec(
                "client",
                &[
                    "curl",
                    "-sSf",
                    "--max-time",
                    "3",
                    "-o",
                    "/dev/null",
                    "https://www.foobar.com/",
                ],
            );
            if dig.trim() == want && ok {
                break;
            }
            assert!(
                Instant::now() < end,
                "the site does not answer on {want} (dig: {dig})"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let t = Instant::now();
    let said = site.ok(&["scale", "lb=1"]);
    assert!(
        said.contains("lb1/keepalived stopped") && said.contains("removed lb2"),
        "{said}"
    );
    site_answers("203.0.113.10");
    assert!(!site.holds_vip("lb1"));
    let one = t.elapsed();
    let t = Instant::now();
    site.ok(&["scale", "lb=2"]);
    site_answers(VIP);
    println!(
        "lb=1: the site on lb1's own address after {:.1} s; lb=2: on {VIP} again after {:.1} s",
        one.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
}

/// The leaf (first certificate) of a PEM chain, as PEM text.
fn leaf(chain: &str) -> String {
    let end = "-----END CERTIFICATE-----";
    chain
        .find(end)
        .map(|i| chain[..i + end.len()].trim().to_owned())
        .unwrap_or_default()
}

/// Issue 17: the site certificate from an ACME CA inside the topology. A pair site whose
/// topology has `[acme]` pointing at the real `pebble` (Let's Encrypt's test CA, Debian's
/// package), run on the client host with rampart's DNS: pebble validates HTTP-01 at the
/// floating address, so the active load balancer answers its own challenges and relays
/// the standby's to the standby's own address. Both get certificates from pebble (60 s
/// ones), both renew them without a restart, the firewalls are the policy's (the load
/// balancers, and only they, reach the CA), and when the active load balancer dies the
/// other serves its own pebble certificate on the floating address.
#[test]
fn a_pair_gets_its_site_certificate_from_pebble_inside_the_topology() {
    if !rampart_test_support::require_root("isolated mode (network namespaces)") {
        return;
    }
    for t in ["nft", "etcd", "mariadb", "keepalived", "openssl", "curl"] {
        if tool(t, None).is_none() {
            return;
        }
    }
    if !Path::new("/usr/bin/pebble").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "pebble is not installed; `./run test` installs it"
        );
        eprintln!("SKIPPED: pebble is not installed (Debian package pebble)");
        return;
    }
    let site = Site {
        state: tempfile::Builder::new().prefix("rac").tempdir().unwrap(),
        prefix: format!("ac{}", std::process::id() % 100_000),
    };
    // pebble's own HTTPS certificate, for the client's public address, from a CA of the
    // test's: the topology's `[acme] ca`.
    let pki = tempfile::Builder::new().prefix("racpki").tempdir().unwrap();
    let ca = rampart_tls::pki::Ca::create(pki.path(), "pebble's HTTPS test CA").unwrap();
    ca.issue(pki.path(), "pebble", &["203.0.113.100".into()], false)
        .unwrap();
    let (directory, mgmt) = ("203.0.113.100:14000", "203.0.113.100:15000");
    let file = site.state().join("site.toml");
    std::fs::write(
        &file,
        format!(
            "[hosts]\nlb = 2\nweb = 1\nbackup = 0\n[acme]\ndirectory = \"https://{directory}/dir\"\n\
             contact = [\"mailto:ops@foobar.com\"]\nca = \"{}\"\n\
             check_every = \"2s\"\nretry_min = \"1s\"\nretry_max = \"4s\"\n",
            pki.path().join("ca.pem").display()
        ),
    )
    .unwrap();
    let t = Instant::now();
    site.ok(&[
        "up",
        "-d",
        "--prefix",
        &site.prefix,
        "--publish",
        "0",
        "--publish-dashboard",
        "0",
        "--topology",
        file.to_str().unwrap(),
    ]);
    println!(
        "acme: up (2 lb, 1 web) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let acme_dir = |lb: &str| site.state().join("hosts").join(lb).join("acme");
    // Before pebble runs, each load balancer serves a self-signed placeholder and its
    // orders fail and back off.
    for lb in ["lb1", "lb2"] {
        let pem = std::fs::read_to_string(acme_dir(lb).join("site.pem")).unwrap();
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-issuer"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(pem.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        let issuer = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(issuer.contains("rampart placeholder"), "{lb}: {issuer}");
        let mode = std::fs::metadata(acme_dir(lb)).unwrap().permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o700, "{lb}'s acme directory");
    }
    let end = Instant::now() + Duration::from_secs(30);
    let active = loop {
        match (site.vrrp("lb1").as_str(), site.vrrp("lb2").as_str()) {
            ("MASTER", "BACKUP") => break "lb1",
            ("BACKUP", "MASTER") => break "lb2",
            other => assert!(Instant::now() < end, "no single MASTER: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let standby = if active == "lb1" { "lb2" } else { "lb1" };

    // pebble on the client host, resolving the site's names through rampart's DNS.
    let cfg = pki.path().join("pebble.json");
    std::fs::write(
        &cfg,
        serde_json::json!({ "pebble": {
            "listenAddress": directory,
            "managementListenAddress": mgmt,
            "certificate": pki.path().join("pebble.pem"),
            "privateKey": pki.path().join("pebble.key"),
            "httpPort": 80,
            "tlsPort": 5001,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": 60,
        }})
        .to_string(),
    )
    .unwrap();
    let log_path = pki.path().join("pebble.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut pebble = Command::new(RAMPART)
        .args(["exec", "--state"])
        .arg(site.state())
        .args([
            "client",
            "--",
            "env",
            "PEBBLE_VA_NOSLEEP=1",
            "PEBBLE_WFE_NONCEREJECT=0",
            "PEBBLE_AUTHZREUSE=0",
            "/usr/bin/pebble",
            "-config",
        ])
        .arg(&cfg)
        .args(["-dnsserver", "203.0.113.53:53"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _pebble = Kill(&mut pebble);
    let said = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let root_file = pki.path().join("pebble-root.pem");
    let root = rampart_test_support::eventually("pebble's root", Duration::from_secs(30), || {
        let (ok, root) = site.exec(
            "client",
            &[
                "curl",
                "-sf",
                "--max-time",
                "3",
                "--cacert",
                pki.path().join("ca.pem").to_str().unwrap(),
                &format!("https://{mgmt}/roots/0"),
            ],
        );
        if !(ok && root.contains("BEGIN CERTIFICATE")) {
            std::thread::sleep(Duration::from_millis(250));
            return None;
        }
        Some(root)
    });
    std::fs::write(&root_file, &root).unwrap();
    let issued_from_pebble = |lb: &str| -> Option<String> {
        let chain = acme_dir(lb).join("site.pem");
        let out = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(&root_file)
            .arg("-untrusted")
            .arg(&chain)
            .arg(&chain)
            .output()
            .ok()?;
        if !out.status.success() {
            std::thread::sleep(Duration::from_millis(250));
            return None;
        }
        Some(leaf(&std::fs::read_to_string(&chain).unwrap_or_default()))
    };
    let t = Instant::now();
    let mut first = std::collections::BTreeMap::new();
    for lb in [active, standby] {
        let l = rampart_test_support::eventually(
            &format!("{lb}'s certificate from pebble"),
            Duration::from_secs(90),
            || issued_from_pebble(lb),
        );
        first.insert(lb, l);
    }
    println!(
        "acme: {active} (active) and {standby} (standby) hold pebble certificates {:.1} s after pebble started",
        t.elapsed().as_secs_f64()
    );
    let key_mode = |lb: &str, f: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(acme_dir(lb).join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    for lb in ["lb1", "lb2"] {
        assert_eq!(key_mode(lb, "account.json"), 0o600, "{lb}");
        assert_eq!(key_mode(lb, "site.key"), 0o600, "{lb}");
    }
    // Every validation went to the floating address (the site's name), so the standby's
    // were answered through the active one, which relayed them.
    let log = said();
    let validations = log
        .matches("Attempting to validate w/ HTTP: http://")
        .count();
    assert!(validations >= 4, "two names, two load balancers:\n{log}");
    assert_eq!(site.vrrp(active), "MASTER", "the address never moved");

    // What the client sees on the floating address: the active one's pebble chain.
    let served = |what: &str| -> String {
        rampart_test_support::eventually(what, Duration::from_secs(30), || {
            let (ok, out) = site.exec(
                "client",
                &[
                    "bash",
                    "-c",
                    &format!(
                        "timeout 5 openssl s_client -connect {VIP}:443 -servername www.foobar.com \
                         -verify_return_error -CAfile {} </dev/null 2>/dev/null | openssl x509",
                        root_file.display()
                    ),
                ],
            );
            if !(ok && out.contains("BEGIN CERTIFICATE")) {
                std::thread::sleep(Duration::from_millis(250));
                return None;
            }
            Some(out.trim().to_owned())
        })
    };
    let (ok, body) = site.exec(
        "client",
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "--cacert",
            root_file.to_str().unwrap(),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "https://www.foobar.com/",
        ],
    );
    assert!(ok && body == "200", "curl with pebble's root: {body}");

    // Renewal at two thirds of 60 s, on both, with no restart.
    let pids = (site.pid("lb1", "lb"), site.pid("lb2", "lb"));
    let t = Instant::now();
    for lb in [active, standby] {
        rampart_test_support::eventually(
            &format!("{lb}'s renewal"),
            Duration::from_secs(90),
            || issued_from_pebble(lb).filter(|l| *l != first[lb]),
        );
    }
    println!(
        "acme: both renewed within {:.1} s of the first issue",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(pids, (site.pid("lb1", "lb"), site.pid("lb2", "lb")));
    let now_active = served("the renewed certificate on the floating address");
    assert_eq!(
        now_active,
        leaf(&std::fs::read_to_string(acme_dir(active).join("site.pem")).unwrap()),
        "the active load balancer serves its renewed certificate"
    );

    // The firewalls are the policy's, with the way to the CA for the load balancers.
    site.ok(&["firewall", "check"]);
    let spec = rampart_topology::file::parse("site.toml", &std::fs::read_to_string(&file).unwrap())
        .unwrap();
    matrix::matrix(
        &|host, script| site.exec(host, &["bash", "-c", script]).1,
        &spec.topology(rampart_topology::Mode::Isolated, 0).unwrap(),
        active,
    );

    // The active load balancer dies: the other serves its own pebble certificate.
    for pid in site.pids(active) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let end = Instant::now() + Duration::from_secs(30);
    while site.vrrp(standby) != "MASTER" || !site.holds_vip(standby) {
        assert!(Instant::now() < end, "{standby} never took the address");
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = served("the standby's certificate on the floating address");
    let standby_leaf = leaf(&std::fs::read_to_string(acme_dir(standby).join("site.pem")).unwrap());
    assert_eq!(
        after, standby_leaf,
        "{standby} serves its own pebble certificate"
    );
    assert_ne!(after, now_active);
    let (ok, code) = site.exec(
        "client",
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "--cacert",
            root_file.to_str().unwrap(),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "https://www.foobar.com/",
        ],
    );
    assert!(ok && code == "200", "after the failover: {code}");
    println!("acme: {active} killed, {standby} serves its pebble certificate on {VIP}");
}

//! The whole request path on one machine with the real binary, in both modes: `rampart
//! up` brings up real MariaDB (primary and replica), two `rampart web` servers, the load
//! balancer and the DNS server; curl talks HTTPS to the load balancer, and the `mariadb`
//! client checks the databases directly. Failure drills use `rampart stop`/`start` under
//! bounded loops. In local mode curl runs here against loopback addresses; in isolated
//! mode (root) every request starts inside the client host's namespace (`rampart exec
//! client -- curl`), resolving the site through the topology's DNS server, and the
//! isolated test adds the connectivity matrix, nmap, dig, a headless browser and the
//! teardown check.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rampart_test_support::client::{tool, CurlOut};
use rampart_test_support::{eventually, free_port};

#[path = "common/grafana.rs"]
mod grafana;
#[path = "common/matrix.rs"]
mod matrix;

const RAMPART: &str = env!("CARGO_BIN_EXE_rampart");

/// How a test's topology runs.
#[derive(Clone, Debug)]
enum Mode {
    /// On its own loopback block `127.<net>.x.y`.
    Local { net: u8 },
    /// In namespaces `<prefix>-<host>`, the load balancer published on 127.0.0.1:<publish>.
    Isolated { prefix: String, publish: u16 },
}

/// A detached topology in a temporary state directory, with names and addresses of its
/// own so tests run side by side. Dropping it runs `rampart down --purge`.
struct Stack {
    state: tempfile::TempDir,
    mode: Mode,
    curl: PathBuf,
    /// etcd's client, to check the cluster from its client hosts.
    etcdctl: PathBuf,
    /// More arguments for `rampart up`.
    extra: Vec<String>,
    /// Isolated mode: the dashboard's forward on 127.0.0.1.
    dash_port: u16,
    /// Request ids of the bad input the suite sends on purpose (the WAF may refuse it).
    deliberate: std::sync::Mutex<Vec<String>>,
}

fn net_for(seed: u32) -> u8 {
    // 100..=249, distinct per process and test so parallel runs don't share addresses.
    let n = (std::process::id().wrapping_mul(31).wrapping_add(seed)) % 150;
    u8::try_from(100 + n).unwrap()
}

fn rampart(state: &Path, args: &[impl AsRef<std::ffi::OsStr>]) -> std::process::Output {
    Command::new(RAMPART)
        .args(args)
        .arg("--state")
        .arg(state)
        .env("RAMPART_LOG", "warn")
        .output()
        .unwrap()
}

fn mariadb_installed() -> bool {
    let found = Path::new("/usr/sbin/mariadbd").exists() && tool("mariadb", None).is_some();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "mariadb-server-core is not installed; `./run test` installs it"
        );
        eprintln!("SKIPPED: mariadb-server-core is not installed (`./run test` installs it)");
    }
    found
}

impl Stack {
    fn up(mode: Mode) -> Option<Stack> {
        Self::up_with(mode, &[])
    }

    fn up_with(mode: Mode, extra: &[&str]) -> Option<Stack> {
        if !mariadb_installed() {
            return None;
        }
        let curl = tool("curl", None)?;
        tool("etcd", None)?;
        let etcdctl = tool("etcdctl", None)?;
        let state = tempfile::Builder::new().prefix("rs").tempdir().unwrap();
        let stack = Stack {
            state,
            mode,
            curl,
            etcdctl,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            dash_port: free_port(),
            deliberate: std::sync::Mutex::default(),
        };
        let out = rampart(stack.state(), &stack.up_args());
        assert!(
            out.status.success(),
            "rampart up failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        // Progress step by step with timings, then what to run next.
        let mut needles = vec![
            "monitor/etcd, dns/etcd, lb1/etcd spawned",
            "monitor/etcd, dns/etcd, lb1/etcd ready (quorum)",
            "monitor (etcd, dashboard, alertmanager, prometheus, logs, gate, agent",
            "dns (etcd, dns, agent) started",
            "db1 (mariadb, agent) started",
            "db2 (mariadb, agent) started",
            "lb1 (etcd, lb, agent) started",
            "backup (backup, agent) started",
            "curl --cacert",
        ];
        let resolve;
        match &stack.mode {
            Mode::Local { .. } => needles.push("--resolve www.foobar.com:8443:"),
            Mode::Isolated { publish, .. } => {
                resolve = format!("--resolve www.foobar.com:{publish}:127.0.0.1");
                needles.extend([
                    "network: 10 namespaces",
                    "firewalls: 9 rulesets loaded",
                    "client (forward) started",
                    "client -- curl -i https://www.foobar.com/",
                    &resolve,
                ]);
            }
        }
        for needle in needles {
            assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
        }
        if let Mode::Isolated { .. } = &stack.mode {
            // The printed commands work pasted into a fresh shell elsewhere: no
            // inherited PATH beyond the system's, another working directory.
            let line = text
                .lines()
                .find(|l| l.contains("client -- dig"))
                .unwrap_or_else(|| panic!("no dig line in:\n{text}"));
            let out = Command::new("env")
                .args([
                    "-i",
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "HOME=/root",
                    "sh",
                    "-c",
                    line.trim(),
                ])
                .current_dir("/")
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && said.contains("ANSWER SECTION"),
                "`{}` failed from a fresh shell: {said}{}",
                line.trim(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Some(stack)
    }

    fn up_args(&self) -> Vec<String> {
        let mut v: Vec<String> = vec!["up".into(), "-d".into()];
        match &self.mode {
            Mode::Local { net } => v.extend(["--local".into(), "--net".into(), net.to_string()]),
            Mode::Isolated { prefix, publish } => v.extend([
                "--prefix".into(),
                prefix.clone(),
                "--publish".into(),
                publish.to_string(),
                "--publish-dashboard".into(),
                self.dash_port.to_string(),
            ]),
        }
        v.extend(self.extra.iter().cloned());
        v
    }

    fn state(&self) -> &Path {
        self.state.path()
    }

    /// A command that runs `program` where the site's clients are: here in local mode,
    /// inside the client host (`rampart exec client --`) in isolated mode.
    fn on(&self, host: &str, program: &Path) -> Command {
        match self.mode {
            Mode::Local { .. } => Command::new(program),
            Mode::Isolated { .. } => {
                let mut c = Command::new(RAMPART);
                c.arg("exec")
                    .arg("--state")
                    .arg(self.state())
                    .args([host, "--"])
                    .arg(program);
                c
            }
        }
    }

    /// curl through the load balancer for `path`, without the URL's extra arguments:
    /// in local mode by `--resolve` to lb1's loopback address and port 8443; in isolated
    /// mode from the client host, resolving the name through the topology's DNS.
    fn curl_command(&self, path: &str, args: &[&str]) -> Command {
        let mut c = self.on("client", &self.curl);
        c.args(["-sS", "--max-time", "10", "--path-as-is", "-D", "-"]);
        match self.mode {
            Mode::Local { net } => {
                c.arg("--cacert")
                    .arg(self.state().join("certs/ca.pem"))
                    .args(["--resolve", &format!("www.foobar.com:8443:127.{net}.1.10")])
                    .args(args)
                    .arg(format!("https://www.foobar.com:8443{path}"));
            }
            // `rampart exec` makes curl trust rampart's CA.
            Mode::Isolated { .. } => {
                c.args(args).arg(format!("https://www.foobar.com{path}"));
            }
        }
        c
    }

    /// One curl request through the load balancer; `args` go before the URL.
    fn curl(&self, path: &str, args: &[&str]) -> CurlOut {
        let out = self.curl_command(path, args).output().unwrap();
        CurlOut::parse(&out)
    }

    /// Notes `r` as bad input sent on purpose, which the WAF may refuse; returns it.
    fn deliberate(&self, r: CurlOut) -> CurlOut {
        if let Some(id) = r.header("x-request-id") {
            self.deliberate.lock().unwrap().push(id);
        }
        r
    }

    fn post_json(&self, path: &str, body: &str, extra: &[&str]) -> CurlOut {
        let mut args = vec![
            "-H",
            "content-type: application/json",
            "--data-binary",
            body,
        ];
        args.extend_from_slice(extra);
        self.curl(path, &args)
    }

    /// SQL as root over the instance's local socket.
    fn root_sql(&self, host: &str, sql: &str) -> String {
        self.instance(host).sql(sql).unwrap()
    }

    /// The database instance of `host`, for root's SQL over its local socket.
    fn instance(&self, host: &str) -> rampart_infra::mariadb::Instance {
        rampart_infra::mariadb::Instance {
            name: host.to_owned(),
            role: rampart_infra::mariadb::Role::Primary,
            server_id: 1,
            bind: "127.0.0.1".parse().unwrap(),
            port: 3306,
            dir: self.state().join("hosts").join(host),
            tls: None,
            netns: None,
        }
    }

    /// SQL as the application user over TCP with TLS that verifies the server against
    /// the run's CA; returns (success, stdout + stderr).
    fn app_sql(&self, host_addr: &str, sql: &str) -> (bool, String) {
        let ca = format!("--ssl-ca={}", self.state().join("certs/ca.pem").display());
        self.app_sql_with(host_addr, sql, &["--ssl", &ca, "--ssl-verify-server-cert"])
    }

    /// SQL as the application user over TCP with the client's TLS flags `tls`.
    fn app_sql_with(&self, host_addr: &str, sql: &str, tls: &[&str]) -> (bool, String) {
        let password =
            std::fs::read_to_string(self.state().join("secrets/db-app.password")).unwrap();
        let out = self
            .on("web1", &tool("mariadb", None).unwrap())
            .args([
                "--no-defaults",
                "--protocol=TCP",
                "-h",
                host_addr,
                "-P",
                "3306",
            ])
            .args(tls)
            .args(["-u", "foobar_app", "foobar", "--batch", "-e", sql])
            .env("MYSQL_PWD", password.trim())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// The topology this run brought up (its addresses).
    fn topology(&self) -> rampart_topology::Topology {
        match self.mode {
            Mode::Local { net } => {
                rampart_topology::Topology::default_for(rampart_topology::Mode::Local, net)
            }
            Mode::Isolated { .. } => {
                rampart_topology::Topology::default_for(rampart_topology::Mode::Isolated, 0)
            }
        }
    }

    /// etcdctl on `host` (inside it in isolated mode) against every member, with the
    /// host's etcd client certificate when `cert`; (success, stdout and stderr).
    fn etcdctl(&self, host: &str, cert: bool, args: &[&str]) -> (bool, String) {
        let dir = self.state().join("hosts").join(host);
        let mut c = self.on(host, &self.etcdctl);
        c.arg(format!(
            "--endpoints={}",
            self.topology().etcd_endpoints().join(",")
        ))
        .arg(format!(
            "--cacert={}",
            self.state().join("certs/ca.pem").display()
        ))
        .args(["--dial-timeout=2s", "--command-timeout=5s"]);
        if cert {
            c.arg(format!("--cert={}", dir.join("etcd-client.pem").display()))
                .arg(format!("--key={}", dir.join("etcd-client.key").display()));
        }
        let out = c.args(args).stdin(Stdio::null()).output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// curl on `host` for `https://<first member>:2379/version`, with the host's etcd
    /// client certificate when `cert`; (success, stdout and stderr).
    fn etcd_version(&self, host: &str, cert: bool) -> (bool, String) {
        let dir = self.state().join("hosts").join(host);
        let endpoint = self.topology().etcd_endpoints()[0].clone();
        let mut c = self.on(host, &self.curl);
        c.args(["-sS", "--max-time", "5", "--cacert"])
            .arg(self.state().join("certs/ca.pem"));
        if cert {
            c.arg("--cert")
                .arg(dir.join("etcd-client.pem"))
                .arg("--key")
                .arg(dir.join("etcd-client.key"));
        }
        let out = c.arg(format!("{endpoint}/version")).output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn db(&self, host: &str) -> String {
        let last = if host == "db1" { 21 } else { 22 };
        match self.mode {
            Mode::Local { net } => format!("127.{net}.2.{last}"),
            Mode::Isolated { .. } => format!("198.18.2.{last}"),
        }
    }

    /// GET `path` on web1's admin listener (from inside web1 in isolated mode).
    fn web1_admin(&self, path: &str) -> String {
        match self.mode {
            Mode::Local { net } => {
                rampart_infra::stack::http_get(
                    format!("127.{net}.1.11:9181").parse().unwrap(),
                    path,
                )
                .unwrap()
                .1
            }
            Mode::Isolated { .. } => {
                let out = self
                    .on("web1", &self.curl)
                    .args(["-sS", "--max-time", "5"])
                    .arg(format!("http://198.18.9.11:9181{path}"))
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).into_owned()
            }
        }
    }

    fn host(&self, verb: &str, host: &str) {
        let out = rampart(self.state(), &[verb, host]);
        assert!(
            out.status.success(),
            "rampart {verb} {host}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs GET `path` over and over (a new connection each time, at most `max`
    /// requests and 60 s) in a thread while `during` runs, then `settle` more requests;
    /// returns every status with its `X-Served-By` and `X-Db-Role`.
    fn under_load(
        &self,
        path: &str,
        max: usize,
        during: impl FnOnce(),
        settle: usize,
    ) -> Vec<(u16, String, String)> {
        let results = Mutex::new(Vec::new());
        let count = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let loader = scope.spawn(|| {
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                for _ in 0..max {
                    if stop.load(Ordering::Relaxed) || std::time::Instant::now() > deadline {
                        break;
                    }
                    let out = self
                        .curl_command(path, &["-o", "/dev/null"])
                        .output()
                        .unwrap();
                    let h = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
                    let status = h
                        .split_whitespace()
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    let get = |n: &str| {
                        h.lines()
                            .find_map(|l| l.strip_prefix(&format!("{n}:")))
                            .map(|v| v.trim().to_owned())
                            .unwrap_or_default()
                    };
                    results
                        .lock()
                        .unwrap()
                        .push((status, get("x-served-by"), get("x-db-role")));
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
            eventually("the loop to get going", Duration::from_secs(30), || {
                (count.load(Ordering::Relaxed) >= 10).then_some(())
            });
            during();
            let target = count.load(Ordering::Relaxed) + settle;
            eventually("the loop to continue", Duration::from_secs(60), || {
                (count.load(Ordering::Relaxed) >= target || loader.is_finished()).then_some(())
            });
            stop.store(true, Ordering::Relaxed);
            loader.join().unwrap();
        });
        results.into_inner().unwrap()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let out = rampart(self.state(), &["down", "--purge"]);
        if !out.status.success() {
            eprintln!("rampart down: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// Path traversal attempts the suite sends on purpose.
const TRAVERSAL: [&str; 6] = [
    "/../../../../etc/passwd",
    "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/..%5c..%5cetc%5cpasswd",
    "/site.css%00.txt",
    "/static/..%2f..%2f..%2fetc/passwd",
];

/// Issue 15's benign-traffic check: lb1 runs the CRS in block mode at paranoia level 1,
/// and the suite's requests (the foobar API, the static site, the browser) went through
/// it with zero blocks (the bad input it sends on purpose aside). lb1's access log
/// is the evidence: every request has a line and
/// a request id, and a flagged one carries the WAF's decision.
fn passed_the_waf_unblocked(stack: &Stack) {
    let host = stack.state().join("hosts/lb1");
    let config = std::fs::read_to_string(host.join("lb.toml")).unwrap();
    assert!(
        config.contains("[waf]\n")
            && config.contains("mode = \"block\"")
            && config.contains("paranoia_level = 1"),
        "{config}"
    );
    let log = std::fs::read_to_string(host.join("access.log")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(lines.len() > 20, "lb1 logged {} requests", lines.len());
    assert!(lines
        .iter()
        .all(|l| l["request_id"].as_str().is_some_and(|r| r.len() == 16)));
    // Every block but of the suite's deliberate bad input is a false positive.
    let deliberate = stack.deliberate.lock().unwrap();
    let blocked: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["waf"]["decision"] == "block")
        .filter(|l| !deliberate.iter().any(|d| l["request_id"] == d.as_str()))
        .collect();
    assert!(
        blocked.is_empty(),
        "the WAF blocked the suite's own requests: {blocked:#?}"
    );
    let flagged = lines.iter().filter(|l| !l["waf"].is_null()).count();
    println!(
        "WAF: {} requests through lb1 in block mode, 0 blocked, {flagged} flagged under the threshold",
        lines.len()
    );
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn whole_path_through_the_load_balancer() {
    let Some(stack) = Stack::up(Mode::Local { net: net_for(1) }) else {
        return;
    };
    whole_path(&stack);
    passed_the_waf_unblocked(&stack);
}

/// The etcd cluster, from its client hosts with their certificates: every member
/// healthy, one cluster of monitor, dns and lb1 advertising the planned endpoints, a
/// write from one client host read back on another, and no answer without a client
/// certificate. Returns the member IDs (sorted), which survive `down` and `up`.
fn etcd_cluster(stack: &Stack) -> Vec<String> {
    let (ok, health) = stack.etcdctl("db1", true, &["endpoint", "health", "--cluster"]);
    assert!(ok, "{health}");
    assert_eq!(health.matches(" is healthy").count(), 3, "{health}");
    let (ok, list) = stack.etcdctl("db1", true, &["member", "list", "-w", "simple"]);
    assert!(ok, "{list}");
    // "<id>, started, <name>, <peer url>, <client url>, false"
    let rows: Vec<Vec<&str>> = list
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(", ").collect())
        .collect();
    let mut names: Vec<&str> = rows.iter().map(|r| r[2]).collect();
    names.sort_unstable();
    assert_eq!(names, ["dns", "lb1", "monitor"], "{list}");
    assert!(rows.iter().all(|r| r[1] == "started"), "{list}");
    let mut clients: Vec<String> = rows.iter().map(|r| r[4].to_owned()).collect();
    clients.sort();
    let mut endpoints = stack.topology().etcd_endpoints();
    endpoints.sort();
    assert_eq!(clients, endpoints, "{list}");
    // Every client host reaches the cluster: a write from web2 is read on db2.
    let value = format!("v{}", std::process::id());
    let (ok, out) = stack.etcdctl("web2", true, &["put", "/rampart/test/e2e", &value]);
    assert!(ok, "{out}");
    let (ok, out) = stack.etcdctl(
        "db2",
        true,
        &["get", "--print-value-only", "/rampart/test/e2e"],
    );
    assert!(ok && out.trim() == value, "{out}");
    // With a client certificate the client port answers; without one, the handshake
    // is refused (and etcdctl gets nothing).
    let (ok, out) = stack.etcd_version("db1", true);
    assert!(ok && out.contains("\"etcdserver\""), "{out}");
    let (ok, out) = stack.etcd_version("db1", false);
    assert!(!ok, "answered without a client certificate: {out}");
    let (ok, out) = stack.etcdctl("db1", false, &["get", "/rampart/test/e2e"]);
    assert!(!ok, "etcdctl without a certificate: {out}");
    println!(
        "etcd: 3 members healthy in one cluster ({}); refused without a client certificate",
        names.join(", ")
    );
    let mut ids: Vec<String> = rows.iter().map(|r| r[0].to_owned()).collect();
    ids.sort();
    ids
}

/// The judged end-to-end checks of the request path, the same in both modes.
fn whole_path(stack: &Stack) {
    // 0. etcd: one healthy cluster, and a member that stops (its host stopped) comes back
    // alone with `rampart start`, rejoining the other two.
    let members = etcd_cluster(stack);
    stack.host("stop", "lb1");
    // The other two keep a quorum (a new leader within an election, should lb1's member
    // have led): two healthy, lb1's not.
    eventually(
        "two healthy members with lb1 stopped",
        Duration::from_secs(20),
        || {
            let (ok, health) = stack.etcdctl("db1", true, &["endpoint", "health", "--cluster"]);
            (!ok && health.matches(" is healthy").count() == 2).then_some(())
        },
    );
    stack.host("start", "lb1");
    let (ok, health) = stack.etcdctl("db1", true, &["endpoint", "health", "--cluster"]);
    assert!(ok, "lb1's member after `rampart start lb1`: {health}");

    // 1. Round robin: consecutive requests alternate between web1 and web2.
    let served: Vec<String> = (0..6)
        .map(|_| {
            let r = stack.curl("/", &[]);
            assert_eq!(r.status, 200, "{r:?}");
            assert!(r.body.contains("Recent messages"), "{}", r.body);
            r.header("x-served-by").unwrap()
        })
        .collect();
    for pair in served.windows(2) {
        assert_ne!(pair[0], pair[1], "no alternation: {served:?}");
    }
    assert!(
        served.iter().all(|s| s == "web1" || s == "web2"),
        "{served:?}"
    );

    // Security headers on every response, HSTS from the load balancer.
    let home = stack.curl("/", &[]);
    for h in [
        "content-security-policy",
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
        "strict-transport-security",
    ] {
        assert!(home.header(h).is_some(), "{h} missing: {}", home.headers);
    }

    // 2. Read-your-writes: a created user is read back at once by the same client
    // (cookie jar), from the replica or correctly from the primary.
    let jar = stack.state().join("cookies.txt");
    let jar = jar.to_str().unwrap();
    let mut ids = Vec::new();
    for i in 0..15 {
        let email = format!("user{i}@example.com");
        let created = stack.post_json(
            "/api/users",
            &format!(r#"{{"name":"User {i}","email":"{email}"}}"#),
            &["-c", jar],
        );
        assert_eq!(created.status, 201, "{created:?}");
        assert_eq!(created.header("x-db-role").as_deref(), Some("primary"));
        let gtid = created.header("x-db-gtid").expect("write GTID");
        assert!(created.header("set-cookie").unwrap().contains(&gtid));
        let user = json(&created.body);
        let id = user["id"].as_u64().unwrap();
        let read = stack.curl(&format!("/api/users/{id}"), &["-b", jar]);
        assert_eq!(
            read.status, 200,
            "read-your-writes failed for {id}: {read:?}"
        );
        assert_eq!(json(&read.body)["email"], email.as_str());
        let role = read.header("x-db-role").unwrap();
        assert!(role == "replica" || role == "primary", "{role}");
        ids.push((id, email));
    }
    // A GTID the primary has never had (made up, or far in the future) is answered by
    // the primary at once rather than holding a replica connection in MASTER_GTID_WAIT.
    let (some_id, _) = ids[3].clone();
    let bogus = stack.curl(
        &format!("/api/users/{some_id}"),
        &["-H", "X-Db-Gtid: 0-1-999999999,7-7-7"],
    );
    assert_eq!(
        (bogus.status, bogus.header("x-db-role").as_deref()),
        (200, Some("primary")),
        "{bogus:?}"
    );
    // A stale or foreign cookie never breaks static files.
    let css = stack.curl("/site.css", &["-b", "rampart_gtid=not-a-gtid"]);
    assert_eq!(css.status, 200, "{css:?}");

    // A message by the first user shows up on the home page, escaped.
    let (first, _) = ids[0].clone();
    let msg = stack.post_json(
        "/api/messages",
        &format!(r#"{{"user_id":{first},"body":"hello <b>world</b>"}}"#),
        &["-c", jar],
    );
    assert_eq!(msg.status, 201, "{msg:?}");
    let msg_id = json(&msg.body)["id"].as_u64().unwrap();
    let got = stack.curl(&format!("/api/messages/{msg_id}"), &["-b", jar]);
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(json(&got.body)["body"], "hello <b>world</b>");
    assert_eq!(json(&got.body)["author"], "User 0");
    assert_eq!(stack.curl("/api/messages/99999999", &[]).status, 404);
    let page = stack.curl("/", &["-b", jar]);
    assert!(
        page.body.contains("hello &lt;b&gt;world&lt;/b&gt;"),
        "{}",
        page.body
    );
    let latest = stack.curl("/api/messages?limit=1", &["-b", jar]);
    assert_eq!(json(&latest.body)["messages"][0]["author"], "User 0");

    // 3. Replication: the rows exist on the replica, checked in MariaDB itself.
    let (last_id, last_email) = ids.last().cloned().unwrap();
    eventually(
        "the user to reach the replica",
        Duration::from_secs(20),
        || {
            let out = stack.root_sql(
                "db2",
                &format!("SELECT email FROM foobar.users WHERE id = {last_id}"),
            );
            (out.trim() == last_email).then_some(())
        },
    );
    let rows = stack.root_sql(
        "db2",
        "SELECT COUNT(*) FROM foobar.users WHERE email LIKE 'user%@example.com'",
    );
    assert_eq!(rows.trim(), "15");

    // 4. db2 stopped: reads keep working through the primary with no failure, and go
    // back to the replica once it is back.
    let path = format!("/api/users/{last_id}");
    let results = stack.under_load(&path, 400, || stack.host("stop", "db2"), 25);
    let failed: Vec<_> = results.iter().filter(|r| r.0 != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        results.len()
    );
    assert_eq!(
        results.last().unwrap().2,
        "primary",
        "reads should fall back to the primary: {results:?}"
    );
    stack.host("start", "db2");
    eventually(
        "reads to return to the replica",
        Duration::from_secs(20),
        || (stack.curl(&path, &[]).header("x-db-role").as_deref() == Some("replica")).then_some(()),
    );

    // 4b. A lagging replica (its SQL thread stopped while the primary takes writes) is
    // left for the primary once the lag passes max_replica_lag (2 s), and used again
    // once it has caught up. A read that presents its own write's GTID never sees stale
    // data meanwhile.
    stack.root_sql("db2", "STOP SLAVE SQL_THREAD");
    let lagged = stack.post_json(
        "/api/users",
        r#"{"name":"Lagged","email":"lagged@example.com"}"#,
        &[],
    );
    assert_eq!(lagged.status, 201, "{lagged:?}");
    let lagged_id = json(&lagged.body)["id"].as_u64().unwrap();
    let gtid = lagged.header("x-db-gtid").unwrap();
    let own = stack.curl(
        &format!("/api/users/{lagged_id}"),
        &["-H", &format!("X-Db-Gtid: {gtid}")],
    );
    assert_eq!(
        (own.status, own.header("x-db-role").as_deref()),
        (200, Some("primary")),
        "read-your-writes with the replica stopped: {own:?}"
    );
    eventually(
        "reads to leave the lagging replica",
        Duration::from_secs(30),
        || (stack.curl(&path, &[]).header("x-db-role").as_deref() == Some("primary")).then_some(()),
    );
    stack.root_sql("db2", "START SLAVE SQL_THREAD");
    eventually(
        "reads to return to the caught-up replica",
        Duration::from_secs(30),
        || {
            let r = stack.curl(&format!("/api/users/{lagged_id}"), &[]);
            (r.status == 200 && r.header("x-db-role").as_deref() == Some("replica")).then_some(())
        },
    );

    // 4c. A diverged replica is rebuilt from the primary. A row written on db2 alone
    // (as root, past read_only) gives it a transaction db1 never had, so the next
    // write from db1 breaks replication (gtid_strict_mode). `rampart db rebuild db2`
    // copies db1's live data with mariadb-backup: db2's own row is gone, db1's rows are
    // all there, and it replicates the writes that follow. The primary and non-database
    // hosts are refused.
    stack.root_sql(
        "db2",
        "INSERT INTO foobar.users (name, email, created_at) \
         VALUES ('Diverged', 'diverged@example.com', NOW())",
    );
    let before = stack.post_json(
        "/api/users",
        r#"{"name":"Before","email":"before-rebuild@example.com"}"#,
        &[],
    );
    assert_eq!(before.status, 201, "{before:?}");
    let out = rampart(stack.state(), &["db", "rebuild", "db2"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("db2: rebuilt from db1 at GTID "),
        "rampart db rebuild db2: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("rebuild: {}", said.trim());
    let kept = said
        .split("kept in ")
        .nth(1)
        .map(|p| PathBuf::from(p.trim()))
        .unwrap();
    assert!(kept.join("foobar").is_dir(), "{}", kept.display());
    assert_eq!(
        stack
            .root_sql(
                "db2",
                "SELECT COUNT(*) FROM foobar.users WHERE email = 'diverged@example.com'"
            )
            .trim(),
        "0"
    );
    let after = stack.post_json(
        "/api/users",
        r#"{"name":"After","email":"after-rebuild@example.com"}"#,
        &[],
    );
    assert_eq!(after.status, 201, "{after:?}");
    let count = "SELECT COUNT(*) FROM foobar.users WHERE email LIKE '%rebuild@example.com'";
    eventually(
        "the write after the rebuild to reach db2",
        Duration::from_secs(20),
        || (stack.root_sql("db2", count).trim() == "2").then_some(()),
    );
    let checksum = "CHECKSUM TABLE foobar.users";
    assert_eq!(
        stack.root_sql("db1", checksum),
        stack.root_sql("db2", checksum)
    );
    for (host, why) in [
        ("db1", "is the primary"),
        ("web1", "is not a database host"),
    ] {
        let out = rampart(stack.state(), &["db", "rebuild", host]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(why),
            "rampart db rebuild {host}: {err}"
        );
    }

    // 5. web1 stopped under a bounded loop: zero failed requests, then it comes back.
    let results = stack.under_load("/", 400, || stack.host("stop", "web1"), 25);
    let failed: Vec<_> = results.iter().filter(|r| r.0 != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        results.len()
    );
    assert!(
        results.iter().rev().take(10).all(|r| r.1 == "web2"),
        "{results:?}"
    );
    stack.host("start", "web1");
    eventually("web1 back in rotation", Duration::from_secs(20), || {
        (stack.curl("/", &[]).header("x-served-by").as_deref() == Some("web1")).then_some(())
    });

    // 6. Static files: revalidation gets 304; traversal gets 400/404 and never a file.
    let css = stack.curl("/site.css", &[]);
    assert_eq!(css.status, 200, "{css:?}");
    let etag = css.header("etag").unwrap();
    assert!(css.header("last-modified").is_some() && css.header("cache-control").is_some());
    let again = stack.curl("/site.css", &["-H", &format!("If-None-Match: {etag}")]);
    assert_eq!(again.status, 304, "{again:?}");
    let br = stack.curl("/site.css", &["-H", "Accept-Encoding: br"]);
    assert_eq!(br.header("content-encoding").as_deref(), Some("br"));
    // The WAF (CRS, block mode) answers most of them first: 403 with a request id.
    for evil in TRAVERSAL {
        let r = stack.deliberate(stack.curl(evil, &[]));
        let waf = r.status == 403
            && r.header("x-request-id")
                .is_some_and(|id| r.body.contains(&id));
        assert!(r.status == 400 || r.status == 404 || waf, "{evil}: {r:?}");
        assert!(!r.body.contains("root:"), "{evil} leaked a file");
    }

    // 7. Bad input: clear 4xx errors naming the problem, and the servers stay up.
    let r = stack.post_json("/api/users", r#"{"name":"x","#, &[]);
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(json(&r.body)["error"], "malformed_json");
    let r = stack.post_json("/api/users", r#"{"name":"x","email":"not-an-email"}"#, &[]);
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(json(&r.body)["field"], "email");
    let r = stack.post_json("/api/messages", r#"{"user_id":"1","body":"x"}"#, &[]);
    assert_eq!(json(&r.body)["field"], "user_id", "{r:?}");
    let r = stack.post_json("/api/messages", r#"{"user_id":999999,"body":"x"}"#, &[]);
    assert_eq!(
        (r.status, json(&r.body)["field"].clone()),
        (422, "user_id".into()),
        "{r:?}"
    );
    let big = format!(r#"{{"name":"{}","email":"a@b.co"}}"#, "x".repeat(40_000));
    let r = stack.post_json("/api/users", &big, &[]);
    assert_eq!(r.status, 413, "{r:?}");
    let r = stack.post_json(
        "/api/users",
        &format!(r#"{{"name":"Dup","email":"{last_email}"}}"#),
        &[],
    );
    assert_eq!(r.status, 409, "{r:?}");
    // Not JSON: the WAF refuses the content type first (CRS 920420), or the API does.
    let r = stack.deliberate(stack.curl(
        "/api/users",
        &["-H", "content-type: text/plain", "--data-binary", "x"],
    ));
    assert!(r.status == 415 || r.status == 403, "{r:?}");
    assert_eq!(stack.curl("/api/users/abc", &[]).status, 400);
    assert_eq!(stack.curl("/api/users/99999999", &[]).status, 404);
    assert_eq!(
        stack
            .curl("/api/users/1", &["-H", "X-Db-Gtid: nonsense"])
            .status,
        400
    );
    for _ in 0..2 {
        assert_eq!(
            stack.curl("/", &[]).status,
            200,
            "a server went down after bad input"
        );
    }

    // 8. Least privilege: the application user cannot drop tables or write to the
    // replica.
    let (ok, out) = stack.app_sql(&stack.db("db1"), "DROP TABLE users");
    assert!(!ok && out.contains("DROP command denied"), "{out}");
    let (ok, out) = stack.app_sql(
        &stack.db("db2"),
        "INSERT INTO users (name, email, created_at) VALUES ('x', 'x@example.com', NOW())",
    );
    assert!(!ok && out.contains("read-only"), "{out}");
    let (ok, out) = stack.app_sql(&stack.db("db1"), "SELECT COUNT(*) FROM users");
    assert!(ok, "{out}");
    // The databases take TLS only: the same login without TLS is refused, on both.
    for db in ["db1", "db2"] {
        let (ok, out) = stack.app_sql_with(&stack.db(db), "SELECT 1", &["--skip-ssl"]);
        assert!(!ok, "{db} accepted a plaintext login: {out}");
    }
    // Replication verifies the primary's certificate.
    let replica = rampart_infra::mariadb::replica_status(&stack.instance("db2"))
        .unwrap()
        .unwrap();
    assert!(replica.verified_tls, "{replica:?}");

    // Metrics: reads by role, including the fallbacks above.
    let web1_metrics = stack.web1_admin("/metrics");
    assert!(
        web1_metrics.contains("rampart_web_db_reads_total{role=\"replica\"}"),
        "{web1_metrics}"
    );

    // Status, then a second `up` reuses the data.
    let st = json(&String::from_utf8_lossy(
        &rampart(stack.state(), &["status", "--json"]).stdout,
    ));
    assert_eq!(
        st["ca_cert"],
        stack.state().join("certs/ca.pem").to_str().unwrap()
    );
    let hosts = st["hosts"].as_array().unwrap();
    let db1 = hosts.iter().find(|h| h["name"] == "db1").unwrap();
    assert_eq!(db1["services"][0]["state"], "running");
    assert_eq!(db1["services"][0]["port"], 3306);
    assert_eq!(db1["addresses"][0], stack.db("db1").as_str());
    // Each member's etcd shows first on its host, its client port the main one.
    for member in ["monitor", "dns", "lb1"] {
        let h = hosts.iter().find(|h| h["name"] == member).unwrap();
        let etcd = &h["services"][0];
        assert_eq!(
            (&etcd["name"], &etcd["state"], &etcd["port"]),
            (&"etcd".into(), &"running".into(), &2379.into()),
            "{member}: {etcd}"
        );
        assert_eq!(etcd["ports"]["peer"], 2380);
        assert_eq!(etcd["ports"]["metrics"], 2381);
    }
    let down = rampart(stack.state(), &["down"]);
    assert!(down.status.success());
    let st = json(&String::from_utf8_lossy(
        &rampart(stack.state(), &["status", "--json"]).stdout,
    ));
    assert!(st["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|h| h["services"].as_array().unwrap())
        .all(|s| s["state"] == "stopped"));
    let up = rampart(stack.state(), &stack.up_args());
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let r = stack.curl(&format!("/api/users/{last_id}"), &[]);
    assert_eq!(r.status, 200, "data lost across down/up: {r:?}");
    // The same etcd cluster (its data directories kept), healthy again.
    assert_eq!(
        etcd_cluster(stack),
        members,
        "etcd members changed across down/up"
    );
}

#[test]
fn attached_up_stops_everything_on_ctrl_c() {
    if !mariadb_installed() || tool("curl", None).is_none() {
        return;
    }
    let state = tempfile::Builder::new().prefix("rs").tempdir().unwrap();
    let net = net_for(2);
    let mut child = Command::new(RAMPART)
        .args(["up", "--local", "--net", &net.to_string(), "--state"])
        .arg(state.path())
        .env("RAMPART_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut seen = String::new();
    let ready = loop {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains("Ctrl-C stops everything") {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let pids: Vec<u64> = {
        let st = rampart(state.path(), &["status", "--json"]);
        let v = json(&String::from_utf8_lossy(&st.stdout));
        v["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|h| h["services"].as_array().unwrap().clone())
            .filter_map(|s| s["pid"].as_u64())
            .collect()
    };
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = eventually("rampart up to exit", Duration::from_secs(60), || {
        child.try_wait().unwrap()
    });
    if !ready {
        let _ = rampart(state.path(), &["down", "--purge"]);
        panic!("never ready:\n{seen}");
    }
    assert!(status.success(), "{status:?}");
    // dns, db1, db2, web1, web2, lb1, the monitor's five, the backup service, an agent
    // on each of 8, the three etcd members and the certificate renewer.
    assert_eq!(pids.len(), 24, "{pids:?}");
    for pid in pids {
        // A zombie still has a /proc entry; a reaped or re-parented-and-reaped one does not.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "pid {pid} still running: {stat}"
        );
    }
    let _ = rampart(state.path(), &["down", "--purge"]);
}

/// The certificate a TLS listener serves to a new connection: (serial, notBefore,
/// notAfter as `openssl x509` prints them), through `openssl s_client` (with
/// `-starttls mysql` for MariaDB). `None` when no certificate came.
fn served_cert(addr: std::net::SocketAddr, mysql: bool) -> Option<[String; 3]> {
    let mut c = Command::new("timeout");
    c.args(["10", "openssl", "s_client", "-connect", &addr.to_string()]);
    if mysql {
        c.args(["-starttls", "mysql"]);
    }
    let out = c.stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-startdate", "-enddate"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    use std::io::Write;
    x509.stdin.take()?.write_all(&out.stdout).ok()?;
    let text = String::from_utf8(x509.wait_with_output().ok()?.stdout).ok()?;
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::to_owned)
    };
    Some([field("serial=")?, field("notBefore=")?, field("notAfter=")?])
}

/// Issue 17: the run's certificates live 90 s here, so `rampart renew` (started by
/// `up`) renews each at about 62 s and again at about 124 s, while reads and writes go
/// through the load balancer: no request fails, and every TLS listener of the site
/// (the load balancer, the web servers' mutual TLS, MariaDB through its keeper's FLUSH
/// SSL, the etcd members' client and peer ports, Prometheus behind the gate,
/// Alertmanager and the dashboard) serves a renewed certificate without a restart, after
/// the first ones expired.
#[test]
fn certificates_renew_under_load_without_a_failed_request() {
    if tool("openssl", None).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site.toml");
    std::fs::write(&site, "[certificates]\nlifetime = \"90s\"\n").unwrap();
    let net = net_for(17);
    let Some(stack) = Stack::up_with(Mode::Local { net }, &["--topology", site.to_str().unwrap()])
    else {
        return;
    };
    let t = stack.topology();
    let p = &t.ports;
    let at = |host: &str, port: u16| {
        t.sock(t.host(host).unwrap(), rampart_topology::Segment::Mgmt, port)
    };
    let data = |host: &str| t.sock(t.host(host).unwrap(), rampart_topology::Segment::Data, p.db);
    let app =
        |host: &str, port: u16| t.sock(t.host(host).unwrap(), rampart_topology::Segment::App, port);
    let public = t.sock(
        t.host("lb1").unwrap(),
        rampart_topology::Segment::Public,
        p.lb_https,
    );
    let mut listeners = vec![
        ("lb1 https", public, false),
        ("web1", app("web1", p.web), false),
        ("web2", app("web2", p.web), false),
        ("db1 mysql", data("db1"), true),
        ("db2 mysql", data("db2"), true),
        ("prometheus (gate)", at("monitor", p.prometheus), false),
        ("prometheus", at("monitor", p.prometheus_internal), false),
        ("alertmanager", at("monitor", p.alertmanager), false),
        ("dashboard", at("monitor", p.dashboard), false),
    ];
    for h in ["monitor", "dns", "lb1"] {
        listeners.push((
            leak(format!("{h} etcd client")),
            at(h, p.etcd_client),
            false,
        ));
        listeners.push((leak(format!("{h} etcd peer")), at(h, p.etcd_peer), false));
    }
    let first: Vec<[String; 3]> = listeners
        .iter()
        .map(|(what, addr, mysql)| {
            served_cert(*addr, *mysql)
                .unwrap_or_else(|| panic!("{what} ({addr}) served no certificate"))
        })
        .collect();

    // Reads (a new TLS connection each) and writes through the load balancer for
    // 150 s, bounded in count too.
    let stop = AtomicBool::new(false);
    let results: Mutex<Vec<(u16, &str)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for (kind, max) in [("read", 3000), ("write", 1500)] {
            let (stack, stop, results) = (&stack, &stop, &results);
            scope.spawn(move || {
                for i in 0..max {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let r = if kind == "read" {
                        stack.curl("/api/messages?limit=1", &[])
                    } else {
                        stack.post_json(
                            "/api/users",
                            &format!(
                                r#"{{"name":"Renewal {i}","email":"renewal{i}@example.com"}}"#
                            ),
                            &[],
                        )
                    };
                    results.lock().unwrap().push((r.status, kind));
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        }
        std::thread::sleep(Duration::from_secs(150));
        stop.store(true, Ordering::Relaxed);
    });
    let results = results.into_inner().unwrap();
    let failed: Vec<_> = results
        .iter()
        .filter(|(status, kind)| *status != if *kind == "read" { 200 } else { 201 })
        .collect();
    let reads = results.iter().filter(|r| r.1 == "read").count();
    eprintln!(
        "renewal under load: {reads} reads and {} writes in 150 s, {} failed",
        results.len() - reads,
        failed.len()
    );
    assert!(
        reads > 100 && results.len() - reads > 100,
        "too little load: {}",
        results.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        results.len()
    );

    // Every listener now serves a certificate issued after its first one, and the
    // first ones have expired (so nothing still running could be using them).
    for ((what, addr, mysql), old) in listeners.iter().zip(&first) {
        let now =
            served_cert(*addr, *mysql).unwrap_or_else(|| panic!("{what} served no certificate"));
        eprintln!(
            "{what}: serial {} valid {} .. {} (first {} .. {})",
            now[0], now[1], now[2], old[1], old[2]
        );
        assert_ne!(
            now[0], old[0],
            "{what} ({addr}) still serves its first certificate"
        );
        let end = |s: &str| {
            let out = Command::new("date")
                .args(["-d", s, "+%s"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<i64>()
                .unwrap()
        };
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(
            end(&old[2]) < unix,
            "{what}: the first certificate has not expired yet"
        );
        assert!(end(&now[2]) > unix, "{what}: serves an expired certificate");
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Names of the root namespace's network interfaces.
fn root_links() -> std::collections::BTreeSet<String> {
    let out = Command::new("ip").args(["-o", "link"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}

/// Isolated mode, as root: the real namespaces, firewalls, DNS and forward; the
/// connectivity matrix with every service up, nmap, dig, a headless browser on the client
/// host, `firewall check`, the request-path checks of local mode, and a teardown that
/// leaves nothing behind.
#[test]
fn isolated_topology_end_to_end() {
    if !rampart_test_support::require_root("isolated mode (network namespaces)") {
        return;
    }
    for t in ["nft", "dig", "nmap", "chromium", "certutil"] {
        if tool(t, None).is_none() {
            return;
        }
    }
    let links_before = root_links();
    let prefix = format!("ri{}", std::process::id() % 100_000);
    let publish = free_port();
    let Some(stack) = Stack::up(Mode::Isolated {
        prefix: prefix.clone(),
        publish,
    }) else {
        return;
    };
    let exec = |host: &str, args: &[&str]| -> std::process::Output {
        Command::new(RAMPART)
            .arg("exec")
            .arg("--state")
            .arg(stack.state())
            .args([host, "--"])
            .args(args)
            .output()
            .unwrap()
    };
    let stdout = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();

    // The root namespace has no route to the topology.
    let routes = Command::new("ip").args(["route"]).output().unwrap();
    let routes = stdout(&routes);
    assert!(
        !routes.contains("198.18.") && !routes.contains("203.0.113."),
        "{routes}"
    );

    // DNS from the client: the site's names are the load balancer's public address,
    // over UDP and TCP and through the client's resolver; other zones are refused.
    for args in [
        vec!["dig", "+short", "@203.0.113.53", "www.foobar.com", "A"],
        vec!["dig", "+short", "+tcp", "@203.0.113.53", "foobar.com", "A"],
        vec!["dig", "+short", "www.foobar.com"],
    ] {
        let out = exec("client", &args);
        assert_eq!(stdout(&out).trim(), "203.0.113.10", "{args:?}: {out:?}");
    }
    let refused = stdout(&exec(
        "client",
        &["dig", "@203.0.113.53", "example.org", "A"],
    ));
    assert!(refused.contains("status: REFUSED"), "{refused}");
    println!("dig from client: www.foobar.com A 203.0.113.10; example.org REFUSED");

    // The operator's forward on 127.0.0.1 reaches the site through the client host.
    let fwd = Command::new(&stack.curl)
        .args(["-sS", "--max-time", "10", "-D", "-", "--cacert"])
        .arg(stack.state().join("certs/ca.pem"))
        .args([
            "--resolve",
            &format!("www.foobar.com:{publish}:127.0.0.1"),
            &format!("https://www.foobar.com:{publish}/"),
        ])
        .output()
        .unwrap();
    let fwd = CurlOut::parse(&fwd);
    assert_eq!(fwd.status, 200, "{fwd:?}");

    // 1. The connectivity matrix with every service up: each allowed flow connects
    // (the agents' pushes to the monitor's Prometheus among them), every other flow is
    // dropped, the dashboard (3000) and the agents' own metrics (9100) included.
    let t = rampart_topology::Topology::default_for(rampart_topology::Mode::Isolated, 0);
    let (open, _) = matrix::matrix(
        &|host, script| stdout(&exec(host, &["bash", "-c", script])),
        &t,
        "",
    );
    // 14 service flows (replication both ways: either database may be the primary),
    // every agent's push (7 hosts with a management address), etcd's: 6 peer flows
    // between the 3 members, 12 client flows (db1, db2, web1, web2 to each member) and
    // the monitor to the other 2 members' metrics; and the backup host's 6: MySQL, the
    // backup source and the keeper's status on each database host.
    assert_eq!(open, 47);
    // Named here for the record: the etcd ports are dropped for every other host.
    for (from, to, port) in [
        ("web1", "lb1", 2380),
        ("db1", "dns", 2381),
        ("lb1", "dns", 2379),
        ("client", "dns", 2379),
    ] {
        assert!(
            !t.allows(from, to, rampart_topology::policy::Proto::Tcp, port),
            "{from} -> {to}:{port}"
        );
    }
    println!("etcd ports 2379/2380/2381: only the policy's flows connect (web1 -> lb1:2380, db1 -> dns:2381, lb1 -> dns:2379, client -> dns:2379 dropped above)");

    // 2. nmap from the client: only 80 and 443 on the load balancer; nothing at all on
    // the hosts behind it. From lb1 the primary's 3306 is unreachable; from web1 open.
    let prefix_of = |host: &str| -> Vec<std::ffi::OsString> {
        vec![
            RAMPART.into(),
            "exec".into(),
            "--state".into(),
            stack.state().into(),
            host.into(),
            "--".into(),
        ]
    };
    use rampart_test_support::scan::open_tcp_ports;
    let started = std::time::Instant::now();
    let (lb_open, raw) = open_tcp_ports(&prefix_of("client"), "203.0.113.10", "-").unwrap();
    assert_eq!(lb_open, [80, 443], "{raw}");
    println!(
        "nmap -sS -p- 203.0.113.10 from client: open {lb_open:?} ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
    // No route from the public segment: nmap cannot even send (`failed to determine
    // route`), which is the strongest form of "nothing open".
    let unreachable = |host: &str, target: &str, ports: &str| match open_tcp_ports(
        &prefix_of(host),
        target,
        ports,
    ) {
        Ok((found, raw)) => assert!(found.is_empty(), "{host} -> {target}: {raw}"),
        Err(e) => assert!(
            e.contains("failed to determine route"),
            "{host} -> {target}: {e}"
        ),
    };
    for target in ["198.18.1.11", "198.18.2.21", "198.18.9.2"] {
        unreachable("client", target, "-");
        println!("nmap -sS -p- {target} from client: unreachable, nothing open");
    }
    unreachable("lb1", "198.18.2.21", "3306");
    let (found, raw) = open_tcp_ports(&prefix_of("web1"), "198.18.2.21", "3306").unwrap();
    assert_eq!(found, [3306], "web1 -> db1:3306: {raw}");
    println!("nmap -p3306 198.18.2.21: closed to lb1, open to web1");

    // 3. The attack surface from the client host: port scans of every public address,
    // a TLS scan, slow-client attacks.
    attack_surface(&stack, &prefix_of("client"));

    // 4. The monitoring plane: what an agent's credentials open, from a web server.
    monitoring_plane(&stack, &prefix_of);

    // `firewall check` finds every loaded ruleset as rendered.
    let check = rampart(stack.state(), &["firewall", "check"]);
    assert!(check.status.success(), "{check:?}");

    // 4. A real browser on the client host: DNS, then HTTPS to the load balancer,
    // trusting rampart's CA, and the home page with its messages.
    let msg = stack.post_json(
        "/api/users",
        r#"{"name":"Browser","email":"browser@example.com"}"#,
        &[],
    );
    assert_eq!(msg.status, 201, "{msg:?}");
    let uid = json(&msg.body)["id"].as_u64().unwrap();
    let posted = stack.post_json(
        "/api/messages",
        &format!(r#"{{"user_id":{uid},"body":"seen from a real browser"}}"#),
        &[],
    );
    assert_eq!(posted.status, 201, "{posted:?}");
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("isolated-browser");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let page = rampart_test_support::browser::open(
        &prefix_of("client"),
        "https://www.foobar.com/",
        &stack.state().join("certs/ca.pem"),
        &shots,
    )
    .unwrap();
    assert!(page.dom.contains("Recent messages"), "{}", page.dom);
    assert!(
        page.dom.contains("seen from a real browser"),
        "{}",
        page.dom
    );
    println!(
        "browser: home page with messages; screenshot {}",
        page.screenshot.display()
    );

    // 6. The request-path checks of local mode, from the client host.
    whole_path(&stack);
    passed_the_waf_unblocked(&stack);

    // A crashed run (every service killed, the namespaces left behind) is cleaned up by
    // name and brought up again by the next `up`.
    let pids_of = |st: &serde_json::Value| -> Vec<u64> {
        st["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|h| h["services"].as_array().unwrap().clone())
            .filter_map(|s| s["pid"].as_u64())
            .collect()
    };
    let crashed = pids_of(&json(&stdout(&rampart(
        stack.state(),
        &["status", "--json"],
    ))));
    // 24 as in local mode, plus the forwards to lb1 and to the dashboard.
    assert_eq!(crashed.len(), 26, "{crashed:?}");
    for pid in &crashed {
        Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
    }
    // A SIGKILLed process can take a moment to exit (a loaded disk): the crash is
    // complete once none of them is alive, not when the signals are sent.
    rampart_test_support::eventually(
        "the killed services to exit",
        Duration::from_secs(30),
        || {
            // Gone, or a zombie waiting for its parent.
            let alive = |pid: &u64| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|st| {
                        st.rsplit(')')
                            .next()
                            .map(|r| r.trim_start().starts_with('Z'))
                    })
                    .is_some_and(|zombie| !zombie)
            };
            (!crashed.iter().any(alive)).then_some(())
        },
    );
    let again = rampart(stack.state(), &stack.up_args());
    assert!(again.status.success(), "up after a crash: {again:?}");
    assert!(
        stdout(&again).contains("network: 10 namespaces"),
        "{again:?}"
    );
    let r = stack.curl("/", &[]);
    assert_eq!(r.status, 200, "after a crash and up: {r:?}");
    // etcd's members killed with SIGKILL rejoin as the same cluster.
    etcd_cluster(&stack);
    println!("crash: 26 services killed, the next up rebuilt the network and served 200");

    // 5. Teardown: no namespace, link, resolver file or process left.
    let st = json(&stdout(&rampart(stack.state(), &["status", "--json"])));
    let pids = pids_of(&st);
    assert_eq!(pids.len(), 26, "{st}");
    let down = rampart(stack.state(), &["down"]);
    assert!(down.status.success(), "{down:?}");
    let ns = stdout(&Command::new("ip").args(["netns", "list"]).output().unwrap());
    assert!(!ns.contains(&format!("{prefix}-")), "{ns}");
    // Other tests may add links of their own meanwhile; none may be one of ours.
    let ours: Vec<String> = root_links()
        .difference(&links_before)
        .filter(|l| ["p-", "br-", "eth-"].iter().any(|p| l.starts_with(p)) || l.contains(&prefix))
        .cloned()
        .collect();
    assert!(
        ours.is_empty(),
        "links left in the root namespace: {ours:?}"
    );
    assert!(!Path::new(&format!("/etc/netns/{prefix}-client")).exists());
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "pid {pid} still running: {stat}"
        );
    }
    println!("teardown: no {prefix}-* namespace, no new link, no process left");
}

/// A remote-write body (snappy protobuf) of one sample of `name` for `instance`, now.
fn write_body(instance: &str, name: &str) -> Vec<u8> {
    use rampart_agent::remote_write::{encode, Label, Sample, TimeSeries, WriteRequest};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let label = |name: &str, value: &str| Label {
        name: name.into(),
        value: value.into(),
    };
    encode(&WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![
                label("__name__", name),
                label("instance", instance),
                label("job", "node"),
            ],
            samples: vec![Sample {
                value: 1.0,
                timestamp: i64::try_from(now).unwrap(),
            }],
        }],
        metadata: Vec::new(),
    })
    .unwrap()
}

/// The monitoring plane as a compromised host sees it (issue 17 part 1), with curl and
/// the credentials the host really has:
/// - web1's agent certificate writes web1's series through the ingest gate (204), and is
///   refused (403) a series for db1, a query, and the admin API;
/// - Prometheus and Alertmanager are not reachable from web1 at all, and on the monitor
///   host itself they refuse its agent's certificate in the TLS handshake, while the
///   monitoring plane's certificates (the dashboard's, Prometheus's) get 200.
fn monitoring_plane(stack: &Stack, prefix_of: &dyn Fn(&str) -> Vec<std::ffi::OsString>) {
    let state = stack.state();
    let ca = state.join("certs/ca.pem");
    // (HTTP status or 000, curl's exit code) of a request from `host`.
    let curl = |host: &str, cred: &Path, extra: &[&str], url: &str| -> (String, i32) {
        let pem = cred.with_extension("pem");
        let key = cred.with_extension("key");
        let out = Command::new(&prefix_of(host)[0])
            .args(&prefix_of(host)[1..])
            .args(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(["--max-time", "5", "--cacert"])
            .arg(&ca)
            .arg("--cert")
            .arg(&pem)
            .arg("--key")
            .arg(&key)
            .args(extra)
            .arg(url)
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            out.status.code().unwrap_or(-1),
        )
    };
    let web1 = state.join("hosts/web1/agent.pem");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("monitoring-plane");
    std::fs::create_dir_all(&dir).unwrap();
    let push = |instance: &str| -> (String, i32) {
        let file = dir.join(format!("{instance}.bin"));
        std::fs::write(&file, write_body(instance, "rampart_plane_test")).unwrap();
        let data = format!("@{}", file.display());
        curl(
            "web1",
            &web1,
            &[
                "-H",
                "Content-Encoding: snappy",
                "-H",
                "Content-Type: application/x-protobuf",
                "-H",
                "X-Prometheus-Remote-Write-Version: 0.1.0",
                "--data-binary",
                &data,
            ],
            "https://198.18.9.2:9090/api/v1/write",
        )
    };
    let gate = "https://198.18.9.2:9090";
    let checks = [
        ("write of web1's own series", push("web1").0, "204"),
        ("write of a series for db1", push("db1").0, "403"),
        (
            "query",
            curl("web1", &web1, &[], &format!("{gate}/api/v1/query?query=up")).0,
            "403",
        ),
        (
            "admin API",
            curl(
                "web1",
                &web1,
                &["-X", "POST"],
                &format!("{gate}/api/v1/admin/tsdb/snapshot"),
            )
            .0,
            "403",
        ),
        (
            "Prometheus on the monitor's management address",
            curl("web1", &web1, &[], "https://198.18.9.2:9091/-/ready").0,
            "000",
        ),
        (
            "Alertmanager on the monitor's management address",
            curl("web1", &web1, &[], "https://198.18.9.2:9093/-/ready").0,
            "000",
        ),
    ];
    for (what, got, want) in &checks {
        assert_eq!(got, want, "web1's agent credentials: {what}");
        println!("web1's agent credentials: {what}: {got}");
    }
    let monitor_agent = state.join("hosts/monitor/agent.pem");
    let plane = |who: &str| state.join(format!("hosts/monitor/plane-{who}.pem"));
    for (what, cred, url, want) in [
        (
            "the monitor's agent to Prometheus",
            monitor_agent.clone(),
            "https://127.0.0.1:9091/api/v1/query?query=up",
            "000",
        ),
        (
            "the monitor's agent to Alertmanager",
            monitor_agent,
            "https://127.0.0.1:9093/api/v2/alerts",
            "000",
        ),
        (
            "the dashboard's plane certificate to Prometheus",
            plane("dashboard"),
            "https://127.0.0.1:9091/api/v1/query?query=up",
            "200",
        ),
        (
            "Prometheus's plane certificate to Alertmanager",
            plane("prometheus"),
            "https://127.0.0.1:9093/api/v2/status",
            "200",
        ),
    ] {
        let (got, code) = curl("monitor", &cred, &[], url);
        assert_eq!(got, want, "{what} (curl exit {code})");
        println!("{what}: {got} (curl exit {code})");
    }
    // The forged series never reached Prometheus; web1's own did.
    let out = Command::new(&prefix_of("monitor")[0])
        .args(&prefix_of("monitor")[1..])
        .args(["curl", "-sS", "--max-time", "5", "--cacert"])
        .arg(&ca)
        .arg("--cert")
        .arg(plane("dashboard"))
        .arg("--key")
        .arg(plane("dashboard").with_extension("key"))
        .arg("https://127.0.0.1:9091/api/v1/query?query=rampart_plane_test")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let instances: Vec<&str> = v["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|s| s["metric"]["instance"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(instances, ["web1"], "{v}");
    println!("Prometheus holds rampart_plane_test for {instances:?} only");
}

/// The site as an attacker on the client host sees it (issue 17 part 5):
/// - TCP and UDP nmap scans of every public address find only TCP 80 and 443 on the
///   load balancer and TCP and UDP 53 on dns;
/// - testssl.sh finds no vulnerability, no weak protocol or cipher (nothing rated
///   MEDIUM or worse), its findings printed;
/// - slowhttptest in slowloris, slow-body and slow-read modes leaves the site available
///   for the whole run by the tool's own probe.
fn attack_surface(stack: &Stack, client: &[std::ffi::OsString]) {
    use rampart_test_support::attack::{self, Slow};
    use rampart_test_support::scan::{open_ports, Proto};
    for t in ["testssl", "slowhttptest"] {
        if tool(t, None).is_none() {
            return;
        }
    }
    let public: [(&str, &[u16], &[u16]); 2] = [
        ("203.0.113.10", &[80, 443], &[]),
        ("203.0.113.53", &[53], &[53]),
    ];
    for (target, tcp, udp) in public {
        let started = std::time::Instant::now();
        // Past the client's own firewall (which only lets it reach 80/443 and 53): the
        // target's firewall alone decides.
        let (open, raw) = open_ports(client, target, "-", Proto::Tcp, true).unwrap();
        assert_eq!(open, tcp, "tcp {target}: {raw}");
        let (open, raw) = open_ports(client, target, "-", Proto::Udp, true).unwrap();
        assert_eq!(open, udp, "udp {target}: {raw}");
        println!(
            "nmap --send-eth -sS -p- and -sU -p- {target} from client: tcp {tcp:?}, udp {udp:?} ({:.1}s)",
            started.elapsed().as_secs_f64()
        );
    }

    let started = std::time::Instant::now();
    let scan = || {
        attack::testssl(
            client,
            "https://www.foobar.com/",
            "203.0.113.10",
            &stack.state().join("certs/ca.pem"),
            &stack.state().join("testssl.json"),
        )
        .unwrap()
    };
    // A WARN is a check testssl.sh could not run (under CI's load once:
    // "sessionresumption_ticket: check failed because of connect problem"). One more
    // whole scan; a WARN that stays fails below.
    let unrun = |f: &Vec<attack::Finding>| {
        f.iter()
            .any(|f| f.severity == "WARN" && !attack::accepted(&f.id))
    };
    let mut findings = scan();
    if unrun(&findings) {
        println!("testssl.sh: a check could not run; scanning again");
        findings = scan();
    }
    let mut by_severity = std::collections::BTreeMap::<&str, usize>::new();
    for f in &findings {
        *by_severity.entry(f.severity.as_str()).or_default() += 1;
    }
    println!(
        "testssl.sh https://www.foobar.com/ from client: {} findings {by_severity:?} ({:.1}s)",
        findings.len(),
        started.elapsed().as_secs_f64()
    );
    for f in findings
        .iter()
        .filter(|f| !matches!(f.severity.as_str(), "OK" | "INFO" | "DEBUG"))
    {
        println!("  testssl {} {}: {}", f.severity, f.id, f.finding);
    }
    let serious: Vec<_> = findings
        .iter()
        .filter(|f| {
            matches!(
                f.severity.as_str(),
                "MEDIUM" | "HIGH" | "CRITICAL" | "FATAL"
            ) || f.severity == "WARN"
        })
        .filter(|f| !attack::accepted(&f.id))
        .collect();
    assert!(serious.is_empty(), "testssl.sh: {serious:#?}");
    for (id, why) in attack::ACCEPTED {
        println!("  testssl {id} accepted: {why}");
    }
    let finding = |id: &str| {
        findings
            .iter()
            .find(|f| f.id == id)
            .map(|f| f.finding.as_str())
            .unwrap_or_else(|| panic!("testssl.sh reported no {id}"))
    };
    for weak in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        assert_eq!(finding(weak), "not offered", "{weak}");
    }
    for (id, offered) in [("TLS1_2", "offered"), ("TLS1_3", "offered with final")] {
        assert!(finding(id).starts_with(offered), "{id}: {}", finding(id));
    }

    // 1000 slow connections opened at 50 per second (slowhttptest's default rate), held
    // for 40 s. Faster openings measure TLS handshake throughput instead, which belongs
    // to the benchmarks: at 200/s, this debug build's load balancer sharing two cores
    // with the attacker fell 400 handshakes behind, and the probe waited in that queue.
    let url = "https://www.foobar.com/";
    for mode in [Slow::Headers, Slow::Body, Slow::Read] {
        let out = stack.state().join(format!("slow{}", mode.flag()));
        let (report, stdout) = attack::slowhttptest(client, mode, url, 1000, 50, 40, &out).unwrap();
        // The run ends early with "No open connections left" when the server has
        // closed every slow connection: the defence working, not a failure.
        let ended = stdout
            .lines()
            .find_map(|l| l.split("Exit status:").nth(1))
            .map_or("-", str::trim);
        println!(
            "slowhttptest {} -c 1000 -r 50 -l 40 {url}: service available {}/{} s, at most {} connections open at once, {} closed by the server; exit status: {ended}",
            mode.flag(),
            report.available,
            report.seconds,
            report.peak_connected,
            report.closed
        );
        assert!(report.always_available(), "{mode:?}: {report:?}\n{stdout}");
    }
    // The site still answers afterwards.
    assert_eq!(stack.curl("/", &[]).status, 200);
}

/// A bounded load from inside the client host: curls with `--rate` (serial, so one
/// per 10 req/s keeps each well within its time budget), each request's status on a
/// line of its output file. Killed by their PIDs when dropped.
struct Load {
    children: Vec<std::process::Child>,
    outs: Vec<PathBuf>,
    started: std::time::Instant,
}

impl Load {
    fn start(stack: &Stack, rate: u32, seconds: u32, out: &Path) -> Load {
        let k = rate.div_ceil(10);
        let per = rate / k;
        let mut children = Vec::new();
        let mut outs = Vec::new();
        for i in 0..k {
            let path = out.with_extension(format!("{i}.txt"));
            let file = std::fs::File::create(&path).unwrap();
            // Line-buffered, so the count is current while curl runs.
            let child = stack
                .on("client", Path::new("stdbuf"))
                .arg("-oL")
                .arg(&stack.curl)
                .args(["-s", "-o", "/dev/null", "--max-time", "5"])
                .args(["-w", "%{http_code}\\n", "--rate", &format!("{per}/s")])
                .arg(format!("https://www.foobar.com/?n=[1-{}]", per * seconds))
                .stdout(file)
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            children.push(child);
            outs.push(path);
        }
        Load {
            children,
            outs,
            started: std::time::Instant::now(),
        }
    }

    /// Every answered request's status so far.
    fn statuses(&self) -> Vec<String> {
        self.outs
            .iter()
            .flat_map(|p| {
                std::fs::read_to_string(p)
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Answered requests per second since the start.
    fn rate(&self) -> f64 {
        self.statuses().len() as f64 / self.started.elapsed().as_secs_f64()
    }

    fn finished(&mut self) -> bool {
        self.children
            .iter_mut()
            .all(|c| c.try_wait().unwrap().is_some())
    }

    fn stop(&mut self) {
        for c in &mut self.children {
            if c.try_wait().unwrap().is_none() {
                let _ = Command::new("kill").arg(c.id().to_string()).status();
            }
            let _ = c.wait();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Issue 5's judged points in isolated mode with real Prometheus and Alertmanager, the
/// agents on every host and the dashboard, with `--fast-monitor` (2 s pushes, rule
/// windows of minutes): no data loss across a 2-minute Prometheus outage and an agent
/// restart inside it, the measured QPS of a known load, TrafficAnomaly firing on a burst
/// and resolving after it, ReplicationStopped, `mysql_global_status_questions` following
/// traffic, `promtool check metrics` on every `/metrics`, and the dashboard in Chromium.
/// The community's dashboards and rules (`../shared/dashboards`, read in place, never
/// copied), or `None` with the reason printed when they are absent.
fn shared_dashboards() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/dashboards");
    if dir.is_dir() {
        Some(dir.canonicalize().unwrap())
    } else {
        println!(
            "SKIPPED (community dashboards and rules): {} is absent",
            dir.display()
        );
        None
    }
}

/// The upstream rules files the operator option loads: the node mixin's and the
/// mysqld mixin's alerts and recording rules.
const UPSTREAM_RULES: &[&str] = &[
    "node-mixin/alerts.yaml",
    "node-mixin/rules.yaml",
    "mysqld-mixin/alerts/general.yaml",
    "mysqld-mixin/alerts/galera.yaml",
    "mysqld-mixin/rules/rules.yaml",
];

/// Dashboard expressions that may return nothing on this site, by a metric (or part of
/// one) they use, with the reason. Every empty expression must be named here, unless
/// every series it reads is present and only its own comparison (`> 0`) left nothing.
const DASHBOARD_EXCUSED: &[(&str, &str)] = &[
    // What this machine (a virtual machine) has no hardware or kernel feature for;
    // node_exporter reports nothing for them here either.
    ("node_hwmon_", "no hardware sensors (/sys/class/hwmon is absent)"),
    ("node_cooling_device_", "no thermal cooling devices"),
    ("node_power_supply_", "no power supply class in /sys"),
    ("node_cpu_scaling_frequency", "no cpufreq driver: the virtual CPUs do not scale"),
    (
        "node_memory_HardwareCorrupted_bytes",
        "the kernel has no memory-failure accounting (no HardwareCorrupted in /proc/meminfo)",
    ),
    (
        "node_schedstat_",
        "the kernel has no /proc/schedstat (CONFIG_SCHEDSTATS off); node_exporter's schedstat fails here too",
    ),
    (
        "node_pressure_irq_",
        "no /proc/pressure/irq on this kernel, and node_exporter 1.5 has no IRQ pressure",
    ),
    // Newer than node_exporter 1.5 (Debian 12's), which the agent follows.
    ("node_kernel_hung_tasks", "added after node_exporter 1.5"),
    ("node_softnet_received_rps_total", "added to softnet after node_exporter 1.5"),
    ("node_softnet_flow_limit_count_total", "added to softnet after node_exporter 1.5"),
    ("node_netstat_TcpExt_TCPRcvQDrop", "not in node_exporter 1.5's default netstat fields"),
    ("node_netstat_TcpExt_TCPOFOQueue", "not in node_exporter 1.5's default netstat fields"),
    ("node_netstat_Tcp_MaxConn", "not in node_exporter 1.5's default netstat fields"),
    // What this site does not run.
    (
        "node_systemd_",
        "isolated mode's hosts are namespaces without systemd: the agent's systemd collector (node_exporter's) has nothing to ask there; the booted hosts of deploy.rs have its families",
    ),
    // TCP states no connection is in at the moment (node_exporter's tcpstat, like the
    // agent's, reports only the states it sees).
    ("node_tcp_connection_states{state=\"syn_sent\"", "no connection in that state now"),
    ("node_tcp_connection_states{state=\"syn_recv\"", "no connection in that state now"),
    ("node_tcp_connection_states{state=\"fin_wait1\"", "no connection in that state now"),
    ("node_tcp_connection_states{state=\"fin_wait2\"", "no connection in that state now"),
    ("node_tcp_connection_states{state=\"close_wait\"", "no connection in that state now"),
    ("node_tcp_connection_states{state=\"close\"", "no connection in that state now"),
    ("node_tcp_connection_states{state=\"last_ack\"", "no connection in that state now"),
    ("node_tcp_connection_states{state=\"closing\"", "no connection in that state now"),
    ("node_tcp_connection_states{state=\"time_wait\"", "no connection in that state now"),
    // The MySQL overview's panels for other servers and versions.
    ("mysql_global_variables_tokudb_", "TokuDB is not in MariaDB 10.11"),
    (
        "mysql_global_variables_innodb_additional_mem_pool_size",
        "removed from InnoDB (MySQL 5.7, MariaDB 10.2); the server has no such variable",
    ),
];

/// Inputs of the upstream alerts that may be absent on this site, with the reason.
const ALERT_INPUTS_EXCUSED: &[(&str, &str)] = &[
    ("node_md_", "no software RAID (md) arrays on these hosts"),
    ("node_bonding_", "no bonded network interfaces"),
    (
        "node_systemd_",
        "isolated mode's hosts are namespaces without systemd: the agent's systemd collector (node_exporter's) has nothing to ask there; the booted hosts of deploy.rs have its families",
    ),
    (
        "wsrep",
        "no Galera cluster: rampart replicates with GTID and semi-synchronous replication",
    ),
    (
        "mysql_heartbeat",
        "no pt-heartbeat table: rampart measures lag from the replica's status and GTID positions",
    ),
];

/// A GET of Prometheus's HTTP API: path and query parameters in, the JSON out.
type PromApi<'a> = dyn Fn(&str, &[(&str, &str)]) -> serde_json::Value + 'a;

/// Judged (issue 19): every expression of Node Exporter Full and the mysqld mixin's
/// MySQL overview, with its template variables resolved from `label_values(...)` as
/// Grafana resolves them, returns data against this running site, but for the listed
/// hardware and features it does not have; and every alert of the upstream rules (loaded
/// through `[monitor] rules`) has each of its input series present.
fn community_dashboards_and_rules(api: &PromApi<'_>, rules: Option<&[PathBuf]>) {
    let Some(dir) = shared_dashboards() else {
        return;
    };
    let started = std::time::Instant::now();
    let query = |q: &str| api("/api/v1/query", &[("query", q)])["data"].clone();
    let excused = |expr: &str, list: &[(&'static str, &'static str)]| {
        list.iter().find(|(m, _)| expr.contains(m)).copied()
    };
    let mut used = std::collections::BTreeSet::new();
    let mut problems = Vec::new();
    for file in [
        "node-exporter-full/node-exporter-full.json",
        "mysqld-mixin/dashboards/mysql-overview.json",
    ] {
        let dash = json(&std::fs::read_to_string(dir.join(file)).unwrap());
        let vars = grafana::variables(&dash, &query).unwrap_or_else(|e| panic!("{file}: {e}"));
        let targets = grafana::targets(&dash);
        let panels: std::collections::BTreeSet<&str> =
            targets.iter().map(|t| t.panel.as_str()).collect();
        let mut with_data = 0;
        let mut filtered = 0;
        let mut unexcused = Vec::new();
        for t in &targets {
            let expr = grafana::substitute(&t.expr, &vars);
            if grafana::has_data(&query(&expr)) {
                with_data += 1;
            } else if grafana::selectors(&expr)
                .iter()
                .all(|sel| grafana::has_data(&query(sel)))
            {
                // Every series it reads is here; its own comparison (`> 0`) left
                // nothing, as it does in Grafana while the value is 0.
                filtered += 1;
            } else if let Some(e) = excused(&t.expr, DASHBOARD_EXCUSED) {
                used.insert(e);
            } else {
                unexcused.push(format!("{}: {expr}", t.panel));
            }
        }
        let shown: Vec<String> = vars
            .iter()
            .map(|v| format!("{}={}", v.name, v.value))
            .collect();
        println!(
            "{file}: {} expressions of {} panels ({}): {with_data} with data, {filtered} with every input present but filtered to nothing by their own comparison, {} empty and excused, {} empty",
            targets.len(),
            panels.len(),
            shown.join(" "),
            targets.len() - with_data - filtered - unexcused.len(),
            unexcused.len()
        );
        for u in &unexcused {
            problems.push(format!("{file}: no data: {u}"));
        }
    }
    let Some(rules) = rules else {
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        return;
    };
    let loaded = api("/api/v1/rules", &[]);
    let groups = loaded["data"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut alerts = 0;
    let mut records = 0;
    for (n, file) in rules.iter().enumerate() {
        // The monitor holds the n-th file as `rules-extra-<n>-<file name>`.
        let on_monitor = format!(
            "rules-extra-{}-{}",
            n + 1,
            file.file_name().unwrap().to_string_lossy()
        );
        let mine: Vec<&serde_json::Value> = groups
            .iter()
            .filter(|g| {
                g["file"]
                    .as_str()
                    .is_some_and(|f| Path::new(f).file_name() == Some(on_monitor.as_ref()))
            })
            .collect();
        if mine.is_empty() {
            problems.push(format!("{} not loaded as {on_monitor}", file.display()));
        }
        for rule in mine
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        {
            if rule["health"] == "err" {
                panic!("rule fails to evaluate: {rule}");
            }
            if rule["type"] != "alerting" {
                records += 1;
                continue;
            }
            alerts += 1;
            let expr = rule["query"].as_str().unwrap_or("");
            for sel in grafana::selectors(expr) {
                if grafana::has_data(&query(&sel)) {
                    continue;
                }
                match excused(&sel, ALERT_INPUTS_EXCUSED) {
                    Some(e) => {
                        used.insert(e);
                    }
                    None => problems.push(format!("alert {}: input absent: {sel}", rule["name"])),
                }
            }
        }
    }
    println!(
        "upstream rules: {} files, {alerts} alerts and {records} recording rules loaded, every alert's inputs present but those excused; dashboards and rules checked in {:.1} s",
        rules.len(),
        started.elapsed().as_secs_f64()
    );
    for (what, why) in &used {
        println!("  excused {what}: {why}");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn monitoring_end_to_end() {
    if !rampart_test_support::require_root("isolated mode (network namespaces)") {
        return;
    }
    for t in [
        "prometheus",
        "prometheus-alertmanager",
        "promtool",
        "chromium",
        "certutil",
    ] {
        if tool(t, None).is_none() {
            return;
        }
    }
    let prefix = format!("rm{}", std::process::id() % 100_000);
    // The operator option that loads the community's rules (`[monitor] rules`), on
    // when they are here to load.
    let site_dir = tempfile::tempdir().unwrap();
    let rules: Option<Vec<PathBuf>> =
        shared_dashboards().map(|d| UPSTREAM_RULES.iter().map(|f| d.join(f)).collect());
    // web2 gets its own share of the machine (a cgroup with limits); the other hosts
    // get cgroups without limits.
    let mut site_text = String::from("[[host]]\nname = \"web2\"\ncpus = 0.5\nmemory = \"512M\"\n");
    if let Some(rules) = &rules {
        let list: Vec<String> = rules
            .iter()
            .map(|r| format!("{:?}", r.display().to_string()))
            .collect();
        site_text.push_str(&format!("[monitor]\nrules = [{}]\n", list.join(", ")));
    }
    let site = site_dir.path().join("site.toml");
    std::fs::write(&site, site_text).unwrap();
    let mut extra = vec!["--fast-monitor".to_owned()];
    extra.extend(["--topology".to_owned(), site.display().to_string()]);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let Some(stack) = Stack::up_with(
        Mode::Isolated {
            prefix,
            publish: free_port(),
        },
        &extra,
    ) else {
        return;
    };
    let dash_port = stack.dash_port;
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("monitoring");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let exec = |host: &str, args: &[&str]| -> String {
        let out = Command::new(RAMPART)
            .arg("exec")
            .arg("--state")
            .arg(stack.state())
            .args([host, "--"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // PromQL through Prometheus's HTTP API, from inside the monitor host, with the
    // dashboard's certificate of the monitoring plane (Prometheus takes no other).
    let state = stack.state().to_owned();
    let plane = |ext: &str| {
        state
            .join(format!("hosts/monitor/plane-dashboard.{ext}"))
            .display()
            .to_string()
    };
    let query_at = |q: &str, at: Option<f64>| -> Vec<serde_json::Value> {
        let mut args = vec![
            "curl".to_owned(),
            "-sS".into(),
            "--max-time".into(),
            "10".into(),
            "--cacert".into(),
            state.join("certs/ca.pem").display().to_string(),
            "--cert".into(),
            plane("pem"),
            "--key".into(),
            plane("key"),
            "https://127.0.0.1:9091/api/v1/query".into(),
            "--data-urlencode".into(),
            format!("query={q}"),
        ];
        if let Some(t) = at {
            args.extend(["--data-urlencode".into(), format!("time={t:.3}")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let text = exec("monitor", &args);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    };
    let query = |q: &str| query_at(q, None);
    let scalar = |q: &str| -> Option<f64> {
        query(q)
            .first()
            .and_then(|r| r["value"][1].as_str())
            .and_then(|v| v.parse().ok())
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let status = json(&String::from_utf8_lossy(
        &rampart(stack.state(), &["status", "--json"]).stdout,
    ));
    let pid_of = |st: &serde_json::Value, host: &str, svc: &str| -> u64 {
        st["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == host)
            .and_then(|h| {
                h["services"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|s| s["name"] == svc)
                    .and_then(|s| s["pid"].as_u64())
            })
            .unwrap_or_else(|| panic!("no pid for {host}/{svc}: {st}"))
    };
    let kill = |pid: u64| {
        Command::new("kill").arg(pid.to_string()).status().unwrap();
        eventually(
            &format!("pid {pid} to exit"),
            Duration::from_secs(30),
            || {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                (stat.is_empty() || stat.contains(") Z ")).then_some(())
            },
        );
    };
    let agents = [
        "dns", "lb1", "web1", "web2", "db1", "db2", "monitor", "backup",
    ];
    eventually("every agent's heartbeat", Duration::from_secs(60), || {
        (query("rampart_agent_heartbeat_timestamp_seconds").len() == agents.len()).then_some(())
    });
    // The dashboard's own metrics reach Prometheus through the monitor host's agent.
    eventually(
        "the dashboard's own metrics",
        Duration::from_secs(60),
        || {
            (!query("rampart_dashboard_sessions{instance=\"monitor\",job=\"dashboard\"}")
                .is_empty())
            .then_some(())
        },
    );
    // So do the ingest gate's: the writes it accepted from each host (web1's at least).
    eventually(
        "the ingest gate's own metrics",
        Duration::from_secs(60),
        || {
            (!query(
            "rampart_gate_requests_total{instance=\"monitor\",job=\"gate\",host=\"web1\",outcome=\"accepted\"} > 0",
        )
        .is_empty())
        .then_some(())
        },
    );
    // Every certificate file a host's services use has its expiry in Prometheus (the
    // CertificateExpiringSoon alert's input), none unreadable: the host's own and its
    // agent's on every host, MariaDB's on db1, the plane CA on the monitor.
    let files = eventually(
        "every host's certificate expiries",
        Duration::from_secs(60),
        || {
            let series = query("rampart_certificate_expiry_timestamp_seconds");
            let has = |host: &str, file: &str| {
                series.iter().any(|r| {
                    r["metric"]["instance"] == host
                        && r["metric"]["path"]
                            .as_str()
                            .is_some_and(|p| p.ends_with(file))
                })
            };
            let all = agents
                .iter()
                .all(|h| has(h, "/ca.pem") && has(h, &format!("/hosts/{h}/agent.pem")))
                && has("db1", "/certs/db1.pem")
                && has("monitor", "/plane-ca.pem")
                && has("lb1", "/certs/site.pem");
            all.then_some(series.len())
        },
    );
    let unreadable = query("rampart_agent_collect_errors_total{collector=\"certificates\"} > 0");
    assert!(
        unreadable.is_empty(),
        "certificate files unreadable: {unreadable:?}"
    );
    println!(
        "certificate expiries in Prometheus: {files} files on {} hosts",
        agents.len()
    );
    // Prometheus scrapes the three etcd members' metrics (through the firewall's one
    // flow to their port 2381).
    eventually("every etcd member scraped", Duration::from_secs(60), || {
        (query("up{job=\"etcd\"} == 1").len() == 3
            && query("etcd_server_has_leader == 1").len() == 3)
            .then_some(())
    });

    // Steady background traffic for the whole test: 10 req/s.
    let mut steady = Load::start(&stack, 10, 900, &work.join("steady"));
    // A few SQL injections through lb1 (blocked by the WAF) for the dashboard's WAF
    // panels, sent now: a new series shows on a chart from its next step on.
    for i in 0..5 {
        let r = stack.deliberate(stack.curl(
            &format!("/api/users/{i}?id=1%27%20OR%20%271%27%3D%271"),
            &[],
        ));
        assert_eq!(r.status, 403, "{r:?}");
    }

    // 3. No data loss: Prometheus stopped for two minutes under steady traffic, and
    // web1's agent restarted in the middle of the outage.
    // The log store is stopped with it (issue 18's no-loss test), and web2's access
    // log is rotated (renamed; the server reopens a new one) inside the outage.
    std::thread::sleep(Duration::from_secs(6));
    let outage_start = now();
    kill(pid_of(&status, "monitor", "prometheus"));
    kill(pid_of(&status, "monitor", "logs"));
    std::thread::sleep(Duration::from_secs(30));
    let web2_log = state.join("hosts/web2/access.log");
    std::fs::rename(&web2_log, state.join("hosts/web2/access.log.1")).unwrap();
    std::thread::sleep(Duration::from_secs(20));
    let agent_stop = now();
    kill(pid_of(&status, "web1", "agent"));
    std::thread::sleep(Duration::from_secs(10));
    stack.host("start", "web1");
    let agent_start = now();
    std::thread::sleep(Duration::from_secs(60));
    let outage_end = now();
    stack.host("start", "monitor");
    println!(
        "prometheus and the log store stopped for {:.0} s; web1's agent stopped for {:.0} s inside that; web2's access log rotated",
        outage_end - outage_start,
        agent_start - agent_stop
    );
    // Drained: every agent's buffer empty and its heartbeat current.
    eventually(
        "the agents' buffers to drain",
        Duration::from_secs(90),
        || {
            let fresh = query(&format!(
                "rampart_agent_heartbeat_timestamp_seconds > {}",
                now() - 10.0
            ))
            .len();
            let pending = query("rampart_agent_buffer_batches > 1").len();
            (fresh == agents.len() && pending == 0).then_some(())
        },
    );
    let from = outage_start - 10.0;
    let to = outage_end + 10.0;
    let span = (to - from).round() as u64;
    let mut counts = Vec::new();
    let mut late = Vec::new();
    for a in agents {
        let r = query_at(
            &format!("rampart_agent_heartbeat_timestamp_seconds{{instance=\"{a}\"}}[{span}s]"),
            Some(to),
        );
        let ts: Vec<f64> = r[0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v[0].as_f64().unwrap())
            .collect();
        // One sample per 2 s interval: no gap longer than an interval and a bit, except
        // where web1's agent was not running.
        let mut gaps: Vec<f64> = ts
            .windows(2)
            .map(|w| w[1] - w[0])
            .filter(|g| *g > 3.5)
            .collect();
        if a == "web1" {
            assert_eq!(
                gaps.len(),
                1,
                "web1: one gap while its agent was stopped: {gaps:?}"
            );
            let down = agent_start - agent_stop;
            assert!(
                gaps[0] < down + 6.0,
                "web1's gap {gaps:?} vs downtime {down}"
            );
            gaps.clear();
        }
        // What the collections spent their time on: each collector's longest run in the
        // window (the agent reports its durations with its samples).
        let slowest: Vec<String> = query_at(
            &format!(
                "max_over_time(rampart_agent_collect_duration_seconds{{instance=\"{a}\"}}[{span}s])"
            ),
            Some(to),
        )
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["metric"]["collector"].as_str().unwrap_or("?"),
                r["value"][1].as_str().unwrap_or("?")
            )
        })
        .collect();
        // And the host collector's slowest parts (node_exporter's per-collector gauge).
        let mut node: Vec<(f64, String)> = query_at(
            &format!(
                "max_over_time(node_scrape_collector_duration_seconds{{instance=\"{a}\"}}[{span}s])"
            ),
            Some(to),
        )
        .iter()
        .filter_map(|r| {
            let v = r["value"][1].as_str()?.parse().ok()?;
            Some((v, r["metric"]["collector"].as_str()?.to_owned()))
        })
        .collect();
        node.sort_by(|x, y| y.0.total_cmp(&x.0));
        let slowest: Vec<String> = slowest
            .into_iter()
            .chain(node.iter().take(3).map(|(v, c)| format!("node/{c} {v}")))
            .collect();
        if !gaps.is_empty() {
            late.push(format!(
                "{a}: heartbeat gaps {gaps:?}; longest collector runs {slowest:?}; samples {ts:?}"
            ));
        }
        assert!(
            ts[0] < outage_start && *ts.last().unwrap() > outage_end,
            "{a}: {ts:?}"
        );
        counts.push(format!(
            "{a} {} (longest runs: {})",
            ts.len(),
            slowest.join(", ")
        ));
    }
    assert!(late.is_empty(), "{}", late.join("\n"));
    println!(
        "heartbeat samples in the {span} s around the outage: {}",
        counts.join(", ")
    );

    // Central logs: the services' own lines reached the log store on the monitor host
    // through each host's agent and the gate (issue 18), queried with LogQL the way
    // Grafana's Loki data source asks, with the dashboard's plane certificate. The
    // services log at `warn` here (the test's RAMPART_LOG): the gate's warnings of the
    // Prometheus outage above are what it said.
    let logql = |path: &str, q: &str| -> serde_json::Value {
        let text = exec(
            "monitor",
            &[
                "curl",
                "-sS",
                "--max-time",
                "10",
                "--cacert",
                &state.join("certs/ca.pem").display().to_string(),
                "--cert",
                &plane("pem"),
                "--key",
                &plane("key"),
                "-G",
                &format!("https://127.0.0.1:3100/loki/api/v1/{path}"),
                "--data-urlencode",
                &format!("query={q}"),
                "--data-urlencode",
                &format!("start={}", (now() - 3600.0) as i64),
            ],
        );
        serde_json::from_str(&text).unwrap_or_default()
    };
    let end = std::time::Instant::now() + Duration::from_secs(60);
    let gate_ready = loop {
        let v = logql(
            "query_range",
            r#"{host="monitor", service="gate"} |= "the metrics store is unreachable""#,
        );
        let lines = v["data"]["result"][0]["values"]
            .as_array()
            .map_or(0, Vec::len);
        if lines > 0 {
            break lines;
        }
        assert!(
            std::time::Instant::now() < end,
            "the gate's outage warnings are not in the log store; its last answer: {v}\nservices: {}",
            logql("label/service/values", "")
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let hosts = eventually("log lines from the hosts", Duration::from_secs(60), || {
        let v = logql("label/host/values", "");
        let hosts: Vec<String> = v["data"]
            .as_array()?
            .iter()
            .filter_map(|h| h.as_str().map(str::to_owned))
            .collect();
        ["monitor", "lb1", "web1", "db1"]
            .iter()
            .all(|h| hosts.iter().any(|x| x == h))
            .then_some(hosts)
    });
    println!(
        "logs: the store holds lines from {hosts:?}; the gate's outage warning {gate_ready} time(s)"
    );
    // No loss, no duplicates: each access log as written (web2's across its rotation)
    // against the store's lines of that stream, oldest first, paged with Loki's
    // forward direction. Per stream the agent's timestamps increase in the order it
    // read, so the stored order is the written order: the first N stored lines equal
    // the N lines written when the check began (a lost line or a repeat shifts them).
    let stored = |selector: &str, want: usize| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut start = ((now() - 3.0 * 3600.0) * 1e9) as i64;
        for _ in 0..50 {
            let text = exec(
                "monitor",
                &[
                    "curl",
                    "-sS",
                    "--max-time",
                    "20",
                    "--cacert",
                    &state.join("certs/ca.pem").display().to_string(),
                    "--cert",
                    &plane("pem"),
                    "--key",
                    &plane("key"),
                    "-G",
                    "https://127.0.0.1:3100/loki/api/v1/query_range",
                    "--data-urlencode",
                    &format!("query={selector}"),
                    "--data-urlencode",
                    &format!("start={start}"),
                    "--data-urlencode",
                    &format!("end={}", ((now() + 60.0) * 1e9) as i64),
                    "--data-urlencode",
                    "limit=5000",
                    "--data-urlencode",
                    "direction=forward",
                ],
            );
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let mut page: Vec<(i64, String)> = v["data"]["result"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|r| r["values"].as_array().cloned().unwrap_or_default())
                .map(|e| {
                    (
                        e[0].as_str().unwrap().parse::<i64>().unwrap(),
                        e[1].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            page.sort();
            let Some(last) = page.last().map(|(t, _)| *t) else {
                break;
            };
            out.extend(page.into_iter().map(|(_, l)| l));
            if out.len() >= want {
                break;
            }
            start = last + 1;
        }
        out
    };
    for (host, service, files) in [
        ("lb1", "lb", vec!["access.log"]),
        ("web1", "web", vec!["access.log"]),
        ("web2", "web", vec!["access.log.1", "access.log"]),
    ] {
        let written: Vec<String> = files
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(state.join(format!("hosts/{host}/{f}")))
                    .unwrap()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        let selector = format!("{{host=\"{host}\", service=\"{service}\", stream=\"access\"}}");
        let got = eventually(
            &format!("{host}'s {} access lines in the store", written.len()),
            Duration::from_secs(90),
            || {
                let got = stored(&selector, written.len());
                (got.len() >= written.len()).then_some(got)
            },
        );
        let first_diff = written.iter().zip(&got).position(|(w, g)| w != g);
        assert_eq!(
            first_diff, None,
            "{host}: stored line {first_diff:?} differs from the written one"
        );
        println!(
            "logs, no loss: {host} wrote {} access lines (through the outage{}), the store holds the same {} in order, none twice",
            written.len(),
            match host {
                "web1" => " and its agent's restart",
                "web2" => " and a rotation",
                _ => "",
            },
            written.len()
        );
    }
    assert_eq!(
        scalar("sum(rampart_agent_log_lines_total{outcome=~\"rate_limited|refused|queue_full\"}) or vector(0)"),
        Some(0.0),
        "no log line was dropped by a bound"
    );

    // The firewall speaks: a scan from the client (the Internet, which has no rampart
    // firewall of its own: the test opens the client's egress to lb1's port 9100 for
    // it) is dropped by lb1's input chain, shipped by lb1's agent as an event naming
    // both hosts and the port, and counted by source host and port. (web1 has no
    // public address: the client has no route to it at all.)
    let drops = |q: &str| scalar(&format!("sum({q}) or vector(0)")).unwrap_or(0.0);
    let drop_metric = "rampart_agent_firewall_drops_total{instance=\"lb1\",src_host=\"client\",dport=\"9100\",chain=\"input\"}";
    let before = drops(drop_metric);
    exec(
        "client",
        &[
            "nft",
            "insert rule inet rampart output ip daddr 203.0.113.10 tcp dport 9100 accept comment \"test scan\"",
        ],
    );
    let scan_at = now();
    for _ in 0..3 {
        exec(
            "client",
            &[
                "timeout",
                "2",
                "bash",
                "-c",
                "exec 3<>/dev/tcp/203.0.113.10/9100",
            ],
        );
    }
    let event = eventually(
        "lb1's drop event of the client's scan",
        Duration::from_secs(30),
        || {
            let v = logql(
                "query_range",
                r#"{host="lb1", service="firewall", stream="drop"} |= "\"dport\":9100""#,
            );
            v["data"]["result"][0]["values"]
                .as_array()?
                .iter()
                .filter_map(|e| e[1].as_str())
                .find(|l| l.contains("\"src_host\":\"client\""))
                .map(str::to_owned)
        },
    );
    let e = json(&event);
    assert_eq!(
        (
            &e["event"],
            &e["chain"],
            &e["proto"],
            &e["src"],
            &e["src_host"],
            &e["dst"],
            &e["dst_host"],
            &e["dport"]
        ),
        (
            &json("\"drop\""),
            &json("\"input\""),
            &json("\"tcp\""),
            &json("\"203.0.113.100\""),
            &json("\"client\""),
            &json("\"203.0.113.10\""),
            &json("\"lb1\""),
            &json("9100")
        ),
        "{event}"
    );
    let after = eventually("the drop metric to rise", Duration::from_secs(30), || {
        let n = drops(drop_metric);
        (n > before).then_some(n)
    });
    println!(
        "firewall: the client's scan of lb1:9100 is lb1's drop event {:.1} s later: {event}; drops from the client to port 9100: {before} → {after}",
        now() - scan_at
    );
    assert_eq!(
        scalar("sum(rampart_agent_buffer_dropped_samples_total) or vector(0)"),
        Some(0.0)
    );
    assert_eq!(
        scalar("sum(rampart_agent_pushes_total{result=\"permanent_error\"}) or vector(0)"),
        Some(0.0)
    );
    // The log-derived counters never reset across the agent's restart.
    assert_eq!(
        scalar("sum(resets(rampart_log_requests_total[10m]))"),
        Some(0.0)
    );

    // Baselines: wait for the recordings of steady traffic and for no anomaly.
    eventually("a quiet baseline", Duration::from_secs(300), || {
        let baseline = scalar("job:web_requests:baseline_mean_rate1m").is_some();
        let quiet = query("ALERTS{alertname=\"TrafficAnomaly\"}").is_empty();
        (baseline && quiet).then_some(())
    });
    let questions_before = scalar("sum(instance:mysql_questions:rate1m)").unwrap();

    // 1 and 2. A burst of a known rate: 50 req/s for 90 s instead of 10.
    steady.stop();
    let steady_rate = steady.rate();
    let mut burst = Load::start(&stack, 50, 90, &work.join("burst"));
    let t0 = std::time::Instant::now();
    // Each second: (elapsed, requests answered so far, the QPS query's answer).
    let mut seen: Vec<(f64, usize, f64)> = Vec::new();
    let mut fired = None;
    while t0.elapsed() < Duration::from_secs(80) {
        let qps = scalar("job:web_requests:rate1m").unwrap_or(0.0);
        seen.push((t0.elapsed().as_secs_f64(), burst.statuses().len(), qps));
        if fired.is_none()
            && !query("ALERTS{alertname=\"TrafficAnomaly\",alertstate=\"firing\"}").is_empty()
        {
            fired = Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    // The true rate over the last 60 s, the window the QPS query covers.
    let (t_end, n_end, _) = *seen.last().unwrap();
    let (t_start, n_start, _) = *seen.iter().find(|(t, _, _)| *t >= t_end - 60.0).unwrap();
    let true_rate = (n_end - n_start) as f64 / (t_end - t_start);
    let delay = seen
        .iter()
        .find(|(_, _, q)| *q >= 0.9 * true_rate)
        .map(|(t, _, _)| *t);
    let total = scalar("job:web_requests:rate1m").unwrap();
    let per: Vec<(String, f64)> = query("instance:web_requests:rate1m")
        .iter()
        .map(|r| {
            (
                r["metric"]["instance"].as_str().unwrap().to_owned(),
                r["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let questions_during = scalar("sum(instance:mysql_questions:rate1m)").unwrap();
    let statuses = burst.statuses();
    let ok = statuses.iter().filter(|s| *s == "200").count();
    println!(
        "load: {} requests in {:.1} s, {true_rate:.2} req/s over the last 60 s ({ok} 200); steady before {steady_rate:.2} req/s; generator average {:.2} req/s",
        statuses.len(),
        t0.elapsed().as_secs_f64(),
        burst.rate()
    );
    println!(
        "job:web_requests:rate1m = {total:.2} ({:+.1}% of the true rate); per server {per:?}",
        (total / true_rate - 1.0) * 100.0
    );
    println!(
        "delay from the load change until the QPS query reached 90% of the new rate: {delay:?} s; TrafficAnomaly firing after {fired:?}"
    );
    println!(
        "database queries/s: {questions_before:.1} before, {questions_during:.1} during the burst"
    );
    assert_eq!(ok, statuses.len(), "every request of the load answered 200");
    assert!(
        (total / true_rate - 1.0).abs() <= 0.10,
        "QPS {total} vs true {true_rate}"
    );
    assert_eq!(per.len(), 2, "{per:?}");
    for (host, qps) in &per {
        assert!((qps / total - 0.5).abs() < 0.1, "{host}: {qps} of {total}");
    }
    assert!(
        fired.is_some(),
        "TrafficAnomaly did not fire during the burst"
    );
    // The database follows the traffic: each added request costs the database at least
    // half a query. (Compared as an increase, not a ratio: the keepers' own status
    // queries, about 24/s, are a constant floor under both figures.)
    assert!(
        questions_during - questions_before > 0.5 * (true_rate - steady_rate),
        "questions/s {questions_before} → {questions_during} for {steady_rate} → {true_rate} req/s"
    );

    // The dashboard lists it: a session by the login form, then its alert list.
    let ca = stack.state().join("certs/ca.pem");
    let password =
        std::fs::read_to_string(stack.state().join("hosts/monitor/dashboard.password")).unwrap();
    let dash = format!("https://127.0.0.1:{dash_port}");
    let jar = work.join("cookies.txt");
    let login = Command::new(&stack.curl)
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(&ca)
        .arg("-c")
        .arg(&jar)
        .args(["-H", &format!("Origin: {dash}")])
        .args(["--data-urlencode", "user=admin"])
        .args(["--data-urlencode", &format!("password={}", password.trim())])
        .arg(format!("{dash}/login"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&login.stdout), "303", "{login:?}");
    let dash_get = |path: &str, post: bool| -> String {
        let mut c = Command::new(&stack.curl);
        c.args(["-sS", "--cacert"]).arg(&ca).arg("-b").arg(&jar);
        if post {
            c.args(["-X", "POST", "-H", &format!("Origin: {dash}")]);
        }
        String::from_utf8_lossy(&c.arg(format!("{dash}{path}")).output().unwrap().stdout)
            .into_owned()
    };
    let alert_state = |name: &str| -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(&dash_get("/api/alerts", false)).ok()?;
        let list = v
            .as_array()
            .cloned()
            .or_else(|| v["alerts"].as_array().cloned())?;
        list.iter()
            .filter(|a| a["labels"]["alertname"] == name)
            .map(|a| a["status"].as_str().unwrap_or("").to_owned())
            .find(|s| s == "firing")
            .or_else(|| {
                list.iter()
                    .find(|a| a["labels"]["alertname"] == name)
                    .map(|a| a["status"].as_str().unwrap_or("").to_owned())
            })
    };
    eventually(
        "the dashboard to list TrafficAnomaly firing",
        Duration::from_secs(60),
        || (alert_state("TrafficAnomaly").as_deref() == Some("firing")).then_some(()),
    );
    eventually("the burst to end", Duration::from_secs(60), || {
        burst.finished().then_some(())
    });
    let mut steady = Load::start(&stack, 10, 900, &work.join("steady2"));
    let t1 = std::time::Instant::now();
    eventually(
        "TrafficAnomaly to resolve",
        Duration::from_secs(300),
        || {
            query("ALERTS{alertname=\"TrafficAnomaly\"}")
                .is_empty()
                .then_some(())
        },
    );
    eventually(
        "the dashboard to show it resolved",
        Duration::from_secs(60),
        || (alert_state("TrafficAnomaly").as_deref() == Some("resolved")).then_some(()),
    );
    println!(
        "TrafficAnomaly resolved {:.0} s after traffic returned to 10 req/s",
        t1.elapsed().as_secs_f64()
    );

    // 4. Replication stopped on db2.
    let t2 = std::time::Instant::now();
    stack.root_sql("db2", "STOP SLAVE");
    eventually(
        "ReplicationStopped to fire",
        Duration::from_secs(90),
        || {
            (!query("ALERTS{alertname=\"ReplicationStopped\",alertstate=\"firing\"}").is_empty())
                .then_some(())
        },
    );
    println!(
        "ReplicationStopped firing {:.0} s after STOP SLAVE",
        t2.elapsed().as_secs_f64()
    );
    eventually(
        "the dashboard to list ReplicationStopped",
        Duration::from_secs(60),
        || (alert_state("ReplicationStopped").as_deref() == Some("firing")).then_some(()),
    );
    stack.root_sql("db2", "START SLAVE");

    // 5. promtool check metrics on every /metrics endpoint, from inside its host.
    let promtool = tool("promtool", None).unwrap();
    let mut endpoints = vec![
        ("lb1", "http://198.18.9.10:9180/metrics".to_owned()),
        ("web1", "http://198.18.9.11:9181/metrics".to_owned()),
        ("web2", "http://198.18.9.12:9181/metrics".to_owned()),
    ];
    let t = rampart_topology::Topology::default_for(rampart_topology::Mode::Isolated, 0);
    for a in agents {
        let h = t.host(a).unwrap();
        let addr = t.addr(h, rampart_topology::Segment::Mgmt);
        endpoints.push((a, format!("http://{addr}:9100/metrics")));
    }
    for (host, url) in &endpoints {
        let body = exec(host, &["curl", "-sS", "--max-time", "5", url]);
        assert!(body.contains("# TYPE"), "{host} {url}: {body}");
        let out = rampart_test_support::run_with_stdin(
            Command::new(&promtool).args(["check", "metrics"]),
            &body,
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // node_exporter's own names (node_memory_MemTotal_bytes...) fail promtool's
        // camelCase lint exactly as node_exporter's do, and its entropy families count
        // bits (`use base unit "bytes"`); nothing else may be reported.
        let other: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter(|l| {
                !(l.starts_with("node_")
                    && l.contains("metric names should be written in 'snake_case' not 'camelCase'"))
            })
            .filter(|l| {
                !(l.starts_with("node_entropy_")
                    && l.ends_with(r#"_bits use base unit "bytes" instead of "bits""#))
            })
            // mysqld_exporter names a family after each server variable and slave
            // status column (`mysql_global_variables_max_error_count`,
            // `..._expire_logs_days`, `mysql_slave_status_skip_counter`), and
            // its output gets the same naming lints.
            .filter(|l| {
                !((l.starts_with("mysql_global_variables_")
                    || l.starts_with("mysql_global_status_")
                    || l.starts_with("mysql_slave_status_"))
                    && (l.contains(" should not have \"_count\" suffix")
                        || l.contains(" should not have \"_total\" suffix")
                        || l.contains(" metric name should not include type ")
                        || l.contains(" use base unit ")))
            })
            .collect();
        assert!(other.is_empty(), "promtool on {host} {url}:\n{text}");
    }
    println!(
        "promtool check metrics: {} endpoints clean",
        endpoints.len()
    );

    // 5a. Each host's CPU and memory from its own cgroup: web2's limits, the others the
    //     machine's.
    let cg = |q: &str| -> std::collections::BTreeMap<String, f64> {
        query(q)
            .iter()
            .filter_map(|r| {
                Some((
                    r["metric"]["instance"].as_str()?.to_owned(),
                    r["value"][1].as_str()?.parse().ok()?,
                ))
            })
            .collect()
    };
    let in_cgroups = cg("rampart_host_cgroup_info{job=\"node\"}");
    assert_eq!(
        in_cgroups.len(),
        agents.len(),
        "hosts reporting their cgroup: {in_cgroups:?}"
    );
    let mem = cg("node_memory_MemTotal_bytes{job=\"node\"}");
    assert_eq!(mem.get("web2"), Some(&(512.0 * 1024.0 * 1024.0)), "{mem:?}");
    assert!(
        mem["web1"] > mem["web2"],
        "web1 has the machine's memory: {mem:?}"
    );
    let cpus = cg("count by (instance) (node_cpu_seconds_total{job=\"node\",mode=\"idle\"})");
    assert_eq!(
        cpus.get("web2"),
        Some(&1.0),
        "web2's 0.5 CPU is one CPU: {cpus:?}"
    );
    let busy =
        cg("sum by (instance) (rate(node_cpu_seconds_total{job=\"node\",mode!=\"idle\"}[1m]))");
    println!(
        "cgroups: {} hosts in their own; web2 MemTotal {:.0} MiB of web1's {:.0} MiB, {} CPU of web1's {}; busy CPU over 1 m: web1 {:.3}, web2 {:.3}, db1 {:.3}",
        in_cgroups.len(),
        mem["web2"] / 1048576.0,
        mem["web1"] / 1048576.0,
        cpus["web2"],
        cpus["web1"],
        busy.get("web1").copied().unwrap_or(f64::NAN),
        busy.get("web2").copied().unwrap_or(f64::NAN),
        busy.get("db1").copied().unwrap_or(f64::NAN),
    );

    // 5b. The community's dashboards and alerts, unchanged, against this site.
    let api = |path: &str, params: &[(&str, &str)]| -> serde_json::Value {
        let mut args = vec![
            "curl".to_owned(),
            "-sS".into(),
            "--max-time".into(),
            "10".into(),
            "--get".into(),
            "--cacert".into(),
            state.join("certs/ca.pem").display().to_string(),
            "--cert".into(),
            plane("pem"),
            "--key".into(),
            plane("key"),
            format!("https://127.0.0.1:9091{path}"),
        ];
        for (k, v) in params {
            args.extend(["--data-urlencode".into(), format!("{k}={v}")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        serde_json::from_str(&exec("monitor", &args)).unwrap_or_default()
    };
    community_dashboards_and_rules(&api, rules.as_deref());

    // 6. The dashboard in Chromium, logged in through a one-time link, once its WAF
    //    query has lb1's counters.
    let families = rampart_dashboard::data::QUERIES
        .iter()
        .find(|q| q.id == "waf_families")
        .unwrap()
        .promql;
    eventually(
        "the dashboard's WAF query to have data",
        Duration::from_secs(60),
        || {
            query(families)
                .iter()
                .any(|s| s["metric"]["family"] == "sqli")
                .then_some(())
        },
    );
    // The backup host took its first full backup and verified it at its start.
    let verified = rampart_dashboard::data::QUERIES
        .iter()
        .find(|q| q.id == "verify_result")
        .unwrap()
        .promql;
    eventually(
        "the backup host's first verify on the dashboard",
        Duration::from_secs(120),
        || {
            query(verified)
                .iter()
                .any(|s| s["metric"]["instance"] == "backup" && s["value"][1] == "1")
                .then_some(())
        },
    );
    let link: serde_json::Value = serde_json::from_str(&dash_get("/api/login-link", true)).unwrap();
    let path = link["path"].as_str().unwrap();
    let page =
        rampart_test_support::browser::open(&[], &format!("{dash}{path}"), &ca, &work).unwrap();
    for needle in [
        "<h2>Backups</h2><table>",
        "<td class=\"ok\">passed</td>",
        "Requests per second",
        "<svg",
        "<path",
        "TrafficAnomaly",
        "ReplicationStopped",
        "WAF: blocked requests per second",
        "matches {family=sqli}",
        // The client's scan of lb1 above, in the firewall panel.
        "<tr><td>client</td><td>lb1</td><td>9100</td>",
    ] {
        assert!(
            page.dom.contains(needle),
            "`{needle}` missing from the dashboard's DOM"
        );
    }
    println!("dashboard screenshot: {}", page.screenshot.display());

    // 7. An end-to-end trace: a request with a unique marker through lb1; its access
    //    lines from lb1 and from the web server that served it, on the dashboard's
    //    search page in Chromium.
    let marker = format!("trace-{}", std::process::id());
    let sent = std::time::Instant::now();
    let r = stack.curl(&format!("/{marker}.html"), &[]);
    assert!(r.status == 200 || r.status == 404, "{r:?}");
    let search = format!("/logs?q={marker}&range=15m");
    let found = eventually(
        "the marker's lines on the search page",
        Duration::from_secs(30),
        || {
            let html = dash_get(&search, false);
            (html.matches("<tr class=\"log-line\">").count() >= 2).then_some(html)
        },
    );
    let waited = sent.elapsed();
    let open_page = |next: &str| {
        let link: serde_json::Value =
            serde_json::from_str(&dash_get("/api/login-link", true)).unwrap();
        let url = format!(
            "{dash}{}&next={}",
            link["path"].as_str().unwrap(),
            rampart_dashboard::prom::encode(next)
        );
        rampart_test_support::browser::open(&[], &url, &ca, &work).unwrap()
    };
    let page = open_page(&search);
    let rows: Vec<&str> = page.dom.split("<tr class=\"log-line\">").skip(1).collect();
    let has = |host: &str, service: &str| {
        rows.iter().any(|r| {
            r.contains(&format!("<td class=\"host\">{host}</td>"))
                && r.contains(&format!("<td class=\"service\">{service}</td>"))
                && r.contains(&marker)
        })
    };
    let web = ["web1", "web2"].into_iter().find(|w| has(w, "web"));
    assert!(has("lb1", "lb") && web.is_some(), "{}\n{found}", page.dom);
    println!(
        "trace: {marker} on the search page {:.1} s after the request, from lb1 and {}",
        waited.as_secs_f64(),
        web.unwrap()
    );

    //    Stopping db1 (the primary): the web servers' and the keepers' lines about it,
    //    found by host and service. The services log at `warn` here: the keeper that
    //    takes over says "took the leader key", each web server "the leader moved".
    let stopped = now() as i64;
    stack.host("stop", "db1");
    let t3 = std::time::Instant::now();
    let search_for = |service: &str, text: &str| {
        format!(
            "/logs?service={service}&q={}&from={}&to={}",
            rampart_dashboard::prom::encode(text),
            stopped - 5,
            now() as i64 + 5
        )
    };
    let rows_of = |dom: &str| -> Vec<(String, String)> {
        dom.split("<tr class=\"log-line\">")
            .skip(1)
            .map(|r| {
                let cell = |class: &str| {
                    r.split(&format!("<td class=\"{class}\">"))
                        .nth(1)
                        .and_then(|c| c.split("</td>").next())
                        .unwrap_or("")
                        .to_owned()
                };
                (cell("host"), cell("line"))
            })
            .collect()
    };
    let wanted = [
        ("keeper", "took the leader key", vec!["db2"]),
        (
            "web",
            "the leader moved from db1 to db2",
            vec!["web1", "web2"],
        ),
    ];
    eventually(
        "the keeper's and the web servers' lines after db1 stopped",
        Duration::from_secs(120),
        || {
            wanted
                .iter()
                .all(|(service, text, hosts)| {
                    let rows = rows_of(&dash_get(&search_for(service, text), false));
                    hosts.iter().all(|h| rows.iter().any(|(host, _)| host == h))
                })
                .then_some(())
        },
    );
    let found_after = t3.elapsed();
    for (service, text, hosts) in &wanted {
        let page = open_page(&search_for(service, text));
        let rows = rows_of(&page.dom);
        for h in hosts {
            let line = rows
                .iter()
                .find(|(host, _)| host == h)
                .map(|(_, l)| l.clone())
                .unwrap_or_else(|| panic!("no {service} line of {h}:\n{}", page.dom));
            println!("db1 stopped: {h} ({service}): {line}");
        }
    }
    println!(
        "db1 stopped: the keeper's and the web servers' lines found {:.1} s later",
        found_after.as_secs_f64()
    );
    steady.stop();
    passed_the_waf_unblocked(&stack);
}

//! Issue 14's proof on booted hosts: `rampart render` of the default site, deployed by its
//! own Ansible playbook over ssh to the isolated topology's hosts, each a booted systemd
//! (`systemd-nspawn`) in the host's network namespace of a fabric this test builds
//! (`rampart_infra::netns::Fabric`). Then the end-to-end checks that run against `rampart
//! up`: DNS, HTTPS through the load balancer, round robin, read-your-writes,
//! replication, the whole firewall matrix and monitoring that shows every host; a
//! second run of the playbook changes nothing; a failover drill.
//!
//! Every request is sent from inside a namespace of this test's fabric (`ip netns exec`),
//! ssh included (to each host's own loopback); the fabric, the hosts and their cgroups
//! are removed by name when the test ends. Needs root, systemd-container,
//! openssh-server and ansible-core (`./run test` installs them); skipped visibly
//! outside CI when they are missing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rampart_infra::netns::Fabric;
use rampart_test_support::booted::{Booted, Ssh};
use rampart_test_support::client::tool;
use rampart_test_support::require_root;
use rampart_topology::{Mode, Topology};

#[path = "common/matrix.rs"]
mod matrix;

const RAMPART: &str = env!("CARGO_BIN_EXE_rampart");

fn python_tool(name: &str) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("RAMPART_PYTHON_TOOLS") {
        let p = Path::new(&dir).join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    tool(name, None)
}

/// The fabric, destroyed (by name) when dropped, after the hosts are.
struct Site {
    fabric: Fabric,
    hosts: Vec<Booted>,
    dir: PathBuf,
}

impl Drop for Site {
    fn drop(&mut self) {
        for h in &self.hosts {
            h.poweroff();
        }
        // Each host's Drop waits for its poweroff (bounded) and removes its cgroups.
        self.hosts.clear();
        let _ = self.fabric.destroy();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Site {
    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.fabric.prefix)
    }

    /// Runs `args` inside `host`'s namespace (bounded by the command itself).
    fn exec(&self, host: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(host)])
            .args(args)
            .output()
            .unwrap()
    }

    fn sh(&self, host: &str, script: &str) -> String {
        String::from_utf8_lossy(&self.exec(host, &["bash", "-c", script]).stdout).into_owned()
    }
}

/// The recap of a playbook run: per host, `ok`, `changed`, `failed`, `unreachable`.
fn recap(text: &str) -> Vec<(String, u32, u32, u32, u32)> {
    let start = text.find("PLAY RECAP").expect("no PLAY RECAP");
    text[start..]
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (host, rest) = l.split_once(':')?;
            let get = |k: &str| -> u32 {
                rest.split_whitespace()
                    .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            Some((
                host.trim().to_owned(),
                get("ok"),
                get("changed"),
                get("failed"),
                get("unreachable"),
            ))
        })
        .collect()
}

fn playbook(playbook: &Path, dir: &Path, ssh: &Ssh, home: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new("timeout")
        .arg("900")
        .arg(playbook)
        .arg("site.yml")
        .args(extra)
        .current_dir(dir)
        .env("HOME", home)
        .env("ANSIBLE_LOCAL_TEMP", home.join("tmp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
        .env(
            "ANSIBLE_SSH_ARGS",
            format!(
                "-F {} -o ControlMaster=auto -o ControlPersist=30s -o ControlPath={}/cp-%C",
                ssh.config.display(),
                ssh.dir.display()
            ),
        )
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_rendered_site_deploys_to_booted_hosts_and_serves() {
    if !require_root("network namespaces and systemd-nspawn") {
        return;
    }
    let (Some(_), Some(_), Some(ansible)) = (
        tool("systemd-nspawn", None),
        tool("sshd", None),
        python_tool("ansible-playbook"),
    ) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("rampart-deploy-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out");
    let o = Command::new(RAMPART)
        .args(["render", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let t = Topology::default_for(Mode::Isolated, 0);
    let prefix = format!("rd{}", std::process::id() % 1_000_000);
    let fabric = Fabric::new(&prefix, t.clone()).unwrap();
    fabric.create().unwrap();
    let mut site = Site {
        fabric,
        hosts: Vec::new(),
        dir: dir.clone(),
    };
    let ssh = Ssh::new(&dir.join("ssh")).unwrap();
    let t0 = Instant::now();
    let plan = rampart_topology::deploy::plan(&t);
    let mut targets = Vec::new();
    for h in &plan.hosts {
        let ns = site.ns(&h.name);
        let host = Booted::boot(&h.name, &ns, &dir.join("hosts").join(&h.name), &ssh).unwrap();
        let addr = h.addresses.last().unwrap().to_string();
        targets.push((addr, ns, host.host_key.clone()));
        site.hosts.push(host);
    }
    ssh.write_config(&targets).unwrap();
    println!(
        "{} hosts booted with sshd in {:.1} s",
        site.hosts.len(),
        t0.elapsed().as_secs_f64()
    );

    // The deployment.
    let home = dir.join("home");
    fs::create_dir_all(&home).unwrap();
    let ansible_dir = out.join("ansible");
    let t0 = Instant::now();
    let (ok, text) = playbook(&ansible, &ansible_dir, &ssh, &home, &[]);
    let first = t0.elapsed();
    // Kept after the test (the run's directory goes with the fabric).
    fs::write(
        std::env::temp_dir().join("rampart-deploy-first-run.log"),
        &text,
    )
    .unwrap();
    if !ok {
        let journals: String = recap(&text)
            .iter()
            .filter(|(_, _, _, f, _)| *f > 0)
            .map(|(h, ..)| journal(&ssh, &targets, &plan, h))
            .collect();
        panic!("the playbook failed:\n{}\n{journals}", tail(&text, 60));
    }
    let r = recap(&text);
    assert_eq!(r.len(), plan.hosts.len(), "{r:?}");
    assert!(r.iter().all(|(_, _, _, f, u)| *f == 0 && *u == 0), "{r:?}");
    println!("first deployment: {:.1} s, {r:?}", first.as_secs_f64());

    // DNS, through the site's DNS server, from the client host.
    let lb_addr = "203.0.113.10";
    let answer = site.sh(
        "client",
        "dig +short +time=2 +tries=2 @203.0.113.53 www.foobar.com",
    );
    assert_eq!(answer.trim(), lb_addr, "{answer}");

    // HTTPS through the load balancer, round robin, read-your-writes, replication.
    let ca = out.join("state/certs/ca.pem");
    let curl = |args: &str| -> String {
        site.sh(
            "client",
            &format!(
                "curl -sS --max-time 5 --cacert {} --resolve www.foobar.com:443:{lb_addr} -D - {args}",
                ca.display()
            ),
        )
    };
    let created = curl(
        "-H 'content-type: application/json' -d '{\"name\":\"Ada\",\"email\":\"ada@example.com\"}' https://www.foobar.com/api/users",
    );
    assert!(
        created.starts_with("HTTP/1.1 201") || created.starts_with("HTTP/2 201"),
        "{created}"
    );
    let header = |resp: &str, name: &str| -> String {
        resp.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let gtid = header(&created, "x-db-gtid");
    assert!(!gtid.is_empty(), "{created}");
    let body = created.split("\r\n\r\n").nth(1).unwrap_or_default();
    let id = serde_json::from_str::<serde_json::Value>(body).unwrap()["id"]
        .as_u64()
        .unwrap();
    // Read-your-writes: the write's GTID in hand, the read sees the row at once.
    let own = curl(&format!(
        "-H 'x-db-gtid: {gtid}' https://www.foobar.com/api/users/{id}"
    ));
    assert!(own.contains("\"Ada\""), "{own}");
    let mut webs = BTreeSet::new();
    let mut dbs = BTreeSet::new();
    let end = Instant::now() + Duration::from_secs(20);
    while (webs.len() < 2 || !dbs.contains("db2")) && Instant::now() < end {
        let r = curl(&format!("https://www.foobar.com/api/users/{id}"));
        if r.contains("\"Ada\"") {
            webs.insert(header(&r, "x-served-by"));
            dbs.insert(header(&r, "x-db-server"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        webs,
        ["web1", "web2"].map(str::to_owned).into(),
        "round robin"
    );
    assert!(dbs.contains("db2"), "replicated reads from db2: {dbs:?}");
    println!("HTTPS: web servers {webs:?}, databases {dbs:?}");

    // The firewall matrix, as under `rampart up`.
    matrix::matrix(&|host, script| site.sh(host, script), &t, "");

    // Monitoring: every host's agent has pushed to the monitor's Prometheus.
    let want: BTreeSet<String> = plan
        .hosts
        .iter()
        .filter(|h| h.service("agent").is_some())
        .map(|h| h.name.clone())
        .collect();
    let end = Instant::now() + Duration::from_secs(90);
    let seen = loop {
        let q = site.sh(
            "monitor",
            "curl -sS --max-time 5 'http://198.18.9.2:9090/api/v1/query?query=rampart_agent_heartbeat_timestamp_seconds'",
        );
        let v: serde_json::Value = serde_json::from_str(&q).unwrap_or_default();
        let seen: BTreeSet<String> = v["data"]["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["metric"]["instance"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if seen == want || Instant::now() > end {
            break seen;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(seen, want, "hosts seen by the monitor");
    println!("monitoring: heartbeats from {seen:?}");

    // A second run changes nothing.
    let t0 = Instant::now();
    let (ok, text) = playbook(&ansible, &ansible_dir, &ssh, &home, &[]);
    let second = t0.elapsed();
    fs::write(
        std::env::temp_dir().join("rampart-deploy-second-run.log"),
        &text,
    )
    .unwrap();
    assert!(ok, "second run failed:\n{}", tail(&text, 80));
    let r = recap(&text);
    assert!(
        r.iter().all(|(_, _, c, f, _)| *c == 0 && *f == 0),
        "second run: {r:?}"
    );
    println!(
        "second run: {:.1} s, changed=0 on every host",
        second.as_secs_f64()
    );
}

/// The end of `host`'s journal, over ssh, for a failure's message.
fn journal(
    ssh: &Ssh,
    targets: &[(String, String, String)],
    plan: &rampart_topology::plan::Plan,
    host: &str,
) -> String {
    let Some(i) = plan.hosts.iter().position(|h| h.name == host) else {
        return String::new();
    };
    let out = Command::new("timeout")
        .arg("30")
        .arg("ssh")
        .arg("-F")
        .arg(&ssh.config)
        .arg(&targets[i].0)
        // One string: the remote shell must not expand the patterns.
        .arg(
            "systemctl --no-pager --failed; journalctl -b --no-pager -n 80 -o short-monotonic \
             -u 'rampart-*' -u mariadb.service -u etcd.service -u 'prometheus*' \
             -u keepalived.service",
        )
        .output()
        .unwrap();
    format!(
        "--- {host}'s journal:\n{}{}\n",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

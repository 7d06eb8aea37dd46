//! Issue 14's proof on booted hosts: `rampart render` of the default site, deployed by its
//! own Ansible playbook over ssh to the isolated topology's hosts, each a booted systemd
//! (`systemd-nspawn`) in the host's network namespace of a fabric this test builds
//! (`rampart_infra::netns::Fabric`). Then the end-to-end checks that run against `rampart
//! up`: DNS, HTTPS through the load balancer, round robin, read-your-writes,
//! replication, the whole firewall matrix and monitoring that shows every host; a
//! second run of the playbook changes nothing; the guard rails; a new binary deployed
//! to the whole site under reads without a failed one; a failover drill.
//!
//! Every request is sent from inside a namespace of this test's fabric (`ip netns exec`),
//! ssh included (to each host's own loopback); the fabric, the hosts and their cgroups
//! are removed by name when the test ends. Needs root, systemd-container,
//! openssh-server and ansible-core (`./run test` installs them); skipped visibly
//! outside CI when they are missing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rampart_infra::netns::Fabric;
use rampart_test_support::booted::{Booted, Ssh};
use rampart_test_support::client::{python_tool, tool};
use rampart_test_support::require_root;
use rampart_topology::{Mode, Segment, Topology};

#[path = "common/matrix.rs"]
mod matrix;

const RAMPART: &str = env!("CARGO_BIN_EXE_rampart");

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
        let _ = self.fabric.remove_host("bastion");
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
    // Ansible connects from a bastion of the test's (on the management and public
    // segments) through each host's firewall, which opens ssh to it alone.
    let (bastion_mgmt, bastion_public) = ("198.18.9.5", "203.0.113.5");
    let o = Command::new(RAMPART)
        .args(["render", "--out"])
        .arg(&out)
        .args(["--ssh-from", bastion_mgmt, "--ssh-from", bastion_public])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let t = Topology::default_for(Mode::Isolated, 0);
    let prefix = format!("rd{}", std::process::id() % 1_000_000);
    let fabric = Fabric::new(&prefix, t.clone()).unwrap();
    fabric.create().unwrap();
    let bastion = rampart_topology::Host {
        name: "bastion".into(),
        role: rampart_topology::Role::Client,
        segments: vec![
            (Segment::Public, bastion_public.parse().unwrap()),
            (Segment::Mgmt, bastion_mgmt.parse().unwrap()),
        ],
        local: "127.0.3.5".parse().unwrap(),
        limits: rampart_topology::Limits::default(),
    };
    fabric.add_host(&bastion).unwrap();
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
    ssh.write_config(&targets, Some(&site.ns("bastion")))
        .unwrap();
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
    let first_text = text.clone();
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
        // Inside the monitor host (its files are the container's, not this machine's).
        let q = ssh_run(
            &ssh,
            "198.18.9.2",
            "curl -sS --max-time 5 --cacert /var/lib/rampart/certs/ca.pem \
             --cert /var/lib/rampart/hosts/monitor/plane-dashboard.pem \
             --key /var/lib/rampart/hosts/monitor/plane-dashboard.key \
             'https://127.0.0.1:9091/api/v1/query?query=rampart_agent_heartbeat_timestamp_seconds'",
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
    if seen != want {
        // What the monitor answered, and what the gate and two agents logged.
        let diag = [
            ("monitor", "curl -sS --max-time 5 --cacert /var/lib/rampart/certs/ca.pem --cert /var/lib/rampart/hosts/monitor/plane-dashboard.pem --key /var/lib/rampart/hosts/monitor/plane-dashboard.key 'https://127.0.0.1:9091/api/v1/query?query=up' 2>&1"),
            ("monitor", "journalctl --no-pager -n 30 -u rampart-gate -u prometheus 2>&1"),
            ("monitor", "journalctl --no-pager -n 15 -u rampart-agent 2>&1"),
            ("web1", "journalctl --no-pager -n 15 -u rampart-agent 2>&1"),
        ]
        .iter()
        .map(|(h, cmd)| {
            let addr = if *h == "web1" { "198.18.9.11" } else { "198.18.9.2" };
            format!("--- {h}: {cmd}\n{}", ssh_run(&ssh, addr, cmd))
        })
        .collect::<Vec<_>>()
        .join("\n");
        panic!("hosts seen by the monitor: {seen:?}, expected {want:?}\n{diag}");
    }
    println!("monitoring: heartbeats from {seen:?}");
    deployed_certificate_expiries(&ssh, &plan);
    deployed_host_collectors(&ssh, &plan);
    journals_reach_the_store(&ssh, &plan);

    // ssh: each host's firewall lets the bastion's address in, and no other address of
    // the same segment.
    let iface = rampart_topology::render::segment_iface(Segment::Mgmt);
    let o = site.exec(
        "bastion",
        &["ip", "addr", "add", "198.18.9.6/24", "dev", &iface],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let knock = |from: &str, to: &str| -> bool {
        let probe = "import socket, sys\n\
                     s = socket.socket(); s.settimeout(3); s.bind((sys.argv[1], 0))\n\
                     try:\n    s.connect((sys.argv[2], 22)); print('open')\n\
                     except OSError as e:\n    print(e)\n";
        let o = site.exec("bastion", &["python3", "-c", probe, from, to]);
        String::from_utf8_lossy(&o.stdout).trim() == "open"
    };
    for to in ["198.18.9.11", "198.18.9.21", "198.18.9.2"] {
        assert!(
            knock(bastion_mgmt, to),
            "ssh to {to} from the bastion refused"
        );
        assert!(
            !knock("198.18.9.6", to),
            "ssh to {to} open to another address"
        );
    }
    println!("ssh: open to the bastion (deploy.ssh_from), dropped from another address");

    // A second run changes nothing, with diffs shown.
    let t0 = Instant::now();
    let (ok, text) = playbook(&ansible, &ansible_dir, &ssh, &home, &["--diff"]);
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

    // No key, password or token in what the playbook printed.
    let secrets = secret_values(&out.join("state"));
    assert!(secrets.len() > 20, "{} secrets", secrets.len());
    for (name, value) in &secrets {
        assert!(
            !first_text.contains(value.as_str()) && !text.contains(value.as_str()),
            "the playbook's output shows {name}"
        );
    }
    println!("no secret in the output: {} values checked", secrets.len());

    guard_rails(&ansible, &ansible_dir, &ssh, &home, &out, &curl);
    site_upgrade(&site, &ansible, &ansible_dir, &ssh, &home, &out, id);
    failover_drill(&site, &ssh, &curl);
    // The runs' logs are kept only when something failed.
    for log in [
        "rampart-deploy-first-run.log",
        "rampart-deploy-second-run.log",
    ] {
        let _ = fs::remove_file(std::env::temp_dir().join(log));
    }
}

/// Every password and every line of every key the render made, by file name.
fn secret_values(state: &Path) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let mut stack = vec![state.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.display().to_string();
            let text = fs::read_to_string(&p).unwrap_or_default();
            if name.ends_with(".key") {
                v.extend(
                    text.lines()
                        .filter(|l| !l.starts_with("-----") && l.len() > 16)
                        .map(|l| (name.clone(), l.to_owned())),
                );
            } else if name.contains("/secrets/") {
                v.push((name, text.trim().to_owned()));
            }
        }
    }
    v
}

/// `command` on `addr` over ssh: its stdout.
fn ssh_run(ssh: &Ssh, addr: &str, command: &str) -> String {
    let out = Command::new("timeout")
        .arg("30")
        .arg("ssh")
        .arg("-F")
        .arg(&ssh.config)
        .arg(addr)
        .arg(command)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `systemctl show` of `unit` on `addr`: its main PID and when it last became active.
fn unit_state(ssh: &Ssh, addr: &str, unit: &str) -> String {
    ssh_run(
        ssh,
        addr,
        &format!("systemctl show -p MainPID -p ActiveEnterTimestampMonotonic {unit}"),
    )
}

/// A unit that `systemd-analyze verify` only warns about, and a ruleset `nft -c` rejects,
/// each stop the play before anything is restarted; the site keeps serving.
fn guard_rails(
    ansible: &Path,
    dir: &Path,
    ssh: &Ssh,
    home: &Path,
    out: &Path,
    curl: &dyn Fn(&str) -> String,
) {
    let web1 = "198.18.9.11";
    let lb1 = "198.18.9.10";
    let cases = [
        (
            out.join("hosts/web1/etc/systemd/system/rampart-web.service"),
            "[Service]\n",
            "[Service]\nRestartSecs=1s\n",
            "Check the staged units",
        ),
        (
            out.join("hosts/lb1/etc/rampart/nftables.conf"),
            "policy drop;",
            "policy dorp;",
            "Install the firewall once nft -c accepts it",
        ),
    ];
    for (file, from, to, task) in cases {
        let good = fs::read_to_string(&file).unwrap();
        assert!(good.contains(from), "{}", file.display());
        fs::write(&file, good.replacen(from, to, 1)).unwrap();
        let before = (
            unit_state(ssh, web1, "rampart-web.service"),
            unit_state(ssh, lb1, "rampart-lb.service"),
            // The ruleset file in force (the live table's counters move by themselves).
            ssh_run(ssh, lb1, "sha256sum /etc/rampart/nftables.conf"),
        );
        let (ok, text) = playbook(ansible, dir, ssh, home, &[]);
        fs::write(&file, good).unwrap();
        assert!(!ok, "a broken {} passed the play", file.display());
        let failed_at = text
            .lines()
            .rev()
            .find(|l| l.starts_with("TASK ["))
            .unwrap_or_default()
            .to_owned();
        assert!(
            failed_at.contains(task),
            "stopped at {failed_at}, expected {task}"
        );
        assert!(
            !text.contains("RUNNING HANDLER"),
            "a handler ran:\n{}",
            tail(&text, 40)
        );
        let after = (
            unit_state(ssh, web1, "rampart-web.service"),
            unit_state(ssh, lb1, "rampart-lb.service"),
            // The ruleset file in force (the live table's counters move by themselves).
            ssh_run(ssh, lb1, "sha256sum /etc/rampart/nftables.conf"),
        );
        assert_eq!(before, after, "something restarted or reloaded");
        let r = curl("https://www.foobar.com/healthz");
        assert!(
            r.starts_with("HTTP/2 200") || r.starts_with("HTTP/1.1 200"),
            "{r}"
        );
        println!(
            "guard rail: {} stopped the play at {failed_at}; nothing restarted, the site serves",
            file.display()
        );
    }
}

/// A changed binary deployed to the whole site by the whole playbook, under a bounded
/// read loop from the client host: every unit that runs `rampart` restarts (the web
/// servers drained one at a time, the load balancer behind its socket unit, each
/// database host after its keeper handed the leadership over), the Debian services whose
/// files did not change do not, and no request fails.
fn site_upgrade(
    site: &Site,
    ansible: &Path,
    dir: &Path,
    ssh: &Ssh,
    home: &Path,
    out: &Path,
    id: u64,
) {
    // The same program with bytes appended (the loader ignores them): a new binary.
    let bin = out.join("bin/rampart");
    let mut bytes = fs::read(&bin).unwrap();
    bytes.extend_from_slice(b"\nrampart deploy test: upgraded\n");
    fs::write(&bin, bytes).unwrap();
    // Every unit of every host, and whether the new binary must restart it.
    let plan = &rampart_topology::deploy::plan(&Topology::default_for(Mode::Isolated, 0));
    let mut units = Vec::new();
    for h in &plan.hosts {
        let Some(b) = rampart_topology::deploy::bundle(plan, &h.name, &[], "") else {
            continue;
        };
        let addr = h.addresses.last().unwrap().to_string();
        for (u, _) in &b.units {
            if u.unit == rampart_topology::deploy::DB_INIT_UNIT
                || u.unit == rampart_topology::deploy::LB_SOCKET_UNIT
            {
                continue;
            }
            let restarts = u.unit.starts_with("rampart-") || u.unit == "mariadb.service";
            units.push((h.name.clone(), addr.clone(), u.unit.clone(), restarts));
        }
    }
    let state = |units: &[(String, String, String, bool)]| -> Vec<String> {
        units
            .iter()
            .map(|(_, a, u, _)| unit_state(ssh, a, u))
            .collect()
    };
    let before = state(&units);
    let stop = site.dir.join("stop-reads");
    let script = format!(
        "n=0; end=$((SECONDS+900)); \
         while [ ! -e {stop} ] && [ $SECONDS -lt $end ] && [ $n -lt 40000 ]; do \
           curl -s -o /dev/null -w '%{{http_code}}\\n' --max-time 5 --cacert {ca} \
             --resolve www.foobar.com:443:203.0.113.10 https://www.foobar.com/api/users/{id}; \
           n=$((n+1)); \
         done",
        stop = stop.display(),
        ca = out.join("state/certs/ca.pem").display(),
    );
    let reads = Command::new("ip")
        .args(["netns", "exec", &site.ns("client"), "bash", "-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let (ok, text) = playbook(ansible, dir, ssh, home, &[]);
    let took = t0.elapsed();
    fs::write(&stop, "").unwrap();
    let codes = reads.wait_with_output().unwrap();
    let codes = String::from_utf8_lossy(&codes.stdout).into_owned();
    if !ok {
        fs::write(
            std::env::temp_dir().join("rampart-deploy-upgrade-run.log"),
            &text,
        )
        .unwrap();
    }
    assert!(ok, "the upgrade failed:\n{}", tail(&text, 60));
    let total = codes.lines().count();
    let failed: Vec<&str> = codes.lines().filter(|c| *c != "200").collect();
    let after = state(&units);
    for (i, (host, _, unit, restarts)) in units.iter().enumerate() {
        if *restarts {
            assert_ne!(before[i], after[i], "{host} {unit} was not restarted");
        } else {
            assert_eq!(
                before[i], after[i],
                "{host} {unit} restarted: its files did not change"
            );
        }
    }
    let count = |task: &str| text.matches(&format!("TASK [{task}]")).count();
    assert_eq!(
        count("web : Drain the web server from every load balancer"),
        2,
        "each web server drained once:\n{}",
        tail(&text, 60)
    );
    assert_eq!(
        count("web : Wait until every load balancer has it in rotation again"),
        2,
        "each web server back in rotation before the next is drained:\n{}",
        tail(&text, 60)
    );
    // db1 led: it hands over to db2, restarts, catches up; then db2 hands back.
    assert_eq!(
        count("database : Hand the leadership to the caught-up standby before the restart"),
        2,
        "two switchovers:\n{}",
        tail(&text, 80)
    );
    assert!(total > 20, "only {total} reads during the upgrade");
    assert!(
        failed.is_empty(),
        "{} of {total} reads failed: {failed:?}",
        failed.len()
    );
    let restarted = units.iter().filter(|u| u.3).count();
    println!(
        "site upgrade (a new binary, the whole playbook): {:.1} s, {restarted} units restarted \
         and {} left alone, {total} reads during it, 0 failed",
        took.as_secs_f64(),
        units.len() - restarted
    );
}

/// Every certificate file each host's agent was given (what its services use) has its
/// expiry in Prometheus: the agent, running as its service user under its hardened unit,
/// can read each one on a real host.
fn deployed_certificate_expiries(ssh: &Ssh, plan: &rampart_topology::plan::Plan) {
    let mut want: BTreeMap<String, usize> = BTreeMap::new();
    for h in &plan.hosts {
        let Some(agent) = h.service("agent") else {
            continue;
        };
        let config: toml::Table = agent
            .files
            .iter()
            .find(|f| f.path.ends_with("agent.toml"))
            .map(|f| toml::from_str(&f.contents).unwrap())
            .unwrap();
        let files = config["certificates"]["files"].as_array().unwrap().len();
        want.insert(h.name.clone(), files);
    }
    let end = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let q = ssh_run(
            ssh,
            "198.18.9.2",
            "curl -sS --max-time 5 --cacert /var/lib/rampart/certs/ca.pem \
             --cert /var/lib/rampart/hosts/monitor/plane-dashboard.pem \
             --key /var/lib/rampart/hosts/monitor/plane-dashboard.key \
             'https://127.0.0.1:9091/api/v1/query?query=count+by+(instance)(rampart_certificate_expiry_timestamp_seconds)'",
        );
        let v: serde_json::Value = serde_json::from_str(&q).unwrap_or_default();
        let seen: BTreeMap<String, usize> = v["data"]["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| {
                        let host = r["metric"]["instance"].as_str()?.to_owned();
                        let n = r["value"][1].as_str()?.parse().ok()?;
                        Some((host, n))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if seen == want || Instant::now() > end {
            break seen;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(
        seen, want,
        "certificate files whose expiry each host reports"
    );
    println!(
        "certificate expiries: {} files on {} hosts, every one readable by its agent",
        want.values().sum::<usize>(),
        want.len()
    );
}

/// The host collectors this machine or its containers cannot serve any reader, with
/// the reason.
const COLLECTORS_UNAVAILABLE_HERE: &[(&str, &str)] = &[
    (
        "timex",
        "systemd-nspawn lets a container make @clock calls, adjtimex included, only with \
         CAP_SYS_TIME, which the test hosts do not get (it would let them set this \
         machine's clock); on a real host the unit allows the read (ProtectClock=no, \
         SystemCallFilter=adjtimex, no CAP_SYS_TIME)",
    ),
    ("schedstat", "this kernel has no /proc/schedstat"),
];

/// node_exporter's collectors run under the agent's hardened unit (ProtectSystem,
/// ProtectKernelTunables, the system-call filter...) on every booted host: each
/// reports success there but those of [`COLLECTORS_UNAVAILABLE_HERE`].
fn deployed_host_collectors(ssh: &Ssh, plan: &rampart_topology::plan::Plan) {
    let want: BTreeSet<String> = plan
        .hosts
        .iter()
        .filter(|h| h.service("agent").is_some())
        .map(|h| h.name.clone())
        .collect();
    let ask = |q: &str| -> Vec<serde_json::Value> {
        let text = ssh_run(
            ssh,
            "198.18.9.2",
            &format!(
                "curl -sS --max-time 5 --get --cacert /var/lib/rampart/certs/ca.pem \
                 --cert /var/lib/rampart/hosts/monitor/plane-dashboard.pem \
                 --key /var/lib/rampart/hosts/monitor/plane-dashboard.key \
                 --data-urlencode 'query={q}' 'https://127.0.0.1:9091/api/v1/query'"
            ),
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    };
    // Every host's agent has reported its collectors.
    let end = Instant::now() + Duration::from_secs(60);
    let results = loop {
        let rs = ask(r#"node_scrape_collector_success{job="node"}"#);
        let hosts: BTreeSet<String> = rs
            .iter()
            .filter_map(|r| r["metric"]["instance"].as_str().map(str::to_owned))
            .collect();
        if hosts == want || Instant::now() > end {
            break rs;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let mut ok = BTreeSet::new();
    let mut failing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &results {
        let (Some(host), Some(collector)) = (
            r["metric"]["instance"].as_str(),
            r["metric"]["collector"].as_str(),
        ) else {
            continue;
        };
        if r["value"][1] == "1" {
            ok.insert(collector.to_owned());
        } else {
            failing
                .entry(collector.to_owned())
                .or_default()
                .insert(host.to_owned());
        }
    }
    println!(
        "host collectors under the agent's unit: {} succeed on the booted hosts; failing: {failing:?}",
        ok.len()
    );
    assert!(
        ok.len() > 20,
        "too few collectors succeed: {ok:?}, failing {failing:?}"
    );
    for (collector, hosts) in &failing {
        match COLLECTORS_UNAVAILABLE_HERE
            .iter()
            .find(|(c, _)| c == collector)
        {
            Some((_, why)) => println!("  {collector} on {} hosts: {why}", hosts.len()),
            None => panic!("{collector} fails under the agent's unit on {hosts:?}"),
        }
    }
    deployed_systemd_collector(&ask, &want);
}

/// The agent's systemd collector on every booted host, under the agent's unit (an
/// unprivileged user asking over the system bus): it succeeds, its own unit is active
/// in `node_systemd_unit_state` as node_exporter labels it, and node_exporter's
/// families are there, with the families the community dashboards and the node mixin
/// read.
fn deployed_systemd_collector(
    ask: &dyn Fn(&str) -> Vec<serde_json::Value>,
    want: &BTreeSet<String>,
) {
    let hosts_of = |q: &str| -> BTreeSet<String> {
        ask(q)
            .iter()
            .filter_map(|r| r["metric"]["instance"].as_str().map(str::to_owned))
            .collect()
    };
    let end = Instant::now() + Duration::from_secs(60);
    let succeeded = loop {
        let hosts =
            hosts_of(r#"node_scrape_collector_success{job="node",collector="systemd"} == 1"#);
        if &hosts == want || Instant::now() > end {
            break hosts;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(&succeeded, want, "hosts whose systemd collector succeeds");
    let own = r#"node_systemd_unit_state{job="node",name="rampart-agent.service",state="active",type="exec"} == 1"#;
    assert_eq!(&hosts_of(own), want, "{own}");
    for family in [
        "node_systemd_units",
        "node_systemd_unit_state",
        "node_systemd_service_restart_total",
        "node_systemd_socket_accepted_connections_total",
        "node_systemd_socket_current_connections",
        "node_systemd_socket_refused_connections_total",
        "node_systemd_timer_last_trigger_seconds",
        "node_systemd_system_running",
        "node_systemd_version",
    ] {
        let q = format!(r#"count by (instance) ({family}{{job="node"}})"#);
        assert_eq!(&hosts_of(&q), want, "hosts with {family}");
    }
    let failed = ask(r#"node_systemd_units{job="node",state="failed"} > 0"#);
    let units = ask(r#"sum(node_systemd_units{job="node"})"#);
    let version = ask(r#"node_systemd_version{job="node"}"#);
    println!(
        "systemd collector: succeeds on {} hosts, rampart-agent.service active on each; \
         units on all hosts {}, hosts with a failed unit {}, version {}",
        succeeded.len(),
        units
            .first()
            .and_then(|r| r["value"][1].as_str())
            .unwrap_or("?"),
        failed.len(),
        version
            .first()
            .and_then(|r| r["metric"]["version"].as_str())
            .unwrap_or("?"),
    );
}

/// db1's keeper and server killed: db2 takes over and writes work again; db1 comes back
/// as db2's replica (systemd restarts the keeper).
fn failover_drill(site: &Site, ssh: &Ssh, curl: &dyn Fn(&str) -> String) {
    let keeper = |host: &str, addr: &str| -> serde_json::Value {
        let text = site.sh(
            host,
            &format!("curl -sS --max-time 3 http://{addr}:9104/status"),
        );
        serde_json::from_str(&text).unwrap_or_default()
    };
    assert_eq!(keeper("db1", "198.18.9.21")["role"], "leader");
    let t0 = Instant::now();
    let o = Command::new("timeout")
        .arg("30")
        .arg("ssh")
        .arg("-F")
        .arg(&ssh.config)
        .arg("198.18.9.21")
        .arg("systemctl kill --signal=SIGKILL mariadb.service")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let end = Instant::now() + Duration::from_secs(90);
    let mut failed = 0;
    let back = loop {
        let r = curl(
            "-H 'content-type: application/json' -d '{\"name\":\"Grace\",\"email\":\"grace@example.com\"}' https://www.foobar.com/api/users",
        );
        if r.starts_with("HTTP/2 201") || r.starts_with("HTTP/1.1 201") {
            break t0.elapsed();
        }
        failed += 1;
        assert!(Instant::now() < end, "no write accepted within 90 s: {r}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let (d1, d2) = (keeper("db1", "198.18.9.21"), keeper("db2", "198.18.9.22"));
        if d2["role"] == "leader" && d1["role"] == "replica" && d1["leader"] == "db2" {
            break;
        }
        assert!(Instant::now() < end, "db1 {d1}\ndb2 {d2}");
        std::thread::sleep(Duration::from_millis(500));
    }
    println!(
        "failover drill: db1's keeper and server killed; writes accepted again after {:.2} s ({failed} refused meanwhile), db2 leads, db1 follows it after {:.1} s",
        back.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}

/// Issue 18 on real hosts: every unit a host runs (rampart's own, the keeper under
/// MariaDB's unit, Prometheus, Alertmanager, etcd, keepalived) writes to the journal,
/// and the host's agent ships its entries: the monitor's log store holds a
/// `{host, service, stream="log"}` stream for each, and lines in it.
fn journals_reach_the_store(ssh: &Ssh, plan: &rampart_topology::plan::Plan) {
    let mut want: BTreeSet<(String, String)> = BTreeSet::new();
    for h in plan.hosts.iter().filter(|h| h.service("agent").is_some()) {
        for s in h.services.iter().filter(|s| s.name != "agent") {
            if rampart_topology::deploy::unit_of(s).is_some() {
                let service = match s.launch {
                    rampart_topology::plan::Launch::Database(_) => "keeper",
                    rampart_topology::plan::Launch::Process { .. } => s.name,
                };
                want.insert((h.name.clone(), service.to_owned()));
            }
        }
    }
    let store = |path: &str, args: &str| -> serde_json::Value {
        let q = ssh_run(
            ssh,
            "198.18.9.2",
            &format!(
                "curl -sS --max-time 5 --cacert /var/lib/rampart/certs/ca.pem \
                 --cert /var/lib/rampart/hosts/monitor/plane-dashboard.pem \
                 --key /var/lib/rampart/hosts/monitor/plane-dashboard.key \
                 -G 'https://127.0.0.1:3100/loki/api/v1/{path}' {args}"
            ),
        );
        serde_json::from_str(&q).unwrap_or_default()
    };
    let end = Instant::now() + Duration::from_secs(90);
    let mut last;
    let seen = loop {
        let v = store("series", "--data-urlencode 'match[]={stream=\"log\"}'");
        last = v.clone();
        let seen: BTreeSet<(String, String)> = v["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| {
                        Some((
                            s["host"].as_str()?.to_owned(),
                            s["service"].as_str()?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if want.is_subset(&seen) || Instant::now() > end {
            break seen;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let missing: Vec<_> = want.difference(&seen).collect();
    if !missing.is_empty() {
        // What web1's agent says and counts, and what it may read.
        let diag = ssh_run(
            ssh,
            "198.18.9.11",
            "journalctl --no-pager -n 20 -u rampart-agent 2>&1; \
             curl -sS --max-time 5 http://198.18.9.11:9100/metrics 2>&1 | grep -E 'journal|log_lines|log_pushes'; \
             cat /proc/sys/kernel/random/boot_id; journalctl --list-boots --no-pager | tail -2; \
             ls -la /var/log/journal/*/ 2>&1 | head; ps -o pid,supgrp,args -C journalctl; \
             runuser -u rampart -g rampart -G systemd-journal -- journalctl -o json \
             -u rampart-web.service --no-tail -n 1 --no-pager 2>&1 | head -c 400; \
             ls -la /var/lib/rampart/hosts/web1/agent/logs 2>&1",
        );
        panic!(
            "journal streams missing from the store: {missing:?}\nseen: {seen:?}\n\
             the store's series: {last}\n--- web1:\n{diag}"
        );
    }
    // One line of each Debian service's journal, as stored.
    for (host, service) in [
        ("monitor", "prometheus"),
        ("monitor", "alertmanager"),
        ("db1", "keeper"),
        ("db1", "etcd"),
        ("lb1", "keepalived"),
        ("web1", "web"),
    ]
    .into_iter()
    .filter(|(h, s)| want.contains(&((*h).to_owned(), (*s).to_owned())))
    {
        let v = store(
            "query_range",
            &format!(
                "--data-urlencode 'query={{host=\"{host}\", service=\"{service}\", stream=\"log\"}}' \
                 --data-urlencode limit=1 --data-urlencode since=6h"
            ),
        );
        let line = v["data"]["result"][0]["values"][0][1]
            .as_str()
            .unwrap_or_else(|| panic!("no {host}/{service} line: {v}"))
            .to_owned();
        println!(
            "journal: {host} {service}: {}",
            line.chars().take(120).collect::<String>()
        );
    }
    println!(
        "journals: {} streams of the hosts' units in the store, none missing",
        want.len()
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

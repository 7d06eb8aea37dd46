//! `rampart keeper` with real etcd and real MariaDB on loopback: two keepers, each the
//! parent of its mariadbd, elect db1 (the bootstrap host), name db2 the sync standby,
//! fail over to db2 when db1's server is SIGKILLed (no row lost), let db1 rejoin as a
//! replica by itself (same GTID position, same table checksum), and switch back with a
//! planned switchover. Beside them runs the backup service (`rampart backup serve`): it
//! takes its scheduled full backup from the replica through db2's keeper (mutual TLS),
//! archives the binlog from whichever keeper leads, follows the failover without a gap,
//! and `rampart backup verify` and `rampart restore` then agree with the servers. Needs `etcd-server` and `mariadb-server-core`: in CI their absence
//! fails the test, elsewhere it is skipped visibly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rampart_infra::mariadb::{self, Grants, Instance, Role, Secrets};
use rampart_test_support::{eventually, Proc};
use rampart_topology::plan::DbTls;

const RAMPART: &str = env!("CARGO_BIN_EXE_rampart");
/// This test's own loopback block.
const NET: &str = "127.203.0";

fn have(program: &str, package: &str) -> bool {
    let found = ["/usr/bin", "/usr/sbin"]
        .iter()
        .any(|d| Path::new(d).join(program).exists());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{program} is missing: install the Debian package {package}"
        );
        eprintln!("SKIPPED: {program} is missing (Debian package {package})");
    }
    found
}

fn addr(last: u8, port: u16) -> SocketAddr {
    format!("{NET}.{last}:{port}").parse().unwrap()
}

/// GET `path` on `addr`: (status, body).
fn http(method: &str, addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: k\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

fn status(addr: SocketAddr) -> Option<serde_json::Value> {
    let (code, body) = http("GET", addr, "/status")?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

struct Site {
    /// Kept for its lifetime: the data, logs and certificates.
    _dir: tempfile::TempDir,
    etcd: Option<rampart_test_support::etcd::EtcdCluster>,
    keepers: Vec<Option<Proc>>,
    dbs: Vec<Instance>,
    backup: Option<Proc>,
}

impl Site {
    fn keeper_status(i: usize) -> SocketAddr {
        addr(11 + i as u8, 9104)
    }

    fn start_keeper(&mut self, i: usize) {
        let inst = &self.dbs[i];
        let log = std::fs::File::create(inst.dir.join("keeper.log")).unwrap();
        let argv: Vec<OsString> = inst.keeper_command().unwrap();
        let child = Command::new(RAMPART)
            .arg("keeper")
            .arg("--config")
            .arg(inst.dir.join("keeper.toml"))
            .arg("--")
            .args(argv)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.keepers[i] = Some(Proc {
            child,
            name: format!("keeper {}", inst.name),
        });
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dbs[i].dir.join("keeper.log")).unwrap_or_default()
    }

    fn wait_role(&self, i: usize, role: &str, what: &str) -> serde_json::Value {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let s = status(Self::keeper_status(i));
            if let Some(s) = s.as_ref().filter(|s| s["role"] == role) {
                return s.clone();
            }
            assert!(
                Instant::now() < end,
                "{what}: {} not {role} after 60 s; last status {s:?}\n--- keeper log ---\n{}",
                self.dbs[i].name,
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn setup(etcd: &rampart_test_support::etcd::EtcdCluster) -> Site {
    let mut dir = tempfile::tempdir().unwrap();
    // RAMPART_KEEP_TEST_DIRS=1 keeps the logs and data of a failed run.
    dir.disable_cleanup(std::env::var_os("RAMPART_KEEP_TEST_DIRS").is_some());
    let pki = dir.path().join("pki");
    let ca = rampart_tls::pki::Ca::create(&pki, "keeper test CA").unwrap();
    let etcd_tls = etcd.client_tls("keeper");
    let (etcd_cert, etcd_key) = etcd_tls.client_cert.clone().unwrap();
    let endpoints = etcd
        .urls()
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let secrets = Secrets::load_or_create(&dir.path().join("secrets")).unwrap();
    ca.issue_client(&pki, "backup", &["backup".to_owned()])
        .unwrap();
    std::fs::write(dir.path().join("secrets/db-backup.password"), "backup-pw\n").unwrap();
    let mut dbs = Vec::new();
    for (i, name) in ["db1", "db2"].iter().enumerate() {
        let ip = format!("{NET}.{}", 11 + i);
        let stem = format!("{name}-db");
        ca.issue(&pki, &stem, std::slice::from_ref(&ip), false)
            .unwrap();
        dbs.push(Instance {
            name: (*name).into(),
            role: if i == 0 { Role::Primary } else { Role::Replica },
            server_id: 1 + i as u32,
            bind: ip.parse().unwrap(),
            port: 3306,
            dir: dir.path().join(name),
            tls: Some(DbTls {
                cert: pki.join(format!("{stem}.pem")),
                key: pki.join(format!("{stem}.key")),
                ca: pki.join("ca.pem"),
            }),
            netns: None,
        });
    }
    // On loopback a connection to 127.203.0.x comes from 127.0.0.1.
    let local = vec!["127.0.0.1".to_owned()];
    let grants = Grants {
        app_hosts: local.clone(),
        replica_hosts: local.clone(),
        monitor_hosts: local.clone(),
        keeper_hosts: local,
        backup_hosts: Vec::new(),
    };
    let users = grants.users();
    for (i, inst) in dbs.iter().enumerate() {
        assert!(inst.prepare().unwrap(), "a new data directory");
        mariadb::bootstrap_fresh(inst, &secrets, &users).unwrap();
        let peer = &dbs[1 - i];
        let toml = format!(
            r#"
host = "{name}"
server_id = {id}
bootstrap = {boot}
[listen]
status = "{status}"
[mariadb]
addr = "{addr}:3306"
user = "rampart_keeper"
password_file = "{secrets}/db-keeper.password"
repl_user = "rampart_repl"
repl_password_file = "{secrets}/db-repl.password"
ca = "{pki}/ca.pem"
app_users = ["foobar_app", "foobar_migrate"]
[[peers]]
host = "{peer}"
server_id = {peer_id}
addr = "{peer_addr}:3306"
[etcd]
endpoints = [{endpoints}]
ca = "{etcd_ca}"
cert = "{etcd_cert}"
key = "{etcd_key}"
prefix = "/rampart/test/"
[failover]
quiet_period = "0s"
[backup]
listen = "{addr}:9108"
cert = "{pki}/{stem}.pem"
key = "{pki}/{stem}.key"
ca = "{pki}/ca.pem"
clients = ["backup"]
socket = "{socket}"
datadir = "{datadir}"
workdir = "{workdir}"
"#,
            stem = format!("{}-db", inst.name),
            socket = inst.socket().display(),
            datadir = inst.datadir().display(),
            workdir = inst.dir.join("backup-work").display(),
            name = inst.name,
            id = inst.server_id,
            boot = i == 0,
            status = Site::keeper_status(i),
            addr = inst.bind,
            secrets = dir.path().join("secrets").display(),
            pki = pki.display(),
            peer = peer.name,
            peer_id = peer.server_id,
            peer_addr = peer.bind,
            etcd_ca = etcd_tls.ca.display(),
            etcd_cert = etcd_cert.display(),
            etcd_key = etcd_key.display(),
        );
        std::fs::write(inst.dir.join("keeper.toml"), toml).unwrap();
    }
    let d = dir.path();
    let backup_toml = format!(
        r#"
[listen]
status = "{NET}.20:9107"
[store]
dir = "{d}/backup/store"
key_file = "{d}/backup/keys/backup.key"
staging = "{d}/backup/staging"
scratch = "{d}/backup/scratch"
[archive]
password_file = "{d}/secrets/db-backup.password"
ca = "{pki}/ca.pem"
tick = "500ms"
[tls]
ca = "{pki}/ca.pem"
cert = "{pki}/backup.pem"
key = "{pki}/backup.key"
[[servers]]
host = "db1"
mysql = "{NET}.11:3306"
keeper = "{k1}"
source = "{NET}.11:9108"
[[servers]]
host = "db2"
mysql = "{NET}.12:3306"
keeper = "{k2}"
source = "{NET}.12:9108"
"#,
        d = d.display(),
        pki = pki.display(),
        k1 = Site::keeper_status(0),
        k2 = Site::keeper_status(1),
    );
    std::fs::write(d.join("backup.toml"), backup_toml).unwrap();
    let _ = secrets;
    Site {
        _dir: dir,
        etcd: None,
        keepers: vec![None, None],
        dbs,
        backup: None,
    }
}

/// `rampart ARGS...`: its stdout, or a panic with its stderr.
fn rampart(args: &[&str], config: &Path) -> String {
    let out = Command::new(RAMPART)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rampart {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The backup service's `/status`.
fn backup_status() -> Option<serde_json::Value> {
    let (code, body) = http("GET", addr(20, 9107), "/status")?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

/// Waits until the archive follows `server` and holds everything `db` has written.
fn archive_follows(server: &str, db: &Instance) {
    eventually(
        &format!("the archive following {server}"),
        Duration::from_secs(60),
        || {
            let s = backup_status()?;
            let pos = db.sql("SELECT @@gtid_binlog_pos").ok()?;
            let at = s["archive"]["gtid"].as_str()?.to_owned();
            let caught_up = rampart_backup::restore::gtid_le(pos.trim(), &at).ok()?;
            (s["archive"]["server"] == server && caught_up).then_some(s)
        },
    );
}

fn sql(inst: &Instance, q: &str) -> String {
    inst.sql(q).unwrap().trim().to_owned()
}

#[test]
fn keepers_fail_over_without_loss_and_the_old_primary_rejoins() {
    if !have("etcd", "etcd-server") || !have("mariadbd", "mariadb-server-core") {
        return;
    }
    // One etcd member is enough for two keepers (the cluster's own tests cover three).
    let Some(etcd) = rampart_test_support::etcd::EtcdCluster::start(1) else {
        return;
    };
    let mut site = setup(&etcd);
    site.etcd = Some(etcd);
    site.start_keeper(0);
    site.start_keeper(1);

    let s1 = site.wait_role(0, "leader", "bootstrap");
    site.wait_role(1, "replica", "bootstrap");
    let epoch1 = s1["epoch"].as_i64().expect("an epoch");
    // The leader names db2 and runs semi-sync with it.
    eventually("db2 named sync standby", Duration::from_secs(30), || {
        let s = status(Site::keeper_status(0))?;
        (s["sync_standby"] == "db2" && s["semi_sync_active"] == true).then_some(())
    });
    let (db1, db2) = (&site.dbs[0], &site.dbs[1]);
    assert_eq!(sql(db1, "SELECT @@read_only"), "0");
    assert_eq!(sql(db2, "SELECT @@read_only"), "1");
    sql(
        db1,
        "CREATE TABLE IF NOT EXISTS foobar.k (id INT PRIMARY KEY) ENGINE=InnoDB",
    );
    for id in 1..=20 {
        sql(db1, &format!("INSERT INTO foobar.k VALUES ({id})"));
    }
    // The backup service: its account (least privilege), then the service itself.
    sql(
        db1,
        "CREATE USER rampart_backup@'127.0.0.1' IDENTIFIED BY 'backup-pw' REQUIRE SSL; \
         GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO rampart_backup@'127.0.0.1'; \
         GRANT SELECT ON foobar.* TO rampart_backup@'127.0.0.1'",
    );
    let backup_toml = site._dir.path().join("backup.toml");
    let log = std::fs::File::create(site._dir.path().join("backup.log")).unwrap();
    site.backup = Some(Proc {
        child: Command::new(RAMPART)
            .args(["backup", "serve", "--config"])
            .arg(&backup_toml)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
        name: "backup".into(),
    });
    let first = eventually("the scheduled full backup", Duration::from_secs(90), || {
        let s = backup_status()?;
        let b = s["backups"].as_array()?.first()?.clone();
        Some(b)
    });
    assert_eq!(first["kind"], "full");
    assert_eq!(first["source"], "db2", "taken from the replica: {first}");
    archive_follows("db1", db1);
    let semi = sql(db1, "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_yes_tx'");
    assert!(
        !semi.ends_with("\t0"),
        "writes were acknowledged by db2: {semi}"
    );

    // Kill db1's server: db2 takes over, with every row.
    let pid = status(Site::keeper_status(0)).unwrap()["server_pid"]
        .as_u64()
        .unwrap();
    let t = Instant::now();
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    let s2 = site.wait_role(1, "leader", "failover");
    eventually("db2 writable", Duration::from_secs(30), || {
        (db2.sql("SELECT @@read_only").ok()?.trim() == "0").then_some(())
    });
    eprintln!(
        "failover: db2 writable {:?} after SIGKILL of db1's server",
        t.elapsed()
    );
    assert!(s2["epoch"].as_i64().unwrap() > epoch1, "a new epoch: {s2}");
    assert_eq!(sql(db2, "SELECT COUNT(*) FROM foobar.k"), "20");
    for id in 21..=30 {
        sql(db2, &format!("INSERT INTO foobar.k VALUES ({id})"));
    }
    // The archive follows the new primary from where it was: no gap.
    archive_follows("db2", db2);

    // db1's keeper restarts its server as a replica of db2, by itself.
    site.wait_role(0, "replica", "rejoin");
    eventually("db1 the new sync standby", Duration::from_secs(30), || {
        let s = status(Site::keeper_status(1))?;
        (s["sync_standby"] == "db1").then_some(())
    });
    eventually("same position on both", Duration::from_secs(30), || {
        let (a, b) = (
            db1.sql("SELECT @@gtid_current_pos").ok()?,
            db2.sql("SELECT @@gtid_current_pos").ok()?,
        );
        (a == b).then_some(())
    });
    let rows = |db| {
        sql(
            db,
            "SELECT COUNT(*), GROUP_CONCAT(id ORDER BY id) FROM foobar.k",
        )
    };
    assert_eq!(rows(db1), rows(db2));
    assert_eq!(
        sql(db1, "CHECKSUM TABLE foobar.k"),
        sql(db2, "CHECKSUM TABLE foobar.k")
    );
    assert_eq!(sql(db1, "SELECT @@read_only"), "1");

    // Verify and restore through the command line agree with the servers.
    let verified = rampart(&["backup", "verify"], &backup_toml);
    println!("rampart backup verify: {}", verified.trim());
    assert!(verified.contains("rows equal"), "{verified}");
    let into = site._dir.path().join("restored");
    let restored = Command::new(RAMPART)
        .args(["restore", "--config"])
        .arg(&backup_toml)
        .arg("--into")
        .arg(&into)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&restored.stdout);
    println!("rampart restore: {}", text.trim());
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert!(text.contains("foobar.k: 30 rows"), "{text}");
    let metrics = http("GET", addr(20, 9107), "/metrics").unwrap().1;
    for m in [
        "rampart_backup_last_success_timestamp_seconds{kind=\"full\"}",
        "rampart_backup_binlog_archive_lag_seconds 0",
        "rampart_backup_verify_last_result 1",
    ] {
        assert!(metrics.contains(m), "{m} not in:\n{metrics}");
    }

    // A planned switchover back to db1.
    eventually("db1 promotable", Duration::from_secs(30), || {
        let s = status(Site::keeper_status(0))?;
        (s["promotable"] == true).then_some(())
    });
    let (code, body) = http("POST", Site::keeper_status(1), "/switchover?to=db1").unwrap();
    assert_eq!(code, 200, "{body}");
    site.wait_role(0, "leader", "switchover");
    eventually("db1 writable again", Duration::from_secs(30), || {
        (db1.sql("SELECT @@read_only").ok()?.trim() == "0").then_some(())
    });
    site.wait_role(1, "replica", "switchover");
    assert_eq!(sql(db1, "SELECT COUNT(*) FROM foobar.k"), "30");

    // Stopping a keeper stops its server.
    for i in 0..2 {
        let mut k = site.keepers[i].take().unwrap();
        k.signal("TERM");
        assert!(
            k.wait_exit(Duration::from_secs(60)).is_some(),
            "keeper {i} exits"
        );
        assert!(!site.dbs[i].is_running() || db_gone(&site.dbs[i]));
    }
}

fn db_gone(inst: &Instance) -> bool {
    inst.sql("SELECT 1").is_err()
}

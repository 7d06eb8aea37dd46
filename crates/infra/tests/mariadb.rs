//! Real mariadbd primary/replica pairs on random loopback addresses: replication, semi-sync,
//! least privilege, restarts. Skips visibly when MariaDB is not installed (fails in CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rampart_infra::mariadb::{
    self, bring_up_pair, gtid_binlog_pos, replica_status, semi_sync_status, setup_replica,
    wait_replica_connected, Grants, Instance, Role, Secrets, APP_USER, MIGRATE_USER, MONITOR_USER,
    REPL_USER,
};
use rampart_infra::process::wait_until;

const GRACE: Duration = Duration::from_secs(20);

/// Whether MariaDB is installed; without it the test prints SKIPPED, or fails under `CI`.
fn installed() -> bool {
    match mariadb::check_installed() {
        Ok(()) => true,
        Err(e) if std::env::var_os("CI").is_some() => panic!("{e}"),
        Err(_) => {
            println!("SKIPPED: mariadbd not installed (apt-get install mariadb-server-core)");
            false
        }
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).unwrap();
    buf
}

/// `127.<1..=250>.<0..=255>.<2..=250>`: never 127.0.0.1, rarely the same for two tests, so
/// every instance can use port 3306.
fn random_loopback() -> IpAddr {
    let [a, b, c] = random_bytes::<3>();
    IpAddr::V4(Ipv4Addr::new(127, 1 + a % 250, b, 2 + c % 249))
}

/// A primary and a replica in a temporary state directory; dropping it stops both by PID
/// (also when the test panics).
struct Pair {
    tmp: tempfile::TempDir,
    primary: Instance,
    replica: Instance,
    grants: Grants,
    children: Vec<Child>,
}

impl Pair {
    fn new() -> Pair {
        let tmp = tempfile::tempdir().unwrap();
        let primary_addr = random_loopback();
        let mut replica_addr = random_loopback();
        while replica_addr == primary_addr {
            replica_addr = random_loopback();
        }
        let host = |name: &str, role, server_id, bind| Instance {
            name: name.to_owned(),
            role,
            server_id,
            bind,
            port: 3306,
            dir: tmp.path().join("hosts").join(name),
            tls: None,
            netns: None,
        };
        // On loopback every connection comes from 127.0.0.1 (see the mariadb module docs).
        let local = vec!["127.0.0.1".to_owned()];
        Pair {
            primary: host("db1", Role::Primary, 1, primary_addr),
            replica: host("db2", Role::Replica, 2, replica_addr),
            grants: Grants {
                app_hosts: local.clone(),
                replica_hosts: local.clone(),
                monitor_hosts: local.clone(),
                keeper_hosts: local,
                backup_hosts: Vec::new(),
            },
            children: Vec::new(),
            tmp,
        }
    }

    fn secrets_dir(&self) -> PathBuf {
        self.tmp.path().join("secrets")
    }

    fn up(&mut self) -> Secrets {
        let (primary, replica, secrets) = bring_up_pair(
            &self.primary,
            &self.replica,
            &self.secrets_dir(),
            &self.grants,
        )
        .unwrap();
        self.children.push(primary);
        self.children.push(replica);
        secrets
    }

    fn stop_all(&mut self) {
        let replica = self.replica.stop(GRACE);
        let primary = self.primary.stop(GRACE);
        for mut child in self.children.drain(..) {
            let _ = child.wait();
        }
        replica.unwrap();
        primary.unwrap();
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = self.replica.stop(GRACE);
        let _ = self.primary.stop(GRACE);
        for mut child in self.children.drain(..) {
            let _ = child.wait();
        }
    }
}

fn eventually<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait_until(what, Duration::from_secs(30), f).unwrap()
}

/// Runs `sql` over TCP as `user`, the password in `MYSQL_PWD` (never in argv).
fn tcp(instance: &Instance, user: &str, password: &str, sql: &str) -> Result<String, String> {
    let mut child = Command::new("mariadb")
        .arg("--no-defaults")
        .arg("--protocol=TCP")
        .arg(format!("--host={}", instance.bind))
        .arg(format!("--port={}", instance.port))
        .arg(format!("--user={user}"))
        .args(["--batch", "--skip-column-names", "--connect-timeout=5"])
        .env("MYSQL_PWD", password)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A client refused at login exits without reading stdin: its stderr says why.
    let _ = child.stdin.take().unwrap().write_all(sql.as_bytes());
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8(out.stderr).unwrap())
    }
}

#[track_caller]
fn denied(result: Result<String, String>, expected: &str) {
    match result {
        Ok(out) => panic!("expected an error containing {expected:?}, got output {out:?}"),
        Err(err) => assert!(err.contains(expected), "expected {expected:?} in {err:?}"),
    }
}

/// Every GTID in the instance's binlog came from `server_id`: `d-s-n[,d-s-n...]`.
#[track_caller]
fn all_gtids_from(instance: &Instance, server_id: u32) {
    let pos = gtid_binlog_pos(instance).unwrap();
    assert!(!pos.is_empty(), "{}: empty gtid_binlog_pos", instance.name);
    for gtid in pos.split(',') {
        let server: u32 = gtid.trim().split('-').nth(1).unwrap().parse().unwrap();
        assert_eq!(server, server_id, "{}: gtid {gtid} in {pos}", instance.name);
    }
}

fn replica_has(pair: &Pair, sql: &str, expected: &str) {
    eventually(&format!("replica to return {expected:?} for {sql}"), || {
        pair.replica
            .sql(sql)
            .ok()
            .filter(|out| out.trim() == expected)
    });
}

#[test]
fn pair_replicates_with_semi_sync_and_nothing_written_on_the_replica() {
    if !installed() {
        return;
    }
    let mut pair = Pair::new();
    pair.up();
    let p = &pair.primary;
    p.sql(
        "CREATE TABLE foobar.t1 (id INT PRIMARY KEY, v VARCHAR(20));
         INSERT INTO foobar.t1 VALUES (1, 'one');",
    )
    .unwrap();
    replica_has(&pair, "SELECT v FROM foobar.t1 WHERE id = 1", "one");

    let semi = semi_sync_status(p).unwrap();
    assert!(semi.active, "{semi:?}");
    assert_eq!(semi.clients, 1, "{semi:?}");
    assert_eq!(
        semi.no_tx, 0,
        "a commit waited out the semi-sync timeout: {semi:?}"
    );
    assert!(semi.yes_tx >= 2, "{semi:?}");

    let status = replica_status(&pair.replica).unwrap().unwrap();
    assert!(status.io_running && status.sql_running, "{status:?}");
    assert_eq!(status.master_host, p.bind.to_string());
    assert_eq!(status.master_user, REPL_USER);
    assert_eq!(status.using_gtid, "Slave_Pos");
    assert!(
        replica_status(p).unwrap().is_none(),
        "the primary replicates from nobody"
    );

    // The replica's binlog holds only the primary's transactions, and all of them.
    all_gtids_from(&pair.replica, p.server_id);
    all_gtids_from(p, p.server_id);
    let primary_pos = gtid_binlog_pos(p).unwrap();
    eventually("replica binlog to match the primary's", || {
        (gtid_binlog_pos(&pair.replica).ok()? == primary_pos).then_some(())
    });
    let slave_pos = replica_status(&pair.replica)
        .unwrap()
        .unwrap()
        .gtid_slave_pos;
    assert_eq!(slave_pos, primary_pos);

    // Users came to the replica through replication, not a local write.
    let users = pair
        .replica
        .sql("SELECT COUNT(*) FROM mysql.global_priv WHERE User = 'foobar_app'")
        .unwrap();
    assert_eq!(users.trim(), "1");
    assert_eq!(
        pair.replica
            .sql("SELECT @@GLOBAL.read_only")
            .unwrap()
            .trim(),
        "1"
    );
}

#[test]
fn users_have_least_privilege() {
    if !installed() {
        return;
    }
    let mut pair = Pair::new();
    let s = pair.up();
    let (p, r) = (&pair.primary, &pair.replica);
    p.sql("CREATE TABLE foobar.items (id INT PRIMARY KEY, name VARCHAR(50))")
        .unwrap();

    // foobar_app: data only.
    let app = |i: &Instance, sql: &str| tcp(i, APP_USER, &s.app, sql);
    assert_eq!(
        app(
            p,
            "INSERT INTO foobar.items VALUES (1, 'a'); \
             UPDATE foobar.items SET name = 'b' WHERE id = 1; \
             SELECT name FROM foobar.items;"
        )
        .unwrap(),
        "b\n"
    );
    app(
        p,
        "INSERT INTO foobar.items VALUES (9, 'z'); DELETE FROM foobar.items WHERE id = 9",
    )
    .unwrap();
    denied(app(p, "DROP TABLE foobar.items"), "DROP command denied");
    denied(
        app(p, "CREATE TABLE foobar.x (i INT)"),
        "CREATE command denied",
    );
    denied(app(p, "SELECT COUNT(*) FROM mysql.user"), "denied");
    denied(app(p, "CREATE DATABASE other"), "denied");
    denied(
        tcp(p, APP_USER, "wrong-password", "SELECT 1"),
        "Access denied",
    );
    // On the replica: reads work, writes are refused by read_only.
    eventually("items on the replica", || {
        app(r, "SELECT name FROM foobar.items WHERE id = 1")
            .ok()
            .filter(|out| out == "b\n")
    });
    denied(
        app(r, "INSERT INTO foobar.items VALUES (2, 'c')"),
        "--read-only",
    );

    // foobar_migrate: schema changes, no DROP, no DELETE.
    let migrate = |sql: &str| tcp(p, MIGRATE_USER, &s.migrate, sql);
    migrate(
        "CREATE TABLE foobar.m1 (i INT PRIMARY KEY); \
         ALTER TABLE foobar.m1 ADD COLUMN j INT; \
         CREATE INDEX m1_j ON foobar.m1 (j); \
         INSERT INTO foobar.m1 VALUES (1, 2); \
         UPDATE foobar.m1 SET j = 3;",
    )
    .unwrap();
    denied(migrate("DROP TABLE foobar.m1"), "DROP command denied");
    denied(migrate("DELETE FROM foobar.m1"), "DELETE command denied");
    denied(migrate("CREATE DATABASE other"), "denied");

    // rampart_monitor: status and replication state, no data.
    let monitor = |i: &Instance, sql: &str| tcp(i, MONITOR_USER, &s.monitor, sql);
    let slave_status = monitor(r, "SHOW SLAVE STATUS").unwrap();
    assert!(slave_status.contains("Slave_Pos"), "{slave_status}");
    monitor(p, "SHOW MASTER STATUS").unwrap();
    monitor(p, "SHOW BINARY LOGS").unwrap();
    assert!(monitor(p, "SHOW GLOBAL STATUS LIKE 'Uptime'")
        .unwrap()
        .starts_with("Uptime\t"));
    monitor(p, "SELECT COUNT(*) FROM information_schema.PROCESSLIST").unwrap();
    monitor(p, "SHOW ENGINE INNODB STATUS").unwrap();
    denied(
        monitor(p, "INSERT INTO foobar.items VALUES (3, 'c')"),
        "INSERT command denied",
    );
    denied(
        monitor(p, "SELECT * FROM foobar.items"),
        "SELECT command denied",
    );

    // rampart_repl: replication only; root: never over TCP.
    denied(
        tcp(p, REPL_USER, &s.repl, "SELECT * FROM foobar.items"),
        "denied",
    );
    denied(tcp(p, "root", "", "SELECT 1"), "Access denied");

    // Secrets on disk.
    let dir = pair.secrets_dir();
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for file in std::fs::read_dir(&dir).unwrap() {
        let file = file.unwrap();
        assert_eq!(
            file.metadata().unwrap().permissions().mode() & 0o777,
            0o600,
            "{:?}",
            file.path()
        );
    }
    // The binlog holds password hashes, never the passwords.
    let events = p.sql("SHOW BINLOG EVENTS").unwrap();
    for secret in [&s.app, &s.migrate, &s.repl, &s.monitor] {
        assert!(
            !events.contains(secret.as_str()),
            "a password is in the binlog"
        );
    }
}

#[test]
fn restart_reuses_data_users_and_replication() {
    if !installed() {
        return;
    }
    let mut pair = Pair::new();
    let first = pair.up();
    pair.primary
        .sql(
            "CREATE TABLE foobar.t (id INT PRIMARY KEY);
             INSERT INTO foobar.t VALUES (1);",
        )
        .unwrap();
    replica_has(&pair, "SELECT COUNT(*) FROM foobar.t", "1");
    pair.stop_all();
    assert!(!pair.primary.is_running() && !pair.replica.is_running());
    assert!(!pair.primary.pid_file().exists());

    let second = pair.up();
    assert!(
        first.app == second.app && first.repl == second.repl,
        "secrets were reused"
    );
    assert!(pair.primary.is_running() && pair.replica.is_running());
    assert_eq!(
        pair.primary
            .sql("SELECT COUNT(*) FROM foobar.t")
            .unwrap()
            .trim(),
        "1"
    );
    pair.primary.sql("INSERT INTO foobar.t VALUES (2)").unwrap();
    replica_has(&pair, "SELECT COUNT(*) FROM foobar.t", "2");
    let semi = semi_sync_status(&pair.primary).unwrap();
    assert!(
        semi.active && semi.clients == 1 && semi.no_tx == 0,
        "{semi:?}"
    );
    all_gtids_from(&pair.replica, pair.primary.server_id);
    // The app user still works with the same password.
    tcp(
        &pair.primary,
        APP_USER,
        &second.app,
        "SELECT COUNT(*) FROM foobar.t",
    )
    .unwrap();
}

#[test]
fn replica_catches_up_after_being_down() {
    if !installed() {
        return;
    }
    let mut pair = Pair::new();
    let secrets = pair.up();
    pair.primary
        .sql(
            "CREATE TABLE foobar.t (id INT PRIMARY KEY);
             INSERT INTO foobar.t VALUES (1);",
        )
        .unwrap();
    replica_has(&pair, "SELECT COUNT(*) FROM foobar.t", "1");

    assert!(pair.replica.stop(GRACE).unwrap());
    assert!(!pair.replica.is_running());
    // With the replica gone the first commit waits out the semi-sync timeout, then the
    // primary continues asynchronously.
    pair.primary
        .sql("INSERT INTO foobar.t VALUES (2); INSERT INTO foobar.t VALUES (3);")
        .unwrap();
    let semi = semi_sync_status(&pair.primary).unwrap();
    assert!(semi.no_tx >= 1, "{semi:?}");

    let child = pair.replica.start().unwrap();
    pair.children.push(child);
    setup_replica(&pair.replica, &pair.primary, &secrets).unwrap();
    wait_replica_connected(&pair.replica, Duration::from_secs(30)).unwrap();
    replica_has(&pair, "SELECT COUNT(*) FROM foobar.t", "3");
    all_gtids_from(&pair.replica, pair.primary.server_id);
    // Semi-sync comes back by itself once the replica has caught up.
    eventually("semi-sync to be active again", || {
        semi_sync_status(&pair.primary)
            .ok()
            .filter(|s| s.active && s.clients == 1)
    });
}

/// A keeper-run server's new data directory gets the users from a bootstrap outside the
/// binlog (no GTID of its own, so every server of the cluster starts with the same empty
/// history), and the keeper's account can do its job and nothing more.
#[test]
fn fresh_bootstrap_is_outside_the_binlog_and_the_keeper_has_least_privilege() {
    if !installed() {
        return;
    }
    let mut pair = Pair::new();
    let secrets = Secrets::load_or_create(&pair.secrets_dir()).unwrap();
    let inst = pair.primary.clone();
    assert!(inst.prepare().unwrap(), "a new data directory");
    mariadb::bootstrap_fresh(&inst, &secrets, &pair.grants.users()).unwrap();
    assert!(!inst.prepare().unwrap(), "prepared once");
    pair.children.push(inst.start_with(&[]).unwrap());
    assert_eq!(
        gtid_binlog_pos(&inst).unwrap(),
        "",
        "no GTID from the bootstrap"
    );
    assert_eq!(inst.sql("SELECT @@log_bin").unwrap().trim(), "1");
    let keeper = |sql: &str| tcp(&inst, "rampart_keeper", &secrets.keeper, sql);
    keeper(
        "SET GLOBAL read_only = ON; SET GLOBAL rpl_semi_sync_master_enabled = ON; \
         SET GLOBAL rpl_semi_sync_master_timeout = 31536000000; \
         SET GLOBAL rpl_semi_sync_master_enabled = OFF; SET GLOBAL rpl_semi_sync_slave_enabled = OFF; \
         SHOW SLAVE STATUS; SHOW GLOBAL STATUS LIKE 'Rpl%'; \
         SELECT COUNT(*) FROM information_schema.PROCESSLIST; SET GLOBAL read_only = OFF",
    )
    .unwrap();
    denied(keeper("SELECT * FROM mysql.user"), "denied");
    denied(keeper("CREATE DATABASE nope"), "denied");
    // CONNECTION ADMIN also sets the connection limits; durability settings are out of reach.
    denied(
        keeper("SET GLOBAL innodb_flush_log_at_trx_commit = 0"),
        "denied",
    );
    denied(keeper("SET GLOBAL sync_binlog = 0"), "denied");
    pair.stop_all();
}

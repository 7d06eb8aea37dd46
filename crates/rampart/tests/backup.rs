//! Backups and point-in-time restore with real MariaDB on loopback (issue 16): a primary
//! and a replica, steady writes, the binlog archived from the primary as it is written,
//! full and incremental backups taken from the replica with `mariadb-backup`, a mistake
//! (`DELETE FROM users`), and a restore to the moment before it into a scratch server,
//! compared id by id with what the writer had acknowledged. The store is checked to hold
//! no plaintext row and to refuse a flipped byte. Skips visibly without MariaDB (fails
//! under `CI`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rampart_backup::archive::{Archiver, Login, Primary, Status};
use rampart_backup::backup::{take_local, LocalServer, Want};
use rampart_backup::restore::{gtid_le, restore, Point};
use rampart_backup::source::{self, store_remote, Remote, SourceConfig};
use rampart_backup::store::{load_or_create_key, Store};
use rampart_backup::verify::verify;
use rampart_infra::mariadb::{self, bring_up_pair, gtid_binlog_pos, Grants, Instance, Role};

const GRACE: Duration = Duration::from_secs(20);

fn installed() -> bool {
    match mariadb::check_installed() {
        Ok(()) => true,
        Err(e) if std::env::var_os("CI").is_some() => panic!("{e}"),
        Err(_) => {
            println!("SKIPPED: mariadbd not installed (apt-get install mariadb-server-core mariadb-backup)");
            false
        }
    }
}

fn random_loopback(salt: u8) -> IpAddr {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let [a, b, c, _] = n.to_le_bytes();
    IpAddr::V4(Ipv4Addr::new(
        127,
        1 + a % 250,
        b,
        2 + (c.wrapping_add(salt)) % 249,
    ))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

struct Pair {
    primary: Instance,
    replica: Instance,
    children: Vec<Child>,
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = self.replica.stop(GRACE);
        let _ = self.primary.stop(GRACE);
        for mut c in self.children.drain(..) {
            let _ = c.wait();
        }
    }
}

/// One acknowledged insert: its id and when it was sent and acknowledged.
#[derive(Clone, Copy)]
struct Write {
    id: u64,
    sent: f64,
    acked: f64,
}

/// Inserts a row every few milliseconds into whichever server `target` names (none:
/// paused) until stopped (bounded: at most 20 000 rows).
fn writer(target: &Mutex<Option<Instance>>, stop: &AtomicBool, log: &Mutex<Vec<Write>>) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) && n < 20_000 {
        let Some(primary) = target.lock().unwrap().clone() else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        n += 1;
        let sent = unix_now();
        let out = primary.sql(&format!(
            "INSERT INTO shop.users (email) VALUES ('user{n}@example.com'); SELECT LAST_INSERT_ID();"
        ));
        let acked = unix_now();
        if let Ok(out) = out {
            if let Ok(id) = out.trim().parse() {
                log.lock().unwrap().push(Write { id, sent, acked });
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_mistake_is_undone_by_restoring_to_the_moment_before_it() {
    if !installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let a = random_loopback(0);
    let mut b = random_loopback(7);
    while b == a {
        b = random_loopback(13);
    }
    let host = |name: &str, role, id, bind| Instance {
        name: name.to_owned(),
        role,
        server_id: id,
        bind,
        port: 3306,
        dir: tmp.path().join("hosts").join(name),
        tls: None,
        netns: None,
    };
    let local = vec!["127.0.0.1".to_owned()];
    let mut pair = Pair {
        primary: host("db1", Role::Primary, 1, a),
        replica: host("db2", Role::Replica, 2, b),
        children: Vec::new(),
    };
    let grants = Grants {
        app_hosts: local.clone(),
        replica_hosts: local.clone(),
        monitor_hosts: local.clone(),
        keeper_hosts: local,
        backup_hosts: Vec::new(),
    };
    let (p, r, _secrets) = bring_up_pair(
        &pair.primary,
        &pair.replica,
        &tmp.path().join("secrets"),
        &grants,
    )
    .unwrap();
    pair.children.extend([p, r]);
    pair.primary
        .sql(
            "CREATE DATABASE shop; CREATE TABLE shop.users (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
             email VARCHAR(100) NOT NULL) ENGINE=InnoDB; \
             CREATE USER rampart_backup@'127.0.0.1' IDENTIFIED BY 'archive-pw'; \
             GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO rampart_backup@'127.0.0.1';",
        )
        .unwrap();

    // The store, on a disk of its own; the staging directory stands in for a tmpfs.
    let key = load_or_create_key(&tmp.path().join("keys/backup.key")).unwrap();
    let store = Store::open(&tmp.path().join("store"), key).unwrap();
    let status = Arc::new(Mutex::new(Status::default()));
    let archiver = Arc::new(Archiver {
        store: store.clone(),
        staging: tmp.path().join("staging"),
        login: Login {
            user: "rampart_backup".into(),
            password: "archive-pw".into(),
            ca: None,
        },
        tick: Duration::from_millis(500),
        status: status.clone(),
    });
    let stop_archiver = Arc::new(AtomicBool::new(false));
    let primary = Primary {
        host: "db1".into(),
        addr: a.to_string(),
        port: 3306,
    };
    let archiving = {
        let stop = stop_archiver.clone();
        std::thread::spawn(move || archiver.run(&move || Some(primary.clone()), &stop))
    };

    let stop_writer = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(Mutex::new(Vec::new()));
    let writing = {
        let t = Mutex::new(Some(pair.primary.clone()));
        let (s, w) = (stop_writer.clone(), writes.clone());
        std::thread::spawn(move || writer(&t, &s, &w))
    };
    std::thread::sleep(Duration::from_secs(2));

    let server = |i: &Instance| LocalServer {
        socket: i.socket(),
        datadir: i.datadir(),
        workdir: tmp.path().join("backup-work"),
    };
    let t = Instant::now();
    let full = take_local(&store, &server(&pair.replica), "db2", Want::Full).unwrap();
    println!(
        "full backup from the replica: {:.1} s, {} bytes sealed ({} in the stream), GTID {}",
        t.elapsed().as_secs_f64(),
        full.data.bytes,
        full.data.plain_bytes,
        full.gtid
    );
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    let incr = take_local(&store, &server(&pair.replica), "db2", Want::Incremental).unwrap();
    println!(
        "incremental backup: {:.1} s, {} bytes sealed, LSN {}..{}",
        t.elapsed().as_secs_f64(),
        incr.data.bytes,
        incr.from_lsn,
        incr.to_lsn
    );
    assert_eq!(incr.base.as_deref(), Some(full.id.as_str()));
    std::thread::sleep(Duration::from_secs(2));

    // The noted time: the next whole second. Then the mistake, after it.
    let noted = unix_now().ceil() as i64;
    while unix_now() < noted as f64 + 0.3 {
        std::thread::sleep(Duration::from_millis(20));
    }
    pair.primary.sql("DELETE FROM shop.users").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    stop_writer.store(true, Ordering::Relaxed);
    writing.join().unwrap();

    // The archive catches up with the primary.
    let end = gtid_binlog_pos(&pair.primary).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = status.lock().unwrap().clone();
        if gtid_le(&end, &st.gtid).unwrap() {
            println!("archive at {} (primary {end}), {} seals", st.gtid, st.seals);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the archive never reached {end}: {st:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    stop_archiver.store(true, Ordering::Relaxed);
    archiving.join().unwrap();

    let w = writes.lock().unwrap().clone();
    let before: BTreeSet<u64> = w
        .iter()
        .filter(|x| x.acked < noted as f64)
        .map(|x| x.id)
        .collect();
    let after: BTreeSet<u64> = w
        .iter()
        .filter(|x| x.sent >= noted as f64)
        .map(|x| x.id)
        .collect();
    assert!(
        !after.is_empty() && before.len() > 100,
        "{} before, {} after",
        before.len(),
        after.len()
    );

    let t = Instant::now();
    let restored = restore(&store, &Point::Time(noted), &tmp.path().join("r")).unwrap();
    println!(
        "restore to {noted}: chain {:?}, {} binlog files, GTID {} -> {}, {:.1} s preparing, {:.1} s replaying, {:.1} s in all; tables {:?}",
        restored.chain,
        restored.binlog_files,
        restored.backup_gtid,
        restored.gtid,
        restored.prepare_secs,
        restored.replay_secs,
        t.elapsed().as_secs_f64(),
        restored.tables
    );
    assert_eq!(restored.chain, [full.id.clone(), incr.id]);
    let ids: BTreeSet<u64> = restored
        .scratch
        .sql("SELECT id FROM shop.users")
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let missing: Vec<&u64> = before.difference(&ids).collect();
    let late: Vec<&u64> = ids.intersection(&after).collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the noted time, not restored: {missing:?}"
    );
    assert!(
        late.is_empty(),
        "written after the noted time, restored: {late:?}"
    );
    let ambiguous = ids.len() - before.len();
    assert!(ambiguous <= 1, "{ambiguous} rows neither before nor after");
    println!(
        "restored {} rows: all {} acknowledged before the noted time, none of the {} after",
        ids.len(),
        before.len(),
        after.len()
    );
    drop(restored);

    // The same through the command line, with the backup host's config.
    let cfg = tmp.path().join("backup.toml");
    std::fs::write(
        &cfg,
        format!(
            "[store]\ndir = \"store\"\nkey_file = \"keys/backup.key\"\n\
             [archive]\npassword_file = \"pw\"\n[tls]\nca = \"ca.pem\"\ncert = \"b.pem\"\nkey = \"b.key\"\n\
             [[servers]]\nhost = \"db1\"\nmysql = \"{a}:3306\"\nkeeper = \"{a}:9104\"\nsource = \"{a}:9108\"\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["restore", "--config"])
        .arg(&cfg)
        .args(["--to", &noted.to_string(), "--into"])
        .arg(tmp.path().join("r-cli"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("rampart restore: {}", text.trim());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("shop.users: {} rows", ids.len())),
        "{text}"
    );

    // Secrecy: no row's email is in the store in plaintext, in any file.
    let files = files_under(&store.root);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            !bytes.windows(12).any(|x| x == b"@example.com"),
            "{} holds plaintext rows",
            f.display()
        );
    }
    // Every object checks; one byte flipped in the full backup does not.
    let checked = store.check_all().unwrap();
    let data = store.backup_dir(&full.id).join("data.seal");
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&data, &bytes).unwrap();
    let err = store.check_all().unwrap_err().to_string();
    assert!(err.contains(&full.id), "{err}");
    println!(
        "store: {} files, {checked} objects check; a flipped byte: {err}",
        files.len()
    );
}

#[test]
fn a_failover_leaves_no_gap_in_the_archive_and_verify_checks_backup_and_archive() {
    if !installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let a = random_loopback(3);
    let mut b = random_loopback(11);
    while b == a {
        b = random_loopback(17);
    }
    let host = |name: &str, role, id, bind| Instance {
        name: name.to_owned(),
        role,
        server_id: id,
        bind,
        port: 3306,
        dir: tmp.path().join("hosts").join(name),
        tls: None,
        netns: None,
    };
    let local = vec!["127.0.0.1".to_owned()];
    let mut pair = Pair {
        primary: host("db1", Role::Primary, 1, a),
        replica: host("db2", Role::Replica, 2, b),
        children: Vec::new(),
    };
    let grants = Grants {
        app_hosts: local.clone(),
        replica_hosts: local.clone(),
        monitor_hosts: local.clone(),
        keeper_hosts: local,
        backup_hosts: Vec::new(),
    };
    let (p, r, _secrets) = bring_up_pair(
        &pair.primary,
        &pair.replica,
        &tmp.path().join("secrets"),
        &grants,
    )
    .unwrap();
    pair.children.extend([p, r]);
    pair.primary
        .sql(
            "CREATE DATABASE shop; CREATE TABLE shop.users (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
             email VARCHAR(100) NOT NULL) ENGINE=InnoDB; \
             CREATE USER rampart_backup@'127.0.0.1' IDENTIFIED BY 'archive-pw'; \
             GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO rampart_backup@'127.0.0.1';",
        )
        .unwrap();
    let key = load_or_create_key(&tmp.path().join("keys/backup.key")).unwrap();
    let store = Store::open(&tmp.path().join("store"), key).unwrap();
    let status = Arc::new(Mutex::new(Status::default()));
    let archiver = Arc::new(Archiver {
        store: store.clone(),
        staging: tmp.path().join("staging"),
        login: Login {
            user: "rampart_backup".into(),
            password: "archive-pw".into(),
            ca: None,
        },
        tick: Duration::from_millis(500),
        status: status.clone(),
    });
    let at = |host: &str, addr: IpAddr| Primary {
        host: host.into(),
        addr: addr.to_string(),
        port: 3306,
    };
    let current = Arc::new(Mutex::new(at("db1", a)));
    let stop_archiver = Arc::new(AtomicBool::new(false));
    let archiving = {
        let (arch, stop, cur) = (archiver, stop_archiver.clone(), current.clone());
        std::thread::spawn(move || arch.run(&move || Some(cur.lock().unwrap().clone()), &stop))
    };
    let target = Arc::new(Mutex::new(Some(pair.primary.clone())));
    let stop_writer = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(Mutex::new(Vec::new()));
    let writing = {
        let (t, s, w) = (target.clone(), stop_writer.clone(), writes.clone());
        std::thread::spawn(move || writer(&t, &s, &w))
    };
    std::thread::sleep(Duration::from_secs(1));
    let server = LocalServer {
        socket: pair.replica.socket(),
        datadir: pair.replica.datadir(),
        workdir: tmp.path().join("backup-work"),
    };
    let full = take_local(&store, &server, "db2", Want::Full).unwrap();
    std::thread::sleep(Duration::from_secs(2));

    // The archiver moves to db2 first, while db1 still takes writes: those reach the
    // archive only through db2's binlog (log_slave_updates), from the archive's GTID.
    *current.lock().unwrap() = at("db2", b);
    std::thread::sleep(Duration::from_secs(1));
    // The failover: writes pause, db2 catches up and stops replicating, db1 is fenced,
    // db2 takes writes.
    *target.lock().unwrap() = None;
    std::thread::sleep(Duration::from_millis(100));
    let db1_end = gtid_binlog_pos(&pair.primary).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gtid_le(&db1_end, &gtid_binlog_pos(&pair.replica).unwrap()).unwrap() {
        assert!(
            Instant::now() < deadline,
            "db2 never caught up with {db1_end}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    pair.primary.sql("SET GLOBAL read_only = ON").unwrap();
    pair.replica
        .sql("STOP SLAVE; SET GLOBAL read_only = OFF")
        .unwrap();
    *target.lock().unwrap() = Some(pair.replica.clone());
    let failover = unix_now();
    std::thread::sleep(Duration::from_secs(2));
    let noted = unix_now().ceil() as i64;
    std::thread::sleep(Duration::from_secs(2));
    stop_writer.store(true, Ordering::Relaxed);
    writing.join().unwrap();

    let end = gtid_binlog_pos(&pair.replica).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gtid_le(&end, &status.lock().unwrap().gtid).unwrap() {
        assert!(Instant::now() < deadline, "the archive never reached {end}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let servers: BTreeSet<String> = store
        .binlogs()
        .unwrap()
        .into_iter()
        .map(|m| m.server)
        .collect();
    assert_eq!(
        servers,
        BTreeSet::from(["db1".to_owned(), "db2".to_owned()])
    );
    println!(
        "archived {} files from db1 and db2 ({} sessions); db1 ended at {db1_end}, db2 at {end}",
        store.binlogs().unwrap().len(),
        status.lock().unwrap().sessions
    );

    // A restore to a time after the failover has every write acknowledged before it.
    let w = writes.lock().unwrap().clone();
    assert!(
        w.iter().any(|x| x.sent > failover),
        "no writes after the failover"
    );
    let before: BTreeSet<u64> = w
        .iter()
        .filter(|x| x.acked < noted as f64)
        .map(|x| x.id)
        .collect();
    let after: BTreeSet<u64> = w
        .iter()
        .filter(|x| x.sent >= noted as f64)
        .map(|x| x.id)
        .collect();
    let restored = restore(&store, &Point::Time(noted), &tmp.path().join("r1")).unwrap();
    let ids: BTreeSet<u64> = restored
        .scratch
        .sql("SELECT id FROM shop.users")
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let missing: Vec<&u64> = before.difference(&ids).collect();
    assert!(missing.is_empty(), "not restored: {missing:?}");
    assert!(
        ids.intersection(&after).next().is_none(),
        "writes after the noted time restored"
    );
    println!(
        "restore to a time after the failover: {} rows, {} binlog files replayed, at {}",
        ids.len(),
        restored.binlog_files,
        restored.gtid
    );
    drop(restored);

    // Verify: the latest backup and the archive, restored to the source's snapshot,
    // equal the source (db2, now the primary) table by table.
    let source = |sql: &str| {
        pair.replica
            .sql(sql)
            .map_err(|e| rampart_backup::Error::Invalid(e.to_string()))
    };
    let archived = || Ok(status.lock().unwrap().gtid.clone());
    let t = Instant::now();
    let v = verify(
        &store,
        &source,
        &archived,
        &tmp.path().join("v1"),
        Duration::from_secs(30),
    )
    .unwrap();
    println!(
        "verify: {} tables, {} rows equal at {} ({:.1} s)",
        v.tables,
        v.rows,
        v.gtid,
        t.elapsed().as_secs_f64()
    );
    assert!(v.rows > 100, "{} rows", v.rows);
    drop(v);
    // A row changed in the source outside the binlog (drift the archive cannot see):
    // the restore reaches the same GTID but differs, and verify names the table.
    pair.replica
        .sql("SET SESSION sql_log_bin = 0; UPDATE shop.users SET email = 'drift@example.com' ORDER BY id LIMIT 1")
        .unwrap();
    let err = verify(
        &store,
        &source,
        &archived,
        &tmp.path().join("v2"),
        Duration::from_secs(30),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("shop.users") && err.contains("differs"),
        "{err}"
    );
    println!("verify after drift: {err}");
    stop_archiver.store(true, Ordering::Relaxed);
    archiving.join().unwrap();
    // A flipped byte in the backup fails verify.
    let data = store.backup_dir(&full.id).join("data.seal");
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0x40;
    std::fs::write(&data, &bytes).unwrap();
    let at_end = || Ok(gtid_binlog_pos(&pair.replica).unwrap());
    let err = verify(
        &store,
        &source,
        &at_end,
        &tmp.path().join("v3"),
        Duration::from_secs(2),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("checksum"), "{err}");
    println!("verify with a flipped byte: {err}");
}

/// The source's listener with mutual TLS: the backup host's certificate may pull, any
/// other certificate of the same CA may not; a stream the source did not finish leaves
/// nothing in the store.
#[test]
fn the_backup_host_pulls_over_mutual_tls_and_no_other_host_may() {
    if !installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let a = random_loopback(5);
    let mut b = random_loopback(19);
    while b == a {
        b = random_loopback(23);
    }
    let host = |name: &str, role, id, bind| Instance {
        name: name.to_owned(),
        role,
        server_id: id,
        bind,
        port: 3306,
        dir: tmp.path().join("hosts").join(name),
        tls: None,
        netns: None,
    };
    let local = vec!["127.0.0.1".to_owned()];
    let mut pair = Pair {
        primary: host("db1", Role::Primary, 1, a),
        replica: host("db2", Role::Replica, 2, b),
        children: Vec::new(),
    };
    let grants = Grants {
        app_hosts: local.clone(),
        replica_hosts: local.clone(),
        monitor_hosts: local.clone(),
        keeper_hosts: local,
        backup_hosts: Vec::new(),
    };
    let (p, r, _secrets) = bring_up_pair(
        &pair.primary,
        &pair.replica,
        &tmp.path().join("secrets"),
        &grants,
    )
    .unwrap();
    pair.children.extend([p, r]);
    pair.primary
        .sql(
            "CREATE DATABASE shop; CREATE TABLE shop.users (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
             email VARCHAR(100) NOT NULL); INSERT INTO shop.users (email) VALUES ('a@example.com');",
        )
        .unwrap();
    let pki = rampart_test_support::Pki::new(&["db2", "backup", "web1"]);
    let server_tls = |ok: bool| {
        let cert =
            rampart_tls::load_certified_key(&pki.path("db2.pem"), &pki.path("db2.key")).unwrap();
        let _ = ok;
        Arc::new(
            rampart_tls::server_config_mtls(
                Arc::new(rampart_tls::SiteCerts::new(vec![cert])),
                &[b"http/1.1"],
                &pki.path("ca.pem"),
            )
            .unwrap(),
        )
    };
    let client = |name: &str| Remote {
        addr: "127.0.0.1:0".parse().unwrap(),
        server_name: "db2".into(),
        tls: Arc::new(
            rampart_tls::client_config(&rampart_tls::ClientTls {
                ca: pki.path("ca.pem"),
                client_cert: Some((
                    pki.path(&format!("{name}.pem")),
                    pki.path(&format!("{name}.key")),
                )),
            })
            .unwrap(),
        ),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let serve = |socket: std::path::PathBuf| {
        let listener = rt
            .block_on(async { tokio::net::TcpListener::bind("127.0.0.1:0").await })
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let cfg = SourceConfig {
            server: LocalServer {
                socket,
                datadir: pair.replica.datadir(),
                workdir: tmp.path().join(format!("source-{}", addr.port())),
            },
            clients: vec!["backup".into()],
        };
        let task = rt.spawn(source::serve(
            listener,
            Default::default(),
            server_tls(true),
            cfg,
        ));
        (addr, task)
    };
    let key = load_or_create_key(&tmp.path().join("keys/backup.key")).unwrap();
    let store = Store::open(&tmp.path().join("store"), key).unwrap();

    let (addr, task) = serve(pair.replica.socket());
    let remote = |name: &str| Remote {
        addr,
        ..client(name)
    };
    let t = Instant::now();
    let full = rt
        .block_on(store_remote(&store, &remote("backup"), "db2", Want::Full))
        .unwrap();
    println!(
        "pulled a full backup over mutual TLS: {:.1} s, {} bytes sealed, GTID {}",
        t.elapsed().as_secs_f64(),
        full.data.bytes,
        full.gtid
    );
    pair.primary
        .sql("INSERT INTO shop.users (email) VALUES ('b@example.com')")
        .unwrap();
    // The incremental is taken from the replica: it only holds a change once the
    // replica has applied it (bounded: 30 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pair
        .replica
        .sql("SELECT COUNT(*) FROM shop.users WHERE email = 'b@example.com'")
        .is_ok_and(|n| n.trim() == "1")
    {
        assert!(
            Instant::now() < deadline,
            "the replica never applied the insert"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let incr = rt
        .block_on(store_remote(
            &store,
            &remote("backup"),
            "db2",
            Want::Incremental,
        ))
        .unwrap();
    assert_eq!(incr.base.as_deref(), Some(full.id.as_str()));
    // to_lsn is the checkpoint the copy started from, which need not have moved since
    // the full: the insert may still be only in the redo log the incremental copies.
    // That the incremental holds it is what the restore at the end shows (2 rows).
    assert!(
        incr.from_lsn == full.to_lsn && incr.to_lsn >= full.to_lsn,
        "full {}..{}, incremental {}..{}",
        full.from_lsn,
        full.to_lsn,
        incr.from_lsn,
        incr.to_lsn
    );

    // Another host's certificate from the same CA is refused.
    let err = rt
        .block_on(store_remote(&store, &remote("web1"), "db2", Want::Full))
        .unwrap_err()
        .to_string();
    println!("web1's certificate: {err}");
    assert_eq!(store.backups().unwrap().len(), 2);
    task.abort();

    // A source whose mariadb-backup fails (no server on that socket): nothing stored.
    let (addr, task) = serve(tmp.path().join("nowhere.sock"));
    let err = rt
        .block_on(store_remote(
            &store,
            &Remote {
                addr,
                ..client("backup")
            },
            "db2",
            Want::Full,
        ))
        .unwrap_err()
        .to_string();
    println!("a failing source: {err}");
    assert!(
        err.contains("without the source's ok") || err.contains("broke"),
        "{err}"
    );
    assert_eq!(store.backups().unwrap().len(), 2);
    assert_eq!(
        std::fs::read_dir(store.root.join("backups"))
            .unwrap()
            .count(),
        2,
        "an unfinished backup directory is left"
    );
    task.abort();

    let restored = restore(&store, &Point::Backup(incr.id), &tmp.path().join("r")).unwrap();
    assert_eq!(restored.tables, [("shop.users".to_owned(), 2)]);
}

/// A transaction the old primary sent the archive but never got to its replica (the
/// replica had stopped receiving, and semi-sync fell back after its timeout) is lost in
/// the failover that follows. The archive finds itself ahead of the new primary,
/// restarts its history at the point they agree on, follows the new primary from
/// there, and a restore of the latest state holds the new primary's writes and not the
/// lost one.
#[test]
fn a_transaction_lost_in_a_failover_is_not_restored() {
    if !installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let a = random_loopback(5);
    let mut b = random_loopback(13);
    while b == a {
        b = random_loopback(19);
    }
    let host = |name: &str, role, id, bind| Instance {
        name: name.to_owned(),
        role,
        server_id: id,
        bind,
        port: 3306,
        dir: tmp.path().join("hosts").join(name),
        tls: None,
        netns: None,
    };
    let local = vec!["127.0.0.1".to_owned()];
    let mut pair = Pair {
        primary: host("db1", Role::Primary, 1, a),
        replica: host("db2", Role::Replica, 2, b),
        children: Vec::new(),
    };
    let grants = Grants {
        app_hosts: local.clone(),
        replica_hosts: local.clone(),
        monitor_hosts: local.clone(),
        keeper_hosts: local,
        backup_hosts: Vec::new(),
    };
    let (p, r, _secrets) = bring_up_pair(
        &pair.primary,
        &pair.replica,
        &tmp.path().join("secrets"),
        &grants,
    )
    .unwrap();
    pair.children.extend([p, r]);
    pair.primary
        .sql(
            "CREATE DATABASE shop; CREATE TABLE shop.users (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
             email VARCHAR(100) NOT NULL) ENGINE=InnoDB; \
             INSERT INTO shop.users (email) VALUES ('before@x'); \
             CREATE USER rampart_backup@'127.0.0.1' IDENTIFIED BY 'archive-pw'; \
             GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO rampart_backup@'127.0.0.1';",
        )
        .unwrap();
    let key = load_or_create_key(&tmp.path().join("keys/backup.key")).unwrap();
    let store = Store::open(&tmp.path().join("store"), key).unwrap();
    let status = Arc::new(Mutex::new(Status::default()));
    let archiver = Arc::new(Archiver {
        store: store.clone(),
        staging: tmp.path().join("staging"),
        login: Login {
            user: "rampart_backup".into(),
            password: "archive-pw".into(),
            ca: None,
        },
        tick: Duration::from_millis(500),
        status: status.clone(),
    });
    let at = |host: &str, addr: IpAddr| Primary {
        host: host.into(),
        addr: addr.to_string(),
        port: 3306,
    };
    let current = Arc::new(Mutex::new(at("db1", a)));
    let stop_archiver = Arc::new(AtomicBool::new(false));
    let archiving = {
        let (arch, stop, cur) = (archiver, stop_archiver.clone(), current.clone());
        std::thread::spawn(move || arch.run(&move || Some(cur.lock().unwrap().clone()), &stop))
    };
    let archived = |pos: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !gtid_le(pos, &status.lock().unwrap().gtid).unwrap() {
            assert!(Instant::now() < deadline, "the archive never reached {pos}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // Both servers have everything so far; the backup is from db2.
    let agreed = gtid_binlog_pos(&pair.primary).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gtid_le(&agreed, &gtid_binlog_pos(&pair.replica).unwrap()).unwrap() {
        assert!(Instant::now() < deadline, "db2 never caught up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let server = LocalServer {
        socket: pair.replica.socket(),
        datadir: pair.replica.datadir(),
        workdir: tmp.path().join("backup-work"),
    };
    take_local(&store, &server, "db2", Want::Full).unwrap();
    archived(&agreed);

    // db2 stops receiving; db1 commits one more (semi-sync waits, then falls back), and
    // the archive gets it.
    pair.replica.sql("STOP SLAVE").unwrap();
    pair.primary
        .sql("INSERT INTO shop.users (email) VALUES ('lost@x')")
        .unwrap();
    let lost = gtid_binlog_pos(&pair.primary).unwrap();
    archived(&lost);
    // The failover without it: db1 fenced, db2 writable, taking writes.
    pair.primary.sql("SET GLOBAL read_only = ON").unwrap();
    pair.replica
        .sql("RESET SLAVE ALL; SET GLOBAL read_only = OFF")
        .unwrap();
    *current.lock().unwrap() = at("db2", b);
    pair.replica
        .sql("INSERT INTO shop.users (email) VALUES ('after@x')")
        .unwrap();
    let end = gtid_binlog_pos(&pair.replica).unwrap();
    // By sequence number alone the lost transaction looks like `end`: wait for `end`
    // itself, from db2.
    let deadline = Instant::now() + Duration::from_secs(30);
    while status.lock().unwrap().gtid != end {
        assert!(
            Instant::now() < deadline,
            "the archive never reached db2's {end}: {:?}",
            status.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop_archiver.store(true, Ordering::Relaxed);
    archiving.join().unwrap();

    assert_eq!(status.lock().unwrap().divergences, 1);
    let timelines = store.timelines().unwrap();
    assert_eq!(timelines.len(), 1, "{timelines:?}");
    assert_eq!(timelines[0].gtid, agreed, "the point both had");
    let restored = restore(&store, &Point::Latest, &tmp.path().join("r")).unwrap();
    let emails: BTreeSet<String> = restored
        .scratch
        .sql("SELECT email FROM shop.users")
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        emails,
        BTreeSet::from(["before@x".to_owned(), "after@x".to_owned()]),
        "the latest restore follows the new primary's history ({lost} was lost, {end} is db2's)"
    );
    println!(
        "lost in the failover: {lost}; the archive restarted at {agreed} and restored db2's history to {}",
        restored.gtid
    );
}

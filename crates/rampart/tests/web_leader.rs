//! The web server in-process following the database leader over two real mariadbd (a
//! primary and its semi-sync replica, brought up by `rampart_infra` with the plan's own
//! users and grants): writes only where the leader key points and only on a writable
//! server with the named server id, 503 with `Retry-After` otherwise, `outcome_unknown`
//! when `COMMIT` gets no answer, `Idempotency-Key` replays, reads from the replica while
//! there is no leader. The leader key lives in a `leader::MemStore` in the first test; the
//! second follows it in a real three-member etcd cluster with mutual TLS, through a
//! member's death.
//!
//! It lives in this crate rather than `crates/web/tests` because `rampart-web` may not
//! depend on `rampart-infra` (which knows the topology model; see `tidy.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use rampart_infra::mariadb::{self, bring_up_pair, Grants, Instance, Role};
use rampart_telemetry::config::ConfigFile;
use rampart_test_support::eventually;
use rampart_web::db::Db;
use rampart_web::idempotency;
use rampart_web::leader::{Leader, MemStore};
use rampart_web::{Config, Listeners, Web};

const GRACE: Duration = Duration::from_secs(20);
const KEY: &str = "/rampart/leader";

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

/// `127.<1..=250>.<0..=255>.<2..=250>`, so every instance can use port 3306.
fn random_loopback() -> IpAddr {
    let mut b = [0u8; 3];
    getrandom(&mut b);
    IpAddr::V4(Ipv4Addr::new(127, 1 + b[0] % 250, b[1], 2 + b[2] % 249))
}

/// A few random bytes from the kernel (no extra dependency for a test).
fn getrandom(buf: &mut [u8]) {
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(buf)
        .unwrap();
}

/// db1 (primary, server_id 1) and db2 (its replica, server_id 2); dropping it stops both
/// by PID, also when the test panics.
struct Pair {
    tmp: tempfile::TempDir,
    db1: Instance,
    db2: Instance,
    children: Vec<Child>,
}

impl Pair {
    fn up() -> Pair {
        let tmp = tempfile::tempdir().unwrap();
        let a = random_loopback();
        let mut b = random_loopback();
        while b == a {
            b = random_loopback();
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
        let db1 = host("db1", Role::Primary, 1, a);
        let db2 = host("db2", Role::Replica, 2, b);
        // On loopback every connection comes from 127.0.0.1.
        let local = vec!["127.0.0.1".to_owned()];
        let grants = Grants {
            app_hosts: local.clone(),
            replica_hosts: local.clone(),
            monitor_hosts: local.clone(),
            keeper_hosts: local,
            backup_hosts: Vec::new(),
        };
        let (c1, c2, _) = bring_up_pair(&db1, &db2, &tmp.path().join("secrets"), &grants).unwrap();
        Pair {
            tmp,
            db1,
            db2,
            children: vec![c1, c2],
        }
    }

    fn addr(i: &Instance) -> SocketAddr {
        SocketAddr::new(i.bind, i.port)
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = self.db2.stop(GRACE);
        let _ = self.db1.stop(GRACE);
        for mut child in self.children.drain(..) {
            let _ = child.wait();
        }
    }
}

/// The web server on 127.0.0.1:0 in its own runtime thread; stops when dropped.
struct Server {
    app: SocketAddr,
    admin: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the web server with `database` (a `[database]` table); with `store` the leader
/// key is read from it instead of `[database.etcd]`'s cluster.
fn start_web(dir: &Path, database: &str, store: Option<&MemStore>) -> Server {
    let text = format!(
        "name = \"w1\"\n[listen]\napp = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [log]\naccess_log = \"off\"\n{database}"
    );
    let path = dir.join("web.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();
    let store = store.map(|s| Arc::new(s.clone()));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listeners = Listeners::bind(&config).unwrap();
            let addrs = (
                listeners.app.local_addr().unwrap(),
                listeners.admin.as_ref().unwrap().local_addr().unwrap(),
            );
            let web = match store {
                Some(store) => Web::with_leader_store(config, store),
                None => Web::new(config),
            }
            .unwrap();
            web.serve(
                listeners,
                async {
                    let _ = stop_rx.await;
                },
                move || addr_tx.send(addrs).unwrap(),
            )
            .await
            .unwrap();
        });
    });
    let (app, admin) = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    Server {
        app,
        admin,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

/// An HTTP answer: status, the head's lines (lowercased names) and the body.
#[derive(Debug)]
struct Resp {
    status: u16,
    head: String,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The JSON `error` code of an error answer.
    fn error(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Resp {
        status: head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn post(web: &Server, path: &str, body: &str, key: Option<&str>) -> Resp {
    let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
    request(web.app, "POST", path, &headers, body)
}

fn get(web: &Server, path: &str) -> Resp {
    request(web.app, "GET", path, &[], "")
}

fn metrics(web: &Server) -> String {
    request(web.admin, "GET", "/metrics", &[], "").body
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn leader_value(host: &str, server_id: u32, addr: SocketAddr, writable: bool) -> Vec<u8> {
    serde_json::json!({ "host": host, "server_id": server_id, "addr": addr.to_string(), "writable": writable })
        .to_string()
        .into_bytes()
}

/// A 503 a write must get while it cannot be taken: the reason and `Retry-After: 1`.
#[track_caller]
fn refused(r: &Resp, reason: &str) {
    assert_eq!(r.status, 503, "expected a 503 {reason}: {r:?}");
    assert_eq!(r.error(), reason, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("1"), "{r:?}");
}

/// A write that changes nothing: a message for a user that does not exist. It gets 422
/// `invalid_field` once it reaches a writable leader, and a 503 with the reason before.
fn probe(web: &Server) -> Resp {
    post(
        web,
        "/api/messages",
        r#"{"user_id":999999,"body":"probe"}"#,
        None,
    )
}

/// Polls the probe until its answer's code is `want` (the follower and the checker catch
/// up within a bounded time).
#[track_caller]
fn wait_for(web: &Server, want: &str) -> Resp {
    eventually(want, Duration::from_secs(30), || {
        let r = probe(web);
        assert!(r.status == 503 || r.status == 422, "{r:?}");
        (r.error() == want).then_some(r)
    })
}

fn users_with(name: &str) -> String {
    format!("SELECT COUNT(*) FROM foobar.users WHERE email = '{name}@example.com'")
}

/// The `[database]` table for `pair` (short timeouts, the role header on), with `etcd`
/// appended (a `[database.etcd]` table).
fn database(pair: &Pair, etcd: &str) -> String {
    let (a1, a2) = (Pair::addr(&pair.db1), Pair::addr(&pair.db2));
    format!(
        "[database]\npassword_file = \"{s}/db-app.password\"\nmigrate_user = \"foobar_migrate\"\n\
         migrate_password_file = \"{s}/db-migrate.password\"\nrole_header = true\n\
         query_timeout = \"1s\"\nwrite_wait = \"0s\"\nconnect_timeout = \"1s\"\ncheck_interval = \"100ms\"\n\
         [[database.servers]]\nhost = \"db1\"\naddr = \"{a1}\"\n\
         [[database.servers]]\nhost = \"db2\"\naddr = \"{a2}\"\n{etcd}",
        s = pair.tmp.path().join("secrets").display()
    )
}

fn count(i: &Instance, sql: &str) -> String {
    i.sql(sql).unwrap().trim().to_owned()
}

#[test]
fn writes_follow_the_leader_key_and_are_fenced_by_server_id_and_read_only() {
    if !installed() {
        return;
    }
    let pair = Pair::up();
    let (a1, a2) = (Pair::addr(&pair.db1), Pair::addr(&pair.db2));
    let database = database(
        &pair,
        &format!(
            "[database.etcd]\nendpoints = [\"https://127.0.0.1:9\"]\nca = \"unused\"\n\
             cert = \"unused\"\nkey = \"unused\"\nleader_key = \"{KEY}\"\n"
        ),
    );
    let store = MemStore::new();
    let web = start_web(pair.tmp.path(), &database, Some(&store));
    let user = |n: &str| format!(r#"{{"name":"u{n}","email":"u{n}@example.com"}}"#);

    // No leader: refused, not ready.
    refused(&post(&web, "/api/users", &user("0"), None), "no_primary");
    assert_eq!(get(&web, "/readyz").status, 503);

    // The keeper won the key but has not turned read_only off yet.
    store.put(KEY, &leader_value("db1", 1, a1, false));
    refused(&wait_for(&web, "not_writable"), "not_writable");
    refused(&post(&web, "/api/users", &user("0"), None), "not_writable");

    // Writable: the migrations run and writes go through.
    let epoch1 = store.put(KEY, &leader_value("db1", 1, a1, true)) - 1;
    eventually("ready", Duration::from_secs(30), || {
        (get(&web, "/readyz").status == 200).then_some(())
    });
    let r = post(&web, "/api/users", &user("1"), None);
    assert_eq!(r.status, 201, "{r:?}");
    assert!(
        r.header("x-db-gtid").is_some_and(|g| g.starts_with("0-1-")),
        "{r:?}"
    );
    let id1 = serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["id"]
        .as_u64()
        .unwrap();
    let m = metrics(&web);
    assert_eq!(
        metric(&m, "rampart_web_db_leader_epoch"),
        Some(epoch1 as f64),
        "{m}"
    );

    // Idempotency-Key: the same request once written, replayed after; another request
    // with the key is refused; a malformed key is a 400.
    let first = post(&web, "/api/users", &user("2"), Some("key-2"));
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = post(&web, "/api/users", &user("2"), Some("key-2"));
    assert_eq!((again.status, &again.body), (201, &first.body), "{again:?}");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert!(again.header("x-db-gtid").is_some(), "{again:?}");
    assert_eq!(count(&pair.db1, &users_with("u2")), "1");
    let other = post(&web, "/api/users", &user("3"), Some("key-2"));
    assert_eq!(
        (other.status, other.error().as_str()),
        (422, "idempotency_key_reused"),
        "{other:?}"
    );
    let other = post(&web, "/api/messages", &user("2"), Some("key-2"));
    assert_eq!(other.status, 422, "{other:?}");
    assert_eq!(count(&pair.db1, &users_with("u3")), "0");
    let bad = post(&web, "/api/users", &user("4"), Some(&"k".repeat(65)));
    assert_eq!(
        (bad.status, bad.error().as_str()),
        (400, "invalid_idempotency_key"),
        "{bad:?}"
    );
    let msg = format!(r#"{{"user_id":{id1},"body":"hi"}}"#);
    let m1 = post(&web, "/api/messages", &msg, Some("msg-1"));
    assert_eq!(m1.status, 201, "{m1:?}");
    let m2 = post(&web, "/api/messages", &msg, Some("msg-1"));
    assert_eq!((m2.status, &m2.body), (201, &m1.body));
    assert_eq!(
        count(&pair.db1, "SELECT COUNT(*) FROM foobar.messages"),
        "1"
    );

    // Reads go to the replica once it has caught up; with no leader they still do.
    let path = format!("/api/users/{id1}");
    eventually("a read from the replica", Duration::from_secs(30), || {
        let r = get(&web, &path);
        (r.status == 200 && r.header("x-db-role") == Some("replica")).then_some(())
    });
    store.delete(KEY);
    wait_for(&web, "no_primary");
    refused(&post(&web, "/api/users", &user("5"), None), "no_primary");
    let r = get(&web, &path);
    assert_eq!(
        (r.status, r.header("x-db-role")),
        (200, Some("replica")),
        "{r:?}"
    );

    // A COMMIT without an answer: semi-sync waits for an ack the stopped replica does not
    // send, past query_timeout. The client is told the outcome is unknown; the write
    // commits once the replica is back, and the same key then replays it.
    let epoch2 = store.put(KEY, &leader_value("db1", 1, a1, true));
    wait_for(&web, "invalid_field");
    pair.db1
        .sql("SET GLOBAL rpl_semi_sync_master_timeout = 60000")
        .unwrap();
    pair.db2.sql("STOP SLAVE IO_THREAD").unwrap();
    let unknown = post(&web, "/api/users", &user("6"), Some("key-6"));
    refused(&unknown, "outcome_unknown");
    pair.db2.sql("START SLAVE IO_THREAD").unwrap();
    let replayed = eventually(
        "the unknown write replayed",
        Duration::from_secs(30),
        || {
            let r = post(&web, "/api/users", &user("6"), Some("key-6"));
            // While the first transaction still waits for its ack, the retry waits on its key.
            (r.status != 503).then_some(r)
        },
    );
    assert_eq!(replayed.status, 201, "{replayed:?}");
    assert_eq!(
        replayed.header("idempotent-replayed"),
        Some("true"),
        "{replayed:?}"
    );
    assert_eq!(count(&pair.db1, &users_with("u6")), "1");
    pair.db1
        .sql("SET GLOBAL rpl_semi_sync_master_timeout = 2000")
        .unwrap();

    // A new epoch naming db2, still a read_only replica: refused, never a 2xx.
    store.delete(KEY);
    let epoch3 = store.put(KEY, &leader_value("db2", 2, a2, true));
    assert!(epoch3 > epoch2);
    wait_for(&web, "not_writable");
    for _ in 0..3 {
        refused(&post(&web, "/api/users", &user("7"), None), "not_writable");
    }

    // Promote db2 by hand (what its keeper does) and demote db1.
    pair.db2
        .sql("STOP SLAVE; SET GLOBAL read_only = OFF")
        .unwrap();
    pair.db1.sql("SET GLOBAL read_only = ON").unwrap();
    // A value naming another server_id at db2's address: the fence refuses it.
    store.put(KEY, &leader_value("db2", 1, a2, true));
    wait_for(&web, "server_mismatch");
    refused(
        &post(&web, "/api/users", &user("7"), None),
        "server_mismatch",
    );
    assert_eq!(count(&pair.db2, &users_with("u7")), "0");
    // The right value: writes land on db2, and only there.
    store.put(KEY, &leader_value("db2", 2, a2, true));
    wait_for(&web, "invalid_field");
    let r = post(&web, "/api/users", &user("7"), None);
    assert_eq!(r.status, 201, "{r:?}");
    assert!(
        r.header("x-db-gtid").is_some_and(|g| g.contains("-2-")),
        "{r:?}"
    );
    assert_eq!(count(&pair.db2, &users_with("u7")), "1");
    assert_eq!(count(&pair.db1, &users_with("u7")), "0");

    // Pruning deletes keys past their retention on the leader, and only those.
    pair.db2
        .sql(
            "INSERT INTO foobar.idempotency_keys VALUES \
             ('old', REPEAT(X'00', 32), 201, '{}', UTC_TIMESTAMP(6) - INTERVAL 25 HOUR)",
        )
        .unwrap();
    let keys = "SELECT COUNT(*) FROM foobar.idempotency_keys";
    let before: u32 = count(&pair.db2, keys).parse().unwrap();
    let config = Config::load(&pair.tmp.path().join("web.toml")).unwrap();
    let db = Db::new(
        config.database.as_ref().unwrap(),
        Arc::new(rampart_web::metrics::Metrics::new()),
    )
    .unwrap();
    db.set_leader(Some(Leader {
        host: "db2".into(),
        server_id: Some(2),
        addr: a2,
        epoch: epoch3,
        writable: true,
    }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(idempotency::prune(&db)).unwrap(), 1);
    assert_eq!(count(&pair.db2, keys), (before - 1).to_string());
    assert_eq!(rt.block_on(idempotency::prune(&db)).unwrap(), 0);
    rt.block_on(db.close());

    let m = metrics(&web);
    assert_eq!(
        metric(&m, "rampart_web_db_leader_epoch"),
        Some(epoch3 as f64),
        "{m}"
    );
    for reason in [
        "no_primary",
        "not_writable",
        "server_mismatch",
        "outcome_unknown",
    ] {
        let n = metric(
            &m,
            &format!("rampart_web_db_writes_refused_total{{reason=\"{reason}\"}}"),
        );
        assert!(n.is_some_and(|n| n >= 1.0), "{reason}: {m}");
    }
    assert!(
        metric(&m, "rampart_web_db_leader_changes_total").is_some_and(|n| n >= 4.0),
        "{m}"
    );
    assert!(
        metric(&m, "rampart_web_idempotent_replays_total").is_some_and(|n| n >= 3.0),
        "{m}"
    );
}

/// The same follower over a real etcd cluster (mutual TLS, three members): a put, a
/// delete and a new epoch of the leader key are each followed within a bounded time, also
/// after the member the watch was most likely on is killed.
#[test]
fn the_web_server_follows_the_leader_key_in_a_real_etcd_cluster() {
    if !installed() {
        return;
    }
    let Some(mut cluster) = rampart_test_support::etcd::EtcdCluster::start(3) else {
        return;
    };
    let pair = Pair::up();
    let (a1, a2) = (Pair::addr(&pair.db1), Pair::addr(&pair.db2));
    let web_tls = cluster.client_tls("web1");
    let (cert, key) = web_tls.client_cert.clone().unwrap();
    let endpoints: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let etcd = format!(
        "[database.etcd]\nendpoints = [{}]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n\
         leader_key = \"{KEY}\"\n",
        endpoints.join(", "),
        web_tls.ca.display(),
        cert.display(),
        key.display()
    );
    let web = start_web(pair.tmp.path(), &database(&pair, &etcd), None);
    let keeper = rampart_etcd::Client::new(rampart_etcd::ClientConfig::new(
        cluster.urls(),
        cluster.client_tls("keeper"),
    ))
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The keeper's calls are retried: right after a member dies the cluster may be
    // electing a new raft leader. `put` returns the epoch (the key's create revision).
    let put = |v: Vec<u8>| {
        eventually("the put", Duration::from_secs(30), || {
            rt.block_on(keeper.put(KEY, &v, None)).ok()
        });
        let range = rt.block_on(keeper.get(KEY)).unwrap();
        range.kvs[0].create_revision
    };
    let delete = || {
        eventually("the delete", Duration::from_secs(30), || {
            rt.block_on(keeper.delete(KEY)).ok()
        })
    };
    let epoch = |web: &Server| metric(&metrics(web), "rampart_web_db_leader_epoch");

    refused(
        &post(
            &web,
            "/api/users",
            r#"{"name":"a","email":"a@example.com"}"#,
            None,
        ),
        "no_primary",
    );

    // A put: followed, migrations run, writes land on db1.
    let e1 = put(leader_value("db1", 1, a1, true));
    eventually("ready", Duration::from_secs(30), || {
        (get(&web, "/readyz").status == 200).then_some(())
    });
    assert_eq!(epoch(&web), Some(e1 as f64));
    let r = post(
        &web,
        "/api/users",
        r#"{"name":"a","email":"a@example.com"}"#,
        None,
    );
    assert_eq!(r.status, 201, "{r:?}");

    // A delete (the lease expired): no leader.
    delete();
    wait_for(&web, "no_primary");
    assert_eq!(epoch(&web), Some(0.0));

    // A new epoch naming db2, still a read_only replica.
    let e2 = put(leader_value("db2", 2, a2, true));
    wait_for(&web, "not_writable");
    assert_eq!(epoch(&web), Some(e2 as f64));

    // The first member dies (the web server's client starts there, so its watch was
    // there): the follower watches on another member and sees the next epoch.
    cluster.kill(0);
    delete();
    let e3 = put(leader_value("db1", 1, a1, true));
    wait_for(&web, "invalid_field");
    assert_eq!(epoch(&web), Some(e3 as f64));
    let r = post(
        &web,
        "/api/users",
        r#"{"name":"b","email":"b@example.com"}"#,
        None,
    );
    assert_eq!(r.status, 201, "{r:?}");
    let m = metrics(&web);
    // The client starts on the first endpoint, so the watch was on the killed member.
    assert!(
        metric(&m, "rampart_web_db_leader_watch_restarts_total").is_some_and(|n| n >= 1.0),
        "{m}"
    );
    assert!(
        metric(&m, "rampart_web_db_leader_changes_total").is_some_and(|n| n >= 4.0),
        "{m}"
    );
}

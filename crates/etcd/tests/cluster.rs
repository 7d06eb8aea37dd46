//! The client against a real three-member etcd cluster (`/usr/bin/etcd`, Debian's
//! `etcd-server`) with mutual TLS on 127.0.0.1, certificates from rampart's CA: leases,
//! transactions as the keepers use them, watches, failover across members, refusals.
//! Skips visibly when etcd is not installed (fails in CI). Each test owns its cluster and
//! kills its members by their own PIDs when dropped; the clusters run one at a time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rampart_etcd::{Client, ClientConfig, Compare, Error, Kv, Op, Txn, WatchEvent};
use rampart_tls::ClientTls;

const ETCD: &str = "/usr/bin/etcd";

/// Whether etcd is installed; without it the test prints SKIPPED, or fails under `CI`.
fn installed() -> bool {
    if Path::new(ETCD).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none_or(|v| v.is_empty()),
        "{ETCD} is missing: install the Debian package etcd-server"
    );
    println!("SKIPPED: {ETCD} is missing (apt-get install etcd-server)");
    false
}

/// One cluster at a time: three members per test on two cores are enough.
static ONE_CLUSTER: Mutex<()> = Mutex::new(());

struct Member {
    name: String,
    url: String,
    child: Option<Child>,
    log: PathBuf,
}

/// A three-member cluster in a temporary directory, stopped (by PID) when dropped.
struct Cluster {
    members: Vec<Member>,
    tls: ClientTls,
    dir: tempfile::TempDir,
    _one: MutexGuard<'static, ()>,
}

/// Free ports on 127.0.0.1, held until the members are about to bind them.
fn free_ports(n: usize) -> (Vec<u16>, Vec<TcpListener>) {
    let listeners: Vec<_> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    (ports, listeners)
}

impl Cluster {
    /// Starts three members and waits until each reports healthy; `None` when etcd is
    /// not installed.
    async fn start() -> Option<Cluster> {
        if !installed() {
            return None;
        }
        let one = ONE_CLUSTER.lock().unwrap_or_else(PoisonError::into_inner);
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        let ca = rampart_tls::pki::Ca::create(&pki, "etcd test CA").unwrap();
        // Peers connect from 127.0.0.1 too, and etcd checks a peer's client certificate
        // against its source address: 127.0.0.1 is in every member's certificate.
        let names = vec!["127.0.0.1".to_owned()];
        let client = ca.issue(&pki, "keeper", &["keeper".into()], true).unwrap();
        let tls = ClientTls {
            ca: pki.join("ca.pem"),
            client_cert: Some((client.cert, client.key)),
        };
        let (ports, held) = free_ports(6);
        let peer = |i: usize| format!("https://127.0.0.1:{}", ports[2 * i + 1]);
        let initial: Vec<String> = (0..3).map(|i| format!("m{}={}", i + 1, peer(i))).collect();
        let token = format!("rampart-test-{}", ports[0]);
        drop(held);
        let mut members = Vec::new();
        for i in 0..3 {
            let name = format!("m{}", i + 1);
            let url = format!("https://127.0.0.1:{}", ports[2 * i]);
            let cert = ca.issue(&pki, &name, &names, true).unwrap();
            let (cert, key) = (
                cert.cert.display().to_string(),
                cert.key.display().to_string(),
            );
            let ca_file = pki.join("ca.pem").display().to_string();
            let log = dir.path().join(format!("{name}.log"));
            let mut cmd = Command::new(ETCD);
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("ETCD_") {
                    cmd.env_remove(k);
                }
            }
            cmd.args([
                "--name",
                &name,
                "--logger",
                "zap",
                "--log-outputs",
                "stderr",
            ])
            .arg("--data-dir")
            .arg(dir.path().join(&name))
            .args(["--listen-peer-urls", &peer(i)])
            .args(["--initial-advertise-peer-urls", &peer(i)])
            .args(["--listen-client-urls", &url])
            .args(["--advertise-client-urls", &url])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &token])
            .args(["--cert-file", &cert, "--key-file", &key])
            .args(["--trusted-ca-file", &ca_file, "--client-cert-auth"])
            .args(["--peer-cert-file", &cert, "--peer-key-file", &key])
            .args([
                "--peer-trusted-ca-file",
                &ca_file,
                "--peer-client-cert-auth",
            ])
            // Progress notifications every second instead of ten minutes, to see them.
            .args(["--experimental-watch-progress-notify-interval", "1s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap());
            let child = cmd.spawn().expect("spawn etcd");
            members.push(Member {
                name,
                url,
                child: Some(child),
                log,
            });
        }
        let cluster = Cluster {
            members,
            tls,
            dir,
            _one: one,
        };
        // A member of a new cluster answers nothing until the quorum is there.
        for m in &cluster.members {
            let c = cluster.client_for(&[&m.url], Duration::from_secs(1));
            eventually(
                &format!("{} healthy", m.name),
                Duration::from_secs(30),
                || {
                    let c = c.clone();
                    async move { c.health().await.ok() }
                },
            )
            .await;
        }
        Some(cluster)
    }

    fn url(&self, i: usize) -> &str {
        &self.members[i].url
    }

    fn client_for(&self, urls: &[&str], timeout: Duration) -> Client {
        Client::new(ClientConfig {
            endpoints: urls.iter().map(|u| (*u).to_owned()).collect(),
            tls: self.tls.clone(),
            request_timeout: timeout,
        })
        .unwrap()
    }

    /// A client of every member, with the default request timeout.
    fn client(&self) -> Client {
        let urls: Vec<&str> = self.members.iter().map(|m| m.url.as_str()).collect();
        Client::new(ClientConfig::new(
            urls.iter().map(|u| (*u).to_owned()).collect(),
            self.tls.clone(),
        ))
        .unwrap()
    }

    /// Kills member `i` (SIGKILL to its own PID) and reaps it.
    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The index of the member that is the raft leader, from each member's status.
    async fn leader(&self) -> usize {
        let tls = std::sync::Arc::new(rampart_tls::client_config(&self.tls).unwrap());
        let mut ids = Vec::new();
        let mut leader = None;
        for m in &self.members {
            let (endpoint, _) = rampart_telemetry::http_client::Endpoint::from_url(
                &m.url.parse().unwrap(),
                Some(tls.clone()),
            )
            .unwrap();
            let request = http::Request::post("/v3/maintenance/status")
                .body(bytes::Bytes::from_static(b"{}"))
                .unwrap();
            let limits = rampart_telemetry::http_client::Limits {
                timeout: Duration::from_secs(2),
                max_body: 1 << 16,
                overflow: rampart_telemetry::http_client::Overflow::Fail,
            };
            let answer = rampart_telemetry::http_client::send_to(&endpoint, request, limits)
                .await
                .unwrap();
            let status: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
            ids.push(status["header"]["member_id"].as_str().unwrap().to_owned());
            leader = status["leader"].as_str().map(str::to_owned);
        }
        let leader = leader.unwrap();
        ids.iter().position(|id| *id == leader).unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            for m in &self.members {
                let log = std::fs::read_to_string(&m.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                eprintln!("--- {} ({}) log tail:", m.name, m.url);
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
            eprintln!("cluster directory: {}", self.dir.path().display());
        }
    }
}

/// Polls `f` every 100 ms until it gives `Some`, or panics after `deadline`.
async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The next watch event within `within`, or a panic saying what was awaited.
async fn next_event(watch: &mut rampart_etcd::Watch, within: Duration, what: &str) -> WatchEvent {
    tokio::time::timeout(within, watch.next())
        .await
        .unwrap_or_else(|_| panic!("no watch event within {within:?}: {what}"))
        .unwrap()
        .unwrap_or_else(|| panic!("watch ended: {what}"))
}

fn value_of(kvs: &[Kv]) -> Vec<&[u8]> {
    kvs.iter().map(|kv| kv.value.as_slice()).collect()
}

#[tokio::test]
async fn leases_keys_and_refusals() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let etcd = cluster.client();
    etcd.health().await.unwrap();

    // Grant, renew, revoke; a revoked lease has no TTL and revoking it again is fine.
    let lease = etcd.grant(Duration::from_secs(6)).await.unwrap();
    assert_eq!(lease.ttl, Duration::from_secs(6));
    assert_eq!(
        etcd.keepalive(lease.id).await.unwrap(),
        Some(Duration::from_secs(6))
    );
    etcd.revoke(lease.id).await.unwrap();
    assert_eq!(etcd.keepalive(lease.id).await.unwrap(), None);
    etcd.revoke(lease.id).await.unwrap();
    // Writing on it is refused as such.
    let err = etcd.put("/k", b"v", Some(lease.id)).await.unwrap_err();
    assert!(matches!(err, Error::LeaseNotFound), "{err}");
    // A TTL below the minimum is raised to it (1.5 × the 1 s election timeout, rounded up).
    let short = etcd.grant(Duration::from_secs(1)).await.unwrap();
    assert_eq!(short.ttl, Duration::from_secs(2));

    // Plain keys: put, get, prefix, delete, revisions moving on.
    let r1 = etcd.put("/p/a", b"1", None).await.unwrap();
    let r2 = etcd.put("/p/b", b"2", None).await.unwrap();
    etcd.put("/q", b"3", None).await.unwrap();
    assert!(r2 > r1, "{r1} {r2}");
    let a = etcd.get("/p/a").await.unwrap();
    assert_eq!(a.kvs.len(), 1);
    let kv = &a.kvs[0];
    assert_eq!(
        (
            kv.key.as_str(),
            kv.value.as_slice(),
            kv.create_revision,
            kv.mod_revision,
            kv.version,
            kv.lease
        ),
        ("/p/a", &b"1"[..], r1, r1, 1, 0)
    );
    assert!(a.revision > r2, "{a:?}");
    let p = etcd.get_prefix("/p/").await.unwrap();
    let keys: Vec<&str> = p.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/p/a", "/p/b"]);
    assert_eq!(etcd.get_prefix("").await.unwrap().kvs.len(), 3);
    let deleted = etcd.delete("/p/a").await.unwrap();
    let gone = etcd.get("/p/a").await.unwrap();
    assert!(gone.kvs.is_empty());
    assert_eq!(gone.revision, deleted);
    // Deleting what is absent is no error.
    assert_eq!(etcd.delete("/p/a").await.unwrap(), deleted);

    // A key on a lease of 2 s goes when the lease expires, not before.
    let lease = etcd.grant(Duration::from_secs(2)).await.unwrap();
    let t = Instant::now();
    etcd.put("/leased", b"x", Some(lease.id)).await.unwrap();
    assert_eq!(etcd.get("/leased").await.unwrap().kvs[0].lease, lease.id);
    eventually("the leased key to go", Duration::from_secs(10), || async {
        etcd.get("/leased")
            .await
            .unwrap()
            .kvs
            .is_empty()
            .then_some(())
    })
    .await;
    let lasted = t.elapsed();
    println!("a key on a 2 s lease lasted {lasted:?}");
    assert!(lasted >= Duration::from_millis(1500), "{lasted:?}");
    assert_eq!(etcd.keepalive(lease.id).await.unwrap(), None);

    // Refusals carry etcd's code.
    let err = etcd.put("", b"v", None).await.unwrap_err();
    assert!(
        matches!(&err, Error::Status { http: 400, code: 3, message } if message.contains("key is not provided")),
        "{err}"
    );
    let err = etcd
        .grant(Duration::from_secs(10_000_000_000))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Status { http: 400, code: 11, message } if message.contains("too large lease TTL")),
        "{err}"
    );

    // Without a client certificate the members refuse the connection, each of them.
    let anonymous = Client::new(ClientConfig::new(
        vec![cluster.url(0).to_owned(), cluster.url(1).to_owned()],
        ClientTls {
            ca: cluster.tls.ca.clone(),
            client_cert: None,
        },
    ))
    .unwrap();
    let err = anonymous.get("/p/b").await.unwrap_err();
    println!("without a client certificate: {err}");
    assert!(
        matches!(&err, Error::Unavailable(m) if m.contains(cluster.url(0)) && m.contains(cluster.url(1)) && m.to_lowercase().contains("certificate")),
        "{err}"
    );
}

#[tokio::test]
async fn transactions_elect_once_and_guard_writes_by_epoch() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let etcd = cluster.client();
    let key = "/rampart/db/primary";
    let lease = etcd.grant(Duration::from_secs(6)).await.unwrap();
    let claim = |value: &'static str| {
        Txn::new()
            .when(Compare::CreateRevision(key.into(), 0))
            .then(Op::put(key, value, Some(lease.id)))
            .or_else(Op::get(key))
    };

    // Create if absent: the first claim wins, the second sees the winner.
    let first = etcd.txn(&claim("db1")).await.unwrap();
    assert!(first.succeeded);
    assert!(first.ranges.is_empty());
    let second = etcd.txn(&claim("db2")).await.unwrap();
    assert!(!second.succeeded);
    assert_eq!(second.revision, first.revision);
    assert_eq!(value_of(&second.ranges[0]), [b"db1"]);
    let holder = &second.ranges[0][0];
    assert_eq!(
        (holder.lease, holder.create_revision),
        (lease.id, first.revision)
    );
    let epoch = holder.create_revision;

    // A write guarded by the epoch goes through while the key is that incarnation ...
    let guarded = |value: &'static str| {
        Txn::new()
            .when(Compare::CreateRevision(key.into(), epoch))
            .then(Op::put(key, value, Some(lease.id)))
            .or_else(Op::get(key))
    };
    let update = etcd.txn(&guarded("db1 (gtid 5)")).await.unwrap();
    assert!(update.succeeded, "{update:?}");
    // ... and fails once the key was deleted and created again, even with the same value.
    etcd.delete(key).await.unwrap();
    assert!(etcd.txn(&claim("db1")).await.unwrap().succeeded);
    let stale = etcd.txn(&guarded("db1 (gtid 6)")).await.unwrap();
    assert!(!stale.succeeded);
    assert_eq!(value_of(&stale.ranges[0]), [b"db1"]);
    assert!(stale.ranges[0][0].create_revision > epoch);

    // The other comparisons, and their negations.
    let now = etcd.get(key).await.unwrap().kvs.remove(0);
    let holds = |c: Compare| async { etcd.txn(&Txn::new().when(c)).await.unwrap().succeeded };
    assert!(holds(Compare::ModRevision(key.into(), now.mod_revision)).await);
    assert!(holds(Compare::Version(key.into(), 1)).await);
    assert!(holds(Compare::Value(key.into(), b"db1".to_vec())).await);
    assert!(holds(Compare::Lease(key.into(), lease.id)).await);
    assert!(!holds(!Compare::Lease(key.into(), lease.id)).await);
    assert!(holds(!Compare::Value(key.into(), b"db2".to_vec())).await);
    assert!(!holds(Compare::Version(key.into(), 2)).await);

    // Both branches' reads, in order, an absent key's empty.
    etcd.put("/other", b"o", None).await.unwrap();
    let reads = etcd
        .txn(
            &Txn::new()
                .when(Compare::Version(key.into(), 1))
                .then(Op::get("/other"))
                .then(Op::put("/third", "t", None))
                .then(Op::get("/absent"))
                .then(Op::get(key))
                .then(Op::delete("/other")),
        )
        .await
        .unwrap();
    assert!(reads.succeeded);
    let values: Vec<Vec<&[u8]>> = reads.ranges.iter().map(|r| value_of(r)).collect();
    assert_eq!(values, [vec![&b"o"[..]], vec![], vec![&b"db1"[..]]]);
    assert!(etcd.get("/other").await.unwrap().kvs.is_empty());
}

#[tokio::test]
async fn watch_sees_puts_then_the_lease_expiry_in_order_and_progress_and_cancel() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let etcd = cluster.client();
    let r1 = etcd.put("/w/k", b"1", None).await.unwrap();
    let lease = etcd.grant(Duration::from_secs(2)).await.unwrap();
    let r2 = etcd.put("/w/k", b"2", Some(lease.id)).await.unwrap();
    etcd.put("/elsewhere", b"x", None).await.unwrap();

    // From r1: both puts (history), then the delete when the lease expires.
    let mut watch = etcd.watch("/w/k", false, r1).await.unwrap();
    let second = Duration::from_secs(1);
    match next_event(&mut watch, second, "first put").await {
        WatchEvent::Put(kv) => assert_eq!((kv.value.as_slice(), kv.mod_revision), (&b"1"[..], r1)),
        other => panic!("{other:?}"),
    }
    match next_event(&mut watch, second, "second put").await {
        WatchEvent::Put(kv) => {
            assert_eq!(
                (kv.value.as_slice(), kv.mod_revision, kv.lease),
                (&b"2"[..], r2, lease.id)
            );
        }
        other => panic!("{other:?}"),
    }
    // Progress notifications may come between (every second here); the delete comes.
    let deleted = loop {
        match next_event(&mut watch, Duration::from_secs(10), "the lease's delete").await {
            WatchEvent::Progress { .. } => continue,
            WatchEvent::Delete { key, mod_revision } => break (key, mod_revision),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(deleted.0, "/w/k");
    assert!(deleted.1 > r2, "{deleted:?} after {r2}");

    // A prefix watch from now: a put under the prefix, nothing of other keys, and with
    // nothing happening, progress at the current revision.
    let mut prefix = etcd.watch("/w/", true, 0).await.unwrap();
    etcd.put("/elsewhere", b"y", None).await.unwrap();
    let r3 = etcd.put("/w/new", b"n", None).await.unwrap();
    loop {
        match next_event(
            &mut prefix,
            Duration::from_secs(5),
            "the put under the prefix",
        )
        .await
        {
            WatchEvent::Progress { .. } => continue,
            WatchEvent::Put(kv) => {
                assert_eq!((kv.key.as_str(), kv.mod_revision), ("/w/new", r3));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    match next_event(&mut prefix, Duration::from_secs(5), "progress").await {
        WatchEvent::Progress { revision } => assert!(revision >= r3, "{revision} {r3}"),
        other => panic!("{other:?}"),
    }
    drop(prefix);

    // A start revision compacted away: canceled with the compaction's revision, then
    // the watch ends.
    let now = etcd.get("/w/new").await.unwrap().revision;
    etcd.compact(now).await.unwrap();
    let mut old = etcd.watch("/w/k", false, r1).await.unwrap();
    assert_eq!(
        next_event(&mut old, second, "the cancellation").await,
        WatchEvent::Canceled {
            compact_revision: now
        }
    );
    assert_eq!(old.next().await.unwrap(), None);
}

#[tokio::test]
async fn requests_fail_over_to_the_other_members_and_fail_fast_without_quorum() {
    let Some(mut cluster) = Cluster::start().await else {
        return;
    };
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    // The follower first: every call starts there while it answers.
    let timeout = Duration::from_secs(1);
    let etcd = cluster.client_for(
        &[
            cluster.url(follower),
            cluster.url(leader),
            cluster.url(other),
        ],
        timeout,
    );
    etcd.put("/f", b"0", None).await.unwrap();
    let mut watch = etcd.watch("/f", false, 0).await.unwrap();
    // A watch on the member that will survive alone, to see it end without a quorum.
    let survivor = cluster.client_for(&[cluster.url(other)], timeout);
    let mut lone_watch = survivor.watch("/f", false, 0).await.unwrap();

    cluster.kill(follower);
    // The watch on the killed member ends (its connection closed) ...
    let ended = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("the killed member's watch ends");
    println!("watch on the killed member: {ended:?}");
    assert!(
        matches!(ended, Ok(None) | Err(Error::Unavailable(_))),
        "{ended:?}"
    );
    // ... and every request goes to the next member.
    let t = Instant::now();
    etcd.put("/f", b"1", None).await.unwrap();
    println!("first request after killing a follower: {:?}", t.elapsed());
    assert!(t.elapsed() < timeout, "{:?}", t.elapsed());
    for i in 0..20 {
        let value = format!("v{i}");
        etcd.put("/f", value.as_bytes(), None).await.unwrap();
        assert_eq!(
            value_of(&etcd.get("/f").await.unwrap().kvs),
            [value.as_bytes()]
        );
    }
    assert!(
        etcd.txn(&Txn::new().when(Compare::Version("/f".into(), 22)))
            .await
            .unwrap()
            .succeeded
    );
    let lease = etcd.grant(Duration::from_secs(6)).await.unwrap();
    assert!(etcd.keepalive(lease.id).await.unwrap().is_some());
    let mut watch = etcd.watch("/f", false, 0).await.unwrap();
    etcd.put("/f", b"w", None).await.unwrap();
    assert!(matches!(
        next_event(&mut watch, Duration::from_secs(2), "put").await,
        WatchEvent::Put(_)
    ));

    // Two of three gone: no quorum. Every call is Unavailable, within a few request
    // timeouts (the survivor first holds requests until the timeout, then, once it
    // knows it has no leader, refuses them at once).
    cluster.kill(leader);
    for attempt in 0..3 {
        let t = Instant::now();
        let err = etcd.get("/f").await.unwrap_err();
        let took = t.elapsed();
        println!("get without quorum, attempt {attempt}: {took:?}: {err}");
        assert!(matches!(err, Error::Unavailable(_)), "{err}");
        assert!(took < Duration::from_secs(10), "{took:?}");
    }
    let t = Instant::now();
    let err = etcd.put("/f", b"x", None).await.unwrap_err();
    println!("put without quorum: {:?}: {err}", t.elapsed());
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let err = etcd.keepalive(lease.id).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    let err = etcd.health().await.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    // The survivor ends the watch opened on it, and refuses new ones.
    let t = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match lone_watch.next().await {
                Ok(Some(WatchEvent::Put(_) | WatchEvent::Progress { .. })) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the survivor ends its watch when it loses its leader");
    println!("survivor's watch after {:?}: {ended:?}", t.elapsed());
    assert!(
        matches!(ended, Err(Error::Unavailable(_)) | Ok(None)),
        "{ended:?}"
    );
    let err = etcd.watch("/f", false, 0).await.unwrap_err();
    println!("watch without quorum: {err}");
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
}

#[test]
fn unusable_configurations_are_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let ca = rampart_tls::pki::Ca::create(dir.path(), "test CA").unwrap();
    let client = ca.issue(dir.path(), "c", &["c".into()], true).unwrap();
    let tls = ClientTls {
        ca: dir.path().join("ca.pem"),
        client_cert: Some((client.cert, client.key)),
    };
    let new = |endpoints: &[&str], tls: ClientTls| {
        Client::new(ClientConfig::new(
            endpoints.iter().map(|e| (*e).to_owned()).collect(),
            tls,
        ))
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    assert_eq!(
        new(
            &["https://198.18.9.2:2379", "https://[::1]:2379"],
            tls.clone()
        ),
        Ok(())
    );
    for (endpoints, expected) in [
        (&[][..], "no endpoints"),
        (&["http://198.18.9.2:2379"], "not https://host:port"),
        (&["https://198.18.9.2:2379/v3"], "has a path"),
        (&["198.18.9.2:2379"], "not https://host:port"),
        (&["https://u:p@h:1"], "credentials"),
    ] {
        let err = new(endpoints, tls.clone()).unwrap_err();
        assert!(err.contains(expected), "{endpoints:?}: {err}");
    }
    let missing = ClientTls {
        ca: dir.path().join("nope.pem"),
        ..tls.clone()
    };
    let err = new(&["https://h:1"], missing).unwrap_err();
    assert!(
        err.starts_with("etcd client configuration: ") && err.contains("nope.pem"),
        "{err}"
    );
    let err = Client::new(ClientConfig {
        request_timeout: Duration::ZERO,
        ..ClientConfig::new(vec!["https://h:1".into()], tls)
    })
    .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
}

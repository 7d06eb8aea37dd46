//! A real etcd cluster for tests: members of Debian's `/usr/bin/etcd` (`etcd-server`) on
//! free 127.0.0.1 ports with mutual TLS on both the client and the peer side, certificates
//! from a fresh rampart CA, in a temporary directory. [`EtcdCluster::start`] returns once
//! every member says it is healthy (a member of a new cluster answers nothing until the
//! quorum is there); dropping the cluster kills each member by its own PID and, when the
//! test panicked, prints the tail of each member's log. One cluster at a time per test
//! binary: three members per test on two cores are enough.
//!
//! The same setup as `crates/etcd/tests/cluster.rs` (which keeps its own async copy),
//! shaped for synchronous tests of the services that follow etcd.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rampart_tls::ClientTls;

/// Where Debian installs etcd.
pub const ETCD: &str = "/usr/bin/etcd";

/// Whether etcd is installed; without it this prints SKIPPED (the caller returns), and
/// under `CI` it fails the test.
pub fn installed() -> bool {
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

static ONE_CLUSTER: Mutex<()> = Mutex::new(());

/// One member: its name (`m1`...), client URL and process.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    pub url: String,
    child: Option<Child>,
    log: PathBuf,
}

/// A running cluster; see the module doc.
#[derive(Debug)]
pub struct EtcdCluster {
    pub members: Vec<Member>,
    ca: rampart_tls::pki::Ca,
    dir: tempfile::TempDir,
    _one: MutexGuard<'static, ()>,
}

/// Free ports on 127.0.0.1, held until the members are about to bind them.
#[allow(clippy::expect_used)]
fn free_ports(n: usize) -> (Vec<u16>, Vec<TcpListener>) {
    let listeners: Vec<_> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    let ports = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.port())
        .collect();
    (ports, listeners)
}

impl EtcdCluster {
    /// Starts `size` members and waits (up to 30 s) until each is healthy; `None` when
    /// etcd is not installed.
    #[allow(clippy::expect_used)]
    pub fn start(size: usize) -> Option<EtcdCluster> {
        if !installed() {
            return None;
        }
        let one = ONE_CLUSTER.lock().unwrap_or_else(PoisonError::into_inner);
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = dir.path().join("pki");
        let ca = rampart_tls::pki::Ca::create(&pki, "etcd test CA").expect("ca");
        // Peers connect from 127.0.0.1 too, and etcd checks a peer's client certificate
        // against its source address: 127.0.0.1 is in every member's certificate.
        let names = vec!["127.0.0.1".to_owned()];
        let (ports, held) = free_ports(2 * size);
        let peer = |i: usize| format!("https://127.0.0.1:{}", ports[2 * i + 1]);
        let initial: Vec<String> = (0..size)
            .map(|i| format!("m{}={}", i + 1, peer(i)))
            .collect();
        let token = format!("rampart-test-{}", ports[0]);
        let ca_file = pki.join("ca.pem");
        drop(held);
        let mut members = Vec::new();
        for i in 0..size {
            let name = format!("m{}", i + 1);
            let url = format!("https://127.0.0.1:{}", ports[2 * i]);
            let cert = ca.issue(&pki, &name, &names, true).expect("member cert");
            let log = dir.path().join(format!("{name}.log"));
            let mut cmd = Command::new(ETCD);
            // etcd exits when an ETCD_* variable duplicates a flag.
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
            .arg("--cert-file")
            .arg(&cert.cert)
            .arg("--key-file")
            .arg(&cert.key)
            .arg("--trusted-ca-file")
            .arg(&ca_file)
            .arg("--client-cert-auth")
            .arg("--peer-cert-file")
            .arg(&cert.cert)
            .arg("--peer-key-file")
            .arg(&cert.key)
            .arg("--peer-trusted-ca-file")
            .arg(&ca_file)
            .arg("--peer-client-cert-auth")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("member log"));
            let child = cmd.spawn().expect("spawn etcd");
            members.push(Member {
                name,
                url,
                child: Some(child),
                log,
            });
        }
        let cluster = EtcdCluster {
            members,
            ca,
            dir,
            _one: one,
        };
        let tls = cluster.client_tls("health");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        for m in &cluster.members {
            let client = rampart_etcd::Client::new(rampart_etcd::ClientConfig::new(
                vec![m.url.clone()],
                tls.clone(),
            ))
            .expect("etcd client");
            crate::eventually(
                &format!("etcd member {} healthy", m.name),
                Duration::from_secs(30),
                || rt.block_on(client.health()).ok(),
            );
        }
        Some(cluster)
    }

    /// Every member's client URL.
    pub fn urls(&self) -> Vec<String> {
        self.members.iter().map(|m| m.url.clone()).collect()
    }

    /// The CA of every member's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("pki/ca.pem")
    }

    /// A client certificate named `name` (clientAuth) from the cluster's CA, and the CA.
    #[allow(clippy::expect_used)]
    pub fn client_tls(&self, name: &str) -> ClientTls {
        let pki = self.dir.path().join("pki");
        let cert = self
            .ca
            .issue(&pki, name, &[name.to_owned()], true)
            .expect("client cert");
        ClientTls {
            ca: self.ca(),
            client_cert: Some((cert.cert, cert.key)),
        }
    }

    /// Kills member `i` (SIGKILL to its own PID) and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members.get_mut(i).and_then(|m| m.child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            for m in &self.members {
                let log = std::fs::read_to_string(&m.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                eprintln!("--- etcd {} ({}) log tail:", m.name, m.url);
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
            eprintln!("etcd cluster directory: {}", self.dir.path().display());
        }
    }
}

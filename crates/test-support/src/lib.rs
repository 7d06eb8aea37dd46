//! Test harness shared by rampart's integration tests: real backend servers (in-process or
//! as a child process), a local CA with site certificates, a TLS client, process guards
//! that kill only what they started, `eventually`-style polling with a deadline, a real
//! etcd cluster with mutual TLS (`etcd`), and for end-to-end tests a headless browser
//! (`browser`), any service run in process (`inprocess`), nmap SYN scans (`scan`) and booted systemd hosts with sshd for deployment
//! tests (`booted`).

#![allow(clippy::disallowed_methods)] // test support polls with std::thread::sleep

pub mod attack;
pub mod backend;
pub mod booted;
pub mod browser;
pub mod client;
pub mod etcd;
pub mod exposition;
pub mod inprocess;
pub mod lbproc;
pub mod prometheus;
pub mod scan;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub use backend::{spawn_backend, BackendHandle};

/// A free TCP port on 127.0.0.1: bound and released at once, for a program the test
/// starts right after (a forward, pebble, node_exporter).
#[allow(clippy::expect_used)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// Polls `f` until it returns `Some` or `deadline` passes; panics with `what` on timeout.
pub fn eventually<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A temporary directory holding a CA (`ca.pem`) and a site certificate for
/// www.foobar.com and foobar.com (`site.pem`, `site.key`).
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    /// Creates the CA and site certificate, plus host certificates for `hosts`.
    #[allow(clippy::expect_used)]
    pub fn new(hosts: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = rampart_tls::pki::Ca::create(dir.path(), "rampart test CA").expect("ca");
        ca.issue(
            dir.path(),
            "site",
            &["www.foobar.com".into(), "foobar.com".into()],
            false,
        )
        .expect("site cert");
        for h in hosts {
            ca.issue(dir.path(), h, &[(*h).to_owned()], true)
                .expect("host cert");
        }
        Self { dir }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// A rustls client config that trusts this CA (and offers `alpn`).
    #[allow(clippy::expect_used)]
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut c = rampart_tls::client_config(&rampart_tls::ClientTls {
            ca: self.path("ca.pem"),
            client_cert: None,
        })
        .expect("client config");
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(c)
    }
}

/// A child process that is killed (by its own PID) when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` to this process only.
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status();
    }

    /// Waits for the process to exit, up to `limit`; returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The directory cargo puts workspace binaries in, derived from the test executable.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> → target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_owned)
        .unwrap_or_default()
}

/// The path of the `rampart-test-backend` binary, building it once if needed.
pub fn backend_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| support_bin("rampart-test-backend"))
        .clone()
}

/// The path of the `rampart-test-writer` binary (the failover test's writers), building
/// it once if needed.
pub fn writer_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| support_bin("rampart-test-writer"))
        .clone()
}

/// Builds this crate's binary `name` and returns its path.
#[allow(clippy::expect_used)]
fn support_bin(name: &str) -> PathBuf {
    let bin = target_dir().join(name);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "rampart-test-support",
            "--bin",
            name,
        ])
        .status()
        .unwrap_or_else(|e| panic!("run cargo build for {name}: {e}"));
    assert!(status.success(), "building {name} failed");
    assert!(bin.exists(), "{} missing after build", bin.display());
    bin
}

/// Starts `rampart-test-backend` as a child process on `listen` (port 0 picks one) and
/// returns it with the address it bound. `extra` adds arguments such as TLS files.
#[allow(clippy::expect_used)]
pub fn backend_process(name: &str, listen: &str, extra: &[&str]) -> (Proc, SocketAddr) {
    let mut child = Command::new(backend_bin())
        .args(["--name", name, "--listen", listen])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn rampart-test-backend");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read backend address");
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("backend {name} did not start: {line:?}"));
    (
        Proc {
            child,
            name: name.to_owned(),
        },
        addr,
    )
}

/// Whether the tests run as root (network namespaces, nftables). Outside CI a non-root
/// run prints `SKIPPED` and the caller returns; in CI (`CI` set) it fails the test, since
/// CI runs as root.
pub fn require_root(why: &str) -> bool {
    let out = std::process::Command::new("id").arg("-u").output();
    let root = out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs the tests as root ({why})"
        );
        eprintln!("SKIPPED: needs root for {why}");
    }
    root
}

/// Runs `cmd` with `input` on its stdin and returns its output (stdout and stderr
/// captured); panics if it cannot be started (test support: a test cannot go on).
#[allow(clippy::expect_used)]
pub fn run_with_stdin(cmd: &mut std::process::Command, input: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    if let Some(mut stdin) = child.stdin.take() {
        // A write error means the program exited early; its output says why.
        let _ = stdin.write_all(input.as_bytes());
    }
    child.wait_with_output().expect("wait")
}

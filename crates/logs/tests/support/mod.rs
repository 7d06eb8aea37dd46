//! The harness `loki_compat.rs` and `bad_input.rs` share: `rampart logs` in process on
//! 127.0.0.1:0 behind mutual TLS (certificates from a fresh CA), and curl as the client
//! holding a certificate of that CA, as the gate and the dashboard do.

// Each test binary uses its own part of the harness.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use rampart_logs::{Config, Logs};
use rampart_telemetry::config::ConfigFile;
use rampart_tls::pki::Ca;

/// The body limit the tests configure (`limits.max_body_bytes`).
pub const MAX_BODY: usize = 1 << 20;

/// A running store; dropping it stops it and waits for it.
pub struct Running {
    pub addr: SocketAddr,
    _store: rampart_test_support::inprocess::Running<Logs>,
    dir: PathBuf,
    files: AtomicUsize,
    _tmp: tempfile::TempDir,
}

/// What curl saw: the status, the response's content type and its body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        assert!(
            self.content_type.starts_with("application/json"),
            "content type {:?}: {}",
            self.content_type,
            self.body
        );
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Starts a store in a fresh directory, or `None` when curl is not installed (the
/// caller returns: the test cannot run here).
pub fn start() -> Option<Running> {
    rampart_test_support::client::tool("curl", None)?;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_owned();
    let ca = Ca::create(&d.join("plane"), "test plane CA").unwrap();
    ca.issue(&d, "server", &["127.0.0.1".into()], false)
        .unwrap();
    ca.issue_client(&d, "gate", &["gate.plane.rampart".into()])
        .unwrap();
    // Retention keeps ten years, so the documentation's 2019 examples stay put.
    std::fs::write(
        d.join("logs.toml"),
        format!(
            "[listen]\naddr = \"127.0.0.1:0\"\n\
             [tls]\ncert = \"server.pem\"\nkey = \"server.key\"\nclient_ca = \"plane/ca.pem\"\n\
             [store]\npath = \"data/logs.db\"\nmax_age = \"3650d\"\n\
             [limits]\nmax_body_bytes = {MAX_BODY}\n"
        ),
    )
    .unwrap();
    let config = Config::load(&d.join("logs.toml")).unwrap();
    let (store, addr) = rampart_test_support::inprocess::start::<Logs, _>(config, |l| {
        l.https.local_addr().unwrap()
    });
    Some(Running {
        addr,
        _store: store,
        dir: d,
        files: AtomicUsize::new(0),
        _tmp: tmp,
    })
}

impl Running {
    /// curl with the client certificate, `args` before the URL of `path`.
    pub fn curl(&self, args: &[&str], path: &str) -> Reply {
        let d = &self.dir;
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                "-w",
                "\n%{http_code} %{content_type}",
            ])
            .arg("--cacert")
            .arg(d.join("plane/ca.pem"))
            .arg("--cert")
            .arg(d.join("gate.pem"))
            .arg("--key")
            .arg(d.join("gate.key"))
            .args(args)
            .arg(format!("https://{}{path}", self.addr))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl {args:?} {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, tail) = text.rsplit_once('\n').unwrap();
        let (code, content_type) = tail.split_once(' ').unwrap_or((tail, ""));
        Reply {
            status: code.parse().unwrap(),
            content_type: content_type.to_owned(),
            body: body.to_owned(),
        }
    }

    /// POSTs `body` (bytes, from a file, so binary and large bodies pass whole) to `path`
    /// with these headers.
    pub fn post(&self, path: &str, headers: &[&str], body: &[u8]) -> Reply {
        let n = self.files.fetch_add(1, Ordering::Relaxed);
        let file = self.dir.join(format!("body-{n}"));
        std::fs::write(&file, body).unwrap();
        let data = format!("@{}", file.display());
        let mut args: Vec<&str> = Vec::new();
        for h in headers {
            args.extend(["-H", h]);
        }
        args.extend(["--data-binary", &data]);
        let r = self.curl(&args, path);
        let _ = std::fs::remove_file(&file);
        r
    }

    /// A push as `Content-Type: application/json`.
    pub fn push_json(&self, body: &str) -> Reply {
        self.post(
            "/loki/api/v1/push",
            &["Content-Type: application/json"],
            body.as_bytes(),
        )
    }

    /// A push as Loki's clients send it: `Content-Type: application/x-protobuf`, the
    /// body snappy's block format, no Content-Encoding.
    pub fn push_proto(&self, snappy: &[u8]) -> Reply {
        self.post(
            "/loki/api/v1/push",
            &["Content-Type: application/x-protobuf"],
            snappy,
        )
    }

    /// `GET path` with `params` URL-encoded into the query string (curl's `-G
    /// --data-urlencode`, as the documentation's examples do).
    pub fn get(&self, path: &str, params: &[(&str, &str)]) -> Reply {
        let pairs: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["-G"];
        for p in &pairs {
            args.extend(["--data-urlencode", p]);
        }
        self.curl(&args, path)
    }
}

/// Snappy's block format, as Loki's clients compress a push.
pub fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

/// The store's clock now, in nanoseconds.
pub fn now_ns() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    )
    .unwrap()
}

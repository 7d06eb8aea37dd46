//! A real Prometheus for tests: the remote-write receiver on a free 127.0.0.1 port, no
//! scrape jobs, its data and log in a temporary directory, killed by PID when dropped.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{client::tool, eventually, Proc};

pub struct Prometheus {
    // Declared first so the process dies before its directory is removed.
    proc: Proc,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus, optionally with an out-of-order window
    /// (`storage.tsdb.out_of_order_time_window`, such as `"30m"`), and waits for
    /// `/-/ready`. `None` when it is not installed (outside CI; see [`tool`]).
    pub fn start(out_of_order_window: Option<&str>) -> Option<Self> {
        Self::start_with(out_of_order_window, None, ready)
    }

    /// [`Prometheus::start`] with `--web.config.file=web_config` (TLS, client
    /// certificates), ready when `is_ready(addr)` says so (the caller speaks TLS).
    pub fn start_tls(
        web_config: &std::path::Path,
        is_ready: impl Fn(SocketAddr) -> bool,
    ) -> Option<Self> {
        Self::start_with(None, Some(web_config), is_ready)
    }

    fn start_with(
        out_of_order_window: Option<&str>,
        web_config: Option<&std::path::Path>,
        is_ready: impl Fn(SocketAddr) -> bool,
    ) -> Option<Self> {
        let bin = tool("prometheus", Some("RAMPART_PROMETHEUS"))?;
        let dir = tempfile::tempdir().ok()?;
        let mut config = String::from("global:\n  evaluation_interval: 1m\n");
        if let Some(window) = out_of_order_window {
            config.push_str(&format!(
                "storage:\n  tsdb:\n    out_of_order_time_window: {window}\n"
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).ok()?;
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .ok()?;
        let log = std::fs::File::create(dir.path().join("prometheus.log")).ok()?;
        let mut cmd = Command::new(&bin);
        if let Some(web) = web_config {
            cmd.arg(format!("--web.config.file={}", web.display()));
        }
        let child = cmd
            .arg("--web.enable-remote-write-receiver")
            .arg(format!("--web.listen-address={addr}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--config.file={}", config_path.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().ok()?)
            .stderr(log)
            .spawn()
            .ok()?;
        let mut prom = Self {
            proc: Proc {
                child,
                name: "prometheus".into(),
            },
            addr,
            dir,
        };
        eventually("prometheus /-/ready", Duration::from_secs(60), || {
            if let Ok(Some(status)) = prom.proc.child.try_wait() {
                panic!("prometheus exited with {status}:\n{}", prom.log());
            }
            is_ready(prom.addr).then_some(())
        });
        Some(prom)
    }

    /// Its remote-write URL.
    pub fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

/// Whether `GET /-/ready` answers 200.
fn ready(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(
        s,
        "GET /-/ready HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}

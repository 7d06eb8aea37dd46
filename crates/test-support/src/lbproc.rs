//! The real `rampart lb` process: started from a config file, ready once it logs its
//! bound addresses, stopped by its own PID.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use crate::Proc;

/// A running `rampart lb`.
pub struct LbProcess {
    pub proc: Proc,
    pub https: SocketAddr,
    pub http: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub config: PathBuf,
    /// Everything the process wrote to stderr so far.
    pub log: Arc<Mutex<String>>,
}

fn field(line: &str, key: &str) -> Option<SocketAddr> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| v.parse().ok())
}

impl LbProcess {
    /// Starts `bin lb --config config` and waits (up to 20 s) for its ready line.
    #[allow(clippy::expect_used)]
    pub fn start(bin: &Path, config: &Path) -> Self {
        let mut cmd = Command::new(bin);
        cmd.args(["lb", "--config"]).arg(config);
        Self::start_command(cmd, config)
    }

    /// Starts `cmd` (which runs `rampart lb --config config`, perhaps through a wrapper
    /// such as `systemd-socket-activate`) and waits (up to 20 s) for its ready line.
    #[allow(clippy::expect_used)]
    pub fn start_command(mut cmd: Command, config: &Path) -> Self {
        let mut child = cmd
            .env("RAMPART_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rampart lb");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("load balancer ready") {
                        let _ = tx.send(line.clone());
                    }
                    if let Ok(mut l) = log.lock() {
                        l.push_str(&line);
                        l.push('\n');
                    }
                }
            });
        }
        let proc = Proc {
            child,
            name: "rampart lb".into(),
        };
        let Ok(ready) = rx.recv_timeout(Duration::from_secs(20)) else {
            let l = log.lock().map(|l| l.clone()).unwrap_or_default();
            panic!("rampart lb did not become ready; its log:\n{l}");
        };
        Self {
            proc,
            https: field(&ready, "https=").expect("https address in ready line"),
            http: field(&ready, "http="),
            admin: field(&ready, "admin="),
            config: config.to_owned(),
            log,
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

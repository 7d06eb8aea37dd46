//! What the WAF tests share: the real load balancer in-process on 127.0.0.1:0 with its
//! WAF configured by the test and its access log in a file, an in-process backend, raw
//! requests sent over real TLS connections, and the rule ids each request matched, read
//! back from the access log by the request id the response carries. Also where the CRS
//! releases are: `../shared/crs` (`RAMPART_SHARED` overrides) and Debian's
//! `modsecurity-crs`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rampart_lb::{Config, Lb, Listeners};
use rampart_telemetry::config::ConfigFile;
use rampart_test_support::client::Https;
use rampart_test_support::{eventually, spawn_backend, BackendHandle, Pki};

pub fn shared() -> PathBuf {
    std::env::var_os("RAMPART_SHARED").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
        PathBuf::from,
    )
}

/// Debian's CRS (the `modsecurity-crs` package, which `./run` installs), or `None` with a
/// visible note.
pub fn debian_crs() -> Option<()> {
    let ok = Path::new("/usr/share/modsecurity-crs/rules").is_dir()
        && Path::new("/etc/modsecurity/crs/crs-setup.conf").is_file();
    if !ok {
        eprintln!(
            "SKIPPED: Debian's CRS is absent (apt-get install modsecurity-crs; ./run installs it)"
        );
    }
    ok.then_some(())
}

/// A CRS release in `../shared/crs`, or `None` with a visible note.
pub fn shared_crs(version: &str) -> Option<PathBuf> {
    let dir = shared().join("crs").join(version);
    if !dir.join("rules").is_dir() {
        eprintln!(
            "SKIPPED: {} is absent (the CRS releases live in ../shared/crs)",
            dir.join("rules").display()
        );
        return None;
    }
    Some(dir)
}

/// One response: status, request id, and whether the connection carried it at all.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub request_id: String,
}

/// The load balancer with a WAF, on a runtime of its own; dropping it shuts down.
pub struct WafSite {
    pub pki: Pki,
    pub https: SocketAddr,
    pub log: PathBuf,
    pub lb: Arc<Lb>,
    _backend: BackendHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    rt: tokio::runtime::Runtime,
    client: Arc<rustls::ClientConfig>,
}

impl WafSite {
    /// Starts the load balancer with `waf` as the body of its `[waf]` table.
    pub fn start(waf: &str) -> WafSite {
        let pki = Pki::new(&[]);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let backend = rt.block_on(spawn_backend("app"));
        let log = pki.path("access.log");
        let text = format!(
            "[listen]\nhttps = \"127.0.0.1:0\"\nhttp = \"off\"\nadmin = \"off\"\n\
             [[tls.certificates]]\ncert = \"site.pem\"\nkey = \"site.key\"\n\
             [log]\naccess_log = \"{}\"\n[limits]\nrate_limit_per_second = 0\n\
             [health]\nenabled = false\n\
             [[backends]]\nname = \"app\"\naddress = \"{}\"\n[waf]\n{waf}\n",
            log.display(),
            backend.addr
        );
        let path = pki.path("lb.toml");
        std::fs::write(&path, text).unwrap();
        let config = match Config::load(&path) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let (lb, listeners) = rt.block_on(async {
            let listeners = Listeners::bind(&config).unwrap();
            match Lb::new(config) {
                Ok(lb) => (lb, listeners),
                Err(e) => panic!("{e}"),
            }
        });
        let https = listeners.https.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        {
            let lb = Arc::clone(&lb);
            rt.spawn(async move {
                let _ = lb
                    .serve(
                        listeners,
                        async {
                            let _ = rx.await;
                        },
                        move || {
                            let _ = ready_tx.send(());
                        },
                    )
                    .await;
            });
        }
        ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        let client = pki.client_config(&[b"http/1.1"]);
        WafSite {
            pki,
            https,
            log,
            lb,
            _backend: backend,
            stop: Some(tx),
            rt,
            client,
        }
    }

    /// Sends `raw` on a new TLS connection and reads one response; `None` when the
    /// load balancer closed without answering.
    pub fn send(&self, raw: &[u8], head: bool) -> Option<Answer> {
        let mut c = Https::connect(self.https, Arc::clone(&self.client), "www.foobar.com").ok()?;
        c.set_read_timeout(Duration::from_secs(20));
        c.send(raw).ok()?;
        let r = if head {
            c.head_response()
        } else {
            c.response()
        }
        .ok()?;
        Some(Answer {
            status: r.status,
            request_id: r.header("x-request-id").unwrap_or_default().to_owned(),
        })
    }

    /// Sends every request in `raws` (bytes, is HEAD) on `threads` client threads.
    pub fn send_all(&self, raws: &[(Vec<u8>, bool)], threads: usize) -> Vec<Option<Answer>> {
        let chunk = raws.len().div_ceil(threads.max(1)).max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> = raws
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .map(|(r, h)| self.send(r, *h))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        })
    }

    /// The access log's WAF evidence by request id, once the log names every request
    /// of `answers` (the writer flushes every 50 ms).
    pub fn matched(&self, answers: &[Option<Answer>]) -> HashMap<String, Vec<u64>> {
        let want: Vec<&str> = answers
            .iter()
            .flatten()
            .map(|a| a.request_id.as_str())
            .collect();
        eventually(
            "the access log has every request",
            Duration::from_secs(30),
            || {
                let mut out = HashMap::new();
                for v in self.lines() {
                    let id = v["request_id"].as_str().unwrap_or_default().to_owned();
                    let ids = v["waf"]["matches"]
                        .as_array()
                        .map(|m| m.iter().filter_map(|x| x["id"].as_u64()).collect())
                        .unwrap_or_default();
                    out.insert(id, ids);
                }
                want.iter().all(|w| out.contains_key(*w)).then_some(out)
            },
        )
    }

    /// The access log's lines as JSON.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The load balancer's metrics exposition.
    pub fn metrics(&self) -> String {
        self.lb.metrics().encode()
    }
}

impl Drop for WafSite {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

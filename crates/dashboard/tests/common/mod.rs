//! What the dashboard's integration tests share: a real Prometheus on 127.0.0.1 with the
//! remote-write receiver, seeded through `rampart_agent::remote_write` with the series
//! of issue 5's metric contract; the dashboard in-process (restartable on the same state
//! directory); and a small HTTPS client that logs in and speaks to it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rampart_agent::remote_write::{self, Client, WriteRequest};
use rampart_agent::{Family, Kind, Sample};
use rampart_dashboard::server::Stats;
use rampart_dashboard::{Config, Dashboard, Listeners};
use rampart_test_support::client::{Https, Resp};
use rampart_test_support::Pki;

/// An address on 127.0.0.1 that nothing listens on (just released by the kernel).
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A blocking HTTP/1.0 GET over plain TCP: `(status, body)`.
pub fn plain_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut sock = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(sock, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut resp = Vec::new();
    sock.read_to_end(&mut resp).ok()?;
    let resp = String::from_utf8_lossy(&resp);
    let (head, body) = resp.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// The shared real Prometheus ([`rampart_test_support::prometheus`]) with this file's
/// queries.
pub struct Prometheus {
    inner: rampart_test_support::prometheus::Prometheus,
    pub addr: SocketAddr,
}

impl Prometheus {
    /// Prometheus with a 30-minute out-of-order window (the seeded samples are up to ten
    /// minutes old); `None` when it is not installed (outside CI).
    pub fn start() -> Option<Self> {
        let inner = rampart_test_support::prometheus::Prometheus::start(Some("30m"))?;
        Some(Self {
            addr: inner.addr,
            inner,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        self.inner.log()
    }

    /// Pushes `families` as one sample each at `ts` (ms).
    pub fn push(&self, families: &[Family], ts: i64) {
        let req = WriteRequest {
            timeseries: remote_write::series(families, &[], ts),
            metadata: vec![],
        };
        let body = Bytes::from(remote_write::encode(&req).unwrap());
        let url: http::Uri = format!("http://{}/api/v1/write", self.addr)
            .parse()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(remote_write::push(&Client::default(), &url, body))
            .unwrap_or_else(|e| panic!("push: {e}\n{}", self.log()));
    }

    /// Pushes ten minutes of every series the dashboard charts, one round every 15 s
    /// ending now: web servers at about 25 and 24 req/s, 1% errors, p50 4 ms and p99
    /// 50 ms, lb1 with web1 up and web2 down, CPU about 30% busy, memory 40% used, disk
    /// 55% used, database queries on db1 and db2, db2 replicating 2 s behind.
    pub fn seed(&self) {
        let hosts = ["lb1", "web1", "web2", "db1", "db2", "monitor"];
        let end = now_ms();
        let rounds = 40;
        for i in 0..rounds {
            let ts = end - (rounds - 1 - i) * 15_000;
            let wave = (i as f64 / 4.0).sin();
            let web1 = 25.0 + 2.0 * wave;
            let web2 = 24.0 - 2.0 * wave;
            let mut f = vec![
                fam(
                    "job:web_requests:rate1m",
                    &[(&[("job", "web")], web1 + web2)],
                ),
                fam(
                    "instance:web_requests:rate1m",
                    &[
                        (&[("instance", "web1"), ("job", "web")], web1),
                        (&[("instance", "web2"), ("job", "web")], web2),
                    ],
                ),
                fam("job:lb_requests:rate1m", &[(&[("job", "lb")], web1 + web2)]),
                fam(
                    "job:web_errors:ratio_rate1m",
                    &[(&[("job", "web")], 0.01 + 0.005 * wave)],
                ),
                fam(
                    "job:web_request_duration_seconds:p50_rate1m",
                    &[(&[("job", "web")], 0.004)],
                ),
                fam(
                    "job:web_request_duration_seconds:p99_rate1m",
                    &[(&[("job", "web")], 0.05 + 0.01 * wave)],
                ),
                fam(
                    "instance:mysql_questions:rate1m",
                    &[
                        (&[("instance", "db1"), ("job", "mysql")], 40.0 + 5.0 * wave),
                        (&[("instance", "db2"), ("job", "mysql")], 30.0 - 5.0 * wave),
                    ],
                ),
                fam(
                    "rampart_lb_backend_up",
                    &[
                        (
                            &[("instance", "lb1"), ("job", "lb"), ("backend", "web1")],
                            1.0,
                        ),
                        (
                            &[("instance", "lb1"), ("job", "lb"), ("backend", "web2")],
                            0.0,
                        ),
                    ],
                ),
                fam(
                    "mysql_up",
                    &[
                        (&[("instance", "db1"), ("job", "mysql")], 1.0),
                        (&[("instance", "db2"), ("job", "mysql")], 1.0),
                    ],
                ),
                fam(
                    "mysql_slave_status_slave_io_running",
                    &[(&[("instance", "db2"), ("job", "mysql")], 1.0)],
                ),
                fam(
                    "mysql_slave_status_slave_sql_running",
                    &[(&[("instance", "db2"), ("job", "mysql")], 1.0)],
                ),
                fam(
                    "mysql_slave_status_seconds_behind_master",
                    &[(&[("instance", "db2"), ("job", "mysql")], 2.0)],
                ),
            ];
            for (h, host) in hosts.iter().enumerate() {
                let busy = 0.2 + 0.05 * h as f64;
                let t = i as f64 * 15.0;
                let labels = |cpu: &'static str, mode: &'static str| {
                    vec![
                        ("instance".to_owned(), (*host).to_owned()),
                        ("job".to_owned(), "node".to_owned()),
                        ("cpu".to_owned(), cpu.to_owned()),
                        ("mode".to_owned(), mode.to_owned()),
                    ]
                };
                let one = |name: &str, labels: Vec<(String, String)>, value: f64| Family {
                    name: name.into(),
                    help: String::new(),
                    kind: Kind::Gauge,
                    samples: vec![Sample {
                        labels,
                        value,
                        suffix: "",
                    }],
                };
                let host_labels = || {
                    vec![
                        ("instance".to_owned(), (*host).to_owned()),
                        ("job".to_owned(), "node".to_owned()),
                    ]
                };
                let fs_labels = || {
                    let mut l = host_labels();
                    l.push(("mountpoint".to_owned(), "/".to_owned()));
                    l.push(("device".to_owned(), "/dev/vda1".to_owned()));
                    l.push(("fstype".to_owned(), "ext4".to_owned()));
                    l
                };
                f.push(one(
                    "node_cpu_seconds_total",
                    labels("0", "idle"),
                    1000.0 + t * (1.0 - busy),
                ));
                f.push(one(
                    "node_cpu_seconds_total",
                    labels("1", "idle"),
                    1000.0 + t * (1.0 - busy),
                ));
                f.push(one(
                    "node_cpu_seconds_total",
                    labels("0", "user"),
                    500.0 + t * busy,
                ));
                f.push(one(
                    "node_memory_MemTotal_bytes",
                    host_labels(),
                    4.0 * 1024.0 * 1024.0 * 1024.0,
                ));
                f.push(one(
                    "node_memory_MemAvailable_bytes",
                    host_labels(),
                    (0.6 - 0.02 * h as f64) * 4.0 * 1024.0 * 1024.0 * 1024.0,
                ));
                f.push(one("node_filesystem_size_bytes", fs_labels(), 100e9));
                f.push(one(
                    "node_filesystem_avail_bytes",
                    fs_labels(),
                    45e9 - 1e6 * i as f64,
                ));
            }
            self.push(&f, ts);
        }
    }
}

fn fam(name: &str, samples: &[(&[(&str, &str)], f64)]) -> Family {
    Family {
        name: name.into(),
        help: String::new(),
        kind: Kind::Gauge,
        samples: samples
            .iter()
            .map(|(labels, value)| Sample {
                labels: labels
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                    .collect(),
                value: *value,
                suffix: "",
            })
            .collect(),
    }
}

/// The CA, and a certificate for 127.0.0.1 (an IP subjectAltName) and `dashboard.test`.
pub struct Certs {
    pub pki: Pki,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    pub fn new() -> Certs {
        let pki = Pki::new(&[]);
        let ca = rampart_tls::pki::Ca::load(pki.dir.path()).unwrap();
        let issued = ca
            .issue(
                pki.dir.path(),
                "dashboard",
                &["127.0.0.1".into(), "dashboard.test".into()],
                false,
            )
            .unwrap();
        Certs {
            pki,
            cert: issued.cert,
            key: issued.key,
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.pki.path("ca.pem")
    }

    pub fn client(&self) -> Arc<rustls::ClientConfig> {
        self.pki.client_config(&[b"http/1.1"])
    }
}

/// The dashboard running in-process on its own runtime thread; stopped (drained) on drop.
pub struct Server {
    pub addr: SocketAddr,
    /// The internal metrics listener, when the config has one.
    pub metrics: Option<SocketAddr>,
    pub stats: Arc<Stats>,
    pub config: Config,
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

/// Writes `dir/dashboard.toml` (listening on 127.0.0.1:0, with `certs` and
/// `prometheus`, plus `extra` TOML lines appended to sections as given) and returns its
/// path.
pub fn write_config(dir: &Path, certs: &Certs, prometheus: &str, extra: &str) -> PathBuf {
    let text = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n[prometheus]\nurl = \"{prometheus}\"\ntimeout = \"5s\"\n{extra}\n",
        certs.cert.display(),
        certs.key.display()
    );
    let path = dir.join("dashboard.toml");
    std::fs::write(&path, text).unwrap();
    path
}

impl Server {
    /// Starts the dashboard of config file `path` (its `listen.addr` should be port 0).
    pub fn start(path: &Path) -> Server {
        let config = rampart_dashboard::check(path).unwrap_or_else(|e| panic!("{e}"));
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let run_config = config.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listeners = Listeners::bind(&run_config).unwrap();
                let addr = listeners.https.local_addr().unwrap();
                let metrics = listeners.metrics.as_ref().map(|l| l.local_addr().unwrap());
                let dashboard = Dashboard::new(run_config).unwrap();
                let stats = dashboard.stats();
                dashboard
                    .serve(
                        listeners,
                        async {
                            let _ = stop_rx.await;
                        },
                        move || tx.send((addr, metrics, stats)).unwrap(),
                    )
                    .await
                    .unwrap();
            });
        });
        let (addr, metrics, stats) = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        Server {
            addr,
            metrics,
            stats,
            config,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn password(&self) -> String {
        std::fs::read_to_string(&self.config.auth.password_file)
            .unwrap()
            .trim()
            .to_owned()
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(&self.config.alerts.webhook_token_file)
            .unwrap()
            .trim()
            .to_owned()
    }
}

/// One request over a fresh TLS connection (SNI/verification for 127.0.0.1).
pub fn request(
    addr: SocketAddr,
    certs: &Certs,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut c = Https::connect(addr, certs.client(), "127.0.0.1").unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    c.send(&bytes).unwrap();
    if method == "HEAD" {
        c.head_response().unwrap()
    } else {
        c.response().unwrap()
    }
}

/// `Cookie: <session>` header value from a login response's `Set-Cookie`.
pub fn session_cookie(resp: &Resp) -> String {
    let set = resp.header("set-cookie").expect("set-cookie");
    set.split(';').next().unwrap().to_owned()
}

/// Logs in with the form and returns the `Cookie` header value.
pub fn login(server: &Server, certs: &Certs) -> String {
    let form = format!("user=admin&password={}", server.password());
    let r = request(
        server.addr,
        certs,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    session_cookie(&r)
}

/// `GET path` with the session cookie.
pub fn get(server: &Server, certs: &Certs, cookie: &str, path: &str) -> Resp {
    request(server.addr, certs, "GET", path, &[("Cookie", cookie)], b"")
}

/// Posts an Alertmanager webhook body with the right token.
pub fn post_webhook(server: &Server, certs: &Certs, body: &str) -> Resp {
    let auth = format!("Bearer {}", server.token());
    request(
        server.addr,
        certs,
        "POST",
        "/api/alerts",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
}

/// An Alertmanager webhook body (version 4) with one alert.
pub fn webhook_body(status: &str, fingerprint: &str, name: &str, ends_at: &str) -> String {
    format!(
        r#"{{"version":"4","groupKey":"{{}}:{{alertname=\"{name}\"}}","truncatedAlerts":0,"status":"{status}",
            "receiver":"dashboard","groupLabels":{{"alertname":"{name}"}},"commonLabels":{{}},
            "commonAnnotations":{{}},"externalURL":"http://127.0.0.1:9093",
            "alerts":[{{"status":"{status}","labels":{{"alertname":"{name}","severity":"critical","instance":"lb1"}},
            "annotations":{{"summary":"web2 is out of rotation"}},"startsAt":"2024-05-01T12:00:00Z",
            "endsAt":"{ends_at}","generatorURL":"http://127.0.0.1:9090/graph","fingerprint":"{fingerprint}"}}]}}"#
    )
}

/// The `<section>` of panel `id` in a dashboard page.
pub fn panel<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<section class=\"panel\" id=\"panel-{id}\">"))
        .or_else(|| html.find(&format!("<section class=\"panel wide\" id=\"panel-{id}\">")))
        .unwrap_or_else(|| panic!("panel {id} missing"));
    let len = html[start..].find("</section>").unwrap();
    &html[start..start + len]
}

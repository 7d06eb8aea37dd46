//! The load balancer in-process on 127.0.0.1:0 with in-process backends: balancing
//! policies, retries, 503, the connection cap and the source allow-lists, driven by a
//! real TLS client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rampart_lb::{Config, Lb, Listeners};
use rampart_telemetry::config::ConfigFile;
use rampart_test_support::client::Https;
use rampart_test_support::{spawn_backend, BackendHandle, Pki};

/// A load balancer and its backends on a runtime of their own; dropping it shuts down.
struct InProc {
    pki: Pki,
    https: SocketAddr,
    http: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    lb: Arc<Lb>,
    _backends: Vec<BackendHandle>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    rt: tokio::runtime::Runtime,
}

impl InProc {
    /// `backends` are names of live backends or `"dead"` for an address that refuses.
    fn start(backends: &[(&str, u32)], extra: &str) -> InProc {
        InProc::start_listening(
            "https = \"127.0.0.1:0\"\nhttp = \"off\"\nadmin = \"off\"\n",
            backends,
            extra,
        )
    }

    /// As `start`, with `listen` as the body of the `[listen]` table.
    fn start_listening(listen: &str, backends: &[(&str, u32)], extra: &str) -> InProc {
        let pki = Pki::new(&[]);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut handles = Vec::new();
        let mut text = format!(
            "[listen]\n{listen}[[tls.certificates]]\ncert = \"site.pem\"\nkey = \"site.key\"\n\
             [balance]\nserved_by_header = \"X-Served-By\"\n[log]\naccess_log = \"off\"\n",
        );
        for (i, (name, weight)) in backends.iter().enumerate() {
            let addr = if *name == "dead" {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap() // closed when `l` drops: connections are refused
            } else {
                let h = rt.block_on(spawn_backend(name));
                let a = h.addr;
                handles.push(h);
                a
            };
            text.push_str(&format!(
                "[[backends]]\nname = \"{name}{i}\"\naddress = \"{addr}\"\nweight = {weight}\n"
            ));
        }
        text.push_str(extra);
        let path = pki.path("lb.toml");
        std::fs::write(&path, text).unwrap();
        let config = Config::load(&path).unwrap();
        let (lb, listeners) = rt.block_on(async {
            let listeners = Listeners::bind(&config).unwrap();
            (Lb::new(config).unwrap(), listeners)
        });
        let https = listeners.https.local_addr().unwrap();
        let http = listeners.http.as_ref().map(|l| l.local_addr().unwrap());
        let admin = listeners.admin.as_ref().map(|l| l.local_addr().unwrap());
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
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        InProc {
            pki,
            https,
            http,
            admin,
            lb,
            _backends: handles,
            stop: Some(tx),
            rt,
        }
    }

    fn client(&self) -> Https {
        Https::connect(
            self.https,
            self.pki.client_config(&[b"http/1.1"]),
            "www.foobar.com",
        )
        .unwrap()
    }

    fn served_by(&self, n: usize) -> String {
        let mut c = self.client();
        (0..n)
            .map(|_| {
                let r = c.get("/").unwrap();
                assert_eq!(r.status, 200, "{r:?}");
                r.header("x-served-by").unwrap().to_owned()
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Drop for InProc {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = &self.rt;
    }
}

const NO_RATE_LIMIT: &str = "[limits]\nrate_limit_per_second = 0\n";

#[test]
fn weighted_round_robin_follows_the_weights() {
    let lb = InProc::start(&[("a", 3), ("b", 1)], NO_RATE_LIMIT);
    // Switching the policy by reload also shows reload works in-process.
    std::fs::write(
        lb.pki.path("lb.toml"),
        std::fs::read_to_string(lb.pki.path("lb.toml"))
            .unwrap()
            .replace(
                "served_by_header = \"X-Served-By\"",
                "served_by_header = \"X-Served-By\"\npolicy = \"weighted_round_robin\"",
            ),
    )
    .unwrap();
    lb.rt.block_on(lb.lb.reload()).unwrap();
    assert_eq!(lb.served_by(8), "a0 a0 b1 a0 a0 a0 b1 a0");
}

#[test]
fn round_robin_skips_a_dead_backend_and_retries_a_post_whose_connection_failed() {
    let lb = InProc::start(&[("dead", 1), ("live", 1)], NO_RATE_LIMIT);
    let mut c = lb.client();
    for i in 0..4 {
        c.send(
            b"POST /echo-len HTTP/1.1\r\nHost: www.foobar.com\r\nContent-Length: 5\r\n\r\nhello",
        )
        .unwrap();
        let r = c.response().unwrap();
        assert_eq!((r.status, r.text().trim()), (200, "5"), "POST {i}: {r:?}");
        assert_eq!(r.header("x-served-by"), Some("live1"));
    }
    let m = lb.lb.metrics().encode();
    assert!(
        m.contains("rampart_lb_retries_total{backend=\"dead0\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("rampart_lb_backend_up{backend=\"dead0\"} 0"),
        "{m}"
    );
}

#[test]
fn no_healthy_backend_answers_503() {
    let lb = InProc::start(&[("dead", 1), ("dead", 1)], NO_RATE_LIMIT);
    let mut c = lb.client();
    let r = c.get("/").unwrap();
    assert_eq!(
        r.status, 502,
        "both failed during the request itself: {r:?}"
    );
    let r = c.get("/").unwrap();
    assert_eq!(r.status, 503, "both ejected: {r:?}");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        r.header("strict-transport-security").is_some(),
        "errors carry HSTS too"
    );
}

#[test]
fn beyond_max_connections_new_connections_are_closed_at_once() {
    let lb = InProc::start(
        &[("a", 1)],
        "[limits]\nrate_limit_per_second = 0\nmax_connections = 2\n",
    );
    let mut first = lb.client();
    let mut second = lb.client();
    assert!(
        Https::connect(
            lb.https,
            lb.pki.client_config(&[b"http/1.1"]),
            "www.foobar.com"
        )
        .is_err(),
        "a third connection got a TLS session"
    );
    assert_eq!(first.get("/").unwrap().status, 200);
    assert_eq!(second.get("/").unwrap().status, 200);
    drop(first);
    rampart_test_support::eventually("a slot to free up", Duration::from_secs(5), || {
        let mut c = Https::connect(
            lb.https,
            lb.pki.client_config(&[b"http/1.1"]),
            "www.foobar.com",
        )
        .ok()?;
        c.get("/").ok().filter(|r| r.status == 200)
    });
    let m = lb.lb.metrics().encode();
    assert!(
        !m.contains(
            "rampart_lb_connections_rejected_total{listener=\"https\",reason=\"max_connections\"} 0"
        ) && m.contains(
            "rampart_lb_connections_rejected_total{listener=\"https\",reason=\"max_connections\"}"
        ),
        "{m}"
    );
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let lb = InProc::start(
        &[("a", 1)],
        "[limits]\nrate_limit_per_second = 0\nidle_timeout = \"300ms\"\n",
    );
    let mut c = lb.client();
    assert_eq!(c.get("/").unwrap().status, 200);
    c.set_read_timeout(Duration::from_secs(5));
    let start = std::time::Instant::now();
    assert!(c.is_closed(), "the idle connection stayed open");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn backend_connections_are_pooled_and_responses_of_every_framing_pass_through() {
    // No active checks here: they would share the pool with the requests under test.
    let lb = InProc::start(
        &[("a", 1)],
        &format!("{NO_RATE_LIMIT}[health]\nenabled = false\n"),
    );
    let mut c = lb.client();
    // Sequential requests reuse one backend connection.
    let conns: Vec<String> = (0..5)
        .map(|_| c.get("/").unwrap().header("x-conn").unwrap().to_owned())
        .collect();
    assert!(conns.iter().all(|x| x == &conns[0]), "{conns:?}");

    // A chunked backend response reaches an HTTP/1.1 client whole (re-chunked).
    let r = c.get("/chunked").unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "a chunked body\n"),
        "{r:?}"
    );
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    // HEAD gets the length but no body, and the connection stays usable.
    c.send(b"HEAD / HTTP/1.1\r\nHost: www.foobar.com\r\n\r\n")
        .unwrap();
    let r = c.head_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some("2"),
        "the length of \"a\\n\""
    );
    // The backend closing after a response is not an error; the next request opens a
    // new backend connection.
    let first = c.get("/close").unwrap();
    assert_eq!(first.status, 200);
    let after = c.get("/").unwrap();
    assert_eq!(after.status, 200);
    assert_ne!(first.header("x-conn"), after.header("x-conn"));
    assert_eq!(c.get("/status/404").unwrap().status, 404);
    // HTTP/1.0 clients get a close-delimited body instead of chunks.
    let mut old = lb.client();
    old.send(b"GET /chunked HTTP/1.0\r\nHost: www.foobar.com\r\n\r\n")
        .unwrap();
    let r = old.response().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "a chunked body\n"));
    assert_eq!(r.header("connection"), Some("close"));
}

#[test]
fn an_http2_connection_that_never_completes_a_request_is_closed_after_header_timeout() {
    let lb = InProc::start(
        &[("a", 1)],
        "[limits]\nrate_limit_per_second = 0\nheader_timeout = \"1s\"\n",
    );
    let mut c = Https::connect(lb.https, lb.pki.client_config(&[b"h2"]), "www.foobar.com").unwrap();
    // The preface, an empty SETTINGS frame, and the start of a HEADERS frame that never ends.
    c.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x40\x01\x04\x00\x00\x00\x01")
        .unwrap();
    c.set_read_timeout(Duration::from_millis(500));
    let start = std::time::Instant::now();
    while !c.is_closed() {
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "the stalled HTTP/2 connection stayed open"
        );
    }
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "closed before header_timeout"
    );
}

/// Sends a plain HTTP/1.1 GET to `addr` and returns what came back before the server
/// closed the connection (empty when it closed without a word).
fn plain_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The write may fail if the server has already closed: that is an answer too.
    let _ = s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: www.foobar.com\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn admin_request(addr: SocketAddr, method: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(
        format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The operator drains a backend through the admin listener: it gets no new request
/// until put back, the state survives a reload, and bad requests are refused.
#[test]
fn admin_drain_takes_a_backend_out_of_rotation_until_undrained() {
    let listen = "https = \"127.0.0.1:0\"\nhttp = \"off\"\nadmin = \"127.0.0.1:0\"\n";
    let lb = InProc::start_listening(listen, &[("a", 1), ("b", 1)], NO_RATE_LIMIT);
    let admin = lb.admin.unwrap();
    assert_eq!(lb.served_by(4), "a0 b1 a0 b1");
    let r = admin_request(admin, "POST", "/-/drain?backend=a0");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let body = r.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["backends"][0]["name"], "a0");
    assert_eq!(v["backends"][0]["drained"], true);
    assert_eq!(v["backends"][0]["up"], true);
    assert_eq!(v["backends"][1]["drained"], false);
    assert_eq!(lb.served_by(4), "b1 b1 b1 b1");
    assert_eq!(
        metric_line(&lb, "rampart_lb_backend_drained{backend=\"a0\"}"),
        "rampart_lb_backend_drained{backend=\"a0\"} 1"
    );
    // A reload keeps the operator's drain.
    lb.rt.block_on(lb.lb.reload()).unwrap();
    assert_eq!(lb.served_by(2), "b1 b1");
    let r = admin_request(admin, "GET", "/-/backends");
    assert!(r.contains("\"drained\":true"), "{r}");
    let r = admin_request(admin, "POST", "/-/undrain?backend=a0");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let both = lb.served_by(4);
    assert!(both.contains("a0") && both.contains("b1"), "{both}");
    for (method, path, status) in [
        ("POST", "/-/drain", "400"),
        ("POST", "/-/drain?backend=nope", "404"),
        ("GET", "/-/drain?backend=a0", "404"),
    ] {
        let r = admin_request(admin, method, path);
        assert!(
            r.starts_with(&format!("HTTP/1.1 {status}")),
            "{method} {path}: {r}"
        );
    }
}

fn metric_line(lb: &InProc, series: &str) -> String {
    let m = lb.lb.metrics().encode();
    m.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{m}"))
        .to_owned()
}

#[test]
fn a_client_outside_allow_from_is_closed_at_accept_until_a_reload_lets_it_in() {
    // Every connection from this test leaves from 127.0.0.1.
    let listen = "https = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
                  allow_from = [\"127.0.0.2\"]\nadmin_allow_from = [\"127.0.0.2/32\"]\n";
    let lb = InProc::start_listening(listen, &[("a", 1)], NO_RATE_LIMIT);
    let https = "rampart_lb_connections_rejected_total{listener=\"https\",reason=\"not_allowed\"}";
    let http = "rampart_lb_connections_rejected_total{listener=\"http\",reason=\"not_allowed\"}";
    let admin = "rampart_lb_connections_rejected_total{listener=\"admin\",reason=\"not_allowed\"}";

    assert!(
        Https::connect(
            lb.https,
            lb.pki.client_config(&[b"http/1.1"]),
            "www.foobar.com"
        )
        .is_err(),
        "a client outside allow_from got a TLS session"
    );
    assert_eq!(plain_get(lb.http.unwrap(), "/"), "", "http answered");
    assert_eq!(
        plain_get(lb.admin.unwrap(), "/-/healthy"),
        "",
        "admin answered"
    );
    assert_eq!(metric_line(&lb, https), format!("{https} 1"));
    assert_eq!(metric_line(&lb, http), format!("{http} 1"));
    assert_eq!(metric_line(&lb, admin), format!("{admin} 1"));
    // Refused connections never became open ones.
    assert_eq!(
        metric_line(&lb, "rampart_lb_connections_active{listener=\"https\"}"),
        "rampart_lb_connections_active{listener=\"https\"} 0"
    );

    // The allow-lists are part of the config generation: a reload applies them to the
    // next connection.
    let path = lb.pki.path("lb.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("[\"127.0.0.2\"]", "[\"127.0.0.1\"]")
            .replace("[\"127.0.0.2/32\"]", "[\"198.18.0.0/15\", \"127.0.0.0/8\"]"),
    )
    .unwrap();
    lb.rt.block_on(lb.lb.reload()).unwrap();
    assert_eq!(lb.served_by(2), "a0 a0");
    let redirect = plain_get(lb.http.unwrap(), "/");
    assert!(redirect.starts_with("HTTP/1.1 308"), "{redirect}");
    let healthy = plain_get(lb.admin.unwrap(), "/-/healthy");
    assert!(healthy.starts_with("HTTP/1.1 200"), "{healthy}");
    assert_eq!(metric_line(&lb, https), format!("{https} 1"));
    assert_eq!(metric_line(&lb, admin), format!("{admin} 1"));

    // And back: the next connection is refused again.
    std::fs::write(&path, text).unwrap();
    lb.rt.block_on(lb.lb.reload()).unwrap();
    assert_eq!(plain_get(lb.http.unwrap(), "/"), "", "http answered");
    assert_eq!(metric_line(&lb, http), format!("{http} 2"));
}

#[test]
fn an_empty_allow_from_lets_anyone_in() {
    let lb = InProc::start_listening(
        "https = \"127.0.0.1:0\"\nhttp = \"off\"\nadmin = \"off\"\nallow_from = []\n",
        &[("a", 1)],
        NO_RATE_LIMIT,
    );
    assert_eq!(lb.served_by(2), "a0 a0");
    let https = "rampart_lb_connections_rejected_total{listener=\"https\",reason=\"not_allowed\"}";
    assert_eq!(metric_line(&lb, https), format!("{https} 0"));
}

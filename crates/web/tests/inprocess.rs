//! The web server in-process on 127.0.0.1:0, driven over raw sockets: limits, the
//! allow-list, the connection cap, security headers, health endpoints, and a database
//! that is down (a clear 503 while the server stays up). The database-backed paths are
//! covered end to end with real MariaDB in `crates/rampart/tests/stack.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rampart_telemetry::config::ConfigFile;
use rampart_web::{Config, Listeners, Web};

struct Server {
    app: SocketAddr,
    admin: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
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

/// Starts a web server with `extra` appended to a config that serves the default site.
fn start(extra: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.pw"), "secret\n").unwrap();
    let text = format!(
        "name = \"t1\"\n[listen]\napp = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n{extra}\n\
         [site]\nroot = \"site\"\ninstall_default = true\n[log]\naccess_log = \"off\"\n"
    );
    let path = dir.path().join("web.toml");
    std::fs::write(&path, &text).unwrap();
    let config = Config::load(&path).unwrap();
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
            let web = Web::new(config).unwrap();
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
        _dir: dir,
    }
}

/// Sends raw bytes and reads until the server closes or 5 s pass.
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn get(addr: SocketAddr, path: &str) -> String {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

fn status(resp: &str) -> u16 {
    resp.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Whether the server closes the connection (EOF) within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + within;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
        if Instant::now() > end {
            return false;
        }
    }
}

#[test]
fn static_site_and_security_headers_on_every_response() {
    let s = start("");
    for (path, code) in [("/site.css", 200), ("/nope.css", 404), ("/%2e%2e/x", 400)] {
        let r = get(s.app, path);
        assert_eq!(status(&r), code, "{path}: {r}");
        let lower = r.to_ascii_lowercase();
        for h in [
            "content-security-policy: default-src 'self'",
            "frame-ancestors 'none'",
            "x-content-type-options: nosniff",
            "x-frame-options: deny",
            "referrer-policy: no-referrer",
        ] {
            assert!(lower.contains(h), "{path}: {h} missing in {r}");
        }
    }
    // Without a database the server is ready at once; health answers on both listeners.
    assert_eq!(status(&get(s.app, "/readyz")), 200);
    assert_eq!(status(&get(s.admin, "/healthz")), 200);
    let metrics = get(s.admin, "/metrics");
    assert!(
        metrics
            .contains("rampart_web_requests_total{route=\"static\",method=\"GET\",code=\"2xx\"} 1"),
        "{metrics}"
    );
}

#[test]
fn oversized_head_gets_431_and_the_server_stays_up() {
    let s = start("[limits]\nmax_header_bytes = 8192");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let r = exchange(s.app, big.as_bytes());
    assert_eq!(status(&r), 431, "{r}");
    assert_eq!(status(&get(s.app, "/site.css")), 200);
}

#[test]
fn slow_head_is_cut_off_after_header_timeout() {
    let s = start("[limits]\nheader_timeout = \"500ms\"");
    let mut c = TcpStream::connect(s.app).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
    // Well before the 10 s default, so the configured timeout is what closed it.
    assert!(closed_within(&mut c, Duration::from_secs(5)));
    assert_eq!(status(&get(s.app, "/site.css")), 200);
}

#[test]
fn allow_list_refuses_other_sources() {
    let s = start("allow_from = [\"192.0.2.1\"]");
    let mut c = TcpStream::connect(s.app).unwrap();
    c.write_all(b"GET /site.css HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(5)));
    let metrics = get(s.admin, "/metrics");
    assert!(
        metrics.contains("rampart_web_connections_rejected_total{reason=\"not_allowed\"} 1"),
        "{metrics}"
    );
}

#[test]
fn admin_allow_list_refuses_other_sources_and_admits_listed_ones() {
    let s = start("admin_allow_from = [\"192.0.2.1\"]");
    let mut c = TcpStream::connect(s.admin).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(5)));
    // The app listener is not affected.
    assert_eq!(status(&get(s.app, "/site.css")), 200);
    let s = start("admin_allow_from = [\"127.0.0.0/8\"]");
    let metrics = get(s.admin, "/metrics");
    assert_eq!(status(&metrics), 200, "{metrics}");
}

#[test]
fn connections_over_the_cap_are_closed_at_once() {
    let s = start("[limits]\nmax_connections = 1");
    let mut first = TcpStream::connect(s.app).unwrap();
    first
        .write_all(b"GET /site.css HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 256];
    assert!(first.read(&mut buf).unwrap() > 0);
    let mut second = TcpStream::connect(s.app).unwrap();
    assert!(closed_within(&mut second, Duration::from_secs(5)));
    drop(first);
}

/// A database that is not there: `/healthz` stays 200, `/readyz` is 503, the API answers
/// 503 with a JSON error, and input errors are still reported before any database work.
#[test]
fn database_down_gives_clear_errors_and_the_server_stays_up() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let s = start(&format!(
        "[database]\nprimary = \"127.0.0.1:{port}\"\npassword_file = \"app.pw\"\n\
         connect_timeout = \"200ms\"\n[limits]\nmax_body_bytes = 1024"
    ));
    assert_eq!(status(&get(s.app, "/healthz")), 200);
    assert_eq!(status(&get(s.app, "/readyz")), 503);
    let r = get(s.app, "/api/users/1");
    assert_eq!(status(&r), 503, "{r}");
    assert!(r.contains("\"error\":\"database_unavailable\""), "{r}");
    let post = |body: &str, ct: &str| {
        exchange(
            s.app,
            format!(
                "POST /api/users HTTP/1.1\r\nHost: t\r\nContent-Type: {ct}\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
    };
    assert_eq!(status(&post("{}", "text/plain")), 415);
    assert_eq!(status(&post(&"x".repeat(2000), "application/json")), 413);
    let r = post(r#"{"name":"a","email":"nope"}"#, "application/json");
    assert_eq!(status(&r), 422, "{r}");
    assert!(r.contains("\"field\":\"email\""), "{r}");
    // Home page without the database: 200 with a note, not an error page.
    let home = get(s.app, "/");
    assert_eq!(status(&home), 200);
    assert!(home.contains("database is not reachable"), "{home}");
    assert_eq!(status(&get(s.app, "/site.css")), 200);
}

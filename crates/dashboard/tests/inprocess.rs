//! The dashboard in-process on 127.0.0.1:0 against a real Prometheus seeded through
//! remote write: the login (redirects, wrong and right passwords, the cookie's flags,
//! the failed-login limit), charts with data, the tables, the webhook (token, firing,
//! resolved, malformed bodies), state kept across a restart; and without Prometheus: a
//! page that says it is down, the allow-list, the connection cap and the header deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use rampart_test_support::client::Https;
use rampart_test_support::eventually;

fn has_security_headers(r: &rampart_test_support::client::Resp, what: &str) {
    for (k, v) in [
        (
            "content-security-policy",
            "default-src 'none'; style-src 'sha256-",
        ),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("strict-transport-security", "max-age="),
        ("cache-control", "no-store"),
    ] {
        let got = r.header(k).unwrap_or("");
        assert!(got.starts_with(v), "{what}: {k}: {got:?}");
    }
}

#[test]
fn login_charts_webhook_and_restart() {
    let Some(prom) = Prometheus::start() else {
        return;
    };
    prom.seed();
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = write_config(
        dir.path(),
        &certs,
        &prom.url(),
        &format!(
            "[listen]\naddr = \"127.0.0.1:0\"\n[auth]\npassword_file = \"{0}/dashboard.password\"\nmax_failures = 3\n\
             [alerts]\nwebhook_token_file = \"{0}/webhook.token\"\nstate_file = \"{0}/alerts.json\"\nmax_body_bytes = 4096\n",
            state.display()
        ),
    );
    let server = Server::start(&config);
    let addr = server.addr;

    // The secrets were generated 0600 in a 0700 directory.
    use std::os::unix::fs::PermissionsExt;
    for f in ["dashboard.password", "webhook.token"] {
        let mode = std::fs::metadata(state.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);

    // Without a session: GETs go to the login page, other methods get 401.
    for path in ["/", "/api/alerts", "/nonexistent"] {
        let r = request(addr, &certs, "GET", path, &[], b"");
        assert_eq!(r.status, 303, "{path}");
        assert_eq!(r.header("location"), Some("/login"), "{path}");
        has_security_headers(&r, path);
    }
    let r = request(addr, &certs, "POST", "/api/login-link", &[], b"");
    assert_eq!(r.status, 401);
    let r = request(addr, &certs, "GET", "/login", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r
        .text()
        .contains("<form class=\"login\" method=\"post\" action=\"/login\">"));
    has_security_headers(&r, "/login");
    assert_eq!(
        request(addr, &certs, "GET", "/healthz", &[], b"").status,
        200
    );

    // A wrong password is refused without a cookie; the right one gets a session.
    let form = "application/x-www-form-urlencoded";
    let r = request(
        addr,
        &certs,
        "POST",
        "/login",
        &[("Content-Type", form)],
        b"user=admin&password=guess",
    );
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_none());
    assert!(r.text().contains("wrong user or password"));
    // A form from another origin is refused before the password is looked at.
    let body = format!("user=admin&password={}", server.password());
    let r = request(
        addr,
        &certs,
        "POST",
        "/login",
        &[("Content-Type", form), ("Origin", "https://evil.example")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 403);
    let r = request(
        addr,
        &certs,
        "POST",
        "/login",
        &[
            ("Content-Type", form),
            ("Origin", &format!("https://{addr}")),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/"));
    let set = r.header("set-cookie").unwrap();
    for flag in [
        "__Host-rampart-session=",
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(set.contains(flag), "{flag} missing in {set}");
    }
    let id = set.split(';').next().unwrap().split('=').nth(1).unwrap();
    assert_eq!(id.len(), 64, "256 bits as hex");
    let cookie = session_cookie(&r);

    // The page: charts drawn from Prometheus, the tables, no alerts yet.
    let html = eventually("a dashboard with QPS", Duration::from_secs(30), || {
        let r = get(&server, &certs, &cookie, "/");
        assert_eq!(r.status, 200);
        let html = r.text();
        panel(&html, "qps").contains("<path d=\"M").then_some(html)
    });
    for id in [
        "qps",
        "qps-by-server",
        "errors",
        "latency",
        "cpu",
        "memory",
        "disk",
        "db-qps",
        "replication-lag",
    ] {
        let p = panel(&html, id);
        assert!(p.contains("<svg class=\"chart\""), "{id}: {p}");
        assert!(p.contains("<path d=\"M"), "{id} has no line: {p}");
    }
    println!(
        "dashboard page: {} bytes, {} chart lines, prometheus {}",
        html.len(),
        html.matches("<path d=\"M").count(),
        prom.url()
    );
    let qps = panel(&html, "qps-by-server");
    assert!(qps.contains("data-series=\"web1\"") && qps.contains("data-series=\"web2\""));
    assert_eq!(
        panel(&html, "latency").matches("<path d=\"M").count(),
        2,
        "p50 and p99"
    );
    let backends = panel(&html, "backends");
    assert!(
        backends.contains("<td>lb1</td><td>web1</td><td class=\"ok\">up</td>"),
        "{backends}"
    );
    assert!(
        backends.contains("<td>lb1</td><td>web2</td><td class=\"bad\">down</td>"),
        "{backends}"
    );
    let hosts = panel(&html, "hosts");
    for h in ["lb1", "web1", "web2", "db1", "db2", "monitor"] {
        assert!(hosts.contains(&format!("<tr><td>{h}</td>")), "{h}: {hosts}");
    }
    assert!(
        hosts.contains("<td>55%</td>")
            || hosts.contains("<td>55.1%</td>")
            || hosts.contains("<td>55.0"),
        "{hosts}"
    );
    let repl = panel(&html, "replication");
    assert!(
        // Role and epoch come from the keepers, which this Prometheus has no series of.
        repl.contains("<td>db2</td><td class=\"muted\">–</td><td class=\"muted\">–</td><td class=\"ok\">up</td><td class=\"ok\">running</td><td class=\"ok\">running</td><td>2 s</td>"),
        "{repl}"
    );
    assert!(
        repl.contains("<td>db1</td><td class=\"muted\">–</td><td class=\"muted\">–</td><td class=\"ok\">up</td><td class=\"muted\">–</td>"),
        "{repl}"
    );
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"15\">"));
    assert!(!html.contains("prometheus-error"));
    assert!(panel(&html, "alerts").contains("no alerts received"));

    // The webhook: no token, a wrong token, then the right one.
    let firing = webhook_body(
        "firing",
        "0123456789abcdef",
        "BackendDown",
        "0001-01-01T00:00:00Z",
    );
    let json = ("Content-Type", "application/json");
    let r = request(
        addr,
        &certs,
        "POST",
        "/api/alerts",
        &[json],
        firing.as_bytes(),
    );
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Bearer")));
    let r = request(
        addr,
        &certs,
        "POST",
        "/api/alerts",
        &[json, ("Authorization", "Bearer not-the-token")],
        firing.as_bytes(),
    );
    assert_eq!(r.status, 401);
    // A session cookie is not a webhook token.
    let r = request(
        addr,
        &certs,
        "POST",
        "/api/alerts",
        &[json, ("Cookie", &cookie)],
        firing.as_bytes(),
    );
    assert_eq!(r.status, 401);
    let r = post_webhook(&server, &certs, &firing);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "{\"recorded\":1}");
    let html = get(&server, &certs, &cookie, "/").text();
    let alerts = panel(&html, "alerts");
    assert!(alerts.contains("<h2>Alerts: 1 firing</h2>"), "{alerts}");
    assert!(
        alerts.contains("<span class=\"badge firing\">firing</span></td><td>BackendDown</td><td>critical</td><td>lb1</td><td>web2 is out of rotation</td><td>2024-05-01 12:00:00 UTC</td><td></td>"),
        "{alerts}"
    );

    // Malformed bodies: 4xx with the field named, and the server stays up.
    let auth = format!("Bearer {}", server.token());
    for (ct, body, status, needle) in [
        ("application/json", "{\"version\":\"4\",\"alerts\":[{", 400, "\"field\":\"body\""),
        ("application/json", "not json at all", 400, "not a webhook message"),
        ("application/json", "{\"version\":\"4\",\"alerts\":[{\"status\":\"firing\",\"startsAt\":\"x\",\"fingerprint\":\"ab\"}]}", 400, "alerts[0].startsAt"),
        ("text/plain", "{}", 415, "application/json"),
    ] {
        let r = request(
            addr,
            &certs,
            "POST",
            "/api/alerts",
            &[("Content-Type", ct), ("Authorization", &auth)],
            body.as_bytes(),
        );
        assert_eq!(r.status, status, "{body}: {}", r.text());
        assert!(r.text().contains(needle), "{body}: {}", r.text());
    }
    let big = format!(
        "{{\"version\":\"4\",\"alerts\":[],\"pad\":\"{}\"}}",
        "x".repeat(5000)
    );
    let r = request(
        addr,
        &certs,
        "POST",
        "/api/alerts",
        &[json, ("Authorization", &auth)],
        big.as_bytes(),
    );
    assert_eq!(r.status, 413);
    assert_eq!(
        request(addr, &certs, "GET", "/healthz", &[], b"").status,
        200
    );

    // Resolved.
    let resolved = webhook_body(
        "resolved",
        "0123456789abcdef",
        "BackendDown",
        "2024-05-01T12:05:00Z",
    );
    assert_eq!(post_webhook(&server, &certs, &resolved).status, 200);
    let html = get(&server, &certs, &cookie, "/").text();
    let alerts = panel(&html, "alerts");
    assert!(alerts.contains("<h2>Alerts: 0 firing</h2>"), "{alerts}");
    assert!(
        alerts.contains("<span class=\"badge resolved\">resolved</span></td><td>BackendDown</td>"),
        "{alerts}"
    );
    assert!(
        alerts.contains("<td>2024-05-01 12:05:00 UTC</td>"),
        "{alerts}"
    );

    // Logout ends the session.
    let r = request(addr, &certs, "POST", "/logout", &[("Cookie", &cookie)], b"");
    assert_eq!(r.status, 303);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(get(&server, &certs, &cookie, "/").status, 303);

    // The failed-login limit: three failures, then even the right password waits.
    for _ in 0..3 {
        let r = request(
            addr,
            &certs,
            "POST",
            "/login",
            &[("Content-Type", form)],
            b"user=admin&password=nope",
        );
        assert_eq!(r.status, 401);
    }
    let r = request(
        addr,
        &certs,
        "POST",
        "/login",
        &[("Content-Type", form)],
        body.as_bytes(),
    );
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    assert!(r.text().contains("too many failed attempts"));

    // A restart keeps the password, the token and the alerts (not the sessions).
    let password = server.password();
    let token = server.token();
    drop(server);
    let server = Server::start(&config);
    assert_eq!(server.password(), password);
    assert_eq!(server.token(), token);
    assert_eq!(
        get(&server, &certs, &cookie, "/").status,
        303,
        "sessions end with the process"
    );
    let cookie = login(&server, &certs);
    let r = get(&server, &certs, &cookie, "/api/alerts");
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(v["alerts"][0]["fingerprint"], "0123456789abcdef");
    assert_eq!(v["alerts"][0]["status"], "resolved");
    assert_eq!(v["alerts"][0]["labels"]["alertname"], "BackendDown");
    let html = get(&server, &certs, &cookie, "/").text();
    assert!(panel(&html, "alerts").contains("badge resolved"));
}

#[test]
fn prometheus_down_is_said_on_a_200_page() {
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let closed = free_addr();
    let config = write_config(
        dir.path(),
        &certs,
        &format!("http://{closed}"),
        "[listen]\naddr = \"127.0.0.1:0\"\nheader_timeout = \"1s\"\n",
    );
    let server = Server::start(&config);
    let cookie = login(&server, &certs);
    assert_eq!(
        post_webhook(
            &server,
            &certs,
            &webhook_body("firing", "feed", "HostSilent", "")
        )
        .status,
        200
    );
    let r = get(&server, &certs, &cookie, "/");
    assert_eq!(r.status, 200);
    let html = r.text();
    assert!(
        html.contains(&format!(
            "id=\"prometheus-error\">Prometheus at http://{closed} is unreachable: connect to {closed}:"
        )),
        "{html}"
    );
    assert!(panel(&html, "qps").contains("<svg class=\"chart empty\""));
    assert!(panel(&html, "qps").contains(">no data</text>"));
    assert!(
        panel(&html, "alerts").contains("HostSilent"),
        "the alerts still show"
    );

    // A client that starts a request and stops is closed at the header deadline (1 s);
    // so is one that sends nothing after its first request.
    for partial in [&b"GET / HTTP/1.1\r\nHost: x\r\n"[..], b""] {
        let mut c = Https::connect(server.addr, certs.client(), "127.0.0.1").unwrap();
        if partial.is_empty() {
            c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            assert_eq!(c.response().unwrap().status, 200);
        } else {
            c.send(partial).unwrap();
        }
        let start = std::time::Instant::now();
        c.set_read_timeout(Duration::from_secs(5));
        assert!(c.is_closed(), "still open after {:?}", start.elapsed());
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    }
}

/// Opens a TCP connection from `source` (a loopback address) to `to`.
fn connect_from(source: &str, to: SocketAddr) -> std::net::TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: SocketAddr = format!("{source}:0").parse().unwrap();
    s.bind(&from.into()).unwrap();
    s.connect_timeout(&to.into(), Duration::from_secs(2))
        .unwrap();
    s.into()
}

/// Whether the server closed `s` within `within` (EOF or reset) without sending data.
fn closed_within(s: &mut std::net::TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn allow_list_connection_cap_and_header_deadline() {
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &certs,
        &format!("http://{}", free_addr()),
        "[listen]\naddr = \"127.0.0.1:0\"\nallow_from = [\"127.0.0.2/32\"]\nmax_connections = 2\nheader_timeout = \"1s\"\n",
    );
    let server = Server::start(&config);

    // From 127.0.0.1: closed at accept, before TLS; a TLS client fails.
    let mut s = connect_from("127.0.0.1", server.addr);
    assert!(closed_within(&mut s, Duration::from_secs(5)));
    assert!(Https::connect(server.addr, certs.client(), "127.0.0.1").is_err());
    eventually("not_allowed counted", Duration::from_secs(5), || {
        (server.stats.not_allowed.get() == 2).then_some(())
    });

    // From 127.0.0.2: accepted (the TLS handshake waits for us), two at once.
    let mut a = connect_from("127.0.0.2", server.addr);
    let mut b = connect_from("127.0.0.2", server.addr);
    assert!(!closed_within(&mut a, Duration::from_millis(300)));
    // A third while two are open: over the cap, closed at once.
    let mut c = connect_from("127.0.0.2", server.addr);
    assert!(closed_within(&mut c, Duration::from_secs(5)));
    assert_eq!(server.stats.over_limit.get(), 1);
    // The silent ones are closed at the handshake deadline (1 s).
    let start = std::time::Instant::now();
    assert!(closed_within(&mut a, Duration::from_secs(5)));
    assert!(closed_within(&mut b, Duration::from_secs(5)));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    // Counted just after the connection is dropped.
    eventually("tls_failed counted", Duration::from_secs(5), || {
        (server.stats.tls_failed.get() == 2).then_some(())
    });
}

/// The dashboard's own metrics, on its internal listener only: requests by route and
/// class, logins by outcome, live sessions, webhook calls by outcome, Prometheus fetches,
/// and refused connections; the allow-list holds there too, and the text passes
/// `promtool check metrics`.
#[test]
fn its_own_metrics_count_requests_logins_sessions_and_webhooks() {
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &certs,
        &format!("http://{}", free_addr()),
        "[listen]\naddr = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\nmetrics_allow_from = [\"127.0.0.1\"]\n",
    );
    let server = Server::start(&config);
    let scrape_addr = server.metrics.expect("a metrics listener");
    let scrape = || {
        let (status, body) = plain_get(scrape_addr, "/metrics").expect("a scrape answer");
        assert_eq!(status, 200, "{body}");
        body
    };
    let value = |text: &str, series: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    };

    // A wrong password, a right one, the page, an unknown path, a webhook without its
    // token and one with it.
    let wrong = request(
        server.addr,
        &certs,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"user=admin&password=nope",
    );
    assert_eq!(wrong.status, 401);
    let cookie = login(&server, &certs);
    assert_eq!(get(&server, &certs, &cookie, "/").status, 200);
    assert_eq!(get(&server, &certs, &cookie, "/wp-login.php").status, 404);
    // The public listener does not serve the metrics, even to a session.
    assert_eq!(get(&server, &certs, &cookie, "/metrics").status, 404);
    let anonymous = request(
        server.addr,
        &certs,
        "POST",
        "/api/alerts",
        &[("Content-Type", "application/json")],
        b"{}",
    );
    assert_eq!(anonymous.status, 401);
    let body = webhook_body("firing", "f1", "BackendDown", "0001-01-01T00:00:00Z");
    assert_eq!(post_webhook(&server, &certs, &body).status, 200);

    let text = scrape();
    for (series, want) in [
        ("rampart_dashboard_logins_total{outcome=\"failure\"}", 1.0),
        ("rampart_dashboard_logins_total{outcome=\"success\"}", 1.0),
        ("rampart_dashboard_sessions", 1.0),
        (
            "rampart_dashboard_requests_total{route=\"page\",code_class=\"2xx\"}",
            1.0,
        ),
        (
            "rampart_dashboard_requests_total{route=\"login\",code_class=\"4xx\"}",
            1.0,
        ),
        (
            "rampart_dashboard_requests_total{route=\"login\",code_class=\"3xx\"}",
            1.0,
        ),
        (
            "rampart_dashboard_requests_total{route=\"other\",code_class=\"4xx\"}",
            2.0,
        ),
        (
            "rampart_dashboard_alert_webhooks_total{outcome=\"unauthorized\"}",
            1.0,
        ),
        (
            "rampart_dashboard_alert_webhooks_total{outcome=\"recorded\"}",
            1.0,
        ),
        ("rampart_dashboard_alerts_firing", 1.0),
        (
            "rampart_dashboard_prometheus_fetches_total{outcome=\"unreachable\"}",
            1.0,
        ),
    ] {
        assert_eq!(value(&text, series), Some(want), "{series} in:\n{text}");
    }
    if let Some(promtool) = rampart_test_support::client::tool("promtool", None) {
        let out = rampart_test_support::run_with_stdin(
            std::process::Command::new(promtool).args(["check", "metrics"]),
            &text,
        );
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Only GET /metrics there; and from outside the allow-list, closed at accept.
    assert_eq!(plain_get(scrape_addr, "/").map(|r| r.0), Some(404));
    let mut s = connect_from("127.0.0.2", scrape_addr);
    assert!(closed_within(&mut s, Duration::from_secs(5)));
    eventually("the refusal counted", Duration::from_secs(5), || {
        let text = scrape();
        (value(
            &text,
            "rampart_dashboard_connections_refused_total{reason=\"metrics_not_allowed\"}",
        ) == Some(1.0))
        .then_some(())
    });
    // Logging out ends the session.
    let out = request(
        server.addr,
        &certs,
        "POST",
        "/logout",
        &[
            ("Cookie", &cookie),
            ("Origin", &format!("https://{}", server.addr)),
        ],
        b"",
    );
    assert_eq!(out.status, 303, "{}", out.text());
    assert_eq!(value(&scrape(), "rampart_dashboard_sessions"), Some(0.0));
}

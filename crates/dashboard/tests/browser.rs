//! The dashboard in headless Chromium (Debian's, trusting only the test CA): a session
//! is obtained by logging in over HTTP, a one-time login link is minted with it
//! (`POST /api/login-link`), and Chromium opens the link, is redirected to `/` with its
//! own session cookie and renders the page. The DOM must have the charts with data and
//! the alert list; the screenshot is kept in `target/tmp/dashboard-browser/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::*;
use rampart_test_support::browser;

#[test]
fn chromium_renders_charts_and_alerts_after_a_login_link() {
    if !browser::available() {
        return;
    }
    let Some(prom) = Prometheus::start() else {
        return;
    };
    prom.seed();
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &certs,
        &prom.url(),
        "[listen]\naddr = \"127.0.0.1:0\"\n[page]\nrefresh = \"30s\"\n",
    );
    let server = Server::start(&config);
    let cookie = login(&server, &certs);
    for (status, fp, name, ends) in [
        ("firing", "aaaa000000000001", "HighLatencyP99", ""),
        ("firing", "aaaa000000000002", "BackendDown", ""),
        (
            "resolved",
            "aaaa000000000003",
            "ReplicationLagHigh",
            "2024-05-01T12:10:00Z",
        ),
    ] {
        assert_eq!(
            post_webhook(&server, &certs, &webhook_body(status, fp, name, ends)).status,
            200
        );
    }
    // Make sure Prometheus answers with data before the browser looks.
    rampart_test_support::eventually("QPS data", std::time::Duration::from_secs(30), || {
        let html = get(&server, &certs, &cookie, "/").text();
        panel(&html, "qps").contains("<path d=\"M").then_some(())
    });

    // Without a session Chromium lands on the login form.
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-browser");
    let _ = std::fs::remove_dir_all(&work);
    let base = format!("https://127.0.0.1:{}", server.addr.port());
    let size = "--window-size=1400,2300";
    let page = browser::open_with(&[], &format!("{base}/"), &certs.ca(), &work, &[size])
        .unwrap_or_else(|e| panic!("login page: {e}"));
    assert!(
        page.dom
            .contains("<form class=\"login\" method=\"post\" action=\"/login\">"),
        "{}",
        page.dom
    );

    // With a one-time link it gets its own session and the dashboard.
    let r = request(
        server.addr,
        &certs,
        "POST",
        "/api/login-link",
        &[("Cookie", &cookie)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    let link = v["path"].as_str().unwrap().to_owned();
    assert!(link.starts_with("/login?link="), "{link}");
    let start = std::time::Instant::now();
    let page = browser::open_with(&[], &format!("{base}{link}"), &certs.ca(), &work, &[size])
        .unwrap_or_else(|e| panic!("dashboard: {e}"));
    let dom = &page.dom;
    println!(
        "chromium: dashboard in {:?}, {} bytes of DOM, screenshot {}",
        start.elapsed(),
        dom.len(),
        page.screenshot.display()
    );
    assert!(dom.contains("id=\"panel-qps\""), "{dom}");
    for id in ["qps", "qps-by-server", "latency", "cpu", "db-qps"] {
        let p = panel(dom, id);
        assert!(p.contains("<svg class=\"chart\""), "{id}: {p}");
        assert!(p.contains("<path d=\"M"), "{id} has no line: {p}");
    }
    let alerts = panel(dom, "alerts");
    assert!(alerts.contains("Alerts: 2 firing"), "{alerts}");
    for name in ["HighLatencyP99", "BackendDown", "ReplicationLagHigh"] {
        assert!(alerts.contains(name), "{name}: {alerts}");
    }
    assert!(alerts.contains("badge resolved"), "{alerts}");
    // The link is single-use: opened again, it is refused.
    let again = browser::open_with(&[], &format!("{base}{link}"), &certs.ca(), &work, &[])
        .unwrap_or_else(|e| panic!("used link: {e}"));
    assert!(
        again
            .dom
            .contains("this login link is invalid or has expired"),
        "{}",
        again.dom
    );
    let kept = work.join("dashboard.png");
    std::fs::copy(&page.screenshot, &kept).unwrap();
    println!("screenshot: {}", kept.display());
}

/// A log store in process (the real `rampart logs`, mutual TLS with its own CA) holding
/// `lines`, pushed through its Loki push API with curl as a client of that CA.
struct Store {
    _running: rampart_test_support::inprocess::Running<rampart_logs::Logs>,
    addr: std::net::SocketAddr,
    dir: tempfile::TempDir,
}

impl Store {
    fn start() -> Store {
        use rampart_telemetry::config::ConfigFile;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = rampart_tls::pki::Ca::create(&d.join("ca"), "log store test CA").unwrap();
        ca.issue(d, "store", &["127.0.0.1".into()], false).unwrap();
        ca.issue_client(d, "dashboard", &["dashboard.plane.rampart".into()])
            .unwrap();
        std::fs::write(
            d.join("logs.toml"),
            "[listen]\naddr = \"127.0.0.1:0\"\n\
             [tls]\ncert = \"store.pem\"\nkey = \"store.key\"\nclient_ca = \"ca/ca.pem\"\n\
             [store]\npath = \"data/logs.db\"\n",
        )
        .unwrap();
        let config = rampart_logs::Config::load(&d.join("logs.toml")).unwrap();
        let (running, addr) =
            rampart_test_support::inprocess::start::<rampart_logs::Logs, _>(config, |l| {
                l.https.local_addr().unwrap()
            });
        Store {
            _running: running,
            addr,
            dir,
        }
    }

    /// Pushes `(unix ns, host, service, stream, line)` as one JSON push.
    fn push(&self, lines: &[(i64, &str, &str, &str, &str)]) {
        let streams: Vec<serde_json::Value> = lines
            .iter()
            .map(|(ts, host, service, stream, line)| {
                serde_json::json!({
                    "stream": {"host": host, "service": service, "stream": stream},
                    "values": [[ts.to_string(), line]],
                })
            })
            .collect();
        let body = serde_json::json!({ "streams": streams }).to_string();
        let d = self.dir.path();
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "-w", "%{http_code}", "--cacert"])
            .arg(d.join("ca/ca.pem"))
            .arg("--cert")
            .arg(d.join("dashboard.pem"))
            .arg("--key")
            .arg(d.join("dashboard.key"))
            .args([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body,
            ])
            .arg(format!("https://{}/loki/api/v1/push", self.addr))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "204", "{out:?}");
    }

    /// The dashboard's `[logs]` section for this store.
    fn section(&self) -> String {
        let d = self.dir.path();
        format!(
            "[logs]\nurl = \"https://{}\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\ntail_refresh = \"3s\"\n",
            self.addr,
            d.join("ca/ca.pem").display(),
            d.join("dashboard.pem").display(),
            d.join("dashboard.key").display()
        )
    }
}

/// The `<tr class="log-line">` rows of a search page's DOM, as `(host, service, line)`.
fn log_rows(dom: &str) -> Vec<(String, String, String)> {
    let cell = |row: &str, class: &str| {
        let open = format!("<td class=\"{class}\">");
        row.split_once(&open)
            .and_then(|(_, rest)| rest.split_once("</td>"))
            .map(|(v, _)| v.to_owned())
            .unwrap_or_default()
    };
    dom.split("<tr class=\"log-line\">")
        .skip(1)
        .map(|row| (cell(row, "host"), cell(row, "service"), cell(row, "line")))
        .collect()
}

#[test]
fn chromium_searches_the_logs_tails_them_and_follows_an_alert_to_them() {
    if !browser::available() || rampart_test_support::client::tool("curl", None).is_none() {
        return;
    }
    let store = Store::start();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ns = |t: i64| t * 1_000_000_000;
    let marker = format!("m-{}", std::process::id());
    let access = |path: &str| format!(r#"{{"method":"GET","path":"{path}","status":200}}"#);
    let lines = [
        (
            ns(now - 30),
            "lb1",
            "lb",
            "access",
            access(&format!("/{marker}")),
        ),
        (
            ns(now - 29),
            "web1",
            "web",
            "access",
            access(&format!("/{marker}")),
        ),
        (ns(now - 20), "web2", "web", "access", access("/other")),
        (
            ns(now - 10),
            "db1",
            "keeper",
            "log",
            "primary db1 is unreachable <b>".to_owned(),
        ),
        // An hour before the alert: outside the window its link asks for.
        (
            ns(now - 3 * 3600),
            "db1",
            "keeper",
            "log",
            "an old line".to_owned(),
        ),
    ];
    let refs: Vec<(i64, &str, &str, &str, &str)> = lines
        .iter()
        .map(|(t, h, s, st, l)| (*t, *h, *s, *st, l.as_str()))
        .collect();
    store.push(&refs);

    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    // No Prometheus: the search does not need it.
    let config = write_config(
        dir.path(),
        &certs,
        &format!("http://127.0.0.1:{}", rampart_test_support::free_port()),
        &format!("[listen]\naddr = \"127.0.0.1:0\"\n{}", store.section()),
    );
    let server = Server::start(&config);
    let cookie = login(&server, &certs);
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-logs-browser");
    let _ = std::fs::remove_dir_all(&work);
    let base = format!("https://127.0.0.1:{}", server.addr.port());
    // Chromium logs in with a one-time link that lands on `next`.
    let open_with = |next: &str, extra: &[&str]| {
        let r = request(
            server.addr,
            &certs,
            "POST",
            "/api/login-link",
            &[("Cookie", &cookie)],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let v: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
        let url = format!(
            "{base}{}&next={}",
            v["path"].as_str().unwrap(),
            rampart_dashboard::prom::encode(next)
        );
        let start = std::time::Instant::now();
        let mut flags = vec!["--window-size=1400,1200"];
        flags.extend_from_slice(extra);
        let page = browser::open_with(&[], &url, &certs.ca(), &work, &flags)
            .unwrap_or_else(|e| panic!("{next}: {e}"));
        println!("chromium: {next} in {:?}", start.elapsed());
        page
    };
    let open = |next: &str| open_with(next, &[]);

    // The text filter finds the marker on lb1 and web1, newest first, and nothing else.
    let page = open(&format!("/logs?q={marker}&range=15m"));
    let rows = log_rows(&page.dom);
    // As Chromium serializes the DOM: quotes in text stay as they are, `<` does not.
    let want_line = access(&format!("/{marker}"));
    assert_eq!(
        rows,
        [
            ("web1".into(), "web".into(), want_line.clone()),
            ("lb1".into(), "lb".into(), want_line)
        ],
        "{}",
        page.dom
    );
    assert!(
        page.dom.contains("id=\"lines-found\">2 lines"),
        "{}",
        page.dom
    );
    // The host and service choices come from the store.
    for host in ["db1", "lb1", "web1", "web2"] {
        assert!(
            page.dom
                .contains(&format!("<option value=\"{host}\">{host}</option>")),
            "{host}"
        );
    }
    std::fs::copy(&page.screenshot, work.join("search.png")).unwrap();

    // Host and service filters: the keeper's line on db1, escaped.
    let page = open("/logs?host=db1&service=keeper&range=15m");
    assert_eq!(
        log_rows(&page.dom),
        [(
            "db1".into(),
            "keeper".into(),
            "primary db1 is unreachable &lt;b&gt;".into()
        )],
        "{}",
        page.dom
    );

    // Live tail: the page reloads itself and shows the newest lines of its filters.
    // A page that reloads itself never finishes loading for `--dump-dom`: Chromium
    // dumps it after one second of virtual time, before the reload.
    let page = open_with("/logs?service=web&tail=1", &["--virtual-time-budget=1000"]);
    assert!(
        page.dom
            .contains("<meta http-equiv=\"refresh\" content=\"3\">"),
        "{}",
        page.dom
    );
    let hosts: Vec<String> = log_rows(&page.dom).into_iter().map(|r| r.0).collect();
    assert_eq!(hosts, ["web2", "web1"], "{}", page.dom);

    // A bad filter is the page's 400, naming it.
    let r = get(&server, &certs, &cookie, "/logs?host=%22%7D");
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("host: expected 1-64 letters"),
        "{}",
        r.text()
    );

    // An alert on db1 links to db1's logs around it: the keeper's line, not the old one.
    let started = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{}", now - 60), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    let started = String::from_utf8_lossy(&started.stdout).trim().to_owned();
    let body = webhook_body("firing", "bbbb000000000001", "PrimaryDown", "")
        .replace("\"instance\":\"lb1\"", "\"instance\":\"db1\"")
        .replace("2024-05-01T12:00:00Z", &started);
    assert_eq!(post_webhook(&server, &certs, &body).status, 200);
    let html = get(&server, &certs, &cookie, "/").text();
    let alerts = panel(&html, "alerts");
    let href = alerts
        .split("class=\"logs-link\" href=\"")
        .nth(1)
        .and_then(|r| r.split_once('"'))
        .map(|(h, _)| h.replace("&amp;", "&"))
        .unwrap_or_else(|| panic!("no logs link: {alerts}"));
    assert!(href.starts_with("/logs?host=db1&from="), "{href}");
    let page = open(&href);
    assert_eq!(
        log_rows(&page.dom),
        [(
            "db1".into(),
            "keeper".into(),
            "primary db1 is unreachable &lt;b&gt;".into()
        )],
        "{}",
        page.dom
    );
    std::fs::copy(&page.screenshot, work.join("alert-logs.png")).unwrap();
}

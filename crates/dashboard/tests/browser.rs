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

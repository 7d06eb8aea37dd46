//! The real Alertmanager (Debian's `prometheus-alertmanager`) delivering to the
//! dashboard's webhook over HTTPS: trusting our CA (`tls_config.ca_file`), sending the
//! bearer token from the generated token file (`authorization.credentials_file`). An
//! alert posted to Alertmanager shows up firing on the dashboard; posted again with
//! `endsAt` in the past, it shows up resolved.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use rampart_test_support::client::tool;
use rampart_test_support::{eventually, Proc};

/// Alertmanager on 127.0.0.1 (clustering off), killed (by its PID) on drop.
struct Alertmanager {
    proc: Proc,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Alertmanager {
    fn start(webhook: &str, token_file: &std::path::Path, ca: &std::path::Path) -> Option<Self> {
        let bin = tool("prometheus-alertmanager", Some("RAMPART_ALERTMANAGER"))?;
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "route:\n  receiver: dashboard\n  group_by: ['alertname']\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: dashboard\n    webhook_configs:\n      - url: {webhook}\n        send_resolved: true\n\
             \x20       http_config:\n          authorization:\n            type: Bearer\n            credentials_file: {}\n\
             \x20         tls_config:\n            ca_file: {}\n",
            token_file.display(),
            ca.display()
        );
        let config_path = dir.path().join("alertmanager.yml");
        std::fs::write(&config_path, &config).unwrap();
        let addr = free_addr();
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).unwrap();
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut am = Alertmanager {
            proc: Proc {
                child,
                name: "alertmanager".into(),
            },
            addr,
            dir,
        };
        eventually("alertmanager /-/ready", Duration::from_secs(60), || {
            if let Ok(Some(status)) = am.proc.child.try_wait() {
                panic!("alertmanager exited with {status}:\n{}", am.log());
            }
            plain_get(am.addr, "/-/ready")
                .filter(|(s, _)| *s == 200)
                .map(|_| ())
        });
        Some(am)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }

    /// POSTs `alerts` (JSON) to `/api/v2/alerts`.
    fn post_alerts(&self, alerts: &str) {
        let mut s = std::net::TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "POST /api/v2/alerts HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{alerts}",
            self.addr,
            alerts.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.0 200"), "{resp}");
    }
}

fn rfc3339(unix: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[test]
fn alertmanager_delivers_firing_then_resolved() {
    if tool("prometheus-alertmanager", Some("RAMPART_ALERTMANAGER")).is_none() {
        return;
    }
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &certs,
        &format!("http://{}", free_addr()),
        "[listen]\naddr = \"127.0.0.1:0\"\n",
    );
    let server = Server::start(&config);
    let am = Alertmanager::start(
        &format!("https://127.0.0.1:{}/api/alerts", server.addr.port()),
        &server.config.alerts.webhook_token_file,
        &certs.ca(),
    )
    .unwrap();
    let cookie = login(&server, &certs);

    let now = now_ms() / 1000;
    let labels = r#"{"alertname":"DashboardWebhookTest","severity":"warning","instance":"web1"}"#;
    let annotations = r#"{"summary":"a test alert through Alertmanager"}"#;
    am.post_alerts(&format!(
        r#"[{{"labels":{labels},"annotations":{annotations},"startsAt":"{}","generatorURL":"http://127.0.0.1/graph"}}]"#,
        rfc3339(now - 5)
    ));
    let firing = eventually(
        "the alert firing on the dashboard",
        Duration::from_secs(60),
        || {
            let v: serde_json::Value =
                serde_json::from_str(&get(&server, &certs, &cookie, "/api/alerts").text()).unwrap();
            let a = v["alerts"].as_array().unwrap().first().cloned()?;
            (a["status"] == "firing").then_some(a)
        },
    );
    assert_eq!(firing["labels"]["alertname"], "DashboardWebhookTest");
    assert_eq!(firing["labels"]["instance"], "web1");
    assert_eq!(
        firing["annotations"]["summary"],
        "a test alert through Alertmanager"
    );
    assert_eq!(firing["startsAt"], now - 5);
    let html = get(&server, &certs, &cookie, "/").text();
    let alerts = panel(&html, "alerts");
    assert!(
        alerts.contains("<span class=\"badge firing\">firing</span></td><td>DashboardWebhookTest</td><td>warning</td><td>web1</td>"),
        "{alerts}"
    );
    println!(
        "alertmanager: firing alert recorded, fingerprint {}",
        firing["fingerprint"]
    );

    // The same alert ending in the past: Alertmanager resolves it and notifies.
    am.post_alerts(&format!(
        r#"[{{"labels":{labels},"annotations":{annotations},"startsAt":"{}","endsAt":"{}"}}]"#,
        rfc3339(now - 5),
        rfc3339(now - 1)
    ));
    let resolved = eventually(
        "the alert resolved on the dashboard",
        Duration::from_secs(60),
        || {
            let v: serde_json::Value =
                serde_json::from_str(&get(&server, &certs, &cookie, "/api/alerts").text()).unwrap();
            let a = v["alerts"].as_array().unwrap().first().cloned()?;
            (a["status"] == "resolved").then_some(a)
        },
    );
    assert_eq!(resolved["fingerprint"], firing["fingerprint"]);
    assert_eq!(resolved["endsAt"], now - 1);
    let html = get(&server, &certs, &cookie, "/").text();
    let alerts = panel(&html, "alerts");
    assert!(alerts.contains("<h2>Alerts: 0 firing</h2>"), "{alerts}");
    assert!(
        alerts.contains(
            "<span class=\"badge resolved\">resolved</span></td><td>DashboardWebhookTest</td>"
        ),
        "{alerts}"
    );
    let log = am.log();
    assert!(!log.contains("level=error"), "alertmanager errors:\n{log}");
}

//! `rampart logs` in process, with curl as the client over mutual TLS: a push (JSON and
//! snappy protobuf) is stored once however often it is sent, found again by LogQL in
//! Loki's shapes, kept across a restart; a client without a certificate of the
//! configured CA gets nothing; bad requests get a 4xx and the store stays up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use rampart_logs::{Config, Listeners, Logs};
use rampart_telemetry::config::ConfigFile;
use rampart_tls::pki::Ca;

struct Running {
    store: rampart_test_support::inprocess::Running<Logs>,
    addr: SocketAddr,
    metrics: SocketAddr,
}

fn start(dir: &Path) -> Running {
    std::fs::write(
        dir.join("logs.toml"),
        "[listen]\naddr = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\n\
         [tls]\ncert = \"server.pem\"\nkey = \"server.key\"\nclient_ca = \"plane/ca.pem\"\n\
         [store]\npath = \"data/logs.db\"\n",
    )
    .unwrap();
    let config = Config::load(&dir.join("logs.toml")).unwrap();
    let (store, (addr, metrics)) =
        rampart_test_support::inprocess::start::<Logs, _>(config, |l: &Listeners| {
            (
                l.https.local_addr().unwrap(),
                l.metrics.as_ref().unwrap().local_addr().unwrap(),
            )
        });
    Running {
        store,
        addr,
        metrics,
    }
}

struct Client {
    dir: PathBuf,
}

impl Client {
    /// curl as `who` (a stem in the test's directory, or none): (exit ok, status, body).
    fn curl(&self, who: Option<&str>, args: &[&str], url: &str) -> (bool, String, String) {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(self.dir.join("site/ca.pem"));
        if let Some(w) = who {
            cmd.arg("--cert")
                .arg(self.dir.join(format!("{w}.pem")))
                .arg("--key")
                .arg(self.dir.join(format!("{w}.key")));
        }
        let out = cmd.args(args).arg(url).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (out.status.success(), code.to_owned(), body.to_owned())
    }
}

fn metric(addr: SocketAddr, name: &str) -> f64 {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(format!("http://{addr}/metrics"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn pushes_are_stored_once_found_by_logql_and_kept() {
    if rampart_test_support::client::tool("curl", None).is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let site = Ca::create(&d.join("site"), "test CA").unwrap();
    site.issue(d, "server", &["127.0.0.1".into()], false)
        .unwrap();
    site.issue_client(d, "web1", &["web1".into()]).unwrap();
    let plane = Ca::create(&d.join("plane"), "test plane CA").unwrap();
    plane
        .issue_client(d, "gate", &["gate.plane.rampart".into()])
        .unwrap();
    let client = Client { dir: d.to_owned() };
    let run = start(d);
    let base = format!("https://{}", run.addr);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let body = format!(
        r#"{{"streams":[{{"stream":{{"host":"web1","service":"web","stream":"access"}},"values":[["{now}","{{\"path\":\"/m-4711\",\"status\":200}}"],["{}","{{\"path\":\"/x\",\"status\":503}}"]]}}]}}"#,
        now + 1
    );
    let push = |who| {
        client.curl(
            who,
            &[
                "-H",
                "content-type: application/json",
                "--data-binary",
                &body,
            ],
            &format!("{base}/loki/api/v1/push"),
        )
    };
    // Only the configured CA's certificates: none, or a host's of the site CA, fail the
    // handshake.
    assert!(!push(None).0, "no client certificate");
    assert!(!push(Some("web1")).0, "a certificate of another CA");
    let (ok, code, text) = push(Some("gate"));
    assert!(ok && code == "204", "{code} {text}");
    // Sent again (a retry after a lost answer): nothing stored twice.
    assert_eq!(push(Some("gate")).1, "204");
    assert_eq!(metric(run.metrics, "rampart_logs_lines_stored_total"), 2.0);
    assert_eq!(
        metric(run.metrics, "rampart_logs_lines_duplicate_total"),
        2.0
    );

    // Protobuf with snappy, as the agents send.
    let proto = rampart_logs::push::encode(&rampart_logs::push::Push {
        streams: vec![rampart_logs::push::Stream {
            labels: rampart_logs::labels::parse_labels(
                r#"{host="lb1", service="lb", stream="access"}"#,
            )
            .unwrap(),
            entries: vec![(i64::try_from(now).unwrap(), "GET /m-4711 200".into())],
        }],
    });
    std::fs::write(d.join("push.bin"), proto).unwrap();
    let (_, code, text) = client.curl(
        Some("gate"),
        &[
            "-H",
            "content-type: application/x-protobuf",
            "--data-binary",
            &format!("@{}", d.join("push.bin").display()),
        ],
        &format!("{base}/loki/api/v1/push"),
    );
    assert_eq!(code, "204", "{text}");

    let query = |q: &str| {
        client.curl(
            Some("gate"),
            &[
                "-G",
                "--data-urlencode",
                &format!("query={q}"),
                "--data-urlencode",
                "limit=10",
            ],
            &format!("{base}/loki/api/v1/query_range"),
        )
    };
    let (_, code, text) = query(r#"{service=~"lb|web"} |= "m-4711""#);
    assert_eq!(code, "200", "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let hosts: Vec<&str> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stream"]["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["lb1", "web1"], "{text}");
    let (_, _, text) = query(r#"{host="web1"} | json | status >= 500"#);
    assert!(
        text.contains(r#"\"path\":\"/x\""#) && !text.contains("m-4711"),
        "{text}"
    );

    // Bad requests: a 4xx with the reason, and the store still answers.
    let (_, code, text) = query("{");
    assert!(
        code == "400" && text.contains("parse error"),
        "{code} {text}"
    );
    let (_, code, _) = client.curl(
        Some("gate"),
        &[
            "-H",
            "content-type: application/x-protobuf",
            "--data-binary",
            "garbage",
        ],
        &format!("{base}/loki/api/v1/push"),
    );
    assert_eq!(code, "400");
    let (_, code, _) = client.curl(Some("gate"), &[], &format!("{base}/ready"));
    assert_eq!(code, "200");

    // Kept across a restart.
    drop(run);
    let run = start(d);
    assert_eq!(run.store.service.store().size().unwrap().0, 3);
}

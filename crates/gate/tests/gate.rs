//! The ingest gate in front of a real Prometheus that serves TLS and takes only the
//! monitoring plane's client certificates, as `rampart up` runs them: an agent's
//! credentials (its host's certificate) write its own series and nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use rampart_agent::remote_write::{
    self, Client, Label, PushError, Sample, TimeSeries, WriteRequest,
};
use rampart_gate::{Config, Gate, Listeners};
use rampart_telemetry::config::ConfigFile;
use rampart_telemetry::http_client::{self, Endpoint, Limits, Overflow};
use rampart_test_support::prometheus::Prometheus;
use rampart_tls::pki::Ca;
use rampart_tls::ClientTls;

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let site = Ca::create(&d.join("site"), "test CA").unwrap();
        site.issue(d, "server", &["127.0.0.1".into()], false)
            .unwrap();
        for host in ["web1", "db1"] {
            site.issue_client(d, host, &[host.into()]).unwrap();
        }
        let plane = Ca::create(&d.join("plane"), "test plane CA").unwrap();
        for who in ["gate", "dashboard"] {
            plane
                .issue_client(
                    d,
                    &format!("plane-{who}"),
                    &[format!("{who}.plane.rampart")],
                )
                .unwrap();
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca(&self) -> PathBuf {
        self.path("site/ca.pem")
    }

    /// A client configuration trusting the site CA, presenting `stem`'s certificate.
    fn client(&self, stem: Option<&str>) -> Arc<rustls::ClientConfig> {
        let tls = ClientTls {
            ca: self.ca(),
            client_cert: stem.map(|s| {
                (
                    self.path(&format!("{s}.pem")),
                    self.path(&format!("{s}.key")),
                )
            }),
        };
        Arc::new(rampart_tls::client_config(&tls).unwrap())
    }
}

fn get(
    rt: &tokio::runtime::Runtime,
    url: &str,
    method: Method,
    tls: Arc<rustls::ClientConfig>,
) -> Result<(StatusCode, String), http_client::Error> {
    let (endpoint, target) = Endpoint::from_url(&url.parse().unwrap(), Some(tls)).unwrap();
    let req = Request::builder()
        .method(method)
        .uri(target)
        .body(Bytes::new())
        .unwrap();
    let limits = Limits {
        timeout: Duration::from_secs(10),
        max_body: 1 << 20,
        overflow: Overflow::Truncate,
    };
    rt.block_on(http_client::send_to(&endpoint, req, limits))
        .map(|r| (r.status, String::from_utf8_lossy(&r.body).into_owned()))
}

fn series(instance: &str, name: &str) -> TimeSeries {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    TimeSeries {
        labels: vec![
            Label {
                name: "__name__".into(),
                value: name.into(),
            },
            Label {
                name: "instance".into(),
                value: instance.into(),
            },
            Label {
                name: "job".into(),
                value: "node".into(),
            },
        ],
        samples: vec![Sample {
            value: 1.0,
            timestamp: now,
        }],
    }
}

fn body(series: Vec<TimeSeries>) -> Bytes {
    Bytes::from(
        remote_write::encode(&WriteRequest {
            timeseries: series,
            metadata: Vec::new(),
        })
        .unwrap(),
    )
}

/// The instances Prometheus holds for `metric`, asked with the dashboard's certificate.
fn instances(
    rt: &tokio::runtime::Runtime,
    prom: SocketAddr,
    pki: &Pki,
    metric: &str,
) -> BTreeSet<String> {
    let (status, text) = get(
        rt,
        &format!("https://{prom}/api/v1/query?query={metric}"),
        Method::GET,
        pki.client(Some("plane-dashboard")),
    )
    .unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["metric"]["instance"].as_str().map(str::to_owned))
        .collect()
}

fn write_web_config(pki: &Pki) -> PathBuf {
    let web = pki.path("web.yml");
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
            q(&pki.path("server.pem")),
            q(&pki.path("server.key")),
            q(&pki.path("plane/ca.pem")),
        ),
    )
    .unwrap();
    web
}

#[test]
fn an_agent_writes_its_own_series_and_nothing_else_reaches_prometheus() {
    let pki = Pki::new();
    let web = write_web_config(&pki);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let probe = pki.client(Some("plane-dashboard"));
    let Some(prom) = Prometheus::start_tls(&web, |addr| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        get(
            &rt,
            &format!("https://{addr}/-/ready"),
            Method::GET,
            probe.clone(),
        )
        .is_ok_and(|(s, _)| s == StatusCode::OK)
    }) else {
        eprintln!("SKIP: prometheus is not installed (Debian package prometheus)");
        return;
    };

    let d = pki.dir.path();
    let config = Config::parse(
        &d.join("gate.toml"),
        &format!(
            r#"
[listen]
addr = "127.0.0.1:0"
[tls]
cert = "server.pem"
key = "server.key"
client_ca = "site/ca.pem"
[upstream]
url = "https://{}/api/v1/write"
ca = "site/ca.pem"
cert = "plane-gate.pem"
key = "plane-gate.key"
"#,
            prom.addr
        ),
    )
    .unwrap();
    let gate = Arc::new(Gate::new(config.clone()).unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, server) = {
        let _guard = rt.enter();
        let listeners = Listeners::bind(&config).unwrap();
        let addr = listeners.https.local_addr().unwrap();
        let g = Arc::clone(&gate);
        let server = rt.spawn(async move {
            g.serve(
                listeners,
                async {
                    let _ = stopped.await;
                },
                || {},
            )
            .await
        });
        (addr, server)
    };
    let write_url: http::Uri = format!("https://{addr}/api/v1/write").parse().unwrap();
    let agent = |host: &str| Client {
        timeout: Duration::from_secs(10),
        tls: Some(pki.client(Some(host))),
    };

    // Write accepted: web1's own series reach Prometheus through the gate.
    let pushed = rt
        .block_on(remote_write::push(
            &agent("web1"),
            &write_url,
            body(vec![series("web1", "gate_test_up")]),
        ))
        .unwrap();
    assert_eq!(pushed.status, StatusCode::NO_CONTENT);
    assert!(pushed.date.is_some(), "Prometheus's Date is passed back");
    assert_eq!(
        instances(&rt, prom.addr, &pki, "gate_test_up"),
        BTreeSet::from(["web1".to_owned()])
    );

    // Foreign instance refused: web1 cannot write for db1, not even one series among
    // its own, and none of that request reaches Prometheus.
    let err = rt
        .block_on(remote_write::push(
            &agent("web1"),
            &write_url,
            body(vec![
                series("web1", "gate_test_forged"),
                series("db1", "gate_test_forged"),
            ]),
        ))
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::FORBIDDEN), "{err}");
    assert!(!err.retryable(), "a forged write is dropped, not retried");
    assert!(err.to_string().contains("db1"), "{err}");
    // A series without an instance label is refused too.
    let mut bare = series("web1", "gate_test_forged");
    bare.labels.retain(|l| l.name != "instance");
    let err = rt
        .block_on(remote_write::push(
            &agent("web1"),
            &write_url,
            body(vec![bare]),
        ))
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::FORBIDDEN), "{err}");
    // db1 writes its own.
    rt.block_on(remote_write::push(
        &agent("db1"),
        &write_url,
        body(vec![series("db1", "gate_test_up")]),
    ))
    .unwrap();
    assert_eq!(
        instances(&rt, prom.addr, &pki, "gate_test_up"),
        BTreeSet::from(["web1".to_owned(), "db1".to_owned()])
    );
    assert!(instances(&rt, prom.addr, &pki, "gate_test_forged").is_empty());

    // Query refused, admin refused: the agent's credentials open nothing but writes.
    let web1 = pki.client(Some("web1"));
    for (method, path) in [
        (Method::GET, "/api/v1/query?query=up"),
        (
            Method::POST,
            "/api/v1/query_range?query=up&start=0&end=1&step=1",
        ),
        (Method::GET, "/api/v1/label/instance/values"),
        (Method::GET, "/federate?match[]=up"),
        (Method::POST, "/api/v1/admin/tsdb/delete_series?match[]=up"),
        (Method::POST, "/api/v1/admin/tsdb/snapshot"),
        (Method::POST, "/-/quit"),
        (Method::GET, "/graph"),
    ] {
        let (status, text) = get(
            &rt,
            &format!("https://{addr}{path}"),
            method.clone(),
            web1.clone(),
        )
        .unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {text}");
    }
    let (status, _) = get(
        &rt,
        &format!("https://{addr}/api/v1/write"),
        Method::GET,
        web1,
    )
    .unwrap();
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    // Prometheus itself takes no host's certificate, and no client without one; the
    // plane's certificates work (the dashboard's query above).
    for who in [Some("web1"), None] {
        let r = get(
            &rt,
            &format!("https://{}/api/v1/query?query=up", prom.addr),
            Method::GET,
            pki.client(who),
        );
        assert!(r.is_err(), "{who:?} reached Prometheus: {r:?}");
    }
    // The gate takes no client without a certificate.
    let r = get(
        &rt,
        &format!("https://{addr}/api/v1/write"),
        Method::POST,
        pki.client(None),
    );
    assert!(r.is_err(), "no certificate reached the gate: {r:?}");

    // Bad input: a 4xx, and the gate stays up.
    let err = rt
        .block_on(remote_write::push(
            &agent("web1"),
            &write_url,
            Bytes::from_static(b"\xff\xff\xff\xffnot snappy"),
        ))
        .unwrap_err();
    assert!(
        matches!(err, PushError::Status { status, .. } if status == StatusCode::BAD_REQUEST),
        "{err}"
    );
    rt.block_on(remote_write::push(
        &agent("web1"),
        &write_url,
        body(vec![series("web1", "gate_test_after")]),
    ))
    .unwrap();

    // Each outcome is counted by host.
    let text = gate.metrics_text();
    for needle in [
        r#"rampart_gate_requests_total{host="web1",outcome="accepted"} 2"#,
        r#"rampart_gate_requests_total{host="web1",outcome="forged"} 2"#,
        r#"rampart_gate_requests_total{host="web1",outcome="not_write"} 9"#,
        r#"rampart_gate_requests_total{host="web1",outcome="malformed"} 1"#,
        r#"rampart_gate_requests_total{host="db1",outcome="accepted"} 1"#,
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }

    let _ = stop.send(());
    rt.block_on(server).unwrap().unwrap();
}

/// POSTs `body` with `content_type` as the client `tls` presents.
fn post(
    rt: &tokio::runtime::Runtime,
    url: &str,
    content_type: &str,
    body: Vec<u8>,
    tls: Arc<rustls::ClientConfig>,
) -> (StatusCode, String) {
    let (endpoint, target) = Endpoint::from_url(&url.parse().unwrap(), Some(tls)).unwrap();
    let req = Request::builder()
        .method(Method::POST)
        .uri(target)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Bytes::from(body))
        .unwrap();
    let limits = Limits {
        timeout: Duration::from_secs(10),
        max_body: 1 << 20,
        overflow: Overflow::Truncate,
    };
    let r = rt
        .block_on(http_client::send_to(&endpoint, req, limits))
        .unwrap();
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

/// Logs through the gate to a real `rampart logs` that takes only the plane's
/// certificates: a host pushes streams of its own `host` with the bounded labels and
/// nothing else; queries of the store through the gate are refused.
#[test]
fn an_agent_pushes_its_own_logs_and_nothing_else_reaches_the_store() {
    let pki = Pki::new();
    let d = pki.dir.path();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    std::fs::write(
        d.join("logs.toml"),
        "[listen]\naddr = \"127.0.0.1:0\"\n[tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n\
         client_ca = \"plane/ca.pem\"\n[store]\npath = \"logs.db\"\n",
    )
    .unwrap();
    let logs_config = <rampart_logs::Config as ConfigFile>::load(&d.join("logs.toml")).unwrap();
    let logs_listeners = rampart_logs::Listeners::bind(&logs_config).unwrap();
    let logs_addr = logs_listeners.https.local_addr().unwrap();
    let logs = Arc::new(rampart_logs::Logs::new(logs_config).unwrap());
    let (logs_stop, logs_stopped) = tokio::sync::oneshot::channel::<()>();
    {
        let l = Arc::clone(&logs);
        rt.spawn(async move {
            l.serve(
                logs_listeners,
                async {
                    let _ = logs_stopped.await;
                },
                || {},
            )
            .await
        });
    }
    let config = Config::parse(
        &d.join("gate.toml"),
        &format!(
            "[listen]\naddr = \"127.0.0.1:0\"\n[tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n\
             client_ca = \"site/ca.pem\"\n[upstream]\nurl = \"https://127.0.0.1:9/api/v1/write\"\n\
             ca = \"site/ca.pem\"\ncert = \"plane-gate.pem\"\nkey = \"plane-gate.key\"\n\
             [logs]\nurl = \"https://{logs_addr}/loki/api/v1/push\"\nca = \"site/ca.pem\"\n\
             cert = \"plane-gate.pem\"\nkey = \"plane-gate.key\"\n"
        ),
    )
    .unwrap();
    let gate = Arc::new(Gate::new(config.clone()).unwrap());
    let listeners = Listeners::bind(&config).unwrap();
    let addr = listeners.https.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    {
        let g = Arc::clone(&gate);
        rt.spawn(async move {
            g.serve(
                listeners,
                async {
                    let _ = stopped.await;
                },
                || {},
            )
            .await
        });
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let push = |labels: &str, line: &str| {
        rampart_logs::push::encode(&rampart_logs::push::Push {
            streams: vec![rampart_logs::push::Stream {
                labels: rampart_logs::labels::parse_labels(labels).unwrap(),
                entries: vec![(now, line.to_owned())],
            }],
        })
    };
    let url = format!("https://{addr}/loki/api/v1/push");
    let web1 = pki.client(Some("web1"));
    let proto = "application/x-protobuf";
    // Its own: stored.
    let (status, text) = post(
        &rt,
        &url,
        proto,
        push(
            r#"{host="web1", service="web", stream="access"}"#,
            "GET /own",
        ),
        web1.clone(),
    );
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    // Another host's, a stream without a host, a label beyond the bounded set: refused.
    for (labels, want) in [
        (r#"{host="db1", service="mariadb", stream="error"}"#, "db1"),
        (r#"{service="web", stream="access"}"#, "no host label"),
        (r#"{host="web1", service="web", path="/x"}"#, "\"path\""),
    ] {
        let (status, text) = post(&rt, &url, proto, push(labels, "GET /forged"), web1.clone());
        assert_eq!(status, StatusCode::FORBIDDEN, "{labels}: {text}");
        assert!(text.contains(want), "{labels}: {text}");
    }
    // A bad body: 400, and the gate still takes the next push.
    let (status, _) = post(&rt, &url, proto, b"garbage".to_vec(), web1.clone());
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = post(
        &rt,
        &url,
        "application/json",
        format!(r#"{{"streams":[{{"stream":{{"host":"web1","service":"web","stream":"app"}},"values":[["{}","json line"]]}}]}}"#, now + 1).into_bytes(),
        web1.clone(),
    );
    assert_eq!(status, StatusCode::NO_CONTENT);
    // The store's query API is not reachable through the gate, nor by a host directly.
    for path in [
        "/loki/api/v1/query_range?query=%7Bhost%3D%22web1%22%7D",
        "/loki/api/v1/labels",
    ] {
        let (status, _) = get(
            &rt,
            &format!("https://{addr}{path}"),
            Method::GET,
            web1.clone(),
        )
        .unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    assert!(get(
        &rt,
        &format!("https://{logs_addr}/loki/api/v1/labels"),
        Method::GET,
        web1
    )
    .is_err());
    // What the store holds: web1's two lines, nothing forged.
    let (status, text) = get(
        &rt,
        &format!(
            "https://{logs_addr}/loki/api/v1/query_range?query=%7Bservice%3D~%22.%2B%22%7D&start=0&limit=100"
        ),
        Method::GET,
        pki.client(Some("plane-dashboard")),
    )
    .unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(
        text.contains("GET /own") && text.contains("json line"),
        "{text}"
    );
    assert!(!text.contains("forged"), "{text}");
    assert_eq!(logs.store().size().unwrap().0, 2);
    let metrics = gate.metrics_text();
    for needle in [
        r#"rampart_gate_requests_total{host="web1",outcome="accepted"} 2"#,
        r#"rampart_gate_requests_total{host="web1",outcome="forged"} 3"#,
        r#"rampart_gate_requests_total{host="web1",outcome="malformed"} 1"#,
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
    let _ = stop.send(());
    let _ = logs_stop.send(());
}

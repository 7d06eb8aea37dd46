//! Remote write 1.0 against the real Prometheus (Debian's `prometheus`): series pushed
//! by `rampart_agent::remote_write` are read back sample by sample through the query
//! API, a 10-minute-old out-of-order sample is accepted only with the out-of-order
//! window, and failures (bad body, refused connection, silent server) are classified.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rampart_agent::remote_write::{self, Client, PushError, WriteRequest};
use rampart_agent::{Family, Kind, Sample};
use rampart_telemetry::http_client;
use serde_json::Value;

/// The shared real Prometheus ([`rampart_test_support::prometheus`]) with this file's
/// queries.
struct Prometheus {
    inner: rampart_test_support::prometheus::Prometheus,
    addr: SocketAddr,
}

impl Prometheus {
    /// Prometheus with the given out-of-order window; `None` when not installed.
    fn start(out_of_order_window: Option<&str>) -> Option<Self> {
        let inner = rampart_test_support::prometheus::Prometheus::start(out_of_order_window)?;
        Some(Self {
            addr: inner.addr,
            inner,
        })
    }

    fn write_url(&self) -> http::Uri {
        format!("http://{}/api/v1/write", self.addr)
            .parse()
            .unwrap()
    }

    fn log(&self) -> String {
        self.inner.log()
    }

    /// The raw samples of `selector` over the last hour: (labels, [(timestamp ms, value)])
    /// per series, sorted by labels.
    fn raw_samples(&self, selector: &str) -> Vec<Series> {
        let now = now_ms() as f64 / 1000.0;
        let path = format!(
            "/api/v1/query?query={}&time={now:.3}",
            percent_encode(&format!("{selector}[1h]"))
        );
        let (status, body) = get(self.addr, &path).expect("query prometheus");
        assert_eq!(status, 200, "{path}: {body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["data"]["resultType"], "matrix", "{body}");
        let mut out: Vec<_> = json["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|series| {
                let mut labels: Vec<(String, String)> = series["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect();
                labels.sort();
                let values = series["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|pair| {
                        let ts = pair[0].as_f64().unwrap();
                        let v: f64 = pair[1].as_str().unwrap().parse().unwrap();
                        ((ts * 1000.0).round() as i64, v)
                    })
                    .collect();
                (labels, values)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// Each series read back: its labels, sorted, and its samples `(timestamp ms, value)`.
type Series = (Vec<(String, String)>, Vec<(i64, f64)>);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// An address on 127.0.0.1 that nothing listens on (just released by the kernel).
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A blocking HTTP/1.0 GET: `(status, body)`, or `None` if the connection failed.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut sock = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(sock, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut resp = Vec::new();
    sock.read_to_end(&mut resp).ok()?;
    let resp = String::from_utf8_lossy(&resp);
    let (head, body) = resp.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn family(name: &str, kind: Kind, samples: &[(&[(&str, &str)], f64)]) -> Family {
    Family {
        name: name.into(),
        help: String::new(),
        kind,
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

fn extra() -> Vec<(String, String)> {
    vec![
        ("instance".into(), "agent-test".into()),
        ("host".into(), "web1".into()),
    ]
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    v.sort();
    v
}

async fn push_at(prom: &Prometheus, families: &[Family], ts: i64) -> Result<(), PushError> {
    let req = WriteRequest {
        timeseries: remote_write::series(families, &extra(), ts),
        metadata: vec![],
    };
    let body = Bytes::from(remote_write::encode(&req).unwrap());
    let pushed = remote_write::push(&Client::default(), &prom.write_url(), body).await?;
    assert_eq!(pushed.status, 204);
    // The server's clock, from its Date header (one-second resolution).
    let date = pushed.date.expect("Date header");
    let skew = date
        .duration_since(SystemTime::now())
        .unwrap_or_else(|e| e.duration());
    assert!(
        skew < Duration::from_secs(5),
        "server clock off by {skew:?}"
    );
    Ok(())
}

#[tokio::test]
async fn pushed_samples_read_back_with_out_of_order_window() {
    let Some(prom) = Prometheus::start(Some("30m")) else {
        return;
    };
    let start = now_ms() - 120_000;
    let rounds: Vec<(i64, f64)> = (0..5).map(|i| (start + i * 15_000, i as f64)).collect();
    for &(ts, i) in &rounds {
        let families = [
            family(
                "rampart_rw_test_gauge",
                Kind::Gauge,
                &[(&[("path", "/a")], i * 1.5), (&[("path", "/b")], -i)],
            ),
            family(
                "rampart_rw_test_total",
                Kind::Counter,
                &[(&[("method", "GET"), ("empty", "")], 100.0 + i * 10.25)],
            ),
        ];
        push_at(&prom, &families, ts).await.unwrap();
    }
    // Ten minutes older than what the series already holds: out of order, accepted
    // only thanks to the out-of-order window.
    let old = now_ms() - 600_000;
    let counter = [family(
        "rampart_rw_test_total",
        Kind::Counter,
        &[(&[("method", "GET")], 42.0)],
    )];
    push_at(&prom, &counter, old)
        .await
        .unwrap_or_else(|e| panic!("old sample rejected: {e}\n{}", prom.log()));

    let common = [("instance", "agent-test"), ("host", "web1")];
    let with = |name: &str, more: (&str, &str)| {
        let mut l = common.to_vec();
        l.push(("__name__", name));
        l.push(more);
        labels(&l)
    };
    let expect_gauge = vec![
        (
            with("rampart_rw_test_gauge", ("path", "/a")),
            rounds
                .iter()
                .map(|&(t, i)| (t, i * 1.5))
                .collect::<Vec<_>>(),
        ),
        (
            with("rampart_rw_test_gauge", ("path", "/b")),
            rounds.iter().map(|&(t, i)| (t, -i)).collect(),
        ),
    ];
    assert_eq!(prom.raw_samples("rampart_rw_test_gauge"), expect_gauge);

    let mut counter_samples = vec![(old, 42.0)];
    counter_samples.extend(rounds.iter().map(|&(t, i)| (t, 100.0 + i * 10.25)));
    assert_eq!(
        prom.raw_samples("rampart_rw_test_total"),
        vec![(
            with("rampart_rw_test_total", ("method", "GET")),
            counter_samples
        )]
    );
    eprintln!(
        "prometheus {}: 3 series read back with every sample, incl. one 10 min old",
        prom.addr
    );

    // A body that is not snappy: 400, permanent.
    let err = remote_write::push(
        &Client::default(),
        &prom.write_url(),
        Bytes::from_static(b"not snappy at all"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.status(), Some(http::StatusCode::BAD_REQUEST), "{err}");
    assert!(!err.retryable(), "{err}");
    eprintln!("malformed body: {err}");
}

#[tokio::test]
async fn without_window_an_old_sample_is_a_permanent_400() {
    let Some(prom) = Prometheus::start(None) else {
        return;
    };
    let fam = |v| {
        [family(
            "rampart_rw_test_ooo",
            Kind::Gauge,
            &[(&[("k", "v")], v)],
        )]
    };
    push_at(&prom, &fam(1.0), now_ms()).await.unwrap();
    let err = push_at(&prom, &fam(2.0), now_ms() - 600_000)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(http::StatusCode::BAD_REQUEST), "{err}");
    assert!(!err.retryable(), "{err}");
    eprintln!("out of order without window: {err}");
}

#[tokio::test]
async fn connect_refused_and_silent_server_are_retryable() {
    let body = Bytes::from(remote_write::encode(&WriteRequest::default()).unwrap());

    let refused: http::Uri = format!("http://{}/api/v1/write", free_addr())
        .parse()
        .unwrap();
    let err = remote_write::push(&Client::default(), &refused, body.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err, PushError::Exchange(http_client::Error::Connect { .. })),
        "{err}"
    );
    assert!(err.retryable());
    eprintln!("refused: {err}");

    // Listening but never accepting: the kernel completes the handshake, nobody answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url: http::Uri = format!("http://{}/api/v1/write", silent.local_addr().unwrap())
        .parse()
        .unwrap();
    let client = Client {
        timeout: Duration::from_millis(300),
        tls: None,
    };
    let err = remote_write::push(&client, &url, body).await.unwrap_err();
    assert!(
        matches!(err, PushError::Exchange(http_client::Error::Timeout { .. })),
        "{err}"
    );
    assert!(err.retryable());
    eprintln!("silent: {err}");
}

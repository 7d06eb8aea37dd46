//! Prometheus remote write 1.0: the protobuf messages, families → time series, the snappy
//! block encoding, and the push client with its error classification and backoff.
//!
//! **Messages.** Derived by hand with `prost` (no protoc, no build script) from
//! Prometheus's `prompb/remote.proto` and `prompb/types.proto`, package `prometheus`:
//!
//! ```text
//! message WriteRequest   { repeated TimeSeries timeseries = 1; reserved 2;
//!                          repeated MetricMetadata metadata = 3; }
//! message TimeSeries     { repeated Label labels = 1; repeated Sample samples = 2; }
//! message Label          { string name = 1; string value = 2; }
//! message Sample         { double value = 1; int64 timestamp = 2; }
//! message MetricMetadata { MetricType type = 1; string metric_family_name = 2;
//!                          string help = 4; string unit = 5; }
//! ```
//!
//! Field 2 of `WriteRequest` is reserved (Cortex used it for the request's source).
//!
//! **Wire.** The body is the encoded `WriteRequest` compressed with snappy's *block*
//! format (`snap::raw`), not the framed/stream format, sent with `Content-Encoding:
//! snappy`, `Content-Type: application/x-protobuf` and `X-Prometheus-Remote-Write-Version:
//! 0.1.0`. A 2xx answer is success; 5xx and 429 are worth retrying after [`backoff`];
//! any other status is permanent for that body (see [`PushError::retryable`]).
//!
//! **Connections.** [`push`] sends with `rampart_telemetry::http_client`: one plain
//! HTTP/1.1 connection per push, closed after the response (the agent pushes every few
//! seconds over the management segment, where a connect costs less than keeping and
//! health-checking an idle connection). The whole exchange (connect, send, response
//! body) is bounded by [`Client::timeout`]; of an error answer only the start is read.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, DATE, USER_AGENT};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use rampart_telemetry::http_client::{self, Endpoint, Limits, Overflow};

use crate::Family;

/// The remote-write version header value of protocol 1.0.
pub const VERSION_HEADER: &str = "X-Prometheus-Remote-Write-Version";
/// What [`VERSION_HEADER`] says for remote write 1.0.
pub const VERSION: &str = "0.1.0";
/// The `User-Agent` of every push.
pub const USER_AGENT_VALUE: &str = concat!("rampart-agent/", env!("CARGO_PKG_VERSION"));

/// The first delay of [`backoff`].
pub const BACKOFF_FIRST: Duration = Duration::from_millis(250);
/// The longest delay of [`backoff`].
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// How much of an error response's body is read for its first line.
const ERROR_BODY_LIMIT: usize = 4096;
/// How long the first line of an error body kept in [`PushError::Status`] may be.
const ERROR_LINE_LIMIT: usize = 256;

/// `prometheus.WriteRequest`: one push.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries`: labels sorted by name and unique, samples in time order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`: a value at a time in milliseconds since the Unix epoch.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.MetricMetadata`: a family's type and help text (optional in 1.0).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    #[prost(enumeration = "MetricType", tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// `prometheus.MetricMetadata.MetricType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MetricType {
    Unknown = 0,
    Counter = 1,
    Gauge = 2,
    Histogram = 3,
    Gaugehistogram = 4,
    Summary = 5,
    Info = 6,
    Stateset = 7,
}

/// The label name of the metric name.
pub const NAME_LABEL: &str = "__name__";

/// One time series per sample of `families`, each with the single sample `(value,
/// timestamp_ms)`, in a canonical order (sorted by label set).
///
/// Labels: `__name__` is the family's name; the sample's labels follow, minus those with
/// an empty value (the same as no label in Prometheus) and those whose name starts with
/// `__` (reserved for Prometheus); within a sample the first of two equal names wins.
/// `extra_labels` (the agent's `instance`, `host`, ...) are added to every series, with
/// empty values skipped. On conflict the extra label **wins** and the sample's value is
/// kept as `exported_<name>` (prefixed again until free), which is what Prometheus does
/// to scraped labels that clash with target labels (`honor_labels: false`): the
/// identity of the pushing host can't be spoofed by a collector, and nothing is lost.
///
/// Families with an empty name are skipped. Two samples that end up with the same label
/// set would be the same series at the same timestamp (Prometheus rejects the second
/// with a different value), so only the first is kept.
pub fn series(
    families: &[Family],
    extra_labels: &[(String, String)],
    timestamp_ms: i64,
) -> Vec<TimeSeries> {
    let mut out: Vec<TimeSeries> = Vec::new();
    for family in families.iter().filter(|f| !f.name.is_empty()) {
        for sample in &family.samples {
            let mut labels: Vec<Label> = Vec::with_capacity(sample.labels.len() + 3);
            for (name, value) in &sample.labels {
                if value.is_empty()
                    || name.is_empty()
                    || name.starts_with("__")
                    || labels.iter().any(|l| &l.name == name)
                {
                    continue;
                }
                labels.push(label(name, value));
            }
            for (name, value) in extra_labels {
                if value.is_empty() || name.is_empty() || name == NAME_LABEL {
                    continue;
                }
                if let Some(i) = labels.iter().position(|l| &l.name == name) {
                    let mut exported = format!("exported_{name}");
                    while labels.iter().any(|l| l.name == exported)
                        || extra_labels.iter().any(|(n, _)| *n == exported)
                    {
                        exported.insert_str(0, "exported_");
                    }
                    labels[i].name = exported;
                }
                labels.push(label(name, value));
            }
            if sample.suffix.is_empty() {
                labels.push(label(NAME_LABEL, &family.name));
            } else {
                labels.push(label(
                    NAME_LABEL,
                    &format!("{}{}", family.name, sample.suffix),
                ));
            }
            labels.sort();
            out.push(TimeSeries {
                labels,
                samples: vec![Sample {
                    value: sample.value,
                    timestamp: timestamp_ms,
                }],
            });
        }
    }
    // Stable: of equal label sets the first pushed stays first and is the one kept.
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out.dedup_by(|later, earlier| later.labels == earlier.labels);
    out
}

fn label(name: &str, value: &str) -> Label {
    Label {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

/// A write request too large for snappy's block format (its length must fit in 32 bits).
#[derive(Debug, thiserror::Error)]
#[error("write request of {len} bytes is too large to compress: {source}")]
pub struct EncodeError {
    pub len: usize,
    #[source]
    pub source: snap::Error,
}

/// The push body of `req`: the protobuf encoding compressed with snappy's block format.
///
/// Fails only for an encoding of 4 GiB or more; the agent's batches are far smaller.
pub fn encode(req: &WriteRequest) -> Result<Vec<u8>, EncodeError> {
    let raw = prost::Message::encode_to_vec(req);
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .map_err(|source| EncodeError {
            len: raw.len(),
            source,
        })
}

/// Why a push body could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("snappy: {0}")]
    Snappy(String),
    #[error("the body decompresses to {len} bytes, more than the {max} allowed")]
    TooLarge { len: usize, max: usize },
    #[error("protobuf: {0}")]
    Protobuf(String),
}

/// Reads a push body (snappy block format, then the protobuf `WriteRequest`), refusing
/// one whose declared decompressed length exceeds `max` before allocating for it: the
/// receiving side of [`encode`], for whatever reads agents' pushes.
pub fn decode(body: &[u8], max: usize) -> Result<WriteRequest, DecodeError> {
    let len = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if len > max {
        return Err(DecodeError::TooLarge { len, max });
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| DecodeError::Snappy(e.to_string()))?;
    <WriteRequest as prost::Message>::decode(raw.as_slice())
        .map_err(|e| DecodeError::Protobuf(e.to_string()))
}

/// How pushes are made: the bound on one whole exchange and the `User-Agent`.
#[derive(Clone, Debug)]
pub struct Client {
    /// Connect, send and read the response, all within this.
    pub timeout: Duration,
    /// For an `https` URL: the CA the server must chain to and the host's client
    /// certificate (the ingest gate identifies the host by it).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for Client {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            tls: None,
        }
    }
}

/// A push the server accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    /// The 2xx status (Prometheus answers 204).
    pub status: StatusCode,
    /// The server's clock from its `Date` header, when it sent a valid one, so the agent
    /// can check that its samples are not from the server's future.
    pub date: Option<SystemTime>,
}

/// Why a push failed, classified by [`PushError::retryable`].
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The URL is not `http://host:port/path` (permanent).
    #[error("push url {url}: {reason}")]
    Url { url: String, reason: &'static str },
    /// No answer (retryable): the TCP connection could not be made, the whole exchange
    /// took longer than [`Client::timeout`], or it failed after connecting (reset,
    /// closed, malformed).
    #[error("push: {0}")]
    Exchange(#[from] http_client::Error),
    /// The server answered with a status other than 2xx: retryable for 5xx and 429,
    /// permanent otherwise. `message` is the first line of the response body.
    #[error("push to {addr}: {status}: {message}")]
    Status {
        addr: String,
        status: StatusCode,
        message: String,
    },
}

impl PushError {
    /// Whether sending the same body again later may succeed: connect errors, timeouts,
    /// broken exchanges, 5xx and 429. A permanent error (a bad URL, any other status)
    /// means the body is dropped, logged and counted.
    pub fn retryable(&self) -> bool {
        match self {
            PushError::Url { .. } => false,
            PushError::Exchange(_) => true,
            PushError::Status { status, .. } => status_retryable(*status),
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            PushError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn status_retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// Pushes `body` (from [`encode`]) to `url` (`https://198.18.9.2:9090/api/v1/write`, or
/// plain `http://`) with the remote-write headers, over a fresh HTTP/1.1 connection,
/// within `client.timeout`.
pub async fn push(client: &Client, url: &Uri, body: Bytes) -> Result<Pushed, PushError> {
    send(client, url, body, true).await
}

/// A Loki push (`/loki/api/v1/push`) with the same client, limits and error rules: the
/// body is protobuf compressed with snappy's block format as well, but Loki's API says
/// so with `Content-Type: application/x-protobuf` alone, without `Content-Encoding` or
/// the remote-write version header.
pub async fn push_logs(client: &Client, url: &Uri, body: Bytes) -> Result<Pushed, PushError> {
    send(client, url, body, false).await
}

async fn send(
    client: &Client,
    url: &Uri,
    body: Bytes,
    remote_write: bool,
) -> Result<Pushed, PushError> {
    let (endpoint, target) =
        Endpoint::from_url(url, client.tls.clone()).map_err(|reason| PushError::Url {
            url: url.to_string(),
            reason,
        })?;
    let origin = &endpoint.origin;
    let mut req = Request::new(body);
    *req.method_mut() = Method::POST;
    *req.uri_mut() = target;
    let headers = req.headers_mut();
    if remote_write {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        headers.insert(VERSION_HEADER, HeaderValue::from_static(VERSION));
    }
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-protobuf"),
    );
    headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    let limits = Limits {
        timeout: client.timeout,
        max_body: ERROR_BODY_LIMIT,
        overflow: Overflow::Truncate,
    };
    let resp = http_client::send_to(&endpoint, req, limits).await?;
    let date = resp
        .headers
        .get(DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    outcome(&origin.addr, resp.status, date, &resp.body)
}

/// Success for 2xx, else the classified [`PushError::Status`].
fn outcome(
    addr: &str,
    status: StatusCode,
    date: Option<SystemTime>,
    body: &[u8],
) -> Result<Pushed, PushError> {
    if status.is_success() {
        return Ok(Pushed { status, date });
    }
    Err(PushError::Status {
        addr: addr.to_owned(),
        status,
        message: first_line(body),
    })
}

/// The first non-empty line of `body`, lossily decoded and cut to a bounded length.
fn first_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    match line.char_indices().nth(ERROR_LINE_LIMIT) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_owned(),
    }
}

/// The upper bound of the delay before retry number `attempt` (0 for the first retry):
/// [`BACKOFF_FIRST`] doubled per attempt, capped at [`BACKOFF_CAP`].
pub fn backoff_ceiling(attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
    BACKOFF_FIRST
        .checked_mul(factor)
        .map_or(BACKOFF_CAP, |d| d.min(BACKOFF_CAP))
}

/// The delay before retry number `attempt`: "equal jitter", uniform in
/// `[ceiling / 2, ceiling]` of [`backoff_ceiling`], so agents that lost the monitor at
/// the same moment don't retry in step, yet each still waits at least half the ceiling
/// (125 ms, 250 ms, 500 ms, ... up to 15–30 s).
pub fn backoff(attempt: u32) -> Duration {
    jittered(backoff_ceiling(attempt), random_unit())
}

/// `ceiling * (1 + unit) / 2` for `unit` in `[0, 1)`.
fn jittered(ceiling: Duration, unit: f64) -> Duration {
    ceiling.mul_f64((1.0 + unit.clamp(0.0, 1.0)) / 2.0)
}

/// A number in `[0, 1)`, random enough for jitter: std's per-process random hash keys,
/// which change with every `RandomState` (no dependency on a random crate).
fn random_unit() -> f64 {
    let bits = RandomState::new().build_hasher().finish() >> 11;
    // 53 bits fit an f64's mantissa exactly.
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Family, Kind};
    use prost::Message;

    fn fam(name: &str, samples: &[(&[(&str, &str)], f64)]) -> Family {
        Family {
            name: name.into(),
            help: String::new(),
            kind: Kind::Gauge,
            samples: samples
                .iter()
                .map(|(labels, value)| crate::Sample {
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

    /// The series of `families` with `extra`, as `name=value,...` lines.
    fn render(families: &[Family], extra: &[(&str, &str)]) -> Vec<String> {
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        series(families, &extra, 7)
            .iter()
            .map(|ts| {
                assert_eq!(ts.samples.len(), 1);
                assert_eq!(ts.samples[0].timestamp, 7);
                let labels: Vec<String> = ts
                    .labels
                    .iter()
                    .map(|l| format!("{}={}", l.name, l.value))
                    .collect();
                format!("{} {}", labels.join(","), ts.samples[0].value)
            })
            .collect()
    }

    #[test]
    fn series_labels() {
        type Case<'a> = (
            &'a str,
            Vec<Family>,
            &'a [(&'a str, &'a str)],
            &'a [&'a str],
        );
        let cases: Vec<Case> = vec![
            (
                "name only",
                vec![fam("up", &[(&[], 1.0)])],
                &[],
                &["__name__=up 1"],
            ),
            (
                "sorted by name",
                vec![fam("m", &[(&[("zone", "b"), ("cpu", "0"), ("mode", "idle")], 2.5)])],
                &[],
                &["__name__=m,cpu=0,mode=idle,zone=b 2.5"],
            ),
            (
                "empty values dropped",
                vec![fam("m", &[(&[("a", ""), ("b", "x")], 1.0)])],
                &[("host", ""), ("instance", "web1")],
                &["__name__=m,b=x,instance=web1 1"],
            ),
            (
                "reserved names dropped, first duplicate wins",
                vec![fam("m", &[(&[("__name__", "evil"), ("__x", "y"), ("a", "1"), ("a", "2")], 1.0)])],
                &[("__name__", "evil")],
                &["__name__=m,a=1 1"],
            ),
            (
                "extra labels added and win, sample value kept as exported_",
                vec![fam("m", &[(&[("instance", "inner"), ("exported_instance", "x")], 3.0)])],
                &[("instance", "web1"), ("host", "web1")],
                &["__name__=m,exported_exported_instance=inner,exported_instance=x,host=web1,instance=web1 3"],
            ),
            (
                "empty family name skipped",
                vec![fam("", &[(&[], 1.0)]), fam("b", &[(&[], 2.0)])],
                &[],
                &["__name__=b 2"],
            ),
            (
                "series sorted, duplicates keep the first",
                vec![
                    fam("b", &[(&[("x", "1")], 1.0), (&[("x", "1"), ("y", "")], 9.0)]),
                    fam("a", &[(&[("x", "2")], 2.0), (&[("x", "1")], 3.0)]),
                ],
                &[],
                &["__name__=a,x=1 3", "__name__=a,x=2 2", "__name__=b,x=1 1"],
            ),
        ];
        for (what, families, extra, expected) in cases {
            assert_eq!(render(&families, extra), expected, "{what}");
        }
    }

    fn one_series() -> WriteRequest {
        WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![label("__name__", "up")],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1000,
                }],
            }],
            metadata: vec![],
        }
    }

    #[test]
    fn protobuf_bytes_match_a_hand_encoding() {
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0x0a, 0x1e,                     // WriteRequest.timeseries (1, LEN) 30 bytes
              0x0a, 0x0e,                   //   TimeSeries.labels (1, LEN) 14 bytes
                0x0a, 0x08, b'_', b'_', b'n', b'a', b'm', b'e', b'_', b'_', // name
                0x12, 0x02, b'u', b'p',     //     value
              0x12, 0x0c,                   //   TimeSeries.samples (2, LEN) 12 bytes
                0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, // value (1, I64) 1.0 little-endian
                0x10, 0xe8, 0x07,           //     timestamp (2, VARINT) 1000
        ];
        assert_eq!(one_series().encode_to_vec(), expected);

        let mut meta = WriteRequest::default();
        meta.metadata.push(MetricMetadata {
            r#type: MetricType::Counter as i32,
            metric_family_name: "c".into(),
            help: "h".into(),
            unit: String::new(),
        });
        // metadata (3, LEN) 8 bytes: type (1, VARINT) 1, name (2) "c", help (4) "h".
        let expected: &[u8] = &[0x1a, 0x08, 0x08, 0x01, 0x12, 0x01, b'c', 0x22, 0x01, b'h'];
        assert_eq!(meta.encode_to_vec(), expected);
    }

    #[test]
    fn encode_is_snappy_block_format_and_round_trips() {
        let body = encode(&one_series()).unwrap();
        // Block format starts with the uncompressed length as a varint (32); the framed
        // format would start with its stream identifier chunk (0xff 0x06 0 0 "sNaPpY").
        assert_eq!(body[0], 32);
        assert_ne!(body[0], 0xff);

        let families = vec![
            fam("node_load1", &[(&[], 0.25)]),
            fam(
                "node_cpu_seconds_total",
                &[
                    (&[("cpu", "0"), ("mode", "idle")], 1234.5),
                    (&[("cpu", "0"), ("mode", "user")], f64::MAX),
                ],
            ),
            fam("neg", &[(&[("x", "é ünicode")], -0.0)]),
        ];
        let extra = vec![("instance".to_owned(), "web1".to_owned())];
        let req = WriteRequest {
            timeseries: series(&families, &extra, 1_700_000_000_123),
            metadata: vec![],
        };
        let body = encode(&req).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let back = WriteRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(back, req);
        assert_eq!(back.timeseries.len(), 4);
        assert_eq!(super::decode(&body, 1 << 20), Ok(req));
    }

    #[test]
    fn decode_refuses_bad_snappy_oversized_bodies_and_bad_protobuf() {
        assert!(matches!(
            super::decode(b"\xff\xff\xff\xff\xff", 1 << 20),
            Err(DecodeError::Snappy(_))
        ));
        // A body that says it expands to 100 MB is refused before anything is allocated.
        let mut big = Vec::new();
        let mut n: u64 = 100 << 20;
        while n >= 0x80 {
            big.push((n as u8) | 0x80);
            n >>= 7;
        }
        big.push(n as u8);
        assert_eq!(
            super::decode(&big, 1 << 20),
            Err(DecodeError::TooLarge {
                len: 100 << 20,
                max: 1 << 20
            })
        );
        // Valid snappy around bytes that are not a WriteRequest (field 1 with a length
        // past the end).
        let body = snap::raw::Encoder::new()
            .compress_vec(&[0x0a, 0x7f, 0x01])
            .unwrap();
        assert!(matches!(
            super::decode(&body, 1 << 20),
            Err(DecodeError::Protobuf(_))
        ));
    }

    #[test]
    fn status_classification() {
        // (status, Ok?, retryable if not Ok)
        let cases = [
            (200, true, false),
            (204, true, false),
            (400, false, false),
            (404, false, false),
            (413, false, false),
            (429, false, true),
            (500, false, true),
            (503, false, true),
            (301, false, false),
        ];
        for (code, ok, retry) in cases {
            let status = StatusCode::from_u16(code).unwrap();
            let body = b"\n  out of bounds: sample too old\nsecond line\n";
            match outcome("a:1", status, None, body) {
                Ok(p) => {
                    assert!(ok, "{code} should fail");
                    assert_eq!(p.status, status);
                }
                Err(e) => {
                    assert!(!ok, "{code} should succeed");
                    assert_eq!(e.retryable(), retry, "{code}: {e}");
                    assert_eq!(e.status(), Some(status));
                    assert_eq!(
                        e.to_string(),
                        format!("push to a:1: {status}: out of bounds: sample too old")
                    );
                }
            }
        }
    }

    #[test]
    fn first_line_is_bounded() {
        assert_eq!(first_line(b""), "");
        assert_eq!(first_line(b"\r\nabc\r\ndef"), "abc");
        let long = "é".repeat(1000);
        let cut = first_line(long.as_bytes());
        assert_eq!(cut.chars().count(), ERROR_LINE_LIMIT + 3);
        assert!(cut.ends_with("..."));
    }

    #[test]
    fn backoff_doubles_then_caps() {
        let ms = |a| backoff_ceiling(a).as_millis();
        let cases = [
            (0, 250),
            (1, 500),
            (2, 1000),
            (3, 2000),
            (6, 16_000),
            (7, 30_000),
            (8, 30_000),
            (31, 30_000),
            (32, 30_000),
            (u32::MAX, 30_000),
        ];
        for (attempt, expected) in cases {
            assert_eq!(ms(attempt), expected, "attempt {attempt}");
        }
        assert_eq!(
            jittered(Duration::from_secs(30), 0.0),
            Duration::from_secs(15)
        );
        assert_eq!(
            jittered(Duration::from_secs(30), 1.0),
            Duration::from_secs(30)
        );
        for attempt in [0, 3, 7, 100] {
            let ceiling = backoff_ceiling(attempt);
            for _ in 0..100 {
                let d = backoff(attempt);
                assert!(d >= ceiling / 2 && d <= ceiling, "{attempt}: {d:?}");
            }
        }
        // The jitter does vary.
        let delays: std::collections::HashSet<Duration> = (0..20).map(|_| backoff(7)).collect();
        assert!(delays.len() > 1);
    }

    #[tokio::test]
    async fn unusable_urls_are_permanent() {
        // How URLs split is `http_client::Origin::from_url`'s (tested there); here, that a
        // bad one is never retried.
        for bad in ["https://a:1/w", "http://u:p@a:1/w", "/api/v1/write"] {
            let err = push(&Client::default(), &bad.parse().unwrap(), Bytes::new())
                .await
                .unwrap_err();
            assert!(!err.retryable(), "{bad}");
            assert!(err.to_string().starts_with("push url "), "{err}");
        }
    }
}

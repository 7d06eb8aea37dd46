//! The client of Prometheus's HTTP API: `/api/v1/query_range` and `/api/v1/query` over
//! HTTP/1.1 (over TLS with the dashboard's client certificate, or plain) with `rampart_telemetry::http_client` (one connection per query, as the
//! agent pushes), each answer bounded in size and time, and the JSON results turned into
//! [`Series`]. Errors are classified so the page
//! can say "Prometheus is unreachable" rather than "no data".

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, USER_AGENT};
use http::{HeaderValue, Request, StatusCode};
use rampart_telemetry::http_client::{self, Endpoint, Limits, Origin, Overflow};
use serde::Deserialize;

use crate::config::PromUrl;

const USER_AGENT_VALUE: &str = concat!("rampart-dashboard/", env!("CARGO_PKG_VERSION"));

/// One time series: its labels (without `__name__` when the query aggregated it away)
/// and its points `(unix seconds, value)`, in time order. Non-finite values are kept;
/// the chart leaves a gap for them.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(f64, f64)>,
}

/// Why a query gave no result.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PromError {
    #[error("connect to {addr}: {message}")]
    Connect { addr: String, message: String },
    #[error("{addr}: {message}")]
    Http { addr: String, message: String },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    #[error("answered {status}: {error_type}: {message}")]
    Api {
        status: u16,
        error_type: String,
        message: String,
    },
    #[error("unexpected answer: {0}")]
    Invalid(String),
}

impl PromError {
    /// True when Prometheus itself could not be reached (as opposed to a query it
    /// refused): the page then says so once instead of on every chart.
    pub fn unreachable(&self) -> bool {
        matches!(
            self,
            PromError::Connect { .. } | PromError::Http { .. } | PromError::Timeout(_)
        )
    }
}

/// The API client.
#[derive(Clone, Debug)]
pub struct Client {
    pub url: PromUrl,
    pub max_bytes: usize,
    /// For an `https` URL: trusts the run's CA, presents the dashboard's certificate.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// Percent-encodes `s` for a query string (RFC 3986 unreserved characters stay).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// `query` over `[start, end]` every `step` seconds (a matrix), answered within
    /// `timeout`.
    pub async fn query_range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
        timeout: Duration,
    ) -> Result<Vec<Series>, PromError> {
        let path = format!(
            "{}/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={step}",
            self.url.prefix,
            encode(query)
        );
        parse_response(&self.get(&path, timeout).await?)
    }

    /// `query` at `time` (a vector; a scalar becomes one series without labels),
    /// answered within `timeout`.
    pub async fn query(
        &self,
        query: &str,
        time: f64,
        timeout: Duration,
    ) -> Result<Vec<Series>, PromError> {
        let path = format!(
            "{}/api/v1/query?query={}&time={time:.3}",
            self.url.prefix,
            encode(query)
        );
        parse_response(&self.get(&path, timeout).await?)
    }

    /// GETs `path` within `timeout`: the status and the body (at most `max_bytes`).
    /// The log search uses it too, against the log store's Loki API.
    pub(crate) async fn get(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), PromError> {
        let endpoint = if self.url.tls {
            let url: http::Uri = format!("https://{}{path}", self.url.host)
                .parse()
                .map_err(|_| PromError::Invalid(format!("bad path {path}")))?;
            Endpoint::from_url(&url, self.tls.clone())
                .map_err(|e| PromError::Invalid(e.into()))?
                .0
        } else {
            Endpoint::plain(Origin {
                addr: self.url.addr.clone(),
                host: HeaderValue::from_str(&self.url.host)
                    .map_err(|_| PromError::Invalid("bad host".into()))?,
            })
        };
        let mut req = Request::new(Bytes::new());
        *req.uri_mut() = path
            .parse()
            .map_err(|_| PromError::Invalid(format!("bad path {path}")))?;
        let h = req.headers_mut();
        h.insert(ACCEPT, HeaderValue::from_static("application/json"));
        h.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        let limits = Limits {
            timeout,
            max_body: self.max_bytes,
            overflow: Overflow::Fail,
        };
        match http_client::send_to(&endpoint, req, limits).await {
            Ok(resp) => Ok((resp.status, resp.body)),
            Err(http_client::Error::Connect { addr, source }) => Err(PromError::Connect {
                addr,
                message: source.to_string(),
            }),
            Err(http_client::Error::Protocol { addr, source }) => Err(PromError::Http {
                addr,
                message: source.to_string(),
            }),
            Err(http_client::Error::Timeout { after, .. }) => Err(PromError::Timeout(after)),
            Err(http_client::Error::TooLarge { limit, .. }) => Err(PromError::TooLarge(limit)),
            Err(e @ http_client::Error::Request { .. }) => Err(PromError::Invalid(e.to_string())),
        }
    }
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    data: Option<ApiData>,
    #[serde(rename = "errorType", default)]
    error_type: String,
    #[serde(default)]
    error: String,
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct MatrixItem {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

#[derive(Deserialize)]
struct VectorItem {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

fn value(s: &str) -> Result<f64, PromError> {
    // Prometheus writes NaN, +Inf and -Inf, which Rust's parser accepts.
    s.parse()
        .map_err(|_| PromError::Invalid(format!("`{s}` is not a number")))
}

/// Turns an API answer into series: a matrix, vector or scalar result on success, else
/// the API's error (`errorType`, `error`) or the first line of a non-JSON body.
pub fn parse_response((status, body): &(StatusCode, Bytes)) -> Result<Vec<Series>, PromError> {
    let parsed: Result<ApiResponse, _> = serde_json::from_slice(body);
    let resp = match parsed {
        Ok(r) => r,
        Err(e) => {
            if !status.is_success() {
                let text = String::from_utf8_lossy(body);
                let line = text
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(200)
                    .collect();
                return Err(PromError::Api {
                    status: status.as_u16(),
                    error_type: "http".into(),
                    message: line,
                });
            }
            return Err(PromError::Invalid(format!("not JSON: {e}")));
        }
    };
    if resp.status != "success" {
        return Err(PromError::Api {
            status: status.as_u16(),
            error_type: resp.error_type,
            message: resp.error.chars().take(300).collect(),
        });
    }
    let data = resp
        .data
        .ok_or_else(|| PromError::Invalid("no data".into()))?;
    let invalid = |e: serde_json::Error| PromError::Invalid(e.to_string());
    match data.result_type.as_str() {
        "matrix" => {
            let items: Vec<MatrixItem> = serde_json::from_value(data.result).map_err(invalid)?;
            items
                .into_iter()
                .map(|m| {
                    Ok(Series {
                        labels: m.metric,
                        points: m
                            .values
                            .iter()
                            .map(|(t, v)| Ok((*t, value(v)?)))
                            .collect::<Result<_, PromError>>()?,
                    })
                })
                .collect()
        }
        "vector" => {
            let items: Vec<VectorItem> = serde_json::from_value(data.result).map_err(invalid)?;
            items
                .into_iter()
                .map(|m| {
                    Ok(Series {
                        labels: m.metric,
                        points: vec![(m.value.0, value(&m.value.1)?)],
                    })
                })
                .collect()
        }
        "scalar" => {
            let (t, v): (f64, String) = serde_json::from_value(data.result).map_err(invalid)?;
            Ok(vec![Series {
                labels: BTreeMap::new(),
                points: vec![(t, value(&v)?)],
            }])
        }
        other => Err(PromError::Invalid(format!("result type `{other}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(status: u16, body: &str, expected: &str) {
        let got = match parse_response(&(
            StatusCode::from_u16(status).unwrap(),
            Bytes::from(body.to_owned()),
        )) {
            Ok(series) => series
                .iter()
                .map(|s| format!("{:?} {:?}", s.labels, s.points))
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => format!("error {e}"),
        };
        assert_eq!(got, expected, "{body}");
    }

    #[test]
    fn api_answers() {
        check(
            200,
            r#"{"status":"success","data":{"resultType":"matrix","result":[
                {"metric":{"instance":"web1"},"values":[[1700000000,"1.5"],[1700000015.5,"NaN"]]},
                {"metric":{},"values":[]}]}}"#,
            "{\"instance\": \"web1\"} [(1700000000.0, 1.5), (1700000015.5, NaN)]\n{} []",
        );
        check(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[
                {"metric":{"__name__":"up","backend":"web1"},"value":[1700000000.123,"+Inf"]}]}}"#,
            "{\"__name__\": \"up\", \"backend\": \"web1\"} [(1700000000.123, inf)]",
        );
        check(
            200,
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"2"]}}"#,
            "{} [(1700000000.0, 2.0)]",
        );
        check(
            400,
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error"}"#,
            "error answered 400: bad_data: invalid parameter \"query\": 1:5: parse error",
        );
        check(
            503,
            "Service Unavailable\nmore",
            "error answered 503: http: Service Unavailable",
        );
        check(
            200,
            "<html>",
            "error unexpected answer: not JSON: expected value at line 1 column 1",
        );
        check(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"x"]}]}}"#,
            "error unexpected answer: `x` is not a number",
        );
        check(
            200,
            r#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#,
            "error unexpected answer: result type `string`",
        );
    }

    #[test]
    fn query_encoding() {
        assert_eq!(
            encode(r#"1 - avg by (instance) (rate(x{mode="idle"}[1m]))"#),
            "1%20-%20avg%20by%20%28instance%29%20%28rate%28x%7Bmode%3D%22idle%22%7D%5B1m%5D%29%29"
        );
    }
}

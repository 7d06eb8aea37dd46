//! The HTTP API over a [`Store`], independent of the transport: [`handle`] takes a
//! request's method, path, query string, content type and body, and returns the status,
//! content type and body Loki would.
//!
//! - `POST /loki/api/v1/push`: 204; a body that does not decode, 400 with the reason.
//! - `GET|POST /loki/api/v1/query_range`: `query`, `start` and `end` (as Loki's
//!   `parseTimestamp`: an integer of up to 10 digits is seconds, a longer one
//!   nanoseconds, a number with a `.` seconds with a fraction, else RFC 3339; default
//!   the last hour, or `since` before `end`), `limit` (default 100, at most 5000),
//!   `direction` (`backward`, the default, or `forward`), `step` (a duration or
//!   seconds; default the range over 250 points in whole seconds, at least 1 s). Log
//!   queries answer `streams`, metric queries `matrix`. `interval` is refused (400).
//! - `GET|POST /loki/api/v1/query`: a metric query at `time` (default now), `vector`; a
//!   log query is a 400, as Loki's documentation says.
//! - `GET|POST /loki/api/v1/labels`, `/loki/api/v1/label/<name>/values` and
//!   `/loki/api/v1/series` (`match[]`), over `start`/`end`/`since` (default the last 6
//!   hours), narrowed by a stream selector in `query`.
//! - `GET /ready`.
//!
//! Errors are Loki's: a 4xx with the message as plain text (413 for a push too large
//! once decompressed); times never overflow, whatever the parameters say.
//! The reference: <https://grafana.com/docs/loki/latest/reference/loki-http-api/>.

use serde_json::{json, Value};

use crate::logql::{parse, parse_duration, Query};
use crate::store::{Direction, Store, StoreError};

/// A response: status, content type, body.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// A push's outcome, for the server's counters.
    pub appended: Option<crate::store::Appended>,
}

impl Response {
    fn json(v: &Value) -> Response {
        Response {
            status: 200,
            content_type: "application/json",
            body: v.to_string().into_bytes(),
            appended: None,
        }
    }

    fn text(status: u16, msg: impl Into<String>) -> Response {
        let mut body = msg.into().into_bytes();
        body.push(b'\n');
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
            appended: None,
        }
    }
}

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 5000;
const HOUR: i64 = 3_600_000_000_000;

/// Decodes `application/x-www-form-urlencoded` text (a query string or a form body).
pub fn form(text: &str) -> Vec<(String, String)> {
    fn dec(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = |c: u8| (c as char).to_digit(16);
                    match (hex(b[i + 1]), hex(b[i + 2])) {
                        (Some(h), Some(l)) => {
                            out.push((h * 16 + l) as u8);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (dec(k), dec(v)),
            None => (dec(p), String::new()),
        })
        .collect()
}

/// A time parameter in nanoseconds: an integer of at most 10 digits is seconds, a
/// longer one nanoseconds; a decimal is seconds; else RFC 3339.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = s.parse().ok()?;
        return if s.len() <= 10 {
            n.checked_mul(1_000_000_000)
        } else {
            Some(n)
        };
    }
    if let Ok(f) = s.parse::<f64>() {
        return (f.is_finite() && f.abs() < 9.2e9).then_some((f * 1e9) as i64);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos()).ok()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn time_param(params: &[(String, String)], name: &str, default: i64) -> Result<i64, Response> {
    match param(params, name) {
        None | Some("") => Ok(default),
        Some(v) => parse_time(v).ok_or_else(|| {
            Response::text(
                400,
                format!("invalid {name}: {v:?} is not a time (nanoseconds, seconds or RFC 3339)"),
            )
        }),
    }
}

/// `start` and `end` as Loki reads them: `end` defaults to `now`; `start` to `since`
/// (a duration, default `default_since`) before the earlier of `end` and `now`; `end`
/// before `start` is a 400.
fn time_range(
    params: &[(String, String)],
    now: i64,
    default_since: i64,
) -> Result<(i64, i64), Response> {
    let end = time_param(params, "end", now)?;
    let since = match param(params, "since") {
        None | Some("") => default_since,
        Some(v) => parse_duration(v).ok_or_else(|| {
            Response::text(400, format!("invalid since {v:?}: a duration such as 1h"))
        })?,
    };
    let start = time_param(params, "start", end.min(now).saturating_sub(since))?;
    if end < start {
        return Err(Response::text(400, "end is before start"));
    }
    Ok((start, end))
}

/// The stream selector of a label or series request's `query` (or `match[]`).
fn selector(text: &str, name: &str) -> Result<crate::logql::LogQuery, Response> {
    match parse(text) {
        Ok(Query::Log(l)) => Ok(l),
        Ok(Query::Metric(_)) => Err(Response::text(
            400,
            format!(
                "invalid {name}: a stream selector such as {{host=\"web1\"}}, not a metric query"
            ),
        )),
        Err(e) => Err(Response::text(
            400,
            format!("invalid {name}: parse error: {e}"),
        )),
    }
}

/// A time in seconds as Loki writes a sample's: a JSON number, whole when it is.
fn secs_json(ns: i64) -> Value {
    if ns % 1_000_000_000 == 0 {
        json!(ns / 1_000_000_000)
    } else {
        json!(secs(ns))
    }
}

fn store_error(e: &StoreError) -> Response {
    match e {
        StoreError::Query(m) => Response::text(400, m.clone()),
        StoreError::Sqlite(..) => Response::text(500, e.to_string()),
    }
}

fn secs(ns: i64) -> f64 {
    ns as f64 / 1e9
}

/// Answers one request at `now` (nanoseconds).
pub fn handle(
    store: &Store,
    method: &str,
    path: &str,
    query: &str,
    content_type: &str,
    body: &[u8],
    now: i64,
) -> Response {
    let mut params = form(query);
    if method == "POST" && content_type.starts_with("application/x-www-form-urlencoded") {
        params.extend(form(&String::from_utf8_lossy(body)));
    }
    let result = match (method, path) {
        ("POST", "/loki/api/v1/push") => push(store, content_type, body, now),
        ("GET" | "POST", "/loki/api/v1/query_range") => query_range(store, &params, now),
        ("GET" | "POST", "/loki/api/v1/query") => instant(store, &params, now),
        ("GET" | "POST", "/loki/api/v1/labels") => labels(store, &params, now, None),
        ("GET" | "POST", p) if p.starts_with("/loki/api/v1/label/") && p.ends_with("/values") => {
            let name = p
                .get("/loki/api/v1/label/".len()..p.len() - "/values".len())
                .unwrap_or("");
            labels(store, &params, now, Some(name))
        }
        ("GET" | "POST", "/loki/api/v1/series") => series(store, &params, now),
        ("GET", "/ready") => Ok(Response::text(200, "ready")),
        (
            _,
            "/loki/api/v1/push"
            | "/loki/api/v1/query_range"
            | "/loki/api/v1/query"
            | "/loki/api/v1/labels"
            | "/loki/api/v1/series"
            | "/ready",
        ) => Err(Response::text(405, format!("{method} is not allowed here"))),
        _ => Err(Response::text(404, format!("{path}: not found"))),
    };
    result.unwrap_or_else(|e| e)
}

fn push(store: &Store, content_type: &str, body: &[u8], now: i64) -> Result<Response, Response> {
    let p = crate::push::decode(content_type, body)
        .and_then(|p| p.check_times(now).map(|()| p))
        .map_err(|e| Response::text(e.status(), e.to_string()))?;
    let appended = store.append(&p).map_err(|e| store_error(&e))?;
    Ok(Response {
        status: 204,
        content_type: "text/plain; charset=utf-8",
        body: Vec::new(),
        appended: Some(appended),
    })
}

fn parsed(params: &[(String, String)]) -> Result<Query, Response> {
    let q = param(params, "query").ok_or_else(|| Response::text(400, "missing query"))?;
    parse(q).map_err(|e| Response::text(400, format!("parse error: {e}")))
}

fn query_range(store: &Store, params: &[(String, String)], now: i64) -> Result<Response, Response> {
    let q = parsed(params)?;
    let (start, end) = time_range(params, now, HOUR)?;
    if !matches!(param(params, "interval"), None | Some("")) {
        return Err(Response::text(
            400,
            "interval is not supported by this store; leave it out",
        ));
    }
    match q {
        Query::Log(l) => {
            let limit = match param(params, "limit") {
                None | Some("") => DEFAULT_LIMIT,
                Some(v) => v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        Response::text(400, format!("invalid limit {v:?}: 1 to {MAX_LIMIT}"))
                    })?,
            };
            // Case does not matter (Loki upper-cases it).
            let direction = match param(params, "direction") {
                None | Some("") => Direction::Backward,
                Some(v) if v.eq_ignore_ascii_case("backward") => Direction::Backward,
                Some(v) if v.eq_ignore_ascii_case("forward") => Direction::Forward,
                Some(v) => {
                    return Err(Response::text(
                        400,
                        format!("invalid direction {v:?}: backward or forward"),
                    ))
                }
            };
            let streams = store
                .select(&l, start, end, limit, direction)
                .map_err(|e| store_error(&e))?;
            let result: Vec<Value> = streams
                .into_iter()
                .map(|(labels, values)| {
                    json!({
                        "stream": labels.to_json(),
                        "values": values.into_iter().map(|(t, line)| json!([t.to_string(), line])).collect::<Vec<_>>(),
                    })
                })
                .collect();
            Ok(Response::json(&json!({
                "status": "success",
                "data": {"resultType": "streams", "result": result, "stats": {}},
            })))
        }
        Query::Metric(m) => {
            let step = match param(params, "step") {
                // Loki's defaultQueryRangeStep: the range over 250, in whole seconds.
                None | Some("") => {
                    (end.saturating_sub(start) / 250 / 1_000_000_000).max(1) * 1_000_000_000
                }
                Some(v) => parse_duration(v)
                    .or_else(|| {
                        v.parse::<f64>()
                            .ok()
                            .filter(|f| *f > 0.0 && f.is_finite())
                            .map(|f| (f * 1e9) as i64)
                    })
                    .filter(|s| *s > 0)
                    .ok_or_else(|| {
                        Response::text(
                            400,
                            format!(
                                "invalid step {v:?}: a positive duration such as 30s, or seconds"
                            ),
                        )
                    })?,
            };
            let series = store
                .metric(&m, start, end, step)
                .map_err(|e| store_error(&e))?;
            let result: Vec<Value> = series
                .into_iter()
                .map(|(labels, points)| {
                    json!({
                        "metric": labels.to_json(),
                        "values": points.into_iter().map(|(t, v)| json!([secs_json(t), v.to_string()])).collect::<Vec<_>>(),
                    })
                })
                .collect();
            Ok(Response::json(&json!({
                "status": "success",
                "data": {"resultType": "matrix", "result": result, "stats": {}},
            })))
        }
    }
}

fn instant(store: &Store, params: &[(String, String)], now: i64) -> Result<Response, Response> {
    let Query::Metric(m) = parsed(params)? else {
        return Err(Response::text(
            400,
            "log queries are not supported as an instant query; use query_range",
        ));
    };
    let t = time_param(params, "time", now)?;
    let series = store.metric(&m, t, t, 1).map_err(|e| store_error(&e))?;
    let result: Vec<Value> = series
        .into_iter()
        .filter_map(|(labels, points)| {
            let (ts, v) = points.last().copied()?;
            Some(json!({"metric": labels.to_json(), "value": [secs_json(ts), v.to_string()]}))
        })
        .collect();
    Ok(Response::json(&json!({
        "status": "success",
        "data": {"resultType": "vector", "result": result, "stats": {}},
    })))
}

fn labels(
    store: &Store,
    params: &[(String, String)],
    now: i64,
    name: Option<&str>,
) -> Result<Response, Response> {
    let (start, end) = time_range(params, now, 6 * HOUR)?;
    let sel = match param(params, "query") {
        None | Some("") => None,
        Some(q) => Some(selector(q, "query")?),
    };
    let data = match name {
        None => store.label_names(start, end, sel.as_ref()),
        Some(n) => {
            if !crate::labels::valid_name(n) {
                return Err(Response::text(400, format!("{n:?} is not a label name")));
            }
            store.label_values(n, start, end, sel.as_ref())
        }
    }
    .map_err(|e| store_error(&e))?;
    Ok(Response::json(&json!({"status": "success", "data": data})))
}

fn series(store: &Store, params: &[(String, String)], now: i64) -> Result<Response, Response> {
    let (start, end) = time_range(params, now, 6 * HOUR)?;
    let selectors = params
        .iter()
        .filter(|(k, _)| k == "match[]" || k == "match")
        .map(|(_, v)| selector(v, "match[]"))
        .collect::<Result<Vec<_>, _>>()?;
    if selectors.is_empty() {
        return Err(Response::text(
            400,
            "missing match[]: at least one stream selector",
        ));
    }
    let data: Vec<Value> = store
        .series(&selectors, start, end)
        .map_err(|e| store_error(&e))?
        .iter()
        .map(crate::labels::Labels::to_json)
        .collect();
    Ok(Response::json(&json!({"status": "success", "data": data})))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const S: i64 = 1_000_000_000;

    fn get(store: &Store, path: &str, query: &str) -> (u16, Value) {
        let r = handle(store, "GET", path, query, "", b"", 100 * S);
        let v = serde_json::from_slice(&r.body)
            .unwrap_or(Value::String(String::from_utf8_lossy(&r.body).into_owned()));
        (r.status, v)
    }

    #[test]
    fn push_then_query_in_lokis_shapes() {
        let store = Store::in_memory().unwrap();
        let body = r#"{"streams":[{"stream":{"host":"web1","service":"web","stream":"access"},"values":[["10000000000","{\"path\":\"/m-1\",\"status\":200}"],["20000000000","{\"path\":\"/x\",\"status\":503}"]]}]}"#;
        let r = handle(
            &store,
            "POST",
            "/loki/api/v1/push",
            "",
            "application/json",
            body.as_bytes(),
            0,
        );
        assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
        let (st, v) = get(
            &store,
            "/loki/api/v1/query_range",
            "query=%7Bhost%3D%22web1%22%7D+%7C%3D+%22m-1%22&start=0&end=100",
        );
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["data"]["resultType"], "streams");
        assert_eq!(v["data"]["result"][0]["stream"]["host"], "web1");
        assert_eq!(v["data"]["result"][0]["values"][0][0], "10000000000");
        let (_, v) = get(
            &store,
            "/loki/api/v1/query_range",
            "query={host=\"web1\"} | json | status >= 500&start=0&end=100",
        );
        assert_eq!(v["data"]["result"][0]["stream"]["path"], "/x");
        let (_, v) = get(
            &store,
            "/loki/api/v1/query_range",
            "query=sum(count_over_time({host=\"web1\"}[1m]))&start=0&end=60&step=60",
        );
        assert_eq!(v["data"]["resultType"], "matrix");
        assert_eq!(v["data"]["result"][0]["values"][0], json!([60, "2"]));
        let (_, v) = get(
            &store,
            "/loki/api/v1/query",
            "query=count_over_time({host=\"web1\"}[1m])&time=60",
        );
        assert_eq!(v["data"]["result"][0]["value"], json!([60, "2"]));
        let (_, v) = get(&store, "/loki/api/v1/labels", "start=0&end=100");
        assert_eq!(v["data"], json!(["host", "service", "stream"]));
        let (_, v) = get(
            &store,
            "/loki/api/v1/label/service/values",
            "start=0&end=100",
        );
        assert_eq!(v["data"], json!(["web"]));
    }

    #[test]
    fn bad_requests_get_4xx_with_the_reason() {
        let store = Store::in_memory().unwrap();
        for (method, path, query, body, want_status, want) in [
            (
                "POST",
                "/loki/api/v1/push",
                "",
                &b"{"[..],
                400,
                "not a JSON push",
            ),
            (
                "GET",
                "/loki/api/v1/query_range",
                "",
                &b""[..],
                400,
                "missing query",
            ),
            (
                "GET",
                "/loki/api/v1/query_range",
                "query={",
                &b""[..],
                400,
                "parse error",
            ),
            (
                "GET",
                "/loki/api/v1/query_range",
                "query={a=\"b\"}&start=yesterday",
                &b""[..],
                400,
                "invalid start",
            ),
            (
                "GET",
                "/loki/api/v1/query_range",
                "query={a=\"b\"}&limit=0",
                &b""[..],
                400,
                "invalid limit",
            ),
            (
                "GET",
                "/loki/api/v1/query_range",
                "query={a=\"b\"}&start=10&end=5",
                &b""[..],
                400,
                "end is before start",
            ),
            (
                "GET",
                "/loki/api/v1/query",
                "query={a=\"b\"}",
                &b""[..],
                400,
                "instant",
            ),
            (
                "GET",
                "/loki/api/v1/label/1x/values",
                "",
                &b""[..],
                400,
                "not a label name",
            ),
            (
                "DELETE",
                "/loki/api/v1/push",
                "",
                &b""[..],
                405,
                "not allowed",
            ),
            ("GET", "/api/v1/query", "", &b""[..], 404, "not found"),
        ] {
            let ct = if method == "POST" {
                "application/json"
            } else {
                ""
            };
            let r = handle(&store, method, path, query, ct, body, 0);
            let text = String::from_utf8_lossy(&r.body);
            assert_eq!(r.status, want_status, "{method} {path}?{query}: {text}");
            assert!(text.contains(want), "{method} {path}?{query}: {text}");
        }
    }

    #[test]
    fn times_and_forms() {
        assert_eq!(parse_time("1700000000"), Some(1_700_000_000 * S));
        assert_eq!(
            parse_time("1700000000123456789"),
            Some(1_700_000_000_123_456_789)
        );
        assert_eq!(parse_time("1.5"), Some(1_500_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:02Z"), Some(2 * S));
        assert_eq!(parse_time("soon"), None);
        assert_eq!(
            form("a=%7B1%7D&b=x+y&c&d=%zz"),
            [
                ("a".into(), "{1}".into()),
                ("b".into(), "x y".into()),
                ("c".into(), String::new()),
                ("d".into(), "%zz".into())
            ]
        );
        assert_eq!(form("q=%C3%A9%&r=%\u{e9}")[0].1, "\u{e9}%");
    }
}

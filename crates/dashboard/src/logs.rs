//! The log search (issue 18): the page's query string turned into a [`Search`] (time
//! range, host, service, text, live tail), the search turned into LogQL, and the log
//! store's Loki API (`query_range`, `label/<name>/values`) asked over the same client as
//! Prometheus (mutual TLS, each answer bounded in size and time).
//!
//! Hosts and services are label values from bounded sets, so they are checked against a
//! strict character set; the text is any string, escaped into a LogQL string and matched
//! with `|=` (a plain substring, case-sensitive, as in Loki). Everything is validated
//! before the store is asked: a bad parameter is the page's 400, not the store's.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::prom::{self, PromError};

/// The time ranges the page offers, ending now: `(name, seconds)`.
pub const RANGES: &[(&str, i64)] = &[
    ("5m", 300),
    ("15m", 900),
    ("1h", 3600),
    ("6h", 6 * 3600),
    ("24h", 86_400),
    ("7d", 7 * 86_400),
];
/// Without a range: the last hour.
pub const DEFAULT_RANGE: &str = "1h";
/// Live tail shows this many seconds back from now.
pub const TAIL_WINDOW: i64 = 300;
/// The longest explicit `from`..`to` span.
pub const MAX_SPAN: i64 = 31 * 86_400;
/// The longest text filter.
pub const MAX_TEXT: usize = 256;

/// What the page searches for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Search {
    /// A host label value, or empty for every host.
    pub host: String,
    /// A service label value, or empty for every service.
    pub service: String,
    /// A substring the line must contain, or empty.
    pub text: String,
    /// One of [`RANGES`] (ignored with `from`/`to` or `tail`).
    pub range: &'static str,
    /// An explicit window, Unix seconds (an alert's link).
    pub window: Option<(i64, i64)>,
    /// Live tail: the last [`TAIL_WINDOW`], the page reloading itself.
    pub tail: bool,
}

impl Default for Search {
    fn default() -> Self {
        Search {
            host: String::new(),
            service: String::new(),
            text: String::new(),
            range: DEFAULT_RANGE,
            window: None,
            tail: false,
        }
    }
}

/// A label value the page accepts: 1-64 of `A-Z a-z 0-9 . _ -`.
fn label_value_ok(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Search {
    /// Whether `v` is a host the search takes (an alert's `instance` may not be).
    pub fn host_ok(v: &str) -> bool {
        label_value_ok(v)
    }

    /// The search in a query string's fields; an error names the field and what would
    /// be valid.
    pub fn from_params(
        params: &std::collections::HashMap<String, String>,
    ) -> Result<Search, String> {
        let mut s = Search::default();
        let field = |name: &str| params.get(name).map(|v| v.trim()).unwrap_or("");
        for (name, slot) in [("host", &mut s.host), ("service", &mut s.service)] {
            let v = field(name);
            if !v.is_empty() && !label_value_ok(v) {
                return Err(format!(
                    "{name}: expected 1-64 letters, digits, '.', '_' or '-'"
                ));
            }
            *slot = v.to_owned();
        }
        let text = params.get("q").map_or("", String::as_str);
        if text.chars().count() > MAX_TEXT || text.chars().any(|c| c.is_control()) {
            return Err(format!(
                "q: expected at most {MAX_TEXT} characters, no control characters"
            ));
        }
        s.text = text.to_owned();
        let range = field("range");
        if !range.is_empty() {
            s.range = RANGES
                .iter()
                .find(|(n, _)| *n == range)
                .map(|(n, _)| *n)
                .ok_or_else(|| {
                    let names: Vec<&str> = RANGES.iter().map(|(n, _)| *n).collect();
                    format!("range: expected one of {}", names.join(", "))
                })?;
        }
        let (from, to) = (field("from"), field("to"));
        if !from.is_empty() || !to.is_empty() {
            let secs = |name: &str, v: &str| {
                v.parse::<i64>()
                    .ok()
                    .filter(|t| (0..=32_503_680_000).contains(t))
                    .ok_or_else(|| format!("{name}: expected Unix seconds"))
            };
            let (from, to) = (secs("from", from)?, secs("to", to)?);
            if to < from || to - from > MAX_SPAN {
                return Err(format!(
                    "from, to: expected from <= to and at most {} days apart",
                    MAX_SPAN / 86_400
                ));
            }
            s.window = Some((from, to));
        }
        s.tail = matches!(field("tail"), "1" | "on" | "true");
        Ok(s)
    }

    /// The window searched at `now` (Unix seconds): `(from, to)`.
    pub fn window_at(&self, now: i64) -> (i64, i64) {
        if self.tail {
            return (now - TAIL_WINDOW, now);
        }
        if let Some(w) = self.window {
            return w;
        }
        let secs = RANGES
            .iter()
            .find(|(n, _)| *n == self.range)
            .map_or(3600, |(_, s)| *s);
        (now - secs, now)
    }

    /// The LogQL: a selector of the host and service (every host when neither is set;
    /// Loki wants a matcher that the empty value fails) and the text as `|=`.
    pub fn logql(&self) -> String {
        let mut matchers = Vec::new();
        if !self.host.is_empty() {
            matchers.push(format!("host=\"{}\"", self.host));
        }
        if !self.service.is_empty() {
            matchers.push(format!("service=\"{}\"", self.service));
        }
        if matchers.is_empty() {
            matchers.push("host=~\".+\"".to_owned());
        }
        let mut q = format!("{{{}}}", matchers.join(", "));
        if !self.text.is_empty() {
            q.push_str(" |= \"");
            for c in self.text.chars() {
                match c {
                    '"' => q.push_str("\\\""),
                    '\\' => q.push_str("\\\\"),
                    c => q.push(c),
                }
            }
            q.push('"');
        }
        q
    }

    /// The page's own query string for this search (links keep the filters).
    pub fn query_string(&self, tail: bool) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("host", &self.host),
            ("service", &self.service),
            ("q", &self.text),
        ] {
            if !v.is_empty() {
                parts.push(format!("{k}={}", prom::encode(v)));
            }
        }
        if tail {
            parts.push("tail=1".to_owned());
        } else if let Some((from, to)) = self.window {
            parts.push(format!("from={from}&to={to}"));
        } else {
            parts.push(format!("range={}", self.range));
        }
        parts.join("&")
    }
}

/// One log line found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Unix nanoseconds.
    pub ts: i64,
    pub labels: BTreeMap<String, String>,
    pub line: String,
}

#[derive(Deserialize)]
struct StreamsAnswer {
    status: String,
    data: StreamsData,
}

#[derive(Deserialize)]
struct StreamsData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<StreamItem>,
}

#[derive(Deserialize)]
struct StreamItem {
    stream: BTreeMap<String, String>,
    values: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct ValuesAnswer {
    status: String,
    #[serde(default)]
    data: Vec<String>,
}

/// The store's error answer: Loki answers errors as plain text, so the first line.
fn api_error(status: http::StatusCode, body: &[u8]) -> PromError {
    let text = String::from_utf8_lossy(body);
    PromError::Api {
        status: status.as_u16(),
        error_type: "logs".into(),
        message: text
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(300)
            .collect(),
    }
}

/// Entries of a `streams` answer, newest first, at most `limit`.
pub fn parse_streams(
    (status, body): &(http::StatusCode, bytes::Bytes),
    limit: usize,
) -> Result<Vec<Entry>, PromError> {
    if !status.is_success() {
        return Err(api_error(*status, body));
    }
    let a: StreamsAnswer = serde_json::from_slice(body)
        .map_err(|e| PromError::Invalid(format!("not a streams answer: {e}")))?;
    if a.status != "success" || a.data.result_type != "streams" {
        return Err(PromError::Invalid(format!(
            "status {}, result type {}",
            a.status, a.data.result_type
        )));
    }
    let mut out = Vec::new();
    for s in a.data.result {
        for (ts, line) in s.values {
            let ts = ts
                .parse::<i64>()
                .map_err(|_| PromError::Invalid(format!("timestamp `{ts}` is not a number")))?;
            out.push(Entry {
                ts,
                labels: s.stream.clone(),
                line,
            });
        }
    }
    out.sort_by(|a, b| b.ts.cmp(&a.ts).then_with(|| a.labels.cmp(&b.labels)));
    out.truncate(limit);
    Ok(out)
}

/// The values of a `label/<name>/values` answer.
pub fn parse_values(
    (status, body): &(http::StatusCode, bytes::Bytes),
) -> Result<Vec<String>, PromError> {
    if !status.is_success() {
        return Err(api_error(*status, body));
    }
    let a: ValuesAnswer = serde_json::from_slice(body)
        .map_err(|e| PromError::Invalid(format!("not a values answer: {e}")))?;
    if a.status != "success" {
        return Err(PromError::Invalid(format!("status {}", a.status)));
    }
    Ok(a.data)
}

/// What the search page is drawn from.
#[derive(Debug)]
pub struct Found {
    pub window: (i64, i64),
    pub entries: Result<Vec<Entry>, PromError>,
    pub hosts: Vec<String>,
    pub services: Vec<String>,
}

/// Asks the store for the search's lines (newest first, at most `limit`) and for the
/// hosts and services it knows in the window, all three at once within `timeout`.
pub async fn search(
    client: &prom::Client,
    s: &Search,
    now: i64,
    limit: usize,
    timeout: Duration,
) -> Found {
    let window = s.window_at(now);
    let (start, end) = (window.0 * 1_000_000_000, (window.1 + 1) * 1_000_000_000);
    let lines = format!(
        "{}/loki/api/v1/query_range?query={}&start={start}&end={end}&limit={limit}&direction=backward",
        client.url.prefix,
        prom::encode(&s.logql())
    );
    let values = |name: &str| {
        format!(
            "{}/loki/api/v1/label/{name}/values?start={start}&end={end}",
            client.url.prefix
        )
    };
    let (hosts_path, services_path) = (values("host"), values("service"));
    let (entries, hosts, services) = tokio::join!(
        client.get(&lines, timeout),
        client.get(&hosts_path, timeout),
        client.get(&services_path, timeout),
    );
    let list = |r: Result<(http::StatusCode, bytes::Bytes), PromError>| {
        r.and_then(|a| parse_values(&a)).unwrap_or_default()
    };
    Found {
        window,
        entries: entries.and_then(|a| parse_streams(&a, limit)),
        hosts: list(hosts),
        services: list(services),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn searches_become_logql() {
        let s = Search::from_params(&params(&[])).unwrap();
        assert_eq!(s.logql(), "{host=~\".+\"}");
        assert_eq!(s.window_at(10_000), (10_000 - 3600, 10_000));
        let s = Search::from_params(&params(&[
            ("host", "web1"),
            ("service", "web"),
            ("q", r#"say "hi" \ now"#),
            ("range", "15m"),
        ]))
        .unwrap();
        assert_eq!(
            s.logql(),
            r#"{host="web1", service="web"} |= "say \"hi\" \\ now""#
        );
        assert_eq!(s.window_at(10_000), (9100, 10_000));
        assert_eq!(
            s.query_string(false),
            "host=web1&service=web&q=say%20%22hi%22%20%5C%20now&range=15m"
        );
        let s = Search::from_params(&params(&[
            ("service", "keeper"),
            ("from", "100"),
            ("to", "700"),
        ]))
        .unwrap();
        assert_eq!(s.logql(), "{service=\"keeper\"}");
        assert_eq!(s.window_at(10_000), (100, 700));
        assert_eq!(s.query_string(false), "service=keeper&from=100&to=700");
        let s = Search::from_params(&params(&[("tail", "1"), ("from", "1"), ("to", "2")])).unwrap();
        assert_eq!(s.window_at(10_000), (10_000 - TAIL_WINDOW, 10_000));
        assert_eq!(s.query_string(true), "tail=1");
    }

    #[test]
    fn bad_searches_name_the_field() {
        for (pairs, expected) in [
            (&[("host", "web1\"}")][..], "host: expected"),
            (&[("service", "x y")][..], "service: expected"),
            (&[("range", "2y")][..], "range: expected one of 5m, 15m"),
            (
                &[("from", "soon"), ("to", "1")][..],
                "from: expected Unix seconds",
            ),
            (&[("from", "5")][..], "to: expected Unix seconds"),
            (&[("from", "9"), ("to", "5")][..], "from, to: expected"),
            (&[("q", "a\nb")][..], "q: expected at most"),
        ] {
            let e = Search::from_params(&params(pairs)).unwrap_err();
            assert!(e.starts_with(expected), "{pairs:?}: {e}");
        }
        let long = "x".repeat(MAX_TEXT + 1);
        assert!(Search::from_params(&params(&[("q", &long)])).is_err());
    }

    #[test]
    fn store_answers() {
        let ok = |body: &str| (http::StatusCode::OK, bytes::Bytes::from(body.to_owned()));
        let got = parse_streams(
            &ok(
                r#"{"status":"success","data":{"resultType":"streams","result":[
                {"stream":{"host":"web1"},"values":[["300","c"],["100","a"]]},
                {"stream":{"host":"lb1"},"values":[["200","b"]]}],"stats":{}}}"#,
            ),
            2,
        )
        .unwrap();
        let lines: Vec<(i64, &str)> = got.iter().map(|e| (e.ts, e.line.as_str())).collect();
        assert_eq!(lines, [(300, "c"), (200, "b")]);
        assert_eq!(got[1].labels["host"], "lb1");
        let e = parse_streams(
            &(
                http::StatusCode::BAD_REQUEST,
                bytes::Bytes::from_static(b"parse error at 1:3: expected a matcher\n"),
            ),
            10,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "answered 400: logs: parse error at 1:3: expected a matcher"
        );
        assert!(parse_streams(
            &ok(r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#),
            1
        )
        .is_err());
        assert_eq!(
            parse_values(&ok(r#"{"status":"success","data":["lb1","web1"]}"#)).unwrap(),
            ["lb1", "web1"]
        );
    }
}

//! Scraping a local service's `/metrics` (the load balancer's and web server's admin
//! listeners): one bounded HTTP/1.1 GET (`rampart_telemetry::http_client`), and a parser of the Prometheus text format and
//! OpenMetrics text (which `prometheus-client` writes) into [`Family`]s.
//!
//! Parsing choices: a sample belongs to the family its `# TYPE` line named when its name
//! is that name plus one of the family's suffixes (`_total` for a counter; `_bucket`,
//! `_sum`, `_count` for a histogram or summary, `_gsum`/`_gcount` for a gauge histogram;
//! `_info` for info); `_created` samples are dropped (a start time, not a value worth
//! storing per interval); sample timestamps are ignored (the agent stamps every sample of
//! a collection with one time). A line that doesn't parse is skipped and counted; the
//! rest of the scrape is kept.

use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, USER_AGENT};
use http::{HeaderValue, Request, StatusCode, Uri};
use rampart_telemetry::http_client::{self, Limits, Origin, Overflow};

use crate::{Family, Kind, Sample};

/// The largest `/metrics` body read; a bigger one is an error, not a partial scrape.
pub const MAX_BODY: usize = 8 << 20;

/// Why a scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("scrape {url}: {reason}")]
    Url { url: String, reason: &'static str },
    /// No response: connect, timeout, a body over [`MAX_BODY`], a broken exchange.
    #[error("scrape {url}: {source}")]
    Exchange {
        url: String,
        #[source]
        source: http_client::Error,
    },
    #[error("scrape {url}: status {status}")]
    Status { url: String, status: StatusCode },
}

/// GETs `url` within `timeout` and returns the body.
pub async fn fetch(url: &Uri, timeout: Duration) -> Result<Bytes, ScrapeError> {
    let (origin, target) = Origin::from_url(url).map_err(|reason| ScrapeError::Url {
        url: url.to_string(),
        reason,
    })?;
    let mut req = Request::new(Bytes::new());
    *req.uri_mut() = target;
    let h = req.headers_mut();
    h.insert(
        ACCEPT,
        HeaderValue::from_static(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        ),
    );
    h.insert(USER_AGENT, HeaderValue::from_static("rampart-agent"));
    let limits = Limits {
        timeout,
        max_body: MAX_BODY,
        overflow: Overflow::Fail,
    };
    let resp = http_client::send(&origin, req, limits)
        .await
        .map_err(|source| ScrapeError::Exchange {
            url: url.to_string(),
            source,
        })?;
    if !resp.status.is_success() {
        return Err(ScrapeError::Status {
            url: url.to_string(),
            status: resp.status,
        });
    }
    Ok(resp.body)
}

/// The families of a text-format body, in the order their first line appeared, and the
/// number of lines skipped as malformed.
pub fn parse(text: &str) -> (Vec<Family>, usize) {
    let mut families: Vec<Family> = Vec::new();
    let mut bad = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let mut parts = rest.trim_start().splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    let kind = match kind.trim() {
                        "counter" => Kind::Counter,
                        "gauge" => Kind::Gauge,
                        "histogram" => Kind::Histogram,
                        _ => Kind::Untyped,
                    };
                    family_mut(&mut families, name).kind = kind;
                }
                (Some("HELP"), Some(name), help) => {
                    family_mut(&mut families, name).help = unescape_help(help.unwrap_or(""));
                }
                _ => {} // `# EOF`, `# UNIT`, comments
            }
            continue;
        }
        match sample_line(line) {
            Some((name, labels, value)) => {
                if name.ends_with("_created") && declared(&families, &name[..name.len() - 8]) {
                    continue;
                }
                let (family, suffix) = owner(&families, name);
                let sample = Sample {
                    labels,
                    value,
                    suffix,
                };
                family_mut(&mut families, &family).samples.push(sample);
            }
            None => bad += 1,
        }
    }
    families.retain(|f| !f.samples.is_empty());
    (families, bad)
}

fn declared(families: &[Family], name: &str) -> bool {
    families.iter().any(|f| f.name == name)
}

/// The family a sample named `name` belongs to and the suffix it adds.
fn owner(families: &[Family], name: &str) -> (String, &'static str) {
    const SUFFIXES: [&str; 7] = [
        "_total", "_bucket", "_sum", "_count", "_gsum", "_gcount", "_info",
    ];
    for suffix in SUFFIXES {
        if let Some(base) = name.strip_suffix(suffix) {
            if let Some(f) = families.iter().find(|f| f.name == base) {
                let fits = match f.kind {
                    Kind::Counter => suffix == "_total",
                    Kind::Histogram => matches!(suffix, "_bucket" | "_sum" | "_count"),
                    _ => true,
                };
                if fits {
                    return (base.to_owned(), suffix);
                }
            }
        }
    }
    (name.to_owned(), "")
}

fn family_mut<'a>(families: &'a mut Vec<Family>, name: &str) -> &'a mut Family {
    let i = match families.iter().position(|f| f.name == name) {
        Some(i) => i,
        None => {
            families.push(Family {
                name: name.to_owned(),
                help: String::new(),
                kind: Kind::Untyped,
                samples: Vec::new(),
            });
            families.len() - 1
        }
    };
    &mut families[i]
}

fn unescape_help(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

type Labels = Vec<(String, String)>;

/// `name{a="b",c="d"} value [timestamp]`.
fn sample_line(line: &str) -> Option<(&str, Labels, f64)> {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = &line[..name_end];
    if !valid_name(name) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut s = after;
        loop {
            s = s.trim_start_matches([' ', ',']);
            if let Some(r) = s.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = s.find('=')?;
            let lname = s[..eq].trim();
            if !valid_name(lname) || lname.contains(':') {
                return None;
            }
            s = s[eq + 1..].trim_start().strip_prefix('"')?;
            let mut value = String::new();
            let mut chars = s.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '"' => break i,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    c => value.push(c),
                }
            };
            s = &s[end + 1..];
            if !lname.is_empty() && !value.is_empty() {
                labels.push((lname.to_owned(), value));
            }
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    Some((name, labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expo;

    /// Parses `input` and renders it back in the text format.
    fn check(input: &str, expect: &str, expect_bad: usize) {
        let (families, bad) = parse(input);
        assert_eq!(expo::text(&families), expect, "input:\n{input}");
        assert_eq!(bad, expect_bad);
    }

    #[test]
    fn openmetrics_counters_histograms_and_gauges() {
        check(
            "# HELP rampart_lb_requests Requests.\n\
             # TYPE rampart_lb_requests counter\n\
             rampart_lb_requests_total{code_class=\"2xx\",backend=\"web1\"} 12\n\
             rampart_lb_requests_created{code_class=\"2xx\",backend=\"web1\"} 1.7e9\n\
             # TYPE rampart_lb_request_duration_seconds histogram\n\
             rampart_lb_request_duration_seconds_sum 0.5\n\
             rampart_lb_request_duration_seconds_count 3\n\
             rampart_lb_request_duration_seconds_bucket{le=\"0.1\"} 2\n\
             rampart_lb_request_duration_seconds_bucket{le=\"+Inf\"} 3\n\
             # TYPE rampart_lb_backend_up gauge\n\
             rampart_lb_backend_up{backend=\"web1\"} 1\n\
             # EOF\n",
            "# HELP rampart_lb_requests Requests.\n\
             # TYPE rampart_lb_requests counter\n\
             rampart_lb_requests_total{code_class=\"2xx\",backend=\"web1\"} 12\n\
             # TYPE rampart_lb_request_duration_seconds histogram\n\
             rampart_lb_request_duration_seconds_sum 0.5\n\
             rampart_lb_request_duration_seconds_count 3\n\
             rampart_lb_request_duration_seconds_bucket{le=\"0.1\"} 2\n\
             rampart_lb_request_duration_seconds_bucket{le=\"+Inf\"} 3\n\
             # TYPE rampart_lb_backend_up gauge\n\
             rampart_lb_backend_up{backend=\"web1\"} 1\n",
            0,
        );
    }

    #[test]
    fn classic_text_format_with_total_in_the_family_name_and_timestamps() {
        check(
            "# TYPE node_load1 gauge\nnode_load1 0.5 1700000000000\n\
             # TYPE x_total counter\nx_total 3\nuntyped_thing 7\n",
            "# TYPE node_load1 gauge\nnode_load1 0.5\n# TYPE x_total counter\nx_total 3\n\
             # TYPE untyped_thing untyped\nuntyped_thing 7\n",
            0,
        );
    }

    #[test]
    fn escapes_in_label_values_and_help() {
        check(
            "# HELP m a\\\\b\\nc\nm{path=\"a\\\"b\\\\c\\nd\",empty=\"\"} 1\n",
            "# HELP m a\\\\b\\nc\n# TYPE m untyped\nm{path=\"a\\\"b\\\\c\\nd\"} 1\n",
            0,
        );
    }

    #[test]
    fn malformed_lines_are_skipped_and_counted() {
        check(
            "ok 1\n9bad 1\nm{a=\"1\" 2\nm{a=1} 2\nnovalue\nm x\nm{a=\"x\"} +Inf\n",
            "# TYPE ok untyped\nok 1\n# TYPE m untyped\nm{a=\"x\"} +Inf\n",
            5,
        );
    }
}

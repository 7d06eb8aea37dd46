//! The CRS regression suites' requests, built as go-ftw (the CRS's test runner) builds
//! them from their YAML, v3 (`log_contains`) and v4 (`log.expect_ids`) alike: shared by
//! `crs_regression.rs` (our verdicts) and `modsec_parity.rs` (ours against
//! ModSecurity's).

use std::path::{Path, PathBuf};

use yaml_rust2::Yaml;

/// Every `.yaml` file under `dir`.
pub fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml") {
            out.push(p);
        }
    }
}

/// The ids in a v3 `log_contains: id "942100"` pattern.
pub fn ids_in(text: &str) -> Vec<u64> {
    text.split("id ")
        .skip(1)
        .filter_map(|r| {
            r.trim_start_matches(['"', '\\'])
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// One stage: the bytes to send, whether it is a HEAD, and the ids expected and refused.
pub struct Stage {
    pub raw: Vec<u8>,
    pub head: bool,
    pub expect: Vec<u64>,
    pub reject: Vec<u64>,
}

/// A stage as go-ftw sends it.
pub fn stage(y: &Yaml) -> Stage {
    let y = if y["stage"].is_badvalue() {
        y
    } else {
        &y["stage"]
    };
    let input = &y["input"];
    let output = &y["output"];
    let (expect, reject) = if output["log"].is_badvalue() {
        (
            ids_in(output["log_contains"].as_str().unwrap_or_default()),
            ids_in(output["no_log_contains"].as_str().unwrap_or_default()),
        )
    } else {
        let ids = |y: &Yaml| -> Vec<u64> {
            y.as_vec()
                .map(|v| {
                    v.iter()
                        .filter_map(|i| i.as_i64())
                        .map(|i| i as u64)
                        .collect()
                })
                .unwrap_or_default()
        };
        (
            ids(&output["log"]["expect_ids"]),
            ids(&output["log"]["no_expect_ids"]),
        )
    };
    let s = |y: &Yaml, d: &str| y.as_str().map_or_else(|| d.to_owned(), str::to_owned);
    let method = s(&input["method"], "GET");
    let head = method.eq_ignore_ascii_case("HEAD");
    if let Some(e) = input["encoded_request"].as_str() {
        let raw = rampart_waf::transform::apply("base64Decode", e.trim().as_bytes())
            .map(|c| c.into_owned())
            .unwrap_or_default();
        return Stage {
            raw,
            head,
            expect,
            reject,
        };
    }
    if let Some(r) = input["raw_request"].as_str() {
        return Stage {
            raw: r.as_bytes().to_vec(),
            head,
            expect,
            reject,
        };
    }
    let uri = s(&input["uri"], "/");
    let version = s(&input["version"], "HTTP/1.1");
    let data = match &input["data"] {
        Yaml::String(d) => d.clone(),
        Yaml::Array(lines) => lines
            .iter()
            .filter_map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\r\n"),
        _ => String::new(),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(h) = input["headers"].as_hash() {
        for (k, v) in h {
            let v = match v {
                Yaml::String(s) => s.clone(),
                Yaml::Integer(i) => i.to_string(),
                Yaml::Real(r) => r.clone(),
                _ => String::new(),
            };
            headers.push((k.as_str().unwrap_or_default().to_owned(), v));
        }
    }
    // go-ftw sends multipart bodies with CRLF line ends.
    let multipart = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v.starts_with("multipart/"));
    let data = if multipart && !data.contains("\r\n") {
        data.replace('\n', "\r\n")
    } else {
        data
    };
    let autocomplete = input["autocomplete_headers"].as_bool().unwrap_or(true);
    let has = |hs: &[(String, String)], n: &str| hs.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if autocomplete {
        if !has(&headers, "host") {
            headers.push(("Host".into(), "localhost".into()));
        }
        if !has(&headers, "connection") {
            headers.push(("Connection".into(), "close".into()));
        }
        if !data.is_empty() {
            if !has(&headers, "content-type") {
                headers.push((
                    "Content-Type".into(),
                    "application/x-www-form-urlencoded".into(),
                ));
            }
            if !has(&headers, "content-length") {
                headers.push(("Content-Length".into(), data.len().to_string()));
            }
        }
    }
    let mut raw = format!("{method} {uri} {version}\r\n").into_bytes();
    for (k, v) in &headers {
        raw.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(data.as_bytes());
    Stage {
        raw,
        head,
        expect,
        reject,
    }
}

/// A request's first line, escaped and cut short, for failure reports.
pub fn first_line(raw: &[u8]) -> String {
    let line = raw.split(|b| *b == b'\n').next().unwrap_or_default();
    let text = String::from_utf8_lossy(&line[..line.len().min(160)])
        .escape_debug()
        .to_string();
    text
}

//! gotestwaf's payload sets (`../shared/waf-payloads/gotestwaf/testcases`, MIT) against
//! the real load balancer with Debian's CRS in block mode at paranoia level 1, as the
//! built-in topology runs it. Each payload goes through each of its set's encoders
//! (`Plain`, `URL`: Go's `url.QueryEscape`, `Base64Flat`: base64 without padding) into
//! each of its placeholders, built as gotestwaf builds them: `URLPath` (`/<payload>`),
//! `URLParam` (`/?<name>=<payload>`), `Header` (`X-<name>: <payload>`), `UserAgent`,
//! `HTMLForm` (an urlencoded POST), `HTMLMultipartForm`, `JSONRequest` (a JSON object
//! with the payload as a string value, JSON-escaped), `XMLBody`, `SOAPBody`, `GraphQL`
//! (GET `?query=` or a POSTed body) and `RawRequest` (its method, path, headers and
//! body). gRPC placeholders are counted apart: the load balancer does not carry gRPC.
//!
//! An attack counts as stopped when it is not forwarded: 403 from the WAF, or a 4xx the
//! load balancer answers itself (a request target RFC 3986 does not allow, a body over
//! the limit); the report keeps the two apart. `false-pos` is the benign set: a payload
//! there passes when it is forwarded. Prints the rates per set; the floors asserted are
//! the rates reached (a ratchet).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

mod wafsite;

use wafsite::{debian_crs, shared, WafSite};
use yaml_rust2::{Yaml, YamlLoader};

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char);
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn base64_flat(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..=c.len() {
            out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn encode(encoder: &str, payload: &str) -> Option<String> {
    match encoder {
        "Plain" => Some(payload.to_owned()),
        "URL" => Some(query_escape(payload)),
        "Base64Flat" => Some(base64_flat(payload)),
        _ => None,
    }
}

fn request(method: &str, path: &str, headers: &[(&str, String)], body: &str) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: www.foobar.com\r\n");
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if !has("user-agent") {
        r.push_str("User-Agent: Mozilla/5.0 (X11; Linux x86_64) gotestwaf-payloads\r\n");
    }
    if !has("accept") {
        r.push_str("Accept: */*\r\n");
    }
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("Connection: close\r\n\r\n");
    r.push_str(body);
    r.into_bytes()
}

/// The request for `payload` (already encoded) in `placeholder`; `None` for gRPC.
fn place(placeholder: &Yaml, payload: &str) -> Option<Vec<u8>> {
    let (name, spec) = match placeholder {
        Yaml::String(s) => (s.as_str(), &Yaml::Null),
        Yaml::Hash(h) => {
            let (k, v) = h.iter().next()?;
            (k.as_str()?, v)
        }
        _ => return None,
    };
    let form = (
        "Content-Type",
        "application/x-www-form-urlencoded".to_owned(),
    );
    Some(match name {
        "URLPath" => request("GET", &format!("/{payload}"), &[], ""),
        "URLParam" => request("GET", &format!("/?gtw={payload}"), &[], ""),
        "Header" => request("GET", "/", &[("X-Gtw", payload.to_owned())], ""),
        "UserAgent" => request("GET", "/", &[("User-Agent", payload.to_owned())], ""),
        "HTMLForm" => request("POST", "/", &[form], &format!("gtw={payload}")),
        "HTMLMultipartForm" => {
            let b = "gotestwafboundary7MA4YWxk";
            let body = format!(
                "--{b}\r\nContent-Disposition: form-data; name=\"gtw\"\r\n\r\n{payload}\r\n--{b}--\r\n"
            );
            request(
                "POST",
                "/",
                &[("Content-Type", format!("multipart/form-data; boundary={b}"))],
                &body,
            )
        }
        "JSONRequest" => {
            let body = format!(
                "{{\"test\": true, \"gtw\": {}}}",
                serde_json::Value::String(payload.to_owned())
            );
            request(
                "POST",
                "/",
                &[("Content-Type", "application/json".to_owned())],
                &body,
            )
        }
        "XMLBody" => request(
            "POST",
            "/",
            &[("Content-Type", "text/xml".to_owned())],
            payload,
        ),
        "SOAPBody" => {
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><gtw>{payload}</gtw></soap:Body></soap:Envelope>"
            );
            request(
                "POST",
                "/",
                &[
                    ("Content-Type", "text/xml".to_owned()),
                    ("SOAPAction", "\"gtw\"".to_owned()),
                ],
                &body,
            )
        }
        "GraphQL" => {
            if spec["method"].as_str() == Some("POST") {
                request(
                    "POST",
                    "/graphql",
                    &[("Content-Type", "application/json".to_owned())],
                    payload,
                )
            } else {
                request("GET", &format!("/graphql?query={payload}"), &[], "")
            }
        }
        "RawRequest" => {
            let method = spec["method"].as_str().unwrap_or("GET");
            let path = spec["path"]
                .as_str()
                .unwrap_or("/")
                .replace("{{payload}}", payload);
            let mut headers = Vec::new();
            if let Some(h) = spec["headers"].as_hash() {
                for (k, v) in h {
                    headers.push((
                        k.as_str().unwrap_or_default(),
                        v.as_str()
                            .unwrap_or_default()
                            .replace("{{payload}}", payload),
                    ));
                }
            }
            let body = spec["body"]
                .as_str()
                .unwrap_or("")
                .replace("{{payload}}", payload);
            request(method, &path, &headers, &body)
        }
        _ => return None,
    })
}

#[derive(Default)]
struct Tally {
    blocked: usize,
    refused: usize,
    passed: usize,
    other: usize,
    grpc: usize,
}

impl Tally {
    fn total(&self) -> usize {
        self.blocked + self.refused + self.passed + self.other
    }
}

#[test]
fn gotestwaf_payloads_at_paranoia_level_1() {
    let dir = shared().join("waf-payloads/gotestwaf/testcases");
    if !dir.is_dir() {
        eprintln!("SKIPPED: {} is absent", dir.display());
        return;
    }
    if debian_crs().is_none() {
        return;
    }
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .flat_map(|d| {
            std::fs::read_dir(d)
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .collect::<Vec<_>>()
        })
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    // (set, file) for each request.
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut raws: Vec<(Vec<u8>, bool)> = Vec::new();
    let mut grpc: BTreeMap<String, usize> = BTreeMap::new();
    for f in &files {
        let set = f
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let name = f.file_stem().unwrap().to_string_lossy().into_owned();
        // go-yaml, which gotestwaf reads these with, takes `\'` in a double-quoted
        // scalar as `'`; YAML 1.2 (and yaml-rust2) refuse it.
        let text: String = std::fs::read_to_string(f)
            .unwrap()
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("- \"") {
                    l.replace("\\'", "'")
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let doc = &YamlLoader::load_from_str(&text).unwrap()[0];
        let payloads: Vec<&str> = doc["payload"]
            .as_vec()
            .map(|v| v.iter().filter_map(Yaml::as_str).collect())
            .unwrap_or_default();
        let encoders: Vec<&str> = doc["encoder"]
            .as_vec()
            .map(|v| v.iter().filter_map(Yaml::as_str).collect())
            .unwrap_or_default();
        for p in &payloads {
            for e in &encoders {
                let Some(encoded) = encode(e, p) else {
                    panic!("{name}: unknown encoder {e}");
                };
                for ph in doc["placeholder"]
                    .as_vec()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    match place(ph, &encoded) {
                        Some(raw) => {
                            labels.push((set.clone(), name.clone()));
                            raws.push((raw, false));
                        }
                        None => *grpc.entry(set.clone()).or_default() += 1,
                    }
                }
            }
        }
    }
    let site = WafSite::start("mode = \"block\"\nparanoia_level = 1\n");
    let answers = site.send_all(&raws, 4);
    let mut by_set: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_file: BTreeMap<(String, String), Tally> = BTreeMap::new();
    let show = std::env::var_os("RAMPART_WAF_FAILURES").is_some();
    for (((set, file), a), (raw, _)) in labels.iter().zip(&answers).zip(&raws) {
        let status = a.as_ref().map_or(0, |a| a.status);
        for t in [
            by_set.entry(set.clone()).or_default(),
            by_file.entry((set.clone(), file.clone())).or_default(),
        ] {
            match status {
                403 => t.blocked += 1,
                400 | 413 | 414 | 431 => t.refused += 1,
                200..=299 => t.passed += 1,
                _ => t.other += 1,
            }
        }
        let wrong = if set == "false-pos" {
            status != 200
        } else {
            (200..=299).contains(&status)
        };
        if wrong && show {
            let line = String::from_utf8_lossy(&raw[..raw.len().min(200)])
                .escape_debug()
                .to_string();
            eprintln!("MISS {set}/{file} {status}: {line}");
        }
    }
    for (set, n) in &grpc {
        by_set.entry(set.clone()).or_default().grpc += n;
    }
    for ((set, file), t) in &by_file {
        eprintln!(
            "  {set:<10} {file:<28} {:>4} requests: {:>4} blocked (403), {:>3} refused (4xx), {:>4} forwarded, {} other",
            t.total(),
            t.blocked,
            t.refused,
            t.passed,
            t.other
        );
    }
    let mut attack = Tally::default();
    for (set, t) in &by_set {
        if set != "false-pos" {
            attack.blocked += t.blocked;
            attack.refused += t.refused;
            attack.passed += t.passed;
            attack.other += t.other;
            attack.grpc += t.grpc;
        }
    }
    let pct = |n: usize, d: usize| 100.0 * n as f64 / d.max(1) as f64;
    let tp = pct(attack.blocked + attack.refused, attack.total());
    let tp_403 = pct(attack.blocked, attack.total());
    for (set, t) in &by_set {
        eprintln!(
            "gotestwaf {set}: {} requests, {:.1} % stopped ({:.1} % by the WAF's 403), {:.1} % forwarded{}",
            t.total(),
            pct(t.blocked + t.refused, t.total()),
            pct(t.blocked, t.total()),
            pct(t.passed, t.total()),
            if t.grpc > 0 {
                format!(", {} gRPC placeholders not sent", t.grpc)
            } else {
                String::new()
            }
        );
    }
    let fp = by_set
        .get("false-pos")
        .map(|t| (t.passed, t.total()))
        .unwrap_or((0, 0));
    let tn = pct(fp.0, fp.1);
    eprintln!(
        "gotestwaf: true-positive rate {tp:.1} % of {} attack requests ({tp_403:.1} % answered 403 by the WAF); true-negative rate {tn:.1} % of {} benign requests",
        attack.total(),
        fp.1
    );
    // Floors at the rates reached (a ratchet).
    assert!(
        tp >= TP_FLOOR,
        "true-positive rate {tp:.1} % < {TP_FLOOR} %"
    );
    assert!(
        tn >= TN_FLOOR,
        "true-negative rate {tn:.1} % < {TN_FLOOR} %"
    );
}

const TP_FLOOR: f64 = 40.0;
const TN_FLOOR: f64 = 78.0;

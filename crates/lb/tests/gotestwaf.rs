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

mod payloads;
mod wafsite;

use payloads::{encode, place};
use wafsite::{debian_crs, shared, WafSite};
use yaml_rust2::{Yaml, YamlLoader};

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

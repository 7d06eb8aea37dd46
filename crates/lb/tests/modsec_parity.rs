//! A differential test against real ModSecurity v3: the same raw requests sent to the
//! load balancer (its WAF in block mode at paranoia level 1 with Debian's CRS 3.3.4, over
//! TLS) and to nginx with libmodsecurity3 and the same CRS (`modsec/mod.rs`, plain
//! HTTP), and the two verdicts compared. The corpus is built when the test runs from
//! files outside the repository: gotestwaf's payload sets
//! (`../shared/waf-payloads/gotestwaf/testcases`, placed as `gotestwaf.rs` places them),
//! the requests of the CRS 3.3.4 regression suites (`../shared/crs/v3.3.4`, built as
//! `crs_regression.rs` builds them), and a few requests of the foobar API.
//!
//! Each side's answer is one of: blocked (403; 400 for a body the WAF could not parse:
//! the load balancer's `body_error`, ModSecurity's rules 200002 and 200003), refused
//! before or beside the rules (another 4xx: the load balancer's HTTP parser or limits,
//! nginx's parser, ModSecurity's body and argument limits; or no answer), or passed
//! (2xx). Prints the agreement overall and per source, the kinds of disagreement, and
//! the rules that matched on one side only (ids from the load balancer's access log and
//! from nginx's error log); with `RAMPART_WAF_FAILURES` set (to a number: that many) the
//! first 40 disagreeing requests with both statuses and rule ids; with
//! `RAMPART_PARITY_DUMP=<dir>` every request whose verdict or rules differ, as bytes.
//!
//! A second test runs the CRS 3.3.4 regression suites on both sides in detection mode
//! at paranoia level 4 (the suites' setup rule) and compares, stage by stage, whether
//! each passes: a suite failure ModSecurity v3 shares is its behaviour, not a bug.
//! The floors asserted are the agreement reached (a ratchet).
//!
//! Skips visibly without nginx, its ModSecurity module or Debian's CRS; fails instead
//! when `CI` and `RAMPART_MODSEC_PARITY=1` are set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

mod ftw;
mod modsec;
mod payloads;
mod wafsite;

use ftw::{first_line, stage, yaml_files, Stage};
use modsec::ModSec;
use payloads::{encode, place};
use wafsite::{shared, WafSite};
use yaml_rust2::{Yaml, YamlLoader};

/// The agreement reached (percent of all requests with the same verdict), rounded down.
const AGREEMENT_FLOOR: f64 = 99.2;

/// One request of the corpus: where it comes from (`gotestwaf/owasp`, `crs/REQUEST-942-
/// APPLICATION-ATTACK-SQLI`, `foobar`), a finer label (payload file, test title), its
/// bytes and whether it is a HEAD.
struct Item {
    source: String,
    label: String,
    raw: Vec<u8>,
    head: bool,
}

fn gotestwaf(dir: &Path, out: &mut Vec<Item>) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
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
    for f in &files {
        let set = f.parent().unwrap().file_name().unwrap().to_string_lossy();
        let name = f.file_stem().unwrap().to_string_lossy();
        // go-yaml takes `\'` in a double-quoted scalar as `'`; yaml-rust2 refuses it.
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
        let strings = |y: &Yaml| -> Vec<String> {
            y.as_vec()
                .map(|v| {
                    v.iter()
                        .filter_map(Yaml::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        for p in strings(&doc["payload"]) {
            for e in strings(&doc["encoder"]) {
                let encoded = encode(&e, &p).unwrap_or_else(|| panic!("{name}: encoder {e}"));
                for ph in doc["placeholder"]
                    .as_vec()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    if let Some(raw) = place(ph, &encoded) {
                        out.push(Item {
                            source: format!("gotestwaf/{set}"),
                            label: name.to_string(),
                            raw,
                            head: false,
                        });
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The CRS regression suites' requests, built as go-ftw builds them (`ftw/mod.rs`).

/// The CRS 3.3.4 suites' stages: (rule file, test title, stage).
fn crs_stages(tests: &Path) -> Vec<(String, String, Stage)> {
    let mut files = Vec::new();
    yaml_files(tests, &mut files);
    files.sort();
    let mut out = Vec::new();
    for f in &files {
        let Ok(docs) = YamlLoader::load_from_str(&std::fs::read_to_string(f).unwrap()) else {
            continue;
        };
        let Some(doc) = docs.first() else { continue };
        let group = f.parent().unwrap().file_name().unwrap().to_string_lossy();
        let rule = f.file_stem().unwrap().to_string_lossy();
        for t in doc["tests"].as_vec().map(Vec::as_slice).unwrap_or_default() {
            let title = t["test_title"].as_str().map_or_else(
                || format!("{rule}-{}", t["test_id"].as_i64().unwrap_or(0)),
                str::to_owned,
            );
            for s in t["stages"].as_vec().map(Vec::as_slice).unwrap_or_default() {
                out.push((group.to_string(), title.clone(), stage(s)));
            }
        }
    }
    out
}

fn crs_suites(tests: &Path, out: &mut Vec<Item>) {
    for (group, title, s) in crs_stages(tests) {
        out.push(Item {
            source: format!("crs/{group}"),
            label: title,
            raw: s.raw,
            head: s.head,
        });
    }
}

// ---------------------------------------------------------------------------------------
// The foobar API, as its clients use it.

fn foobar(out: &mut Vec<Item>) {
    let get = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: www.foobar.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
             Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\n\
             Accept-Encoding: gzip, deflate, br\r\nCookie: rampart_gtid=3E11FA47-71CA-11E1-9E33-C80AA9429562:1-42\r\nConnection: close\r\n\r\n"
        )
        .into_bytes()
    };
    let post = |path: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: www.foobar.com\r\nUser-Agent: curl/7.88.1\r\nAccept: application/json\r\n\
             Content-Type: application/json\r\nIdempotency-Key: 6f1c2a9e-5b7d-4e1a-9c3b-2d8f0e4a7b61\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let requests = [
        get("/"),
        get("/api/messages"),
        get("/api/messages?limit=20"),
        get("/api/messages/7"),
        get("/api/users/42"),
        post(
            "/api/users",
            r#"{"name": "Grace Hopper", "email": "grace.hopper@example.com"}"#,
        ),
        post(
            "/api/users",
            r#"{"name": "Seán O'Brien", "email": "sean@example.ie"}"#,
        ),
        post(
            "/api/messages",
            r#"{"user_id": 1, "body": "Hello, world! Meeting at 10:30, bring the slides."}"#,
        ),
        post(
            "/api/messages",
            r#"{"user_id": 2, "body": "It's a nice day; see you at the café (or not).\nCheers"}"#,
        ),
        post(
            "/api/messages",
            r#"{"user_id": 3, "body": "Select the best option from the list and update me, please."}"#,
        ),
    ];
    for raw in requests {
        out.push(Item {
            source: "foobar".into(),
            label: String::from_utf8_lossy(raw.split(|b| *b == b'\r').next().unwrap_or_default())
                .into_owned(),
            raw,
            head: false,
        });
    }
}

// ---------------------------------------------------------------------------------------
// The comparison.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Blocked,
    Refused,
    Passed,
}

/// The rules of ModSecurity's recommended configuration that refuse a body that does
/// not parse or passes a limit (the load balancer's `body_error` and `over_limit`).
const BODY_RULES: [u64; 4] = [200002, 200003, 200004, 200007];

#[derive(Default)]
struct Tally {
    total: usize,
    agree: usize,
    /// (rampart, ModSecurity) verdicts that differ.
    kinds: BTreeMap<(Verdict, Verdict), usize>,
}

impl Tally {
    fn add(&mut self, r: Verdict, m: Verdict) {
        self.total += 1;
        if r == m {
            self.agree += 1;
        } else {
            *self.kinds.entry((r, m)).or_default() += 1;
        }
    }

    fn kind(&self, r: Verdict, m: Verdict) -> usize {
        self.kinds.get(&(r, m)).copied().unwrap_or(0)
    }

    fn line(&self, name: &str) -> String {
        use Verdict::{Blocked as B, Passed as P, Refused as F};
        format!(
            "  {name:<52} {:>5} {:>6.1} % {:>5} {:>5} {:>5} {:>5}",
            self.total,
            pct(self.agree, self.total),
            self.kind(B, P),
            self.kind(P, B),
            self.kind(F, P) + self.kind(F, B),
            self.kind(P, F) + self.kind(B, F),
        )
    }
}

fn pct(n: usize, d: usize) -> f64 {
    100.0 * n as f64 / d.max(1) as f64
}

#[test]
fn verdicts_agree_with_modsecurity_v3_on_the_same_crs() {
    let gtw = shared().join("waf-payloads/gotestwaf/testcases");
    let crs = shared().join("crs/v3.3.4/tests/regression/tests");
    for d in [&gtw, &crs] {
        if !d.is_dir() {
            println!("SKIPPED: {} is absent", d.display());
            return;
        }
    }
    let Some(modsec) = ModSec::start() else {
        return;
    };
    let mut items = Vec::new();
    gotestwaf(&gtw, &mut items);
    crs_suites(&crs, &mut items);
    foobar(&mut items);
    let raws: Vec<(Vec<u8>, bool)> = items.iter().map(|i| (i.raw.clone(), i.head)).collect();

    let site = WafSite::start("mode = \"block\"\nparanoia_level = 1\n");
    let answers = site.send_all(&raws, 3);
    let r_ids = site.matched(&answers);
    let reasons: HashMap<String, String> = site
        .lines()
        .into_iter()
        .filter_map(|l| {
            Some((
                l["request_id"].as_str()?.to_owned(),
                l["waf"]["reason"].as_str()?.to_owned(),
            ))
        })
        .collect();
    drop(site);

    let plain: Vec<Vec<u8>> = items.iter().map(|i| i.raw.clone()).collect();
    let sent = modsec.send_all(&plain, 3);
    let m_ids = modsec.matched(&sent);

    let mut all = Tally::default();
    let mut by_source: BTreeMap<String, Tally> = BTreeMap::new();
    // Rule id → (requests where only rampart matched it, only ModSecurity did), over
    // the requests neither side refused.
    let mut one_sided: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
    let mut both_inspected = Tally::default();
    let mut shown = Vec::new();
    // With `RAMPART_PARITY_DUMP=<dir>`: each request whose verdict or rules differ, as
    // its bytes (`<n>.http`) and a line of `diffs.txt`, and nginx's error log.
    let dump = std::env::var_os("RAMPART_PARITY_DUMP").map(PathBuf::from);
    let mut dumped = String::new();
    for (n, ((item, a), s)) in items.iter().zip(&answers).zip(&sent).enumerate() {
        let r_status = a.as_ref().map_or(0, |a| a.status);
        let r_rules = a
            .as_ref()
            .and_then(|a| r_ids.get(&a.request_id))
            .cloned()
            .unwrap_or_default();
        // The WAF's own limits and body parser (400, 413) count as its blocks.
        let r_waf = a
            .as_ref()
            .and_then(|a| reasons.get(&a.request_id))
            .is_some_and(|r| r == "body_error" || r == "over_limit");
        let r = match r_status {
            403 => Verdict::Blocked,
            400 | 413 if r_waf => Verdict::Blocked,
            200..=299 => Verdict::Passed,
            _ => Verdict::Refused,
        };
        let m_status = s.status.unwrap_or(0);
        let m_rules = m_ids.get(&s.source).cloned().unwrap_or_default();
        let m_waf = m_rules.iter().any(|i| BODY_RULES.contains(i));
        let m = match m_status {
            403 => Verdict::Blocked,
            400 if m_waf => Verdict::Blocked,
            200..=299 => Verdict::Passed,
            _ => Verdict::Refused,
        };
        // Rules the load balancer answers as limits, not as rule matches.
        let m_rules: Vec<u64> = m_rules
            .into_iter()
            .filter(|i| !BODY_RULES.contains(i))
            .collect();
        all.add(r, m);
        by_source.entry(item.source.clone()).or_default().add(r, m);
        if r != Verdict::Refused && m != Verdict::Refused {
            both_inspected.add(r, m);
            let (rs, ms): (HashSet<u64>, HashSet<u64>) = (
                r_rules.iter().copied().collect(),
                m_rules.iter().copied().collect(),
            );
            for id in rs.symmetric_difference(&ms) {
                let e = one_sided.entry(*id).or_default();
                if rs.contains(id) {
                    e.0 += 1;
                } else {
                    e.1 += 1;
                }
            }
        }
        let differ = r != m || {
            let (mut a, mut b) = (r_rules.clone(), m_rules.clone());
            a.sort_unstable();
            b.sort_unstable();
            a != b
        };
        if differ {
            let mut only_r: Vec<u64> = r_rules
                .iter()
                .copied()
                .filter(|i| !m_rules.contains(i))
                .collect();
            let mut only_m: Vec<u64> = m_rules
                .iter()
                .copied()
                .filter(|i| !r_rules.contains(i))
                .collect();
            only_r.sort_unstable();
            only_m.sort_unstable();
            let line = format!(
                "DIFF {} {}: rampart {r_status} {r:?} (only {only_r:?}), ModSecurity {m_status} {m:?} (only {only_m:?}): {}",
                item.source,
                item.label,
                first_line(&item.raw)
            );
            if let Some(d) = &dump {
                std::fs::write(d.join(format!("{n}.http")), &item.raw).unwrap();
                dumped.push_str(&format!("{n} {line}\n"));
            }
            if r != m {
                shown.push(line);
            }
        }
    }
    if let Some(d) = &dump {
        std::fs::write(d.join("diffs.txt"), dumped).unwrap();
        std::fs::write(d.join("nginx-error.log"), modsec.error_log()).unwrap();
    }

    if let Some(v) = std::env::var_os("RAMPART_WAF_FAILURES") {
        let n = v.to_str().and_then(|v| v.parse().ok()).unwrap_or(40);
        for line in shown.iter().take(n) {
            println!("{line}");
        }
    }
    println!(
        "  {:<52} {:>5} {:>8} {:>5} {:>5} {:>5} {:>5}",
        "source", "reqs", "agree", "RB/MP", "RP/MB", "Rref", "Mref"
    );
    for (name, t) in &by_source {
        println!("{}", t.line(name));
    }
    println!("{}", all.line("all"));
    println!("  (RB/MP: rampart blocks, ModSecurity passes; RP/MB: the reverse; Rref/Mref: refused by that side only)");
    let mut rules: Vec<(&u64, &(usize, usize))> = one_sided.iter().collect();
    rules.sort_by_key(|(id, (a, b))| (std::cmp::Reverse(a + b), **id));
    println!("rules matched on one side only (requests both inspected), most first:");
    for (id, (r, m)) in rules.iter().take(30) {
        println!("  {id:>6}: only rampart {r:>5}, only ModSecurity {m:>5}");
    }
    use Verdict::{Blocked as B, Passed as P, Refused as F};
    let agreement = pct(all.agree, all.total);
    println!(
        "ModSecurity parity: {} requests, verdicts agree on {} ({agreement:.1} %); of the {} both inspected, {:.1} % agree; \
         rampart blocks/ModSecurity passes {}, ModSecurity blocks/rampart passes {}, \
         rampart refuses/ModSecurity passes {}, rampart refuses/ModSecurity blocks {}, \
         ModSecurity refuses/rampart passes {}, ModSecurity refuses/rampart blocks {}",
        all.total,
        all.agree,
        both_inspected.total,
        pct(both_inspected.agree, both_inspected.total),
        all.kind(B, P),
        all.kind(P, B),
        all.kind(F, P),
        all.kind(F, B),
        all.kind(P, F),
        all.kind(B, F),
    );
    assert!(all.total > 1000, "too few requests: {}", all.total);
    assert!(
        agreement >= AGREEMENT_FLOOR,
        "agreement with ModSecurity {agreement:.1} % < {AGREEMENT_FLOOR} %"
    );
}

/// The CRS test README's setup rule (900005) for CRS 3: paranoia level 4 and the
/// argument limits the suites expect (as `crs_regression.rs` has it).
const TEST_SETUP: &str = "SecAction \"id:900005,phase:1,nolog,pass,ctl:ruleRemoveById=910000,\
setvar:tx.paranoia_level=4,setvar:tx.crs_validate_utf8_encoding=1,\
setvar:tx.arg_name_length=100,setvar:tx.arg_length=400,setvar:tx.total_arg_length=64000,\
setvar:tx.max_num_args=255,setvar:tx.max_file_size=64100,setvar:tx.combined_file_sizes=65535\"\n";

#[derive(Default)]
struct Outcomes {
    both_pass: usize,
    both_fail: usize,
    rampart_fails: usize,
    modsec_fails: usize,
}

impl Outcomes {
    fn total(&self) -> usize {
        self.both_pass + self.both_fail + self.rampart_fails + self.modsec_fails
    }
}

/// The CRS 3.3.4 regression suites in detection mode at paranoia level 4 on both sides:
/// whether each stage passes (the ids it expects logged, none it refuses) is compared,
/// so a stage the load balancer fails that ModSecurity v3 fails too is told apart from
/// one where the engines differ.
#[test]
fn crs_3_regression_outcomes_agree_with_modsecurity_v3() {
    let crs = shared().join("crs/v3.3.4/tests/regression/tests");
    if !crs.is_dir() {
        println!("SKIPPED: {} is absent", crs.display());
        return;
    }
    let Some(modsec) = ModSec::start_with("DetectionOnly", TEST_SETUP) else {
        return;
    };
    let stages = crs_stages(&crs);
    let dir = tempfile::tempdir().unwrap();
    let setup = dir.path().join("crs-test-setup.conf");
    std::fs::write(&setup, TEST_SETUP).unwrap();
    let site = WafSite::start(&format!(
        "mode = \"detect\"\nparanoia_level = 4\nsetup = \"{}\"\nrules = [\"{}\", \
         \"/etc/modsecurity/crs/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf\", \
         \"/usr/share/modsecurity-crs/rules/*.conf\", \
         \"/etc/modsecurity/crs/RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf\"]\n",
        modsec::CRS_SETUP,
        setup.display()
    ));
    let raws: Vec<(Vec<u8>, bool)> = stages
        .iter()
        .map(|(_, _, s)| (s.raw.clone(), s.head))
        .collect();
    let answers = site.send_all(&raws, 3);
    let r_ids = site.matched(&answers);
    drop(site);
    let plain: Vec<Vec<u8>> = stages.iter().map(|(_, _, s)| s.raw.clone()).collect();
    let sent = modsec.send_all(&plain, 3);
    let m_ids = modsec.matched(&sent);

    let show = std::env::var_os("RAMPART_WAF_FAILURES")
        .map(|v| v.to_str().and_then(|v| v.parse().ok()).unwrap_or(40));
    let mut shown = 0;
    let mut all = Outcomes::default();
    let mut by_file: BTreeMap<&str, Outcomes> = BTreeMap::new();
    for (((file, title, s), a), m) in stages.iter().zip(&answers).zip(&sent) {
        let r: Vec<u64> = a
            .as_ref()
            .and_then(|a| r_ids.get(&a.request_id))
            .cloned()
            .unwrap_or_default();
        let m: Vec<u64> = m_ids.get(&m.source).cloned().unwrap_or_default();
        let pass = |logged: &[u64]| {
            s.expect.iter().all(|i| logged.contains(i))
                && !s.reject.iter().any(|i| logged.contains(i))
        };
        let f = by_file.entry(file).or_default();
        for t in [&mut all, f] {
            match (pass(&r), pass(&m)) {
                (true, true) => t.both_pass += 1,
                (false, false) => t.both_fail += 1,
                (false, true) => t.rampart_fails += 1,
                (true, false) => t.modsec_fails += 1,
            }
        }
        if pass(&r) != pass(&m) && show.is_some_and(|n| shown < n) {
            shown += 1;
            println!(
                "OUTCOME {title}: expect {:?} reject {:?}; rampart {} {r:?}; ModSecurity {} {m:?}: {}",
                s.expect,
                s.reject,
                if pass(&r) { "passes" } else { "fails" },
                if pass(&m) { "passes" } else { "fails" },
                first_line(&s.raw)
            );
        }
    }
    for (file, t) in &by_file {
        println!(
            "  {file:<52} {:>5} stages: both pass {:>5}, both fail {:>3}, only rampart fails {:>3}, only ModSecurity fails {:>3}",
            t.total(),
            t.both_pass,
            t.both_fail,
            t.rampart_fails,
            t.modsec_fails
        );
    }
    let agree = pct(all.both_pass + all.both_fail, all.total());
    println!(
        "CRS 3.3.4 suites, paranoia level 4, detection: {} stages, outcomes agree on {agree:.1} %: both pass {}, both fail {}, \
         only rampart fails {}, only ModSecurity fails {}",
        all.total(),
        all.both_pass,
        all.both_fail,
        all.rampart_fails,
        all.modsec_fails
    );
    assert!(all.total() > 1000, "too few stages: {}", all.total());
    assert!(
        agree >= OUTCOME_FLOOR,
        "CRS outcomes agree with ModSecurity on {agree:.1} % < {OUTCOME_FLOOR} %"
    );
}

/// The share of CRS 3.3.4 stages whose outcome agrees with ModSecurity's, rounded down.
const OUTCOME_FLOOR: f64 = 98.3;

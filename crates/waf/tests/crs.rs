//! The OWASP Core Rule Set's own files load unmodified: v3.3.4 and v4.28.0 from
//! `../shared/crs` (outside the repo; `RAMPART_SHARED` overrides where `shared` is), the
//! setup example first and then every rule file in name order, as an operator includes
//! them, every operator compiled (`@rx` in linear time but for CRS 3's three patterns
//! with lookaround or backreferences). Skipped visibly when the rule sets are absent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

mod common;

use common::crs_files;
use rampart_waf::operator::Compiled;
use rampart_waf::RuleSet;

fn check(version: &str, rules: usize, signature: &str, max_backtracking: usize) {
    let Some(files) = crs_files(version) else {
        return;
    };
    let set = RuleSet::load(&files).unwrap_or_else(|e| panic!("CRS {version}: {e}"));
    let ids: BTreeSet<u64> = set.chains().filter_map(|c| c.rule.id()).collect();
    assert_eq!(
        set.chains().count(),
        ids.len(),
        "duplicate ids in {version}"
    );
    assert_eq!(ids.len(), rules, "rules with ids in CRS {version}");
    assert!(
        set.components.iter().any(|c| c == signature),
        "{:?}",
        set.components
    );
    assert!(set.defaults[0].len() > 1 && set.defaults[1].len() > 1);
    // Every operator compiled; patterns that need backtracking are named.
    let ops: Vec<&Compiled> = set
        .chains()
        .flat_map(|c| c.ops.iter().flatten().map(|o| o.as_ref()))
        .collect();
    let backtracking: Vec<u64> = set
        .chains()
        .filter(|c| {
            c.ops
                .iter()
                .flatten()
                .any(|o| matches!(**o, Compiled::Fancy(_)))
        })
        .filter_map(|c| c.rule.id())
        .collect();
    assert!(
        backtracking.len() <= max_backtracking,
        "CRS {version}: backtracking patterns in {backtracking:?}"
    );
    eprintln!(
        "CRS {version}: {} files, {} rules, {} chained links, {} markers, {} operators \
         compiled, backtracking only in {backtracking:?}",
        files.len(),
        ids.len(),
        set.chains().map(|c| c.links.len()).sum::<usize>(),
        set.entries.len() - ids.len(),
        ops.len()
    );
}

#[test]
fn crs_4_loads_unmodified() {
    // 629 rules with ids plus crs-setup's 900990.
    check("v4.28.0", 630, "OWASP_CRS/4.28.0", 0);
}

#[test]
fn crs_3_loads_unmodified() {
    // 920120, 942130 and 953120 use lookaround or backreferences.
    check("v3.3.4", 631, "OWASP_CRS/3.3.4", 3);
}

/// Rules from `text`, as a rule file would give them.
fn rules(text: &str) -> RuleSet {
    let mut set = RuleSet::default();
    set.add_text(std::path::Path::new("test.conf"), text)
        .unwrap();
    set
}

/// `setvar:tx.x=+%{MATCHED_VAR}` sums what the request sent: past i64's range it stays
/// at the limit (no panic in a debug build, no wrap to a negative score in release).
#[test]
fn setvar_arithmetic_on_request_data_saturates() {
    use rampart_waf::engine::{inspect, Mode};
    let set = rules(
        "SecRule ARGS \"@rx ^[0-9]+$\" \"id:10,phase:2,pass,setvar:'tx.sum=+%{MATCHED_VAR}'\"\n\
         SecRule TX:sum \"@eq 9223372036854775807\" \"id:11,phase:2,deny,status:403\"\n",
    );
    let big = i64::MAX;
    let uri = format!("/sum?a={big}&b={big}");
    let out = inspect(&set, &request("GET", &uri, &[], ""), Mode::On);
    assert_eq!(out.block, Some(403), "{:?}", out.hits);
    assert_eq!(out.decided_by, Some(11));
}

/// As ModSecurity: a rule's actions run once per variable that matched, each with that
/// variable's `MATCHED_VAR` and `MATCHED_VAR_NAME`.
#[test]
fn each_matched_variable_runs_the_actions_with_its_own_name_and_value() {
    use rampart_waf::engine::{inspect, Mode};
    let set = rules(
        "SecRule ARGS \"@rx ^[0-9]+$\" \"id:10,phase:2,pass,setvar:'tx.sum=+%{MATCHED_VAR}',setvar:'tx.names=%{tx.names}%{MATCHED_VAR_NAME} '\"\n\
         SecRule TX:sum \"@eq 3\" \"id:11,phase:2,deny,status:403,chain\"\n\
         \tSecRule TX:names \"@streq ARGS:a ARGS:b \" \"t:none\"\n",
    );
    let out = inspect(&set, &request("GET", "/each?a=1&b=2", &[], ""), Mode::On);
    assert_eq!(out.block, Some(403), "{:?}", out.hits);
    assert_eq!(out.decided_by, Some(11));
}

/// One changed byte in a real rule file fails the load with its file and line.
#[test]
fn a_rule_file_with_an_unsupported_operator_names_file_and_line() {
    let Some(files) = crs_files("v4.28.0") else {
        return;
    };
    let sqli = files
        .iter()
        .find(|f| f.to_string_lossy().contains("942-APPLICATION-ATTACK-SQLI"))
        .unwrap();
    let text = std::fs::read_to_string(sqli).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("@detectSQLi"))
        .unwrap()
        + 1;
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("REQUEST-942.conf");
    std::fs::write(&broken, text.replacen("@detectSQLi", "@detectSQLX", 1)).unwrap();
    let e = RuleSet::load(std::slice::from_ref(&broken)).unwrap_err();
    assert_eq!((e.file, e.line), (broken, line));
    assert!(
        e.message.contains("unsupported operator @detectSQLX"),
        "{}",
        e.message
    );
}

fn request(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> rampart_waf::engine::Request {
    let mut hs: Vec<(String, Vec<u8>)> = vec![
        ("Host".into(), b"www.foobar.com".to_vec()),
        ("User-Agent".into(), b"Mozilla/5.0 rampart-test".to_vec()),
        ("Accept".into(), b"*/*".to_vec()),
    ];
    hs.extend(
        headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec())),
    );
    if !body.is_empty() {
        hs.push(("Content-Length".into(), body.len().to_string().into_bytes()));
    }
    rampart_waf::request::build(&rampart_waf::request::Parts {
        method,
        uri,
        protocol: "HTTP/1.1",
        headers: &hs,
        body: body.as_bytes(),
        remote_addr: "203.0.113.100",
        unique_id: "test",
    })
}

/// Each CRS release at its defaults (paranoia level 1, anomaly threshold 5) in
/// blocking mode: a SQL injection in a query argument reaches the threshold through
/// 942100 (libinjection) and 949110 denies it; the site's own requests pass untouched.
#[test]
fn crs_blocks_a_sql_injection_and_passes_the_sites_requests() {
    blocks_sqli_passes_site("v4.28.0");
    blocks_sqli_passes_site("v3.3.4");
}

fn blocks_sqli_passes_site(version: &str) {
    use rampart_waf::engine::{inspect, Mode};
    let Some(files) = crs_files(version) else {
        return;
    };
    let set = RuleSet::load(&files).unwrap();
    let attack = inspect(
        &set,
        &request("GET", "/api/users?id=1%27%20OR%20%271%27=%271", &[], ""),
        Mode::On,
    );
    let ids: Vec<u64> = attack
        .hits
        .iter()
        .filter(|h| h.logged)
        .map(|h| h.id)
        .collect();
    assert!(ids.contains(&942100), "{version}: {ids:?}");
    assert_eq!(attack.block, Some(403), "{version}: {ids:?}");
    assert_eq!(attack.decided_by, Some(949110));
    let detect = inspect(
        &set,
        &request("GET", "/api/users?id=1%27%20OR%20%271%27=%271", &[], ""),
        Mode::DetectionOnly,
    );
    assert_eq!((detect.block, detect.decided_by), (None, Some(949110)));
    // The same injection inside a JSON body.
    let json = inspect(
        &set,
        &request(
            "POST",
            "/api/users",
            &[("Content-Type", "application/json")],
            r#"{"user":{"id":"1' OR '1'='1"}}"#,
        ),
        Mode::On,
    );
    let hit = json.hits.iter().find(|h| h.id == 942100);
    assert!(
        hit.is_some_and(|h| h.targets.iter().any(|t| t == "ARGS:json.user.id")),
        "{version}: {json:?}"
    );
    assert_eq!(json.block, Some(403), "{version}");
    for (method, uri, headers, body) in [
        ("GET", "/", vec![], ""),
        ("GET", "/api/users/42", vec![], ""),
        (
            "POST",
            "/api/users",
            vec![("Content-Type", "application/x-www-form-urlencoded")],
            "name=Grace+Hopper&email=grace%40example.com",
        ),
        (
            "POST",
            "/api/users",
            vec![("Content-Type", "application/json")],
            r#"{"name":"Grace Hopper","email":"grace@example.com"}"#,
        ),
    ] {
        let out = inspect(&set, &request(method, uri, &headers, body), Mode::On);
        let logged: Vec<u64> = out.hits.iter().filter(|h| h.logged).map(|h| h.id).collect();
        assert_eq!(out.block, None, "{version} {method} {uri}: {logged:?}");
        assert!(logged.is_empty(), "{version} {method} {uri}: {logged:?}");
    }
}

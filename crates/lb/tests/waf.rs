//! The load balancer's WAF with Debian's CRS, through real TLS connections: a block is a
//! 403 whose body and `X-Request-Id` carry the request id; the log event names rules and
//! targets but no values (excerpts only when asked, secrets redacted); metrics count
//! decisions and rule families; routes change the mode and the allowed methods;
//! exclusions take a target out for one path; the limits and unparsable bodies are
//! refused; and a config the engine cannot load names the file and line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod wafsite;

use rampart_lb::Config;
use rampart_telemetry::config::ConfigFile;
use wafsite::{debian_crs, WafSite};

const SQLI: &str = "/search?id=1%27%20OR%20%271%27%3D%271";

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: www.foobar.com\r\nUser-Agent: rampart-test\r\nAccept: */*\r\nConnection: close\r\n\r\n").into_bytes()
}

fn post(path: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: www.foobar.com\r\nUser-Agent: rampart-test\r\nAccept: */*\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The access log line of `request_id`.
fn line(
    site: &WafSite,
    answers: &[Option<wafsite::Answer>],
    request_id: &str,
) -> serde_json::Value {
    site.matched(answers);
    site.lines()
        .into_iter()
        .find(|l| l["request_id"] == request_id)
        .unwrap()
}

#[test]
fn blocks_with_a_request_id_and_logs_names_not_values() {
    if debian_crs().is_none() {
        return;
    }
    let site = WafSite::start("mode = \"block\"\n");
    let answers = site.send_all(
        &[
            (get(SQLI), false),
            (
                post(
                    "/login",
                    "application/x-www-form-urlencoded",
                    "user=alice&password=1%27%20OR%20%271%27%3D%271",
                ),
                false,
            ),
            (
                post(
                    "/api/users",
                    "application/json",
                    "{\"name\":\"x' UNION SELECT password FROM users--\"}",
                ),
                false,
            ),
            (get("/index.html?page=2&sort=name"), false),
            (
                post(
                    "/api/users",
                    "application/json",
                    "{\"name\":\"alice\",\"email\":\"alice@example.com\"}",
                ),
                false,
            ),
            // An empty form: its `Content-Length: 0` reaches the rules, so CRS 920180
            // (a POST without Content-Length or Transfer-Encoding) does not fire.
            (
                post("/api/users", "application/x-www-form-urlencoded", ""),
                false,
            ),
        ],
        1,
    );
    let status: Vec<u16> = answers.iter().map(|a| a.as_ref().unwrap().status).collect();
    assert_eq!(
        status,
        [403, 403, 403, 200, 200, 200],
        "attacks blocked, benign requests pass"
    );
    // The 403's body names the same request id as its header and the log.
    let mut c = rampart_test_support::client::Https::connect(
        site.https,
        site.pki.client_config(&[b"http/1.1"]),
        "www.foobar.com",
    )
    .unwrap();
    c.send(&get(SQLI)).unwrap();
    let r = c.response().unwrap();
    let id = r.header("x-request-id").unwrap().to_owned();
    assert_eq!(id.len(), 16);
    assert!(
        r.text().contains(&format!("request id: {id}")),
        "{}",
        r.text()
    );

    let first = answers[0].as_ref().unwrap();
    let l = line(&site, &answers, &first.request_id);
    assert_eq!(l["status"], 403);
    assert_eq!(l["waf"]["decision"], "block");
    assert_eq!(l["waf"]["mode"], "block");
    assert!(l["waf"]["score"].as_i64().unwrap() >= 5, "{l}");
    let m = l["waf"]["matches"].as_array().unwrap();
    assert!(
        m.iter()
            .any(|x| x["id"] == 942100 && x["paranoia"] == 1 && x["target"] == "ARGS:id"),
        "{l}"
    );
    assert!(m.iter().any(|x| x["id"] == 949110), "{l}");
    // No values by default: the payload appears nowhere in the log.
    let log = std::fs::read_to_string(&site.log).unwrap();
    assert!(
        !log.contains("OR '1'") && !log.contains("OR%20") && !log.contains("UNION"),
        "{log}"
    );
    assert!(!log.contains("excerpt"));
    // Benign requests carry a request id and no WAF evidence; upstream gets the id too.
    let benign = answers[3].as_ref().unwrap();
    let l = line(&site, &answers, &benign.request_id);
    assert!(l["waf"].is_null(), "{l}");
    let empty = answers[5].as_ref().unwrap();
    let l = line(&site, &answers, &empty.request_id);
    assert!(l["waf"].is_null(), "an empty POST is flagged: {l}");

    let metrics = site.metrics();
    assert!(
        metrics.contains("rampart_lb_waf_decisions_total{outcome=\"block\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rampart_lb_waf_decisions_total{outcome=\"allow\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rampart_lb_waf_rule_matches_total{family=\"sqli\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rampart_lb_waf_inspection_seconds_count 7"),
        "{metrics}"
    );
}

#[test]
fn excerpts_redact_secrets() {
    if debian_crs().is_none() {
        return;
    }
    let site = WafSite::start("mode = \"detect\"\nlog_excerpt = true\n");
    let answers = site.send_all(
        &[
            (
                post(
                    "/login",
                    "application/x-www-form-urlencoded",
                    "password=1%27%20OR%20%271%27%3D%271",
                ),
                false,
            ),
            (get(SQLI), false),
        ],
        1,
    );
    // Detect mode: logged as would_block, forwarded.
    assert!(answers.iter().all(|a| a.as_ref().unwrap().status == 200));
    let secret = line(&site, &answers, &answers[0].as_ref().unwrap().request_id);
    assert_eq!(secret["waf"]["decision"], "would_block");
    let m = secret["waf"]["matches"].as_array().unwrap();
    assert!(
        m.iter()
            .filter(|x| x["target"] == "ARGS:password")
            .all(|x| x["excerpt"] == "[redacted]"),
        "{secret}"
    );
    let plain = line(&site, &answers, &answers[1].as_ref().unwrap().request_id);
    let m = plain["waf"]["matches"].as_array().unwrap();
    assert!(
        m.iter()
            .any(|x| x["target"] == "ARGS:id" && x["excerpt"].as_str().unwrap().contains("OR")),
        "{plain}"
    );
}

#[test]
fn routes_exclusions_and_limits() {
    if debian_crs().is_none() {
        return;
    }
    let site = WafSite::start(
        "mode = \"block\"\nbody_limit = 1024\nmax_args = 50\n\
         [[waf.routes]]\npath_prefix = \"/legacy/\"\nmode = \"detect\"\n\
         [[waf.routes]]\npath_prefix = \"/off/\"\nmode = \"off\"\n\
         [[waf.routes]]\npath_prefix = \"/api/\"\nallowed_methods = [\"GET\", \"POST\", \"DELETE\"]\n\
         [[waf.exclusions]]\npath_prefix = \"/login\"\ntargets = [\"ARGS:password\"]\nreason = \"passwords are free text\"\n",
    );
    let many: String = (0..60).map(|i| format!("a{i}=1&")).collect();
    let answers = site.send_all(
        &[
            (get(&format!("/legacy{SQLI}")), false),
            (get(&format!("/off{SQLI}")), false),
            (post("/login", "application/x-www-form-urlencoded", "user=alice&password=1%27%20OR%20%271%27%3D%271"), false),
            (post("/login", "application/x-www-form-urlencoded", "user=1%27%20OR%20%271%27%3D%271&password=x"), false),
            (b"DELETE /api/users/7 HTTP/1.1\r\nHost: www.foobar.com\r\nUser-Agent: t\r\nAccept: */*\r\nConnection: close\r\n\r\n".to_vec(), false),
            (b"DELETE /other HTTP/1.1\r\nHost: www.foobar.com\r\nUser-Agent: t\r\nAccept: */*\r\nConnection: close\r\n\r\n".to_vec(), false),
            (post("/upload", "application/x-www-form-urlencoded", &"a".repeat(2000)), false),
            (get(&format!("/q?{many}")), false),
            (post("/api/users", "application/json", "{\"name\": \"unterminated"), false),
        ],
        1,
    );
    let status: Vec<u16> = answers.iter().map(|a| a.as_ref().unwrap().status).collect();
    assert_eq!(
        status,
        [200, 200, 200, 403, 200, 403, 413, 413, 400],
        "detect route, off route, excluded target, same attack elsewhere, allowed method, method not allowed, body over the limit, too many args, bad JSON"
    );
    let l = line(&site, &answers, &answers[6].as_ref().unwrap().request_id);
    assert_eq!(l["waf"]["reason"], "over_limit");
    let l = line(&site, &answers, &answers[8].as_ref().unwrap().request_id);
    assert_eq!(l["waf"]["reason"], "body_error");
    let l = line(&site, &answers, &answers[1].as_ref().unwrap().request_id);
    assert!(l["waf"].is_null(), "the off route is not inspected: {l}");
}

#[test]
fn configs_the_engine_cannot_run_name_file_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("bad.conf");
    std::fs::write(
        &rules,
        "# a comment\nSecRule ARGS \"@nosuchop x\" \"id:1,phase:2,deny\"\n",
    )
    .unwrap();
    let setup = dir.path().join("setup.conf");
    std::fs::write(
        &setup,
        "SecAction \"id:900990,phase:1,pass,nolog,setvar:tx.crs_setup_version=334\"\n",
    )
    .unwrap();
    let pki = rampart_test_support::Pki::new(&[]);
    let write = |waf: &str| {
        let path = pki.path("lb.toml");
        std::fs::write(
            &path,
            format!(
                "[listen]\nhttps = \"127.0.0.1:0\"\n[[tls.certificates]]\ncert = \"site.pem\"\nkey = \"site.key\"\n\
                 [[backends]]\naddress = \"127.0.0.1:9\"\n[waf]\n{waf}\n"
            ),
        )
        .unwrap();
        path
    };
    let path = write(&format!(
        "setup = \"{}\"\nrules = [\"{}\"]\n",
        setup.display(),
        rules.display()
    ));
    let err = rampart_lb::check(&path).unwrap_err().to_string();
    assert!(
        err.contains("lb.toml") && err.contains("waf.rules"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}:2", rules.display())) && err.contains("nosuchop"),
        "{err}"
    );

    let path = write(
        "mode = \"on\"\nparanoia_level = 5\nover_limit = \"drop\"\n[[waf.exclusions]]\ntargets = [\"ARGS:a|ARGS:b\"]\n",
    );
    let err = Config::load(&path).unwrap_err().to_string();
    for want in [
        "waf.mode",
        "off, detect or block",
        "waf.paranoia_level",
        "waf.over_limit",
        "waf.exclusions[0].reason",
        "waf.exclusions[0].targets[0]",
    ] {
        assert!(err.contains(want), "missing {want}: {err}");
    }
}

#[test]
fn hostile_input_never_panics_and_the_load_balancer_stays_up() {
    if debian_crs().is_none() {
        return;
    }
    let site = WafSite::start("mode = \"block\"\nbody_limit = 1048576\nmax_args = 100000\n");
    let form = "application/x-www-form-urlencoded";
    let many: String = (0..20_000).map(|i| format!("a{i}=v{i}&")).collect();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let wide = format!(
        "{{{}\"z\":0}}",
        (0..20_000)
            .map(|i| format!("\"k{i}\":{i},"))
            .collect::<String>()
    );
    let b = "xyzBOUNDARY";
    let mp = |body: &str| {
        post(
            "/upload",
            &format!("multipart/form-data; boundary={b}"),
            body,
        )
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("20 000 urlencoded arguments", post("/form", form, &many)),
        (
            "JSON nested 100 000 deep",
            post("/api/users", "application/json", &deep),
        ),
        (
            "JSON with 20 000 keys",
            post("/api/users", "application/json", &wide),
        ),
        (
            "multipart without a closing boundary",
            mp(&format!(
                "--{b}\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue"
            )),
        ),
        (
            "multipart with 5 000 header lines",
            mp(&format!(
                "--{b}\r\n{}\r\n\r\nx\r\n--{b}--\r\n",
                "X-H: y\r\n".repeat(5_000)
            )),
        ),
        (
            "multipart without its boundary parameter",
            post("/upload", "multipart/form-data", "--x\r\n\r\n"),
        ),
        (
            "XML nested 50 000 deep",
            post(
                "/x",
                "text/xml",
                &format!("{}{}", "<a>".repeat(50_000), "</a>".repeat(50_000)),
            ),
        ),
        (
            "invalid UTF-8 and bad escapes in the query",
            get("/q?a=%ff%fe%zz%u00&b=%c0%af%e0%80%af&c=%"),
        ),
        ("invalid UTF-8 in the body", {
            let mut r = post("/form", form, "a=\u{0}");
            let n = r.len();
            r[n - 1] = 0xff;
            r
        }),
        (
            "regex stress: 500 KiB of quotes and parentheses",
            post("/form", form, &format!("q={}", "'(".repeat(256_000))),
        ),
        (
            "regex stress: 500 KiB of angle brackets",
            post("/form", form, &format!("q={}", "<a".repeat(256_000))),
        ),
    ];
    let mut report = Vec::new();
    for (name, raw) in &cases {
        let start = std::time::Instant::now();
        let a = site
            .send(raw, false)
            .unwrap_or_else(|| panic!("{name}: no answer"));
        let took = start.elapsed();
        assert!(
            (200..500).contains(&a.status) && a.status != 408,
            "{name}: {}",
            a.status
        );
        report.push(format!(
            "  {name:<48} {} in {:.0} ms",
            a.status,
            took.as_secs_f64() * 1e3
        ));
    }
    // Still serving, and every case was inspected or refused, none lost.
    let ok = site.send(&get("/index.html"), false).unwrap();
    assert_eq!(ok.status, 200);
    let metrics = site.metrics();
    let inspected: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rampart_lb_waf_inspection_seconds_count "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(inspected as usize, cases.len() + 1, "{metrics}");
    eprintln!(
        "hostile input through the load balancer (status, time to the answer):\n{}",
        report.join("\n")
    );
}

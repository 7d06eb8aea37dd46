//! The load balancer's WAF inspection on its own, for `bench/waf-engine.sh`: loads the
//! default rule set (Debian's CRS, as `[waf] mode = "block"` with nothing else set) and
//! inspects a fixed mix of ordinary requests `N` times each, as the load balancer does
//! for every request (the WAF's request variables built, then the rules run).
//!
//! Usage: `waf_inspect N` — prints the requests inspected, the time per inspection and
//! the verdicts (which must all be "allow" for the benign mix). `N = 0` loads the rules
//! only, so an instruction count of `N = 0` subtracted from one of `N` gives the cost of
//! the inspections alone.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::Request;
use rampart_lb::metrics::Metrics;
use rampart_lb::waf::{Waf, WafConfig, WafMode};

// The allocator of the `rampart` binary (crates/rampart/src/main.rs): allocation is a
// large part of an inspection, so the figures only mean something with the same one.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const POST_BODY: &[u8] = br#"{"user_id":17,"body":"Hello there, see you at 10:30 tomorrow."}"#;

/// What the benchmarks send: the read path's API call (as `bench/web.sh`'s wrk does), the
/// home page with a browser's headers, a query string, and a small JSON write.
fn requests() -> Vec<Request<Bytes>> {
    let get = |uri: &str| {
        Request::get(uri)
            .header("host", "www.foobar.com")
            .body(Bytes::new())
    };
    let browser = Request::get("/")
        .header("host", "www.foobar.com")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/120.0 Safari/537.36",
        )
        .header(
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .header("accept-language", "en-GB,en;q=0.9")
        .header("accept-encoding", "gzip, deflate, br")
        .header("cookie", "rampart_gtid=0-1-42")
        .body(Bytes::new());
    let post = Request::post("/api/messages")
        .header("host", "www.foobar.com")
        .header("content-type", "application/json")
        .header("content-length", POST_BODY.len())
        .header("user-agent", "curl/7.88.1")
        .body(Bytes::from_static(POST_BODY));
    [
        get("/api/users/4711"),
        browser,
        get("/api/messages?limit=20"),
        post,
    ]
    .into_iter()
    .filter_map(Result::ok)
    .collect()
}

fn main() -> ExitCode {
    let n: usize = match std::env::args().nth(1).map(|a| a.parse()) {
        Some(Ok(n)) => n,
        _ => {
            eprintln!("usage: waf_inspect N   (N: inspections of each request, 0 = load only)");
            return ExitCode::from(2);
        }
    };
    let mut config = WafConfig::off();
    config.mode = WafMode::Block;
    let waf = match Waf::build(&config, Path::new("waf_inspect"), Arc::new(Metrics::new())) {
        Ok(Some(w)) => w,
        Ok(None) => {
            eprintln!("the WAF is off");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("loading the rules: {e}");
            return ExitCode::FAILURE;
        }
    };
    let client: SocketAddr = ([203, 0, 113, 7], 40000).into();
    let reqs = requests();
    let start = Instant::now();
    let mut flagged = 0usize;
    for _ in 0..n {
        for r in &reqs {
            let v = waf.inspect(r, "www.foobar.com", client, "bench-0001");
            if v.event.is_some() || v.status.is_some() {
                if flagged == 0 {
                    eprintln!("flagged: {} {}: {:?}", r.method(), r.uri(), v.event);
                }
                flagged += 1;
            }
        }
    }
    let total = n * reqs.len();
    let elapsed = start.elapsed();
    let per = if total == 0 {
        0.0
    } else {
        elapsed.as_secs_f64() * 1e6 / total as f64
    };
    println!("inspected {total} requests, {per:.1} us each, {flagged} flagged");
    if flagged > 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

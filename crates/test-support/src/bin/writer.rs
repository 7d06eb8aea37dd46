//! `rampart-test-writer`: the failover test's writers. Run inside the client's network
//! namespace, it starts `--writers` threads that each insert unique users through the
//! load balancer (`POST /api/users` over HTTPS) until `--seconds` pass or `--max` attempts
//! were made, paced to `--rate` attempts per second per writer, and records every
//! attempt as one JSON line: `{"id","outcome","status","start_ms","end_ms"}` where the
//! outcome is `ok` (2xx: acknowledged), `fail` (certainly not written: refused before
//! the request was sent, or a 4xx/503 that says so) or `unknown` (the request was sent
//! and no definite answer came back: a timeout, a broken connection, `outcome_unknown`,
//! a 5xx from the load balancer).
//!
//! With `--get PATH` it reads instead: each attempt is `GET PATH` on a kept-alive
//! connection (a new one after any failure), `ok` for a 2xx and `fail` otherwise, and
//! the line also carries the `X-Served-By` and `X-Db-Server` headers (`served_by`,
//! `db_server`), so a test sees which web server and which database answered. With
//! `--fresh 1` each read opens a new connection (a keep-alive connection stays on the
//! load balancer's config of its time until it closes).

#![allow(clippy::disallowed_methods)] // pacing sleeps on a plain thread

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rampart_test_support::client::Https;

struct Args {
    addr: SocketAddr,
    ca: PathBuf,
    writers: usize,
    seconds: u64,
    max: usize,
    rate: u64,
    tag: String,
    out: PathBuf,
    get: Option<String>,
    fresh: bool,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        addr: "0.0.0.0:443".parse().map_err(|_| "addr")?,
        ca: PathBuf::new(),
        writers: 4,
        seconds: 10,
        max: 10_000,
        rate: 20,
        tag: "t".into(),
        out: PathBuf::from("writes.jsonl"),
        get: None,
        fresh: false,
    };
    while let Some(k) = it.next() {
        let v = it.next().ok_or(format!("{k}: missing value"))?;
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{k}: not a number: {v}"))
        };
        match k.as_str() {
            "--addr" => a.addr = v.parse().map_err(|_| format!("--addr: {v}"))?,
            "--ca" => a.ca = v.into(),
            "--writers" => a.writers = num(&v)? as usize,
            "--seconds" => a.seconds = num(&v)?.min(600),
            "--max" => a.max = num(&v)? as usize,
            "--rate" => a.rate = num(&v)?.clamp(1, 1000),
            "--tag" => a.tag = v,
            "--out" => a.out = v.into(),
            "--get" if v.starts_with('/') => a.get = Some(v),
            "--fresh" => a.fresh = num(&v)? != 0,
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    Ok(a)
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rampart-test-writer: {e}");
            std::process::exit(2);
        }
    };
    let tls = rampart_tls::ClientTls {
        ca: a.ca.clone(),
        client_cert: None,
    };
    let cfg = match rampart_tls::client_config(&tls) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("rampart-test-writer: {e}");
            std::process::exit(2);
        }
    };
    let out = match std::fs::File::create(&a.out) {
        Ok(f) => Arc::new(Mutex::new(f)),
        Err(e) => {
            eprintln!("rampart-test-writer: {}: {e}", a.out.display());
            std::process::exit(2);
        }
    };
    let end = Instant::now() + Duration::from_secs(a.seconds);
    let per_writer = a.max / a.writers.max(1);
    let gap = Duration::from_millis(1000 / a.rate);
    let threads: Vec<_> = (0..a.writers)
        .map(|w| {
            let (cfg, out, tag, addr) = (cfg.clone(), out.clone(), a.tag.clone(), a.addr);
            let get = a.get.clone();
            let fresh = a.fresh;
            std::thread::spawn(move || {
                let mut conn: Option<Https> = None;
                for n in 0..per_writer {
                    if Instant::now() >= end {
                        break;
                    }
                    let next = Instant::now() + gap;
                    let id = format!("{tag}-w{w}-{n}");
                    let start = now_ms();
                    let (outcome, status, extra) = match &get {
                        Some(path) => {
                            if fresh {
                                conn = None;
                            }
                            read(&mut conn, addr, &cfg, path)
                        }
                        None => {
                            let (o, s) = attempt(&mut conn, addr, &cfg, &id);
                            (o, s, String::new())
                        }
                    };
                    let line = format!(
                        "{{\"id\":\"{id}\",\"outcome\":\"{outcome}\",\"status\":{status},\"start_ms\":{start},\"end_ms\":{}{extra}}}\n",
                        now_ms()
                    );
                    if let Ok(mut f) = out.lock() {
                        let _ = f.write_all(line.as_bytes());
                    }
                    if let Some(rest) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(rest);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

/// One read: its outcome, HTTP status (0 without one) and `,"served_by":…,"db_server":…`.
fn read(
    conn: &mut Option<Https>,
    addr: SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
    path: &str,
) -> (&'static str, u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: www.foobar.com\r\n\r\n");
    for fresh in [false, true] {
        if fresh || conn.is_none() {
            match Https::connect(addr, cfg.clone(), "www.foobar.com") {
                Ok(c) => *conn = Some(c),
                Err(_) => {
                    *conn = None;
                    return ("fail", 0, String::new());
                }
            }
        }
        let Some(c) = conn.as_mut() else {
            return ("fail", 0, String::new());
        };
        if c.send(req.as_bytes()).is_err() {
            // Closed while idle: once more on a new connection.
            *conn = None;
            continue;
        }
        return match c.response() {
            Ok(r) => {
                let header = |n: &str| r.header(n).unwrap_or_default();
                let extra = format!(
                    ",\"served_by\":{:?},\"db_server\":{:?}",
                    header("x-served-by"),
                    header("x-db-server")
                );
                if r.header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                {
                    *conn = None;
                }
                let outcome = if (200..300).contains(&r.status) {
                    "ok"
                } else {
                    "fail"
                };
                (outcome, r.status, extra)
            }
            Err(_) => {
                *conn = None;
                ("fail", 0, String::new())
            }
        };
    }
    ("fail", 0, String::new())
}

/// One insert: its outcome and HTTP status (0 without one).
fn attempt(
    conn: &mut Option<Https>,
    addr: SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
    id: &str,
) -> (&'static str, u16) {
    if conn.is_none() {
        match Https::connect(addr, cfg.clone(), "www.foobar.com") {
            Ok(c) => *conn = Some(c),
            Err(_) => return ("fail", 0),
        }
    }
    let Some(c) = conn.as_mut() else {
        return ("fail", 0);
    };
    let body = format!("{{\"name\":\"{id}\",\"email\":\"{id}@jepsen.test\"}}");
    let req = format!(
        "POST /api/users HTTP/1.1\r\nHost: www.foobar.com\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if c.send(req.as_bytes()).is_err() {
        // The connection was closed while idle (a web server or the load balancer
        // restarted): nothing was written; retry once on a new connection.
        *conn = None;
        match Https::connect(addr, cfg.clone(), "www.foobar.com") {
            Ok(mut fresh) => {
                if fresh.send(req.as_bytes()).is_err() {
                    return ("unknown", 0);
                }
                *conn = Some(fresh);
            }
            Err(_) => return ("fail", 0),
        }
    }
    let Some(c) = conn.as_mut() else {
        return ("unknown", 0);
    };
    match c.response() {
        Ok(r) => {
            let close = r
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
            if close {
                *conn = None;
            }
            let outcome = match r.status {
                200..=299 => "ok",
                503 if r.text().contains("outcome_unknown") => "unknown",
                400..=499 | 503 => "fail",
                _ => "unknown",
            };
            (outcome, r.status)
        }
        Err(_) => {
            *conn = None;
            ("unknown", 0)
        }
    }
}

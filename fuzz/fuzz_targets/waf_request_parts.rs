//! Fuzzes `request::build` and through it every argument and body parser: the query
//! string, cookies and headers, and urlencoded, JSON, multipart and XML bodies.
//!
//! The input is a small HTTP-like message, so seeds can be written by hand:
//!
//! ```text
//! <kind byte>METHOD URI PROTOCOL\n
//! Name: value\n          (any number of header lines, `\r\n` accepted)
//! \n
//! body
//! ```
//!
//! The kind byte (modulo 8) picks the Content-Type added before the input's own
//! headers (a Content-Type among those overrides it): urlencoded, JSON, multipart with
//! the boundary taken from the body's first line, XML, a `+json` type, `text/xml`
//! with a charset, or none (the input's headers alone).

#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_waf::request::{build, Parts};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let (line, rest) = split_line(rest);
    let line = String::from_utf8_lossy(line);
    let mut words = line.splitn(3, ' ');
    let method = words.next().unwrap_or_default();
    let uri = words.next().unwrap_or_default();
    let protocol = words.next().unwrap_or_default();

    let mut input_headers = Vec::new();
    let mut body = rest;
    while !body.is_empty() {
        let (h, after) = split_line(body);
        body = after;
        if h.is_empty() {
            break;
        }
        let (name, value) = match h.iter().position(|b| *b == b':') {
            Some(i) => (&h[..i], h[i + 1..].trim_ascii_start()),
            None => (h, &[][..]),
        };
        input_headers.push((String::from_utf8_lossy(name).into_owned(), value.to_vec()));
    }

    let content_type: Option<Vec<u8>> = match kind % 8 {
        0 => Some(b"application/x-www-form-urlencoded".to_vec()),
        1 => Some(b"application/json".to_vec()),
        2 => {
            // The boundary the body opens with (`--B`), so the parser gets past its
            // first delimiter; a body without one is still a multipart body.
            let (first, _) = split_line(body);
            let b = first.strip_prefix(b"--").unwrap_or(b"B");
            let mut ct = b"multipart/form-data; boundary=".to_vec();
            ct.extend_from_slice(b);
            Some(ct)
        }
        3 => Some(b"application/xml".to_vec()),
        4 => Some(b"application/vnd.api+json; charset=utf-8".to_vec()),
        5 => Some(b"text/xml; charset=utf-8".to_vec()),
        _ => None,
    };
    let mut headers = Vec::with_capacity(input_headers.len() + 1);
    if let Some(ct) = content_type {
        headers.push(("Content-Type".to_owned(), ct));
    }
    headers.extend(input_headers);

    let r = build(&Parts {
        method,
        uri,
        protocol,
        headers: &headers,
        body,
        remote_addr: "192.0.2.1",
        unique_id: "fuzz",
    });

    // Every argument is a GET or a POST argument, and has its name in ARGS_NAMES.
    let count = |c: &str| r.vars.get(c).map_or(0, Vec::len);
    assert_eq!(count("ARGS"), count("ARGS_GET") + count("ARGS_POST"));
    assert_eq!(count("ARGS"), count("ARGS_NAMES"));
});

/// The bytes up to the first `\n` (a `\r` before it dropped) and the bytes after it.
fn split_line(v: &[u8]) -> (&[u8], &[u8]) {
    match v.iter().position(|b| *b == b'\n') {
        Some(i) => (v[..i].strip_suffix(b"\r").unwrap_or(&v[..i]), &v[i + 1..]),
        None => (v, &[]),
    }
}

//! Fuzzes the dashboard's parsers of what a browser sends before it has logged in: the
//! urlencoded login form and query string (`server::parse_form`) and the `Cookie`
//! headers (`server::cookie`). The input's first line is the cookie name looked for,
//! the next lines are `Cookie` header values, and the whole input is also a form.
//! Checks: no panic; at most 16 fields; a cookie value found has no `;`.

#![no_main]

use http::header::{HeaderMap, HeaderValue, COOKIE};
use libfuzzer_sys::fuzz_target;
use rampart_dashboard::server::{cookie, parse_form};

fuzz_target!(|data: &[u8]| {
    if let Some(form) = parse_form(data) {
        assert!(form.len() <= 16);
    }
    let mut lines = data.split(|&b| b == b'\n');
    let name = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(COOKIE, v);
        }
    }
    if let Some(value) = cookie(&headers, &name) {
        assert!(!value.contains(';'));
    }
});

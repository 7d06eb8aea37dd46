//! gotestwaf's payloads, encoded and placed in requests as gotestwaf does: shared by
//! `gotestwaf.rs` (our verdicts) and `modsec_parity.rs` (ours against ModSecurity's).
//! Only `encode` and `place` are used from outside.

use yaml_rust2::Yaml;

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
    let mut out = String::new();
    for c in s.as_bytes().chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..=c.len() {
            out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

pub fn encode(encoder: &str, payload: &str) -> Option<String> {
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
pub fn place(placeholder: &Yaml, payload: &str) -> Option<Vec<u8>> {
    let (name, spec) = match placeholder {
        Yaml::String(s) => (s.as_str(), &Yaml::Null),
        Yaml::Hash(h) => {
            let (k, v) = h.iter().next()?;
            (k.as_str()?, v)
        }
        _ => return None,
    };
    let typed = |t: &str| ("Content-Type", t.to_owned());
    Some(match name {
        "URLPath" => request("GET", &format!("/{payload}"), &[], ""),
        "URLParam" => request("GET", &format!("/?gtw={payload}"), &[], ""),
        "Header" => request("GET", "/", &[("X-Gtw", payload.to_owned())], ""),
        "UserAgent" => request("GET", "/", &[("User-Agent", payload.to_owned())], ""),
        "HTMLForm" => request(
            "POST",
            "/",
            &[typed("application/x-www-form-urlencoded")],
            &format!("gtw={payload}"),
        ),
        "HTMLMultipartForm" => {
            let b = "gotestwafboundary7MA4YWxk";
            let body = format!(
                "--{b}\r\nContent-Disposition: form-data; name=\"gtw\"\r\n\r\n{payload}\r\n--{b}--\r\n"
            );
            let ct = format!("multipart/form-data; boundary={b}");
            request("POST", "/", &[typed(&ct)], &body)
        }
        "JSONRequest" => {
            let body = format!(
                "{{\"test\": true, \"gtw\": {}}}",
                serde_json::Value::String(payload.to_owned())
            );
            request("POST", "/", &[typed("application/json")], &body)
        }
        "XMLBody" => request("POST", "/", &[typed("text/xml")], payload),
        "SOAPBody" => {
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><gtw>{payload}</gtw></soap:Body></soap:Envelope>"
            );
            request(
                "POST",
                "/",
                &[typed("text/xml"), ("SOAPAction", "\"gtw\"".to_owned())],
                &body,
            )
        }
        "GraphQL" => {
            if spec["method"].as_str() == Some("POST") {
                request("POST", "/graphql", &[typed("application/json")], payload)
            } else {
                request("GET", &format!("/graphql?query={payload}"), &[], "")
            }
        }
        "RawRequest" => {
            let fill = |s: &str| s.replace("{{payload}}", payload);
            let method = spec["method"].as_str().unwrap_or("GET");
            let path = fill(spec["path"].as_str().unwrap_or("/"));
            let headers: Vec<(&str, String)> = spec["headers"]
                .as_hash()
                .map(|h| {
                    h.iter()
                        .map(|(k, v)| {
                            (
                                k.as_str().unwrap_or_default(),
                                fill(v.as_str().unwrap_or_default()),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let body = fill(spec["body"].as_str().unwrap_or(""));
            request(method, &path, &headers, &body)
        }
        _ => return None,
    })
}

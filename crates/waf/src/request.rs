//! A request's variables for the engine, from its parts: the request line (raw and
//! decoded URI, path, basename, query string), query arguments, headers, cookies, and
//! an urlencoded or JSON body (multipart and XML bodies are to come). Values are bytes;
//! argument names and values are URL-decoded as ModSecurity decodes them.

use crate::engine::Request;

/// The parts of an HTTP request the WAF inspects.
#[derive(Clone, Debug, Default)]
pub struct Parts<'a> {
    pub method: &'a str,
    /// The request target as sent (`/path?query`).
    pub uri: &'a str,
    pub protocol: &'a str,
    pub headers: &'a [(String, Vec<u8>)],
    pub body: &'a [u8],
    pub remote_addr: &'a str,
    pub unique_id: &'a str,
}

/// Builds the engine's variables from `p`.
pub fn build(p: &Parts<'_>) -> Request {
    let mut r = Request::default();
    let (path, query) = match p.uri.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (p.uri, None),
    };
    r.set("REQUEST_METHOD", p.method);
    r.set("REQUEST_PROTOCOL", p.protocol);
    r.set(
        "REQUEST_LINE",
        format!("{} {} {}", p.method, p.uri, p.protocol),
    );
    r.set("REQUEST_URI_RAW", p.uri);
    r.set("REQUEST_URI", p.uri);
    let filename = crate::transform::apply("urlDecode", path.as_bytes())
        .map(|c| c.into_owned())
        .unwrap_or_default();
    let basename = filename
        .rsplit(|b| *b == b'/')
        .next()
        .unwrap_or_default()
        .to_vec();
    r.set("REQUEST_FILENAME", filename);
    r.set("REQUEST_BASENAME", basename);
    r.set("QUERY_STRING", query.unwrap_or_default());
    r.set("REMOTE_ADDR", p.remote_addr);
    r.set("UNIQUE_ID", p.unique_id);
    r.vars.entry("ARGS".into()).or_default();
    let mut combined = 0usize;
    for (k, v) in query.map(urlencoded).unwrap_or_default() {
        combined += k.len() + v.len();
        r.add("ARGS_GET", &k, v.clone());
        r.add("ARGS_GET_NAMES", &k, k.clone());
        r.add("ARGS", &k, v);
        r.add("ARGS_NAMES", &k, k.clone());
    }
    let mut content_type = String::new();
    // As sent: a multipart boundary is case-sensitive.
    let mut content_type_raw = String::new();
    for (name, value) in p.headers {
        r.add("REQUEST_HEADERS", name, value.clone());
        r.add("REQUEST_HEADERS_NAMES", name, name.clone());
        if name.eq_ignore_ascii_case("cookie") {
            for part in value.split(|b| *b == b';') {
                let part = String::from_utf8_lossy(part);
                let part = part.trim();
                if part.is_empty() {
                    continue;
                }
                let (k, v) = part.split_once('=').unwrap_or((part, ""));
                r.add("REQUEST_COOKIES", k, v);
                r.add("REQUEST_COOKIES_NAMES", k, k);
            }
        }
        if name.eq_ignore_ascii_case("content-type") {
            content_type_raw = String::from_utf8_lossy(value).into_owned();
            content_type = content_type_raw.to_ascii_lowercase();
        }
    }
    if !p.body.is_empty() {
        r.set("REQUEST_BODY_LENGTH", p.body.len().to_string());
        let mime = content_type.split(';').next().unwrap_or_default().trim();
        let args = if mime == "application/x-www-form-urlencoded" {
            r.set("REQBODY_PROCESSOR", "URLENCODED");
            urlencoded(&String::from_utf8_lossy(p.body))
        } else if mime == "application/json" || mime.ends_with("+json") {
            r.set("REQBODY_PROCESSOR", "JSON");
            match json_args(p.body) {
                Ok(args) => args,
                Err(e) => {
                    r.set("REQBODY_ERROR", "1");
                    r.set("REQBODY_ERROR_MSG", format!("JSON parsing error: {e}"));
                    Vec::new()
                }
            }
        } else if mime == "multipart/form-data" {
            r.set("REQBODY_PROCESSOR", "MULTIPART");
            let boundary = content_type_raw
                .split(';')
                .filter_map(|p| {
                    let p = p.trim();
                    p.get(..9)
                        .filter(|k| k.eq_ignore_ascii_case("boundary="))
                        .map(|_| &p[9..])
                })
                .next()
                .map(|b| b.trim_matches('"').to_owned());
            match boundary.map(|b| multipart(p.body, &b)) {
                Some(Ok(m)) => {
                    let mut combined = 0usize;
                    for f in &m.files {
                        combined += f.size;
                        r.add("FILES", &f.name, f.filename.clone());
                        r.add("FILES_NAMES", &f.name, f.name.clone());
                        r.add("FILES_SIZES", &f.name, f.size.to_string());
                    }
                    r.set("FILES_COMBINED_SIZE", combined.to_string());
                    for (name, line) in &m.part_headers {
                        r.add("MULTIPART_PART_HEADERS", name, line.clone());
                    }
                    r.set(
                        "MULTIPART_STRICT_ERROR",
                        if m.strict_error { "1" } else { "0" },
                    );
                    r.set("MULTIPART_UNMATCHED_BOUNDARY", "0");
                    m.args
                }
                other => {
                    let e = match other {
                        Some(Err(e)) => e,
                        _ => "no boundary in Content-Type".to_owned(),
                    };
                    r.set("REQBODY_ERROR", "1");
                    r.set("REQBODY_ERROR_MSG", format!("Multipart parsing error: {e}"));
                    r.set("MULTIPART_STRICT_ERROR", "1");
                    Vec::new()
                }
            }
        } else if mime.ends_with("/xml") || mime.ends_with("+xml") {
            r.set("REQBODY_PROCESSOR", "XML");
            match xml_values(p.body) {
                Ok((text, attrs)) => {
                    r.add("XML", "/*", text);
                    for a in attrs {
                        r.add("XML", "//@*", a);
                    }
                }
                Err(e) => {
                    r.set("REQBODY_ERROR", "1");
                    r.set("REQBODY_ERROR_MSG", format!("XML parsing error: {e}"));
                }
            }
            Vec::new()
        } else {
            Vec::new()
        };
        // As ModSecurity: REQUEST_BODY holds the raw body only when no structured
        // processor (JSON, XML, multipart) took it; and when one failed, so a body
        // that does not parse is still inspected.
        let failed = r.vars.contains_key("REQBODY_ERROR");
        if failed
            || !matches!(
                r.vars
                    .get("REQBODY_PROCESSOR")
                    .and_then(|v| v.first())
                    .map(|(_, v)| v.as_slice()),
                Some(b"JSON" | b"XML" | b"MULTIPART")
            )
        {
            r.set("REQUEST_BODY", p.body);
        }
        for (k, v) in args {
            combined += k.len() + v.len();
            r.add("ARGS_POST", &k, v.clone());
            r.add("ARGS_POST_NAMES", &k, k.clone());
            r.add("ARGS", &k, v);
            r.add("ARGS_NAMES", &k, k.clone());
        }
    }
    r.set("ARGS_COMBINED_SIZE", combined.to_string());
    r
}

/// The most arguments a JSON body yields; past it the body is a parse error (a flood of
/// tiny values must not multiply the rules' work).
pub const MAX_JSON_ARGS: usize = 10_000;

/// The most bytes of names one body's parser may produce: a JSON leaf carries its
/// whole path, a multipart part its name again for each header line. Past it the body
/// is a parse error, so one long name repeated for many values cannot make a small
/// body's variables grow with the square of its size.
pub const MAX_NAME_BYTES: usize = 1 << 20;

/// Counts `name` against the body's [`MAX_NAME_BYTES`].
fn charge(used: &mut usize, name: &str) -> Result<(), String> {
    *used += name.len();
    if *used > MAX_NAME_BYTES {
        return Err(format!("names over {MAX_NAME_BYTES} bytes"));
    }
    Ok(())
}

/// A JSON body's leaves as arguments named by their path, as ModSecurity names them
/// (an object's members in key order, as serde_json keeps them):
/// `json.user.name`, array elements by index (`json.tags.0`). Strings are their text,
/// numbers and booleans their JSON text, null the empty string. Nesting deeper than
/// serde_json's limit (128) is an error, as is a body with more than
/// [`MAX_JSON_ARGS`] leaves or [`MAX_NAME_BYTES`] of paths.
pub fn json_args(body: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut names = 0usize;
    let mut stack = vec![("json".to_owned(), &v)];
    while let Some((name, v)) = stack.pop() {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m.iter().rev() {
                    let path = format!("{name}.{k}");
                    charge(&mut names, &path)?;
                    stack.push((path, v));
                }
            }
            serde_json::Value::Array(a) => {
                for (i, v) in a.iter().enumerate().rev() {
                    let path = format!("{name}.{i}");
                    charge(&mut names, &path)?;
                    stack.push((path, v));
                }
            }
            serde_json::Value::String(s) => out.push((name, s.clone().into_bytes())),
            serde_json::Value::Null => out.push((name, Vec::new())),
            other => out.push((name, other.to_string().into_bytes())),
        }
        if out.len() > MAX_JSON_ARGS {
            return Err(format!("more than {MAX_JSON_ARGS} values"));
        }
    }
    Ok(out)
}

/// The most parts a multipart body may have.
pub const MAX_PARTS: usize = 1_000;

/// A file part of a multipart body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilePart {
    pub name: String,
    pub filename: String,
    pub size: usize,
}

/// A multipart/form-data body as ModSecurity reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Multipart {
    /// Parts without a filename: (name, value).
    pub args: Vec<(String, Vec<u8>)>,
    pub files: Vec<FilePart>,
    /// Every header line of every part, by the part's name (`MULTIPART_PART_HEADERS`).
    pub part_headers: Vec<(String, Vec<u8>)>,
    /// Something a strict parser refuses: no closing boundary, a part without
    /// `Content-Disposition: form-data` or without a name, a bare LF line end.
    pub strict_error: bool,
}

/// Parses a multipart/form-data body with `boundary`. An error when the body holds
/// no part at all, more than [`MAX_PARTS`], or part names repeated over
/// [`MAX_NAME_BYTES`].
pub fn multipart(body: &[u8], boundary: &str) -> Result<Multipart, String> {
    if boundary.is_empty() || boundary.len() > 200 {
        return Err("bad boundary".into());
    }
    let delim = format!("--{boundary}");
    let d = delim.as_bytes();
    let find = |hay: &[u8], from: usize| -> Option<usize> {
        hay.get(from..)?
            .windows(d.len())
            .position(|w| w == d)
            .map(|p| p + from)
    };
    let mut m = Multipart::default();
    let Some(mut at) = find(body, 0) else {
        return Err("no boundary in the body".into());
    };
    let mut closed = false;
    let mut names = 0usize;
    for _ in 0..=MAX_PARTS {
        let after = at + d.len();
        if body.get(after..after + 2) == Some(b"--") {
            closed = true;
            break;
        }
        let start = match body.get(after..after + 2) {
            Some(b"\r\n") => after + 2,
            Some([b'\n', _]) => {
                m.strict_error = true;
                after + 1
            }
            _ => {
                m.strict_error = true;
                after
            }
        };
        let Some(next) = find(body, start) else {
            m.strict_error = true;
            part(&mut m, &body[start..], &mut names)?;
            break;
        };
        // The CRLF before the next delimiter belongs to it.
        let mut end = next;
        if end >= start + 2 && &body[end - 2..end] == b"\r\n" {
            end -= 2;
        } else if end > start && body[end - 1] == b'\n' {
            end -= 1;
            m.strict_error = true;
        }
        part(&mut m, &body[start..end], &mut names)?;
        at = next;
        if m.args.len() + m.files.len() > MAX_PARTS {
            return Err(format!("more than {MAX_PARTS} parts"));
        }
    }
    if !closed {
        // As ModSecurity: "Multipart: Final boundary missing" fails the body.
        return Err("final boundary missing".into());
    }
    if m.args.is_empty() && m.files.is_empty() && m.part_headers.is_empty() {
        return Err("no part".into());
    }
    Ok(m)
}

/// A header's `;`-separated parameters, a `;` inside double quotes kept.
fn split_params(v: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut prev = '\0';
    for c in v.chars() {
        if c == '"' && prev != '\\' {
            quoted = !quoted;
        }
        if c == ';' && !quoted {
            out.push(String::new());
        } else if let Some(last) = out.last_mut() {
            last.push(c);
        }
        prev = c;
    }
    out
}

/// One part: its headers (up to the empty line), then its content. Its name is
/// counted against `names` once per header line and once for the part.
fn part(m: &mut Multipart, p: &[u8], names: &mut usize) -> Result<(), String> {
    let (head, content) = match p.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&p[..i], &p[i + 4..]),
        None => match p.windows(2).position(|w| w == b"\n\n") {
            Some(i) => {
                m.strict_error = true;
                (&p[..i], &p[i + 2..])
            }
            None => {
                m.strict_error = true;
                (p, &[][..])
            }
        },
    };
    let mut name = None;
    let mut filename = None;
    let mut lines = Vec::new();
    for line in head.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        lines.push(line.to_vec());
        let text = String::from_utf8_lossy(line);
        let Some((h, v)) = text.split_once(':') else {
            m.strict_error = true;
            continue;
        };
        if h.trim().eq_ignore_ascii_case("content-disposition") {
            let params = split_params(v);
            let mut params = params.iter().map(|p| p.trim());
            if !params
                .next()
                .is_some_and(|t| t.eq_ignore_ascii_case("form-data"))
            {
                m.strict_error = true;
            }
            for p in params {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|x| x.strip_suffix('"'))
                    .unwrap_or(v)
                    .to_owned();
                match k.trim().to_ascii_lowercase().as_str() {
                    "name" => name = Some(v),
                    "filename" => filename = Some(v),
                    _ => {}
                }
            }
        }
    }
    let name = name.unwrap_or_else(|| {
        m.strict_error = true;
        String::new()
    });
    for l in lines {
        charge(names, &name)?;
        m.part_headers.push((name.clone(), l));
    }
    charge(names, &name)?;
    match filename {
        Some(f) => m.files.push(FilePart {
            name,
            filename: f,
            size: content.len(),
        }),
        None => m.args.push((name, content.to_vec())),
    }
    Ok(())
}

/// The most XML events a body may have (elements, text, attributes).
pub const MAX_XML_EVENTS: usize = 100_000;

/// An XML body as the two XPath targets CRS uses read it: `XML:/*`, the document's
/// text (text and CDATA nodes, as written), and `XML://@*`, each attribute's value (as
/// written; the rules decode entities themselves).
pub fn xml_values(body: &[u8]) -> Result<(Vec<u8>, Vec<Vec<u8>>), String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut text = Vec::new();
    let mut attrs = Vec::new();
    let mut buf = Vec::new();
    let mut depth = 0usize;
    for _ in 0..MAX_XML_EVENTS {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                depth += 1;
                for a in e.attributes().with_checks(false) {
                    let a = a.map_err(|e| e.to_string())?;
                    attrs.push(a.value.into_owned());
                }
            }
            Ok(Event::Text(t)) => text.extend_from_slice(&t),
            Ok(Event::CData(c)) => text.extend_from_slice(&c),
            Ok(Event::Eof) => {
                if depth == 0 {
                    return Err("no root element".into());
                }
                return Ok((text, attrs));
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
        buf.clear();
    }
    Err(format!("more than {MAX_XML_EVENTS} XML events"))
}

/// `a=1&b=2` as decoded (name, value) pairs; a name without `=` has an empty value.
pub fn urlencoded(q: &str) -> Vec<(String, Vec<u8>)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                crate::transform::apply("urlDecode", s.as_bytes())
                    .map(|c| c.into_owned())
                    .unwrap_or_default()
            };
            (String::from_utf8_lossy(&dec(k)).into_owned(), dec(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn json_leaves_become_arguments_by_path() {
        let args =
            json_args(br#"{"user":{"name":"Grace","tags":["a",{"b":1}],"ok":true,"x":null}}"#)
                .unwrap();
        let names: Vec<&str> = args.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "json.user.name",
                "json.user.ok",
                "json.user.tags.0",
                "json.user.tags.1.b",
                "json.user.x"
            ]
        );
        assert_eq!(args[1].1, b"true");
        // Too deep, not JSON, or too many values: an error, never a panic.
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(json_args(deep.as_bytes()).is_err());
        assert!(json_args(b"{nope").is_err());
        let many = format!("[{}0]", "0,".repeat(MAX_JSON_ARGS + 1));
        assert!(json_args(many.as_bytes()).is_err());
    }

    #[test]
    fn xml_text_and_attributes_for_the_xpath_targets() {
        let (text, attrs) =
            xml_values(br#"<?xml version="1.0"?><root><a probe="1234 OR 1=1">x<![CDATA[y]]></a><b c='d'/></root>"#)
                .unwrap();
        assert_eq!(text, b"xy");
        assert_eq!(attrs, [b"1234 OR 1=1".to_vec(), b"d".to_vec()]);
        assert!(xml_values(b"<a><b></a>").is_err());
        assert!(xml_values(b"just text").is_err());
    }

    #[test]
    fn multipart_parts_become_arguments_files_and_part_headers() {
        let body = b"--XB\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1' OR 1=1\r\n\
--XB\r\nContent-Disposition: form-data; name=\"up\"; filename=\"x;.php\"\r\n\
Content-Type: text/plain; charset=utf-7\r\n\r\nhello\r\n--XB--\r\n";
        let m = multipart(body, "XB").unwrap();
        assert_eq!(m.args, [("a".to_owned(), b"1' OR 1=1".to_vec())]);
        assert_eq!(
            m.files,
            [FilePart {
                name: "up".into(),
                filename: "x;.php".into(),
                size: 5
            }]
        );
        assert!(m
            .part_headers
            .iter()
            .any(|(n, l)| n == "up" && l == b"Content-Type: text/plain; charset=utf-7"));
        assert!(!m.strict_error);
        // No closing boundary ("Multipart: Final boundary missing" in ModSecurity) and
        // no boundary at all: errors.
        assert!(multipart(
            b"--XB\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv",
            "XB",
        )
        .is_err());
        assert!(multipart(b"nothing", "XB").is_err());
        let many =
            "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n".repeat(MAX_PARTS + 2);
        assert!(multipart(many.as_bytes(), "B").is_err());
    }

    #[test]
    fn a_long_name_repeated_for_many_values_is_a_body_error() {
        // Names grew with the square of the body: 128 KiB made 2 GiB (the fuzz target's
        // timeout). Here a 30 KiB body would make 80 MB of names, under MAX_JSON_ARGS.
        let key = "k".repeat(16_000);
        let json = format!(r#"{{"{key}":[{}0]}}"#, "0,".repeat(5_000));
        assert!(json_args(json.as_bytes()).is_err());
        let body = format!(
            "--B\r\nContent-Disposition: form-data; name=\"{key}\"\r\n{}\r\nv\r\n--B--\r\n",
            "a\r\n".repeat(5_000)
        );
        assert!(multipart(body.as_bytes(), "B").is_err());
    }

    #[test]
    fn a_multipart_boundary_keeps_its_case() {
        let body = b"--AbC\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nv\r\n--AbC--\r\n";
        let headers = [(
            "Content-Type".to_owned(),
            b"multipart/form-data; Boundary=AbC".to_vec(),
        )];
        let r = build(&Parts {
            method: "POST",
            uri: "/",
            protocol: "HTTP/1.1",
            headers: &headers,
            body,
            ..Default::default()
        });
        assert_eq!(r.vars["ARGS"], [("q".to_owned(), b"v".to_vec())]);
        assert_eq!(r.vars["MULTIPART_STRICT_ERROR"][0].1, b"0");
    }

    #[test]
    fn a_bad_json_body_is_a_body_error_not_arguments() {
        let headers = [("Content-Type".to_owned(), b"application/json".to_vec())];
        let r = build(&Parts {
            method: "POST",
            uri: "/api/users",
            protocol: "HTTP/1.1",
            headers: &headers,
            body: b"{\"name\": ",
            ..Default::default()
        });
        assert_eq!(r.vars["REQBODY_ERROR"][0].1, b"1");
        assert_eq!(r.vars["REQBODY_PROCESSOR"][0].1, b"JSON");
    }
}

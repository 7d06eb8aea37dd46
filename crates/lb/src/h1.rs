//! The client-facing HTTP/1.1 server. rampart parses HTTP/1 itself (with `httparse`)
//! instead of handing the socket to hyper, because a load balancer must own the framing
//! decisions that request smuggling exploits and must answer limits with the right status:
//!
//! - the whole head within `header_timeout` of its first byte (of the accept, for the
//!   first request), else 408; a keep-alive connection idle for `idle_timeout` is closed;
//! - at most `max_header_bytes` of head and 100 headers, else 431;
//! - `Transfer-Encoding` together with `Content-Length`, differing `Content-Length`s, a
//!   transfer coding other than `chunked`, HTTP/1.0 with `Transfer-Encoding`, an invalid
//!   chunk size (`chunked.rs`) or a missing/duplicate `Host` get 400, and the connection
//!   is closed;
//! - a body over `max_body_bytes` gets 413 (before reading it when the length is declared);
//!   the whole body within `body_timeout`, else 408.
//!
//! Request bodies are read completely (they are bounded) before the request is forwarded,
//! as nginx does by default: a slow client never ties up a backend connection, and an
//! idempotent request can be replayed on another backend. Responses are streamed.
//! Upgrades (WebSocket) and CONNECT are not supported and get 501. What could not be read
//! is a `proxy::Reject`, answered by `Generation::reject`.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{timeout_at, Instant};

use crate::chunked::parse_chunk_size;
use crate::proxy::{ConnInfo, Generation, Reject, RespBody};

const MAX_HEADERS: usize = 100;
const MAX_CHUNK_LINE: usize = 4096;

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head.
#[derive(Debug)]
pub struct Head {
    pub request: Request<()>,
    pub body: BodyKind,
    pub keep_alive: bool,
    pub expect_continue: bool,
}

/// Parses a request head from `buf`: `Ok(None)` when more bytes are needed, otherwise the
/// head and the number of bytes it used.
pub fn parse_head(buf: &[u8], max_head: usize) -> Result<Option<(Head, usize)>, Reject> {
    // Uninitialized header slots: zeroing 100 of them per parse showed up in profiles.
    let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let n = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= max_head {
                Err(Reject::HeadTooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(Reject::HeadTooLarge),
        Err(httparse::Error::Version) => return Err(Reject::BadRequest("version")),
        Err(_) => return Err(Reject::BadRequest("syntax")),
    };
    if n > max_head {
        return Err(Reject::HeadTooLarge);
    }
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(Reject::BadRequest("version")),
    };
    let method = Method::from_bytes(req.method.unwrap_or("").as_bytes())
        .map_err(|_| Reject::BadRequest("method"))?;
    if method == Method::CONNECT {
        return Err(Reject::NotImplemented("connect"));
    }
    let target = req.path.unwrap_or("");
    let uri: Uri = target.parse().map_err(|_| Reject::BadRequest("target"))?;
    let origin_form = target.starts_with('/');
    let asterisk = target == "*" && method == Method::OPTIONS;
    let absolute = uri.scheme().is_some() && uri.authority().is_some();
    if !(origin_form || asterisk || absolute) {
        return Err(Reject::BadRequest("target"));
    }

    // Room for what the proxy adds (the four forwarding headers, `X-Request-Id`, and
    // `Content-Length` or `Host`): growing the map on every request showed in profiles.
    let mut map = HeaderMap::with_capacity(req.headers.len() + 6);
    for h in req.headers.iter() {
        let name =
            HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| Reject::BadRequest("header"))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| Reject::BadRequest("header"))?;
        map.append(name, value);
    }

    let hosts = map.get_all(header::HOST).iter().count();
    if hosts > 1 || (hosts == 0 && version == Version::HTTP_11) {
        return Err(Reject::BadRequest("host"));
    }

    let body = framing(&map, version)?;
    if map.contains_key(header::UPGRADE) && version == Version::HTTP_11 {
        let connection_upgrade = connection_has(&map, "upgrade");
        if connection_upgrade {
            return Err(Reject::NotImplemented("upgrade"));
        }
    }
    let keep_alive = match version {
        Version::HTTP_11 => !connection_has(&map, "close"),
        _ => connection_has(&map, "keep-alive") && !connection_has(&map, "close"),
    };
    let expect_continue = match map.get(header::EXPECT) {
        None => false,
        Some(v) if v.as_bytes().eq_ignore_ascii_case(b"100-continue") => true,
        Some(_) => return Err(Reject::Expectation),
    };
    map.remove(header::TRANSFER_ENCODING);
    map.remove(header::CONTENT_LENGTH);
    map.remove(header::EXPECT);

    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = map;
    Ok(Some((
        Head {
            request,
            body,
            keep_alive,
            expect_continue,
        },
        n,
    )))
}

fn connection_has(map: &HeaderMap, token: &str) -> bool {
    map.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// Decides the body framing, refusing every ambiguous combination (RFC 9112 §6.3).
fn framing(map: &HeaderMap, version: Version) -> Result<BodyKind, Reject> {
    let te: Vec<&HeaderValue> = map.get_all(header::TRANSFER_ENCODING).iter().collect();
    let has_cl = map.contains_key(header::CONTENT_LENGTH);
    if !te.is_empty() {
        if version == Version::HTTP_10 {
            return Err(Reject::BadRequest("te_http10"));
        }
        if has_cl {
            return Err(Reject::BadRequest("te_and_cl"));
        }
        let mut codings = Vec::new();
        for v in te {
            let s = v.to_str().map_err(|_| Reject::BadRequest("te"))?;
            codings.extend(s.split(',').map(|c| c.trim().to_ascii_lowercase()));
        }
        return match codings.as_slice() {
            [only] if only == "chunked" => Ok(BodyKind::Chunked),
            [.., last]
                if last == "chunked"
                    && !codings[..codings.len() - 1].iter().any(|c| c == "chunked") =>
            {
                Err(Reject::NotImplemented("te_coding"))
            }
            _ => Err(Reject::BadRequest("te")),
        };
    }
    let mut len: Option<u64> = None;
    for v in map.get_all(header::CONTENT_LENGTH) {
        for part in v.as_bytes().split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                return Err(Reject::BadRequest("content_length"));
            }
            let n: u64 = std::str::from_utf8(part)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(Reject::BadRequest("content_length"))?;
            if len.is_some_and(|l| l != n) {
                return Err(Reject::BadRequest("content_length"));
            }
            len = Some(n);
        }
    }
    // A declared `Content-Length: 0` stays `Length(0)`, so the header is forwarded (and
    // inspected: CRS 920180 flags a POST without one) exactly as the client sent it.
    Ok(match len {
        None => BodyKind::None,
        Some(n) => BodyKind::Length(n),
    })
}

/// Reads more bytes into `buf` before `deadline`.
async fn fill<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    deadline: Instant,
) -> Result<(), Reject> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(8192);
    }
    match timeout_at(deadline, io.read_buf(buf)).await {
        Err(_) => Err(Reject::Timeout),
        Ok(Ok(0)) | Ok(Err(_)) => Err(Reject::Closed),
        Ok(Ok(_)) => Ok(()),
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// Reads a request body framed as `kind`, at most `limit` bytes, before `deadline`.
pub async fn read_body<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    kind: BodyKind,
    limit: usize,
    deadline: Instant,
) -> Result<Bytes, Reject> {
    match kind {
        BodyKind::None => Ok(Bytes::new()),
        BodyKind::Length(n) => {
            let n = usize::try_from(n).map_err(|_| Reject::BodyTooLarge)?;
            if n > limit {
                return Err(Reject::BodyTooLarge);
            }
            while buf.len() < n {
                buf.reserve(n - buf.len());
                fill(io, buf, deadline).await?;
            }
            Ok(buf.split_to(n).freeze())
        }
        BodyKind::Chunked => {
            let mut body = BytesMut::new();
            loop {
                let line_end = loop {
                    if let Some(i) = find_crlf(buf) {
                        break i;
                    }
                    if buf.len() > MAX_CHUNK_LINE {
                        return Err(Reject::BadRequest("chunk_size"));
                    }
                    fill(io, buf, deadline).await?;
                };
                let size =
                    parse_chunk_size(&buf[..line_end]).ok_or(Reject::BadRequest("chunk_size"))?;
                buf.advance(line_end + 2);
                if size == 0 {
                    // Trailers are read and dropped; they are bounded like a head.
                    let mut seen = 0usize;
                    loop {
                        let end = loop {
                            if let Some(i) = find_crlf(buf) {
                                break i;
                            }
                            if buf.len() > MAX_CHUNK_LINE {
                                return Err(Reject::HeadTooLarge);
                            }
                            fill(io, buf, deadline).await?;
                        };
                        buf.advance(end + 2);
                        seen += end + 2;
                        if end == 0 {
                            return Ok(body.freeze());
                        }
                        if seen > MAX_CHUNK_LINE * 4 {
                            return Err(Reject::HeadTooLarge);
                        }
                    }
                }
                let size = usize::try_from(size).map_err(|_| Reject::BodyTooLarge)?;
                if body.len().saturating_add(size) > limit {
                    return Err(Reject::BodyTooLarge);
                }
                while buf.len() < size + 2 {
                    fill(io, buf, deadline).await?;
                }
                if &buf[size..size + 2] != b"\r\n" {
                    return Err(Reject::BadRequest("chunk_data"));
                }
                body.extend_from_slice(&buf[..size]);
                buf.advance(size + 2);
            }
        }
    }
}

/// Hop-by-hop response headers that never cross the proxy; framing is the writer's job.
fn skip_response_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "content-length"
    )
}

/// Writes `resp` to the client; returns whether the connection can stay open.
pub async fn write_response<S: AsyncWrite + Unpin>(
    io: &mut S,
    resp: Response<RespBody>,
    head_request: bool,
    client_version: Version,
    mut keep_alive: bool,
) -> std::io::Result<bool> {
    let (parts, mut body) = resp.into_parts();
    let status = parts.status;
    let no_body = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if skip_response_header(name) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let exact = body.size_hint().exact();
    let mut chunked = false;
    if no_body {
        if head_request {
            if let Some(cl) = parts.headers.get(header::CONTENT_LENGTH) {
                out.extend_from_slice(b"content-length: ");
                out.extend_from_slice(cl.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
    } else if let Some(n) = exact {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(n.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    } else if client_version == Version::HTTP_11 {
        chunked = true;
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    } else {
        keep_alive = false;
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if client_version == Version::HTTP_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");

    if !no_body {
        let mut first = true;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| std::io::Error::other(format!("backend body: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            if chunked {
                out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                out.extend_from_slice(&data);
                out.extend_from_slice(b"\r\n");
            } else {
                out.extend_from_slice(&data);
            }
            // The head and the first data frame go out in one write; later frames are
            // written as they come so streamed responses are not held back.
            if !first || out.len() >= 16 * 1024 || body.is_end_stream() {
                io.write_all(&out).await?;
                out.clear();
            }
            first = false;
        }
        if chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }
    if !out.is_empty() {
        io.write_all(&out).await?;
    }
    io.flush().await?;
    Ok(keep_alive)
}

/// Serves HTTP/1.1 requests on one connection until it closes, a limit closes it, or
/// shutdown is signalled while it is idle.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    gen: Arc<Generation>,
    conn: Arc<ConnInfo>,
    mut shutdown: watch::Receiver<bool>,
) {
    let lim = &gen.config.limits;
    let mut buf = BytesMut::with_capacity(8192);
    let mut first = true;
    loop {
        // Wait for the first byte of the next request.
        // A connection accepted before the drain began still gets its first request
        // served (the client sent it, or is sending it, in good faith); only idle
        // keep-alive connections close at once.
        if buf.is_empty() {
            if *shutdown.borrow() && !first {
                return;
            }
            let wait = if first {
                conn.accepted
                    .checked_add(lim.header_timeout)
                    .map(Instant::from_std)
            } else {
                Some(Instant::now() + lim.idle_timeout)
            };
            let deadline = wait.unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            let got = tokio::select! {
                biased;
                _ = shutdown.changed(), if !first => return,
                r = fill(&mut io, &mut buf, deadline) => r,
            };
            match got {
                Ok(()) => {}
                Err(Reject::Timeout) if first => {
                    reject(&mut io, &gen, &conn, Reject::Timeout).await;
                    return;
                }
                Err(_) => return,
            }
        }
        // The head's deadline counts from when it is first found incomplete, just after
        // its first bytes came: most heads come whole, and then the clock is not read.
        let mut head_deadline =
            first.then(|| Instant::from_std(conn.accepted) + lim.header_timeout);
        first = false;

        let (head, used) = loop {
            match parse_head(&buf, lim.max_header_bytes) {
                Ok(Some(parsed)) => break parsed,
                Ok(None) => match fill(
                    &mut io,
                    &mut buf,
                    *head_deadline.get_or_insert_with(|| Instant::now() + lim.header_timeout),
                )
                .await
                {
                    Ok(()) => {}
                    Err(Reject::Closed) => return,
                    Err(r) => {
                        reject(&mut io, &gen, &conn, r).await;
                        return;
                    }
                },
                Err(r) => {
                    reject(&mut io, &gen, &conn, r).await;
                    return;
                }
            }
        };
        buf.advance(used);

        let Head {
            request,
            body,
            keep_alive,
            expect_continue,
        } = head;
        if let BodyKind::Length(n) = body {
            if n > lim.max_body_bytes as u64 {
                reject(&mut io, &gen, &conn, Reject::BodyTooLarge).await;
                return;
            }
        }
        let wants_continue = expect_continue
            && !matches!(body, BodyKind::None | BodyKind::Length(0))
            && request.version() == Version::HTTP_11;
        if wants_continue
            && (io
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
                || io.flush().await.is_err())
        {
            return;
        }
        let bytes = if body == BodyKind::None {
            Bytes::new()
        } else {
            let body_deadline = Instant::now() + lim.body_timeout;
            match read_body(&mut io, &mut buf, body, lim.max_body_bytes, body_deadline).await {
                Ok(b) => b,
                Err(Reject::Closed) => return,
                Err(r) => {
                    reject(&mut io, &gen, &conn, r).await;
                    return;
                }
            }
        };
        let version = request.version();
        let head_request = request.method() == Method::HEAD;
        let (mut parts, ()) = request.into_parts();
        if body != BodyKind::None {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        }
        let req = Request::from_parts(parts, bytes);
        let resp = gen.serve(req, &conn).await;
        let keep = keep_alive && !*shutdown.borrow();
        match write_response(&mut io, resp, head_request, version, keep).await {
            Ok(true) => {}
            _ => {
                let _ = io.shutdown().await;
                return;
            }
        }
    }
}

/// Answers a request that could not be read, then the caller closes the connection.
async fn reject<S: AsyncWrite + Unpin>(io: &mut S, gen: &Generation, conn: &ConnInfo, r: Reject) {
    if r == Reject::Closed {
        return;
    }
    let resp = gen.reject(conn, r);
    let write = write_response(io, resp, false, Version::HTTP_11, false);
    let _ = tokio::time::timeout(Duration::from_secs(5), write).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), io.shutdown()).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Parses `raw` and renders the outcome: "incomplete", the status with its reason, or
    /// "ok <framing> keep-alive=<bool>".
    fn check(raw: &str, expected: &str) {
        let got = match parse_head(raw.as_bytes(), 16 * 1024) {
            Ok(None) => "incomplete".to_owned(),
            Ok(Some((h, _))) => format!("ok {:?} keep-alive={}", h.body, h.keep_alive),
            Err(r) => format!("{} {}", r.status().as_u16(), r.reason()),
        };
        assert_eq!(got, expected, "for request:\n{raw}");
    }

    #[test]
    fn framing_and_smuggling() {
        check(
            "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            "ok None keep-alive=true",
        );
        check("GET / HTTP/1.1\r\nHost: a\r\n", "incomplete");
        check("GET / HTTP/1.0\r\n\r\n", "ok None keep-alive=false");
        check(
            "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            "ok None keep-alive=true",
        );
        check(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            "ok None keep-alive=false",
        );
        check(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
            "ok Length(5) keep-alive=true",
        );
        check(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            "ok Length(0) keep-alive=true",
        );
        check(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "ok Length(5) keep-alive=true",
        );
        check(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
            "ok Length(5) keep-alive=true",
        );
        check(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "ok Chunked keep-alive=true",
        );
        check(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n",
            "ok Chunked keep-alive=true",
        );
        // Ambiguous framing.
        check(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "400 te_and_cl",
        );
        check(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "400 te_and_cl",
        );
        check(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "400 content_length",
        );
        check(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n",
            "400 content_length",
        );
        check(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
            "400 content_length",
        );
        check(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n",
            "400 content_length",
        );
        check(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            "400 te",
        );
        check(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
            "400 te",
        );
        check(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "501 te_coding",
        );
        check(
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "400 te_http10",
        );
        check(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
            "400 syntax",
        );
        check(
            "POST / HTTP/1.1\r\nHost: a\r\n Transfer-Encoding: chunked\r\n\r\n",
            "400 syntax",
        );
        // Host rules.
        check("GET / HTTP/1.1\r\n\r\n", "400 host");
        check("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400 host");
        // Targets, methods, versions.
        check(
            "GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n",
            "ok None keep-alive=true",
        );
        check("GET x HTTP/1.1\r\nHost: a\r\n\r\n", "400 target");
        check(
            "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            "ok None keep-alive=true",
        );
        check("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", "501 connect");
        check("GET / HTTP/2.0\r\nHost: a\r\n\r\n", "400 version");
        check(
            "GET / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n",
            "417 expectation",
        );
        check(
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            "501 upgrade",
        );
        check("G\0T / HTTP/1.1\r\n\r\n", "400 syntax");
    }

    #[test]
    fn head_size_limits() {
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
            "a".repeat(17 * 1024)
        );
        check(&big, "431 head_too_large");
        check(&big[..16 * 1024 + 10], "431 head_too_large");
        let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
        check(
            &format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n"),
            "431 head_too_large",
        );
    }

    /// A small deterministic generator, so a failure reproduces.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn arbitrary_and_mutated_input_never_panics() {
        let seeds: [&[u8]; 3] = [
            b"GET /a?b=c HTTP/1.1\r\nHost: www.foobar.com\r\nConnection: keep-alive\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"PUT /x HTTP/1.0\r\nContent-Length: 3, 3\r\nExpect: 100-continue\r\n\r\nabc",
        ];
        let alphabet = b"\r\n :;,\t\x00\x7f\xffGETPOSTHTTP/1.01chunkedContent-LengthTransfer-Encoding0123456789abcdefx";
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..20_000 {
            let mut input = seeds[i % seeds.len()].to_vec();
            for _ in 0..(xorshift(&mut state) % 6) {
                let pos = (xorshift(&mut state) as usize) % (input.len() + 1);
                let byte = alphabet[(xorshift(&mut state) as usize) % alphabet.len()];
                match xorshift(&mut state) % 3 {
                    0 => input.insert(pos, byte),
                    1 if pos < input.len() => {
                        input.remove(pos);
                    }
                    _ if pos < input.len() => input[pos] = byte,
                    _ => {}
                }
            }
            if let Ok(Some((head, used))) = parse_head(&input, 16 * 1024) {
                let mut buf = BytesMut::from(&input[used..]);
                let mut io: &[u8] = &[];
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .unwrap();
                let _ = rt.block_on(read_body(
                    &mut io,
                    &mut buf,
                    head.body,
                    1024,
                    Instant::now() + Duration::from_secs(1),
                ));
            }
            let _ = parse_chunk_size(&input[..input.len().min(20)]);
        }
    }

    async fn body_of(raw: &[u8], kind: BodyKind, limit: usize) -> Result<Bytes, Reject> {
        let mut io: &[u8] = &[];
        let mut buf = BytesMut::from(raw);
        read_body(
            &mut io,
            &mut buf,
            kind,
            limit,
            Instant::now() + Duration::from_secs(1),
        )
        .await
    }

    #[tokio::test]
    async fn bodies() {
        assert_eq!(
            body_of(b"hello", BodyKind::Length(5), 10).await,
            Ok(Bytes::from("hello"))
        );
        assert_eq!(
            body_of(b"hello", BodyKind::Length(5), 4).await,
            Err(Reject::BodyTooLarge)
        );
        assert_eq!(
            body_of(b"hel", BodyKind::Length(5), 10).await,
            Err(Reject::Closed)
        );
        assert_eq!(
            body_of(
                b"5\r\nhello\r\n3;x=1\r\n!!!\r\n0\r\nT: v\r\n\r\n",
                BodyKind::Chunked,
                10
            )
            .await,
            Ok(Bytes::from("hello!!!"))
        );
        assert_eq!(
            body_of(
                b"5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n",
                BodyKind::Chunked,
                10
            )
            .await,
            Err(Reject::BodyTooLarge)
        );
        assert_eq!(
            body_of(b"zz\r\nhello\r\n0\r\n\r\n", BodyKind::Chunked, 10).await,
            Err(Reject::BadRequest("chunk_size"))
        );
        assert_eq!(
            body_of(b"5\r\nhelloXX0\r\n\r\n", BodyKind::Chunked, 10).await,
            Err(Reject::BadRequest("chunk_data"))
        );
    }
}

//! The HTTP/1.1 client to backends. It runs inside the task that serves the client
//! connection: the request is written and the response read on a pooled backend
//! connection without handing anything to another task, which is what makes a proxied
//! request cost about as much CPU as in HAProxy or nginx (hyper's pooled client costs two
//! task hand-offs and a channel per request). [`Stream`] is a backend connection, plain
//! or TLS; `backend.rs` opens them and keeps them in a [`Pool`].
//!
//! Failure classes, which decide retries (see `proxy.rs`):
//! - [`UpError::Connect`]: the connection could not be opened; the request never left.
//! - [`UpError::NoResponse`]: sent, but the connection failed before any response byte.
//! - [`UpError::Timeout`]: no complete response head within the response timeout.
//! - [`UpError::BadResponse`]: the backend answered with something that is not HTTP/1.
//!
//! A pooled connection idle for more than a second is checked for a close by the backend
//! (a one-byte peek) before reuse. If a reused connection still fails before any response
//! byte, an idempotent request goes once more on a fresh connection to the same backend,
//! as every HTTP client does for stale keep-alive connections; other methods get the
//! failure (502), since the backend may have processed them.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::chunked::parse_chunk_size;

/// Largest response head accepted from a backend.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
const MAX_RESPONSE_HEADERS: usize = 128;
/// Idle connections kept per backend.
pub const MAX_IDLE: usize = 256;
/// How long an idle backend connection is kept: well below the keep-alive timeouts of
/// the backends (rampart web's 10 s header timeout, which bounds its idle keep-alive;
/// nginx 75 s, Go 90 s), so a backend never closes one just as a request goes out on it,
/// which for a POST is a 502 (it is not retried: the backend may have processed it).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// Why a backend exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("no response: {0}")]
    NoResponse(std::io::Error),
    #[error("response timed out")]
    Timeout,
    #[error("malformed response: {0}")]
    BadResponse(&'static str),
}

/// A connection to a backend.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An open connection to a backend and the bytes read from it but not yet used.
pub struct UpConn {
    io: Stream,
    buf: BytesMut,
}

impl UpConn {
    pub fn new(io: Stream) -> Self {
        Self {
            io,
            buf: BytesMut::with_capacity(16 * 1024),
        }
    }

    /// True when the backend has not closed this idle connection (nor sent anything).
    fn looks_alive(&self) -> bool {
        let tcp = match &self.io {
            Stream::Plain(t) => t,
            Stream::Tls(t) => t.get_ref().0,
        };
        let mut byte = [0u8; 1];
        let mut rb = ReadBuf::new(&mut byte);
        let mut cx = Context::from_waker(Waker::noop());
        matches!(tcp.poll_peek(&mut cx, &mut rb), Poll::Pending) && self.buf.is_empty()
    }
}

/// Idle connections to one backend, most recently used first.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<Vec<(UpConn, Instant)>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    /// A live idle connection, if any.
    pub fn checkout(&self) -> Option<UpConn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((conn, since)) = idle.pop() {
            let idle_for = since.elapsed();
            // A connection idle under a second is taken as is (a stale one is retried
            // anyway); older ones are peeked for a close, which costs a syscall.
            if idle_for < Duration::from_secs(1) || (idle_for < IDLE_TIMEOUT && conn.looks_alive())
            {
                return Some(conn);
            }
        }
        None
    }

    pub fn checkin(&self, conn: UpConn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((conn, Instant::now()));
        }
    }
}

/// Methods whose requests can be repeated without changing the result (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Serializes a request head (and a small body) for a backend.
pub fn encode_request(method: &Method, target: &str, headers: &HeaderMap, body: &Bytes) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        512 + if body.len() <= 16 * 1024 {
            body.len()
        } else {
            0
        },
    );
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let needs_length =
        !body.is_empty() || matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if needs_length {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if body.len() <= 16 * 1024 {
        out.extend_from_slice(body);
    }
    out
}

/// How a response body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// Parses a response head from `buf`; `Ok(None)` when more bytes are needed.
#[allow(clippy::type_complexity)]
fn parse_response(buf: &[u8]) -> Result<Option<(StatusCode, Version, HeaderMap, usize)>, UpError> {
    let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_RESPONSE_HEADERS];
    let mut r = httparse::Response::new(&mut []);
    let n = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut r,
        buf,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => {
            return Err(UpError::BadResponse("head too large"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(UpError::BadResponse("syntax")),
    };
    let status =
        StatusCode::from_u16(r.code.unwrap_or(0)).map_err(|_| UpError::BadResponse("status"))?;
    let version = if r.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // Room for what the proxy adds to the response (`Strict-Transport-Security`,
    // `X-Request-Id`, the served-by header, `Date`), so the map does not grow.
    let mut map = HeaderMap::with_capacity(r.headers.len() + 4);
    for h in r.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| UpError::BadResponse("header"))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| UpError::BadResponse("header"))?;
        map.append(name, value);
    }
    Ok(Some((status, version, map, n)))
}

/// A response from a backend; its body streams from the backend connection, which goes
/// back to the pool when the body has been read to its end.
pub struct UpBody {
    conn: Option<UpConn>,
    framing: Framing,
    reusable: bool,
    pool: Arc<Pool>,
    read_timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl std::fmt::Debug for UpBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpBody")
            .field("framing", &self.framing)
            .finish_non_exhaustive()
    }
}

/// One request/response exchange on `conn`: writes the request, reads the response head.
async fn exchange(
    conn: &mut UpConn,
    wire: &[u8],
    big_body: Option<&Bytes>,
    deadline: tokio::time::Instant,
) -> Result<(StatusCode, Version, HeaderMap), UpError> {
    let write = async {
        conn.io.write_all(wire).await?;
        if let Some(b) = big_body {
            conn.io.write_all(b).await?;
        }
        conn.io.flush().await
    };
    match tokio::time::timeout_at(deadline, write).await {
        Err(_) => return Err(UpError::Timeout),
        Ok(Err(e)) => return Err(UpError::NoResponse(e)),
        Ok(Ok(())) => {}
    }
    loop {
        if let Some((status, version, headers, n)) = parse_response(&conn.buf)? {
            conn.buf.advance(n);
            if status.is_informational() {
                if status == StatusCode::SWITCHING_PROTOCOLS {
                    return Err(UpError::BadResponse("unrequested upgrade"));
                }
                continue; // 100 Continue, 103 Early Hints: the final response follows
            }
            return Ok((status, version, headers));
        }
        conn.buf.reserve(8 * 1024);
        match tokio::time::timeout_at(deadline, conn.io.read_buf(&mut conn.buf)).await {
            Err(_) => return Err(UpError::Timeout),
            Ok(Ok(0)) => {
                return Err(if conn.buf.is_empty() {
                    UpError::NoResponse(std::io::ErrorKind::UnexpectedEof.into())
                } else {
                    UpError::BadResponse("truncated head")
                })
            }
            Ok(Err(e)) => return Err(UpError::NoResponse(e)),
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends one request to a backend over `pool` (or a connection from `connect`) and
/// returns the response with a streaming body.
#[allow(clippy::too_many_arguments)]
pub async fn send<F, Fut>(
    pool: &Arc<Pool>,
    connect: F,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    body: &Bytes,
    timeout: Duration,
) -> Result<Response<UpBody>, UpError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<Stream>>,
{
    let wire = encode_request(method, target, headers, body);
    let big_body = (body.len() > 16 * 1024).then_some(body);
    let deadline = tokio::time::Instant::now() + timeout;
    let idempotent = is_idempotent(method);
    let mut pooled = pool.checkout();
    loop {
        let reused = pooled.is_some();
        let mut conn = match pooled.take() {
            Some(c) => c,
            None => UpConn::new(connect().await.map_err(UpError::Connect)?),
        };
        match exchange(&mut conn, &wire, big_body, deadline).await {
            Ok((status, version, headers)) => {
                let framing = framing(method, status, &headers)?;
                let asks_close = headers.get_all(header::CONNECTION).iter().any(|v| {
                    v.to_str()
                        .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
                });
                // Both framings at once is a smuggling smell: use chunked, then close.
                let ambiguous = headers.contains_key(header::TRANSFER_ENCODING)
                    && headers.contains_key(header::CONTENT_LENGTH);
                let reusable = version == Version::HTTP_11
                    && framing != Framing::UntilClose
                    && !asks_close
                    && !ambiguous;
                let mut resp = Response::new(UpBody {
                    conn: Some(conn),
                    framing,
                    reusable,
                    pool: Arc::clone(pool),
                    read_timeout: timeout,
                    sleep: None,
                });
                *resp.status_mut() = status;
                *resp.headers_mut() = headers;
                resp.body_mut().finish_if_done();
                return Ok(resp);
            }
            // A stale keep-alive connection: try once more on a fresh one.
            Err(UpError::NoResponse(_)) if reused && idempotent => continue,
            Err(e) => return Err(e),
        }
    }
}

fn framing(method: &Method, status: StatusCode, h: &HeaderMap) -> Result<Framing, UpError> {
    if *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    if let Some(te) = h.get(header::TRANSFER_ENCODING) {
        let chunked = te
            .to_str()
            .ok()
            .and_then(|s| s.rsplit(',').next())
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        return Ok(if chunked {
            Framing::Chunked(Chunk::Size)
        } else {
            Framing::UntilClose
        });
    }
    let mut len: Option<u64> = None;
    for v in h.get_all(header::CONTENT_LENGTH) {
        let n: u64 = v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or(UpError::BadResponse("content-length"))?;
        if len.is_some_and(|l| l != n) {
            return Err(UpError::BadResponse("content-length"));
        }
        len = Some(n);
    }
    Ok(match len {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    })
}

impl UpBody {
    fn finish_if_done(&mut self) {
        if matches!(self.framing, Framing::Empty | Framing::Length(0)) {
            self.framing = Framing::Done;
        }
        if self.framing == Framing::Done {
            if let Some(conn) = self.conn.take() {
                if self.reusable && conn.buf.is_empty() {
                    self.pool.checkin(conn);
                }
            }
        }
    }

    /// Reads more from the backend; `Ok(0)` at end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        conn.buf.reserve(16 * 1024);
        match tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf) {
            Poll::Ready(r) => {
                self.sleep = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = self.read_timeout;
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "backend body read timed out",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn fail(&mut self, what: &'static str) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.conn = None;
        self.framing = Framing::Done;
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            what,
        ))))
    }
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        loop {
            let buffered = this.conn.as_ref().map_or(0, |c| c.buf.len());
            match this.framing {
                Framing::Done | Framing::Empty => {
                    this.framing = Framing::Done;
                    this.finish_if_done();
                    return Poll::Ready(None);
                }
                Framing::Length(0) => {
                    this.finish_if_done();
                    return Poll::Ready(None);
                }
                Framing::Length(rem) if buffered > 0 => {
                    let n = usize::try_from(rem).unwrap_or(usize::MAX).min(buffered);
                    let data = this
                        .conn
                        .as_mut()
                        .map(|c| c.buf.split_to(n).freeze())
                        .unwrap_or_default();
                    this.framing = Framing::Length(rem - n as u64);
                    this.finish_if_done();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::UntilClose if buffered > 0 => {
                    let data = this
                        .conn
                        .as_mut()
                        .map(|c| c.buf.split().freeze())
                        .unwrap_or_default();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Chunked(state) if buffered > 0 => {
                    let Some(conn) = this.conn.as_mut() else {
                        return this.fail("connection gone");
                    };
                    let buf = &mut conn.buf;
                    match state {
                        Chunk::Size | Chunk::Trailers => {
                            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                                if state == Chunk::Trailers {
                                    buf.advance(i + 2);
                                    if i == 0 {
                                        this.framing = Framing::Done;
                                    }
                                    continue;
                                }
                                let Some(size) = parse_chunk_size(&buf[..i]) else {
                                    return this.fail("invalid chunk size from backend");
                                };
                                buf.advance(i + 2);
                                this.framing = Framing::Chunked(if size == 0 {
                                    Chunk::Trailers
                                } else {
                                    Chunk::Data(size)
                                });
                                continue;
                            }
                            if buf.len() > 4096 {
                                return this.fail("chunk line too long from backend");
                            }
                        }
                        Chunk::Data(rem) => {
                            let n = usize::try_from(rem).unwrap_or(usize::MAX).min(buf.len());
                            let data = buf.split_to(n).freeze();
                            let left = rem - n as u64;
                            this.framing = Framing::Chunked(if left == 0 {
                                Chunk::DataEnd
                            } else {
                                Chunk::Data(left)
                            });
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                        Chunk::DataEnd => {
                            if buf.len() >= 2 {
                                if &buf[..2] != b"\r\n" {
                                    return this.fail("chunk not followed by CRLF");
                                }
                                buf.advance(2);
                                this.framing = Framing::Chunked(Chunk::Size);
                                continue;
                            }
                        }
                    }
                }
                _ => {}
            }
            // Need more bytes.
            match this.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    this.conn = None;
                    this.framing = Framing::Done;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Ok(0)) => {
                    if this.framing == Framing::UntilClose {
                        this.conn = None;
                        this.framing = Framing::Done;
                        return Poll::Ready(None);
                    }
                    return this.fail("backend closed the connection mid-body");
                }
                Poll::Ready(Ok(_)) => {}
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(
            self.framing,
            Framing::Done | Framing::Empty | Framing::Length(0)
        )
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Done | Framing::Empty => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn requests_are_encoded_with_a_length_when_they_have_a_body() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("www.foobar.com"));
        h.insert("content-length", HeaderValue::from_static("999"));
        let get = encode_request(&Method::GET, "/a?b", &h, &Bytes::new());
        assert_eq!(
            String::from_utf8(get).unwrap(),
            "GET /a?b HTTP/1.1\r\nhost: www.foobar.com\r\n\r\n"
        );
        let post = encode_request(&Method::POST, "/", &h, &Bytes::from_static(b"hi"));
        assert_eq!(
            String::from_utf8(post).unwrap(),
            "POST / HTTP/1.1\r\nhost: www.foobar.com\r\ncontent-length: 2\r\n\r\nhi"
        );
    }

    fn framing_of(method: &Method, status: u16, headers: &[(&str, &str)]) -> String {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        match framing(method, StatusCode::from_u16(status).unwrap(), &h) {
            Ok(f) => format!("{f:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn response_framing() {
        assert_eq!(
            framing_of(&Method::GET, 200, &[("content-length", "5")]),
            "Length(5)"
        );
        assert_eq!(
            framing_of(&Method::GET, 200, &[("content-length", "0")]),
            "Empty"
        );
        assert_eq!(
            framing_of(&Method::HEAD, 200, &[("content-length", "5")]),
            "Empty"
        );
        assert_eq!(framing_of(&Method::GET, 304, &[]), "Empty");
        assert_eq!(
            framing_of(&Method::GET, 200, &[("transfer-encoding", "chunked")]),
            "Chunked(Size)"
        );
        assert_eq!(
            framing_of(&Method::GET, 200, &[("transfer-encoding", "gzip")]),
            "UntilClose"
        );
        assert_eq!(framing_of(&Method::GET, 200, &[]), "UntilClose");
        assert_eq!(
            framing_of(
                &Method::GET,
                200,
                &[("content-length", "5"), ("content-length", "6")]
            ),
            "malformed response: content-length"
        );
    }
}

//! The outbound HTTP/1.1 client: one request over a fresh connection, plain TCP or TLS,
//! closed with the answer. Two shapes:
//!
//! - one-shot ([`send`], [`send_to`], [`get`]): the whole exchange (connect, TLS, send,
//!   the response to its last byte) within one deadline and the response body bounded in
//!   size. The agent scrapes services and pushes to Prometheus with it, the dashboard
//!   queries Prometheus with it, infra probes readiness with it, the etcd client makes
//!   its unary calls with it.
//! - streaming ([`stream`]): the response head within a deadline, then the body piece by
//!   piece as it arrives ([`Streaming::next_chunk`]) or line by line
//!   ([`Streaming::next_line`], each line bounded), each piece within an idle timeout
//!   rather than one deadline: for answers that last (etcd's watch), where the body is a
//!   sequence of messages.
//!
//! [`Error`] says what went wrong (connect, timeout, too large, protocol) so each caller
//! keeps its own classification: the agent retries a push after any of them, the dashboard
//! reports Prometheus unreachable, the etcd client tries its next endpoint.
//!
//! TLS ([`Endpoint::from_url`] with an `https` URL) uses the caller's
//! `rustls::ClientConfig` (rampart's come from `rampart_tls::client_config`, so this
//! module needs no certificate loading) and takes the server name from the URL's host,
//! a DNS name or an IP literal (checked against the certificate's IP SANs; no SNI is sent
//! for an IP).
//!
//! One connection per request, no pool: these talk every second or few, where a connect
//! (and a TLS handshake, resumed from the config's session cache after the first) costs
//! less than keeping and health-checking idle connections, and a failed server never
//! leaves a stale pooled connection behind. No task outlives a request: the connection is
//! driven beside the request by whoever awaits it (for a stream, by each read).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::HOST;
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

/// Where a request goes: the `host:port` to connect to and the `Host` header it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub addr: String,
    pub host: HeaderValue,
}

impl Origin {
    /// Splits `http://host[:port]/path?query` into its origin (port 80 when absent) and
    /// the request target `/path?query`. Only plain http, and no credentials in the URL.
    pub fn from_url(url: &Uri) -> Result<(Origin, Uri), &'static str> {
        if url.scheme_str() != Some("http") {
            return Err("only plain http is supported");
        }
        split(url, 80)
    }
}

/// `url`'s origin (`default_port` when it names none) and request target.
fn split(url: &Uri, default_port: u16) -> Result<(Origin, Uri), &'static str> {
    let authority = url.authority().ok_or("no host")?;
    if authority.as_str().contains('@') {
        return Err("credentials in the url are not supported");
    }
    let addr = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(default_port)
    );
    let host = HeaderValue::from_str(authority.as_str()).map_err(|_| "invalid host")?;
    let target = url
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str)
        .parse()
        .map_err(|_| "invalid path")?;
    Ok((Origin { addr, host }, target))
}

/// TLS to an origin: the client configuration and the name its certificate must carry.
#[derive(Clone, Debug)]
struct Tls {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

/// An [`Origin`] and how to reach it, plain TCP or TLS: what [`send_to`] and [`stream`]
/// take.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub origin: Origin,
    tls: Option<Tls>,
}

impl Endpoint {
    /// Plain TCP to `origin`, as [`send`] does.
    pub fn plain(origin: Origin) -> Endpoint {
        Endpoint { origin, tls: None }
    }

    /// Splits `http://host[:port]/path` or `https://host[:port]/path` into an endpoint
    /// (port 80 or 443 when absent) and the request target. `https` needs `tls` and
    /// verifies the server as the URL's host (a DNS name, or an IP address such as
    /// `https://198.18.9.2:2379` or `https://[::1]:2379`); `http` refuses one, so a
    /// configured certificate is never silently unused.
    pub fn from_url(
        url: &Uri,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<(Endpoint, Uri), &'static str> {
        match (url.scheme_str(), tls) {
            (Some("http"), None) => {
                let (origin, target) = split(url, 80)?;
                Ok((Endpoint::plain(origin), target))
            }
            (Some("http"), Some(_)) => Err("a TLS configuration for a plain http url"),
            (Some("https"), None) => Err("https needs a TLS configuration"),
            (Some("https"), Some(config)) => {
                let (origin, target) = split(url, 443)?;
                let host = url.host().ok_or("no host")?;
                // `Uri::host` keeps an IPv6 literal's brackets; a server name has none.
                let host = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(host);
                let name = ServerName::try_from(host)
                    .map_err(|_| "the host is no valid TLS server name")?
                    .to_owned();
                let tls = Some(Tls { config, name });
                Ok((Endpoint { origin, tls }, target))
            }
            _ => Err("only http and https are supported"),
        }
    }

    /// Whether requests go over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// What a response body longer than [`Limits::max_body`] gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// [`Error::TooLarge`]: the body is the answer, and a cut one would be wrong.
    Fail,
    /// Its first `max_body` bytes, [`Response::truncated`] set: for when only the start
    /// matters (the first line of an error answer).
    Truncate,
}

/// The bounds of one exchange.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connect, send and read the whole response within this.
    pub timeout: Duration,
    /// The most response body bytes read.
    pub max_body: usize,
    pub overflow: Overflow,
}

/// The answer to a request: any status, the caller decides what it means.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The body was longer than [`Limits::max_body`] and cut there ([`Overflow::Truncate`]).
    pub truncated: bool,
}

/// Why an exchange gave no response.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection: refused, unreachable, no such host, or (TLS) a handshake that
    /// failed or a certificate that did not verify. The request was not sent.
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The whole exchange took longer than [`Limits::timeout`]; for a stream, its head
    /// took longer than [`StreamLimits::head_timeout`] or the body was silent for
    /// [`StreamLimits::idle_timeout`].
    #[error("{addr}: no complete response within {after:?}")]
    Timeout { addr: String, after: Duration },
    /// The body was longer than [`Limits::max_body`] ([`Overflow::Fail`]), or a line of a
    /// stream longer than [`StreamLimits::max_line`].
    #[error("{addr}: response body larger than {limit} bytes")]
    TooLarge { addr: String, limit: usize },
    /// The request itself is unusable (a path that is no request target); nothing was
    /// sent.
    #[error("{addr}: invalid request target {path:?}")]
    Request { addr: String, path: String },
    /// The HTTP exchange failed after connecting: reset, closed early, malformed (over
    /// TLS, also an alert from the server, such as a refused client certificate under
    /// TLS 1.3, which the server only sends once the client has finished its handshake).
    #[error("{addr}: {source}")]
    Protocol {
        addr: String,
        #[source]
        source: hyper::Error,
    },
}

/// Sends `request` (its URI the request target, such as `/metrics`) to `origin` over a
/// new plain TCP connection, with `Host` set from `origin`, and reads the response within
/// `limits`.
pub async fn send(
    origin: &Origin,
    request: Request<Bytes>,
    limits: Limits,
) -> Result<Response, Error> {
    send_to(&Endpoint::plain(origin.clone()), request, limits).await
}

/// [`send`] to an [`Endpoint`]: over TLS when it says so.
pub async fn send_to(
    endpoint: &Endpoint,
    request: Request<Bytes>,
    limits: Limits,
) -> Result<Response, Error> {
    match tokio::time::timeout(limits.timeout, exchange(endpoint, request, limits)).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout {
            addr: endpoint.origin.addr.clone(),
            after: limits.timeout,
        }),
    }
}

/// A `GET path` to `addr` with `Host: addr`, as [`send`] sends it: what readiness probes
/// and other plain checks of a local listener need.
pub async fn get(
    addr: std::net::SocketAddr,
    path: &str,
    limits: Limits,
) -> Result<Response, Error> {
    let invalid = || Error::Request {
        addr: addr.to_string(),
        path: path.to_owned(),
    };
    let origin = Origin {
        addr: addr.to_string(),
        host: HeaderValue::from_str(&addr.to_string()).map_err(|_| invalid())?,
    };
    let request = Request::get(path)
        .body(Bytes::new())
        .map_err(|_| invalid())?;
    send(&origin, request, limits).await
}

/// A connection's byte stream, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

type Conn = Connection<TokioIo<Box<dyn Io>>, Full<Bytes>>;

fn protocol(addr: &str) -> impl Fn(hyper::Error) -> Error + '_ {
    move |source| Error::Protocol {
        addr: addr.to_owned(),
        source,
    }
}

/// Connects to `endpoint` (TCP, then TLS when it says so) and starts HTTP/1.1 on it.
/// `keepalive` turns on TCP keepalive probes, so a stream to a host that vanished
/// without a reset ends within about half a minute rather than at its idle timeout.
async fn open(
    endpoint: &Endpoint,
    keepalive: bool,
) -> Result<(SendRequest<Full<Bytes>>, Conn), Error> {
    let addr = &endpoint.origin.addr;
    let connect = |source| Error::Connect {
        addr: addr.clone(),
        source,
    };
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(connect)?;
    let _ = tcp.set_nodelay(true);
    if keepalive {
        let probes = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(10))
            .with_interval(Duration::from_secs(5))
            .with_retries(3);
        // Best effort: without it a dead peer is still found by the idle timeout.
        let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&probes);
    }
    let io: Box<dyn Io> = match &endpoint.tls {
        None => Box::new(tcp),
        Some(tls) => {
            let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
            Box::new(
                connector
                    .connect(tls.name.clone(), tcp)
                    .await
                    .map_err(connect)?,
            )
        }
    };
    hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(protocol(addr))
}

/// `request` as sent to `endpoint`: `Host` from its origin.
fn prepare(endpoint: &Endpoint, request: Request<Bytes>) -> Request<Full<Bytes>> {
    let mut request = request.map(Full::new);
    request
        .headers_mut()
        .insert(HOST, endpoint.origin.host.clone());
    request
}

async fn exchange(
    endpoint: &Endpoint,
    request: Request<Bytes>,
    limits: Limits,
) -> Result<Response, Error> {
    let addr = &endpoint.origin.addr;
    let protocol = protocol(addr);
    let (mut sender, conn) = open(endpoint, false).await?;
    let request = prepare(endpoint, request);

    let response = async {
        let resp = sender.send_request(request).await.map_err(&protocol)?;
        let (parts, mut body) = resp.into_parts();
        let mut buf = Vec::new();
        let mut truncated = false;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(&protocol)?.into_data() else {
                continue; // trailers
            };
            let room = limits.max_body - buf.len();
            if data.len() > room {
                if limits.overflow == Overflow::Fail {
                    return Err(Error::TooLarge {
                        addr: addr.clone(),
                        limit: limits.max_body,
                    });
                }
                buf.extend_from_slice(&data[..room]);
                truncated = true;
                break;
            }
            buf.extend_from_slice(&data);
        }
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body: Bytes::from(buf),
            truncated,
        })
    };
    // The connection is driven here, beside the request, and dropped (closed) with it.
    tokio::pin!(response);
    tokio::pin!(conn);
    tokio::select! {
        r = &mut response => r,
        c = &mut conn => match c {
            // The server closed after answering: the response is already buffered.
            Ok(()) => response.await,
            Err(e) => Err(protocol(e)),
        },
    }
}

/// The bounds of a streaming exchange.
#[derive(Clone, Copy, Debug)]
pub struct StreamLimits {
    /// Connect, send and read the response head within this.
    pub head_timeout: Duration,
    /// The longest silence between two pieces of the body.
    pub idle_timeout: Duration,
    /// The longest line [`Streaming::next_line`] gives (without its `\n`).
    pub max_line: usize,
}

/// A response whose body is read as it arrives. Dropping it closes the connection.
pub struct Streaming {
    pub status: StatusCode,
    pub headers: HeaderMap,
    addr: String,
    idle_timeout: Duration,
    body: Incoming,
    /// Driven by each read until it ends (the server closed; what it sent is buffered).
    conn: Option<Pin<Box<Conn>>>,
    /// Kept so the connection is not told to close before the body has ended.
    _sender: SendRequest<Full<Bytes>>,
    lines: Lines,
    ended: bool,
}

impl std::fmt::Debug for Streaming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streaming")
            .field("status", &self.status)
            .field("addr", &self.addr)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

/// Sends `request` to `endpoint` over a new connection and returns once the response head
/// is in, within `limits.head_timeout`; the body is read from the [`Streaming`].
pub async fn stream(
    endpoint: &Endpoint,
    request: Request<Bytes>,
    limits: StreamLimits,
) -> Result<Streaming, Error> {
    let addr = &endpoint.origin.addr;
    let head = async {
        let protocol = protocol(addr);
        let (mut sender, conn) = open(endpoint, true).await?;
        let mut conn = Box::pin(conn);
        let request = prepare(endpoint, request);
        let response = sender.send_request(request);
        tokio::pin!(response);
        let (response, conn) = tokio::select! {
            r = &mut response => (r.map_err(&protocol)?, Some(conn)),
            c = conn.as_mut() => {
                c.map_err(&protocol)?;
                // Closed after answering: the head (and maybe more) is buffered.
                (response.await.map_err(&protocol)?, None)
            }
        };
        let (parts, body) = response.into_parts();
        Ok(Streaming {
            status: parts.status,
            headers: parts.headers,
            addr: addr.clone(),
            idle_timeout: limits.idle_timeout,
            body,
            conn,
            _sender: sender,
            lines: Lines::new(limits.max_line),
            ended: false,
        })
    };
    match tokio::time::timeout(limits.head_timeout, head).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout {
            addr: addr.clone(),
            after: limits.head_timeout,
        }),
    }
}

/// What one wait on the body gave.
enum Piece {
    Frame(Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>),
    Closed(Result<(), hyper::Error>),
}

impl Streaming {
    /// The longest silence [`next_chunk`](Self::next_chunk) and
    /// [`next_line`](Self::next_line) wait through from now on.
    pub fn set_idle_timeout(&mut self, idle: Duration) {
        self.idle_timeout = idle;
    }

    /// The next piece of the body as it arrived (after whatever
    /// [`next_line`](Self::next_line) had buffered), `None` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        if let Some(rest) = self.lines.take_rest() {
            return Ok(Some(rest));
        }
        self.read().await
    }

    /// The next line of the body without its `\n` (or `\r\n`), `None` at its end; a last
    /// line without a `\n` is given too (etcd ends a stream with its error that way). A
    /// line longer than [`StreamLimits::max_line`] is [`Error::TooLarge`].
    pub async fn next_line(&mut self) -> Result<Option<Bytes>, Error> {
        let too_large = |e: LineTooLong, addr: &str| Error::TooLarge {
            addr: addr.to_owned(),
            limit: e.limit,
        };
        loop {
            if let Some(line) = self
                .lines
                .next_line()
                .map_err(|e| too_large(e, &self.addr))?
            {
                return Ok(Some(line));
            }
            match self.read().await? {
                Some(chunk) => self.lines.push(&chunk),
                None => return self.lines.finish().map_err(|e| too_large(e, &self.addr)),
            }
        }
    }

    /// The next non-empty data frame within the idle timeout, `None` at the body's end.
    async fn read(&mut self) -> Result<Option<Bytes>, Error> {
        let idle = self.idle_timeout;
        loop {
            if self.ended {
                return Ok(None);
            }
            let piece =
                tokio::time::timeout(idle, self.wait())
                    .await
                    .map_err(|_| Error::Timeout {
                        addr: self.addr.clone(),
                        after: idle,
                    })?;
            let frame = match piece {
                Piece::Closed(Ok(())) => {
                    self.conn = None;
                    continue;
                }
                Piece::Closed(Err(e)) | Piece::Frame(Some(Err(e))) => {
                    self.ended = true;
                    self.conn = None;
                    return Err(protocol(&self.addr)(e));
                }
                Piece::Frame(None) => {
                    self.ended = true;
                    return Ok(None);
                }
                Piece::Frame(Some(Ok(frame))) => frame,
            };
            match frame.into_data() {
                Ok(data) if !data.is_empty() => return Ok(Some(data)),
                _ => {} // trailers, or an empty frame
            }
        }
    }

    /// The next frame, driving the connection while it lasts.
    async fn wait(&mut self) -> Piece {
        match &mut self.conn {
            Some(conn) => tokio::select! {
                f = self.body.frame() => Piece::Frame(f),
                c = conn.as_mut() => Piece::Closed(c),
            },
            None => Piece::Frame(self.body.frame().await),
        }
    }
}

/// A line longer than the bound [`Lines`] was made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line longer than {limit} bytes")]
pub struct LineTooLong {
    pub limit: usize,
}

/// Splits bytes arriving in pieces into `\n`-terminated lines: a line may span pieces and
/// a piece may hold several lines. At most `max_line` bytes per line (without its end);
/// what is buffered stays within one line's bound plus the last piece pushed.
#[derive(Debug)]
pub struct Lines {
    buf: BytesMut,
    /// How much of `buf` is known to hold no `\n`.
    scanned: usize,
    max_line: usize,
}

impl Lines {
    pub fn new(max_line: usize) -> Lines {
        Lines {
            buf: BytesMut::new(),
            scanned: 0,
            max_line,
        }
    }

    /// Appends the next piece of input.
    pub fn push(&mut self, piece: &[u8]) {
        self.buf.extend_from_slice(piece);
    }

    /// The next complete line, without its `\n` or `\r\n`; `None` until one is complete.
    pub fn next_line(&mut self) -> Result<Option<Bytes>, LineTooLong> {
        let too_long = LineTooLong {
            limit: self.max_line,
        };
        let Some(at) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') else {
            self.scanned = self.buf.len();
            return if self.buf.len() > self.max_line {
                Err(too_long)
            } else {
                Ok(None)
            };
        };
        let end = self.scanned + at;
        self.scanned = 0;
        let mut line = self.buf.split_to(end + 1);
        line.truncate(end);
        if line.last() == Some(&b'\r') {
            line.truncate(end - 1);
        }
        if line.len() > self.max_line {
            return Err(too_long);
        }
        Ok(Some(line.freeze()))
    }

    /// At the end of input: the last line if it had no `\n` (`None` when nothing is left).
    pub fn finish(&mut self) -> Result<Option<Bytes>, LineTooLong> {
        if let Some(line) = self.next_line()? {
            return Ok(Some(line));
        }
        Ok(self.take_rest())
    }

    /// Whatever is buffered, taken out (`None` when nothing is).
    fn take_rest(&mut self) -> Option<Bytes> {
        self.scanned = 0;
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A server on 127.0.0.1:0 that reads one request head and answers `answer` (or
    /// nothing, holding the connection, when `None`). Returns the origin and the request
    /// it read.
    async fn server(answer: Option<Vec<u8>>) -> (Origin, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            match answer {
                Some(a) => {
                    // The peer may have gone (too large, timed out): not this test's point.
                    let _ = s.write_all(&a).await;
                    let _ = s.shutdown().await;
                }
                None => tokio::time::sleep(Duration::from_secs(30)).await,
            }
            head
        });
        let host = HeaderValue::from_str(&addr).unwrap();
        (Origin { addr, host }, task)
    }

    fn get(path: &str) -> Request<Bytes> {
        let mut r = Request::new(Bytes::new());
        *r.uri_mut() = path.parse().unwrap();
        r
    }

    fn limits(max_body: usize, overflow: Overflow) -> Limits {
        Limits {
            timeout: Duration::from_secs(5),
            max_body,
            overflow,
        }
    }

    fn ok_with(body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-test: yes\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn one_request_with_host_and_the_whole_answer() {
        let (origin, request) = server(Some(ok_with("hello"))).await;
        let r = send(&origin, get("/metrics?x=1"), limits(5, Overflow::Fail))
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, "hello");
        assert!(!r.truncated);
        assert_eq!(r.headers["x-test"], "yes");
        let head = String::from_utf8(request.await.unwrap()).unwrap();
        assert!(head.starts_with("GET /metrics?x=1 HTTP/1.1\r\n"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("host: {}\r\n", origin.addr)),
            "{head}"
        );
    }

    #[tokio::test]
    async fn a_body_over_the_limit_fails_or_is_cut() {
        let (origin, _) = server(Some(ok_with("0123456789"))).await;
        let err = send(&origin, get("/"), limits(9, Overflow::Fail))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::TooLarge { limit: 9, .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!("{}: response body larger than 9 bytes", origin.addr)
        );

        let (origin, _) = server(Some(ok_with("0123456789"))).await;
        let r = send(&origin, get("/"), limits(4, Overflow::Truncate))
            .await
            .unwrap();
        assert_eq!((r.body.as_ref(), r.truncated), (&b"0123"[..], true));

        // Chunked, where the size is only known while reading.
        let chunked = b"HTTP/1.1 500 Oops\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n4\r\nefgh\r\n0\r\n\r\n";
        let (origin, _) = server(Some(chunked.to_vec())).await;
        let err = send(&origin, get("/"), limits(6, Overflow::Fail))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        let (origin, _) = server(Some(chunked.to_vec())).await;
        let r = send(&origin, get("/"), limits(8, Overflow::Fail))
            .await
            .unwrap();
        assert_eq!(
            (r.status.as_u16(), r.body.as_ref()),
            (500, &b"abcdefgh"[..])
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let (origin, _) = server(None).await;
        let t = tokio::time::Instant::now();
        let l = Limits {
            timeout: Duration::from_millis(300),
            ..limits(100, Overflow::Fail)
        };
        let err = send(&origin, get("/"), l).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert_eq!(
            err.to_string(),
            format!("{}: no complete response within 300ms", origin.addr)
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        // A port just released: nothing listens there.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let url: Uri = format!("http://{addr}/api/v1/write").parse().unwrap();
        let (origin, target) = Origin::from_url(&url).unwrap();
        assert_eq!(target, "/api/v1/write");
        let err = send(
            &origin,
            get(&target.to_string()),
            limits(100, Overflow::Fail),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err}");
        assert!(
            err.to_string().starts_with(&format!("connect to {addr}: ")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_broken_answer_is_a_protocol_error() {
        let (origin, _) = server(Some(
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc".to_vec(),
        ))
        .await;
        let err = send(&origin, get("/"), limits(100, Overflow::Fail))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{err}");
        let (origin, _) = server(Some(b"not http at all\r\n\r\n".to_vec())).await;
        let err = send(&origin, get("/"), limits(100, Overflow::Fail))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{err}");
    }

    /// A server on 127.0.0.1:0 that reads one request head, then writes each piece after
    /// its pause, then holds the connection for `hold` before closing it.
    async fn paced_server(pieces: Vec<(u64, &'static [u8])>, hold: Duration) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await.unwrap();
            for (pause_ms, piece) in pieces {
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                if s.write_all(piece).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(hold).await;
            let _ = s.shutdown().await;
        });
        let host = HeaderValue::from_str(&addr).unwrap();
        Endpoint::plain(Origin { addr, host })
    }

    fn stream_limits(idle_ms: u64, max_line: usize) -> StreamLimits {
        StreamLimits {
            head_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_millis(idle_ms),
            max_line,
        }
    }

    const CHUNKED_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";

    #[tokio::test]
    async fn a_stream_gives_lines_as_they_arrive_across_and_within_chunks() {
        let endpoint = paced_server(
            vec![
                (0, CHUNKED_HEAD),
                // Two lines and the start of a third in one chunk, ...
                (0, b"13\r\n{\"a\":1}\n{\"b\":2}\n{\"c\r\n"),
                // ... its end in the next one, a while later, and a last line without \n.
                (200, b"8\r\n\":3}\nend\r\n0\r\n\r\n"),
            ],
            Duration::ZERO,
        )
        .await;
        let mut s = stream(&endpoint, get("/watch"), stream_limits(2000, 100))
            .await
            .unwrap();
        assert_eq!(s.status, StatusCode::OK);
        let mut lines = Vec::new();
        while let Some(line) = s.next_line().await.unwrap() {
            lines.push(String::from_utf8(line.to_vec()).unwrap());
        }
        assert_eq!(lines, ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}", "end"]);
        assert!(s.next_line().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_stream_gives_chunks_as_they_arrive() {
        let endpoint = paced_server(
            vec![
                (0, CHUNKED_HEAD),
                (0, b"3\r\nabc\r\n"),
                (100, b"2\r\nde\r\n0\r\n\r\n"),
            ],
            Duration::ZERO,
        )
        .await;
        let mut s = stream(&endpoint, get("/"), stream_limits(2000, 100))
            .await
            .unwrap();
        assert_eq!(s.next_chunk().await.unwrap().unwrap(), "abc");
        assert_eq!(s.next_chunk().await.unwrap().unwrap(), "de");
        assert!(s.next_chunk().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_silent_stream_times_out_per_piece_not_as_a_whole() {
        // Pieces 150 ms apart for longer than the 400 ms idle timeout in total: fine.
        let mut pieces = vec![(0, CHUNKED_HEAD)];
        pieces.extend(std::iter::repeat_n((150, &b"2\r\nx\n\r\n"[..]), 5));
        let endpoint = paced_server(pieces, Duration::from_secs(30)).await;
        let mut s = stream(&endpoint, get("/"), stream_limits(400, 100))
            .await
            .unwrap();
        for _ in 0..5 {
            assert_eq!(s.next_line().await.unwrap().unwrap(), "x");
        }
        // Then silence: an idle timeout.
        let t = tokio::time::Instant::now();
        let err = s.next_line().await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }

    #[tokio::test]
    async fn a_stream_line_over_the_bound_is_too_large() {
        let endpoint = paced_server(
            vec![
                (0, CHUNKED_HEAD),
                (0, b"6\r\nok\n012\r\n"),
                (50, b"4\r\n3456\r\n"),
            ],
            Duration::from_secs(30),
        )
        .await;
        let mut s = stream(&endpoint, get("/"), stream_limits(2000, 5))
            .await
            .unwrap();
        assert_eq!(s.next_line().await.unwrap().unwrap(), "ok");
        let err = s.next_line().await.unwrap_err();
        assert!(matches!(err, Error::TooLarge { limit: 5, .. }), "{err}");
    }

    #[tokio::test]
    async fn a_stream_cut_mid_body_is_a_protocol_error() {
        let endpoint = paced_server(
            vec![(0, CHUNKED_HEAD), (0, b"3\r\nab\n\r\n")],
            Duration::ZERO,
        )
        .await;
        let mut s = stream(&endpoint, get("/"), stream_limits(2000, 100))
            .await
            .unwrap();
        assert_eq!(s.next_line().await.unwrap().unwrap(), "ab");
        let err = s.next_line().await.unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_stream_head_not_in_time_is_a_timeout() {
        let endpoint = paced_server(vec![], Duration::from_secs(30)).await;
        let limits = StreamLimits {
            head_timeout: Duration::from_millis(200),
            ..stream_limits(2000, 100)
        };
        let err = stream(&endpoint, get("/"), limits).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
    }

    /// `pieces` pushed in turn into [`Lines`] bounded at `max`, then finished: every line
    /// given, or `Err(limit)` at the first too long.
    fn check_lines(pieces: &[&str], max: usize, expected: Result<&[&str], usize>) {
        let mut lines = Lines::new(max);
        let mut got = Vec::new();
        let result = (|| {
            for p in pieces {
                lines.push(p.as_bytes());
                while let Some(l) = lines.next_line()? {
                    got.push(String::from_utf8(l.to_vec()).unwrap());
                }
            }
            while let Some(l) = lines.finish()? {
                got.push(String::from_utf8(l.to_vec()).unwrap());
            }
            Ok::<_, LineTooLong>(())
        })();
        let got = result.map(|()| got).map_err(|e| e.limit);
        let expected = expected.map(|e| e.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(got, expected, "{pieces:?} max {max}");
    }

    #[test]
    fn lines() {
        check_lines(&["a\nb\n"], 10, Ok(&["a", "b"]));
        check_lines(&["a\nb"], 10, Ok(&["a", "b"]));
        check_lines(&["a", "b", "c\n", "d"], 10, Ok(&["abc", "d"]));
        check_lines(&["a\r\n\nb\r\n"], 10, Ok(&["a", "", "b"]));
        check_lines(&["", "\n"], 10, Ok(&[""]));
        check_lines(&[], 10, Ok(&[]));
        check_lines(&["12345\n"], 5, Ok(&["12345"]));
        check_lines(&["123", "45\n6"], 5, Ok(&["12345", "6"]));
        // Too long: complete, still incomplete, or the last line without its \n.
        check_lines(&["ok\n123456\n"], 5, Err(5));
        check_lines(&["ok\n1234", "56"], 5, Err(5));
        check_lines(&["ok\n", "123456"], 5, Err(5));
        // Many lines in one piece may exceed the bound together, one by one they don't.
        check_lines(&["1234\n1234\n1234\n"], 5, Ok(&["1234", "1234", "1234"]));
    }

    /// A TLS server on 127.0.0.1:0 with a certificate for `names`, answering one request
    /// with "hello"; returns its port and a client config trusting that certificate.
    async fn tls_server(names: &[&str]) -> (u16, Arc<rustls::ClientConfig>) {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let ck = rcgen::generate_simple_self_signed(names).unwrap();
        let cert = ck.cert.der().clone();
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            // A client that refuses the certificate ends the handshake: not a failure here.
            let Ok(mut s) = acceptor.accept(tcp).await else {
                return;
            };
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(&ok_with("hello")).await;
            let _ = s.shutdown().await;
        });
        (port, Arc::new(client))
    }

    #[tokio::test]
    async fn https_to_an_ip_literal_verifies_its_ip_san() {
        let (port, config) = tls_server(&["127.0.0.1"]).await;
        let url: Uri = format!("https://127.0.0.1:{port}/health").parse().unwrap();
        let (endpoint, target) = Endpoint::from_url(&url, Some(config)).unwrap();
        assert!(endpoint.is_tls());
        let r = send_to(
            &endpoint,
            get(&target.to_string()),
            limits(100, Overflow::Fail),
        )
        .await
        .unwrap();
        assert_eq!((r.status, r.body.as_ref()), (StatusCode::OK, &b"hello"[..]));
    }

    #[tokio::test]
    async fn https_to_a_server_whose_certificate_names_another_host_is_refused() {
        let (port, config) = tls_server(&["localhost"]).await;
        let url: Uri = format!("https://127.0.0.1:{port}/").parse().unwrap();
        let (endpoint, _) = Endpoint::from_url(&url, Some(config)).unwrap();
        let err = send_to(&endpoint, get("/"), limits(100, Overflow::Fail))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err}");
        assert!(err.to_string().contains("certificate"), "{err}");
    }

    #[test]
    fn endpoint_urls() {
        let tls = Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        );
        let split = |u: &str, with_tls: bool| {
            Endpoint::from_url(&u.parse().unwrap(), with_tls.then(|| tls.clone())).map(|(e, t)| {
                let name = e.tls.as_ref().map(|t| match &t.name {
                    ServerName::DnsName(d) => format!("dns {}", d.as_ref()),
                    ServerName::IpAddress(ip) => format!("ip {}", std::net::IpAddr::from(*ip)),
                    _ => "other".to_owned(),
                });
                format!("{} {t} {name:?}", e.origin.addr)
            })
        };
        for (url, with_tls, expected) in [
            (
                "https://198.18.9.2:2379",
                true,
                Ok("198.18.9.2:2379 / Some(\"ip 198.18.9.2\")"),
            ),
            (
                "https://[::1]:2379/v3",
                true,
                Ok("[::1]:2379 /v3 Some(\"ip ::1\")"),
            ),
            (
                "https://etcd1/x",
                true,
                Ok("etcd1:443 /x Some(\"dns etcd1\")"),
            ),
            ("http://monitor/w", false, Ok("monitor:80 /w None")),
            (
                "https://a:1/",
                false,
                Err("https needs a TLS configuration"),
            ),
            (
                "http://a:1/",
                true,
                Err("a TLS configuration for a plain http url"),
            ),
            ("ftp://a/", true, Err("only http and https are supported")),
            (
                "https://u:p@a:1/",
                true,
                Err("credentials in the url are not supported"),
            ),
        ] {
            assert_eq!(split(url, with_tls), expected.map(str::to_owned), "{url}");
        }
    }

    #[test]
    fn urls() {
        let split = |u: &str| {
            Origin::from_url(&u.parse().unwrap())
                .map(|(o, t)| format!("{} {:?} {t}", o.addr, o.host))
        };
        for (url, expected) in [
            (
                "http://198.18.9.2:9090/api/v1/write",
                Ok("198.18.9.2:9090 \"198.18.9.2:9090\" /api/v1/write"),
            ),
            ("http://monitor/w?x=1", Ok("monitor:80 \"monitor\" /w?x=1")),
            ("http://[::1]:9180", Ok("[::1]:9180 \"[::1]:9180\" /")),
            ("https://a:1/w", Err("only plain http is supported")),
            (
                "http://u:p@a:1/w",
                Err("credentials in the url are not supported"),
            ),
            ("/api/v1/write", Err("only plain http is supported")),
        ] {
            assert_eq!(split(url), expected.map(str::to_owned), "{url}");
        }
    }
}

//! The one-shot HTTP/1.1 client: one request over a fresh plain-TCP connection, closed
//! with the answer; the whole exchange (connect, send, the response to its last byte)
//! within one deadline and the response body bounded in size. The agent scrapes services
//! and pushes to Prometheus with it, the dashboard queries Prometheus with it. [`Error`]
//! says what went wrong (connect, timeout, too large, protocol) so each caller keeps its
//! own classification: the agent retries a push after any of them, the dashboard reports
//! Prometheus unreachable.
//!
//! One connection per request: these talk over the management segment every few
//! seconds, where a connect costs less than keeping and health-checking an idle
//! connection, and no task outlives a request (the connection is driven beside it).

use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

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
        let authority = url.authority().ok_or("no host")?;
        if authority.as_str().contains('@') {
            return Err("credentials in the url are not supported");
        }
        let addr = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| "invalid host")?;
        let target = url
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str)
            .parse()
            .map_err(|_| "invalid path")?;
        Ok((Origin { addr, host }, target))
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
    /// No TCP connection: refused, unreachable, no such host. The request was not sent.
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The whole exchange took longer than [`Limits::timeout`].
    #[error("{addr}: no complete response within {after:?}")]
    Timeout { addr: String, after: Duration },
    /// The body was longer than [`Limits::max_body`] ([`Overflow::Fail`]).
    #[error("{addr}: response body larger than {limit} bytes")]
    TooLarge { addr: String, limit: usize },
    /// The request itself is unusable (a path that is no request target); nothing was
    /// sent.
    #[error("{addr}: invalid request target {path:?}")]
    Request { addr: String, path: String },
    /// The HTTP exchange failed after connecting: reset, closed early, malformed.
    #[error("{addr}: {source}")]
    Protocol {
        addr: String,
        #[source]
        source: hyper::Error,
    },
}

/// Sends `request` (its URI the request target, such as `/metrics`) to `origin` over a
/// new connection, with `Host` set from `origin`, and reads the response within `limits`.
pub async fn send(
    origin: &Origin,
    request: Request<Bytes>,
    limits: Limits,
) -> Result<Response, Error> {
    match tokio::time::timeout(limits.timeout, exchange(origin, request, limits)).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout {
            addr: origin.addr.clone(),
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

async fn exchange(
    origin: &Origin,
    request: Request<Bytes>,
    limits: Limits,
) -> Result<Response, Error> {
    let addr = &origin.addr;
    let protocol = |source| Error::Protocol {
        addr: addr.clone(),
        source,
    };
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| Error::Connect {
            addr: addr.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(protocol)?;
    let mut request = request.map(Full::new);
    request.headers_mut().insert(HOST, origin.host.clone());

    let response = async {
        let resp = sender.send_request(request).await.map_err(protocol)?;
        let (parts, mut body) = resp.into_parts();
        let mut buf = Vec::new();
        let mut truncated = false;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(protocol)?.into_data() else {
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

//! A real HTTP/1.1 backend for tests, in-process or as the `rampart-test-backend` process.
//! Every response names the backend (body and `x-backend`), and a few paths help tests:
//! `/headers` echoes the request headers, `/slow?ms=N` answers after N ms, `/status/N`
//! answers with status N, `/chunked` streams three chunks without a length, `/close`
//! answers with `Connection: close`, `/healthz` is always 200. Every response carries
//! `x-conn`, the number of the backend connection it came on (1, 2, ...).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// A body of several frames and no declared length (sent chunked).
struct Chunks(std::collections::VecDeque<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// Answers one request as backend `name`, on its connection number `conn`.
pub async fn handle(name: Arc<str>, conn: u64, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let mut headers = String::new();
    for (k, v) in req.headers() {
        headers.push_str(&format!(
            "{}: {}\n",
            k,
            String::from_utf8_lossy(v.as_bytes())
        ));
    }
    let body_len = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let mut status = StatusCode::OK;
    let body = if path == "/headers" {
        headers
    } else if path == "/slow" {
        let ms = query
            .strip_prefix("ms=")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        format!("{name} slow\n")
    } else if let Some(code) = path.strip_prefix("/status/") {
        status = code
            .parse()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
        format!("{name} {status}\n")
    } else if path == "/echo-len" {
        format!("{body_len}\n")
    } else {
        format!("{name}\n")
    };
    let body: Body = match path.as_str() {
        "/chunked" => Chunks(
            [format!("{name} "), "chunked ".into(), "body\n".into()]
                .into_iter()
                .map(Bytes::from)
                .collect(),
        )
        .boxed(),
        _ => Full::new(Bytes::from(body)).boxed(),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("x-conn", http::HeaderValue::from(conn));
    if path == "/close" {
        resp.headers_mut()
            .insert("connection", http::HeaderValue::from_static("close"));
    }
    if let Ok(v) = http::HeaderValue::from_str(&name) {
        resp.headers_mut().insert("x-backend", v);
    }
    resp
}

/// Serves `listener` forever as backend `name`, plain or with `tls`.
pub async fn serve(listener: TcpListener, name: Arc<str>, tls: Option<tokio_rustls::TlsAcceptor>) {
    let mut conns = 0u64;
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            continue;
        };
        conns += 1;
        let conn = conns;
        let name = Arc::clone(&name);
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let name = Arc::clone(&name);
                async move { Ok::<_, std::convert::Infallible>(handle(name, conn, req).await) }
            });
            let builder = {
                let mut b = hyper::server::conn::http1::Builder::new();
                b.timer(TokioTimer::new());
                b
            };
            match tls {
                None => {
                    let _ = builder.serve_connection(TokioIo::new(sock), svc).await;
                }
                Some(acceptor) => {
                    if let Ok(s) = acceptor.accept(sock).await {
                        let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                    }
                }
            }
        });
    }
}

/// An in-process backend; stops when dropped.
pub struct BackendHandle {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BackendHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts an in-process plain HTTP backend named `name` on 127.0.0.1:0.
#[allow(clippy::expect_used)]
pub async fn spawn_backend(name: &str) -> BackendHandle {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(serve(listener, Arc::from(name), None));
    BackendHandle { addr, task }
}

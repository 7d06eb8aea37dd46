//! [`Client`]: the calls, each a POST of JSON to one member's gateway, with failover. A
//! call tries the endpoints in turn, starting with the last one that answered, and moves
//! on after a connect or TLS failure, a timeout ([`ClientConfig::request_timeout`] per
//! attempt), a 5xx or a stream error of the member's own; an answer (success or refusal)
//! ends it. Every request requires a leader (the gateway's `Grpc-Metadata-hasleader`
//! header), so a member cut off from the quorum answers 503 at once instead of holding a
//! linearizable request for seven seconds, and ends its open watches.
//!
//! Retries are at least once: a write whose answer timed out may have been applied, and
//! is sent again to the next member. A write that must not apply twice is a [`Txn`]
//! guarded by a revision, whose second run fails and reads back what the first wrote.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use rampart_telemetry::http_client::{self, Endpoint, Limits, Overflow, StreamLimits};
use rampart_tls::ClientTls;
use serde_json::Value;

use crate::error::{describe, Error};
use crate::model::{Lease, Range, Txn, TxnResponse};
use crate::watch::{stream_error, Watch};
use crate::wire::{self, Message};

/// The default bound of one attempt on one member.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// The largest answer (or streamed message) read: far above what the keepers' keys need,
/// low enough that a runaway answer cannot exhaust memory.
const MAX_MESSAGE: usize = 8 << 20;

/// The gateway passes `Grpc-Metadata-*` headers on as gRPC metadata; etcd's
/// `hasleader: true` makes a member without a leader refuse at once (and cancel the
/// request's watch when it loses its leader later).
const REQUIRE_LEADER: (&str, &str) = ("grpc-metadata-hasleader", "true");

/// Where the cluster is and how to talk to it.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The members' client URLs, `https://198.18.9.2:2379`.
    pub endpoints: Vec<String>,
    /// The CA the members' certificates come from, and this client's certificate and key
    /// (etcd runs with `--client-cert-auth`: without one the handshake is refused).
    pub tls: ClientTls,
    /// The bound of one attempt on one member (connect, TLS, request, answer); a call
    /// tries each member once, so it fails within about endpoints × this.
    pub request_timeout: Duration,
}

impl ClientConfig {
    /// A configuration with the default request timeout.
    pub fn new(endpoints: Vec<String>, tls: ClientTls) -> ClientConfig {
        ClientConfig {
            endpoints,
            tls,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// A handle on the cluster; cheap to clone (the clones share the preferred endpoint).
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The endpoints as configured (for messages) and as the HTTP client takes them.
    endpoints: Vec<(String, Endpoint)>,
    timeout: Duration,
    /// The index of the endpoint that answered last: where the next call starts.
    preferred: AtomicUsize,
}

/// What one attempt on one endpoint gave: the call's outcome, or a reason to try the next.
enum Attempt<T> {
    Done(Result<T, Error>),
    Next(String),
}

/// A unary answer: a success parsed by `parse`, a 5xx the member's trouble, anything else
/// a refusal.
fn unary<T>(
    status: StatusCode,
    body: &[u8],
    parse: impl FnOnce(&[u8]) -> Result<T, Error>,
) -> Attempt<T> {
    if status.is_success() {
        return Attempt::Done(parse(body));
    }
    let (code, message) = wire::error_answer(body);
    if status.is_server_error() {
        Attempt::Next(format!("{} {message}", status.as_u16()))
    } else {
        Attempt::Done(Err(wire::refusal(status.as_u16(), code, message)))
    }
}

/// The first non-empty line of `body`.
fn first_line(body: &[u8]) -> &[u8] {
    body.split(|&b| b == b'\n')
        .find(|l| !l.trim_ascii().is_empty())
        .unwrap_or_default()
}

impl Client {
    /// Checks the endpoints (each `https://host:port`) and loads the certificates; no
    /// connection is made.
    pub fn new(cfg: ClientConfig) -> Result<Client, Error> {
        if cfg.endpoints.is_empty() {
            return Err(Error::Config("no endpoints".into()));
        }
        if cfg.request_timeout.is_zero() {
            return Err(Error::Config("request_timeout is zero".into()));
        }
        let tls = Arc::new(
            rampart_tls::client_config(&cfg.tls).map_err(|e| Error::Config(e.to_string()))?,
        );
        let mut endpoints = Vec::with_capacity(cfg.endpoints.len());
        for url in cfg.endpoints {
            let bad = |why: &str| Error::Config(format!("endpoint {url:?}: {why}"));
            let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
            if uri.scheme_str() != Some("https") {
                return Err(bad("not https://host:port"));
            }
            let (endpoint, target) = Endpoint::from_url(&uri, Some(tls.clone())).map_err(bad)?;
            if target != "/" {
                return Err(bad("has a path; give https://host:port"));
            }
            endpoints.push((url, endpoint));
        }
        Ok(Client {
            inner: Arc::new(Inner {
                endpoints,
                timeout: cfg.request_timeout,
                preferred: AtomicUsize::new(0),
            }),
        })
    }

    /// The endpoint indices in the order a call tries them: the preferred one first.
    fn order(&self) -> impl Iterator<Item = usize> {
        let n = self.inner.endpoints.len();
        let start = self.inner.preferred.load(Ordering::Relaxed) % n;
        (0..n).map(move |i| (start + i) % n)
    }

    /// A request as every call sends it (to each endpoint in turn: it is cloned).
    fn request(method: &Method, path: &str, body: Bytes) -> Result<Request<Bytes>, Error> {
        Request::builder()
            .method(method.clone())
            .uri(path)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(REQUIRE_LEADER.0, REQUIRE_LEADER.1)
            .body(body)
            .map_err(|e| Error::Protocol(format!("request {path}: {e}")))
    }

    /// Runs `attempt` on each endpoint in turn, the preferred one first, until one gives
    /// the outcome; that endpoint is preferred from then on. `path` names the call in
    /// messages.
    async fn each_endpoint<'a, T, F, Fut>(&'a self, path: &str, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut(&'a str, &'a Endpoint) -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let mut failures = Vec::new();
        for i in self.order() {
            let (url, endpoint) = &self.inner.endpoints[i];
            match attempt(url, endpoint).await {
                Attempt::Done(result) => {
                    self.inner.preferred.store(i, Ordering::Relaxed);
                    return result;
                }
                Attempt::Next(why) => {
                    tracing::debug!(endpoint = %url, path, reason = %why, "etcd endpoint failed");
                    failures.push(format!("{url}{path}: {why}"));
                }
            }
        }
        Err(Error::Unavailable(failures.join("; ")))
    }

    /// Sends `method path` with `body` to each endpoint in turn until `decide` says an
    /// answer is the outcome.
    async fn call<T>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        decide: impl Fn(StatusCode, &[u8]) -> Attempt<T>,
    ) -> Result<T, Error> {
        let body = match body {
            Some(v) => Bytes::from(v.to_string()),
            None => Bytes::new(),
        };
        let request = Self::request(&method, path, body)?;
        let limits = Limits {
            timeout: self.inner.timeout,
            max_body: MAX_MESSAGE,
            overflow: Overflow::Fail,
        };
        let decide = &decide;
        self.each_endpoint(path, |_, endpoint| {
            let request = request.clone();
            async move {
                match http_client::send_to(endpoint, request, limits).await {
                    Ok(answer) => decide(answer.status, &answer.body),
                    Err(e @ http_client::Error::TooLarge { .. }) => {
                        Attempt::Done(Err(Error::Protocol(e.to_string())))
                    }
                    Err(e) => Attempt::Next(describe(&e)),
                }
            }
        })
        .await
    }

    async fn post<T>(
        &self,
        path: &str,
        body: &Value,
        parse: impl Fn(&[u8]) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.call(Method::POST, path, Some(body), |status, answer| {
            unary(status, answer, &parse)
        })
        .await
    }

    /// Grants a lease of `ttl` (whole seconds, rounded up; etcd raises it to its minimum,
    /// 2 s by default, and says so in [`Lease::ttl`]).
    pub async fn grant(&self, ttl: Duration) -> Result<Lease, Error> {
        self.post(
            "/v3/lease/grant",
            &wire::grant_request(ttl),
            wire::grant_response,
        )
        .await
    }

    /// Renews lease `id`: its TTL from now, or `None` when the lease is gone (expired or
    /// revoked).
    pub async fn keepalive(&self, id: i64) -> Result<Option<Duration>, Error> {
        // A stream of one message: the gateway answers the one keepalive and closes.
        self.call(
            Method::POST,
            "/v3/lease/keepalive",
            Some(&wire::lease_request(id)),
            |status, body| match wire::keepalive_message(first_line(body)) {
                Ok(Message::Result(ttl)) => Attempt::Done(Ok(ttl)),
                Ok(Message::Error { http, message, .. }) if http >= 500 => {
                    Attempt::Next(format!("{http} {message}"))
                }
                Ok(Message::Error {
                    http,
                    code,
                    message,
                }) => Attempt::Done(Err(wire::refusal(http, code, message))),
                // Not a stream line: a plain error answer (or garbage, as a success).
                Err(e) => unary(status, body, |_| Err(e)),
            },
        )
        .await
    }

    /// Revokes lease `id`, deleting its keys; a lease already gone is fine.
    pub async fn revoke(&self, id: i64) -> Result<(), Error> {
        match self
            .post("/v3/lease/revoke", &wire::lease_request(id), |_| Ok(()))
            .await
        {
            Err(Error::LeaseNotFound) => Ok(()),
            other => other,
        }
    }

    /// Reads `key` (linearizable: the latest committed value).
    pub async fn get(&self, key: &str) -> Result<Range, Error> {
        self.post(
            "/v3/kv/range",
            &wire::range_request(key, false),
            wire::range_response,
        )
        .await
    }

    /// Reads every key starting with `prefix`, in key order (linearizable).
    pub async fn get_prefix(&self, prefix: &str) -> Result<Range, Error> {
        self.post(
            "/v3/kv/range",
            &wire::range_request(prefix, true),
            wire::range_response,
        )
        .await
    }

    /// Runs `txn` atomically.
    pub async fn txn(&self, txn: &Txn) -> Result<TxnResponse, Error> {
        self.post("/v3/kv/txn", &wire::txn_request(txn), |body| {
            wire::txn_response(body, txn)
        })
        .await
    }

    /// Writes `key`, attached to `lease` if given; the store's revision after it.
    pub async fn put(&self, key: &str, value: &[u8], lease: Option<i64>) -> Result<i64, Error> {
        self.post(
            "/v3/kv/put",
            &wire::put_request(key, value, lease),
            wire::revision_response,
        )
        .await
    }

    /// Deletes `key` (absent is fine); the store's revision after it.
    pub async fn delete(&self, key: &str) -> Result<i64, Error> {
        self.post(
            "/v3/kv/deleterange",
            &wire::delete_request(key),
            wire::revision_response,
        )
        .await
    }

    /// Compacts the history up to `revision` (and waits for it to be applied): watches
    /// from an older revision are then canceled with
    /// [`WatchEvent::Canceled`](crate::WatchEvent::Canceled). For operators and tests;
    /// the keepers never need it.
    pub async fn compact(&self, revision: i64) -> Result<(), Error> {
        self.post(
            "/v3/kv/compaction",
            &wire::compact_request(revision),
            |_| Ok(()),
        )
        .await
    }

    /// Watches `key` (or, with `prefix`, every key starting with it) from
    /// `start_revision` (0: from now), on the first member that confirms the watch within
    /// the request timeout.
    pub async fn watch(
        &self,
        key: &str,
        prefix: bool,
        start_revision: i64,
    ) -> Result<Watch, Error> {
        let body = Bytes::from(wire::watch_request(key, prefix, start_revision).to_string());
        let timeout = self.inner.timeout;
        let limits = StreamLimits {
            head_timeout: timeout,
            idle_timeout: timeout,
            max_line: MAX_MESSAGE,
        };
        let request = Self::request(&Method::POST, "/v3/watch", body)?;
        self.each_endpoint("/v3/watch", |url, endpoint| {
            let request = request.clone();
            let open = async move {
                let mut stream = match http_client::stream(endpoint, request, limits).await {
                    Ok(stream) => stream,
                    Err(e) => return Attempt::Next(describe(&e)),
                };
                // The first message confirms the watch (or says why not).
                let line = loop {
                    match stream.next_line().await {
                        Ok(Some(line)) if line.trim_ascii().is_empty() => continue,
                        Ok(Some(line)) => break line,
                        Ok(None) => return Attempt::Next("watch stream ended at once".into()),
                        Err(e @ http_client::Error::TooLarge { .. }) => {
                            return Attempt::Done(Err(Error::Protocol(e.to_string())))
                        }
                        Err(e) => return Attempt::Next(describe(&e)),
                    }
                };
                match wire::watch_message(&line) {
                    Ok(Message::Result((events, _))) => {
                        Attempt::Done(Ok(Watch::new(stream, url.to_owned(), events)))
                    }
                    Ok(Message::Error { http, message, .. }) if http >= 500 => {
                        Attempt::Next(format!("{http} {message}"))
                    }
                    Ok(Message::Error {
                        http,
                        code,
                        message,
                    }) => Attempt::Done(Err(stream_error(url, http, code, message))),
                    Err(e) => Attempt::Done(Err(e)),
                }
            };
            async move {
                tokio::time::timeout(timeout, open)
                    .await
                    .unwrap_or_else(|_| {
                        Attempt::Next(format!("no watch confirmation within {timeout:?}"))
                    })
            }
        })
        .await
    }

    /// `GET /health` on the first member that answers: `Ok` only for
    /// `{"health":"true"}` (the member has a leader and can commit).
    pub async fn health(&self) -> Result<(), Error> {
        self.call(Method::GET, "/health", None, |status, body| {
            if wire::healthy(body) {
                Attempt::Done(Ok(()))
            } else {
                Attempt::Done(Err(Error::Unavailable(format!(
                    "unhealthy ({}): {}",
                    status.as_u16(),
                    String::from_utf8_lossy(&body[..body.len().min(200)]).trim()
                ))))
            }
        })
        .await
    }
}

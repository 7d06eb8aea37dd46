//! [`Error`]: what a call to etcd can fail with, classified for the callers' decisions
//! (try again later, the lease is gone, the request was wrong, the answer was not
//! understood).

/// Why a call gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No endpoint answered usefully: connect or TLS failure, timeout, 5xx (no leader,
    /// no quorum), or a stream that broke off. Each endpoint's failure is in the message.
    /// Safe to retry later; a write may or may not have been applied.
    #[error("etcd unavailable: {0}")]
    Unavailable(String),
    /// The lease named in the request does not exist (expired or revoked).
    #[error("etcd: requested lease not found")]
    LeaseNotFound,
    /// etcd refused the request (4xx): `code` is the gRPC status code etcd gives
    /// (3 invalid argument, 11 out of range, ...), `message` its text.
    #[error("etcd answered {http} (code {code}): {message}")]
    Status {
        http: u16,
        code: i64,
        message: String,
    },
    /// An answer that is not what the gateway sends: bad JSON, bad base64, a missing
    /// field, a body over the size bound.
    #[error("etcd protocol: {0}")]
    Protocol(String),
    /// [`Client::new`](crate::Client::new) was given something unusable: no endpoints,
    /// an endpoint that is no `https://host:port` URL, certificates that do not load.
    #[error("etcd client configuration: {0}")]
    Config(String),
}

/// `e` with its sources: hyper's errors keep the cause (a TLS alert, a reset) there.
pub(crate) fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}

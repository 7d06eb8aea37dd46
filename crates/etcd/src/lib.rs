//! A client of etcd 3.4's v3 JSON gateway (`/v3/...` over HTTPS with mutual TLS): leases
//! ([`Client::grant`], [`Client::keepalive`], [`Client::revoke`]), reads and writes
//! ([`Client::get`], [`Client::get_prefix`], [`Client::put`], [`Client::delete`]),
//! transactions ([`Txn`]), watches ([`Watch`]) and `/health`, with failover across the
//! cluster's endpoints. What keepers (the database failover agents) and web servers use
//! to agree on who is primary.
//!
//! Layers, none importing a later one: `lib.rs` → `client.rs` (endpoints, failover,
//! timeouts) → `watch.rs` (one open watch) → `wire.rs` (the gateway's JSON) → `model.rs`
//! (the crate's types) and `error.rs`. Only `client.rs` and `watch.rs` do I/O, through
//! `rampart_telemetry::http_client` (HTTP/1.1 over rustls, one connection per request); no
//! gRPC, no protobuf.

mod client;
mod error;
mod model;
mod watch;
mod wire;

pub use client::{Client, ClientConfig, DEFAULT_REQUEST_TIMEOUT};
pub use error::Error;
pub use model::{Compare, Kv, Lease, Op, Range, Txn, TxnResponse, WatchEvent};
pub use watch::{Watch, DEFAULT_WATCH_IDLE_TIMEOUT};

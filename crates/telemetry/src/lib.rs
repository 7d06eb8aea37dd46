//! What every rampart service shares at its edges: the service shape the binary runs
//! them through ([`service::Service`]: bind, build, serve with a shutdown future and a
//! readiness callback), its config file ([`config`]: read, parse, validate, every error
//! named; the `[listen]` keys in [`listen`]), binding its TCP listeners and the source
//! allow-list they check ([`listen`]), the accept gate every TCP listener goes through
//! ([`accept::Gate`]: allow-list, connection cap, back-off on accept errors, counters),
//! the outbound HTTP/1 client, one-shot for Prometheus, scrapes and probes and streaming
//! for etcd's watch, plain or TLS ([`http_client`]), the
//! JSON access log (one shape for the load balancer and the web servers, so one parser
//! reads both), atomic file writes ([`fs`]) and the Prometheus text exposition of a
//! `prometheus-client` registry and the one status class ([`metrics`]).
//!
//! Layers: `config` ← `listen` ← `accept`; `config` ← `access_log`; `service`,
//! `http_client`, `fs` and `metrics` stand alone.
//! Nothing here knows the topology model (`rampart-topology`).

pub mod accept;
pub mod access_log;
pub mod config;
pub mod fs;
pub mod http_client;
pub mod listen;
pub mod metrics;
pub mod service;

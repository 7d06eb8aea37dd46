//! What every rampart service shares at its edges: its config file (`config`: read,
//! parse, validate, every error named; the `[listen]` keys in `listen`), binding its TCP
//! listeners and the source allow-list they check at accept (`listen`), the one-shot
//! HTTP/1 client the agent and the dashboard talk to Prometheus and to services with
//! (`http_client`), the JSON access log (one shape for the load balancer and the web
//! servers, so one parser reads both), atomic file writes (`fs`) and the Prometheus text
//! exposition of a `prometheus-client` registry (`metrics`).
//!
//! Layers: `config` ← `listen`, `access_log`; `http_client`, `fs` and `metrics` stand
//! alone.
//! Nothing here knows the topology model (`rampart-topology`).

pub mod access_log;
pub mod config;
pub mod fs;
pub mod http_client;
pub mod listen;
pub mod metrics;

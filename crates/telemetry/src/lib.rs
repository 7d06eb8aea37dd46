//! What every rampart service shares at its edges: the service shape the binary runs
//! them through ([`service::Service`]: bind, build, serve with a shutdown future and a
//! readiness callback), binding TCP listeners and the source allow-list they check
//! ([`listen`]), the accept gate every TCP listener goes through ([`accept::Gate`]:
//! allow-list, connection cap, back-off on accept errors, counters), the JSON access log
//! (one shape for the load balancer and the web servers, so one parser reads both) and
//! the Prometheus text exposition of a `prometheus-client` registry.

pub mod accept;
pub mod access_log;
pub mod listen;
pub mod metrics;
pub mod service;

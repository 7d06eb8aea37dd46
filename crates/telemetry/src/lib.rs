//! What every rampart service shares at its edges: binding its TCP listeners and the
//! source allow-list they check at accept, the JSON access log (one shape for the load
//! balancer and the web servers, so one parser reads both) and the Prometheus text
//! exposition of a `prometheus-client` registry.

pub mod access_log;
pub mod fs;
pub mod listen;
pub mod metrics;

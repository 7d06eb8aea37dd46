//! The rampart authoritative DNS server for the site's zone: SOA, NS and CAA at the apex,
//! the load balancer's address for the apex and `www`, the name server's own address;
//! REFUSED for every name outside the zone (it never recurses).
//!
//! Entry points: [`Config::load`] (from `rampart_telemetry::config::ConfigFile`) validates
//! a config file; [`Listeners::bind`] binds its
//! UDP and TCP addresses; [`Dns::new`] builds the server and [`Dns::serve`] runs it until
//! a shutdown future resolves. `rampart dns` in the binary is a thin wrapper around these.
//! [`Dns`] is a `rampart_telemetry::service::Service`: the binary runs it through its one
//! runner, like every other service.
//!
//! Layers: `zone` (pure: zone data → the answer to a question) ← `handler` (pure: request
//! bytes → response bytes) ← `server` (sockets). Only `server` does I/O.

pub mod config;
pub mod handler;
pub mod server;
pub mod zone;

pub use config::Config;
pub use server::{Dns, Listeners};

use rampart_telemetry::config::{ConfigErrors, ConfigFile};

/// Validates a config file without binding or starting anything. This is `rampart check`
/// for a DNS config; a DNS config names no other files, so this is [`Config::load`].
pub fn check(path: &std::path::Path) -> Result<Config, ConfigErrors> {
    Config::load(path)
}

//! the topology model: hosts, addresses, services and firewall policy (pure data, no I/O)
pub mod config;

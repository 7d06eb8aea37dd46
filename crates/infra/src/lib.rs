//! Touches the host: child processes and pid files (`process`), MariaDB servers
//! (`mariadb`), network namespaces and nftables (`netns`, `firewall`), the hosts'
//! cgroups (`cgroup`), the operator's
//! forward into a namespace (`forward`), the operator's extra Prometheus rules files
//! (`rules`: read and `promtool check`ed) and the executor of a run's plan (`stack`). Only
//! this crate spawns, signals or stops processes, or runs `ip` and `nft`; it decides
//! nothing about what runs where (that is `rampart_topology::plan`).

pub mod bundle;
pub mod cgroup;
pub mod firewall;
pub mod forward;
pub mod mariadb;
pub mod netns;
pub mod process;
pub mod rules;
pub mod stack;

pub use process::InfraError;

//! The monitoring agent (`rampart agent`, issue 5): the metric model every collector
//! fills ([`Family`], [`Sample`]) and its Prometheus text exposition ([`expo`]); host
//! metrics under node_exporter's names ([`host`], and [`kernel`] for the kernel and
//! device collectors, both on the shared file reading of `procfs`, plus [`timex`],
//! [`systemd`] and [`textfile`], and [`cgroup`] for a host's CPU and memory from its cgroup); the services' `/metrics` ([`scrape`]), access-log counters
//! ([`logtail`]) and database metrics under mysqld_exporter's names ([`mysql`]); the
//! on-disk [`buffer`]; the remote-write 1.0 encoder and client ([`remote_write`]); log
//! lines into Loki push batches ([`logship`]) shipped by [`ship`] (issue 18); the
//! firewall's drops read from nflog ([`nflog`]) as events and a metric ([`firewall`]);
//! the systemd journal's entries of the host's units ([`journal`]);
//! and the main loop ([`run`]).
//!
//! Entry points, the shape every service has: [`config::Config::load`] validates a
//! config file, [`run::Listeners::bind`] binds the own `/metrics` listener,
//! [`run::Agent::new`] opens the state and [`run::Agent::serve`] runs until a shutdown
//! future resolves. Errors are typed ([`run::AgentError`]).

pub mod buffer;
pub mod certs;
pub mod cgroup;
pub mod config;
pub mod expo;
pub mod firewall;
pub mod host;
pub mod journal;
pub mod kernel;
pub mod logship;
pub mod logtail;
pub mod mysql;
pub mod nflog;
mod procfs;
pub mod remote_write;
pub mod run;
pub mod scrape;
pub mod ship;
pub mod systemd;
pub mod textfile;
pub mod timex;

/// What kind of metric a family is, as the text format's `# TYPE` line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// Samples carry the suffixes `_bucket` (with an `le` label), `_sum` and `_count`.
    Histogram,
    Untyped,
}

/// One sample of a family: its labels (without the metric name) and value. Label names
/// are unique within a sample; values are never empty (an empty label is the same as no
/// label in Prometheus, so collectors omit it).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Appended to the family's name to make the sample's metric name: empty for most,
    /// `_bucket`/`_sum`/`_count` in a histogram, `_total` for a counter whose family is
    /// named without it (as OpenMetrics names them).
    pub suffix: &'static str,
}

/// A metric family: name, help text, kind and samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

//! The central log store (issue 18): every host's agent pushes its log lines here with
//! Loki's push API, and the dashboard and Grafana query them with a subset of Loki's
//! HTTP API and LogQL.
//!
//! - [`push`]: the push body (protobuf with snappy, or JSON) → streams of lines;
//! - [`labels`]: a stream's labels and their text form;
//! - [`logql`]: the query language subset;
//! - [`store`]: SQLite (bundled; streams and time indexed, lines scanned), idempotent
//!   inserts (a retried push stores nothing twice), retention by age and size, and the
//!   queries;
//! - [`api`]: the HTTP API's routes over a store, answered in Loki's JSON shapes;
//! - [`config`] and [`server`]: `rampart logs`, the store behind a mutual-TLS listener.

pub mod api;
pub mod config;
pub mod labels;
pub mod logql;
pub mod push;
pub mod server;
pub mod store;

pub use config::Config;
pub use labels::Labels;
pub use server::{Listeners, Logs, LogsError};
pub use store::Store;

//! The leader key in etcd: a [`LeaderStore`] over the `rampart-etcd` client.
//! Placeholder until that crate is merged.

use std::sync::Arc;

use crate::config::Etcd;
use crate::leader::LeaderStore;

/// A store for the cluster of `config`.
pub fn store(config: &Etcd) -> Result<Arc<dyn LeaderStore>, String> {
    Err(format!(
        "{}: this build has no etcd client",
        config.endpoints.join(",")
    ))
}

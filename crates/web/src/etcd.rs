//! The leader key in etcd: a [`LeaderStore`] over the `rampart-etcd` client (mutual TLS
//! to the members' v3 JSON gateway, each request bounded by `database.etcd.request_timeout`
//! and tried on the next member on failure). The only file that names that crate.

use std::sync::Arc;

use futures_core::future::BoxFuture;
use rampart_etcd::{Client, ClientConfig, Kv, WatchEvent};

use crate::config::Etcd;
use crate::leader::{Change, KeyValue, LeaderStore, LeaderWatch, StoreError};

/// A store for the cluster of `config`; loads the certificates, connects to nothing.
pub fn store(config: &Etcd) -> Result<Arc<dyn LeaderStore>, String> {
    let client = Client::new(ClientConfig {
        endpoints: config.endpoints.clone(),
        tls: rampart_tls::ClientTls {
            ca: config.ca.clone(),
            client_cert: Some((config.cert.clone(), config.key.clone())),
        },
        request_timeout: config.request_timeout,
    })
    .map_err(|e| e.to_string())?;
    Ok(Arc::new(EtcdStore { client }))
}

struct EtcdStore {
    client: Client,
}

fn kv(kv: Kv) -> KeyValue {
    KeyValue {
        value: kv.value,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
    }
}

fn error(e: &rampart_etcd::Error) -> StoreError {
    StoreError(e.to_string())
}

impl LeaderStore for EtcdStore {
    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(Option<KeyValue>, i64), StoreError>> {
        Box::pin(async move {
            let range = self.client.get(key).await.map_err(|e| error(&e))?;
            let found = range.kvs.into_iter().find(|k| k.key == key).map(kv);
            Ok((found, range.revision))
        })
    }

    fn watch<'a>(
        &'a self,
        key: &'a str,
        from: i64,
    ) -> BoxFuture<'a, Result<Box<dyn LeaderWatch>, StoreError>> {
        Box::pin(async move {
            let watch = self
                .client
                .watch(key, false, from)
                .await
                .map_err(|e| error(&e))?;
            Ok(Box::new(EtcdWatch(watch)) as Box<dyn LeaderWatch>)
        })
    }
}

struct EtcdWatch(rampart_etcd::Watch);

impl LeaderWatch for EtcdWatch {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<Change>, StoreError>> {
        Box::pin(async move {
            Ok(self
                .0
                .next()
                .await
                .map_err(|e| error(&e))?
                .map(|event| match event {
                    WatchEvent::Put(k) => Change::Put(kv(k)),
                    WatchEvent::Delete { mod_revision, .. } => Change::Delete { mod_revision },
                    WatchEvent::Progress { revision } => Change::Progress { revision },
                    WatchEvent::Canceled { compact_revision } => {
                        Change::Canceled { compact_revision }
                    }
                }))
        })
    }
}

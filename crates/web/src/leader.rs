//! Following the database leader: the leader key's value ([`parse_value`]), the store it
//! lives in seen through [`LeaderStore`] (etcd in production, `etcd.rs`; [`MemStore`] in
//! tests), and [`follow`], the task that ranges the key, watches it from the next
//! revision and reports every change to a callback (`Db::set_leader`).
//!
//! The keeper of the primary holds the key on a lease. Its value is JSON,
//! `{"host":"db1","server_id":1,"addr":"198.18.8.11:3306","writable":false}`, first written
//! with `writable:false` when the keeper wins the key and rewritten (same lease, so the
//! same `create_revision`) with `writable:true` once `read_only` is off. The key's
//! `create_revision` is the **epoch**, a fencing token: a new leader re-creates the key
//! and so gets a new one. When the lease expires the key is deleted: no leader.
//!
//! Following: range the key, then watch it from the range's revision + 1. When the stream
//! ends, fails or is cancelled (compaction), range and watch again after a backoff that
//! doubles from 100 ms to 5 s and starts over once a watch delivers. While the store is
//! unreachable the last known leader stays: the write check (`db.rs`) is what keeps a
//! stale one from taking writes. Transitions are logged (watch lost, watch restored,
//! leader changed), never each retry. This module does no database work.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_core::future::BoxFuture;
use serde::Deserialize;

/// The primary as the leader key names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leader {
    /// The database host's name (`db1`).
    pub host: String,
    /// Its `@@server_id`; `None` only for the static primary of a config without etcd.
    pub server_id: Option<u32>,
    /// Where its MariaDB listens.
    pub addr: SocketAddr,
    /// The key's `create_revision`: changes exactly when a new leader takes the key. 0 for
    /// the static primary.
    pub epoch: i64,
    /// The keeper has turned `read_only` off; until then writes are refused.
    pub writable: bool,
}

/// Why a leader value was refused; the key is then treated as absent (no leader).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValueError {
    #[error("not the leader's JSON object: {0}")]
    Json(String),
    #[error("host: expected 1-64 letters, digits, '.', '-' or '_'")]
    Host,
    #[error("server_id: expected 1 to 4294967295")]
    ServerId,
    #[error("addr: `{0}` is not IP:PORT")]
    Addr(String),
}

/// The value's wire shape; unknown fields are ignored so the keeper may add some.
#[derive(Deserialize)]
struct Wire {
    host: String,
    server_id: u32,
    addr: String,
    #[serde(default)]
    writable: bool,
}

/// Parses the leader key's value written at `epoch` (its `create_revision`). A missing
/// `writable` is `false`: a value that does not say the server is writable is not.
pub fn parse_value(value: &[u8], epoch: i64) -> Result<Leader, ValueError> {
    let w: Wire = serde_json::from_slice(value).map_err(|e| ValueError::Json(e.to_string()))?;
    let host_ok = !w.host.is_empty()
        && w.host.len() <= 64
        && w.host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !host_ok {
        return Err(ValueError::Host);
    }
    if w.server_id == 0 {
        return Err(ValueError::ServerId);
    }
    let addr = w
        .addr
        .parse()
        .map_err(|_| ValueError::Addr(w.addr.clone()))?;
    Ok(Leader {
        host: w.host,
        server_id: Some(w.server_id),
        addr,
        epoch,
        writable: w.writable,
    })
}

/// One version of the leader key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
}

/// What a watch reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Put(KeyValue),
    Delete {
        mod_revision: i64,
    },
    /// Nothing changed up to `revision`.
    Progress {
        revision: i64,
    },
    /// The server ended the watch (its start revision was compacted): range again.
    Canceled {
        compact_revision: i64,
    },
}

/// A failed call to the store; the follower retries it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// The store the leader key lives in, as much of it as following needs: a linearizable
/// read and a watch. Implemented over etcd by `etcd.rs` and in memory by [`MemStore`].
pub trait LeaderStore: Send + Sync + 'static {
    /// The key's current version (if any) and the store's revision.
    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(Option<KeyValue>, i64), StoreError>>;

    /// Changes of the key from revision `from` on.
    fn watch<'a>(
        &'a self,
        key: &'a str,
        from: i64,
    ) -> BoxFuture<'a, Result<Box<dyn LeaderWatch>, StoreError>>;
}

/// An open watch. `Ok(None)`: the stream ended.
pub trait LeaderWatch: Send {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<Change>, StoreError>>;
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the key's version says: a leader, or none (absent or unparsable).
fn leader_of(key: &str, kv: Option<&KeyValue>) -> Option<Leader> {
    let kv = kv?;
    match parse_value(&kv.value, kv.create_revision) {
        Ok(l) => Some(l),
        Err(error) => {
            tracing::error!(key, %error, mod_revision = kv.mod_revision, "leader value refused; no leader until it is rewritten");
            None
        }
    }
}

/// Follows `key` in `store` until `stop` changes, calling `apply` with the leader after
/// every range and change (also when it is the same: `apply` compares). `restarts` is
/// called each time the watch has to be set up again after a failure.
pub async fn follow(
    store: Arc<dyn LeaderStore>,
    key: String,
    mut apply: impl FnMut(Option<Leader>) + Send,
    mut restarts: impl FnMut() + Send,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut healthy = true;
    loop {
        let run = async {
            let (kv, revision) = store.get(&key).await?;
            apply(leader_of(&key, kv.as_ref()));
            let mut watch = store.watch(&key, revision.saturating_add(1)).await?;
            if !healthy {
                tracing::info!(key, "leader watch restored");
                healthy = true;
            }
            loop {
                match watch.next().await? {
                    Some(Change::Put(kv)) => apply(leader_of(&key, Some(&kv))),
                    Some(Change::Delete { .. }) => apply(None),
                    Some(Change::Progress { .. }) => {}
                    Some(Change::Canceled { compact_revision }) => {
                        tracing::info!(
                            key,
                            compact_revision,
                            "leader watch canceled; ranging again"
                        );
                        return Ok::<_, StoreError>(true);
                    }
                    None => return Ok(false),
                }
                backoff = BACKOFF_MIN;
            }
        };
        let outcome = tokio::select! {
            r = run => r,
            _ = stop.changed() => return,
        };
        match outcome {
            // A canceled watch is routine (compaction): range again at once.
            Ok(true) => continue,
            Ok(false) => {
                if healthy {
                    tracing::warn!(
                        key,
                        "leader watch ended; keeping the last known leader and retrying"
                    );
                }
                healthy = false;
            }
            Err(error) => {
                if healthy {
                    tracing::warn!(key, %error, "leader watch lost; keeping the last known leader and retrying");
                } else {
                    tracing::debug!(key, %error, "leader watch still failing");
                }
                healthy = false;
            }
        }
        restarts();
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// An in-memory [`LeaderStore`] with etcd's revision rules, for tests: every put and
/// delete is a new revision, a put on an absent key creates it (its `create_revision` is
/// that revision), a put on a present key keeps its `create_revision`. [`MemStore::fail`]
/// makes calls and open watches fail until it is turned off, as an unreachable cluster
/// would. Clones share one store.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    inner: Arc<MemInner>,
}

#[derive(Debug, Default)]
struct MemInner {
    state: Mutex<MemState>,
    changed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct MemState {
    revision: i64,
    keys: std::collections::BTreeMap<String, KeyValue>,
    /// Every change with its revision, for watches starting in the past.
    log: VecDeque<(i64, String, Change)>,
    failing: bool,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    fn read<T>(&self, f: impl FnOnce(&MemState) -> T) -> T {
        match self.inner.state.lock() {
            Ok(s) => f(&s),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    fn update<T>(&self, f: impl FnOnce(&mut MemState) -> T) -> T {
        let r = match self.inner.state.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        };
        self.inner.changed.notify_waiters();
        r
    }

    /// Puts `value` at `key`; returns the new revision.
    pub fn put(&self, key: &str, value: &[u8]) -> i64 {
        self.update(|s| {
            s.revision += 1;
            let rev = s.revision;
            let create = s.keys.get(key).map_or(rev, |kv| kv.create_revision);
            let kv = KeyValue {
                value: value.to_vec(),
                create_revision: create,
                mod_revision: rev,
            };
            s.keys.insert(key.to_owned(), kv.clone());
            s.log.push_back((rev, key.to_owned(), Change::Put(kv)));
            rev
        })
    }

    /// Deletes `key` (as a lease expiry would); returns the new revision.
    pub fn delete(&self, key: &str) -> i64 {
        self.update(|s| {
            s.revision += 1;
            let rev = s.revision;
            if s.keys.remove(key).is_some() {
                s.log
                    .push_back((rev, key.to_owned(), Change::Delete { mod_revision: rev }));
            }
            rev
        })
    }

    /// Makes every call and open watch fail (`true`) or work again.
    pub fn fail(&self, failing: bool) {
        self.update(|s| s.failing = failing);
    }
}

fn unavailable() -> StoreError {
    StoreError("store unavailable".into())
}

impl LeaderStore for MemStore {
    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(Option<KeyValue>, i64), StoreError>> {
        let r = self.read(|s| {
            if s.failing {
                return Err(unavailable());
            }
            Ok((s.keys.get(key).cloned(), s.revision))
        });
        Box::pin(async move { r })
    }

    fn watch<'a>(
        &'a self,
        key: &'a str,
        from: i64,
    ) -> BoxFuture<'a, Result<Box<dyn LeaderWatch>, StoreError>> {
        let r = if self.read(|s| s.failing) {
            Err(unavailable())
        } else {
            Ok(Box::new(MemWatch {
                store: self.clone(),
                key: key.to_owned(),
                next: from,
            }) as Box<dyn LeaderWatch>)
        };
        Box::pin(async move { r })
    }
}

struct MemWatch {
    store: MemStore,
    key: String,
    next: i64,
}

impl LeaderWatch for MemWatch {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<Change>, StoreError>> {
        Box::pin(async move {
            loop {
                let notified = self.store.inner.changed.notified();
                let found = self.store.read(|s| {
                    if s.failing {
                        return Err(unavailable());
                    }
                    Ok(s.log
                        .iter()
                        .find(|(rev, key, _)| *rev >= self.next && *key == self.key)
                        .cloned())
                })?;
                if let Some((rev, _, change)) = found {
                    self.next = rev + 1;
                    return Ok(Some(change));
                }
                notified.await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn leader_values() {
        let check = |value: &str, expected: Result<(&str, u32, &str, bool), ValueError>| {
            let got = parse_value(value.as_bytes(), 7).map(|l| {
                assert_eq!(l.epoch, 7);
                (l.host, l.server_id.unwrap(), l.addr.to_string(), l.writable)
            });
            let expected = expected.map(|(h, id, a, w)| (h.to_owned(), id, a.to_owned(), w));
            assert_eq!(got, expected, "{value}");
        };
        check(
            r#"{"host":"db1","server_id":1,"addr":"198.18.8.11:3306","writable":false}"#,
            Ok(("db1", 1, "198.18.8.11:3306", false)),
        );
        check(
            r#"{"host":"db2","server_id":2,"addr":"198.18.8.12:3306","writable":true}"#,
            Ok(("db2", 2, "198.18.8.12:3306", true)),
        );
        // Fields the keeper may add later are ignored; a missing `writable` is false.
        check(
            r#"{"host":"db2","server_id":2,"addr":"[::1]:3306","since":"x"}"#,
            Ok(("db2", 2, "[::1]:3306", false)),
        );
        check(
            r#"{"host":"","server_id":1,"addr":"127.0.0.1:1","writable":true}"#,
            Err(ValueError::Host),
        );
        check(
            r#"{"host":"db 1","server_id":1,"addr":"127.0.0.1:1","writable":true}"#,
            Err(ValueError::Host),
        );
        check(
            r#"{"host":"db1","server_id":0,"addr":"127.0.0.1:1","writable":true}"#,
            Err(ValueError::ServerId),
        );
        check(
            r#"{"host":"db1","server_id":1,"addr":"db1:3306","writable":true}"#,
            Err(ValueError::Addr("db1:3306".into())),
        );
        for bad in [
            "",
            "null",
            "[]",
            r#"{"host":"db1","addr":"127.0.0.1:1"}"#,
            r#"{"host":"db1","server_id":-1,"addr":"127.0.0.1:1"}"#,
            r#"{"host":"db1","server_id":1,"addr":"127.0.0.1:1","writable":"yes"}"#,
        ] {
            assert!(
                matches!(parse_value(bad.as_bytes(), 1), Err(ValueError::Json(_))),
                "{bad}"
            );
        }
    }

    fn value(host: &str, id: u32, writable: bool) -> Vec<u8> {
        format!(
            r#"{{"host":"{host}","server_id":{id},"addr":"127.0.0.1:{id}","writable":{writable}}}"#
        )
        .into_bytes()
    }

    /// Starts `follow` on `store`; returns what it applies and how often it restarted.
    fn start(
        store: &MemStore,
    ) -> (
        tokio::sync::mpsc::UnboundedReceiver<Option<Leader>>,
        Arc<std::sync::atomic::AtomicUsize>,
        tokio::sync::watch::Sender<bool>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let restarts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&restarts);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(follow(
            Arc::new(store.clone()),
            "/rampart/leader".into(),
            move |l| {
                let _ = tx.send(l);
            },
            move || {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            },
            stop_rx,
        ));
        (rx, restarts, stop_tx)
    }

    /// The next leader applied that differs from `last` (the follower also re-applies
    /// the current one after every range).
    async fn next_change(
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<Option<Leader>>,
        last: &Option<Leader>,
    ) -> Option<Leader> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let l = rx.recv().await.expect("follower running");
                if l != *last {
                    return l;
                }
            }
        })
        .await
        .expect("a change within 10 s")
    }

    #[tokio::test]
    async fn the_follower_sees_puts_rewrites_deletes_and_new_epochs() {
        let key = "/rampart/leader";
        let store = MemStore::new();
        store.put("/rampart/other", b"x");
        let (mut rx, _, _stop) = start(&store);
        assert_eq!(rx.recv().await.unwrap(), None, "no key yet: no leader");

        let e1 = store.put(key, &value("db1", 1, false));
        let l = next_change(&mut rx, &None).await.unwrap();
        assert_eq!((l.host.as_str(), l.epoch, l.writable), ("db1", e1, false));

        // Rewritten with the same lease: same epoch, now writable.
        store.put(key, &value("db1", 1, true));
        let l2 = next_change(&mut rx, &Some(l)).await.unwrap();
        assert_eq!((l2.epoch, l2.writable), (e1, true));

        // Lease expiry, then a new leader: a new epoch.
        store.delete(key);
        assert_eq!(next_change(&mut rx, &Some(l2)).await, None);
        let e2 = store.put(key, &value("db2", 2, true));
        let l3 = next_change(&mut rx, &None).await.unwrap();
        assert_eq!((l3.host.as_str(), l3.epoch), ("db2", e2));
        assert!(e2 > e1);

        // A value that does not parse is no leader, not the previous one.
        store.put(key, b"{not json");
        assert_eq!(next_change(&mut rx, &Some(l3)).await, None);
    }

    /// While the store is unreachable the last leader stays; what changed meanwhile is
    /// picked up by the range after it comes back.
    #[tokio::test]
    async fn an_unreachable_store_keeps_the_last_leader_and_recovers() {
        let key = "/rampart/leader";
        let store = MemStore::new();
        store.put(key, &value("db1", 1, true));
        let (mut rx, restarts, _stop) = start(&store);
        let l1 = next_change(&mut rx, &None).await.unwrap();
        store.fail(true);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while restarts.load(std::sync::atomic::Ordering::Relaxed) < 2 {
            assert!(tokio::time::Instant::now() < deadline, "no restarts");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        while let Ok(l) = rx.try_recv() {
            assert_eq!(
                l.as_ref(),
                Some(&l1),
                "nothing but the last leader while failing"
            );
        }
        // Changed while unreachable: the watch missed it, the next range sees it.
        store.fail(false);
        store.delete(key);
        let e2 = store.put(key, &value("db2", 2, true));
        let mut last = Some(l1);
        let l2 = loop {
            let l = next_change(&mut rx, &last).await;
            if l.as_ref().is_some_and(|l| l.epoch == e2) {
                break l;
            }
            last = l;
        };
        assert_eq!(l2.unwrap().host, "db2");
    }
}

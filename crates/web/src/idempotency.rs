//! `Idempotency-Key` on the POST endpoints: a client that did not get an answer (a 503
//! `outcome_unknown`, a dropped connection) retries with the same key and gets the first
//! answer instead of a second write.
//!
//! - The key is 1–64 visible ASCII characters (`!` to `~`), sent once; anything else is a
//!   400. Keys are global, not per client: use random ones (a UUID).
//! - In the write's own transaction, before the write, the key is inserted with a SHA-256
//!   of the request (method, path, body); after the write, the answer's status and body
//!   are stored in the same row. Both commit with the write or not at all, replicate with
//!   it, and so survive a failover.
//! - A key that is already stored (the insert hits the primary key) is read back with a
//!   locking read (the latest committed version): the same request hash → the stored
//!   status and body with `Idempotent-Replayed: true`, nothing written; another hash →
//!   422. Two requests with one key at once serialize on the key's row: the second waits
//!   for the first's commit and replays it (or, if the first rolled back, writes).
//! - Only written answers are stored: a request refused with a 4xx wrote nothing and gets
//!   the same 4xx again.
//! - Keys are kept at least [`RETENTION`]: every [`PRUNE_EVERY`] each web server deletes
//!   at most [`PRUNE_BATCH`] older ones on the leader ([`run_pruning`]).
//!
//! The SQL lives here (the table is migration 3 in `schema.rs`); `app.rs` decides when.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use sqlx::mysql::MySqlConnection;

use crate::db::{error_number, Db, DbError, GtidSet};
use crate::metrics::Metrics;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The response header of a replayed answer (value `true`).
pub const REPLAYED: &str = "idempotent-replayed";
/// How long a key is kept at least.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// How often each web server prunes.
pub const PRUNE_EVERY: Duration = Duration::from_secs(300);
/// At most this many keys are deleted per prune.
pub const PRUNE_BATCH: u32 = 1000;

/// Why an `Idempotency-Key` header was refused (400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("sent more than once; send one key")]
    Repeated,
    #[error("expected 1-64 visible ASCII characters, such as a UUID")]
    Invalid,
}

/// A request's key with the hash of the request it came with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idem {
    pub key: String,
    pub hash: [u8; 32],
}

/// The `Idempotency-Key` of a request, if it sent one.
pub fn parse_key(headers: &HeaderMap) -> Result<Option<String>, KeyError> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(KeyError::Repeated);
    }
    let b = v.as_bytes();
    if b.is_empty() || b.len() > 64 || !b.iter().all(u8::is_ascii_graphic) {
        return Err(KeyError::Invalid);
    }
    // All visible ASCII, so valid UTF-8.
    Ok(Some(String::from_utf8_lossy(b).into_owned()))
}

/// SHA-256 over the method, the path and the body, each length-prefixed so no two
/// requests hash alike by moving bytes between them.
pub fn request_hash(method: &str, path: &str, body: &[u8]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in [method.as_bytes(), path.as_bytes(), body] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// A stored answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub status: u16,
    pub body: Vec<u8>,
}

/// What claiming a key in a write's transaction found.
#[derive(Debug)]
pub enum Claim {
    /// The key is new and now held by this transaction: write, then [`record`].
    New,
    /// The same request was answered before.
    Replay(Stored),
    /// The key was used with another request.
    Mismatch,
}

/// `ER_DUP_ENTRY`.
const ER_DUP_ENTRY: u16 = 1062;

/// Claims `idem` inside the write's transaction (see the module doc).
pub async fn claim(conn: &mut MySqlConnection, idem: &Idem) -> Result<Claim, DbError> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (idem_key, request_hash, status, body, created_at) \
         VALUES (?, ?, 0, '', UTC_TIMESTAMP(6))",
    )
    .bind(&idem.key)
    .bind(&idem.hash[..])
    .execute(&mut *conn)
    .await;
    match inserted {
        Ok(_) => return Ok(Claim::New),
        Err(e) if error_number(&e) == Some(ER_DUP_ENTRY) => {}
        Err(e) => return Err(e.into()),
    }
    // A locking read sees the latest committed row, whatever this transaction's snapshot.
    let row: Option<(Vec<u8>, u16, Vec<u8>)> = sqlx::query_as(
        "SELECT request_hash, status, body FROM idempotency_keys WHERE idem_key = ? \
         LOCK IN SHARE MODE",
    )
    .bind(&idem.key)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some((hash, status, body)) if hash == idem.hash => Claim::Replay(Stored { status, body }),
        Some(_) => Claim::Mismatch,
        // Pruned between the insert and the read: rare enough to ask for a retry.
        None => {
            return Err(DbError::Unavailable(
                "idempotency key pruned while being claimed".into(),
            ))
        }
    })
}

/// Stores the answer of the write that claimed `idem`, in the same transaction.
pub async fn record(
    conn: &mut MySqlConnection,
    idem: &Idem,
    status: u16,
    body: &[u8],
) -> Result<(), DbError> {
    sqlx::query("UPDATE idempotency_keys SET status = ?, body = ? WHERE idem_key = ?")
        .bind(status)
        .bind(body)
        .bind(&idem.key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The leader's position, for a replayed answer's read-your-writes GTID: it covers the
/// original write, which committed on this server or replicated to it (`log_slave_updates`).
pub async fn position(conn: &mut MySqlConnection) -> Result<Option<GtidSet>, DbError> {
    let pos: Option<String> = sqlx::query_scalar("SELECT CAST(@@gtid_binlog_pos AS CHAR)")
        .fetch_one(&mut *conn)
        .await?;
    Ok(pos
        .as_deref()
        .and_then(GtidSet::parse)
        .filter(|g| !g.is_empty()))
}

/// Deletes at most [`PRUNE_BATCH`] keys older than [`RETENTION`] on the leader; returns
/// how many. Ordered by the index, so the statement is deterministic.
pub async fn prune(db: &Db) -> Result<u64, DbError> {
    let (deleted, _) = db
        .write_quiet(|conn: &mut MySqlConnection| {
            Box::pin(async move {
                let r = sqlx::query(
                    "DELETE FROM idempotency_keys \
                     WHERE created_at < UTC_TIMESTAMP(6) - INTERVAL ? SECOND \
                     ORDER BY created_at, idem_key LIMIT ?",
                )
                .bind(RETENTION.as_secs())
                .bind(PRUNE_BATCH)
                .execute(&mut *conn)
                .await?;
                Ok(r.rows_affected())
            })
        })
        .await?;
    Ok(deleted)
}

/// Prunes every [`PRUNE_EVERY`] until `stop` changes. Failures (no leader, a replica
/// serving as one) wait for the next round; they are logged at debug only.
pub async fn run_pruning(
    db: Arc<Db>,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + PRUNE_EVERY, PRUNE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => match prune(&db).await {
                Ok(0) => {}
                Ok(n) => {
                    metrics.idempotency_keys_pruned.inc_by(n);
                    tracing::info!(deleted = n, "idempotency keys pruned");
                }
                Err(error) => tracing::debug!(%error, "idempotency key pruning skipped"),
            },
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys() {
        let check = |values: &[&[u8]], expected: Result<Option<&str>, KeyError>| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(HEADER, http::HeaderValue::from_bytes(v).unwrap());
            }
            assert_eq!(
                parse_key(&h),
                expected.map(|k| k.map(str::to_owned)),
                "{values:?}"
            );
        };
        check(&[], Ok(None));
        check(&[b"a"], Ok(Some("a")));
        check(
            &[b"0f8fad5b-d9cb-469f-a165-70867728950e"],
            Ok(Some("0f8fad5b-d9cb-469f-a165-70867728950e")),
        );
        check(&[&[b'k'; 64]], Ok(Some(&"k".repeat(64))));
        check(&[b"!~"], Ok(Some("!~")));
        check(&[&[b'k'; 65]], Err(KeyError::Invalid));
        check(&[b""], Err(KeyError::Invalid));
        check(&[b"two words"], Err(KeyError::Invalid));
        check(&[b"tab\there"], Err(KeyError::Invalid));
        check(&[b"caf\xc3\xa9"], Err(KeyError::Invalid));
        check(&[b"a", b"a"], Err(KeyError::Repeated));
    }

    #[test]
    fn request_hashes_separate_method_path_and_body() {
        let h = request_hash("POST", "/api/users", b"{}");
        assert_eq!(h, request_hash("POST", "/api/users", b"{}"));
        assert_ne!(h, request_hash("POST", "/api/messages", b"{}"));
        assert_ne!(h, request_hash("PUT", "/api/users", b"{}"));
        assert_ne!(h, request_hash("POST", "/api/users", b"{ }"));
        // Bytes moved from the path into the body are another request.
        assert_ne!(
            request_hash("POST", "/a", b"b"),
            request_hash("POST", "/", b"ab")
        );
    }
}

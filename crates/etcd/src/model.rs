//! What etcd holds and what is asked of it, as plain Rust types: keys and values ([`Kv`],
//! [`Range`]), leases ([`Lease`]), transactions ([`Txn`] built from [`Compare`]s and
//! [`Op`]s, answered by a [`TxnResponse`]) and watch events ([`WatchEvent`]). No I/O and
//! no JSON here (the gateway's encoding is `wire.rs`).

use std::time::Duration;

/// One key and its value with etcd's bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    /// The revision that created the key (since its last deletion): a key's "epoch".
    pub create_revision: i64,
    /// The revision of its last change.
    pub mod_revision: i64,
    /// How often it was written since it was created (1 after the first put).
    pub version: i64,
    /// The lease it is attached to, 0 for none.
    pub lease: i64,
}

/// The answer to a read: the keys found (none when absent) and the store's revision the
/// read saw, from which a watch can continue without missing anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Range {
    pub kvs: Vec<Kv>,
    pub revision: i64,
}

/// A granted lease: its ID and the TTL etcd gave it (at least etcd's minimum, 2 s with
/// the default election timeout, whatever was asked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    pub ttl: Duration,
}

/// A condition of a [`Txn`]: a field of one key compared for equality. A key that does
/// not exist has create revision, mod revision, version and lease 0, which is how
/// "absent" is tested (`CreateRevision(key, 0)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    CreateRevision(String, i64),
    ModRevision(String, i64),
    Value(String, Vec<u8>),
    Version(String, i64),
    /// The key is attached to this lease (0: to none).
    Lease(String, i64),
    /// The inner condition does not hold (etcd's `NOT_EQUAL`).
    Not(Box<Compare>),
}

/// The opposite condition: `!Compare::Lease(key, id)` is `Compare::Not(..)`.
impl std::ops::Not for Compare {
    type Output = Compare;
    fn not(self) -> Compare {
        Compare::Not(Box::new(self))
    }
}

/// One operation of a [`Txn`] branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<i64>,
    },
    Delete(String),
    /// Read the key; its kvs come back in [`TxnResponse::ranges`].
    Get(String),
}

impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>, lease: Option<i64>) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease,
        }
    }

    pub fn delete(key: impl Into<String>) -> Op {
        Op::Delete(key.into())
    }

    pub fn get(key: impl Into<String>) -> Op {
        Op::Get(key.into())
    }
}

/// An atomic transaction: if every comparison holds, the `then` operations run, otherwise
/// the `or_else` ones, all at one revision.
///
/// ```
/// use rampart_etcd::{Compare, Op, Txn};
/// // Create the key only if it is absent; either way, read it.
/// let txn = Txn::new()
///     .when(Compare::CreateRevision("/rampart/primary".into(), 0))
///     .then(Op::put("/rampart/primary", "db1", Some(7)))
///     .or_else(Op::get("/rampart/primary"));
/// assert_eq!(txn.success().len(), 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    compare: Vec<Compare>,
    success: Vec<Op>,
    failure: Vec<Op>,
}

impl Txn {
    pub fn new() -> Txn {
        Txn::default()
    }

    /// Adds a condition (all must hold).
    pub fn when(mut self, compare: Compare) -> Txn {
        self.compare.push(compare);
        self
    }

    /// Adds an operation to run when the conditions hold.
    pub fn then(mut self, op: Op) -> Txn {
        self.success.push(op);
        self
    }

    /// Adds an operation to run when they do not.
    pub fn or_else(mut self, op: Op) -> Txn {
        self.failure.push(op);
        self
    }

    pub fn compares(&self) -> &[Compare] {
        &self.compare
    }

    pub fn success(&self) -> &[Op] {
        &self.success
    }

    pub fn failure(&self) -> &[Op] {
        &self.failure
    }

    /// The operations of the branch that ran.
    pub fn branch(&self, succeeded: bool) -> &[Op] {
        if succeeded {
            &self.success
        } else {
            &self.failure
        }
    }
}

/// The answer to a [`Txn`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether the conditions held (the `then` branch ran).
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: i64,
    /// The kvs of each [`Op::Get`] of the branch that ran, in order (empty when the key
    /// is absent).
    pub ranges: Vec<Vec<Kv>>,
}

/// What a watch sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    Put(Kv),
    /// The key was deleted (or its lease ended) at `mod_revision`.
    Delete {
        key: String,
        mod_revision: i64,
    },
    /// Nothing happened to the watched keys up to `revision` (etcd's progress
    /// notification): a watch resumed later can start at `revision + 1`.
    Progress {
        revision: i64,
    },
    /// etcd ended the watch; `compact_revision` is set (non-zero) when the start
    /// revision was compacted away: read the keys again and watch from the read's
    /// revision + 1. The watch gives nothing after this.
    Canceled {
        compact_revision: i64,
    },
}

//! MariaDB instances: data directories, server flags, users, GTID replication, semi-sync.
//!
//! One [`Instance`] is one `mariadbd` process with its own directory. The primary takes every
//! write; the replica follows it over GTID replication (`MASTER_USE_GTID=slave_pos`), is
//! `read_only`, and acknowledges transactions semi-synchronously (`AFTER_SYNC`), so a commit
//! the application saw succeed is on the replica's relay log too, unless the primary fell back
//! to asynchronous replication after [`SEMI_SYNC_TIMEOUT_MS`] without an acknowledgement.
//!
//! Choices an operator should know:
//! - Root exists only as `unix_socket` accounts (the OS user running mariadbd), reachable only
//!   over the local socket. Everything rampart does as root goes through the `mariadb` client
//!   with SQL on stdin, so secrets never appear in argv, `/proc` or logs; passwords reach the
//!   server only as `mysql_native_password` hashes (`IDENTIFIED BY PASSWORD`), so the binlog
//!   and relay logs hold hashes, never plaintext. The one plaintext copy inside the data
//!   directory is the replica's `master.info` (MariaDB has no other way to keep the
//!   replication password); the instance directory is created 0700 for that reason.
//! - Users and grants are created on the primary only and reach the replica through the
//!   binlog: both data directories come from `mariadb-install-db` without a binlog, so the
//!   replica, starting from an empty GTID position, replays exactly rampart's bootstrap.
//!   Nothing is ever written on the replica (root ignores `read_only`), which keeps
//!   `gtid_strict_mode` happy and the replica promotable.
//! - With [`Instance::tls`], every TCP connection must use TLS (`--require-secure-transport`,
//!   and `REQUIRE SSL` on every account but the socket's), the web servers and the
//!   replicas verify the server's certificate against the run's CA and the address they
//!   connect to (`MASTER_SSL_VERIFY_SERVER_CERT`), and root's unix socket stays local.
//! - Grants are by IP (`--skip-name-resolve`). On loopback (`rampart up --local`) the kernel
//!   picks source address 127.0.0.1 for any 127/8 destination, and MariaDB's `CHANGE MASTER`
//!   has no `MASTER_BIND`, so local-mode grants must name 127.0.0.1 for the app, the replica
//!   and the monitor.
//! - Bootstrap is additive: it creates missing users, resets their passwords to the current
//!   secrets and grants the listed privileges; it does not revoke privileges or drop users for
//!   hosts no longer listed.
//! - The binlog is kept for [`BINLOG_EXPIRE_SECONDS`] (7 days): a replica down longer than
//!   that cannot catch up and must be rebuilt ([`rebuild_from`], `rampart db rebuild`).
//!
//! One file per room, each depending only on the ones before it: `client.rs` (the `mariadb`
//! client as transport), `instance.rs` (one server: directory, flags, start and stop),
//! `secrets.rs` (the password files), `users.rs` (accounts and grants, the bootstrap),
//! `replication.rs` (replica setup and status, semi-sync, a whole pair) and `rebuild.rs`
//! (a new data directory copied from another server with `mariadb-backup`). This file only
//! re-exports them.

mod client;
mod instance;
mod rebuild;
mod replication;
mod secrets;
mod users;

pub use client::{os_user, CLIENT_PACKAGE};
pub use instance::{
    check_installed, Instance, Role, BINLOG_EXPIRE_SECONDS, MAX_SOCKET_PATH, SEMI_SYNC_TIMEOUT_MS,
    SERVER_PACKAGE, START_TIMEOUT,
};
pub use rebuild::{adopt, rebuild_from, Rebuilt, BACKUP_PACKAGE};
pub use replication::{
    bring_up_pair, enable_semi_sync, gtid_binlog_pos, replica_status, semi_sync_status,
    setup_replica, wait_replica_connected, ReplicaStatus, SemiSyncStatus,
};
pub use secrets::Secrets;
pub use users::{
    apply_grants, bootstrap_fresh, bootstrap_primary, Grants, APP_USER, DATABASE, MIGRATE_USER,
    MONITOR_USER, REPL_USER,
};

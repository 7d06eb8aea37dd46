//! The database's users and grants: who may connect from where with which privileges, and
//! the idempotent bootstrap that creates them on the primary (the replica gets them through
//! the binlog).

use super::client::sql_string;
use super::instance::{Instance, Role};
use super::secrets::{valid_password, Secrets};
use crate::process::InfraError;

pub use rampart_topology::plan::{
    DbUser, APP_USER, DATABASE, MIGRATE_USER, MONITOR_USER, REPL_USER,
};

/// Where each user may connect from: the host part of `'user'@'host'`, as IP literals
/// (`127.0.0.1`, `198.18.2.11`) because the servers run with `--skip-name-resolve`.
/// MariaDB's `%` and `_` patterns are accepted but discouraged. [`Grants::users`] gives
/// the accounts with their privileges, which only `rampart_topology::plan` defines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// The web servers: get [`APP_USER`] and [`MIGRATE_USER`].
    pub app_hosts: Vec<String>,
    /// Where the replica connects from: gets [`REPL_USER`].
    pub replica_hosts: Vec<String>,
    /// The monitoring agents: get [`MONITOR_USER`] (also always from `localhost`).
    pub monitor_hosts: Vec<String>,
    /// The keepers: get `rampart_keeper`.
    pub keeper_hosts: Vec<String>,
    /// The backup host: gets `rampart_backup`.
    pub backup_hosts: Vec<String>,
}

impl Grants {
    /// The accounts these hosts get.
    pub fn users(&self) -> Vec<DbUser> {
        rampart_topology::plan::db_users_from(
            self.app_hosts.clone(),
            self.replica_hosts.clone(),
            self.monitor_hosts.clone(),
            self.keeper_hosts.clone(),
            self.backup_hosts.clone(),
            false,
        )
    }
}

fn check_host(host: &str) -> Result<(), InfraError> {
    let ok = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".:-_%/".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(InfraError::Invalid(format!(
            "database grant host {host:?}: use an ip address such as 198.18.2.11"
        )))
    }
}

fn account(user: &str, host: &str) -> String {
    format!("{}@{}", sql_string(user), sql_string(host))
}

/// Creates the application database and `users` on the primary. Idempotent: run it after
/// every start (it also applies changed secrets and newly listed hosts).
///
/// Creates database [`DATABASE`] (utf8mb4) and each user from each of its hosts with its
/// grants, and drops anonymous accounts. Passwords come from `secrets` by the user's
/// secret file and are sent as `mysql_native_password` hashes computed by the server, so
/// the binlog never holds them in plaintext. Everything is binlogged and so replayed by
/// the replica. Refuses to run on a replica or a read-only server (root would bypass
/// `read_only` and fork the GTID history).
pub fn bootstrap_primary(
    primary: &Instance,
    secrets: &Secrets,
    users: &[DbUser],
) -> Result<(), InfraError> {
    if primary.role != Role::Primary {
        return Err(InfraError::Invalid(format!(
            "{}: bootstrap runs on the primary only",
            primary.name
        )));
    }
    for host in users.iter().flat_map(|u| &u.hosts) {
        check_host(host)?;
    }
    if secrets.all().iter().any(|s| !valid_password(s)) {
        return Err(InfraError::Invalid(
            "database passwords must be 16 to 128 ascii letters and digits".to_owned(),
        ));
    }
    let passwords = users
        .iter()
        .map(|u| {
            secrets.by_file(u.secret).ok_or_else(|| {
                InfraError::Invalid(format!("database user {}: no secret {}", u.name, u.secret))
            })
        })
        .collect::<Result<Vec<&str>, _>>()?;
    if primary.sql("SELECT @@GLOBAL.read_only")?.trim() != "0" {
        return Err(InfraError::Invalid(format!(
            "{}: server is read-only; bootstrap runs on the primary only",
            primary.name
        )));
    }
    apply_users(primary, secrets, users, &passwords)
}

/// Brings the accounts of a running cluster to a new topology, on its writable leader
/// (binlogged, so every replica gets the same accounts): creates `users` from their
/// hosts (additive, as [`bootstrap_primary`]), and drops the accounts of `gone`, the
/// (user, host) pairs a removed host had, so no address keeps a grant it no longer
/// needs.
pub fn apply_grants(
    leader: &Instance,
    secrets: &Secrets,
    users: &[DbUser],
    gone: &[(String, String)],
) -> Result<(), InfraError> {
    for host in users
        .iter()
        .flat_map(|u| &u.hosts)
        .chain(gone.iter().map(|g| &g.1))
    {
        check_host(host)?;
    }
    let passwords = users
        .iter()
        .map(|u| {
            secrets.by_file(u.secret).ok_or_else(|| {
                InfraError::Invalid(format!("database user {}: no secret {}", u.name, u.secret))
            })
        })
        .collect::<Result<Vec<&str>, _>>()?;
    if leader.sql("SELECT @@GLOBAL.read_only")?.trim() != "0" {
        return Err(InfraError::Invalid(format!(
            "{}: server is read-only; accounts change on the writable leader only",
            leader.name
        )));
    }
    if !users.is_empty() {
        apply_users(leader, secrets, users, &passwords)?;
    }
    let drops: String = gone
        .iter()
        .map(|(user, host)| format!("DROP USER IF EXISTS {};\n", account(user, host)))
        .collect();
    if !drops.is_empty() {
        leader.sql(&drops)?;
    }
    Ok(())
}

/// Creates the database and the users on a server whose data directory is new, before
/// it joins replication: a temporary server without networking and without a binlog
/// (so these statements belong to no GTID history, and every server of a keeper-run
/// cluster gets the same accounts without replicating passwords), stopped afterwards.
pub fn bootstrap_fresh(
    inst: &Instance,
    secrets: &Secrets,
    users: &[DbUser],
) -> Result<(), InfraError> {
    for host in users.iter().flat_map(|u| &u.hosts) {
        check_host(host)?;
    }
    let passwords = users
        .iter()
        .map(|u| {
            secrets.by_file(u.secret).ok_or_else(|| {
                InfraError::Invalid(format!("database user {}: no secret {}", u.name, u.secret))
            })
        })
        .collect::<Result<Vec<&str>, _>>()?;
    let mut child = inst.start_with(&["--skip-networking", "--skip-log-bin", "--read-only=OFF"])?;
    let applied = apply_users(inst, secrets, users, &passwords);
    let stopped = inst.stop(std::time::Duration::from_secs(60));
    let _ = child.wait();
    applied?;
    stopped.map(|_| ())
}

fn apply_users(
    primary: &Instance,
    secrets: &Secrets,
    users: &[DbUser],
    passwords: &[&str],
) -> Result<(), InfraError> {
    let redact = secrets.all();
    let hashes_sql = format!(
        "SELECT {};",
        passwords
            .iter()
            .map(|s| format!("PASSWORD({})", sql_string(s)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let hashes_out = primary.sql_secret(&hashes_sql, &redact)?;
    let hashes: Vec<&str> = hashes_out.trim_end().split('\t').collect();
    let hash_ok = |h: &&str| {
        h.len() == 41 && h.starts_with('*') && h[1..].bytes().all(|b| b.is_ascii_hexdigit())
    };
    if hashes.len() != users.len() || !hashes.iter().all(hash_ok) {
        return Err(InfraError::Invalid(format!(
            "{}: unexpected password hash output",
            primary.name
        )));
    }
    let anonymous = primary.sql("SELECT Host FROM mysql.global_priv WHERE User = ''")?;

    let mut sql = format!(
        "CREATE DATABASE IF NOT EXISTS `{DATABASE}` \
         CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n"
    );
    for host in anonymous.lines().filter(|h| !h.is_empty()) {
        sql.push_str(&format!("DROP USER IF EXISTS {};\n", account("", host)));
    }
    for (user, hash) in users.iter().zip(&hashes) {
        sql.push_str(&user_sql(user, hash));
    }
    let mut redact_all: Vec<&str> = redact.to_vec();
    redact_all.extend_from_slice(&hashes);
    primary.sql_secret(&sql, &redact_all)?;
    Ok(())
}

/// The statements that create `user` from each of its hosts with password hash `hash`,
/// reset its password and limits, and grant its privileges.
fn user_sql(user: &DbUser, hash: &str) -> String {
    let limits = user
        .max_connections
        .map_or(String::new(), |n| format!(" WITH MAX_USER_CONNECTIONS {n}"));
    let mut sql = String::new();
    for host in &user.hosts {
        let acct = account(user.name, host);
        // The socket (`localhost`) is local and cannot use TLS.
        let require = if user.require_tls && host != "localhost" {
            " REQUIRE SSL"
        } else {
            " REQUIRE NONE"
        };
        let ident = format!(
            "IDENTIFIED BY PASSWORD {}{require}{limits}",
            sql_string(hash)
        );
        sql.push_str(&format!("CREATE USER IF NOT EXISTS {acct} {ident};\n"));
        sql.push_str(&format!("ALTER USER {acct} {ident};\n"));
        for grant in &user.grants {
            sql.push_str(&format!("GRANT {grant} TO {acct};\n"));
        }
    }
    sql
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn hosts_are_checked() {
        for ok in [
            "127.0.0.1",
            "198.18.2.11",
            "::1",
            "fd00::1",
            "10.0.0.%",
            "localhost",
        ] {
            assert!(check_host(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a'b", "x y", "a\\b", "h;DROP"] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn accounts() {
        assert_eq!(account("foobar_app", "10.0.0.1"), "'foobar_app'@'10.0.0.1'");
        assert_eq!(account("a'b", "h"), "'a''b'@'h'");
    }
}

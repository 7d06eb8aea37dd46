//! Replication between a primary and its replica: pointing the replica at the primary
//! (GTID), its status, semi-sync on the primary, and bringing up a whole pair.

use std::collections::HashMap;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

use super::client::sql_string;
use super::instance::{Instance, Role};
use super::secrets::{valid_password, Secrets};
use super::users::{bootstrap_primary, Grants, REPL_USER};
use crate::process::{wait_until, InfraError};

/// A replica's replication state, from `SHOW SLAVE STATUS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// `Master_Host`.
    pub master_host: String,
    /// `Master_Port`.
    pub master_port: u16,
    /// `Master_User`.
    pub master_user: String,
    /// `Using_Gtid`: `Slave_Pos` when configured by [`setup_replica`].
    pub using_gtid: String,
    /// `Slave_IO_Running` as reported: `Yes`, `No`, `Connecting` or `Preparing`.
    pub io_state: String,
    /// `Slave_IO_Running` is `Yes`: connected to the primary.
    pub io_running: bool,
    /// `Slave_SQL_Running` is `Yes`: applying events.
    pub sql_running: bool,
    /// `Seconds_Behind_Master`, `None` when unknown (a thread not running).
    pub seconds_behind: Option<u64>,
    /// `@@gtid_slave_pos`: the last GTID applied from each domain.
    pub gtid_slave_pos: String,
    /// `Last_IO_Errno` (0 if none).
    pub last_io_errno: u32,
    /// `Last_IO_Error`.
    pub last_io_error: String,
    /// `Last_SQL_Errno` (0 if none).
    pub last_sql_errno: u32,
    /// `Last_SQL_Error`.
    pub last_sql_error: String,
    /// `Master_SSL_Allowed` and `Master_SSL_Verify_Server_Cert` are both `Yes`:
    /// replication runs over TLS that verifies the primary.
    pub verified_tls: bool,
}

/// The replica's status, or `None` if it is not configured as a replica.
pub fn replica_status(replica: &Instance) -> Result<Option<ReplicaStatus>, InfraError> {
    let rows = replica.query("SHOW SLAVE STATUS")?;
    let Some(row) = rows.into_iter().next() else {
        return Ok(None);
    };
    let get = |key: &str| row.get(key).cloned().unwrap_or_default();
    fn number<T: std::str::FromStr>(row: &HashMap<String, String>, key: &str) -> Option<T> {
        row.get(key)?.parse().ok()
    }
    let gtid_slave_pos = replica
        .sql("SELECT @@GLOBAL.gtid_slave_pos")?
        .trim()
        .to_owned();
    Ok(Some(ReplicaStatus {
        master_host: get("Master_Host"),
        master_port: number(&row, "Master_Port").unwrap_or(0),
        master_user: get("Master_User"),
        using_gtid: get("Using_Gtid"),
        io_running: get("Slave_IO_Running") == "Yes",
        io_state: get("Slave_IO_Running"),
        sql_running: get("Slave_SQL_Running") == "Yes",
        seconds_behind: number(&row, "Seconds_Behind_Master"),
        gtid_slave_pos,
        last_io_errno: number(&row, "Last_IO_Errno").unwrap_or(0),
        last_io_error: get("Last_IO_Error"),
        last_sql_errno: number(&row, "Last_SQL_Errno").unwrap_or(0),
        last_sql_error: get("Last_SQL_Error"),
        verified_tls: get("Master_SSL_Allowed") == "Yes"
            && get("Master_SSL_Verify_Server_Cert") == "Yes",
    }))
}

/// The instance's `@@gtid_binlog_pos`: the last GTID in its binlog per domain, e.g. `0-1-42`
/// (domain-server_id-sequence).
pub fn gtid_binlog_pos(instance: &Instance) -> Result<String, InfraError> {
    Ok(instance
        .sql("SELECT @@GLOBAL.gtid_binlog_pos")?
        .trim()
        .to_owned())
}

/// MySQL error "access denied": a replica configured with an old password is reconfigured.
const ER_ACCESS_DENIED: u32 = 1045;

/// Points the replica at the primary and starts replication. Idempotent: a replica already
/// configured for this primary is only started if a thread is stopped (the password is
/// re-sent only when the primary refused it, error 1045, so rotating `repl` works).
///
/// Makes sure `rpl_semi_sync_slave_enabled` is on before the IO thread connects (restarting
/// the IO thread if it had to turn it on). The replica starts from `slave_pos`, which is
/// empty on a fresh replica, so it replays the primary's whole binlog.
pub fn setup_replica(
    replica: &Instance,
    primary: &Instance,
    secrets: &Secrets,
) -> Result<(), InfraError> {
    if replica.role != Role::Replica {
        return Err(InfraError::Invalid(format!(
            "{}: setup_replica needs an instance with the replica role",
            replica.name
        )));
    }
    if !valid_password(&secrets.repl) {
        return Err(InfraError::Invalid(
            "the replication password must be ascii letters and digits".to_owned(),
        ));
    }
    let mut restart_io = false;
    if replica
        .sql("SELECT @@GLOBAL.rpl_semi_sync_slave_enabled")?
        .trim()
        != "1"
    {
        replica.sql("SET GLOBAL rpl_semi_sync_slave_enabled = ON")?;
        restart_io = true;
    }
    let host = primary.bind.to_string();
    let status = replica_status(replica)?;
    let configured = status.as_ref().filter(|s| {
        s.master_host == host
            && s.master_port == primary.port
            && s.master_user == REPL_USER
            && s.using_gtid.eq_ignore_ascii_case("Slave_Pos")
            && s.last_io_errno != ER_ACCESS_DENIED
            && s.verified_tls == replica.tls.is_some()
    });
    match configured {
        Some(s) => {
            if s.io_state == "No" || !s.sql_running {
                replica.sql("START SLAVE")?;
            } else if restart_io {
                replica.sql("STOP SLAVE IO_THREAD; START SLAVE IO_THREAD")?;
            }
        }
        None => {
            let stop = if status.is_some() {
                "STOP SLAVE;\n"
            } else {
                ""
            };
            // With TLS the replica verifies the primary's certificate against the CA
            // and the address it connects to; without, the flags are reset.
            let tls = match &replica.tls {
                Some(tls) => format!(
                    "MASTER_SSL=1, MASTER_SSL_CA={}, MASTER_SSL_VERIFY_SERVER_CERT=1",
                    sql_string(&tls.ca.display().to_string())
                ),
                None => "MASTER_SSL=0, MASTER_SSL_VERIFY_SERVER_CERT=0".to_owned(),
            };
            let sql = format!(
                "{stop}CHANGE MASTER TO MASTER_HOST={}, MASTER_PORT={}, MASTER_USER={}, \
                 MASTER_PASSWORD={}, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, \
                 MASTER_HEARTBEAT_PERIOD=1, {tls};\nSTART SLAVE;\n",
                sql_string(&host),
                primary.port,
                sql_string(REPL_USER),
                sql_string(&secrets.repl),
            );
            replica.sql_secret(&sql, &[&secrets.repl])?;
        }
    }
    Ok(())
}

/// Waits until both replication threads run (`Slave_IO_Running` and `Slave_SQL_Running` are
/// `Yes`). Fails at once if the SQL thread stopped with an error (it does not retry by
/// itself), else after `deadline` with the last IO and SQL errors.
pub fn wait_replica_connected(
    replica: &Instance,
    deadline: Duration,
) -> Result<ReplicaStatus, InfraError> {
    let mut last: Option<ReplicaStatus> = None;
    let mut last_err: Option<InfraError> = None;
    let what = format!("{} replication to run", replica.name);
    let outcome = wait_until(&what, deadline, || match replica_status(replica) {
        Ok(Some(s)) if s.io_running && s.sql_running => Some(Ok(s)),
        Ok(Some(s)) if !s.sql_running && s.last_sql_errno != 0 => Some(Err(s)),
        Ok(s) => {
            last = s;
            None
        }
        Err(e) => {
            last_err = Some(e);
            None
        }
    });
    let describe = |s: &ReplicaStatus| {
        format!(
            "replication from {}:{} not running: io thread {} ({}: {}), sql thread {} ({}: {})",
            s.master_host,
            s.master_port,
            s.io_state,
            s.last_io_errno,
            s.last_io_error,
            if s.sql_running { "Yes" } else { "No" },
            s.last_sql_errno,
            s.last_sql_error
        )
    };
    match outcome {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(status)) => Err(InfraError::Replication {
            name: replica.name.clone(),
            detail: describe(&status),
        }),
        Err(timeout) => Err(match (last, last_err) {
            (Some(s), _) => InfraError::Replication {
                name: replica.name.clone(),
                detail: format!("{} after {deadline:?}", describe(&s)),
            },
            (None, Some(e)) => e,
            (None, None) => InfraError::Replication {
                name: replica.name.clone(),
                detail: format!("not configured as a replica ({timeout})"),
            },
        }),
    }
}

/// The primary's semi-sync state, from `SHOW GLOBAL STATUS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SemiSyncStatus {
    /// `Rpl_semi_sync_master_status` is `ON`: commits wait for an acknowledgement.
    pub active: bool,
    /// `Rpl_semi_sync_master_clients`: connected semi-sync replicas.
    pub clients: u32,
    /// `Rpl_semi_sync_master_yes_tx`: commits acknowledged by a replica.
    pub yes_tx: u64,
    /// `Rpl_semi_sync_master_no_tx`: commits that were not (timed out or semi-sync off).
    pub no_tx: u64,
}

/// The primary's semi-sync counters.
pub fn semi_sync_status(primary: &Instance) -> Result<SemiSyncStatus, InfraError> {
    let out = primary.sql("SHOW GLOBAL STATUS LIKE 'Rpl\\_semi\\_sync\\_master\\_%'")?;
    let mut status = SemiSyncStatus::default();
    for line in out.lines() {
        let Some((name, value)) = line.split_once('\t') else {
            continue;
        };
        match name {
            "Rpl_semi_sync_master_status" => status.active = value == "ON",
            "Rpl_semi_sync_master_clients" => status.clients = value.parse().unwrap_or(0),
            "Rpl_semi_sync_master_yes_tx" => status.yes_tx = value.parse().unwrap_or(0),
            "Rpl_semi_sync_master_no_tx" => status.no_tx = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    Ok(status)
}

/// Turns on semi-sync on the primary and waits until a semi-sync replica is connected and
/// semi-sync is active.
///
/// Call it only once the replica is connected ([`wait_replica_connected`]): with semi-sync on
/// and no replica, every commit waits out [`SEMI_SYNC_TIMEOUT_MS`](super::instance::SEMI_SYNC_TIMEOUT_MS) before the primary falls
/// back to asynchronous. It is a runtime setting, not a flag, for the same reason: a
/// restarted primary runs asynchronously until this is called again.
pub fn enable_semi_sync(primary: &Instance, deadline: Duration) -> Result<(), InfraError> {
    primary.sql("SET GLOBAL rpl_semi_sync_master_enabled = ON")?;
    let what = format!("{} semi-sync to be active with a replica", primary.name);
    wait_until(&what, deadline, || {
        semi_sync_status(primary)
            .ok()
            .filter(|s| s.active && s.clients >= 1)
    })?;
    Ok(())
}

/// Brings up a primary and its replica, ready for the application:
/// loads or creates the secrets in `secrets_dir`, starts the primary, bootstraps it, starts
/// the replica, points it at the primary, waits until replication runs and turns on
/// semi-sync. Idempotent over restarts (same directories, same secrets).
///
/// On error, an instance that was already started keeps running; stop it with
/// [`Instance::stop`].
pub fn bring_up_pair(
    primary: &Instance,
    replica: &Instance,
    secrets_dir: &Path,
    grants: &Grants,
) -> Result<(Child, Child, Secrets), InfraError> {
    let secrets = Secrets::load_or_create(secrets_dir)?;
    let primary_child = primary.start()?;
    bootstrap_primary(primary, &secrets, &grants.users())?;
    let replica_child = replica.start()?;
    setup_replica(replica, primary, &secrets)?;
    wait_replica_connected(replica, Duration::from_secs(30))?;
    enable_semi_sync(primary, Duration::from_secs(10))?;
    Ok((primary_child, replica_child, secrets))
}

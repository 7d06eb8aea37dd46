//! The database's accounts by name, and where each one's password is kept: shared by the
//! plan (users and grants) and the rendered configs (which name the password files).

/// The application's database.
pub const DATABASE: &str = "foobar";
/// The web servers' account for queries.
pub const APP_USER: &str = "foobar_app";
/// The web servers' account for schema migrations.
pub const MIGRATE_USER: &str = "foobar_migrate";
/// The replicas' replication account.
pub const REPL_USER: &str = "rampart_repl";
/// The agents' read-only monitoring account.
pub const MONITOR_USER: &str = "rampart_monitor";
/// The keepers' account: read-only switching, replication control, closing sessions.
pub const KEEPER_USER: &str = "rampart_keeper";
/// The backup host's account: the binlog archive (replication), and verify's checksums
/// of the application's tables.
pub const BACKUP_USER: &str = "rampart_backup";

/// The password file of a database user in the secrets directory.
pub fn secret_file(user: &str) -> &'static str {
    match user {
        APP_USER => "db-app.password",
        MIGRATE_USER => "db-migrate.password",
        REPL_USER => "db-repl.password",
        KEEPER_USER => "db-keeper.password",
        BACKUP_USER => "db-backup.password",
        _ => "db-monitor.password",
    }
}

//! Schema migrations, run on the primary when a web server starts. Idempotent and safe
//! to run from several web servers at once: a named lock (`GET_LOCK`, which needs no
//! privilege) serializes them, `schema_migrations` records what ran, and every statement
//! is itself re-runnable. New migrations are appended to [`MIGRATIONS`], never edited.
//! Only SQL lives here: `db.rs` connects, runs [`migrate`] and classifies its errors.

use sqlx::mysql::MySqlConnection;

/// Why the migrations did not run; `db.rs` classifies it for the caller.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("another web server holds the schema lock")]
    Locked,
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

/// (version, statement). Each statement is sent as a prepared statement.
pub const MIGRATIONS: &[(u32, &str)] = &[
    (
        1,
        "CREATE TABLE IF NOT EXISTS users (
            id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
            name VARCHAR(100) NOT NULL,
            email VARCHAR(254) NOT NULL,
            created_at DATETIME(6) NOT NULL,
            UNIQUE KEY users_email (email)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
    ),
    (
        2,
        "CREATE TABLE IF NOT EXISTS messages (
            id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
            user_id BIGINT UNSIGNED NOT NULL,
            body TEXT NOT NULL,
            created_at DATETIME(6) NOT NULL,
            KEY messages_user (user_id),
            CONSTRAINT messages_user_fk FOREIGN KEY (user_id) REFERENCES users (id)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
    ),
    // `Idempotency-Key`s and the answers they got (`idempotency.rs`), written in the
    // same transaction as the write they belong to. Keys compare byte for byte.
    (
        3,
        "CREATE TABLE IF NOT EXISTS idempotency_keys (
            idem_key VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
            request_hash BINARY(32) NOT NULL,
            status SMALLINT UNSIGNED NOT NULL,
            body MEDIUMBLOB NOT NULL,
            created_at DATETIME(6) NOT NULL,
            KEY idempotency_keys_created (created_at)
        ) ENGINE=InnoDB",
    ),
];

/// Applies every migration not yet recorded; returns how many ran.
pub async fn migrate(conn: &mut MySqlConnection) -> Result<usize, MigrateError> {
    let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK('rampart_schema', 30)")
        .fetch_one(&mut *conn)
        .await?;
    if locked != Some(1) {
        return Err(MigrateError::Locked);
    }
    let result = apply(conn).await;
    let _ = sqlx::query("SELECT RELEASE_LOCK('rampart_schema')")
        .execute(&mut *conn)
        .await;
    result
}

async fn apply(conn: &mut MySqlConnection) -> Result<usize, MigrateError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INT UNSIGNED NOT NULL PRIMARY KEY,
            applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
        ) ENGINE=InnoDB",
    )
    .execute(&mut *conn)
    .await?;
    let done: Vec<u32> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(&mut *conn)
        .await?;
    let mut applied = 0;
    for (version, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        sqlx::query(sql).execute(&mut *conn).await?;
        sqlx::query("INSERT IGNORE INTO schema_migrations (version) VALUES (?)")
            .bind(version)
            .execute(&mut *conn)
            .await?;
        tracing::info!(version, "schema migration applied");
        applied += 1;
    }
    Ok(applied)
}

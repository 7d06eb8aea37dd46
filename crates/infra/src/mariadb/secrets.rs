//! The database passwords: one file each in a private directory, created once with random
//! letters and digits and read back on every start.

use rampart_topology::plan::{
    secret_file, APP_USER, BACKUP_USER, KEEPER_USER, MIGRATE_USER, MONITOR_USER, REPL_USER,
};
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::process::{create_private_dir, InfraError};

/// The database passwords, one file each in a 0700 directory, files 0600.
///
/// 32 random alphanumeric characters (about 190 bits): safe inside SQL string literals,
/// URLs and environment variables without escaping. `Debug` shows no secret.
#[derive(Clone)]
pub struct Secrets {
    /// The application user's password (`db-app.password`).
    pub app: String,
    /// The migration user's password (`db-migrate.password`).
    pub migrate: String,
    /// The replication user's password (`db-repl.password`).
    pub repl: String,
    /// The monitoring user's password (`db-monitor.password`).
    pub monitor: String,
    /// The keepers' password (`db-keeper.password`).
    pub keeper: String,
    /// The backup host's password (`db-backup.password`).
    pub backup: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("app", &"<redacted>")
            .field("migrate", &"<redacted>")
            .field("repl", &"<redacted>")
            .field("monitor", &"<redacted>")
            .field("keeper", &"<redacted>")
            .field("backup", &"<redacted>")
            .finish()
    }
}

/// Length of generated passwords.
const PASSWORD_LEN: usize = 32;

impl Secrets {
    /// Reads the six password files in `dir`, creating any that is missing.
    ///
    /// `dir` is created 0700 (and tightened to 0700 if looser); existing files are tightened
    /// to 0600. A new file is written under a temporary name and linked into place, so a
    /// crash never leaves a truncated password and two concurrent callers agree on one value.
    /// A file that is not 16 to 128 ASCII letters and digits is an error (never overwritten).
    pub fn load_or_create(dir: &Path) -> Result<Secrets, InfraError> {
        create_private_dir(dir)?;
        Ok(Secrets {
            app: load_or_create_secret(&dir.join(secret_file(APP_USER)))?,
            migrate: load_or_create_secret(&dir.join(secret_file(MIGRATE_USER)))?,
            repl: load_or_create_secret(&dir.join(secret_file(REPL_USER)))?,
            monitor: load_or_create_secret(&dir.join(secret_file(MONITOR_USER)))?,
            keeper: load_or_create_secret(&dir.join(secret_file(KEEPER_USER)))?,
            backup: load_or_create_secret(&dir.join(secret_file(BACKUP_USER)))?,
        })
    }

    /// Reads the six password files in `dir` and changes nothing: on a deployed host
    /// they are systemd credentials, read-only, in a directory that is not the reader's.
    pub fn load(dir: &Path) -> Result<Secrets, InfraError> {
        let read = |user: &str| -> Result<String, InfraError> {
            let path = dir.join(secret_file(user));
            let text = fs::read_to_string(&path)
                .map_err(|e| InfraError::io("read password file", &path, e))?;
            password_in(&path, &text)
        };
        Ok(Secrets {
            app: read(APP_USER)?,
            migrate: read(MIGRATE_USER)?,
            repl: read(REPL_USER)?,
            monitor: read(MONITOR_USER)?,
            keeper: read(KEEPER_USER)?,
            backup: read(BACKUP_USER)?,
        })
    }

    /// The password kept in secret file `file` (`db-app.password`, ...).
    pub fn by_file(&self, file: &str) -> Option<&str> {
        [
            (APP_USER, &self.app),
            (MIGRATE_USER, &self.migrate),
            (REPL_USER, &self.repl),
            (MONITOR_USER, &self.monitor),
            (KEEPER_USER, &self.keeper),
            (BACKUP_USER, &self.backup),
        ]
        .into_iter()
        .find(|(user, _)| secret_file(user) == file)
        .map(|(_, password)| password.as_str())
    }

    pub(super) fn all(&self) -> [&str; 6] {
        [
            &self.app,
            &self.migrate,
            &self.repl,
            &self.monitor,
            &self.keeper,
            &self.backup,
        ]
    }
}

pub(super) fn valid_password(s: &str) -> bool {
    (16..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The password in a password file's text (one line), checked.
fn password_in(path: &Path, text: &str) -> Result<String, InfraError> {
    let password = text.trim_end_matches(['\n', '\r']);
    if !valid_password(password) {
        return Err(InfraError::Invalid(format!(
            "{}: a password must be 16 to 128 ascii letters and digits",
            path.display()
        )));
    }
    Ok(password.to_owned())
}

fn load_or_create_secret(path: &Path) -> Result<String, InfraError> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let meta = fs::metadata(path).map_err(|e| InfraError::io("inspect", path, e))?;
            if meta.mode() & 0o077 != 0 {
                fs::set_permissions(path, fs::Permissions::from_mode(0o600))
                    .map_err(|e| InfraError::io("set permissions of", path, e))?;
            }
            password_in(path, &text)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let password = random_password()?;
            match rampart_telemetry::fs::write_new(path, format!("{password}\n").as_bytes(), 0o600)
            {
                Ok(true) => Ok(password),
                // Someone else created it meanwhile: theirs wins.
                Ok(false) => load_or_create_secret(path),
                Err(e) => Err(InfraError::io("write password file", path, e)),
            }
        }
        Err(e) => Err(InfraError::io("read password file", path, e)),
    }
}

fn random_password() -> Result<String, InfraError> {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut password = String::with_capacity(PASSWORD_LEN);
    let mut buf = [0u8; 64];
    while password.len() < PASSWORD_LEN {
        getrandom::getrandom(&mut buf).map_err(|e| {
            InfraError::Invalid(format!("cannot read random bytes from the os: {e}"))
        })?;
        // Rejection sampling: 248 = 4 * 62, so every character is equally likely.
        for &b in buf.iter().filter(|&&b| b < 248) {
            if password.len() < PASSWORD_LEN {
                password.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn secrets_are_created_private_and_reloaded() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("secrets");
        let first = Secrets::load_or_create(&dir).unwrap();
        for s in first.all() {
            assert_eq!(s.len(), PASSWORD_LEN);
            assert!(valid_password(s), "{s}");
        }
        assert_ne!(first.app, first.repl);
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        for file in [
            "db-app.password",
            "db-migrate.password",
            "db-repl.password",
            "db-monitor.password",
            "db-keeper.password",
            "db-backup.password",
        ] {
            assert_eq!(
                fs::metadata(dir.join(file)).unwrap().mode() & 0o777,
                0o600,
                "{file}"
            );
        }
        let again = Secrets::load_or_create(&dir).unwrap();
        assert_eq!(again.all(), first.all());
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            6,
            "no temporary files left"
        );

        let debug = format!("{first:?}");
        assert!(!debug.contains(&first.app), "{debug}");
        assert!(debug.contains("<redacted>"));

        // Loose permissions are tightened; a malformed file is an error, never replaced.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(
            dir.join("db-app.password"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        Secrets::load_or_create(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        assert_eq!(
            fs::metadata(dir.join("db-app.password")).unwrap().mode() & 0o777,
            0o600
        );
        fs::write(dir.join("db-repl.password"), "short'\n").unwrap();
        let err = Secrets::load_or_create(&dir).unwrap_err().to_string();
        assert!(err.contains("db-repl.password"), "{err}");
        assert_eq!(
            fs::read_to_string(dir.join("db-repl.password")).unwrap(),
            "short'\n"
        );
    }
}

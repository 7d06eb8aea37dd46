//! The SQL client transport: every statement rampart sends as root goes through the
//! `mariadb` client over the server's unix socket, with the SQL on stdin. Also the parsing
//! of the client's batch output, the scrubbing of its errors and SQL string literals.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::process::{describe_status, find_program, wait_until, InfraError};

/// Debian package that provides the `mariadb` client.
pub const CLIENT_PACKAGE: &str = "mariadb-client-core";

/// The name of the OS user this process runs as (effective uid): from `/etc/passwd`, else
/// `$USER` (for users from other NSS sources). mariadbd gets `--user=<it>`, which it requires
/// when running as root and ignores otherwise; root's `unix_socket` account is created for it.
pub fn os_user() -> Result<String, InfraError> {
    static USER: OnceLock<Option<String>> = OnceLock::new();
    USER.get_or_init(|| {
        let uid = rustix::process::geteuid().as_raw();
        let from_passwd = fs::read_to_string("/etc/passwd").ok().and_then(|text| {
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let line_uid: u32 = fields.nth(1)?.parse().ok()?;
                (line_uid == uid && !name.is_empty()).then(|| name.to_owned())
            })
        });
        from_passwd
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .or_else(|| (uid == 0).then(|| "root".to_owned()))
    })
    .clone()
    .ok_or_else(|| {
        InfraError::Invalid(format!(
            "cannot find the user name of uid {} in /etc/passwd or $USER",
            rustix::process::geteuid().as_raw()
        ))
    })
}

/// The `mariadb` client's path, looked up once per process.
pub(super) fn client_program() -> Result<PathBuf, InfraError> {
    static CLIENT: OnceLock<Option<PathBuf>> = OnceLock::new();
    CLIENT
        .get_or_init(|| find_program("mariadb", CLIENT_PACKAGE).ok())
        .clone()
        .ok_or_else(|| InfraError::MissingBinary {
            program: "mariadb".to_owned(),
            package: CLIENT_PACKAGE,
        })
}

/// Runs `sql` (one or more `;`-separated statements) through the `mariadb` client as the OS
/// user, which root's `unix_socket` account admits, over `socket`, and returns its stdout
/// (tab-separated rows; with `column_names`, a header line first).
///
/// The SQL goes on stdin, so it never shows in argv or `/proc`; `MYSQL_*` variables that
/// would redirect the client are removed. The error names `name` (the instance) and carries
/// the server's error lines without the SQL text, and with each of `secrets` redacted.
pub(super) fn run_sql(
    name: &str,
    socket: &Path,
    sql: &str,
    column_names: bool,
    secrets: &[&str],
    timeout: Duration,
) -> Result<String, InfraError> {
    let mut command = Command::new(client_program()?);
    command
        .arg("--no-defaults")
        .arg("--protocol=SOCKET")
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--user={}", os_user()?))
        .arg("--batch")
        .arg("--connect-timeout=5");
    if !column_names {
        command.arg("--skip-column-names");
    }
    for var in [
        "MYSQL_PWD",
        "MYSQL_HOST",
        "MYSQL_TCP_PORT",
        "MYSQL_UNIX_PORT",
    ] {
        command.env_remove(var);
    }
    let failed = |status: String, detail: String| InfraError::Command {
        name: name.to_owned(),
        command: "sql",
        status,
        detail,
    };
    let out = run_with_input(command, sql.as_bytes(), timeout).map_err(|e| match e {
        RunError::Spawn(e) => failed("not started".to_owned(), e.to_string()),
        RunError::Timeout => failed(format!("timed out after {timeout:?}"), String::new()),
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(failed(
            describe_status(out.status),
            client_errors(&String::from_utf8_lossy(&out.stderr), secrets),
        ))
    }
}

/// The parts of the client's stderr that are safe to show: the client echoes each failing
/// statement between `--------------` lines and quotes SQL after "near" in syntax errors, so
/// both are dropped, and every secret is replaced by `<redacted>`.
fn client_errors(stderr: &str, secrets: &[&str]) -> String {
    let mut kept = Vec::new();
    let mut in_echo = false;
    for line in stderr.lines() {
        if line.trim() == "--------------" {
            in_echo = !in_echo;
            continue;
        }
        if in_echo || line.trim().is_empty() {
            continue;
        }
        let mut line = match line.find(" near '") {
            Some(at) => format!("{} near <sql omitted>", &line[..at]),
            None => line.to_owned(),
        };
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            line = line.replace(secret, "<redacted>");
        }
        kept.push(line);
    }
    let mut text = kept.join("; ");
    if text.len() > 2000 {
        let mut cut = 2000;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    if text.is_empty() {
        "no error output".to_owned()
    } else {
        text
    }
}

/// Parses `mariadb --batch` output with a header line into rows of column → value,
/// undoing the client's escapes (`\t`, `\n`, `\0`, `\\`).
pub(super) fn parse_batch(text: &str) -> Vec<HashMap<String, String>> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let names: Vec<String> = header.split('\t').map(unescape_batch).collect();
    lines
        .map(|line| {
            names
                .iter()
                .cloned()
                .zip(line.split('\t').map(unescape_batch))
                .collect()
        })
        .collect()
}

fn unescape_batch(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// A single-quoted SQL string literal (for the default `sql_mode`, where backslash escapes).
pub(super) fn sql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

enum RunError {
    Spawn(io::Error),
    Timeout,
}

struct RunOutput {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs `command` with `input` on stdin, collecting stdout and stderr, killing it (our own
/// child, by handle) after `timeout`.
fn run_with_input(
    mut command: Command,
    input: &[u8],
    timeout: Duration,
) -> Result<RunOutput, RunError> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(RunError::Spawn)?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let read_all = |pipe: Option<Box<dyn Read + Send>>| {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    };
    std::thread::scope(|scope| {
        scope.spawn(move || {
            if let Some(mut stdin) = stdin {
                // A client that exits early closes the pipe; its status tells why.
                let _ = stdin.write_all(input);
            }
        });
        let out = scope.spawn(move || read_all(stdout.map(|p| Box::new(p) as Box<_>)));
        let err = scope.spawn(move || read_all(stderr.map(|p| Box::new(p) as Box<_>)));
        let exited = wait_until("the mariadb client to exit", timeout, || {
            match child.try_wait() {
                Ok(Some(status)) => Some(Some(status)),
                Ok(None) => None,
                Err(_) => Some(None),
            }
        });
        let status = match exited {
            Ok(Some(status)) => Ok(status),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(RunError::Timeout)
            }
        };
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        status.map(|status| RunOutput {
            status,
            stdout,
            stderr,
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn client_errors_drop_sql_and_secrets() {
        let check = |stderr: &str, secrets: &[&str], expected: &str| {
            assert_eq!(client_errors(stderr, secrets), expected);
        };
        check(
            "--------------\nALTER USER 'a'@'b' IDENTIFIED BY 'Secret123'\n--------------\n\n\
             ERROR 1142 (42000) at line 1: INSERT command denied to user 'x'@'localhost'\n",
            &["Secret123"],
            "ERROR 1142 (42000) at line 1: INSERT command denied to user 'x'@'localhost'",
        );
        check(
            "ERROR 1064 (42000) at line 1: You have an error in your SQL syntax; check the \
             manual that corresponds to your MariaDB server version for the right syntax to \
             use near 'selec 'Secret123' from dual' at line 1\n",
            &[],
            "ERROR 1064 (42000) at line 1: You have an error in your SQL syntax; check the \
             manual that corresponds to your MariaDB server version for the right syntax to \
             use near <sql omitted>",
        );
        check(
            "ERROR 1 Secret123 and Other456\n",
            &["Secret123", "Other456", ""],
            "ERROR 1 <redacted> and <redacted>",
        );
        check("", &[], "no error output");
    }

    #[test]
    fn batch_output_parsing() {
        let rows = parse_batch("A\tB\tC\nYes\tline\\none\\ttab\\\\\tNULL\nNo\t\t0\n");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["A"], "Yes");
        assert_eq!(rows[0]["B"], "line\none\ttab\\");
        assert_eq!(rows[0]["C"], "NULL");
        assert_eq!(rows[1]["B"], "");
        assert!(parse_batch("").is_empty());
        assert!(parse_batch("A\tB\n").is_empty());
    }

    #[test]
    fn sql_strings() {
        let check = |input: &str, expected: &str| assert_eq!(sql_string(input), expected);
        check("abc", "'abc'");
        check("a'b", "'a''b'");
        check("a\\'", "'a\\\\'''");
        check("127.0.0.1", "'127.0.0.1'");
    }
}

//! The config toolkit every service's config file goes through: [`ConfigFile`] (read,
//! parse and validate once for all of them), the [`Checker`] that validates a raw
//! `File*` struct into a domain `Config`, and the shared shape of errors: each problem
//! names the file, the key and what would be valid, and all of them are collected rather
//! than stopping at the first. The `[listen]` section's keys are validated by
//! [`crate::listen`] on top of this.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

/// One problem found in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
    }
}

/// Every problem found in a config file, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    /// A single error about `path` as a whole.
    pub fn one(path: &Path, key: &str, message: impl Into<String>) -> Self {
        Self(vec![ConfigError {
            file: path.to_owned(),
            key: key.to_owned(),
            message: message.into(),
        }])
    }
}

/// Where a service's access log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    Off,
    Stdout,
    File(PathBuf),
}

/// A service's validated config and the raw `File*` layer it is read from. Implement
/// [`ConfigFile::validate`]; reading and parsing come with it, the same for every service,
/// so a syntax error or an unknown key reads the same everywhere.
pub trait ConfigFile: Sized {
    /// The raw layer: serde structs that mirror the TOML, unknown keys refused.
    type File: DeserializeOwned;

    /// Turns the raw file read from `path` into a validated config, collecting every
    /// problem.
    fn validate(path: &Path, file: &Self::File) -> Result<Self, ConfigErrors>;

    /// Reads and validates `path`.
    fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let (file, _) = read_toml::<Self::File>(path)?;
        Self::validate(path, &file)
    }

    /// Validates `text` as if read from `path`.
    fn parse(path: &Path, text: &str) -> Result<Self, ConfigErrors> {
        let file = parse_toml::<Self::File>(path, text)?;
        Self::validate(path, &file)
    }
}

/// Reads `path` and deserializes it as TOML into the raw `File*` layer.
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<(T, String), ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::one(path, "(file)", format!("cannot read: {e}")))?;
    let raw = parse_toml(path, &text)?;
    Ok((raw, text))
}

/// Deserializes `text` (as if read from `path`); a syntax error or unknown key names its
/// line.
pub fn parse_toml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigErrors> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let key = match line {
            Some(l) => format!("line {l}"),
            None => "(syntax)".to_owned(),
        };
        ConfigErrors::one(path, &key, e.message().replace('\n', " "))
    })
}

/// Parses `"250ms"`, `"10s"`, `"5m"`, `"1h"`, `"730d"`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => return Some(Duration::from_millis(n)),
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// Collects errors while a raw config is validated.
#[derive(Debug)]
pub struct Checker<'a> {
    pub file: &'a Path,
    pub errors: Vec<ConfigError>,
}

impl<'a> Checker<'a> {
    pub fn new(file: &'a Path) -> Self {
        Self {
            file,
            errors: Vec::new(),
        }
    }

    /// The client certificate of a `<table>.url`: `<table>.ca`, `<table>.cert` and
    /// `<table>.key` (given as `[ca, cert, key]`, empty meaning absent), all three when the
    /// URL is `https` (the servers rampart talks to take only clients with a
    /// certificate), none when it is plain `http`. Resolved `[ca, cert, key]` when all
    /// are there; `None` otherwise, with every problem recorded.
    pub fn client_cert(
        &mut self,
        table: &str,
        https: bool,
        given: [Option<&Path>; 3],
    ) -> Option<[PathBuf; 3]> {
        let given = given.map(|p| p.filter(|p| !p.as_os_str().is_empty()));
        let keys = ["ca", "cert", "key"].map(|k| format!("{table}.{k}"));
        if !https {
            for (key, v) in keys.iter().zip(given) {
                if v.is_some() {
                    self.err(
                        key,
                        format!(
                            "set, but {table}.url is plain http; use an https url or remove it"
                        ),
                    );
                }
            }
            return None;
        }
        let mut paths = Vec::new();
        for (key, v) in keys.iter().zip(given) {
            match v {
                Some(p) => paths.push(self.resolve(p)),
                None => self.err(
                    key,
                    format!(
                        "missing; an https {table}.url needs {table}.ca, {table}.cert and \
                         {table}.key (the CA to verify the server, this client's certificate \
                         and key)"
                    ),
                ),
            }
        }
        <[PathBuf; 3]>::try_from(paths).ok()
    }

    /// Resolves a path from the config against the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.file.parent().unwrap_or(Path::new(".")).join(p)
        }
    }

    pub fn err(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            key: key.into(),
            message: message.into(),
        });
    }

    pub fn addr(&mut self, key: &str, v: &str) -> Option<SocketAddr> {
        match v.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    key,
                    format!("`{v}` is not an address; expected IP:PORT such as 0.0.0.0:443"),
                );
                None
            }
        }
    }

    /// An access log target: "stdout" (the default), "off" or a file path resolved
    /// against the config file's directory.
    pub fn log_target(&mut self, key: &str, v: Option<&str>) -> LogTarget {
        match v {
            None | Some("stdout") => LogTarget::Stdout,
            Some("off") => LogTarget::Off,
            Some("") => {
                self.err(key, "empty; expected \"stdout\", \"off\" or a file path");
                LogTarget::Off
            }
            Some(p) => LogTarget::File(self.resolve(Path::new(p))),
        }
    }

    pub fn duration(
        &mut self,
        key: &str,
        v: Option<&String>,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Duration {
        let Some(v) = v else { return default };
        match parse_duration(v) {
            Some(d) if d >= min && d <= max => d,
            Some(_) => {
                self.err(
                    key,
                    format!("`{v}` is out of range; expected between {min:?} and {max:?}"),
                );
                default
            }
            None => {
                self.err(
                    key,
                    format!("`{v}` is not a duration; expected a number with ms, s, m, h or d, such as \"10s\""),
                );
                default
            }
        }
    }

    pub fn range<T: PartialOrd + Copy + fmt::Display>(
        &mut self,
        key: &str,
        v: Option<T>,
        default: T,
        min: T,
        max: T,
    ) -> T {
        match v {
            None => default,
            Some(x) if x >= min && x <= max => x,
            Some(x) => {
                self.err(
                    key,
                    format!("{x} is out of range; expected between {min} and {max}"),
                );
                default
            }
        }
    }

    /// Ends validation: `value` if nothing was wrong, else every error.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(self.errors))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde::Deserialize;

    use super::*;

    #[test]
    fn a_client_certificate_is_all_three_paths_with_https_and_none_with_http() {
        let file = Path::new("/etc/rampart/x.toml");
        let p = |s: &'static str| Some(Path::new(s));
        let mut c = Checker::new(file);
        let got = c.client_cert("push", true, [p("ca.pem"), p("/s/a.pem"), p("/s/a.key")]);
        assert!(c.errors.is_empty());
        assert_eq!(
            got,
            Some([
                PathBuf::from("/etc/rampart/ca.pem"),
                PathBuf::from("/s/a.pem"),
                PathBuf::from("/s/a.key")
            ])
        );
        // https with one missing (or empty): named, nothing returned.
        let mut c = Checker::new(file);
        assert_eq!(
            c.client_cert("push", true, [p("ca.pem"), p(""), None]),
            None
        );
        let keys: Vec<&str> = c.errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["push.cert", "push.key"]);
        assert!(c.errors[0]
            .message
            .contains("an https push.url needs push.ca"));
        // http with any of them set: each named.
        let mut c = Checker::new(file);
        assert_eq!(
            c.client_cert("upstream", false, [None, p("a.pem"), None]),
            None
        );
        assert_eq!(c.errors.len(), 1);
        assert_eq!(c.errors[0].key, "upstream.cert");
        assert!(c.errors[0].message.contains("upstream.url is plain http"));
        // http with none: nothing to say.
        let mut c = Checker::new(file);
        assert_eq!(c.client_cert("prometheus", false, [None, None, None]), None);
        assert!(c.errors.is_empty());
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FileExample {
        timeout: Option<String>,
        workers: Option<u32>,
        log: Option<String>,
    }

    #[derive(Debug)]
    struct Example {
        timeout: Duration,
        workers: u32,
        log: LogTarget,
    }

    impl ConfigFile for Example {
        type File = FileExample;

        fn validate(path: &Path, f: &FileExample) -> Result<Example, ConfigErrors> {
            let mut c = Checker::new(path);
            let s = Duration::from_secs;
            let config = Example {
                timeout: c.duration("timeout", f.timeout.as_ref(), s(10), s(1), s(60)),
                workers: c.range("workers", f.workers, 4, 1, 64),
                log: c.log_target("log", f.log.as_deref()),
            };
            c.finish(config)
        }
    }

    /// Parses `text` as `/etc/rampart/x.toml` and compares the rendered errors (or "ok").
    fn check(text: &str, expected: &str) {
        let got = match Example::parse(Path::new("/etc/rampart/x.toml"), text) {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        assert_eq!(got, expected.trim(), "for config:\n{text}");
    }

    #[test]
    fn every_error_names_file_key_and_what_would_be_valid() {
        check("", "ok");
        check("timeout = \"5s\"\nworkers = 8\nlog = \"off\"\n", "ok");
        check(
            "timeout = \"5s\"\n\nbogus = 1\n",
            "/etc/rampart/x.toml: line 3: unknown field `bogus`, expected one of `timeout`, `workers`, `log`",
        );
        check(
            "workers = \"many\"\n",
            "/etc/rampart/x.toml: line 1: invalid type: string \"many\", expected u32",
        );
        check(
            "timeout = [\n",
            "/etc/rampart/x.toml: line 2: invalid array expected `]`",
        );
        // Every problem is collected, in the order they were checked.
        check(
            "timeout = \"2h\"\nworkers = 0\nlog = \"\"\n",
            r#"
/etc/rampart/x.toml: timeout: `2h` is out of range; expected between 1s and 60s
/etc/rampart/x.toml: workers: 0 is out of range; expected between 1 and 64
/etc/rampart/x.toml: log: empty; expected "stdout", "off" or a file path"#,
        );
        check(
            "timeout = \"soon\"\n",
            "/etc/rampart/x.toml: timeout: `soon` is not a duration; expected a number with ms, s, m, h or d, such as \"10s\"",
        );
    }

    #[test]
    fn load_reads_the_file_and_resolves_paths_next_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(&path, "log = \"logs/access.log\"\nworkers = 2\n").unwrap();
        let c = Example::load(&path).unwrap();
        assert_eq!(c.log, LogTarget::File(dir.path().join("logs/access.log")));
        assert_eq!((c.workers, c.timeout), (2, Duration::from_secs(10)));
        assert_eq!(
            Example::parse(&path, "log = \"/var/log/a.log\"")
                .unwrap()
                .log,
            LogTarget::File("/var/log/a.log".into())
        );
        assert_eq!(Example::parse(&path, "").unwrap().log, LogTarget::Stdout);

        let missing = dir.path().join("missing.toml");
        let err = Example::load(&missing).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].key, "(file)");
        assert!(
            err.to_string()
                .starts_with(&format!("{}: (file): cannot read: ", missing.display())),
            "{err}"
        );
    }

    #[test]
    fn durations() {
        for (input, expected) in [
            ("250ms", Some(Duration::from_millis(250))),
            ("10s", Some(Duration::from_secs(10))),
            (" 2m ", Some(Duration::from_secs(120))),
            ("1h", Some(Duration::from_secs(3600))),
            ("730d", Some(Duration::from_secs(730 * 86400))),
            ("0s", Some(Duration::ZERO)),
            ("10", None),
            ("s", None),
            ("-1s", None),
            ("1.5s", None),
            ("10 s", None),
            ("99999999999999999999d", None),
            ("", None),
        ] {
            assert_eq!(parse_duration(input), expected, "{input:?}");
        }
    }
}

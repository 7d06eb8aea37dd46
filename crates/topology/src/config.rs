//! The shared shape of config errors and the checker every config file goes through:
//! each problem names the file, the key and what would be valid, and all of them are
//! collected rather than stopping at the first. Used by every service's `Config` and by
//! the topology file.

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

    /// A listener address that is on unless set to "off"; `default` when absent.
    pub fn optional_addr(
        &mut self,
        key: &str,
        v: Option<&str>,
        default: &str,
    ) -> Option<SocketAddr> {
        match v.unwrap_or(default) {
            "off" => None,
            v => self.addr(key, v),
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

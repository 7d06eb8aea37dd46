//! What every host collector shares: reading a file under the root (`/` normally, a
//! fixture directory in tests), the error that names the file and line, and the small
//! constructors of families and samples. Both [`crate::host`] and [`crate::kernel`] use
//! it; it uses neither (tidy forbids import cycles between files).

use std::io;
use std::path::{Path, PathBuf};

use crate::{Family, Kind, Sample};

/// Why host metrics (or one collector's) could not be collected; each variant names the
/// file.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: line {line}: {reason}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

impl HostError {
    /// Whether the file is absent (a kernel without the feature, a module not loaded),
    /// which node_exporter reports as "no data" rather than as an error.
    pub fn is_missing(&self) -> bool {
        matches!(self, HostError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// A line that could not be parsed: its number (from 1) and why.
#[derive(Debug, PartialEq)]
pub(crate) struct Bad {
    pub(crate) line: usize,
    pub(crate) reason: String,
}

/// A [`Bad`] for the line at `index` (from 0).
pub(crate) fn bad(index: usize, reason: impl Into<String>) -> Bad {
    Bad {
        line: index + 1,
        reason: reason.into(),
    }
}

/// The contents of `root/file`, `None` if it does not exist.
pub(crate) fn read(root: &Path, file: &str) -> Result<Option<String>, HostError> {
    let path = root.join(file);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(HostError::Read { path, source }),
    }
}

/// The contents of `root/file`; a missing file is an error naming it.
pub(crate) fn require(root: &Path, file: &str) -> Result<String, HostError> {
    read(root, file)?.ok_or_else(|| missing(root, file))
}

/// `root/file` read and parsed by `parse`; either failure names the file.
pub(crate) fn parse_file<T>(
    root: &Path,
    file: &str,
    parse: impl FnOnce(&str) -> Result<T, Bad>,
) -> Result<T, HostError> {
    let text = require(root, file)?;
    parsed(root, file, parse(&text))
}

pub(crate) fn missing(root: &Path, file: &str) -> HostError {
    HostError::Read {
        path: root.join(file),
        source: io::ErrorKind::NotFound.into(),
    }
}

/// A parser's result with its [`Bad`] line turned into an error naming `root/file`.
pub(crate) fn parsed<T>(root: &Path, file: &str, r: Result<T, Bad>) -> Result<T, HostError> {
    r.map_err(|b| HostError::Parse {
        path: root.join(file),
        line: b.line,
        reason: b.reason,
    })
}

pub(crate) fn family(name: &str, help: &str, kind: Kind, samples: Vec<Sample>) -> Family {
    Family {
        name: name.to_owned(),
        help: help.to_owned(),
        kind,
        samples,
    }
}

pub(crate) fn gauge(name: &str, help: &str, value: f64) -> Family {
    family(name, help, Kind::Gauge, vec![plain(value)])
}

pub(crate) fn plain(value: f64) -> Sample {
    Sample {
        labels: Vec::new(),
        value,
        suffix: "",
    }
}

/// A sample with the given labels, leaving out those with an empty value (Prometheus
/// treats `x=""` as no label `x`; node_exporter writes them, the result is the same).
pub(crate) fn labelled(labels: &[(&str, &str)], value: f64) -> Sample {
    Sample {
        labels: labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        value,
        suffix: "",
    }
}

/// A non-negative integer counter as the kernel prints it.
pub(crate) fn int(s: &str) -> Result<f64, String> {
    s.parse::<u64>()
        .map(|v| v as f64)
        .map_err(|_| format!("not a number: {s:?}"))
}

/// An integer that may be negative (`/proc/net/snmp`'s `Tcp: MaxConn -1`, a link's
/// speed of `-1`).
pub(crate) fn signed(s: &str) -> Result<f64, String> {
    s.parse::<i64>()
        .map(|v| v as f64)
        .map_err(|_| format!("not a number: {s:?}"))
}

/// A hexadecimal counter without `0x` (`/proc/net/stat/nf_conntrack`,
/// `/proc/net/softnet_stat`).
pub(crate) fn hex(s: &str) -> Result<f64, String> {
    u64::from_str_radix(s, 16)
        .map(|v| v as f64)
        .map_err(|_| format!("not a hexadecimal number: {s:?}"))
}

/// A non-negative decimal such as a load average (digits and at most one dot; no `inf`,
/// `NaN` or exponent, which `f64::from_str` would accept).
pub(crate) fn decimal(s: &str) -> Result<f64, String> {
    let ok = !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && s.bytes().filter(|&b| b == b'.').count() <= 1
        && s.bytes().any(|b| b.is_ascii_digit());
    match s.parse::<f64>() {
        Ok(v) if ok => Ok(v),
        _ => Err(format!("not a number: {s:?}")),
    }
}

/// Test support: a fixture root with the given files, and the rendering the
/// data-driven parser tests compare against.
#[cfg(test)]
pub(crate) mod fixture {
    use super::Bad;
    use crate::Family;

    /// A temporary directory holding `files` (paths relative to it).
    pub(crate) fn root(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    /// The families in the text format without `# HELP` lines (to keep cases short)
    /// and without empty families, or `error: line N: reason`.
    pub(crate) fn render(r: Result<Vec<Family>, Bad>) -> String {
        let text = match r {
            Ok(f) => {
                let f: Vec<Family> = f.into_iter().filter(|f| !f.samples.is_empty()).collect();
                crate::expo::text(&f)
            }
            Err(b) => format!("error: line {}: {}\n", b.line, b.reason),
        };
        text.lines()
            .filter(|l| !l.starts_with("# HELP"))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// `expect` with each line trimmed and blank lines dropped, so cases can be
    /// indented raw strings.
    pub(crate) fn lines(expect: &str) -> String {
        expect
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect()
    }
}

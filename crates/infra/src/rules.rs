//! The operator's extra Prometheus rules files (`[monitor] rules` of the topology file):
//! read into [`RuleFile`]s for the plan, which writes them beside rampart's `rules.yml`
//! on the monitor host, and checked with `promtool check rules` when it is installed.
//! Every problem is a [`FileError`] naming the topology file, the key's line, the key and
//! the rules file.

use std::path::Path;
use std::process::Command;

use rampart_topology::file::{FileError, FileErrors, Site};
use rampart_topology::{monitor, RuleFile};

use crate::process::find_program;

/// The largest rules file read (the upstream mixins' are tens of KiB).
pub const MAX_RULES_BYTES: u64 = 16 << 20;

/// Whether `promtool` checked the rules files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checked {
    /// Every file passed `promtool check rules` (or there are none).
    Passed,
    /// `promtool` is not installed: the files are loaded unchecked. The warning to show.
    Unchecked(String),
}

/// Reads every file of `site`'s `[monitor] rules`, each under its name on the monitor
/// host ([`monitor::extra_rules_name`]). An unreadable file (missing, a directory, not
/// UTF-8, over [`MAX_RULES_BYTES`]) is an error naming it; all of them are reported.
pub fn read(site: &Site) -> Result<Vec<RuleFile>, FileErrors> {
    let mut files = Vec::new();
    let mut errs = Vec::new();
    for (i, source) in site.monitor_rules.iter().enumerate() {
        match read_one(Path::new(source)) {
            Ok(contents) => files.push(RuleFile {
                name: monitor::extra_rules_name(i, source),
                source: source.clone(),
                contents,
            }),
            Err(why) => errs.push(site.rules_error(format!("{source}: cannot read: {why}"))),
        }
    }
    if errs.is_empty() {
        Ok(files)
    } else {
        Err(FileErrors(errs))
    }
}

fn read_one(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_RULES_BYTES {
        return Err(format!(
            "{} bytes; a rules file may have at most {MAX_RULES_BYTES}",
            meta.len()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

/// Runs `promtool check rules` on every file of `site`'s `[monitor] rules`, one at a
/// time so that a failure names its file; a refused file is an error carrying
/// promtool's own message. Without `promtool` nothing is checked and the answer says so
/// (it comes with Debian's `prometheus` package, which the monitor host needs anyway).
pub fn check(site: &Site) -> Result<Checked, FileErrors> {
    if site.monitor_rules.is_empty() {
        return Ok(Checked::Passed);
    }
    check_with(site, find_program("promtool", "prometheus").ok().as_deref())
}

/// [`check`] with `promtool` found (or not) by the caller.
fn check_with(site: &Site, promtool: Option<&Path>) -> Result<Checked, FileErrors> {
    let Some(promtool) = promtool else {
        return Ok(Checked::Unchecked(
            site.rules_error(
                "promtool not found, so the rules files are loaded without `promtool check \
                 rules`; install the Debian package prometheus to check them",
            )
            .to_string(),
        ));
    };
    let mut errs = Vec::new();
    for source in &site.monitor_rules {
        match Command::new(promtool)
            .args(["check", "rules"])
            .arg(source)
            .output()
        {
            Err(e) => errs.push(
                site.rules_error(format!("{source}: cannot run {}: {e}", promtool.display())),
            ),
            Ok(out) if !out.status.success() => {
                errs.push(refused(site, source, &out.stdout, &out.stderr));
            }
            Ok(_) => {}
        }
    }
    if errs.is_empty() {
        Ok(Checked::Passed)
    } else {
        Err(FileErrors(errs))
    }
}

/// promtool's refusal of `source`, its output indented under the error.
fn refused(site: &Site, source: &str, stdout: &[u8], stderr: &[u8]) -> FileError {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(stdout),
        String::from_utf8_lossy(stderr)
    );
    let detail: Vec<String> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && !l.starts_with("Checking "))
        .map(|l| format!("  {}", l.trim_start()))
        .collect();
    site.rules_error(format!(
        "{source}: promtool check rules refused it:\n{}",
        detail.join("\n")
    ))
}

/// [`read`], then [`check`]: what `rampart up`, `check` and `render` do with a topology
/// file.
pub fn load(site: &Site) -> Result<(Vec<RuleFile>, Checked), FileErrors> {
    let files = read(site)?;
    let checked = check(site)?;
    Ok((files, checked))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without promtool the files load unchecked, and the warning says so under the
    /// topology file's line and key, naming the package that brings it.
    #[test]
    fn without_promtool_the_files_load_with_a_warning() {
        let site =
            rampart_topology::file::parse("site.toml", "[monitor]\nrules = [\"/x/a.yaml\"]\n")
                .unwrap();
        assert_eq!(
            check_with(&site, None).unwrap(),
            Checked::Unchecked(
                "site.toml:2: monitor.rules: promtool not found, so the rules files are loaded \
                 without `promtool check rules`; install the Debian package prometheus to \
                 check them"
                    .into()
            )
        );
    }
}

//! node_exporter 1.5's `textfile` collector: the `*.prom` files of a directory (what cron
//! jobs and scripts write, such as a backup's last success or apt's pending upgrades),
//! in the Prometheus text format, added to the host's metrics, with
//! `node_textfile_mtime_seconds{file}` for each file read and `node_textfile_scrape_error`
//! (1 when any file could not be read or parsed). As node_exporter does, a file with a
//! bad line is left out whole: half a file would be a wrong picture, not a partial one.
//! The node mixin's `NodeTextFileCollectorScrapeError` alert reads the error gauge.
//!
//! Bounds: at most [`MAX_FILES`] files, each at most [`scrape::MAX_BODY`] bytes; beyond
//! either the rest is an error, counted in the gauge and logged.

use std::path::Path;
use std::time::UNIX_EPOCH;

use crate::{scrape, Family, Kind, Sample};

/// The most `*.prom` files read from the directory in one collection.
pub const MAX_FILES: usize = 256;

/// The families of the `*.prom` files in `dir` plus the collector's own two. A missing
/// directory is no error (nothing written yet), as in node_exporter.
pub fn collect(dir: &Path) -> Vec<Family> {
    let mut error = false;
    let mut files: Vec<std::path::PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "prom"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "textfile: cannot read the directory");
            error = true;
            Vec::new()
        }
    };
    files.sort();
    if files.len() > MAX_FILES {
        tracing::warn!(
            dir = %dir.display(),
            files = files.len(),
            max = MAX_FILES,
            "textfile: too many files; the rest are left out"
        );
        files.truncate(MAX_FILES);
        error = true;
    }
    let mut families: Vec<Family> = Vec::new();
    let mut mtimes = Vec::new();
    for path in files {
        match read(&path) {
            Ok((fs, mtime)) => {
                for f in fs {
                    match families.iter_mut().find(|g| g.name == f.name) {
                        Some(g) if g.kind == f.kind => g.samples.extend(f.samples),
                        Some(_) => {
                            tracing::warn!(file = %path.display(), family = %f.name, "textfile: a family of another type by the same name is left out");
                            error = true;
                        }
                        None => families.push(f),
                    }
                }
                mtimes.push(Sample {
                    labels: vec![("file".into(), path.display().to_string())],
                    value: mtime,
                    suffix: "",
                });
            }
            Err(reason) => {
                tracing::warn!(file = %path.display(), %reason, "textfile: file left out");
                error = true;
            }
        }
    }
    if !mtimes.is_empty() {
        families.push(Family {
            name: "node_textfile_mtime_seconds".into(),
            help: "Unixtime mtime of textfiles successfully read.".into(),
            kind: Kind::Gauge,
            samples: mtimes,
        });
    }
    families.push(error_gauge(error));
    families
}

/// What the collector reports with no directory configured: its error gauge, 0.
pub fn collect_none() -> Vec<Family> {
    vec![error_gauge(false)]
}

fn error_gauge(error: bool) -> Family {
    Family {
        name: "node_textfile_scrape_error".into(),
        help: "1 if there was an error opening or reading a file, 0 otherwise".into(),
        kind: Kind::Gauge,
        samples: vec![Sample {
            labels: Vec::new(),
            value: if error { 1.0 } else { 0.0 },
            suffix: "",
        }],
    }
}

/// One file's families and modification time, or why it is left out.
fn read(path: &Path) -> Result<(Vec<Family>, f64), String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > scrape::MAX_BODY as u64 {
        return Err(format!("over {} bytes", scrape::MAX_BODY));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
    let (families, bad) = scrape::parse(&text);
    if bad > 0 {
        return Err(format!("{bad} lines that are not the text format"));
    }
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    Ok((families, mtime))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(fs: &[Family]) -> f64 {
        fs.iter()
            .find(|f| f.name == "node_textfile_scrape_error")
            .map_or(f64::NAN, |f| f.samples[0].value)
    }

    fn names(fs: &[Family]) -> Vec<&str> {
        fs.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn reads_prom_files_and_leaves_a_bad_one_out_whole() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // (files written, families expected, error gauge)
        let good = "# TYPE backup_last_success_timestamp_seconds gauge\nbackup_last_success_timestamp_seconds 1.7e9\n";
        let also = "# TYPE backup_last_success_timestamp_seconds gauge\nbackup_last_success_timestamp_seconds{db=\"b\"} 2\n";
        let bad =
            "# TYPE apt_upgrades_pending gauge\napt_upgrades_pending 3\nthis is not a sample {\n";
        std::fs::write(d.join("a.prom"), good).unwrap();
        std::fs::write(d.join("notes.txt"), bad).unwrap();
        let fs = collect(d);
        assert_eq!(
            names(&fs),
            [
                "backup_last_success_timestamp_seconds",
                "node_textfile_mtime_seconds",
                "node_textfile_scrape_error"
            ]
        );
        assert_eq!(error(&fs), 0.0);
        let mtime = &fs[1].samples[0];
        assert_eq!(mtime.labels[0].1, d.join("a.prom").display().to_string());
        assert!(mtime.value > 1.0e9);

        std::fs::write(d.join("b.prom"), also).unwrap();
        std::fs::write(d.join("c.prom"), bad).unwrap();
        let fs = collect(d);
        assert_eq!(fs[0].samples.len(), 2, "two files' samples in one family");
        assert!(!names(&fs).contains(&"apt_upgrades_pending"), "{fs:?}");
        assert_eq!(fs[1].samples.len(), 2, "mtimes of the two good files");
        assert_eq!(error(&fs), 1.0);
    }

    #[test]
    fn a_missing_directory_is_no_error() {
        let fs = collect(Path::new("/nonexistent/rampart-textfile"));
        assert_eq!(names(&fs), ["node_textfile_scrape_error"]);
        assert_eq!(error(&fs), 0.0);
    }
}

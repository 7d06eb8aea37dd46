//! What the WAF's CRS tests share: where `../shared` is (`RAMPART_SHARED` overrides it)
//! and a CRS release's files in include order.

use std::path::PathBuf;

pub fn shared() -> PathBuf {
    std::env::var_os("RAMPART_SHARED").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
        PathBuf::from,
    )
}

/// The files of a CRS release in include order (the setup example, then every rule
/// file by name), or `None`, with a visible note, when the release is absent.
pub fn crs_files(version: &str) -> Option<Vec<PathBuf>> {
    let dir = shared().join("crs").join(version);
    let rules = dir.join("rules");
    let Ok(rd) = std::fs::read_dir(&rules) else {
        eprintln!(
            "SKIPPED: {} is absent (the CRS rule sets live in ../shared/crs)",
            rules.display()
        );
        return None;
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    files.insert(0, dir.join("crs-setup.conf.example"));
    Some(files)
}

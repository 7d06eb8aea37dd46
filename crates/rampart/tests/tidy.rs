//! House rules checked as code: every Rust file says what it is for, and the binary has
//! one crypto stack (rustls on aws-lc-rs; no ring, no OpenSSL).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&workspace().join("crates"), &mut files);
    assert!(files.len() > 10);
    let missing: Vec<_> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap().starts_with("//!"))
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading //! doc: {missing:?}"
    );
}

#[test]
fn one_crypto_stack() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for krate in ["ring", "openssl-sys", "openssl"] {
        let out = std::process::Command::new(&cargo)
            .args([
                "tree",
                "--workspace",
                "--offline",
                "-e",
                "normal,build",
                "-i",
                krate,
            ])
            .current_dir(workspace())
            .output()
            .unwrap();
        let tree = String::from_utf8_lossy(&out.stdout);
        assert!(
            tree.trim().is_empty(),
            "{krate} is in the dependency tree:\n{tree}"
        );
    }
}

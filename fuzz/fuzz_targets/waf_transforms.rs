//! Fuzzes `transform::apply` with every transformation the loader accepts
//! (`model::TRANSFORMS`, the ones CRS uses), one at a time and as a chain.
//!
//! The input is the value; its first four bytes also pick a chain of four
//! transformations, as a rule's `t:a,t:b,...` list applies them in order.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_waf::{model::TRANSFORMS, transform::apply};

/// Transformations that only decode, drop or fold bytes: their output is never longer
/// than their input (what keeps a chain's work bounded by the value's size). The path
/// normalisations may add one byte (`../..` becomes `../../`).
const NEVER_GROW: &[&str] = &[
    "base64Decode",
    "base64DecodeExt",
    "cmdLine",
    "compressWhitespace",
    "cssDecode",
    "escapeSeqDecode",
    "hexDecode",
    "htmlEntityDecode",
    "jsDecode",
    "lowercase",
    "none",
    "removeComments",
    "removeCommentsChar",
    "removeNulls",
    "removeWhitespace",
    "replaceComments",
    "replaceNulls",
    "trim",
    "trimLeft",
    "trimRight",
    "uppercase",
    "urlDecode",
    "urlDecodeUni",
];

fuzz_target!(|data: &[u8]| {
    for name in TRANSFORMS {
        let out = apply(name, data).unwrap_or_else(|| panic!("t:{name} is not implemented"));
        if NEVER_GROW.contains(name) {
            assert!(
                out.len() <= data.len(),
                "t:{name} grew {} bytes to {}",
                data.len(),
                out.len()
            );
        }
        if name.starts_with("normali") {
            assert!(
                out.len() <= data.len() + 1,
                "t:{name} grew by more than a byte"
            );
        }
    }
    let mut v = data.to_vec();
    for b in data.iter().take(4) {
        let name = TRANSFORMS[usize::from(*b) % TRANSFORMS.len()];
        if let Some(out) = apply(name, &v) {
            v = out.into_owned();
        }
    }
});

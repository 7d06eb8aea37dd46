//! Fuzzes the web server's static-file path decoder (`static_files::parse_path`), which
//! decides which file under the document root a request names. Checks: no panic; an
//! accepted path has only non-empty segments that cannot leave the root or name a
//! hidden file: no `.` or `..`, no `/` or `\`, no control character, no leading dot.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_web::static_files::parse_path;

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    if let Ok(path) = parse_path(&raw) {
        for s in &path.segments {
            assert!(!s.is_empty());
            assert!(!s.starts_with('.'), "{s:?}");
            assert!(!s.contains(['/', '\\']), "{s:?}");
            assert!(!s.chars().any(|c| c.is_ascii_control()), "{s:?}");
        }
    }
});

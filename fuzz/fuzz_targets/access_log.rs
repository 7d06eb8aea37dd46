//! Fuzzes the agent's access-log reader (`logtail::count_chunks`): lines split across
//! reads at any point, over-long lines skipped, each line's JSON judged a request or
//! malformed. The first input byte sets the read size. Checks: no panic; every line
//! (each newline ends one, and a non-empty rest is the last) is counted exactly once,
//! as a request, as malformed or as too long; too long exactly when it is longer than
//! `MAX_LINE`; a line's fate does not depend on how reads split it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_agent::logtail::{count_chunks, MAX_LINE};

fuzz_target!(|data: &[u8]| {
    let Some((&size, log)) = data.split_first() else {
        return;
    };
    let size = usize::from(size).max(1);
    let stats = count_chunks(log.chunks(size));
    let mut lines: Vec<&[u8]> = log.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let long = lines.iter().filter(|l| l.len() > MAX_LINE).count() as u64;
    assert_eq!(stats.ok + stats.malformed + stats.too_long, lines.len() as u64);
    assert_eq!(stats.too_long, long);
    assert_eq!(stats.bytes, log.len() as u64);
    let whole = count_chunks([log]);
    assert_eq!((whole.ok, whole.malformed), (stats.ok, stats.malformed));
});

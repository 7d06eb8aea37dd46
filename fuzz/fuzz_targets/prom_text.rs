//! Fuzzes the agent's parser of the Prometheus text format and OpenMetrics
//! (`scrape::parse`, what it reads from every scraped service), and the path its result
//! takes to a push: `remote_write::series` and `encode`. Checks: no panic; the push body
//! decodes, and re-encodes to the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_agent::remote_write::{decode, encode, series, WriteRequest};
use rampart_agent::scrape::parse;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (families, _bad) = parse(&text);
    let extra = vec![
        ("instance".to_owned(), "web1".to_owned()),
        ("job".to_owned(), "fuzz".to_owned()),
    ];
    let req = WriteRequest {
        timeseries: series(&families, &extra, 1_700_000_000_000),
        metadata: vec![],
    };
    let body = encode(&req).expect("small bodies encode");
    let back = decode(&body, 64 << 20).expect("what encode made decodes");
    assert_eq!(encode(&back).expect("re-encodes"), body);
});

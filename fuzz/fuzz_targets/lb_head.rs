//! Fuzzes the load balancer's HTTP/1 request-head parser (`h1::parse_head`), the first
//! code that reads a client's bytes. Checks: no panic; a parsed head used no more bytes
//! than it was given and no more than the limit, and ends with an empty line; parsing
//! just those bytes again gives the same length; a partial head under the limit asks
//! for more instead of failing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_lb::h1::parse_head;

/// The load balancer's default `limits.max_header_bytes`.
const MAX_HEAD: usize = 16 * 1024;

fuzz_target!(|data: &[u8]| {
    match parse_head(data, MAX_HEAD) {
        Ok(Some((_head, used))) => {
            assert!(used <= data.len(), "used {used} of {}", data.len());
            assert!(used <= MAX_HEAD, "a head of {used} bytes passed the limit");
            assert!(
                data[..used].ends_with(b"\n\n") || data[..used].ends_with(b"\n\r\n"),
                "a head must end with an empty line"
            );
            let again = parse_head(&data[..used], MAX_HEAD);
            assert!(matches!(again, Ok(Some((_, u))) if u == used));
        }
        Ok(None) => assert!(data.len() < MAX_HEAD),
        Err(_) => {}
    }
});

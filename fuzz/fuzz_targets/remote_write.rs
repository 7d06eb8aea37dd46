//! Fuzzes the remote-write decoder (`remote_write::decode`: snappy block format, a
//! bound on the decompressed size, then the protobuf `WriteRequest`), which reads
//! whatever a host pushes to the monitor. Checks: no panic; nothing past the bound is
//! decompressed; a decoded request re-encodes to a body that decodes to the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_agent::remote_write::{decode, encode, DecodeError};

const MAX: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    match decode(data, MAX) {
        Ok(req) => {
            let body = encode(&req).expect("a decoded request encodes");
            let again = decode(&body, usize::MAX).expect("what encode made decodes");
            assert_eq!(encode(&again).expect("re-encodes"), body);
        }
        Err(DecodeError::TooLarge { len, max }) => assert!(len > max),
        Err(_) => {}
    }
});

//! Fuzzes the load balancer's request-body reader with chunked framing
//! (`h1::read_body` with `BodyKind::Chunked`): chunk-size lines, extensions, chunk data
//! and trailers, arriving partly already buffered and partly from the connection. The
//! first input byte picks how much is already buffered. Checks: no panic; a decoded
//! body is never longer than its input nor than the limit.

#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rampart_lb::h1::{read_body, BodyKind};

const LIMIT: usize = 64 * 1024;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = usize::from(split).min(rest.len());
    let (buffered, stream) = rest.split_at(at);
    let mut buf = BytesMut::from(buffered);
    let mut io = stream;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let got = runtime().block_on(read_body(
        &mut io,
        &mut buf,
        BodyKind::Chunked,
        LIMIT,
        deadline,
    ));
    if let Ok(body) = got {
        assert!(body.len() <= rest.len());
        assert!(body.len() <= LIMIT);
    }
});

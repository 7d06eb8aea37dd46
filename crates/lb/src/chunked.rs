//! The chunk-size line of HTTP/1.1's chunked transfer coding, parsed strictly. One parser
//! for both directions: the client-facing reader (`h1.rs`, where a bad size is a 400 and
//! a smuggling attempt) and the backend client (`upstream.rs`, where it is a malformed
//! response). Both build on this module, which depends on nothing in the crate.

/// Parses a chunk-size line (without its CRLF): 1-15 hex digits, optionally followed by
/// `;extensions`. Anything else, including whitespace and signs, is `None`.
pub fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let digits = match line.iter().position(|&b| b == b';') {
        Some(i) => &line[..i],
        None => line,
    };
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    if line.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        return None;
    }
    let s = std::str::from_utf8(digits).ok()?;
    u64::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"0"), Some(0));
        assert_eq!(parse_chunk_size(b"1a"), Some(26));
        assert_eq!(parse_chunk_size(b"A;name=value"), Some(10));
        for bad in [
            &b""[..],
            b" 1",
            b"1 ",
            b"+1",
            b"-1",
            b"0x1",
            b"g",
            b"1111111111111111",
            b";x",
        ] {
            assert_eq!(parse_chunk_size(bad), None, "{bad:?}");
        }
    }
}

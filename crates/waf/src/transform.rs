//! The transformations (`t:name`) as ModSecurity v2 defines them, each a function of
//! bytes to bytes (never failing: what does not decode stays as it was). The engine
//! applies a rule's list in order to each value, after `SecDefaultAction`'s unless the
//! list starts with `t:none`.

use std::borrow::Cow;

/// Applies the transformation `name` (one of [`crate::model::TRANSFORMS`]); `None` for
/// a name the engine does not know, which the loader has refused already.
pub fn apply<'a>(name: &str, v: &'a [u8]) -> Option<Cow<'a, [u8]>> {
    if unchanged(name, v) {
        return Some(Cow::Borrowed(v));
    }
    run(name, v)
}

/// [`apply`] without the shortcut of [`unchanged`].
fn run<'a>(name: &str, v: &'a [u8]) -> Option<Cow<'a, [u8]>> {
    let owned = |x: Vec<u8>| Some(Cow::Owned(x));
    match name {
        "none" => Some(Cow::Borrowed(v)),
        "lowercase" => owned(v.to_ascii_lowercase()),
        "uppercase" => owned(v.to_ascii_uppercase()),
        "urlDecode" => owned(url_decode(v, false)),
        "urlDecodeUni" => owned(url_decode(v, true)),
        "urlEncode" => owned(url_encode(v)),
        "htmlEntityDecode" => owned(html_entity_decode(v)),
        "jsDecode" => owned(js_decode(v)),
        "cssDecode" => owned(css_decode(v)),
        "escapeSeqDecode" => owned(escape_seq_decode(v)),
        "utf8toUnicode" => owned(utf8_to_unicode(v)),
        "removeNulls" => owned(v.iter().copied().filter(|b| *b != 0).collect()),
        "replaceNulls" => owned(v.iter().map(|b| if *b == 0 { b' ' } else { *b }).collect()),
        "removeWhitespace" => owned(v.iter().copied().filter(|b| !is_space(*b)).collect()),
        "compressWhitespace" => owned(compress_whitespace(v)),
        "trim" => Some(Cow::Borrowed(trim_right(trim_left(v)))),
        "trimLeft" => Some(Cow::Borrowed(trim_left(v))),
        "trimRight" => Some(Cow::Borrowed(trim_right(v))),
        "cmdLine" => owned(cmd_line(v)),
        "replaceComments" => owned(replace_comments(v)),
        "removeComments" => owned(remove_comments(v)),
        "removeCommentsChar" => owned(remove_comments_char(v)),
        "normalizePath" | "normalisePath" => owned(normalize_path(v, false)),
        "normalizePathWin" | "normalisePathWin" => owned(normalize_path(v, true)),
        "length" => owned(v.len().to_string().into_bytes()),
        "hexEncode" => owned(v.iter().flat_map(|b| hex2(*b)).collect()),
        "hexDecode" => owned(hex_decode(v)),
        "base64Decode" => owned(base64_decode(v, false)),
        "base64DecodeExt" => owned(base64_decode(v, true)),
        "sha1" => owned(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, v)
                .as_ref()
                .to_vec(),
        ),
        _ => None,
    }
}

/// Whether the transformation `name` leaves `v` as it is, seen without running it:
/// nothing it would decode, fold or remove is there (most values of most requests).
fn unchanged(name: &str, v: &[u8]) -> bool {
    let none = |f: fn(&u8) -> bool| !v.iter().any(f);
    match name {
        "lowercase" => none(u8::is_ascii_uppercase),
        "uppercase" => none(u8::is_ascii_lowercase),
        "urlDecode" | "urlDecodeUni" => none(|b| *b == b'%' || *b == b'+'),
        "htmlEntityDecode" => none(|b| *b == b'&'),
        "jsDecode" | "cssDecode" => none(|b| *b == b'\\'),
        "removeNulls" | "replaceNulls" => none(|b| *b == 0),
        "removeWhitespace" | "compressWhitespace" => none(|b| is_space(*b)),
        "utf8toUnicode" => v.is_ascii(),
        _ => false,
    }
}

/// ModSecurity's whitespace: the C locale's, plus NBSP (0xa0).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0xa0)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex2(b: u8) -> [u8; 2] {
    const H: &[u8; 16] = b"0123456789abcdef";
    [H[usize::from(b >> 4)], H[usize::from(b & 15)]]
}

fn hex_at(v: &[u8], i: usize, n: usize) -> Option<u32> {
    let s = v.get(i..i + n)?;
    s.iter()
        .try_fold(0u32, |acc, b| Some(acc * 16 + u32::from(hex_val(*b)?)))
}

/// A `%uHHHH`/`\uHHHH` code point as ModSecurity v2 keeps it without a unicode map:
/// its low byte, full-width ASCII (U+FF01..U+FF5E) folded to ASCII.
fn uni_byte(code: u32) -> u8 {
    let low = (code & 0xff) as u8;
    if code & 0xff00 == 0xff00 && (0x01..=0x5e).contains(&low) {
        low + 0x20
    } else {
        low
    }
}

fn url_decode(v: &[u8], uni: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'%' => {
                if uni && matches!(v.get(i + 1), Some(b'u' | b'U')) {
                    if let Some(code) = hex_at(v, i + 2, 4) {
                        out.push(uni_byte(code));
                        i += 6;
                        continue;
                    }
                }
                match hex_at(v, i + 1, 2) {
                    Some(b) => {
                        out.push(b as u8);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn url_encode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    for &b in v {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'*') {
            out.push(b);
        } else if b == b' ' {
            out.push(b'+');
        } else {
            out.push(b'%');
            out.extend(hex2(b));
        }
    }
    out
}

fn html_entity_decode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] != b'&' {
            out.push(v[i]);
            i += 1;
            continue;
        }
        let rest = &v[i + 1..];
        // &#DDD; &#xHH; (the semicolon optional), or a named entity with its semicolon.
        if rest.first() == Some(&b'#') {
            let (hex, start) = match rest.get(1) {
                Some(b'x' | b'X') => (true, 2),
                _ => (false, 1),
            };
            let digits = rest[start..]
                .iter()
                .take_while(|b| {
                    if hex {
                        b.is_ascii_hexdigit()
                    } else {
                        b.is_ascii_digit()
                    }
                })
                .count();
            if digits > 0 {
                let text = &rest[start..start + digits];
                let code = text.iter().fold(0u32, |acc, b| {
                    acc.saturating_mul(if hex { 16 } else { 10 })
                        .saturating_add(u32::from(hex_val(*b).unwrap_or(0)))
                });
                out.push((code & 0xff) as u8);
                i += 1 + start + digits;
                if v.get(i) == Some(&b';') {
                    i += 1;
                }
                continue;
            }
        } else {
            let named: &[(&[u8], u8)] = &[
                (b"quot;", b'"'),
                (b"amp;", b'&'),
                (b"lt;", b'<'),
                (b"gt;", b'>'),
                (b"nbsp;", 0xa0),
            ];
            if let Some((name, b)) = named
                .iter()
                .find(|(n, _)| rest.len() >= n.len() && rest[..n.len()].eq_ignore_ascii_case(n))
            {
                out.push(*b);
                i += 1 + name.len();
                continue;
            }
        }
        out.push(b'&');
        i += 1;
    }
    out
}

fn js_decode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] != b'\\' || i + 1 >= v.len() {
            out.push(v[i]);
            i += 1;
            continue;
        }
        let c = v[i + 1];
        if c == b'u' {
            if let Some(code) = hex_at(v, i + 2, 4) {
                out.push(uni_byte(code));
                i += 6;
                continue;
            }
        }
        if let Some((b, n)) = hex_or_octal(v, i, true) {
            out.push(b);
            i += n;
            continue;
        }
        out.push(c_escape(c).unwrap_or(c));
        i += 2;
    }
    out
}

/// The byte of C's one-letter escapes (`\n`, `\t`, ...), which JavaScript shares.
fn c_escape(c: u8) -> Option<u8> {
    Some(match c {
        b'a' => 7,
        b'b' => 8,
        b'f' => 12,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'v' => 11,
        _ => return None,
    })
}

/// After the backslash at `i`: `xHH`, or up to three octal digits (in JavaScript, only
/// two when three would pass 0o377). The byte and how many bytes the escape takes.
fn hex_or_octal(v: &[u8], i: usize, js: bool) -> Option<(u8, usize)> {
    let c = *v.get(i + 1)?;
    if c == b'x' {
        return hex_at(v, i + 2, 2).map(|b| (b as u8, 4));
    }
    if !(b'0'..=b'7').contains(&c) {
        return None;
    }
    let n = v[i + 1..]
        .iter()
        .take(3)
        .take_while(|b| (b'0'..=b'7').contains(*b))
        .count();
    let n = if js && n == 3 && c > b'3' { 2 } else { n };
    let code = v[i + 1..i + 1 + n]
        .iter()
        .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
    Some((code as u8, 1 + n))
}

fn css_decode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] != b'\\' {
            out.push(v[i]);
            i += 1;
            continue;
        }
        let Some(&c) = v.get(i + 1) else {
            // A backslash at the end is dropped.
            i += 1;
            continue;
        };
        let n = v[i + 1..]
            .iter()
            .take(6)
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if n > 0 {
            let code = hex_at(v, i + 1, n).unwrap_or(0);
            // Full-width ASCII folds as in jsDecode; otherwise the low byte.
            out.push(if n >= 4 {
                uni_byte(code)
            } else {
                (code & 0xff) as u8
            });
            i += 1 + n;
            // One whitespace after the escape belongs to it.
            if v.get(i).is_some_and(|b| is_space(*b)) {
                i += 1;
            }
            continue;
        }
        if c == b'\n' {
            i += 2;
            continue;
        }
        out.push(c);
        i += 2;
    }
    out
}

fn escape_seq_decode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] != b'\\' || i + 1 >= v.len() {
            out.push(v[i]);
            i += 1;
            continue;
        }
        let c = v[i + 1];
        let simple = match c {
            b'\\' | b'?' | b'\'' | b'"' => Some(c),
            _ => c_escape(c),
        };
        if let Some(b) = simple {
            out.push(b);
            i += 2;
            continue;
        }
        if let Some((b, n)) = hex_or_octal(v, i, false) {
            out.push(b);
            i += n;
            continue;
        }
        // An unknown escape stays as it was.
        out.push(b'\\');
        i += 1;
    }
    out
}

/// UTF-8 sequences as `%uHHHH` (code points above U+FFFF with more digits); invalid
/// bytes stay as they are.
fn utf8_to_unicode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut rest = v;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                push_unicode(&mut out, s);
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                push_unicode(&mut out, std::str::from_utf8(good).unwrap_or_default());
                let skip = e.error_len().unwrap_or(bad.len());
                out.extend_from_slice(&bad[..skip]);
                rest = &bad[skip..];
            }
        }
    }
    out
}

fn push_unicode(out: &mut Vec<u8>, s: &str) {
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c as u8);
        } else {
            out.extend_from_slice(format!("%u{:04x}", u32::from(c)).as_bytes());
        }
    }
}

fn compress_whitespace(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut in_space = false;
    for &b in v {
        if is_space(b) {
            if !in_space {
                out.push(b' ');
            }
            in_space = true;
        } else {
            out.push(b);
            in_space = false;
        }
    }
    out
}

fn trim_left(v: &[u8]) -> &[u8] {
    let n = v.iter().take_while(|b| is_space(**b)).count();
    &v[n..]
}

fn trim_right(v: &[u8]) -> &[u8] {
    let n = v.iter().rev().take_while(|b| is_space(**b)).count();
    &v[..v.len() - n]
}

/// Windows and Unix command-line evasions removed: `\ " ' ^` deleted, blanks before
/// `/` and `(` deleted, `,` and `;` made blanks, blanks compressed, lowercased.
fn cmd_line(v: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(v.len());
    let mut space = false;
    for &b in v {
        match b {
            b'\\' | b'"' | b'\'' | b'^' => {}
            b' ' | b',' | b';' | b'\t' | b'\r' | b'\n' => space = true,
            b'/' | b'(' => {
                space = false;
                out.push(b);
            }
            _ => {
                if space && !out.is_empty() {
                    out.push(b' ');
                }
                space = false;
                out.push(b.to_ascii_lowercase());
            }
        }
    }
    out
}

fn replace_comments(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i..].starts_with(b"/*") {
            out.push(b' ');
            match v[i + 2..].windows(2).position(|w| w == b"*/") {
                Some(p) => i += 2 + p + 2,
                None => break,
            }
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    out
}

fn remove_comments(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        let r = &v[i..];
        if r.starts_with(b"/*") {
            match r[2..].windows(2).position(|w| w == b"*/") {
                Some(p) => i += 2 + p + 2,
                None => break,
            }
        } else if r.starts_with(b"<!--") {
            match r[4..].windows(3).position(|w| w == b"-->") {
                Some(p) => i += 4 + p + 3,
                None => break,
            }
        } else if r.starts_with(b"--") || r[0] == b'#' {
            break;
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    out
}

fn remove_comments_char(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        let r = &v[i..];
        if r.starts_with(b"/*") || r.starts_with(b"*/") || r.starts_with(b"--") {
            i += 2;
        } else if r.starts_with(b"<!--") {
            i += 4;
        } else if r.starts_with(b"-->") {
            i += 3;
        } else if r[0] == b'#' {
            i += 1;
        } else {
            out.push(r[0]);
            i += 1;
        }
    }
    out
}

/// `//` collapsed, `/./` removed, `/x/../` resolved (never above the start); with
/// `win`, backslashes are slashes first.
fn normalize_path(v: &[u8], win: bool) -> Vec<u8> {
    let v: Vec<u8> = if win {
        v.iter()
            .map(|b| if *b == b'\\' { b'/' } else { *b })
            .collect()
    } else {
        v.to_vec()
    };
    let absolute = v.first() == Some(&b'/');
    let trailing = v.last() == Some(&b'/') || v.ends_with(b"/.") || v.ends_with(b"/..");
    let mut parts: Vec<&[u8]> = Vec::new();
    for seg in v.split(|b| *b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                if parts.last().is_some_and(|p| *p != b"..") {
                    parts.pop();
                } else if !absolute {
                    parts.push(seg);
                }
            }
            s => parts.push(s),
        }
    }
    let mut out = Vec::with_capacity(v.len());
    if absolute {
        out.push(b'/');
    }
    out.extend(parts.join(&b'/'));
    if trailing && !parts.is_empty() {
        out.push(b'/');
    }
    out
}

fn hex_decode(v: &[u8]) -> Vec<u8> {
    v.chunks(2)
        .filter_map(|c| match c {
            [a, b] => Some(hex_val(*a)? * 16 + hex_val(*b)?),
            _ => None,
        })
        .collect()
}

/// Base64 (standard alphabet, `=` padding optional); `ext` skips characters outside the
/// alphabet, otherwise decoding stops at the first one.
fn base64_decode(v: &[u8], ext: bool) -> Vec<u8> {
    let val = |b: u8| -> Option<u32> {
        Some(u32::from(match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        }))
    };
    let mut out = Vec::with_capacity(v.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in v {
        if b == b'=' {
            break;
        }
        let Some(x) = val(b) else {
            if ext {
                continue;
            }
            break;
        };
        acc = (acc << 6) | x;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn t(name: &str, input: &str) -> Vec<u8> {
        apply(name, input.as_bytes()).unwrap().into_owned()
    }

    #[test]
    fn values_left_unchanged_without_running_are_those_the_transformation_keeps() {
        let values: &[&[u8]] = &[
            b"",
            b"plain",
            b"Mixed Case",
            b"a%41+b",
            b"x&amp;y",
            b"a\\x41\\",
            b"nul\0here",
            b" \t spaced \xa0",
            "caf\u{e9}".as_bytes(),
            b"\xff\xfe",
            b"/a/./b/../c",
        ];
        for name in crate::model::TRANSFORMS {
            for v in values {
                if unchanged(name, v) {
                    assert_eq!(run(name, v).unwrap().as_ref(), *v, "t:{name} on {v:?}");
                }
            }
        }
    }

    #[test]
    fn every_supported_name_is_implemented() {
        for name in crate::model::TRANSFORMS {
            assert!(apply(name, b"x").is_some(), "t:{name}");
        }
    }

    #[test]
    fn url_decoding_as_modsecurity() {
        assert_eq!(t("urlDecode", "a%20b+c%2"), b"a b c%2");
        assert_eq!(t("urlDecodeUni", "%u0041%uff1c%zz"), b"A<%zz");
        assert_eq!(t("urlEncode", "a b/é"), b"a+b%2f%c3%a9");
    }

    #[test]
    fn html_js_css_and_escape_decoding() {
        assert_eq!(
            t("htmlEntityDecode", "&lt;script&gt;&#x61;&#98&quot;&bogus;"),
            b"<script>ab\"&bogus;"
        );
        assert_eq!(t("jsDecode", "\\x61\\u0062\\143\\n\\q"), b"abc\nq");
        assert_eq!(t("cssDecode", "\\6a avascript\\3a \\:"), b"javascript::");
        assert_eq!(t("escapeSeqDecode", "\\x41\\101\\n\\z"), b"AA\n\\z");
    }

    #[test]
    fn whitespace_comments_and_command_lines() {
        assert_eq!(t("compressWhitespace", "a \t\n b"), b"a b");
        assert_eq!(t("removeWhitespace", " a b\u{0}"), b"ab\0");
        assert_eq!(t("replaceComments", "un/**/ion/* x"), b"un ion ");
        assert_eq!(t("removeComments", "1<!-- x -->2/*y*/3-- rest"), b"123");
        assert_eq!(t("removeCommentsChar", "a/*b*/c--d#e"), b"abcde");
        assert_eq!(
            t("cmdLine", "C^a\"t  /ETC/P'asswd;ls ,-la"),
            b"cat/etc/passwd ls -la"
        );
        assert_eq!(t("trim", " \tx \n"), b"x");
    }

    #[test]
    fn paths_lengths_hex_base64_and_digests() {
        assert_eq!(t("normalizePath", "/a/./b/../../../c//d/"), b"/c/d/");
        assert_eq!(t("normalizePathWin", "a\\b\\..\\c"), b"a/c");
        assert_eq!(t("utf8toUnicode", "aé"), b"a%u00e9");
        assert_eq!(t("length", "abcd"), b"4");
        assert_eq!(t("hexEncode", "Az"), b"417a");
        assert_eq!(t("hexDecode", "417a"), b"Az");
        assert_eq!(t("base64Decode", "YWJj!ZA"), b"abc");
        assert_eq!(t("base64DecodeExt", "YW Jj"), b"abc");
        assert_eq!(
            t("sha1", "abc"),
            [
                0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81, 0x6a, 0xba, 0x3e, 0x25, 0x71, 0x78, 0x50,
                0xc2, 0x6c, 0x9c, 0xd0, 0xd8, 0x9d
            ]
        );
    }
}

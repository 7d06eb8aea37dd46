//! The operators, compiled once when a rule loads (a pattern that does not compile
//! fails the load) and run against one transformed value at a time.
//!
//! `@rx` is the `regex` crate in bytes mode, Unicode off and `.` matching newlines,
//! which is how ModSecurity v2 compiles PCRE (DOTALL, DOLLAR_ENDONLY, no UTF): linear
//! time, no blow-up. PCRE-only syntax is rewritten first ([`pcre_to_rust`]); the few
//! patterns that need lookaround or backreferences (three in CRS 3, none in CRS 4) run
//! on `fancy-regex` with its backtracking limit. `@pm`/`@pmFromFile` are aho-corasick,
//! case-insensitive. `@detectSQLi`/`@detectXSS` are libinjection's algorithm.

use std::net::IpAddr;
use std::path::Path;

use crate::model::Operator;

/// A compiled operator.
#[derive(Debug)]
pub enum Compiled {
    Rx(regex::bytes::Regex),
    /// Lookaround or backreferences: matched on the value as (lossy) UTF-8.
    Fancy(Box<fancy_regex::Regex>),
    /// A pattern with a macro, compiled when it runs.
    RxMacro(String),
    Pm(aho_corasick::AhoCorasick),
    /// String and number comparisons whose argument may hold macros.
    Compare {
        op: Cmp,
        arg: String,
    },
    ByteRange(Box<[bool; 256]>),
    ValidateUrlEncoding,
    ValidateUtf8,
    IpMatch(Vec<(IpAddr, u8)>),
    Unconditional,
    DetectSqli,
    DetectXss,
    /// `@rbl` and `@geoLookup` need a DNS list or a GeoIP database the site does not
    /// configure: they never match (as ModSecurity without `SecGeoLookupDB`).
    Inert,
}

/// The comparisons whose argument is text (macros expanded when the rule runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ge,
    Gt,
    Le,
    Lt,
    Streq,
    BeginsWith,
    EndsWith,
    Contains,
    ContainsWord,
    Within,
}

/// What a match yields: captures for `capture` (TX:0 is the whole match).
pub type Captures = Vec<Vec<u8>>;

impl Compiled {
    /// Compiles `op`; `dir` is the rule file's directory (`@pmFromFile` names files
    /// beside it).
    pub fn new(op: &Operator, dir: &Path) -> Result<Compiled, String> {
        let arg = op.arg.as_str();
        let cmp = |op| Compiled::Compare {
            op,
            arg: arg.to_owned(),
        };
        Ok(match op.name.as_str() {
            "rx" if arg.contains("%{") => Compiled::RxMacro(arg.to_owned()),
            "rx" => rx(arg)?,
            "pm" => pm(arg.split_whitespace().map(str::to_owned).collect())?,
            "pmFromFile" | "pmf" => {
                let mut phrases = Vec::new();
                for f in arg.split_whitespace() {
                    let path = dir.join(f);
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| format!("@{} {}: {e}", op.name, path.display()))?;
                    phrases.extend(
                        text.lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty() && !l.starts_with('#'))
                            .map(str::to_owned),
                    );
                }
                pm(phrases)?
            }
            "eq" => cmp(Cmp::Eq),
            "ge" => cmp(Cmp::Ge),
            "gt" => cmp(Cmp::Gt),
            "le" => cmp(Cmp::Le),
            "lt" => cmp(Cmp::Lt),
            "streq" => cmp(Cmp::Streq),
            "beginsWith" => cmp(Cmp::BeginsWith),
            "endsWith" => cmp(Cmp::EndsWith),
            "contains" | "strmatch" => cmp(Cmp::Contains),
            "containsWord" => cmp(Cmp::ContainsWord),
            "within" => cmp(Cmp::Within),
            "validateByteRange" => byte_range(arg)?,
            "validateUrlEncoding" => Compiled::ValidateUrlEncoding,
            "validateUtf8Encoding" => Compiled::ValidateUtf8,
            "ipMatch" => Compiled::IpMatch(ip_list(arg)?),
            "unconditionalMatch" => Compiled::Unconditional,
            "detectSQLi" => Compiled::DetectSqli,
            "detectXSS" => Compiled::DetectXss,
            "rbl" | "geoLookup" => Compiled::Inert,
            other => return Err(format!("operator @{other} is not implemented")),
        })
    }

    /// Whether `value` matches (before negation), as [`Compiled::matches`] says, without
    /// building the captures: `@rx` runs without capture groups, `@pm` and `@detectSQLi`
    /// without copying what they found.
    pub fn is_match(&self, value: &[u8], expand: &dyn Fn(&str) -> String) -> bool {
        match self {
            Compiled::Rx(re) => re.is_match(value),
            Compiled::Pm(ac) => ac.is_match(value),
            Compiled::Compare { op, arg } => {
                if arg.contains("%{") {
                    compare(*op, value, expand(arg).as_bytes())
                } else {
                    compare(*op, value, arg.as_bytes())
                }
            }
            Compiled::ByteRange(allowed) => value.iter().any(|b| !allowed[usize::from(*b)]),
            Compiled::ValidateUrlEncoding => bad_url_encoding(value),
            Compiled::ValidateUtf8 => std::str::from_utf8(value).is_err(),
            Compiled::Unconditional => true,
            Compiled::DetectSqli => libinjectionrs::detect_sqli(value).is_injection(),
            Compiled::DetectXss => libinjectionrs::detect_xss(value).is_injection(),
            Compiled::Inert => false,
            Compiled::Fancy(_) | Compiled::RxMacro(_) | Compiled::IpMatch(_) => {
                self.matches(value, expand).is_some()
            }
        }
    }

    /// Whether `value` matches (before negation), with captures; `expand` expands the
    /// macros of a text argument.
    pub fn matches(&self, value: &[u8], expand: &dyn Fn(&str) -> String) -> Option<Captures> {
        match self {
            Compiled::Rx(re) => re.captures(value).map(|c| {
                c.iter()
                    .take(10)
                    .map(|m| m.map(|m| m.as_bytes().to_vec()).unwrap_or_default())
                    .collect()
            }),
            Compiled::Fancy(re) => {
                let text = String::from_utf8_lossy(value);
                match re.captures(text.as_ref()) {
                    Ok(Some(c)) => Some(
                        c.iter()
                            .take(10)
                            .map(|m| {
                                m.map(|m| m.as_str().as_bytes().to_vec())
                                    .unwrap_or_default()
                            })
                            .collect(),
                    ),
                    // No match, or the backtracking limit: not a match.
                    _ => None,
                }
            }
            Compiled::RxMacro(pattern) => match rx(&expand(pattern)) {
                Ok(c) => c.matches(value, expand),
                Err(_) => None,
            },
            Compiled::Pm(ac) => ac
                .find(value)
                .map(|m| vec![value[m.start()..m.end()].to_vec()]),
            Compiled::Compare { .. } => self.is_match(value, expand).then(|| vec![value.to_vec()]),
            Compiled::ByteRange(allowed) => value
                .iter()
                .any(|b| !allowed[usize::from(*b)])
                .then(|| vec![value.to_vec()]),
            Compiled::ValidateUrlEncoding => bad_url_encoding(value).then(|| vec![value.to_vec()]),
            Compiled::ValidateUtf8 => std::str::from_utf8(value)
                .is_err()
                .then(|| vec![value.to_vec()]),
            Compiled::IpMatch(nets) => {
                let ip: IpAddr = std::str::from_utf8(value).ok()?.trim().parse().ok()?;
                nets.iter()
                    .any(|(n, p)| in_net(ip, *n, *p))
                    .then(|| vec![value.to_vec()])
            }
            Compiled::Unconditional => Some(vec![value.to_vec()]),
            Compiled::DetectSqli => {
                let r = libinjectionrs::detect_sqli(value);
                r.is_injection().then(|| {
                    vec![r
                        .fingerprint
                        .map(|f| f.to_string().into_bytes())
                        .unwrap_or_default()]
                })
            }
            Compiled::DetectXss => libinjectionrs::detect_xss(value)
                .is_injection()
                .then(|| vec![value.to_vec()]),
            Compiled::Inert => None,
        }
    }
}

fn rx(pattern: &str) -> Result<Compiled, String> {
    let rewritten = pcre_to_rust(pattern);
    match regex::bytes::RegexBuilder::new(&rewritten)
        .unicode(false)
        .dot_matches_new_line(true)
        .size_limit(64 << 20)
        .build()
    {
        Ok(re) => Ok(Compiled::Rx(re)),
        Err(first) => fancy_regex::RegexBuilder::new(&rewritten)
            .backtrack_limit(100_000)
            .build()
            .map(|re| Compiled::Fancy(Box::new(re)))
            .map_err(|e| format!("@rx {pattern:?} does not compile: {first}; {e}")),
    }
}

fn pm(phrases: Vec<String>) -> Result<Compiled, String> {
    aho_corasick::AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(phrases)
        .map(Compiled::Pm)
        .map_err(|e| format!("@pm: {e}"))
}

/// PCRE syntax the `regex` crate reads differently or not at all, rewritten to mean
/// what PCRE means: possessive quantifiers (`*+`, `++`, `?+`, `}+`, taken as greedy),
/// a `{` that does not start a counted repetition (a literal), a `[` inside a class (a
/// literal), `\<` and `\>` (literals in PCRE, word boundaries in `regex`), `\x{HH}`
/// (one byte), and non-ASCII characters (their UTF-8 bytes, as PCRE without UTF reads
/// them).
pub fn pcre_to_rust(p: &str) -> String {
    let chars: Vec<char> = p.chars().collect();
    let mut out = String::with_capacity(p.len() + 8);
    let mut in_class = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            let Some(&n) = chars.get(i + 1) else {
                out.push_str("\\\\");
                break;
            };
            if n == '<' || n == '>' {
                out.push(n);
                i += 2;
                continue;
            }
            if n == 'x' && chars.get(i + 2) == Some(&'{') {
                if let Some(end) = chars[i + 3..].iter().position(|c| *c == '}') {
                    let hex: String = chars[i + 3..i + 3 + end].iter().collect();
                    if let Ok(v) = u32::from_str_radix(&hex, 16) {
                        if v <= 0xff {
                            out.push_str(&format!("\\x{v:02X}"));
                            i += 4 + end;
                            continue;
                        }
                    }
                }
            }
            out.push(c);
            push_char(&mut out, n);
            i += 2;
            continue;
        }
        if in_class {
            match c {
                ']' if !class_start(&chars, i) => in_class = false,
                '[' if chars.get(i + 1) != Some(&':') => {
                    out.push_str("\\[");
                    i += 1;
                    continue;
                }
                _ => {}
            }
            push_char(&mut out, c);
            i += 1;
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                out.push(c);
                // `[]...]` and `[^]...]`: the first `]` is a literal.
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i + 1) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
                i += 1;
                continue;
            }
            '{' if !counted(&chars, i) => {
                out.push_str("\\{");
                i += 1;
                continue;
            }
            '*' | '+' | '?' | '}' if chars.get(i + 1) == Some(&'+') => {
                // A possessive quantifier: greedy here.
                out.push(c);
                i += 2;
                continue;
            }
            _ => {}
        }
        push_char(&mut out, c);
        i += 1;
    }
    out
}

/// Whether the `]` at `i` is the first character of its class (a literal).
fn class_start(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1] == '[' || (chars[i - 1] == '^' && i > 1 && chars[i - 2] == '['))
}

/// Whether the `{` at `i` starts `{n}`, `{n,}` or `{n,m}`.
fn counted(chars: &[char], i: usize) -> bool {
    let Some(end) = chars[i + 1..].iter().position(|c| *c == '}') else {
        return false;
    };
    let inner: String = chars[i + 1..i + 1 + end].iter().collect();
    let (a, b) = match inner.split_once(',') {
        Some((a, b)) => (a, Some(b)),
        None => (inner.as_str(), None),
    };
    !a.is_empty()
        && a.bytes().all(|b| b.is_ascii_digit())
        && b.is_none_or(|b| b.bytes().all(|b| b.is_ascii_digit()))
}

fn push_char(out: &mut String, c: char) {
    if c.is_ascii() {
        out.push(c);
    } else {
        let mut buf = [0u8; 4];
        for b in c.encode_utf8(&mut buf).bytes() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
}

/// ModSecurity's number: leading blanks, a sign, digits; anything else is 0.
fn number(v: &[u8]) -> i64 {
    if !v.is_ascii() {
        return number_text(v);
    }
    // ASCII (almost every value): the same reading without a `str`.
    let start = v
        .iter()
        .position(|b| !matches!(b, b'\t'..=b'\r' | b' '))
        .unwrap_or(v.len());
    let v = &v[start..];
    let (negative, digits) = match v.first() {
        Some(b'-') => (true, &v[1..]),
        Some(b'+') => (false, &v[1..]),
        _ => (false, v),
    };
    let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 {
        return 0;
    }
    // Accumulated towards the sign so that i64::MIN reads; an overflow is 0 (as a
    // failed parse).
    digits[..n]
        .iter()
        .try_fold(0i64, |acc, d| {
            let d = i64::from(d - b'0');
            let acc = acc.checked_mul(10)?;
            if negative {
                acc.checked_sub(d)
            } else {
                acc.checked_add(d)
            }
        })
        .unwrap_or(0)
}

/// [`number`] read through `str` (its definition; any input).
fn number_text(v: &[u8]) -> i64 {
    let s = std::str::from_utf8(v).unwrap_or("").trim_start();
    let end = s
        .char_indices()
        .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && (*c == '-' || *c == '+')))
        .count();
    s[..end].parse().unwrap_or(0)
}

fn compare(op: Cmp, v: &[u8], arg: &[u8]) -> bool {
    let contains = |hay: &[u8], needle: &[u8]| {
        needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
    };
    match op {
        Cmp::Eq => number(v) == number(arg),
        Cmp::Ge => number(v) >= number(arg),
        Cmp::Gt => number(v) > number(arg),
        Cmp::Le => number(v) <= number(arg),
        Cmp::Lt => number(v) < number(arg),
        Cmp::Streq => v == arg,
        Cmp::BeginsWith => v.starts_with(arg),
        Cmp::EndsWith => v.ends_with(arg),
        Cmp::Contains => contains(v, arg),
        Cmp::ContainsWord => {
            let word = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
            !arg.is_empty()
                && v.windows(arg.len()).enumerate().any(|(i, w)| {
                    w == arg
                        && !word(i.checked_sub(1).and_then(|j| v.get(j)))
                        && !word(v.get(i + arg.len()))
                })
        }
        // The value is found within the argument (an empty value never is).
        Cmp::Within => !v.is_empty() && contains(arg, v),
    }
}

fn byte_range(arg: &str) -> Result<Compiled, String> {
    let mut allowed = Box::new([false; 256]);
    for part in arg.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parse = |s: &str| {
            s.trim()
                .parse::<u8>()
                .map_err(|_| format!("@validateByteRange {arg:?}: {s:?} is not a byte"))
        };
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => (parse(part)?, parse(part)?),
        };
        for x in a..=b {
            allowed[usize::from(x)] = true;
        }
    }
    Ok(Compiled::ByteRange(allowed))
}

fn bad_url_encoding(v: &[u8]) -> bool {
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' {
            match v.get(i + 1..i + 3) {
                Some([a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i += 3,
                _ => return true,
            }
        } else {
            i += 1;
        }
    }
    false
}

fn ip_list(arg: &str) -> Result<Vec<(IpAddr, u8)>, String> {
    arg.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (a, p) = s.split_once('/').unwrap_or((s, ""));
            let ip: IpAddr = a
                .parse()
                .map_err(|_| format!("@ipMatch: {s:?} is not an address or network"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let prefix = if p.is_empty() {
                max
            } else {
                p.parse()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| format!("@ipMatch: {s:?} has a bad prefix"))?
            };
            Ok((ip, prefix))
        })
        .collect()
}

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & m == u32::from(n) & m
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & m == u128::from(n) & m
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::model::parse_operator;

    fn op(text: &str) -> Compiled {
        Compiled::new(&parse_operator(text).unwrap(), Path::new(".")).unwrap()
    }

    fn hit(text: &str, value: &str) -> bool {
        op(text)
            .matches(value.as_bytes(), &|s| s.replace("%{tx.n}", "5"))
            .is_some()
    }

    #[test]
    fn numbers_read_bytewise_as_through_text() {
        let cases: &[&[u8]] = &[
            b"",
            b"0",
            b"42",
            b" \t\n\x0b\x0c\r7x",
            b"-5",
            b"+5",
            b"-",
            b"+",
            b"--1",
            b"5-",
            b"9223372036854775807",
            b"9223372036854775808",
            b"-9223372036854775808",
            b"-9223372036854775809",
            b"00012",
            b" - 3",
            b"\x1c5",
            b"12.5",
            b"abc",
        ];
        for v in cases {
            assert_eq!(number(v), number_text(v), "{v:?}");
        }
    }

    #[test]
    fn pcre_syntax_is_rewritten_to_mean_the_same() {
        assert_eq!(pcre_to_rust(r"a++b*+"), "a+b*");
        assert_eq!(pcre_to_rust(r"a{b}c{2,3}"), r"a\{b}c{2,3}");
        assert_eq!(pcre_to_rust(r"[a[b\<]"), r"[a\[b<]");
        assert_eq!(pcre_to_rust(r"\x{e2}é"), r"\xE2\xC3\xA9");
        assert_eq!(pcre_to_rust(r"[]a]"), r"[\]a]");
    }

    #[test]
    fn rx_is_bytes_without_unicode_and_dot_matches_newline() {
        assert!(hit(r"@rx (?i)union.select", "UNION\nSELECT"));
        // \xac is the byte 0xac, not the code point U+00AC (bytes C2 AC).
        let byte = op(r"@rx ^\xac$");
        assert!(byte.matches(b"\xac", &|s| s.to_owned()).is_some());
        assert!(byte.matches("¬".as_bytes(), &|s| s.to_owned()).is_none());
        let c = op(r"@rx ^(a+)(b)")
            .matches(b"aab", &|s| s.to_owned())
            .unwrap();
        assert_eq!(c, [b"aab".to_vec(), b"aa".to_vec(), b"b".to_vec()]);
        // Lookahead falls back to fancy-regex.
        assert!(matches!(op(r"@rx a(?=b)"), Compiled::Fancy(_)));
        assert!(hit(r"@rx a(?=b)", "ab") && !hit(r"@rx a(?=b)", "ac"));
        assert!(Compiled::new(&parse_operator("@rx (").unwrap(), Path::new(".")).is_err());
    }

    #[test]
    fn phrases_numbers_strings_and_validation() {
        assert!(hit("@pm select union", "xx UNION yy"));
        assert!(!hit("@pm select union", "nothing"));
        assert!(hit("@ge %{tx.n}", "5") && !hit("@gt %{tx.n}", "5") && hit("@lt 10", " 9x"));
        assert!(hit("@within |GET| |POST|", "GET") && !hit("@within |GET|", ""));
        assert!(hit("@streq a", "a") && hit("@endsWith .php", "x.php"));
        assert!(
            hit("@containsWord select", "a select b") && !hit("@containsWord select", "selected")
        );
        assert!(
            hit("@validateByteRange 32-126", "a\u{1}") && !hit("@validateByteRange 32-126", "ab")
        );
        assert!(hit("@validateUrlEncoding", "%zz") && !hit("@validateUrlEncoding", "%41"));
        assert!(op("@validateUtf8Encoding")
            .matches(b"\xff", &|s| s.to_owned())
            .is_some());
        assert!(
            hit("@ipMatch 10.0.0.0/8,::1", "10.1.2.3") && !hit("@ipMatch 10.0.0.0/8", "11.0.0.1")
        );
        assert!(hit("@detectSQLi", "1' OR '1'='1") && !hit("@detectSQLi", "hello world"));
        assert!(hit("@detectXSS", "<script>alert(1)</script>") && !hit("@detectXSS", "hello"));
        assert!(!hit("@rbl sbl-xbl.spamhaus.org", "1.2.3.4"));
    }
}

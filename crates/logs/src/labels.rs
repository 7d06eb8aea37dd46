//! A stream's labels: sorted, unique names (`[a-zA-Z_][a-zA-Z0-9_]*`), at most
//! [`MAX_LABELS`] of them, values of at most [`MAX_VALUE`] bytes. Their text form is
//! Prometheus's, `{host="web1", service="lb"}`, which is also a stream's key in the store.

use std::fmt;

pub const MAX_LABELS: usize = 32;
pub const MAX_VALUE: usize = 1024;

/// Sorted label pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Vec<(String, String)>);

/// Whether `name` is a label name.
pub fn valid_name(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

impl Labels {
    /// Sorts and checks `pairs`: a bad name, a duplicate, too many or a too long value is
    /// refused with what is wrong.
    pub fn new(mut pairs: Vec<(String, String)>) -> Result<Self, String> {
        pairs.sort();
        if pairs.len() > MAX_LABELS {
            return Err(format!("{} labels; at most {MAX_LABELS}", pairs.len()));
        }
        for (i, (k, v)) in pairs.iter().enumerate() {
            if !valid_name(k) {
                return Err(format!("{k:?} is not a label name"));
            }
            if i > 0 && pairs[i - 1].0 == *k {
                return Err(format!("label {k} twice"));
            }
            if v.len() > MAX_VALUE {
                return Err(format!("label {k}: {} bytes; at most {MAX_VALUE}", v.len()));
            }
        }
        Ok(Labels(pairs))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// These labels with `extra` added (an existing name keeps its value, as Loki's
    /// parsers do not overwrite a stream label).
    pub fn with(&self, extra: &[(String, String)]) -> Labels {
        let mut v = self.0.clone();
        for (k, val) in extra {
            if self.get(k).is_none() && !v.iter().any(|(n, _)| n == k) {
                v.push((k.clone(), val.clone()));
            }
        }
        v.sort();
        Labels(v)
    }

    /// Only the labels named in `by` (for `sum by (...)`).
    pub fn only(&self, by: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(k, _)| by.contains(k))
                .cloned()
                .collect(),
        )
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        )
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}=")?;
            write_quoted(f, v)?;
        }
        f.write_str("}")
    }
}

fn write_quoted(f: &mut fmt::Formatter<'_>, v: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in v.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

/// A cursor over query or label text, shared with the LogQL parser.
pub(crate) struct Cursor<'a> {
    pub text: &'a str,
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(text: &'a str) -> Self {
        Cursor { text, pos: 0 }
    }

    pub fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    pub fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    /// Consumes `token` (after whitespace) if it comes next.
    pub fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    pub fn expect(&mut self, token: &str) -> Result<(), String> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.error(&format!("expected `{token}`")))
        }
    }

    pub fn error(&self, what: &str) -> String {
        let near: String = self.rest().chars().take(20).collect();
        if near.is_empty() {
            format!("{what} at the end")
        } else {
            format!("{what} at position {} (near `{near}`)", self.pos)
        }
    }

    /// A name: `[a-zA-Z_][a-zA-Z0-9_]*`.
    pub fn ident(&mut self) -> Option<&'a str> {
        self.skip_ws();
        let rest = self.rest();
        let len = rest
            .bytes()
            .enumerate()
            .take_while(|(i, c)| {
                c.is_ascii_alphabetic() || *c == b'_' || (*i > 0 && c.is_ascii_digit())
            })
            .count();
        (len > 0).then(|| {
            self.pos += len;
            &rest[..len]
        })
    }

    /// A string: `"..."` with Go's escapes (`\"`, `\\`, `\n`, `\t`), or a raw `` `...` ``.
    pub fn string(&mut self) -> Result<String, String> {
        self.skip_ws();
        let rest = self.rest();
        if let Some(raw) = rest.strip_prefix('`') {
            let end = raw
                .find('`')
                .ok_or_else(|| self.error("an unterminated string"))?;
            self.pos += end + 2;
            return Ok(raw[..end].to_owned());
        }
        if !rest.starts_with('"') {
            return Err(self.error("expected a string"));
        }
        let mut out = String::new();
        let mut chars = rest.char_indices().skip(1);
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some(c @ ('"' | '\\' | '\'')) => out.push(c),
                    _ => return Err(self.error("an unknown escape in a string")),
                },
                c => out.push(c),
            }
        }
        Err(self.error("an unterminated string"))
    }
}

/// Parses `{a="b", c="d"}` (the stream labels of a push).
pub fn parse_labels(text: &str) -> Result<Labels, String> {
    let mut c = Cursor::new(text);
    c.expect("{")?;
    let mut pairs = Vec::new();
    if !c.eat("}") {
        loop {
            let name = c.ident().ok_or_else(|| c.error("expected a label name"))?;
            c.expect("=")?;
            let value = c.string()?;
            pairs.push((name.to_owned(), value));
            if c.eat("}") {
                break;
            }
            c.expect(",")?;
        }
    }
    c.skip_ws();
    if !c.rest().is_empty() {
        return Err(c.error("unexpected text after the labels"));
    }
    Labels::new(pairs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn labels_parse_print_and_refuse() {
        let l = parse_labels(r#"{service="lb", host="lb1", stream="a\"b"}"#).unwrap();
        assert_eq!(
            l.to_string(),
            r#"{host="lb1", service="lb", stream="a\"b"}"#
        );
        assert_eq!(parse_labels(&l.to_string()).unwrap(), l);
        assert_eq!(l.get("host"), Some("lb1"));
        assert_eq!(parse_labels("{}").unwrap(), Labels::default());
        for bad in [
            "{host=web1}",
            "{1a=\"x\"}",
            "{a=\"x\", a=\"y\"}",
            "host=\"x\"",
            "{a=\"x\"} z",
            "{a=\"x\"",
        ] {
            assert!(parse_labels(bad).is_err(), "{bad}");
        }
    }
}

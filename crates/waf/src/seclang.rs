//! SecLang's file syntax, as Apache's config reader (which ModSecurity v2 and the CRS
//! assume) reads it: a directive per logical line, a `\` at the end of a line joining
//! the next one, `#` comments, and arguments separated by blanks, double- or
//! single-quoted when they hold blanks, where a backslash escapes only the quote
//! character (every other backslash stays, so `"\d+"` keeps its regex escape). Also
//! the splits inside a rule's arguments: targets on `|`, actions on `,`, an action's
//! value in single quotes.

/// One directive: its name, its arguments (quotes removed), and the line it starts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub line: usize,
}

/// A syntax error at a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

/// The directives of a file's text.
pub fn directives(text: &str) -> Result<Vec<Directive>, SyntaxError> {
    let mut out = Vec::new();
    let mut logical = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if logical.is_empty() {
            start = i + 1;
            let t = line.trim_start();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
        }
        match line.strip_suffix('\\') {
            Some(head) => logical.push_str(head),
            None => {
                logical.push_str(line);
                out.push(directive(&logical, start)?);
                logical.clear();
            }
        }
    }
    if !logical.trim().is_empty() {
        out.push(directive(&logical, start)?);
    }
    Ok(out)
}

fn directive(text: &str, line: usize) -> Result<Directive, SyntaxError> {
    let mut words = words(text).map_err(|message| SyntaxError { line, message })?;
    if words.is_empty() {
        return Err(SyntaxError {
            line,
            message: "empty directive".into(),
        });
    }
    let name = words.remove(0);
    Ok(Directive {
        name,
        args: words,
        line,
    })
}

/// Splits a logical line into words: blanks separate, quotes group, `\"` (or `\'` in
/// single quotes) is the quote itself.
fn words(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            return Ok(out);
        };
        let mut word = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                if c == '\\' && chars.peek() == Some(&first) {
                    word.push(first);
                    chars.next();
                } else if c == first {
                    closed = true;
                    break;
                } else {
                    word.push(c);
                }
            }
            if !closed {
                return Err(format!("unterminated quote {first}"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        out.push(word);
    }
}

/// A rule's targets split on `|`, except inside a `/regex/` or `'quoted'` selector.
pub fn split_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_regex = false;
    let mut in_quote = false;
    let mut prev = '\0';
    for c in text.chars() {
        match c {
            '|' if !in_regex && !in_quote => {
                out.push(std::mem::take(&mut cur).trim().to_owned());
                prev = c;
                continue;
            }
            '/' if !in_quote && prev != '\\' => {
                // A selector regex starts right after `:` (XML's selector is XPath).
                let xml = cur.trim_start_matches(['!', '&']).starts_with("XML:");
                if in_regex || (prev == ':' && !xml) {
                    in_regex = !in_regex;
                }
            }
            '\'' if !in_regex => in_quote = !in_quote,
            _ => {}
        }
        cur.push(c);
        prev = c;
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_owned());
    }
    out
}

/// A rule's actions split on `,` outside single quotes, each `(name, value)` with the
/// value's quotes removed.
pub fn split_actions(text: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut prev = '\0';
    for c in text.chars() {
        if c == '\'' && prev != '\\' {
            in_quote = !in_quote;
        }
        if c == ',' && !in_quote {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
        prev = c;
    }
    if in_quote {
        return Err(format!("unterminated ' in actions: {text}"));
    }
    parts.push(cur);
    let mut out = Vec::new();
    for p in parts {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        match p.split_once(':') {
            Some((name, value)) => {
                let value = value.trim();
                let value = value
                    .strip_prefix('\'')
                    .and_then(|v| v.strip_suffix('\''))
                    .unwrap_or(value);
                out.push((name.trim().to_owned(), Some(value.replace("\\'", "'"))));
            }
            None => out.push((p.to_owned(), None)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn continuation_lines_quotes_and_comments() {
        let text = "# a comment\n\nSecRule REQUEST_HEADERS:Content-Length \"!@rx ^\\d+$\" \\\n    \"id:920160,\\\n    phase:1,\\\n    msg:'Content-Length is not \\'numeric\\''\"\nSecMarker \"END\"\n";
        let d = directives(text).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "SecRule");
        assert_eq!(d[0].line, 3);
        assert_eq!(d[0].args[0], "REQUEST_HEADERS:Content-Length");
        assert_eq!(d[0].args[1], "!@rx ^\\d+$");
        assert_eq!(
            split_actions(&d[0].args[2]).unwrap(),
            [
                ("id".to_owned(), Some("920160".to_owned())),
                ("phase".to_owned(), Some("1".to_owned())),
                (
                    "msg".to_owned(),
                    Some("Content-Length is not 'numeric'".to_owned())
                ),
            ]
        );
        assert_eq!(d[1].line, 7);
        assert_eq!(d[1].args, ["END"]);
    }

    #[test]
    fn an_escaped_quote_is_the_quote_and_other_backslashes_stay() {
        let d = directives("SecRule ARGS \"@rx a\\\"b\\x22\" \"id:1\"").unwrap();
        assert_eq!(d[0].args[1], "@rx a\"b\\x22");
        assert!(directives("SecRule ARGS \"@rx open").is_err());
    }

    #[test]
    fn targets_split_outside_regex_selectors() {
        assert_eq!(
            split_targets("REQUEST_COOKIES|!REQUEST_COOKIES:/__utm|x/|ARGS:'a|b'|XML:/*|ARGS"),
            [
                "REQUEST_COOKIES",
                "!REQUEST_COOKIES:/__utm|x/",
                "ARGS:'a|b'",
                "XML:/*",
                "ARGS"
            ]
        );
    }
}

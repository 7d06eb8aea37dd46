//! One sample line of the Prometheus text format, parsed the way the tests that hold
//! rampart's output against a real exporter need it: name, labels (quoted values with
//! `\\`, `\"` and `\n` escapes) and value, `+Inf`/`-Inf` included. Enough of the format
//! for node_exporter's, mysqld_exporter's and the agent's output; not a validator (a
//! test that reads a bad line panics, naming it).

use std::collections::BTreeMap;

/// A sample line's name, labels and value; `None` for a comment or an empty line.
pub fn sample(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| bad(line));
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| bad(line)),
    };
    let (name, mut rest) = series.split_once('{').unwrap_or((series, ""));
    let mut labels = BTreeMap::new();
    while let Some((k, r)) = rest.split_once("=\"") {
        let mut v = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            match chars.next().unwrap_or_else(|| bad(line)) {
                (_, '\\') => match chars.next().unwrap_or_else(|| bad(line)).1 {
                    'n' => v.push('\n'),
                    c => v.push(c),
                },
                (i, '"') => break i,
                (_, c) => v.push(c),
            }
        };
        labels.insert(k.trim_start_matches(',').to_owned(), v);
        rest = &r[end + 1..];
    }
    Some((name.to_owned(), labels, value))
}

fn bad<T>(line: &str) -> T {
    panic!("not a sample line: {line:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line and what it parses to: name, labels, value.
    type Case<'a> = (&'a str, Option<(&'a str, &'a [(&'a str, &'a str)], f64)>);

    #[test]
    fn names_labels_escapes_and_infinities() {
        let cases: &[Case<'_>] = &[
            ("# HELP a b", None),
            ("", None),
            ("a 1", Some(("a", &[], 1.0))),
            (
                r#"a_bucket{le="+Inf",x="q\"\\\nz"} 3"#,
                Some(("a_bucket", &[("le", "+Inf"), ("x", "q\"\\\nz")], 3.0)),
            ),
            ("b{} -Inf", Some(("b", &[], f64::NEG_INFINITY))),
        ];
        for (line, want) in cases {
            let got = sample(line);
            let want = want.map(|(n, ls, v)| {
                let ls: BTreeMap<String, String> = ls
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
                (n.to_owned(), ls, v)
            });
            assert_eq!(got, want, "{line}");
        }
    }
}

//! The Prometheus text exposition format 0.0.4 of a list of [`Family`]s, as the agent's
//! own `/metrics` serves it and `promtool check metrics` reads it.

use std::fmt::Write;

use crate::{Family, Kind};

/// The families in the given order: `# HELP` (left out when the help is empty), `# TYPE`,
/// then one line per sample. A family without samples writes nothing, as the Go client
/// library does.
pub fn text(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families.iter().filter(|f| !f.samples.is_empty()) {
        if !f.help.is_empty() {
            out.push_str("# HELP ");
            out.push_str(&f.name);
            out.push(' ');
            escape(&mut out, &f.help, false);
            out.push('\n');
        }
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Untyped => "untyped",
        };
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# TYPE {} {kind}", f.name);
        for s in &f.samples {
            out.push_str(&f.name);
            out.push_str(s.suffix);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(k);
                    out.push_str("=\"");
                    escape(&mut out, v, true);
                    out.push('"');
                }
                out.push('}');
            }
            out.push(' ');
            number(&mut out, s.value);
            out.push('\n');
        }
    }
    out
}

/// The families of several jobs as one exposition: a family that more than one job
/// exports (each scrape job's `up`) is written once, its samples labelled with their
/// `job`, since a name may have only one `# HELP`/`# TYPE` and one sample per label set.
pub fn text_of_jobs(groups: &[(String, Vec<Family>)]) -> String {
    let jobs_of = |name: &str| {
        groups
            .iter()
            .filter(|(_, fs)| fs.iter().any(|f| f.name == name && !f.samples.is_empty()))
            .count()
    };
    let mut merged: Vec<Family> = Vec::new();
    for (job, families) in groups {
        for f in families {
            let shared = jobs_of(&f.name) > 1;
            let samples = f.samples.iter().map(|s| {
                let mut s = s.clone();
                if shared {
                    s.labels.insert(0, ("job".to_owned(), job.clone()));
                }
                s
            });
            match merged.iter_mut().find(|m| m.name == f.name) {
                Some(m) => m.samples.extend(samples),
                None => merged.push(Family {
                    name: f.name.clone(),
                    help: f.help.clone(),
                    kind: f.kind,
                    samples: samples.collect(),
                }),
            }
        }
    }
    text(&merged)
}

/// Escapes `\` and newline, and in label values also `"`.
fn escape(out: &mut String, s: &str, quote: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// A float as Prometheus parses it (Go's `strconv.ParseFloat`): `NaN`, `+Inf`, `-Inf`;
/// integers below 2^53 in full without exponent; other values in the shortest form that
/// reads back exactly, plain decimal for moderate magnitudes and with an exponent for
/// very large or very small ones.
fn number(out: &mut String, v: f64) {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    let _ = if v.is_nan() {
        write!(out, "NaN")
    } else if v == f64::INFINITY {
        write!(out, "+Inf")
    } else if v == f64::NEG_INFINITY {
        write!(out, "-Inf")
    } else if v.fract() == 0.0 && v.abs() < EXACT {
        // Rust prints integral floats without a fraction or exponent: 3.0 → "3".
        write!(out, "{v}")
    } else if v.abs() >= 1e-4 && v.abs() < 1e16 {
        write!(out, "{v}")
    } else {
        write!(out, "{v:e}")
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sample;

    fn check(families: &[Family], expect: &str) {
        assert_eq!(text(families), expect);
    }

    fn fam(name: &str, help: &str, kind: Kind, samples: &[(&[(&str, &str)], f64)]) -> Family {
        Family {
            name: name.to_owned(),
            help: help.to_owned(),
            kind,
            samples: samples
                .iter()
                .map(|(labels, value)| Sample {
                    labels: labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    value: *value,
                    suffix: "",
                })
                .collect(),
        }
    }

    fn value(v: f64) -> String {
        let f = fam("m", "", Kind::Gauge, &[(&[], v)]);
        let t = text(&[f]);
        t.strip_prefix("# TYPE m gauge\nm ")
            .and_then(|t| t.strip_suffix('\n'))
            .unwrap_or(&t)
            .to_owned()
    }

    #[test]
    fn families_in_the_given_order_with_help_type_and_labels() {
        check(
            &[
                fam(
                    "b_total",
                    "Bees.",
                    Kind::Counter,
                    &[(&[("x", "1"), ("y", "2")], 3.0), (&[("x", "2")], 4.5)],
                ),
                fam("a", "A gauge.", Kind::Gauge, &[(&[], 1.0)]),
                fam("u", "", Kind::Untyped, &[(&[], 0.0)]),
            ],
            "# HELP b_total Bees.\n# TYPE b_total counter\nb_total{x=\"1\",y=\"2\"} 3\n\
             b_total{x=\"2\"} 4.5\n# HELP a A gauge.\n# TYPE a gauge\na 1\n# TYPE u untyped\nu 0\n",
        );
    }

    #[test]
    fn a_family_several_jobs_export_is_written_once_with_their_job_labels() {
        let up = |v: f64| fam("up", "Scraped.", Kind::Gauge, &[(&[], v)]);
        let groups = vec![
            (
                "lb".to_owned(),
                vec![fam("a", "A.", Kind::Gauge, &[(&[], 1.0)])],
            ),
            ("lb".to_owned(), vec![up(1.0)]),
            ("gate".to_owned(), vec![up(0.0)]),
            (
                "agent".to_owned(),
                vec![fam("b", "B.", Kind::Gauge, &[(&[], 2.0)])],
            ),
        ];
        assert_eq!(
            text_of_jobs(&groups),
            "# HELP a A.\n# TYPE a gauge\na 1\n# HELP up Scraped.\n# TYPE up gauge\n\
             up{job=\"lb\"} 1\nup{job=\"gate\"} 0\n# HELP b B.\n# TYPE b gauge\nb 2\n"
        );
    }

    #[test]
    fn empty_families_and_empty_lists_write_nothing() {
        check(&[], "");
        check(&[fam("a", "help", Kind::Gauge, &[])], "");
    }

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        let cases = [
            ("plain", r#"m{l="plain"} 1"#),
            ("a\\b", r#"m{l="a\\b"} 1"#),
            ("say \"hi\"", r#"m{l="say \"hi\""} 1"#),
            ("two\nlines", r#"m{l="two\nlines"} 1"#),
            ("\\n", r#"m{l="\\n"} 1"#),
            ("tab\there", "m{l=\"tab\there\"} 1"),
            ("{}=,é", r#"m{l="{}=,é"} 1"#),
        ];
        for (v, line) in cases {
            check(
                &[fam("m", "", Kind::Gauge, &[(&[("l", v)], 1.0)])],
                &format!("# TYPE m gauge\n{line}\n"),
            );
        }
    }

    #[test]
    fn help_escapes_backslash_and_newline_but_not_quotes() {
        let cases = [
            ("Plain.", "Plain."),
            ("C:\\dir", "C:\\\\dir"),
            ("one\ntwo", "one\\ntwo"),
            ("\"quoted\"", "\"quoted\""),
        ];
        for (help, want) in cases {
            check(
                &[fam("m", help, Kind::Gauge, &[(&[], 1.0)])],
                &format!("# HELP m {want}\n# TYPE m gauge\nm 1\n"),
            );
        }
    }

    #[test]
    fn values_as_prometheus_parses_them() {
        let cases: [(f64, &str); 22] = [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (-3.0, "-3"),
            (2.5, "2.5"),
            (0.1, "0.1"),
            (1795410459.0, "1795410459"),
            (25276510208.0, "25276510208"),
            (270553174016.0, "270553174016"),
            (9007199254740991.0, "9007199254740991"),
            (9007199254740992.0, "9007199254740992"),
            (1e16, "1e16"),
            (1.2345678901234568e20, "1.2345678901234568e20"),
            (1e300, "1e300"),
            (-1.5e-10, "-1.5e-10"),
            (0.0001, "0.0001"),
            (0.00001, "1e-5"),
            (1234.5678, "1234.5678"),
            (f64::MAX, "1.7976931348623157e308"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (v, want) in cases {
            let got = value(v);
            assert_eq!(got, want, "{v:?}");
            // Every form reads back as the same number.
            if !v.is_nan() {
                let back = match got.as_str() {
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    s => s.parse().unwrap(),
                };
                assert_eq!(back.to_bits(), v.to_bits(), "{got}");
            }
        }
    }
}

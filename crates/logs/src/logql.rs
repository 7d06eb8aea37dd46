//! The LogQL subset the store answers:
//!
//! - a stream selector, `{host="web1", service=~"lb|web", stream!="slow"}` (`=`, `!=`,
//!   `=~`, `!~`; regexes fully anchored, as in Prometheus), with at least one matcher
//!   that an empty value does not satisfy, as Loki requires;
//! - line filters, `|= "text"`, `!= "text"`, `|~ "regex"`, `!~ "regex"` (unanchored);
//! - `| json`: the line's JSON fields as labels (nested objects joined with `_`, names
//!   made label-safe, arrays skipped; a stream label keeps its value);
//! - label filters after it, `| status >= 500`, `| method = "GET"`, `| path =~ "/api.*"`
//!   (`=`, `==`, `!=`, `=~`, `!~`, `>`, `>=`, `<`, `<=`; a number compares as a number);
//! - the metric queries `count_over_time(<log query> [range])` and
//!   `rate(<log query> [range])`, optionally inside `sum(...)` or `sum by (a, b) (...)`.

use regex::Regex;

use crate::labels::{valid_name, Cursor, Labels};

/// A parsed query.
#[derive(Clone, Debug)]
pub enum Query {
    Log(LogQuery),
    Metric(MetricQuery),
}

#[derive(Clone, Debug)]
pub struct LogQuery {
    pub matchers: Vec<Matcher>,
    pub stages: Vec<Stage>,
}

#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<Regex>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    Nre,
}

#[derive(Clone, Debug)]
pub enum Stage {
    Line(LineFilter),
    Json,
    Label(LabelFilter),
}

#[derive(Clone, Debug)]
pub struct LineFilter {
    pub op: LineOp,
    pub text: String,
    re: Option<Regex>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineOp {
    Contains,
    NotContains,
    Re,
    NotRe,
}

#[derive(Clone, Debug)]
pub struct LabelFilter {
    pub name: String,
    pub op: Cmp,
    pub value: LabelValue,
    re: Option<Regex>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Re,
    Nre,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LabelValue {
    Str(String),
    Num(f64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeFn {
    CountOverTime,
    Rate,
}

#[derive(Clone, Debug)]
pub struct MetricQuery {
    pub func: RangeFn,
    pub log: LogQuery,
    /// The range, in nanoseconds.
    pub range: i64,
    /// `sum(...)`: `Some(by)` (empty: everything in one series); `None`: per stream.
    pub sum_by: Option<Vec<String>>,
}

/// The longest query text accepted.
pub const MAX_QUERY: usize = 4096;

fn anchored(re: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{re})$")).map_err(|e| format!("bad regex {re:?}: {e}"))
}

fn unanchored(re: &str) -> Result<Regex, String> {
    Regex::new(re).map_err(|e| format!("bad regex {re:?}: {e}"))
}

impl Matcher {
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Self, String> {
        let re = match op {
            MatchOp::Re | MatchOp::Nre => Some(anchored(value)?),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_owned(),
            op,
            value: value.to_owned(),
            re,
        })
    }

    /// Whether a label's value (`""` when absent) satisfies this matcher.
    pub fn matches(&self, value: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Eq, _) => value == self.value,
            (MatchOp::Ne, _) => value != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(value),
            (MatchOp::Nre, Some(re)) => !re.is_match(value),
            _ => false,
        }
    }
}

impl LogQuery {
    /// Whether a stream's labels satisfy the selector.
    pub fn selects(&self, labels: &Labels) -> bool {
        self.matchers
            .iter()
            .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
    }

    /// The substrings every selected line must contain (for the store's index).
    pub fn required_text(&self) -> Vec<&str> {
        self.stages
            .iter()
            .map_while(|s| match s {
                Stage::Line(f) => Some(f),
                _ => None,
            })
            .filter(|f| f.op == LineOp::Contains)
            .map(|f| f.text.as_str())
            .collect()
    }

    /// Runs the pipeline over one line of a stream: the labels of the result, or `None`
    /// when a filter drops it.
    pub fn process(&self, stream: &Labels, line: &str) -> Option<Labels> {
        let mut labels: Option<Labels> = None;
        for stage in &self.stages {
            match stage {
                Stage::Line(f) => {
                    let hit = match (f.op, &f.re) {
                        (LineOp::Contains, _) => line.contains(&f.text),
                        (LineOp::NotContains, _) => !line.contains(&f.text),
                        (LineOp::Re, Some(re)) => re.is_match(line),
                        (LineOp::NotRe, Some(re)) => !re.is_match(line),
                        _ => false,
                    };
                    if !hit {
                        return None;
                    }
                }
                Stage::Json => {
                    let base = labels.take().unwrap_or_else(|| stream.clone());
                    let mut extracted = Vec::new();
                    if let Ok(serde_json::Value::Object(map)) =
                        serde_json::from_str::<serde_json::Value>(line)
                    {
                        flatten("", &map, &mut extracted);
                    }
                    labels = Some(base.with(&extracted));
                }
                Stage::Label(f) => {
                    let current = labels.as_ref().unwrap_or(stream);
                    if !f.passes(current.get(&f.name).unwrap_or("")) {
                        return None;
                    }
                }
            }
        }
        Some(labels.unwrap_or_else(|| stream.clone()))
    }
}

/// Loki's `| json`: nested keys joined with `_`, every character a label name may not
/// hold replaced with `_`; arrays skipped; at most 64 fields.
fn flatten(
    prefix: &str,
    map: &serde_json::Map<String, serde_json::Value>,
    out: &mut Vec<(String, String)>,
) {
    for (k, v) in map {
        if out.len() >= 64 {
            return;
        }
        let mut name: String = k
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if !prefix.is_empty() {
            name = format!("{prefix}_{name}");
        }
        if name.starts_with(|c: char| c.is_ascii_digit()) {
            name.insert(0, '_');
        }
        if !valid_name(&name) {
            continue;
        }
        match v {
            serde_json::Value::Object(m) => flatten(&name, m, out),
            serde_json::Value::Array(_) => {}
            serde_json::Value::String(s) => out.push((name, s.clone())),
            serde_json::Value::Null => out.push((name, String::new())),
            other => out.push((name, other.to_string())),
        }
    }
}

impl LabelFilter {
    fn passes(&self, value: &str) -> bool {
        match (&self.value, self.op) {
            (_, Cmp::Re) => self.re.as_ref().is_some_and(|re| re.is_match(value)),
            (_, Cmp::Nre) => self.re.as_ref().is_some_and(|re| !re.is_match(value)),
            (LabelValue::Str(s), Cmp::Eq) => value == s,
            (LabelValue::Str(s), Cmp::Ne) => value != s,
            (LabelValue::Str(s), op) => {
                let o = value.cmp(s.as_str());
                match op {
                    Cmp::Gt => o.is_gt(),
                    Cmp::Ge => o.is_ge(),
                    Cmp::Lt => o.is_lt(),
                    _ => o.is_le(),
                }
            }
            (LabelValue::Num(n), op) => {
                let Ok(v) = value.trim().parse::<f64>() else {
                    return false;
                };
                match op {
                    Cmp::Eq => v == *n,
                    Cmp::Ne => v != *n,
                    Cmp::Gt => v > *n,
                    Cmp::Ge => v >= *n,
                    Cmp::Lt => v < *n,
                    _ => v <= *n,
                }
            }
        }
    }
}

/// A Prometheus duration (`500ms`, `30s`, `5m`, `1h30m`, `2d`, `1w`) in nanoseconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = [
            ("ms", 1_000_000),
            ("s", 1_000_000_000),
            ("m", 60_000_000_000),
            ("h", 3_600_000_000_000),
            ("d", 86_400_000_000_000),
            ("w", 604_800_000_000_000),
            ("y", 31_536_000_000_000_000),
        ]
        .iter()
        .find(|(u, _)| rest.starts_with(u))
        .map(|(u, ns)| (*ns, u.len()))?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        rest = &rest[len..];
    }
    (total > 0).then_some(total)
}

/// Parses a query; the error names what was expected where.
pub fn parse(text: &str) -> Result<Query, String> {
    if text.len() > MAX_QUERY {
        return Err(format!(
            "the query is {} bytes; at most {MAX_QUERY}",
            text.len()
        ));
    }
    let mut c = Cursor::new(text);
    c.skip_ws();
    let q = if c.rest().starts_with('{') {
        Query::Log(log_query(&mut c)?)
    } else {
        Query::Metric(metric_query(&mut c)?)
    };
    c.skip_ws();
    if !c.rest().is_empty() {
        return Err(c.error("unexpected text"));
    }
    Ok(q)
}

fn metric_query(c: &mut Cursor<'_>) -> Result<MetricQuery, String> {
    let save = c.pos;
    let name = c
        .ident()
        .ok_or_else(|| c.error("expected a stream selector or a function"))?;
    if name == "sum" {
        let mut by = Vec::new();
        if c.eat("by") {
            by_list(c, &mut by)?;
        }
        c.expect("(")?;
        let mut inner = range_query(c)?;
        c.expect(")")?;
        let save_after = c.pos;
        if by.is_empty() && c.eat("by") {
            by_list(c, &mut by)?;
        } else {
            c.pos = save_after;
        }
        inner.sum_by = Some(by);
        return Ok(inner);
    }
    c.pos = save;
    range_query(c)
}

fn by_list(c: &mut Cursor<'_>, by: &mut Vec<String>) -> Result<(), String> {
    c.expect("(")?;
    if !c.eat(")") {
        loop {
            let l = c.ident().ok_or_else(|| c.error("expected a label name"))?;
            by.push(l.to_owned());
            if c.eat(")") {
                break;
            }
            c.expect(",")?;
        }
    }
    Ok(())
}

fn range_query(c: &mut Cursor<'_>) -> Result<MetricQuery, String> {
    let name = c
        .ident()
        .ok_or_else(|| c.error("expected count_over_time or rate"))?;
    let func = match name {
        "count_over_time" => RangeFn::CountOverTime,
        "rate" => RangeFn::Rate,
        other => {
            return Err(format!(
                "{other} is not supported; the store answers count_over_time, rate and sum"
            ))
        }
    };
    c.expect("(")?;
    let log = log_query(c)?;
    c.expect("[")?;
    c.skip_ws();
    let end = c.rest().find(']').ok_or_else(|| c.error("expected `]`"))?;
    let text = &c.rest()[..end];
    let range = parse_duration(text).ok_or_else(|| c.error("expected a range such as 5m"))?;
    c.pos += end + 1;
    c.expect(")")?;
    Ok(MetricQuery {
        func,
        log,
        range,
        sum_by: None,
    })
}

fn log_query(c: &mut Cursor<'_>) -> Result<LogQuery, String> {
    c.expect("{")?;
    let mut matchers = Vec::new();
    if !c.eat("}") {
        loop {
            let name = c.ident().ok_or_else(|| c.error("expected a label name"))?;
            let op = if c.eat("=~") {
                MatchOp::Re
            } else if c.eat("!~") {
                MatchOp::Nre
            } else if c.eat("!=") {
                MatchOp::Ne
            } else if c.eat("=") {
                MatchOp::Eq
            } else {
                return Err(c.error("expected =, !=, =~ or !~"));
            };
            let value = c.string()?;
            matchers.push(Matcher::new(name, op, &value)?);
            if c.eat("}") {
                break;
            }
            c.expect(",")?;
        }
    }
    if !matchers.iter().any(|m| !m.matches("")) {
        return Err(
            "queries require at least one matcher that an empty value does not satisfy, \
             such as {host=\"web1\"}"
                .into(),
        );
    }
    let mut stages = Vec::new();
    loop {
        let line_op = if c.eat("|=") {
            Some(LineOp::Contains)
        } else if c.eat("!=") {
            Some(LineOp::NotContains)
        } else if c.eat("|~") {
            Some(LineOp::Re)
        } else if c.eat("!~") {
            Some(LineOp::NotRe)
        } else {
            None
        };
        if let Some(op) = line_op {
            let text = c.string()?;
            let re = match op {
                LineOp::Re | LineOp::NotRe => Some(unanchored(&text)?),
                _ => None,
            };
            stages.push(Stage::Line(LineFilter { op, text, re }));
            continue;
        }
        if !c.eat("|") {
            break;
        }
        let name = c
            .ident()
            .ok_or_else(|| c.error("expected json or a label filter after `|`"))?;
        if name == "json" && !starts_comparison(c) {
            stages.push(Stage::Json);
            continue;
        }
        stages.push(Stage::Label(label_filter(c, name)?));
    }
    Ok(LogQuery { matchers, stages })
}

fn starts_comparison(c: &mut Cursor<'_>) -> bool {
    c.skip_ws();
    let r = c.rest();
    ["==", "!=", "=~", "!~", ">=", "<=", "=", ">", "<"]
        .iter()
        .any(|op| r.starts_with(op))
}

fn label_filter(c: &mut Cursor<'_>, name: &str) -> Result<LabelFilter, String> {
    let op = [
        ("==", Cmp::Eq),
        ("!=", Cmp::Ne),
        ("=~", Cmp::Re),
        ("!~", Cmp::Nre),
        (">=", Cmp::Ge),
        ("<=", Cmp::Le),
        ("=", Cmp::Eq),
        (">", Cmp::Gt),
        ("<", Cmp::Lt),
    ]
    .iter()
    .find(|(t, _)| c.eat(t))
    .map(|(_, op)| *op)
    .ok_or_else(|| c.error("expected a label filter (=, !=, =~, !~, >, >=, <, <=) or `json`"))?;
    c.skip_ws();
    let value = if c.rest().starts_with(['"', '`']) {
        LabelValue::Str(c.string()?)
    } else {
        let len = c
            .rest()
            .bytes()
            .take_while(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'e' | b'E' | b'+'))
            .count();
        let n: f64 = c.rest()[..len]
            .parse()
            .map_err(|_| c.error("expected a string or a number"))?;
        c.pos += len;
        LabelValue::Num(n)
    };
    let re = match (op, &value) {
        (Cmp::Re | Cmp::Nre, LabelValue::Str(s)) => Some(anchored(s)?),
        (Cmp::Re | Cmp::Nre, LabelValue::Num(_)) => {
            return Err(format!("label filter {name}: a regex must be a string"))
        }
        _ => None,
    };
    Ok(LabelFilter {
        name: name.to_owned(),
        op,
        value,
        re,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::labels::parse_labels;

    fn log(q: &str) -> LogQuery {
        match parse(q).unwrap() {
            Query::Log(l) => l,
            Query::Metric(_) => panic!("{q}: a metric query"),
        }
    }

    #[test]
    fn selectors_and_line_filters() {
        let web1 = parse_labels(r#"{host="web1", service="web", stream="access"}"#).unwrap();
        let lb1 = parse_labels(r#"{host="lb1", service="lb", stream="access"}"#).unwrap();
        let q = log(
            r#"{service=~"lb|web", host!="lb1"} |= "GET" != "healthz" |~ "2\\d\\d" !~ `5\d\d`"#,
        );
        assert!(q.selects(&web1) && !q.selects(&lb1));
        assert_eq!(q.required_text(), ["GET"]);
        assert!(q.process(&web1, "GET /a 200").is_some());
        assert!(q.process(&web1, "GET /healthz 200").is_none());
        assert!(q.process(&web1, "POST /a 200").is_none());
        assert!(q.process(&web1, "GET /a 404").is_none());
        assert!(q.process(&web1, "GET /a 200 500").is_none());
        // Anchored: "we" does not match "web".
        assert!(!log(r#"{service=~"we"}"#).selects(&web1));
    }

    #[test]
    fn json_and_label_filters() {
        let s = parse_labels(r#"{host="web1", service="web"}"#).unwrap();
        let q = log(r#"{host="web1"} | json | status >= 500 | method = "GET" | path =~ "/api/.*""#);
        let line = r#"{"status":503,"method":"GET","path":"/api/users/1","req":{"id":"abc"},"host":"forged","tags":[1]}"#;
        let out = q.process(&s, line).unwrap();
        assert_eq!(out.get("status"), Some("503"));
        assert_eq!(out.get("req_id"), Some("abc"));
        assert_eq!(
            out.get("host"),
            Some("web1"),
            "a stream label keeps its value"
        );
        assert_eq!(out.get("tags"), None);
        assert!(q.process(&s, &line.replace("503", "200")).is_none());
        assert!(q.process(&s, &line.replace("GET", "PUT")).is_none());
        assert!(q.process(&s, "not json").is_none());
        assert!(log(r#"{host="web1"} | json | status != 200"#)
            .process(&s, r#"{"status":"200"}"#)
            .is_none());
    }

    #[test]
    fn metric_queries() {
        let Query::Metric(m) =
            parse(r#"sum by (host) (count_over_time({service="lb"} |= "x" [5m]))"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (m.func, m.range, m.sum_by),
            (
                RangeFn::CountOverTime,
                300_000_000_000,
                Some(vec!["host".to_owned()])
            )
        );
        let Query::Metric(m) =
            parse(r#"sum(rate({service="lb"}[1m])) by (service, host)"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (m.func, m.sum_by),
            (
                RangeFn::Rate,
                Some(vec!["service".to_owned(), "host".to_owned()])
            )
        );
        let Query::Metric(m) = parse(r#"rate({service="lb"}[1h30m])"#).unwrap() else {
            panic!()
        };
        assert_eq!((m.range, m.sum_by), (5_400_000_000_000, None));
    }

    #[test]
    fn bad_queries_say_what_is_wrong() {
        for (q, want) in [
            (r#"{host=~".*"}"#, "at least one matcher"),
            ("{}", "at least one matcher"),
            (r#"{host="a""#, "expected `,`"),
            (r#"{host="a"} |= "x"#, "unterminated"),
            (r#"{host="a"} |~ "(""#, "bad regex"),
            (r#"avg_over_time({host="a"}[1m])"#, "not supported"),
            (r#"rate({host="a"}[1 fortnight])"#, "expected a range"),
            (
                r#"{host="a"} | status > x"#,
                "expected a string or a number",
            ),
            (r#"{host="a"} extra"#, "unexpected text"),
            ("", "expected a stream selector"),
        ] {
            let e = parse(q).unwrap_err();
            assert!(e.contains(want), "{q}: {e}");
        }
        assert!(parse(&"{host=\"a\"}".repeat(1000))
            .unwrap_err()
            .contains("at most"));
        assert_eq!(parse_duration("90s"), Some(90_000_000_000));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("5"), None);
    }
}

//! Community dashboards and rules against a running site's Prometheus, the way Grafana
//! and Prometheus read them: a dashboard's template variables resolved from
//! `label_values(...)` in order, every target expression evaluated with them, and every
//! vector selector of a rule's expression looked up. Pure apart from the `query`
//! callback (an instant query: PromQL in, the API's `data` object out), so the stack
//! test runs the queries inside the monitor host and the unit tests below run none.
#![allow(dead_code, clippy::disallowed_methods)]

use serde_json::Value;

/// An instant query: PromQL in, Prometheus's `data` object (`resultType`, `result`) out,
/// `Value::Null` when the query failed.
pub type Query<'a> = &'a dyn Fn(&str) -> Value;

/// `$__rate_interval` and `$__interval` as the checks substitute them: wide enough for
/// several samples at every interval the site pushes at.
pub const RATE_INTERVAL: &str = "1m";

/// One target expression of a dashboard: its panel's title and the PromQL as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub panel: String,
    pub expr: String,
}

/// Every visible target expression of every panel, rows' nested panels and the old
/// schema's `rows[].panels[]` included.
pub fn targets(dashboard: &Value) -> Vec<Target> {
    fn walk(panels: &[Value], out: &mut Vec<Target>) {
        for p in panels {
            let title = p["title"].as_str().unwrap_or("").to_owned();
            for t in p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                let expr = t["expr"].as_str().unwrap_or("").trim();
                if !expr.is_empty() && t["hide"] != Value::Bool(true) {
                    out.push(Target {
                        panel: title.clone(),
                        expr: expr.to_owned(),
                    });
                }
            }
            if let Some(inner) = p["panels"].as_array() {
                walk(inner, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        dashboard["panels"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]),
        &mut out,
    );
    for row in dashboard["rows"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        walk(
            row["panels"].as_array().map(Vec::as_slice).unwrap_or(&[]),
            &mut out,
        );
    }
    out
}

/// A template variable resolved: its name, every value it offered, and what the checks
/// substitute (the first value, or every value as a regex alternation when the variable
/// is multi-valued or has "All", as Grafana does on load).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    pub values: Vec<String>,
    pub value: String,
}

/// The `query` variables of `dashboard`, in order (a later one may use an earlier one),
/// each resolved from its `label_values(...)`. Datasource and other kinds are skipped.
/// `Err` names a variable that offered no value, or a query form the checks do not know.
pub fn variables(dashboard: &Value, query: Query<'_>) -> Result<Vec<Variable>, String> {
    let mut out: Vec<Variable> = Vec::new();
    for v in dashboard["templating"]["list"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        if v["type"] != "query" {
            continue;
        }
        let name = v["name"].as_str().unwrap_or("").to_owned();
        let q = match &v["query"] {
            Value::String(s) => s.clone(),
            o => o["query"].as_str().unwrap_or("").to_owned(),
        };
        let q = substitute(&q, &out);
        let promql = label_values_query(&q)
            .ok_or_else(|| format!("variable {name}: not a label_values(...) query: {q}"))?;
        let (promql, label) = promql;
        let mut values: Vec<String> = match query(&promql)["result"].as_array() {
            Some(rs) => rs
                .iter()
                .filter_map(|r| r["metric"][&label].as_str().map(str::to_owned))
                .collect(),
            None => Vec::new(),
        };
        values.sort();
        values.dedup();
        if values.is_empty() {
            return Err(format!("variable {name}: `{q}` offered no value"));
        }
        let all = v["multi"] == Value::Bool(true) || v["includeAll"] == Value::Bool(true);
        let value = if all {
            values
                .iter()
                .map(|s| regex_escape(s))
                .collect::<Vec<_>>()
                .join("|")
        } else {
            values[0].clone()
        };
        out.push(Variable {
            name,
            values,
            value,
        });
    }
    Ok(out)
}

/// `label_values(selector, label)` → (`group by (label) (selector)`, label);
/// `label_values(label)` → (`group by (label) ({label!=""})`, label).
pub fn label_values_query(q: &str) -> Option<(String, String)> {
    let inner = q.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    match inner.rsplit_once(',') {
        Some((sel, label)) => {
            let label = label.trim().to_owned();
            Some((format!("group by ({label}) ({})", sel.trim()), label))
        }
        None => {
            let label = inner.trim().to_owned();
            Some((format!("group by ({label}) ({{{label}!=\"\"}})"), label))
        }
    }
}

/// Backslashes before a regex's special characters, doubled for a PromQL string (what
/// Grafana's Prometheus data source does to a multi-value variable's values).
fn regex_escape(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            o.push_str("\\\\");
        }
        o.push(c);
    }
    o
}

/// `expr` with Grafana's variables replaced: `$name`, `${name}`, `${name:...}`,
/// `[[name]]`, and the interval macros.
pub fn substitute(expr: &str, vars: &[Variable]) -> String {
    let mut s = expr
        .replace("$__rate_interval", RATE_INTERVAL)
        .replace("${__rate_interval}", RATE_INTERVAL)
        .replace("$__interval", RATE_INTERVAL)
        .replace("${__interval}", RATE_INTERVAL);
    // Longest names first, so `$node` does not eat the start of `$nodename`.
    let mut vars: Vec<&Variable> = vars.iter().collect();
    vars.sort_by_key(|v| std::cmp::Reverse(v.name.len()));
    for v in vars {
        s = s
            .replace(&format!("[[{}]]", v.name), &v.value)
            .replace(&format!("${{{}}}", v.name), &v.value);
        while let Some(start) = s.find(&format!("${{{}:", v.name)) {
            let Some(end) = s[start..].find('}') else {
                break;
            };
            s.replace_range(start..start + end + 1, &v.value);
        }
        s = s.replace(&format!("${}", v.name), &v.value);
    }
    s
}

/// Whether an instant query's `data` holds anything: a non-empty vector or matrix, or a
/// scalar or string.
pub fn has_data(data: &Value) -> bool {
    match data["resultType"].as_str() {
        Some("vector" | "matrix") => data["result"].as_array().is_some_and(|r| !r.is_empty()),
        Some("scalar" | "string") => true,
        _ => false,
    }
}

/// PromQL's words that look like metric names but are not selectors.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "inf",
    "nan",
];

/// The vector selectors of a PromQL expression, as written (`name{matchers}` or a bare
/// `name`): identifiers outside strings and braces that are neither functions (followed
/// by `(`), keywords, the label lists of `by`/`without`/`on`/`ignoring`/`group_*`, nor
/// durations. Enough for the rules and dashboards checked here; not a PromQL parser.
pub fn selectors(expr: &str) -> Vec<String> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let ident_start = |c: u8| c.is_ascii_alphabetic() || c == b'_' || c == b':';
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let skip_ws = |mut j: usize| {
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        j
    };
    // The end of a `{...}` or `(...)` starting at `j`, strings skipped.
    let close = |j: usize, open: u8, shut: u8| {
        let mut depth = 0;
        let mut k = j;
        let mut quote = None;
        while k < b.len() {
            let c = b[k];
            match quote {
                Some(_) if c == b'\\' => k += 1,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == b'"' || c == b'\'' || c == b'`' => quote = Some(c),
                None if c == open => depth += 1,
                None if c == shut => {
                    depth -= 1;
                    if depth == 0 {
                        return k + 1;
                    }
                }
                None => {}
            }
            k += 1;
        }
        b.len()
    };
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            // A string outside braces: skip it.
            let mut k = i + 1;
            while k < b.len() && b[k] != c {
                if b[k] == b'\\' {
                    k += 1;
                }
                k += 1;
            }
            i = k + 1;
        } else if c == b'[' {
            // A range or subquery duration.
            i = close(i, b'[', b']');
        } else if c == b'{' {
            // Matchers with no metric name.
            let end = close(i, b'{', b'}');
            out.push(expr[i..end].to_owned());
            i = end;
        } else if ident_start(c) && (i == 0 || !ident(b[i - 1]) && b[i - 1] != b'.') {
            let mut k = i;
            while k < b.len() && ident(b[k]) {
                k += 1;
            }
            let word = &expr[i..k];
            let next = skip_ws(k);
            if KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                // A label list follows the grouping keywords.
                if matches!(
                    word,
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                ) && next < b.len()
                    && b[next] == b'('
                {
                    i = close(next, b'(', b')');
                } else {
                    i = k;
                }
            } else if (next < b.len() && b[next] == b'(')
                || ["by", "without"].iter().any(|m| {
                    expr[next..].starts_with(m)
                        && expr[next + m.len()..].trim_start().starts_with('(')
                })
            {
                // A function or aggregation (`sum by (x) (...)` too): its arguments are
                // scanned as they come.
                i = k;
            } else if next < b.len() && b[next] == b'{' {
                let end = close(next, b'{', b'}');
                out.push(format!("{word}{}", &expr[next..end]));
                i = end;
            } else if i > 0 && b[i - 1].is_ascii_digit() {
                i = k;
            } else {
                out.push(word.to_owned());
                i = k;
            }
        } else if c.is_ascii_digit() {
            // A number or a duration's digits and unit (`5m`, `1e3`).
            let mut k = i;
            while k < b.len() && (b[k].is_ascii_alphanumeric() || b[k] == b'.') {
                k += 1;
            }
            i = k;
        } else {
            i += 1;
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_of_rules_and_panels() {
        let cases: &[(&str, &[&str])] = &[
            ("mysql_up != 1", &["mysql_up"]),
            (
                "mysql_slave_status_seconds_behind_master - mysql_slave_status_sql_delay",
                &[
                    "mysql_slave_status_seconds_behind_master",
                    "mysql_slave_status_sql_delay",
                ],
            ),
            (
                r#"sum without (command) (rate(mysql_global_status_commands_total{command=~"(commit|rollback)"}[5m]))"#,
                &[r#"mysql_global_status_commands_total{command=~"(commit|rollback)"}"#],
            ),
            (
                r#"(node_filesystem_avail_bytes{job="node",fstype!=""} / node_filesystem_size_bytes{job="node",fstype!=""} * 100 < 15
and predict_linear(node_filesystem_avail_bytes{job="node",fstype!=""}[6h], 4*60*60) < 0)"#,
                &[
                    r#"node_filesystem_avail_bytes{job="node",fstype!=""}"#,
                    r#"node_filesystem_size_bytes{job="node",fstype!=""}"#,
                ],
            ),
            (
                r#"count without (cpu, mode) (node_cpu_seconds_total{job="node",mode="idle"}) * on (instance) group_left (nodename) node_uname_info offset 5m"#,
                &[
                    r#"node_cpu_seconds_total{job="node",mode="idle"}"#,
                    "node_uname_info",
                ],
            ),
            (
                r#"increase(node_vmstat_oom_kill{job="node"}[30m:1m]) > 0 and 1e3 > bool 2"#,
                &[r#"node_vmstat_oom_kill{job="node"}"#],
            ),
            (r#"{__name__=~"up"} == 0"#, &[r#"{__name__=~"up"}"#]),
            (r#"label_replace(up, "a", "$1", "job", "(.*)")"#, &["up"]),
        ];
        for (expr, want) in cases {
            assert_eq!(selectors(expr), *want, "{expr}");
        }
    }

    #[test]
    fn substitutes_variables_and_macros_as_grafana() {
        let vars = vec![
            Variable {
                name: "node".into(),
                values: vec!["web1".into()],
                value: "web1".into(),
            },
            Variable {
                name: "nodename".into(),
                values: vec!["web1.x".into()],
                value: "web1.x".into(),
            },
        ];
        let cases = [
            (
                r#"rate(a{instance="$node",n="$nodename"}[$__rate_interval])"#,
                r#"rate(a{instance="web1",n="web1.x"}[1m])"#,
            ),
            (
                r#"a{i="${node}",j="[[node]]",k="${node:raw}"}"#,
                r#"a{i="web1",j="web1",k="web1"}"#,
            ),
        ];
        for (expr, want) in cases {
            assert_eq!(substitute(expr, &vars), want);
        }
    }

    #[test]
    fn variables_resolve_in_order_and_multi_values_become_a_regex() {
        let dash: Value = serde_json::json!({"templating": {"list": [
            {"type": "datasource", "name": "ds"},
            {"type": "query", "name": "job", "query": {"query": "label_values(node_uname_info, job)"}},
            {"type": "query", "name": "instance", "multi": true,
             "query": "label_values(node_uname_info{job=\"$job\"}, instance)"},
        ]}});
        let asked = std::cell::RefCell::new(Vec::new());
        let query = |q: &str| -> Value {
            asked.borrow_mut().push(q.to_owned());
            if q.starts_with("group by (job)") {
                serde_json::json!({"resultType": "vector", "result": [
                    {"metric": {"job": "node"}}, {"metric": {"job": "alpha"}}]})
            } else {
                serde_json::json!({"resultType": "vector", "result": [
                    {"metric": {"instance": "10.0.0.1:9100"}}, {"metric": {"instance": "db1"}}]})
            }
        };
        let vars = variables(&dash, &query).unwrap();
        assert_eq!(
            *asked.borrow(),
            [
                "group by (job) (node_uname_info)",
                "group by (instance) (node_uname_info{job=\"alpha\"})"
            ]
        );
        assert_eq!(vars[0].value, "alpha");
        assert_eq!(vars[1].value, r"10\\.0\\.0\\.1:9100|db1");
        let none = |_: &str| serde_json::json!({"resultType": "vector", "result": []});
        assert!(variables(&dash, &none).unwrap_err().contains("job"));
    }

    #[test]
    fn targets_walk_rows_and_skip_hidden_ones() {
        let dash = serde_json::json!({
            "panels": [
                {"title": "a", "targets": [{"expr": "x"}, {"expr": "y", "hide": true}]},
                {"title": "row", "type": "row", "panels": [{"title": "b", "targets": [{"expr": "z"}]}]}
            ],
            "rows": [{"panels": [{"title": "c", "targets": [{"expr": " w "}, {"refId": "B"}]}]}]
        });
        let got: Vec<(String, String)> = targets(&dash)
            .into_iter()
            .map(|t| (t.panel, t.expr))
            .collect();
        let want = [("a", "x"), ("b", "z"), ("c", "w")].map(|(p, e)| (p.to_owned(), e.to_owned()));
        assert_eq!(got, want);
    }

    #[test]
    fn data_is_a_non_empty_vector_or_a_scalar() {
        let cases = [
            (
                serde_json::json!({"resultType": "vector", "result": []}),
                false,
            ),
            (
                serde_json::json!({"resultType": "vector", "result": [{}]}),
                true,
            ),
            (
                serde_json::json!({"resultType": "scalar", "result": [1, "1"]}),
                true,
            ),
            (Value::Null, false),
        ];
        for (data, want) in cases {
            assert_eq!(has_data(&data), want, "{data}");
        }
    }
}

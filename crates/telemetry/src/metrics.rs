//! Prometheus text exposition (format 0.0.4) of a `prometheus-client` registry, the
//! format `promtool check metrics` and every Prometheus version accept, and the status
//! class label that every request counter (lb, web, the agent's access-log counts) uses.

use prometheus_client::registry::Registry;

/// Encodes `registry` in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut om = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut om, registry);
    openmetrics_to_text(&om)
}

/// Content type of the Prometheus text format that [`encode`] produces.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The values of the `code_class` label, in index order: `1xx` to `5xx`, then `other`.
pub const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// The index in [`STATUS_CLASSES`] of `status`'s class.
pub fn status_class_index(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100 - 1),
        _ => STATUS_CLASSES.len() - 1,
    }
}

/// The status class as a label value: `1xx` to `5xx` for 100–599, `other` outside (HTTP
/// allows codes up to 999; the alert rules count `5xx` as errors, and a 600 is not one).
/// The one classification of every request counter, so the load balancer's and the web
/// servers' own metrics agree with the counts the agent derives from their access logs.
pub fn status_class(status: u16) -> &'static str {
    STATUS_CLASSES[status_class_index(status)]
}

/// OpenMetrics → Prometheus text: counters are described under their `_total` sample
/// name, and the `# UNIT` and `# EOF` lines go.
pub fn openmetrics_to_text(om: &str) -> String {
    let counters: std::collections::HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len() + 256);
    for line in om.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = line
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        let check = |status: u16, expected: &str| {
            assert_eq!(status_class(status), expected, "{status}");
            assert_eq!(STATUS_CLASSES[status_class_index(status)], expected);
        };
        for (status, expected) in [
            (0, "other"),
            (99, "other"),
            (100, "1xx"),
            (199, "1xx"),
            (200, "2xx"),
            (304, "3xx"),
            (404, "4xx"),
            (499, "4xx"),
            (500, "5xx"),
            (599, "5xx"),
            (600, "other"),
            (999, "other"),
            (u16::MAX, "other"),
        ] {
            check(status, expected);
        }
    }

    #[test]
    fn counters_are_described_under_their_total_name() {
        let om = "# HELP a_b Things.\n# TYPE a_b counter\na_b_total{x=\"1\"} 2\n# HELP g A gauge.\n# TYPE g gauge\n# UNIT g seconds\ng 1\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP a_b_total Things.\n# TYPE a_b_total counter\na_b_total{x=\"1\"} 2\n# HELP g A gauge.\n# TYPE g gauge\ng 1\n"
        );
    }
}

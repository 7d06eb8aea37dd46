//! Line charts as server-side SVG: scales, "nice" axis bounds, grid and tick labels,
//! one `<path>` per series (broken where data is missing), a legend with each series'
//! latest value, and a visible "no data" message instead of an empty frame. Pure
//! functions of their input; no JavaScript, no style attributes (the page's CSP has no
//! `'unsafe-inline'`): colours are SVG presentation attributes, sizes come from the
//! page's stylesheet through classes. Also [`escape`], for the text of SVG and of the
//! HTML page around it (`page.rs` builds on this module, never the other way).

use std::fmt::Write;

/// Escapes text for HTML and XML content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The chart's drawing size in user units (it scales to the panel's width).
pub const WIDTH: f64 = 600.0;
pub const HEIGHT: f64 = 200.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 22.0;

/// Series colours, cycled: distinguishable on the dark background and for the common
/// forms of colour blindness (Okabe–Ito, lightened).
pub const PALETTE: [&str; 8] = [
    "#56b4e9", "#e69f00", "#009e73", "#f0e442", "#cc79a7", "#d55e00", "#9ad0f5", "#bbbbbb",
];

/// What the values are, for tick labels and the legend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Events per second.
    PerSecond,
    /// A fraction shown as a percentage (0.25 is 25%).
    Ratio,
    /// A duration in seconds, shown in ms below one second.
    Seconds,
    /// A plain number.
    Count,
}

/// One series to draw: its legend name and points `(unix seconds, value)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A chart: a time window, the lines in it, and why it may have none.
#[derive(Clone, Debug)]
pub struct Chart {
    pub title: String,
    pub unit: Unit,
    pub start: f64,
    pub end: f64,
    /// The query's step; consecutive points further apart than 2.5 steps are not joined.
    pub step: f64,
    pub lines: Vec<Line>,
    /// Shown under "no data" when there is nothing to draw (e.g. the query's error).
    pub no_data_reason: Option<String>,
}

/// Maps data to user units: time to x, value to y (up is larger).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    pub t0: f64,
    pub t1: f64,
    pub v0: f64,
    pub v1: f64,
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

impl Scale {
    pub fn x(&self, t: f64) -> f64 {
        let span = (self.t1 - self.t0).max(f64::MIN_POSITIVE);
        self.left + ((t - self.t0) / span).clamp(0.0, 1.0) * self.width
    }

    pub fn y(&self, v: f64) -> f64 {
        let span = (self.v1 - self.v0).max(f64::MIN_POSITIVE);
        self.top + self.height - ((v - self.v0) / span).clamp(0.0, 1.0) * self.height
    }
}

/// The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `v`; 1 for
/// nothing positive.
pub fn nice_ceil(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let e = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        // Tolerate float noise: 0.3 / 0.1 is 2.9999999999999996.
        if m * e >= v * (1.0 - 1e-9) {
            return m * e;
        }
    }
    10.0 * e
}

/// The SVG path of `points` under `scale`: `M` starts a run, `L` continues it; a run
/// breaks at a non-finite value or where two points are more than `max_gap` seconds
/// apart (0: never). A run of one point is drawn as a dot (`h0` with round caps).
pub fn path(points: &[(f64, f64)], scale: &Scale, max_gap: f64) -> String {
    let mut d = String::new();
    let mut run = 0usize;
    let mut last_t = f64::NEG_INFINITY;
    for &(t, v) in points {
        if !(t.is_finite() && v.is_finite()) {
            if run == 1 {
                d.push_str("h0");
            }
            run = 0;
            continue;
        }
        let joined = run > 0 && (max_gap <= 0.0 || t - last_t <= max_gap);
        if !joined && run == 1 {
            d.push_str("h0");
        }
        let cmd = if joined { 'L' } else { 'M' };
        let _ = write!(d, "{cmd}{:.1} {:.1}", scale.x(t), scale.y(v));
        run = if joined { run + 1 } else { 1 };
        last_t = t;
    }
    if run == 1 {
        d.push_str("h0");
    }
    d
}

/// A number with about three significant digits and k/M/G suffixes.
pub fn number(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        return "–".into();
    }
    let (x, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let ax = x.abs();
    let s = if ax == 0.0 {
        "0".to_owned()
    } else if ax >= 100.0 {
        format!("{x:.0}")
    } else if ax >= 10.0 {
        format!("{x:.1}")
    } else if ax >= 1.0 {
        format!("{x:.2}")
    } else if ax >= 0.01 {
        format!("{x:.3}")
    } else {
        format!("{x:.1e}")
    };
    let s = if s.contains('.') && !s.contains('e') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    };
    format!("{s}{suffix}")
}

/// `v` in `unit`, for labels.
pub fn format_value(v: f64, unit: Unit) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    match unit {
        Unit::PerSecond => format!("{}/s", number(v)),
        Unit::Ratio => format!("{}%", number(v * 100.0)),
        Unit::Seconds if v.abs() < 1.0 && v != 0.0 => format!("{} ms", number(v * 1000.0)),
        Unit::Seconds => format!("{} s", number(v)),
        Unit::Count => number(v),
    }
}

/// Tick spacing for a time span: at most about six ticks, on round minutes or hours.
fn time_step(span: f64) -> f64 {
    const STEPS: [f64; 13] = [
        30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 10800.0, 21600.0, 43200.0,
        86400.0,
    ];
    STEPS
        .into_iter()
        .find(|s| span / s <= 6.0)
        .unwrap_or(86400.0)
}

/// `HH:MM` (UTC) of a Unix time.
pub fn clock(t: f64) -> String {
    let secs = t.rem_euclid(86400.0) as u64;
    format!("{:02}:{:02}", secs / 3600, secs % 3600 / 60)
}

/// The latest finite value of `points`.
pub fn last_value(points: &[(f64, f64)]) -> Option<f64> {
    points.iter().rev().map(|p| p.1).find(|v| v.is_finite())
}

/// The whole chart: an `<svg>` and its legend. Lines without a finite point count as
/// no data.
pub fn render(chart: &Chart) -> String {
    let mut out = String::with_capacity(4096);
    let title = escape(&chart.title);
    let plot = Scale {
        t0: chart.start,
        t1: chart.end,
        v0: 0.0,
        v1: 1.0,
        left: LEFT,
        top: TOP,
        width: WIDTH - LEFT - RIGHT,
        height: HEIGHT - TOP - BOTTOM,
    };
    let values = || {
        chart
            .lines
            .iter()
            .flat_map(|l| l.points.iter())
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|p| p.1)
    };
    let has_data = values().next().is_some();
    let _ = write!(
        out,
        "<svg class=\"chart{}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{title}\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>{title}</title>",
        if has_data { "" } else { " empty" }
    );
    let _ = write!(
        out,
        "<rect class=\"plot\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>",
        plot.left, plot.top, plot.width, plot.height
    );
    if !has_data {
        let cx = plot.left + plot.width / 2.0;
        let cy = plot.top + plot.height / 2.0;
        let _ = write!(
            out,
            "<text class=\"nodata\" x=\"{cx}\" y=\"{cy}\" text-anchor=\"middle\">no data</text>"
        );
        if let Some(reason) = &chart.no_data_reason {
            let short: String = reason.chars().take(90).collect();
            let _ = write!(
                out,
                "<text class=\"nodata-why\" x=\"{cx}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                cy + 18.0,
                escape(&short)
            );
        }
        out.push_str("</svg>");
        return out;
    }
    let max = values().fold(f64::NEG_INFINITY, f64::max);
    let min = values().fold(f64::INFINITY, f64::min);
    let v1 = nice_ceil(max);
    let v0 = if min < 0.0 { -nice_ceil(-min) } else { 0.0 };
    let scale = Scale { v0, v1, ..plot };

    // Horizontal grid and value ticks: four intervals.
    out.push_str("<g class=\"grid\">");
    for i in 0..=4 {
        let v = v0 + (v1 - v0) * f64::from(i) / 4.0;
        let y = scale.y(v);
        let _ = write!(
            out,
            "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\"/>",
            scale.left,
            scale.left + scale.width
        );
    }
    out.push_str("</g><g class=\"ticks\">");
    for i in 0..=4 {
        let v = v0 + (v1 - v0) * f64::from(i) / 4.0;
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            scale.left - 6.0,
            scale.y(v) + 4.0,
            escape(&format_value(v, chart.unit))
        );
    }
    // Time ticks on round minutes/hours.
    let step = time_step(chart.end - chart.start);
    let mut t = (chart.start / step).ceil() * step;
    let mut n = 0;
    while t <= chart.end && n < 50 {
        let x = scale.x(t);
        // A label at the right edge would be cut in half: it ends there instead.
        let anchor = if x > scale.left + scale.width - 16.0 {
            "end"
        } else {
            "middle"
        };
        let _ = write!(
            out,
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
            HEIGHT - 6.0,
            clock(t)
        );
        t += step;
        n += 1;
    }
    out.push_str("</g><g class=\"lines\">");
    let max_gap = chart.step * 2.5;
    for (i, line) in chart.lines.iter().enumerate() {
        let d = path(&line.points, &scale, max_gap);
        if d.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            "<path d=\"{d}\" stroke=\"{}\" fill=\"none\" stroke-width=\"1.8\" \
             stroke-linejoin=\"round\" stroke-linecap=\"round\" data-series=\"{}\"/>",
            PALETTE[i % PALETTE.len()],
            escape(&line.name)
        );
    }
    out.push_str("</g></svg><ul class=\"legend\">");
    for (i, line) in chart.lines.iter().enumerate() {
        let last = last_value(&line.points)
            .map_or_else(|| "–".to_owned(), |v| format_value(v, chart.unit));
        let _ = write!(
            out,
            "<li><svg class=\"swatch\" viewBox=\"0 0 10 10\" aria-hidden=\"true\">\
             <rect width=\"10\" height=\"10\" rx=\"2\" fill=\"{}\"/></svg>{} <b>{}</b></li>",
            PALETTE[i % PALETTE.len()],
            escape(&line.name),
            escape(&last)
        );
    }
    out.push_str("</ul>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Time 0..100 → x 0..100, value 0..10 → y 100..0.
    const UNIT: Scale = Scale {
        t0: 0.0,
        t1: 100.0,
        v0: 0.0,
        v1: 10.0,
        left: 0.0,
        top: 0.0,
        width: 100.0,
        height: 100.0,
    };

    fn check(points: &[(f64, f64)], max_gap: f64, expected: &str) {
        assert_eq!(path(points, &UNIT, max_gap), expected, "{points:?}");
    }

    #[test]
    fn paths() {
        check(&[], 0.0, "");
        check(&[(0.0, 0.0)], 0.0, "M0.0 100.0h0");
        check(
            &[(0.0, 0.0), (50.0, 5.0), (100.0, 10.0)],
            0.0,
            "M0.0 100.0L50.0 50.0L100.0 0.0",
        );
        // Out of the window or range: clamped to the frame.
        check(&[(-10.0, -1.0), (110.0, 20.0)], 0.0, "M0.0 100.0L100.0 0.0");
        // A gap wider than max_gap starts a new run; a lone point becomes a dot.
        check(
            &[
                (0.0, 1.0),
                (10.0, 2.0),
                (40.0, 3.0),
                (80.0, 4.0),
                (90.0, 5.0),
            ],
            15.0,
            "M0.0 90.0L10.0 80.0M40.0 70.0h0M80.0 60.0L90.0 50.0",
        );
        // NaN and infinities break the line too.
        check(
            &[
                (0.0, 1.0),
                (10.0, f64::NAN),
                (20.0, 2.0),
                (30.0, 2.5),
                (40.0, f64::INFINITY),
            ],
            0.0,
            "M0.0 90.0h0M20.0 80.0L30.0 75.0",
        );
        check(&[(0.0, f64::NAN)], 0.0, "");
        check(&[(1.25, 3.33)], 0.0, "M1.2 66.7h0");
    }

    #[test]
    fn nice_bounds_and_labels() {
        for (v, nice) in [
            (0.0, 1.0),
            (-3.0, 1.0),
            (f64::NAN, 1.0),
            (0.3, 0.5),
            (1.0, 1.0),
            (1.2, 2.0),
            (2.2, 2.5),
            (3.0, 5.0),
            (7.0, 10.0),
            (42.0, 50.0),
            (0.012, 0.02),
            (1234.0, 2000.0),
        ] {
            assert!((nice_ceil(v) - nice).abs() < 1e-12, "{v}: {}", nice_ceil(v));
        }
        for (v, unit, text) in [
            (12.345, Unit::PerSecond, "12.3/s"),
            (0.0, Unit::PerSecond, "0/s"),
            (1500.0, Unit::PerSecond, "1.5k/s"),
            (0.25, Unit::Ratio, "25%"),
            (0.0123, Unit::Ratio, "1.23%"),
            (0.0042, Unit::Seconds, "4.2 ms"),
            (2.5, Unit::Seconds, "2.5 s"),
            (0.0, Unit::Seconds, "0 s"),
            (3.0, Unit::Count, "3"),
            (0.000_05, Unit::Count, "5.0e-5"),
            (f64::NAN, Unit::Count, "–"),
        ] {
            assert_eq!(format_value(v, unit), text, "{v}");
        }
        assert_eq!(clock(1_700_000_000.0), "22:13");
        assert_eq!(time_step(1800.0), 300.0);
        assert_eq!(time_step(300.0), 60.0);
    }

    #[test]
    fn chart_with_data_and_without() {
        let chart = Chart {
            title: "QPS <total>".into(),
            unit: Unit::PerSecond,
            start: 1_700_000_000.0,
            end: 1_700_001_800.0,
            step: 15.0,
            lines: vec![
                Line {
                    name: "web1".into(),
                    points: vec![(1_700_000_000.0, 10.0), (1_700_000_015.0, 20.0)],
                },
                Line {
                    name: "web\"2".into(),
                    points: vec![(1_700_000_000.0, f64::NAN)],
                },
            ],
            no_data_reason: None,
        };
        let svg = render(&chart);
        assert!(
            svg.starts_with("<svg class=\"chart\" viewBox=\"0 0 600 200\""),
            "{svg}"
        );
        assert!(svg.contains("aria-label=\"QPS &lt;total&gt;\""), "{svg}");
        assert!(svg.contains("<path d=\"M56.0 94.0L60.5 10.0\""), "{svg}");
        assert_eq!(svg.matches("<path ").count(), 1, "{svg}");
        assert!(svg.contains(">20/s<"), "the top tick: {svg}");
        assert!(svg.contains(">22:15<"), "a time tick: {svg}");
        assert!(svg.contains("web&quot;2 <b>–</b>"), "{svg}");
        assert!(svg.contains("web1 <b>20/s</b>"), "{svg}");
        assert!(!svg.contains("style="), "{svg}");

        let empty = render(&Chart {
            lines: vec![],
            no_data_reason: Some("connect to 127.0.0.1:9: refused".into()),
            ..chart
        });
        assert!(empty.starts_with("<svg class=\"chart empty\""), "{empty}");
        assert!(empty.contains(">no data</text>"), "{empty}");
        assert!(
            empty.contains(">connect to 127.0.0.1:9: refused</text>"),
            "{empty}"
        );
        assert!(!empty.contains("<path"), "{empty}");
    }
}

//! node_exporter 1.5's `timex` collector: the kernel's clock discipline state
//! (`adjtimex(2)`, read through [`rampart_sys::adjtimex`]) under its names, types, units
//! and help texts. The node mixin's `NodeClockSkewDetected` reads
//! `node_timex_offset_seconds`, `NodeClockNotSynchronising` reads
//! `node_timex_sync_status` and `node_timex_maxerror_seconds`, and Node Exporter Full
//! has a row of them.

use rampart_sys::{Timex, STA_NANO, TIME_ERROR};

use crate::{Family, Kind, Sample};

/// ppm with a 16-bit binary fraction, the unit of `freq`, `ppsfreq` and `stabil`
/// (adjtimex(2), NOTES).
const PPM16FRAC: f64 = 1_000_000.0 * 65_536.0;
const MICRO: f64 = 1e6;
const NANO: f64 = 1e9;

/// The state read now; `Err` names the failed call.
pub fn collect() -> Result<Vec<Family>, String> {
    rampart_sys::adjtimex()
        .map(|t| families(&t))
        .map_err(|e| format!("adjtimex: {e}"))
}

/// The families of one reading, converted as node_exporter converts them.
pub fn families(t: &Timex) -> Vec<Family> {
    // `offset` and `jitter` are in nanoseconds when the kernel says so (STA_NANO).
    let divisor = if t.status & STA_NANO != 0 {
        NANO
    } else {
        MICRO
    };
    let sync = if t.state == TIME_ERROR { 0.0 } else { 1.0 };
    let g = |name: &str, help: &str, v: f64| one(name, help, Kind::Gauge, v);
    let c = |name: &str, help: &str, v: f64| one(name, help, Kind::Counter, v);
    #[allow(clippy::cast_precision_loss)] // kernel integers far below 2^53
    let f = |v: i64| v as f64;
    vec![
        g(
            "node_timex_estimated_error_seconds",
            "Estimated error in seconds.",
            f(t.esterror) / MICRO,
        ),
        g(
            "node_timex_frequency_adjustment_ratio",
            "Local clock frequency adjustment.",
            1.0 + f(t.freq) / PPM16FRAC,
        ),
        g(
            "node_timex_loop_time_constant",
            "Phase-locked loop time constant.",
            f(t.constant),
        ),
        g(
            "node_timex_maxerror_seconds",
            "Maximum error in seconds.",
            f(t.maxerror) / MICRO,
        ),
        g(
            "node_timex_offset_seconds",
            "Time offset in between local system and reference clock.",
            f(t.offset) / divisor,
        ),
        c(
            "node_timex_pps_calibration_total",
            "Pulse per second count of calibration intervals.",
            f(t.calcnt),
        ),
        c(
            "node_timex_pps_error_total",
            "Pulse per second count of calibration errors.",
            f(t.errcnt),
        ),
        g(
            "node_timex_pps_frequency_hertz",
            "Pulse per second frequency.",
            f(t.ppsfreq) / PPM16FRAC,
        ),
        g(
            "node_timex_pps_jitter_seconds",
            "Pulse per second jitter.",
            f(t.jitter) / divisor,
        ),
        c(
            "node_timex_pps_jitter_total",
            "Pulse per second count of jitter limit exceeded events.",
            f(t.jitcnt),
        ),
        g(
            "node_timex_pps_shift_seconds",
            "Pulse per second interval duration.",
            f64::from(t.shift),
        ),
        c(
            "node_timex_pps_stability_exceeded_total",
            "Pulse per second count of stability limit exceeded events.",
            f(t.stbcnt),
        ),
        g(
            "node_timex_pps_stability_hertz",
            "Pulse per second stability, average of recent frequency changes.",
            f(t.stabil) / PPM16FRAC,
        ),
        g(
            "node_timex_status",
            "Value of the status array bits.",
            f64::from(t.status),
        ),
        g(
            "node_timex_sync_status",
            "Is clock synchronized to a reliable server (1 = yes, 0 = no).",
            sync,
        ),
        g(
            "node_timex_tai_offset_seconds",
            "International Atomic Time (TAI) offset.",
            f64::from(t.tai),
        ),
        g(
            "node_timex_tick_seconds",
            "Seconds between clock ticks.",
            f(t.tick) / MICRO,
        ),
    ]
}

fn one(name: &str, help: &str, kind: Kind, value: f64) -> Family {
    Family {
        name: name.to_owned(),
        help: help.to_owned(),
        kind,
        samples: vec![Sample {
            labels: Vec::new(),
            value,
            suffix: "",
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(fs: &[Family], name: &str) -> f64 {
        fs.iter()
            .find(|f| f.name == name)
            .map(|f| f.samples[0].value)
            .unwrap_or(f64::NAN)
    }

    #[test]
    fn converts_units_as_node_exporter() {
        // (reading, family, expected value)
        let unsynced = Timex {
            state: TIME_ERROR,
            status: 0x40, // STA_UNSYNC
            maxerror: 16_000_000,
            esterror: 16_000_000,
            tick: 10_000,
            constant: 2,
            ..Timex::default()
        };
        let nano = Timex {
            state: 0,
            status: STA_NANO | 0x1, // STA_PLL
            offset: -1_500_000,     // ns: -1.5 ms
            freq: 65_536 * 12,      // +12 ppm
            jitter: 2_000,
            ppsfreq: 65_536,
            stabil: 65_536 * 2,
            shift: 4,
            tai: 37,
            calcnt: 7,
            ..Timex::default()
        };
        let micro = Timex {
            offset: 250, // µs
            jitter: 3,
            ..Timex::default()
        };
        let cases: &[(&Timex, &str, f64)] = &[
            (&unsynced, "node_timex_sync_status", 0.0),
            (&unsynced, "node_timex_maxerror_seconds", 16.0),
            (&unsynced, "node_timex_estimated_error_seconds", 16.0),
            (&unsynced, "node_timex_tick_seconds", 0.01),
            (&unsynced, "node_timex_status", 64.0),
            (&unsynced, "node_timex_loop_time_constant", 2.0),
            (&unsynced, "node_timex_frequency_adjustment_ratio", 1.0),
            (&nano, "node_timex_sync_status", 1.0),
            (&nano, "node_timex_offset_seconds", -0.0015),
            (&nano, "node_timex_pps_jitter_seconds", 2e-6),
            (&nano, "node_timex_frequency_adjustment_ratio", 1.000_012),
            (&nano, "node_timex_pps_frequency_hertz", 1e-6),
            (&nano, "node_timex_pps_stability_hertz", 2e-6),
            (&nano, "node_timex_pps_shift_seconds", 4.0),
            (&nano, "node_timex_tai_offset_seconds", 37.0),
            (&nano, "node_timex_pps_calibration_total", 7.0),
            (&micro, "node_timex_offset_seconds", 0.000_25),
            (&micro, "node_timex_pps_jitter_seconds", 3e-6),
        ];
        for (t, name, want) in cases {
            let got = value(&families(t), name);
            assert!(
                (got - want).abs() < 1e-12,
                "{name} of {t:?}: {got} != {want}"
            );
        }
    }

    #[test]
    fn counters_are_counters_and_the_rest_gauges() {
        for f in families(&Timex::default()) {
            let want = if f.name.ends_with("_total") {
                Kind::Counter
            } else {
                Kind::Gauge
            };
            assert_eq!(f.kind, want, "{}", f.name);
            assert_eq!(f.samples.len(), 1);
        }
        assert_eq!(families(&Timex::default()).len(), 17);
    }
}

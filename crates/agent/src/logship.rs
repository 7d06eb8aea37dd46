//! Log shipping (issue 18, in progress): log lines → Loki push batches for the agent's
//! disk buffer ([`crate::buffer::BatchBuffer`] of [`PushRequest`]), under the host's
//! bounds. Reading the files into lines comes with the rest of the shipping.
//!
//! - **Timestamps.** Each line gets the time it was read, made strictly increasing per
//!   stream (a line read in the same nanosecond as the last one of its stream gets the
//!   next nanosecond). A line therefore has one key in the store, (stream, time, line),
//!   and a batch the buffer sends again after a lost acknowledgement stores nothing twice.
//! - **Labels** come from bounded sets only: `host` (this agent's instance), `service`
//!   and `stream` (which log of the service), from the agent's config, never from a line.
//! - **Line length.** A line longer than [`Limits::max_line_bytes`] is cut there (at a
//!   character boundary) and counted as `truncated`.
//! - **Rate.** At most [`Limits::lines_per_second`] lines a second for the host, with a
//!   burst of [`Limits::burst`]; lines beyond are dropped and counted as `rate_limited`.
//! - **Client addresses** in the JSON fields [`Limits::mask_fields`] (such as the access
//!   logs' `client`) are masked when the config asks: IPv4 to its /24 (`203.0.113.0`),
//!   IPv6 to its /48, in place, so the rest of the line stays as written.

use std::collections::BTreeMap;
use std::net::IpAddr;

use rampart_logs::push::{EntryAdapter, PushRequest, StreamAdapter, Timestamp};

use crate::buffer::Batch;

impl Batch for PushRequest {
    fn oldest_ms(&self) -> Option<i64> {
        self.streams
            .iter()
            .flat_map(|s| &s.entries)
            .filter_map(|e| e.timestamp.and_then(Timestamp::nanos))
            .min()
            .map(|ns| ns.div_euclid(1_000_000))
    }

    fn entries(&self) -> u64 {
        self.streams.iter().map(|s| s.entries.len() as u64).sum()
    }
}

/// The host's bounds on what it ships.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub max_line_bytes: usize,
    pub lines_per_second: f64,
    pub burst: f64,
    /// JSON fields whose IP address is masked; empty: none.
    pub mask_fields: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_bytes: 16 * 1024,
            lines_per_second: 1000.0,
            burst: 5000.0,
            mask_fields: Vec::new(),
        }
    }
}

/// What the bounds did, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub shipped: u64,
    pub truncated: u64,
    pub rate_limited: u64,
    pub masked: u64,
}

/// Turns read lines into batches. One per agent.
#[derive(Debug)]
pub struct Shipper {
    host: String,
    limits: Limits,
    /// The last timestamp given per stream (its label text).
    last: BTreeMap<String, i64>,
    tokens: f64,
    refilled_ns: Option<i64>,
    pub counts: Counts,
}

/// `"host"`, `"service"`, `"stream"` as a stream's label text.
fn stream_key(host: &str, service: &str, stream: &str) -> Result<String, String> {
    rampart_logs::Labels::new(vec![
        ("host".into(), host.into()),
        ("service".into(), service.into()),
        ("stream".into(), stream.into()),
    ])
    .map(|l| l.to_string())
}

/// `ip` with its host part zeroed: IPv4 to /24, IPv6 to /48.
pub fn mask_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            IpAddr::from([o[0], o[1], o[2], 0])
        }
        IpAddr::V6(v6) => {
            let mut s = v6.segments();
            for x in &mut s[3..] {
                *x = 0;
            }
            IpAddr::from(s)
        }
    }
}

/// Masks the address in each of `fields` (`"field":"<ip>"` in a JSON line), in place.
/// Returns whether it changed anything.
pub fn mask_fields(line: &mut String, fields: &[String]) -> bool {
    let mut changed = false;
    for f in fields {
        let needle = format!("\"{f}\":\"");
        let mut from = 0;
        while let Some(i) = line[from..].find(&needle) {
            let start = from + i + needle.len();
            let Some(len) = line[start..].find('"') else {
                break;
            };
            let end = start + len;
            if let Ok(ip) = line[start..end].parse::<IpAddr>() {
                let masked = mask_ip(ip).to_string();
                if masked != line[start..end] {
                    line.replace_range(start..end, &masked);
                    changed = true;
                }
                from = start + masked.len();
            } else {
                from = end;
            }
        }
    }
    changed
}

impl Shipper {
    pub fn new(host: &str, limits: Limits) -> Shipper {
        Shipper {
            host: host.to_owned(),
            tokens: limits.burst,
            limits,
            last: BTreeMap::new(),
            refilled_ns: None,
            counts: Counts::default(),
        }
    }

    fn allow(&mut self, now_ns: i64) -> bool {
        if let Some(then) = self.refilled_ns {
            let secs = (now_ns - then).max(0) as f64 / 1e9;
            self.tokens =
                (self.tokens + secs * self.limits.lines_per_second).min(self.limits.burst);
        }
        self.refilled_ns = Some(now_ns);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// One batch of the lines read at `now_ns`, each `(service, stream, line)`, in the
    /// order read. A line over the rate is dropped; an invalid service or stream name
    /// is the config's fault and is reported.
    pub fn batch(
        &mut self,
        now_ns: i64,
        lines: impl IntoIterator<Item = (String, String, String)>,
    ) -> Result<PushRequest, String> {
        self.batch_timed(
            now_ns,
            lines
                .into_iter()
                .map(|(service, stream, line)| (service, stream, line, None)),
        )
    }

    /// [`Shipper::batch`] of lines that may carry their own time (a journal entry's,
    /// in nanoseconds), which they keep exactly, so that an entry read again after a
    /// restart has the same key in the store as before. The others get the time read.
    pub fn batch_timed(
        &mut self,
        now_ns: i64,
        lines: impl IntoIterator<Item = (String, String, String, Option<i64>)>,
    ) -> Result<PushRequest, String> {
        let mut streams: BTreeMap<String, Vec<EntryAdapter>> = BTreeMap::new();
        for (service, stream, mut line, at) in lines {
            if !self.allow(now_ns) {
                self.counts.rate_limited += 1;
                continue;
            }
            if line.len() > self.limits.max_line_bytes {
                let mut cut = self.limits.max_line_bytes;
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.truncate(cut);
                self.counts.truncated += 1;
            }
            if !self.limits.mask_fields.is_empty()
                && mask_fields(&mut line, &self.limits.mask_fields)
            {
                self.counts.masked += 1;
            }
            let key = stream_key(&self.host, &service, &stream)?;
            let ts = match at {
                Some(at) => at,
                None => {
                    let last = self.last.entry(key.clone()).or_insert(i64::MIN);
                    let ts = now_ns.max(last.saturating_add(1));
                    *last = ts;
                    ts
                }
            };
            streams.entry(key).or_default().push(EntryAdapter {
                timestamp: Some(Timestamp::from_nanos(ts)),
                line,
            });
            self.counts.shipped += 1;
        }
        Ok(PushRequest {
            streams: streams
                .into_iter()
                .map(|(labels, entries)| StreamAdapter {
                    labels,
                    entries,
                    hash: 0,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn l(service: &str, line: &str) -> (String, String, String) {
        (service.into(), "log".into(), line.into())
    }

    #[test]
    fn every_line_of_a_stream_has_its_own_time_and_bounded_labels() {
        let mut s = Shipper::new("web1", Limits::default());
        let b = s
            .batch(1000, [l("web", "a"), l("web", "b"), l("lb", "c")])
            .unwrap();
        assert_eq!(b.streams.len(), 2);
        let web = b
            .streams
            .iter()
            .find(|x| x.labels.contains("\"web\""))
            .unwrap();
        assert_eq!(web.labels, r#"{host="web1", service="web", stream="log"}"#);
        let ts: Vec<i64> = web
            .entries
            .iter()
            .map(|e| e.timestamp.unwrap().nanos().unwrap())
            .collect();
        assert_eq!(ts, [1000, 1001]);
        // The next batch, read at an earlier clock reading, still moves forward.
        let b = s.batch(900, [l("web", "d")]).unwrap();
        assert_eq!(
            b.streams[0].entries[0].timestamp.unwrap().nanos(),
            Some(1002)
        );
        assert_eq!((b.oldest_ms(), b.entries()), (Some(0), 1));
        assert!(
            s.batch(0, [l("bad name!", "x")]).is_ok(),
            "values may be any text"
        );
    }

    #[test]
    fn long_lines_are_cut_and_the_rate_is_bounded() {
        let mut s = Shipper::new(
            "web1",
            Limits {
                max_line_bytes: 5,
                lines_per_second: 10.0,
                burst: 3.0,
                mask_fields: Vec::new(),
            },
        );
        let b = s
            .batch(
                0,
                [
                    l("web", "héllo world"),
                    l("web", "ok"),
                    l("web", "x"),
                    l("web", "over"),
                ],
            )
            .unwrap();
        let lines: Vec<&str> = b.streams[0]
            .entries
            .iter()
            .map(|e| e.line.as_str())
            .collect();
        assert_eq!(lines, ["héll", "ok", "x"]);
        assert_eq!(
            (s.counts.truncated, s.counts.rate_limited, s.counts.shipped),
            (1, 1, 3)
        );
        // A second later ten more are allowed, but the burst caps the bucket at 3.
        let b = s
            .batch(1_000_000_000, (0..5).map(|i| l("web", &i.to_string())))
            .unwrap();
        assert_eq!(b.entries(), 3);
        assert_eq!(s.counts.rate_limited, 3);
    }

    #[test]
    fn client_addresses_are_masked_in_place() {
        let mut line =
            r#"{"ts":"x","client":"203.0.113.77","path":"/a","client":"2001:db8:1:2::9"}"#
                .to_owned();
        assert!(mask_fields(&mut line, &["client".into()]));
        assert_eq!(
            line,
            r#"{"ts":"x","client":"203.0.113.0","path":"/a","client":"2001:db8:1::"}"#
        );
        let mut other = r#"{"client":"not-an-ip","peer":"198.18.1.10"}"#.to_owned();
        assert!(!mask_fields(&mut other, &["client".into()]));
        let mut s = Shipper::new(
            "lb1",
            Limits {
                mask_fields: vec!["client".into()],
                ..Limits::default()
            },
        );
        let b = s
            .batch(0, [l("lb", r#"{"client":"198.51.100.23"}"#)])
            .unwrap();
        assert_eq!(b.streams[0].entries[0].line, r#"{"client":"198.51.100.0"}"#);
        assert_eq!(s.counts.masked, 1);
    }
}

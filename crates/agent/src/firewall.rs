//! The firewall's drops as log events and a metric (issue 18). The host's nftables
//! ruleset logs each dropped packet (rate-limited) to nflog group 1 with the prefix
//! `rampart <host> drop <chain>: `; the agent reads that group ([`crate::nflog`]) in
//! its own network namespace, ships each drop as a JSON line (`service="firewall"`,
//! `stream="drop"`) through the log buffer, and counts it in
//! `rampart_agent_firewall_drops_total{chain, proto, src_host, dport}`.
//!
//! Labels stay bounded: `src_host` is a host of the topology (from `[logs.firewall]
//! hosts`) or `external`, and at most [`MAX_SERIES`] label sets are kept; drops past
//! that are counted under `src_host="other", dport="other"`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::nflog::{DropEvent, Nflog};
use crate::ship::Shipping;
use crate::{Family, Kind, Sample};

/// The most label sets of the drop counter.
pub const MAX_SERIES: usize = 512;

/// The log labels of drop events.
pub const SERVICE: &str = "firewall";
pub const STREAM: &str = "drop";

type Key = (String, String, String, String);

/// Drops counted by label set, and the reader's state.
#[derive(Debug, Default)]
pub struct Drops {
    counts: Mutex<BTreeMap<Key, u64>>,
    /// 1 while the nflog group is read, 0 when it could not be opened or failed.
    up: Mutex<bool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Drops {
    /// Counts one drop under its bounded labels.
    pub fn record(&self, ev: &DropEvent, names: &HashMap<IpAddr, String>) {
        let src_host = names
            .get(&ev.src)
            .cloned()
            .unwrap_or_else(|| "external".to_owned());
        let dport = ev
            .dport
            .map_or_else(|| "none".to_owned(), |p| p.to_string());
        let mut key = (ev.chain.clone(), ev.proto.clone(), src_host, dport);
        let mut counts = lock(&self.counts);
        if !counts.contains_key(&key) && counts.len() >= MAX_SERIES {
            key = (
                ev.chain.clone(),
                ev.proto.clone(),
                "other".to_owned(),
                "other".to_owned(),
            );
        }
        *counts.entry(key).or_insert(0) += 1;
    }

    /// `rampart_agent_firewall_drops_total` and `rampart_agent_firewall_reader_up`.
    pub fn families(&self) -> Vec<Family> {
        let samples = lock(&self.counts)
            .iter()
            .map(|((chain, proto, src, dport), n)| Sample {
                labels: vec![
                    ("chain".into(), chain.clone()),
                    ("proto".into(), proto.clone()),
                    ("src_host".into(), src.clone()),
                    ("dport".into(), dport.clone()),
                ],
                value: *n as f64,
                suffix: "",
            })
            .collect();
        vec![
            Family {
                name: "rampart_agent_firewall_drops_total".into(),
                help: "Packets the host's firewall dropped and logged (rate-limited by the ruleset), by chain, protocol, source host (external: not a host of the site) and destination port.".into(),
                kind: Kind::Counter,
                samples,
            },
            Family {
                name: "rampart_agent_firewall_reader_up".into(),
                help: "1 while the agent reads the firewall's nflog group.".into(),
                kind: Kind::Gauge,
                samples: vec![Sample {
                    labels: Vec::new(),
                    value: if *lock(&self.up) { 1.0 } else { 0.0 },
                    suffix: "",
                }],
            },
        ]
    }
}

/// Reads nflog `group` until `stop`: each drop becomes a line queued for shipping and
/// a count. A group that cannot be opened is logged once and the reader stays down
/// (the gauge says so); the agent goes on without it.
pub async fn run(
    group: u16,
    names: Arc<HashMap<IpAddr, String>>,
    shipping: Arc<Shipping>,
    drops: Arc<Drops>,
    mut stop: watch::Receiver<bool>,
) {
    let mut nflog = match Nflog::open(group) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the firewall's drops");
            return;
        }
    };
    *lock(&drops.up) = true;
    loop {
        let events = tokio::select! {
            r = nflog.next() => r,
            _ = stop.changed() => break,
        };
        match events {
            Ok(events) => {
                for ev in &events {
                    drops.record(ev, &names);
                    shipping.queue(SERVICE, STREAM, ev.json_line(&names));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the firewall's drops stopped");
                break;
            }
        }
    }
    *lock(&drops.up) = false;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(src: &str, dport: Option<u16>) -> DropEvent {
        DropEvent {
            host: "web1".into(),
            chain: "input".into(),
            src: src.parse().unwrap(),
            dst: "198.18.1.11".parse().unwrap(),
            proto: "tcp".into(),
            sport: Some(40_000),
            dport,
        }
    }

    #[test]
    fn drops_are_counted_under_bounded_labels() {
        let names = HashMap::from([("203.0.113.100".parse().unwrap(), "client".to_owned())]);
        let d = Drops::default();
        d.record(&ev("203.0.113.100", Some(8443)), &names);
        d.record(&ev("203.0.113.100", Some(8443)), &names);
        d.record(&ev("192.0.2.7", None), &names);
        for port in 0..(MAX_SERIES as u16 + 10) {
            d.record(&ev("192.0.2.8", Some(port + 1)), &names);
        }
        let f = d.families();
        let samples = &f[0].samples;
        assert_eq!(samples.len(), MAX_SERIES + 1, "bounded, plus the overflow");
        let find = |src: &str, port: &str| {
            samples
                .iter()
                .find(|s| {
                    s.labels.contains(&("src_host".into(), src.into()))
                        && s.labels.contains(&("dport".into(), port.into()))
                })
                .map(|s| s.value)
        };
        assert_eq!(find("client", "8443"), Some(2.0));
        assert_eq!(find("external", "none"), Some(1.0));
        assert!(find("other", "other").unwrap() >= 10.0);
        assert_eq!(f[1].samples[0].value, 0.0, "not reading");
    }
}

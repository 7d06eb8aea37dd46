//! MariaDB GTID positions (`0-1-42,1-2-7`): parsed into the highest sequence number per
//! replication domain, and compared ("has this server got everything that one has?").

use std::collections::BTreeMap;
use std::fmt;

/// A GTID position: per domain, the server id and sequence number of its last GTID.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gtid(BTreeMap<u32, (u32, u64)>);

impl Gtid {
    /// Parses `"0-1-42"` or `"0-1-42,1-2-7"`; the empty string is the empty position.
    pub fn parse(s: &str) -> Option<Gtid> {
        let mut map = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut it = part.splitn(3, '-');
            let domain: u32 = it.next()?.parse().ok()?;
            let server: u32 = it.next()?.parse().ok()?;
            let seq: u64 = it.next()?.parse().ok()?;
            let e = map.entry(domain).or_insert((server, seq));
            if seq > e.1 {
                *e = (server, seq);
            }
        }
        Some(Gtid(map))
    }

    /// Whether this position has reached `other` in every domain `other` has.
    pub fn covers(&self, other: &Gtid) -> bool {
        other
            .0
            .iter()
            .all(|(d, (_, seq))| self.0.get(d).is_some_and(|(_, s)| s >= seq))
    }

    /// The sum of sequence numbers: a total order for "who is further ahead" between
    /// servers of one history (a single domain in rampart).
    pub fn weight(&self) -> u64 {
        self.0.values().map(|(_, s)| *s).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (d, (server, seq))) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}-{server}-{seq}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn g(s: &str) -> Gtid {
        Gtid::parse(s).unwrap()
    }

    #[test]
    fn parse_and_cover() {
        assert_eq!(g("0-1-42").to_string(), "0-1-42");
        assert_eq!(g("1-2-7, 0-1-42").to_string(), "0-1-42,1-2-7");
        assert!(g("").is_empty());
        assert!(Gtid::parse("0-1").is_none());
        assert!(Gtid::parse("a-1-2").is_none());
        assert!(g("0-2-43").covers(&g("0-1-42")));
        assert!(g("0-1-42").covers(&g("0-1-42")));
        assert!(!g("0-1-41").covers(&g("0-1-42")));
        assert!(!g("0-1-50").covers(&g("0-1-42,1-1-1")));
        assert!(g("0-1-1").covers(&g("")));
        assert_eq!(g("0-1-42,1-2-7").weight(), 49);
    }
}

//! What an archived binlog file holds, read from its events: the last GTID of each
//! domain and the newest event time. The archiver records both in the file's manifest,
//! so the archive's position (where a new session after a failover resumes) and the
//! restore window are known without replaying anything.
//!
//! A binlog file is the magic `\xfebin` and then events, each with a 19-byte header
//! (timestamp u32, type u8, server id u32, size u32, next position u32, flags u16, all
//! little-endian). MariaDB's GTID event (type 162) starts its body with the sequence
//! number (u64), the domain (u32) and flags (u8). A file still being written may end
//! inside an event, or inside a transaction; the scan stops after the last whole
//! transaction, so nothing archived ever holds part of one and a session that ends mid
//! transaction leaves the archive's position before it: the next session sends it
//! whole. A transaction is the GTID event up to its XID event (InnoDB), its `COMMIT` or
//! `ROLLBACK` query (other engines), its XA prepare, or, for a standalone GTID (DDL, flag
//! 1), the one event after it. Events outside transactions (rotate, format description,
//! GTID list, checkpoints) are whole on their own.

use std::collections::BTreeMap;

const MAGIC: &[u8; 4] = b"\xfebin";
const HEADER: usize = 19;
const GTID_EVENT: u8 = 162;
const QUERY_EVENT: u8 = 2;
const XID_EVENT: u8 = 16;
const XA_PREPARE_EVENT: u8 = 38;
/// The GTID event's flag for a transaction of one event (DDL).
const FL_STANDALONE: u8 = 1;

/// Whether a query event's text ends the transaction: it ends in `COMMIT` or
/// `ROLLBACK`, with or without the 4-byte CRC32 checksum after it.
fn ends_transaction(event: &[u8]) -> bool {
    let ends = |e: &[u8]| e.ends_with(b"COMMIT") || e.ends_with(b"ROLLBACK");
    ends(event) || (event.len() >= 4 && ends(&event[..event.len() - 4]))
}

/// What [`scan`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// domain → (server id, sequence number) of the last GTID event.
    pub last: BTreeMap<u32, (u32, u64)>,
    /// The newest event timestamp (unix seconds), if any event carried one.
    pub newest: Option<i64>,
    /// Events up to `whole`.
    pub events: u64,
    /// Bytes up to the end of the last whole transaction (or event outside one).
    pub whole: usize,
}

impl Scan {
    /// The position as a GTID list (`0-1-42,1-2-7`).
    pub fn gtid(&self) -> String {
        render(&self.last)
    }
}

/// A GTID map as MariaDB writes the list.
pub fn render(map: &BTreeMap<u32, (u32, u64)>) -> String {
    map.iter()
        .map(|(d, (s, n))| format!("{d}-{s}-{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads the events of a binlog file (`None` if it does not start like one).
pub fn scan(bytes: &[u8]) -> Option<Scan> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return None;
    }
    let u32_at =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let mut s = Scan {
        whole: MAGIC.len(),
        ..Scan::default()
    };
    let mut pos = MAGIC.len();
    // The open transaction: its GTID (domain, server, sequence), whether it is
    // standalone, and the events and newest time since the last whole point.
    let mut open: Option<(u32, u32, u64, bool)> = None;
    let (mut events, mut newest) = (0u64, s.newest);
    while pos + HEADER <= bytes.len() {
        let size = u32_at(pos + 9) as usize;
        if size < HEADER || pos + size > bytes.len() {
            break;
        }
        let kind = bytes[pos + 4];
        let ts = u32_at(pos);
        if ts != 0 {
            newest = Some(newest.unwrap_or(0).max(i64::from(ts)));
        }
        events += 1;
        let whole = if kind == GTID_EVENT && size >= HEADER + 13 {
            let body = pos + HEADER;
            let mut seq = [0u8; 8];
            seq.copy_from_slice(&bytes[body..body + 8]);
            let domain = u32_at(body + 8);
            let standalone = bytes[body + 12] & FL_STANDALONE != 0;
            open = Some((domain, u32_at(pos + 5), u64::from_le_bytes(seq), standalone));
            false
        } else if let Some((_, _, _, standalone)) = open {
            standalone
                || kind == XID_EVENT
                || kind == XA_PREPARE_EVENT
                || (kind == QUERY_EVENT && ends_transaction(&bytes[pos..pos + size]))
        } else {
            true
        };
        pos += size;
        if whole {
            if let Some((domain, server, seq, _)) = open.take() {
                s.last.insert(domain, (server, seq));
            }
            s.events += events;
            s.newest = newest;
            events = 0;
            s.whole = pos;
        }
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ts: u32, kind: u8, server: u32, body: &[u8]) -> Vec<u8> {
        let size = (HEADER + body.len()) as u32;
        let mut e = ts.to_le_bytes().to_vec();
        e.push(kind);
        e.extend_from_slice(&server.to_le_bytes());
        e.extend_from_slice(&size.to_le_bytes());
        e.extend_from_slice(&0u32.to_le_bytes());
        e.extend_from_slice(&0u16.to_le_bytes());
        e.extend_from_slice(body);
        e
    }

    fn gtid(seq: u64, domain: u32, flags: u8) -> Vec<u8> {
        let mut b = seq.to_le_bytes().to_vec();
        b.extend_from_slice(&domain.to_le_bytes());
        b.push(flags);
        b
    }

    /// An InnoDB transaction: GTID, BEGIN, a row event, XID (with a checksum each).
    fn innodb(ts: u32, server: u32, seq: u64, domain: u32) -> Vec<u8> {
        let mut t = event(ts, GTID_EVENT, server, &gtid(seq, domain, 0));
        t.extend(event(
            ts,
            QUERY_EVENT,
            server,
            b"\0\0\0\0BEGIN\x01\x02\x03\x04",
        ));
        t.extend(event(ts, 30, server, &[7; 40]));
        t.extend(event(ts, XID_EVENT, server, &[9; 12]));
        t
    }

    #[test]
    fn last_gtid_per_domain_and_newest_time() {
        let mut f = MAGIC.to_vec();
        f.extend(event(0, 4, 1, &[0; 20])); // a fake rotate without a timestamp
        f.extend(event(1000, 15, 1, &[0; 80])); // format description
        f.extend(innodb(1001, 1, 41, 0));
        f.extend(innodb(1002, 2, 42, 0));
        // DDL: a standalone GTID and its one query.
        f.extend(event(1003, GTID_EVENT, 7, &gtid(5, 1, FL_STANDALONE)));
        f.extend(event(
            1003,
            QUERY_EVENT,
            7,
            b"\0\0\0\0CREATE TABLE t (a INT)",
        ));
        // A non-transactional table's: committed by a COMMIT query, no checksum.
        f.extend(event(1004, GTID_EVENT, 7, &gtid(6, 1, 0)));
        f.extend(event(1004, QUERY_EVENT, 7, b"\0\0\0\0BEGIN"));
        f.extend(event(1004, 30, 7, &[1; 10]));
        f.extend(event(1004, QUERY_EVENT, 7, b"\0\0\0\0COMMIT"));
        let whole = f.len();
        let s = scan(&f).unwrap();
        assert_eq!(s.gtid(), "0-2-42,1-7-6");
        assert_eq!(s.newest, Some(1004));
        assert_eq!((s.events, s.whole), (16, whole));
        // A file cut inside its last event, or between a transaction's events: the
        // scan stops before that transaction, which the next session sends whole.
        let t = innodb(1005, 2, 43, 0);
        for cut in [25, 19 + 13 + 10, t.len() - 1] {
            let mut g = f.clone();
            g.extend(&t[..cut]);
            let s = scan(&g).unwrap();
            assert_eq!(
                (s.gtid().as_str(), s.whole, s.newest),
                ("0-2-42,1-7-6", whole, Some(1004)),
                "cut at {cut}"
            );
        }
        f.extend(&t);
        assert_eq!(scan(&f).unwrap().gtid(), "0-2-43,1-7-6");
        assert_eq!(scan(b"not a binlog"), None);
        assert_eq!(scan(MAGIC).unwrap().gtid(), "");
    }
}

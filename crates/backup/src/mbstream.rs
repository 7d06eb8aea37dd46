//! Reads the metadata out of a `mariadb-backup --stream=mbstream` stream as it passes.
//!
//! The stream is a sequence of chunks (`XBSTCK01`, flags, type `P` payload or `E` end of
//! file, a path, and for a payload its length, offset, CRC32 and bytes). [`Meta`] parses
//! the chunk headers of everything written to it and keeps the payloads of the few small
//! files a backup's manifest needs (`xtrabackup_checkpoints`: the LSN range;
//! `xtrabackup_binlog_info`: the binlog position and GTID), so the backup host learns
//! them from the stream itself, whoever produced it. A stream that ends inside a chunk
//! is incomplete ([`Meta::finish`]).

use std::collections::BTreeMap;

const MAGIC: &[u8; 8] = b"XBSTCK01";
/// The files kept, and how much of each at most.
const KEPT: [&str; 3] = [
    "xtrabackup_checkpoints",
    "xtrabackup_binlog_info",
    "xtrabackup_info",
];
const MAX_KEPT: usize = 64 * 1024;
const MAX_PATH: usize = 4096;

/// The parser's state between writes.
#[derive(Debug, Default)]
pub struct Meta {
    head: Vec<u8>,
    /// Payload bytes still to pass of the current chunk, and whether they are kept.
    payload_left: u64,
    keeping: Option<String>,
    files: BTreeMap<String, Vec<u8>>,
    chunks: u64,
    error: Option<String>,
}

/// What the stream said about the backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub from_lsn: u64,
    pub to_lsn: u64,
    /// The GTID of the last change in the copy (empty without a binlog).
    pub gtid: String,
    /// Chunks in the stream.
    pub chunks: u64,
}

/// How long a chunk header is, once enough of it is there to tell; `None` if more bytes
/// are needed.
fn header_len(head: &[u8]) -> Result<Option<usize>, String> {
    if head.len() < 14 {
        return Ok(None);
    }
    if &head[..8] != MAGIC {
        return Err("not an mbstream (bad chunk magic)".into());
    }
    let path_len = u32::from_le_bytes([head[10], head[11], head[12], head[13]]) as usize;
    if path_len > MAX_PATH {
        return Err("an mbstream path longer than 4096 bytes".into());
    }
    match head[9] {
        b'E' => Ok(Some(14 + path_len)),
        b'P' => Ok(Some(14 + path_len + 20)),
        t => Err(format!("an mbstream chunk of unknown type {t:#x}")),
    }
}

impl Meta {
    /// Parses `data`, the next bytes of the stream.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.error.is_none() {
            if self.payload_left > 0 {
                let n = usize::try_from(self.payload_left)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                if let Some(name) = &self.keeping {
                    let kept = self.files.entry(name.clone()).or_default();
                    let room = MAX_KEPT.saturating_sub(kept.len()).min(n);
                    kept.extend_from_slice(&data[..room]);
                }
                self.payload_left -= n as u64;
                data = &data[n..];
                continue;
            }
            // Accumulate a header: first its fixed part, then the rest it announces.
            let want = match header_len(&self.head) {
                Err(e) => {
                    self.error = Some(e);
                    return;
                }
                Ok(None) => 14,
                Ok(Some(n)) => n,
            };
            let take = (want - self.head.len().min(want)).min(data.len());
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.head.len() < want || want == 14 && header_len(&self.head) != Ok(Some(14)) {
                continue;
            }
            // A whole header.
            let path_len = want - 14 - if self.head[9] == b'P' { 20 } else { 0 };
            let path = String::from_utf8_lossy(&self.head[14..14 + path_len]).into_owned();
            self.chunks += 1;
            if self.head[9] == b'P' {
                let at = 14 + path_len;
                let mut len = [0u8; 8];
                len.copy_from_slice(&self.head[at..at + 8]);
                self.payload_left = u64::from_le_bytes(len);
                self.keeping = KEPT.contains(&path.as_str()).then_some(path);
            }
            self.head.clear();
        }
    }

    /// The backup's metadata, once the whole stream has passed.
    pub fn finish(self) -> Result<Info, String> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.payload_left > 0 || !self.head.is_empty() {
            return Err("the mbstream ends inside a chunk (incomplete)".into());
        }
        let text = |name: &str| {
            self.files
                .get(name)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        let checkpoints = text("xtrabackup_checkpoints");
        let field = |key: &str| -> Result<u64, String> {
            checkpoints
                .lines()
                .filter_map(|l| l.split_once('='))
                .find(|(k, _)| k.trim() == key)
                .and_then(|(_, v)| v.trim().parse().ok())
                .ok_or_else(|| format!("the mbstream's xtrabackup_checkpoints has no {key}"))
        };
        // `xtrabackup_binlog_info`: "<file>\t<position>\t<gtid list>".
        let gtid = text("xtrabackup_binlog_info")
            .split('\t')
            .nth(2)
            .unwrap_or("")
            .trim()
            .to_owned();
        Ok(Info {
            from_lsn: field("from_lsn")?,
            to_lsn: field("to_lsn")?,
            gtid,
            chunks: self.chunks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(path: &str, payload: Option<&[u8]>) -> Vec<u8> {
        let mut c = MAGIC.to_vec();
        c.push(0);
        c.push(if payload.is_some() { b'P' } else { b'E' });
        c.extend_from_slice(&(path.len() as u32).to_le_bytes());
        c.extend_from_slice(path.as_bytes());
        if let Some(p) = payload {
            c.extend_from_slice(&(p.len() as u64).to_le_bytes());
            c.extend_from_slice(&0u64.to_le_bytes());
            c.extend_from_slice(&0u32.to_le_bytes());
            c.extend_from_slice(p);
        }
        c
    }

    fn stream() -> Vec<u8> {
        let mut s = chunk("ibdata1", Some(&[7u8; 5000]));
        s.extend(chunk("ibdata1", None));
        s.extend(chunk(
            "xtrabackup_binlog_info",
            Some(b"db2-bin.000003\t957\t0-1-3,1-2-9\n"),
        ));
        s.extend(chunk(
            "xtrabackup_checkpoints",
            Some(b"backup_type = full-backuped\nfrom_lsn = 0\nto_lsn = 50408\nlast_lsn = 51100\n"),
        ));
        s.extend(chunk("xtrabackup_checkpoints", None));
        s
    }

    fn parse(parts: &[&[u8]]) -> Result<Info, String> {
        let mut m = Meta::default();
        for p in parts {
            m.feed(p);
        }
        m.finish()
    }

    #[test]
    fn reads_the_metadata_whatever_the_write_sizes() {
        let s = stream();
        let expected = Info {
            from_lsn: 0,
            to_lsn: 50408,
            gtid: "0-1-3,1-2-9".into(),
            chunks: 5,
        };
        assert_eq!(parse(&[&s]).unwrap(), expected);
        let bytes: Vec<&[u8]> = s.chunks(1).collect();
        assert_eq!(parse(&bytes).unwrap(), expected);
        let sevens: Vec<&[u8]> = s.chunks(7).collect();
        assert_eq!(parse(&sevens).unwrap(), expected);
    }

    #[test]
    fn incomplete_and_foreign_streams_are_errors() {
        let s = stream();
        for cut in [1, 13, 20, s.len() - 3] {
            let err = parse(&[&s[..cut]]).unwrap_err();
            assert!(err.contains("incomplete"), "cut at {cut}: {err}");
        }
        assert!(parse(&[b"PK\x03\x04 a zip file, not a backup"])
            .unwrap_err()
            .contains("bad chunk magic"));
        let mut no_meta = chunk("ibdata1", Some(b"x"));
        no_meta.extend(chunk("ibdata1", None));
        assert!(parse(&[&no_meta]).unwrap_err().contains("no from_lsn"));
    }
}

//! Loki's push API (`POST /loki/api/v1/push`): the protobuf messages, derived by hand
//! with `prost` (no protoc) from Loki's `logproto/push.proto`, snappy's block format
//! around them (`Content-Encoding` is not set; Loki's clients send
//! `Content-Type: application/x-protobuf` and a snappy-compressed body), and the JSON
//! form (`Content-Type: application/json`):
//!
//! ```text
//! message PushRequest   { repeated StreamAdapter streams = 1; }
//! message StreamAdapter { string labels = 1; repeated EntryAdapter entries = 2;
//!                         uint64 hash = 3; }
//! message EntryAdapter  { google.protobuf.Timestamp timestamp = 1; string line = 2;
//!                         repeated LabelPairAdapter structuredMetadata = 3; }
//! message Timestamp     { int64 seconds = 1; int32 nanos = 2; }
//! ```
//!
//! `{"streams":[{"stream":{"host":"web1"},"values":[["<ns>","line"], ...]}]}` is the
//! JSON form. Both become [`Push`]: streams of label pairs and (nanoseconds, line).

use prost::Message as _;

use crate::labels::{parse_labels, Labels};

/// `logproto.PushRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

/// `logproto.StreamAdapter`: the labels as Prometheus text, `{a="b", c="d"}`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// `logproto.EntryAdapter` (structured metadata is skipped).
#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    pub line: String,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    pub fn from_nanos(ns: i64) -> Self {
        Timestamp {
            seconds: ns.div_euclid(1_000_000_000),
            nanos: ns.rem_euclid(1_000_000_000) as i32,
        }
    }

    pub fn nanos(self) -> Option<i64> {
        if !(0..1_000_000_000).contains(&self.nanos) {
            return None;
        }
        self.seconds
            .checked_mul(1_000_000_000)?
            .checked_add(i64::from(self.nanos))
    }
}

/// One stream of a push: its labels and its entries, (nanoseconds, line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    pub labels: Labels,
    pub entries: Vec<(i64, String)>,
}

/// A decoded push.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Push {
    pub streams: Vec<Stream>,
}

impl Push {
    pub fn lines(&self) -> usize {
        self.streams.iter().map(|s| s.entries.len()).sum()
    }
}

/// Why a push body was refused (a 400: the client's fault, never retried).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PushError {
    #[error("the body is not snappy-compressed protobuf: {0}")]
    Snappy(String),
    #[error("the body is not a PushRequest: {0}")]
    Protobuf(String),
    #[error("the body is not a JSON push: {0}")]
    Json(String),
    #[error("stream {0}: {1}")]
    Labels(usize, String),
    #[error("stream {0}, entry {1}: a timestamp out of range")]
    Timestamp(usize, usize),
    #[error("the body is {0} bytes uncompressed; at most {1}")]
    TooLarge(usize, usize),
}

/// The most a push may hold once decompressed.
pub const MAX_DECODED: usize = 16 << 20;

/// Decodes a push body: snappy-compressed protobuf unless `content_type` says JSON.
pub fn decode(content_type: &str, body: &[u8]) -> Result<Push, PushError> {
    if content_type.starts_with("application/json") {
        return decode_json(body);
    }
    let len = snap::raw::decompress_len(body).map_err(|e| PushError::Snappy(e.to_string()))?;
    if len > MAX_DECODED {
        return Err(PushError::TooLarge(len, MAX_DECODED));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| PushError::Snappy(e.to_string()))?;
    let req =
        PushRequest::decode(raw.as_slice()).map_err(|e| PushError::Protobuf(e.to_string()))?;
    let mut push = Push::default();
    for (i, s) in req.streams.into_iter().enumerate() {
        let labels = parse_labels(&s.labels).map_err(|e| PushError::Labels(i, e))?;
        let mut entries = Vec::with_capacity(s.entries.len());
        for (j, e) in s.entries.into_iter().enumerate() {
            let ts = e
                .timestamp
                .unwrap_or_default()
                .nanos()
                .ok_or(PushError::Timestamp(i, j))?;
            entries.push((ts, e.line));
        }
        push.streams.push(Stream { labels, entries });
    }
    Ok(push)
}

fn decode_json(body: &[u8]) -> Result<Push, PushError> {
    #[derive(serde::Deserialize)]
    struct Body {
        streams: Vec<JsonStream>,
    }
    #[derive(serde::Deserialize)]
    struct JsonStream {
        stream: std::collections::BTreeMap<String, String>,
        values: Vec<(String, String)>,
    }
    if body.len() > MAX_DECODED {
        return Err(PushError::TooLarge(body.len(), MAX_DECODED));
    }
    let b: Body = serde_json::from_slice(body).map_err(|e| PushError::Json(e.to_string()))?;
    let mut push = Push::default();
    for (i, s) in b.streams.into_iter().enumerate() {
        let labels =
            Labels::new(s.stream.into_iter().collect()).map_err(|e| PushError::Labels(i, e))?;
        let mut entries = Vec::with_capacity(s.values.len());
        for (j, (ts, line)) in s.values.into_iter().enumerate() {
            let ts = ts.parse::<i64>().map_err(|_| PushError::Timestamp(i, j))?;
            entries.push((ts, line));
        }
        push.streams.push(Stream { labels, entries });
    }
    Ok(push)
}

/// Encodes `push` as a client sends it: protobuf, snappy block format.
pub fn encode(push: &Push) -> Vec<u8> {
    let req = PushRequest {
        streams: push
            .streams
            .iter()
            .map(|s| StreamAdapter {
                labels: s.labels.to_string(),
                entries: s
                    .entries
                    .iter()
                    .map(|(ts, line)| EntryAdapter {
                        timestamp: Some(Timestamp::from_nanos(*ts)),
                        line: line.clone(),
                    })
                    .collect(),
                hash: 0,
            })
            .collect(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn protobuf_round_trips_and_json_says_the_same() {
        let push = Push {
            streams: vec![Stream {
                labels: labels(&[("host", "web1"), ("service", "web")]),
                entries: vec![
                    (1_700_000_000_123_456_789, "GET / 200".into()),
                    (-5, "x".into()),
                ],
            }],
        };
        assert_eq!(
            decode("application/x-protobuf", &encode(&push)).unwrap(),
            push
        );
        let json = r#"{"streams":[{"stream":{"service":"web","host":"web1"},"values":[["1700000000123456789","GET / 200"],["-5","x"]]}]}"#;
        assert_eq!(decode("application/json", json.as_bytes()).unwrap(), push);
    }

    #[test]
    fn bad_bodies_are_named() {
        assert!(matches!(
            decode("application/x-protobuf", b"\xff\xff\xff\xff\xff"),
            Err(PushError::Snappy(_))
        ));
        let not_proto = snap::raw::Encoder::new()
            .compress_vec(b"\x0a\xff\xff")
            .unwrap();
        assert!(matches!(
            decode("", &not_proto),
            Err(PushError::Protobuf(_))
        ));
        let bad_labels = PushRequest {
            streams: vec![StreamAdapter {
                labels: "{host=web1}".into(),
                entries: vec![],
                hash: 0,
            }],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&bad_labels.encode_to_vec())
            .unwrap();
        assert!(matches!(decode("", &body), Err(PushError::Labels(0, _))));
        assert!(matches!(
            decode(
                "application/json",
                b"{\"streams\":[{\"stream\":{},\"values\":[[\"x\",\"l\"]]}]}"
            ),
            Err(PushError::Timestamp(0, 0))
        ));
        assert!(matches!(
            decode("application/json", b"[]"),
            Err(PushError::Json(_))
        ));
    }
}

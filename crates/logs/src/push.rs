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

/// Why a push body was refused: a 400 (the client's fault, never worth retrying), or a
/// 413 for [`PushError::TooLarge`] (see [`PushError::status`]).
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
    #[error("stream {0}, entry {1}: {2}")]
    Timestamp(usize, usize, String),
    #[error("stream {0}, entry {1}: the line is {2} bytes; at most {MAX_LINE}")]
    LineTooLong(usize, usize, usize),
    #[error("the body is {0} bytes uncompressed; at most {1}")]
    TooLarge(usize, usize),
}

impl PushError {
    /// The HTTP status the push API answers with: 413 for a body too large once
    /// decompressed, 400 for everything else.
    pub fn status(&self) -> u16 {
        match self {
            PushError::TooLarge(..) => 413,
            _ => 400,
        }
    }
}

/// The most a push may hold once decompressed.
pub const MAX_DECODED: usize = 16 << 20;
/// The longest line stored (Loki's `max_line_size` default, 256 KiB); a longer one
/// refuses the push.
pub const MAX_LINE: usize = 256 << 10;
/// How far past the store's clock an entry may be (Loki's `creation_grace_period`).
pub const FUTURE_GRACE_NS: i64 = 10 * 60 * 1_000_000_000;

/// Decodes a push body: snappy-compressed protobuf unless `content_type` says JSON.
/// Structured metadata (protobuf field 3 of an entry, or the JSON form's third element
/// of a value) is accepted and not kept: the store has labels and lines only.
pub fn decode(content_type: &str, body: &[u8]) -> Result<Push, PushError> {
    if content_type
        .get(..16)
        .is_some_and(|t| t.eq_ignore_ascii_case("application/json"))
    {
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
        let labels = stream_labels(i, parse_labels(&s.labels))?;
        let mut entries = Vec::with_capacity(s.entries.len());
        for (j, e) in s.entries.into_iter().enumerate() {
            let ts = e
                .timestamp
                .unwrap_or_default()
                .nanos()
                .ok_or_else(|| PushError::Timestamp(i, j, "a timestamp out of range".into()))?;
            entries.push(entry(i, j, ts, e.line)?);
        }
        push.streams.push(Stream { labels, entries });
    }
    Ok(push)
}

/// A stream's labels, refused when they do not parse or there are none (a stream
/// without labels could never be selected).
fn stream_labels(i: usize, labels: Result<Labels, String>) -> Result<Labels, PushError> {
    let labels = labels.map_err(|e| PushError::Labels(i, e))?;
    if labels.pairs().is_empty() {
        return Err(PushError::Labels(
            i,
            "no labels; a stream needs at least one, such as {host=\"web1\"}".into(),
        ));
    }
    Ok(labels)
}

fn entry(i: usize, j: usize, ts: i64, line: String) -> Result<(i64, String), PushError> {
    if line.len() > MAX_LINE {
        return Err(PushError::LineTooLong(i, j, line.len()));
    }
    Ok((ts, line))
}

/// One JSON value, `["<ns>", "<line>"]` or `["<ns>", "<line>", {"<name>": "<value>"}]`.
struct JsonEntry(String, String);

impl<'de> serde::Deserialize<'de> for JsonEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = JsonEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "[\"<unix epoch in nanoseconds>\", \"<log line>\"] with an optional \
                     object of string structured metadata",
                )
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<JsonEntry, A::Error> {
                use serde::de::Error as _;
                let ts: String = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(0, &self))?;
                let line: String = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(1, &self))?;
                let _metadata: Option<std::collections::BTreeMap<String, String>> =
                    seq.next_element()?;
                if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(A::Error::invalid_length(4, &self));
                }
                Ok(JsonEntry(ts, line))
            }
        }
        d.deserialize_seq(Visitor)
    }
}

fn decode_json(body: &[u8]) -> Result<Push, PushError> {
    #[derive(serde::Deserialize)]
    struct Body {
        streams: Vec<JsonStream>,
    }
    #[derive(serde::Deserialize)]
    struct JsonStream {
        stream: std::collections::BTreeMap<String, String>,
        values: Vec<JsonEntry>,
    }
    if body.len() > MAX_DECODED {
        return Err(PushError::TooLarge(body.len(), MAX_DECODED));
    }
    let b: Body = serde_json::from_slice(body).map_err(|e| PushError::Json(e.to_string()))?;
    let mut push = Push::default();
    for (i, s) in b.streams.into_iter().enumerate() {
        let labels = stream_labels(i, Labels::new(s.stream.into_iter().collect()))?;
        let mut entries = Vec::with_capacity(s.values.len());
        for (j, JsonEntry(ts, line)) in s.values.into_iter().enumerate() {
            let ts = ts.parse::<i64>().map_err(|_| {
                PushError::Timestamp(
                    i,
                    j,
                    format!("timestamp {ts:?} is not a string of nanoseconds since the epoch"),
                )
            })?;
            entries.push(entry(i, j, ts, line)?);
        }
        push.streams.push(Stream { labels, entries });
    }
    Ok(push)
}

impl Push {
    /// Refuses an entry before 1970 or more than [`FUTURE_GRACE_NS`] after `now` (ns),
    /// as Loki refuses samples "too new" (a host's clock far ahead would otherwise hide
    /// its lines from every query of the present).
    pub fn check_times(&self, now: i64) -> Result<(), PushError> {
        let latest = now.saturating_add(FUTURE_GRACE_NS);
        for (i, s) in self.streams.iter().enumerate() {
            for (j, (ts, _)) in s.entries.iter().enumerate() {
                if *ts < 0 {
                    return Err(PushError::Timestamp(
                        i,
                        j,
                        format!("timestamp {ts} is before 1970"),
                    ));
                }
                if *ts > latest {
                    return Err(PushError::Timestamp(
                        i,
                        j,
                        format!(
                            "timestamp {ts} is too far in the future (more than 10 minutes after the store's clock, {now})"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
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
                b"{\"streams\":[{\"stream\":{\"a\":\"b\"},\"values\":[[\"x\",\"l\"]]}]}"
            ),
            Err(PushError::Timestamp(0, 0, _))
        ));
        assert!(matches!(
            decode("application/json", b"[]"),
            Err(PushError::Json(_))
        ));
        for (body, want) in [
            (
                r#"{"streams":[{"stream":{},"values":[["1","l"]]}]}"#,
                "no labels",
            ),
            (
                r#"{"streams":[{"stream":{"a":"b"},"values":[["1","l",{},"x"]]}]}"#,
                "invalid length 4",
            ),
            (
                r#"{"streams":[{"stream":{"a":"b"},"values":[["1","l",{"n":{"x":"y"}}]]}]}"#,
                "invalid type: map",
            ),
            (
                r#"{"streams":[{"stream":{"a":"b"},"values":[[1,"l"]]}]}"#,
                "invalid type: integer",
            ),
        ] {
            let e = decode("application/json", body.as_bytes()).unwrap_err();
            assert!(e.to_string().contains(want), "{body}: {e}");
        }
        let long = format!(
            r#"{{"streams":[{{"stream":{{"a":"b"}},"values":[["1","{}"]]}}]}}"#,
            "x".repeat(MAX_LINE + 1)
        );
        assert_eq!(
            decode("application/json", long.as_bytes()),
            Err(PushError::LineTooLong(0, 0, MAX_LINE + 1))
        );
    }

    #[test]
    fn structured_metadata_is_accepted_and_not_kept() {
        let json = r#"{"streams":[{"stream":{"a":"b"},"values":[["1","l",{"trace_id":"0242ac120002"}],["2","m"]]}]}"#;
        let p = decode("application/json", json.as_bytes()).unwrap();
        assert_eq!(p.streams[0].entries, [(1, "l".into()), (2, "m".into())]);
    }

    #[test]
    fn times_before_1970_or_far_ahead_are_refused() {
        let p = |ts| Push {
            streams: vec![Stream {
                labels: labels(&[("a", "b")]),
                entries: vec![(ts, "l".into())],
            }],
        };
        let now = 1_000 * 1_000_000_000;
        assert!(p(now + FUTURE_GRACE_NS).check_times(now).is_ok());
        assert!(p(0).check_times(now).is_ok());
        let e = p(now + FUTURE_GRACE_NS + 1).check_times(now).unwrap_err();
        assert!(e.to_string().contains("too far in the future"), "{e}");
        let e = p(-1).check_times(now).unwrap_err();
        assert!(e.to_string().contains("before 1970"), "{e}");
    }
}

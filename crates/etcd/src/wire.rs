//! The v3 JSON gateway's encoding of requests and answers: keys, values and range ends in
//! base64, every int64 as a JSON string, zero and false fields left out of answers, lease
//! fields spelt `ID`/`TTL`, streamed answers wrapped one JSON object per line as
//! `{"result":..}` or `{"error":..}`. Pure functions from and to bytes; the JSON types stay
//! here and the crate's own types (`model.rs`) carry no serde.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::Error;
use crate::model::{Compare, Kv, Lease, Op, Range, Txn, TxnResponse, WatchEvent};

fn b64(bytes: &[u8]) -> Value {
    Value::String(BASE64.encode(bytes))
}

/// An int64 as the gateway writes it: a JSON string.
fn int64(n: i64) -> Value {
    Value::String(n.to_string())
}

/// The end of the range holding every key that starts with `prefix`: the prefix with its
/// last byte increased (after dropping trailing 0xff bytes); `[0]`, "to the end", for a
/// prefix that has no such byte.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

pub(crate) fn range_request(key: &str, prefix: bool) -> Value {
    if !prefix {
        return json!({ "key": b64(key.as_bytes()) });
    }
    // An empty key is refused; "\0" up to "\0" is every key.
    let start: &[u8] = if key.is_empty() { &[0] } else { key.as_bytes() };
    json!({ "key": b64(start), "range_end": b64(&prefix_end(key.as_bytes())) })
}

pub(crate) fn put_request(key: &str, value: &[u8], lease: Option<i64>) -> Value {
    let mut put = json!({ "key": b64(key.as_bytes()), "value": b64(value) });
    if let Some(lease) = lease {
        put["lease"] = int64(lease);
    }
    put
}

pub(crate) fn delete_request(key: &str) -> Value {
    json!({ "key": b64(key.as_bytes()) })
}

pub(crate) fn grant_request(ttl: Duration) -> Value {
    // Whole seconds, rounded up; a TTL beyond i64 seconds is etcd's to refuse.
    let secs = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0));
    json!({ "TTL": int64(i64::try_from(secs).unwrap_or(i64::MAX)) })
}

pub(crate) fn lease_request(id: i64) -> Value {
    json!({ "ID": int64(id) })
}

pub(crate) fn compact_request(revision: i64) -> Value {
    json!({ "revision": int64(revision), "physical": true })
}

/// A watch of `key` (or every key under it as a prefix) from `start_revision` (0: from
/// now), with progress notifications.
pub(crate) fn watch_request(key: &str, prefix: bool, start_revision: i64) -> Value {
    let mut create = range_request(key, prefix);
    create["start_revision"] = int64(start_revision);
    create["progress_notify"] = Value::Bool(true);
    json!({ "create_request": create })
}

fn compare(c: &Compare) -> Value {
    compare_as(c, true)
}

/// `c` as a comparison for equality (`equal`) or for inequality.
fn compare_as(c: &Compare, equal: bool) -> Value {
    let (key, target, field, value) = match c {
        Compare::CreateRevision(k, r) => (k, "CREATE", "create_revision", int64(*r)),
        Compare::ModRevision(k, r) => (k, "MOD", "mod_revision", int64(*r)),
        Compare::Version(k, v) => (k, "VERSION", "version", int64(*v)),
        Compare::Value(k, v) => (k, "VALUE", "value", b64(v)),
        Compare::Lease(k, l) => (k, "LEASE", "lease", int64(*l)),
        Compare::Not(inner) => return compare_as(inner, !equal),
    };
    let mut m = Map::new();
    m.insert("key".into(), b64(key.as_bytes()));
    // Always sent: a missing target means VERSION to the gateway, whatever field is set.
    m.insert("target".into(), target.into());
    m.insert(
        "result".into(),
        if equal { "EQUAL" } else { "NOT_EQUAL" }.into(),
    );
    m.insert(field.into(), value);
    Value::Object(m)
}

fn op(o: &Op) -> Value {
    match o {
        Op::Put { key, value, lease } => json!({ "request_put": put_request(key, value, *lease) }),
        Op::Delete(key) => json!({ "request_delete_range": delete_request(key) }),
        Op::Get(key) => json!({ "request_range": range_request(key, false) }),
    }
}

pub(crate) fn txn_request(txn: &Txn) -> Value {
    json!({
        "compare": txn.compares().iter().map(compare).collect::<Vec<_>>(),
        "success": txn.success().iter().map(op).collect::<Vec<_>>(),
        "failure": txn.failure().iter().map(op).collect::<Vec<_>>(),
    })
}

/// Deserializes an int64 the gateway wrote as a string (or, leniently, as a number).
fn de_int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct Int64;
    impl Visitor<'_> for Int64 {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an int64 as a string")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<i64, E> {
            s.parse()
                .map_err(|_| E::invalid_value(de::Unexpected::Str(s), &self))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<i64, E> {
            Ok(n)
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<i64, E> {
            i64::try_from(n).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(n), &self))
        }
    }
    d.deserialize_any(Int64)
}

#[derive(Deserialize, Default)]
struct Header {
    #[serde(default, deserialize_with = "de_int64")]
    revision: i64,
}

#[derive(Deserialize)]
struct WireKv {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default, deserialize_with = "de_int64")]
    create_revision: i64,
    #[serde(default, deserialize_with = "de_int64")]
    mod_revision: i64,
    #[serde(default, deserialize_with = "de_int64")]
    version: i64,
    #[serde(default, deserialize_with = "de_int64")]
    lease: i64,
}

fn unbase64(what: &str, text: &str) -> Result<Vec<u8>, Error> {
    BASE64
        .decode(text)
        .map_err(|e| Error::Protocol(format!("{what} is not base64 ({e}): {text:?}")))
}

fn key_text(text: &str) -> Result<String, Error> {
    String::from_utf8(unbase64("key", text)?)
        .map_err(|e| Error::Protocol(format!("key is not UTF-8: {:?}", e.as_bytes())))
}

impl WireKv {
    fn decode(self) -> Result<Kv, Error> {
        Ok(Kv {
            key: key_text(&self.key)?,
            value: unbase64("value", &self.value)?,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            lease: self.lease,
        })
    }
}

fn kvs(wire: Vec<WireKv>) -> Result<Vec<Kv>, Error> {
    wire.into_iter().map(WireKv::decode).collect()
}

fn parse<'a, T: Deserialize<'a>>(what: &str, body: &'a [u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| {
        Error::Protocol(format!(
            "{what}: {e}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))
    })
}

#[derive(Deserialize)]
struct WireRange {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    kvs: Vec<WireKv>,
}

pub(crate) fn range_response(body: &[u8]) -> Result<Range, Error> {
    let r: WireRange = parse("range answer", body)?;
    Ok(Range {
        kvs: kvs(r.kvs)?,
        revision: r.header.revision,
    })
}

#[derive(Deserialize)]
struct WithHeader {
    #[serde(default)]
    header: Header,
}

/// The store revision of an answer that carries nothing else of use (put, delete,
/// compaction).
pub(crate) fn revision_response(body: &[u8]) -> Result<i64, Error> {
    let r: WithHeader = parse("answer", body)?;
    Ok(r.header.revision)
}

#[derive(Deserialize)]
struct WireGrant {
    #[serde(rename = "ID", default, deserialize_with = "de_int64")]
    id: i64,
    #[serde(rename = "TTL", default, deserialize_with = "de_int64")]
    ttl: i64,
    #[serde(default)]
    error: String,
}

pub(crate) fn grant_response(body: &[u8]) -> Result<Lease, Error> {
    let g: WireGrant = parse("lease grant answer", body)?;
    if !g.error.is_empty() {
        return Err(Error::Status {
            http: 200,
            code: UNKNOWN,
            message: g.error,
        });
    }
    if g.id == 0 || g.ttl <= 0 {
        return Err(Error::Protocol(format!(
            "lease grant answer without ID or TTL: {}",
            String::from_utf8_lossy(body)
        )));
    }
    Ok(Lease {
        id: g.id,
        ttl: Duration::from_secs(g.ttl.unsigned_abs()),
    })
}

#[derive(Deserialize)]
struct WireResponseOp {
    #[serde(default)]
    response_range: Option<WireRange>,
}

#[derive(Deserialize)]
struct WireTxn {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    succeeded: bool,
    #[serde(default)]
    responses: Vec<WireResponseOp>,
}

/// The answer to `txn`: its responses follow the ops of the branch that ran, one each.
pub(crate) fn txn_response(body: &[u8], txn: &Txn) -> Result<TxnResponse, Error> {
    let t: WireTxn = parse("txn answer", body)?;
    let ops = txn.branch(t.succeeded);
    if t.responses.len() != ops.len() {
        return Err(Error::Protocol(format!(
            "txn answer has {} responses for {} operations",
            t.responses.len(),
            ops.len()
        )));
    }
    let mut ranges = Vec::new();
    for (op, response) in ops.iter().zip(t.responses) {
        if matches!(op, Op::Get(_)) {
            ranges.push(kvs(response
                .response_range
                .map_or_else(Vec::new, |r| r.kvs))?);
        }
    }
    Ok(TxnResponse {
        succeeded: t.succeeded,
        revision: t.header.revision,
        ranges,
    })
}

/// gRPC's code for "unknown": what an error answer without a readable code gets.
const UNKNOWN: i64 = 2;
/// gRPC's code for "not found": etcd's for a lease that does not exist.
const NOT_FOUND: i64 = 5;

#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    code: i64,
}

/// What an error answer of a unary call says: its gRPC code and message (the body's
/// start when it is not the gateway's JSON).
pub(crate) fn error_answer(body: &[u8]) -> (i64, String) {
    match serde_json::from_slice::<WireError>(body) {
        Ok(e) => {
            let message = if e.message.is_empty() {
                e.error
            } else {
                e.message
            };
            (e.code, message)
        }
        Err(_) => (
            UNKNOWN,
            String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_owned(),
        ),
    }
}

/// A refusal as the caller sees it: [`Error::LeaseNotFound`] for the lease, else
/// [`Error::Status`].
pub(crate) fn refusal(http: u16, code: i64, message: String) -> Error {
    if code == NOT_FOUND && message.contains("lease not found") {
        Error::LeaseNotFound
    } else {
        Error::Status {
            http,
            code,
            message,
        }
    }
}

/// One line of a streamed answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message<T> {
    Result(T),
    /// The stream's error: `http` is the HTTP status the gateway maps it to.
    Error {
        http: u16,
        code: i64,
        message: String,
    },
}

#[derive(Deserialize)]
struct WireStreamError {
    #[serde(default)]
    grpc_code: i64,
    #[serde(default)]
    http_code: u16,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct WireLine<T> {
    result: Option<T>,
    error: Option<WireStreamError>,
}

fn message<'a, T: Deserialize<'a>>(what: &str, line: &'a [u8]) -> Result<Message<T>, Error> {
    let l: WireLine<T> = parse(what, line)?;
    match (l.result, l.error) {
        (_, Some(e)) => Ok(Message::Error {
            http: e.http_code,
            code: e.grpc_code,
            message: e.message,
        }),
        (Some(r), None) => Ok(Message::Result(r)),
        (None, None) => Err(Error::Protocol(format!(
            "{what} with neither result nor error: {}",
            String::from_utf8_lossy(line)
        ))),
    }
}

#[derive(Deserialize)]
struct WireKeepAlive {
    #[serde(rename = "TTL", default, deserialize_with = "de_int64")]
    ttl: i64,
}

/// A keepalive answer's line: the lease's new TTL, `None` when the lease is gone (etcd
/// then leaves the TTL out).
pub(crate) fn keepalive_message(line: &[u8]) -> Result<Message<Option<Duration>>, Error> {
    Ok(match message::<WireKeepAlive>("keepalive answer", line)? {
        Message::Result(k) => {
            Message::Result((k.ttl > 0).then(|| Duration::from_secs(k.ttl.unsigned_abs())))
        }
        Message::Error {
            http,
            code,
            message,
        } => Message::Error {
            http,
            code,
            message,
        },
    })
}

#[derive(Deserialize)]
struct WireEvent {
    #[serde(rename = "type", default)]
    kind: String,
    kv: WireKv,
}

#[derive(Deserialize)]
struct WireWatch {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    created: bool,
    #[serde(default)]
    canceled: bool,
    #[serde(default, deserialize_with = "de_int64")]
    compact_revision: i64,
    #[serde(default)]
    cancel_reason: String,
    #[serde(default)]
    events: Vec<WireEvent>,
}

/// A watch answer's line as events: none for the "created" confirmation, the puts and
/// deletes in order, a progress notification when there is nothing else, or the
/// cancellation (with its reason, when etcd gives one).
pub(crate) fn watch_message(line: &[u8]) -> Result<Message<(Vec<WatchEvent>, String)>, Error> {
    let w = match message::<WireWatch>("watch answer", line)? {
        Message::Result(w) => w,
        Message::Error {
            http,
            code,
            message,
        } => {
            return Ok(Message::Error {
                http,
                code,
                message,
            })
        }
    };
    if w.canceled {
        let canceled = WatchEvent::Canceled {
            compact_revision: w.compact_revision,
        };
        return Ok(Message::Result((vec![canceled], w.cancel_reason)));
    }
    if w.events.is_empty() {
        let events = if w.created {
            Vec::new()
        } else {
            vec![WatchEvent::Progress {
                revision: w.header.revision,
            }]
        };
        return Ok(Message::Result((events, String::new())));
    }
    let mut events = Vec::with_capacity(w.events.len());
    for e in w.events {
        events.push(match e.kind.as_str() {
            "" | "PUT" => WatchEvent::Put(e.kv.decode()?),
            "DELETE" => WatchEvent::Delete {
                key: key_text(&e.kv.key)?,
                mod_revision: e.kv.mod_revision,
            },
            other => {
                return Err(Error::Protocol(format!("watch event of type {other:?}")));
            }
        });
    }
    Ok(Message::Result((events, String::new())))
}

#[derive(Deserialize)]
struct WireHealth {
    #[serde(default)]
    health: String,
}

/// Whether `/health` said `{"health":"true"}`.
pub(crate) fn healthy(body: &[u8]) -> bool {
    serde_json::from_slice::<WireHealth>(body).is_ok_and(|h| h.health == "true")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn kv(key: &str, value: &str, create: i64, modified: i64, version: i64, lease: i64) -> Kv {
        Kv {
            key: key.into(),
            value: value.into(),
            create_revision: create,
            mod_revision: modified,
            version,
            lease,
        }
    }

    #[test]
    fn int64_strings_and_base64() {
        // What etcd 3.4.23 answered to a range of "a" after `put a=1`.
        let body = br#"{"header":{"cluster_id":"5008386529201896613","member_id":"17120861340453687681","revision":"2","raft_term":"2"},"kvs":[{"key":"YQ==","create_revision":"2","mod_revision":"2","version":"1","value":"MQ=="}],"count":"1"}"#;
        assert_eq!(
            range_response(body).unwrap(),
            Range {
                kvs: vec![kv("a", "1", 2, 2, 1, 0)],
                revision: 2
            }
        );
        // A missing key: no kvs at all. Numbers are accepted too.
        let body = br#"{"header":{"revision":7}}"#;
        assert_eq!(
            range_response(body).unwrap(),
            Range {
                kvs: vec![],
                revision: 7
            }
        );
        // An empty value is left out.
        let body = br#"{"header":{"revision":"3"},"kvs":[{"key":"L3Avaw==","create_revision":"3","mod_revision":"3","version":"1","lease":"4158408212917543430"}]}"#;
        assert_eq!(
            range_response(body).unwrap().kvs,
            [kv("/p/k", "", 3, 3, 1, 4158408212917543430)]
        );
        for (body, expected) in [
            (
                &br#"{"header":{"revision":"x"}}"#[..],
                "invalid value: string \"x\"",
            ),
            (br#"{"kvs":[{"key":"!!"}]}"#, "key is not base64"),
            (
                br#"{"kvs":[{"key":"YQ==","value":"%"}]}"#,
                "value is not base64",
            ),
            (br#"{"kvs":[{"key":"/w=="}]}"#, "key is not UTF-8"),
            (b"not json", "range answer: expected"),
        ] {
            let err = range_response(body).unwrap_err();
            assert!(
                matches!(&err, Error::Protocol(m) if m.contains(expected)),
                "{err} for {}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn lease_answers() {
        let body = br#"{"header":{"revision":"2"},"ID":"4158408212917543430","TTL":"2"}"#;
        assert_eq!(
            grant_response(body).unwrap(),
            Lease {
                id: 4158408212917543430,
                ttl: Duration::from_secs(2)
            }
        );
        assert!(matches!(
            grant_response(br#"{"header":{}}"#),
            Err(Error::Protocol(_))
        ));
        let alive =
            br#"{"result":{"header":{"revision":"2"},"ID":"4158408212917543432","TTL":"5"}}"#;
        assert_eq!(
            keepalive_message(alive).unwrap(),
            Message::Result(Some(Duration::from_secs(5)))
        );
        let gone = br#"{"result":{"header":{"revision":"2"},"ID":"4158408212917543432"}}"#;
        assert_eq!(keepalive_message(gone).unwrap(), Message::Result(None));
        let no_leader = br#"{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}"#;
        assert_eq!(
            keepalive_message(no_leader).unwrap(),
            Message::Error {
                http: 503,
                code: 14,
                message: "etcdserver: no leader".into()
            }
        );
    }

    #[test]
    fn refusals() {
        let not_found = br#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#;
        let (code, message) = error_answer(not_found);
        assert!(matches!(refusal(404, code, message), Error::LeaseNotFound));
        let (code, message) = error_answer(
            br#"{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3}"#,
        );
        assert_eq!(
            (code, message.as_str()),
            (3, "etcdserver: key is not provided")
        );
        assert_eq!(
            error_answer(b"<html>502 Bad Gateway</html>\n"),
            (2, "<html>502 Bad Gateway</html>".to_owned())
        );
    }

    /// A request's JSON against what etcd accepted (as text).
    fn check_request(value: &Value, expected: &str) {
        let expected: Value = serde_json::from_str(expected).unwrap();
        assert_eq!(value, &expected);
    }

    #[test]
    fn requests() {
        check_request(&range_request("a", false), r#"{"key":"YQ=="}"#);
        // "/p/" to "/p0".
        check_request(
            &range_request("/p/", true),
            r#"{"key":"L3Av","range_end":"L3Aw"}"#,
        );
        check_request(
            &range_request("", true),
            r#"{"key":"AA==","range_end":"AA=="}"#,
        );
        check_request(
            &put_request("a", b"1", Some(42)),
            r#"{"key":"YQ==","value":"MQ==","lease":"42"}"#,
        );
        check_request(&put_request("a", b"", None), r#"{"key":"YQ==","value":""}"#);
        check_request(
            &grant_request(Duration::from_millis(5500)),
            r#"{"TTL":"6"}"#,
        );
        check_request(&grant_request(Duration::from_secs(6)), r#"{"TTL":"6"}"#);
        check_request(
            &grant_request(Duration::MAX),
            r#"{"TTL":"9223372036854775807"}"#,
        );
        check_request(&lease_request(-1), r#"{"ID":"-1"}"#);
        check_request(
            &watch_request("/p/", true, 5),
            r#"{"create_request":{"key":"L3Av","range_end":"L3Aw","start_revision":"5","progress_notify":true}}"#,
        );
        check_request(
            &txn_request(
                &Txn::new()
                    .when(Compare::CreateRevision("k".into(), 0))
                    .when(!Compare::Value("k".into(), b"v".to_vec()))
                    .when(!!Compare::Lease("k".into(), 9))
                    .then(Op::put("k", "v", Some(9)))
                    .or_else(Op::get("k"))
                    .or_else(Op::delete("k")),
            ),
            r#"{
                "compare": [
                    {"key":"aw==","target":"CREATE","result":"EQUAL","create_revision":"0"},
                    {"key":"aw==","target":"VALUE","result":"NOT_EQUAL","value":"dg=="},
                    {"key":"aw==","target":"LEASE","result":"EQUAL","lease":"9"}
                ],
                "success": [{"request_put":{"key":"aw==","value":"dg==","lease":"9"}}],
                "failure": [{"request_range":{"key":"aw=="}},{"request_delete_range":{"key":"aw=="}}]
            }"#,
        );
        check_request(
            &txn_request(
                &Txn::new()
                    .when(Compare::ModRevision("k".into(), 3))
                    .when(Compare::Version("k".into(), 1)),
            ),
            r#"{"compare":[
                {"key":"aw==","target":"MOD","result":"EQUAL","mod_revision":"3"},
                {"key":"aw==","target":"VERSION","result":"EQUAL","version":"1"}
            ],"success":[],"failure":[]}"#,
        );
    }

    #[test]
    fn prefix_ends() {
        for (prefix, end) in [
            (&b"a"[..], &b"b"[..]),
            (b"/p/", b"/p0"),
            (b"a\xff", b"b"),
            (b"\xff\xff", b"\x00"),
            (b"", b"\x00"),
        ] {
            assert_eq!(prefix_end(prefix), end, "{prefix:?}");
        }
    }

    #[test]
    fn txn_answers() {
        let txn = Txn::new()
            .when(Compare::CreateRevision("k".into(), 0))
            .then(Op::put("k", "v", None))
            .or_else(Op::get("k"))
            .or_else(Op::put("other", "x", None))
            .or_else(Op::get("absent"));
        // Failed: no "succeeded"; the gets' kvs in order, the absent key's empty.
        let body = br#"{"header":{"revision":"9"},"responses":[
            {"response_range":{"header":{"revision":"9"},"kvs":[{"key":"aw==","create_revision":"4","mod_revision":"4","version":"1","value":"dg=="}],"count":"1"}},
            {"response_put":{"header":{"revision":"9"}}},
            {"response_range":{"header":{"revision":"9"}}}]}"#;
        assert_eq!(
            txn_response(body, &txn).unwrap(),
            TxnResponse {
                succeeded: false,
                revision: 9,
                ranges: vec![vec![kv("k", "v", 4, 4, 1, 0)], vec![]],
            }
        );
        let body = br#"{"header":{"revision":"10"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"10"}}}]}"#;
        assert_eq!(
            txn_response(body, &txn).unwrap(),
            TxnResponse {
                succeeded: true,
                revision: 10,
                ranges: vec![],
            }
        );
        let body = br#"{"header":{"revision":"10"},"succeeded":true}"#;
        assert!(matches!(txn_response(body, &txn), Err(Error::Protocol(_))));
    }

    #[test]
    fn watch_answers() {
        let check = |line: &str, expected: Message<(Vec<WatchEvent>, String)>| {
            assert_eq!(watch_message(line.as_bytes()).unwrap(), expected, "{line}");
        };
        let events = |e: Vec<WatchEvent>| Message::Result((e, String::new()));
        check(
            r#"{"result":{"header":{"revision":"2"},"created":true}}"#,
            events(vec![]),
        );
        check(
            r#"{"result":{"header":{"revision":"2"},"events":[{"kv":{"key":"YQ==","create_revision":"2","mod_revision":"2","version":"1","value":"MQ=="}},{"type":"DELETE","kv":{"key":"YQ==","mod_revision":"3"}}]}}"#,
            events(vec![
                WatchEvent::Put(kv("a", "1", 2, 2, 1, 0)),
                WatchEvent::Delete {
                    key: "a".into(),
                    mod_revision: 3,
                },
            ]),
        );
        check(
            r#"{"result":{"header":{"revision":"7"}}}"#,
            events(vec![WatchEvent::Progress { revision: 7 }]),
        );
        check(
            r#"{"result":{"header":{"raft_term":"2"},"canceled":true,"compact_revision":"4"}}"#,
            events(vec![WatchEvent::Canceled {
                compact_revision: 4,
            }]),
        );
        check(
            r#"{"result":{"header":{},"created":true,"canceled":true,"cancel_reason":"why"}}"#,
            Message::Result((
                vec![WatchEvent::Canceled {
                    compact_revision: 0,
                }],
                "why".into(),
            )),
        );
        check(
            r#"{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}"#,
            Message::Error {
                http: 503,
                code: 14,
                message: "etcdserver: no leader".into(),
            },
        );
        for bad in [
            r#"{}"#,
            r#"{"result":{"events":[{"type":"OTHER","kv":{"key":"YQ=="}}]}}"#,
        ] {
            assert!(
                matches!(watch_message(bad.as_bytes()), Err(Error::Protocol(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn health_answers() {
        assert!(healthy(br#"{"health":"true"}"#));
        assert!(!healthy(br#"{"health":"false"}"#));
        assert!(!healthy(br#"{"health":"false","reason":"RAFT NO LEADER"}"#));
        assert!(!healthy(b"ok"));
    }
}

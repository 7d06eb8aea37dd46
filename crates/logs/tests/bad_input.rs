//! Bad input over the wire: malformed, oversized and hostile push bodies, bad LogQL and
//! absurd query parameters each get a 4xx whose body names what was wrong (413 for a
//! body too large, on the wire or once decompressed; 415 for a Content-Encoding the
//! store does not take; 400 for the rest), never a 5xx or a hang; and afterwards the
//! store still takes a good push and answers a query for it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use prost::Message as _;
use rampart_logs::push::{EntryAdapter, PushRequest, StreamAdapter, Timestamp, MAX_DECODED};
use support::{now_ns, snappy, Reply, Running, MAX_BODY};

const JSON: &str = "Content-Type: application/json";

/// A refusal: `status`, a plain-text body that contains `want`.
#[track_caller]
fn refused(what: &str, r: &Reply, status: u16, want: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.body);
    assert!(
        r.content_type.starts_with("text/plain"),
        "{what}: content type {:?}",
        r.content_type
    );
    assert!(
        r.body.contains(want),
        "{what}: {:?} does not say {want:?}",
        r.body
    );
}

/// A protobuf push of one stream (labels as Prometheus text) with these entries.
fn proto(labels: &str, entries: Vec<(Option<Timestamp>, String)>) -> Vec<u8> {
    let req = PushRequest {
        streams: vec![StreamAdapter {
            labels: labels.into(),
            entries: entries
                .into_iter()
                .map(|(timestamp, line)| EntryAdapter { timestamp, line })
                .collect(),
            hash: 0,
        }],
    };
    snappy(&req.encode_to_vec())
}

/// A JSON push of one stream.
fn json_push(stream: &serde_json::Value, ts: &str, line: &str) -> String {
    serde_json::json!({"streams": [{"stream": stream, "values": [[ts, line]]}]}).to_string()
}

fn bad_pushes(run: &Running) {
    let now = now_ns();
    let ts = now.to_string();
    let at = Some(Timestamp::from_nanos(now));

    // Protobuf bodies that are not what they claim.
    let mut lying = snappy(b"hello world, hello world, hello world");
    lying[0] = 5; // The header says 5 bytes; the data holds more.
    for (what, body, want) in [
        (
            "garbage, not snappy",
            b"\xff\xff\xff\xff\xff\xff garbage".to_vec(),
            "not snappy-compressed protobuf",
        ),
        (
            "snappy with a broken block",
            vec![0x0a, 0xff, 0xff, 0xff, 0x00],
            "not snappy-compressed protobuf",
        ),
        (
            "snappy whose header lies",
            lying,
            "not snappy-compressed protobuf",
        ),
        (
            "an empty body",
            Vec::new(),
            "not snappy-compressed protobuf",
        ),
        (
            "valid snappy around garbage",
            snappy(b"\x0a\xff\xff\xff\xff"),
            "not a PushRequest",
        ),
        (
            "a stream's labels cut short",
            snappy(b"\x0a\x05\x0a\x03{a="),
            "stream 0: expected a string",
        ),
    ] {
        refused(what, &run.push_proto(&body), 400, want);
    }

    // Too large: on the wire (the configured limits.max_body_bytes), and once
    // decompressed, whether the snappy header claims it or the data really is.
    let big = format!(
        r#"{{"streams":[{{"stream":{{"job":"a"}},"values":[["{ts}","{}"]]}}]}}"#,
        "x".repeat(MAX_BODY + 1)
    );
    refused(
        "a body over limits.max_body_bytes",
        &run.push_json(&big),
        413,
        &format!("larger than {MAX_BODY} bytes"),
    );
    refused(
        "a snappy header claiming 1 GiB",
        &run.push_proto(&[0x80, 0x80, 0x80, 0x80, 0x04, 0x00, 0x61]),
        413,
        "1073741824 bytes uncompressed; at most 16777216",
    );
    let bomb = snappy(&vec![0u8; MAX_DECODED + 1]);
    assert!(bomb.len() < MAX_BODY, "{} bytes", bomb.len());
    refused(
        "a small body that decompresses to more than 16 MiB",
        &run.push_proto(&bomb),
        413,
        "bytes uncompressed; at most 16777216",
    );
    let gzip = run.post(
        "/loki/api/v1/push",
        &[JSON, "Content-Encoding: gzip"],
        b"\x1f\x8b\x08\x00",
    );
    refused("gzipped JSON", &gzip, 415, "Content-Encoding \"gzip\"");

    // JSON of the wrong shape or types.
    for (body, want) in [
        ("", "EOF while parsing"),
        ("not json", "expected ident"),
        ("{}", "missing field `streams`"),
        (
            r#"{"streams":{"stream":{}}}"#,
            "invalid type: map, expected a sequence",
        ),
        (
            r#"{"streams":[{"stream":{"job":1},"values":[]}]}"#,
            "invalid type: integer `1`, expected a string",
        ),
        (
            r#"{"streams":[{"stream":{"job":"a"},"values":"line"}]}"#,
            "invalid type: string \"line\", expected a sequence",
        ),
        (
            r#"{"streams":[{"stream":{"job":"a"},"values":[["1"]]}]}"#,
            "invalid length 1",
        ),
        (
            r#"{"streams":[{"stream":{"job":"a"},"values":[[null,"l"]]}]}"#,
            "invalid type: null, expected a string",
        ),
        (
            r#"{"streams":[{"stream":{"job":"a"},"values":[["1","l",{"a":{"b":"c"}}]]}]}"#,
            "invalid type: map, expected a string",
        ),
        (
            r#"{"streams":[{"stream":{"job":"a"},"values":[["1","l",{},"more"]]}]}"#,
            "invalid length 4",
        ),
        (
            r#"{"streams":[{"stream":{"job":"a"},"values":[[1.5,"l"]]}]}"#,
            "invalid type: floating point",
        ),
    ] {
        refused(body, &run.push_json(body), 400, want);
    }

    // Labels: hundreds of them, bad names, values and lines far over the limits, none.
    let many: serde_json::Map<String, serde_json::Value> = (0..300)
        .map(|i| (format!("l{i}"), serde_json::Value::from("v")))
        .collect();
    refused(
        "300 labels (JSON)",
        &run.push_json(&json_push(&many.into(), &ts, "l")),
        400,
        "stream 0: 300 labels; at most 32",
    );
    let text: Vec<String> = (0..300).map(|i| format!("l{i}=\"v\"")).collect();
    refused(
        "300 labels (protobuf)",
        &run.push_proto(&proto(
            &format!("{{{}}}", text.join(", ")),
            vec![(at, "l".into())],
        )),
        400,
        "stream 0: 300 labels; at most 32",
    );
    for name in ["1abc", "foo-bar", "", "h\u{e9}llo", "a b"] {
        refused(
            name,
            &run.push_json(&json_push(&serde_json::json!({ name: "x" }), &ts, "l")),
            400,
            &format!("{name:?} is not a label name"),
        );
    }
    refused(
        "a bad name in protobuf",
        &run.push_proto(&proto(r#"{foo-bar="x"}"#, vec![(at, "l".into())])),
        400,
        "stream 0: expected `=` at position 4",
    );
    refused(
        "a label twice",
        &run.push_proto(&proto(r#"{a="1", a="2"}"#, vec![(at, "l".into())])),
        400,
        "label a twice",
    );
    refused(
        "no labels",
        &run.push_json(&json_push(&serde_json::json!({}), &ts, "l")),
        400,
        "stream 0: no labels",
    );
    refused(
        "a 10 KiB label value",
        &run.push_json(&json_push(
            &serde_json::json!({"job": "v".repeat(10 << 10)}),
            &ts,
            "l",
        )),
        400,
        "label job: 10240 bytes; at most 1024",
    );
    let long = "x".repeat(300 << 10);
    refused(
        "a 300 KiB line (JSON)",
        &run.push_json(&json_push(&serde_json::json!({"job": "a"}), &ts, &long)),
        400,
        "stream 0, entry 0: the line is 307200 bytes; at most 262144",
    );
    refused(
        "a 300 KiB line (protobuf)",
        &run.push_proto(&proto(r#"{job="a"}"#, vec![(at, "ok".into()), (at, long)])),
        400,
        "stream 0, entry 1: the line is 307200 bytes",
    );

    // Timestamps: not numbers, out of range, before 1970, far in the future.
    let day = 86_400 * 1_000_000_000;
    for (t, want) in [
        (
            "yesterday",
            "timestamp \"yesterday\" is not a string of nanoseconds",
        ),
        ("", "timestamp \"\" is not"),
        ("1.5e18", "timestamp \"1.5e18\" is not"),
        ("99999999999999999999", "is not a string of nanoseconds"),
        ("-1", "timestamp -1 is before 1970"),
        (&(now + day).to_string(), "is too far in the future"),
    ] {
        refused(
            t,
            &run.push_json(&json_push(&serde_json::json!({"job": "a"}), t, "l")),
            400,
            want,
        );
    }
    for (what, t, want) in [
        (
            "nanos out of range",
            Timestamp {
                seconds: 1,
                nanos: 2_000_000_000,
            },
            "a timestamp out of range",
        ),
        (
            "seconds out of range",
            Timestamp {
                seconds: i64::MAX,
                nanos: 0,
            },
            "a timestamp out of range",
        ),
        (
            "a day ahead",
            Timestamp::from_nanos(now + day),
            "too far in the future",
        ),
    ] {
        refused(
            what,
            &run.push_proto(&proto(r#"{job="a"}"#, vec![(Some(t), "l".into())])),
            400,
            want,
        );
    }
    // A push is stored whole or not at all: none of the good lines above are there.
    let r = run.get(
        "/loki/api/v1/query_range",
        &[("query", r#"{job="a"}"#), ("start", "0")],
    );
    assert_eq!(
        r.json()["data"]["result"],
        serde_json::json!([]),
        "{}",
        r.body
    );
}

fn bad_queries(run: &Running) {
    let range = "/loki/api/v1/query_range";
    let long = format!("{{job=\"{}\"}}", "a".repeat(5000));
    for (query, want) in [
        (r#"{job="varlogs""#, "parse error: expected `,` at the end"),
        (r#"{job="varlogs"} |= "x"#, "an unterminated string"),
        (r#"{job="a"}} "#, "unexpected text"),
        (r#"{job="a"} garbage"#, "unexpected text at position 10"),
        (
            r#"median_over_time({job="a"}[5m])"#,
            "median_over_time is not supported",
        ),
        (r#"topk(3, rate({job="a"}[5m]))"#, "topk is not supported"),
        (r#"{job=~"(unclosed"}"#, "bad regex \"(unclosed\""),
        (r#"{job="a"} |~ "[z-a]""#, "bad regex \"[z-a]\""),
        (r#"count_over_time({job="a"})"#, "expected `[`"),
        (
            r#"rate({job="a"}[5 parsecs])"#,
            "expected a range such as 5m",
        ),
        (r#"rate({job="a"}[])"#, "expected a range such as 5m"),
        (
            r#"sum by (level) ({job="a"})"#,
            "expected count_over_time or rate",
        ),
        ("{}", "at least one matcher"),
        (r#"{job=""}"#, "at least one matcher"),
        (r#"{job=~".*"}"#, "at least one matcher"),
        (
            r#"{job="a"} | json | status >="#,
            "expected a string or a number",
        ),
        ("", "expected a stream selector or a function"),
        ("(((((((((", "expected a stream selector or a function"),
        (&long, "bytes; at most 4096"),
    ] {
        let r = run.get(range, &[("query", query)]);
        refused(query, &r, 400, want);
    }
    // Long queries go in a POST form; still refused, by the parser.
    let r = run.curl(&["--data-urlencode", &format!("query={long}")], range);
    refused("a long query in a form", &r, 400, "bytes; at most 4096");

    let log = r#"{job="a"}"#;
    let metric = r#"count_over_time({job="a"}[5m])"#;
    for (what, path, params, want) in [
        ("no query", range, vec![], "missing query"),
        (
            "end before start",
            range,
            vec![("query", log), ("start", "10"), ("end", "5")],
            "end is before start",
        ),
        (
            "a start that is no time",
            range,
            vec![("query", log), ("start", "yesterday")],
            "invalid start: \"yesterday\" is not a time",
        ),
        (
            "an impossible date",
            range,
            vec![("query", log), ("end", "2019-13-45T00:00:00Z")],
            "invalid end",
        ),
        (
            "a time beyond 2262",
            range,
            vec![("query", log), ("start", "1e300")],
            "invalid start",
        ),
        (
            "NaN",
            range,
            vec![("query", log), ("start", "NaN")],
            "invalid start",
        ),
        (
            "a zero limit",
            range,
            vec![("query", log), ("limit", "0")],
            "invalid limit \"0\": 1 to 5000",
        ),
        (
            "a negative limit",
            range,
            vec![("query", log), ("limit", "-1")],
            "invalid limit",
        ),
        (
            "an absurd limit",
            range,
            vec![("query", log), ("limit", "99999999999999999999999")],
            "invalid limit",
        ),
        (
            "a limit over the maximum",
            range,
            vec![("query", log), ("limit", "1000000")],
            "invalid limit \"1000000\": 1 to 5000",
        ),
        (
            "a sideways direction",
            range,
            vec![("query", log), ("direction", "sideways")],
            "invalid direction \"sideways\"",
        ),
        (
            "since forever",
            range,
            vec![("query", log), ("since", "forever")],
            "invalid since \"forever\"",
        ),
        (
            "a zero step",
            range,
            vec![("query", metric), ("step", "0")],
            "invalid step \"0\"",
        ),
        (
            "a negative step",
            range,
            vec![("query", metric), ("step", "-5")],
            "invalid step",
        ),
        (
            "a step that is no duration",
            range,
            vec![("query", metric), ("step", "often")],
            "invalid step",
        ),
        (
            "a step that rounds to nothing",
            range,
            vec![("query", metric), ("step", "1e-300")],
            "invalid step",
        ),
        (
            "too many points",
            range,
            vec![
                ("query", metric),
                ("start", "0"),
                ("end", "86400"),
                ("step", "0.001"),
            ],
            "more than 11000 points; raise the step",
        ),
        (
            "too many points over all time",
            range,
            vec![
                ("query", metric),
                ("start", "-9000000000.0"),
                ("end", "9223372036854775807"),
                ("step", "1s"),
            ],
            "more than 11000 points",
        ),
        (
            "an instant query at no time",
            "/loki/api/v1/query",
            vec![("query", metric), ("time", "soon")],
            "invalid time",
        ),
        (
            "a bad instant query",
            "/loki/api/v1/query",
            vec![("query", "rate(")],
            "parse error",
        ),
        (
            "a bad label name",
            "/loki/api/v1/label/1x/values",
            vec![],
            "\"1x\" is not a label name",
        ),
        (
            // Once sliced out of range: a panic, a 500.
            "a label path without a name",
            "/loki/api/v1/label/values",
            vec![],
            "\"\" is not a label name",
        ),
        (
            "a bad selector for labels",
            "/loki/api/v1/labels",
            vec![("query", "{")],
            "invalid query: parse error",
        ),
        (
            "a metric query as a selector",
            "/loki/api/v1/label/job/values",
            vec![("query", metric)],
            "not a metric query",
        ),
        (
            "labels with end before start",
            "/loki/api/v1/labels",
            vec![("start", "10"), ("end", "5")],
            "end is before start",
        ),
        (
            "series without match[]",
            "/loki/api/v1/series",
            vec![],
            "missing match[]",
        ),
        (
            "series with a bad match[]",
            "/loki/api/v1/series",
            vec![("match[]", "{job=}")],
            "invalid match[]: parse error",
        ),
    ] {
        refused(what, &run.get(path, &params), 400, want);
    }
    // Absurd but valid: every time an i64 holds, one step across it. Answered, not
    // overflowed.
    for params in [
        vec![
            ("query", metric),
            ("start", "-9000000000.0"),
            ("end", "9223372036854775807"),
            ("step", "1e300"),
        ],
        vec![
            ("query", metric),
            ("start", "-9000000000.0"),
            ("end", "9223372036854775807"),
        ],
        vec![
            ("query", log),
            ("start", "-9000000000.0"),
            ("end", "9223372036854775807"),
        ],
        vec![("query", log), ("end", "-9000000000.0"), ("since", "200y")],
    ] {
        let r = run.get(range, &params);
        assert_eq!(r.status, 200, "{params:?}: {}", r.body);
    }
    let r = run.get(
        "/loki/api/v1/query",
        &[("query", metric), ("time", "9223372036854775807")],
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // Methods and paths.
    refused(
        "GET on push",
        &run.get("/loki/api/v1/push", &[]),
        405,
        "GET is not allowed here",
    );
    let r = run.curl(&["-X", "DELETE"], "/loki/api/v1/query_range");
    refused(
        "DELETE on query_range",
        &r,
        405,
        "DELETE is not allowed here",
    );
    refused(
        "an unknown path",
        &run.get("/api/prom/push", &[]),
        404,
        "/api/prom/push: not found",
    );
}

#[test]
fn bad_input_gets_a_4xx_that_says_why_and_the_store_stays_up() {
    let Some(run) = support::start() else {
        eprintln!("skipped: curl is not installed");
        return;
    };
    bad_pushes(&run);
    bad_queries(&run);

    // Still up: a good push is stored and answered.
    let now = now_ns();
    let r = run.push_json(&json_push(
        &serde_json::json!({"job": "after"}),
        &now.to_string(),
        "still here",
    ));
    assert_eq!(r.status, 204, "{}", r.body);
    let r = run.push_proto(&proto(
        r#"{job="after"}"#,
        vec![(Some(Timestamp::from_nanos(now + 1)), "and here".into())],
    ));
    assert_eq!(r.status, 204, "{}", r.body);
    let r = run.get(
        "/loki/api/v1/query_range",
        &[("query", r#"{job="after"}"#), ("direction", "forward")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["data"]["result"],
        serde_json::json!([{"stream": {"job": "after"}, "values": [
            [now.to_string(), "still here"], [(now + 1).to_string(), "and here"]]}])
    );
    let r = run.get(
        "/loki/api/v1/query",
        &[("query", r#"count_over_time({job="after"}[1m])"#)],
    );
    assert_eq!(r.json()["data"]["result"][0]["value"][1], "2", "{}", r.body);
}

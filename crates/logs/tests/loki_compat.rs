//! Loki compatibility: the requests and responses of Loki's HTTP API reference,
//! <https://grafana.com/docs/loki/latest/reference/loki-http-api/> (the page's source:
//! grafana/loki `docs/sources/reference/loki-http-api.md`), sent to `rampart logs` over
//! mutual TLS with curl, as the documentation's own examples do. Pushes are the
//! documented JSON bodies and protobuf with snappy as Loki's clients send it; answers
//! must have exactly the documented shape (names, JSON types) and hold what was pushed.
//!
//! The documented examples' data (2019) is pushed with the documented timestamps, so the
//! documented responses come back as they are printed there, without `stats`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use prost::Message as _;
use rampart_logs::push::{EntryAdapter, PushRequest, StreamAdapter, Timestamp};
use serde_json::{json, Value};
use support::{now_ns, snappy, Reply, Running};

const S: i64 = 1_000_000_000;

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

/// `{<label>: <string>, ...}`.
fn assert_label_set(v: &Value) {
    for (k, val) in v.as_object().unwrap_or_else(|| panic!("labels {v}")) {
        assert!(val.is_string(), "label {k}: {val} is not a string");
    }
}

/// "Response format" of query and query_range: `{"status": "success", "data":
/// {"resultType": ..., "result": [...], "stats": {...}}}`, and each result's shape:
///
/// - `<stream value>`: `{"stream": {<label key-value pairs>}, "values": [[<string:
///   nanosecond unix epoch>, <string: log line>], ...]}`;
/// - `<matrix value>`: `{"metric": {...}, "values": [[<number: second unix epoch>,
///   <string: value>], ...]}`, "sorted by timestamp, and the oldest item is first";
/// - `<vector value>`: `{"metric": {...}, "value": [<number: second unix epoch>,
///   <string: value>]}`.
///
/// Returns `data.result`.
fn assert_query_shape(r: &Reply, result_type: &str) -> Value {
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(keys(&v), ["data", "status"], "{v}");
    assert_eq!(v["status"], "success");
    assert_eq!(keys(&v["data"]), ["result", "resultType", "stats"], "{v}");
    assert_eq!(v["data"]["resultType"], result_type, "{v}");
    assert!(v["data"]["stats"].is_object(), "{v}");
    let result = v["data"]["result"].clone();
    for item in result.as_array().unwrap_or_else(|| panic!("result {v}")) {
        let sample = |p: &Value| {
            let p = p.as_array().unwrap_or_else(|| panic!("sample {p}"));
            assert_eq!(p.len(), 2, "{p:?}");
            assert!(p[0].is_number(), "time {} is not a number", p[0]);
            let value = p[1].as_str().unwrap_or_else(|| panic!("value {}", p[1]));
            assert!(value.parse::<f64>().is_ok(), "value {value:?}");
            p[0].as_f64().unwrap()
        };
        match result_type {
            "streams" => {
                assert_eq!(keys(item), ["stream", "values"], "{item}");
                assert_label_set(&item["stream"]);
                for e in item["values"].as_array().unwrap() {
                    let e = e.as_array().unwrap_or_else(|| panic!("entry {e}"));
                    assert_eq!(e.len(), 2, "{e:?}");
                    let ts = e[0].as_str().unwrap_or_else(|| panic!("ts {}", e[0]));
                    assert!(ts.parse::<i64>().is_ok(), "ts {ts:?}");
                    assert!(e[1].is_string(), "line {}", e[1]);
                }
            }
            "matrix" => {
                assert_eq!(keys(item), ["metric", "values"], "{item}");
                assert_label_set(&item["metric"]);
                let times: Vec<f64> = item["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(sample)
                    .collect();
                assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
            }
            "vector" => {
                assert_eq!(keys(item), ["metric", "value"], "{item}");
                assert_label_set(&item["metric"]);
                sample(&item["value"]);
            }
            other => panic!("{other}"),
        }
    }
    result
}

/// "Query labels" and "Query label values": `{"status": "success", "data": [<label
/// string>, ...]}`. Returns the data.
fn assert_list_shape(r: &Reply) -> Vec<String> {
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(keys(&v), ["data", "status"], "{v}");
    assert_eq!(v["status"], "success");
    v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("data {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_else(|| panic!("{s}")).to_owned())
        .collect()
}

fn assert_no_content(r: &Reply) {
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(r.body.is_empty(), "{}", r.body);
}

/// The stream of the documentation's query_range example ("gave this response").
fn varlogs_info() -> Value {
    json!([{
        "stream": {"filename": "/var/log/myproject.log", "job": "varlogs", "level": "info"},
        "values": [["1569266497240578000", "foo"], ["1569266492548155000", "bar"]],
    }])
}

fn push_documented_examples(run: &Running) {
    // "Ingest logs", Examples: the cURL body, byte for byte.
    assert_no_content(&run.push_json(
        r#"{"streams": [{ "stream": { "foo": "bar2" }, "values": [ [ "1570818238000000000", "fizzbuzz" ] ] }]}"#,
    ));
    // The stream query_range's example answers, pushed in the documented JSON format
    // (`"values": [[ "<unix epoch in nanoseconds>", "<log line>" ], ...]`).
    assert_no_content(&run.push_json(
        r#"{
  "streams": [
    {
      "stream": {"filename": "/var/log/myproject.log", "job": "varlogs", "level": "info"},
      "values": [
          [ "1569266492548155000", "bar" ],
          [ "1569266497240578000", "foo" ]
      ]
    }
  ]
}"#,
    ));
    // A warn line for the metric examples' `by (level)`, as a Loki client sends it:
    // protobuf (logproto.PushRequest) with snappy, built with the crate's prost types.
    let req = PushRequest {
        streams: vec![StreamAdapter {
            labels: r#"{filename="/var/log/myproject.log", job="varlogs", level="warn"}"#.into(),
            entries: vec![EntryAdapter {
                timestamp: Some(Timestamp {
                    seconds: 1_569_266_640,
                    nanos: 0,
                }),
                line: "baz".into(),
            }],
            hash: 0,
        }],
    };
    assert_no_content(&run.push_proto(&snappy(&req.encode_to_vec())));
    // "Query labels" answers foo, bar, baz; "Query label values" of foo cat, dog,
    // axolotl: those streams, on 2019-10-01.
    let t = 1_569_888_000 * S;
    for (i, value) in ["cat", "dog", "axolotl"].iter().enumerate() {
        assert_no_content(&run.push_json(&format!(
            r#"{{"streams":[{{"stream":{{"foo":"{value}","bar":"1","baz":"{i}"}},"values":[["{}","{value} line"]]}}]}}"#,
            t + i as i64
        )));
    }
}

/// The documentation's "Query streams" example response, pushed on 2019-12-15.
fn series_example() -> Value {
    json!([
        {
            "container_name": "loki", "app": "loki", "stream": "stderr",
            "filename": "/var/log/pods/default_loki-stack-0_50835643-1df0-11ea-ba79-025000000001/loki/0.log",
            "name": "loki", "job": "default/loki",
            "controller_revision_hash": "loki-stack-757479754d",
            "statefulset_kubernetes_io_pod_name": "loki-stack-0", "release": "loki-stack",
            "namespace": "default", "instance": "loki-stack-0"
        },
        {
            "chart": "prometheus-9.3.3", "container_name": "prometheus-server-configmap-reload",
            "filename": "/var/log/pods/default_loki-stack-prometheus-server-696cc9ddff-87lmq_507b1db4-1df0-11ea-ba79-025000000001/prometheus-server-configmap-reload/0.log",
            "instance": "loki-stack-prometheus-server-696cc9ddff-87lmq",
            "pod_template_hash": "696cc9ddff", "app": "prometheus", "component": "server",
            "heritage": "Tiller", "job": "default/prometheus", "namespace": "default",
            "release": "loki-stack", "stream": "stderr"
        },
        {
            "app": "prometheus", "component": "server",
            "filename": "/var/log/pods/default_loki-stack-prometheus-server-696cc9ddff-87lmq_507b1db4-1df0-11ea-ba79-025000000001/prometheus-server/0.log",
            "release": "loki-stack", "namespace": "default", "pod_template_hash": "696cc9ddff",
            "stream": "stderr", "chart": "prometheus-9.3.3", "container_name": "prometheus-server",
            "heritage": "Tiller", "instance": "loki-stack-prometheus-server-696cc9ddff-87lmq",
            "job": "default/prometheus"
        }
    ])
}

#[test]
fn documented_pushes_and_queries_answer_in_lokis_shapes() {
    let Some(run) = support::start() else {
        eprintln!("skipped: curl is not installed");
        return;
    };
    push_documented_examples(&run);
    let range = "/loki/api/v1/query_range";

    // "Query logs within a range of time": `{job="varlogs"}` answers the documented
    // stream, newest first (direction defaults to backward), in every documented time
    // form: "All epoch values will be interpreted as a Unix timestamp in nanoseconds. A
    // floating point number is a Unix timestamp with fractions of a second. A string in
    // RFC3339 and RFC3339Nano format". (Loki's parseTimestamp, which these follow, reads
    // an integer of up to 10 digits as seconds.)
    for (start, end) in [
        ("1569266490000000000", "1569266500000000000"),
        ("1569266490.5", "1569266499.999"),
        ("1569266490", "1569266500"),
        ("2019-09-23T19:21:30Z", "2019-09-23T19:21:40Z"),
        (
            "2019-09-23T21:21:30+02:00",
            "2019-09-23T19:21:40.000000001Z",
        ),
    ] {
        let r = run.get(
            range,
            &[
                ("query", r#"{job="varlogs"}"#),
                ("start", start),
                ("end", end),
            ],
        );
        assert_eq!(
            assert_query_shape(&r, "streams"),
            varlogs_info(),
            "{start}..{end}"
        );
        assert_eq!(r.json()["data"]["stats"], json!({}));
    }
    // "Loki returns results with timestamp greater or equal to [start]" and "lower than
    // [end]".
    let only = |start: &str, end: &str, params: &[(&str, &str)]| {
        let mut p = vec![
            ("query", r#"{job="varlogs"}"#),
            ("start", start),
            ("end", end),
        ];
        p.extend_from_slice(params);
        let result = assert_query_shape(&run.get(range, &p), "streams");
        result[0]["values"].clone()
    };
    assert_eq!(
        only("1569266490", "2019-09-23T19:21:37.240578Z", &[]),
        json!([["1569266492548155000", "bar"]])
    );
    assert_eq!(
        only("1569266497240578000", "1569266500", &[]),
        json!([["1569266497240578000", "foo"]])
    );
    // `direction`: "The oldest item is first when using direction=forward"; `limit`:
    // the newest (backward) or oldest (forward) entries.
    for forward in ["forward", "FORWARD"] {
        assert_eq!(
            only("1569266490", "1569266500", &[("direction", forward)]),
            json!([
                ["1569266492548155000", "bar"],
                ["1569266497240578000", "foo"]
            ])
        );
    }
    assert_eq!(
        only("1569266490", "1569266500", &[("limit", "1")]),
        json!([["1569266497240578000", "foo"]])
    );
    assert_eq!(
        only(
            "1569266490",
            "1569266500",
            &[("limit", "1"), ("direction", "forward")]
        ),
        json!([["1569266492548155000", "bar"]])
    );
    // `since`: "A duration used to calculate start relative to end".
    let since = |s: &str| {
        let r = run.get(
            range,
            &[
                ("query", r#"{job="varlogs"}"#),
                ("end", "1569266500"),
                ("since", s),
            ],
        );
        assert_query_shape(&r, "streams")
    };
    assert_eq!(since("10s"), varlogs_info());
    assert_eq!(
        since("5s")[0]["values"],
        json!([["1569266497240578000", "foo"]])
    );
    // The same request as a POST form (curl --data-urlencode without -G).
    let r = run.curl(
        &[
            "--data-urlencode",
            r#"query={job="varlogs"}"#,
            "--data-urlencode",
            "start=1569266490",
            "--data-urlencode",
            "end=1569266500",
        ],
        range,
    );
    assert_eq!(assert_query_shape(&r, "streams"), varlogs_info());
    // A pipeline keeps the stream's labels: `|=` and `!=`.
    let r = run.get(
        range,
        &[
            ("query", r#"{job="varlogs"} |= "fo" != "bar""#),
            ("start", "1569266490"),
            ("end", "1569266500"),
        ],
    );
    assert_eq!(
        assert_query_shape(&r, "streams")[0]["values"],
        json!([["1569266497240578000", "foo"]])
    );

    // The matrix example: `sum(rate({job="varlogs"}[10m])) by (level)` with `step=300`
    // (and the same step as a duration, and as float seconds): one series per level,
    // [<number: second unix epoch>, <string: value>] pairs, oldest first. 2 lines in
    // 10 minutes are 2/600 per second; the point at 19:20:00 has no line in its range
    // and is left out, as Loki does.
    let rate_by_level = r#"sum(rate({job="varlogs"}[10m])) by (level)"#;
    let matrix = json!([
        {"metric": {"level": "info"}, "values": [
            [1_569_266_700, "0.0033333333333333335"], [1_569_267_000, "0.0033333333333333335"]]},
        {"metric": {"level": "warn"}, "values": [
            [1_569_266_700, "0.0016666666666666668"], [1_569_267_000, "0.0016666666666666668"]]},
    ]);
    for step in ["300", "5m", "300.0"] {
        let r = run.get(
            range,
            &[
                ("query", rate_by_level),
                ("step", step),
                ("start", "1569266400"),
                ("end", "1569267000"),
            ],
        );
        assert_eq!(assert_query_shape(&r, "matrix"), matrix, "step {step}");
    }
    // Without `step`, "a dynamic value based on start and end": Loki's is the range
    // over 250 in whole seconds, here 2 s.
    let r = run.get(
        range,
        &[
            (
                "query",
                r#"count_over_time({job="varlogs", level="info"}[10s])"#,
            ),
            ("start", "1569266400"),
            ("end", "1569267000"),
        ],
    );
    let result = assert_query_shape(&r, "matrix");
    assert_eq!(
        result[0]["metric"],
        json!({"filename": "/var/log/myproject.log", "job": "varlogs", "level": "info"})
    );
    let values = result[0]["values"].as_array().unwrap();
    let times: Vec<i64> = values.iter().map(|p| p[0].as_i64().unwrap()).collect();
    assert_eq!(
        times,
        (1_569_266_494..=1_569_266_506)
            .step_by(2)
            .collect::<Vec<_>>()
    );
    assert_eq!(values[0][1], "1");
    assert_eq!(values[2][1], "2", "{values:?}");

    // "Query logs at a single point in time": the vector example, at `time` in each
    // form; a fraction of a second stays in the sample's time.
    let instant = "/loki/api/v1/query";
    for time in ["1569266700", "1569266700000000000", "2019-09-23T19:25:00Z"] {
        let r = run.get(instant, &[("query", rate_by_level), ("time", time)]);
        assert_eq!(
            assert_query_shape(&r, "vector"),
            json!([
                {"metric": {"level": "info"}, "value": [1_569_266_700, "0.0033333333333333335"]},
                {"metric": {"level": "warn"}, "value": [1_569_266_700, "0.0016666666666666668"]},
            ]),
            "time {time}"
        );
    }
    let r = run.get(
        instant,
        &[("query", rate_by_level), ("time", "1569266700.5")],
    );
    assert_eq!(
        assert_query_shape(&r, "vector")[0]["value"],
        json!([1_569_266_700.5, "0.0033333333333333335"])
    );
    // "Instant queries are only used for metric type LogQL queries and will return a
    // 400 (Bad Request) in case a log type query is provided."
    let r = run.get(instant, &[("query", r#"{job="varlogs"}"#)]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("log queries"), "{}", r.body);

    // "Query labels" (foo, bar, baz) and "Query label values" (cat, dog, axolotl), over
    // `start`/`end` and narrowed by `query`, "Log stream selector that selects the
    // streams to match". Names and values come sorted.
    let oct1 = [("start", "1569888000"), ("end", "1569891600")];
    let labels =
        |params: &[(&str, &str)]| assert_list_shape(&run.get("/loki/api/v1/labels", params));
    assert_eq!(labels(&oct1), ["bar", "baz", "foo"]);
    let whole = [
        ("start", "2019-09-01T00:00:00Z"),
        ("end", "2020-01-01T00:00:00Z"),
    ];
    assert_eq!(
        labels(&[whole[0], whole[1], ("query", r#"{job="varlogs"}"#)]),
        ["filename", "job", "level"]
    );
    let values = |params: &[(&str, &str)]| {
        assert_list_shape(&run.get("/loki/api/v1/label/foo/values", params))
    };
    assert_eq!(values(&oct1), ["axolotl", "cat", "dog"]);
    assert_eq!(values(&whole), ["axolotl", "bar2", "cat", "dog"]);
    assert_eq!(
        values(&[whole[0], whole[1], ("query", r#"{baz=~"0|2"}"#)]),
        ["axolotl", "cat"]
    );
    // `since` on the label API, and its default (the last 6 hours: none of this).
    assert_eq!(
        values(&[("end", "1569891600"), ("since", "1h")]),
        ["axolotl", "cat", "dog"]
    );
    assert!(values(&[]).is_empty());

    // "Query streams": the documented series come back for the documented `match[]`s,
    // sent as the example does (a POST form).
    let dec15 = 1_576_368_000 * S;
    for (i, labels) in series_example().as_array().unwrap().iter().enumerate() {
        let body = json!({"streams": [{"stream": labels, "values": [[(dec15 + i as i64).to_string(), "l"]]}]});
        assert_no_content(&run.push_json(&body.to_string()));
    }
    let r = run.curl(
        &[
            "--data-urlencode",
            r#"match[]={container_name=~"prometheus.*", component="server"}"#,
            "--data-urlencode",
            r#"match[]={app="loki"}"#,
            "--data-urlencode",
            "start=1576364400",
            "--data-urlencode",
            "end=1576371600",
        ],
        "/loki/api/v1/series",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(keys(&v), ["data", "status"]);
    assert_eq!(v["status"], "success");
    let mut got: Vec<Value> = v["data"].as_array().unwrap().clone();
    let mut want: Vec<Value> = series_example().as_array().unwrap().clone();
    got.sort_by_key(Value::to_string);
    want.sort_by_key(Value::to_string);
    assert_eq!(got, want);
    let r = run.get(
        "/loki/api/v1/series",
        &[
            ("match[]", r#"{app="loki"}"#),
            ("start", "1576364400"),
            ("end", "1576371600"),
        ],
    );
    assert_eq!(r.json()["data"], json!([series_example()[0]]));
}

/// Loki's `logproto.EntryAdapter` as its clients (Promtail, Alloy) encode it since
/// structured metadata: field 3, `repeated LabelPairAdapter structuredMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
struct ClientPushRequest {
    #[prost(message, repeated, tag = "1")]
    streams: Vec<ClientStream>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ClientStream {
    #[prost(string, tag = "1")]
    labels: String,
    #[prost(message, repeated, tag = "2")]
    entries: Vec<ClientEntry>,
    #[prost(uint64, tag = "3")]
    hash: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ClientEntry {
    #[prost(message, optional, tag = "1")]
    timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    line: String,
    #[prost(message, repeated, tag = "3")]
    structured_metadata: Vec<LabelPair>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LabelPair {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[test]
fn push_forms_defaults_and_what_is_left_out() {
    let Some(run) = support::start() else {
        eprintln!("skipped: curl is not installed");
        return;
    };
    let range = "/loki/api/v1/query_range";
    let now = now_ns();

    // Structured metadata, "a JSON object to the end of the log line array": accepted
    // (a 204), the line stored, the metadata not kept (this store has labels and lines
    // only; it does not become labels of the stream).
    assert_no_content(&run.push_json(&format!(
        r#"{{"streams":[{{"stream":{{"job":"meta"}},"values":[["{now}","with metadata",{{"trace_id": "0242ac120002", "user_id": "superUser123"}}],["{}","without"]]}}]}}"#,
        now + 1
    )));
    // And in protobuf, as Loki's clients encode it.
    let req = ClientPushRequest {
        streams: vec![ClientStream {
            labels: r#"{job="meta"}"#.into(),
            entries: vec![ClientEntry {
                timestamp: Some(Timestamp::from_nanos(now + 2)),
                line: "proto with metadata".into(),
                structured_metadata: vec![LabelPair {
                    name: "trace_id".into(),
                    value: "0242ac120002".into(),
                }],
            }],
            hash: 0,
        }],
    };
    assert_no_content(&run.push_proto(&snappy(&req.encode_to_vec())));
    // start and end default to the last hour.
    let r = run.get(
        range,
        &[("query", r#"{job="meta"}"#), ("direction", "forward")],
    );
    assert_eq!(
        assert_query_shape(&r, "streams"),
        json!([{"stream": {"job": "meta"}, "values": [
            [now.to_string(), "with metadata"],
            [(now + 1).to_string(), "without"],
            [(now + 2).to_string(), "proto with metadata"],
        ]}])
    );

    // `limit` "defaults to 100": 150 lines answer the newest 100, newest first.
    let values: Vec<Value> = (0..150)
        .map(|i| json!([(now - 1000 + i).to_string(), format!("line {i}")]))
        .collect();
    let body = json!({"streams": [{"stream": {"job": "many"}, "values": values}]});
    assert_no_content(&run.push_json(&body.to_string()));
    let r = run.get(range, &[("query", r#"{job="many"}"#)]);
    let result = assert_query_shape(&r, "streams");
    let got = result[0]["values"].as_array().unwrap();
    assert_eq!(got.len(), 100);
    assert_eq!(got[0], json!([(now - 1000 + 149).to_string(), "line 149"]));
    assert_eq!(got[99], json!([(now - 1000 + 50).to_string(), "line 50"]));
    // A push sent again (a client's retry) stores nothing twice.
    assert_no_content(&run.push_json(&body.to_string()));
    let r = run.get(range, &[("query", r#"{job="many"}"#), ("limit", "1000")]);
    assert_eq!(
        assert_query_shape(&r, "streams")[0]["values"]
            .as_array()
            .unwrap()
            .len(),
        150
    );
    // The labels API's default range (6 hours) holds these.
    let r = run.get("/loki/api/v1/labels", &[]);
    assert_eq!(assert_list_shape(&r), ["job"]);

    // "When using /api/v1/push, you must send the timestamp as a string and not a
    // number, otherwise the endpoint will return a 400 error."
    let r = run.push_json(&format!(
        r#"{{"streams":[{{"stream":{{"job":"x"}},"values":[[{now},"l"]]}}]}}"#
    ));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("invalid type: integer"), "{}", r.body);

    // Left out, each a clear 4xx: gzipped JSON ("You can set Content-Encoding: gzip"),
    // `interval`, and the endpoints outside the subset (tail, index stats, patterns).
    let r = run.post(
        "/loki/api/v1/push",
        &["Content-Type: application/json", "Content-Encoding: gzip"],
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00",
    );
    assert_eq!(r.status, 415, "{}", r.body);
    assert!(
        r.body
            .contains("Content-Encoding \"gzip\" is not supported"),
        "{}",
        r.body
    );
    let r = run.get(range, &[("query", r#"{job="many"}"#), ("interval", "5s")]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("interval is not supported"), "{}", r.body);
    for path in [
        "/loki/api/v1/tail",
        "/loki/api/v1/index/stats",
        "/loki/api/v1/patterns",
    ] {
        let r = run.get(path, &[("query", r#"{job="many"}"#)]);
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        assert!(r.body.contains("not found"), "{}", r.body);
    }
    // "GET /ready".
    let r = run.get("/ready", &[]);
    assert_eq!((r.status, r.body.trim()), (200, "ready"));
}

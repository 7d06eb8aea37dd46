#!/usr/bin/env python3
"""bench/logs-tool.py: the helpers of bench/logs.sh (standard library only).

  gen     writes JSON access-log lines (the shape of rampart's lb access log) to a file
          at a fixed rate for a fixed time; prints how many it wrote
  sink    a TCP (optionally TLS) receiver for rsyslog's omfwd: appends what arrives to a
          file, until SIGTERM
  ingest  pushes N lines straight to `rampart logs` (Loki JSON push, mutual TLS) over
          keep-alive connections; prints the rate and per-push latencies as JSON
  query   runs each benchmark query N times over one keep-alive connection; prints
          latencies as JSON
  count   how many lines the store holds for a selector (sum of count_over_time)

Everything talks to 127.0.0.1 only, and every loop is bounded in count and time.
"""

import argparse
import http.client
import json
import os
import queue
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse

METHODS = ["GET"] * 6 + ["POST", "POST", "HEAD", "PUT"]
STATUSES = [200] * 8 + [304, 404, 500, 503]
PATHS = ["/", "/api/users/{n}", "/api/orders/{n}", "/static/app.{n}.js", "/login", "/api/search?q=x{n}"]


def access_line(seq, run_id, now, client_octet, marker=None):
    """One access-log line like rampart_telemetry::access_log::Entry's, unique by request_id."""
    t = time.gmtime(now)
    ms = int((now % 1) * 1000)
    k = seq * 2654435761 % 4294967296  # cheap deterministic spread
    path = PATHS[k % len(PATHS)].format(n=k % 10000)
    if marker:
        path = "/api/search?q=" + marker
    return (
        '{"time":"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ","client":"203.0.113.%d","method":"%s",'
        '"host":"www.foobar.com","path":"%s","status":%d,"bytes":%d,"duration_ms":%d.%03d,'
        '"backend":"198.18.1.%d:8080","tls":"TLSv1.3","proto":"HTTP/1.1","request_id":"%s-%08d"}'
        % (
            t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, ms,
            client_octet, METHODS[k % len(METHODS)], path, STATUSES[(k >> 4) % len(STATUSES)],
            40 + (k >> 8) % 20000, (k >> 12) % 40, (k >> 16) % 1000, 11 + k % 2, run_id, seq,
        )
    )


def cmd_gen(a):
    """Appends `rate` lines a second for `duration` s, 100 writes a second, on a fixed schedule."""
    fd = os.open(a.file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    total = a.rate * a.duration
    tick = 0.01
    start = time.monotonic()
    deadline = start + a.duration + 30  # never runs far past its time, even when starved
    seq = 0
    while seq < total and time.monotonic() < deadline:
        due = min(total, int((time.monotonic() - start) * a.rate) + 1)
        if due > seq:
            now = time.time()
            buf = "".join(
                access_line(i, a.run_id, now, 1 + i % 250) + "\n" for i in range(seq, due)
            )
            os.write(fd, buf.encode())
            seq = due
        time.sleep(tick)
    os.close(fd)
    print(seq)


def cmd_sink(a):
    """Accepts connections and appends every byte to `out`; one thread per connection."""
    ctx = None
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        ctx.load_verify_locations(a.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    out = open(a.out, "ab", buffering=0)
    lock = threading.Lock()
    srv = socket.create_server(("127.0.0.1", a.port), backlog=16)
    stop = threading.Event()

    def on_term(_sig, _frm):
        stop.set()
        srv.close()

    signal.signal(signal.SIGTERM, on_term)

    def serve(conn):
        try:
            if ctx:
                conn = ctx.wrap_socket(conn, server_side=True)
            conn.settimeout(1.0)
            while not stop.is_set():
                try:
                    b = conn.recv(65536)
                except socket.timeout:
                    continue
                if not b:
                    break
                with lock:
                    out.write(b)
        except (OSError, ssl.SSLError) as e:
            print("sink: connection: %s" % e, file=sys.stderr)
        finally:
            conn.close()

    open(a.ready, "w").close()
    while not stop.is_set():
        try:
            conn, _ = srv.accept()
        except OSError:
            break
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def tls_context(a):
    ctx = ssl.create_default_context(cafile=a.ca)
    ctx.load_cert_chain(a.cert, a.key)
    ctx.check_hostname = False  # the store's certificate names 127.0.0.1 as an IP SAN
    return ctx


def connect(a, ctx):
    u = urllib.parse.urlsplit(a.url)
    return http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=60)


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def cmd_ingest(a):
    """Pushes `lines` lines in batches of `batch` over `conns` keep-alive connections.

    Streams: hosts lb1, lb2 (service lb) and web1, web2 (service web), stream access; the
    lines' times spread evenly over the `span` s before the start, so the queries look at
    an hour of a busy site. Every `marker_every`-th line carries the marker.
    """
    ctx = tls_context(a)
    hosts = [("lb1", "lb"), ("lb2", "lb"), ("web1", "web"), ("web2", "web")]
    t_end_ns = time.time_ns()
    t0_ns = t_end_ns - a.span * 1_000_000_000
    step_ns = a.span * 1_000_000_000 // max(1, a.lines)
    batches = queue.Queue(maxsize=a.conns * 4)
    gen_cpu = [0.0]

    def produce():
        c0 = time.thread_time()
        n = 0
        while n < a.lines:
            m = min(a.batch, a.lines - n)
            per = {h: [] for h in hosts}
            for i in range(n, n + m):
                h = hosts[i % len(hosts)]
                ts = t0_ns + i * step_ns
                marker = a.marker if a.marker_every and i % a.marker_every == 0 else None
                line = access_line(i, a.run_id, ts / 1e9, 1 + i % 250, marker)
                per[h].append('["%d",%s]' % (ts, json.dumps(line)))
            body = '{"streams":[%s]}' % ",".join(
                '{"stream":{"host":"%s","service":"%s","stream":"access"},"values":[%s]}'
                % (h, s, ",".join(v))
                for (h, s), v in per.items()
                if v
            )
            batches.put((m, body.encode()))
            n += m
        gen_cpu[0] = time.thread_time() - c0
        for _ in range(a.conns):
            batches.put(None)

    lat, errors, sent = [], [], [0]
    lock = threading.Lock()

    def push():
        conn = connect(a, ctx)
        while True:
            item = batches.get()
            if item is None:
                break
            m, body = item
            t = time.monotonic()
            try:
                conn.request("POST", "/loki/api/v1/push", body, {"Content-Type": "application/json"})
                r = conn.getresponse()
                text = r.read()
                ok = r.status == 204
            except (OSError, http.client.HTTPException) as e:
                ok, text = False, str(e).encode()
                conn.close()
                conn = connect(a, ctx)
            d = time.monotonic() - t
            with lock:
                if ok:
                    lat.append(d)
                    sent[0] += m
                elif len(errors) < 5:
                    errors.append(text[:200].decode(errors="replace"))
                else:
                    errors.append("")
        conn.close()

    prod = threading.Thread(target=produce, daemon=True)
    prod.start()
    t = time.monotonic()
    workers = [threading.Thread(target=push, daemon=True) for _ in range(a.conns)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=a.timeout)
    wall = time.monotonic() - t
    print(json.dumps({
        "lines_sent": sent[0],
        "seconds": round(wall, 3),
        "lines_per_second": round(sent[0] / wall, 1) if wall else None,
        "pushes_ok": len(lat),
        "push_errors": len(errors),
        "first_errors": [e for e in errors if e][:5],
        "push_p50_ms": round(pct(lat, 50) * 1000, 1) if lat else None,
        "push_p99_ms": round(pct(lat, 99) * 1000, 1) if lat else None,
        "generator_cpu_s": round(gen_cpu[0], 2),
        "start_ns": t0_ns,
        "end_ns": t_end_ns,
        "timed_out": any(w.is_alive() for w in workers),
    }))


def get(conn, path, params):
    q = urllib.parse.urlencode(params)
    t = time.monotonic()
    conn.request("GET", path + "?" + q)
    r = conn.getresponse()
    body = r.read()
    return time.monotonic() - t, r.status, body


def result_size(body):
    """Lines (streams), points (matrix) or values (labels) in an answer."""
    try:
        d = json.loads(body).get("data")
    except ValueError:
        return -1
    if isinstance(d, list):
        return len(d)
    res = d.get("result", [])
    if d.get("resultType") == "streams":
        return sum(len(s["values"]) for s in res)
    if d.get("resultType") == "matrix":
        return sum(len(s["values"]) for s in res)
    return len(res)


def cmd_query(a):
    ctx = tls_context(a)
    conn = connect(a, ctx)
    start, end = str(a.start), str(a.end)
    kinds = [
        ("log: {service=\"lb\"} |= marker, limit 100",
         "/loki/api/v1/query_range",
         {"query": '{service="lb"} |= "%s"' % a.marker, "start": start, "end": end, "limit": "100"}),
        ("log: {host=\"lb1\"}, last 100 lines",
         "/loki/api/v1/query_range",
         {"query": '{host="lb1"}', "start": start, "end": end, "limit": "100"}),
        ("metric: count_over_time({host=\"lb1\"}[1m]), 1h, step 1m",
         "/loki/api/v1/query_range",
         {"query": 'count_over_time({host="lb1"}[1m])', "start": start, "end": end, "step": "60"}),
        ("labels: /loki/api/v1/labels",
         "/loki/api/v1/labels", {"start": start, "end": end}),
        ("labels: /loki/api/v1/label/host/values",
         "/loki/api/v1/label/host/values", {"start": start, "end": end}),
    ]
    out = []
    deadline = time.monotonic() + a.timeout
    for name, path, params in kinds:
        lat, bad, size = [], 0, None
        for _ in range(a.n):
            if time.monotonic() > deadline:
                break
            try:
                d, status, body = get(conn, path, params)
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = connect(a, ctx)
                bad += 1
                continue
            if status != 200:
                bad += 1
                size = "HTTP %d: %s" % (status, body[:120].decode(errors="replace"))
                continue
            lat.append(d)
            size = result_size(body)
        out.append({
            "query": name,
            "n": len(lat),
            "failed": bad,
            "result_size": size,
            "p50_ms": round(pct(lat, 50) * 1000, 2) if lat else None,
            "p99_ms": round(pct(lat, 99) * 1000, 2) if lat else None,
            "mean_ms": round(sum(lat) / len(lat) * 1000, 2) if lat else None,
        })
    conn.close()
    print(json.dumps(out))


def cmd_count(a):
    ctx = tls_context(a)
    conn = connect(a, ctx)
    _, status, body = get(conn, "/loki/api/v1/query", {
        "query": "sum(count_over_time(%s [%ds]))" % (a.selector, a.range),
    })
    conn.close()
    if status != 200:
        print("count: HTTP %d: %s" % (status, body[:200]), file=sys.stderr)
        print(-1)
        return
    res = json.loads(body)["data"]["result"]
    print(int(float(res[0]["value"][1])) if res else 0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("--file", required=True)
    g.add_argument("--rate", type=int, required=True)
    g.add_argument("--duration", type=int, required=True)
    g.add_argument("--run-id", required=True)
    s = sub.add_parser("sink")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--ready", required=True)
    s.add_argument("--cert")
    s.add_argument("--key")
    s.add_argument("--ca")
    for name in ("ingest", "query", "count"):
        c = sub.add_parser(name)
        c.add_argument("--url", required=True)
        c.add_argument("--ca", required=True)
        c.add_argument("--cert", required=True)
        c.add_argument("--key", required=True)
        c.add_argument("--timeout", type=float, default=600)
        if name == "ingest":
            c.add_argument("--lines", type=int, required=True)
            c.add_argument("--batch", type=int, default=1000)
            c.add_argument("--conns", type=int, default=2)
            c.add_argument("--span", type=int, default=3600)
            c.add_argument("--marker", default="needle-7f3a")
            c.add_argument("--marker-every", type=int, default=10000)
            c.add_argument("--run-id", required=True)
        elif name == "query":
            c.add_argument("--n", type=int, default=50)
            c.add_argument("--start", type=int, required=True)
            c.add_argument("--end", type=int, required=True)
            c.add_argument("--marker", default="needle-7f3a")
        else:
            c.add_argument("--selector", required=True)
            c.add_argument("--range", type=int, default=7200)
    a = p.parse_args()
    {"gen": cmd_gen, "sink": cmd_sink, "ingest": cmd_ingest, "query": cmd_query, "count": cmd_count}[a.cmd](a)


if __name__ == "__main__":
    main()

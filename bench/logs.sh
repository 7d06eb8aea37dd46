#!/usr/bin/env bash
# bench/logs.sh: log shipping, `rampart agent` against Debian's rsyslog, and the log store.
#
#   1. shipping: a generator appends RATE JSON access-log lines/s for DURATION s to one file;
#      both shippers tail that same file at the same time:
#        rampart agent  -> disk buffer (fdatasync) -> Loki push (protobuf+snappy, mutual TLS)
#                       -> rampart gate (host label check) -> rampart logs (SQLite FTS5)
#        rsyslogd       -> imfile -> omfwd over TCP (RSYSLOG_QUEUE: its queue) -> a counting sink
#      Measured per process: CPU (utime+stime from /proc/PID/stat) per 1000 lines over the
#      same window, RSS (VmRSS sampled every second, and VmHWM), bytes written to disk
#      (/proc/PID/io), and the lines each one delivered.
#   2. the store: LINES lines pushed straight to `rampart logs` (JSON push, mutual TLS), the
#      ingest rate and the store's CPU per 1000 lines; then QUERIES runs of each query kind
#      over one keep-alive connection: p50 and p99 latency.
#
# Everything runs on 127.0.0.1, from this script, in the foreground: rsyslogd gets its own
# config and work directory (never the system service or /etc/rsyslog.conf).
#
# Usage:   bench/logs.sh
# Env:     DURATION=60 RATE=2000 LINES=1000000 QUERIES=50 BASE_PORT=28200 SKIP_BUILD=0
#          RSYSLOG_QUEUE=memory|direct|disk|disk-sync  RSYSLOG_TLS=0  POLL=1s  DRAIN=60
#          INGEST_BATCH=1000 INGEST_CONNS=2 RESULTS_DIR=<repo>/target/bench
#          RAMPART_BIN=<path> (default <target dir>/release/rampart; setting it skips the build)
#          RAMPART_LOG=<tracing filter for the rampart services; default "warn">
# Output:  a table on stdout and in $RESULTS_DIR/logs-<timestamp>.txt; configs, logs and the
#          raw numbers in $RESULTS_DIR/logs-<timestamp>/. See bench/README.md.
set -euo pipefail

export PATH="$PATH:/usr/sbin:/sbin"
export LC_ALL=C

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
DURATION=${DURATION:-60}
RATE=${RATE:-2000}
LINES=${LINES:-1000000}
QUERIES=${QUERIES:-50}
BASE_PORT=${BASE_PORT:-28200}
SKIP_BUILD=${SKIP_BUILD:-0}
RSYSLOG_QUEUE=${RSYSLOG_QUEUE:-memory}
RSYSLOG_TLS=${RSYSLOG_TLS:-0}
POLL=${POLL:-1s}
DRAIN=${DRAIN:-60}
INGEST_BATCH=${INGEST_BATCH:-1000}
INGEST_CONNS=${INGEST_CONNS:-2}
RAMPART_LOG_USED=${RAMPART_LOG:-warn}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ -n ${RAMPART_BIN:-} ]]; then SKIP_BUILD=1; fi
RAMPART_BIN=${RAMPART_BIN:-$TARGET_DIR/release/rampart}
RESULTS_DIR=${RESULTS_DIR:-$ROOT/target/bench}
case $RESULTS_DIR in /*) ;; *) RESULTS_DIR=$ROOT/$RESULTS_DIR ;; esac
TOOL=$BENCH/logs-tool.py
PYTHON=/usr/bin/python3
RSYSLOGD=/usr/sbin/rsyslogd

log() { printf '[logs.sh] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

for v in DURATION RATE LINES QUERIES BASE_PORT DRAIN INGEST_BATCH INGEST_CONNS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
((DURATION >= 5 && DURATION <= 3600)) || die "DURATION must be 5-3600 s"
((RATE >= 10 && RATE <= 50000)) || die "RATE must be 10-50000 lines/s"
((LINES == 0 || (LINES >= 1000 && LINES <= 20000000))) || die "LINES must be 0 (no store phase) or 1000-20000000"
((QUERIES >= 1 && QUERIES <= 10000)) || die "QUERIES must be 1-10000"
((BASE_PORT >= 1024 && BASE_PORT <= 65000)) || die "BASE_PORT must be 1024-65000"
((INGEST_BATCH >= 1 && INGEST_BATCH <= 20000)) || die "INGEST_BATCH must be 1-20000 (the store takes bodies up to 16 MiB)"
((INGEST_CONNS >= 1 && INGEST_CONNS <= 4)) || die "INGEST_CONNS must be 1-4 (the store's max_in_flight)"
((DRAIN >= 5 && DRAIN <= 600)) || die "DRAIN must be 5-600 s"
case $RSYSLOG_QUEUE in memory | direct | disk | disk-sync) ;; *) die "RSYSLOG_QUEUE must be memory, direct, disk or disk-sync" ;; esac
case $RSYSLOG_TLS in 0 | 1) ;; *) die "RSYSLOG_TLS must be 0 or 1" ;; esac
[[ $POLL =~ ^[0-9]+(ms|s)$ ]] || die "POLL must be a duration such as 1s or 250ms"

# --- tools -------------------------------------------------------------------------------

# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

missing=()
[[ -x $RSYSLOGD ]] || missing+=(rsyslog)
if ((RSYSLOG_TLS)) && [[ -z $(find /usr/lib -name lmnsd_gtls.so 2>/dev/null | head -n1) ]]; then
    missing+=(rsyslog-gnutls)
fi
[[ -x $PYTHON ]] || missing+=(python3-minimal)
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
command -v ss >/dev/null || missing+=(iproute2)
command -v getconf >/dev/null || missing+=(libc-bin)
install_missing "${missing[@]}"
[[ -x $RSYSLOGD ]] || die "$RSYSLOGD not found after installing rsyslog"
RSYSLOG_VERSION=$("$RSYSLOGD" -v 2>&1 | sed -n '1{s/ *compiled with:.*//;s/  */ /g;p}')
[[ $RSYSLOG_VERSION == *" 8.2302."* ]] || log "warning: expected rsyslog 8.2302 (Debian 12), found: $RSYSLOG_VERSION"
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(getconf _NPROCESSORS_ONLN)

# --- build -------------------------------------------------------------------------------

if [[ $SKIP_BUILD != 1 ]]; then
    log "building rampart (release) into $TARGET_DIR"
    (cd "$ROOT" && cargo build --release -p rampart) >&2
fi
[[ -x $RAMPART_BIN ]] || die "$RAMPART_BIN not found; build failed? (or set RAMPART_BIN)"

# --- processes ---------------------------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rampart-logs-bench.XXXXXX")
declare -A LIVE=() # pid -> what, for every process this script started and has not reaped

alive() { # pid: running and not a zombie
    local line
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
    line=${line##*) }
    [[ ${line:0:1} != Z ]]
}

reap() { # pid...: wait (bounded) for each to exit, SIGKILL after 10 s, forget it
    local pid i
    for pid in "$@"; do
        for ((i = 0; i < 100; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            log "pid $pid (${LIVE[$pid]:-?}) did not exit after SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            for ((i = 0; i < 20; i++)); do
                alive "$pid" || break
                sleep 0.1
            done
        fi
        wait "$pid" 2>/dev/null || true
        unset "LIVE[$pid]"
    done
}

cleanup() {
    local rc=$? pids=("${!LIVE[@]}") pid
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    if ((${#pids[@]})); then reap "${pids[@]}"; fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

START_PID=
start_bg() { # what logfile cmd...: start in the background, output to logfile
    local what=$1 logf=$2
    shift 2
    "$@" >"$logf" 2>&1 </dev/null &
    START_PID=$!
    LIVE[$START_PID]=$what
}

port_in_use() { [[ -n $(ss -Htln "( sport = :$1 )" 2>/dev/null || true) ]]; }

wait_for() { # what pid logfile seconds cmd...: until cmd succeeds; dies showing the log
    local what=$1 pid=$2 logf=$3 secs=$4 i
    shift 4
    for ((i = 0; i < secs * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        alive "$pid" || break
        sleep 0.1
    done
    tail -n 30 "$logf" >&2 || true
    die "$what did not become ready within $secs s (its log is above)"
}

cpu_ticks() { # pid -> utime+stime in clock ticks (all threads)
    local line fields
    read -r line <"/proc/$1/stat" || die "pid $1 is gone"
    read -ra fields <<<"${line##*) }"
    # After "comm)": field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    echo $((fields[11] + fields[12]))
}

status_kb() { # pid field -> that field of /proc/PID/status in kB (VmRSS, VmHWM)
    awk -v f="$2:" '$1 == f { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$1/status"
}

io_field() { # pid field -> that field of /proc/PID/io (write_bytes, syscw), 0 if unreadable
    awk -v f="$2:" '$1 == f { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$1/io" 2>/dev/null || echo 0
}

now() { date +%s.%N; }

# --- setup -------------------------------------------------------------------------------

TS=$(date -u +%Y%m%dT%H%M%SZ)
RUN_ID=r$(date -u +%H%M%S)$((RANDOM % 90 + 10))
mkdir -p "$RESULTS_DIR"
RUN_DIR=$RESULTS_DIR/logs-$TS
mkdir -p "$RUN_DIR"
log "work dir $WORK; results in $RUN_DIR"
FSTYPE=$(stat -f -c %T "$WORK")
[[ $FSTYPE != tmpfs ]] || log "warning: $WORK is on tmpfs: the agent's fdatasync costs nothing there (set TMPDIR to a disk)"

GATE_PORT=$((BASE_PORT + 1))
STORE_PORT=$((BASE_PORT + 2))
SINK_PORT=$((BASE_PORT + 3))
for p in "$GATE_PORT" "$STORE_PORT" "$SINK_PORT"; do
    port_in_use "$p" && die "port $p is already in use; choose another range with BASE_PORT=..."
done
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# A private copy: the workspace may be rebuilt while the benchmark runs.
mkdir -p "$WORK/bin"
cp "$RAMPART_BIN" "$WORK/bin/rampart"
RAMPART=$WORK/bin/rampart
RAMPART_VERSION=$("$RAMPART" --version 2>&1 | sed -n 1p)

# One local CA: site.pem (127.0.0.1) is the gate's and the store's server certificate,
# lb1.pem the agent's client certificate (the gate checks the host label against it),
# gate.pem the gate's client certificate towards the store (and this script's, for the
# ingest and the queries).
CERTS=$WORK/certs
"$RAMPART" cert --dir "$CERTS" --name 127.0.0.1 --host lb1 --host gate >"$WORK/cert.log" 2>&1 ||
    { cat "$WORK/cert.log" >&2; die "rampart cert failed"; }
CLIENT=(--ca "$CERTS/ca.pem" --cert "$CERTS/gate.pem" --key "$CERTS/gate.key")
STORE_URL=https://127.0.0.1:$STORE_PORT

cat >"$WORK/logs.toml" <<EOF
[listen]
addr = "127.0.0.1:$STORE_PORT"
[tls]
cert = "$CERTS/site.pem"
key = "$CERTS/site.key"
client_ca = "$CERTS/ca.pem"
[store]
path = "$WORK/store/logs.db"
EOF
mkdir -p "$WORK/store"
# The gate's metrics upstream is the store, which refuses a remote write (415): the
# agent's one heartbeat push (interval 300 s, see below) is refused and dropped, and no
# retries run during the window.
cat >"$WORK/gate.toml" <<EOF
[listen]
addr = "127.0.0.1:$GATE_PORT"
[tls]
cert = "$CERTS/site.pem"
key = "$CERTS/site.key"
client_ca = "$CERTS/ca.pem"
[upstream]
url = "$STORE_URL/api/v1/write"
ca = "$CERTS/ca.pem"
cert = "$CERTS/gate.pem"
key = "$CERTS/gate.key"
[logs]
url = "$STORE_URL/loki/api/v1/push"
ca = "$CERTS/ca.pem"
cert = "$CERTS/gate.pem"
key = "$CERTS/gate.key"
EOF
# The agent as a log shipper only: no host metrics, the longest interval (300 s), so its
# CPU is the shipping's. The rate limit is raised well above RATE (its default, 1000
# lines/s with a burst of 5000, would drop lines at the default RATE).
AGENT_LPS=$((RATE * 4 > 1000 ? RATE * 4 : 1000))
AGENT_BURST=$((RATE * 10 > 5000 ? RATE * 10 : 5000))
ACCESS_LOG=$WORK/access.log
: >"$ACCESS_LOG"
cat >"$WORK/agent.toml" <<EOF
[agent]
instance = "lb1"
interval = "300s"
state_dir = "$WORK/agent-state"
[push]
url = "https://127.0.0.1:$GATE_PORT/api/v1/write"
ca = "$CERTS/ca.pem"
cert = "$CERTS/lb1.pem"
key = "$CERTS/lb1.key"
[host]
enabled = false
[logs]
url = "https://127.0.0.1:$GATE_PORT/loki/api/v1/push"
poll = "$POLL"
lines_per_second = $AGENT_LPS
burst = $AGENT_BURST
[[logs.files]]
path = "$ACCESS_LOG"
service = "lb"
stream = "access"
EOF

# rsyslog: imfile (inotify) on the same file, omfwd over TCP to the sink. Queue choices:
#   memory     the rsyslog documentation's forwarding example: a LinkedList action queue
#              with a file name (disk-assisted: in memory, spilling to disk only when it
#              fills up or at shutdown), retrying forever
#   direct     rsyslog's defaults: no action queue (the main queue, in memory)
#   disk       queue.type="Disk": every message goes through queue files
#   disk-sync  the same with queue.syncqueuefiles="on" (fsync on every queue write)
case $RSYSLOG_QUEUE in
memory) QUEUE='queue.type="LinkedList" queue.filename="fwd" queue.saveOnShutdown="on" action.resumeRetryCount="-1"' ;;
direct) QUEUE='action.resumeRetryCount="-1"' ;;
disk) QUEUE='queue.type="Disk" queue.filename="fwd" action.resumeRetryCount="-1"' ;;
disk-sync) QUEUE='queue.type="Disk" queue.filename="fwd" queue.syncqueuefiles="on" action.resumeRetryCount="-1"' ;;
esac
RSYSLOG_TLS_GLOBAL=
RSYSLOG_TLS_ACTION=
SINK_TLS=()
if ((RSYSLOG_TLS)); then
    RSYSLOG_TLS_GLOBAL="DefaultNetstreamDriver=\"gtls\" DefaultNetstreamDriverCAFile=\"$CERTS/ca.pem\" DefaultNetstreamDriverCertFile=\"$CERTS/lb1.pem\" DefaultNetstreamDriverKeyFile=\"$CERTS/lb1.key\""
    RSYSLOG_TLS_ACTION='StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/certvalid"'
    SINK_TLS=(--cert "$CERTS/site.pem" --key "$CERTS/site.key" --ca "$CERTS/ca.pem")
fi
mkdir -p "$WORK/rsyslog"
cat >"$WORK/rsyslog.conf" <<EOF
global(workDirectory="$WORK/rsyslog" $RSYSLOG_TLS_GLOBAL)
module(load="imfile" mode="inotify")
input(type="imfile" file="$ACCESS_LOG" tag="lb-access:" facility="local0" severity="info" ruleset="ship")
ruleset(name="ship") {
    action(type="omfwd" target="127.0.0.1" port="$SINK_PORT" protocol="tcp" template="RSYSLOG_ForwardFormat" $RSYSLOG_TLS_ACTION $QUEUE)
}
EOF
"$RSYSLOGD" -N1 -f "$WORK/rsyslog.conf" >"$WORK/rsyslog-check.log" 2>&1 ||
    { cat "$WORK/rsyslog-check.log" >&2; die "rsyslogd -N1 refused the config"; }

# (`rampart check` knows gate and agent configs; the store's is checked when it starts.)
for f in gate agent; do
    "$RAMPART" check "$WORK/$f.toml" --kind "$f" >"$WORK/check-$f.log" 2>&1 ||
        { cat "$WORK/check-$f.log" >&2; die "rampart check refused $f.toml"; }
done

export RAMPART_LOG=$RAMPART_LOG_USED
start_bg "rampart logs" "$WORK/store.log" "$RAMPART" logs --config "$WORK/logs.toml"
STORE_PID=$START_PID
wait_for "rampart logs" "$STORE_PID" "$WORK/store.log" 20 \
    curl -sf --max-time 2 --cacert "$CERTS/ca.pem" --cert "$CERTS/gate.pem" --key "$CERTS/gate.key" "$STORE_URL/ready"
start_bg "rampart gate" "$WORK/gate.log" "$RAMPART" gate --config "$WORK/gate.toml"
GATE_PID=$START_PID
gate_up() { # the gate answers 403 to anything but a push: a TLS round trip worked
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert "$CERTS/ca.pem" --cert "$CERTS/lb1.pem" \
        --key "$CERTS/lb1.key" "https://127.0.0.1:$GATE_PORT/") == 403 ]]
}
wait_for "rampart gate" "$GATE_PID" "$WORK/gate.log" 20 gate_up
start_bg "sink" "$WORK/sink.log" "$PYTHON" "$TOOL" sink --port "$SINK_PORT" --out "$WORK/sink.out" \
    --ready "$WORK/sink.ready" "${SINK_TLS[@]}"
SINK_PID=$START_PID
wait_for "sink" "$SINK_PID" "$WORK/sink.log" 10 test -e "$WORK/sink.ready"
start_bg "rampart agent" "$WORK/agent.log" "$RAMPART" agent --config "$WORK/agent.toml"
AGENT_PID=$START_PID
start_bg "rsyslogd" "$WORK/rsyslog.log" "$RSYSLOGD" -n -f "$WORK/rsyslog.conf" -i "$WORK/rsyslog.pid"
RSYSLOG_PID=$START_PID
log "store on 127.0.0.1:$STORE_PORT (pid $STORE_PID), gate on :$GATE_PORT (pid $GATE_PID), agent pid $AGENT_PID"
log "rsyslogd pid $RSYSLOG_PID -> sink on 127.0.0.1:$SINK_PORT (pid $SINK_PID)"

sink_count() { # lines of run $1 that reached the sink
    grep -c -F "\"request_id\":\"$1-" "$WORK/sink.out" 2>/dev/null || true
}
store_count() { # lines of run $1 in the store (from host lb1)
    "$PYTHON" "$TOOL" count --url "$STORE_URL" "${CLIENT[@]}" --timeout 10 \
        --selector "{host=\"lb1\"} |= \"$1-\"" 2>>"$WORK/count.log" || echo -1
}

# Readiness of both pipelines, end to end: one probe line must reach the sink and the
# store (it is not part of the measured lines).
PROBE_ID=${RUN_ID}p
"$PYTHON" -c 'import sys,importlib.util as u
s=u.spec_from_file_location("t",sys.argv[1]);m=u.module_from_spec(s);s.loader.exec_module(m)
import time;print(m.access_line(0,sys.argv[2],time.time(),1))' "$TOOL" "$PROBE_ID" >>"$ACCESS_LOG"
probe_arrived() { [[ $(sink_count "$PROBE_ID") -ge 1 && $(store_count "$PROBE_ID") -ge 1 ]]; }
for ((i = 0; i < 60; i++)); do
    probe_arrived && break
    for pid in "$AGENT_PID" "$RSYSLOG_PID" "$GATE_PID" "$STORE_PID" "$SINK_PID"; do
        alive "$pid" || { tail -n 20 "$WORK"/*.log >&2; die "${LIVE[$pid]} exited during start-up"; }
    done
    sleep 0.5
done
probe_arrived || {
    tail -n 20 "$WORK/agent.log" "$WORK/gate.log" "$WORK/store.log" "$WORK/rsyslog.log" "$WORK/sink.log" >&2
    die "the probe line did not reach both the sink ($(sink_count "$PROBE_ID")) and the store ($(store_count "$PROBE_ID")) within 30 s"
}
log "both pipelines delivered the probe line"

# --- 1. shipping window ------------------------------------------------------------------

declare -A ROW_PID=([agent]=$AGENT_PID [rsyslog]=$RSYSLOG_PID [gate]=$GATE_PID [store]=$STORE_PID [sink]=$SINK_PID)
ROWS=(agent rsyslog gate store sink)
declare -A C0=() C1=() R=() PEAK=() W0=() W1=() S0=() S1=()
sleep 1 # let the probe's work settle
for k in "${ROWS[@]}"; do
    C0[$k]=$(cpu_ticks "${ROW_PID[$k]}")
    W0[$k]=$(io_field "${ROW_PID[$k]}" write_bytes)
    S0[$k]=$(io_field "${ROW_PID[$k]}" syscw)
    PEAK[$k]=$(status_kb "${ROW_PID[$k]}" VmRSS)
done
STAT0=$(head -n1 /proc/stat)
T0=$(now)
EXPECTED=$((RATE * DURATION))
log "shipping: $RATE lines/s for $DURATION s ($EXPECTED lines), run id $RUN_ID"
start_bg "generator" "$WORK/gen.out" "$PYTHON" "$TOOL" gen --file "$ACCESS_LOG" --rate "$RATE" \
    --duration "$DURATION" --run-id "$RUN_ID"
GEN_PID=$START_PID

sample_rss() {
    local k v
    for k in "${ROWS[@]}"; do
        v=$(status_kb "${ROW_PID[$k]}" VmRSS)
        if ((v > PEAK[$k])); then PEAK[$k]=$v; fi
    done
}
check_alive() {
    local k
    for k in "${ROWS[@]}"; do
        alive "${ROW_PID[$k]}" || die "${LIVE[${ROW_PID[$k]}]:-$k} exited during the run"
    done
}
for ((i = 0; i < DURATION + 40; i++)); do
    alive "$GEN_PID" || break
    sample_rss
    check_alive
    if ((i % 10 == 9)); then log "$((i + 1)) s"; fi
    sleep 1
done
if alive "$GEN_PID"; then die "the generator did not finish within DURATION + 40 s"; fi
reap "$GEN_PID"
T_GEN=$(now)
WRITTEN=$(sed -n 1p "$WORK/gen.out")
[[ $WRITTEN =~ ^[0-9]+$ ]] || die "the generator failed: $(cat "$WORK/gen.out")"
((WRITTEN == EXPECTED)) || log "warning: the generator wrote $WRITTEN lines, not $EXPECTED (starved of CPU?)"
log "generator done: $WRITTEN lines; waiting up to $DRAIN s for both to deliver them"

# Delivery: until both have everything (or DRAIN s). Each one's time to deliver the last
# line is noted; the CPU window ends when both are done.
SINK_N=0 STORE_N=0 SINK_DONE= STORE_DONE=
for ((i = 0; i < DRAIN * 2; i++)); do
    sample_rss
    check_alive
    if [[ -z $SINK_DONE ]]; then
        SINK_N=$(sink_count "$RUN_ID")
        if ((SINK_N >= WRITTEN)); then SINK_DONE=$(now); fi
    fi
    if [[ -z $STORE_DONE ]]; then
        STORE_N=$(store_count "$RUN_ID")
        if ((STORE_N >= WRITTEN)); then STORE_DONE=$(now); fi
    fi
    if [[ -n $SINK_DONE && -n $STORE_DONE ]]; then break; fi
    sleep 0.5
done
T1=$(now)
STAT1=$(head -n1 /proc/stat)
for k in "${ROWS[@]}"; do
    pid=${ROW_PID[$k]}
    C1[$k]=$(cpu_ticks "$pid")
    W1[$k]=$(io_field "$pid" write_bytes)
    S1[$k]=$(io_field "$pid" syscw)
    R[$k.rss]=$(status_kb "$pid" VmRSS)
    R[$k.hwm]=$(status_kb "$pid" VmHWM)
    R[$k.anon]=$(status_kb "$pid" RssAnon)
    R[$k.file]=$(status_kb "$pid" RssFile)
done
sample_rss
SINK_N=$(sink_count "$RUN_ID")
STORE_N=$(store_count "$RUN_ID")
SINK_DISTINCT=$({ grep -o "\"request_id\":\"$RUN_ID-[0-9]*\"" "$WORK/sink.out" || true; } | sort -u | wc -l)
lag() { [[ -n $1 ]] && awk -v a="$T_GEN" -v b="$1" 'BEGIN { printf "%.1f", b - a }' || echo "not all"; }
SINK_LAG=$(lag "$SINK_DONE")
STORE_LAG=$(lag "$STORE_DONE")
WINDOW=$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.1f", b - a }')
# Whole-machine CPU busy during the window (all CPUs, %), to show how loaded the host was.
MACHINE_BUSY=$(awk -v a="$STAT0" -v b="$STAT1" 'BEGIN {
    n = split(a, x, " "); split(b, y, " "); t = 0
    for (i = 2; i <= n; i++) t += y[i] - x[i]
    idle = (y[5] - x[5]) + (y[6] - x[6])
    printf "%.0f", t ? 100 * (t - idle) / t : 0 }')
AGENT_STATE_KB=$(du -sk "$WORK/agent-state" | cut -f1)
RSYSLOG_WORK_KB=$(du -sk "$WORK/rsyslog" | cut -f1)

for k in "${ROWS[@]}"; do
    R[$k.ticks]=$((C1[$k] - C0[$k]))
    R[$k.cpu_s]=$(awk -v d="${R[$k.ticks]}" -v t="$CLK_TCK" 'BEGIN { printf "%.2f", d / t }')
    R[$k.ms_per_k]=$(awk -v d="${R[$k.ticks]}" -v t="$CLK_TCK" -v n="$WRITTEN" 'BEGIN { printf "%.2f", n ? d / t * 1000 / (n / 1000) : 0 }')
    R[$k.cpu_pct]=$(awk -v d="${R[$k.ticks]}" -v t="$CLK_TCK" -v w="$WINDOW" 'BEGIN { printf "%.1f", 100 * d / t / w }')
    R[$k.rss_mb]=$(awk -v v="${R[$k.rss]}" 'BEGIN { printf "%.1f", v / 1024 }')
    R[$k.peak_mb]=$(awk -v v="${PEAK[$k]}" 'BEGIN { printf "%.1f", v / 1024 }')
    R[$k.anon_mb]=$(awk -v v="${R[$k.anon]}" 'BEGIN { printf "%.1f", v / 1024 }')
    R[$k.file_mb]=$(awk -v v="${R[$k.file]}" 'BEGIN { printf "%.1f", v / 1024 }')
    R[$k.hwm_mb]=$(awk -v v="${R[$k.hwm]}" 'BEGIN { printf "%.1f", v / 1024 }')
    R[$k.disk_kb]=$(((W1[$k] - W0[$k]) / 1024))
    R[$k.syscw]=$((S1[$k] - S0[$k]))
done
log "shipping done: sink $SINK_N, store $STORE_N of $WRITTEN lines"

# --- 2. the store: ingest and queries ----------------------------------------------------

if ((LINES > 0)); then
    log "store: pushing $LINES lines (batches of $INGEST_BATCH, $INGEST_CONNS connections)"
    SC0=$(cpu_ticks "$STORE_PID")
    SW0=$(io_field "$STORE_PID" write_bytes)
    DB_KB0=$(du -sk "$WORK/store" | cut -f1)
    INGEST_TIMEOUT=$((LINES / 1000 + 300))
    "$PYTHON" "$TOOL" ingest --url "$STORE_URL" "${CLIENT[@]}" --lines "$LINES" --batch "$INGEST_BATCH" \
        --conns "$INGEST_CONNS" --run-id "${RUN_ID}i" --timeout "$INGEST_TIMEOUT" >"$WORK/ingest.json" 2>"$WORK/ingest.log" ||
        { cat "$WORK/ingest.log" >&2; die "the ingest failed"; }
    SC1=$(cpu_ticks "$STORE_PID")
    SW1=$(io_field "$STORE_PID" write_bytes)
    STORE_HWM_KB=$(status_kb "$STORE_PID" VmHWM)
    STORE_RSS_KB=$(status_kb "$STORE_PID" VmRSS)
    DB_KB1=$(du -sk "$WORK/store" | cut -f1)
    ij() { jq -r "$1" "$WORK/ingest.json"; }
    I_SENT=$(ij .lines_sent)
    I_SECS=$(ij .seconds)
    I_RATE=$(ij .lines_per_second)
    I_ERR=$(ij .push_errors)
    I_P50=$(ij .push_p50_ms)
    I_P99=$(ij .push_p99_ms)
    I_GENCPU=$(ij .generator_cpu_s)
    I_START=$(ij .start_ns)
    ((I_ERR == 0)) || log "warning: $I_ERR pushes failed: $(ij '.first_errors | join(" | ")')"
    I_STORE_CPU=$(awk -v d="$((SC1 - SC0))" -v t="$CLK_TCK" 'BEGIN { printf "%.1f", d / t }')
    I_STORE_MSK=$(awk -v d="$((SC1 - SC0))" -v t="$CLK_TCK" -v n="$I_SENT" 'BEGIN { printf "%.2f", n ? d / t * 1000 / (n / 1000) : 0 }')
    I_STORE_PCT=$(awk -v d="$((SC1 - SC0))" -v t="$CLK_TCK" -v w="$I_SECS" 'BEGIN { printf "%.0f", w ? 100 * d / t / w : 0 }')
    I_DB_MB=$(awk -v v="$DB_KB1" 'BEGIN { printf "%.0f", v / 1024 }')
    I_DB_B_PER_LINE=$(awk -v a="$DB_KB0" -v b="$DB_KB1" -v n="$I_SENT" 'BEGIN { printf "%.0f", n ? (b - a) * 1024 / n : 0 }')
    I_STORED=$("$PYTHON" "$TOOL" count --url "$STORE_URL" "${CLIENT[@]}" --timeout 120 \
        --selector "{stream=\"access\"} |= \"${RUN_ID}i-\"" 2>>"$WORK/count.log" || echo -1)
    log "ingest: $I_SENT lines in $I_SECS s ($I_RATE lines/s); $I_STORED stored; now $QUERIES runs of each query"

    Q_END=$(date +%s%N)
    "$PYTHON" "$TOOL" query --url "$STORE_URL" "${CLIENT[@]}" --n "$QUERIES" --start "$((I_START - 1000000000))" --end "$Q_END" \
        --timeout 900 >"$WORK/query.json" 2>"$WORK/query.log" || { cat "$WORK/query.log" >&2; die "the queries failed"; }
    ls -l "$WORK/store" >"$RUN_DIR/store-files.txt" 2>&1 || true
    mib() { [[ -e $1 ]] && awk -v v="$(stat -c %s "$1")" 'BEGIN { printf "%.0f", v / 1048576 }' || echo 0; }
    I_DB_SPLIT="$(mib "$WORK/store/logs.db") + $(mib "$WORK/store/logs.db-wal")"
fi

# --- report --------------------------------------------------------------------------------

for f in agent.toml gate.toml logs.toml rsyslog.conf agent.log gate.log store.log rsyslog.log sink.log \
    ingest.json ingest.log query.json query.log count.log; do
    cp "$WORK/$f" "$RUN_DIR/" 2>/dev/null || true
done
tail -n 5 "$ACCESS_LOG" >"$RUN_DIR/access-log-tail.txt" 2>/dev/null || true
tail -n 5 "$WORK/sink.out" >"$RUN_DIR/sink-tail.txt" 2>/dev/null || true

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }
ROW_FMT='%-34s %16s %16s\n'
line() { printf "$ROW_FMT" "$1" "$2" "$3"; }
case $RSYSLOG_QUEUE in
memory) QDESC="LinkedList action queue in memory, disk-assisted (spills only when full or at shutdown)" ;;
direct) QDESC="no action queue (defaults: main queue in memory)" ;;
disk) QDESC="Disk action queue (every message through queue files, no fsync)" ;;
disk-sync) QDESC="Disk action queue with syncqueuefiles (fsync per queue write)" ;;
esac
{
    echo
    echo "log shipping: rampart agent vs rsyslog, the same file, the same window"
    echo "  $WRITTEN JSON access-log lines ($RATE/s for $DURATION s, about $(($(stat -c %s "$ACCESS_LOG") / $(wc -l <"$ACCESS_LOG"))) bytes each); window $WINDOW s until both had delivered"
    echo "  agent:   poll $POLL, disk buffer with fdatasync per batch -> Loki push (protobuf+snappy), mTLS -> gate -> store"
    echo "  rsyslog: imfile (inotify) -> omfwd TCP$( ((RSYSLOG_TLS)) && echo " + TLS (gtls)"), RSYSLOG_ForwardFormat; queue: $QDESC"
    echo "  $RAMPART_VERSION; $RSYSLOG_VERSION"
    echo "  $NCPU CPUs, load average before: $LOAD_BEFORE; machine busy during the window: $MACHINE_BUSY % of all CPUs; $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "  work dir (agent buffer, rsyslog queue) on $FSTYPE (stat -f)"
    echo
    line "shipper" "rampart agent" "rsyslog"
    line "cpu ms per 1000 lines" "${R[agent.ms_per_k]}" "${R[rsyslog.ms_per_k]}"
    line "cpu s in the window" "${R[agent.cpu_s]}" "${R[rsyslog.cpu_s]}"
    line "cpu % of one core" "${R[agent.cpu_pct]}" "${R[rsyslog.cpu_pct]}"
    line "rss MiB at the end" "${R[agent.rss_mb]}" "${R[rsyslog.rss_mb]}"
    line "rss MiB peak (sampled 1/s)" "${R[agent.peak_mb]}" "${R[rsyslog.peak_mb]}"
    line "rss MiB high-water (VmHWM)" "${R[agent.hwm_mb]}" "${R[rsyslog.hwm_mb]}"
    line "  of which anon / file at the end" "${R[agent.anon_mb]} / ${R[agent.file_mb]}" "${R[rsyslog.anon_mb]} / ${R[rsyslog.file_mb]}"
    line "written to disk KiB" "${R[agent.disk_kb]}" "${R[rsyslog.disk_kb]}"
    line "write syscalls" "${R[agent.syscw]}" "${R[rsyslog.syscw]}"
    line "lines delivered" "$STORE_N / $WRITTEN" "$SINK_N / $WRITTEN"
    line "last line delivered after (s)" "$STORE_LAG" "$SINK_LAG"
    line "state dir KiB at the end" "$AGENT_STATE_KB" "$RSYSLOG_WORK_KB"
    echo
    echo "ratio agent / rsyslog"
    printf '%-34s %16s\n' "  cpu per line" "$(ratio "${R[agent.ticks]}" "${R[rsyslog.ticks]}")"
    printf '%-34s %16s\n' "  rss at the end" "$(ratio "${R[agent.rss]}" "${R[rsyslog.rss]}")"
    printf '%-34s %16s\n' "  rss peak (sampled)" "$(ratio "${PEAK[agent]}" "${PEAK[rsyslog]}")"
    echo
    echo "receivers (not part of the comparison; the store's includes this script's count queries): cpu ms per 1000 lines / peak rss MiB"
    printf '  %-32s %8s / %s\n' "rampart gate" "${R[gate.ms_per_k]}" "${R[gate.peak_mb]}"
    printf '  %-32s %8s / %s\n' "rampart logs (store)" "${R[store.ms_per_k]}" "${R[store.peak_mb]}"
    printf '  %-32s %8s / %s\n' "rsyslog's sink (python)" "${R[sink.ms_per_k]}" "${R[sink.peak_mb]}"
    if ((LINES > 0)); then
        echo
        echo "store: $I_SENT lines pushed straight to rampart logs (JSON push, mTLS, $INGEST_CONNS connections, $INGEST_BATCH lines a push)"
        echo "  4 streams (host lb1, lb2 / service lb; web1, web2 / service web), times spread over the hour before"
        printf '  %-40s %s\n' "ingest rate, lines/s" "$I_RATE ($I_SECS s)"
        printf '  %-40s %s\n' "push latency p50 / p99 ms" "$I_P50 / $I_P99"
        printf '  %-40s %s\n' "store cpu ms per 1000 lines" "$I_STORE_MSK ($I_STORE_CPU s, $I_STORE_PCT % of one core)"
        printf '  %-40s %s\n' "lines stored / pushed / push errors" "$I_STORED / $I_SENT / $I_ERR"
        printf '  %-40s %s\n' "store dir MiB (db + WAL) / bytes per line" "$I_DB_MB ($I_DB_SPLIT) / $I_DB_B_PER_LINE"
        printf '  %-40s %s\n' "store rss MiB end / high-water" "$(awk -v a="$STORE_RSS_KB" -v b="$STORE_HWM_KB" 'BEGIN { printf "%.1f / %.1f", a / 1024, b / 1024 }')"
        printf '  %-40s %s\n' "generator cpu s (python, not the store's)" "$I_GENCPU"
        echo
        echo "queries over the store's $((I_STORED + STORE_N)) lines, $QUERIES runs each, one keep-alive mTLS connection:"
        printf '  %-56s %8s %8s %8s %s\n' "query" "p50 ms" "p99 ms" "failed" "result"
        jq -r '.[] | [.query, (.p50_ms // "-"), (.p99_ms // "-"), .failed, (.result_size | tostring)] | @tsv' "$WORK/query.json" |
            while IFS=$'\t' read -r q p50 p99 failed size; do
                printf '  %-56s %8s %8s %8s %s\n' "$q" "$p50" "$p99" "$failed" "$size"
            done
    fi
    echo
    echo "goal: the agent at or below rsyslog's cpu per line while it buffers to disk: $(
        awk -v a="${R[agent.ticks]}" -v b="${R[rsyslog.ticks]}" 'BEGIN { if (b == 0) print "n/a"; else if (a <= b) printf "met (%.2f)", a / b; else printf "not met (%.2f)", a / b }'
    )"
    ((STORE_N == WRITTEN && SINK_N == WRITTEN)) || echo "WARNING: not every line was delivered (agent $STORE_N, rsyslog $SINK_N, written $WRITTEN)"
    ((SINK_DISTINCT == SINK_N)) || echo "note: rsyslog delivered $SINK_N lines, $SINK_DISTINCT distinct"
    ((MACHINE_BUSY < 60)) || echo "note: the machine was $MACHINE_BUSY % busy during the window (other work, or the generator): CPU figures are noisy"
} | tee "$RUN_DIR/table.txt"
cp "$RUN_DIR/table.txt" "$RESULTS_DIR/logs-$TS.txt"

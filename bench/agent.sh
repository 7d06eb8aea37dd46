#!/usr/bin/env bash
# bench/agent.sh: the footprint of `rampart agent` against Debian's prometheus-node-exporter,
# on the same host, over the same wall-clock window, all running at once.
#
#   node_exporter, default collectors       scraped every INTERVAL s by this script (curl)
#   node_exporter, rampart's collectors     the same, --collector.disable-defaults plus the
#                                           collectors the agent emulates (crates/agent/src/host.rs)
#   rampart agent                           interval INTERVAL s: host metrics, a fake access
#                                           log (LOG_RATE JSON lines/s), disk buffer, remote
#                                           write to a real Prometheus started here
#
# For each: RSS at the end and peak RSS (VmRSS, VmHWM), the end's RSS split into anonymous
# memory (RssAnon: heap, stacks; what the process itself holds) and file pages (RssFile:
# the binary's code and read-only data, libraries), CPU seconds per minute over the
# window (utime + stime from /proc/PID/stat), and the series each one's /metrics exposes.
# Then asks the Prometheus whether the agent's heartbeat arrived.
#
# Usage:   bench/agent.sh
# Env:     SECONDS_TO_RUN=180 INTERVAL=15 LOG_RATE=20 SKIP_BUILD=0 RESULTS_DIR=<repo>/target/bench
#          RAMPART_BIN=<path> (default <target dir>/release/rampart; setting it skips the build)
#          RAMPART_LOG=<tracing filter for the agent; default "info">
# Output:  a table on stdout and in $RESULTS_DIR/agent-<timestamp>.txt; configs, logs and each
#          /metrics in $RESULTS_DIR/agent-<timestamp>/. See bench/README.md.
set -euo pipefail

export PATH="$PATH:/usr/sbin:/sbin"
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECONDS_TO_RUN=${SECONDS_TO_RUN:-180}
INTERVAL=${INTERVAL:-15}
LOG_RATE=${LOG_RATE:-20}
SKIP_BUILD=${SKIP_BUILD:-0}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ -n ${RAMPART_BIN:-} ]]; then SKIP_BUILD=1; fi
RAMPART_BIN=${RAMPART_BIN:-$TARGET_DIR/release/rampart}
RESULTS_DIR=${RESULTS_DIR:-$ROOT/target/bench}
case $RESULTS_DIR in /*) ;; *) RESULTS_DIR=$ROOT/$RESULTS_DIR ;; esac
NODE_EXPORTER=/usr/bin/prometheus-node-exporter
PROMETHEUS=/usr/bin/prometheus
INSTANCE=bench-agent
# What the agent emulates: host::collector_names() in crates/agent/src/host.rs, node_exporter
# 1.5's collectors of the same names (host.rs, kernel.rs, timex.rs, textfile.rs).
# Not `systemd`, which collector_names() has too: this machine does not run systemd, so
# both the agent's and node_exporter's would fail at once and measure nothing. On a booted
# host it costs far more than the rest (systemctl and systemd's own work: ARCHITECTURE.md,
# crates/agent's systemd.rs).
EMULATED=(cpu stat meminfo loadavg netdev filesystem time uname filefd entropy conntrack pressure vmstat diskstats sockstat softnet netstat netclass schedstat interrupts processes arp udp_queues tcpstat timex textfile)

log() { printf '[agent.sh] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

for v in SECONDS_TO_RUN INTERVAL LOG_RATE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
((SECONDS_TO_RUN >= 10)) || die "SECONDS_TO_RUN must be at least 10"
((INTERVAL >= 1 && INTERVAL <= 300)) || die "INTERVAL must be 1-300 (the agent's limits)"
((LOG_RATE >= 1 && LOG_RATE <= 10000)) || die "LOG_RATE must be 1-10000"

# --- tools -------------------------------------------------------------------------------

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

missing=()
[[ -x $NODE_EXPORTER ]] || missing+=(prometheus-node-exporter)
[[ -x $PROMETHEUS ]] || missing+=(prometheus)
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
command -v ss >/dev/null || missing+=(iproute2)
command -v getconf >/dev/null || missing+=(libc-bin)
install_missing "${missing[@]}"
[[ -x $NODE_EXPORTER ]] || die "$NODE_EXPORTER not found after installing prometheus-node-exporter"
[[ -x $PROMETHEUS ]] || die "$PROMETHEUS not found after installing prometheus"

NE_VERSION=$("$NODE_EXPORTER" --version 2>&1 | sed -n 1p)
PROM_VERSION=$("$PROMETHEUS" --version 2>&1 | sed -n 1p)
[[ $NE_VERSION == *"version 1.5."* ]] || log "warning: expected node_exporter 1.5 (what host.rs follows), found: $NE_VERSION"
[[ $PROM_VERSION == *"version 2.42."* ]] || log "warning: expected Prometheus 2.42, found: $PROM_VERSION"
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(getconf _NPROCESSORS_ONLN)

# --- build -------------------------------------------------------------------------------

if [[ $SKIP_BUILD != 1 ]]; then
    log "building rampart (release) into $TARGET_DIR"
    (cd "$ROOT" && cargo build --release -p rampart) >&2
fi
[[ -x $RAMPART_BIN ]] || die "$RAMPART_BIN not found; build failed? (or set RAMPART_BIN)"

# --- processes ---------------------------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rampart-agent-bench.XXXXXX")
declare -A LIVE=() # pid -> what, for every process this script started and has not reaped

alive() { # pid: running and not a zombie
    local line
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
    line=${line##*) }
    [[ ${line:0:1} != Z ]]
}

reap() { # pid...: wait (bounded) for each to exit, SIGKILL after 5 s, forget it
    local pid i
    for pid in "$@"; do
        for ((i = 0; i < 50; i++)); do
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

declare -A TAKEN=()
FREE_PORT=
free_port() { # -> FREE_PORT: a port nobody listens on in 20000-59999, not yet handed out
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % 40000))
        [[ -z ${TAKEN[$p]:-} ]] || continue
        port_in_use "$p" && continue
        TAKEN[$p]=1
        FREE_PORT=$p
        return 0
    done
    die "found no free port in 200 tries"
}

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

count_series() { # file -> sample lines (neither comments nor blank)
    grep -cv -e '^#' -e '^[[:space:]]*$' "$1" || true
}

prom_query() { # promql -> the result values, comma-separated ("none" if empty)
    local out
    out=$(curl -s --max-time 5 --data-urlencode "query=$1" "http://127.0.0.1:$PROM_PORT/api/v1/query" |
        jq -r '[.data.result[]? | .value[1]] | join(",")' 2>/dev/null || true)
    echo "${out:-none}"
}

now() { date +%s.%N; }

# --- setup -------------------------------------------------------------------------------

TS=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RESULTS_DIR"
RUN_DIR=$RESULTS_DIR/agent-$TS
mkdir -p "$RUN_DIR"
log "work dir $WORK; results in $RUN_DIR"

# A private copy: the workspace may be rebuilt while the benchmark runs.
mkdir -p "$WORK/bin"
cp "$RAMPART_BIN" "$WORK/bin/rampart"
RAMPART=$WORK/bin/rampart
RAMPART_VERSION=$("$RAMPART" --version 2>&1 | sed -n 1p)

free_port && PROM_PORT=$FREE_PORT
free_port && NE_ALL_PORT=$FREE_PORT
free_port && NE_MIN_PORT=$FREE_PORT
free_port && AGENT_PORT=$FREE_PORT
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# Prometheus: remote-write receiver only (no scrape jobs), the monitor's out-of-order window.
mkdir -p "$WORK/prom-data"
cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1m
storage:
  tsdb:
    out_of_order_time_window: 3h
EOF
start_bg prometheus "$WORK/prometheus.log" "$PROMETHEUS" \
    --config.file="$WORK/prometheus.yml" \
    --storage.tsdb.path="$WORK/prom-data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" \
    --web.enable-remote-write-receiver
PROM_PID=$START_PID
wait_for prometheus "$PROM_PID" "$WORK/prometheus.log" 30 curl -sf --max-time 1 "http://127.0.0.1:$PROM_PORT/-/ready"
log "prometheus on 127.0.0.1:$PROM_PORT (pid $PROM_PID)"

# The fake access log: LOG_RATE lines/s in four batches a second, the shape of
# rampart_telemetry::access_log::Entry; bounded by a deadline past the window's end.
ACCESS_LOG=$WORK/access.log
: >"$ACCESS_LOG"
log_writer() { # file lines-per-second end-epoch
    local f=$1 rate=$2 end=$3 per i n max batch line ts ms status method id dur
    local methods=(GET GET GET GET GET GET POST POST HEAD PUT)
    local statuses=(200 200 200 200 200 200 200 200 304 404 500 503)
    per=$(((rate + 3) / 4))
    export TZ=UTC
    max=$(((end - EPOCHSECONDS + 5) * 4))
    for ((n = 0; n < max && EPOCHSECONDS < end; n++)); do
        batch=""
        for ((i = 0; i < per; i++)); do
            printf -v ts '%(%Y-%m-%dT%H:%M:%S)T' -1
            ms=${EPOCHREALTIME#*.}
            method=${methods[RANDOM % ${#methods[@]}]}
            status=${statuses[RANDOM % ${#statuses[@]}]}
            id=$((RANDOM % 10000 + 1))
            printf -v dur '%d.%03d' $((RANDOM % 40)) $((RANDOM % 1000))
            printf -v line '{"time":"%s.%sZ","client":"127.0.0.1","method":"%s","host":"www.foobar.com","path":"/api/users/%d","status":%d,"bytes":%d,"duration_ms":%s,"backend":null,"tls":"TLSv1.3","proto":"HTTP/1.1","db":"replica"}\n' \
                "$ts" "${ms:0:3}" "$method" "$id" "$status" $((RANDOM % 2000 + 40)) "$dur"
            batch+=$line
        done
        printf '%s' "$batch" >>"$f"
        sleep 0.25
    done
}
WRITER_END=$((EPOCHSECONDS + SECONDS_TO_RUN + 120))
log_writer "$ACCESS_LOG" "$LOG_RATE" "$WRITER_END" </dev/null >"$WORK/writer.log" 2>&1 &
WRITER_PID=$!
LIVE[$WRITER_PID]="access log writer"

# The agent.
cat >"$WORK/agent.toml" <<EOF
[agent]
instance = "$INSTANCE"
interval = "${INTERVAL}s"
state_dir = "$WORK/agent-state"

[push]
url = "http://127.0.0.1:$PROM_PORT/api/v1/write"

[host]
enabled = true
root = "/"

[[access_log]]
service = "web"
path = "$ACCESS_LOG"

[listen]
metrics = "127.0.0.1:$AGENT_PORT"
allow_from = ["127.0.0.1/32"]
EOF
RAMPART_LOG=${RAMPART_LOG:-info} start_bg "rampart agent" "$WORK/agent.log" "$RAMPART" agent --config "$WORK/agent.toml"
AGENT_PID=$START_PID
agent_has_data() { curl -s --max-time 1 "http://127.0.0.1:$AGENT_PORT/metrics" | grep -q '^rampart_agent_heartbeat_timestamp_seconds'; }
wait_for "rampart agent" "$AGENT_PID" "$WORK/agent.log" 15 agent_has_data
log "rampart agent, /metrics on 127.0.0.1:$AGENT_PORT (pid $AGENT_PID)"

# Two node_exporters: the defaults, and only what the agent emulates.
start_bg "node_exporter (default)" "$WORK/node_exporter-default.log" "$NODE_EXPORTER" \
    --web.listen-address="127.0.0.1:$NE_ALL_PORT"
NE_ALL_PID=$START_PID
min_args=(--collector.disable-defaults)
for c in "${EMULATED[@]}"; do min_args+=("--collector.$c"); done
start_bg "node_exporter (emulated)" "$WORK/node_exporter-emulated.log" "$NODE_EXPORTER" \
    --web.listen-address="127.0.0.1:$NE_MIN_PORT" "${min_args[@]}"
NE_MIN_PID=$START_PID
wait_for "node_exporter (default)" "$NE_ALL_PID" "$WORK/node_exporter-default.log" 15 \
    curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:$NE_ALL_PORT/"
wait_for "node_exporter (emulated)" "$NE_MIN_PID" "$WORK/node_exporter-emulated.log" 15 \
    curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:$NE_MIN_PORT/"
log "node_exporter default on 127.0.0.1:$NE_ALL_PORT (pid $NE_ALL_PID), emulated collectors on 127.0.0.1:$NE_MIN_PORT (pid $NE_MIN_PID)"

# --- the window ----------------------------------------------------------------------------

declare -A ROW_PID=([ne_all]=$NE_ALL_PID [ne_min]=$NE_MIN_PID [agent]=$AGENT_PID)
declare -A C0=() C1=() R=()
for k in "${!ROW_PID[@]}"; do C0[$k]=$(cpu_ticks "${ROW_PID[$k]}"); done
T0=$(now)
START_EPOCH=$EPOCHSECONDS
LINES0=$(wc -l <"$ACCESS_LOG")
SCRAPES=$(((SECONDS_TO_RUN + INTERVAL - 1) / INTERVAL))
SCRAPE_FAILS=0
log "measuring for $SECONDS_TO_RUN s: $SCRAPES scrapes of each node_exporter, every $INTERVAL s"
for ((k = 0; k < SCRAPES; k++)); do
    for port in "$NE_ALL_PORT" "$NE_MIN_PORT"; do
        curl -s -o /dev/null --max-time 10 "http://127.0.0.1:$port/metrics" || SCRAPE_FAILS=$((SCRAPE_FAILS + 1))
    done
    for k2 in "${!ROW_PID[@]}"; do alive "${ROW_PID[$k2]}" || die "${LIVE[${ROW_PID[$k2]}]:-$k2} exited during the run"; done
    # Sleep until the next scrape (or the window's end), whole seconds, bounded.
    next=$((START_EPOCH + (k + 1) * INTERVAL))
    ((next > START_EPOCH + SECONDS_TO_RUN)) && next=$((START_EPOCH + SECONDS_TO_RUN))
    while ((EPOCHSECONDS < next)); do sleep 0.5; done
    log "$((EPOCHSECONDS - START_EPOCH)) s of $SECONDS_TO_RUN"
done
T1=$(now)
for k in "${!ROW_PID[@]}"; do
    pid=${ROW_PID[$k]}
    C1[$k]=$(cpu_ticks "$pid")
    R[$k.rss]=$(status_kb "$pid" VmRSS)
    R[$k.hwm]=$(status_kb "$pid" VmHWM)
    R[$k.anon]=$(status_kb "$pid" RssAnon)
    R[$k.file]=$(status_kb "$pid" RssFile)
    R[$k.total_ticks]=${C1[$k]}
done
LINES1=$(wc -l <"$ACCESS_LOG")
MINUTES=$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.4f", (b - a) / 60 }')

curl -s --max-time 10 "http://127.0.0.1:$NE_ALL_PORT/metrics" >"$RUN_DIR/metrics-node_exporter-default.txt" || true
curl -s --max-time 10 "http://127.0.0.1:$NE_MIN_PORT/metrics" >"$RUN_DIR/metrics-node_exporter-emulated.txt" || true
curl -s --max-time 10 "http://127.0.0.1:$AGENT_PORT/metrics" >"$RUN_DIR/metrics-agent.txt" || true
declare -A MFILE=([ne_all]=node_exporter-default [ne_min]=node_exporter-emulated [agent]=agent)
for k in "${!ROW_PID[@]}"; do
    f=$RUN_DIR/metrics-${MFILE[$k]}.txt
    R[$k.series]=$(count_series "$f")
    R[$k.node_series]=$(grep -c '^node_' "$f" || true)
done

# Did the agent really push?
Q_COUNT=$(prom_query 'count(rampart_agent_heartbeat_timestamp_seconds)')
Q_OVER=$(prom_query 'count_over_time(rampart_agent_heartbeat_timestamp_seconds[5m])')
Q_SERIES=$(prom_query "count({instance=\"$INSTANCE\"})")
Q_LOGLINES=$(prom_query "sum(rampart_log_lines_total{instance=\"$INSTANCE\",result=\"ok\"})")
AGENT_AGE=$(($(awk '{ printf "%d", $1 }' /proc/uptime) - $(awk '{ sub(/.*\) /, ""); split($0, f, " "); print f[20] }' "/proc/$AGENT_PID/stat") / CLK_TCK))
# One heartbeat at start, then one per interval; a 5m range holds at most 300/INTERVAL(+1).
if ((AGENT_AGE < 300)); then EXPECT_OVER=$((AGENT_AGE / INTERVAL + 1)); else EXPECT_OVER=$((300 / INTERVAL)); fi
agent_metric() { # name label-substring -> the value of the first matching sample
    { grep "^$1" "$RUN_DIR/metrics-agent.txt" | grep -F "$2" | awk '{ print $2; exit }'; } || true
}
PUSH_OK=$(agent_metric rampart_agent_pushes_total 'result="ok"')
PUSH_RETRY=$(agent_metric rampart_agent_pushes_total 'result="retryable_error"')
PUSH_PERM=$(agent_metric rampart_agent_pushes_total 'result="permanent_error"')
LOG_OK=$(agent_metric rampart_log_lines_total 'result="ok"')
LOG_BAD=$(agent_metric rampart_log_lines_total 'result="malformed"')
STATE_KB=$(du -sk "$WORK/agent-state" | cut -f1)

# --- report --------------------------------------------------------------------------------

for f in agent.toml prometheus.yml agent.log prometheus.log node_exporter-default.log node_exporter-emulated.log writer.log; do
    cp "$WORK/$f" "$RUN_DIR/" 2>/dev/null || true
done
tail -n 20 "$ACCESS_LOG" >"$RUN_DIR/access-log-tail.txt" 2>/dev/null || true
for k in "${!ROW_PID[@]}"; do
    R[$k.ticks]=$((C1[$k] - C0[$k]))
    R[$k.cpu_min]=$(awk -v d="${R[$k.ticks]}" -v t="$CLK_TCK" -v m="$MINUTES" 'BEGIN { printf "%.3f", d / t / m }')
    R[$k.cpu_total]=$(awk -v b="${R[$k.total_ticks]}" -v t="$CLK_TCK" 'BEGIN { printf "%.2f", b / t }')
    R[$k.rss_mb]=$(awk -v v="${R[$k.rss]}" 'BEGIN { printf "%.1f", v / 1024 }')
    R[$k.hwm_mb]=$(awk -v v="${R[$k.hwm]}" 'BEGIN { printf "%.1f", v / 1024 }')
    R[$k.anon_mb]=$(awk -v v="${R[$k.anon]}" 'BEGIN { printf "%.1f", v / 1024 }')
    R[$k.file_mb]=$(awk -v v="${R[$k.file]}" 'BEGIN { printf "%.1f", v / 1024 }')
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }
row() { # label key
    printf '%-40s %8s %9s %9s %9s %10s %11s %7s %7s\n' "$1" "${R[$2.rss_mb]}" "${R[$2.hwm_mb]}" \
        "${R[$2.anon_mb]}" "${R[$2.file_mb]}" \
        "${R[$2.cpu_min]}" "${R[$2.cpu_total]}" "${R[$2.series]}" "${R[$2.node_series]}"
}
ratio_row() { # label key
    printf '%-40s %8s %9s %9s %9s %10s\n' "$1" "$(ratio "${R[agent.rss]}" "${R[$2.rss]}")" \
        "$(ratio "${R[agent.hwm]}" "${R[$2.hwm]}")" "$(ratio "${R[agent.anon]}" "${R[$2.anon]}")" \
        "$(ratio "${R[agent.file]}" "${R[$2.file]}")" "$(ratio "${R[agent.ticks]}" "${R[$2.ticks]}")"
}
{
    echo
    echo "rampart agent vs prometheus-node-exporter: footprint on the same host, same window"
    echo "  window $(awk -v m="$MINUTES" 'BEGIN { printf "%.1f", m * 60 }') s; node_exporters scraped every $INTERVAL s by curl ($SCRAPES scrapes each, $SCRAPE_FAILS failed)"
    echo "  agent: interval ${INTERVAL}s, host metrics + access log ($((LINES1 - LINES0)) lines written in the window) + disk buffer + remote write"
    echo "  emulated collectors: ${EMULATED[*]}"
    echo "  $RAMPART_VERSION; $NE_VERSION; $PROM_VERSION"
    echo "  $NCPU CPUs, load average before: $LOAD_BEFORE; $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    printf '%-40s %8s %9s %9s %9s %10s %11s %7s %7s\n' "" "rss MiB" "peak MiB" "anon MiB" "file MiB" "cpu s/min" "cpu s total" "series" "node_*"
    row "node_exporter (default collectors)" ne_all
    row "node_exporter (rampart's collectors)" ne_min
    row "rampart agent (host + log + push)" agent
    echo
    printf '%-40s %8s %9s %9s %9s %10s\n' "ratio rampart agent / node_exporter" "rss" "peak rss" "anon" "file" "cpu"
    ratio_row "  default collectors" ne_all
    ratio_row "  rampart's collectors" ne_min
    echo
    echo "pushed to prometheus (127.0.0.1:$PROM_PORT):"
    kv() { printf '  %-66s %s\n' "$1" "$2"; }
    kv "count(rampart_agent_heartbeat_timestamp_seconds)" "$Q_COUNT"
    kv "count_over_time(rampart_agent_heartbeat_timestamp_seconds[5m])" "$Q_OVER (about $EXPECT_OVER expected)"
    kv "series with instance=\"$INSTANCE\"" "$Q_SERIES"
    kv "access log lines: pushed / agent's /metrics / written by the end" "${Q_LOGLINES%.*} / ${LOG_OK:-?} / $LINES1 (malformed ${LOG_BAD:-?})"
    kv "agent pushes: ok / retryable / permanent errors" "${PUSH_OK:-?} / ${PUSH_RETRY:-?} / ${PUSH_PERM:-?}"
    kv "agent state dir (buffer + log offsets)" "$STATE_KB KiB"
} | tee "$RUN_DIR/table.txt"
cp "$RUN_DIR/table.txt" "$RESULTS_DIR/agent-$TS.txt"
[[ $Q_COUNT == 1 ]] || log "warning: the agent's heartbeat is not in Prometheus; see $RUN_DIR/agent.log"

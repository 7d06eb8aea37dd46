#!/usr/bin/env bash
# bench/web.sh: the whole read path (HTTPS through lb1 to web1/web2 to the replica db2)
# against MariaDB's own point-select rate on the same replica, in the same run.
#
# Brings up the local topology from scratch (`rampart up --local -d`), seeds USERS users on
# the primary, waits for the replica, then alternates, ROUNDS times:
#   sysbench  oltp_point_select, SB_THREADS threads, over db2's unix socket -> queries/s
#   wrk       GET /api/users/{random id} through https://lb1:8443        -> requests/s
# and reports the medians, their ratio (https req/s / sysbench qps), wrk's p50/p99, and
# the CPU time each process (lb1, web1, web2, db2, db1) spent per request.
#
# Usage:   bench/web.sh
# Env:     DURATION=10 ROUNDS=3 USERS=10000 CONNS=32 WRK_THREADS=2 SB_THREADS=8 WARMUP=2
#          NET=77 STATE=/tmp/rampart-bench RESULTS_DIR=<repo>/target/bench SKIP_BUILD=0
#          PROFILE=0 (1: after the rounds, one extra wrk run under `perf record`)
# Output:  a table on stdout and in $RESULTS_DIR/web-<timestamp>.txt; raw wrk/sysbench
#          output, metrics and profiles in $RESULTS_DIR/web-<timestamp>/. See bench/README.md.
set -euo pipefail

export PATH="$PATH:/usr/sbin:/sbin"
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
USERS=${USERS:-10000}
CONNS=${CONNS:-32}
WRK_THREADS=${WRK_THREADS:-2}
SB_THREADS=${SB_THREADS:-8}
WARMUP=${WARMUP:-2}
NET=${NET:-77}
STATE=${STATE:-/tmp/rampart-bench}
PROFILE=${PROFILE:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RESULTS_DIR=${RESULTS_DIR:-$ROOT/target/bench}
case $RESULTS_DIR in /*) ;; *) RESULTS_DIR=$ROOT/$RESULTS_DIR ;; esac
HOST_HEADER=www.foobar.com
GOAL=0.5 # the aim: HTTPS req/s >= GOAL x sysbench point-select qps

log() { printf '[web.sh] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

for v in DURATION ROUNDS USERS CONNS WRK_THREADS SB_THREADS WARMUP NET PROFILE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
((DURATION >= 1)) || die "DURATION must be at least 1"
((ROUNDS >= 1)) || die "ROUNDS must be at least 1"
((USERS >= 1)) || die "USERS must be at least 1"
((CONNS >= WRK_THREADS && WRK_THREADS >= 1)) || die "need CONNS >= WRK_THREADS >= 1"
((SB_THREADS >= 1)) || die "SB_THREADS must be at least 1"
((NET >= 1 && NET <= 254)) || die "NET must be 1-254 (hosts get 127.NET.x.y)"
[[ $STATE == /* && $STATE != / ]] || die "STATE must be an absolute path other than /"
[[ -f $ROOT/bench/web.lua ]] || die "$ROOT/bench/web.lua is missing"

# MariaDB's root@localhost authenticates over the socket by the OS user (unix_socket), so
# seeding and sysbench use the OS user's name; as root that is MariaDB's root.
DB_USER=${DB_USER:-$(id -un)}

# --- tools -------------------------------------------------------------------------------

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_tools() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v sysbench >/dev/null || missing+=(sysbench)
    command -v mariadb >/dev/null || missing+=(mariadb-client-core)
    # What `rampart up` runs besides its own binary and MariaDB.
    command -v prometheus >/dev/null || missing+=(prometheus)
    command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
    command -v etcd >/dev/null || missing+=(etcd-server)
    command -v curl >/dev/null || missing+=(curl)
    command -v jq >/dev/null || missing+=(jq)
    command -v timeout >/dev/null || missing+=(coreutils)
    command -v getconf >/dev/null || missing+=(libc-bin)
    if ((PROFILE)); then command -v perf >/dev/null || missing+=(linux-perf); fi
    install_missing "${missing[@]}"
}
ensure_tools

NCPU=$(getconf _NPROCESSORS_ONLN)
CLK_TCK=$(getconf CLK_TCK)
WRK_VERSION=$( (wrk -v 2>&1 || true) | sed -n 1p)
SB_VERSION=$(sysbench --version 2>&1 | sed -n 1p)

# --- build -------------------------------------------------------------------------------

if [[ $SKIP_BUILD != 1 ]]; then
    log "building rampart (release)"
    (cd "$ROOT" && cargo build --release -p rampart) >&2
fi
RAMPART=$TARGET_DIR/release/rampart
[[ -x $RAMPART ]] || die "$RAMPART not found; build failed?"

# --- processes ---------------------------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rampart-web-bench.XXXXXX")
# Run a private copy: the workspace may be rebuilt while the benchmark runs, and
# `rampart up` starts lb1/web1/web2 from the binary it was itself run as.
cp "$RAMPART" "$WORK/rampart"
RAMPART=$WORK/rampart
RAMPART_VERSION=$("$RAMPART" --version 2>&1 | sed -n 1p)
cp "$ROOT/bench/web.lua" "$WORK/web.lua"

declare -A LIVE=() # pid -> what, for every process this script started and has not reaped
UP=0               # 1 once `rampart up` was attempted: cleanup then runs `rampart down --purge`

alive() { # pid: running and not a zombie
    local line
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
    line=${line##*) }
    [[ ${line:0:1} != Z ]]
}

stop() { # pid...: SIGTERM, wait up to 5 s, then SIGKILL; forget them
    local pid i
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "$@"; do
        for ((i = 0; i < 50; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        alive "$pid" && kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null || true
        unset "LIVE[$pid]"
    done
}

rampart_down() {
    timeout --kill-after=10 120 "$RAMPART" down --purge --state "$STATE" >>"$WORK/down.log" 2>&1
}

cleanup() {
    local rc=$? pids=("${!LIVE[@]}")
    trap - EXIT INT TERM
    if ((${#pids[@]})); then stop "${pids[@]}"; fi
    if ((UP)); then
        log "stopping the topology (rampart down --purge --state $STATE)"
        rampart_down || {
            log "rampart down failed:"
            tail -n 20 "$WORK/down.log" >&2 || true
        }
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

run_bounded() { # out limit-seconds cmd...: run in the background (so traps can stop it), wait
    local out=$1 limit=$2 rc=0 pid
    shift 2
    timeout --kill-after=5 "$limit" "$@" >"$out" 2>&1 &
    pid=$!
    LIVE[$pid]=$1
    wait "$pid" || rc=$?
    unset "LIVE[$pid]"
    return "$rc"
}

proc_ticks() { # pid -> utime+stime of the process (all its threads), in clock ticks
    local line fields
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || {
        echo ""
        return
    }
    read -ra fields <<<"${line##*) }"
    # After "comm)": field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    echo $((fields[11] + fields[12]))
}

cpu_all() { # -> "busy steal total" jiffies over all CPUs from /proc/stat
    awk '$1 == "cpu" { busy = $2 + $3 + $4 + $7 + $8; print busy, $9, busy + $5 + $6 + $9 }' /proc/stat
}

now() { date +%s.%N; }

median() { # numbers (empty ones ignored) -> their median, or empty
    printf '%s\n' "$@" | awk 'NF' | sort -g | awk '{ a[NR] = $1 }
        END { if (NR == 0) print ""; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.6g\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

to_ms() { # wrk latency such as 812.00us, 1.23ms, 2.01s -> milliseconds
    awk -v v="$1" 'BEGIN {
        if (v == "") { print ""; exit }
        if (v ~ /us$/) { sub(/us$/, "", v); v = v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v) }
        else if (v ~ /s$/) { sub(/s$/, "", v); v = v * 1000 }
        else if (v ~ /m$/) { sub(/m$/, "", v); v = v * 60000 }
        printf "%.3f", v }'
}

# --- setup -------------------------------------------------------------------------------

TS=$(date -u +%Y%m%dT%H%M%SZ)
NOTES=()
mkdir -p "$RESULTS_DIR"
RUN_DIR=$RESULTS_DIR/web-$TS
TABLE_OUT=$RESULTS_DIR/web-$TS.txt
mkdir -p "$RUN_DIR"
log "results in $RUN_DIR"

# Start from nothing, so that every run measures the same state.
if [[ -e $STATE ]]; then
    # `down --purge` deletes the directory: only ever do that to a rampart state directory.
    if [[ -n $(ls -A "$STATE" 2>/dev/null) && ! -d $STATE/hosts && ! -d $STATE/certs ]]; then
        die "$STATE exists and does not look like a rampart state directory (no hosts/ or certs/); not purging it"
    fi
    log "removing the previous benchmark state (rampart down --purge --state $STATE)"
    rampart_down || {
        tail -n 20 "$WORK/down.log" >&2
        die "rampart down --purge --state $STATE failed"
    }
    [[ ! -e $STATE ]] || die "$STATE still exists after rampart down --purge"
fi

# Is anything else using the machine? (Other processes and steal skew every number.)
read -r b0 s0 t0 < <(cpu_all)
sleep 1
read -r b1 s1 t1 < <(cpu_all)
IDLE_BUSY=$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) 'BEGIN{if (t>0) printf "%.0f", 100*b/t; else print 0}')
IDLE_STEAL=$(awk -v s=$((s1 - s0)) -v t=$((t1 - t0)) 'BEGIN{if (t>0) printf "%.0f", 100*s/t; else print 0}')
if ((IDLE_BUSY > 10 || IDLE_STEAL > 10)); then
    NOTES+=("before the run the machine was ${IDLE_BUSY}% busy and ${IDLE_STEAL}% stolen: results are noisy")
    log "warning: ${NOTES[-1]}"
fi

log "rampart up --local -d --net $NET --state $STATE"
UP=1
t_up=$(now)
run_bounded "$RUN_DIR/up.txt" 300 "$RAMPART" up --local -d --net "$NET" --state "$STATE" || {
    tail -n 30 "$RUN_DIR/up.txt" >&2
    die "rampart up failed (output above and in $RUN_DIR/up.txt)"
}
log "up in $(awk -v a="$t_up" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}') s"
"$RAMPART" status --json --state "$STATE" >"$RUN_DIR/status.json" ||
    die "rampart status --json failed"

svc() { # host service jq-path -> value from status.json
    jq -r --arg h "$1" --arg s "$2" \
        ".hosts[] | select(.name == \$h) | .services[] | select(.name == \$s) | $3 // empty" \
        "$RUN_DIR/status.json"
}
addr() { jq -r --arg h "$1" '.hosts[] | select(.name == $h) | .addresses[0] // empty' "$RUN_DIR/status.json"; }

declare -A PID=() ADMIN=()
PROCS=(lb1 web1 web2 db2 db1)
for h in lb1 web1 web2; do
    s=web
    [[ $h == lb1 ]] && s=lb
    PID[$h]=$(svc "$h" "$s" .pid)
    ADMIN[$h]="$(addr "$h"):$(svc "$h" "$s" .ports.admin)"
done
# The mariadb service's pid is its keeper, which runs mariadbd as a child; measure the
# server itself (the keeper's /status names it), or the service when there is no keeper.
for h in db1 db2; do
    PID[$h]=$(jq -r --arg h "$h" '.hosts[] | select(.name == $h) | .database.server_pid // empty' "$RUN_DIR/status.json")
    [[ -n ${PID[$h]} ]] || PID[$h]=$(svc "$h" mariadb .pid)
done
for h in "${PROCS[@]}"; do
    [[ ${PID[$h]} =~ ^[0-9]+$ ]] && alive "${PID[$h]}" || die "no running process for $h in rampart status --json"
done
LB_ADDR=$(addr lb1)
LB_PORT=$(svc lb1 lb .ports.https)
[[ $LB_ADDR == 127.* && -n $LB_PORT ]] || die "unexpected lb1 address '$LB_ADDR:$LB_PORT' (only 127.0.0.0/8 is allowed)"
CA=$(jq -r '.ca_cert // empty' "$RUN_DIR/status.json")
[[ -s $CA ]] || CA=$STATE/certs/ca.pem
SOCK1=$STATE/hosts/db1/mysqld.sock
SOCK2=$STATE/hosts/db2/mysqld.sock
[[ -S $SOCK1 && -S $SOCK2 ]] || die "MariaDB sockets not found: $SOCK1 $SOCK2"
log "lb1 $LB_ADDR:$LB_PORT (pid ${PID[lb1]}), web1 pid ${PID[web1]}, web2 pid ${PID[web2]}, db1 pid ${PID[db1]}, db2 pid ${PID[db2]}"

sql() { # socket sql...: run as the admin user over the socket, tab-separated, no headers
    local sock=$1
    shift
    timeout 120 mariadb --no-defaults --socket="$sock" -u"$DB_USER" --batch --skip-column-names -e "$*"
}
sql "$SOCK1" "SELECT 1" >/dev/null 2>"$WORK/sql.err" || {
    cat "$WORK/sql.err" >&2
    die "cannot log in to db1 as '$DB_USER' over $SOCK1 (unix_socket auth; run as root or set DB_USER)"
}

wait_replica() { # what: wait (bounded, 60 s) until db2 has applied everything db1 has logged
    local pos r
    pos=$(sql "$SOCK1" "SELECT @@gtid_binlog_pos")
    r=$(sql "$SOCK2" "SELECT MASTER_GTID_WAIT('$pos', 60)")
    [[ $r == 0 ]] || die "db2 did not reach db1's GTID position $pos within 60 s ($1)"
}

# --- data --------------------------------------------------------------------------------

n=$(sql "$SOCK1" "SELECT COUNT(*) FROM foobar.users")
((n == 0)) || die "foobar.users already has $n rows on a fresh state"
log "seeding $USERS users on db1"
t_seed=$(now)
for ((lo = 1; lo <= USERS; lo += 100000)); do
    hi=$((lo + 99999 < USERS ? lo + 99999 : USERS))
    sql "$SOCK1" "INSERT INTO foobar.users (name, email, created_at)
        SELECT CONCAT('user', seq), CONCAT('user', seq, '@example.com'), NOW(6) FROM foobar.seq_${lo}_to_${hi}"
done
wait_replica "seeding users"
read -r n ID_LO ID_HI < <(sql "$SOCK2" "SELECT COUNT(*), MIN(id), MAX(id) FROM foobar.users")
((n == USERS)) || die "db2 has $n users, expected $USERS"
((ID_HI - ID_LO + 1 == USERS)) || die "user ids are not contiguous ($ID_LO..$ID_HI for $USERS rows; auto_increment_increment?)"
log "db2 has users $ID_LO..$ID_HI ($(awk -v a="$t_seed" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}') s)"

SB_COMMON=(oltp_point_select --db-driver=mysql --mysql-user="$DB_USER" --mysql-db=sbtest
    --tables=1 --table-size="$USERS")
log "sysbench prepare on db1 (sbtest, 1 table of $USERS rows)"
sql "$SOCK1" "CREATE DATABASE sbtest"
run_bounded "$RUN_DIR/sysbench-prepare.txt" 600 sysbench "${SB_COMMON[@]}" --mysql-socket="$SOCK1" prepare || {
    tail -n 20 "$RUN_DIR/sysbench-prepare.txt" >&2
    die "sysbench prepare failed"
}
wait_replica "sysbench prepare"
n=$(sql "$SOCK2" "SELECT COUNT(*) FROM sbtest.sbtest1")
((n == USERS)) || die "db2 has $n rows in sbtest.sbtest1, expected $USERS"

# --- sanity check ------------------------------------------------------------------------

https_get() { # id headers-file body-file -> HTTP status (000 on failure)
    curl -sS --max-time 5 --cacert "$CA" --resolve "$HOST_HEADER:$LB_PORT:$LB_ADDR" \
        -D "$2" -o "$3" -w '%{http_code}' "https://$HOST_HEADER:$LB_PORT/api/users/$1" 2>>"$WORK/curl.err" || echo 000
}
hdr() { awk -v k="$1" '{ sub(/\r$/, "") } tolower($0) ~ "^" k ":" { sub(/^[^:]*: */, ""); v = $0 } END { print v }' "$2"; }

# The web servers send reads to the replica once their first health check saw it usable;
# wait (up to 10 s) for a random id to come back 200 from the replica, then check a few more.
ok=0 served=""
for ((i = 0; i < 50; i++)); do
    id=$((ID_LO + (RANDOM * 32768 + RANDOM) % USERS))
    code=$(https_get "$id" "$WORK/h" "$WORK/b")
    role=$(hdr x-db-role "$WORK/h")
    if [[ $code == 200 && $role == replica ]] && grep -q "\"id\":$id[,}]" "$WORK/b"; then
        ok=$((ok + 1))
        served+=" $(hdr x-served-by "$WORK/h")"
        ((ok >= 4)) && break
    else
        ok=0
        sleep 0.2
    fi
done
cp "$WORK/h" "$RUN_DIR/response-headers.txt" 2>/dev/null || true
if ((ok < 4)); then
    log "---- last response (GET /api/users/$id): status $code ----"
    cat "$WORK/h" "$WORK/b" >&2 2>/dev/null || true
    tail -n 5 "$WORK/curl.err" >&2 2>/dev/null || true
    die "sanity check failed: GET https://$HOST_HEADER:$LB_PORT/api/users/<id> did not return 200 with x-db-role: replica within 10 s"
fi
log "sanity check: 4 random ids returned 200 from the replica, served by:$served"
[[ $served == *web1* && $served == *web2* ]] ||
    NOTES+=("sanity check: 4 requests did not reach both web servers (x-served-by:$served)")

metric() { # host:port name -> "label-set value" lines of that metric
    curl -s --max-time 3 "http://$1/metrics" 2>/dev/null |
        awk -v n="$2" 'index($1, n "{") == 1 || $1 == n { print }' || true
}
metric_sum() { # host:port name [label-substring] -> sum of matching samples
    metric "$1" "$2" | awk -v f="${3:-}" 'index($1, f) { s += $NF } END { printf "%d", s }'
}

# --- runs --------------------------------------------------------------------------------

declare -A R=() # "<key>@<round>" -> value

snapshot() { # -> "t busy steal total ticks(lb1) ticks(web1) ... " on one line
    local h line
    line="$(now) $(cpu_all)"
    for h in "${PROCS[@]}"; do line+=" $(proc_ticks "${PID[$h]}")"; done
    echo "$line"
}

account() { # kind round count snap0 snap1: CPU per request/query over the run
    local kind=$1 r=$2 count=$3 i h sum=0 d
    local -a a b
    read -ra a <<<"$4"
    read -ra b <<<"$5"
    local wall db=$((b[1] - a[1])) ds=$((b[2] - a[2])) dt=$((b[3] - a[3]))
    wall=$(awk -v x="${a[0]}" -v y="${b[0]}" 'BEGIN{printf "%.3f", y-x}')
    R[$kind.busy@$r]=$(awk -v b="$db" -v t="$dt" 'BEGIN{if (t>0) printf "%.0f", 100*b/t}')
    R[$kind.steal@$r]=$(awk -v s="$ds" -v t="$dt" 'BEGIN{if (t>0) printf "%.0f", 100*s/t}')
    i=4
    for h in "${PROCS[@]}"; do
        if [[ -n ${a[i]:-} && -n ${b[i]:-} ]]; then
            d=$((b[i] - a[i]))
            sum=$((sum + d))
            R[$kind.cpu_$h@$r]=$(awk -v t="$d" -v n="$count" -v hz="$CLK_TCK" 'BEGIN{if (n>0) printf "%.1f", t/hz*1e6/n}')
            R[$kind.pct_$h@$r]=$(awk -v t="$d" -v w="$wall" -v hz="$CLK_TCK" 'BEGIN{if (w>0) printf "%.0f", 100*t/hz/w}')
        else
            NOTES+=("$kind round $r: $h (pid ${PID[$h]}) was gone at the end of the run")
        fi
        i=$((i + 1))
    done
    R[$kind.cpu_all@$r]=$(awk -v t="$db" -v n="$count" -v hz="$CLK_TCK" 'BEGIN{if (n>0) printf "%.1f", t/hz*1e6/n}')
    R[$kind.cpu_other@$r]=$(awk -v t="$((db - sum))" -v n="$count" -v hz="$CLK_TCK" 'BEGIN{if (n>0) printf "%.1f", t/hz*1e6/n}')
}

run_sysbench() { # round (0 = warm-up) seconds
    local r=$1 secs=$2 out s0 s1 q qps lat95 avg errs
    out=$RUN_DIR/sysbench-r$r.txt
    ((r == 0)) && out=$RUN_DIR/sysbench-warmup.txt
    s0=$(snapshot)
    run_bounded "$out" $((secs + 60)) sysbench "${SB_COMMON[@]}" --mysql-socket="$SOCK2" \
        --threads="$SB_THREADS" --time="$secs" --events=0 --rand-type=uniform --percentile=99 \
        --report-interval=0 run || NOTES+=("sysbench run $r exited with an error (see $out)")
    s1=$(snapshot)
    ((r == 0)) && return 0
    q=$(awk '/^ *queries:/ { print $2; exit }' "$out")
    qps=$(awk '/^ *queries:/ { gsub(/\(/, "", $3); print $3; exit }' "$out")
    avg=$(awk '/^ *avg:/ { print $2; exit }' "$out")
    lat95=$(awk '/^ *99th percentile:/ { print $3; exit }' "$out")
    errs=$(awk '/^ *ignored errors:/ { print $3; exit }' "$out")
    R[sb.qps@$r]=$qps
    R[sb.avg@$r]=$avg
    R[sb.p99@$r]=$lat95
    [[ -z $errs || $errs == 0 ]] || NOTES+=("sysbench round $r: $errs ignored errors")
    [[ -n $q && $q -gt 0 ]] || {
        NOTES+=("sysbench round $r: no queries (see $out)")
        return 0
    }
    account sb "$r" "$q" "$s0" "$s1"
    log "sysbench round $r: ${qps} queries/s, avg ${avg} ms, p99 ${lat95} ms; db2 ${R[sb.cpu_db2@$r]} us CPU/query (${R[sb.pct_db2@$r]}% of a core); machine ${R[sb.busy@$r]}% busy, ${R[sb.steal@$r]}% steal"
}

run_wrk() { # round (0 = warm-up) seconds [out]
    local r=$1 secs=$2 out=${3:-} s0 s1 reqs rps non2xx sock
    [[ -n $out ]] || out=$RUN_DIR/wrk-r$r.txt
    ((r == 0)) && [[ -z ${3:-} ]] && out=$RUN_DIR/wrk-warmup.txt
    s0=$(snapshot)
    run_bounded "$out" $((secs + 30)) wrk -t"$WRK_THREADS" -c"$CONNS" -d"${secs}s" --latency --timeout 5s \
        -H "Host: $HOST_HEADER" -s "$WORK/web.lua" "https://$LB_ADDR:$LB_PORT/api/users/$ID_LO" -- "$ID_LO" "$ID_HI" ||
        NOTES+=("wrk run $r exited with an error (see $out)")
    s1=$(snapshot)
    ((r == 0)) && return 0
    reqs=$(awk '/ requests in /{ print $1; exit }' "$out")
    rps=$(awk '/^Requests\/sec:/{ print $2; exit }' "$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/{ print $NF; exit }' "$out")
    sock=$(grep -m1 'Socket errors:' "$out" | sed 's/^ *//' || true)
    R[wrk.rps@$r]=$rps
    R[wrk.reqs@$r]=$reqs
    R[wrk.p50@$r]=$(to_ms "$(awk '$1=="50%"{ print $2; exit }' "$out")")
    R[wrk.p99@$r]=$(to_ms "$(awk '$1=="99%"{ print $2; exit }' "$out")")
    R[wrk.non2xx@$r]=${non2xx:-0}
    R[wrk.sockerr@$r]=$sock
    if [[ -n $non2xx || -n $sock ]]; then
        NOTES+=("WRK ERRORS round $r: ${non2xx:+non-2xx/3xx responses: $non2xx }$sock")
        log "WARNING: wrk round $r had errors: ${non2xx:+non-2xx/3xx responses: $non2xx }$sock"
    fi
    [[ -n $reqs && $reqs -gt 0 ]] || {
        NOTES+=("wrk round $r: no requests completed (see $out)")
        return 0
    }
    account wrk "$r" "$reqs" "$s0" "$s1"
    log "wrk round $r: ${rps} req/s, p50 ${R[wrk.p50@$r]} ms, p99 ${R[wrk.p99@$r]} ms; CPU us/req lb1 ${R[wrk.cpu_lb1@$r]} web1 ${R[wrk.cpu_web1@$r]} web2 ${R[wrk.cpu_web2@$r]} db2 ${R[wrk.cpu_db2@$r]} all ${R[wrk.cpu_all@$r]}; machine ${R[wrk.busy@$r]}% busy, ${R[wrk.steal@$r]}% steal"
}

READS0=()
for h in web1 web2; do READS0+=("$(metric_sum "${ADMIN[$h]}" rampart_web_db_reads_total 'role="replica"')"); done

if ((WARMUP > 0)); then
    log "warm-up: ${WARMUP} s of sysbench and ${WARMUP} s of wrk (not measured)"
    run_sysbench 0 "$WARMUP"
    run_wrk 0 "$WARMUP"
fi

# Alternate the two so that drift in the machine (other load, steal) hits both alike.
for ((r = 1; r <= ROUNDS; r++)); do
    run_sysbench "$r" "$DURATION"
    run_wrk "$r" "$DURATION"
done

# Where the reads went: every web server's counters, and the load balancer's by backend.
for h in web1 web2; do
    metric "${ADMIN[$h]}" rampart_web_db_reads_total >"$RUN_DIR/db-reads-$h.txt"
    curl -s --max-time 3 "http://${ADMIN[$h]}/metrics" >"$RUN_DIR/metrics-$h.txt" 2>/dev/null || true
done
curl -s --max-time 3 "http://${ADMIN[lb1]}/metrics" >"$RUN_DIR/metrics-lb1.txt" 2>/dev/null || true
i=0
for h in web1 web2; do
    R[$h.replica_reads]=$(metric_sum "${ADMIN[$h]}" rampart_web_db_reads_total 'role="replica"')
    R[$h.primary_reads]=$(metric_sum "${ADMIN[$h]}" rampart_web_db_reads_total 'role="primary"')
    R[$h.replica_reads_delta]=$((${R[$h.replica_reads]} - ${READS0[i]:-0}))
    R[$h.lb_2xx]=$(awk -v b="backend=\"$h\"" 'index($1, "rampart_lb_requests_total{") == 1 && index($1, b) && index($1, "code_class=\"2xx\"") { s += $NF } END { printf "%d", s }' "$RUN_DIR/metrics-lb1.txt")
    i=$((i + 1))
done
PRIMARY_READS=$((${R[web1.primary_reads]} + ${R[web2.primary_reads]}))
((PRIMARY_READS == 0)) ||
    NOTES+=("$PRIMARY_READS reads went to the primary instead of the replica (replica unusable or lagging?)")

# Optional profile: one more wrk run (not part of the results) with perf on lb1, web1, db2.
if ((PROFILE)); then
    log "profiling: wrk for ${DURATION} s with perf record on lb1, web1 and db2"
    perf_pids=()
    for h in lb1 web1 db2; do
        perf record -q -e cpu-clock -F 999 -g -p "${PID[$h]}" -o "$RUN_DIR/perf-$h.data" -- sleep "$DURATION" \
            >"$RUN_DIR/perf-record-$h.log" 2>&1 &
        LIVE[$!]="perf $h"
        perf_pids+=($!)
    done
    run_wrk 0 "$DURATION" "$RUN_DIR/wrk-profile.txt"
    for p in "${perf_pids[@]}"; do
        wait "$p" 2>/dev/null || true
        unset "LIVE[$p]"
    done
    for h in lb1 web1 db2; do
        [[ -s $RUN_DIR/perf-$h.data ]] || continue
        timeout 300 perf report -i "$RUN_DIR/perf-$h.data" --no-children --sort dso,sym --stdio -g none \
            >"$RUN_DIR/perf-$h-symbols.txt" 2>/dev/null || true
        timeout 300 perf report -i "$RUN_DIR/perf-$h.data" --no-children --sort dso --stdio -g none \
            >"$RUN_DIR/perf-$h-dso.txt" 2>/dev/null || true
        timeout 300 perf report -i "$RUN_DIR/perf-$h.data" --no-children --sort sym --stdio --percent-limit 2 \
            >"$RUN_DIR/perf-$h-callgraph.txt" 2>/dev/null || true
        timeout 300 perf report -i "$RUN_DIR/perf-$h.data" --children --sort sym --stdio -g none \
            >"$RUN_DIR/perf-$h-children.txt" 2>/dev/null || true
    done
fi

# Warnings and errors the services logged during the run.
for h in lb1 web1 web2; do
    s=web
    [[ $h == lb1 ]] && s=lb
    f=$(svc "$h" "$s" .log)
    [[ -f $f ]] || continue
    cp "$f" "$RUN_DIR/$h.log"
    n=$(grep -c -E ' (WARN|ERROR) ' "$f" || true)
    ((${n:-0} == 0)) || NOTES+=("$h log: $n warning/error lines, e.g.: $(grep -m1 -E ' (WARN|ERROR) ' "$f" | cut -c1-200)")
done

# --- report ------------------------------------------------------------------------------

for key in sb.qps sb.avg sb.p99 sb.busy sb.steal wrk.rps wrk.p50 wrk.p99 wrk.busy wrk.steal \
    wrk.cpu_all wrk.cpu_other sb.cpu_all sb.cpu_other \
    $(for h in "${PROCS[@]}"; do echo "wrk.cpu_$h wrk.pct_$h sb.cpu_$h sb.pct_$h"; done); do
    vals=()
    for ((r = 1; r <= ROUNDS; r++)); do vals+=("${R[$key@$r]:-}"); done
    R[$key]=$(median "${vals[@]}")
done
ratio() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN{ if (a=="" || b=="" || b+0==0) print ""; else printf "%.2f", a/b }'; }
for ((r = 1; r <= ROUNDS; r++)); do R[ratio@$r]=$(ratio "${R[wrk.rps@$r]:-}" "${R[sb.qps@$r]:-}"); done
R[ratio]=$(ratio "${R[wrk.rps]:-}" "${R[sb.qps]:-}")
non2xx=0 sockerrs=""
for ((r = 1; r <= ROUNDS; r++)); do
    non2xx=$((non2xx + ${R[wrk.non2xx@$r]:-0}))
    [[ -z ${R[wrk.sockerr@$r]:-} ]] || sockerrs+="${sockerrs:+; }r$r: ${R[wrk.sockerr@$r]}"
done
if [[ -n ${R[ratio]} ]] && awk -v a="${R[ratio]}" -v g="$GOAL" 'BEGIN{exit !(a >= g)}'; then
    VERDICT="met"
else
    VERDICT="NOT met"
fi

fmt() { # value -> value or n/a
    local v=${1:-}
    echo "${v:-n/a}"
}
row() { # label key
    local line r
    line=$(printf '%-34s' "$1")
    for ((r = 1; r <= ROUNDS; r++)); do line+=$(printf ' %10s' "$(fmt "${R[$2@$r]:-}")"); done
    line+=$(printf ' %10s' "$(fmt "${R[$2]:-}")")
    echo "$line"
}

{
    set +e # best effort from here: print whatever can be printed
    echo
    echo "rampart read path vs MariaDB point selects, same replica (db2), same run"
    echo "  https: wrk -t$WRK_THREADS -c$CONNS -d${DURATION}s, GET /api/users/{uniform random id in $ID_LO..$ID_HI} via lb1 $LB_ADDR:$LB_PORT -> web1/web2 -> db2"
    echo "  sysbench oltp_point_select --threads=$SB_THREADS --time=$DURATION --rand-type=uniform, $USERS rows, db2's unix socket"
    echo "  $NCPU CPUs shared by everything (wrk, sysbench, lb1, web1, web2, db1, db2); $ROUNDS rounds alternating sysbench, wrk"
    echo "  $RAMPART_VERSION; $SB_VERSION; $WRK_VERSION; $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    line=$(printf '%-34s' "")
    for ((r = 1; r <= ROUNDS; r++)); do line+=$(printf ' %10s' "round $r"); done
    echo "$line$(printf ' %10s' median)"
    row "sysbench point selects/s" sb.qps
    row "https req/s (through lb1)" wrk.rps
    row "ratio https/sysbench" ratio
    row "wrk p50 ms" wrk.p50
    row "wrk p99 ms" wrk.p99
    row "sysbench avg ms" sb.avg
    row "sysbench p99 ms" sb.p99
    echo "CPU us per https request:"
    for h in "${PROCS[@]}"; do
        label="  $h"
        [[ $h == db2 ]] && label="  db2 mariadbd (replica)"
        [[ $h == db1 ]] && label="  db1 mariadbd (primary)"
        row "$label" "wrk.cpu_$h"
    done
    row "  rest (wrk, kernel, others)" wrk.cpu_other
    row "  whole machine" wrk.cpu_all
    echo "CPU % of one core during wrk:"
    for h in "${PROCS[@]}"; do row "  $h" "wrk.pct_$h"; done
    echo "CPU us per sysbench query:"
    row "  db2 mariadbd" sb.cpu_db2
    row "  rest (sysbench, kernel, others)" sb.cpu_other
    row "  whole machine" sb.cpu_all
    row "machine busy % (wrk run)" wrk.busy
    row "machine steal % (wrk run)" wrk.steal
    row "machine busy % (sysbench run)" sb.busy
    row "machine steal % (sysbench run)" sb.steal
    echo
    printf '%-34s %s\n' "wrk non-2xx/3xx responses" "$non2xx"
    printf '%-34s %s\n' "wrk socket errors" "${sockerrs:-none}"
    for h in web1 web2; do
        printf '%-34s %s\n' "$h db reads replica/primary" "${R[$h.replica_reads]}/${R[$h.primary_reads]} (replica +${R[$h.replica_reads_delta]} since the warm-up; lb1 sent it ${R[$h.lb_2xx]} 2xx)"
    done
    echo
    printf 'goal: https req/s >= %s x sysbench qps: %s (median ratio %s)\n' "$GOAL" "$VERDICT" "$(fmt "${R[ratio]}")"
    if ((${#NOTES[@]})); then
        echo
        echo "notes:"
        for n in "${NOTES[@]}"; do echo "  $n"; done
    fi
    if ((PROFILE)); then
        echo
        echo "profile (extra wrk run, not in the table): $(awk '/^Requests\/sec:/{ print $2 " req/s"; exit }' "$RUN_DIR/wrk-profile.txt" 2>/dev/null)"
        for h in lb1 web1 db2; do
            f=$RUN_DIR/perf-$h-symbols.txt
            [[ -s $f ]] || continue
            echo "  $h: $(awk '/^ +[0-9.]+%/ { printf "%s%s %s", sep, $1, $2; sep = ", " }' "$RUN_DIR/perf-$h-dso.txt")"
            echo "  top symbols in $h (self time):"
            # awk, not head: head would end the pipe early (SIGPIPE, and pipefail).
            awk '/^ +[0-9.]+%/ && n++ < 12 { sub(/^ */, "    "); print substr($0, 1, 130) }' "$f"
        done
    fi
    echo
    echo "raw output: $RUN_DIR"
} | tee "$TABLE_OUT"
cp "$TABLE_OUT" "$RUN_DIR/table.txt"
log "wrote $TABLE_OUT"

#!/usr/bin/env bash
# bench/scale.sh: HTTPS reads through the load balancer with 1, 2 and 3 web servers on
# this machine, in one run of the local topology (loopback, no root needed), scaled with
# `rampart scale web=N` between the measurements: the same data, replica and load
# balancer each time.
#
# Brings up the local topology from a topology file with one web server and one replica,
# seeds USERS users, then for each N in COUNTS: `rampart scale web=N`, a warm-up, and
# ROUNDS wrk runs of GET /api/users/{random id} (bench/web.lua) through lb1. Reports the
# median requests/s, p50 and p99 per N, and each N's ratio to the first.
#
# Usage:   bench/scale.sh
# Env:     COUNTS="1 2 3" DURATION=10 ROUNDS=3 USERS=10000 CONNS=32 WRK_THREADS=2
#          WARMUP=2 NET=78 STATE=/tmp/rampart-scale-bench RESULTS_DIR=<repo>/target/bench
#          SKIP_BUILD=0
# Output:  a table on stdout and in $RESULTS_DIR/scale-<timestamp>.txt; wrk's output in
#          $RESULTS_DIR/scale-<timestamp>/. Traffic goes to 127.0.0.0/8 only.
set -euo pipefail

export PATH="$PATH:/usr/sbin:/sbin"
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
COUNTS=${COUNTS:-1 2 3}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
USERS=${USERS:-10000}
CONNS=${CONNS:-32}
WRK_THREADS=${WRK_THREADS:-2}
WARMUP=${WARMUP:-2}
NET=${NET:-78}
STATE=${STATE:-/tmp/rampart-scale-bench}
SKIP_BUILD=${SKIP_BUILD:-0}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RESULTS_DIR=${RESULTS_DIR:-$ROOT/target/bench}
case $RESULTS_DIR in /*) ;; *) RESULTS_DIR=$ROOT/$RESULTS_DIR ;; esac
HOST_HEADER=www.foobar.com
DB_USER=${DB_USER:-$(id -un)}

log() { printf '[scale.sh] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

for v in DURATION ROUNDS USERS CONNS WRK_THREADS WARMUP NET; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
for n in $COUNTS; do [[ $n =~ ^[1-9][0-9]?$ ]] || die "COUNTS: '$n' is not a web server count"; done
((DURATION >= 1 && ROUNDS >= 1 && USERS >= 1)) || die "DURATION, ROUNDS and USERS must be at least 1"
((CONNS >= WRK_THREADS && WRK_THREADS >= 1)) || die "need CONNS >= WRK_THREADS >= 1"
((NET >= 1 && NET <= 254)) || die "NET must be 1-254 (hosts get 127.NET.x.y)"
[[ $STATE == /* && $STATE != / ]] || die "STATE must be an absolute path other than /"

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v mariadb >/dev/null || missing+=(mariadb-client-core)
command -v jq >/dev/null || missing+=(jq)
command -v curl >/dev/null || missing+=(curl)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
command -v etcd >/dev/null || missing+=(etcd-server)
install_missing "${missing[@]}"

if [[ $SKIP_BUILD != 1 ]]; then
    log "building rampart (release)"
    (cd "$ROOT" && cargo build --release -p rampart) >&2
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rampart-scale-bench.XXXXXX")
# A private copy: the workspace may be rebuilt while the benchmark runs.
cp "$TARGET_DIR/release/rampart" "$WORK/rampart" || die "no release binary; build failed?"
RAMPART=$WORK/rampart
cp "$ROOT/bench/web.lua" "$WORK/web.lua"
UP=0

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if ((UP)); then
        log "stopping the topology (rampart down --purge --state $STATE)"
        timeout --kill-after=10 120 "$RAMPART" down --purge --state "$STATE" >"$WORK/down.log" 2>&1 ||
            tail -n 20 "$WORK/down.log" >&2
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

TS=$(date -u +%Y%m%dT%H%M%SZ)
RUN_DIR=$RESULTS_DIR/scale-$TS
TABLE_OUT=$RESULTS_DIR/scale-$TS.txt
mkdir -p "$RUN_DIR"

if [[ -e $STATE ]]; then
    [[ -d $STATE/hosts || -d $STATE/certs || -z $(ls -A "$STATE") ]] ||
        die "$STATE exists and is not a rampart state directory; not purging it"
    timeout 120 "$RAMPART" down --purge --state "$STATE" >"$WORK/down.log" 2>&1 || true
fi

first=${COUNTS%% *}
printf '[hosts]\nweb = %s\nreplicas = 1\n' "$first" >"$WORK/site.toml"
log "rampart up --local -d --net $NET --topology (web = $first)"
UP=1
timeout 300 "$RAMPART" up --local -d --net "$NET" --state "$STATE" --topology "$WORK/site.toml" \
    >"$RUN_DIR/up.txt" 2>&1 || {
    tail -n 30 "$RUN_DIR/up.txt" >&2
    die "rampart up failed"
}
"$RAMPART" status --json --state "$STATE" >"$RUN_DIR/status.json"
LB_ADDR=$(jq -r '.hosts[] | select(.name == "lb1") | .addresses[0]' "$RUN_DIR/status.json")
LB_PORT=$(jq -r '.hosts[] | select(.name == "lb1") | .services[] | select(.name == "lb") | .ports.https' "$RUN_DIR/status.json")
[[ $LB_ADDR == 127.* && -n $LB_PORT ]] || die "unexpected lb1 address '$LB_ADDR:$LB_PORT' (only 127.0.0.0/8 is allowed)"

sql() { timeout 120 mariadb --no-defaults --socket="$1" -u"$DB_USER" --batch --skip-column-names -e "$2"; }
SOCK1=$STATE/hosts/db1/mysqld.sock
SOCK2=$STATE/hosts/db2/mysqld.sock
log "seeding $USERS users"
for ((lo = 1; lo <= USERS; lo += 100000)); do
    hi=$((lo + 99999 < USERS ? lo + 99999 : USERS))
    sql "$SOCK1" "INSERT INTO foobar.users (name, email, created_at)
        SELECT CONCAT('user', seq), CONCAT('user', seq, '@example.com'), NOW(6) FROM foobar.seq_${lo}_to_${hi}"
done
pos=$(sql "$SOCK1" "SELECT @@gtid_binlog_pos")
[[ $(sql "$SOCK2" "SELECT MASTER_GTID_WAIT('$pos', 60)") == 0 ]] || die "db2 did not catch up"
read -r ID_LO ID_HI < <(sql "$SOCK2" "SELECT MIN(id), MAX(id) FROM foobar.users")

to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v == "") { print ""; exit }
        if (v ~ /us$/) { sub(/us$/, "", v); v = v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v) }
        else if (v ~ /s$/) { sub(/s$/, "", v); v = v * 1000 }
        printf "%.2f", v }'
}
median() { printf '%s\n' "$@" | awk 'NF' | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.6g\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

wrk_run() { # seconds out
    timeout $(($1 + 30)) wrk -t"$WRK_THREADS" -c"$CONNS" -d"$1s" --latency --timeout 5s \
        -H "Host: $HOST_HEADER" -s "$WORK/web.lua" "https://$LB_ADDR:$LB_PORT/api/users/$ID_LO" \
        -- "$ID_LO" "$ID_HI" >"$2" 2>&1 || log "wrk exited with an error (see $2)"
}

declare -A RPS=() P50=() P99=() ERRS=()
for n in $COUNTS; do
    log "rampart scale web=$n"
    timeout 300 "$RAMPART" scale "web=$n" --state "$STATE" >"$RUN_DIR/scale-$n.txt" 2>&1 || {
        tail -n 20 "$RUN_DIR/scale-$n.txt" >&2
        die "rampart scale web=$n failed"
    }
    # Every web server in rotation before measuring: each has served a request.
    for ((i = 0; i < 50; i++)); do
        got=$(for ((j = 0; j < 4 * n; j++)); do
            curl -s --max-time 5 --cacert "$STATE/certs/ca.pem" -o /dev/null -D - \
                --resolve "$HOST_HEADER:$LB_PORT:$LB_ADDR" "https://$HOST_HEADER:$LB_PORT/" |
                awk 'tolower($1) == "x-served-by:" { print $2 }' | tr -d '\r'
        done | sort -u | wc -l)
        ((got == n)) && break
        sleep 0.2
    done
    ((got == n)) || die "only $got of $n web servers answered after scaling"
    wrk_run "$WARMUP" "$RUN_DIR/warmup-$n.txt"
    rps=() p50=() p99=() errs=0
    for ((r = 1; r <= ROUNDS; r++)); do
        out=$RUN_DIR/wrk-web$n-r$r.txt
        wrk_run "$DURATION" "$out"
        rps+=("$(awk '/^Requests\/sec:/{ print $2; exit }' "$out")")
        p50+=("$(to_ms "$(awk '$1=="50%"{ print $2; exit }' "$out")")")
        p99+=("$(to_ms "$(awk '$1=="99%"{ print $2; exit }' "$out")")")
        e=$(awk '/Non-2xx or 3xx responses:/{ print $NF; exit }' "$out")
        errs=$((errs + ${e:-0}))
        log "web=$n round $r: ${rps[-1]} req/s, p50 ${p50[-1]} ms, p99 ${p99[-1]} ms"
    done
    RPS[$n]=$(median "${rps[@]}")
    P50[$n]=$(median "${p50[@]}")
    P99[$n]=$(median "${p99[@]}")
    ERRS[$n]=$errs
done

{
    echo "bench/scale.sh $TS: HTTPS GET /api/users/{id} through lb1, wrk -t$WRK_THREADS -c$CONNS, ${DURATION}s x $ROUNDS (medians)"
    echo "machine: $(getconf _NPROCESSORS_ONLN) CPUs; every host of the local topology shares them"
    printf '%-12s %10s %8s %9s %9s %8s\n' "web servers" "req/s" "vs $first" "p50 ms" "p99 ms" "non-2xx"
    for n in $COUNTS; do
        ratio=$(awk -v a="${RPS[$n]}" -v b="${RPS[$first]}" 'BEGIN { if (b > 0) printf "%.2f", a / b }')
        printf '%-12s %10s %8s %9s %9s %8s\n' "$n" "${RPS[$n]}" "$ratio" "${P50[$n]}" "${P99[$n]}" "${ERRS[$n]}"
    done
} | tee "$TABLE_OUT"

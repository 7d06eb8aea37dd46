#!/usr/bin/env bash
# bench/web.sh: the whole read path (HTTPS through lb1 to web1/web2 to the replica db2)
# against MariaDB's own point-select rate on the same replica, in the same run.
#
# Brings up the local topology from scratch (`rampart up --local -d`), seeds USERS users on
# the primary, waits for the replica, then alternates, ROUNDS times:
#   sysbench  oltp_point_select, SB_THREADS threads, over db2's unix socket -> queries/s
#   wrk       GET /api/users/{random id} through https://lb1:8443        -> requests/s
#   wrk       the same through the classic stack (CLASSIC=1, the default) -> requests/s
# and reports the medians, their ratios (https req/s / sysbench qps, rampart req/s /
# classic req/s), wrk's p50/p99, and the CPU time each process (lb1, web1, web2, db2, db1;
# haproxy, each nginx, each web server's php-fpm) spent per request.
#
# The classic stack is what an operator would hand-wire from Debian 12's packages on the
# same replica: HAProxy 2.6 (TLS) -> round robin over two nginx 1.22 (TLS, client
# certificates) -> PHP-FPM 8.2 (bench/users.php, PDO over TLS to db2). The script writes
# its configs, starts it by PID in a directory under STATE, and byte-compares its JSON
# with rampart's before measuring.
#
# Usage:   bench/web.sh
# Env:     DURATION=10 ROUNDS=3 USERS=10000 CONNS=32 WRK_THREADS=2 SB_THREADS=8 WARMUP=2
#          NET=77 STATE=/tmp/rampart-bench RESULTS_DIR=<repo>/target/bench SKIP_BUILD=0
#          PROFILE=0 (1: after the rounds, one extra wrk run under `perf record`)
#          CLASSIC=1 (0: rampart and sysbench only) CLASSIC_CHILDREN=32 (php-fpm per server)
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
SB_TLS=${SB_TLS:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
CLASSIC=${CLASSIC:-1}
CLASSIC_CHILDREN=${CLASSIC_CHILDREN:-32}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RESULTS_DIR=${RESULTS_DIR:-$ROOT/target/bench}
case $RESULTS_DIR in /*) ;; *) RESULTS_DIR=$ROOT/$RESULTS_DIR ;; esac
HOST_HEADER=www.foobar.com
GOAL=0.5         # the aim: HTTPS req/s >= GOAL x sysbench point-select qps
CLASSIC_GOAL=3   # and rampart req/s >= CLASSIC_GOAL x the classic stack's req/s

log() { printf '[web.sh] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

for v in DURATION ROUNDS USERS CONNS WRK_THREADS SB_THREADS WARMUP NET PROFILE CLASSIC CLASSIC_CHILDREN SB_TLS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
((DURATION >= 1)) || die "DURATION must be at least 1"
((ROUNDS >= 1)) || die "ROUNDS must be at least 1"
((USERS >= 1)) || die "USERS must be at least 1"
((CONNS >= WRK_THREADS && WRK_THREADS >= 1)) || die "need CONNS >= WRK_THREADS >= 1"
((SB_THREADS >= 1)) || die "SB_THREADS must be at least 1"
((NET >= 1 && NET <= 254)) || die "NET must be 1-254 (hosts get 127.NET.x.y)"
((CLASSIC_CHILDREN >= 1 && CLASSIC_CHILDREN <= 256)) || die "CLASSIC_CHILDREN must be 1-256"
[[ $STATE == /* && $STATE != / ]] || die "STATE must be an absolute path other than /"
[[ -f $ROOT/bench/web.lua ]] || die "$ROOT/bench/web.lua is missing"
((CLASSIC == 0)) || [[ -f $ROOT/bench/users.php ]] || die "$ROOT/bench/users.php is missing"

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
    if ((CLASSIC)); then
        command -v haproxy >/dev/null || missing+=(haproxy)
        command -v nginx >/dev/null || missing+=(nginx)
        command -v php-fpm8.2 >/dev/null || missing+=(php8.2-fpm)
        [[ -e /etc/php/8.2/mods-available/pdo_mysql.ini ]] || missing+=(php8.2-mysql)
        command -v openssl >/dev/null || missing+=(openssl)
        command -v ps >/dev/null || missing+=(procps)
        command -v ss >/dev/null || missing+=(iproute2)
    fi
    install_missing "${missing[@]}"
}
ensure_tools
if ((CLASSIC)); then
    HAPROXY_VERSION=$(haproxy -v 2>&1 | sed -n 1p)
    NGINX_VERSION=$(nginx -v 2>&1 | sed -n 1p)
    PHP_VERSION=$(php-fpm8.2 -v 2>&1 | sed -n 1p)
    [[ $HAPROXY_VERSION == *"version 2.6."* ]] || log "warning: expected HAProxy 2.6, found: $HAPROXY_VERSION"
    [[ $NGINX_VERSION == *"nginx/1.22."* ]] || log "warning: expected nginx 1.22, found: $NGINX_VERSION"
    php-fpm8.2 -m 2>/dev/null | grep -qx pdo_mysql || die "php-fpm8.2 has no pdo_mysql (apt-get install php8.2-mysql)"
fi

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
declare -A CL_KIDS=() # "pid starttime" -> what: the classic stack's workers (see cleanup)
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
    # Workers of the classic stack whose master is gone but they are not (same PID and
    # start time as recorded, so never another process that reused the PID).
    local k p st
    for k in "${!CL_KIDS[@]}"; do
        read -r p st <<<"$k"
        if [[ $(proc_start "$p") == "$st" ]]; then kill -KILL "$p" 2>/dev/null || true; fi
    done
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

CLIENT_TICKS=0 # CPU ticks of the last command run_bounded ran (with its children)

run_bounded() { # out limit-seconds cmd...: run in the background (so traps can stop it), wait
    local out=$1 limit=$2 rc=0 pid c0 c1
    shift 2
    reaped_ticks c0
    timeout --kill-after=5 "$limit" "$@" >"$out" 2>&1 &
    pid=$!
    LIVE[$pid]=$1
    wait "$pid" || rc=$?
    unset "LIVE[$pid]"
    reaped_ticks c1
    CLIENT_TICKS=$((c1 - c0))
    return "$rc"
}

reaped_ticks() { # var: this script's reaped children's CPU (cutime+cstime), in clock ticks
    # Read in this shell into a variable, with no fork (no command substitution), so that
    # only run_bounded's command (timeout, and the wrk or sysbench it waited for) is
    # reaped between two readings.
    local line
    local -a fields
    read -r line <"/proc/$$/stat"
    read -ra fields <<<"${line##*) }"
    printf -v "$1" '%d' $((fields[13] + fields[14]))
}

proc_ticks() { # pid -> utime+stime of the process (all its threads), in clock ticks; - if gone
    local line fields
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || {
        echo -
        return
    }
    read -ra fields <<<"${line##*) }"
    # After "comm)": field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    echo $((fields[11] + fields[12]))
}

tree_ticks() { # pid -> CPU ticks of a master and its workers; - if the master is gone
    # The master's own utime+stime, plus cutime+cstime (workers that exited and were
    # reaped), plus utime+stime of the workers alive now: nothing is lost when one exits.
    local line fields total p
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || {
        echo -
        return
    }
    read -ra fields <<<"${line##*) }"
    total=$((fields[11] + fields[12] + fields[13] + fields[14]))
    for p in $(ps -o pid= --ppid "$1"); do
        { read -r line <"/proc/$p/stat"; } 2>/dev/null || continue
        read -ra fields <<<"${line##*) }"
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}

proc_start() { # pid -> its start time (clock ticks since boot), empty if gone
    local line fields
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 0
    read -ra fields <<<"${line##*) }"
    echo "${fields[19]}"
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
# Every service's pid and name, for naming the processes in the "rest" of each run.
jq -r '.hosts[] | .services[] | select(.pid != null) | "\(.pid) \(.name)"' "$RUN_DIR/status.json" >"$WORK/svc-pids"

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
    if ! [[ ${PID[$h]} =~ ^[0-9]+$ ]] || ! alive "${PID[$h]}"; then
        die "no running process for $h in rampart status --json"
    fi
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

SB_COMMON=(oltp_point_select --db-driver=mysql --mysql-db=sbtest
    --tables=1 --table-size="$USERS")
log "sysbench prepare on db1 (sbtest, 1 table of $USERS rows)"
sql "$SOCK1" "CREATE DATABASE sbtest"
run_bounded "$RUN_DIR/sysbench-prepare.txt" 600 sysbench "${SB_COMMON[@]}" --mysql-user="$DB_USER" --mysql-socket="$SOCK1" prepare || {
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
    if [[ $code == 200 && $role == replica ]] && grep -q "\"id\":${id}[,}]" "$WORK/b"; then
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

# --- sysbench over TLS --------------------------------------------------------------------
# The default topology's web servers reach db2 over TCP with TLS; sysbench's own run uses
# the unix socket. With SB_TLS=1 (the default) each round also runs the same sysbench over
# TCP with TLS to db2's address, as a user of its own that requires SSL, so the path can be
# compared with the database's limit over the same kind of connection. sysbench 1.0's
# `--mysql-ssl=on` always sends a client certificate (client-cert.pem in its working
# directory), which MariaDB checks against its CA: the script signs a throwaway one with
# the state's CA (only readable by root, as the state is).
openssl_logged() { # log-file openssl-args...: run openssl, its output to the log; die on failure
    local logf=$1
    shift
    openssl "$@" >>"$logf" 2>&1 || die "openssl $1 failed (see $logf)"
}
sql_in() { # socket, SQL on stdin
    timeout 120 mariadb --no-defaults --socket="$1" -u"$DB_USER" --batch --skip-column-names
}
# A read-only database user of the benchmark's own, created on the primary (it reaches db2
# through replication, like rampart's users) with TLS required. Only the password's hash
# is sent in a statement, so the binlog never holds the password; none of it is in argv.
tls_db_user() { # var user grant-on what: create it, wait for db2, its password into var
    local -n pass_var=$1
    local hash
    pass_var=$(openssl rand -hex 16)
    hash=$(sql_in "$SOCK1" <<<"SELECT PASSWORD('$pass_var')")
    [[ $hash =~ ^\*[0-9A-F]{40}$ ]] || die "unexpected password hash from db1"
    sql_in "$SOCK1" <<<"CREATE USER '$2'@'127.0.0.1' IDENTIFIED BY PASSWORD '$hash' REQUIRE SSL;
GRANT SELECT ON $3 TO '$2'@'127.0.0.1';" || die "cannot create $4 on db1"
    wait_replica "$4"
}
DB2_ADDR=$(addr db2)
DB2_PORT=$(svc db2 mariadb .ports.mysql)
[[ $DB2_ADDR == 127.* && $DB2_PORT =~ ^[0-9]+$ ]] || die "unexpected db2 address '$DB2_ADDR:$DB2_PORT'"

SB_TLS_ON=0
if ((SB_TLS)); then
    DB2_CA=$(tr '\0' '\n' <"/proc/${PID[db2]}/cmdline" | sed -n 's/^--ssl-ca=//p' | head -n 1)
    SB_TLS_DIR=$WORK/sysbench-tls
    mkdir -p "$SB_TLS_DIR"
    if [[ -r ${DB2_CA%/*}/ca.key && -r $DB2_CA ]]; then
        cp "$DB2_CA" "$SB_TLS_DIR/cacert.pem"
        openssl_logged "$SB_TLS_DIR/openssl.log" req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=bench-sysbench \
            -keyout "$SB_TLS_DIR/client-key.pem" -out "$SB_TLS_DIR/client.csr"
        openssl_logged "$SB_TLS_DIR/openssl.log" x509 -req -sha256 -days 1 -in "$SB_TLS_DIR/client.csr" -CA "$DB2_CA" \
            -CAkey "${DB2_CA%/*}/ca.key" -CAcreateserial -CAserial "$SB_TLS_DIR/ca.srl" \
            -out "$SB_TLS_DIR/client-cert.pem"
        SB_TLS_USER=bench_sysbench_tls
        tls_db_user SB_TLS_PASS "$SB_TLS_USER" 'sbtest.*' "the TLS sysbench user"
        # sysbench takes a password only on its command line: the user can only read
        # sbtest, and exists only in this run's state, which `down --purge` removes.
        SB_TLS_ARGS=(--mysql-host="$DB2_ADDR" --mysql-port="$DB2_PORT" --mysql-user="$SB_TLS_USER"
            --mysql-password="$SB_TLS_PASS" --mysql-ssl=on)
        SB_TLS_ON=1
    else
        NOTES+=("SB_TLS: no readable CA key beside db2's --ssl-ca ('$DB2_CA'): the TLS sysbench run is skipped")
    fi
fi

# --- the classic stack -------------------------------------------------------------------
# What an operator would hand-wire from Debian 12's packages, on the same replica:
# HAProxy 2.6 terminating TLS -> round robin over TLS (client certificates both ways, like
# lb1 -> web1/web2) to two nginx 1.22 -> FastCGI over a unix socket -> PHP-FPM 8.2 running
# bench/users.php, which reads db2 over TLS with a persistent PDO connection. All of it
# listens on 127.NET.200.x, runs from a directory under STATE, and is started and stopped
# by PID here. bench/README.md explains each setting.

CL_PROCS=() # the classic stack's process groups (master and workers), measured like PROCS
if ((CLASSIC)); then
    CL_LB_ADDR=127.$NET.200.10
    CL_WEB_ADDR=([1]=127.$NET.200.11 [2]=127.$NET.200.12)
    CL_PORT=8443
    for a in "$CL_LB_ADDR" "${CL_WEB_ADDR[@]}"; do
        if jq -e --arg a "$a" '[.hosts[].addresses[]] | index($a) != null' "$RUN_DIR/status.json" >/dev/null; then
            die "the classic stack's address $a belongs to the topology; choose another NET"
        fi
        [[ -z $(ss -Htln "( sport = :$CL_PORT )" | awk -v a="$a:$CL_PORT" '$4 == a || $4 ~ /^(0\.0\.0\.0|\*|\[::\]):/') ]] ||
            die "$a:$CL_PORT (or a wildcard on port $CL_PORT) is already in use"
    done

    # Workers drop to nobody where the daemon can (HAProxy, nginx's workers, PHP-FPM's
    # children); masters stay root to read the keys and bind, as Debian's services do.
    CL_USER="" CL_GROUP=""
    if [[ $(id -u) -eq 0 ]]; then
        CL_USER=nobody
        CL_GROUP=$(id -gn nobody)
    fi
    CL=$(mktemp -d "$STATE/classic.XXXXXX")
    # nobody must reach the FastCGI sockets, the script and db2's CA below $CL.
    chmod 0711 "$CL"
    mkdir -m 0700 "$CL/certs"
    mkdir -m 0711 "$CL/run"
    mkdir -m 0755 "$CL/www"
    cp "$ROOT/bench/users.php" "$CL/www/users.php"
    cp "$CA" "$CL/www/db-ca.pem"
    chmod 0644 "$CL/www/users.php" "$CL/www/db-ca.pem"
    log "classic stack in $CL: haproxy $CL_LB_ADDR:$CL_PORT -> nginx ${CL_WEB_ADDR[1]}:$CL_PORT, ${CL_WEB_ADDR[2]}:$CL_PORT -> php-fpm"

    # Certificates: ECDSA P-256 like rampart's, from a CA of the classic stack's own.
    C=$CL/certs
    ossl() { openssl_logged "$CL/openssl.log" "$@"; }
    ossl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 2 \
        -subj "/CN=rampart bench classic CA" -keyout "$C/ca.key" -out "$C/ca.pem"
    leaf() { # name subjectAltName extendedKeyUsage
        ossl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
            -keyout "$C/$1.key" -out "$C/$1.csr"
        printf 'subjectAltName=%s\nextendedKeyUsage=%s\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n' \
            "$2" "$3" >"$C/$1.ext"
        ossl x509 -req -sha256 -days 2 -in "$C/$1.csr" -CA "$C/ca.pem" -CAkey "$C/ca.key" \
            -CAcreateserial -extfile "$C/$1.ext" -out "$C/$1.pem"
    }
    leaf site "DNS:$HOST_HEADER,DNS:foobar.com" serverAuth
    leaf cweb1 DNS:cweb1 serverAuth
    leaf cweb2 DNS:cweb2 serverAuth
    leaf haproxy DNS:haproxy clientAuth
    cat "$C/site.pem" "$C/site.key" >"$C/site-haproxy.pem"
    cat "$C/haproxy.pem" "$C/haproxy.key" >"$C/haproxy-client.pem"

    CL_DB_USER=bench_classic
    tls_db_user CL_DB_PASS "$CL_DB_USER" foobar.users "the classic stack's database user"

    # FastCGI keep-alive pins a PHP-FPM child to each open nginx connection, idle or not,
    # and nginx keeps up to `keepalive` idle connections per worker. If the idle ones of
    # one worker hold children another worker needs, its new connection waits in the
    # socket's backlog until an idle one times out (seen as 5 s wrk timeouts). So the pool
    # must cover every connection that can exist: HAProxy sends each nginx at most
    # CL_INFLIGHT requests at a time (queueing the rest itself), and each nginx worker
    # keeps at most CL_IDLE idle connections: CL_INFLIGHT + NCPU x CL_IDLE = children.
    CL_INFLIGHT=$((CLASSIC_CHILDREN / 2))
    CL_IDLE=$((CLASSIC_CHILDREN / 2 / NCPU))
    ((CL_INFLIGHT >= 1 && CL_IDLE >= 1)) || die "CLASSIC_CHILDREN must be at least $((2 * NCPU)) (2 x CPUs)"
    NOFILE=$(ulimit -n)
    [[ $NOFILE =~ ^[0-9]+$ ]] || NOFILE=65536
    HAPROXY_MAXCONN=$(((NOFILE - 200) / 2 < 10000 ? (NOFILE - 200) / 2 : 10000))
    TLS12_CIPHERS=ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305
    TLS13_SUITES=TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
    HSTS="max-age=63072000; includeSubDomains"
    NGINX_BUILD=$(nginx -V 2>&1 || true)

    for n in 1 2; do
        # PHP-FPM: Debian's php.ini (OPcache on), one static pool per web server.
        {
            echo "[global]"
            echo "pid = $CL/run/php$n.pid"
            echo "error_log = $CL/php$n.log"
            echo "log_level = notice"
            echo "daemonize = no"
            echo
            echo "[www]"
            if [[ -n $CL_USER ]]; then
                echo "user = $CL_USER"
                echo "group = $CL_GROUP"
                echo "listen.owner = $CL_USER"
                echo "listen.group = $CL_GROUP"
            fi
            echo "listen = $CL/run/php$n.sock"
            echo "listen.mode = 0660"
            echo "listen.backlog = 511"
            echo "pm = static"
            echo "pm.max_children = $CLASSIC_CHILDREN"
            echo "pm.max_requests = 0"
            echo "catch_workers_output = yes"
            echo "decorate_workers_output = no"
            echo "clear_env = yes"
            echo "security.limit_extensions = .php"
            echo "env[CLASSIC_DB_DSN] = \"mysql:host=$DB2_ADDR;port=$DB2_PORT;dbname=foobar;charset=utf8mb4\""
            echo "env[CLASSIC_DB_USER] = $CL_DB_USER"
            echo "env[CLASSIC_DB_PASS] = $CL_DB_PASS"
            echo "env[CLASSIC_DB_CA] = $CL/www/db-ca.pem"
        } >"$CL/php$n.conf"
        chmod 0600 "$CL/php$n.conf"

        # nginx: as many workers as rampart's web server has threads; TLS with a required
        # client certificate from HAProxy; FastCGI keep-alive to PHP-FPM over the socket.
        d=$CL/nginx$n
        mkdir -p "$d/conf" "$d/logs" "$d/tmp"
        temp=""
        for t in client_body proxy fastcgi uwsgi scgi; do
            [[ $NGINX_BUILD == *"--without-http_${t}_module"* ]] || temp+="    ${t}_temp_path $d/tmp/$t;"$'\n'
        done
        cat >"$d/conf/nginx.conf" <<EOF
${CL_USER:+user $CL_USER $CL_GROUP;}
worker_processes $NCPU;
daemon off;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;

events {
    worker_connections 4096;
}

http {
    access_log $d/logs/access.log combined buffer=64k flush=1s;
$temp
    keepalive_timeout 60s;
    keepalive_requests 100000;
    server_tokens off;

    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers $TLS12_CIPHERS;
    ssl_prefer_server_ciphers off;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;

    upstream php {
        server unix:$CL/run/php$n.sock;
        keepalive $CL_IDLE;
    }

    server {
        listen ${CL_WEB_ADDR[$n]}:$CL_PORT ssl;
        server_name $HOST_HEADER foobar.com cweb$n;
        ssl_certificate $C/cweb$n.pem;
        ssl_certificate_key $C/cweb$n.key;
        ssl_client_certificate $C/ca.pem;
        ssl_verify_client on;
        add_header X-Served-By cweb$n always;

        location = /healthz {
            access_log off;
            return 200 "ok\n";
        }
        location ~ ^/api/users/[^/]+\$ {
            fastcgi_pass php;
            fastcgi_keep_conn on;
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $CL/www/users.php;
            fastcgi_param SCRIPT_NAME /api/users;
        }
        location / {
            return 404;
        }
    }
}
EOF
    done

    # HAProxy: TLS like lb1 (1.2 and 1.3, ECDHE+AEAD, resumption, ALPN), as many threads
    # as lb1 has, the same headers lb1 adds, keep-alive and connection reuse to nginx over
    # verified TLS with a client certificate, health checks like lb1's, access log on.
    cat >"$CL/haproxy.cfg" <<EOF
global
    nbthread $NCPU
    maxconn $HAPROXY_MAXCONN
${CL_USER:+    user $CL_USER
    group $CL_GROUP}
    log stdout format raw local0 info
    ssl-default-bind-ciphers $TLS12_CIPHERS
    ssl-default-bind-ciphersuites $TLS13_SUITES
    ssl-default-bind-options ssl-min-ver TLSv1.2 prefer-client-ciphers
    ssl-default-server-options ssl-min-ver TLSv1.2

defaults
    mode http
    log global
    option httplog
    option http-keep-alive
    http-reuse always
    timeout connect 3s
    timeout client 60s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 60s
    maxconn $HAPROXY_MAXCONN

frontend www
    bind $CL_LB_ADDR:$CL_PORT ssl crt $C/site-haproxy.pem alpn h2,http/1.1
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header Forwarded "for=%[src];proto=https;host=\"%[req.hdr(host)]\""
    http-response set-header Strict-Transport-Security "$HSTS"
    default_backend web

backend web
    balance roundrobin
    option httpchk GET /healthz
    default-server ssl verify required ca-file $C/ca.pem crt $C/haproxy-client.pem check inter 1s fall 2 rise 2
    server cweb1 ${CL_WEB_ADDR[1]}:$CL_PORT verifyhost cweb1 maxconn $CL_INFLIGHT
    server cweb2 ${CL_WEB_ADDR[2]}:$CL_PORT verifyhost cweb2 maxconn $CL_INFLIGHT
EOF
    cp "$CL/haproxy.cfg" "$RUN_DIR/classic-haproxy.cfg"
    for n in 1 2; do
        cp "$CL/nginx$n/conf/nginx.conf" "$RUN_DIR/classic-nginx$n.conf"
        sed 's/^\(env\[CLASSIC_DB_PASS\] = \).*/\1(redacted)/' "$CL/php$n.conf" >"$RUN_DIR/classic-php$n.conf"
    done

    haproxy -c -f "$CL/haproxy.cfg" >"$CL/haproxy-check.log" 2>&1 || {
        cat "$CL/haproxy-check.log" >&2
        die "haproxy rejected its config ($RUN_DIR/classic-haproxy.cfg)"
    }
    for n in 1 2; do
        php-fpm8.2 -t -y "$CL/php$n.conf" >"$CL/php$n-check.log" 2>&1 || {
            cat "$CL/php$n-check.log" >&2
            die "php-fpm rejected its config ($RUN_DIR/classic-php$n.conf)"
        }
        nginx -t -p "$CL/nginx$n" -c conf/nginx.conf -e "$CL/nginx$n/logs/error.log" >"$CL/nginx$n-check.log" 2>&1 || {
            cat "$CL/nginx$n-check.log" >&2
            die "nginx rejected its config ($RUN_DIR/classic-nginx$n.conf)"
        }
    done

    start_bg() { # name logfile cmd...: start in the background, remember its PID
        local name=$1 logf=$2
        shift 2
        "$@" >"$logf" 2>&1 </dev/null &
        PID[$name]=$!
        LIVE[$!]=$name
    }
    for n in 1 2; do
        start_bg "cweb$n-php" "$CL/php$n.out" php-fpm8.2 -F -y "$CL/php$n.conf"
        start_bg "cweb$n-nginx" "$CL/nginx$n.out" nginx -p "$CL/nginx$n" -c conf/nginx.conf -e "$CL/nginx$n/logs/error.log"
    done
    start_bg haproxy "$CL/haproxy.log" haproxy -db -f "$CL/haproxy.cfg"
    CL_PROCS=(haproxy cweb1-nginx cweb1-php cweb2-nginx cweb2-php)

    cl_logs() {
        local f
        for f in "$CL/haproxy.log" "$CL/php1.log" "$CL/php2.log" "$CL/nginx1/logs/error.log" "$CL/nginx2/logs/error.log" "$CL"/*.out; do
            [[ -s $f ]] || continue
            log "---- $f ----"
            tail -n 15 "$f" >&2 || true
        done
    }
    cl_get() { # id headers-file body-file -> HTTP status through HAProxy (000 on failure)
        curl -sS --max-time 5 --cacert "$C/ca.pem" --resolve "$HOST_HEADER:$CL_PORT:$CL_LB_ADDR" \
            -D "$2" -o "$3" -w '%{http_code}' "https://$HOST_HEADER:$CL_PORT/api/users/$1" 2>>"$WORK/curl.err" || echo 000
    }

    # Ready when random ids come back 200 through HAProxy from both web servers (15 s at most).
    ok=0 served=""
    for ((i = 0; i < 75; i++)); do
        for h in "${CL_PROCS[@]}"; do alive "${PID[$h]}" || {
            cl_logs
            die "classic stack: $h (pid ${PID[$h]}) exited"
        }; done
        id=$((ID_LO + (RANDOM * 32768 + RANDOM) % USERS))
        code=$(cl_get "$id" "$WORK/ch" "$WORK/cb")
        if [[ $code == 200 ]] && grep -q "\"id\":${id}[,}]" "$WORK/cb"; then
            ok=$((ok + 1))
            served+=" $(hdr x-served-by "$WORK/ch")"
            ((ok >= 4)) && [[ $served == *cweb1* && $served == *cweb2* ]] && break
        else
            ok=0 served=""
            sleep 0.2
        fi
    done
    cp "$WORK/ch" "$RUN_DIR/response-headers-classic.txt" 2>/dev/null || true
    if ! ((ok >= 4)) || [[ $served != *cweb1* || $served != *cweb2* ]]; then
        log "---- last classic response (GET /api/users/$id): status $code ----"
        cat "$WORK/ch" "$WORK/cb" >&2 2>/dev/null || true
        tail -n 5 "$WORK/curl.err" >&2 2>/dev/null || true
        cl_logs
        die "classic stack: GET https://$CL_LB_ADDR:$CL_PORT/api/users/<id> did not return 200 from both cweb1 and cweb2 within 15 s"
    fi

    # Track the workers too (by PID and start time), in case a master dies without them.
    for h in "${CL_PROCS[@]}"; do
        for p in $(ps -o pid= --ppid "${PID[$h]}"); do
            st=$(proc_start "$p")
            [[ -n $st ]] && CL_KIDS["$p $st"]="$h worker"
        done
    done
    log "classic stack ready: haproxy pid ${PID[haproxy]}, nginx pids ${PID[cweb1-nginx]} ${PID[cweb2-nginx]}, php-fpm pids ${PID[cweb1-php]} ${PID[cweb2-php]} ($CLASSIC_CHILDREN children each)"

    # Same answer, byte for byte: the first and last user, three random ones, a missing one.
    n=0
    for id in "$ID_LO" "$ID_HI" $((ID_LO + RANDOM % USERS)) $((ID_LO + RANDOM % USERS)) $((ID_LO + RANDOM % USERS)) $((ID_HI + 1)); do
        code_r=$(https_get "$id" "$WORK/rh" "$WORK/rb")
        code_c=$(cl_get "$id" "$WORK/ch" "$WORK/cb")
        if [[ $code_r != "$code_c" ]] || ! cmp -s "$WORK/rb" "$WORK/cb"; then
            log "rampart: status $code_r, body: $(cat "$WORK/rb")"
            log "classic: status $code_c, body: $(cat "$WORK/cb")"
            die "GET /api/users/$id: the classic stack's answer differs from rampart's (above)"
        fi
        n=$((n + 1))
        ((n == 1)) && cp "$WORK/cb" "$RUN_DIR/response-body.json"
    done
    log "rampart and the classic stack return the same status and body for $n ids (e.g. $(cat "$RUN_DIR/response-body.json"))"
fi

metric() { # host:port name -> "label-set value" lines of that metric
    curl -s --max-time 3 "http://$1/metrics" 2>/dev/null |
        awk -v n="$2" 'index($1, n "{") == 1 || $1 == n { print }' || true
}
metric_sum() { # host:port name [label-substring] -> sum of matching samples
    metric "$1" "$2" | awk -v f="${3:-}" 'index($1, f) { s += $NF } END { printf "%d", s }'
}

# --- runs --------------------------------------------------------------------------------

declare -A R=() # "<key>@<round>" -> value

ALL_PROCS=("${PROCS[@]}" "${CL_PROCS[@]}")

snapshot() { # -> "t busy steal total ticks(lb1) ticks(web1) ... ticks(haproxy) ..." on one line
    local h line
    line="$(now) $(cpu_all)"
    for h in "${PROCS[@]}"; do line+=" $(proc_ticks "${PID[$h]}")"; done
    for h in "${CL_PROCS[@]}"; do line+=" $(tree_ticks "${PID[$h]}")"; done
    echo "$line"
}

# Where the "rest" goes: a table of every process before and after a run, and the
# difference grouped by what each process is. The topology's own services are named from
# `rampart status --json` (they are all "rampart" by comm); kernel threads by their comm up
# to the "/" ("kernel:ksoftirqd"); anything else by its comm. CPU of processes that
# started and exited within the run (other than the client) is not in either table: it
# stays in the "unaccounted" line, with softirq work done while a CPU was idle.
proc_table() { # -> "pid starttime ticks label" for every process now
    local f line comm label
    local -a fields
    for f in /proc/[0-9]*/stat; do
        { read -r line <"$f"; } 2>/dev/null || continue
        comm=${line#*(}
        comm=${comm%) *}
        read -ra fields <<<"${line##*) }"
        # flags (field 9, index 6): PF_KTHREAD is 0x00200000.
        if ((fields[6] & 0x00200000)); then label="kernel:${comm%%/*}"; else label=${comm//[[:space:]]/_}; fi
        echo "${line%% *} ${fields[19]} $((fields[11] + fields[12])) $label"
    done
}

declare -A REST_LABELS=() # "kind label" -> 1, for every label some run's split had
declare -A REST_ORDER=() # kind -> the labels of its rest to print, largest first

rest_split() { # kind round count table0 table1 own-name...: R[kind.rest:label@round] in us/req
    local kind=$1 r=$2 count=$3 t0=$4 t1=$5 h p label ticks
    shift 5
    : >"$WORK/rest-own"
    for h in "$@"; do echo "${PID[$h]}" >>"$WORK/rest-own"; done
    # The classic stack's workers count as their master's (tree_ticks), so they are own too.
    if [[ $kind == cl ]]; then
        for p in "${!CL_KIDS[@]}"; do echo "${p%% *}" >>"$WORK/rest-own"; done
    fi
    while read -r label ticks; do
        R[$kind.rest:$label@$r]=$(awk -v t="$ticks" -v n="$count" -v hz="$CLK_TCK" 'BEGIN{if (n>0) printf "%.1f", t/hz*1e6/n}')
        REST_LABELS["$kind $label"]=1
    done < <(awk 'FILENAME == ARGV[1] { own[$1] = 1; next }
                  FILENAME == ARGV[2] { svc[$1] = $2; next }
                  FILENAME == ARGV[3] { t0[$1 " " $2] = $3; next }
                  $1 in own { next }
                  { k = $1 " " $2; d = $3 - ((k in t0) ? t0[k] : 0)
                    label = ($1 in svc) ? "rampart:" svc[$1] : $4
                    sum[label] += d }
                  END { for (l in sum) if (sum[l] > 0) print l, sum[l] }' \
        "$WORK/rest-own" "$WORK/svc-pids" "$t0" "$t1")
}

account() { # kind round count snap0 snap1 own...: CPU per request/query over the run
    # Every process is accounted; "other" is the machine's busy time outside the `own` ones
    # (the processes of the path measured).
    local kind=$1 r=$2 count=$3 i h sum=0 d
    local -a a b
    local -A own=()
    read -ra a <<<"$4"
    read -ra b <<<"$5"
    shift 5
    for h in "$@"; do own[$h]=1; done
    local wall db=$((b[1] - a[1])) ds=$((b[2] - a[2])) dt=$((b[3] - a[3]))
    wall=$(awk -v x="${a[0]}" -v y="${b[0]}" 'BEGIN{printf "%.3f", y-x}')
    R[$kind.busy@$r]=$(awk -v b="$db" -v t="$dt" 'BEGIN{if (t>0) printf "%.0f", 100*b/t}')
    R[$kind.steal@$r]=$(awk -v s="$ds" -v t="$dt" 'BEGIN{if (t>0) printf "%.0f", 100*s/t}')
    i=4
    for h in "${ALL_PROCS[@]}"; do
        if [[ ${a[i]:-} =~ ^[0-9]+$ && ${b[i]:-} =~ ^[0-9]+$ ]]; then
            d=$((b[i] - a[i]))
            if [[ -n ${own[$h]:-} ]]; then sum=$((sum + d)); fi
            R[$kind.cpu_$h@$r]=$(awk -v t="$d" -v n="$count" -v hz="$CLK_TCK" 'BEGIN{if (n>0) printf "%.1f", t/hz*1e6/n}')
            R[$kind.pct_$h@$r]=$(awk -v t="$d" -v w="$wall" -v hz="$CLK_TCK" 'BEGIN{if (w>0) printf "%.0f", 100*t/hz/w}')
        elif [[ -n ${own[$h]:-} ]]; then
            NOTES+=("$kind round $r: $h (pid ${PID[$h]}) was gone at the end of the run")
        fi
        i=$((i + 1))
    done
    R[$kind.cpu_all@$r]=$(awk -v t="$db" -v n="$count" -v hz="$CLK_TCK" 'BEGIN{if (n>0) printf "%.1f", t/hz*1e6/n}')
    R[$kind.cpu_other@$r]=$(awk -v t="$((db - sum))" -v n="$count" -v hz="$CLK_TCK" 'BEGIN{if (n>0) printf "%.1f", t/hz*1e6/n}')
    R[$kind.client@$r]=$(awk -v t="$CLIENT_TICKS" -v n="$count" -v hz="$CLK_TCK" 'BEGIN{if (n>0) printf "%.1f", t/hz*1e6/n}')
}

run_sysbench() { # round (0 = warm-up) seconds [tls]: over db2's socket, or TCP with TLS
    local r=$1 secs=$2 out s0 s1 q qps lat95 avg errs k=sb tag="" what=sysbench
    local -a conn=(--mysql-user="$DB_USER" --mysql-socket="$SOCK2")
    if [[ ${3:-} == tls ]]; then
        k=sbt tag=-tls what="sysbench tls" conn=("${SB_TLS_ARGS[@]}")
    fi
    out=$RUN_DIR/sysbench$tag-r$r.txt
    ((r == 0)) && out=$RUN_DIR/sysbench$tag-warmup.txt
    proc_table >"$WORK/pt0"
    s0=$(snapshot)
    # In its own directory: sysbench's --mysql-ssl reads the CA and its client
    # certificate from the working directory.
    run_bounded "$out" $((secs + 60)) env -C "${SB_TLS_DIR:-$WORK}" sysbench "${SB_COMMON[@]}" "${conn[@]}" \
        --threads="$SB_THREADS" --time="$secs" --events=0 --rand-type=uniform --percentile=99 \
        --report-interval=0 run || NOTES+=("$what run $r exited with an error (see $out)")
    s1=$(snapshot)
    proc_table >"$WORK/pt1"
    ((r == 0)) && return 0
    q=$(awk '/^ *queries:/ { print $2; exit }' "$out")
    qps=$(awk '/^ *queries:/ { gsub(/\(/, "", $3); print $3; exit }' "$out")
    avg=$(awk '/^ *avg:/ { print $2; exit }' "$out")
    lat95=$(awk '/^ *99th percentile:/ { print $3; exit }' "$out")
    errs=$(awk '/^ *ignored errors:/ { print $3; exit }' "$out")
    R[$k.qps@$r]=$qps
    R[$k.avg@$r]=$avg
    R[$k.p99@$r]=$lat95
    [[ -z $errs || $errs == 0 ]] || NOTES+=("$what round $r: $errs ignored errors")
    [[ -n $q && $q -gt 0 ]] || {
        NOTES+=("$what round $r: no queries (see $out)")
        return 0
    }
    account "$k" "$r" "$q" "$s0" "$s1" "${PROCS[@]}"
    rest_split "$k" "$r" "$q" "$WORK/pt0" "$WORK/pt1" "${PROCS[@]}"
    log "$what round $r: ${qps} queries/s, avg ${avg} ms, p99 ${lat95} ms; db2 ${R[$k.cpu_db2@$r]} us CPU/query (${R[$k.pct_db2@$r]}% of a core); machine ${R[$k.busy@$r]}% busy, ${R[$k.steal@$r]}% steal"
}

DB2_COMS=(COM_SELECT COM_STMT_PREPARE COM_STMT_EXECUTE)
db2_coms() { # -> db2's counters of DB2_COMS, in that order, on one line (empty on failure)
    local list
    list=$(printf "'%s'," "${DB2_COMS[@]}")
    sql "$SOCK2" "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS
        WHERE VARIABLE_NAME IN (${list%,})" 2>/dev/null |
        awk -v names="${DB2_COMS[*]}" '{ v[$1] = $2 } END { n = split(names, a, " "); for (i = 1; i <= n; i++) printf "%s%s", (i > 1 ? " " : ""), v[a[i]] + 0; print "" }' || true
}

run_wrk() { # path (rampart|classic) round (0 = warm-up) seconds [out]
    local path=$1 r=$2 secs=$3 out=${4:-} s0 s1 reqs rps non2xx sock k=wrk tag="" url what detail c0 c1 i
    local -a ca cb
    local -a procs=("${PROCS[@]}")
    url="https://$LB_ADDR:$LB_PORT"
    if [[ $path == classic ]]; then
        k=cl tag=-classic url="https://$CL_LB_ADDR:$CL_PORT"
        procs=("${CL_PROCS[@]}" db2 db1)
    fi
    what="wrk${tag:+ classic}"
    [[ -n $out ]] || out=$RUN_DIR/wrk$tag-r$r.txt
    ((r == 0)) && [[ -z ${4:-} ]] && out=$RUN_DIR/wrk$tag-warmup.txt
    # What the path asks of db2 (outside the CPU snapshots: the client costs CPU too).
    c0=$(db2_coms)
    proc_table >"$WORK/pt0"
    s0=$(snapshot)
    run_bounded "$out" $((secs + 30)) wrk -t"$WRK_THREADS" -c"$CONNS" -d"${secs}s" --latency --timeout 5s \
        -H "Host: $HOST_HEADER" -s "$WORK/web.lua" "$url/api/users/$ID_LO" -- "$ID_LO" "$ID_HI" ||
        NOTES+=("$what run $r exited with an error (see $out)")
    s1=$(snapshot)
    proc_table >"$WORK/pt1"
    c1=$(db2_coms)
    ((r == 0)) && return 0
    reqs=$(awk '/ requests in /{ print $1; exit }' "$out")
    rps=$(awk '/^Requests\/sec:/{ print $2; exit }' "$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/{ print $NF; exit }' "$out")
    sock=$(grep -m1 'Socket errors:' "$out" | sed 's/^ *//' || true)
    R[$k.rps@$r]=$rps
    R[$k.reqs@$r]=$reqs
    R[$k.p50@$r]=$(to_ms "$(awk '$1=="50%"{ print $2; exit }' "$out")")
    R[$k.p99@$r]=$(to_ms "$(awk '$1=="99%"{ print $2; exit }' "$out")")
    R[$k.non2xx@$r]=${non2xx:-0}
    R[$k.sockerr@$r]=$sock
    if [[ -n $non2xx || -n $sock ]]; then
        NOTES+=("${what^^} ERRORS round $r: ${non2xx:+non-2xx/3xx responses: $non2xx }$sock")
        log "WARNING: $what round $r had errors: ${non2xx:+non-2xx/3xx responses: $non2xx }$sock"
    fi
    [[ -n $reqs && $reqs -gt 0 ]] || {
        NOTES+=("$what round $r: no requests completed (see $out)")
        return 0
    }
    account "$k" "$r" "$reqs" "$s0" "$s1" "${procs[@]}"
    rest_split "$k" "$r" "$reqs" "$WORK/pt0" "$WORK/pt1" "${procs[@]}"
    read -ra ca <<<"$c0"
    read -ra cb <<<"$c1"
    if ((${#ca[@]} == ${#DB2_COMS[@]} && ${#cb[@]} == ${#DB2_COMS[@]})); then
        for i in "${!DB2_COMS[@]}"; do
            R[$k.${DB2_COMS[i]}@$r]=$(awk -v d=$((cb[i] - ca[i])) -v n="$reqs" 'BEGIN{printf "%.2f", d/n}')
        done
    fi
    if [[ $path == classic ]]; then
        detail="haproxy ${R[cl.cpu_haproxy@$r]:-} cweb1 nginx ${R[cl.cpu_cweb1-nginx@$r]:-} php ${R[cl.cpu_cweb1-php@$r]:-} cweb2 nginx ${R[cl.cpu_cweb2-nginx@$r]:-} php ${R[cl.cpu_cweb2-php@$r]:-}"
    else
        detail="lb1 ${R[wrk.cpu_lb1@$r]:-} web1 ${R[wrk.cpu_web1@$r]:-} web2 ${R[wrk.cpu_web2@$r]:-}"
    fi
    log "$what round $r: ${rps} req/s, p50 ${R[$k.p50@$r]} ms, p99 ${R[$k.p99@$r]} ms; CPU us/req $detail db2 ${R[$k.cpu_db2@$r]:-} all ${R[$k.cpu_all@$r]:-}; machine ${R[$k.busy@$r]}% busy, ${R[$k.steal@$r]}% steal"
}

READS0=()
for h in web1 web2; do READS0+=("$(metric_sum "${ADMIN[$h]}" rampart_web_db_reads_total 'role="replica"')"); done

if ((WARMUP > 0)); then
    log "warm-up: ${WARMUP} s each of sysbench and wrk on each path (not measured)"
    run_sysbench 0 "$WARMUP"
    if ((SB_TLS_ON)); then run_sysbench 0 "$WARMUP" tls; fi
    run_wrk rampart 0 "$WARMUP"
    if ((CLASSIC)); then run_wrk classic 0 "$WARMUP"; fi
fi

# Alternate them so that drift in the machine (other load, steal) hits all alike.
for ((r = 1; r <= ROUNDS; r++)); do
    run_sysbench "$r" "$DURATION"
    if ((SB_TLS_ON)); then run_sysbench "$r" "$DURATION" tls; fi
    run_wrk rampart "$r" "$DURATION"
    if ((CLASSIC)); then run_wrk classic "$r" "$DURATION"; fi
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
    run_wrk rampart 0 "$DURATION" "$RUN_DIR/wrk-profile.txt"
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
if ((CLASSIC)); then
    # HAProxy's output is its access log (one line a request) plus its own messages.
    grep -v -E '^[0-9.]+:[0-9]+ \[' "$CL/haproxy.log" >"$RUN_DIR/classic-haproxy.log" 2>/dev/null || true
    n=$(grep -c -E 'ALERT|WARNING|is DOWN' "$RUN_DIR/classic-haproxy.log" || true)
    ((${n:-0} == 0)) || NOTES+=("classic haproxy log: $n alert/warning lines, e.g.: $(grep -m1 -E 'ALERT|WARNING|is DOWN' "$RUN_DIR/classic-haproxy.log" | cut -c1-200)")
    R[cl.access_haproxy]=$(grep -c -E '^[0-9.]+:[0-9]+ \[' "$CL/haproxy.log" || true)
    for n in 1 2; do
        cp "$CL/php$n.log" "$RUN_DIR/classic-php$n.log" 2>/dev/null || true
        cp "$CL/nginx$n/logs/error.log" "$RUN_DIR/classic-nginx$n-error.log" 2>/dev/null || true
        R[cl.access_cweb$n]=$(wc -l <"$CL/nginx$n/logs/access.log" 2>/dev/null || echo 0)
        for f in "$RUN_DIR/classic-php$n.log" "$RUN_DIR/classic-nginx$n-error.log"; do
            c=$(grep -c -i -E 'warn|error|alert|crit|emerg' "$f" 2>/dev/null || true)
            ((${c:-0} == 0)) || NOTES+=("$(basename "$f"): $c warning/error lines, e.g.: $(grep -m1 -i -E 'warn|error|alert|crit|emerg' "$f" | cut -c1-200)")
        done
    done
    # Persistent connections: one per PHP-FPM child that served a request, all TLS.
    R[cl.db2_conns]=$(sql "$SOCK2" "SELECT COUNT(*), COALESCE(SUM(s.VARIABLE_VALUE <> ''), 0)
        FROM performance_schema.threads t LEFT JOIN performance_schema.status_by_thread s
        ON s.THREAD_ID = t.THREAD_ID AND s.VARIABLE_NAME = 'Ssl_cipher'
        WHERE t.PROCESSLIST_USER = '$CL_DB_USER'" 2>/dev/null | awk '{ print $1 " (" $2 " with TLS)" }' || true)
fi

# --- report ------------------------------------------------------------------------------

# A classic web server's CPU is its nginx plus its PHP-FPM (master and children).
for ((r = 1; r <= ROUNDS; r++)); do
    for n in 1 2; do
        [[ -n ${R[cl.cpu_cweb$n-nginx@$r]:-} && -n ${R[cl.cpu_cweb$n-php@$r]:-} ]] || continue
        R[cl.cpu_cweb$n@$r]=$(awk -v a="${R[cl.cpu_cweb$n-nginx@$r]}" -v b="${R[cl.cpu_cweb$n-php@$r]}" 'BEGIN{printf "%.1f", a+b}')
    done
done
for key in sbt.qps sbt.avg sbt.p99 sbt.busy sbt.steal sbt.cpu_all sbt.cpu_other sbt.cpu_db2 \
    sb.qps sb.avg sb.p99 sb.busy sb.steal wrk.rps wrk.p50 wrk.p99 wrk.busy wrk.steal \
    wrk.cpu_all wrk.cpu_other sb.cpu_all sb.cpu_other \
    cl.rps cl.p50 cl.p99 cl.busy cl.steal cl.cpu_all cl.cpu_other cl.cpu_cweb1 cl.cpu_cweb2 \
    $(for c in "${DB2_COMS[@]}"; do echo "wrk.$c cl.$c"; done) \
    $(for h in "${ALL_PROCS[@]}"; do echo "wrk.cpu_$h wrk.pct_$h sb.cpu_$h sb.pct_$h cl.cpu_$h cl.pct_$h"; done); do
    vals=()
    for ((r = 1; r <= ROUNDS; r++)); do vals+=("${R[$key@$r]:-}"); done
    R[$key]=$(median "${vals[@]}")
done
for key in wrk.client cl.client sb.client sbt.client "${!REST_LABELS[@]}"; do
    key=${key/ /.rest:}
    vals=()
    for ((r = 1; r <= ROUNDS; r++)); do vals+=("${R[$key@$r]:-0}"); done
    R[$key]=$(median "${vals[@]}")
done
# The rest's parts, largest first: the client, then each label at 1 us/req or more (by
# median), then the smaller ones together, then what no process table saw.
for kind in wrk cl sb sbt; do
    small=() listed=()
    for key in "${!REST_LABELS[@]}"; do
        [[ $key == "$kind "* ]] || continue
        label=${key#* }
        if awk -v v="${R[$kind.rest:$label]:-0}" 'BEGIN{exit !(v >= 1)}'; then listed+=("${R[$kind.rest:$label]} $label"); else small+=("$label"); fi
    done
    REST_ORDER[$kind]=$(printf '%s\n' "${listed[@]}" | awk 'NF' | sort -g -r | awk '{ print $2 }' | tr '\n' ' ')
    for ((r = 1; r <= ROUNDS; r++)); do
        R[$kind.rest_small@$r]=$(for label in "${small[@]}"; do echo "${R[$kind.rest:$label@$r]:-0}"; done | awk '{ s += $1 } END { printf "%.1f", s }')
        R[$kind.rest_unacc@$r]=$(for key in "${!REST_LABELS[@]}"; do
            if [[ $key == "$kind "* ]]; then echo "${R[$kind.rest:${key#* }@$r]:-0}"; fi
        done | awk -v o="${R[$kind.cpu_other@$r]:-}" -v c="${R[$kind.client@$r]:-0}" '{ s += $1 } END { if (o != "") printf "%.1f", o - c - s }')
    done
    for key in "$kind.rest_small" "$kind.rest_unacc"; do
        vals=()
        for ((r = 1; r <= ROUNDS; r++)); do vals+=("${R[$key@$r]:-}"); done
        R[$key]=$(median "${vals[@]}")
    done
done
rest_rows() { # kind client-name: the rows under a "rest" row
    local label
    row "    $2 (the client)" "$1.client"
    for label in ${REST_ORDER[$1]}; do row "    $label" "$1.rest:$label"; done
    row "    others under 1 us/req" "$1.rest_small"
    row "    unaccounted" "$1.rest_unacc"
}
ratio() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN{ if (a=="" || b=="" || b+0==0) print ""; else printf "%.2f", a/b }'; }
for ((r = 1; r <= ROUNDS; r++)); do
    R[ratio@$r]=$(ratio "${R[wrk.rps@$r]:-}" "${R[sb.qps@$r]:-}")
    R[tlsratio@$r]=$(ratio "${R[wrk.rps@$r]:-}" "${R[sbt.qps@$r]:-}")
    R[clratio@$r]=$(ratio "${R[cl.rps@$r]:-}" "${R[sb.qps@$r]:-}")
    R[rc@$r]=$(ratio "${R[wrk.rps@$r]:-}" "${R[cl.rps@$r]:-}")
    R[rc_cpu@$r]=$(ratio "${R[cl.cpu_all@$r]:-}" "${R[wrk.cpu_all@$r]:-}")
done
R[ratio]=$(ratio "${R[wrk.rps]:-}" "${R[sb.qps]:-}")
R[tlsratio]=$(ratio "${R[wrk.rps]:-}" "${R[sbt.qps]:-}")
R[clratio]=$(ratio "${R[cl.rps]:-}" "${R[sb.qps]:-}")
R[rc]=$(ratio "${R[wrk.rps]:-}" "${R[cl.rps]:-}")
R[rc_cpu]=$(ratio "${R[cl.cpu_all]:-}" "${R[wrk.cpu_all]:-}")
non2xx=0 sockerrs="" cl_non2xx=0 cl_sockerrs=""
for ((r = 1; r <= ROUNDS; r++)); do
    non2xx=$((non2xx + ${R[wrk.non2xx@$r]:-0}))
    [[ -z ${R[wrk.sockerr@$r]:-} ]] || sockerrs+="${sockerrs:+; }r$r: ${R[wrk.sockerr@$r]}"
    cl_non2xx=$((cl_non2xx + ${R[cl.non2xx@$r]:-0}))
    [[ -z ${R[cl.sockerr@$r]:-} ]] || cl_sockerrs+="${cl_sockerrs:+; }r$r: ${R[cl.sockerr@$r]}"
done
verdict() { # ratio goal -> met / NOT met
    if [[ -n $1 ]] && awk -v a="$1" -v g="$2" 'BEGIN{exit !(a >= g)}'; then echo "met"; else echo "NOT met"; fi
}
VERDICT=$(verdict "${R[ratio]}" "$GOAL")
CL_VERDICT=$(verdict "${R[rc]}" "$CLASSIC_GOAL")

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
    if ((CLASSIC)); then
        echo "  classic: the same wrk via haproxy $CL_LB_ADDR:$CL_PORT -> nginx cweb1/cweb2 (TLS, client certs) -> php-fpm ($CLASSIC_CHILDREN static children each) -> db2 (TLS, persistent PDO)"
        echo "  $NCPU CPUs shared by everything (wrk, sysbench, lb1, web1, web2, db1, db2, the classic stack); $ROUNDS rounds alternating sysbench, wrk, wrk classic"
        echo "  $HAPROXY_VERSION; $NGINX_VERSION; $PHP_VERSION"
    else
        echo "  $NCPU CPUs shared by everything (wrk, sysbench, lb1, web1, web2, db1, db2); $ROUNDS rounds alternating sysbench, wrk"
    fi
    echo "  $RAMPART_VERSION; $SB_VERSION; $WRK_VERSION; $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    line=$(printf '%-34s' "")
    for ((r = 1; r <= ROUNDS; r++)); do line+=$(printf ' %10s' "round $r"); done
    echo "$line$(printf ' %10s' median)"
    row "sysbench point selects/s" sb.qps
    if ((SB_TLS_ON)); then row "sysbench over TLS (TCP) selects/s" sbt.qps; fi
    row "https req/s (through lb1)" wrk.rps
    row "ratio https/sysbench" ratio
    if ((SB_TLS_ON)); then row "ratio https/sysbench over TLS" tlsratio; fi
    if ((CLASSIC)); then
        row "classic req/s (through haproxy)" cl.rps
        row "ratio classic/sysbench" clratio
        row "ratio rampart/classic req/s" rc
    fi
    row "wrk p50 ms" wrk.p50
    row "wrk p99 ms" wrk.p99
    if ((CLASSIC)); then
        row "classic wrk p50 ms" cl.p50
        row "classic wrk p99 ms" cl.p99
    fi
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
    rest_rows wrk wrk
    row "  whole machine" wrk.cpu_all
    if ((CLASSIC)); then
        echo "CPU us per classic request:"
        row "  haproxy" cl.cpu_haproxy
        for n in 1 2; do
            row "  cweb$n nginx" "cl.cpu_cweb$n-nginx"
            row "  cweb$n php-fpm (all workers)" "cl.cpu_cweb$n-php"
        done
        row "  db2 mariadbd (replica)" cl.cpu_db2
        row "  db1 mariadbd (primary)" cl.cpu_db1
        row "  rest (wrk, kernel, others)" cl.cpu_other
        rest_rows cl wrk
        row "  whole machine" cl.cpu_all
        row "ratio classic/rampart CPU us/req" rc_cpu
    fi
    echo "CPU % of one core during wrk:"
    for h in "${PROCS[@]}"; do row "  $h" "wrk.pct_$h"; done
    if ((CLASSIC)); then
        echo "CPU % of one core during wrk classic:"
        for h in "${CL_PROCS[@]}" db2; do row "  $h" "cl.pct_$h"; done
    fi
    echo "CPU us per sysbench query:"
    row "  db2 mariadbd" sb.cpu_db2
    row "  rest (sysbench, kernel, others)" sb.cpu_other
    rest_rows sb sysbench
    row "  whole machine" sb.cpu_all
    if ((SB_TLS_ON)); then
        echo "CPU us per sysbench query over TLS (TCP):"
        row "  db2 mariadbd" sbt.cpu_db2
        row "  rest (sysbench, kernel, others)" sbt.cpu_other
        rest_rows sbt sysbench
        row "  whole machine" sbt.cpu_all
    fi
    row "machine busy % (wrk run)" wrk.busy
    row "machine steal % (wrk run)" wrk.steal
    if ((CLASSIC)); then
        row "machine busy % (classic run)" cl.busy
        row "machine steal % (classic run)" cl.steal
    fi
    row "machine busy % (sysbench run)" sb.busy
    row "machine steal % (sysbench run)" sb.steal
    if ((SB_TLS_ON)); then
        row "machine busy % (sysbench tls run)" sbt.busy
        row "machine steal % (sysbench tls run)" sbt.steal
    fi
    echo
    printf '%-34s %s\n' "wrk non-2xx/3xx responses" "$non2xx"
    printf '%-34s %s\n' "wrk socket errors" "${sockerrs:-none}"
    for h in web1 web2; do
        printf '%-34s %s\n' "$h db reads replica/primary" "${R[$h.replica_reads]}/${R[$h.primary_reads]} (replica +${R[$h.replica_reads_delta]} since the warm-up; lb1 sent it ${R[$h.lb_2xx]} 2xx)"
    done
    if ((CLASSIC)); then
        printf '%-34s %s\n' "classic non-2xx/3xx responses" "$cl_non2xx"
        printf '%-34s %s\n' "classic socket errors" "${cl_sockerrs:-none}"
        printf '%-34s %s\n' "classic access log lines" "haproxy ${R[cl.access_haproxy]:-?}, cweb1 ${R[cl.access_cweb1]:-?}, cweb2 ${R[cl.access_cweb2]:-?}"
        printf '%-34s %s\n' "classic db2 connections" "$(fmt "${R[cl.db2_conns]:-}")"
        echo
        echo "side by side (medians)                rampart    classic"
        side() { printf '%-34s %10s %10s\n' "$1" "$(fmt "${R[$2]:-}")" "$(fmt "${R[$3]:-}")"; }
        side "req/s" wrk.rps cl.rps
        side "p50 ms" wrk.p50 cl.p50
        side "p99 ms" wrk.p99 cl.p99
        side "CPU us/req lb1 | haproxy" wrk.cpu_lb1 cl.cpu_haproxy
        side "CPU us/req web1 | cweb1 nginx+php" wrk.cpu_web1 cl.cpu_cweb1
        side "CPU us/req web2 | cweb2 nginx+php" wrk.cpu_web2 cl.cpu_cweb2
        side "CPU us/req db2" wrk.cpu_db2 cl.cpu_db2
        side "CPU us/req rest" wrk.cpu_other cl.cpu_other
        side "CPU us/req whole machine" wrk.cpu_all cl.cpu_all
        for c in "${DB2_COMS[@]}"; do side "db2 ${c,,} per request" "wrk.$c" "cl.$c"; done
    fi
    echo
    printf 'goal: https req/s >= %s x sysbench qps: %s (median ratio %s)\n' "$GOAL" "$VERDICT" "$(fmt "${R[ratio]}")"
    if ((SB_TLS_ON)); then
        printf '      against sysbench over TLS on TCP, as the web servers connect: %s (median ratio %s)\n' \
            "$(verdict "${R[tlsratio]}" "$GOAL")" "$(fmt "${R[tlsratio]}")"
    fi
    if ((CLASSIC)); then
        printf 'goal: rampart req/s >= %s x classic req/s: %s (median ratio %s; CPU per request classic/rampart %s)\n' \
            "$CLASSIC_GOAL" "$CL_VERDICT" "$(fmt "${R[rc]}")" "$(fmt "${R[rc_cpu]}")"
    fi
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

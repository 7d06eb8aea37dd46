#!/usr/bin/env bash
# bench/lb.sh: rampart's load balancer against HAProxy 2.6 and nginx 1.22, one command.
#
# Each load balancer terminates TLS (the same ECDSA P-256 certificate) on 127.0.0.1, runs
# one worker thread pinned to one CPU, and balances round robin over keep-alive HTTP/1.1 to
# the same two rampart-test-backend processes. wrk (one thread) and the backends share a
# second CPU. Two runs per load balancer, one load balancer at a time:
#   keepalive  wrk reuses its connections         -> req/s, p50/p99, LB CPU us per request
#   newconn    `Connection: close`, new TLS connection per request -> the same numbers
#
# Usage:   bench/lb.sh
# Env:     DURATION=10 CONNS=32 WARMUP=2 ROUNDS=1 BASE_PORT=28000 LB_CPU=0 LOAD_CPU=1
#          RESULTS_DIR=<repo>/target/bench LBS="rampart haproxy nginx" SKIP_BUILD=0
#          RAMPART_LOG=<tracing filter for rampart; default "warn">
# Output:  a table on stdout, $RESULTS_DIR/lb-<timestamp>.json, and the raw wrk output,
#          configs and logs in $RESULTS_DIR/lb-<timestamp>/. See bench/README.md.
set -euo pipefail

export PATH="$PATH:/usr/sbin:/sbin"
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-1}
BASE_PORT=${BASE_PORT:-28000}
LB_CPU=${LB_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
LBS=${LBS:-rampart haproxy nginx}
SKIP_BUILD=${SKIP_BUILD:-0}
RAMPART_LOG_USED=${RAMPART_LOG:-warn}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RESULTS_DIR=${RESULTS_DIR:-$ROOT/target/bench}
case $RESULTS_DIR in /*) ;; *) RESULTS_DIR=$ROOT/$RESULTS_DIR ;; esac
HOST_HEADER=www.foobar.com
PROBE_SECONDS=1

log() { printf '[lb.sh] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

for v in DURATION CONNS WARMUP ROUNDS BASE_PORT LB_CPU LOAD_CPU; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
((DURATION >= 1)) || die "DURATION must be at least 1"
((CONNS >= 1)) || die "CONNS must be at least 1"
((ROUNDS >= 1)) || die "ROUNDS must be at least 1"
for lb in $LBS; do
    case $lb in rampart | haproxy | nginx) ;; *) die "LBS: unknown load balancer '$lb' (rampart, haproxy, nginx)" ;; esac
done

# --- tools -------------------------------------------------------------------------------

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_tools() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v haproxy >/dev/null || missing+=(haproxy)
    command -v nginx >/dev/null || missing+=(nginx-light)
    command -v curl >/dev/null || missing+=(curl)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v taskset >/dev/null || missing+=(util-linux)
    command -v ss >/dev/null || missing+=(iproute2)
    command -v getconf >/dev/null || missing+=(libc-bin)
    command -v timeout >/dev/null || missing+=(coreutils)
    install_missing "${missing[@]}"
}
ensure_tools

NCPU=$(getconf _NPROCESSORS_ONLN)
((NCPU >= 2)) || die "need at least 2 CPUs (one for the load balancer, one for wrk and the backends); have $NCPU"
((LB_CPU < NCPU && LOAD_CPU < NCPU)) || die "LB_CPU=$LB_CPU / LOAD_CPU=$LOAD_CPU: this machine has CPUs 0-$((NCPU - 1))"
((LB_CPU != LOAD_CPU)) || die "LB_CPU and LOAD_CPU must differ"
CLK_TCK=$(getconf CLK_TCK)

HAPROXY_VERSION=$(haproxy -v 2>&1 | sed -n 1p)
NGINX_VERSION=$(nginx -v 2>&1 | sed -n 1p)
WRK_VERSION=$( (wrk -v 2>&1 || true) | sed -n 1p)
OPENSSL_VERSION=$(openssl version 2>&1 | sed -n 1p)
[[ $HAPROXY_VERSION == *"version 2.6."* ]] || log "warning: expected HAProxy 2.6, found: $HAPROXY_VERSION"
[[ $NGINX_VERSION == *"nginx/1.22."* ]] || log "warning: expected nginx 1.22, found: $NGINX_VERSION"

# --- build -------------------------------------------------------------------------------

if [[ $SKIP_BUILD != 1 ]]; then
    log "building rampart (release)"
    (cd "$ROOT" && cargo build --release -p rampart -p rampart-test-support) >&2
fi
RAMPART=$TARGET_DIR/release/rampart
BACKEND=$TARGET_DIR/release/rampart-test-backend
[[ -x $RAMPART ]] || die "$RAMPART not found; build failed?"
[[ -x $BACKEND ]] || die "$BACKEND not found; build failed?"
RAMPART_VERSION=$("$RAMPART" --version 2>&1 | sed -n 1p)

# --- processes ---------------------------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rampart-lb-bench.XXXXXX")
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

stop() { # pid...: SIGTERM, then reap
    local pid
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    reap "$@"
}

cleanup() {
    local rc=$? pids=("${!LIVE[@]}")
    trap - EXIT INT TERM
    if ((${#pids[@]})); then stop "${pids[@]}"; fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

children_of() { # pid -> its child pids, one a line
    local f line fields
    for f in /proc/[0-9]*/stat; do
        { read -r line <"$f"; } 2>/dev/null || continue
        read -ra fields <<<"${line##*) }"
        if [[ ${fields[1]} == "$1" ]]; then
            f=${f#/proc/}
            echo "${f%/stat}"
        fi
    done
}

tree_of() { # pid -> the pid and all its descendants
    local p
    echo "$1"
    for p in $(children_of "$1"); do tree_of "$p"; done
}

cpu_ticks() { # pid... -> utime+stime summed over the pids, in clock ticks
    local pid line fields total=0
    for pid in "$@"; do
        { read -r line <"/proc/$pid/stat"; } 2>/dev/null || continue
        read -ra fields <<<"${line##*) }"
        # After "comm)": field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}

START_PID=
start_bg() { # what cpu logfile cmd...: start pinned to cpu, output to logfile
    local what=$1 cpu=$2 logf=$3
    shift 3
    taskset -c "$cpu" "$@" >"$logf" 2>&1 </dev/null &
    START_PID=$!
    LIVE[$START_PID]=$what
}

port_in_use() { [[ -n $(ss -Htln "( sport = :$1 )" 2>/dev/null || true) ]]; }

cpu_stat() { # cpu -> "busy total" jiffies of that CPU from /proc/stat
    awk -v c="cpu$1" '$1 == c { busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6 }' /proc/stat
}

now() { date +%s.%N; }

# --- setup -------------------------------------------------------------------------------

TS=$(date -u +%Y%m%dT%H%M%SZ)
NOTES=()
mkdir -p "$RESULTS_DIR"
RUN_DIR=$RESULTS_DIR/lb-$TS
JSON_OUT=$RESULTS_DIR/lb-$TS.json
mkdir -p "$RUN_DIR"

B1=$((BASE_PORT + 1))
B2=$((BASE_PORT + 2))
declare -A PORT=([rampart]=$((BASE_PORT + 10)) [haproxy]=$((BASE_PORT + 20)) [nginx]=$((BASE_PORT + 30)))
declare -A PROBE_PORT=([haproxy]=$((BASE_PORT + 21)) [nginx]=$((BASE_PORT + 31)))
RAMPART_ADMIN=$((BASE_PORT + 11))
RAMPART_HTTP=$((BASE_PORT + 14))
for p in $B1 $B2 "${PORT[@]}" "${PROBE_PORT[@]}" $RAMPART_ADMIN  $RAMPART_HTTP; do
    port_in_use "$p" && die "port $p is already in use; choose another range with BASE_PORT=..."
done

log "work dir $WORK; results in $RUN_DIR"
# Run private copies: the workspace may be rebuilt while the benchmark runs.
mkdir -p "$WORK/bin"
cp "$RAMPART" "$BACKEND" "$WORK/bin/"
RAMPART=$WORK/bin/$(basename "$RAMPART")
BACKEND=$WORK/bin/$(basename "$BACKEND")
CERTS=$WORK/certs
"$RAMPART" cert --dir "$CERTS" >"$WORK/cert.log" 2>&1 || {
    cat "$WORK/cert.log" >&2
    die "rampart cert failed"
}
for f in ca.pem site.pem site.key; do [[ -s $CERTS/$f ]] || die "rampart cert did not write $CERTS/$f"; done
cat "$CERTS/site.pem" "$CERTS/site.key" >"$CERTS/site-haproxy.pem"
chmod 600 "$CERTS/site-haproxy.pem"

# Two backends, shared by all three load balancers, pinned with wrk.
for n in 1 2; do
    port_var=B$n
    start_bg "backend web$n" "$LOAD_CPU" "$WORK/web$n.log" "$BACKEND" --name "web$n" --listen "127.0.0.1:${!port_var}"
    pid=$START_PID
    for ((i = 0; i < 100; i++)); do
        grep -q '^listening ' "$WORK/web$n.log" 2>/dev/null && break
        alive "$pid" || break
        sleep 0.1
    done
    grep -q '^listening ' "$WORK/web$n.log" || {
        cat "$WORK/web$n.log" >&2
        die "backend web$n did not start on 127.0.0.1:${!port_var}"
    }
done
log "backends: web1 127.0.0.1:$B1, web2 127.0.0.1:$B2"

# Same TLS policy everywhere: TLS 1.2 + 1.3, ECDHE + AEAD only, client's suite order
# (rustls' behaviour), session resumption on (cache + tickets), ALPN h2,http/1.1.
TLS12_CIPHERS=ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305
TLS13_SUITES=TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
HSTS="max-age=63072000; includeSubDomains"

# rampart
cat >"$WORK/rampart.toml" <<EOF
[listen]
https = "127.0.0.1:${PORT[rampart]}"
admin = "127.0.0.1:$RAMPART_ADMIN"
# The plain-HTTP redirect listener gets no traffic here; it is pinned to loopback so that
# rampart never binds its default (0.0.0.0:80).
http = "127.0.0.1:$RAMPART_HTTP"

[[tls.certificates]]
cert = "$CERTS/site.pem"
key = "$CERTS/site.key"

[[backends]]
name = "web1"
address = "127.0.0.1:$B1"

[[backends]]
name = "web2"
address = "127.0.0.1:$B2"

[limits]
rate_limit_per_second = 0      # 0 disables the per-client rate limit (it is on by default)
max_connections = 100000

[log]
access_log = "off"

[runtime]
worker_threads = 1
EOF

# HAProxy refuses to start when it cannot raise RLIMIT_NOFILE to ~2*maxconn, so maxconn is
# capped by this shell's `ulimit -n` (irrelevant at CONNS connections, but it must start).
NOFILE=$(ulimit -n)
[[ $NOFILE =~ ^[0-9]+$ ]] || NOFILE=200000
HAPROXY_MAXCONN=$(((NOFILE - 200) / 2 < 100000 ? (NOFILE - 200) / 2 : 100000))

# HAProxy. Per-request work matched to rampart's defaults: X-Forwarded-For/-Proto/-Host and
# Forwarded upstream, HSTS downstream, active health checks every 2 s on /healthz.
# The second frontend only serves the TLS-resumption probe (never measured).
cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn $HAPROXY_MAXCONN
    ssl-default-bind-ciphers $TLS12_CIPHERS
    ssl-default-bind-ciphersuites $TLS13_SUITES
    ssl-default-bind-options ssl-min-ver TLSv1.2 prefer-client-ciphers

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 3s
    timeout client 60s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 60s
    maxconn $HAPROXY_MAXCONN

frontend bench
    bind 127.0.0.1:${PORT[haproxy]} ssl crt $CERTS/site-haproxy.pem alpn h2,http/1.1
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header Forwarded "for=%[src];proto=https;host=\"%[req.hdr(host)]\""
    http-response set-header Strict-Transport-Security "$HSTS"
    default_backend web

frontend probe
    bind 127.0.0.1:${PROBE_PORT[haproxy]} ssl crt $CERTS/site-haproxy.pem alpn h2,http/1.1
    http-after-response set-header X-Tls-Resumed %[ssl_fc_is_resumed]
    default_backend web

backend web
    balance roundrobin
    option httpchk GET /healthz
    server web1 127.0.0.1:$B1 check inter 2s fall 3 rise 2
    server web2 127.0.0.1:$B2 check inter 2s fall 3 rise 2
EOF

# nginx. Same per-request work as above (nginx OSS has no active health checks).
# keepalive_requests is raised from nginx's default of 1000 on both sides: rampart and
# HAProxy do not close a connection after N requests, and wrk would otherwise do a new TLS
# handshake every 1000 requests in the keep-alive run.
mkdir -p "$WORK/nginx/conf" "$WORK/nginx/logs" "$WORK/nginx/tmp"
NGINX_WORKER_CONNECTIONS=$((NOFILE >= 200000 ? 100000 : NOFILE / 2))
NGINX_USER=""
[[ $(id -u) -eq 0 ]] && NGINX_USER="user $(id -un) $(id -gn);"
NGINX_TEMP=""
NGINX_BUILD=$(nginx -V 2>&1 || true)
for t in client_body proxy fastcgi uwsgi scgi; do
    if [[ $NGINX_BUILD != *"--without-http_${t}_module"* ]]; then
        NGINX_TEMP+="    ${t}_temp_path $WORK/nginx/tmp/$t;"$'\n'
    fi
done
cat >"$WORK/nginx/conf/nginx.conf" <<EOF
$NGINX_USER
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;

events {
    worker_connections $NGINX_WORKER_CONNECTIONS;
}

http {
    access_log off;
$NGINX_TEMP
    keepalive_timeout 60s;
    keepalive_requests 1000000;

    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers $TLS12_CIPHERS;
    ssl_prefer_server_ciphers off;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    ssl_certificate $CERTS/site.pem;
    ssl_certificate_key $CERTS/site.key;

    upstream web {
        server 127.0.0.1:$B1;
        server 127.0.0.1:$B2;
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }

    server {
        listen 127.0.0.1:${PORT[nginx]} ssl http2;
        server_name www.foobar.com foobar.com;
        add_header Strict-Transport-Security "$HSTS" always;
        location / {
            proxy_pass http://web;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header Forwarded "for=\$remote_addr;proto=\$scheme;host=\"\$host\"";
        }
    }

    # TLS-resumption probe only (never measured).
    server {
        listen 127.0.0.1:${PROBE_PORT[nginx]} ssl http2;
        add_header X-Tls-Resumed \$ssl_session_reused always;
        location / {
            proxy_pass http://web;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF

# wrk script for the probe: counts responses by the X-Tls-Resumed header the LB adds.
cat >"$WORK/probe.lua" <<'EOF'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) resumed = 0; full = 0 end
function response(status, headers, body)
  local v = headers["X-Tls-Resumed"] or headers["x-tls-resumed"]
  if v == "1" or v == "r" then resumed = resumed + 1 else full = full + 1 end
end
function done(summary, latency, requests)
  local r, f = 0, 0
  for _, t in ipairs(threads) do r = r + t:get("resumed"); f = f + t:get("full") end
  io.write(string.format("probe resumed=%d full=%d\n", r, f))
end
EOF

cp "$WORK/rampart.toml" "$WORK/haproxy.cfg" "$RUN_DIR/"
cp "$WORK/nginx/conf/nginx.conf" "$RUN_DIR/nginx.conf"

# --- load balancers ----------------------------------------------------------------------

LB_PID=
LB_LOG=
start_lb() { # name
    case $1 in
    rampart)
        LB_LOG=$WORK/rampart.log
        start_bg rampart "$LB_CPU" "$LB_LOG" env RAMPART_LOG="$RAMPART_LOG_USED" "$RAMPART" lb --config "$WORK/rampart.toml"
        ;;
    haproxy)
        LB_LOG=$WORK/haproxy.log
        haproxy -c -f "$WORK/haproxy.cfg" >"$WORK/haproxy-check.log" 2>&1 || {
            cat "$WORK/haproxy-check.log" >&2
            die "haproxy rejected its config ($WORK/haproxy.cfg)"
        }
        start_bg haproxy "$LB_CPU" "$LB_LOG" haproxy -db -f "$WORK/haproxy.cfg"
        ;;
    nginx)
        LB_LOG=$WORK/nginx/logs/error.log
        nginx -t -p "$WORK/nginx" -c conf/nginx.conf -e "$WORK/nginx/logs/error.log" >"$WORK/nginx-check.log" 2>&1 || {
            cat "$WORK/nginx-check.log" >&2
            die "nginx rejected its config ($WORK/nginx/conf/nginx.conf)"
        }
        start_bg nginx "$LB_CPU" "$WORK/nginx/stderr.log" nginx -p "$WORK/nginx" -c conf/nginx.conf -e "$WORK/nginx/logs/error.log"
        ;;
    esac
    LB_PID=$START_PID
}

show_lb_log() { # name
    log "---- $1 log ($LB_LOG) ----"
    tail -n 30 "$LB_LOG" >&2 2>/dev/null || true
    if [[ $1 == nginx ]]; then tail -n 20 "$WORK/nginx/stderr.log" >&2 2>/dev/null || true; fi
    log "---- end of $1 log ----"
}

curl_lb() { # port -> body of GET / over HTTP/1.1
    curl -sk --http1.1 --max-time 3 -H "Host: $HOST_HEADER" "https://127.0.0.1:$1/" 2>/dev/null || true
}

sanity_check() { # name port: wait up to 10 s for a backend's answer through the LB
    local name=$1 port=$2 body="" i seen=""
    for ((i = 0; i < 50; i++)); do
        if ! alive "$LB_PID"; then
            show_lb_log "$name"
            die "$name exited during startup"
        fi
        body=$(curl_lb "$port")
        [[ $body == web1 || $body == web2 ]] && break
        sleep 0.2
    done
    if [[ $body != web1 && $body != web2 ]]; then
        show_lb_log "$name"
        log "---- curl -isk --http1.1 https://127.0.0.1:$port/ -H 'Host: $HOST_HEADER' ----"
        curl -isk --http1.1 --max-time 3 -H "Host: $HOST_HEADER" "https://127.0.0.1:$port/" >&2 || log "(curl exit status $?)"
        die "sanity check failed for $name: GET https://127.0.0.1:$port/ did not return web1 or web2 within 10 s (its log is above)"
    fi
    seen=$body
    for ((i = 0; i < 3; i++)); do seen+=" $(curl_lb "$port")"; done
    [[ $seen == *web1* && $seen == *web2* ]] ||
        log "warning: 4 requests through $name did not reach both backends (got: $seen)"
}

tls_info() { # port -> "TLSv1.3 TLS_AES_256_GCM_SHA384 X25519" (what an OpenSSL client gets)
    local out
    out=$(timeout 5 openssl s_client -connect "127.0.0.1:$1" </dev/null 2>/dev/null || true)
    awk '/^New, /{p=$2; sub(/,$/,"",p); c=$NF}
         /^Server Temp Key:/{k=$4; sub(/,$/,"",k)}
         END{ if (p=="") print "handshake-failed"; else print p " " c " " k }' <<<"$out"
}

http_get_close() { printf 'GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$HOST_HEADER"; }

server_resumes() { # port -> yes/no: does the LB resume an OpenSSL client's session?
    local sess=$WORK/session-$1.pem
    rm -f "$sess"
    # Read the whole response so the TLS 1.3 tickets (sent after the handshake) arrive
    # before the session is saved.
    http_get_close | timeout 5 openssl s_client -quiet -connect "127.0.0.1:$1" -sess_out "$sess" >/dev/null 2>&1 || true
    [[ -s $sess ]] || {
        echo no-session
        return
    }
    local out
    out=$(http_get_close | timeout 5 openssl s_client -connect "127.0.0.1:$1" -sess_in "$sess" -ign_eof 2>/dev/null || true)
    if grep -q '^Reused,' <<<"$out"; then
        echo yes
    else
        echo no
    fi
}

rampart_metric() { # admin-port name -> sum of the samples of that metric (0 if unreachable)
    local m
    m=$(curl -s --max-time 3 "http://127.0.0.1:$1/metrics" 2>/dev/null || true)
    awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%d", s }' <<<"$m"
}

WRK_PID=
run_wrk() { # out seconds url [wrk args...]
    local out=$1 secs=$2 url=$3 rc=0
    shift 3
    timeout --kill-after=5 $((secs + 30)) taskset -c "$LOAD_CPU" \
        wrk -t1 -c"$CONNS" -d"${secs}s" --latency --timeout 5s -H "Host: $HOST_HEADER" "$@" "$url" >"$out" 2>&1 &
    WRK_PID=$!
    LIVE[$WRK_PID]=wrk
    wait "$WRK_PID" || rc=$?
    unset "LIVE[$WRK_PID]"
    ((rc == 0)) || log "wrk exited with status $rc (see $out)"
    return 0
}

to_ms() { # wrk latency such as 812.00us, 1.23ms, 2.01s, 1.50m -> milliseconds
    awk -v v="$1" 'BEGIN {
        if (v == "") { print ""; exit }
        if (v ~ /us$/) { sub(/us$/, "", v); v = v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v) }
        else if (v ~ /s$/) { sub(/s$/, "", v); v = v * 1000 }
        else if (v ~ /m$/) { sub(/m$/, "", v); v = v * 60000 }
        else if (v ~ /h$/) { sub(/h$/, "", v); v = v * 3600000 }
        printf "%.3f", v }'
}

declare -A R=() # "<lb>.<key>" -> value ("" when unknown)

measure() { # lb mode port [wrk args...]
    local lb=$1 mode=$2 port=$3 out pids t0 t1 c0 c1 reqs rps p50 p99 secs cpu_s
    local lb0 lbt0 ld0 ldt0 lb1 lbt1 ld1 ldt1
    shift 3
    out=$RUN_DIR/wrk-$lb-$mode$RTAG.txt
    mapfile -t pids < <(tree_of "$LB_PID")
    local hf0=0 hf1=0
    [[ $lb == rampart ]] && hf0=$(rampart_metric "$RAMPART_ADMIN" rampart_lb_tls_handshake_failures_total)
    read -r lb0 lbt0 < <(cpu_stat "$LB_CPU")
    read -r ld0 ldt0 < <(cpu_stat "$LOAD_CPU")
    c0=$(cpu_ticks "${pids[@]}")
    t0=$(now)
    run_wrk "$out" "$DURATION" "https://127.0.0.1:$port/" "$@"
    t1=$(now)
    mapfile -t pids < <(tree_of "$LB_PID")
    c1=$(cpu_ticks "${pids[@]}")
    [[ $lb == rampart ]] && hf1=$(rampart_metric "$RAMPART_ADMIN" rampart_lb_tls_handshake_failures_total)
    read -r lb1 lbt1 < <(cpu_stat "$LB_CPU")
    read -r ld1 ldt1 < <(cpu_stat "$LOAD_CPU")
    R[$lb.$mode.lb_core_pct@$ROUND]=$(awk -v b=$((lb1 - lb0)) -v t=$((lbt1 - lbt0)) 'BEGIN{if (t>0) printf "%.0f", 100*b/t}')
    R[$lb.$mode.load_core_pct@$ROUND]=$(awk -v b=$((ld1 - ld0)) -v t=$((ldt1 - ldt0)) 'BEGIN{if (t>0) printf "%.0f", 100*b/t}')
    reqs=$(awk '/ requests in /{print $1; exit}' "$out")
    rps=$(awk '/^Requests\/sec:/{print $2; exit}' "$out")
    p50=$(to_ms "$(awk '$1=="50%"{print $2; exit}' "$out")")
    p99=$(to_ms "$(awk '$1=="99%"{print $2; exit}' "$out")")
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
    cpu_s=$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" 'BEGIN{printf "%.3f", t/hz}')
    R[$lb.$mode.requests@$ROUND]=${reqs:-}
    R[$lb.$mode.rps@$ROUND]=${rps:-}
    R[$lb.$mode.p50@$ROUND]=$p50
    R[$lb.$mode.p99@$ROUND]=$p99
    R[$lb.$mode.cpu_s@$ROUND]=$cpu_s
    R[$lb.$mode.wall_s@$ROUND]=$secs
    R[$lb.$mode.cpu_pct@$ROUND]=$(awk -v c="$cpu_s" -v w="$secs" 'BEGIN{if (w>0) printf "%.0f", 100*c/w}')
    if [[ -n $reqs && $reqs -gt 0 ]]; then
        R[$lb.$mode.cpu_us@$ROUND]=$(awk -v c="$cpu_s" -v n="$reqs" 'BEGIN{printf "%.1f", c*1e6/n}')
    else
        R[$lb.$mode.cpu_us@$ROUND]=""
        NOTES+=("$lb $mode$RNOTE: wrk completed no requests (see $out)")
    fi
    local sock non2xx
    sock=$(grep -m1 'Socket errors:' "$out" | sed 's/^ *//' || true)
    non2xx=$(awk '/Non-2xx or 3xx responses:/{print $NF; exit}' "$out")
    R[$lb.$mode.socket_errors@$ROUND]=$sock
    R[$lb.$mode.non2xx@$ROUND]=${non2xx:-0}
    [[ -n $sock ]] && NOTES+=("$lb $mode$RNOTE: $sock")
    [[ -n $non2xx ]] && NOTES+=("$lb $mode$RNOTE: Non-2xx or 3xx responses: $non2xx")
    if [[ $lb == rampart ]]; then
        # Expected: wrk opens one plain TCP connection per run to test the address (no
        # handshake), and in newconn abandons up to CONNS handshakes in flight when it stops.
        local hf=$((hf1 - hf0)) expected=1
        [[ $mode == newconn ]] && expected=$((CONNS + 1))
        R[$lb.$mode.tls_failures@$ROUND]=$hf
        ((hf <= expected)) || NOTES+=("rampart $mode$RNOTE: rampart_lb_tls_handshake_failures_total +$hf (more than the $expected wrk itself causes)")
    fi
    local other
    other=$(awk -v a="${R[$lb.$mode.lb_core_pct@$ROUND]:-0}" -v b="${R[$lb.$mode.cpu_pct@$ROUND]:-0}" 'BEGIN{printf "%d", a-b}')
    ((other <= 15)) || NOTES+=("$lb $mode$RNOTE: CPU $LB_CPU was ${other}% busy with work other than the LB (other processes, steal, interrupts)")
    log "$lb $mode$RNOTE: ${rps:-?} req/s, p50 ${p50:-?} ms, p99 ${p99:-?} ms, ${R[$lb.$mode.cpu_us@$ROUND]:-?} us CPU/req, LB process ${R[$lb.$mode.cpu_pct@$ROUND]:-?}% of a core, CPU $LB_CPU busy ${R[$lb.$mode.lb_core_pct@$ROUND]:-?}%, CPU $LOAD_CPU (wrk+backends) busy ${R[$lb.$mode.load_core_pct@$ROUND]:-?}%"
}

probe_resumption() { # lb: share of wrk's new connections the LB reports as resumed
    local lb=$1 out r f
    out=$RUN_DIR/wrk-$lb-probe.txt
    run_wrk "$out" "$PROBE_SECONDS" "https://127.0.0.1:${PROBE_PORT[$lb]}/" -H 'Connection: close' -s "$WORK/probe.lua"
    r=$(sed -n 's/^probe resumed=\([0-9]*\) full=\([0-9]*\)$/\1/p' "$out")
    f=$(sed -n 's/^probe resumed=\([0-9]*\) full=\([0-9]*\)$/\2/p' "$out")
    if [[ -n $r && -n $f ]] && ((r + f > 0)); then
        R[$lb.wrk_resumed]=$(awk -v r="$r" -v f="$f" 'BEGIN{printf "%.0f", 100*r/(r+f)}')
        log "$lb probe: wrk resumed $r of $((r + f)) new TLS connections"
    else
        R[$lb.wrk_resumed]=""
        log "$lb probe: no result (see $out)"
    fi
}

# rampart counts handshakes by kind (rampart_lb_tls_handshakes_total{kind="full|resumed"}),
# so its probe reads the metric around the same wrk probe the others get.
rampart_resumed() { # admin-port -> resumed handshakes so far
    curl -s --max-time 3 "http://127.0.0.1:$1/metrics" 2>/dev/null |
        awk 'index($1, "rampart_lb_tls_handshakes_total{") == 1 && $1 ~ /kind="resumed"/ { s += $NF } END { printf "%d", s }'
}

probe_rampart_resumption() {
    local out=$RUN_DIR/wrk-rampart-probe.txt h0 h1 r0 r1 hs
    R[rampart.wrk_resumed]=""
    h0=$(rampart_metric "$RAMPART_ADMIN" rampart_lb_tls_handshakes_total)
    r0=$(rampart_resumed "$RAMPART_ADMIN")
    run_wrk "$out" "$PROBE_SECONDS" "https://127.0.0.1:${PORT[rampart]}/" -H 'Connection: close'
    h1=$(rampart_metric "$RAMPART_ADMIN" rampart_lb_tls_handshakes_total)
    r1=$(rampart_resumed "$RAMPART_ADMIN")
    hs=$((h1 - h0))
    if ((hs > 0)); then
        R[rampart.wrk_resumed]=$(awk -v h="$hs" -v r="$((r1 - r0))" 'BEGIN{printf "%.0f", 100*r/h}')
        log "rampart probe: wrk resumed $((r1 - r0)) of $hs new TLS connections"
    else
        log "rampart probe: no result (see $out)"
    fi
}

# Is anything else using the two CPUs? (Other processes and hypervisor steal skew results.)
read -r a0 at0 < <(cpu_stat "$LB_CPU")
read -r b0 bt0 < <(cpu_stat "$LOAD_CPU")
sleep 1
read -r a1 at1 < <(cpu_stat "$LB_CPU")
read -r b1 bt1 < <(cpu_stat "$LOAD_CPU")
IDLE_BUSY_LB=$(awk -v b=$((a1 - a0)) -v t=$((at1 - at0)) 'BEGIN{if (t>0) printf "%.0f", 100*b/t; else print 0}')
IDLE_BUSY_LOAD=$(awk -v b=$((b1 - b0)) -v t=$((bt1 - bt0)) 'BEGIN{if (t>0) printf "%.0f", 100*b/t; else print 0}')
if ((IDLE_BUSY_LB > 10 || IDLE_BUSY_LOAD > 10)); then
    NOTES+=("before the run CPU $LB_CPU was ${IDLE_BUSY_LB}% and CPU $LOAD_CPU ${IDLE_BUSY_LOAD}% busy with other work: results are noisy")
    log "warning: ${NOTES[-1]}"
fi

run_lb() { # lb: one round of everything for one load balancer
    local lb=$1 port=${PORT[$1]} p n
    local -a lb_pids
    log "== $lb on 127.0.0.1:$port (CPU $LB_CPU)$RNOTE =="
    start_lb "$lb"
    sanity_check "$lb" "$port"
    # Track the whole process tree (nginx's worker) so that cleanup can reach it.
    mapfile -t lb_pids < <(tree_of "$LB_PID")
    for p in "${lb_pids[@]}"; do [[ -n ${LIVE[$p]:-} ]] || LIVE[$p]="$lb child"; done
    if ((ROUND == 1)); then
        R[$lb.tls]=$(tls_info "$port")
        R[$lb.resumes_openssl]=$(server_resumes "$port")
        log "$lb: TLS ${R[$lb.tls]}; resumes an OpenSSL session: ${R[$lb.resumes_openssl]}"
        curl -sk --http1.1 --max-time 3 -i -H "Host: $HOST_HEADER" "https://127.0.0.1:$port/" >"$RUN_DIR/response-$lb.txt" 2>&1 || true
        if [[ $lb == rampart ]]; then probe_rampart_resumption; else probe_resumption "$lb"; fi
    fi
    if ((WARMUP > 0)); then
        run_wrk "$RUN_DIR/wrk-$lb-warmup$RTAG.txt" "$WARMUP" "https://127.0.0.1:$port/"
    fi
    measure "$lb" keepalive "$port"
    measure "$lb" newconn "$port" -H 'Connection: close'
    if [[ $lb == rampart ]]; then
        curl -s --max-time 3 "http://127.0.0.1:$RAMPART_ADMIN/metrics" >"$RUN_DIR/rampart-metrics$RTAG.txt" 2>/dev/null || true
    fi
    stop "$LB_PID"
    # Children (nginx's worker) exit with their parent; make sure, then forget them.
    for p in "${lb_pids[@]}"; do
        [[ $p == "$LB_PID" ]] && continue
        alive "$p" && kill -TERM "$p" 2>/dev/null
        reap "$p"
    done
    if [[ $lb == nginx ]]; then
        cp "$WORK/nginx/logs/error.log" "$RUN_DIR/nginx-error$RTAG.log" 2>/dev/null || true
    else
        cp "$LB_LOG" "$RUN_DIR/$lb$RTAG.log" 2>/dev/null || true
    fi
    n=$(grep -c -i -E 'error|warn|alert|crit|emerg' "$LB_LOG" 2>/dev/null || true)
    if [[ ${n:-0} -gt 0 ]]; then
        NOTES+=("$lb log$RNOTE: $n warning/error lines, e.g.: $(grep -i -E -m1 'error|warn|alert|crit|emerg' "$LB_LOG" | cut -c1-200)")
    fi
    # The next start appends to nginx's error log; start each round with an empty one.
    if [[ $lb == nginx ]]; then : >"$WORK/nginx/logs/error.log"; fi
    return 0
}

minimum() { # numbers (empty ones ignored) -> the smallest, or empty
    printf '%s\n' "$@" | awk 'NF' | sort -g | head -n 1
}

median() { # numbers (empty ones ignored) -> their median, or empty
    printf '%s\n' "$@" | awk 'NF' | sort -g | awk '{ a[NR] = $1 }
        END { if (NR == 0) print ""; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.6g\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# Rounds interleave the load balancers, rotating their order, so that slow drifts in the
# machine's state (other load, thermal, steal) spread over all three.
order=($LBS)
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    RTAG="" RNOTE=""
    if ((ROUNDS > 1)); then
        RTAG="-r$ROUND"
        RNOTE=" (round $ROUND)"
    fi
    k=$(((ROUND - 1) % ${#order[@]}))
    for lb in "${order[@]:k}" "${order[@]:0:k}"; do run_lb "$lb"; done
done

# Each reported number is the median over the rounds; counts of errors are summed.
for lb in $LBS; do
    for mode in keepalive newconn; do
        for key in rps p50 p99 cpu_us cpu_pct lb_core_pct load_core_pct requests cpu_s wall_s; do
            vals=()
            for ((r = 1; r <= ROUNDS; r++)); do vals+=("${R[$lb.$mode.$key@$r]:-}"); done
            R[$lb.$mode.$key]=$(median "${vals[@]}")
            # Noise (other load, hypervisor steal) only ever adds CPU time, so the best
            # round is the closest estimate of a load balancer's own cost.
            [[ $key == cpu_us ]] && R[$lb.$mode.cpu_us_best]=$(minimum "${vals[@]}")
        done
        non2xx=0 tlsf="" sockets=""
        for ((r = 1; r <= ROUNDS; r++)); do
            non2xx=$((non2xx + ${R[$lb.$mode.non2xx@$r]:-0}))
            [[ -n ${R[$lb.$mode.tls_failures@$r]:-} ]] && tlsf=$((${tlsf:-0} + ${R[$lb.$mode.tls_failures@$r]}))
            [[ -n ${R[$lb.$mode.socket_errors@$r]:-} ]] && sockets+="${sockets:+; }${R[$lb.$mode.socket_errors@$r]}"
        done
        R[$lb.$mode.non2xx]=$non2xx
        R[$lb.$mode.tls_failures]=$tlsf
        R[$lb.$mode.socket_errors]=$sockets
        # What one saturated core would serve: wrk is the bottleneck in newconn, so req/s
        # there shows wrk's limit, and 1e6 / (CPU us per request) the load balancer's.
        R[$lb.$mode.capacity]=$(awk -v c="${R[$lb.$mode.cpu_us]:-}" 'BEGIN{ if (c+0 > 0) printf "%.0f", 1e6/c }')
    done
done

# --- report ------------------------------------------------------------------------------

ran=($LBS)
val() { local v=${R[$1]:-}; echo "${v:-n/a}"; }
ratio() { # a b -> a/b with 2 decimals, or n/a
    awk -v a="${1:-}" -v b="${2:-}" 'BEGIN{ if (a=="" || b=="" || b+0==0) print "n/a"; else printf "%.2f", a/b }'
}
row() { # label key
    local lb line
    line=$(printf '%-28s' "$1")
    for lb in "${ran[@]}"; do line+=$(printf ' %14s' "$(val "$lb.$2")"); done
    echo "$line"
}

{
    echo
    echo "TLS-terminating load balancers, 1 worker thread on CPU $LB_CPU; wrk -t1 -c$CONNS -d${DURATION}s and 2 backends on CPU $LOAD_CPU"
    ((ROUNDS == 1)) || echo "each number is the median of $ROUNDS rounds; non-2xx counts are summed"
    [[ " ${ran[*]} " == *" rampart "* ]] && echo "rampart ran with RAMPART_LOG=$RAMPART_LOG_USED"
    printf '%-28s' ""
    for lb in "${ran[@]}"; do printf ' %14s' "$lb"; done
    echo
    row "keepalive req/s" keepalive.rps
    row "keepalive cpu us/req" keepalive.cpu_us
    row "keepalive req/s per LB core" keepalive.capacity
    ((ROUNDS == 1)) || row "keepalive cpu us/req, best" keepalive.cpu_us_best
    row "keepalive lb cpu %" keepalive.cpu_pct
    row "keepalive load-core busy %" keepalive.load_core_pct
    row "keepalive p50 ms" keepalive.p50
    row "keepalive p99 ms" keepalive.p99
    row "keepalive non-2xx" keepalive.non2xx
    row "newconn req/s" newconn.rps
    row "newconn cpu us/req" newconn.cpu_us
    row "newconn req/s per LB core" newconn.capacity
    ((ROUNDS == 1)) || row "newconn cpu us/req, best" newconn.cpu_us_best
    row "newconn lb cpu %" newconn.cpu_pct
    row "newconn load-core busy %" newconn.load_core_pct
    row "newconn p50 ms" newconn.p50
    row "newconn p99 ms" newconn.p99
    row "newconn non-2xx" newconn.non2xx
    row "resumes openssl session" resumes_openssl
    row "wrk newconn resumed %" wrk_resumed
    echo
    for lb in "${ran[@]}"; do printf '%-28s %s\n' "tls $lb" "$(val "$lb.tls")"; done
    if [[ " ${ran[*]} " == *" rampart "* ]]; then
        echo
        printf '%-40s %16s %16s\n' "ratio" "rampart/haproxy" "rampart/nginx"
        for spec in "keepalive cpu us/req (lower is better):keepalive.cpu_us" \
            "keepalive req/s (higher is better):keepalive.rps" \
            "newconn req/s (higher is better):newconn.rps" \
            "newconn cpu us/req (lower is better):newconn.cpu_us" \
            "newconn req/s per LB core (higher is better):newconn.capacity" \
            "keepalive cpu us/req, best round (lower):keepalive.cpu_us_best" \
            "newconn cpu us/req, best round (lower):newconn.cpu_us_best"; do
            key=${spec##*:}
            printf '%-40s %16s %16s\n' "${spec%:*}" \
                "$(ratio "${R[rampart.$key]:-}" "${R[haproxy.$key]:-}")" \
                "$(ratio "${R[rampart.$key]:-}" "${R[nginx.$key]:-}")"
        done
    fi
    if ((${#NOTES[@]})); then
        echo
        echo "notes:"
        for n in "${NOTES[@]}"; do echo "  $n"; done
    fi
    echo
    echo "raw output: $RUN_DIR"
    echo "json:       $JSON_OUT"
} | tee "$RUN_DIR/table.txt"

# JSON, without jq.
jstr() { # string -> JSON string
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\t'/ }
    printf '"%s"' "$s"
}
jnum() { [[ ${1:-} =~ ^-?[0-9]+(\.[0-9]+)?$ ]] && printf '%s' "$1" || printf 'null'; }
per_round() { # lb mode -> the per-round numbers as JSON objects, comma-separated
    local r sep=""
    for ((r = 1; r <= ROUNDS; r++)); do
        printf '%s{"requests_per_s": %s, "p50_ms": %s, "p99_ms": %s, "cpu_us_per_request": %s, "lb_cpu_pct": %s, "load_core_busy_pct": %s}' "$sep" \
            "$(jnum "${R[$1.$2.rps@$r]:-}")" "$(jnum "${R[$1.$2.p50@$r]:-}")" "$(jnum "${R[$1.$2.p99@$r]:-}")" \
            "$(jnum "${R[$1.$2.cpu_us@$r]:-}")" "$(jnum "${R[$1.$2.cpu_pct@$r]:-}")" "$(jnum "${R[$1.$2.load_core_pct@$r]:-}")"
        sep=", "
    done
}
{
    printf '{\n'
    printf '  "timestamp": %s,\n' "$(jstr "$TS")"
    printf '  "duration_s": %s, "connections": %s, "warmup_s": %s, "rounds": %s, "wrk_threads": 1,\n' "$DURATION" "$CONNS" "$WARMUP" "$ROUNDS"
    printf '  "lb_cpu": %s, "load_cpu": %s, "cpus": %s, "kernel": %s,\n' "$LB_CPU" "$LOAD_CPU" "$NCPU" "$(jstr "$(uname -r)")"
    printf '  "idle_busy_pct_before": {"lb_cpu": %s, "load_cpu": %s}, "rampart_log_filter": %s,\n' "$IDLE_BUSY_LB" "$IDLE_BUSY_LOAD" "$(jstr "$RAMPART_LOG_USED")"
    printf '  "versions": {"rampart": %s, "haproxy": %s, "nginx": %s, "wrk": %s, "openssl": %s},\n' \
        "$(jstr "$RAMPART_VERSION")" "$(jstr "$HAPROXY_VERSION")" "$(jstr "$NGINX_VERSION")" "$(jstr "$WRK_VERSION")" "$(jstr "$OPENSSL_VERSION")"
    printf '  "results": {\n'
    first=1
    for lb in "${ran[@]}"; do
        ((first)) || printf ',\n'
        first=0
        printf '    %s: {\n' "$(jstr "$lb")"
        printf '      "tls": %s, "resumes_openssl_session": %s, "wrk_newconn_resumed_pct": %s,\n' \
            "$(jstr "${R[$lb.tls]:-}")" "$(jstr "${R[$lb.resumes_openssl]:-}")" "$(jnum "${R[$lb.wrk_resumed]:-}")"
        for mode in keepalive newconn; do
            printf '      %s: {"requests": %s, "requests_per_s": %s, "p50_ms": %s, "p99_ms": %s, "lb_cpu_s": %s, "wall_s": %s, "lb_cpu_pct": %s, "lb_core_busy_pct": %s, "load_core_busy_pct": %s, "cpu_us_per_request": %s, "non_2xx_3xx": %s, "socket_errors": %s, "rampart_tls_handshake_failures": %s, "per_round": [%s]}' \
                "$(jstr $mode)" "$(jnum "${R[$lb.$mode.requests]:-}")" "$(jnum "${R[$lb.$mode.rps]:-}")" \
                "$(jnum "${R[$lb.$mode.p50]:-}")" "$(jnum "${R[$lb.$mode.p99]:-}")" "$(jnum "${R[$lb.$mode.cpu_s]:-}")" \
                "$(jnum "${R[$lb.$mode.wall_s]:-}")" "$(jnum "${R[$lb.$mode.cpu_pct]:-}")" \
                "$(jnum "${R[$lb.$mode.lb_core_pct]:-}")" "$(jnum "${R[$lb.$mode.load_core_pct]:-}")" "$(jnum "${R[$lb.$mode.cpu_us]:-}")" \
                "$(jnum "${R[$lb.$mode.non2xx]:-}")" "$(jstr "${R[$lb.$mode.socket_errors]:-}")" "$(jnum "${R[$lb.$mode.tls_failures]:-}")" \
                "$(per_round "$lb" "$mode")"
            [[ $mode == keepalive ]] && printf ',\n' || printf '\n'
        done
        printf '    }'
    done
    printf '\n  },\n'
    printf '  "ratios": {\n'
    first=1
    for other in haproxy nginx; do
        for key in keepalive.cpu_us keepalive.rps newconn.rps newconn.cpu_us; do
            ((first)) || printf ',\n'
            first=0
            r=$(ratio "${R[rampart.$key]:-}" "${R[$other.$key]:-}")
            printf '    %s: %s' "$(jstr "rampart/$other $key")" "$(jnum "$r")"
        done
    done
    printf '\n  },\n'
    printf '  "notes": ['
    first=1
    for n in "${NOTES[@]}"; do
        ((first)) || printf ', '
        first=0
        jstr "$n"
    done
    printf ']\n}\n'
} >"$JSON_OUT"
log "wrote $JSON_OUT"

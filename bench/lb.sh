#!/usr/bin/env bash
# bench/lb.sh: rampart's load balancer against HAProxy 2.6 and nginx 1.22, one command.
#
# Each load balancer terminates TLS (the same ECDSA P-256 certificate) on 127.0.0.1, runs
# one worker thread pinned to one CPU, and balances round robin over keep-alive HTTP/1.1 to
# the same two rampart-test-backend processes. wrk (one thread) and the backends share a
# second CPU. Three runs per load balancer, one load balancer at a time:
#   keepalive  wrk reuses its connections         -> req/s, p50/p99, LB CPU us per request
#   newconn    `Connection: close`, new TLS connection per request -> the same numbers
#              (wrk resumes its TLS sessions, so these are resumed handshakes)
#   fullhs     `openssl s_time -new` clients: a full TLS handshake (no resumption) and one
#              request per connection -> handshakes/s, LB CPU us per handshake, and the
#              resumed share the load balancer itself counted (must be 0)
#
# Usage:   bench/lb.sh
# Env:     DURATION=10 CONNS=32 HS_CLIENTS=$CONNS WARMUP=2 ROUNDS=1 BASE_PORT=28000 LB_CPU=0 LOAD_CPU=1
#          RESULTS_DIR=<repo>/target/bench LBS="rampart haproxy nginx" SKIP_BUILD=0 PROFILE=0
#          RAMPART_LOG=<tracing filter for rampart; default "warn">
# Output:  a table on stdout, $RESULTS_DIR/lb-<timestamp>.json, and the raw wrk output,
#          configs and logs in $RESULTS_DIR/lb-<timestamp>/. See bench/README.md.
set -euo pipefail

export PATH="$PATH:/usr/sbin:/sbin"
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
HS_CLIENTS=${HS_CLIENTS:-$CONNS}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-1}
BASE_PORT=${BASE_PORT:-28000}
LB_CPU=${LB_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
LBS=${LBS:-rampart haproxy nginx}
SKIP_BUILD=${SKIP_BUILD:-0}
PROFILE=${PROFILE:-0}
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

for v in DURATION CONNS HS_CLIENTS PROFILE WARMUP ROUNDS BASE_PORT LB_CPU LOAD_CPU; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
((DURATION >= 1)) || die "DURATION must be at least 1"
((CONNS >= 1)) || die "CONNS must be at least 1"
((HS_CLIENTS >= 1)) || die "HS_CLIENTS must be at least 1"
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
    if ((PROFILE)); then command -v perf >/dev/null || missing+=(linux-perf); fi
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
# The full-handshake run uses the measured listener, except for nginx: its copy of that
# server block also logs resumed connections, which the other runs must not pay for.
declare -A FULLHS_PORT=([rampart]=${PORT[rampart]} [haproxy]=${PORT[haproxy]} [nginx]=$((BASE_PORT + 32)))
RAMPART_ADMIN=$((BASE_PORT + 11))
RAMPART_HTTP=$((BASE_PORT + 14))
HAPROXY_STATS=$((BASE_PORT + 22))
for p in $B1 $B2 "${PORT[@]}" "${PROBE_PORT[@]}" "${FULLHS_PORT[nginx]}" $RAMPART_ADMIN $RAMPART_HTTP $HAPROXY_STATS; do
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
# The second frontend only serves the TLS-resumption probe (never measured). The stats
# socket (a TCP one, so that bash can talk to it) gives the frontend's ssl_sess and
# ssl_reused_sess counters around the full-handshake run.
cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    stats socket ipv4@127.0.0.1:$HAPROXY_STATS level operator
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
# The measured server block's proxying, the same in its full-handshake copy.
NGINX_PROXY=$(nginx_proxy_location)
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
    log_format fullhs '\$ssl_session_reused \$status';
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
$NGINX_PROXY
    }

    # The full-handshake run: the measured server block again, plus a log of the requests
    # on resumed TLS sessions only, so that the run proves resumption off at no cost.
    map \$ssl_session_reused \$fullhs_resumed {
        r 1;
        default 0;
    }
    server {
        listen 127.0.0.1:${FULLHS_PORT[nginx]} ssl http2;
        server_name www.foobar.com foobar.com;
        access_log $WORK/nginx/logs/fullhs-resumed.log fullhs if=\$fullhs_resumed;
        add_header Strict-Transport-Security "$HSTS" always;
$NGINX_PROXY
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

# --- full handshakes ---------------------------------------------------------------------
#
# wrk resumes its TLS sessions, so newconn measures resumed handshakes. The fullhs run uses
# `openssl s_time -new` instead: each of HS_CLIENTS processes opens one connection after
# another, never offering a session (no ticket, no session ID), sends one request and reads
# the answer until the load balancer closes. (h2load, the other candidate, resumes like wrk
# and has no switch to stop it.) s_time writes "GET <page> HTTP/1.0\r\n\r\n"; the page
# argument carries the rest of an HTTP/1.1 request line and the headers, so the load
# balancers get what wrk sends in newconn (Host, Connection: close) and one dummy header,
# "X-Pad: HTTP/1.0".
STIME_PAGE="/ HTTP/1.1"$'\r\n'"Host: $HOST_HEADER"$'\r\n'"Connection: close"$'\r\n'"X-Pad:"

fullhs_response() { # lb port: status line and size of one answer to s_time's request
    local f=$RUN_DIR/fullhs-response-$1.txt
    printf 'GET %s HTTP/1.0\r\n\r\n' "$STIME_PAGE" |
        timeout 5 openssl s_client -quiet -connect "127.0.0.1:$2" >"$f" 2>/dev/null || true
    R[$1.fullhs_status]=$(head -n 1 "$f" | tr -d '\r')
    R[$1.fullhs_response_bytes]=$(wc -c <"$f")
    [[ ${R[$1.fullhs_status]} == "HTTP/1.1 200"* ]] ||
        NOTES+=("$1 fullhs: s_time's request got '${R[$1.fullhs_status]}', not a 200 (see $f)")
}

haproxy_cmd() { # command -> HAProxy's answer on its stats socket (empty if unreachable)
    (
        exec 3<>"/dev/tcp/127.0.0.1/$HAPROXY_STATS" || exit 0
        printf '%s\n' "$1" >&3
        timeout 3 cat <&3
    ) 2>/dev/null || true
}

# What the load balancer itself counted so far: "<TLS sessions> <resumed>". rampart: its
# handshake metric by kind; HAProxy: frontend bench's ssl_sess and ssl_reused_sess; nginx:
# "- <lines>" of the log that only resumed connections write (it has no session counter).
lb_tls_counts() { # lb
    case $1 in
    rampart)
        echo "$(rampart_metric "$RAMPART_ADMIN" rampart_lb_tls_handshakes_total) $(rampart_resumed "$RAMPART_ADMIN")"
        ;;
    haproxy)
        haproxy_cmd 'show stat' | awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
            $1 == "bench" && $2 == "FRONTEND" && col["ssl_sess"] && col["ssl_reused_sess"] {
                print $col["ssl_sess"], $col["ssl_reused_sess"]; found = 1 }
            END { if (!found) print "- -" }'
        ;;
    nginx)
        local n=0
        [[ -f $WORK/nginx/logs/fullhs-resumed.log ]] && n=$(wc -l <"$WORK/nginx/logs/fullhs-resumed.log")
        echo "- $n"
        ;;
    esac
}

STIME_FAILED=0
run_stime() { # dir port: HS_CLIENTS s_time clients for DURATION s, output in dir/<n>.txt
    local i p rc
    local -a clients=()
    STIME_FAILED=0
    mkdir -p "$1"
    for ((i = 1; i <= HS_CLIENTS; i++)); do
        timeout --kill-after=5 $((DURATION + 30)) taskset -c "$LOAD_CPU" \
            openssl s_time -connect "127.0.0.1:$2" -new -time "$DURATION" -www "$STIME_PAGE" \
            >"$1/$i.txt" 2>&1 </dev/null &
        clients+=($!)
        LIVE[$!]="openssl s_time"
    done
    for p in "${clients[@]}"; do
        rc=0
        wait "$p" || rc=$?
        unset "LIVE[$p]"
        ((rc == 0)) || STIME_FAILED=$((STIME_FAILED + 1))
    done
}

measure_fullhs() { # lb port
    local lb=$1 port=$2 mode=fullhs out dir pids t0 t1 c0 c1 i failed secs cpu_s
    local lb0 lbt0 ld0 ldt0 lb1 lbt1 ld1 ldt1 n resumed bytes reported hs0 rs0 hs1 rs1 of
    local hf0=0 hf1=0
    out=$RUN_DIR/stime-$lb-fullhs$RTAG.txt
    dir=$WORK/stime-$lb$RTAG
    mapfile -t pids < <(tree_of "$LB_PID")
    read -r hs0 rs0 < <(lb_tls_counts "$lb")
    [[ $lb == rampart ]] && hf0=$(rampart_metric "$RAMPART_ADMIN" rampart_lb_tls_handshake_failures_total)
    read -r lb0 lbt0 < <(cpu_stat "$LB_CPU")
    read -r ld0 ldt0 < <(cpu_stat "$LOAD_CPU")
    c0=$(cpu_ticks "${pids[@]}")
    t0=$(now)
    run_stime "$dir" "$port"
    failed=$STIME_FAILED
    t1=$(now)
    mapfile -t pids < <(tree_of "$LB_PID")
    c1=$(cpu_ticks "${pids[@]}")
    [[ $lb == rampart ]] && hf1=$(rampart_metric "$RAMPART_ADMIN" rampart_lb_tls_handshake_failures_total)
    read -r lb1 lbt1 < <(cpu_stat "$LB_CPU")
    read -r ld1 ldt1 < <(cpu_stat "$LOAD_CPU")
    read -r hs1 rs1 < <(lb_tls_counts "$lb")
    for ((i = 1; i <= HS_CLIENTS; i++)); do
        echo "== s_time client $i =="
        cat "$dir/$i.txt"
    done >"$out"
    # s_time prints one character per connection ('*' new session, 'r' resumed), then
    # "N connections in S real seconds, B bytes read per connection".
    read -r n resumed bytes reported < <(awk '
        /^[*rt3]+$/ { resumed += gsub(/r/, "") }
        / connections in [0-9]+ real seconds, [0-9]+ bytes read per connection$/ { n += $1; bytes += $1 * $(NF - 4); reported++ }
        END { printf "%d %d %d %d\n", n, resumed, bytes, reported }' "$dir"/*.txt)
    ((failed == 0 && reported == HS_CLIENTS)) ||
        NOTES+=("$lb $mode$RNOTE: $failed of $HS_CLIENTS s_time clients failed, $reported reported (see $out)")
    R[$lb.$mode.lb_core_pct@$ROUND]=$(awk -v b=$((lb1 - lb0)) -v t=$((lbt1 - lbt0)) 'BEGIN{if (t>0) printf "%.0f", 100*b/t}')
    R[$lb.$mode.load_core_pct@$ROUND]=$(awk -v b=$((ld1 - ld0)) -v t=$((ldt1 - ldt0)) 'BEGIN{if (t>0) printf "%.0f", 100*b/t}')
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
    cpu_s=$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" 'BEGIN{printf "%.3f", t/hz}')
    R[$lb.$mode.requests@$ROUND]=$n
    R[$lb.$mode.cpu_s@$ROUND]=$cpu_s
    R[$lb.$mode.wall_s@$ROUND]=$secs
    R[$lb.$mode.cpu_pct@$ROUND]=$(awk -v c="$cpu_s" -v w="$secs" 'BEGIN{if (w>0) printf "%.0f", 100*c/w}')
    R[$lb.$mode.client_resumed@$ROUND]=$resumed
    R[$lb.$mode.failed_clients@$ROUND]=$failed
    if ((n > 0)); then
        R[$lb.$mode.rps@$ROUND]=$(awk -v n="$n" -v w="$secs" 'BEGIN{if (w>0) printf "%.2f", n/w}')
        R[$lb.$mode.cpu_us@$ROUND]=$(awk -v c="$cpu_s" -v n="$n" 'BEGIN{printf "%.1f", c*1e6/n}')
        R[$lb.$mode.bytes@$ROUND]=$((bytes / n))
    else
        R[$lb.$mode.rps@$ROUND]="" R[$lb.$mode.cpu_us@$ROUND]="" R[$lb.$mode.bytes@$ROUND]=""
        NOTES+=("$lb $mode$RNOTE: s_time completed no connections (see $out)")
    fi
    # The resumed share as the load balancer counted it. rampart and HAProxy count every
    # TLS session, nginx only the resumed ones: its share is taken of s_time's connections.
    of=""
    [[ $hs0 =~ ^[0-9]+$ && $hs1 =~ ^[0-9]+$ ]] && of=$((hs1 - hs0))
    [[ $lb == nginx ]] && of=$n
    if [[ $rs0 =~ ^[0-9]+$ && $rs1 =~ ^[0-9]+$ && -n $of ]]; then
        R[$lb.$mode.lb_resumed@$ROUND]=$((rs1 - rs0))
        R[$lb.$mode.lb_counted@$ROUND]=$of
        if [[ $lb != nginx ]] && ((of < n * 95 / 100 || of > n + HS_CLIENTS)); then
            NOTES+=("$lb $mode$RNOTE: the load balancer counted $of TLS sessions, s_time $n connections")
        fi
    else
        NOTES+=("$lb $mode$RNOTE: could not read the load balancer's TLS session counters")
    fi
    ((${R[$lb.$mode.lb_resumed@$ROUND]:-0} == 0 && resumed == 0)) ||
        NOTES+=("$lb $mode$RNOTE: resumed TLS sessions in the full-handshake run: ${R[$lb.$mode.lb_resumed@$ROUND]:-?} by the load balancer's count, $resumed by s_time's")
    local expected=${R[$lb.fullhs_response_bytes]:-0} got=${R[$lb.$mode.bytes@$ROUND]:-0}
    if ((expected > 0)) && ((got * 100 < expected * 95 || got * 100 > expected * 105)); then
        NOTES+=("$lb $mode$RNOTE: s_time read $got bytes per connection, one answer is $expected bytes: not every connection got a full answer")
    fi
    if [[ $lb == rampart ]]; then
        local hf=$((hf1 - hf0))
        R[$lb.$mode.tls_failures@$ROUND]=$hf
        ((hf == 0)) || NOTES+=("rampart $mode$RNOTE: rampart_lb_tls_handshake_failures_total +$hf")
    fi
    local other
    other=$(awk -v a="${R[$lb.$mode.lb_core_pct@$ROUND]:-0}" -v b="${R[$lb.$mode.cpu_pct@$ROUND]:-0}" 'BEGIN{printf "%d", a-b}')
    ((other <= 15)) || NOTES+=("$lb $mode$RNOTE: CPU $LB_CPU was ${other}% busy with work other than the LB (other processes, steal, interrupts)")
    log "$lb $mode$RNOTE: $n full handshakes (${R[$lb.$mode.rps@$ROUND]:-?}/s), ${R[$lb.$mode.cpu_us@$ROUND]:-?} us CPU/handshake, resumed ${R[$lb.$mode.lb_resumed@$ROUND]:-?} of ${R[$lb.$mode.lb_counted@$ROUND]:-?} (LB) and $resumed (s_time), LB process ${R[$lb.$mode.cpu_pct@$ROUND]:-?}% of a core, CPU $LOAD_CPU (clients+backends) busy ${R[$lb.$mode.load_core_pct@$ROUND]:-?}%"
}

# PROFILE=1: one more keep-alive run and one more full-handshake run, not part of the
# results, each with `perf record` on the load balancer's processes; the top symbols go
# to perf-<lb>-<mode>-*.txt.
profile_run() { # lb mode command... (the extra run, DURATION seconds)
    local lb=$1 mode=$2 pids perf_pid data=$RUN_DIR/perf-$1-$2.data
    shift 2
    mapfile -t pids < <(tree_of "$LB_PID")
    log "$lb: profiling an extra $mode run ($DURATION s) with perf record"
    perf record -q -e cpu-clock -F 999 -g -p "$(
        IFS=,
        echo "${pids[*]}"
    )" -o "$data" -- sleep $((DURATION + 2)) >"$RUN_DIR/perf-record-$lb-$mode.log" 2>&1 &
    perf_pid=$!
    LIVE[$perf_pid]="perf $lb"
    "$@"
    reap "$perf_pid"
    [[ -s $data ]] || {
        NOTES+=("$lb: perf record wrote no $mode profile (see $RUN_DIR/perf-record-$lb-$mode.log)")
        return 0
    }
    timeout 300 perf report -i "$data" --no-children --sort dso,sym --stdio -g none \
        >"$RUN_DIR/perf-$lb-$mode-symbols.txt" 2>/dev/null || true
    timeout 300 perf report -i "$data" --no-children --sort dso --stdio -g none \
        >"$RUN_DIR/perf-$lb-$mode-dso.txt" 2>/dev/null || true
    timeout 300 perf report -i "$data" --children --sort sym --stdio -g none \
        >"$RUN_DIR/perf-$lb-$mode-children.txt" 2>/dev/null || true
}

# Shows that the counter the fullhs run reads does see resumption: one OpenSSL client
# session resumed on the same listener must add one resumed session.
fullhs_counter_check() { # lb port
    local hs0 rs0 hs1 rs1 res
    read -r hs0 rs0 < <(lb_tls_counts "$1")
    res=$(server_resumes "$2")
    read -r hs1 rs1 < <(lb_tls_counts "$1")
    if [[ $res == yes && $rs0 =~ ^[0-9]+$ && $rs1 =~ ^[0-9]+$ ]] && ((rs1 > rs0)); then
        R[$1.fullhs_counter_check]=yes
    else
        R[$1.fullhs_counter_check]=no
        NOTES+=("$1 fullhs: its resumption counter did not count a resumed OpenSSL session (resumed: $res, counter $rs0 -> $rs1)")
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
        fullhs_response "$lb" "${FULLHS_PORT[$lb]}"
    fi
    if ((WARMUP > 0)); then
        run_wrk "$RUN_DIR/wrk-$lb-warmup$RTAG.txt" "$WARMUP" "https://127.0.0.1:$port/"
    fi
    measure "$lb" keepalive "$port"
    measure "$lb" newconn "$port" -H 'Connection: close'
    measure_fullhs "$lb" "${FULLHS_PORT[$lb]}"
    if ((ROUND == 1)); then
        fullhs_counter_check "$lb" "${FULLHS_PORT[$lb]}"
        if ((PROFILE)); then
            profile_run "$lb" keepalive run_wrk "$WORK/wrk-$lb-profile.txt" "$DURATION" "https://127.0.0.1:$port/"
            profile_run "$lb" fullhs run_stime "$WORK/stime-$lb-profile" "${FULLHS_PORT[$lb]}"
        fi
    fi
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
read -ra order <<<"$LBS"
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
    for mode in keepalive newconn fullhs; do
        for key in rps p50 p99 cpu_us cpu_pct lb_core_pct load_core_pct requests cpu_s wall_s bytes; do
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
    # Resumption in the full-handshake runs: counts summed over the rounds.
    lbr="" lbc="" clr=0
    for ((r = 1; r <= ROUNDS; r++)); do
        [[ -n ${R[$lb.fullhs.lb_resumed@$r]:-} ]] && lbr=$((${lbr:-0} + ${R[$lb.fullhs.lb_resumed@$r]}))
        [[ -n ${R[$lb.fullhs.lb_counted@$r]:-} ]] && lbc=$((${lbc:-0} + ${R[$lb.fullhs.lb_counted@$r]}))
        clr=$((clr + ${R[$lb.fullhs.client_resumed@$r]:-0}))
    done
    R[$lb.fullhs.lb_resumed]=$lbr
    R[$lb.fullhs.lb_counted]=$lbc
    R[$lb.fullhs.client_resumed]=$clr
    [[ -n $lbr && -n $lbc ]] && R[$lb.fullhs.lb_resumed_of]="$lbr/$lbc"
    R[$lb.fullhs.lb_resumed_pct]=$(awk -v r="$lbr" -v c="$lbc" 'BEGIN{ if (r != "" && c+0 > 0) printf "%.2f", 100*r/c }')
done

# The issue's aim: full handshakes per LB core, rampart against the better of the other two.
FULLHS_BEST="" FULLHS_BEST_LB=""
for lb in haproxy nginx; do
    c=${R[$lb.fullhs.capacity]:-}
    [[ -n $c ]] || continue
    if [[ -z $FULLHS_BEST ]] || ((c > FULLHS_BEST)); then FULLHS_BEST=$c FULLHS_BEST_LB=$lb; fi
done

# --- report ------------------------------------------------------------------------------

read -ra ran <<<"$LBS"
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
    echo "fullhs: $HS_CLIENTS x openssl s_time -new -time $DURATION (a full TLS handshake and one request per connection) on CPU $LOAD_CPU"
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
    row "fullhs handshakes/s" fullhs.rps
    row "fullhs cpu us/handshake" fullhs.cpu_us
    row "fullhs handshakes per LB core" fullhs.capacity
    ((ROUNDS == 1)) || row "fullhs cpu us/hs, best" fullhs.cpu_us_best
    row "fullhs lb cpu %" fullhs.cpu_pct
    row "fullhs load-core busy %" fullhs.load_core_pct
    row "fullhs bytes/connection" fullhs.bytes
    row "fullhs resumed % (LB count)" fullhs.lb_resumed_pct
    row "fullhs resumed/all (LB)" fullhs.lb_resumed_of
    row "fullhs resumed (s_time)" fullhs.client_resumed
    row "fullhs counter sees resumes" fullhs_counter_check
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
            "fullhs handshakes/s (higher is better):fullhs.rps" \
            "fullhs cpu us/handshake (lower is better):fullhs.cpu_us" \
            "fullhs handshakes per LB core (higher):fullhs.capacity" \
            "keepalive cpu us/req, best round (lower):keepalive.cpu_us_best" \
            "newconn cpu us/req, best round (lower):newconn.cpu_us_best" \
            "fullhs cpu us/hs, best round (lower):fullhs.cpu_us_best"; do
            key=${spec##*:}
            printf '%-40s %16s %16s\n' "${spec%:*}" \
                "$(ratio "${R[rampart.$key]:-}" "${R[haproxy.$key]:-}")" \
                "$(ratio "${R[rampart.$key]:-}" "${R[nginx.$key]:-}")"
        done
        if [[ -n $FULLHS_BEST ]]; then
            echo
            echo "full handshakes per LB core, rampart / the better of haproxy and nginx ($FULLHS_BEST_LB):" \
                "$(ratio "${R[rampart.fullhs.capacity]:-}" "$FULLHS_BEST") (aim: at least 1.50)"
        fi
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
per_round_fullhs() { # lb -> the per-round numbers of the full-handshake run
    local r sep=""
    for ((r = 1; r <= ROUNDS; r++)); do
        printf '%s{"handshakes": %s, "handshakes_per_s": %s, "cpu_us_per_handshake": %s, "lb_cpu_pct": %s, "load_core_busy_pct": %s, "lb_resumed": %s, "lb_counted": %s, "client_resumed": %s}' "$sep" \
            "$(jnum "${R[$1.fullhs.requests@$r]:-}")" "$(jnum "${R[$1.fullhs.rps@$r]:-}")" "$(jnum "${R[$1.fullhs.cpu_us@$r]:-}")" \
            "$(jnum "${R[$1.fullhs.cpu_pct@$r]:-}")" "$(jnum "${R[$1.fullhs.load_core_pct@$r]:-}")" \
            "$(jnum "${R[$1.fullhs.lb_resumed@$r]:-}")" "$(jnum "${R[$1.fullhs.lb_counted@$r]:-}")" "$(jnum "${R[$1.fullhs.client_resumed@$r]:-}")"
        sep=", "
    done
}
{
    printf '{\n'
    printf '  "timestamp": %s,\n' "$(jstr "$TS")"
    printf '  "duration_s": %s, "connections": %s, "hs_clients": %s, "warmup_s": %s, "rounds": %s, "wrk_threads": 1,\n' "$DURATION" "$CONNS" "$HS_CLIENTS" "$WARMUP" "$ROUNDS"
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
            printf ',\n'
        done
        printf '      "fullhs": {"client": "openssl s_time -new", "clients": %s, "handshakes": %s, "handshakes_per_s": %s, "lb_cpu_s": %s, "wall_s": %s, "lb_cpu_pct": %s, "lb_core_busy_pct": %s, "load_core_busy_pct": %s, "cpu_us_per_handshake": %s, "cpu_us_per_handshake_best": %s, "handshakes_per_lb_core": %s, "bytes_per_connection": %s, "response_status": %s, "response_bytes": %s, "lb_resumed": %s, "lb_counted": %s, "lb_resumed_pct": %s, "client_resumed": %s, "counter_sees_resumption": %s, "rampart_tls_handshake_failures": %s, "per_round": [%s]}\n' \
            "$HS_CLIENTS" "$(jnum "${R[$lb.fullhs.requests]:-}")" "$(jnum "${R[$lb.fullhs.rps]:-}")" \
            "$(jnum "${R[$lb.fullhs.cpu_s]:-}")" "$(jnum "${R[$lb.fullhs.wall_s]:-}")" "$(jnum "${R[$lb.fullhs.cpu_pct]:-}")" \
            "$(jnum "${R[$lb.fullhs.lb_core_pct]:-}")" "$(jnum "${R[$lb.fullhs.load_core_pct]:-}")" \
            "$(jnum "${R[$lb.fullhs.cpu_us]:-}")" "$(jnum "${R[$lb.fullhs.cpu_us_best]:-}")" "$(jnum "${R[$lb.fullhs.capacity]:-}")" \
            "$(jnum "${R[$lb.fullhs.bytes]:-}")" "$(jstr "${R[$lb.fullhs_status]:-}")" "$(jnum "${R[$lb.fullhs_response_bytes]:-}")" \
            "$(jnum "${R[$lb.fullhs.lb_resumed]:-}")" "$(jnum "${R[$lb.fullhs.lb_counted]:-}")" "$(jnum "${R[$lb.fullhs.lb_resumed_pct]:-}")" \
            "$(jnum "${R[$lb.fullhs.client_resumed]:-}")" "$(jstr "${R[$lb.fullhs_counter_check]:-}")" \
            "$(jnum "${R[$lb.fullhs.tls_failures]:-}")" "$(per_round_fullhs "$lb")"
        printf '    }'
    done
    printf '\n  },\n'
    printf '  "ratios": {\n'
    first=1
    for other in haproxy nginx; do
        for key in keepalive.cpu_us keepalive.rps newconn.rps newconn.cpu_us fullhs.rps fullhs.cpu_us fullhs.capacity; do
            ((first)) || printf ',\n'
            first=0
            r=$(ratio "${R[rampart.$key]:-}" "${R[$other.$key]:-}")
            printf '    %s: %s' "$(jstr "rampart/$other $key")" "$(jnum "$r")"
        done
    done
    printf ',\n    %s: %s' "$(jstr "rampart/$FULLHS_BEST_LB fullhs.capacity (the better of haproxy and nginx; aim >= 1.5)")" \
        "$(jnum "$(ratio "${R[rampart.fullhs.capacity]:-}" "$FULLHS_BEST")")"
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

#!/usr/bin/env bash
# bench/waf.sh: rampart's load balancer with its WAF on and off against nginx 1.22 with
# ModSecurity v3 (Debian's libnginx-mod-http-modsecurity) and the same OWASP CRS 3.3.4
# (Debian's modsecurity-crs), one command.
#
# Each peer terminates TLS (the same ECDSA P-256 certificate) on 127.0.0.1, runs one worker
# pinned to one CPU and proxies over keep-alive HTTP/1.1 to the same two rampart-test-backend
# processes, like bench/lb.sh. wrk (one thread) and the backends share a second CPU. Peers:
#   rampart-off   rampart lb, [waf] mode = "off"
#   rampart-waf   rampart lb, [waf] mode = "block", paranoia level 1, threshold 5, Debian's CRS
#   nginx-off     nginx, no ModSecurity (the reference for ModSecurity's own cost)
#   nginx-modsec  nginx + ModSecurity v3, SecRuleEngine On, the same CRS, level and threshold
# Two keep-alive runs per peer, one peer at a time:
#   benign  GETs with query arguments and POSTs with small JSON bodies (bench/waf-benign.txt)
#   attack  the same shapes carrying SQLi/XSS/LFI/RCE/PHP payloads (bench/waf-attack.txt)
# -> req/s, p50/p99, the proxy's CPU us per request, responses by status. Before measuring,
# every request of both mixes goes through each peer once with curl; the WAFs must block
# every attack request and pass every benign one, else the script fails (exit 1) after
# printing the table.
#
# Usage:   bench/waf.sh
# Env:     DURATION=10 CONNS=32 WARMUP=2 ROUNDS=1 BASE_PORT=28100 LB_CPU=0 LOAD_CPU=1
#          PEERS="rampart-off rampart-waf nginx-off nginx-modsec" ATTACK_BLOCK_MIN=95
#          RESULTS_DIR=<repo>/target/bench SKIP_BUILD=0 RAMPART_BIN= BACKEND_BIN=
#          RAMPART_LOG=<tracing filter for rampart; default "warn">
# Output:  a table on stdout, $RESULTS_DIR/waf-<timestamp>.json, and the raw wrk output,
#          configs and logs in $RESULTS_DIR/waf-<timestamp>/. See bench/README.md.
set -euo pipefail

export PATH="$PATH:/usr/sbin:/sbin"
export LC_ALL=C

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-1}
BASE_PORT=${BASE_PORT:-28100}
LB_CPU=${LB_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PEERS=${PEERS:-rampart-off rampart-waf nginx-off nginx-modsec}
ATTACK_BLOCK_MIN=${ATTACK_BLOCK_MIN:-95}
SKIP_BUILD=${SKIP_BUILD:-0}
RAMPART_BIN=${RAMPART_BIN:-}
BACKEND_BIN=${BACKEND_BIN:-}
RAMPART_LOG_USED=${RAMPART_LOG:-warn}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RESULTS_DIR=${RESULTS_DIR:-$ROOT/target/bench}
case $RESULTS_DIR in /*) ;; *) RESULTS_DIR=$ROOT/$RESULTS_DIR ;; esac
HOST_HEADER=www.foobar.com
# Every request of both mixes carries these, from wrk and from curl alike: a browser-like
# client (CRS at paranoia level 1 does not score a missing User-Agent or Accept, but real
# clients send them).
CLIENT_HEADERS=("Host: $HOST_HEADER" "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0" "Accept: application/json")
MIXES=(benign attack)
MIX_LUA=$BENCH/waf-mix.lua
declare -A MIX_FILE=([benign]=$BENCH/waf-benign.txt [attack]=$BENCH/waf-attack.txt)
# Debian's modsecurity-crs; rampart's [waf] defaults name the same files.
CRS_SETUP=/etc/modsecurity/crs/crs-setup.conf
CRS_RULES=(/etc/modsecurity/crs/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf "/usr/share/modsecurity-crs/rules/*.conf" /etc/modsecurity/crs/RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf)
MODSEC_MODULE=/usr/lib/nginx/modules/ngx_http_modsecurity_module.so
UNICODE_MAP=/etc/nginx/unicode.mapping
PARANOIA_LEVEL=1
INBOUND_THRESHOLD=5

log() { printf '[waf.sh] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

for v in DURATION CONNS WARMUP ROUNDS BASE_PORT LB_CPU LOAD_CPU ATTACK_BLOCK_MIN; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
((DURATION >= 1)) || die "DURATION must be at least 1"
((CONNS >= 1)) || die "CONNS must be at least 1"
((ROUNDS >= 1)) || die "ROUNDS must be at least 1"
((ATTACK_BLOCK_MIN <= 100)) || die "ATTACK_BLOCK_MIN is a percentage, got $ATTACK_BLOCK_MIN"
[[ -n ${PEERS// /} ]] || die "PEERS is empty"
for peer in $PEERS; do
    case $peer in rampart-off | rampart-waf | nginx-off | nginx-modsec) ;;
    *) die "PEERS: unknown peer '$peer' (rampart-off, rampart-waf, nginx-off, nginx-modsec)" ;;
    esac
done
for f in "$MIX_LUA" "${MIX_FILE[@]}"; do [[ -s $f ]] || die "$f is missing"; done

has_waf() { [[ $1 == rampart-waf || $1 == nginx-modsec ]]; }

# --- tools -------------------------------------------------------------------------------

# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

ensure_tools() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    [[ -e $MODSEC_MODULE ]] || missing+=(libnginx-mod-http-modsecurity)
    command -v nginx >/dev/null || missing+=(nginx)
    [[ -e $CRS_SETUP && -d /usr/share/modsecurity-crs/rules ]] || missing+=(modsecurity-crs)
    command -v curl >/dev/null || missing+=(curl)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v taskset >/dev/null || missing+=(util-linux)
    command -v ss >/dev/null || missing+=(iproute2)
    command -v getconf >/dev/null || missing+=(libc-bin)
    command -v timeout >/dev/null || missing+=(coreutils)
    install_missing "${missing[@]}"
}
ensure_tools
[[ -e $MODSEC_MODULE ]] || die "$MODSEC_MODULE not found after installing libnginx-mod-http-modsecurity"
[[ -e $CRS_SETUP ]] || die "$CRS_SETUP not found after installing modsecurity-crs"

NCPU=$(getconf _NPROCESSORS_ONLN)
((NCPU >= 2)) || die "need at least 2 CPUs (one for the proxy, one for wrk and the backends); have $NCPU"
((LB_CPU < NCPU && LOAD_CPU < NCPU)) || die "LB_CPU=$LB_CPU / LOAD_CPU=$LOAD_CPU: this machine has CPUs 0-$((NCPU - 1))"
((LB_CPU != LOAD_CPU)) || die "LB_CPU and LOAD_CPU must differ"
CLK_TCK=$(getconf CLK_TCK)

pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo unknown; }
NGINX_VERSION=$(nginx -v 2>&1 | sed -n 1p)
LIBMODSEC_VERSION=$(pkg_version libmodsecurity3)
CONNECTOR_VERSION=$(pkg_version libnginx-mod-http-modsecurity)
CRS_VERSION=$(pkg_version modsecurity-crs)
WRK_VERSION=$( (wrk -v 2>&1 || true) | sed -n 1p)
OPENSSL_VERSION=$(openssl version 2>&1 | sed -n 1p)
[[ $NGINX_VERSION == *"nginx/1.22."* ]] || log "warning: expected nginx 1.22, found: $NGINX_VERSION"
[[ $LIBMODSEC_VERSION == 3.* ]] || log "warning: expected libmodsecurity3 3.x, found: $LIBMODSEC_VERSION"
[[ $CRS_VERSION == 3.3.4* ]] || log "warning: expected modsecurity-crs 3.3.4, found: $CRS_VERSION"

# --- build -------------------------------------------------------------------------------

if [[ $SKIP_BUILD != 1 && -z $RAMPART_BIN && -z $BACKEND_BIN ]]; then
    log "building rampart (release)"
    (cd "$ROOT" && cargo build --release -p rampart -p rampart-test-support) >&2
fi
RAMPART=${RAMPART_BIN:-$TARGET_DIR/release/rampart}
BACKEND=${BACKEND_BIN:-$TARGET_DIR/release/rampart-test-backend}
[[ -x $RAMPART ]] || die "$RAMPART not found; build failed?"
[[ -x $BACKEND ]] || die "$BACKEND not found; build failed?"
RAMPART_VERSION=$("$RAMPART" --version 2>&1 | sed -n 1p)

# --- processes ---------------------------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rampart-waf-bench.XXXXXX")
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

line_count() { # file -> its number of lines (0 when missing)
    local n
    n=$(wc -l <"$1" 2>/dev/null || true)
    echo "${n:-0}"
}

# --- setup -------------------------------------------------------------------------------

TS=$(date -u +%Y%m%dT%H%M%SZ)
NOTES=()
FAILS=() # checks that failed: printed in the table, and the script exits 1
mkdir -p "$RESULTS_DIR"
RUN_DIR=$RESULTS_DIR/waf-$TS
JSON_OUT=$RESULTS_DIR/waf-$TS.json
mkdir -p "$RUN_DIR"

B1=$((BASE_PORT + 1))
B2=$((BASE_PORT + 2))
declare -A PORT=([rampart-off]=$((BASE_PORT + 10)) [rampart-waf]=$((BASE_PORT + 20)) [nginx-off]=$((BASE_PORT + 30)) [nginx-modsec]=$((BASE_PORT + 40)))
declare -A ADMIN_PORT=([rampart-off]=$((BASE_PORT + 11)) [rampart-waf]=$((BASE_PORT + 21)))
declare -A HTTP_PORT=([rampart-off]=$((BASE_PORT + 14)) [rampart-waf]=$((BASE_PORT + 24)))
for p in $B1 $B2 "${PORT[@]}" "${ADMIN_PORT[@]}" "${HTTP_PORT[@]}"; do
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

# Two backends, shared by all peers, pinned with wrk. They answer every path and method
# with `web1\n` or `web2\n`.
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

# Same TLS policy everywhere, as in bench/lb.sh.
TLS12_CIPHERS=ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305
HSTS="max-age=63072000; includeSubDomains"

# rampart: bench/lb.sh's config, plus the [waf] section.
write_rampart_config() { # peer
    local peer=$1 waf
    if [[ $peer == rampart-waf ]]; then
        waf="mode = \"block\"
# setup and rules: the defaults, Debian's modsecurity-crs ($CRS_SETUP, ${CRS_RULES[*]})
paranoia_level = $PARANOIA_LEVEL
inbound_threshold = $INBOUND_THRESHOLD"
    else
        waf='mode = "off"'
    fi
    cat >"$WORK/$peer.toml" <<EOF
[listen]
https = "127.0.0.1:${PORT[$peer]}"
admin = "127.0.0.1:${ADMIN_PORT[$peer]}"
# The plain-HTTP redirect listener gets no traffic here; it is pinned to loopback so that
# rampart never binds its default (0.0.0.0:80).
http = "127.0.0.1:${HTTP_PORT[$peer]}"

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

[waf]
$waf
EOF
}

# ModSecurity: Debian's /etc/nginx/modsecurity.conf (ModSecurity's recommended config:
# body processors for JSON and XML, body limits, rejecting unparsable bodies) with the
# engine on, response bodies not inspected, no audit log, temporary files in the work
# dir; then the CRS files rampart's [waf] defaults name, in the same order.
mkdir -p "$WORK/modsec/tmp" "$WORK/modsec/data"
cat >"$WORK/modsec.conf" <<EOF
SecRuleEngine On
SecRequestBodyAccess On
SecRule REQUEST_HEADERS:Content-Type "^(?:application(?:/soap\+|/)|text/)xml" \\
     "id:'200000',phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQUEST_HEADERS:Content-Type "^application/json" \\
     "id:'200001',phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecRequestBodyLimitAction Reject
SecRequestBodyJsonDepthLimit 512
SecArgumentsLimit 1000
SecRule &ARGS "@ge 1000" \\
    "id:'200007',phase:2,t:none,log,deny,status:400,msg:'Failed to fully parse request body due to large argument count',severity:2"
SecRule REQBODY_ERROR "!@eq 0" \\
    "id:'200002',phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.',logdata:'%{reqbody_error_msg}',severity:2"
SecRule MULTIPART_STRICT_ERROR "!@eq 0" \\
    "id:'200003',phase:2,t:none,log,deny,status:400,msg:'Multipart request body failed strict validation'"
SecRule MULTIPART_UNMATCHED_BOUNDARY "@eq 1" \\
    "id:'200004',phase:2,t:none,log,deny,msg:'Multipart parser detected a possible unmatched boundary.'"
SecPcreMatchLimit 1000
SecPcreMatchLimitRecursion 1000
SecRule TX:/^MSC_/ "!@streq 0" \\
    "id:'200005',phase:2,t:none,deny,msg:'ModSecurity internal error flagged: %{MATCHED_VAR_NAME}'"
SecResponseBodyAccess Off
SecTmpDir $WORK/modsec/tmp
SecDataDir $WORK/modsec/data
SecAuditEngine Off
SecArgumentSeparator &
SecCookieFormat 0
SecUnicodeMapFile $UNICODE_MAP 20127
SecStatusEngine Off

Include $CRS_SETUP
EOF
# rampart's paranoia_level and inbound_threshold, unless crs-setup.conf sets them itself
# (Debian's leaves both commented out, so CRS's defaults, 1 and 5, would apply anyway).
if grep -Eq '^[[:space:]]*"?id:900000,' "$CRS_SETUP"; then
    NOTES+=("$CRS_SETUP sets the paranoia level itself (rule 900000); rampart-waf is told $PARANOIA_LEVEL")
else
    echo "SecAction \"id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level=$PARANOIA_LEVEL\"" >>"$WORK/modsec.conf"
fi
if grep -Eq '^[[:space:]]*"?id:900110,' "$CRS_SETUP"; then
    NOTES+=("$CRS_SETUP sets the anomaly thresholds itself (rule 900110); rampart-waf is told $INBOUND_THRESHOLD")
else
    echo "SecAction \"id:900110,phase:1,nolog,pass,t:none,setvar:tx.inbound_anomaly_score_threshold=$INBOUND_THRESHOLD,setvar:tx.outbound_anomaly_score_threshold=4\"" >>"$WORK/modsec.conf"
fi
for f in "${CRS_RULES[@]}"; do echo "Include $f" >>"$WORK/modsec.conf"; done

# nginx: bench/lb.sh's nginx config (one worker, same TLS, keep-alive upstreams, the same
# X-Forwarded-* / Forwarded / HSTS work as rampart), with or without ModSecurity.
NOFILE=$(ulimit -n)
[[ $NOFILE =~ ^[0-9]+$ ]] || NOFILE=200000
NGINX_WORKER_CONNECTIONS=$((NOFILE >= 200000 ? 100000 : NOFILE / 2))
NGINX_USER=""
[[ $(id -u) -eq 0 ]] && NGINX_USER="user $(id -un) $(id -gn);"
NGINX_BUILD=$(nginx -V 2>&1 || true)
write_nginx_config() { # peer
    local peer=$1 dir=$WORK/$1 t temp="" module="" modsec=""
    mkdir -p "$dir/conf" "$dir/logs" "$dir/tmp"
    for t in client_body proxy fastcgi uwsgi scgi; do
        if [[ $NGINX_BUILD != *"--without-http_${t}_module"* ]]; then
            temp+="    ${t}_temp_path $dir/tmp/$t;"$'\n'
        fi
    done
    if [[ $peer == nginx-modsec ]]; then
        module="load_module $MODSEC_MODULE;"
        modsec="        modsecurity on;
        modsecurity_rules_file $WORK/modsec.conf;"
    fi
    cat >"$dir/conf/nginx.conf" <<EOF
$module
$NGINX_USER
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;

events {
    worker_connections $NGINX_WORKER_CONNECTIONS;
}

http {
    access_log off;
$temp
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
        listen 127.0.0.1:${PORT[$peer]} ssl http2;
        server_name www.foobar.com foobar.com;
$modsec
        add_header Strict-Transport-Security "$HSTS" always;
$(nginx_proxy_location)
    }
}
EOF
}

for peer in $PEERS; do
    case $peer in
    rampart-*)
        write_rampart_config "$peer"
        cp "$WORK/$peer.toml" "$RUN_DIR/"
        ;;
    nginx-*)
        write_nginx_config "$peer"
        cp "$WORK/$peer/conf/nginx.conf" "$RUN_DIR/$peer.conf"
        ;;
    esac
done
cp "$WORK/modsec.conf" "$RUN_DIR/"
cp "$MIX_LUA" "${MIX_FILE[@]}" "$RUN_DIR/"

# --- peers -------------------------------------------------------------------------------

LB_PID=
LB_LOG=
start_peer() { # peer
    local peer=$1
    case $peer in
    rampart-*)
        LB_LOG=$WORK/$peer.log
        start_bg "$peer" "$LB_CPU" "$LB_LOG" env RAMPART_LOG="$RAMPART_LOG_USED" "$RAMPART" lb --config "$WORK/$peer.toml"
        ;;
    nginx-*)
        local dir=$WORK/$peer
        LB_LOG=$dir/logs/error.log
        nginx -t -p "$dir" -c conf/nginx.conf -e "$LB_LOG" >"$WORK/$peer-check.log" 2>&1 || {
            cat "$WORK/$peer-check.log" >&2
            die "$peer: nginx rejected its config ($dir/conf/nginx.conf, $WORK/modsec.conf)"
        }
        # nginx -t loads the rules too; start the measured process with an empty log.
        : >"$LB_LOG"
        start_bg "$peer" "$LB_CPU" "$dir/stderr.log" nginx -p "$dir" -c conf/nginx.conf -e "$LB_LOG"
        ;;
    esac
    LB_PID=$START_PID
}

show_lb_log() { # peer
    log "---- $1 log ($LB_LOG) ----"
    tail -n 30 "$LB_LOG" >&2 2>/dev/null || true
    if [[ $1 == nginx-* ]]; then tail -n 20 "$WORK/$1/stderr.log" >&2 2>/dev/null || true; fi
    log "---- end of $1 log ----"
}

curl_lb() { # port -> body of GET / over HTTP/1.1
    curl -sk --http1.1 --max-time 3 -H "Host: $HOST_HEADER" "https://127.0.0.1:$1/" 2>/dev/null || true
}

sanity_check() { # peer port: wait up to 30 s (rule loading) for a backend's answer
    local peer=$1 port=$2 body="" i seen=""
    for ((i = 0; i < 150; i++)); do
        if ! alive "$LB_PID"; then
            show_lb_log "$peer"
            die "$peer exited during startup"
        fi
        body=$(curl_lb "$port")
        [[ $body == web1 || $body == web2 ]] && break
        sleep 0.2
    done
    if [[ $body != web1 && $body != web2 ]]; then
        show_lb_log "$peer"
        log "---- curl -isk --http1.1 https://127.0.0.1:$port/ -H 'Host: $HOST_HEADER' ----"
        curl -isk --http1.1 --max-time 3 -H "Host: $HOST_HEADER" "https://127.0.0.1:$port/" >&2 || log "(curl exit status $?)"
        die "sanity check failed for $peer: GET https://127.0.0.1:$port/ did not return web1 or web2 within 30 s (its log is above)"
    fi
    seen=$body
    for ((i = 0; i < 3; i++)); do seen+=" $(curl_lb "$port")"; done
    [[ $seen == *web1* && $seen == *web2* ]] ||
        log "warning: 4 requests through $peer did not reach both backends (got: $seen)"
}

tls_info() { # port -> "TLSv1.3 TLS_AES_256_GCM_SHA384 X25519" (what an OpenSSL client gets)
    local out
    out=$(timeout 5 openssl s_client -connect "127.0.0.1:$1" </dev/null 2>/dev/null || true)
    awk '/^New, /{p=$2; sub(/,$/,"",p); c=$NF}
         /^Server Temp Key:/{k=$4; sub(/,$/,"",k)}
         END{ if (p=="") print "handshake-failed"; else print p " " c " " k }' <<<"$out"
}

rampart_metric() { # admin-port name -> sum of the samples of that metric (0 if unreachable)
    local m
    m=$(curl -s --max-time 3 "http://127.0.0.1:$1/metrics" 2>/dev/null || true)
    awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%d", s }' <<<"$m"
}

declare -A R=() # "<peer>.<key>" -> value ("" when unknown)

# Every request of a mix through one peer, once, with curl on one keep-alive connection:
# its status, and whether the connection was reused for the next request (curl's
# num_connects is 0 then), to see whether a peer closes the connection after a 403.
check_mix() { # peer mix
    local peer=$1 mix=$2 port=${PORT[$1]} out=$RUN_DIR/check-$1-$2.txt
    local -a args=() reqs=() hdr=()
    local method path body h first=1 line
    for h in "${CLIENT_HEADERS[@]}"; do hdr+=(-H "$h"); done
    while IFS=$'\t' read -r method path body || [[ -n $method ]]; do
        [[ -z $method || $method == \#* ]] && continue
        ((first)) || args+=(--next)
        first=0
        args+=(-sk --http1.1 --path-as-is --max-time 5 -o /dev/null -w '%{http_code} %{num_connects}\n' "${hdr[@]}")
        if [[ -n $body ]]; then
            args+=(-X "$method" -H 'Content-Type: application/json' --data-binary "$body")
        else
            args+=(-X "$method")
        fi
        args+=("https://127.0.0.1:$port$path")
        reqs+=("$method $path${body:+ $body}")
    done <"${MIX_FILE[$mix]}"
    local -a got=()
    mapfile -t got < <(timeout 60 curl "${args[@]}" 2>/dev/null || true)
    local i code conns want pass=0 closed_after_403=0 after_403=0 prev="" bad=()
    if has_waf "$peer" && [[ $mix == attack ]]; then want=403; else want=200; fi
    : >"$out"
    for ((i = 0; i < ${#reqs[@]}; i++)); do
        read -r code conns <<<"${got[i]:-000 ?}"
        printf '%s %s connects=%s  %s\n' "$code" "$([[ $code == "$want" ]] && echo ok || echo WRONG)" "$conns" "${reqs[i]}" >>"$out"
        if [[ $code == "$want" ]]; then pass=$((pass + 1)); else bad+=("$code ${reqs[i]}"); fi
        if [[ $prev == 403 ]]; then
            after_403=$((after_403 + 1))
            [[ $conns == 0 ]] || closed_after_403=$((closed_after_403 + 1))
        fi
        prev=$code
    done
    R[$peer.$mix.check]="$pass/${#reqs[@]}"
    if ((after_403 > 0)); then
        R[$peer.$mix.keepalive_403]=$([[ $closed_after_403 == 0 ]] && echo yes || echo "no($closed_after_403/$after_403)")
    fi
    log "$peer $mix check: $pass of ${#reqs[@]} requests answered $want (see $out)"
    if ((${#bad[@]})); then
        local shown
        shown=$(printf '%s; ' "${bad[@]:0:4}")
        FAILS+=("$peer $mix check: ${#bad[@]} of ${#reqs[@]} requests not answered $want: ${shown%; }$( ((${#bad[@]} > 4)) && echo '; ...')")
        log "FAIL: ${FAILS[-1]}"
    fi
}

WRK_PID=
run_wrk() { # out seconds mix: the mix through the current peer with wrk
    local out=$1 secs=$2 mix=$3 rc=0 h
    local -a hdr=()
    for h in "${CLIENT_HEADERS[@]}"; do hdr+=(-H "$h"); done
    timeout --kill-after=5 $((secs + 30)) taskset -c "$LOAD_CPU" \
        wrk -t1 -c"$CONNS" -d"${secs}s" --latency --timeout 5s "${hdr[@]}" -s "$MIX_LUA" \
        "https://127.0.0.1:$PORT_NOW/" -- "${MIX_FILE[$mix]}" >"$out" 2>&1 &
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

PORT_NOW=
measure() { # peer mix
    local peer=$1 mix=$2 out pids t0 t1 c0 c1 reqs rps p50 p99 secs cpu_s l0 l1
    local lb0 lbt0 ld0 ldt0 lb1 lbt1 ld1 ldt1 statuses s200 s403 sother total
    out=$RUN_DIR/wrk-$peer-$mix$RTAG.txt
    mapfile -t pids < <(tree_of "$LB_PID")
    local d0=0 d1=0
    [[ $peer == rampart-waf ]] && d0=$(rampart_metric "${ADMIN_PORT[$peer]}" rampart_lb_waf_decisions_total)
    l0=$(line_count "$LB_LOG")
    read -r lb0 lbt0 < <(cpu_stat "$LB_CPU")
    read -r ld0 ldt0 < <(cpu_stat "$LOAD_CPU")
    c0=$(cpu_ticks "${pids[@]}")
    t0=$(now)
    run_wrk "$out" "$DURATION" "$mix"
    t1=$(now)
    mapfile -t pids < <(tree_of "$LB_PID")
    c1=$(cpu_ticks "${pids[@]}")
    read -r lb1 lbt1 < <(cpu_stat "$LB_CPU")
    read -r ld1 ldt1 < <(cpu_stat "$LOAD_CPU")
    l1=$(line_count "$LB_LOG")
    [[ $peer == rampart-waf ]] && d1=$(rampart_metric "${ADMIN_PORT[$peer]}" rampart_lb_waf_decisions_total)
    R[$peer.$mix.lb_core_pct@$ROUND]=$(awk -v b=$((lb1 - lb0)) -v t=$((lbt1 - lbt0)) 'BEGIN{if (t>0) printf "%.0f", 100*b/t}')
    R[$peer.$mix.load_core_pct@$ROUND]=$(awk -v b=$((ld1 - ld0)) -v t=$((ldt1 - ldt0)) 'BEGIN{if (t>0) printf "%.0f", 100*b/t}')
    R[$peer.$mix.log_lines@$ROUND]=$((l1 - l0))
    reqs=$(awk '/ requests in /{print $1; exit}' "$out")
    rps=$(awk '/^Requests\/sec:/{print $2; exit}' "$out")
    p50=$(to_ms "$(awk '$1=="50%"{print $2; exit}' "$out")")
    p99=$(to_ms "$(awk '$1=="99%"{print $2; exit}' "$out")")
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
    cpu_s=$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" 'BEGIN{printf "%.3f", t/hz}')
    R[$peer.$mix.requests@$ROUND]=${reqs:-}
    R[$peer.$mix.rps@$ROUND]=${rps:-}
    R[$peer.$mix.p50@$ROUND]=$p50
    R[$peer.$mix.p99@$ROUND]=$p99
    R[$peer.$mix.cpu_s@$ROUND]=$cpu_s
    R[$peer.$mix.wall_s@$ROUND]=$secs
    R[$peer.$mix.cpu_pct@$ROUND]=$(awk -v c="$cpu_s" -v w="$secs" 'BEGIN{if (w>0) printf "%.0f", 100*c/w}')
    if [[ -n $reqs && $reqs -gt 0 ]]; then
        R[$peer.$mix.cpu_us@$ROUND]=$(awk -v c="$cpu_s" -v n="$reqs" 'BEGIN{printf "%.1f", c*1e6/n}')
    else
        R[$peer.$mix.cpu_us@$ROUND]=""
        FAILS+=("$peer $mix$RNOTE: wrk completed no requests (see $out)")
    fi
    # Responses by status, counted by bench/waf-mix.lua: "status 200=N 403=M ...".
    statuses=$(sed -n 's/^status //p' "$out" | tail -n 1)
    s200=0 s403=0 sother=0
    for kv in $statuses; do
        case ${kv%%=*} in
        200) s200=${kv#*=} ;;
        403) s403=${kv#*=} ;;
        *) sother=$((sother + ${kv#*=})) ;;
        esac
    done
    total=$((s200 + s403 + sother))
    R[$peer.$mix.s200@$ROUND]=$s200
    R[$peer.$mix.s403@$ROUND]=$s403
    R[$peer.$mix.sother@$ROUND]=$sother
    R[$peer.$mix.statuses@$ROUND]=$statuses
    # What each peer must answer: a WAF blocks (at least ATTACK_BLOCK_MIN % of) the attack
    # mix and passes all of the benign one; without a WAF everything reaches a backend.
    if ((total == 0)); then
        FAILS+=("$peer $mix$RNOTE: no responses counted (see $out)")
    elif has_waf "$peer" && [[ $mix == attack ]]; then
        R[$peer.$mix.blocked_pct@$ROUND]=$(awk -v b="$s403" -v t="$total" 'BEGIN{printf "%.1f", 100*b/t}')
        ((s403 * 100 >= ATTACK_BLOCK_MIN * total)) ||
            FAILS+=("$peer $mix$RNOTE: only ${R[$peer.$mix.blocked_pct@$ROUND]} % of responses were 403 (want >= $ATTACK_BLOCK_MIN %): $statuses")
    else
        R[$peer.$mix.blocked_pct@$ROUND]=$(awk -v b="$s403" -v t="$total" 'BEGIN{printf "%.1f", 100*b/t}')
        ((s200 == total)) || FAILS+=("$peer $mix$RNOTE: responses other than 200 where all must pass: $statuses")
    fi
    # rampart counts its WAF's decisions: one per request, or the WAF was bypassed.
    if [[ $peer == rampart-waf ]] && ((total > 0)); then
        R[$peer.$mix.waf_decisions_pct@$ROUND]=$(awk -v d=$((d1 - d0)) -v t="$total" 'BEGIN{printf "%.0f", 100*d/t}')
        ((d1 - d0 >= total)) ||
            FAILS+=("$peer $mix$RNOTE: rampart_lb_waf_decisions_total rose by $((d1 - d0)) for $total responses: requests bypassed the WAF")
    fi
    local sock
    sock=$(grep -m1 'Socket errors:' "$out" | sed 's/^ *//' || true)
    R[$peer.$mix.socket_errors@$ROUND]=$sock
    [[ -n $sock ]] && NOTES+=("$peer $mix$RNOTE: $sock")
    local other
    other=$(awk -v a="${R[$peer.$mix.lb_core_pct@$ROUND]:-0}" -v b="${R[$peer.$mix.cpu_pct@$ROUND]:-0}" 'BEGIN{printf "%d", a-b}')
    ((other <= 15)) || NOTES+=("$peer $mix$RNOTE: CPU $LB_CPU was ${other}% busy with work other than the proxy (other processes, steal, interrupts)")
    log "$peer $mix$RNOTE: ${rps:-?} req/s, p50 ${p50:-?} ms, p99 ${p99:-?} ms, ${R[$peer.$mix.cpu_us@$ROUND]:-?} us CPU/req, proxy ${R[$peer.$mix.cpu_pct@$ROUND]:-?}% of a core, CPU $LOAD_CPU (wrk+backends) busy ${R[$peer.$mix.load_core_pct@$ROUND]:-?}%, responses: $statuses"
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

run_peer() { # peer: one round of everything for one peer
    local peer=$1 mix p n
    local -a lb_pids
    PORT_NOW=${PORT[$peer]}
    log "== $peer on 127.0.0.1:$PORT_NOW (CPU $LB_CPU)$RNOTE =="
    start_peer "$peer"
    sanity_check "$peer" "$PORT_NOW"
    # Track the whole process tree (nginx's worker) so that cleanup can reach it.
    mapfile -t lb_pids < <(tree_of "$LB_PID")
    for p in "${lb_pids[@]}"; do [[ -n ${LIVE[$p]:-} ]] || LIVE[$p]="$peer child"; done
    if ((ROUND == 1)); then
        R[$peer.tls]=$(tls_info "$PORT_NOW")
        for mix in "${MIXES[@]}"; do check_mix "$peer" "$mix"; done
    fi
    for mix in "${MIXES[@]}"; do
        if ((WARMUP > 0)); then
            run_wrk "$RUN_DIR/wrk-$peer-$mix-warmup$RTAG.txt" "$WARMUP" "$mix"
        fi
        measure "$peer" "$mix"
    done
    if [[ $peer == rampart-* ]]; then
        curl -s --max-time 3 "http://127.0.0.1:${ADMIN_PORT[$peer]}/metrics" >"$RUN_DIR/$peer-metrics$RTAG.txt" 2>/dev/null || true
    fi
    stop "$LB_PID"
    # Children (nginx's worker) exit with their parent; make sure, then forget them.
    for p in "${lb_pids[@]}"; do
        [[ $p == "$LB_PID" ]] && continue
        alive "$p" && kill -TERM "$p" 2>/dev/null
        reap "$p"
    done
    cp "$LB_LOG" "$RUN_DIR/$peer$RTAG.log" 2>/dev/null || true
    # nginx + ModSecurity logs every blocked request at level error, so only count lines
    # that are not ModSecurity's verdicts.
    n=$(grep -i -E 'error|warn|alert|crit|emerg' "$LB_LOG" 2>/dev/null | grep -c -v 'ModSecurity: Access denied' || true)
    if [[ ${n:-0} -gt 0 ]]; then
        NOTES+=("$peer log$RNOTE: $n warning/error lines, e.g.: $(grep -i -E 'error|warn|alert|crit|emerg' "$LB_LOG" | grep -v -m1 'ModSecurity: Access denied' | cut -c1-200)")
    fi
    return 0
}

minimum() { # numbers (empty ones ignored) -> the smallest, or empty
    printf '%s\n' "$@" | awk 'NF' | sort -g | head -n 1
}

median() { # numbers (empty ones ignored) -> their median, or empty
    printf '%s\n' "$@" | awk 'NF' | sort -g | awk '{ a[NR] = $1 }
        END { if (NR == 0) print ""; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.6g\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# Rounds interleave the peers, rotating their order, so that slow drifts in the machine's
# state (other load, thermal, steal) spread over all of them.
read -ra order <<<"$PEERS"
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    RTAG="" RNOTE=""
    if ((ROUNDS > 1)); then
        RTAG="-r$ROUND"
        RNOTE=" (round $ROUND)"
    fi
    k=$(((ROUND - 1) % ${#order[@]}))
    for peer in "${order[@]:k}" "${order[@]:0:k}"; do run_peer "$peer"; done
done

# Each reported number is the median over the rounds; response counts are summed.
for peer in $PEERS; do
    for mix in "${MIXES[@]}"; do
        for key in rps p50 p99 cpu_us cpu_pct lb_core_pct load_core_pct requests cpu_s wall_s blocked_pct waf_decisions_pct; do
            vals=()
            for ((r = 1; r <= ROUNDS; r++)); do vals+=("${R[$peer.$mix.$key@$r]:-}"); done
            R[$peer.$mix.$key]=$(median "${vals[@]}")
            [[ $key == cpu_us ]] && R[$peer.$mix.cpu_us_best]=$(minimum "${vals[@]}")
        done
        for key in s200 s403 sother log_lines; do
            sum=0
            for ((r = 1; r <= ROUNDS; r++)); do sum=$((sum + ${R[$peer.$mix.$key@$r]:-0})); done
            R[$peer.$mix.$key]=$sum
        done
        sockets=""
        for ((r = 1; r <= ROUNDS; r++)); do
            [[ -n ${R[$peer.$mix.socket_errors@$r]:-} ]] && sockets+="${sockets:+; }${R[$peer.$mix.socket_errors@$r]}"
        done
        R[$peer.$mix.socket_errors]=$sockets
        R[$peer.$mix.capacity]=$(awk -v c="${R[$peer.$mix.cpu_us]:-}" 'BEGIN{ if (c+0 > 0) printf "%.0f", 1e6/c }')
        R[$peer.$mix.log_per_1k]=$(awk -v l="${R[$peer.$mix.log_lines]}" -v n="$((${R[$peer.$mix.s200]} + ${R[$peer.$mix.s403]} + ${R[$peer.$mix.sother]}))" 'BEGIN{ if (n > 0) printf "%.0f", 1000*l/n }')
    done
done
# The WAF's own cost: CPU per request with the WAF minus without it, same proxy.
for mix in "${MIXES[@]}"; do
    R[rampart.$mix.waf_cost]=$(awk -v a="${R[rampart-waf.$mix.cpu_us]:-}" -v b="${R[rampart-off.$mix.cpu_us]:-}" 'BEGIN{ if (a != "" && b != "") printf "%.1f", a-b }')
    R[nginx.$mix.waf_cost]=$(awk -v a="${R[nginx-modsec.$mix.cpu_us]:-}" -v b="${R[nginx-off.$mix.cpu_us]:-}" 'BEGIN{ if (a != "" && b != "") printf "%.1f", a-b }')
done

# --- report ------------------------------------------------------------------------------

read -ra ran <<<"$PEERS"
ran_has() { [[ " ${ran[*]} " == *" $1 "* ]]; }
val() { local v=${R[$1]:-}; echo "${v:-n/a}"; }
ratio() { # a b -> a/b with 2 decimals, or n/a
    awk -v a="${1:-}" -v b="${2:-}" 'BEGIN{ if (a=="" || b=="" || b+0==0) print "n/a"; else printf "%.2f", a/b }'
}
row() { # label key
    local peer line
    line=$(printf '%-28s' "$1")
    for peer in "${ran[@]}"; do line+=$(printf ' %14s' "$(val "$peer.$2")"); done
    echo "$line"
}

# The aim: the WAF at most half of nginx + ModSecurity's CPU per request.
GOAL=""
if ran_has rampart-waf && ran_has nginx-modsec; then
    for mix in "${MIXES[@]}"; do
        r=$(ratio "${R[rampart-waf.$mix.cpu_us]:-}" "${R[nginx-modsec.$mix.cpu_us]:-}")
        met=$(awk -v r="$r" 'BEGIN{ print (r != "n/a" && r+0 <= 0.5) ? "met" : "NOT met" }')
        GOAL+="${GOAL:+, }$mix $met ($r)"
    done
fi

{
    echo
    echo "TLS-terminating proxies, 1 worker on CPU $LB_CPU; wrk -t1 -c$CONNS -d${DURATION}s (keep-alive) and 2 backends on CPU $LOAD_CPU"
    echo "WAFs: block mode, paranoia level $PARANOIA_LEVEL, inbound threshold $INBOUND_THRESHOLD, modsecurity-crs $CRS_VERSION; nginx + libmodsecurity3 $LIBMODSEC_VERSION"
    echo "mixes: benign = bench/waf-benign.txt, attack = bench/waf-attack.txt, requests in turn"
    ((ROUNDS == 1)) || echo "each number is the median of $ROUNDS rounds; response counts are summed"
    if ran_has rampart-off || ran_has rampart-waf; then echo "rampart ran with RAMPART_LOG=$RAMPART_LOG_USED"; fi
    printf '%-28s' ""
    for peer in "${ran[@]}"; do printf ' %14s' "$peer"; done
    echo
    for mix in "${MIXES[@]}"; do
        row "$mix req/s" "$mix.rps"
        row "$mix cpu us/req" "$mix.cpu_us"
        ((ROUNDS == 1)) || row "$mix cpu us/req, best" "$mix.cpu_us_best"
        row "$mix req/s per proxy core" "$mix.capacity"
        row "$mix proxy cpu %" "$mix.cpu_pct"
        row "$mix load-core busy %" "$mix.load_core_pct"
        row "$mix p50 ms" "$mix.p50"
        row "$mix p99 ms" "$mix.p99"
        row "$mix responses 200" "$mix.s200"
        row "$mix responses 403" "$mix.s403"
        row "$mix responses other" "$mix.sother"
        row "$mix 403 %" "$mix.blocked_pct"
        row "$mix log lines per 1k req" "$mix.log_per_1k"
        if ran_has rampart-waf; then row "$mix waf decisions % of req" "$mix.waf_decisions_pct"; fi
    done
    row "check benign (curl, 200)" benign.check
    row "check attack (curl, 403)" attack.check
    row "keep-alive after 403" attack.keepalive_403
    echo
    for peer in "${ran[@]}"; do printf '%-28s %s\n' "tls $peer" "$(val "$peer.tls")"; done
    if ran_has rampart-waf; then
        echo
        printf '%-36s %14s %14s %14s\n' "ratio" "rampart-waf/" "rampart-waf/" "nginx-modsec/"
        printf '%-36s %14s %14s %14s\n' "" "nginx-modsec" "rampart-off" "nginx-off"
        for mix in "${MIXES[@]}"; do
            for spec in "cpu us/req (lower is better):cpu_us" "p99 (lower is better):p99" \
                "p50 (lower is better):p50" "req/s (higher is better):rps"; do
                key=${spec##*:}
                printf '%-36s %14s %14s %14s\n' "$mix ${spec%:*}" \
                    "$(ratio "${R[rampart-waf.$mix.$key]:-}" "${R[nginx-modsec.$mix.$key]:-}")" \
                    "$(ratio "${R[rampart-waf.$mix.$key]:-}" "${R[rampart-off.$mix.$key]:-}")" \
                    "$(ratio "${R[nginx-modsec.$mix.$key]:-}" "${R[nginx-off.$mix.$key]:-}")"
            done
        done
        echo
        printf '%-36s %14s %14s %14s\n' "the WAF's own cpu us/req" "rampart" "nginx" "rampart/nginx"
        for mix in "${MIXES[@]}"; do
            printf '%-36s %14s %14s %14s\n' "$mix (with WAF - without)" "$(val "rampart.$mix.waf_cost")" \
                "$(val "nginx.$mix.waf_cost")" "$(ratio "${R[rampart.$mix.waf_cost]:-}" "${R[nginx.$mix.waf_cost]:-}")"
        done
    fi
    if [[ -n $GOAL ]]; then
        echo
        echo "goal: rampart-waf cpu us/req <= 0.5 x nginx-modsec's: $GOAL"
    fi
    if ((${#NOTES[@]})); then
        echo
        echo "notes:"
        for n in "${NOTES[@]}"; do echo "  $n"; done
    fi
    if ((${#FAILS[@]})); then
        echo
        echo "FAILED CHECKS (a WAF that blocks nothing is fast; these numbers do not count):"
        for n in "${FAILS[@]}"; do echo "  $n"; done
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
jlist() { # strings -> JSON array
    local first=1 n
    printf '['
    for n in "$@"; do
        ((first)) || printf ', '
        first=0
        jstr "$n"
    done
    printf ']'
}
per_round() { # peer mix -> the per-round numbers as JSON objects, comma-separated
    local r sep=""
    for ((r = 1; r <= ROUNDS; r++)); do
        printf '%s{"requests_per_s": %s, "p50_ms": %s, "p99_ms": %s, "cpu_us_per_request": %s, "proxy_cpu_pct": %s, "load_core_busy_pct": %s, "statuses": %s}' "$sep" \
            "$(jnum "${R[$1.$2.rps@$r]:-}")" "$(jnum "${R[$1.$2.p50@$r]:-}")" "$(jnum "${R[$1.$2.p99@$r]:-}")" \
            "$(jnum "${R[$1.$2.cpu_us@$r]:-}")" "$(jnum "${R[$1.$2.cpu_pct@$r]:-}")" "$(jnum "${R[$1.$2.load_core_pct@$r]:-}")" \
            "$(jstr "${R[$1.$2.statuses@$r]:-}")"
        sep=", "
    done
}
{
    printf '{\n'
    printf '  "timestamp": %s,\n' "$(jstr "$TS")"
    printf '  "duration_s": %s, "connections": %s, "warmup_s": %s, "rounds": %s, "wrk_threads": 1,\n' "$DURATION" "$CONNS" "$WARMUP" "$ROUNDS"
    printf '  "lb_cpu": %s, "load_cpu": %s, "cpus": %s, "kernel": %s,\n' "$LB_CPU" "$LOAD_CPU" "$NCPU" "$(jstr "$(uname -r)")"
    printf '  "paranoia_level": %s, "inbound_threshold": %s, "attack_block_min_pct": %s,\n' "$PARANOIA_LEVEL" "$INBOUND_THRESHOLD" "$ATTACK_BLOCK_MIN"
    printf '  "idle_busy_pct_before": {"lb_cpu": %s, "load_cpu": %s}, "rampart_log_filter": %s,\n' "$IDLE_BUSY_LB" "$IDLE_BUSY_LOAD" "$(jstr "$RAMPART_LOG_USED")"
    printf '  "versions": {"rampart": %s, "nginx": %s, "libmodsecurity3": %s, "libnginx-mod-http-modsecurity": %s, "modsecurity-crs": %s, "wrk": %s, "openssl": %s},\n' \
        "$(jstr "$RAMPART_VERSION")" "$(jstr "$NGINX_VERSION")" "$(jstr "$LIBMODSEC_VERSION")" "$(jstr "$CONNECTOR_VERSION")" \
        "$(jstr "$CRS_VERSION")" "$(jstr "$WRK_VERSION")" "$(jstr "$OPENSSL_VERSION")"
    printf '  "results": {\n'
    first=1
    for peer in "${ran[@]}"; do
        ((first)) || printf ',\n'
        first=0
        printf '    %s: {\n' "$(jstr "$peer")"
        printf '      "tls": %s, "check_benign": %s, "check_attack": %s, "keepalive_after_403": %s,\n' \
            "$(jstr "${R[$peer.tls]:-}")" "$(jstr "${R[$peer.benign.check]:-}")" "$(jstr "${R[$peer.attack.check]:-}")" \
            "$(jstr "${R[$peer.attack.keepalive_403]:-}")"
        for mix in "${MIXES[@]}"; do
            printf '      %s: {"requests": %s, "requests_per_s": %s, "p50_ms": %s, "p99_ms": %s, "proxy_cpu_s": %s, "wall_s": %s, "proxy_cpu_pct": %s, "lb_core_busy_pct": %s, "load_core_busy_pct": %s, "cpu_us_per_request": %s, "responses_200": %s, "responses_403": %s, "responses_other": %s, "pct_403": %s, "log_lines": %s, "rampart_waf_decisions_pct": %s, "socket_errors": %s, "per_round": [%s]}' \
                "$(jstr "$mix")" "$(jnum "${R[$peer.$mix.requests]:-}")" "$(jnum "${R[$peer.$mix.rps]:-}")" \
                "$(jnum "${R[$peer.$mix.p50]:-}")" "$(jnum "${R[$peer.$mix.p99]:-}")" "$(jnum "${R[$peer.$mix.cpu_s]:-}")" \
                "$(jnum "${R[$peer.$mix.wall_s]:-}")" "$(jnum "${R[$peer.$mix.cpu_pct]:-}")" \
                "$(jnum "${R[$peer.$mix.lb_core_pct]:-}")" "$(jnum "${R[$peer.$mix.load_core_pct]:-}")" "$(jnum "${R[$peer.$mix.cpu_us]:-}")" \
                "$(jnum "${R[$peer.$mix.s200]:-}")" "$(jnum "${R[$peer.$mix.s403]:-}")" "$(jnum "${R[$peer.$mix.sother]:-}")" \
                "$(jnum "${R[$peer.$mix.blocked_pct]:-}")" "$(jnum "${R[$peer.$mix.log_lines]:-}")" "$(jnum "${R[$peer.$mix.waf_decisions_pct]:-}")" \
                "$(jstr "${R[$peer.$mix.socket_errors]:-}")" "$(per_round "$peer" "$mix")"
            [[ $mix == "${MIXES[-1]}" ]] && printf '\n' || printf ',\n'
        done
        printf '    }'
    done
    printf '\n  },\n'
    printf '  "ratios": {\n'
    first=1
    for pair in rampart-waf/nginx-modsec rampart-waf/rampart-off nginx-modsec/nginx-off; do
        for mix in "${MIXES[@]}"; do
            for key in cpu_us p50 p99 rps; do
                ((first)) || printf ',\n'
                first=0
                r=$(ratio "${R[${pair%/*}.$mix.$key]:-}" "${R[${pair#*/}.$mix.$key]:-}")
                printf '    %s: %s' "$(jstr "$pair $mix.$key")" "$(jnum "$r")"
            done
        done
    done
    printf '\n  },\n'
    printf '  "waf_cpu_us_per_request": {'
    first=1
    for mix in "${MIXES[@]}"; do
        ((first)) || printf ', '
        first=0
        printf '%s: {"rampart": %s, "nginx": %s}' "$(jstr "$mix")" "$(jnum "${R[rampart.$mix.waf_cost]:-}")" "$(jnum "${R[nginx.$mix.waf_cost]:-}")"
    done
    printf '},\n'
    printf '  "goal": %s,\n' "$(jstr "$GOAL")"
    printf '  "notes": %s,\n' "$(jlist "${NOTES[@]}")"
    printf '  "failed_checks": %s\n' "$(jlist "${FAILS[@]}")"
    printf '}\n'
} >"$JSON_OUT"
log "wrote $JSON_OUT"

if ((${#FAILS[@]})); then
    die "${#FAILS[@]} check(s) failed (listed above): a WAF did not block the attack mix or did not pass the benign one"
fi

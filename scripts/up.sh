#!/usr/bin/env bash
# Brings up what exists of the topology on 127.0.0.1, in the foreground, until Ctrl-C:
# the load balancer (HTTPS on 8443, redirect on 8080, metrics on 9180) in front of two
# web servers. Until the web tier lands, web1 and web2 are rampart's test backends.
# Every process started here is stopped by its PID on exit.
set -euo pipefail
state="$1"
bin="$PWD/target/release"
mkdir -p "$state"
[[ -f "$state/certs/site.pem" ]] || "$bin/rampart" cert --dir "$state/certs" >/dev/null

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$bin/rampart-test-backend" --name web1 --listen 127.0.0.1:8081 >/dev/null & pids+=($!)
"$bin/rampart-test-backend" --name web2 --listen 127.0.0.1:8082 >/dev/null & pids+=($!)

cat > "$state/lb.toml" <<CONF
# Written by ./run up; see examples/lb.toml for every key.
[listen]
https = "127.0.0.1:8443"
http = "127.0.0.1:8080"
admin = "127.0.0.1:9180"

[[tls.certificates]]
cert = "certs/site.pem"
key = "certs/site.key"

[balance]
served_by_header = "X-Served-By"

[[backends]]
name = "web1"
address = "127.0.0.1:8081"

[[backends]]
name = "web2"
address = "127.0.0.1:8082"

[log]
access_log = "access.log"
CONF
"$bin/rampart" check "$state/lb.toml"
"$bin/rampart" lb --config "$state/lb.toml" & pids+=($!)
cat <<MSG

rampart is up (Ctrl-C stops everything):
  curl --cacert $state/certs/ca.pem --resolve www.foobar.com:8443:127.0.0.1 https://www.foobar.com:8443/ -i
  curl -i -H 'Host: www.foobar.com' http://127.0.0.1:8080/      # 308 to HTTPS
  curl http://127.0.0.1:9180/metrics                             # Prometheus metrics
  kill -HUP ${pids[-1]}                                          # reload config and certificates
access log: $state/access.log
MSG
wait "${pids[-1]}"

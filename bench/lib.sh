# Shared by the bench scripts (sourced, not run). Expects the caller's `log` and `die`.

# Installs the Debian packages named in "$@" (those a script found missing), with sudo
# when not root, refreshing the package lists only when the install cannot go on without.
install_missing() {
    (($# == 0)) && return
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "missing packages $* and no sudo to install them"
        sudo=(sudo)
    fi
    log "installing missing packages: $*"
    export DEBIAN_FRONTEND=noninteractive
    # No service may start while packages install (Debian's etcd-server would start a
    # system etcd on localhost:2379): a refusing policy-rc.d unless the machine has one.
    local policy=/usr/sbin/policy-rc.d made=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 0755 "$policy"
        made=1
    fi
    local status=0
    if ! "${sudo[@]}" apt-get install -y --no-install-recommends "$@"; then
        log "install failed; running apt-get update and retrying"
        "${sudo[@]}" apt-get update || true
        "${sudo[@]}" apt-get install -y --no-install-recommends "$@" || status=$?
    fi
    ((made)) && "${sudo[@]}" rm -f "$policy"
    # Packages whose Debian service the benchmarks never use (they run the daemon by hand):
    # keep a systemd machine from starting it at the next boot either.
    if [[ -d /run/systemd/system ]]; then
        local pkg unit
        for pkg in "$@"; do
            case $pkg in
            etcd-server) unit=etcd.service ;;
            haproxy) unit=haproxy.service ;;
            nginx | nginx-light) unit=nginx.service ;;
            php8.2-fpm) unit=php8.2-fpm.service ;;
            *) continue ;;
            esac
            "${sudo[@]}" systemctl disable --now "$unit" >/dev/null 2>&1 || true
        done
    fi
    return "$status"
}

# The nginx `location /` that proxies to `upstream web` with the headers rampart's load
# balancer adds (X-Forwarded-*, Forwarded), over kept-alive HTTP/1.1; the same for every
# nginx peer (bench/lb.sh, bench/waf.sh). Printed with 8 spaces of indent.
nginx_proxy_location() {
    cat <<'EOF_NGINX'
        location / {
            proxy_pass http://web;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header Forwarded "for=$remote_addr;proto=$scheme;host=\"$host\"";
        }
EOF_NGINX
}

#!/usr/bin/env bash
# How long `rampart up -d` takes to be ready in isolated mode, and where the time goes.
#
#   sudo bench/up.sh            # RUNS=5 by default
#
# Each round brings the topology up twice: cold (an empty state directory, so the CA,
# the MariaDB data directories and the schema are created) and warm (the same state
# again after `rampart down`, as an operator's second `up` is). It prints the median of
# every step `up` reports and of the whole command, measured from outside. Namespaces
# are named `rb<pid>-*` and removed by `rampart down` after every run; nothing is sent
# anywhere (up's readiness probes run inside the topology's namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${RUNS:-5}"
log() { echo "bench/up: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=bench/lib.sh
source bench/lib.sh

[[ $(id -u) -eq 0 ]] || die "isolated mode needs root"
missing=()
for p in mariadb-server-core mariadb-client-core nftables iproute2 prometheus prometheus-alertmanager etcd-server; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
install_missing "${missing[@]}"

cargo build --release --quiet -p rampart
bin="$PWD/target/release/rampart"
prefix="rb$(($$ % 100000))"
publish=$((20000 + $$ % 10000))
work=$(mktemp -d)
state="$work/state"
cleanup() {
    "$bin" down --state "$state" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# One `up -d`: appends "step seconds" lines (and "total seconds") to $1.
one() {
    local out start end
    start=$(date +%s.%N)
    out=$("$bin" up -d --state "$state" --prefix "$prefix" --publish "$publish")
    end=$(date +%s.%N)
    # "  [4] dns (dns) started     0.03s" -> "dns 0.03"
    sed -n 's/^ *\[[0-9]*\] \(.*[^ ]\) \+\([0-9.]*\)s$/\1\t\2/p' <<<"$out" |
        sed 's/ (.*) [a-z ]*\t/\t/; s/: .*\t/\t/' >>"$1"
    awk -v a="$start" -v b="$end" 'BEGIN { printf "total (wall clock)\t%.3f\n", b - a }' >>"$1"
    "$bin" down --state "$state" >/dev/null
}

for i in $(seq "$RUNS"); do
    rm -rf "$state"
    one "$work/cold"
    one "$work/warm"
    log "round $i of $RUNS done"
done

median() {
    # stdin: "step<TAB>seconds" lines; prints each step's median in first-seen order.
    awk -F'\t' '
        { if (!($1 in n)) order[++k] = $1; v[$1, ++n[$1]] = $2 }
        END {
            for (i = 1; i <= k; i++) {
                s = order[i]; m = n[s]
                for (a = 1; a <= m; a++) x[a] = v[s, a]
                for (a = 1; a <= m; a++) for (b = a + 1; b <= m; b++) if (x[b] < x[a]) { t = x[a]; x[a] = x[b]; x[b] = t }
                med = (m % 2) ? x[(m + 1) / 2] : (x[m / 2] + x[m / 2 + 1]) / 2
                printf "  %-28s %6.2f s   (%d runs)\n", s, med, m
            }
        }'
}

echo "rampart up -d, isolated mode, median of $RUNS runs each"
echo "cold (empty state directory):"
median <"$work/cold"
echo "warm (second up on the same state):"
median <"$work/warm"

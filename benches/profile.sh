#!/usr/bin/env bash
# CPU profile of tandem's HTTP/1.1 keep-alive proxy path under wrk, the
# layout of benches/l7.sh (wrk on CPU 0; tandem and a 1-worker nginx backend
# on CPU 1), with `perf record -g` attached to tandem for the load run.
# Writes the top of `perf report --no-children` (self time, with callers)
# for each connection count to benches/profiles/<label>-c<N>.txt.
#
#   bash benches/profile.sh [--label NAME] [--conns "64 256"] [--duration S] [--tandem-bin PATH]
#
# Everything runs on 127.0.0.1; every process started is stopped on exit.
set -euo pipefail
LABEL=after
CONNS="64 256"
DURATION=8
TANDEM_BIN=""
PORT_BASE=18600
while [[ $# -gt 0 ]]; do
    case $1 in
        --label) LABEL=$2; shift ;;
        --conns) CONNS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --tandem-bin) TANDEM_BIN=$2; shift ;;
        --port-base) PORT_BASE=$2; shift ;;
        -h | --help) sed -n 2,12p "$0"; exit 0 ;;
        *) echo "profile.sh: unknown option $1" >&2; exit 1 ;;
    esac
    shift
done
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
for t in perf wrk nginx; do
    command -v $t >/dev/null || { echo "profile.sh: $t missing (apt-get install linux-perf wrk nginx)" >&2; exit 1; }
done
if [[ -z $TANDEM_BIN ]]; then
    cargo build --release >/dev/null 2>&1
    TANDEM_BIN=$ROOT/target/release/tandem
fi
WORK=$(mktemp -d /tmp/tandem-profile.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
P_BACKEND=$PORT_BASE
P_TANDEM=$((PORT_BASE + 1))
mkdir -p "$WORK/backend/tmp"
BODY=$(printf 'x%.0s' $(seq 99))
cat >"$WORK/backend/nginx.conf" <<NGX
daemon off;
worker_processes 1;
pid $WORK/backend/nginx.pid;
error_log $WORK/backend/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $WORK/backend/tmp/body;
    proxy_temp_path $WORK/backend/tmp/proxy;
    fastcgi_temp_path $WORK/backend/tmp/fastcgi;
    uwsgi_temp_path $WORK/backend/tmp/uwsgi;
    scgi_temp_path $WORK/backend/tmp/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$P_BACKEND backlog=4096;
        location / { return 200 "$BODY\n"; }
    }
}
NGX
cat >"$WORK/tandem.toml" <<TOML
[global]
admin_socket = "$WORK/admin.sock"
workers = 1
log_level = "warn"

[[pool]]
name = "backend"
health = { check = "tcp", interval = "2s" }
upstream_idle_timeout = "300s"
backends = [{ address = "127.0.0.1:$P_BACKEND" }]

[[listener]]
name = "http"
bind = "127.0.0.1:$P_TANDEM"
protocol = "http"
pool = "backend"
backlog = 4096
request_id = ""
keepalive_timeout = "300s"
TOML
taskset -c 1 nginx -p "$WORK/backend" -e "$WORK/backend/error.log" -c "$WORK/backend/nginx.conf" &
PIDS+=($!)
taskset -c 1 "$TANDEM_BIN" run -c "$WORK/tandem.toml" >"$WORK/tandem.log" 2>&1 &
TPID=$!
PIDS+=($TPID)
for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$P_TANDEM/" && break
    sleep 0.1
done
taskset -c 0 wrk -t1 -c64 -d1s "http://127.0.0.1:$P_TANDEM/" >/dev/null
mkdir -p benches/profiles
for c in $CONNS; do
    out=benches/profiles/$LABEL-c$c.txt
    perf record -g -o "$WORK/perf.data" -p "$TPID" -- sleep "$DURATION" >/dev/null 2>&1 &
    PERF=$!
    sleep 0.2
    taskset -c 0 wrk -t1 -c"$c" -d"$((DURATION - 1))s" --latency "http://127.0.0.1:$P_TANDEM/" >"$WORK/wrk.txt"
    wait $PERF || true
    {
        echo "# tandem $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- src 2>/dev/null || echo +dirty), label $LABEL, wrk c=$c"
        echo "# made by: bash benches/profile.sh --label $LABEL --conns \"$CONNS\" --duration $DURATION"
        echo "# layout: wrk -t1 on CPU 0; tandem (workers = 1) + nginx backend (1 worker) on CPU 1"
        grep -E "Requests/sec|99%" "$WORK/wrk.txt" | sed 's/^/# wrk: /'
        echo "## flat profile (self time per symbol, >= 0.4%)"
        perf report -i "$WORK/perf.data" --no-children --stdio -g none --percent-limit 0.4 2>/dev/null |
            sed 's/ *$//' | grep -v -e '^$' -e '^# *$' | head -n 120
        echo
        echo "## callers of the symbols above 2%"
        perf report -i "$WORK/perf.data" --no-children --stdio --percent-limit 2 -g caller,0.5,callee,function,percent 2>/dev/null |
            sed 's/ *$//' | grep -v -e '^$' -e '^# *$' | head -n 300
    } >"$out"
    echo "wrote $out ($(grep Requests/sec "$WORK/wrk.txt"))"
done

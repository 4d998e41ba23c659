#!/usr/bin/env bash
# L4 benchmark: a small-response HTTP backend (nginx) measured directly,
# through tandem's TCP listener and through HAProxy in `mode tcp`, with wrk
# (keep-alive); plus bulk throughput with iperf3 through each.
#
# On a small machine the load generator, the proxy and the backend share the
# CPUs, so besides req/s and latency the script reports the proxy's own CPU
# time per request (utime+stime from /proc/PID/stat before and after each
# run, all threads included), which is the fairest figure there.
#
# Everything runs on 127.0.0.1; every process the script starts is stopped on
# exit. Run from the repo root:  bash benches/l4.sh   (see --help)
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bash benches/l4.sh [options]

Measures, in one run, with everything on 127.0.0.1:
  * HTTP keep-alive (wrk --latency) against nginx directly, through tandem
    (protocol = "tcp") and through HAProxy (mode tcp): req/s, p50, p99 and
    the proxy's CPU µs per request (for "direct": nginx's own, as reference);
  * bulk throughput (iperf3) directly, through tandem with splice = "auto"
    and "never", and through HAProxy without and with `option splice-auto`:
    Gbit/s and the proxy's CPU seconds per GB.
Targets are interleaved (direct, tandem, haproxy, direct, ...), the order is
rotated each round, and every figure is the median over the rounds.

Options:
  --quick             smoke test: 1 round, 3 s wrk runs, 2 s iperf3 runs
  --runs N            rounds per configuration (default 3)
  --duration S        seconds per wrk run (default 8)
  --conns "A B"       wrk connection counts (default "64 256")
  --threads N         proxy threads: tandem workers = HAProxy nbthread (default 1)
  --wrk-threads N     wrk threads (default 1)
  --iperf-time S      seconds per iperf3 run (default 5)
  --port-base P       first of 8 consecutive loopback ports (default 18400)
  --tandem-bin PATH   use this tandem binary (implies --no-build)
  --no-build          do not run `cargo build --release`
  --out FILE          markdown results file
                      (default target/bench/l4-YYYYmmdd-HHMMSS.md)
  --strace            afterwards, count syscalls per request for tandem and
                      HAProxy with `strace -c` (slows them down; the counts,
                      not the speed, are the point)
  --keep              keep the temporary directory (configs, logs, raw data)
  -h, --help          this help

Missing tools (wrk haproxy nginx iperf3 jq ss strace) are installed with
apt-get. Takes about 4.5 minutes with the defaults, plus the build.
EOF
}

# ---------------------------------------------------------------- options --
RUNS=3
DURATION=8
CONNS="64 256"
THREADS=1
WRK_THREADS=1
IPERF_TIME=5
PORT_BASE=18400
BUILD=1
TANDEM_BIN=""
OUT=""
DO_STRACE=0
KEEP=0

BENCH=l4
# shellcheck source=benches/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

while [[ $# -gt 0 ]]; do
    case $1 in
        --quick)
            RUNS=1
            DURATION=3
            IPERF_TIME=2
            ;;
        --runs) need_arg "$@"; RUNS=$2; shift ;;
        --duration) need_arg "$@"; DURATION=$2; shift ;;
        --conns) need_arg "$@"; CONNS=$2; shift ;;
        --threads) need_arg "$@"; THREADS=$2; shift ;;
        --wrk-threads) need_arg "$@"; WRK_THREADS=$2; shift ;;
        --iperf-time) need_arg "$@"; IPERF_TIME=$2; shift ;;
        --port-base) need_arg "$@"; PORT_BASE=$2; shift ;;
        --tandem-bin) need_arg "$@"; TANDEM_BIN=$2; BUILD=0; shift ;;
        --no-build) BUILD=0 ;;
        --out) need_arg "$@"; OUT=$2; shift ;;
        --strace) DO_STRACE=1 ;;
        --keep) KEEP=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
    shift
done

for v in RUNS DURATION THREADS WRK_THREADS IPERF_TIME PORT_BASE; do
    if ! is_uint "${!v}" || [[ ${!v} -eq 0 ]]; then
        die "$v must be a positive integer (got '${!v}')"
    fi
done
read -r -a CONN_LIST <<<"$CONNS"
[[ ${#CONN_LIST[@]} -gt 0 ]] || die "--conns is empty"
for c in "${CONN_LIST[@]}"; do
    if ! is_uint "$c" || [[ $c -lt $WRK_THREADS ]]; then
        die "connection count '$c' must be an integer >= --wrk-threads"
    fi
done
[[ $PORT_BASE -le 65520 ]] || die "--port-base too high"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# ------------------------------------------------------------------ tools --
tools=(wrk:wrk haproxy:haproxy nginx:nginx iperf3:iperf3 jq:jq ss:iproute2 getconf:libc-bin)
[[ $DO_STRACE -eq 1 ]] && tools+=(strace:strace)
ensure_tools "${tools[@]}"

# ------------------------------------------------- processes and cleanup --
bench_start
[[ -x $TANDEM_BIN ]] || die "no tandem binary at $TANDEM_BIN (build it or pass --tandem-bin)"

CLK_TCK=$(getconf CLK_TCK)
if [[ -z $OUT ]]; then
    mkdir -p "$ROOT/target/bench"
    OUT=$ROOT/target/bench/l4-$(date +%Y%m%d-%H%M%S).md
fi
mkdir -p "$(dirname "$OUT")"

# One HTTP/1.0 request with bash's /dev/tcp; prints the body.
http_get() {
    local port=$1 body
    exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
    printf 'GET / HTTP/1.0\r\nHost: bench\r\n\r\n' >&3
    body=$(timeout 3 cat <&3) || true
    exec 3<&-
    printf '%s' "${body##*$'\r\n\r\n'}"
}

# "utime stime" of a process, all threads, in clock ticks (fields 14, 15 of
# /proc/PID/stat; the command name may contain spaces, so cut after ')').
cpu_split() {
    local s f
    s=$(<"/proc/$1/stat")
    s=${s##*) }
    read -r -a f <<<"$s"
    echo "${f[11]} ${f[12]}"
}

# ------------------------------------------------------------------ ports --
P_NGINX=$PORT_BASE
P_IPERF=$((PORT_BASE + 1))
P_TANDEM_HTTP=$((PORT_BASE + 2))
P_TANDEM_BULK_AUTO=$((PORT_BASE + 3))
P_TANDEM_BULK_NEVER=$((PORT_BASE + 4))
P_HAPROXY_HTTP=$((PORT_BASE + 5))
P_HAPROXY_BULK=$((PORT_BASE + 6))
P_HAPROXY_BULK_SPLICE=$((PORT_BASE + 7))
for p in $(seq "$PORT_BASE" $((PORT_BASE + 7))); do
    port_busy "$p" && die "port 127.0.0.1:$p is in use; pick another --port-base"
done

# ---------------------------------------------------------------- configs --
mkdir -p "$WORK/nginx/tmp" "$WORK/tandem" "$WORK/haproxy"

cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/tmp/body;
    proxy_temp_path $WORK/nginx/tmp/proxy;
    fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
    scgi_temp_path $WORK/nginx/tmp/scgi;
    # Keep-alive for the whole run: no reconnects skew the proxied numbers.
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$P_NGINX backlog=4096;
        default_type text/plain;
        location / { return 200 "ok\n"; }
    }
}
EOF

cat >"$WORK/tandem/tandem.toml" <<EOF
[global]
admin_socket = "$WORK/tandem/admin.sock"
workers = $THREADS
shutdown_timeout = "1s"
log_level = "warn"

[[pool]]
name = "nginx"
algorithm = "round_robin"
health = { check = "tcp", interval = "2s" }
backends = [{ address = "127.0.0.1:$P_NGINX" }]

# iperf3 takes its data connections on its control port: a TCP probe there
# could be taken for one, so this pool relies on passive checks only (the
# HAProxy iperf backends have no "check" either).
[[pool]]
name = "iperf"
algorithm = "round_robin"
health = { check = "none" }
backends = [{ address = "127.0.0.1:$P_IPERF" }]

[[listener]]
name = "http"
bind = "127.0.0.1:$P_TANDEM_HTTP"
protocol = "tcp"
pool = "nginx"
splice = "auto"
backlog = 4096

[[listener]]
name = "bulk-auto"
bind = "127.0.0.1:$P_TANDEM_BULK_AUTO"
protocol = "tcp"
pool = "iperf"
splice = "auto"

[[listener]]
name = "bulk-never"
bind = "127.0.0.1:$P_TANDEM_BULK_NEVER"
protocol = "tcp"
pool = "iperf"
splice = "never"
EOF

cat >"$WORK/haproxy/haproxy.cfg" <<EOF
global
    nbthread $THREADS
    maxconn 4096

defaults
    mode tcp
    timeout connect 3s
    timeout client 5m
    timeout server 5m

frontend http
    bind 127.0.0.1:$P_HAPROXY_HTTP
    backlog 4096
    default_backend nginx

backend nginx
    server nginx 127.0.0.1:$P_NGINX check inter 2s

frontend bulk
    bind 127.0.0.1:$P_HAPROXY_BULK
    default_backend iperf

backend iperf
    server iperf 127.0.0.1:$P_IPERF

frontend bulk-splice
    bind 127.0.0.1:$P_HAPROXY_BULK_SPLICE
    option splice-auto
    default_backend iperf-splice

backend iperf-splice
    option splice-auto
    server iperf 127.0.0.1:$P_IPERF
EOF

"$TANDEM_BIN" check -c "$WORK/tandem/tandem.toml" >/dev/null || die "tandem check rejected the generated config"
haproxy -c -q -f "$WORK/haproxy/haproxy.cfg" || die "haproxy -c rejected the generated config"
nginx -t -q -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" ||
    die "nginx -t rejected the generated config"

# ------------------------------------------------------------------ start --
log "starting nginx, iperf3 server, tandem ($THREADS worker(s)), haproxy (nbthread $THREADS) in $WORK"
start nginx nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf"
start iperf3 iperf3 -s -B 127.0.0.1 -p "$P_IPERF"
wait_listen nginx "$P_NGINX"
wait_listen iperf3 "$P_IPERF"
start tandem "$TANDEM_BIN" run -c "$WORK/tandem/tandem.toml"
start haproxy haproxy -db -f "$WORK/haproxy/haproxy.cfg"
wait_listen tandem "$P_TANDEM_HTTP"
wait_listen haproxy "$P_HAPROXY_HTTP"

declare -A HTTP_PORT=([direct]=$P_NGINX [tandem]=$P_TANDEM_HTTP [haproxy]=$P_HAPROXY_HTTP)
# Whose CPU is measured for each target.
declare -A HTTP_CPU=([direct]=nginx [tandem]=tandem [haproxy]=haproxy)
HTTP_TARGETS=(direct tandem haproxy)

declare -A BULK_PORT=([direct]=$P_IPERF [tandem]=$P_TANDEM_BULK_AUTO [tandem-never]=$P_TANDEM_BULK_NEVER
    [haproxy]=$P_HAPROXY_BULK [haproxy-splice]=$P_HAPROXY_BULK_SPLICE)
declare -A BULK_CPU=([direct]=iperf3 [tandem]=tandem [tandem-never]=tandem
    [haproxy]=haproxy [haproxy-splice]=haproxy)
BULK_TARGETS=(direct tandem tandem-never haproxy haproxy-splice)

for t in "${HTTP_TARGETS[@]}"; do
    ok=""
    for ((i = 0; i < 50; i++)); do
        ok=$(http_get "${HTTP_PORT[$t]}" 2>/dev/null || true)
        [[ $ok == ok* ]] && break
        sleep 0.1
    done
    [[ $ok == ok* ]] || die "no 'ok' from $t on 127.0.0.1:${HTTP_PORT[$t]} (got '${ok:0:60}')"
done
log "all targets answer; warming up"
for t in "${HTTP_TARGETS[@]}"; do
    wrk -t "$WRK_THREADS" -c "${CONN_LIST[0]}" -d 1s "http://127.0.0.1:${HTTP_PORT[$t]}/" >/dev/null
done

# ---------------------------------------------------------------- helpers --

RAW_HTTP=$WORK/http.tsv
RAW_BULK=$WORK/bulk.tsv
printf 'target\tconns\tround\trps\tp50_us\tp99_us\trequests\tcpu_us_per_req\tnginx_us_per_req\terrors\tnon2xx\tuser_us_per_req\tsys_us_per_req\n' >"$RAW_HTTP"
printf 'target\tround\tgbps\tbytes\tcpu_s_per_gb\tretransmits\n' >"$RAW_BULK"

run_wrk() {
    local target=$1 conns=$2 round=$3
    local port=${HTTP_PORT[$target]} who=${HTTP_CPU[$target]}
    local pid=${PID_OF[$who]} npid=${PID_OF[nginx]}
    local u0 s0 u1 s1 n0 n1 out reqs rps p50 p99 errs non2xx cpu ucpu scpu ncpu
    read -r u0 s0 < <(cpu_split "$pid")
    n0=$(cpu_ticks "$npid")
    out=$(wrk -t "$WRK_THREADS" -c "$conns" -d "${DURATION}s" --latency "http://127.0.0.1:$port/")
    read -r u1 s1 < <(cpu_split "$pid")
    n1=$(cpu_ticks "$npid")
    printf '=== %s c=%s round %s\n%s\n' "$target" "$conns" "$round" "$out" >>"$WORK/wrk.log"
    alive_or_die "$who"
    reqs=$(awk '/ requests in /{print $1; exit}' <<<"$out")
    rps=$(awk '/^Requests\/sec:/{print $2; exit}' <<<"$out")
    p50=$(to_us "$(awk '$1 == "50%" {print $2; exit}' <<<"$out")")
    p99=$(to_us "$(awk '$1 == "99%" {print $2; exit}' <<<"$out")")
    errs=$(awk '/Socket errors:/{gsub(/,/, ""); print $4 + $6 + $8 + $10; exit}' <<<"$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/{print $NF; exit}' <<<"$out")
    [[ -n $reqs && $reqs -gt 0 ]] || die "wrk against $target completed no requests:"$'\n'"$out"
    cpu=$(per_req $((u1 - u0 + s1 - s0)) "$reqs")
    ucpu=$(per_req $((u1 - u0)) "$reqs")
    scpu=$(per_req $((s1 - s0)) "$reqs")
    ncpu=$(per_req $((n1 - n0)) "$reqs")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$conns" "$round" "$rps" "$p50" "$p99" \
        "$reqs" "$cpu" "$ncpu" "${errs:-0}" "${non2xx:-0}" "$ucpu" "$scpu" >>"$RAW_HTTP"
    log "$(printf '%-14s c=%-4s round %s: %10s req/s  p50 %8s us  p99 %8s us  %s CPU %7s us/req  err %s non2xx %s' \
        "$target" "$conns" "$round" "$rps" "$p50" "$p99" "$who" "$cpu" "${errs:-0}" "${non2xx:-0}")"
}

run_iperf() {
    local target=$1 round=$2
    local port=${BULK_PORT[$target]} who=${BULK_CPU[$target]}
    local pid=${PID_OF[$who]}
    local c0 c1 out gbps bytes retr cpu try
    for try in 1 2 3; do
        c0=$(cpu_ticks "$pid")
        out=$(iperf3 -c 127.0.0.1 -p "$port" -t "$IPERF_TIME" -J 2>&1) || true
        c1=$(cpu_ticks "$pid")
        printf '=== %s round %s try %s\n%s\n' "$target" "$round" "$try" "$out" >>"$WORK/iperf.log"
        bytes=$(jq -r '.end.sum_received.bytes // empty' <<<"$out" 2>/dev/null || true)
        [[ -n $bytes && $bytes != 0 ]] && break
        # The server is still busy with the previous test: retry shortly.
        sleep 1
    done
    alive_or_die "$who"
    [[ -n $bytes && $bytes != 0 ]] || die "iperf3 through $target failed, see the end of $WORK/iperf.log (use --keep)"
    gbps=$(jq -r '.end.sum_received.bits_per_second / 1e9' <<<"$out")
    retr=$(jq -r '.end.sum_sent.retransmits // 0' <<<"$out")
    cpu=$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v b="$bytes" 'BEGIN { printf "%.4f", d / hz / (b / 1e9) }')
    printf '%s\t%s\t%.3f\t%s\t%s\t%s\n' "$target" "$round" "$gbps" "$bytes" "$cpu" "$retr" >>"$RAW_BULK"
    log "$(printf '%-14s bulk   round %s: %7.2f Gbit/s  %s CPU %s s/GB' "$target" "$round" "$gbps" "$who" "$cpu")"
}

# -------------------------------------------------------------------- run --
T_START=$SECONDS
for ((round = 1; round <= RUNS; round++)); do
    ROT=$(((round - 1) % ${#HTTP_TARGETS[@]}))
    rotate "${HTTP_TARGETS[@]}"
    for conns in "${CONN_LIST[@]}"; do
        for t in "${ORDER[@]}"; do
            run_wrk "$t" "$conns" "$round"
            sleep 0.5
        done
    done
done
for ((round = 1; round <= RUNS; round++)); do
    ROT=$(((round - 1) % ${#BULK_TARGETS[@]}))
    rotate "${BULK_TARGETS[@]}"
    for t in "${ORDER[@]}"; do
        run_iperf "$t" "$round"
        sleep 0.5
    done
done
log "load runs took $((SECONDS - T_START)) s"

# --------------------------------------------------------------- summary --
# median over rounds of column COL for rows matching target (and conns).
med_http() {
    awk -F'\t' -v t="$1" -v c="$2" -v col="$3" 'NR > 1 && $1 == t && $2 == c { v[n++] = $col }
        END { if (!n) { print "nan"; exit }
              for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] + 0 < v[i] + 0) { x = v[i]; v[i] = v[j]; v[j] = x }
              print (n % 2) ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2 }' "$RAW_HTTP"
}
# "min-max" over rounds of column COL for rows matching target and conns.
range_http() {
    awk -F'\t' -v t="$1" -v c="$2" -v col="$3" -v f="$4" 'NR > 1 && $1 == t && $2 == c {
            if (!n++ || $col + 0 < lo) lo = $col + 0
            if (n == 1 || $col + 0 > hi) hi = $col + 0 }
        END { if (!n) print "-"; else printf f "-" f, lo, hi }' "$RAW_HTTP"
}
sum_http() {
    awk -F'\t' -v t="$1" -v c="$2" -v col="$3" 'NR > 1 && $1 == t && $2 == c { s += $col } END { print s + 0 }' "$RAW_HTTP"
}
med_bulk() {
    awk -F'\t' -v t="$1" -v col="$2" 'NR > 1 && $1 == t { v[n++] = $col }
        END { if (!n) { print "nan"; exit }
              for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] + 0 < v[i] + 0) { x = v[i]; v[i] = v[j]; v[j] = x }
              print (n % 2) ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2 }' "$RAW_BULK"
}

declare -A M
for conns in "${CONN_LIST[@]}"; do
    for t in "${HTTP_TARGETS[@]}"; do
        M[$t,$conns,rps]=$(med_http "$t" "$conns" 4)
        M[$t,$conns,p50]=$(med_http "$t" "$conns" 5)
        M[$t,$conns,p99]=$(med_http "$t" "$conns" 6)
        M[$t,$conns,cpu]=$(med_http "$t" "$conns" 8)
        M[$t,$conns,usr]=$(med_http "$t" "$conns" 12)
        M[$t,$conns,sys]=$(med_http "$t" "$conns" 13)
        M[$t,$conns,err]=$(($(sum_http "$t" "$conns" 10) + $(sum_http "$t" "$conns" 11)))
    done
done
for t in "${BULK_TARGETS[@]}"; do
    M[$t,bulk,gbps]=$(med_bulk "$t" 3)
    M[$t,bulk,cpu]=$(med_bulk "$t" 5)
    M[$t,bulk,retr]=$(awk -F'\t' -v t="$t" 'NR > 1 && $1 == t { s += $6 } END { print s + 0 }' "$RAW_BULK")
done

# The header arrays are passed by name to print_table / md_table.
# shellcheck disable=SC2034
HTTP_HDR=(target conns "req/s" "p50 ms" "p99 ms" "CPU µs/req" "usr/sys µs" "errors" "req/s vs haproxy" "CPU vs haproxy" "req/s vs direct")
# shellcheck disable=SC2034
BULK_HDR=(target "Gbit/s" "CPU s/GB" "retransmits" "Gbit/s vs haproxy" "CPU vs haproxy" "Gbit/s vs direct")
declare -a HTTP_ROWS=() BULK_ROWS=()
for conns in "${CONN_LIST[@]}"; do
    for t in "${HTTP_TARGETS[@]}"; do
        label=$t
        cpu_vs="-"
        [[ $t == direct ]] && label="direct (nginx CPU)"
        [[ $t != direct ]] && cpu_vs=$(ratio "${M[$t,$conns,cpu]}" "${M[haproxy,$conns,cpu]}")
        HTTP_ROWS+=("$label|$conns|$(fmt "${M[$t,$conns,rps]}" %.0f)|$(fmt_ms "${M[$t,$conns,p50]}")|$(fmt_ms "${M[$t,$conns,p99]}")|$(fmt "${M[$t,$conns,cpu]}" %.2f)|$(fmt "${M[$t,$conns,usr]}" %.2f)/$(fmt "${M[$t,$conns,sys]}" %.2f)|${M[$t,$conns,err]}|$(ratio "${M[$t,$conns,rps]}" "${M[haproxy,$conns,rps]}")|$cpu_vs|$(ratio "${M[$t,$conns,rps]}" "${M[direct,$conns,rps]}")")
    done
done
for t in "${BULK_TARGETS[@]}"; do
    label=$t
    cpu_vs="-"
    case $t in
        direct) label="direct (iperf3 -s CPU)" ;;
        tandem) label="tandem splice=auto" ;;
        tandem-never) label="tandem splice=never" ;;
        haproxy) label="haproxy" ;;
        haproxy-splice) label="haproxy splice-auto" ;;
    esac
    [[ $t != direct ]] && cpu_vs=$(ratio "${M[$t,bulk,cpu]}" "${M[haproxy,bulk,cpu]}")
    BULK_ROWS+=("$label|$(fmt "${M[$t,bulk,gbps]}" %.2f)|$(fmt "${M[$t,bulk,cpu]}" %.3f)|${M[$t,bulk,retr]}|$(ratio "${M[$t,bulk,gbps]}" "${M[haproxy,bulk,gbps]}")|$cpu_vs|$(ratio "${M[$t,bulk,gbps]}" "${M[direct,bulk,gbps]}")")
done

md_table() {
    local -n hdr=$1 rows=$2
    local h r line="|" sep="|"
    for h in "${hdr[@]}"; do
        line+=" $h |"
        sep+=" --- |"
    done
    echo "$line"
    echo "$sep"
    for r in "${rows[@]}"; do
        echo "| ${r//|/ | } |"
    done
}

# Targets ------------------------------------------------------------------
declare -a TARGET_LINES=()
verdict() { awk -v a="$1" -v op="$2" -v b="$3" 'BEGIN { if (a == "nan" || b == "nan") { print "MISS"; exit }
    ok = (op == "le") ? (a + 0 <= b + 0) : (a + 0 >= b + 0); print ok ? "PASS" : "MISS" }'; }
cpu_all=PASS rps_all=PASS cpu_detail="" rps_detail=""
for conns in "${CONN_LIST[@]}"; do
    lim=$(awk -v h="${M[haproxy,$conns,cpu]}" 'BEGIN { printf "%.3f", 0.8 * h }')
    v=$(verdict "${M[tandem,$conns,cpu]}" le "$lim")
    [[ $v == PASS ]] || cpu_all=MISS
    cpu_detail+=" c=$conns: $(fmt "${M[tandem,$conns,cpu]}" %.2f) vs $(fmt "${M[haproxy,$conns,cpu]}" %.2f) µs = $(ratio "${M[tandem,$conns,cpu]}" "${M[haproxy,$conns,cpu]}")x $v (rounds: $(range_http tandem "$conns" 8 %.2f) vs $(range_http haproxy "$conns" 8 %.2f));"
    v=$(verdict "${M[tandem,$conns,rps]}" ge "${M[haproxy,$conns,rps]}")
    [[ $v == PASS ]] || rps_all=MISS
    rps_detail+=" c=$conns: $(fmt "${M[tandem,$conns,rps]}" %.0f) vs $(fmt "${M[haproxy,$conns,rps]}" %.0f) = $(ratio "${M[tandem,$conns,rps]}" "${M[haproxy,$conns,rps]}")x $v (rounds: $(range_http tandem "$conns" 4 %.0f) vs $(range_http haproxy "$conns" 4 %.0f));"
done
bulk_v=$(verdict "${M[tandem,bulk,gbps]}" ge "${M[haproxy,bulk,gbps]}")
bulk_vs=$(verdict "${M[tandem,bulk,gbps]}" ge "${M[haproxy-splice,bulk,gbps]}")
TARGET_LINES+=("$cpu_all  tandem CPU µs/req <= 0.8x HAProxy's:${cpu_detail%;}")
TARGET_LINES+=("$rps_all  tandem req/s >= HAProxy's:${rps_detail%;}")
TARGET_LINES+=("$bulk_v  tandem bulk (splice=auto) >= HAProxy's: $(fmt "${M[tandem,bulk,gbps]}" %.2f) vs $(fmt "${M[haproxy,bulk,gbps]}" %.2f) Gbit/s = $(ratio "${M[tandem,bulk,gbps]}" "${M[haproxy,bulk,gbps]}")x")
TARGET_LINES+=("info  (vs HAProxy with splice-auto: $(fmt "${M[haproxy-splice,bulk,gbps]}" %.2f) Gbit/s = $(ratio "${M[tandem,bulk,gbps]}" "${M[haproxy-splice,bulk,gbps]}")x $bulk_vs)")

SETUP="$(nproc) CPUs, $(uname -r); tandem workers = HAProxy nbthread = $THREADS; wrk -t $WRK_THREADS, ${DURATION} s runs, keep-alive; iperf3 1 stream, ${IPERF_TIME} s; median of $RUNS round(s), targets interleaved"
VERSIONS="tandem $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo '+dirty'); $(haproxy -v | head -n1 | awk '{print "HAProxy", $3}'); $(nginx -v 2>&1 | sed 's/^nginx version: //'); $(wrk -v 2>&1 | awk 'NR == 1 {print "wrk", $2}'); $(iperf3 -v | awk 'NR == 1 {print "iperf3", $2}')"

echo
echo "L4 benchmark — $SETUP"
echo "$VERSIONS"
echo
echo "HTTP keep-alive, 3-byte response (CPU = the proxy's utime+stime per request; direct row: nginx's;"
echo "every column is its own median over the rounds)"
print_table HTTP_HDR HTTP_ROWS
echo
echo "Bulk, iperf3 client -> server (CPU = the proxy's seconds per GB moved; direct row: iperf3 server's)"
print_table BULK_HDR BULK_ROWS
echo
echo "Targets"
printf '  %s\n' "${TARGET_LINES[@]}"

{
    echo "## L4 benchmark (benches/l4.sh)"
    echo
    echo "$SETUP."
    echo "$VERSIONS."
    echo
    echo "### HTTP keep-alive, small response"
    echo
    echo "CPU = the proxy's own utime+stime per request (direct row: nginx's, for reference). Every column is its own median over the rounds."
    echo
    md_table HTTP_HDR HTTP_ROWS
    echo
    echo "### Bulk (iperf3, 1 stream)"
    echo
    echo "CPU = the proxy's seconds per GB moved (direct row: the iperf3 server's)."
    echo
    md_table BULK_HDR BULK_ROWS
    echo
    echo "### Targets"
    echo
    printf -- '- %s\n' "${TARGET_LINES[@]}"
    echo
    echo "<details><summary>Raw runs</summary>"
    echo
    echo '```'
    column -t -s $'\t' "$RAW_HTTP" 2>/dev/null || cat "$RAW_HTTP"
    echo
    column -t -s $'\t' "$RAW_BULK" 2>/dev/null || cat "$RAW_BULK"
    echo '```'
    echo
    echo "</details>"
} >"$OUT"
echo
echo "Markdown results: $OUT"

# ------------------------------------------------------ optional: strace --
if [[ $DO_STRACE -eq 1 ]]; then
    echo
    echo "Syscalls per request under strace -c (wrk -c ${CONN_LIST[0]}, ${DURATION} s; throughput under strace is meaningless)"
    for t in tandem haproxy; do
        pid=${PID_OF[$t]}
        args=()
        for task in /proc/"$pid"/task/*; do
            args+=(-p "${task##*/}")
        done
        strace -c -f -o "$WORK/strace-$t.txt" "${args[@]}" 2>/dev/null &
        spid=$!
        PIDS+=("$spid")
        sleep 1
        out=$(wrk -t "$WRK_THREADS" -c "${CONN_LIST[0]}" -d "${DURATION}s" "http://127.0.0.1:${HTTP_PORT[$t]}/")
        kill -INT "$spid" 2>/dev/null || true
        wait "$spid" 2>/dev/null || true
        reqs=$(awk '/ requests in /{print $1; exit}' <<<"$out")
        echo "--- $t: $reqs requests"
        awk -v n="$reqs" '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { tot += $4; c[$NF] = $4 }
            END { for (k in c) if (c[k] / n >= 0.01) printf "    %-16s %6.2f /req\n", k, c[k] / n; printf "    %-16s %6.2f /req\n", "TOTAL", tot / n }' \
            "$WORK/strace-$t.txt" | sort -k2 -gr
    done
fi

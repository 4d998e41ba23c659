#!/usr/bin/env bash
# L7 benchmark: tandem's HTTP/HTTPS listeners against HAProxy (mode http) and
# nginx (proxy_pass), all in front of the same static nginx backend that
# answers every request with a 100-byte body.
#
# As in benches/l4.sh, the load generator, the proxy and the backend share the
# CPUs of a small machine, so besides req/s and latency the script reports
# each proxy's own CPU time per request (utime+stime from /proc/PID/stat
# before and after each run, all threads, and for nginx its master and
# workers), which is the fairest figure there.
#
# Everything runs on 127.0.0.1; every process the script starts is stopped on
# exit. Run from the repo root:  bash benches/l7.sh   (see --help)
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bash benches/l7.sh [options]

Measures, in one run, with everything on 127.0.0.1 and the same backend
(nginx, 100-byte response, keep-alive) behind tandem, HAProxy and nginx:
  h1        HTTP/1.1 keep-alive, wrk --latency, for each --conns count
            (plus the backend measured directly, as reference)
  h1-close  HTTP/1.1, a new connection per request (wrk with
            "Connection: close"), at the first --conns count
  https     TLS termination (ECDSA P-256, self-signed), HTTP/1.1 keep-alive,
            wrk, for each --conns count
  https-close  new TLS handshakes: HTTPS with a new connection per request
            ("Connection: close"), at the first --conns count
  h2        HTTP/2 over TLS (ALPN h2), h2load -c H2_CONNS -m H2_STREAMS
Per run: req/s, latency (p50/p99 from wrk, mean from wrk or h2load), the
proxy's CPU µs per request (utime+stime deltas), the CPU utilisation of the
proxy, the backend, the load generator and of everything else on the machine
(a shared machine makes runs noisy: such runs are flagged), the connections
the backend accepted (upstream reuse), errors. Targets are interleaved and
rotated each round; every figure is the median over the rounds. Ratios
tandem/HAProxy and tandem/nginx are printed per scenario.

Fairness: tandem workers = HAProxy nbthread = nginx worker_processes
(--threads); upstream keep-alive for all three (tandem max_idle_per_backend,
HAProxy `http-reuse always`, nginx `keepalive`); all three add
X-Forwarded-For/-Proto/-Host and Via (tandem always does), none adds a
request id (tandem's request_id = ""), no access logs.

Options (environment variables in brackets):
  --quick              smoke test: 1 round, c=64 only
  --duration S         seconds per load run (default 3) [L7_DURATION]
  --runs N             rounds (default 3) [L7_RUNS]; on a shared machine a
                       median of several short interleaved runs is steadier
                       than one long run
  --conns "A B"        wrk connection counts (default "64 256") [L7_CONNS]
  --h2-conns N         h2load connections (default 16) [L7_H2_CONNS]
  --h2-streams N       h2load max concurrent streams per connection
                       (default 10) [L7_H2_STREAMS]
  --scenarios "..."    subset of "h1 h1-close https https-close h2" (default all)
                       [L7_SCENARIOS]
  --threads N          proxy threads (default 1) [L7_THREADS]
  --backend-workers N  backend nginx worker processes (default 1)
                       [L7_BACKEND_WORKERS]
  --wrk-threads N      wrk / h2load threads (default 1)
  --tandem-idle N      tandem pool max_idle_per_backend (default 1024, the
                       config default too)
  --port-base P        first of 7 consecutive loopback ports (default 18500)
  --tandem-bin PATH    use this tandem binary (implies --no-build)
  --no-build           do not run `cargo build --release`
  --out FILE           text results file
                       (default target/bench/l7-YYYYmmdd-HHMMSS.txt)
  --layout L           "split" (default with --threads 1): the load generator
                       pinned to CPU 0, every proxy and the backend pinned to
                       CPU 1, so the proxies' CPU per request is measured on a
                       core nothing else competes for; "shared": nothing
                       pinned (the default with --threads > 1, where the
                       workers need both cores) [L7_LAYOUT]
  --keep               keep the temporary directory (configs, logs, raw data)
  -h, --help           this help

Missing tools (wrk h2load haproxy nginx openssl curl ss) are installed with
apt-get when run as root. With the defaults: 3 rounds of 21 runs of 3 s,
about 4 minutes plus the build.
EOF
}

# ---------------------------------------------------------------- options --
DURATION=${L7_DURATION:-3}
RUNS=${L7_RUNS:-3}
CONNS=${L7_CONNS:-"64 256"}
H2_CONNS=${L7_H2_CONNS:-16}
H2_STREAMS=${L7_H2_STREAMS:-10}
SCENARIOS=${L7_SCENARIOS:-"h1 h1-close https https-close h2"}
THREADS=${L7_THREADS:-1}
BACKEND_WORKERS=${L7_BACKEND_WORKERS:-1}
WRK_THREADS=1
TANDEM_IDLE=1024
PORT_BASE=18500
BUILD=1
TANDEM_BIN=""
OUT=""
KEEP=0
LAYOUT=${L7_LAYOUT:-}

BENCH=l7
# shellcheck source=benches/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

while [[ $# -gt 0 ]]; do
    case $1 in
        --quick)
            RUNS=1
            DURATION=3
            CONNS=64
            ;;
        --duration) need_arg "$@"; DURATION=$2; shift ;;
        --runs) need_arg "$@"; RUNS=$2; shift ;;
        --conns) need_arg "$@"; CONNS=$2; shift ;;
        --h2-conns) need_arg "$@"; H2_CONNS=$2; shift ;;
        --h2-streams) need_arg "$@"; H2_STREAMS=$2; shift ;;
        --scenarios) need_arg "$@"; SCENARIOS=$2; shift ;;
        --threads) need_arg "$@"; THREADS=$2; shift ;;
        --backend-workers) need_arg "$@"; BACKEND_WORKERS=$2; shift ;;
        --wrk-threads) need_arg "$@"; WRK_THREADS=$2; shift ;;
        --tandem-idle) need_arg "$@"; TANDEM_IDLE=$2; shift ;;
        --port-base) need_arg "$@"; PORT_BASE=$2; shift ;;
        --tandem-bin) need_arg "$@"; TANDEM_BIN=$2; BUILD=0; shift ;;
        --no-build) BUILD=0 ;;
        --out) need_arg "$@"; OUT=$2; shift ;;
        --keep) KEEP=1 ;;
        --layout) need_arg "$@"; LAYOUT=$2; shift ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
    shift
done

if [[ -z $LAYOUT ]]; then
    if [[ $THREADS -eq 1 ]]; then LAYOUT=split; else LAYOUT=shared; fi
fi
case $LAYOUT in
    split)
        [[ $(nproc) -ge 2 ]] || die "--layout split needs 2 CPUs"
        PIN_LOAD=(taskset -c 0)
        PIN_PROXY=(taskset -c 1)
        ;;
    shared)
        PIN_LOAD=()
        PIN_PROXY=()
        ;;
    *) die "--layout must be split or shared" ;;
esac
for v in DURATION RUNS H2_CONNS H2_STREAMS THREADS BACKEND_WORKERS WRK_THREADS PORT_BASE; do
    if ! is_uint "${!v}" || [[ ${!v} -eq 0 ]]; then
        die "$v must be a positive integer (got '${!v}')"
    fi
done
is_uint "$TANDEM_IDLE" || die "--tandem-idle must be an integer (got '$TANDEM_IDLE')"
[[ $DURATION -le 120 ]] || die "--duration is capped at 120 s"
read -r -a CONN_LIST <<<"$CONNS"
[[ ${#CONN_LIST[@]} -gt 0 ]] || die "--conns is empty"
for c in "${CONN_LIST[@]}"; do
    if ! is_uint "$c" || [[ $c -lt $WRK_THREADS ]]; then
        die "connection count '$c' must be an integer >= --wrk-threads"
    fi
done
[[ $H2_CONNS -ge $WRK_THREADS ]] || die "--h2-conns must be >= --wrk-threads"
read -r -a SCEN_LIST <<<"$SCENARIOS"
[[ ${#SCEN_LIST[@]} -gt 0 ]] || die "--scenarios is empty"
for s in "${SCEN_LIST[@]}"; do
    case $s in
        h1 | h1-close | https | https-close | h2) ;;
        *) die "unknown scenario '$s' (expected h1 h1-close https https-close h2)" ;;
    esac
done
has_scen() { [[ " ${SCEN_LIST[*]} " == *" $1 "* ]]; }
[[ $PORT_BASE -le 65520 ]] || die "--port-base too high"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# ------------------------------------------------------------------ tools --
ensure_tools wrk:wrk h2load:nghttp2-client haproxy:haproxy nginx:nginx openssl:openssl \
    curl:curl ss:iproute2 getconf:libc-bin

# ------------------------------------------------- processes and cleanup --
bench_start
[[ -x $TANDEM_BIN ]] || die "no tandem binary at $TANDEM_BIN (build it or pass --tandem-bin)"

CLK_TCK=$(getconf CLK_TCK)
if [[ -z $OUT ]]; then
    mkdir -p "$ROOT/target/bench"
    OUT=$ROOT/target/bench/l7-$(date +%Y%m%d-%H%M%S).txt
fi
mkdir -p "$(dirname "$OUT")"

# "utime stime" in clock ticks of a process (fields 14, 15 of /proc/PID/stat:
# all its threads; the command name may contain spaces, so cut after ')')
# plus its direct children (nginx workers under their master).
cpu_split() {
    local s f pid u=0 st=0
    for pid in "$1" $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        s=$(<"/proc/$pid/stat") || continue
        s=${s##*) }
        read -r -a f <<<"$s"
        u=$((u + f[11]))
        st=$((st + f[12]))
    done
    echo "$u $st"
}

# Connections the backend has accepted so far (nginx stub_status); reading
# it opens one more.
backend_accepts() {
    curl -s --max-time 3 "http://127.0.0.1:$P_BACKEND/_status" | awk 'NR == 3 {print $1; exit}'
}

# Busy clock ticks of the whole machine, all CPUs (/proc/stat: user nice
# system irq softirq steal).
machine_busy_ticks() {
    local a
    read -r -a a < <(head -n1 /proc/stat)
    echo $((a[1] + a[2] + a[3] + a[6] + a[7] + a[8]))
}
# Share of all CPUs used over 2 s, before anything is started: a busy
# machine makes every figure noisy.
machine_busy_pct() {
    local m0 m1
    m0=$(machine_busy_ticks)
    sleep 2
    m1=$(machine_busy_ticks)
    awk -v d=$((m1 - m0)) -v hz="$CLK_TCK" -v n="$(nproc)" 'BEGIN { printf "%.0f", d / hz / 2 / n * 100 }'
}

# ------------------------------------------------------------------ ports --
P_BACKEND=$PORT_BASE
P_TANDEM_HTTP=$((PORT_BASE + 1))
P_TANDEM_HTTPS=$((PORT_BASE + 2))
P_HAPROXY_HTTP=$((PORT_BASE + 3))
P_HAPROXY_HTTPS=$((PORT_BASE + 4))
P_NGINX_HTTP=$((PORT_BASE + 5))
P_NGINX_HTTPS=$((PORT_BASE + 6))
# tandem with client policy on every request: an allow/deny ACL and a
# per-client rate limit that never trips (its cost is the point).
P_TANDEM_POLICY=$((PORT_BASE + 7))
for p in $(seq "$PORT_BASE" $((PORT_BASE + 7))); do
    port_busy "$p" && die "port 127.0.0.1:$p is in use; pick another --port-base"
done

# ------------------------------------------------------------ certificate --
mkdir -p "$WORK/tls" "$WORK/backend/tmp" "$WORK/nginx/tmp" "$WORK/tandem" "$WORK/haproxy"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=bench.local" -addext "subjectAltName=DNS:bench.local,IP:127.0.0.1" \
    -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" >"$WORK/tls/openssl.log" 2>&1 ||
    { cat "$WORK/tls/openssl.log" >&2; die "openssl req failed"; }
cat "$WORK/tls/cert.pem" "$WORK/tls/key.pem" >"$WORK/tls/haproxy.pem"

# ---------------------------------------------------------------- configs --
# 100 bytes: 99 x "x" and a newline.
BODY=$(printf 'x%.0s' $(seq 99))
BODY_LEN=$((${#BODY} + 1))

nginx_common() { # $1 = directory
    cat <<EOF
    access_log off;
    client_body_temp_path $1/tmp/body;
    proxy_temp_path $1/tmp/proxy;
    fastcgi_temp_path $1/tmp/fastcgi;
    uwsgi_temp_path $1/tmp/uwsgi;
    scgi_temp_path $1/tmp/scgi;
    # Keep-alive for the whole run: no reconnects skew the numbers.
    keepalive_requests 100000000;
    keepalive_timeout 300s;
EOF
}

cat >"$WORK/backend/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes $BACKEND_WORKERS;
pid $WORK/backend/nginx.pid;
error_log $WORK/backend/error.log warn;
events { worker_connections 8192; }
http {
$(nginx_common "$WORK/backend")
    server {
        listen 127.0.0.1:$P_BACKEND backlog=4096;
        default_type text/plain;
        location / { return 200 "$BODY\n"; }
        # Connections accepted: how many the proxies opened during a run.
        location = /_status { stub_status; }
    }
}
EOF

cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes $THREADS;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 8192; }
http {
$(nginx_common "$WORK/nginx")
    # nginx 1.22 leaves TLS 1.3 out of its default ssl_protocols.
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate $WORK/tls/cert.pem;
    ssl_certificate_key $WORK/tls/key.pem;
    upstream backend {
        server 127.0.0.1:$P_BACKEND;
        keepalive 1024;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$P_NGINX_HTTP backlog=4096;
        listen 127.0.0.1:$P_NGINX_HTTPS ssl http2 backlog=4096;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header Via "1.1 nginx";
        }
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
name = "backend"
algorithm = "round_robin"
health = { check = "tcp", interval = "2s" }
# The default (32) is below the benchmark's concurrency: every upstream
# connection beyond 32 is closed when it goes idle, and at c=256 about one
# request in two opened a new backend connection. HAProxy and nginx keep
# theirs (see --tandem-idle).
max_idle_per_backend = $TANDEM_IDLE
upstream_idle_timeout = "300s"
backends = [{ address = "127.0.0.1:$P_BACKEND" }]

[[listener]]
name = "http"
bind = "127.0.0.1:$P_TANDEM_HTTP"
protocol = "http"
pool = "backend"
backlog = 4096
request_id = ""
keepalive_timeout = "300s"

[[listener]]
name = "http-policy"
bind = "127.0.0.1:$P_TANDEM_POLICY"
protocol = "http"
pool = "backend"
backlog = 4096
request_id = ""
keepalive_timeout = "300s"
allow = ["127.0.0.0/8", "10.0.0.0/8", "2001:db8::/32"]
deny = ["192.0.2.0/24", "127.0.0.2"]
rate_limit = { rate = 10000000, burst = 10000000, max_connections = 100000 }

[[listener]]
name = "https"
bind = "127.0.0.1:$P_TANDEM_HTTPS"
protocol = "https"
pool = "backend"
backlog = 4096
request_id = ""
keepalive_timeout = "300s"
tls = { certificates = [{ cert = "$WORK/tls/cert.pem", key = "$WORK/tls/key.pem", default = true }] }
EOF

cat >"$WORK/haproxy/haproxy.cfg" <<EOF
global
    nbthread $THREADS
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    option forwardfor
    timeout connect 3s
    timeout client 5m
    timeout server 5m
    timeout http-keep-alive 300s

frontend http
    bind 127.0.0.1:$P_HAPROXY_HTTP
    bind 127.0.0.1:$P_HAPROXY_HTTPS ssl crt $WORK/tls/haproxy.pem alpn h2,http/1.1
    backlog 4096
    http-request set-header X-Forwarded-Proto https if { ssl_fc }
    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request add-header Via "1.1 haproxy"
    default_backend backend

backend backend
    # The default (safe) never sends a client connection's first request on a
    # shared idle connection: with one request per client connection every
    # request would open a backend connection. tandem and nginx share theirs.
    http-reuse always
    server backend 127.0.0.1:$P_BACKEND check inter 2s
EOF

"$TANDEM_BIN" check -c "$WORK/tandem/tandem.toml" >"$WORK/tandem/check.log" 2>&1 ||
    { cat "$WORK/tandem/check.log" >&2; die "tandem check rejected the generated config"; }
haproxy -c -q -f "$WORK/haproxy/haproxy.cfg" || die "haproxy -c rejected the generated config"
for d in backend nginx; do
    nginx -t -q -p "$WORK/$d" -e "$WORK/$d/error.log" -c "$WORK/$d/nginx.conf" ||
        die "nginx -t rejected the generated $d config"
done

# ------------------------------------------------------------------ start --
BUSY=$(machine_busy_pct)
if [[ $BUSY -ge 20 ]]; then
    log "WARNING: the machine is already $BUSY% busy before the benchmark (other processes); figures will be noisy"
fi
log "starting backend nginx ($BACKEND_WORKERS worker(s)), tandem ($THREADS worker(s)), haproxy (nbthread $THREADS), nginx ($THREADS worker(s)) in $WORK"
start backend "${PIN_PROXY[@]}" nginx -p "$WORK/backend" -e "$WORK/backend/error.log" -c "$WORK/backend/nginx.conf"
wait_listen backend "$P_BACKEND"
start tandem "${PIN_PROXY[@]}" "$TANDEM_BIN" run -c "$WORK/tandem/tandem.toml"
start haproxy "${PIN_PROXY[@]}" haproxy -db -f "$WORK/haproxy/haproxy.cfg"
start nginx "${PIN_PROXY[@]}" nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf"
wait_listen tandem "$P_TANDEM_HTTP"
wait_listen tandem "$P_TANDEM_HTTPS"
wait_listen haproxy "$P_HAPROXY_HTTP"
wait_listen haproxy "$P_HAPROXY_HTTPS"
wait_listen nginx "$P_NGINX_HTTP"
wait_listen nginx "$P_NGINX_HTTPS"

declare -A HTTP_PORT=([direct]=$P_BACKEND [tandem]=$P_TANDEM_HTTP [tandem-policy]=$P_TANDEM_POLICY [haproxy]=$P_HAPROXY_HTTP [nginx]=$P_NGINX_HTTP)
declare -A HTTPS_PORT=([tandem]=$P_TANDEM_HTTPS [haproxy]=$P_HAPROXY_HTTPS [nginx]=$P_NGINX_HTTPS)
# Whose CPU is measured for each target.
declare -A CPU_OF=([direct]=backend [tandem]=tandem [tandem-policy]=tandem [haproxy]=haproxy [nginx]=nginx)
PROXIES=(tandem haproxy nginx)

# Sanity: every target answers 200 with the 100-byte body, https ones with
# HTTP/1.1 and with HTTP/2 over ALPN.
check_target() {
    local what=$1 url=$2 want_ver=$3 out i
    shift 3
    for ((i = 0; i < 50; i++)); do
        out=$(curl -sk --max-time 3 "$@" -o "$WORK/body" -w '%{http_code} %{http_version} %{size_download}' "$url" 2>/dev/null || true)
        [[ $out == "200 $want_ver $BODY_LEN" ]] && return 0
        sleep 0.1
    done
    die "$what: expected '200 $want_ver $BODY_LEN' (status, HTTP version, body bytes) from $url, got '$out'"
}
for t in direct "${PROXIES[@]}" tandem-policy; do
    check_target "$t http" "http://127.0.0.1:${HTTP_PORT[$t]}/" 1.1 --http1.1
done
for t in "${PROXIES[@]}"; do
    check_target "$t https" "https://127.0.0.1:${HTTPS_PORT[$t]}/" 1.1 --http1.1
    check_target "$t h2" "https://127.0.0.1:${HTTPS_PORT[$t]}/" 2 --http2
done
# The TLS parameters each proxy negotiates with an OpenSSL client (as wrk's).
declare -A TLS_PARAMS=()
for t in "${PROXIES[@]}"; do
    TLS_PARAMS[$t]=$(openssl s_client -connect "127.0.0.1:${HTTPS_PORT[$t]}" -servername bench.local </dev/null 2>/dev/null |
        awk '/^New, /{sub(/^New, /, ""); sub(/, Cipher is /, " "); print; exit}')
    TLS_PARAMS[$t]=${TLS_PARAMS[$t]:-?}
done
log "all targets answer (TLS: tandem ${TLS_PARAMS[tandem]}, haproxy ${TLS_PARAMS[haproxy]}, nginx ${TLS_PARAMS[nginx]}); warming up"
for t in direct "${PROXIES[@]}"; do
    wrk -t "$WRK_THREADS" -c "${CONN_LIST[0]}" -d 1s "http://127.0.0.1:${HTTP_PORT[$t]}/" >/dev/null
done
if has_scen https || has_scen h2; then
    for t in "${PROXIES[@]}"; do
        wrk -t "$WRK_THREADS" -c "${CONN_LIST[0]}" -d 1s "https://127.0.0.1:${HTTPS_PORT[$t]}/" >/dev/null
    done
fi

# ---------------------------------------------------------------- helpers --

RAW=$WORK/runs.tsv
printf 'scenario\ttarget\tround\trps\tp50_us\tp99_us\tmean_us\trequests\tcpu_us_per_req\tuser_us_per_req\tsys_us_per_req\tproxy_cpu_pct\tbackend_cpu_pct\terrors\tnon2xx\tbackend_conns\tloadgen_cpu_pct\tother_cpu_pct\n' >"$RAW"

# pct TICKS NANOSECONDS: CPU utilisation in % of one core.
pct() { awk -v d="$1" -v hz="$CLK_TCK" -v ns="$2" 'BEGIN { printf "%.0f", d / hz / (ns / 1e9) * 100 }'; }

# CPU ticks of every server the script started.
ours_ticks() {
    local n sum=0
    for n in backend tandem haproxy nginx; do
        sum=$((sum + $(cpu_ticks "${PID_OF[$n]}")))
    done
    echo "$sum"
}

# run_load SCENARIO TARGET ROUND: one bounded load run, one row in $RAW.
run_load() {
    local scen=$1 target=$2 round=$3
    local who=${CPU_OF[$target]}
    local pid=${PID_OF[$who]} bpid=${PID_OF[backend]}
    local u0 s0 u1 s1 b0 b1 t0 t1 a0 a1 m0 m1 o0 o1 lu ls lg_pct other_pct out reqs rps p50 p99 mean errs non2xx conns
    local TIMEFORMAT='%U %S'
    local -a load
    case $scen in
        h1-c* | h1close-c*)
            conns=${scen##*-c}
            load=("${PIN_LOAD[@]}" wrk -t "$WRK_THREADS" -c "$conns" -d "${DURATION}s" --latency)
            [[ $scen == h1close-* ]] && load+=(-H "Connection: close")
            load+=("http://127.0.0.1:${HTTP_PORT[$target]}/")
            ;;
        https-c* | httpsclose-c*)
            conns=${scen##*-c}
            load=("${PIN_LOAD[@]}" wrk -t "$WRK_THREADS" -c "$conns" -d "${DURATION}s" --latency)
            [[ $scen == httpsclose-* ]] && load+=(-H "Connection: close")
            load+=("https://127.0.0.1:${HTTPS_PORT[$target]}/")
            ;;
        h2)
            load=("${PIN_LOAD[@]}" h2load -t "$WRK_THREADS" -c "$H2_CONNS" -m "$H2_STREAMS" -D "$DURATION" "https://127.0.0.1:${HTTPS_PORT[$target]}/")
            ;;
    esac
    a0=$(backend_accepts)
    o0=$(ours_ticks)
    m0=$(machine_busy_ticks)
    read -r u0 s0 < <(cpu_split "$pid")
    b0=$(cpu_ticks "$bpid")
    t0=$(date +%s%N)
    # The load tools stop by themselves after DURATION; the timeout only
    # guards against a wedged run. `time` gives the load generator's CPU.
    if ! { time timeout -k 5 $((DURATION + 30)) "${load[@]}" >"$WORK/load.out" 2>&1; } 2>"$WORK/load.time"; then
        die "${load[*]} failed:"$'\n'"$(cat "$WORK/load.out")"
    fi
    t1=$(date +%s%N)
    read -r u1 s1 < <(cpu_split "$pid")
    b1=$(cpu_ticks "$bpid")
    m1=$(machine_busy_ticks)
    o1=$(ours_ticks)
    a1=$(backend_accepts)
    out=$(<"$WORK/load.out")
    read -r lu ls <"$WORK/load.time"
    printf '=== %s %s round %s: %s\n%s\n' "$scen" "$target" "$round" "${load[*]}" "$out" >>"$WORK/load.log"
    alive_or_die "$who"
    if [[ $scen == h2 ]]; then
        reqs=$(awk '/^requests:/{print $8; exit}' <<<"$out")
        rps=$(awk '/^finished in/{print $4; exit}' <<<"$out")
        p50=nan
        p99=nan
        mean=$(to_us "$(awk '/^time for request:/{print $6; exit}' <<<"$out")")
        errs=$(awk '/^requests:/{print $10 + $12 + $14; exit}' <<<"$out")
        non2xx=$(awk '/^status codes:/{print $5 + $7 + $9; exit}' <<<"$out")
    else
        reqs=$(awk '/ requests in /{print $1; exit}' <<<"$out")
        rps=$(awk '/^Requests\/sec:/{print $2; exit}' <<<"$out")
        p50=$(to_us "$(awk '$1 == "50%" {print $2; exit}' <<<"$out")")
        p99=$(to_us "$(awk '$1 == "99%" {print $2; exit}' <<<"$out")")
        mean=$(to_us "$(awk '$1 == "Latency" {print $2; exit}' <<<"$out")")
        errs=$(awk '/Socket errors:/{gsub(/,/, ""); print $4 + $6 + $8 + $10; exit}' <<<"$out")
        non2xx=$(awk '/Non-2xx or 3xx responses:/{print $NF; exit}' <<<"$out")
    fi
    [[ -n $reqs && $reqs -gt 0 ]] || die "${load[*]} completed no requests:"$'\n'"$out"
    # Other processes on the machine: its busy time minus ours and the load
    # generator's, in % of one core.
    lg_pct=$(awk -v c="$lu $ls" -v ns=$((t1 - t0)) 'BEGIN { split(c, a, " "); printf "%.0f", (a[1] + a[2]) / (ns / 1e9) * 100 }')
    other_pct=$(awk -v m=$((m1 - m0 - (o1 - o0))) -v hz="$CLK_TCK" -v ns=$((t1 - t0)) -v lg="$lg_pct" \
        'BEGIN { v = m / hz / (ns / 1e9) * 100 - lg; printf "%.0f", v < 0 ? 0 : v }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scen" "$target" "$round" "$rps" "$p50" "$p99" "$mean" \
        "$reqs" "$(per_req $((u1 - u0 + s1 - s0)) "$reqs")" "$(per_req $((u1 - u0)) "$reqs")" "$(per_req $((s1 - s0)) "$reqs")" \
        "$(pct $((u1 - u0 + s1 - s0)) $((t1 - t0)))" "$(pct $((b1 - b0)) $((t1 - t0)))" "${errs:-0}" "${non2xx:-0}" $((a1 - a0 - 1)) "$lg_pct" "$other_pct" >>"$RAW"
    log "$(tail -n 1 "$RAW" | awk -F'\t' -v who="$who" '{ printf "%-11s %-8s round %s: %9.0f req/s  p99 %8s us  mean %8s us  %s CPU %6.2f us/req (%s%%)  backend %s%% %s conns  loadgen %s%%  others %s%%  err %s non2xx %s",
        $1, $2, $3, $4, $6, $7, who, $9, $12, $13, $16, $17, $18, $14, $15 }')"
}

# ------------------------------------------------------------ scenarios --
# Each: id|label|targets
declare -a SCEN_SPECS=()
for s in "${SCEN_LIST[@]}"; do
    case $s in
        h1)
            for c in "${CONN_LIST[@]}"; do
                SCEN_SPECS+=("h1-c$c|HTTP/1.1 keep-alive, wrk c=$c|direct tandem tandem-policy haproxy nginx")
            done
            ;;
        h1-close)
            SCEN_SPECS+=("h1close-c${CONN_LIST[0]}|HTTP/1.1 new connection per request, wrk c=${CONN_LIST[0]}|direct tandem haproxy nginx")
            ;;
        https)
            for c in "${CONN_LIST[@]}"; do
                SCEN_SPECS+=("https-c$c|HTTPS (TLS termination) HTTP/1.1 keep-alive, wrk c=$c|tandem haproxy nginx")
            done
            ;;
        https-close)
            SCEN_SPECS+=("httpsclose-c${CONN_LIST[0]}|HTTPS new TLS handshake per request, wrk c=${CONN_LIST[0]}|tandem haproxy nginx")
            ;;
        h2)
            SCEN_SPECS+=("h2|HTTP/2 over TLS, h2load c=$H2_CONNS m=$H2_STREAMS|tandem haproxy nginx")
            ;;
    esac
done
n_runs=0
for spec in "${SCEN_SPECS[@]}"; do
    IFS='|' read -r _ _ tl <<<"$spec"
    read -r -a ta <<<"$tl"
    n_runs=$((n_runs + ${#ta[@]} * RUNS))
done
log "$n_runs load runs of $DURATION s: about $(((n_runs * (DURATION * 10 + 7) / 10 + 59) / 60)) min"

# -------------------------------------------------------------------- run --
T_START=$SECONDS
for ((round = 1; round <= RUNS; round++)); do
    for spec in "${SCEN_SPECS[@]}"; do
        IFS='|' read -r id _ tl <<<"$spec"
        read -r -a ta <<<"$tl"
        ROT=$(((round - 1) % ${#ta[@]}))
        rotate "${ta[@]}"
        for t in "${ORDER[@]}"; do
            run_load "$id" "$t" "$round"
            sleep 0.5
        done
    done
done
log "load runs took $((SECONDS - T_START)) s"

# --------------------------------------------------------------- summary --
# median over rounds of column COL for rows matching scenario and target.
med() {
    awk -F'\t' -v s="$1" -v t="$2" -v col="$3" 'NR > 1 && $1 == s && $2 == t && $col != "nan" { v[n++] = $col }
        END { if (!n) { print "nan"; exit }
              for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] + 0 < v[i] + 0) { x = v[i]; v[i] = v[j]; v[j] = x }
              print (n % 2) ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2 }' "$RAW"
}
# "min-max" over rounds of column COL.
range_col() {
    awk -F'\t' -v s="$1" -v t="$2" -v col="$3" -v f="$4" 'NR > 1 && $1 == s && $2 == t && $col != "nan" {
            if (!n++ || $col + 0 < lo) lo = $col + 0
            if (n == 1 || $col + 0 > hi) hi = $col + 0 }
        END { if (!n) print "-"; else printf f "-" f, lo, hi }' "$RAW"
}
sum_col() {
    awk -F'\t' -v s="$1" -v t="$2" -v col="$3" 'NR > 1 && $1 == s && $2 == t { x += $col } END { print x + 0 }' "$RAW"
}

declare -A M
declare -a ABS_ROWS=() RATIO_ROWS=()
for spec in "${SCEN_SPECS[@]}"; do
    IFS='|' read -r id label tl <<<"$spec"
    read -r -a ta <<<"$tl"
    for t in "${ta[@]}"; do
        M[$t,rps]=$(med "$id" "$t" 4)
        M[$t,p50]=$(med "$id" "$t" 5)
        M[$t,p99]=$(med "$id" "$t" 6)
        M[$t,mean]=$(med "$id" "$t" 7)
        M[$t,cpu]=$(med "$id" "$t" 9)
        M[$t,usr]=$(med "$id" "$t" 10)
        M[$t,sys]=$(med "$id" "$t" 11)
        M[$t,ppct]=$(med "$id" "$t" 12)
        M[$t,bpct]=$(med "$id" "$t" 13)
        M[$t,err]=$(($(sum_col "$id" "$t" 14) + $(sum_col "$id" "$t" 15)))
        M[$t,bconns]=$(med "$id" "$t" 16)
        M[$t,lg]=$(med "$id" "$t" 17)
        M[$t,oth]=$(med "$id" "$t" 18)
        tname=$t
        [[ $t == direct ]] && tname="backend direct"
        bpct=$(fmt "${M[$t,bpct]}" %.0f)
        [[ $t == direct ]] && bpct="(same)"
        ABS_ROWS+=("$id|$tname|$(fmt "${M[$t,rps]}" %.0f)|$(fmt_ms "${M[$t,p50]}")|$(fmt_ms "${M[$t,p99]}")|$(fmt_ms "${M[$t,mean]}")|$(fmt "${M[$t,cpu]}" %.2f)|$(range_col "$id" "$t" 9 %.1f)|$(fmt "${M[$t,usr]}" %.2f)/$(fmt "${M[$t,sys]}" %.2f)|$(fmt "${M[$t,ppct]}" %.0f)|$bpct|$(fmt "${M[$t,bconns]}" %.0f)|$(fmt "${M[$t,lg]}" %.0f)|$(fmt "${M[$t,oth]}" %.0f)|${M[$t,err]}")
    done
    pol="-"
    [[ " ${ta[*]} " == *" tandem-policy "* ]] && pol=$(ratio "${M[tandem-policy,cpu]}" "${M[tandem,cpu]}")
    RATIO_ROWS+=("$id|$(ratio "${M[tandem,rps]}" "${M[haproxy,rps]}")|$(ratio "${M[tandem,cpu]}" "${M[haproxy,cpu]}")|$(ratio "${M[tandem,p99]}" "${M[haproxy,p99]}")|$(ratio "${M[tandem,rps]}" "${M[nginx,rps]}")|$(ratio "${M[tandem,cpu]}" "${M[nginx,cpu]}")|$(ratio "${M[tandem,p99]}" "${M[nginx,p99]}")|$pol")
done
# The header arrays are passed by name to print_table.
# shellcheck disable=SC2034
ABS_HDR=(scenario target "req/s" "p50 ms" "p99 ms" "mean ms" "CPU µs/req" "(min-max)" "usr/sys µs" "CPU %" "backend CPU %" "backend conns" "loadgen CPU %" "others CPU %" errors)
# shellcheck disable=SC2034
RATIO_HDR=(scenario "req/s t/h" "CPU/req t/h" "p99 t/h" "req/s t/n" "CPU/req t/n" "p99 t/n" "CPU/req policy/t")

SETUP="$(nproc) CPUs, $(uname -r), ${BUSY}% busy before start; layout $LAYOUT$([[ $LAYOUT == split ]] && echo ' (load generator on CPU 0; proxies and backend on CPU 1)'); ${DURATION} s per run, median of $RUNS round(s), targets interleaved
proxies: tandem workers = HAProxy nbthread = nginx worker_processes = $THREADS; tandem max_idle_per_backend = $TANDEM_IDLE
backend: nginx, $BACKEND_WORKERS worker(s), $BODY_LEN-byte body; load: wrk / h2load -t $WRK_THREADS"
VERSIONS="tandem $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo '+dirty'); $(haproxy -v | head -n1 | awk '{print "HAProxy", $3}'); $(nginx -v 2>&1 | sed 's/^nginx version: //'); $(wrk -v 2>&1 | awk 'NR == 1 {print "wrk", $2}'); $(h2load --version 2>&1 | head -n1)"
TLS_LINE="TLS (ECDSA P-256 self-signed): tandem ${TLS_PARAMS[tandem]}; haproxy ${TLS_PARAMS[haproxy]}; nginx ${TLS_PARAMS[nginx]}"

NOISY=$(awk -F'\t' 'NR > 1 && $18 + 0 > 20 { n++ } END { print n + 0 }' "$RAW")
NOISE_LINE=""
if [[ $NOISY -gt 0 ]]; then
    NOISE_LINE="WARNING: in $NOISY of $n_runs runs other processes used more than 20% of a core (column \"others\"): the figures are noisy, rerun on a quiet machine"
fi

report() {
    echo "L7 benchmark (benches/l7.sh) — $(date '+%Y-%m-%d %H:%M:%S')"
    echo "$SETUP"
    echo "$VERSIONS"
    echo "$TLS_LINE"
    [[ -z $NOISE_LINE ]] || echo "$NOISE_LINE"
    echo
    echo "Scenarios:"
    for spec in "${SCEN_SPECS[@]}"; do
        IFS='|' read -r id label _ <<<"$spec"
        printf '  %-12s %s\n' "$id" "$label"
    done
    echo
    echo "Absolute (CPU = the proxy's own utime+stime per request, nginx = master + workers; \"backend direct\": the"
    echo "backend's own; CPU % = share of one core over the run; backend conns = connections the backend accepted
during the run (upstream connections opened by the proxy); loadgen = wrk/h2load; others = the rest of the
machine (other users: above ~20 % the row is noisy); p50/p99 from wrk, mean from wrk or h2load)"
    print_table ABS_HDR ABS_ROWS 2
    echo
    echo "Ratios (t/h = tandem / HAProxy, t/n = tandem / nginx; req/s: higher is better for tandem, CPU/req and p99: lower;"
    echo "policy/t = tandem with an ACL and a per-client rate limit checked on every request / plain tandem)"
    print_table RATIO_HDR RATIO_ROWS 2
}

echo
report
{
    report
    echo
    echo "Raw runs"
    column -t -s $'\t' "$RAW" 2>/dev/null || cat "$RAW"
} >"$OUT"
echo
echo "Results: $OUT"

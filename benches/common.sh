# shellcheck shell=bash
# Shared by the benchmark scripts (benches/l4.sh, benches/l7.sh): argument
# checks, logging, tool installation, background processes with cleanup on
# any exit, CPU accounting and table formatting. Sourced with BENCH set to
# the script's short name (l4, l7); the script defines cpu_split (which
# processes count as the proxy's CPU differs per benchmark).

die() {
    echo "$BENCH.sh: $*" >&2
    exit 1
}

need_arg() {
    [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value (see --help)"
}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

log() { printf '[%s %s] %s\n' "$BENCH" "$(date +%H:%M:%S)" "$*" >&2; }

# ensure_tools TOOL:PACKAGE...: installs the Debian packages of missing tools
# (as root), or says which to install.
ensure_tools() {
    local missing=() want=() spec
    for spec in "$@"; do
        want+=("${spec%%:*}")
        command -v "${spec%%:*}" >/dev/null 2>&1 || missing+=("${spec#*:}")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    command -v apt-get >/dev/null 2>&1 || die "missing tools (packages: ${missing[*]}) and no apt-get"
    [[ $(id -u) -eq 0 ]] || die "missing tools; as root run: apt-get install ${missing[*]}"
    log "installing: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
        { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; } ||
        die "apt-get install ${missing[*]} failed"
    for spec in "${want[@]}"; do
        command -v "$spec" >/dev/null 2>&1 || die "$spec still missing after apt-get"
    done
}

# Stops every process started with `start` (TERM, then KILL after 3 s) and
# removes $WORK unless --keep; runs on every exit.
cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for ((i = 0; i < 30; i++)); do
        local alive=0
        for pid in "${PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        [[ $alive -eq 0 ]] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [[ $KEEP -eq 1 ]]; then
        echo "$BENCH.sh: kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}

# bench_start: the work directory, the process table and the exit traps;
# then builds tandem unless --no-build/--tandem-bin (sets TANDEM_BIN).
bench_start() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/tandem-$BENCH.XXXXXX")
    PIDS=()
    declare -gA PID_OF=()
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    if [[ -z $TANDEM_BIN ]]; then
        if [[ $BUILD -eq 1 ]]; then
            log "cargo build --release"
            if ! cargo build --release >"$WORK/build.log" 2>&1; then
                tail -n 30 "$WORK/build.log" >&2
                die "cargo build --release failed"
            fi
        fi
        TANDEM_BIN=$ROOT/target/release/tandem
    fi
}

# start NAME CMD...: runs CMD in the background, output to $WORK/NAME.log.
start() {
    local name=$1
    shift
    "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=("$!")
    PID_OF[$name]=$!
}

alive_or_die() {
    local name=$1
    if ! kill -0 "${PID_OF[$name]}" 2>/dev/null; then
        echo "--- $name log:" >&2
        tail -n 20 "$WORK/$name.log" >&2 || true
        die "$name (pid ${PID_OF[$name]}) is not running"
    fi
}

port_busy() { [[ -n $(ss -Hltn "sport = :$1") ]]; }

wait_listen() {
    local name=$1 port=$2 i
    for ((i = 0; i < 100; i++)); do
        port_busy "$port" && return 0
        alive_or_die "$name"
        sleep 0.1
    done
    die "$name did not listen on 127.0.0.1:$port"
}

cpu_ticks() {
    local u s
    read -r u s < <(cpu_split "$1")
    echo $((u + s))
}

# to_us 1.23ms -> 1230.0 (wrk's units; "nan" when unparsable).
to_us() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); m = 1 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); m = 1000 }
        else if (v ~ /m$/) { sub(/m$/, "", v); m = 60000000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); m = 1000000 }
        else { print "nan"; exit }
        printf "%.1f", v * m }'
}

# rotate ITEMS...: ORDER = ITEMS rotated by $ROT (interleaves targets
# differently each round).
rotate() {
    local n=$# k
    ORDER=()
    local -a a=("$@")
    for ((k = 0; k < n; k++)); do
        ORDER+=("${a[$(((k + ROT) % n))]}")
    done
}

per_req() { awk -v d="$1" -v hz="$CLK_TCK" -v n="$2" 'BEGIN { printf "%.3f", d / hz * 1e6 / n }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
fmt_ms() { awk -v v="$1" 'BEGIN { if (v == "nan") print "-"; else printf "%.3f", v / 1000 }'; }
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "nan") print "-"; else printf f, v }'; }

# print_table HEADER_ARRAY_NAME ROWS_ARRAY_NAME [LEFT]: plain text, aligned;
# the first LEFT columns (default 1) left-aligned, the rest right-aligned.
print_table() {
    local -n hdr=$1 rows=$2
    local left=${3:-1}
    {
        local IFS='|'
        echo "${hdr[*]}"
        printf '%s\n' "${rows[@]}"
    } | awk -F'|' -v left="$left" '{ for (i = 1; i <= NF; i++) { cell[NR, i] = $i; l = length($i); if (l > w[i]) w[i] = l } if (NF > nf) nf = NF }
        END { for (r = 1; r <= NR; r++) { line = ""
                  for (i = 1; i <= nf; i++) line = line sprintf((i == 1 ? "" : "  ") (i <= left ? "%-" : "%") w[i] "s", cell[r, i])
                  print line
                  if (r == 1) { line = ""; for (i = 1; i <= nf; i++) { d = sprintf("%" w[i] "s", ""); gsub(/ /, "-", d); line = line (i == 1 ? "" : "  ") d } print line } } }'
}

#!/usr/bin/env bash
# Builds the libFuzzer targets on the stable toolchain (coverage instrumentation through
# rustc's sancov pass, no sanitizer, the same flags `cargo fuzz --sanitizer none` passes)
# and runs each one from its seed corpus.
#
#   bash tests/fuzz/run.sh                   # every target, 30 s each (the CI smoke run)
#   bash tests/fuzz/run.sh --time 3600 vrrp  # one target for an hour
#   FUZZ_JOBS=2 bash tests/fuzz/run.sh --time 14400   # the long run, two processes each
#
# A crash, a panic, an assertion or a hang (>10 s on one input) fails the run; the input is
# left in tests/fuzz/target/artifacts/<target>/ and becomes a regression unit test next to
# the decoder. The corpus grows in tests/fuzz/target/corpus/<target>/ and is kept between
# runs on the same machine.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
secs=30
targets=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --time) secs="$2"; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) targets+=("$1"); shift ;;
    esac
done
[[ ${#targets[@]} -gt 0 ]] || targets=(vrrp http1 proxy_protocol config admin_body cache_headers cookies)

triple="$(rustc -vV | sed -n 's/^host: //p')"
# --target keeps build scripts and proc macros uninstrumented, as cargo-fuzz does.
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
    cargo build --release --locked --manifest-path "$here/Cargo.toml" --target "$triple" \
    --target-dir "$here/target" --bins
bin="$here/target/$triple/release"

summary=()
for t in "${targets[@]}"; do
    corpus="$here/target/corpus/$t"
    artifacts="$here/target/artifacts/$t/"
    mkdir -p "$corpus" "$artifacts"
    seeds=("$here/seeds/$t")
    if [[ $t == config ]]; then
        # The shipped configs are the best seeds a TOML fuzzer can have.
        mkdir -p "$here/target/seeds-config"
        for f in "$root"/etc/tandem/*.toml "$root"/packaging/*.toml "$root"/packaging/examples/*.toml; do
            cp "$f" "$here/target/seeds-config/$(basename "$(dirname "$f")")-$(basename "$f")"
        done
        seeds=("$here/target/seeds-config")
    fi
    log="$here/target/$t.log"
    echo "fuzz $t for ${secs}s"
    if ! "$bin/$t" "$corpus" "${seeds[@]}" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -max_len=8192 -artifact_prefix="$artifacts" -print_final_stats=1 \
        ${FUZZ_JOBS:+-jobs=$FUZZ_JOBS -workers=$FUZZ_JOBS} >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "FUZZ FAILURE in $t: input saved under $artifacts" >&2
        exit 1
    fi
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)"
    summary+=("$t: ${execs:-?} executions in ${secs}s, $cov, corpus $(ls "$corpus" | wc -l) inputs, no crash")
done
printf '%s\n' "${summary[@]}"

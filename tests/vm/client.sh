#!/usr/bin/env bash
# The lab's client: opens a new TCP connection (one HTTP request) about
# every 15 ms and logs "START END CODE" per attempt (CODE 000: the
# connection failed or timed out). Bounded in time and in count; stops on
# SIGTERM. Usage: client.sh URL LOGFILE MAX_SECONDS
set -euo pipefail
url=$1 out=$2 max=$3
interval_us=15000
limit=$((max * 100))   # never more than 100 attempts a second on average
: >"$out"
end=$((SECONDS + max))
n=0
trap 'exit 0' TERM INT
while [ "$SECONDS" -lt "$end" ] && [ "$n" -lt "$limit" ]; do
    t=$EPOCHREALTIME
    code=$(curl -s -o /dev/null -w '%{http_code}' --connect-timeout 0.15 -m 0.5 "$url" 2>/dev/null) || true
    [ -n "$code" ] || code=000
    printf '%s %s %s\n' "$t" "$EPOCHREALTIME" "$code" >>"$out"
    n=$((n + 1))
    # Pace: the next attempt starts 15 ms after this one started.
    now=$EPOCHREALTIME
    left=$((${t/./} + interval_us - ${now/./}))
    [ "$left" -le 0 ] || sleep "$(printf '0.%06d' "$left")"
done

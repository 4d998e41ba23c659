#!/usr/bin/env bash
# The lab's client: opens a new TCP connection (one HTTP request) every
# INTERVAL_MS (default 15) and logs "START END CODE CONNECTED" per attempt (CODE 000:
# failed or timed out; CONNECTED 1 if the TCP connection was established,
# so a failure with CONNECTED 1 is a request lost in flight). Bounded in time and in count; stops on
# SIGTERM. Usage: client.sh URL LOGFILE MAX_SECONDS [INTERVAL_MS]
set -euo pipefail
url=$1 out=$2 max=$3
interval_us=$((${4:-15} * 1000))
limit=$((max * 100))   # never more than 100 attempts a second on average
: >"$out"
end=$((SECONDS + max))
n=0
trap 'exit 0' TERM INT
while [ "$SECONDS" -lt "$end" ] && [ "$n" -lt "$limit" ]; do
    t=$EPOCHREALTIME
    res=$(curl -s -o /dev/null -w '%{http_code} %{time_connect}' --connect-timeout 0.15 -m 0.5 "$url" 2>/dev/null) || true
    code=000 tc=0
    read -r code tc <<<"$res" || true
    case $code in '' | *[!0-9]*) code=000 ;; esac
    connected=0
    case ${tc:-0} in *[1-9]*) connected=1 ;; esac
    printf '%s %s %s %s\n' "$t" "$EPOCHREALTIME" "$code" "$connected" >>"$out"
    n=$((n + 1))
    # Pace: the next attempt starts INTERVAL_MS after this one started.
    now=$EPOCHREALTIME
    left=$((${t/./} + interval_us - ${now/./}))
    [ "$left" -le 0 ] || sleep "$(printf '0.%06d' "$left")"
done

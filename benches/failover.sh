#!/usr/bin/env bash
# Failover gaps, tandem vs keepalived (Debian package), same lab, same run.
# Usage: bash benches/failover.sh [--runs N]   (root, or unprivileged userns)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v keepalived >/dev/null && [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq keepalived >/dev/null
fi
exec cargo bench --bench failover -- "$@"

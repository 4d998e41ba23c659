#!/usr/bin/env bash
# The two-node demo lab on this one machine: builds tandem (release), then
# runs tests/demo.rs, which builds network namespaces, starts two tandem
# nodes, kills the master and shows the failover. Works as root, or as an
# ordinary user through an unprivileged user namespace (unshare -Urnm).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in ip unshare; do
    command -v "$tool" >/dev/null || { echo "demo needs '$tool' (apt install iproute2 util-linux)" >&2; exit 1; }
done
exec cargo test --release --test demo -- "$@"

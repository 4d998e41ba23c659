#!/usr/bin/env bash
# Every test: the Rust suites (unit, loopback L4, config check, HA lab),
# then the package tests (build the .deb, lintian, systemd-analyze,
# install/upgrade/purge, the Vagrant scenario from the package's files).
# Run as root, as CI does; `cargo test --release` alone runs the Rust
# suites as an ordinary user too (lab tests re-run in `unshare -Urnm`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release
# The HTTP/1.1 keep-alive fast path allocates nothing per request in the
# steady state (counting allocator; prints the figure).
cargo bench --bench allocs -- --max 0.05
bash tests/package.sh

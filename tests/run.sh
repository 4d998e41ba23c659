#!/usr/bin/env bash
# Every test: the Rust suites (unit, loopback L4, config check, HA lab),
# then the package tests (build the .deb, lintian, systemd-analyze,
# install/upgrade/purge, the Vagrant scenario from the package's files).
# Run as root, as CI does; `cargo test --release` alone runs the Rust
# suites as an ordinary user too (lab tests re-run in `unshare -Urnm`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release
bash tests/package.sh

#!/usr/bin/env bash
# Builds target/debian/tandem_<version>_amd64.deb from a clean clone:
# release binary, man page generated from the CLI, then cargo-deb.
# Usage: bash packaging/build-deb.sh [--deb-version VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo-deb >/dev/null; then
    echo "installing cargo-deb (once, ~2 minutes)..." >&2
    cargo install cargo-deb --locked
fi
cargo build --release --bin tandem
mkdir -p target/man
target/release/tandem manpage > target/man/tandem.8
gzip -9n -f target/man/tandem.8
cargo deb --no-build --strip "$@"
ls -1 target/debian/*.deb | tail -1

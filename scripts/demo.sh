#!/usr/bin/env bash
# The local end-to-end demo: real binaries, no cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/toolchain.sh
cargo build --workspace --bins
exec target/debug/stallwatch-demo "$@"

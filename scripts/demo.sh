#!/usr/bin/env bash
# Runs the exporter against a local demo Kafka (started from Maven Central jars) with
# ADR-shaped topics, a producer and two consumer groups. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --locked --workspace --bins
exec ./target/release/kse-demo "$@"

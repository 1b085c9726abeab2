#!/usr/bin/env bash
# The whole test suite: set-up, formatting, lints, unit and integration tests against real
# Kafka, promtool. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test (unit + integration against real Kafka)"
# Integration tests start their own Kafka clusters; two test threads keep a 2-core machine
# responsive while still overlapping cluster start-ups.
# --no-fail-fast: one failing binary must not hide the results of the others.
cargo test --workspace --locked --no-fail-fast -- --test-threads="${TEST_THREADS:-2}"
echo "== all tests passed"

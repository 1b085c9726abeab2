#!/usr/bin/env bash
# Runs the exporter against a local demo Kafka (started from Maven Central jars) with
# ADR-shaped topics, a producer and two consumer groups, and Prometheus 3 with the alert pack
# (scripts/demo-prometheus.sh) on http://127.0.0.1:9090/alerts: within a few minutes the
# lagging group and the non-compliant topic fire. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --locked --workspace --bins

listen="${KSE_DEMO_LISTEN:-127.0.0.1:10077}"
dir=$(mktemp -d)
prometheus_pid=$(./scripts/demo-prometheus.sh "$listen" "$dir")
trap 'kill "$prometheus_pid" 2>/dev/null; wait "$prometheus_pid" 2>/dev/null; rm -rf "$dir"' EXIT
echo "demo: Prometheus 3 with the alert pack on http://${KSE_DEMO_PROMETHEUS:-127.0.0.1:9090}/alerts (log: $dir/prometheus.log)"
./target/release/kse-demo --listen "$listen" "$@"

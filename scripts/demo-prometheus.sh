#!/usr/bin/env bash
# Starts Prometheus 3 (from KSE_TOOLS_DIR) scraping the demo's exporter with the alert pack
# loaded, so that the lagging group and the non-compliant topics show up as alerts.
#
#   scripts/demo-prometheus.sh EXPORTER_ADDR DIR    # prints Prometheus's PID, serves on
#                                                   # $KSE_DEMO_PROMETHEUS (127.0.0.1:9090)
#
# The demo runs minutes, not hours, so it loads a copy of alerts/*.rules.yml in DIR with every
# `for` at 30s and every freshness threshold at 60 s: the same expressions, only faster to fire.
# The shipped pack is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/versions.sh
. scripts/versions.sh

exporter="$1" dir="$2"
listen="${KSE_DEMO_PROMETHEUS:-127.0.0.1:9090}"
prometheus="$KSE_TOOLS_DIR/prometheus-3/prometheus"
[ -x "$prometheus" ] || { echo "demo: $prometheus is missing; run ./scripts/setup.sh" >&2; exit 1; }

mkdir -p "$dir/rules"
for f in alerts/*.rules.yml; do
  sed -E -e 's/^( *for: ).*/\130s/' \
    -e '/cluster_group:kafka_consumergroup_lag_seconds:max/s/\+ [0-9]+\)/+ 60)/' \
    "$f" >"$dir/rules/$(basename "$f")"
done
cat >"$dir/prometheus.yml" <<YAML
global: {scrape_interval: 5s, evaluation_interval: 5s}
rule_files: ['$dir/rules/*.rules.yml']
scrape_configs:
  - job_name: kafka-slo-exporter
    static_configs: [{targets: ['$exporter']}]
YAML
"$prometheus" --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/tsdb" \
  --web.listen-address="$listen" >"$dir/prometheus.log" 2>&1 &
echo $!

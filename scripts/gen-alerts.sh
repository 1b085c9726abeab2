#!/usr/bin/env bash
# Regenerates the alert rule pack from alerts/config.yml and alerts/src/*.yml:
# alerts/*.rules.yml and deploy/kubernetes/prometheusrule.yaml. Then checks and unit-tests it
# with promtool. The generator lives in tests/alerts_support (run through cargo test), so the
# same code generates and verifies; tests/alerts.rs fails while the committed files are stale.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

UPDATE_ALERTS=1 cargo test --quiet --test alerts generated_files_are_current
cargo test --quiet --test alerts
echo "gen-alerts: alerts/*.rules.yml and deploy/kubernetes/prometheusrule.yaml are up to date"
# The Helm chart ships its own copy of the PrometheusRule.
./scripts/sync-deploy.sh

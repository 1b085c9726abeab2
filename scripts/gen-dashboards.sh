#!/usr/bin/env bash
# Regenerates the Grafana dashboards (dashboards/*.json) from their specs in dashboards/src/,
# then lints them and checks every query (tests/dashboards.rs). The generator lives in
# tests/dashboards_support, so the same code generates and verifies; tests/dashboards.rs fails
# while the committed files are stale.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

UPDATE_DASHBOARDS=1 cargo test --quiet --test dashboards generated_dashboards_are_current
cargo test --quiet --test dashboards
echo "gen-dashboards: dashboards/*.json are up to date"

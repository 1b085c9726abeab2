#!/usr/bin/env bash
# Refreshes the copies the Kubernetes manifests need inside their own directories (kustomize
# and Helm read no file outside them): the default policy, the alert pack's PrometheusRule and
# dashboards/*.json, plus the kustomization listing the dashboards. The copying lives in
# tests/deploy_support (run by tests/deploy_kustomize.rs), so the same code writes and verifies; that test fails while a copy is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

UPDATE_DEPLOY=1 cargo test --quiet --test deploy_kustomize synced_files_are_current
echo "sync-deploy: deploy/kubernetes and deploy/helm copies are up to date"

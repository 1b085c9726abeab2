#!/usr/bin/env bash
# The whole test suite: set-up, formatting, lints, unit and integration tests against real
# Kafka (the default version, then the compatibility set), Prometheus 2.x and 3.x, Alertmanager.
# `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
# shellcheck source=scripts/versions.sh
. scripts/versions.sh
export KAFKA_HARNESS_KAFKA_VERSION="$KAFKA_VERSION" KSE_TOOLS_DIR

first_line() { "$@" 2>&1 | head -n1; }
echo "== versions"
echo "   Kafka $KAFKA_VERSION (default); compatibility set: $KAFKA_COMPAT_VERSIONS"
echo "   Apicurio Registry $APICURIO_VERSION"
echo "   Prometheus 2.x: $(first_line /usr/bin/prometheus --version)"
echo "   Prometheus 3.x: $(first_line "$KSE_TOOLS_DIR/prometheus-3/prometheus" --version)"
echo "   Alertmanager:   $(first_line "$KSE_TOOLS_DIR/alertmanager/alertmanager" --version)"
echo "   $(first_line rustc --version); $(first_line java -version)"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

failed=()
echo "== cargo test (unit + integration, Kafka $KAFKA_VERSION)"
# Integration tests start their own Kafka clusters; two test threads keep a 2-core machine
# responsive while still overlapping cluster start-ups.
# --no-fail-fast: one failing binary must not hide the results of the others.
cargo test --workspace --locked --no-fail-fast -- --test-threads="${TEST_THREADS:-2}" ||
  failed+=("the suite on Kafka $KAFKA_VERSION")

# The Kafka-backed tests of what differs between broker versions, against each release of the
# compatibility set: offset and time lag, classic and KIP-848 groups, the Kafka reads of the
# source through both readers, replication faults on 3 nodes, ADR compliance and the delivery
# probe.
COMPAT_TESTS=(--test lag_kafka --test kafka_source --test kafka_source_native --test replication_kafka --test compliance_kafka --test probe_kafka)
for v in $KAFKA_COMPAT_VERSIONS; do
  echo "== cargo test (compatibility set, Kafka $v)"
  KAFKA_HARNESS_KAFKA_VERSION="$v" cargo test --locked --no-fail-fast "${COMPAT_TESTS[@]}" \
    -- --test-threads="${TEST_THREADS:-2}" || failed+=("the compatibility set on Kafka $v")
done

if ((${#failed[@]})); then
  printf '== FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "== all tests passed"

# Versions of the third-party software the tests, the demo and the benchmarks run, in one place.
# Sourced by scripts/setup.sh, scripts/test.sh and scripts/demo.sh; each value can be overridden
# from the environment. The harness's DEFAULT_KAFKA_VERSION (tests/harness/src/dist.rs) must equal
# KAFKA_VERSION's default; a harness unit test checks that.

# Apache Kafka (org.apache.kafka:kafka_2.13 from Maven Central): the default for every test, and
# the compatibility set the Kafka-backed compatibility tests also run against (the newest 3.9.x,
# 4.1.x and 4.2.x releases).
KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
KAFKA_COMPAT_VERSIONS="${KAFKA_COMPAT_VERSIONS:-3.9.2 4.1.2 4.2.2}"

# Apicurio Registry (io.apicurio:apicurio-registry-app:VERSION:tar.gz:all from Maven Central).
APICURIO_VERSION="${APICURIO_VERSION:-3.3.3}"

# Prometheus 3.x and Alertmanager, built from the Go module proxy. Prometheus's Go module tags 3.X.Y
# as v0.3XX.Y. Debian's Prometheus 2.x (package prometheus) is installed beside them.
PROMETHEUS3_VERSION="${PROMETHEUS3_VERSION:-3.16.0}"
ALERTMANAGER_VERSION="${ALERTMANAGER_VERSION:-0.35.0}"

# Deployment tooling, from the Go module proxy.
HELM_VERSION="${HELM_VERSION:-3.21.4}"
KUSTOMIZE_VERSION="${KUSTOMIZE_VERSION:-5.7.1}"

# Where the Go-built tools are installed: <dir>/prometheus-3/{prometheus,promtool},
# <dir>/alertmanager/{alertmanager,amtool}. The tests look in the same place.
KSE_TOOLS_DIR="${KSE_TOOLS_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/tools}"

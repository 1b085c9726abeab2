#!/usr/bin/env bash
# Installs everything the build, the tests and the demo need. Idempotent: a second run only
# checks. Works as root (CI) or through sudo; skips what is already present.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  cmake pkg-config libssl-dev libcurl4-openssl-dev zlib1g-dev   # bundled librdkafka build
  openjdk-17-jre-headless maven                                  # Kafka brokers from Maven Central
  prometheus prometheus-alertmanager                             # promtool, real Prometheus/Alertmanager
  chromium                                                       # headless browser test of the compliance page
  curl ca-certificates procps iproute2
  binutils                                                       # readelf: the container test checks linked libraries
  openssl                                                        # test certificate authorities (harness TestPki)
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Debian prometheus packages start their daemons where an init system exists; the tests
# start their own instances on free ports, so a system instance is harmless but not needed.

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: installing Rust (rustup, stable)"
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain stable
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi

# The reference OpenMetrics parser, used by the tests to validate the OpenMetrics output.
python3 -c "import prometheus_client.openmetrics.parser" 2>/dev/null ||
  python3 -m pip install -q --disable-pip-version-check "prometheus-client==0.26.0" ||
  python3 -m pip install -q --disable-pip-version-check --break-system-packages "prometheus-client==0.26.0"

# Helm and kustomize render the deployment manifests in tests/deploy.rs; pinned, built from the
# Go module proxy into GOBIN (default /usr/local/bin as root, ~/go/bin otherwise).
[ -x /usr/local/go/bin/go ] && PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null 2>&1 || { echo "setup: Go is needed to install helm and kustomize" >&2; exit 1; }
if [ "$(id -u)" -eq 0 ]; then GO_TOOLS_BIN="${GOBIN:-/usr/local/bin}"; else GO_TOOLS_BIN="${GOBIN:-$HOME/go/bin}"; fi
for tool in helm:helm.sh/helm/v3/cmd/helm@v3.22.0 kustomize:sigs.k8s.io/kustomize/kustomize/v5@v5.7.1; do
  name="${tool%%:*}" pkg="${tool#*:}"
  module_version="${pkg##*@}"
  if ! go version -m "$GO_TOOLS_BIN/$name" 2>/dev/null | grep -q "mod.*[[:space:]]$module_version[[:space:]]"; then
    echo "setup: installing $name $module_version (go install)"
    GOBIN="$GO_TOOLS_BIN" go install "$pkg"
  fi
done

# kse-k8s-check (tests/k8s-check) decodes the rendered manifests strictly into the Kubernetes and
# Prometheus Operator Go types and applies the API server's syntax rules; `go build` is
# incremental, so this costs nothing when nothing changed.
(cd tests/k8s-check && go build -o ../../target/kse-k8s-check .)

./scripts/fetch-kafka.sh "${KAFKA_VERSION:-4.1.1}"
./scripts/fetch-registry.sh "${APICURIO_VERSION:-3.3.3}"

#!/usr/bin/env bash
# Installs everything the build, the tests and the demo need. Idempotent: a second run only
# checks. Works as root (CI) or through sudo; skips what is already present.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/versions.sh
. scripts/versions.sh

APT_PACKAGES=(
  cmake pkg-config libssl-dev libcurl4-openssl-dev zlib1g-dev   # bundled librdkafka build
  libsasl2-dev libsasl2-modules-gssapi-mit krb5-user             # Kerberos (GSSAPI): Cyrus SASL, its MIT plugin, kinit
  krb5-kdc krb5-admin-server                                     # a real KDC for the Kerberos tests
  openjdk-17-jre-headless maven                                  # Kafka brokers from Maven Central
  prometheus                                                     # Prometheus and promtool 2.x (Prometheus 3 and Alertmanager are built below)
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

# The Debian prometheus package starts its daemon where an init system exists; the tests start
# their own instances on free ports, so a system instance is harmless but not needed.

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

# Pinned Go tools, built from the Go module proxy. Each failure ends set-up with one line naming
# the artefact; the full output stays in target/setup-logs/.
[ -x /usr/local/go/bin/go ] && PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null 2>&1 || { echo "setup: Go is needed to build helm, kustomize, Prometheus 3 and Alertmanager" >&2; exit 1; }
LOGS="$PWD/target/setup-logs"
mkdir -p "$LOGS" "$KSE_TOOLS_DIR"

# fail ARTEFACT LOG: one line naming what could not be fetched or built, then exit.
fail() {
  local reason
  reason=$(grep -m1 -iE 'error|not found|unknown revision|invalid|refused|forbidden|no matching' "$2" || tail -n1 "$2")
  echo "setup: cannot fetch or build $1: ${reason:-see $2} (log: $2)" >&2
  exit 1
}

# Helm and kustomize render the deployment manifests in tests/deploy_*.rs; on PATH (GOBIN, default
# /usr/local/bin as root, ~/go/bin otherwise).
if [ "$(id -u)" -eq 0 ]; then GO_TOOLS_BIN="${GOBIN:-/usr/local/bin}"; else GO_TOOLS_BIN="${GOBIN:-$HOME/go/bin}"; fi
for tool in "helm:helm.sh/helm/v3/cmd/helm@v$HELM_VERSION" "kustomize:sigs.k8s.io/kustomize/kustomize/v5@v$KUSTOMIZE_VERSION"; do
  name="${tool%%:*}" pkg="${tool#*:}"
  module_version="${pkg##*@}"
  if ! go version -m "$GO_TOOLS_BIN/$name" 2>/dev/null | grep -q "mod.*[[:space:]]$module_version[[:space:]]"; then
    echo "setup: installing $name $module_version (go install)"
    GOBIN="$GO_TOOLS_BIN" go install "$pkg" >"$LOGS/$name.log" 2>&1 || fail "$pkg (Go module proxy)" "$LOGS/$name.log"
  fi
done

# has_version BINARY VERSION: the binary exists and reports VERSION (stamped at build time).
has_version() { [ -x "$1" ] && "$1" --version 2>&1 | grep -q "version $2[[:space:]]"; }

# Prometheus 3.x (prometheus, promtool): Go module github.com/prometheus/prometheus, whose tag for
# release 3.X.Y is v0.3XX.Y. Built without the web UI's assets (the API is all the tests use).
prom3_dir="$KSE_TOOLS_DIR/prometheus-3"
if ! has_version "$prom3_dir/prometheus" "$PROMETHEUS3_VERSION" || ! has_version "$prom3_dir/promtool" "$PROMETHEUS3_VERSION"; then
  IFS=. read -r p_major p_minor p_patch <<<"$PROMETHEUS3_VERSION"
  [[ "$p_major" == 3 && "$p_minor" =~ ^[0-9]+$ && "$p_patch" =~ ^[0-9]+$ ]] ||
    { echo "setup: PROMETHEUS3_VERSION '$PROMETHEUS3_VERSION' is not a 3.X.Y release" >&2; exit 2; }
  prom_module="v0.$((300 + p_minor)).$p_patch"
  echo "setup: building Prometheus $PROMETHEUS3_VERSION (github.com/prometheus/prometheus@$prom_module, go install)"
  GOBIN="$prom3_dir" go install -ldflags "-X github.com/prometheus/common/version.Version=$PROMETHEUS3_VERSION" \
    "github.com/prometheus/prometheus/cmd/prometheus@$prom_module" \
    "github.com/prometheus/prometheus/cmd/promtool@$prom_module" >"$LOGS/prometheus-3.log" 2>&1 ||
    fail "Prometheus $PROMETHEUS3_VERSION (github.com/prometheus/prometheus@$prom_module)" "$LOGS/prometheus-3.log"
fi

# Alertmanager (alertmanager, amtool). Its module embeds the web UI's build output, which the
# module proxy does not serve, so `go install` refuses it: build the proxy's module source in a
# scratch copy with an empty UI (the tests use the API only).
am_dir="$KSE_TOOLS_DIR/alertmanager"
if ! has_version "$am_dir/alertmanager" "$ALERTMANAGER_VERSION" || ! has_version "$am_dir/amtool" "$ALERTMANAGER_VERSION"; then
  echo "setup: building Alertmanager $ALERTMANAGER_VERSION (github.com/prometheus/alertmanager@v$ALERTMANAGER_VERSION)"
  am_log="$LOGS/alertmanager.log"
  go mod download -json "github.com/prometheus/alertmanager@v$ALERTMANAGER_VERSION" >"$am_log" 2>&1 || true
  am_src=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p' "$am_log")
  [ -n "$am_src" ] && [ -d "$am_src" ] || fail "Alertmanager $ALERTMANAGER_VERSION (github.com/prometheus/alertmanager@v$ALERTMANAGER_VERSION)" "$am_log"
  am_build=$(mktemp -d)
  cp -r "$am_src/." "$am_build/"
  chmod -R u+w "$am_build"
  for ui in elm mantine; do
    mkdir -p "$am_build/ui/app/dist/$ui"
    echo '<!doctype html><title>Alertmanager</title><p>Built without the web UI.' >"$am_build/ui/app/dist/$ui/index.html"
  done
  mkdir -p "$am_dir"
  (cd "$am_build" && go build -trimpath -ldflags "-X github.com/prometheus/common/version.Version=$ALERTMANAGER_VERSION" \
    -o "$am_dir/" ./cmd/alertmanager ./cmd/amtool) >>"$am_log" 2>&1 || { rm -rf "$am_build"; fail "Alertmanager $ALERTMANAGER_VERSION (build of the module source)" "$am_log"; }
  rm -rf "$am_build"
fi

# kse-k8s-check (tests/k8s-check) decodes the rendered manifests strictly into the Kubernetes and
# Prometheus Operator Go types and applies the API server's syntax rules; `go build` is
# incremental, so this costs nothing when nothing changed.
(cd tests/k8s-check && go build -o ../../target/kse-k8s-check .) >"$LOGS/k8s-check.log" 2>&1 ||
  fail "the Go modules of tests/k8s-check" "$LOGS/k8s-check.log"

./scripts/fetch-kafka.sh "$KAFKA_VERSION"
for v in $KAFKA_COMPAT_VERSIONS; do ./scripts/fetch-kafka.sh "$v"; done
./scripts/fetch-registry.sh "$APICURIO_VERSION"

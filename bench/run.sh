#!/usr/bin/env bash
# Benchmark kafka-slo-exporter against klag-exporter, kafka_exporter and kminion on one Kafka
# cluster. Builds the exporter and the bench tools (release), installs the peers at pinned
# versions into target/bench-peers/ (once), installs matplotlib (pinned) if missing, then runs
# bench/bench.py. See bench/README.md.
#
#   bench/run.sh                  # default: 1,000 topics x 10 partitions, 1,000 groups + scaling curve
#   bench/run.sh --preset small   # quick: 100 topics x 10 partitions, 100 groups
#   bench/run.sh --no-scaling     # peers only; --no-peers: scaling curve only
#   bench/run.sh --only kafka-slo-exporter
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
PEERS="$ROOT/target/bench-peers"
mkdir -p "$PEERS/bin"

KLAG_VERSION=0.1.29
KAFKA_EXPORTER_TAG=v1.9.0
KMINION_TAG=v2.3.5
MATPLOTLIB_VERSION=3.10.8

log() { printf '[run.sh] %s\n' "$*" >&2; }
errors="{}"
add_error() { # name, reason
    errors=$(python3 -c 'import json,sys; e=json.loads(sys.argv[1]); e[sys.argv[2]]=sys.argv[3]; print(json.dumps(e))' "$errors" "$1" "$2")
}

log "building kafka-slo-exporter and the bench tools (release)"
cargo build --release --workspace --bins

if ! python3 -c 'import matplotlib' 2>/dev/null; then
    log "installing matplotlib $MATPLOTLIB_VERSION"
    python3 -m pip install --quiet "matplotlib==$MATPLOTLIB_VERSION"
fi

# klag-exporter: from crates.io. Its rdkafka build links libsasl2.
if [ ! -x "$PEERS/klag/bin/klag-exporter" ]; then
    if ! dpkg -s libsasl2-dev >/dev/null 2>&1; then
        log "installing libsasl2-dev (needed to build klag-exporter)"
        apt-get install -y libsasl2-dev >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y libsasl2-dev >/dev/null; } || true
    fi
    log "installing klag-exporter $KLAG_VERSION (cargo install, several minutes)"
    if ! cargo install klag-exporter --version "$KLAG_VERSION" --locked --root "$PEERS/klag" >"$PEERS/klag-install.log" 2>&1; then
        add_error klag-exporter "cargo install klag-exporter --version $KLAG_VERSION failed: $(grep -m1 '^error' "$PEERS/klag-install.log" || tail -1 "$PEERS/klag-install.log")"
    fi
fi

# kafka_exporter and kminion: `go install MODULE@VERSION` from the Go module proxy. Where the proxy
# does not serve them (some proxies answer 403 "This module version is not available"), they are
# built with `go build` from source checkouts of the tags below that the user provides:
# KSE_PEER_SOURCES=DIR with DIR/kafka_exporter/ and DIR/kminion/ (see bench/README.md); their
# dependencies still come from the Go module proxy. MODULE is the path the tag's go.mod declares
# (kminion's is still github.com/cloudhut/kminion/v2, although the repository is
# redpanda-data/kminion: `go install` of any other path fails the go.mod check), and a checkout
# whose go.mod declares another module is refused. GOWORK=off: a go.work above DIR must not
# take part in the build.
build_go_peer() { # name, module, tag, ldflags (stamp the version into a source build)
    local name=$1 module=$2 tag=$3 ldflags=$4
    [ -x "$PEERS/bin/$name" ] && return 0
    if GOBIN="$PEERS/bin" go install "$module@$tag" >"$PEERS/$name-install.log" 2>&1; then
        return 0
    fi
    local src="${KSE_PEER_SOURCES:+$KSE_PEER_SOURCES/$name}"
    local how="KSE_PEER_SOURCES is not set"
    if [ -n "$src" ] && [ -f "$src/go.mod" ]; then
        if ! grep -qx "module $module" "$src/go.mod"; then
            how="$src/go.mod declares $(grep -m1 '^module ' "$src/go.mod" || echo 'no module'), not module $module"
        elif (cd "$src" && GOWORK=off go build -ldflags "$ldflags" -o "$PEERS/bin/$name" .) >"$PEERS/$name-build.log" 2>&1; then
            return 0
        else
            how="go build in $src failed ($(grep -m1 -i 'error\|forbidden\|not available\|cannot' "$PEERS/$name-build.log" || tail -1 "$PEERS/$name-build.log"); see $PEERS/$name-build.log)"
        fi
    elif [ -n "$src" ]; then
        how="$src holds no checkout (go.mod)"
    fi
    add_error "$name" "go install $module@$tag failed ($(grep -m1 -i 'error\|forbidden\|not available' "$PEERS/$name-install.log" || true)) and $how"
}
build_go_peer kafka_exporter github.com/danielqsj/kafka_exporter "$KAFKA_EXPORTER_TAG" "-X github.com/prometheus/common/version.Version=${KAFKA_EXPORTER_TAG#v}"
build_go_peer kminion github.com/cloudhut/kminion/v2 "$KMINION_TAG" "-X main.version=$KMINION_TAG"

log "peers: $(ls "$PEERS/bin" "$PEERS/klag/bin" 2>/dev/null | tr '\n' ' ')"
exec python3 bench/bench.py --install-errors "$errors" "$@"

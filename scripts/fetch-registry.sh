#!/usr/bin/env bash
# Prefetches the Schema Registry the integration tests run (Apicurio Registry, the Quarkus
# application tarball io.apicurio:apicurio-registry-app:VERSION:tar.gz:all) from Maven Central
# into the test harness's cache, and checks that a Java it can run on is installed.
#
# Usage: scripts/fetch-registry.sh [VERSION]   (default: APICURIO_VERSION of scripts/versions.sh)
#
# Same cache layout, lock file and completion marker as the harness
# (tests/harness/src/registry.rs), so the two can run concurrently and a finished download is
# never repeated. Honours KAFKA_HARNESS_CACHE (default <repo>/target/kafka-dist) and
# KAFKA_HARNESS_MVN (default mvn).
#
# Why 3.3.3: 3.1.7 is not served by Maven Central as a tar.gz:all artifact; 3.3.3 is the newest
# that is. Apicurio 3.3 needs Java 21+ (the tests look in REGISTRY_HARNESS_JAVA, JAVA_HOME and
# /usr/lib/jvm).
set -euo pipefail

# shellcheck source=scripts/versions.sh
. "$(dirname "${BASH_SOURCE[0]}")/versions.sh"
version="${1:-$APICURIO_VERSION}"
if [[ ! "$version" =~ ^[0-9][0-9A-Za-z.-]*$ ]]; then
  echo "fetch-registry: invalid Apicurio version '$version'" >&2
  exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${KAFKA_HARNESS_CACHE:-$repo/target/kafka-dist}"
mvn="${KAFKA_HARNESS_MVN:-mvn}"
home="$cache/apicurio-registry-$version"
marker="$home/.complete"

java_ok=""
for release in ${JAVA_HOME:+"$JAVA_HOME/release"} /usr/lib/jvm/*/release; do
  [[ -f "$release" ]] || continue
  major="$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$release")"
  if [[ -n "$major" && "$major" -ge 21 ]]; then java_ok="$(dirname "$release")"; fi
done
if [[ -z "$java_ok" && -z "${REGISTRY_HARNESS_JAVA:-}" ]]; then
  echo "fetch-registry: warning: no Java 21+ found (JAVA_HOME, /usr/lib/jvm); the Schema Registry tests need one" >&2
fi

if [[ -f "$marker" ]]; then
  echo "fetch-registry: Apicurio Registry $version already in $home"
  exit 0
fi

mkdir -p "$cache"
# The harness takes the same flock(2) lock; whoever gets it first downloads.
exec 9>>"$cache/apicurio-registry-$version.lock"
flock 9

if [[ -f "$marker" ]]; then
  echo "fetch-registry: Apicurio Registry $version already in $home"
  exit 0
fi

echo "fetch-registry: downloading Apicurio Registry $version into $home"
rm -rf "$home"
mkdir -p "$home/download" "$home/app"
log="$cache/apicurio-registry-$version.log"
if ! (cd "$home/download" && "$mvn" -q -B -Dstyle.color=never dependency:copy \
  "-Dartifact=io.apicurio:apicurio-registry-app:$version:tar.gz:all" "-DoutputDirectory=$home/download") >"$log" 2>&1; then
  reason=$(grep -m1 -o 'Could not [^>]*' "$log" || grep -m1 'ERROR' "$log" || tail -n1 "$log")
  echo "fetch-registry: cannot fetch io.apicurio:apicurio-registry-app:$version:tar.gz:all from Maven Central: ${reason% } (log: $log)" >&2
  exit 1
fi
tar -xzf "$home/download/apicurio-registry-app-$version-all.tar.gz" -C "$home/app"
if [[ ! -f "$home/app/quarkus-run.jar" ]]; then
  echo "fetch-registry: the tarball holds no quarkus-run.jar" >&2
  exit 1
fi
rm -rf "$home/download"
echo "$version" >"$marker"
echo "fetch-registry: Apicurio Registry $version ready"

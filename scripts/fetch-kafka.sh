#!/usr/bin/env bash
# Prefetches the Kafka jars the test harness runs (kafka_2.13 and its runtime
# dependencies plus a log4j2 backend) from Maven Central into the harness's
# cache, so CI can fill the cache up front instead of inside a test.
#
# Usage: scripts/fetch-kafka.sh [VERSION]   (default: KAFKA_VERSION of scripts/versions.sh)
#
# Uses the same pom (tests/harness/kafka/pom.xml), cache layout, lock file and
# completion marker as the harness, so the two can run concurrently and a
# finished download is never repeated. Honours KAFKA_HARNESS_CACHE (default
# <repo>/target/kafka-dist) and KAFKA_HARNESS_MVN (default mvn).
set -euo pipefail

# shellcheck source=scripts/versions.sh
. "$(dirname "${BASH_SOURCE[0]}")/versions.sh"
version="${1:-$KAFKA_VERSION}"
if [[ ! "$version" =~ ^[0-9][0-9A-Za-z.-]*$ ]]; then
  echo "fetch-kafka: invalid Kafka version '$version'" >&2
  exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pom="$repo/tests/harness/kafka/pom.xml"
cache="${KAFKA_HARNESS_CACHE:-$repo/target/kafka-dist}"
mvn="${KAFKA_HARNESS_MVN:-mvn}"
home="$cache/kafka-$version"
marker="$home/.complete"

if [[ -f "$marker" ]]; then
  echo "fetch-kafka: Kafka $version already in $home"
  exit 0
fi

mkdir -p "$cache"
# The harness takes the same flock(2) lock; whoever gets it first downloads.
exec 9>>"$cache/kafka-$version.lock"
flock 9

if [[ -f "$marker" ]]; then
  echo "fetch-kafka: Kafka $version already in $home"
  exit 0
fi

echo "fetch-kafka: downloading Kafka $version jars into $home/lib"
rm -rf "$home/lib"
mkdir -p "$home"
cp "$pom" "$home/pom.xml"
log="$cache/kafka-$version.log"
if ! "$mvn" -q -B -Dstyle.color=never -f "$home/pom.xml" dependency:copy-dependencies \
  "-Dkafka.version=$version" "-DoutputDirectory=$home/lib" -DincludeScope=runtime >"$log" 2>&1; then
  reason=$(grep -m1 -o 'Could not [^>]*' "$log" || grep -m1 'ERROR' "$log" || tail -n1 "$log")
  echo "fetch-kafka: cannot fetch org.apache.kafka:kafka_2.13:$version from Maven Central: ${reason% } (log: $log)" >&2
  exit 1
fi

if [[ ! -f "$home/lib/kafka_2.13-$version.jar" ]]; then
  echo "fetch-kafka: Maven finished but kafka_2.13-$version.jar is missing" >&2
  exit 1
fi
echo "$version" >"$marker"
echo "fetch-kafka: Kafka $version ready ($(find "$home/lib" -name '*.jar' | wc -l) jars)"

#!/usr/bin/env bash
# Soak test of kafka-slo-exporter (not run in CI): a one-node Kafka with topic and group churn,
# continuous scrapes, and the exporter's RSS sampled over the run. Writes
# bench/results/<date>-soak.{csv,md,png} and checks that RSS stays within 10 % after warm-up.
#
#   bench/soak.sh                       # 30 minutes, release build
#   bench/soak.sh --duration 5m --warmup 60 --profile dev --tag quick   # -> ...-soak-quick.*
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=30m
WARMUP=300
PROFILE=release
SAMPLE=10s
TAG=
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --profile) PROFILE=$2; shift 2 ;;
        --sample-every) SAMPLE=$2; shift 2 ;;
        --tag) TAG=-$2; shift 2 ;;
        *) echo "usage: bench/soak.sh [--duration 30m] [--warmup SECONDS] [--profile release|dev] [--sample-every 10s] [--tag NAME]" >&2; exit 2 ;;
    esac
done

cargo build --profile "$PROFILE" --workspace --bins
dir=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
mkdir -p bench/results
prefix="bench/results/$(date -u +%Y-%m-%d)-soak$TAG"
summary=$(nice -n 10 "target/$dir/kse-soak" --exporter "target/$dir/kafka-slo-exporter" \
    --csv "$prefix.csv" --log "target/soak-exporter$TAG.log" --duration "$DURATION" --sample-every "$SAMPLE")
echo "$summary"
python3 bench/soak_report.py "$prefix.csv" --summary "$summary" --out "$prefix" --warmup "$WARMUP" \
    --notes "Run: \`bench/soak.sh --duration $DURATION --warmup $WARMUP --profile $PROFILE\` on $(nproc) CPUs, $(uname -r). Churn: a new 4-partition topic with a producer (20 records/s) and a consuming group every 15 s, the oldest of 8 deleted with its group; one steady 6-partition topic with a lagging group; the delivery probe; scrapes every 100 ms; exporter interval 5 s."

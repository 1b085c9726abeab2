#!/usr/bin/env bash
# Honest scrapes under hostile load: builds the exporter and kse-bench-hostile (release), then
# runs, for each N, 10 honest scrapers beside N stalled clients (unfinished request heads on
# plain HTTP, unfinished TLS handshakes with TLS), a flood of wrong basic auth passwords and
# oversized request heads. Writes bench/results/DATE-hostile.{jsonl,md}. See bench/README.md.
#
#   bench/hostile.sh                              # N = 0, 500, 2000, 10000; plain and TLS
#   bench/hostile.sh --clients 0,2000 --modes tls --duration 10
#   bench/hostile.sh --tag cap-8192 --clients 10000 --exporter-arg --web.max-pending-connections=8192
# (--tag NAME, first if given, names the result files DATE-hostile-NAME.*; the rest goes to
# kse-bench-hostile.)
set -euo pipefail

tag=""
if [ "${1:-}" = --tag ]; then
    tag="-$2"
    shift 2
fi

cd "$(dirname "$0")/.."
log() { printf '[hostile.sh] %s\n' "$*" >&2; }

log "building kafka-slo-exporter and kse-bench-hostile (release)"
cargo build --release --bin kafka-slo-exporter
cargo build --release -p kafka-harness --bin kse-bench-hostile

# 10,000 stalled clients need as many descriptors in this process and in the exporter, which
# inherits the limit (and raises its own soft limit to the hard one at start-up as well).
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 12000 ]; then
    log "warning: open files limit $(ulimit -n); the 10,000-client run needs about 12,000"
fi

out="bench/results/$(date -u +%F)-hostile$tag"
log "writing $out.jsonl and $out.md"
{
    echo "# Honest scrapes under hostile load"
    echo
    echo "\`bench/hostile.sh $*\` on $(nproc) CPU cores, $(date -u +%F); exporter with its default"
    echo "connection flags. See bench/README.md for what each run holds open."
    echo
} > "$out.md"
# Progress and the table (stderr) to the terminal and a log; the runs' JSON (stdout) to a file.
target/release/kse-bench-hostile --exporter target/release/kafka-slo-exporter "$@" \
    2>&1 > "$out.jsonl" | tee "$out.md.log" >&2
# The Markdown table is the last lines kse-bench-hostile printed on stderr.
sed -n '/^| mode /,$p' "$out.md.log" >> "$out.md"
rm -f "$out.md.log"
cat "$out.md"

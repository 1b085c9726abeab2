#!/usr/bin/env python3
"""What sharding saves: one unsharded exporter and each shard of `--total-shards M`, run one at
a time against the same real cluster and workload, with the measurements of bench.py (cycle,
CPU per cycle, peak RSS, series) and the Kafka requests per cycle (bench.request_counts: the
native reader's own counter, or librdkafka statistics).

    cargo build --release -p kafka-slo-exporter -p kafka-harness --bins
    bench/sharding.py [--topics 500] [--partitions 10] [--groups 500] [--shards 2] [--interval 10]

Writes bench/results/<date>-sharding.{json,md}.
"""

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402


def measure(workdir, bootstrap, interval, label, extra_args):
    cfg = dict(windows=2, load_seconds=0)
    exp = bench.Ours(workdir, bootstrap, interval, extra_args=extra_args)
    exp.name = f"kafka-slo-exporter {label}"
    exp.log_path = Path(workdir) / f"kse-{label.replace('/', '-')}.log"
    r = bench.run_exporter(exp, cfg, load=False)
    r["requests"] = bench.request_counts(workdir, bootstrap, interval, extra_args=extra_args)
    bench.log(f"{label}: {r['requests']['total_per_cycle']} requests per cycle")
    return r


def markdown(res):
    c = res["config"]
    lines = [
        f"# Sharding — {res['date']}",
        "",
        f"Workload: {c['topics']:,} topics × {c['partitions']} partitions ({c['topics'] * c['partitions']:,} "
        f"partitions), {c['groups']:,} consumer groups with committed offsets, one broker, interval "
        f"{c['interval']} s. Each configuration ran alone (bench/sharding.py); a shard's numbers are "
        "what one pod of a StatefulSet would use.",
        "",
        "Load average of the 2-core machine (shared with other work): "
        + ", ".join(f"{v:.1f} at the {k}" for k, v in res["load_avg"].items())
        + ". Cycles are wall-clock medians of three and suffer from that load; CPU seconds per cycle "
        "and request counts do not.",
        "",
        "| Exporter | Cycle | CPU per cycle | Peak RSS | Series | Kafka requests per cycle |",
        "|---|---|---|---|---|---|",
    ]
    for label, r in res["runs"].items():
        lines.append(
            f"| {label} | {r['cycle_s']} s | {r['cpu_s_per_cycle']} s | {r['peak_rss_kb'] / 1024:.0f} MiB | "
            f"{r['series']:,} | {r['requests']['total_per_cycle']:g} |")
    lines += ["", "Requests per cycle by type:", "",
              "| Request | " + " | ".join(res["runs"]) + " |",
              "|---|" + "---|" * len(res["runs"])]
    kinds = sorted({k for r in res["runs"].values() for k in r["requests"]["per_cycle"]})
    for k in kinds:
        lines.append(f"| {k} | " + " | ".join(
            f"{r['requests']['per_cycle'].get(k, 0):g}" for r in res["runs"].values()) + " |")
    runs = list(res["runs"].values())
    extra = sum(r["series"] for r in runs[1:]) - runs[0]["series"]
    lines += ["", f"The shards' series add up to {extra:,} more than the unsharded exporter's: per-process "
              "self-metrics, and series that depend on record reads, of which each shard has its own budget "
              "per cycle (`lag.max_record_reads`); an unsharded exporter that spent its first budget on time "
              "lag reads the remaining replay windows at the next `replay_window_refresh`."]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--report", metavar="JSON", help="only re-render the markdown of a stored result")
    ap.add_argument("--topics", type=int, default=500)
    ap.add_argument("--partitions", type=int, default=10)
    ap.add_argument("--groups", type=int, default=500)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--interval", type=int, default=10)
    ap.add_argument("--out", default=str(bench.BENCH / "results"))
    args = ap.parse_args()
    if args.report:
        path = Path(args.report)
        path.with_suffix(".md").write_text(markdown(json.loads(path.read_text())))
        return
    started = time.monotonic()
    res = {"date": datetime.date.today().isoformat(), "config": {k: v for k, v in vars(args).items() if k != "out"}, "runs": {},
           "load_avg": {"start": os.getloadavg()[0]}}
    with tempfile.TemporaryDirectory(prefix="kse-shard-bench-") as workdir:
        wl = bench.Workload(1, "2g")
        try:
            wl.grow(args.topics, args.partitions, args.groups, 20)
            res["runs"]["unsharded"] = measure(workdir, wl.bootstrap, args.interval, "unsharded", [])
            for i in range(args.shards):
                label = f"shard {i}/{args.shards}"
                res["runs"][label] = measure(workdir, wl.bootstrap, args.interval, label,
                                             ["--shard", str(i), "--total-shards", str(args.shards)])
        finally:
            wl.close()
    res["load_avg"]["end"] = os.getloadavg()[0]
    res["machine"] = bench.machine_facts("")
    res["total_seconds"] = round(time.monotonic() - started, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{res['date']}-sharding"
    stem.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(res))
    bench.log(f"done in {res['total_seconds']}s: {stem}.md")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Report of a soak run (bench/soak.sh): the exporter's RSS curve and the stability check.

Reads the CSV written by kse-soak and the run summary, writes <prefix>.md and, when matplotlib
is installed, <prefix>.png (otherwise the markdown carries an ASCII plot).

The check: after the warm-up (the first `--warmup` seconds, default 300), the baseline is the
median RSS of the first minute after warm-up, and every later sample must stay within
`--tolerance` (default 10 %) of it. Exit code 1 when the check fails.
"""

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path


def load(path):
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def ascii_plot(xs, ys, width=72, height=16):
    lo, hi = min(ys), max(ys)
    span = (hi - lo) or 1.0
    grid = [[" "] * width for _ in range(height)]
    x0, x1 = xs[0], xs[-1]
    for x, y in zip(xs, ys):
        col = int((x - x0) / ((x1 - x0) or 1) * (width - 1))
        row = height - 1 - int((y - lo) / span * (height - 1))
        grid[row][col] = "*"
    lines = []
    for i, r in enumerate(grid):
        label = hi - span * i / (height - 1)
        lines.append(f"{label / 1024:8.1f} MiB |{''.join(r)}")
    lines.append(" " * 13 + "+" + "-" * width)
    lines.append(" " * 14 + f"0 s{' ' * (width - 12)}{x1:.0f} s")
    return "\n".join(lines)


def check(post, warmup, tolerance):
    """(verdict, detail, baseline) for the samples after warm-up."""
    if not post:
        return "NOT EVALUATED", "the run ended before the warm-up did", None
    first_min = [y for x, y in post if x < warmup + 60] or [post[0][1]]
    base = statistics.median(first_min)
    lo, hi = min(y for _, y in post), max(y for _, y in post)
    dev = max(abs(hi - base), abs(base - lo)) / base
    verdict = "PASS" if dev <= tolerance else "FAIL"
    detail = (f"baseline {base / 1024:.1f} MiB (median of the minute after warm-up); "
              f"after warm-up min {lo / 1024:.1f} MiB, max {hi / 1024:.1f} MiB, "
              f"largest deviation {dev * 100:.1f} % (limit {tolerance * 100:.0f} %)")
    if len(post) >= 2:
        mx = statistics.mean(x for x, _ in post)
        my = statistics.mean(y for _, y in post)
        sxx = sum((x - mx) ** 2 for x, _ in post)
        slope = sum((x - mx) * (y - my) for x, y in post) / sxx if sxx else 0.0
        detail += f"; linear trend after warm-up {slope * 3600 / 1024:+.2f} MiB/h"
    return verdict, detail, base


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--summary", help="kse-soak's JSON summary line")
    ap.add_argument("--out", required=True, help="output prefix (without extension)")
    ap.add_argument("--warmup", type=float, default=300.0)
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--title", default="kafka-slo-exporter soak")
    ap.add_argument("--notes", default="")
    a = ap.parse_args()

    rows = load(a.csv)
    if not rows:
        print("no samples", file=sys.stderr)
        return 2
    xs = [r["elapsed_s"] for r in rows]
    rss = [r["rss_kb"] for r in rows]
    post = [(x, y) for x, y in zip(xs, rss) if x >= a.warmup]
    summary = json.loads(a.summary) if a.summary else {}

    verdict, detail, base = check(post, a.warmup, a.tolerance)
    anon = [r["rss_anon_kb"] for r in rows] if "rss_anon_kb" in rows[0] else None
    filed = [r["rss_file_kb"] for r in rows] if "rss_file_kb" in rows[0] else None
    anon_line = None
    if anon:
        v, d, _ = check([(x, y) for x, y in zip(xs, anon) if x >= a.warmup], a.warmup, a.tolerance)
        anon_line = f"Anonymous part (RssAnon: heap, stacks, librdkafka buffers): {v} — {d}."

    out = Path(a.out)
    png = None
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(9, 4))
        ax.plot([x / 60 for x in xs], [y / 1024 for y in rss], label="exporter VmRSS")
        if anon:
            ax.plot([x / 60 for x in xs], [y / 1024 for y in anon], label="RssAnon")
        if filed:
            ax.plot([x / 60 for x in xs], [y / 1024 for y in filed], label="RssFile")
        ax.axvline(a.warmup / 60, color="grey", linestyle="--", label="end of warm-up")
        if base:
            ax.axhspan(base * (1 - a.tolerance) / 1024, base * (1 + a.tolerance) / 1024,
                       color="green", alpha=0.1, label=f"baseline ±{a.tolerance * 100:.0f} %")
        ax.set_xlabel("minutes")
        ax.set_ylabel("MiB")
        ax.set_title(a.title)
        ax.legend(loc="center right")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        png = out.with_suffix(".png")
        fig.savefig(png, dpi=100)
    except ImportError:
        pass

    last = rows[-1]
    lines = [f"# {a.title}", ""]
    if a.notes:
        lines += [a.notes, ""]
    lines += [
        f"**RSS check: {verdict}** — {detail}.",
        "",
    ]
    if anon_line:
        lines += [anon_line, ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| duration | {xs[-1]:.0f} s ({len(rows)} samples) |",
        f"| warm-up | first {a.warmup:.0f} s |",
        f"| scrapes ok / failed | {last['scrapes_ok']:.0f} / {last['scrapes_failed']:.0f} |",
        f"| scrape p99 (worst sample window) | {max(r['scrape_p99_ms'] for r in rows):.1f} ms |",
        f"| topics created / deleted | {last['topics_created']:.0f} / {last['topics_deleted']:.0f} |",
        f"| churn errors | {last['churn_errors']:.0f} |",
        f"| series in the last scrape | {last['series']:.0f} |",
        f"| RSS first / last sample | {rss[0] / 1024:.1f} / {rss[-1] / 1024:.1f} MiB |",
    ]
    if summary:
        lines += [f"| exporter exited during the run | {summary.get('exporter_exited') or 'no'} |",
                  f"| slowest scrape | {summary.get('scrape_max_ms', 0):.1f} ms |"]
    lines.append("")
    if png:
        lines += [f"![RSS curve]({png.name})", ""]
    else:
        lines += ["```", ascii_plot(xs, rss), "```", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print(f"{verdict}: {detail}")
    return 1 if verdict == "FAIL" else 0


if __name__ == "__main__":
    sys.exit(main())

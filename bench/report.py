#!/usr/bin/env python3
"""Renders a benchmark result (bench/results/*.json) as markdown with ratios and PNG charts.

usage: report.py RESULT.json   → writes RESULT.md, RESULT-peers.png, RESULT-scaling.png
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

OURS = "kafka-slo-exporter"
PEERS = ["klag-exporter", "kafka_exporter", "kminion"]

# (key, label, unit, getter, lower is better)
METRICS = [
    ("cycle_s", "Collection cycle", "s", lambda r: r.get("cycle_s")),
    ("first_offset_lag_s", "Start to first output with offset lag", "s",
     lambda r: r.get("first_offset_lag_s", r.get("first_complete_s"))),
    ("first_time_lag_s", "Start to first output with time lag", "s", lambda r: r.get("first_time_lag_s")),
    ("first_complete_s", "Start to first complete output", "s", lambda r: r.get("first_complete_s")),
    ("peak_rss", "Peak RSS (VmHWM)", "MiB", lambda r: r.get("peak_rss_kb") and r["peak_rss_kb"] / 1024),
    ("cpu", "CPU per cycle", "s", lambda r: r.get("cpu_s_per_cycle")),
    ("p50", "/metrics p50, 10 scrapers", "ms", lambda r: r.get("load", {}).get("p50_s") and r["load"]["p50_s"] * 1000),
    ("p99", "/metrics p99, 10 scrapers", "ms", lambda r: r.get("load", {}).get("p99_s") and r["load"]["p99_s"] * 1000),
    ("single", "/metrics single text scrape", "ms", lambda r: r.get("single_scrape_s") and r["single_scrape_s"] * 1000),
    ("bytes", "Response size (gzip if offered)", "KiB", lambda r: r.get("load", {}).get("mean_body_bytes") and r["load"]["mean_body_bytes"] / 1024),
    ("series", "Series", "", lambda r: r.get("series")),
]


def fmt(v, unit=""):
    if v is None:
        return "—"
    if isinstance(v, float):
        if abs(v) >= 100:
            s = f"{v:,.0f}"
        elif abs(v) >= 10:
            s = f"{v:.1f}"
        else:
            s = f"{v:.3g}"
    else:
        s = f"{v:,}"
    return f"{s} {unit}".strip()


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def peer_table(res):
    ex = res["exporters"]
    names = [OURS] + [p for p in PEERS if p in ex]
    head = "| Metric | " + " | ".join(
        f"{n} {ex[n].get('version', '')}".strip() for n in names) + " | " + " | ".join(
        f"ours ÷ {p}" for p in names[1:]) + " |"
    lines = [head, "|" + "---|" * (1 + 2 * len(names) - 1)]
    for key, label, unit, get in METRICS:
        vals = [None if "error" in ex.get(n, {"error": 1}) else get(ex[n]) for n in names]
        ratios = [ratio(vals[0], v) for v in vals[1:]]
        lines.append(f"| {label} | " + " | ".join(fmt(v, unit) for v in vals) + " | "
                     + " | ".join("—" if r is None else f"{r:.3g}" for r in ratios) + " |")
    notes = []
    for n in names:
        r = ex.get(n, {})
        if "error" in r:
            notes.append(f"- **{n}**: not measured: {r['error']}")
        elif r.get("kind") == "scrape":
            notes.append(f"- **{n}** collects from Kafka on every `/metrics` request: its collection cycle is "
                         f"one full request (first request {fmt(r.get('first_scrape_s'), 's')}), its CPU per cycle "
                         "is the CPU of that request.")
        if r.get("load", {}).get("errors"):
            notes.append(f"- **{n}**: {r['load']['errors']} of the load-test requests failed "
                         f"(first error: {r['load'].get('first_error')}).")
    return "\n".join(lines), notes


def targets(res):
    ex = res["exporters"]
    ours = ex.get(OURS, {})

    def get(n, k):
        r = ex.get(n, {})
        return None if "error" in r else r.get(k)

    rows = []

    def row(what, value, limit, ok):
        state = "—" if ok is None else ("met" if ok else "**not met**")
        rows.append(f"| {what} | {value} | {limit} | {state} |")

    for peer, limit in [("klag-exporter", 0.5), ("kafka_exporter", 0.2)]:
        r = ratio(get(OURS, "cycle_s"), get(peer, "cycle_s"))
        row(f"collection cycle ÷ {peer}", "—" if r is None else f"{r:.3g}", f"≤ {limit}", None if r is None else r <= limit)
    for peer, limit in [("klag-exporter", 0.5), ("kminion", 0.25)]:
        r = ratio(get(OURS, "peak_rss_kb"), get(peer, "peak_rss_kb"))
        row(f"peak RSS ÷ {peer}", "—" if r is None else f"{r:.3g}", f"≤ {limit}", None if r is None else r <= limit)
    req = res.get("requests", {})
    if "total_per_cycle" in req and req.get("minimum"):
        r = req["total_per_cycle"] / req["minimum"]
        what, limit = (("batched protocol minimum (native reader)", 1.2) if req.get("reader") == "native"
                       else ("minimum with librdkafka", 1.5))
        row(f"Kafka requests per cycle ÷ {what}", f"{req['total_per_cycle']:g} ÷ {req['minimum']:g} = {r:.3g}",
            f"≤ {limit}", r <= limit)
    p99 = ours.get("load", {}).get("p99_s")
    row(f"/metrics p99, 10 scrapers, {fmt(ours.get('series'))} series", fmt(p99 and p99 * 1000, "ms"), "≤ 25 ms",
        None if p99 is None else p99 <= 0.025)
    return "| Target | Measured | Limit | |\n|---|---|---|---|\n" + "\n".join(rows)


def request_table(res):
    req = res.get("requests")
    if not req:
        return ""
    if "error" in req:
        return f"Request counting failed: {req['error']}\n"
    if req.get("reader") == "native":
        return native_request_table(req)
    lines = ["| Request | Per cycle |", "|---|---|"]
    for k, v in req["per_cycle"].items():
        lines.append(f"| {k} | {v:g} |")
    lines.append(f"| **total** | **{req['total_per_cycle']:g}** |")
    return "\n".join(lines) + f"\n\nSteady-state cycles counted: {req['cycles_counted']} (librdkafka statistics, all clients of the exporter).\n"


def native_request_table(req):
    """Measured requests of the native reader beside the batched protocol minimum, by API."""
    minimum = req.get("minimum_per_api", {})
    apis = list(minimum) + [k for k in req["per_cycle"] if k not in minimum]
    lines = ["| Request | Per cycle | Batched minimum |", "|---|---|---|"]
    for k in apis:
        measured, least = req["per_cycle"].get(k, 0), minimum.get(k)
        if measured or least:
            lines.append(f"| {k} | {measured:g} | {'—' if least is None else least} |")
    lines.append(f"| **total** | **{req['total_per_cycle']:g}** | **{req.get('minimum', '—')}** |")
    first, last = req.get("cycle_range", ["?", "?"])
    out = "\n".join(lines) + (
        f"\n\nReader: native ({req.get('reason') or 'no reason exported'}). Steady-state cycles counted: "
        f"{req['cycles_counted']} (`kafka_slo_exporter_kafka_requests_total` summed over brokers, between the idle "
        f"gaps after cycles {first:g} and {last:g}).\n")
    other = req.get("librdkafka_clients")
    if other:
        out += ("\nBeside the native reader, the exporter's librdkafka clients (record reads, delivery probe) sent "
                f"{other['total_per_cycle']:g} requests per cycle (librdkafka statistics, {other['cycles_counted']} "
                "cycles; not in the total above): "
                + ", ".join(f"{k} {v:g}" for k, v in other["per_cycle"].items()) + ".\n")
    return out


def scaling_table(res):
    sc = res.get("scaling") or []
    if not sc:
        return ""
    lines = ["| Partitions | Groups | Cycle | Peak RSS | CPU/cycle | p99, 10 scrapers | Series |", "|---|---|---|---|---|---|---|"]
    for r in sc:
        if "error" in r:
            lines.append(f"| {r['partitions']} | {r['groups']} | failed: {r['error']} | | | | |")
            continue
        lines.append(f"| {r['partitions']:,} | {r['groups']:,} | {fmt(r.get('cycle_s'), 's')} | "
                     f"{fmt(r['peak_rss_kb'] / 1024, 'MiB')} | {fmt(r.get('cpu_s_per_cycle'), 's')} | "
                     f"{fmt(r['load']['p99_s'] * 1000, 'ms')} | {fmt(r.get('series'))} |")
    return "\n".join(lines)


def charts(res, stem):
    ex = res["exporters"]
    names = [n for n in [OURS] + PEERS if n in ex and "error" not in ex[n]]
    made = []
    if len(names) > 1:
        panels = [m for m in METRICS if m[0] in ("cycle_s", "peak_rss", "cpu", "p99")]
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2))
        colors = ["#2a9d8f" if n == OURS else "#8d99ae" for n in names]
        for ax, (key, label, unit, get) in zip(axes, panels):
            vals = [get(ex[n]) or 0 for n in names]
            bars = ax.bar(range(len(names)), vals, color=colors)
            ax.set_yscale("log")
            ax.set_title(f"{label} ({unit})\nlower is better", fontsize=10)
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
            for b, v in zip(bars, vals):
                ax.annotate(fmt(float(v)), (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
        cfg = res["config"]
        fig.suptitle(f"{cfg['topics'] * cfg['partitions']:,} partitions, {cfg['groups']:,} groups, one broker "
                     f"(log scale)", fontsize=11)
        fig.tight_layout()
        path = Path(f"{stem}-peers.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    sc = [r for r in res.get("scaling") or [] if "error" not in r]
    if sc:
        xs = [r["partitions"] for r in sc]
        panels = [
            ("Collection cycle (s)", [r["cycle_s"] for r in sc]),
            ("Peak RSS (MiB)", [r["peak_rss_kb"] / 1024 for r in sc]),
            ("CPU per cycle (s)", [r["cpu_s_per_cycle"] for r in sc]),
            ("/metrics p99, 10 scrapers (ms)", [r["load"]["p99_s"] * 1000 for r in sc]),
        ]
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4))
        for ax, (title, ys) in zip(axes, panels):
            ax.plot(xs, ys, marker="o", color="#2a9d8f")
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("partitions (one group per 10)")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            for x, y in zip(xs, ys):
                ax.annotate(fmt(float(y)), (x, y), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=8)
        fig.suptitle(f"kafka-slo-exporter scaling ({res.get('scaling_brokers', 1)} broker(s))", fontsize=11)
        fig.tight_layout()
        path = Path(f"{stem}-scaling.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    return made


def main():
    path = Path(sys.argv[1])
    res = json.loads(path.read_text())
    stem = str(path.with_suffix(""))
    made = charts(res, stem)
    m = res["machine"]
    cfg = res["config"]
    out = [f"# Benchmark {res['preset']} — {m['date']}", ""]
    out.append(f"Workload: {cfg['topics']:,} topics × {cfg['partitions']} partitions "
               f"({cfg['topics'] * cfg['partitions']:,} partitions), {cfg['groups']:,} consumer groups with committed "
               f"offsets (lag 0–5 records per partition), {cfg['records']} records per partition, one broker. "
               f"Background exporters poll every {cfg['interval']} s. Built in {res.get('workload_seconds', '?')} s; "
               f"whole run {res.get('total_seconds', '?')} s.")
    out.append("")
    out.append(f"Machine: {m['nproc']} cores ({m['cpu_model']}), {m['ram_gib']} GiB RAM, Linux {m['kernel']}, "
               f"Kafka {m['kafka_version']} (KRaft, broker JVM heap 2 GiB), load average at start {m['load_avg_at_start']:.2f}. "
               f"Exporter revision {m['git_revision']}{' + local changes' if m.get('git_dirty') else ''}.")
    out.append("")
    if res["exporters"]:
        table, notes = peer_table(res)
        out += ["## Peer comparison (same cluster, one at a time)", "", table, ""]
        out += notes + [""]
        warm = res.get("warm_up_s")
        if warm:
            out += ["Before the measured runs every exporter ran once, unmeasured, up to its first complete output, "
                    "so that none pays the broker's warm-up for the others (its first ListOffsets, DescribeConfigs and "
                    "Fetch of this size are several times slower). Start to first complete output in that pass, in its "
                    "order (the first exporter met the coldest broker): "
                    + ", ".join(f"{n} {v} s" for n, v in warm.items()) + ".", ""]
        if made and made[0].name.endswith("-peers.png"):
            out += [f"![peer comparison]({made[0].name})", ""]
        out += ["## Targets (10k partitions, 1k groups)", "", targets(res), ""]
        rt = request_table(res)
        if rt:
            reader = res.get("requests", {}).get("reader")
            out += [f"## Kafka requests per cycle (kafka-slo-exporter{', ' + reader + ' reader' if reader else ''})", "", rt, ""]
            if res.get("requests", {}).get("arithmetic"):
                out += [res["requests"]["arithmetic"], ""]
    st = scaling_table(res)
    if st:
        out += [f"## Scaling of kafka-slo-exporter ({res.get('scaling_brokers', 1)} broker(s), one group per topic)", "", st, ""]
        sc_png = [p for p in made if p.name.endswith("-scaling.png")]
        if sc_png:
            out += [f"![scaling]({sc_png[0].name})", ""]
    Path(f"{stem}.md").write_text("\n".join(out))
    print(f"{stem}.md")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Benchmark of kafka-slo-exporter against peer exporters on one Kafka cluster.

Run through bench/run.sh, which builds and installs everything first. See bench/README.md for
what is measured and how. Writes bench/results/<date>-<preset>.{json,md} and PNG charts.
"""

import argparse
import datetime
import gzip
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
TARGET = ROOT / "target"
PEERS = TARGET / "bench-peers"

# Workload sizes. `scaling` lists topic counts (of `partitions` each) for the curve of our
# exporter; each step of the curve has one group per topic.
PRESETS = {
    "small": dict(topics=100, partitions=10, groups=100, records=20, interval=5,
                  scaling=[20, 50, 100], scaling_brokers=1, load_seconds=10, windows=2),
    "default": dict(topics=1000, partitions=10, groups=1000, records=20, interval=15,
                    scaling=[100, 500, 1000, 2000], scaling_brokers=2, load_seconds=20, windows=2),
}

# Peer versions (also pinned in run.sh, which installs them).
VERSIONS = {
    "klag-exporter": "0.1.29",
    "kafka_exporter": "v1.9.0",
    "kminion": "v2.3.5",
}

PROM_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
               "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------
# /proc readings
# ------------------------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


# ------------------------------------------------------------------------------------------
# HTTP helpers
# ------------------------------------------------------------------------------------------

def http_get(url, timeout=600, accept="text/plain;version=0.0.4", gzip=False):
    """Returns (status, body bytes, seconds)."""
    req = urllib.request.Request(url, headers={"Accept": accept})
    if gzip:
        req.add_header("Accept-Encoding", "gzip")
    t = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
            return r.status, body, time.monotonic() - t
    except urllib.error.HTTPError as e:
        return e.code, e.read(), time.monotonic() - t


def wait_listening(port, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before listening")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"not listening on {port} after {timeout}s")


def parse_samples(text):
    """{(name, frozenset(labels)): value} of a Prometheus text body (enough for self-metrics)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)', line)
        if not m:
            continue
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        try:
            out[(m.group(1), labels)] = float(m.group(4))
        except ValueError:
            pass
    return out


def metric(samples, name):
    """Values of all series of a metric name."""
    return [v for (n, _), v in samples.items() if n == name]


def series_count(text):
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def load_test(url, concurrency, seconds, timeout):
    scraper = TARGET / "release" / "kse-bench-scrape"
    out = subprocess.run(
        [str(scraper), "--url", url, "--concurrency", str(concurrency), "--duration", str(seconds),
         "--timeout", str(timeout)],
        capture_output=True, text=True, timeout=seconds + timeout + 60)
    if out.returncode != 0:
        raise RuntimeError(f"kse-bench-scrape failed: {out.stderr}")
    return json.loads(out.stdout)


# ------------------------------------------------------------------------------------------
# Exporters
# ------------------------------------------------------------------------------------------

class Exporter:
    """One exporter under test: how to start it and where its metrics are."""
    name = ""
    kind = "background"  # or "scrape": collects from Kafka on every /metrics request
    version = ""
    # The families `complete`, `cycle_marker` and the like read (None: all).
    readiness_families = None

    def __init__(self, workdir, bootstrap, interval):
        self.workdir = Path(workdir)
        self.bootstrap = bootstrap
        self.interval = interval
        self.port = free_port()
        self.proc = None
        self.log_path = self.workdir / f"{self.name}.log"

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/metrics"

    def command(self):
        raise NotImplementedError

    def env(self):
        return dict(os.environ)

    def start(self):
        cmd, env = self.command(), self.env()
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log_file, stderr=subprocess.STDOUT, env=env,
                                     cwd=self.workdir, start_new_session=True)
        self.started = time.monotonic()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log_file", None):
            self.log_file.close()

    # Background exporters: readiness, cycle count and duration from their own metrics.
    def complete(self, samples):
        raise NotImplementedError

    def offset_lag_ready(self, samples):
        """The output holds every group's offset lag (what kminion serves); for exporters that
        publish whole cycles only, their first complete output."""
        return self.complete(samples)

    def time_lag_ready(self, samples):
        """The output holds time lag from record reads; `None` for exporters without any."""
        return None

    def cycle_marker(self, samples):
        """A value that changes once per completed cycle."""
        raise NotImplementedError

    def cycle_seconds(self, samples):
        raise NotImplementedError

    def settled(self, samples):
        """A value that stops changing once start-up work is done; `None` for an exporter
        without any (two cycles are skipped then)."""
        return None


class Ours(Exporter):
    name = "kafka-slo-exporter"
    readiness_families = ("kafka_slo_exporter_cluster_up", "kafka_consumergroup_lag",
                          "kafka_slo_exporter_stage_last_success_timestamp_seconds",
                          "kafka_slo_exporter_cycles_total", "kafka_slo_exporter_cycle_duration_seconds",
                          "kafka_slo_exporter_record_reads_total")

    def __init__(self, *a, extra_properties=None, log_level="info", extra_args=(), **kw):
        super().__init__(*a, **kw)
        self.extra_args = list(extra_args)
        self.version = subprocess.run([str(TARGET / "release" / "kafka-slo-exporter"), "--version"],
                                      capture_output=True, text=True).stdout.strip().split()[-1]
        self.extra_properties = extra_properties or {}
        self.log_level = log_level

    def command(self):
        props = "".join(f"\n      {k}: {json.dumps(v)}" for k, v in self.extra_properties.items())
        cfg = self.workdir / "kse.yml"
        cfg.write_text(
            "global:\n"
            f"  interval: {self.interval}s\n"
            "  timeout: 30s\n"
            "  topics: {deny: ['__.*']}\n"
            "  lag: {granularity: partition}\n"
            "clusters:\n"
            "  - name: bench\n"
            f"    bootstrap_servers: [{json.dumps(self.bootstrap.split(',')[0])}]\n"
            + (f"    client_properties:{props}\n" if props else ""))
        return [str(TARGET / "release" / "kafka-slo-exporter"), "--config.file", str(cfg),
                "--web.listen-address", f"127.0.0.1:{self.port}", "--log.level", self.log_level,
                "--log.format", "json"] + self.extra_args

    def complete(self, samples):
        return bool(metric(samples, "kafka_slo_exporter_cluster_up")) and \
            metric(samples, "kafka_slo_exporter_cluster_up")[0] == 1.0

    def offset_lag_ready(self, samples):
        # Published as soon as the offsets and committed offsets of the first cycle are in,
        # with every earlier stage's data.
        done = {dict(labels).get("stage") for (n, labels), _ in samples.items()
                if n == "kafka_slo_exporter_stage_last_success_timestamp_seconds"}
        core = {"cluster", "topics", "topic_configs", "offsets", "groups", "group_offsets"}
        return core <= done and bool(metric(samples, "kafka_consumergroup_lag"))

    def time_lag_ready(self, samples):
        # The first cycle's record reads (at most lag.max_record_reads) have landed.
        return any(n == "kafka_slo_exporter_stage_last_success_timestamp_seconds"
                   and dict(labels).get("stage") == "time_lag" for (n, labels), _ in samples.items())

    def cycle_marker(self, samples):
        v = metric(samples, "kafka_slo_exporter_cycles_total")
        return v[0] if v else None

    def cycle_seconds(self, samples):
        v = metric(samples, "kafka_slo_exporter_cycle_duration_seconds")
        return v[0] if v else None

    def settled(self, samples):
        return sum(metric(samples, "kafka_slo_exporter_record_reads_total"))


class Klag(Exporter):
    name = "klag-exporter"
    readiness_families = ("kafka_lag_exporter_last_update_timestamp_seconds",
                          "kafka_lag_exporter_scrape_duration_seconds")
    version = VERSIONS["klag-exporter"]

    def command(self):
        cfg = self.workdir / "klag.toml"
        cfg.write_text(f"""
[exporter]
poll_interval = "{self.interval}s"
http_port = {self.port}
http_host = "127.0.0.1"
granularity = "partition"

[exporter.timestamp_sampling]
enabled = true

[[clusters]]
name = "bench"
bootstrap_servers = "{self.bootstrap}"
group_whitelist = [".*"]
group_blacklist = []
topic_whitelist = [".*"]
topic_blacklist = ["^__.*"]
""")
        return [str(PEERS / "klag" / "bin" / "klag-exporter"), "--config", str(cfg)]

    def complete(self, samples):
        return bool(metric(samples, "kafka_lag_exporter_last_update_timestamp_seconds"))

    def cycle_marker(self, samples):
        v = metric(samples, "kafka_lag_exporter_last_update_timestamp_seconds")
        return v[0] if v else None

    def cycle_seconds(self, samples):
        v = metric(samples, "kafka_lag_exporter_scrape_duration_seconds")
        return max(v) if v else None


class KafkaExporter(Exporter):
    name = "kafka_exporter"
    kind = "scrape"
    version = VERSIONS["kafka_exporter"]

    def command(self):
        cmd = [str(PEERS / "bin" / "kafka_exporter"), f"--web.listen-address=127.0.0.1:{self.port}",
               "--kafka.version=3.9.0", "--topic.exclude=^__.*", "--group.filter=.*",
               "--offset.show-all"]
        for b in self.bootstrap.split(","):
            cmd.append(f"--kafka.server={b}")
        return cmd


class Kminion(Exporter):
    name = "kminion"
    kind = "scrape"
    version = VERSIONS["kminion"]

    def command(self):
        cfg = self.workdir / "kminion.yml"
        brokers = ", ".join(json.dumps(b) for b in self.bootstrap.split(","))
        cfg.write_text(f"""
logger: {{level: info}}
kafka:
  brokers: [{brokers}]
minion:
  consumerGroups:
    enabled: true
    scrapeMode: adminApi
    granularity: partition
    allowedGroups: [".*"]
  topics:
    enabled: true
    granularity: partition
    allowedTopics: [".*"]
    ignoredTopics: ["^__.*"]
  logDirs:
    enabled: false
exporter:
  host: "127.0.0.1"
  port: {self.port}
""")
        return [str(PEERS / "bin" / "kminion")]

    def env(self):
        e = dict(os.environ)
        e["CONFIG_FILEPATH"] = str(self.workdir / "kminion.yml")
        return e


# ------------------------------------------------------------------------------------------
# Measurements
# ------------------------------------------------------------------------------------------

def scrape_samples(exp, timeout=120, families=None):
    """The samples of a scrape; with `families`, of those families only. Parsing only the lines
    the readiness and cycle checks read keeps the 0.1 s polling of a start-up light: parsing all
    of a 30,000-series body in Python takes longer than the poll interval and competes for the
    cores the exporter under test is starting on."""
    # Polls ask for gzip as Prometheus does: an exporter that caches its compressed output
    # then serves a poll without encoding all of it again for the observer.
    status, body, _ = http_get(exp.url, timeout=timeout, gzip=bool(families))
    if status != 200:
        return {}
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    text = body.decode("utf-8", "replace")
    if families:
        names = "|".join(re.escape(n) for n in families)
        text = "\n".join(re.findall(rf"^(?:{names})[{{ ].*$", text, re.M))
    return parse_samples(text)


def wait_cycle_edge(exp, timeout, poll=0.5, every_family=False):
    """Waits for the cycle marker to change; returns the samples just after it changed (of the
    readiness families unless `every_family`)."""
    families = None if every_family else exp.readiness_families
    first = exp.cycle_marker(scrape_samples(exp, families=families))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(poll)
        s = scrape_samples(exp, families=families)
        m = exp.cycle_marker(s)
        if m is not None and m != first:
            return s
    raise RuntimeError(f"{exp.name}: no complete cycle within {timeout}s")


def start_up(exp):
    """Seconds from process start to the first output with offset lag, with time lag (ours only)
    and to the first complete one. Background exporters: polled every 0.1 s so that the steps of
    a progressive start are told apart. Scrape-time exporters: the end of the first request (which
    also connects; `first_scrape_s` is its own duration)."""
    if exp.kind == "scrape":
        status, _, first = http_get(exp.url, timeout=900)
        if status != 200:
            raise RuntimeError(f"{exp.name}: HTTP {status}")
        done = round(time.monotonic() - exp.started, 2)
        log(f"{exp.name}: first scrape {first:.1f}s")
        return {"first_complete_s": done, "first_offset_lag_s": done, "first_scrape_s": round(first, 3)}
    res = {}
    deadline = time.monotonic() + 900
    steps = [("first_offset_lag_s", exp.offset_lag_ready), ("first_time_lag_s", exp.time_lag_ready),
             ("first_complete_s", exp.complete)]
    while True:
        if exp.proc.poll() is not None:
            raise RuntimeError(f"{exp.name} exited with {exp.proc.returncode}")
        s = scrape_samples(exp, families=exp.readiness_families)
        now = round(time.monotonic() - exp.started, 2)
        for key, ready in steps:
            if s and key not in res and ready(s):
                res[key] = now
        if "first_complete_s" in res:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{exp.name}: no complete output after 900s")
        time.sleep(0.1)
    log(f"{exp.name}: first output with offset lag after {res.get('first_offset_lag_s')}s, with "
        f"time lag after {res.get('first_time_lag_s')}s, complete after {res['first_complete_s']}s")
    return res


def measure_background(exp, cfg):
    interval = exp.interval
    res = {"kind": "background", **start_up(exp)}
    # Steady state: cycles pass unmeasured until the exporter's start-up work is done (ours reads
    # record timestamps there, at most 5,000 per cycle), then the durations of the next ones and
    # a CPU window of `windows` intervals.
    durations = []
    previous = None
    for i in range(10):
        s = wait_cycle_edge(exp, interval * 3 + 60)
        settled = exp.settled(s)
        if settled is None:
            if i >= 1:
                break
            continue
        if settled == previous:
            break
        previous = settled
    res["settling_cycles"] = exp.cycle_marker(s)
    s = wait_cycle_edge(exp, interval * 3 + 60)
    durations.append(exp.cycle_seconds(s))
    n = cfg["windows"]
    s = wait_cycle_edge(exp, interval * 3 + 60)
    durations.append(exp.cycle_seconds(s))
    marker0 = exp.cycle_marker(s)
    cpu0 = cpu_seconds(exp.proc.pid)
    time.sleep(n * interval + interval / 2)
    cpu1 = cpu_seconds(exp.proc.pid)
    s = scrape_samples(exp, families=exp.readiness_families)
    durations.append(exp.cycle_seconds(s))
    marker1 = exp.cycle_marker(s)
    cycles = round(marker1 - marker0) if exp.name == "kafka-slo-exporter" else n
    res["cpu_window_cycles"] = cycles
    res["cpu_s_per_cycle"] = round((cpu1 - cpu0) / max(cycles, 1), 3)
    durations = [d for d in durations if d is not None]
    res["cycle_durations_s"] = [round(d, 3) for d in durations]
    res["cycle_s"] = round(statistics.median(durations), 3) if durations else None
    log(f"{exp.name}: cycle {res['cycle_s']}s, CPU {res['cpu_s_per_cycle']}s/cycle")
    return res


def measure_scrape_time(exp, cfg):
    # The first scrape pays for connecting and the first metadata; the second is a steady
    # collection. CPU is read around the second.
    res = {"kind": "scrape", **start_up(exp)}
    first = res["first_scrape_s"]
    timeout = 900
    cpu0 = cpu_seconds(exp.proc.pid)
    status, body, second = http_get(exp.url, timeout=timeout)
    cpu1 = cpu_seconds(exp.proc.pid)
    res["cycle_durations_s"] = [round(first, 3), round(second, 3)]
    res["cycle_s"] = round(second, 3)
    res["cpu_s_per_cycle"] = round(cpu1 - cpu0, 3)
    log(f"{exp.name}: scrape {second:.1f}s, CPU {res['cpu_s_per_cycle']}s")
    return res


def run_exporter(exp, cfg, load=True):
    log(f"starting {exp.name} {exp.version}")
    exp.start()
    try:
        wait_listening(exp.port, exp.proc)
        res = (measure_background if exp.kind == "background" else measure_scrape_time)(exp, cfg)
        status, body, secs = http_get(exp.url, timeout=900)
        text = body.decode("utf-8", "replace")
        res["series"] = series_count(text)
        res["text_bytes"] = len(body)
        res["single_scrape_s"] = round(secs, 4)
        if load:
            timeout = 60 if exp.kind == "background" else 900
            lt = load_test(exp.url, 10, cfg["load_seconds"], timeout)
            res["load"] = lt
            log(f"{exp.name}: 10 scrapers: {lt['requests']} requests, p50 {lt['p50_s']}s, "
                f"p99 {lt['p99_s']}s, {lt['mean_body_bytes']} bytes/response, {lt['errors']} errors")
        res["peak_rss_kb"] = status_kb(exp.proc.pid, "VmHWM")
        res["rss_kb"] = status_kb(exp.proc.pid, "VmRSS")
        res["version"] = exp.version
        log(f"{exp.name}: {res['series']} series, peak RSS {res['peak_rss_kb'] / 1024:.1f} MiB")
        return res
    finally:
        exp.stop()


# ------------------------------------------------------------------------------------------
# Kafka requests per cycle of our exporter: the native reader's own counter, or librdkafka
# statistics
# ------------------------------------------------------------------------------------------

READER_INFO = "kafka_slo_exporter_kafka_reader_info"
REQUESTS_TOTAL = "kafka_slo_exporter_kafka_requests_total"

# Doctest input: two brokers and the bootstrap connection.
_REQUESTS_TEXT = "\n".join([
    'kafka_slo_exporter_kafka_requests_total{cluster="b",api="Metadata",broker="bootstrap"} 2',
    'kafka_slo_exporter_kafka_requests_total{cluster="b",api="Metadata",broker="1"} 5',
    'kafka_slo_exporter_kafka_requests_total{cluster="b",api="ListOffsets",broker="2"} 3',
    'kafka_slo_exporter_kafka_reader_info{cluster="b",reader="native",reason="auto: supported"} 1',
])


def request_counts(workdir, bootstrap, interval, cycles=3, extra_args=()):
    """Runs our exporter with librdkafka statistics every second and returns the requests per
    steady-state cycle by type. Which client serves the cycle decides where they come from: the
    native reader (`kafka_slo_exporter_kafka_reader_info{reader="native"}`) counts its requests
    itself (`native_request_counts`); for librdkafka they are the difference of the cumulative
    counters of its statistics between the idle gaps after cycle 2 and after the last cycle
    (`librdkafka_request_counts`)."""
    exp = Ours(workdir, bootstrap, interval, extra_properties={"statistics.interval.ms": 1000},
               log_level="debug", extra_args=extra_args)
    exp.name = "kafka-slo-exporter-requests"
    exp.log_path = Path(workdir) / "kse-requests.log"
    exp.start()
    try:
        deadline = time.monotonic() + 900 + cycles * interval
        wait_listening(exp.port, exp.proc)
        reader, reason = reader_of(wait_complete(exp, 900))
        log(f"requests: the collection cycle is served by the {reader} reader ({reason or 'no reason exported'})")
        if reader == "native":
            res = native_request_counts(exp, interval, cycles)
        else:
            while time.monotonic() < deadline:
                if len(cycle_spans(exp.log_path)) >= cycles + 4:
                    break
                time.sleep(1)
    finally:
        exp.stop()
    if reader != "native":
        res = librdkafka_request_counts(exp.log_path)
    else:
        # The delivery probe (and a record read the native reader hands on: an older message
        # format) still use librdkafka clients of their own; their requests are reported beside
        # the native reader's, not added to them.
        try:
            other = librdkafka_request_counts(exp.log_path)
            if other["total_per_cycle"]:
                res["librdkafka_clients"] = other
        except RuntimeError as e:
            log(f"requests: librdkafka clients beside the native reader not counted: {e}")
    res["reader"], res["reason"] = reader, reason
    return res


def librdkafka_request_counts(log_path):
    """Requests per cycle by type of all librdkafka clients, from the statistics in the
    exporter's debug log (see `request_counts`)."""
    cycles_seen = cycle_spans(log_path)
    blobs = stats_blobs(log_path)
    # Statistics carry whole seconds and reach the log when a later call serves the client's
    # queue, so counters are read in idle gaps between cycles (at least 3 s long) that a later
    # cycle closes: from the first such gap after cycle 2 (the first ones connect and read
    # records) to the last one.
    gaps = []
    for i in range(2, len(cycles_seen) - 1):
        end, next_start = cycles_seen[i][1], cycles_seen[i + 1][0]
        if next_start - end >= 3:
            gaps.append((i, int(end) + 1, next_start))
    if len(gaps) < 2:
        raise RuntimeError(f"too few idle gaps between cycles for request counting: {cycles_seen}")
    (i_a, t_a, _), (i_b, t_b, _) = gaps[0], gaps[-1]
    n = i_b - i_a
    per_type = {}
    for client, series in blobs.items():
        a = next((b for b in series if b["time"] >= t_a), None)
        b = next((b for b in series if b["time"] >= t_b), None)
        if not a or not b:
            continue
        for k in set(a["req"]) | set(b["req"]):
            d = b["req"].get(k, 0) - a["req"].get(k, 0)
            if d:
                per_type[k] = per_type.get(k, 0) + d
    per_cycle = {k: round(v / n, 2) for k, v in sorted(per_type.items())}
    return {"source": "librdkafka statistics", "cycles_counted": n, "per_cycle": per_cycle,
            "total_per_cycle": round(sum(per_type.values()) / n, 2)}


def reader_of(samples):
    """(reader, reason) from `kafka_slo_exporter_kafka_reader_info`; librdkafka for an exporter
    that does not export it (every build before the native reader).

    >>> reader_of(parse_samples(_REQUESTS_TEXT))
    ('native', 'auto: supported')
    >>> reader_of({})
    ('librdkafka', '')
    """
    for (name, labels), v in samples.items():
        if name == READER_INFO and v == 1:
            d = dict(labels)
            return d.get("reader", "librdkafka"), d.get("reason", "")
    return "librdkafka", ""


def requests_by_api(samples):
    """Requests sent so far by API, summed over brokers (and the bootstrap connection), from
    `kafka_slo_exporter_kafka_requests_total`.

    >>> requests_by_api(parse_samples(_REQUESTS_TEXT))
    {'ListOffsets': 3.0, 'Metadata': 7.0}
    """
    out = {}
    for (name, labels), v in samples.items():
        if name == REQUESTS_TOTAL:
            api = dict(labels).get("api", "?")
            out[api] = out.get(api, 0) + v
    return dict(sorted(out.items()))


def wait_complete(exp, timeout):
    """The samples of the exporter's first complete output."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if exp.proc.poll() is not None:
            raise RuntimeError(f"{exp.name} exited with {exp.proc.returncode}")
        s = scrape_samples(exp)
        if s and exp.complete(s):
            return s
        time.sleep(0.5)
    raise RuntimeError(f"{exp.name}: no complete output after {timeout}s")


def idle_gap(exp, timeout, attempts=4):
    """(cycles so far, requests by API, samples), read in the idle gap after the next completed
    cycle: just after the cycle count moved, confirmed by a second scrape a second later with the
    same cycle count and the same request counters (no cycle running, nothing sent)."""
    for _ in range(attempts):
        s = wait_cycle_edge(exp, timeout, every_family=True)
        time.sleep(1)
        s2 = scrape_samples(exp)
        marker, requests = exp.cycle_marker(s2), requests_by_api(s2)
        if marker is not None and marker == exp.cycle_marker(s) and requests == requests_by_api(s):
            return marker, requests, s2
        log(f"{exp.name}: requests were sent or a cycle ran within 1 s after cycle "
            f"{exp.cycle_marker(s)} ended; waiting for the next one")
    raise RuntimeError(f"{exp.name}: no idle gap after {attempts} cycles (cycles back to back, or "
                       "requests sent between cycles)")


def native_request_counts(exp, interval, cycles):
    """Requests per steady-state cycle of the native reader by API: the difference of
    `kafka_slo_exporter_kafka_requests_total` (summed over brokers) between the idle gap after a
    steady cycle (the third or later, once the record reads counter stopped moving) and the idle
    gap `cycles` cycles later, divided by the cycles in between (`kafka_slo_exporter_cycles_total`).
    Also the cluster's shape for the batched minimum, from the last samples."""
    timeout = interval * 3 + 60
    previous = None
    for _ in range(10):
        s = wait_cycle_edge(exp, timeout)
        settled = exp.settled(s)
        if (exp.cycle_marker(s) or 0) >= 3 and settled == previous:
            break
        previous = settled
    c_a, r_a, s_b = idle_gap(exp, timeout)
    c_b, r_b = c_a, r_a
    while c_b - c_a < cycles:
        c_b, r_b, s_b = idle_gap(exp, timeout)
    n = round(c_b - c_a)
    delta = {k: r_b.get(k, 0) - r_a.get(k, 0) for k in sorted(set(r_a) | set(r_b))}
    return {"source": REQUESTS_TOTAL, "cycles_counted": n, "cycle_range": [c_a, c_b],
            "per_cycle": {k: round(v / n, 2) for k, v in delta.items() if v},
            "total_per_cycle": round(sum(delta.values()) / n, 2), "shape": cluster_shape(s_b)}


def cluster_shape(samples):
    r"""What the batched minimum depends on, from the exporter's own series: brokers
    (`kafka_brokers`), brokers leading at least one exported partition
    (`kafka_broker_leader_partitions` > 0), exported topics (`kafka_topic_partitions`), and per
    coordinator its classic and consumer-protocol groups (`kafka_consumergroup_info`).

    >>> cluster_shape(parse_samples("\n".join([
    ...     'kafka_brokers{cluster="b"} 3',
    ...     'kafka_broker_leader_partitions{cluster="b",broker_id="1"} 2',
    ...     'kafka_broker_leader_partitions{cluster="b",broker_id="2"} 0',
    ...     'kafka_topic_partitions{cluster="b",topic="t"} 1',
    ...     'kafka_topic_partitions{cluster="b",topic="u"} 1',
    ...     'kafka_consumergroup_info{cluster="b",group="g",type="classic",coordinator_id="2"} 1',
    ...     'kafka_consumergroup_info{cluster="b",group="h",type="consumer",coordinator_id="2"} 1'])))
    {'brokers': 3, 'leaders': 1, 'topics': 2, 'coordinators': {'2': [1, 1]}}
    """
    brokers = int(max(metric(samples, "kafka_brokers") or [0]))
    leaders, topics, coordinators = set(), set(), {}
    for (name, labels), v in samples.items():
        d = dict(labels)
        if name == "kafka_broker_leader_partitions" and v > 0:
            leaders.add(d.get("broker_id"))
        elif name == "kafka_topic_partitions":
            topics.add(d.get("topic"))
        elif name == "kafka_consumergroup_info":
            c = coordinators.setdefault(d.get("coordinator_id") or "?", [0, 0])
            c[1 if d.get("type") == "consumer" else 0] += 1
    return {"brokers": brokers, "leaders": len(leaders), "topics": len(topics),
            "coordinators": dict(sorted(coordinators.items()))}


OFFSET_FETCH_GROUPS = 100  # groups per OffsetFetch request: the native reader's chunk bound


SHAPE_SOURCE = ("the exporter's own series: `kafka_brokers`, `kafka_broker_leader_partitions`, "
                "`kafka_topic_partitions`, `kafka_consumergroup_info`")


def native_request_minimum(brokers, leaders, topics, coordinators, source=SHAPE_SOURCE):
    """The fewest requests per cycle with which the Kafka protocol, batched, serves what the
    exporter exports: (total, {API: requests}, arithmetic in markdown). `coordinators` maps each
    group coordinator to its (classic, consumer-protocol) group counts; `source` says where they
    come from.

    >>> total, per_api, _ = native_request_minimum(1, 1, 1000, {"1": (1000, 0)})
    >>> total, per_api["OffsetFetch"], per_api["ListOffsets"], per_api["DescribeConfigs"]
    (19, 10, 3, 1)
    >>> total, per_api, _ = native_request_minimum(3, 2, 10, {"1": (250, 0), "2": (50, 30), "3": (0, 0)})
    >>> total, per_api["DescribeGroups"], per_api["ConsumerGroupDescribe"], per_api["OffsetFetch"]
    (20, 2, 1, 4)
    >>> native_request_minimum(1, 0, 0, {})[0]
    3
    """
    groups = sum(a + b for a, b in coordinators.values())
    classic = sum(1 for a, _ in coordinators.values() if a)
    consumer = sum(1 for _, b in coordinators.values() if b)
    fetches = sum(-(-(a + b) // OFFSET_FETCH_GROUPS) for a, b in coordinators.values())
    per_coordinator = " + ".join(f"⌈{a + b}/{OFFSET_FETCH_GROUPS}⌉" for a, b in coordinators.values() if a + b)
    parts = [
        ("Metadata", "Metadata: the cluster (brokers, controller) and the topics (partitions, leaders, ISR)", 2),
        ("DescribeConfigs", f"DescribeConfigs: one request for all {topics} topics", 1 if topics else 0),
        ("ListOffsets", "ListOffsets: earliest, latest and latest under read_committed are three requests per "
         f"broker leading at least one partition (isolation is per request) = 3 × {leaders}", 3 * leaders),
        ("ListGroups", f"ListGroups: one per broker = {brokers}", brokers),
        ("FindCoordinator", "FindCoordinator: one (v4+ takes every group key); 0 in a cycle where every "
         "coordinator is cached, but the minimum counts 1", 1 if groups else 0),
        ("DescribeGroups", f"DescribeGroups: one per coordinator with classic groups = {classic}", classic),
        ("ConsumerGroupDescribe", f"ConsumerGroupDescribe: one per coordinator with consumer-protocol groups "
         f"= {consumer}", consumer),
        ("OffsetFetch", f"OffsetFetch: ⌈groups on the coordinator / {OFFSET_FETCH_GROUPS}⌉ per coordinator "
         f"({OFFSET_FETCH_GROUPS} groups per request is the native reader's chunk bound) = "
         f"{per_coordinator or '0'} = {fetches}", fetches),
        ("ApiVersions, SaslHandshake, SaslAuthenticate", "ApiVersions and SASL: only when a connection is set "
         "up, 0 per cycle in a steady state", 0),
    ]
    total = sum(n for _, _, n in parts)
    lines = ["Batched protocol minimum per cycle (native reader; B brokers, L of them leading at least one "
             "exported partition, T topics, per coordinator c its classic and consumer-protocol groups "
             f"G_c): 2 + 1 + 3L + B + 1 + #(c with classic groups) + #(c with consumer groups) + "
             f"Σ_c ⌈G_c/{OFFSET_FETCH_GROUPS}⌉:", ""]
    lines += [f"- {what}: {n}" for _, what, n in parts]
    lines += ["", f"= **{total}** for B = {brokers}, L = {leaders}, T = {topics}, {groups} groups on "
              f"{len([c for c in coordinators.values() if sum(c)])} coordinator(s) (from {source}). "
              "Target: measured ÷ minimum ≤ 1.2."]
    return total, {api: n for apis, _, n in parts for api in apis.split(", ")}, "\n".join(lines)


def minimum_for(req, brokers, topics, groups):
    """Adds to a result of `request_counts` the minimum for its reader: the batched protocol
    minimum for the native reader (cluster shape from the exporter's series, or from the workload
    where they were missing), librdkafka's otherwise."""
    if req.get("reader") == "native":
        shape, source = req.get("shape") or {}, SHAPE_SOURCE
        if not shape.get("brokers") or not shape.get("leaders") or not shape.get("coordinators"):
            shape = {"brokers": brokers, "leaders": brokers, "topics": topics, "coordinators": {"?": [groups, 0]}}
            source = ("the workload, one coordinator assumed: the exporter's series did not give the brokers, "
                      "leaders and coordinators")
        total, per_api, arithmetic = native_request_minimum(
            shape["brokers"], shape["leaders"], shape["topics"],
            {c: tuple(v) for c, v in shape["coordinators"].items()}, source)
        req["minimum_per_api"] = per_api
    else:
        total, arithmetic = request_minimum(brokers, topics, groups)
    req["minimum"], req["arithmetic"] = total, arithmetic
    return req


def request_minimum(brokers, topics, groups):
    """The fewest requests per cycle with which librdkafka can collect what the exporter
    exports, and the arithmetic behind it (markdown)."""
    configs = -(-topics // 1000)
    parts = [
        ("Metadata (topics, partitions, leaders, ISR)", 1),
        ("DescribeCluster (librdkafka sends it as a Metadata request)", 1),
        (f"DescribeConfigs ({topics} topics, 1000 per request)", configs),
        ("ListOffsets: earliest, latest and latest under read_committed are three requests per "
         f"leader (a partition may appear once per request, isolation is per request) = 3 × {brokers}",
         3 * brokers),
        (f"ListGroups, one per broker = {brokers}", brokers),
        (f"DescribeGroups, one batched request per coordinator ≤ {brokers}", brokers),
        (f"OffsetFetch: librdkafka's ListConsumerGroupOffsets takes one group per request = {groups}", groups),
        (f"FindCoordinator before each OffsetFetch: librdkafka caches 11 coordinators, so with "
         f"{groups} groups every request looks its coordinator up = {groups}", groups),
        ("Fetch for record timestamps: 0 in a steady state (timestamps are cached per committed offset)", 0),
    ]
    total = sum(n for _, n in parts)
    lines = ["Minimum per cycle with librdkafka (B brokers, G groups, T topics): "
             "1 + 1 + ⌈T/1000⌉ + 3B + B + B + G + G = 2G + 5B + 2 + ⌈T/1000⌉:", ""]
    lines += [f"- {what}: {n}" for what, n in parts]
    lines += ["", f"= **{total}** for B = {brokers}, T = {topics}, G = {groups}. The Kafka protocol itself would "
              "allow fewer (OffsetFetch v8+ and FindCoordinator v4+ batch many groups per request), but "
              "librdkafka's admin API does not use that batching.", "",
              "kafka-slo-exporter differs from the minimum in two places: ListOffsets goes out in admin "
              "calls of 1,000 partitions, 3B × ⌈P/1000⌉ requests, because librdkafka merges the answers "
              "of one call with a quadratic search (one call for 10,000 partitions spent most of a cycle's "
              "CPU in `strcmp`); and ListGroups is sent twice per broker, once by ListConsumerGroups "
              "(for the group types) and once by the batched classic DescribeGroups."]
    return total, "\n".join(lines)


HIDDEN = "OffsetFetch (tx minus listed types)"


def json_lines(path):
    with open(path) as f:
        for line in f:
            try:
                yield json.loads(line)
            except ValueError:
                continue


def log_time(rec):
    ts = rec.get("timestamp", "")
    try:
        return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def cycle_spans(path):
    """(start, end) of every collection cycle, from the poller's debug log lines."""
    out = []
    for r in json_lines(path):
        m = r.get("message") or ""
        if m.startswith("collection cycle") or m == "collection recovered":
            end = log_time(r)
            out.append((end - float(r.get("duration_ms", 0)) / 1000, end))
    return out


def stats_blobs(path):
    """client name → [{time, req: {type: cumulative count}}] sorted by time."""
    out = {}
    for r in json_lines(path):
        if r.get("target") != "librdkafka::statistics":
            continue
        try:
            st = json.loads(r["message"])
        except (KeyError, ValueError):
            continue
        req = {}
        tx = 0
        for b in st.get("brokers", {}).values():
            tx += b.get("tx", 0)
            for k, v in b.get("req", {}).items():
                req[k] = req.get(k, 0) + v
        # librdkafka leaves some request types out of the statistics of a client type (OffsetFetch
        # for the admin client, which librdkafka counts as a producer): they are the rest of `tx`.
        req[HIDDEN] = tx - sum(req.values())
        out.setdefault(st["name"], []).append({"time": st["time"], "req": req})
    for v in out.values():
        v.sort(key=lambda b: b["time"])
    return out


# ------------------------------------------------------------------------------------------
# Workload cluster
# ------------------------------------------------------------------------------------------

class Workload:
    def __init__(self, brokers, heap):
        cmd = [str(TARGET / "release" / "kse-bench-workload"), "--brokers", str(brokers), "--heap", heap]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     bufsize=1)
        self.facts = {}
        while "started_in_s" not in self.facts:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("kse-bench-workload exited before the cluster started")
            k, _, v = line.strip().partition("=")
            self.facts[k] = v
        self.bootstrap = self.facts["bootstrap_servers"]
        self.broker_pids = [int(p) for p in self.facts["broker_pids"].split(",") if p]

    def grow(self, topics, partitions, groups, records):
        log(f"workload: growing to {topics} topics x {partitions} partitions, {groups} groups")
        self.proc.stdin.write(f"grow {topics} {partitions} {groups} {records}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().strip()
        if not line.startswith("ok"):
            raise RuntimeError(f"workload: {line}")
        log(f"workload: {line}")

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(60)
        except Exception:
            self.proc.kill()


# ------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------

def machine_facts(kafka_version):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    librdkafka = ""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "ram_gib": round(mem / 1024 / 1024, 1),
        "kernel": platform.release(),
        "kafka_version": kafka_version,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git_revision": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                       capture_output=True, text=True).stdout.strip(),
        "git_dirty": bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "src"],
                                         capture_output=True, text=True).stdout.strip()),
        "load_avg_at_start": os.getloadavg()[0],
    }


def peer_phase(cfg, only, workdir, results):
    wl = Workload(1, cfg.get("heap", "2g"))
    try:
        results["machine"] = machine_facts(wl.facts.get("kafka_version"))
        t = time.monotonic()
        wl.grow(cfg["topics"], cfg["partitions"], cfg["groups"], cfg["records"])
        results["workload_seconds"] = round(time.monotonic() - t, 1)
        classes = [cls for cls in [Ours, Klag, KafkaExporter, Kminion]
                   if (not only or cls.name in only) and cls.name not in results["install_errors"]]
        for name, error in results["install_errors"].items():
            if not only or name in only:
                results["exporters"][name] = {"error": error}
        results["warm_up_s"] = warm_up(classes, workdir, wl.bootstrap, cfg["interval"])
        for cls in classes:
            exp = cls(workdir, wl.bootstrap, cfg["interval"])
            try:
                results["exporters"][cls.name] = run_exporter(exp, cfg)
            except Exception as e:  # one peer failing must not stop the others
                log(f"{cls.name}: FAILED: {e}")
                results["exporters"][cls.name] = {"error": str(e), "version": exp.version}
            time.sleep(3)
        if not only or "kafka-slo-exporter" in only:
            log("counting Kafka requests per cycle of kafka-slo-exporter")
            try:
                results["requests"] = minimum_for(request_counts(workdir, wl.bootstrap, cfg["interval"]),
                                                  1, cfg["topics"], cfg["groups"])
                log(f"requests per cycle: {results['requests']}")
            except Exception as e:
                log(f"request counting FAILED: {e}")
                results["requests"] = {"error": str(e)}
        results["broker_peak_rss_kb"] = [status_kb(p, "VmHWM") for p in wl.broker_pids]
    finally:
        wl.close()


def warm_up(classes, workdir, bootstrap, interval):
    """Runs every exporter once, unmeasured, up to its first complete output. A broker just
    filled by the workload answers its first rounds of a kind of request (ListOffsets of 10,000
    partitions, DescribeConfigs of 1,000 topics, Fetch) several times slower than later ones
    (its JIT and caches warm up): without this, whichever exporter ran first would pay for all.
    Returns each one's start-to-complete time of this run, in run order (the first met the
    coldest broker), for the record."""
    wdir = Path(workdir) / "warm-up"
    wdir.mkdir(exist_ok=True)
    seconds = {}
    for cls in classes:
        exp = cls(wdir, bootstrap, interval)
        log(f"warm-up: {exp.name}")
        exp.start()
        try:
            wait_listening(exp.port, exp.proc)
            seconds[exp.name] = start_up(exp)["first_complete_s"]
        except Exception as e:  # the measured run reports the failure
            log(f"warm-up: {exp.name}: {e}")
        finally:
            exp.stop()
    log(f"warm-up: start to first complete output, in run order: {seconds}")
    return seconds


def scaling_phase(cfg, workdir, results):
    wl = Workload(cfg["scaling_brokers"], cfg.get("heap", "2g"))
    try:
        results["scaling_brokers"] = cfg["scaling_brokers"]
        for topics in cfg["scaling"]:
            wl.grow(topics, cfg["partitions"], topics, cfg["records"])
            exp = Ours(workdir, wl.bootstrap, cfg["interval"])
            try:
                # A shorter load test per point keeps the default run under 20 minutes.
                r = run_exporter(exp, dict(cfg, load_seconds=cfg["load_seconds"] // 2))
            except Exception as e:
                log(f"scaling point {topics}: FAILED: {e}")
                r = {"error": str(e)}
            r["partitions"] = topics * cfg["partitions"]
            r["groups"] = topics
            results["scaling"].append(r)
    finally:
        wl.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="default")
    ap.add_argument("--only", action="append", help="exporter name to run (repeatable)")
    ap.add_argument("--no-scaling", action="store_true")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--install-errors", default="{}", help="JSON: exporter → why it is missing")
    ap.add_argument("--out", default=str(BENCH / "results"))
    ap.add_argument("--self-check", action="store_true",
                    help="run the doctests (request arithmetic, metric parsing) and exit")
    args = ap.parse_args()
    if args.self_check:
        import doctest
        failed, tried = doctest.testmod()
        print(f"{tried - failed} of {tried} checks passed")
        sys.exit(1 if failed else 0)
    cfg = dict(PRESETS[args.preset])
    started = time.monotonic()
    results = {"preset": args.preset, "config": cfg, "exporters": {}, "scaling": [],
               "install_errors": json.loads(args.install_errors)}
    with tempfile.TemporaryDirectory(prefix="kse-bench-") as workdir:
        if not args.no_peers:
            peer_phase(cfg, args.only, workdir, results)
        if not args.no_scaling:
            scaling_phase(cfg, workdir, results)
        if "machine" not in results:
            results["machine"] = machine_facts("")
    results["total_seconds"] = round(time.monotonic() - started, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.date.today().isoformat()}-{args.preset}"
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    subprocess.run([sys.executable, str(BENCH / "report.py"), str(out / f"{stem}.json")], check=True)
    log(f"done in {results['total_seconds']}s: {out / stem}.md")


if __name__ == "__main__":
    main()

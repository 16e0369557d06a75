"""The metrics the binaries really export, and the metric and label names a PromQL expression
uses: the alert rules and the dashboard may only name what the binaries export.

Exported names come from the running binaries, parsed with a real OpenMetrics parser
(prometheus-client's): a `transit-sidecar run` fed by a `transit-broadcaster serve` on free
loopback ports (so the per-stream series exist), both scraped on `/metrics`; and
`transit-operator metrics`, which prints the operator's registry without a cluster (its
families with no series yet, such as remediation steps, are not listed: rules may not use them).
"""

from __future__ import annotations

import re
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from . import binaries
from .common import CheckFailed, require

# Labels Prometheus adds to every scraped series (target labels; the chart's PodMonitor adds
# `transitstream`), and `le`, which histogram buckets carry. The rules and dashboard may group
# by these on any metric.
TARGET_LABELS = {"namespace", "pod", "container", "endpoint", "job", "instance", "service",
                 "transitstream", "le"}
# Series Prometheus itself makes, that no binary exports.
PROMETHEUS_SERIES = {"up"}

PROMQL_FUNCTIONS = {
    "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp",
    "clamp_max", "clamp_min", "count_over_time", "delta", "deriv", "exp", "floor",
    "histogram_quantile", "holt_winters", "idelta", "increase", "irate", "label_join",
    "label_replace", "last_over_time", "ln", "log2", "log10", "max_over_time", "min_over_time",
    "predict_linear", "present_over_time", "quantile_over_time", "rate", "resets", "round",
    "scalar", "sgn", "sort", "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time",
    "sum_over_time", "time", "timestamp", "vector", "label_values",
}
PROMQL_AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                       "count_values", "bottomk", "topk", "quantile"}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                   "and", "or", "unless", "offset", "inf", "nan"}
LABEL_VALUES = re.compile(r"label_values\s*\(\s*([a-zA-Z_:][\w:]*\s*(?:\{[^}]*\})?)\s*,\s*(\w+)\s*\)")
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


@dataclass
class Exported:
    """Metric names (sample names: `_total`, `_bucket`... included) -> the label names their
    samples carry (empty for a family with no series yet)."""
    labels: dict[str, set[str]] = field(default_factory=dict)

    def add_exposition(self, text: str, source: str) -> None:
        try:
            families = list(text_string_to_metric_families(text))
        except ValueError as e:
            raise CheckFailed(f"{source}: not valid OpenMetrics: {e}") from e
        require(families, f"{source}: no metric families")
        for fam in families:
            # A family with no samples still names its series: a counter's `_total`, a
            # histogram's `_bucket`/`_sum`/`_count`.
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
            for s in suffixes.get(fam.type, [""]):
                self.labels.setdefault(fam.name + s, set())
            for sample in fam.samples:
                self.labels.setdefault(sample.name, set()).update(sample.labels)


@dataclass
class Used:
    """What one PromQL expression names."""
    metrics: dict[str, set[str]]  # metric -> label names in its own matchers
    grouping: set[str]  # label names in by/without/on/ignoring/group_*


def promql_names(expr: str) -> Used:
    """Metric names and label names in a PromQL expression (or a Grafana label_values()
    query), with no PromQL parser: strings, Grafana variables, durations, grouping clauses and
    matchers are taken out first; what is left that is not a function, an aggregation or a
    keyword is a metric name."""
    text = re.sub(r"\$\{?\w+\}?", "1", expr)  # Grafana variables ($namespace, $__rate_interval)
    strings: list[str] = []
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'',
                  lambda m: strings.append(m.group(0)) or '""', text)
    grouping: set[str] = set()
    # label_values(metric{...}, label): the second argument is a label.
    for label in LABEL_VALUES.findall(text):
        grouping.add(label[1])
    text = LABEL_VALUES.sub(lambda m: m.group(1), text)
    for _, names in GROUPING.findall(text):
        grouping.update(n.strip() for n in names.split(",") if n.strip())
    text = GROUPING.sub(" ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    metrics: dict[str, set[str]] = {}
    # A metric with matchers, then bare identifiers.
    for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}", text):
        matcher_labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", m.group(2)))
        if m.group(1) and m.group(1) not in PROMQL_FUNCTIONS | PROMQL_AGGREGATIONS:
            metrics.setdefault(m.group(1), set()).update(matcher_labels)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\b\d+(\.\d+)?([eE][+-]?\d+)?[smhdwy]?\b", " ", text)  # numbers, durations
    for ident in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        if ident.lower() in PROMQL_KEYWORDS or ident in PROMQL_FUNCTIONS | PROMQL_AGGREGATIONS:
            continue
        metrics.setdefault(ident, set())
    return Used(metrics, grouping)


def check_names(exprs: dict[str, str], exported: Exported) -> int:
    """Every metric an expression names is exported, and every label it matches or groups by
    is one that metric's samples carry (or a target label). Returns how many names were
    checked."""
    problems, checked = [], 0
    for where, expr in exprs.items():
        used = promql_names(expr)
        require(used.metrics, f"{where}: names no metric: {expr!r}")
        known_labels = set(TARGET_LABELS)
        for metric, labels in used.metrics.items():
            checked += 1
            if metric in PROMETHEUS_SERIES:
                continue
            if metric not in exported.labels:
                problems.append(f"{where}: {metric} is exported by no binary")
                continue
            carried = exported.labels[metric]
            known_labels |= carried
            # A family with no series yet cannot show its labels; only its name is checked.
            unknown = labels - carried - TARGET_LABELS if carried else set()
            if unknown:
                problems.append(f"{where}: {metric} has no label {sorted(unknown)} "
                                f"(it has {sorted(carried)})")
        if any(exported.labels.get(m) for m in used.metrics):
            unknown = used.grouping - known_labels
            if unknown:
                problems.append(f"{where}: groups by {sorted(unknown)}, which none of "
                                f"{sorted(used.metrics)} carries")
    require(not problems, "; ".join(problems))
    return checked


def names_self_test() -> None:
    exported = Exported()
    exported.add_exposition(
        "# TYPE a counter\na_total{stream=\"x\"} 1\n"
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n# EOF\n", "self-test")
    used = promql_names('sum by (stream) (rate(a_total{stream=~"$stream"}[5m])) > 0.5 '
                        'and on() histogram_quantile(0.9, rate(h_bucket[$__rate_interval])) '
                        '== bool 1 or absent(up{job="x"})')
    require(set(used.metrics) == {"a_total", "h_bucket", "up"}, f"metrics: {used.metrics}")
    require(used.grouping == {"stream"}, f"grouping: {used.grouping}")
    require(set(promql_names("label_values(a_total{stream=~\"$s\"}, stream)").metrics)
            == {"a_total"}, "label_values")
    check_names({"ok": "sum by (stream) (a_total)"}, exported)
    for bad in ("rate(a_totl[5m])", 'a_total{strem="x"}', "sum by (reason) (a_total)"):
        try:
            check_names({"bad": bad}, exported)
        except CheckFailed:
            continue
        raise CheckFailed(f"not caught: {bad!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 (loopback)
        return r.read().decode()


def exported_metrics() -> Exported:
    """Run the sidecar fed by the broadcaster until the sidecar has per-stream series, scrape
    both, and add the operator's `transit-operator metrics`."""
    exported = Exported()
    exported.add_exposition(binaries.run("transit-operator", "metrics"), "transit-operator metrics")
    ports = {k: free_port() for k in ("ingest", "sidecar", "admin", "grpc", "bc", "bcadmin")}
    with tempfile.TemporaryDirectory() as dumps:
        procs = []
        try:
            procs.append(subprocess.Popen(
                [str(binaries.binary("transit-sidecar")), "run", "--publish", "off",
                 "--dump-dir", dumps, "--ingest-addr", f"127.0.0.1:{ports['ingest']}",
                 "--http-addr", f"127.0.0.1:{ports['sidecar']}",
                 "--admin-addr", f"127.0.0.1:{ports['admin']}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            procs.append(subprocess.Popen(
                [str(binaries.binary("transit-broadcaster")), "serve",
                 "--grpc-addr", f"127.0.0.1:{ports['grpc']}",
                 "--http-addr", f"127.0.0.1:{ports['bc']}",
                 "--admin-addr", f"127.0.0.1:{ports['bcadmin']}",
                 "--report-url", f"http://127.0.0.1:{ports['ingest']}/v1/reports",
                 "--report-interval", "100ms", "--stream", "downtown=routes:R1",
                 "--stream", "all"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            sidecar = broadcaster = ""
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                for p in procs:
                    require(p.poll() is None, f"{Path(p.args[0]).name} exited {p.returncode}")
                try:
                    sidecar = scrape(f"http://127.0.0.1:{ports['sidecar']}/metrics")
                    broadcaster = scrape(f"http://127.0.0.1:{ports['bc']}/metrics")
                except OSError:
                    time.sleep(0.2)
                    continue
                if 'stream="downtown"' in sidecar and "stallwatch_sidecar_stream_stalled" in sidecar:
                    break
                time.sleep(0.2)
            require('stream="downtown"' in sidecar,
                    "the sidecar got no report from the broadcaster within 30s")
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    exported.add_exposition(sidecar, "transit-sidecar /metrics")
    exported.add_exposition(broadcaster, "transit-broadcaster /metrics")
    return exported

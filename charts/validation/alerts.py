"""The chart's PrometheusRule, PodMonitor and alert runbooks: the rules as the chart renders
them pass `promtool check rules`; `promtool test rules` runs charts/tests/alerts.test.yaml on
them, with a test per alert that fires on a stalled series and stays quiet on a healthy one
(and a mutation run proves each firing test can fail); every alert links a runbook section in
the chart README. promtool comes from Debian's `prometheus` package (scripts/setup.sh)."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import helm_python as helm
import yaml

from .common import CHART_README, RELEASE, RELEASE_NS, ROOT, load_yaml_docs, require
from .docs import md_sections
from .render import Rendered

ALERT_TESTS = ROOT / "charts" / "tests" / "alerts.test.yaml"
RULES_FILE = "stallwatch.rules.yaml"  # the name alerts.test.yaml's rule_files uses
SEVERITIES = {"critical", "warning"}
# The label the operator puts on every stream pod (operator/src/builders.rs), which the
# PodMonitor selects.
STREAM_POD_LABEL = "stallwatch.io/transitstream"


def promtool() -> str:
    path = shutil.which("promtool")
    require(path is not None, "promtool is missing: scripts/setup.sh installs Debian's "
                              "`prometheus` package, which has it")
    return path


def rendered_groups(chart: helm.Chart) -> list[dict]:
    """spec.groups of the PrometheusRule the chart renders with prometheusRule.enabled and
    every other value at its default (the runbook URLs alerts.test.yaml expects)."""
    files = chart.render({"prometheusRule": {"enabled": True}}, name=RELEASE,
                         namespace=RELEASE_NS, is_install=True)
    rules = [d for t in files.values() if "PrometheusRule" in t
             for d in load_yaml_docs(t) if d["kind"] == "PrometheusRule"]
    require(len(rules) == 1, f"expected one PrometheusRule, rendered {len(rules)}")
    return rules[0]["spec"]["groups"]


def alerts_of(groups: list[dict]) -> dict[str, dict]:
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def run_promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120)


def in_rule_dir(groups: list[dict], fn) -> subprocess.CompletedProcess:
    """Write the groups as stallwatch.rules.yaml next to a copy of alerts.test.yaml and call
    fn(dir)."""
    with tempfile.TemporaryDirectory() as d:
        Path(d, RULES_FILE).write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
        shutil.copy(ALERT_TESTS, d)
        return fn(Path(d))


def check_rules(chart: helm.Chart) -> int:
    """`promtool check rules` on the rendered rules; returns the number of alerts."""
    groups = rendered_groups(chart)
    p = in_rule_dir(groups, lambda d: run_promtool("check", "rules", str(d / RULES_FILE)))
    require(p.returncode == 0, f"promtool check rules: {p.stdout.strip()} {p.stderr.strip()}")
    alerts = alerts_of(groups)
    require(alerts, "the PrometheusRule has no alerts")
    return len(alerts)


def test_rules(chart: helm.Chart) -> None:
    """`promtool test rules` passes, and every alert has a test that fires and one that stays
    quiet (every tested alert exists)."""
    groups = rendered_groups(chart)
    p = in_rule_dir(groups, lambda d: run_promtool("test", "rules", str(d / ALERT_TESTS.name)))
    require(p.returncode == 0, f"promtool test rules:\n{p.stdout[-3000:]}{p.stderr[-1000:]}")
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    require(tests.get("rule_files") == [RULES_FILE], f"rule_files must be [{RULES_FILE}]")
    fires, quiet = set(), set()
    for t in tests["tests"]:
        for case in t.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    alerts = set(alerts_of(groups))
    require(not (fires | quiet) - alerts, f"tests for unknown alerts {sorted((fires | quiet) - alerts)}")
    require(not alerts - fires, f"alerts with no test that fires: {sorted(alerts - fires)}")
    require(not alerts - quiet, f"alerts with no test that stays quiet: {sorted(alerts - quiet)}")


def firing_tests_can_fail(chart: helm.Chart) -> None:
    """Mutation: with one alert's expression made never true, `promtool test rules` must fail,
    for every alert in turn (so each firing test really asserts the alert)."""
    groups = rendered_groups(chart)

    def passes_without(name: str) -> bool:
        mutated = copy.deepcopy(groups)
        alerts_of(mutated)[name]["expr"] = "vector(0) > 1"
        p = in_rule_dir(mutated, lambda d: run_promtool("test", "rules", str(d / ALERT_TESTS.name)))
        return p.returncode == 0

    names = list(alerts_of(groups))
    with ThreadPoolExecutor(max_workers=4) as pool:  # promtool runs are independent
        survivors = [n for n, passed in zip(names, pool.map(passes_without, names)) if passed]
    require(not survivors, f"promtool test rules still passes with these alerts never firing: "
                           f"{survivors}")


def runbook_anchors() -> dict[str, str]:
    """GitHub's anchors of the `### ` headings under the chart README's `## Alerts`."""
    alerts_section = md_sections(CHART_README.read_text()).get("Alerts", "")
    require(alerts_section, "charts/stallwatch/README.md has no `## Alerts` section")
    anchors = {}
    for title in md_sections(alerts_section, "### "):
        anchor = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        anchors[anchor] = md_sections(alerts_section, "### ")[title]
    return anchors


def check_runbooks(chart: helm.Chart) -> None:
    """Every alert's runbook_url is the runbook base plus the anchor of its own section in the
    chart README, and that section says what it means, what to look at and what to do."""
    base = chart.values["prometheusRule"]["runbookBaseUrl"]
    anchors = runbook_anchors()
    for name, rule in alerts_of(rendered_groups(chart)).items():
        url = rule.get("annotations", {}).get("runbook_url", "")
        anchor = name.lower()
        require(url == f"{base}#{anchor}", f"{name}: runbook_url {url!r}")
        require(anchor in anchors, f"{name}: no `### {name}` in the chart README's Alerts")
        text = anchors[anchor]
        for part in ("Means", "Look at", "Do"):
            require(f"**{part}**" in text, f"{name}: the runbook has no **{part}**")
    extra = set(anchors) - {a.lower() for a in alerts_of(rendered_groups(chart))}
    require(not extra, f"runbooks for alerts the chart does not have: {sorted(extra)}")


def check_objects(r: Rendered) -> None:
    """Per render scenario: the PrometheusRule and PodMonitor exist exactly when enabled, in
    the right namespace, with the labels asked for; alerts carry a severity, a summary, a
    description and the extra alert labels (never overriding their own)."""
    v = r.effective
    rules = r.of_kind("PrometheusRule")
    require(len(rules) == (1 if v["prometheusRule"]["enabled"] else 0), "PrometheusRule count")
    for pr in rules:
        want_ns = v["prometheusRule"]["namespace"] or RELEASE_NS
        require(pr["metadata"]["namespace"] == want_ns, f"PrometheusRule namespace, want {want_ns}")
        labels = pr["metadata"]["labels"]
        for k, val in v["prometheusRule"]["labels"].items():
            require(labels.get(k) == val, f"PrometheusRule label {k}")
        extra = v["prometheusRule"]["additionalAlertLabels"]
        for name, rule in alerts_of(pr["spec"]["groups"]).items():
            require(rule["labels"].get("severity") in SEVERITIES, f"{name}: severity")
            for k, val in extra.items():
                if k != "severity":
                    require(rule["labels"].get(k) == val, f"{name}: additional label {k}")
            for a in ("summary", "description", "runbook_url"):
                require(rule["annotations"].get(a), f"{name}: no {a} annotation")
    monitors = r.of_kind("PodMonitor")
    require(len(monitors) == (1 if v["podMonitor"]["enabled"] else 0), "PodMonitor count")
    for pm in monitors:
        exprs = pm["spec"]["selector"]["matchExpressions"]
        require(exprs == [{"key": STREAM_POD_LABEL, "operator": "Exists"}],
                f"PodMonitor selector {exprs}")
        ports = [e["port"] for e in pm["spec"]["podMetricsEndpoints"]]
        require(ports == ["metrics", "sidecar-http"], f"PodMonitor ports {ports}")
        ns_sel = pm["spec"]["namespaceSelector"]
        if v["namespaced"]:
            want = v["watchNamespace"] or RELEASE_NS
            require(ns_sel == {"matchNames": [want]}, f"PodMonitor namespaceSelector {ns_sel}")
        else:
            require(ns_sel == {"any": True}, f"PodMonitor namespaceSelector {ns_sel}")


def check_sources() -> None:
    """The PodMonitor's label and ports are the ones the operator gives stream pods."""
    builders = (ROOT / "operator" / "src" / "builders" / "container.rs").read_text()
    for port in ("metrics", "sidecar-http"):
        require(f'named_port("{port}"' in builders,
                f"operator/src/builders/container.rs names no container port {port!r}")
    labels = "\n".join(f.read_text() for f in sorted((ROOT / "crds" / "src").rglob("*.rs")))
    require(f'"{STREAM_POD_LABEL}"' in labels, f"crds/src does not define {STREAM_POD_LABEL}")


def rule_exprs(chart: helm.Chart) -> dict[str, str]:
    return {f"alert {n}": r["expr"] for n, r in alerts_of(rendered_groups(chart)).items()}


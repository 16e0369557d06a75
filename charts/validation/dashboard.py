"""The Grafana dashboard (charts/stallwatch/dashboards/stallwatch.json) and its ConfigMap:
valid JSON with the structure Grafana loads, every query on the `${datasource}` variable,
every variable it uses defined, and the ConfigMap carrying the file byte for byte with the
sidecar-discovery label."""

from __future__ import annotations

import json
import re

from .common import CHART, RELEASE_NS, CheckFailed, require
from .render import Rendered

DASHBOARD = CHART / "dashboards" / "stallwatch.json"
DATA_KEY = "stallwatch.json"
# Grafana's own variables.
BUILTIN_VARS = {"__rate_interval", "__interval", "__range", "__interval_ms", "__range_s"}


def load() -> dict:
    try:
        return json.loads(DASHBOARD.read_text())
    except json.JSONDecodeError as e:
        raise CheckFailed(f"{DASHBOARD.name}: invalid JSON: {e}") from e


def queries(dash: dict) -> dict[str, str]:
    """Every PromQL query: panel targets and query variables, by where they are."""
    out = {}
    for p in dash["panels"]:
        for t in p.get("targets", []):
            out[f"panel {p['title']!r} {t['refId']}"] = t["expr"]
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]
            out[f"variable ${v['name']}"] = q["query"] if isinstance(q, dict) else q
    return out


def check_dashboard() -> int:
    """Structure Grafana needs; returns the number of panels with queries."""
    dash = load()
    for key in ("title", "uid", "schemaVersion", "panels", "templating"):
        require(key in dash, f"dashboard has no {key}")
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    require(variables.get("datasource", {}).get("type") == "datasource"
            and variables["datasource"].get("query") == "prometheus",
            "no `datasource` variable of type datasource (prometheus)")
    ids, graphs = set(), 0
    for p in dash["panels"]:
        require(p["id"] not in ids, f"panel id {p['id']} twice")
        ids.add(p["id"])
        g = p["gridPos"]
        require(0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, f"{p['title']}: gridPos {g}")
        if p["type"] == "row":
            continue
        graphs += 1
        require(p.get("targets"), f"panel {p['title']!r} has no query")
        require(p.get("datasource", {}).get("uid") == "${datasource}",
                f"panel {p['title']!r} is not on ${{datasource}}")
        for t in p["targets"]:
            require(t.get("expr") and t.get("refId"), f"panel {p['title']!r}: target {t}")
    for where, q in queries(dash).items():
        for name in re.findall(r"\$\{?(\w+)\}?", q):
            require(name in variables or name in BUILTIN_VARS,
                    f"{where} uses ${name}, which the dashboard does not define")
    return graphs


def check_configmap(r: Rendered) -> None:
    v = r.effective["grafanaDashboard"]
    maps = [d for d in r.of_kind("ConfigMap") if DATA_KEY in d.get("data", {})]
    require(len(maps) == (1 if v["enabled"] else 0), "dashboard ConfigMap count")
    for cm in maps:
        require(cm["metadata"]["namespace"] == (v["namespace"] or RELEASE_NS),
                "dashboard ConfigMap namespace")
        labels = cm["metadata"]["labels"]
        for k, val in v["labels"].items():
            require(labels.get(k) == val, f"dashboard ConfigMap label {k}={val!r}")
        require(cm["data"][DATA_KEY] == DASHBOARD.read_text().rstrip("\n"),
                "the ConfigMap's dashboard differs from dashboards/stallwatch.json")
        json.loads(cm["data"][DATA_KEY])

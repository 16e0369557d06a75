"""README.md and the chart README against the chart: sections, values tables with their real
defaults, helm commands, object names, examples and stallwatch.io names."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python as helm
import yaml

from .common import (CHART, README, RELEASE, RELEASE_NS, ROOT, CheckFailed, load_yaml_docs,
                     merged, require, rust_sources)

README_SECTIONS = ["Install", "First stream", "Reading status", "Dump bundles",
                   "Upgrade and uninstall", "Troubleshooting"]


def md_sections(text: str, level: str = "## ") -> dict[str, str]:
    out, current, buf = {}, None, []
    for line in text.splitlines():
        if line.startswith(level) and not line.startswith(level + "#"):
            if current:
                out[current] = "\n".join(buf)
            current, buf = line[len(level):].strip(), []
        else:
            buf.append(line)
    if current:
        out[current] = "\n".join(buf)
    return out


def value_paths(values: Any, prefix: str = "") -> dict[str, Any]:
    """Every key path in values.yaml (objects and leaves) -> its default."""
    out = {}
    if isinstance(values, dict):
        for k, v in values.items():
            p = f"{prefix}.{k}" if prefix else k
            out[p] = v
            out.update(value_paths(v, p))
    return out


def leaf_paths(values: dict) -> dict[str, Any]:
    return {p: v for p, v in value_paths(values).items()
            if not isinstance(v, dict) or not v}


def values_table_rows(section: str) -> list[list[str]]:
    """Rows of the markdown tables whose first header cell is `key` or `value`."""
    rows, in_values_table = [], False
    for line in section.splitlines():
        if not line.startswith("|"):
            in_values_table = False
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if re.match(r"^\|\s*-", line):
            continue
        if not in_values_table and cells[0] in ("key", "value"):
            in_values_table = True
            continue
        if in_values_table:
            rows.append(cells)
    return rows


def documented_default_matches(cell: str, default: Any) -> bool:
    cell = cell.strip().strip("`")
    try:
        parsed = yaml.safe_load(cell) if cell else ""
    except yaml.YAMLError:
        return False
    if parsed is None and default is None:
        return True
    return parsed == default or (cell in ('""', "''") and default == "")


def check_values_table(text: str, defaults: dict, where: str, require_all: bool) -> None:
    paths = value_paths(defaults)
    leaves = leaf_paths(defaults)
    documented = {}
    for row in values_table_rows(text):
        m = re.fullmatch(r"`([A-Za-z][\w.]*)`", row[0]) if row else None
        if m and len(row) >= 3:
            documented[m.group(1)] = row[1]
    require(documented, f"{where}: no values table (| `key` | default | description |)")
    for key, cell in documented.items():
        require(key in paths, f"{where}: documents `{key}`, which values.yaml does not have")
        require(documented_default_matches(cell, paths[key]),
                f"{where}: `{key}` default documented as {cell} but values.yaml has "
                f"{json.dumps(paths[key])}")
    if require_all:
        missing = [p for p in leaves if p not in documented
                   and not any(p.startswith(d + ".") for d in documented)]
        require(not missing, f"{where}: values not documented: {missing}")


def check_readme(chart: helm.Chart, defaults: dict) -> None:
    text = README.read_text()
    sections = md_sections(text)
    titles = list(sections)
    positions = []
    for s in README_SECTIONS:
        require(s in sections, f"README.md has no `## {s}` section")
        positions.append(titles.index(s))
    require(positions == sorted(positions), f"README sections out of order: {README_SECTIONS}")
    install = sections["Install"]
    check_helm_commands(chart, install, "README.md Install")
    # Values snippets (```yaml blocks) in the Install section are valid values for the chart.
    for block in re.findall(r"```yaml\n(.*?)```", install, re.S):
        values = yaml.safe_load(block) or {}
        if "apiVersion" in values:
            continue
        try:
            chart.render(values, name=RELEASE, namespace=RELEASE_NS, is_install=True)
        except helm.HelmError as e:
            raise CheckFailed(f"a values snippet in Install is refused by the chart: {e}")
    check_values_table(install, defaults, "README.md Install", require_all=False)
    # Every example path the README names exists; First stream applies one.
    mine = text[text.index("## Install"):]
    for ex in set(re.findall(r"examples/[\w./-]+\.yaml", mine)):
        require((ROOT / ex).exists(), f"README names {ex}, which does not exist")
    require(re.search(r"kubectl apply -n \S+ -f examples/\S+\.yaml", sections["First stream"]),
            "First stream has no `kubectl apply -n NS -f examples/...` command")
    require("kubectl get ts" in sections["Reading status"], "Reading status: no `kubectl get ts`")
    require("transit-sidecar inspect" in sections["Dump bundles"], "Dump bundles: no inspect")
    require("crds/transitstream.yaml" in sections["Upgrade and uninstall"],
            "Upgrade: how to upgrade the CRD")
    check_object_refs(chart, mine, "README.md")
    # Every stallwatch.io/... annotation, label or condition type the docs name is in the code.
    # Read from the Rust source: no binary prints these names.
    code = "\n".join(t for crate in ("core", "crds", "operator", "sidecar")
                     for t in rust_sources(crate).values())
    for token in sorted(set(re.findall(r"stallwatch\.io/[A-Za-z][\w-]*", mine))):
        name = token.split("/", 1)[1]
        require(token in code or (f'"{name}"' in code and "stallwatch.io" in code),
                f"README names {token}, which no Rust source defines")


def check_helm_commands(chart: helm.Chart, text: str, where: str) -> None:
    """Every `helm install|upgrade` command names this chart and only values it accepts."""
    cmds = re.findall(r"^\s*(helm (?:install|upgrade)[^\n]*(?:\\\n[^\n]*)*)", text, re.M)
    require(cmds, f"{where}: no `helm install` command")
    for cmd in cmds:
        cmd = cmd.replace("\\\n", " ")
        require(re.search(r"\bcharts/stallwatch\b", cmd), f"{cmd!r} does not install charts/stallwatch")
        overrides: dict = {}
        for expr in re.findall(r"--set(?:-string)?[ =](\S+)", cmd):
            overrides = merged(overrides, helm.parse_set_string(expr))
        try:
            chart.render(overrides, name=RELEASE, namespace=RELEASE_NS, is_install=True)
        except helm.HelmError as e:
            raise CheckFailed(f"{cmd!r}: the chart refuses its values: {e}")
        require(re.search(r"(?:-n|--namespace)[ =]\S+", cmd), f"{cmd!r}: give the namespace (-n)")


def check_object_refs(chart: helm.Chart, text: str, where: str) -> None:
    """Names of the release's objects that the docs use (`-n stallwatch-system`, release
    `stallwatch`) are the names the chart renders."""
    files = chart.render({}, name=RELEASE, namespace=RELEASE_NS, is_install=True)
    files.pop(f"{CHART.name}/templates/NOTES.txt", None)
    names: dict[str, set] = {}
    for t in files.values():
        for d in load_yaml_docs(t):
            names.setdefault(d["kind"], set()).add(d["metadata"]["name"])
    defaults = chart.values
    kinds = {"deploy": "Deployment", "deployment": "Deployment", "svc": "Service",
             "service": "Service"}
    for line in text.splitlines():
        if RELEASE_NS not in line:
            continue
        for short, name in re.findall(r"\b(deploy|deployment|svc|service)/([a-z0-9-]+)", line):
            require(name in names.get(kinds[short], set()),
                    f"{where}: {short}/{name} (in {RELEASE_NS}) is not rendered by the chart: "
                    f"{sorted(names.get(kinds[short], set()))}")
        for name in re.findall(r"get lease ([a-z0-9-]+)", line):
            require(name == defaults["leaderElection"]["leaseName"], f"{where}: lease {name}")
        for name in re.findall(r"system:serviceaccount:" + RELEASE_NS + r":([a-z0-9-]+)", line):
            require(name in names.get("ServiceAccount", set()), f"{where}: ServiceAccount {name}")
    for name in re.findall(r"`([a-z0-9-]+-metrics)` Service", text):
        require(name in names.get("Service", set()), f"{where}: Service {name}")

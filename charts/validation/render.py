"""The chart rendered by Helm's own library (helm-python-sdk): lint, the values schema, and
the render scenarios every manifest check runs on."""

from __future__ import annotations

import json

import helm_python as helm

from .common import (CHART, KUBE_OLDEST, KUBE_TARGET, RELEASE, RELEASE_NS, CheckFailed,
                     load_yaml_docs, merged, require)
from .runner import Runner

SCENARIOS: dict[str, dict] = {
    "defaults": {},
    "namespaced+servicemonitor+networkpolicy+2-replicas": {
        "namespaced": True,
        "watchNamespace": "transit",
        "replicaCount": 2,
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "podMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"},
                           "additionalAlertLabels": {"team": "transit", "severity": "page"}},
        "grafanaDashboard": {"enabled": True},
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": "monitoring"}}}],
        },
        "podDisruptionBudget": {"minAvailable": 1},
        "maxConcurrentRemediations": 4,
        "logFormat": "text",
    },
    "cluster+no-leader-election+digest+custom-sa": {
        "leaderElection": {"enabled": False},
        "image": {"repository": "registry.internal/sw/operator",
                  "digest": "sha256:" + "a" * 64},
        "streamImage": {"repository": "registry.internal/sw/stallwatch", "tag": "0.1.0-rc1"},
        "serviceAccount": {"create": True, "name": "sw-operator",
                           "annotations": {"example.com/role": "operator"}},
        "extraEnv": [{"name": "RUST_LOG", "value": "info,transit_operator=debug"}],
        "fullnameOverride": "sw",
        "podDisruptionBudget": {"enabled": False},
        "podMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True, "namespace": "monitoring",
                           "runbookBaseUrl": "https://runbooks.internal/stallwatch.html"},
        "grafanaDashboard": {"enabled": True, "namespace": "grafana",
                             "labels": {"grafana_dashboard": "stallwatch"},
                             "annotations": {"grafana_folder": "Stallwatch"}},
        "webhook": {"url": "https://127.0.0.1:9443", "timeoutSeconds": 3},
    },
    "namespaced-in-release-namespace": {"namespaced": True, "webhook": {"enabled": False}},
}

# Values the chart's schema must refuse, with a fragment of the expected error.
BAD_VALUES = [
    ({"replicaCount": "two"}, "replicaCount"),
    ({"logFormat": "xml"}, "logFormat"),
    ({"leaderElection": {"enabled": "yes"}}, "enabled"),
    ({"unknownKey": 1}, "unknownKey"),
    ({"image": {"repository": "x", "digest": "latest"}}, "digest"),
    ({"maxConcurrentRemediations": 0}, "maxConcurrentRemediations"),
    ({"prometheusRule": {"runbookBaseUrl": "https://x/README.md#alerts"}}, "runbookBaseUrl"),
    ({"grafanaDashboard": {"namespace": "Not_A_Namespace"}}, "namespace"),
]


class Rendered:
    def __init__(self, name: str, values: dict, files: dict[str, str], effective: dict):
        self.name = name
        self.values = values
        self.effective = effective  # chart defaults coalesced with the overrides
        self.notes = files.pop(f"{CHART.name}/templates/NOTES.txt", "")
        self.docs: list[tuple[str, dict]] = []
        for path, text in sorted(files.items()):
            for doc in load_yaml_docs(text):
                self.docs.append((path, doc))

    def of_kind(self, kind: str) -> list[dict]:
        return [d for _, d in self.docs if d["kind"] == kind]

    def one(self, kind: str) -> dict:
        found = self.of_kind(kind)
        require(len(found) == 1, f"{self.name}: expected one {kind}, found {len(found)}")
        return found[0]


def check_lint(runner: Runner, chart_dir: str) -> None:
    """`helm lint --strict` for each scenario on the target version, and the defaults on the
    oldest supported one."""
    runs = [(item, KUBE_TARGET) for item in SCENARIOS.items()] + [(("defaults", {}), KUBE_OLDEST)]
    for (name, values), kube in runs:
        def lint(values=values, kube=kube):
            report = helm.lint(chart_dir, values, strict=True, namespace=RELEASE_NS,
                               kube_version=f"v{kube}")
            problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
            require(not problems and not report.get("errors"),
                    f"{problems} {report.get('errors')}")
            for m in report.get("messages", []):
                runner.note(f"helm lint: {m.get('path')}: {m.get('error')}")
        runner.check(f"helm lint --strict --kube-version v{kube} [{name}]", lint)


def check_bad_values(runner: Runner, chart: helm.Chart) -> None:
    """The values schema refuses bad values, naming the offending key."""
    for bad, fragment in BAD_VALUES:
        def refuse(bad=bad, fragment=fragment):
            try:
                chart.render(bad, name=RELEASE, namespace=RELEASE_NS, is_install=True)
            except helm.HelmValuesError as e:
                require(fragment in str(e), f"refused, but the message lacks {fragment!r}: {e}")
                return
            raise CheckFailed("accepted")
        runner.check(f"values.schema.json refuses {json.dumps(bad)}", refuse)


def render_scenarios(runner: Runner, chart: helm.Chart) -> list[Rendered]:
    """Every scenario that renders (a failed render is a failed check)."""
    rendered: list[Rendered] = []
    for name, values in SCENARIOS.items():
        def render(name=name, values=values):
            files = chart.render(values, name=RELEASE, namespace=RELEASE_NS, is_install=True)
            r = Rendered(name, values, files, merged(chart.values, values))
            require(r.docs, "rendered nothing")
            return r
        r = runner.check(f"render [{name}]", render)
        if r:
            rendered.append(r)
    return rendered

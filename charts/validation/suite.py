"""The order the checks run in: every check is registered here, by name."""

from __future__ import annotations

import tomllib

import helm_python as helm

from . import (alerts, cli, crd as crd_checks, dashboard, docs, dockerfile, examples, exported,
               manifests, pss, rbac)
from .common import CHART, CHART_README, KUBE_VERSIONS, ROOT, require
from .kube import kube_validate, kube_validate_self_test
from .render import Rendered, check_bad_values, check_lint, render_scenarios
from .runner import Runner


def run(runner: Runner) -> None:
    chart: helm.Chart | None = runner.check("chart loads", lambda: helm.Chart.load(str(CHART)))
    if chart is None:
        return
    runner.check("Chart.yaml appVersion matches the workspace version",
                 lambda: check_chart_metadata(chart))
    check_lint(runner, str(CHART))
    check_bad_values(runner, chart)
    rendered = render_scenarios(runner, chart)
    check_rendered(runner, chart, rendered)

    runner.check("the PSS checker catches violations (self-test)", pss.pss_self_test)
    runner.check("kubernetes-validate refuses an unknown field and a wrong type (self-test)",
                 lambda: kube_validate_self_test(runner.note))
    runner.check("the RBAC check catches missing, extra and wildcard permissions, a Lease "
                 "mismatch and an escalation (self-test)",
                 lambda: rbac.rbac_self_test(rendered[0] if rendered else None))
    runner.check("operator and sidecar CLIs (--help): the chart sets only env vars "
                 "transit-operator reads; the NetworkPolicy admits the sidecar's admin port",
                 lambda: cli.check_cli(rendered))

    runner.check("chart CRD copy is byte-identical to crds/transitstream.yaml",
                 crd_checks.check_crd_copy)
    crd = None
    if crd_checks.CRD_SOURCE.exists():
        crd = runner.check("CRD is a valid apiextensions.k8s.io/v1 CRD (group, kind, ts, status)",
                           lambda: crd_checks.load_crd(runner.note))
    examples.check_examples(runner, crd)

    runner.check("Dockerfile lint (multi-stage, targets, non-root, no ADD URLs, workspace "
                 "binaries)", dockerfile.lint_dockerfile)
    runner.check("Dockerfile passes hadolint (every level, info included)", dockerfile.hadolint)
    check_docs(runner, chart)
    check_monitoring(runner, chart)
    if crd is not None:
        crd_checks.note_cel_coverage(crd, runner.note)


def check_chart_metadata(chart: helm.Chart) -> None:
    meta = chart.metadata
    ws_version = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]
    require(meta.get("appVersion") == ws_version,
            f"Chart.yaml appVersion {meta.get('appVersion')!r} != workspace version {ws_version!r}")
    require(meta.get("apiVersion") == "v2", "Chart.yaml apiVersion must be v2")
    require(chart.schema is not None, "values.schema.json missing")


def check_rendered(runner: Runner, chart: helm.Chart, rendered: list[Rendered]) -> None:
    """The per-scenario checks of the rendered manifests."""
    arch_env = manifests.operator_env_vars()
    needs = runner.check("transit-operator rbac prints the operator's, the elector's and the "
                         "sidecar's rules (no wildcards)", rbac.load_operator_rbac)
    for r in rendered:
        runner.check(f"manifests validate against Kubernetes {', '.join(KUBE_VERSIONS)} schemas "
                     f"(strict) [{r.name}]",
                     lambda r=r: [kube_validate(d, p, runner.note) for p, d in r.docs])
        runner.check(f"every manifest is namespaced to the release or cluster-scoped [{r.name}]",
                     lambda r=r: manifests.check_namespaces(r))
        runner.check(f"operator Deployment: image, env (docs/architecture.md), probes, "
                     f"replicas [{r.name}]",
                     lambda r=r: manifests.check_deployment(r, chart.metadata, arch_env))
        runner.check(f"PSS restricted + readOnlyRootFilesystem on every pod [{r.name}]",
                     lambda r=r: pss.check_pss(r))
        runner.check(f"RBAC: no wildcards, exactly what transit-operator rbac prints, scope "
                     f"[{r.name}]", lambda r=r: rbac.check_rbac(r, needs))
        runner.check(f"Service, PDB, NetworkPolicy, ServiceMonitor select the operator pods "
                     f"[{r.name}]", lambda r=r: manifests.check_selectors(r))
        runner.check(f"sidecar-injection webhook: never blocks a pod, reaches the operator "
                     f"[{r.name}]", lambda r=r: manifests.check_webhook(r))
        runner.check(f"NOTES.txt says what to do next [{r.name}]",
                     lambda r=r: manifests.check_notes(r))
        runner.check(f"PrometheusRule, PodMonitor and dashboard ConfigMap as asked (namespace, "
                     f"labels, severity, runbook_url) [{r.name}]",
                     lambda r=r: (alerts.check_objects(r), dashboard.check_configmap(r)))


def check_docs(runner: Runner, chart: helm.Chart) -> None:
    defaults = chart.values
    runner.check("README.md install sections match the chart",
                 lambda: docs.check_readme(chart, defaults))
    runner.check("charts/stallwatch/README.md documents every value with its real default",
                 lambda: docs.check_values_table(CHART_README.read_text(), defaults,
                                                 "charts/stallwatch/README.md", require_all=True))
    runner.check("charts/stallwatch/README.md commands match the chart",
                 lambda: (docs.check_helm_commands(chart, CHART_README.read_text(), "chart README"),
                          docs.check_object_refs(chart, CHART_README.read_text(), "chart README")))


def check_monitoring(runner: Runner, chart: helm.Chart) -> None:
    """The alert rules (promtool), their runbooks, the dashboard, and the metric names both use
    against what the binaries export."""
    runner.check("alert rules as the chart renders them pass `promtool check rules`",
                 lambda: alerts.check_rules(chart))
    runner.check("`promtool test rules` charts/tests/alerts.test.yaml: every alert fires on a "
                 "stalled series and stays quiet on a healthy one",
                 lambda: alerts.test_rules(chart))
    runner.check("every alert's firing test fails when that alert never fires (mutation)",
                 lambda: alerts.firing_tests_can_fail(chart))
    runner.check("every alert's runbook_url is its runbook in the chart README (means, look "
                 "at, do)", lambda: alerts.check_runbooks(chart))
    runner.check("the PodMonitor selects the operator's stream pods by their label and ports",
                 alerts.check_sources)
    runner.check("Grafana dashboard: valid JSON, panels on ${datasource}, variables defined",
                 dashboard.check_dashboard)
    runner.check("the metric-name check catches unknown metrics and labels (self-test)",
                 exported.names_self_test)
    found = runner.check("/metrics of transit-sidecar fed by transit-broadcaster, and "
                         "`transit-operator metrics`, parse as OpenMetrics",
                         exported.exported_metrics)
    if found is not None:
        runner.check("the alert rules and the dashboard use only metrics and labels the "
                     "binaries export",
                     lambda: exported.check_names(
                         {**alerts.rule_exprs(chart), **dashboard.queries(dashboard.load())},
                         found))

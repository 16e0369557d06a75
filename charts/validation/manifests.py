"""The rendered objects: namespaces, the operator Deployment, selectors, NOTES.txt."""

from __future__ import annotations

import re
from typing import Any

from .common import ARCHITECTURE, RELEASE_NS, ROOT, require
from .render import Rendered


def operator_env_vars() -> list[str]:
    """The operator's env vars from the `transit-operator run` block of docs/architecture.md."""
    text = ARCHITECTURE.read_text()
    m = re.search(r"transit-operator run \[OPTIONS\]\n(.*?)```", text, re.S)
    if not m:
        return []
    return re.findall(r"^\s+--\S+(?: \S+)?\s+([A-Z][A-Z0-9_]+)", m.group(1), re.M)


CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "MutatingWebhookConfiguration"}
# Cluster-scoped even in namespaced mode: the webhook's registration (its configuration and the
# ClusterRole that keeps the configuration's caBundle current).
WEBHOOK_CLUSTER_KINDS = {"MutatingWebhookConfiguration", "ClusterRole", "ClusterRoleBinding"}


def is_webhook_cluster_object(d: dict) -> bool:
    return d["kind"] in WEBHOOK_CLUSTER_KINDS and (
        d["kind"] == "MutatingWebhookConfiguration" or d["metadata"]["name"].endswith("-webhook"))


def check_namespaces(r: Rendered) -> None:
    watch = r.effective.get("watchNamespace") or RELEASE_NS
    for path, d in r.docs:
        ns = d["metadata"].get("namespace")
        if d["kind"] in CLUSTER_SCOPED:
            require(ns is None, f"{path}: cluster-scoped {d['kind']} has a namespace")
            require(not r.effective["namespaced"] or is_webhook_cluster_object(d),
                    f"{path}: {d['kind']} rendered in namespaced mode")
        elif d["kind"] == "PrometheusRule":
            want = r.effective["prometheusRule"]["namespace"] or RELEASE_NS
            require(ns == want, f"{path}: PrometheusRule in {ns!r}, want {want}")
        elif d["kind"] == "ConfigMap" and path.endswith("grafana-dashboard.yaml"):
            want = r.effective["grafanaDashboard"]["namespace"] or RELEASE_NS
            require(ns == want, f"{path}: dashboard ConfigMap in {ns!r}, want {want}")
        elif d["kind"] in ("Role", "RoleBinding") and r.effective["namespaced"] \
                and not d["metadata"]["name"].endswith(("-leader-election", "-webhook-certs", "-owner")):
            require(ns == watch, f"{path}: {d['kind']} in {ns}, want the watched namespace {watch}")
        else:
            require(ns == RELEASE_NS, f"{path}: {d['kind']} in namespace {ns!r}, want {RELEASE_NS}")


def container_env(c: dict) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env") or []}


def check_deployment(r: Rendered, meta: dict, arch_env: list[str]) -> None:
    dep = r.one("Deployment")
    v = r.effective
    require(dep["spec"]["replicas"] == v["replicaCount"], "replicas")
    pod = dep["spec"]["template"]["spec"]
    require(len(pod["containers"]) == 1, "one container")
    c = pod["containers"][0]
    img = v["image"]
    want_image = (f"{img['repository']}@{img['digest']}" if img.get("digest")
                  else f"{img['repository']}:{img.get('tag') or meta['appVersion']}")
    require(c["image"] == want_image, f"image {c['image']} != {want_image}")
    require(c.get("args") == ["run"], f"args {c.get('args')}: want ['run'] (transit-operator run)")
    env = container_env(c)
    require(arch_env, "could not read the operator's env vars from docs/architecture.md")
    missing = [e for e in arch_env if e not in env]
    require(not missing, f"env vars from docs/architecture.md missing: {missing}")
    watch = (v.get("watchNamespace") or RELEASE_NS) if v["namespaced"] else ""
    require(env["WATCH_NAMESPACE"] == watch, f"WATCH_NAMESPACE {env['WATCH_NAMESPACE']!r} != {watch!r}")
    s = v["streamImage"]
    want_default = (f"{s['repository']}@{s['digest']}" if s.get("digest")
                    else f"{s['repository']}:{s.get('tag') or meta['appVersion']}")
    require(env["DEFAULT_IMAGE"] == want_default, f"DEFAULT_IMAGE {env['DEFAULT_IMAGE']}")
    require(env["LEADER_ELECTION"] == str(v["leaderElection"]["enabled"]).lower(), "LEADER_ELECTION")
    require(env["LEASE_NAME"] == v["leaderElection"]["leaseName"], "LEASE_NAME")
    require(env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}},
            "POD_NAMESPACE must come from the downward API")
    require(env["MAX_CONCURRENT_REMEDIATIONS"] == str(v["maxConcurrentRemediations"]),
            "MAX_CONCURRENT_REMEDIATIONS")
    addr = env["OPERATOR_HTTP_ADDR"]
    port = int(addr.rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        require(get["path"] == path, f"{probe} path {get['path']}")
        pp = ports.get(get["port"], get["port"])
        require(pp == port == 8080, f"{probe} port {pp}, HTTP addr port {port}, want 8080")
    sa = pod["serviceAccountName"]
    if v["serviceAccount"]["create"]:
        require(any(d["metadata"]["name"] == sa for d in r.of_kind("ServiceAccount")),
                f"ServiceAccount {sa} not rendered")
    if v["replicaCount"] > 1:
        require(v["leaderElection"]["enabled"] or "WARNING" in r.notes,
                "several replicas without leader election and no warning")


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def check_selectors(r: Rendered) -> None:
    dep = r.one("Deployment")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    require(matches(dep["spec"]["selector"]["matchLabels"], labels), "Deployment selector")
    cports = {p["name"] for c in dep["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    services = r.of_kind("Service")
    webhook_on = r.effective["webhook"]["enabled"]
    require(len(services) == (2 if webhook_on else 1),
            f"{len(services)} Services: want the metrics Service (and the webhook's when enabled)")
    for svc in services:
        require(matches(svc["spec"]["selector"], labels), f"Service {svc['metadata']['name']} selector")
        for p in svc["spec"]["ports"]:
            require(p["targetPort"] in cports, f"Service targetPort {p['targetPort']}")
    svc = next(s for s in services if s["metadata"]["name"].endswith("-metrics"))
    pdbs = r.of_kind("PodDisruptionBudget")
    require(len(pdbs) == (1 if r.effective["podDisruptionBudget"]["enabled"] else 0), "PDB count")
    for pdb in pdbs:
        require(matches(pdb["spec"]["selector"]["matchLabels"], labels), "PDB selector")
        require(("minAvailable" in pdb["spec"]) != ("maxUnavailable" in pdb["spec"]),
                "PDB must set exactly one of minAvailable/maxUnavailable")
        min_avail = pdb["spec"].get("minAvailable")
        require(not isinstance(min_avail, int) or min_avail < r.effective["replicaCount"],
                f"PDB minAvailable {min_avail} with {r.effective['replicaCount']} replica(s) "
                f"blocks every node drain")
    nps = r.of_kind("NetworkPolicy")
    require(len(nps) == (1 if r.effective["networkPolicy"]["enabled"] else 0), "NetworkPolicy count")
    for np in nps:
        require(matches(np["spec"]["podSelector"]["matchLabels"], labels), "NetworkPolicy selector")
        ports = [p["port"] for rule in np["spec"]["ingress"] for p in rule["ports"]]
        require("http" in ports or 8080 in ports, "NetworkPolicy does not admit the metrics port")
        egress = [p["port"] for rule in np["spec"]["egress"] for p in rule.get("ports", [])]
        require(53 in egress and 443 in egress and 8081 in egress,
                f"NetworkPolicy egress {egress} must allow DNS, the API server and the sidecar admin API")
        require(not webhook_on or "webhook" in ports,
                "NetworkPolicy does not admit the API server's calls to the webhook")
    sms = r.of_kind("ServiceMonitor")
    require(len(sms) == (1 if r.effective["serviceMonitor"]["enabled"] else 0), "ServiceMonitor count")
    for sm in sms:  # structural: kubernetes-validate has no schema for this CRD kind
        require(sm["apiVersion"] == "monitoring.coreos.com/v1", "ServiceMonitor apiVersion")
        require(matches(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"]),
                "ServiceMonitor selects no Service")
        sports = {p["name"] for p in svc["spec"]["ports"]}
        for ep in sm["spec"]["endpoints"]:
            require(ep["port"] in sports, f"ServiceMonitor port {ep['port']} not on the Service")
            require(ep.get("path") == "/metrics", "ServiceMonitor path")
        require(sm["spec"]["namespaceSelector"]["matchNames"] == [RELEASE_NS], "namespaceSelector")


def check_notes(r: Rendered) -> None:
    require("kubectl get ts" in r.notes, "NOTES.txt does not show `kubectl get ts`")
    for ex in re.findall(r"examples/[\w./-]+\.yaml", r.notes):
        require((ROOT / ex).exists(), f"NOTES.txt names {ex}, which does not exist")
    require("{{" not in r.notes and "<no value>" not in r.notes, "NOTES.txt has unrendered text")


def check_webhook(r: Rendered) -> None:
    """The sidecar-injection webhook can never block a pod and calls the operator where it
    listens: failurePolicy Ignore, sideEffects None, a short timeout, opted-in pods only, a
    namespace selector, and the Service (or URL) reaching the container port WEBHOOK_ADDR names."""
    v = r.effective["webhook"]
    configs = r.of_kind("MutatingWebhookConfiguration")
    if not v["enabled"]:
        require(not configs, "a MutatingWebhookConfiguration with the webhook disabled")
        return
    require(len(configs) == 1, f"{len(configs)} MutatingWebhookConfigurations")
    hooks = configs[0]["webhooks"]
    require(len(hooks) == 1, f"{len(hooks)} webhooks")
    w = hooks[0]
    require(w["failurePolicy"] == "Ignore", "failurePolicy must be Ignore: a down operator never blocks a pod")
    require(w["sideEffects"] == "None", "sideEffects must be None")
    require(1 <= w["timeoutSeconds"] <= 10, f"timeoutSeconds {w['timeoutSeconds']}: keep it short")
    require(w.get("namespaceSelector"), "no namespaceSelector")
    require(w["objectSelector"] == {"matchExpressions": [
        {"key": "stallwatch.io/inject", "operator": "Exists"}]}, "objectSelector: opted-in pods only")
    require(w["rules"] == [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                            "resources": ["pods"], "scope": "Namespaced"}], f"rules {w['rules']}")
    dep = r.one("Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    env = container_env(c)
    port = int(env["WEBHOOK_ADDR"].rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    require(ports.get("webhook") == port == v["port"], f"webhook port {ports.get('webhook')} vs {port}")
    cc = w["clientConfig"]
    if v["url"]:
        require(cc.get("url", "").startswith(v["url"].rstrip("/")) and cc["url"].endswith("/mutate-pods"),
                f"clientConfig.url {cc.get('url')}")
        return
    svc = cc["service"]
    require(svc["path"] == "/mutate-pods", "path")
    require(env["WEBHOOK_SERVICE"] == svc["name"], "WEBHOOK_SERVICE names another Service")
    target = next((s for s in r.of_kind("Service") if s["metadata"]["name"] == svc["name"]), None)
    require(target is not None and target["metadata"]["namespace"] == svc["namespace"],
            f"clientConfig.service {svc} does not exist")
    sp = next((p for p in target["spec"]["ports"] if p["port"] == svc["port"]), None)
    require(sp is not None and sp["targetPort"] == "webhook", f"Service port {svc['port']} does not reach the webhook")
    require(env["WEBHOOK_CONFIGURATION"] == configs[0]["metadata"]["name"],
            "WEBHOOK_CONFIGURATION names another configuration")

"""Kubernetes JSON schemas (kubernetes-validate, offline), strict: unknown fields fail."""

from __future__ import annotations

import copy
import functools
from typing import Callable

import kubernetes_validate.utils as kv

from .common import KUBE_VERSIONS, CheckFailed

# Each schema file is parsed once, however many documents use it.
kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)

# Kinds kubernetes-validate has no schema for, with the reason. Anything else without a schema
# is a failure.
SKIP_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"):
        "a Prometheus Operator CRD, not a built-in type: kubernetes-validate ships no schema; "
        "checked structurally against the metrics Service instead",
    ("monitoring.coreos.com/v1", "PodMonitor"):
        "a Prometheus Operator CRD: checked structurally against the operator's stream pods "
        "instead (alerts.py)",
    ("monitoring.coreos.com/v1", "PrometheusRule"):
        "a Prometheus Operator CRD: its rules are checked by promtool instead (alerts.py)",
    ("stallwatch.io/v1alpha1", "TransitStream"):
        "our CRD: validated against its own openAPIV3Schema instead",
}


def kube_validate(doc: dict, where: str, note: Callable[[str], None]) -> None:
    """Validate `doc` against every supported Kubernetes version; a skipped kind is noted."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in SKIP_KINDS:
        note(f"{key[1]} ({key[0]}) not validated by kubernetes-validate: {SKIP_KINDS[key]}")
        return
    for version in KUBE_VERSIONS:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            raise CheckFailed(f"{where}: {doc['kind']}/{doc['metadata'].get('name')} "
                              f"invalid for Kubernetes {version}: {path}: {e.message}")
        except kv.SchemaNotFoundError as e:
            raise CheckFailed(f"{where}: {e.message}")


def kube_validate_self_test(note: Callable[[str], None]) -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"ports": [{"port": 80}]}}
    kube_validate(svc, "self-test", note)
    for name, bad in (("unknown field", {"portz": 80}), ("wrong type", {"port": "eighty"})):
        broken = copy.deepcopy(svc)
        broken["spec"]["ports"][0].update(bad)
        if name == "unknown field":
            broken["spec"]["ports"][0].pop("port")
            broken["spec"]["ports"][0]["port"] = 80
        try:
            kube_validate(broken, "self-test", note)
        except CheckFailed:
            continue
        raise CheckFailed(f"{name} not caught")

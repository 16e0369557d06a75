"""The CRD: openAPIV3Schema -> JSON Schema with the API server's structural rules, and CEL."""

from __future__ import annotations

import copy
import json
import re
from typing import Any, Callable, Iterable

import jsonschema

from .common import CRD_COPY, CRD_SOURCE, ROOT, load_yaml_docs, require
from .kube import kube_validate

try:  # CEL evaluation is best effort: a rule cel-python cannot evaluate is reported, not run.
    import celpy
except ImportError:  # pragma: no cover - requirements.txt pins it
    celpy = None


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


def check_crd_copy() -> None:
    require(CRD_SOURCE.exists(), f"{CRD_SOURCE.relative_to(ROOT)} does not exist")
    require(CRD_COPY.exists(), f"{CRD_COPY.relative_to(ROOT)} does not exist (copy it)")
    require(CRD_SOURCE.read_bytes() == CRD_COPY.read_bytes(),
            f"{CRD_COPY.relative_to(ROOT)} differs from {CRD_SOURCE.relative_to(ROOT)}: "
            f"cp {CRD_SOURCE.relative_to(ROOT)} {CRD_COPY.relative_to(ROOT)}")


def load_crd(note: Callable[[str], None]) -> Crd:
    """crds/transitstream.yaml, checked to be the CRD the operator serves, ready to validate."""
    docs = load_yaml_docs(CRD_SOURCE.read_text())
    require(len(docs) == 1, f"expected one document, found {len(docs)}")
    doc = docs[0]
    kube_validate(doc, str(CRD_SOURCE.relative_to(ROOT)), note)
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


def note_cel_coverage(crd: Crd, note: Callable[[str], None]) -> None:
    """How many of the CRD's CEL rules the examples exercised, and which could not run."""
    rules = set(cel_rules(crd.doc))
    ran = {r for r, p in crd.cel.compiled.items() if p is not None}
    note(f"CEL: the CRD has {len(rules)} distinct x-kubernetes-validations rules; "
         f"{len(ran & rules)} were evaluated with cel-python on the examples, "
         f"{len(crd.cel.unevaluable)} could not be evaluated"
         + (f"; never exercised: {sorted(rules - ran)}" if rules - ran else ""))
    for u in sorted(crd.cel.unevaluable):
        note(f"CEL rule not evaluated by cel-python (the API server evaluates it): {u}")

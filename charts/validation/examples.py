"""examples/: each validates (Kubernetes schemas; TransitStreams against the CRD's schema and
CEL rules), together they cover the features; examples/invalid/: each is refused as it says."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

from .common import EXAMPLES, INVALID, ROOT, CheckFailed, load_yaml_docs, require
from .crd import Crd, cel_messages
from .kube import kube_validate
from .runner import Runner


def check_examples(runner: Runner, crd: Crd | None) -> None:
    example_files = sorted(EXAMPLES.glob("*.yaml"))
    runner.check("examples exist", lambda: require(len(example_files) >= 4,
                                                   f"only {len(example_files)} examples"))
    for f in example_files:
        runner.check(f"example {f.relative_to(ROOT)} validates (Kubernetes schemas; "
                     f"TransitStream: CRD schema + CEL)",
                     lambda f=f: check_example(f, crd, runner.note))
    runner.check("example set covers synthetic, NATS + Secret, Observe, templated dump volume "
                 "+ minidump, workloadRef + inject label", lambda: check_example_coverage(example_files))

    invalid_files = sorted(INVALID.glob("*.yaml"))
    runner.check("invalid examples exist", lambda: require(len(invalid_files) >= 3,
                                                           f"only {len(invalid_files)}"))
    for f in invalid_files:
        runner.check(f"invalid example {f.relative_to(ROOT)} is refused with its expected "
                     f"message", lambda f=f: check_invalid_example(f, crd, runner.note))


def transit_streams(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d.get("kind") == "TransitStream"]


def check_example(f: Path, crd: Crd | None, note: Callable[[str], None]) -> None:
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
            kube_validate(d, str(f.relative_to(ROOT)), note)
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
    require(any('"workloadRef"' in s and "stallwatch.io/inject" in texts[n] for n, s in flat.items()),
            "no workloadRef example with the stallwatch.io/inject label on a pod template")


def check_invalid_example(f: Path, crd: Crd | None, note: Callable[[str], None]) -> None:
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

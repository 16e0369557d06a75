"""Paths, the release under test, and helpers every check module uses."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
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


class CheckFailed(Exception):
    pass


def require(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


def load_yaml_docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def merged(values: dict, override: dict) -> dict:
    out = copy.deepcopy(values)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merged(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def rust_sources(crate: str) -> dict[str, str]:
    src = ROOT / crate / "src"
    return {str(f.relative_to(ROOT)): f.read_text() for f in sorted(src.rglob("*.rs"))}

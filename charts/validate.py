#!/usr/bin/env python3
"""Offline validation of everything Stallwatch ships for Kubernetes.

Runs with no cluster and no network (scripts/test.sh runs it from .venv, which scripts/setup.sh
fills from charts/requirements.txt, after building the binaries):

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
- checks RBAC against the built operator (`transit-operator rbac`): no wildcards, exactly the
  permissions it prints, the Lease Role exactly when leader election is on, the sidecar Role's
  permissions held by the operator (escalation prevention);
- checks the env vars and ports the chart sets against the binaries' `--help`;
- runs `promtool check rules` and `promtool test rules` (charts/tests/alerts.test.yaml) on the
  alert rules as the chart renders them, with a mutation run proving each alert's firing test
  can fail, and checks each alert's runbook in the chart README;
- checks the Grafana dashboard JSON, and that every metric and label the alert rules and the
  dashboard use is exported by the real binaries (sidecar and broadcaster scraped while
  running, parsed with prometheus-client's OpenMetrics parser; `transit-operator metrics`);
- lints the Dockerfile statically (there is no Docker engine here) and with hadolint;
- checks the README's install section and the chart README against the chart's real values.

The checks live in the `validation` package next to this file (its docstring says which module
holds what). Prints one line per check and ends with `chart-validation: N passed, M failed`;
exits 1 on any failure.
"""

import importlib.util
import os
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = Path(__file__).resolve().parent
VENV_PYTHON = HERE.parent / ".venv" / "bin" / "python"
# `python3 charts/validate.py` works too: without the pinned tools, rerun under the .venv
# scripts/setup.sh made.
if importlib.util.find_spec("helm_python") is None and VENV_PYTHON.exists() \
        and Path(sys.prefix).resolve() != VENV_PYTHON.parent.parent.resolve():
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), __file__, *sys.argv[1:]])
sys.path.insert(0, str(HERE))

from validation.runner import Runner  # noqa: E402
from validation.suite import run  # noqa: E402


def main() -> int:
    runner = Runner()
    run(runner)
    return runner.finish()


if __name__ == "__main__":
    sys.exit(main())

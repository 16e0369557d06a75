"""Offline validation of everything Stallwatch ships for Kubernetes (`charts/validate.py`).

Where a change goes:

- `runner.py`: the `Runner` that runs named checks, counts them and prints the summary;
- `common.py`: paths, the release under test, `require`/`CheckFailed`, YAML helpers;
- `render.py`: Helm (helm-python-sdk): lint, the values schema, the render scenarios;
- `kube.py`: Kubernetes JSON schemas (kubernetes-validate, offline);
- `manifests.py`: the rendered objects: namespaces, the operator Deployment, selectors, NOTES;
- `pss.py`: Pod Security Standard "restricted" plus a read-only root filesystem;
- `binaries.py`: what the built binaries say about themselves (`transit-operator rbac`,
  `--help`);
- `rbac.py`: the chart's RBAC against `transit-operator rbac`;
- `cli.py`: the chart's env vars and ports against the binaries' CLIs;
- `crd.py`: the CRD's openAPIV3Schema (jsonschema) and CEL rules (cel-python);
- `examples.py`: examples/ and examples/invalid/;
- `dockerfile.py`: the Dockerfile (static checks and hadolint);
- `docs.py`: README.md and the chart README against the chart;
- `alerts.py`: the PrometheusRule and PodMonitor, promtool (check and unit tests), runbooks;
- `dashboard.py`: the Grafana dashboard JSON and its ConfigMap;
- `exported.py`: the metrics the running binaries export, and the names PromQL uses;
- `suite.py`: the order the checks run in (a new check is registered there).
"""

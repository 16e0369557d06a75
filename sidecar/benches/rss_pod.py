#!/usr/bin/env python3
"""Steady RSS of transit-sidecar builds side by side, each run as it runs in its pod.

What `cargo bench -p transit-sidecar` (steady RSS) leaves out and a pod has: publishing to the
API server over TLS with the in-cluster config (KUBERNETES_SERVICE_HOST and the ServiceAccount
files under /var/run/secrets, here a private tmpfs on /run in a mount namespace), JSON logs, a
real broadcaster reporting (`transit-broadcaster serve`, synthetic source, one stream every
250 ms, as `examples/minimal-synthetic.yaml`), the kubelet's probes of /healthz every 5 s, and
the binary's file written in large chunks as an image layer's unpacking writes it (`--fresh`),
not as the linker wrote it: this kernel maps a page-cache folio whole on a fault, so how the
file was written changes VmRSS.

The API server is a stand-in (HTTPS with a CA made here; PATCH pods/status answers a whole
Pod, POST events answers the Event): enough for the sidecar's client code and TLS to run.

Every build runs at the same time against its own broadcaster, so the load and the machine's
state are the same for all. Needs root (mount namespace), python3, openssl, unshare.

    python3 sidecar/benches/rss_pod.py --broadcaster target/debug/transit-broadcaster \\
        --fresh main=/tmp/main-sidecar mine=target/small/transit-sidecar [--secs 40]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

NS = "journey-minimal"
POD = "demo-6d9c7b9f8-x2x4k"
UID = "3f9a0b2c-1d2e-4f5a-8b7c-9d0e1f2a3b4c"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certs(d: Path) -> None:
    """A CA and a server certificate for 127.0.0.1 signed by it (webpki refuses a CA as the
    end entity)."""
    def run(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, cwd=d)

    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=rss-bench-ca")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=kubernetes")
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:kubernetes.default.svc\n"
                           "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext")


def pod_json() -> dict:
    """A Pod as the API server answers a status patch of the operator's pod (both containers,
    its volumes, managed fields): the sidecar's client reads the whole answer."""
    now = "2026-12-06T21:00:00Z"
    container = lambda name, args, ports: {  # noqa: E731
        "name": name, "image": "localhost/stallwatch/stallwatch:0.1.0",
        "command": [f"/usr/local/bin/transit-{name}"], "args": args,
        "envFrom": [{"configMapRef": {"name": "demo-config"}}],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}],
        "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in ports],
        "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "10m", "memory": "16Mi"}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": ports[0][0], "scheme": "HTTP"},
                          "periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 1, "successThreshold": 1},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                         {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": True}],
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }
    cond = lambda t, s="True": {"type": t, "status": s, "lastProbeTime": None, "lastTransitionTime": now}  # noqa: E731
    status = lambda name: {  # noqa: E731
        "name": name, "ready": True, "started": True, "restartCount": 0,
        "image": "localhost/stallwatch/stallwatch:0.1.0", "imageID": "sha256:" + "ab" * 32,
        "containerID": "containerd://" + "cd" * 32, "state": {"running": {"startedAt": now}},
        "lastState": {}, "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {
            "name": POD, "generateName": "demo-6d9c7b9f8-", "namespace": NS, "uid": UID,
            "resourceVersion": "4711", "creationTimestamp": now,
            "labels": {"app.kubernetes.io/name": "transit-broadcaster", "stallwatch.io/transitstream": "demo",
                       "pod-template-hash": "6d9c7b9f8"},
            "annotations": {"stallwatch.io/config-hash": "0" * 64},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "demo-6d9c7b9f8",
                                 "uid": "5" * 8 + "-0000-0000-0000-" + "5" * 12, "controller": True,
                                 "blockOwnerDeletion": True}],
            "managedFields": [
                {"manager": m, "operation": "Update", "apiVersion": "v1", "time": now, "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:status": {"f:conditions": {f'k:{{"type":"{t}"}}': {".": {}, "f:status": {}}
                                                            for t in ("Ready", "ContainersReady", "PodScheduled")}}},
                 "subresource": "status"}
                for m in ("kubelet", "transit-sidecar", "kube-controller-manager")
            ],
        },
        "spec": {
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                        {"name": "admin-token", "secret": {"secretName": "demo-admin", "defaultMode": 288}},
                        {"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}},
                        {"name": "dumps", "emptyDir": {"sizeLimit": "1Gi"}}],
            "containers": [container("broadcaster", ["serve"], [("grpc", 50051), ("metrics", 9090)]),
                           container("sidecar", ["run"], [("sidecar-http", 8080), ("sidecar-admin", 8081)])],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "demo", "serviceAccount": "demo", "nodeName": "stallwatch-node",
            "securityContext": {"fsGroup": 65532, "runAsUser": 65532, "runAsGroup": 65532},
            "schedulerName": "default-scheduler",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300}],
            "priority": 0, "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority",
            "readinessGates": [{"conditionType": "stallwatch.io/DispatchHealthy"}],
        },
        "status": {
            "phase": "Running",
            "conditions": [cond("PodReadyToStartContainers"), cond("Initialized"), cond("Ready"),
                           cond("ContainersReady"), cond("PodScheduled"), cond("stallwatch.io/DispatchHealthy"),
                           cond("stallwatch.io/DumpStorageReady")],
            "hostIP": "10.88.0.1", "hostIPs": [{"ip": "10.88.0.1"}], "podIP": "10.88.0.7",
            "podIPs": [{"ip": "10.88.0.7"}], "startTime": now,
            "containerStatuses": [status("broadcaster"), status("sidecar")], "qosClass": "Burstable",
        },
    }


class Api(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def log_message(self, *args) -> None:  # quiet
        pass

    def answer(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def count(self, what: str) -> None:
        with Api.lock:
            Api.counts[what] = Api.counts.get(what, 0) + 1

    def do_PATCH(self) -> None:  # noqa: N802
        self.body()
        if self.path.split("?")[0].endswith("/status") and "/pods/" in self.path:
            self.count("pod status patches")
            self.answer(200, pod_json())
        elif "/events/" in self.path:
            self.count("event patches")
            self.answer(200, {"kind": "Event", "apiVersion": "events.k8s.io/v1", "metadata": {"name": "e"}})
        else:
            self.answer(404, {"kind": "Status", "status": "Failure", "code": 404})

    def do_POST(self) -> None:  # noqa: N802
        body = self.body()
        if self.path.split("?")[0].endswith("/events"):
            self.count("events")
            ev = json.loads(body or b"{}")
            ev.setdefault("metadata", {}).update({"name": "e.1", "namespace": NS, "resourceVersion": "1", "uid": UID})
            self.answer(201, ev)
        else:
            self.answer(404, {"kind": "Status", "status": "Failure", "code": 404})

    def do_GET(self) -> None:  # noqa: N802
        self.answer(404, {"kind": "Status", "status": "Failure", "code": 404})


def serve_api(d: Path) -> int:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "server.crt", d / "server.key")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    httpd.daemon_threads = True
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd.server_address[1]


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def smaps(pid: int) -> list[tuple[str, int]]:
    """Resident KiB per mapping kind: a file's mappings per permission, unnamed anonymous
    mappings as one [anon] row."""
    totals: dict[str, int] = {}
    current = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        f = line.split()
        if f and "-" in f[0] and not f[0].endswith(":"):
            current = (f"{Path(f[5]).name} {f[1]}" if f[5].startswith("/") else f[5]) if len(f) > 5 else "[anon]"
        elif line.startswith("Rss:"):
            totals[current] = totals.get(current, 0) + int(f[1])
    return sorted(((k, v) for k, v in totals.items() if v), key=lambda kv: -kv[1])


class Pod:
    def __init__(self, label: str, binary: Path, broadcaster: Path, work: Path, api_port: int, fresh: bool):
        self.label = label
        self.dir = work / label
        self.dir.mkdir()
        if fresh:
            # Written in 1 MiB chunks into a new file, as an image layer is unpacked.
            copy = self.dir / "transit-sidecar"
            with open(binary, "rb") as src, open(copy, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            copy.chmod(0o755)
            binary = copy
        self.binary = binary
        (self.dir / "dumps").mkdir()
        (self.dir / "home").mkdir()
        token = self.dir / "admin-token"
        token.write_text("rss-bench-admin")
        sa = work / "sa"
        ingest, self.http, admin, grpc, bhttp, badmin = (free_port() for _ in range(6))
        env = {
            "PATH": "/usr/bin:/bin", "HOME": str(self.dir / "home"),
            "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(api_port),
            "POD_NAME": POD, "POD_NAMESPACE": NS, "POD_UID": UID, "NODE_NAME": "stallwatch-node",
            "SIDECAR_INGEST_ADDR": f"127.0.0.1:{ingest}", "SIDECAR_HTTP_ADDR": f"127.0.0.1:{self.http}",
            "SIDECAR_ADMIN_ADDR": f"127.0.0.1:{admin}",
            "SIDECAR_BROADCASTER_ADMIN_URL": f"http://127.0.0.1:{badmin}",
            "SIDECAR_STALL_AFTER": "2s", "SIDECAR_REPORT_TIMEOUT": "2s",
            "SIDECAR_DUMP_DIR": str(self.dir / "dumps"), "SIDECAR_ADMIN_TOKEN_FILE": str(token),
            "LOG_FORMAT": "json",
        }
        # The ServiceAccount files where the in-cluster config reads them, on a private /run.
        script = ("mount -t tmpfs -o size=1m tmpfs /run && mkdir -p /run/secrets/kubernetes.io && "
                  f"cp -r {sa} /run/secrets/kubernetes.io/serviceaccount && exec \"$0\" run")
        self.log = open(self.dir / "sidecar.log", "wb")
        self.sidecar = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(binary)],
                                        env=env, stdout=self.log, stderr=self.log)
        benv = {
            "PATH": "/usr/bin:/bin", "BROADCASTER_GRPC_ADDR": f"127.0.0.1:{grpc}",
            "BROADCASTER_HTTP_ADDR": f"127.0.0.1:{bhttp}", "BROADCASTER_ADMIN_ADDR": f"127.0.0.1:{badmin}",
            "BROADCASTER_REPORT_URL": f"http://127.0.0.1:{ingest}/v1/reports",
            "BROADCASTER_REPORT_INTERVAL": "250ms", "BROADCASTER_STUCK_AFTER": "2s", "LOG_FORMAT": "json",
        }
        self.broadcaster = subprocess.Popen([str(broadcaster), "serve"], env=benv, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
        self.samples: list[float] = []

    def probe(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def status(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/v1/status", timeout=2) as r:
            return json.load(r)

    def stop(self) -> None:
        for p in (self.sidecar, self.broadcaster):
            p.terminate()
        for p in (self.sidecar, self.broadcaster):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("builds", nargs="+", help="LABEL=PATH of a transit-sidecar binary")
    p.add_argument("--broadcaster", type=Path, required=True, help="a transit-broadcaster binary")
    p.add_argument("--secs", type=int, default=40, help="run length (samples after the first 10 s)")
    p.add_argument("--fresh", action="store_true", help="run a copy written in 1 MiB chunks (as an image layer)")
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rss-pod-"))
    pods: list[Pod] = []
    try:
        make_certs(work)
        sa = work / "sa"
        sa.mkdir()
        shutil.copy(work / "ca.crt", sa / "ca.crt")
        (sa / "token").write_text("rss-bench-token")
        (sa / "namespace").write_text(NS)
        api_port = serve_api(work)
        for b in a.builds:
            label, path = b.split("=", 1)
            pods.append(Pod(label, Path(path), a.broadcaster, work, api_port, a.fresh))
        measure(pods, a)
        return 0
    finally:
        for pod in pods:
            pod.stop()
        shutil.rmtree(work, ignore_errors=True)


def measure(pods: list[Pod], a: argparse.Namespace) -> None:
    start = time.monotonic()
    next_probe = start
    while time.monotonic() - start < a.secs:
        time.sleep(1)
        now = time.monotonic()
        if now >= next_probe:
            next_probe += 5
            for pod in pods:
                pod.probe()
        if now - start >= 10:
            for pod in pods:
                pod.samples.append(status_kib(pod.sidecar.pid, "VmRSS:") / 1024)
    print(f"steady VmRSS, {a.secs} s, 1 s samples after 10 s; API calls served: {Api.counts}"
          f"{'; binaries written anew in 1 MiB chunks' if a.fresh else ''}")
    for pod in pods:
        pid = pod.sidecar.pid
        try:
            st = pod.status()
            streams = ",".join(f"{s['name']}:{s['verdict']}" for s in st.get("streams", []))
            streams += f"; dump storage ok: {st.get('dump_storage', {}).get('ok')}"
        except (OSError, ValueError) as e:
            streams = f"no status: {e}"
        kib = lambda f: status_kib(pid, f) / 1024  # noqa: E731
        print(f"\n## {pod.label}: {pod.binary} ({pod.binary.stat().st_size / 2**20:.2f} MiB file)")
        print(f"VmRSS p50 {statistics.median(pod.samples):.2f} MiB (min {min(pod.samples):.2f}, "
              f"max {max(pod.samples):.2f}); VmHWM {kib('VmHWM:'):.2f}; RssAnon {kib('RssAnon:'):.2f} + "
              f"RssFile {kib('RssFile:'):.2f} + RssShmem {kib('RssShmem:'):.2f} MiB; "
              f"threads {status_kib(pid, 'Threads:')}; streams {streams}")
        for name, k in smaps(pid)[:14]:
            print(f"| {name} | {k} |")
    for pod in pods:
        pod.stop()
    for pod in pods:
        log = (pod.dir / "sidecar.log").read_text(errors="replace").splitlines()
        published = sum("published" in line for line in log)
        errors = [line for line in log if '"level":"ERROR"' in line or '"level":"WARN"' in line]
        print(f"\n{pod.label}: {len(log)} log lines, {published} 'published'; warnings/errors: {len(errors)}")
        for line in errors[:5]:
            print("  " + line[:300])


if __name__ == "__main__":
    sys.exit(main())

"""Pod Security Standard "restricted" (v1.30+), plus readOnlyRootFilesystem."""

from __future__ import annotations

import copy
from typing import Iterable

from .common import require
from .render import Rendered

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

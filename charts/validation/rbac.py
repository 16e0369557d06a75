"""RBAC: the chart grants exactly what `transit-operator rbac` says this build of the operator
uses, with no wildcards, in the right scope, bound to the operator's ServiceAccount; the Lease
Role exists exactly when leader election is on; the webhook's ClusterRole and certificate Role
exactly when the webhook manages its own CA; the operator holds everything it grants the
sidecar (RBAC escalation prevention)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from . import binaries
from .common import RELEASE_NS, CheckFailed, require
from .render import Rendered

Triple = tuple[str, str, str]
FIXTURE = Path(__file__).parent / "fixtures" / "rbac.yaml"


def triples(groups: list[str], resources: list[str], verbs: list[str]) -> set[Triple]:
    return {(g, r, v) for g in groups for r in resources for v in verbs}


def rule_triples(rules: list[dict] | None, where: str) -> set[Triple]:
    """Every (group, resource, verb) `rules` grant; each rule must list all three, without
    wildcards or nonResourceURLs."""
    out = set()
    for i, rule in enumerate(rules or []):
        rw = f"{where} rule {i}"
        require(isinstance(rule, dict), f"{rw}: not a mapping: {rule!r}")
        require(not rule.get("nonResourceURLs"), f"{rw}: nonResourceURLs")
        for key in ("apiGroups", "resources", "verbs"):
            vals = rule.get(key)
            require(isinstance(vals, list) and vals, f"{rw}: {key} must be a non-empty list")
            require(all("*" not in str(x) for x in vals), f"{rw}: wildcard in {key}: {vals}")
        out |= triples(rule["apiGroups"], rule["resources"], rule["verbs"])
    return out


@dataclass(frozen=True)
class OperatorRbac:
    """The rule sets of `transit-operator rbac`."""
    operator: frozenset[Triple]
    leader_election: frozenset[Triple]
    sidecar: frozenset[Triple]
    webhook: frozenset[Triple] = frozenset()
    webhook_certs: frozenset[Triple] = frozenset()

    @classmethod
    def parse(cls, doc: dict, where: str) -> OperatorRbac:
        sections = {}
        optional = ("webhook", "webhookCerts")
        for key in ("operator", "leaderElection", "sidecar", *optional):
            rules = doc.get(key)
            if key in optional and key not in doc:
                sections[key] = frozenset()
                continue
            require(isinstance(rules, list) and rules, f"{where}: no `{key}` rules")
            sections[key] = frozenset(rule_triples(rules, f"{where} {key}"))
        unknown = sorted(set(doc) - set(sections))
        require(not unknown, f"{where}: unknown sections {unknown}: teach validation/rbac.py")
        return cls(sections["operator"], sections["leaderElection"], sections["sidecar"],
                   sections["webhook"], sections["webhookCerts"])


WEBHOOK_RESOURCE = "mutatingwebhookconfigurations"
CERTS_ROLE_SUFFIX = "-webhook-certs"


def webhook_self_managed(v: dict) -> bool:
    webhook = v.get("webhook") or {}
    return bool(webhook.get("enabled")) and not (webhook.get("certManager") or {}).get("enabled")


def load_operator_rbac() -> OperatorRbac:
    """The operator's own account of its permissions, from the built binary."""
    return OperatorRbac.parse(binaries.operator_rbac(), "transit-operator rbac")


def check_rbac(r: Rendered, needs: OperatorRbac | None) -> None:
    require(needs is not None, "no rules from `transit-operator rbac` (see its check above)")
    v = r.effective
    roles = {(d["kind"], d["metadata"]["name"]): d
             for d in r.of_kind("Role") + r.of_kind("ClusterRole")}
    bindings = r.of_kind("RoleBinding") + r.of_kind("ClusterRoleBinding")
    sa = r.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    granted: set[Triple] = set()
    lease_grants: set[Triple] = set()
    webhook_grants: set[Triple] = set()
    cert_grants: set[Triple] = set()
    for (kind, name), role in roles.items():
        t = rule_triples(role.get("rules"), f"{kind}/{name}")
        if any(res == WEBHOOK_RESOURCE for _, res, _ in t):
            require(kind == "ClusterRole", f"{kind}/{name}: {WEBHOOK_RESOURCE} are cluster-scoped")
            require(all(res == WEBHOOK_RESOURCE for _, res, _ in t),
                    f"{kind}/{name} mixes {WEBHOOK_RESOURCE} with others")
            webhook_grants |= t
        elif name.endswith(CERTS_ROLE_SUFFIX):
            require(kind == "Role" and role["metadata"]["namespace"] == RELEASE_NS,
                    f"{kind}/{name}: the webhook certificate Role belongs in the release namespace")
            cert_grants |= t
        elif any(res == "leases" for _, res, _ in t):
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
    missing, extra = needs.operator - granted, granted - needs.operator
    require(not missing, f"missing permissions (transit-operator rbac: operator): {sorted(missing)}")
    require(not extra, f"permissions beyond what the operator needs (transit-operator rbac: "
                       f"operator): {sorted(extra)}")
    require(needs.sidecar <= granted,
            f"the operator cannot grant the sidecar Role (RBAC escalation prevention): "
            f"{sorted(needs.sidecar - granted)}")
    if v["leaderElection"]["enabled"]:
        missing, extra = needs.leader_election - lease_grants, lease_grants - needs.leader_election
        require(not missing, f"Lease Role lacks (transit-operator rbac: leaderElection): "
                             f"{sorted(missing)}")
        require(not extra, f"Lease Role grants beyond what the elector needs (transit-operator "
                           f"rbac: leaderElection): {sorted(extra)}")
    else:
        require(not lease_grants, "Lease permissions without leader election")
    if webhook_self_managed(v):
        for label, got, want in (("webhook", webhook_grants, needs.webhook),
                                 ("webhookCerts", cert_grants, needs.webhook_certs)):
            require(got == want, f"the webhook's {label} grants {sorted(got)}, want exactly "
                                 f"(transit-operator rbac: {label}) {sorted(want)}")
    else:
        require(not webhook_grants and not cert_grants,
                "webhook permissions without a self-managed webhook")
    kinds = {k for k, n in roles if not (k == "ClusterRole" and n.endswith("-webhook"))}
    if v["namespaced"]:
        require("ClusterRole" not in kinds, "a ClusterRole in namespaced mode")
    else:
        require("ClusterRole" in kinds, "no ClusterRole in cluster mode")


def rbac_self_test(r: Rendered | None) -> None:
    """The parser reads the shape `transit-operator rbac` prints, and check_rbac refuses a
    missing, an extra and a wildcard permission, a Lease mismatch, a Lease Role without leader
    election and an escalation; it needs
    no binary: the needs are the rendered chart's own grants, then mutated."""
    parsed = OperatorRbac.parse(yaml.safe_load(FIXTURE.read_text()), FIXTURE.name)
    require(("", "pods/status", "get") in parsed.operator
            and parsed.sidecar == {("", "pods/status", "patch")}
            and ("coordination.k8s.io", "leases", "create") in parsed.leader_election,
            f"the fixture parsed to {parsed}")
    require(r is not None and r.effective["leaderElection"]["enabled"],
            "the self-test needs the defaults scenario rendered (leader election on)")
    grants = {kind: rule_triples(d.get("rules"), kind) for kind, d in
              ((d["kind"] + "/" + d["metadata"]["name"], d)
               for d in r.of_kind("ClusterRole") + r.of_kind("Role"))}
    leases = frozenset(t for ts in grants.values() for t in ts if t[1] == "leases")
    webhook = frozenset(t for ts in grants.values() for t in ts if t[1] == WEBHOOK_RESOURCE)
    certs = frozenset(t for k, ts in grants.items() if k.endswith(CERTS_ROLE_SUFFIX) for t in ts)
    operator = frozenset(t for k, ts in grants.items() if not k.endswith(CERTS_ROLE_SUFFIX)
                         for t in ts if t[1] not in ("leases", WEBHOOK_RESOURCE))
    exact = OperatorRbac(operator, leases, frozenset(list(operator)[:1]), webhook, certs)
    check_rbac(r, exact)
    stranger = ("example.com", "widgets", "get")
    mutations = {
        "a missing permission": replace(exact, operator=exact.operator | {stranger}),
        "an extra permission": replace(exact, operator=frozenset(list(exact.operator)[1:])),
        "a Lease verb mismatch": replace(exact, leader_election=frozenset(list(leases)[1:])),
        "an escalation": replace(exact, sidecar=frozenset({stranger})),
    }
    for name, needs in mutations.items():
        try:
            check_rbac(r, needs)
        except CheckFailed:
            continue
        raise CheckFailed(f"{name} not caught")
    no_election = copy.deepcopy(r)
    no_election.effective["leaderElection"]["enabled"] = False
    try:
        check_rbac(no_election, exact)
        raise CheckFailed("a Lease Role without leader election not caught")
    except CheckFailed as e:
        require("without leader election" in str(e), str(e))
    wildcard = copy.deepcopy(r)
    role = (wildcard.of_kind("ClusterRole") or wildcard.of_kind("Role"))[0]
    role["rules"][0]["verbs"] = ["*"]
    try:
        check_rbac(wildcard, exact)
    except CheckFailed:
        return
    raise CheckFailed("a wildcard not caught")

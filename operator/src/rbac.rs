//! The Kubernetes permissions this build of the operator uses, declared once.
//!
//! Three tables: what the operator itself calls ([`OPERATOR`]), what its elector calls on its
//! Lease ([`LEADER_ELECTION`]) and what it grants each TransitStream's sidecar ([`SIDECAR`],
//! which `builders::role` turns into the sidecar's Role). `transit-operator rbac` prints them
//! ([`yaml`]) and the chart's ClusterRole/Role are checked against that output, so a new API
//! call starts here. Every list is kept sorted (a unit test enforces it) and has no wildcards.

use k8s_openapi::api::rbac::v1::PolicyRule;

/// One RBAC rule, as `const` data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub api_groups: &'static [&'static str],
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
}

impl Rule {
    /// The rule as a Kubernetes `PolicyRule`.
    pub fn policy_rule(&self) -> PolicyRule {
        let owned = |items: &[&str]| items.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
        PolicyRule {
            api_groups: Some(owned(self.api_groups)),
            resources: Some(owned(self.resources)),
            verbs: owned(self.verbs),
            ..PolicyRule::default()
        }
    }

    /// Every (group, resource, verb) this rule grants.
    pub fn triples(&self) -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
        self.api_groups.iter().flat_map(move |g| {
            self.resources
                .iter()
                .flat_map(move |r| self.verbs.iter().map(move |v| (*g, *r, *v)))
        })
    }
}

/// Everything on an owned workload object: read and watch it, apply it (create/patch/update)
/// and delete it.
const OWNED: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// What the operator calls: a ClusterRole in cluster mode, a Role in the watched namespace in
/// namespaced mode.
pub const OPERATOR: &[Rule] = &[
    // The TransitStream API: read, patch (finalizer/annotations), status, finalizers.
    Rule {
        api_groups: &["stallwatch.io"],
        resources: &["transitstreams"],
        verbs: &["get", "list", "patch", "update", "watch"],
    },
    Rule {
        api_groups: &["stallwatch.io"],
        resources: &["transitstreams/status"],
        verbs: &["get", "patch", "update"],
    },
    Rule {
        api_groups: &["stallwatch.io"],
        resources: &["transitstreams/finalizers"],
        verbs: &["update"],
    },
    // Owned workload objects, applied with server-side apply.
    Rule {
        api_groups: &["apps"],
        resources: &["deployments"],
        verbs: OWNED,
    },
    // A TransitStream's `workloadRef`: read (never written) for its pod ServiceAccount,
    // selector and replica counts. Deployments are covered by the rule above.
    Rule {
        api_groups: &["apps"],
        resources: &["statefulsets"],
        verbs: &["get"],
    },
    Rule {
        api_groups: &[""],
        resources: &[
            "configmaps",
            "persistentvolumeclaims",
            "secrets",
            "serviceaccounts",
            "services",
        ],
        verbs: OWNED,
    },
    // Stall verdicts arrive as pod conditions; restart = delete the stalled pod.
    Rule {
        api_groups: &[""],
        resources: &["pods"],
        verbs: &["delete", "get", "list", "watch"],
    },
    // Held because the sidecar's Role grants it (RBAC escalation prevention: the operator may
    // only grant permissions it holds itself).
    Rule {
        api_groups: &[""],
        resources: &["pods/status"],
        verbs: &["get", "patch"],
    },
    // The sidecar's ServiceAccount gets a Role + RoleBinding per TransitStream.
    Rule {
        api_groups: &["rbac.authorization.k8s.io"],
        resources: &["rolebindings", "roles"],
        verbs: OWNED,
    },
    // An Event for every remediation step (both Event APIs).
    Rule {
        api_groups: &[""],
        resources: &["events"],
        verbs: &["create", "patch"],
    },
    Rule {
        api_groups: &["events.k8s.io"],
        resources: &["events"],
        verbs: &["create", "patch"],
    },
];

/// The elector reads, creates and replaces one Lease (`leader::KubeLeases`): a Role in the
/// operator's own namespace, when leader election is on.
pub const LEADER_ELECTION: &[Rule] = &[Rule {
    api_groups: &["coordination.k8s.io"],
    resources: &["leases"],
    verbs: &["create", "get", "update"],
}];

/// The sidecar-injection webhook's registration (`webhook::registration`): read the
/// `MutatingWebhookConfiguration` and replace it with a current `caBundle`. Cluster-scoped, so
/// a ClusterRole even in namespaced mode; only when the webhook is on and manages its own CA.
pub const WEBHOOK: &[Rule] = &[Rule {
    api_groups: &["admissionregistration.k8s.io"],
    resources: &["mutatingwebhookconfigurations"],
    verbs: &["get", "update"],
}];

/// The webhook's certificate Secret (`webhook::registration`): a Role in the operator's own
/// namespace, when the webhook manages its own CA.
pub const WEBHOOK_CERTS: &[Rule] = &[Rule {
    api_groups: &[""],
    resources: &["secrets"],
    verbs: &["create", "get", "update"],
}];

/// The Role the operator grants each TransitStream's sidecar (`builders::role`): patch its
/// pod's status (the condition) and publish Events (`patch`: kube's Recorder updates a repeated
/// Event's series). The operator must hold all of it too.
pub const SIDECAR: &[Rule] = &[
    Rule {
        api_groups: &[""],
        resources: &["pods/status"],
        verbs: &["patch"],
    },
    Rule {
        api_groups: &["events.k8s.io"],
        resources: &["events"],
        verbs: &["create", "patch"],
    },
];

/// `transit-operator rbac`'s output: the five tables as YAML, `PolicyRule` fields in camelCase.
pub fn yaml() -> String {
    let mut out =
        String::from("# transit-operator rbac: the permissions this build of the operator uses.\n");
    let sections: [(&str, &str, &[Rule]); 5] = [
        (
            "operator:        ",
            "ClusterRole in cluster mode, a Role in the watched namespace in namespaced mode",
            OPERATOR,
        ),
        (
            "leaderElection:  ",
            "a Role in the operator's own namespace, when leader election is on",
            LEADER_ELECTION,
        ),
        (
            "webhook:         ",
            "a ClusterRole, when the sidecar-injection webhook is on and manages its own CA",
            WEBHOOK,
        ),
        (
            "webhookCerts:    ",
            "a Role in the operator's own namespace, when the webhook manages its own CA",
            WEBHOOK_CERTS,
        ),
        (
            "sidecar:         ",
            "the Role the operator grants each TransitStream's sidecar (the operator must hold it too)",
            SIDECAR,
        ),
    ];
    for (key, comment, rules) in sections {
        out.push_str(&format!("{key}# {comment}\n"));
        for rule in rules {
            out.push_str(&format!("- apiGroups: {}\n", flow_list(rule.api_groups)));
            out.push_str(&format!("  resources: {}\n", flow_list(rule.resources)));
            out.push_str(&format!("  verbs: {}\n", flow_list(rule.verbs)));
        }
    }
    out
}

/// `[a, b]`, quoting only the empty string (the core API group).
fn flow_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| {
            if s.is_empty() {
                "\"\"".to_string()
            } else {
                (*s).to_string()
            }
        })
        .collect();
    format!("[{}]", quoted.join(", "))
}

#[cfg(test)]
mod tests;

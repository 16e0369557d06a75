//! TransitStreams that protect an existing workload (`spec.workloadRef`) instead of deploying
//! one. The operator never writes the referenced Deployment or StatefulSet: it reads it (its
//! pod ServiceAccount, selector and replica counts), grants that ServiceAccount the sidecar's
//! Role, creates the admin token Secret (and a templated dump claim), and reports which of its
//! pods the webhook injected. The sidecar itself arrives through `crate::webhook`.
//!
//! Pure parts (`view`, [`coverage`], [`role_binding`]) are unit-tested; [`fetch`] and
//! [`list_pods`] are the two reads.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::ListParams;
use kube::{Api, Client};
use stallwatch_crds::{
    CoveredPod, MAX_COVERAGE_PODS, TransitStream, WorkloadCoverage, WorkloadKind, WorkloadRef,
};

use crate::builders::{self, sidecar_account_name};
use crate::webhook::inject;

/// What the operator reads from a referenced workload.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadView {
    /// The ServiceAccount its pods run as (the sidecar runs as it too).
    pub service_account: String,
    /// Its selector's `matchLabels` (what its pods are listed by).
    pub match_labels: BTreeMap<String, String>,
    /// Its status, as the Deployment-shaped status the TransitStream's is computed from.
    pub as_deployment: Deployment,
    /// Desired replicas.
    pub replicas: i32,
}

fn service_account(template: &PodTemplateSpec) -> String {
    template
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into())
}

fn match_labels(selector: &LabelSelector) -> BTreeMap<String, String> {
    selector.match_labels.clone().unwrap_or_default()
}

/// A Deployment as the operator sees it.
pub fn view_deployment(d: &Deployment) -> Option<WorkloadView> {
    let spec = d.spec.as_ref()?;
    Some(WorkloadView {
        service_account: service_account(&spec.template),
        match_labels: match_labels(&spec.selector),
        replicas: spec.replicas.unwrap_or(1),
        as_deployment: Deployment {
            metadata: ObjectMeta {
                generation: d.metadata.generation,
                ..ObjectMeta::default()
            },
            status: d.status.clone(),
            ..Deployment::default()
        },
    })
}

/// A StatefulSet as the operator sees it: its counters in a Deployment's status.
pub fn view_stateful_set(s: &StatefulSet) -> Option<WorkloadView> {
    let spec = s.spec.as_ref()?;
    let status = s.status.as_ref();
    Some(WorkloadView {
        service_account: service_account(&spec.template),
        match_labels: match_labels(&spec.selector),
        replicas: spec.replicas.unwrap_or(1),
        as_deployment: Deployment {
            metadata: ObjectMeta {
                generation: s.metadata.generation,
                ..ObjectMeta::default()
            },
            status: status.map(|st| DeploymentStatus {
                replicas: Some(st.replicas),
                ready_replicas: st.ready_replicas,
                updated_replicas: st.updated_replicas,
                available_replicas: st.available_replicas,
                observed_generation: st.observed_generation,
                ..DeploymentStatus::default()
            }),
            ..Deployment::default()
        },
    })
}

/// Reads the referenced workload; `None` when it does not exist (yet).
pub async fn fetch(
    client: &Client,
    ns: &str,
    w: &WorkloadRef,
) -> kube::Result<Option<WorkloadView>> {
    Ok(match w.kind {
        WorkloadKind::Deployment => Api::<Deployment>::namespaced(client.clone(), ns)
            .get_opt(&w.name)
            .await?
            .as_ref()
            .and_then(view_deployment),
        WorkloadKind::StatefulSet => Api::<StatefulSet>::namespaced(client.clone(), ns)
            .get_opt(&w.name)
            .await?
            .as_ref()
            .and_then(view_stateful_set),
    })
}

/// The workload's pods, injected or not (by its selector's `matchLabels`).
pub async fn list_pods(client: &Client, ns: &str, view: &WorkloadView) -> kube::Result<Vec<Pod>> {
    if view.match_labels.is_empty() {
        return Ok(Vec::new());
    }
    let selector = view
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    Ok(Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&selector))
        .await?
        .items)
}

/// The sidecar's Role (the same as for a deployed broadcaster), bound to the ServiceAccount
/// the workload's pods run as: the injected sidecar runs as that account.
pub fn role_binding(ts: &TransitStream, service_account: &str) -> RoleBinding {
    let mut rb = builders::role_binding(ts);
    rb.role_ref = RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: "Role".into(),
        name: sidecar_account_name(&ts.metadata.name.clone().unwrap_or_default()),
    };
    rb.subjects = Some(vec![Subject {
        kind: "ServiceAccount".into(),
        name: service_account.to_string(),
        namespace: ts.metadata.namespace.clone(),
        ..Subject::default()
    }]);
    rb
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The TransitStream a pod belongs to, when it names one: the label the webhook sets
/// (`stallwatch.io/transitstream`), else the opt-in label its template gave it.
pub fn claimed_by(pod: &Pod) -> Option<&str> {
    let labels = pod.metadata.labels.as_ref()?;
    labels
        .get(stallwatch_crds::labels::TRANSITSTREAM)
        .or_else(|| labels.get(inject::INJECT_LABEL))
        .map(String::as_str)
}

/// The other TransitStreams the workload's pods belong to (sorted, no repeats): a second
/// TransitStream naming the same workload is in conflict with them and covers none of
/// those pods (only the one a pod names ever remediates it).
pub fn claimed_by_others(ts_name: &str, pods: &[Pod]) -> Vec<String> {
    let others: std::collections::BTreeSet<&str> = pods
        .iter()
        .filter_map(claimed_by)
        .filter(|owner| *owner != ts_name)
        .collect();
    others.into_iter().map(String::from).collect()
}

/// Which pods carry the sidecar. Terminating pods are left out (they are going away), and so
/// are pods that belong to another TransitStream ([`claimed_by_others`]).
pub fn coverage(
    ts_name: &str,
    w: &WorkloadRef,
    view: Option<&WorkloadView>,
    pods: &[Pod],
) -> WorkloadCoverage {
    let mut out = WorkloadCoverage {
        kind: w.kind.as_str().into(),
        name: w.name.clone(),
        found: view.is_some(),
        ..WorkloadCoverage::default()
    };
    if view.is_none() {
        out.message = Some(format!(
            "{} {:?} not found in this namespace",
            w.kind.as_str(),
            w.name
        ));
        return out;
    }
    let mut live: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    out.pods = live.len() as i32;
    live.retain(|p| claimed_by(p).is_none_or(|owner| owner == ts_name));
    live.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut uncovered = 0;
    for pod in live {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let injected = inject::is_injected(pod);
        uncovered += usize::from(!injected);
        if injected {
            if out.covered_pods.len() < MAX_COVERAGE_PODS {
                out.covered_pods.push(CoveredPod {
                    name,
                    ready: is_ready(pod),
                });
            }
        } else if out.uncovered_pods.len() < MAX_COVERAGE_PODS {
            out.uncovered_pods.push(name);
        }
    }
    let others = claimed_by_others(ts_name, pods);
    if !others.is_empty() {
        out.message = Some(conflict_message(ts_name, w, &others));
    } else if uncovered > 0 {
        out.message = Some(format!(
            "{uncovered} of {} pods have no sidecar: created before the pod template had the label {}: {ts_name}, or while the operator's webhook was unreachable; replace them with `kubectl rollout restart {}/{}`",
            out.pods,
            inject::INJECT_LABEL,
            w.kind.as_str().to_lowercase(),
            w.name
        ));
    }
    out
}

/// Why a second TransitStream naming the same workload covers none of its pods.
pub fn conflict_message(ts_name: &str, w: &WorkloadRef, others: &[String]) -> String {
    format!(
        "{} {:?} is also named by TransitStream {}, whose pods these are (their label {} names it): only that one remediates them; delete TransitStream {ts_name:?} or point its workloadRef elsewhere",
        w.kind.as_str(),
        w.name,
        others
            .iter()
            .map(|o| format!("{o:?}"))
            .collect::<Vec<_>>()
            .join(", "),
        inject::INJECT_LABEL,
    )
}

#[cfg(test)]
mod tests;

//! What the operator creates at run time in its own namespace (the webhook's certificate
//! Secret, the leader Lease) is owned by the chart's operator Deployment, so `helm uninstall`
//! leaves nothing behind (issue 20, finding 9): deleting the Deployment lets the garbage
//! collector delete both. An owner reference is the one way that also holds for an object
//! written after the uninstall started (a replica renewing its Lease while it shuts down): the
//! collector deletes a dependent whose owner is gone, whenever it was written.

use std::sync::OnceLock;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Api, Client};

/// The operator's Deployment, from `--operator-deployment` (`OPERATOR_DEPLOYMENT`, which the
/// chart sets); set once at start.
static DEPLOYMENT: OnceLock<String> = OnceLock::new();

/// Names the operator's own Deployment (empty: none, run-time objects get no owner).
pub fn set_deployment(name: &str) {
    if !name.is_empty() {
        let _ = DEPLOYMENT.set(name.to_string());
    }
}

/// An owner reference to Deployment `name` (not a controller reference: the Deployment does
/// not manage these objects, it only takes them along).
pub fn reference(name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: name.into(),
        uid: uid.into(),
        controller: None,
        block_owner_deletion: None,
    }
}

/// The owner for run-time objects in `namespace`: the Deployment [`set_deployment`] named, if
/// any and readable; `None` otherwise (the objects then outlive an uninstall, as before; the
/// reason is logged).
///
/// Looked up once and kept: an object written after the Deployment is gone (an uninstall in
/// progress) still names it, and the collector deletes that object too.
pub async fn release_owner(client: &Client, namespace: &str) -> Option<Vec<OwnerReference>> {
    static FOUND: OnceLock<Vec<OwnerReference>> = OnceLock::new();
    if let Some(found) = FOUND.get() {
        return Some(found.clone());
    }
    let name = DEPLOYMENT.get()?.clone();
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    match api.get(&name).await {
        Ok(d) => {
            let found = vec![reference(&name, d.metadata.uid.as_deref()?)];
            Some(FOUND.get_or_init(|| found).clone())
        }
        Err(e) => {
            tracing::warn!(deployment = %name, error = %e, "cannot read the operator's Deployment: the objects written now will outlive an uninstall");
            None
        }
    }
}

#[cfg(test)]
mod tests;

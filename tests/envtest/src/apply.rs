//! Server-side apply of multi-document YAML (a rendered chart, a CRD file), resolving each
//! document's kind through discovery.

use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Discovery, Scope};
use kube::{Api, Client};

/// One document that the API server refused.
#[derive(Debug)]
pub struct Refused {
    pub object: String,
    pub error: String,
}

/// Applies every document of `yaml` with `manager` (forced), namespaced ones in their own
/// namespace or `default_namespace`. Returns the applied objects (`Kind/name`) and the refused
/// ones.
pub async fn apply_yaml(
    client: &Client,
    yaml: &str,
    default_namespace: &str,
    manager: &str,
) -> (Vec<String>, Vec<Refused>) {
    let mut discovery = discover(client).await;
    let mut applied = Vec::new();
    let mut refused = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value: serde_json::Value =
            serde::Deserialize::deserialize(doc).expect("a YAML document");
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject =
            serde_json::from_value(value.clone()).expect("a Kubernetes object");
        let types = obj.types.clone().expect("apiVersion and kind");
        let gvk = GroupVersionKind::try_from(&types).expect("a group/version/kind");
        let name = obj.metadata.name.clone().unwrap_or_default();
        let label = format!("{}/{name}", gvk.kind);
        let mut resolved = discovery.resolve_gvk(&gvk);
        if resolved.is_none() {
            // A CRD applied earlier in the same file: refresh discovery once.
            discovery = Discovery::new(client.clone())
                .run()
                .await
                .expect("API discovery");
            resolved = discovery.resolve_gvk(&gvk);
        }
        let Some((resource, caps)) = resolved else {
            refused.push(Refused {
                object: label,
                error: format!("the API server does not serve {gvk:?}"),
            });
            continue;
        };
        let api: Api<DynamicObject> = if caps.scope == Scope::Namespaced {
            let ns = obj
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| default_namespace.to_string());
            Api::namespaced_with(client.clone(), &ns, &resource)
        } else {
            Api::all_with(client.clone(), &resource)
        };
        match api
            .patch(
                &name,
                &PatchParams::apply(manager).force(),
                &Patch::Apply(&value),
            )
            .await
        {
            Ok(_) => applied.push(label),
            Err(e) => refused.push(Refused {
                object: label,
                error: e.to_string(),
            }),
        }
    }
    (applied, refused)
}

/// Discovery, retried: right after start (or after a CRD is created) a group may be listed
/// before it is served, and discovery then fails with a 404.
async fn discover(client: &Client) -> Discovery {
    let start = std::time::Instant::now();
    loop {
        match Discovery::new(client.clone()).run().await {
            Ok(d) => return d,
            Err(e) if start.elapsed() < std::time::Duration::from_secs(15) => {
                let _ = e;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => panic!("API discovery: {e}"),
        }
    }
}

/// One namespaced object as JSON (`kubectl get -o json`), `None` when absent or unreadable.
pub async fn get_json(
    client: &Client,
    api_version: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Option<serde_json::Value> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let resource =
        kube::discovery::ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let obj = api.get_opt(name).await.ok().flatten()?;
    serde_json::to_value(obj).ok()
}

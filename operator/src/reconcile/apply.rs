//! Server-side apply of owned objects (field manager `transit-operator`, forced), each
//! result's resourceVersion recorded as the operator's own for drift; and the admin token,
//! read back from its Secret, adopted, or written once.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use stallwatch_core::sync::lock;
use stallwatch_crds::TransitStream;

use super::{Context, FIELD_MANAGER, uid_of};
use crate::builders::{self, TOKEN_KEY};
use crate::error::Result;

/// [`apply`], and records the result's resourceVersion as the operator's own (drift).
pub(super) async fn tracked_apply<K>(ctx: &Context, ns: &str, obj: &K) -> Result<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let applied = apply(ctx, ns, obj).await?;
    ctx.drift.applied(&K::kind(&()), applied.meta());
    Ok(())
}

pub(super) async fn apply<K>(ctx: &Context, ns: &str, obj: &K) -> Result<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let name = obj.meta().name.clone().unwrap_or_default();
    Ok(api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await?)
}

/// The admin token: from the cache, else from the Secret, else a new one written once.
pub(super) async fn ensure_token(
    ctx: &Context,
    ts: &TransitStream,
    ns: &str,
    name: &str,
    reread: bool,
) -> Result<String> {
    let key = uid_of(ts);
    if !reread && let Some(t) = lock(&ctx.tokens).get(&key) {
        return Ok(t.clone());
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let secret_name = builders::secret_name(name);
    let existing = secrets.get_opt(&secret_name).await?;
    let token = match existing
        .as_ref()
        .and_then(|s| s.data.as_ref()?.get(TOKEN_KEY).cloned())
        .and_then(|b| String::from_utf8(b.0).ok())
        .filter(|t| !t.is_empty())
    {
        Some(t) => {
            match &existing {
                // Left by a deleted TransitStream of the same name (the garbage collector has
                // not got to it yet): adopted with its token, or the collector would delete it
                // under the new owner's sidecars.
                Some(s) if !owned_by(&s.metadata, ts) => {
                    tracked_apply(ctx, ns, &builders::admin_secret(ts, &t)).await?;
                }
                Some(s) => ctx.drift.applied("Secret", &s.metadata),
                None => {}
            }
            t
        }
        None => {
            // Deleted by hand under running pods: their sidecars read the token once, at
            // start, so the token this process knows comes back (a new one would answer 401
            // to every dump and soft restart until the pods restart).
            let known = lock(&ctx.tokens).get(&key).cloned();
            let token = known.unwrap_or_else(builders::new_token);
            tracked_apply(ctx, ns, &builders::admin_secret(ts, &token)).await?;
            token
        }
    };
    lock(&ctx.tokens).insert(key, token.clone());
    Ok(token)
}

/// Whether `ts` (this uid) is the controller owner of `meta`.
fn owned_by(meta: &ObjectMeta, ts: &TransitStream) -> bool {
    meta.owner_references.as_ref().is_some_and(|refs| {
        refs.iter()
            .any(|o| o.controller == Some(true) && Some(&o.uid) == ts.metadata.uid.as_ref())
    })
}

//! The sidecar's identity and credentials: its ServiceAccount, the Role it gets (from
//! `rbac::SIDECAR`) and its binding, and the admin-token Secret.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding, RoleRef, Subject};
use stallwatch_crds::TransitStream;

use super::{TOKEN_KEY, meta, name_of, secret_name, sidecar_account_name};

/// The sidecar's ServiceAccount (the broadcaster gets no API access).
pub fn service_account(ts: &TransitStream) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(ts, sidecar_account_name(&name_of(ts))),
        // The token is projected into the sidecar container only.
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// The sidecar may patch pod status (its condition) and publish Events; nothing else.
/// `patch` on events: kube's Recorder updates a repeated Event's series instead of creating
/// a new one.
pub fn role(ts: &TransitStream) -> Role {
    Role {
        metadata: meta(ts, sidecar_account_name(&name_of(ts))),
        rules: Some(
            crate::rbac::SIDECAR
                .iter()
                .map(|r| r.policy_rule())
                .collect(),
        ),
    }
}

/// Binds the sidecar's Role to its ServiceAccount.
pub fn role_binding(ts: &TransitStream) -> RoleBinding {
    let account = sidecar_account_name(&name_of(ts));
    RoleBinding {
        metadata: meta(ts, account.clone()),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: account.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: account,
            namespace: ts.metadata.namespace.clone(),
            ..Subject::default()
        }]),
    }
}

/// The Secret holding the sidecar's admin token. Created once with a fresh token; the
/// operator reads the token back from the cluster afterwards and never rotates it by itself.
pub fn admin_secret(ts: &TransitStream, token: &str) -> Secret {
    Secret {
        metadata: meta(ts, secret_name(&name_of(ts))),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            TOKEN_KEY.to_string(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// A new random admin token: 32 bytes, hex.
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

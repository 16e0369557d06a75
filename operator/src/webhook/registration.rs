//! Keeps the webhook's certificate and its registration current: the certificate Secret
//! (created once, rotated before expiry by whichever replica sees it due first), the
//! `MutatingWebhookConfiguration`'s `caBundle`, then the certificate being served, in that
//! order, so the API server trusts a certificate before any replica serves it.
//!
//! The chart creates the `MutatingWebhookConfiguration` (rules, selectors, `failurePolicy`,
//! where to call); the operator only writes its `caBundle`. With cert-manager
//! (`--webhook-cert-dir`), cert-manager's CA injector writes the `caBundle` and the operator
//! only reloads the mounted files.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

use super::server::CertSlot;
use super::tls::{CertBundle, TlsError, certified_key};

/// Milliseconds since the Unix epoch (the same shape as `reconcile::Clock`, which this module
/// does not import: `reconcile` reaches `webhook::inject` through `workload`).
pub type Clock = std::sync::Arc<dyn Fn() -> u64 + Send + Sync>;

/// Where the certificates come from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// The operator's own CA, kept in a Secret and rotated; it patches the `caBundle`.
    SelfManaged {
        /// The operator's namespace (the Secret's).
        namespace: String,
        secret: String,
        configuration: String,
        names: Vec<String>,
        validity: Duration,
    },
    /// `tls.crt`/`tls.key` in a directory (a cert-manager Secret mounted there).
    Files { dir: PathBuf },
}

/// Why one round of keeping the certificates current failed (retried next round).
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("the webhook certificate")]
    Tls(#[from] TlsError),
    #[error("the Kubernetes API")]
    Kube(#[from] kube::Error),
    #[error("the webhook certificate Secret {0} kept changing under concurrent writers")]
    Conflict(String),
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The configuration with `bundle` as every webhook's `caBundle`, or `None` when it already
/// is (nothing to write).
pub fn with_ca_bundle(
    config: &MutatingWebhookConfiguration,
    bundle: &str,
) -> Option<MutatingWebhookConfiguration> {
    let want = ByteString(bundle.as_bytes().to_vec());
    let webhooks = config.webhooks.as_ref()?;
    if webhooks
        .iter()
        .all(|w| w.client_config.ca_bundle.as_ref() == Some(&want))
    {
        return None;
    }
    let mut next = config.clone();
    for w in next.webhooks.iter_mut().flatten() {
        w.client_config.ca_bundle = Some(want.clone());
    }
    Some(next)
}

/// The bundle to serve: the stored one, a rotation of it when due, or a first one; `true`
/// when it must be written back.
pub fn next_bundle(
    stored: Option<CertBundle>,
    names: &[String],
    now_ms: u64,
    validity: Duration,
) -> Result<(CertBundle, bool), TlsError> {
    match stored {
        Some(b) if !b.needs_rotation(now_ms) => Ok((b, false)),
        Some(b) => Ok((b.rotated(names, now_ms, validity)?, true)),
        None => Ok((CertBundle::generate(names, now_ms, validity)?, true)),
    }
}

/// One round: the Secret, then the `caBundle`; returns the certificate to serve from now on
/// when it differs from `serving` (the PEM being served, updated here).
pub async fn sync_once(
    client: &Client,
    source: &CertSource,
    serving: &mut Option<String>,
    clock: &Clock,
) -> Result<Option<CertifiedKey>, RegistrationError> {
    let (cert_pem, key_pem) = match source {
        CertSource::Files { dir } => {
            let read = |name: &str| {
                let path = dir.join(name);
                std::fs::read_to_string(&path)
                    .map_err(|source| RegistrationError::Read { path, source })
            };
            (read("tls.crt")?, read("tls.key")?)
        }
        CertSource::SelfManaged {
            namespace,
            secret,
            configuration,
            names,
            validity,
        } => {
            let bundle = ensure_secret(client, namespace, secret, names, *validity, clock).await?;
            ensure_ca_bundle(client, configuration, &bundle.ca_bundle()).await?;
            (bundle.cert_pem, bundle.key_pem)
        }
    };
    if serving.as_deref() == Some(cert_pem.as_str()) {
        return Ok(None);
    }
    let key = certified_key(&cert_pem, &key_pem)?;
    tracing::info!("webhook serving certificate loaded");
    *serving = Some(cert_pem);
    Ok(Some(key))
}

/// Reads the certificate Secret, writing a first or rotated bundle when needed. A write
/// that loses a race to another replica (409) reads the winner's bundle instead.
async fn ensure_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    names: &[String],
    validity: Duration,
    clock: &Clock,
) -> Result<CertBundle, RegistrationError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for _ in 0..3 {
        let existing = secrets.get_opt(name).await?;
        let stored = existing
            .as_ref()
            .and_then(|s| s.data.as_ref())
            .and_then(|d| match CertBundle::from_secret_data(d) {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!(error = %e, "webhook certificate Secret unreadable; replacing it");
                    None
                }
            });
        let (bundle, write) = next_bundle(stored, names, clock(), validity)?;
        if !write {
            return Ok(bundle);
        }
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                // Owned by the operator's Deployment: gone with `helm uninstall`.
                owner_references: crate::owner::release_owner(client, namespace).await,
                resource_version: existing
                    .as_ref()
                    .and_then(|s| s.metadata.resource_version.clone()),
                labels: Some(
                    [(
                        "app.kubernetes.io/managed-by".to_string(),
                        stallwatch_crds::labels::MANAGED_BY.to_string(),
                    )]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            data: Some(bundle.to_secret_data()),
            ..Secret::default()
        };
        let pp = PostParams::default();
        let written = if existing.is_some() {
            secrets.replace(name, &pp, &secret).await
        } else {
            secrets.create(&pp, &secret).await
        };
        match written {
            Ok(_) => {
                tracing::info!(
                    not_after_ms = bundle.not_after_ms,
                    rotated = existing.is_some(),
                    "webhook certificate written"
                );
                return Ok(bundle);
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(RegistrationError::Conflict(name.to_string()))
}

/// Writes `bundle` as the configuration's `caBundle` when it differs. A configuration that
/// does not exist (yet) is logged and skipped: the chart creates it.
async fn ensure_ca_bundle(
    client: &Client,
    name: &str,
    bundle: &str,
) -> Result<(), RegistrationError> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let Some(current) = api.get_opt(name).await? else {
        tracing::warn!(
            configuration = name,
            "no MutatingWebhookConfiguration to register the CA with"
        );
        return Ok(());
    };
    if let Some(next) = with_ca_bundle(&current, bundle) {
        api.replace(name, &PostParams::default(), &next).await?;
        tracing::info!(configuration = name, "webhook caBundle updated");
    }
    Ok(())
}

/// Keeps the certificates current every `every` until `stop` turns true.
pub async fn keep_current(
    client: Client,
    source: CertSource,
    slot: CertSlot,
    mut serving: Option<String>,
    clock: Clock,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match sync_once(&client, &source, &mut serving, &clock).await {
            Ok(Some(key)) => slot.replace(key),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "keeping the webhook certificate current failed; retrying")
            }
        }
    }
}

#[cfg(test)]
mod tests;

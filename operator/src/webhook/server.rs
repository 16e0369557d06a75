//! The webhook's HTTPS server: `POST /mutate-pods` (AdmissionReview v1), TLS from a
//! [`CertSlot`] whose certificate can be swapped while serving (rotation, cert-manager
//! renewals), and `GET /healthz`.
//!
//! Every failure to decide admits the pod unchanged (with a warning in the log): the same as
//! `failurePolicy: Ignore` would, and never a refusal, so Stallwatch can never keep a
//! workload's pods from starting.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use stallwatch_core::sync::lock;
use stallwatch_crds::TransitStream;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::inject::{self, InjectContext, Injection};
use crate::sidecar::BoxFuture;

/// The webhook's path.
pub const MUTATE_PATH: &str = "/mutate-pods";
/// Bound on fetching the TransitStream for one admission (the API server's own
/// `timeoutSeconds` is a little longer).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// Finds the TransitStream a pod names (a trait so tests need no API server).
pub trait StreamLookup: Send + Sync {
    fn get<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<TransitStream>, kube::Error>>;
}

/// The API server as the lookup: one GET per admission, so every replica can answer
/// without a cache of its own.
pub struct ApiLookup(pub kube::Client);

impl StreamLookup for ApiLookup {
    fn get<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<TransitStream>, kube::Error>> {
        Box::pin(async move {
            Api::<TransitStream>::namespaced(self.0.clone(), namespace)
                .get_opt(name)
                .await
        })
    }
}

/// The serving certificate, swappable while connections are accepted.
#[derive(Debug, Clone)]
pub struct CertSlot(Arc<Mutex<Arc<CertifiedKey>>>);

impl CertSlot {
    pub fn new(key: CertifiedKey) -> Self {
        CertSlot(Arc::new(Mutex::new(Arc::new(key))))
    }

    /// New handshakes use `key` from now on; open connections keep theirs.
    pub fn replace(&self, key: CertifiedKey) {
        *lock(&self.0) = Arc::new(key);
    }

    fn current(&self) -> Arc<CertifiedKey> {
        lock(&self.0).clone()
    }
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

#[derive(Clone)]
struct WebhookState {
    lookup: Arc<dyn StreamLookup>,
    inject: Arc<InjectContext>,
}

/// The webhook's routes.
pub fn router(lookup: Arc<dyn StreamLookup>, inject: InjectContext) -> Router {
    Router::new()
        .route(MUTATE_PATH, post(mutate))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(WebhookState {
            lookup,
            inject: Arc::new(inject),
        })
}

async fn mutate(
    State(state): State<WebhookState>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let req: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "malformed AdmissionReview");
            return Json(AdmissionResponse::invalid(e.to_string()).into_review());
        }
    };
    Json(answer(&state, &req).await.into_review())
}

/// The response for one request: a patch, or the pod unchanged.
async fn answer(state: &WebhookState, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let allow = AdmissionResponse::from(req);
    let Some(pod) = req
        .object
        .as_ref()
        .and_then(|o| serde_json::to_value(o).ok())
        .and_then(|v| serde_json::from_value::<Pod>(v).ok())
    else {
        return allow;
    };
    let Some(wanted) = inject::requested_stream(&pod) else {
        return allow;
    };
    // The pod's namespace is empty on create from a template; the request carries it.
    let ns = req.namespace.clone().unwrap_or_default();
    let ts = match tokio::time::timeout(LOOKUP_TIMEOUT, state.lookup.get(&ns, wanted)).await {
        Ok(Ok(ts)) => ts,
        Ok(Err(e)) => {
            tracing::warn!(namespace = %ns, stream = wanted, error = %e, "admitting the pod without the sidecar: TransitStream lookup failed");
            return allow;
        }
        Err(_) => {
            tracing::warn!(namespace = %ns, stream = wanted, "admitting the pod without the sidecar: TransitStream lookup timed out");
            return allow;
        }
    };
    match inject::inject(&pod, ts.as_ref(), &state.inject) {
        Injection::Skip(why) => {
            tracing::info!(namespace = %ns, stream = wanted, "pod admitted unchanged: {why}");
            allow
        }
        Injection::Patch(patch) => {
            let ops = patch.0.len();
            match allow.clone().with_patch(patch) {
                Ok(r) => {
                    tracing::info!(namespace = %ns, stream = wanted, ops, "sidecar injected");
                    r
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admitting the pod without the sidecar: the patch did not serialize");
                    allow
                }
            }
        }
    }
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    certs: CertSlot,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(certs));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "webhook TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "webhook connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests;

//! The mutating admission webhook that injects the sidecar into pods of a workload a
//! TransitStream references (`spec.workloadRef`), the way service meshes inject proxies.
//!
//! - [`inject`]: pure: pod + TransitStream → skip or a JSON patch (what is added and why).
//! - [`tls`]: the webhook's own CA and serving certificate (rcgen), rotation before expiry.
//! - [`registration`]: keeps the `MutatingWebhookConfiguration`'s `caBundle` current.
//! - [`server`]: HTTPS `POST /mutate-pods` (AdmissionReview v1), certificates swapped live.
//!
//! Every replica serves the webhook (not only the leader): it needs only the TransitStream
//! named by the pod's label, fetched per request. The `MutatingWebhookConfiguration` says
//! `failurePolicy: Ignore`, so a pod created while no replica answers is admitted unchanged.

pub mod inject;
pub mod registration;
pub mod server;
pub mod tls;

//! The ports the programs listen on by default: a contract between programs. The broadcaster
//! and the sidecar bind them, the operator declares and probes them on the pods it builds, and
//! the CRD refuses the sidecar's for an app's metrics port. Each is written here once; the
//! binaries' defaults, the broadcaster's `Config::default` and the operator's builders take
//! them from here (docs/architecture.md lists them for people).

use std::net::{Ipv4Addr, SocketAddr};

/// The broadcaster's gRPC listener (TransitBroadcaster, health, reflection).
pub const BROADCASTER_GRPC: u16 = 50051;
/// The broadcaster's HTTP listener: `/metrics`, `/healthz`.
pub const BROADCASTER_HTTP: u16 = 9090;
/// The broadcaster's admin API (dumps, restarts), on loopback: only the sidecar beside it calls it.
pub const BROADCASTER_ADMIN: u16 = 9091;
/// The sidecar's report ingest, on loopback: the broadcaster (or any app) posts reports there.
pub const SIDECAR_INGEST: u16 = 9464;
/// The sidecar's public HTTP: `/healthz`, `/readyz`, `/metrics`, `/v1/status`.
pub const SIDECAR_HTTP: u16 = 8080;
/// The sidecar's admin API (bearer token): the operator asks it for dumps and soft restarts.
pub const SIDECAR_ADMIN: u16 = 8081;
/// The operator's HTTP: `/metrics`, `/healthz`, `/readyz`.
pub const OPERATOR_HTTP: u16 = 8080;

/// `0.0.0.0:port`: a listener every pod peer may reach.
pub fn any(port: u16) -> SocketAddr {
    (Ipv4Addr::UNSPECIFIED, port).into()
}

/// `127.0.0.1:port`: a listener only the pod's own containers reach.
pub fn loopback(port: u16) -> SocketAddr {
    (Ipv4Addr::LOCALHOST, port).into()
}

/// The URL a broadcaster in the sidecar's pod posts its reports to.
pub fn sidecar_report_url() -> String {
    format!("http://{}/v1/reports", loopback(SIDECAR_INGEST))
}

/// The broadcaster's admin API as the sidecar beside it reaches it.
pub fn broadcaster_admin_url() -> String {
    format!("http://{}", loopback(BROADCASTER_ADMIN))
}

#[cfg(test)]
mod tests;

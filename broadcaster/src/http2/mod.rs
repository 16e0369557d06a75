//! A lean HTTP/2 server (RFC 9113, HPACK per RFC 7541 decoded with `loona-hpack`) for the
//! gRPC listener: `--grpc-server lean`, the default.
//!
//! Why not tonic's (hyper, h2): at 1,000 subscribers h2 writes each DATA frame with its own
//! syscall and keeps about 23 KiB per idle subscriber; see `BENCHMARKS.md`, issue 14. Here one
//! task serves a TCP connection: Subscribe streams are polled inside it, only when woken,
//! and every ready update of every stream goes into one write buffer (`conn`, `send`);
//! everything else is bridged to the tonic services (`bridge`).
//!
//! Modules: `frame` (frame encode/decode, SETTINGS), `headers` (HPACK decode with limits,
//! response encoding), `flow` (windows), `wake` (per-stream wakers, the ready list),
//! `conn` (the connection task's loop and I/O), `recv` (frame handling), `send` (serving
//! ready streams), `spare` (a write buffer kept per thread), `stream`, `subscribe`, `bridge`.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::grpc::TransitService;

mod bridge;
mod conn;
mod flow;
mod frame;
mod headers;
mod recv;
mod send;
mod spare;
mod stream;
mod subscribe;
mod wake;

/// What every connection serves.
pub(crate) struct Services {
    pub transit: TransitService,
    /// Health, reflection, ListStreams and UNIMPLEMENTED for the rest.
    pub routes: tonic::service::Routes,
    pub shutdown: CancellationToken,
    /// After GOAWAY at shutdown, how long the streams still open may take.
    pub grace: Duration,
}

/// Accepts connections until shutdown, then waits for them to close.
pub(crate) async fn serve(listener: TcpListener, services: Services) {
    let services = Arc::new(services);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = services.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    // Without it Nagle's algorithm holds back small updates.
                    if let Err(e) = socket.set_nodelay(true) {
                        tracing::debug!(%peer, "TCP_NODELAY: {e}");
                    }
                    connections.spawn(conn::serve_connection(socket, peer, services.clone()));
                }
                Err(e) => {
                    tracing::warn!("gRPC accept failed: {e}");
                    // Out of descriptors, typically: let connections close before retrying.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests;

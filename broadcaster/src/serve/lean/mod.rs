//! The gRPC listener on the lean HTTP/2 server (`lean-h2`, `--grpc-server lean`, the
//! default): Subscribe is its local stream, served inside each connection's task; every other
//! method (health, reflection, ListStreams, UNIMPLEMENTED for the rest) is bridged to the
//! tonic services.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::codegen::Service as _;

use crate::serve::grpc::{SubscriberStream, TransitService};

mod subscribe;

use subscribe::WireUpdate;

/// What every connection serves.
pub(crate) struct Services {
    pub transit: TransitService,
    /// Health, reflection, ListStreams and UNIMPLEMENTED for the rest.
    pub routes: tonic::service::Routes,
    pub shutdown: CancellationToken,
    /// After GOAWAY at shutdown, how long the streams still open may take.
    pub grace: Duration,
    /// Connections closed for going past a limit, by reason (exported by `metrics`).
    pub limits_exceeded: lean_h2::Metrics,
}

/// Accepts connections until shutdown, then waits for them to close.
pub(crate) async fn serve(listener: TcpListener, services: Services) {
    let options = lean_h2::Options {
        metrics: services.limits_exceeded,
        ..lean_h2::Options::new(services.shutdown, services.grace)
    };
    let handler = Transit {
        transit: services.transit,
        routes: services.routes,
    };
    lean_h2::serve(listener, handler, options).await;
}

/// The broadcaster's side of the seam.
struct Transit {
    transit: TransitService,
    routes: tonic::service::Routes,
}

impl lean_h2::Handler for Transit {
    type Message = WireUpdate;
    type Stream = Updates;

    fn is_local(&self, path: &str) -> bool {
        path == subscribe::PATH
    }

    fn open(
        &self,
        _path: &str,
        message: &[u8],
        peer: SocketAddr,
    ) -> Result<Updates, tonic::Status> {
        subscribe::open(&self.transit, message, &peer.to_string()).map(Updates)
    }

    fn bridge(&self, request: http::Request<lean_h2::RequestBody>) -> lean_h2::BridgeFuture {
        let mut routes = self.routes.clone();
        let request = request.map(tonic::body::Body::new);
        Box::pin(async move {
            let Ok(response) = routes.call(request).await;
            response
        })
    }
}

/// A subscription's updates as gRPC messages.
pub(crate) struct Updates(SubscriberStream);

impl Stream for Updates {
    type Item = Result<WireUpdate, tonic::Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0)
            .poll_next(cx)
            .map(|item| item.map(|update| update.map(WireUpdate::new)))
    }
}

#[cfg(test)]
mod tests;

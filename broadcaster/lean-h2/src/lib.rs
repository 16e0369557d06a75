//! A lean HTTP/2 server (RFC 9113, HPACK per RFC 7541 decoded with `loona-hpack`) for gRPC
//! streaming.
//!
//! Why not hyper's h2: at 1,000 subscribers h2 writes each DATA frame with its own syscall
//! and keeps about 23 KiB per idle stream; see the broadcaster's `BENCHMARKS.md`. Here one
//! task serves a TCP connection: the local streams (server-streaming gRPC methods the
//! [`Handler`] opens) are polled inside it, only when woken, and every ready message of
//! every stream goes into one write buffer; every other request is bridged to an HTTP
//! service ([`Handler::bridge`]).
//!
//! The seam is [`Handler`], [`Message`], [`RequestBody`], [`Options`] and [`serve`];
//! everything else is private. Modules: `frame` (frame encode/decode, SETTINGS), `headers`
//! (HPACK decode with limits, response encoding), `flow` (windows), `wake` (per-stream
//! wakers, the ready list), `conn` (the connection task's loop and I/O), `recv` (frame
//! handling), `send` (serving ready streams), `spare` (a write buffer kept per thread),
//! `stream`, `grpc` (request message framing and checks), `bridge`.
#![forbid(unsafe_code)]
// Production code handles every error; `unwrap` is for tests (clippy.toml exempts them).
#![deny(clippy::unwrap_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

mod bridge;
mod conn;
mod encode;
mod flow;
mod frame;
mod grpc;
mod guard;
mod headers;
mod limits;
mod open;
mod recv;
mod send;
mod spare;
mod stream;
mod unhuff;
mod wake;

pub use bridge::RequestBody;
pub use limits::{Exceeded, Limits, Metrics, Rate};

/// A gRPC response message, length prefix included, as slices framed without joining them.
pub trait Message: Send + 'static {
    /// Its length in bytes, the 5-byte gRPC prefix included.
    fn len(&self) -> usize;
    /// Its bytes, in order: up to four slices (the unused ones empty).
    fn parts(&self) -> [&[u8]; 4];
    /// Never empty: a gRPC message has at least its prefix.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A boxed bridged response: what [`Handler::bridge`] returns.
pub type BridgeFuture = Pin<Box<dyn Future<Output = http::Response<tonic::body::Body>> + Send>>;

/// What the server asks of its user: which requests it serves inside the connection task
/// (server-streaming gRPC methods with one request message), and the HTTP service every
/// other request goes to.
pub trait Handler: Send + Sync + 'static {
    /// One response message of a local stream.
    type Message: Message;
    /// A local stream's response messages; the item `Err(status)` or the end (then
    /// `Status::ok`) ends the stream with those trailers. Polled only when its waker fires.
    type Stream: futures::Stream<Item = Result<Self::Message, tonic::Status>>
        + Unpin
        + Send
        + 'static;

    /// Whether requests for `path` are served locally ([`Handler::open`]) rather than
    /// bridged.
    fn is_local(&self, path: &str) -> bool;

    /// Opens a local stream for its request message (the gRPC prefix removed). An error is
    /// answered as a trailers-only response, exactly as tonic sends it.
    fn open(
        &self,
        path: &str,
        message: &[u8],
        peer: SocketAddr,
    ) -> Result<Self::Stream, tonic::Status>;

    /// Serves any other request (unary, client- or bidi-streaming, unknown paths). The
    /// request body reports what the service consumed, so the peer's window reopens as it
    /// reads.
    ///
    /// The returned future and its response body are polled by the connection's own task
    /// (no task per call: spawning one cost a unary call more than the call itself) and
    /// dropped when the peer resets the stream or the connection closes. So they must not
    /// block the thread: a service that blocks (sync I/O, a long computation) holds up every
    /// stream of its connection meanwhile, where a spawned task would hold only its worker
    /// thread. One that waits asynchronously holds up nothing. Run blocking work in
    /// `tokio::task::spawn_blocking` inside the service. The broadcaster's bridged services
    /// (tonic's health, reflection, `ListStreams`) answer from memory and never block.
    fn bridge(&self, request: http::Request<RequestBody>) -> BridgeFuture;
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Cancelled: GOAWAY on every connection; open streams get `grace` to finish.
    pub shutdown: CancellationToken,
    /// After GOAWAY at shutdown, how long the streams still open may take.
    pub grace: Duration,
    /// What a peer may make one connection do.
    pub limits: Limits,
    /// Connections closed for going past a limit, by reason.
    pub metrics: Metrics,
}

impl Options {
    /// The default limits, fresh metrics.
    pub fn new(shutdown: CancellationToken, grace: Duration) -> Self {
        Self {
            shutdown,
            grace,
            limits: Limits::default(),
            metrics: Metrics::default(),
        }
    }
}

/// What every connection shares.
struct Shared<H> {
    handler: H,
    options: Options,
}

/// Accepts connections until shutdown, then waits for them to close.
pub async fn serve<H: Handler>(listener: TcpListener, handler: H, options: Options) {
    let shared = Arc::new(Shared { handler, options });
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shared.options.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    // Without it Nagle's algorithm holds back small updates.
                    if let Err(e) = socket.set_nodelay(true) {
                        tracing::debug!(%peer, "TCP_NODELAY: {e}");
                    }
                    connections.spawn(conn::serve_connection(socket, peer, shared.clone()));
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

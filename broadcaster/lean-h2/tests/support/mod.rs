//! A test handler behind the seam: one local server-streaming method (`WATCH`) fed from a
//! broadcast channel, and a bridged unary echo for every other path; and the server started
//! on a loopback port.
#![allow(dead_code)]

pub mod raw;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use lean_h2::{BridgeFuture, Handler, Limits, Message, Metrics, Options, RequestBody};
use tokio::sync::broadcast;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;

/// The local streaming method.
pub const WATCH: &str = "/test.Feed/Watch";
/// A bridged unary method: answers its request message back.
pub const ECHO: &str = "/test.Feed/Echo";
/// A bridged method whose service never reads its request nor answers.
pub const STALL: &str = "/test.Feed/Stall";
/// A bridged method whose service future holds a [`Held`] guard and never answers.
pub const HOLD: &str = "/test.Feed/Hold";
/// A bridged method that answers one message, then its response body holds a [`Held`] guard
/// and never ends.
pub const HOLD_BODY: &str = "/test.Feed/HoldBody";
/// A request message `WATCH` refuses with NOT_FOUND.
pub const REFUSED: &[u8] = b"refuse me";

/// One gRPC message: the prefix and the payload.
pub struct Framed(Bytes);

impl Framed {
    pub fn new(payload: &[u8]) -> Self {
        let mut out = vec![0u8];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        Self(out.into())
    }
}

impl Message for Framed {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn parts(&self) -> [&[u8]; 4] {
        [&self.0, &[], &[], &[]]
    }
}

type Messages =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<Framed, tonic::Status>> + Send>>;

pub struct Feed {
    tx: broadcast::Sender<Bytes>,
    pub opened: Arc<AtomicUsize>,
    pub held: Arc<AtomicUsize>,
}

/// Counted in `held` while it lives: a bridged service's future or response body holds one,
/// so a test sees the server drop (cancel) it.
pub struct Held(Arc<AtomicUsize>);

impl Held {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A stream wrapper that is `Unpin`.
pub struct Watch(Messages);

impl futures::Stream for Watch {
    type Item = Result<Framed, tonic::Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.as_mut().poll_next(cx)
    }
}

impl Handler for Feed {
    type Message = Framed;
    type Stream = Watch;

    fn is_local(&self, path: &str) -> bool {
        path == WATCH
    }

    fn open(&self, _path: &str, message: &[u8], _peer: SocketAddr) -> Result<Watch, tonic::Status> {
        if message == REFUSED {
            return Err(tonic::Status::not_found("no such feed"));
        }
        self.opened.fetch_add(1, Ordering::SeqCst);
        let stream = tokio_stream::wrappers::BroadcastStream::new(self.tx.subscribe())
            .filter_map(|m| m.ok())
            .map(|m| Ok(Framed::new(&m)));
        Ok(Watch(Box::pin(stream)))
    }

    fn bridge(&self, request: http::Request<RequestBody>) -> BridgeFuture {
        let held = self.held.clone();
        Box::pin(async move {
            let path = request.uri().path().to_owned();
            if path == STALL {
                // Holds the request (its body unread) and never answers.
                let _held = &request;
                std::future::pending::<()>().await;
            }
            if path == HOLD {
                // Counted once the service runs, not when the call is made.
                let _held = Held::new(&held);
                std::future::pending::<()>().await;
            }
            if path == HOLD_BODY {
                return holding_body(Held::new(&held));
            }
            let body = request.into_body().collect().await.map(|b| b.to_bytes());
            let body: Bytes = body.unwrap_or_default();
            let (status, data) = if path == ECHO {
                ("0", body)
            } else {
                ("12", Bytes::new())
            };
            let frames = [
                Ok::<_, Infallible>(http_body::Frame::data(data)),
                Ok(http_body::Frame::trailers({
                    let mut t = http::HeaderMap::new();
                    t.insert("grpc-status", http::HeaderValue::from_static(status));
                    t
                })),
            ];
            let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
            http::Response::builder()
                .header("content-type", "application/grpc")
                .body(tonic::body::Body::new(body))
                .unwrap()
        })
    }
}

/// A response of one message whose body then never ends, holding `held`.
fn holding_body(held: Held) -> http::Response<tonic::body::Body> {
    let first = Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(&[
        0, 0, 0, 0, 1, b'x',
    ])));
    let rest = futures::stream::poll_fn(move |_| {
        let _held = &held;
        std::task::Poll::Pending
    });
    let body = http_body_util::StreamBody::new(futures::stream::iter([first]).chain(rest));
    http::Response::builder()
        .header("content-type", "application/grpc")
        .body(tonic::body::Body::new(body))
        .unwrap()
}

pub struct Server {
    pub addr: SocketAddr,
    pub tx: broadcast::Sender<Bytes>,
    pub opened: Arc<AtomicUsize>,
    /// [`Held`] guards alive: bridged services not yet dropped.
    pub held: Arc<AtomicUsize>,
    pub metrics: Metrics,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start() -> Self {
        Self::start_with(Limits::default()).await
    }

    pub async fn start_with(limits: Limits) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("lean_h2=debug")
            .try_init();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, _) = broadcast::channel(1024);
        let opened = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let feed = Feed {
            tx: tx.clone(),
            opened: opened.clone(),
            held: held.clone(),
        };
        let options = Options {
            limits,
            ..Options::new(shutdown.clone(), Duration::from_millis(500))
        };
        let metrics = options.metrics.clone();
        let task = tokio::spawn(lean_h2::serve(listener, feed, options));
        Self {
            addr,
            tx,
            opened,
            held,
            metrics,
            shutdown,
            task,
        }
    }

    /// Sends one message to every open `WATCH` stream.
    pub fn publish(&self, payload: &[u8]) {
        let _ = self.tx.send(Bytes::copy_from_slice(payload));
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

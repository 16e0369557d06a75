//! The gRPC surface: `stallwatch.transit.v1.TransitBroadcaster`, `grpc.health.v1.Health` and
//! server reflection, on one listener.
//!
//! Health service names: `""` is SERVING while the server runs (process liveness);
//! `stallwatch.transit.v1.TransitBroadcaster` is SERVING while every stream makes progress;
//! `stallwatch.transit.v1.TransitBroadcaster/<stream>` is NOT_SERVING while that stream's
//! dispatcher is dead, restarting or stuck. Everything turns NOT_SERVING at shutdown.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use stallwatch_core::taskdump::TaskKind;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::serve::grpc_health::HealthReporter;

use crate::generated::transit_v1::{
    BoundingBox, ListStreamsRequest, ListStreamsResponse, StreamInfo, SubscribeRequest,
};
use crate::pipeline::engine::Engine;
use crate::pipeline::spec::{BBox, Filter};
pub use server::{OutgoingUpdate, TransitServer};

/// The fully qualified service name, also the health service name of the whole API.
pub const SERVICE_NAME: &str = "stallwatch.transit.v1.TransitBroadcaster";

/// The health service name of one stream.
pub fn stream_health_name(stream: &str) -> String {
    format!("{SERVICE_NAME}/{stream}")
}

/// The status a subscriber's stream ends with when the server shuts down.
pub fn shutting_down() -> Status {
    Status::unavailable("server shutting down")
}

#[derive(Debug, Clone)]
pub struct TransitService {
    engine: Arc<Engine>,
    shutdown: CancellationToken,
}

impl TransitService {
    pub fn new(engine: Arc<Engine>, shutdown: CancellationToken) -> Self {
        Self { engine, shutdown }
    }
}

fn subscriber_filter(req: &SubscribeRequest) -> Result<Filter, Status> {
    let routes: std::collections::BTreeSet<String> = req
        .route_ids
        .iter()
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .collect();
    let bbox = req
        .bbox
        .map(|b| BBox::new(b.min_lat, b.min_lon, b.max_lat, b.max_lon))
        .transpose()
        .map_err(Status::invalid_argument)?;
    Ok(Filter {
        routes: (!routes.is_empty()).then_some(routes),
        bbox,
    })
}

/// A subscriber's stream looks at the shutdown signal when its queue runs dry and at least
/// once per this many updates: each look takes two locks that every subscriber shares (the
/// token's and its `Notify`'s), a cost per update at peak otherwise.
const SHUTDOWN_CHECK_EVERY: u32 = 32;

/// One subscriber's response stream. Written by hand (rather than with `unfold` and
/// `select!`) so an idle subscriber is a few hundred bytes and each update costs one poll of
/// its queue: the shutdown future is registered once, not once per update.
pub(crate) struct SubscriberStream {
    subscription: crate::pipeline::fanout::Subscription,
    _registration: crate::pipeline::tasks::Registration,
    shutdown: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    /// Updates returned since the shutdown signal was last polled.
    unchecked: u32,
    filter: Filter,
    /// Whether the subscriber asked for the original entity encodings.
    raw: bool,
    done: bool,
}

impl SubscriberStream {
    /// Whether the server is shutting down; registers `cx` to be woken when it does.
    fn poll_shutdown(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        use std::future::Future;
        self.unchecked = 0;
        if self.shutdown.as_mut().poll(cx).is_ready() {
            self.done = true;
            return true;
        }
        false
    }
}

impl Stream for SubscriberStream {
    type Item = Result<OutgoingUpdate, Status>;

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        // A stream whose queue never runs dry still ends within this many updates.
        if this.unchecked >= SHUTDOWN_CHECK_EVERY && this.poll_shutdown(cx) {
            return Poll::Ready(Some(Err(shutting_down())));
        }
        match this.subscription.poll_recv(cx) {
            // Before sleeping the stream registers for the shutdown wake too; shutdown wakes
            // it and finds the queue empty, so an idle subscriber hears of it at once.
            Poll::Pending if this.poll_shutdown(cx) => Poll::Ready(Some(Err(shutting_down()))),
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some((prepared, missed))) => {
                this.unchecked += 1;
                let body = match &prepared.view {
                    // A subscriber with its own filter, or who wants raw entities, gets its
                    // own encoding of the entities; the rest share the stream's.
                    Some(view) if this.raw || !this.filter.is_empty() => {
                        view.body(&this.filter, this.raw)
                    }
                    _ => prepared.body.clone(),
                };
                Poll::Ready(Some(Ok(OutgoingUpdate {
                    head: prepared.head.clone(),
                    body,
                    missed,
                })))
            }
        }
    }
}

/// A subscriber's stream of updates, ready for the wire.
pub type UpdateStream = Pin<Box<dyn Stream<Item = Result<OutgoingUpdate, Status>> + Send>>;

impl TransitService {
    /// The transport-neutral part of `Subscribe`, used by both gRPC servers: validate the
    /// request and open the subscriber's stream. `peer` names the client in the task dump.
    pub(crate) fn open_subscription(
        &self,
        req: &SubscribeRequest,
        peer: &str,
    ) -> Result<SubscriberStream, Status> {
        if self.shutdown.is_cancelled() {
            return Err(shutting_down());
        }
        let stream = self.engine.stream(&req.stream).ok_or_else(|| {
            Status::not_found(format!(
                "no stream {:?}; configured: {}",
                req.stream,
                self.engine
                    .streams()
                    .iter()
                    .map(|s| s.name().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let filter = subscriber_filter(req)?;
        let subscription = stream.hub.subscribe();
        let registration = self.engine.registry().register(
            format!("subscriber/{}/{}", stream.name(), subscription.id()),
            TaskKind::Subscriber,
            Some(stream.name()),
            Some(format!(
                "gRPC subscriber from {peer}; polled by its connection task"
            )),
        );
        Ok(SubscriberStream {
            subscription,
            _registration: registration,
            shutdown: Box::pin(self.shutdown.clone().cancelled_owned()),
            unchecked: 0,
            filter,
            raw: req.include_raw_entities,
            done: false,
        })
    }

    pub async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<UpdateStream>, Status> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".into());
        let updates = self.open_subscription(request.get_ref(), &peer)?;
        Ok(Response::new(Box::pin(updates)))
    }

    pub async fn list_streams(
        &self,
        _request: Request<ListStreamsRequest>,
    ) -> Result<Response<ListStreamsResponse>, Status> {
        let stuck_after = self.engine.stuck_after();
        let streams = self
            .engine
            .streams()
            .iter()
            .map(|s| {
                let r = s.report();
                StreamInfo {
                    name: r.name,
                    route_ids: s.spec.filter.routes.iter().flatten().cloned().collect(),
                    bbox: s.spec.filter.bbox.map(|b| BoundingBox {
                        min_lat: b.min_lat,
                        min_lon: b.min_lon,
                        max_lat: b.max_lat,
                        max_lon: b.max_lon,
                    }),
                    dispatcher_state: r.dispatcher.state.as_str().into(),
                    serving: s.is_serving(stuck_after),
                    subscribers: r.subscribers,
                    delivered_total: r.delivered_total,
                    quarantined_total: r.quarantined_total,
                    dropped_oldest_total: r.dropped_oldest_total,
                    channel_depth: r.channel.depth as u32,
                    channel_capacity: r.channel.capacity as u32,
                }
            })
            .collect();
        Ok(Response::new(ListStreamsResponse { streams }))
    }
}

/// Keeps the health service in step with the streams, every `every`, until `shutdown`; then
/// marks everything NOT_SERVING.
#[async_backtrace::framed]
pub async fn run_health_updater(
    engine: Arc<Engine>,
    reporter: HealthReporter,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut last: HashMap<String, ServingStatus> = HashMap::new();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let stopping = tokio::select! {
            () = shutdown.cancelled() => true,
            _ = ticker.tick() => false,
        };
        let stuck_after = engine.stuck_after();
        let mut all = true;
        let mut wanted = Vec::new();
        for s in engine.streams().iter() {
            let serving = !stopping && s.is_serving(stuck_after);
            all &= serving;
            // An unsupervised (legacy fault) stream's death must stay unlogged: that is the
            // failure being reproduced.
            wanted.push((stream_health_name(s.name()), serving, s.supervised));
        }
        let all_supervised = engine.streams().iter().all(|s| s.supervised);
        wanted.push((SERVICE_NAME.to_string(), all && !stopping, all_supervised));
        wanted.push((String::new(), !stopping, true));
        for (name, serving, log) in wanted {
            let status = if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            if last.get(&name) != Some(&status) {
                if status == ServingStatus::NotServing && !stopping && log {
                    tracing::warn!(service = %name, "health: NOT_SERVING");
                }
                reporter.set(&name, status);
                last.insert(name, status);
            }
        }
        if stopping {
            return;
        }
    }
}

/// Builds the health reporter and the `grpc.health.v1.Health` service reading from it.
pub fn health() -> (
    HealthReporter,
    tonic_health::pb::health_server::HealthServer<crate::serve::grpc_health::HealthService>,
) {
    let reporter = HealthReporter::default();
    // The server as a whole serves from the start, as tonic-health had it; streams follow on
    // the updater's first tick.
    reporter.set("", ServingStatus::Serving);
    let service = reporter.service();
    (reporter, service)
}

/// The TransitBroadcaster gRPC service.
pub fn transit_server(service: TransitService) -> TransitServer {
    TransitServer::new(service)
}

mod server {
    //! The TransitBroadcaster tower service, written by hand after the shape of a
    //! tonic-generated server (none is generated: `tests/generated_code.rs` builds only the
    //! client) and wire-identical to it, except that `Subscribe` writes each subscriber's update from bytes the dispatcher
    //! encoded once: fan-out to N subscribers costs N copies, not N clones and encodes.

    use std::convert::Infallible;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use bytes::{BufMut, Bytes};
    use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
    use tonic::codegen::{Body, BoxFuture, StdError, http};
    use tonic::{Request, Response, Status};

    use super::{SERVICE_NAME, TransitService, UpdateStream};
    use crate::generated::transit_v1::{ListStreamsRequest, ListStreamsResponse, SubscribeRequest};
    use crate::gtfs::fields::stream_update;

    /// One subscriber's next update: the shared header and entity encodings plus its own
    /// `missed` count.
    #[derive(Debug, Clone)]
    pub struct OutgoingUpdate {
        pub head: Bytes,
        pub body: Bytes,
        pub missed: u64,
    }

    impl OutgoingUpdate {
        /// The exact bytes a subscriber receives (a valid `StreamUpdate` encoding: a field
        /// appended after the others is equivalent to it being in order). Only the tests need
        /// it whole: the servers write `head`, `body` and `missed` as they are.
        #[cfg(test)]
        pub fn to_bytes(&self) -> Vec<u8> {
            let mut out = Vec::with_capacity(self.head.len() + self.body.len() + 11);
            self.write(&mut out);
            out
        }

        fn write(&self, dst: &mut impl BufMut) {
            dst.put_slice(&self.head);
            dst.put_slice(&self.body);
            if self.missed > 0 {
                prost::encoding::uint64::encode(stream_update::MISSED, &self.missed, dst);
            }
        }
    }

    #[derive(Debug, Default)]
    struct UpdateCodec;

    #[derive(Debug)]
    struct UpdateEncoder;

    impl Encoder for UpdateEncoder {
        type Item = OutgoingUpdate;
        type Error = Status;
        fn encode(&mut self, item: OutgoingUpdate, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            item.write(dst);
            Ok(())
        }

        fn buffer_settings(&self) -> BufferSettings {
            // tonic's default allocates an 8 KiB encode buffer per response stream up front,
            // which an idle subscriber carries for nothing; with 0 the first update
            // allocates what it needs and later ones reuse it once it has been written.
            BufferSettings::new(0, YIELD_THRESHOLD)
        }
    }

    /// Queued updates are encoded into one buffer until it holds this much, then handed to
    /// HTTP/2 as one chunk (tonic's default).
    const YIELD_THRESHOLD: usize = 32 * 1024;

    #[derive(Debug)]
    struct RequestDecoder(tonic_prost::ProstDecoder<SubscribeRequest>);

    impl Decoder for RequestDecoder {
        type Item = SubscribeRequest;
        type Error = Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<SubscribeRequest>, Status> {
            self.0.decode(src)
        }
    }

    impl Codec for UpdateCodec {
        type Encode = OutgoingUpdate;
        type Decode = SubscribeRequest;
        type Encoder = UpdateEncoder;
        type Decoder = RequestDecoder;
        fn encoder(&mut self) -> UpdateEncoder {
            UpdateEncoder
        }
        fn decoder(&mut self) -> RequestDecoder {
            RequestDecoder(
                tonic_prost::ProstCodec::<ListStreamsResponse, SubscribeRequest>::default()
                    .decoder(),
            )
        }
    }

    struct SubscribeSvc(Arc<TransitService>);

    impl tonic::server::ServerStreamingService<SubscribeRequest> for SubscribeSvc {
        type Response = OutgoingUpdate;
        type ResponseStream = UpdateStream;
        type Future = BoxFuture<Response<UpdateStream>, Status>;
        fn call(&mut self, request: Request<SubscribeRequest>) -> Self::Future {
            let inner = self.0.clone();
            Box::pin(async move { inner.subscribe(request).await })
        }
    }

    struct ListStreamsSvc(Arc<TransitService>);

    impl tonic::server::UnaryService<ListStreamsRequest> for ListStreamsSvc {
        type Response = ListStreamsResponse;
        type Future = BoxFuture<Response<ListStreamsResponse>, Status>;
        fn call(&mut self, request: Request<ListStreamsRequest>) -> Self::Future {
            let inner = self.0.clone();
            Box::pin(async move { inner.list_streams(request).await })
        }
    }

    /// `stallwatch.transit.v1.TransitBroadcaster`, ready for `Server::add_service`.
    #[derive(Debug, Clone)]
    pub struct TransitServer {
        inner: Arc<TransitService>,
    }

    impl TransitServer {
        pub fn new(service: TransitService) -> Self {
            Self {
                inner: Arc::new(service),
            }
        }
    }

    impl tonic::server::NamedService for TransitServer {
        const NAME: &'static str = SERVICE_NAME;
    }

    impl<B> tonic::codegen::Service<http::Request<B>> for TransitServer
    where
        B: Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Infallible>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<B>) -> Self::Future {
            let inner = self.inner.clone();
            match req.uri().path() {
                "/stallwatch.transit.v1.TransitBroadcaster/Subscribe" => Box::pin(async move {
                    let mut grpc = tonic::server::Grpc::new(UpdateCodec);
                    Ok(grpc.server_streaming(SubscribeSvc(inner), req).await)
                }),
                "/stallwatch.transit.v1.TransitBroadcaster/ListStreams" => Box::pin(async move {
                    let codec =
                        tonic_prost::ProstCodec::<ListStreamsResponse, ListStreamsRequest>::default(
                        );
                    let mut grpc = tonic::server::Grpc::new(codec);
                    Ok(grpc.unary(ListStreamsSvc(inner), req).await)
                }),
                _ => {
                    Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

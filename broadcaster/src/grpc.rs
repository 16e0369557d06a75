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
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::engine::Engine;
use crate::generated::transit_v1::transit_broadcaster_server::{
    TransitBroadcaster, TransitBroadcasterServer,
};
use crate::generated::transit_v1::{
    BoundingBox, ListStreamsRequest, ListStreamsResponse, StreamInfo, StreamUpdate,
    SubscribeRequest,
};
use crate::spec::{BBox, Filter};

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

type UpdateStream = Pin<Box<dyn Stream<Item = Result<StreamUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl TransitBroadcaster for TransitService {
    type SubscribeStream = UpdateStream;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        if self.shutdown.is_cancelled() {
            return Err(shutting_down());
        }
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".into());
        let req = request.into_inner();
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
        let filter = subscriber_filter(&req)?;
        let subscription = stream.hub.subscribe();
        let registration = self.engine.registry().register(
            format!("subscriber/{}/{}", stream.name(), subscription.id()),
            TaskKind::Subscriber,
            Some(stream.name()),
            Some(format!(
                "gRPC subscriber from {peer}; polled by its connection task"
            )),
        );
        struct State {
            subscription: crate::hub::Subscription,
            _registration: crate::tasks::Registration,
            shutdown: CancellationToken,
            filter: Filter,
            done: bool,
        }
        let state = State {
            subscription,
            _registration: registration,
            shutdown: self.shutdown.clone(),
            filter,
            done: false,
        };
        let updates = futures::stream::unfold(state, |mut st| async move {
            if st.done {
                return None;
            }
            let next = tokio::select! {
                biased;
                () = st.shutdown.cancelled() => None,
                next = st.subscription.recv() => Some(next),
            };
            match next {
                None => {
                    st.done = true;
                    Some((Err(shutting_down()), st))
                }
                Some(None) => None,
                Some(Some((update, missed))) => {
                    let mut out = StreamUpdate::clone(&update);
                    out.missed = missed;
                    if !st.filter.is_empty() {
                        out.vehicles
                            .retain(|v| st.filter.matches(&v.route_id, v.latitude, v.longitude));
                    }
                    Some((Ok(out), st))
                }
            }
        });
        Ok(Response::new(Box::pin(updates)))
    }

    async fn list_streams(
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
            wanted.push((stream_health_name(s.name()), serving));
        }
        wanted.push((SERVICE_NAME.to_string(), all && !stopping));
        wanted.push((String::new(), !stopping));
        for (name, serving) in wanted {
            let status = if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            if last.get(&name) != Some(&status) {
                if status == ServingStatus::NotServing && !stopping {
                    tracing::warn!(service = %name, "health: NOT_SERVING");
                }
                reporter.set_service_status(&name, status).await;
                last.insert(name, status);
            }
        }
        if stopping {
            return;
        }
    }
}

/// Builds the health reporter with every service name registered up front.
pub fn health() -> (
    HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    tonic_health::server::health_reporter()
}

/// The TransitBroadcaster server with generous message limits for large feeds.
pub fn transit_server(service: TransitService) -> TransitBroadcasterServer<TransitService> {
    TransitBroadcasterServer::new(service).max_encoding_message_size(64 * 1024 * 1024)
}

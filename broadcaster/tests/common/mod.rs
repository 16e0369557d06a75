//! Helpers shared by the integration tests: feeds, a fake sidecar, gRPC clients, waiting, the
//! real binary as a process (`binary`).
#![allow(dead_code)]

pub mod binary;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use prost::Message;
use stallwatch_core::report::{Report, parse_report};

/// A test whose outside tool (nats-server, grpcio) is missing prints `SKIPPED: why` and passes,
/// so `cargo test` works before `scripts/setup.sh` ran; but where the suite promises those tools
/// (`scripts/test.sh` sets `STALLWATCH_REQUIRE_TEST_TOOLS=1` after installing them, and any run
/// with `CI` set) a missing one fails the test instead of passing it unseen.
pub fn skip_or_fail(why: &str) {
    let required = std::env::var_os("CI").is_some()
        || std::env::var_os("STALLWATCH_REQUIRE_TEST_TOOLS").is_some_and(|v| v == "1");
    assert!(!required, "a required test tool is missing: {why}");
    eprintln!("SKIPPED: {why}");
}
use stallwatch_testkit::wait::WAIT;
use tokio_util::sync::CancellationToken;
use transit_broadcaster::generated::transit_realtime::{
    FeedEntity, FeedHeader, FeedMessage, Position, TripDescriptor, VehicleDescriptor,
    VehiclePosition,
};
use transit_broadcaster::generated::transit_v1::transit_broadcaster_client::TransitBroadcasterClient;
use transit_broadcaster::generated::transit_v1::{StreamUpdate, SubscribeRequest};

pub fn entity(vehicle: &str, route: &str, lat: f32, lon: f32) -> FeedEntity {
    FeedEntity {
        id: format!("e-{vehicle}"),
        vehicle: Some(VehiclePosition {
            trip: Some(TripDescriptor {
                trip_id: Some(format!("T-{vehicle}")),
                route_id: Some(route.into()),
                start_date: Some("20261128".into()),
                ..Default::default()
            }),
            vehicle: Some(VehicleDescriptor {
                id: Some(vehicle.into()),
                ..Default::default()
            }),
            position: Some(Position {
                latitude: Some(lat),
                longitude: Some(lon),
                bearing: Some(10.0),
                odometer: None,
                speed: Some(5.0),
            }),
            timestamp: Some(1_795_837_200),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn feed_of(entities: Vec<FeedEntity>) -> Bytes {
    FeedMessage {
        header: FeedHeader {
            gtfs_realtime_version: "2.0".into(),
            incrementality: None,
            timestamp: Some(1_795_837_200),
            feed_version: None,
        },
        entity: entities,
    }
    .encode_to_vec()
    .into()
}

/// A valid feed with vehicles `V1` (route R1) and `V2` (route R2).
pub fn good_feed() -> Bytes {
    feed_of(vec![
        entity("V1", "R1", 52.5, 13.4),
        entity("V2", "R2", 52.6, 13.5),
    ])
}

/// A feed with one valid vehicle (`V1`, R1) and one with a NaN latitude (`BAD`, R1).
pub fn half_bad_feed() -> Bytes {
    feed_of(vec![
        entity("V1", "R1", 52.5, 13.4),
        entity("BAD", "R1", f32::NAN, 13.4),
    ])
}

pub async fn client(addr: SocketAddr) -> TransitBroadcasterClient<tonic::transport::Channel> {
    TransitBroadcasterClient::connect(format!("http://{addr}"))
        .await
        .expect("connect to the broadcaster")
}

pub async fn subscribe(addr: SocketAddr, stream: &str) -> tonic::Streaming<StreamUpdate> {
    client(addr)
        .await
        .subscribe(SubscribeRequest {
            stream: stream.into(),
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner()
}

pub async fn next_update(s: &mut tonic::Streaming<StreamUpdate>) -> StreamUpdate {
    tokio::time::timeout(WAIT, s.message())
        .await
        .expect("an update within the timeout")
        .expect("no stream error")
        .expect("stream not ended")
}

/// A stand-in for the sidecar's report ingest: validates every report with the real parser,
/// can be made slow, and can be stopped and restarted on the same port.
#[derive(Clone)]
pub struct FakeSidecar {
    pub addr: SocketAddr,
    pub reports: Arc<Mutex<Vec<Report>>>,
    pub requests: Arc<AtomicU64>,
    pub invalid: Arc<Mutex<Vec<String>>>,
    pub delay: Arc<Mutex<Duration>>,
    stop: CancellationToken,
}

#[derive(Clone)]
struct SidecarState {
    reports: Arc<Mutex<Vec<Report>>>,
    requests: Arc<AtomicU64>,
    invalid: Arc<Mutex<Vec<String>>>,
    delay: Arc<Mutex<Duration>>,
}

async fn ingest(State(s): State<SidecarState>, body: Bytes) -> (StatusCode, &'static str) {
    s.requests.fetch_add(1, Ordering::SeqCst);
    let delay = *s.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match parse_report(&body) {
        Ok(r) => {
            s.reports.lock().unwrap().push(r);
            (StatusCode::ACCEPTED, "{\"accepted\":true}")
        }
        Err(e) => {
            s.invalid.lock().unwrap().push(e.to_string());
            (StatusCode::BAD_REQUEST, "{\"error\":\"invalid\"}")
        }
    }
}

impl FakeSidecar {
    pub async fn start() -> Self {
        Self::start_on(([127, 0, 0, 1], 0).into()).await
    }

    pub async fn start_on(addr: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind sidecar");
        let addr = listener.local_addr().unwrap();
        let me = Self {
            addr,
            reports: Default::default(),
            requests: Default::default(),
            invalid: Default::default(),
            delay: Default::default(),
            stop: CancellationToken::new(),
        };
        me.serve(listener);
        me
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let state = SidecarState {
            reports: self.reports.clone(),
            requests: self.requests.clone(),
            invalid: self.invalid.clone(),
            delay: self.delay.clone(),
        };
        let app = axum::Router::new()
            .route("/v1/reports", axum::routing::post(ingest))
            .with_state(state);
        let stop = self.stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .unwrap();
        });
    }

    pub fn url(&self) -> String {
        format!("http://{}/v1/reports", self.addr)
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Starts again on the same port, keeping what was received.
    pub async fn restart(&mut self) {
        self.stop = CancellationToken::new();
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("rebind sidecar on {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    pub fn count(&self) -> usize {
        self.reports.lock().unwrap().len()
    }

    pub fn last(&self) -> Option<Report> {
        self.reports.lock().unwrap().last().cloned()
    }
}

/// A real `nats-server` child process on a free loopback port; killed on drop.
pub struct NatsServer {
    pub port: u16,
    child: std::process::Child,
}

impl NatsServer {
    /// `None` (with a message) when the `nats-server` binary is not installed.
    pub fn start_on(port: u16) -> Option<Self> {
        let child = match std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                skip_or_fail(
                    "nats-server is not installed (scripts/setup.sh installs it: apt-get install nats-server)",
                );
                return None;
            }
            Err(e) => panic!("cannot start nats-server: {e}"),
        };
        Some(Self { port, child })
    }

    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "nats-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `shared/gtfs-rt/`, the real captures (`stallwatch_testkit::gtfs_rt::dir`). `None` (and a
/// line saying the test is skipped) when it is nowhere.
pub fn gtfs_rt_dir() -> Option<std::path::PathBuf> {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = stallwatch_testkit::gtfs_rt::dir(manifest);
    if found.is_none() {
        eprintln!(
            "SKIPPED: shared/gtfs-rt/ (the real GTFS-realtime captures) not found beside {} or its ancestors; set STALLWATCH_GTFS_RT_DIR",
            manifest.display()
        );
    }
    found
}

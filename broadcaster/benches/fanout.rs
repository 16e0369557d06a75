//! Broadcaster benchmarks; prints tables. Run with `cargo bench -p transit-broadcaster`.
//!
//! Every gRPC row is measured for both HTTP/2 servers of the gRPC listener, `gRPC-lean` (ours,
//! the default) and `gRPC-tonic` (hyper/h2), in the same run (`BENCH_GRPC_SERVERS=lean`
//! narrows it); ratios to nats-server come first.
//!
//! 1. Fan-out over real gRPC on loopback, ~1 KiB updates, 1 / 100 / 1,000 subscribers:
//!    deliveries/s at peak and p50/p99 latency at half and a tenth of peak, side by side in the same run
//!    with a real `nats-server` fanning the same payloads to the same number of async-nats
//!    subscribers (spread over the same number of connections); server CPU per delivery at
//!    peak and at each paced load (paced, updates reach a subscriber one at a time).
//! 2. Reporting overhead: peak throughput with reports on (to a local fake sidecar, 250 ms)
//!    vs off, alternated in the same run.
//! 3. Memory per idle subscriber: RSS delta of a real `transit-broadcaster serve` process over
//!    1,000 idle subscribers on 10 and on 1,000 connections, 10,000 on their own connections,
//!    and 1,000 connections without a subscriber (`memory.rs`).
//! 4. Scale: 1,000 and 10,000 subscribers of a real `transit-broadcaster serve` process at one
//!    ~1 KiB update per second, each on its own HTTP/2 connection (`scale.rs`), beside
//!    nats-server and a TCP floor (`floor.rs`), read by light clients (`scale_clients.rs`).
//! 5. Unary calls (health Check, ListStreams): calls/s and server CPU per call (`unary.rs`).
//! 6. Under attack: server RSS and CPU under each HTTP/2 attack class, and whether a
//!    subscriber keeps receiving (`hostile.rs`).
//!
//! The broadcaster runs in-process on its own 2-thread runtime; clients run on another; the
//! machine's cores are shared by everything, nats-server included. `BENCH_SCALE` (default 1.0)
//! scales the message counts. Without `nats-server` on PATH the NATS column says so.

#[path = "common/light_subscribe.rs"]
mod light_subscribe;
use light_subscribe::subscribe_light;
#[path = "common/vehicle_feed.rs"]
mod vehicle_feed;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vehicle_feed::vehicle_feed;

use bytes::Bytes;
use futures::StreamExt;
use prost::Message;
use stallwatch_core::clock::now_us;
use stallwatch_testkit::net::free_port;
use tonic::transport::Channel;
use transit_broadcaster::generated::transit_v1::StreamUpdate;
use transit_broadcaster::pipeline::source::SourceSpec;
use transit_broadcaster::{Config, GrpcServer, Running};

#[path = "fanout/floor.rs"]
mod floor;
#[path = "fanout/hostile.rs"]
mod hostile;
#[path = "fanout/memory.rs"]
mod memory;
#[path = "fanout/scale.rs"]
mod scale;
#[path = "fanout/scale_clients.rs"]
mod scale_clients;
#[path = "fanout/targets.rs"]
mod targets;
#[path = "fanout/unary.rs"]
mod unary;

const SUBSCRIBER_COUNTS: [usize; 3] = [1, 100, 1000];
/// Deliveries per peak round (messages = this / subscribers).
const DELIVERIES_PER_ROUND: f64 = 200_000.0;
const LATENCY_ROUND: Duration = Duration::from_secs(2);
/// Latency is measured with messages paced at these fractions of each system's own peak
/// (`BENCH_LATENCY_FRACTIONS=0.5,0.1` overrides).
const LATENCY_FRACTIONS: [f64; 2] = [0.5, 0.1];

fn latency_fractions() -> Vec<f64> {
    std::env::var("BENCH_LATENCY_FRACTIONS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| LATENCY_FRACTIONS.to_vec())
}
const MAX_CONNECTIONS: usize = 100;
/// Client HTTP/2 receive windows, as a throughput-minded client would configure them.
const CLIENT_STREAM_WINDOW: u32 = 1 << 20;
const CLIENT_CONNECTION_WINDOW: u32 = 8 << 20;

/// `BENCH_SUBSCRIBERS=100` runs one subscriber count; `BENCH_SECTIONS=fanout,overhead,memory,scale,unary,hostile`
/// picks sections (default: all); `BENCH_SCALE_SUBSCRIBERS=1000,10000` the scale section's counts,
/// `BENCH_SCALE_CLIENT=light|real` its load generator, `BENCH_SCALE_CONNECTIONS=100` caps its
/// connections (the real clients then multiplex subscribers over them).
fn subscriber_counts() -> Vec<usize> {
    std::env::var("BENCH_SUBSCRIBERS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| SUBSCRIBER_COUNTS.to_vec())
}

fn scale_subscriber_counts() -> Vec<usize> {
    std::env::var("BENCH_SCALE_SUBSCRIBERS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1000, 10_000])
}

/// The gRPC servers measured side by side (`BENCH_GRPC_SERVERS=lean,tonic`, the default).
fn grpc_servers() -> Vec<GrpcServer> {
    std::env::var("BENCH_GRPC_SERVERS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![GrpcServer::Lean, GrpcServer::Tonic])
}

/// A gRPC server's name in the tables.
fn system_name(server: GrpcServer) -> &'static str {
    match server {
        GrpcServer::Lean => "gRPC-lean",
        GrpcServer::Tonic => "gRPC-tonic",
    }
}

fn section(name: &str) -> bool {
    std::env::var("BENCH_SECTIONS").map_or(true, |s| s.split(',').any(|x| x.trim() == name))
}

fn scale() -> f64 {
    std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

/// A feed whose prepared update encodes to about 1 KiB.
fn feed_for_1kib() -> (Bytes, usize) {
    (1..)
        .map(|n| {
            let bytes = vehicle_feed(n);
            let item = transit_broadcaster::pipeline::channel::Item::new(bytes.clone());
            let mut update =
                transit_broadcaster::pipeline::prepare::prepare(&Default::default(), &item)
                    .unwrap()
                    .to_update();
            update.stream = "all".into();
            update.seq = 1_000_000;
            (bytes, update.encoded_len())
        })
        .find(|(_, size)| *size >= 1000)
        .unwrap()
}

/// A 1 KiB NATS payload: an encoded StreamUpdate carrying the sequence and send time.
fn nats_payload(template: &StreamUpdate, seq: u64) -> Bytes {
    let mut u = template.clone();
    u.seq = seq;
    u.received_at_us = now_us();
    Bytes::from(u.encode_to_vec())
}

#[derive(Debug, Default, Clone)]
struct Round {
    deliveries: u64,
    expected: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
    /// Server CPU (user + system) over the round, in seconds.
    server_cpu_s: f64,
    /// The load generator's CPU (its `bench-clients` threads) over the round, in seconds.
    client_cpu_s: f64,
}

impl Round {
    /// Server CPU per delivery, in µs.
    fn cpu_per_delivery_us(&self) -> f64 {
        self.server_cpu_s * 1e6 / self.deliveries.max(1) as f64
    }
    /// Client CPU per delivery, in µs.
    fn client_cpu_per_delivery_us(&self) -> f64 {
        self.client_cpu_s * 1e6 / self.deliveries.max(1) as f64
    }
    fn rate(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        let i = ((v.len() - 1) as f64 * p).round() as usize;
        v[i] as f64 / 1000.0
    }
}

/// What a benchmark client decodes of each update, in both systems: the sequence number and
/// the send time (fields 2 and 4 of `StreamUpdate`; protobuf skips the rest). The same light
/// decode on both sides keeps the comparison about fan-out, not about client-side parsing.
#[derive(Clone, PartialEq, prost::Message)]
struct UpdateHeader {
    #[prost(uint64, tag = "2")]
    seq: u64,
    #[prost(uint64, tag = "4")]
    received_at_us: u64,
}

/// One system's results at one subscriber count: peak, then one round per latency fraction.
struct SystemRow {
    system: &'static str,
    peak: Round,
    latency: Vec<Round>,
}

/// One subscriber count's results: each gRPC server, then NATS when it ran.
struct Row {
    subs: usize,
    grpc: Vec<SystemRow>,
    nats: Option<SystemRow>,
}

/// Per-subscriber receive loop result.
#[derive(Default)]
struct SubResult {
    received: u64,
    latencies_us: Vec<u64>,
    done_at: Option<Instant>,
}

// ---------------------------------------------------------------- gRPC

/// `/proc` CPU times are in clock ticks, 100 per second on Linux.
const CLOCK_TICKS: f64 = 100.0;

/// CPU ticks of this process's `bench-server` threads: the in-process broadcaster's share.
fn bench_server_cpu_ticks() -> u64 {
    thread_cpu_ticks("bench-server")
}

/// CPU ticks of this process's `bench-clients` threads: the load generator's share.
fn bench_clients_cpu_ticks() -> u64 {
    thread_cpu_ticks("bench-clients")
}

/// CPU ticks of this process's threads whose name starts with `prefix`.
fn thread_cpu_ticks(prefix: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
        })
        .map(|t| scale::stat_cpu_ticks(&t.path().join("stat")))
        .sum()
}

async fn grpc_channels(addr: std::net::SocketAddr, n: usize) -> Vec<Channel> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(
            Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .tcp_nodelay(true)
                .initial_stream_window_size(CLIENT_STREAM_WINDOW)
                .initial_connection_window_size(CLIENT_CONNECTION_WINDOW)
                .connect()
                .await
                .expect("connect"),
        );
    }
    out
}

/// Runs one gRPC round: `subs` subscribers, `messages` pushes, paced at `rate` msgs/s or as
/// fast as the pipeline takes them.
async fn grpc_round(
    running: &Running,
    client_rt: &tokio::runtime::Handle,
    subs: usize,
    messages: u64,
    rate: Option<f64>,
    feed: &Bytes,
) -> Round {
    let stream = running.stream("all").unwrap();
    let channels = grpc_channels(running.grpc_addr, subs.min(MAX_CONNECTIONS)).await;
    let first_seq = stream.last_seq() + 1;
    let last_seq = first_seq + messages - 1;
    let results: Arc<Mutex<Vec<SubResult>>> = Default::default();
    let mut tasks = Vec::with_capacity(subs);
    for i in 0..subs {
        let channel = channels[i % channels.len()].clone();
        let results = results.clone();
        tasks.push(client_rt.spawn(async move {
            let mut updates = subscribe_light::<UpdateHeader>(channel, 4 << 20).await;
            let mut r = SubResult {
                latencies_us: Vec::with_capacity(messages as usize),
                ..Default::default()
            };
            while let Ok(Some(u)) = updates.message().await {
                if u.seq < first_seq {
                    continue;
                }
                r.received += 1;
                r.latencies_us
                    .push(now_us().saturating_sub(u.received_at_us));
                if u.seq >= last_seq {
                    break;
                }
            }
            r.done_at = Some(Instant::now());
            results.lock().unwrap().push(r);
        }));
    }
    while stream.hub.subscriber_count() < subs {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ingest = running.ingest();
    let (cpu_start, client_cpu_start) = (bench_server_cpu_ticks(), bench_clients_cpu_ticks());
    let start = Instant::now();
    let period = rate.map(|r| Duration::from_secs_f64(1.0 / r));
    // At peak, everything is pushed at once (the bench channel is deep enough to hold it all):
    // the pipeline runs flat out and nothing spins waiting for it.
    publish_round(period, || async {
        for k in 0..messages {
            pace(start, period, k).await;
            ingest.push(feed.clone());
        }
    })
    .await;
    let deadline = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(deadline);
    for t in tasks {
        tokio::select! {
            _ = t => {}
            _ = &mut deadline => break,
        }
    }
    let results = std::mem::take(&mut *results.lock().unwrap());
    let end = results
        .iter()
        .filter_map(|r| r.done_at)
        .max()
        .unwrap_or_else(Instant::now);
    let mut round = Round {
        expected: messages * subs as u64,
        elapsed: end - start,
        server_cpu_s: (bench_server_cpu_ticks() - cpu_start) as f64 / CLOCK_TICKS,
        client_cpu_s: (bench_clients_cpu_ticks() - client_cpu_start) as f64 / CLOCK_TICKS,
        ..Default::default()
    };
    for r in results {
        round.deliveries += r.received;
        round.latencies_us.extend(r.latencies_us);
    }
    drop(channels);
    while stream.hub.subscriber_count() > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    round
}

/// Runs the publishing side of a round. A paced round's publisher gets a thread of its own,
/// with its own runtime and timer: the upstream feed does not run on the subscribers' machine,
/// and on the bench's runtimes its timer fired late whenever the clients were busy, so the
/// catch-up arrived as a burst (both systems alike). At peak it stays on the bench's runtime,
/// where sharing the clients' CPU keeps it from outrunning them: a free-running publisher made
/// nats-server cut its one subscriber off as a slow consumer.
async fn publish_round<T: Send, F: std::future::Future<Output = T>>(
    period: Option<Duration>,
    publish: impl FnOnce() -> F + Send,
) -> T {
    if period.is_none() {
        return publish().await;
    }
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("bench-publisher".into())
            .spawn_scoped(scope, || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(publish())
            })
            .unwrap()
            .join()
            .unwrap()
    })
}

/// Waits until the `k`-th message of a round paced at `period` is due (at once at peak).
async fn pace(start: Instant, period: Option<Duration>, k: u64) {
    if let Some(p) = period {
        tokio::time::sleep_until((start + p.mul_f64(k as f64)).into()).await;
    }
}

// ---------------------------------------------------------------- NATS

struct NatsServer(Child, u16);

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_nats() -> Option<NatsServer> {
    let port = free_port();
    let child = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(NatsServer(child, port))
}

async fn nats_round(
    nats: &NatsServer,
    client_rt: &tokio::runtime::Handle,
    subs: usize,
    messages: u64,
    rate: Option<f64>,
    template: &StreamUpdate,
    round_id: u64,
) -> Round {
    let (pid, url) = (nats.0.id(), format!("127.0.0.1:{}", nats.1));
    let subject = format!("bench.{round_id}");
    let mut clients = Vec::new();
    for _ in 0..subs.min(MAX_CONNECTIONS) {
        clients.push(
            async_nats::ConnectOptions::new()
                .subscription_capacity(1 << 16)
                .connect(url.as_str())
                .await
                .expect("nats connect"),
        );
    }
    let results: Arc<Mutex<Vec<SubResult>>> = Default::default();
    let ready = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..subs {
        let client = clients[i % clients.len()].clone();
        let results = results.clone();
        let ready = ready.clone();
        let subject = subject.clone();
        tasks.push(client_rt.spawn(async move {
            let mut sub = client.subscribe(subject).await.expect("nats subscribe");
            client.flush().await.expect("flush");
            ready.fetch_add(1, Ordering::SeqCst);
            let mut r = SubResult {
                latencies_us: Vec::with_capacity(messages as usize),
                ..Default::default()
            };
            while let Some(msg) = sub.next().await {
                let u = UpdateHeader::decode(msg.payload).expect("decode");
                r.received += 1;
                r.latencies_us
                    .push(now_us().saturating_sub(u.received_at_us));
                if u.seq >= messages {
                    break;
                }
            }
            r.done_at = Some(Instant::now());
            results.lock().unwrap().push(r);
        }));
    }
    while ready.load(Ordering::SeqCst) < subs as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Let the server register every subscription before publishing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (cpu_start, client_cpu_start) = (scale::cpu_ticks(pid), bench_clients_cpu_ticks());
    let period = rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let start = publish_round(period, || async {
        // The publisher's connection task lives on this thread's runtime too.
        let publisher = async_nats::connect(url.as_str()).await.expect("publisher");
        let start = Instant::now();
        for seq in 1..=messages {
            pace(start, period, seq - 1).await;
            publisher
                .publish(subject.clone(), nats_payload(template, seq))
                .await
                .expect("publish");
        }
        publisher.flush().await.expect("flush");
        start
    })
    .await;
    let deadline = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(deadline);
    for t in tasks {
        tokio::select! {
            _ = t => {}
            _ = &mut deadline => break,
        }
    }
    let results = std::mem::take(&mut *results.lock().unwrap());
    let end = results
        .iter()
        .filter_map(|r| r.done_at)
        .max()
        .unwrap_or_else(Instant::now);
    let mut round = Round {
        expected: messages * subs as u64,
        elapsed: end - start,
        server_cpu_s: (scale::cpu_ticks(pid) - cpu_start) as f64 / CLOCK_TICKS,
        client_cpu_s: (bench_clients_cpu_ticks() - client_cpu_start) as f64 / CLOCK_TICKS,
        ..Default::default()
    };
    for r in results {
        round.deliveries += r.received;
        round.latencies_us.extend(r.latencies_us);
    }
    round
}

// ---------------------------------------------------------------- setup

fn runtime(threads: usize, name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

fn start_broadcaster(
    server_rt: &tokio::runtime::Runtime,
    report_url: Option<String>,
    grpc_server: GrpcServer,
) -> Running {
    server_rt
        .block_on(transit_broadcaster::start(Config {
            // Deep enough to hold a whole peak round, so the benchmark measures fan-out rather
            // than drop-oldest; subscriber queues as deep as async-nats' default.
            channel_capacity: 1 << 20,
            subscriber_queue: 1 << 16,
            report_url,
            admin_addr: None,
            grpc_server,
            ..Config::loopback(SourceSpec::Manual)
        }))
        .expect("start broadcaster")
}

async fn fake_sidecar() -> (String, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let app = axum::Router::new().route(
        "/v1/reports",
        axum::routing::post(move |body: Bytes| {
            let c = c.clone();
            async move {
                stallwatch_core::report::parse_report(&body).expect("valid report");
                c.fetch_add(1, Ordering::Relaxed);
                (axum::http::StatusCode::ACCEPTED, "{\"accepted\":true}")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/reports", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, count)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing useful either.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // The scale section's TCP floor runs this binary as its server process.
    if let Some(record_len) = std::env::var(floor::RECORD_LEN_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
    {
        floor::serve(record_len);
        return;
    }
    let scale = scale();
    let server_rt = runtime(2, "bench-server");
    let client_rt = runtime(2, "bench-clients");
    let (feed, update_size) = feed_for_1kib();
    let template = {
        let item = transit_broadcaster::pipeline::channel::Item::new(feed.clone());
        let mut u = transit_broadcaster::pipeline::prepare::prepare(&Default::default(), &item)
            .unwrap()
            .to_update();
        u.stream = "all".into();
        u
    };
    // Before nats-server starts, so it inherits the raised open-file limit too.
    scale::raise_fd_limit();
    let nats = start_nats();
    println!("# transit-broadcaster fan-out benchmark");
    println!(
        "update size: {update_size} B encoded (gRPC StreamUpdate; the NATS payload is the same message, {} B)",
        nats_payload(&template, 1_000_000).len()
    );
    println!(
        "connections: min(subscribers, {MAX_CONNECTIONS}) for both systems (gRPC client windows 1 MiB/stream, 8 MiB/connection); clients of both decode seq + timestamp only; broadcaster in-process on 2 worker threads, clients on 2 more, nats-server {}; {} CPUs shared",
        if nats.is_some() {
            "as a child process"
        } else {
            "NOT FOUND (install nats-server)"
        },
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
    );
    println!();

    // 1. Fan-out.
    let mut fanout_rows = None;
    if section("fanout") {
        fanout_rows = Some(fanout(
            &server_rt,
            &client_rt,
            nats.as_ref(),
            &feed,
            &template,
            scale,
        ));
    }

    // 2. Reporting overhead.
    if section("overhead") {
        let subs = 100;
        let messages = ((2.0 * DELIVERIES_PER_ROUND * scale) / subs as f64).max(50.0) as u64;
        let (url, reports) = server_rt.block_on(fake_sidecar());
        let mut by_mode: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for i in 0..14 {
            let on = i % 2 == 1;
            let running =
                start_broadcaster(&server_rt, on.then(|| url.clone()), GrpcServer::default());
            // Let a few reports go out before measuring.
            std::thread::sleep(Duration::from_millis(600));
            let r = client_rt.block_on(grpc_round(
                &running,
                client_rt.handle(),
                subs,
                messages,
                None,
                &feed,
            ));
            by_mode
                .entry(if on { "on" } else { "off" })
                .or_default()
                .push(r.rate());
            server_rt.block_on(running.shutdown());
        }
        let median = |v: &Vec<f64>| {
            let mut v = v.clone();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        };
        let off = median(&by_mode["off"]);
        let on = median(&by_mode["on"]);
        println!(
            "## 2. Reporting overhead ({subs} subscribers, peak, 7 alternating runs each, median)"
        );
        println!();
        println!("| reports | deliveries/s (runs) | median |");
        println!("|---|---|---:|");
        for mode in ["off", "on"] {
            println!(
                "| {mode} | {} | {:.0} |",
                by_mode[mode]
                    .iter()
                    .map(|r| format!("{r:.0}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                median(&by_mode[mode])
            );
        }
        println!();
        println!(
            "throughput difference: {:+.1}% (off - on, relative to off; {} reports accepted by the fake sidecar)",
            (off - on) / off * 100.0,
            reports.load(Ordering::Relaxed)
        );
        // The direct cost: build and send reports back to back.
        let running = start_broadcaster(&server_rt, None, GrpcServer::default());
        let client =
            stallwatch_core::client::ReportClient::new(url.clone(), Duration::from_secs(2))
                .unwrap();
        let engine = running.engine.clone();
        let n = 2000u32;
        let cost = server_rt.block_on(async move {
            let start = Instant::now();
            for seq in 1..=u64::from(n) {
                client
                    .send(&engine.report(seq))
                    .await
                    .expect("report accepted");
            }
            start.elapsed() / n
        });
        server_rt.block_on(running.shutdown());
        println!(
            "direct cost: {:.0} µs per report (build + JSON + HTTP round trip to the fake sidecar, an upper bound on CPU); at the default 250 ms interval that is {:.3}% of one core",
            cost.as_secs_f64() * 1e6,
            cost.as_secs_f64() * 4.0 * 100.0
        );
        println!();
    }

    // 3. Memory per idle subscriber.
    let memory_rows = section("memory").then(|| memory::run(&client_rt));

    // 4. Scale.
    let mut scale_runs = None;
    if section("scale") {
        let measure = Duration::from_secs_f64((20.0 * scale).max(3.0));
        let client = scale::ScaleClient::from_env();
        let mut results = Vec::new();
        for subs in scale_subscriber_counts() {
            for cap in scale::connection_caps() {
                let grpc = grpc_servers()
                    .into_iter()
                    .map(|server| {
                        client_rt.block_on(scale::run(server, subs, measure, client, cap))
                    })
                    .collect::<Vec<_>>();
                let nats = nats.as_ref().map(|n| {
                    client_rt.block_on(scale::run_nats(
                        n.0.id(),
                        n.1,
                        subs,
                        measure,
                        &template,
                        client,
                        cap,
                    ))
                });
                // One update as the gRPC server writes it: frame header, gRPC prefix, message.
                let record_len = 9 + 5 + grpc.first().map_or(update_size, |g| g.update_size);
                // The floor cannot multiplex: it runs only when every subscriber has its own
                // connection.
                let floor = cap
                    .is_none()
                    .then(|| client_rt.block_on(scale::run_floor(subs, measure, record_len)));
                results.push((grpc, nats, floor));
            }
        }
        scale::print(&results);
        scale_runs = Some(results);
    }

    // 5. Unary calls; 6. under attack.
    if section("unary") {
        unary::run(&server_rt, &client_rt);
    }
    if section("hostile") {
        hostile::run(&client_rt);
    }

    targets::print(
        fanout_rows.as_deref(),
        memory_rows.as_deref(),
        scale_runs.as_deref(),
    );
}

/// Messages per second for a round paced at `fraction` of `peak`.
fn paced_rate(peak: &Round, subs: usize, fraction: f64) -> f64 {
    let rate = peak.rate() / subs as f64 * fraction;
    assert!(
        rate.is_finite() && rate > 0.0,
        "the peak round delivered {} of {} updates: nothing to pace against",
        peak.deliveries,
        peak.expected
    );
    rate
}

/// Section 1: every gRPC server and nats-server at each subscriber count, in the same run.
fn fanout(
    server_rt: &tokio::runtime::Runtime,
    client_rt: &tokio::runtime::Runtime,
    nats: Option<&NatsServer>,
    feed: &Bytes,
    template: &StreamUpdate,
    scale: f64,
) -> Vec<Row> {
    let servers: Vec<(GrpcServer, Running)> = grpc_servers()
        .into_iter()
        .map(|server| (server, start_broadcaster(server_rt, None, server)))
        .collect();
    let mut rows = Vec::new();
    for (round_id, &subs) in subscriber_counts().iter().enumerate() {
        let messages = ((DELIVERIES_PER_ROUND * scale) / subs as f64).max(50.0) as u64;
        // A discarded full-size round per server at this subscriber count first. At peak the
        // clients' HTTP/2 buffers hold much of a round (the windows allow it all); the system
        // measured first at a count (always the first gRPC server) otherwise paid the client
        // process's heap growth to that size: at 1,000 subscribers ~0.3 µs more client CPU
        // per delivery and ~10% less throughput, whichever server went first.
        for (_, running) in &servers {
            client_rt.block_on(grpc_round(
                running,
                client_rt.handle(),
                subs,
                messages,
                None,
                feed,
            ));
        }
        let mut row = Row {
            subs,
            grpc: Vec::new(),
            nats: None,
        };
        for (server, running) in &servers {
            let run = |n, rate| {
                client_rt.block_on(grpc_round(running, client_rt.handle(), subs, n, rate, feed))
            };
            let peak = run(messages, None);
            let latency = latency_fractions()
                .iter()
                .map(|&fraction| {
                    let rate = paced_rate(&peak, subs, fraction);
                    let n = ((rate * LATENCY_ROUND.as_secs_f64() * scale) as u64).max(20);
                    run(n, Some(rate))
                })
                .collect();
            row.grpc.push(SystemRow {
                system: system_name(*server),
                peak,
                latency,
            });
        }
        if let Some(nats) = nats {
            let mut id = round_id as u64 * 10;
            let peak = client_rt.block_on(nats_round(
                nats,
                client_rt.handle(),
                subs,
                messages,
                None,
                template,
                id,
            ));
            let mut latency = Vec::new();
            for &fraction in &latency_fractions() {
                id += 1;
                let rate = paced_rate(&peak, subs, fraction);
                let n = ((rate * LATENCY_ROUND.as_secs_f64() * scale) as u64).max(20);
                latency.push(client_rt.block_on(nats_round(
                    nats,
                    client_rt.handle(),
                    subs,
                    n,
                    Some(rate),
                    template,
                    id,
                )));
            }
            row.nats = Some(SystemRow {
                system: "NATS",
                peak,
                latency,
            });
        }
        rows.push(row);
    }
    print_fanout(&rows);
    for (server, running) in servers {
        let stream = running.stream("all").unwrap();
        println!(
            "({} totals: lagged {} updates for slow subscribers, channel dropped-oldest {})",
            system_name(server),
            stream.hub.lagged_total(),
            stream.report().dropped_oldest_total
        );
        server_rt.block_on(running.shutdown());
    }
    println!();
    rows
}

fn print_fanout(rows: &[Row]) {
    println!("## 1a. Fan-out throughput over loopback, ~1 KiB updates (peak)");
    println!();
    println!(
        "| subscribers | system | deliveries/s vs NATS | server CPU per delivery vs NATS | deliveries/s | delivered | server CPU per delivery | client CPU per delivery |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    let pct = |r: &Round| format!("{:.1}%", 100.0 * r.deliveries as f64 / r.expected as f64);
    let ratio = |a: f64, b: Option<f64>| {
        b.map_or("n/a".to_string(), |b| format!("{:.2}x", a / b.max(1e-9)))
    };
    for row in rows {
        // A NATS round that delivered nothing (it happens here after the gRPC rounds, see
        // BENCHMARKS.md) is no baseline: its ratios read n/a.
        let nats = row
            .nats
            .as_ref()
            .map(|n| &n.peak)
            .filter(|p| p.deliveries > 0);
        for sys in row.grpc.iter().chain(&row.nats) {
            let r = &sys.peak;
            println!(
                "| {} | {} | {} | {} | {:.0} | {} | {:.1} µs | {:.1} µs |",
                row.subs,
                sys.system,
                ratio(r.rate(), nats.map(Round::rate)),
                ratio(
                    r.cpu_per_delivery_us(),
                    nats.map(Round::cpu_per_delivery_us)
                ),
                r.rate(),
                pct(r),
                r.cpu_per_delivery_us(),
                r.client_cpu_per_delivery_us(),
            );
        }
    }
    println!();
    println!(
        "## 1b. Latency, send to client receipt, paced at a fraction of each system's own peak"
    );
    println!();
    println!("| subscribers | load | system | p99 vs NATS | p50 / p99 | server CPU per delivery |");
    println!("|---:|---:|---|---:|---:|---:|");
    // Paced, updates reach each subscriber one at a time: compare with 1a's CPU per delivery
    // at peak, where queued updates go out together.
    for row in rows {
        for (i, fraction) in latency_fractions().iter().enumerate() {
            let nats = row.nats.as_ref().and_then(|n| n.latency.get(i));
            for sys in row.grpc.iter().chain(&row.nats) {
                let Some(r) = sys.latency.get(i) else {
                    continue;
                };
                println!(
                    "| {} | {:.0}% of peak | {} | {} | {:.2} / {:.2} ms | {:.1} µs |",
                    row.subs,
                    fraction * 100.0,
                    sys.system,
                    ratio(r.percentile(0.99), nats.map(|n| n.percentile(0.99))),
                    r.percentile(0.5),
                    r.percentile(0.99),
                    r.cpu_per_delivery_us(),
                );
            }
        }
    }
    println!();
}

//! Preparing one large feed message for many streams; prints tables. Run with
//! `cargo bench -p transit-broadcaster --bench prepare`.
//!
//! 1. Prepare cost of a 2.8 MB message (2,497 trip updates, 53,897 stop time updates, as the
//!    largest real feeds send) for 1 and for 16 streams, as a ratio to a bare
//!    `FeedMessage::decode` of the same bytes in the same run. Each round takes a fresh item,
//!    so the shared decode is paid every round, as in the broadcaster. The 16 streams are
//!    prepared back to back on one thread (the worst case for sharing: no stream finds the
//!    decoding already done by another core). "per-stream decoding" is what the broadcaster
//!    did before: one decode (with validation and conversion) per stream.
//! 2. End to end: that message pushed into a running broadcaster and delivered to 100
//!    subscribers over real gRPC on loopback (10 connections); per message, the time from
//!    receipt to the last subscriber's delivery; p50/p99/max.
//!
//! 0. Per-message cost of each stage, for the fan-out bench's ~1 KiB feed, each real capture
//!    in `shared/gtfs-rt/feeds/` and the 2.8 MB message: the reference path's stages (prost
//!    decode, `validate`, `convert`, prost encode: each measured as the cumulative prefix, the
//!    stage is the difference) beside the direct path (`decoded::decode_direct`: the same result
//!    in one pass, stages fused) and the whole `prepare::prepare` of one stream.
//!
//! `BENCH_SCALE` (default 1.0) scales the round counts; `BENCH_PREPARE_SECTIONS=stages,large,e2e`
//! picks sections (default: all). `BENCH_PREPARE_CALLGRIND=N` only runs N decodes of the 1 KiB
//! feed on each path (`decode_with_prost`, `decode_direct`, `prepare::prepare`), for
//! `valgrind --tool=callgrind`: their inclusive instruction counts divided by N are the
//! noise-free per-message costs (`BENCH_PREPARE_FEED=path` decodes that file instead).

#[path = "common/light_subscribe.rs"]
mod light_subscribe;
use light_subscribe::subscribe_light;
#[path = "common/vehicle_feed.rs"]
mod vehicle_feed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vehicle_feed::vehicle_feed;

use bytes::Bytes;
use prost::Message;
use stallwatch_core::clock::now_us;
use tonic::transport::Channel;
use transit_broadcaster::Config;
use transit_broadcaster::generated::transit_realtime::trip_update::{
    StopTimeEvent, StopTimeUpdate,
};
use transit_broadcaster::generated::transit_realtime::{
    FeedEntity, FeedHeader, FeedMessage, TripDescriptor, TripUpdate, VehicleDescriptor,
};
use transit_broadcaster::gtfs::{convert, decoded, validate};
use transit_broadcaster::pipeline::channel::Item;
use transit_broadcaster::pipeline::prepare;
use transit_broadcaster::pipeline::source::SourceSpec;
use transit_broadcaster::pipeline::spec::{Filter, StreamSpec};

const TRIP_UPDATES: usize = 2_497;
const STOP_TIME_UPDATES: usize = 53_897;
const ROUTES: usize = 120;
const SUBSCRIBERS: usize = 100;
const CONNECTIONS: usize = 10;

fn scale() -> f64 {
    std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

/// A message shaped like the largest real trip-update feeds: ~21.6 stop time updates per trip
/// with arrival and departure predictions.
fn big_feed() -> Bytes {
    let mut remaining = STOP_TIME_UPDATES;
    let entity = |i: usize, stops: usize| FeedEntity {
        id: format!("{:07}-WKDY-{i}", 1_000_000 + i * 37),
        trip_update: Some(TripUpdate {
            trip: Some(TripDescriptor {
                trip_id: Some(format!(
                    "{:07}-WKDY-BLOCK{:04}",
                    1_000_000 + i * 37,
                    i % 900
                )),
                route_id: Some(format!("{}", 100 + i % ROUTES)),
                direction_id: Some((i % 2) as u32),
                start_date: Some("20240312".into()),
                start_time: Some(format!("{:02}:{:02}:00", 5 + i % 19, i % 60)),
                schedule_relationship: Some(0),
            }),
            vehicle: Some(VehicleDescriptor {
                id: Some(format!("{}", 4000 + i)),
                label: Some(format!("Bus {}", 4000 + i)),
                ..Default::default()
            }),
            stop_time_update: (0..stops)
                .map(|s| {
                    let time = 1_710_268_628 + (s as i64) * 95 + (i as i64 % 300);
                    StopTimeUpdate {
                        stop_sequence: Some(s as u32 + 1),
                        stop_id: Some(format!("ST{:06}", 1000 + (i * 7 + s * 13) % 9000)),
                        arrival: Some(StopTimeEvent {
                            delay: Some((s as i32 * 7) % 240 - 60),
                            time: Some(time),
                            uncertainty: Some(30),
                            ..Default::default()
                        }),
                        departure: Some(StopTimeEvent {
                            delay: Some((s as i32 * 7) % 240 - 60),
                            time: Some(time + 20),
                            uncertainty: Some(30),
                            ..Default::default()
                        }),
                        schedule_relationship: Some(0),
                    }
                })
                .collect(),
            timestamp: Some(1_710_268_628),
            delay: None,
        }),
        ..Default::default()
    };
    let entities = (0..TRIP_UPDATES)
        .map(|i| {
            let stops = remaining / (TRIP_UPDATES - i);
            remaining -= stops;
            entity(i, stops)
        })
        .collect();
    FeedMessage {
        header: FeedHeader {
            gtfs_realtime_version: "2.0".into(),
            incrementality: Some(0),
            timestamp: Some(1_710_268_628),
            feed_version: None,
        },
        entity: entities,
    }
    .encode_to_vec()
    .into()
}

/// The fan-out bench's feed: vehicles until our update encodes to about 1 KiB.
fn feed_1kib() -> Bytes {
    (1..)
        .map(vehicle_feed)
        .find(|b| prepare::decode(b).unwrap().body.len() >= 960)
        .unwrap()
}

/// The real captures (`stallwatch_testkit::gtfs_rt`), by name.
fn real_captures() -> Vec<(String, Bytes)> {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some(dir) = stallwatch_testkit::gtfs_rt::dir(manifest) else {
        println!("(real captures: shared/gtfs-rt/ not found; set STALLWATCH_GTFS_RT_DIR)");
        return Vec::new();
    };
    stallwatch_testkit::gtfs_rt::files(&dir.join("feeds"))
        .into_iter()
        .map(|(p, data)| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, Bytes::from(data))
        })
        .collect()
}

/// Median time per call of `f`, in batches of about 5 ms, interleaved by the caller.
fn per_call(iters: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed().as_secs_f64() / iters as f64
}

/// The reference path cut after each stage; `upto` 4 is the whole `decode_with_prost`.
fn reference_upto(payload: &Bytes, upto: u8) {
    if upto == 4 {
        std::hint::black_box(decoded::decode_with_prost(payload).unwrap());
        return;
    }
    let msg = FeedMessage::decode(payload.as_ref()).unwrap();
    if upto == 1 {
        std::hint::black_box(msg);
        return;
    }
    let rules = validate::Rules::for_version(&msg.header.gtfs_realtime_version);
    let valid: Vec<FeedEntity> = msg
        .entity
        .into_iter()
        .filter(|e| validate::entity(e, rules).is_ok())
        .collect();
    if upto == 2 {
        std::hint::black_box(valid);
        return;
    }
    for e in valid {
        let id = e.id;
        if let Some(v) = e.vehicle {
            std::hint::black_box(convert::vehicle(id.clone(), v));
        }
        if let Some(t) = e.trip_update {
            std::hint::black_box(convert::trip_update(id.clone(), t));
        }
        if let Some(a) = e.alert {
            std::hint::black_box(convert::alert(id, a));
        }
    }
}

fn us(seconds: f64) -> String {
    format!("{:.2}", seconds * 1e6)
}

fn stages_table(feeds: &[(String, Bytes)]) {
    println!(
        "\n### 0. Per-message cost by stage (µs per message, median of 5 interleaved batches)\n"
    );
    println!(
        "Reference path: prost decode, `validate`, `convert` (prost structs to ours), prost encode (with the entity byte ranges and the bookkeeping); each stage measured as the cumulative prefix, the stage is the difference. Direct path: `decoded::decode_direct`, the same result in one pass. Prepare: `prepare::prepare` of one unfiltered stream on a fresh item (decode + selection + head).\n"
    );
    println!(
        "| feed | bytes | entities | decode | validate | convert | encode | reference total | direct | prepare (direct) | reference / direct |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, payload) in feeds {
        let entities = FeedMessage::decode(payload.as_ref()).unwrap().entity.len();
        // About 5 ms per batch.
        let probe = per_call(3, || reference_upto(payload, 4));
        let iters = ((0.005 / probe.max(1e-7)) * scale()).clamp(3.0, 200_000.0) as usize;
        let mut samples: [Vec<f64>; 6] = Default::default();
        for _ in 0..5 {
            for upto in 1..=4u8 {
                samples[upto as usize - 1].push(per_call(iters, || reference_upto(payload, upto)));
            }
            samples[4].push(per_call(iters, || {
                std::hint::black_box(decoded::decode_direct(payload).unwrap());
            }));
            samples[5].push(per_call(iters, || {
                let item = Item::new(payload.clone());
                std::hint::black_box(prepare::prepare(&Filter::default(), &item).unwrap());
            }));
        }
        let m: Vec<f64> = samples
            .into_iter()
            .map(|mut v| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            })
            .collect();
        println!(
            "| {name} | {} | {entities} | {} | {} | {} | {} | {} | {} | {} | {:.1}x |",
            payload.len(),
            us(m[0]),
            us(m[1] - m[0]),
            us(m[2] - m[1]),
            us(m[3] - m[2]),
            us(m[3]),
            us(m[4]),
            us(m[5]),
            m[3] / m[4]
        );
    }
}

/// `BENCH_PREPARE_CALLGRIND=N`: N decodes of each path, nothing else.
fn callgrind_runs(n: usize) {
    let payload = match std::env::var_os("BENCH_PREPARE_FEED") {
        Some(path) => Bytes::from(std::fs::read(path).expect("BENCH_PREPARE_FEED")),
        None => feed_1kib(),
    };
    for _ in 0..n {
        std::hint::black_box(decoded::decode_with_prost(&payload).unwrap());
    }
    for _ in 0..n {
        std::hint::black_box(decoded::decode_direct(&payload).unwrap());
    }
    for _ in 0..n {
        let item = Item::new(payload.clone());
        std::hint::black_box(prepare::prepare(&Filter::default(), &item).unwrap());
    }
    println!("{n} decodes of a {}-byte feed on each path", payload.len());
}

fn section(name: &str) -> bool {
    std::env::var("BENCH_PREPARE_SECTIONS").map_or(true, |s| s.split(',').any(|x| x.trim() == name))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Median over `rounds` of `f` run on a fresh item each round.
fn time_rounds(rounds: usize, payload: &Bytes, mut f: impl FnMut(&Item)) -> Duration {
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let item = Item::new(payload.clone());
        let start = Instant::now();
        f(&item);
        times.push(start.elapsed());
    }
    median(times)
}

fn prepare_table(payload: &Bytes) {
    let rounds = ((30.0 * scale()) as usize).max(3);
    let route_filters: Vec<Filter> = (0..16)
        .map(|s| {
            let routes: Vec<String> = (0..ROUTES / 16)
                .map(|r| format!("{}", 100 + s * (ROUTES / 16) + r))
                .collect();
            format!("s{s}=routes:{}", routes.join(","))
                .parse::<StreamSpec>()
                .unwrap()
                .filter
        })
        .collect();
    let unfiltered = vec![Filter::default(); 16];
    // Interleave the measurements so machine load affects each alike.
    let mut bare = Vec::new();
    let mut one = Vec::new();
    let mut sixteen = Vec::new();
    let mut sixteen_routes = Vec::new();
    let mut per_stream = Vec::new();
    for _ in 0..3 {
        let r = rounds.div_ceil(3);
        bare.push(time_rounds(r, payload, |item| {
            std::hint::black_box(FeedMessage::decode(item.payload.as_ref()).unwrap());
        }));
        one.push(time_rounds(r, payload, |item| {
            std::hint::black_box(prepare::prepare(&Filter::default(), item).unwrap());
        }));
        sixteen.push(time_rounds(r, payload, |item| {
            for f in &unfiltered {
                std::hint::black_box(prepare::prepare(f, &item.clone()).unwrap());
            }
        }));
        sixteen_routes.push(time_rounds(r, payload, |item| {
            for f in &route_filters {
                std::hint::black_box(prepare::prepare(f, &item.clone()).unwrap());
            }
        }));
        // What each stream's dispatcher did before: its own decode of the payload.
        per_stream.push(time_rounds(r.div_ceil(4), payload, |item| {
            for _ in 0..16 {
                std::hint::black_box(prepare::decode(&item.payload).unwrap());
            }
        }));
    }
    let (bare, one, sixteen, sixteen_routes, per_stream) = (
        median(bare),
        median(one),
        median(sixteen),
        median(sixteen_routes),
        median(per_stream),
    );
    let ratio = |d: Duration| d.as_secs_f64() / bare.as_secs_f64();
    println!("\n### 1. Prepare cost of one large message (median of {rounds} rounds each)\n");
    println!("| what | time | vs bare decode |");
    println!("|---|---:|---:|");
    println!("| bare `FeedMessage::decode` | {} | 1.00x |", ms(bare));
    println!(
        "| prepare, 1 stream (decode, validate, convert, encode once) | {} | {:.2}x |",
        ms(one),
        ratio(one)
    );
    println!(
        "| prepare, 16 unfiltered streams | {} | {:.2}x |",
        ms(sixteen),
        ratio(sixteen)
    );
    println!(
        "| prepare, 16 streams of 7 routes each | {} | {:.2}x |",
        ms(sixteen_routes),
        ratio(sixteen_routes)
    );
    println!(
        "| per-stream decoding, 16 streams (before) | {} | {:.2}x |",
        ms(per_stream),
        ratio(per_stream)
    );
    println!(
        "\ntarget: 16 streams <= 1.5x the bare decode: {} (unfiltered {:.2}x, route-filtered {:.2}x)",
        if ratio(sixteen).max(ratio(sixteen_routes)) <= 1.5 {
            "met"
        } else {
            "NOT met"
        },
        ratio(sixteen),
        ratio(sixteen_routes)
    );
}

/// Only the sequence number and receive time of each update (protobuf skips the rest).
#[derive(Clone, PartialEq, prost::Message)]
struct UpdateHeader {
    #[prost(uint64, tag = "2")]
    seq: u64,
    #[prost(uint64, tag = "4")]
    received_at_us: u64,
}

fn runtime(threads: usize, name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

fn end_to_end(payload: &Bytes) {
    let messages = ((20.0 * scale()) as u64).max(3);
    let server_rt = runtime(2, "bench-server");
    let client_rt = runtime(2, "bench-clients");
    let running = server_rt
        .block_on(transit_broadcaster::start(Config {
            channel_capacity: 4,
            subscriber_queue: 4,
            admin_addr: None,
            ..Config::loopback(SourceSpec::Manual)
        }))
        .expect("start broadcaster");
    let addr = running.grpc_addr;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, u64, u64)>();
    client_rt.block_on(async {
        let mut channels = Vec::new();
        for _ in 0..CONNECTIONS {
            channels.push(
                Channel::from_shared(format!("http://{addr}"))
                    .unwrap()
                    .tcp_nodelay(true)
                    .initial_stream_window_size(8 << 20)
                    .initial_connection_window_size(32 << 20)
                    .connect()
                    .await
                    .expect("connect"),
            );
        }
        for i in 0..SUBSCRIBERS {
            let mut updates =
                subscribe_light::<UpdateHeader>(channels[i % CONNECTIONS].clone(), 64 << 20).await;
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Ok(Some(u)) = updates.message().await {
                    let _ = tx.send((i as u64, u.seq, now_us()));
                }
            });
        }
    });
    let stream = running.stream("all").unwrap();
    while stream.hub.subscriber_count() < SUBSCRIBERS {
        std::thread::sleep(Duration::from_millis(10));
    }
    let ingest = running.ingest();
    let mut latencies = Vec::new();
    for seq in 1..=messages {
        let received_at = now_us();
        ingest.push(payload.clone());
        let mut got = 0;
        let mut last = received_at;
        while got < SUBSCRIBERS {
            let (_, s, at) = rx.blocking_recv().expect("subscribers alive");
            if s == seq {
                got += 1;
                last = last.max(at);
            }
        }
        latencies.push(Duration::from_micros(last - received_at));
        // Let the machine settle between messages: this measures one message's delivery.
        std::thread::sleep(Duration::from_millis(50));
    }
    let lagged = stream.hub.lagged_total();
    server_rt.block_on(running.shutdown());
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    println!(
        "\n### 2. End to end: one message to {SUBSCRIBERS} subscribers ({CONNECTIONS} connections), {messages} messages\n"
    );
    println!("| receipt to last delivery | p50 | p99 | max |");
    println!("|---|---:|---:|---:|");
    println!(
        "| {:.1} MB update | {} | {} | {} |",
        payload.len() as f64 / 1e6,
        ms(pct(0.5)),
        ms(pct(0.99)),
        ms(*latencies.last().unwrap())
    );
    println!("(lagged updates: {lagged}; clients decode seq and receive time only)");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Some(n) = std::env::var("BENCH_PREPARE_CALLGRIND")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        callgrind_runs(n);
        return;
    }
    let payload = big_feed();
    let decoded = prepare::decode(&payload).unwrap();
    let stops: usize = FeedMessage::decode(payload.as_ref())
        .unwrap()
        .entity
        .iter()
        .map(|e| {
            e.trip_update
                .as_ref()
                .map_or(0, |t| t.stop_time_update.len())
        })
        .sum();
    println!("# transit-broadcaster prepare benchmark");
    println!(
        "message: {} bytes, {} trip updates, {stops} stop time updates; our update encodes to {} bytes; {} CPUs shared with whatever else runs",
        payload.len(),
        decoded.carried.len(),
        decoded.body.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = Arc::new(());
    if section("stages") {
        let mut feeds = vec![("fan-out bench feed (~1 KiB)".to_string(), feed_1kib())];
        feeds.extend(real_captures());
        feeds.push((
            "2.8 MB trip updates (section 1's)".to_string(),
            payload.clone(),
        ));
        stages_table(&feeds);
    }
    if section("large") {
        prepare_table(&payload);
    }
    if section("e2e") {
        end_to_end(&payload);
    }
}

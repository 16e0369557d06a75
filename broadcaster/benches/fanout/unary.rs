//! Section 5: unary calls (health `Check`, `ListStreams`) on one connection with 16 calls in
//! flight, for each gRPC server in the same run: calls/s and the in-process server's CPU per
//! call. Lean bridges these methods to the same tonic services tonic's server runs, so the
//! difference is the HTTP/2 layer (framing, HPACK, the bridge).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use transit_broadcaster::generated::transit_v1::ListStreamsRequest;
use transit_broadcaster::generated::transit_v1::transit_broadcaster_client::TransitBroadcasterClient;

use super::{
    CLOCK_TICKS, GrpcServer, bench_server_cpu_ticks, grpc_channels, grpc_servers, scale,
    start_broadcaster, system_name,
};

const IN_FLIGHT: usize = 16;

#[derive(Clone, Copy)]
enum Method {
    HealthCheck,
    ListStreams,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::HealthCheck => "health Check",
            Method::ListStreams => "ListStreams",
        }
    }
}

struct Row {
    method: Method,
    server: GrpcServer,
    calls_per_s: f64,
    cpu_us_per_call: f64,
}

pub fn run(server_rt: &tokio::runtime::Runtime, client_rt: &tokio::runtime::Runtime) {
    let measure = Duration::from_secs_f64((3.0 * scale()).max(1.0));
    let mut rows = Vec::new();
    for method in [Method::HealthCheck, Method::ListStreams] {
        // Alternated twice, best of two: the machine is shared.
        for _ in 0..2 {
            for server in grpc_servers() {
                rows.push(measure_one(server_rt, client_rt, server, method, measure));
            }
        }
    }
    println!("## 5. Unary calls ({IN_FLIGHT} in flight on one connection, best of 2 rounds)");
    println!();
    println!("| method | server | calls/s | server CPU per call | calls/s vs tonic |");
    println!("|---|---|---:|---:|---:|");
    for method in [Method::HealthCheck, Method::ListStreams] {
        let best = |server: GrpcServer| {
            rows.iter()
                .filter(|r| r.server == server && r.method.name() == method.name())
                .max_by(|a, b| a.calls_per_s.total_cmp(&b.calls_per_s))
        };
        let tonic = best(GrpcServer::Tonic).map(|r| r.calls_per_s);
        for server in grpc_servers() {
            let Some(r) = best(server) else { continue };
            let ratio = tonic.map_or("-".to_string(), |t| format!("{:.2}×", r.calls_per_s / t));
            println!(
                "| {} | {} | {:.0} | {:.0} µs | {ratio} |",
                method.name(),
                system_name(server),
                r.calls_per_s,
                r.cpu_us_per_call
            );
        }
    }
    println!();
}

fn measure_one(
    server_rt: &tokio::runtime::Runtime,
    client_rt: &tokio::runtime::Runtime,
    server: GrpcServer,
    method: Method,
    measure: Duration,
) -> Row {
    let running = start_broadcaster(server_rt, None, server);
    let addr = running.grpc_addr;
    let calls = Arc::new(AtomicU64::new(0));
    let (elapsed, cpu_ticks) = client_rt.block_on(async {
        let channel = grpc_channels(addr, 1).await.remove(0);
        // Warm-up: the first calls build the services' state.
        call(&channel, method).await;
        let cpu_before = bench_server_cpu_ticks();
        let start = Instant::now();
        let tasks: Vec<_> = (0..IN_FLIGHT)
            .map(|_| {
                let channel = channel.clone();
                let calls = calls.clone();
                tokio::spawn(async move {
                    while start.elapsed() < measure {
                        call(&channel, method).await;
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        (start.elapsed(), bench_server_cpu_ticks() - cpu_before)
    });
    server_rt.block_on(running.shutdown());
    let n = calls.load(Ordering::Relaxed).max(1) as f64;
    Row {
        method,
        server,
        calls_per_s: n / elapsed.as_secs_f64(),
        cpu_us_per_call: cpu_ticks as f64 / CLOCK_TICKS * 1e6 / n,
    }
}

async fn call(channel: &tonic::transport::Channel, method: Method) {
    match method {
        Method::HealthCheck => {
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
            health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .expect("health check");
        }
        Method::ListStreams => {
            TransitBroadcasterClient::new(channel.clone())
                .list_streams(ListStreamsRequest {})
                .await
                .expect("list streams");
        }
    }
}

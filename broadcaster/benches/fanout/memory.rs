//! Section 3: memory per idle subscriber. RSS of a real `transit-broadcaster serve` child
//! process before and after idle subscribers connect (after one warm-up subscriber, so one-time
//! allocations are not counted), over shared connections, over one connection each, and for
//! connections without a subscriber, which splits a subscriber's cost into its HTTP/2
//! connection's and its stream's.

use std::time::Duration;

use transit_broadcaster::generated::transit_v1::SubscribeRequest;
use transit_broadcaster::generated::transit_v1::transit_broadcaster_client::TransitBroadcasterClient;

use super::{GrpcServer, free_port, grpc_servers, rss_kib, scale, system_name};

/// (connections, idle subscribers spread over them). The row without subscribers is the
/// connections' own cost.
const ROWS: [(usize, usize); 4] = [(10, 1000), (1000, 0), (1000, 1000), (10_000, 10_000)];

pub struct MemoryRow {
    pub server: GrpcServer,
    pub connections: usize,
    pub subscribers: usize,
    before_kib: u64,
    after_kib: u64,
}

impl MemoryRow {
    /// The RSS added per subscriber, or per connection in a row without subscribers.
    pub fn per_kib(&self) -> f64 {
        let n = if self.subscribers == 0 {
            self.connections
        } else {
            self.subscribers
        };
        self.after_kib.saturating_sub(self.before_kib) as f64 / n as f64
    }
}

/// Measures and prints every row, for each gRPC server.
pub fn run(client_rt: &tokio::runtime::Runtime) -> Vec<MemoryRow> {
    println!("## 3. Memory per idle subscriber (RSS of a `transit-broadcaster serve` process)");
    println!();
    println!(
        "| connections | idle subscribers | server | RSS before | RSS with them | per subscriber |"
    );
    println!("|---:|---:|---|---:|---:|---:|");
    scale::raise_fd_limit();
    let rows: Vec<MemoryRow> = ROWS
        .iter()
        .flat_map(|&(connections, subscribers)| {
            grpc_servers()
                .into_iter()
                .map(move |server| (server, connections, subscribers))
        })
        .map(|(server, connections, subscribers)| {
            measure(client_rt, server, connections, subscribers)
        })
        .collect();
    for r in &rows {
        let per = if r.subscribers == 0 {
            format!("{:.1} KiB per connection", r.per_kib())
        } else {
            format!("{:.1} KiB", r.per_kib())
        };
        println!(
            "| {} | {} | {} | {} KiB | {} KiB | {per} |",
            r.connections,
            r.subscribers,
            system_name(r.server),
            r.before_kib,
            r.after_kib
        );
    }
    println!();
    rows
}

/// One row: `connections` connections to a fresh server, then `subscribers` idle subscribers
/// spread over them.
fn measure(
    client_rt: &tokio::runtime::Runtime,
    server: GrpcServer,
    connections: usize,
    subscribers: usize,
) -> MemoryRow {
    let (grpc_port, http_port) = (free_port(), free_port());
    // One update per 1,000 s: the subscribers stay idle.
    let mut child = scale::spawn_server(server, grpc_port, http_port, 0.001);
    let pid = child.id();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], grpc_port).into();
    let subscribe = |channel| async move {
        TransitBroadcasterClient::new(channel)
            .subscribe(SubscribeRequest {
                stream: "all".into(),
                ..Default::default()
            })
            .await
            .expect("subscribe")
            .into_inner()
    };
    let (before_kib, after_kib) = client_rt.block_on(async move {
        let warm = scale::connect_many(addr, 1).await;
        let _warm_stream = subscribe(warm[0].clone()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = rss_kib(pid);
        let channels = scale::connect_many(addr, connections).await;
        let mut streams = Vec::with_capacity(subscribers);
        for i in 0..subscribers {
            streams.push(subscribe(channels[i % channels.len()].clone()).await);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        (before, rss_kib(pid))
    });
    let _ = child.kill();
    let _ = child.wait();
    MemoryRow {
        server,
        connections,
        subscribers,
        before_kib,
        after_kib,
    }
}

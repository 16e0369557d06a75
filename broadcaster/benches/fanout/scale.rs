//! Section 4: many subscribers on one broadcaster process. A real `transit-broadcaster serve`
//! child process publishes one ~1 KiB update per second (the synthetic source) to N
//! subscribers, each on its own HTTP/2 connection when the open-file limit allows (otherwise
//! the real clients share connections, and the table says how many real connections the run
//! held). All N get the same update at the same instant: the worst case, a herd every second.
//! Measured: latency from the broadcaster's receipt to each subscriber's receipt, sequence gaps
//! and `missed` counts seen by the clients (lag), the server's own lag counter, the server's
//! RSS per subscriber and its CPU use. The same load then goes to `nats-server` and to the TCP
//! floor (`floor.rs`: the same bytes written straight to each socket) for side-by-side rows.
//! The load generator is `scale_clients`' light subscribers by default, so that at 10,000 the
//! latency measured is the servers' more than the client's; `BENCH_SCALE_CLIENT=real` runs
//! tonic's client and async-nats instead.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use stallwatch_core::clock::now_us;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use transit_broadcaster::generated::transit_v1::SubscribeRequest;
use transit_broadcaster::generated::transit_v1::transit_broadcaster_client::TransitBroadcasterClient;

use super::scale_clients::{FloorReader, H2Subscriber, NatsSubscriber, ScaleHeader, UpdateSource};
use super::{GrpcServer, free_port, rss_kib};

/// Vehicles in the synthetic feed: its prepared update then encodes to about 1 KiB (printed).
const SYNTHETIC_VEHICLES: u32 = 11;
/// Connections opened at once while setting up (the listen backlog is 1,024).
const CONNECT_CONCURRENCY: usize = 128;
/// Descriptors kept free for everything else in each process.
const SPARE_FDS: u64 = 256;

/// One scale run's results.
pub struct ScaleResult {
    pub system: &'static str,
    /// The load generator's client (`light`, `tonic`, `async-nats`).
    pub client: &'static str,
    pub subscribers: usize,
    pub connections: usize,
    pub fd_limit: u64,
    pub update_size: usize,
    pub measured: Duration,
    pub deliveries: u64,
    /// Sequence numbers skipped between consecutive updates, summed over subscribers.
    pub gaps: u64,
    /// `missed` counts the server sent, summed over subscribers.
    pub missed: u64,
    /// The server's `subscriber_lagged_total` at the end (`None`: the server has no such count).
    pub server_lagged: Option<u64>,
    pub latencies_us: Vec<u64>,
    pub rss_before_kib: u64,
    pub rss_loaded_kib: u64,
    /// Server CPU over the measured window, in % of one core.
    pub server_cpu_pct: f64,
    pub connect_time: Duration,
}

impl ScaleResult {
    /// A result with nothing tallied yet: `finish` adds the subscribers' counts.
    #[allow(clippy::too_many_arguments)]
    fn new(
        system: &'static str,
        client: &'static str,
        subscribers: usize,
        connections: usize,
        fd_limit: u64,
        update_size: usize,
        rss_before_kib: u64,
        (rss_loaded_kib, server_cpu_pct, measured): (u64, f64, Duration),
        connect_time: Duration,
    ) -> Self {
        ScaleResult {
            system,
            client,
            subscribers,
            connections,
            fd_limit,
            update_size,
            measured,
            deliveries: 0,
            gaps: 0,
            missed: 0,
            server_lagged: None,
            latencies_us: Vec::new(),
            rss_before_kib,
            rss_loaded_kib,
            server_cpu_pct,
            connect_time,
        }
    }

    pub fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        let i = ((v.len() - 1) as f64 * p).round() as usize;
        v[i] as f64 / 1000.0
    }

    pub fn per_subscriber_kib(&self) -> f64 {
        self.rss_loaded_kib.saturating_sub(self.rss_before_kib) as f64 / self.subscribers as f64
    }
}

/// Raises this process's open-file soft limit to its hard limit (child processes inherit it):
/// N connections need N descriptors in the server and N in the load generator. Returns the
/// soft limit now in force.
// The workspace denies unsafe code; this bench-only libc call is the one exception here
// (`getrlimit`/`setrlimit` only read and write the struct passed to them).
#[allow(unsafe_code)]
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, exclusively borrowed rlimit for the duration of each call.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim = want;
            }
        }
    }
    lim.rlim_cur
}

/// User + system CPU time of `pid` in clock ticks (100/s on Linux).
pub fn cpu_ticks(pid: u32) -> u64 {
    stat_cpu_ticks(std::path::Path::new(&format!("/proc/{pid}/stat")))
}

/// User + system CPU time in a `/proc/.../stat` file, in clock ticks.
pub fn stat_cpu_ticks(path: &std::path::Path) -> u64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at ") ".
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the name.
    field(11) + field(12)
}

/// The sum of every `stallwatch_broadcaster_subscriber_lagged_total` sample at `/metrics`.
async fn server_lagged(http_port: u16) -> u64 {
    let body = reqwest::get(format!("http://127.0.0.1:{http_port}/metrics"))
        .await
        .ok();
    let text = match body {
        Some(r) => r.text().await.unwrap_or_default(),
        None => String::new(),
    };
    text.lines()
        .filter(|l| l.starts_with("stallwatch_broadcaster_subscriber_lagged_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn connect(addr: std::net::SocketAddr) -> Channel {
    // Default HTTP/2 windows: a city's phone or dashboard client does not tune them.
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .expect("connect")
}

/// Opens `n` connections, `CONNECT_CONCURRENCY` at a time.
pub async fn connect_many(addr: std::net::SocketAddr, n: usize) -> Vec<Channel> {
    futures::stream::iter(0..n)
        .map(|_| connect(addr))
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await
}

/// Starts `transit-broadcaster serve` with the synthetic source at `rate` updates/s.
pub fn spawn_server(
    server: GrpcServer,
    grpc_port: u16,
    http_port: u16,
    rate: f64,
) -> std::process::Child {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_transit-broadcaster"))
        .args([
            "serve",
            "--grpc-server",
            server.as_str(),
            "--grpc-addr",
            &format!("127.0.0.1:{grpc_port}"),
            "--http-addr",
            &format!("127.0.0.1:{http_port}"),
            "--admin-addr",
            "127.0.0.1:0",
            "--report-url",
            "",
            "--source",
            // Vehicles only: the synthetic source's default trip updates and alerts would
            // triple the update past the 1 KiB.
            &format!(
                "synthetic://?vehicles={SYNTHETIC_VEHICLES}&trip_updates=false&alerts=0&rate={rate}"
            ),
        ])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start transit-broadcaster");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", grpc_port)).is_err() {
        assert!(Instant::now() < deadline, "broadcaster did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Which subscribers the scale section runs (`BENCH_SCALE_CLIENT=light|real`, default light).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ScaleClient {
    /// `scale_clients`' light HTTP/2 and NATS subscribers (several per connection only when
    /// connections are capped).
    Light,
    /// tonic's client and async-nats.
    Real,
}

impl ScaleClient {
    pub fn from_env() -> Self {
        match std::env::var("BENCH_SCALE_CLIENT").as_deref() {
            Ok("real") => ScaleClient::Real,
            _ => ScaleClient::Light,
        }
    }

    fn name(self, system: &str) -> &'static str {
        match (self, system) {
            (ScaleClient::Light, _) => "light",
            (ScaleClient::Real, "NATS") => "async-nats",
            (ScaleClient::Real, _) => "tonic",
        }
    }
}

#[derive(Default)]
struct ClientTally {
    deliveries: u64,
    gaps: u64,
    missed: u64,
    latencies_us: Vec<u64>,
}

/// Reads `source` until `stop`, tallying what arrives while `measuring`.
async fn tally(
    mut source: impl UpdateSource,
    measuring: Arc<AtomicBool>,
    stop: CancellationToken,
) -> ClientTally {
    let mut t = ClientTally::default();
    let mut last_seq: Vec<Option<u64>> = Vec::new();
    loop {
        let (lane, u) = tokio::select! {
            () = stop.cancelled() => break,
            u = source.next_update() => match u {
                Some(u) => u,
                None => break,
            },
        };
        if lane >= last_seq.len() {
            last_seq.resize(lane + 1, None);
        }
        if measuring.load(Ordering::Relaxed) {
            t.deliveries += 1;
            t.latencies_us
                .push(now_us().saturating_sub(u.received_at_us));
            t.missed += u.missed;
            if let Some(prev) = last_seq[lane] {
                t.gaps += u.seq.saturating_sub(prev + 1);
            }
        }
        last_seq[lane] = Some(u.seq);
    }
    t
}

/// Every subscriber task of one run and the switches they share.
struct Subscribers {
    measuring: Arc<AtomicBool>,
    subscribed: Arc<AtomicU64>,
    subscribers: u64,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<ClientTally>>,
    connect_start: Instant,
}

impl Subscribers {
    /// Spawns one task per entry of `lanes`; `open(i, lanes[i])` subscribes that many
    /// subscribers for the i-th, at most `CONNECT_CONCURRENCY` tasks at a time.
    fn spawn<S, F>(lanes: &[usize], open: impl Fn(usize, usize) -> F) -> Self
    where
        F: Future<Output = S> + Send + 'static,
        S: UpdateSource + 'static,
    {
        let subscribers = Subscribers {
            measuring: Arc::default(),
            subscribed: Arc::default(),
            subscribers: lanes.iter().sum::<usize>() as u64,
            stop: CancellationToken::new(),
            tasks: Vec::with_capacity(lanes.len()),
            connect_start: Instant::now(),
        };
        let gate = Arc::new(tokio::sync::Semaphore::new(CONNECT_CONCURRENCY));
        let tasks = lanes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let opening = open(i, n);
                let (gate, measuring, subscribed, stop) = (
                    gate.clone(),
                    subscribers.measuring.clone(),
                    subscribers.subscribed.clone(),
                    subscribers.stop.clone(),
                );
                tokio::spawn(async move {
                    let permit = gate.acquire_owned().await;
                    let source = opening.await;
                    drop(permit);
                    subscribed.fetch_add(n as u64, Ordering::SeqCst);
                    tally(source, measuring, stop).await
                })
            })
            .collect();
        Subscribers {
            tasks,
            ..subscribers
        }
    }

    /// Waits until every subscriber is subscribed; returns how long that took since `spawn`.
    async fn all_subscribed(&self) -> Duration {
        while self.subscribed.load(Ordering::SeqCst) < self.subscribers {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.connect_start.elapsed()
    }

    /// After a settling second: server RSS, then `measure` of tallying with the server's CPU
    /// use (% of one core) and the window's exact length.
    async fn measure(&self, pid: u32, measure: Duration) -> (u64, f64, Duration) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_loaded_kib = rss_kib(pid);
        let cpu_start = cpu_ticks(pid);
        let start = Instant::now();
        self.measuring.store(true, Ordering::SeqCst);
        tokio::time::sleep(measure).await;
        self.measuring.store(false, Ordering::SeqCst);
        let measured = start.elapsed();
        let cpu_pct = (cpu_ticks(pid) - cpu_start) as f64 / measured.as_secs_f64();
        (rss_loaded_kib, cpu_pct, measured)
    }

    /// Stops every subscriber and adds up what they saw.
    async fn finish(self, result: &mut ScaleResult) {
        self.stop.cancel();
        for task in self.tasks {
            let Ok(t) = task.await else { continue };
            result.deliveries += t.deliveries;
            result.gaps += t.gaps;
            result.missed += t.missed;
            result.latencies_us.extend(t.latencies_us);
        }
    }
}

/// The connection counts the section runs at (`BENCH_SCALE_CONNECTIONS=own,100`, the
/// default): `own` gives every subscriber its own connection, a number caps the connections
/// and the clients multiplex subscribers over them (as the issue allows: "multiplex where you
/// must, but report how many real connections the run held").
pub fn connection_caps() -> Vec<Option<usize>> {
    std::env::var("BENCH_SCALE_CONNECTIONS")
        .unwrap_or_else(|_| "own,100".into())
        .split(',')
        .filter_map(|c| match c.trim() {
            "own" => Some(None),
            n => n.parse().ok().map(Some),
        })
        .collect()
}

/// How many connections `subscribers` may hold under the open-file limit and `cap`, and that
/// limit.
fn connection_budget(subscribers: usize, cap: Option<usize>) -> (usize, u64) {
    let fd_limit = raise_fd_limit();
    let connections = subscribers
        .min(fd_limit.saturating_sub(SPARE_FDS).max(1) as usize)
        .min(cap.unwrap_or(usize::MAX).max(1));
    (connections, fd_limit)
}

/// `subscribers` spread as evenly as possible over `connections`.
fn lanes(subscribers: usize, connections: usize) -> Vec<usize> {
    (0..connections)
        .map(|i| subscribers / connections + usize::from(i < subscribers % connections))
        .collect()
}

/// Runs `subscribers` subscribers against a fresh server process for `measure` after they are
/// all subscribed (plus a settling second).
pub async fn run(
    server: GrpcServer,
    subscribers: usize,
    measure: Duration,
    client: ScaleClient,
    cap: Option<usize>,
) -> ScaleResult {
    let (connections, fd_limit) = connection_budget(subscribers, cap);
    let (grpc_port, http_port) = (free_port(), free_port());
    let mut child = spawn_server(server, grpc_port, http_port, 1.0);
    let pid = child.id();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], grpc_port).into();

    // Warm-up: one connection and subscriber, so one-time allocations are not counted per
    // subscriber; it also reads one full update to print its size.
    let warm = connect(addr).await;
    let mut warm_stream = TransitBroadcasterClient::new(warm.clone())
        .subscribe(SubscribeRequest {
            stream: "all".into(),
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();
    let update_size = prost::Message::encoded_len(
        &warm_stream
            .message()
            .await
            .expect("first update")
            .expect("an update"),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before_kib = rss_kib(pid);

    let mut channels = Vec::new();
    let subs = match client {
        ScaleClient::Light => {
            Subscribers::spawn(&lanes(subscribers, connections), |_, n| async move {
                H2Subscriber::subscribe(addr, n).await.expect("subscribe")
            })
        }
        ScaleClient::Real => {
            channels = connect_many(addr, connections).await;
            Subscribers::spawn(&vec![1; subscribers], |i, _| {
                let channel = channels[i % channels.len()].clone();
                super::subscribe_light::<ScaleHeader>(channel, 4 << 20)
            })
        }
    };
    let connect_time = subs.all_subscribed().await;
    let window = subs.measure(pid, measure).await;
    let lagged = server_lagged(http_port).await;
    let mut result = ScaleResult::new(
        super::system_name(server),
        client.name("gRPC"),
        subscribers,
        connections + 1,
        fd_limit,
        update_size,
        rss_before_kib,
        window,
        connect_time,
    );
    result.server_lagged = Some(lagged);
    subs.finish(&mut result).await;
    drop(channels);
    drop(warm_stream);
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Runs the same load against `nats-server` (already running as `server`, pid `pid`): one
/// connection per subscriber, one async-nats publisher sending the same ~1 KiB `StreamUpdate`
/// once a second with its send time.
pub async fn run_nats(
    pid: u32,
    port: u16,
    subscribers: usize,
    measure: Duration,
    template: &transit_broadcaster::generated::transit_v1::StreamUpdate,
    client: ScaleClient,
    cap: Option<usize>,
) -> ScaleResult {
    let (connections, fd_limit) = connection_budget(subscribers, cap);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let url = addr.to_string();
    let subject = format!("scale.{subscribers}");
    let publisher = async_nats::connect(url.as_str()).await.expect("publisher");
    let rss_before_kib = rss_kib(pid);
    let mut clients = Vec::new();
    let subs = match client {
        ScaleClient::Light => Subscribers::spawn(&lanes(subscribers, connections), |_, n| {
            let subject = subject.clone();
            async move {
                NatsSubscriber::subscribe(addr, &subject, n)
                    .await
                    .expect("nats subscribe")
            }
        }),
        ScaleClient::Real => {
            clients = futures::stream::iter(0..connections)
                .map(|_| async_nats::connect(url.as_str()))
                .buffer_unordered(CONNECT_CONCURRENCY)
                .map(|c| c.expect("nats connect"))
                .collect()
                .await;
            Subscribers::spawn(&vec![1; subscribers], |i, _| {
                let (client, subject) = (clients[i % clients.len()].clone(), subject.clone());
                async move {
                    let sub = client.subscribe(subject).await.expect("nats subscribe");
                    client.flush().await.expect("flush");
                    sub
                }
            })
        }
    };
    let connect_time = subs.all_subscribed().await;
    // Publish once a second throughout; the settling second inside `measure` lets the first
    // publication reach everybody before the window opens.
    let publishing = CancellationToken::new();
    let publish_task = {
        let (publisher, subject, template, publishing) = (
            publisher.clone(),
            subject.clone(),
            template.clone(),
            publishing.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut seq = 0;
            loop {
                tokio::select! {
                    () = publishing.cancelled() => break,
                    _ = tick.tick() => {}
                }
                seq += 1;
                let _ = publisher
                    .publish(subject.clone(), super::nats_payload(&template, seq))
                    .await;
                let _ = publisher.flush().await;
            }
        })
    };
    let window = subs.measure(pid, measure).await;
    publishing.cancel();
    let _ = publish_task.await;
    let mut result = ScaleResult::new(
        "NATS",
        client.name("NATS"),
        subscribers,
        connections + 1,
        fd_limit,
        super::nats_payload(template, 1).len(),
        rss_before_kib,
        window,
        connect_time,
    );
    subs.finish(&mut result).await;
    drop(clients);
    result
}

/// Runs the same load against the TCP floor (`floor.rs`): `record_len` bytes, the size of one
/// update as the gRPC server writes it, once a second to every connection.
pub async fn run_floor(subscribers: usize, measure: Duration, record_len: usize) -> ScaleResult {
    let (connections, fd_limit) = connection_budget(subscribers, None);
    let subscribers = subscribers.min(connections);
    let (mut child, port) = super::floor::spawn(record_len);
    let pid = child.id();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before_kib = rss_kib(pid);
    let subs = Subscribers::spawn(&vec![1; subscribers], |_, _| async move {
        FloorReader::connect(addr, record_len)
            .await
            .expect("connect to the floor server")
    });
    let connect_time = subs.all_subscribed().await;
    let window = subs.measure(pid, measure).await;
    let mut result = ScaleResult::new(
        "TCP floor",
        "light",
        subscribers,
        connections,
        fd_limit,
        record_len,
        rss_before_kib,
        window,
        connect_time,
    );
    subs.finish(&mut result).await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Prints section 4's table: rows per subscriber count, each gRPC server then NATS when it
/// ran; ratios to NATS first.
pub fn print(results: &[super::targets::ScaleRun]) {
    println!(
        "## 4. Scale: one server process, 1 update/s to every subscriber at once, own or shared connections"
    );
    println!();
    println!(
        "| subscribers | real connections | system | p99 / NATS | RSS per subscriber / NATS | server CPU / NATS |"
    );
    println!("|---:|---:|---|---:|---:|---:|");
    for (grpc, n, floor) in results {
        let Some(n) = n else { continue };
        for g in grpc.iter().chain(floor) {
            // NATS's RSS barely moves with subscribers on shared connections: no ratio then.
            let rss_ratio = if n.per_subscriber_kib() >= 0.1 {
                format!("{:.2}x", g.per_subscriber_kib() / n.per_subscriber_kib())
            } else {
                "n/a".to_string()
            };
            println!(
                "| {} | {} | {} | {:.2}x | {rss_ratio} | {:.2}x |",
                g.subscribers,
                g.connections,
                g.system,
                g.percentile(0.99) / n.percentile(0.99),
                g.server_cpu_pct / n.server_cpu_pct.max(1e-9),
            );
        }
    }
    println!();
    println!(
        "| subscribers | system | client | real connections | update | p50 / p99 / max | deliveries/s | gaps + missed (clients) | lagged (server) | server RSS per subscriber | server CPU | connect time |"
    );
    println!("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (grpc, nats, floor) in results {
        for r in grpc.iter().chain(nats).chain(floor) {
            println!(
                "| {} | {} | {} | {} | {} B | {:.2} / {:.2} / {:.2} ms | {:.0} | {} + {} | {} | {:.1} KiB | {:.0}% of a core | {:.1} s |",
                r.subscribers,
                r.system,
                r.client,
                r.connections,
                r.update_size,
                r.percentile(0.5),
                r.percentile(0.99),
                r.percentile(1.0),
                r.deliveries as f64 / r.measured.as_secs_f64().max(1e-9),
                r.gaps,
                r.missed,
                r.server_lagged.map_or("n/a".to_string(), |l| l.to_string()),
                r.per_subscriber_kib(),
                r.server_cpu_pct,
                r.connect_time.as_secs_f64(),
            );
        }
    }
    if let Some(r) = results.first().and_then(|(g, _, _)| g.first()) {
        println!();
        println!(
            "(open-file soft limit {} after raising it to the hard limit; \"real connections\" includes the warm-up or publisher connection; every server is a child process (the broadcaster with its default runtime and the synthetic source, nats-server with the bench's publisher, the TCP floor writing its records from 2 threads), the load generator shares the 2 CPUs on a 2-thread runtime; latency is the server's receipt (gRPC), the publisher's send (NATS) or the floor's send timestamp to the client's receipt, same clock; the floor's update is one gRPC update as written on the wire (HTTP/2 frame header + gRPC prefix + message); RSS per subscriber is (server RSS with every subscriber connected, receiving 1 update/s) - (RSS before they connected), divided by subscribers)",
            r.fd_limit
        );
    }
    println!();
}

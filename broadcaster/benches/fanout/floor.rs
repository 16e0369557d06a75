//! The TCP floor of the scale section: a child process (this bench binary, started with
//! `BENCH_FLOOR_RECORD_LEN` set) that writes one fixed-size record per second to every
//! accepted connection from two plain threads, one blocking `write` per connection and nothing
//! else: no HTTP/2, no tasks, no queues. Its latency is what the kernel's loopback TCP and the
//! load generator cost alone, the least any server could reach on this machine with one
//! connection per subscriber.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stallwatch_core::clock::now_us;

/// Set (to the record length in bytes) in the child's environment to make it the floor server.
pub const RECORD_LEN_ENV: &str = "BENCH_FLOOR_RECORD_LEN";
/// Writer threads: as many as the broadcaster's worker threads on this machine.
const WRITERS: usize = 2;

/// Runs the floor server forever (the bench kills it): prints `port N` on stdout, accepts
/// connections and writes `[seq u64 LE][send time in µs u64 LE][zeros]` once a second.
pub fn serve(record_len: usize) {
    let listener = listen();
    println!("port {}", listener.local_addr().unwrap().port());
    let _ = std::io::stdout().flush();
    let shards: Arc<Vec<Mutex<Vec<TcpStream>>>> =
        Arc::new((0..WRITERS).map(|_| Mutex::new(Vec::new())).collect());
    let mut ticks = Vec::new();
    for w in 0..WRITERS {
        let (tx, rx) = mpsc::channel::<(u64, u64)>();
        ticks.push(tx);
        let shards = shards.clone();
        std::thread::Builder::new()
            .name(format!("floor-writer-{w}"))
            .spawn(move || {
                let mut record = vec![0u8; record_len.max(16)];
                for (seq, sent_at) in rx {
                    record[..8].copy_from_slice(&seq.to_le_bytes());
                    record[8..16].copy_from_slice(&sent_at.to_le_bytes());
                    let mut sockets = shards[w].lock().unwrap();
                    // A reader that stopped reading fills its buffers; the write timeout drops it.
                    sockets.retain_mut(|s| s.write_all(&record).is_ok());
                }
            })
            .unwrap();
    }
    let accept_shards = shards.clone();
    std::thread::spawn(move || {
        for (i, socket) in listener.incoming().flatten().enumerate() {
            let _ = socket.set_nodelay(true);
            let _ = socket.set_write_timeout(Some(Duration::from_secs(1)));
            accept_shards[i % WRITERS].lock().unwrap().push(socket);
        }
    });
    let start = Instant::now();
    for seq in 1.. {
        let next = start + Duration::from_secs(seq);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let sent_at = now_us();
        for tick in &ticks {
            let _ = tick.send((seq, sent_at));
        }
    }
}

/// A listener with the broadcaster's backlog (1,024; std's is 128, which drops the SYNs of a
/// 128-wide connect burst into 1 s retransmits).
fn listen() -> TcpListener {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let listener = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(([127, 0, 0, 1], 0).into()).expect("bind");
        socket.listen(1024).expect("listen")
    });
    let listener = listener.into_std().expect("std listener");
    listener.set_nonblocking(false).expect("blocking listener");
    listener
}

/// Starts the floor server as a child process; returns it and its port.
pub fn spawn(record_len: usize) -> (std::process::Child, u16) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().expect("bench binary"))
        .env(RECORD_LEN_ENV, record_len.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the floor server");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("floor server port");
    let port = line
        .trim()
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .expect("floor server prints its port");
    (child, port)
}

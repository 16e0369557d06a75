//! `cargo bench -p transit-sidecar`: the three targets, printed as tables.
//!
//! 1. Detection latency beyond the threshold: synthetic reports over loopback HTTP into a real
//!    in-process sidecar (default thresholds, 250 ms report interval); ≥ 20 streams get stuck
//!    at random moments; latency = verdict time - the moment the stream stopped dequeuing,
//!    minus `stall_after`. Target: ≤ 2 report intervals (500 ms).
//! 2. Bundle durable time: `POST /v1/dumps` round trip (answered after fsync + rename) with a
//!    task dump of ~5,000 tasks served by a fake broadcaster admin API; with process dump
//!    `none` (target < 1 s), and for reference `minidump` / `full` against a process of
//!    100 MiB RSS.
//! 3. Steady RSS of the real `transit-sidecar` binary with 50 streams reporting 4×/s, scraped
//!    every second. Target < 8 MiB. Printed with RssAnon / RssFile / RssShmem and the biggest
//!    mappings from /proc/PID/smaps, which say where the rest goes.
//!
//! Environment: `BENCH_RSS_SECS` (default 60), `BENCH_SKIP` (comma list of `detect`,
//! `bundle`, `rss`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use stallwatch_core::bundle::Manifest;
use stallwatch_core::report::{DispatcherState, StreamReport};
use stallwatch_testkit::net::free_port;
use stallwatch_testkit::report::{report, stream};
use stallwatch_testkit::taskdump::task_dump;
use transit_sidecar::run::IngestBound;

const INTERVAL: Duration = Duration::from_millis(250);

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx]
}

fn row(name: &str, mut samples: Vec<f64>, unit: &str, target: &str) {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "| {name:<44} | {:>4} | {:>9.1} | {:>9.1} | {:>9.1} | {unit:<4} | {target:<14} |",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.last().copied().unwrap_or(f64::NAN),
    );
}

fn header(title: &str) {
    println!("\n### {title}\n");
    println!(
        "| {:<44} | {:>4} | {:>9} | {:>9} | {:>9} | unit | target         |",
        "measure", "n", "p50", "p99", "max"
    );
    println!(
        "|{:-<46}|{:-<6}|{:-<11}|{:-<11}|{:-<11}|------|----------------|",
        "", "", "", "", ""
    );
}

fn skip(what: &str) -> bool {
    std::env::var("BENCH_SKIP").is_ok_and(|s| s.split(',').any(|x| x.trim() == what))
}

async fn detection_latency() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_broadcaster(&task_dump(&["a"], 0, None), Duration::ZERO).await;
    let mut args = run_args(dir.path(), None, &fake.url);
    // Defaults from the architecture doc.
    args.stall_after = Duration::from_secs(2);
    args.report_timeout = Duration::from_secs(2);
    args.recover_after = Duration::from_secs(1);
    let sc = transit_sidecar::run::start(args).await.unwrap();
    let IngestBound::Tcp(ingest) = sc.ingest.clone() else {
        panic!()
    };
    let url = format!("http://{ingest}/v1/reports");
    let http = reqwest::Client::new();
    let monitor = sc.monitor.clone();

    const STUCK: usize = 32;
    const DEAD: usize = 8;
    let names: Vec<String> = (0..STUCK + DEAD + 4).map(|i| format!("s{i:02}")).collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let t0 = Instant::now();
    // Stream i stops dequeuing at a random moment between 1 s and 4 s (not aligned with the
    // report clock); DEAD more are reported dead at random moments; 4 stay healthy.
    let fail_at: Vec<Option<Duration>> = (0..names.len())
        .map(|i| (i < STUCK + DEAD).then(|| Duration::from_millis(1000 + rng.below(3000))))
        .collect();
    let detected = std::sync::Arc::new(std::sync::Mutex::new(vec![None::<Duration>; names.len()]));
    let poller = {
        let detected = detected.clone();
        let names = names.clone();
        tokio::spawn(async move {
            loop {
                let st = monitor.status();
                let now = t0.elapsed();
                let done = {
                    let mut d = stallwatch_core::sync::lock(&detected);
                    for s in st.streams.iter().filter(|s| s.reason.is_some()) {
                        if let Some(i) = names.iter().position(|n| *n == s.name)
                            && d[i].is_none()
                        {
                            d[i] = Some(now);
                        }
                    }
                    d.iter().take(STUCK + DEAD).all(Option::is_some)
                };
                if done {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut seq = 0u64;
    let mut next = Instant::now();
    let mut last_report = Duration::ZERO;
    // The per-stream counters as of "now": items arrive at 20/s, the dispatcher keeps up
    // until its failure moment.
    while !poller.is_finished() && t0.elapsed() < Duration::from_secs(12) {
        seq += 1;
        let now = t0.elapsed();
        let streams: Vec<StreamReport> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let arrived = (now.as_millis() / 50) as u64 + 1;
                match fail_at[i] {
                    Some(f) if now >= f => {
                        let deq = (f.as_millis() / 50) as u64;
                        if i < STUCK {
                            stream(n, 5, arrived, deq, DispatcherState::Running)
                        } else {
                            stream(n, 5, arrived, deq, DispatcherState::Dead)
                        }
                    }
                    _ => stream(n, 1, arrived, arrived - 1, DispatcherState::Running),
                }
            })
            .collect();
        let r = http
            .post(&url)
            .json(&report("bench", seq, streams))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        last_report = t0.elapsed();
        next += INTERVAL;
        tokio::time::sleep_until(next.into()).await;
    }
    let _ = poller.await;
    let d = stallwatch_core::sync::lock(&detected).clone();
    let mut stuck = Vec::new();
    let mut dead = Vec::new();
    for i in 0..STUCK + DEAD {
        let (Some(at), Some(f)) = (d[i], fail_at[i]) else {
            continue;
        };
        let latency = at.saturating_sub(f).as_secs_f64() * 1000.0;
        if i < STUCK {
            stuck.push(latency - 2000.0);
        } else {
            dead.push(latency);
        }
    }
    let healthy_false = d[STUCK + DEAD..].iter().filter(|x| x.is_some()).count();

    // ReportsLost: stop reporting; verdict time - last report - report_timeout.

    let mut lost = None;
    while lost.is_none() && t0.elapsed() < last_report + Duration::from_secs(5) {
        let st = sc.monitor.status();
        if st
            .streams
            .iter()
            .any(|s| s.reason.map(|r| r.as_str()) == Some("ReportsLost"))
        {
            lost = Some((t0.elapsed() - last_report).as_secs_f64() * 1000.0 - 2000.0);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    header("Detection latency beyond the threshold (report interval 250 ms, real loopback ingest)");
    row(
        &format!(
            "ChannelStuck: verdict - stuck - 2 s ({} of {STUCK})",
            stuck.len()
        ),
        stuck,
        "ms",
        "<= 500 ms",
    );
    row(
        &format!("DispatcherDead: verdict - death ({} of {DEAD})", dead.len()),
        dead,
        "ms",
        "<= 250 ms",
    );
    row(
        "ReportsLost: verdict - last report - 2 s",
        lost.into_iter().collect(),
        "ms",
        "<= 100 ms tick",
    );
    println!("\nhealthy control streams wrongly judged stalled: {healthy_false} of 4");
    sc.shutdown().await;
}

/// A process holding ~100 MiB of touched memory, standing in for a broadcaster of that RSS.
fn big_process() -> Option<std::process::Child> {
    let child = Command::new("python3")
        .args(["-c", "import time\nb = bytearray(100 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint('ready', flush=True)\ntime.sleep(600)"])
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    let mut child = child;
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take()?)
        .read_line(&mut line)
        .ok()?;
    (line.trim() == "ready").then_some(child)
}

fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn hwm_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

/// Resident KiB per mapping kind of `pid` from /proc/PID/smaps, biggest first: a file's
/// mappings are summed per permission (`r-xp` code, `r--p` read-only data, `rw-p` data), all
/// anonymous ones without a name are one `[anon]` row (heap arenas, thread stacks).
fn smaps_breakdown(pid: u32) -> Vec<(String, u64)> {
    let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return Vec::new();
    };
    let mut totals: std::collections::BTreeMap<String, u64> = Default::default();
    let mut current = String::new();
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // A mapping's header is "start-end perms offset dev inode [path]".
        if fields
            .first()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            let perms = fields.get(1).copied().unwrap_or("");
            current = match fields.get(5) {
                Some(path) if path.starts_with('/') => {
                    let file = path.rsplit('/').next().unwrap_or(path);
                    format!("{file} {perms}")
                }
                Some(name) => (*name).to_owned(),
                None => "[anon]".to_owned(),
            };
        } else if let Some(kib) = line.strip_prefix("Rss:") {
            let kib: u64 = kib
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap_or(0);
            *totals.entry(current.clone()).or_default() += kib;
        }
    }
    let mut rows: Vec<(String, u64)> = totals.into_iter().filter(|(_, kib)| *kib > 0).collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.1));
    rows
}

async fn bundle_durability() {
    let streams: Vec<String> = (0..50).map(|i| format!("route-{i}")).collect();
    let refs: Vec<&str> = streams.iter().map(String::as_str).collect();
    let dump = task_dump(&refs, 100, Some("route-7"));
    let dump_bytes = serde_json::to_vec(&dump).unwrap().len();
    let fake = fake_broadcaster(&dump, Duration::ZERO).await;
    let big = big_process();
    let big_pid = big.as_ref().map(std::process::Child::id);

    header("Bundle durable time: POST /v1/dumps until 201 (after fsync + rename)");
    for (mode, n) in [("none", 20), ("minidump", 5), ("full", 3)] {
        if mode != "none" && big_pid.is_none() {
            println!("| {mode:<44} | skipped: python3 unavailable for a 100 MiB RSS target |");
            continue;
        }
        let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "bench").unwrap();
        let dumps = dir.path().join("dumps");
        std::fs::create_dir(&dumps).unwrap();
        let mut args = run_args(&dumps, Some(&token), &fake.url);
        args.process_dump = clap::ValueEnum::from_str(mode, false).unwrap();
        args.max_bundles = 100;
        args.task_dump_timeout = Duration::from_secs(5);
        let sc = transit_sidecar::run::start(args).await.unwrap();
        let IngestBound::Tcp(ingest) = sc.ingest.clone() else {
            panic!()
        };
        let http = reqwest::Client::new();
        // A realistic state: 16 recent reports of 50 streams.
        for seq in 1..=16u64 {
            let mut r = report(
                "bench",
                seq,
                refs.iter()
                    .map(|s| stream(s, 1, 100 * seq, 100 * seq - 1, DispatcherState::Running))
                    .collect(),
            );
            r.pid = big_pid.or(Some(std::process::id()));
            http.post(format!("http://{ingest}/v1/reports"))
                .json(&r)
                .send()
                .await
                .unwrap();
        }
        let mut samples = Vec::new();
        let mut last: Option<Manifest> = None;
        for _ in 0..n {
            let t = Instant::now();
            let r = http
                .post(format!("http://{}/v1/dumps", sc.admin_addr))
                .bearer_auth("bench")
                .json(&serde_json::json!({"stream": "route-7"}))
                .send()
                .await
                .unwrap();
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(r.status(), 201);
            last = Some(r.json().await.unwrap());
            samples.push(ms);
        }
        let m = last.unwrap();
        let bytes: u64 = m.files.iter().map(|f| f.bytes).sum();
        let target = if mode == "none" {
            "< 1000 ms"
        } else {
            "(reference)"
        };
        row(
            &format!("process dump {mode}: bundle {} KiB", bytes / 1024),
            samples,
            "ms",
            target,
        );
        if mode != "none" {
            println!("|   -> {:?}", m.process_dump);
        }
        sc.shutdown().await;
    }
    println!(
        "\ntask dump served: {} tasks, {} KiB JSON; 100 MiB stand-in RSS: {} KiB",
        dump.tasks.len(),
        dump_bytes / 1024,
        big_pid
            .and_then(rss_kib)
            .map(|k| k.to_string())
            .unwrap_or_else(|| "n/a".into())
    );
    if let Some(mut b) = big {
        let _ = b.kill();
        let _ = b.wait();
    }
}

async fn steady_rss() {
    let secs: u64 = std::env::var("BENCH_RSS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_broadcaster(&task_dump(&["a"], 0, None), Duration::ZERO).await;
    let (ingest, http_port, admin) = (free_port(), free_port(), free_port());
    // BENCH_SIDECAR_BIN measures another build, e.g. target/small/transit-sidecar.
    let bin = std::env::var("BENCH_SIDECAR_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_transit-sidecar").to_owned());
    let mut child = Command::new(&bin)
        .arg("run")
        .arg(format!("--ingest-addr=127.0.0.1:{ingest}"))
        .arg(format!("--http-addr=127.0.0.1:{http_port}"))
        .arg(format!("--admin-addr=127.0.0.1:{admin}"))
        .arg(format!("--broadcaster-admin-url={}", fake.url))
        .arg(format!("--dump-dir={}", dir.path().display()))
        .args([
            "--publish=off",
            "--pod-name=bc-0",
            "--pod-namespace=transit",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http
            .get(format!("http://127.0.0.1:{http_port}/healthz"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let idle_rss = rss_kib(pid).unwrap_or(0);
    let names: Vec<String> = (0..50).map(|i| format!("route-{i}")).collect();
    let start = Instant::now();
    let mut next = Instant::now();
    let mut seq = 0u64;
    let mut samples = Vec::new();
    let mut last_sample = Instant::now();
    let mut body_len = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        seq += 1;
        // Every 10 s one stream is stuck for 4 s: verdict changes and history entries happen.
        let phase = start.elapsed().as_secs();
        let stuck = (phase % 10 < 4).then(|| (phase / 10) as usize % names.len());
        let streams: Vec<StreamReport> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if Some(i) == stuck {
                    stream(n, 5, seq * 3, 10, DispatcherState::Running)
                } else {
                    stream(n, 1, seq * 3 + 10, seq * 3 + 9, DispatcherState::Running)
                }
            })
            .collect();
        let r = report("rss", seq, streams);
        let body = serde_json::to_vec(&r).unwrap();
        body_len = body.len();
        http.post(format!("http://127.0.0.1:{ingest}/v1/reports"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        if last_sample.elapsed() >= Duration::from_secs(1) {
            last_sample = Instant::now();
            let _ = http
                .get(format!("http://127.0.0.1:{http_port}/metrics"))
                .send()
                .await;
            let _ = http
                .get(format!("http://127.0.0.1:{http_port}/v1/status"))
                .send()
                .await;
            if start.elapsed() >= Duration::from_secs(secs.min(10))
                && let Some(kib) = rss_kib(pid)
            {
                samples.push(kib as f64 / 1024.0);
            }
        }
        next += INTERVAL;
        tokio::time::sleep_until(next.into()).await;
    }
    let hwm = hwm_kib(pid).unwrap_or(0);
    let anon = status_kib(pid, "RssAnon:").unwrap_or(0);
    let file = status_kib(pid, "RssFile:").unwrap_or(0);
    let shmem = status_kib(pid, "RssShmem:").unwrap_or(0);
    let threads = status_kib(pid, "Threads:").unwrap_or(0);
    let mappings = smaps_breakdown(pid);
    header(&format!(
        "Steady RSS of {bin}: 50 streams x 4 reports/s ({body_len} B each), /metrics + /v1/status every 1 s, {secs} s"
    ));
    row(
        "VmRSS after 10 s warm-up, sampled every 1 s",
        samples,
        "MiB",
        "< 8 MiB",
    );
    println!(
        "\nVmRSS at start (idle): {:.1} MiB; VmHWM (peak) over the run: {:.1} MiB; reports sent: {seq}",
        idle_rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "at the end: RssAnon (heap, stacks) {:.2} MiB + RssFile (code and read-only data of the binary and libc, shared, reclaimable) {:.2} MiB + RssShmem {:.2} MiB; {threads} threads",
        anon as f64 / 1024.0,
        file as f64 / 1024.0,
        shmem as f64 / 1024.0,
    );
    println!("\n| mapping (/proc/PID/smaps, at the end) | Rss KiB |\n|---|---:|");
    for (name, kib) in mappings.iter().take(12) {
        println!("| {name} | {kib} |");
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!(
            "transit-sidecar benchmarks ({} build)",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        );
        if !skip("detect") {
            detection_latency().await;
        }
        if !skip("bundle") {
            bundle_durability().await;
        }
        if !skip("rss") {
            steady_rss().await;
        }
    });
}

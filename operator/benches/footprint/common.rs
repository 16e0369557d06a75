//! What both footprint benches share: the runtime and the cache fill as `transit-operator
//! run` has them, reading this process's memory, and printing the table.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::runtime::reflector::Store;
use transit_operator::run::{Caches, DEFAULT_WORKER_THREADS, Scope, cache_streams, runtime};

/// The operator's RSS target with 1,000 TransitStreams and 2,000 pods cached.
const TARGET_KIB: u64 = 32 * 1024;

/// A `/proc/self/status` field in KiB (`VmRSS:`, `VmHWM:`), 0 if unreadable.
pub fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs `main` on the runtime `transit-operator run` uses (same worker threads: each one is a
/// malloc arena, which the RSS shows).
pub fn on_operator_runtime(main: impl std::future::Future<Output = ()>) {
    runtime(DEFAULT_WORKER_THREADS)
        .expect("the operator's runtime")
        .block_on(main);
}

/// Fills the operator's caches (`cache_streams`: its reflectors, watch configuration and
/// slimming) from `client` until they hold `streams` TransitStreams and `pods` pods, then
/// measures. The watch streams are polled here, on the runtime's main thread, not spawned:
/// `run_controller` polls them the same way.
pub async fn fill_caches(
    client: &Client,
    streams: usize,
    pods: usize,
    baseline_kib: u64,
) -> (Footprint, usize, Store<Pod>) {
    let started = Instant::now();
    let (ts_stream, pod_stream, ts_store, pod_store) =
        cache_streams(client, &Scope::All, Caches::new());
    let driver = async move {
        let a = ts_stream.for_each(|_| async {});
        let b = pod_stream.for_each(|_| async {});
        futures::join!(a, b);
    };
    let measure = async {
        ts_store.wait_until_ready().await.unwrap();
        pod_store.wait_until_ready().await.unwrap();
        while ts_store.len() < streams || pod_store.len() < pods {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let filled = started.elapsed();
        tokio::time::sleep(Duration::from_millis(200)).await;
        Footprint {
            baseline_kib,
            rss_kib: rss_kib("VmRSS:"),
            peak_kib: rss_kib("VmHWM:"),
            anon_kib: rss_kib("RssAnon:"),
            file_kib: rss_kib("RssFile:"),
            filled,
        }
    };
    tokio::select! {
        footprint = measure => (footprint, ts_store.len(), pod_store),
        () = driver => panic!("the watch streams ended"),
    }
}

/// One run's memory: before the caches, with them filled, the peak, and how long filling took.
pub struct Footprint {
    pub baseline_kib: u64,
    pub rss_kib: u64,
    pub peak_kib: u64,
    /// Of `rss_kib`: the heap and other anonymous memory, and mapped files (code, libraries).
    pub anon_kib: u64,
    pub file_kib: u64,
    pub filled: Duration,
}

/// Prints the table: `extra` rows (measure, value) first, then the memory rows and the verdict.
pub fn print_table(title: &str, extra: &[(&str, String)], f: &Footprint) {
    let mib = |kib: u64| format!("{:>8.1} MiB", kib as f64 / 1024.0);
    println!("{title}");
    println!("| measure                         | value        |");
    println!("|---------------------------------|--------------|");
    let mut rows: Vec<(&str, String)> = extra.to_vec();
    rows.extend([
        ("RSS before caches", mib(f.baseline_kib)),
        ("RSS with caches filled", mib(f.rss_kib)),
        ("  of which anonymous (RssAnon)", mib(f.anon_kib)),
        ("  of which files (RssFile)", mib(f.file_kib)),
        ("peak RSS (VmHWM, during lists)", mib(f.peak_kib)),
        (
            "time to fill the caches",
            format!("{:>8.0} ms ", f.filled.as_secs_f64() * 1000.0),
        ),
        ("target", format!("  < {} MiB  ", TARGET_KIB / 1024)),
    ]);
    for (measure, value) in rows {
        println!("| {measure:<32} | {value} |");
    }
    let verdict = if f.rss_kib < TARGET_KIB {
        "RSS within target"
    } else {
        "RSS ABOVE target"
    };
    println!("result: {verdict}");
}

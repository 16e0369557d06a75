//! The reporter: every report interval, a heartbeat with every stream's state, POSTed to the
//! sidecar (`stallwatch.report.v1`, docs/report-protocol.md).
//!
//! It runs as its own task and reads stream state from outside the dispatchers (channel
//! counters, task handles), so a dead or hung dispatcher shows up as "no progress", never as
//! "no report". Each send runs in its own short-lived task bounded by a timeout below the
//! interval; a send still running at the next tick is abandoned, so a slow or absent sidecar
//! never delays a report. The HTTP client reconnects by itself when the sidecar comes back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use stallwatch_core::client::ReportClient;
use stallwatch_core::report::Report;

/// Reporter counters, for metrics.
#[derive(Debug, Default)]
pub struct ReporterStats {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    /// 0 unknown, 1 reachable, 2 unreachable: log only on changes.
    reachable: AtomicU8,
}

impl ReporterStats {
    fn mark(&self, ok: bool, detail: &str) {
        let new = if ok { 1 } else { 2 };
        let old = self.reachable.swap(new, Ordering::Relaxed);
        if old != new {
            if ok {
                tracing::info!("sidecar reachable, reports accepted");
            } else {
                tracing::warn!("reports failing (will keep trying every interval): {detail}");
            }
        }
    }
}

/// The per-request timeout for an interval: most of it, leaving room before the next tick.
pub fn send_timeout(interval: Duration) -> Duration {
    (interval * 4 / 5).max(Duration::from_millis(10))
}

/// Sends `build(seq)` every `interval`, forever.
#[async_backtrace::framed]
pub async fn run_reporter<B>(
    client: ReportClient,
    interval: Duration,
    stats: Arc<ReporterStats>,
    build: B,
) where
    B: Fn(u64) -> Report + Send + Sync + 'static,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut seq = 0u64;
    let mut in_flight: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        ticker.tick().await;
        if let Some(previous) = in_flight.take()
            && !previous.is_finished()
        {
            previous.abort();
            stats.failed.fetch_add(1, Ordering::Relaxed);
            stats.mark(false, "sidecar did not answer within the interval");
        }
        seq += 1;
        let report = build(seq);
        let client = client.clone();
        let stats = stats.clone();
        in_flight = Some(tokio::spawn(async move {
            match client.send(&report).await {
                Ok(()) => {
                    stats.sent.fetch_add(1, Ordering::Relaxed);
                    stats.mark(true, "");
                }
                Err(e) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    stats.mark(false, &e.to_string());
                }
            }
        }));
    }
}

//! What a peer may make one connection do, and the counts of connections closed for going
//! past it. Every limit is answered with GOAWAY (ENHANCE_YOUR_CALM unless the RFC names a
//! code) and counted by [`Exceeded`]. The defaults are no looser than hyper/h2's (the server
//! tonic runs on); the crate README lists each one beside h2's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

/// A rate: a burst of `burst` events, then `per_second` on average.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub burst: u32,
    pub per_second: u32,
}

/// The limits of one connection. `Limits::default()` is what the broadcaster runs with.
#[derive(Debug, Clone)]
pub struct Limits {
    /// From accept until the client preface and its first SETTINGS have arrived.
    pub preface_timeout: Duration,
    /// Streams the peer reset before their response began, not yet paid back by streams
    /// that were answered (h2: `max_pending_accept_reset_streams`, 20).
    pub max_pending_resets: u32,
    /// RST_STREAM frames from the peer (h2: none beyond the pending count).
    pub resets: Rate,
    /// Streams we reset because of the peer's errors, over the connection's life (h2:
    /// `max_local_error_reset_streams`, 1024).
    pub max_local_resets: u32,
    /// DATA frames without payload nor END_STREAM, HEADERS and CONTINUATION frames without
    /// a fragment nor END_HEADERS: they cost work and carry nothing.
    pub empty_frames: Rate,
    /// SETTINGS frames (each may walk every stream's window).
    pub settings: Rate,
    /// PING frames, beyond one per DATA frame we sent (a BDP probe follows data).
    pub pings: Rate,
    /// WINDOW_UPDATE frames, beyond ten per DATA frame we sent.
    pub window_updates: Rate,
    /// PRIORITY frames (deprecated, ignored, but still parsed).
    pub priorities: Rate,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            preface_timeout: Duration::from_secs(10),
            max_pending_resets: 20,
            resets: Rate {
                burst: 200,
                per_second: 100,
            },
            max_local_resets: 1024,
            empty_frames: Rate {
                burst: 100,
                per_second: 10,
            },
            settings: Rate {
                burst: 100,
                per_second: 10,
            },
            pings: Rate {
                burst: 100,
                per_second: 10,
            },
            window_updates: Rate {
                burst: 1000,
                per_second: 100,
            },
            priorities: Rate {
                burst: 1000,
                per_second: 100,
            },
        }
    }
}

/// The CONTINUATION frames a header block may take: h2's rule (enough for the largest
/// header list at the smallest frame size, plus a quarter, at least 5).
pub(crate) fn max_continuations(max_header_list: usize, max_frame: usize) -> usize {
    let frames = (max_header_list / max_frame).max(1);
    (frames + frames / 4).max(5)
}

/// Why a connection was closed for going past a limit: the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    PrefaceTimeout,
    PendingResets,
    ResetRate,
    LocalResets,
    Continuations,
    HeaderBlock,
    HeaderList,
    EmptyFrames,
    Settings,
    Pings,
    WindowUpdates,
    Priorities,
}

impl Exceeded {
    pub const ALL: [Exceeded; 12] = [
        Exceeded::PrefaceTimeout,
        Exceeded::PendingResets,
        Exceeded::ResetRate,
        Exceeded::LocalResets,
        Exceeded::Continuations,
        Exceeded::HeaderBlock,
        Exceeded::HeaderList,
        Exceeded::EmptyFrames,
        Exceeded::Settings,
        Exceeded::Pings,
        Exceeded::WindowUpdates,
        Exceeded::Priorities,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Exceeded::PrefaceTimeout => "preface_timeout",
            Exceeded::PendingResets => "pending_resets",
            Exceeded::ResetRate => "reset_rate",
            Exceeded::LocalResets => "local_resets",
            Exceeded::Continuations => "continuations",
            Exceeded::HeaderBlock => "header_block",
            Exceeded::HeaderList => "header_list",
            Exceeded::EmptyFrames => "empty_frames",
            Exceeded::Settings => "settings",
            Exceeded::Pings => "pings",
            Exceeded::WindowUpdates => "window_updates",
            Exceeded::Priorities => "priorities",
        }
    }
}

/// Connections closed per [`Exceeded`]; clones share the counts. Register it as a
/// prometheus-client collector: `h2_limit_exceeded_total{reason}` (counter).
#[derive(Debug, Clone, Default)]
pub struct Metrics(Arc<[AtomicU64; Exceeded::ALL.len()]>);

impl Metrics {
    pub fn count(&self, reason: Exceeded) -> u64 {
        self.0[reason as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, reason: Exceeded) {
        self.0[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}

impl Collector for Metrics {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut family = enc.encode_descriptor(
            "h2_limit_exceeded",
            "HTTP/2 connections closed with GOAWAY for going past a limit, by reason.",
            None,
            MetricType::Counter,
        )?;
        for reason in Exceeded::ALL {
            let labels = [("reason", reason.as_str())];
            ConstCounter::new(self.count(reason)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// A token bucket for one [`Rate`], with credit the peer can earn. The rate is not kept here
/// but passed in from the connection's [`Limits`]: six buckets sit in every connection, so
/// each is 8 bytes (`f32` tokens, the last take as milliseconds of the process clock), not 32
/// (`f64`, the rate and an `Option<Instant>`): 144 bytes less per connection, for an idle
/// subscriber on its own connection about 4% of its memory (BENCHMARKS.md).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    tokens: f32,
    /// [`millis`] at the last take (wrapping after 49 days).
    last: u32,
}

/// Milliseconds of `now` since the process's first bucket, truncated to 32 bits: the
/// differences of two readings telescope, so a run of takes less than a millisecond apart
/// loses no refill.
fn millis(now: Instant) -> u32 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    // Truncation is the point: the clock wraps, and `take` reads it with a wrapping
    // difference.
    now.saturating_duration_since(epoch).as_millis() as u32
}

/// A wrapping difference of [`millis`] at or past this is a clock reading older than the last
/// (or an idle of more than 24 days): no refill, never a spurious one (as the `Instant`
/// version's saturating difference).
const BACKWARDS_MS: u32 = 1 << 31;

impl Bucket {
    pub fn new(rate: Rate) -> Self {
        Self {
            tokens: rate.burst as f32,
            // Starts the process clock no later than the bucket: a first take's refill is
            // capped at the burst the bucket starts with anyway.
            last: millis(Instant::now()),
        }
    }

    /// Takes one token of `rate` at `now`; `false` when none is left (the limit is exceeded).
    pub fn take(&mut self, rate: Rate, now: Instant) -> bool {
        let now = millis(now);
        let elapsed = now.wrapping_sub(self.last);
        if elapsed < BACKWARDS_MS {
            let refill = elapsed as f32 * (rate.per_second as f32 / 1000.0);
            self.tokens = (self.tokens + refill).min(rate.burst as f32);
        }
        self.last = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    /// `n` tokens earned (by our own output), up to `rate`'s burst.
    pub fn credit(&mut self, rate: Rate, n: u32) {
        self.tokens = (self.tokens + n as f32).min(rate.burst as f32);
    }
}

#[cfg(test)]
mod tests;

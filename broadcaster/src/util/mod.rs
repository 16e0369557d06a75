//! Small helpers shared by the modules: hex excerpts, rate-limited logging. (The wall clock
//! and the lock-poisoning policy are `stallwatch_core::{clock, sync}`.)

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use stallwatch_core::sync::lock;

/// Lower-case hex of at most the first `max_bytes` bytes of `bytes`.
pub fn hex_excerpt(bytes: &[u8], max_bytes: usize) -> String {
    let slice = &bytes[..bytes.len().min(max_bytes)];
    let mut out = String::with_capacity(slice.len() * 2);
    for b in slice {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Lets one log line through per `every`, counting the ones it held back, so a flood of bad
/// input cannot flood the log (or slow the dispatcher down with logging).
#[derive(Debug)]
pub struct RateLimiter {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimiter {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(suppressed)` when a line may be logged now (with how many were held back since the
    /// last one), `None` when this one should be dropped.
    pub fn check(&self) -> Option<u64> {
        let mut state = lock(&self.state);
        let now = Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < self.every => {
                state.1 += 1;
                None
            }
            _ => {
                let suppressed = state.1;
                *state = (Some(now), 0);
                Some(suppressed)
            }
        }
    }
}

#[cfg(test)]
mod tests;

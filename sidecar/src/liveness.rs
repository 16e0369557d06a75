//! Liveness of the sidecar's judge loop (the ticker that judges silence, `ReportsLost`):
//! `/healthz` fails once the loop has not gone round within its bound. A sidecar whose judge
//! stopped would answer `ok` and never see a stall again: the silent stall it exists to catch,
//! in itself (issue 21).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use stallwatch_core::sync::lock;

/// Env var of the test hook that wedges the judge loop (value `judge`). Tests only.
pub const WEDGE_ENV: &str = "STALLWATCH_TEST_WEDGE";

/// When the judge loop last went round, and how late it may be.
#[derive(Debug)]
pub struct Liveness {
    last: Mutex<Instant>,
    bound: Duration,
    wedge: bool,
}

impl Liveness {
    /// `wedge`: the test hook's value (`judge` wedges the loop; anything else does not).
    pub fn new(bound: Duration, wedge: &str) -> Self {
        Liveness {
            last: Mutex::new(Instant::now()),
            bound,
            wedge: wedge.split(',').any(|w| w.trim() == "judge"),
        }
    }

    pub fn beat(&self) {
        *lock(&self.last) = Instant::now();
    }

    /// How long since the last beat, when that is past the bound at `now`.
    pub fn late(&self, now: Instant) -> Option<Duration> {
        let since = now.saturating_duration_since(*lock(&self.last));
        (since > self.bound).then_some(since)
    }

    /// The test hook: never returns when the judge loop was told to wedge.
    pub async fn wedge_point(&self) {
        if self.wedge {
            tracing::warn!("{WEDGE_ENV}: the judge loop is wedged on purpose (tests only)");
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests;

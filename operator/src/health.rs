//! Liveness of the operator's own loops: each long-running loop (the controller's, the
//! leader elector's) beats a [`Heartbeat`] every time it goes round, and `/healthz` fails while
//! any of them has not beaten within its bound. "The HTTP server answers" proves nothing: the
//! endpoints run on another thread than the controller (issue 21: an operator that reconciled
//! nothing answered `ok`).
//!
//! A loop that has not started yet (a standby's controller) is not watched; a loop that ended
//! ends the process (`run`), so only a loop that is alive and stuck shows here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stallwatch_core::sync::lock;

/// Env var of the test hook that wedges loops by name (`controller`, `elector`; comma
/// separated). For tests only: it is how `tests/real_api_lifecycle.rs` shows that `/healthz`
/// fails when a loop stops going round.
pub const WEDGE_ENV: &str = "STALLWATCH_TEST_WEDGE";

/// The loops of this process and when each last went round.
#[derive(Debug, Default)]
pub struct Health {
    beats: Mutex<BTreeMap<&'static str, Beat>>,
    /// Loops the test hook wedges.
    wedged: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct Beat {
    last: Instant,
    bound: Duration,
}

impl Health {
    /// `wedged`: the test hook's loop names (see [`WEDGE_ENV`]); empty in production.
    pub fn new(wedged: &str) -> Arc<Self> {
        Arc::new(Health {
            beats: Mutex::default(),
            wedged: wedged
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        })
    }

    /// Starts watching loop `name`: unhealthy once it has not beaten for `bound`.
    pub fn watch(self: &Arc<Self>, name: &'static str, bound: Duration) -> Heartbeat {
        lock(&self.beats).insert(
            name,
            Beat {
                last: Instant::now(),
                bound,
            },
        );
        Heartbeat {
            health: self.clone(),
            name,
            wedge: self.wedged.iter().any(|w| w == name),
        }
    }

    /// The loops that are late at `now`, each with how long since its last beat.
    pub fn late(&self, now: Instant) -> Vec<(&'static str, Duration)> {
        late(&lock(&self.beats), now)
    }
}

/// The pure check: the loops whose last beat is older than their bound at `now`.
fn late(beats: &BTreeMap<&'static str, Beat>, now: Instant) -> Vec<(&'static str, Duration)> {
    beats
        .iter()
        .filter_map(|(name, b)| {
            let since = now.saturating_duration_since(b.last);
            (since > b.bound).then_some((*name, since))
        })
        .collect()
}

/// One loop's handle: [`Heartbeat::beat`] each time it goes round.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    health: Arc<Health>,
    name: &'static str,
    wedge: bool,
}

impl Heartbeat {
    pub fn beat(&self) {
        if let Some(b) = lock(&self.health.beats).get_mut(self.name) {
            b.last = Instant::now();
        }
    }

    /// The test hook: never returns when this loop was told to wedge (the loop then stops
    /// going round while the process and its HTTP endpoints stay up); returns at once
    /// otherwise.
    pub async fn wedge_point(&self) {
        if self.wedge {
            tracing::warn!(
                loop_name = self.name,
                "{WEDGE_ENV}: this loop is wedged on purpose (tests only)"
            );
            std::future::pending::<()>().await;
        }
    }
}

/// A heartbeat that nobody watches (callers outside `run`: tests, benches).
pub fn unwatched() -> Heartbeat {
    Heartbeat {
        health: Health::new(""),
        name: "unwatched",
        wedge: false,
    }
}

#[cfg(test)]
mod tests;

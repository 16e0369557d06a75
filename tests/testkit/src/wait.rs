//! Waiting for something to become true, with one generous timeout: tests poll, never sleep
//! a guessed time.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long [`eventually`] and [`eventually_async`] wait before failing the test.
pub const WAIT: Duration = Duration::from_secs(15);

const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it holds; panics with `what` after [`WAIT`].
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    eventually_async(what, || std::future::ready(check())).await;
}

/// [`eventually`] for a check that has to await (a request, a lock).
pub async fn eventually_async<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll_until(what, WAIT, check).await;
}

async fn poll_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests;

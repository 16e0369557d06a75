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
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_once_the_check_holds() {
        let mut n = 0;
        eventually("three polls", || {
            n += 1;
            n >= 3
        })
        .await;
        assert_eq!(n, 3);
        let mut m = 0;
        eventually_async("two polls", || {
            m += 1;
            let done = m >= 2;
            async move { done }
        })
        .await;
        assert_eq!(m, 2);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out waiting for never")]
    async fn panics_with_what_after_the_timeout() {
        poll_until("never", Duration::from_millis(50), || async { false }).await;
    }
}

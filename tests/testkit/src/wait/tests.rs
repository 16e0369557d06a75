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

use kube::runtime::utils::Backoff as _;

use super::*;

#[test]
fn watch_backoff_doubles_to_five_seconds_and_resets() {
    let mut b = WatchBackoff::default();
    let waits: Vec<u64> = (0..6)
        .map(|_| b.next().unwrap().as_millis() as u64)
        .collect();
    assert_eq!(waits, [500, 1000, 2000, 4000, 5000, 5000]);
    b.reset();
    assert_eq!(b.next(), Some(Duration::from_millis(500)));
}

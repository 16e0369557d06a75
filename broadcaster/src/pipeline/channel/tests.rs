//! Unit tests of `channel.rs`.

use super::*;
use std::sync::Arc;

#[test]
fn drops_the_oldest_when_full_and_counts_it() {
    let ch = DropOldestChannel::new(3);
    for i in 0..3 {
        assert_eq!(ch.push(i), None);
    }
    assert_eq!(ch.push(3), Some(0));
    assert_eq!(ch.push(4), Some(1));
    let s = ch.stats();
    assert_eq!((s.depth, s.capacity), (3, 3));
    assert_eq!(
        (s.enqueued_total, s.dequeued_total, s.dropped_oldest_total),
        (5, 0, 2)
    );
    assert_eq!(s.last_dequeue_ms, None);
    // The newest survive, in order.
    assert_eq!(ch.try_recv(), Some(2));
    assert_eq!(ch.try_recv(), Some(3));
    assert_eq!(ch.try_recv(), Some(4));
    assert_eq!(ch.try_recv(), None);
    let s = ch.stats();
    assert_eq!(s.dequeued_total, 3);
    assert_eq!(
        s.enqueued_total,
        s.dequeued_total + s.dropped_oldest_total + s.depth as u64
    );
    assert!(s.last_dequeue_ms.is_some());
}

#[test]
fn capacity_one_keeps_only_the_latest() {
    let ch = DropOldestChannel::new(1);
    for i in 0..10 {
        ch.push(i);
    }
    assert_eq!(ch.try_recv(), Some(9));
    assert_eq!(ch.stats().dropped_oldest_total, 9);
}

#[test]
#[should_panic(expected = "at least 1")]
fn zero_capacity_is_refused() {
    let _ = DropOldestChannel::<u8>::new(0);
}

#[test]
fn waiting_clock_runs_only_while_items_wait() {
    let ch = DropOldestChannel::new(2);
    assert_eq!(ch.waiting_for(), Duration::ZERO);
    ch.push(1);
    std::thread::sleep(Duration::from_millis(20));
    assert!(ch.waiting_for() >= Duration::from_millis(15));
    ch.try_recv();
    assert_eq!(ch.waiting_for(), Duration::ZERO);
}

#[tokio::test]
async fn recv_wakes_on_push_from_another_task() {
    let ch = Arc::new(DropOldestChannel::new(5));
    let reader = {
        let ch = ch.clone();
        tokio::spawn(async move { ch.recv().await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    ch.push(42u32);
    let got = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("reader woke")
        .unwrap();
    assert_eq!(got, 42);
}

proptest::proptest! {
    #[test]
    fn counters_always_balance(capacity in 1usize..8, ops in proptest::collection::vec(proptest::bool::ANY, 0..200)) {
        let ch = DropOldestChannel::new(capacity);
        let mut model: VecDeque<usize> = VecDeque::new();
        for (i, push) in ops.into_iter().enumerate() {
            if push {
                ch.push(i);
                if model.len() == capacity { model.pop_front(); }
                model.push_back(i);
            } else {
                proptest::prop_assert_eq!(ch.try_recv(), model.pop_front());
            }
            let s = ch.stats();
            proptest::prop_assert!(s.depth <= s.capacity);
            proptest::prop_assert_eq!(s.depth, model.len());
            proptest::prop_assert_eq!(s.enqueued_total, s.dequeued_total + s.dropped_oldest_total + s.depth as u64);
        }
    }
}

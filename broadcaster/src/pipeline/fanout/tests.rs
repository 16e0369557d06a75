use super::*;

fn update(seq: u64) -> SharedUpdate {
    Arc::new(PreparedUpdate::new(StreamUpdate {
        seq,
        ..Default::default()
    }))
}

#[tokio::test]
async fn slow_subscriber_lags_alone_and_learns_what_it_missed() {
    let hub = Hub::new(2);
    let mut fast = hub.subscribe();
    let mut slow = hub.subscribe();
    for seq in 1..=5 {
        hub.publish(&update(seq));
        let (u, missed) = fast.recv().await.unwrap();
        assert_eq!((u.seq, missed), (seq, 0));
    }
    // The slow one got the first two and missed three; it learns that with the first
    // update after the gap (seq 6), not with the ones queued before it.
    let (u, missed) = slow.recv().await.unwrap();
    assert_eq!((u.seq, missed), (1, 0));
    let (u, missed) = slow.recv().await.unwrap();
    assert_eq!((u.seq, missed), (2, 0));
    assert_eq!(hub.lagged_total(), 3);
    assert_eq!(hub.delivered_total(), 5 + 2);
    hub.publish(&update(6));
    let (u, missed) = slow.recv().await.unwrap();
    assert_eq!((u.seq, missed), (6, 3));
    // A second gap while the first one's update still waits: each count stays with its
    // own gap.
    hub.publish(&update(7));
    hub.publish(&update(8));
    hub.publish(&update(9));
    let (u, missed) = slow.recv().await.unwrap();
    assert_eq!((u.seq, missed), (7, 0));
    hub.publish(&update(10));
    let got: Vec<_> = [slow.recv().await.unwrap(), slow.recv().await.unwrap()]
        .iter()
        .map(|(u, m)| (u.seq, *m))
        .collect();
    assert_eq!(got, vec![(8, 0), (10, 1)]);
}

#[test]
fn a_hub_held_across_checks_is_stuck_and_a_free_one_is_not() {
    let hub = Hub::new(4);
    assert_eq!(hub.stuck_for(1_000), None);
    {
        let _held = hub.subscribers.write().unwrap();
        assert_eq!(hub.stuck_for(2_000), Some(0));
        assert_eq!(hub.stuck_for(7_500), Some(5_500));
    }
    // Free again: the clock stops, and a later hold starts a new one.
    assert_eq!(hub.stuck_for(8_000), None);
    let _held = hub.subscribers.write().unwrap();
    assert_eq!(hub.stuck_for(9_000), Some(0));
}

#[tokio::test]
async fn a_gone_subscriber_is_removed_and_others_keep_receiving() {
    let hub = Hub::new(4);
    let mut healthy = hub.subscribe();
    // A client whose stream broke: its queue's receiving end is gone, but nothing
    // unsubscribed it. The hub must notice by itself and carry on.
    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    hub.subscribers.write().unwrap().insert(
        999,
        Arc::new(Slot {
            tx,
            missed: AtomicU64::new(0),
        }),
    );
    assert_eq!(hub.subscriber_count(), 2);
    let out = hub.publish(&update(1));
    assert_eq!(out.delivered, 1);
    assert_eq!(out.disconnected, 1);
    assert_eq!(hub.subscriber_count(), 1);
    assert_eq!(healthy.recv().await.unwrap().0.seq, 1);
    // Dropping a subscription unsubscribes it.
    drop(healthy);
    assert_eq!(hub.subscriber_count(), 0);
}

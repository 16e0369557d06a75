//! Unit tests of `limits.rs`.

use super::*;

#[test]
fn a_bucket_allows_its_burst_then_its_rate() {
    let rate = Rate {
        burst: 3,
        per_second: 2,
    };
    let mut b = Bucket::new(rate);
    let t0 = Instant::now();
    assert!((0..3).all(|_| b.take(t0)));
    assert!(!b.take(t0), "the burst is spent");
    // Half a second later: one more token.
    let t1 = t0 + Duration::from_millis(500);
    assert!(b.take(t1));
    assert!(!b.take(t1));
    // Long idle: back to the burst, not beyond.
    let t2 = t1 + Duration::from_secs(3600);
    assert!((0..3).all(|_| b.take(t2)));
    assert!(!b.take(t2));
}

#[test]
fn credit_refills_up_to_the_burst() {
    let mut b = Bucket::new(Rate {
        burst: 2,
        per_second: 0,
    });
    let t = Instant::now();
    assert!(b.take(t) && b.take(t) && !b.take(t));
    b.credit(10);
    assert!(b.take(t) && b.take(t) && !b.take(t), "capped at the burst");
}

#[test]
fn continuation_limit_follows_h2() {
    assert_eq!(max_continuations(16 * 1024, 16 * 1024), 5);
    assert_eq!(max_continuations(16 << 20, 16 * 1024), 1280);
}

#[test]
fn metrics_count_by_reason_and_encode_every_reason() {
    let m = Metrics::default();
    m.add(Exceeded::PendingResets);
    m.clone().add(Exceeded::PendingResets);
    assert_eq!(m.count(Exceeded::PendingResets), 2);
    assert_eq!(m.count(Exceeded::Pings), 0);
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(m));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
    assert!(
        out.contains("h2_limit_exceeded_total{reason=\"pending_resets\"} 2"),
        "{out}"
    );
    for reason in Exceeded::ALL {
        assert!(out.contains(reason.as_str()), "{out}");
    }
}

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
    assert!((0..3).all(|_| b.take(rate, t0)));
    assert!(!b.take(rate, t0), "the burst is spent");
    // Half a second later: one more token.
    let t1 = t0 + Duration::from_millis(500);
    assert!(b.take(rate, t1));
    assert!(!b.take(rate, t1));
    // Long idle: back to the burst, not beyond.
    let t2 = t1 + Duration::from_secs(3600);
    assert!((0..3).all(|_| b.take(rate, t2)));
    assert!(!b.take(rate, t2));
}

#[test]
fn credit_refills_up_to_the_burst() {
    let rate = Rate {
        burst: 2,
        per_second: 0,
    };
    let mut b = Bucket::new(rate);
    let t = Instant::now();
    assert!(b.take(rate, t) && b.take(rate, t) && !b.take(rate, t));
    b.credit(rate, 10);
    assert!(
        b.take(rate, t) && b.take(rate, t) && !b.take(rate, t),
        "capped at the burst"
    );
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

#[test]
fn takes_less_than_a_millisecond_apart_still_refill() {
    // One token per 10 ms, none left: a take every 0.3 ms for 12 ms earns exactly one (the
    // refill is counted in whole milliseconds of the clock, which add up across takes).
    let rate = Rate {
        burst: 1,
        per_second: 100,
    };
    let mut b = Bucket::new(rate);
    let t0 = Instant::now();
    assert!(b.take(rate, t0));
    let taken = (1..=40)
        .filter(|i| b.take(rate, t0 + Duration::from_micros(300 * i)))
        .count();
    assert_eq!(taken, 1);
}

#[test]
fn an_older_clock_reading_refills_nothing() {
    let rate = Rate {
        burst: 1,
        per_second: 1000,
    };
    let mut b = Bucket::new(rate);
    let t1 = Instant::now() + Duration::from_secs(10);
    assert!(b.take(rate, t1));
    assert!(!b.take(rate, t1 - Duration::from_secs(5)));
    assert!(!b.take(rate, t1 - Duration::from_secs(5)));
    assert!(b.take(rate, t1 - Duration::from_secs(5) + Duration::from_millis(1)));
}

#[test]
fn a_bucket_stays_eight_bytes() {
    // Six buckets sit in every connection's `Guard`, so an idle subscriber on its own
    // connection pays for them (BENCHMARKS.md, memory per idle subscriber): 8 bytes each, where
    // `f64` tokens, the rate and an `Option<Instant>` took 32.
    assert!(std::mem::size_of::<Bucket>() <= 8);
}

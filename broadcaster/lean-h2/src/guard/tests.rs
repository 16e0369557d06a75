//! Unit tests of `guard.rs`.

use super::*;

#[test]
fn pending_resets_close_past_the_limit_unless_answered_streams_pay_them_back() {
    let limits = Limits::default();
    let mut g = Guard::new(&limits);
    for _ in 0..20 {
        g.premature_reset(&limits).unwrap();
    }
    assert_eq!(g.premature_reset(&limits), Err(Exceeded::PendingResets));
    let limits = Limits::default();
    let mut g = Guard::new(&limits);
    for _ in 0..1000 {
        g.premature_reset(&limits).unwrap();
        g.answered(1);
    }
}

#[test]
fn local_resets_are_counted_over_the_connections_life() {
    let limits = Limits::default();
    let mut g = Guard::new(&limits);
    for _ in 0..1024 {
        g.local_reset(&limits).unwrap();
    }
    assert_eq!(g.local_reset(&limits), Err(Exceeded::LocalResets));
}

#[test]
fn each_rated_kind_has_its_own_budget_and_reason() {
    let now = Instant::now();
    for (kind, reason, burst) in [
        (Rated::Reset, Exceeded::ResetRate, 200),
        (Rated::Empty, Exceeded::EmptyFrames, 100),
        (Rated::Settings, Exceeded::Settings, 100),
        (Rated::Ping, Exceeded::Pings, 100),
        (Rated::WindowUpdate, Exceeded::WindowUpdates, 1000),
        (Rated::Priority, Exceeded::Priorities, 1000),
    ] {
        let limits = Limits::default();
        let mut g = Guard::new(&limits);
        for _ in 0..burst {
            g.frame(&limits, kind, now).unwrap();
        }
        assert_eq!(g.frame(&limits, kind, now), Err(reason), "{kind:?}");
        let other = if kind == Rated::Reset {
            Rated::Empty
        } else {
            Rated::Reset
        };
        g.frame(&limits, other, now).unwrap();
    }
}

#[test]
fn data_we_send_earns_pings_and_window_updates() {
    let now = Instant::now();
    let limits = Limits::default();
    let mut g = Guard::new(&limits);
    for _ in 0..100 {
        g.frame(&limits, Rated::Ping, now).unwrap();
    }
    assert!(g.frame(&limits, Rated::Ping, now).is_err());
    g.sent_data(&limits, 3);
    for _ in 0..3 {
        g.frame(&limits, Rated::Ping, now).unwrap();
    }
    assert!(g.frame(&limits, Rated::Ping, now).is_err());
    assert!(
        g.frame(&limits, Rated::Settings, now).is_ok(),
        "SETTINGS earn nothing"
    );
}

#[test]
fn the_guard_stays_small() {
    // Inline in every connection, so paid by every idle subscriber on its own connection
    // (BENCHMARKS.md, memory per idle subscriber): six 8-byte buckets and two counts; the
    // rates and maxima are read from the shared `Limits`. It was 208 bytes.
    assert!(std::mem::size_of::<Guard>() <= 56);
}

use super::*;

#[test]
fn late_only_past_the_bound_and_a_beat_clears_it() {
    let l = Liveness::new(Duration::from_secs(10), "");
    let now = Instant::now();
    assert_eq!(l.late(now + Duration::from_secs(9)), None);
    assert!(l.late(now + Duration::from_secs(11)).is_some());
    std::thread::sleep(Duration::from_millis(2));
    l.beat();
    assert_eq!(l.late(now + Duration::from_secs(10)), None);
    assert!(!l.wedge);
    assert!(Liveness::new(Duration::ZERO, "controller, judge").wedge);
}

use super::*;

#[test]
fn derived_counters_follow_the_set_ones() {
    let s = stream("a", 2, 20, 10, DispatcherState::Dead);
    assert_eq!(s.dropped_oldest_total, 8);
    assert_eq!(s.delivered_total, 30);
    assert_eq!(s.dispatcher.state, DispatcherState::Dead);
    let r = report("i", 7, vec![s]);
    assert_eq!((r.protocol.as_str(), r.seq), (PROTOCOL_V1, 7));
    assert!(crate::report::parse_report(&serde_json::to_vec(&r).unwrap()).is_ok());
}

//! Unit tests of `stream.rs`.

use super::*;

#[test]
fn content_length_must_match_the_data_exactly() {
    assert_eq!(expect_bytes(None, 100, true), Ok(None));
    assert_eq!(expect_bytes(Some(10), 4, false), Ok(Some(6)));
    assert_eq!(expect_bytes(Some(10), 10, true), Ok(Some(0)));
    assert_eq!(expect_bytes(Some(10), 11, false), Err(LengthMismatch));
    assert_eq!(expect_bytes(Some(10), 9, true), Err(LengthMismatch));
    assert_eq!(expect_bytes(Some(0), 0, true), Ok(Some(0)));
}

#[test]
fn recently_closed_keeps_the_last_32_ids() {
    let mut closed = RecentlyClosed::default();
    assert!(!closed.contains(0));
    for id in (1..=99).step_by(2) {
        closed.insert(id);
    }
    assert!(closed.contains(99) && closed.contains(37));
    assert!(!closed.contains(35), "pushed out");
    assert!(!closed.contains(0));
}

use super::*;

#[test]
fn millis_and_micros_agree() {
    let ms = now_ms();
    let us = now_us();
    assert!(ms > 1_600_000_000_000, "clock before 2020: {ms}");
    assert!(us / 1000 >= ms && us / 1000 - ms < 1000);
}

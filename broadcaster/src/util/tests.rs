use super::*;

#[test]
fn hex_excerpt_is_bounded() {
    assert_eq!(hex_excerpt(&[0x00, 0xff, 0x10], 2), "00ff");
    assert_eq!(hex_excerpt(&[], 10), "");
}

#[test]
fn rate_limiter_counts_suppressed_lines() {
    let limiter = RateLimiter::new(Duration::from_secs(3600));
    assert_eq!(limiter.check(), Some(0));
    assert_eq!(limiter.check(), None);
    assert_eq!(limiter.check(), None);
    let limiter = RateLimiter::new(Duration::ZERO);
    assert_eq!(limiter.check(), Some(0));
    assert_eq!(limiter.check(), Some(0));
}

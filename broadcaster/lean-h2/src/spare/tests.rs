//! Unit tests of `spare.rs`.

use super::*;

#[test]
fn a_written_buffer_is_taken_again_empty_with_its_capacity() {
    drop(take());
    let mut buf = Vec::with_capacity(64 * 1024);
    buf.extend_from_slice(b"written");
    let at = buf.as_ptr();
    put(buf);
    let again = take();
    assert!(again.is_empty());
    assert_eq!(again.as_ptr(), at, "the same allocation");
    assert!(again.capacity() >= 64 * 1024);
    assert_eq!(take().capacity(), 0, "taken once");
}

#[test]
fn the_larger_buffer_is_kept_and_an_oversized_one_freed() {
    drop(take());
    put(Vec::with_capacity(1024));
    put(Vec::with_capacity(32 * 1024));
    put(Vec::with_capacity(2048));
    assert!(take().capacity() >= 32 * 1024);
    put(Vec::with_capacity(MAX_KEPT + 1));
    assert_eq!(take().capacity(), 0);
}

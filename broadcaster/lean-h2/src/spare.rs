//! One spare write buffer per worker thread. A connection's write buffer is handed back here
//! once written and taken again for the next round, so a busy connection neither grows a
//! fresh buffer by doubling (copying what it holds each time) nor faults in new pages for
//! each write, while an idle connection still holds no buffer.

use std::cell::Cell;

/// A buffer larger than this (a bridged response's big frames) is freed, not kept. Four times
/// the connection's write high-water mark (`conn.rs` checks that at compile time; this module
/// imports nothing from `conn`, so the dependency runs one way).
pub const MAX_KEPT: usize = 512 * 1024;

thread_local! {
    static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// This thread's spare buffer (empty, perhaps with no capacity).
pub fn take() -> Vec<u8> {
    SPARE.with(Cell::take)
}

/// Keeps `buf` (emptied) as this thread's spare if it is larger than the one kept.
pub fn put(mut buf: Vec<u8>) {
    if buf.capacity() > MAX_KEPT {
        return;
    }
    buf.clear();
    SPARE.with(|spare| {
        let kept = spare.take();
        spare.set(if kept.capacity() >= buf.capacity() {
            kept
        } else {
            buf
        });
    });
}

#[cfg(test)]
mod tests;

//! Per-stream wakers: waking a stream marks it ready and wakes its connection task, which
//! then polls only the ready streams, never all of them.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::task::{ArcWake, AtomicWaker};
use stallwatch_core::sync::lock;

/// What every stream of one connection shares with the connection task.
#[derive(Debug, Default)]
pub struct ReadyShared {
    conn: AtomicWaker,
    ready: Mutex<Vec<u32>>,
    /// Request body bytes a bridged service consumed, per stream, not yet given back to the
    /// peer as window.
    consumed: Mutex<Vec<(u32, usize)>>,
}

impl ReadyShared {
    pub fn register(&self, waker: &std::task::Waker) {
        self.conn.register(waker);
    }

    /// The woken streams' ids, each at most once (`StreamWaker::queued`).
    pub fn take_ready(&self) -> Vec<u32> {
        std::mem::take(&mut *lock(&self.ready))
    }

    pub fn consumed(&self, stream_id: u32, n: usize) {
        lock(&self.consumed).push((stream_id, n));
        self.conn.wake();
    }

    pub fn take_consumed(&self) -> Vec<(u32, usize)> {
        std::mem::take(&mut *lock(&self.consumed))
    }
}

/// One stream's waker.
#[derive(Debug)]
pub struct StreamWaker {
    id: u32,
    /// Set while the id sits in the ready list, so a burst of wakes queues it once.
    queued: AtomicBool,
    shared: Arc<ReadyShared>,
}

impl StreamWaker {
    pub fn new(id: u32, shared: Arc<ReadyShared>) -> Arc<Self> {
        Arc::new(Self {
            id,
            queued: AtomicBool::new(false),
            shared,
        })
    }

    /// Called before the stream is polled: a wake during the poll queues it again.
    pub fn clear(&self) {
        self.queued.store(false, Ordering::Release);
    }
}

impl ArcWake for StreamWaker {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        if !arc_self.queued.swap(true, Ordering::AcqRel) {
            lock(&arc_self.shared.ready).push(arc_self.id);
        }
        arc_self.shared.conn.wake();
    }
}

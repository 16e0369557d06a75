//! The per-stream bounded channel between the source and the stream's dispatcher.
//!
//! When full, a push evicts the *oldest* item and counts it: the source never waits, and a
//! subscriber always gets the freshest snapshot first. The counters (enqueued, dequeued,
//! dropped) and the "waiting since" clock are what the reporter and the sidecar use to tell a
//! busy stream from a stuck one: a channel whose depth stays above zero while nothing is
//! dequeued has no working reader, which is exactly the story's stall.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use stallwatch_core::clock::{now_ms, now_us};
use stallwatch_core::sync::lock;
use tokio::sync::Notify;

use crate::gtfs::decoded::{DecodedFeed, PrepareError};

/// One raw feed message as received from the source: shared bytes (cheap to clone into every
/// stream's channel), when it arrived, and its decoding, shared by every stream's clone.
#[derive(Debug, Clone)]
pub struct Item {
    pub payload: Bytes,
    /// Wall clock at receipt, microseconds since the Unix epoch.
    pub received_at_us: u64,
    decoded: Arc<OnceLock<Result<Arc<DecodedFeed>, PrepareError>>>,
}

impl Item {
    pub fn new(payload: Bytes) -> Self {
        Self {
            payload,
            received_at_us: now_us(),
            decoded: Arc::default(),
        }
    }

    /// The message decoded, validated and converted: by the first stream's dispatcher that
    /// asks, while the others wait for it (decoding is what they would otherwise each do).
    /// A decode that panics leaves the cell empty, so each stream then meets (and quarantines)
    /// the panic itself.
    pub fn decoded(&self) -> Result<Arc<DecodedFeed>, PrepareError> {
        self.decoded
            .get_or_init(|| crate::gtfs::decoded::decode(&self.payload).map(Arc::new))
            .clone()
    }
}

/// Counters of a [`DropOldestChannel`], read without blocking the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelStats {
    pub depth: usize,
    pub capacity: usize,
    pub enqueued_total: u64,
    pub dequeued_total: u64,
    pub dropped_oldest_total: u64,
    /// Wall clock of the last dequeue, ms since the epoch.
    pub last_dequeue_ms: Option<u64>,
}

/// A bounded multi-producer channel that drops the oldest item when full.
#[derive(Debug)]
pub struct DropOldestChannel<T> {
    queue: Mutex<VecDeque<T>>,
    capacity: usize,
    notify: Notify,
    enqueued: AtomicU64,
    dequeued: AtomicU64,
    dropped: AtomicU64,
    last_dequeue_ms: AtomicU64,
    origin: Instant,
    /// Microseconds after `origin` of the last dequeue, or of the push that made the channel
    /// non-empty, whichever is later: how long items have waited without progress.
    last_progress_us: AtomicU64,
}

impl<T> DropOldestChannel<T> {
    /// # Panics
    /// If `capacity` is zero (the CLI refuses that earlier with a clear message).
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "channel capacity must be at least 1");
        Self {
            queue: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
            notify: Notify::new(),
            enqueued: AtomicU64::new(0),
            dequeued: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            last_dequeue_ms: AtomicU64::new(0),
            origin: Instant::now(),
            last_progress_us: AtomicU64::new(0),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn mark_progress(&self) {
        let us = self.origin.elapsed().as_micros() as u64;
        self.last_progress_us.store(us, Ordering::Relaxed);
    }

    /// Appends `item`; never waits. Returns the evicted oldest item if the channel was full.
    pub fn push(&self, item: T) -> Option<T> {
        let evicted = {
            let mut queue = lock(&self.queue);
            let evicted = if queue.len() >= self.capacity {
                queue.pop_front()
            } else {
                None
            };
            if queue.is_empty() {
                self.mark_progress();
            }
            queue.push_back(item);
            // Counted under the lock so depth == enqueued - dequeued - dropped at all times.
            self.enqueued.fetch_add(1, Ordering::Relaxed);
            if evicted.is_some() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            evicted
        };
        self.notify.notify_one();
        evicted
    }

    /// Takes the oldest item without waiting.
    pub fn try_recv(&self) -> Option<T> {
        let item = lock(&self.queue).pop_front()?;
        self.dequeued.fetch_add(1, Ordering::Relaxed);
        self.last_dequeue_ms.store(now_ms(), Ordering::Relaxed);
        self.mark_progress();
        Some(item)
    }

    /// Waits for the oldest item. Cancel-safe: dropping the future loses no item.
    #[async_backtrace::framed]
    pub async fn recv(&self) -> T {
        loop {
            if let Some(item) = self.try_recv() {
                return item;
            }
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(item) = self.try_recv() {
                return item;
            }
            notified.await;
        }
    }

    pub fn depth(&self) -> usize {
        lock(&self.queue).len()
    }

    pub fn stats(&self) -> ChannelStats {
        // Take the counters under the queue lock so they are mutually consistent.
        let queue = lock(&self.queue);
        let last = self.last_dequeue_ms.load(Ordering::Relaxed);
        ChannelStats {
            depth: queue.len(),
            capacity: self.capacity,
            enqueued_total: self.enqueued.load(Ordering::Relaxed),
            dequeued_total: self.dequeued.load(Ordering::Relaxed),
            dropped_oldest_total: self.dropped.load(Ordering::Relaxed),
            last_dequeue_ms: (last != 0).then_some(last),
        }
    }

    /// How long items have been waiting with no dequeue (zero when the channel is empty).
    pub fn waiting_for(&self) -> Duration {
        let depth = lock(&self.queue).len();
        if depth == 0 {
            return Duration::ZERO;
        }
        let now = self.origin.elapsed().as_micros() as u64;
        Duration::from_micros(now.saturating_sub(self.last_progress_us.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests;

//! The per-stream fan-out hub: the dispatcher hands each prepared update to every
//! subscriber's own bounded queue with `try_send`. A full queue means that subscriber lags:
//! the update is skipped *for it alone*, counted, and the subscriber is told how many it missed
//! with its next update. A closed queue (the client went away or its stream failed) removes the
//! subscriber. Nothing here ever waits on a subscriber, so one slow or broken client can
//! neither block the dispatcher nor abort the broadcast to the others (the story's second bug).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};

use bytes::Bytes;
use prost::Message;
use tokio::sync::mpsc;

use crate::generated::transit_v1::StreamUpdate;
use crate::pipeline::prepare::{FeedView, Prepared};

/// A prepared update, encoded once by the dispatcher and shared by every subscriber: sending
/// it to one more subscriber costs a copy of its bytes, not a clone and an encode. The
/// encoding is `head` (the header fields) followed by `body` (the entities), `missed` = 0.
#[derive(Debug, Clone)]
pub struct PreparedUpdate {
    pub seq: u64,
    pub head: Bytes,
    pub body: Bytes,
    /// The decoded feed and the stream's selection of it, for subscribers with their own
    /// filter or who ask for raw entities (`None`: an update built from a typed message).
    pub view: Option<FeedView>,
}

impl PreparedUpdate {
    /// From a typed update (tests and tools).
    pub fn new(mut update: StreamUpdate) -> Self {
        update.missed = 0;
        Self {
            seq: update.seq,
            head: Bytes::from(update.encode_to_vec()),
            body: Bytes::new(),
            view: None,
        }
    }

    /// The stream's update for `prepared`.
    pub fn from_prepared(stream: &str, seq: u64, prepared: Prepared) -> Self {
        Self {
            seq,
            head: prepared.head(stream, seq),
            body: prepared.body,
            view: Some(prepared.view),
        }
    }

    pub fn encoded_len(&self) -> usize {
        self.head.len() + self.body.len()
    }
}

pub type SharedUpdate = Arc<PreparedUpdate>;

/// A queued update and how many this subscriber missed just before it.
type Queued = (SharedUpdate, u64);

#[derive(Debug)]
struct Slot {
    tx: mpsc::Sender<Queued>,
    /// Updates skipped since the last one that made it into the queue. It rides on the next
    /// queued update, so the count lands right after the gap in seq, not on an older update
    /// that was already waiting.
    missed: AtomicU64,
}

#[derive(Debug)]
pub struct Hub {
    subscribers: RwLock<HashMap<u64, Arc<Slot>>>,
    next_id: AtomicU64,
    queue_capacity: usize,
    delivered: AtomicU64,
    lagged: AtomicU64,
    disconnected: AtomicU64,
    /// When a liveness check first found the subscriber table held (ms since the epoch; 0:
    /// free at the last check). See [`Hub::stuck_for`].
    held_since_ms: AtomicU64,
}

/// What one `publish` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishOutcome {
    pub delivered: u64,
    pub lagged: u64,
    pub disconnected: u64,
}

impl Hub {
    /// `queue_capacity`: each subscriber's queue bound (at least 1).
    pub fn new(queue_capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            subscribers: RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            queue_capacity: queue_capacity.max(1),
            delivered: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
            disconnected: AtomicU64::new(0),
            held_since_ms: AtomicU64::new(0),
        })
    }

    /// The hub's liveness, for `/healthz`: how long its subscriber table has been held by
    /// someone else across checks (`None`: free now). While it is held, every publish of the
    /// stream and every new subscriber waits: the hub is wedged, whatever the dispatcher
    /// does. The lock is held for microseconds in normal work, so a check that finds it
    /// held starts a clock, and the next check that finds it free stops it.
    pub fn stuck_for(&self, now_ms: u64) -> Option<u64> {
        match self.subscribers.try_read() {
            Ok(_) | Err(std::sync::TryLockError::Poisoned(_)) => {
                self.held_since_ms.store(0, Ordering::Relaxed);
                None
            }
            Err(std::sync::TryLockError::WouldBlock) => {
                let since = match self.held_since_ms.compare_exchange(
                    0,
                    now_ms.max(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => now_ms.max(1),
                    Err(earlier) => earlier,
                };
                Some(now_ms.saturating_sub(since))
            }
        }
    }

    /// Test hook (`STALLWATCH_TEST_WEDGE=hub`, see `http`): a thread takes the subscriber
    /// table and never gives it back, as a wedged hub would.
    #[doc(hidden)]
    pub fn wedge_for_tests(self: &Arc<Self>) {
        let hub = self.clone();
        std::thread::spawn(move || {
            let _held = hub.subscribers.write().unwrap_or_else(|e| e.into_inner());
            loop {
                std::thread::park();
            }
        });
    }

    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        let (tx, rx) = mpsc::channel(self.queue_capacity);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            tx,
            missed: AtomicU64::new(0),
        });
        self.subscribers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, slot);
        Subscription {
            id,
            rx,
            hub: Arc::downgrade(self),
        }
    }

    /// Hands `update` to every subscriber's queue without waiting.
    pub fn publish(&self, update: &SharedUpdate) -> PublishOutcome {
        let mut outcome = PublishOutcome::default();
        let mut closed = Vec::new();
        {
            let subs = self.subscribers.read().unwrap_or_else(|e| e.into_inner());
            for (id, slot) in subs.iter() {
                let missed = slot.missed.load(Ordering::Relaxed);
                match slot.tx.try_send((update.clone(), missed)) {
                    Ok(()) => {
                        if missed > 0 {
                            slot.missed.fetch_sub(missed, Ordering::Relaxed);
                        }
                        outcome.delivered += 1;
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        slot.missed.fetch_add(1, Ordering::Relaxed);
                        outcome.lagged += 1;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => closed.push(*id),
                }
            }
        }
        if !closed.is_empty() {
            let mut subs = self.subscribers.write().unwrap_or_else(|e| e.into_inner());
            for id in &closed {
                subs.remove(id);
            }
            outcome.disconnected = closed.len() as u64;
        }
        self.delivered
            .fetch_add(outcome.delivered, Ordering::Relaxed);
        self.lagged.fetch_add(outcome.lagged, Ordering::Relaxed);
        self.disconnected
            .fetch_add(outcome.disconnected, Ordering::Relaxed);
        outcome
    }

    pub fn subscriber_count(&self) -> usize {
        self.subscribers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Updates handed to subscriber queues, summed over subscribers.
    pub fn delivered_total(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Updates a subscriber missed because its queue was full, summed over subscribers.
    pub fn lagged_total(&self) -> u64 {
        self.lagged.load(Ordering::Relaxed)
    }

    /// Subscribers found gone (queue closed) while publishing.
    pub fn disconnected_total(&self) -> u64 {
        self.disconnected.load(Ordering::Relaxed)
    }

    fn remove(&self, id: u64) {
        self.subscribers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

/// One subscriber's end of the hub. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    rx: mpsc::Receiver<Queued>,
    hub: Weak<Hub>,
}

impl Subscription {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next update and how many this subscriber missed before it. `None` once the hub
    /// is gone.
    pub async fn recv(&mut self) -> Option<(SharedUpdate, u64)> {
        self.rx.recv().await
    }

    /// Polling form of [`Subscription::recv`].
    pub fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<(SharedUpdate, u64)>> {
        self.rx.poll_recv(cx)
    }

    /// Updates waiting in this subscriber's queue.
    pub fn queued(&self) -> usize {
        self.rx.len()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.remove(self.id);
        }
    }
}

#[cfg(test)]
mod tests;

//! One stream's pipeline state: its drop-oldest channel, its hub of subscribers, its
//! quarantine, and what is known about its dispatcher task. Everything here is readable from
//! any thread without the dispatcher's help, which is what lets the reporter, the health
//! updater and the dump describe a stream whose dispatcher is dead or hung.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stallwatch_core::clock::now_ms;
use stallwatch_core::report::{
    ChannelReport, DispatcherReport, DispatcherState, ErrorReport, MAX_TEXT_LEN, StreamReport,
    truncate,
};
use stallwatch_core::sync::lock;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::pipeline::channel::{DropOldestChannel, Item};
use crate::pipeline::fanout::Hub;
use crate::pipeline::prepare::EntityCounters;
use crate::pipeline::quarantine::Quarantine;
use crate::pipeline::spec::StreamSpec;

#[derive(Debug)]
pub struct StreamRuntime {
    pub spec: StreamSpec,
    pub channel: DropOldestChannel<Item>,
    pub hub: Arc<Hub>,
    pub quarantine: Quarantine,
    /// What the stream published, by entity kind, and what it met in the feed.
    pub entities: EntityCounters,
    /// Whether a supervisor restarts this stream's dispatcher (false only under the
    /// `legacy-unsupervised` fault).
    pub supervised: bool,
    seq: AtomicU64,
    restarts: AtomicU64,
    last_error: Mutex<Option<ErrorReport>>,
    dispatcher: Mutex<Option<AbortHandle>>,
    supervisor: Mutex<Option<AbortHandle>>,
    /// Wakes the supervisor for an on-demand restart.
    pub(crate) restart_requested: Notify,
    /// A drill killed the dispatcher: the supervisor leaves it dead until a restart request.
    pub(crate) drilled: std::sync::atomic::AtomicBool,
}

impl StreamRuntime {
    pub fn new(
        spec: StreamSpec,
        channel_capacity: usize,
        subscriber_queue: usize,
        supervised: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            quarantine: Quarantine::new(spec.name.clone()),
            entities: EntityCounters::default(),
            spec,
            channel: DropOldestChannel::new(channel_capacity),
            hub: Hub::new(subscriber_queue),
            supervised,
            seq: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            last_error: Mutex::new(None),
            dispatcher: Mutex::new(None),
            supervisor: Mutex::new(None),
            restart_requested: Notify::new(),
            drilled: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The `seq` of the last update this stream's dispatchers published (0 if none).
    pub fn last_seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn set_dispatcher(&self, handle: AbortHandle) {
        if let Some(old) = lock(&self.dispatcher).replace(handle) {
            old.abort();
        }
    }

    pub(crate) fn abort_dispatcher(&self) {
        if let Some(h) = lock(&self.dispatcher).as_ref() {
            h.abort();
        }
    }

    pub(crate) fn set_supervisor(&self, handle: AbortHandle) {
        *lock(&self.supervisor) = Some(handle);
    }

    pub(crate) fn count_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn restarts_total(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    pub fn set_last_error(&self, message: &str) {
        *lock(&self.last_error) = Some(ErrorReport {
            at_ms: now_ms(),
            message: truncate(message.lines().next().unwrap_or(""), MAX_TEXT_LEN),
        });
    }

    pub fn last_error(&self) -> Option<ErrorReport> {
        lock(&self.last_error).clone()
    }

    /// What can be seen of the dispatcher task from outside it.
    pub fn dispatcher_state(&self) -> DispatcherState {
        let dispatcher_alive = match lock(&self.dispatcher).as_ref() {
            None => return DispatcherState::Missing,
            Some(h) => !h.is_finished(),
        };
        if dispatcher_alive {
            return DispatcherState::Running;
        }
        if self.drilled.load(Ordering::Relaxed) {
            return DispatcherState::Dead;
        }
        let supervisor_alive = lock(&self.supervisor)
            .as_ref()
            .is_some_and(|h| !h.is_finished());
        if self.supervised && supervisor_alive {
            DispatcherState::Restarting
        } else {
            DispatcherState::Dead
        }
    }

    /// Items have waited longer than `after` with nothing dequeued: the dispatcher exists but
    /// makes no progress (hung, or starved by a blocked runtime).
    pub fn is_stuck(&self, after: Duration) -> bool {
        self.channel.waiting_for() > after
    }

    /// Running and making progress.
    pub fn is_serving(&self, stuck_after: Duration) -> bool {
        self.dispatcher_state() == DispatcherState::Running && !self.is_stuck(stuck_after)
    }

    pub fn report(&self) -> StreamReport {
        let ch = self.channel.stats();
        StreamReport {
            name: self.spec.name.clone(),
            channel: ChannelReport {
                depth: ch.depth as u64,
                capacity: ch.capacity as u64,
            },
            enqueued_total: ch.enqueued_total,
            dequeued_total: ch.dequeued_total,
            dropped_oldest_total: ch.dropped_oldest_total,
            quarantined_total: self.quarantine.total(),
            last_dequeue_ms: ch.last_dequeue_ms,
            dispatcher: DispatcherReport {
                state: self.dispatcher_state(),
                restarts_total: self.restarts_total(),
            },
            last_error: self.last_error(),
            subscribers: self.hub.subscriber_count() as u64,
            delivered_total: self.hub.delivered_total(),
        }
    }
}

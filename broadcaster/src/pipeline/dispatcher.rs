//! The per-stream dispatcher task and the supervisor that keeps it running.
//!
//! The dispatcher takes raw feed messages from its stream's channel, prepares them (decode,
//! validate, filter) and publishes the result to the stream's hub. A message that fails to
//! prepare, or panics while preparing, is quarantined and the loop goes on. The supervisor
//! restarts a dispatcher that ends anyway (for any reason) with capped exponential backoff, and
//! records the death: nothing ends silently.
//!
//! Under the `legacy-unsupervised` fault the dispatcher behaves like the story's: the first
//! malformed entity fails the message, the error ends the task, and there is no supervisor.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::pipeline::channel::Item;
use crate::pipeline::prepare::{PrepareError, Prepared};
use crate::pipeline::quarantine::{ErrorLog, QuarantineKind};
use crate::pipeline::spec::Filter;
use crate::pipeline::stream_runtime::StreamRuntime;

/// How a stream prepares a raw feed message. The default is [`crate::pipeline::prepare::prepare`]; tests
/// substitute one that panics.
pub type PrepareFn = Arc<dyn Fn(&Filter, &Item) -> Result<Prepared, PrepareError> + Send + Sync>;

pub fn default_prepare() -> PrepareFn {
    Arc::new(crate::pipeline::prepare::prepare)
}

/// Why a dispatcher task ended. Only the strict (legacy) mode ends on bad input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DispatchError {
    #[error("prepare failed: {0}")]
    Prepare(#[from] PrepareError),
}

/// The `hang-dispatcher` fault: fires once, the first time a dispatcher of the stream dequeues
/// an item at or after `at`. One-shot, so a restarted dispatcher recovers.
#[derive(Debug)]
pub struct HangFault {
    pub at: Instant,
    fired: AtomicBool,
}

impl HangFault {
    pub fn new(at: Instant) -> Arc<Self> {
        Arc::new(Self {
            at,
            fired: AtomicBool::new(false),
        })
    }

    fn should_fire(&self) -> bool {
        Instant::now() >= self.at && !self.fired.swap(true, Ordering::SeqCst)
    }
}

/// Everything one dispatcher task needs.
#[derive(Clone)]
pub struct DispatcherEnv {
    pub stream: Arc<StreamRuntime>,
    pub prepare: PrepareFn,
    /// Legacy behaviour: a bad entity fails the message and ends the task.
    pub strict: bool,
    pub hang: Option<Arc<HangFault>>,
}

impl std::fmt::Debug for DispatcherEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatcherEnv")
            .field("stream", &self.stream.name())
            .field("strict", &self.strict)
            .field("hang", &self.hang.is_some())
            .finish()
    }
}

/// Items a dispatcher handles back to back before yielding to other tasks.
const DISPATCH_BURST: u32 = 16;

/// The dispatcher loop. Returns only in strict mode, on the first bad message.
#[async_backtrace::framed]
pub async fn run_dispatcher(env: DispatcherEnv) -> Result<(), DispatchError> {
    let stream = env.stream.clone();
    let mut since_yield = 0u32;
    loop {
        let item = stream.channel.recv().await;
        if let Some(hang) = &env.hang
            && hang.should_fire()
        {
            tracing::warn!(stream = %stream.name(), "fault hang-dispatcher: dispatcher now awaits forever");
            hang_forever().await;
        }
        if env.strict {
            let mut prepared = (env.prepare)(&stream.spec.filter, &item)?;
            if let Some(bad) = prepared.malformed.drain(..).next() {
                return Err(DispatchError::Prepare(PrepareError::Entity {
                    index: bad.index,
                    id: bad.id,
                    reason: bad.reason,
                }));
            }
            publish(&stream, prepared);
        } else {
            prepare_tolerant(&env, &item);
        }
        // Take a burst of ready items in one go (each subscriber then finds several queued
        // and writes them in one syscall), but never monopolise a worker thread.
        since_yield += 1;
        if since_yield >= DISPATCH_BURST {
            since_yield = 0;
            tokio::task::yield_now().await;
        }
    }
}

/// The `hang-dispatcher` fault's await point, named so it stands out in a task dump.
#[async_backtrace::framed]
async fn hang_forever() {
    std::future::pending::<()>().await
}

fn prepare_tolerant(env: &DispatcherEnv, item: &Item) {
    let stream = &env.stream;
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        (env.prepare)(&stream.spec.filter, item)
    }));
    match outcome {
        Ok(Ok(prepared)) => {
            for bad in &prepared.malformed {
                let error = format!("entity {} ({:?}): {}", bad.index, bad.id, bad.reason);
                stream
                    .quarantine
                    .record(QuarantineKind::Entity, &error, &bad.raw);
                stream.set_last_error(&format!("quarantined {error}"));
            }
            publish(stream, prepared);
        }
        Ok(Err(err)) => {
            let error = err.to_string();
            stream
                .quarantine
                .record(QuarantineKind::Decode, &error, &item.payload);
            stream.set_last_error(&format!("quarantined message: {error}"));
        }
        Err(panic) => {
            let error = format!("prepare panicked: {}", panic_message(&*panic));
            stream
                .quarantine
                .record(QuarantineKind::Panic, &error, &item.payload);
            stream.set_last_error(&error);
        }
    }
}

fn publish(stream: &StreamRuntime, prepared: Prepared) {
    stream.entities.record(&prepared);
    let seq = stream.next_seq();
    stream.hub.publish(&Arc::new(
        crate::pipeline::fanout::PreparedUpdate::from_prepared(stream.name(), seq, prepared),
    ));
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".into()
    }
}

/// Restart delays: `initial`, doubled after each quick death, capped at `max`; back to
/// `initial` once a dispatcher has lived for `reset_after`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            reset_after: Duration::from_secs(30),
        }
    }
}

/// Starts a dispatcher task for the stream and records its handle on the stream.
pub type Spawner = Arc<dyn Fn() -> JoinHandle<Result<(), DispatchError>> + Send + Sync>;

/// Keeps one stream's dispatcher running: restarts it when it ends, for any reason, after a
/// backoff, and on request (admin restart) at once. Never returns.
#[async_backtrace::framed]
pub async fn supervise(
    stream: Arc<StreamRuntime>,
    spawn: Spawner,
    errors: Arc<ErrorLog>,
    backoff: Backoff,
) {
    let mut delay = backoff.initial;
    loop {
        let started = Instant::now();
        let mut handle = spawn();
        let ended = tokio::select! {
            res = &mut handle => Some(res),
            () = stream.restart_requested.notified() => None,
        };
        let Some(res) = ended else {
            handle.abort();
            let _ = handle.await;
            stream.count_restart();
            tracing::info!(stream = %stream.name(), "dispatcher restarted on request");
            errors.push(Some(stream.name()), "dispatcher restarted on request");
            delay = backoff.initial;
            continue;
        };
        if stream.drilled.load(std::sync::atomic::Ordering::Relaxed) {
            // A drill: dead, as in the story, until someone asks for a restart.
            stream.restart_requested.notified().await;
            stream
                .drilled
                .store(false, std::sync::atomic::Ordering::Relaxed);
            stream.count_restart();
            tracing::info!(stream = %stream.name(), "dispatcher restarted on request after a drill");
            errors.push(
                Some(stream.name()),
                "dispatcher restarted on request after a drill",
            );
            delay = backoff.initial;
            continue;
        }
        let why = match res {
            Ok(Ok(())) => "dispatcher ended".to_string(),
            Ok(Err(e)) => format!("dispatcher failed: {e}"),
            Err(e) if e.is_panic() => {
                format!("dispatcher panicked: {}", panic_message(&*e.into_panic()))
            }
            Err(_) => "dispatcher was cancelled".to_string(),
        };
        if started.elapsed() >= backoff.reset_after {
            delay = backoff.initial;
        }
        tracing::error!(stream = %stream.name(), restart_in = ?delay, "{why}; restarting");
        stream.set_last_error(&why);
        errors.push(Some(stream.name()), why);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stream.restart_requested.notified() => {}
        }
        delay = (delay * 2).min(backoff.max);
        stream.count_restart();
    }
}

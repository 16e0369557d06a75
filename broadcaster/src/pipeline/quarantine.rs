//! Poison-message quarantine: per stream, what failed to parse or prepare (or panicked while
//! doing so). Counted, the last few kept with their error and a hex excerpt for dumps, logged
//! rate-limited. The dispatcher goes on with the next message.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use stallwatch_core::clock::now_ms;
use stallwatch_core::sync::lock;
use stallwatch_core::taskdump::{ErrorRecord, QuarantinedMessage};

use crate::util::{RateLimiter, hex_excerpt};

/// How many quarantined messages each stream keeps for dumps.
pub const KEEP_PER_STREAM: usize = 16;
/// Bytes of offending input kept in an excerpt.
pub const EXCERPT_BYTES: usize = 256;
/// At most one quarantine log line per stream per this interval.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// What was set aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuarantineKind {
    /// The whole message failed to decode (or was too large).
    Decode,
    /// One entity of a message was invalid; the rest went out.
    Entity,
    /// Preparing the message panicked.
    Panic,
}

impl QuarantineKind {
    pub const ALL: [QuarantineKind; 3] = [Self::Decode, Self::Entity, Self::Panic];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decode => "decode",
            Self::Entity => "entity",
            Self::Panic => "panic",
        }
    }
}

#[derive(Debug)]
pub struct Quarantine {
    stream: String,
    counts: [AtomicU64; 3],
    recent: Mutex<VecDeque<QuarantinedMessage>>,
    log: RateLimiter,
}

impl Quarantine {
    pub fn new(stream: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            counts: Default::default(),
            recent: Mutex::new(VecDeque::with_capacity(KEEP_PER_STREAM)),
            log: RateLimiter::new(LOG_EVERY),
        }
    }

    pub fn record(&self, kind: QuarantineKind, error: &str, input: &[u8]) -> QuarantinedMessage {
        self.counts[kind as usize].fetch_add(1, Ordering::Relaxed);
        let msg = QuarantinedMessage {
            stream: self.stream.clone(),
            at_ms: now_ms(),
            kind: kind.as_str().into(),
            error: stallwatch_core::report::truncate(error, stallwatch_core::report::MAX_TEXT_LEN),
            excerpt_hex: hex_excerpt(input, EXCERPT_BYTES),
            size: input.len() as u64,
        };
        {
            let mut recent = lock(&self.recent);
            if recent.len() == KEEP_PER_STREAM {
                recent.pop_front();
            }
            recent.push_back(msg.clone());
        }
        if let Some(suppressed) = self.log.check() {
            tracing::warn!(
                stream = %self.stream,
                kind = kind.as_str(),
                size = input.len(),
                suppressed,
                "quarantined: {error}"
            );
        }
        msg
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub fn count(&self, kind: QuarantineKind) -> u64 {
        self.counts[kind as usize].load(Ordering::Relaxed)
    }

    /// Oldest first.
    pub fn recent(&self) -> Vec<QuarantinedMessage> {
        lock(&self.recent).iter().cloned().collect()
    }
}

/// Process-wide ring of recent errors (dispatcher deaths, source failures), for dumps.
#[derive(Debug)]
pub struct ErrorLog {
    keep: usize,
    recent: Mutex<VecDeque<ErrorRecord>>,
}

impl ErrorLog {
    pub fn new(keep: usize) -> Self {
        Self {
            keep,
            recent: Mutex::new(VecDeque::with_capacity(keep)),
        }
    }

    pub fn push(&self, stream: Option<&str>, message: impl Into<String>) {
        let record = ErrorRecord {
            stream: stream.map(String::from),
            at_ms: now_ms(),
            message: stallwatch_core::report::truncate(
                &message.into(),
                stallwatch_core::report::MAX_TEXT_LEN,
            ),
        };
        let mut recent = lock(&self.recent);
        if recent.len() == self.keep {
            recent.pop_front();
        }
        recent.push_back(record);
    }

    pub fn recent(&self) -> Vec<ErrorRecord> {
        lock(&self.recent).iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests;

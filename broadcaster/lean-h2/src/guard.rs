//! One connection's account of what its peer made it do, against the [`Limits`]: every
//! check returns the [`Exceeded`] reason that closes the connection. Pure but for the clock
//! reading the caller passes in.

use std::time::Instant;

use crate::limits::{Bucket, Exceeded, Limits};

/// WINDOW_UPDATE frames one of our DATA frames may draw (the stream's and the connection's,
/// with room for clients that update per message).
const WINDOW_UPDATES_PER_DATA_FRAME: u32 = 10;

/// 56 bytes in every connection: the rates and maxima stay in the shared [`Limits`], which
/// every method is passed (a size test pins it).
#[derive(Debug)]
pub(crate) struct Guard {
    resets: Bucket,
    empty_frames: Bucket,
    settings: Bucket,
    pings: Bucket,
    window_updates: Bucket,
    priorities: Bucket,
    pending_resets: u32,
    local_resets: u32,
}

/// A frame kind whose rate is limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rated {
    Reset,
    Empty,
    Settings,
    Ping,
    WindowUpdate,
    Priority,
}

impl Guard {
    pub fn new(limits: &Limits) -> Self {
        Self {
            resets: Bucket::new(limits.resets),
            empty_frames: Bucket::new(limits.empty_frames),
            settings: Bucket::new(limits.settings),
            pings: Bucket::new(limits.pings),
            window_updates: Bucket::new(limits.window_updates),
            priorities: Bucket::new(limits.priorities),
            pending_resets: 0,
            local_resets: 0,
        }
    }

    /// One more frame of `kind` at `now`.
    pub fn frame(&mut self, limits: &Limits, kind: Rated, now: Instant) -> Result<(), Exceeded> {
        let (bucket, rate, reason) = match kind {
            Rated::Reset => (&mut self.resets, limits.resets, Exceeded::ResetRate),
            Rated::Empty => (
                &mut self.empty_frames,
                limits.empty_frames,
                Exceeded::EmptyFrames,
            ),
            Rated::Settings => (&mut self.settings, limits.settings, Exceeded::Settings),
            Rated::Ping => (&mut self.pings, limits.pings, Exceeded::Pings),
            Rated::WindowUpdate => (
                &mut self.window_updates,
                limits.window_updates,
                Exceeded::WindowUpdates,
            ),
            Rated::Priority => (
                &mut self.priorities,
                limits.priorities,
                Exceeded::Priorities,
            ),
        };
        if bucket.take(rate, now) {
            Ok(())
        } else {
            Err(reason)
        }
    }

    /// The peer reset a stream before its response began.
    pub fn premature_reset(&mut self, limits: &Limits) -> Result<(), Exceeded> {
        self.pending_resets += 1;
        if self.pending_resets > limits.max_pending_resets {
            return Err(Exceeded::PendingResets);
        }
        Ok(())
    }

    /// `n` responses began: each pays back one premature reset.
    pub fn answered(&mut self, n: u32) {
        self.pending_resets = self.pending_resets.saturating_sub(n);
    }

    /// We reset a stream (or refused it) because of the peer.
    pub fn local_reset(&mut self, limits: &Limits) -> Result<(), Exceeded> {
        self.local_resets += 1;
        if self.local_resets > limits.max_local_resets {
            return Err(Exceeded::LocalResets);
        }
        Ok(())
    }

    /// We sent `n` DATA frames: the peer may answer them with PINGs (BDP probes) and
    /// WINDOW_UPDATEs.
    pub fn sent_data(&mut self, limits: &Limits, n: u32) {
        if n > 0 {
            self.pings.credit(limits.pings, n);
            self.window_updates.credit(
                limits.window_updates,
                n.saturating_mul(WINDOW_UPDATES_PER_DATA_FRAME),
            );
        }
    }
}

#[cfg(test)]
mod tests;

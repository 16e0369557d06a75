//! Ending streams and the connection: stream and connection errors (counted against the
//! limits), removing a stream, and the receive window given back as request bytes are
//! consumed.

use std::time::Instant;

use crate::Handler;
use crate::conn::{Conn, Life};
use crate::frame::{self, Reason};
use crate::guard::Rated;
use crate::limits::Exceeded;
use crate::stream::{Inbound, State};

impl<H: Handler> Conn<H> {
    /// Gives the peer back the window a bridged service consumed. A stream already removed
    /// gave back all it had when it was removed.
    pub(super) fn apply_consumed(&mut self) {
        for (stream_id, n) in self.shared.take_consumed() {
            let Some(stream) = self.streams.get_mut(&stream_id) else {
                continue;
            };
            if let State::Bridge(bridged) = &mut stream.state {
                bridged.consumed(n);
            }
            self.release(stream_id, n);
        }
    }

    /// `n` received bytes of `stream_id` were consumed: WINDOW_UPDATEs once enough were.
    pub(crate) fn release(&mut self, stream_id: u32, n: usize) {
        if let Some(increment) = self.recv_window.release(n) {
            frame::put_window_update(&mut self.out.buf, 0, increment);
        }
        if let Some(stream) = self.streams.get_mut(&stream_id)
            && let Inbound::Open { window, .. } = &mut stream.inbound
            && let Some(increment) = window.release(n)
        {
            frame::put_window_update(&mut self.out.buf, stream_id, increment);
        }
    }

    /// A connection error (RFC 9113 section 5.4.1): GOAWAY, then close.
    pub(crate) fn connection_error(&mut self, reason: Reason, why: &str) {
        tracing::debug!(peer = %self.peer, ?reason, "HTTP/2 connection error: {why}");
        frame::put_goaway(&mut self.out.buf, self.last_stream_id, reason, why);
        self.streams.clear();
        self.life = Life::Closing;
    }

    /// A limit exceeded: GOAWAY ENHANCE_YOUR_CALM, counted by its reason.
    pub(crate) fn limit_exceeded(&mut self, exceeded: Exceeded) {
        self.services.options.metrics.add(exceeded);
        self.connection_error(Reason::EnhanceYourCalm, exceeded.as_str());
    }

    /// A stream error (RFC 9113 section 5.4.2): RST_STREAM, the stream is gone. Counted:
    /// past the limit of resets the peer caused, the connection closes.
    pub(crate) fn stream_error(&mut self, stream_id: u32, reason: Reason, why: &str) {
        tracing::debug!(peer = %self.peer, stream_id, ?reason, "HTTP/2 stream error: {why}");
        frame::put_rst_stream(&mut self.out.buf, stream_id, reason);
        self.remove_stream(stream_id);
        self.count_local_reset();
    }

    /// One more frame of a rate-limited `kind`, now.
    pub(crate) fn rated(&mut self, kind: Rated) -> Result<(), Exceeded> {
        self.guard
            .frame(&self.services.options.limits, kind, Instant::now())
    }

    /// One more stream we reset or refused because of the peer.
    pub(crate) fn count_local_reset(&mut self) {
        if let Err(exceeded) = self.guard.local_reset(&self.services.options.limits) {
            self.limit_exceeded(exceeded);
        }
    }

    /// Drops a stream (ending its subscription or aborting its bridged request). Request
    /// bytes its service never consumed are given back to the connection's window, or a
    /// peer could starve the connection by sending what a unary call leaves unread.
    pub(crate) fn remove_stream(&mut self, stream_id: u32) {
        let Some(stream) = self.streams.remove(&stream_id) else {
            return;
        };
        self.recently_closed.insert(stream_id);
        if let State::Bridge(bridged) = &stream.state
            && bridged.unconsumed > 0
            && let Some(increment) = self.recv_window.release(bridged.unconsumed)
        {
            frame::put_window_update(&mut self.out.buf, 0, increment);
        }
    }
}

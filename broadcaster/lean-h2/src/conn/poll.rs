//! The connection task's loop: each round reads frames, serves the woken streams, writes, and
//! checks the timers and whether the connection is done.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

use crate::Handler;
use crate::conn::{Conn, Life};
use crate::frame::{self, Reason};
use crate::limits::Exceeded;

/// Rounds of read/serve/write per poll before yielding to other tasks.
const ROUNDS_PER_POLL: usize = 8;
/// Passes over the ready list before a write: later wakes wait for the next poll.
const SERVE_PASSES: usize = 4;

impl<H: Handler> Conn<H> {
    /// One poll of the connection task: up to `ROUNDS_PER_POLL` rounds; `Ready` once it closed.
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.shared.register(cx.waker());
        for _ in 0..ROUNDS_PER_POLL {
            if self.out.buf.capacity() == 0 {
                self.out.buf = crate::spare::take();
            }
            self.poll_timers(cx);
            let mut more = false;
            if self.life.running() {
                more |= self.poll_read(cx);
            }
            if self.life.running() {
                self.apply_consumed();
                more |= self.serve_woken();
                self.account_output();
            }
            if matches!(self.life, Life::Dead) {
                return Poll::Ready(());
            }
            match self.poll_write(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    tracing::debug!(peer = %self.peer, "HTTP/2 write failed: {e}");
                    return Poll::Ready(());
                }
                Poll::Pending => return Poll::Pending,
            }
            if self.finished(cx) {
                let _ = Pin::new(&mut self.io).poll_shutdown(cx);
                return self.poll_linger(cx);
            }
            if !more {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// The shutdown signal (GOAWAY now; Subscribe streams end by themselves with
    /// UNAVAILABLE), the handshake's deadline.
    fn poll_timers(&mut self, cx: &mut Context<'_>) {
        if let Life::Handshake { deadline, .. } = &mut self.life
            && deadline.as_mut().poll(cx).is_ready()
        {
            self.limit_exceeded(Exceeded::PrefaceTimeout);
            return;
        }
        let goaway_sent = matches!(
            self.life,
            Life::Draining {
                goaway_sent: true,
                ..
            }
        );
        if !self.life.running() || goaway_sent {
            return;
        }
        if self.shutdown.as_mut().poll(cx).is_ready() {
            frame::put_goaway(&mut self.out.buf, self.last_stream_id, Reason::NoError, "");
            let grace = self.services.options.grace;
            self.life = Life::Draining {
                goaway_sent: true,
                deadline: Some(Box::pin(tokio::time::sleep(grace))),
            };
        }
    }

    /// Whether the connection is done: a connection error was written, or while draining
    /// every stream ended or the shutdown grace ran out.
    fn finished(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.life {
            Life::Closing | Life::Lingering { .. } | Life::Dead => true,
            Life::Draining { deadline, .. } => {
                self.streams.is_empty()
                    || deadline
                        .as_mut()
                        .is_some_and(|d| d.as_mut().poll(cx).is_ready())
            }
            Life::Handshake { .. } | Life::Open => false,
        }
    }

    /// Serves the woken streams, and those woken meanwhile (a publish wakes a connection's
    /// streams one after another), so that they go out in the same write. Returns whether
    /// some are left for after a write.
    fn serve_woken(&mut self) -> bool {
        for _ in 0..SERVE_PASSES {
            for id in self.shared.take_ready() {
                self.schedule(id);
            }
            if self.ready.is_empty() {
                return false;
            }
            if self.serve_ready() {
                return true;
            }
        }
        false
    }

    /// Queues a stream to be served, once however often it is asked for.
    pub(crate) fn schedule(&mut self, id: u32) {
        if let Some(stream) = self.streams.get_mut(&id)
            && !std::mem::replace(&mut stream.scheduled, true)
        {
            self.ready.push_back(id);
        }
    }

    /// What the output of this round earns the peer or pays back.
    fn account_output(&mut self) {
        self.guard.sent_data(
            &self.services.options.limits,
            std::mem::take(&mut self.out.data_frames),
        );
        self.guard.answered(std::mem::take(&mut self.out.answered));
    }
}

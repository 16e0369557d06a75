//! The socket: reads into a stack buffer (only an incomplete frame's bytes, or frames left
//! unread while the write buffer is full, stay on the heap), the write buffer written with as
//! few `write` calls as it takes and then given back to the thread's spare, and the linger
//! after a connection error.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::Handler;
use crate::conn::{Conn, Life};
use crate::frame;

/// Reads go through a stack buffer of this size.
const READ_CHUNK: usize = 16 * 1024;
/// After a connection error, how long and how much of what the peer still sends is read and
/// dropped before the socket closes.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

impl<H: Handler> Conn<H> {
    /// Reads and handles frames until the socket has nothing more or the write buffer is
    /// full. Returns whether it stopped with work left (a full write buffer).
    pub(super) fn poll_read(&mut self, cx: &mut Context<'_>) -> bool {
        // Frames left unread while the write buffer was full go first.
        if self.holds_a_frame() && !self.out.full() {
            self.ingest(&[]);
        }
        // Uninitialized: zeroing 16 KiB on every poll showed up in the server's profile.
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
        loop {
            if self.out.full() {
                return true;
            }
            if !self.life.running() {
                return false;
            }
            let mut read = ReadBuf::uninit(&mut buf);
            match Pin::new(&mut self.io).poll_read(cx, &mut read) {
                Poll::Pending => return false,
                Poll::Ready(Err(e)) => {
                    tracing::debug!(peer = %self.peer, "HTTP/2 read failed: {e}");
                    self.life = Life::Dead;
                    return false;
                }
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    self.life = Life::Dead;
                    return false;
                }
                Poll::Ready(Ok(())) => self.ingest(read.filled()),
            }
        }
    }

    /// Handles the complete frames in `data` (after any earlier unread ones) and keeps the
    /// rest: at most an incomplete frame and what arrived after the write buffer filled.
    fn ingest(&mut self, data: &[u8]) {
        if self.partial.is_empty() {
            let used = self.process(data);
            if self.life.running() {
                self.partial.extend_from_slice(&data[used..]);
            }
            return;
        }
        let mut partial = std::mem::take(&mut self.partial);
        partial.extend_from_slice(data);
        let used = self.process(&partial);
        if !self.life.running() || used == partial.len() {
            return;
        }
        if used == 0 {
            // Still one incomplete frame: kept as it is, so a peer sending it a byte at a
            // time costs a byte's work per read, not a copy of what came before.
            self.partial = partial;
        } else {
            // Only what is left stays, in a buffer of its own size.
            self.partial = partial[used..].to_vec();
        }
    }

    /// Whether the bytes kept hold a whole frame to handle (or preface bytes).
    fn holds_a_frame(&self) -> bool {
        if self.partial.is_empty() {
            return false;
        }
        if matches!(self.life, Life::Handshake { .. }) {
            return true;
        }
        frame::FrameHeader::parse(&self.partial)
            .is_some_and(|h| self.partial.len() >= frame::HEADER_LEN + h.len as usize)
    }

    /// Writes the buffer until it is empty (then frees it) or the socket is full.
    pub(super) fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.out.written < self.out.buf.len() {
            let pending = &self.out.buf[self.out.written..];
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, pending))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.out.written += n;
        }
        crate::spare::put(std::mem::take(&mut self.out.buf));
        self.out.written = 0;
        Poll::Ready(Ok(()))
    }

    /// After a connection error: drops what the peer still sends, within bounds (`Life::
    /// Lingering`). Any other end closes at once.
    pub(super) fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if matches!(self.life, Life::Closing) {
            self.life = Life::Lingering {
                deadline: Box::pin(tokio::time::sleep(LINGER)),
                dropped: 0,
            };
        }
        let Life::Lingering { deadline, dropped } = &mut self.life else {
            return Poll::Ready(());
        };
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
        while *dropped < LINGER_BYTES {
            let mut read = ReadBuf::uninit(&mut buf);
            match Pin::new(&mut self.io).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) if !read.filled().is_empty() => {
                    *dropped += read.filled().len();
                }
                Poll::Ready(_) => return Poll::Ready(()),
            }
        }
        Poll::Ready(())
    }
}

//! Write batching for gRPC connections: several subscribers' updates on one HTTP/2 connection
//! go out in one socket write instead of one write each.
//!
//! Why this is needed (h2 0.4's `FramedWrite`): a DATA frame at or above its chain threshold
//! (256 bytes on a socket that takes vectored writes, 1,024 on one that does not) is not copied
//! into the connection's write buffer but written from its own `Bytes`, and the codec writes
//! and flushes before it takes the next frame: one `writev` per delivery. And when an update
//! wakes a subscriber's stream task, that task's `send_data` wakes the connection task into
//! tokio's LIFO slot, so the connection writes the frame before the next subscriber's task
//! has even run. Together: at 1,000 subscribers, one syscall and one connection poll per
//! delivery, about 2.5 times the CPU per delivery of the peak rate where queued updates share
//! a chunk.
//!
//! Three parts, each harmless alone:
//! - [`BatchingIo`] says the socket takes no vectored writes (so h2 copies frames under 1 KiB
//!   into its 16 KiB write buffer), yields once before the first write of each flush (so the
//!   subscriber tasks already woken queue their frames first), and joins the two writes h2
//!   makes of a chained frame (its buffer, then the payload) into one `writev`;
//! - [`SmallFrames`] cuts a response body's chunks of up to 16 KiB into DATA frames under
//!   h2's 1 KiB threshold, so a 1 KiB update is copied and batched instead of chained; larger
//!   chunks (a peak burst, a big feed) still go out zero-copy, one `writev` per 16 KiB frame.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// h2 copies a DATA frame into its write buffer (instead of chaining it) below this payload
/// size when the socket says it takes no vectored writes (`CHAIN_THRESHOLD_WITHOUT_VECTORED_IO`).
const H2_COPY_BELOW: usize = 1024;

/// Body chunks up to this size are cut into frames h2 copies; larger ones are left whole
/// (h2 sends them as max-size frames, each from its own bytes). 16 KiB: HTTP/2's default
/// maximum frame size, and h2's write buffer.
const SPLIT_UP_TO: usize = 16 * 1024;

/// A first write smaller than this is held and joined with the next write or the flush (h2
/// writes its buffer, then a chained frame's payload, then flushes).
const HOLD_BELOW: usize = 32 * 1024;

/// A server connection's socket, batching writes (see the module docs).
#[derive(Debug)]
pub struct BatchingIo<T> {
    inner: T,
    /// Bytes accepted but not yet written: sent with the next large write or the flush.
    held: BytesMut,
    /// Whether this flush cycle has already yielded once.
    yielded: bool,
}

impl<T> BatchingIo<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            held: BytesMut::new(),
            yielded: false,
        }
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected for BatchingIo<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> T::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<T: AsyncWrite + Unpin> BatchingIo<T> {
    /// Writes everything held. `Ready(Ok)` once nothing is.
    fn poll_write_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.advance(n);
        }
        // An idle connection keeps no write buffer (memory per idle subscriber).
        if std::env::var("XB_KEEP").is_err() {
            self.held = BytesMut::new();
        } else {
            self.held.clear();
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for BatchingIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for BatchingIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if std::env::var("XB_IO").is_ok() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        if !this.yielded && std::env::var("XB_NOYIELD").is_err() {
            // Back of the run queue: the subscriber tasks woken with this one (one update
            // wakes every subscriber) queue their frames before the connection writes.
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if this.held.is_empty() {
            if buf.len() >= HOLD_BELOW {
                return Pin::new(&mut this.inner).poll_write(cx, buf);
            }
            this.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        loop {
            let slices = [IoSlice::new(&this.held), IoSlice::new(buf)];
            let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if n < this.held.len() {
                this.held.advance(n);
                continue;
            }
            let from_buf = n - this.held.len();
            this.held.clear();
            if from_buf > 0 {
                return Poll::Ready(Ok(from_buf));
            }
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_held(cx))?;
        this.yielded = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_held(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if std::env::var("XB_IO").is_ok() {
            return Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs);
        }
        let buf = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        self.poll_write(cx, buf)
    }

    fn is_write_vectored(&self) -> bool {
        // What h2 reads to pick its chain threshold: 1 KiB instead of 256 bytes.
        std::env::var("XB_IO").is_ok()
    }
}

/// A response body whose data chunks of up to [`SPLIT_UP_TO`] bytes come out as pieces under
/// h2's copy threshold (see the module docs). Trailers and errors pass unchanged.
#[derive(Debug)]
pub struct SmallFrames<B> {
    inner: B,
    pieces: VecDeque<Bytes>,
}

impl<B> SmallFrames<B> {
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            pieces: VecDeque::new(),
        }
    }
}

/// `chunk` as pieces of nearly equal size, each under [`H2_COPY_BELOW`] bytes, or whole when it
/// is small already or larger than [`SPLIT_UP_TO`].
fn split(mut chunk: Bytes, out: &mut VecDeque<Bytes>) {
    if chunk.len() < H2_COPY_BELOW || chunk.len() > SPLIT_UP_TO || std::env::var("XB_SPLIT").is_ok()
    {
        out.push_back(chunk);
        return;
    }
    let count = chunk.len().div_ceil(H2_COPY_BELOW - 1);
    let size = chunk.len().div_ceil(count);
    while chunk.len() > size {
        out.push_back(chunk.split_to(size));
    }
    out.push_back(chunk);
}

impl<B> http_body::Body for SmallFrames<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if let Some(piece) = this.pieces.pop_front() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(piece))));
        }
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(chunk) => {
                    split(chunk, &mut this.pieces);
                    let first = this.pieces.pop_front().unwrap_or_default();
                    Poll::Ready(Some(Ok(http_body::Frame::data(first))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => Poll::Ready(other),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pieces.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let held: usize = self.pieces.iter().map(Bytes::len).sum();
        let inner = self.inner.size_hint();
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(inner.lower() + held as u64);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + held as u64);
        }
        hint
    }
}

#[cfg(test)]
#[path = "batching_tests.rs"]
mod tests;

//! The connection task: one per TCP connection. It reads frames (`recv`), serves the ready
//! streams into one write buffer (`send`) and writes that buffer with as few `write` calls as
//! it can. An idle connection holds no read or write buffer: reads go to a stack buffer and
//! only an incomplete frame's bytes are kept on the heap; the write buffer goes back to the
//! thread's spare (`spare`) once written.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::flow::{RecvWindow, SendWindow};
use crate::frame::{self, DEFAULT_MAX_FRAME_SIZE, DEFAULT_WINDOW, Reason};
use crate::stream::{State, Stream};
use crate::wake::ReadyShared;
use crate::{Handler, Shared};

/// Reads go through a stack buffer of this size.
const READ_CHUNK: usize = 16 * 1024;
/// Past this many unwritten bytes the connection stops serving streams and reading frames
/// until the socket takes them: a slow socket turns into lag in the hub, not into memory.
const HIGH_WATER: usize = 128 * 1024;
// A connection's usual write buffer must fit the per-thread spare, or it is never kept.
const _: () = assert!(crate::spare::MAX_KEPT >= 4 * HIGH_WATER);
/// Rounds of read/serve/write per poll before yielding to other tasks.
const ROUNDS_PER_POLL: usize = 8;
/// Passes over the ready list before a write: later wakes wait for the next poll.
const SERVE_PASSES: usize = 4;
/// Streams a client may open at once (REFUSED_STREAM past it).
pub(super) const MAX_CONCURRENT_STREAMS: usize = 1024;
/// Our SETTINGS_MAX_HEADER_LIST_SIZE.
pub(super) const MAX_HEADER_LIST_SIZE: usize = 16 * 1024;

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for the client preface; the count of its bytes seen.
    Preface(usize),
    /// The preface arrived; the first frame must be SETTINGS.
    FirstSettings,
    Open,
}

/// The write side: the buffer and what limits what goes into it.
#[derive(Debug)]
pub(super) struct Out {
    pub buf: Vec<u8>,
    /// Bytes of `buf` already written.
    pub written: usize,
    pub window: SendWindow,
    /// The peer's SETTINGS_MAX_FRAME_SIZE.
    pub max_frame: usize,
    /// The peer changed SETTINGS_HEADER_TABLE_SIZE: the next header block must start with
    /// a dynamic table size update (RFC 7541 section 4.2).
    pub table_size_update: bool,
}

impl Out {
    pub fn unwritten(&self) -> usize {
        self.buf.len() - self.written
    }

    pub fn full(&self) -> bool {
        self.unwritten() >= HIGH_WATER
    }

    /// An empty header block, or one that starts with the size update the peer is owed. We
    /// never index, so the table size we announce is 0, within any limit the peer sets.
    pub fn new_header_block(&mut self) -> Vec<u8> {
        let mut block = Vec::new();
        if std::mem::take(&mut self.table_size_update) {
            block.push(crate::headers::TABLE_SIZE_UPDATE_TO_0);
        }
        block
    }
}

/// A header block whose CONTINUATION frames are still arriving.
#[derive(Debug)]
pub(super) struct PendingHeaders {
    pub stream_id: u32,
    pub end_stream: bool,
    pub block: Vec<u8>,
}

pub(super) struct Conn<H: Handler> {
    pub io: TcpStream,
    pub peer: SocketAddr,
    pub services: Arc<Shared<H>>,
    pub phase: Phase,
    pub hpack: loona_hpack::Decoder<'static>,
    /// An incomplete frame's bytes.
    pub partial: Vec<u8>,
    pub header_block: Option<PendingHeaders>,
    pub out: Out,
    pub streams: HashMap<u32, Stream<H>>,
    pub last_stream_id: u32,
    pub recv_window: RecvWindow,
    /// The peer's SETTINGS_INITIAL_WINDOW_SIZE.
    pub peer_initial_window: u32,
    pub shared: Arc<ReadyShared>,
    /// Streams to serve in this poll.
    pub ready: VecDeque<u32>,
    /// Streams that stopped on the connection's send window.
    pub blocked_on_conn: Vec<u32>,
    pub shutdown: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    /// Set once GOAWAY went out at shutdown: the streams' deadline to finish.
    pub grace: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The peer sent GOAWAY: no new streams; close once the open ones end.
    pub peer_going_away: bool,
    /// A connection error: write what is buffered (the GOAWAY) and close.
    pub closing: bool,
    /// The socket failed or the peer closed it: nothing more can be done.
    pub dead: bool,
}

/// Serves one connection until it closes.
pub(super) async fn serve_connection<H: Handler>(
    io: TcpStream,
    peer: SocketAddr,
    services: Arc<Shared<H>>,
) {
    let mut conn = Conn::new(io, peer, services);
    std::future::poll_fn(|cx| conn.poll(cx)).await;
}

impl<H: Handler> Conn<H> {
    fn new(io: TcpStream, peer: SocketAddr, services: Arc<Shared<H>>) -> Self {
        let mut hpack = loona_hpack::Decoder::new();
        hpack.set_max_allowed_table_size(4096);
        let shutdown = Box::pin(services.options.shutdown.clone().cancelled_owned());
        let mut conn = Self {
            io,
            peer,
            services,
            phase: Phase::Preface(0),
            hpack,
            partial: Vec::new(),
            header_block: None,
            out: Out {
                buf: Vec::new(),
                written: 0,
                window: SendWindow::new(DEFAULT_WINDOW),
                max_frame: DEFAULT_MAX_FRAME_SIZE as usize,
                table_size_update: false,
            },
            streams: HashMap::new(),
            last_stream_id: 0,
            recv_window: RecvWindow::new(DEFAULT_WINDOW),
            peer_initial_window: DEFAULT_WINDOW,
            shared: Arc::new(ReadyShared::default()),
            ready: VecDeque::new(),
            blocked_on_conn: Vec::new(),
            shutdown,
            grace: None,
            peer_going_away: false,
            closing: false,
            dead: false,
        };
        frame::put_settings(
            &mut conn.out.buf,
            &[
                (frame::setting::ENABLE_PUSH, 0),
                (
                    frame::setting::MAX_CONCURRENT_STREAMS,
                    MAX_CONCURRENT_STREAMS as u32,
                ),
                (
                    frame::setting::MAX_HEADER_LIST_SIZE,
                    MAX_HEADER_LIST_SIZE as u32,
                ),
            ],
        );
        conn
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.shared.register(cx.waker());
        for _ in 0..ROUNDS_PER_POLL {
            if self.out.buf.capacity() == 0 {
                self.out.buf = crate::spare::take();
            }
            self.poll_shutdown_signal(cx);
            let mut more = false;
            if !self.closing && !self.dead {
                more |= self.poll_read(cx);
            }
            if !self.closing && !self.dead {
                self.apply_consumed();
                more |= self.serve_woken();
            }
            if self.dead {
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
                return Poll::Ready(());
            }
            if !more {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Serves the woken streams, and those woken meanwhile (a publish wakes a connection's
    /// streams one after another), so that they go out in the same write. Returns whether
    /// some are left for after a write.
    fn serve_woken(&mut self) -> bool {
        for _ in 0..SERVE_PASSES {
            self.shared.take_ready(&mut self.ready);
            if self.ready.is_empty() {
                return false;
            }
            if self.serve_ready() {
                return true;
            }
        }
        false
    }

    /// At shutdown: GOAWAY now; Subscribe streams end by themselves with UNAVAILABLE.
    fn poll_shutdown_signal(&mut self, cx: &mut Context<'_>) {
        if self.grace.is_some() || self.closing {
            return;
        }
        if self.shutdown.as_mut().poll(cx).is_ready() {
            frame::put_goaway(&mut self.out.buf, self.last_stream_id, Reason::NoError, "");
            self.grace = Some(Box::pin(tokio::time::sleep(self.services.options.grace)));
        }
    }

    /// Whether the connection is done: a connection error was written, or at shutdown (or
    /// after the peer's GOAWAY) every stream ended, or the shutdown grace ran out.
    fn finished(&mut self, cx: &mut Context<'_>) -> bool {
        if self.closing {
            return true;
        }
        let draining = self.grace.is_some() || self.peer_going_away;
        if draining && self.streams.is_empty() {
            return true;
        }
        self.grace
            .as_mut()
            .is_some_and(|g| g.as_mut().poll(cx).is_ready())
    }

    /// Reads and handles frames until the socket has nothing more or the write buffer is
    /// full. Returns whether it stopped with work left (a full write buffer).
    fn poll_read(&mut self, cx: &mut Context<'_>) -> bool {
        // Uninitialized: zeroing 16 KiB on every poll showed up in the server's profile.
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
        loop {
            if self.out.full() {
                return true;
            }
            let mut read = ReadBuf::uninit(&mut buf);
            match Pin::new(&mut self.io).poll_read(cx, &mut read) {
                Poll::Pending => return false,
                Poll::Ready(Err(e)) => {
                    tracing::debug!(peer = %self.peer, "HTTP/2 read failed: {e}");
                    self.dead = true;
                    return false;
                }
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    self.dead = true;
                    return false;
                }
                Poll::Ready(Ok(())) => {
                    self.ingest(read.filled());
                    if self.closing {
                        return false;
                    }
                }
            }
        }
    }

    /// Handles the complete frames in `data` (after any earlier incomplete one) and keeps
    /// the rest.
    fn ingest(&mut self, data: &[u8]) {
        if self.partial.is_empty() {
            let used = self.process(data);
            if !self.closing {
                self.partial.extend_from_slice(&data[used..]);
            }
            return;
        }
        let mut partial = std::mem::take(&mut self.partial);
        partial.extend_from_slice(data);
        let used = self.process(&partial);
        if !self.closing && used < partial.len() {
            // Only the incomplete frame stays, in a buffer of its own size.
            self.partial = partial[used..].to_vec();
        }
    }

    /// Writes the buffer until it is empty (then frees it) or the socket is full.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
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

    /// Gives the peer back the window a bridged service consumed. A stream already removed
    /// gave back all it had when it was removed.
    fn apply_consumed(&mut self) {
        for (stream_id, n) in self.shared.take_consumed() {
            let Some(stream) = self.streams.get_mut(&stream_id) else {
                continue;
            };
            if let State::Bridge(bridged) = &mut stream.state {
                bridged.unconsumed = bridged.unconsumed.saturating_sub(n);
            }
            self.release(stream_id, n);
        }
    }

    /// `n` received bytes of `stream_id` were consumed: WINDOW_UPDATEs once enough were.
    pub(super) fn release(&mut self, stream_id: u32, n: usize) {
        if let Some(increment) = self.recv_window.release(n) {
            frame::put_window_update(&mut self.out.buf, 0, increment);
        }
        if let Some(stream) = self.streams.get_mut(&stream_id)
            && !stream.remote_closed
            && let Some(increment) = stream.recv.release(n)
        {
            frame::put_window_update(&mut self.out.buf, stream_id, increment);
        }
    }

    /// A connection error (RFC 9113 section 5.4.1): GOAWAY, then close.
    pub(super) fn connection_error(&mut self, reason: Reason, why: &str) {
        tracing::debug!(peer = %self.peer, ?reason, "HTTP/2 connection error: {why}");
        frame::put_goaway(&mut self.out.buf, self.last_stream_id, reason, why);
        self.streams.clear();
        self.closing = true;
    }

    /// A stream error (RFC 9113 section 5.4.2): RST_STREAM, the stream is gone.
    pub(super) fn stream_error(&mut self, stream_id: u32, reason: Reason, why: &str) {
        tracing::debug!(peer = %self.peer, stream_id, ?reason, "HTTP/2 stream error: {why}");
        frame::put_rst_stream(&mut self.out.buf, stream_id, reason);
        self.remove_stream(stream_id);
    }

    /// Drops a stream (ending its subscription or aborting its bridged request). Request
    /// bytes its service never consumed are given back to the connection's window, or a
    /// peer could starve the connection by sending what a unary call leaves unread.
    pub(super) fn remove_stream(&mut self, stream_id: u32) {
        let Some(stream) = self.streams.remove(&stream_id) else {
            return;
        };
        if let State::Bridge(bridged) = &stream.state
            && bridged.unconsumed > 0
            && let Some(increment) = self.recv_window.release(bridged.unconsumed)
        {
            frame::put_window_update(&mut self.out.buf, 0, increment);
        }
    }

    pub(super) fn new_stream_windows(&self) -> (SendWindow, RecvWindow) {
        (
            SendWindow::new(self.peer_initial_window),
            RecvWindow::new(DEFAULT_WINDOW),
        )
    }
}

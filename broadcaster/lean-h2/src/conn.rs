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
use tokio::time::Sleep;

use crate::encode::Encoder;
use crate::flow::{RecvWindow, SendWindow};
use crate::frame::{self, DEFAULT_MAX_FRAME_SIZE, DEFAULT_WINDOW, Reason};
use crate::guard::Guard;
use crate::limits::Exceeded;
use crate::stream::{Inbound, RecentlyClosed, State, Stream};
use crate::wake::ReadyShared;
use crate::{Handler, Shared};

/// Reads go through a stack buffer of this size.
const READ_CHUNK: usize = 16 * 1024;
/// Past this many unwritten bytes the connection stops serving streams and reading frames
/// until the socket takes them: a slow socket turns into lag in the hub, not into memory.
const HIGH_WATER: usize = 128 * 1024;
// A connection's usual write buffer must fit the per-thread spare, or it is never kept.
const _: () = assert!(crate::spare::MAX_KEPT >= 4 * HIGH_WATER);
/// After a connection error, how long and how much of what the peer still sends is read and
/// dropped before the socket closes.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;
/// Rounds of read/serve/write per poll before yielding to other tasks.
const ROUNDS_PER_POLL: usize = 8;
/// Passes over the ready list before a write: later wakes wait for the next poll.
const SERVE_PASSES: usize = 4;
/// Streams a client may open at once (REFUSED_STREAM past it).
pub(crate) const MAX_CONCURRENT_STREAMS: usize = 1024;
/// Our SETTINGS_MAX_HEADER_LIST_SIZE.
pub(crate) const MAX_HEADER_LIST_SIZE: usize = 16 * 1024;

/// Where the connection is in its life.
pub(crate) enum Life {
    /// Waiting for the client preface (`preface_seen` of its bytes so far, all of them once
    /// only the first SETTINGS is missing), until `deadline`.
    Handshake {
        preface_seen: usize,
        deadline: Pin<Box<Sleep>>,
    },
    Open,
    /// No new streams; it closes once the open ones end. `goaway_sent`: ours went out
    /// (at shutdown), and the streams have until `deadline`. Without it the peer's GOAWAY
    /// started the drain.
    Draining {
        goaway_sent: bool,
        deadline: Option<Pin<Box<Sleep>>>,
    },
    /// A connection error: write what is buffered (the GOAWAY) and close.
    Closing,
    /// The GOAWAY is written and our side shut: what the peer still sends is read and
    /// dropped until it closes too, `LINGER_BYTES` are dropped or `deadline` passes, so
    /// that closing with its frames unread (a TCP reset) does not destroy the GOAWAY
    /// before the peer reads it.
    Lingering {
        deadline: Pin<Box<Sleep>>,
        dropped: usize,
    },
    /// The socket failed or the peer closed it: nothing more can be done.
    Dead,
}

impl Life {
    /// Whether frames are still read and streams served.
    pub fn running(&self) -> bool {
        !matches!(self, Life::Closing | Life::Lingering { .. } | Life::Dead)
    }

    /// Whether new streams are refused.
    pub fn draining(&self) -> bool {
        matches!(self, Life::Draining { .. })
    }
}

/// The write side: the buffer and what limits what goes into it.
#[derive(Debug)]
pub(crate) struct Out {
    pub buf: Vec<u8>,
    /// Bytes of `buf` already written.
    pub written: usize,
    pub window: SendWindow,
    /// The peer's SETTINGS_MAX_FRAME_SIZE.
    pub max_frame: usize,
    /// Response header blocks, with their dynamic table.
    pub hpack: Encoder,
    /// DATA frames written since the guard last counted them.
    pub data_frames: u32,
    /// Responses begun (first HEADERS written) since the guard last counted them.
    pub answered: u32,
}

impl Out {
    pub fn unwritten(&self) -> usize {
        self.buf.len() - self.written
    }

    pub fn full(&self) -> bool {
        self.unwritten() >= HIGH_WATER
    }
}

/// A header block whose CONTINUATION frames are still arriving.
#[derive(Debug)]
pub(crate) struct PendingHeaders {
    pub stream_id: u32,
    pub end_stream: bool,
    pub block: Vec<u8>,
    /// CONTINUATION frames so far.
    pub continuations: usize,
    /// Its HEADERS frame made the stream depend on itself (RFC 9113 section 5.3.1).
    pub self_dependent: bool,
}

pub(crate) struct Conn<H: Handler> {
    pub io: TcpStream,
    pub peer: SocketAddr,
    pub services: Arc<Shared<H>>,
    pub life: Life,
    pub hpack: loona_hpack::Decoder<'static>,
    /// An incomplete frame's bytes, or frames left unread while the write buffer was full.
    pub partial: Vec<u8>,
    pub header_block: Option<PendingHeaders>,
    pub out: Out,
    pub streams: HashMap<u32, Stream<H>>,
    pub last_stream_id: u32,
    pub recently_closed: RecentlyClosed,
    pub recv_window: RecvWindow,
    /// The peer's SETTINGS_INITIAL_WINDOW_SIZE.
    pub peer_initial_window: u32,
    pub shared: Arc<ReadyShared>,
    /// Streams to serve in this poll, each once (`Stream::scheduled`).
    pub ready: VecDeque<u32>,
    /// Streams that stopped on the connection's send window, each once (`Stream::blocked`).
    pub blocked_on_conn: Vec<u32>,
    pub shutdown: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    /// What the peer made the connection do, against the limits.
    pub guard: Guard,
}

/// Serves one connection until it closes.
pub(crate) async fn serve_connection<H: Handler>(
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
        let options = &services.options;
        let shutdown = Box::pin(options.shutdown.clone().cancelled_owned());
        let deadline = Box::pin(tokio::time::sleep(options.limits.preface_timeout));
        let guard = Guard::new(&options.limits);
        let mut conn = Self {
            io,
            peer,
            services,
            life: Life::Handshake {
                preface_seen: 0,
                deadline,
            },
            hpack,
            partial: Vec::new(),
            header_block: None,
            out: Out {
                buf: Vec::new(),
                written: 0,
                window: SendWindow::new(DEFAULT_WINDOW),
                max_frame: DEFAULT_MAX_FRAME_SIZE as usize,
                hpack: Encoder::default(),
                data_frames: 0,
                answered: 0,
            },
            streams: HashMap::new(),
            last_stream_id: 0,
            recently_closed: RecentlyClosed::default(),
            recv_window: RecvWindow::new(DEFAULT_WINDOW),
            peer_initial_window: DEFAULT_WINDOW,
            shared: Arc::new(ReadyShared::default()),
            ready: VecDeque::new(),
            blocked_on_conn: Vec::new(),
            shutdown,
            guard,
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

    /// After a connection error: drops what the peer still sends, within bounds (`Life::
    /// Lingering`). Any other end closes at once.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
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

    /// What the output of this round earns the peer or pays back.
    fn account_output(&mut self) {
        self.guard
            .sent_data(std::mem::take(&mut self.out.data_frames));
        self.guard.answered(std::mem::take(&mut self.out.answered));
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

    /// Reads and handles frames until the socket has nothing more or the write buffer is
    /// full. Returns whether it stopped with work left (a full write buffer).
    fn poll_read(&mut self, cx: &mut Context<'_>) -> bool {
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

    /// One more stream we reset or refused because of the peer.
    pub(crate) fn count_local_reset(&mut self) {
        if let Err(exceeded) = self.guard.local_reset() {
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

    pub(crate) fn new_stream_windows(&self) -> (SendWindow, RecvWindow) {
        (
            SendWindow::new(self.peer_initial_window),
            RecvWindow::new(DEFAULT_WINDOW),
        )
    }
}

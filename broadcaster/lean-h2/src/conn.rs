//! The connection task: one per TCP connection. It reads frames (`recv`), serves the ready
//! streams into one write buffer (`send`) and writes that buffer with as few `write` calls as
//! it can. An idle connection holds no read or write buffer: reads go to a stack buffer and
//! only an incomplete frame's bytes are kept on the heap; the write buffer goes back to the
//! thread's spare (`spare`) once written.
//!
//! Here: the connection's state (`Life`, `Out`, `Conn`) and its setup. The loop is in `poll`,
//! the socket in `io`, errors and stream removal in `streams`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::encode::Encoder;
use crate::flow::{RecvWindow, SendWindow};
use crate::frame::{self, DEFAULT_MAX_FRAME_SIZE, DEFAULT_WINDOW};
use crate::guard::Guard;
use crate::stream::{RecentlyClosed, Stream};
use crate::wake::ReadyShared;
use crate::{Handler, Shared};

mod io;
mod poll;
mod streams;

/// Past this many unwritten bytes the connection stops serving streams and reading frames
/// until the socket takes them: a slow socket turns into lag in the hub, not into memory.
const HIGH_WATER: usize = 128 * 1024;
// A connection's usual write buffer must fit the per-thread spare, or it is never kept.
const _: () = assert!(crate::spare::MAX_KEPT >= 4 * HIGH_WATER);
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
    /// Boxed: only a header block split into CONTINUATION frames waits here, and inline it
    /// cost every connection 48 bytes (8 boxed).
    pub header_block: Option<Box<PendingHeaders>>,
    pub out: Out,
    /// Boxed: an idle connection with one stream holds a map of 4 buckets, and 3 empty ones
    /// of a whole `Stream` each cost more than the box (measured: BENCHMARKS.md).
    pub streams: HashMap<u32, Box<Stream<H>>>,
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

    pub(crate) fn new_stream_windows(&self) -> (SendWindow, RecvWindow) {
        (
            SendWindow::new(self.peer_initial_window),
            RecvWindow::new(DEFAULT_WINDOW),
        )
    }
}

#[cfg(test)]
mod tests;

//! One HTTP/2 stream's state inside the connection task: its two directions as explicit
//! types, and what it serves.

use std::sync::Arc;

use bytes::Bytes;

use crate::Handler;
use crate::bridge::Bridged;
use crate::flow::{RecvWindow, SendWindow};
use crate::wake::StreamWaker;

pub(crate) struct Stream<H: Handler> {
    pub send: SendWindow,
    pub inbound: Inbound,
    pub waker: Arc<StreamWaker>,
    /// Part of a message that flow control held back.
    pub pending: Bytes,
    pub state: State<H>,
    /// In the connection's ready queue: a stream is queued once, however often it is woken.
    pub scheduled: bool,
    /// In the list of streams waiting for the connection's send window (once, likewise).
    pub blocked: bool,
}

/// The peer's side of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// DATA may still arrive: under this window, and (with a `content-length`) exactly this
    /// many more bytes (RFC 9113 section 8.1.1).
    Open {
        window: RecvWindow,
        expected: Option<u64>,
    },
    /// The peer ended its side (END_STREAM).
    Closed,
}

impl Inbound {
    pub fn is_closed(&self) -> bool {
        matches!(self, Inbound::Closed)
    }
}

/// A DATA frame's bytes or the end of the request do not match its `content-length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LengthMismatch;

/// What the request's `content-length` leaves after `n` more bytes, and whether the end of
/// the request (`end`) is allowed there.
pub(crate) fn expect_bytes(
    expected: Option<u64>,
    n: usize,
    end: bool,
) -> Result<Option<u64>, LengthMismatch> {
    let Some(left) = expected else {
        return Ok(None);
    };
    let left = left.checked_sub(n as u64).ok_or(LengthMismatch)?;
    if end && left != 0 {
        return Err(LengthMismatch);
    }
    Ok(Some(left))
}

pub(crate) enum State<H: Handler> {
    /// A local stream's request whose message is still arriving. Boxed: every variant is
    /// then one pointer, and the state of an open subscription (`Local`) 16 bytes, not 56.
    LocalRequest(Box<LocalRequest>),
    /// An open local stream, polled when its waker fires.
    Local(Box<H::Stream>),
    /// A local stream's request refused with this status, answered when the stream is next
    /// served: frames already read for it are handled first, as a server that answers from
    /// another task would.
    Refused(Box<tonic::Status>),
    /// Our response is complete; the peer's request is not. Without RST_STREAM(NO_ERROR)
    /// (a MAY, RFC 9113 section 8.1) the stream stays half-closed (local) and counts
    /// against SETTINGS_MAX_CONCURRENT_STREAMS until the peer ends or resets it; its DATA
    /// is dropped.
    Answered,
    Bridge(Box<Bridged>),
}

/// The path and the message so far of a local stream's request.
pub(crate) struct LocalRequest {
    pub path: String,
    pub body: Vec<u8>,
}

impl<H: Handler> State<H> {
    /// Whether its response began (headers sent): a reset before that is premature.
    pub fn answered(&self) -> bool {
        match self {
            State::LocalRequest(_) | State::Refused(_) => false,
            State::Local(_) | State::Answered => true,
            State::Bridge(bridged) => bridged.head_sent,
        }
    }
}

/// The ids of the streams that closed last, so that a frame on one of them is told apart
/// from one on a stream the peer skipped (STREAM_CLOSED vs PROTOCOL_ERROR, RFC 9113
/// section 5.1). Fixed size: older ids count as skipped. Allocated at the first close, so
/// that a connection whose streams stay open (an idle subscriber's) does not carry it.
#[derive(Debug, Default)]
pub(crate) struct RecentlyClosed {
    ids: Option<Box<[u32; 32]>>,
    next: u8,
}

impl RecentlyClosed {
    pub fn insert(&mut self, id: u32) {
        let ids = self.ids.get_or_insert_with(|| Box::new([0; 32]));
        ids[usize::from(self.next)] = id;
        self.next = (self.next + 1) % 32;
    }

    pub fn contains(&self, id: u32) -> bool {
        id != 0 && self.ids.as_ref().is_some_and(|ids| ids.contains(&id))
    }
}

#[cfg(test)]
mod tests;

//! One HTTP/2 stream's state inside the connection task.

use std::sync::Arc;

use bytes::Bytes;

use crate::Handler;
use crate::bridge::Bridged;
use crate::flow::{RecvWindow, SendWindow};
use crate::wake::StreamWaker;

pub(super) struct Stream<H: Handler> {
    pub send: SendWindow,
    pub recv: RecvWindow,
    /// The peer ended its side (END_STREAM).
    pub remote_closed: bool,
    pub waker: Arc<StreamWaker>,
    /// Part of a message that flow control held back.
    pub pending: Bytes,
    pub state: State<H>,
}

pub(super) enum State<H: Handler> {
    /// A local stream's request whose message is still arriving.
    LocalRequest {
        path: String,
        body: Vec<u8>,
    },
    /// An open local stream, polled when its waker fires.
    Local(Box<H::Stream>),
    Bridge(Box<Bridged>),
}

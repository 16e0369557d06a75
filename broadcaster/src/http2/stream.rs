//! One HTTP/2 stream's state inside the connection task.

use std::sync::Arc;

use bytes::Bytes;

use super::bridge::Bridged;
use super::flow::{RecvWindow, SendWindow};
use super::wake::StreamWaker;
use crate::grpc::SubscriberStream;

pub(super) struct Stream {
    pub send: SendWindow,
    pub recv: RecvWindow,
    /// The peer ended its side (END_STREAM).
    pub remote_closed: bool,
    pub waker: Arc<StreamWaker>,
    /// Part of a message that flow control held back.
    pub pending: Bytes,
    pub state: State,
}

pub(super) enum State {
    /// A Subscribe request whose message is still arriving.
    SubscribeRequest {
        body: Vec<u8>,
    },
    /// An open subscription, polled when its waker fires.
    Subscribe(Box<SubscriberStream>),
    Bridge(Box<Bridged>),
}

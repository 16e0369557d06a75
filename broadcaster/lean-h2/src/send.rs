//! Serving ready streams into the connection's one write buffer: updates and bridged
//! responses framed as DATA (split at the peer's SETTINGS_MAX_FRAME_SIZE) under the
//! connection and stream send windows; headers and trailers. A stream without window is
//! simply not drained: its hub queue fills and the hub counts it as lagged.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures::task::waker_ref;
use http::HeaderMap;
use tonic::Status;

use crate::bridge::{BridgeEvent, Bridged};
use crate::conn::{Conn, Out};
use crate::flow::SendWindow;
use crate::frame::{self, Reason};
use crate::stream::{State, Stream};
use crate::{Handler, Message};

/// What serving a stream came to.
enum Outcome {
    /// Nothing more now: it waits for its waker or its own window.
    Idle,
    /// It waits for the connection's window.
    BlockedOnConn,
    /// The write buffer is full: serve it again after a write.
    Full,
    /// Its response ended (trailers or RST_STREAM are in the buffer).
    Ended,
}

impl<H: Handler> Conn<H> {
    /// Serves the ready streams. Returns whether some are left for after a write.
    pub(crate) fn serve_ready(&mut self) -> bool {
        while let Some(id) = self.ready.pop_front() {
            if self.out.full() {
                self.ready.push_front(id);
                return true;
            }
            let Some(stream) = self.streams.get_mut(&id) else {
                continue;
            };
            stream.waker.clear();
            stream.scheduled = false;
            match serve_stream(id, stream, &mut self.out) {
                Outcome::Idle => {}
                Outcome::BlockedOnConn => {
                    if !std::mem::replace(&mut stream.blocked, true) {
                        self.blocked_on_conn.push(id);
                    }
                }
                Outcome::Full => {
                    stream.scheduled = true;
                    self.ready.push_front(id);
                    return true;
                }
                Outcome::Ended => self.remove_stream(id),
            }
        }
        false
    }
}

fn serve_stream<H: Handler>(id: u32, stream: &mut Stream<H>, out: &mut Out) -> Outcome {
    let Stream {
        send,
        pending,
        waker,
        state,
        inbound,
        ..
    } = stream;
    let remote_closed = inbound.is_closed();
    // Headers are not flow-controlled: a refusal goes out whatever the windows.
    if let State::Refused(status) = state {
        respond_status(out, id, status, false, true);
        if remote_closed {
            return Outcome::Ended;
        }
        *state = State::Answered;
        return Outcome::Idle;
    }
    let waker = waker_ref(waker);
    let mut cx = Context::from_waker(&waker);
    // This stream's DATA frame that ends the buffer, which its next message may join.
    let mut open = None;
    loop {
        if !send_pending(id, send, pending, out) {
            return blocked(out);
        }
        if out.full() {
            return Outcome::Full;
        }
        if send.available() == 0 {
            return Outcome::Idle;
        }
        if out.window.available() == 0 {
            return Outcome::BlockedOnConn;
        }
        let step = match state {
            State::LocalRequest(_) | State::Refused(_) | State::Answered => {
                return Outcome::Idle;
            }
            State::Local(messages) => {
                next_message(id, messages, send, pending, out, &mut open, &mut cx)
            }
            State::Bridge(bridged) => next_bridge_event(id, bridged, send, pending, out, &mut cx),
        };
        match step {
            Step::Continue => {}
            Step::Pending => return Outcome::Idle,
            Step::End(status) => {
                if let Some(status) = status {
                    respond_status(out, id, &status, true, remote_closed);
                } else {
                    finish(out, id, remote_closed);
                }
                return Outcome::Ended;
            }
            Step::Reset => {
                frame::put_rst_stream(&mut out.buf, id, Reason::InternalError);
                return Outcome::Ended;
            }
        }
    }
}

/// One step of a stream's response.
enum Step {
    Continue,
    Pending,
    /// The response ended: with these trailers to send (`None`: already sent).
    End(Option<Status>),
    Reset,
}

fn next_message<S, M>(
    id: u32,
    messages: &mut S,
    send: &mut SendWindow,
    pending: &mut Bytes,
    out: &mut Out,
    open: &mut Option<usize>,
    cx: &mut Context<'_>,
) -> Step
where
    S: futures::Stream<Item = Result<M, Status>> + Unpin,
    M: Message,
{
    match Pin::new(messages).poll_next(cx) {
        Poll::Pending => Step::Pending,
        Poll::Ready(Some(Ok(message))) => {
            write_message(id, &message, send, pending, out, open);
            Step::Continue
        }
        Poll::Ready(Some(Err(status))) => Step::End(Some(status)),
        Poll::Ready(None) => Step::End(Some(Status::ok(""))),
    }
}

fn next_bridge_event(
    id: u32,
    bridged: &mut Bridged,
    send: &mut SendWindow,
    pending: &mut Bytes,
    out: &mut Out,
    cx: &mut Context<'_>,
) -> Step {
    match bridged.poll_event(cx) {
        Poll::Pending => Step::Pending,
        Poll::Ready(Some(BridgeEvent::Head(parts))) => {
            let block = out.hpack.response(parts.status.as_u16(), &parts.headers);
            // gRPC's trailers-only response (a status in the headers) ends the stream.
            let trailers_only = parts.headers.contains_key("grpc-status");
            frame::put_headers(&mut out.buf, id, &block, out.max_frame, trailers_only);
            bridged.head_sent = true;
            out.answered += 1;
            if trailers_only {
                Step::End(None)
            } else {
                Step::Continue
            }
        }
        Poll::Ready(Some(BridgeEvent::Data(data))) => {
            write_bytes(id, data, send, pending, out);
            Step::Continue
        }
        Poll::Ready(Some(BridgeEvent::Trailers(trailers))) => {
            put_trailers(out, id, &trailers);
            Step::End(None)
        }
        Poll::Ready(Some(BridgeEvent::Failed)) => Step::Reset,
        Poll::Ready(None) if bridged.head_sent => {
            frame::put_data(&mut out.buf, id, &[], out.max_frame, true);
            out.data_frames += 1;
            Step::End(None)
        }
        Poll::Ready(None) => Step::Reset,
    }
}

fn blocked(out: &Out) -> Outcome {
    if out.window.available() == 0 {
        Outcome::BlockedOnConn
    } else {
        Outcome::Idle
    }
}

/// Frames the message straight from its parts (into the stream's open frame when it fits)
/// when the windows allow all of it; otherwise joins it and sends what they allow.
fn write_message(
    id: u32,
    message: &impl Message,
    send: &mut SendWindow,
    pending: &mut Bytes,
    out: &mut Out,
    open: &mut Option<usize>,
) {
    let len = message.len();
    if len <= send.available() && len <= out.window.available() {
        frame::append_data(&mut out.buf, open, id, &message.parts(), out.max_frame);
        out.data_frames += 1;
        send.consume(len);
        out.window.consume(len);
        return;
    }
    *open = None;
    *pending = to_bytes(message);
    send_pending(id, send, pending, out);
}

/// The message as one buffer, for when flow control lets only part of it go now.
fn to_bytes(message: &impl Message) -> Bytes {
    let mut out = Vec::with_capacity(message.len());
    for part in message.parts() {
        out.extend_from_slice(part);
    }
    Bytes::from(out)
}

fn write_bytes(id: u32, data: Bytes, send: &mut SendWindow, pending: &mut Bytes, out: &mut Out) {
    *pending = data;
    send_pending(id, send, pending, out);
}

/// Sends what the windows allow of `pending`. Returns whether nothing is left.
fn send_pending(id: u32, send: &mut SendWindow, pending: &mut Bytes, out: &mut Out) -> bool {
    if pending.is_empty() {
        return true;
    }
    let n = pending
        .len()
        .min(send.available())
        .min(out.window.available());
    if n > 0 {
        frame::put_data(&mut out.buf, id, &[&pending[..n]], out.max_frame, false);
        out.data_frames += 1;
        send.consume(n);
        out.window.consume(n);
        pending.advance(n);
    }
    if pending.is_empty() {
        *pending = Bytes::new();
        return true;
    }
    false
}

/// `:status 200`, `content-type: application/grpc`: a gRPC response's headers.
pub(crate) fn respond_grpc_head(out: &mut Out, id: u32) {
    let block = out.hpack.response(200, &grpc_content_type());
    frame::put_headers(&mut out.buf, id, &block, out.max_frame, false);
    out.answered += 1;
}

fn grpc_content_type() -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    map
}

/// Ends a gRPC response with `status`: as trailers after the headers, or (`head_sent` false)
/// as a trailers-only response, exactly as tonic sends them.
pub(crate) fn respond_status(
    out: &mut Out,
    id: u32,
    status: &Status,
    head_sent: bool,
    remote_closed: bool,
) {
    let mut fields = if head_sent {
        HeaderMap::new()
    } else {
        grpc_content_type()
    };
    if status.add_header(&mut fields).is_err() {
        fields.insert("grpc-status", http::HeaderValue::from_static("13"));
    }
    if !head_sent {
        out.answered += 1;
    }
    let block = if head_sent {
        out.hpack.fields(&fields)
    } else {
        out.hpack.response(200, &fields)
    };
    frame::put_headers(&mut out.buf, id, &block, out.max_frame, true);
    finish(out, id, remote_closed);
}

/// An HTTP error response (no gRPC): the header list was too large.
pub(crate) fn respond_http_status(out: &mut Out, id: u32, status: u16, remote_closed: bool) {
    out.answered += 1;
    let block = out.hpack.response(status, &HeaderMap::new());
    frame::put_headers(&mut out.buf, id, &block, out.max_frame, true);
    finish(out, id, remote_closed);
}

fn put_trailers(out: &mut Out, id: u32, trailers: &HeaderMap) {
    let block = out.hpack.fields(trailers);
    frame::put_headers(&mut out.buf, id, &block, out.max_frame, true);
}

/// After our END_STREAM: a request still open is told to stop (RFC 9113 section 8.1).
fn finish(out: &mut Out, id: u32, remote_closed: bool) {
    if !remote_closed {
        frame::put_rst_stream(&mut out.buf, id, Reason::NoError);
    }
}

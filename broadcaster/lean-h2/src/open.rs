//! Header blocks (HEADERS and CONTINUATION, bounded in bytes and frames), DATA, and opening
//! streams: a local stream's request gathered until its message is complete, anything else
//! bridged.

use bytes::Bytes;

use crate::conn::{Conn, MAX_CONCURRENT_STREAMS, MAX_HEADER_LIST_SIZE, PendingHeaders};
use crate::frame::{self, DEFAULT_MAX_FRAME_SIZE, FrameHeader, Reason, flag};
use crate::grpc::{self, RequestProgress};
use crate::guard::Rated;
use crate::headers::{self, HeadError, RequestHead};
use crate::limits::{self, Exceeded};
use crate::recv::{ConnError, conn_err};
use crate::stream::{Inbound, LengthMismatch, LocalRequest, State, Stream, expect_bytes};
use crate::wake::StreamWaker;
use crate::{Handler, bridge, send, unhuff};

/// A header block (HEADERS plus CONTINUATIONs) larger than this closes the connection; the
/// header list limit is checked after decoding, this bounds what is buffered before.
pub(crate) const MAX_HEADER_BLOCK: usize = 2 * MAX_HEADER_LIST_SIZE;
/// A decoded header list this much over our limit is an HPACK bomb, not a big request:
/// it closes the connection rather than getting a 431.
const HEADER_LIST_BOMB: usize = 4 * MAX_HEADER_LIST_SIZE;

impl<H: Handler> Conn<H> {
    pub(crate) fn on_data(&mut self, h: FrameHeader, payload: &[u8]) -> Result<(), ConnError> {
        self.check_not_idle(h.stream_id, "DATA")?;
        let end_stream = h.has(flag::END_STREAM);
        if payload.is_empty() && !end_stream {
            self.rated(Rated::Empty)?;
        }
        if self.recv_window.receive(payload.len()).is_err() {
            return conn_err(
                Reason::FlowControlError,
                "DATA beyond the connection window",
            );
        }
        let Some(data) = frame::unpad(&h, payload) else {
            return conn_err(Reason::ProtocolError, "DATA padding longer than the frame");
        };
        let id = h.stream_id;
        let Some(stream) = self.streams.get_mut(&id) else {
            // A stream that already ended: its bytes still count against the connection.
            self.release(id, payload.len());
            frame::put_rst_stream(&mut self.out.buf, id, Reason::StreamClosed);
            self.count_local_reset();
            return Ok(());
        };
        let Inbound::Open { window, expected } = &mut stream.inbound else {
            self.release(id, payload.len());
            self.stream_error(id, Reason::StreamClosed, "DATA after END_STREAM");
            return Ok(());
        };
        if window.receive(payload.len()).is_err() {
            self.release(id, payload.len());
            self.stream_error(
                id,
                Reason::FlowControlError,
                "DATA beyond the stream window",
            );
            return Ok(());
        }
        match expect_bytes(*expected, data.len(), end_stream) {
            Ok(left) => *expected = left,
            Err(LengthMismatch) => {
                self.release(id, payload.len());
                self.stream_error(id, Reason::ProtocolError, "DATA against content-length");
                return Ok(());
            }
        }
        if end_stream {
            stream.inbound = Inbound::Closed;
        }
        self.take_data(id, data, payload.len(), end_stream);
        Ok(())
    }

    /// Hands a DATA frame's bytes to the stream's request.
    fn take_data(&mut self, id: u32, data: &[u8], frame_len: usize, end_stream: bool) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        match &mut stream.state {
            State::LocalRequest(request) => {
                request.body.extend_from_slice(data);
                self.release(id, frame_len);
                self.advance_local_request(id);
            }
            State::Bridge(bridged) => {
                if data.is_empty() || bridged.body.is_none() {
                    self.release(id, frame_len);
                } else if bridged.feed(data) {
                    // Window for these bytes comes back when the service consumes them.
                    self.release(id, frame_len - data.len());
                } else {
                    self.release(id, frame_len);
                    self.stream_error(
                        id,
                        Reason::EnhanceYourCalm,
                        "request body over its unread budget",
                    );
                    return;
                }
                if end_stream
                    && let Some(State::Bridge(bridged)) =
                        self.streams.get_mut(&id).map(|s| &mut s.state)
                {
                    bridged.body = None;
                }
            }
            State::Local(_) | State::Refused(_) => self.release(id, frame_len),
            State::Answered => {
                self.release(id, frame_len);
                if end_stream {
                    self.remove_stream(id);
                }
            }
        }
    }

    pub(crate) fn on_headers(&mut self, h: FrameHeader, payload: &[u8]) -> Result<(), ConnError> {
        if h.stream_id == 0 {
            return conn_err(Reason::ProtocolError, "HEADERS on stream 0");
        }
        let Some(mut fragment) = frame::unpad(&h, payload) else {
            return conn_err(
                Reason::ProtocolError,
                "HEADERS padding longer than the frame",
            );
        };
        let mut self_dependent = false;
        if h.has(flag::PRIORITY) {
            let Some((priority, rest)) = fragment.split_first_chunk::<5>() else {
                return conn_err(Reason::FrameSizeError, "HEADERS too short for its priority");
            };
            self_dependent = frame::dependency(priority) == h.stream_id;
            fragment = rest;
        }
        if fragment.is_empty() && !h.has(flag::END_HEADERS) {
            self.rated(Rated::Empty)?;
        }
        let pending = PendingHeaders {
            stream_id: h.stream_id,
            end_stream: h.has(flag::END_STREAM),
            block: fragment.to_vec(),
            continuations: 0,
            self_dependent,
        };
        if h.has(flag::END_HEADERS) {
            return self.on_header_block(pending);
        }
        self.header_block = Some(Box::new(pending));
        Ok(())
    }

    pub(crate) fn on_continuation(
        &mut self,
        h: FrameHeader,
        payload: &[u8],
    ) -> Result<(), ConnError> {
        let Some(mut pending) = self.header_block.take() else {
            return conn_err(Reason::ProtocolError, "CONTINUATION without HEADERS");
        };
        if payload.is_empty() && !h.has(flag::END_HEADERS) {
            self.rated(Rated::Empty)?;
        }
        pending.continuations += 1;
        let max = limits::max_continuations(MAX_HEADER_LIST_SIZE, DEFAULT_MAX_FRAME_SIZE as usize);
        if pending.continuations > max {
            return Err(Exceeded::Continuations.into());
        }
        pending.block.extend_from_slice(payload);
        if pending.block.len() > MAX_HEADER_BLOCK {
            return Err(Exceeded::HeaderBlock.into());
        }
        if h.has(flag::END_HEADERS) {
            return self.on_header_block(*pending);
        }
        self.header_block = Some(pending);
        Ok(())
    }

    fn on_header_block(&mut self, block: PendingHeaders) -> Result<(), ConnError> {
        let id = block.stream_id;
        // Decoded whatever follows: the HPACK state must stay in step with the peer's.
        // Huffman strings made raw first: loona builds a decoder per Huffman string.
        let raw = unhuff::raw_strings(&block.block);
        let raw = raw.as_deref().unwrap_or(&block.block);
        let decoded = headers::decode_request(&mut self.hpack, raw, MAX_HEADER_LIST_SIZE);
        match &decoded {
            Err(HeadError::Compression(e)) => {
                return conn_err(Reason::CompressionError, format!("HPACK: {e}"));
            }
            Err(HeadError::TooLarge { size, .. }) if *size > HEADER_LIST_BOMB => {
                return Err(Exceeded::HeaderList.into());
            }
            _ => {}
        }
        if self.streams.contains_key(&id) {
            return self.on_trailers(id, block.end_stream);
        }
        if id.is_multiple_of(2) {
            return conn_err(
                Reason::ProtocolError,
                "a client opened an even-numbered stream",
            );
        }
        if id <= self.last_stream_id {
            if self.recently_closed.contains(id) {
                return conn_err(Reason::StreamClosed, "HEADERS on a closed stream");
            }
            // RFC 9113 section 5.1.1: stream ids only grow.
            return conn_err(Reason::ProtocolError, "HEADERS on a lower stream id");
        }
        self.last_stream_id = id;
        if block.self_dependent {
            self.stream_error(id, Reason::ProtocolError, "stream depends on itself");
            return Ok(());
        }
        if self.life.draining() {
            self.stream_error(id, Reason::RefusedStream, "shutting down");
            return Ok(());
        }
        if self.streams.len() >= MAX_CONCURRENT_STREAMS {
            self.stream_error(
                id,
                Reason::RefusedStream,
                "over SETTINGS_MAX_CONCURRENT_STREAMS",
            );
            return Ok(());
        }
        match decoded {
            Ok(head) => self.open_stream(id, head, block.end_stream),
            Err(HeadError::TooLarge { size, limit }) => {
                tracing::debug!(peer = %self.peer, id, size, limit, "request header list too large");
                send::respond_http_status(&mut self.out, id, 431, block.end_stream);
                self.recently_closed.insert(id);
                self.count_local_reset();
            }
            Err(e) => self.stream_error(id, Reason::ProtocolError, &e.to_string()),
        }
        Ok(())
    }

    /// A second header block on an open stream: request trailers, which must end it.
    fn on_trailers(&mut self, id: u32, end_stream: bool) -> Result<(), ConnError> {
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        let Inbound::Open { expected, .. } = stream.inbound else {
            // RFC 9113 section 5.1, "half-closed (remote)".
            self.stream_error(id, Reason::StreamClosed, "HEADERS after END_STREAM");
            return Ok(());
        };
        if !end_stream {
            self.stream_error(
                id,
                Reason::ProtocolError,
                "a second header block without END_STREAM",
            );
            return Ok(());
        }
        if expect_bytes(expected, 0, true).is_err() {
            self.stream_error(
                id,
                Reason::ProtocolError,
                "request shorter than content-length",
            );
            return Ok(());
        }
        stream.inbound = Inbound::Closed;
        match &mut stream.state {
            State::Bridge(bridged) => bridged.body = None,
            State::LocalRequest(_) => self.advance_local_request(id),
            State::Local(_) | State::Refused(_) => {}
            State::Answered => self.remove_stream(id),
        }
        Ok(())
    }

    fn open_stream(&mut self, id: u32, head: RequestHead, end_stream: bool) {
        let expected = match content_length(&head) {
            Ok(expected) => expected,
            Err(why) => return self.stream_error(id, Reason::ProtocolError, why),
        };
        if expect_bytes(expected, 0, end_stream).is_err() {
            return self.stream_error(id, Reason::ProtocolError, "no body but content-length");
        }
        let (send, window) = self.new_stream_windows();
        let waker = StreamWaker::new(id, self.shared.clone());
        let state = if self.services.handler.is_local(&head.path) {
            match grpc::check_grpc_request(&head) {
                Ok(()) => State::LocalRequest(Box::new(LocalRequest {
                    path: head.path,
                    body: Vec::new(),
                })),
                Err(status) => State::Refused(Box::new(status)),
            }
        } else {
            let handler = &self.services.handler;
            match bridge::start(handler, head, end_stream, id, self.shared.clone()) {
                Ok(bridged) => State::Bridge(Box::new(bridged)),
                Err(e) => {
                    self.stream_error(id, Reason::ProtocolError, &format!("bad request: {e}"));
                    return;
                }
            }
        };
        let is_local = matches!(state, State::LocalRequest(_));
        let inbound = if end_stream {
            Inbound::Closed
        } else {
            Inbound::Open { window, expected }
        };
        let stream = Stream {
            send,
            inbound,
            waker,
            pending: Bytes::new(),
            state,
            scheduled: false,
            blocked: false,
        };
        self.streams.insert(id, Box::new(stream));
        if is_local {
            self.advance_local_request(id);
        } else {
            self.schedule(id);
        }
    }

    /// Opens the local stream once its request message is complete, or answers the error.
    fn advance_local_request(&mut self, id: u32) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        let State::LocalRequest(request) = &stream.state else {
            return;
        };
        let LocalRequest { path, body } = &**request;
        let remote_closed = stream.inbound.is_closed();
        let opened = match grpc::request_progress(body, remote_closed) {
            Ok(RequestProgress::Incomplete) => return,
            Ok(RequestProgress::Message(message)) => {
                self.services.handler.open(path, &message, self.peer)
            }
            Err(status) => Err(status),
        };
        match opened {
            Ok(messages) => {
                stream.state = State::Local(Box::new(messages));
                send::respond_grpc_head(&mut self.out, id);
                self.schedule(id);
            }
            Err(status) => {
                stream.state = State::Refused(Box::new(status));
                self.schedule(id);
            }
        }
    }
}

/// The request's `content-length`, if it has one (RFC 9113 section 8.1.1).
fn content_length(head: &RequestHead) -> Result<Option<u64>, &'static str> {
    let Some(value) = head.headers.get(http::header::CONTENT_LENGTH) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| "content-length is not a number")?;
    value
        .parse()
        .map(Some)
        .map_err(|_| "content-length is not a number")
}

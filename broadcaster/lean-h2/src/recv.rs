//! Frames from the peer (RFC 9113 section 6), each checked as the RFC says; a violation is a
//! connection error (GOAWAY and close) or a stream error (RST_STREAM), never a panic.

use bytes::Bytes;

use crate::conn::{Conn, MAX_CONCURRENT_STREAMS, MAX_HEADER_LIST_SIZE, PendingHeaders, Phase};
use crate::frame::{
    self, DEFAULT_MAX_FRAME_SIZE, FrameHeader, HEADER_LEN, PREFACE, Reason, flag, kind,
};
use crate::grpc::{self, RequestProgress};
use crate::headers::{self, HeadError, RequestHead};
use crate::stream::{State, Stream};
use crate::wake::StreamWaker;
use crate::{Handler, bridge, send};

/// A header block (HEADERS plus CONTINUATIONs) larger than this closes the connection; the
/// header list limit is checked after decoding, this bounds what is buffered before.
const MAX_HEADER_BLOCK: usize = 2 * MAX_HEADER_LIST_SIZE;

/// A connection error: its code and why.
pub(super) struct ConnError(Reason, String);

fn conn_err(reason: Reason, why: impl Into<String>) -> Result<(), ConnError> {
    Err(ConnError(reason, why.into()))
}

impl<H: Handler> Conn<H> {
    /// Handles every complete frame in `buf`; returns how many bytes were used.
    pub(super) fn process(&mut self, buf: &[u8]) -> usize {
        let mut pos = 0;
        if let Phase::Preface(seen) = self.phase {
            let want = PREFACE.len() - seen;
            let n = want.min(buf.len());
            if buf[..n] != PREFACE[seen..seen + n] {
                self.connection_error(Reason::ProtocolError, "invalid connection preface");
                return buf.len();
            }
            pos = n;
            self.phase = if n == want {
                Phase::FirstSettings
            } else {
                Phase::Preface(seen + n)
            };
        }
        while let Some(header) = FrameHeader::parse(&buf[pos..]) {
            if header.len > DEFAULT_MAX_FRAME_SIZE {
                self.connection_error(
                    Reason::FrameSizeError,
                    &format!("{}-byte frame over SETTINGS_MAX_FRAME_SIZE", header.len),
                );
                return buf.len();
            }
            let end = pos + HEADER_LEN + header.len as usize;
            if end > buf.len() {
                break;
            }
            if let Err(ConnError(reason, why)) = self.on_frame(header, &buf[pos + HEADER_LEN..end])
            {
                self.connection_error(reason, &why);
            }
            pos = end;
            if self.closing {
                return buf.len();
            }
        }
        pos
    }

    fn on_frame(&mut self, h: FrameHeader, payload: &[u8]) -> Result<(), ConnError> {
        if self.phase == Phase::FirstSettings {
            if h.kind != kind::SETTINGS || h.has(flag::ACK) {
                return conn_err(Reason::ProtocolError, "the first frame is not SETTINGS");
            }
            self.phase = Phase::Open;
        }
        if let Some(pending) = &self.header_block
            && (h.kind != kind::CONTINUATION || h.stream_id != pending.stream_id)
        {
            return conn_err(Reason::ProtocolError, "a header block was interrupted");
        }
        match h.kind {
            kind::DATA => self.on_data(h, payload),
            kind::HEADERS => self.on_headers(h, payload),
            kind::PRIORITY => self.on_priority(h, payload),
            kind::RST_STREAM => self.on_rst_stream(h, payload),
            kind::SETTINGS => self.on_settings(h, payload),
            kind::PUSH_PROMISE => conn_err(Reason::ProtocolError, "PUSH_PROMISE from a client"),
            kind::PING => self.on_ping(h, payload),
            kind::GOAWAY => self.on_goaway(h, payload),
            kind::WINDOW_UPDATE => self.on_window_update(h, payload),
            kind::CONTINUATION => self.on_continuation(h, payload),
            // Unknown frame types are ignored (RFC 9113 section 4.1).
            _ => Ok(()),
        }
    }

    fn on_settings(&mut self, h: FrameHeader, payload: &[u8]) -> Result<(), ConnError> {
        if h.stream_id != 0 {
            return conn_err(Reason::ProtocolError, "SETTINGS on a stream");
        }
        if h.has(flag::ACK) {
            if !payload.is_empty() {
                return conn_err(Reason::FrameSizeError, "SETTINGS ACK with a payload");
            }
            return Ok(());
        }
        let settings =
            frame::parse_settings(payload).map_err(|e| ConnError(e.reason, e.why.into()))?;
        if let Some(size) = settings.max_frame_size {
            self.out.max_frame = size as usize;
        }
        if settings.header_table_size.is_some() {
            self.out.table_size_update = true;
        }
        if let Some(initial) = settings.initial_window {
            let delta = i64::from(initial) - i64::from(self.peer_initial_window);
            self.peer_initial_window = initial;
            for (id, stream) in &mut self.streams {
                if stream.send.adjust(delta).is_err() {
                    return conn_err(
                        Reason::FlowControlError,
                        "SETTINGS_INITIAL_WINDOW_SIZE overflows a stream window",
                    );
                }
                if delta > 0 {
                    self.ready.push_back(*id);
                }
            }
        }
        frame::put_frame(&mut self.out.buf, kind::SETTINGS, flag::ACK, 0, &[]);
        Ok(())
    }

    fn on_ping(&mut self, h: FrameHeader, payload: &[u8]) -> Result<(), ConnError> {
        if payload.len() != 8 {
            return conn_err(Reason::FrameSizeError, "PING payload is not 8 bytes");
        }
        if h.stream_id != 0 {
            return conn_err(Reason::ProtocolError, "PING on a stream");
        }
        if !h.has(flag::ACK) {
            frame::put_frame(&mut self.out.buf, kind::PING, flag::ACK, 0, payload);
        }
        Ok(())
    }

    fn on_goaway(&mut self, h: FrameHeader, payload: &[u8]) -> Result<(), ConnError> {
        if h.stream_id != 0 {
            return conn_err(Reason::ProtocolError, "GOAWAY on a stream");
        }
        let Some(code) = payload.get(4..8) else {
            return conn_err(Reason::FrameSizeError, "GOAWAY shorter than 8 bytes");
        };
        let code = u32::from_be_bytes([code[0], code[1], code[2], code[3]]);
        tracing::debug!(peer = %self.peer, code, "HTTP/2 GOAWAY from the peer");
        if code != Reason::NoError as u32 {
            // The peer is gone with an error: nothing it started will be read.
            self.streams.clear();
        }
        self.peer_going_away = true;
        Ok(())
    }

    fn on_priority(&mut self, h: FrameHeader, payload: &[u8]) -> Result<(), ConnError> {
        if h.stream_id == 0 {
            return conn_err(Reason::ProtocolError, "PRIORITY on stream 0");
        }
        if payload.len() != 5 {
            self.stream_error(
                h.stream_id,
                Reason::FrameSizeError,
                "PRIORITY is not 5 bytes",
            );
        }
        // Priorities are deprecated (RFC 9113 section 5.3.2) and ignored.
        Ok(())
    }

    fn on_rst_stream(&mut self, h: FrameHeader, payload: &[u8]) -> Result<(), ConnError> {
        if payload.len() != 4 {
            return conn_err(Reason::FrameSizeError, "RST_STREAM is not 4 bytes");
        }
        self.check_not_idle(h.stream_id, "RST_STREAM")?;
        // Dropping the stream ends its subscription or aborts its bridged request.
        self.remove_stream(h.stream_id);
        Ok(())
    }

    fn on_window_update(&mut self, h: FrameHeader, payload: &[u8]) -> Result<(), ConnError> {
        let Ok(bytes) = <[u8; 4]>::try_from(payload) else {
            return conn_err(Reason::FrameSizeError, "WINDOW_UPDATE is not 4 bytes");
        };
        let increment = u32::from_be_bytes(bytes) & frame::MAX_WINDOW;
        if h.stream_id == 0 {
            return match self.out.window.increase(increment) {
                Ok(()) => {
                    self.ready.extend(self.blocked_on_conn.drain(..));
                    Ok(())
                }
                Err(crate::flow::FlowError::ZeroIncrement) => {
                    conn_err(Reason::ProtocolError, "WINDOW_UPDATE with a 0 increment")
                }
                Err(e) => conn_err(Reason::FlowControlError, e.to_string()),
            };
        }
        self.check_not_idle(h.stream_id, "WINDOW_UPDATE")?;
        let Some(stream) = self.streams.get_mut(&h.stream_id) else {
            return Ok(());
        };
        match stream.send.increase(increment) {
            Ok(()) => self.ready.push_back(h.stream_id),
            Err(crate::flow::FlowError::ZeroIncrement) => self.stream_error(
                h.stream_id,
                Reason::ProtocolError,
                "WINDOW_UPDATE with a 0 increment",
            ),
            Err(e) => self.stream_error(h.stream_id, Reason::FlowControlError, &e.to_string()),
        }
        Ok(())
    }

    /// Frames other than HEADERS and PRIORITY on a stream the peer never opened are a
    /// PROTOCOL_ERROR (RFC 9113 section 5.1, "idle").
    fn check_not_idle(&self, stream_id: u32, what: &str) -> Result<(), ConnError> {
        if stream_id == 0 {
            return conn_err(Reason::ProtocolError, format!("{what} on stream 0"));
        }
        if stream_id > self.last_stream_id {
            return conn_err(Reason::ProtocolError, format!("{what} on an idle stream"));
        }
        Ok(())
    }

    fn on_data(&mut self, h: FrameHeader, payload: &[u8]) -> Result<(), ConnError> {
        self.check_not_idle(h.stream_id, "DATA")?;
        if self.recv_window.receive(payload.len()).is_err() {
            return conn_err(
                Reason::FlowControlError,
                "DATA beyond the connection window",
            );
        }
        let Some(data) = frame::unpad(&h, payload) else {
            return conn_err(Reason::ProtocolError, "DATA padding longer than the frame");
        };
        let padding = payload.len() - data.len();
        let id = h.stream_id;
        let Some(stream) = self.streams.get_mut(&id) else {
            // A stream that already ended: its bytes still count against the connection.
            self.release(id, payload.len());
            frame::put_rst_stream(&mut self.out.buf, id, Reason::StreamClosed);
            return Ok(());
        };
        if stream.remote_closed {
            self.release(id, payload.len());
            self.stream_error(id, Reason::StreamClosed, "DATA after END_STREAM");
            return Ok(());
        }
        if stream.recv.receive(payload.len()).is_err() {
            self.release(id, payload.len());
            self.stream_error(
                id,
                Reason::FlowControlError,
                "DATA beyond the stream window",
            );
            return Ok(());
        }
        let end_stream = h.has(flag::END_STREAM);
        stream.remote_closed |= end_stream;
        match &mut stream.state {
            State::LocalRequest { body, .. } => {
                body.extend_from_slice(data);
                self.release(id, payload.len());
                self.advance_local_request(id);
            }
            State::Bridge(bridged) => {
                if !data.is_empty()
                    && let Some(tx) = &bridged.body
                {
                    // Window for these bytes comes back when the service consumes them.
                    let _ = tx.send(Bytes::copy_from_slice(data));
                    bridged.unconsumed += data.len();
                    self.release(id, padding);
                } else {
                    self.release(id, payload.len());
                }
                if end_stream
                    && let Some(State::Bridge(bridged)) =
                        self.streams.get_mut(&id).map(|s| &mut s.state)
                {
                    bridged.body = None;
                }
            }
            State::Local(_) => self.release(id, payload.len()),
        }
        Ok(())
    }

    fn on_headers(&mut self, h: FrameHeader, payload: &[u8]) -> Result<(), ConnError> {
        if h.stream_id == 0 {
            return conn_err(Reason::ProtocolError, "HEADERS on stream 0");
        }
        let Some(mut fragment) = frame::unpad(&h, payload) else {
            return conn_err(
                Reason::ProtocolError,
                "HEADERS padding longer than the frame",
            );
        };
        if h.has(flag::PRIORITY) {
            let Some((priority, rest)) = fragment.split_at_checked(5) else {
                return conn_err(Reason::FrameSizeError, "HEADERS too short for its priority");
            };
            let dependency =
                u32::from_be_bytes([priority[0], priority[1], priority[2], priority[3]])
                    & frame::MAX_WINDOW;
            if dependency == h.stream_id {
                // Read the block anyway: the HPACK state must stay in step.
                let _ = self.hpack.decode_with_cb(rest, |_, _| {});
                self.stream_error(
                    h.stream_id,
                    Reason::ProtocolError,
                    "stream depends on itself",
                );
                return Ok(());
            }
            fragment = rest;
        }
        let pending = PendingHeaders {
            stream_id: h.stream_id,
            end_stream: h.has(flag::END_STREAM),
            block: fragment.to_vec(),
        };
        if h.has(flag::END_HEADERS) {
            return self.on_header_block(pending);
        }
        self.header_block = Some(pending);
        Ok(())
    }

    fn on_continuation(&mut self, h: FrameHeader, payload: &[u8]) -> Result<(), ConnError> {
        let Some(mut pending) = self.header_block.take() else {
            return conn_err(Reason::ProtocolError, "CONTINUATION without HEADERS");
        };
        pending.block.extend_from_slice(payload);
        if pending.block.len() > MAX_HEADER_BLOCK {
            return conn_err(Reason::EnhanceYourCalm, "header block too large");
        }
        if h.has(flag::END_HEADERS) {
            return self.on_header_block(pending);
        }
        self.header_block = Some(pending);
        Ok(())
    }

    fn on_header_block(&mut self, block: PendingHeaders) -> Result<(), ConnError> {
        let id = block.stream_id;
        let decoded = headers::decode_request(&mut self.hpack, &block.block, MAX_HEADER_LIST_SIZE);
        if let Err(HeadError::Compression(e)) = &decoded {
            return conn_err(Reason::CompressionError, format!("HPACK: {e}"));
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
            return conn_err(Reason::StreamClosed, "HEADERS on a closed stream");
        }
        self.last_stream_id = id;
        if self.grace.is_some() || self.peer_going_away {
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
        if !end_stream || stream.remote_closed {
            self.stream_error(
                id,
                Reason::ProtocolError,
                "a second header block without END_STREAM",
            );
            return Ok(());
        }
        stream.remote_closed = true;
        match &mut stream.state {
            State::Bridge(bridged) => bridged.body = None,
            State::LocalRequest { .. } => self.advance_local_request(id),
            State::Local(_) => {}
        }
        Ok(())
    }

    fn open_stream(&mut self, id: u32, head: RequestHead, end_stream: bool) {
        let (send, recv) = self.new_stream_windows();
        let waker = StreamWaker::new(id, self.shared.clone());
        let state = if self.services.handler.is_local(&head.path) {
            if let Err(status) = grpc::check_grpc_request(&head) {
                send::respond_status(&mut self.out, id, &status, false, end_stream);
                return;
            }
            State::LocalRequest {
                path: head.path,
                body: Vec::new(),
            }
        } else {
            match bridge::start(
                &self.services.handler,
                head,
                end_stream,
                id,
                self.shared.clone(),
            ) {
                Ok(bridged) => State::Bridge(Box::new(bridged)),
                Err(e) => {
                    self.stream_error(id, Reason::ProtocolError, &format!("bad request: {e}"));
                    return;
                }
            }
        };
        let is_local = matches!(state, State::LocalRequest { .. });
        self.streams.insert(
            id,
            Stream {
                send,
                recv,
                remote_closed: end_stream,
                waker,
                pending: Bytes::new(),
                state,
            },
        );
        if is_local {
            self.advance_local_request(id);
        } else {
            self.ready.push_back(id);
        }
    }

    /// Opens the local stream once its request message is complete, or answers the error.
    fn advance_local_request(&mut self, id: u32) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        let State::LocalRequest { path, body } = &stream.state else {
            return;
        };
        let opened = match grpc::request_progress(body, stream.remote_closed) {
            Ok(RequestProgress::Incomplete) => return,
            Ok(RequestProgress::Message(message)) => {
                self.services.handler.open(path, &message, self.peer)
            }
            Err(status) => Err(status),
        };
        match opened {
            Ok(updates) => {
                stream.state = State::Local(Box::new(updates));
                send::respond_grpc_head(&mut self.out, id);
                self.ready.push_back(id);
            }
            Err(status) => {
                let remote_closed = stream.remote_closed;
                self.remove_stream(id);
                send::respond_status(&mut self.out, id, &status, false, remote_closed);
            }
        }
    }
}

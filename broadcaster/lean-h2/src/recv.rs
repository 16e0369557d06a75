//! Frames from the peer (RFC 9113 section 6), each checked as the RFC says and against the
//! connection's limits; a violation is a connection error (GOAWAY and close) or a stream
//! error (RST_STREAM), never a panic. Header blocks, DATA and opening streams: `open`.

use crate::Handler;
use crate::conn::{Conn, Life};
use crate::frame::{self, DEFAULT_MAX_FRAME_SIZE, FrameHeader, HEADER_LEN, PREFACE, Reason};
use crate::frame::{flag, kind};
use crate::guard::Rated;
use crate::limits::Exceeded;

/// Why a frame closes the connection.
pub(crate) enum ConnError {
    /// A protocol error: its code and why.
    Protocol(Reason, String),
    /// A limit: GOAWAY ENHANCE_YOUR_CALM, counted.
    Limit(Exceeded),
}

impl From<Exceeded> for ConnError {
    fn from(exceeded: Exceeded) -> Self {
        ConnError::Limit(exceeded)
    }
}

pub(crate) fn conn_err(reason: Reason, why: impl Into<String>) -> Result<(), ConnError> {
    Err(ConnError::Protocol(reason, why.into()))
}

impl<H: Handler> Conn<H> {
    /// Handles the complete frames in `buf` until the connection closes or the write buffer
    /// fills; returns how many bytes were used (the rest waits for the next round).
    pub(crate) fn process(&mut self, buf: &[u8]) -> usize {
        let mut pos = match self.take_preface(buf) {
            Some(pos) => pos,
            None => return buf.len(),
        };
        while let Some(header) = FrameHeader::parse(&buf[pos..]) {
            if self.out.full() {
                break;
            }
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
            match self.on_frame(header, &buf[pos + HEADER_LEN..end]) {
                Ok(()) => {}
                Err(ConnError::Protocol(reason, why)) => self.connection_error(reason, &why),
                Err(ConnError::Limit(exceeded)) => self.limit_exceeded(exceeded),
            }
            pos = end;
            if !self.life.running() {
                return buf.len();
            }
        }
        pos
    }

    /// Consumes the client preface while it is due; `None` when it is wrong (the connection
    /// closes), else where the frames start.
    fn take_preface(&mut self, buf: &[u8]) -> Option<usize> {
        let Life::Handshake { preface_seen, .. } = &mut self.life else {
            return Some(0);
        };
        let seen = *preface_seen;
        let n = (PREFACE.len() - seen).min(buf.len());
        if buf[..n] != PREFACE[seen..seen + n] {
            self.connection_error(Reason::ProtocolError, "invalid connection preface");
            return None;
        }
        *preface_seen += n;
        Some(n)
    }

    fn on_frame(&mut self, h: FrameHeader, payload: &[u8]) -> Result<(), ConnError> {
        if let Life::Handshake { preface_seen, .. } = self.life {
            if preface_seen < PREFACE.len() {
                return Ok(());
            }
            if h.kind != kind::SETTINGS || h.has(flag::ACK) {
                return conn_err(Reason::ProtocolError, "the first frame is not SETTINGS");
            }
            self.life = Life::Open;
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
            // Unknown frame types are ignored (RFC 9113 section 4.1), but still cost a
            // frame's work: they count as empty frames.
            _ => Ok(self.rated(Rated::Empty)?),
        }
    }

    fn on_settings(&mut self, h: FrameHeader, payload: &[u8]) -> Result<(), ConnError> {
        if h.stream_id != 0 {
            return conn_err(Reason::ProtocolError, "SETTINGS on a stream");
        }
        self.rated(Rated::Settings)?;
        if h.has(flag::ACK) {
            if !payload.is_empty() {
                return conn_err(Reason::FrameSizeError, "SETTINGS ACK with a payload");
            }
            return Ok(());
        }
        let settings = frame::parse_settings(payload)
            .map_err(|e| ConnError::Protocol(e.reason, e.why.into()))?;
        if let Some(size) = settings.max_frame_size {
            self.out.max_frame = size as usize;
        }
        if let Some(size) = settings.header_table_size {
            self.out.hpack.set_peer_table_size(size);
        }
        if let Some(initial) = settings.initial_window {
            self.apply_initial_window(initial)?;
        }
        frame::put_frame(&mut self.out.buf, kind::SETTINGS, flag::ACK, 0, &[]);
        Ok(())
    }

    /// A new SETTINGS_INITIAL_WINDOW_SIZE changes every open stream's send window (RFC
    /// 9113 section 6.9.2); streams it opened are served again (each queued once).
    fn apply_initial_window(&mut self, initial: u32) -> Result<(), ConnError> {
        let delta = i64::from(initial) - i64::from(self.peer_initial_window);
        self.peer_initial_window = initial;
        let mut opened = Vec::new();
        for (id, stream) in &mut self.streams {
            if stream.send.adjust(delta).is_err() {
                return conn_err(
                    Reason::FlowControlError,
                    "SETTINGS_INITIAL_WINDOW_SIZE overflows a stream window",
                );
            }
            if delta > 0 && !stream.scheduled {
                opened.push(*id);
            }
        }
        for id in opened {
            self.schedule(id);
        }
        Ok(())
    }

    fn on_ping(&mut self, h: FrameHeader, payload: &[u8]) -> Result<(), ConnError> {
        if payload.len() != 8 {
            return conn_err(Reason::FrameSizeError, "PING payload is not 8 bytes");
        }
        if h.stream_id != 0 {
            return conn_err(Reason::ProtocolError, "PING on a stream");
        }
        self.rated(Rated::Ping)?;
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
            // The peer is gone with an error: nothing it started will be read. Our own
            // GOAWAY says which streams we processed, then the connection closes.
            frame::put_goaway(&mut self.out.buf, self.last_stream_id, Reason::NoError, "");
            self.streams.clear();
            self.life = Life::Closing;
            return Ok(());
        }
        if !self.life.draining() {
            self.life = Life::Draining {
                goaway_sent: false,
                deadline: None,
            };
        }
        Ok(())
    }

    fn on_priority(&mut self, h: FrameHeader, payload: &[u8]) -> Result<(), ConnError> {
        if h.stream_id == 0 {
            return conn_err(Reason::ProtocolError, "PRIORITY on stream 0");
        }
        self.rated(Rated::Priority)?;
        let Ok(priority) = <[u8; 5]>::try_from(payload) else {
            self.stream_error(
                h.stream_id,
                Reason::FrameSizeError,
                "PRIORITY is not 5 bytes",
            );
            return Ok(());
        };
        if frame::dependency(&priority) == h.stream_id {
            // RFC 9113 section 5.3.1: a stream cannot depend on itself.
            self.stream_error(
                h.stream_id,
                Reason::ProtocolError,
                "stream depends on itself",
            );
        }
        // Otherwise ignored: priorities are deprecated (RFC 9113 section 5.3.2).
        Ok(())
    }

    fn on_rst_stream(&mut self, h: FrameHeader, payload: &[u8]) -> Result<(), ConnError> {
        if payload.len() != 4 {
            return conn_err(Reason::FrameSizeError, "RST_STREAM is not 4 bytes");
        }
        self.check_not_idle(h.stream_id, "RST_STREAM")?;
        self.rated(Rated::Reset)?;
        if let Some(stream) = self.streams.get(&h.stream_id)
            && !stream.state.answered()
        {
            self.guard.premature_reset(&self.services.options.limits)?;
        }
        // Dropping the stream ends its subscription or aborts its bridged request.
        self.remove_stream(h.stream_id);
        Ok(())
    }

    fn on_window_update(&mut self, h: FrameHeader, payload: &[u8]) -> Result<(), ConnError> {
        let Ok(bytes) = <[u8; 4]>::try_from(payload) else {
            return conn_err(Reason::FrameSizeError, "WINDOW_UPDATE is not 4 bytes");
        };
        self.rated(Rated::WindowUpdate)?;
        let increment = u32::from_be_bytes(bytes) & frame::MAX_WINDOW;
        if h.stream_id == 0 {
            return match self.out.window.increase(increment) {
                Ok(()) => {
                    for id in std::mem::take(&mut self.blocked_on_conn) {
                        if let Some(stream) = self.streams.get_mut(&id) {
                            stream.blocked = false;
                        }
                        self.schedule(id);
                    }
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
            Ok(()) => self.schedule(h.stream_id),
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
    pub(crate) fn check_not_idle(&self, stream_id: u32, what: &str) -> Result<(), ConnError> {
        if stream_id == 0 {
            return conn_err(Reason::ProtocolError, format!("{what} on stream 0"));
        }
        if stream_id > self.last_stream_id {
            return conn_err(Reason::ProtocolError, format!("{what} on an idle stream"));
        }
        Ok(())
    }
}

//! HTTP/2 frames (RFC 9113 section 4 and 6): the 9-byte header, frame types, flags, error
//! codes, SETTINGS, and the encoders the connection writes with. Pure: no I/O.

/// The client connection preface (RFC 9113 section 3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const HEADER_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE's initial value, and the largest frame we accept.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;
const MAX_ALLOWED_FRAME_SIZE: u32 = (1 << 24) - 1;
/// The initial flow-control window of every stream and of the connection.
pub const DEFAULT_WINDOW: u32 = 65_535;
pub const MAX_WINDOW: u32 = (1 << 31) - 1;

pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// Error codes (RFC 9113 section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NoError = 0x0,
    ProtocolError = 0x1,
    InternalError = 0x2,
    FlowControlError = 0x3,
    StreamClosed = 0x5,
    FrameSizeError = 0x6,
    RefusedStream = 0x7,
    CompressionError = 0x9,
    EnhanceYourCalm = 0xb,
}

/// A frame's 9-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream_id: u32,
}

impl FrameHeader {
    /// `None` when `buf` holds fewer than 9 bytes. The reserved bit of the stream id is
    /// ignored, as the RFC says.
    pub fn parse(buf: &[u8]) -> Option<Self> {
        let b: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Self {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream_id: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & MAX_WINDOW,
        })
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

pub fn put_header(dst: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream_id: u32) {
    let len = (len as u32).to_be_bytes();
    dst.extend_from_slice(&[len[1], len[2], len[3], kind, flags]);
    dst.extend_from_slice(&stream_id.to_be_bytes());
}

/// A frame with its payload.
pub fn put_frame(dst: &mut Vec<u8>, kind: u8, flags: u8, stream_id: u32, payload: &[u8]) {
    put_header(dst, payload.len(), kind, flags, stream_id);
    dst.extend_from_slice(payload);
}

/// DATA frames carrying `parts` (concatenated), each at most `max_frame` bytes, without
/// copying the parts together first. `end_stream` goes on the last frame.
pub fn put_data(
    dst: &mut Vec<u8>,
    stream_id: u32,
    parts: &[&[u8]],
    max_frame: usize,
    end_stream: bool,
) {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut left = total;
    let mut parts = parts.iter().copied().filter(|p| !p.is_empty());
    let mut current: &[u8] = parts.next().unwrap_or(&[]);
    loop {
        let chunk = left.min(max_frame.max(1));
        left -= chunk;
        let flags = if left == 0 && end_stream {
            flag::END_STREAM
        } else {
            0
        };
        put_header(dst, chunk, kind::DATA, flags, stream_id);
        let mut need = chunk;
        while need > 0 {
            if current.is_empty() {
                current = parts.next().unwrap_or(&[]);
            }
            let n = need.min(current.len());
            dst.extend_from_slice(&current[..n]);
            current = &current[n..];
            need -= n;
        }
        if left == 0 {
            return;
        }
    }
}

/// Like [`put_data`] without END_STREAM, but when `open` is the offset of the DATA frame that
/// ends `dst` (this stream's, started by an earlier call) and it has room, the bytes join it:
/// consecutive messages of a stream go out in as few frames as `max_frame` allows, so the
/// peer handles one frame per ~15 updates at peak, not one per update. `open` is updated to
/// the frame that ends `dst`, or `None` when that one is full.
pub fn append_data(
    dst: &mut Vec<u8>,
    open: &mut Option<usize>,
    stream_id: u32,
    parts: &[&[u8]],
    max_frame: usize,
) {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let max_frame = max_frame.max(1);
    if let Some(at) = *open
        && let Some(len) = dst
            .get(at..at + 3)
            .map(|b| u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize)
        && at + HEADER_LEN + len == dst.len()
        && len + total <= max_frame
    {
        for part in parts {
            dst.extend_from_slice(part);
        }
        let len = ((len + total) as u32).to_be_bytes();
        dst[at..at + 3].copy_from_slice(&len[1..]);
        return;
    }
    let before = dst.len();
    put_data(dst, stream_id, parts, max_frame, false);
    let frames = total.div_ceil(max_frame).max(1);
    let last = before + (frames - 1) * (HEADER_LEN + max_frame);
    let last_len = dst.len() - last - HEADER_LEN;
    *open = (last_len < max_frame).then_some(last);
}

/// A header block as one HEADERS frame and, past `max_frame`, CONTINUATION frames.
pub fn put_headers(
    dst: &mut Vec<u8>,
    stream_id: u32,
    block: &[u8],
    max_frame: usize,
    end_stream: bool,
) {
    let mut chunks = block.chunks(max_frame.max(1)).peekable();
    let mut first = true;
    if block.is_empty() {
        let flags = flag::END_HEADERS | if end_stream { flag::END_STREAM } else { 0 };
        put_frame(dst, kind::HEADERS, flags, stream_id, &[]);
        return;
    }
    while let Some(chunk) = chunks.next() {
        let mut flags = 0;
        if chunks.peek().is_none() {
            flags |= flag::END_HEADERS;
        }
        let kind = if first {
            if end_stream {
                flags |= flag::END_STREAM;
            }
            kind::HEADERS
        } else {
            kind::CONTINUATION
        };
        put_frame(dst, kind, flags, stream_id, chunk);
        first = false;
    }
}

pub fn put_window_update(dst: &mut Vec<u8>, stream_id: u32, increment: u32) {
    put_frame(
        dst,
        kind::WINDOW_UPDATE,
        0,
        stream_id,
        &increment.to_be_bytes(),
    );
}

pub fn put_rst_stream(dst: &mut Vec<u8>, stream_id: u32, reason: Reason) {
    put_frame(
        dst,
        kind::RST_STREAM,
        0,
        stream_id,
        &(reason as u32).to_be_bytes(),
    );
}

pub fn put_goaway(dst: &mut Vec<u8>, last_stream_id: u32, reason: Reason, debug: &str) {
    put_header(dst, 8 + debug.len(), kind::GOAWAY, 0, 0);
    dst.extend_from_slice(&last_stream_id.to_be_bytes());
    dst.extend_from_slice(&(reason as u32).to_be_bytes());
    dst.extend_from_slice(debug.as_bytes());
}

/// SETTINGS identifiers we send or act on.
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

pub fn put_settings(dst: &mut Vec<u8>, settings: &[(u16, u32)]) {
    put_header(dst, settings.len() * 6, kind::SETTINGS, 0, 0);
    for (id, value) in settings {
        dst.extend_from_slice(&id.to_be_bytes());
        dst.extend_from_slice(&value.to_be_bytes());
    }
}

/// The peer's settings that change what we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerSettings {
    pub header_table_size: Option<u32>,
    pub initial_window: Option<u32>,
    pub max_frame_size: Option<u32>,
}

/// A malformed SETTINGS payload: the connection error to answer it with, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why}")]
pub struct SettingsError {
    pub reason: Reason,
    pub why: &'static str,
}

/// Parses a SETTINGS payload (RFC 9113 section 6.5.2); unknown identifiers are ignored.
pub fn parse_settings(payload: &[u8]) -> Result<PeerSettings, SettingsError> {
    if !payload.len().is_multiple_of(6) {
        return Err(SettingsError {
            reason: Reason::FrameSizeError,
            why: "SETTINGS length is not a multiple of 6",
        });
    }
    let mut out = PeerSettings::default();
    for entry in payload.chunks_exact(6) {
        let id = u16::from_be_bytes([entry[0], entry[1]]);
        let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
        match id {
            setting::ENABLE_PUSH if value > 1 => {
                return Err(SettingsError {
                    reason: Reason::ProtocolError,
                    why: "SETTINGS_ENABLE_PUSH is neither 0 nor 1",
                });
            }
            setting::INITIAL_WINDOW_SIZE if value > MAX_WINDOW => {
                return Err(SettingsError {
                    reason: Reason::FlowControlError,
                    why: "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1",
                });
            }
            setting::INITIAL_WINDOW_SIZE => out.initial_window = Some(value),
            setting::MAX_FRAME_SIZE
                if !(DEFAULT_MAX_FRAME_SIZE..=MAX_ALLOWED_FRAME_SIZE).contains(&value) =>
            {
                return Err(SettingsError {
                    reason: Reason::ProtocolError,
                    why: "SETTINGS_MAX_FRAME_SIZE outside 16384..=16777215",
                });
            }
            setting::MAX_FRAME_SIZE => out.max_frame_size = Some(value),
            setting::HEADER_TABLE_SIZE => out.header_table_size = Some(value),
            _ => {}
        }
    }
    Ok(out)
}

/// The stream a PRIORITY block (of a PRIORITY frame or a HEADERS frame) depends on.
pub fn dependency(priority: &[u8; 5]) -> u32 {
    u32::from_be_bytes([priority[0], priority[1], priority[2], priority[3]]) & MAX_WINDOW
}

/// A frame's payload without its padding (PADDED flag on DATA and HEADERS), `None` when
/// the pad length does not fit (a PROTOCOL_ERROR).
pub fn unpad<'a>(header: &FrameHeader, payload: &'a [u8]) -> Option<&'a [u8]> {
    if !header.has(flag::PADDED) {
        return Some(payload);
    }
    let (&pad, rest) = payload.split_first()?;
    rest.len()
        .checked_sub(usize::from(pad))
        .map(|end| &rest[..end])
}

#[cfg(test)]
mod tests;

//! A tiny raw HTTP/2 client: writes any frame, malformed ones included, and reads frames
//! back, so each protocol rule of the lean server can be provoked. Shared by this crate's
//! tests and the broadcaster's (`#[path]`), so it names no broadcaster type.
// Each test binary that includes it uses a part.
#![allow(dead_code)]

use std::net::SocketAddr;

use stallwatch_testkit::wait::WAIT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
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
pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

pub const NO_ERROR: u32 = 0x0;
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const FLOW_CONTROL_ERROR: u32 = 0x3;
pub const STREAM_CLOSED: u32 = 0x5;
pub const FRAME_SIZE_ERROR: u32 = 0x6;
pub const REFUSED_STREAM: u32 = 0x7;
pub const COMPRESSION_ERROR: u32 = 0x9;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream_id: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
}

pub struct Raw {
    sock: TcpStream,
    buf: Vec<u8>,
    hpack: loona_hpack::Decoder<'static>,
}

impl Raw {
    /// Connects, sends the preface and an empty SETTINGS.
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::connect_with(addr, &[]).await
    }

    pub async fn connect_with(addr: SocketAddr, settings: &[(u16, u32)]) -> Self {
        let mut raw = Self::connect_bare(addr).await;
        raw.write(PREFACE).await;
        let payload: Vec<u8> = settings
            .iter()
            .flat_map(|(id, v)| [id.to_be_bytes().to_vec(), v.to_be_bytes().to_vec()].concat())
            .collect();
        raw.send(SETTINGS, 0, 0, &payload).await;
        raw
    }

    /// Connects and sends nothing.
    pub async fn connect_bare(addr: SocketAddr) -> Self {
        Self {
            sock: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
            hpack: loona_hpack::Decoder::new(),
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).await.unwrap();
    }

    /// A write that may find the connection closed.
    pub async fn try_write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.sock.write_all(bytes).await
    }

    pub async fn send(&mut self, kind: u8, flags: u8, stream_id: u32, payload: &[u8]) {
        self.write(&frame(kind, flags, stream_id, payload)).await;
    }

    /// The next frame, `None` once the server closed the connection.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let frame = Frame {
                        kind: self.buf[3],
                        flags: self.buf[4],
                        stream_id: u32::from_be_bytes(self.buf[5..9].try_into().unwrap()),
                        payload: self.buf[9..9 + len].to_vec(),
                    };
                    self.buf.drain(..9 + len);
                    return Some(frame);
                }
            }
            let mut chunk = [0u8; 65536];
            let n = tokio::time::timeout(WAIT, self.sock.read(&mut chunk))
                .await
                .expect("a frame within the timeout")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Frames until one matches (SETTINGS, ACKs and window updates are skipped over).
    pub async fn until(&mut self, what: &str, mut matches: impl FnMut(&Frame) -> bool) -> Frame {
        loop {
            let frame = self
                .next()
                .await
                .unwrap_or_else(|| panic!("connection closed before {what}"));
            if matches(&frame) {
                return frame;
            }
        }
    }

    /// The GOAWAY's error code, then the connection must close.
    pub async fn goaway(&mut self) -> (u32, String) {
        let frame = self.until("GOAWAY", |f| f.kind == GOAWAY).await;
        let debug = String::from_utf8_lossy(&frame.payload[8..]).into_owned();
        let code = frame.code();
        while let Some(f) = self.next().await {
            assert_ne!(f.kind, GOAWAY, "a second GOAWAY");
        }
        (code, debug)
    }

    pub async fn rst(&mut self, stream_id: u32) -> u32 {
        self.until("RST_STREAM", |f| {
            f.kind == RST_STREAM && f.stream_id == stream_id
        })
        .await
        .code()
    }

    /// A response header block on `stream_id`, decoded (with its END_STREAM flag).
    pub async fn headers(&mut self, stream_id: u32) -> (Vec<(String, String)>, bool) {
        let frame = self
            .until("HEADERS", |f| f.kind == HEADERS && f.stream_id == stream_id)
            .await;
        assert!(
            frame.flags & END_HEADERS != 0,
            "our responses fit one frame"
        );
        let fields = self
            .hpack
            .decode(&frame.payload)
            .unwrap()
            .into_iter()
            .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
            .collect();
        (fields, frame.flags & END_STREAM != 0)
    }

    /// A request's HEADERS frame (literals without indexing).
    pub async fn request(&mut self, stream_id: u32, path: &str, extra: &[(&str, &str)], flags: u8) {
        let block = request_block(path, extra);
        self.send(HEADERS, END_HEADERS | flags, stream_id, &block)
            .await;
    }

    /// A gRPC call with one request message (already encoded) that ends the request.
    pub async fn call(&mut self, stream_id: u32, path: &str, message: &[u8]) {
        self.request(stream_id, path, &[], 0).await;
        self.send(DATA, END_STREAM, stream_id, &grpc_message(0, message))
            .await;
    }
}

/// One frame's bytes, to batch many into one write.
pub fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[kind, flags]);
    frame.extend_from_slice(&stream_id.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

pub fn request_block(path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut fields = vec![
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "localhost"),
        (":path", path),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ];
    fields.extend_from_slice(extra);
    literal_block(&fields)
}

pub fn literal_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        put_str(&mut out, name.as_bytes());
        put_str(&mut out, value.as_bytes());
    }
    out
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    let mut len = s.len();
    if len < 127 {
        out.push(len as u8);
    } else {
        out.push(127);
        len -= 127;
        while len >= 128 {
            out.push((len % 128) as u8 | 0x80);
            len /= 128;
        }
        out.push(len as u8);
    }
    out.extend_from_slice(s);
}

pub fn grpc_message(flag: u8, message: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

//! The scale section's subscribers. At 10,000 subscribers the load generator shares the 2 CPUs
//! with the server, so its cost per delivery decides how much of the measured latency is the
//! client's own queueing. Besides the real clients (tonic's, async-nats), this module has light
//! ones: one task per connection, one read buffer, frames parsed in place, nothing decoded but
//! the three header fields. They speak the same protocols on the same sockets, so the servers
//! do exactly the same work for them; only the load generator gets cheaper.

use std::future::Future;
use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use transit_broadcaster::generated::transit_v1::SubscribeRequest;

/// What a scale-test client decodes: sequence, the server's receipt time and `missed`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScaleHeader {
    #[prost(uint64, tag = "2")]
    pub seq: u64,
    #[prost(uint64, tag = "4")]
    pub received_at_us: u64,
    #[prost(uint64, tag = "5")]
    pub missed: u64,
}

/// The updates of one or more subscribers (lanes) read through one client object.
pub trait UpdateSource: Send {
    /// The next update and the lane it came on, or `None` once everything ended.
    fn next_update(&mut self) -> impl Future<Output = Option<(usize, ScaleHeader)>> + Send;
}

impl UpdateSource for tonic::Streaming<ScaleHeader> {
    async fn next_update(&mut self) -> Option<(usize, ScaleHeader)> {
        Some((0, self.message().await.ok().flatten()?))
    }
}

impl UpdateSource for async_nats::Subscriber {
    async fn next_update(&mut self) -> Option<(usize, ScaleHeader)> {
        let msg = futures::StreamExt::next(self).await?;
        Some((0, prost::Message::decode(msg.payload).ok()?))
    }
}

/// Read buffer growth step: several updates per read when they queue up.
const READ_CHUNK: usize = 8 << 10;

// ---------------------------------------------------------------- HTTP/2 + gRPC

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
/// Received bytes returned to the server's windows in one WINDOW_UPDATE (a quarter of the
/// default 64 KiB window, so the server never waits on it).
const WINDOW_UPDATE_AT: u32 = 16 << 10;
/// Extra connection window a multiplexing client grants up front: a burst reaches every
/// stream of the connection at once.
const MULTIPLEXED_CONNECTION_WINDOW: u32 = 8 << 20;

/// gRPC Subscribes to stream "all" over one HTTP/2 connection: one (the protocol's defaults,
/// as a phone or dashboard client would) or several (lanes; the connection window is widened).
pub struct H2Subscriber {
    socket: TcpStream,
    read: BytesMut,
    /// Per lane (stream id `2 * lane + 1`): DATA payload not yet cut into gRPC messages, and
    /// received bytes not yet returned by a WINDOW_UPDATE.
    lanes: Vec<(BytesMut, u32)>,
    /// Lanes that may hold a complete message.
    ready: std::collections::VecDeque<usize>,
    /// Received DATA bytes of the connection not yet returned.
    unacked: u32,
    /// Lanes still open.
    open: usize,
}

impl H2Subscriber {
    /// Connects, sends `lanes` Subscribe requests and returns once every response's headers
    /// arrived.
    pub async fn subscribe(addr: SocketAddr, lanes: usize) -> std::io::Result<Self> {
        let socket = TcpStream::connect(addr).await?;
        socket.set_nodelay(true)?;
        let mut out = Vec::with_capacity(256 * lanes);
        out.extend_from_slice(PREFACE);
        put_frame(&mut out, SETTINGS, 0, 0, &[]);
        if lanes > 1 {
            put_frame(
                &mut out,
                WINDOW_UPDATE,
                0,
                0,
                &MULTIPLEXED_CONNECTION_WINDOW.to_be_bytes(),
            );
        }
        let request = prost::Message::encode_to_vec(&SubscribeRequest {
            stream: "all".into(),
            ..Default::default()
        });
        let mut body = Vec::with_capacity(5 + request.len());
        body.push(0);
        body.extend_from_slice(&(request.len() as u32).to_be_bytes());
        body.extend_from_slice(&request);
        let authority = addr.to_string();
        // One encoder for the connection, as HPACK's dynamic table is the connection's.
        let mut hpack = loona_hpack::Encoder::new();
        for lane in 0..lanes {
            let id = stream_id(lane);
            let headers = hpack.encode(subscribe_headers(&authority));
            put_frame(&mut out, HEADERS, END_HEADERS, id, &headers);
            put_frame(&mut out, DATA, END_STREAM, id, &body);
        }
        let mut subscriber = H2Subscriber {
            socket,
            read: BytesMut::with_capacity(READ_CHUNK),
            lanes: vec![(BytesMut::new(), 0); lanes],
            ready: Default::default(),
            unacked: 0,
            open: lanes,
        };
        subscriber.socket.write_all(&out).await?;
        let mut answered = 0;
        while answered < lanes {
            let Some((kind, flags, stream, _)) = subscriber.next_frame().await? else {
                return Err(std::io::Error::other(
                    "connection closed before the response",
                ));
            };
            if kind == HEADERS && stream % 2 == 1 {
                if flags & END_STREAM != 0 {
                    return Err(std::io::Error::other("Subscribe refused (trailers only)"));
                }
                answered += 1;
            }
        }
        Ok(subscriber)
    }

    /// Reads the next frame, answering SETTINGS and PING on the way. `(type, flags, stream
    /// id, payload)`; `None` at end of connection.
    async fn next_frame(&mut self) -> std::io::Result<Option<(u8, u8, u32, BytesMut)>> {
        loop {
            if self.read.len() >= 9 {
                let len =
                    u32::from_be_bytes([0, self.read[0], self.read[1], self.read[2]]) as usize;
                if self.read.len() >= 9 + len {
                    let head = self.read.split_to(9);
                    let payload = self.read.split_to(len);
                    let (kind, flags) = (head[3], head[4]);
                    let stream =
                        u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & !(1 << 31);
                    self.control(kind, flags, &payload).await?;
                    return Ok(Some((kind, flags, stream, payload)));
                }
            }
            self.read.reserve(READ_CHUNK);
            if self.socket.read_buf(&mut self.read).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// The connection-level duties of a client: acknowledge SETTINGS and PING.
    async fn control(&mut self, kind: u8, flags: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut out = Vec::new();
        match kind {
            SETTINGS if flags & ACK == 0 => put_frame(&mut out, SETTINGS, ACK, 0, &[]),
            PING if flags & ACK == 0 => put_frame(&mut out, PING, ACK, 0, payload),
            _ => return Ok(()),
        }
        self.socket.write_all(&out).await
    }

    /// Counts `len` received DATA bytes of `lane` against both windows; returns them once
    /// enough piled up.
    async fn consumed(&mut self, lane: usize, len: u32) -> std::io::Result<()> {
        let mut out = Vec::new();
        self.unacked += len;
        if self.unacked >= WINDOW_UPDATE_AT {
            let credit = std::mem::take(&mut self.unacked).to_be_bytes();
            put_frame(&mut out, WINDOW_UPDATE, 0, 0, &credit);
        }
        let stream_unacked = &mut self.lanes[lane].1;
        *stream_unacked += len;
        if *stream_unacked >= WINDOW_UPDATE_AT {
            let credit = std::mem::take(stream_unacked).to_be_bytes();
            put_frame(&mut out, WINDOW_UPDATE, 0, stream_id(lane), &credit);
        }
        if out.is_empty() {
            return Ok(());
        }
        self.socket.write_all(&out).await
    }

    /// Cuts the next complete gRPC message off a ready lane.
    fn take_message(&mut self) -> Option<(usize, ScaleHeader)> {
        while let Some(&lane) = self.ready.front() {
            let buf = &mut self.lanes[lane].0;
            if buf.len() >= 5 {
                let len = u32::from_be_bytes(buf[1..5].try_into().unwrap()) as usize;
                if buf.len() >= 5 + len {
                    buf.advance(5);
                    let message = buf.split_to(len);
                    // A malformed message ends the run loudly rather than counting as a gap.
                    let header = prost::Message::decode(message).expect("a StreamUpdate");
                    return Some((lane, header));
                }
            }
            self.ready.pop_front();
        }
        None
    }
}

fn stream_id(lane: usize) -> u32 {
    2 * lane as u32 + 1
}

impl UpdateSource for H2Subscriber {
    async fn next_update(&mut self) -> Option<(usize, ScaleHeader)> {
        loop {
            if let Some(update) = self.take_message() {
                return Some(update);
            }
            if self.open == 0 {
                return None;
            }
            let (kind, flags, stream, mut payload) = self.next_frame().await.ok()??;
            let lane = (stream as usize).wrapping_sub(1) / 2;
            let ours = stream % 2 == 1 && lane < self.lanes.len();
            match kind {
                DATA if ours => {
                    self.consumed(lane, payload.len() as u32).await.ok()?;
                    if flags & PADDED != 0 {
                        let pad = usize::from(*payload.first()?);
                        payload.advance(1);
                        payload.truncate(payload.len().checked_sub(pad)?);
                    }
                    self.lanes[lane].0.extend_from_slice(&payload);
                    self.ready.push_back(lane);
                    if flags & END_STREAM != 0 {
                        self.open -= 1;
                    }
                }
                HEADERS if ours && flags & END_STREAM != 0 => self.open -= 1,
                RST_STREAM if ours => self.open -= 1,
                GOAWAY => return None,
                _ => {}
            }
        }
    }
}

fn put_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// The Subscribe request's header fields.
fn subscribe_headers(authority: &str) -> [(&[u8], &[u8]); 6] {
    [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (
            b":path",
            b"/stallwatch.transit.v1.TransitBroadcaster/Subscribe",
        ),
        (b":authority", authority.as_bytes()),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]
}

// ---------------------------------------------------------------- NATS

/// NATS core subscriptions speaking the text protocol directly: CONNECT, one SUB per lane
/// (sid = lane + 1), then MSG frames (answering the server's PINGs).
pub struct NatsSubscriber {
    socket: TcpStream,
    read: BytesMut,
}

impl NatsSubscriber {
    /// Connects, subscribes `lanes` times to `subject` and returns once the server has
    /// processed the SUBs (its PONG to our PING).
    pub async fn subscribe(addr: SocketAddr, subject: &str, lanes: usize) -> std::io::Result<Self> {
        let socket = TcpStream::connect(addr).await?;
        socket.set_nodelay(true)?;
        let mut subscriber = NatsSubscriber {
            socket,
            read: BytesMut::with_capacity(READ_CHUNK),
        };
        let mut hello = String::from(
            "CONNECT {\"verbose\":false,\"pedantic\":false,\"lang\":\"bench\",\"version\":\"0\",\"protocol\":1}\r\n",
        );
        for sid in 1..=lanes {
            hello.push_str(&format!("SUB {subject} {sid}\r\n"));
        }
        hello.push_str("PING\r\n");
        subscriber.socket.write_all(hello.as_bytes()).await?;
        loop {
            match subscriber.next_line().await? {
                Some(line) if line.starts_with(b"PONG") => return Ok(subscriber),
                Some(line) if line.starts_with(b"-ERR") => {
                    return Err(std::io::Error::other(
                        String::from_utf8_lossy(&line).into_owned(),
                    ));
                }
                Some(_) => {}
                None => return Err(std::io::Error::other("nats-server closed the connection")),
            }
        }
    }

    /// The next protocol line without its CRLF, reading as needed.
    async fn next_line(&mut self) -> std::io::Result<Option<BytesMut>> {
        loop {
            if let Some(end) = self.read.windows(2).position(|w| w == b"\r\n") {
                let line = self.read.split_to(end);
                self.read.advance(2);
                if line.starts_with(b"PING") {
                    self.socket.write_all(b"PONG\r\n").await?;
                    continue;
                }
                return Ok(Some(line));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    async fn fill(&mut self) -> std::io::Result<bool> {
        self.read.reserve(READ_CHUNK);
        Ok(self.socket.read_buf(&mut self.read).await? > 0)
    }
}

impl UpdateSource for NatsSubscriber {
    async fn next_update(&mut self) -> Option<(usize, ScaleHeader)> {
        loop {
            let line = self.next_line().await.ok()??;
            if line.starts_with(b"-ERR") {
                return None;
            }
            if !line.starts_with(b"MSG ") {
                continue;
            }
            // MSG <subject> <sid> [reply-to] <#bytes>
            let line = std::str::from_utf8(&line).ok()?;
            let mut fields = line.split(' ');
            let sid: usize = fields.nth(2)?.parse().ok()?;
            let size: usize = line.rsplit(' ').next()?.parse().ok()?;
            while self.read.len() < size + 2 {
                if !self.fill().await.ok()? {
                    return None;
                }
            }
            let payload = self.read.split_to(size);
            self.read.advance(2);
            let header = prost::Message::decode(payload).expect("a StreamUpdate");
            return Some((sid.checked_sub(1)?, header));
        }
    }
}

// ---------------------------------------------------------------- TCP floor

/// A reader of the TCP floor server's fixed-size records (`floor.rs`): the least any
/// subscriber can cost on this kernel.
pub struct FloorReader {
    socket: TcpStream,
    record: Vec<u8>,
}

impl FloorReader {
    pub async fn connect(addr: SocketAddr, record_len: usize) -> std::io::Result<Self> {
        let socket = TcpStream::connect(addr).await?;
        socket.set_nodelay(true)?;
        Ok(FloorReader {
            socket,
            record: vec![0; record_len],
        })
    }
}

impl UpdateSource for FloorReader {
    async fn next_update(&mut self) -> Option<(usize, ScaleHeader)> {
        self.socket.read_exact(&mut self.record).await.ok()?;
        let word = |i: usize| u64::from_le_bytes(self.record[i * 8..i * 8 + 8].try_into().unwrap());
        let header = ScaleHeader {
            seq: word(0),
            received_at_us: word(1),
            missed: 0,
        };
        Some((0, header))
    }
}

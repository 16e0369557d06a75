//! Every request but the local streams' (for the broadcaster: health incl. `Watch`,
//! reflection, `ListStreams`, unknown methods) is bridged to the handler's HTTP service
//! ([`crate::Handler::bridge`], tonic's routes): the request body is a channel the
//! connection task feeds from DATA frames, and the connection task itself polls the response
//! future and body with the stream's waker when the stream is served, framing headers, data
//! and trailers under flow control. No task and no channel back per request: a spawned task
//! cost a unary call more than the call itself. A response is polled only while the stream
//! and connection have window and the write buffer room, so one the peer does not read
//! back-pressures into the service, not into memory.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame};
use tokio::sync::mpsc;

use crate::Handler;
use crate::headers::RequestHead;
use crate::wake::ReadyShared;

/// What a bridged response hands the connection task, in order.
#[derive(Debug)]
pub enum BridgeEvent {
    Head(http::response::Parts),
    Data(Bytes),
    Trailers(HeaderMap),
    /// The response body failed: the stream is reset.
    Failed,
}

/// A bridged request's body: DATA payloads from the connection task. Each chunk handed to
/// the service is reported as consumed, so the connection can open the peer's window again.
pub struct RequestBody {
    chunks: mpsc::UnboundedReceiver<Bytes>,
    stream_id: u32,
    shared: Arc<ReadyShared>,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.chunks.poll_recv(cx).map(|chunk| {
            chunk.map(|data| {
                self.shared.consumed(self.stream_id, data.len());
                Ok(Frame::data(data))
            })
        })
    }
}

/// The connection's end of one bridged request.
pub struct Bridged {
    /// `None` once the peer ended the request body.
    pub body: Option<mpsc::UnboundedSender<Bytes>>,
    response: Response,
    pub head_sent: bool,
    /// Request bytes handed to the service and not yet consumed by it.
    pub unconsumed: usize,
    /// Chunks (DATA payloads) handed to the service and not yet consumed by it.
    pub chunks: usize,
}

/// What a bridged request may hold on the heap before its service reads it: the bytes
/// (never more than the stream's window) and a charge per chunk for its allocation, so
/// that a flood of tiny DATA frames cannot cost more than big ones.
pub const MAX_UNCONSUMED: usize = 2 * crate::frame::DEFAULT_WINDOW as usize;
pub const CHUNK_OVERHEAD: usize = 64;

impl Bridged {
    /// Hands a DATA payload to the service; `false` (nothing handed) when it would go past
    /// the stream's budget.
    pub fn feed(&mut self, data: &[u8]) -> bool {
        let held = self.unconsumed + data.len() + (self.chunks + 1) * CHUNK_OVERHEAD;
        if held > MAX_UNCONSUMED {
            return false;
        }
        if let Some(tx) = &self.body {
            let _ = tx.send(Bytes::copy_from_slice(data));
            self.unconsumed += data.len();
            self.chunks += 1;
        }
        true
    }

    /// The service consumed one chunk of `n` bytes.
    pub fn consumed(&mut self, n: usize) {
        self.unconsumed = self.unconsumed.saturating_sub(n);
        self.chunks = self.chunks.saturating_sub(1);
    }
}

/// Where a bridged response is.
enum Response {
    Waiting(crate::BridgeFuture),
    Body(tonic::body::Body),
    Done,
}

impl Bridged {
    /// The response's next event; `Ready(None)` once its body ended. Dropping the stream
    /// drops the service's future and body: the request is cancelled.
    pub fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<BridgeEvent>> {
        loop {
            match &mut self.response {
                Response::Waiting(future) => {
                    let response = std::task::ready!(future.as_mut().poll(cx));
                    let (parts, body) = response.into_parts();
                    self.response = Response::Body(body);
                    return Poll::Ready(Some(BridgeEvent::Head(parts)));
                }
                Response::Body(body) => {
                    let event = match std::task::ready!(Pin::new(body).poll_frame(cx)) {
                        None => None,
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(data) => Some(BridgeEvent::Data(data)),
                            Err(frame) => match frame.into_trailers() {
                                Ok(trailers) => Some(BridgeEvent::Trailers(trailers)),
                                Err(_) => continue,
                            },
                        },
                        Some(Err(e)) => {
                            tracing::debug!("bridged response body failed: {e}");
                            Some(BridgeEvent::Failed)
                        }
                    };
                    if !matches!(event, Some(BridgeEvent::Data(_))) {
                        self.response = Response::Done;
                    }
                    return Poll::Ready(event);
                }
                Response::Done => return Poll::Ready(None),
            }
        }
    }
}

/// Builds the `http::Request` and calls the service; its future is polled when the stream
/// is served.
pub fn start<H: Handler>(
    handler: &H,
    head: RequestHead,
    end_stream: bool,
    stream_id: u32,
    shared: Arc<ReadyShared>,
) -> Result<Bridged, http::Error> {
    let (body_tx, body_rx) = mpsc::unbounded_channel();
    let body = RequestBody {
        chunks: body_rx,
        stream_id,
        shared,
    };
    let uri = http::Uri::builder()
        .scheme(head.scheme.as_str())
        .authority(if head.authority.is_empty() {
            "localhost"
        } else {
            head.authority.as_str()
        })
        .path_and_query(head.path.as_str())
        .build()?;
    let mut request = http::Request::builder()
        .method(head.method.as_str())
        .uri(uri)
        .version(http::Version::HTTP_2)
        .body(body)?;
    *request.headers_mut() = head.headers;
    Ok(Bridged {
        body: (!end_stream).then_some(body_tx),
        response: Response::Waiting(handler.bridge(request)),
        head_sent: false,
        unconsumed: 0,
        chunks: 0,
    })
}

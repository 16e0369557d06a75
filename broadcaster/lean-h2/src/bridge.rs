//! Every request but the local streams' (for the broadcaster: health incl. `Watch`,
//! reflection, `ListStreams`, unknown methods) is bridged to the handler's HTTP service
//! ([`crate::Handler::bridge`], tonic's routes): the request body is a channel the
//! connection task feeds from DATA frames, and one task per request polls the response
//! future and body and hands headers, data and trailers back to the connection task, which
//! frames them under flow control. The channel back is small and bounded, so a response the
//! peer does not read back-pressures into its task, not into memory.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
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

/// How many events may wait for the connection task per bridged stream.
const EVENTS_IN_FLIGHT: usize = 4;

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
    pub events: mpsc::Receiver<BridgeEvent>,
    task: tokio::task::AbortHandle,
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

impl Drop for Bridged {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Builds the `http::Request` and spawns the task that serves it.
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
    let (events_tx, events) = mpsc::channel(EVENTS_IN_FLIGHT);
    let task = tokio::spawn(serve(handler.bridge(request), events_tx));
    Ok(Bridged {
        body: (!end_stream).then_some(body_tx),
        events,
        task: task.abort_handle(),
        head_sent: false,
        unconsumed: 0,
        chunks: 0,
    })
}

async fn serve(response: crate::BridgeFuture, events: mpsc::Sender<BridgeEvent>) {
    let response = response.await;
    let (parts, mut body) = response.into_parts();
    if events.send(BridgeEvent::Head(parts)).await.is_err() {
        return;
    }
    while let Some(frame) = body.frame().await {
        let event = match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => BridgeEvent::Data(data),
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => BridgeEvent::Trailers(trailers),
                    Err(_) => continue,
                },
            },
            Err(e) => {
                tracing::debug!("bridged response body failed: {e}");
                BridgeEvent::Failed
            }
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
    // Dropping `events` closes the channel: the connection task ends the stream.
}

//! Subscribe streams served inside the connection task: the request message is gathered
//! from DATA frames, decoded and opened with the same transport-neutral step tonic's path
//! uses ([`TransitService::open_subscription`]), and each update is framed straight into the
//! connection's write buffer.

use bytes::Bytes;
use tonic::Status;

use crate::generated::transit_v1::SubscribeRequest;
use crate::grpc::{OutgoingUpdate, SubscriberStream, TransitService};

pub const PATH: &str = "/stallwatch.transit.v1.TransitBroadcaster/Subscribe";
/// The gRPC length prefix: a compressed flag and a 4-byte big-endian length.
pub const GRPC_PREFIX_LEN: usize = 5;
/// The largest SubscribeRequest we take (route lists are short; tonic's default is 4 MiB,
/// but the bytes sit on the heap of a connection until the message is complete).
pub const MAX_REQUEST_MESSAGE: usize = 64 * 1024;
/// `StreamUpdate.missed`'s field number.
const MISSED_FIELD: u32 = 5;

/// What the request bytes gathered so far amount to.
#[derive(Debug)]
pub enum RequestProgress {
    /// Wait for more DATA.
    Incomplete,
    /// One whole message (compressed flag 0): its protobuf bytes.
    Message(Bytes),
}

/// Checks the gRPC message framing of a Subscribe request body (RFC-like rules tonic applies:
/// identity encoding only, a size limit).
pub fn request_progress(body: &[u8], end_stream: bool) -> Result<RequestProgress, Status> {
    let Some(prefix) = body.get(..GRPC_PREFIX_LEN) else {
        return if end_stream {
            Err(Status::internal("Missing request message."))
        } else {
            Ok(RequestProgress::Incomplete)
        };
    };
    match prefix[0] {
        0 => {}
        1 => {
            return Err(Status::unimplemented(
                "message is compressed, but this server accepts identity only",
            ));
        }
        flag => {
            return Err(Status::internal(format!(
                "protocol error: invalid compression flag: {flag} (valid flags are 0 and 1)"
            )));
        }
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if len > MAX_REQUEST_MESSAGE {
        return Err(Status::out_of_range(format!(
            "Error, decoded message length too large: found {len} bytes, the limit is: {MAX_REQUEST_MESSAGE} bytes"
        )));
    }
    match body.get(GRPC_PREFIX_LEN..GRPC_PREFIX_LEN + len) {
        Some(message) => Ok(RequestProgress::Message(Bytes::copy_from_slice(message))),
        None if end_stream => Err(Status::internal("Missing request message.")),
        None => Ok(RequestProgress::Incomplete),
    }
}

/// Decodes the request and opens the subscription.
pub fn open(
    service: &TransitService,
    message: &[u8],
    peer: &str,
) -> Result<SubscriberStream, Status> {
    let request = <SubscribeRequest as prost::Message>::decode(message)
        .map_err(|e| Status::internal(format!("failed to decode SubscribeRequest: {e}")))?;
    service.open_subscription(&request, peer)
}

/// An update's gRPC message as slices: the 5-byte prefix, the shared head and body, and this
/// subscriber's `missed` field. Framed from these without joining them first.
pub struct WireUpdate {
    prefix: [u8; GRPC_PREFIX_LEN],
    missed: [u8; 11],
    missed_len: usize,
    update: OutgoingUpdate,
}

impl WireUpdate {
    pub fn new(update: OutgoingUpdate) -> Self {
        let mut missed = [0u8; 11];
        let mut missed_len = 0;
        if update.missed > 0 {
            let mut dst = &mut missed[..];
            prost::encoding::uint64::encode(MISSED_FIELD, &update.missed, &mut dst);
            missed_len = 11 - dst.len();
        }
        let len = (update.head.len() + update.body.len() + missed_len) as u32;
        let mut prefix = [0u8; GRPC_PREFIX_LEN];
        prefix[1..].copy_from_slice(&len.to_be_bytes());
        Self {
            prefix,
            missed,
            missed_len,
            update,
        }
    }

    pub fn len(&self) -> usize {
        GRPC_PREFIX_LEN + self.update.head.len() + self.update.body.len() + self.missed_len
    }

    pub fn parts(&self) -> [&[u8]; 4] {
        [
            &self.prefix,
            &self.update.head,
            &self.update.body,
            &self.missed[..self.missed_len],
        ]
    }

    /// The message as one buffer, for when flow control lets only part of it go now.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.len());
        for part in self.parts() {
            out.extend_from_slice(part);
        }
        Bytes::from(out)
    }
}

//! Subscribe streams served inside the lean server's connection task: the request message
//! (gathered by `lean-h2`) is decoded and opened with the same transport-neutral step tonic's
//! path uses ([`TransitService::open_subscription`]), and each update is framed straight into
//! the connection's write buffer from its parts ([`WireUpdate`]).

use tonic::Status;

use crate::generated::transit_v1::SubscribeRequest;
use crate::gtfs::fields::stream_update;
use crate::serve::grpc::{OutgoingUpdate, SubscriberStream, TransitService};

pub const PATH: &str = "/stallwatch.transit.v1.TransitBroadcaster/Subscribe";
/// The gRPC length prefix: a compressed flag and a 4-byte big-endian length.
const GRPC_PREFIX_LEN: usize = 5;
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
            prost::encoding::uint64::encode(stream_update::MISSED, &update.missed, &mut dst);
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
}

impl lean_h2::Message for WireUpdate {
    fn len(&self) -> usize {
        GRPC_PREFIX_LEN + self.update.head.len() + self.update.body.len() + self.missed_len
    }

    fn parts(&self) -> [&[u8]; 4] {
        [
            &self.prefix,
            &self.update.head,
            &self.update.body,
            &self.missed[..self.missed_len],
        ]
    }
}

//! gRPC over the local streams: the request message gathered from DATA frames (framing
//! rules and a size limit, as tonic applies them) and the checks tonic makes on a request's
//! head before a call.

use bytes::Bytes;
use tonic::Status;

use crate::headers::RequestHead;

/// The gRPC length prefix: a compressed flag and a 4-byte big-endian length.
pub const GRPC_PREFIX_LEN: usize = 5;
/// The largest request message of a local stream (tonic's default is 4 MiB, but the bytes
/// sit on the heap of a connection until the message is complete).
pub const MAX_REQUEST_MESSAGE: usize = 64 * 1024;

/// What the request bytes gathered so far amount to.
#[derive(Debug)]
pub enum RequestProgress {
    /// Wait for more DATA.
    Incomplete,
    /// One whole message (compressed flag 0): its protobuf bytes.
    Message(Bytes),
}

/// Checks the gRPC message framing of a local stream's request body (RFC-like rules tonic applies:
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

/// The request checks tonic makes before a call: gRPC content type, identity encoding.
pub fn check_grpc_request(head: &RequestHead) -> Result<(), Status> {
    if head.method != "POST" {
        return Err(Status::internal(format!(
            "gRPC requires POST, not {}",
            head.method
        )));
    }
    let content_type = head
        .headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !content_type.starts_with(b"application/grpc") {
        return Err(Status::internal(format!(
            "unsupported content-type {:?}",
            String::from_utf8_lossy(content_type)
        )));
    }
    if let Some(encoding) = head.headers.get("grpc-encoding")
        && encoding != "identity"
    {
        return Err(Status::unimplemented(format!(
            "Content is compressed with `{}` which isn't supported",
            String::from_utf8_lossy(encoding.as_bytes())
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;

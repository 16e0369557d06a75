//! Unit tests of `grpc.rs`: the request message framing.

use super::*;

fn framed(flag: u8, message: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

#[test]
fn a_request_message_is_taken_once_complete() {
    let body = framed(0, b"abc");
    for cut in 0..body.len() {
        assert!(matches!(
            request_progress(&body[..cut], false),
            Ok(RequestProgress::Incomplete)
        ));
    }
    match request_progress(&body, false) {
        Ok(RequestProgress::Message(m)) => assert_eq!(&m[..], b"abc"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_request_bodies_get_the_status_tonic_gives() {
    let code = |body: &[u8], end| request_progress(body, end).unwrap_err().code();
    assert_eq!(code(&framed(1, b"abc"), false), tonic::Code::Unimplemented);
    assert_eq!(code(&framed(7, b"abc"), false), tonic::Code::Internal);
    assert_eq!(code(&[], true), tonic::Code::Internal);
    assert_eq!(code(&framed(0, b"abc")[..6], true), tonic::Code::Internal);
    let mut huge = vec![0u8];
    huge.extend_from_slice(&((MAX_REQUEST_MESSAGE + 1) as u32).to_be_bytes());
    let status = request_progress(&huge, false).unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange);
    assert!(
        status.message().contains("too large"),
        "{}",
        status.message()
    );
}

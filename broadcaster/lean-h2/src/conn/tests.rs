//! Unit tests of `conn.rs`: the sizes an idle subscriber pays for.

use std::net::SocketAddr;

use super::*;
use crate::{BridgeFuture, Message, RequestBody};

/// A handler only to name the generic types: their sizes do not depend on it (a local
/// stream is boxed, the handler behind an `Arc`).
struct Sized0;
struct NoMessage;

impl Message for NoMessage {
    fn len(&self) -> usize {
        5
    }

    fn parts(&self) -> [&[u8]; 4] {
        [&[0; 5], &[], &[], &[]]
    }
}

impl Handler for Sized0 {
    type Message = NoMessage;
    type Stream = futures::stream::Empty<Result<NoMessage, tonic::Status>>;

    fn is_local(&self, _path: &str) -> bool {
        true
    }

    fn open(
        &self,
        _path: &str,
        _message: &[u8],
        _peer: SocketAddr,
    ) -> Result<Self::Stream, tonic::Status> {
        Ok(futures::stream::empty())
    }

    fn bridge(&self, _request: http::Request<RequestBody>) -> BridgeFuture {
        Box::pin(std::future::pending())
    }
}

#[test]
fn a_connection_and_a_stream_stay_small() {
    // Every connection holds one `Conn` (inside its task) and every open stream one boxed
    // `Stream`: an idle subscriber on its own connection pays for both, and issue 22 asks
    // that it pays no more than before the issue (BENCHMARKS.md, memory per idle
    // subscriber). A field that grows them fails here first.
    let sizes = [
        ("Conn", std::mem::size_of::<Conn<Sized0>>()),
        ("Stream", std::mem::size_of::<Stream<Sized0>>()),
        ("Out", std::mem::size_of::<Out>()),
        ("Encoder", std::mem::size_of::<Encoder>()),
        ("Guard", std::mem::size_of::<Guard>()),
        ("Life", std::mem::size_of::<Life>()),
        ("PendingHeaders", std::mem::size_of::<PendingHeaders>()),
        ("RecentlyClosed", std::mem::size_of::<RecentlyClosed>()),
        (
            "Decoder",
            std::mem::size_of::<loona_hpack::Decoder<'static>>(),
        ),
    ];
    eprintln!("{sizes:?}");
    // 528 and 104 bytes since the compact guard, encoder, boxed pending header block and
    // boxed local request (by the fields' sizes, about 736 and 136 before).
    assert!(sizes[0].1 <= 528, "{sizes:?}");
    assert!(sizes[1].1 <= 104, "{sizes:?}");
}

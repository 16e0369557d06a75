use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::task::ArcWake;
use http_body::Body;

use super::*;

// ------------------------------------------------------------------ SmallFrames

/// A body yielding the given frames, then the end.
struct Frames(VecDeque<http_body::Frame<Bytes>>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.get_mut().0.pop_front().map(Ok))
    }
}

fn chunk(len: usize) -> Bytes {
    (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>().into()
}

/// Every frame `body` yields, in order.
fn frames_of(body: impl http_body::Body<Data = Bytes> + Unpin) -> Vec<http_body::Frame<Bytes>> {
    let mut body = body;
    let mut out = Vec::new();
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    loop {
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => out.push(frame),
            Poll::Ready(Some(Err(_))) => panic!("body error"),
            Poll::Ready(None) => return out,
            Poll::Pending => panic!("a ready body must not be pending"),
        }
    }
}

#[test]
fn a_one_kib_update_becomes_frames_h2_copies_and_its_bytes_are_unchanged() {
    let update = chunk(1063);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    let body = SmallFrames::new(Frames(VecDeque::from([
        http_body::Frame::data(update.clone()),
        http_body::Frame::trailers(trailers.clone()),
    ])));
    let frames = frames_of(body);
    let (data, rest): (Vec<_>, Vec<_>) = frames.into_iter().partition(|f| f.is_data());
    let data: Vec<Bytes> = data.into_iter().map(|f| f.into_data().unwrap()).collect();
    assert_eq!(data.len(), 2);
    assert!(data.iter().all(|d| d.len() < H2_COPY_BELOW), "{data:?}");
    assert_eq!(data.concat(), update.to_vec());
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].trailers_ref(), Some(&trailers));
}

#[test]
fn small_and_large_chunks_pass_whole_and_mid_sized_ones_are_cut_evenly() {
    for (len, pieces) in [
        (1, 1),
        (H2_COPY_BELOW - 1, 1),
        (H2_COPY_BELOW, 2),
        (5000, 5),
        (SPLIT_UP_TO, 17),
        (SPLIT_UP_TO + 1, 1),
        (200_000, 1),
    ] {
        let original = chunk(len);
        let mut out = VecDeque::new();
        split(original.clone(), &mut out);
        assert_eq!(out.len(), pieces, "{len} bytes");
        if pieces > 1 {
            assert!(out.iter().all(|p| p.len() < H2_COPY_BELOW), "{len} bytes");
            let (min, max) = (
                out.iter().map(Bytes::len).min().unwrap(),
                out.iter().map(Bytes::len).max().unwrap(),
            );
            assert!(max - min <= pieces, "{len} bytes: {min}..{max}");
        }
        assert_eq!(
            out.into_iter().collect::<Vec<_>>().concat(),
            original.to_vec()
        );
    }
}

#[test]
fn the_end_of_the_body_waits_for_the_pieces_still_held() {
    let mut body = SmallFrames::new(Frames(VecDeque::from([http_body::Frame::data(chunk(
        3000,
    ))])));
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(matches!(
        Pin::new(&mut body).poll_frame(&mut cx),
        Poll::Ready(Some(Ok(_)))
    ));
    assert!(!body.is_end_stream());
    assert!(body.size_hint().lower() >= 2000);
}

// ------------------------------------------------------------------ BatchingIo

/// A socket that records each write call's bytes (one entry per call, vectored or not).
#[derive(Default)]
struct Recorder {
    writes: Vec<Vec<u8>>,
    flushes: usize,
    shut: bool,
}

impl AsyncWrite for Recorder {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().writes.push(buf.to_vec());
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        let n = all.len();
        self.get_mut().writes.push(all);
        Poll::Ready(Ok(n))
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().flushes += 1;
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().shut = true;
        Poll::Ready(Ok(()))
    }
}

#[derive(Default)]
struct CountWakes(AtomicUsize);

impl ArcWake for CountWakes {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn write(io: &mut BatchingIo<Recorder>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<usize> {
    Pin::new(io).poll_write(cx, buf).map(|r| r.unwrap())
}

fn flush(io: &mut BatchingIo<Recorder>, cx: &mut Context<'_>) {
    assert!(Pin::new(io).poll_flush(cx).is_ready());
}

#[test]
fn the_first_write_of_a_flush_yields_once_and_wakes_the_writer() {
    let wakes = Arc::new(CountWakes::default());
    let waker = futures::task::waker(wakes.clone());
    let mut cx = Context::from_waker(&waker);
    let mut io = BatchingIo::new(Recorder::default());
    assert!(write(&mut io, &mut cx, b"frames").is_pending());
    assert_eq!(
        wakes.0.load(Ordering::SeqCst),
        1,
        "a yield must wake its task"
    );
    assert_eq!(write(&mut io, &mut cx, b"frames"), Poll::Ready(6));
    flush(&mut io, &mut cx);
    assert_eq!(io.inner.writes, vec![b"frames".to_vec()]);
    // The next flush cycle yields again, once.
    assert!(write(&mut io, &mut cx, b"more").is_pending());
    assert_eq!(write(&mut io, &mut cx, b"more"), Poll::Ready(4));
    assert_eq!(wakes.0.load(Ordering::SeqCst), 2);
}

#[test]
fn a_buffer_and_a_chained_payload_go_out_in_one_write_and_a_flush_sends_what_is_held() {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut io = BatchingIo::new(Recorder::default());
    let _ = write(&mut io, &mut cx, b"head");
    // h2's buffer (frame head), then the chained frame's payload, then a flush.
    assert_eq!(write(&mut io, &mut cx, b"head"), Poll::Ready(4));
    assert!(
        io.inner.writes.is_empty(),
        "held until the payload or the flush"
    );
    let payload = vec![7u8; 40_000];
    assert_eq!(write(&mut io, &mut cx, &payload), Poll::Ready(40_000));
    assert_eq!(io.inner.writes.len(), 1);
    assert_eq!(io.inner.writes[0][..4], *b"head");
    assert_eq!(io.inner.writes[0].len(), 40_004);
    flush(&mut io, &mut cx);
    assert_eq!(io.inner.writes.len(), 1, "nothing was left to write");
    // Small writes alone are sent by the flush, whole.
    let _ = write(&mut io, &mut cx, b"a");
    let _ = write(&mut io, &mut cx, b"a");
    assert!(io.inner.writes.len() == 1);
    flush(&mut io, &mut cx);
    assert_eq!(io.inner.writes.last().unwrap(), b"a");
    assert_eq!(io.inner.flushes, 2);
}

#[test]
fn shutdown_writes_what_is_held_first() {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut io = BatchingIo::new(Recorder::default());
    let _ = write(&mut io, &mut cx, b"goaway");
    let _ = write(&mut io, &mut cx, b"goaway");
    assert!(Pin::new(&mut io).poll_shutdown(&mut cx).is_ready());
    assert_eq!(io.inner.writes, vec![b"goaway".to_vec()]);
    assert!(io.inner.shut);
}

#[test]
fn h2_is_told_the_socket_takes_no_vectored_writes() {
    // h2 picks its 1 KiB copy threshold from this (see the module docs).
    assert!(!BatchingIo::new(Recorder::default()).is_write_vectored());
}

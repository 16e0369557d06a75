use super::*;

#[tokio::test]
async fn reads_frames_and_reports_corruption_with_offsets() {
    let mut data = Vec::new();
    encode_frame(b"hello", &mut data);
    encode_frame(b"", &mut data);
    encode_frame(&[7u8; 300], &mut data);
    let good_len = data.len() as u64;
    let mut r = FrameReader::new(&data[..], "mem");
    assert!(matches!(r.next_frame().await.unwrap(), Frame::Message(b) if &b[..] == b"hello"));
    assert!(matches!(r.next_frame().await.unwrap(), Frame::Message(b) if b.is_empty()));
    assert!(matches!(r.next_frame().await.unwrap(), Frame::Message(b) if b.len() == 300));
    assert!(matches!(r.next_frame().await.unwrap(), Frame::End));

    let mut truncated = data.clone();
    encode_frame(b"0123456789", &mut truncated);
    truncated.truncate(truncated.len() - 4);
    let mut r = FrameReader::new(&truncated[..], "rec.pb");
    for _ in 0..3 {
        r.next_frame().await.unwrap();
    }
    let err = r.next_frame().await.unwrap_err().to_string();
    assert!(err.contains("rec.pb"), "{err}");
    assert!(err.contains(&format!("byte {good_len}")), "{err}");
    assert!(err.contains("truncated"), "{err}");

    let mut r = FrameReader::new(&[0x80u8, 0x80][..], "x");
    assert!(
        r.next_frame()
            .await
            .unwrap_err()
            .to_string()
            .contains("length prefix")
    );
    let mut r = FrameReader::new(&[0xffu8; 11][..], "x");
    assert!(
        r.next_frame()
            .await
            .unwrap_err()
            .to_string()
            .contains("varint")
    );
}

#[tokio::test]
async fn skips_oversize_frames_and_keeps_going() {
    let mut data = Vec::new();
    prost::encoding::encode_varint(MAX_FEED_BYTES as u64 + 1, &mut data);
    data.extend(std::iter::repeat_n(0u8, MAX_FEED_BYTES + 1));
    encode_frame(b"after", &mut data);
    let mut r = FrameReader::new(&data[..], "x");
    assert!(
        matches!(r.next_frame().await.unwrap(), Frame::Oversize(n) if n == MAX_FEED_BYTES as u64 + 1)
    );
    assert!(matches!(r.next_frame().await.unwrap(), Frame::Message(b) if &b[..] == b"after"));
}

use super::*;

fn headers_of(mut buf: &[u8]) -> Vec<(FrameHeader, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(h) = FrameHeader::parse(buf) {
        let end = HEADER_LEN + h.len as usize;
        out.push((h, buf[HEADER_LEN..end].to_vec()));
        buf = &buf[end..];
    }
    assert!(buf.is_empty(), "trailing bytes");
    out
}

#[test]
fn header_round_trips_and_ignores_the_reserved_bit() {
    let mut buf = Vec::new();
    put_header(&mut buf, 0x01_02_03, kind::HEADERS, flag::END_HEADERS, 7);
    assert_eq!(buf.len(), HEADER_LEN);
    let h = FrameHeader::parse(&buf).unwrap();
    assert_eq!(
        h,
        FrameHeader {
            len: 0x01_02_03,
            kind: kind::HEADERS,
            flags: flag::END_HEADERS,
            stream_id: 7
        }
    );
    buf[5] |= 0x80;
    assert_eq!(FrameHeader::parse(&buf).unwrap().stream_id, 7);
    assert_eq!(FrameHeader::parse(&buf[..8]), None);
}

#[test]
fn data_is_split_at_the_max_frame_size_across_parts() {
    let mut buf = Vec::new();
    let a = vec![1u8; 10];
    let b = vec![2u8; 25];
    put_data(&mut buf, 3, &[&a, &[], &b], 16, true);
    let frames = headers_of(&buf);
    let lens: Vec<u32> = frames.iter().map(|(h, _)| h.len).collect();
    assert_eq!(lens, vec![16, 16, 3]);
    let flags: Vec<u8> = frames.iter().map(|(h, _)| h.flags).collect();
    assert_eq!(flags, vec![0, 0, flag::END_STREAM]);
    let joined: Vec<u8> = frames.iter().flat_map(|(_, p)| p.clone()).collect();
    assert_eq!(joined, [a, b].concat());
}

#[test]
fn empty_data_is_one_empty_frame() {
    let mut buf = Vec::new();
    put_data(&mut buf, 5, &[], 16_384, true);
    let frames = headers_of(&buf);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0.len, 0);
    assert!(frames[0].0.has(flag::END_STREAM));
}

#[test]
fn a_long_header_block_continues_and_only_the_last_frame_ends_headers() {
    let mut buf = Vec::new();
    let block = vec![9u8; 40];
    put_headers(&mut buf, 1, &block, 16, true);
    let frames = headers_of(&buf);
    let kinds: Vec<u8> = frames.iter().map(|(h, _)| h.kind).collect();
    assert_eq!(
        kinds,
        vec![kind::HEADERS, kind::CONTINUATION, kind::CONTINUATION]
    );
    assert_eq!(frames[0].0.flags, flag::END_STREAM);
    assert_eq!(frames[1].0.flags, 0);
    assert_eq!(frames[2].0.flags, flag::END_HEADERS);
}

#[test]
fn settings_are_checked_as_the_rfc_says() {
    let entry = |id: u16, value: u32| [id.to_be_bytes().as_slice(), &value.to_be_bytes()].concat();
    let ok = [
        entry(setting::INITIAL_WINDOW_SIZE, 1_000),
        entry(setting::MAX_FRAME_SIZE, 20_000),
        entry(setting::HEADER_TABLE_SIZE, 0),
        entry(0x99, 1),
    ]
    .concat();
    assert_eq!(
        parse_settings(&ok),
        Ok(PeerSettings {
            header_table_size: Some(0),
            initial_window: Some(1_000),
            max_frame_size: Some(20_000)
        })
    );
    let reason = |p: &[u8]| parse_settings(p).unwrap_err().reason;
    assert_eq!(reason(&[0; 5]), Reason::FrameSizeError);
    assert_eq!(
        reason(&entry(setting::ENABLE_PUSH, 2)),
        Reason::ProtocolError
    );
    assert_eq!(
        reason(&entry(setting::INITIAL_WINDOW_SIZE, 1 << 31)),
        Reason::FlowControlError
    );
    assert_eq!(
        reason(&entry(setting::MAX_FRAME_SIZE, 100)),
        Reason::ProtocolError
    );
    assert_eq!(
        reason(&entry(setting::MAX_FRAME_SIZE, 1 << 24)),
        Reason::ProtocolError
    );
}

#[test]
fn padding_is_removed_and_too_much_of_it_is_refused() {
    let padded = FrameHeader {
        len: 0,
        kind: kind::DATA,
        flags: flag::PADDED,
        stream_id: 1,
    };
    assert_eq!(unpad(&padded, &[2, b'h', b'i', 0, 0]), Some(&b"hi"[..]));
    assert_eq!(unpad(&padded, &[3, b'h', 0]), None);
    assert_eq!(unpad(&padded, &[]), None);
    let plain = FrameHeader { flags: 0, ..padded };
    assert_eq!(unpad(&plain, &[2, 0]), Some(&[2u8, 0][..]));
}

#[test]
fn goaway_and_rst_stream_carry_their_codes() {
    let mut buf = Vec::new();
    put_goaway(&mut buf, 9, Reason::ProtocolError, "bad");
    put_rst_stream(&mut buf, 3, Reason::RefusedStream);
    put_window_update(&mut buf, 0, 77);
    let frames = headers_of(&buf);
    assert_eq!(
        frames[0].1,
        [&9u32.to_be_bytes()[..], &1u32.to_be_bytes(), b"bad"].concat()
    );
    assert_eq!(frames[1].1, 7u32.to_be_bytes());
    assert_eq!(frames[2].1, 77u32.to_be_bytes());
}

#[test]
fn appended_messages_share_frames_up_to_the_max_frame_size() {
    let mut buf = Vec::new();
    let mut open = None;
    append_data(&mut buf, &mut open, 1, &[&[1; 6]], 16);
    append_data(&mut buf, &mut open, 1, &[&[2; 4], &[3; 2]], 16);
    // 12 bytes in one frame; 6 more do not fit: a message that fits a frame of its own is
    // not split to fill the open one.
    append_data(&mut buf, &mut open, 1, &[&[4; 6]], 16);
    let frames = headers_of(&buf);
    let lens: Vec<u32> = frames.iter().map(|(h, _)| h.len).collect();
    assert_eq!(lens, vec![12, 6]);
    // Something else written after the open frame: the next message starts a new one.
    put_window_update(&mut buf, 0, 1);
    append_data(&mut buf, &mut open, 1, &[&[5; 2]], 16);
    // A message larger than a frame: split, and the short last frame stays open.
    append_data(&mut buf, &mut open, 1, &[&[6; 20]], 16);
    append_data(&mut buf, &mut open, 1, &[&[7; 4]], 16);
    let frames = headers_of(&buf);
    let lens: Vec<u32> = frames.iter().map(|(h, _)| h.len).collect();
    assert_eq!(lens, vec![12, 6, 4, 2, 16, 8]);
    let data: Vec<u8> = frames
        .iter()
        .filter(|(h, _)| h.kind == kind::DATA)
        .flat_map(|(_, p)| p.clone())
        .collect();
    let expected = [
        vec![1; 6],
        vec![2; 4],
        vec![3; 2],
        vec![4; 6],
        vec![5; 2],
        vec![6; 20],
        vec![7; 4],
    ]
    .concat();
    assert_eq!(data, expected);
    assert!(
        frames
            .iter()
            .all(|(h, _)| h.flags == 0 && (h.kind != kind::DATA || h.stream_id == 1))
    );
}

mod arbitrary {
    use proptest::prelude::*;

    use super::super::*;
    use crate::headers;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Whatever the bytes, decoding never panics and a parsed header is what was there.
        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some(h) = FrameHeader::parse(&bytes) {
                let mut again = Vec::new();
                put_header(&mut again, h.len as usize, h.kind, h.flags, h.stream_id);
                prop_assert_eq!(&again[..5], &bytes[..5]);
                let _ = unpad(&h, &bytes[HEADER_LEN..]);
            }
            let _ = parse_settings(&bytes);
            let mut hpack = loona_hpack::Decoder::new();
            hpack.set_max_allowed_table_size(4096);
            let _ = headers::decode_request(&mut hpack, &bytes, 16 * 1024);
        }

        /// Frames written by the encoders parse back with their payloads.
        #[test]
        fn encoded_frames_parse_back(
            kind in any::<u8>(),
            flags in any::<u8>(),
            id in 0u32..=MAX_WINDOW,
            payload in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut buf = Vec::new();
            put_frame(&mut buf, kind, flags, id, &payload);
            let h = FrameHeader::parse(&buf).unwrap();
            prop_assert_eq!((h.kind, h.flags, h.stream_id, h.len as usize), (kind, flags, id, payload.len()));
            prop_assert_eq!(&buf[HEADER_LEN..], &payload[..]);
        }
    }
}

use super::*;

/// RFC 7541 C.4.1: a request with `:authority www.example.com` Huffman-coded.
const C41: &[u8] = &[
    0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4,
    0xff,
];

fn fields(block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    loona_hpack::Decoder::new().decode(block).unwrap()
}

#[test]
fn huffman_strings_become_raw_and_decode_the_same() {
    let raw = raw_strings(C41).unwrap();
    assert!(raw.windows(15).any(|w| w == b"www.example.com"));
    assert_eq!(fields(&raw), fields(C41));
}

#[test]
fn a_block_without_huffman_strings_is_left_as_it_is() {
    let mut block = vec![0x82, 0x00];
    crate::headers::put_str(&mut block, b"x-a");
    crate::headers::put_str(&mut block, b"b");
    assert_eq!(raw_strings(&block), None);
}

#[test]
fn a_truncated_or_badly_coded_block_is_left_to_loona() {
    assert_eq!(raw_strings(&C41[..C41.len() - 1]), None);
    // An all-zero code ends in 7 zero bits of padding, not the EOS prefix.
    let bad = [0x00, 0x81, 0x00, 0x81, 0x00];
    assert_eq!(raw_strings(&bad), None);
    assert!(loona_hpack::Decoder::new().decode(&bad).is_err());
}

#[test]
fn strings_after_a_multi_byte_index_are_found() {
    // Literal without indexing, name index 70 (4-bit prefix: 0x0f then 55), value Huffman.
    let mut block = vec![0x0f, 55];
    block.extend_from_slice(&C41[4..]);
    let raw = raw_strings(&block).unwrap();
    assert_eq!(&raw[..2], &[0x0f, 55]);
    assert_eq!(&raw[2..], &[&[15u8][..], b"www.example.com"].concat()[..]);
}

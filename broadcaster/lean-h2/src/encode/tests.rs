//! Unit tests of `encode.rs`.

use http::{HeaderMap, HeaderValue};

use super::*;

#[test]
fn responses_use_static_status_200_and_decode_back() {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/grpc"));
    headers.insert(
        "grpc-message",
        HeaderValue::from_static("no%20such%20stream"),
    );
    headers.insert("connection", HeaderValue::from_static("close"));
    let out = Encoder::default().response(200, &headers);
    assert_eq!(out[0], 0x88);
    let decoded = loona_hpack::Decoder::new().decode(&out).unwrap();
    let decoded: Vec<(String, String)> = decoded
        .into_iter()
        .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
        .collect();
    assert_eq!(
        decoded,
        vec![
            (":status".into(), "200".into()),
            ("content-type".into(), "application/grpc".into()),
            ("grpc-message".into(), "no%20such%20stream".into()),
        ]
    );
    let out = Encoder::default().response(431, &HeaderMap::new());
    let decoded = loona_hpack::Decoder::new().decode(&out).unwrap();
    assert_eq!(decoded, vec![(b":status".to_vec(), b"431".to_vec())]);
}

#[test]
fn long_values_use_multi_byte_lengths() {
    let mut headers = HeaderMap::new();
    let long = "v".repeat(1000);
    headers.insert("x-long", HeaderValue::from_str(&long).unwrap());
    let out = Encoder::default().fields(&headers);
    let decoded = loona_hpack::Decoder::new().decode(&out).unwrap();
    assert_eq!(decoded[0].1, long.as_bytes());
}

fn decode(decoder: &mut loona_hpack::Decoder<'static>, block: &[u8]) -> Vec<(String, String)> {
    decoder
        .decode(block)
        .unwrap()
        .into_iter()
        .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
        .collect()
}

#[test]
fn repeated_fields_become_one_byte_indexes_and_decode_back() {
    let mut enc = Encoder::default();
    let mut dec = loona_hpack::Decoder::new();
    let mut head = HeaderMap::new();
    head.insert("content-type", HeaderValue::from_static("application/grpc"));
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers.insert("grpc-message", HeaderValue::from_static("varies"));
    let first = enc.response(200, &head);
    let first_trailers = enc.fields(&trailers);
    let second = enc.response(200, &head);
    let second_trailers = enc.fields(&trailers);
    assert_eq!(second.len(), 2, "{second:?}");
    assert!(second_trailers.len() < first_trailers.len());
    for block in [&first, &first_trailers, &second, &second_trailers] {
        let fields = decode(&mut dec, block);
        assert!(!fields.is_empty());
    }
    assert_eq!(
        decode(&mut dec, &enc.fields(&trailers)),
        vec![
            ("grpc-status".into(), "0".into()),
            ("grpc-message".into(), "varies".into())
        ]
    );
}

#[test]
fn the_table_follows_the_peers_size_and_announces_it() {
    let mut enc = Encoder::default();
    let mut head = HeaderMap::new();
    head.insert("content-type", HeaderValue::from_static("application/grpc"));
    enc.response(200, &head);
    enc.set_peer_table_size(0);
    let block = enc.response(200, &head);
    assert_eq!(block[0], 0x20, "size update to 0 first");
    let mut dec0 = loona_hpack::Decoder::new();
    dec0.set_max_allowed_table_size(4096);
    // Nothing is indexed any more: a decoder with no table reads every later block.
    let later = enc.response(200, &head);
    assert_eq!(later[0], 0x88);
    assert_eq!(decode(&mut dec0, &block).len(), 2);
    // Many distinct values never grow the table past its size.
    let mut enc = Encoder::default();
    for i in 0..1000 {
        let mut h = HeaderMap::new();
        h.insert("x-n", HeaderValue::from_str(&i.to_string()).unwrap());
        enc.fields(&h);
        assert!(enc.size <= 4096);
    }
}

#[test]
fn an_entry_keeps_where_its_name_ends() {
    let e = Entry::new(b"ab", b"c");
    assert!(e.is(b"ab", b"c"));
    assert!(!e.is(b"a", b"bc"), "same bytes, another field");
    assert_eq!(e.size(), 3 + 32);
}

#[test]
fn an_entry_is_one_allocation_and_small() {
    // Every connection that answered a stream keeps its indexed fields: one boxed slice per
    // entry (24 bytes here), where two `Vec`s took 48 and two allocations (BENCHMARKS.md,
    // memory per idle subscriber).
    assert!(std::mem::size_of::<Entry>() <= 24);
}

#[test]
fn the_encoder_stays_small() {
    // Inline in every connection (BENCHMARKS.md, memory per idle subscriber): the entries'
    // deque and three `u16` sizes, 40 bytes, where `usize`s took 64.
    assert!(std::mem::size_of::<Encoder>() <= 40);
}

use super::*;

/// A request block as a client's encoder would write it (literals, no indexing).
fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        put_str(&mut out, name.as_bytes());
        put_str(&mut out, value.as_bytes());
    }
    out
}

fn grpc_request() -> Vec<(&'static str, &'static str)> {
    vec![
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "localhost"),
        (":path", "/a.B/C"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
}

fn decode(fields: &[(&str, &str)]) -> Result<RequestHead, HeadError> {
    decode_request(&mut loona_hpack::Decoder::new(), &block(fields), 16 * 1024)
}

#[test]
fn a_grpc_request_decodes() {
    let head = decode(&grpc_request()).unwrap();
    assert_eq!(head.method, "POST");
    assert_eq!(head.path, "/a.B/C");
    assert_eq!(head.authority, "localhost");
    assert_eq!(head.headers["content-type"], "application/grpc");
}

#[test]
fn malformed_requests_are_refused_with_a_reason() {
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![(":method", "POST"), (":scheme", "http")], "missing"),
        (
            [grpc_request(), vec![(":path", "/again")]].concat(),
            "pseudo-header after a regular header",
        ),
        (
            [vec![(":method", "GET")], grpc_request()].concat(),
            "duplicate pseudo-header :method",
        ),
        (
            [grpc_request(), vec![("connection", "close")]].concat(),
            "connection-specific",
        ),
        ([grpc_request(), vec![("Upper", "x")]].concat(), "uppercase"),
        (
            [vec![(":protocol", "x")], grpc_request()].concat(),
            "unknown pseudo-header",
        ),
    ];
    for (fields, why) in cases {
        match decode(&fields) {
            Err(HeadError::Malformed(m)) => assert!(m.contains(why), "{m} vs {why}"),
            other => panic!("{fields:?}: {other:?}"),
        }
    }
    let te = [grpc_request()[..5].to_vec(), vec![("te", "gzip")]].concat();
    assert!(matches!(decode(&te), Err(HeadError::Malformed(_))));
}

#[test]
fn the_header_list_limit_counts_32_bytes_per_field_and_keeps_hpack_in_step() {
    let mut decoder = loona_hpack::Decoder::new();
    let big = "x".repeat(200);
    let mut fields = grpc_request();
    fields.push(("big", &big));
    // Indexed so that the next block refers to it: the table must have it even though the
    // first block was refused.
    let mut first = Vec::new();
    first.push(0x40);
    put_str(&mut first, b"big");
    put_str(&mut first, big.as_bytes());
    first.extend(block(&grpc_request()));
    match decode_request(&mut decoder, &first, 200) {
        Err(HeadError::TooLarge { size, limit: 200 }) => assert!(size > 200),
        other => panic!("{other:?}"),
    }
    let mut second = block(&grpc_request());
    second.push(0x80 | 62); // the first dynamic entry: big
    let head = decode_request(&mut decoder, &second, 16 * 1024).unwrap();
    assert_eq!(head.headers["big"], big.as_str());
}

#[test]
fn a_broken_block_is_a_compression_error() {
    // Index 200 is in neither table.
    let mut broken = vec![0x80 | 0x7f];
    broken.push(200 - 127);
    assert!(matches!(decode(&[]), Err(HeadError::Malformed(_))));
    assert!(matches!(
        decode_request(&mut loona_hpack::Decoder::new(), &broken, 16 * 1024),
        Err(HeadError::Compression(_))
    ));
}

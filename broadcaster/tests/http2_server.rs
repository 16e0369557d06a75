//! The lean HTTP/2 server (`--grpc-server lean`): the real tonic client on one connection
//! (Subscribe, ListStreams, health Check and Watch, reflection), many subscribers on one
//! connection, a subscriber that never reads lagging alone, shutdown; and raw-socket clients
//! for every malformed-input rule, each followed by a check that other connections are served.

mod common;
#[path = "../lean-h2/tests/support/raw.rs"]
mod raw;

use std::time::Duration;

use common::{entity, feed_of, good_feed, next_update};
use raw::*;
use stallwatch_testkit::wait::{WAIT, eventually};
use tonic::transport::{Channel, Endpoint};
use transit_broadcaster::generated::transit_v1::transit_broadcaster_client::TransitBroadcasterClient;
use transit_broadcaster::generated::transit_v1::{
    BoundingBox, ListStreamsRequest, SubscribeRequest,
};
use transit_broadcaster::pipeline::source::SourceSpec;
use transit_broadcaster::{Config, GrpcServer, Running};

const SUBSCRIBE: &str = "/stallwatch.transit.v1.TransitBroadcaster/Subscribe";

/// The raw client's Subscribe call.
trait RawSubscribe {
    async fn subscribe(&mut self, stream_id: u32, request: &SubscribeRequest);
}

impl RawSubscribe for Raw {
    async fn subscribe(&mut self, stream_id: u32, request: &SubscribeRequest) {
        self.call(
            stream_id,
            SUBSCRIBE,
            &prost::Message::encode_to_vec(request),
        )
        .await;
    }
}

async fn start(server: GrpcServer) -> Running {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("lean_h2=debug")
        .try_init();
    transit_broadcaster::start(Config {
        grpc_server: server,
        shutdown_grace: Duration::from_secs(3),
        ..Config::loopback(SourceSpec::Manual)
    })
    .await
    .expect("start")
}

async fn channel(running: &Running) -> Channel {
    Endpoint::from_shared(format!("http://{}", running.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn request(stream: &str) -> SubscribeRequest {
    SubscribeRequest {
        stream: stream.into(),
        ..Default::default()
    }
}

/// Another connection still gets answers: a protocol error cost only its own connection.
async fn still_serving(running: &Running) {
    let mut client = TransitBroadcasterClient::new(channel(running).await);
    let list = client.list_streams(ListStreamsRequest {}).await.unwrap();
    assert_eq!(list.into_inner().streams[0].name, "all");
}

#[tokio::test]
async fn one_connection_serves_subscribe_list_streams_health_watch_and_reflection() {
    let running = start(GrpcServer::Lean).await;
    let channel = channel(&running).await;
    let mut transit = TransitBroadcasterClient::new(channel.clone());
    let mut updates = transit
        .subscribe(request("all"))
        .await
        .unwrap()
        .into_inner();
    let stream = running.stream("all").unwrap();
    eventually("subscriber", || stream.hub.subscriber_count() == 1).await;
    running.ingest().push(good_feed());
    let update = next_update(&mut updates).await;
    assert_eq!(update.vehicles.len(), 2);

    let list = transit
        .list_streams(ListStreamsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.streams[0].subscribers, 1);

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let check = tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    };
    let status = health
        .check(check.clone())
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let mut watch = health.watch(check).await.unwrap().into_inner();
    let first = tokio::time::timeout(WAIT, watch.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.status, status);

    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let ask = |symbol: &str| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(symbol.into())),
    };
    // Bidi streaming: two requests, two answers, on the same connection.
    let mut answers = reflection
        .server_reflection_info(futures::stream::iter([
            ask("stallwatch.transit.v1.TransitBroadcaster"),
            ask("grpc.health.v1.Health"),
        ]))
        .await
        .unwrap()
        .into_inner();
    for _ in 0..2 {
        let answer = answers.message().await.unwrap().unwrap();
        assert!(
            matches!(
                answer.message_response,
                Some(MessageResponse::FileDescriptorResponse(_))
            ),
            "{answer:?}"
        );
    }

    // An unknown method: UNIMPLEMENTED, like tonic.
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let unknown: Result<tonic::Response<ListStreamsRequest>, _> = grpc
        .unary(
            tonic::Request::new(ListStreamsRequest {}),
            http::uri::PathAndQuery::from_static("/stallwatch.transit.v1.TransitBroadcaster/Nope"),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    assert_eq!(unknown.unwrap_err().code(), tonic::Code::Unimplemented);

    // The subscription still flows after all that.
    running.ingest().push(good_feed());
    assert_eq!(next_update(&mut updates).await.vehicles.len(), 2);
    running.shutdown().await;
}

#[tokio::test]
async fn errors_before_the_stream_opens_are_the_trailers_only_responses_tonic_sends() {
    let lean = start(GrpcServer::Lean).await;
    let tonic = start(GrpcServer::Tonic).await;
    let bad_bbox = SubscribeRequest {
        stream: "all".into(),
        bbox: Some(BoundingBox {
            min_lat: 10.0,
            min_lon: 0.0,
            max_lat: 5.0,
            max_lon: 1.0,
        }),
        ..Default::default()
    };
    for req in [request("nope/ü 100%"), bad_bbox] {
        let mut answers = Vec::new();
        for running in [&lean, &tonic] {
            let mut raw = Raw::connect(running.grpc_addr).await;
            raw.subscribe(1, &req).await;
            let (fields, end_stream) = raw.headers(1).await;
            assert!(end_stream, "trailers-only");
            // hyper adds a `date` header; nothing else may differ.
            answers.push(
                fields
                    .into_iter()
                    .filter(|(n, _)| n != "date")
                    .collect::<Vec<_>>(),
            );
        }
        let status = field(&answers[0], "grpc-status").unwrap();
        assert!(status == "5" || status == "3", "{answers:?}");
        assert!(field(&answers[0], "grpc-message").unwrap().contains('%'));
        assert_eq!(answers[0], answers[1], "lean vs tonic");
    }
    // And through the tonic client, the decoded message.
    let mut client = TransitBroadcasterClient::new(channel(&lean).await);
    let err = client.subscribe(request("nope/ü 100%")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(
        err.message().starts_with("no stream \"nope/ü 100%\""),
        "{}",
        err.message()
    );
    lean.shutdown().await;
    tonic.shutdown().await;
}

#[tokio::test]
async fn many_subscribers_on_one_connection_all_receive_every_update() {
    let running = start(GrpcServer::Lean).await;
    let channel = channel(&running).await;
    let mut streams = Vec::new();
    for _ in 0..200 {
        let mut client = TransitBroadcasterClient::new(channel.clone());
        streams.push(client.subscribe(request("all")).await.unwrap().into_inner());
    }
    let stream = running.stream("all").unwrap();
    eventually("200 subscribers", || stream.hub.subscriber_count() == 200).await;
    for _ in 0..5 {
        running.ingest().push(good_feed());
    }
    for s in &mut streams {
        let mut seqs = Vec::new();
        for _ in 0..5 {
            let u = next_update(s).await;
            assert_eq!(u.missed, 0);
            seqs.push(u.seq);
        }
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    }
    assert_eq!(stream.hub.lagged_total(), 0);
    running.shutdown().await;
}

#[tokio::test]
async fn a_subscriber_that_never_reads_lags_alone_on_a_shared_connection() {
    let running = start(GrpcServer::Lean).await;
    // A tiny stream window: an unread stream runs out of it after one update.
    let channel = Endpoint::from_shared(format!("http://{}", running.grpc_addr))
        .unwrap()
        .initial_stream_window_size(Some(4096))
        .initial_connection_window_size(Some(16 << 20))
        .connect()
        .await
        .unwrap();
    let mut client = TransitBroadcasterClient::new(channel);
    let mut reader = client.subscribe(request("all")).await.unwrap().into_inner();
    let _never_read = client.subscribe(request("all")).await.unwrap().into_inner();
    let stream = running.stream("all").unwrap();
    eventually("2 subscribers", || stream.hub.subscriber_count() == 2).await;
    let big = feed_of(
        (0..40)
            .map(|i| entity(&format!("V{i}"), "R1", 52.5, 13.4))
            .collect(),
    );
    let total = 200;
    for n in 0..total {
        running.ingest().push(big.clone());
        // Paced so that only the stalled subscriber can fall behind.
        let u = next_update(&mut reader).await;
        assert_eq!(
            u.missed, 0,
            "the reading subscriber missed nothing at update {n}"
        );
    }
    assert!(
        stream.hub.lagged_total() > 0,
        "the stalled subscriber lagged"
    );
    assert_eq!(stream.hub.subscriber_count(), 2);
    running.shutdown().await;
}

#[tokio::test]
async fn shutdown_sends_goaway_and_ends_subscriptions_with_unavailable() {
    let running = start(GrpcServer::Lean).await;
    let mut updates = common::subscribe(running.grpc_addr, "all").await;
    let mut raw = Raw::connect(running.grpc_addr).await;
    raw.subscribe(1, &request("all")).await;
    let (head, end) = raw.headers(1).await;
    assert!(!end);
    assert_eq!(field(&head, ":status"), Some("200"));
    let stream = running.stream("all").unwrap();
    eventually("2 subscribers", || stream.hub.subscriber_count() == 2).await;
    let started = std::time::Instant::now();
    let shutdown = tokio::spawn(running.shutdown());
    let goaway = raw.until("GOAWAY", |f| f.kind == GOAWAY).await;
    assert_eq!(goaway.code(), NO_ERROR);
    assert_eq!(
        u32::from_be_bytes(goaway.payload[..4].try_into().unwrap()),
        1
    );
    let (trailers, end) = raw.headers(1).await;
    assert!(end);
    assert_eq!(field(&trailers, "grpc-status"), Some("14"));
    // Percent-encoded, as tonic writes grpc-message.
    assert_eq!(
        field(&trailers, "grpc-message"),
        Some("server%20shutting%20down")
    );
    assert!(
        raw.next().await.is_none(),
        "closed after the last stream ended"
    );
    let err = tokio::time::timeout(WAIT, updates.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert_eq!(err.message(), "server shutting down");
    shutdown.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no wait for the grace period"
    );
}

#[tokio::test]
async fn connection_errors_answer_goaway_with_the_rfc_code_and_spare_other_connections() {
    let running = start(GrpcServer::Lean).await;
    let addr = running.grpc_addr;
    let huge = vec![0u8; 16_385];
    type Case = (&'static str, u32, Vec<(u8, u8, u32, Vec<u8>)>);
    let cases: Vec<Case> = vec![
        (
            "frame over the max frame size",
            FRAME_SIZE_ERROR,
            vec![(PING, 0, 0, huge)],
        ),
        (
            "PING of 7 bytes",
            FRAME_SIZE_ERROR,
            vec![(PING, 0, 0, vec![0; 7])],
        ),
        (
            "SETTINGS ACK with payload",
            FRAME_SIZE_ERROR,
            vec![(SETTINGS, ACK, 0, vec![0; 6])],
        ),
        (
            "SETTINGS bad length",
            FRAME_SIZE_ERROR,
            vec![(SETTINGS, 0, 0, vec![0; 5])],
        ),
        (
            "SETTINGS_INITIAL_WINDOW_SIZE too big",
            FLOW_CONTROL_ERROR,
            vec![(
                SETTINGS,
                0,
                0,
                [&4u16.to_be_bytes()[..], &(1u32 << 31).to_be_bytes()].concat(),
            )],
        ),
        (
            "WINDOW_UPDATE 0 on the connection",
            PROTOCOL_ERROR,
            vec![(WINDOW_UPDATE, 0, 0, vec![0; 4])],
        ),
        (
            "connection window overflow",
            FLOW_CONTROL_ERROR,
            vec![(WINDOW_UPDATE, 0, 0, 0x7fff_ffffu32.to_be_bytes().to_vec())],
        ),
        (
            "PUSH_PROMISE",
            PROTOCOL_ERROR,
            vec![(PUSH_PROMISE, END_HEADERS, 1, vec![0; 4])],
        ),
        (
            "CONTINUATION alone",
            PROTOCOL_ERROR,
            vec![(CONTINUATION, END_HEADERS, 1, vec![])],
        ),
        (
            "interrupted header block",
            PROTOCOL_ERROR,
            vec![
                (HEADERS, 0, 1, request_block(SUBSCRIBE, &[])),
                (PING, 0, 0, vec![0; 8]),
            ],
        ),
        (
            "even stream id",
            PROTOCOL_ERROR,
            vec![(HEADERS, END_HEADERS, 2, request_block(SUBSCRIBE, &[]))],
        ),
        // RFC 9113 section 5.1.1: a lower id than one already opened (never itself opened).
        (
            "decreasing stream id",
            PROTOCOL_ERROR,
            vec![
                (HEADERS, END_HEADERS, 5, request_block(SUBSCRIBE, &[])),
                (HEADERS, END_HEADERS, 3, request_block(SUBSCRIBE, &[])),
            ],
        ),
        (
            "HEADERS again on a stream that was reset",
            STREAM_CLOSED,
            vec![
                (HEADERS, END_HEADERS, 5, request_block(SUBSCRIBE, &[])),
                (RST_STREAM, 0, 5, 8u32.to_be_bytes().to_vec()),
                (HEADERS, END_HEADERS, 5, request_block(SUBSCRIBE, &[])),
            ],
        ),
        (
            "HPACK garbage",
            COMPRESSION_ERROR,
            vec![(HEADERS, END_HEADERS, 1, vec![0xff, 0xff, 0xff, 0xff, 0x0f])],
        ),
        (
            "DATA on an idle stream",
            PROTOCOL_ERROR,
            vec![(DATA, 0, 7, vec![0; 3])],
        ),
        (
            "RST_STREAM on an idle stream",
            PROTOCOL_ERROR,
            vec![(RST_STREAM, 0, 9, vec![0; 4])],
        ),
        // A unary call reads one message and leaves the rest unconsumed: no window comes back.
        ("DATA beyond the connection window", FLOW_CONTROL_ERROR, {
            let mut frames = vec![(
                HEADERS,
                END_HEADERS,
                1,
                request_block("/grpc.health.v1.Health/Check", &[]),
            )];
            frames.extend((0..5).map(|_| (DATA, 0, 1, vec![0; 16_000])));
            frames
        }),
        (
            "padding longer than the frame",
            PROTOCOL_ERROR,
            vec![
                (HEADERS, END_HEADERS, 1, request_block(SUBSCRIBE, &[])),
                (DATA, PADDED, 1, vec![9, 1, 2]),
            ],
        ),
    ];
    for (what, code, frames) in cases {
        eprintln!("case: {what}");
        let mut raw = Raw::connect(addr).await;
        for (kind, flags, id, payload) in frames {
            raw.send(kind, flags, id, &payload).await;
        }
        let (got, debug) = raw.goaway().await;
        assert_eq!(got, code, "{what}: {debug}");
        assert!(!debug.is_empty(), "{what}: GOAWAY says why");
    }
    // A bad preface and a first frame that is not SETTINGS.
    let mut raw = Raw::connect_bare(addr).await;
    raw.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(raw.goaway().await.0, PROTOCOL_ERROR);
    let mut raw = Raw::connect_bare(addr).await;
    raw.write(PREFACE).await;
    raw.send(PING, 0, 0, &[0; 8]).await;
    assert_eq!(raw.goaway().await.0, PROTOCOL_ERROR);
    still_serving(&running).await;
    running.shutdown().await;
}

#[tokio::test]
async fn control_frames_are_answered_and_priority_is_ignored() {
    let running = start(GrpcServer::Lean).await;
    let mut raw = Raw::connect(running.grpc_addr).await;
    let settings = raw
        .until("server SETTINGS", |f| {
            f.kind == SETTINGS && f.flags & ACK == 0
        })
        .await;
    assert!(
        settings.payload.chunks(6).any(|s| s[..2] == [0, 3]),
        "MAX_CONCURRENT_STREAMS sent"
    );
    raw.until("SETTINGS ACK", |f| f.kind == SETTINGS && f.flags & ACK != 0)
        .await;
    raw.send(PING, 0, 0, b"12345678").await;
    let pong = raw.until("PING ACK", |f| f.kind == PING).await;
    assert_eq!(
        (pong.flags, pong.payload.as_slice()),
        (ACK, &b"12345678"[..])
    );
    raw.send(PRIORITY, 0, 3, &[0, 0, 0, 1, 16]).await;
    // HEADERS with PADDED and PRIORITY flags still open a subscription.
    let block = request_block(SUBSCRIBE, &[]);
    let mut payload = vec![4u8, 0, 0, 0, 0, 16];
    payload.extend_from_slice(&block);
    payload.extend_from_slice(&[0; 4]);
    raw.send(HEADERS, END_HEADERS | PADDED | PRIORITY_FLAG, 1, &payload)
        .await;
    raw.send(
        DATA,
        END_STREAM,
        1,
        &grpc_message(0, &prost::Message::encode_to_vec(&request("all"))),
    )
    .await;
    let (head, end) = raw.headers(1).await;
    assert!(!end);
    assert_eq!(field(&head, "content-type"), Some("application/grpc"));
    let stream = running.stream("all").unwrap();
    eventually("subscriber", || stream.hub.subscriber_count() == 1).await;
    running.ingest().push(good_feed());
    raw.until("DATA", |f| f.kind == DATA && f.stream_id == 1)
        .await;
    // RST_STREAM ends that subscription; a stream-level WINDOW_UPDATE of 0 resets the stream.
    raw.send(RST_STREAM, 0, 1, &8u32.to_be_bytes()).await;
    eventually("unsubscribed", || stream.hub.subscriber_count() == 0).await;
    raw.subscribe(3, &request("all")).await;
    raw.headers(3).await;
    raw.send(WINDOW_UPDATE, 0, 3, &[0; 4]).await;
    assert_eq!(raw.rst(3).await, PROTOCOL_ERROR);
    // The peer's GOAWAY: no streams left, so the server closes.
    raw.send(GOAWAY, 0, 0, &[0; 8]).await;
    while raw.next().await.is_some() {}
    running.shutdown().await;
}

#[tokio::test]
async fn stream_errors_reset_only_their_stream() {
    let running = start(GrpcServer::Lean).await;
    let mut raw = Raw::connect(running.grpc_addr).await;
    raw.subscribe(1, &request("all")).await;
    raw.headers(1).await;
    // Header list over 16 KiB: 431, the connection goes on.
    let big = "x".repeat(17_000);
    let mut block = request_block(SUBSCRIBE, &[]);
    block.extend(literal_block(&[("x-big", &big)]));
    for chunk in block.chunks(16_000).enumerate() {
        let (i, chunk) = chunk;
        let last = (i + 1) * 16_000 >= block.len();
        let kind = if i == 0 { HEADERS } else { CONTINUATION };
        raw.send(
            kind,
            if last { END_HEADERS | END_STREAM } else { 0 },
            3,
            chunk,
        )
        .await;
    }
    let (fields, end) = raw.headers(3).await;
    assert_eq!((field(&fields, ":status"), end), (Some("431"), true));
    // Malformed request: uppercase header name.
    raw.send(
        HEADERS,
        END_HEADERS,
        5,
        &[
            request_block(SUBSCRIBE, &[]),
            literal_block(&[("Bad", "x")]),
        ]
        .concat(),
    )
    .await;
    assert_eq!(raw.rst(5).await, PROTOCOL_ERROR);
    // Compressed message flag and grpc-encoding: UNIMPLEMENTED (we accept identity only).
    raw.request(7, SUBSCRIBE, &[], 0).await;
    raw.send(DATA, END_STREAM, 7, &grpc_message(1, b"x")).await;
    let (fields, end) = raw.headers(7).await;
    assert_eq!((field(&fields, "grpc-status"), end), (Some("12"), true));
    raw.request(9, SUBSCRIBE, &[("grpc-encoding", "gzip")], 0)
        .await;
    let (fields, _) = raw.headers(9).await;
    assert_eq!(field(&fields, "grpc-status"), Some("12"));
    assert!(field(&fields, "grpc-message").unwrap().contains("gzip"));
    // A request message over the limit: OUT_OF_RANGE.
    raw.request(11, SUBSCRIBE, &[], 0).await;
    raw.send(DATA, 0, 11, &[0, 0, 1, 0, 1]).await;
    let (fields, _) = raw.headers(11).await;
    assert_eq!(field(&fields, "grpc-status"), Some("11"));
    // Stream 1 was never disturbed.
    running.ingest().push(good_feed());
    let data = raw
        .until("DATA on 1", |f| f.kind == DATA && f.stream_id == 1)
        .await;
    assert!(data.payload.len() > 5);
    running.shutdown().await;
}

#[tokio::test]
async fn request_bodies_get_window_back_as_they_are_consumed() {
    let running = start(GrpcServer::Lean).await;
    let mut raw = Raw::connect(running.grpc_addr).await;
    // A 48 KB request, more than half the initial window: the server gives it back.
    let routes: Vec<String> = (0..6000).map(|i| format!("R{i:05}")).collect();
    let message = prost::Message::encode_to_vec(&SubscribeRequest {
        stream: "all".into(),
        route_ids: routes,
        ..Default::default()
    });
    let body = grpc_message(0, &message);
    raw.request(1, SUBSCRIBE, &[], 0).await;
    for chunk in body.chunks(10_000) {
        raw.send(DATA, 0, 1, chunk).await;
    }
    let conn_update = raw
        .until("connection WINDOW_UPDATE", |f| {
            f.kind == WINDOW_UPDATE && f.stream_id == 0
        })
        .await;
    assert!(u32::from_be_bytes(conn_update.payload[..4].try_into().unwrap()) >= 32_767);
    let (head, end) = raw.headers(1).await;
    assert_eq!((field(&head, ":status"), end), (Some("200"), false));
    running.shutdown().await;
}

#[tokio::test]
async fn streams_past_max_concurrent_streams_are_refused() {
    let running = start(GrpcServer::Lean).await;
    let mut raw = Raw::connect(running.grpc_addr).await;
    let message = grpc_message(0, &prost::Message::encode_to_vec(&request("all")));
    let mut batch = Vec::new();
    for i in 0..1025u32 {
        let id = 2 * i + 1;
        let block = request_block(SUBSCRIBE, &[]);
        for (kind, flags, payload) in [(HEADERS, END_HEADERS, &block), (DATA, END_STREAM, &message)]
        {
            batch.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
            batch.extend_from_slice(&[kind, flags]);
            batch.extend_from_slice(&id.to_be_bytes());
            batch.extend_from_slice(payload);
        }
    }
    raw.write(&batch).await;
    assert_eq!(raw.rst(2049).await, REFUSED_STREAM);
    let stream = running.stream("all").unwrap();
    eventually("1024 subscribers", || stream.hub.subscriber_count() == 1024).await;
    running.shutdown().await;
}

#[tokio::test]
async fn window_settings_apply_to_open_streams_and_large_updates_split_at_max_frame_size() {
    let running = start(GrpcServer::Lean).await;
    // SETTINGS_INITIAL_WINDOW_SIZE 0: nothing may be sent until the window opens.
    let mut raw = Raw::connect_with(running.grpc_addr, &[(4, 0)]).await;
    raw.subscribe(1, &request("all")).await;
    raw.headers(1).await;
    let stream = running.stream("all").unwrap();
    eventually("subscriber", || stream.hub.subscriber_count() == 1).await;
    let big = feed_of(
        (0..400)
            .map(|i| entity(&format!("V{i}"), "R1", 52.5, 13.4))
            .collect(),
    );
    running.ingest().push(big);
    eventually("delivered to the queue", || {
        stream.hub.delivered_total() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Opening the window (the delta applies to the open stream) lets the update out.
    raw.send(
        SETTINGS,
        0,
        0,
        &[&4u16.to_be_bytes()[..], &1_000_000u32.to_be_bytes()].concat(),
    )
    .await;
    let mut frames = Vec::new();
    let mut got = 0usize;
    let mut total = None;
    while total != Some(got) {
        let f = raw
            .until("DATA", |f| f.kind == DATA && f.stream_id == 1)
            .await;
        if total.is_none() {
            assert!(frames.is_empty(), "no DATA before the window opened");
            total = Some(5 + u32::from_be_bytes(f.payload[1..5].try_into().unwrap()) as usize);
        }
        got += f.payload.len();
        frames.push(f.payload.len());
    }
    assert!(frames.len() > 1, "{frames:?}");
    assert!(frames.iter().all(|&n| n <= 16_384), "{frames:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn request_bytes_a_reset_stream_left_unconsumed_go_back_to_the_connection_window() {
    let running = start(GrpcServer::Lean).await;
    let mut raw = Raw::connect(running.grpc_addr).await;
    // Each round: a bridged request whose 48 KB body the service has not read yet when the
    // client resets it. Without giving that back, the second round would overrun the
    // connection's 64 KiB window.
    for id in [1u32, 3, 5] {
        raw.request(id, "/grpc.health.v1.Health/Check", &[], 0)
            .await;
        for _ in 0..3 {
            raw.send(DATA, 0, id, &[0; 16_000]).await;
        }
        raw.send(RST_STREAM, 0, id, &8u32.to_be_bytes()).await;
    }
    raw.send(PING, 0, 0, b"alive!!!").await;
    let pong = raw
        .until("PING ACK", |f| f.kind == PING || f.kind == GOAWAY)
        .await;
    assert_eq!(pong.kind, PING, "{pong:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn a_new_header_table_size_is_acknowledged_with_a_size_update_in_the_next_block() {
    let running = start(GrpcServer::Lean).await;
    // SETTINGS_HEADER_TABLE_SIZE 0: the next header block must start with a size update.
    let mut raw = Raw::connect_with(running.grpc_addr, &[(1, 0)]).await;
    raw.subscribe(1, &request("all")).await;
    let first = raw.until("HEADERS", |f| f.kind == HEADERS).await;
    assert_eq!(first.payload[0], 0x20, "{:?}", first.payload);
    let mut decoder = loona_hpack::Decoder::new();
    decoder.set_max_allowed_table_size(0);
    let fields = decoder.decode(&first.payload).unwrap();
    assert_eq!(fields[0], (b":status".to_vec(), b"200".to_vec()));
    raw.subscribe(3, &request("nope")).await;
    let second = raw
        .until("HEADERS", |f| f.kind == HEADERS && f.stream_id == 3)
        .await;
    assert_eq!(
        second.payload[0], 0x88,
        "only the first block carries the update"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn a_peer_past_a_limit_is_told_to_calm_down_and_counted_in_metrics() {
    let running = start(GrpcServer::Lean).await;
    let mut raw = Raw::connect(running.grpc_addr).await;
    let flood: Vec<u8> = (0..101).flat_map(|_| frame(PING, 0, 0, &[0; 8])).collect();
    raw.write(&flood).await;
    let (code, debug) = raw.goaway().await;
    assert_eq!((code, debug.as_str()), (ENHANCE_YOUR_CALM, "pings"));
    let metrics = reqwest::get(format!("http://{}/metrics", running.http_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("stallwatch_broadcaster_h2_limit_exceeded_total{reason=\"pings\"} 1"),
        "{metrics}"
    );
    still_serving(&running).await;
    running.shutdown().await;
}

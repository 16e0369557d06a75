//! A Subscribe client that decodes only the fields a bench reads (sequence number and
//! timestamps), so the measured cost is the server's, not the client's decoding. Shared by the
//! `fanout` (and its `scale` section) and `prepare` benches.

use tonic::transport::Channel;
use transit_broadcaster::generated::transit_v1::SubscribeRequest;

/// Subscribes to stream "all", decoding each update as `H` (a message declaring only the
/// fields it needs; prost skips the rest). `max_decode`: the largest update accepted.
pub async fn subscribe_light<H>(channel: Channel, max_decode: usize) -> tonic::Streaming<H>
where
    H: prost::Message + Default + Send + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(max_decode);
    grpc.ready().await.expect("channel ready");
    let codec = tonic_prost::ProstCodec::<SubscribeRequest, H>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/stallwatch.transit.v1.TransitBroadcaster/Subscribe",
    );
    grpc.server_streaming(
        tonic::Request::new(SubscribeRequest {
            stream: "all".into(),
            ..Default::default()
        }),
        path,
        codec,
    )
    .await
    .expect("subscribe")
    .into_inner()
}

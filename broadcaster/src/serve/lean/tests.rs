//! Pure tests of the update wire format.

use bytes::Bytes;
use lean_h2::Message as _;
use prost::Message;

use super::subscribe::WireUpdate;
use crate::generated::transit_v1::StreamUpdate;
use crate::serve::grpc::OutgoingUpdate;

#[test]
fn a_wire_update_is_the_grpc_framed_update_with_missed() {
    let update = StreamUpdate {
        stream: "all".into(),
        seq: 3,
        ..Default::default()
    };
    for missed in [0u64, 1, 1 << 40] {
        let wire = WireUpdate::new(OutgoingUpdate {
            head: Bytes::from(update.encode_to_vec()),
            body: Bytes::new(),
            missed,
        });
        let bytes = wire.parts().concat();
        assert_eq!(bytes.len(), wire.len());
        assert_eq!(bytes[0], 0);
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        assert_eq!(len, bytes.len() - 5);
        let decoded = StreamUpdate::decode(&bytes[5..]).unwrap();
        assert_eq!(decoded.missed, missed);
        assert_eq!(decoded.seq, 3);
    }
}

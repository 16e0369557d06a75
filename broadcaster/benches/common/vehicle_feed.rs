//! The benches' synthetic vehicle feed: `n` vehicles on route R1, each about 90 bytes of our
//! update, so a bench picks `n` for the update size it wants.

use bytes::Bytes;
use prost::Message;
use transit_broadcaster::generated::transit_realtime::{
    FeedEntity, FeedHeader, FeedMessage, Position, TripDescriptor, VehicleDescriptor,
    VehiclePosition,
};

fn vehicle(i: usize) -> FeedEntity {
    FeedEntity {
        id: format!("veh-{i}"),
        vehicle: Some(VehiclePosition {
            trip: Some(TripDescriptor {
                trip_id: Some(format!("T1-{i}")),
                route_id: Some("R1".into()),
                ..Default::default()
            }),
            vehicle: Some(VehicleDescriptor {
                id: Some(format!("V{i}")),
                label: Some(format!("bus {i}")),
                ..Default::default()
            }),
            position: Some(Position {
                latitude: Some(52.5),
                longitude: Some(13.4),
                bearing: Some(90.0),
                odometer: None,
                speed: Some(8.0),
            }),
            timestamp: Some(1_795_837_200),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An encoded `FeedMessage` with vehicles 0..n.
pub fn vehicle_feed(n: usize) -> Bytes {
    FeedMessage {
        header: FeedHeader {
            gtfs_realtime_version: "2.0".into(),
            incrementality: None,
            timestamp: Some(1_795_837_200),
            feed_version: None,
        },
        entity: (0..n).map(vehicle).collect(),
    }
    .encode_to_vec()
    .into()
}

use super::*;
use crate::pipeline::channel::Item;
use crate::pipeline::spec::Filter;

fn prepare(msg: &FeedMessage) -> crate::pipeline::prepare::Prepared {
    let item = Item::new(Bytes::from(msg.encode_to_vec()));
    crate::pipeline::prepare::prepare(&Filter::default(), &item).unwrap()
}

#[test]
fn clean_snapshots_carry_all_three_kinds_without_quarantine() {
    let mut g = Generator::new(SyntheticConfig::default());
    let msg = g.next_message(1_795_837_200, false);
    assert_eq!(msg.entity.len(), 40 + 40 + 2);
    let p = prepare(&msg);
    assert!(p.malformed.is_empty(), "{:?}", p.malformed);
    let u = p.to_update();
    assert_eq!(
        (u.vehicles.len(), u.trip_updates.len(), u.alerts.len()),
        (40, 40, 2)
    );
    assert_eq!(u.trip_updates[0].stop_time_updates.len(), 3);
    // Alert 0 concerns the agency (every stream), alert 1 route R1.
    assert_eq!(u.alerts[0].informed_entities[0].agency_id, "synthetic");
    assert_eq!(u.alerts[1].informed_entities[0].route_id, "R1");
    let bare = SyntheticConfig {
        trip_updates: false,
        alerts: 0,
        ..Default::default()
    };
    assert_eq!(Generator::new(bare).next_message(1, false).entity.len(), 40);
}

#[test]
fn poison_is_exactly_one_entity_on_the_poison_route() {
    let cfg = SyntheticConfig {
        poison_stream_route: Some("R3".into()),
        ..Default::default()
    };
    let mut g = Generator::new(cfg);
    let msg = g.next_message(1_795_837_200, true);
    let p = prepare(&msg);
    assert_eq!(p.malformed.len(), 1);
    assert_eq!(p.to_update().vehicles.len(), 39);
    assert!(p.malformed[0].reason.contains("start_date"));
    assert_eq!(p.malformed[0].route.as_deref(), Some("R3"));
}

#[test]
fn malformed_rate_breaks_about_that_fraction_of_vehicles() {
    let cfg = SyntheticConfig {
        vehicles: 1000,
        malformed_rate: 0.25,
        ..Default::default()
    };
    let mut g = Generator::new(cfg);
    let p = prepare(&g.next_message(1_795_837_200, false));
    assert!(
        (150..350).contains(&p.malformed.len()),
        "{}",
        p.malformed.len()
    );
    let u = p.to_update();
    assert_eq!(p.malformed.len() + u.vehicles.len(), 1000);
    assert_eq!(u.trip_updates.len(), 1000);
    // Every malformation breaks a rule the reference states, each named.
    for kind in Malformation::ALL {
        let mut e = g.next_message(1, false).entity.remove(0);
        kind.apply(&mut e);
        assert!(
            crate::gtfs::validate::entity(&e, crate::gtfs::validate::Rules::ALL).is_err(),
            "{kind:?}"
        );
    }
}

#[test]
fn parses_the_new_parameters() {
    let cfg = SyntheticConfig::from_query("trip_updates=false&alerts=5").unwrap();
    assert!(!cfg.trip_updates);
    assert_eq!(cfg.alerts, 5);
    assert!(SyntheticConfig::from_query("trip_updates=maybe").is_err());
}

#[test]
fn civil_dates() {
    assert_eq!(civil_date(0), "19700101");
    assert_eq!(civil_date(1_795_837_200), "20261128");
    assert_eq!(civil_date(951_782_400), "20000229");
}

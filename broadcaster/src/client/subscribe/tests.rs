use super::*;

#[test]
fn json_has_every_kind_as_an_array_even_when_empty() {
    let v = update_json(&StreamUpdate::default());
    for key in ["vehicles", "trip_updates", "alerts", "deleted_entity_ids"] {
        assert_eq!(v[key].as_array().map(Vec::len), Some(0), "{key}");
    }
    assert_eq!(v["counts"]["trip_updates"], 0);
    let u = StreamUpdate {
        trip_updates: vec![TripUpdate::default(); 2],
        alerts: vec![Alert::default()],
        ..Default::default()
    };
    let v = update_json(&u);
    assert_eq!(v["counts"]["trip_updates"], 2);
    assert_eq!(v["alerts"].as_array().unwrap().len(), 1);
    assert!(update_line(&u).contains("trip_updates=2 alerts=1"));
}

use super::*;
use stallwatch_crds::testing::TransitStreamExt as _;

fn asked(value: Option<&str>, allow: bool) -> TransitStream {
    let mut ts = TransitStream::test("demo").build();
    ts.spec.allow_drills = allow;
    if let Some(v) = value {
        ts.metadata.annotations = Some([(DRILL_ANNOTATION.to_string(), v.to_string())].into());
    }
    ts
}

#[test]
fn a_drill_is_refused_unless_allowed_and_goes_to_a_running_pod() {
    let pods = vec![
        ("old".to_string(), true, true),
        ("fresh".to_string(), false, false),
        ("up".to_string(), true, false),
    ];
    assert_eq!(plan(&asked(None, true), &pods), Plan::None);
    assert!(matches!(
        plan(&asked(Some("all"), false), &pods),
        Plan::Refuse { why, .. } if why.contains("allowDrills")
    ));
    assert!(matches!(
        plan(&asked(Some("nope"), true), &pods),
        Plan::Refuse { why, .. } if why.contains("no stream \"nope\"")
    ));
    let first = asked(Some(""), true).spec.streams[0].name.clone();
    assert_eq!(
        plan(&asked(Some(""), true), &pods),
        Plan::Drill {
            stream: first,
            pod: "up".into()
        }
    );
    assert!(matches!(
        plan(&asked(Some("all"), true), &pods[..2]),
        Plan::NoPod { .. }
    ));
}

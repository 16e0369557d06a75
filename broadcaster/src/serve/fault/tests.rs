use super::*;

#[test]
fn parses_modes_and_picks_streams() {
    for mode in [
        FaultMode::None,
        FaultMode::LegacyUnsupervised,
        FaultMode::HangDispatcher,
        FaultMode::BlockRuntime,
    ] {
        assert_eq!(mode.as_str().parse::<FaultMode>().unwrap(), mode);
    }
    assert!("explode".parse::<FaultMode>().is_err());
    let legacy = FaultConfig {
        mode: FaultMode::LegacyUnsupervised,
        ..Default::default()
    };
    assert!(legacy.applies_to("a", 0) && legacy.applies_to("b", 1));
    let hang = FaultConfig {
        mode: FaultMode::HangDispatcher,
        ..Default::default()
    };
    assert!(hang.applies_to("a", 0) && !hang.applies_to("b", 1));
    let hang_b = FaultConfig {
        stream: Some("b".into()),
        ..hang
    };
    assert!(!hang_b.applies_to("a", 0) && hang_b.applies_to("b", 1));
    assert!(!FaultConfig::default().applies_to("a", 0));
}

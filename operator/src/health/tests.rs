use super::*;

fn beats(entries: &[(&'static str, u64, u64)], base: Instant) -> BTreeMap<&'static str, Beat> {
    entries
        .iter()
        .map(|(n, last, bound)| {
            (
                *n,
                Beat {
                    last: base + Duration::from_secs(*last),
                    bound: Duration::from_secs(*bound),
                },
            )
        })
        .collect()
}

#[test]
fn a_loop_is_late_only_past_its_own_bound() {
    let base = Instant::now();
    let b = beats(&[("controller", 0, 30), ("elector", 10, 15)], base);
    assert!(late(&b, base + Duration::from_secs(25)).is_empty());
    let at = base + Duration::from_secs(26);
    assert_eq!(late(&b, at), vec![("elector", Duration::from_secs(16))]);
    let at = base + Duration::from_secs(31);
    let names: Vec<_> = late(&b, at).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["controller", "elector"]);
}

#[test]
fn a_beat_makes_a_late_loop_healthy_again() {
    let health = Health::new("");
    let hb = health.watch("controller", Duration::ZERO);
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(health.late(Instant::now()).len(), 1);
    hb.beat();
    assert!(
        health
            .late(Instant::now() - Duration::from_millis(1))
            .is_empty()
    );
}

#[test]
fn only_named_loops_are_wedged() {
    let health = Health::new("controller, other");
    assert!(health.watch("controller", Duration::ZERO).wedge);
    assert!(!health.watch("elector", Duration::ZERO).wedge);
    assert!(Health::new("").wedged.is_empty());
}

use super::*;

fn stalled(name: &str, reason: StallReason, secs: Option<f64>) -> StalledStream {
    StalledStream {
        stream: name.into(),
        reason,
        depth: 5,
        capacity: 5,
        secs_since_dequeue: secs,
    }
}

#[test]
fn reads_like_a_sentence() {
    let msg = format_message(&[stalled("downtown", StallReason::ChannelStuck, Some(12.34))]);
    assert_eq!(
        msg,
        "stream downtown: ChannelStuck, 5/5 waiting, no dequeue for 12.3s"
    );
}

#[test]
fn round_trips() {
    let list = vec![
        stalled("downtown", StallReason::ChannelStuck, Some(12.3)),
        stalled("airport", StallReason::DispatcherDead, None),
        stalled("north-7", StallReason::ReportsLost, Some(0.0)),
    ];
    assert_eq!(parse_message(&format_message(&list)).unwrap(), list);
}

#[test]
fn long_lists_are_bounded_and_still_parse() {
    let list: Vec<_> = (0..200)
        .map(|i| stalled(&format!("stream-{i}"), StallReason::ChannelStuck, Some(1.0)))
        .collect();
    let msg = format_message(&list);
    assert!(msg.len() <= MAX_MESSAGE_LEN, "{}", msg.len());
    assert!(msg.ends_with(" more"), "{msg}");
    let parsed = parse_message(&msg).unwrap();
    assert!(!parsed.is_empty() && parsed.len() < 200);
    assert_eq!(parsed[0], list[0]);
}

#[test]
fn refuses_foreign_text() {
    for bad in [
        "everything is on fire",
        "stream x: Exploded, 1/5 waiting, never dequeued",
        "stream x: ChannelStuck, 1 of 5 waiting, never dequeued",
        "stream X_Y: ChannelStuck, 1/5 waiting, never dequeued",
        "stream x: ChannelStuck, 1/5 waiting, no dequeue for soon",
    ] {
        assert!(parse_message(bad).is_err(), "{bad}");
    }
    assert_eq!(parse_message("").unwrap(), vec![]);
}

#[test]
fn reasons_parse_from_their_names() {
    for r in StallReason::ALL {
        assert_eq!(r.as_str().parse::<StallReason>().unwrap(), r);
    }
}

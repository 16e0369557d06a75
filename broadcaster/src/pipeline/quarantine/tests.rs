use super::*;

#[test]
fn keeps_the_last_few_with_excerpts_and_counts_all() {
    let q = Quarantine::new("downtown");
    for i in 0..(KEEP_PER_STREAM + 4) {
        q.record(
            QuarantineKind::Decode,
            &format!("bad {i}"),
            &[0xde, 0xad, i as u8],
        );
    }
    q.record(QuarantineKind::Panic, "boom", &vec![7u8; 1000]);
    assert_eq!(q.total(), KEEP_PER_STREAM as u64 + 5);
    assert_eq!(q.count(QuarantineKind::Panic), 1);
    let recent = q.recent();
    assert_eq!(recent.len(), KEEP_PER_STREAM);
    assert_eq!(recent.last().unwrap().kind, "panic");
    assert_eq!(recent.last().unwrap().size, 1000);
    assert_eq!(recent.last().unwrap().excerpt_hex.len(), EXCERPT_BYTES * 2);
    assert_eq!(recent[0].error, "bad 5");
    assert_eq!(recent[0].excerpt_hex, "dead05");
    assert_eq!(recent[0].stream, "downtown");
}

#[test]
fn error_log_is_bounded() {
    let log = ErrorLog::new(2);
    log.push(None, "a");
    log.push(Some("s"), "b");
    log.push(Some("s"), "c");
    let r = log.recent();
    assert_eq!(r.len(), 2);
    assert_eq!(r[1].message, "c");
    assert_eq!(r[1].stream.as_deref(), Some("s"));
}

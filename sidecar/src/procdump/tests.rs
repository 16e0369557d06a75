use super::*;

#[test]
fn permission_explains_each_refusal() {
    let proc_root = Path::new("/proc");
    let me = std::process::id();
    let ptrace = 1u64 << CAP_SYS_PTRACE;
    let err = permission(None, me, proc_root, Some(ptrace)).unwrap_err();
    assert!(err.contains("no pid"), "{err}");
    let err = permission(Some(me), me, proc_root, Some(ptrace)).unwrap_err();
    assert!(err.contains("shareProcessNamespace"), "{err}");
    let err = permission(Some(u32::MAX - 1), me, proc_root, Some(ptrace)).unwrap_err();
    assert!(err.contains("not visible"), "{err}");
    // pid 1 is visible in any namespace.
    let err = permission(Some(1), me, proc_root, Some(!ptrace)).unwrap_err();
    assert!(err.contains("CAP_SYS_PTRACE"), "{err}");
    assert_eq!(permission(Some(1), me, proc_root, Some(ptrace)), Ok(1));
}

#[test]
fn cap_eff_parses() {
    let status = "Name:\tx\nCapPrm:\t0000000000000000\nCapEff:\t00000000a80425fb\n";
    assert_eq!(parse_cap_eff(status), Some(0xa804_25fb));
    assert_eq!(parse_cap_eff("Name: x"), None);
}

fn fake_minidump(threads: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0x504d_444du32.to_le_bytes());
    b.extend_from_slice(&0xa793u32.to_le_bytes());
    b.extend_from_slice(&2u32.to_le_bytes()); // streams
    b.extend_from_slice(&32u32.to_le_bytes()); // directory rva
    b.resize(32, 0);
    // A system info stream, then the thread list.
    for (ty, rva) in [(7u32, 60u32), (3, 64)] {
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&rva.to_le_bytes());
    }
    b.resize(64, 0);
    b.extend_from_slice(&threads.to_le_bytes());
    b
}

#[test]
fn zero_thread_minidumps_are_failures() {
    assert!(matches!(
        judge_minidump(&fake_minidump(0)),
        ProcessDumpOutcome::Failed { why } if why.contains("no threads")
    ));
    assert!(matches!(
        judge_minidump(&fake_minidump(7)),
        ProcessDumpOutcome::Written { threads: 7, .. }
    ));
    assert!(matches!(
        judge_minidump(b"garbage"),
        ProcessDumpOutcome::Failed { why } if why.contains("unreadable")
    ));
    assert!(matches!(
        judge_minidump(&fake_minidump(3)[..40]),
        ProcessDumpOutcome::Failed { .. }
    ));
}

#[test]
fn mode_none_is_skipped_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = dump(ProcessDumpMode::None, Some(1), dir.path());
    assert!(
        matches!(out, ProcessDumpOutcome::Skipped { why } if why.contains("--process-dump none"))
    );
}

/// A real minidump of a real child process (needs ptrace rights: as root, or with
/// CAP_SYS_PTRACE; otherwise the outcome must say why, which is checked too).
#[test]
fn minidump_of_a_child_process() {
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dump(ProcessDumpMode::Minidump, Some(child.id()), dir.path());
    let _ = child.kill();
    let _ = child.wait();
    match out {
        ProcessDumpOutcome::Written {
            kind,
            file,
            bytes,
            threads,
        } => {
            assert_eq!(kind, ProcessDumpKind::Minidump);
            assert!(threads >= 1);
            let on_disk = fs::read(dir.path().join(&file)).unwrap();
            assert_eq!(on_disk.len() as u64, bytes);
            assert_eq!(minidump_thread_count(&on_disk).unwrap() as u64, threads);
        }
        ProcessDumpOutcome::Skipped { why } | ProcessDumpOutcome::Failed { why } => {
            eprintln!("no ptrace rights here, minidump not taken: {why}");
            assert!(!why.is_empty());
            assert!(!dir.path().join(MINIDUMP_FILE).exists());
        }
    }
}

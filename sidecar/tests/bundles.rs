//! The bundle writer: atomic under a fault at every step, private, retained within limits.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use stallwatch_core::bundle::{
    BUNDLE_V1, CaptureTimings, Manifest, ProcessDumpKind, ProcessDumpOutcome, RetentionPolicy,
    TaskDumpOutcome, Versions,
};
use stallwatch_core::condition::StallReason;
use transit_sidecar::bundles::{
    BundleError, BundleStore, LocalStorage, PendingBundle, Storage, verify,
};

fn manifest(created_at_ms: u64, stream: Option<&str>) -> Manifest {
    Manifest {
        format: BUNDLE_V1.into(),
        id: String::new(),
        path: String::new(),
        versions: Versions {
            sidecar: "transit-sidecar test".into(),
            broadcaster: None,
            broadcaster_instance: None,
            report_protocol: "stallwatch.report.v1".into(),
            bundle_format: BUNDLE_V1.into(),
        },
        pod: "bc-0".into(),
        namespace: "transit".into(),
        node: None,
        stream: stream.map(str::to_owned),
        reason: stream.map(|_| StallReason::ChannelStuck),
        verdict: None,
        requested_by: "test".into(),
        created_at_ms,
        timings: CaptureTimings::default(),
        files: Vec::new(),
        task_dump: TaskDumpOutcome::Failed { why: "test".into() },
        process_dump: ProcessDumpOutcome::Skipped { why: String::new() },
    }
}

fn pending(created_at_ms: u64, stream: Option<&str>, size: usize) -> PendingBundle {
    PendingBundle {
        manifest: manifest(created_at_ms, stream),
        files: vec![
            ("state.json".into(), vec![b'{'; size]),
            ("tasks.txt".into(), b"tasks\n".to_vec()),
        ],
        started: Instant::now(),
    }
}

fn no_process_dump(_: &Path) -> ProcessDumpOutcome {
    ProcessDumpOutcome::Skipped { why: "off".into() }
}

fn store(
    root: &Path,
    storage: Arc<dyn Storage>,
    max_bundles: usize,
    max_bytes: u64,
) -> BundleStore {
    BundleStore::new(
        root.to_owned(),
        "transit",
        "bc-0",
        RetentionPolicy {
            max_bundles,
            max_bytes,
        },
        storage,
    )
}

/// Fails the `fail_at`-th mutating operation (counting from 0). A failing file write leaves
/// half the data behind, as a full disk does.
struct Faulty {
    ops: AtomicUsize,
    fail_at: usize,
}

impl Faulty {
    fn tick(&self) -> bool {
        self.ops.fetch_add(1, Ordering::SeqCst) == self.fail_at
    }
}

impl Storage for Faulty {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        if self.tick() {
            return Err(io::Error::from_raw_os_error(28));
        }
        LocalStorage.create_dir(path)
    }
    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        if self.tick() {
            let _ = LocalStorage.write_file(path, &data[..data.len() / 2]);
            return Err(io::Error::from_raw_os_error(28));
        }
        LocalStorage.write_file(path, data)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        if self.tick() {
            return Err(io::Error::from_raw_os_error(5));
        }
        LocalStorage.sync_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if self.tick() {
            return Err(io::Error::from_raw_os_error(30));
        }
        LocalStorage.rename(from, to)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        LocalStorage.remove_dir_all(path)
    }
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_fault_at_any_step_leaves_no_bundle_and_no_debris() {
    // Count the operations of a clean write first.
    let counting = Arc::new(Faulty {
        ops: AtomicUsize::new(0),
        fail_at: usize::MAX,
    });
    let root = tempfile::tempdir().unwrap();
    store(root.path(), counting.clone(), 10, u64::MAX)
        .write(pending(1_000, Some("a"), 100), &no_process_dump)
        .unwrap();
    let total = counting.ops.load(Ordering::SeqCst);
    assert!(
        total >= 8,
        "create ns, pod, tmp; 3 writes; 2 syncs; rename: {total}"
    );

    for fail_at in 0..total {
        let root = tempfile::tempdir().unwrap();
        let s = store(
            root.path(),
            Arc::new(Faulty {
                ops: AtomicUsize::new(0),
                fail_at,
            }),
            10,
            u64::MAX,
        );
        let err = s
            .write(pending(1_000, Some("a"), 100), &no_process_dump)
            .expect_err("the fault must surface");
        assert!(
            matches!(
                err,
                BundleError::NoSpace(_)
                    | BundleError::Unavailable(_)
                    | BundleError::ReadOnly(_)
                    | BundleError::Io(_)
            ),
            "{err:?}"
        );
        assert_eq!(
            s.list().unwrap_or_default(),
            vec![],
            "fault at op {fail_at}"
        );
        let pod_dir = root.path().join("transit").join("bc-0");
        assert_eq!(
            entries(&pod_dir),
            Vec::<String>::new(),
            "debris after fault at op {fail_at}"
        );
    }
}

#[test]
fn no_space_maps_to_507_and_read_only_to_503() {
    let root = tempfile::tempdir().unwrap();
    // create ns, create pod, create tmp, then the first file write fails with ENOSPC.
    let s = store(
        root.path(),
        Arc::new(Faulty {
            ops: AtomicUsize::new(0),
            fail_at: 3,
        }),
        10,
        u64::MAX,
    );
    let err = s.write(pending(1, None, 10), &no_process_dump).unwrap_err();
    assert_eq!((err.label(), err.http_status()), ("no_space", 507));
    assert!(err.to_string().contains("No space left on device"), "{err}");
    // The rename fails with EROFS.
    let s = store(
        root.path(),
        Arc::new(Faulty {
            ops: AtomicUsize::new(0),
            fail_at: 7,
        }),
        10,
        u64::MAX,
    );
    let err = s.write(pending(2, None, 10), &no_process_dump).unwrap_err();
    assert_eq!(
        (err.label(), err.http_status()),
        ("unavailable", 503),
        "{err}"
    );
}

#[test]
fn bundles_are_private_named_and_verifiable() {
    let root = tempfile::tempdir().unwrap();
    let s = store(root.path(), Arc::new(LocalStorage), 10, u64::MAX);
    let hook = |dir: &Path| {
        // A dumper that creates a world-readable file: the store must seal it.
        std::fs::write(dir.join("broadcaster.dmp"), b"MDMP fake").unwrap();
        std::fs::set_permissions(
            dir.join("broadcaster.dmp"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        ProcessDumpOutcome::Written {
            kind: ProcessDumpKind::Minidump,
            file: "broadcaster.dmp".into(),
            bytes: 9,
            threads: 1,
        }
    };
    let m = s
        .write(pending(1_795_832_103_042, Some("downtown"), 50), &hook)
        .unwrap();
    assert_eq!(m.id, "20261128T021503.042Z-downtown-ChannelStuck");
    let dir = Path::new(&m.path);
    assert_eq!(dir, root.path().join("transit/bc-0").join(&m.id));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(dir), 0o2770);
    assert_eq!(mode(&root.path().join("transit")), 0o2770);
    for f in [
        "manifest.json",
        "state.json",
        "tasks.txt",
        "broadcaster.dmp",
    ] {
        assert_eq!(mode(&dir.join(f)), 0o640, "{f}");
    }
    let names: Vec<_> = m.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, vec!["state.json", "tasks.txt", "broadcaster.dmp"]);
    assert_eq!(m.files[2].bytes, 9);
    assert!(verify(dir, &m).is_empty());
    // Tampering is detected.
    std::fs::write(dir.join("state.json"), b"{}").unwrap();
    std::fs::remove_file(dir.join("tasks.txt")).unwrap();
    let problems = verify(dir, &m);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with("state.json: 2 bytes"),
        "{problems:?}"
    );
    assert!(problems[1].starts_with("tasks.txt:"), "{problems:?}");

    // Same instant, same stream, same reason: a suffixed name, both listed.
    let m2 = s
        .write(
            pending(1_795_832_103_042, Some("downtown"), 50),
            &no_process_dump,
        )
        .unwrap();
    assert_eq!(m2.id, "20261128T021503.042Z-downtown-ChannelStuck-2");
    assert_eq!(s.list().unwrap().len(), 2);
}

#[test]
fn retention_keeps_the_newest_within_count_and_bytes() {
    let root = tempfile::tempdir().unwrap();
    let s = store(root.path(), Arc::new(LocalStorage), 3, u64::MAX);
    for i in 0..5u64 {
        s.write(pending(1_000 + i, Some("a"), 10), &no_process_dump)
            .unwrap();
    }
    let kept: Vec<u64> = s.list().unwrap().iter().map(|b| b.created_at_ms).collect();
    assert_eq!(kept, vec![1_002, 1_003, 1_004]);

    // By bytes: each bundle is ~10 KB; allow ~25 KB.
    let root = tempfile::tempdir().unwrap();
    let s = store(root.path(), Arc::new(LocalStorage), 100, 25_000);
    for i in 0..4u64 {
        s.write(pending(2_000 + i, None, 10_000), &no_process_dump)
            .unwrap();
    }
    let list = s.list().unwrap();
    let kept: Vec<u64> = list.iter().map(|b| b.created_at_ms).collect();
    assert_eq!(kept, vec![2_002, 2_003]);
    assert!(list.iter().map(|b| b.bytes).sum::<u64>() <= 25_000);

    // A single bundle larger than max_bytes is kept (the newest always is).
    let root = tempfile::tempdir().unwrap();
    let s = store(root.path(), Arc::new(LocalStorage), 100, 100);
    s.write(pending(3_000, None, 10_000), &no_process_dump)
        .unwrap();
    assert_eq!(s.list().unwrap().len(), 1);
}

#[test]
fn half_written_bundles_are_invisible_and_cleaned_at_start() {
    let root = tempfile::tempdir().unwrap();
    let s = store(root.path(), Arc::new(LocalStorage), 10, u64::MAX);
    s.write(pending(5_000, None, 10), &no_process_dump).unwrap();
    // What a crash mid-capture leaves behind.
    let stale = root
        .path()
        .join("transit/bc-0/.tmp-20261128T021503.042Z-a-manual");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("state.json"), b"{").unwrap();
    // Also a stray file and a directory with a foreign name.
    std::fs::write(root.path().join("transit/bc-0/notes.txt"), b"x").unwrap();
    std::fs::create_dir(root.path().join("transit/bc-0/lost+found")).unwrap();
    assert_eq!(s.list().unwrap().len(), 1);
    assert_eq!(s.clean_stale_temps(), 1);
    assert!(!stale.exists());
    assert_eq!(s.list().unwrap().len(), 1);
}

#[test]
fn unsafe_pod_names_cannot_escape_the_root() {
    let root = tempfile::tempdir().unwrap();
    let s = BundleStore::new(
        root.path().join("dumps"),
        "../..",
        "x/../../etc",
        RetentionPolicy {
            max_bundles: 1,
            max_bytes: 1,
        },
        Arc::new(LocalStorage),
    );
    assert_eq!(
        s.pod_dir(),
        root.path().join("dumps/unknown-namespace/unknown-pod")
    );
}

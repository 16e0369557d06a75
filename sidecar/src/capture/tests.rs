use std::io;
use std::path::{Path, PathBuf};

use super::*;
use crate::bundles::{LocalStorage, Storage};
use stallwatch_core::bundle::RetentionPolicy;

/// Every probe write fails with this OS error (the rest is the real file system).
struct WriteFails(i32);

impl Storage for WriteFails {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        LocalStorage.create_dir(path)
    }
    fn write_file(&self, _: &Path, _: &[u8]) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(self.0))
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        LocalStorage.sync_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        LocalStorage.rename(from, to)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        LocalStorage.remove_dir_all(path)
    }
}

fn probe(root: PathBuf, storage: Arc<dyn Storage>) -> Result<(), BundleError> {
    BundleStore::new(
        root,
        "transit",
        "bc-0",
        RetentionPolicy {
            max_bundles: 3,
            max_bytes: 1 << 20,
        },
        storage,
    )
    .probe()
}

#[test]
fn a_writable_volume_is_a_true_condition() {
    let dir = tempfile::tempdir().unwrap();
    let c = storage_condition(&probe(dir.path().to_owned(), Arc::new(LocalStorage)));
    assert_eq!(c.status(), "True");
    assert_eq!(c.reason, "Writable");
}

#[test]
fn each_kind_of_failure_has_its_reason_and_the_probes_message() {
    let dir = tempfile::tempdir().unwrap();
    // EACCES, EROFS, ENOSPC, EIO
    for (errno, reason, says) in [
        (13, "PermissionDenied", "permission denied"),
        (30, "ReadOnly", "read-only"),
        (28, "Full", "full"),
        (5, "Failed", "cannot write"),
    ] {
        let c = storage_condition(&probe(dir.path().to_owned(), Arc::new(WriteFails(errno))));
        assert_eq!(c.status(), "False", "errno {errno}");
        assert_eq!(c.reason, reason, "errno {errno}");
        assert!(c.message.contains(says), "errno {errno}: {}", c.message);
        assert!(c.message.contains(".stallwatch-probe"), "{}", c.message);
    }
}

#[test]
fn a_dump_dir_that_is_a_file_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dumps");
    std::fs::write(&file, b"not a directory").unwrap();
    let c = storage_condition(&probe(file, Arc::new(LocalStorage)));
    assert_eq!(c.status(), "False");
    assert_eq!(c.reason, "Missing", "{}", c.message);
}

//! Writing dump bundles onto the dump volume: atomically, privately, within retention limits.
//!
//! A bundle is assembled in a hidden temporary directory next to its final place
//! (`<pod dir>/.tmp-<name>`), every file is fsynced, the manifest goes in last, the directory is
//! fsynced and renamed into place, and the parent is fsynced. Readers ignore `.tmp-*`, so a
//! crash or a full volume never leaves a bundle that looks complete. Files are 0640 and
//! directories 2770 (setgid): dumps can hold subscriber data, so "others" get nothing, but the
//! group is shared. Both sidecars run with gid 65532: the normal one as uid 65532, the
//! process-dump one as uid 0 with every capability but SYS_PTRACE dropped (no
//! DAC_OVERRIDE), so owner-only modes locked each out of what the other created (issue 20,
//! finding 3). The modes are set explicitly, whatever the umask.
//!
//! [`BundleStore::probe`] writes, fsyncs and deletes a probe file, so a volume this sidecar
//! cannot write is known at start, not at the first stall.
//!
//! File system access goes through [`Storage`] so tests can inject faults (a full volume) that
//! are hard to provoke for real.
//!
//! Where a change goes: what a bundle write does (names, order, fsyncs, the process dump's
//! sealing) → `write`; a new failure or its label / HTTP status → `error`; a new file system
//! operation → `storage` ([`Storage`] and [`LocalStorage`]); listing, retention, the probe and
//! [`verify`] → here.

mod error;
mod storage;
mod write;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use stallwatch_core::bundle::{
    self, BundleSummary, Manifest, ProcessDumpOutcome, RetainedBundle, RetentionPolicy, TEMP_PREFIX,
};

pub use error::{BundleError, FsFailure, process_ids};
pub use storage::{DIR_MODE, FILE_MODE, LocalStorage, Storage};

/// The file [`BundleStore::probe`] writes and deletes in the pod's directory.
pub const PROBE_FILE: &str = ".stallwatch-probe";

/// A bundle ready to be written: the manifest's descriptive fields and the small files.
pub struct PendingBundle {
    /// `id`, `path`, `files`, `process_dump` and the write timings are filled in by the store.
    pub manifest: Manifest,
    /// `(file name, contents)`, e.g. `state.json`, `tasks.txt`.
    pub files: Vec<(String, Vec<u8>)>,
    /// When the capture was requested, for `timings.total_ms`.
    pub started: Instant,
}

/// Writes the process dump into the given (temporary bundle) directory and says what it did.
/// A `Written` outcome names a file the store then hashes, fsyncs and makes 0600.
pub type ProcessDumpHook<'a> = &'a (dyn Fn(&Path) -> ProcessDumpOutcome + Send + Sync);

pub struct BundleStore {
    root: PathBuf,
    namespace: String,
    pod: String,
    policy: RetentionPolicy,
    storage: Arc<dyn Storage>,
}

impl BundleStore {
    /// Bundles go to `<root>/<namespace>/<pod>/`. Names that could escape `root` are replaced
    /// by `_`-free placeholders (`unknown-namespace`, `unknown-pod`).
    pub fn new(
        root: PathBuf,
        namespace: &str,
        pod: &str,
        policy: RetentionPolicy,
        storage: Arc<dyn Storage>,
    ) -> Self {
        let safe = |s: &str, fallback: &str| {
            if bundle::is_safe_component(s) {
                s.to_owned()
            } else {
                fallback.to_owned()
            }
        };
        BundleStore {
            root,
            namespace: safe(namespace, "unknown-namespace"),
            pod: safe(pod, "unknown-pod"),
            policy,
            storage,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<namespace>/<pod>`.
    pub fn pod_dir(&self) -> PathBuf {
        self.root.join(&self.namespace).join(&self.pod)
    }

    fn ensure_pod_dir(&self) -> Result<PathBuf, BundleError> {
        match fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(BundleError::NotADirectory(self.root.clone()));
            }
            Err(e) => {
                return Err(BundleError::from_io(
                    "dump directory (is the volume mounted?)",
                    &self.root,
                    e,
                ));
            }
        }
        let ns = self.root.join(&self.namespace);
        let pod = ns.join(&self.pod);
        for dir in [&ns, &pod] {
            match self.storage.create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(BundleError::from_io("creating", dir, e)),
            }
        }
        Ok(pod)
    }

    /// Whether a bundle could be written now: creates this pod's directory, writes and fsyncs
    /// a probe file in it, deletes it and fsyncs the directory (what a bundle write does).
    pub fn probe(&self) -> Result<(), BundleError> {
        let pod_dir = self.ensure_pod_dir()?;
        let probe = pod_dir.join(PROBE_FILE);
        // Left by a crash between write and delete.
        match self.storage.remove_file(&probe) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(BundleError::from_io("removing", &probe, e));
            }
            _ => {}
        }
        self.storage
            .write_file(&probe, b"stallwatch dump volume probe\n")
            .map_err(|e| BundleError::from_io("writing", &probe, e))?;
        self.storage
            .remove_file(&probe)
            .map_err(|e| BundleError::from_io("removing", &probe, e))?;
        self.storage
            .sync_dir(&pod_dir)
            .map_err(|e| BundleError::from_io("syncing", &pod_dir, e))
    }

    /// Remove temporary directories left by a crash during an earlier capture.
    pub fn clean_stale_temps(&self) -> usize {
        let Ok(entries) = fs::read_dir(self.pod_dir()) else {
            return 0;
        };
        let mut removed = 0;
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
                && self.storage.remove_dir_all(&e.path()).is_ok()
            {
                removed += 1;
            }
        }
        removed
    }

    /// Complete bundles of this pod, oldest first.
    pub fn list(&self) -> Result<Vec<BundleSummary>, BundleError> {
        let dir = self.pod_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.root.is_dir() => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(BundleError::from_io("listing", &dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(parsed) = bundle::parse_bundle_name(&name) else {
                continue;
            };
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path();
            out.push(BundleSummary {
                bytes: dir_bytes(&path),
                path: path.display().to_string(),
                created_at_ms: parsed.created_at_ms,
                stream: parsed.stream,
                reason: parsed.reason,
            });
        }
        out.sort_by(|a, b| (a.created_at_ms, &a.path).cmp(&(b.created_at_ms, &b.path)));
        Ok(out)
    }

    /// Delete the oldest bundles beyond `max_bundles` / `max_bytes`. Returns what was removed.
    pub(crate) fn apply_retention(&self) -> Result<Vec<String>, BundleError> {
        let list = self.list()?;
        let retained: Vec<RetainedBundle> = list
            .iter()
            .map(|b| RetainedBundle {
                name: b.path.clone(),
                created_at_ms: b.created_at_ms,
                bytes: b.bytes,
            })
            .collect();
        let doomed = bundle::plan_retention(&retained, self.policy);
        for path in &doomed {
            let p = Path::new(path);
            self.storage
                .remove_dir_all(p)
                .map_err(|e| BundleError::from_io("removing", p, e))?;
            tracing::info!(bundle = %path, "removed by retention");
        }
        Ok(doomed)
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Check the files listed in a manifest against the bundle directory. Returns one line per
/// problem (missing file, wrong size, wrong hash).
pub fn verify(dir: &Path, manifest: &Manifest) -> Vec<String> {
    let mut problems = Vec::new();
    for f in &manifest.files {
        if !bundle::is_safe_component(&f.name) {
            problems.push(format!("{}: unsafe file name", f.name));
            continue;
        }
        match fs::File::open(dir.join(&f.name)).and_then(|mut file| {
            let mut hasher = Sha256::new();
            let n = io::copy(&mut file, &mut hasher)?;
            Ok((n, hex::encode(hasher.finalize())))
        }) {
            Err(e) => problems.push(format!("{}: {e}", f.name)),
            Ok((n, _)) if n != f.bytes => {
                problems.push(format!("{}: {n} bytes, manifest says {}", f.name, f.bytes))
            }
            Ok((_, h)) if h != f.sha256 => problems.push(format!("{}: sha256 mismatch", f.name)),
            Ok(_) => {}
        }
    }
    problems
}

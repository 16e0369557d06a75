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

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use stallwatch_core::bundle::{
    self, BundleFile, BundleSummary, MANIFEST_FILE, Manifest, ProcessDumpOutcome, RetainedBundle,
    RetentionPolicy, TEMP_PREFIX,
};

/// The file system operations a bundle write needs.
pub trait Storage: Send + Sync {
    /// Create one directory with mode [`DIR_MODE`]; `AlreadyExists` if it exists.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Create a new file with mode [`FILE_MODE`], write all of `data`, fsync it.
    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
}

/// Mode of every directory the sidecar creates on the dump volume: the group (65532, shared
/// by both kinds of sidecar) may write, setgid so new entries keep that group.
pub const DIR_MODE: u32 = 0o2770;
/// Mode of every bundle file: the group may read (`inspect` from the other kind of sidecar).
pub const FILE_MODE: u32 = 0o640;
/// The file [`BundleStore::probe`] writes and deletes in the pod's directory.
pub const PROBE_FILE: &str = ".stallwatch-probe";

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalStorage;

impl Storage for LocalStorage {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        fs::DirBuilder::new().mode(DIR_MODE & 0o777).create(path)?;
        // mkdir drops the setgid bit and applies the umask: set the mode itself.
        fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE))
    }

    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(path)?;
        f.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
        f.write_all(data)?;
        f.sync_all()
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        fs::File::open(path)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("the dump volume is full: {0}")]
    NoSpace(#[source] FsFailure),
    #[error("the dump volume is unavailable (missing): {0}")]
    Unavailable(#[source] FsFailure),
    #[error("the dump volume is unavailable (read-only): {0}")]
    ReadOnly(#[source] FsFailure),
    #[error(
        "the dump volume is unavailable (not writable by this sidecar, {}): permission denied: {failure}; its root must be writable by group 65532 (see the chart README, \"Dump volume ownership\")",
        process_ids()
    )]
    NotWritable {
        #[source]
        failure: FsFailure,
    },
    #[error("the dump volume is unavailable (missing): dump directory {} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("cannot write the bundle: {0}")]
    Io(#[source] FsFailure),
    #[error("cannot write the bundle: too many bundles named {0}")]
    NamesExhausted(String),
    #[error("cannot write the bundle: encoding manifest: {0}")]
    EncodeManifest(#[source] serde_json::Error),
    #[error("cannot write the bundle: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// A file system operation on the dump volume that failed, and where.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {source}", path.display())]
pub struct FsFailure {
    what: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

impl BundleError {
    /// Metric label (`dumps_total{outcome}`).
    pub fn label(&self) -> &'static str {
        match self {
            BundleError::NoSpace(_) => "no_space",
            BundleError::Unavailable(_)
            | BundleError::ReadOnly(_)
            | BundleError::NotWritable { .. }
            | BundleError::NotADirectory(_) => "unavailable",
            BundleError::Io(_)
            | BundleError::NamesExhausted(_)
            | BundleError::EncodeManifest(_)
            | BundleError::Task(_) => "failed",
        }
    }

    /// The admin API's answer: 507 Insufficient Storage, 503 Service Unavailable, 500.
    pub fn http_status(&self) -> u16 {
        match self {
            BundleError::NoSpace(_) => 507,
            BundleError::Unavailable(_)
            | BundleError::ReadOnly(_)
            | BundleError::NotWritable { .. }
            | BundleError::NotADirectory(_) => 503,
            BundleError::Io(_)
            | BundleError::NamesExhausted(_)
            | BundleError::EncodeManifest(_)
            | BundleError::Task(_) => 500,
        }
    }

    fn from_io(what: &'static str, path: &Path, source: io::Error) -> Self {
        use io::ErrorKind::*;
        let kind = source.kind();
        let failure = FsFailure {
            what,
            path: path.to_owned(),
            source,
        };
        match kind {
            StorageFull | QuotaExceeded | FileTooLarge => BundleError::NoSpace(failure),
            ReadOnlyFilesystem => BundleError::ReadOnly(failure),
            PermissionDenied => BundleError::NotWritable { failure },
            NotADirectory | NotFound => BundleError::Unavailable(failure),
            _ => BundleError::Io(failure),
        }
    }
}

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

    /// Write a bundle atomically, then apply retention. On error nothing that looks like a
    /// bundle is left behind.
    pub fn write(
        &self,
        pending: PendingBundle,
        process_dump: ProcessDumpHook<'_>,
    ) -> Result<Manifest, BundleError> {
        let pod_dir = self.ensure_pod_dir()?;
        let base = bundle::bundle_name(
            pending.manifest.created_at_ms,
            pending.manifest.stream.as_deref(),
            pending.manifest.reason,
        );
        let mut name = base.clone();
        let mut n = 1;
        while pod_dir.join(&name).exists() || pod_dir.join(format!("{TEMP_PREFIX}{name}")).exists()
        {
            n += 1;
            if n > 1000 {
                return Err(BundleError::NamesExhausted(base));
            }
            name = format!("{base}-{n}");
        }
        let tmp = pod_dir.join(format!("{TEMP_PREFIX}{name}"));
        let final_dir = pod_dir.join(&name);
        self.storage
            .create_dir(&tmp)
            .map_err(|e| BundleError::from_io("creating", &tmp, e))?;
        let result = self.fill(&tmp, &final_dir, &name, pending, process_dump);
        let manifest = match result {
            Ok(m) => m,
            Err(e) => {
                // Best effort: on a full volume removing is exactly what frees space.
                let _ = self.storage.remove_dir_all(&tmp);
                return Err(e);
            }
        };
        if let Err(e) = self.storage.rename(&tmp, &final_dir) {
            let _ = self.storage.remove_dir_all(&tmp);
            return Err(BundleError::from_io("renaming into", &final_dir, e));
        }
        if let Err(e) = self.storage.sync_dir(&pod_dir) {
            // The rename may not survive a crash: report failure and leave no bundle, so an
            // answer of "failed" never coexists with a bundle that looks complete.
            let _ = self.storage.remove_dir_all(&final_dir);
            return Err(BundleError::from_io("syncing", &pod_dir, e));
        }
        if let Err(e) = self.apply_retention() {
            tracing::warn!(error = %e, "bundle retention failed");
        }
        Ok(manifest)
    }

    fn fill(
        &self,
        tmp: &Path,
        final_dir: &Path,
        name: &str,
        pending: PendingBundle,
        process_dump: ProcessDumpHook<'_>,
    ) -> Result<Manifest, BundleError> {
        let PendingBundle {
            mut manifest,
            files,
            started,
        } = pending;
        let write_started = Instant::now();
        let mut entries = Vec::with_capacity(files.len() + 1);
        for (file, data) in &files {
            let path = tmp.join(file);
            self.storage
                .write_file(&path, data)
                .map_err(|e| BundleError::from_io("writing", &path, e))?;
            entries.push(BundleFile {
                name: file.clone(),
                bytes: data.len() as u64,
                sha256: hex::encode(Sha256::digest(data)),
            });
        }
        let mut write_ms = millis(write_started);

        let dump_started = Instant::now();
        let outcome = process_dump(tmp);
        manifest.timings.process_dump_ms = millis(dump_started);
        if let ProcessDumpOutcome::Written { file, .. } = &outcome {
            let path = tmp.join(file);
            let (bytes, sha256) =
                seal_external_file(&path).map_err(|e| BundleError::from_io("sealing", &path, e))?;
            entries.push(BundleFile {
                name: file.clone(),
                bytes,
                sha256,
            });
        }

        let manifest_started = Instant::now();
        manifest.id = name.to_owned();
        manifest.path = final_dir.display().to_string();
        manifest.files = entries;
        manifest.process_dump = outcome;
        manifest.timings.total_ms = millis(started);
        write_ms += millis(manifest_started);
        manifest.timings.write_ms = write_ms;
        let json = serde_json::to_vec_pretty(&manifest).map_err(BundleError::EncodeManifest)?;
        let path = tmp.join(MANIFEST_FILE);
        self.storage
            .write_file(&path, &json)
            .map_err(|e| BundleError::from_io("writing", &path, e))?;
        self.storage
            .sync_dir(tmp)
            .map_err(|e| BundleError::from_io("syncing", tmp, e))?;
        Ok(manifest)
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

/// Give a file written by someone else (a dumper) the bundle's mode and make it durable;
/// return size and hash.
fn seal_external_file(path: &Path) -> io::Result<(u64, String)> {
    fs::set_permissions(path, fs::Permissions::from_mode(FILE_MODE))?;
    let mut f = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    fs::OpenOptions::new().write(true).open(path)?.sync_all()?;
    Ok((bytes, hex::encode(hasher.finalize())))
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

/// `uid N, gid N` of this process (from `/proc/self/status`: no libc call needed), for
/// errors that hinge on who may write.
pub fn process_ids() -> String {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let first = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_owned()
    };
    format!("uid {}, gid {}", first("Uid:"), first("Gid:"))
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
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

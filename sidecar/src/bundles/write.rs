//! Writing one bundle: a unique name, the files in a hidden temporary directory, the process
//! dump sealed, the manifest last, fsyncs and the rename into place, then retention.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Instant;

use sha2::{Digest, Sha256};
use stallwatch_core::bundle::{
    self, BundleFile, MANIFEST_FILE, Manifest, ProcessDumpOutcome, TEMP_PREFIX,
};

use super::error::BundleError;
use super::storage::FILE_MODE;
use super::{BundleStore, PendingBundle, ProcessDumpHook};

impl BundleStore {
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

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

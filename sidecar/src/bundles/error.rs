//! Why a bundle could not be written, classified for the metric label and the admin API's
//! status code.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

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

    pub(super) fn from_io(what: &'static str, path: &Path, source: io::Error) -> Self {
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

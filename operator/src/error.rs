//! The operator's error type. Each variant is also a metric label (`label()`).

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server answered with an error status (409 conflict, 500, 403...).
    #[error("kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    /// A reconcile took longer than its bound (a hung API call).
    #[error("reconcile timed out after {0:?}")]
    Timeout(Duration),
    /// The resource lacks a namespace or name (never from a real API server).
    #[error("resource has no {0}")]
    MissingObjectKey(&'static str),
    /// The status holds a remediation record this operator cannot read.
    #[error("{0}")]
    Record(#[from] stallwatch_crds::RecordError),
    /// A remediation effect failed; retried with backoff.
    #[error("remediation step failed: {0}")]
    Remediation(String),
}

/// `label()` and `LABELS` from one list, so a new label cannot be missed in `LABELS`: each arm
/// is `pattern => "label"`, in the order the metric series are registered.
macro_rules! labels {
    ($($pattern:pat $(if $guard:expr)? => $label:literal,)+) => {
        impl Error {
            /// The metric label of this error.
            pub fn label(&self) -> &'static str {
                match self {
                    $($pattern $(if $guard)? => $label,)+
                }
            }

            /// Every label, for pre-registering metric series.
            pub const LABELS: [&'static str; [$($label),+].len()] = [$($label),+];
        }
    };
}

labels! {
    Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
    Error::Kube(kube::Error::Api(s)) if s.code >= 500 => "api_server_error",
    Error::Kube(kube::Error::Api(_)) => "api_error",
    Error::Kube(_) => "kube_client",
    Error::Timeout(_) => "timeout",
    Error::MissingObjectKey(_) => "missing_object_key",
    Error::Record(_) => "bad_record",
    Error::Remediation(_) => "remediation",
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Requeue delay after `failures` consecutive failures: 1 s doubling up to 5 min. Conflicts
/// retry at once-ish (the next read has the new version).
pub fn backoff(failures: u32, error: &Error) -> Duration {
    if matches!(error, Error::Kube(kube::Error::Api(s)) if s.code == 409) && failures <= 1 {
        return Duration::from_millis(200);
    }
    let secs = 1u64 << failures.saturating_sub(1).min(9);
    Duration::from_secs(secs.min(300))
}

#[cfg(test)]
mod tests;

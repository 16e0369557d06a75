//! Fault injection, for tests and demos only. **Unsafe for production**: each mode
//! deliberately breaks the broadcaster in one of the ways Stallwatch exists to detect.
//!
//! - `legacy-unsupervised`: the story. The dispatcher's prepare step fails on a malformed
//!   entity, the error ends the task, nothing restarts it, nothing is logged.
//! - `hang-dispatcher`: after `--fault-after`, the fault stream's dispatcher awaits forever
//!   while items keep arriving (once; a restarted dispatcher works).
//! - `block-runtime`: after `--fault-after`, every executor thread is blocked by a synchronous
//!   sleep, so nothing on the runtime runs, reports included.

use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultMode {
    #[default]
    None,
    LegacyUnsupervised,
    HangDispatcher,
    BlockRuntime,
}

impl FaultMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultMode::None => "none",
            FaultMode::LegacyUnsupervised => "legacy-unsupervised",
            FaultMode::HangDispatcher => "hang-dispatcher",
            FaultMode::BlockRuntime => "block-runtime",
        }
    }
}

impl std::fmt::Display for FaultMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown fault mode {0:?} (expected none, legacy-unsupervised, hang-dispatcher or block-runtime)"
)]
pub struct UnknownFault(String);

impl FromStr for FaultMode {
    type Err = UnknownFault;
    fn from_str(s: &str) -> Result<Self, UnknownFault> {
        Ok(match s.trim() {
            "" | "none" => FaultMode::None,
            "legacy-unsupervised" => FaultMode::LegacyUnsupervised,
            "hang-dispatcher" => FaultMode::HangDispatcher,
            "block-runtime" => FaultMode::BlockRuntime,
            other => return Err(UnknownFault(other.into())),
        })
    }
}

/// The `--fault*` options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FaultConfig {
    pub mode: FaultMode,
    /// Default: every stream for `legacy-unsupervised`, the first stream otherwise.
    pub stream: Option<String>,
    /// When `hang-dispatcher` / `block-runtime` trigger, after start.
    pub after: Duration,
}

impl FaultConfig {
    /// Does the fault apply to `stream` (the `index`-th configured stream)?
    pub fn applies_to(&self, stream: &str, index: usize) -> bool {
        match (&self.mode, &self.stream) {
            (FaultMode::None | FaultMode::BlockRuntime, _) => false,
            (_, Some(s)) => s == stream,
            (FaultMode::LegacyUnsupervised, None) => true,
            (FaultMode::HangDispatcher, None) => index == 0,
        }
    }
}

/// The `block-runtime` fault's task body: blocks the worker thread it runs on, forever.
#[async_backtrace::framed]
pub(crate) async fn block_this_worker() {
    loop {
        // Deliberately a synchronous sleep on an executor thread: the fault being simulated.
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests;

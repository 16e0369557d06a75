//! Harness for running the real Stallwatch binaries as processes: the end-to-end tests, the
//! local demo (`stallwatch-demo`) and the whole-loop benchmark (`stallwatch-loop-bench`).
//!
//! - Binaries are found in the workspace target dir (next to the running executable,
//!   `CARGO_TARGET_DIR/debug` or `<workspace>/target/debug`); a missing one is a clear error
//!   ("run `cargo build --workspace --bins` first"), never a silent skip.
//! - Every process gets free loopback ports, a log file under the [`Env`]'s temp dir, and is
//!   killed on drop; when a test panics, the tail of each process's log is printed.
//! - Typed clients for the sidecar's `/v1/status` and admin API, the broadcaster's metrics,
//!   health and admin endpoints, and a subscriber (`transit-broadcaster subscribe --json`).
//!
//! Modules (private; their public items are re-exported here): `process` (binaries, [`Proc`],
//! [`Env`], [`scenario`]), `broadcaster`, `python` (the Python example service), `sidecar`,
//! `subscriber`, `pod`, `metrics`, `logs`; and [`remediate`], the local remediation adapter.
//!
//! Depends on `stallwatch-core` and `stallwatch-testkit` (free ports) only; the other crates
//! are run, never linked.
#![forbid(unsafe_code)]

use anyhow::{Result, anyhow};

mod broadcaster;
mod logs;
mod metrics;
mod pod;
mod process;
mod python;
pub mod remediate;
mod sidecar;
mod subscriber;

pub use broadcaster::{Broadcaster, BroadcasterOpts};
pub use logs::{find_log, find_log_after, tail};
pub use metrics::Metrics;
pub use pod::Pod;
pub use process::{Env, Proc, bin, bin_dir, scenario, wait_until};
pub use python::{
    PythonService, PythonServiceOpts, ServiceProgress, StreamProgress, python3_available,
    transit_service_script,
};
pub use sidecar::{
    BundleEntry, DumpAnswer, DumpStorage, Sidecar, SidecarOpts, Status, StreamStatus, dir_bytes,
    inspect,
};
pub use stallwatch_core::clock::now_ms;
pub use stallwatch_testkit::net::free_port;
pub use subscriber::{Subscriber, SubscriberState, Update};

/// The admin token every harness sidecar uses.
pub const ADMIN_TOKEN: &str = "e2e-admin-token";

/// Fail with `msg` unless `cond`.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<()> {
    if cond { Ok(()) } else { Err(anyhow!(msg())) }
}

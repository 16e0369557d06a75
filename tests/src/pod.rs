//! A whole local pod: a broadcaster reporting to its sidecar.

use std::time::Duration;

use anyhow::Result;

use crate::broadcaster::{Broadcaster, BroadcasterOpts};
use crate::free_port;
use crate::process::Env;
use crate::sidecar::{Sidecar, SidecarOpts, Status};

/// A broadcaster reporting to a sidecar, both ready: the local stand-in for one pod.
pub struct Pod {
    pub env: Env,
    pub sidecar: Sidecar,
    pub broadcaster: Broadcaster,
}

impl Pod {
    /// Start the sidecar first (so no report is refused), then the broadcaster. The sidecar's
    /// dump dir is `<env>/dumps`.
    pub async fn start(
        env: Env,
        broadcaster: BroadcasterOpts,
        tune: impl FnOnce(&mut SidecarOpts),
    ) -> Result<Self> {
        let admin = free_port();
        let mut so = SidecarOpts::new(env.path().join("dumps"));
        tune(&mut so);
        let mut sidecar = Sidecar::spawn(&env, "transit-sidecar", admin, so)?;
        sidecar.wait_ready(Duration::from_secs(20)).await?;
        let mut bo = broadcaster;
        bo.report_url = Some(sidecar.ingest_url());
        let mut broadcaster =
            Broadcaster::spawn_with_admin(&env, "transit-broadcaster", admin, bo)?;
        broadcaster.wait_ready(Duration::from_secs(20)).await?;
        Ok(Pod {
            env,
            sidecar,
            broadcaster,
        })
    }

    /// Wait until the sidecar has a report for `stream`.
    pub async fn wait_reporting(&self, stream: &str, timeout: Duration) -> Result<Status> {
        self.sidecar.wait_reporting(stream, timeout).await
    }

    /// Wait until `stream` is stalled; returns the status then.
    pub async fn wait_stalled(&self, stream: &str, timeout: Duration) -> Result<Status> {
        self.sidecar.wait_stalled(stream, timeout).await
    }

    /// Wait until `stream` is healthy again (the sidecar has seen the new instance's reports).
    pub async fn wait_healthy(&self, stream: &str, timeout: Duration) -> Result<Status> {
        self.sidecar.wait_healthy(stream, timeout).await
    }
}

//! Scenario 6: the sidecar restarting, the broadcaster restarting, and the dump volume full
//! each have a defined outcome, and nothing already captured is lost.
//!
//! - Sidecar restart: the broadcaster keeps broadcasting while its sidecar is gone (reports
//!   fail, counted), reconnects when it is back; the new sidecar judges the stream healthy and
//!   lists and verifies the bundles captured before.
//! - Broadcaster restart: SIGTERM ends it with exit code 0; the sidecar judges `ReportsLost`
//!   while it is gone and healthy again once the new instance reports; earlier bundles stay.
//! - Dump volume full (a 192 KiB tmpfs): captures answer 507 with an error, the status and
//!   metrics say so, no half-written bundle is left, earlier bundles stay intact, and the
//!   sidecar keeps judging stalls.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use stallwatch_core::condition::StallReason;
use stallwatch_e2e::{
    BroadcasterOpts, DumpAnswer, Pod, Subscriber, ensure, inspect, scenario, wait_until,
};

async fn capture_ok(pod: &Pod, by: &str) -> anyhow::Result<String> {
    match pod.sidecar.capture(Some("all"), None, by).await? {
        DumpAnswer::Captured(m) => Ok(m.path),
        DumpAnswer::Refused { status, error } => anyhow::bail!("capture refused: {status} {error}"),
    }
}

fn intact(bundle: &str) -> anyhow::Result<()> {
    let json: serde_json::Value = serde_json::from_str(&inspect(Path::new(bundle), true)?)?;
    ensure(json["integrity_problems"] == serde_json::json!([]), || {
        format!("{bundle}: {}", json["integrity_problems"])
    })
}

#[test]
fn sidecar_restart_keeps_broadcasting_and_bundles() {
    scenario(|env| async move {
        let mut pod = Pod::start(env, BroadcasterOpts::new("synthetic://?rate=20"), |_| {}).await?;
        let mut sub = Subscriber::spawn(
            &pod.env,
            "subscriber",
            &pod.broadcaster.grpc_url(),
            "all",
            None,
        )?;
        sub.wait_for(0, 3, Duration::from_secs(20)).await?;
        pod.wait_reporting("all", Duration::from_secs(20)).await?;
        let before = capture_ok(&pod, "e2e-before").await?;

        pod.sidecar.proc.kill();
        let failed0 = pod
            .broadcaster
            .metrics()
            .await?
            .sum("stallwatch_broadcaster_reports_failed_total", &[]);
        let n = sub.updates();
        sub.wait_for(n, 20, Duration::from_secs(20)).await?;
        let m = pod.broadcaster.metrics().await?;
        ensure(
            m.sum("stallwatch_broadcaster_reports_failed_total", &[]) > failed0,
            || "report failures not counted while the sidecar is gone".into(),
        )?;
        ensure(m.stream("dispatcher_up", "all") == 1, || {
            "dispatcher down".into()
        })?;

        pod.sidecar.restart()?;
        pod.sidecar.wait_ready(Duration::from_secs(20)).await?;
        pod.wait_reporting("all", Duration::from_secs(20)).await?;
        let s = pod.wait_healthy("all", Duration::from_secs(20)).await?;
        ensure(s.stalled("all").is_none(), || format!("{s:?}"))?;
        ensure(pod.sidecar.detections().await? == 0, || {
            "a verdict after restart".into()
        })?;
        let listed = pod.sidecar.bundles().await?;
        ensure(
            listed
                .iter()
                .any(|b| Path::new(&b.path).file_name() == Path::new(&before).file_name()),
            || format!("{before} not listed after the restart: {listed:?}"),
        )?;
        intact(&before)?;
        // And a capture works with the new sidecar.
        let after = capture_ok(&pod, "e2e-after").await?;
        intact(&after)
    });
}

#[test]
fn broadcaster_restart_is_reports_lost_then_healthy() {
    scenario(|env| async move {
        let mut pod = Pod::start(env, BroadcasterOpts::new("synthetic://?rate=20"), |_| {}).await?;
        let first = pod.wait_reporting("all", Duration::from_secs(20)).await?;
        let before = capture_ok(&pod, "e2e-before").await?;

        let code = pod.broadcaster.proc.terminate(Duration::from_secs(10));
        ensure(code == Some(0), || format!("SIGTERM exit code {code:?}"))?;
        let s = pod.wait_stalled("all", Duration::from_secs(20)).await?;
        ensure(s.stalled("all") == Some(StallReason::ReportsLost), || {
            format!("{s:?}")
        })?;

        pod.broadcaster.restart()?;
        pod.broadcaster.wait_ready(Duration::from_secs(20)).await?;
        let s = pod.wait_healthy("all", Duration::from_secs(30)).await?;
        ensure(s.instance != first.instance, || {
            "same instance after restart".into()
        })?;
        let listed = pod.sidecar.bundles().await?;
        ensure(!listed.is_empty(), || "bundles lost".into())?;
        intact(&before)
    });
}

/// Unmounts on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn walk(dir: &Path, out: &mut Vec<String>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            out.push(e.path().display().to_string());
            if e.path().is_dir() {
                walk(&e.path(), out);
            }
        }
    }
}

#[test]
fn a_full_dump_volume_is_reported_and_loses_nothing() {
    scenario(|env| async move {
        let dumps = env.path().join("small-volume");
        std::fs::create_dir_all(&dumps)?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=192k,mode=0700", "tmpfs"])
            .arg(&dumps)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!(
                "NOT RUN a_full_dump_volume_is_reported_and_loses_nothing: mounting a tmpfs is not permitted here \
                 (transit-sidecar's own tests cover a full volume with an injected ENOSPC)"
            );
            return Ok(());
        }
        let _mount = Mount(dumps.clone());
        let mut opts =
            BroadcasterOpts::new("synthetic://?rate=20&vehicles=40").fault("hang-dispatcher");
        opts.fault_after = Some("6s".into());
        let d = dumps.clone();
        let pod = Pod::start(env, opts, move |o| o.dump_dir = d).await?;
        pod.wait_reporting("all", Duration::from_secs(20)).await?;

        let mut kept = Vec::new();
        let mut refused = None;
        for i in 0..60 {
            match pod
                .sidecar
                .capture(Some("all"), None, &format!("e2e-{i}"))
                .await?
            {
                DumpAnswer::Captured(m) => kept.push(m.path),
                DumpAnswer::Refused { status, error } => {
                    refused = Some((status, error));
                    break;
                }
            }
        }
        let (status, error) = refused.ok_or_else(|| anyhow::anyhow!("the volume never filled"))?;
        eprintln!(
            "full volume: {} bundles, then HTTP {status}: {error}",
            kept.len()
        );
        ensure(status == 507, || format!("HTTP {status}: {error}"))?;
        ensure(!kept.is_empty(), || "no bundle fit at all".into())?;
        let st = pod.sidecar.status().await?;
        let storage = st
            .dump_storage
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no dump_storage"))?;
        ensure(!storage.ok && storage.error.is_some(), || {
            format!("{storage:?}")
        })?;
        let m = pod.sidecar.metrics().await?;
        ensure(
            m.sum("stallwatch_sidecar_dumps_total", &[("outcome", "no_space")]) >= 1.0,
            || "no no_space metric".into(),
        )?;
        // Nothing half-written looks like a bundle; every earlier bundle is intact.
        let mut files = Vec::new();
        walk(&dumps, &mut files);
        ensure(files.iter().all(|p| !p.contains(".tmp-")), || {
            format!("temporary files left: {files:?}")
        })?;
        for b in &kept {
            intact(b)?;
        }
        // The sidecar keeps judging: the hang fault is caught with the volume still full.
        let s = pod.wait_stalled("all", Duration::from_secs(30)).await?;
        ensure(s.stalled("all") == Some(StallReason::ChannelStuck), || {
            format!("{s:?}")
        })?;
        // Space freed: the next capture works and the storage error clears.
        for b in kept.iter().take(2) {
            std::fs::remove_dir_all(b)?;
        }
        let sc = &pod.sidecar;
        wait_until(
            "a capture after space was freed",
            Duration::from_secs(10),
            Duration::from_millis(200),
            || async move {
                match sc.capture(Some("all"), None, "e2e-freed").await {
                    Ok(DumpAnswer::Captured(m)) => Some(m),
                    _ => None,
                }
            },
        )
        .await?;
        let st = pod.sidecar.status().await?;
        ensure(st.dump_storage.is_some_and(|d| d.ok), || {
            "storage still in error".into()
        })
    });
}

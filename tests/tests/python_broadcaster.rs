//! Bring your own broadcaster: the Python example service
//! (`examples/report-clients/python/transit_service.py`) reports to a real `transit-sidecar`,
//! no cluster. Its consumer thread is killed; the sidecar judges the stream stalled
//! (`DispatcherDead` or `ChannelStuck`); the remediation loop (the operator's decision
//! function with the local adapter) captures a bundle whose task dump lacks the dispatcher
//! thread and names the error, then restarts the service, whose updates flow again.
//! With `--supervised`, a poison snapshot is quarantined and counted: no verdict.
//! Skipped, saying so, when `python3` is missing.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use stallwatch_core::condition::StallReason;
use stallwatch_core::remediation::{Outcome, Policy};
use stallwatch_e2e::remediate::{LocalRemediator, LoopEventKind};
use stallwatch_e2e::{
    Env, PythonService, PythonServiceOpts, Sidecar, SidecarOpts, ensure, free_port, inspect,
    python3_available, scenario, wait_until,
};

const STREAM: &str = "all";

fn skip_without_python(test: &str) -> bool {
    if python3_available() {
        return false;
    }
    eprintln!("SKIPPED {test}: python3 not found on PATH; the Python example service cannot run");
    true
}

/// A ready sidecar and a ready Python service reporting to it, its admin port the one the
/// sidecar calls for dumps.
async fn start(env: &Env, supervised: bool) -> anyhow::Result<(Sidecar, PythonService)> {
    let admin = free_port();
    let mut sidecar = Sidecar::spawn(
        env,
        "transit-sidecar",
        admin,
        SidecarOpts::new(env.path().join("dumps")),
    )?;
    sidecar.wait_ready(Duration::from_secs(20)).await?;
    let mut opts = PythonServiceOpts::new(sidecar.ingest_url());
    opts.supervised = supervised;
    let mut service = PythonService::spawn(env, "transit-service", admin, opts)?;
    service.wait_ready(Duration::from_secs(20)).await?;
    Ok((sidecar, service))
}

/// Wait until `stream`'s `last_seq` on the service is at least `n` beyond `from`.
async fn wait_seq(service: &PythonService, from: u64, n: u64) -> anyhow::Result<u64> {
    wait_until(
        &format!("the service's last_seq to pass {}", from + n),
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async move {
            let p = service.stream(STREAM).await.ok()?;
            (p.last_seq >= from + n).then_some(p.last_seq)
        },
    )
    .await
}

#[test]
fn a_killed_python_consumer_is_judged_captured_and_restarted() {
    if skip_without_python("a_killed_python_consumer_is_judged_captured_and_restarted") {
        return;
    }
    scenario(|env| async move {
        let (sidecar, mut service) = start(&env, false).await?;
        let first_instance = service.progress().await?.instance;
        let seq = wait_seq(&service, 0, 5).await?;
        sidecar
            .wait_healthy(STREAM, Duration::from_secs(20))
            .await?;

        service.kill_consumer(STREAM).await?;
        let status = sidecar
            .wait_stalled(STREAM, Duration::from_secs(30))
            .await?;
        let reason = status.stalled(STREAM).context("a stall reason")?;
        ensure(
            matches!(
                reason,
                StallReason::DispatcherDead | StallReason::ChannelStuck
            ),
            || format!("unexpected reason {reason}"),
        )?;
        ensure(service.proc.alive(), || "the service died".into())?;
        let stalled_seq = service.stream(STREAM).await?.last_seq;
        ensure(stalled_seq >= seq, || {
            format!("last_seq went back: {stalled_seq}")
        })?;

        let mut rem = LocalRemediator::new(Policy {
            cooldown_ms: 0,
            dump_timeout_ms: 5_000,
            ..Policy::default()
        });
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20)
            && rem
                .find(0, |k| *k == LoopEventKind::RestartIssued)
                .is_none()
        {
            rem.pass(&sidecar, &mut service).await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let restart = rem
            .find(0, |k| *k == LoopEventKind::RestartIssued)
            .with_context(|| format!("no restart: {:?}", rem.events))?;
        ensure(restart.text.contains("python service"), || {
            restart.text.clone()
        })?;
        ensure(service.starts == 2, || format!("{} starts", service.starts))?;

        // The bundle, captured before the restart: no dispatcher thread, the error named.
        let bundle = rem
            .events
            .iter()
            .find_map(|e| match &e.kind {
                LoopEventKind::DumpCaptured { path, .. } => Some(path.clone()),
                _ => None,
            })
            .with_context(|| format!("no bundle captured: {:?}", rem.events))?;
        let dump_idx = rem
            .events
            .iter()
            .position(|e| matches!(e.kind, LoopEventKind::DumpCaptured { .. }));
        let restart_idx = rem
            .events
            .iter()
            .position(|e| e.kind == LoopEventKind::RestartIssued);
        ensure(dump_idx < restart_idx, || "dump after restart".into())?;
        let text = inspect(Path::new(&bundle), false)?;
        ensure(
            text.contains("no dispatcher task found for stream all"),
            || format!("the bundle shows a dispatcher:\n{text}"),
        )?;
        ensure(
            text.contains("PoisonPill: consumer killed on request"),
            || format!("the bundle does not name the error:\n{text}"),
        )?;

        // The new instance: updates flow again and the sidecar sees the stream healthy.
        let fresh = service.wait_ready(Duration::from_secs(20)).await?;
        ensure(fresh.instance != first_instance, || {
            format!("same instance after the restart: {}", fresh.instance)
        })?;
        let from = service.stream(STREAM).await?.last_seq;
        wait_seq(&service, from, 5).await?;
        sidecar
            .wait_healthy(STREAM, Duration::from_secs(20))
            .await?;
        rem.pass(&sidecar, &mut service).await?;
        let finished: Vec<_> = rem.ledger.history.iter().collect();
        ensure(finished.len() == 1, || format!("{:?}", rem.ledger))?;
        ensure(finished[0].outcome == Some(Outcome::Restarted), || {
            format!("{:?}", finished[0])
        })?;
        Ok(())
    });
}

#[test]
fn a_supervised_python_service_quarantines_poison_without_a_verdict() {
    if skip_without_python("a_supervised_python_service_quarantines_poison_without_a_verdict") {
        return;
    }
    scenario(|env| async move {
        let (sidecar, service) = start(&env, true).await?;
        let seq = wait_seq(&service, 0, 5).await?;
        sidecar
            .wait_healthy(STREAM, Duration::from_secs(20))
            .await?;

        service.poison(STREAM).await?;
        // Three stall-after periods (1 s each): long enough for any verdict to be reached.
        let watch = Instant::now();
        while watch.elapsed() < Duration::from_secs(3) {
            let status = sidecar.status().await?;
            ensure(status.stalled(STREAM).is_none(), || {
                format!("a verdict on a supervised service: {status:?}")
            })?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ensure(sidecar.detections().await? == 0, || {
            "detections counted".into()
        })?;

        let dump = service.task_dump().await?;
        let report = dump
            .streams
            .iter()
            .find(|s| s.name == STREAM)
            .context("stream all in the task dump")?;
        ensure(report.quarantined_total == 1, || {
            format!("quarantined_total {}", report.quarantined_total)
        })?;
        wait_seq(&service, seq, 20).await?;
        ensure(service.starts == 1, || "the service was restarted".into())?;
        Ok(())
    });
}

//! Zero-code mode, end to end with real processes: an app that only exports OpenMetrics
//! (`tests/apps/queue_app.py`: per-stream depth gauge, dequeued and enqueued counters, no
//! report client) is watched by `transit-sidecar --metrics-url ...`. Its first stream's
//! consumer stops; the sidecar judges `ChannelStuck` within report mode's bound
//! (`stall_after + 2 * interval`, the scrape interval standing for the report interval) while
//! the other stream stays healthy; the remediation loop (the operator's decision function with
//! the local adapter) captures a bundle holding the scraped series around the stall and
//! restarts the app; the restarted app's counters start from 0 (a new instance, no false
//! verdict) and the stream recovers.

use std::path::Path;
use std::time::{Duration, Instant};

use stallwatch_core::condition::StallReason;
use stallwatch_core::remediation::{Outcome, Policy};
use stallwatch_e2e::metrics_app::{MetricsApp, MetricsAppOpts};
use stallwatch_e2e::remediate::{LocalRemediator, LoopEventKind};
use stallwatch_e2e::{
    Sidecar, SidecarOpts, Status, ensure, free_port, inspect, scenario, wait_until,
};

const STALL_AFTER_MS: u64 = 1_000;
const SCRAPE_INTERVAL_MS: u64 = 250;

async fn wait_status(
    sidecar: &Sidecar,
    what: &str,
    timeout: Duration,
    done: impl Fn(&Status) -> bool,
) -> anyhow::Result<Status> {
    let done = &done;
    wait_until(what, timeout, Duration::from_millis(20), || async move {
        sidecar.status().await.ok().filter(|s| done(s))
    })
    .await
}

#[test]
fn a_metrics_only_app_is_judged_captured_and_restarted() {
    scenario(|env| async move {
        let mut app = MetricsApp::spawn(
            &env,
            MetricsAppOpts {
                streams: vec!["orders".into(), "refunds".into()],
                stop_consumer_after: Some(Duration::from_secs(3)),
                ..MetricsAppOpts::default()
            },
        )?;
        app.wait_ready(Duration::from_secs(20)).await?;
        let mut so = SidecarOpts::new(env.path().join("dumps"));
        so.stall_after = format!("{STALL_AFTER_MS}ms");
        so.extra = app.sidecar_flags(&format!("{SCRAPE_INTERVAL_MS}ms"));
        // Nothing listens on the "broadcaster admin" port: a metrics-only app has none.
        let mut sidecar = Sidecar::spawn(&env, "transit-sidecar", free_port(), so)?;
        sidecar.wait_ready(Duration::from_secs(20)).await?;

        let healthy = wait_status(
            &sidecar,
            "both streams judged",
            Duration::from_secs(20),
            |s| s.stream("orders").is_some() && s.stream("refunds").is_some(),
        )
        .await?;
        ensure(healthy.scrape.as_ref().is_some_and(|s| s.ok), || {
            format!("scrape not ok: {healthy:?}")
        })?;
        ensure(healthy.stalled("orders").is_none(), || {
            format!("stalled before the consumer stopped: {healthy:?}")
        })?;

        let stalled = wait_status(
            &sidecar,
            "a stall verdict on orders",
            Duration::from_secs(30),
            |s| s.stalled("orders").is_some(),
        )
        .await?;
        ensure(
            stalled.stalled("orders") == Some(StallReason::ChannelStuck),
            || format!("{stalled:?}"),
        )?;
        ensure(stalled.stalled("refunds").is_none(), || {
            format!("refunds stalled too: {stalled:?}")
        })?;
        let stopped_ms = app
            .consumer_stopped_ms()
            .ok_or_else(|| anyhow::anyhow!("the app never logged its consumer stopping"))?;
        let since = stalled
            .stream("orders")
            .and_then(|s| s.since_ms)
            .unwrap_or_default();
        let bound = STALL_AFTER_MS + 2 * SCRAPE_INTERVAL_MS;
        let took = since as i64 - stopped_ms as i64;
        eprintln!(
            "zero-code: ChannelStuck judged {took} ms after the consumer stopped (bound {bound} ms)"
        );
        ensure(took >= STALL_AFTER_MS as i64 - 50, || {
            format!("verdict {took} ms after the stop, before stall_after")
        })?;
        // Report mode's bound, plus scheduling slack on a shared machine.
        ensure(took <= (bound + 1000) as i64, || {
            format!("verdict {took} ms after the stop, bound {bound} ms")
        })?;
        ensure(sidecar.readyz().await? == 503, || {
            "/readyz should be 503 while stalled".into()
        })?;

        // The loop: dump (the scraped series), then restart the app with a working consumer.
        app.opts.stop_consumer_after = None;
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
            rem.pass(&sidecar, &mut app).await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let bundle = rem
            .events
            .iter()
            .find_map(|e| match &e.kind {
                LoopEventKind::DumpCaptured { path, .. } => Some(path.clone()),
                _ => None,
            })
            .ok_or_else(|| anyhow::anyhow!("no bundle captured: {:?}", rem.events))?;
        ensure(app.starts == 2, || format!("{:?}", rem.events))?;

        // The bundle holds the scraped series around the stall instead of a task dump.
        let dir = Path::new(&bundle);
        ensure(
            dir.join("scrapes.txt").is_file() && !dir.join("tasks.txt").exists(),
            || {
                format!(
                    "bundle files: {:?}",
                    std::fs::read_dir(dir).map(|d| d.count())
                )
            },
        )?;
        let json: serde_json::Value = serde_json::from_str(&inspect(dir, true)?)?;
        ensure(json["integrity_problems"] == serde_json::json!([]), || {
            format!("integrity: {}", json["integrity_problems"])
        })?;
        ensure(
            json["manifest"]["task_dump"]["outcome"] == "not_applicable",
            || format!("task_dump: {}", json["manifest"]["task_dump"]),
        )?;
        let scrapes = json["scrapes"].as_array().cloned().unwrap_or_default();
        ensure(scrapes.len() >= 8, || {
            format!("{} scrapes in the bundle", scrapes.len())
        })?;
        let full = "queue_app_depth{stream=\"orders\"} 8";
        ensure(
            scrapes.iter().any(|s| {
                s["series"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|x| x.as_str() == Some(full)))
            }),
            || format!("no scrape shows the full queue: {scrapes:?}"),
        )?;
        let text = inspect(dir, false)?;
        ensure(
            text.contains("scraped series") && text.contains(full),
            || text.clone(),
        )?;

        // The restarted app: counters from 0 again (a new instance, not a stall), progress,
        // and the verdict recovers.
        app.wait_ready(Duration::from_secs(20)).await?;
        let recovered = wait_status(
            &sidecar,
            "orders healthy again",
            Duration::from_secs(20),
            |s| s.stream("orders").is_some_and(|st| st.verdict == "healthy"),
        )
        .await?;
        let scrape = recovered.scrape.clone().expect("scrape status");
        ensure(scrape.ok && scrape.app_restarts >= 1, || {
            format!("{scrape:?}")
        })?;
        ensure(recovered.stalled("refunds").is_none(), || {
            format!("{recovered:?}")
        })?;
        rem.pass(&sidecar, &mut app).await?;
        let finished: Vec<_> = rem.ledger.history.iter().collect();
        ensure(finished.len() == 1, || format!("{:?}", rem.ledger))?;
        ensure(finished[0].outcome == Some(Outcome::Restarted), || {
            format!("{:?}", finished[0])
        })?;
        Ok(())
    });
}

/// A wrong mapping: the sidecar names the missing metric, judges nothing, and is not Ready,
/// while the app's queue is stuck the whole time (so any verdict would come from the wrong
/// mapping, not from the app).
#[test]
fn a_wrong_mapping_gives_a_message_and_no_verdict() {
    scenario(|env| async move {
        let mut app = MetricsApp::spawn(
            &env,
            MetricsAppOpts {
                stop_consumer_after: Some(Duration::ZERO),
                ..MetricsAppOpts::default()
            },
        )?;
        app.wait_ready(Duration::from_secs(20)).await?;
        let mut so = SidecarOpts::new(env.path().join("dumps"));
        so.stall_after = "200ms".into();
        so.extra = app.sidecar_flags("100ms");
        for flag in &mut so.extra {
            if flag.starts_with("--metrics-depth=") {
                *flag = "--metrics-depth=queue_app_size".into();
            }
        }
        let mut sidecar = Sidecar::spawn(&env, "transit-sidecar", free_port(), so)?;
        sidecar.wait_ready(Duration::from_secs(20)).await?;
        let s = wait_status(&sidecar, "a scrape error", Duration::from_secs(20), |s| {
            s.scrape
                .as_ref()
                .is_some_and(|x| x.error_kind.as_deref() == Some("missing_metric"))
        })
        .await?;
        let error = s
            .scrape
            .as_ref()
            .and_then(|x| x.error.clone())
            .unwrap_or_default();
        ensure(
            error.contains("metric queue_app_size is not in the scrape"),
            || error.clone(),
        )?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let s = sidecar.status().await?;
        ensure(s.streams.is_empty(), || format!("{s:?}"))?;
        ensure(sidecar.detections().await? == 0, || {
            "a verdict from a wrong mapping".into()
        })?;
        let m = sidecar.metrics().await?;
        ensure(m.sum("stallwatch_sidecar_scrape_ok", &[]) == 0.0, || {
            format!("{m:?}")
        })?;
        Ok(())
    });
}

//! Scenario 3: the other fault modes give the other reasons. `hang-dispatcher` (the
//! dispatcher awaits forever with items waiting) gives `ChannelStuck`; `block-runtime` (every
//! executor thread blocked, so no reports) gives `ReportsLost`.

use std::time::Duration;

use stallwatch_core::condition::StallReason;
use stallwatch_e2e::{BroadcasterOpts, Pod, ensure, scenario};

#[test]
fn hang_dispatcher_gives_channel_stuck() {
    scenario(|env| async move {
        let mut opts =
            BroadcasterOpts::new("synthetic://?rate=20&vehicles=10").fault("hang-dispatcher");
        opts.streams = vec!["downtown=routes:R1,R2".into(), "all".into()];
        opts.fault_stream = Some("downtown".into());
        opts.fault_after = Some("1s".into());
        let pod = Pod::start(env, opts, |_| {}).await?;
        pod.wait_reporting("downtown", Duration::from_secs(20))
            .await?;
        let s = pod
            .wait_stalled("downtown", Duration::from_secs(30))
            .await?;
        ensure(
            s.stalled("downtown") == Some(StallReason::ChannelStuck),
            || format!("{s:?}"),
        )?;
        let st = s.stream("downtown").expect("downtown");
        ensure(st.depth.unwrap_or(0) > 0, || format!("{st:?}"))?;
        // The other stream keeps flowing and is not judged.
        ensure(s.stalled("all").is_none(), || {
            format!("all stalled too: {s:?}")
        })?;
        let m1 = pod.broadcaster.metrics().await?;
        tokio::time::sleep(Duration::from_millis(600)).await;
        let m2 = pod.broadcaster.metrics().await?;
        ensure(
            m2.stream("dequeued_total", "all") > m1.stream("dequeued_total", "all"),
            || "stream all stopped too".into(),
        )?;
        ensure(
            m2.stream("dequeued_total", "downtown") == m1.stream("dequeued_total", "downtown"),
            || "downtown is dequeuing".into(),
        )?;
        Ok(())
    });
}

#[test]
fn block_runtime_gives_reports_lost() {
    scenario(|env| async move {
        let mut opts =
            BroadcasterOpts::new("synthetic://?rate=20&vehicles=10").fault("block-runtime");
        opts.fault_after = Some("1s".into());
        let pod = Pod::start(env, opts, |_| {}).await?;
        pod.wait_reporting("all", Duration::from_secs(20)).await?;
        let s = pod.wait_stalled("all", Duration::from_secs(30)).await?;
        ensure(s.stalled("all") == Some(StallReason::ReportsLost), || {
            format!("{s:?}")
        })?;
        // The process is wedged: its HTTP endpoints do not answer either.
        let health = pod.broadcaster.healthz().await;
        eprintln!("block-runtime: /healthz during the block: {health:?}");
        Ok(())
    });
}

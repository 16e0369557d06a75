//! Scenario 2, the fix holds: the default supervised mode with 1 % malformed entities over
//! 100,000 entity messages (10,000 feed snapshots of 10 vehicles) gives zero stall verdicts,
//! every bad entity is quarantined and counted, and no valid entity is lost, counted end to
//! end: source-produced = delivered to the subscriber + quarantined (+ dropped, which the
//! channel capacity chosen here keeps at zero, asserted).

use std::time::Duration;

/// Generous: a shared, busy machine may delay a report; these scenarios are about
/// `ChannelStuck`/`DispatcherDead` false alarms, judged with stall-after 1 s.
const REPORT_TIMEOUT: &str = "3s";

use stallwatch_e2e::{BroadcasterOpts, Pod, Subscriber, ensure, scenario, wait_until};

const MESSAGES: u64 = 10_000;
const VEHICLES: u64 = 10;

#[test]
fn supervised_mode_quarantines_every_bad_entity_and_loses_nothing() {
    scenario(|env| async move {
        let mut opts = BroadcasterOpts::new(&format!(
            "synthetic://?rate=1000&vehicles={VEHICLES}&routes=4&malformed_rate=0.01&limit={MESSAGES}&seed=7"
        ));
        // Room for the whole run: nothing is ever dropped, so every message is accounted for.
        opts.channel_capacity = Some(MESSAGES as u32);
        opts.subscriber_queue = Some(MESSAGES as u32);
        let pod = Pod::start(env, opts, |o| o.report_timeout = REPORT_TIMEOUT.into()).await?;
        let sub = Subscriber::spawn(
            &pod.env,
            "subscriber",
            &pod.broadcaster.grpc_url(),
            "all",
            None,
        )?;

        // Until the source is done and the channel drained, and the subscriber caught up.
        let b = &pod.broadcaster;
        let sub_ref = &sub;
        let m = wait_until(
            "the source to finish and the pipeline to drain",
            Duration::from_secs(120),
            Duration::from_millis(250),
            || async move {
                let m = b.metrics().await.ok()?;
                let done = m.sum("stallwatch_broadcaster_source_messages_total", &[]) as u64
                    == MESSAGES
                    && m.stream("dequeued_total", "all") == MESSAGES
                    && sub_ref.snapshot().last_seq.is_some_and(|s| s >= MESSAGES);
                done.then_some(m)
            },
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let s = sub.snapshot();
        let enq = m.stream("enqueued_total", "all");
        let deq = m.stream("dequeued_total", "all");
        let dropped = m.stream("dropped_oldest_total", "all");
        let quarantined = m.sum(
            "stallwatch_broadcaster_quarantined_total",
            &[("stream", "all"), ("kind", "entity")],
        ) as u64;
        let other_quarantine = m.sum(
            "stallwatch_broadcaster_quarantined_total",
            &[("stream", "all")],
        ) as u64
            - quarantined;
        let first = s.first_seq.unwrap_or(0);
        eprintln!(
            "fix holds: produced {} entities in {MESSAGES} messages; enqueued {enq}, dequeued {deq}, dropped {dropped}; \
             quarantined {quarantined} (other kinds {other_quarantine}); subscriber: {} updates (seq {first}..={:?}), \
             {} valid entities, {} quarantined entities, missed {}, gaps {}",
            MESSAGES * VEHICLES,
            s.updates,
            s.last_seq,
            s.vehicles,
            s.quarantined_entities,
            s.missed,
            s.seq_gaps
        );
        ensure(enq == MESSAGES && deq == MESSAGES && dropped == 0, || {
            "channel accounting".into()
        })?;
        ensure(other_quarantine == 0, || {
            "whole messages quarantined".into()
        })?;
        // ~1 % of the entities were bad; all of them quarantined and counted.
        let produced = MESSAGES * VEHICLES;
        ensure(
            quarantined >= produced / 200 && quarantined <= produced * 3 / 200,
            || format!("{quarantined} quarantined of {produced}: not ~1 %"),
        )?;
        // The subscriber saw every update from its first on, none missed, and in each update
        // every entity is either delivered or counted as quarantined.
        ensure(s.missed == 0 && s.seq_gaps == 0, || {
            "subscriber lost updates".into()
        })?;
        ensure(s.last_seq == Some(MESSAGES), || {
            "last update missing".into()
        })?;
        ensure(s.updates == MESSAGES - first + 1, || {
            format!("{} updates for seq {first}..={MESSAGES}", s.updates)
        })?;
        ensure(
            s.vehicles + s.quarantined_entities == s.updates * VEHICLES,
            || {
                format!(
                    "{} delivered + {} quarantined != {} produced",
                    s.vehicles,
                    s.quarantined_entities,
                    s.updates * VEHICLES
                )
            },
        )?;
        if first == 1 {
            ensure(s.quarantined_entities == quarantined, || {
                "quarantine counter and updates disagree".into()
            })?;
        } else {
            ensure(s.quarantined_entities <= quarantined, || {
                "more quarantined in updates than counted".into()
            })?;
        }
        // Zero verdicts, ever.
        let d = pod.sidecar.detections().await?;
        ensure(d == 0, || format!("{d} stall detections"))?;
        let status = pod.sidecar.status().await?;
        ensure(status.stalled("all").is_none(), || format!("{status:?}"))?;
        let restarts = m.stream("dispatcher_restarts_total", "all");
        ensure(restarts == 0, || format!("{restarts} dispatcher restarts"))
    });
}

use std::time::Duration;

use super::types::millis;
use super::*;
use crate::condition::StallReason;
use crate::report::{DispatcherState, PROTOCOL_V1, Report, StreamReport, parse_report};

const INTERVAL: Duration = Duration::from_millis(250);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn stream(name: &str, depth: u64, enq: u64, deq: u64, state: DispatcherState) -> StreamReport {
    crate::report::testing::stream(name, depth, enq, deq, state)
}

/// Drives a judge with reports every 250 ms from a test-controlled broadcaster.
struct Sim {
    judge: Judge,
    now: Duration,
    seq: u64,
    instance: String,
    log: Vec<Transition>,
}

impl Sim {
    fn new() -> Self {
        Sim::with(VerdictConfig::default())
    }

    fn with(cfg: VerdictConfig) -> Self {
        Sim {
            judge: Judge::new(cfg),
            now: Duration::ZERO,
            seq: 0,
            instance: "i-1".into(),
            log: Vec::new(),
        }
    }

    fn report(&mut self, streams: Vec<StreamReport>) -> Vec<Transition> {
        self.seq += 1;
        let r = Report {
            protocol: PROTOCOL_V1.into(),
            instance: self.instance.clone(),
            seq: self.seq,
            sent_at_ms: 1_700_000_000_000 + millis(self.now),
            interval_ms: 250,
            pid: None,
            version: None,
            streams,
        };
        r.validate().expect("test reports are valid");
        let t = self.judge.observe(&r, self.now).expect("in order");
        self.log.extend(t.iter().cloned());
        t
    }

    fn advance(&mut self, d: Duration) -> Vec<Transition> {
        self.now += d;
        let t = self.judge.tick(self.now);
        self.log.extend(t.iter().cloned());
        t
    }

    fn verdict(&self, name: &str) -> Verdict {
        self.judge.stream(name, self.now).expect("known").verdict
    }
}

fn stuck(reason: StallReason) -> Verdict {
    Verdict::Stalled { reason }
}

#[test]
fn idle_stream_is_never_stalled() {
    let mut sim = Sim::new();
    for _ in 0..400 {
        assert!(
            sim.report(vec![stream("a", 0, 7, 7, DispatcherState::Running)])
                .is_empty()
        );
        sim.advance(INTERVAL);
    }
    assert_eq!(sim.verdict("a"), Verdict::Healthy);
    assert!(sim.log.is_empty());
}

#[test]
fn busy_stream_with_progress_is_healthy() {
    let mut sim = Sim::new();
    for i in 0..100 {
        sim.report(vec![stream(
            "a",
            5,
            100 + i * 3,
            95 + i * 3,
            DispatcherState::Running,
        )]);
        sim.advance(INTERVAL);
    }
    assert_eq!(sim.verdict("a"), Verdict::Healthy);
    assert!(sim.log.is_empty());
}

#[test]
fn items_waiting_briefly_are_not_a_stall() {
    let mut sim = Sim::new();
    // Waiting for 1.75 s (< stall_after), then drained.
    for _ in 0..8 {
        sim.report(vec![stream("a", 3, 10, 7, DispatcherState::Running)]);
        sim.advance(INTERVAL);
    }
    sim.report(vec![stream("a", 0, 10, 10, DispatcherState::Running)]);
    assert!(sim.log.is_empty());
}

#[test]
fn channel_stuck_after_stall_after_and_within_target() {
    let mut sim = Sim::new();
    sim.report(vec![stream("a", 0, 10, 10, DispatcherState::Running)]);
    sim.advance(INTERVAL);
    // Items arrive and nothing dequeues from now on.
    let stuck_from = sim.now;
    let mut detected = None;
    for _ in 0..20 {
        let t = sim.report(vec![stream("a", 5, 15, 10, DispatcherState::Running)]);
        if !t.is_empty() {
            assert_eq!(
                t,
                vec![Transition {
                    stream: "a".into(),
                    at: sim.now,
                    change: Change::Stalled {
                        reason: StallReason::ChannelStuck
                    }
                }]
            );
            detected = Some(sim.now);
            break;
        }
        sim.advance(INTERVAL);
    }
    let detected = detected.expect("stall detected");
    let latency = detected - stuck_from;
    assert!(latency >= Duration::from_secs(2), "{latency:?}");
    assert!(
        latency <= Duration::from_secs(2) + 2 * INTERVAL,
        "{latency:?}"
    );
    assert_eq!(sim.verdict("a"), stuck(StallReason::ChannelStuck));
    let view = sim.judge.stream("a", sim.now).unwrap();
    assert_eq!(view.since, detected);
    assert_eq!((view.depth, view.capacity), (5, 5));
}

#[test]
fn stuck_clock_starts_at_the_reported_last_dequeue() {
    // The dispatcher dequeues one item 50 ms after a report and hangs; the next item
    // waits from then on. The sender's last_dequeue_ms dates the stall, so the verdict
    // does not wait for the first report that shows it.
    let epoch = 1_700_000_000_000;
    let mut sim = Sim::new();
    sim.report(vec![stream("a", 0, 10, 10, DispatcherState::Running)]);
    let hang_at = sim.now + Duration::from_millis(50);
    // Reports arrive a little faster than the nominal interval (jitter), so with the clock
    // started at the first report that shows the wait, the verdict would slip one more.
    let step = INTERVAL - Duration::from_millis(10);
    sim.advance(step);
    let mut detected = None;
    for _ in 0..20 {
        let mut r = stream("a", 1, 12, 11, DispatcherState::Running);
        r.last_dequeue_ms = Some(epoch + millis(hang_at));
        if !sim.report(vec![r]).is_empty() {
            detected = Some(sim.now);
            break;
        }
        sim.advance(step);
    }
    let latency = detected.expect("stall detected") - hang_at;
    assert!(latency >= Duration::from_secs(2), "{latency:?}");
    assert!(latency <= Duration::from_secs(2) + step, "{latency:?}");
}

#[test]
fn reported_old_dequeue_does_not_date_a_new_wait_before_the_last_report() {
    // Idle for a minute, then an item arrives: the wait cannot have started before the
    // previous report, which showed an empty channel.
    let epoch = 1_700_000_000_000;
    let mut sim = Sim::new();
    let mut idle = stream("a", 0, 10, 10, DispatcherState::Running);
    idle.last_dequeue_ms = Some(epoch);
    sim.advance(Duration::from_secs(60));
    sim.report(vec![idle.clone()]);
    sim.advance(INTERVAL);
    let arrived = sim.now - INTERVAL;
    let mut detected = None;
    for _ in 0..20 {
        let mut r = stream("a", 1, 11, 10, DispatcherState::Running);
        r.last_dequeue_ms = Some(epoch);
        if !sim.report(vec![r]).is_empty() {
            detected = Some(sim.now);
            break;
        }
        sim.advance(INTERVAL);
    }
    let latency = detected.expect("stall detected") - arrived;
    assert!(latency >= Duration::from_secs(2), "{latency:?}");
}

#[test]
fn stuck_detected_even_when_counters_change_elsewhere() {
    // Enqueued keeps growing (drop-oldest keeps the channel full) but nothing dequeues:
    // exactly the story.
    let mut sim = Sim::new();
    let mut enq = 10;
    for _ in 0..12 {
        enq += 4;
        sim.report(vec![stream("a", 5, enq, 5, DispatcherState::Running)]);
        sim.advance(INTERVAL);
    }
    assert_eq!(sim.verdict("a"), stuck(StallReason::ChannelStuck));
}

#[test]
fn dispatcher_dead_with_items_is_immediate() {
    let mut sim = Sim::new();
    sim.report(vec![stream("a", 0, 10, 10, DispatcherState::Running)]);
    sim.advance(INTERVAL);
    let t = sim.report(vec![stream("a", 1, 11, 10, DispatcherState::Dead)]);
    assert_eq!(
        t[0].change,
        Change::Stalled {
            reason: StallReason::DispatcherDead
        }
    );
    let mut sim = Sim::new();
    let t = sim.report(vec![stream("a", 2, 2, 0, DispatcherState::Missing)]);
    assert_eq!(
        t[0].change,
        Change::Stalled {
            reason: StallReason::DispatcherDead
        }
    );
}

#[test]
fn dispatcher_dead_on_idle_stream_is_not_a_stall() {
    let mut sim = Sim::new();
    for _ in 0..20 {
        sim.report(vec![stream("a", 0, 10, 10, DispatcherState::Dead)]);
        sim.advance(INTERVAL);
    }
    assert_eq!(sim.verdict("a"), Verdict::Healthy);
    let view = sim.judge.stream("a", sim.now).unwrap();
    assert_eq!(view.dispatcher, DispatcherState::Dead);
}

#[test]
fn dispatcher_dead_when_items_arrive_even_if_drained_by_report_time() {
    let mut sim = Sim::new();
    sim.report(vec![stream("a", 0, 10, 10, DispatcherState::Dead)]);
    sim.advance(INTERVAL);
    // Enqueued moved; depth 0 (say the items were dropped). Still: nobody reads.
    let t = sim.report(vec![stream("a", 0, 12, 10, DispatcherState::Dead)]);
    assert_eq!(t.len(), 1);
    assert_eq!(sim.verdict("a"), stuck(StallReason::DispatcherDead));
}

#[test]
fn restarting_dispatcher_is_judged_by_progress() {
    let mut sim = Sim::new();
    for _ in 0..4 {
        sim.report(vec![stream("a", 2, 12, 10, DispatcherState::Restarting)]);
        sim.advance(INTERVAL);
    }
    assert_eq!(sim.verdict("a"), Verdict::Healthy);
    for _ in 0..6 {
        sim.report(vec![stream("a", 2, 12, 10, DispatcherState::Restarting)]);
        sim.advance(INTERVAL);
    }
    assert_eq!(sim.verdict("a"), stuck(StallReason::ChannelStuck));
}

#[test]
fn stuck_then_dead_changes_reason_once() {
    let mut sim = Sim::new();
    for _ in 0..10 {
        sim.report(vec![stream("a", 5, 15, 10, DispatcherState::Running)]);
        sim.advance(INTERVAL);
    }
    let since = sim.judge.stream("a", sim.now).unwrap().since;
    let t = sim.report(vec![stream("a", 5, 15, 10, DispatcherState::Dead)]);
    assert_eq!(
        t[0].change,
        Change::ReasonChanged {
            from: StallReason::ChannelStuck,
            to: StallReason::DispatcherDead
        }
    );
    sim.advance(INTERVAL);
    assert!(
        sim.report(vec![stream("a", 5, 15, 10, DispatcherState::Dead)])
            .is_empty()
    );
    // Still stalled since the first detection.
    assert_eq!(sim.judge.stream("a", sim.now).unwrap().since, since);
}

#[test]
fn reports_lost_on_tick_and_recovers_when_reports_resume() {
    let mut sim = Sim::new();
    sim.report(vec![
        stream("a", 0, 1, 1, DispatcherState::Running),
        stream("b", 0, 1, 1, DispatcherState::Running),
    ]);
    assert!(sim.advance(ms(1999)).is_empty());
    let t = sim.advance(ms(1));
    assert_eq!(t.len(), 2);
    assert!(t.iter().all(|t| t.change
        == Change::Stalled {
            reason: StallReason::ReportsLost
        }));
    // Further ticks emit nothing new.
    assert!(sim.advance(INTERVAL).is_empty());
    // Reports resume; healthy again only after recover_after of clean reports.
    let mut recovered_at = None;
    for _ in 0..10 {
        let t = sim.report(vec![
            stream("a", 0, 1, 1, DispatcherState::Running),
            stream("b", 0, 1, 1, DispatcherState::Running),
        ]);
        if !t.is_empty() {
            recovered_at = Some(sim.now);
            assert!(t.iter().all(|t| matches!(
                t.change,
                Change::Recovered {
                    was: StallReason::ReportsLost,
                    ..
                }
            )));
            break;
        }
        sim.advance(INTERVAL);
    }
    let first_report_after = ms(2000 + 250);
    assert_eq!(
        recovered_at,
        Some(first_report_after + Duration::from_secs(1))
    );
}

#[test]
fn reports_lost_keeps_a_more_specific_reason() {
    let mut sim = Sim::new();
    for _ in 0..10 {
        sim.report(vec![
            stream("a", 5, 15, 10, DispatcherState::Running),
            stream("b", 0, 1, 1, DispatcherState::Running),
        ]);
        sim.advance(INTERVAL);
    }
    assert_eq!(sim.verdict("a"), stuck(StallReason::ChannelStuck));
    let t = sim.advance(Duration::from_secs(3));
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].stream, "b");
    assert_eq!(sim.verdict("a"), stuck(StallReason::ChannelStuck));
    assert_eq!(sim.verdict("b"), stuck(StallReason::ReportsLost));
}

#[test]
fn no_tick_verdict_before_first_report() {
    let mut sim = Sim::new();
    assert!(sim.advance(Duration::from_secs(60)).is_empty());
    assert!(sim.judge.streams(sim.now).is_empty());
    assert!(!sim.judge.any_stalled());
}

#[test]
fn recovery_needs_sustained_progress() {
    let mut sim = Sim::new();
    for _ in 0..10 {
        sim.report(vec![stream("a", 5, 15, 10, DispatcherState::Running)]);
        sim.advance(INTERVAL);
    }
    assert_eq!(sim.verdict("a"), stuck(StallReason::ChannelStuck));
    // One dequeue, then stuck again: no recovery, no flapping.
    let mut deq = 10;
    for i in 0..40 {
        if i % 3 == 0 {
            deq += 1;
        }
        sim.report(vec![stream("a", 5, 100, deq, DispatcherState::Running)]);
        sim.advance(INTERVAL);
    }
    assert_eq!(sim.verdict("a"), stuck(StallReason::ChannelStuck));
    assert_eq!(sim.log.len(), 1, "{:?}", sim.log);
    // Steady progress for recover_after: healthy.
    for _ in 0..5 {
        deq += 1;
        sim.report(vec![stream("a", 5, 200, deq, DispatcherState::Running)]);
        sim.advance(INTERVAL);
    }
    assert_eq!(sim.verdict("a"), Verdict::Healthy);
    match sim.log.last().unwrap().change {
        Change::Recovered {
            was,
            stalled_for_ms,
        } => {
            assert_eq!(was, StallReason::ChannelStuck);
            assert!(stalled_for_ms >= 10_000, "{stalled_for_ms}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn draining_to_empty_counts_as_progress() {
    let mut sim = Sim::new();
    for _ in 0..10 {
        sim.report(vec![stream("a", 5, 15, 10, DispatcherState::Running)]);
        sim.advance(INTERVAL);
    }
    for _ in 0..5 {
        sim.report(vec![stream("a", 0, 15, 15, DispatcherState::Running)]);
        sim.advance(INTERVAL);
    }
    assert_eq!(sim.verdict("a"), Verdict::Healthy);
}

#[test]
fn new_instance_resets_baselines_but_keeps_verdict_until_progress() {
    let mut sim = Sim::new();
    for _ in 0..10 {
        sim.report(vec![stream("a", 5, 1000, 990, DispatcherState::Running)]);
        sim.advance(INTERVAL);
    }
    assert_eq!(sim.verdict("a"), stuck(StallReason::ChannelStuck));
    // Restart: counters start again from zero, and seq too.
    sim.instance = "i-2".into();
    sim.seq = 0;
    // Lower counters in the new instance are not "progress" nor a violation.
    sim.report(vec![stream("a", 1, 3, 2, DispatcherState::Running)]);
    assert_eq!(sim.verdict("a"), stuck(StallReason::ChannelStuck));
    sim.advance(INTERVAL);
    let mut deq = 2;
    for _ in 0..5 {
        deq += 2;
        sim.report(vec![stream("a", 1, deq + 1, deq, DispatcherState::Running)]);
        sim.advance(INTERVAL);
    }
    assert_eq!(sim.verdict("a"), Verdict::Healthy);
    assert_eq!(sim.judge.instance(), Some("i-2"));
}

#[test]
fn new_instance_does_not_inherit_waiting_time() {
    let mut sim = Sim::new();
    for _ in 0..7 {
        sim.report(vec![stream("a", 5, 15, 10, DispatcherState::Running)]);
        sim.advance(INTERVAL);
    }
    sim.instance = "i-2".into();
    sim.seq = 0;
    // 1.75 s waited in the old process, 0.5 s in the new one: not stuck yet.
    for _ in 0..3 {
        sim.report(vec![stream("a", 5, 5, 0, DispatcherState::Running)]);
        sim.advance(INTERVAL);
    }
    assert_eq!(sim.verdict("a"), Verdict::Healthy);
}

#[test]
fn replays_are_refused_and_change_nothing() {
    let mut judge = Judge::new(VerdictConfig::default());
    let doc = include_str!("../../../docs/report-protocol.md");
    let start = doc.find("```json").unwrap() + "```json".len();
    let end = start + doc[start..].find("```").unwrap();
    let report = parse_report(&doc.as_bytes()[start..end]).unwrap();
    let t = judge.observe(&report, ms(0)).unwrap();
    // The documented example: downtown's dispatcher is dead with a full channel.
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].stream, "downtown");
    let err = judge.observe(&report, ms(10)).unwrap_err();
    assert_eq!(err.label(), "out_of_order");
    assert_eq!(judge.last_report_at(), Some(ms(0)));
}

#[test]
fn removed_streams_are_reported_once() {
    let mut sim = Sim::new();
    sim.report(vec![
        stream("a", 0, 1, 1, DispatcherState::Running),
        stream("b", 2, 2, 0, DispatcherState::Dead),
    ]);
    sim.advance(INTERVAL);
    let t = sim.report(vec![stream("a", 0, 1, 1, DispatcherState::Running)]);
    assert_eq!(
        t,
        vec![Transition {
            stream: "b".into(),
            at: sim.now,
            change: Change::Removed {
                was: stuck(StallReason::DispatcherDead)
            }
        }]
    );
    assert!(!sim.judge.any_stalled());
    assert!(sim.judge.stream("b", sim.now).is_none());
}

#[test]
fn silence_gap_does_not_count_as_waiting() {
    let mut sim = Sim::new();
    sim.report(vec![stream("a", 5, 15, 10, DispatcherState::Running)]);
    sim.advance(Duration::from_secs(5));
    assert_eq!(sim.verdict("a"), stuck(StallReason::ReportsLost));
    // The process is back; the dispatcher is catching up (same counters at first).
    sim.report(vec![stream("a", 5, 15, 10, DispatcherState::Running)]);
    assert_eq!(sim.verdict("a"), stuck(StallReason::ReportsLost));
    sim.advance(INTERVAL);
    let mut deq = 10;
    for _ in 0..5 {
        deq += 1;
        sim.report(vec![stream("a", 5, 100, deq, DispatcherState::Running)]);
        sim.advance(INTERVAL);
    }
    assert_eq!(sim.verdict("a"), Verdict::Healthy);
    let reasons: Vec<_> = sim.log.iter().map(|t| t.change).collect();
    assert!(
        !reasons
            .iter()
            .any(|c| matches!(c, Change::ReasonChanged { .. })),
        "{reasons:?}"
    );
}

#[test]
fn stalled_streams_for_the_condition_longest_first() {
    let mut sim = Sim::new();
    for i in 0..14 {
        let b_state = if i >= 12 {
            DispatcherState::Dead
        } else {
            DispatcherState::Running
        };
        let mut r = vec![
            stream("a", 0, 1, 1, DispatcherState::Running),
            stream("b", 3, 3, 0, b_state),
            stream("c", 5, 15, 10, DispatcherState::Running),
        ];
        if i < 3 {
            r[2] = stream("c", 0, 10, 10, DispatcherState::Running);
        }
        r[2].last_dequeue_ms = Some(1_700_000_000_000 + 500);
        sim.report(r);
        sim.advance(INTERVAL);
    }
    let stalled = sim.judge.stalled_streams(sim.now);
    let names: Vec<_> = stalled.iter().map(|s| s.stream.as_str()).collect();
    assert_eq!(names, vec!["b", "c"]);
    assert_eq!(stalled[0].reason, StallReason::DispatcherDead);
    assert_eq!(stalled[0].secs_since_dequeue, None);
    assert_eq!(stalled[1].reason, StallReason::ChannelStuck);
    // Sender clock: last report sent at +3250 ms, last dequeue at +500 ms, plus the 250 ms
    // since that report arrived.
    assert_eq!(stalled[1].secs_since_dequeue, Some(3.0));
    let msg = crate::condition::format_message(&stalled);
    assert_eq!(
        msg,
        "stream b: DispatcherDead, 3/5 waiting, never dequeued; \
         stream c: ChannelStuck, 5/5 waiting, no dequeue for 3.0s"
    );
    assert_eq!(crate::condition::parse_message(&msg).unwrap(), stalled);
}

#[test]
fn secs_since_dequeue_falls_back_to_own_observation() {
    let mut sim = Sim::new();
    sim.report(vec![stream("a", 1, 5, 4, DispatcherState::Running)]);
    sim.advance(Duration::from_secs(1));
    let v = sim.judge.stream("a", sim.now).unwrap();
    // Dequeued before we knew it: at least as long as we have known it.
    assert_eq!(v.secs_since_dequeue, Some(1.0));
    sim.report(vec![stream("a", 1, 6, 5, DispatcherState::Running)]);
    sim.advance(ms(500));
    let v = sim.judge.stream("a", sim.now).unwrap();
    assert_eq!(v.secs_since_dequeue, Some(0.5));
}

#[test]
fn custom_thresholds_are_honoured() {
    let cfg = VerdictConfig {
        stall_after: ms(500),
        report_timeout: ms(300),
        recover_after: ms(0),
    };
    let mut sim = Sim::with(cfg);
    sim.report(vec![stream("a", 1, 1, 0, DispatcherState::Running)]);
    sim.advance(ms(250));
    sim.report(vec![stream("a", 1, 1, 0, DispatcherState::Running)]);
    assert_eq!(sim.verdict("a"), Verdict::Healthy);
    sim.advance(ms(250));
    sim.report(vec![stream("a", 1, 1, 0, DispatcherState::Running)]);
    assert_eq!(sim.verdict("a"), stuck(StallReason::ChannelStuck));
    sim.advance(ms(250));
    sim.report(vec![stream("a", 0, 1, 1, DispatcherState::Running)]);
    assert_eq!(sim.verdict("a"), Verdict::Healthy);
    assert_eq!(sim.advance(ms(300)).len(), 1);
}

#[test]
fn serde_shapes_are_stable() {
    assert_eq!(
        serde_json::to_string(&Verdict::Healthy).unwrap(),
        r#"{"verdict":"healthy"}"#
    );
    assert_eq!(
        serde_json::to_string(&stuck(StallReason::ChannelStuck)).unwrap(),
        r#"{"verdict":"stalled","reason":"ChannelStuck"}"#
    );
    let t = Transition {
        stream: "a".into(),
        at: ms(1500),
        change: Change::Recovered {
            was: StallReason::ReportsLost,
            stalled_for_ms: 3000,
        },
    };
    let json = serde_json::to_string(&t).unwrap();
    assert_eq!(
        json,
        r#"{"stream":"a","at":1500,"change":"recovered","was":"ReportsLost","stalled_for_ms":3000}"#
    );
    assert_eq!(serde_json::from_str::<Transition>(&json).unwrap(), t);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Step {
        /// Report after `gap_ms`: depth, items arrived, items dequeued, dispatcher state.
        Report {
            gap_ms: u64,
            depth: u64,
            arrive: u64,
            dequeue: u64,
            state: DispatcherState,
        },
        /// Silence of `ms`, with ticks every 100 ms.
        Silence(u64),
        Restart,
    }

    fn state() -> impl Strategy<Value = DispatcherState> {
        prop_oneof![
            6 => Just(DispatcherState::Running),
            1 => Just(DispatcherState::Restarting),
            1 => Just(DispatcherState::Dead),
            1 => Just(DispatcherState::Missing),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            20 => (1u64..600, 0u64..=5, 0u64..4, 0u64..4, state()).prop_map(
                |(gap_ms, depth, arrive, dequeue, state)| Step::Report {
                    gap_ms, depth, arrive, dequeue, state
                }
            ),
            1 => (0u64..5000).prop_map(Step::Silence),
            1 => Just(Step::Restart),
        ]
    }

    /// Runs the steps, checking that every transition starts from the verdict the
    /// previous ones left and that no stream recovers faster than `recover_after`.
    fn run(steps: &[Step]) -> Sim {
        let mut sim = Sim::new();
        let (mut enq, mut deq) = (0u64, 0u64);
        let mut verdict = Verdict::Healthy;
        let mut stalled_at = Duration::ZERO;
        let mut check = |sim: &Sim, t: Vec<Transition>| {
            for t in t {
                match t.change {
                    Change::Stalled { .. } => {
                        assert_eq!(verdict, Verdict::Healthy);
                        stalled_at = t.at;
                    }
                    Change::ReasonChanged { from, to } => {
                        assert_eq!(verdict, Verdict::Stalled { reason: from });
                        assert_ne!(from, to);
                    }
                    Change::Recovered {
                        was,
                        stalled_for_ms,
                    } => {
                        assert_eq!(verdict, Verdict::Stalled { reason: was });
                        assert!(t.at - stalled_at >= sim.judge.config().recover_after);
                        assert_eq!(stalled_for_ms, millis(t.at - stalled_at));
                    }
                    Change::Removed { .. } => panic!("stream never removed here"),
                }
                verdict = t.verdict_after().unwrap();
            }
            assert_eq!(
                sim.judge
                    .stream("s", sim.now)
                    .map(|v| v.verdict)
                    .unwrap_or(Verdict::Healthy),
                verdict
            );
        };
        for step in steps {
            match *step {
                Step::Report {
                    gap_ms,
                    depth,
                    arrive,
                    dequeue,
                    state,
                } => {
                    let t = sim.advance(ms(gap_ms));
                    check(&sim, t);
                    enq += arrive;
                    deq = (deq + dequeue).min(enq);
                    let t = sim.report(vec![stream("s", depth, enq, deq, state)]);
                    check(&sim, t);
                }
                Step::Silence(total) => {
                    let mut left = total;
                    while left > 0 {
                        let d = left.min(100);
                        left -= d;
                        let t = sim.advance(ms(d));
                        check(&sim, t);
                    }
                }
                Step::Restart => {
                    sim.instance = format!("{}x", sim.instance);
                    sim.seq = 0;
                    enq = 0;
                    deq = 0;
                }
            }
        }
        sim
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn transitions_are_consistent(steps in proptest::collection::vec(step(), 0..120)) {
            run(&steps);
        }

        #[test]
        fn idle_streams_never_stall(
            gaps in proptest::collection::vec(1u64..1999, 1..200),
            state in state(),
            total in 0u64..1000,
        ) {
            let mut sim = Sim::new();
            for gap in gaps {
                sim.advance(ms(gap));
                sim.report(vec![stream("s", 0, total, total, state)]);
            }
            prop_assert!(sim.log.is_empty(), "{:?}", sim.log);
        }

        #[test]
        fn progressing_streams_never_stall(
            steps in proptest::collection::vec((1u64..1999, 1u64..=5, 1u64..10), 1..200),
        ) {
            let mut sim = Sim::new();
            let mut deq = 0;
            for (gap, depth, n) in steps {
                sim.advance(ms(gap));
                deq += n;
                sim.report(vec![stream("s", depth, deq + depth, deq, DispatcherState::Running)]);
            }
            prop_assert!(sim.log.is_empty(), "{:?}", sim.log);
        }

        #[test]
        fn stuck_streams_are_caught_within_target(
            interval in 10u64..1000,
            healthy_reports in 0usize..20,
            depth in 1u64..=5,
        ) {
            let cfg = VerdictConfig::default();
            let mut sim = Sim::new();
            for i in 0..healthy_reports as u64 {
                sim.report(vec![stream("s", 0, i, i, DispatcherState::Running)]);
                sim.advance(ms(interval));
            }
            let n = healthy_reports as u64;
            // The item gets stuck somewhere inside the last interval; count from the
            // previous report, the worst case.
            let stuck_at = sim.now.saturating_sub(ms(interval));
            let mut caught = None;
            for _ in 0..10_000 {
                let t = sim.report(vec![stream("s", depth, n + depth, n, DispatcherState::Running)]);
                if !t.is_empty() {
                    caught = Some(sim.now);
                    break;
                }
                sim.advance(ms(interval));
            }
            let caught = caught.expect("caught");
            prop_assert!(caught - stuck_at <= cfg.stall_after + ms(2 * interval));
            prop_assert_eq!(sim.verdict("s"), stuck(StallReason::ChannelStuck));
        }
    }
}

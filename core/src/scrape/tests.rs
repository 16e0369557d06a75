use std::time::Duration;

use super::*;
use crate::condition::StallReason;
use crate::exposition::parse;
use crate::verdict::{Change, Judge, VerdictConfig};

fn mapping() -> MetricsMapping {
    MetricsMapping {
        depth: "app_queue_depth".into(),
        capacity: Capacity::Metric("app_queue_capacity".into()),
        dequeued: "app_dequeued".into(),
        enqueued: None,
        dropped: None,
        consumer_up: None,
        stream_label: "queue".into(),
    }
}

fn body(depth: u64, dequeued: u64) -> Vec<Sample> {
    parse(&format!(
        "# TYPE app_queue_depth gauge\n\
         app_queue_depth{{queue=\"orders\"}} {depth}\n\
         app_queue_capacity{{queue=\"orders\"}} 8\n\
         # TYPE app_dequeued counter\n\
         app_dequeued_total{{queue=\"orders\"}} {dequeued}\n\
         # EOF\n"
    ))
    .unwrap()
}

#[test]
fn a_scrape_becomes_a_valid_report() {
    let mut a = ScrapeAdapter::new(mapping(), "app:9100");
    let out = a.adapt(&body(3, 10), 1_000, 250).unwrap();
    let r = out.report;
    r.validate().unwrap();
    assert_eq!(r.instance, "app:9100#1");
    assert_eq!(r.seq, 1);
    assert_eq!(r.interval_ms, 250);
    let s = r.stream("orders").unwrap();
    assert_eq!((s.channel.depth, s.channel.capacity), (3, 8));
    assert_eq!(s.dequeued_total, 10);
    // Without an enqueued counter: what must have entered.
    assert_eq!(s.enqueued_total, 13);
    assert_eq!(s.dispatcher.state, DispatcherState::Running);
    assert!(out.restart.is_none());
    assert_eq!(a.adapt(&body(3, 11), 1_250, 250).unwrap().report.seq, 2);
}

#[test]
fn a_fixed_capacity_and_optional_counters() {
    let mut m = mapping();
    m.capacity = Capacity::Fixed(100);
    m.enqueued = Some("app_enqueued_total".into());
    m.dropped = Some("app_dropped".into());
    m.consumer_up = Some("app_consumer_up".into());
    let samples = parse(
        "app_queue_depth{queue=\"a\"} 2\napp_dequeued_total{queue=\"a\"} 5\n\
         app_enqueued_total{queue=\"a\"} 9\napp_dropped_total{queue=\"a\"} 2\n\
         app_consumer_up{queue=\"a\"} 0\n",
    )
    .unwrap();
    let r = ScrapeAdapter::new(m.clone(), "x")
        .adapt(&samples, 1, 1000)
        .unwrap()
        .report;
    let s = r.stream("a").unwrap();
    assert_eq!(s.channel.capacity, 100);
    assert_eq!((s.enqueued_total, s.dropped_oldest_total), (9, 2));
    assert_eq!(s.dispatcher.state, DispatcherState::Dead);
    assert!(m.reads(&samples[3]), "dropped is read as dropped_total");
    assert!(!m.reads(&parse("other 1").unwrap()[0]));
}

#[test]
fn wrong_mappings_say_what_is_wrong() {
    let mut a = ScrapeAdapter::new(mapping(), "x");
    let missing = parse("app_queue_depthh{queue=\"a\"} 1\n").unwrap();
    let e = a.adapt(&missing, 1, 1000).unwrap_err();
    assert_eq!(e.label(), "missing_metric");
    assert!(
        e.to_string().contains("did you mean app_queue_depthh"),
        "{e}"
    );

    let no_label = parse("app_queue_depth{stream=\"a\"} 1\n").unwrap();
    let e = a.adapt(&no_label, 1, 1000).unwrap_err();
    assert_eq!(e.label(), "missing_label");
    assert!(
        e.to_string()
            .contains("without the stream label \"queue\" (labels: stream)"),
        "{e}"
    );

    let no_capacity_series = parse(
        "app_queue_depth{queue=\"a\"} 1\napp_queue_capacity{queue=\"b\"} 8\napp_dequeued{queue=\"a\"} 1\n",
    )
    .unwrap();
    let e = a.adapt(&no_capacity_series, 1, 1000).unwrap_err();
    assert!(e.to_string().contains("no series for stream \"a\""), "{e}");

    let over = parse(
        "app_queue_depth{queue=\"a\"} 9\napp_queue_capacity{queue=\"a\"} 8\napp_dequeued{queue=\"a\"} 1\n",
    )
    .unwrap();
    assert_eq!(a.adapt(&over, 1, 1000).unwrap_err().label(), "bad_value");

    let fraction = parse(
        "app_queue_depth{queue=\"a\"} 0.5\napp_queue_capacity{queue=\"a\"} 8\napp_dequeued{queue=\"a\"} 1\n",
    )
    .unwrap();
    assert_eq!(
        a.adapt(&fraction, 1, 1000).unwrap_err().label(),
        "bad_value"
    );

    let bad_name = parse(
        "app_queue_depth{queue=\"Orders Queue\"} 1\napp_queue_capacity{queue=\"Orders Queue\"} 8\n\
         app_dequeued{queue=\"Orders Queue\"} 1\n",
    )
    .unwrap();
    assert_eq!(
        a.adapt(&bad_name, 1, 1000).unwrap_err().label(),
        "bad_stream"
    );
    // None of these became a report.
    assert_eq!(a.adapt(&body(0, 0), 1, 1000).unwrap().report.seq, 1);
}

#[test]
fn a_counter_going_backwards_starts_a_new_instance() {
    let mut a = ScrapeAdapter::new(mapping(), "x");
    a.adapt(&body(1, 100), 1, 1000).unwrap();
    a.adapt(&body(1, 101), 2, 1000).unwrap();
    let out = a.adapt(&body(1, 3), 3, 1000).unwrap();
    assert_eq!(out.report.instance, "x#2");
    assert_eq!(out.report.seq, 1);
    let why = out.restart.unwrap();
    assert!(
        why.contains("app_dequeued of stream orders went back from 101 to 3"),
        "{why}"
    );
    let next = a.adapt(&body(1, 4), 4, 1000).unwrap();
    assert!(next.restart.is_none());
    assert_eq!((next.report.instance.as_str(), next.report.seq), ("x#2", 2));
}

/// The verdict machine, fed through the adapter, judges a consumer that stops as
/// `ChannelStuck` within `stall_after + 2 * interval`, and a restart of the app (counters back
/// to zero while items wait) is not a stall.
#[test]
fn the_judge_sees_through_the_adapter() {
    let interval = 250u64;
    let cfg = VerdictConfig {
        stall_after: Duration::from_secs(1),
        ..VerdictConfig::default()
    };
    let mut judge = Judge::new(cfg);
    let mut a = ScrapeAdapter::new(mapping(), "x");
    let mut dequeued = 0;
    let mut t = 0u64;
    let mut feed = |a: &mut ScrapeAdapter, depth, dequeued, t: u64| {
        let r = a
            .adapt(&body(depth, dequeued), 1_000_000 + t, interval)
            .unwrap()
            .report;
        judge.observe(&r, Duration::from_millis(t)).unwrap()
    };
    // Healthy: items flow.
    for _ in 0..8 {
        dequeued += 5;
        assert!(feed(&mut a, 2, dequeued, t).is_empty());
        t += interval;
    }
    // The app restarts: counters start again from 0, items wait but move.
    for i in 1..8 {
        assert!(feed(&mut a, 2, i, t).is_empty(), "false verdict at {t}");
        t += interval;
    }
    // The consumer stops at `stopped`.
    let stopped = t;
    let mut judged = None;
    for _ in 0..20 {
        let tr = feed(&mut a, 8, 7, t);
        if let Some(x) = tr.first() {
            judged = Some((x.change, t));
            break;
        }
        t += interval;
    }
    let (change, at) = judged.expect("a verdict");
    assert_eq!(
        change,
        Change::Stalled {
            reason: StallReason::ChannelStuck
        }
    );
    assert!(at - stopped <= 1000 + 2 * interval, "{} ms", at - stopped);
}

/// With a "consumer up" gauge mapped, a consumer reported down while items wait is
/// `DispatcherDead` at the first scrape that shows it, as in report mode.
#[test]
fn a_consumer_up_gauge_gives_dispatcher_dead() {
    let mut m = mapping();
    m.consumer_up = Some("app_consumer_up".into());
    let mut a = ScrapeAdapter::new(m, "x");
    let mut judge = Judge::new(VerdictConfig::default());
    let scrape = |up: u8, deq: u64| {
        parse(&format!(
            "app_queue_depth{{queue=\"orders\"}} 2\napp_queue_capacity{{queue=\"orders\"}} 8\n\
             app_dequeued_total{{queue=\"orders\"}} {deq}\napp_consumer_up{{queue=\"orders\"}} {up}\n"
        ))
        .unwrap()
    };
    let r = a.adapt(&scrape(1, 1), 1, 250).unwrap().report;
    assert!(judge.observe(&r, Duration::ZERO).unwrap().is_empty());
    let r = a.adapt(&scrape(0, 1), 2, 250).unwrap().report;
    let t = judge.observe(&r, Duration::from_millis(250)).unwrap();
    assert_eq!(
        t[0].change,
        Change::Stalled {
            reason: StallReason::DispatcherDead
        }
    );
}

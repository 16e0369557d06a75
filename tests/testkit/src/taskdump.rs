//! A task dump (`stallwatch_core::taskdump`) shaped like the broadcaster's, for tests of what
//! reads one: the sidecar's bundles, `inspect`, and the fake broadcaster admin API.

use stallwatch_core::clock::now_ms;
use stallwatch_core::report::{DispatcherState, StreamReport};
use stallwatch_core::taskdump::{
    ErrorRecord, QuarantinedMessage, TASKDUMP_V1, TaskDump, TaskInfo, TaskKind,
};

use crate::report::{CAPACITY, StreamReportBuilder, stream};

/// A task dump like the broadcaster's for a process serving `streams` streams with
/// `subscribers` subscriber tasks each, where `dead_stream` (if any) has no dispatcher.
pub fn task_dump(streams: &[&str], subscribers: usize, dead_stream: Option<&str>) -> TaskDump {
    let mut tasks = process_tasks();
    for s in streams {
        tasks.extend(stream_tasks(s, subscribers, Some(*s) == dead_stream));
    }
    TaskDump {
        protocol: TASKDUMP_V1.into(),
        instance: "fake-1".into(),
        pid: std::process::id(),
        captured_at_ms: now_ms(),
        tasks,
        backtrace: "╼ transit_broadcaster::source::run at src/source.rs:88\n".repeat(20),
        streams: streams
            .iter()
            .map(|s| stream_report(s, Some(*s) == dead_stream))
            .collect(),
        quarantine: dead_stream.map(quarantined).into_iter().collect(),
        recent_errors: dead_stream.map(dispatcher_ended).into_iter().collect(),
    }
}

/// The tasks every broadcaster runs once: the source and the reporter.
fn process_tasks() -> Vec<TaskInfo> {
    vec![
        TaskInfo {
            name: "source/synthetic".into(),
            kind: TaskKind::Source,
            stream: None,
            spawned_at_ms: 1,
            frames: vec![
                "transit_broadcaster::source::run at src/source.rs:88".into(),
                "transit_broadcaster::source::synthetic::next at src/source/synthetic.rs:140"
                    .into(),
                "tokio::time::sleep".into(),
            ],
        },
        TaskInfo {
            name: "reporter".into(),
            kind: TaskKind::Reporter,
            stream: None,
            spawned_at_ms: 1,
            frames: vec![
                "transit_broadcaster::reporter::run at src/reporter.rs:51".into(),
                "tokio::time::interval::tick".into(),
            ],
        },
    ]
}

/// One stream's tasks: its dispatcher (unless `dead`) and `subscribers` subscriber tasks.
fn stream_tasks(s: &str, subscribers: usize, dead: bool) -> Vec<TaskInfo> {
    let dispatcher = (!dead).then(|| TaskInfo {
        name: format!("dispatcher/{s}"),
        kind: TaskKind::Dispatcher,
        stream: Some(s.into()),
        spawned_at_ms: 2,
        frames: vec![
            "transit_broadcaster::dispatch::supervise at src/dispatch.rs:40".into(),
            "transit_broadcaster::dispatch::run at src/dispatch.rs:80".into(),
            "transit_broadcaster::channel::Receiver::recv at src/channel.rs:120".into(),
        ],
    });
    let subscribers = (0..subscribers).map(|i| TaskInfo {
        name: format!("subscriber/{s}/{i}"),
        kind: TaskKind::Subscriber,
        stream: Some(s.into()),
        spawned_at_ms: 3,
        frames: vec![
            "tonic::server::streaming at tonic/src/server/grpc.rs:300".into(),
            "transit_broadcaster::grpc::subscribe::{{closure}} at src/grpc.rs:210".into(),
            "tokio::sync::mpsc::Receiver::recv".into(),
        ],
    });
    dispatcher.into_iter().chain(subscribers).collect()
}

/// A running stream's report, or a dead one's: channel full, one message quarantined, the
/// parse error kept.
fn stream_report(s: &str, dead: bool) -> StreamReport {
    if !dead {
        return stream(s, 0, 1000, 1000, DispatcherState::Running);
    }
    StreamReportBuilder::new(s)
        .channel(5, CAPACITY)
        .totals(1000, 900)
        .state(DispatcherState::Dead)
        .quarantined(1)
        .last_error(
            now_ms() - 5000,
            "prepare failed: invalid digit found in string (vehicle 4412 field 'bearing')",
        )
        .build()
}

/// The malformed message that killed the dead stream's dispatcher.
fn quarantined(s: &str) -> QuarantinedMessage {
    QuarantinedMessage {
        stream: s.into(),
        at_ms: now_ms() - 5000,
        kind: "entity".into(),
        error: "invalid digit found in string (vehicle 4412 field 'bearing')".into(),
        excerpt_hex: "0a0434343132".repeat(40),
        size: 412,
    }
}

fn dispatcher_ended(s: &str) -> ErrorRecord {
    ErrorRecord {
        stream: Some(s.into()),
        at_ms: now_ms() - 5000,
        message: "dispatcher ended: prepare failed".into(),
    }
}

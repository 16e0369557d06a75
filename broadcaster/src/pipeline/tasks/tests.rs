//! Unit tests of `tasks.rs`.

use super::*;
use std::time::Duration;

#[async_backtrace::framed]
async fn parked_here(rx: tokio::sync::oneshot::Receiver<()>) {
    let _ = rx.await;
}

#[tokio::test]
async fn tasks_appear_with_frames_and_vanish_when_they_end() {
    let registry = TaskRegistry::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let handle = registry.spawn(
        &tokio::runtime::Handle::current(),
        "dispatcher/unit",
        TaskKind::Dispatcher,
        Some("unit"),
        parked_here(rx),
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (tasks, tree) = registry.snapshot();
    let task = tasks
        .iter()
        .find(|t| t.name == "dispatcher/unit")
        .expect("registered");
    assert_eq!(task.stream.as_deref(), Some("unit"));
    assert!(
        task.frames.iter().any(|f| f.contains("parked_here")),
        "{:?}",
        task.frames
    );
    assert!(tree.contains("dispatcher/unit"));
    tx.send(()).unwrap();
    handle.await.unwrap();
    assert!(!registry.names().contains(&"dispatcher/unit".to_string()));

    // Aborted tasks vanish too.
    let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = registry.spawn(
        &tokio::runtime::Handle::current(),
        "dispatcher/aborted",
        TaskKind::Dispatcher,
        Some("aborted"),
        parked_here(rx),
    );
    handle.abort();
    let _ = handle.await;
    assert!(registry.names().is_empty(), "{:?}", registry.names());
}

#[test]
fn non_task_registrations_carry_a_note() {
    let registry = TaskRegistry::new();
    let reg = registry.register(
        "subscriber/all/1",
        TaskKind::Subscriber,
        Some("all"),
        Some("peer 127.0.0.1:1".into()),
    );
    let (tasks, _) = registry.snapshot();
    assert_eq!(tasks[0].frames, ["peer 127.0.0.1:1"]);
    drop(reg);
    assert!(registry.snapshot().0.is_empty());
}

use super::*;
use stallwatch_core::taskdump::TaskKind;

fn task(name: &str, frames: &[&str]) -> TaskInfo {
    TaskInfo {
        name: name.into(),
        kind: TaskKind::Other,
        stream: None,
        spawned_at_ms: 0,
        frames: frames.iter().map(|f| (*f).to_owned()).collect(),
    }
}

#[test]
fn identical_stacks_are_grouped_with_counts() {
    let tasks = vec![
        task(
            "supervisor/b",
            &[
                "╼ supervisor/b at src/tasks.rs:53:58",
                "   └╼ supervise at src/dispatcher.rs:190:1",
            ],
        ),
        task(
            "supervisor/a",
            &[
                "╼ supervisor/a at src/tasks.rs:53:58",
                "   └╼ supervise at src/dispatcher.rs:190:1",
            ],
        ),
        task(
            "dispatcher/a",
            &[
                "╼ dispatcher/a at src/tasks.rs:53:58",
                "   └╼ recv at src/channel.rs:126:5",
            ],
        ),
        task(
            "dispatcher/b",
            &[
                "╼ dispatcher/b at src/tasks.rs:53:58",
                "   └╼ hang_forever at src/dispatcher.rs:112:1",
            ],
        ),
        task("server/grpc", &[]),
        task("server/http", &[]),
        task(
            "reporter",
            &[
                "╼ reporter at src/tasks.rs:53:58",
                "  └╼ transit::reporter::run_reporter at src/reporter.rs:46",
            ],
        ),
    ];
    let groups = group_stacks(&tasks);
    let summary: Vec<(usize, Vec<&str>)> = groups
        .iter()
        .map(|g| (g.count, g.tasks.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (2, vec!["server/grpc", "server/http"]),
            (2, vec!["supervisor/a", "supervisor/b"]),
            (1, vec!["dispatcher/a"]),
            (1, vec!["dispatcher/b"]),
            (1, vec!["reporter"]),
        ]
    );
    assert_eq!(
        groups[1].frames,
        vec![
            "<task> at src/tasks.rs:53:58",
            "supervise at src/dispatcher.rs:190:1"
        ]
    );
    // Only a leading task name is replaced, not the same word inside a path.
    assert_eq!(
        groups[4].frames[1],
        "transit::reporter::run_reporter at src/reporter.rs:46"
    );
    let mut out = String::new();
    write_stacks(&mut out, &groups);
    assert!(out.contains("2 tasks: supervisor/a, supervisor/b\n    -> supervise at src/dispatcher.rs:190:1\n       <task> at src/tasks.rs:53:58\n"), "{out}");
    assert!(out.contains("(no await points recorded)"), "{out}");
}

#[test]
fn large_groups_are_abbreviated() {
    let tasks: Vec<_> = (0..10)
        .map(|i| task(&format!("subscriber/{i}"), &["recv"]))
        .collect();
    let mut out = String::new();
    write_stacks(&mut out, &group_stacks(&tasks));
    assert!(
        out.starts_with("  10 tasks: subscriber/0, subscriber/1"),
        "{out}"
    );
    assert!(out.contains(" and 4 more\n"), "{out}");
}

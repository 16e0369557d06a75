//! A registry of the broadcaster's named long-lived tasks, for the in-process dump.
//!
//! Every long-lived task (source, dispatchers, supervisors, reporter, servers) is spawned
//! through [`TaskRegistry::spawn`], which registers its name and wraps it in an
//! `async-backtrace` root frame *named after the task*, so the dump can show each task's
//! await points. The registration is removed when the task's future is dropped (finished,
//! panicked or aborted): a dead dispatcher is absent from the dump, which is the evidence the
//! story's author had to dig out of a memory dump. Subscribers are registered without a task of
//! their own (their response streams are polled by the gRPC connection tasks).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_backtrace::Location;
use stallwatch_core::clock::now_ms;
use stallwatch_core::sync::lock;
use stallwatch_core::taskdump::{TaskInfo, TaskKind};
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    kind: TaskKind,
    stream: Option<String>,
    spawned_at_ms: u64,
    note: Option<String>,
}

#[derive(Debug, Default)]
pub struct TaskRegistry {
    entries: Mutex<BTreeMap<u64, Entry>>,
    next_id: AtomicU64,
    /// One leaked `'static` root-frame location per distinct task name. Names are bounded by
    /// the configuration (a few per stream), so this stays small however often tasks restart.
    locations: Mutex<HashMap<String, Location>>,
}

/// Removes its task's registration when dropped.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<TaskRegistry>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.registry.entries).remove(&self.id);
    }
}

static SPAWN_SITE: (&str, u32, u32) = (file!(), line!(), column!());

impl TaskRegistry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers a long-lived activity that is not a task of its own (e.g. a subscriber).
    pub fn register(
        self: &Arc<Self>,
        name: impl Into<String>,
        kind: TaskKind,
        stream: Option<&str>,
        note: Option<String>,
    ) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.entries).insert(
            id,
            Entry {
                name: name.into(),
                kind,
                stream: stream.map(String::from),
                spawned_at_ms: now_ms(),
                note,
            },
        );
        Registration {
            registry: self.clone(),
            id,
        }
    }

    fn location(&self, name: &str) -> Location {
        let mut locations = lock(&self.locations);
        if let Some(loc) = locations.get(name) {
            return *loc;
        }
        let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
        let loc = Location::from_components(leaked, &SPAWN_SITE);
        locations.insert(name.to_string(), loc);
        loc
    }

    /// Spawns `future` on `handle` as a registered task named `name`.
    pub fn spawn<F>(
        self: &Arc<Self>,
        handle: &tokio::runtime::Handle,
        name: impl Into<String>,
        kind: TaskKind,
        stream: Option<&str>,
        future: F,
    ) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let name = name.into();
        let location = self.location(&name);
        let registration = self.register(name, kind, stream, None);
        handle.spawn(location.frame(async move {
            let _registration = registration;
            future.await
        }))
    }

    /// Every registered task, with its await points when it is idle. Never waits for a task
    /// that is being polled (it is shown as `POLLING`), so a wedged task cannot hang the dump.
    pub fn snapshot(&self) -> (Vec<TaskInfo>, String) {
        let mut trees: HashMap<String, Vec<String>> = HashMap::new();
        let mut whole = Vec::new();
        for task in async_backtrace::tasks() {
            let tree = task.pretty_tree(false);
            if let Some(name) = task.location().name() {
                trees
                    .entry(name.to_string())
                    .or_default()
                    .push(tree.clone());
            }
            whole.push(tree);
        }
        let entries: Vec<Entry> = lock(&self.entries).values().cloned().collect();
        let tasks = entries
            .into_iter()
            .map(|e| {
                let mut frames: Vec<String> = match trees.get_mut(&e.name) {
                    Some(list) if !list.is_empty() => list
                        .remove(0)
                        .lines()
                        .map(|l| l.trim_end().to_string())
                        .filter(|l| !l.is_empty())
                        .collect(),
                    _ => Vec::new(),
                };
                if let Some(note) = e.note {
                    frames.push(note);
                }
                TaskInfo {
                    name: e.name,
                    kind: e.kind,
                    stream: e.stream,
                    spawned_at_ms: e.spawned_at_ms,
                    frames,
                }
            })
            .collect();
        (tasks, whole.join("\n"))
    }

    pub fn names(&self) -> Vec<String> {
        lock(&self.entries)
            .values()
            .map(|e| e.name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests;

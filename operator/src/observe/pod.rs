//! A pod as the operator judges it: its [`PodState`] for the decision function (stalled
//! while its `DispatchHealthy` condition is `False`), its [`PodHealth`] for the status (why its
//! streams are not judged, a dump volume it cannot write), its IP for the sidecar's admin API.

use k8s_openapi::api::core::v1::Pod;
use stallwatch_core::condition::{
    CONDITION_TYPE, DUMP_STORAGE_CONDITION_TYPE, StallReason, StalledStream, parse_message,
};
use stallwatch_core::remediation::PodState;

use super::{ms, opted_out};

/// A pod as the decision function sees it: stalled while its `DispatchHealthy` condition is
/// `False`, since that condition's `lastTransitionTime`.
pub fn pod_state(pod: &Pod) -> PodState {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let condition = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == CONDITION_TYPE));
    let mut state = PodState {
        name,
        uid: pod.metadata.uid.clone(),
        stalled_since_ms: None,
        stalled: Vec::new(),
        reason: None,
        opted_out: opted_out(pod.metadata.annotations.as_ref()),
        terminating: pod.metadata.deletion_timestamp.is_some(),
    };
    if let Some(c) = condition.filter(|c| c.status == "False") {
        let reason = c
            .reason
            .as_deref()
            .and_then(|r| r.parse::<StallReason>().ok());
        let mut stalled = c
            .message
            .as_deref()
            .and_then(|m| parse_message(m).ok())
            .unwrap_or_default();
        // The condition's reason is the longest-stalled stream's: put that stream first.
        if let Some(r) = reason
            && let Some(i) = stalled.iter().position(|s| s.reason == r)
        {
            stalled.swap(0, i);
        }
        if stalled.is_empty() {
            // An unparsable message still means a stalled pod.
            stalled.push(StalledStream {
                stream: "pod".into(),
                reason: reason.unwrap_or(StallReason::ReportsLost),
                depth: 0,
                capacity: 0,
                secs_since_dequeue: None,
            });
        }
        state.stalled_since_ms = Some(c.last_transition_time.as_ref().map(ms).unwrap_or_default());
        state.reason = reason.or(Some(stalled[0].reason));
        state.stalled = stalled;
    }
    state
}

/// Whether a pod's streams are judged, and if not, why: what the status names when nothing
/// is stalled but nothing is known to flow either (issue 20, findings 4 and 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodVerdict {
    /// `DispatchHealthy` is `True` or `False`.
    Judged,
    /// `DispatchHealthy` is `Unknown`: the sidecar runs but cannot judge (zero-code mode's
    /// `MetricsUnavailable`).
    Unknown { reason: String, message: String },
    /// No `DispatchHealthy` yet: why the pod is not running, or that its sidecar has not
    /// published yet.
    NotReporting { cause: NotRunning, why: String },
}

/// Why a pod without a verdict has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRunning {
    /// The scheduler could not place it (an unbound claim, no node fits).
    Unscheduled,
    /// A container waits (image pull, configuration, crash loop).
    ContainerWaiting,
    /// Scheduled and running, but the sidecar has not published a verdict yet.
    NoVerdictYet,
}

/// One live pod's [`PodVerdict`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodHealth {
    /// The pod's name.
    pub name: String,
    /// Whether its streams are judged.
    pub verdict: PodVerdict,
    /// The sidecar's `DumpStorageReady` is `False`: why no bundle can be written.
    pub dump_storage: Option<DumpStorageProblem>,
}

/// A `False` `stallwatch.io/DumpStorageReady` pod condition (issue 20, finding 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpStorageProblem {
    /// `PermissionDenied`, `ReadOnly`, `Missing`, `Full`, `Failed`.
    pub reason: String,
    /// The sidecar's probe message.
    pub message: String,
}

/// The [`PodHealth`] of a pod (as the slimmed cache keeps it: the `DispatchHealthy`,
/// `DumpStorageReady` and a failed `PodScheduled` condition, waiting containers).
pub fn pod_health(pod: &Pod) -> PodHealth {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.as_ref();
    let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
    let condition = |t: &str| conditions.iter().find(|c| c.type_ == t);
    let verdict = match condition(CONDITION_TYPE) {
        Some(c) if c.status == "Unknown" => PodVerdict::Unknown {
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
        },
        Some(_) => PodVerdict::Judged,
        None => not_reporting(pod, condition("PodScheduled")),
    };
    let dump_storage = condition(DUMP_STORAGE_CONDITION_TYPE)
        .filter(|c| c.status == "False")
        .map(|c| DumpStorageProblem {
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
        });
    PodHealth {
        name,
        verdict,
        dump_storage,
    }
}

fn not_reporting(
    pod: &Pod,
    scheduled: Option<&k8s_openapi::api::core::v1::PodCondition>,
) -> PodVerdict {
    if let Some(c) = scheduled.filter(|c| c.status == "False") {
        return PodVerdict::NotReporting {
            cause: NotRunning::Unscheduled,
            why: format!(
                "not scheduled ({}): {}",
                c.reason.as_deref().unwrap_or("Unschedulable"),
                c.message.as_deref().unwrap_or_default()
            ),
        };
    }
    let waiting = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or(&[])
        .iter()
        .find_map(|c| {
            let w = c.state.as_ref()?.waiting.as_ref()?;
            Some(format!(
                "container {} waiting ({}): {}",
                c.name,
                w.reason.as_deref().unwrap_or("Waiting"),
                w.message.as_deref().unwrap_or_default()
            ))
        });
    match waiting {
        Some(why) => PodVerdict::NotReporting {
            cause: NotRunning::ContainerWaiting,
            why,
        },
        None => PodVerdict::NotReporting {
            cause: NotRunning::NoVerdictYet,
            why: "its sidecar has not published a verdict yet".into(),
        },
    }
}

/// The pod's IP, if it has one (the sidecar's admin API listens on it).
pub fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .pod_ip
        .clone()
        .filter(|ip| !ip.is_empty())
}

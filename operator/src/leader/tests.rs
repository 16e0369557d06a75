use super::*;
use std::sync::{Arc, Mutex};

const T0: u64 = 1_700_000_000_000;
const D: Duration = Duration::from_secs(15);

#[test]
fn decisions() {
    assert_eq!(decide(None, "a", T0), LeaseAction::Create);
    let held = LeaseView {
        holder: Some("b".into()),
        renewed_ms: Some(T0),
        duration_ms: 15_000,
        transitions: 0,
    };
    assert_eq!(
        decide(Some(&held), "a", T0 + 1_000),
        LeaseAction::Follow {
            holder: "b".into(),
            until_ms: T0 + 15_000
        }
    );
    assert_eq!(decide(Some(&held), "a", T0 + 15_000), LeaseAction::TakeOver);
    assert_eq!(decide(Some(&held), "b", T0 + 1_000), LeaseAction::Renew);
    let released = LeaseView {
        holder: None,
        ..held
    };
    assert_eq!(decide(Some(&released), "a", T0), LeaseAction::TakeOver);
}

#[test]
fn takeover_counts_transitions() {
    let first = next_lease(None, "l", "a", &LeaseAction::Create, T0, D);
    let spec = first.spec.as_ref().unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
    assert_eq!(spec.lease_transitions, Some(0));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    let second = next_lease(
        Some(&first),
        "l",
        "b",
        &LeaseAction::TakeOver,
        T0 + 20_000,
        D,
    );
    assert_eq!(second.spec.as_ref().unwrap().lease_transitions, Some(1));
    let renewed = next_lease(Some(&second), "l", "b", &LeaseAction::Renew, T0 + 25_000, D);
    assert_eq!(renewed.spec.as_ref().unwrap().lease_transitions, Some(1));
    assert_eq!(
        renewed.spec.as_ref().unwrap().acquire_time,
        second.spec.as_ref().unwrap().acquire_time
    );
}

/// An in-memory Lease API with resourceVersion preconditions, like the API server's.
#[derive(Clone, Default)]
struct MockLeases {
    lease: Arc<Mutex<Option<Lease>>>,
    version: Arc<Mutex<u64>>,
}

impl LeaseStore for MockLeases {
    fn get(&self) -> BoxFuture<'_, Result<Option<Lease>, LeaseError>> {
        let l = self.lease.lock().unwrap().clone();
        Box::pin(async move { Ok(l) })
    }
    fn create(&self, mut lease: Lease) -> BoxFuture<'_, Result<Lease, LeaseError>> {
        let mut slot = self.lease.lock().unwrap();
        let r = if slot.is_some() {
            Err(LeaseError::Conflict)
        } else {
            let mut v = self.version.lock().unwrap();
            *v += 1;
            lease.metadata.resource_version = Some(v.to_string());
            *slot = Some(lease.clone());
            Ok(lease)
        };
        Box::pin(async move { r })
    }
    fn replace(&self, mut lease: Lease) -> BoxFuture<'_, Result<Lease, LeaseError>> {
        let mut slot = self.lease.lock().unwrap();
        let current = slot
            .as_ref()
            .and_then(|l| l.metadata.resource_version.clone());
        let r = if current != lease.metadata.resource_version {
            Err(LeaseError::Conflict)
        } else {
            let mut v = self.version.lock().unwrap();
            *v += 1;
            lease.metadata.resource_version = Some(v.to_string());
            *slot = Some(lease.clone());
            Ok(lease)
        };
        Box::pin(async move { r })
    }
}

fn elector(store: &MockLeases, id: &str) -> Elector<MockLeases> {
    Elector {
        store: store.clone(),
        name: "stallwatch-operator".into(),
        identity: id.into(),
        duration: D,
        last_seen: Default::default(),
    }
}

#[tokio::test]
async fn two_replicas_one_leader_and_handover() {
    let store = MockLeases::default();
    let (a, b) = (elector(&store, "a"), elector(&store, "b"));
    assert!(a.try_once(T0).await.unwrap());
    assert!(!b.try_once(T0 + 1).await.unwrap());
    // a keeps renewing; b keeps following.
    for i in 1..10 {
        assert!(a.try_once(T0 + i * 5_000).await.unwrap());
        assert!(!b.try_once(T0 + i * 5_000 + 1).await.unwrap());
    }
    // a dies silently: b takes over only once the lease has expired.
    let last = T0 + 45_000;
    assert!(!b.try_once(last + 14_999).await.unwrap());
    assert!(b.try_once(last + 15_000).await.unwrap());
    // a comes back: follows.
    assert!(!a.try_once(last + 16_000).await.unwrap());
    let l = store.lease.lock().unwrap().clone().unwrap();
    assert_eq!(
        l.spec.as_ref().unwrap().holder_identity.as_deref(),
        Some("b")
    );
    assert_eq!(l.spec.unwrap().lease_transitions, Some(1));
}

#[tokio::test]
async fn graceful_release_hands_over_at_once() {
    let store = MockLeases::default();
    let (a, b) = (elector(&store, "a"), elector(&store, "b"));
    assert!(a.try_once(T0).await.unwrap());
    a.release(T0 + 1).await.unwrap();
    assert!(
        b.try_once(T0 + 1).await.unwrap(),
        "no need to wait for expiry"
    );
    // Releasing a lease we do not hold changes nothing.
    a.release(T0 + 2).await.unwrap();
    assert!(!a.try_once(T0 + 2).await.unwrap());
    // Another identity taking a released lease is a transition.
    let l = store.lease.lock().unwrap().clone().unwrap();
    assert_eq!(l.spec.unwrap().lease_transitions, Some(1));
}

#[tokio::test]
async fn the_same_identity_taking_back_its_released_lease_is_not_a_transition() {
    let store = MockLeases::default();
    let a = elector(&store, "a");
    assert!(a.try_once(T0).await.unwrap());
    a.release(T0 + 1_000).await.unwrap();
    // The same pod, restarted (its name is its identity).
    assert!(a.try_once(T0 + 2_000).await.unwrap());
    let spec = store.lease.lock().unwrap().clone().unwrap().spec.unwrap();
    assert_eq!(spec.lease_transitions, Some(0));
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
}

#[tokio::test]
async fn racing_for_an_expired_lease_has_one_winner() {
    let store = MockLeases::default();
    let (b, c) = (elector(&store, "b"), elector(&store, "c"));
    assert!(c.try_once(T0).await.unwrap());
    // a and b both read the expired lease, then both write: the second write is stale.
    let now = T0 + 20_000;
    let seen = store.get().await.unwrap();
    let action = decide(seen.as_ref().map(view).as_ref(), "a", now);
    assert_eq!(action, LeaseAction::TakeOver);
    let la = next_lease(seen.as_ref(), "l", "a", &action, now, D);
    let lb = next_lease(seen.as_ref(), "l", "b", &action, now, D);
    assert!(store.replace(la).await.is_ok());
    assert!(matches!(store.replace(lb).await, Err(LeaseError::Conflict)));
    assert!(!b.try_once(now + 1).await.unwrap());
}

#[tokio::test]
async fn the_loop_publishes_leadership_and_releases_on_shutdown() {
    let store = MockLeases::default();
    let a = elector(&store, "a");
    let (lead_tx, mut lead_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        a.run_beating(lead_tx, || T0, stop_rx, &crate::health::unwatched())
            .await;
    });
    lead_rx.wait_for(|l| *l).await.unwrap();
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    assert!(!*lead_rx.borrow());
    // Released: expired at once (renewed one lease duration before the release).
    let view = view(&store.lease.lock().unwrap().clone().unwrap());
    assert_eq!(
        decide(Some(&view), "b", T0),
        LeaseAction::TakeOver,
        "{view:?}"
    );
}

#[test]
fn a_lease_deleted_under_a_live_holder_is_not_created_by_another_candidate_until_it_expires() {
    let held = LeaseView {
        holder: Some("a".into()),
        renewed_ms: Some(T0),
        duration_ms: 15_000,
        transitions: 0,
    };
    // The holder re-creates it at once; anyone else waits out what it last saw.
    assert_eq!(
        decide_seen(None, Some(&held), "a", T0 + 1_000),
        LeaseAction::Create
    );
    assert_eq!(
        decide_seen(None, Some(&held), "b", T0 + 1_000),
        LeaseAction::Follow {
            holder: "a".into(),
            until_ms: T0 + 15_000
        }
    );
    assert_eq!(
        decide_seen(None, Some(&held), "b", T0 + 15_000),
        LeaseAction::Create
    );
    assert_eq!(decide_seen(None, None, "b", T0), LeaseAction::Create);
    assert_eq!(
        decide_seen(Some(&held), Some(&held), "b", T0 + 1_000),
        decide(Some(&held), "b", T0 + 1_000)
    );
}

#[tokio::test]
async fn the_lease_deleted_under_its_leader_is_re_created_by_it_and_the_standby_keeps_following() {
    let store = MockLeases::default();
    let a = elector(&store, "a");
    let b = elector(&store, "b");
    assert!(a.try_once(T0).await.unwrap());
    assert!(!b.try_once(T0 + 100).await.unwrap());
    store.lease.lock().unwrap().take();
    assert!(
        !b.try_once(T0 + 5_000).await.unwrap(),
        "the standby took a lease deleted under a live leader"
    );
    assert!(a.try_once(T0 + 5_100).await.unwrap());
    assert!(!b.try_once(T0 + 10_000).await.unwrap());
}

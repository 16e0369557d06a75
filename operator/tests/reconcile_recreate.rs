//! Issue 21, bug 1, against the mock API: a TransitStream deleted and created again under the
//! same name (a new uid, generation 1 again) gets every owned object applied again, and the
//! reconciler's per-resource state of a deleted one is dropped.

use std::sync::Arc;
use std::time::Duration;

use stallwatch_core::condition::StallReason;
use stallwatch_testkit::TransitStreamExt as _;
use stallwatch_testkit::fake_api::{NS, Timeline};
use stallwatch_testkit::harness::{fixture, harness_with};
use transit_operator::sidecar::{BoxFuture, SidecarApi, SidecarError, SidecarTarget};

/// A sidecar that is never called here.
struct Unused;

impl SidecarApi for Unused {
    fn soft_restart<'a>(
        &'a self,
        _target: &'a SidecarTarget,
        _stream: &'a str,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<(), SidecarError>> {
        unreachable!("no stall in these tests")
    }

    fn capture_dump<'a>(
        &'a self,
        _target: &'a SidecarTarget,
        _stream: &'a str,
        _reason: StallReason,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<stallwatch_core::bundle::Manifest, SidecarError>> {
        unreachable!("no stall in these tests")
    }
}

fn applies(timeline: &[String]) -> Vec<String> {
    timeline
        .iter()
        .filter(|l| l.ends_with(" apply"))
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_stream_created_again_under_the_same_name_gets_every_object_applied_again() {
    let timeline: Timeline = Arc::default();
    let mut h = harness_with(Duration::from_secs(30), timeline, Arc::new(Unused));
    h.stream(&fixture());
    h.reconcile().await.unwrap();
    let first = applies(&h.timeline());
    assert!(first.len() >= 6, "{first:#?}");
    // Deleted and applied again from the same file: a new uid, generation 1 again, no status.
    let again = stallwatch_crds::TransitStream::test("demo")
        .namespace(NS)
        .uid("ts-uid-2")
        .build();
    h.stream(&again);
    let before = h.timeline().len();
    h.reconcile().await.unwrap();
    let second = applies(&h.timeline()[before..]);
    let kinds = |applies: &[String]| -> Vec<String> {
        applies
            .iter()
            .map(|a| {
                a.split('/')
                    .nth(a.split('/').count() - 2)
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    };
    assert_eq!(
        kinds(&second),
        kinds(&first),
        "re-created: {second:#?}\nfirst: {first:#?}"
    );
}

#[tokio::test]
async fn the_state_of_a_deleted_stream_is_forgotten() {
    let timeline: Timeline = Arc::default();
    let mut h = harness_with(Duration::from_secs(30), timeline, Arc::new(Unused));
    let ts = h.stream(&fixture());
    h.reconcile().await.unwrap();
    assert_eq!(h.ctx.remembered(), 1);
    h.ctx.forget(&ts);
    assert_eq!(h.ctx.remembered(), 0);
}

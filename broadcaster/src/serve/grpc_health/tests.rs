use super::*;

fn check(reporter: &HealthReporter, name: &str) -> Result<i32, tonic::Code> {
    let service = HealthService {
        registry: reporter.registry.clone(),
    };
    let request = Request::new(HealthCheckRequest {
        service: name.into(),
    });
    futures::executor::block_on(service.check(request))
        .map(|r| r.into_inner().status)
        .map_err(|s| s.code())
}

fn watch(reporter: &HealthReporter, name: &str) -> WatchResponses {
    let service = HealthService {
        registry: reporter.registry.clone(),
    };
    let request = Request::new(HealthCheckRequest {
        service: name.into(),
    });
    futures::executor::block_on(service.watch(request))
        .unwrap()
        .into_inner()
}

fn next(updates: &mut WatchResponses) -> i32 {
    futures::executor::block_on(updates.next())
        .expect("an update")
        .unwrap()
        .status
}

#[test]
fn check_answers_known_names_and_not_found_for_others() {
    let reporter = HealthReporter::default();
    reporter.set("a", ServingStatus::Serving);
    assert_eq!(check(&reporter, "a"), Ok(ServingStatus::Serving as i32));
    assert_eq!(check(&reporter, "b"), Err(tonic::Code::NotFound));
}

#[test]
fn watch_of_an_unknown_name_says_so_then_follows_it_once_known() {
    let reporter = HealthReporter::default();
    let mut updates = watch(&reporter, "later");
    assert_eq!(next(&mut updates), ServingStatus::ServiceUnknown as i32);
    // Being watched does not make the name known to Check.
    assert_eq!(check(&reporter, "later"), Err(tonic::Code::NotFound));
    reporter.set("later", ServingStatus::NotServing);
    assert_eq!(next(&mut updates), ServingStatus::NotServing as i32);
    reporter.set("later", ServingStatus::Serving);
    assert_eq!(next(&mut updates), ServingStatus::Serving as i32);
}

#[test]
fn names_only_watched_are_forgotten_once_their_watchers_leave() {
    let reporter = HealthReporter::default();
    reporter.set("known", ServingStatus::Serving);
    for i in 0..100 {
        drop(watch(&reporter, &format!("nope-{i}")));
    }
    let _held = watch(&reporter, "held");
    let names: Vec<String> = {
        let mut n: Vec<_> = lock(&reporter.registry.services).keys().cloned().collect();
        n.sort();
        n
    };
    assert_eq!(names, ["held", "known"]);
}

//! The drill (issue 20, item 4): `POST /admin/streams/{name}/drill` kills one stream's
//! dispatcher once and leaves it dead, as the story's poison did, even though a supervisor
//! would restart any other death; an admin restart brings it back.

use std::time::Duration;

use stallwatch_core::report::DispatcherState;
use stallwatch_testkit::wait::eventually;
use transit_broadcaster::pipeline::dispatcher::Backoff;
use transit_broadcaster::pipeline::source::SourceSpec;
use transit_broadcaster::{Config, Running};

async fn admin(running: &Running, stream: &str, what: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!(
            "http://{}/admin/streams/{stream}/{what}",
            running.admin_addr.unwrap()
        ))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_leaves_the_dispatcher_dead_until_a_restart() {
    let backoff = Duration::from_millis(50);
    let running = transit_broadcaster::start(Config {
        channel_capacity: 64,
        streams: vec!["all".parse().unwrap(), "other".parse().unwrap()],
        backoff: Backoff {
            initial: backoff,
            max: backoff,
            reset_after: Duration::from_secs(30),
        },
        ..Config::loopback(SourceSpec::Manual)
    })
    .await
    .expect("broadcaster starts");
    let stream = running.stream("all").unwrap();
    let other = running.stream("other").unwrap();
    eventually("running", || {
        stream.dispatcher_state() == DispatcherState::Running
    })
    .await;
    assert_eq!(admin(&running, "all", "drill").await, 202);
    eventually("dead", || {
        stream.dispatcher_state() == DispatcherState::Dead
    })
    .await;
    // Many supervisor backoffs later it is still dead: nothing restarted it.
    tokio::time::sleep(backoff * 10).await;
    assert_eq!(stream.dispatcher_state(), DispatcherState::Dead);
    assert_eq!(stream.restarts_total(), 0);
    assert_eq!(other.dispatcher_state(), DispatcherState::Running);
    assert!(
        stream
            .last_error()
            .is_some_and(|e| e.message.contains("drill")),
        "{:?}",
        stream.last_error()
    );
    // The soft restart the operator tries first brings it back.
    assert_eq!(admin(&running, "all", "restart").await, 202);
    eventually("running again", || {
        stream.dispatcher_state() == DispatcherState::Running
    })
    .await;
    assert_eq!(stream.restarts_total(), 1);
    // Once: a later death is restarted by the supervisor as usual.
    assert_eq!(admin(&running, "nope", "drill").await, 404);
    running.shutdown().await;
}

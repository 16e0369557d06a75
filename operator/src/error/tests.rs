use super::*;

fn api(code: u16) -> Error {
    Error::Kube(kube::Error::Api(
        kube::core::Status::failure("x", "y")
            .with_code(code)
            .boxed(),
    ))
}

#[test]
fn labels() {
    assert_eq!(api(409).label(), "conflict");
    assert_eq!(api(500).label(), "api_server_error");
    assert_eq!(api(403).label(), "api_error");
    assert_eq!(Error::Timeout(Duration::from_secs(1)).label(), "timeout");
    for l in [api(409), api(500), api(404)].iter().map(Error::label) {
        assert!(Error::LABELS.contains(&l));
    }
}

#[test]
fn backoff_grows_and_caps() {
    let e = api(500);
    let d: Vec<u64> = (1..=12).map(|n| backoff(n, &e).as_secs()).collect();
    assert_eq!(d, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    assert_eq!(backoff(1, &api(409)), Duration::from_millis(200));
    assert_eq!(backoff(3, &api(409)), Duration::from_secs(4));
}

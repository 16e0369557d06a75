use super::*;

#[test]
fn ingest_addresses_are_loopback_or_unix() {
    assert_eq!(
        "127.0.0.1:9464".parse::<IngestAddr>(),
        Ok(IngestAddr::Tcp("127.0.0.1:9464".parse().unwrap()))
    );
    assert!(matches!(
        "[::1]:0".parse::<IngestAddr>(),
        Ok(IngestAddr::Tcp(_))
    ));
    assert_eq!(
        "unix:/run/sw.sock".parse::<IngestAddr>(),
        Ok(IngestAddr::Unix("/run/sw.sock".into()))
    );
    assert!(matches!(
        "0.0.0.0:9464".parse::<IngestAddr>(),
        Err(IngestAddrError::NotLoopback(_))
    ));
    assert!(matches!(
        "10.1.2.3:9464".parse::<IngestAddr>(),
        Err(IngestAddrError::NotLoopback(_))
    ));
    assert!(matches!(
        "unix:".parse::<IngestAddr>(),
        Err(IngestAddrError::Unparsable(_))
    ));
    assert!(matches!(
        "localhost".parse::<IngestAddr>(),
        Err(IngestAddrError::Unparsable(_))
    ));
}

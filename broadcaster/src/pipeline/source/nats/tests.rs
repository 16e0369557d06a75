use super::redact_userinfo;

#[test]
fn credentials_never_reach_logs() {
    assert_eq!(redact_userinfo("u:s3cret@nats:4222"), "u:***@nats:4222");
    assert_eq!(redact_userinfo("t0ken@nats:4222"), "***@nats:4222");
    assert_eq!(redact_userinfo("nats:4222"), "nats:4222");
    assert!(!redact_userinfo("u:p@ss@nats:4222").contains("ss"));
}

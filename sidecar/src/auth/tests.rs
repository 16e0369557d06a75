use super::*;

#[test]
fn verifies_only_the_right_bearer_token() {
    let t = AdminToken::from_secret("s3cret\n");
    assert!(t.verify(Some(b"Bearer s3cret")));
    assert!(t.verify(Some(b"bearer s3cret")));
    for bad in [
        &b"Bearer s3cre"[..],
        b"Bearer s3cret2",
        b"Basic s3cret",
        b"s3cret",
        b"Bearer ",
        b"",
    ] {
        assert!(!t.verify(Some(bad)), "{}", String::from_utf8_lossy(bad));
    }
    assert!(!t.verify(None));
}

#[test]
fn no_token_refuses_everything() {
    let t = AdminToken::none();
    assert!(!t.verify(Some(b"Bearer ")));
    assert!(!t.verify(Some(b"Bearer anything")));
    assert!(!AdminToken::from_secret("  \n").is_configured());
}

#[test]
fn reads_a_secret_file_and_never_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "abc123\n").unwrap();
    let t = AdminToken::from_file(&path).unwrap();
    assert!(t.verify(Some(b"Bearer abc123")));
    assert!(!format!("{t:?}").contains("abc123"));
    std::fs::write(&path, "\n").unwrap();
    assert!(matches!(
        AdminToken::from_file(&path),
        Err(TokenError::Empty { .. })
    ));
    assert!(matches!(
        AdminToken::from_file(&dir.path().join("missing")),
        Err(TokenError::Read { .. })
    ));
}

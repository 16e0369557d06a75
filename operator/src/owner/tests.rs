use super::*;

#[test]
fn the_reference_names_the_deployment_and_blocks_nothing() {
    let r = reference("stallwatch", "u-1");
    assert_eq!(
        (
            r.api_version.as_str(),
            r.kind.as_str(),
            r.name.as_str(),
            r.uid.as_str()
        ),
        ("apps/v1", "Deployment", "stallwatch", "u-1")
    );
    assert_eq!(r.controller, None, "not the Deployment's to manage");
    assert_eq!(r.block_owner_deletion, None);
}

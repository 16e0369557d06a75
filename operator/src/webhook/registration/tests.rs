use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, WebhookClientConfig};

use super::*;

const DAY: Duration = Duration::from_secs(86_400);
const NOW: u64 = 1_780_000_000_000;

fn config(bundles: &[Option<&str>]) -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some("stallwatch".into()),
            ..ObjectMeta::default()
        },
        webhooks: Some(
            bundles
                .iter()
                .enumerate()
                .map(|(i, b)| MutatingWebhook {
                    name: format!("w{i}.stallwatch.io"),
                    client_config: WebhookClientConfig {
                        ca_bundle: b.map(|b| ByteString(b.as_bytes().to_vec())),
                        ..WebhookClientConfig::default()
                    },
                    ..MutatingWebhook::default()
                })
                .collect(),
        ),
    }
}

#[test]
fn the_ca_bundle_is_written_to_every_webhook_only_when_it_differs() {
    let next = with_ca_bundle(&config(&[None, Some("old")]), "new").expect("a change");
    for w in next.webhooks.as_ref().unwrap() {
        assert_eq!(w.client_config.ca_bundle, Some(ByteString(b"new".to_vec())));
    }
    assert_eq!(with_ca_bundle(&next, "new"), None, "nothing to write");
    assert_eq!(with_ca_bundle(&config(&[]), "new"), None);
}

#[test]
fn a_first_bundle_is_generated_then_kept_then_rotated_when_due() {
    let names = vec!["stallwatch-webhook.ns.svc".to_string()];
    let (first, write) = next_bundle(None, &names, NOW, 90 * DAY).unwrap();
    assert!(write);
    let (kept, write) = next_bundle(
        Some(first.clone()),
        &names,
        NOW + DAY.as_millis() as u64,
        90 * DAY,
    )
    .unwrap();
    assert!(!write);
    assert_eq!(kept, first);
    let due = NOW + 61 * DAY.as_millis() as u64;
    let (rotated, write) = next_bundle(Some(first.clone()), &names, due, 90 * DAY).unwrap();
    assert!(write);
    assert_ne!(rotated.cert_pem, first.cert_pem);
    assert!(
        rotated.ca_bundle().contains(&first.ca_pem),
        "the old CA stays trusted"
    );
}
